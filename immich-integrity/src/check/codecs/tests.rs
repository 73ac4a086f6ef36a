//! The phone and camera files of the fixtures, through the decoders: healthy ones decode,
//! broken ones (at `full`) do not, and no input makes a decoder panic or allocate past the
//! limit.

use crate::check::decode::{decode_file, DecodeLimits, Decoded};
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
