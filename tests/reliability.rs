//! Faults injected into a running scan or relink on the real PostgreSQL: lost connections
//! (terminated backend, a TCP proxy cut or stopped), a full disk under the report and the
//! relink journal, SIGTERM during `relink --apply`. In every case the tool finishes or stops
//! with a clear cause and loses nothing.

mod common;

use common::*;
use immich_fixtures::Generation;
use immich_integrity::relink::{self, RelinkStep};
use immich_integrity::{scan, Completion, Finding, Observer, Progress};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::run_cli as run;

fn scan_args(lib: &Lib, db_url: &str) -> Vec<String> {
    let mut a = vec!["scan".to_string()];
    a.extend(library_flags(lib));
    a[2] = db_url.to_string();
    a.extend(["--as-user".into(), lib.truth.as_user.clone()]);
    a
}

fn jsonl(text: &str) -> (Vec<Finding>, serde_json::Value) {
    let mut lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with(r#"{"type":"next_step""#))
        .collect();
    let summary = serde_json::from_str(lines.pop().expect("a summary line")).unwrap();
    let findings = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (findings, summary)
}

/// Terminates every backend of the scanner (`application_name = immich-integrity`) in `db`.
fn terminate_scanner(rt: &tokio::runtime::Runtime, conn: &mut sqlx::PgConnection) -> i64 {
    rt.block_on(async {
        // Materialized first, so only the scanner's backends in this database are ever
        // passed to pg_terminate_backend.
        sqlx::query_scalar(
            "WITH w AS MATERIALIZED (SELECT pid FROM pg_stat_activity \
             WHERE application_name = 'immich-integrity' AND datname = current_database()) \
             SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM w) t",
        )
        .fetch_one(conn)
        .await
        .unwrap()
    })
}

/// A session of the test's own, outside any transaction (statistics views are cached for the
/// length of a transaction), that watches and terminates the scanner's backends.
struct Watch {
    rt: tokio::runtime::Runtime,
    conn: sqlx::PgConnection,
}

impl Watch {
    fn new(db_url: &str) -> Watch {
        let rt = runtime();
        let conn = rt.block_on(connect(db_url));
        Watch { rt, conn }
    }
    fn waits_on_lock(&mut self) -> bool {
        scanner_waits_on_lock(&self.rt, &mut self.conn)
    }
    fn terminate(&mut self) -> i64 {
        terminate_scanner(&self.rt, &mut self.conn)
    }
}

/// Polls (up to a minute, a generous bound, not a timing assertion) until `cond` holds.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(60), "never: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// True while a scanner backend waits on a lock (it reached the locked table).
fn scanner_waits_on_lock(rt: &tokio::runtime::Runtime, conn: &mut sqlx::PgConnection) -> bool {
    rt.block_on(async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'immich-integrity' \
             AND datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(conn)
        .await
        .unwrap()
            > 0
    })
}

/// Kills the scanner's backend after the first page was checked, then counts pages.
struct KillAfterFirstPage {
    db_url: String,
    killed: i64,
    pages: u64,
    findings: Vec<Finding>,
}

impl Observer for KillAfterFirstPage {
    fn finding(&mut self, f: &Finding) {
        self.findings.push(f.clone());
    }
    fn progress(&mut self, _: &Progress) {
        self.pages += 1;
        if self.pages == 1 {
            let rt = runtime();
            let mut c = rt.block_on(connect(&self.db_url));
            self.killed = terminate_scanner(&rt, &mut c);
        }
    }
}

