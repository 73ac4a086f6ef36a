//! Detection: the real format from the magic bytes at the head of a file.

use super::*;

pub(super) const PNG_SIG: &[u8] = b"\x89PNG\r\n\x1a\n";
/// The JPEG XL container's first box (`JXL ` signature box, 12 bytes).
pub(super) const JXL_SIGNATURE: &[u8] = b"\x00\x00\x00\x0cJXL \x0d\x0a\x87\x0a";
pub(super) const PNG_IEND: &[u8] = b"\x00\x00\x00\x00IEND\xae\x42\x60\x82";

pub(super) fn xml_start(head: &[u8]) -> &[u8] {
    let b = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(head);
    let ws = b
        .iter()
        .take_while(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
        .count();
    &b[ws..]
}

pub(super) fn bmff_brand(head: &[u8]) -> Format {
    let Some(major) = head.get(8..12) else {
        return Format::Mp4;
    };
    let box_len = be32(head, 0)
        .map_or(0, |s| s as usize)
        .min(head.len())
        .min(4096);
    let compat: Vec<&[u8]> = head
        .get(16..box_len)
        .unwrap_or(&[])
        .chunks_exact(4)
        .collect();
    const HEIF: [&[u8]; 7] = [
        b"heic", b"heix", b"mif1", b"msf1", b"heim", b"heis", b"hevc",
    ];
    const AVIF: [&[u8]; 2] = [b"avif", b"avis"];
    match major {
        b"crx " => Format::Raw,
        m if AVIF.contains(&m) => Format::Avif,
        b"mif1" | b"msf1" if compat.iter().any(|c| AVIF.contains(c)) => Format::Avif,
        m if HEIF.contains(&m) => Format::Heif,
        _ => Format::Mp4,
    }
}

pub(super) fn tiff_has_dng_tag(head: &[u8]) -> bool {
    let e = Endian {
        little: head.starts_with(b"II"),
    };
    let Some(off) = e.u32(head, 4) else {
        return false;
    };
    let off = off as usize;
    let Some(n) = e.u16(head, off) else {
        return false;
    };
    (0..n as usize).any(|i| {
        off.checked_add(2 + 12 * i)
            .and_then(|p| e.u16(head, p))
            .is_some_and(|tag| tag == 0xC612)
    })
}

/// Detect the format from the first bytes of a file (64 KiB is plenty; 16 is usually enough).
pub fn detect(head: &[u8]) -> Format {
    if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Format::Jpeg;
    }
    if head.starts_with(PNG_SIG) {
        return Format::Png;
    }
    if head.starts_with(b"RIFF") && head.get(8..12) == Some(b"WEBP") {
        return Format::WebP;
    }
    if head.starts_with(b"GIF87a") || head.starts_with(b"GIF89a") {
        return Format::Gif;
    }
    if head.starts_with(&[0xFF, 0x0A]) || head.starts_with(JXL_SIGNATURE) {
        return Format::Jxl;
    }
    if head.get(4..8) == Some(b"ftyp") {
        return bmff_brand(head);
    }
    if let Some(t) = head.get(4..8) {
        // Old QuickTime movies without ftyp.
        let qt = [b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"];
        if qt.iter().any(|q| q[..] == *t) && be32(head, 0).is_some_and(|s| s == 0 || s >= 8) {
            return Format::Mp4;
        }
    }
    if head.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
        return Format::Matroska;
    }
    if head.starts_with(b"FUJIFILMCCD-RAW")
        || head.starts_with(b"IIRO")
        || head.starts_with(b"IIRS")
        || head.starts_with(b"MMOR")
        || head.starts_with(b"IIU\0")
        || head.starts_with(b"FOVb")
        || (head.starts_with(b"II\x1a\0") && head.get(6..14) == Some(b"HEAPCCDR"))
    {
        return Format::Raw;
    }
    if head.starts_with(b"II*\0") || head.starts_with(b"MM\0*") {
        if head.get(8..10) == Some(b"CR") || tiff_has_dng_tag(head) {
            return Format::Raw;
        }
        return Format::Tiff;
    }
    if head.starts_with(b"II+\0") || head.starts_with(b"MM\0+") {
        return Format::Tiff;
    }
    let x = xml_start(head);
    for p in [&b"<?xpacket"[..], b"<?xml", b"<x:xmpmeta", b"<x:xapmeta"] {
        if x.starts_with(p) {
            return Format::Xmp;
        }
    }
    Format::Unknown
}

/// Width and height from a PNG's IHDR chunk.
pub fn png_dimensions(head: &[u8]) -> Option<(u32, u32)> {
    if !head.starts_with(PNG_SIG) || head.get(12..16) != Some(b"IHDR") {
        return None;
    }
    Some((be32(head, 16)?, be32(head, 20)?))
}

/// Whether `head` is the whole file and a proper prefix of a signature this module knows
/// (a file cut inside its first bytes, not a format it does not know).
pub(super) fn cut_in_signature(head: &[u8]) -> bool {
    const SIGS: [&[u8]; 6] = [
        &[0xFF, 0xD8, 0xFF],
        PNG_SIG,
        b"RIFF\0\0\0\0WEBP",
        b"GIF89a",
        b"GIF87a",
        JXL_SIGNATURE,
    ];
    !head.is_empty()
        && SIGS.iter().any(|sig| {
            head.len() < sig.len()
                && head.iter().zip(sig.iter()).enumerate().all(|(i, (h, s))| {
                    // The RIFF length (bytes 4..8) may be anything.
                    h == s || (sig.starts_with(b"RIFF") && (4..8).contains(&i))
                })
        })
}
