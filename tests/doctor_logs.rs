//! doctor's `logs` lines: the server container's log (a fake Docker Engine API streaming it
//! chunked and multiplexed, as dockerd does) or a log file, sorted into the guide's causes;
//! each with its count, first and last time, an example, and for the paths it names our own
//! finding (an ENOENT on a file that sits in a nested folder is that fault, said once).

mod common;
mod fake_docker;

use common::*;
use fake_docker::*;
use immich_fixtures::Generation;
use immich_integrity::doctor::{self, Check, DoctorOptions, Report};
use immich_integrity::Identity;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

fn first_file(dir: &Path) -> PathBuf {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                stack.push(p);
            } else if !p.file_name().unwrap().to_string_lossy().starts_with('.') {
                return p;
            }
        }
    }
    panic!("no file below {}", dir.display());
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

fn options(lib: &Lib) -> DoctorOptions {
    let t = &lib.truth;
    let mut o = DoctorOptions::new(t.db_url.clone());
    o.media_root = Some(t.media_root.clone());
    o.maps = t
        .maps
        .iter()
        .filter(|(c, _)| c != &t.container_root)
        .cloned()
        .collect();
    o.as_user = Some(Identity::parse("1000:1000").unwrap());
    o.compose.project = Some("immich".into());
    o.queue_prefix = format!("itest_{}", lib.db_name);
    o
}

const SERVER: &str = "ghcr.io/immich-app/immich-server:v2.6.3";

/// The log lines (stream, text) the server wrote, with the daemon's timestamps.
fn broken_log(upload: &str, thumb: &str) -> Vec<(u8, String)> {
    let nest = |t: &str, level: &str, rest: &str| {
        format!("2026-11-26T09:{t}.000000000Z [Nest] 7  - 11/26/2026, 9:{t} AM   {level} {rest}")
    };
    vec![
        (1, nest("00:00", "LOG", "[Api:Bootstrap] Immich Server is listening on http://[::1]:2283 [v2.6.3] [production]")),
        (2, nest("00:01", "ERROR", &format!("[Api:GlobalExceptionFilter] Error: ENOENT: no such file or directory, open '{upload}'"))),
        (2, nest("01:00", "ERROR", "[Api:GlobalExceptionFilter] Error: ENOENT: no such file or directory, open '/data/thumbs/aa/bb/gone.webp'")),
        (2, nest("02:00", "ERROR", &format!("[Microservices:MediaService] Error: EACCES: permission denied, open '{thumb}'"))),
        (2, nest("03:00", "ERROR", "[TypeOrmModule] Unable to connect to the database. Retrying (1)... Error: connect ECONNREFUSED 172.18.0.2:5432")),
        (2, nest("04:00", "ERROR", "[Api:GlobalExceptionFilter] QueryFailedError: relation \"asset_files\" does not exist")),
        (2, nest("05:00", "ERROR", "[Microservices:MediaService] Failed to generate thumbnail for asset 6f1c0b1e: Error: Input buffer contains unsupported image format")),
        (2, nest("06:00", "ERROR", "[Microservices:JobService] Error: connect ECONNREFUSED 172.18.0.3:6379")),
        (2, nest("07:00", "ERROR", &format!("[Api:GlobalExceptionFilter] Error: ENOENT: no such file or directory, open '{upload}'"))),
    ]
}

