//! Files phones and cameras make, healthy and broken, for the content faults: HEIC (8-bit,
//! 10-bit HDR, gridded, motion photo), AVIF (10-bit HDR, gridded, `mdat` of size 0), JPEG XL
//! (bare codestream and container) and DNG, made with Debian's encoders (`heif-enc` from
//! libheif-examples, `avifenc` from libavif-bin, `cjxl` from libjxl-tools) once per process
//! and reused; the gridded HEIC and the DNG are written here (libheif 1.15's `heif-enc` makes
//! no grids; a DNG is a TIFF). Each asset's file is made unique by a trailing `free` box (or
//! TIFF trailer bytes) carrying its id.
//!
//! | case                    | damage                                            | level | fault     |
//! |-------------------------|---------------------------------------------------|-------|-----------|
//! | HEIC, 10-bit HDR HEIC, gridded HEIC, motion photo HEIC, 10-bit HDR AVIF, gridded AVIF, bare and container JXL, DNG | none (healthy) | never | - |
//! | HEIC                    | cut in the middle of `mdat`                       | quick | truncated |
//! | AVIF                    | `mdat` size 0 ("to end of file"), then cut        | quick | truncated |
//! | HEIC                    | `mdat` size lies (4 KiB past the end)             | quick | truncated |
//! | JXL container           | cut inside `jxlc`                                 | quick | truncated |
//! | HEIC                    | coded data overwritten, size unchanged            | full  | corrupt   |
//! | AVIF                    | coded data overwritten, size unchanged            | full  | corrupt   |
//! | gridded HEIC            | a grid tile missing (reference to an absent item) | full  | corrupt   |
//! | bare JXL                | codestream cut                                    | full  | corrupt   |
//! | DNG                     | sensor data cut (strip shortened), preview intact | full  | corrupt   |
//! | motion photo HEIC       | its video has no `moov`                           | full  | corrupt   |
//!
//! Files broken at `full` are what Immich ingested (their recorded size and checksum are
//! theirs: only a decoder sees them); the others keep the healthy file's size and SHA-1.

use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use crate::plan::{sha1, truth_for, Plan};
use crate::TruthFault;

/// One dedicated asset per case, in this order (after the `content::Damage` assets).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Case {
    Heic,
    Heic10Hdr,
    HeicGrid,
    HeicMotion,
    Avif10Hdr,
    AvifGrid,
    JxlBare,
    JxlContainer,
    Dng,
    HeicTruncated,
    AvifZeroMdatCut,
    HeicMdatSizeLies,
    JxlContainerTruncated,
    HeicCoded,
    AvifCoded,
    HeicGridTileMissing,
    JxlBareTruncated,
    DngSensorCut,
    HeicMotionVideoBroken,
}

impl Case {
    pub const ALL: [Case; 19] = [
        Case::Heic,
        Case::Heic10Hdr,
        Case::HeicGrid,
        Case::HeicMotion,
        Case::Avif10Hdr,
        Case::AvifGrid,
        Case::JxlBare,
        Case::JxlContainer,
        Case::Dng,
        Case::HeicTruncated,
        Case::AvifZeroMdatCut,
        Case::HeicMdatSizeLies,
        Case::JxlContainerTruncated,
        Case::HeicCoded,
        Case::AvifCoded,
        Case::HeicGridTileMissing,
        Case::JxlBareTruncated,
        Case::DngSensorCut,
        Case::HeicMotionVideoBroken,
    ];

    /// The extension of the file.
    fn ext(self) -> &'static str {
        use Case::*;
        match self {
            Avif10Hdr | AvifGrid | AvifZeroMdatCut | AvifCoded => "avif",
            JxlBare | JxlContainer | JxlContainerTruncated | JxlBareTruncated => "jxl",
            Dng | DngSensorCut => "dng",
            _ => "heic",
        }
    }

    /// (level, fault) of a broken case, `None` for a healthy one.
    pub fn truth(self) -> Option<(&'static str, &'static str)> {
        use Case::*;
        match self {
            HeicTruncated | AvifZeroMdatCut | HeicMdatSizeLies | JxlContainerTruncated => {
                Some(("quick", "truncated"))
            }
            HeicCoded
            | AvifCoded
            | HeicGridTileMissing
            | JxlBareTruncated
            | DngSensorCut
            | HeicMotionVideoBroken => Some(("full", "corrupt")),
            _ => None,
        }
    }
}

