//! The `full` integrity level: does this file decode?
//!
//! [`decode_file`] runs after the `quick` check passed and answers with a [`Decoded`]:
//!
//! - **Still images** (PNG, WebP, GIF, TIFF) are decoded with the `image` crate under
//!   [`image::Limits`]: at most [`MAX_DIMENSION`] pixels per side and [`MAX_ALLOC`] bytes of
//!   decoder memory. The limits are checked against the size the header *declares*, before the
//!   pixel buffer is allocated, so a decompression bomb (a tiny PNG declaring 100 000 × 100 000
//!   pixels) is refused at once as `Corrupt` and never allocates gigabytes. A genuine image that
//!   needs more than [`MAX_ALLOC`] to decode (over ~179 megapixels of RGB8, ~89 MP of
//!   16-bit RGB) is refused the same way, with the numbers in the detail.
//! - **JPEG** (with the `video` feature) is decoded by FFmpeg's `mjpeg` decoder with
//!   `err_detect = crccheck+bitstream+buffer+explode` (what `ffmpeg -xerror` does), after the
//!   size its SOF header declares was held against the same limits. The zune-jpeg decoder
//!   behind `image` forgives bit flips and truncation (README, The full level) that this one refuses; it
//!   still decodes JPEGs larger than [`MAX_STRICT_JPEG`] and every JPEG without `video`.
//! - **Videos** (MP4/MOV/3GP, Matroska/WebM; `video` feature): the container is opened, the
//!   best video stream found and the first [`MAX_FRAMES`] frames decoded with the same error
//!   detection. A hostile file cannot hang a worker: FFmpeg's interrupt callback aborts any
//!   I/O after [`VIDEO_TIMEOUT`] (also checked between packets), and at most [`MAX_PACKETS`]
//!   packets are read. Running out of either is reported as `Corrupt` with the limit named.
//! - **HEIF/HEIC and AVIF** (feature `heif`) through the system libheif: every top-level image
//!   (grids assembled from their tiles), its thumbnails and depth images, 8 or 10 bits, each
//!   held against the limits by its declared size first. A motion photo's video (`mpvd` box or
//!   MP4 after the image) is probed like a video.
//! - **JPEG XL** (bare codestream or container) through jxl-oxide, whose allocation tracker
//!   enforces [`MAX_ALLOC`]; a codestream that ends early is corrupt.
//! - **Camera RAW** through rawler: the sensor data is decoded (not the embedded preview),
//!   after a pass without pixels read the declared size.
//! - These are decoded from memory; files over 512 MiB are not decoded.
//! - **XMP** and unknown formats have no decoder: [`Decoded::Unsupported`], the `quick`
//!   verdict stands and the scan summary counts them per format.
//!
//! Everything runs inside [`std::panic::catch_unwind`]: a decoder panic becomes
//! `Corrupt("... decoder panicked: ...")`, never a crash. FFmpeg's own logging is silenced.
//! The file is read with positioned reads (`pread`), so the caller's file offset is untouched.

use crate::check::codecs;
use crate::check::formats::{Format, JpegFrame, ReadAt};
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Largest width or height decoded (pixels). JPEG and WebP cannot exceed this anyway.
pub const MAX_DIMENSION: u32 = 65_535;
/// Most memory one image decode may reserve, output buffer included (512 MiB, the `image`
/// crate's own default). With `--jobs N` the decode peak is at most N times this.
pub const MAX_ALLOC: u64 = 512 * 1024 * 1024;
/// Per-file time limit of the video probe (open, find the stream, decode the first frames).
pub const VIDEO_TIMEOUT: Duration = Duration::from_secs(30);
/// Video frames decoded before a video counts as playable.
pub const MAX_FRAMES: usize = 3;
/// Packets (of all streams) read from a video before giving up on finding [`MAX_FRAMES`].
pub const MAX_PACKETS: usize = 2048;
/// JPEGs larger than this are decoded by `image` rather than FFmpeg (which needs the whole file
/// in memory).
pub const MAX_STRICT_JPEG: u64 = 256 * 1024 * 1024;

/// The limits one decode runs under. [`Default`] gives the constants of this module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest width and height, pixels.
    pub max_dimension: u32,
    /// Most bytes an image decoder may reserve.
    pub max_alloc: u64,
    /// Per-file time limit of the video probe.
    pub timeout: Duration,
    /// Video frames to decode.
    pub max_frames: usize,
    /// Packets to read at most while looking for those frames.
    pub max_packets: usize,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_dimension: MAX_DIMENSION,
            max_alloc: MAX_ALLOC,
            timeout: VIDEO_TIMEOUT,
            max_frames: MAX_FRAMES,
            max_packets: MAX_PACKETS,
        }
    }
}

impl DecodeLimits {
    /// The pixel budget handed to FFmpeg (`max_pixels`): what fits in `max_alloc` at 4 bytes
    /// per pixel.
    pub fn max_pixels(&self) -> u64 {
        (self.max_alloc / 4).clamp(1, i32::MAX as u64)
    }

