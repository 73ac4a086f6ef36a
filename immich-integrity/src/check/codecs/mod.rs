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
use super::formats::Format;

/// Files larger than this of the formats decoded in memory (HEIF, AVIF, JPEG XL, RAW) are not
/// decoded (counted as fallbacks): a 1 GiB RAW is not read into memory.
pub const MAX_IN_MEMORY: u64 = 512 * 1024 * 1024;

/// Whether `format` is decoded here, from the whole file in memory.
pub(crate) fn in_memory(format: Format) -> bool {
    matches!(
        format,
        Format::Heif | Format::Avif | Format::Jxl | Format::Raw
    )
}

/// HEIF/AVIF, JPEG XL and RAW from their bytes.
pub(crate) fn decode(
    bytes: &[u8],
    format: Format,
    limits: &DecodeLimits,
) -> Result<String, String> {
    match format {
        #[cfg(feature = "heif")]
        Format::Heif | Format::Avif => heif::decode(bytes, format.name(), limits),
        Format::Jxl => jxl::decode(bytes, limits),
        Format::Raw => raw::decode(bytes.into(), limits),
        _ => Err(format!("{}: no decoder", format.name())),
    }
}

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
