//! Queue mode deletes or blanks a derivative only after it checked THAT file broken itself, as
//! deep as the claimed fault needs (a `corrupt` one is decoded again): a report line or an
//! embedder's target only selects a row, and a file found healthy is left alone and listed.

mod common;
mod immich_stub;

use common::*;
use immich_fixtures::{FixtureSpec, Generation};
use immich_integrity::api::{ApiKey, Client, RetryPolicy};
use immich_integrity::regenerate::{self as regen, JobName, Target};
use immich_integrity::{Fault, FileKind, Level};
use serde_json::json;
use std::time::Duration;

fn library() -> Lib {
    generate_spec(FixtureSpec {
        generation: Generation::V2_6,
        assets: 12,
        users: 1,
        faults: false,
        seed: 7,
        content_faults: false,
        original_bytes: 0,
    })
}

/// (asset id, owner id, stored path) of the first `n` previews.
fn previews(lib: &Lib, n: i64) -> Vec<(String, String, String)> {
    runtime().block_on(async {
        let mut c = connect(&lib.truth.db_url).await;
        sqlx::query_as(
            "SELECT f.\"assetId\"::text, a.\"ownerId\"::text, f.path FROM asset_file f \
             JOIN asset a ON a.id = f.\"assetId\" WHERE f.type::text = 'preview' \
             AND a.\"deletedAt\" IS NULL ORDER BY 1 LIMIT $1",
        )
        .bind(n)
        .fetch_all(&mut c)
        .await
        .unwrap()
    })
}

/// Damages a JPEG's entropy-coded data (a run of bytes in its middle forced to 0xFF) and
/// keeps its size, header and end marker: the `quick` check passes it, only a decode fails.
fn corrupt_scan_data(path: &std::path::Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let n = bytes.len();
    for b in &mut bytes[n / 2..n / 2 + 64.min(n / 4)] {
        *b = 0xFF;
    }
    std::fs::write(path, bytes).unwrap();
}

fn line(asset: &str, owner: &str, db_path: &str, fault: &str) -> String {
    json!({
        "asset_id": asset, "owner_id": owner, "file": "preview", "db_path": db_path,
        "host_path": null, "fault": fault, "found_at": null, "repair": "regenerate",
        "detail": "", "affected": null, "relink_to": null
    })
    .to_string()
}

fn findings_at(lib: &Lib, level: &str) -> Vec<immich_integrity::Finding> {
    let mut args = vec!["scan".to_string()];
    args.extend(library_flags(lib));
    args.extend([
        "--format".into(),
        "jsonl".into(),
        "--level".into(),
        level.into(),
    ]);
    let out = run_cli(&args);
    parse_jsonl(&out.stdout).0
}

