//! End-to-end checks of the fixture generator against the local PostgreSQL.

use std::collections::HashSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;

use immich_fixtures::{
    generate, Fixture, FixtureSpec, Generation, GroundTruth, IntegrityReportRow,
};
use sha1::{Digest, Sha1};
use sqlx::{Connection, PgConnection, Row};

fn base_dir() -> PathBuf {
    let d = std::env::temp_dir().join("immich-fixtures-tests");
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn sha1(b: &[u8]) -> Vec<u8> {
    Sha1::digest(b).to_vec()
}

struct FileRow {
    asset_id: String,
    kind: String,
    path: String,
    trashed: bool,
    library: Option<String>,
    checksum: Vec<u8>,
    size: Option<i64>,
}

async fn columns(conn: &mut PgConnection, table: &str) -> HashSet<String> {
    sqlx::query("SELECT column_name::text FROM information_schema.columns WHERE table_name = $1")
        .bind(table)
        .fetch_all(conn)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.get::<String, _>(0))
        .collect()
}

async fn file_rows(conn: &mut PgConnection, g: Generation) -> Vec<FileRow> {
    let t = g.tables();
    let cols = columns(conn, t.assets).await;
    let sel = format!(
        "a.id::text, a.\"deletedAt\" IS NOT NULL, a.\"libraryId\"::text, a.checksum, e.\"fileSizeInByte\" \
         FROM \"{}\" a JOIN \"{}\" e ON e.\"assetId\" = a.id",
        t.assets, t.exif
    );
    let mut queries = vec![format!("SELECT 'original', a.\"originalPath\", {sel}")];
    for (col, kind) in [
        ("previewPath", "preview"),
        ("thumbnailPath", "thumbnail"),
        ("encodedVideoPath", "encoded_video"),
        ("sidecarPath", "sidecar"),
    ] {
        if cols.contains(col) {
            queries.push(format!(
                "SELECT '{kind}', a.\"{col}\", {sel} WHERE a.\"{col}\" IS NOT NULL AND a.\"{col}\" <> ''"
            ));
        }
    }
    if let Some(af) = t.asset_files {
        queries.push(format!(
            "SELECT f.type::text, f.path, {sel} JOIN \"{af}\" f ON f.\"assetId\" = a.id"
        ));
    }
    let mut out = Vec::new();
    for q in queries {
        for r in sqlx::query(&q).fetch_all(&mut *conn).await.unwrap() {
            out.push(FileRow {
                kind: r.get(0),
                path: r.get(1),
                asset_id: r.get(2),
                trashed: r.get(3),
                library: r.get(4),
                checksum: r.get(5),
                size: r.get(6),
            });
        }
    }
    out
}