/// The encoded templates, made once per process.
struct Templates {
    heic: Vec<u8>,
    heic10: Vec<u8>,
    avif10: Vec<u8>,
    avif: Vec<u8>,
    avif_grid: Vec<u8>,
    jxl_bare: [Vec<u8>; 2],
    jxl_container: Vec<u8>,
}

fn templates() -> Result<&'static Templates> {
    static T: OnceLock<std::result::Result<Templates, String>> = OnceLock::new();
    T.get_or_init(|| make_templates().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow!("{e}"))
}

fn png(path: &Path, w: u32, h: u32, seed: u8, sixteen: bool) -> Result<()> {
    let px = |x: u32, y: u32, c: u32| (x * 5 + y * 3 + c * 40 + u32::from(seed)) as u8;
    if sixteen {
        let img = image::ImageBuffer::from_fn(w, h, |x, y| {
            image::Rgb([0, 1, 2].map(|c| u16::from(px(x, y, c)) * 257))
        });
        image::DynamicImage::ImageRgb16(img).save(path)?;
    } else {
        let img =
            image::ImageBuffer::from_fn(w, h, |x, y| image::Rgb([0, 1, 2].map(|c| px(x, y, c))));
        image::DynamicImage::ImageRgb8(img).save(path)?;
    }
    Ok(())
}

