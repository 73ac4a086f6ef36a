//! TIFF and RAW (and Fujifilm RAF): offsets that must fit in the file.

use super::*;

pub(super) fn check_raf<R: ReadAt + ?Sized>(src: &Src<'_, R>, notes: &mut Vec<String>) -> Verdict {
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

pub(super) fn check_tiff<R: ReadAt + ?Sized>(
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
