//! Schema drift (a release that drops or renames a column the tool reads): `scan` checks every
//! other part, names the part it could not check and exits 3; `doctor` fails naming the
//! statement and the column; `orphans` refuses rather than list the unreadable part's files
//! as untracked.

mod common;

use common::{
    assert_same, finding_keys, generate, library_flags, parse_jsonl, run_cli, runtime, truth_keys,
    Key, Lib,
};
use immich_fixtures::Generation;
use immich_integrity::doctor::{self, DoctorOptions, Status};
use immich_integrity::Identity;
use std::collections::BTreeSet;

/// The generations built from Immich's own DDL.
const REAL: [Generation; 3] = [Generation::V2_6, Generation::V3_0, Generation::V3_2];

fn alter(lib: &Lib, sql: &str) {
    runtime().block_on(async {
        use sqlx::Executor;
        let mut c = common::connect(&lib.truth.db_url).await;
        c.execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    });
}

fn scan_jsonl(
    lib: &Lib,
) -> (
    std::process::Output,
    Vec<immich_integrity::Finding>,
    serde_json::Value,
) {
    let mut args = vec!["scan".to_string(), "--format".into(), "jsonl".into()];
    args.extend(library_flags(lib));
    args.extend(["--as-user".into(), lib.truth.as_user.clone()]);
    let out = run_cli(&args);
    let (findings, summary) = parse_jsonl(&out.stdout);
    (out, findings, summary)
}

fn doctor_queries(lib: &Lib) -> (Status, String) {
    let t = &lib.truth;
    let mut o = DoctorOptions::new(t.db_url.clone());
    o.media_root = Some(t.media_root.clone());
    o.as_user = Some(Identity::parse(&t.as_user).unwrap());
    let report = doctor::run(&o);
    let c = report.get("queries").expect("a queries line");
    (c.status, c.message.clone())
}

/// The ground truth without the faults on files of `kinds`.
fn truth_without(lib: &Lib, kinds: &[&str]) -> BTreeSet<Key> {
    truth_keys(&lib.truth.faults)
        .into_iter()
        .filter(|k| !k.1.as_deref().is_some_and(|f| kinds.contains(&f)))
        .collect()
}

fn assert_incomplete(lib: &Lib, part: &str, column: &str, kinds: &[&str]) {
    let (out, findings, summary) = scan_jsonl(lib);
    assert_eq!(
        out.status.code(),
        Some(3),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let unchecked = summary["unchecked"].as_array().expect("unchecked parts");
    assert_eq!(unchecked.len(), 1, "{summary}");
    assert_eq!(unchecked[0]["part"], part, "{summary}");
    let reason = unchecked[0]["reason"].as_str().unwrap();
    assert!(reason.contains(column), "{reason}");
    assert_eq!(summary["completion"]["status"], "complete");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("{part} rows were not checked")),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        findings
            .iter()
            .all(|f| !f.file.is_some_and(|k| kinds.contains(&k.as_str()))),
        "nothing is reported for the unchecked part"
    );
    assert_same(&finding_keys(&findings), &truth_without(lib, kinds));

    let (status, message) = doctor_queries(lib);
    assert_eq!(status, Status::Fail, "{message}");
    assert!(message.contains(column), "{message}");

    // Repairs act on the parts that were checked, and say which were not.
    let mut args = vec!["relink".to_string()];
    args.extend(library_flags(lib));
    args.extend(["--as-user".into(), lib.truth.as_user.clone()]);
    let out = run_cli(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "relink's dry run runs: {err}");
    assert!(
        err.contains(&format!("{part} rows were not checked")) && err.contains("none of them"),
        "{err}"
    );

    let mut args = vec!["orphans".to_string()];
    args.extend(library_flags(lib));
    let out = run_cli(&args);
    assert_eq!(
        out.status.code(),
        Some(2),
        "orphans refuses a partial referenced set"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(column),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn renamed_person_thumbnail_path_leaves_only_persons_unchecked() {
    for g in REAL {
        let lib = generate(g, 40, true);
        assert_eq!(doctor_queries(&lib).0, Status::Ok, "{g}: healthy before");
        alter(
            &lib,
            "ALTER TABLE person RENAME COLUMN \"thumbnailPath\" TO \"thumbPath\"",
        );
        assert_incomplete(&lib, "person", "thumbnailPath", &["person_thumbnail"]);
    }
}

#[test]
fn dropped_asset_file_is_edited_leaves_only_derived_files_unchecked() {
    for g in REAL {
        let lib = generate(g, 40, true);
        alter(
            &lib,
            "ALTER TABLE asset_file DROP COLUMN \"isEdited\" CASCADE",
        );
        assert_incomplete(
            &lib,
            "asset_file",
            "isEdited",
            &[
                "preview",
                "thumbnail",
                "fullsize",
                "sidecar",
                "encoded_video",
            ],
        );
    }
}

#[test]
fn schema_and_release_are_named_from_version_history() {
    for (g, label, release) in [
        (Generation::V2_6, "v2.6-v2.7", "2.6"),
        (Generation::V3_0, "v3.0-v3.1", "3.0"),
        (Generation::V3_2, "v3.2+", "3.2"),
    ] {
        let lib = generate(g, 40, true);
        let (out, _, summary) = scan_jsonl(&lib);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{g}: faults, every part checked"
        );
        assert_eq!(summary["schema"], label);
        assert!(summary.get("unchecked").is_none(), "{summary}");
        let v = summary["immich_version"].as_str().expect("a release");
        assert!(v.starts_with(release) && !v.starts_with('v'), "{v}");
    }
}
