//! doctor's queue lines against the real Redis at 127.0.0.1:6379, with queues filled the way
//! BullMQ fills them (job hashes with `name`, `data`, `opts`, `timestamp`, `processedOn`,
//! `finishedOn`, `failedReason`; ids in the `wait`/`paused`/`active` lists and the
//! `delayed`/`failed` sorted sets; `meta.paused` while paused; `ID:lock` while a worker holds
//! a job), each test under its own key prefix.

mod bullmq;
mod common;
mod fake_docker;

use bullmq::{job, now_ms, Redis};
use common::*;
use immich_fixtures::Generation;
use immich_integrity::doctor::{self, Check, DoctorOptions, Report};

fn get<'a>(r: &'a Report, name: &str) -> &'a Check {
    r.get(name)
        .unwrap_or_else(|| panic!("no check {name:?} in {:#?}", r.checks))
}

fn line(c: &Check) -> String {
    match &c.fix {
        Some(f) => format!(
            "{} {}: {} -- fix: {f}",
            c.status.as_str(),
            c.name,
            c.message
        ),
        None => format!("{} {}: {}", c.status.as_str(), c.name, c.message),
    }
}

fn options(lib: &Lib, prefix: &str) -> DoctorOptions {
    let mut o = DoctorOptions::new(lib.truth.db_url.clone());
    o.queue_prefix = prefix.to_string();
    o.docker_socket = Some("/nonexistent/docker.sock".into());
    o
}

#[test]
fn failed_stuck_paused_and_waiting_queues() {
    let lib = generate(Generation::V2_6, 4, false);
    let prefix = format!("itest_{}", lib.db_name);
    let mut r = Redis::connect();
    r.clear(&prefix);
    let now = now_ms();

    // Four failed thumbnail jobs, three of them for the same reason.
    let q = format!("{prefix}:thumbnailGeneration");
    r.cmd(&["HSET", &format!("{q}:meta"), "opts.maxLenEvents", "10000"]);
    for (id, reason) in [
        (
            "1",
            "ENOENT: no such file or directory, open '/data/upload/a.jpg'",
        ),
        (
            "2",
            "ENOENT: no such file or directory, open '/data/upload/a.jpg'",
        ),
        (
            "3",
            "ENOENT: no such file or directory, open '/data/upload/a.jpg'",
        ),
        ("4", "Input buffer contains unsupported image format"),
    ] {
        job(
            &mut r,
            &q,
            id,
            "AssetGenerateThumbnails",
            &[
                ("processedOn", (now - 60_000).to_string()),
                ("finishedOn", (now - 59_000).to_string()),
                ("failedReason", reason.to_string()),
                ("stacktrace", "[\"Error: ...\"]".to_string()),
                ("atm", "3".to_string()),
            ],
        );
        r.cmd(&[
            "ZADD",
            &format!("{q}:failed"),
            &(now - 59_000).to_string(),
            id,
        ]);
    }
    // A metadata job active for two hours, still locked by its worker.
    let q = format!("{prefix}:metadataExtraction");
    job(
        &mut r,
        &q,
        "7",
        "AssetExtractMetadata",
        &[
            ("processedOn", (now - 7_205_000).to_string()),
            ("ats", "1".into()),
        ],
    );
    r.cmd(&["LPUSH", &format!("{q}:active"), "7"]);
    r.cmd(&[
        "SET",
        &format!("{q}:7:lock"),
        "token-of-the-worker",
        "PX",
        "30000",
    ]);
    // A fresh active job is not stuck.
    job(
        &mut r,
        &q,
        "8",
        "AssetExtractMetadata",
        &[("processedOn", (now - 5_000).to_string())],
    );
    r.cmd(&["LPUSH", &format!("{q}:active"), "8"]);
    // A paused queue: `meta.paused` set, its waiting jobs moved to the `paused` list.
    let q = format!("{prefix}:videoConversion");
    r.cmd(&["HSET", &format!("{q}:meta"), "paused", "1"]);
    for id in ["11", "12"] {
        job(&mut r, &q, id, "AssetEncodeVideo", &[]);
        r.cmd(&["LPUSH", &format!("{q}:paused"), id]);
    }
    // Waiting and delayed jobs in a running queue.
    let q = format!("{prefix}:smartSearch");
    for id in ["21", "22"] {
        job(&mut r, &q, id, "SmartSearch", &[]);
        r.cmd(&["LPUSH", &format!("{q}:wait"), id]);
    }
    job(
        &mut r,
        &q,
        "23",
        "SmartSearch",
        &[("delay", "60000".into())],
    );
    r.cmd(&[
        "ZADD",
        &format!("{q}:delayed"),
        &((now + 60_000) * 4096).to_string(),
        "23",
    ]);

    let rep = doctor::run(&options(&lib, &prefix));
    // In the order of Immich's QueueName.
    let got: Vec<String> = rep
        .checks
        .iter()
        .filter(|c| c.name.starts_with("queue"))
        .map(line)
        .collect();
    r.clear(&prefix);
    assert_eq!(
        got,
        vec![
            format!("OK queues: Redis at localhost:6379 db 0: 18 queues under `{prefix}`, 4 holding jobs"),
            "WARN queue thumbnailGeneration: 0 waiting, 0 active, 0 delayed, 4 failed; most frequent reasons: 3x \"ENOENT: no such file or directory, open '/data/upload/a.jpg'\", 1x \"Input buffer contains unsupported image format\" -- fix: fix the reason (a missing or unreadable file: `immich-integrity scan`), then retry the failed jobs in Administration > Jobs".to_string(),
            "FAIL queue metadataExtraction: 0 waiting, 2 active, 0 delayed, 0 failed; 1 active job running for over 60 min (oldest: AssetExtractMetadata, 2 h, its worker still holds it (hung)) -- fix: restart the server so its jobs are retried (docker compose restart immich-server); if the same job hangs again, its file is the cause (see the `logs` lines)".to_string(),
            "WARN queue videoConversion: 2 waiting, 0 active, 0 delayed, 0 failed; the queue is paused, nothing in it runs -- fix: resume it in Administration > Jobs".to_string(),
            "OK queue smartSearch: 2 waiting, 0 active, 1 delayed, 0 failed".to_string(),
        ]
    );
}

