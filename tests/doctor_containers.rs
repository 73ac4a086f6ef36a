//! doctor's Docker-based checks against a fake Docker Engine API on a unix socket (real JSON
//! shapes): each container's state, health, restarts, exit code and OOM kill; a missing
//! machine-learning container while smart search is on; memory; the server's release against
//! the database's. OK on a healthy project, each problem its exact line.

mod common;
mod fake_docker;

use common::*;
use fake_docker::*;
use immich_fixtures::Generation;
use immich_integrity::doctor::{self, Check, DoctorOptions, Report, Status};
use serde_json::Value;

const SERVER: &str = "ghcr.io/immich-app/immich-server:v2.6.3";
const ML: &str = "ghcr.io/immich-app/immich-machine-learning:v2.6.3";
const REDIS: &str = "docker.io/valkey/valkey:8-bookworm";
const POSTGRES: &str = "ghcr.io/immich-app/postgres:14";

fn healthy_project() -> Vec<Value> {
    vec![
        container(
            "immich",
            "immich-server",
            "immich_server",
            "172.18.0.5",
            SERVER,
        ),
        container(
            "immich",
            "immich-machine-learning",
            "immich_machine_learning",
            "172.18.0.4",
            ML,
        ),
        container("immich", "redis", "immich_redis", "172.18.0.3", REDIS),
        container(
            "immich",
            "database",
            "immich_postgres",
            "172.18.0.2",
            POSTGRES,
        ),
    ]
}

struct Setup {
    docker: FakeDocker,
    opts: DoctorOptions,
    _tmp: tempfile::TempDir,
}

fn setup(lib: &Lib, containers: Vec<Value>) -> Setup {
    let docker = FakeDocker::start(
        containers
            .into_iter()
            .map(|inspect| Fake {
                inspect,
                logs: vec![],
            })
            .collect(),
    );
    let tmp = tempfile::tempdir().unwrap();
    let meminfo = tmp.path().join("meminfo");
    std::fs::write(
        &meminfo,
        "MemTotal:        8000000 kB\nMemFree:         1000000 kB\nMemAvailable:    4000000 kB\n\
         SwapTotal:       2097152 kB\nSwapFree:        2097152 kB\n",
    )
    .unwrap();
    let mut opts = DoctorOptions::new(lib.truth.db_url.clone());
    opts.compose.project = Some("immich".into());
    opts.docker_socket = Some(docker.socket.clone());
    opts.meminfo = meminfo;
    opts.queue_prefix = format!("itest_{}", lib.db_name);
    Setup {
        docker,
        opts,
        _tmp: tmp,
    }
}

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

