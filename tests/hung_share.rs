//! A share that stops answering never hangs the scan: the library is served through the slow
//! FUSE layer (`immich-fixture fuse`), which never answers any operation under one folder;
//! the scan gives up on that root after `--io-timeout`, reports it `unreachable` once with the
//! files it could not check, checks everything else exactly, exits 3 (incomplete), and
//! SIGTERM still ends it promptly with the report written while a thread is stuck.

mod common;

use common::*;
use immich_fixtures::slowmount::SlowMount;
use immich_fixtures::Generation;
use immich_integrity::Fault;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn fixture_bin() -> PathBuf {
    let bin = binary().with_file_name("immich-fixture");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace --bins`",
        bin.display()
    );
    bin
}

/// The scan's flags with every root of `lib` seen through `mnt` (a mount of the fixture's
/// folder).
fn flags_through(lib: &Lib, mnt: &Path) -> Vec<String> {
    let dir = &lib.dir;
    let moved = |p: &Path| mnt.join(p.strip_prefix(dir).unwrap()).display().to_string();
    let t = &lib.truth;
    let mut a = vec![
        "scan".to_string(),
        "--db-url".into(),
        t.db_url.clone(),
        "--media-root".into(),
        moved(&t.media_root),
        "--format".into(),
        "jsonl".into(),
        "--as-user".into(),
        t.as_user.clone(),
    ];
    for (c, h) in &t.maps {
        if c != &t.container_root {
            a.push("--map".into());
            a.push(format!("{c}={}", moved(h)));
        }
    }
    a
}

/// Whether process `pid` has ended as far as it can: gone, or its main thread exited (a
/// thread stuck in the kernel on the share, which no signal ends, keeps the rest of it until
/// the share answers or goes away).
fn leader_exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(st) => st
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
        Err(_) => true,
    }
}

/// Runs the CLI (report in `--output`), optionally sending `signal` after `signal_after`;
/// waits at most `limit` for its main thread to exit, then takes the mount away (which frees
/// threads stuck on it) and collects the exit status. Returns (status, report, time to exit).
fn run_on_mount(
    mut args: Vec<String>,
    mnt: SlowMount,
    signal: Option<(i32, Duration)>,
    limit: Duration,
) -> (Option<i32>, Vec<u8>, Duration, String) {
    let out_dir = tempfile::tempdir_in(base_dir()).unwrap();
    let report = out_dir.path().join("report.jsonl");
    args.extend(["--output".into(), report.display().to_string()]);
    let err_file = std::fs::File::create(out_dir.path().join("stderr")).unwrap();
    let mut child = Command::new(binary())
        .args(&args)
        .env_remove("DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(err_file)
        .spawn()
        .unwrap();
    let mut t = Instant::now();
    if let Some((sig, after)) = signal {
        std::thread::sleep(after);
        assert!(
            !leader_exited(child.id()),
            "the scan should still be stuck on the share"
        );
        t = Instant::now();
        // SAFETY: kill(2) of our own child.
        unsafe { libc::kill(child.id() as i32, sig) };
    }
    while !leader_exited(child.id()) && t.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = t.elapsed();
    drop(mnt);
    let status = if leader_exited(child.id()) {
        child.wait().unwrap().code()
    } else {
        let _ = child.kill();
        let _ = child.wait();
        None
    };
    let stderr = std::fs::read_to_string(out_dir.path().join("stderr")).unwrap_or_default();
    (
        status,
        std::fs::read(&report).unwrap_or_default(),
        took,
        stderr,
    )
}

fn external_files(lib: &Lib) -> Vec<PathBuf> {
    let ext = lib
        .truth
        .maps
        .iter()
        .find(|(c, _)| c == "/mnt/external/photos")
        .map(|(_, h)| h.clone())
        .expect("the fixture has the Photos library");
    walk_files(&ext)
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_share_that_stops_answering_is_unreachable_once_and_the_rest_is_exact() {
    let lib = generate(Generation::V2_6, 1000, false);
    let ext_files = external_files(&lib).len() as u64;
    assert!(ext_files >= 4, "{ext_files}");
    let mnt_dir = tempfile::tempdir_in(base_dir()).unwrap();

    // 1. Hangs during the scan: `2020/` of the library blocks, its root is given up on.
    {
        let mnt = SlowMount::start(
            &fixture_bin(),
            &lib.dir,
            &mnt_dir.path().join("m1"),
            &[
                "--delay-ms",
                "0",
                "--attr-ttl",
                "0",
                "--block-under",
                "external-photos/2020",
            ],
        )
        .unwrap();
        let mut args = flags_through(&lib, &mnt.mnt);
        args.extend(["--io-timeout".into(), "2s".into()]);
        let host = mnt.mnt.join("external-photos");
        let (status, report, took, stderr) =
            run_on_mount(args, mnt, None, Duration::from_secs(120));
        assert_eq!(status, Some(3), "exit 3 (incomplete): {stderr}");
        // Watchdog time plus a margin for a slow machine; without the watchdog it never ends.
        assert!(took < Duration::from_secs(60), "{took:?}");
        let (findings, summary) = parse_jsonl(&report);
        let unreachable: Vec<_> = findings
            .iter()
            .filter(|f| f.fault == Fault::Unreachable)
            .collect();
        assert_eq!(unreachable.len(), 1, "once per root: {findings:#?}");
        let u = unreachable[0];
        assert_eq!(u.db_path.as_deref(), Some("/mnt/external/photos"));
        assert_eq!(u.host_path.as_deref(), host.to_str());
        let n = u.affected.unwrap();
        assert!((1..=ext_files).contains(&n), "{n} of {ext_files}");
        assert!(u.detail.contains("did not return"), "{}", u.detail);
        // A clean library: nothing else is reported, every other file was checked.
        assert_eq!(findings.len(), 1, "{findings:#?}");
        assert_eq!(summary["not_checked"], n);
        assert_eq!(
            summary["files_checked"].as_u64().unwrap() + n,
            lib.truth.files_referenced,
            "{summary}"
        );
        assert_eq!(summary["completion"]["status"], "complete");
    }

    // 2. Hangs from the start (listing the library's root blocks): unreachable at setup,
    //    every one of its files not checked.
    {
        let mnt = SlowMount::start(
            &fixture_bin(),
            &lib.dir,
            &mnt_dir.path().join("m2"),
            &["--delay-ms", "0", "--block-under", "external-photos"],
        )
        .unwrap();
        let mut args = flags_through(&lib, &mnt.mnt);
        args.extend(["--io-timeout".into(), "1s".into()]);
        let (status, report, took, stderr) =
            run_on_mount(args, mnt, None, Duration::from_secs(120));
        assert_eq!(status, Some(3), "{stderr}");
        assert!(took < Duration::from_secs(60), "{took:?}");
        let (findings, summary) = parse_jsonl(&report);
        assert_eq!(findings.len(), 1, "{findings:#?}");
        assert_eq!(findings[0].fault, Fault::Unreachable);
        assert_eq!(findings[0].affected, Some(ext_files));
        assert_eq!(summary["not_checked"], ext_files);
    }
}

#[test]
fn sigterm_ends_a_scan_stuck_on_a_share_promptly_with_the_report() {
    let lib = generate(Generation::V2_6, 300, false);
    let mnt_dir = tempfile::tempdir_in(base_dir()).unwrap();
    let mnt = SlowMount::start(
        &fixture_bin(),
        &lib.dir,
        &mnt_dir.path().join("m"),
        &["--delay-ms", "0", "--block-under", "external-photos/2020"],
    )
    .unwrap();
    let mut args = flags_through(&lib, &mnt.mnt);
    // A watchdog that would wait ten minutes: only the signal ends this scan.
    args.extend(["--io-timeout".into(), "600s".into()]);
    let (status, report, took, stderr) = run_on_mount(
        args,
        mnt,
        Some((libc::SIGTERM, Duration::from_secs(3))),
        Duration::from_secs(60),
    );
    // Prompt: the pages in flight get two seconds, the stuck thread is not waited for.
    assert!(took < Duration::from_secs(30), "{took:?}");
    assert_eq!(status, Some(130), "{stderr}");
    let (_, summary) = parse_jsonl(&report);
    assert_eq!(summary["completion"]["status"], "interrupted", "{summary}");
}
