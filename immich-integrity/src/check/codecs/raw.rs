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