    fn image_limits(&self) -> image::Limits {
        let mut l = image::Limits::default();
        l.max_image_width = Some(self.max_dimension);
        l.max_image_height = Some(self.max_dimension);
        l.max_alloc = Some(self.max_alloc);
        l
    }
}

/// The answer to "does this file decode?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// It decoded (the string says what was decoded, e.g. `"png 48x32"`).
    Ok(String),
    /// It does not decode; the string names the decoder and its error.
    Corrupt(String),
    /// No decoder for this format here; the `quick` verdict stands.
    Unsupported,
}

/// What [`decode_file`] found and how many bytes it read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeReport {
    /// The verdict: decoded, corrupt, or no decoder for the format.
    pub outcome: Decoded,
    /// Bytes read from the file (for videos: the bytes of the packets read).
    pub bytes_read: u64,
}

/// Whether [`decode_file`] has a decoder for `format` in this build.
pub fn can_decode(format: Format) -> bool {
    match format {
        Format::Jpeg | Format::Png | Format::WebP | Format::Gif | Format::Tiff => true,
        Format::Mp4 | Format::Matroska => cfg!(feature = "video"),
        Format::Heif | Format::Avif => cfg!(feature = "heif"),
        Format::Jxl | Format::Raw => true,
        Format::Xmp | Format::Unknown => false,
    }
}

/// Decode `file` (of length `size`, whose content the `quick` check identified as `format`).
/// Never panics; never changes the file offset.
pub fn decode_file(file: &File, size: u64, format: Format, limits: &DecodeLimits) -> DecodeReport {
    decode_after_quick(file, size, format, None, limits)
}

/// [`decode_file`] with what the `quick` check of this file already read from a JPEG's
/// headers ([`QuickReport::jpeg`](crate::check::formats::QuickReport::jpeg): its declared size and
/// tables), so they are not walked a second time.
pub fn decode_after_quick(
    file: &File,
    size: u64,
    format: Format,
    jpeg: Option<JpegFrame>,
    limits: &DecodeLimits,
) -> DecodeReport {
    if !can_decode(format) {
        return DecodeReport {
            outcome: Decoded::Unsupported,
            bytes_read: 0,
        };
    }
    let mut bytes_read = 0u64;
    let res = catch_unwind(AssertUnwindSafe(|| {
        test_hooks::maybe_panic(file);
        decode_inner(file, size, format, jpeg, limits, &mut bytes_read)
    }));
    DecodeReport {
        outcome: res.unwrap_or_else(|p| panicked(format, p)),
        bytes_read,
    }
}

/// Decode an in-memory file (used by the fuzz tests; videos are not probed from memory).
pub fn decode_bytes(bytes: &[u8], format: Format, limits: &DecodeLimits) -> Decoded {
    if !can_decode(format) || matches!(format, Format::Mp4 | Format::Matroska) {
        return Decoded::Unsupported;
    }
    catch_unwind(AssertUnwindSafe(|| {
        let mut n = 0;
        let src = AtReader::new(bytes, bytes.len() as u64, &mut n);
        if codecs::in_memory(format) {
            codecs::decode(bytes, format, limits)
        } else if format == Format::Jpeg && STRICT_JPEG {
            decode_jpeg(bytes, None, limits)
        } else {
            decode_image(src, format, limits)
        }
        .map_or_else(Decoded::Corrupt, Decoded::Ok)
    }))
    .unwrap_or_else(|p| panicked(format, p))
}

fn panicked(format: Format, p: Box<dyn std::any::Any + Send>) -> Decoded {
    let msg = p
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into());
    Decoded::Corrupt(format!("{}: decoder panicked: {msg}", format.name()))
}

fn decode_inner(
    file: &File,
    size: u64,
    format: Format,
    jpeg: Option<JpegFrame>,
    limits: &DecodeLimits,
    bytes_read: &mut u64,
) -> Decoded {
    let res = match format {
        #[cfg(feature = "video")]
        Format::Mp4 | Format::Matroska => video::probe(file, format, limits, bytes_read),
        Format::Jpeg if STRICT_JPEG && size <= MAX_STRICT_JPEG => read_all(file, size, bytes_read)
            .map_err(|e| format!("jpeg: read error: {e}"))
            .and_then(|bytes| decode_jpeg(&bytes, jpeg, limits)),
        _ if codecs::in_memory(format) => {
            if size > codecs::MAX_IN_MEMORY {
                return Decoded::Unsupported;
            }
            read_all(file, size, bytes_read)
                .map_err(|e| format!("{}: read error: {e}", format.name()))
                .and_then(|bytes| codecs::decode(&bytes, format, limits).map(|d| (d, bytes)))
                .and_then(|(d, bytes)| codecs::motion::check_video(&bytes, format, limits, d))
        }
        _ => decode_image(AtReader::new(file, size, bytes_read), format, limits),
    };
    res.map_or_else(Decoded::Corrupt, Decoded::Ok)
}

fn read_all(file: &File, size: u64, bytes_read: &mut u64) -> io::Result<Vec<u8>> {
    let mut v = Vec::new();
    AtReader::new(file, size, bytes_read).read_to_end(&mut v)?;
    Ok(v)
}

