//! `regenerate` / `refresh-metadata` against an Immich stand-in served from this test (std
//! `TcpListener`), implementing `POST /api/assets/jobs` and `PUT /api/jobs/{name}` with
//! Immich's request and response shapes: 204 / 200, 401 for an unknown key, 400 for assets the
//! key's user does not own, 403 for a non-admin starting a queue, and injected faults (429 with
//! Retry-After, 500, a response that never comes, the server gone and back on the same port).
//!
//! `--via queue` runs on real generated fixtures of every schema generation.

mod common;

use common::*;
use immich_fixtures::Generation;
use immich_integrity::api::{ApiKey, Client, Outcome, RetryPolicy};
use immich_integrity::regenerate::{self as regen, BatchStatus, JobName, Keys, Purpose, Target};
use immich_integrity::{scan, FileKind, Finding};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// The Immich stand-in.

/// A fault to inject into the next request that reaches the server.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// No fault: answer as Immich would.
    Pass,
    /// 308 to another address.
    Redirect,
    /// 429 with `Retry-After: secs`.
    TooMany(u64),
    /// 500 Internal Server Error.
    Internal,
    /// Hold the request this long, then close without an answer (the client times out).
    Hang(Duration),
    /// Answer this request, then close the listening socket for this long (connections are
    /// refused) and listen again on the same port.
    GoAwayAfter(Duration),
}

#[derive(Clone, Debug)]
struct Logged {
    method: String,
    path: String,
    key: Option<String>,
    body: Value,
    status: u16,
    at: Instant,
}

#[derive(Default)]
struct World {
    /// key -> user id
    keys: HashMap<String, String>,
    admins: HashSet<String>,
    /// key -> its permissions (absent: `["all"]`, what Immich's UI creates by default)
    permissions: HashMap<String, Vec<String>>,
    /// A future release without `PUT /api/jobs/{name}`: it answers 404 as for any unknown route.
    jobs_removed: bool,
    /// asset id -> owner id
    owners: HashMap<String, String>,
    faults: VecDeque<Fault>,
    log: Vec<Logged>,
    /// (job name, asset id) -> times queued
    queued: BTreeMap<(String, String), u32>,
    started: Vec<String>,
}

struct Server {
    port: u16,
    world: Arc<Mutex<World>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(world: World) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let world = Arc::new(Mutex::new(world));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (world, stop) = (world.clone(), stop.clone());
            std::thread::spawn(move || accept_loop(listener, port, world, stop))
        };
        Server {
            port,
            world,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn inject(&self, faults: &[Fault]) {
        self.world
            .lock()
            .unwrap()
            .faults
            .extend(faults.iter().cloned());
    }

    fn log(&self) -> Vec<Logged> {
        self.world.lock().unwrap().log.clone()
    }

    fn queued(&self) -> BTreeMap<(String, String), u32> {
        self.world.lock().unwrap().queued.clone()
    }

    fn clear_log(&self) {
        self.world.lock().unwrap().log.clear();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, port: u16, world: Arc<Mutex<World>>, stop: Arc<AtomicBool>) {
    let mut listener = Some(listener);
    let mut reopen_at: Option<Instant> = None;
    while !stop.load(Ordering::SeqCst) {
        if let Some(t) = reopen_at {
            if Instant::now() >= t {
                listener = Some(TcpListener::bind(("127.0.0.1", port)).unwrap());
                reopen_at = None;
            } else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
        }
        let l = listener.as_ref().unwrap();
        l.set_nonblocking(true).unwrap();
        match l.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                let w = world.clone();
                let fault = w.lock().unwrap().faults.pop_front();
                if let Some(Fault::GoAwayAfter(d)) = &fault {
                    // Answer this one, then refuse connections for a while.
                    handle(stream, &w, None);
                    listener = None;
                    reopen_at = Some(Instant::now() + *d);
                    continue;
                }
                std::thread::spawn(move || handle(stream, &w, fault));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// Method, path, lower-cased headers, body.
type Request = (String, String, HashMap<String, String>, Vec<u8>);

fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut r = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some((method, path, headers, body))
}

fn respond(mut stream: TcpStream, status: u16, extra: &str, body: &str) {
    let reason = match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        308 => "Permanent Redirect",
        429 => "Too Many Requests",
        _ => "Internal Server Error",
    };
    let text = if status == 204 {
        format!("HTTP/1.1 204 No Content\r\nconnection: close\r\n{extra}\r\n")
    } else {
        format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n{body}",
            body.len()
        )
    };
    let _ = stream.write_all(text.as_bytes());
    let _ = stream.flush();
}

fn error_body(status: u16, error: &str, message: Value) -> String {
    json!({"message": message, "error": error, "statusCode": status, "correlationId": "test"})
        .to_string()
}

const JOB_NAMES: [&str; 4] = [
    "regenerate-thumbnail",
    "refresh-metadata",
    "transcode-video",
    "refresh-faces",
];
const QUEUES: [&str; 5] = [
    "thumbnailGeneration",
    "metadataExtraction",
    "videoConversion",
    "faceDetection",
    "sidecar",
];

fn handle(stream: TcpStream, world: &Arc<Mutex<World>>, fault: Option<Fault>) {
    let Some((method, path, headers, body)) = read_request(&stream) else {
        return;
    };
    let key = headers.get("x-api-key").cloned();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (status, extra, text) = match fault {
        Some(Fault::TooMany(secs)) => (
            429,
            format!("retry-after: {secs}\r\n"),
            error_body(429, "Too Many Requests", json!("ThrottlerException")),
        ),
        Some(Fault::Redirect) => (
            308,
            "location: https://elsewhere.invalid/api/assets/jobs\r\n".to_string(),
            String::new(),
        ),
        Some(Fault::Internal) => (
            500,
            String::new(),
            error_body(500, "Internal Server Error", json!("Internal server error")),
        ),
        Some(Fault::Hang(d)) => {
            world.lock().unwrap().log.push(Logged {
                method,
                path,
                key,
                body,
                status: 0,
                at: Instant::now(),
            });
            std::thread::sleep(d);
            return; // closed without an answer
        }
        _ => immich(world, &method, &path, key.as_deref(), &body),
    };
    world.lock().unwrap().log.push(Logged {
        method,
        path,
        key,
        body,
        status,
        at: Instant::now(),
    });
    respond(stream, status, &extra, &text);
}