#[test]
fn terminated_backend_mid_stream_resumes_after_the_last_row_with_the_exact_truth() {
    let lib = generate(Generation::V2_6, 60, true);
    let mut opts = options(&lib.truth);
    opts.source.batch_size = 4;
    opts.source.prefetch = 1;
    // The undisturbed scan, for comparison.
    let mut want: Vec<Finding> = Vec::new();
    let clean = scan(&opts, &mut want).unwrap();
    assert_eq!(clean.reconnects, 0);
    assert!(clean.resumes.is_empty());

    let mut obs = KillAfterFirstPage {
        db_url: lib.truth.db_url.clone(),
        killed: 0,
        pages: 0,
        findings: Vec::new(),
    };
    let summary = scan(&opts, &mut obs).expect("a lost connection is not a setup error");
    assert_eq!(obs.killed, 1, "the scanner's backend was terminated");
    assert_eq!(summary.completion, Completion::Complete, "{summary:?}");
    assert_eq!(summary.reconnects, 1);
    // Resumed after the last delivered row, not from scratch: no row or finding twice.
    assert_eq!(summary.rows, clean.rows);
    assert_eq!(obs.findings.len(), want.len());
    assert_same(&finding_keys(&obs.findings), &truth_keys(&lib.truth.faults));
    let note = &summary.resumes[0];
    assert!(
        note.contains("connection lost") && note.contains("resumed after asset "),
        "{note}"
    );
    assert!(note.contains("new snapshot"), "{note}");
    // Past the first page: the pages before the cut were not read again.
    assert!(obs.pages > 3, "{}", obs.pages);
}

/// Starts a JSONL scan of `lib` with `extra` flags, reporting into `lib.dir/name`.
fn spawn_scan(
    lib: &Lib,
    db_url: &str,
    name: &str,
    extra: &[&str],
) -> (std::process::Child, PathBuf) {
    let report = lib.dir.join(name);
    let mut args = scan_args(lib, db_url);
    args.extend([
        "--format".into(),
        "jsonl".into(),
        "--output".into(),
        report.to_string_lossy().into_owned(),
    ]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let child = Command::new(binary())
        .args(&args)
        .env_remove("DATABASE_URL")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    (child, report)
}

#[test]
fn cli_scan_survives_a_terminated_backend_and_reports_the_reconnect() {
    let lib = generate(Generation::V1_135, 30, true);
    let lock = TableLock::take(&lib.truth.db_url, "assets");
    let mut watch = Watch::new(&lib.truth.db_url);
    let (child, report) = spawn_scan(&lib, &lib.truth.db_url, "resumed.jsonl", &[]);
    wait_until("the scan waits on the lock", || watch.waits_on_lock());
    assert_eq!(watch.terminate(), 1);
    // It comes back (a new backend, waiting on the same lock) before the lock goes away.
    wait_until("the scan reconnects", || watch.waits_on_lock());
    lock.release();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("reconnected: connection lost"), "{err}");
    let (findings, summary) = jsonl(&std::fs::read_to_string(&report).unwrap());
    assert_eq!(summary["completion"]["status"], "complete");
    assert_eq!(summary["reconnects"], 1);
    assert!(summary["resumes"][0]
        .as_str()
        .unwrap()
        .contains("resumed at the first asset row in a new snapshot"));
    assert_same(&finding_keys(&findings), &truth_keys(&lib.truth.faults));
}

#[test]
fn cli_scan_terminated_again_and_again_gives_up_after_the_retries() {
    let lib = generate(Generation::V2_6, 30, true);
    let lock = TableLock::take(&lib.truth.db_url, "asset");
    let mut watch = Watch::new(&lib.truth.db_url);
    let (mut child, report) = spawn_scan(
        &lib,
        &lib.truth.db_url,
        "gave-up.jsonl",
        &["--retries", "2"],
    );
    // Each backend that reaches the lock is terminated; count distinct ones.
    let mut killed = std::collections::BTreeSet::new();
    while child.try_wait().unwrap().is_none() {
        let pids: Vec<i32> = watch.rt.block_on(async {
            sqlx::query_scalar(
                // Materialized first, so only those backends are ever passed to
                // pg_terminate_backend (a WHERE clause may be evaluated in any order).
                "WITH w AS MATERIALIZED (SELECT pid FROM pg_stat_activity \
                 WHERE application_name = 'immich-integrity' AND datname = current_database() \
                 AND wait_event_type = 'Lock') \
                 SELECT pid FROM (SELECT pid, pg_terminate_backend(pid) AS t FROM w) k",
            )
            .fetch_all(&mut watch.conn)
            .await
            .unwrap()
        });
        killed.extend(pids);
        std::thread::sleep(Duration::from_millis(20));
    }
    let kills = killed.len();
    lock.release();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(kills, 3, "the first connection and two reconnects: {err}");
    assert!(
        err.contains("scan stopped early")
            && err.contains("gave up after 2 reconnect attempts")
            && err.contains("terminat"),
        "{err}"
    );
    let (_, summary) = jsonl(&std::fs::read_to_string(&report).unwrap());
    assert_eq!(summary["completion"]["status"], "failed");
}

