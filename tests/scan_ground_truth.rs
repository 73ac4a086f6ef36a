//! Every injected fault is found with the right kind, and nothing else, on every schema
//! generation (real PostgreSQL, real files).

mod common;

use common::*;
use immich_fixtures::Generation;
use immich_integrity::{scan, Completion, Fault, Finding, Repair};

fn check_generation(generation: Generation) {
    let lib = generate(generation, 60, true);
    let truth = &lib.truth;
    let mut findings: Vec<Finding> = Vec::new();
    let summary = scan(&options(truth), &mut findings).expect("scan runs");
    assert_eq!(summary.completion, Completion::Complete);
    assert_same(&finding_keys(&findings), &truth_keys(&truth.faults));
    assert_eq!(summary.findings as usize, findings.len());
    // Every referenced file of a non-trashed asset was looked at, except those under the
    // missing mount, which are counted in its finding instead.
    let uncounted: u64 = findings.iter().filter_map(|f| f.affected).sum();
    assert_eq!(summary.files_checked + uncounted, truth.files_referenced);
    // Findings come out in asset-id order within each kind of row, so reports are stable.
    for f in &findings {
        let want = match (f.fault, f.file) {
            (Fault::Moved, _) => Repair::Relink,
            (Fault::PermissionDenied, _) => Repair::FixPermissions,
            (Fault::OutsideRoot | Fault::MountMissing, _) => Repair::None,
            (_, Some(k)) if k.is_derivative() => Repair::Regenerate,
            (_, Some(immich_integrity::FileKind::Original)) => Repair::RestoreFromBackup,
            _ => f.repair,
        };
        assert_eq!(f.repair, want, "repair for {f:?}");
    }
}

#[test]
fn v1_112_relative_paths_with_path_columns() {
    check_generation(Generation::V1_112);
}

#[test]
fn v1_135_relative_paths_with_asset_files() {
    check_generation(Generation::V1_135);
}

#[test]
fn v1_137_singular_tables_absolute_paths() {
    check_generation(Generation::V1_137);
}

#[test]
fn v2_6_sidecars_and_videos_in_asset_file() {
    check_generation(Generation::V2_6);
}

#[test]
fn v3_0_immichs_own_ddl() {
    check_generation(Generation::V3_0);
}

#[test]
fn v3_2_immichs_own_ddl() {
    check_generation(Generation::V3_2);
}

#[test]
fn clean_library_reports_nothing() {
    for generation in [Generation::V1_112, Generation::V2_6, Generation::V3_2] {
        let lib = generate(generation, 30, false);
        let mut findings: Vec<Finding> = Vec::new();
        let summary = scan(&options(&lib.truth), &mut findings).unwrap();
        assert!(findings.is_empty(), "{generation}: {findings:#?}");
        assert_eq!(summary.files_checked, lib.truth.files_referenced);
    }
}

#[test]
fn trashed_assets_are_skipped_unless_asked_for() {
    let lib = generate(Generation::V1_137, 40, true);
    let mut opts = options(&lib.truth);
    opts.source.include_trashed = true;
    let mut findings: Vec<Finding> = Vec::new();
    scan(&opts, &mut findings).unwrap();
    let mut want = truth_keys(&lib.truth.faults);
    want.extend(truth_keys(&lib.truth.trashed_faults));
    assert!(!lib.truth.trashed_faults.is_empty());
    assert_same(&finding_keys(&findings), &want);
}

#[test]
fn unmapped_external_library_is_one_mount_missing_finding() {
    // Without --map for /mnt/external/photos, the tool looks at that path on this host, where
    // nothing is mounted: one finding for the whole mount, not one per file.
    let lib = generate(Generation::V2_6, 40, false);
    let mut opts = options(&lib.truth);
    opts.maps.clear();
    let mut findings: Vec<Finding> = Vec::new();
    scan(&opts, &mut findings).unwrap();
    assert_eq!(findings.len(), 1, "{findings:#?}");
    let f = &findings[0];
    assert_eq!(f.fault, Fault::MountMissing);
    assert_eq!(f.db_path.as_deref(), Some("/mnt/external/photos"));
    assert!(f.affected.unwrap() > 0);
    assert!(f.detail.contains("`ScanOptions::maps`"), "{}", f.detail);
}

#[test]
fn three_shards_together_report_exactly_the_unsharded_findings() {
    let lib = generate(Generation::V1_135, 80, true);
    let mut whole: Vec<Finding> = Vec::new();
    let full = scan(&options(&lib.truth), &mut whole).unwrap();
    let mut merged: Vec<Finding> = Vec::new();
    let mut files = 0;
    let mut rows = 0;
    for k in 0..3 {
        let mut opts = options(&lib.truth);
        opts.source.shard = Some(immich_integrity::Shard { index: k, count: 3 });
        let mut part: Vec<Finding> = Vec::new();
        let s = scan(&opts, &mut part).unwrap();
        assert!(s.rows > 0 && s.rows < full.rows, "shard {k} has a share");
        files += s.files_checked;
        rows += s.rows;
        merged.extend(part);
    }
    assert_eq!((rows, files), (full.rows, full.files_checked));
    // Each shard reports a missing mount with its own share of affected files: sum them.
    let mount_total: u64 = merged
        .iter()
        .filter(|f| f.fault == Fault::MountMissing)
        .filter_map(|f| f.affected)
        .sum();
    merged.retain(|f| f.fault != Fault::MountMissing);
    let mut whole_mounts: Vec<Finding> = whole
        .iter()
        .filter(|f| f.fault == Fault::MountMissing)
        .cloned()
        .collect();
    whole.retain(|f| f.fault != Fault::MountMissing);
    assert_eq!(whole_mounts.len(), 1);
    assert_eq!(whole_mounts.pop().unwrap().affected, Some(mount_total));
    assert_eq!(finding_keys(&merged), finding_keys(&whole));
    assert_eq!(merged.len(), whole.len(), "no finding reported twice");
}

#[test]
fn scan_works_with_a_select_only_role_and_writes_nothing() {
    let lib = generate(Generation::V2_6, 30, true);
    let rt = runtime();
    let role = format!("ro_{}", lib.db_name.trim_start_matches("imf_"));
    let db = lib.truth.db_url.clone();
    let db_name = lib.db_name.clone();
    rt.block_on(async {
        let mut c = connect(&db).await;
        for sql in [
            format!("CREATE ROLE {role} LOGIN"),
            format!("GRANT CONNECT ON DATABASE \"{db_name}\" TO {role}"),
            format!("GRANT USAGE ON SCHEMA public TO {role}"),
            format!("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"),
        ] {
            sqlx::query(&sql).execute(&mut c).await.unwrap();
        }
    });
    let mut opts = options(&lib.truth);
    opts.source.db_url = db.replace("postgres://postgres@", &format!("postgres://{role}@"));
    let mut findings: Vec<Finding> = Vec::new();
    let result = scan(&opts, &mut findings);
    rt.block_on(async {
        let mut c = connect(&db).await;
        sqlx::query(&format!("DROP OWNED BY {role}"))
            .execute(&mut c)
            .await
            .unwrap();
        drop(c);
        let admin = db.rsplit_once('/').unwrap().0.to_string() + "/postgres";
        let mut a = connect(&admin).await;
        sqlx::query(&format!("DROP ROLE {role}"))
            .execute(&mut a)
            .await
            .unwrap();
    });
    result.expect("a SELECT-only role is enough to scan");
    assert_same(&finding_keys(&findings), &truth_keys(&lib.truth.faults));
}