#[test]
fn each_cause_of_the_guide_is_one_line_with_our_finding_for_its_paths() {
    let lib = generate(Generation::V2_6, 8, false);
    let media = lib.truth.media_root.clone();
    let upload_file = first_file(&media.join("upload"));
    let thumb_file = first_file(&media.join("thumbs"));
    let upload = format!(
        "/data/{}",
        upload_file.strip_prefix(&media).unwrap().display()
    );
    let thumb = format!(
        "/data/{}",
        thumb_file.strip_prefix(&media).unwrap().display()
    );
    std::fs::set_permissions(&thumb_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    nest_top_folder(&media, "upload");

    let logs = broken_log(&upload, &thumb);
    let server = container(
        "immich",
        "immich-server",
        "immich_server",
        "172.18.0.5",
        SERVER,
    );
    let docker = FakeDocker::start(vec![Fake {
        inspect: server,
        logs: logs.clone(),
    }]);
    let mut o = options(&lib);
    o.docker_socket = Some(docker.socket.clone());
    let r = doctor::run(&o);
    let got: Vec<String> = r
        .checks
        .iter()
        .filter(|c| c.name.starts_with("logs"))
        .map(line)
        .collect();
    let example = |i: usize| logs[i].1.split_once(' ').unwrap().1.to_string();
    assert_eq!(
        got,
        vec![
            format!("FAIL logs database connection refused: 1 line from 2026-11-26T09:03:00.000000000Z to 2026-11-26T09:03:00.000000000Z: the server could not reach PostgreSQL; e.g. \"{}\" -- fix: see the `database` and `container database` lines: start PostgreSQL (docker compose up -d database) and check DB_HOSTNAME / DB_PASSWORD in the .env", example(4)),
            format!("FAIL logs redis connection refused: 1 line from 2026-11-26T09:06:00.000000000Z to 2026-11-26T09:06:00.000000000Z: the server could not reach Redis (jobs do not run); e.g. \"{}\" -- fix: start Redis (docker compose up -d redis) and check REDIS_HOSTNAME in the .env", example(7)),
            format!("FAIL logs relation does not exist: 1 line from 2026-11-26T09:04:00.000000000Z to 2026-11-26T09:04:00.000000000Z: a table the server needs is missing: a migration failed or the database is from another version; e.g. \"{}\" -- fix: see the `migrations` and `versions` lines; restore the database backup made before the upgrade or run the release the database belongs to", example(5)),
            format!("FAIL logs EACCES: 1 line from 2026-11-26T09:02:00.000000000Z to 2026-11-26T09:02:00.000000000Z: the server may not read or write a file; e.g. \"{}\"; 1 path: not readable by uid 1000 (the folder checks say what to change) -- fix: give the server's user access (see the `folder` lines for the owner and mode it needs)", example(3)),
            format!("FAIL logs ENOENT: 3 lines from 2026-11-26T09:00:01.000000000Z to 2026-11-26T09:07:00.000000000Z: the server looked for a file that is not there; e.g. \"{}\"; 1 path: missing on disk (scan reports it as missing); 1 path: nested folder upload/upload, the fault of the `folder upload` line (relink repairs it) -- fix: run `immich-integrity scan`: it names every missing file and the repair (relink for moved or nested files, restore from backup otherwise)", example(1)),
            format!("FAIL logs failed to generate thumbnail: 1 line from 2026-11-26T09:05:00.000000000Z to 2026-11-26T09:05:00.000000000Z: thumbnail or preview generation failed; e.g. \"{}\" -- fix: fix the cause named in the example (a missing or unreadable original, a decoder error), then run the thumbnail job for missing assets (Administration > Jobs) or `immich-integrity regenerate`", example(6)),
        ]
    );
    // The nested folder is said once, by its folder line; the log line points there.
    assert!(
        get(&r, "folder upload")
            .message
            .contains("restored one level too deep"),
        "{:?}",
        get(&r, "folder upload")
    );
    let asked = docker.requests.lock().unwrap().clone();
    let id = asked
        .iter()
        .find(|r| r.contains("/logs?"))
        .expect("the log was read");
    assert!(
        id.ends_with("/logs?stdout=1&stderr=1&timestamps=1&tail=3000"),
        "{id}"
    );

    // The same log as a file (no daemon timestamps: NestJS's own times), only its last lines.
    let file = lib.dir.join("server.log");
    let text: String = logs
        .iter()
        .map(|(_, l)| format!("{}\n", l.split_once(' ').unwrap().1))
        .collect();
    std::fs::write(&file, text).unwrap();
    let mut o = options(&lib);
    o.docker_socket = Some("/nonexistent/docker.sock".into());
    o.log_file = Some(file);
    o.log_lines = 3;
    let r = doctor::run(&o);
    let names: Vec<&str> = r
        .checks
        .iter()
        .filter(|c| c.name.starts_with("logs"))
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "logs redis connection refused",
            "logs ENOENT",
            "logs failed to generate thumbnail"
        ]
    );
    assert!(
        get(&r, "logs ENOENT")
            .message
            .starts_with("1 line from 11/26/2026, 9:07:00 AM to 11/26/2026, 9:07:00 AM: "),
        "{:?}",
        get(&r, "logs ENOENT")
    );
}

#[test]
fn a_clean_log_is_ok() {
    let lib = generate(Generation::V2_6, 4, false);
    let server = container(
        "immich",
        "immich-server",
        "immich_server",
        "172.18.0.5",
        SERVER,
    );
    let logs = vec![
        (1, "2026-11-26T09:00:00.000000000Z [Nest] 7  - 11/26/2026, 9:00:00 AM     LOG [Api:Bootstrap] Immich Server is listening on http://[::1]:2283 [v2.6.3] [production]".to_string()),
        (1, "2026-11-26T09:00:01.000000000Z [Nest] 17  - 11/26/2026, 9:00:01 AM     LOG [Microservices:MetadataService] Initialized local reverse geocoder".to_string()),
    ];
    let docker = FakeDocker::start(vec![Fake {
        inspect: server,
        logs,
    }]);
    let mut o = options(&lib);
    o.docker_socket = Some(docker.socket.clone());
    let r = doctor::run(&o);
    assert_eq!(
        line(get(&r, "logs")),
        "OK logs: 2 lines of immich_server: none of the known causes (ENOENT, EACCES, database or Redis refused, missing relation, failed thumbnail)"
    );
}
