//! Property tests for the quick checker (`formats::check`): whatever the bytes, it returns a
//! verdict without panicking and within its read budget; real files cut short are never `Ok`.
//!
//! Runs a fixed number of cases (256 per property) so `cargo test` stays fast. Longer runs:
//! `PROPTEST_CASES=3000000 cargo test --release --test quick_fuzz` (146 s here, see README).

use immich_integrity::formats::{check, Verdict, MAX_QUICK_READ};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::sync::OnceLock;

const EXTS: [Option<&str>; 8] = [
    None,
    Some("jpg"),
    Some("png"),
    Some("webp"),
    Some("mp4"),
    Some("heic"),
    Some("xmp"),
    Some("nef"),
];

const MAGICS: [&[u8]; 11] = [
    &[0xFF, 0xD8, 0xFF],
    b"\x89PNG\r\n\x1a\n",
    b"RIFF\0\0\0\0WEBPVP8L",
    b"GIF89a",
    b"\0\0\0\x18ftypisom",
    b"\0\0\0\x18ftypheic",
    b"\0\0\0\x18ftypcrx ",
    &[0x1A, 0x45, 0xDF, 0xA3],
    b"II*\0",
    b"FUJIFILMCCD-RAW ",
    b"<?xpacket begin=",
];

/// Real files as Immich stores them, made by the fixture generator's encoders.
fn samples() -> &'static [(&'static str, Vec<u8>)] {
    static S: OnceLock<Vec<(&'static str, Vec<u8>)>> = OnceLock::new();
    S.get_or_init(|| {
        use immich_fixtures::media;
        let jpeg = media::jpeg(96, 64, b"fuzz", "quick-fuzz").unwrap();
        let mp4 = media::mp4("quick-fuzz").unwrap();
        // A Pixel-style motion photo: JPEG, then the MP4, located by the XMP offset.
        let xmp = format!(
            "http://ns.adobe.com/xap/1.0/\0<x:xmpmeta xmlns:x=\"adobe:ns:meta/\"><rdf:RDF>\
             <rdf:Description GCamera:MicroVideoOffset=\"{}\"/></rdf:RDF></x:xmpmeta>",
            mp4.len()
        );
        let mut motion = jpeg[..2].to_vec();
        motion.extend([0xFF, 0xE1]);
        motion.extend(((xmp.len() + 2) as u16).to_be_bytes());
        motion.extend(xmp.as_bytes());
        motion.extend(&jpeg[2..]);
        motion.extend(&mp4);
        vec![
            ("jpg", jpeg),
            ("png", media::png(64, 48, b"fuzz").unwrap()),
            ("webp", media::webp(64, 48, b"fuzz").unwrap()),
            ("xmp", media::xmp("00000000-0000-0000-0000-000000000000")),
            ("mp4", mp4),
            ("jpg", motion),
        ]
    })
}

fn runner() -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

/// The checker's contract on any input: a report, within its read budget.
fn sane(buf: &[u8], size: u64, ext: Option<&str>) -> Result<Verdict, TestCaseError> {
    let r = check(buf, size, ext).map_err(|e| TestCaseError::fail(format!("io: {e}")))?;
    prop_assert!(r.bytes_read <= MAX_QUICK_READ, "{r:?}");
    Ok(r.verdict)
}

#[test]
fn arbitrary_bytes_get_a_verdict() {
    let strat = (
        prop::collection::vec(any::<u8>(), 0..6000),
        prop::option::of(0usize..MAGICS.len()),
        -64i64..4096,
        0usize..EXTS.len(),
    );
    runner()
        .run(&strat, |(mut buf, magic, delta, ext)| {
            if let Some(m) = magic.map(|i| MAGICS[i]) {
                let n = m.len().min(buf.len());
                buf[..n].copy_from_slice(&m[..n]);
            }
            let size = (buf.len() as i64 + delta).max(0) as u64;
            sane(&buf, size, EXTS[ext])?;
            Ok(())
        })
        .unwrap();
}

#[derive(Debug, Clone)]
enum Mutation {
    Truncate(prop::sample::Index),
    FlipBit(prop::sample::Index, u8),
    SetByte(prop::sample::Index, u8),
    /// Overwrite 4 bytes with a big-endian length, as a lying box or chunk size would.
    BoxSize(prop::sample::Index, u32),
    ZeroRun(prop::sample::Index, u16),
    AppendZeros(u16),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let idx = any::<prop::sample::Index>;
    let sizes = prop_oneof![
        Just(0u32),
        Just(1),
        Just(7),
        Just(8),
        Just(u32::MAX),
        any::<u32>(),
        0u32..100_000
    ];
    prop_oneof![
        idx().prop_map(Mutation::Truncate),
        (idx(), 0u8..8).prop_map(|(i, b)| Mutation::FlipBit(i, b)),
        (idx(), any::<u8>()).prop_map(|(i, v)| Mutation::SetByte(i, v)),
        (idx(), sizes).prop_map(|(i, v)| Mutation::BoxSize(i, v)),
        (idx(), 1u16..20_000).prop_map(|(i, n)| Mutation::ZeroRun(i, n)),
        (1u16..20_000).prop_map(Mutation::AppendZeros),
    ]
}

fn apply(buf: &mut Vec<u8>, m: &Mutation) {
    if buf.is_empty() {
        return;
    }
    match m {
        Mutation::Truncate(i) => buf.truncate(i.index(buf.len())),
        Mutation::FlipBit(i, b) => {
            let p = i.index(buf.len());
            buf[p] ^= 1 << b;
        }
        Mutation::SetByte(i, v) => {
            let p = i.index(buf.len());
            buf[p] = *v;
        }
        Mutation::BoxSize(i, v) => {
            let p = i.index(buf.len());
            for (k, b) in v.to_be_bytes().into_iter().enumerate() {
                if let Some(x) = buf.get_mut(p + k) {
                    *x = b;
                }
            }
        }
        Mutation::ZeroRun(i, n) => {
            let p = i.index(buf.len());
            let end = (p + *n as usize).min(buf.len());
            buf[p..end].fill(0);
        }
        Mutation::AppendZeros(n) => buf.extend(std::iter::repeat_n(0u8, *n as usize)),
    }
}

#[test]
fn mutated_real_files_get_a_verdict() {
    assert!(samples().len() >= 5);
    let strat = (
        0usize..samples().len(),
        prop::collection::vec(mutation(), 1..5),
        any::<bool>(),
    );
    runner()
        .run(&strat, |(which, muts, lie_about_ext)| {
            let (ext, orig) = &samples()[which];
            let mut buf = orig.clone();
            for m in &muts {
                apply(&mut buf, m);
            }
            let ext = if lie_about_ext {
                Some("png")
            } else {
                Some(*ext)
            };
            sane(&buf, buf.len() as u64, ext)?;
            Ok(())
        })
        .unwrap();
}

#[test]
fn real_files_pass_and_every_cut_of_them_is_caught() {
    for (ext, s) in samples() {
        let v = sane(s, s.len() as u64, Some(ext)).unwrap();
        assert_eq!(v, Verdict::Ok, "{ext} sample");
        // A file shorter than the size it was stat'ed with (it shrank under us).
        let v = sane(s, s.len() as u64 + 1, Some(ext)).unwrap();
        assert!(matches!(v, Verdict::Truncated(_)), "{ext}: {v:?}");
    }
    // JPEG, PNG and WebP end in a marker or declare their length: every cut is seen. (MP4 and
    // XMP may legitimately end at a box boundary or after the closing tag.)
    let strat = (0usize..3, any::<prop::sample::Index>());
    runner()
        .run(&strat, |(which, cut)| {
            let (ext, s) = &samples()[which];
            let cut = 1 + cut.index(s.len() - 1);
            let v = sane(&s[..cut], cut as u64, Some(ext))?;
            prop_assert!(v != Verdict::Ok, "{ext} cut at {cut} of {} passed", s.len());
            Ok(())
        })
        .unwrap();
}
