//! End-to-end checks of the fixture generator against the local PostgreSQL.

use std::collections::HashSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;

use immich_fixtures::{generate, Fixture, FixtureSpec, Generation, GroundTruth};
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
    let persons: Vec<(String, String)> =
        sqlx::query_as("SELECT id::text, \"thumbnailPath\" FROM person")
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

async fn run(generation: Generation, faults: bool) {
    let spec = FixtureSpec {
        generation,
        assets: 40,
        users: 3,
        faults,
        seed: 7,
        content_faults: false,
    };
    let fx = generate(&spec, &base_dir()).await.expect("generate");
    check(&fx, &spec).await;
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
async fn clean_libraries() {
    run(Generation::V1_112, false).await;
    run(Generation::V2_6, false).await;
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