fn run(tool: &str, package: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(tool).args(args).output().with_context(|| {
        format!("could not run {tool} (Debian package {package}; scripts/setup.sh installs it)")
    })?;
    if !out.status.success() {
        bail!(
            "{tool} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn make_templates() -> Result<Templates> {
    let dir = tempfile_dir()?;
    let p = |n: &str| dir.join(n).to_string_lossy().into_owned();
    png(&dir.join("a.png"), 64, 48, 0, false)?;
    png(&dir.join("b.png"), 64, 48, 77, false)?;
    png(&dir.join("a16.png"), 64, 48, 0, true)?;
    png(&dir.join("g.png"), 128, 128, 9, false)?;
    run(
        "heif-enc",
        "libheif-examples",
        &["-q", "50", "-o", &p("a.heic"), &p("a.png")],
    )?;
    run(
        "heif-enc",
        "libheif-examples",
        &[
            "-b",
            "10",
            "--colour_primaries",
            "9",
            "--transfer_characteristic",
            "16",
            "--matrix_coefficients",
            "9",
            "-q",
            "50",
            "-o",
            &p("a10.heic"),
            &p("a16.png"),
        ],
    )?;
    let avifenc = |args: &[&str]| run("avifenc", "libavif-bin", args);
    avifenc(&["-s", "10", &p("a.png"), &p("a.avif")])?;
    avifenc(&[
        "-s",
        "10",
        "-d",
        "10",
        "--cicp",
        "9/16/9",
        &p("a16.png"),
        &p("a10.avif"),
    ])?;
    avifenc(&["-s", "10", "--grid", "2x2", &p("g.png"), &p("g.avif")])?;
    let cjxl = |args: &[&str]| run("cjxl", "libjxl-tools", args);
    cjxl(&[
        &p("a.png"),
        &p("a.jxl"),
        "--container=0",
        "-q",
        "90",
        "--quiet",
    ])?;
    cjxl(&[
        &p("b.png"),
        &p("b.jxl"),
        "--container=0",
        "-q",
        "90",
        "--quiet",
    ])?;
    cjxl(&[
        &p("a.png"),
        &p("c.jxl"),
        "--container=1",
        "-q",
        "90",
        "--quiet",
    ])?;
    let read =
        |n: &str| std::fs::read(dir.join(n)).with_context(|| format!("encoder wrote no {n}"));
    let t = Templates {
        heic: read("a.heic")?,
        heic10: read("a10.heic")?,
        avif10: read("a10.avif")?,
        avif: read("a.avif")?,
        avif_grid: read("g.avif")?,
        jxl_bare: [read("a.jxl")?, read("b.jxl")?],
        jxl_container: read("c.jxl")?,
    };
    let _ = std::fs::remove_dir_all(&dir);
    Ok(t)
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!(
        "immich-fixture-phones-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir(&d).with_context(|| format!("mkdir {}", d.display()))?;
    Ok(d)
}

// ----- ISO BMFF helpers -------------------------------------------------------------------

fn bx(typ: &[u8; 4], payload: &[u8]) -> Vec<u8> {
    let mut v = ((payload.len() + 8) as u32).to_be_bytes().to_vec();
    v.extend_from_slice(typ);
    v.extend_from_slice(payload);
    v
}

fn full(typ: &[u8; 4], version: u8, payload: &[u8]) -> Vec<u8> {
    bx(typ, &[&[version, 0, 0, 0][..], payload].concat())
}

/// (type, start, end) of the boxes in `b[from..to]`.
fn boxes(b: &[u8], from: usize, to: usize) -> Vec<([u8; 4], usize, usize)> {
    let mut out = Vec::new();
    let mut at = from;
    while at + 8 <= to {
        let size = u32::from_be_bytes(b[at..at + 4].try_into().unwrap()) as usize;
        let size = if size == 0 { to - at } else { size };
        if size < 8 || at + size > to {
            break;
        }
        out.push((b[at + 4..at + 8].try_into().unwrap(), at, at + size));
        at += size;
    }
    out
}

fn find(list: &[([u8; 4], usize, usize)], t: &[u8; 4]) -> Result<(usize, usize)> {
    list.iter()
        .find(|(x, ..)| x == t)
        .map(|&(_, s, e)| (s, e))
        .ok_or_else(|| anyhow!("internal: no {} box", String::from_utf8_lossy(t)))
}

/// The `mdat` payload range of a one-image HEIF/AVIF file.
fn mdat(b: &[u8]) -> Result<(usize, usize)> {
    let (s, e) = find(&boxes(b, 0, b.len()), b"mdat")?;
    Ok((s + 8, e))
}

/// A gridded HEIC (`cols` x 1 tiles of the template's image), its tiles' coded data in `mdat`.
/// `missing`: the grid references a tile item the file does not have.
fn heic_grid(t: &[u8], cols: u16, missing: bool) -> Result<Vec<u8>> {
    let top = boxes(t, 0, t.len());
    let (ms, me) = find(&top, b"meta")?;
    let meta = boxes(t, ms + 12, me);
    let (ps, pe) = find(&meta, b"iprp")?;
    let (cs, ce) = find(&boxes(t, ps + 8, pe), b"ipco")?;
    let ipco = boxes(t, cs + 8, ce);
    let (hs, he) = find(&ipco, b"hvcC")?;
    let hvcc = t[hs..he].to_vec();
    let (is, _) = find(&ipco, b"ispe")?;
    let tile_w = u32::from_be_bytes(t[is + 12..is + 16].try_into()?);
    let tile_h = u32::from_be_bytes(t[is + 16..is + 20].try_into()?);
    let (ds, de) = mdat(t)?;
    let data = &t[ds..de];
    let n = cols;
    let ispe = |w: u32, h: u32| full(b"ispe", 0, &[w.to_be_bytes(), h.to_be_bytes()].concat());
    let hdlr = full(b"hdlr", 0, &[&[0u8; 4][..], b"pict", &[0u8; 13]].concat());
    let pitm = full(b"pitm", 0, &1u16.to_be_bytes());
    let mut iinf = (n + 1).to_be_bytes().to_vec();
    iinf.extend(full(
        b"infe",
        2,
        &[&1u16.to_be_bytes()[..], &[0, 0], b"grid", &[0]].concat(),
    ));
    for k in 0..n {
        iinf.extend(full(
            b"infe",
            2,
            &[&(k + 2).to_be_bytes()[..], &[0, 0], b"hvc1", &[0]].concat(),
        ));
    }
    let iinf = full(b"iinf", 0, &iinf);
    let mut dimg = [1u16.to_be_bytes(), n.to_be_bytes()].concat();
    for k in 0..n {
        let id = if missing && k == n - 1 { 99 } else { k + 2 };
        dimg.extend(id.to_be_bytes());
    }
    let iref = full(b"iref", 0, &bx(b"dimg", &dimg));
    let ipco = bx(
        b"ipco",
        &[
            hvcc,
            ispe(tile_w, tile_h),
            ispe(tile_w * u32::from(n), tile_h),
        ]
        .concat(),
    );
    let mut ipma = u32::from(n + 1).to_be_bytes().to_vec();
    ipma.extend([&1u16.to_be_bytes()[..], &[1, 3]].concat());
    for k in 0..n {
        ipma.extend([&(k + 2).to_be_bytes()[..], &[2, 0x81, 2]].concat());
    }
    let iprp = bx(b"iprp", &[ipco, full(b"ipma", 0, &ipma)].concat());
    // Grid descriptor: version 0, flags 0 (16-bit sizes), rows-1, cols-1, width, height.
    let grid = [
        &[0u8, 0, 0, (n - 1) as u8][..],
        &((tile_w * u32::from(n)) as u16).to_be_bytes(),
        &(tile_h as u16).to_be_bytes(),
    ]
    .concat();
    let idat = bx(b"idat", &grid);
    let iloc = |data_at: u32| {
        let mut p = vec![0x44, 0x00];
        p.extend((n + 1).to_be_bytes());
        p.extend(
            [
                &1u16.to_be_bytes()[..],
                &[0, 1],
                &[0, 0],
                &1u16.to_be_bytes(),
            ]
            .concat(),
        );
        p.extend([0u32.to_be_bytes(), (grid.len() as u32).to_be_bytes()].concat());
        for k in 0..n {
            p.extend(
                [
                    &(k + 2).to_be_bytes()[..],
                    &[0, 0],
                    &[0, 0],
                    &1u16.to_be_bytes(),
                ]
                .concat(),
            );
            let at = data_at + u32::from(k) * data.len() as u32;
            p.extend([at.to_be_bytes(), (data.len() as u32).to_be_bytes()].concat());
        }
        full(b"iloc", 1, &p)
    };
    let ftyp = bx(b"ftyp", b"heic\0\0\0\0mif1heic");
    let meta = |data_at| {
        full(
            b"meta",
            0,
            &[
                hdlr.clone(),
                pitm.clone(),
                iloc(data_at),
                iinf.clone(),
                iref.clone(),
                iprp.clone(),
                idat.clone(),
            ]
            .concat(),
        )
    };
    let data_at = (ftyp.len() + meta(0).len() + 8) as u32;
    let mut mdat = Vec::new();
    for _ in 0..n {
        mdat.extend_from_slice(data);
    }
    Ok([ftyp, meta(data_at), bx(b"mdat", &mdat)].concat())
}

// ----- DNG --------------------------------------------------------------------------------

/// A little-endian DNG: IFD0 a 16x12 RGB preview, its SubIFD a 64x48 16-bit Bayer CFA image.
/// `cut_to`: the sensor strip holds only this many bytes (its byte count says so too).
fn dng(tag: &str, cut_to: Option<usize>) -> Vec<u8> {
    dng_sized(64, 48, tag, cut_to)
}

/// `dng` with a `w` x `h` sensor (benchmarks decode larger ones).
pub fn dng_sized(w: u32, h: u32, tag: &str, cut_to: Option<usize>) -> Vec<u8> {
    #[allow(non_snake_case)]
    let (W, H) = (w, h);
    let preview: Vec<u8> = (0..16 * 12 * 3).map(|i| (i * 7 % 251) as u8).collect();
    let mut sensor: Vec<u8> = (0..W * H)
        .flat_map(|i| ((i * 37 % 4000) as u16 + 200).to_le_bytes())
        .collect();
    if let Some(n) = cut_to {
        sensor.truncate(n);
    }
    let make = b"ImmichFixture\0".to_vec();
    let model = b"Sensor 1\0".to_vec();
    // Layout: header, IFD0, raw IFD, then out-of-line values and data.
    let ifd0_n = 14u16;
    let raw_n = 14u16;
    let ifd_len = |n: u16| 2 + 12 * u32::from(n) + 4;
    let ifd0_at = 8u32;
    let raw_at = ifd0_at + ifd_len(ifd0_n);
    let data_at = raw_at + ifd_len(raw_n);
    let mut blobs: Vec<u8> = Vec::new();
    let mut put = |bytes: &[u8]| {
        let at = data_at + blobs.len() as u32;
        blobs.extend_from_slice(bytes);
        if blobs.len() % 2 == 1 {
            blobs.push(0);
        }
        at
    };
    let bps3 = put(&[8u16, 8, 8]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect::<Vec<_>>());
    let make_at = put(&make);
    let model_at = put(&model);
    let preview_at = put(&preview);
    let sensor_at = put(&sensor);
    // (tag, type, count, value or offset); types: 1 BYTE, 2 ASCII, 3 SHORT, 4 LONG.
    let ifd0: [(u16, u16, u32, u32); 14] = [
        (254, 4, 1, 1),
        (256, 3, 1, 16),
        (257, 3, 1, 12),
        (258, 3, 3, bps3),
        (259, 3, 1, 1),
        (262, 3, 1, 2),
        (271, 2, make.len() as u32, make_at),
        (272, 2, model.len() as u32, model_at),
        (273, 4, 1, preview_at),
        (277, 3, 1, 3),
        (278, 3, 1, 12),
        (279, 4, 1, preview.len() as u32),
        (330, 4, 1, raw_at),
        (50706, 1, 4, u32::from_le_bytes([1, 4, 0, 0])),
    ];
    let raw: [(u16, u16, u32, u32); 14] = [
        (254, 4, 1, 0),
        (256, 4, 1, W),
        (257, 4, 1, H),
        (258, 3, 1, 16),
        (259, 3, 1, 1),
        (262, 3, 1, 32803),
        (273, 4, 1, sensor_at),
        (277, 3, 1, 1),
        (278, 4, 1, H),
        (279, 4, 1, sensor.len() as u32),
        (33421, 3, 2, 2 | (2 << 16)),
        (33422, 1, 4, u32::from_le_bytes([0, 1, 1, 2])),
        (50714, 4, 1, 0),
        (50717, 4, 1, 4095 + 200),
    ];
    let mut out = b"II*\0".to_vec();
    out.extend(ifd0_at.to_le_bytes());
    for (entries, next) in [(&ifd0[..], 0u32), (&raw[..], 0u32)] {
        out.extend((entries.len() as u16).to_le_bytes());
        for &(t, ty, n, v) in entries {
            out.extend(t.to_le_bytes());
            out.extend(ty.to_le_bytes());
            out.extend(n.to_le_bytes());
            if ty == 3 && n == 1 {
                out.extend((v as u16).to_le_bytes());
                out.extend([0, 0]);
            } else {
                out.extend(v.to_le_bytes());
            }
        }
        out.extend(next.to_le_bytes());
    }
    out.extend(blobs);
    // Unique bytes after the last strip (a TIFF reader never looks there).
    out.extend(tag.as_bytes());
    out
}

// ----- the cases --------------------------------------------------------------------------

/// `bytes` made unique: a top-level `free` box carrying `tag` (BMFF files).
fn tagged(bytes: &[u8], tag: &str) -> Vec<u8> {
    [bytes, &bx(b"free", tag.as_bytes())].concat()
}

/// The bytes of a case, and whether Immich ingested them as they are (size and checksum of
/// the broken file) rather than a healthy version (`Some(healthy)`).
fn bytes_of(case: Case, tag: &str) -> Result<(Vec<u8>, Option<Vec<u8>>)> {
    let t = templates()?;
    let heic = tagged(&t.heic, tag);
    let overwrite = |b: &[u8]| -> Result<Vec<u8>> {
        let (s, e) = mdat(b)?;
        let mut m = b.to_vec();
        // After the first NAL's length (HEVC) or at the first OBU (AV1): a run no decoder takes.
        let from = s + 4;
        let to = (from + 60).min(e);
        m[from..to].fill(0xFF);
        Ok(m)
    };
    Ok(match case {
        Case::Heic => (heic, None),
        Case::Heic10Hdr => (tagged(&t.heic10, tag), None),
        Case::HeicGrid => (tagged(&heic_grid(&t.heic, 2, false)?, tag), None),
        Case::HeicMotion => (motion(&heic, tag, false)?, None),
        Case::Avif10Hdr => (tagged(&t.avif10, tag), None),
        Case::AvifGrid => (tagged(&t.avif_grid, tag), None),
        Case::JxlBare => (t.jxl_bare[0].clone(), None),
        Case::JxlContainer => (tagged(&t.jxl_container, tag), None),
        Case::Dng => (dng(tag, None), None),
        Case::HeicTruncated => {
            let (s, e) = mdat(&heic)?;
            (heic[..(s + e) / 2].to_vec(), Some(heic.clone()))
        }
        Case::AvifZeroMdatCut => {
            // mdat last, its size 0: the cut is visible only in the item extents.
            let mut b = t.avif.clone();
            let (s, e) = mdat(&b)?;
            if e != b.len() {
                bail!("internal: the AVIF template's mdat is not last");
            }
            b[s - 8..s - 4].fill(0);
            let cut = b[..(s + e) / 2].to_vec();
            let mut whole = b.clone();
            whole.extend(tag.as_bytes()); // mdat runs to the end: trailing bytes are its own
            (cut, Some(whole))
        }
        Case::HeicMdatSizeLies => {
            let mut b = heic.clone();
            let (s, e) = find(&boxes(&b, 0, b.len()), b"mdat")?;
            let lie = (e - s + 4096) as u32;
            b[s..s + 4].copy_from_slice(&lie.to_be_bytes());
            (b, Some(heic))
        }
        Case::JxlContainerTruncated => {
            let b = tagged(&t.jxl_container, tag);
            let (s, e) = find(&boxes(&b, 0, b.len()), b"jxlc")?;
            (b[..(s + e) / 2].to_vec(), Some(b))
        }
        Case::HeicCoded => (overwrite(&heic)?, None),
        Case::AvifCoded => (overwrite(&tagged(&t.avif, tag))?, None),
        Case::HeicGridTileMissing => (tagged(&heic_grid(&t.heic, 2, true)?, tag), None),
        Case::JxlBareTruncated => {
            let b = &t.jxl_bare[1];
            (b[..b.len() * 2 / 3].to_vec(), None)
        }
        Case::DngSensorCut => (dng(tag, Some(64 * 2 * 20)), None),
        Case::HeicMotionVideoBroken => (motion(&heic, tag, true)?, None),
    })
}

/// The file of `case`, made unique by `tag` (for tests of the decoders: the same bytes the
/// fixtures hold).
pub fn file(case: Case, tag: &str) -> Result<Vec<u8>> {
    Ok(bytes_of(case, tag)?.0)
}

/// A motion photo: the HEIC, then its video in an `mpvd` box. `broken`: the video has no `moov`.
fn motion(heic: &[u8], tag: &str, broken: bool) -> Result<Vec<u8>> {
    let mp4 = crate::media::mp4(tag)?;
    let mp4 = if broken {
        let list = boxes(&mp4, 0, mp4.len());
        let (s, e) = find(&list, b"moov")?;
        [&mp4[..s], &mp4[e..]].concat()
    } else {
        mp4
    };
    Ok([heic, &bx(b"mpvd", &mp4)].concat())
}

/// Write the files of the dedicated assets (`plan.content[Damage::ALL.len() + i]` gets
/// `Case::ALL[i]`) in place of their JPEG originals, and return the truth.
pub(crate) fn apply(plan: &mut Plan, first: usize) -> Result<Vec<TruthFault>> {
    let mut out = Vec::new();
    let ids: Vec<usize> = plan.content.iter().skip(first).copied().collect();
    for (i, case) in ids.into_iter().zip(Case::ALL) {
        let old = plan.host(&plan.assets[i].original);
        let tag = format!("immich-fixture original {}", plan.assets[i].id);
        let (bytes, recorded) = bytes_of(case, &tag)?;
        let a = &mut plan.assets[i];
        let stem = a
            .original
            .rel
            .rsplit_once('.')
            .map(|(s, _)| s.to_string())
            .ok_or_else(|| anyhow!("internal: original without extension"))?;
        a.original.rel = format!("{stem}.{}", case.ext());
        if let Some((s, _)) = a.file_name.rsplit_once('.') {
            a.file_name = format!("{s}.{}", case.ext().to_uppercase());
        }
        let recorded = recorded.as_deref().unwrap_or(&bytes);
        a.size = recorded.len() as u64;
        a.checksum = sha1(recorded);
        let new = plan.host(&plan.assets[i].original);
        std::fs::remove_file(&old).with_context(|| format!("remove {}", old.display()))?;
        crate::media::write_file(&new, &bytes)?;
        if let Some((level, fault)) = case.truth() {
            let a = &plan.assets[i];
            let t = truth_for(plan, a, "original", fault, plan.original_db(a));
            out.push(TruthFault {
                level: level.into(),
                ..t
            });
        }
    }
    Ok(out)
}
