//! Fuzzing the video path of `--level full`: a real MP4 with bytes
//! overwritten and cuts made, probed through FFmpeg from a file. Whatever the damage, the probe
//! returns a verdict: no panic escapes, no crash, and the packet budget bounds the work.
//! Longer run: `PROPTEST_CASES=2000 cargo test --release --test decode_fuzz`.

use immich_integrity::decode::{decode_file, DecodeLimits, Decoded};
use immich_integrity::formats::Format;
use proptest::prelude::*;
use std::io::Write;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(48),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn sample() -> &'static [u8] {
    static S: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    S.get_or_init(|| immich_fixtures::media::mp4("fuzz").unwrap())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn decode_fuzz_mutated_videos(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..16),
        cut in proptest::option::of(any::<usize>()),
    ) {
        let mut bytes = sample().to_vec();
        for (at, v) in edits {
            let i = at % bytes.len();
            bytes[i] = v;
        }
        if let Some(c) = cut {
            bytes.truncate(c % (bytes.len() + 1));
        }
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&bytes).unwrap();
        let limits = DecodeLimits { max_packets: 256, ..DecodeLimits::default() };
        let r = decode_file(&f, bytes.len() as u64, Format::Mp4, &limits);
        if let Decoded::Corrupt(d) = &r.outcome {
            prop_assert!(!d.contains("panicked"), "{}", d);
        }
        prop_assert!(r.outcome != Decoded::Unsupported);
    }
}

#[test]
fn the_unmutated_sample_decodes() {
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(sample()).unwrap();
    let r = decode_file(
        &f,
        sample().len() as u64,
        Format::Mp4,
        &DecodeLimits::default(),
    );
    assert!(matches!(r.outcome, Decoded::Ok(_)), "{:?}", r.outcome);
    assert!(r.bytes_read > 0);
}