#[test]
fn empty_queues_are_ok_and_no_redis_is_a_warning() {
    let lib = generate(Generation::V2_6, 4, false);
    let prefix = format!("itest_{}_empty", lib.db_name);
    let mut r = Redis::connect();
    r.clear(&prefix);
    let rep = doctor::run(&options(&lib, &prefix));
    let got: Vec<String> = rep
        .checks
        .iter()
        .filter(|c| c.name.starts_with("queue"))
        .map(line)
        .collect();
    assert_eq!(
        got,
        vec![format!(
            "OK queues: Redis at localhost:6379 db 0: 18 queues under `{prefix}`, 0 holding jobs"
        )]
    );

    // Nothing listens where the .env points, and Docker cannot be asked.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut o = options(&lib, &prefix);
    o.compose.redis_port = port;
    let rep = doctor::run(&o);
    assert_eq!(
        line(get(&rep, "queues")),
        format!("WARN queues: could not check: Redis nothing answers at localhost:{port} (Connection refused (os error 111)); the .env names the compose service `redis`, whose container could not be looked up (Docker socket /nonexistent/docker.sock: No such file or directory (os error 2)): publish its port {port} in the compose file, or run the tool inside the compose project -- fix: run doctor where Redis or Docker's socket is reachable, or set REDIS_HOSTNAME / REDIS_PORT in the .env")
    );
    // A password Redis does not expect: refused, and never shown.
    let mut o = options(&lib, &prefix);
    o.compose.redis_password = Some("s3cret-pw".into());
    let rep = doctor::run(&o);
    let c = get(&rep, "queues");
    assert!(
        c.message.starts_with("could not check: Redis at localhost:6379 db 0 with password ***: the password (REDIS_PASSWORD) was refused: "),
        "{c:?}"
    );
    assert!(!format!("{:?}", rep.checks).contains("s3cret"));
}

#[test]
fn an_unpublished_redis_is_reached_through_its_container() {
    let lib = generate(Generation::V2_6, 2, false);
    let prefix = format!("itest_{}_routed", lib.db_name);
    Redis::connect().clear(&prefix);
    // The `redis` container's address on the compose network: 127.0.0.4:P, forwarding to the
    // real Redis; nothing listens at localhost:P.
    let addr = fake_docker::forward("127.0.0.4:0", "127.0.0.1:6379".parse().unwrap());
    let redis = fake_docker::container(
        "immich",
        "redis",
        "immich_redis",
        "127.0.0.4",
        "valkey/valkey:8",
    );
    let docker = fake_docker::FakeDocker::start(vec![fake_docker::Fake {
        inspect: redis,
        logs: vec![],
    }]);
    let mut o = options(&lib, &prefix);
    o.docker_socket = Some(docker.socket.clone());
    o.compose.project = Some("immich".into());
    o.compose.redis_port = addr.port();
    let rep = doctor::run(&o);
    let p = addr.port();
    assert_eq!(
        line(get(&rep, "queues")),
        format!(
            "OK queues: Redis at 127.0.0.4:{p} db 0 (localhost:{p} does not answer (port {p} not published); using the `redis` container immich_redis at 127.0.0.4:{p} on network immich_default, found through the Docker API ({})): 18 queues under `{prefix}`, 0 holding jobs",
            docker.socket.display()
        )
    );
}
