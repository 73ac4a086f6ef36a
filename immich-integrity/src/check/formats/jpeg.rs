//! JPEG: the head segments, then where the stream must end (motion-photo items, Samsung
//! trailers, zero padding).

use super::*;

/// Where the JPEG stream must end, according to metadata.
pub(super) struct JpegEnd {
    /// Offset right after the primary image's EOI.
    pub(super) end: u64,
    /// Zero/padding bytes allowed between EOI and `end`.
    pub(super) padding: u64,
    pub(super) what: String,
    /// Embedded items to check: (start, end, is_video, is_jpeg).
    pub(super) items: Vec<(u64, u64, bool, bool)>,
}

/// Value of an XMP property written as an attribute (`name="v"`) or element (`<name>v</name>`).
pub(super) fn xmp_value<'s>(s: &'s str, name: &str) -> Option<&'s str> {
    let mut from = 0;
    while let Some(i) = s.get(from..)?.find(name) {
        let at = from + i;
        let before = s[..at].chars().next_back();
        let rest = &s[at + name.len()..];
        from = at + name.len();
        if before == Some('<') {
            if let Some(v) = rest.strip_prefix('>') {
                let end = v.find('<')?;
                return Some(v[..end].trim());
            }
            continue;
        }
        let r = rest.trim_start();
        if let Some(r) = r.strip_prefix('=') {
            let r = r.trim_start();
            let q = r.chars().next()?;
            if q == '"' || q == '\'' {
                let v = &r[1..];
                let end = v.find(q)?;
                return Some(v[..end].trim());
            }
        }
    }
    None
}

pub(super) fn parse_u64(s: Option<&str>) -> Option<u64> {
    s?.trim().parse().ok()
}

/// Items of a `Container:Directory`, in order: (mime, semantic, length, padding).
pub(super) fn container_items(xmp: &str) -> Vec<(String, String, u64, u64)> {
    let mut out = Vec::new();
    let Some(dir) = xmp.find("Container:Directory") else {
        return out;
    };
    let body = &xmp[dir..];
    let body = match body.get(1..).and_then(|b| b.find("Container:Directory")) {
        Some(e) => &body[..e + 1],
        None => body,
    };
    let parts = body.split("<Container:Item").skip(1);
    for p in parts {
        if out.len() >= 32 {
            break;
        }
        let p = p.split("</Container:Item").next().unwrap_or(p);
        let mime = xmp_value(p, "Item:Mime").unwrap_or("").to_string();
        let sem = xmp_value(p, "Item:Semantic").unwrap_or("").to_string();
        let len = parse_u64(xmp_value(p, "Item:Length")).unwrap_or(0);
        let pad = parse_u64(xmp_value(p, "Item:Padding")).unwrap_or(0);
        out.push((mime, sem, len, pad));
    }
    out
}

pub(super) fn motion_from_xmp(xmp: &str, size: u64) -> Option<Result<JpegEnd, String>> {
    let items = container_items(xmp);
    if items.len() > 1 {
        let secondary: u64 = items[1..].iter().fold(0u64, |a, i| a.saturating_add(i.2));
        if secondary > 0 {
            let padding = items.iter().fold(0u64, |a, i| a.saturating_add(i.3));
            if secondary > size {
                return Some(Err(format!(
                    "jpeg: XMP Container items declare {secondary} bytes after the image but the file has {size}"
                )));
            }
            let end = size - secondary;
            let mut list = Vec::new();
            let mut pos = end;
            let mut video = 0u64;
            for (mime, sem, len, _) in &items[1..] {
                let is_video = mime.starts_with("video/") || sem == "MotionPhoto";
                let is_jpeg = mime == "image/jpeg";
                if is_video {
                    video = video.saturating_add(*len);
                }
                let e = pos.saturating_add(*len).min(size);
                list.push((pos, e, is_video, is_jpeg));
                pos = e;
            }
            let what = if video > 0 {
                format!("motion photo: {video} bytes of video after EOI")
            } else {
                format!("{secondary} bytes of embedded items after EOI")
            };
            return Some(Ok(JpegEnd {
                end,
                padding,
                what,
                items: list,
            }));
        }
    }
    let off = parse_u64(xmp_value(xmp, "GCamera:MicroVideoOffset"))?;
    if off == 0 {
        return None;
    }
    if off > size {
        return Some(Err(format!(
            "jpeg: MicroVideoOffset {off} is larger than the file ({size} bytes)"
        )));
    }
    Some(Ok(JpegEnd {
        end: size - off,
        padding: 0,
        what: format!("motion photo: {off} bytes of video after EOI"),
        items: vec![(size - off, size, true, false)],
    }))
}