/// The `image` pass: header, limits, then the full decode.
fn decode_image<R: ReadAt + ?Sized>(
    src: AtReader<'_, R>,
    format: Format,
    limits: &DecodeLimits,
) -> Result<String, String> {
    let name = format.name();
    let fmt = match format {
        Format::Jpeg => image::ImageFormat::Jpeg,
        Format::Png => image::ImageFormat::Png,
        Format::WebP => image::ImageFormat::WebP,
        Format::Gif => image::ImageFormat::Gif,
        Format::Tiff => image::ImageFormat::Tiff,
        _ => return Err(format!("{name}: no image decoder")),
    };
    let len = src.len;
    let file = src.src;
    let mut reader = image::ImageReader::with_format(BufReader::with_capacity(1 << 16, src), fmt);
    reader.limits(limits.image_limits());
    match reader.decode() {
        Ok(img) => Ok(format!("{name} {}x{}", img.width(), img.height())),
        Err(image::ImageError::Limits(e)) => {
            // Say what the header declared (a header-only parse, no pixel buffer).
            let mut n = 0;
            let mut hdr = image::ImageReader::with_format(
                BufReader::new(AtReader::new(file, len, &mut n)),
                fmt,
            );
            hdr.no_limits();
            Err(refused(
                name,
                hdr.into_dimensions().ok(),
                limits,
                &e.to_string(),
            ))
        }
        Err(e) => Err(format!("{name}: does not decode: {e}")),
    }
}

/// The refusal of an image whose declared size is over `limits`.
fn refused(name: &str, size: Option<(u32, u32)>, limits: &DecodeLimits, why: &str) -> String {
    let declared = match size {
        Some((w, h)) => format!(
            "declares {w}x{h} pixels ({} MiB as RGBA)",
            (w as u64 * h as u64 * 4) >> 20
        ),
        None => "declares a size".into(),
    };
    format!(
        "{name}: refused to decode: {declared}, over the limits of {} px per side and {} MiB \
         of decoder memory ({why}); a decompression bomb or an image too large to decode \
         safely",
        limits.max_dimension,
        limits.max_alloc >> 20
    )
}

/// Whether JPEGs go to FFmpeg's strict decoder (the `video` feature) instead of `image`.
const STRICT_JPEG: bool = cfg!(feature = "video");

/// What the headers of an in-memory JPEG declare, read by the `quick` check's own walk (for a
/// JPEG decoded without that check having run: [`decode_bytes`], [`decode_file`]).
fn jpeg_frame(bytes: &[u8]) -> JpegFrame {
    crate::check::formats::check(bytes, bytes.len() as u64, None)
        .ok()
        .and_then(|r| r.jpeg)
        .unwrap_or_default()
}

/// A JPEG, decoded by FFmpeg's mjpeg decoder with error detection set to explode, after its
/// declared size (`header`, or read now when not known) was held against `limits`. Only this decoder: zune-jpeg (behind `image`)
/// accepts truncated and bit-flipped scans that this one refuses (README, The full level), so running
/// both only doubled the cost (the scale benchmark's thumbnails are mostly decoder setup).
fn decode_jpeg(
    bytes: &[u8],
    header: Option<JpegFrame>,
    limits: &DecodeLimits,
) -> Result<String, String> {
    let header = header.unwrap_or_else(|| jpeg_frame(bytes));
    if let Some((w, h)) = header.size {
        let need = u64::from(w) * u64::from(h) * 4;
        if w > limits.max_dimension || h > limits.max_dimension || need > limits.max_alloc {
            return Err(refused("jpeg", header.size, limits, "from its SOF header"));
        }
    }
    #[cfg(feature = "video")]
    video::strict_jpeg(bytes, limits, header.huffman_tables)?;
    Ok(match header.size {
        Some((w, h)) => format!("jpeg {w}x{h}"),
        None => "jpeg".into(),
    })
}

/// `Read + Seek` over a [`ReadAt`] source with its own position (the file offset of the
/// caller's descriptor is never moved), counting the bytes read.
struct AtReader<'a, R: ReadAt + ?Sized> {
    src: &'a R,
    pos: u64,
    len: u64,
    count: &'a mut u64,
}

impl<'a, R: ReadAt + ?Sized> AtReader<'a, R> {
    fn new(src: &'a R, len: u64, count: &'a mut u64) -> Self {
        AtReader {
            src,
            pos: 0,
            len,
            count,
        }
    }
}

impl<R: ReadAt + ?Sized> Read for AtReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.src.read_at(buf, self.pos)?;
        self.pos += n as u64;
        *self.count += n as u64;
        Ok(n)
    }
}

impl<R: ReadAt + ?Sized> Seek for AtReader<'_, R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match new {
            Some(n) => {
                self.pos = n;
                Ok(n)
            }
            None => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the file",
            )),
        }
    }
}

#[cfg(feature = "video")]
pub(crate) mod video {
    //! FFmpeg through ffmpeg-next: the strict JPEG pass and the video probe.

    use super::DecodeLimits;
    use crate::check::formats::Format;
    use ff::ffi;
    use ffmpeg_next as ff;
    use std::ffi::{c_int, c_void, CString};
    use std::fs::File;
    use std::os::fd::AsRawFd;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::OnceLock;
    use std::time::Instant;

