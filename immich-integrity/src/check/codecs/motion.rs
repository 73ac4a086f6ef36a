//! Motion photos in HEIF: the video a phone stores after the image, either in a top-level
//! `mpvd` box (Google's layout) or as a plain MP4 appended after the HEIF boxes (its own
//! `ftyp`). Found by walking the top-level boxes of the bytes in memory.

use crate::check::decode::DecodeLimits;
use crate::check::formats::Format;

/// A HEIF motion photo's video, probed like any video from an in-memory copy. `image`: what
/// the image decode said.
#[allow(unused_variables)]
pub(crate) fn check_video(
    bytes: &[u8],
    format: Format,
    limits: &DecodeLimits,
    image: String,
) -> Result<String, String> {
    if !matches!(format, Format::Heif | Format::Avif) {
        return Ok(image);
    }
    let Some((start, end)) = video_range(bytes) else {
        return Ok(image);
    };
    let name = format.name();
    #[cfg(feature = "video")]
    {
        use std::io::Write;
        let hold =
            |e: &dyn std::fmt::Display| format!("{name}: motion photo: cannot hold its video: {e}");
        let fd = rustix::fs::memfd_create("motion-video", rustix::fs::MemfdFlags::CLOEXEC)
            .map_err(|e| hold(&e))?;
        let mut f = std::fs::File::from(fd);
        f.write_all(&bytes[start..end]).map_err(|e| hold(&e))?;
        let mut n = 0;
        let v = crate::check::decode::video::probe(&f, Format::Mp4, limits, &mut n)
            .map_err(|e| format!("{name}: motion photo: its video: {e}"))?;
        Ok(format!("{image}; motion photo {v}"))
    }
    #[cfg(not(feature = "video"))]
    Ok(format!(
        "{image}; motion photo video not probed (no video feature)"
    ))
}

/// Boxes walked at most.
const MAX_BOXES: usize = 10_000;

/// The byte range of the embedded video, if the file carries one.
pub(crate) fn video_range(b: &[u8]) -> Option<(usize, usize)> {
    let mut off = 0usize;
    let mut seen_meta = false;
    for _ in 0..MAX_BOXES {
        let h = b.get(off..off.checked_add(8)?)?;
        let size32 = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let (len, hdr) = match size32 {
            0 => (b.len() - off, 8),
            1 => {
                let l = b.get(off + 8..off + 16)?;
                let l = u64::from_be_bytes(l.try_into().ok()?);
                (usize::try_from(l).ok()?, 16)
            }
            s => (s, 8),
        };
        if len < hdr || off.checked_add(len)? > b.len() {
            return None;
        }
        match &h[4..8] {
            b"mpvd" => return Some((off + hdr, off + len)),
            b"ftyp" if seen_meta => return Some((off, b.len())),
            b"meta" => seen_meta = true,
            _ => {}
        }
        off += len;
        if off >= b.len() {
            return None;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bx(t: &[u8], p: &[u8]) -> Vec<u8> {
        [&((p.len() + 8) as u32).to_be_bytes()[..], t, p].concat()
    }

    #[test]
    fn finds_mpvd_and_appended_mp4() {
        let heif = [
            bx(b"ftyp", b"heic\0\0\0\0"),
            bx(b"meta", &[0; 20]),
            bx(b"mdat", &[1; 30]),
        ]
        .concat();
        assert_eq!(video_range(&heif), None);
        let mp4 = [bx(b"ftyp", b"isom\0\0\0\0"), bx(b"moov", &[2; 10])].concat();
        let with_box = [heif.clone(), bx(b"mpvd", &mp4)].concat();
        assert_eq!(
            video_range(&with_box),
            Some((heif.len() + 8, with_box.len()))
        );
        let appended = [heif.clone(), mp4.clone()].concat();
        assert_eq!(video_range(&appended), Some((heif.len(), appended.len())));
        for n in 0..appended.len() {
            let _ = video_range(&appended[..n]);
        }
    }
}
