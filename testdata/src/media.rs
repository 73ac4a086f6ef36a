//! Encoders for the small, real, unique media files of a fixture, and file-system helpers
//! that set modes explicitly (never relying on the umask).

use std::collections::HashSet;
use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use anyhow::{anyhow, bail, Context, Result};
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::codecs::webp::WebPEncoder;
use image::{ExtendedColorType, ImageEncoder};

/// Mode of every generated file.
pub const FILE_MODE: u32 = 0o644;
/// Mode of every generated directory.
pub const DIR_MODE: u32 = 0o755;

/// An RGB pixel pattern derived from `seed` (unique per asset and kind). The first pixels carry
/// the seed bytes verbatim, so two different seeds never give the same pixels.
fn pixels(w: u32, h: u32, seed: &[u8]) -> Vec<u8> {
    let mut px = Vec::with_capacity((w * h * 3) as usize);
    let n = seed.len().max(1);
    for y in 0..h {
        for x in 0..w {
            let s = seed.get(((x + y) as usize) % n).copied().unwrap_or(0);
            px.push(s ^ (x as u8).wrapping_mul(5));
            px.push(s.wrapping_add((y as u8).wrapping_mul(7)));
            px.push(
                ((x + y) as u8).wrapping_mul(3) ^ seed.get((x as usize) % n).copied().unwrap_or(0),
            );
        }
    }
    for (i, b) in seed.iter().enumerate() {
        let off = i * 3;
        if off + 2 < px.len() {
            px[off] = *b;
            px[off + 1] = i as u8;
            px[off + 2] = !*b;
        }
    }
    px
}

/// A baseline JPEG with a `COM` segment carrying `tag` right after SOI (guarantees unique bytes).
pub fn jpeg(w: u32, h: u32, seed: &[u8], tag: &str) -> Result<Vec<u8>> {
    let px = pixels(w, h, seed);
    let mut out = Vec::with_capacity(2048);
    JpegEncoder::new_with_quality(&mut out, 85).encode(&px, w, h, ExtendedColorType::Rgb8)?;
    if out.len() < 2 || out[0] != 0xFF || out[1] != 0xD8 {
        bail!("JPEG encoder produced no SOI");
    }
    let payload = tag.as_bytes();
    let len = payload.len().min(60000) + 2;
    let mut com = Vec::with_capacity(len + 2);
    com.extend_from_slice(&[0xFF, 0xFE, (len >> 8) as u8, (len & 0xFF) as u8]);
    com.extend_from_slice(&payload[..len - 2]);
    out.splice(2..2, com);
    Ok(out)
}

/// `jpeg` grown to at least `to` bytes by APP2 segments of pseudo-random bytes (from
/// `seed`) right after its SOI: still a valid JPEG that decodes to the same image, and as
/// incompressible as real image data. Unchanged when it is already that large.
pub fn pad_jpeg(jpeg: Vec<u8>, to: u64, seed: &[u8]) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let to = to as usize;
    if jpeg.len() >= to || jpeg.len() < 2 {
        return jpeg;
    }
    let mut key = [0u8; 32];
    for (k, b) in key.iter_mut().zip(seed.iter().cycle()) {
        *k = *b;
    }
    let mut rng = rand::rngs::StdRng::from_seed(key);
    let mut out = Vec::with_capacity(to + 65_540);
    out.extend_from_slice(&jpeg[..2]);
    while out.len() + jpeg.len() - 2 < to {
        // A segment's length field counts itself: at most 65,533 payload bytes.
        let payload = (to - (out.len() + jpeg.len() - 2)).clamp(1, 65_533);
        let len = payload + 2;
        out.extend_from_slice(&[0xFF, 0xE2, (len >> 8) as u8, (len & 0xFF) as u8]);
        let start = out.len();
        out.resize(start + payload, 0);
        rng.fill_bytes(&mut out[start..]);
    }
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// A PNG whose pixels embed `seed`.
pub fn png(w: u32, h: u32, seed: &[u8]) -> Result<Vec<u8>> {
    let px = pixels(w, h, seed);
    let mut out = Vec::with_capacity(4096);
    PngEncoder::new(&mut out).write_image(&px, w, h, ExtendedColorType::Rgb8)?;
    Ok(out)
}

/// A lossless WebP whose pixels embed `seed`.
pub fn webp(w: u32, h: u32, seed: &[u8]) -> Result<Vec<u8>> {
    let px = pixels(w, h, seed);
    let mut out = Vec::with_capacity(4096);
    WebPEncoder::new_lossless(&mut out).encode(&px, w, h, ExtendedColorType::Rgb8)?;
    Ok(out)
}

/// A small XMP sidecar.
pub fn xmp(asset_id: &str) -> Vec<u8> {
    format!(
        "<?xpacket begin=\"\u{feff}\" id=\"W5M0MpCehiHzreSzNTczkc9d\"?>\n\
<x:xmpmeta xmlns:x=\"adobe:ns:meta/\">\n\
 <rdf:RDF xmlns:rdf=\"http://www.w3.org/1999/02/22-rdf-syntax-ns#\">\n\
  <rdf:Description rdf:about=\"\" xmlns:dc=\"http://purl.org/dc/elements/1.1/\" xmlns:xmp=\"http://ns.adobe.com/xap/1.0/\">\n\
   <dc:description>immich-fixture {asset_id}</dc:description>\n\
   <xmp:Rating>3</xmp:Rating>\n\
  </rdf:Description>\n\
 </rdf:RDF>\n\
</x:xmpmeta>\n\
<?xpacket end=\"w\"?>\n"
    )
    .into_bytes()
}