async fn check(fx: &Fixture, spec: &FixtureSpec) {
    let truth: GroundTruth =
        serde_json::from_slice(&std::fs::read(&fx.truth_path).unwrap()).unwrap();
    assert_eq!(truth.faults, fx.truth.faults);
    assert_eq!(truth.maps, fx.maps);
    assert_eq!(fx.as_user, "1000:1000");
    let g = spec.generation;
    let t = g.tables();
    let mut conn = PgConnection::connect(&fx.db_url).await.unwrap();

    // Row counts.
    let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM \"{}\"", t.assets))
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(n as u64, truth.asset_rows);
    let ne: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM \"{}\"", t.exif))
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(ne, n);
    // v3.2 has no person.id: a person is named by its personGroupId (as in the findings).
    let person_id = if g.person_groups() {
        "\"personGroupId\""
    } else {
        "id"
    };
    let persons: Vec<(String, String)> = sqlx::query_as(&format!(
        "SELECT {person_id}::text, \"thumbnailPath\" FROM person"
    ))
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let users: Vec<(String, String)> = sqlx::query_as(&format!(
        "SELECT id::text, \"profileImagePath\" FROM \"{}\"",
        t.users
    ))
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(users.len(), spec.users);
    let rows = file_rows(&mut conn, g).await;
    let live = rows.iter().filter(|r| !r.trashed).count() + persons.len() + users.len();
    assert_eq!(live as u64, truth.files_referenced);
    let ml: Option<serde_json::Value> = sqlx::query_scalar(&format!(
        "SELECT value FROM \"{}\" WHERE key = 'MediaLocation'",
        t.system_metadata
    ))
    .fetch_optional(&mut conn)
    .await
    .unwrap();
    if g.relative_paths() {
        assert!(ml.is_none());
        assert!(rows
            .iter()
            .filter(|r| r.library.is_none())
            .all(|r| r.path.starts_with("upload/") || r.path.starts_with("/data/upload/")));
    } else {
        assert_eq!(ml.unwrap()["location"], "/data");
    }
    let _ = conn.close().await;

    // Every fault as claimed.
    let mut faulty: HashSet<(String, String)> = HashSet::new();
    let mut absent_roots = Vec::new();
    for f in truth.faults.iter().chain(truth.trashed_faults.iter()) {
        if let (Some(a), Some(k)) = (&f.asset_id, &f.file) {
            assert!(
                faulty.insert((a.clone(), k.clone())),
                "two faults on {a} {k}"
            );
        }
        let host = f.db_path.as_deref().and_then(|p| truth.map_path(p));
        match f.fault.as_str() {
            "moved" => {
                let at = f.found_at.as_ref().unwrap();
                assert!(at.is_file(), "moved file missing at {}", at.display());
                if let Some(h) = &host {
                    assert!(
                        std::fs::symlink_metadata(h).is_err(),
                        "{} still there",
                        h.display()
                    );
                }
            }
            "missing" => {
                assert!(f.found_at.is_none());
                let h = host.unwrap();
                assert!(
                    std::fs::symlink_metadata(&h).is_err(),
                    "{} exists",
                    h.display()
                );
            }
            "permission_denied" => {
                let h = host.unwrap();
                let md = std::fs::symlink_metadata(&h).unwrap();
                let parent = std::fs::metadata(h.parent().unwrap()).unwrap();
                let mode = md.permissions().mode() & 0o777;
                assert!(
                    mode == 0
                        || (md.uid() == 4242 && mode == 0o600)
                        || (parent.uid() == 4242 && parent.permissions().mode() & 0o777 == 0o700),
                    "{} not restricted",
                    h.display()
                );
            }
            "not_a_file" => assert!(host.unwrap().is_dir()),
            "empty" => assert_eq!(std::fs::metadata(host.unwrap()).unwrap().len(), 0),
            "outside_root" => {
                let p = f.db_path.as_deref().unwrap();
                let h = host.unwrap();
                assert!(
                    p.contains("/../")
                        || std::fs::symlink_metadata(&h)
                            .unwrap()
                            .file_type()
                            .is_symlink()
                );
            }
            "mount_missing" => {
                let root = f.root.as_ref().unwrap();
                assert!(!root.exists());
                assert!((3..=5).contains(&f.affected.unwrap()));
                absent_roots.push(root.clone());
            }
            other => panic!("unexpected fault kind {other}"),
        }
    }
    if spec.faults {
        let kinds: HashSet<&str> = truth.faults.iter().map(|f| f.fault.as_str()).collect();
        for k in [
            "missing",
            "moved",
            "permission_denied",
            "not_a_file",
            "empty",
            "outside_root",
            "mount_missing",
        ] {
            assert!(kinds.contains(k), "no {k} fault");
        }
        assert_eq!(truth.trashed_faults.len(), 1);
        let moved = truth.faults.iter().filter(|f| f.fault == "moved").count();
        assert_eq!(moved, 3 + spec.users);
    } else {
        assert!(truth.faults.is_empty() && truth.trashed_faults.is_empty());
    }

    // Every other file healthy, checksums and sizes right.
    let mut checked = 0;
    for r in &rows {
        if faulty.contains(&(r.asset_id.clone(), r.kind.clone())) {
            continue;
        }
        let h = truth.map_path(&r.path).expect("unmapped path");
        if r.kind == "original" && absent_roots.iter().any(|root| h.starts_with(root)) {
            continue;
        }
        let md = std::fs::symlink_metadata(&h).unwrap_or_else(|e| panic!("{}: {e}", h.display()));
        assert!(md.is_file() && md.len() > 0, "{}", h.display());
        assert_eq!(md.permissions().mode() & 0o777, 0o644, "{}", h.display());
        if r.kind == "original" {
            let bytes = std::fs::read(&h).unwrap();
            assert_eq!(Some(bytes.len() as i64), r.size);
            if r.library.is_some() {
                assert_eq!(r.checksum, sha1(format!("path:{}", r.path).as_bytes()));
            } else {
                assert_eq!(r.checksum, sha1(&bytes), "{}", h.display());
            }
            checked += 1;
        }
    }
    assert!(checked >= spec.assets.min(40) - 20);
    for (id, p) in persons.iter().chain(users.iter()) {
        if faulty.iter().any(|(a, _)| a == id) {
            continue;
        }
        assert!(truth.map_path(p).unwrap().is_file(), "{p}");
    }

    // Markers.
    for folder in ["upload", "library", "thumbs", "encoded-video", "backups"] {
        assert!(fx.media_root.join(folder).join(".immich").is_file());
    }
    if spec.faults {
        assert!(!fx.media_root.join("profile/.immich").exists());
        assert!(fx.media_root.join("profile/profile/.immich").is_file());
        let entries: Vec<_> = std::fs::read_dir(fx.media_root.join("profile"))
            .unwrap()
            .collect();
        assert_eq!(entries.len(), 1);
    } else {
        assert!(fx.media_root.join("profile/.immich").is_file());
    }
}

