//! The `quick` integrity level: detect a media file's real format from its magic bytes and
//! prove, from a bounded number of bytes at its head and tail (plus a few small seeks for
//! container box walking), that it was written to the end.
//!
//! Guarantees (tested with random and mutated inputs):
//! - never panics, whatever the bytes, sizes or lengths declared inside the file;
//! - never allocates in proportion to a size declared inside the file;
//! - reads at most [`MAX_QUICK_READ`] bytes per file.
//!
//! # Rules
//! - **JPEG** (`FF D8 FF`): the head segments are walked up to the first SOS; a segment that
//!   runs past the end of the file is `Truncated` (or `Corrupt` when the file nevertheless ends
//!   in `FFD9`), a bad marker or a scan without a frame header (SOF) is `Corrupt`. Then the end
//!   of the JPEG stream is located:
//!   1. motion-photo / multi-item metadata in the XMP APP1 segment: `Container:Item` entries
//!      (`Item:Length`, `Item:Padding`, `Item:Mime`; the JPEG ends at size minus the lengths of
//!      the items after the primary), else `GCamera:MicroVideoOffset="N"` (the last N bytes
//!      are the video). The embedded video's top-level boxes are walked like an MP4, embedded
//!      JPEG items (gain maps) must end in `FFD9`;
//!   2. a Samsung `SEFH`/`SEFT` trailer at the end of the file (the JPEG ends where the first
//!      trailer data block starts);
//!   3. otherwise the end of the file.
//!
//!   `FFD9` must sit exactly right before that end, optionally followed by zero bytes only
//!   (zero padding after a complete EOI, or the declared `Item:Padding`); the zero padding is
//!   reported in `note`. Without metadata the rule is strict: if the last bytes are not
//!   `FFD9` (+ zero padding) the file is `Truncated("jpeg: no EOI ...")`, or
//!   `Truncated("jpeg: zero-filled tail of N bytes ...")` when it ends in a run of zero bytes
//!   not preceded by `FFD9` (a preallocated, half-copied file). If an `FFD9` is found in the
//!   tail followed by non-zero data that no metadata explains, the stream itself is complete
//!   but the file carries unexplained data: `Corrupt("jpeg: N bytes of unexplained data after
//!   EOI at X")`.
//! - **PNG**: signature, first chunk `IHDR` of length 13 with non-zero width and height
//!   (else `Corrupt`), the 12-byte `IEND` chunk as the very last bytes (else `Truncated`;
//!   `IEND` followed by zero bytes only is `Ok` with a note, by other data `Corrupt`).
//! - **WebP**: RIFF length + 8 must equal the file size (shorter file: `Truncated`, longer:
//!   `Corrupt`); the RIFF chunks are walked and must tile the file; the first is `VP8 `,
//!   `VP8L` or `VP8X`.
//! - **GIF**: `GIF87a`/`GIF89a`, last byte `3B`.
//! - **ISO BMFF** (MP4/MOV/3GP/HEIF/AVIF/CR3): top-level boxes must tile the file exactly (a
//!   box past EOF: `Truncated`; a header that is not a box: `Corrupt`, or `Truncated` when the
//!   rest of the file is zero bytes). MP4 and CR3 need `moov`, HEIF/AVIF need `meta` (or
//!   `moov` for image sequences). The walk stops after [`MAX_BOXES`] boxes (noted, not a fault).
//! - **Matroska/WebM**: the EBML header must parse; a Segment of known size must end at or
//!   before the end of file (`Truncated` otherwise); data after it must be another EBML
//!   element (Void or a new EBML header), else `Corrupt`.
//! - **TIFF/RAW**: first IFD offset and entry count must fit in the file; the IFD chain (and
//!   SubIFDs), up to 8 IFDs, is scanned for strip/tile/JPEG-thumbnail data running past EOF
//!   (`Truncated`). The true end is not provable: `Ok` with note. RAF: the header's
//!   JPEG/CFA offset+length must fit.
//! - **XMP**: after an optional BOM/whitespace the text starts with `<?xpacket`, `<?xml`,
//!   `<x:xmpmeta` or `<x:xapmeta`; with trailing whitespace/NUL removed it must end with
//!   `</x:xmpmeta>`, `</x:xapmeta>`, the closing tag of the root element or an
//!   `<?xpacket end=...?>` processing instruction.
//! - A file of size 0 is `Truncated("empty")`; a file whose head is all zero bytes is
//!   `Truncated("zero-filled ...")`; other unknown magic is `Corrupt("unknown format: ...")`.
//! - A file whose structure checks out but that ends in a long run of zero bytes (unwritten,
//!   preallocated space) is `Truncated("<fmt>: zero-filled tail of N bytes")`: ≥ 16 KiB for
//!   HEIF/AVIF/WebP/Matroska, the whole 64 KiB tail window for MP4/MOV (which may end in PCM
//!   silence); for TIFF/RAW (uncompressed black pixels are legal) it is only noted.
//! - If the file turns out shorter than the `size` given (it shrank, or the caller lied), the
//!   verdict is `Truncated`.
//! - The extension never changes the verdict; a mismatch goes to `note`. A TIFF-magic file
//!   with a RAW extension (`.nef`, `.arw`, ...) is reported as [`Format::Raw`].

use std::fmt::Write as _;
use std::io;

/// Bytes read from the start of the file.
const HEAD_LEN: u64 = 64 * 1024;
/// Bytes read from the end of the file.
const TAIL_LEN: u64 = 64 * 1024;
/// Largest single read.
const MAX_CHUNK: usize = 64 * 1024;
/// Maximum number of top-level boxes walked in an ISO BMFF file.
pub const MAX_BOXES: usize = 10_000;
/// Upper bound of the bytes `check` reads from one file.
pub const MAX_QUICK_READ: u64 = 256 * 1024 + 16 * MAX_BOXES as u64;
/// A run of zero bytes at least this long at the end of a file whose end marker is missing is
/// reported as a zero-filled tail.
const ZERO_TAIL_MIN: u64 = 32;
/// A run of zero bytes at least this long at the end of a file whose structure checks out is
/// still reported (as `Truncated` for compressed-only formats, as a note for TIFF/RAW).
const ZERO_TAIL_SUSPECT: u64 = 16 * 1024;
/// Maximum number of JPEG marker segments walked before SOS.
const MAX_JPEG_SEGMENTS: usize = 1024;
/// Maximum number of boxes walked in an embedded (motion photo) video.
const MAX_EMBEDDED_BOXES: usize = 256;

/// Random access to the bytes of a file or buffer.
pub trait ReadAt {
    /// Read up to `buf.len()` bytes at `offset`; `Ok(0)` means end of file.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
}

impl ReadAt for [u8] {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let Ok(start) = usize::try_from(offset) else {
            return Ok(0);
        };
        let Some(avail) = self.get(start..) else {
            return Ok(0);
        };
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        Ok(n)
    }
}

impl ReadAt for Vec<u8> {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.as_slice().read_at(buf, offset)
    }
}

#[cfg(unix)]
impl ReadAt for std::fs::File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        std::os::unix::fs::FileExt::read_at(self, buf, offset)
    }
}

#[cfg(windows)]
impl ReadAt for std::fs::File {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        std::os::windows::fs::FileExt::seek_read(self, buf, offset)
    }
}

/// The real format of a file, as far as its magic bytes tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// JPEG.
    Jpeg,
    /// PNG.
    Png,
    /// WebP.
    WebP,
    /// GIF.
    Gif,
    /// HEIF / HEIC.
    Heif,
    /// AVIF.
    Avif,
    /// TIFF (and the TIFF-based raw formats).
    Tiff,
    /// Camera raw: DNG/CR2/CR3/CRW/NEF/ARW/ORF/RW2/RAF/X3F ... as far as magic allows.
    Raw,
    /// ISO BMFF video, including MOV/3GP/M4V.
    Mp4,
    /// Matroska / WebM (EBML).
    Matroska,
    /// XMP sidecar (XML).
    Xmp,
    /// Not a format the quick check recognises (not judged).
    Unknown,
}

impl Format {
    /// Lower-case name used in finding details, e.g. `jpeg`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Jpeg => "jpeg",
            Format::Png => "png",
            Format::WebP => "webp",
            Format::Gif => "gif",
            Format::Heif => "heif",
            Format::Avif => "avif",
            Format::Tiff => "tiff",
            Format::Raw => "raw",
            Format::Mp4 => "mp4",
            Format::Matroska => "matroska",
            Format::Xmp => "xmp",
            Format::Unknown => "unknown",
        }
    }

    /// Map a file extension (with or without the leading dot, any case) to a format.
    pub fn from_extension(ext: &str) -> Option<Format> {
        let ext = ext.strip_prefix('.').unwrap_or(ext).to_ascii_lowercase();
        Some(match ext.as_str() {
            "jpg" | "jpeg" | "jpe" | "jfif" => Format::Jpeg,
            "png" => Format::Png,
            "webp" => Format::WebP,
            "gif" => Format::Gif,
            "heic" | "heif" | "hif" => Format::Heif,
            "avif" => Format::Avif,
            "tif" | "tiff" => Format::Tiff,
            "dng" | "cr2" | "cr3" | "crw" | "nef" | "nrw" | "arw" | "sr2" | "srf" | "orf"
            | "rw2" | "raf" | "pef" | "srw" | "x3f" | "3fr" | "erf" | "kdc" | "mrw" | "iiq"
            | "rwl" => Format::Raw,
            "mp4" | "mov" | "m4v" | "3gp" | "3g2" | "qt" | "insv" => Format::Mp4,
            "webm" | "mkv" => Format::Matroska,
            "xmp" => Format::Xmp,
            _ => return None,
        })
    }

    /// Whether the `image` crate (built with jpeg, png, webp, gif and tiff) can decode it.
    pub fn decodable_by_image_crate(self) -> bool {
        matches!(
            self,
            Format::Jpeg | Format::Png | Format::WebP | Format::Gif | Format::Tiff
        )
    }
}

/// Outcome of the `quick` check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing wrong was found.
    Ok,
    /// The file ends before its content does; the string names the check.
    Truncated(String),
    /// The file is damaged in some other way; the string names the check.
    Corrupt(String),
}

impl Verdict {
    /// True for [`Verdict::Ok`].
    pub fn is_ok(&self) -> bool {
        matches!(self, Verdict::Ok)
    }
}

#[derive(Debug, Clone)]
/// What the quick check of one file found.
pub struct QuickReport {
    /// The format recognised from the magic bytes.
    pub format: Format,
    /// The judgement.
    pub verdict: Verdict,
    /// Bytes actually read from the file (≤ [`MAX_QUICK_READ`]).
    pub bytes_read: u64,
    /// Facts that are not faults, e.g. "motion photo: 123456 bytes of video after EOI".
    pub note: Option<String>,
    /// For a JPEG, what its headers before the first scan declare.
    pub jpeg: Option<JpegFrame>,
}

/// What a JPEG's marker segments declare before its first scan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JpegFrame {
    /// Width and height from the first SOF segment.
    pub size: Option<(u32, u32)>,
    /// A DHT segment defines its own Huffman tables.
    pub huffman_tables: bool,
}

// ---------------------------------------------------------------------------------------------
// Small byte helpers (never panic).

fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn be64(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_be_bytes(a))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

#[derive(Clone, Copy)]
struct Endian {
    little: bool,
}

impl Endian {
    fn u16(self, b: &[u8], at: usize) -> Option<u16> {
        let s = b.get(at..at.checked_add(2)?)?;
        Some(if self.little {
            u16::from_le_bytes([s[0], s[1]])
        } else {
            u16::from_be_bytes([s[0], s[1]])
        })
    }
    fn u32(self, b: &[u8], at: usize) -> Option<u32> {
        let s = b.get(at..at.checked_add(4)?)?;
        let a = [s[0], s[1], s[2], s[3]];
        Some(if self.little {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        })
    }
    fn u64(self, b: &[u8], at: usize) -> Option<u64> {
        let s = b.get(at..at.checked_add(8)?)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Some(if self.little {
            u64::from_le_bytes(a)
        } else {
            u64::from_be_bytes(a)
        })
    }
}

fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 3);
    for (i, x) in b.iter().enumerate() {
        if i > 0 {
            s.push(' ');
        }
        let _ = write!(s, "{x:02x}");
    }
    s
}

fn fourcc(b: &[u8]) -> String {
    b.iter()
        .map(|&c| {
            if (0x20..0x7f).contains(&c) {
                c as char
            } else {
                '?'
            }
        })
        .collect()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).rposition(|w| w == needle)
}

fn u64_of(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

// ---------------------------------------------------------------------------------------------
// Bounded reader with head/tail caches.

struct Src<'a, R: ?Sized> {
    r: &'a R,
    size: u64,
    read: u64,
    /// The file ended (read returned 0) at this offset, before `size`.
    short_at: Option<u64>,
    budget_exhausted: bool,
    head: Vec<u8>,
    tail: Vec<u8>,
    tail_off: u64,
}

impl<'a, R: ReadAt + ?Sized> Src<'a, R> {
    fn new(r: &'a R, size: u64) -> Self {
        Src {
            r,
            size,
            read: 0,
            short_at: None,
            budget_exhausted: false,
            head: Vec::new(),
            tail: Vec::new(),
            tail_off: 0,
        }
    }