    /// Error detection as `ffmpeg -xerror`: fail on the first damaged block.
    const ERR_DETECT: &str = "crccheck+bitstream+buffer+explode";

    fn init() -> Result<(), String> {
        static INIT: OnceLock<Result<(), String>> = OnceLock::new();
        INIT.get_or_init(|| {
            ff::init().map_err(|e| format!("cannot initialise FFmpeg: {e}"))?;
            ff::util::log::set_level(ff::util::log::Level::Quiet);
            Ok(())
        })
        .clone()
    }

    fn options(limits: &DecodeLimits) -> ff::Dictionary<'static> {
        let mut o = ff::Dictionary::new();
        o.set("err_detect", ERR_DETECT);
        o.set("threads", "1");
        o.set("max_pixels", &limits.max_pixels().to_string());
        o
    }

    fn is_again(e: &ff::Error) -> bool {
        matches!(e, ff::Error::Other { errno } if *errno == libc::EAGAIN)
    }

    /// An open mjpeg decoder and the pixel limit it was opened with.
    struct Mjpeg {
        max_pixels: u64,
        decoder: ff::decoder::Video,
    }

    thread_local! {
        /// This worker's mjpeg decoder, kept between files: opening one (its tables, its
        /// options) cost more than decoding a thumbnail. It is kept only after a clean
        /// decode, and lent only to a JPEG with its own Huffman tables: one without gets a
        /// fresh decoder, so it is decoded with the default tables, as it would be alone.
        static MJPEG: std::cell::RefCell<Option<Mjpeg>> = const { std::cell::RefCell::new(None) };
    }

    fn open_mjpeg(limits: &DecodeLimits) -> Result<Mjpeg, String> {
        static CODEC: OnceLock<Option<ff::Codec>> = OnceLock::new();
        let codec = CODEC
            .get_or_init(|| ff::decoder::find(ff::codec::Id::MJPEG))
            .ok_or("jpeg: FFmpeg has no mjpeg decoder")?;
        let decoder = ff::codec::Context::new_with_codec(codec)
            .decoder()
            .open_as_with(codec, options(limits))
            .and_then(|d| d.video())
            .map_err(|e| format!("jpeg: cannot open FFmpeg's mjpeg decoder: {e}"))?;
        Ok(Mjpeg {
            max_pixels: limits.max_pixels(),
            decoder,
        })
    }

    /// Decode one JPEG as a single packet with FFmpeg's mjpeg decoder.
    pub(super) fn strict_jpeg(
        bytes: &[u8],
        limits: &DecodeLimits,
        own_tables: bool,
    ) -> Result<(), String> {
        init()?;
        let kept = MJPEG.with(|m| m.borrow_mut().take());
        let mut dec = match kept {
            Some(m) if own_tables && m.max_pixels == limits.max_pixels() => m,
            _ => open_mjpeg(limits)?,
        };
        let res = decode_packet(&mut dec.decoder, bytes);
        if res.is_ok() {
            dec.decoder.flush();
            MJPEG.with(|m| *m.borrow_mut() = Some(dec));
        }
        res
    }

    fn decode_packet(dec: &mut ff::decoder::Video, bytes: &[u8]) -> Result<(), String> {
        let fail = |e: ff::Error| format!("jpeg: strict decoder (FFmpeg mjpeg): {e}");
        let pkt = ff::Packet::copy(bytes);
        dec.send_packet(&pkt).map_err(fail)?;
        let _ = dec.send_eof();
        let mut frame = ff::frame::Video::empty();
        match dec.receive_frame(&mut frame) {
            Ok(()) => Ok(()),
            Err(ff::Error::Eof) => {
                Err("jpeg: strict decoder (FFmpeg mjpeg) produced no image".into())
            }
            Err(e) => Err(fail(e)),
        }
    }

    /// Set by the interrupt callback once the deadline passed.
    struct Deadline {
        at: Instant,
        hit: AtomicBool,
    }

    /// FFmpeg's `AVIOInterruptCB`: non-zero aborts the blocking operation (`AVERROR_EXIT`).
    unsafe extern "C" fn interrupt(opaque: *mut c_void) -> c_int {
        // SAFETY: `opaque` is the `Deadline` owned by the `Opened` that owns the context.
        let d = unsafe { &*(opaque as *const Deadline) };
        if Instant::now() >= d.at {
            d.hit.store(true, Ordering::Relaxed);
            1
        } else {
            0
        }
    }

    /// An input context and the deadline its interrupt callback points at. Field order
    /// matters: the context is closed before the deadline is freed.
    struct Opened {
        input: ff::format::context::Input,
        deadline: Box<Deadline>,
    }

    /// `avformat_open_input` with our interrupt callback (the
    /// closure ffmpeg-next's `input_with_interrupt` installs is never freed; this one is).
    /// The demuxer is the one the magic bytes named (`mov` or `matroska`), never probed, and
    /// only the `file` protocol is allowed: a file cannot make FFmpeg open another file or a
    /// URL (as an HLS playlist or a concat script would).
    fn open(
        path: &str,
        demuxer: &str,
        deadline: Box<Deadline>,
    ) -> Result<Opened, (ff::Error, bool)> {
        let c = CString::new(path).map_err(|_| (ff::Error::InvalidData, false))?;
        let d = CString::new(demuxer).map_err(|_| (ff::Error::InvalidData, false))?;
        let mut opts = ff::Dictionary::new();
        opts.set("protocol_whitelist", "file");
        opts.set("format_whitelist", demuxer);
        // SAFETY: plain FFmpeg C API use. `ps` is either freed by `avformat_open_input` on
        // failure, closed here, or owned by the returned `Input`; the callback's opaque
        // pointer stays valid because `Opened` drops the context before the box.
        unsafe {
            let mut ps = ffi::avformat_alloc_context();
            if ps.is_null() {
                return Err((
                    ff::Error::Other {
                        errno: libc::ENOMEM,
                    },
                    false,
                ));
            }
            (*ps).interrupt_callback = ffi::AVIOInterruptCB {
                callback: Some(interrupt),
                opaque: &*deadline as *const Deadline as *mut c_void,
            };
            let fmt = ffi::av_find_input_format(d.as_ptr());
            if fmt.is_null() {
                ffi::avformat_free_context(ps);
                return Err((ff::Error::DemuxerNotFound, false));
            }
            let mut raw = opts.disown();
            let r = ffi::avformat_open_input(&mut ps, c.as_ptr(), fmt, &mut raw);
            drop(ff::Dictionary::own(raw));
            if r < 0 {
                return Err((ff::Error::from(r), deadline.hit.load(Ordering::Relaxed)));
            }
            // No avformat_find_stream_info: the MP4 and Matroska demuxers read each stream's
            // codec, size and extradata from the header, which is all the decoder needs, and
            // the frames decoded next are the real test. It decoded frames of its own to
            // guess what the header already says (a tenth of a `--level full` scan).
            Ok(Opened {
                input: ff::format::context::Input::wrap(ps),
                deadline,
            })
        }
    }

    /// Open the container, find the video stream, decode the first frames.
    pub(crate) fn probe(
        file: &File,
        format: Format,
        limits: &DecodeLimits,
        bytes_read: &mut u64,
    ) -> Result<String, String> {
        init()?;
        // FFmpeg reopens the descriptor we already hold (opened beneath its root), so no
        // path is resolved again.
        let path = format!("/proc/self/fd/{}", file.as_raw_fd());
        let deadline = Box::new(Deadline {
            at: Instant::now() + limits.timeout,
            hit: AtomicBool::new(false),
        });
        let secs = limits.timeout.as_secs_f64();
        let timed_out =
            move |what: &str| format!("video: {what} took longer than the {secs} s per-file limit");
        let demuxer = if format == Format::Matroska {
            "matroska"
        } else {
            "mov"
        };
        let mut o = match open(&path, demuxer, deadline) {
            Ok(o) => o,
            Err((_, true)) => return Err(timed_out("opening the container")),
            Err((e, false)) => return Err(format!("video: cannot open the container: {e}")),
        };
        let (index, params) = {
            let s = o
                .input
                .streams()
                .best(ff::media::Type::Video)
                .ok_or("video: the container has no video stream")?;
            (s.index(), s.parameters())
        };
        let ctx = ff::codec::Context::from_parameters(params)
            .map_err(|e| format!("video: bad stream parameters: {e}"))?;
        let id = ctx.id();
        let codec = ff::decoder::find(id).ok_or(format!("video: no decoder for codec {id:?}"))?;
        let cname = codec.name().to_string();
        let mut dec = ctx
            .decoder()
            .open_as_with(codec, options(limits))
            .and_then(|d| d.video())
            .map_err(|e| format!("video: cannot open the {cname} decoder: {e}"))?;
        let mut frame = ff::frame::Video::empty();
        let mut frames = 0usize;
        let mut packets = 0usize;
        let mut eof = false;
        loop {
            // Take every frame the decoder has ready.
            loop {
                match dec.receive_frame(&mut frame) {
                    Ok(()) => {
                        frames += 1;
                        if frames >= limits.max_frames {
                            return Ok(format!("{cname} video, {frames} frames decoded"));
                        }
                    }
                    Err(e) if is_again(&e) => break,
                    Err(ff::Error::Eof) => {
                        return if frames > 0 {
                            Ok(format!(
                                "{cname} video, {frames} frames decoded (all it has)"
                            ))
                        } else {
                            Err(format!("video: the {cname} stream has no decodable frame"))
                        };
                    }
                    Err(e) => {
                        return Err(format!(
                            "video: {cname} frame {} does not decode: {e}",
                            frames + 1
                        ))
                    }
                }
            }
            if eof {
                // Flushed, yet the decoder neither gave a frame nor said EOF.
                return Err(format!("video: the {cname} stream has no decodable frame"));
            }
            if o.deadline.hit.load(Ordering::Relaxed) || Instant::now() >= o.deadline.at {
                return Err(timed_out(&format!(
                    "decoding (stopped after {packets} packets, {frames} frames)"
                )));
            }
            if packets >= limits.max_packets {
                return Err(format!(
                    "video: only {frames} of {} {cname} frames decoded within the \
                     {} packet limit",
                    limits.max_frames, limits.max_packets
                ));
            }
            // A new packet each time: `Packet::read` is `av_read_frame` without unreferencing
            // what the packet held, so one packet reused leaked every buffer it was given
            // (peak RSS grew by the size of every video read).
            let mut pkt = ff::Packet::empty();
            match pkt.read(&mut o.input) {
                Ok(()) => {
                    packets += 1;
                    *bytes_read += pkt.size() as u64;
                    if pkt.stream() != index {
                        continue;
                    }
                    if let Err(e) = dec.send_packet(&pkt) {
                        if !is_again(&e) {
                            return Err(format!(
                                "video: {cname} packet {packets} does not decode: {e}"
                            ));
                        }
                    }
                }
                Err(ff::Error::Eof) => {
                    eof = true;
                    let _ = dec.send_eof();
                }
                Err(_) if o.deadline.hit.load(Ordering::Relaxed) => {
                    return Err(timed_out("reading packets"))
                }
                Err(e) => return Err(format!("video: read error after {packets} packets: {e}")),
            }
        }
    }
}