/// Samsung trailer: `... SEFH ver count {12-byte entries} dirlen(LE) "SEFT"`.
pub(super) fn samsung_trailer<R: ReadAt + ?Sized>(src: &mut Src<'_, R>) -> io::Result<Option<u64>> {
    let last = src.last_bytes(8).to_vec();
    if last.len() < 8 || &last[4..8] != b"SEFT" {
        return Ok(None);
    }
    let dir_len = u64::from(le32(&last, 0).unwrap_or(0));
    let Some(dir) = src.size.checked_sub(8).and_then(|v| v.checked_sub(dir_len)) else {
        return Ok(None);
    };
    let d = src.bytes(dir, 12)?;
    if d.get(0..4) != Some(b"SEFH") {
        return Ok(None);
    }
    let count = u64::from(le32(&d, 8).unwrap_or(0)).min(64);
    let ents = src.bytes(dir + 12, usize::try_from(count * 12).unwrap_or(0))?;
    let mut start = dir;
    for e in ents.chunks_exact(12) {
        let back = u64::from(le32(e, 4).unwrap_or(0));
        if let Some(s) = dir.checked_sub(back) {
            start = start.min(s);
        }
    }
    Ok(Some(start))
}

/// `frame` collects what the headers declare, as far as the walk got.
pub(super) fn check_jpeg<R: ReadAt + ?Sized>(
    src: &mut Src<'_, R>,
    notes: &mut Vec<String>,
    frame: &mut JpegFrame,
) -> io::Result<Verdict> {
    let size = src.size;
    let ends_ffd9 = src.last_bytes(2) == [0xFF, 0xD9];
    // Walk the marker segments up to SOS.
    let mut p: u64 = 2;
    let mut sof = false;
    let mut xmp: Option<String> = None;
    let mut extra_reads = 0;
    let mut sos_at = None;
    let mut cut = false;
    for _ in 0..MAX_JPEG_SEGMENTS {
        let h = src.bytes(p, 4)?;
        if h.len() < 2 {
            cut = true;
            break;
        }
        if h[0] != 0xFF {
            return Ok(Verdict::Corrupt(format!(
                "jpeg: expected a marker at {p}, found {}",
                hex(&h[..2])
            )));
        }
        let m = h[1];
        match m {
            0xFF => {
                p += 1;
                continue;
            }
            0x01 | 0xD0..=0xD7 => {
                p += 2;
                continue;
            }
            0xD8 | 0xD9 | 0x00 => {
                return Ok(Verdict::Corrupt(format!(
                    "jpeg: unexpected marker FF{m:02X} at {p} before the first scan"
                )));
            }
            _ => {}
        }
        let Some(len) = be16(&h, 2) else {
            cut = true;
            break;
        };
        if len < 2 {
            return Ok(Verdict::Corrupt(format!(
                "jpeg: segment FF{m:02X} at {p} has invalid length {len}"
            )));
        }
        let seg_end = p + 2 + u64::from(len);
        if seg_end > size {
            let msg = format!(
                "jpeg: segment FF{m:02X} at {p} declares {len} bytes, past end of file {size}"
            );
            return Ok(if ends_ffd9 {
                Verdict::Corrupt(msg)
            } else {
                Verdict::Truncated(msg)
            });
        }
        if m == 0xC4 {
            frame.huffman_tables = true;
        }
        if matches!(m, 0xC0..=0xCF) && !matches!(m, 0xC4 | 0xC8 | 0xCC) {
            let f = src.bytes(p + 4, 6)?;
            if len < 8 || be16(&f, 3) == Some(0) {
                return Ok(Verdict::Corrupt(format!(
                    "jpeg: frame header FF{m:02X} at {p} is invalid (length {len}, width 0?)"
                )));
            }
            if !sof {
                if let (Some(h), Some(w)) = (be16(&f, 1), be16(&f, 3)) {
                    frame.size = Some((u32::from(w), u32::from(h)));
                }
            }
            sof = true;
        }
        if m == 0xE1 && xmp.is_none() {
            const NS: &[u8] = b"http://ns.adobe.com/xap/1.0/\0";
            let in_head = seg_end <= u64_of(src.head.len());
            if in_head || extra_reads < 1 {
                if !in_head {
                    extra_reads += 1;
                }
                let seg = src.bytes(p + 4, usize::from(len - 2))?;
                if let Some(body) = seg.strip_prefix(NS) {
                    xmp = Some(String::from_utf8_lossy(body).into_owned());
                }
            }
        }
        if m == 0xDA {
            sos_at = Some(p);
            break;
        }
        p = seg_end;
    }
    let Some(sos) = sos_at else {
        if cut || p + 2 > size {
            return Ok(src.end_missing("jpeg", format!("file ends at {size} inside the headers")));
        }
        return Ok(Verdict::Corrupt(format!(
            "jpeg: no start of scan (SOS) within the first {MAX_JPEG_SEGMENTS} segments"
        )));
    };
    if !sof {
        return Ok(Verdict::Corrupt(format!(
            "jpeg: scan at {sos} without a frame header (SOF)"
        )));
    }
    let meta = match xmp.as_deref().and_then(|x| motion_from_xmp(x, size)) {
        Some(Err(msg)) => return Ok(Verdict::Truncated(msg)),
        Some(Ok(m)) => Some(m),
        None => samsung_trailer(src)?.map(|s| JpegEnd {
            end: s,
            padding: 0,
            what: format!("Samsung trailer: {} bytes after EOI", size - s),
            items: Vec::new(),
        }),
    };
    let (end, padding) = meta.as_ref().map_or((size, 0), |m| (m.end, m.padding));
    if end < sos + 4 {
        return Ok(Verdict::Truncated(format!(
            "jpeg: metadata puts the end of the image at {end}, before its scan data at {sos} (file of {size} bytes)"
        )));
    }
    // Look for EOI right before `end`, allowing declared padding or zero bytes.
    let win_len = 256u64.saturating_add(padding.min(4096)).min(end);
    let win_start = end - win_len;
    let w = src.bytes(win_start, usize::try_from(win_len).unwrap_or(0))?;
    let eoi = rfind(&w, &[0xFF, 0xD9]);
    let ok_at = eoi.filter(|&i| {
        let after = &w[i + 2..];
        u64_of(after.len()) <= padding || after.iter().all(|&b| b == 0)
    });
    match (ok_at, &meta) {
        (Some(i), _) => {
            let pad = w.len() - i - 2;
            if pad > 0 {
                notes.push(format!("{pad} bytes of padding after EOI"));
            }
        }
        (None, Some(m)) => {
            if src.zero_tail() >= ZERO_TAIL_MIN {
                return Ok(src.end_missing(
                    "jpeg",
                    format!("no EOI (FFD9) right before offset {end} ({})", m.what),
                ));
            }
            return Ok(Verdict::Truncated(format!(
                "jpeg: no EOI (FFD9) right before offset {end} where the metadata puts the end of the image ({})",
                m.what
            )));
        }
        (None, None) => {
            // A complete JPEG followed by more zero padding than the window shows.
            let z = src.zero_tail();
            if z >= 2 && !src.zero_tail_saturated() {
                if let Some(at) = size.checked_sub(z + 2) {
                    if src.bytes(at, 2)? == [0xFF, 0xD9] {
                        notes.push(format!("{z} bytes of zero padding after EOI"));
                        return Ok(Verdict::Ok);
                    }
                }
            }
            if let Some(i) = eoi.filter(|_| src.zero_tail() < ZERO_TAIL_MIN) {
                let at = win_start + u64_of(i);
                let n = size - at - 2;
                return Ok(Verdict::Corrupt(format!(
                    "jpeg: {n} bytes of unexplained data after EOI at {at}"
                )));
            }
            let last = src.last_bytes(2).to_vec();
            let msg = if src.zero_tail() >= ZERO_TAIL_MIN {
                "no EOI (FFD9) at end".to_string()
            } else {
                format!("no EOI (FFD9) at end (last bytes {})", hex(&last))
            };
            return Ok(src.end_missing("jpeg", msg));
        }
    }
    if let Some(m) = meta {
        for (s, e, is_video, is_jpeg) in m.items {
            if is_video {
                let head = src.bytes(s, 8)?;
                if head.get(4..8) == Some(b"ftyp") {
                    let w = walk_boxes(src, s, e, "jpeg: motion photo video", MAX_EMBEDDED_BOXES)?;
                    if let Some(v) = w.verdict {
                        return Ok(v);
                    }
                    if !w.moov && !w.capped {
                        return Ok(Verdict::Corrupt(
                            "jpeg: motion photo video has no moov box".into(),
                        ));
                    }
                } else {
                    return Ok(Verdict::Corrupt(format!(
                        "jpeg: motion photo video at {s} does not start with an ftyp box (found {})",
                        hex(&head)
                    )));
                }
            } else if is_jpeg && e >= s + 4 {
                let a = src.bytes(s, 2)?;
                let b = src.bytes(e - 2, 2)?;
                if a != [0xFF, 0xD8] || b != [0xFF, 0xD9] {
                    return Ok(Verdict::Truncated(format!(
                        "jpeg: embedded JPEG item at {s}..{e} lacks SOI/EOI"
                    )));
                }
            }
        }
        notes.push(m.what);
    }
    Ok(Verdict::Ok)
}