    /// Read `len` bytes at `off` (clamped to the file size, to `MAX_CHUNK` and to the read
    /// budget). A shorter result means end of file.
    fn raw_read(&mut self, off: u64, len: usize) -> io::Result<Vec<u8>> {
        let remaining_budget = MAX_QUICK_READ.saturating_sub(self.read);
        let want = u64_of(len.min(MAX_CHUNK)).min(self.size.saturating_sub(off));
        let len_u = want.min(remaining_budget);
        if len_u < want {
            self.budget_exhausted = true;
        }
        let len = usize::try_from(len_u).unwrap_or(0);
        let mut buf = vec![0u8; len];
        let mut filled = 0usize;
        let mut interrupts = 0;
        while filled < len {
            let Some(pos) = off.checked_add(u64_of(filled)) else {
                break;
            };
            match self.r.read_at(&mut buf[filled..], pos) {
                Ok(0) => break,
                Ok(n) => filled += n.min(len - filled),
                Err(e) if e.kind() == io::ErrorKind::Interrupted && interrupts < 64 => {
                    interrupts += 1;
                }
                Err(e) => return Err(e),
            }
        }
        if filled < len {
            let at = off.saturating_add(u64_of(filled));
            self.short_at = Some(self.short_at.map_or(at, |s| s.min(at)));
        }
        buf.truncate(filled);
        self.read += u64_of(filled);
        Ok(buf)
    }

    fn load(&mut self) -> io::Result<()> {
        self.head = self.raw_read(0, usize::try_from(HEAD_LEN).unwrap_or(MAX_CHUNK))?;
        let head_len = u64_of(self.head.len());
        if self.size <= head_len {
            self.tail = self.head.clone();
            self.tail_off = 0;
        } else {
            let start = self.size.saturating_sub(TAIL_LEN).max(head_len);
            let len = usize::try_from(self.size - start).unwrap_or(MAX_CHUNK);
            self.tail = self.raw_read(start, len)?;
            self.tail_off = start;
        }
        Ok(())
    }

    /// `len` bytes at `off`, served from the caches when possible.
    fn bytes(&mut self, off: u64, len: usize) -> io::Result<Vec<u8>> {
        let end = off.saturating_add(u64_of(len)).min(self.size);
        if end <= off {
            return Ok(Vec::new());
        }
        if end <= u64_of(self.head.len()) {
            return Ok(self.head[off as usize..end as usize].to_vec());
        }
        let tail_end = self.tail_off + u64_of(self.tail.len());
        if off >= self.tail_off && end <= tail_end {
            let a = (off - self.tail_off) as usize;
            let b = (end - self.tail_off) as usize;
            return Ok(self.tail[a..b].to_vec());
        }
        self.raw_read(off, len)
    }

    /// Number of zero bytes at the very end of the file (within the tail window).
    fn zero_tail(&self) -> u64 {
        if u64_of(self.tail.len()) + self.tail_off != self.size {
            return 0; // short read: the tail is not the file's end
        }
        u64_of(self.tail.iter().rev().take_while(|&&b| b == 0).count())
    }

    /// Whether the whole tail window is zero bytes (so the run may be longer).
    fn zero_tail_saturated(&self) -> bool {
        !self.tail.is_empty() && self.zero_tail() == u64_of(self.tail.len())
    }

    fn zero_tail_text(&self) -> String {
        let z = self.zero_tail();
        if self.zero_tail_saturated() && self.size > z {
            format!("zero-filled tail of at least {z} bytes")
        } else {
            format!("zero-filled tail of {z} bytes")
        }
    }

    /// `Truncated` for a missing end marker, refined when the file ends in zero bytes.
    fn end_missing(&self, fmt: &str, msg: String) -> Verdict {
        if self.zero_tail() >= ZERO_TAIL_MIN {
            Verdict::Truncated(format!("{fmt}: {}; {msg}", self.zero_tail_text()))
        } else {
            Verdict::Truncated(format!("{fmt}: {msg}"))
        }
    }

    fn last_bytes(&self, n: usize) -> &[u8] {
        let t = &self.tail;
        &t[t.len().saturating_sub(n)..]
    }
}

// ---------------------------------------------------------------------------------------------
// Detection.

const PNG_SIG: &[u8] = b"\x89PNG\r\n\x1a\n";
const PNG_IEND: &[u8] = b"\x00\x00\x00\x00IEND\xae\x42\x60\x82";

fn xml_start(head: &[u8]) -> &[u8] {
    let b = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(head);
    let ws = b
        .iter()
        .take_while(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
        .count();
    &b[ws..]
}

fn bmff_brand(head: &[u8]) -> Format {
    let Some(major) = head.get(8..12) else {
        return Format::Mp4;
    };
    let box_len = be32(head, 0)
        .map_or(0, |s| s as usize)
        .min(head.len())
        .min(4096);
    let compat: Vec<&[u8]> = head
        .get(16..box_len)
        .unwrap_or(&[])
        .chunks_exact(4)
        .collect();
    const HEIF: [&[u8]; 7] = [
        b"heic", b"heix", b"mif1", b"msf1", b"heim", b"heis", b"hevc",
    ];
    const AVIF: [&[u8]; 2] = [b"avif", b"avis"];
    match major {
        b"crx " => Format::Raw,
        m if AVIF.contains(&m) => Format::Avif,
        b"mif1" | b"msf1" if compat.iter().any(|c| AVIF.contains(c)) => Format::Avif,
        m if HEIF.contains(&m) => Format::Heif,
        _ => Format::Mp4,
    }
}

fn tiff_has_dng_tag(head: &[u8]) -> bool {
    let e = Endian {
        little: head.starts_with(b"II"),
    };
    let Some(off) = e.u32(head, 4) else {
        return false;
    };
    let off = off as usize;
    let Some(n) = e.u16(head, off) else {
        return false;
    };
    (0..n as usize).any(|i| {
        off.checked_add(2 + 12 * i)
            .and_then(|p| e.u16(head, p))
            .is_some_and(|tag| tag == 0xC612)
    })
}

/// Detect the format from the first bytes of a file (64 KiB is plenty; 16 is usually enough).
pub fn detect(head: &[u8]) -> Format {
    if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Format::Jpeg;
    }
    if head.starts_with(PNG_SIG) {
        return Format::Png;
    }
    if head.starts_with(b"RIFF") && head.get(8..12) == Some(b"WEBP") {
        return Format::WebP;
    }
    if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        return Format::Gif;
    }
    if head.get(4..8) == Some(b"ftyp") {
        return bmff_brand(head);
    }
    if let Some(t) = head.get(4..8) {
        // Old QuickTime movies without ftyp.
        let qt = [b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"];
        if qt.iter().any(|q| q[..] == *t) && be32(head, 0).is_some_and(|s| s == 0 || s >= 8) {
            return Format::Mp4;
        }
    }
    if head.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
        return Format::Matroska;
    }
    if head.starts_with(b"FUJIFILMCCD-RAW")
        || head.starts_with(b"IIRO")
        || head.starts_with(b"IIRS")
        || head.starts_with(b"MMOR")
        || head.starts_with(b"IIU\0")
        || head.starts_with(b"FOVb")
        || (head.starts_with(b"II\x1a\0") && head.get(6..14) == Some(b"HEAPCCDR"))
    {
        return Format::Raw;
    }
    if head.starts_with(b"II*\0") || head.starts_with(b"MM\0*") {
        if head.get(8..10) == Some(b"CR") || tiff_has_dng_tag(head) {
            return Format::Raw;
        }
        return Format::Tiff;
    }
    if head.starts_with(b"II+\0") || head.starts_with(b"MM\0+") {
        return Format::Tiff;
    }
    let x = xml_start(head);
    for p in [&b"<?xpacket"[..], b"<?xml", b"<x:xmpmeta", b"<x:xapmeta"] {
        if x.starts_with(p) {
            return Format::Xmp;
        }
    }
    Format::Unknown
}

/// Width and height from a PNG's IHDR chunk.
pub fn png_dimensions(head: &[u8]) -> Option<(u32, u32)> {
    if !head.starts_with(PNG_SIG) || head.get(12..16) != Some(b"IHDR") {
        return None;
    }
    Some((be32(head, 16)?, be32(head, 20)?))
}

// ---------------------------------------------------------------------------------------------
// The check.

/// Run the `quick` check on `r`, whose length is `size`. `extension` (without dot) only
/// produces a note when it disagrees with the content.
pub fn check<R: ReadAt + ?Sized>(
    r: &R,
    size: u64,
    extension: Option<&str>,
) -> io::Result<QuickReport> {
    let ext_format = extension.and_then(Format::from_extension);
    if size == 0 {
        return Ok(QuickReport {
            format: ext_format.unwrap_or(Format::Unknown),
            verdict: Verdict::Truncated("empty".into()),
            bytes_read: 0,
            note: None,
            jpeg: None,
        });
    }
    let mut src = Src::new(r, size);
    src.load()?;
    let mut format = detect(&src.head);
    if format == Format::Tiff && ext_format == Some(Format::Raw) {
        format = Format::Raw;
    }
    let mut notes: Vec<String> = Vec::new();
    let mut jpeg = None;
    let mut verdict = match format {
        Format::Jpeg => check_jpeg(&mut src, &mut notes, jpeg.insert(JpegFrame::default()))?,
        Format::Png => check_png(&src, &mut notes),
        Format::WebP => check_webp(&mut src, &mut notes)?,
        Format::Gif => check_gif(&src),
        Format::Heif | Format::Avif | Format::Mp4 => check_bmff(&mut src, format, &mut notes)?,
        Format::Raw if src.head.get(4..8) == Some(b"ftyp") => {
            check_bmff(&mut src, format, &mut notes)?
        }
        Format::Raw if src.head.starts_with(b"FUJIFILMCCD-RAW") => check_raf(&src, &mut notes),
        Format::Tiff | Format::Raw
            if (src.head.starts_with(b"II") || src.head.starts_with(b"MM"))
                && src.head.get(6..14) != Some(b"HEAPCCDR") =>
        {
            check_tiff(&mut src, &mut notes)?
        }
        Format::Tiff | Format::Raw => {
            notes.push("end not verifiable for this RAW format".into());
            Verdict::Ok
        }
        Format::Matroska => check_matroska(&mut src, &mut notes)?,
        Format::Xmp => check_xmp(&src),
        Format::Unknown => {
            if src.head.iter().all(|&b| b == 0) && !src.head.is_empty() {
                Verdict::Truncated(format!(
                    "zero-filled: the first {} bytes are all zero",
                    src.head.len()
                ))
            } else {
                let n = src.head.len().min(16);
                Verdict::Corrupt(format!(
                    "unknown format: first bytes {}",
                    hex(&src.head[..n])
                ))
            }
        }
    };
    // A container whose structure checks out but whose whole tail window is zero bytes was
    // most likely preallocated and never fully written.
    if verdict.is_ok() {
        let z = src.zero_tail();
        let suspect = match format {
            // Only compressed data can end such a file: a long zero run means unwritten space.
            Format::Heif | Format::Avif | Format::WebP | Format::Matroska => z >= ZERO_TAIL_SUSPECT,
            // MP4/MOV may end with uncompressed PCM audio: demand the whole tail window.
            Format::Mp4 => src.zero_tail_saturated() && z >= TAIL_LEN.min(ZERO_TAIL_SUSPECT * 4),
            _ => false,
        };
        if suspect {
            verdict = Verdict::Truncated(format!("{}: {}", format.name(), src.zero_tail_text()));
        } else if matches!(format, Format::Tiff | Format::Raw) && z >= ZERO_TAIL_SUSPECT {
            notes.push(src.zero_tail_text());
        }
    }
    if let Some(at) = src.short_at {
        verdict = Verdict::Truncated(format!(
            "file ended at byte {at} but its size is {size} (shrank while being checked?)"
        ));
    }
    if src.budget_exhausted {
        notes.push("read budget exhausted; check incomplete".into());
    }
    if let (Some(ext), Some(ef)) = (extension, ext_format) {
        if ef != format && format != Format::Unknown {
            let ext = ext.strip_prefix('.').unwrap_or(ext);
            notes.push(format!("extension .{ext} but content is {}", format.name()));
        }
    }
    Ok(QuickReport {
        format,
        verdict,
        bytes_read: src.read,
        note: if notes.is_empty() {
            None
        } else {
            Some(notes.join("; "))
        },
        jpeg,
    })
}

// ---------------------------------------------------------------------------------------------
// JPEG

/// Where the JPEG stream must end, according to metadata.
struct JpegEnd {
    /// Offset right after the primary image's EOI.
    end: u64,
    /// Zero/padding bytes allowed between EOI and `end`.
    padding: u64,
    what: String,
    /// Embedded items to check: (start, end, is_video, is_jpeg).
    items: Vec<(u64, u64, bool, bool)>,
}