async fn scalar_i64(conn: &mut PgConnection, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn column_type(conn: &mut PgConnection, table: &str, column: &str) -> Option<String> {
    sqlx::query_scalar(
        "SELECT data_type::text FROM information_schema.columns \
         WHERE table_name = $1 AND column_name = $2",
    )
    .bind(table)
    .bind(column)
    .fetch_optional(conn)
    .await
    .unwrap()
}

/// The parts only Immich's own schema (v2.6+) has: its DDL, the columns it requires, the
/// extra rows (faces, job status, stack, edit, version) and the integrity_report rows.
async fn check_upstream(fx: &Fixture, spec: &FixtureSpec) {
    let g = spec.generation;
    let truth = &fx.truth;
    let mut conn = PgConnection::connect(&fx.db_url).await.unwrap();
    let c = &mut conn;

    // Immich's DDL ran: its functions, triggers and migration ledger are there.
    assert!(scalar_i64(c, "SELECT count(*) FROM kysely_migrations").await >= 11);
    assert!(
        scalar_i64(
            c,
            "SELECT count(*) FROM pg_trigger WHERE tgname = 'asset_edit_insert'"
        )
        .await
            == 1
    );
    let versions: Vec<String> = sqlx::query_scalar("SELECT version FROM version_history")
        .fetch_all(&mut *c)
        .await
        .unwrap();
    assert_eq!(versions, vec![g.release().unwrap().to_string()]);
    assert_eq!(truth.immich_version.as_deref(), g.release());
    assert!(!versions[0].starts_with('v'));

    // Generation-specific columns.
    let dur = column_type(c, "asset", "duration").await.unwrap();
    let algo = column_type(c, "asset", "checksumAlgorithm").await;
    let device = column_type(c, "asset", "deviceAssetId").await;
    match g {
        Generation::V2_6 => {
            assert_eq!(dur, "character varying");
            assert!(algo.is_none() && device.is_some());
        }
        _ => {
            assert_eq!(dur, "integer");
            assert!(algo.is_some() && device.is_none());
            // sha1 for uploads, sha1-path for external-library assets.
            let wrong = scalar_i64(
                c,
                "SELECT count(*) FROM asset WHERE \"checksumAlgorithm\"::text <> \
                 CASE WHEN \"libraryId\" IS NULL THEN 'sha1' ELSE 'sha1-path' END",
            )
            .await;
            assert_eq!(wrong, 0);
            assert!(scalar_i64(c, "SELECT count(*) FROM asset WHERE duration = 500").await > 0);
        }
    }
    assert_eq!(
        scalar_i64(c, "SELECT count(*) FROM asset_job_status").await as u64,
        truth.asset_rows
    );

    // Persons and their faces; on v3.2 keyed by (ownerId, personGroupId).
    let persons = scalar_i64(c, "SELECT count(*) FROM person").await;
    assert_eq!(persons as usize, 2 * spec.users);
    assert_eq!(
        scalar_i64(c, "SELECT count(*) FROM asset_face").await,
        persons
    );
    assert_eq!(
        scalar_i64(
            c,
            "SELECT count(*) FROM person WHERE \"faceAssetId\" IS NULL"
        )
        .await,
        0
    );
    let pid_col = column_type(c, "person", "id").await;
    if g.person_groups() {
        assert!(pid_col.is_none(), "v3.2 person has no id");
        assert_eq!(
            scalar_i64(c, "SELECT count(*) FROM person_group").await,
            persons
        );
        assert_eq!(
            scalar_i64(c, "SELECT count(DISTINCT \"clusterGroupId\") FROM \"user\"").await as usize,
            spec.users
        );
        // Each person's group is in its owner's cluster group, and its face names the group.
        let wrong = scalar_i64(
            c,
            "SELECT count(*) FROM person p JOIN person_group pg ON pg.id = p.\"personGroupId\" \
             JOIN \"user\" u ON u.id = p.\"ownerId\" JOIN asset_face f ON f.id = p.\"faceAssetId\" \
             JOIN asset a ON a.id = f.\"assetId\" \
             WHERE pg.\"clusterGroupId\" <> u.\"clusterGroupId\" \
                OR f.\"personGroupId\" <> p.\"personGroupId\" OR a.\"ownerId\" <> p.\"ownerId\"",
        )
        .await;
        assert_eq!(wrong, 0);
    } else {
        assert!(pid_col.is_some());
        let wrong = scalar_i64(
            c,
            "SELECT count(*) FROM person p JOIN asset_face f ON f.id = p.\"faceAssetId\" \
             JOIN asset a ON a.id = f.\"assetId\" \
             WHERE f.\"personId\" <> p.id OR a.\"ownerId\" <> p.\"ownerId\"",
        )
        .await;
        assert_eq!(wrong, 0);
    }
    // Every person-thumbnail fault names an existing person by (id, owner).
    let key = if g.person_groups() {
        "\"personGroupId\""
    } else {
        "id"
    };
    for f in truth
        .faults
        .iter()
        .filter(|f| f.file.as_deref() == Some("person_thumbnail"))
    {
        let n: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM person WHERE {key} = $1::uuid AND \"ownerId\" = $2::uuid \
             AND \"thumbnailPath\" = $3"
        ))
        .bind(f.asset_id.as_deref().unwrap())
        .bind(f.owner_id.as_deref().unwrap())
        .bind(f.db_path.as_deref().unwrap())
        .fetch_one(&mut *c)
        .await
        .unwrap();
        assert_eq!(n, 1, "{f:?}");
    }

    // Faults touch none of the stack, the edit or the edited thumbnail.
    let faulty: HashSet<&str> = truth
        .faults
        .iter()
        .chain(&truth.trashed_faults)
        .filter_map(|f| f.asset_id.as_deref())
        .collect();
    let stacked: Vec<(String, bool)> = sqlx::query_as(
        "SELECT a.id::text, s.\"primaryAssetId\" = a.id FROM asset a \
         JOIN stack s ON s.id = a.\"stackId\" ORDER BY 2 DESC",
    )
    .fetch_all(&mut *c)
    .await
    .unwrap();
    assert_eq!(scalar_i64(c, "SELECT count(*) FROM stack").await, 1);
    assert_eq!(stacked.len(), 2);
    assert!(stacked[0].1 && !stacked[1].1);
    assert!(stacked.iter().all(|(id, _)| !faulty.contains(id.as_str())));
    let edited = truth.edited_asset.clone().expect("an edited asset");
    assert!(!faulty.contains(edited.as_str()));
    let flagged: Vec<String> = sqlx::query_scalar("SELECT id::text FROM asset WHERE \"isEdited\"")
        .fetch_all(&mut *c)
        .await
        .unwrap();
    assert_eq!(
        flagged,
        vec![edited.clone()],
        "the asset_edit trigger set isEdited"
    );
    let edited_files: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT \"assetId\"::text, type::text, path FROM asset_file WHERE \"isEdited\"",
    )
    .fetch_all(&mut *c)
    .await
    .unwrap();
    assert_eq!(edited_files.len(), 1);
    let (asset, kind, path) = &edited_files[0];
    assert_eq!((asset, kind.as_str()), (&edited, "thumbnail"));
    assert!(path.ends_with("_thumbnail_edited.webp"), "{path}");
    let host = truth.map_path(path).unwrap();
    let md = std::fs::metadata(&host).unwrap();
    assert!(md.is_file() && md.len() > 0 && md.permissions().mode() & 0o777 == 0o644);

    // integrity_report (v3.0+): exactly the rows the truth lists.
    let has_table: bool =
        sqlx::query_scalar("SELECT to_regclass('public.integrity_report') IS NOT NULL")
            .fetch_one(&mut *c)
            .await
            .unwrap();
    assert_eq!(has_table, g.has_integrity_report());
    if !g.has_integrity_report() {
        assert!(truth.integrity_reports.is_empty());
        let _ = conn.close().await;
        return;
    }
    let mut rows: Vec<IntegrityReportRow> = sqlx::query_as::<_, (String, String, String, Option<String>, Option<String>)>(
        "SELECT id::text, type, path, \"assetId\"::text, \"fileAssetId\"::text FROM integrity_report",
    )
    .fetch_all(&mut *c)
    .await
    .unwrap()
    .into_iter()
    .map(|(id, kind, path, asset_id, file_asset_id)| IntegrityReportRow {
        id,
        kind,
        path,
        asset_id,
        file_asset_id,
    })
    .collect();
    let mut want = truth.integrity_reports.clone();
    rows.sort_by(|a, b| a.id.cmp(&b.id));
    want.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(rows, want);
    for r in &rows {
        // Immich's ids are UUID v7.
        assert_eq!(uuid::Uuid::parse_str(&r.id).unwrap().get_version_num(), 7);
    }
    let kinds: Vec<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
    let count = |k: &str| kinds.iter().filter(|x| **x == k).count();
    assert_eq!(count("checksum_mismatch"), 1);
    if spec.faults {
        assert_eq!((count("missing_file"), count("untracked_file")), (2, 1));
        for r in &rows {
            match (r.kind.as_str(), &r.asset_id, &r.file_asset_id) {
                ("missing_file", Some(a), None) => assert!(truth.faults.iter().any(|f| {
                    f.asset_id.as_ref() == Some(a)
                        && f.file.as_deref() == Some("original")
                        && f.fault == "missing"
                        && f.db_path.as_ref() == Some(&r.path)
                })),
                ("missing_file", None, Some(file)) => {
                    let (asset, kind, path): (String, String, String) = sqlx::query_as(
                        "SELECT \"assetId\"::text, type::text, path FROM asset_file WHERE id = $1::uuid",
                    )
                    .bind(file)
                    .fetch_one(&mut *c)
                    .await
                    .unwrap();
                    assert_eq!((kind.as_str(), &path), ("preview", &r.path));
                    assert!(truth.faults.iter().any(|f| {
                        f.asset_id.as_ref() == Some(&asset)
                            && f.file.as_deref() == Some("preview")
                            && f.fault == "missing"
                    }));
                }
                ("untracked_file", None, None) => {
                    assert!(truth.map_path(&r.path).unwrap().is_file(), "{}", r.path);
                    let referenced = scalar_i64(
                        c,
                        &format!(
                            "SELECT (SELECT count(*) FROM asset WHERE \"originalPath\" = '{p}') \
                             + (SELECT count(*) FROM asset_file WHERE path = '{p}')",
                            p = r.path
                        ),
                    )
                    .await;
                    assert_eq!(referenced, 0);
                }
                ("checksum_mismatch", Some(a), None) => {
                    let p: String = sqlx::query_scalar(
                        "SELECT \"originalPath\" FROM asset WHERE id = $1::uuid",
                    )
                    .bind(a)
                    .fetch_one(&mut *c)
                    .await
                    .unwrap();
                    assert_eq!(p, r.path);
                }
                other => panic!("unexpected integrity_report row {other:?}"),
            }
        }
    } else {
        assert_eq!(rows.len(), 1);
    }
    let _ = conn.close().await;
}

