//! Safe in an admin's hands: stored paths cannot drive the terminal or a spreadsheet, `--jobs`
//! is bounded, a closed pipe ends quietly, a signal cancels a write blocked on a lock, one
//! odd row stays one finding, paths are judged as the kernel resolves them, and `orphans`
//! refuses filters that would make referenced files look untracked.

mod common;

use common::*;
use immich_fixtures::Generation;
use immich_integrity::{relink, scan, Fault, FileKind, Finding};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn sql(db_url: &str, statement: &str, binds: &[&str]) {
    runtime().block_on(async {
        let mut c = connect(db_url).await;
        let mut q = sqlx::query(statement);
        for b in binds {
            q = q.bind(*b);
        }
        q.execute(&mut c).await.unwrap();
    });
}

fn image_assets(db_url: &str, n: i64) -> Vec<(String, String)> {
    runtime().block_on(async {
        let mut c = connect(db_url).await;
        sqlx::query_as(
            "SELECT id::text, \"originalPath\" FROM asset WHERE \"libraryId\" IS NULL \
             AND \"deletedAt\" IS NULL AND type = 'IMAGE' ORDER BY id LIMIT $1",
        )
        .bind(n)
        .fetch_all(&mut c)
        .await
        .unwrap()
    })
}

fn args(head: &[&str], lib: &Lib, tail: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = head.iter().map(|s| s.to_string()).collect();
    a.extend(library_flags(lib));
    a.extend(tail.iter().map(|s| s.to_string()));
    a
}

#[test]
fn table_output_escapes_control_characters_and_csv_cells_cannot_start_formulas() {
    let lib = generate(Generation::V2_6, 20, false);
    let ids = image_assets(&lib.truth.db_url, 2);
    let hostile = "/data/upload/odd/\x1b]0;pwned\x07\r\n\x1b[2Jx\x7f.jpg";
    let formula = "=HYPERLINK(\"http://evil.example/\",\"click\")";
    let q = "UPDATE asset SET \"originalPath\" = $1 WHERE id = $2::uuid";
    sql(&lib.truth.db_url, q, &[hostile, &ids[0].0]);
    sql(&lib.truth.db_url, q, &[formula, &ids[1].0]);
    // The file is there one top folder too deep: a `moved` row that relink prints.
    let host_of = |db: &str| {
        let rel = db
            .strip_prefix(&format!("{}/", lib.truth.container_root))
            .unwrap();
        lib.truth.media_root.join(rel)
    };
    let nested = host_of(&hostile.replacen("/upload/", "/upload/upload/", 1));
    std::fs::create_dir_all(nested.parent().unwrap()).unwrap();
    std::fs::copy(host_of(&ids[0].1), &nested).unwrap();
    let plan = run_cli(&args(&["relink"], &lib, &[]));
    let text = String::from_utf8(plan.stdout).unwrap();
    assert_eq!(plan.status.code(), Some(0), "{text}");
    assert!(
        text.contains("would relink original") && !text.contains('\x1b'),
        "the relink plan escapes paths:\n{text:?}"
    );
    assert!(
        text.contains("/data/upload/upload/odd/\\e]0;pwned\\007"),
        "{text}"
    );

    let table = run_cli(&args(&["scan"], &lib, &["--color", "never"]));
    assert_eq!(table.status.code(), Some(1));
    let text = String::from_utf8(table.stdout).unwrap();
    for c in ['\x1b', '\x07', '\r', '\x7f'] {
        assert!(!text.contains(c), "raw {c:?} in the table:\n{text:?}");
    }
    assert!(
        // (the table shows it relative to the media location /data)
        text.contains("  upload/odd/\\e]0;pwned\\007\\r\\n\\e[2Jx\\177.jpg"),
        "escaped as ls -b does:\n{text}"
    );

    let csv = run_cli(&args(&["scan"], &lib, &["--format", "csv"]));
    assert_eq!(csv.status.code(), Some(1));
    let text = String::from_utf8(csv.stdout).unwrap();
    assert!(
        text.contains("\"'=HYPERLINK(\"\"http://evil.example/\"\",\"\"click\"\")\""),
        "the formula cell is neutralised:\n{text}"
    );
    assert!(!text.contains(",=HYPERLINK"), "{text}");

    let jsonl = run_cli(&args(&["scan"], &lib, &["--format", "jsonl"]));
    let (findings, _) = parse_jsonl(&jsonl.stdout);
    let db_paths: Vec<&str> = findings
        .iter()
        .filter_map(|f| f.db_path.as_deref())
        .collect();
    assert!(db_paths.contains(&hostile), "JSON keeps the exact value");
    assert!(db_paths.contains(&formula), "JSON keeps the exact value");
}

