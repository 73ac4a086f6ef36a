//! Time-boxed rolling verification: `--time-limit` stops at a page boundary, and with a
//! manifest the next time-limited run resumes after the last page the one before checked;
//! the run that reaches the end clears the point. Two interrupted runs plus one more read every file
//! exactly once (a scrub: `--verify-manifest` reads every file it reaches, so a file read by
//! two runs would be counted as re-read).

mod common;

use common::*;
use immich_fixtures::Generation;
use immich_integrity::{scan, Completion, Finding, Level};
use std::time::Duration;

#[test]
fn two_interrupted_runs_and_one_more_verify_every_file_exactly_once() {
    let lib = generate(Generation::V2_6, 200, false);
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("scrub.redb");
    let run = |limit: Option<Duration>| {
        let mut o = options(&lib.truth);
        o.level = Level::Quick;
        o.manifest = Some(manifest.clone());
        o.verify_manifest = true;
        o.time_limit = limit;
        let mut found: Vec<Finding> = Vec::new();
        let s = scan(&o, &mut found).unwrap();
        assert!(found.is_empty(), "{found:#?}");
        s
    };
    // A limit that has run out before the first page: each run still checks one page.
    let tiny = Some(Duration::from_millis(1));
    let first = run(tiny);
    let second = run(tiny);
    // Time-limited too (a rolling run resumes), with time enough to reach the end.
    let third = run(Some(Duration::from_secs(3600)));
    assert_eq!(first.completion, Completion::TimeLimit);
    assert_eq!(second.completion, Completion::TimeLimit);
    assert_eq!(third.completion, Completion::Complete);
    let (c1, c2, c3) = (
        first.coverage.clone().unwrap(),
        second.coverage.clone().unwrap(),
        third.coverage.clone().unwrap(),
    );
    assert_eq!(c1.resumed_after, None);
    assert!(c1.next_after.is_some());
    assert_eq!(
        c2.resumed_after, c1.next_after,
        "the second run resumes after the first"
    );
    assert_ne!(c2.next_after, c1.next_after);
    assert_eq!(c3.resumed_after, c2.next_after);
    assert_eq!(
        c3.next_after, None,
        "the run that reached the end starts the next cycle over"
    );
    assert!(first.rows > 0 && second.rows > 0 && third.rows > first.rows);

    // Every file read once: new to the manifest when read, never read again.
    let runs = [&first, &second, &third];
    let new: u64 = runs.iter().map(|s| s.manifest_new.unwrap()).sum();
    let reread: u64 = runs.iter().map(|s| s.manifest_rereads.unwrap()).sum();
    let checked: u64 = runs.iter().map(|s| s.files_checked).sum();
    assert_eq!(reread, 0, "no file was verified twice");
    assert_eq!(
        checked, lib.truth.files_referenced,
        "every referenced file was looked at once"
    );
    assert_eq!(new, c3.verified_files, "every file read is in the manifest");
    assert_eq!(
        immich_integrity::Manifest::open(&manifest)
            .unwrap()
            .len()
            .unwrap(),
        new
    );
    assert!(c3.oldest_verification.is_some());
    assert!(c3.oldest_age_s.unwrap() < 3600);

    // The next cycle starts over from the first asset.
    let fourth = run(tiny);
    assert_eq!(fourth.coverage.unwrap().resumed_after, None);
}
