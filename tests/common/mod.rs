//! Shared helpers for the integration tests: generated fixtures on the real PostgreSQL.
#![allow(dead_code)]

use immich_fixtures::{Fixture, FixtureSpec, Generation, GroundTruth};
use immich_integrity::{Finding, Identity, ScanOptions};
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

/// A fixture that drops its database and folder when the test ends, pass or fail.
pub struct Lib {
    pub fx: Fixture,
    rt: tokio::runtime::Runtime,
}

impl Drop for Lib {
    fn drop(&mut self) {
        let _ = self.rt.block_on(self.fx.destroy());
    }
}

impl std::ops::Deref for Lib {
    type Target = Fixture;
    fn deref(&self) -> &Fixture {
        &self.fx
    }
}

/// A base folder every uid can enter, so permission checks see only the injected faults.
pub fn base_dir() -> PathBuf {
    let d = std::env::temp_dir().join("immich-integrity-tests");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
    d
}

/// A single-threaded runtime for the few async calls a test makes itself.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A connection of the test's own (to arrange rows, take locks, or dump tables).
pub async fn connect(db_url: &str) -> sqlx::PgConnection {
    use sqlx::Connection;
    sqlx::PgConnection::connect(db_url)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL at {db_url}: {e}"))
}

pub fn generate(generation: Generation, assets: usize, faults: bool) -> Lib {
    generate_spec(FixtureSpec {
        generation,
        assets,
        users: 3,
        faults,
        seed: 7,
        content_faults: false,
        original_bytes: 0,
    })
}

/// A fixture with the exists-level faults and the content faults (`truth_at` each level).
pub fn generate_with_content_faults(generation: Generation, assets: usize) -> Lib {
    generate_spec(FixtureSpec {
        generation,
        assets,
        users: 3,
        faults: true,
        seed: 7,
        content_faults: true,
        original_bytes: 0,
    })
}

pub fn generate_spec(spec: FixtureSpec) -> Lib {
    let rt = runtime();
    let fx = rt
        .block_on(immich_fixtures::generate(&spec, &base_dir()))
        .unwrap_or_else(|e| panic!("fixture generation needs PostgreSQL at 127.0.0.1:5432: {e:#}"));
    Lib { fx, rt }
}

/// Scan options that map every root the ground truth names, for the server's uid.
pub fn options(truth: &GroundTruth) -> ScanOptions {
    let mut o = ScanOptions::new(truth.db_url.clone());
    o.media_root = Some(truth.media_root.clone());
    o.maps = truth
        .maps
        .iter()
        .filter(|(c, _)| c != &truth.container_root)
        .cloned()
        .collect();
    o.as_user = Some(Identity::parse(&truth.as_user).unwrap());
    o.jobs = 2;
    o.source.batch_size = 16; // many pages even on small fixtures
    o
}

/// The comparable identity of a finding: who, which file, which fault, where it was found.
pub type Key = (
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    Option<u64>,
);

pub fn finding_keys(findings: &[Finding]) -> BTreeSet<Key> {
    findings
        .iter()
        .map(|f| {
            let where_ = if f.fault == immich_integrity::Fault::MountMissing {
                f.host_path.clone()
            } else {
                f.found_at.clone()
            };
            (
                f.asset_id.clone(),
                f.file.map(|k| k.as_str().to_string()),
                f.fault.as_str().to_string(),
                where_,
                f.affected,
            )
        })
        .collect()
}

pub fn truth_keys(faults: &[immich_fixtures::TruthFault]) -> BTreeSet<Key> {
    faults
        .iter()
        .map(|t| {
            let where_ = t
                .found_at
                .as_ref()
                .or(t.root.as_ref())
                .map(|p| p.to_string_lossy().into_owned());
            (
                t.asset_id.clone(),
                t.file.clone(),
                t.fault.clone(),
                where_,
                t.affected,
            )
        })
        .collect()
}

