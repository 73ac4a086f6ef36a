//! Content faults: real files broken the way disks, copies and uploads break them, each with the
//! lowest scan level that must report it and the fault expected there (`FixtureSpec::
//! content_faults`).
//!
//! | file                | damage                                         | level   | fault             |
//! |---------------------|------------------------------------------------|---------|-------------------|
//! | original JPEG       | cut in the middle of the entropy-coded scan    | quick   | truncated         |
//! | original JPEG       | 64 scan bits flipped to 1 (8 stuffed `FF 00`)  | full    | corrupt           |
//! | preview JPEG        | the same flip                                  | full    | corrupt           |
//! | original JPEG       | second half of the scan zeroed, EOI intact     | hash    | checksum_mismatch |
//! | preview JPEG        | last 40 % zero-filled (EOI lost), size kept    | quick   | truncated         |
//! | original PNG        | `IEND` chunk missing                           | quick   | truncated         |
//! | original PNG        | decompression bomb: 100 000 x 100 000 header   | full    | corrupt           |
//! | thumbnail WebP      | RIFF length 10 bytes short of the file         | quick   | corrupt           |
//! | encoded video MP4   | `moov` box removed                             | quick   | corrupt           |
//! | original MP4        | cut in the middle of `mdat`                    | quick   | truncated         |
//! | original `.jpg`     | really a (healthy) PNG                         | never   | (detail only)     |
//!
//! The flipped JPEG, the bomb and the wrong-extension file are what Immich ingested, so their
//! recorded size and checksum are theirs (only a decoder can see them: `hash` is below `full`);
//! every other original keeps the size and SHA-1 of the healthy file.
//! A fault found at a level is found, with the same fault, at every deeper level (README, "Levels and precedence":
//! truncated, corrupt, size_mismatch, checksum_mismatch).

use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;

use crate::media;
use crate::plan::{sha1, truth_for, Loc, Plan};
use crate::TruthFault;

/// What a content-fault asset gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Damage {
    JpegTruncated,
    JpegFlipped,
    JpegZeroedScan,
    JpegWrongExtension,
    PngNoIend,
    PngBomb,
    PreviewFlipped,
    PreviewZeroTail,
    WebpRiffLength,
    /// Encoded video without `moov`, original cut mid-`mdat`.
    Mp4,
}

impl Damage {
    /// One dedicated asset per damage, in this order.
    pub(crate) const ALL: [Damage; 10] = [
        Damage::JpegTruncated,
        Damage::JpegFlipped,
        Damage::JpegZeroedScan,
        Damage::JpegWrongExtension,
        Damage::PngNoIend,
        Damage::PngBomb,
        Damage::PreviewFlipped,
        Damage::PreviewZeroTail,
        Damage::WebpRiffLength,
        Damage::Mp4,
    ];

    /// The asset type it needs: 'j' JPEG image, 'p' PNG image, 'v' video.
    pub(crate) fn wants(self) -> char {
        match self {
            Damage::PngNoIend | Damage::PngBomb => 'p',
            Damage::Mp4 => 'v',
            _ => 'j',
        }
    }
}

/// Width and height declared by the decompression-bomb PNG.
pub const BOMB_SIDE: u32 = 100_000;

