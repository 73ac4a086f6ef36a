//! GIF: signature and the trailer byte.

use super::*;

pub(super) fn check_gif<R: ReadAt + ?Sized>(src: &Src<'_, R>) -> Verdict {
    if src.size < 14 {
        return Verdict::Truncated(format!("gif: file of {} bytes too short", src.size));
    }
    if src.last_bytes(1) == [0x3B] {
        Verdict::Ok
    } else {
        src.end_missing("gif", "trailer (3B) missing at end".into())
    }
}
