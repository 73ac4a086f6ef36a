//! Prefix rewrites on the real PostgreSQL, for every schema generation: when whole top folders
//! moved one level too deep, the dry run shows one rewrite per folder and changes nothing;
//! apply fixes every row (a rescan is clean) in the generation's own path spelling; undo
//! restores the path columns exactly, twice over. A rewrite whose files no longer verify
//! falls back to single rows.

mod common;

use common::*;
use immich_fixtures::Generation;
use immich_integrity::relink::{self, RelinkPlan};
use immich_integrity::{scan, Fault, FileKind, Finding, ScanOptions};
use std::process::Command;

fn opts(lib: &Lib) -> ScanOptions {
    let mut o = options(&lib.truth);
    o.source.include_trashed = true;
    o
}

fn plan_for(lib: &Lib, min: usize) -> RelinkPlan {
    let mut findings: Vec<Finding> = Vec::new();
    let summary = scan(&opts(lib), &mut findings).unwrap();
    assert!(
        findings.iter().all(|f| f.fault == Fault::Moved),
        "{findings:#?}"
    );
    relink::plan_prefixes(relink::plan(&findings, &summary.roots), min)
}

fn cli(lib: &Lib, extra: &[&str]) -> (Option<i32>, String) {
    let mut args = vec!["relink".to_string(), "--include-trashed".into()];
    args.extend(library_flags(lib));
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = Command::new(binary()).args(&args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.code() == Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

fn prefix_generation(generation: Generation) {
    let lib = generate(generation, 40, false);
    let root = generation.container_root();
    nest_top_folder(&lib.truth.media_root, "upload");
    nest_top_folder(&lib.truth.media_root, "thumbs");
    let before = dump_paths(&lib.truth.db_url);

    let (_, dry) = cli(&lib, &["--prefix-min", "5"]);
    let rewrites: Vec<&str> = dry
        .lines()
        .filter(|l| l.starts_with("prefix rewrite "))
        .collect();
    assert_eq!(rewrites.len(), 2, "{dry}");
    assert!(
        rewrites[0].starts_with(&format!(
            "prefix rewrite {root}/thumbs/ -> {root}/thumbs/thumbs/, "
        )),
        "{dry}"
    );
    assert!(
        rewrites[1].starts_with(&format!(
            "prefix rewrite {root}/upload/ -> {root}/upload/upload/, "
        )),
        "{dry}"
    );
    assert!(!dry.contains("would relink"), "no single rows: {dry}");
    assert!(dry.contains(" 0 one by one"), "{dry}");
    assert_eq!(
        dump_paths(&lib.truth.db_url),
        before,
        "a dry run changes nothing"
    );

    let journal = lib.dir.join("prefix.journal");
    let j = journal.to_string_lossy().into_owned();
    let (_, applied) = cli(
        &lib,
        &[
            "--prefix-min",
            "5",
            "--apply",
            "--batch",
            "7",
            "--journal",
            &j,
        ],
    );
    assert_eq!(
        applied
            .lines()
            .filter(|l| l.starts_with("prefix rewrite "))
            .count(),
        2,
        "{applied}"
    );
    let after = dump_paths(&lib.truth.db_url);
    assert_ne!(after, before);
    // Stored in the generation's own spelling: relative `upload/...` or absolute `/data/...`.
    for line in after.lines() {
        let value = line.rsplit('|').next().unwrap();
        if value.contains("/upload/") && !value.contains("/mnt/") {
            assert!(
                value.starts_with(&format!("{root}/upload/upload/")),
                "{line}"
            );
        }
    }
    let mut rescan: Vec<Finding> = Vec::new();
    scan(&opts(&lib), &mut rescan).unwrap();
    assert!(rescan.is_empty(), "a rescan is clean: {rescan:#?}");
    let text = std::fs::read_to_string(&journal).unwrap();
    assert!(text.contains("\"event\":\"prefix\""));

    let undo = |expect: &str| {
        let out = Command::new(binary())
            .args(["undo", &j, "--db-url", &lib.truth.db_url])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(text.starts_with(expect), "{text}");
    };
    undo("restored ");
    assert_eq!(
        dump_paths(&lib.truth.db_url),
        before,
        "undo restores exactly"
    );
    undo("restored 0 rows");
    assert_eq!(
        dump_paths(&lib.truth.db_url),
        before,
        "undo twice is a no-op"
    );
}

#[test]
fn prefix_rewrite_v1_112() {
    prefix_generation(Generation::V1_112);
}

#[test]
fn prefix_rewrite_v1_135() {
    prefix_generation(Generation::V1_135);
}

#[test]
fn prefix_rewrite_v1_137() {
    prefix_generation(Generation::V1_137);
}

#[test]
fn prefix_rewrite_v2_6() {
    prefix_generation(Generation::V2_6);
}

#[test]
fn prefix_rewrite_v3_0() {
    prefix_generation(Generation::V3_0);
}

#[test]
fn prefix_rewrite_v3_2() {
    prefix_generation(Generation::V3_2);
}

/// A file gone from the new place, or a sampled original whose bytes changed, stops the
/// rewrite: its rows are relinked one by one and the bad ones are skipped.
#[test]
fn unverified_prefix_falls_back_to_single_rows() {
    let lib = generate(Generation::V2_6, 30, false);
    nest_top_folder(&lib.truth.media_root, "upload");
    let plan = plan_for(&lib, 5);
    assert_eq!(plan.prefixes.len(), 1);
    let steps = &plan.prefixes[0].steps;
    let n = steps.len();

    // The first original is in the sample: same size, other bytes.
    let sampled = steps
        .iter()
        .find(|s| s.file == FileKind::Original)
        .unwrap()
        .clone();
    let len = std::fs::metadata(&sampled.found_at).unwrap().len() as usize;
    std::fs::write(&sampled.found_at, vec![0x5a; len]).unwrap();
    let journal = lib.dir.join("fallback.journal");
    let report =
        relink::apply_plan(&lib.truth.db_url, &plan, &journal, 4, &Default::default()).unwrap();
    assert!(report.prefix_rewrites.is_empty());
    assert_eq!(report.prefix_fallbacks.len(), 1);
    assert!(
        report.prefix_fallbacks[0].2.contains("sample"),
        "{:?}",
        report.prefix_fallbacks
    );
    assert_eq!(report.skipped.len(), 1);
    assert_eq!(report.skipped[0].0, sampled);
    assert_eq!(report.applied.len(), n - 1);
    relink::undo(&lib.truth.db_url, &journal).unwrap();

    // A file that is not at its new place at all.
    let gone = steps.iter().rev().find(|s| s != &&sampled).unwrap().clone();
    std::fs::rename(&gone.found_at, gone.found_at.with_extension("elsewhere")).unwrap();
    let checks = relink::check_prefixes(&lib.truth.db_url, &plan).unwrap();
    assert!(checks[0].verdict.as_ref().unwrap_err().contains("gone"));
    let journal = lib.dir.join("fallback2.journal");
    let report =
        relink::apply_plan(&lib.truth.db_url, &plan, &journal, 4, &Default::default()).unwrap();
    assert_eq!(report.prefix_fallbacks.len(), 1);
    assert_eq!(report.skipped.len(), 2);
    assert_eq!(report.applied.len(), n - 2);
}

/// Rows under the prefix that the plan does not cover (here: trashed assets left out of the
/// scan) make the rewrite unsafe as a whole.
#[test]
fn rows_outside_the_plan_block_the_rewrite() {
    let lib = generate(Generation::V1_137, 30, false);
    nest_top_folder(&lib.truth.media_root, "upload");
    let mut findings: Vec<Finding> = Vec::new();
    let summary = scan(&options(&lib.truth), &mut findings).unwrap(); // trashed assets not scanned
    let plan = relink::plan_prefixes(relink::plan(&findings, &summary.roots), 5);
    assert_eq!(plan.prefixes.len(), 1);
    let before = dump_paths(&lib.truth.db_url);
    let checks = relink::check_prefixes(&lib.truth.db_url, &plan).unwrap();
    let why = checks[0].verdict.as_ref().unwrap_err();
    assert!(why.contains("not moved findings"), "{why}");
    assert_eq!(dump_paths(&lib.truth.db_url), before);
}