#[test]
fn jobs_above_the_ceiling_is_an_error_naming_it() {
    let start = Instant::now();
    let out = run_cli(&[
        "scan".into(),
        "--jobs".into(),
        "30000".into(),
        "--db-url".into(),
        "postgres://postgres@127.0.0.1:1/none".into(),
        "--media-root".into(),
        "/nonexistent".into(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--jobs is at most 256"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(run_cli(&[
        "scan".into(),
        "--jobs".into(),
        "256".into(),
        "--help".into()
    ])
    .status
    .success());
    // The library refuses it too, before it connects anywhere.
    let mut opts = immich_integrity::ScanOptions::new("postgres://postgres@127.0.0.1:1/none");
    opts.media_root = Some("/nonexistent".into());
    opts.jobs = 30_000;
    let err = scan(&opts, &mut Vec::<Finding>::new()).unwrap_err();
    assert!(
        matches!(&err, immich_integrity::Error::InvalidArgument(m) if m.contains("256")),
        "{err}"
    );
    let err = immich_integrity::orphans::find_orphans(&opts).unwrap_err();
    assert!(err.to_string().contains("256"), "{err}");
}

/// A pipe whose reader is already gone: every write to it fails with EPIPE.
fn closed_pipe() -> OwnedFd {
    let mut fds = [0; 2];
    // SAFETY: pipe(2) fills two fresh descriptors; the read end is closed at once.
    unsafe {
        assert_eq!(libc::pipe(fds.as_mut_ptr()), 0);
        libc::close(fds[0]);
        OwnedFd::from_raw_fd(fds[1])
    }
}

#[test]
fn a_reader_that_goes_away_ends_the_run_quietly_never_a_panic() {
    let lib = generate(Generation::V2_6, 20, true);
    let runs: Vec<(Vec<String>, Vec<i32>)> = vec![
        (args(&["scan"], &lib, &["--format", "jsonl"]), vec![1]),
        (args(&["scan"], &lib, &[]), vec![1]),
        (args(&["scan"], &lib, &["--format", "csv"]), vec![1]),
        (args(&["orphans"], &lib, &[]), vec![0, 1]),
        (args(&["relink"], &lib, &[]), vec![0]),
        (args(&["doctor"], &lib, &[]), vec![0, 1]),
    ];
    for (a, codes) in &runs {
        // `| head -1`: stdout closed, stderr kept.
        let out = Command::new(binary())
            .args(a)
            .env_remove("DATABASE_URL")
            .stdout(Stdio::from(closed_pipe()))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.code().is_some_and(|c| codes.contains(&c)),
            "{a:?}: {:?} {err}",
            out.status
        );
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "{a:?}: {err}"
        );
        // `2>&1 | head -1`: both closed.
        let pipe = closed_pipe();
        let out = Command::new(binary())
            .args(a)
            .env_remove("DATABASE_URL")
            .stdout(Stdio::from(pipe.try_clone().unwrap()))
            .stderr(Stdio::from(pipe))
            .status()
            .unwrap();
        assert!(
            out.code().is_some_and(|c| codes.contains(&c)),
            "{a:?} with 2>&1: {out:?}"
        );
    }
}

/// Dumps `src` into a new `SQL_ASCII` database (which stores any bytes in a text column) and
/// drops it at the end.
struct AsciiDb(String, String);

