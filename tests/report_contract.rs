//! The report's versioned contract: real `jsonl` and `json` reports of a generated library
//! validate against `docs/report.schema.json`; the format follows `--output`'s extension; the
//! summary counts per repair and under missing mounts; `--metrics` writes Prometheus text.

mod common;

use common::*;
use immich_fixtures::Generation;
use serde_json::Value;
use std::collections::BTreeMap;

fn validator() -> jsonschema::Validator {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/report.schema.json");
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn assert_valid(v: &jsonschema::Validator, doc: &Value) {
    let errors: Vec<String> = v
        .iter_errors(doc)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\nin {doc}");
}

fn scan_args(lib: &Lib, extra: &[&str]) -> Vec<String> {
    let mut a = vec!["scan".to_string()];
    a.extend(library_flags(lib));
    a.extend(["--as-user".into(), lib.truth.as_user.clone()]);
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn run_in_state(args: &[String], state: &std::path::Path) -> std::process::Output {
    std::process::Command::new(binary())
        .args(args)
        .env_remove("DATABASE_URL")
        .env("IMMICH_INTEGRITY_STATE_DIR", state)
        .output()
        .unwrap()
}

#[test]
fn jsonl_and_json_reports_validate_against_the_published_schema() {
    let v = validator();
    let lib = generate(Generation::V2_6, 60, true);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");

    // No --format: the extension decides.
    let jsonl = dir.path().join("r.jsonl");
    let out = run_in_state(&scan_args(&lib, &["-o", jsonl.to_str().unwrap()]), &state);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = std::fs::read_to_string(&jsonl).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for l in &lines {
        assert_valid(&v, l);
    }
    // findings, then next steps in order, then the summary last.
    let types: Vec<&str> = lines.iter().map(|l| l["type"].as_str().unwrap()).collect();
    let first_step = types.iter().position(|t| *t == "next_step").unwrap();
    assert!(types[..first_step].iter().all(|t| *t == "finding"));
    assert!(types[first_step..types.len() - 1]
        .iter()
        .all(|t| *t == "next_step"));
    assert_eq!(types.last(), Some(&"summary"));
    let orders: Vec<u64> = lines
        .iter()
        .filter(|l| l["type"] == "next_step")
        .map(|l| l["order"].as_u64().unwrap())
        .collect();
    assert_eq!(orders, (1..=orders.len() as u64).collect::<Vec<_>>());

    // The summary's counts per repair and under missing mounts add up to the findings.
    let summary = lines.last().unwrap();
    assert_eq!(summary["schema_version"], 1);
    let findings: Vec<&Value> = lines.iter().filter(|l| l["type"] == "finding").collect();
    assert_eq!(findings.len() as u64, summary["findings"].as_u64().unwrap());
    assert_eq!(findings.len(), lib.truth.faults.len());
    let mut per_repair: BTreeMap<String, u64> = BTreeMap::new();
    for f in &findings {
        *per_repair
            .entry(f["repair"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let got: BTreeMap<String, u64> = serde_json::from_value(summary["repairs"].clone()).unwrap();
    assert_eq!(got, per_repair);
    let mount_affected: u64 = lib.truth.faults.iter().filter_map(|t| t.affected).sum();
    assert!(mount_affected > 0, "the fixture has a missing mount");
    assert_eq!(summary["mount_affected_files"], mount_affected);

    // The json document: same findings, same steps, same contract.
    let json = dir.path().join("r.json");
    let out = run_in_state(&scan_args(&lib, &["-o", json.to_str().unwrap()]), &state);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_valid(&v, &doc);
    assert_eq!(doc["type"], "report");
    assert_eq!(doc["findings"].as_array().unwrap().len(), findings.len());
    assert_eq!(doc["next_steps"].as_array().unwrap().len(), orders.len());

    // An edited line is caught by the schema (the test would see a broken contract).
    let mut bad = findings[0].clone();
    bad["fault"] = "gone".into();
    assert!(!v.is_valid(&bad));

    // .csv writes csv; an explicit --format wins over the extension.
    let csv = dir.path().join("r.csv");
    let out = run_in_state(&scan_args(&lib, &["-o", csv.to_str().unwrap()]), &state);
    assert_eq!(out.status.code(), Some(1));
    let csv_text = std::fs::read_to_string(&csv).unwrap();
    assert!(
        csv_text.starts_with("asset_id,owner_id,file,"),
        "{csv_text}"
    );
    let forced = dir.path().join("t.jsonl");
    let out = run_in_state(
        &scan_args(&lib, &["-f", "table", "-o", forced.to_str().unwrap()]),
        &state,
    );
    assert_eq!(out.status.code(), Some(1));
    let table = std::fs::read_to_string(&forced).unwrap();
    assert!(table.contains("Next steps (in this order):"), "{table}");
    assert!(!table.starts_with('{'));
}

#[test]
fn a_clean_library_reports_no_steps_and_still_validates() {
    let v = validator();
    let lib = generate(Generation::V3_2, 20, false);
    let dir = tempfile::tempdir().unwrap();
    let out = run_in_state(
        &scan_args(&lib, &["--format", "jsonl"]),
        &dir.path().join("state"),
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert_valid(&v, &lines[0]);
    assert_eq!(lines[0]["type"], "summary");
    assert_eq!(lines[0]["repairs"], serde_json::json!({}));
    assert!(
        !dir.path().join("state").exists() || {
            std::fs::read_dir(dir.path().join("state")).unwrap().count() == 0
        }
    );
}

/// `name{labels} value` lines of a Prometheus text file, keyed by `name{labels}`.
fn parse_prom(text: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for l in text.lines() {
        if l.starts_with('#') {
            assert!(
                l.starts_with("# HELP immich_integrity_")
                    || l.starts_with("# TYPE immich_integrity_"),
                "{l}"
            );
            continue;
        }
        let (key, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("{l}"));
        let (name, labels) = key.split_once('{').unwrap_or_else(|| panic!("{l}"));
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{l}"
        );
        assert!(
            labels.ends_with('}') && labels.starts_with("level=\""),
            "{l}"
        );
        out.insert(key.to_string(), value.parse::<f64>().unwrap());
    }
    out
}

#[test]
fn metrics_are_prometheus_text_and_keep_the_last_success_across_a_failed_run() {
    let lib = generate(Generation::V2_6, 60, true);
    let dir = tempfile::tempdir().unwrap();
    let prom = dir.path().join("immich.prom");
    let report = dir.path().join("r.jsonl");
    let out = run_in_state(
        &scan_args(
            &lib,
            &[
                "-o",
                report.to_str().unwrap(),
                "--metrics",
                prom.to_str().unwrap(),
            ],
        ),
        &dir.path().join("state"),
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let m = parse_prom(&std::fs::read_to_string(&prom).unwrap());
    let (_, summary) = parse_jsonl(&std::fs::read(&report).unwrap());
    let counts: BTreeMap<String, BTreeMap<String, u64>> =
        serde_json::from_value(summary["counts"].clone()).unwrap();
    let mut n = 0;
    for (kind, faults) in &counts {
        for (fault, c) in faults {
            let key = format!(
                "immich_integrity_findings{{level=\"exists\",fault=\"{fault}\",file=\"{kind}\"}}"
            );
            assert_eq!(m.get(&key), Some(&(*c as f64)), "{key} in {m:#?}");
            n += 1;
        }
    }
    assert_eq!(
        m.keys()
            .filter(|k| k.starts_with("immich_integrity_findings{"))
            .count(),
        n
    );
    let get = |k: &str| m[&format!("immich_integrity_{k}{{level=\"exists\"}}")];
    assert_eq!(
        get("files_checked"),
        summary["files_checked"].as_f64().unwrap()
    );
    assert_eq!(get("scan_complete"), 1.0);
    assert!(get("scan_duration_seconds") >= 0.0);
    let success = get("last_success_timestamp_seconds");
    assert_eq!(success, get("last_run_timestamp_seconds"));
    assert!(
        m["immich_integrity_repairs{level=\"exists\",repair=\"relink\"}"] > 0.0,
        "{m:#?}"
    );
    // No temp file is left beside it (the collector reads every *.prom).
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        names.iter().all(|n| !n.to_string_lossy().contains("tmp")),
        "{names:?}"
    );

    // A run that cannot reach the database: not complete, last success kept.
    std::thread::sleep(std::time::Duration::from_millis(20));
    let out = run_cli(&[
        "scan".into(),
        "--db-url".into(),
        "postgres://postgres@127.0.0.1:1/none".into(),
        "--media-root".into(),
        lib.truth.media_root.to_string_lossy().into_owned(),
        "--metrics".into(),
        prom.to_string_lossy().into_owned(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let m = parse_prom(&std::fs::read_to_string(&prom).unwrap());
    let get = |k: &str| m[&format!("immich_integrity_{k}{{level=\"exists\"}}")];
    assert_eq!(get("scan_complete"), 0.0);
    assert_eq!(get("last_success_timestamp_seconds"), success);
    assert!(get("last_run_timestamp_seconds") > success);
}