static MP4_BASE: OnceLock<Vec<u8>> = OnceLock::new();
static MP4_LOCK: Mutex<()> = Mutex::new(());

/// The tiny H.264 MP4 made once per process by the ffmpeg CLI.
fn mp4_base() -> Result<&'static [u8]> {
    if let Some(b) = MP4_BASE.get() {
        return Ok(b);
    }
    let _guard = MP4_LOCK
        .lock()
        .map_err(|_| anyhow!("mp4 cache lock poisoned"))?;
    if let Some(b) = MP4_BASE.get() {
        return Ok(b);
    }
    let ffmpeg = std::env::var("FFMPEG").unwrap_or_else(|_| "ffmpeg".to_string());
    let tmp = std::env::temp_dir().join(format!(
        "immich-fixture-{}-{}.mp4",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let out = Command::new(&ffmpeg)
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=64x48:rate=10",
            "-t",
            "0.5",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
        ])
        .arg(&tmp)
        .output()
        .with_context(|| {
            format!("could not run {ffmpeg} (needed to make the fixture's MP4 videos)")
        })?;
    let bytes = fs::read(&tmp);
    let _ = fs::remove_file(&tmp);
    if !out.status.success() {
        bail!(
            "{ffmpeg} failed to make the fixture MP4: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let bytes = bytes.context("ffmpeg wrote no MP4")?;
    if bytes.len() < 16 || &bytes[4..8] != b"ftyp" {
        bail!("ffmpeg output is not an MP4");
    }
    Ok(MP4_BASE.get_or_init(|| bytes))
}

/// A real MP4 made unique by a trailing top-level `free` box carrying `tag`.
pub fn mp4(tag: &str) -> Result<Vec<u8>> {
    let base = mp4_base()?;
    let payload = tag.as_bytes();
    let mut out = Vec::with_capacity(base.len() + payload.len() + 8);
    out.extend_from_slice(base);
    out.extend_from_slice(&((payload.len() + 8) as u32).to_be_bytes());
    out.extend_from_slice(b"free");
    out.extend_from_slice(payload);
    Ok(out)
}

/// Create (exclusively) a file with mode 0644 and the given content.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
        .with_context(|| format!("create {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("write {}", path.display()))?;
    f.set_permissions(Permissions::from_mode(FILE_MODE))?;
    Ok(())
}

/// Create one directory with mode 0755 (set explicitly); an existing one is fine.
pub fn make_dir(path: &Path) -> Result<()> {
    match DirBuilder::new().mode(DIR_MODE).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("mkdir {}", path.display())),
    }
    fs::set_permissions(path, Permissions::from_mode(DIR_MODE))
        .with_context(|| format!("chmod {}", path.display()))?;
    Ok(())
}

/// Remembers directories already created, so that each is made (and chmod'ed) once.
#[derive(Default)]
pub struct DirCache {
    known: HashSet<PathBuf>,
}

impl DirCache {
    /// A cache that treats `roots` as existing.
    pub fn with_roots<'a>(roots: impl IntoIterator<Item = &'a Path>) -> Self {
        DirCache {
            known: roots.into_iter().map(Path::to_path_buf).collect(),
        }
    }

    /// `mkdir -p` with mode 0755 for every directory created.
    pub fn ensure(&mut self, dir: &Path) -> Result<()> {
        if self.known.contains(dir) {
            return Ok(());
        }
        if let Some(parent) = dir.parent() {
            if !parent.as_os_str().is_empty() && !self.known.contains(parent) && !parent.is_dir() {
                self.ensure(parent)?;
            }
        }
        make_dir(dir)?;
        self.known.insert(dir.to_path_buf());
        Ok(())
    }

    /// Create the parent directory of `file`, then the file.
    pub fn write(&mut self, file: &Path, bytes: &[u8]) -> Result<()> {
        if let Some(parent) = file.parent() {
            self.ensure(parent)?;
        }
        write_file(file, bytes)
    }
}

/// `chown uid:gid path` (does not follow a final symlink's target... uses chown(2), i.e. follows).
pub fn chown(path: &Path, uid: u32, gid: u32) -> Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: `c` is a valid NUL-terminated path for the duration of the call.
    let rc = unsafe { libc::chown(c.as_ptr(), uid, gid) };
    if rc != 0 {
        let e = std::io::Error::last_os_error();
        bail!(
            "chown {uid}:{gid} {} failed: {e} (fault injection needs root)",
            path.display()
        );
    }
    Ok(())
}

/// `chmod mode path`.
pub fn chmod(path: &Path, mode: u32) -> Result<()> {
    fs::set_permissions(path, Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_padded_jpeg_is_as_large_as_asked_and_decodes_to_the_same_image() {
        let small = jpeg(48, 32, b"seed", "tag").unwrap();
        let big = pad_jpeg(small.clone(), 300_000, b"seed");
        assert!(
            big.len() >= 300_000 && big.len() < 300_000 + 65_540,
            "{}",
            big.len()
        );
        let a = image::load_from_memory(&small).unwrap().to_rgb8();
        let b = image::load_from_memory(&big).unwrap().to_rgb8();
        assert_eq!(a.as_raw(), b.as_raw());
        assert_eq!(pad_jpeg(small.clone(), 10, b"seed"), small);
    }
}
