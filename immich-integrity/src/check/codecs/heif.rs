//! HEIF/HEIC and AVIF through the system libheif (libheif-rs): every top-level image (grids
//! assembled from their tiles), their thumbnails and depth images, each held against the
//! limits by the size its header declares before it is decoded.

use super::over_limits;
use crate::check::decode::DecodeLimits;
use libheif_rs::{ColorSpace, HeifContext, ImageHandle, ItemId, LibHeif};
use std::sync::OnceLock;

/// Images (top-level, thumbnails, depth) decoded at most per file.
const MAX_IMAGES: usize = 64;

fn lib() -> &'static LibHeif {
    static LIB: OnceLock<LibHeif> = OnceLock::new();
    LIB.get_or_init(LibHeif::new)
}

/// Decode every image of a HEIF/AVIF file held in `bytes`. `name`: `heif` or `avif`.
pub(crate) fn decode(bytes: &[u8], name: &str, limits: &DecodeLimits) -> Result<String, String> {
    let fail = |what: &str, e: libheif_rs::HeifError| format!("{name}: {what}: {}", one_line(&e));
    let mut ctx = HeifContext::read_from_bytes(bytes).map_err(|e| fail("does not parse", e))?;
    // The scan runs one file per worker already.
    ctx.set_max_decoding_threads(1);
    let mut ids: Vec<ItemId> = vec![0; ctx.number_of_top_level_images().min(MAX_IMAGES)];
    let n = ctx.top_level_image_ids(&mut ids);
    ids.truncate(n);
    if ids.is_empty() {
        return Err(format!("{name}: no image in the file"));
    }
    let primary = ctx
        .primary_image_handle()
        .map_err(|e| fail("no primary image", e))?;
    let (pw, ph) = (primary.width(), primary.height());
    let mut decoded = 0usize;
    for id in ids {
        let handle = ctx
            .image_handle(id)
            .map_err(|e| fail(&format!("image {id}"), e))?;
        decode_one(&handle, &format!("image {id}"), name, limits, &mut decoded)?;
        let mut thumbs: Vec<ItemId> = vec![0; handle.number_of_thumbnails().min(MAX_IMAGES)];
        let t = handle.thumbnail_ids(&mut thumbs);
        for tid in thumbs.into_iter().take(t) {
            let th = handle
                .thumbnail(tid)
                .map_err(|e| fail(&format!("thumbnail {tid}"), e))?;
            decode_one(&th, &format!("thumbnail {tid}"), name, limits, &mut decoded)?;
        }
        let depth_n = usize::try_from(handle.number_of_depth_images()).unwrap_or(0);
        let mut depth: Vec<ItemId> = vec![0; depth_n.min(MAX_IMAGES)];
        let d = handle.depth_image_ids(&mut depth);
        for did in depth.into_iter().take(d) {
            let dh = handle
                .depth_image_handle(did)
                .map_err(|e| fail(&format!("depth image {did}"), e))?;
            decode_one(
                &dh,
                &format!("depth image {did}"),
                name,
                limits,
                &mut decoded,
            )?;
        }
    }
    Ok(format!("{name} {pw}x{ph} ({decoded} images)"))
}

fn decode_one(
    h: &ImageHandle,
    what: &str,
    name: &str,
    limits: &DecodeLimits,
    decoded: &mut usize,
) -> Result<(), String> {
    if *decoded >= MAX_IMAGES {
        return Ok(());
    }
    // The coded size (`ispe`) may exceed the shown one (a crop): the decoder allocates it.
    let ispe = |v: i32| u64::try_from(v).unwrap_or(0);
    let (w, ht) = (
        u64::from(h.width()).max(ispe(h.ispe_width())),
        u64::from(h.height()).max(ispe(h.ispe_height())),
    );
    if w == 0 || ht == 0 {
        return Err(format!("{name}: {what} declares a size of {w}x{ht}"));
    }
    // Planes of up to four channels, two bytes a sample above 8 bits (10-bit HDR).
    let sample = if h.luma_bits_per_pixel() > 8 { 2 } else { 1 };
    let channels = if h.has_alpha_channel() { 4 } else { 3 };
    if let Some(refused) = over_limits(name, (w, ht), sample * channels, limits) {
        return Err(format!("{refused} ({what})"));
    }
    lib().decode(h, ColorSpace::Undefined, None).map_err(|e| {
        format!(
            "{name}: {what} ({w}x{ht}) does not decode: {}",
            one_line(&e)
        )
    })?;
    *decoded += 1;
    Ok(())
}

/// libheif's messages end in a newline.
fn one_line(e: &libheif_rs::HeifError) -> String {
    e.to_string().trim().replace('\n', "; ")
}
