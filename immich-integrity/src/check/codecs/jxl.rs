//! JPEG XL through jxl-oxide: header, limits, the whole codestream loaded, the first frame
//! rendered. Its allocation tracker enforces the memory limit inside the decoder too.

use super::over_limits;
use crate::check::decode::DecodeLimits;
use jxl_oxide::{AllocTracker, JxlImage, JxlThreadPool};

/// Keyframes rendered at most (an animation's first frames prove its stream as far as they go;
/// every frame is still parsed to the end of the codestream).
const MAX_FRAMES: usize = 4;

pub(crate) fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<String, String> {
    let budget = usize::try_from(limits.max_alloc).unwrap_or(usize::MAX);
    let image = JxlImage::builder()
        .pool(JxlThreadPool::none())
        .alloc_tracker(AllocTracker::with_limit(budget))
        .read(bytes)
        .map_err(|e| format!("jxl: does not decode: {e}"))?;
    let (w, h) = (image.width(), image.height());
    let channels = image.pixel_format().channels() as u64;
    // Rendered as f32 samples.
    if let Some(refused) = over_limits("jxl", (w.into(), h.into()), channels * 4, limits) {
        return Err(refused);
    }
    if !image.is_loading_done() {
        return Err(format!(
            "jxl: the codestream ends before the image does ({w}x{h}, {} of its frames loaded)",
            image.num_loaded_frames()
        ));
    }
    let frames = image.num_loaded_keyframes();
    if frames == 0 {
        return Err("jxl: no frame in the codestream".into());
    }
    for k in 0..frames.min(MAX_FRAMES) {
        image
            .render_frame(k)
            .map_err(|e| format!("jxl: frame {k} does not decode: {e}"))?;
    }
    Ok(format!("jxl {w}x{h}"))
}
