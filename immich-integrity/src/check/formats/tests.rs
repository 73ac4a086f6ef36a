use super::*;

// ----- builders -------------------------------------------------------------------------

/// Deterministic pseudo-random generator (xorshift64*).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}

fn seg(marker: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![0xFF, marker];
    v.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn xmp_app1(xmp: &str) -> Vec<u8> {
    let mut b = b"http://ns.adobe.com/xap/1.0/\0".to_vec();
    b.extend_from_slice(xmp.as_bytes());
    seg(0xE1, &b)
}

/// A syntactically plausible baseline JPEG: SOI, APP0, extra segments, DQT, SOF0, DHT, SOS,
/// `scan` bytes of entropy data (no 0xFF), EOI.
fn jpeg_with(extra: &[Vec<u8>], scan: usize) -> Vec<u8> {
    let mut v = vec![0xFF, 0xD8];
    v.extend(seg(0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0"));
    for e in extra {
        v.extend_from_slice(e);
    }
    let mut dqt = vec![0u8];
    dqt.extend(std::iter::repeat_n(1u8, 64));
    v.extend(seg(0xDB, &dqt));
    v.extend(seg(
        0xC0,
        &[8, 0, 48, 0, 64, 3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1],
    ));
    let mut dht = vec![0u8, 0, 1];
    dht.extend([0u8; 14]);
    dht.push(0);
    v.extend(seg(0xC4, &dht));
    v.extend(seg(0xDA, &[3, 1, 0, 2, 0x11, 3, 0x11, 0, 63, 0]));
    let mut r = Rng(0x1234_5678);
    for _ in 0..scan {
        v.push((r.below(255)) as u8); // never 0xFF
    }
    v.extend([0xFF, 0xD9]);
    v
}

fn jpeg(scan: usize) -> Vec<u8> {
    jpeg_with(&[], scan)
}

fn bx(typ: &[u8; 4], payload_len: usize) -> Vec<u8> {
    let mut v = ((payload_len + 8) as u32).to_be_bytes().to_vec();
    v.extend_from_slice(typ);
    v.extend(std::iter::repeat_n(0x5Au8, payload_len));
    v
}

/// A minimal valid HEIF `meta` box (version 0: `hdlr`, an `iloc` without items, and a `free`
/// box of `pad` bytes).
fn heif_meta(pad: usize) -> Vec<u8> {
    let hdlr = [&[0u8; 8][..], b"pict", &[0u8; 13]].concat();
    let iloc = [0u8, 0, 0, 0, 0x44, 0, 0, 0];
    let mut body = vec![0u8; 4];
    for (t, p) in [(b"hdlr", &hdlr[..]), (b"iloc", &iloc[..])] {
        body.extend(((p.len() + 8) as u32).to_be_bytes());
        body.extend(t);
        body.extend(p);
    }
    body.extend(bx(b"free", pad));
    let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
    v.extend(b"meta");
    v.extend(body);
    v
}

fn ftyp(major: &[u8; 4], compat: &[&[u8; 4]]) -> Vec<u8> {
    let mut p = major.to_vec();
    p.extend([0, 0, 2, 0]);
    for c in compat {
        p.extend_from_slice(*c);
    }
    let mut v = ((p.len() + 8) as u32).to_be_bytes().to_vec();
    v.extend_from_slice(b"ftyp");
    v.extend(p);
    v
}

/// ftyp + mdat + moov (moov at the end, as without +faststart).
fn mp4(mdat: usize) -> Vec<u8> {
    let mut v = ftyp(b"isom", &[b"isom", b"mp41"]);
    v.extend(bx(b"free", 0));
    v.extend(bx(b"mdat", mdat));
    v.extend(bx(b"moov", 200));
    v
}

fn png_chunk(typ: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut v = (data.len() as u32).to_be_bytes().to_vec();
    v.extend_from_slice(typ);
    v.extend_from_slice(data);
    v.extend([0x11, 0x22, 0x33, 0x44]); // CRC not checked at this level
    v
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let mut v = PNG_SIG.to_vec();
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    v.extend(png_chunk(b"IHDR", &ihdr));
    v.extend(png_chunk(b"IDAT", &[0x78; 300]));
    v.extend_from_slice(PNG_IEND);
    v
}

fn webp(payload: usize) -> Vec<u8> {
    let mut body = b"WEBP".to_vec();
    body.extend(b"VP8L");
    body.extend((payload as u32).to_le_bytes());
    body.extend(std::iter::repeat_n(0x2Fu8, payload));
    if payload % 2 == 1 {
        body.push(0);
    }
    let mut v = b"RIFF".to_vec();
    v.extend((body.len() as u32).to_le_bytes());
    v.extend(body);
    v
}

fn gif() -> Vec<u8> {
    let mut v = b"GIF89a".to_vec();
    v.extend([1, 0, 1, 0, 0, 0, 0]);
    v.extend([0x2C, 0, 0, 0, 0, 1, 0, 1, 0, 0, 2, 2, 0x44, 0x01, 0]);
    v.push(0x3B);
    v
}

fn ebml_size(n: u64) -> Vec<u8> {
    // 8-byte size vint
    let mut v = n.to_be_bytes().to_vec();
    v[0] = 0x01;
    v
}

fn mkv(segment_payload: usize, declared: Option<u64>) -> Vec<u8> {
    let mut v = vec![0x1A, 0x45, 0xDF, 0xA3];
    let doctype = [0x42, 0x82, 0x84, b'w', b'e', b'b', b'm'];
    v.push(0x80 | doctype.len() as u8);
    v.extend(doctype);
    v.extend([0x18, 0x53, 0x80, 0x67]);
    match declared {
        Some(d) => v.extend(ebml_size(d)),
        None => v.extend([0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]),
    }
    v.extend(std::iter::repeat_n(0x42u8, segment_payload));
    v
}

/// Little-endian TIFF with one IFD holding one strip of `strip` bytes at offset 8.
fn tiff(strip: u32, declared_strip: u32) -> Vec<u8> {
    let mut v = b"II*\0".to_vec();
    let ifd = 8 + strip;
    v.extend(ifd.to_le_bytes());
    v.extend(std::iter::repeat_n(0x80u8, strip as usize));
    let entries: [(u16, u16, u32, u32); 4] = [
        (0x100, 3, 1, 4),
        (0x101, 3, 1, 4),
        (0x111, 4, 1, 8),
        (0x117, 4, 1, declared_strip),
    ];
    v.extend((entries.len() as u16).to_le_bytes());
    for (t, ty, c, val) in entries {
        v.extend(t.to_le_bytes());
        v.extend(ty.to_le_bytes());
        v.extend(c.to_le_bytes());
        v.extend(val.to_le_bytes());
    }
    v.extend(0u32.to_le_bytes());
    v
}

const XMP_DOC: &str = "<?xpacket begin=\"\u{feff}\" id=\"W5M0MpCehiHzreSzNTczkc9d\"?>\n<x:xmpmeta xmlns:x=\"adobe:ns:meta/\">\n<rdf:RDF/>\n</x:xmpmeta>\n<?xpacket end=\"w\"?>\n";

fn run(buf: &[u8], ext: Option<&str>) -> QuickReport {
    let r = check(buf, buf.len() as u64, ext).expect("io");
    assert!(r.bytes_read <= MAX_QUICK_READ, "{r:?}");
    r
}

fn verdict(buf: &[u8]) -> Verdict {
    run(buf, None).verdict
}

fn truncated_with(v: &Verdict, needle: &str) -> bool {
    matches!(v, Verdict::Truncated(m) if m.contains(needle))
}

fn corrupt_with(v: &Verdict, needle: &str) -> bool {
    matches!(v, Verdict::Corrupt(m) if m.contains(needle))
}

// ----- format table ---------------------------------------------------------------------

#[test]
fn extension_mapping_and_names() {
    for (e, f) in [
        ("jpg", Format::Jpeg),
        ("JPEG", Format::Jpeg),
        (".jpe", Format::Jpeg),
        ("png", Format::Png),
        ("webp", Format::WebP),
        ("gif", Format::Gif),
        ("heic", Format::Heif),
        ("heif", Format::Heif),
        ("avif", Format::Avif),
        ("tif", Format::Tiff),
        ("tiff", Format::Tiff),
        ("dng", Format::Raw),
        ("cr2", Format::Raw),
        ("cr3", Format::Raw),
        ("nef", Format::Raw),
        ("arw", Format::Raw),
        ("orf", Format::Raw),
        ("rw2", Format::Raw),
        ("raf", Format::Raw),
        ("mp4", Format::Mp4),
        ("MOV", Format::Mp4),
        ("m4v", Format::Mp4),
        ("3gp", Format::Mp4),
        ("webm", Format::Matroska),
        ("mkv", Format::Matroska),
        ("xmp", Format::Xmp),
    ] {
        assert_eq!(Format::from_extension(e), Some(f), "{e}");
    }
    assert_eq!(Format::from_extension("txt"), None);
    assert_eq!(Format::from_extension(""), None);
    assert_eq!(Format::Jpeg.name(), "jpeg");
    assert_eq!(Format::Matroska.name(), "matroska");
    assert!(Format::Png.decodable_by_image_crate());
    assert!(Format::Tiff.decodable_by_image_crate());
    assert!(!Format::Heif.decodable_by_image_crate());
    assert!(!Format::Mp4.decodable_by_image_crate());
    assert!(!Format::Raw.decodable_by_image_crate());
}

#[test]
fn detect_magic() {
    assert_eq!(detect(&jpeg(10)), Format::Jpeg);
    assert_eq!(detect(&png(1, 1)), Format::Png);
    assert_eq!(detect(&webp(10)), Format::WebP);
    assert_eq!(detect(&gif()), Format::Gif);
    assert_eq!(detect(&mp4(10)), Format::Mp4);
    assert_eq!(detect(&ftyp(b"qt  ", &[])), Format::Mp4);
    assert_eq!(detect(&ftyp(b"3gp4", &[])), Format::Mp4);
    assert_eq!(detect(&ftyp(b"heic", &[b"mif1"])), Format::Heif);
    assert_eq!(detect(&ftyp(b"mif1", &[b"heic"])), Format::Heif);
    assert_eq!(detect(&ftyp(b"avif", &[])), Format::Avif);
    assert_eq!(detect(&ftyp(b"mif1", &[b"avif"])), Format::Avif);
    assert_eq!(detect(&ftyp(b"crx ", &[])), Format::Raw);
    assert_eq!(detect(&bx(b"moov", 4)), Format::Mp4);
    assert_eq!(detect(&mkv(4, Some(4))), Format::Matroska);
    assert_eq!(detect(&tiff(16, 16)), Format::Tiff);
    assert_eq!(detect(b"MM\0*\0\0\0\x08"), Format::Tiff);
    assert_eq!(detect(b"II*\0\x10\0\0\0CR\x02\0"), Format::Raw);
    assert_eq!(detect(b"IIRO\x08\0\0\0"), Format::Raw);
    assert_eq!(detect(b"IIU\0\x08\0\0\0"), Format::Raw);
    assert_eq!(detect(b"FUJIFILMCCD-RAW 0201"), Format::Raw);
    assert_eq!(detect(XMP_DOC.as_bytes()), Format::Xmp);
    assert_eq!(detect(b"\xef\xbb\xbf  <x:xmpmeta>"), Format::Xmp);
    assert_eq!(detect(b"<?xml version=\"1.0\"?><a/>"), Format::Xmp);
    assert_eq!(detect(b"hello world"), Format::Unknown);
    assert_eq!(detect(b""), Format::Unknown);
    assert_eq!(detect(&[0xFF]), Format::Unknown);
}

#[test]
fn dng_tag_makes_tiff_raw() {
    let mut t = tiff(16, 16);
    // Retag the ImageWidth entry as DNGVersion (0xC612).
    let ifd = 8 + 16 + 2;
    t[ifd..ifd + 2].copy_from_slice(&0xC612u16.to_le_bytes());
    assert_eq!(detect(&t), Format::Raw);
}

// ----- JPEG ---------------------------------------------------------------------------

#[test]
fn jpeg_healthy() {
    let r = run(&jpeg(5000), Some("jpg"));
    assert_eq!(r.format, Format::Jpeg);
    assert_eq!(r.verdict, Verdict::Ok);
    assert_eq!(r.note, None);
}

#[test]
fn jpeg_cut_in_half_is_truncated() {
    let j = jpeg(5000);
    let v = verdict(&j[..j.len() / 2]);
    assert!(truncated_with(&v, "jpeg: no EOI (FFD9) at end"), "{v:?}");
}

#[test]
fn jpeg_cut_inside_headers_is_truncated() {
    let j = jpeg(100);
    for cut in [3, 4, 5, 10, 30, 100] {
        let v = verdict(&j[..cut]);
        assert!(matches!(v, Verdict::Truncated(_)), "cut {cut}: {v:?}");
    }
}

#[test]
fn jpeg_zero_filled_tail() {
    let mut j = jpeg(5000);
    let n = j.len();
    for b in &mut j[n - 3000..] {
        *b = 0;
    }
    let v = verdict(&j);
    assert!(
        truncated_with(&v, "zero-filled tail of 3000 bytes"),
        "{v:?}"
    );
}

#[test]
fn jpeg_eoi_then_zero_padding_is_ok_with_note() {
    let mut j = jpeg(5000);
    j.extend([0u8; 100]);
    let r = run(&j, None);
    assert_eq!(r.verdict, Verdict::Ok);
    assert!(r.note.unwrap().contains("100 bytes of padding after EOI"));
}

#[test]
fn jpeg_eoi_then_long_zero_padding_is_ok() {
    let mut j = jpeg(5000);
    j.extend([0u8; 5000]);
    let r = run(&j, None);
    assert_eq!(r.verdict, Verdict::Ok);
    assert_eq!(
        r.note.as_deref(),
        Some("5000 bytes of zero padding after EOI")
    );
}

#[test]
fn non_tiff_raw_is_ok_with_note() {
    let mut crw = b"II\x1a\0\0\0HEAPCCDR".to_vec();
    crw.resize(500, 1);
    let r = run(&crw, Some("crw"));
    assert_eq!((r.format, r.verdict), (Format::Raw, Verdict::Ok));
    assert_eq!(
        r.note.as_deref(),
        Some("end not verifiable for this RAW format")
    );
}

#[test]
fn jpeg_unexplained_trailing_data_is_corrupt() {
    let mut j = jpeg(5000);
    let eoi = j.len() - 2;
    j.extend(b"some garbage appended");
    let v = verdict(&j);
    assert!(
        corrupt_with(
            &v,
            &format!("21 bytes of unexplained data after EOI at {eoi}")
        ),
        "{v:?}"
    );
    // Much longer trailing data: the EOI is out of sight, so no EOI at end.
    let mut j = jpeg(5000);
    j.extend(std::iter::repeat_n(7u8, 1000));
    assert!(truncated_with(&verdict(&j), "no EOI"));
}

#[test]
fn jpeg_segment_past_eof() {
    let mut j = vec![0xFF, 0xD8];
    j.extend([0xFF, 0xE1, 0xFF, 0x00]);
    j.extend([1u8; 100]);
    assert!(truncated_with(&verdict(&j), "past end of file"));
    j.extend([0xFF, 0xD9]);
    assert!(corrupt_with(&verdict(&j), "past end of file"));
}

#[test]
fn jpeg_garbled_headers_are_corrupt() {
    // No SOF before SOS.
    let mut j = vec![0xFF, 0xD8];
    j.extend(seg(0xDA, &[1, 1, 0, 0, 63, 0]));
    j.extend([1, 2, 3, 0xFF, 0xD9]);
    assert!(corrupt_with(&verdict(&j), "without a frame header"));
    // Not a marker where one should be.
    let mut j = vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 4, 0, 0, 0x12, 0x34];
    j.extend([0u8; 10]);
    j.extend([0xFF, 0xD9]);
    assert!(corrupt_with(&verdict(&j), "expected a marker"));
    // Segment length < 2.
    let j = [0xFF, 0xD8, 0xFF, 0xE0, 0, 1, 0xFF, 0xD9];
    assert!(corrupt_with(&verdict(&j), "invalid length"));
    // SOF with width 0.
    let mut j = jpeg(100);
    let p = find(&j, &[0xFF, 0xC0]).unwrap();
    j[p + 7] = 0;
    j[p + 8] = 0;
    assert!(corrupt_with(&verdict(&j), "frame header"));
}

fn micro_video_xmp(n: usize) -> String {
    format!(
        "<x:xmpmeta xmlns:x=\"adobe:ns:meta/\"><rdf:RDF><rdf:Description \
     GCamera:MicroVideo=\"1\" GCamera:MicroVideoVersion=\"1\" \
     GCamera:MicroVideoOffset=\"{n}\" GCamera:MicroVideoPresentationTimestampUs=\"0\"/>\
     </rdf:RDF></x:xmpmeta>"
    )
}

fn motion_photo_micro(video: &[u8]) -> Vec<u8> {
    let mut j = jpeg_with(&[xmp_app1(&micro_video_xmp(video.len()))], 4000);
    j.extend_from_slice(video);
    j
}

#[test]
fn motion_photo_micro_video_offset_ok() {
    let video = mp4(20_000);
    let r = run(&motion_photo_micro(&video), Some("jpg"));
    assert_eq!(r.verdict, Verdict::Ok, "{r:?}");
    assert_eq!(
        r.note.as_deref(),
        Some(format!("motion photo: {} bytes of video after EOI", video.len()).as_str())
    );
}

#[test]
fn motion_photo_truncated() {
    let mp = motion_photo_micro(&mp4(20_000));
    for cut in [mp.len() - 1, mp.len() - 100, mp.len() - 15_000] {
        let v = verdict(&mp[..cut]);
        assert!(matches!(v, Verdict::Truncated(_)), "cut {cut}: {v:?}");
    }
    // Cut so short that the declared video no longer fits at all.
    let v = verdict(&mp[..10_000]);
    assert!(matches!(v, Verdict::Truncated(_)), "{v:?}");
}

#[test]
fn motion_photo_with_damaged_video() {
    // Right length, but the video is not an MP4.
    let video = vec![0x33u8; 5000];
    assert!(corrupt_with(&verdict(&motion_photo_micro(&video)), "ftyp"));
    // An MP4 without moov.
    let mut video = ftyp(b"mp42", &[]);
    video.extend(bx(b"mdat", 3000));
    assert!(corrupt_with(
        &verdict(&motion_photo_micro(&video)),
        "no moov"
    ));
}

fn container_xmp(items: &[(&str, &str, usize, usize)]) -> String {
    let mut s = String::from(
        "<x:xmpmeta xmlns:x=\"adobe:ns:meta/\"><rdf:RDF><rdf:Description Camera:MotionPhoto=\"1\">\
     <Container:Directory><rdf:Seq>",
    );
    for (mime, sem, len, pad) in items {
        s.push_str(&format!(
            "<rdf:li rdf:parseType=\"Resource\"><Container:Item Item:Mime=\"{mime}\" \
         Item:Semantic=\"{sem}\" Item:Length=\"{len}\" Item:Padding=\"{pad}\"/></rdf:li>"
        ));
    }
    s.push_str("</rdf:Seq></Container:Directory></rdf:Description></rdf:RDF></x:xmpmeta>");
    s
}

#[test]
fn motion_photo_container_items_ok() {
    let video = mp4(9000);
    let gain = jpeg(300);
    let xmp = container_xmp(&[
        ("image/jpeg", "Primary", 0, 0),
        ("image/jpeg", "GainMap", gain.len(), 0),
        ("video/mp4", "MotionPhoto", video.len(), 0),
    ]);
    let mut j = jpeg_with(&[xmp_app1(&xmp)], 3000);
    j.extend(&gain);
    j.extend(&video);
    let r = run(&j, None);
    assert_eq!(r.verdict, Verdict::Ok, "{r:?}");
    assert!(r.note.unwrap().contains("motion photo"));
    // A cut file fails.
    assert!(matches!(verdict(&j[..j.len() - 10]), Verdict::Truncated(_)));
}

#[test]
fn motion_photo_element_form_and_xmp_past_head() {
    // Element-form XMP placed after a 60 KiB APP2 segment so it straddles the head window.
    let xmp = "<x:xmpmeta><rdf:RDF><rdf:Description><GCamera:MicroVideoOffset>VIDLEN</GCamera:MicroVideoOffset></rdf:Description></rdf:RDF></x:xmpmeta>";
    let video = mp4(1000);
    let xmp = xmp.replace("VIDLEN", &video.len().to_string());
    let big = seg(0xE2, &vec![0x11u8; 62_000]);
    let big2 = seg(0xE2, &vec![0x11u8; 10_000]);
    let mut j = jpeg_with(&[big, big2, xmp_app1(&xmp)], 5000);
    j.extend(&video);
    let r = run(&j, None);
    assert_eq!(r.verdict, Verdict::Ok, "{r:?}");
    assert!(r.note.unwrap().contains("motion photo"));
}

#[test]
fn samsung_sef_trailer_ok() {
    let mut j = jpeg(3000);
    let data_start = j.len() as u32;
    let block = b"\0\0\x30\x0a\x10\0\0\0MotionPhoto_Data0123456789";
    j.extend(block);
    let dir = j.len() as u32;
    let mut sefh = b"SEFH".to_vec();
    sefh.extend(106u32.to_le_bytes());
    sefh.extend(1u32.to_le_bytes());
    sefh.extend([0, 0, 0x30, 0x0a]);
    sefh.extend((dir - data_start).to_le_bytes());
    sefh.extend((block.len() as u32).to_le_bytes());
    let dir_len = sefh.len() as u32;
    j.extend(sefh);
    j.extend(dir_len.to_le_bytes());
    j.extend(b"SEFT");
    let r = run(&j, None);
    assert_eq!(r.verdict, Verdict::Ok, "{r:?}");
    assert!(r.note.unwrap().contains("Samsung trailer"));
}

// ----- PNG / GIF / WebP -----------------------------------------------------------------

#[test]
fn png_rules() {
    let p = png(64, 48);
    assert_eq!(png_dimensions(&p), Some((64, 48)));
    assert_eq!(png_dimensions(b"nope"), None);
    assert_eq!(verdict(&p), Verdict::Ok);
    assert_eq!(
        verdict(&p[..p.len() - 12]),
        Verdict::Truncated("png: IEND chunk missing".into())
    );
    assert!(matches!(verdict(&p[..p.len() - 1]), Verdict::Truncated(_)));
    assert!(corrupt_with(&verdict(&png(0, 5)), "IHDR declares 0x5"));
    assert!(corrupt_with(&verdict(&png(5, 0)), "IHDR declares 5x0"));
    let mut q = p.clone();
    q.extend(b"junk");
    assert!(corrupt_with(&verdict(&q), "4 bytes of data after the IEND"));
    let mut q = p.clone();
    q.extend([0u8; 40]);
    let r = run(&q, None);
    assert_eq!(r.verdict, Verdict::Ok);
    assert_eq!(
        r.note.as_deref(),
        Some("40 bytes of zero padding after IEND")
    );
    let mut q = p.clone();
    q[12] = b'X';
    assert!(corrupt_with(&verdict(&q), "not a 13-byte IHDR"));
    assert!(truncated_with(&verdict(&p[..20]), "too short"));
    // Preallocated and half written.
    let mut q = p.clone();
    let n = q.len();
    for b in &mut q[n - 200..] {
        *b = 0;
    }
    assert!(truncated_with(
        &verdict(&q),
        "png: zero-filled tail of 200 bytes"
    ));
}

#[test]
fn gif_rules() {
    let g = gif();
    assert_eq!(verdict(&g), Verdict::Ok);
    assert!(truncated_with(&verdict(&g[..g.len() - 1]), "gif: trailer"));
}

#[test]
fn webp_rules() {
    assert_eq!(verdict(&webp(1000)), Verdict::Ok);
    assert_eq!(verdict(&webp(999)), Verdict::Ok);
    let w = webp(1000);
    let cut = &w[..w.len() - 100];
    assert_eq!(
        verdict(cut),
        Verdict::Truncated(format!(
            "webp: RIFF length {} != file length {}",
            w.len(),
            cut.len()
        ))
    );
    let mut long = w.clone();
    long.extend([1u8; 10]);
    assert!(corrupt_with(&verdict(&long), "RIFF length"));
    let mut bad = w.clone();
    bad[12..16].copy_from_slice(b"JUNK");
    assert!(corrupt_with(&verdict(&bad), "first chunk"));
    // Chunk length inconsistent with the RIFF length.
    let mut bad = w.clone();
    bad[16..20].copy_from_slice(&5000u32.to_le_bytes());
    assert!(corrupt_with(&verdict(&bad), "past the RIFF end"));
}

// ----- ISO BMFF -------------------------------------------------------------------------

#[test]
fn mp4_healthy_and_faststart() {
    assert_eq!(verdict(&mp4(5000)), Verdict::Ok);
    let mut f = ftyp(b"isom", &[]);
    f.extend(bx(b"moov", 100));
    f.extend(bx(b"mdat", 5000));
    assert_eq!(verdict(&f), Verdict::Ok);
    // Truncated mid-mdat with moov first: the mdat box runs past EOF.
    let cut = &f[..f.len() - 1000];
    let v = verdict(cut);
    let mdat_at = f.len() - 5008;
    assert_eq!(
        v,
        Verdict::Truncated(format!(
            "mp4: box mdat at {mdat_at} declares 5008 bytes past end of file {}",
            cut.len()
        ))
    );
}

#[test]
fn mp4_truncated_mid_mdat_without_moov() {
    let m = mp4(5000);
    let v = verdict(&m[..3000]);
    assert!(truncated_with(&v, "box mdat"), "{v:?}");
    assert!(truncated_with(&v, "no moov box"), "{v:?}");
}

#[test]
fn mp4_without_moov_is_corrupt() {
    let mut m = ftyp(b"mp42", &[]);
    m.extend(bx(b"mdat", 5000));
    assert_eq!(
        verdict(&m),
        Verdict::Corrupt("mp4: no moov box (file cut before the index was written?)".into())
    );
}

#[test]
fn mp4_size_zero_and_largesize() {
    // Last box with size 0 extends to the end of file.
    let mut m = ftyp(b"isom", &[]);
    m.extend(bx(b"moov", 50));
    m.extend([0, 0, 0, 0]);
    m.extend(b"mdat");
    m.extend([9u8; 777]);
    assert_eq!(verdict(&m), Verdict::Ok);
    // 64-bit largesize.
    let mut m = ftyp(b"isom", &[]);
    m.extend(bx(b"moov", 50));
    m.extend(1u32.to_be_bytes());
    m.extend(b"mdat");
    m.extend((16u64 + 500).to_be_bytes());
    m.extend([9u8; 500]);
    assert_eq!(verdict(&m), Verdict::Ok);
    // Largesize past EOF, and overflowing.
    let mut bad = m.clone();
    let p = find(&bad, b"mdat").unwrap() + 4;
    bad[p..p + 8].copy_from_slice(&1_000_000u64.to_be_bytes());
    assert!(truncated_with(
        &verdict(&bad),
        "declares 1000000 bytes past end of file"
    ));
    bad[p..p + 8].copy_from_slice(&u64::MAX.to_be_bytes());
    assert!(truncated_with(&verdict(&bad), "past end of file"));
    bad[p..p + 8].copy_from_slice(&3u64.to_be_bytes());
    assert!(corrupt_with(&verdict(&bad), "invalid 64-bit size"));
    // Small 32-bit sizes.
    let mut bad = m.clone();
    let p = find(&bad, b"moov").unwrap() - 4;
    bad[p..p + 4].copy_from_slice(&4u32.to_be_bytes());
    assert!(corrupt_with(&verdict(&bad), "invalid size 4"));
}

#[test]
fn mp4_garbage_and_zero_tail() {
    let mut m = mp4(1000);
    m.extend([0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09]);
    assert!(corrupt_with(&verdict(&m), "invalid box header"));
    let mut m = mp4(1000);
    m.extend([b'a'; 5]);
    assert!(corrupt_with(&verdict(&m), "stray bytes"));
    // Preallocated file: moov never written, the space for it is zero.
    let mut m = ftyp(b"isom", &[]);
    m.extend(bx(b"mdat", 5000));
    m.extend([0u8; 4000]);
    let v = verdict(&m);
    assert!(
        truncated_with(&v, "zero-filled tail of 4000 bytes"),
        "{v:?}"
    );
    // Faststart file whose whole tail window is zero: structure fits, content missing.
    let mut f = ftyp(b"isom", &[]);
    f.extend(bx(b"moov", 100));
    f.extend(bx(b"mdat", 200_000));
    let n = f.len();
    for b in &mut f[n - 100_000..] {
        *b = 0;
    }
    let v = verdict(&f);
    assert!(
        truncated_with(&v, "mp4: zero-filled tail of at least 65536 bytes"),
        "{v:?}"
    );
}

#[test]
fn heif_avif_cr3_rules() {
    let mut h = ftyp(b"heic", &[b"mif1", b"heic"]);
    h.extend(heif_meta(300));
    h.extend(bx(b"mdat", 3000));
    let r = run(&h, Some("heic"));
    assert_eq!((r.format, r.verdict), (Format::Heif, Verdict::Ok));
    let mut no_meta = ftyp(b"heic", &[]);
    no_meta.extend(bx(b"mdat", 3000));
    assert_eq!(
        verdict(&no_meta),
        Verdict::Corrupt("heif: no meta box".into())
    );
    let v = verdict(&h[..h.len() - 5]);
    assert!(truncated_with(&v, "heif: box mdat"), "{v:?}");
    let mut a = ftyp(b"avif", &[b"mif1"]);
    a.extend(heif_meta(100));
    a.extend(bx(b"mdat", 100));
    assert_eq!(run(&a, None).format, Format::Avif);
    assert_eq!(verdict(&a), Verdict::Ok);
    let mut c = ftyp(b"crx ", &[b"crx "]);
    c.extend(bx(b"moov", 100));
    c.extend(bx(b"mdat", 100));
    let r = run(&c, Some("cr3"));
    assert_eq!(
        (r.format, r.verdict, r.note),
        (Format::Raw, Verdict::Ok, None)
    );
}

#[test]
fn quicktime_without_ftyp() {
    let mut m = bx(b"wide", 0);
    m.extend(bx(b"mdat", 100));
    m.extend(bx(b"moov", 100));
    let r = run(&m, Some("mov"));
    assert_eq!((r.format, r.verdict), (Format::Mp4, Verdict::Ok));
}

#[test]
fn mp4_box_walk_is_capped() {
    let mut m = ftyp(b"isom", &[]);
    m.extend(bx(b"moov", 8));
    for _ in 0..(MAX_BOXES + 500) {
        m.extend(bx(b"free", 0));
    }
    let r = run(&m, None);
    assert_eq!(r.verdict, Verdict::Ok);
    assert!(r.note.unwrap().contains("box walk stopped"));
    assert!(r.bytes_read <= MAX_QUICK_READ);
}

// ----- Matroska -----------------------------------------------------------------------

#[test]
fn matroska_rules() {
    assert_eq!(verdict(&mkv(1000, Some(1000))), Verdict::Ok);
    let v = verdict(&mkv(900, Some(1000)));
    assert!(truncated_with(&v, "matroska: Segment"), "{v:?}");
    let r = run(&mkv(900, None), Some("webm"));
    assert_eq!(r.verdict, Verdict::Ok);
    assert!(r.note.unwrap().contains("unknown size"));
    assert!(corrupt_with(
        &verdict(&mkv(1000, Some(900))),
        "after the Segment"
    ));
    let mut m = mkv(1000, Some(1000));
    m.extend([0xEC, 0x82, 0, 0]); // a trailing Void element
    assert_eq!(verdict(&m), Verdict::Ok);
    // Broken EBML header.
    let mut m = mkv(10, Some(10));
    m[4] = 0x8F;
    assert!(matches!(verdict(&m), Verdict::Corrupt(_)));
    assert!(matches!(
        verdict(&m[..6]),
        Verdict::Truncated(_) | Verdict::Corrupt(_)
    ));
}

#[test]
fn structurally_fine_but_zero_filled_tail() {
    let mut w = webp(40_000);
    let n = w.len();
    for b in &mut w[n - 20_000..] {
        *b = 0;
    }
    assert!(truncated_with(
        &verdict(&w),
        "webp: zero-filled tail of 20000 bytes"
    ));
    let mut m = mkv(40_000, Some(40_000));
    let n = m.len();
    for b in &mut m[n - 20_000..] {
        *b = 0;
    }
    assert!(truncated_with(
        &verdict(&m),
        "matroska: zero-filled tail of 20000 bytes"
    ));
    // Small zero runs in an MP4's mdat are legal (PCM silence).
    let mut f = ftyp(b"isom", &[]);
    f.extend(bx(b"moov", 100));
    f.extend(bx(b"mdat", 30_000));
    let n = f.len();
    for b in &mut f[n - 20_000..] {
        *b = 0;
    }
    assert_eq!(verdict(&f), Verdict::Ok);
    // TIFF: only a note.
    let mut t = tiff(40_000, 40_000);
    t.extend([0u8; 20_000]);
    let r = run(&t, None);
    assert_eq!(r.verdict, Verdict::Ok);
    let note = r.note.unwrap();
    assert!(note.contains("zero-filled tail of 20006 bytes"), "{note}"); // + zero bytes of the IFD
}

// ----- TIFF / RAW -----------------------------------------------------------------------

#[test]
fn tiff_rules() {
    let t = tiff(64, 64);
    let r = run(&t, Some("tif"));
    assert_eq!(r.verdict, Verdict::Ok);
    assert_eq!(
        r.note.as_deref(),
        Some("end not verifiable for TIFF-based formats")
    );
    // Strip runs past the end.
    assert!(truncated_with(
        &verdict(&tiff(64, 200)),
        "runs past end of file"
    ));
    // IFD cut off.
    assert!(truncated_with(
        &verdict(&t[..t.len() - 10]),
        "runs past end of file"
    ));
    assert!(truncated_with(
        &verdict(&t[..40]),
        "first IFD at 72 beyond end of file 40"
    ));
    // Bad offsets.
    let mut b = t.clone();
    b[4..8].copy_from_slice(&2u32.to_le_bytes());
    assert!(corrupt_with(&verdict(&b), "first IFD offset 2"));
    let mut b = t.clone();
    b[72] = 0;
    b[73] = 0;
    assert!(corrupt_with(&verdict(&b), "no entries"));
    // IFD at the end of the file (as libtiff/ffmpeg write it) lost to a zero-filled tail.
    let mut z = t.clone();
    let n = z.len();
    for b in &mut z[n - 60..] {
        *b = 0;
    }
    assert!(truncated_with(
        &verdict(&z),
        "tiff: zero-filled tail of 60 bytes"
    ));
    // Out-of-line strip arrays: the last strip runs past a cut.
    let s = &samples()[10];
    assert_eq!(detect(s), Format::Tiff);
    assert!(truncated_with(
        &verdict(&s[..105]),
        "(100+10) runs past end of file 105"
    ));
    // TIFF magic with a RAW extension is Raw, no mismatch note.
    let r = run(&t, Some("nef"));
    assert_eq!(r.format, Format::Raw);
    assert_eq!(
        r.note.as_deref(),
        Some("end not verifiable for TIFF-based formats")
    );
}

#[test]
fn bigtiff_and_raf() {
    let mut b = b"II+\0\x08\0\0\0".to_vec();
    b.extend(16u64.to_le_bytes());
    b.extend(1u64.to_le_bytes());
    b.extend(0x100u16.to_le_bytes());
    b.extend(3u16.to_le_bytes());
    b.extend(1u64.to_le_bytes());
    b.extend(4u64.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    assert_eq!(verdict(&b), Verdict::Ok);
    assert!(matches!(verdict(&b[..30]), Verdict::Truncated(_)));

    let mut raf = b"FUJIFILMCCD-RAW 0201FF383501".to_vec();
    raf.resize(84, 0);
    for (off, len) in [(200u32, 100u32), (300, 50), (350, 500)] {
        raf.extend(off.to_be_bytes());
        raf.extend(len.to_be_bytes());
    }
    raf.resize(850, 7);
    assert_eq!(verdict(&raf), Verdict::Ok);
    assert!(truncated_with(&verdict(&raf[..800]), "raf: CFA data"));
}

// ----- XMP ------------------------------------------------------------------------------

#[test]
fn xmp_rules() {
    assert_eq!(verdict(XMP_DOC.as_bytes()), Verdict::Ok);
    let d = XMP_DOC.as_bytes();
    // Cut inside the trailing packet end.
    assert!(truncated_with(
        &verdict(&d[..d.len() - 5]),
        "xmp: document not closed"
    ));
    // Cut before the closing element.
    assert!(truncated_with(
        &verdict(&d[..60]),
        "xmp: document not closed"
    ));
    let plain = b"\xef\xbb\xbf<x:xmpmeta xmlns:x=\"adobe:ns:meta/\"><rdf:RDF/></x:xmpmeta>\n\n";
    assert_eq!(verdict(plain), Verdict::Ok);
    let xml = b"<?xml version=\"1.0\"?>\n<!-- c -->\n<rdf:RDF xmlns:rdf=\"r\"><a/></rdf:RDF>";
    assert_eq!(verdict(xml), Verdict::Ok);
    assert!(matches!(
        verdict(&xml[..xml.len() - 3]),
        Verdict::Truncated(_)
    ));
    let mut z = XMP_DOC.as_bytes()[..100].to_vec();
    z.extend([0u8; 100]);
    assert!(truncated_with(
        &verdict(&z),
        "xmp: zero-filled tail of 100 bytes"
    ));
}

// ----- generic ----------------------------------------------------------------------------

#[test]
fn empty_unknown_and_zero_files() {
    let r = check(&[][..], 0, Some("jpg")).unwrap();
    assert_eq!(r.verdict, Verdict::Truncated("empty".into()));
    assert_eq!(r.bytes_read, 0);
    // A format this tool does not know is not a damaged file.
    let r = run(b"hello world, not media", Some("jpg"));
    assert_eq!(r.verdict, Verdict::Ok);
    assert_eq!(
        r.note.as_deref(),
        Some("unknown format (not judged): first bytes 68 65 6c 6c 6f 20 77 6f 72 6c 64 2c 20 6e 6f 74")
    );
    assert!(truncated_with(&verdict(&[0u8; 5000]), "zero-filled"));
}

#[test]
fn extension_mismatch_goes_to_note() {
    let r = run(&png(2, 2), Some("jpg"));
    assert_eq!(r.verdict, Verdict::Ok);
    assert_eq!(r.note.as_deref(), Some("extension .jpg but content is png"));
    let r = run(&jpeg(100), Some(".PNG"));
    assert_eq!(
        r.note.as_deref(),
        Some("extension .PNG but content is jpeg")
    );
    assert_eq!(run(&mp4(10), Some("mov")).note, None);
    assert_eq!(run(&jpeg(10), Some("unknownext")).note, None);
}

#[test]
fn size_larger_than_content_is_truncated() {
    let j = jpeg(1000);
    let r = check(&j[..], j.len() as u64 + 100_000, None).unwrap();
    assert!(truncated_with(&r.verdict, "file ended at byte"), "{r:?}");
}

#[test]
fn read_errors_propagate() {
    struct Failing;
    impl ReadAt for Failing {
        fn read_at(&self, _: &mut [u8], _: u64) -> io::Result<usize> {
            Err(io::Error::new(io::ErrorKind::PermissionDenied, "nope"))
        }
    }
    let e = check(&Failing, 100, None).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
}

#[test]
fn works_on_files() {
    let dir = std::env::temp_dir().join(format!("formats-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.jpg");
    std::fs::write(&path, motion_photo_micro(&mp4(3000))).unwrap();
    let f = std::fs::File::open(&path).unwrap();
    let size = f.metadata().unwrap().len();
    let r = check(&f, size, Some("jpg")).unwrap();
    assert_eq!(r.verdict, Verdict::Ok);
    assert_eq!(r.bytes_read, size);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A huge virtual file whose bytes are generated: `check` must read a bounded amount and
/// never allocate proportionally to the size.
#[test]
fn huge_virtual_files_read_bounded() {
    struct Virtual {
        head: Vec<u8>,
        fill: u8,
    }
    impl ReadAt for Virtual {
        fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
            for (i, b) in buf.iter_mut().enumerate() {
                let p = offset + i as u64;
                *b = if p < self.head.len() as u64 {
                    self.head[p as usize]
                } else {
                    self.fill
                };
            }
            Ok(buf.len())
        }
    }
    let heads = [
        jpeg(10)[..150].to_vec(),
        png(1, 1)[..33].to_vec(),
        webp(10)[..20].to_vec(),
        {
            let mut m = ftyp(b"isom", &[]);
            m.extend(1u32.to_be_bytes());
            m.extend(b"mdat");
            m.extend((1u64 << 45).to_be_bytes());
            m
        },
        mkv(0, Some(1 << 50)),
        tiff(16, u32::MAX),
        XMP_DOC.as_bytes()[..50].to_vec(),
    ];
    for head in heads {
        for fill in [0u8, 0x20, 0xFF, 0x01] {
            let v = Virtual {
                head: head.clone(),
                fill,
            };
            for size in [1u64 << 20, 1 << 40, u64::MAX] {
                let r = check(&v, size, None).unwrap();
                assert!(r.bytes_read <= MAX_QUICK_READ, "{r:?}");
            }
        }
    }
}

// ----- robustness -------------------------------------------------------------------------

fn samples() -> Vec<Vec<u8>> {
    // TIFF with strip arrays stored out of line and a SubIFD pointing back to IFD0.
    let mut ts = b"II*\0".to_vec();
    ts.extend(8u32.to_le_bytes());
    ts.extend(3u16.to_le_bytes());
    for (t, ty, c, val) in [
        (0x111u16, 4u16, 3u32, 50u32),
        (0x117, 3, 3, 62),
        (0x14A, 4, 1, 8),
    ] {
        ts.extend(t.to_le_bytes());
        ts.extend(ty.to_le_bytes());
        ts.extend(c.to_le_bytes());
        ts.extend(val.to_le_bytes());
    }
    ts.extend(0u32.to_le_bytes());
    for o in [80u32, 90, 100] {
        ts.extend(o.to_le_bytes());
    }
    for n in [10u16, 10, 10] {
        ts.extend(n.to_le_bytes());
    }
    ts.resize(110, 0x33);
    vec![
        jpeg(300),
        motion_photo_micro(&mp4(300)),
        {
            let xmp = container_xmp(&[
                ("image/jpeg", "Primary", 0, 0),
                ("video/mp4", "MotionPhoto", mp4(300).len(), 0),
            ]);
            let mut j = jpeg_with(&[xmp_app1(&xmp)], 100);
            j.extend(mp4(300));
            j
        },
        png(3, 3),
        webp(101),
        gif(),
        mp4(300),
        {
            let mut h = ftyp(b"heic", &[b"mif1"]);
            h.extend(heif_meta(30));
            h
        },
        mkv(100, Some(100)),
        tiff(40, 40),
        ts,
        XMP_DOC.as_bytes().to_vec(),
    ]
}

fn assert_sane(buf: &[u8], size: u64) {
    let r = check(buf, size, Some("jpg")).unwrap();
    assert!(r.bytes_read <= MAX_QUICK_READ);
    assert!(r.bytes_read <= size.max(buf.len() as u64));
    let _ = detect(buf);
    let _ = png_dimensions(buf);
}

#[test]
fn fuzz_random_buffers_never_panic() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for i in 0..3000 {
        let len = rng.below(if i % 10 == 0 { 5000 } else { 300 }) as usize;
        let mut buf: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // Give most of them a real magic so the format paths are exercised.
        let magics: [&[u8]; 10] = [
            &[0xFF, 0xD8, 0xFF],
            PNG_SIG,
            b"RIFF\0\0\0\0WEBP",
            b"GIF89a",
            b"\0\0\0\x10ftypisom",
            b"\0\0\0\x10ftypheic",
            &[0x1A, 0x45, 0xDF, 0xA3],
            b"II*\0",
            b"MM\0*",
            b"<?xpacket",
        ];
        let m = magics[rng.below(11) as usize % 10];
        if rng.below(10) < 8 && buf.len() >= m.len() {
            buf[..m.len()].copy_from_slice(m);
        }
        let size = match rng.below(4) {
            0 => buf.len() as u64 + rng.below(1000),
            1 => buf.len() as u64 / 2,
            _ => buf.len() as u64,
        };
        assert_sane(&buf, size);
    }
}

#[test]
fn fuzz_mutated_samples_never_panic() {
    let mut rng = Rng(42);
    for s in samples() {
        // Every truncation.
        for cut in 0..=s.len() {
            assert_sane(&s[..cut], cut as u64);
        }
        // Random byte mutations, including 0x00/0xFF runs that make lengths lie.
        for _ in 0..1500 {
            let mut m = s.clone();
            for _ in 0..=rng.below(4) {
                let p = rng.below(m.len() as u64) as usize;
                m[p] = match rng.below(4) {
                    0 => 0,
                    1 => 0xFF,
                    2 => m[p] ^ (1 << rng.below(8)),
                    _ => rng.next() as u8,
                };
            }
            assert_sane(&m, m.len() as u64);
        }
    }
}

#[test]
fn healthy_samples_are_ok() {
    for s in samples() {
        let r = run(&s, None);
        assert_eq!(r.verdict, Verdict::Ok, "{:?} {r:?}", detect(&s));
    }
}
