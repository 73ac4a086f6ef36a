//! PNG: signature, `IHDR`, and `IEND` as the very last bytes.

use super::*;

pub(super) fn check_png<R: ReadAt + ?Sized>(src: &Src<'_, R>, notes: &mut Vec<String>) -> Verdict {
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
