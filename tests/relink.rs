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

/// Three `asset_file` rows of one asset and type hold the same path (one of them edited; the
/// unique key was dropped, as a damaged database may have). Each is relinked on its own, the
/// printed counts are what was committed, the exit code says everything was relinked, and undo
/// restores each row.
#[test]
fn relink_counts_duplicate_asset_file_rows_one_by_one_v2_6() {
    let lib = generate(Generation::V2_6, 12, false);
    let asset = lib
        .truth
        .edited_asset
        .clone()
        .expect("a v2.6 fixture has an edited asset");
    let path: String = runtime().block_on(async {
        let mut c = connect(&lib.truth.db_url).await;
        let path: String = sqlx::query_scalar(
            "SELECT path FROM asset_file WHERE \"assetId\" = $1::uuid AND type = 'preview' \
             AND NOT \"isEdited\"",
        )
        .bind(&asset)
        .fetch_one(&mut c)
        .await
        .unwrap();
        for sql in [
            "ALTER TABLE asset_file DROP CONSTRAINT \"asset_file_assetId_type_isEdited_uq\"",
            "DELETE FROM asset_file WHERE \"assetId\" = $1::uuid AND type = 'preview' \
             AND \"isEdited\"",
            "INSERT INTO asset_file (\"assetId\", type, path, \"isEdited\") \
             VALUES ($1::uuid, 'preview', $2, true), ($1::uuid, 'preview', $2, false)",
        ] {
            let mut q = sqlx::query(sql);
            if sql.contains("$1") {
                q = q.bind(&asset);
            }
            if sql.contains("$2") {
                q = q.bind(&path);
            }
            q.execute(&mut c).await.unwrap();
        }
        path
    });
    let before = dump(&lib);
    // The preview file is restored one top folder too deep.
    let host = lib.truth.map_path(&path).unwrap();
    let rel = host
        .strip_prefix(&lib.truth.media_root)
        .unwrap()
        .to_path_buf();
    let nested = lib.truth.media_root.join("thumbs").join(&rel);
    std::fs::create_dir_all(nested.parent().unwrap()).unwrap();
    std::fs::rename(&host, &nested).unwrap();

    let journal = lib.dir.join("dup.journal");
    let mut args = vec!["relink".to_string()];
    args.extend(library_flags(&lib));
    args.extend(
        ["--apply", "--prefix-min", "0", "--journal"]
            .iter()
            .map(|s| s.to_string()),
    );
    args.push(journal.to_string_lossy().into_owned());
    let out = run_cli(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let moved_rows: i64 = runtime().block_on(async {
        let mut c = connect(&lib.truth.db_url).await;
        sqlx::query_scalar(
            "SELECT count(*) FROM asset_file WHERE \"assetId\" = $1::uuid AND type = 'preview' \
             AND path <> $2",
        )
        .bind(&asset)
        .bind(&path)
        .fetch_one(&mut c)
        .await
        .unwrap()
    });
    assert_eq!(moved_rows, 3, "all three rows were relinked: {stdout}");
    assert!(
        stdout.contains("relinked 3 rows") && stdout.contains("skipped 0"),
        "the printed counts are what was committed: {stdout}"
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}");

    let undo = run_cli(&[
        "undo".into(),
        journal.to_string_lossy().into_owned(),
        "--db-url".into(),
        lib.truth.db_url.clone(),
    ]);
    assert_eq!(
        undo.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&undo.stderr)
    );
    assert!(
        String::from_utf8_lossy(&undo.stdout).contains("restored 3 rows"),
        "{}",
        String::from_utf8_lossy(&undo.stdout)
    );
    assert_eq!(dump(&lib), before, "undo restores each row");
}
