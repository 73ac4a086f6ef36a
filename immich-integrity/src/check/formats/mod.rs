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
//!   For HEIF/AVIF every item extent in `meta`/`iloc` must lie inside the file (file offsets)
//!   or inside `idat` (idat offsets): a file cut inside an `mdat` of size 0 ("to the end of the
//!   file") tiles perfectly, only its item extents show the cut (`Truncated`).
//! - **JPEG XL**: a bare codestream (`FF 0A`) has no end marker (`Ok` with a note unless its
//!   tail is zero-filled); the container (`JXL ` signature box, `ftyp` brand `jxl `) must tile
//!   the file with boxes, hold a `jxlc` or `jxlp` codestream, and its last `jxlp` must carry the
//!   "last part" flag (else `Truncated`).
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
//!   `Truncated("zero-filled ...")`; other unknown magic is `Ok` with the note "unknown format
//!   (not judged)": a format this tool does not know is not a damaged file.
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
    /// JPEG XL: a bare codestream (`FF 0A`) or the ISO BMFF container (`JXL ` signature box).
    Jxl,
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
            Format::Jxl => "jxl",
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
            "jxl" => Format::Jxl,
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

mod bmff;
mod bytes;
mod detect;
mod gif;
mod heif;
mod jpeg;
mod jxl;
mod matroska;
mod png;
mod tiff;
mod webp;
mod xmp;

use bmff::*;
use bytes::*;
use detect::*;
pub use detect::{detect, png_dimensions};
use gif::*;
use heif::*;
use jpeg::*;
use jxl::*;
use matroska::*;
use png::*;
use tiff::*;
use webp::*;
use xmp::*;

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
        Format::Jxl => check_jxl(&mut src, &mut notes)?,
        Format::Unknown => {
            if cut_in_signature(&src.head) {
                Verdict::Truncated(format!(
                    "the file ends after {} bytes, inside a format signature",
                    src.head.len()
                ))
            } else if src.head.iter().all(|&b| b == 0) && !src.head.is_empty() {
                Verdict::Truncated(format!(
                    "zero-filled: the first {} bytes are all zero",
                    src.head.len()
                ))
            } else {
                // A format this tool does not know is not a damaged file: say so, judge nothing.
                let n = src.head.len().min(16);
                notes.push(format!(
                    "unknown format (not judged): first bytes {}",
                    hex(&src.head[..n])
                ));
                Verdict::Ok
            }
        }
    };
    // A container whose structure checks out but whose whole tail window is zero bytes was
    // most likely preallocated and never fully written.
    if verdict.is_ok() {
        let z = src.zero_tail();
        let suspect = match format {
            // Only compressed data can end such a file: a long zero run means unwritten space.
            Format::Heif | Format::Avif | Format::WebP | Format::Matroska | Format::Jxl => {
                z >= ZERO_TAIL_SUSPECT
            }
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

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_items;
