//! `doctor` on the demo library with every source it reads present, timed end to end as an
//! admin runs it: the CLI with only `--env-file` (database, media, Redis and compose project
//! from the `.env`), the server's uid, the Docker socket and the proxy's URL.
//!
//! Sources: the demo library (`scripts/demo.sh`'s: v2.6, 200 assets, the generator's faults) on
//! the local PostgreSQL; a Docker Engine API on a unix socket answering for the compose
//! project's four containers (the server's log holds startup lines, an `ENOENT` for one of the
//! library's missing originals and a failed thumbnail); the real Redis, database 7, with
//! BullMQ's queues (waiting, active and failed jobs); Debian's nginx in front of a server that
//! answers Immich's ping, upload and WebSocket as the real one does; `/proc`.
//!
//! `cargo build --release -p immich-integrity-cli && cargo bench --bench doctor`
//! Prints the last run's whole output and the wall time of each run (RUNS, default 7, after
//! one untimed run).

#[path = "../tests/bullmq/mod.rs"]
mod bullmq;
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/fake_docker/mod.rs"]
mod fake_docker;
#[path = "../tests/proxy_rig/mod.rs"]
mod proxy_rig;

use bullmq::{job, now_ms, Redis};
use common::{binary, generate};
use fake_docker::{container, Fake, FakeDocker};
use immich_fixtures::Generation;
use std::process::Command;
use std::time::Instant;

/// Redis database of the bench's queues, apart from the tests' (database 0).
const REDIS_DB: &str = "7";
const PREFIX: &str = "immich_bull";

