//! "Safe in an admin's hands": a saved report only selects rows (the tool re-checks them and
//! decides every path itself, re-verified beneath the root at apply time), roots are never
//! guessed (two Immich trees, or a media location the database contradicts, stop the run
//! and list what was found), and every report names the roots it used.

mod common;

use common::*;
use immich_fixtures::Generation;
use immich_integrity::relink;
use immich_integrity::{scan, FileKind, Finding};
use serde_json::json;
use std::path::Path;

fn sql(lib: &Lib, query: &str) -> Vec<(String, String)> {
    runtime().block_on(async {
        let mut c = connect(&lib.truth.db_url).await;
        sqlx::query_as(query).fetch_all(&mut c).await.unwrap()
    })
}

fn finding_line(f: serde_json::Value) -> String {
    // Every field a finding has, so the line reads back as one.
    let mut base = json!({
        "asset_id": null, "owner_id": null, "file": null, "db_path": null, "host_path": null,
        "fault": "moved", "found_at": null, "repair": "relink", "detail": "crafted",
        "affected": null, "relink_to": null
    });
    for (k, v) in f.as_object().unwrap() {
        base[k] = v.clone();
    }
    // It must parse as a finding, or the test proves nothing.
    let _: Finding = serde_json::from_value(base.clone()).unwrap();
    base.to_string()
}