/// v3.0+: deleting the broken preview's asset_file row silently deletes its integrity_report
/// row (ON DELETE CASCADE), and only that one.
async fn check_report_cascade(fx: &Fixture) {
    let mut conn = PgConnection::connect(&fx.db_url).await.unwrap();
    let r = fx
        .truth
        .integrity_reports
        .iter()
        .find(|r| r.file_asset_id.is_some())
        .expect("a missing_file row by fileAssetId");
    let before = scalar_i64(&mut conn, "SELECT count(*) FROM integrity_report").await;
    let deleted = sqlx::query("DELETE FROM asset_file WHERE id = $1::uuid")
        .bind(r.file_asset_id.as_deref().unwrap())
        .execute(&mut conn)
        .await
        .unwrap()
        .rows_affected();
    assert_eq!(deleted, 1);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM integrity_report WHERE id = $1::uuid")
        .bind(&r.id)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, 0, "the report row went with its asset_file row");
    let after = scalar_i64(&mut conn, "SELECT count(*) FROM integrity_report").await;
    assert_eq!(after, before - 1);
    let _ = conn.close().await;
}

async fn run(generation: Generation, faults: bool) {
    let spec = FixtureSpec {
        generation,
        assets: 40,
        users: 3,
        faults,
        seed: 7,
        content_faults: false,
        original_bytes: 0,
    };
    let fx = generate(&spec, &base_dir()).await.expect("generate");
    check(&fx, &spec).await;
    if generation.upstream_ddl().is_some() {
        check_upstream(&fx, &spec).await;
        if generation.has_integrity_report() && faults {
            check_report_cascade(&fx).await;
        }
    } else {
        assert!(fx.truth.integrity_reports.is_empty() && fx.truth.edited_asset.is_none());
        assert!(fx.truth.immich_version.is_none());
    }
    fx.drop_db().await.unwrap();
    fx.remove_dir().unwrap();
    assert!(!fx.dir.exists());
    let mut conn = PgConnection::connect(&immich_fixtures::base_pg_url())
        .await
        .unwrap();
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(&fx.db_name)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn v1_112_with_faults() {
    run(Generation::V1_112, true).await;
}

#[tokio::test]
async fn v1_135_with_faults() {
    run(Generation::V1_135, true).await;
}

#[tokio::test]
async fn v1_137_with_faults() {
    run(Generation::V1_137, true).await;
}

#[tokio::test]
async fn v2_6_with_faults() {
    run(Generation::V2_6, true).await;
}

#[tokio::test]
async fn v3_0_with_faults() {
    run(Generation::V3_0, true).await;
}

#[tokio::test]
async fn v3_2_with_faults() {
    run(Generation::V3_2, true).await;
}

#[tokio::test]
async fn clean_libraries() {
    run(Generation::V1_112, false).await;
    run(Generation::V2_6, false).await;
    run(Generation::V3_2, false).await;
}

/// With the content faults, the checksum_mismatch report names the original whose scan was
/// zeroed (the hash-level checksum_mismatch fault), not a stale row.
#[tokio::test]
async fn v3_0_checksum_report_names_the_damaged_original() {
    let spec = FixtureSpec {
        generation: Generation::V3_0,
        assets: 40,
        users: 2,
        faults: true,
        seed: 11,
        content_faults: true,
        original_bytes: 0,
    };
    let fx = generate(&spec, &base_dir()).await.expect("generate");
    let r = fx
        .truth
        .integrity_reports
        .iter()
        .find(|r| r.kind == "checksum_mismatch")
        .expect("a checksum_mismatch row");
    let f = fx
        .truth
        .faults
        .iter()
        .find(|f| f.fault == "checksum_mismatch")
        .expect("a checksum_mismatch fault");
    assert_eq!(r.asset_id, f.asset_id);
    assert_eq!(Some(&r.path), f.db_path.as_ref());
    assert_eq!(f.level, "hash");
    fx.destroy().await.unwrap();
}

#[tokio::test]
async fn unreachable_postgres_is_a_clear_error() {
    // Port 1 is closed: the error must name the URL (FIXTURE_PG_URL is not changed here because
    // the other tests of this binary run in parallel and read it).
    let url = "postgres://postgres@127.0.0.1:1/postgres";
    let err = immich_fixtures::drop_database(url, "imf_nothing")
        .await
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("PostgreSQL is not reachable at postgres://postgres@127.0.0.1:1/postgres"),
        "{msg}"
    );
}