/// Value of an XMP property written as an attribute (`name="v"`) or element (`<name>v</name>`).
fn xmp_value<'s>(s: &'s str, name: &str) -> Option<&'s str> {
    let mut from = 0;
    while let Some(i) = s.get(from..)?.find(name) {
        let at = from + i;
        let before = s[..at].chars().next_back();
        let rest = &s[at + name.len()..];
        from = at + name.len();
        if before == Some('<') {
            if let Some(v) = rest.strip_prefix('>') {
                let end = v.find('<')?;
                return Some(v[..end].trim());
            }
            continue;
        }
        let r = rest.trim_start();
        if let Some(r) = r.strip_prefix('=') {
            let r = r.trim_start();
            let q = r.chars().next()?;
            if q == '"' || q == '\'' {
                let v = &r[1..];
                let end = v.find(q)?;
                return Some(v[..end].trim());
            }
        }
    }
    None
}

fn parse_u64(s: Option<&str>) -> Option<u64> {
    s?.trim().parse().ok()
}

/// Items of a `Container:Directory`, in order: (mime, semantic, length, padding).
fn container_items(xmp: &str) -> Vec<(String, String, u64, u64)> {
    let mut out = Vec::new();
    let Some(dir) = xmp.find("Container:Directory") else {
        return out;
    };
    let body = &xmp[dir..];
    let body = match body.get(1..).and_then(|b| b.find("Container:Directory")) {
        Some(e) => &body[..e + 1],
        None => body,
    };
    let parts = body.split("<Container:Item").skip(1);
    for p in parts {
        if out.len() >= 32 {
            break;
        }
        let p = p.split("</Container:Item").next().unwrap_or(p);
        let mime = xmp_value(p, "Item:Mime").unwrap_or("").to_string();
        let sem = xmp_value(p, "Item:Semantic").unwrap_or("").to_string();
        let len = parse_u64(xmp_value(p, "Item:Length")).unwrap_or(0);
        let pad = parse_u64(xmp_value(p, "Item:Padding")).unwrap_or(0);
        out.push((mime, sem, len, pad));
    }
    out
}

fn motion_from_xmp(xmp: &str, size: u64) -> Option<Result<JpegEnd, String>> {
    let items = container_items(xmp);
    if items.len() > 1 {
        let secondary: u64 = items[1..].iter().fold(0u64, |a, i| a.saturating_add(i.2));
        if secondary > 0 {
            let padding = items.iter().fold(0u64, |a, i| a.saturating_add(i.3));
            if secondary > size {
                return Some(Err(format!(
                    "jpeg: XMP Container items declare {secondary} bytes after the image but the file has {size}"
                )));
            }
            let end = size - secondary;
            let mut list = Vec::new();
            let mut pos = end;
            let mut video = 0u64;
            for (mime, sem, len, _) in &items[1..] {
                let is_video = mime.starts_with("video/") || sem == "MotionPhoto";
                let is_jpeg = mime == "image/jpeg";
                if is_video {
                    video = video.saturating_add(*len);
                }
                let e = pos.saturating_add(*len).min(size);
                list.push((pos, e, is_video, is_jpeg));
                pos = e;
            }
            let what = if video > 0 {
                format!("motion photo: {video} bytes of video after EOI")
            } else {
                format!("{secondary} bytes of embedded items after EOI")
            };
            return Some(Ok(JpegEnd {
                end,
                padding,
                what,
                items: list,
            }));
        }
    }
    let off = parse_u64(xmp_value(xmp, "GCamera:MicroVideoOffset"))?;
    if off == 0 {
        return None;
    }
    if off > size {
        return Some(Err(format!(
            "jpeg: MicroVideoOffset {off} is larger than the file ({size} bytes)"
        )));
    }
    Some(Ok(JpegEnd {
        end: size - off,
        padding: 0,
        what: format!("motion photo: {off} bytes of video after EOI"),
        items: vec![(size - off, size, true, false)],
    }))
}

/// Samsung trailer: `... SEFH ver count {12-byte entries} dirlen(LE) "SEFT"`.
fn samsung_trailer<R: ReadAt + ?Sized>(src: &mut Src<'_, R>) -> io::Result<Option<u64>> {
    let last = src.last_bytes(8).to_vec();
    if last.len() < 8 || &last[4..8] != b"SEFT" {
        return Ok(None);
    }
    let dir_len = u64::from(le32(&last, 0).unwrap_or(0));
    let Some(dir) = src.size.checked_sub(8).and_then(|v| v.checked_sub(dir_len)) else {
        return Ok(None);
    };
    let d = src.bytes(dir, 12)?;
    if d.get(0..4) != Some(b"SEFH") {
        return Ok(None);
    }
    let count = u64::from(le32(&d, 8).unwrap_or(0)).min(64);
    let ents = src.bytes(dir + 12, usize::try_from(count * 12).unwrap_or(0))?;
    let mut start = dir;
    for e in ents.chunks_exact(12) {
        let back = u64::from(le32(e, 4).unwrap_or(0));
        if let Some(s) = dir.checked_sub(back) {
            start = start.min(s);
        }
    }
    Ok(Some(start))
}

/// `frame` collects what the headers declare, as far as the walk got.
fn check_jpeg<R: ReadAt + ?Sized>(
    src: &mut Src<'_, R>,
    notes: &mut Vec<String>,
    frame: &mut JpegFrame,
) -> io::Result<Verdict> {
    let size = src.size;
    let ends_ffd9 = src.last_bytes(2) == [0xFF, 0xD9];
    // Walk the marker segments up to SOS.
    let mut p: u64 = 2;
    let mut sof = false;
    let mut xmp: Option<String> = None;
    let mut extra_reads = 0;
    let mut sos_at = None;
    let mut cut = false;
    for _ in 0..MAX_JPEG_SEGMENTS {
        let h = src.bytes(p, 4)?;
        if h.len() < 2 {
            cut = true;
            break;
        }
        if h[0] != 0xFF {
            return Ok(Verdict::Corrupt(format!(
                "jpeg: expected a marker at {p}, found {}",
                hex(&h[..2])
            )));
        }
        let m = h[1];
        match m {
            0xFF => {
                p += 1;
                continue;
            }
            0x01 | 0xD0..=0xD7 => {
                p += 2;
                continue;
            }
            0xD8 | 0xD9 | 0x00 => {
                return Ok(Verdict::Corrupt(format!(
                    "jpeg: unexpected marker FF{m:02X} at {p} before the first scan"
                )));
            }
            _ => {}
        }
        let Some(len) = be16(&h, 2) else {
            cut = true;
            break;
        };
        if len < 2 {
            return Ok(Verdict::Corrupt(format!(
                "jpeg: segment FF{m:02X} at {p} has invalid length {len}"
            )));
        }
        let seg_end = p + 2 + u64::from(len);
        if seg_end > size {
            let msg = format!(
                "jpeg: segment FF{m:02X} at {p} declares {len} bytes, past end of file {size}"
            );
            return Ok(if ends_ffd9 {
                Verdict::Corrupt(msg)
            } else {
                Verdict::Truncated(msg)
            });
        }
        if m == 0xC4 {
            frame.huffman_tables = true;
        }
        if matches!(m, 0xC0..=0xCF) && !matches!(m, 0xC4 | 0xC8 | 0xCC) {
            let f = src.bytes(p + 4, 6)?;
            if len < 8 || be16(&f, 3) == Some(0) {
                return Ok(Verdict::Corrupt(format!(
                    "jpeg: frame header FF{m:02X} at {p} is invalid (length {len}, width 0?)"
                )));
            }
            if !sof {
                if let (Some(h), Some(w)) = (be16(&f, 1), be16(&f, 3)) {
                    frame.size = Some((u32::from(w), u32::from(h)));
                }
            }
            sof = true;
        }
        if m == 0xE1 && xmp.is_none() {
            const NS: &[u8] = b"http://ns.adobe.com/xap/1.0/\0";
            let in_head = seg_end <= u64_of(src.head.len());
            if in_head || extra_reads < 1 {
                if !in_head {
                    extra_reads += 1;
                }
                let seg = src.bytes(p + 4, usize::from(len - 2))?;
                if let Some(body) = seg.strip_prefix(NS) {
                    xmp = Some(String::from_utf8_lossy(body).into_owned());
                }
            }
        }
        if m == 0xDA {
            sos_at = Some(p);
            break;
        }
        p = seg_end;
    }
    let Some(sos) = sos_at else {
        if cut || p + 2 > size {
            return Ok(src.end_missing("jpeg", format!("file ends at {size} inside the headers")));
        }
        return Ok(Verdict::Corrupt(format!(
            "jpeg: no start of scan (SOS) within the first {MAX_JPEG_SEGMENTS} segments"
        )));
    };
    if !sof {
        return Ok(Verdict::Corrupt(format!(
            "jpeg: scan at {sos} without a frame header (SOF)"
        )));
    }
    let meta = match xmp.as_deref().and_then(|x| motion_from_xmp(x, size)) {
        Some(Err(msg)) => return Ok(Verdict::Truncated(msg)),
        Some(Ok(m)) => Some(m),
        None => samsung_trailer(src)?.map(|s| JpegEnd {
            end: s,
            padding: 0,
            what: format!("Samsung trailer: {} bytes after EOI", size - s),
            items: Vec::new(),
        }),
    };
    let (end, padding) = meta.as_ref().map_or((size, 0), |m| (m.end, m.padding));
    if end < sos + 4 {
        return Ok(Verdict::Truncated(format!(
            "jpeg: metadata puts the end of the image at {end}, before its scan data at {sos} (file of {size} bytes)"
        )));
    }
    // Look for EOI right before `end`, allowing declared padding or zero bytes.
    let win_len = 256u64.saturating_add(padding.min(4096)).min(end);
    let win_start = end - win_len;
    let w = src.bytes(win_start, usize::try_from(win_len).unwrap_or(0))?;
    let eoi = rfind(&w, &[0xFF, 0xD9]);
    let ok_at = eoi.filter(|&i| {
        let after = &w[i + 2..];
        u64_of(after.len()) <= padding || after.iter().all(|&b| b == 0)
    });
    match (ok_at, &meta) {
        (Some(i), _) => {
            let pad = w.len() - i - 2;
            if pad > 0 {
                notes.push(format!("{pad} bytes of padding after EOI"));
            }
        }
        (None, Some(m)) => {
            if src.zero_tail() >= ZERO_TAIL_MIN {
                return Ok(src.end_missing(
                    "jpeg",
                    format!("no EOI (FFD9) right before offset {end} ({})", m.what),
                ));
            }
            return Ok(Verdict::Truncated(format!(
                "jpeg: no EOI (FFD9) right before offset {end} where the metadata puts the end of the image ({})",
                m.what
            )));
        }
        (None, None) => {
            // A complete JPEG followed by more zero padding than the window shows.
            let z = src.zero_tail();
            if z >= 2 && !src.zero_tail_saturated() {
                if let Some(at) = size.checked_sub(z + 2) {
                    if src.bytes(at, 2)? == [0xFF, 0xD9] {
                        notes.push(format!("{z} bytes of zero padding after EOI"));
                        return Ok(Verdict::Ok);
                    }
                }
            }
            if let Some(i) = eoi.filter(|_| src.zero_tail() < ZERO_TAIL_MIN) {
                let at = win_start + u64_of(i);
                let n = size - at - 2;
                return Ok(Verdict::Corrupt(format!(
                    "jpeg: {n} bytes of unexplained data after EOI at {at}"
                )));
            }
            let last = src.last_bytes(2).to_vec();
            let msg = if src.zero_tail() >= ZERO_TAIL_MIN {
                "no EOI (FFD9) at end".to_string()
            } else {
                format!("no EOI (FFD9) at end (last bytes {})", hex(&last))
            };
            return Ok(src.end_missing("jpeg", msg));
        }
    }
    if let Some(m) = meta {
        for (s, e, is_video, is_jpeg) in m.items {
            if is_video {
                let head = src.bytes(s, 8)?;
                if head.get(4..8) == Some(b"ftyp") {
                    let w = walk_boxes(src, s, e, "jpeg: motion photo video", MAX_EMBEDDED_BOXES)?;
                    if let Some(v) = w.verdict {
                        return Ok(v);
                    }
                    if !w.moov && !w.capped {
                        return Ok(Verdict::Corrupt(
                            "jpeg: motion photo video has no moov box".into(),
                        ));
                    }
                } else {
                    return Ok(Verdict::Corrupt(format!(
                        "jpeg: motion photo video at {s} does not start with an ftyp box (found {})",
                        hex(&head)
                    )));
                }
            } else if is_jpeg && e >= s + 4 {
                let a = src.bytes(s, 2)?;
                let b = src.bytes(e - 2, 2)?;
                if a != [0xFF, 0xD8] || b != [0xFF, 0xD9] {
                    return Ok(Verdict::Truncated(format!(
                        "jpeg: embedded JPEG item at {s}..{e} lacks SOI/EOI"
                    )));
                }
            }
        }
        notes.push(m.what);
    }
    Ok(Verdict::Ok)
}

// ---------------------------------------------------------------------------------------------
// PNG, GIF, WebP