/// Hooks for the integration tests. Not part of the API.
#[doc(hidden)]
pub mod test_hooks {
    use super::*;

    static ARMED: AtomicBool = AtomicBool::new(false);
    static MARKER: Mutex<Option<Vec<u8>>> = Mutex::new(None);

    /// Make the decoder path panic for every file whose first 64 KiB contain `marker`
    /// (`None` disarms). Lets a test prove that a decoder panic becomes a finding.
    pub fn panic_on_marker(marker: Option<&[u8]>) {
        let mut m = MARKER.lock().unwrap_or_else(|e| e.into_inner());
        *m = marker.map(<[u8]>::to_vec);
        ARMED.store(m.is_some(), Ordering::SeqCst);
    }

    pub(super) fn maybe_panic(file: &File) {
        if !ARMED.load(Ordering::Relaxed) {
            return;
        }
        let marker = MARKER.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(marker) = marker.filter(|m| !m.is_empty()) else {
            return;
        };
        let mut head = vec![0u8; 1 << 16];
        let n = file.read_at(&mut head, 0).unwrap_or(0);
        if head[..n].windows(marker.len()).any(|w| w == marker) {
            panic!("test hook: marker found");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::codecs::jpeg::JpegEncoder;
    use image::{ExtendedColorType, ImageEncoder};

    fn jpeg(w: u32, h: u32) -> Vec<u8> {
        let px: Vec<u8> = (0..w * h * 3).map(|i| (i * 7 % 251) as u8).collect();
        let mut out = Vec::new();
        JpegEncoder::new_with_quality(&mut out, 85)
            .write_image(&px, w, h, ExtendedColorType::Rgb8)
            .unwrap();
        out
    }

    fn sos_end(b: &[u8]) -> usize {
        let mut i = 2;
        loop {
            let len = u16::from_be_bytes([b[i + 2], b[i + 3]]) as usize;
            if b[i + 1] == 0xDA {
                return i + 2 + len;
            }
            i += 2 + len;
        }
    }

    /// Overwrite 16 bytes in the middle of the scan with `FF 00` pairs: 64 entropy-coded bits
    /// flipped to 1 (byte-stuffed, so no marker appears), an invalid Huffman code.
    fn ones_run(j: &[u8]) -> Vec<u8> {
        let (start, end) = (sos_end(j), j.len() - 2);
        let mut pos = (start + end) / 2;
        while j[pos - 1] == 0xFF {
            pos += 1;
        }
        let mut m = j.to_vec();
        for k in 0..8 {
            m[pos + 2 * k] = 0xFF;
            m[pos + 2 * k + 1] = 0;
        }
        m
    }

    use immich_fixtures::content::png_bomb;

    fn vm_hwm_kib() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    #[test]
    fn healthy_images_decode() {
        let l = DecodeLimits::default();
        assert_eq!(
            decode_bytes(&jpeg(48, 32), Format::Jpeg, &l),
            Decoded::Ok("jpeg 48x32".into())
        );
        let mut png = Vec::new();
        image::codecs::png::PngEncoder::new(&mut png)
            .write_image(&[7u8; 4 * 3 * 3], 4, 3, ExtendedColorType::Rgb8)
            .unwrap();
        assert_eq!(
            decode_bytes(&png, Format::Png, &l),
            Decoded::Ok("png 4x3".into())
        );
        for f in [Format::Xmp, Format::Mp4, Format::Unknown] {
            assert_eq!(
                decode_bytes(b"whatever", f, &l),
                Decoded::Unsupported,
                "{f:?}"
            );
        }
    }

    /// `j` without its DHT segments (a JPEG relying on the default Huffman tables).
    fn without_dht(j: &[u8]) -> Vec<u8> {
        let mut out = j[..2].to_vec();
        let mut at = 2;
        while j[at + 1] != 0xDA {
            let len = usize::from(u16::from_be_bytes([j[at + 2], j[at + 3]]));
            if j[at + 1] != 0xC4 {
                out.extend_from_slice(&j[at..at + 2 + len]);
            }
            at += 2 + len;
        }
        out.extend_from_slice(&j[at..]);
        out
    }

    #[test]
    fn jpeg_headers_give_size_and_tables() {
        let j = jpeg(48, 32);
        let h = jpeg_frame(&j);
        assert_eq!(h.size, Some((48, 32)));
        assert!(h.huffman_tables);
        let bare = without_dht(&j);
        assert_eq!(jpeg_frame(&bare).size, Some((48, 32)));
        assert!(!jpeg_frame(&bare).huffman_tables);
        // Cut anywhere, or a zero length, the walk stops without panicking.
        for n in 0..j.len().min(700) {
            let _ = jpeg_frame(&j[..n]);
        }
        assert_eq!(
            jpeg_frame(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0, 1, 2]),
            JpegFrame::default()
        );
    }

    #[test]
    #[cfg(feature = "video")] // without it JPEGs go to `image`, which reads its own headers
    fn the_quick_checks_header_facts_are_used_not_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.jpg");
        let j = jpeg(48, 32);
        std::fs::write(&path, &j).unwrap();
        let f = File::open(&path).unwrap();
        let l = DecodeLimits::default();
        let size = j.len() as u64;
        let ok = |jpeg| decode_after_quick(&f, size, Format::Jpeg, jpeg, &l).outcome;
        assert!(matches!(ok(None), Decoded::Ok(_)));
        let walked = jpeg_frame(&j);
        assert!(matches!(ok(Some(walked)), Decoded::Ok(_)));
        // Told the headers declare a bomb, it refuses without looking again.
        let bomb = JpegFrame {
            size: Some((100_000, 100_000)),
            huffman_tables: true,
        };
        assert!(matches!(ok(Some(bomb)), Decoded::Corrupt(d) if d.contains("refused")));
    }

