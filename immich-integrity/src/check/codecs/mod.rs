//! Decoders of the formats phones and cameras write beyond JPEG/PNG/WebP/GIF/TIFF: HEIF/HEIC
//! and AVIF through libheif (feature `heif`), JPEG XL through jxl-oxide, camera RAW through
//! rawler. Each works on the file's bytes in memory and holds the [`DecodeLimits`] against
//! what the headers declare before it allocates pixels; the caller
//! ([`crate::decode`]) runs them inside `catch_unwind`.

#[cfg(feature = "heif")]
pub(crate) mod heif;
pub(crate) mod jxl;
pub(crate) mod motion;
pub(crate) mod raw;

use super::decode::DecodeLimits;

/// The refusal of an image whose declared size is over `limits` (same words as the other
/// decoders' refusals).
pub(crate) fn over_limits(
    name: &str,
    (w, h): (u64, u64),
    bytes_per_px: u64,
    limits: &DecodeLimits,
) -> Option<String> {
    let need = w.saturating_mul(h).saturating_mul(bytes_per_px);
    let side = u64::from(limits.max_dimension);
    (w > side || h > side || need > limits.max_alloc).then(|| {
        format!(
            "{name}: refused to decode: declares {w}x{h} pixels ({} MiB decoded), over the \
             limits of {} px per side and {} MiB of decoder memory; a decompression bomb or an \
             image too large to decode safely",
            need >> 20,
            limits.max_dimension,
            limits.max_alloc >> 20
        )
    })
}

#[cfg(test)]
mod tests;
