//! The database password never has to be on the command line: every command takes it from
//! `PGPASSWORD`, `PGPASSFILE`, `~/.pgpass` or the `.env`'s `DB_PASSWORD`, and a wrong one fails
//! with a message that never holds it.
//!
//! The shared test server trusts every local login, so this test starts a throw-away cluster
//! of its own that demands scram-sha-256 (initdb and pg_ctl of PostgreSQL 15, run as the
//! `postgres` user, on a free port, in a temp folder) and stops it at the end, pass or fail.

mod common;

use common::*;
use immich_fixtures::{FixtureSpec, Generation};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";
/// A password with the characters that once leaked through URL parsing.
const RIGHT: &str = "Rt?pw#Sec@42";
const WRONG: &str = "Wr?ng#Pass@13";

/// A PostgreSQL cluster of this test's own; stopped and removed on drop.
struct Cluster {
    dir: tempfile::TempDir,
    port: u16,
}

fn as_postgres(dir: &Path, program: &str, args: &[&str]) -> std::process::Output {
    Command::new("setpriv")
        .args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
            &format!("{PG_BIN}/{program}"),
        ])
        .args(args)
        .current_dir(dir)
        .env_remove("PGPASSWORD")
        .output()
        .unwrap_or_else(|e| panic!("setpriv {program}: {e}"))
}