/// What Immich answers (no fault injected).
fn immich(
    world: &Arc<Mutex<World>>,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: &Value,
) -> (u16, String, String) {
    let mut w = world.lock().unwrap();
    let Some(user) = key.and_then(|k| w.keys.get(k)).cloned() else {
        return (
            401,
            String::new(),
            error_body(401, "Unauthorized", json!("Invalid API key")),
        );
    };
    let permissions = key
        .and_then(|k| w.permissions.get(k))
        .cloned()
        .unwrap_or_else(|| vec!["all".to_string()]);
    let may = |p: &str| permissions.iter().any(|x| x == "all" || x == p);
    match (method, path) {
        // The calling key itself; needs no permission (Immich's APIKeyController `getMine`).
        ("GET", "/api/api-keys/me") => (
            200,
            String::new(),
            json!({"id": "6f1e0b4a-0000-4000-8000-000000000001", "name": "integrity",
                   "createdAt": "2026-11-01T00:00:00.000Z", "updatedAt": "2026-11-01T00:00:00.000Z",
                   "permissions": permissions})
            .to_string(),
        ),
        ("GET", "/api/users/me") if !may("user.read") => (
            403,
            String::new(),
            error_body(
                403,
                "Forbidden",
                json!("Missing required permission: user.read"),
            ),
        ),
        ("GET", "/api/users/me") => (
            200,
            String::new(),
            json!({"id": user, "email": format!("{user}@example.com"), "name": "user",
                   "isAdmin": w.admins.contains(key.unwrap()), "storageLabel": null,
                   "profileImagePath": "", "avatarColor": "primary", "status": "active"})
            .to_string(),
        ),
        ("PUT", p) if p.starts_with("/api/jobs/") && w.jobs_removed => (
            404,
            String::new(),
            error_body(404, "Not Found", json!(format!("Cannot PUT {p}"))),
        ),
        ("PUT", p) if p.starts_with("/api/jobs/") && !may("job.create") => (
            403,
            String::new(),
            error_body(
                403,
                "Forbidden",
                json!("Missing required permission: job.create"),
            ),
        ),
        ("POST", "/api/assets/jobs") => {
            let name = body.get("name").and_then(Value::as_str).unwrap_or("");
            let ids: Option<Vec<String>> =
                body.get("assetIds").and_then(Value::as_array).map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                });
            let Some(ids) = ids.filter(|ids| {
                ids.iter().all(|i| uuid_like(i))
                    && body["assetIds"].as_array().map(Vec::len) == Some(ids.len())
            }) else {
                return (
                    400,
                    String::new(),
                    error_body(
                        400,
                        "Bad Request",
                        json!(["each value in assetIds must be a UUID"]),
                    ),
                );
            };
            if !JOB_NAMES.contains(&name) {
                return (
                    400,
                    String::new(),
                    error_body(
                        400,
                        "Bad Request",
                        json!([format!(
                            "name must be one of the following values: {}",
                            JOB_NAMES.join(", ")
                        )]),
                    ),
                );
            }
            // Owner-only (requireAccess AssetUpdate), even for admins.
            if ids.iter().any(|i| w.owners.get(i) != Some(&user)) {
                return (
                    400,
                    String::new(),
                    error_body(
                        400,
                        "Bad Request",
                        json!("Not found or no asset.update access"),
                    ),
                );
            }
            for id in ids {
                *w.queued.entry((name.to_string(), id)).or_default() += 1;
            }
            (204, String::new(), String::new())
        }
        ("PUT", p) if p.starts_with("/api/jobs/") => {
            let queue = &p["/api/jobs/".len()..];
            if !w.admins.contains(key.unwrap()) {
                return (
                    403,
                    String::new(),
                    error_body(403, "Forbidden", json!("Forbidden")),
                );
            }
            let ok = QUEUES.contains(&queue)
                && body.get("command").and_then(Value::as_str) == Some("start")
                && body.get("force").is_some_and(Value::is_boolean);
            if !ok {
                return (
                    400,
                    String::new(),
                    error_body(400, "Bad Request", json!(["bad job command"])),
                );
            }
            w.started.push(format!(
                "{queue} force={}",
                body["force"].as_bool().unwrap()
            ));
            (
                200,
                String::new(),
                json!({"jobCounts": {"active": 1, "completed": 0, "failed": 0, "delayed": 0, "waiting": 0, "paused": 0},
                       "queueStatus": {"isActive": true, "isPaused": false}})
                .to_string(),
            )
        }
        _ => (
            404,
            String::new(),
            error_body(404, "Not Found", json!(format!("Cannot {method} {path}"))),
        ),
    }
}

fn uuid_like(s: &str) -> bool {
    s.len() == 36 && s.chars().filter(|c| *c == '-').count() == 4
}

// ---------------------------------------------------------------------------------------------
// Helpers.

fn uuid(n: u32, kind: u32) -> String {
    format!("{kind:08x}-0000-4000-8000-{n:012x}")
}

/// `n` synthetic targets (thumbnails) for `owner`.
fn targets_for(owner: &str, kind: u32, n: u32) -> Vec<Target> {
    (0..n)
        .map(|i| Target {
            asset_id: uuid(i, kind),
            owner_id: owner.to_string(),
            file: FileKind::Thumbnail,
            job: JobName::RegenerateThumbnail,
            db_path: None,
            host_path: None,
            fault: immich_integrity::Fault::Missing,
        })
        .collect()
}

fn fast_retry(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        attempts,
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_secs(5),
        timeout: Duration::from_millis(700),
    }
}

fn keyring(pairs: &[(&str, &str)]) -> Keys {
    let mut k = Keys::default();
    for (owner, key) in pairs {
        k.add_pair(&format!("{owner}={key}")).unwrap();
    }
    k
}

fn run(
    server: &Server,
    keys: &Keys,
    batches: &[regen::Batch],
    state: Option<&Path>,
    policy: RetryPolicy,
) -> regen::ApiReport {
    let client = Client::new(&server.url(), policy).unwrap();
    regen::run_api(
        regen::ApiRun {
            client: &client,
            keys,
            state,
            cancel: None,
            on_result: None,
        },
        batches,
        0,
    )
    .unwrap()
}

const KEY_A: &str = "KEYa-7d1f0c2b9e4a4b8c";
const KEY_B: &str = "KEYb-0e9d8c7b6a5f4e3d";
const ADMIN: &str = "KEYadmin-55aa55aa55aa";
/// An admin's key created with only `user.read` and `asset.read`.
const KEY_NO_JOB: &str = "KEYnojob-0b0b0b0b0b0b";

fn owner(n: u32) -> String {
    uuid(n, 0xeeee)
}

// ---------------------------------------------------------------------------------------------
// --via api: batching, keys, state, faults.

#[test]
fn batches_carry_only_their_owners_ids_with_the_owners_key_and_rerun_sends_nothing() {
    let (o1, o2, o3) = (owner(1), owner(2), owner(3));
    let mut t = targets_for(&o1, 1, 1200);
    t.extend(targets_for(&o2, 2, 300));
    t.extend(targets_for(&o3, 3, 50));
    // A preview and a thumbnail of the same asset are one id.
    let mut dup = t[0].clone();
    dup.file = FileKind::Preview;
    t.push(dup);
    let mut world = World::default();
    world.keys.insert(KEY_A.into(), o1.clone());
    world.keys.insert(KEY_B.into(), o2.clone());
    for x in &t {
        world.owners.insert(x.asset_id.clone(), x.owner_id.clone());
    }
    let server = Server::start(world);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.jsonl");
    let keys = keyring(&[(&o1, KEY_A), (&o2, KEY_B)]);

    let batches = regen::plan_batches(
        &t,
        500,
        &regen::load_state(&state, Some(&server.url())).unwrap(),
    );
    let report = run(&server, &keys, &batches, Some(&state), fast_retry(3));

    let log = server.log();
    let sizes: Vec<(String, usize)> = log
        .iter()
        .map(|l| {
            (
                l.key.clone().unwrap(),
                l.body["assetIds"].as_array().unwrap().len(),
            )
        })
        .collect();
    assert_eq!(
        sizes,
        vec![
            (KEY_A.to_string(), 500),
            (KEY_A.to_string(), 500),
            (KEY_A.to_string(), 200),
            (KEY_B.to_string(), 300),
        ],
        "batches of at most 500, per owner, each with its owner's key"
    );
    for l in &log {
        assert_eq!(
            (l.method.as_str(), l.path.as_str()),
            ("POST", "/api/assets/jobs")
        );
        assert_eq!(l.status, 204);
        assert_eq!(l.body["name"], "regenerate-thumbnail");
        let user = if l.key.as_deref() == Some(KEY_A) {
            &o1
        } else {
            &o2
        };
        for id in l.body["assetIds"].as_array().unwrap() {
            assert_eq!(
                server.world.lock().unwrap().owners[id.as_str().unwrap()],
                *user,
                "only the key owner's ids"
            );
        }
    }
    let queued = server.queued();
    assert_eq!(queued.len(), 1500);
    assert!(queued.values().all(|n| *n == 1));
    assert!(
        !queued.keys().any(|(_, id)| id.starts_with("00000003")),
        "the keyless owner's assets are never sent"
    );
    assert_eq!(report.owners_without_key, vec![o3.clone()]);
    assert_eq!(report.owners[&o1].batches_accepted, 3);
    assert_eq!(report.owners[&o2].batches_accepted, 1);
    assert_eq!(report.owners[&o3].batches_skipped, 1);
    assert_eq!(report.owners[&o3].assets_skipped, 50);
    assert!(!report.all_accepted());

    // The rerun reads the state file: nothing is queued twice.
    let done = regen::load_state(&state, Some(&server.url())).unwrap();
    assert_eq!(done.len(), 1500);
    assert!(
        regen::load_state(&state, Some("http://another-server:2283"))
            .unwrap()
            .is_empty(),
        "a state file only speaks for the server it was written against"
    );
    let again = regen::plan_batches(&t, 500, &done);
    assert_eq!(again.len(), 1, "only the keyless owner's batch is left");
    assert_eq!(again[0].owner_id, o3);
    server.clear_log();
    run(&server, &keys, &again, Some(&state), fast_retry(3));
    assert!(server.log().is_empty());
    assert!(server.queued().values().all(|n| *n == 1));

    let text = std::fs::read_to_string(&state).unwrap();
    assert!(!text.contains(KEY_A) && !text.contains(KEY_B));
}

