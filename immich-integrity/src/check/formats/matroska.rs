//! Matroska and WebM: the EBML header and a Segment that must end within the file.

use super::*;

/// EBML variable-length integer at `p`: (raw value with marker bit for IDs / value without
/// it for sizes, length, all-ones).
pub(super) fn vint(b: &[u8], p: usize, keep_marker: bool) -> Option<(u64, usize, bool)> {
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

pub(super) fn check_matroska<R: ReadAt + ?Sized>(
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
