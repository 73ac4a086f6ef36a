//! HEIF/AVIF item extents and JPEG XL, on small hand-built files.

use super::*;

fn bx(typ: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut v = ((payload.len() + 8) as u32).to_be_bytes().to_vec();
    v.extend_from_slice(typ);
    v.extend_from_slice(payload);
    v
}

fn full(typ: &[u8], version: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![version, 0, 0, 0];
    p.extend_from_slice(payload);
    bx(typ, &p)
}

/// An `iloc` (version 1, 4-byte offsets and lengths) with one extent per item.
fn iloc(items: &[(u16, u8, u32, u32)]) -> Vec<u8> {
    let mut p = vec![0x44, 0x00];
    p.extend((items.len() as u16).to_be_bytes());
    for &(id, method, off, len) in items {
        p.extend(id.to_be_bytes());
        p.extend(u16::from(method).to_be_bytes());
        p.extend(0u16.to_be_bytes()); // data reference: this file
        p.extend(1u16.to_be_bytes());
        p.extend(off.to_be_bytes());
        p.extend(len.to_be_bytes());
    }
    full(b"iloc", 1, &p)
}

/// ftyp + meta(iloc, idat) + mdat of `data` bytes; `zero_size_mdat` writes mdat's size as 0.
/// Item 1 points into mdat, item 2 into idat.
fn heif(brand: &[u8; 4], data: usize, zero_size_mdat: bool, idat_item_len: u32) -> Vec<u8> {
    let mut ftyp = brand.to_vec();
    ftyp.extend([0, 0, 0, 0]);
    ftyp.extend(b"mif1");
    ftyp.extend(brand);
    let ftyp = bx(b"ftyp", &ftyp);
    let idat = bx(b"idat", &[7u8; 8]);
    // The mdat's offset depends on the meta's length, which does not depend on the offsets.
    let meta_len = full(
        b"meta",
        0,
        &[iloc(&[(1, 0, 0, 0), (2, 1, 0, 0)]), idat.clone()].concat(),
    )
    .len();
    let data_at = (ftyp.len() + meta_len + 8) as u32;
    let meta = full(
        b"meta",
        0,
        &[
            iloc(&[(1, 0, data_at, data as u32), (2, 1, 0, idat_item_len)]),
            idat,
        ]
        .concat(),
    );
    let mut mdat = bx(b"mdat", &vec![0x5Au8; data]);
    if zero_size_mdat {
        mdat[..4].copy_from_slice(&[0; 4]);
    }
    [ftyp, meta, mdat].concat()
}

fn run(b: &[u8]) -> QuickReport {
    check(b, b.len() as u64, None).unwrap()
}

#[test]
fn healthy_items_pass() {
    for brand in [b"heic", b"avif"] {
        for zero in [false, true] {
            let r = run(&heif(brand, 500, zero, 8));
            assert_eq!(r.verdict, Verdict::Ok, "{r:?}");
        }
    }
    assert_eq!(run(&heif(b"avif", 10, false, 0)).format, Format::Avif);
}

#[test]
fn a_cut_inside_an_mdat_of_size_zero_is_found_by_the_extents() {
    let f = heif(b"avif", 5000, true, 8);
    let cut = &f[..f.len() - 1000];
    let r = run(cut);
    match r.verdict {
        Verdict::Truncated(d) => {
            assert!(d.starts_with("avif: item 1 has data at"), "{d}");
            assert!(
                d.contains(&format!("the file ends at {}", cut.len())),
                "{d}"
            );
        }
        v => panic!("{v:?}"),
    }
    // With a sized mdat, the box walk already sees it.
    let f = heif(b"heic", 5000, false, 8);
    assert!(
        matches!(run(&f[..f.len() - 1000]).verdict, Verdict::Truncated(d) if d.contains("box mdat"))
    );
}

#[test]
fn an_idat_extent_past_idat_is_corrupt() {
    match run(&heif(b"heic", 100, false, 9)).verdict {
        Verdict::Corrupt(d) => assert!(
            d.contains("item 2") && d.contains("idat, which holds 8"),
            "{d}"
        ),
        v => panic!("{v:?}"),
    }
}

#[test]
fn iloc_parsing_never_panics_nor_overallocates() {
    let good = iloc(&[(1, 0, 100, 50), (2, 1, 0, 4)]);
    let payload = &good[8..];
    assert_eq!(extents(payload).unwrap().len(), 2);
    for n in 0..payload.len() {
        let _ = extents(&payload[..n]);
    }
    // Zero-width fields and a huge declared count: bounded by the payload's length.
    let hostile = [
        2u8, 0, 0, 0, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 1, 0, 0, 0, 0, 0xFF, 0xFF,
    ];
    assert!(extents(&hostile).is_err());
}

#[test]
fn jpeg_xl_bare_and_container() {
    let bare = [&[0xFF, 0x0A][..], &[0x33; 200]].concat();
    let r = run(&bare);
    assert_eq!(
        (r.format, r.verdict.clone()),
        (Format::Jxl, Verdict::Ok),
        "{r:?}"
    );
    assert!(r.note.unwrap().contains("bare JPEG XL codestream"));

    let sig = bx(b"JXL ", b"\x0d\x0a\x87\x0a");
    let ftyp = bx(b"ftyp", b"jxl \0\0\0\0jxl ");
    let jxlc = bx(b"jxlc", &bare);
    let ok = [sig.clone(), ftyp.clone(), jxlc].concat();
    let r = check(&ok[..], ok.len() as u64, Some("jxl")).unwrap();
    assert_eq!(
        (r.format, r.verdict, r.note),
        (Format::Jxl, Verdict::Ok, None)
    );

    let part = |idx: u32, body: &[u8]| bx(b"jxlp", &[&idx.to_be_bytes()[..], body].concat());
    let parts = [
        sig.clone(),
        ftyp.clone(),
        part(0, &bare[..100]),
        part(0x8000_0001, &bare[100..]),
    ]
    .concat();
    assert_eq!(run(&parts).verdict, Verdict::Ok);
    let first_only = [sig.clone(), ftyp.clone(), part(0, &bare[..100])].concat();
    assert!(
        matches!(run(&first_only).verdict, Verdict::Truncated(d) if d.contains("not marked last"))
    );
    assert!(matches!(
        run(&ok[..ok.len() - 50]).verdict,
        Verdict::Truncated(_)
    ));
    let no_code = [sig, ftyp].concat();
    assert!(
        matches!(run(&no_code).verdict, Verdict::Truncated(d) if d.contains("without a codestream"))
    );
}