fn write_report(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Old bug: a crafted report line set `profileImagePath` to `/etc/shadow` and a preview path
/// to an https URL, and `relink --from REPORT --apply` wrote both. Now the report only selects
/// the rows; the re-check finds both files healthy, so nothing is relinked.
#[test]
fn relink_from_a_crafted_report_writes_only_what_its_own_check_decides() {
    let lib = generate(Generation::V2_6, 12, false);
    let user = sql(
        &lib,
        "SELECT id::text, COALESCE(\"profileImagePath\", '') FROM \"user\" ORDER BY id LIMIT 1",
    )
    .remove(0);
    let preview = sql(
        &lib,
        "SELECT \"assetId\"::text, path FROM asset_file WHERE type = 'preview' ORDER BY 1 LIMIT 1",
    )
    .remove(0);
    let owner = sql(
        &lib,
        &format!(
            "SELECT \"ownerId\"::text, '' FROM asset WHERE id = '{}'",
            preview.0
        ),
    )
    .remove(0)
    .0;
    let report = lib.dir.join("crafted.jsonl");
    write_report(
        &report,
        &[
            finding_line(json!({
                "asset_id": user.0, "owner_id": user.0, "file": "profile_image",
                "db_path": user.1, "found_at": "/etc/shadow", "relink_to": "/etc/shadow"
            })),
            finding_line(json!({
                "asset_id": preview.0, "owner_id": owner, "file": "preview",
                "db_path": preview.1, "found_at": "/etc/hostname",
                "relink_to": "https://evil.example/p.jpg"
            })),
        ],
    );
    let before = dump_paths(&lib.truth.db_url);
    let mut args = vec!["relink".to_string()];
    args.extend(library_flags(&lib));
    args.extend([
        "--from".into(),
        report.to_string_lossy().into_owned(),
        "--apply".into(),
        "--journal".into(),
        lib.dir
            .join("crafted.journal")
            .to_string_lossy()
            .into_owned(),
    ]);
    let out = run_cli(&args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("relinked 0 rows"), "{}", text(&out));
    let after = dump_paths(&lib.truth.db_url);
    assert_eq!(before, after, "no row changed");
    assert!(!after.contains("/etc/shadow") && !after.contains("https://"));
}

/// Old bug: in queue mode a report line with a bogus `host_path` for a healthy preview planned
/// (and applied) the delete of its `asset_file` row. Now the re-check sees the preview healthy
/// and nothing is planned.
#[test]
fn queue_mode_from_a_report_never_touches_a_healthy_derivative() {
    let lib = generate(Generation::V2_6, 12, false);
    let preview = sql(
        &lib,
        "SELECT \"assetId\"::text, path FROM asset_file WHERE type = 'preview' ORDER BY 1 LIMIT 1",
    )
    .remove(0);
    let owner = sql(
        &lib,
        &format!(
            "SELECT \"ownerId\"::text, '' FROM asset WHERE id = '{}'",
            preview.0
        ),
    )
    .remove(0)
    .0;
    let report = lib.dir.join("bogus.jsonl");
    write_report(
        &report,
        &[finding_line(json!({
            "asset_id": preview.0, "owner_id": owner, "file": "preview",
            "db_path": preview.1, "host_path": "/nonexistent/bogus.jpeg",
            "fault": "missing", "repair": "regenerate"
        }))],
    );
    let mut args = vec!["regenerate".to_string(), "--via".into(), "queue".into()];
    args.extend(library_flags(&lib));
    args.extend(["--from".into(), report.to_string_lossy().into_owned()]);
    let out = run_cli(&args);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(!said.contains("delete the preview row"), "{said}");
    assert!(said.contains("dry run: 0 row change(s)"), "{said}");

    // A preview really gone is still rebuilt from the same kind of report.
    let host = lib.truth.map_path(&preview.1).unwrap();
    std::fs::remove_file(&host).unwrap();
    let out = run_cli(&args);
    let said = text(&out);
    assert!(said.contains("would delete the preview row"), "{said}");
}

/// Old bug: the apply-time re-check followed a folder on the `found_at` path that had been
/// swapped for a symlink out of the root. Now every component is resolved beneath the root's
/// handle, and the step is skipped.
#[test]
fn apply_refuses_a_folder_on_the_way_swapped_for_a_symlink_out_of_the_root() {
    let lib = generate(Generation::V1_137, 12, false);
    nest_top_folder(&lib.truth.media_root, "upload");
    let mut findings: Vec<Finding> = Vec::new();
    let summary = scan(&options(&lib.truth), &mut findings).unwrap();
    let steps: Vec<_> = relink::plan(&findings, &summary.roots)
        .into_iter()
        .filter(|s| s.file == FileKind::Original)
        .collect();
    assert!(steps.len() >= 3, "{findings:#?}");
    assert!(steps.iter().all(|s| s.root.is_some()));
    // The nested folder goes outside the root; a symlink to it takes its place.
    let inner = lib.truth.media_root.join("upload/upload");
    let outside = lib.dir.join("outside-the-root");
    std::fs::rename(&inner, &outside).unwrap();
    std::os::unix::fs::symlink(&outside, &inner).unwrap();
    assert!(
        steps[0].found_at.is_file(),
        "the plain path still leads to it"
    );
    let before = dump_paths(&lib.truth.db_url);
    let journal = lib.dir.join("swap.journal");
    let report = relink::apply(&lib.truth.db_url, &steps, &journal, 4).unwrap();
    assert!(report.applied.is_empty(), "{report:#?}");
    assert_eq!(report.skipped.len(), steps.len());
    for (_, why) in &report.skipped {
        assert!(why.contains("leaves the root"), "{why}");
    }
    assert_eq!(dump_paths(&lib.truth.db_url), before);
}

/// Old bug: with two Immich trees below `--media-root`, the first alphabetically was taken.
#[test]
fn two_immich_trees_under_the_media_root_exit_2_listing_both() {
    let lib = generate(Generation::V2_6, 4, false);
    let both = lib.dir.join("two-trees");
    for (tree, folder) in [("a-old", "upload"), ("b-new", "thumbs")] {
        let d = both.join(tree).join(folder);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(".immich"), b"1").unwrap();
    }
    let out = run_cli(&[
        "scan".into(),
        "--db-url".into(),
        lib.truth.db_url.clone(),
        "--media-root".into(),
        both.to_string_lossy().into_owned(),
    ]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains(&both.join("a-old").display().to_string())
            && said.contains(&both.join("b-new").display().to_string())
            && said.contains("--media-root"),
        "{said}"
    );
}