/// The faults a scan at `level` must report: those whose truth level is at most `level`.
pub fn truth_at(
    truth: &GroundTruth,
    level: immich_integrity::Level,
) -> Vec<immich_fixtures::TruthFault> {
    let name = match level {
        immich_integrity::Level::Exists => "exists",
        immich_integrity::Level::Quick => "quick",
        immich_integrity::Level::Hash => "hash",
        immich_integrity::Level::Full => "full",
    };
    truth
        .faults
        .iter()
        .filter(|t| t.found_at_level(name))
        .cloned()
        .collect()
}

/// Asserts precision and recall of 100 %, printing both differences when they disagree.
pub fn assert_same(found: &BTreeSet<Key>, truth: &BTreeSet<Key>) {
    let extra: Vec<_> = found.difference(truth).collect();
    let missed: Vec<_> = truth.difference(found).collect();
    assert!(
        extra.is_empty() && missed.is_empty(),
        "reported but not injected: {extra:#?}\ninjected but not reported: {missed:#?}"
    );
}

/// `target/<profile>/immich-integrity`, built by `cargo build --workspace --bins` (scripts/test.sh),
/// or the binary `IMMICH_INTEGRITY_BIN` names (to run the CLI tests against another build,
/// e.g. an older release, and see which of them it fails).
pub fn binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("IMMICH_INTEGRITY_BIN") {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "IMMICH_INTEGRITY_BIN={} is not a file",
            bin.display()
        );
        return bin;
    }
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let bin = dir.join("immich-integrity");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// The `--db-url`, `--media-root` and `--map` flags for a fixture.
pub fn library_flags(lib: &Lib) -> Vec<String> {
    let t = &lib.truth;
    let mut a = vec![
        "--db-url".to_string(),
        t.db_url.clone(),
        "--media-root".into(),
        t.media_root.to_string_lossy().into_owned(),
    ];
    for (c, h) in &t.maps {
        if c != &t.container_root {
            a.push("--map".into());
            a.push(format!("{c}={}", h.display()));
        }
    }
    a
}

/// Every path column of every row (asset, asset_file, person, user), one `table|key|column|value`
/// line each, sorted: equal dumps mean equal paths everywhere.
pub fn dump_paths(db_url: &str) -> String {
    runtime().block_on(async {
        let mut c = connect(db_url).await;
        let cols: Vec<(String, String)> = sqlx::query_as(
            "SELECT table_name::text, column_name::text FROM information_schema.columns \
             WHERE table_schema = 'public' AND column_name IN ('originalPath', 'path', \
             'previewPath', 'thumbnailPath', 'resizePath', 'webpPath', 'encodedVideoPath', \
             'sidecarPath', 'profileImagePath') AND table_name IN ('asset', 'assets', \
             'asset_file', 'asset_files', 'person', 'user', 'users') ORDER BY 1, 2",
        )
        .fetch_all(&mut c)
        .await
        .unwrap();
        let mut lines = Vec::new();
        for (t, col) in cols {
            // v3.2 persons have no id: their key is (owner, person group).
            let sql = format!(
                "SELECT COALESCE(to_jsonb(t)->>'id', \
                 (to_jsonb(t)->>'ownerId') || '/' || (to_jsonb(t)->>'personGroupId')) \
                 || '|' || COALESCE(\"{col}\", '<null>') FROM \"{t}\" t ORDER BY 1"
            );
            let rows: Vec<String> = sqlx::query_scalar(&sql).fetch_all(&mut c).await.unwrap();
            lines.extend(rows.into_iter().map(|r| format!("{t}|{col}|{r}")));
        }
        lines.sort();
        lines.join("\n")
    })
}

/// Moves a media top folder one level too deep (`upload/` -> `upload/upload/`), as a restore
/// into the wrong folder does.
pub fn nest_top_folder(media_root: &std::path::Path, folder: &str) {
    let dir = media_root.join(folder);
    let tmp = media_root.join(format!(".{folder}-nesting"));
    std::fs::rename(&dir, &tmp).unwrap();
    std::fs::create_dir(&dir).unwrap();
    std::fs::rename(&tmp, dir.join(folder)).unwrap();
}