impl Cluster {
    fn start() -> Cluster {
        assert!(
            Path::new(PG_BIN).join("initdb").exists(),
            "this test needs PostgreSQL 15's initdb in {PG_BIN} (scripts/setup.sh installs it)"
        );
        let dir = tempfile::Builder::new()
            .prefix("immich-integrity-scram-")
            .tempdir_in("/tmp")
            .unwrap();
        let (uid, gid) = (
            nix_id("-u"),
            nix_id("-g"), // the postgres user's ids
        );
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, RIGHT).unwrap();
        std::os::unix::fs::chown(&pwfile, Some(uid), Some(gid)).unwrap();
        std::fs::set_permissions(&pwfile, std::fs::Permissions::from_mode(0o600)).unwrap();
        let data = dir.path().join("data");
        let out = as_postgres(
            dir.path(),
            "initdb",
            &[
                "-D",
                &data.to_string_lossy(),
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                &format!("--pwfile={}", pwfile.display()),
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = Cluster { dir, port };
        let out = as_postgres(
            cluster.dir.path(),
            "pg_ctl",
            &[
                "-D",
                &data.to_string_lossy(),
                "-l",
                &cluster.dir.path().join("log").to_string_lossy(),
                "-w",
                "-t",
                "60",
                "-o",
                &format!(
                    "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=off",
                    cluster.dir.path().display()
                ),
                "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            std::fs::read_to_string(cluster.dir.path().join("log")).unwrap_or_default()
        );
        cluster
    }

    /// The admin URL with the password in it (for the fixture generator only).
    fn admin_url(&self) -> String {
        format!(
            "postgres://postgres:{}@127.0.0.1:{}",
            encode(RIGHT),
            self.port
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        as_postgres(
            self.dir.path(),
            "pg_ctl",
            &[
                "-D",
                &data.to_string_lossy(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }
}

fn nix_id(flag: &str) -> u32 {
    let out = Command::new("id")
        .args([flag, "postgres"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Where the password comes from in one run.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Source {
    PgPassword(&'static str),
    PgPassFile,
    HomePgPass,
    EnvFile(&'static str),
    Nothing,
}

struct Setup {
    url: String,
    db: String,
    port: u16,
    media: Vec<String>,
    scratch: PathBuf,
}

/// Runs `command` (its own arguments in `extra`) with the password from `source` only.
fn run(s: &Setup, command: &str, extra: &[String], source: Source) -> (Option<i32>, String) {
    let home = s.scratch.join(format!("home-{}", rand_suffix()));
    std::fs::create_dir_all(&home).unwrap();
    let mut args: Vec<String> = vec![command.to_string()];
    args.extend(extra.iter().cloned());
    let mut cmd = Command::new(binary());
    cmd.env_remove("DATABASE_URL")
        .env_remove("PGPASSWORD")
        .env_remove("PGPASSFILE")
        .env_remove("FIXTURE_PG_URL")
        .env("HOME", &home);
    let pgpass = format!("127.0.0.1:{}:*:postgres:{}\n", s.port, pgpass_escape(RIGHT));
    let write_600 = |p: &Path, text: &str| {
        std::fs::write(p, text).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)).unwrap();
    };
    let database_args = |args: &mut Vec<String>| {
        args.extend(["--db-url".to_string(), s.url.clone()]);
    };
    match source {
        Source::PgPassword(p) => {
            cmd.env("PGPASSWORD", p);
            database_args(&mut args);
        }
        Source::PgPassFile => {
            let f = s.scratch.join(format!("passfile-{}", rand_suffix()));
            write_600(&f, &pgpass);
            cmd.env("PGPASSFILE", &f);
            database_args(&mut args);
        }
        Source::HomePgPass => {
            write_600(&home.join(".pgpass"), &pgpass);
            database_args(&mut args);
        }
        Source::EnvFile(p) => {
            let dir = s.scratch.join(format!("install-{}", rand_suffix()));
            std::fs::create_dir_all(&dir).unwrap();
            let env = dir.join(".env");
            write_600(
                &env,
                &format!(
                    "DB_HOSTNAME=127.0.0.1\nDB_PORT={}\nDB_USERNAME=postgres\n\
                     DB_PASSWORD='{p}'\nDB_DATABASE_NAME={}\n",
                    s.port, s.db
                ),
            );
            args.extend(["--env-file".to_string(), env.to_string_lossy().into_owned()]);
        }
        Source::Nothing => database_args(&mut args),
    }
    if command != "undo" {
        args.extend(s.media.iter().cloned());
    }
    let out = cmd.args(&args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// `:` and `\` are escaped in a pgpass field.
fn pgpass_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace(':', "\\:")
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed).to_string()
}

fn refused(text: &str) -> bool {
    text.contains("password authentication failed")
}

#[test]
fn every_command_takes_the_password_from_pgpassword_pgpass_or_the_env_file() {
    let cluster = Cluster::start();
    // The fixture generator reads its admin URL from FIXTURE_PG_URL (this test is alone in its
    // binary, so no other test sees the change).
    std::env::set_var("FIXTURE_PG_URL", cluster.admin_url());
    let lib = generate_spec(FixtureSpec {
        generation: Generation::V1_112,
        assets: 6,
        users: 1,
        faults: false,
        seed: 7,
        content_faults: false,
        original_bytes: 0,
    });
    let with_password = lib.truth.db_url.clone();
    let url = with_password.replacen(&format!("postgres:{}@", encode(RIGHT)), "postgres@", 1);
    assert_ne!(url, with_password, "the fixture URL holds the password");
    let db = url.rsplit('/').next().unwrap().to_string();
    let mut media = library_flags(&lib);
    let at = media.iter().position(|a| a == "--db-url").unwrap();
    media.drain(at..at + 2);
    let setup = Setup {
        url,
        db,
        port: cluster.port,
        media,
        scratch: lib.dir.join("password-sources"),
    };
    std::fs::create_dir_all(&setup.scratch).unwrap();

    // A journal of this database for undo: a relink that changed nothing.
    let journal = setup.scratch.join("relink.journal");
    let (code, text) = run(
        &setup,
        "relink",
        &[
            "--apply".into(),
            "--journal".into(),
            journal.to_string_lossy().into_owned(),
        ],
        Source::PgPassword(RIGHT),
    );
    assert_eq!(code, Some(0), "{text}");

    let commands: Vec<(&str, Vec<String>, &[i32])> = vec![
        ("scan", vec![], &[0, 1]),
        ("orphans", vec![], &[0, 1]),
        ("doctor", vec![], &[0, 1]),
        ("relink", vec![], &[0]),
        ("regenerate", vec!["--via".into(), "queue".into()], &[0]),
        ("explain-report", vec![], &[0, 1, 2]),
        ("undo", vec![journal.to_string_lossy().into_owned()], &[0]),
    ];
    for (command, extra, ok_codes) in &commands {
        for source in [
            Source::PgPassword(RIGHT),
            Source::PgPassFile,
            Source::HomePgPass,
            Source::EnvFile(RIGHT),
        ] {
            let (code, text) = run(&setup, command, extra, source);
            assert!(
                !refused(&text) && !text.contains("cannot connect"),
                "{command} with {source:?}: {text}"
            );
            assert!(
                code.is_some_and(|c| ok_codes.contains(&c)),
                "{command} with {source:?}: exit {code:?}: {text}"
            );
            if *command == "doctor" {
                assert!(text.contains("logged in as"), "{text}");
            }
            assert!(
                !text.contains(RIGHT) && !text.contains(&encode(RIGHT)),
                "{text}"
            );
        }
        for source in [
            Source::Nothing,
            Source::PgPassword(WRONG),
            Source::EnvFile(WRONG),
        ] {
            let (code, text) = run(&setup, command, extra, source);
            assert!(refused(&text), "{command} with {source:?}: {text}");
            assert_eq!(code, Some(2), "{command} with {source:?}: {text}");
            for secret in [RIGHT, WRONG] {
                assert!(
                    !text.contains(secret) && !text.contains(&encode(secret)),
                    "{command} with {source:?} shows a password: {text}"
                );
            }
        }
    }
    drop(lib);
    drop(cluster);
}

/// No example in `--help` or the README puts a password in a URL (command lines are readable
/// in /proc/PID/cmdline).
#[test]
fn no_example_puts_a_password_on_the_command_line() {
    let mut texts = vec![(
        "README.md".to_string(),
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap(),
    )];
    for command in [
        "scan",
        "relink",
        "undo",
        "orphans",
        "doctor",
        "regenerate",
        "refresh-metadata",
        "explain-report",
    ] {
        let out = Command::new(binary())
            .args([command, "--help"])
            .output()
            .unwrap();
        texts.push((
            format!("{command} --help"),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ));
    }
    for (what, text) in texts {
        for (i, _) in text.match_indices("postgres://") {
            let rest = &text[i + "postgres://".len()..];
            let end = rest
                .find(|c: char| c.is_whitespace() || c == '`' || c == '"' || c == ')')
                .unwrap_or(rest.len());
            let url = &rest[..end];
            if let Some((userinfo, _)) = url.rsplit_once('@') {
                assert!(
                    !userinfo.contains(':') || userinfo.ends_with(":***"),
                    "{what} shows a password in postgres://{url}"
                );
            }
        }
    }
}