/// Old bug: `relink --media-location /srv/bogus --apply` relinked every healthy row as
/// `moved`. Now a location that neither `system_metadata` nor the stored paths agree with is
/// an error naming both, and nothing changes.
#[test]
fn a_media_location_the_database_contradicts_is_refused_naming_both() {
    let lib = generate(Generation::V2_6, 12, false);
    let before = dump_paths(&lib.truth.db_url);
    let mut args = vec!["relink".to_string()];
    args.extend(library_flags(&lib));
    args.extend([
        "--media-location".into(),
        "/srv/bogus".into(),
        "--apply".into(),
        "--journal".into(),
        lib.dir.join("bogus.journal").to_string_lossy().into_owned(),
    ]);
    let out = run_cli(&args);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("/srv/bogus")
            && said.contains("MediaLocation in system_metadata is /data")
            && said.contains("under /data"),
        "{said}"
    );
    assert_eq!(dump_paths(&lib.truth.db_url), before);
    // The location the database agrees with is accepted, and nothing healthy is planned.
    let mut args = vec!["relink".to_string()];
    args.extend(library_flags(&lib));
    args.extend(["--media-location".into(), "/data".into()]);
    let out = run_cli(&args);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{said}");
    assert!(said.contains("dry run: 0 rows would be relinked"), "{said}");
}

/// Every report names its roots and where each came from, in JSON and in the table footer.
#[test]
fn the_summary_names_each_root_and_where_it_came_from() {
    let lib = generate(Generation::V2_6, 4, false);
    let parent = lib.truth.media_root.parent().unwrap().to_path_buf();
    let mut args = vec![
        "scan".to_string(),
        "--db-url".into(),
        lib.truth.db_url.clone(),
        "--media-root".into(),
        parent.to_string_lossy().into_owned(),
    ];
    for (c, h) in &lib.truth.maps {
        if c != &lib.truth.container_root {
            args.push("--map".into());
            args.push(format!("{c}={}", h.display()));
        }
    }
    let mut jsonl = args.clone();
    jsonl.extend(["--format".into(), "jsonl".into()]);
    let out = run_cli(&jsonl);
    let (_, summary) = parse_jsonl(&out.stdout);
    let roots = summary["roots"].as_array().expect("a roots field").clone();
    let role = |r: &str| {
        roots
            .iter()
            .find(|x| x["role"] == r)
            .unwrap_or_else(|| panic!("{r} in {roots:#?}"))
            .clone()
    };
    let media = role("media root");
    assert_eq!(
        media["value"],
        lib.truth.media_root.display().to_string(),
        "{roots:#?}"
    );
    assert!(
        media["from"]
            .as_str()
            .unwrap()
            .starts_with("marker search below"),
        "{roots:#?}"
    );
    assert!(media["from"]
        .as_str()
        .unwrap()
        .contains("flag --media-root"));
    let location = role("media location");
    assert_eq!(location["value"], "/data");
    assert!(location["from"].as_str().unwrap().starts_with("database"));
    for (c, _) in &lib.truth.maps {
        if c != &lib.truth.container_root {
            assert_eq!(role(&format!("map {c}"))["from"], "flag --map");
        }
    }
    // The table says the same at its foot.
    let table = run_cli(&args);
    let said = String::from_utf8_lossy(&table.stdout);
    assert!(
        said.contains("roots: media root ") && said.contains("(flag --map)"),
        "{said}"
    );
}

