//! `explain-report` on a real Immich v3.2 database (testdata/ddl/v3.2.sql) whose
//! `integrity_report` is filled the way Immich fills it, over a real media tree.

mod common;

use common::{base_dir, connect, run_cli, runtime};
use immich_fixtures::media::{chmod, chown, jpeg, make_dir, webp, write_file};
use sha1::{Digest, Sha1};
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

const DDL: &str = include_str!("../testdata/ddl/v3.2.sql");

fn admin_url() -> String {
    std::env::var("FIXTURE_PG_URL").unwrap_or_else(|_| immich_fixtures::DEFAULT_PG_URL.into())
}

fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// A fresh database `imx_<random>` holding Immich v3.2's tables; dropped when the test ends,
/// pass or fail.
struct Db {
    name: String,
    url: String,
}

impl Db {
    fn create() -> Db {
        let admin = admin_url();
        let name = format!("imx_{:016x}", random_u64());
        let (base, _) = admin
            .rsplit_once('/')
            .expect("a postgres URL with a database");
        let url = format!("{base}/{name}");
        runtime().block_on(async {
            let mut c = connect(&admin).await;
            sqlx::query(&format!("CREATE DATABASE \"{name}\""))
                .execute(&mut c)
                .await
                .unwrap_or_else(|e| panic!("CREATE DATABASE {name} at {admin}: {e}"));
        });
        let db = Db { name, url };
        runtime().block_on(async {
            let mut c = connect(&db.url).await;
            sqlx::raw_sql(DDL)
                .execute(&mut c)
                .await
                .unwrap_or_else(|e| panic!("testdata/ddl/v3.2.sql: {e}"));
        });
        db
    }

    fn exec(&self, sql: &str) {
        runtime().block_on(async {
            let mut c = connect(&self.url).await;
            sqlx::raw_sql(sql)
                .execute(&mut c)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        });
    }

    /// Every row of every other table of the schema, as JSON, sorted.
    fn tables_dump(&self) -> String {
        runtime().block_on(async {
            let mut c = connect(&self.url).await;
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = 'public' AND table_name <> 'integrity_report' ORDER BY 1",
            )
            .fetch_all(&mut c)
            .await
            .unwrap();
            let mut out = String::new();
            for t in tables {
                let rows: Vec<String> = sqlx::query_scalar(&format!(
                    "SELECT to_jsonb(t)::text FROM \"{t}\" t ORDER BY 1"
                ))
                .fetch_all(&mut c)
                .await
                .unwrap();
                out.push_str(&format!("{t}:\n{}\n", rows.join("\n")));
            }
            out
        })
    }

    /// Every row of integrity_report, every column, in id order.
    fn report_dump(&self) -> String {
        runtime().block_on(async {
            let mut c = connect(&self.url).await;
            let rows: Vec<String> =
                sqlx::query_scalar("SELECT to_jsonb(r)::text FROM integrity_report r ORDER BY id")
                    .fetch_all(&mut c)
                    .await
                    .unwrap();
            rows.join("\n")
        })
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let admin = admin_url();
        let name = self.name.clone();
        let _ = runtime().block_on(async move {
            let mut c = connect(&admin).await;
            sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .execute(&mut c)
                .await
        });
    }
}

fn sha1(bytes: &[u8]) -> Vec<u8> {
    Sha1::digest(bytes).to_vec()
}

/// A uuid string: a random prefix per library, then a counter.
struct Ids {
    prefix: u32,
    n: u64,
}

impl Ids {
    fn next(&mut self) -> String {
        self.n += 1;
        format!(
            "{:08x}-{:04x}-4000-8000-{:012x}",
            self.prefix,
            self.n & 0xffff,
            self.n
        )
    }
}

/// What a test expects of one report row.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Want {
    verdict: String,
    repair: String,
    paired: Option<String>,
    relink_to: Option<String>,
    file: Option<String>,
}

fn want(verdict: &str, repair: &str, file: Option<&str>) -> Want {
    Want {
        verdict: verdict.into(),
        repair: repair.into(),
        paired: None,
        relink_to: None,
        file: file.map(str::to_string),
    }
}

/// An Immich v3.2 install: database, media root laid out as Immich does, external library
/// folders, and the rows of its own integrity report with what we expect of each.
struct Install {
    db: Db,
    dir: tempfile::TempDir,
    root: PathBuf,
    /// Host folders of the external libraries (`--map` targets).
    maps: Vec<(String, PathBuf)>,
    user: String,
    ids: Ids,
    expected: BTreeMap<String, Want>,
}