#[test]
fn retries_429_500_and_timeouts_honouring_retry_after() {
    let o1 = owner(1);
    let t = targets_for(&o1, 1, 30);
    let mut world = World::default();
    world.keys.insert(KEY_A.into(), o1.clone());
    for x in &t {
        world.owners.insert(x.asset_id.clone(), o1.clone());
    }
    let server = Server::start(world);
    server.inject(&[
        Fault::TooMany(1),
        Fault::Internal,
        Fault::Hang(Duration::from_millis(1500)),
        Fault::TooMany(0),
    ]);
    let batches = regen::plan_batches(&t, 10, &HashSet::new());
    let keys = keyring(&[(&o1, KEY_A)]);
    let report = run(&server, &keys, &batches, None, fast_retry(6));
    assert!(report.all_accepted(), "{report:#?}");
    let attempts: Vec<u32> = report
        .results
        .iter()
        .map(|r| match r.status {
            BatchStatus::Accepted { attempts } => attempts,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(
        attempts,
        vec![5, 1, 1],
        "the first batch met all four faults"
    );
    let log = server.log();
    let statuses: Vec<u16> = log.iter().map(|l| l.status).collect();
    // 0 = the request that got no answer (logged when it arrived).
    assert_eq!(statuses, vec![429, 500, 0, 429, 204, 204, 204]);
    // Retry-After: 1 was honoured: the second request came at least a second after the first.
    assert!(
        log[1].at.duration_since(log[0].at) >= Duration::from_millis(950),
        "{:?}",
        log[1].at.duration_since(log[0].at)
    );
    assert!(server.queued().values().all(|n| *n == 1));
    assert_eq!(server.queued().len(), 30);
}

#[test]
fn gives_up_after_the_bounded_attempts_and_reports_the_batch_failed() {
    let o1 = owner(1);
    let t = targets_for(&o1, 1, 4);
    let mut world = World::default();
    world.keys.insert(KEY_A.into(), o1.clone());
    for x in &t {
        world.owners.insert(x.asset_id.clone(), o1.clone());
    }
    let server = Server::start(world);
    server.inject(&[Fault::Internal; 4]);
    let batches = regen::plan_batches(&t, 2, &HashSet::new());
    let report = run(
        &server,
        &keyring(&[(&o1, KEY_A)]),
        &batches,
        None,
        fast_retry(4),
    );
    // The first batch met four 500s in four attempts: failed. The second went through.
    match &report.results[0].status {
        BatchStatus::Failed { reason, .. } => {
            assert!(
                reason.contains("gave up after 4 attempts") && reason.contains("500"),
                "{reason}"
            )
        }
        s => panic!("{s:?}"),
    }
    assert!(matches!(
        report.results[1].status,
        BatchStatus::Accepted { attempts: 1 }
    ));
    assert_eq!(server.log().len(), 5);
    assert_eq!(report.owners[&o1].batches_failed, 1);
}

#[test]
fn survives_the_server_going_away_half_way() {
    let o1 = owner(1);
    let t = targets_for(&o1, 1, 40);
    let mut world = World::default();
    world.keys.insert(KEY_A.into(), o1.clone());
    for x in &t {
        world.owners.insert(x.asset_id.clone(), o1.clone());
    }
    let server = Server::start(world);
    // The second request is answered, then connections are refused for 400 ms.
    server.inject(&[
        Fault::Hang(Duration::ZERO),
        Fault::GoAwayAfter(Duration::from_millis(400)),
    ]);
    // Fault::Hang(0) answers nothing on the first request: a reset connection.
    let batches = regen::plan_batches(&t, 10, &HashSet::new());
    let report = run(
        &server,
        &keyring(&[(&o1, KEY_A)]),
        &batches,
        None,
        fast_retry(10),
    );
    assert!(report.all_accepted(), "{report:#?}");
    let attempts: Vec<u32> = report
        .results
        .iter()
        .map(|r| match r.status {
            BatchStatus::Accepted { attempts } => attempts,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(attempts[0], 2, "a dropped connection is retried");
    assert!(
        attempts[1] > 1,
        "the batch after the server went away needed retries: {attempts:?}"
    );
    assert_eq!(server.queued().len(), 40);
    assert!(server.queued().values().all(|n| *n == 1), "none twice");
}

#[test]
fn bad_key_is_401_for_that_owner_only_and_foreign_assets_are_isolated() {
    let (o1, o2) = (owner(1), owner(2));
    let mut t = targets_for(&o1, 1, 8);
    t.extend(targets_for(&o2, 2, 6));
    let mut world = World::default();
    world.keys.insert(KEY_A.into(), o1.clone());
    world.keys.insert(KEY_B.into(), o2.clone());
    for x in &t {
        world.owners.insert(x.asset_id.clone(), x.owner_id.clone());
    }
    // The report says asset 1:5 is o1's, but Immich knows it as o2's (foreign to o1's key).
    let foreign = uuid(5, 1);
    world.owners.insert(foreign.clone(), o2.clone());
    let server = Server::start(world);
    let keys = keyring(&[(&o1, KEY_A), (&o2, "KEY-wrong-for-o2")]);
    let batches = regen::plan_batches(&t, 4, &HashSet::new());
    let report = run(&server, &keys, &batches, None, fast_retry(3));

    // o1: the batch holding the foreign id was split until only that id was refused.
    let failed: Vec<&regen::BatchResult> = report
        .results
        .iter()
        .filter(|r| r.owner_id == o1 && matches!(r.status, BatchStatus::Failed { .. }))
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].asset_ids, vec![foreign.clone()]);
    match &failed[0].status {
        BatchStatus::Failed {
            http_status,
            reason,
        } => {
            assert_eq!(*http_status, Some(400));
            assert!(
                reason.contains("Not found or no asset.update access"),
                "{reason}"
            );
        }
        _ => unreachable!(),
    }
    let queued = server.queued();
    assert_eq!(
        queued
            .keys()
            .filter(|(_, id)| id.starts_with("00000001"))
            .count(),
        7,
        "every other id of o1 was queued"
    );
    // o2: the wrong key gets 401 once; its other batch is not sent.
    let o2_results: Vec<&regen::BatchResult> =
        report.results.iter().filter(|r| r.owner_id == o2).collect();
    assert!(matches!(
        &o2_results[0].status,
        BatchStatus::Failed { http_status: Some(401), reason } if reason.contains("not accepted (401)")
    ));
    assert!(matches!(o2_results[1].status, BatchStatus::Skipped { .. }));
    assert_eq!(
        server.log().iter().filter(|l| l.status == 401).count(),
        1,
        "no retry on 401"
    );
    assert!(!queued.keys().any(|(_, id)| id.starts_with("00000002")));
    assert_eq!(report.owners[&o2].batches_failed, 1);
    assert_eq!(report.owners[&o2].batches_skipped, 1);
    let debug = format!("{report:?}{keys:?}");
    assert!(!debug.contains(KEY_A) && !debug.contains("KEY-wrong-for-o2"));
}

#[test]
fn a_redirect_is_not_followed_and_not_taken_for_success() {
    let o1 = owner(1);
    let t = targets_for(&o1, 1, 2);
    let mut world = World::default();
    world.keys.insert(KEY_A.into(), o1.clone());
    for x in &t {
        world.owners.insert(x.asset_id.clone(), o1.clone());
    }
    let server = Server::start(world);
    server.inject(&[Fault::Redirect]);
    let batches = regen::plan_batches(&t, 10, &HashSet::new());
    let report = run(
        &server,
        &keyring(&[(&o1, KEY_A)]),
        &batches,
        None,
        fast_retry(3),
    );
    match &report.results[0].status {
        BatchStatus::Failed {
            http_status: Some(308),
            reason,
        } => assert!(
            reason.contains("redirected to https://elsewhere.invalid"),
            "{reason}"
        ),
        s => panic!("{s:?}"),
    }
    assert_eq!(server.log().len(), 1, "not retried, not followed");
    assert!(server.queued().is_empty());
}

#[test]
fn start_queue_needs_an_admin_key() {
    let o1 = owner(1);
    let mut world = World::default();
    world.keys.insert(KEY_A.into(), o1.clone());
    world.keys.insert(ADMIN.into(), owner(9));
    world.admins.insert(ADMIN.into());
    let server = Server::start(world);
    let client = Client::new(&server.url(), fast_retry(3)).unwrap();
    match client.start_queue(&ApiKey::new(KEY_A).unwrap(), "thumbnailGeneration") {
        Outcome::Rejected { status: 403, .. } => {}
        o => panic!("{o:?}"),
    }
    assert_eq!(
        client.start_queue(&ApiKey::new(ADMIN).unwrap(), "thumbnailGeneration"),
        Outcome::Accepted {
            status: 200,
            attempts: 1
        }
    );
    assert_eq!(
        server.world.lock().unwrap().started,
        vec!["thumbnailGeneration force=false".to_string()]
    );
}

// ---------------------------------------------------------------------------------------------
// The CLI on a real fixture: per-owner keys, state file, dry run, secrets.

/// Owner of every asset, from the fixture's database.
fn asset_owners(lib: &Lib) -> HashMap<String, String> {
    let table = lib.truth.generation.tables().assets;
    runtime().block_on(async {
        let mut c = connect(&lib.truth.db_url).await;
        let rows: Vec<(String, String)> = sqlx::query_as(&format!(
            "SELECT id::text, \"ownerId\"::text FROM \"{table}\""
        ))
        .fetch_all(&mut c)
        .await
        .unwrap();
        rows.into_iter().collect()
    })
}

fn cli(args: &[String]) -> std::process::Output {
    std::process::Command::new(binary())
        .args(args)
        .env_remove("IMMICH_API_KEY")
        .env_remove("IMMICH_SERVER")
        .output()
        .unwrap()
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn cli_regenerate_via_api_on_a_generated_library() {
    let lib = generate(Generation::V2_6, 60, true);
    let dir = lib.dir.join("regen-cli");
    std::fs::create_dir_all(&dir).unwrap();
    let report_jsonl = dir.join("scan.jsonl");
    let mut scan_args = vec!["scan".to_string()];
    scan_args.extend(library_flags(&lib));
    scan_args.extend([
        "--format".into(),
        "jsonl".into(),
        "--output".into(),
        report_jsonl.to_string_lossy().into_owned(),
    ]);
    let out = cli(&scan_args);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    let findings: Vec<Finding> = std::fs::read_to_string(&report_jsonl)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let targets = regen::targets(&findings, Purpose::Derivatives);
    assert!(targets.len() >= 3, "{targets:#?}");
    let owners: Vec<String> = {
        let mut o: Vec<String> = targets.iter().map(|t| t.owner_id.clone()).collect();
        o.sort();
        o.dedup();
        o
    };
    let mut world = World {
        owners: asset_owners(&lib),
        ..Default::default()
    };
    let mut keys = Vec::new();
    for (n, o) in owners.iter().enumerate() {
        let k = format!("KEY-owner{n}-f00dfeedbeef");
        world.keys.insert(k.clone(), o.clone());
        keys.push((o.clone(), k));
    }
    let server = Server::start(world);
    let keyfile = dir.join("keys");
    std::fs::write(
        &keyfile,
        keys.iter()
            .map(|(o, k)| format!("# owner\n{o}={k}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let state = dir.join("state");
    let report = dir.join("report.json");
    let base = |extra: &[&str]| {
        let mut a: Vec<String> = vec!["regenerate".into()];
        a.extend(library_flags(&lib));
        a.extend([
            "--from".into(),
            report_jsonl.to_string_lossy().into_owned(),
            "--server".into(),
            server.url(),
            "--api-keys-file".into(),
            keyfile.to_string_lossy().into_owned(),
            "--state".into(),
            state.to_string_lossy().into_owned(),
            "--report".into(),
            report.to_string_lossy().into_owned(),
            "--batch".into(),
            "2".into(),
            "--retry-delay-ms".into(),
            "10".into(),
        ]);
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };

    // Dry run: prints the requests, sends nothing.
    let dry = cli(&base(&[]));
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry));
    let out = text(&dry);
    assert!(
        out.contains("POST ") && out.contains("/api/assets/jobs") && out.contains("dry run:"),
        "{out}"
    );
    assert!(server.log().is_empty(), "a dry run sends nothing");
    assert!(!state.exists());

    // Applied, with faults on the way.
    server.inject(&[Fault::TooMany(0), Fault::Internal]);
    let applied = cli(&base(&["--apply"]));
    let out = text(&applied);
    assert_eq!(applied.status.code(), Some(0), "{out}");
    let want: HashSet<(String, String)> = targets
        .iter()
        .map(|t| (t.job.as_str().to_string(), t.asset_id.clone()))
        .collect();
    let got: HashSet<(String, String)> = server.queued().keys().cloned().collect();
    assert_eq!(got, want, "exactly the regenerate targets were queued");
    for l in server.log() {
        let n = l.body["assetIds"].as_array().unwrap().len();
        assert!(n <= 2);
        let key_owner = &keys
            .iter()
            .find(|(_, k)| Some(k) == l.key.as_ref())
            .unwrap()
            .0;
        for id in l.body["assetIds"].as_array().unwrap() {
            assert_eq!(
                &server.world.lock().unwrap().owners[id.as_str().unwrap()],
                key_owner
            );
        }
    }
    assert!(out.contains("batches accepted"), "{out}");

    // Rerun: the state file prevents queueing twice.
    let before = server.log().len();
    let rerun = cli(&base(&["--apply"]));
    assert_eq!(rerun.status.code(), Some(0), "{}", text(&rerun));
    assert_eq!(server.log().len(), before, "nothing sent again");
    assert!(server.queued().values().all(|n| *n == 1));
    assert!(text(&rerun).contains("already queued"));

    // An owner without a key: reported, not sent, exit 1.
    std::fs::remove_file(&state).unwrap();
    let (o0, k0) = &keys[0];
    std::fs::write(&keyfile, format!("{o0}={k0}\n")).unwrap();
    let partial = cli(&base(&["--apply"]));
    let out_partial = text(&partial);
    if owners.len() > 1 {
        assert_eq!(partial.status.code(), Some(1), "{out_partial}");
        assert!(out_partial.contains("has no API key"), "{out_partial}");
    }

    // A wrong key: 401, exit 1, a clear message.
    std::fs::remove_file(&state).unwrap();
    std::fs::write(&keyfile, format!("{o0}=KEY-not-known-1234\n")).unwrap();
    let bad = cli(&base(&["--apply"]));
    let out_bad = text(&bad);
    assert_eq!(bad.status.code(), Some(1), "{out_bad}");
    assert!(out_bad.contains("401"), "{out_bad}");

    // No key string in any output or file.
    let mut everything = format!("{out}{}{out_partial}{out_bad}", text(&dry));
    for f in [&state, &report, &report_jsonl] {
        everything.push_str(&std::fs::read_to_string(f).unwrap_or_default());
    }
    for (_, k) in &keys {
        assert!(!everything.contains(k.as_str()), "a key leaked");
    }
    assert!(!everything.contains("KEY-not-known-1234"));
}

#[test]
fn cli_refuses_bad_keys_and_urls_without_echoing_them() {
    let secret = "S3CRET with space";
    let out = cli(&[
        "regenerate".into(),
        "--from".into(),
        "/nonexistent.jsonl".into(),
        "--api-key".into(),
        secret.into(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!text(&out).contains("S3CRET"), "{}", text(&out));
    let out = cli(&[
        "regenerate".into(),
        "--from".into(),
        "/nonexistent.jsonl".into(),
        "--api-key-for".into(),
        "not-a-uuid=S3CRETKEY".into(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!text(&out).contains("S3CRETKEY"), "{}", text(&out));
    let out = cli(&[
        "regenerate".into(),
        "--from".into(),
        "/nonexistent.jsonl".into(),
        "--apply".into(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("--server"), "{}", text(&out));
    let help = cli(&["regenerate".into(), "--help".into()]);
    let h = String::from_utf8_lossy(&help.stdout);
    assert!(
        h.contains("--api-key-for") && h.contains("[env: IMMICH_API_KEY]"),
        "{h}"
    );
}

// ---------------------------------------------------------------------------------------------
// --via queue on every schema generation.

/// Every row of every table queue mode may touch, as text, in a stable order.
fn dump(lib: &Lib) -> String {
    let t = lib.truth.generation.tables();
    let mut tables = vec![t.assets.to_string()];
    if let Some(f) = t.asset_files {
        tables.push(f.to_string());
    }
    tables.push("asset_job_status".into());
    // v3: rows deleted through ON DELETE CASCADE with an asset_file row come back with it.
    tables.push("integrity_report".into());
    runtime().block_on(async {
        let mut c = connect(&lib.truth.db_url).await;
        let mut out = String::new();
        for table in tables {
            let exists: bool = sqlx::query_scalar("SELECT to_regclass($1) IS NOT NULL")
                .bind(format!("public.\"{table}\""))
                .fetch_one(&mut c)
                .await
                .unwrap();
            if !exists {
                continue;
            }
            // Immich's updated_at() trigger re-stamps these on every UPDATE; undo restores
            // values, not stamps.
            let sql = format!(
                "SELECT COALESCE(string_agg(r::text, E'\\n' ORDER BY r::text), '') \
                 FROM (SELECT to_jsonb(t) - 'updatedAt' - 'updateId' AS r FROM \"{table}\" t) d"
            );
            let rows: String = sqlx::query_scalar(&sql).fetch_one(&mut c).await.unwrap();
            out.push_str(&rows);
            out.push('\n');
        }
        out
    })
}

/// The whole database's data, as `pg_dump --data-only` prints it (row order is physical, so
/// this is for "nothing changed"; [`dump`] compares restored rows).
fn pg_dump(lib: &Lib) -> String {
    let out = std::process::Command::new("pg_dump")
        .args(["--data-only", "--no-owner", "--dbname", &lib.truth.db_url])
        .output()
        .expect("pg_dump (postgresql-client, installed by scripts/setup.sh)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("COPY "), "pg_dump printed no data");
    // `\restrict KEY` / `\unrestrict KEY` carry a random key that differs on every run.
    text.lines()
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Adds Immich's `asset_job_status` with a `metadataExtractedAt` for every asset, and removes
/// one sidecar file from disk so the scan reports it.
fn arrange_sidecar_fault(lib: &Lib) -> String {
    let t = lib.truth.generation.tables();
    let (sidecar_sql, asset) = if lib.truth.generation.sidecar_in_asset_file() {
        (
            format!(
                "SELECT f.\"assetId\"::text, f.path FROM \"{}\" f JOIN \"{}\" a ON a.id = f.\"assetId\" WHERE f.type = 'sidecar' AND a.\"deletedAt\" IS NULL ORDER BY 1 LIMIT 1",
                t.asset_files.unwrap(),
                t.assets
            ),
            t.assets,
        )
    } else {
        (
            format!(
                "SELECT id::text, \"sidecarPath\" FROM \"{}\" WHERE \"sidecarPath\" IS NOT NULL AND \"sidecarPath\" <> '' AND \"deletedAt\" IS NULL ORDER BY 1 LIMIT 1",
                t.assets
            ),
            t.assets,
        )
    };
    runtime().block_on(async {
        let mut c = connect(&lib.truth.db_url).await;
        sqlx::query(&format!(
            "CREATE TABLE IF NOT EXISTS asset_job_status (\"assetId\" uuid PRIMARY KEY REFERENCES \"{asset}\"(id) ON DELETE CASCADE, \"metadataExtractedAt\" timestamptz)"
        ))
        .execute(&mut c)
        .await
        .unwrap();
        sqlx::query(&format!(
            "INSERT INTO asset_job_status (\"assetId\", \"metadataExtractedAt\") \
             SELECT id, '2024-03-05 06:07:08.123456+00' FROM \"{asset}\" ON CONFLICT (\"assetId\") \
             DO UPDATE SET \"metadataExtractedAt\" = EXCLUDED.\"metadataExtractedAt\""
        ))
        .execute(&mut c)
        .await
        .unwrap();
        let (id, path): (String, String) = sqlx::query_as(&sidecar_sql).fetch_one(&mut c).await.unwrap();
        let host = lib.truth.map_path(&path).unwrap();
        std::fs::remove_file(&host).unwrap_or_else(|e| panic!("{}: {e}", host.display()));
        id
    })
}

fn queue_generation(generation: Generation) {
    let lib = generate(generation, 50, true);
    let sidecar_asset = arrange_sidecar_fault(&lib);
    let before = dump(&lib);
    let reports_before = report_rows(&lib);
    let whole_before = pg_dump(&lib);
    let mut findings: Vec<Finding> = Vec::new();
    scan(&options(&lib.truth), &mut findings).unwrap();
    let mut targets = regen::targets(&findings, Purpose::Derivatives);
    let derivative_targets = targets.len();
    assert!(derivative_targets >= 3, "{targets:#?}");
    let meta = regen::targets(&findings, Purpose::Metadata);
    assert_eq!(meta.len(), 1, "{meta:#?}");
    assert_eq!(meta[0].asset_id, sidecar_asset);
    targets.extend(meta);

    // Planning (the dry run) reads only.
    let plan = regen::plan_queue(&options(&lib.truth), &targets).unwrap();
    assert_eq!(
        pg_dump(&lib),
        whole_before,
        "scanning and planning change nothing"
    );
    assert!(plan.skipped.is_empty(), "{:#?}", plan.skipped);
    // What the changes also cause is named before anything runs: on Immich's own DDL the
    // updated_at() trigger of the asset table (thumbhash is cleared), and on v3 the report rows
    // that go with a deleted asset_file row.
    let effects = plan.side_effects.join("\n");
    if generation.upstream_ddl().is_some() {
        assert!(
            effects.contains("asset_updatedAt (updated_at)"),
            "{effects}"
        );
    } else {
        assert!(
            effects.is_empty(),
            "our hand-made schemas have no triggers: {effects}"
        );
    }
    assert_eq!(
        effects.contains("rows of integrity_report are deleted with them"),
        generation.has_integrity_report(),
        "{effects}"
    );
    let mut queues = plan.queues.clone();
    queues.sort();
    assert_eq!(
        queues,
        vec![
            "metadataExtraction",
            "thumbnailGeneration",
            "videoConversion"
        ]
    );

    let mut world = World::default();
    world.keys.insert(ADMIN.into(), owner(9));
    world.admins.insert(ADMIN.into());
    let server = Server::start(world);
    server.inject(&[Fault::Internal]);
    let client = Client::new(&server.url(), fast_retry(4)).unwrap();
    let journal = lib.dir.join("queue.journal");
    let report = regen::apply_queue(
        &lib.truth.db_url,
        &plan,
        &journal,
        2,
        &client,
        &ApiKey::new(ADMIN).unwrap(),
        None,
    )
    .unwrap();
    assert_eq!(report.applied as usize, plan.steps.len());
    assert!(report.all_started(), "{report:#?}");
    let mut started = server.world.lock().unwrap().started.clone();
    started.sort();
    assert_eq!(
        started,
        vec![
            "metadataExtraction force=false",
            "thumbnailGeneration force=false",
            "videoConversion force=false"
        ]
    );
    assert!(server.log().iter().all(|l| l.key.as_deref() == Some(ADMIN)));

    // The database now says what the disk says: Immich's "Missing" mode will find them.
    let g = lib.truth.generation;
    let t = g.tables();
    runtime().block_on(async {
        let mut c = connect(&lib.truth.db_url).await;
        for target in &targets {
            let path = target.db_path.clone().unwrap();
            let still: i64 = match (t.asset_files, target.file) {
                (Some(af), FileKind::Sidecar) if !g.sidecar_in_asset_file() => {
                    let _ = af;
                    sqlx::query_scalar(&format!(
                        "SELECT count(*) FROM \"{}\" WHERE id = $1::uuid AND \"sidecarPath\" = $2",
                        t.assets
                    ))
                    .bind(&target.asset_id)
                    .bind(&path)
                    .fetch_one(&mut c)
                    .await
                    .unwrap()
                }
                (Some(_), FileKind::EncodedVideo) if !g.sidecar_in_asset_file() => sqlx::query_scalar(
                    &format!(
                        "SELECT count(*) FROM \"{}\" WHERE id = $1::uuid AND \"encodedVideoPath\" = $2",
                        t.assets
                    ),
                )
                .bind(&target.asset_id)
                .bind(&path)
                .fetch_one(&mut c)
                .await
                .unwrap(),
                (Some(af), _) => sqlx::query_scalar(&format!(
                    "SELECT count(*) FROM \"{af}\" WHERE \"assetId\" = $1::uuid AND path = $2"
                ))
                .bind(&target.asset_id)
                .bind(&path)
                .fetch_one(&mut c)
                .await
                .unwrap(),
                (None, kind) => {
                    let col = match kind {
                        FileKind::Preview => "previewPath",
                        FileKind::Thumbnail => "thumbnailPath",
                        FileKind::EncodedVideo => "encodedVideoPath",
                        FileKind::Sidecar => "sidecarPath",
                        k => panic!("{k}"),
                    };
                    sqlx::query_scalar(&format!(
                        "SELECT count(*) FROM \"{}\" WHERE id = $1::uuid AND \"{col}\" = $2",
                        t.assets
                    ))
                    .bind(&target.asset_id)
                    .bind(&path)
                    .fetch_one(&mut c)
                    .await
                    .unwrap()
                }
            };
            assert_eq!(still, 0, "{} of {} still referenced", target.file, target.asset_id);
            if matches!(target.file, FileKind::Preview | FileKind::Thumbnail) {
                let hash: Option<Vec<u8>> = sqlx::query_scalar(&format!(
                    "SELECT thumbhash FROM \"{}\" WHERE id = $1::uuid",
                    t.assets
                ))
                .bind(&target.asset_id)
                .fetch_one(&mut c)
                .await
                .unwrap();
                assert!(hash.is_none(), "thumbhash cleared");
            }
        }
        let at: Option<String> = sqlx::query_scalar(
            "SELECT \"metadataExtractedAt\"::text FROM asset_job_status WHERE \"assetId\" = $1::uuid",
        )
        .bind(&sidecar_asset)
        .fetch_one(&mut c)
        .await
        .unwrap();
        assert!(at.is_none());
    });

    let journal_text = std::fs::read_to_string(&journal).unwrap();
    assert!(!journal_text.contains(ADMIN));
    assert!(regen::is_queue_journal(&journal));

    // On v3 the broken preview's integrity_report row went with its asset_file row (ON DELETE
    // CASCADE), and the journal holds it.
    let cascaded: usize = plan
        .steps
        .iter()
        .map(|s| match &s.change {
            regen::QueueChange::DeleteAssetFile { cascaded, .. } => cascaded.len(),
            _ => 0,
        })
        .sum();
    if generation.has_integrity_report() {
        assert!(
            cascaded >= 1,
            "a report row cascades from a deleted asset_file row"
        );
        assert!(journal_text.contains("integrity_report"));
        assert_eq!(report_rows(&lib), reports_before - cascaded as i64);
    } else {
        assert_eq!(cascaded, 0);
    }

    // Undo restores every row exactly (cascaded ones too), and is idempotent.
    let restored = regen::undo_queue(&lib.truth.db_url, &journal).unwrap();
    assert_eq!(restored as usize, plan.steps.len() + cascaded);
    assert_eq!(report_rows(&lib), reports_before);
    assert_eq!(dump(&lib), before, "undo restores the rows exactly");
    assert_eq!(regen::undo_queue(&lib.truth.db_url, &journal).unwrap(), 0);
    assert_eq!(dump(&lib), before);
}

/// Rows of `integrity_report` (0 before v3.0).
fn report_rows(lib: &Lib) -> i64 {
    if lib.truth.integrity_reports.is_empty() {
        return 0;
    }
    runtime().block_on(async {
        let mut c = connect(&lib.truth.db_url).await;
        sqlx::query_scalar("SELECT count(*) FROM integrity_report")
            .fetch_one(&mut c)
            .await
            .unwrap()
    })
}

#[test]
fn queue_mode_v3_0() {
    queue_generation(Generation::V3_0);
}

#[test]
fn queue_mode_v3_2() {
    queue_generation(Generation::V3_2);
}

#[test]
fn queue_mode_v1_112() {
    queue_generation(Generation::V1_112);
}

#[test]
fn queue_mode_v1_135() {
    queue_generation(Generation::V1_135);
}

#[test]
fn queue_mode_v1_137() {
    queue_generation(Generation::V1_137);
}

#[test]
fn queue_mode_v2_6() {
    queue_generation(Generation::V2_6);
}

#[test]
fn cli_queue_dry_run_apply_and_undo() {
    let lib = generate(Generation::V1_137, 40, true);
    let before = dump(&lib);
    let whole_before = pg_dump(&lib);
    let mut world = World::default();
    world.keys.insert(ADMIN.into(), owner(9));
    world.admins.insert(ADMIN.into());
    world.keys.insert(KEY_A.into(), owner(1));
    world.keys.insert(KEY_NO_JOB.into(), owner(9));
    world.admins.insert(KEY_NO_JOB.into());
    world.permissions.insert(
        KEY_NO_JOB.into(),
        vec!["user.read".into(), "asset.read".into()],
    );
    let server = Server::start(world);
    let journal = lib.dir.join("cli-queue.journal");
    let args = |extra: &[&str]| {
        let mut a = vec!["regenerate".to_string(), "--via".into(), "queue".into()];
        a.extend(library_flags(&lib));
        a.extend([
            "--server".to_string(),
            server.url(),
            "--journal".into(),
            journal.to_string_lossy().into_owned(),
        ]);
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let dry = cli(&args(&["--api-key", ADMIN]));
    let out_dry = text(&dry);
    assert_eq!(dry.status.code(), Some(0), "{out_dry}");
    assert!(
        out_dry.contains("would delete the preview row")
            || out_dry.contains("would delete the thumbnail row"),
        "{out_dry}"
    );
    assert!(
        out_dry.contains("would send: PUT") && out_dry.contains("/api/jobs/thumbnailGeneration"),
        "{out_dry}"
    );
    assert!(pg_dump(&lib) == whole_before, "a dry run changes nothing");
    assert!(server.log().is_empty(), "a dry run sends nothing");
    assert!(!journal.exists());

    // A non-admin key, and an admin's key without job.create: the server is asked who the key
    // is before anything changes, and nothing does (exit 2, no journal, no queue request).
    for (key, why) in [
        (KEY_A, "its user is not an admin"),
        (KEY_NO_JOB, "it lacks the job.create permission"),
    ] {
        let refused = cli(&args(&["--api-key", key, "--apply"]));
        let out = text(&refused);
        assert_eq!(refused.status.code(), Some(2), "{out}");
        assert!(
            out.contains(why) && out.contains("no row was changed"),
            "{out}"
        );
        assert!(pg_dump(&lib) == whole_before, "no row changed");
        assert!(!journal.exists(), "no journal");
        assert!(
            server.log().iter().all(|l| l.method == "GET"),
            "no queue request"
        );
        assert!(!out.contains(key), "a key leaked");
    }
    let out_user = String::new();

    // A server that refuses the queue after the rows changed (a release without
    // PUT /api/jobs): the run puts its own changes back and says which release removed it.
    server.world.lock().unwrap().jobs_removed = true;
    let gone = cli(&args(&["--api-key", ADMIN, "--apply"]));
    let out_gone = text(&gone);
    assert_eq!(gone.status.code(), Some(1), "{out_gone}");
    assert!(
        out_gone.contains("put its own changes back")
            && out_gone.contains("deprecated since Immich v2.3"),
        "{out_gone}"
    );
    assert_eq!(dump(&lib), before, "the run restored its own changes");
    server.world.lock().unwrap().jobs_removed = false;
    std::fs::remove_file(&journal).unwrap();

    let applied = cli(&args(&["--api-key", ADMIN, "--apply"]));
    let out_applied = text(&applied);
    assert_eq!(applied.status.code(), Some(0), "{out_applied}");
    assert!(
        out_applied.contains("started queue thumbnailGeneration"),
        "{out_applied}"
    );
    assert_ne!(dump(&lib), before);
    let undo = cli(&[
        "undo".into(),
        journal.to_string_lossy().into_owned(),
        "--db-url".into(),
        lib.truth.db_url.clone(),
    ]);
    assert_eq!(undo.status.code(), Some(0), "{}", text(&undo));
    assert_eq!(dump(&lib), before, "undo restores the rows exactly");

    let journal_text = std::fs::read_to_string(&journal).unwrap();
    for s in [&out_dry, &out_user, &out_applied, &journal_text] {
        assert!(!s.contains(ADMIN) && !s.contains(KEY_A), "a key leaked");
    }
}

// ---------------------------------------------------------------------------------------------
// Interruption and a read-only database role.

/// A one-user library (V2_6) whose first `n` assets with a `file_type` `asset_file` row lost
/// that file, and a saved scan report of it: `regenerate --from` re-checks the rows it names,
/// so they must really be broken. Returns the library, its owner and the asset ids.
fn broken_library(n: usize, file_type: &str, report: &Path) -> (Lib, String, Vec<String>) {
    let lib = generate_spec(immich_fixtures::FixtureSpec {
        generation: Generation::V2_6,
        assets: 24,
        users: 1,
        faults: false,
        seed: 7,
        content_faults: false,
        original_bytes: 0,
    });
    let ids = break_files(&lib, file_type, n);
    write_scan_report(&lib, report);
    let owner = asset_owners(&lib)[&ids[0]].clone();
    (lib, owner, ids)
}

/// Removes the `file_type` file of the first `n` live assets that have one; their ids, sorted.
fn break_files(lib: &Lib, file_type: &str, n: usize) -> Vec<String> {
    let rows: Vec<(String, String)> = runtime().block_on(async {
        let mut c = connect(&lib.truth.db_url).await;
        sqlx::query_as(
            "SELECT f.\"assetId\"::text, f.path FROM asset_file f JOIN asset a ON a.id = \
             f.\"assetId\" WHERE f.type::text = $1 AND a.\"deletedAt\" IS NULL ORDER BY 1 LIMIT $2",
        )
        .bind(file_type)
        .bind(n as i64)
        .fetch_all(&mut c)
        .await
        .unwrap()
    });
    assert_eq!(rows.len(), n, "the fixture has {n} {file_type} files");
    for (_, path) in &rows {
        std::fs::remove_file(lib.truth.map_path(path).unwrap()).unwrap();
    }
    rows.into_iter().map(|(id, _)| id).collect()
}

fn write_scan_report(lib: &Lib, report: &Path) {
    let mut args = vec!["scan".to_string()];
    args.extend(library_flags(lib));
    args.extend([
        "--format".into(),
        "jsonl".into(),
        "--output".into(),
        report.to_string_lossy().into_owned(),
    ]);
    let out = cli(&args);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
}

#[test]
fn sigint_while_waiting_exits_130_and_the_rerun_sends_only_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("scan.jsonl");
    let (lib, o1, ids) = broken_library(9, "preview", &report);
    let mut world = World::default();
    world.keys.insert(KEY_A.into(), o1.clone());
    for id in &ids {
        world.owners.insert(id.clone(), o1.clone());
    }
    let server = Server::start(world);
    // The second request is told to come back in 30 s; we interrupt while it waits.
    server.inject(&[Fault::Pass, Fault::TooMany(30)]);
    let state = dir.path().join("state");
    let mut args: Vec<String> = library_flags(&lib);
    args.splice(
        0..0,
        [
            "regenerate".to_string(),
            "--from".into(),
            report.to_string_lossy().into_owned(),
        ],
    );
    args.extend([
        "--server".to_string(),
        server.url(),
        "--api-key-for".into(),
        format!("{o1}={KEY_A}"),
        "--state".into(),
        state.to_string_lossy().into_owned(),
        "--batch".into(),
        "3".into(),
        "--apply".into(),
    ]);
    let child = std::process::Command::new(binary())
        .args(&args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.log().len() < 2 {
        assert!(Instant::now() < deadline, "the CLI never sent two requests");
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    assert!(text(&out).contains("interrupted"), "{}", text(&out));
    assert_eq!(
        server.queued().len(),
        3,
        "one batch was accepted before the interrupt"
    );
    assert_eq!(
        regen::load_state(&state, Some(&server.url()))
            .unwrap()
            .len(),
        3
    );

    let rerun = cli(&args);
    assert_eq!(rerun.status.code(), Some(0), "{}", text(&rerun));
    assert_eq!(server.queued().len(), 9);
    assert!(server.queued().values().all(|n| *n == 1), "none twice");
    assert!(!text(&out).contains(KEY_A) && !text(&rerun).contains(KEY_A));
}

#[test]
fn queue_dry_run_works_with_a_select_only_role() {
    let lib = generate(Generation::V2_6, 40, true);
    let before = pg_dump(&lib);
    let role = format!("regen_ro_{}", std::process::id());
    let db = lib.truth.db_url.rsplit('/').next().unwrap().to_string();
    runtime().block_on(async {
        let mut c = connect(&lib.truth.db_url).await;
        for sql in [
            format!("DROP ROLE IF EXISTS {role}"),
            format!("CREATE ROLE {role} LOGIN"),
            format!("GRANT CONNECT ON DATABASE \"{db}\" TO {role}"),
            format!("GRANT USAGE ON SCHEMA public TO {role}"),
            format!("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"),
        ] {
            sqlx::query(&sql).execute(&mut c).await.unwrap();
        }
    });
    let ro_url = lib
        .truth
        .db_url
        .replacen("postgres@", &format!("{role}@"), 1)
        .replacen("://postgres:", &format!("://{role}:"), 1);
    assert_ne!(
        ro_url, lib.truth.db_url,
        "the fixture URL names the postgres user"
    );
    let mut args = vec!["regenerate".to_string(), "--via".into(), "queue".into()];
    args.extend(library_flags(&lib));
    for a in args.iter_mut() {
        if *a == lib.truth.db_url {
            *a = ro_url.clone();
        }
    }
    let out = cli(&args);
    let result = (out.status.code(), text(&out));
    runtime().block_on(async {
        let mut c = connect(&lib.truth.db_url).await;
        for sql in [format!("DROP OWNED BY {role}"), format!("DROP ROLE {role}")] {
            sqlx::query(&sql).execute(&mut c).await.unwrap();
        }
    });
    assert_eq!(result.0, Some(0), "{}", result.1);
    assert!(result.1.contains("would delete the"), "{}", result.1);
    assert!(pg_dump(&lib) == before, "a dry run changes nothing");
}

#[test]
fn a_journal_that_cannot_be_written_stops_before_any_database_change() {
    let lib = generate(Generation::V1_135, 40, true);
    let mut findings: Vec<Finding> = Vec::new();
    scan(&options(&lib.truth), &mut findings).unwrap();
    let targets = regen::targets(&findings, Purpose::Derivatives);
    let plan = regen::plan_queue(&options(&lib.truth), &targets).unwrap();
    assert!(!plan.steps.is_empty());
    let before = pg_dump(&lib);
    let mut world = World::default();
    world.keys.insert(ADMIN.into(), owner(9));
    world.admins.insert(ADMIN.into());
    let server = Server::start(world);
    let client = Client::new(&server.url(), fast_retry(2)).unwrap();
    // Every write to /dev/full fails with ENOSPC, as on a full disk.
    let err = regen::apply_queue(
        &lib.truth.db_url,
        &plan,
        Path::new("/dev/full"),
        2,
        &client,
        &ApiKey::new(ADMIN).unwrap(),
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("/dev/full"), "{err}");
    assert!(
        pg_dump(&lib) == before,
        "no database change after a failed journal write"
    );
    assert!(
        server.log().iter().all(|l| l.method == "GET"),
        "no queue started (the key's rights are read first)"
    );
    assert!(!err.contains(ADMIN));
}

#[test]
fn refresh_metadata_sends_only_sidecar_assets_and_regenerate_only_derivatives() {
    let dir = tempfile::tempdir().unwrap();
    // One report holding both kinds: broken previews and broken sidecars.
    let both = dir.path().join("both.jsonl");
    let (lib, o1, preview_ids) = broken_library(3, "preview", &both);
    let sidecar_ids = break_files(&lib, "sidecar", 2);
    write_scan_report(&lib, &both);
    let mut world = World::default();
    world.keys.insert(KEY_A.into(), o1.clone());
    for id in preview_ids.iter().chain(&sidecar_ids) {
        world.owners.insert(id.clone(), o1.clone());
    }
    let server = Server::start(world);
    let run_cmd = |cmd: &str| {
        let mut args = vec![cmd.to_string()];
        args.extend(library_flags(&lib));
        args.extend([
            "--from".into(),
            both.to_string_lossy().into_owned(),
            "--server".into(),
            server.url(),
            "--api-key".into(),
            KEY_A.into(),
            "--state".into(),
            dir.path()
                .join(format!("{cmd}.state"))
                .to_string_lossy()
                .into_owned(),
            "--apply".into(),
        ]);
        cli(&args)
    };
    let out = run_cmd("refresh-metadata");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let queued: Vec<(String, String)> = server.queued().keys().cloned().collect();
    let mut want: Vec<(String, String)> = sidecar_ids
        .iter()
        .map(|i| ("refresh-metadata".to_string(), i.clone()))
        .collect();
    want.sort();
    assert_eq!(queued, want);
    let out = run_cmd("regenerate");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let regen_ids: Vec<String> = server
        .queued()
        .keys()
        .filter(|(job, _)| job == "regenerate-thumbnail")
        .map(|(_, id)| id.clone())
        .collect();
    assert_eq!(regen_ids, preview_ids);
    assert_eq!(server.queued().len(), 5);
}

/// Queue mode does not append to a relink journal (relink and queue entries never share a
/// file), and the journal it writes names its kind and database and undoes by its own kind.
#[test]
fn queue_mode_refuses_a_relink_journal_and_writes_its_own_header() {
    let lib = generate(Generation::V1_135, 40, true);
    let mut findings: Vec<Finding> = Vec::new();
    scan(&options(&lib.truth), &mut findings).unwrap();
    let targets = regen::targets(&findings, Purpose::Derivatives);
    let plan = regen::plan_queue(&options(&lib.truth), &targets).unwrap();
    assert!(!plan.steps.is_empty());
    let before = pg_dump(&lib);
    let rows_before = dump(&lib);
    let relink_journal = lib.dir.join("relink.journal");
    immich_integrity::relink::apply(&lib.truth.db_url, &[], &relink_journal, 10).unwrap();
    let relink_text = std::fs::read_to_string(&relink_journal).unwrap();
    assert!(
        relink_text.starts_with("{\"event\":\"header\""),
        "{relink_text}"
    );
    let mut world = World::default();
    world.keys.insert(ADMIN.into(), owner(9));
    world.admins.insert(ADMIN.into());
    let server = Server::start(world);
    let client = Client::new(&server.url(), fast_retry(2)).unwrap();
    let key = ApiKey::new(ADMIN).unwrap();
    let err = regen::apply_queue(
        &lib.truth.db_url,
        &plan,
        &relink_journal,
        2,
        &client,
        &key,
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("it is a relink journal"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&relink_journal).unwrap(),
        relink_text
    );
    assert!(pg_dump(&lib) == before, "no row changed");

    let queue_journal = lib.dir.join("queue.journal");
    let report = regen::apply_queue(
        &lib.truth.db_url,
        &plan,
        &queue_journal,
        2,
        &client,
        &key,
        None,
    )
    .unwrap();
    assert!(report.applied > 0 && report.all_started(), "{report:?}");
    let first: Value = serde_json::from_str(
        std::fs::read_to_string(&queue_journal)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(first["kind"], "queue", "{first}");
    assert!(regen::is_queue_journal(&queue_journal));
    assert!(!regen::is_queue_journal(&relink_journal));
    // The undo of a queue journal is the queue's; relink's undo refuses it.
    assert!(immich_integrity::relink::undo(&lib.truth.db_url, &queue_journal).is_err());
    let undone =
        immich_integrity::undo_journal(&lib.truth.db_url, &queue_journal, &Default::default())
            .unwrap();
    assert!(
        undone.restored > 0 && undone.complete(),
        "{undone:?}\n{}",
        std::fs::read_to_string(&queue_journal).unwrap()
    );
    assert_eq!(dump(&lib), rows_before, "undo restores the rows");
}
