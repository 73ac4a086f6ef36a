//! The phone and camera files of the fixtures, through the decoders: healthy ones decode,
//! broken ones (at `full`) do not, and no input makes a decoder panic or allocate past the
//! limit.

use crate::check::decode::{decode_bytes, decode_file, DecodeLimits, Decoded};
use crate::check::formats::{self, Format, Verdict};
use immich_fixtures::phones::{file, Case};

fn format_of(b: &[u8]) -> Format {
    formats::detect(b)
}

#[test]
fn every_case_gets_its_verdict() {
    let l = DecodeLimits::default();
    for case in Case::ALL {
        let b = file(case, "unit test").unwrap();
        let format = format_of(&b);
        let q = formats::check(&b[..], b.len() as u64, None).unwrap();
        // From a file: a motion photo's video is probed from there.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, &b).unwrap();
        let f = std::fs::File::open(&p).unwrap();
        let d = decode_file(&f, b.len() as u64, format, &l).outcome;
        match case.truth() {
            None => {
                assert_eq!(q.verdict, Verdict::Ok, "{case:?} quick: {q:?}");
                assert!(matches!(d, Decoded::Ok(_)), "{case:?} {format:?}: {d:?}");
            }
            Some(("quick", _)) => {
                assert!(
                    matches!(q.verdict, Verdict::Truncated(_)),
                    "{case:?}: {q:?}"
                )
            }
            Some(_) => {
                assert_eq!(q.verdict, Verdict::Ok, "{case:?} quick: {q:?}");
                assert!(
                    matches!(&d, Decoded::Corrupt(s) if !s.contains("panicked")),
                    "{case:?} {format:?}: {d:?}"
                );
            }
        }
        println!("{case:?}: {format:?} {:?} / {d:?}", q.verdict);
    }
}

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn replace(b: &mut [u8], from: &[u8], to: &[u8]) {
    let at = b
        .windows(from.len())
        .position(|w| w == from)
        .expect("pattern");
    b[at..at + to.len()].copy_from_slice(to);
}

#[test]
fn declared_bombs_are_refused_before_decoding() {
    let l = DecodeLimits::default();
    let before = vm_hwm_kib();
    // A HEIC whose image declares 30 000 x 30 000 pixels (libheif itself stops at 32 768).
    let mut heic = file(Case::Heic, "bomb").unwrap();
    let all: Vec<usize> = (0..heic.len() - 4)
        .filter(|&i| &heic[i..i + 4] == b"ispe")
        .collect();
    for at in all {
        heic[at + 8..at + 16].copy_from_slice(&[0, 0, 0x75, 0x30, 0, 0, 0x75, 0x30]);
    }
    match decode_bytes(&heic, Format::Heif, &l) {
        Decoded::Corrupt(d) => {
            assert!(d.contains("refused to decode: declares 30000x30000"), "{d}")
        }
        other => panic!("{other:?}"),
    }
    // A DNG whose sensor IFD declares 60 000 x 60 000 (and one declaring 4 billion wide).
    for side in [60_000u32, u32::MAX] {
        let mut dng = file(Case::Dng, "bomb").unwrap();
        let s = side.to_le_bytes();
        replace(
            &mut dng,
            &[0, 1, 4, 0, 1, 0, 0, 0, 64, 0, 0, 0],
            &[0, 1, 4, 0, 1, 0, 0, 0, s[0], s[1], s[2], s[3]],
        );
        replace(
            &mut dng,
            &[1, 1, 4, 0, 1, 0, 0, 0, 48, 0, 0, 0],
            &[1, 1, 4, 0, 1, 0, 0, 0, s[0], s[1], s[2], s[3]],
        );
        match decode_bytes(&dng, Format::Raw, &l) {
            Decoded::Corrupt(d) => assert!(
                d.contains(&format!("refused to decode: declares {side}x{side}")),
                "{d}"
            ),
            other => panic!("{other:?}"),
        }
    }
    let grown = vm_hwm_kib().saturating_sub(before);
    assert!(grown < 256 * 1024, "peak RSS grew by {grown} KiB");
}

/// Proptest runs: `PROPTEST_CASES` or 64 (libheif, rawler and jxl-oxide per case).
fn fuzz_config() -> proptest::test_runner::Config {
    proptest::test_runner::Config {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(64),
        failure_persistence: None,
        ..Default::default()
    }
}

fn fuzz_limits() -> DecodeLimits {
    DecodeLimits {
        max_dimension: 4096,
        max_alloc: 64 << 20,
        ..DecodeLimits::default()
    }
}

/// The healthy phone and camera files, one per decoder path.
fn samples() -> &'static [(Format, Vec<u8>)] {
    static S: std::sync::OnceLock<Vec<(Format, Vec<u8>)>> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        [
            Case::Heic,
            Case::Heic10Hdr,
            Case::HeicGrid,
            Case::Avif10Hdr,
            Case::AvifGrid,
            Case::JxlBare,
            Case::JxlContainer,
            Case::Dng,
        ]
        .into_iter()
        .map(|c| {
            let b = file(c, "fuzz").unwrap();
            (format_of(&b), b)
        })
        .collect()
    })
}

fn no_panic(d: &Decoded) -> Result<(), proptest::test_runner::TestCaseError> {
    if let Decoded::Corrupt(s) = d {
        proptest::prop_assert!(!s.contains("decoder panicked"), "{}", s);
    }
    Ok(())
}

proptest::proptest! {
    #![proptest_config(fuzz_config())]

    /// Real files with bytes overwritten (often in their headers and boxes), then maybe cut.
    #[test]
    fn codec_fuzz_mutated_files(
        which in 0usize..8,
        edits in proptest::collection::vec((proptest::num::usize::ANY, proptest::num::u8::ANY), 1..16),
        head in proptest::bool::ANY,
        cut in proptest::option::of(proptest::num::usize::ANY),
    ) {
        let (format, sample) = &samples()[which];
        let mut bytes = sample.clone();
        // Half the time the edits hit the first 512 bytes, where the headers are.
        let span = if head { bytes.len().min(512) } else { bytes.len() };
        for (at, v) in edits {
            bytes[at % span] = v;
        }
        if let Some(c) = cut {
            bytes.truncate(c % (bytes.len() + 1));
        }
        no_panic(&decode_bytes(&bytes, *format, &fuzz_limits()))?;
    }

    /// Arbitrary bytes after each format's first 16 bytes.
    #[test]
    fn codec_fuzz_arbitrary_bytes(
        which in 0usize..8,
        body in proptest::collection::vec(proptest::num::u8::ANY, 0..4096),
    ) {
        let (format, sample) = &samples()[which];
        let mut bytes = sample[..16].to_vec();
        bytes.extend_from_slice(&body);
        no_panic(&decode_bytes(&bytes, *format, &fuzz_limits()))?;
    }
}

#[test]
fn fuzzing_stays_within_the_memory_budget() {
    // Runs after (or beside) the properties above in the same process: whatever they did,
    // the peak stays far below what one unbounded decode of a declared bomb would take.
    let grown = vm_hwm_kib();
    assert!(grown < 2 * 1024 * 1024, "peak RSS {grown} KiB");
}