#[test]
fn a_healthy_project_is_ok_and_each_fault_is_its_line() {
    let lib = generate(Generation::V2_6, 6, false);
    let s = setup(&lib, healthy_project());
    let r = doctor::run(&s.opts);
    let lines: Vec<String> = r
        .checks
        .iter()
        .filter(|c| c.name.starts_with("container") || c.name == "memory" || c.name == "versions")
        .map(line)
        .collect();
    assert_eq!(
        lines,
        vec![
            format!("OK container database: immich_postgres is running (healthy), image {POSTGRES} (version 14)"),
            format!("OK container immich-machine-learning: immich_machine_learning is running (healthy), image {ML} (version v2.6.3)"),
            format!("OK container immich-server: immich_server is running (healthy), image {SERVER} (version v2.6.3)"),
            format!("OK container redis: immich_redis is running (healthy), image {REDIS} (version 8-bookworm)"),
            "OK memory: RAM 7.6 GiB, 3.8 GiB available (50%); swap 2.0 GiB, 0.0 GiB used".to_string(),
            "OK versions: server image v2.6.3, database last run by 2.6.3".to_string(),
        ]
    );
    let asked = s.docker.requests.lock().unwrap().clone();
    assert!(
        asked[0].starts_with("/containers/json?all=1&filters=%7B%22label%22%3A%5B%22com.docker.compose.project%3Dimmich%22%5D%7D"),
        "{asked:?}"
    );

    // A restart loop, an OOM kill, an unhealthy database.
    let mut project = healthy_project();
    let server = &mut project[0];
    server["State"]["Status"] = "restarting".into();
    server["State"]["Restarting"] = true.into();
    server["State"]["Running"] = false.into();
    server["State"]["ExitCode"] = 1.into();
    server["State"]["Health"]["Status"] = "unhealthy".into();
    server["RestartCount"] = 7.into();
    let ml = &mut project[1];
    ml["State"]["Status"] = "exited".into();
    ml["State"]["Running"] = false.into();
    ml["State"]["OOMKilled"] = true.into();
    ml["State"]["ExitCode"] = 137.into();
    ml["State"]["Health"] = Value::Null;
    let db = &mut project[3];
    db["State"]["Health"]["Status"] = "unhealthy".into();
    db["State"]["Health"]["FailingStreak"] = 5.into();
    db["State"]["Health"]["Log"] = serde_json::json!([
        {"Start": "2026-11-26T09:00:00Z", "End": "2026-11-26T09:00:05Z", "ExitCode": 1,
         "Output": "/var/run/postgresql:5432 - no response\n"}
    ]);
    let s = setup(&lib, project);
    let r = doctor::run(&s.opts);
    assert_eq!(
        line(get(&r, "container immich-server")),
        format!("FAIL container immich-server: immich_server is restarting (unhealthy, exit code 1, restarted 7 times), image {SERVER} (version v2.6.3): a restart loop -- fix: read why it stops (docker compose logs --tail 200 immich-server): a wrong .env value, a full disk or too little memory are the usual causes; then docker compose up -d immich-server")
    );
    assert_eq!(
        line(get(&r, "container immich-machine-learning")),
        format!("FAIL container immich-machine-learning: immich_machine_learning is exited (exit code 137, killed for memory (OOMKilled)), image {ML} (version v2.6.3): the kernel killed it for running out of memory -- fix: give it more memory (more RAM or swap on the host, or a higher mem_limit), or lower the job concurrency in Administration > Jobs; then docker compose up -d immich-machine-learning")
    );
    assert_eq!(
        line(get(&r, "container database")),
        format!("FAIL container database: immich_postgres is running (unhealthy), image {POSTGRES} (version 14): health check failing; last probe: /var/run/postgresql:5432 - no response -- fix: read PostgreSQL's log (docker compose logs --tail 200 database) and the free space of DB_DATA_LOCATION; then docker compose restart database")
    );
    assert_eq!(get(&r, "container redis").status, Status::Ok);
    assert_eq!(
        line(get(&r, "memory")),
        "FAIL memory: RAM 7.6 GiB, 3.8 GiB available (50%); swap 2.0 GiB, 0.0 GiB used; killed for memory: immich_machine_learning -- fix: add RAM or swap, or limit what runs at once: lower the job concurrency (Administration > Jobs) and, for machine learning, MACHINE_LEARNING_WORKERS / a smaller model"
    );
}

#[test]
fn missing_machine_learning_fails_only_while_smart_search_is_on() {
    let lib = generate(Generation::V2_6, 4, false);
    let mut project = healthy_project();
    project.remove(1);
    let s = setup(&lib, project.clone());
    let r = doctor::run(&s.opts);
    // No saved system config: Immich's defaults, machine learning on.
    assert_eq!(
        line(get(&r, "container immich-machine-learning")),
        "FAIL container immich-machine-learning: smart search is on, but compose project `immich` has no immich-machine-learning container: smart search and face detection jobs fail -- fix: start it (docker compose up -d immich-machine-learning), or turn machine learning off in Administration > Settings > Machine Learning"
    );
    runtime().block_on(async {
        let mut c = connect(&lib.truth.db_url).await;
        sqlx::query(
            "INSERT INTO system_metadata (key, value) VALUES ('system-config', \
             '{\"machineLearning\": {\"enabled\": true, \"clip\": {\"enabled\": false}}}'::jsonb)",
        )
        .execute(&mut c)
        .await
        .unwrap();
    });
    let r = doctor::run(&s.opts);
    assert!(
        r.get("container immich-machine-learning").is_none(),
        "{:#?}",
        r.checks
    );
    // A required service without a container.
    project.remove(1);
    let s = setup(&lib, project);
    let r = doctor::run(&s.opts);
    assert_eq!(
        line(get(&r, "container redis")),
        "FAIL container redis: compose project `immich` has no container of the service redis -- fix: start it: docker compose up -d redis"
    );
}

