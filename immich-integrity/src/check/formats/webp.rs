//! WebP: the RIFF length and the chunks that must tile the file.

use super::*;

pub(super) fn check_webp<R: ReadAt + ?Sized>(
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