/// Old bug: for a folder restored one level too deep, doctor said to move `<f>/<f>` up one
/// level while relink planned to point the rows into it. Both now give the one repair of
/// `nested_repair`, and relink's plan is that repair.
#[test]
fn doctor_and_relink_give_one_repair_for_a_nested_folder() {
    let lib = generate(Generation::V2_6, 16, false);
    nest_top_folder(&lib.truth.media_root, "upload");
    let mut args = vec!["relink".to_string(), "--include-trashed".into()];
    args.extend(library_flags(&lib));
    args.extend(["--prefix-min".into(), "2".into()]);
    let out = run_cli(&args);
    let relink_said = text(&out);
    assert_eq!(out.status.code(), Some(0), "{relink_said}");
    assert!(
        relink_said.contains("prefix rewrite /data/upload/ -> /data/upload/upload/"),
        "{relink_said}"
    );
    let line = relink_said
        .lines()
        .find(|l| l.starts_with("folder upload was restored one level too deep: "))
        .unwrap_or_else(|| panic!("{relink_said}"));
    let repair = line.split_once("too deep: ").unwrap().1;
    assert!(repair.contains("/upload/upload/") && repair.contains("touch "));

    let mut opts = immich_integrity::doctor::DoctorOptions::new(lib.truth.db_url.clone());
    opts.media_root = Some(lib.truth.media_root.clone());
    let report = immich_integrity::doctor::run(&opts);
    let folder = report
        .checks
        .iter()
        .find(|c| c.name == "folder upload")
        .unwrap();
    let fix = folder.fix.clone().unwrap();
    assert!(!fix.contains("up one level"), "{fix}");
    // The CLI renders the library's option names as flags; the sentence is the same.
    let doctor = run_cli(&[
        "doctor".into(),
        "--db-url".into(),
        lib.truth.db_url.clone(),
        "--media-root".into(),
        lib.truth.media_root.to_string_lossy().into_owned(),
    ]);
    assert!(
        text(&doctor).contains(repair),
        "doctor: {}\nrelink: {repair}",
        text(&doctor)
    );
}

/// Doctor reports an external library whose import path is absent or empty, as the scan does
/// (`mount_missing`).
#[test]
fn doctor_reports_an_unmounted_external_library_as_scan_does() {
    let lib = generate(Generation::V2_6, 24, false);
    let (container, host) = lib
        .truth
        .maps
        .iter()
        .find(|(c, _)| c != &lib.truth.container_root)
        .cloned()
        .expect("the fixture has an external library");
    let mut opts = immich_integrity::doctor::DoctorOptions::new(lib.truth.db_url.clone());
    opts.media_root = Some(lib.truth.media_root.clone());
    opts.maps = lib.truth.maps.clone();
    let libs = |r: &immich_integrity::doctor::Report| -> Vec<immich_integrity::doctor::Check> {
        r.checks
            .iter()
            .filter(|c| c.name.starts_with("library "))
            .cloned()
            .collect()
    };
    let mounted = libs(&immich_integrity::doctor::run(&opts));
    assert!(!mounted.is_empty());
    assert!(
        mounted
            .iter()
            .all(|c| c.status == immich_integrity::doctor::Status::Ok),
        "{mounted:#?}"
    );
    // Unmount it: the mount point stays, empty.
    let away = lib.dir.join("library-unmounted");
    std::fs::rename(&host, &away).unwrap();
    std::fs::create_dir(&host).unwrap();
    let mut findings: Vec<Finding> = Vec::new();
    scan(&options(&lib.truth), &mut findings).unwrap();
    assert!(findings
        .iter()
        .any(|f| f.fault == immich_integrity::Fault::MountMissing
            && f.db_path.as_deref() == Some(container.as_str())));
    let unmounted = libs(&immich_integrity::doctor::run(&opts));
    let failed: Vec<_> = unmounted
        .iter()
        .filter(|c| c.status == immich_integrity::doctor::Status::Fail)
        .collect();
    assert_eq!(failed.len(), 1, "{unmounted:#?}");
    assert!(
        failed[0].message.contains("mount_missing")
            && failed[0].message.contains(&host.display().to_string())
            && failed[0].message.contains("empty"),
        "{failed:#?}"
    );
}