    #[test]
    fn a_kept_decoder_judges_each_file_alone() {
        // Same thread throughout, so every call after the first may reuse the decoder.
        let l = DecodeLimits::default();
        let ok = |b: &[u8]| matches!(decode_bytes(b, Format::Jpeg, &l), Decoded::Ok(_));
        let big = jpeg(128, 96);
        let small = jpeg(40, 30);
        let flipped = ones_run(&big);
        let bare = without_dht(&small);
        let bare_alone = ok(&bare);
        for _ in 0..3 {
            assert!(ok(&big));
            assert!(!ok(&flipped));
            assert!(ok(&small));
            assert!(!ok(&big[..big.len() / 2]));
            // After a file with custom tables, a file without any is still decoded with
            // the default ones, as it is alone (a fresh decoder).
            assert_eq!(ok(&bare), bare_alone);
        }
    }

    #[test]
    fn only_the_strict_pass_catches_a_flipped_scan() {
        let l = DecodeLimits::default();
        for (w, h) in [(48, 32), (40, 30), (128, 96)] {
            let m = ones_run(&jpeg(w, h));
            let mut n = 0;
            let lenient = decode_image(
                AtReader::new(&m[..], m.len() as u64, &mut n),
                Format::Jpeg,
                &l,
            );
            assert!(lenient.is_ok(), "zune-jpeg forgives it: {lenient:?}");
            match decode_bytes(&m, Format::Jpeg, &l) {
                Decoded::Corrupt(d) => assert!(d.contains("strict decoder"), "{d}"),
                other => panic!("{w}x{h}: {other:?}"),
            }
        }
        let j = jpeg(48, 32);
        let cut = &j[..j.len() / 2];
        assert!(matches!(
            decode_bytes(cut, Format::Jpeg, &l),
            Decoded::Corrupt(_)
        ));
    }

