//! From the host, without editing Immich's compose file: the `.env` names the compose service
//! `database`, whose port is not published; the tool finds its container through the Docker
//! Engine API (a fake daemon on a unix socket) and connects to its address on the compose
//! network (a loopback address forwarding to the real PostgreSQL). When nothing answers, every
//! command says why: the address tried, the port not published, the container's state.

mod common;
mod fake_docker;

use common::*;
use fake_docker::*;
use immich_fixtures::Generation;
use std::net::ToSocketAddrs;

struct Install {
    dir: tempfile::TempDir,
    env: std::path::PathBuf,
    port: u16,
}

/// An install folder named `immich` (so compose's project is `immich`) whose `.env` leaves
/// DB_HOSTNAME unset (the `database` service) on port `port`.
fn install(lib: &Lib, port: u16) -> Install {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("immich");
    std::fs::create_dir(&home).unwrap();
    let db = lib.truth.db_url.rsplit('/').next().unwrap().to_string();
    let env = home.join(".env");
    std::fs::write(
        &env,
        format!("DB_USERNAME=postgres\nDB_DATABASE_NAME={db}\nDB_PORT={port}\n"),
    )
    .unwrap();
    Install { dir, env, port }
}

fn pg_addr(lib: &Lib) -> std::net::SocketAddr {
    let hostport = lib
        .truth
        .db_url
        .split('@')
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    hostport.to_socket_addrs().unwrap().next().unwrap()
}

fn run(docker_host: &str, args: &[String]) -> std::process::Output {
    std::process::Command::new(binary())
        .args(args)
        .env_remove("DATABASE_URL")
        .env("DOCKER_HOST", docker_host)
        .output()
        .unwrap()
}

fn scan_args(lib: &Lib, i: &Install) -> Vec<String> {
    let mut a = vec![
        "scan".into(),
        "--env-file".into(),
        i.env.display().to_string(),
    ];
    // Everything but the database URL from the flags.
    a.extend(library_flags(lib).into_iter().skip(2));
    a
}

#[test]
fn scan_reaches_the_unpublished_database_through_its_container() {
    let lib = generate(Generation::V2_6, 12, false);
    // The container's address on the compose network: 127.0.0.3:P, forwarding to PostgreSQL.
    let addr = forward("127.0.0.3:0", pg_addr(&lib));
    let i = install(&lib, addr.port());
    let db = container(
        "immich",
        "database",
        "immich_postgres",
        "127.0.0.3",
        "ghcr.io/immich-app/postgres:14-vectorchord0.4.3",
    );
    // The same service in another project must not be picked.
    let other = container(
        "photos2",
        "database",
        "photos2_db",
        "127.0.0.9",
        "postgres:16",
    );
    let docker = FakeDocker::start(vec![
        Fake {
            inspect: other,
            logs: vec![],
        },
        Fake {
            inspect: db,
            logs: vec![],
        },
    ]);
    let out = run(&docker.host(), &scan_args(&lib, &i));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let note = format!(
        "immich-integrity: database: localhost:{p} does not answer (port {p} not published); using the `database` container immich_postgres at 127.0.0.3:{p} on network immich_default, found through the Docker API ({})",
        docker.socket.display(),
        p = i.port
    );
    assert!(err.lines().any(|l| l == note), "{err}");
    let asked = docker.requests.lock().unwrap().clone();
    assert!(
        asked
            .iter()
            .any(|r| r.starts_with("/containers/json?all=1&filters=")),
        "{asked:?}"
    );
    drop(i.dir);
}

