//! Journals with identity and run semantics: a header names the kind and the database, each
//! run has its own id, and `undo` restores only what the chosen runs committed, as
//! compare-and-set, listing what it left alone; it refuses files that are not journals and
//! journals of another database.

mod common;

use common::*;
use immich_fixtures::Generation;
use immich_integrity::relink::{self, RelinkStep};
use immich_integrity::{scan, Finding};
use std::path::Path;

fn undo_cli(journal: &Path, db_url: &str, extra: &[&str]) -> (Option<i32>, String) {
    let mut args = vec![
        "undo".to_string(),
        journal.to_string_lossy().into_owned(),
        "--db-url".into(),
        db_url.to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let out = run_cli(&args);
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn run_ids(journal: &Path) -> Vec<String> {
    std::fs::read_to_string(journal)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "run")
        .map(|v| v["run"].as_str().unwrap().to_string())
        .collect()
}

fn set_path(db_url: &str, step: &RelinkStep, value: &str) {
    runtime().block_on(async {
        let mut c = connect(db_url).await;
        let n = sqlx::query("UPDATE asset SET \"originalPath\" = $1 WHERE id = $2::uuid")
            .bind(value)
            .bind(&step.id)
            .execute(&mut c)
            .await
            .unwrap()
            .rows_affected();
        assert_eq!(n, 1);
    });
}

#[test]
fn undo_restores_only_committed_changes_of_the_chosen_runs() {
    let lib = generate(Generation::V1_137, 50, true);
    let db = lib.truth.db_url.clone();
    let before = dump(&lib);
    let mut findings: Vec<Finding> = Vec::new();
    let summary = scan(&options(&lib.truth), &mut findings).unwrap();
    let mut steps: Vec<RelinkStep> = relink::plan(&findings, &summary.roots);
    // An original first: the admin's hand fix below is on the asset table.
    steps.sort_by_key(|s| s.file != immich_integrity::FileKind::Original);
    assert_eq!(steps[0].file, immich_integrity::FileKind::Original);
    assert!(steps.len() >= 4, "{steps:#?}");
    let (a, b) = steps.split_at(steps.len() / 2);
    let journal = lib.dir.join("runs.journal");
    // Run A, run B, then run C repeats A: every row already holds the new path.
    assert_eq!(
        relink::apply(&db, a, &journal, 2).unwrap().applied.len(),
        a.len()
    );
    assert_eq!(
        relink::apply(&db, b, &journal, 2).unwrap().applied.len(),
        b.len()
    );
    let c = relink::apply(&db, a, &journal, 2).unwrap();
    assert!(c.applied.is_empty() && c.skipped.len() == a.len());
    let runs = run_ids(&journal);
    assert_eq!(runs.len(), 3, "one run line per run");
    let header: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(&journal)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["event"], "header");
    assert_eq!(header["kind"], "relink");
    assert_eq!(header["format"], 2);
    assert!(header["database"].as_str().unwrap().len() > 1, "{header}");
    assert!(header.get("system_identifier").is_some(), "{header}");
    let relinked = dump(&lib);

    // The run that changed nothing cannot revert another run's changes.
    let (code, text) = undo_cli(&journal, &db, &["--run", &runs[2]]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.starts_with("restored 0 rows"), "{text}");
    assert_eq!(dump(&lib), relinked, "run C's undo changed nothing");

    // A dry run says what it would do and writes nothing.
    let (code, text) = undo_cli(&journal, &db, &["--run", &runs[0], "--dry-run"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.starts_with(&format!("dry run: would restore {} rows", a.len())),
        "{text}"
    );
    assert_eq!(dump(&lib), relinked, "a dry run writes nothing");

    // An admin fixes one of run A's rows by hand: undo leaves it, lists it, exits 1.
    let fixed = &a[0];
    set_path(&db, fixed, "/data/upload/hand-fixed.jpg");
    let (code, text) = undo_cli(&journal, &db, &["--run", &runs[0]]);
    assert_eq!(code, Some(1), "rows were left alone: {text}");
    assert!(
        text.starts_with(&format!("restored {} rows", a.len() - 1)),
        "{text}"
    );
    assert!(
        text.contains("left alone") && text.contains(&fixed.id),
        "the hand-fixed row is listed: {text}"
    );
    // Run B's rows are still relinked.
    let (code, text) = undo_cli(&journal, &db, &["--run", &runs[1]]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.starts_with(&format!("restored {} rows", b.len())),
        "{text}"
    );
    // Everything but the hand fix is back as before.
    set_path(&db, fixed, &fixed.old);
    assert_eq!(dump(&lib), before);
    // Undoing again restores nothing and is not an error: every row is already restored.
    let (code, text) = undo_cli(&journal, &db, &[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(&format!("{} already restored", a.len() + b.len())),
        "{text}"
    );

    // A run id the journal does not hold.
    let (code, text) = undo_cli(&journal, &db, &["--run", "no-such-run"]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("has no run no-such-run"), "{text}");

    // A torn line is reported with its number, and the exit is not 0.
    let mut torn = std::fs::read_to_string(&journal).unwrap();
    let lines = torn.lines().count();
    torn.push_str("{\"event\":\"change\",\"batch\":9,\"st");
    std::fs::write(&journal, torn).unwrap();
    let (code, text) = undo_cli(&journal, &db, &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains(&format!("line {}", lines + 1)), "{text}");
}

#[test]
fn undo_and_relink_refuse_files_that_are_not_their_journal() {
    let lib = generate(Generation::V1_137, 30, true);
    let other = generate(Generation::V1_137, 5, false);
    let db = lib.truth.db_url.clone();
    let mut findings: Vec<Finding> = Vec::new();
    let summary = scan(&options(&lib.truth), &mut findings).unwrap();
    let steps = relink::plan(&findings, &summary.roots);
    let journal = lib.dir.join("mine.journal");
    relink::apply(&db, &steps, &journal, 50).unwrap();
    let relinked = dump(&lib);

    // Another database's journal.
    let (code, text) = undo_cli(&journal, &other.truth.db_url, &[]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("it is the journal of database"), "{text}");
    // And a run of another database does not append to it.
    let before = std::fs::read(&journal).unwrap();
    let err = relink::apply(&other.truth.db_url, &[], &journal, 50)
        .unwrap_err()
        .to_string();
    assert!(err.contains("it is the journal of database"), "{err}");
    assert_eq!(std::fs::read(&journal).unwrap(), before);

    // Files that are not journals: a system file, a scan report, an old headerless journal.
    let report = lib.dir.join("report.jsonl");
    let mut args = vec!["scan".to_string()];
    args.extend(library_flags(&lib));
    args.extend(["--format", "jsonl", "--output"].map(String::from));
    args.push(report.to_string_lossy().into_owned());
    run_cli(&args);
    let old = lib.dir.join("old.journal");
    let body: String = std::fs::read_to_string(&journal)
        .unwrap()
        .lines()
        .filter(|l| !l.contains("\"header\"") && !l.contains("\"run\""))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&old, body).unwrap();
    for (file, says) in [
        (Path::new("/etc/passwd"), "not an immich-integrity journal"),
        (report.as_path(), "not an immich-integrity journal"),
        (old.as_path(), "before journal headers"),
    ] {
        let (code, text) = undo_cli(file, &db, &[]);
        assert_eq!(code, Some(2), "{}: {text}", file.display());
        assert!(text.contains(says), "{}: {text}", file.display());
    }
    assert_eq!(dump(&lib), relinked, "nothing was undone");

    // A queue journal is not appended to by relink.
    let queue = lib.dir.join("queue.journal");
    let header = std::fs::read_to_string(&journal)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .replace("\"kind\":\"relink\"", "\"kind\":\"queue\"");
    std::fs::write(&queue, format!("{header}\n")).unwrap();
    let err = relink::apply(&db, &steps, &queue, 50)
        .unwrap_err()
        .to_string();
    assert!(err.contains("it is a queue journal"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&queue).unwrap(),
        format!("{header}\n")
    );
    assert_eq!(dump(&lib), relinked);
}