impl Install {
    fn new() -> Install {
        let db = Db::create();
        let dir = tempfile::tempdir_in(base_dir()).unwrap();
        chmod(dir.path(), 0o755).unwrap();
        let root = dir.path().join("library");
        make_dir(&root).unwrap();
        for folder in [
            "upload",
            "library",
            "thumbs",
            "encoded-video",
            "profile",
            "backups",
        ] {
            make_dir(&root.join(folder)).unwrap();
            write_file(&root.join(folder).join(".immich"), b"1767225600000").unwrap();
        }
        let mut ids = Ids {
            prefix: random_u64() as u32,
            n: 0,
        };
        let (group, user) = (ids.next(), ids.next());
        db.exec(&format!(
            "INSERT INTO system_metadata (key, value) VALUES ('MediaLocation', '{{\"location\": \"/data\"}}');
             INSERT INTO version_history (version) VALUES ('3.2.2');
             INSERT INTO cluster_group (id) VALUES ('{group}');
             INSERT INTO \"user\" (id, email, \"clusterGroupId\", \"isAdmin\", \"storageLabel\")
               VALUES ('{user}', 'admin@example.com', '{group}', true, 'admin');"
        ));
        Install {
            db,
            root,
            dir,
            maps: Vec::new(),
            user,
            ids,
            expected: BTreeMap::new(),
        }
    }

    /// `<root>/upload/<user>/<f0f1>/<f2f3>/<f>.jpg` and its container path under `/data`.
    fn upload_path(&mut self) -> (String, PathBuf) {
        let f = self.ids.next();
        let rel = format!("upload/{}/{}/{}/{f}.jpg", self.user, &f[0..2], &f[2..4]);
        (format!("/data/{rel}"), self.root.join(rel))
    }

    /// An external library importing from `container`, mapped to `host`.
    fn library(&mut self, container: &str, host: &Path) -> String {
        let id = self.ids.next();
        make_dir(host).unwrap();
        self.db.exec(&format!(
            "INSERT INTO library (id, name, \"ownerId\", \"importPaths\", \"exclusionPatterns\")
               VALUES ('{id}', '{container}', '{}', ARRAY['{container}'], '{{}}')",
            self.user
        ));
        self.maps.push((container.to_string(), host.to_path_buf()));
        id
    }