/// Break the files of the dedicated content-fault assets (`plan.content[i]` gets
/// `Damage::ALL[i]`) and return the truth.
pub(crate) fn apply(plan: &mut Plan) -> Result<Vec<TruthFault>> {
    let mut out = Vec::new();
    let content = plan.content.clone();
    for (i, damage) in content.into_iter().zip(Damage::ALL) {
        let a = &plan.assets[i];
        let original = plan.host(&a.original);
        let odb = plan.original_db(a);
        let at = |t: TruthFault, level: &str| TruthFault {
            level: level.to_string(),
            ..t
        };
        match damage {
            Damage::JpegTruncated => {
                let b = read(&original)?;
                let (s, e) = jpeg_scan(&b)?;
                rewrite(&original, &b[..(s + e) / 2])?;
                out.push(at(
                    truth_for(plan, a, "original", "truncated", odb),
                    "quick",
                ));
            }
            Damage::JpegFlipped => {
                let b = ones_run(&read(&original)?)?;
                rewrite(&original, &b)?;
                out.push(at(truth_for(plan, a, "original", "corrupt", odb), "full"));
                // Ingested broken: only a decoder sees it (`hash` would, were it changed later).
                plan.assets[i].checksum = sha1(&b);
            }
            Damage::JpegZeroedScan => {
                let mut b = read(&original)?;
                let (s, e) = jpeg_scan(&b)?;
                b[(s + e) / 2..e].fill(0);
                rewrite(&original, &b)?;
                out.push(at(
                    truth_for(plan, a, "original", "checksum_mismatch", odb),
                    "hash",
                ));
            }
            Damage::JpegWrongExtension => {
                let b = media::png(48, 32, &plan.assets[i].id.as_bytes()[..])?;
                rewrite(&original, &b)?;
                let a = &mut plan.assets[i];
                a.size = b.len() as u64;
                a.checksum = sha1(&b);
            }
            Damage::PngNoIend => {
                let b = read(&original)?;
                if !b.ends_with(b"IEND\xAE\x42\x60\x82") {
                    bail!("internal: PNG without the usual IEND");
                }
                rewrite(&original, &b[..b.len() - 12])?;
                out.push(at(
                    truth_for(plan, a, "original", "truncated", odb),
                    "quick",
                ));
            }
            Damage::PngBomb => {
                let b = png_bomb(BOMB_SIDE, BOMB_SIDE);
                rewrite(&original, &b)?;
                out.push(at(truth_for(plan, a, "original", "corrupt", odb), "full"));
                let a = &mut plan.assets[i];
                a.size = b.len() as u64;
                a.checksum = sha1(&b);
            }
            Damage::PreviewFlipped | Damage::PreviewZeroTail => {
                let l = loc(&a.preview, "preview")?;
                let p = plan.host(l);
                let mut b = read(&p)?;
                let level = if damage == Damage::PreviewFlipped {
                    b = ones_run(&b)?;
                    "full"
                } else {
                    let from = b.len() * 6 / 10;
                    b[from..].fill(0);
                    "quick"
                };
                rewrite(&p, &b)?;
                let fault = if level == "full" {
                    "corrupt"
                } else {
                    "truncated"
                };
                out.push(at(
                    truth_for(plan, a, "preview", fault, plan.db_path(l)),
                    level,
                ));
            }
            Damage::WebpRiffLength => {
                let l = loc(&a.thumbnail, "thumbnail")?;
                let p = plan.host(l);
                let mut b = read(&p)?;
                if !b.starts_with(b"RIFF") || b.len() < 40 {
                    bail!("internal: thumbnail is not a WebP");
                }
                let riff = (b.len() - 8 - 10) as u32;
                b[4..8].copy_from_slice(&riff.to_le_bytes());
                rewrite(&p, &b)?;
                out.push(at(
                    truth_for(plan, a, "thumbnail", "corrupt", plan.db_path(l)),
                    "quick",
                ));
            }
            Damage::Mp4 => {
                let l = loc(&a.encoded, "encoded video")?;
                let p = plan.host(l);
                rewrite(&p, &without_box(&read(&p)?, b"moov")?)?;
                out.push(at(
                    truth_for(plan, a, "encoded_video", "corrupt", plan.db_path(l)),
                    "quick",
                ));
                let b = read(&original)?;
                let (s, e) = find_box(&b, b"mdat")?;
                rewrite(&original, &b[..(s + e) / 2])?;
                out.push(at(
                    truth_for(plan, a, "original", "truncated", odb),
                    "quick",
                ));
            }
        }
    }
    Ok(out)
}

fn loc<'a>(l: &'a Option<Loc>, what: &str) -> Result<&'a Loc> {
    l.as_ref()
        .ok_or_else(|| anyhow!("internal: content-fault asset without {what}"))
}

fn read(p: &Path) -> Result<Vec<u8>> {
    std::fs::read(p).with_context(|| format!("read {}", p.display()))
}

/// Replace a file's content in place (mode and owner stay).
fn rewrite(p: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(p, bytes).with_context(|| format!("rewrite {}", p.display()))
}

