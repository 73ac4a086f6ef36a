//! The built binary on a generated library: JSONL contract, summary line, exit codes, and a
//! scan run unprivileged (setpriv) where the kernel itself refuses access.

mod common;

use common::*;
use immich_fixtures::Generation;
use std::path::PathBuf;
use std::process::Command;

fn scan_args(lib: &Lib) -> Vec<String> {
    let mut a = vec!["scan".to_string()];
    a.extend(library_flags(lib));
    a
}

use common::run_cli as run;

#[test]
fn jsonl_report_matches_ground_truth_and_exits_1() {
    let lib = generate(Generation::V1_137, 50, true);
    let mut args = scan_args(&lib);
    args.extend([
        "--as-user".into(),
        lib.truth.as_user.clone(),
        "--format".into(),
        "jsonl".into(),
    ]);
    let out = run(&args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (findings, summary) = parse_jsonl(&out.stdout);
    assert_same(&finding_keys(&findings), &truth_keys(&lib.truth.faults));
    assert_eq!(summary["summary"], true);
    assert_eq!(summary["findings"].as_u64(), Some(findings.len() as u64));
    assert_eq!(summary["schema"], "v1.136-v2.3");
    assert_eq!(summary["completion"]["status"], "complete");
    assert_eq!(summary["counts"]["original"]["moved"].as_u64(), Some(3));
    // Field names are the contract.
    let first: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    for key in [
        "asset_id",
        "owner_id",
        "file",
        "db_path",
        "host_path",
        "fault",
        "found_at",
        "repair",
        "detail",
    ] {
        assert!(first.get(key).is_some(), "missing field {key} in {first}");
    }
}

#[test]
fn clean_library_exits_0_and_table_has_summary_line() {
    let lib = generate(Generation::V2_6, 30, false);
    let out = run(&scan_args(&lib));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().unwrap();
    assert!(
        last.starts_with("immich-integrity: Immich v2.6.3 (schema v2.6-v2.7)")
            && last.contains(" 0 faults"),
        "{text}"
    );
    // Pointing at the folder above the media root works too: the .immich markers find it.
    let mut args = scan_args(&lib);
    args[4] = lib.dir.to_string_lossy().into_owned();
    let out = run(&args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn table_report_written_atomically_to_output_file() {
    let lib = generate(Generation::V1_112, 40, true);
    let report = lib.dir.join("report.txt");
    let mut args = scan_args(&lib);
    args.extend(["--output".into(), report.to_string_lossy().into_owned()]);
    let out = run(&args);
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "report went to the file, not stdout");
    let text = std::fs::read_to_string(&report).unwrap();
    assert!(text.contains("moved") && text.contains("relink"), "{text}");
    assert!(text.contains("mount_missing"), "{text}");
    let leftovers: Vec<_> = std::fs::read_dir(&lib.dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn unreachable_database_exits_2_without_leaking_the_password() {
    let out = run(&[
        "scan".into(),
        "--db-url".into(),
        "postgres://immich:hunter2secret@127.0.0.1:1/immich".into(),
        "--media-root".into(),
        "/tmp".into(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot connect to PostgreSQL"), "{err}");
    assert!(!err.contains("hunter2secret"), "{err}");
}

#[test]
fn bad_flags_exit_2() {
    let lib = generate(Generation::V2_6, 20, false);
    for (flag, value, says) in [
        ("--level", "deepest", "unknown level"),
        ("--as-user", "www-data", "--as-user wants"),
        ("--map", "nonsense", "--map wants"),
    ] {
        let mut args = scan_args(&lib);
        args.extend([flag.to_string(), value.to_string()]);
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{flag}: {err}");
    }
    // A media root that does not exist.
    let mut args = scan_args(&lib);
    args[4] = "/nonexistent/media".into();
    assert_eq!(run(&args).status.code(), Some(2));
}

#[test]
fn unprivileged_process_reports_what_the_kernel_refuses() {
    // Run the scanner itself as nobody (65534) without --as-user: the mode-000 original, the
    // 0600 thumbnail of uid 4242 and the files in the 0700 directory are unreadable for it.
    let lib = generate(Generation::V2_6, 40, true);
    let bin = binary();
    let mut dir = bin.parent();
    while let Some(d) = dir {
        // nobody must be able to reach the binary
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(d).unwrap().permissions());
        assert!(
            mode & 0o001 != 0,
            "{} is not searchable by other users",
            d.display()
        );
        dir = d.parent();
    }
    let mut args = scan_args(&lib);
    args.extend(["--format".into(), "jsonl".into()]);
    let out = Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .arg(&bin)
        .args(&args)
        .output()
        .expect("setpriv (util-linux) runs");
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (findings, _) = parse_jsonl(&out.stdout);
    assert_same(&finding_keys(&findings), &truth_keys(&lib.truth.faults));
    let refused = findings
        .iter()
        .filter(|f| f.detail.contains("EACCES"))
        .count();
    assert!(
        refused >= 1,
        "the 0700 directory is refused by the kernel itself: {findings:#?}"
    );
}

/// Starts a JSONL scan into `lib.dir/name` and gives it time to block on the lock.
fn spawn_blocked_scan(lib: &Lib, name: &str, extra: &[&str]) -> (std::process::Child, PathBuf) {
    let report = lib.dir.join(name);
    let mut args = scan_args(lib);
    args.extend([
        "--format".into(),
        "jsonl".into(),
        "--output".into(),
        report.to_string_lossy().into_owned(),
    ]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut child = Command::new(binary())
        .args(&args)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the scan should be waiting on the lock"
    );
    (child, report)
}

fn summary_of(report: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(report).expect("the report is flushed before exiting");
    serde_json::from_str(text.lines().last().unwrap()).unwrap()
}

#[test]
fn sigterm_while_the_database_is_blocked_flushes_the_report_and_exits_130() {
    let lib = generate(Generation::V2_6, 30, true);
    let lock = TableLock::take(&lib.truth.db_url, "asset");
    let (child, report) = spawn_blocked_scan(&lib, "interrupted.jsonl", &[]);
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    lock.release();
    assert_eq!(out.status.code(), Some(130));
    assert_eq!(summary_of(&report)["completion"]["status"], "interrupted");
}

/// With `--retries 0` a terminated backend ends the scan (with retries it reconnects and
/// completes: tests/reliability.rs).
#[test]
fn database_killed_mid_scan_exits_2_with_report_marked_failed() {
    let lib = generate(Generation::V1_135, 30, true);
    let mut lock = TableLock::take(&lib.truth.db_url, "assets");
    let (child, report) = spawn_blocked_scan(&lib, "failed.jsonl", &["--retries", "0"]);
    let killed: i64 = lock.rt.block_on(async {
        sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = 'immich-integrity' AND datname = current_database()) t",
        )
        .fetch_one(&mut lock.conn)
        .await
        .unwrap()
    });
    assert_eq!(killed, 1, "the scan's backend was found and terminated");
    let out = child.wait_with_output().unwrap();
    lock.release();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("scan stopped early") && err.contains("terminat"),
        "{err}"
    );
    assert_eq!(summary_of(&report)["completion"]["status"], "failed");
}

#[test]
fn env_file_alone_finds_the_ground_truth() {
    // An install as docker compose lays it out: .env and docker-compose.yml side by side,
    // UPLOAD_LOCATION relative, external libraries as bind mounts, the server's user set.
    let lib = generate(Generation::V2_6, 40, true);
    let t = &lib.truth;
    let db_name = t.db_url.rsplit('/').next().unwrap();
    std::fs::write(
        lib.dir.join(".env"),
        format!(
            "# Immich\nUPLOAD_LOCATION=./media\nDB_DATA_LOCATION=./postgres\nTZ=Etc/UTC\n\
             IMMICH_VERSION=release\nDB_HOSTNAME=127.0.0.1\nDB_USERNAME=postgres\n\
             DB_DATABASE_NAME={db_name}\n"
        ),
    )
    .unwrap();
    let mounts: String = t
        .maps
        .iter()
        .filter(|(c, _)| c != &t.container_root)
        .map(|(c, h)| format!("      - {}:{c}:ro\n", h.display()))
        .collect();
    std::fs::write(
        lib.dir.join("docker-compose.yml"),
        format!(
            "name: immich\nservices:\n  immich-server:\n    container_name: immich_server\n    \
             image: ghcr.io/immich-app/immich-server:${{IMMICH_VERSION:-release}}\n    \
             user: \"{}\"\n    volumes:\n      - ${{UPLOAD_LOCATION}}:/data\n      \
             - /etc/localtime:/etc/localtime:ro\n{mounts}    env_file:\n      - .env\n  \
             database:\n    volumes:\n      - ${{DB_DATA_LOCATION}}:/var/lib/postgresql/data\n",
            t.as_user
        ),
    )
    .unwrap();
    let out = run(&[
        "scan".into(),
        "--env-file".into(),
        lib.dir.join(".env").to_string_lossy().into_owned(),
        "--format".into(),
        "jsonl".into(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (findings, _) = parse_jsonl(&out.stdout);
    assert_same(&finding_keys(&findings), &truth_keys(&t.faults));
}

#[test]
fn csv_report_has_a_header_and_one_row_per_finding() {
    let lib = generate(Generation::V2_6, 40, true);
    let mut args = scan_args(&lib);
    args.extend([
        "--as-user".into(),
        lib.truth.as_user.clone(),
        "--format".into(),
        "csv".into(),
    ]);
    let out = run(&args);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("asset_id,owner_id,file,db_path,host_path,fault,found_at,repair,detail,affected,relink_to")
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), lib.truth.faults.len());
    assert!(rows
        .iter()
        .any(|r| r.contains(",moved,") && r.contains(",relink,")));
    assert!(String::from_utf8_lossy(&out.stderr).contains("faults"));
}