fn check_png<R: ReadAt + ?Sized>(src: &Src<'_, R>, notes: &mut Vec<String>) -> Verdict {
    let h = &src.head;
    if h.len() < 33 {
        return Verdict::Truncated(format!(
            "png: file of {} bytes too short for IHDR",
            src.size
        ));
    }
    if be32(h, 8) != Some(13) || h.get(12..16) != Some(b"IHDR") {
        return Verdict::Corrupt("png: first chunk is not a 13-byte IHDR".into());
    }
    if let Some((w, hh)) = png_dimensions(h) {
        if w == 0 || hh == 0 {
            return Verdict::Corrupt(format!("png: IHDR declares {w}x{hh}"));
        }
    }
    if src.last_bytes(12) == PNG_IEND {
        return Verdict::Ok;
    }
    if let Some(i) = rfind(&src.tail, PNG_IEND) {
        let n = src.tail.len() - i - 12;
        if src.zero_tail() < u64_of(n) || n < 1 {
            return Verdict::Corrupt(format!("png: {n} bytes of data after the IEND chunk"));
        }
        notes.push(format!("{n} bytes of zero padding after IEND"));
        return Verdict::Ok;
    }
    src.end_missing("png", "IEND chunk missing".into())
}

fn check_gif<R: ReadAt + ?Sized>(src: &Src<'_, R>) -> Verdict {
    if src.size < 14 {
        return Verdict::Truncated(format!("gif: file of {} bytes too short", src.size));
    }
    if src.last_bytes(1) == [0x3B] {
        Verdict::Ok
    } else {
        src.end_missing("gif", "trailer (3B) missing at end".into())
    }
}

fn check_webp<R: ReadAt + ?Sized>(
    src: &mut Src<'_, R>,
    notes: &mut Vec<String>,
) -> io::Result<Verdict> {
    let size = src.size;
    let Some(riff) = le32(&src.head, 4) else {
        return Ok(Verdict::Truncated("webp: file too short".into()));
    };
    let declared = u64::from(riff) + 8;
    let mut end = declared;
    if declared > size {
        return Ok(Verdict::Truncated(format!(
            "webp: RIFF length {declared} != file length {size}"
        )));
    }
    if declared < size {
        if riff % 2 == 1 && declared + 1 == size {
            notes.push("odd RIFF length with pad byte".into());
            end = size;
        } else {
            return Ok(Verdict::Corrupt(format!(
                "webp: RIFF length {declared} != file length {size}"
            )));
        }
    }
    let mut p: u64 = 12;
    let mut n = 0usize;
    while p < declared {
        if n >= 4096 {
            notes.push("chunk walk stopped after 4096 chunks".into());
            return Ok(Verdict::Ok);
        }
        let h = src.bytes(p, 8)?;
        if h.len() < 8 {
            return Ok(Verdict::Corrupt(format!(
                "webp: {} stray bytes at {p}, too short for a chunk header",
                declared - p
            )));
        }
        let tag = &h[0..4];
        if !tag.iter().all(|c| (0x20..0x7f).contains(c)) {
            return Ok(Verdict::Corrupt(format!(
                "webp: invalid chunk header at {p} ({})",
                hex(&h)
            )));
        }
        if n == 0 && !matches!(tag, b"VP8 " | b"VP8L" | b"VP8X") {
            return Ok(Verdict::Corrupt(format!(
                "webp: first chunk is {}, not VP8/VP8L/VP8X",
                fourcc(tag)
            )));
        }
        let len = u64::from(le32(&h, 4).unwrap_or(0));
        let next = p + 8 + len + (len & 1);
        if next > end && p + 8 + len != declared {
            return Ok(Verdict::Corrupt(format!(
                "webp: chunk {} at {p} declares {len} bytes, past the RIFF end {declared}",
                fourcc(tag)
            )));
        }
        p = next;
        n += 1;
    }
    if n == 0 {
        return Ok(Verdict::Corrupt("webp: no image chunk".into()));
    }
    Ok(Verdict::Ok)
}

// ---------------------------------------------------------------------------------------------
// ISO BMFF

struct Walk {
    /// `Some` if the boxes do not tile the range.
    verdict: Option<Verdict>,
    moov: bool,
    meta: bool,
    capped: bool,
}

fn valid_box_type(t: &[u8]) -> bool {
    t.len() == 4 && t.iter().all(|&c| (0x20..0x7f).contains(&c) || c == 0xA9)
}

fn walk_boxes<R: ReadAt + ?Sized>(
    src: &mut Src<'_, R>,
    start: u64,
    end: u64,
    label: &str,
    max_boxes: usize,
) -> io::Result<Walk> {
    let mut w = Walk {
        verdict: None,
        moov: false,
        meta: false,
        capped: false,
    };
    let zero_from = if end == src.size {
        src.size - src.zero_tail()
    } else {
        u64::MAX
    };
    let mut off = start;
    let mut n = 0usize;
    while off < end {
        if n >= max_boxes {
            w.capped = true;
            break;
        }
        let rem = end - off;
        if off >= zero_from && rem >= ZERO_TAIL_MIN.min(8) {
            w.verdict = Some(Verdict::Truncated(format!(
                "{label}: {} at {off} where a box header should be",
                src.zero_tail_text()
            )));
            break;
        }
        if rem < 8 {
            w.verdict = Some(Verdict::Corrupt(format!(
                "{label}: {rem} stray bytes at {off}, too short for a box header"
            )));
            break;
        }
        let h = src.bytes(off, 16)?;
        if h.len() < 8 {
            break; // short read; reported by the caller
        }
        let typ = &h[4..8];
        if !valid_box_type(typ) {
            w.verdict = Some(Verdict::Corrupt(format!(
                "{label}: invalid box header at {off} ({})",
                hex(&h[..8])
            )));
            break;
        }
        let name = fourcc(typ);
        let size32 = be32(&h, 0).unwrap_or(0);
        let box_len = match size32 {
            0 => rem,
            1 => match be64(&h, 8) {
                Some(l) if l >= 16 => l,
                Some(l) => {
                    w.verdict = Some(Verdict::Corrupt(format!(
                        "{label}: box {name} at {off} has invalid 64-bit size {l}"
                    )));
                    break;
                }
                None => {
                    w.verdict = Some(Verdict::Truncated(format!(
                        "{label}: box {name} at {off}: 64-bit size cut by end of file {end}"
                    )));
                    break;
                }
            },
            s if s < 8 => {
                w.verdict = Some(Verdict::Corrupt(format!(
                    "{label}: box {name} at {off} has invalid size {s}"
                )));
                break;
            }
            s => u64::from(s),
        };
        match typ {
            b"moov" => w.moov = true,
            b"meta" => w.meta = true,
            _ => {}
        }
        match off.checked_add(box_len) {
            Some(e) if e <= end => off = e,
            _ => {
                w.verdict = Some(Verdict::Truncated(format!(
                    "{label}: box {name} at {off} declares {box_len} bytes past end of file {end}"
                )));
                break;
            }
        }
        n += 1;
    }
    Ok(w)
}

fn check_bmff<R: ReadAt + ?Sized>(
    src: &mut Src<'_, R>,
    format: Format,
    notes: &mut Vec<String>,
) -> io::Result<Verdict> {
    let label = format.name();
    let size = src.size;
    let w = walk_boxes(src, 0, size, label, MAX_BOXES)?;
    if w.capped {
        notes.push(format!(
            "box walk stopped after {MAX_BOXES} boxes; end not verified"
        ));
    }
    let needs_moov = matches!(format, Format::Mp4 | Format::Raw);
    let (has_index, missing) = if needs_moov {
        (
            w.moov,
            "no moov box (file cut before the index was written?)",
        )
    } else {
        (w.meta || w.moov, "no meta box")
    };
    Ok(match w.verdict {
        Some(Verdict::Truncated(m)) if !has_index => Verdict::Truncated(format!("{m}; {missing}")),
        Some(v) => v,
        None if !has_index && !w.capped => Verdict::Corrupt(format!("{label}: {missing}")),
        None => Verdict::Ok,
    })
}

// ---------------------------------------------------------------------------------------------
// Matroska

/// EBML variable-length integer at `p`: (raw value with marker bit for IDs / value without
/// it for sizes, length, all-ones).
fn vint(b: &[u8], p: usize, keep_marker: bool) -> Option<(u64, usize, bool)> {
    let first = *b.get(p)?;
    if first == 0 {
        return None;
    }
    let len = first.leading_zeros() as usize + 1;
    let s = b.get(p..p.checked_add(len)?)?;
    let mask = if len == 8 { 0 } else { 0xFFu8 >> len };
    let mut v = u64::from(if keep_marker { first } else { first & mask });
    let mut ones = (first & mask) == mask;
    for &x in &s[1..] {
        v = (v << 8) | u64::from(x);
        ones &= x == 0xFF;
    }
    Some((v, len, ones))
}

fn check_matroska<R: ReadAt + ?Sized>(
    src: &mut Src<'_, R>,
    notes: &mut Vec<String>,
) -> io::Result<Verdict> {
    let size = src.size;
    let h = &src.head;
    let Some((_, il, _)) = vint(h, 0, true) else {
        return Ok(Verdict::Corrupt("matroska: bad EBML header id".into()));
    };
    let Some((hsize, sl, unknown)) = vint(h, il, false) else {
        return Ok(Verdict::Truncated("matroska: EBML header cut".into()));
    };
    if unknown {
        return Ok(Verdict::Corrupt(
            "matroska: EBML header of unknown size".into(),
        ));
    }
    let body = (il + sl) as u64;
    let Some(hend) = body.checked_add(hsize).filter(|&e| e <= size) else {
        return Ok(Verdict::Truncated(format!(
            "matroska: EBML header declares {hsize} bytes past end of file {size}"
        )));
    };
    if hend > u64_of(h.len()) {
        return Ok(Verdict::Corrupt(format!(
            "matroska: EBML header implausibly large ({hsize} bytes)"
        )));
    }
    // The header's children must tile it.
    let mut q = body as usize;
    let hend_u = hend as usize;
    while q < hend_u {
        let ok = vint(h, q, true).and_then(|(_, l, _)| {
            let (sz, l2, _) = vint(h, q + l, false)?;
            let e = (q + l + l2).checked_add(usize::try_from(sz).ok()?)?;
            (e <= hend_u).then_some(e)
        });
        match ok {
            Some(e) => q = e,
            None => {
                return Ok(Verdict::Corrupt(format!(
                    "matroska: malformed EBML header element at {q}"
                )))
            }
        }
    }
    if let Some(i) = find(&h[..hend_u], &[0x42, 0x82]) {
        if let Some((l, ll, _)) = vint(h, i + 2, false) {
            let s = i + 2 + ll;
            if let Some(dt) = h.get(s..s + (l.min(32) as usize)) {
                let dt = fourcc(dt);
                if dt != "webm" && dt != "matroska" {
                    notes.push(format!("EBML DocType {dt}"));
                }
            }
        }
    }
    let mut p = hend;
    for _ in 0..16 {
        if p >= size {
            return Ok(Verdict::Truncated(format!(
                "matroska: file ends at {size} before the Segment"
            )));
        }
        let e = src.bytes(p, 16)?;
        let Some((id, il, _)) = vint(&e, 0, true) else {
            return Ok(Verdict::Corrupt(format!(
                "matroska: invalid element id at {p}"
            )));
        };
        let Some((len, sl, unknown)) = vint(&e, il, false) else {
            return Ok(Verdict::Truncated(format!("matroska: element at {p} cut")));
        };
        let data = p + (il + sl) as u64;
        if id == 0xEC {
            p = match data.checked_add(len) {
                Some(x) => x,
                None => {
                    return Ok(Verdict::Truncated(format!(
                        "matroska: Void at {p} too large"
                    )))
                }
            };
            continue;
        }
        if id != 0x1853_8067 {
            return Ok(Verdict::Corrupt(format!(
                "matroska: expected Segment at {p}, found element id {id:X}"
            )));
        }
        if unknown {
            notes.push("Segment of unknown size (live recording); end not verifiable".into());
            return Ok(Verdict::Ok);
        }
        let Some(end) = data.checked_add(len).filter(|&e| e <= size) else {
            return Ok(Verdict::Truncated(format!(
                "matroska: Segment at {p} declares {len} bytes past end of file {size}"
            )));
        };
        if end == size {
            return Ok(Verdict::Ok);
        }
        let after = src.bytes(end, 4)?;
        if after.first() == Some(&0xEC) || after == [0x1A, 0x45, 0xDF, 0xA3] {
            notes.push(format!("{} bytes after the Segment", size - end));
            return Ok(Verdict::Ok);
        }
        if src.zero_tail() >= size - end {
            return Ok(Verdict::Truncated(format!(
                "matroska: {} after the Segment",
                src.zero_tail_text()
            )));
        }
        return Ok(Verdict::Corrupt(format!(
            "matroska: {} bytes of unexplained data after the Segment end at {end}",
            size - end
        )));
    }
    Ok(Verdict::Corrupt(
        "matroska: no Segment after the EBML header".into(),
    ))
}

// ---------------------------------------------------------------------------------------------
// TIFF / RAW

fn check_raf<R: ReadAt + ?Sized>(src: &Src<'_, R>, notes: &mut Vec<String>) -> Verdict {
    let h = &src.head;
    if h.len() < 108 {
        return Verdict::Truncated(format!(
            "raf: file of {} bytes too short for its header",
            src.size
        ));
    }
    for (name, at) in [("JPEG preview", 84), ("CFA header", 92), ("CFA data", 100)] {
        let off = u64::from(be32(h, at).unwrap_or(0));
        let len = u64::from(be32(h, at + 4).unwrap_or(0));
        if off + len > src.size {
            return Verdict::Truncated(format!(
                "raf: {name} at {off} with {len} bytes runs past end of file {}",
                src.size
            ));
        }
    }
    notes.push("end not verifiable for TIFF-based formats".into());
    Verdict::Ok
}