/// (first byte after the SOS header, offset of the final `FFD9`).
fn jpeg_scan(b: &[u8]) -> Result<(usize, usize)> {
    let mut i = 2;
    while i + 4 <= b.len() {
        if b[i] != 0xFF {
            bail!("internal: JPEG segment walk lost at {i}");
        }
        let len = u16::from_be_bytes([b[i + 2], b[i + 3]]) as usize;
        if b[i + 1] == 0xDA {
            let start = i + 2 + len;
            if !b.ends_with(&[0xFF, 0xD9]) || start + 64 > b.len() {
                bail!("internal: JPEG scan too short to damage");
            }
            return Ok((start, b.len() - 2));
        }
        i += 2 + len;
    }
    bail!("internal: JPEG without SOS")
}

/// Sixteen bytes in the middle of the scan become eight byte-stuffed `FF 00` pairs: 64 bits
/// flipped to 1, an all-ones run no Huffman table allows. zune-jpeg decodes it anyway; a
/// strict decoder refuses it.
fn ones_run(b: &[u8]) -> Result<Vec<u8>> {
    let (s, e) = jpeg_scan(b)?;
    let mut pos = (s + e) / 2;
    while b[pos - 1] == 0xFF {
        pos += 1;
    }
    if pos + 16 > e {
        bail!("internal: JPEG scan too short to flip");
    }
    let mut m = b.to_vec();
    for k in 0..8 {
        m[pos + 2 * k] = 0xFF;
        m[pos + 2 * k + 1] = 0;
    }
    Ok(m)
}

/// Top-level ISO BMFF boxes: (start, end) of the first box of type `kind`.
fn find_box(b: &[u8], kind: &[u8; 4]) -> Result<(usize, usize)> {
    let mut p = 0usize;
    while p + 8 <= b.len() {
        let size = u32::from_be_bytes([b[p], b[p + 1], b[p + 2], b[p + 3]]) as u64;
        let size = match size {
            0 => (b.len() - p) as u64,
            1 if p + 16 <= b.len() => {
                u64::from_be_bytes(b[p + 8..p + 16].try_into().expect("8 bytes"))
            }
            n => n,
        };
        let end = p as u64 + size;
        if size < 8 || end > b.len() as u64 {
            bail!("internal: bad MP4 box at {p}");
        }
        if &b[p + 4..p + 8] == kind {
            return Ok((p, end as usize));
        }
        p = end as usize;
    }
    bail!("internal: no {} box", String::from_utf8_lossy(kind))
}

fn without_box(b: &[u8], kind: &[u8; 4]) -> Result<Vec<u8>> {
    let (s, e) = find_box(b, kind)?;
    let mut v = b[..s].to_vec();
    v.extend_from_slice(&b[e..]);
    Ok(v)
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &x in bytes {
        c ^= x as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// A well-formed PNG declaring `w` x `h` RGBA pixels (40 GB at 100 000²) whose IDAT holds a
/// few bytes: a decompression bomb that passes every structural check.
pub fn png_bomb(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 6, 0, 0, 0]);
    chunk(&mut out, b"IHDR", &ihdr);
    // A zlib stream with one stored block of four zero bytes.
    let idat = [
        0x78, 0x01, 0x01, 0x04, 0x00, 0xFB, 0xFF, 0, 0, 0, 0, 0x00, 0x04, 0x00, 0x01,
    ];
    chunk(&mut out, b"IDAT", &idat);
    chunk(&mut out, b"IEND", &[]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_bomb_is_well_formed() {
        let b = png_bomb(7, 9);
        assert!(
            b.ends_with(b"IEND\xAE\x42\x60\x82"),
            "IEND CRC is the standard one"
        );
        assert_eq!(&b[16..24], &[0, 0, 0, 7, 0, 0, 0, 9]);
    }

    #[test]
    fn boxes_are_found_and_removed() {
        let mut f = Vec::new();
        for (k, n) in [(b"ftyp", 16u32), (b"mdat", 40), (b"moov", 24)] {
            f.extend_from_slice(&n.to_be_bytes());
            f.extend_from_slice(k);
            f.extend(std::iter::repeat_n(0u8, n as usize - 8));
        }
        assert_eq!(find_box(&f, b"mdat").unwrap(), (16, 56));
        assert_eq!(without_box(&f, b"moov").unwrap().len(), 56);
        assert!(find_box(&f, b"free").is_err());
    }
}