    #[test]
    fn decompression_bombs_are_refused_before_allocating() {
        let l = DecodeLimits::default();
        let before = vm_hwm_kib();
        for (w, h) in [(100_000, 100_000), (60_000, 60_000), (65_535, 65_535)] {
            match decode_bytes(&png_bomb(w, h), Format::Png, &l) {
                Decoded::Corrupt(d) => {
                    assert!(d.starts_with("png: refused to decode"), "{w}x{h}: {d}");
                    assert!(d.contains("65535 px per side and 512 MiB"), "{d}");
                    assert!(d.contains(&format!("declares {w}x{h} pixels")), "{d}");
                }
                other => panic!("{w}x{h}: {other:?}"),
            }
        }
        // A 60 000 x 60 000 RGBA decode would need 14.4 GB; the peak grew by far less.
        let grown = vm_hwm_kib().saturating_sub(before);
        assert!(grown < 256 * 1024, "peak RSS grew by {grown} KiB");
    }

    #[test]
    fn a_jpeg_declaring_a_huge_frame_is_refused() {
        let l = DecodeLimits::default();
        let mut j = jpeg(16, 16);
        // Patch the SOF0 frame size to 65 000 x 65 000.
        let sof = j.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        j[sof + 5..sof + 9].copy_from_slice(&[0xFD, 0xE8, 0xFD, 0xE8]);
        match decode_bytes(&j, Format::Jpeg, &l) {
            Decoded::Corrupt(d) => assert!(d.contains("declares 65000x65000 pixels"), "{d}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_panicking_decoder_becomes_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.jpg");
        let mut j = jpeg(16, 16);
        j.splice(2..2, *b"\xFF\xFE\x00\x12unit-test-panic!");
        std::fs::write(&p, &j).unwrap();
        let f = File::open(&p).unwrap();
        let l = DecodeLimits::default();
        test_hooks::panic_on_marker(Some(b"unit-test-panic!"));
        let r = decode_file(&f, j.len() as u64, Format::Jpeg, &l);
        test_hooks::panic_on_marker(None);
        assert_eq!(
            r.outcome,
            Decoded::Corrupt("jpeg: decoder panicked: test hook: marker found".into())
        );
        assert_eq!(
            decode_file(&f, j.len() as u64, Format::Jpeg, &l).outcome,
            Decoded::Ok("jpeg 16x16".into())
        );
    }

    /// Proptest runs: `PROPTEST_CASES` or 256.
    fn fuzz_config() -> proptest::test_runner::Config {
        proptest::test_runner::Config {
            cases: std::env::var("PROPTEST_CASES")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(256),
            failure_persistence: None,
            ..Default::default()
        }
    }

    /// Small limits, so that every case is cheap whatever the header declares.
    fn fuzz_limits() -> DecodeLimits {
        DecodeLimits {
            max_dimension: 4096,
            max_alloc: 64 << 20,
            ..DecodeLimits::default()
        }
    }

    /// One small real file per decodable image format.
    fn samples() -> &'static [(Format, Vec<u8>)] {
        use image::codecs::{
            gif::GifEncoder, png::PngEncoder, tiff::TiffEncoder, webp::WebPEncoder,
        };
        static S: std::sync::OnceLock<Vec<(Format, Vec<u8>)>> = std::sync::OnceLock::new();
        S.get_or_init(|| {
            let (w, h) = (40u32, 24u32);
            let px: Vec<u8> = (0..w * h * 3).map(|i| (i * 13 % 253) as u8).collect();
            let rgba: Vec<u8> = px.chunks(3).flat_map(|c| [c[0], c[1], c[2], 255]).collect();
            let mut png = Vec::new();
            PngEncoder::new(&mut png)
                .write_image(&px, w, h, ExtendedColorType::Rgb8)
                .unwrap();
            let mut webp = Vec::new();
            WebPEncoder::new_lossless(&mut webp)
                .write_image(&px, w, h, ExtendedColorType::Rgb8)
                .unwrap();
            let mut gif = Vec::new();
            GifEncoder::new(&mut gif)
                .encode(&rgba, w, h, ExtendedColorType::Rgba8)
                .unwrap();
            let mut tiff = std::io::Cursor::new(Vec::new());
            TiffEncoder::new(&mut tiff)
                .write_image(&px, w, h, ExtendedColorType::Rgb8)
                .unwrap();
            vec![
                (Format::Jpeg, jpeg(w, h)),
                (Format::Png, png),
                (Format::WebP, webp),
                (Format::Gif, gif),
                (Format::Tiff, tiff.into_inner()),
            ]
        })
    }

