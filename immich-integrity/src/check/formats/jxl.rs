//! JPEG XL: the bare codestream (no end marker to prove) and the ISO BMFF container, whose
//! boxes must tile the file and carry the whole codestream.

use super::*;

pub(super) fn check_jxl<R: ReadAt + ?Sized>(
    src: &mut Src<'_, R>,
    notes: &mut Vec<String>,
) -> io::Result<Verdict> {
    if !src.head.starts_with(JXL_SIGNATURE) {
        if src.size < 12 {
            return Ok(Verdict::Truncated(format!(
                "jxl: a codestream of {} bytes cannot hold a header",
                src.size
            )));
        }
        notes.push("bare JPEG XL codestream: its end is proven only by decoding".into());
        return Ok(Verdict::Ok);
    }
    let size = src.size;
    let w = walk_boxes(src, 0, size, "jxl", MAX_BOXES)?;
    if let Some(v) = w.verdict {
        return Ok(v);
    }
    if w.capped {
        notes.push(format!(
            "box walk stopped after {MAX_BOXES} boxes; end not verified"
        ));
        return Ok(Verdict::Ok);
    }
    // The boxes tile the file: list them again for the codestream boxes.
    let (mut jxlc, mut parts, mut last_part) = (false, 0usize, false);
    let mut off = 0u64;
    while off < size {
        let h = src.bytes(off, 16)?;
        let Some(len) = box_len(&h, size - off) else {
            break;
        };
        match h.get(4..8) {
            Some(b"jxlc") => jxlc = true,
            Some(b"jxlp") => {
                parts += 1;
                let hdr = if be32(&h, 0) == Some(1) { 16 } else { 8 };
                let idx = src.bytes(off + hdr, 4)?;
                last_part = be32(&idx, 0).is_some_and(|i| i & 0x8000_0000 != 0);
            }
            _ => {}
        }
        off += len;
    }
    Ok(match (jxlc, parts) {
        (false, 0) => Verdict::Truncated(
            "jxl: container without a codestream box (jxlc or jxlp): cut before it?".into(),
        ),
        (true, n) if n > 0 => Verdict::Corrupt("jxl: both jxlc and jxlp boxes".into()),
        (false, n) if !last_part => Verdict::Truncated(format!(
            "jxl: the last of {n} partial codestream boxes (jxlp) is not marked last: \
             the file ends before the codestream does"
        )),
        _ => Verdict::Ok,
    })
}

/// The length of the box whose header is `h` (`rem` bytes left in its parent), if valid.
pub(super) fn box_len(h: &[u8], rem: u64) -> Option<u64> {
    if h.len() < 8 || !valid_box_type(&h[4..8]) {
        return None;
    }
    let len = match be32(h, 0)? {
        0 => rem,
        1 => be64(h, 8).filter(|&l| l >= 16)?,
        s if s < 8 => return None,
        s => u64::from(s),
    };
    (len <= rem).then_some(len)
}