fn main() {
    // `cargo bench` passes `--bench`; a filter that is not ours means another bench was asked for.
    if std::env::args()
        .skip(1)
        .any(|a| !a.starts_with('-') && !"doctor".contains(&a))
    {
        return;
    }
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7);
    let lib = generate(Generation::V2_6, 200, true);
    let t = &lib.truth;

    let missing = t
        .faults
        .iter()
        .find(|f| f.fault == "missing" && f.file.as_deref() == Some("original"))
        .and_then(|f| f.db_path.clone())
        .unwrap_or_else(|| "/data/upload/gone.jpg".into());
    let nest = |time: &str, level: &str, text: &str| {
        format!("2026-11-27T{time}.000000000Z [Nest] 7  - 11/27/2026, {time} AM   {level} {text}")
    };
    let server_log = vec![
        (1, nest("03:00:00", "LOG", "[Api:Bootstrap] Immich Server is listening on http://[::1]:2283 [v2.6.3] [production]")),
        (1, nest("03:00:01", "LOG", "[Microservices:MetadataService] Initialized local reverse geocoder")),
        (2, nest("03:05:00", "ERROR", &format!("[Api:GlobalExceptionFilter] Error: ENOENT: no such file or directory, open '{missing}'"))),
        (2, nest("03:06:00", "ERROR", "[Microservices:MediaService] Failed to generate thumbnail for asset 6f1c0b1e: Error: Input buffer contains unsupported image format")),
    ];
    let project = [
        (
            "immich-server",
            "immich_server",
            "172.18.0.5",
            "ghcr.io/immich-app/immich-server:v2.6.3",
        ),
        (
            "immich-machine-learning",
            "immich_machine_learning",
            "172.18.0.4",
            "ghcr.io/immich-app/immich-machine-learning:v2.6.3",
        ),
        (
            "redis",
            "immich_redis",
            "172.18.0.3",
            "docker.io/valkey/valkey:8-bookworm",
        ),
        (
            "database",
            "immich_postgres",
            "172.18.0.2",
            "ghcr.io/immich-app/postgres:14",
        ),
    ];
    let docker = FakeDocker::start(
        project
            .iter()
            .map(|(service, name, ip, image)| Fake {
                inspect: container("immich", service, name, ip, image),
                logs: if *service == "immich-server" {
                    server_log.clone()
                } else {
                    vec![]
                },
            })
            .collect(),
    );

    let mut redis = Redis::connect();
    redis.cmd(&["SELECT", REDIS_DB]);
    redis.clear(PREFIX);
    fill_queues(&mut redis);

    let up = proxy_rig::upstream(false);
    let proxy = proxy_rig::nginx(up, "client_max_body_size 50000M;", proxy_rig::RIGHT, None);

    let install = tempfile::tempdir().unwrap();
    let db_name = t.db_url.rsplit('/').next().unwrap();
    let env = install.path().join(".env");
    std::fs::write(
        &env,
        format!(
            "UPLOAD_LOCATION={}\nIMMICH_VERSION=v2.6.3\n\
             DB_HOSTNAME=127.0.0.1\nDB_PORT=5432\nDB_USERNAME=postgres\nDB_DATABASE_NAME={db_name}\n\
             REDIS_HOSTNAME=127.0.0.1\nREDIS_PORT=6379\nREDIS_DBINDEX={REDIS_DB}\n\
             COMPOSE_PROJECT_NAME=immich\n",
            t.media_root.display()
        ),
    )
    .unwrap();
    let mut args: Vec<String> = vec![
        "doctor".into(),
        "--env-file".into(),
        env.display().to_string(),
        "--as-user".into(),
        t.as_user.clone(),
        "--docker-socket".into(),
        docker.socket.display().to_string(),
        "--public-url".into(),
        format!("http://127.0.0.1:{}", proxy.port),
        "--server-url".into(),
        format!("http://127.0.0.1:{up}"),
    ];
    for (c, h) in &t.maps {
        if c != &t.container_root {
            args.push("--map".into());
            args.push(format!("{c}={}", h.display()));
        }
    }

    let bin = binary();
    let run = || {
        let start = Instant::now();
        let out = Command::new(&bin).args(&args).output().unwrap();
        (start.elapsed().as_secs_f64(), out)
    };
    let _ = run();
    let mut walls = Vec::new();
    let mut last = None;
    for _ in 0..runs {
        let (wall, out) = run();
        walls.push(wall);
        last = Some(out);
    }
    redis.clear(PREFIX);

    let out = last.expect("RUNS must be at least 1");
    println!(
        "$ immich-integrity {}",
        args.iter()
            .map(|a| if a.contains(' ') {
                format!("'{a}'")
            } else {
                a.clone()
            })
            .collect::<Vec<_>>()
            .join(" ")
    );
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    println!("exit status: {}", out.status.code().unwrap_or(-1));
    let mut sorted = walls.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "doctor wall over {} runs: min {:.2} s, median {:.2} s, max {:.2} s ({})",
        sorted.len(),
        sorted[0],
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1],
        walls
            .iter()
            .map(|w| format!("{w:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
}

/// Queues as a busy server leaves them: thumbnails failed for two reasons, metadata jobs
/// waiting and one active (locked by its worker), an empty video queue.
fn fill_queues(r: &mut Redis) {
    let now = now_ms();
    for queue in [
        "thumbnailGeneration",
        "metadataExtraction",
        "videoConversion",
    ] {
        let key = format!("{PREFIX}:{queue}");
        r.cmd(&["HSET", &format!("{key}:meta"), "opts.maxLenEvents", "10000"]);
    }
    let q = format!("{PREFIX}:thumbnailGeneration");
    for (id, reason) in [
        ("11", "Input buffer contains unsupported image format"),
        ("12", "Input buffer contains unsupported image format"),
        (
            "13",
            "ENOENT: no such file or directory, open '/data/upload/x/gone.jpg'",
        ),
    ] {
        let fields = [
            ("processedOn", (now - 60_000).to_string()),
            ("finishedOn", (now - 59_000).to_string()),
            ("failedReason", reason.to_string()),
            ("atm", "3".to_string()),
        ];
        job(r, &q, id, "AssetGenerateThumbnails", &fields);
        r.cmd(&[
            "ZADD",
            &format!("{q}:failed"),
            &(now - 59_000).to_string(),
            id,
        ]);
    }
    let q = format!("{PREFIX}:metadataExtraction");
    for id in ["21", "22", "23"] {
        job(r, &q, id, "AssetExtractMetadata", &[]);
        r.cmd(&["LPUSH", &format!("{q}:wait"), id]);
    }
    job(
        r,
        &q,
        "24",
        "AssetExtractMetadata",
        &[("processedOn", (now - 5_000).to_string())],
    );
    r.cmd(&["LPUSH", &format!("{q}:active"), "24"]);
    r.cmd(&[
        "SET",
        &format!("{q}:24:lock"),
        "token-of-the-worker",
        "PX",
        "30000",
    ]);
}