    /// An asset row (and its exif size) through the real constraints; returns its id.
    fn asset(&mut self, path: &str, checksum: &[u8], size: usize, library: Option<&str>) -> String {
        let id = self.ids.next();
        let (algo, lib, external) = match library {
            Some(l) => ("sha1-path", format!("'{l}'"), true),
            None => ("sha1", "NULL".to_string(), false),
        };
        let name = path.rsplit('/').next().unwrap();
        self.db.exec(&format!(
            "INSERT INTO asset (id, \"ownerId\", type, \"originalPath\", \"fileCreatedAt\",
               \"fileModifiedAt\", checksum, \"originalFileName\", \"localDateTime\",
               \"checksumAlgorithm\", \"libraryId\", \"isExternal\")
             VALUES ('{id}', '{}', 'IMAGE', '{path}', now(), now(), '\\x{}', '{name}', now(),
               '{algo}', {lib}, {external});
             INSERT INTO asset_exif (\"assetId\", \"fileSizeInByte\") VALUES ('{id}', {size});",
            self.user,
            hex::encode(checksum)
        ));
        id
    }

    /// An uploaded original with real JPEG content at its Immich place; returns
    /// (asset id, container path, host path).
    fn upload(&mut self, seed: u8) -> (String, String, PathBuf) {
        let (db_path, host) = self.upload_path();
        let bytes = jpeg(48, 32, &[seed, 7, 3], &format!("asset-{seed}")).unwrap();
        make_dir_all(host.parent().unwrap());
        write_file(&host, &bytes).unwrap();
        let id = self.asset(&db_path, &sha1(&bytes), bytes.len(), None);
        (id, db_path, host)
    }

    /// A thumbnail asset_file row; the file is written when `write`. Returns the row's id.
    fn thumbnail(&mut self, asset: &str, write: bool) -> (String, String) {
        let id = self.ids.next();
        let rel = format!(
            "thumbs/{}/{}/{}/{asset}_thumbnail.webp",
            self.user,
            &asset[0..2],
            &asset[2..4]
        );
        if write {
            let host = self.root.join(&rel);
            make_dir_all(host.parent().unwrap());
            write_file(&host, &webp(16, 16, asset.as_bytes()).unwrap()).unwrap();
        }
        let db_path = format!("/data/{rel}");
        self.db.exec(&format!(
            "INSERT INTO asset_file (id, \"assetId\", type, path)
               VALUES ('{id}', '{asset}', 'thumbnail', '{db_path}')"
        ));
        (id, db_path)
    }

    /// One integrity_report row as Immich writes it; returns its id.
    fn report(
        &mut self,
        kind: &str,
        path: &str,
        asset: Option<&str>,
        file: Option<&str>,
    ) -> String {
        let q = |o: Option<&str>| o.map(|s| format!("'{s}'")).unwrap_or_else(|| "NULL".into());
        runtime().block_on(async {
            let mut c = connect(&self.db.url).await;
            sqlx::query_scalar::<_, String>(&format!(
                "INSERT INTO integrity_report (type, path, \"assetId\", \"fileAssetId\")
                   VALUES ('{kind}', '{path}', {}, {}) RETURNING id::text",
                q(asset),
                q(file)
            ))
            .fetch_one(&mut c)
            .await
            .unwrap()
        })
    }

    fn expect(&mut self, id: &str, w: Want) {
        self.expected.insert(id.to_string(), w);
    }

    fn flags(&self) -> Vec<String> {
        let mut a = vec![
            "explain-report".to_string(),
            "--db-url".into(),
            self.db.url.clone(),
            "--media-root".into(),
            self.root.to_string_lossy().into_owned(),
            "--as-user".into(),
            "1000:1000".into(),
        ];
        for (c, h) in &self.maps {
            a.push("--map".into());
            a.push(format!("{c}={}", h.display()));
        }
        a
    }

    /// Every file and folder under the media root and the library folders: path, type, size,
    /// mode, owner, mtime and the content's SHA-1.
    fn tree(&self) -> String {
        let mut out = Vec::new();
        let mut roots = vec![self.root.clone()];
        roots.extend(self.maps.iter().map(|(_, h)| h.clone()));
        for r in roots {
            walk(&r, &mut out);
        }
        out.sort();
        out.join("\n")
    }
}

fn make_dir_all(dir: &Path) {
    if !dir.is_dir() {
        make_dir_all(dir.parent().unwrap());
        make_dir(dir).unwrap();
    }
}

fn walk(dir: &Path, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let m = std::fs::symlink_metadata(&p).unwrap();
        let content = if m.is_file() {
            hex::encode(sha1(&std::fs::read(&p).unwrap()))
        } else {
            String::new()
        };
        out.push(format!(
            "{} {:o} {}:{} {} {} {content}",
            p.display(),
            m.mode(),
            m.uid(),
            m.gid(),
            m.len(),
            m.mtime_nsec() + m.mtime() * 1_000_000_000
        ));
        if m.is_dir() {
            walk(&p, out);
        }
    }
}

/// Runs the command with `--format jsonl`; returns the explanations by report id, the
/// summary and the exit code.
fn explain(
    install: &Install,
) -> (
    BTreeMap<String, serde_json::Value>,
    usize,
    serde_json::Value,
    Option<i32>,
) {
    let mut args = install.flags();
    args.extend(["--format".into(), "jsonl".into()]);
    let out = run_cli(&args);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}\n{stderr}")))
        .collect();
    let summary = lines
        .pop()
        .unwrap_or_else(|| panic!("no output; stderr: {stderr}"));
    assert_eq!(summary["summary"], true, "{stdout}");
    let n = lines.len();
    let by_id = lines
        .into_iter()
        .map(|v| (v["report_id"].as_str().unwrap().to_string(), v))
        .collect();
    (by_id, n, summary, out.status.code())
}

fn got(v: &serde_json::Value) -> Want {
    let s = |k: &str| v[k].as_str().map(str::to_string);
    Want {
        verdict: s("verdict").unwrap_or_default(),
        repair: s("repair").unwrap_or_default(),
        paired: s("paired_row"),
        relink_to: s("relink_to"),
        file: s("file"),
    }
}

