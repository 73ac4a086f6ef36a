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
    let ifds = tiff_ifds(&bytes);
    if let Some(refused) = ifds
        .sizes
        .iter()
        .find_map(|&(w, h)| over_limits("raw", (w, h), 2, limits))
    {
        return Err(refused);
    }
    // rawler reserves a buffer of the byte count an IFD gives before reading: one past the
    // end of the file is refused here.
    if let Some(n) = ifds.data_lengths.iter().find(|&&n| n > bytes.len() as u64) {
        return Err(format!(
            "raw: an IFD declares {n} bytes of image data in a file of {} bytes",
            bytes.len()
        ));
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

/// What the IFDs of a TIFF-based RAW declare.
#[derive(Default)]
pub(crate) struct Ifds {
    /// Every (width, height) (Panasonic's RW2 keeps its sensor size in tags 2 and 3).
    pub(crate) sizes: Vec<(u64, u64)>,
    /// Every strip, tile and JPEG byte count (the first values of each list).
    pub(crate) data_lengths: Vec<u64>,
}

/// Walk the IFD chain and SubIFDs of a TIFF-based RAW (nothing for other layouts).
pub(crate) fn tiff_ifds(b: &[u8]) -> Ifds {
    let little = match b.get(..2) {
        Some(b"II") => true,
        Some(b"MM") => false,
        _ => return Ifds::default(),
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
    let mut out = Ifds::default();
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
                // StripByteCounts, TileByteCounts, JPEGInterchangeFormatLength.
                0x117 | 0x145 | 0x202 => {
                    let size = if typ == 3 { 2 } else { 4 };
                    let read = |at: usize| if typ == 3 { u16_at(at) } else { u32_at(at) };
                    if count as usize * size <= 4 {
                        out.data_lengths.extend(read(e + 8));
                    } else if let Some(list) = u32_at(e + 8).and_then(|o| usize::try_from(o).ok()) {
                        for k in 0..(count as usize).min(MAX_ENTRIES) {
                            out.data_lengths.extend(read(list + size * k));
                        }
                    }
                }
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
            out.sizes.push((w, h));
        }
        if let Some(next) = u32_at(at + 2 + 12 * n as usize) {
            queue.push(next);
        }
    }
    out
}