fn check_tiff<R: ReadAt + ?Sized>(
    src: &mut Src<'_, R>,
    notes: &mut Vec<String>,
) -> io::Result<Verdict> {
    let size = src.size;
    let h = src.head.clone();
    let e = Endian {
        little: h.starts_with(b"II"),
    };
    let big = e.u16(&h, 2) == Some(43);
    let first = if big {
        e.u64(&h, 8)
    } else {
        e.u32(&h, 4).map(u64::from)
    };
    let Some(first) = first else {
        return Ok(Verdict::Truncated(format!(
            "tiff: file of {size} bytes too short for its header"
        )));
    };
    let (cnt_len, ent_len, next_len) = if big { (8u64, 20u64, 8u64) } else { (2, 12, 4) };
    if first < 8 {
        return Ok(Verdict::Corrupt(format!(
            "tiff: first IFD offset {first} < 8"
        )));
    }
    let mut queue: Vec<u64> = vec![first];
    let mut seen: Vec<u64> = Vec::new();
    while let Some(ifd) = queue.pop() {
        if seen.len() >= 8 || seen.contains(&ifd) {
            continue;
        }
        let is_first = seen.is_empty();
        seen.push(ifd);
        if ifd.saturating_add(cnt_len) > size {
            if is_first {
                return Ok(Verdict::Truncated(format!(
                    "tiff: first IFD at {ifd} beyond end of file {size}"
                )));
            }
            return Ok(Verdict::Truncated(format!(
                "tiff: IFD at {ifd} beyond end of file {size}"
            )));
        }
        let c = src.bytes(ifd, cnt_len as usize)?;
        let count = if big {
            e.u64(&c, 0)
        } else {
            e.u16(&c, 0).map(u64::from)
        }
        .unwrap_or(0);
        if count == 0 && ifd >= size - src.zero_tail() {
            return Ok(Verdict::Truncated(format!(
                "tiff: {}; IFD at {ifd} lies in it",
                src.zero_tail_text()
            )));
        }
        if count == 0 {
            if is_first {
                return Ok(Verdict::Corrupt(format!(
                    "tiff: first IFD at {ifd} has no entries"
                )));
            }
            continue;
        }
        let ifd_end = count
            .checked_mul(ent_len)
            .and_then(|x| x.checked_add(ifd + cnt_len + next_len));
        match ifd_end {
            Some(x) if x <= size => {}
            _ => {
                return Ok(Verdict::Truncated(format!(
                    "tiff: IFD at {ifd} with {count} entries runs past end of file {size}"
                )))
            }
        }
        let n = count.min(256);
        let ents = src.bytes(ifd + cnt_len, usize::try_from(n * ent_len).unwrap_or(0))?;
        let nx = src.bytes(ifd + cnt_len + count * ent_len, next_len as usize)?;
        let next = if big {
            e.u64(&nx, 0)
        } else {
            e.u32(&nx, 0).map(u64::from)
        }
        .unwrap_or(0);
        if next != 0 {
            queue.push(next);
        }
        // Collect (tag -> (type, count, value-or-offset field)).
        let mut tags: Vec<(u16, u16, u64, Vec<u8>)> = Vec::new();
        for ent in ents.chunks_exact(ent_len as usize) {
            let tag = e.u16(ent, 0).unwrap_or(0);
            if matches!(tag, 0x111 | 0x117 | 0x144 | 0x145 | 0x201 | 0x202 | 0x14A) {
                let typ = e.u16(ent, 2).unwrap_or(0);
                let cnt = if big {
                    e.u64(ent, 4)
                } else {
                    e.u32(ent, 4).map(u64::from)
                }
                .unwrap_or(0);
                let field = ent[if big { 12 } else { 8 }..].to_vec();
                tags.push((tag, typ, cnt, field));
            }
        }
        // Read the last up-to-1024 values of a tag.
        let mut values = |tag: u16| -> io::Result<Vec<u64>> {
            let Some((_, typ, cnt, field)) = tags.iter().find(|t| t.0 == tag) else {
                return Ok(Vec::new());
            };
            let w: u64 = match typ {
                3 => 2,
                4 | 13 => 4,
                16..=18 => 8,
                _ => return Ok(Vec::new()),
            };
            let take = (*cnt).min(256);
            let inline = cnt.saturating_mul(w) <= u64_of(field.len());
            let data = if inline {
                field.clone()
            } else {
                let base = if big {
                    e.u64(field, 0)
                } else {
                    e.u32(field, 0).map(u64::from)
                }
                .unwrap_or(u64::MAX);
                let skip = (cnt - take) * w;
                src.bytes(
                    base.saturating_add(skip),
                    usize::try_from(take * w).unwrap_or(0),
                )?
            };
            Ok(data
                .chunks_exact(w as usize)
                .take(take as usize)
                .filter_map(|c| match w {
                    2 => e.u16(c, 0).map(u64::from),
                    4 => e.u32(c, 0).map(u64::from),
                    _ => e.u64(c, 0),
                })
                .collect())
        };
        for (o, l) in [(0x111, 0x117), (0x144, 0x145), (0x201, 0x202)] {
            let offs = values(o)?;
            let lens = values(l)?;
            for (a, b) in offs.iter().zip(lens.iter()) {
                if *b > 0 && a.saturating_add(*b) > size {
                    return Ok(Verdict::Truncated(format!(
                        "tiff: image data of IFD at {ifd} ({a}+{b}) runs past end of file {size}"
                    )));
                }
            }
        }
        for sub in values(0x14A)?.into_iter().take(4) {
            queue.push(sub);
        }
    }
    notes.push("end not verifiable for TIFF-based formats".into());
    Ok(Verdict::Ok)
}

// ---------------------------------------------------------------------------------------------
// XMP