fn assert_verdicts(install: &Install, by_id: &BTreeMap<String, serde_json::Value>, n: usize) {
    assert_eq!(
        n,
        install.expected.len(),
        "one verdict per integrity_report row: {by_id:#?}"
    );
    assert_eq!(
        by_id.keys().collect::<BTreeSet<_>>(),
        install.expected.keys().collect::<BTreeSet<_>>(),
        "the verdicts name exactly the report's rows"
    );
    let mut wrong = Vec::new();
    for (id, w) in &install.expected {
        let g = got(&by_id[id]);
        if &g != w {
            wrong.push(format!("row {id}: want {w:?}\n  got {:#}", by_id[id]));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn explains_every_row_of_immichs_own_report() {
    let mut x = Install::new();
    let data = |rel: &str| format!("/data/{rel}");

    // (a) A restore one folder too deep: two originals now under upload/upload/...; Immich
    //     files each as missing_file and its copy as untracked_file (issue #29550).
    for seed in [1u8, 2] {
        let (asset, db_path, host) = x.upload(seed);
        let rel = host.strip_prefix(&x.root).unwrap().to_path_buf();
        let nested_rel = Path::new("upload").join(&rel);
        let nested = x.root.join(&nested_rel);
        make_dir_all(nested.parent().unwrap());
        std::fs::rename(&host, &nested).unwrap();
        let copy = data(&nested_rel.to_string_lossy());
        let m = x.report("missing_file", &db_path, Some(&asset), None);
        let u = x.report("untracked_file", &copy, None, None);
        let mut w = want("nested", "relink", Some("original"));
        w.relink_to = Some(copy.clone());
        w.paired = Some(u.clone());
        x.expect(&m, w.clone());
        w.paired = Some(m.clone());
        x.expect(&u, w);
    }

    // (b) An original the server's uid cannot read (root's, mode 0600): Immich's checksum job
    //     could not read it and filed checksum_mismatch.
    let (asset, db_path, host) = x.upload(3);
    chown(&host, 0, 0).unwrap();
    chmod(&host, 0o600).unwrap();
    let r = x.report("checksum_mismatch", &db_path, Some(&asset), None);
    x.expect(
        &r,
        want("permission_denied", "fix_permissions", Some("original")),
    );

    // (c) External libraries: /mnt/photos is not mounted (its folder is empty), so its asset
    //     is missing_file; an asset of the mounted /mnt/archive got checksum_mismatch because
    //     Immich hashed the file against a checksum of the path (#29219).
    let unmounted = x.dir.path().join("mnt-photos");
    let photos = x.library("/mnt/photos", &unmounted);
    let path = "/mnt/photos/2024/IMG_0001.jpg";
    let asset = x.asset(
        path,
        &sha1(format!("path:{path}").as_bytes()),
        1234,
        Some(&photos),
    );
    let r = x.report("missing_file", path, Some(&asset), None);
    x.expect(&r, want("mount_missing", "mount", Some("original")));
    let archive_host = x.dir.path().join("archive");
    let archive = x.library("/mnt/archive", &archive_host);
    let bytes = jpeg(40, 24, b"archive", "archive").unwrap();
    write_file(&archive_host.join("b.jpg"), &bytes).unwrap();
    let path = "/mnt/archive/b.jpg";
    let asset = x.asset(
        path,
        &sha1(format!("path:{path}").as_bytes()),
        bytes.len(),
        Some(&archive),
    );
    let r = x.report("checksum_mismatch", path, Some(&asset), None);
    x.expect(&r, want("checksum_of_path", "none", Some("original")));

    // (d) Stale rows: a missing_file for a file that is present and healthy, a
    //     checksum_mismatch whose SHA-1 matches now, and an untracked_file at a path a row
    //     references now.
    let (asset, db_path, _) = x.upload(4);
    x.thumbnail(&asset, true);
    let r = x.report("missing_file", &db_path, Some(&asset), None);
    x.expect(&r, want("already_healthy", "none", Some("original")));
    let r = x.report("untracked_file", &db_path, None, None);
    x.expect(&r, want("already_healthy", "none", Some("original")));
    let (asset, db_path, _) = x.upload(5);
    let r = x.report("checksum_mismatch", &db_path, Some(&asset), None);
    x.expect(&r, want("already_healthy", "none", Some("original")));

    // (e) A truly gone original, and a thumbnail whose file is gone (its original is fine).
    let (asset, db_path, host) = x.upload(6);
    std::fs::remove_file(&host).unwrap();
    let r = x.report("missing_file", &db_path, Some(&asset), None);
    x.expect(&r, want("gone", "restore_from_backup", Some("original")));
    let (asset, _, _) = x.upload(7);
    let (file, thumb) = x.thumbnail(&asset, false);
    let r = x.report("missing_file", &thumb, Some(&asset), Some(&file));
    x.expect(&r, want("gone", "regenerate", Some("thumbnail")));

    // (f) A bit flipped in an original since upload: the SHA-1 really differs.
    let (asset, db_path, host) = x.upload(8);
    immich_fixtures::bitrot::flip_one_bit(&host).unwrap();
    let r = x.report("checksum_mismatch", &db_path, Some(&asset), None);
    x.expect(&r, want("bitrot", "restore_from_backup", Some("original")));

    // (g) A row left on the v1.136 media prefix while the server uses /data: Immich cannot
    //     open it (missing_file), and lists the file at its /data spelling as untracked.
    let (asset, db_path, _) = x.upload(9);
    let stale = db_path.replacen("/data/", "/usr/src/app/upload/", 1);
    x.db.exec(&format!(
        "UPDATE asset SET \"originalPath\" = '{stale}' WHERE id = '{asset}'"
    ));
    let m = x.report("missing_file", &stale, Some(&asset), None);
    let u = x.report("untracked_file", &db_path, None, None);
    let mut w = want("stale_prefix", "relink", Some("original"));
    w.relink_to = Some(db_path.clone());
    w.paired = Some(u.clone());
    x.expect(&m, w.clone());
    w.paired = Some(m.clone());
    x.expect(&u, w);

    // A real stray file no row references.
    let (stray_db, stray) = x.upload_path();
    make_dir_all(stray.parent().unwrap());
    write_file(&stray, b"not an asset").unwrap();
    let r = x.report("untracked_file", &stray_db, None, None);
    x.expect(&r, want("untracked", "none", None));

    let report_before = x.db.report_dump();
    let paths_before = x.db.tables_dump();
    let tree_before = x.tree();

    let (by_id, n, summary, code) = explain(&x);
    assert_verdicts(&x, &by_id, n);
    assert_eq!(code, Some(1), "real faults: exit 1; summary {summary}");
    assert_eq!(summary["rows"], x.expected.len());
    assert_eq!(summary["faults"], x.expected.len() - 3, "{summary}");
    assert_eq!(summary["verdicts"]["nested"], 4, "{summary}");
    // The found copies' proof is the scan's: found_at is where the relink target lies.
    for v in by_id.values() {
        if v["verdict"] == "nested" {
            let found = v["found_at"].as_str().unwrap();
            assert!(found.contains("/upload/upload/"), "{v}");
            assert!(Path::new(found).is_file(), "{v}");
            if v["report_type"] == "missing_file" {
                let detail = v["detail"].as_str().unwrap();
                assert!(detail.contains("one top folder too deep"), "{v}");
            }
        }
    }

    assert_eq!(
        x.db.report_dump(),
        report_before,
        "integrity_report must be byte-for-byte unchanged"
    );
    assert_eq!(x.db.tables_dump(), paths_before);
    assert_eq!(x.tree(), tree_before, "the media tree must be unchanged");
}

#[test]
fn only_stale_rows_exit_zero_in_every_format() {
    let mut x = Install::new();
    let (asset, db_path, _) = x.upload(1);
    let r = x.report("missing_file", &db_path, Some(&asset), None);
    x.expect(&r, want("already_healthy", "none", Some("original")));
    let r = x.report("checksum_mismatch", &db_path, Some(&asset), None);
    x.expect(&r, want("already_healthy", "none", Some("original")));
    // Immich's untracked scan saw a file that was deleted since.
    let (gone_db, _) = x.upload_path();
    let r = x.report("untracked_file", &gone_db, None, None);
    x.expect(&r, want("already_healthy", "none", None));
    let before = x.db.report_dump();

    let (by_id, n, summary, code) = explain(&x);
    assert_verdicts(&x, &by_id, n);
    assert_eq!(code, Some(0), "only stale rows: exit 0; {summary}");

    for (format, check) in [
        ("json", "explanations"),
        ("csv", "report_id,report_type,path"),
        ("table", "already_healthy"),
    ] {
        let out_file = x.dir.path().join(format!("report.{format}"));
        let mut args = x.flags();
        args.extend([
            "--format".into(),
            format.into(),
            "--output".into(),
            out_file.to_string_lossy().into_owned(),
        ]);
        let out = run_cli(&args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{format}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stdout.is_empty(),
            "{format}: --output keeps stdout empty"
        );
        let text = std::fs::read_to_string(&out_file).unwrap();
        assert!(text.contains(check), "{format}: {text}");
        match format {
            "json" => {
                let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
                assert_eq!(doc["explanations"].as_array().unwrap().len(), 3);
            }
            "csv" => assert_eq!(text.lines().count(), 1 + 3, "{text}"),
            _ => {}
        }
    }
    assert_eq!(x.db.report_dump(), before);
}

#[test]
fn no_rows_is_clean() {
    let x = Install::new();
    let (by_id, n, summary, code) = explain(&x);
    assert!(by_id.is_empty() && n == 0);
    assert_eq!(summary["rows"], 0);
    assert_eq!(code, Some(0));
}

#[test]
fn without_integrity_report_it_cannot_run() {
    let x = Install::new();
    x.db.exec("DROP TABLE integrity_report");
    let out = run_cli(&x.flags());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("integrity_report exists from Immich v3.0; this database is Immich v3.2.2"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}