impl AsciiDb {
    fn clone_of(src: &str) -> AsciiDb {
        let name = format!("ii_ascii_{}", std::process::id());
        let (base, _) = src.rsplit_once('/').unwrap();
        let admin = format!("{base}/postgres");
        sql(&admin, &format!("DROP DATABASE IF EXISTS {name}"), &[]);
        sql(
            &admin,
            &format!(
                "CREATE DATABASE {name} ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' \
                 TEMPLATE template0"
            ),
            &[],
        );
        let url = format!("{base}/{name}");
        let dump = Command::new("pg_dump")
            .args(["--no-owner", "-d", src])
            .output()
            .unwrap();
        assert!(
            dump.status.success(),
            "{}",
            String::from_utf8_lossy(&dump.stderr)
        );
        let mut psql = Command::new("psql")
            .args(["-q", "-v", "ON_ERROR_STOP=1", "-d", &url])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write;
        psql.stdin.take().unwrap().write_all(&dump.stdout).unwrap();
        assert!(psql.wait().unwrap().success());
        AsciiDb(url, admin)
    }
}

impl Drop for AsciiDb {
    fn drop(&mut self) {
        let name = self.0.rsplit('/').next().unwrap().to_string();
        sql(
            &self.1,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            &[],
        );
    }
}

#[test]
fn a_path_that_is_not_utf8_is_one_finding_naming_its_asset() {
    let lib = generate(Generation::V2_6, 20, false);
    let db = AsciiDb::clone_of(&lib.truth.db_url);
    let ids = image_assets(&db.0, 2);
    // Raw bytes: 0xFF is not UTF-8; SQL_ASCII stores it as given.
    let psql = Command::new("psql")
        .args([
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            &db.0,
            "-c",
            &format!(
                "UPDATE asset SET \"originalPath\" = E'/data/upload/bad\\377name.jpg' \
                 WHERE id = '{}'",
                ids[0].0
            ),
        ])
        .output()
        .unwrap();
    assert!(
        psql.status.success(),
        "{}",
        String::from_utf8_lossy(&psql.stderr)
    );
    let mut opts = options(&lib.truth);
    opts.source.db_url = db.0.clone();
    let mut findings: Vec<Finding> = Vec::new();
    let summary = scan(&opts, &mut findings).expect("one odd row never stops the scan");
    assert_eq!(summary.completion, immich_integrity::Completion::Complete);
    assert_eq!(summary.files_checked, lib.truth.files_referenced);
    assert_eq!(findings.len(), 1, "{findings:#?}");
    let f = &findings[0];
    assert_eq!(f.asset_id.as_deref(), Some(ids[0].0.as_str()));
    assert_eq!(f.file, Some(FileKind::Original));
    assert_eq!(f.fault, Fault::Missing);
    assert_eq!(f.db_path.as_deref(), Some("/data/upload/bad\\377name.jpg"));
    assert!(f.detail.contains("not valid UTF-8"), "{}", f.detail);
}

#[test]
fn stored_paths_are_judged_as_the_kernel_resolves_them() {
    let lib = generate(Generation::V2_6, 20, false);
    let ids = image_assets(&lib.truth.db_url, 3);
    let (dir, name) = ids[1].1.rsplit_once('/').unwrap();
    let cases = [
        // The file exists, but a trailing slash wants a directory (ENOTDIR).
        (ids[0].0.clone(), format!("{}/", ids[0].1)),
        // `missing` does not exist, so the kernel cannot go back up from it.
        (ids[1].0.clone(), format!("{dir}/missing/../{name}")),
        (ids[2].0.clone(), format!("{}/.", ids[2].1)),
    ];
    for (id, path) in &cases {
        sql(
            &lib.truth.db_url,
            "UPDATE asset SET \"originalPath\" = $1 WHERE id = $2::uuid",
            &[path, id],
        );
    }
    let mut findings: Vec<Finding> = Vec::new();
    scan(&options(&lib.truth), &mut findings).unwrap();
    for (id, path) in &cases {
        let f = findings
            .iter()
            .find(|f| f.asset_id.as_deref() == Some(id) && f.file == Some(FileKind::Original))
            .unwrap_or_else(|| panic!("{path} was reported healthy: {findings:#?}"));
        assert_eq!(f.db_path.as_deref(), Some(path.as_str()));
        assert_eq!(f.fault, Fault::Missing, "{path}: {f:?}");
    }
    assert_eq!(findings.len(), cases.len(), "{findings:#?}");
}

