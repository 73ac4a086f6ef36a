//! `orphans` on generated libraries with planted untracked files: it finds exactly those, skips
//! markers, backups and temporary files, reports a copy of a missing original as that row's
//! moved candidate, and gives the same answer through a symlinked root and for rows stored under
//! a media prefix the server no longer uses.

mod common;

use common::*;
use immich_fixtures::Generation;
use immich_integrity::orphans::{find_orphans, Orphan, OrphanReport};
use immich_integrity::FileKind;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn write(p: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

/// (id, stored original path) of one upload image with a recorded size and content checksum.
fn one_upload_original(lib: &Lib) -> (String, String) {
    let t = lib.truth.generation.tables();
    let sql = format!(
        "SELECT a.id::text, a.\"originalPath\" FROM \"{}\" a JOIN \"{}\" e ON e.\"assetId\" = a.id \
         WHERE a.type = 'IMAGE' AND a.\"libraryId\" IS NULL AND a.\"deletedAt\" IS NULL \
         AND e.\"fileSizeInByte\" IS NOT NULL AND a.\"originalPath\" LIKE $1 ORDER BY a.id LIMIT 1",
        t.assets, t.exif
    );
    runtime().block_on(async {
        let mut c = connect(&lib.truth.db_url).await;
        sqlx::query_as(&sql)
            .bind(format!("{}/upload/%", lib.truth.container_root))
            .fetch_one(&mut c)
            .await
            .unwrap()
    })
}

/// What was planted, and the row whose original was moved to `moved_to`.
struct Planted {
    untracked: BTreeSet<PathBuf>,
    moved_to: PathBuf,
    moved_row: String,
}

fn plant(lib: &Lib) -> Planted {
    let m = &lib.truth.media_root;
    let mut untracked = BTreeSet::new();
    for rel in [
        "upload/stray-owner/ab/cd/untracked.jpg",
        "thumbs/stray-owner/ab/cd/untracked_preview.jpeg",
        "encoded-video/stray-owner/ab/cd/untracked.mp4",
        "upload/loose-at-top.heic",
    ] {
        write(&m.join(rel), format!("planted {rel}").as_bytes());
        untracked.insert(m.join(rel));
    }
    // Excluded: a marker deeper down, a database backup and a temporary file.
    write(&m.join("thumbs/stray-owner/.immich"), b"1700000000000");
    write(
        &m.join("backups/immich-db-backup-20250101T000000-v1.137.0-pg16.sql.gz"),
        b"gz",
    );
    write(&m.join("backups/stray.jpg"), b"not walked");
    write(
        &m.join("upload/stray-owner/half-written.jpg.tmp"),
        b"partial",
    );
    // An original copied elsewhere (a manual restore), then gone from where its row says.
    let (id, stored) = one_upload_original(lib);
    let host = lib.truth.map_path(&stored).unwrap();
    let moved_to = m.join("upload/restored").join(host.file_name().unwrap());
    std::fs::create_dir_all(moved_to.parent().unwrap()).unwrap();
    std::fs::copy(&host, &moved_to).unwrap();
    std::fs::remove_file(&host).unwrap();
    untracked.insert(moved_to.clone());
    Planted {
        untracked,
        moved_to,
        moved_row: id,
    }
}

fn paths(r: &OrphanReport) -> BTreeSet<PathBuf> {
    r.orphans.iter().map(|o| o.path.clone()).collect()
}

fn check_planted(r: &OrphanReport, p: &Planted, generation: Generation) {
    assert_eq!(paths(r), p.untracked, "exactly the planted files");
    let with_candidate: Vec<&Orphan> = r
        .orphans
        .iter()
        .filter(|o| o.moved_candidate.is_some())
        .collect();
    assert_eq!(with_candidate.len(), 1, "{:#?}", r.orphans);
    let o = with_candidate[0];
    assert_eq!(o.path, p.moved_to);
    let c = o.moved_candidate.as_ref().unwrap();
    assert_eq!(c.row_id, p.moved_row);
    assert_eq!(c.file, FileKind::Original);
    let name = p.moved_to.file_name().unwrap().to_string_lossy();
    let root = generation.container_root();
    assert_eq!(c.relink_to, format!("{root}/upload/restored/{name}"));
    assert!(c.detail.contains("sha1"), "{}", c.detail);
    assert_eq!(r.summary.moved_candidates, 1);
    assert!(r.summary.excluded_markers >= 6, "{:?}", r.summary);
    assert_eq!(r.summary.excluded_temporary, 1);
}

fn planted_generation(generation: Generation) {
    let lib = generate(generation, 30, false);
    let clean = find_orphans(&options(&lib.truth)).unwrap();
    assert!(clean.orphans.is_empty(), "{:#?}", clean.orphans);
    assert_eq!(
        clean.summary.files_walked, clean.summary.referenced_files,
        "every referenced file under the media root was walked and seen"
    );

    let planted = plant(&lib);
    let report = find_orphans(&options(&lib.truth)).unwrap();
    check_planted(&report, &planted, generation);

    // The same library through a symlink to its media root.
    let link = lib.dir.join("media-link");
    std::os::unix::fs::symlink(&lib.truth.media_root, &link).unwrap();
    let mut o = options(&lib.truth);
    o.media_root = Some(link);
    let via_link = find_orphans(&o).unwrap();
    check_planted(&via_link, &planted, generation);
    assert_eq!(via_link.orphans, report.orphans);
}

#[test]
fn planted_files_v1_112() {
    planted_generation(Generation::V1_112);
}

#[test]
fn planted_files_v1_137() {
    planted_generation(Generation::V1_137);
}

#[test]
fn planted_files_v2_6() {
    planted_generation(Generation::V2_6);
}

#[test]
fn planted_files_v3_0() {
    planted_generation(Generation::V3_0);
}

#[test]
fn planted_files_v3_2() {
    planted_generation(Generation::V3_2);
}

/// Rows stored under `/usr/src/app/upload` while the media location is `/data`: the files are
/// the same ones, so nothing is an orphan (Immich's own report called them all orphans).
#[test]
fn stale_prefix_rows_make_no_orphans() {
    let lib = generate(Generation::V1_137, 30, false);
    runtime().block_on(async {
        let mut c = connect(&lib.truth.db_url).await;
        let cols: Vec<(String, String)> = sqlx::query_as(
            "SELECT table_name::text, column_name::text FROM information_schema.columns \
             WHERE table_schema = 'public' AND column_name IN \
             ('originalPath','path','thumbnailPath','profileImagePath','encodedVideoPath','sidecarPath')",
        )
        .fetch_all(&mut c)
        .await
        .unwrap();
        let mut changed = 0;
        for (t, col) in cols {
            let sql = format!(
                "UPDATE \"{t}\" SET \"{col}\" = '/usr/src/app/upload/' || substr(\"{col}\", 7) \
                 WHERE \"{col}\" LIKE '/data/%'"
            );
            changed += sqlx::query(&sql)
                .execute(&mut c)
                .await
                .unwrap()
                .rows_affected();
        }
        assert!(changed > 50, "{changed}");
    });
    let r = find_orphans(&options(&lib.truth)).unwrap();
    assert!(r.orphans.is_empty(), "{:#?}", r.orphans);
    assert!(r.summary.referenced_files > 50);
    assert_eq!(r.summary.files_walked, r.summary.referenced_files);
}

/// The CLI: JSON Lines with a summary line; exit 1 with orphans, 0 without, 2 on bad input.
#[test]
fn cli_orphans_exit_codes_and_jsonl() {
    use std::process::Command;
    let lib = generate(Generation::V2_6, 20, false);
    let run = |extra: &[&str]| {
        let mut args = vec!["orphans".to_string()];
        args.extend(library_flags(&lib));
        args.extend(extra.iter().map(|s| s.to_string()));
        Command::new(binary()).args(&args).output().unwrap()
    };
    let clean = run(&["--format", "jsonl"]);
    assert_eq!(
        clean.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&clean.stderr)
    );
    let planted = plant(&lib);
    let out = run(&["--format", "jsonl"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let (summary, orphans) = lines.split_last().unwrap();
    assert_eq!(summary["summary"], true);
    assert_eq!(summary["orphans"], planted.untracked.len() as u64);
    let found: BTreeSet<PathBuf> = orphans
        .iter()
        .map(|o| PathBuf::from(o["path"].as_str().unwrap()))
        .collect();
    assert_eq!(found, planted.untracked);
    let moved: Vec<_> = orphans
        .iter()
        .filter(|o| o.get("moved_candidate").is_some())
        .collect();
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0]["moved_candidate"]["row_id"], planted.moved_row);

    let table = run(&[]);
    assert_eq!(table.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&table.stdout).contains("moved original of"));

    // The orphans report drives a relink like a scan report: the matched orphan is relinked,
    // the other orphans are ignored, and a rescan no longer finds the original missing.
    let report = lib.dir.join("orphans.jsonl");
    std::fs::write(&report, &text).unwrap();
    let mut relink = vec!["relink".to_string()];
    relink.extend(library_flags(&lib));
    relink.extend([
        "--from".to_string(),
        report.to_string_lossy().into_owned(),
        "--apply".into(),
        "--journal".into(),
        lib.dir
            .join("orphans.journal")
            .to_string_lossy()
            .into_owned(),
    ]);
    let applied = Command::new(binary()).args(&relink).output().unwrap();
    let said = String::from_utf8_lossy(&applied.stdout);
    assert_eq!(applied.status.code(), Some(0), "{said}");
    assert!(said.contains("relinked 1 rows"), "{said}");
    let mut findings: Vec<immich_integrity::Finding> = Vec::new();
    immich_integrity::scan(&options(&lib.truth), &mut findings).unwrap();
    assert!(
        !findings
            .iter()
            .any(|f| f.asset_id.as_deref() == Some(planted.moved_row.as_str())),
        "{findings:?}"
    );

    let bad = Command::new(binary())
        .args(["orphans", "--db-url", &lib.truth.db_url, "--media-root"])
        .arg(lib.dir.join("no-such-folder"))
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}
