//! ISO BMFF (MP4, MOV, 3GP, HEIF, AVIF, CR3): top-level boxes that must tile the file (and,
//! for HEIF/AVIF, item extents inside it: `heif.rs`).

use super::*;

pub(super) struct Walk {
    /// `Some` if the boxes do not tile the range.
    pub(super) verdict: Option<Verdict>,
    pub(super) moov: bool,
    pub(super) meta: bool,
    pub(super) capped: bool,
}

pub(super) fn valid_box_type(t: &[u8]) -> bool {
    t.len() == 4 && t.iter().all(|&c| (0x20..0x7f).contains(&c) || c == 0xA9)
}

pub(super) fn walk_boxes<R: ReadAt + ?Sized>(
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

pub(super) fn check_bmff<R: ReadAt + ?Sized>(
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
        None if w.meta && matches!(format, Format::Heif | Format::Avif) => {
            check_items(src, label, notes)?.unwrap_or(Verdict::Ok)
        }
        None => Verdict::Ok,
    })
}