#[test]
fn orphans_refuses_filters_and_shards_that_would_shrink_the_referenced_set() {
    let lib = generate(Generation::V2_6, 20, false);
    let clean = run_cli(&args(&["orphans"], &lib, &[]));
    assert_eq!(
        clean.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&clean.stderr)
    );
    let owner = runtime().block_on(async {
        let mut c = connect(&lib.truth.db_url).await;
        sqlx::query_scalar::<_, String>("SELECT id::text FROM \"user\" LIMIT 1")
            .fetch_one(&mut c)
            .await
            .unwrap()
    });
    for extra in [
        vec!["--limit", "10"],
        vec!["--since", "2999-01-01"],
        vec!["--owner", owner.as_str()],
        vec!["--kind", "original"],
        vec!["--library", "00000000-0000-0000-0000-000000000000"],
        vec!["--shard", "0/2"],
    ] {
        let out = run_cli(&args(&["orphans"], &lib, &extra));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        assert!(
            err.contains("--limit") && err.contains("--shard"),
            "{extra:?}: {err}"
        );
        assert!(out.stdout.is_empty(), "{extra:?} listed files");
    }
    let mut opts = options(&lib.truth);
    opts.source.limit = Some(10);
    assert!(immich_integrity::orphans::find_orphans(&opts).is_err());
}

/// The table and key of the row a step changes (v1.112 keeps every asset path on the asset).
fn lock_row(
    db_url: &str,
    step: &relink::RelinkStep,
) -> (tokio::runtime::Runtime, sqlx::PgConnection) {
    let rt = runtime();
    let mut holder = rt.block_on(connect(db_url));
    rt.block_on(async {
        sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
        let table = match step.file {
            FileKind::PersonThumbnail => "person",
            FileKind::ProfileImage => "users",
            _ => "assets",
        };
        sqlx::query(&format!(
            "SELECT 1 FROM \"{table}\" WHERE id = $1::uuid FOR UPDATE"
        ))
        .bind(&step.id)
        .execute(&mut holder)
        .await
        .unwrap();
    });
    (rt, holder)
}

#[test]
fn sigterm_cancels_a_relink_statement_blocked_on_a_row_lock_within_a_second() {
    let lib = generate(Generation::V1_112, 50, true);
    let report = lib.dir.join("moved.jsonl");
    let out = run_cli(&args(
        &["scan"],
        &lib,
        &["--format", "jsonl", "--output", &report.to_string_lossy()],
    ));
    assert_eq!(out.status.code(), Some(1));
    let (steps, _) = relink::plan_from_report(&report, &options(&lib.truth)).unwrap();
    assert!(steps.len() >= 3);
    let before = dump(&lib);
    // Another session holds the first step's row and never lets go during the run.
    let (rt, mut holder) = lock_row(&lib.truth.db_url, &steps[0]);
    let journal = lib.dir.join("relink.journal");
    let mut child = Command::new(binary())
        .args(args(
            &["relink"],
            &lib,
            &[
                "--from",
                &report.to_string_lossy(),
                "--apply",
                "--journal",
                &journal.to_string_lossy(),
            ],
        ))
        .env_remove("DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut watcher = rt.block_on(connect(&lib.truth.db_url));
    let start = Instant::now();
    loop {
        let waiting: i64 = rt
            .block_on(
                sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = \
                 'immich-integrity' AND datname = current_database() AND wait_event_type = 'Lock'",
                )
                .fetch_one(&mut watcher),
            )
            .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "relink never blocked"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let sent = Instant::now();
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    // Give it 10 s with the lock still held (the old relink waited for the lock forever).
    while child.try_wait().unwrap().is_none() && sent.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let took = sent.elapsed();
    rt.block_on(sqlx::query("ROLLBACK").execute(&mut holder))
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        took < Duration::from_millis(1500),
        "took {took:?} to stop while the lock was still held: {err}"
    );
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("rolled back whole"), "{err}");
    assert_eq!(dump(&lib), before, "nothing was committed");
}