/// A TCP proxy between the scanner and PostgreSQL that the test can cut (drop every
/// connection, like a reset) or stop (cut, and refuse new connections, like a server that
/// went away), without touching the shared server.
struct Proxy {
    addr: String,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    closed: Arc<AtomicBool>,
}

impl Proxy {
    fn start(upstream: &'static str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let closed = Arc::new(AtomicBool::new(false));
        let (c2, closed2) = (conns.clone(), closed.clone());
        std::thread::spawn(move || {
            while !closed2.load(Ordering::SeqCst) {
                let (client, _) = match listener.accept() {
                    Ok(x) => x,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                };
                client.set_nonblocking(false).unwrap();
                let server = TcpStream::connect(upstream).unwrap();
                let mut all = c2.lock().unwrap();
                all.push(client.try_clone().unwrap());
                all.push(server.try_clone().unwrap());
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
            // The listener is dropped here: new connections are refused.
        });
        Proxy {
            addr,
            conns,
            closed,
        }
    }

    /// Resets every connection through the proxy.
    fn cut(&self) {
        for s in self.conns.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Cuts and stops listening for good.
    fn stop(&self) {
        self.closed.store(true, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(100)); // the accept loop notices
        self.cut();
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
    });
}

fn via(proxy: &Proxy, db_url: &str) -> String {
    assert!(db_url.contains("127.0.0.1:5432"), "{db_url}");
    db_url.replace("127.0.0.1:5432", &proxy.addr)
}

#[test]
fn connection_reset_by_the_network_is_retried_and_the_scan_completes() {
    let lib = generate(Generation::V2_6, 40, true);
    let proxy = Proxy::start("127.0.0.1:5432");
    let url = via(&proxy, &lib.truth.db_url);
    // The scan checks every asset, then waits on the person table; the network drops then.
    let lock = TableLock::take(&lib.truth.db_url, "person");
    let mut watch = Watch::new(&lib.truth.db_url);
    let (child, report) = spawn_scan(&lib, &url, "reset.jsonl", &[]);
    wait_until("the scan reaches the person table", || {
        watch.waits_on_lock()
    });
    proxy.cut();
    wait_until("the scan reconnects through the proxy", || {
        watch.waits_on_lock()
    });
    lock.release();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let (findings, summary) = jsonl(&std::fs::read_to_string(&report).unwrap());
    assert_eq!(summary["completion"]["status"], "complete");
    assert_eq!(summary["reconnects"], 1);
    assert!(
        summary["resumes"][0]
            .as_str()
            .unwrap()
            .contains("resumed at the first person row"),
        "the same phase, not from scratch: {summary}"
    );
    assert_same(&finding_keys(&findings), &truth_keys(&lib.truth.faults));
}

#[test]
fn server_gone_for_good_exits_2_naming_the_cause_with_findings_flushed() {
    let lib = generate(Generation::V2_6, 40, true);
    let proxy = Proxy::start("127.0.0.1:5432");
    let url = via(&proxy, &lib.truth.db_url);
    let lock = TableLock::take(&lib.truth.db_url, "person");
    let mut watch = Watch::new(&lib.truth.db_url);
    let (child, report) = spawn_scan(&lib, &url, "gone.jsonl", &[]);
    wait_until("the scan reaches the person table", || {
        watch.waits_on_lock()
    });
    proxy.stop();
    let out = child.wait_with_output().unwrap();
    lock.release();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("scan stopped early")
            && err.contains("gave up after 3 reconnect attempts")
            && err.contains("refused"),
        "{err}"
    );
    // Every asset was checked before the server went away: those findings are in the report.
    let (findings, summary) = jsonl(&std::fs::read_to_string(&report).unwrap());
    assert_eq!(summary["completion"]["status"], "failed");
    let asset_truth: std::collections::BTreeSet<Key> = truth_keys(&lib.truth.faults)
        .into_iter()
        .filter(|k| {
            !matches!(
                k.1.as_deref(),
                Some("person_thumbnail") | Some("profile_image")
            )
        })
        .collect();
    let asset_found: std::collections::BTreeSet<Key> = finding_keys(&findings)
        .into_iter()
        .filter(|k| k.2 != "mount_missing")
        .collect();
    let asset_truth: std::collections::BTreeSet<Key> = asset_truth
        .into_iter()
        .filter(|k| k.2 != "mount_missing")
        .collect();
    assert!(!asset_truth.is_empty());
    assert_same(&asset_found, &asset_truth);
}