    fn no_panic(d: &Decoded) -> Result<(), proptest::test_runner::TestCaseError> {
        if let Decoded::Corrupt(s) = d {
            proptest::prop_assert!(!s.contains("decoder panicked"), "{}", s);
        }
        Ok(())
    }

    #[test]
    fn fuzz_samples_decode() {
        for (f, b) in samples() {
            assert!(
                matches!(decode_bytes(b, *f, &fuzz_limits()), Decoded::Ok(_)),
                "{f:?}"
            );
        }
    }

    proptest::proptest! {
        #![proptest_config(fuzz_config())]

        /// Arbitrary bytes, announced as each image format (magic prepended half the time).
        #[test]
        fn decode_fuzz_arbitrary_bytes(
            which in 0usize..5,
            magic in proptest::bool::ANY,
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..2048),
        ) {
            let (format, sample) = &samples()[which];
            let mut bytes = if magic { sample[..8].to_vec() } else { Vec::new() };
            bytes.extend_from_slice(&body);
            no_panic(&decode_bytes(&bytes, *format, &fuzz_limits()))?;
        }

        /// Real files with bytes overwritten, then possibly cut.
        #[test]
        fn decode_fuzz_mutated_images(
            which in 0usize..5,
            edits in proptest::collection::vec((proptest::num::usize::ANY, proptest::num::u8::ANY), 1..24),
            cut in proptest::option::of(proptest::num::usize::ANY),
        ) {
            let (format, sample) = &samples()[which];
            let mut bytes = sample.clone();
            for (at, v) in edits {
                let i = at % bytes.len();
                bytes[i] = v;
            }
            if let Some(c) = cut {
                bytes.truncate(c % (bytes.len() + 1));
            }
            no_panic(&decode_bytes(&bytes, *format, &fuzz_limits()))?;
        }
    }
}