#[test]
fn every_command_explains_an_unreachable_database() {
    let lib = generate(Generation::V2_6, 4, false);
    let port = free_port();
    let i = install(&lib, port);
    let mut db = container(
        "immich",
        "database",
        "immich_postgres",
        "127.0.0.3",
        "postgres:14",
    );
    db["State"]["Status"] = "exited".into();
    db["State"]["Running"] = false.into();
    db["State"]["ExitCode"] = 1.into();
    db["State"]["Health"]["Status"] = "unhealthy".into();
    db["RestartCount"] = 5.into();
    db["NetworkSettings"]["Ports"] = serde_json::json!({format!("{port}/tcp"): null});
    let docker = FakeDocker::start(vec![Fake {
        inspect: db,
        logs: vec![],
    }]);
    let refused = "Connection refused (os error 111)";
    let why = format!(
        "immich-integrity: cannot connect to PostgreSQL at postgres://postgres@localhost:{port}/{db}: nothing answers at localhost:{port} ({refused}); immich_postgres is exited (unhealthy, exit code 1, restarted 5 times), port {port} not published: read its log (docker compose logs database) and start it (docker compose up -d database)",
        db = lib.truth.db_url.rsplit('/').next().unwrap()
    );
    let env = i.env.display().to_string();
    for args in [
        scan_args(&lib, &i),
        vec!["orphans".into(), "--env-file".into(), env.clone()],
        vec![
            "undo".into(),
            "/nonexistent.journal".into(),
            "--env-file".into(),
            env.clone(),
        ],
    ] {
        let out = run(&docker.host(), &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.lines().any(|l| l == why),
            "{args:?}:\n{err}\nwanted:\n{why}"
        );
    }
    // Without a Docker daemon the answer says what could not be asked, and what to do.
    let out = run("unix:///nonexistent/docker.sock", &scan_args(&lib, &i));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.contains(&format!(
            "nothing answers at localhost:{port} ({refused}); the .env names the compose service `database`, whose container could not be looked up (Docker socket /nonexistent/docker.sock: No such file or directory (os error 2)): publish its port {port} in the compose file, or run the tool inside the compose project"
        )),
        "{err}"
    );
}

#[test]
fn doctor_says_how_it_reached_the_database_or_why_it_could_not() {
    let lib = generate(Generation::V2_6, 4, false);
    let addr = forward("127.0.0.3:0", pg_addr(&lib));
    let i = install(&lib, addr.port());
    let p = i.port;
    let db_name = lib.truth.db_url.rsplit('/').next().unwrap().to_string();
    let db = container(
        "immich",
        "database",
        "immich_postgres",
        "127.0.0.3",
        "postgres:14",
    );
    let docker = FakeDocker::start(vec![Fake {
        inspect: db.clone(),
        logs: vec![],
    }]);
    let args = vec![
        "doctor".to_string(),
        "--env-file".into(),
        i.env.display().to_string(),
    ];
    let out = run(&docker.host(), &args);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.contains(&format!(
            "OK   database: PostgreSQL answers at 127.0.0.3:{p}; database: localhost:{p} does not answer (port {p} not published); using the `database` container immich_postgres at 127.0.0.3:{p} on network immich_default, found through the Docker API ({})",
            docker.socket.display()
        ).as_str()),
        "{text}"
    );
    assert!(
        lines.contains(
            &format!("OK   credentials: logged in as postgres://postgres@127.0.0.3:{p}/{db_name}")
                .as_str()
        ),
        "{text}"
    );

    // The container stopped: the database line carries the diagnosis, the other checks run.
    let mut stopped = db;
    stopped["State"]["Status"] = "exited".into();
    stopped["State"]["ExitCode"] = 1.into();
    stopped["State"]["Health"] = serde_json::Value::Null;
    let docker = FakeDocker::start(vec![Fake {
        inspect: stopped,
        logs: vec![],
    }]);
    let out = run(&docker.host(), &args);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    let db_line = text
        .lines()
        .find(|l| l.starts_with("FAIL database: "))
        .expect(&text);
    assert!(
        db_line.contains(&format!(
            "; nothing answers at localhost:{p} (Connection refused (os error 111)); immich_postgres is exited (exit code 1), port {p} not published: read its log (docker compose logs database) and start it (docker compose up -d database) -- fix: "
        )),
        "{db_line}"
    );
    assert!(
        text.contains("FAIL container database: immich_postgres is exited (exit code 1), image postgres:14 (version 14): not running"),
        "{text}"
    );
}

#[test]
fn an_older_env_naming_the_container_is_found_by_its_name() {
    let lib = generate(Generation::V2_6, 4, false);
    let addr = forward("127.0.0.3:0", pg_addr(&lib));
    let i = install(&lib, addr.port());
    let env = std::fs::read_to_string(&i.env).unwrap();
    std::fs::write(&i.env, format!("{env}DB_HOSTNAME=immich_postgres\n")).unwrap();
    let db = container(
        "immich",
        "database",
        "immich_postgres",
        "127.0.0.3",
        "postgres:14",
    );
    let docker = FakeDocker::start(vec![Fake {
        inspect: db,
        logs: vec![],
    }]);
    let out = run(&docker.host(), &scan_args(&lib, &i));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let p = i.port;
    assert!(
        err.contains(&format!(
            "database: immich_postgres:{p} does not answer (port {p} not published); using the `immich_postgres` container immich_postgres at 127.0.0.3:{p} on network immich_default"
        )),
        "{err}"
    );
}
