//! Relink on the real PostgreSQL: apply fixes every `moved` finding so a rescan shows none,
//! a file moved again after the scan is skipped (not relinked), and undo restores the rows
//! exactly, twice over.

mod common;

use common::*;
use immich_fixtures::Generation;
use immich_integrity::relink;
use immich_integrity::{scan, Fault, Finding};

fn relink_generation(generation: Generation) {
    let lib = generate(generation, 50, true);
    let before = dump(&lib);
    let mut findings: Vec<Finding> = Vec::new();
    let summary = scan(&options(&lib.truth), &mut findings).unwrap();
    let steps = relink::plan(&findings, &summary.roots);
    let moved = findings.iter().filter(|f| f.fault == Fault::Moved).count();
    assert_eq!(steps.len(), moved, "every moved finding is planned");
    assert!(moved >= 5);
    assert_eq!(dump(&lib), before, "planning writes nothing");

    // Between scan and apply, one file moves again: it must be skipped, not relinked.
    let again = &steps[0];
    std::fs::rename(&again.found_at, again.found_at.with_extension("elsewhere")).unwrap();
    // And another original was overwritten with different bytes: its size no longer matches.
    let changed = steps
        .iter()
        .find(|s| s.file == immich_integrity::FileKind::Original && s != &again)
        .unwrap();
    std::fs::write(&changed.found_at, b"not the same photo").unwrap();

    let journal = lib.dir.join("relink.journal");
    let report = relink::apply(&lib.truth.db_url, &steps, &journal, 2).unwrap();
    assert_eq!(report.applied.len(), moved - 2);
    assert_eq!(report.skipped.len(), 2);
    assert_eq!(report.skipped[0].0, *again);
    assert_eq!(report.skipped[1].0, *changed);
    assert!(
        report.skipped[1].1.contains("bytes now"),
        "{}",
        report.skipped[1].1
    );

    let mut after: Vec<Finding> = Vec::new();
    scan(&options(&lib.truth), &mut after).unwrap();
    assert!(
        after.iter().all(|f| f.fault != Fault::Moved),
        "a rescan finds nothing left to relink: {after:#?}"
    );
    assert_eq!(
        after.len(),
        findings.len() - (moved - 2),
        "only the relinked ones disappeared"
    );

    assert_eq!(
        relink::undo(&lib.truth.db_url, &journal).unwrap(),
        (moved - 2) as u64
    );
    assert_eq!(dump(&lib), before, "undo restores every row exactly");
    assert_eq!(
        relink::undo(&lib.truth.db_url, &journal).unwrap(),
        0,
        "undo is idempotent"
    );
    assert_eq!(dump(&lib), before);
}

#[test]
fn relink_and_undo_v1_112() {
    relink_generation(Generation::V1_112);
}

#[test]
fn relink_and_undo_v1_135() {
    relink_generation(Generation::V1_135);
}

#[test]
fn relink_and_undo_v1_137() {
    relink_generation(Generation::V1_137);
}

#[test]
fn relink_and_undo_v2_6() {
    relink_generation(Generation::V2_6);
}

#[test]
fn relink_and_undo_v3_0() {
    relink_generation(Generation::V3_0);
}

#[test]
fn relink_and_undo_v3_2() {
    relink_generation(Generation::V3_2);
}

#[test]
fn cli_relink_dry_run_apply_and_undo() {
    use std::process::Command;
    let lib = generate(Generation::V1_137, 40, true);
    let before = dump(&lib);
    let journal = lib.dir.join("cli.journal");
    let run = |extra: &[&str]| {
        let mut args = vec!["relink".to_string()];
        args.extend(library_flags(&lib));
        args.extend(extra.iter().map(|s| s.to_string()));
        Command::new(binary()).args(&args).output().unwrap()
    };
    let dry = run(&[]);
    assert_eq!(
        dry.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    let text = String::from_utf8_lossy(&dry.stdout);
    assert!(
        text.contains("would relink original") && text.contains("dry run:"),
        "{text}"
    );
    assert_eq!(dump(&lib), before, "a dry run changes nothing");

    let journal_flag = journal.to_string_lossy().into_owned();
    let applied = run(&["--apply", "--journal", &journal_flag]);
    assert_eq!(
        applied.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&applied.stdout)
    );
    assert_ne!(dump(&lib), before);
    let mut findings: Vec<Finding> = Vec::new();
    scan(&options(&lib.truth), &mut findings).unwrap();
    assert!(
        findings.iter().all(|f| f.fault != Fault::Moved),
        "{findings:#?}"
    );

    let undo = Command::new(binary())
        .args(["undo", &journal_flag, "--db-url", &lib.truth.db_url])
        .output()
        .unwrap();
    assert_eq!(
        undo.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&undo.stderr)
    );
    assert_eq!(dump(&lib), before, "undo restores the rows exactly");
}