fn check_xmp<R: ReadAt + ?Sized>(src: &Src<'_, R>) -> Verdict {
    let start = xml_start(&src.head);
    // Name of the root element: first `<name` that is not `<?` or `<!`.
    let mut root: Option<String> = None;
    let mut rest = start;
    while let Some(i) = find(rest, b"<") {
        let r = &rest[i + 1..];
        match r.first() {
            Some(b'?') | Some(b'!') => rest = r,
            Some(_) => {
                let n = r
                    .iter()
                    .take_while(|c| !matches!(c, b' ' | b'>' | b'/' | b'\t' | b'\r' | b'\n'))
                    .count();
                root = Some(String::from_utf8_lossy(&r[..n]).into_owned());
                break;
            }
            None => break,
        }
    }
    let t = &src.tail;
    let trimmed_len = t.len()
        - t.iter()
            .rev()
            .take_while(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n' | 0))
            .count();
    let t = &t[..trimmed_len];
    let mut closers: Vec<Vec<u8>> = vec![b"</x:xmpmeta>".to_vec(), b"</x:xapmeta>".to_vec()];
    if let Some(r) = root {
        closers.push(format!("</{r}>").into_bytes());
    }
    if closers.iter().any(|c| t.ends_with(c)) {
        return Verdict::Ok;
    }
    if t.ends_with(b"?>") {
        if let Some(i) = rfind(t, b"<?xpacket end=") {
            if find(&t[i..], b"?>").map(|j| i + j + 2) == Some(t.len()) {
                return Verdict::Ok;
            }
        }
    }
    src.end_missing("xmp", "document not closed".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    // ----- builders -------------------------------------------------------------------------

    /// Deterministic pseudo-random generator (xorshift64*).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: u64) -> u64 {
            if n == 0 {
                0
            } else {
                self.next() % n
            }
        }
    }

    fn seg(marker: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![0xFF, marker];
        v.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    fn xmp_app1(xmp: &str) -> Vec<u8> {
        let mut b = b"http://ns.adobe.com/xap/1.0/\0".to_vec();
        b.extend_from_slice(xmp.as_bytes());
        seg(0xE1, &b)
    }

    /// A syntactically plausible baseline JPEG: SOI, APP0, extra segments, DQT, SOF0, DHT, SOS,
    /// `scan` bytes of entropy data (no 0xFF), EOI.
    fn jpeg_with(extra: &[Vec<u8>], scan: usize) -> Vec<u8> {
        let mut v = vec![0xFF, 0xD8];
        v.extend(seg(0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"));
        for e in extra {
            v.extend_from_slice(e);
        }
        let mut dqt = vec![0u8];
        dqt.extend(std::iter::repeat_n(1u8, 64));
        v.extend(seg(0xDB, &dqt));
        v.extend(seg(
            0xC0,
            &[8, 0, 48, 0, 64, 3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1],
        ));
        let mut dht = vec![0u8, 0, 1];
        dht.extend([0u8; 14]);
        dht.push(0);
        v.extend(seg(0xC4, &dht));
        v.extend(seg(0xDA, &[3, 1, 0, 2, 0x11, 3, 0x11, 0, 63, 0]));
        let mut r = Rng(0x1234_5678);
        for _ in 0..scan {
            v.push((r.below(255)) as u8); // never 0xFF
        }
        v.extend([0xFF, 0xD9]);
        v
    }

    fn jpeg(scan: usize) -> Vec<u8> {
        jpeg_with(&[], scan)
    }

    fn bx(typ: &[u8; 4], payload_len: usize) -> Vec<u8> {
        let mut v = ((payload_len + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(typ);
        v.extend(std::iter::repeat_n(0x5Au8, payload_len));
        v
    }

    fn ftyp(major: &[u8; 4], compat: &[&[u8; 4]]) -> Vec<u8> {
        let mut p = major.to_vec();
        p.extend([0, 0, 2, 0]);
        for c in compat {
            p.extend_from_slice(*c);
        }
        let mut v = ((p.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(b"ftyp");
        v.extend(p);
        v
    }

    /// ftyp + mdat + moov (moov at the end, as without +faststart).
    fn mp4(mdat: usize) -> Vec<u8> {
        let mut v = ftyp(b"isom", &[b"isom", b"mp41"]);
        v.extend(bx(b"free", 0));
        v.extend(bx(b"mdat", mdat));
        v.extend(bx(b"moov", 200));
        v
    }

    fn png_chunk(typ: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut v = (data.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(typ);
        v.extend_from_slice(data);
        v.extend([0x11, 0x22, 0x33, 0x44]); // CRC not checked at this level
        v
    }

    fn png(w: u32, h: u32) -> Vec<u8> {
        let mut v = PNG_SIG.to_vec();
        let mut ihdr = w.to_be_bytes().to_vec();
        ihdr.extend(h.to_be_bytes());
        ihdr.extend([8, 2, 0, 0, 0]);
        v.extend(png_chunk(b"IHDR", &ihdr));
        v.extend(png_chunk(b"IDAT", &[0x78; 300]));
        v.extend_from_slice(PNG_IEND);
        v
    }

    fn webp(payload: usize) -> Vec<u8> {
        let mut body = b"WEBP".to_vec();
        body.extend(b"VP8L");
        body.extend((payload as u32).to_le_bytes());
        body.extend(std::iter::repeat_n(0x2Fu8, payload));
        if payload % 2 == 1 {
            body.push(0);
        }
        let mut v = b"RIFF".to_vec();
        v.extend((body.len() as u32).to_le_bytes());
        v.extend(body);
        v
    }

    fn gif() -> Vec<u8> {
        let mut v = b"GIF89a".to_vec();
        v.extend([1, 0, 1, 0, 0, 0, 0]);
        v.extend([0x2C, 0, 0, 0, 0, 1, 0, 1, 0, 0, 2, 2, 0x44, 0x01, 0]);
        v.push(0x3B);
        v
    }

    fn ebml_size(n: u64) -> Vec<u8> {
        // 8-byte size vint
        let mut v = n.to_be_bytes().to_vec();
        v[0] = 0x01;
        v
    }

    fn mkv(segment_payload: usize, declared: Option<u64>) -> Vec<u8> {
        let mut v = vec![0x1A, 0x45, 0xDF, 0xA3];
        let doctype = [0x42, 0x82, 0x84, b'w', b'e', b'b', b'm'];
        v.push(0x80 | doctype.len() as u8);
        v.extend(doctype);
        v.extend([0x18, 0x53, 0x80, 0x67]);
        match declared {
            Some(d) => v.extend(ebml_size(d)),
            None => v.extend([0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]),
        }
        v.extend(std::iter::repeat_n(0x42u8, segment_payload));
        v
    }

    /// Little-endian TIFF with one IFD holding one strip of `strip` bytes at offset 8.
    fn tiff(strip: u32, declared_strip: u32) -> Vec<u8> {
        let mut v = b"II*\0".to_vec();
        let ifd = 8 + strip;
        v.extend(ifd.to_le_bytes());
        v.extend(std::iter::repeat_n(0x80u8, strip as usize));
        let entries: [(u16, u16, u32, u32); 4] = [
            (0x100, 3, 1, 4),
            (0x101, 3, 1, 4),
            (0x111, 4, 1, 8),
            (0x117, 4, 1, declared_strip),
        ];
        v.extend((entries.len() as u16).to_le_bytes());
        for (t, ty, c, val) in entries {
            v.extend(t.to_le_bytes());
            v.extend(ty.to_le_bytes());
            v.extend(c.to_le_bytes());
            v.extend(val.to_le_bytes());
        }
        v.extend(0u32.to_le_bytes());
        v
    }

    const XMP_DOC: &str = "<?xpacket begin=\"\u{feff}\" id=\"W5M0MpCehiHzreSzNTczkc9d\"?>\n<x:xmpmeta xmlns:x=\"adobe:ns:meta/\">\n<rdf:RDF/>\n</x:xmpmeta>\n<?xpacket end=\"w\"?>\n";

    fn run(buf: &[u8], ext: Option<&str>) -> QuickReport {
        let r = check(buf, buf.len() as u64, ext).expect("io");
        assert!(r.bytes_read <= MAX_QUICK_READ, "{r:?}");
        r
    }

    fn verdict(buf: &[u8]) -> Verdict {
        run(buf, None).verdict
    }

    fn truncated_with(v: &Verdict, needle: &str) -> bool {
        matches!(v, Verdict::Truncated(m) if m.contains(needle))
    }

    fn corrupt_with(v: &Verdict, needle: &str) -> bool {
        matches!(v, Verdict::Corrupt(m) if m.contains(needle))
    }

    // ----- format table ---------------------------------------------------------------------

    #[test]
    fn extension_mapping_and_names() {
        for (e, f) in [
            ("jpg", Format::Jpeg),
            ("JPEG", Format::Jpeg),
            (".jpe", Format::Jpeg),
            ("png", Format::Png),
            ("webp", Format::WebP),
            ("gif", Format::Gif),
            ("heic", Format::Heif),
            ("heif", Format::Heif),
            ("avif", Format::Avif),
            ("tif", Format::Tiff),
            ("tiff", Format::Tiff),
            ("dng", Format::Raw),
            ("cr2", Format::Raw),
            ("cr3", Format::Raw),
            ("nef", Format::Raw),
            ("arw", Format::Raw),
            ("orf", Format::Raw),
            ("rw2", Format::Raw),
            ("raf", Format::Raw),
            ("mp4", Format::Mp4),
            ("MOV", Format::Mp4),
            ("m4v", Format::Mp4),
            ("3gp", Format::Mp4),
            ("webm", Format::Matroska),
            ("mkv", Format::Matroska),
            ("xmp", Format::Xmp),
        ] {
            assert_eq!(Format::from_extension(e), Some(f), "{e}");
        }
        assert_eq!(Format::from_extension("txt"), None);
        assert_eq!(Format::from_extension(""), None);
        assert_eq!(Format::Jpeg.name(), "jpeg");
        assert_eq!(Format::Matroska.name(), "matroska");
        assert!(Format::Png.decodable_by_image_crate());
        assert!(Format::Tiff.decodable_by_image_crate());
        assert!(!Format::Heif.decodable_by_image_crate());
        assert!(!Format::Mp4.decodable_by_image_crate());
        assert!(!Format::Raw.decodable_by_image_crate());
    }

    #[test]
    fn detect_magic() {
        assert_eq!(detect(&jpeg(10)), Format::Jpeg);
        assert_eq!(detect(&png(1, 1)), Format::Png);
        assert_eq!(detect(&webp(10)), Format::WebP);
        assert_eq!(detect(&gif()), Format::Gif);
        assert_eq!(detect(&mp4(10)), Format::Mp4);
        assert_eq!(detect(&ftyp(b"qt  ", &[])), Format::Mp4);
        assert_eq!(detect(&ftyp(b"3gp4", &[])), Format::Mp4);
        assert_eq!(detect(&ftyp(b"heic", &[b"mif1"])), Format::Heif);
        assert_eq!(detect(&ftyp(b"mif1", &[b"heic"])), Format::Heif);
        assert_eq!(detect(&ftyp(b"avif", &[])), Format::Avif);
        assert_eq!(detect(&ftyp(b"mif1", &[b"avif"])), Format::Avif);
        assert_eq!(detect(&ftyp(b"crx ", &[])), Format::Raw);
        assert_eq!(detect(&bx(b"moov", 4)), Format::Mp4);
        assert_eq!(detect(&mkv(4, Some(4))), Format::Matroska);
        assert_eq!(detect(&tiff(16, 16)), Format::Tiff);
        assert_eq!(detect(b"MM\0*\0\0\0\x08"), Format::Tiff);
        assert_eq!(detect(b"II*\0\x10\0\0\0CR\x02\0"), Format::Raw);
        assert_eq!(detect(b"IIRO\x08\0\0\0"), Format::Raw);
        assert_eq!(detect(b"IIU\0\x08\0\0\0"), Format::Raw);
        assert_eq!(detect(b"FUJIFILMCCD-RAW 0201"), Format::Raw);
        assert_eq!(detect(XMP_DOC.as_bytes()), Format::Xmp);
        assert_eq!(detect(b"\xef\xbb\xbf  <x:xmpmeta>"), Format::Xmp);
        assert_eq!(detect(b"<?xml version=\"1.0\"?><a/>"), Format::Xmp);
        assert_eq!(detect(b"hello world"), Format::Unknown);
        assert_eq!(detect(b""), Format::Unknown);
        assert_eq!(detect(&[0xFF]), Format::Unknown);
    }

    #[test]
    fn dng_tag_makes_tiff_raw() {
        let mut t = tiff(16, 16);
        // Retag the ImageWidth entry as DNGVersion (0xC612).
        let ifd = 8 + 16 + 2;
        t[ifd..ifd + 2].copy_from_slice(&0xC612u16.to_le_bytes());
        assert_eq!(detect(&t), Format::Raw);
    }

    // ----- JPEG ---------------------------------------------------------------------------

    #[test]
    fn jpeg_healthy() {
        let r = run(&jpeg(5000), Some("jpg"));
        assert_eq!(r.format, Format::Jpeg);
        assert_eq!(r.verdict, Verdict::Ok);
        assert_eq!(r.note, None);
    }

    #[test]
    fn jpeg_cut_in_half_is_truncated() {
        let j = jpeg(5000);
        let v = verdict(&j[..j.len() / 2]);
        assert!(truncated_with(&v, "jpeg: no EOI (FFD9) at end"), "{v:?}");
    }

    #[test]
    fn jpeg_cut_inside_headers_is_truncated() {
        let j = jpeg(100);
        for cut in [3, 4, 5, 10, 30, 100] {
            let v = verdict(&j[..cut]);
            assert!(matches!(v, Verdict::Truncated(_)), "cut {cut}: {v:?}");
        }
    }

    #[test]
    fn jpeg_zero_filled_tail() {
        let mut j = jpeg(5000);
        let n = j.len();
        for b in &mut j[n - 3000..] {
            *b = 0;
        }
        let v = verdict(&j);
        assert!(
            truncated_with(&v, "zero-filled tail of 3000 bytes"),
            "{v:?}"
        );
    }

    #[test]
    fn jpeg_eoi_then_zero_padding_is_ok_with_note() {
        let mut j = jpeg(5000);
        j.extend([0u8; 100]);
        let r = run(&j, None);
        assert_eq!(r.verdict, Verdict::Ok);
        assert!(r.note.unwrap().contains("100 bytes of padding after EOI"));
    }

    #[test]
    fn jpeg_eoi_then_long_zero_padding_is_ok() {
        let mut j = jpeg(5000);
        j.extend([0u8; 5000]);
        let r = run(&j, None);
        assert_eq!(r.verdict, Verdict::Ok);
        assert_eq!(
            r.note.as_deref(),
            Some("5000 bytes of zero padding after EOI")
        );
    }

    #[test]
    fn non_tiff_raw_is_ok_with_note() {
        let mut crw = b"II\x1a\0\0\0HEAPCCDR".to_vec();
        crw.resize(500, 1);
        let r = run(&crw, Some("crw"));
        assert_eq!((r.format, r.verdict), (Format::Raw, Verdict::Ok));
        assert_eq!(
            r.note.as_deref(),
            Some("end not verifiable for this RAW format")
        );
    }

    #[test]
    fn jpeg_unexplained_trailing_data_is_corrupt() {
        let mut j = jpeg(5000);
        let eoi = j.len() - 2;
        j.extend(b"some garbage appended");
        let v = verdict(&j);
        assert!(
            corrupt_with(
                &v,
                &format!("21 bytes of unexplained data after EOI at {eoi}")
            ),
            "{v:?}"
        );
        // Much longer trailing data: the EOI is out of sight, so no EOI at end.
        let mut j = jpeg(5000);
        j.extend(std::iter::repeat_n(7u8, 1000));
        assert!(truncated_with(&verdict(&j), "no EOI"));
    }

    #[test]
    fn jpeg_segment_past_eof() {
        let mut j = vec![0xFF, 0xD8];
        j.extend([0xFF, 0xE1, 0xFF, 0x00]);
        j.extend([1u8; 100]);
        assert!(truncated_with(&verdict(&j), "past end of file"));
        j.extend([0xFF, 0xD9]);
        assert!(corrupt_with(&verdict(&j), "past end of file"));
    }

    #[test]
    fn jpeg_garbled_headers_are_corrupt() {
        // No SOF before SOS.
        let mut j = vec![0xFF, 0xD8];
        j.extend(seg(0xDA, &[1, 1, 0, 0, 63, 0]));
        j.extend([1, 2, 3, 0xFF, 0xD9]);
        assert!(corrupt_with(&verdict(&j), "without a frame header"));
        // Not a marker where one should be.
        let mut j = vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 4, 0, 0, 0x12, 0x34];
        j.extend([0u8; 10]);
        j.extend([0xFF, 0xD9]);
        assert!(corrupt_with(&verdict(&j), "expected a marker"));
        // Segment length < 2.
        let j = [0xFF, 0xD8, 0xFF, 0xE0, 0, 1, 0xFF, 0xD9];
        assert!(corrupt_with(&verdict(&j), "invalid length"));
        // SOF with width 0.
        let mut j = jpeg(100);
        let p = find(&j, &[0xFF, 0xC0]).unwrap();
        j[p + 7] = 0;
        j[p + 8] = 0;
        assert!(corrupt_with(&verdict(&j), "frame header"));
    }

    fn micro_video_xmp(n: usize) -> String {
        format!(
            "<x:xmpmeta xmlns:x=\"adobe:ns:meta/\"><rdf:RDF><rdf:Description \
         GCamera:MicroVideo=\"1\" GCamera:MicroVideoVersion=\"1\" \
         GCamera:MicroVideoOffset=\"{n}\" GCamera:MicroVideoPresentationTimestampUs=\"0\"/>\
         </rdf:RDF></x:xmpmeta>"
        )
    }

    fn motion_photo_micro(video: &[u8]) -> Vec<u8> {
        let mut j = jpeg_with(&[xmp_app1(&micro_video_xmp(video.len()))], 4000);
        j.extend_from_slice(video);
        j
    }

    #[test]
    fn motion_photo_micro_video_offset_ok() {
        let video = mp4(20_000);
        let r = run(&motion_photo_micro(&video), Some("jpg"));
        assert_eq!(r.verdict, Verdict::Ok, "{r:?}");
        assert_eq!(
            r.note.as_deref(),
            Some(format!("motion photo: {} bytes of video after EOI", video.len()).as_str())
        );
    }

    #[test]
    fn motion_photo_truncated() {
        let mp = motion_photo_micro(&mp4(20_000));
        for cut in [mp.len() - 1, mp.len() - 100, mp.len() - 15_000] {
            let v = verdict(&mp[..cut]);
            assert!(matches!(v, Verdict::Truncated(_)), "cut {cut}: {v:?}");
        }
        // Cut so short that the declared video no longer fits at all.
        let v = verdict(&mp[..10_000]);
        assert!(matches!(v, Verdict::Truncated(_)), "{v:?}");
    }

    #[test]
    fn motion_photo_with_damaged_video() {
        // Right length, but the video is not an MP4.
        let video = vec![0x33u8; 5000];
        assert!(corrupt_with(&verdict(&motion_photo_micro(&video)), "ftyp"));
        // An MP4 without moov.
        let mut video = ftyp(b"mp42", &[]);
        video.extend(bx(b"mdat", 3000));
        assert!(corrupt_with(
            &verdict(&motion_photo_micro(&video)),
            "no moov"
        ));
    }

    fn container_xmp(items: &[(&str, &str, usize, usize)]) -> String {
        let mut s = String::from(
        "<x:xmpmeta xmlns:x=\"adobe:ns:meta/\"><rdf:RDF><rdf:Description Camera:MotionPhoto=\"1\">\
         <Container:Directory><rdf:Seq>",
    );
        for (mime, sem, len, pad) in items {
            s.push_str(&format!(
                "<rdf:li rdf:parseType=\"Resource\"><Container:Item Item:Mime=\"{mime}\" \
             Item:Semantic=\"{sem}\" Item:Length=\"{len}\" Item:Padding=\"{pad}\"/></rdf:li>"
            ));
        }
        s.push_str("</rdf:Seq></Container:Directory></rdf:Description></rdf:RDF></x:xmpmeta>");
        s
    }

    #[test]
    fn motion_photo_container_items_ok() {
        let video = mp4(9000);
        let gain = jpeg(300);
        let xmp = container_xmp(&[
            ("image/jpeg", "Primary", 0, 0),
            ("image/jpeg", "GainMap", gain.len(), 0),
            ("video/mp4", "MotionPhoto", video.len(), 0),
        ]);
        let mut j = jpeg_with(&[xmp_app1(&xmp)], 3000);
        j.extend(&gain);
        j.extend(&video);
        let r = run(&j, None);
        assert_eq!(r.verdict, Verdict::Ok, "{r:?}");
        assert!(r.note.unwrap().contains("motion photo"));
        // A cut file fails.
        assert!(matches!(verdict(&j[..j.len() - 10]), Verdict::Truncated(_)));
    }

    #[test]
    fn motion_photo_element_form_and_xmp_past_head() {
        // Element-form XMP placed after a 60 KiB APP2 segment so it straddles the head window.
        let xmp = "<x:xmpmeta><rdf:RDF><rdf:Description><GCamera:MicroVideoOffset>VIDLEN</GCamera:MicroVideoOffset></rdf:Description></rdf:RDF></x:xmpmeta>";
        let video = mp4(1000);
        let xmp = xmp.replace("VIDLEN", &video.len().to_string());
        let big = seg(0xE2, &vec![0x11u8; 62_000]);
        let big2 = seg(0xE2, &vec![0x11u8; 10_000]);
        let mut j = jpeg_with(&[big, big2, xmp_app1(&xmp)], 5000);
        j.extend(&video);
        let r = run(&j, None);
        assert_eq!(r.verdict, Verdict::Ok, "{r:?}");
        assert!(r.note.unwrap().contains("motion photo"));
    }

    #[test]
    fn samsung_sef_trailer_ok() {
        let mut j = jpeg(3000);
        let data_start = j.len() as u32;
        let block = b"\0\0\x30\x0a\x10\0\0\0MotionPhoto_Data0123456789";
        j.extend(block);
        let dir = j.len() as u32;
        let mut sefh = b"SEFH".to_vec();
        sefh.extend(106u32.to_le_bytes());
        sefh.extend(1u32.to_le_bytes());
        sefh.extend([0, 0, 0x30, 0x0a]);
        sefh.extend((dir - data_start).to_le_bytes());
        sefh.extend((block.len() as u32).to_le_bytes());
        let dir_len = sefh.len() as u32;
        j.extend(sefh);
        j.extend(dir_len.to_le_bytes());
        j.extend(b"SEFT");
        let r = run(&j, None);
        assert_eq!(r.verdict, Verdict::Ok, "{r:?}");
        assert!(r.note.unwrap().contains("Samsung trailer"));
    }

    // ----- PNG / GIF / WebP -----------------------------------------------------------------

    #[test]
    fn png_rules() {
        let p = png(64, 48);
        assert_eq!(png_dimensions(&p), Some((64, 48)));
        assert_eq!(png_dimensions(b"nope"), None);
        assert_eq!(verdict(&p), Verdict::Ok);
        assert_eq!(
            verdict(&p[..p.len() - 12]),
            Verdict::Truncated("png: IEND chunk missing".into())
        );
        assert!(matches!(verdict(&p[..p.len() - 1]), Verdict::Truncated(_)));
        assert!(corrupt_with(&verdict(&png(0, 5)), "IHDR declares 0x5"));
        assert!(corrupt_with(&verdict(&png(5, 0)), "IHDR declares 5x0"));
        let mut q = p.clone();
        q.extend(b"junk");
        assert!(corrupt_with(&verdict(&q), "4 bytes of data after the IEND"));
        let mut q = p.clone();
        q.extend([0u8; 40]);
        let r = run(&q, None);
        assert_eq!(r.verdict, Verdict::Ok);
        assert_eq!(
            r.note.as_deref(),
            Some("40 bytes of zero padding after IEND")
        );
        let mut q = p.clone();
        q[12] = b'X';
        assert!(corrupt_with(&verdict(&q), "not a 13-byte IHDR"));
        assert!(truncated_with(&verdict(&p[..20]), "too short"));
        // Preallocated and half written.
        let mut q = p.clone();
        let n = q.len();
        for b in &mut q[n - 200..] {
            *b = 0;
        }
        assert!(truncated_with(
            &verdict(&q),
            "png: zero-filled tail of 200 bytes"
        ));
    }

    #[test]
    fn gif_rules() {
        let g = gif();
        assert_eq!(verdict(&g), Verdict::Ok);
        assert!(truncated_with(&verdict(&g[..g.len() - 1]), "gif: trailer"));
    }

    #[test]
    fn webp_rules() {
        assert_eq!(verdict(&webp(1000)), Verdict::Ok);
        assert_eq!(verdict(&webp(999)), Verdict::Ok);
        let w = webp(1000);
        let cut = &w[..w.len() - 100];
        assert_eq!(
            verdict(cut),
            Verdict::Truncated(format!(
                "webp: RIFF length {} != file length {}",
                w.len(),
                cut.len()
            ))
        );
        let mut long = w.clone();
        long.extend([1u8; 10]);
        assert!(corrupt_with(&verdict(&long), "RIFF length"));
        let mut bad = w.clone();
        bad[12..16].copy_from_slice(b"JUNK");
        assert!(corrupt_with(&verdict(&bad), "first chunk"));
        // Chunk length inconsistent with the RIFF length.
        let mut bad = w.clone();
        bad[16..20].copy_from_slice(&5000u32.to_le_bytes());
        assert!(corrupt_with(&verdict(&bad), "past the RIFF end"));
    }

    // ----- ISO BMFF -------------------------------------------------------------------------

    #[test]
    fn mp4_healthy_and_faststart() {
        assert_eq!(verdict(&mp4(5000)), Verdict::Ok);
        let mut f = ftyp(b"isom", &[]);
        f.extend(bx(b"moov", 100));
        f.extend(bx(b"mdat", 5000));
        assert_eq!(verdict(&f), Verdict::Ok);
        // Truncated mid-mdat with moov first: the mdat box runs past EOF.
        let cut = &f[..f.len() - 1000];
        let v = verdict(cut);
        let mdat_at = f.len() - 5008;
        assert_eq!(
            v,
            Verdict::Truncated(format!(
                "mp4: box mdat at {mdat_at} declares 5008 bytes past end of file {}",
                cut.len()
            ))
        );
    }

    #[test]
    fn mp4_truncated_mid_mdat_without_moov() {
        let m = mp4(5000);
        let v = verdict(&m[..3000]);
        assert!(truncated_with(&v, "box mdat"), "{v:?}");
        assert!(truncated_with(&v, "no moov box"), "{v:?}");
    }

    #[test]
    fn mp4_without_moov_is_corrupt() {
        let mut m = ftyp(b"mp42", &[]);
        m.extend(bx(b"mdat", 5000));
        assert_eq!(
            verdict(&m),
            Verdict::Corrupt("mp4: no moov box (file cut before the index was written?)".into())
        );
    }

    #[test]
    fn mp4_size_zero_and_largesize() {
        // Last box with size 0 extends to the end of file.
        let mut m = ftyp(b"isom", &[]);
        m.extend(bx(b"moov", 50));
        m.extend([0, 0, 0, 0]);
        m.extend(b"mdat");
        m.extend([9u8; 777]);
        assert_eq!(verdict(&m), Verdict::Ok);
        // 64-bit largesize.
        let mut m = ftyp(b"isom", &[]);
        m.extend(bx(b"moov", 50));
        m.extend(1u32.to_be_bytes());
        m.extend(b"mdat");
        m.extend((16u64 + 500).to_be_bytes());
        m.extend([9u8; 500]);
        assert_eq!(verdict(&m), Verdict::Ok);
        // Largesize past EOF, and overflowing.
        let mut bad = m.clone();
        let p = find(&bad, b"mdat").unwrap() + 4;
        bad[p..p + 8].copy_from_slice(&1_000_000u64.to_be_bytes());
        assert!(truncated_with(
            &verdict(&bad),
            "declares 1000000 bytes past end of file"
        ));
        bad[p..p + 8].copy_from_slice(&u64::MAX.to_be_bytes());
        assert!(truncated_with(&verdict(&bad), "past end of file"));
        bad[p..p + 8].copy_from_slice(&3u64.to_be_bytes());
        assert!(corrupt_with(&verdict(&bad), "invalid 64-bit size"));
        // Small 32-bit sizes.
        let mut bad = m.clone();
        let p = find(&bad, b"moov").unwrap() - 4;
        bad[p..p + 4].copy_from_slice(&4u32.to_be_bytes());
        assert!(corrupt_with(&verdict(&bad), "invalid size 4"));
    }

    #[test]
    fn mp4_garbage_and_zero_tail() {
        let mut m = mp4(1000);
        m.extend([0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09]);
        assert!(corrupt_with(&verdict(&m), "invalid box header"));
        let mut m = mp4(1000);
        m.extend([b'a'; 5]);
        assert!(corrupt_with(&verdict(&m), "stray bytes"));
        // Preallocated file: moov never written, the space for it is zero.
        let mut m = ftyp(b"isom", &[]);
        m.extend(bx(b"mdat", 5000));
        m.extend([0u8; 4000]);
        let v = verdict(&m);
        assert!(
            truncated_with(&v, "zero-filled tail of 4000 bytes"),
            "{v:?}"
        );
        // Faststart file whose whole tail window is zero: structure fits, content missing.
        let mut f = ftyp(b"isom", &[]);
        f.extend(bx(b"moov", 100));
        f.extend(bx(b"mdat", 200_000));
        let n = f.len();
        for b in &mut f[n - 100_000..] {
            *b = 0;
        }
        let v = verdict(&f);
        assert!(
            truncated_with(&v, "mp4: zero-filled tail of at least 65536 bytes"),
            "{v:?}"
        );
    }

    #[test]
    fn heif_avif_cr3_rules() {
        let mut h = ftyp(b"heic", &[b"mif1", b"heic"]);
        h.extend(bx(b"meta", 300));
        h.extend(bx(b"mdat", 3000));
        let r = run(&h, Some("heic"));
        assert_eq!((r.format, r.verdict), (Format::Heif, Verdict::Ok));
        let mut no_meta = ftyp(b"heic", &[]);
        no_meta.extend(bx(b"mdat", 3000));
        assert_eq!(
            verdict(&no_meta),
            Verdict::Corrupt("heif: no meta box".into())
        );
        let v = verdict(&h[..h.len() - 5]);
        assert!(truncated_with(&v, "heif: box mdat"), "{v:?}");
        let mut a = ftyp(b"avif", &[b"mif1"]);
        a.extend(bx(b"meta", 100));
        a.extend(bx(b"mdat", 100));
        assert_eq!(run(&a, None).format, Format::Avif);
        assert_eq!(verdict(&a), Verdict::Ok);
        let mut c = ftyp(b"crx ", &[b"crx "]);
        c.extend(bx(b"moov", 100));
        c.extend(bx(b"mdat", 100));
        let r = run(&c, Some("cr3"));
        assert_eq!(
            (r.format, r.verdict, r.note),
            (Format::Raw, Verdict::Ok, None)
        );
    }

    #[test]
    fn quicktime_without_ftyp() {
        let mut m = bx(b"wide", 0);
        m.extend(bx(b"mdat", 100));
        m.extend(bx(b"moov", 100));
        let r = run(&m, Some("mov"));
        assert_eq!((r.format, r.verdict), (Format::Mp4, Verdict::Ok));
    }

    #[test]
    fn mp4_box_walk_is_capped() {
        let mut m = ftyp(b"isom", &[]);
        m.extend(bx(b"moov", 8));
        for _ in 0..(MAX_BOXES + 500) {
            m.extend(bx(b"free", 0));
        }
        let r = run(&m, None);
        assert_eq!(r.verdict, Verdict::Ok);
        assert!(r.note.unwrap().contains("box walk stopped"));
        assert!(r.bytes_read <= MAX_QUICK_READ);
    }

    // ----- Matroska -----------------------------------------------------------------------

    #[test]
    fn matroska_rules() {
        assert_eq!(verdict(&mkv(1000, Some(1000))), Verdict::Ok);
        let v = verdict(&mkv(900, Some(1000)));
        assert!(truncated_with(&v, "matroska: Segment"), "{v:?}");
        let r = run(&mkv(900, None), Some("webm"));
        assert_eq!(r.verdict, Verdict::Ok);
        assert!(r.note.unwrap().contains("unknown size"));
        assert!(corrupt_with(
            &verdict(&mkv(1000, Some(900))),
            "after the Segment"
        ));
        let mut m = mkv(1000, Some(1000));
        m.extend([0xEC, 0x82, 0, 0]); // a trailing Void element
        assert_eq!(verdict(&m), Verdict::Ok);
        // Broken EBML header.
        let mut m = mkv(10, Some(10));
        m[4] = 0x8F;
        assert!(matches!(verdict(&m), Verdict::Corrupt(_)));
        assert!(matches!(
            verdict(&m[..6]),
            Verdict::Truncated(_) | Verdict::Corrupt(_)
        ));
    }

    #[test]
    fn structurally_fine_but_zero_filled_tail() {
        let mut w = webp(40_000);
        let n = w.len();
        for b in &mut w[n - 20_000..] {
            *b = 0;
        }
        assert!(truncated_with(
            &verdict(&w),
            "webp: zero-filled tail of 20000 bytes"
        ));
        let mut m = mkv(40_000, Some(40_000));
        let n = m.len();
        for b in &mut m[n - 20_000..] {
            *b = 0;
        }
        assert!(truncated_with(
            &verdict(&m),
            "matroska: zero-filled tail of 20000 bytes"
        ));
        // Small zero runs in an MP4's mdat are legal (PCM silence).
        let mut f = ftyp(b"isom", &[]);
        f.extend(bx(b"moov", 100));
        f.extend(bx(b"mdat", 30_000));
        let n = f.len();
        for b in &mut f[n - 20_000..] {
            *b = 0;
        }
        assert_eq!(verdict(&f), Verdict::Ok);
        // TIFF: only a note.
        let mut t = tiff(40_000, 40_000);
        t.extend([0u8; 20_000]);
        let r = run(&t, None);
        assert_eq!(r.verdict, Verdict::Ok);
        let note = r.note.unwrap();
        assert!(note.contains("zero-filled tail of 20006 bytes"), "{note}"); // + zero bytes of the IFD
    }

    // ----- TIFF / RAW -----------------------------------------------------------------------

    #[test]
    fn tiff_rules() {
        let t = tiff(64, 64);
        let r = run(&t, Some("tif"));
        assert_eq!(r.verdict, Verdict::Ok);
        assert_eq!(
            r.note.as_deref(),
            Some("end not verifiable for TIFF-based formats")
        );
        // Strip runs past the end.
        assert!(truncated_with(
            &verdict(&tiff(64, 200)),
            "runs past end of file"
        ));
        // IFD cut off.
        assert!(truncated_with(
            &verdict(&t[..t.len() - 10]),
            "runs past end of file"
        ));
        assert!(truncated_with(
            &verdict(&t[..40]),
            "first IFD at 72 beyond end of file 40"
        ));
        // Bad offsets.
        let mut b = t.clone();
        b[4..8].copy_from_slice(&2u32.to_le_bytes());
        assert!(corrupt_with(&verdict(&b), "first IFD offset 2"));
        let mut b = t.clone();
        b[72] = 0;
        b[73] = 0;
        assert!(corrupt_with(&verdict(&b), "no entries"));
        // IFD at the end of the file (as libtiff/ffmpeg write it) lost to a zero-filled tail.
        let mut z = t.clone();
        let n = z.len();
        for b in &mut z[n - 60..] {
            *b = 0;
        }
        assert!(truncated_with(
            &verdict(&z),
            "tiff: zero-filled tail of 60 bytes"
        ));
        // Out-of-line strip arrays: the last strip runs past a cut.
        let s = &samples()[10];
        assert_eq!(detect(s), Format::Tiff);
        assert!(truncated_with(
            &verdict(&s[..105]),
            "(100+10) runs past end of file 105"
        ));
        // TIFF magic with a RAW extension is Raw, no mismatch note.
        let r = run(&t, Some("nef"));
        assert_eq!(r.format, Format::Raw);
        assert_eq!(
            r.note.as_deref(),
            Some("end not verifiable for TIFF-based formats")
        );
    }

    #[test]
    fn bigtiff_and_raf() {
        let mut b = b"II+\0\x08\0\0\0".to_vec();
        b.extend(16u64.to_le_bytes());
        b.extend(1u64.to_le_bytes());
        b.extend(0x100u16.to_le_bytes());
        b.extend(3u16.to_le_bytes());
        b.extend(1u64.to_le_bytes());
        b.extend(4u64.to_le_bytes());
        b.extend(0u64.to_le_bytes());
        assert_eq!(verdict(&b), Verdict::Ok);
        assert!(matches!(verdict(&b[..30]), Verdict::Truncated(_)));

        let mut raf = b"FUJIFILMCCD-RAW 0201FF383501".to_vec();
        raf.resize(84, 0);
        for (off, len) in [(200u32, 100u32), (300, 50), (350, 500)] {
            raf.extend(off.to_be_bytes());
            raf.extend(len.to_be_bytes());
        }
        raf.resize(850, 7);
        assert_eq!(verdict(&raf), Verdict::Ok);
        assert!(truncated_with(&verdict(&raf[..800]), "raf: CFA data"));
    }

    // ----- XMP ------------------------------------------------------------------------------

    #[test]
    fn xmp_rules() {
        assert_eq!(verdict(XMP_DOC.as_bytes()), Verdict::Ok);
        let d = XMP_DOC.as_bytes();
        // Cut inside the trailing packet end.
        assert!(truncated_with(
            &verdict(&d[..d.len() - 5]),
            "xmp: document not closed"
        ));
        // Cut before the closing element.
        assert!(truncated_with(
            &verdict(&d[..60]),
            "xmp: document not closed"
        ));
        let plain = b"\xef\xbb\xbf<x:xmpmeta xmlns:x=\"adobe:ns:meta/\"><rdf:RDF/></x:xmpmeta>\n\n";
        assert_eq!(verdict(plain), Verdict::Ok);
        let xml = b"<?xml version=\"1.0\"?>\n<!-- c -->\n<rdf:RDF xmlns:rdf=\"r\"><a/></rdf:RDF>";
        assert_eq!(verdict(xml), Verdict::Ok);
        assert!(matches!(
            verdict(&xml[..xml.len() - 3]),
            Verdict::Truncated(_)
        ));
        let mut z = XMP_DOC.as_bytes()[..100].to_vec();
        z.extend([0u8; 100]);
        assert!(truncated_with(
            &verdict(&z),
            "xmp: zero-filled tail of 100 bytes"
        ));
    }

    // ----- generic ----------------------------------------------------------------------------

    #[test]
    fn empty_unknown_and_zero_files() {
        let r = check(&[][..], 0, Some("jpg")).unwrap();
        assert_eq!(r.verdict, Verdict::Truncated("empty".into()));
        assert_eq!(r.bytes_read, 0);
        assert_eq!(
            verdict(b"hello world, not media"),
            Verdict::Corrupt(
                "unknown format: first bytes 68 65 6c 6c 6f 20 77 6f 72 6c 64 2c 20 6e 6f 74"
                    .into()
            )
        );
        assert!(truncated_with(&verdict(&[0u8; 5000]), "zero-filled"));
    }

    #[test]
    fn extension_mismatch_goes_to_note() {
        let r = run(&png(2, 2), Some("jpg"));
        assert_eq!(r.verdict, Verdict::Ok);
        assert_eq!(r.note.as_deref(), Some("extension .jpg but content is png"));
        let r = run(&jpeg(100), Some(".PNG"));
        assert_eq!(
            r.note.as_deref(),
            Some("extension .PNG but content is jpeg")
        );
        assert_eq!(run(&mp4(10), Some("mov")).note, None);
        assert_eq!(run(&jpeg(10), Some("unknownext")).note, None);
    }

    #[test]
    fn size_larger_than_content_is_truncated() {
        let j = jpeg(1000);
        let r = check(&j[..], j.len() as u64 + 100_000, None).unwrap();
        assert!(truncated_with(&r.verdict, "file ended at byte"), "{r:?}");
    }

    #[test]
    fn read_errors_propagate() {
        struct Failing;
        impl ReadAt for Failing {
            fn read_at(&self, _: &mut [u8], _: u64) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::PermissionDenied, "nope"))
            }
        }
        let e = check(&Failing, 100, None).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
    }

    #[test]
    fn works_on_files() {
        let dir = std::env::temp_dir().join(format!("formats-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.jpg");
        std::fs::write(&path, motion_photo_micro(&mp4(3000))).unwrap();
        let f = std::fs::File::open(&path).unwrap();
        let size = f.metadata().unwrap().len();
        let r = check(&f, size, Some("jpg")).unwrap();
        assert_eq!(r.verdict, Verdict::Ok);
        assert_eq!(r.bytes_read, size);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A huge virtual file whose bytes are generated: `check` must read a bounded amount and
    /// never allocate proportionally to the size.
    #[test]
    fn huge_virtual_files_read_bounded() {
        struct Virtual {
            head: Vec<u8>,
            fill: u8,
        }
        impl ReadAt for Virtual {
            fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
                for (i, b) in buf.iter_mut().enumerate() {
                    let p = offset + i as u64;
                    *b = if p < self.head.len() as u64 {
                        self.head[p as usize]
                    } else {
                        self.fill
                    };
                }
                Ok(buf.len())
            }
        }
        let heads = [
            jpeg(10)[..150].to_vec(),
            png(1, 1)[..33].to_vec(),
            webp(10)[..20].to_vec(),
            {
                let mut m = ftyp(b"isom", &[]);
                m.extend(1u32.to_be_bytes());
                m.extend(b"mdat");
                m.extend((1u64 << 45).to_be_bytes());
                m
            },
            mkv(0, Some(1 << 50)),
            tiff(16, u32::MAX),
            XMP_DOC.as_bytes()[..50].to_vec(),
        ];
        for head in heads {
            for fill in [0u8, 0x20, 0xFF, 0x01] {
                let v = Virtual {
                    head: head.clone(),
                    fill,
                };
                for size in [1u64 << 20, 1 << 40, u64::MAX] {
                    let r = check(&v, size, None).unwrap();
                    assert!(r.bytes_read <= MAX_QUICK_READ, "{r:?}");
                }
            }
        }
    }

    // ----- robustness -------------------------------------------------------------------------

    fn samples() -> Vec<Vec<u8>> {
        // TIFF with strip arrays stored out of line and a SubIFD pointing back to IFD0.
        let mut ts = b"II*\0".to_vec();
        ts.extend(8u32.to_le_bytes());
        ts.extend(3u16.to_le_bytes());
        for (t, ty, c, val) in [
            (0x111u16, 4u16, 3u32, 50u32),
            (0x117, 3, 3, 62),
            (0x14A, 4, 1, 8),
        ] {
            ts.extend(t.to_le_bytes());
            ts.extend(ty.to_le_bytes());
            ts.extend(c.to_le_bytes());
            ts.extend(val.to_le_bytes());
        }
        ts.extend(0u32.to_le_bytes());
        for o in [80u32, 90, 100] {
            ts.extend(o.to_le_bytes());
        }
        for n in [10u16, 10, 10] {
            ts.extend(n.to_le_bytes());
        }
        ts.resize(110, 0x33);
        vec![
            jpeg(300),
            motion_photo_micro(&mp4(300)),
            {
                let xmp = container_xmp(&[
                    ("image/jpeg", "Primary", 0, 0),
                    ("video/mp4", "MotionPhoto", mp4(300).len(), 0),
                ]);
                let mut j = jpeg_with(&[xmp_app1(&xmp)], 100);
                j.extend(mp4(300));
                j
            },
            png(3, 3),
            webp(101),
            gif(),
            mp4(300),
            {
                let mut h = ftyp(b"heic", &[b"mif1"]);
                h.extend(bx(b"meta", 30));
                h
            },
            mkv(100, Some(100)),
            tiff(40, 40),
            ts,
            XMP_DOC.as_bytes().to_vec(),
        ]
    }

    fn assert_sane(buf: &[u8], size: u64) {
        let r = check(buf, size, Some("jpg")).unwrap();
        assert!(r.bytes_read <= MAX_QUICK_READ);
        assert!(r.bytes_read <= size.max(buf.len() as u64));
        let _ = detect(buf);
        let _ = png_dimensions(buf);
    }

    #[test]
    fn fuzz_random_buffers_never_panic() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for i in 0..3000 {
            let len = rng.below(if i % 10 == 0 { 5000 } else { 300 }) as usize;
            let mut buf: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            // Give most of them a real magic so the format paths are exercised.
            let magics: [&[u8]; 10] = [
                &[0xFF, 0xD8, 0xFF],
                PNG_SIG,
                b"RIFF\0\0\0\0WEBP",
                b"GIF89a",
                b"\0\0\0\x10ftypisom",
                b"\0\0\0\x10ftypheic",
                &[0x1A, 0x45, 0xDF, 0xA3],
                b"II*\0",
                b"MM\0*",
                b"<?xpacket",
            ];
            let m = magics[rng.below(11) as usize % 10];
            if rng.below(10) < 8 && buf.len() >= m.len() {
                buf[..m.len()].copy_from_slice(m);
            }
            let size = match rng.below(4) {
                0 => buf.len() as u64 + rng.below(1000),
                1 => buf.len() as u64 / 2,
                _ => buf.len() as u64,
            };
            assert_sane(&buf, size);
        }
    }

    #[test]
    fn fuzz_mutated_samples_never_panic() {
        let mut rng = Rng(42);
        for s in samples() {
            // Every truncation.
            for cut in 0..=s.len() {
                assert_sane(&s[..cut], cut as u64);
            }
            // Random byte mutations, including 0x00/0xFF runs that make lengths lie.
            for _ in 0..1500 {
                let mut m = s.clone();
                for _ in 0..=rng.below(4) {
                    let p = rng.below(m.len() as u64) as usize;
                    m[p] = match rng.below(4) {
                        0 => 0,
                        1 => 0xFF,
                        2 => m[p] ^ (1 << rng.below(8)),
                        _ => rng.next() as u8,
                    };
                }
                assert_sane(&m, m.len() as u64);
            }
        }
    }

    #[test]
    fn healthy_samples_are_ok() {
        for s in samples() {
            let r = run(&s, None);
            assert_eq!(r.verdict, Verdict::Ok, "{:?} {r:?}", detect(&s));
        }
    }
}
