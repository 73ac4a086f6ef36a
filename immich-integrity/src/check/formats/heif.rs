//! HEIF/AVIF items: every extent `iloc` gives must lie inside the file (or inside `idat`).
//! Box sizes alone cannot see a file cut inside an `mdat` of size 0 ("to the end of the file"):
//! the boxes still tile what is left; the item extents are what run past the end.

use super::*;

/// Largest `meta` box whose items are checked (real ones are a few KiB; grids a few tens).
const MAX_META: u64 = MAX_CHUNK as u64;

/// The verdict on the item extents of the top-level `meta` box, `None` when they fit.
pub(super) fn check_items<R: ReadAt + ?Sized>(
    src: &mut Src<'_, R>,
    label: &str,
    notes: &mut Vec<String>,
) -> io::Result<Option<Verdict>> {
    let size = src.size;
    let mut off = 0u64;
    let mut seen = 0usize;
    let meta = loop {
        if off >= size || seen >= MAX_BOXES {
            return Ok(None);
        }
        let h = src.bytes(off, 16)?;
        let Some(len) = box_len(&h, size - off) else {
            return Ok(None); // the box walk reported it
        };
        if &h[4..8] == b"meta" {
            let hdr = if be32(&h, 0) == Some(1) { 16 } else { 8 };
            break (off + hdr, len - hdr);
        }
        off += len;
        seen += 1;
    };
    let (start, len) = meta;
    if len > MAX_META {
        notes.push(format!("meta box of {len} bytes: item extents not checked"));
        return Ok(None);
    }
    let body = src.bytes(start, len as usize)?;
    // `meta` is a full box: version and flags before its children.
    let Some(children) = body.get(4..) else {
        return Ok(Some(Verdict::Corrupt(format!(
            "{label}: meta box too short"
        ))));
    };
    let (mut iloc, mut idat) = (None, None);
    let mut at = 0usize;
    while at < children.len() {
        let rem = u64_of(children.len() - at);
        let Some(l) = box_len(&children[at..], rem) else {
            return Ok(Some(Verdict::Corrupt(format!(
                "{label}: meta holds an invalid box at {}",
                start + 4 + u64_of(at)
            ))));
        };
        let (hdr, l) = (
            if be32(children, at) == Some(1) { 16 } else { 8 },
            l as usize,
        );
        let payload = children.get(at + hdr..at + l).unwrap_or(&[]);
        match &children[at + 4..at + 8] {
            b"iloc" => iloc = Some(payload),
            b"idat" => idat = Some(u64_of(payload.len())),
            _ => {}
        }
        at += l;
    }
    let Some(iloc) = iloc else {
        return Ok(Some(Verdict::Corrupt(format!(
            "{label}: meta has no item locations (iloc)"
        ))));
    };
    Ok(match extents(iloc) {
        Err(why) => Some(Verdict::Corrupt(format!("{label}: iloc {why}"))),
        Ok(list) => list.into_iter().find_map(|e| e.outside(size, idat, label)),
    })
}

/// One item extent: where its bytes are, and how they are addressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Extent {
    pub(super) item: u32,
    /// 0: file offset, 1: offset in `idat`, 2: offset in another item (not checked).
    pub(super) method: u8,
    /// Absolute offset (base offset plus extent offset).
    pub(super) offset: u64,
    /// 0 means "to the end of the data".
    pub(super) length: u64,
    /// A data reference other than "this file".
    pub(super) external: bool,
}

impl Extent {
    fn outside(&self, size: u64, idat: Option<u64>, label: &str) -> Option<Verdict> {
        let end = self.offset.checked_add(self.length);
        match self.method {
            0 if !self.external => match end {
                Some(e) if e <= size && self.offset <= size => None,
                _ => Some(Verdict::Truncated(format!(
                    "{label}: item {} has data at {}..{} but the file ends at {size}",
                    self.item,
                    self.offset,
                    end.map_or("overflow".into(), |e| e.to_string())
                ))),
            },
            1 => {
                let have = idat.unwrap_or(0);
                match end {
                    Some(e) if e <= have => None,
                    _ => Some(Verdict::Corrupt(format!(
                        "{label}: item {} has data at {} of {} bytes in idat, which holds {have}",
                        self.item, self.offset, self.length
                    ))),
                }
            }
            _ => None,
        }
    }
}

/// Big-endian unsigned integer of `n` bytes (0, 4 or 8) at `*at`, advancing `*at`.
fn take(b: &[u8], at: &mut usize, n: u8) -> Result<u64, String> {
    let v = match n {
        0 => Some(0),
        4 => be32(b, *at).map(u64::from),
        8 => be64(b, *at),
        2 => be16(b, *at).map(u64::from),
        _ => return Err(format!("has an invalid field size {n}")),
    };
    *at += usize::from(n);
    v.ok_or_else(|| "is cut short".to_string())
}

/// Every extent of an `iloc` payload (version 0, 1 or 2), never allocating more than the
/// payload could hold.
pub(super) fn extents(b: &[u8]) -> Result<Vec<Extent>, String> {
    let version = *b.first().ok_or("is empty")?;
    if version > 2 {
        return Err(format!("has unknown version {version}"));
    }
    let sizes = |i: usize| b.get(i).copied().ok_or("is cut short");
    let (s1, s2) = (sizes(4)?, sizes(5)?);
    let (off_size, len_size, base_size) = (s1 >> 4, s1 & 15, s2 >> 4);
    let index_size = if version > 0 { s2 & 15 } else { 0 };
    let mut at = 6usize;
    let count = take(b, &mut at, if version < 2 { 2 } else { 4 })?;
    let mut out = Vec::new();
    for _ in 0..count {
        let item = take(b, &mut at, if version < 2 { 2 } else { 4 })? as u32;
        let method = if version > 0 {
            (take(b, &mut at, 2)? & 15) as u8
        } else {
            0
        };
        let dref = take(b, &mut at, 2)?;
        let base = take(b, &mut at, base_size)?;
        let n = take(b, &mut at, 2)?;
        for _ in 0..n {
            take(b, &mut at, index_size)?;
            let o = take(b, &mut at, off_size)?;
            let length = take(b, &mut at, len_size)?;
            if out.len() > b.len() {
                return Err("declares more extents than it holds".into());
            }
            out.push(Extent {
                item,
                method,
                offset: base.checked_add(o).ok_or("offset overflows")?,
                length,
                external: dref != 0,
            });
        }
    }
    Ok(out)
}
