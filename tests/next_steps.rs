//! Every report ends with commands that fix what it found: run each `next_steps` command of a
//! generated library's report exactly as printed (through `sh -c`, from another folder), and
//! the rescan is clean apart from what only a backup (the restore list, exactly), a mount or a
//! person can fix. The undo hint relink prints is runnable as printed too.

mod common;

use common::*;
use immich_fixtures::Generation;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

const ADMIN_KEY: &str = "admin-key-for-next-steps";

/// Answers what `regenerate --via queue` asks Immich, as Immich does: who the key is
/// (`GET /api/api-keys/me`, `GET /api/users/me`) and starting a queue (`PUT /api/jobs/{name}`).
struct FakeImmich {
    url: String,
    started: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl FakeImmich {
    fn start() -> FakeImmich {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let started = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (started.clone(), stop.clone());
        std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        answer(stream, &s);
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
                }
            }
        });
        FakeImmich { url, started, stop }
    }
}

impl Drop for FakeImmich {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn answer(stream: TcpStream, started: &Mutex<Vec<String>>) {
    let mut r = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if r.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let (mut key, mut len) = (None, 0usize);
    loop {
        let mut h = String::new();
        r.read_line(&mut h).unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').unwrap();
        match k.trim().to_ascii_lowercase().as_str() {
            "x-api-key" => key = Some(v.trim().to_string()),
            "content-length" => len = v.trim().parse().unwrap(),
            _ => {}
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    let (status, text) = if key.as_deref() != Some(ADMIN_KEY) {
        (
            401,
            json!({"message": "Invalid API key", "error": "Unauthorized", "statusCode": 401}),
        )
    } else {
        match (method.as_str(), path.as_str()) {
            ("GET", "/api/api-keys/me") => (
                200,
                json!({"id": "6f1e0b4a-0000-4000-8000-000000000001", "name": "integrity",
                       "createdAt": "2026-11-01T00:00:00.000Z",
                       "updatedAt": "2026-11-01T00:00:00.000Z", "permissions": ["all"]}),
            ),
            ("GET", "/api/users/me") => (
                200,
                json!({"id": "6f1e0b4a-0000-4000-8000-000000000002", "email": "admin@example.com",
                       "name": "admin", "isAdmin": true, "status": "active"}),
            ),
            ("PUT", p) if p.starts_with("/api/jobs/") => {
                let b: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                assert_eq!(b["command"], "start", "{b}");
                started
                    .lock()
                    .unwrap()
                    .push(p["/api/jobs/".len()..].to_string());
                (
                    200,
                    json!({"jobCounts": {"active": 1, "completed": 0, "failed": 0, "delayed": 0,
                           "waiting": 0, "paused": 0},
                           "queueStatus": {"isActive": true, "isPaused": false}}),
                )
            }
            _ => (404, json!({"message": format!("Cannot {method} {path}")})),
        }
    };
    let text = text.to_string();
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        _ => "Not Found",
    };
    let mut s = stream;
    let _ = write!(
        s,
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json; charset=utf-8\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{text}",
        text.len()
    );
}

fn sh(command: &str, env: &[(&str, &str)]) -> std::process::Output {
    let mut c = std::process::Command::new("sh");
    c.arg("-c")
        .arg(command)
        .current_dir("/")
        .env_remove("DATABASE_URL");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn every_next_step_runs_as_printed_and_the_rescan_is_clean_but_for_the_restore_list() {
    let lib = generate(Generation::V2_6, 60, true);
    let server = FakeImmich::start();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let report = dir.path().join("report.jsonl");
    let state_s = state.to_string_lossy().into_owned();
    let env = [
        ("IMMICH_INTEGRITY_STATE_DIR", state_s.as_str()),
        ("IMMICH_SERVER", server.url.as_str()),
        ("IMMICH_API_KEY", ADMIN_KEY),
    ];
    let mut scan = vec![binary().to_string_lossy().into_owned(), "scan".into()];
    scan.extend(library_flags(&lib));
    scan.extend(["--as-user".into(), lib.truth.as_user.clone()]);
    let first = {
        let mut a = scan.clone();
        a.extend(["-o".into(), report.to_string_lossy().into_owned()]);
        sh(&immich_integrity::next_steps::shell_line(&a), &env)
    };
    assert_eq!(first.status.code(), Some(1), "{}", text(&first));
    let report_lines = lines(&report);
    let steps: Vec<&Value> = report_lines
        .iter()
        .filter(|l| l["type"] == "next_step")
        .collect();
    let kinds: Vec<&str> = steps.iter().map(|s| s["step"].as_str().unwrap()).collect();
    for want in [
        "mount",
        "relink_dry_run",
        "relink",
        "chown",
        "chmod",
        "regenerate_dry_run",
        "regenerate",
        "restore_from_backup",
        "review",
        "rescan",
    ] {
        assert!(kinds.contains(&want), "no {want} step in {kinds:?}");
    }
    // Never a password, and every path absolute.
    for s in &steps {
        if let Some(argv) = s["argv"].as_array() {
            let argv: Vec<&str> = argv.iter().map(|a| a.as_str().unwrap()).collect();
            assert!(argv[0].starts_with('/') || argv[0] == "chown" || argv[0] == "chmod");
            for w in argv.windows(2) {
                if matches!(
                    w[0],
                    "--from" | "--journal" | "--state" | "--media-root" | "--env-file"
                ) {
                    assert!(w[1].starts_with('/'), "{} {}", w[0], w[1]);
                }
            }
        }
    }

    let mut undo_hint = None;
    for s in &steps {
        let Some(command) = s["command"].as_str() else {
            continue;
        };
        let out = sh(command, &env);
        let step = s["step"].as_str().unwrap();
        let want = if step == "rescan" { Some(1) } else { Some(0) };
        assert_eq!(out.status.code(), want, "{step}: {command}\n{}", text(&out));
        let said = text(&out);
        if step == "relink" {
            undo_hint = said
                .lines()
                .find_map(|l| l.split_once("undo with: ").map(|(_, c)| c.to_string()));
        }
    }
    assert!(
        server
            .started
            .lock()
            .unwrap()
            .iter()
            .any(|q| q == "thumbnailGeneration"),
        "{:?}",
        server.started.lock().unwrap()
    );

    // The rescan: only what a backup, a mount or a person must fix is left.
    let after = dir.path().join("after.jsonl");
    let mut a = scan.clone();
    a.extend(["-o".into(), after.to_string_lossy().into_owned()]);
    let out = sh(&immich_integrity::next_steps::shell_line(&a), &env);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let left: Vec<Value> = lines(&after)
        .into_iter()
        .filter(|l| l["type"] == "finding")
        .collect();
    let restore_step = steps
        .iter()
        .find(|s| s["step"] == "restore_from_backup")
        .unwrap();
    let list_path = restore_step["list"].as_str().unwrap();
    let listed: BTreeSet<String> = std::fs::read_to_string(list_path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    let mut restore_left = BTreeSet::new();
    for f in &left {
        match f["repair"].as_str().unwrap() {
            "restore_from_backup" => {
                restore_left.insert(f["host_path"].as_str().unwrap().to_string());
            }
            "none" => {
                let fault = f["fault"].as_str().unwrap();
                let named = match fault {
                    "mount_missing" => steps.iter().any(|s| {
                        s["step"] == "mount"
                            && s["title"]
                                .as_str()
                                .unwrap()
                                .contains(f["host_path"].as_str().unwrap())
                    }),
                    "outside_root" => steps.iter().any(|s| s["step"] == "review"),
                    _ => false,
                };
                assert!(named, "{f} is named by no manual step");
            }
            other => panic!("a {other} finding survived its step: {f}"),
        }
    }
    assert_eq!(
        restore_left, listed,
        "the restore list names exactly what is left"
    );
    assert_eq!(listed.len() as u64, restore_step["files"].as_u64().unwrap());
    let want_restore: BTreeSet<String> = lib
        .truth
        .faults
        .iter()
        .filter(|t| {
            t.file.as_deref() == Some("original")
                && matches!(t.fault.as_str(), "missing" | "not_a_file")
        })
        .map(|t| {
            let rel = t
                .db_path
                .as_deref()
                .unwrap()
                .strip_prefix("/data/")
                .unwrap();
            lib.truth
                .media_root
                .join(rel)
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(listed, want_restore);

    // relink's undo hint runs as printed (absolute journal, the run's connection): the moved
    // rows are back.
    let hint = undo_hint.expect("relink --apply printed an undo hint");
    assert!(
        hint.contains(&format!("{}/relink.journal", state.display())),
        "{hint}"
    );
    let out = sh(&hint, &[]);
    assert_eq!(out.status.code(), Some(0), "{hint}\n{}", text(&out));
    let out = sh(
        &immich_integrity::next_steps::shell_line(&{
            let mut a = scan.clone();
            a.extend(["-f".into(), "jsonl".into()]);
            a
        }),
        &env,
    );
    let (findings, _) = parse_jsonl(&out.stdout);
    assert!(
        findings
            .iter()
            .any(|f| f.fault == immich_integrity::Fault::Moved),
        "undo put the moved rows back"
    );
}