#[test]
fn retries_0_fails_on_the_first_lost_connection() {
    let lib = generate(Generation::V2_6, 20, false);
    let lock = TableLock::take(&lib.truth.db_url, "asset");
    let mut watch = Watch::new(&lib.truth.db_url);
    let (child, report) = spawn_scan(
        &lib,
        &lib.truth.db_url,
        "no-retry.jsonl",
        &["--retries", "0"],
    );
    wait_until("the scan waits on the lock", || watch.waits_on_lock());
    assert_eq!(watch.terminate(), 1);
    let out = child.wait_with_output().unwrap();
    lock.release();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("terminat") && !err.contains("gave up"),
        "{err}"
    );
    let (_, summary) = jsonl(&std::fs::read_to_string(&report).unwrap());
    assert_eq!(summary["completion"]["status"], "failed");
    assert_eq!(summary["reconnects"], 0);
}

/// A 64 KiB tmpfs mounted for one test, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(base: &Path) -> SmallDisk {
        let dir = base.join("small-disk");
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "these tests run as root and mount a tmpfs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk(dir)
    }

    /// Fills the disk up completely.
    fn fill(&self) {
        let mut f = std::fs::File::create(self.0.join("filler")).unwrap();
        let block = vec![0u8; 4096];
        while f.write_all(&block).is_ok() {}
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn disk_full_under_the_report_exits_2_naming_the_file_and_enospc() {
    let lib = generate(Generation::V2_6, 40, true);
    let disk = SmallDisk::mount(&lib.dir);
    // A report from an earlier run is there; a failed run must not replace it with a torn one.
    let report = disk.0.join("report.jsonl");
    std::fs::write(&report, "earlier report\n").unwrap();
    disk.fill();
    let mut args = scan_args(&lib, &lib.truth.db_url);
    args.extend([
        "--format".into(),
        "jsonl".into(),
        "--output".into(),
        report.to_string_lossy().into_owned(),
    ]);
    let out = run(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&report.to_string_lossy().into_owned()) && err.contains("ENOSPC"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(&report).unwrap(),
        "earlier report\n",
        "the earlier report is untouched"
    );
    let names: Vec<String> = std::fs::read_dir(&disk.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.contains(".tmp-")),
        "no half-written temp file left: {names:?}"
    );
}

fn moved_steps(lib: &Lib) -> Vec<RelinkStep> {
    let mut findings: Vec<Finding> = Vec::new();
    let summary = scan(&options(&lib.truth), &mut findings).unwrap();
    let steps = relink::plan(&findings, &summary.roots);
    assert!(steps.len() >= 5, "{steps:#?}");
    steps
}

