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
        .find_map(|&(w, h, spp)| over_limits("raw", (w, h), 2 * spp, limits))
    {
        return Err(refused);
    }
    // rawler reserves a buffer for an entry's values (count times the type's size) before
    // reading them: a count no file of this length can hold is refused here (a fuzzed width
    // entry with a count of 2^25 made it ask for 64 MiB).
    if let Some((tag, n)) = ifds.oversized {
        return Err(format!(
            "raw: IFD entry {tag:#06x} declares {n} bytes of values in a file of {} bytes",
            bytes.len()
        ));
    }
    if let Some((tag, n)) = ifds.too_many_subs {
        return Err(format!(
            "raw: IFD entry {tag:#06x} lists {n} sub-IFDs (more than {MAX_IFDS}: not a camera's)"
        ));
    }
    // Likewise the byte count an IFD gives for the image data.
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

/// IFDs of the chain walked at most (and sub-IFDs listed by one of them), and values read at
/// most from one strip or tile byte-count list.
const MAX_IFDS: usize = 32;
const MAX_ENTRIES: usize = 4096;

/// What the IFDs of a TIFF-based RAW declare.
#[derive(Default)]
pub(crate) struct Ifds {
    /// Every (width, height, samples per pixel) (Panasonic's RW2 keeps its sensor size in
    /// tags 2 and 3).
    pub(crate) sizes: Vec<(u64, u64, u64)>,
    /// Every strip, tile and JPEG byte count (the first values of each list).
    pub(crate) data_lengths: Vec<u64>,
    /// The first entry whose values (count times the type's size) cannot fit in the file:
    /// its tag and byte length.
    pub(crate) oversized: Option<(u64, u64)>,
    /// The first SubIFDs or Exif IFD entry listing more than [`MAX_IFDS`] offsets: its tag and
    /// count.
    pub(crate) too_many_subs: Option<(u64, u64)>,
}

/// Bytes of one value of TIFF field type `typ`, as rawler counts them (types it does not
/// know, 0 and over 12, are bytes to it).
fn type_size(typ: u64) -> u64 {
    match typ {
        3 | 8 => 2,
        4 | 9 | 11 => 4,
        5 | 10 | 12 => 8,
        _ => 1,
    }
}

/// Walk the IFD chain and SubIFDs of a TIFF-based RAW (nothing for other layouts), as
/// rawler's TIFF reader does: every IFD of the chain, and the IFDs its SubIFDs and Exif IFD
/// entries point at (an offset of 0 included: rawler reads the file header as an IFD then),
/// with every entry of each (rawler reserves each entry's values before reading them).
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
    // (offset, in the chain): the chain's IFDs lead on and to sub-IFDs, sub-IFDs do not.
    let mut queue: Vec<(u64, bool)> = u32_at(4).map(|o| (o, true)).into_iter().collect();
    let mut seen = Vec::new();
    while let Some((off, chain)) = queue.pop() {
        let walked = seen.len() >= MAX_IFDS * (MAX_IFDS + 1);
        if walked || seen.contains(&off) || (chain && off == 0) {
            continue;
        }
        seen.push(off);
        let Ok(at) = usize::try_from(off) else {
            continue;
        };
        let Some(n) = u16_at(at) else { continue };
        let (mut w, mut h, mut spp) = (None, None, 1);
        for i in 0..n as usize {
            let e = at + 2 + 12 * i;
            let (Some(tag), Some(typ), Some(count)) = (u16_at(e), u16_at(e + 2), u32_at(e + 4))
            else {
                break;
            };
            let len = count.saturating_mul(type_size(typ));
            if len > b.len() as u64 && out.oversized.is_none() {
                out.oversized = Some((tag, len));
            }
            let value = if typ == 3 {
                u16_at(e + 8)
            } else {
                u32_at(e + 8)
            };
            match tag {
                0x100 | 0x02 => w = value,
                0x101 | 0x03 => h = value,
                // SamplesPerPixel: a linear DNG holds three 16-bit samples a pixel.
                0x115 => spp = value.unwrap_or(1).max(1),
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
                // SubIFDs and the Exif IFD, read as rawler reads them: LONG values are a
                // list of offsets (rawler walks them all; no camera writes more than a few),
                // UNDEFINED data is an IFD where it stands, an unknown type's first byte is
                // an offset; other types are ignored.
                0x14A | 0x8769 if chain && typ == 4 && count > MAX_IFDS as u64 => {
                    out.too_many_subs.get_or_insert((tag, count));
                }
                0x14A | 0x8769 if chain => {
                    let data = if count.saturating_mul(type_size(typ)) <= 4 {
                        Some(e as u64 + 8)
                    } else {
                        u32_at(e + 8)
                    };
                    let data = data.and_then(|d| usize::try_from(d).ok());
                    match typ {
                        4 => {
                            for k in 0..count as usize {
                                let at = data.and_then(|d| d.checked_add(4 * k));
                                queue.extend(at.and_then(u32_at).map(|o| (o, false)));
                            }
                        }
                        7 => queue.extend(data.map(|d| (d as u64, false))),
                        0 | 13.. => {
                            let first = data.and_then(|d| b.get(d)).map(|&v| u64::from(v));
                            queue.extend(first.map(|o| (o, false)));
                        }
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        if let (Some(w), Some(h)) = (w, h) {
            out.sizes.push((w, h, spp));
        }
        if let Some(next) = u32_at(at + 2 + 12 * n as usize).filter(|_| chain) {
            queue.push((next, true));
        }
    }
    out
}
