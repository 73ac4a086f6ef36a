//! Camera RAW through rawler: the sensor data itself is decoded, not the embedded preview (a
//! RAW whose preview decodes but whose sensor data is cut is corrupt). A first pass without
//! pixels ("dummy") reads the declared size, which is held against the limits before the
//! real decode allocates.

use super::over_limits;
use crate::check::decode::DecodeLimits;
use rawler::decoders::RawDecodeParams;
use rawler::RawFile;
use std::io::Cursor;
use std::sync::Arc;

pub(crate) fn decode(bytes: Arc<[u8]>, limits: &DecodeLimits) -> Result<String, String> {
    // rawler's pass without pixels still reserves (uninitialised) memory for the size a TIFF
    // IFD declares: a hostile size must be refused before rawler sees it.
    if let Some(refused) = tiff_sizes(&bytes)
        .into_iter()
        .find_map(|(w, h)| over_limits("raw", (w, h), 2, limits))
    {
        return Err(refused);
    }
    let loader = rawler::global_loader();
    let open = || RawFile::new("raw", Cursor::new(Arc::clone(&bytes)));
    let head = loader
        .decode(&mut open(), RawDecodeParams::default(), true)
        .map_err(|e| format!("raw: does not decode: {}", one_line(&e.to_string())))?;
    let (w, h) = (head.width as u64, head.height as u64);
    // u16 samples, `cpp` per pixel.
    let bytes_per_px = 2 * (head.cpp.max(1) as u64);
    if let Some(refused) = over_limits("raw", (w, h), bytes_per_px, limits) {
        return Err(refused);
    }
    let img = loader
        .decode(&mut open(), RawDecodeParams::default(), false)
        .map_err(|e| {
            format!(
                "raw: the sensor data does not decode ({} {}, {w}x{h}): {}",
                head.make,
                head.model,
                one_line(&e.to_string())
            )
        })?;
    Ok(format!(
        "raw {} {} {}x{}",
        img.make, img.model, img.width, img.height
    ))
}

/// rawler's errors may carry a backtrace or a bug-report text on later lines.
fn one_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_string()
}

/// IFDs walked at most, and entries read at most per IFD.
const MAX_IFDS: usize = 32;
const MAX_ENTRIES: usize = 4096;

/// Every (width, height) the IFDs of a TIFF-based RAW declare (IFD chain and SubIFDs;
/// Panasonic's RW2 keeps its sensor size in tags 2 and 3).
pub(crate) fn tiff_sizes(b: &[u8]) -> Vec<(u64, u64)> {
    let little = match b.get(..2) {
        Some(b"II") => true,
        Some(b"MM") => false,
        _ => return Vec::new(),
    };
    let u16_at = |at: usize| -> Option<u64> {
        let s: [u8; 2] = b.get(at..at.checked_add(2)?)?.try_into().ok()?;
        Some(u64::from(if little {
            u16::from_le_bytes(s)
        } else {
            u16::from_be_bytes(s)
        }))
    };
    let u32_at = |at: usize| -> Option<u64> {
        let s: [u8; 4] = b.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(u64::from(if little {
            u32::from_le_bytes(s)
        } else {
            u32::from_be_bytes(s)
        }))
    };
    let mut out = Vec::new();
    let mut queue: Vec<u64> = u32_at(4).into_iter().collect();
    let mut seen = Vec::new();
    while let Some(off) = queue.pop() {
        if seen.len() >= MAX_IFDS || seen.contains(&off) || off == 0 {
            continue;
        }
        seen.push(off);
        let Ok(at) = usize::try_from(off) else {
            continue;
        };
        let Some(n) = u16_at(at) else { continue };
        let (mut w, mut h) = (None, None);
        for i in 0..(n as usize).min(MAX_ENTRIES) {
            let e = at + 2 + 12 * i;
            let (Some(tag), Some(typ), Some(count)) = (u16_at(e), u16_at(e + 2), u32_at(e + 4))
            else {
                break;
            };
            let value = if typ == 3 {
                u16_at(e + 8)
            } else {
                u32_at(e + 8)
            };
            match tag {
                0x100 | 0x02 => w = value,
                0x101 | 0x03 => h = value,
                // SubIFDs: one offset inline, or a list of them.
                0x14A if count == 1 => queue.extend(u32_at(e + 8)),
                0x14A => {
                    if let Some(list) = u32_at(e + 8).and_then(|o| usize::try_from(o).ok()) {
                        for k in 0..(count as usize).min(MAX_IFDS) {
                            queue.extend(u32_at(list + 4 * k));
                        }
                    }
                }
                _ => {}
            }
        }
        if let (Some(w), Some(h)) = (w, h) {
            out.push((w, h));
        }
        if let Some(next) = u32_at(at + 2 + 12 * n as usize) {
            queue.push(next);
        }
    }
    out
}