#[test]
fn disk_full_under_the_journal_changes_nothing_in_the_database() {
    let lib = generate(Generation::V1_137, 40, true);
    let steps = moved_steps(&lib);
    let before = dump(&lib);
    let disk = SmallDisk::mount(&lib.dir);
    disk.fill();
    let journal = disk.0.join("relink.journal");
    let err = relink::apply(&lib.truth.db_url, &steps, &journal, 2).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(&journal.to_string_lossy().into_owned()) && msg.contains("ENOSPC"),
        "{msg}"
    );
    assert_eq!(
        dump(&lib),
        before,
        "no row changed after the failed journal write"
    );

    // The same through the CLI: exit 2, the journal and ENOSPC named, still nothing changed.
    let report = lib.dir.join("moved.jsonl");
    let mut args = scan_args(&lib, &lib.truth.db_url);
    args.extend([
        "--format".into(),
        "jsonl".into(),
        "--output".into(),
        report.to_string_lossy().into_owned(),
    ]);
    run(&args);
    let mut args = vec!["relink".to_string()];
    args.extend(library_flags(&lib));
    args.extend([
        "--from".into(),
        report.to_string_lossy().into_owned(),
        "--apply".into(),
        "--journal".into(),
        journal.to_string_lossy().into_owned(),
    ]);
    let out = run(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("relink.journal") && err.contains("ENOSPC"),
        "{err}"
    );
    assert_eq!(dump(&lib), before);
}

/// Is SIGTERM still pending (not yet delivered) for `pid`?
fn sigterm_pending(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().any(|l| {
        (l.starts_with("SigPnd:") || l.starts_with("ShdPnd:"))
            && u64::from_str_radix(l.split_whitespace().nth(1).unwrap_or("0"), 16)
                .is_ok_and(|m| m & (1 << (libc::SIGTERM - 1)) != 0)
    })
}

/// The table and key of the row a step changes, to lock it from another session.
fn lock_row_sql(lib: &Lib, step: &RelinkStep) -> String {
    let t = lib.truth.generation.tables();
    match step.file {
        immich_integrity::FileKind::PersonThumbnail => {
            "SELECT 1 FROM person WHERE id = $1::uuid FOR UPDATE".into()
        }
        immich_integrity::FileKind::ProfileImage => {
            format!(
                "SELECT 1 FROM \"{}\" WHERE id = $1::uuid FOR UPDATE",
                t.users
            )
        }
        _ => format!(
            "SELECT 1 FROM \"{}\" WHERE id = $1::uuid FOR UPDATE",
            t.assets
        ),
    }
}

#[test]
fn sigterm_during_relink_apply_rolls_the_batch_back_exits_130_and_undo_works() {
    // v1.112 keeps every asset path in the asset row, so a row lock holds any asset step.
    let lib = generate(Generation::V1_112, 50, true);
    let before = dump(&lib);
    let report = lib.dir.join("moved.jsonl");
    let mut args = scan_args(&lib, &lib.truth.db_url);
    args.extend([
        "--format".into(),
        "jsonl".into(),
        "--output".into(),
        report.to_string_lossy().into_owned(),
    ]);
    assert_eq!(run(&args).status.code(), Some(1));
    let (steps, _) = relink::plan_from_report(&report, &options(&lib.truth)).unwrap();
    assert!(steps.len() >= 5);

    // Another session holds the row of batch 2's first step: batch 1 commits, batch 2 waits.
    let rt = runtime();
    let mut holder = rt.block_on(connect(&lib.truth.db_url));
    rt.block_on(async {
        sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
        sqlx::query(&lock_row_sql(&lib, &steps[2]))
            .bind(&steps[2].id)
            .execute(&mut holder)
            .await
            .unwrap();
    });
    let journal = lib.dir.join("relink.journal");
    let mut args = vec!["relink".to_string()];
    args.extend(library_flags(&lib));
    args.extend([
        "--from".into(),
        report.to_string_lossy().into_owned(),
        "--apply".into(),
        "--batch".into(),
        "2".into(),
        "--journal".into(),
        journal.to_string_lossy().into_owned(),
    ]);
    let child = Command::new(binary())
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut watcher = rt.block_on(connect(&lib.truth.db_url));
    wait_until("batch 2 waits on the held row", || {
        scanner_waits_on_lock(&rt, &mut watcher)
    });
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    wait_until("SIGTERM is delivered (no longer pending)", || {
        !sigterm_pending(child.id())
    });
    rt.block_on(sqlx::query("ROLLBACK").execute(&mut holder))
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("batch 2 was rolled back whole"), "{err}");

    let events: Vec<serde_json::Value> = std::fs::read_to_string(&journal)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let marks: Vec<String> = events
        .iter()
        .filter(|e| !["change", "header", "run"].contains(&e["event"].as_str().unwrap()))
        .map(|e| e.to_string())
        .collect();
    assert_eq!(
        marks,
        vec![
            r#"{"batch":1,"event":"committed"}"#,
            r#"{"batch":2,"event":"rolled_back"}"#,
            r#"{"committed":1,"event":"interrupted"}"#,
        ],
        "the journal says what committed and what rolled back"
    );
    // Exactly batch 1 is in the database.
    let mut findings: Vec<Finding> = Vec::new();
    let summary = scan(&options(&lib.truth), &mut findings).unwrap();
    let still_moved = relink::plan(&findings, &summary.roots);
    assert_eq!(still_moved.len(), steps.len() - 2);
    assert!(!still_moved.contains(&steps[0]) && !still_moved.contains(&steps[1]));
    assert!(still_moved.contains(&steps[2]) && still_moved.contains(&steps[3]));

    let undo = run(&[
        "undo".into(),
        journal.to_string_lossy().into_owned(),
        "--db-url".into(),
        lib.truth.db_url.clone(),
    ]);
    assert_eq!(undo.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&undo.stdout).contains("restored 2 rows"));
    assert_eq!(dump(&lib), before, "undo restores every row exactly");
}