/// Another session holding an exclusive lock on `table` (quoted here) until released: a scan or
/// relink that needs it waits, which makes a kill or a signal land at a known point.
pub struct TableLock {
    pub rt: tokio::runtime::Runtime,
    /// The locking session (a test may also use it, e.g. to terminate the scanner).
    pub conn: sqlx::PgConnection,
}

impl TableLock {
    pub fn take(db_url: &str, table: &str) -> TableLock {
        let rt = runtime();
        let conn = rt.block_on(async {
            let mut c = connect(db_url).await;
            sqlx::query("BEGIN").execute(&mut c).await.unwrap();
            sqlx::query(&format!("LOCK TABLE \"{table}\" IN ACCESS EXCLUSIVE MODE"))
                .execute(&mut c)
                .await
                .unwrap();
            c
        });
        TableLock { rt, conn }
    }

    pub fn release(mut self) {
        self.rt
            .block_on(sqlx::query("ROLLBACK").execute(&mut self.conn))
            .unwrap();
    }
}

/// Every row of every table that holds a path, as text, in a stable order: equal dumps mean
/// nothing changed.
///
/// `updatedAt` and `updateId` are left out: Immich's `updated_at()` trigger re-stamps them on
/// every UPDATE (undo restores values, not those stamps; README, regenerating derivatives).
pub fn dump(lib: &Lib) -> String {
    let t = lib.truth.generation.tables();
    let mut tables = vec![t.assets.to_string(), t.users.to_string(), "person".into()];
    if let Some(f) = t.asset_files {
        tables.push(f.to_string());
    }
    let rt = runtime();
    rt.block_on(async {
        let mut c = connect(&lib.truth.db_url).await;
        let mut out = String::new();
        for table in tables {
            let sql = format!(
                "SELECT COALESCE(string_agg(r::text, E'\\n' ORDER BY r::text), '') \
                 FROM (SELECT to_jsonb(t) - 'updatedAt' - 'updateId' AS r FROM \"{table}\" t) d"
            );
            let rows: String = sqlx::query_scalar(&sql).fetch_one(&mut c).await.unwrap();
            out.push_str(&rows);
        }
        out
    })
}

/// Runs the `immich-integrity` binary with `args` (and no `DATABASE_URL` from the environment).
pub fn run_cli(args: &[String]) -> std::process::Output {
    std::process::Command::new(binary())
        .args(args)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap()
}

/// Splits a `--format jsonl` report into its findings and its last line, the summary (the
/// `next_step` lines before it are left out).
pub fn parse_jsonl(out: &[u8]) -> (Vec<Finding>, serde_json::Value) {
    let text = String::from_utf8(out.to_vec()).unwrap();
    let mut lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with(r#"{"type":"next_step""#))
        .collect();
    let summary: serde_json::Value =
        serde_json::from_str(lines.pop().expect("a summary line")).unwrap();
    let findings = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (findings, summary)
}

/// Every entry below `dir` (not following symlinks): its bytes, or its link target, with its
/// mode, owner and mtime, so "byte-identical" also means untouched.
pub fn snapshot(dir: &std::path::Path, out: &mut std::collections::BTreeMap<PathBuf, Vec<u8>>) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries {
        let p = e.unwrap().path();
        let m = std::fs::symlink_metadata(&p).unwrap();
        let mut v = format!(
            "{:o} {}:{} {} ",
            m.mode(),
            m.uid(),
            m.gid(),
            m.mtime_nsec() + m.mtime() * 1_000_000_000
        )
        .into_bytes();
        if m.is_dir() {
            v.extend_from_slice(b"<dir>");
            out.insert(p.clone(), v);
            snapshot(&p, out);
            continue;
        } else if m.is_symlink() {
            v.extend(
                std::fs::read_link(&p)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes(),
            );
        } else {
            v.extend(std::fs::read(&p).unwrap_or_else(|_| b"<unreadable>".to_vec()));
        }
        out.insert(p, v);
    }
}

/// [`snapshot`] of the media root and every mapped root of a fixture.
pub fn media_tree(lib: &Lib) -> std::collections::BTreeMap<PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    snapshot(&lib.truth.media_root, &mut out);
    for (_, host) in &lib.truth.maps {
        snapshot(host, &mut out);
    }
    out
}