/// A report line claiming a healthy preview is corrupt changes nothing and is listed as
/// skipped with the reason; a preview that is really corrupt (only a decode sees it) is
/// cleared from the same kind of line.
#[test]
fn a_report_claiming_a_healthy_preview_corrupt_changes_nothing() {
    let lib = library();
    let p = previews(&lib, 2);
    let (healthy, damaged) = (&p[0], &p[1]);
    corrupt_scan_data(&lib.truth.map_path(&damaged.2).unwrap());
    assert!(
        findings_at(&lib, "quick").is_empty(),
        "the damage is invisible to the quick check"
    );
    let full = findings_at(&lib, "full");
    assert_eq!(full.len(), 1, "{full:#?}");
    assert_eq!(full[0].fault, Fault::Corrupt);
    let before = dump(&lib);

    let report = lib.dir.join("claims.jsonl");
    std::fs::write(
        &report,
        format!(
            "{}\n{}\n",
            line(&healthy.0, &healthy.1, &healthy.2, "corrupt"),
            line(
                &damaged.0,
                &damaged.1,
                "/data/somewhere/else.jpeg",
                "corrupt"
            )
        ),
    )
    .unwrap();
    let stub = immich_stub::Stub::start();
    let journal = lib.dir.join("queue.journal");
    let mut args = vec!["regenerate".to_string(), "--via".into(), "queue".into()];
    args.extend(library_flags(&lib));
    args.extend([
        "--from".to_string(),
        report.to_string_lossy().into_owned(),
        "--server".into(),
        stub.url(),
        "--apply".into(),
        "--journal".into(),
        journal.to_string_lossy().into_owned(),
    ]);
    let out = std::process::Command::new(binary())
        .args(&args)
        .env_remove("DATABASE_URL")
        .env("IMMICH_API_KEY", immich_stub::ADMIN_KEY)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(
        said.contains(&format!(
            "skipped preview of asset {} ({}): re-checked now at the full level: healthy",
            healthy.0, healthy.2
        )),
        "{said}"
    );
    assert!(
        said.contains(&format!("delete the preview row ({})", damaged.2)),
        "{said}"
    );
    // Only the damaged preview's row (and its thumbhash) changed; undo puts it back.
    let rows = |lib: &Lib, id: &str| -> i64 {
        runtime().block_on(async {
            let mut c = connect(&lib.truth.db_url).await;
            sqlx::query_scalar(
                "SELECT count(*) FROM asset_file WHERE \"assetId\" = $1::uuid AND type::text = 'preview'",
            )
            .bind(id)
            .fetch_one(&mut c)
            .await
            .unwrap()
        })
    };
    assert_eq!(
        rows(&lib, &healthy.0),
        1,
        "the healthy preview keeps its row"
    );
    assert_eq!(
        rows(&lib, &damaged.0),
        0,
        "the corrupt preview's row is cleared"
    );
    let out = run_cli(&[
        "undo".to_string(),
        journal.to_string_lossy().into_owned(),
        "--db-url".into(),
        lib.truth.db_url.clone(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(dump(&lib), before);
}

fn target(asset: &str, owner: &str, db_path: Option<&str>, fault: Fault) -> Target {
    Target {
        asset_id: asset.into(),
        owner_id: owner.into(),
        file: FileKind::Preview,
        job: JobName::RegenerateThumbnail,
        db_path: db_path.map(str::to_string),
        host_path: Some("/nonexistent/bogus.jpeg".into()),
        fault,
    }
}

/// An embedder's targets only select: plan_queue checks the rows itself. At apply time each
/// file is checked again, so a file put back since the plan keeps its row, and a plan not
/// made by plan_queue clears nothing.
#[test]
fn plan_queue_and_apply_check_every_file_themselves() {
    let lib = library();
    let p = previews(&lib, 2);
    let opts = options(&lib.truth);
    // A healthy preview claimed corrupt, with a made-up path: nothing planned, and why.
    let plan = regen::plan_queue(
        &opts,
        &[target(
            &p[0].0,
            "someone-else",
            Some("/etc/shadow"),
            Fault::Corrupt,
        )],
    )
    .unwrap();
    assert!(plan.steps.is_empty(), "{:#?}", plan.steps);
    assert_eq!(plan.skipped.len(), 1, "{:#?}", plan.skipped);
    assert!(
        plan.skipped[0].1.contains("at the full level: healthy"),
        "{:?}",
        plan.skipped[0]
    );
    assert_eq!(plan.skipped[0].0.db_path.as_deref(), Some(p[0].2.as_str()));
    // An original is not something queue mode clears, whatever the target says.
    let mut original = target(&p[0].0, &p[0].1, None, Fault::Missing);
    original.file = FileKind::Original;
    let plan = regen::plan_queue(&opts, &[original]).unwrap();
    assert!(plan.steps.is_empty() && plan.skipped.len() == 1);

    // A preview gone at planning, put back before apply: its row stays.
    let host = lib.truth.map_path(&p[1].2).unwrap();
    let bytes = std::fs::read(&host).unwrap();
    std::fs::remove_file(&host).unwrap();
    let plan = regen::plan_queue(&opts, &[target(&p[1].0, &p[1].1, None, Fault::Missing)]).unwrap();
    assert!(
        plan.steps
            .iter()
            .any(|s| matches!(s.change, regen::QueueChange::DeleteAssetFile { .. })),
        "{plan:#?}"
    );
    std::fs::write(&host, &bytes).unwrap();
    let before = dump(&lib);
    let stub = immich_stub::Stub::start();
    let client = Client::new(
        &stub.url(),
        RetryPolicy {
            attempts: 1,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(10),
            timeout: Duration::from_secs(5),
        },
    )
    .unwrap();
    let key = ApiKey::new(immich_stub::ADMIN_KEY).unwrap();
    let journal = lib.dir.join("apply.journal");
    let report =
        regen::apply_queue(&lib.truth.db_url, &plan, &journal, 10, &client, &key, None).unwrap();
    assert_eq!(report.applied, 0, "{report:#?}");
    assert!(
        report
            .skipped
            .iter()
            .any(|(_, why)| why.contains("at the exists level: healthy")),
        "{report:#?}"
    );
    assert_eq!(dump(&lib), before, "the preview put back keeps its row");

    // The same steps in a plan plan_queue did not make: nothing is cleared unchecked.
    std::fs::remove_file(&host).unwrap();
    let mut forged = regen::QueuePlan::default();
    forged.steps.extend(plan.steps.iter().cloned());
    let report = regen::apply_queue(
        &lib.truth.db_url,
        &forged,
        &journal,
        10,
        &client,
        &key,
        None,
    )
    .unwrap();
    assert_eq!(report.applied, 0, "{report:#?}");
    assert_eq!(dump(&lib), before);
    assert_eq!(Level::Full, regen::depth_of(Fault::Corrupt));
}