#[test]
fn disk_full_between_batches_keeps_the_committed_batch_undoable() {
    // Steps with long new paths, so that two fit in one 4 KiB page of journal and four do not.
    let lib = generate(Generation::V2_6, 30, false);
    let before = dump(&lib);
    let rt = runtime();
    let rows: Vec<(String, String)> = rt.block_on(async {
        let mut c = connect(&lib.truth.db_url).await;
        sqlx::query_as(
            "SELECT \"assetId\"::text, path FROM asset_file WHERE type = 'thumbnail' \
             ORDER BY \"assetId\" LIMIT 4",
        )
        .fetch_all(&mut c)
        .await
        .unwrap()
    });
    assert_eq!(rows.len(), 4);
    let found = lib.dir.join("thumb.webp");
    std::fs::write(&found, b"RIFF....WEBP").unwrap();
    let steps: Vec<RelinkStep> = rows
        .iter()
        .map(|(id, old)| RelinkStep {
            id: id.clone(),
            file: immich_integrity::FileKind::Thumbnail,
            old: old.clone(),
            new: format!("{old}.{}", "n".repeat(700)),
            found_at: found.clone(),
            owner: None,
            root: Some(lib.dir.clone()),
            row: None,
        })
        .collect();
    let disk = SmallDisk::mount(&lib.dir);
    disk.fill();
    // Free exactly one page: room for batch 1's lines and its commit mark, not for batch 2's.
    let filler = disk.0.join("filler");
    let len = std::fs::metadata(&filler).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&filler)
        .unwrap()
        .set_len(len - 4096)
        .unwrap();
    let journal = disk.0.join("relink.journal");
    let err = relink::apply(&lib.truth.db_url, &steps, &journal, 2)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("relink.journal") && err.contains("ENOSPC"),
        "{err}"
    );
    let text = std::fs::read_to_string(&journal).unwrap();
    assert!(
        text.contains(r#"{"event":"committed","batch":1}"#),
        "batch 1 committed: {text}"
    );
    assert!(!text.contains(r#""event":"committed","batch":2"#));
    // Exactly batch 1 is in the database.
    let now: Vec<String> = rt.block_on(async {
        let mut c = connect(&lib.truth.db_url).await;
        sqlx::query_scalar(
            "SELECT path FROM asset_file WHERE type = 'thumbnail' ORDER BY \"assetId\" LIMIT 4",
        )
        .fetch_all(&mut c)
        .await
        .unwrap()
    });
    assert_eq!(now[0], steps[0].new);
    assert_eq!(now[1], steps[1].new);
    assert_eq!(now[2], steps[2].old, "batch 2 never ran");
    assert_eq!(now[3], steps[3].old);
    // The journal (torn tail and all) undoes batch 1 exactly.
    assert_eq!(relink::undo(&lib.truth.db_url, &journal).unwrap(), 2);
    assert_eq!(dump(&lib), before);
}