#[test]
fn versions_a_downgrade_a_half_done_upgrade_and_a_stale_pin() {
    let lib = generate(Generation::V2_6, 4, false);
    let older = "ghcr.io/immich-app/immich-server:v2.5.0";
    let mut project = healthy_project();
    project[0] = container(
        "immich",
        "immich-server",
        "immich_server",
        "172.18.0.5",
        older,
    );
    let s = setup(&lib, project);
    let r = doctor::run(&s.opts);
    assert_eq!(
        line(get(&r, "versions")),
        "FAIL versions: server image v2.5.0, database last run by 2.6.3: the server is older than its database (a downgrade); a newer release migrated this database and an older one cannot run on it -- fix: set IMMICH_VERSION=2.6.3 in the .env and run docker compose pull && docker compose up -d (or restore the database backup made before the upgrade)"
    );
    let newer = "ghcr.io/immich-app/immich-server:v2.7.1";
    let mut project = healthy_project();
    project[0] = container(
        "immich",
        "immich-server",
        "immich_server",
        "172.18.0.5",
        newer,
    );
    project[0]["State"]["Status"] = "restarting".into();
    project[0]["State"]["Restarting"] = true.into();
    project[0]["RestartCount"] = 4.into();
    let mut s = setup(&lib, project);
    s.opts.compose.immich_version = Some("v2.7.1".into());
    let r = doctor::run(&s.opts);
    assert_eq!(
        line(get(&r, "versions")),
        "FAIL versions: server image v2.7.1, database last run by 2.6.3, IMMICH_VERSION=v2.7.1: the upgrade to v2.7.1 stopped half-way: the server does not run and the database still records 2.6.3 -- fix: read the failing migration in docker compose logs --tail 200 immich-server, and the `migrations` line; fix its cause, or go back to the release the database records"
    );
    let mut s = setup(&lib, healthy_project());
    s.opts.compose.immich_version = Some("v2.7.1".into());
    let r = doctor::run(&s.opts);
    assert_eq!(
        line(get(&r, "versions")),
        "WARN versions: server image v2.6.3, database last run by 2.6.3, IMMICH_VERSION=v2.7.1: the .env pins v2.7.1 but v2.6.3 runs: the containers were not recreated after the change -- fix: docker compose pull && docker compose up -d"
    );
}

#[test]
fn without_docker_each_check_says_it_could_not_check() {
    let lib = generate(Generation::V2_6, 4, false);
    let mut s = setup(&lib, healthy_project());
    s.opts.docker_socket = Some("/nonexistent/docker.sock".into());
    let r = doctor::run(&s.opts);
    let why = "Docker socket /nonexistent/docker.sock: No such file or directory (os error 2)";
    assert_eq!(
        line(get(&r, "containers")),
        format!("WARN containers: could not check: {why} -- fix: run doctor where Docker's socket is (as root or in the docker group), or pass --docker-socket (or DOCKER_HOST=unix://...)")
    );
    assert_eq!(
        line(get(&r, "logs")),
        format!("WARN logs: could not check: {why} -- fix: pass --log-file with the server's log (docker compose logs immich-server > server.log), or run doctor where Docker's socket is")
    );
    assert_eq!(
        line(get(&r, "versions")),
        format!("WARN versions: could not check the server's version ({why}); database last run by 2.6.3 -- fix: run doctor where Docker's socket is, so the running image can be compared with the database")
    );
    assert!(r.checks.iter().all(|c| !c.name.starts_with("container ")));
}

#[test]
fn little_memory_or_heavy_swap_is_a_warning_and_no_figures_cannot_be_checked() {
    let lib = generate(Generation::V2_6, 2, false);
    let mut s = setup(&lib, healthy_project());
    let low = s._tmp.path().join("low");
    std::fs::write(
        &low,
        "MemTotal:        8000000 kB\nMemAvailable:     300000 kB\nSwapTotal:       2097152 kB\nSwapFree:         524288 kB\n",
    )
    .unwrap();
    s.opts.meminfo = low;
    let r = doctor::run(&s.opts);
    assert_eq!(
        line(get(&r, "memory")),
        "WARN memory: RAM 7.6 GiB, 0.3 GiB available (4%); swap 2.0 GiB, 1.5 GiB used: little memory left, thumbnails, transcoding and machine learning may be killed -- fix: add RAM or swap, or lower the job concurrency in Administration > Jobs"
    );
    s.opts.meminfo = s._tmp.path().join("absent");
    let r = doctor::run(&s.opts);
    assert_eq!(
        line(get(&r, "memory")),
        format!(
            "WARN memory: could not check: {}: No such file or directory (os error 2) -- fix: run doctor on the host that runs Immich",
            s._tmp.path().join("absent").display()
        )
    );
}
