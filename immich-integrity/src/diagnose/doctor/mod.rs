//! `doctor`: a quick checklist of what stops an Immich server from showing photos, answered in
//! seconds (a handful of small or aggregate queries, a few `stat`s, never a full-table fetch).
//!
//! Each [`Check`] is plain data: a name, a [`Status`], what was found and how to fix it. The
//! library never prints; the CLI renders one line per check.
//!
//! The checks:
//! - `database`, `credentials`: PostgreSQL answers, and accepts the login (a refused connection
//!   and a rejected password are told apart; the password is never shown);
//! - `schema`: which Immich schema generation the tables are;
//! - `migrations`: Immich's migration ledgers (`migrations` of TypeORM, `kysely_migrations` since
//!   v1.132) against the schema actually present, the TypeORM-to-kysely upgrade path, and
//!   migration locks held right now;
//! - `media location`: the root the stored paths start with, against `system_metadata`'s
//!   `MediaLocation` and the mapped host folder (Immich's "inconsistent media location" boot
//!   error);
//! - `folder <name>`: each top folder present with its `.immich` marker, readable and writable by
//!   the server's uid (mode bits evaluated for `as_user`, because the tool usually runs as root);
//! - `disk <path>`: free space and inodes of each root and of PostgreSQL's data directory when it
//!   is on this host;
//! - `backups`: the newest file in `backups/` and its age;
//! - `thumbnails`: visible, non-trashed assets the database has no thumbnail or preview for.
//!
//! The rest of the guide (through the Docker Engine API, Redis and `/proc`; each degrades to
//! WARN "could not check: ..." when its source is absent, never to a false OK):
//! - `container <service>`: each container of the compose project (state, health, restarts,
//!   exit code, `OOMKilled`, image and version), a required service without one;
//! - `logs <cause>`: the server's log lines sorted into the guide's causes;
//! - `queues`, `queue <name>`: Immich's BullMQ queues (counts, failure reasons, stuck jobs,
//!   paused queues);
//! - `proxy`: the public URL through the reverse proxy against the server itself;
//! - `memory`, `versions`: RAM, swap and kills for memory; the server's release against the
//!   database's.
//!
//! Free space is read through [`DoctorOptions::statvfs`], a plain function pointer, so a test
//! can simulate a nearly full disk without filling one.

mod containers;
mod database;
mod disk;
mod folders;
mod logs;
mod media;
mod migrations;
mod proxy;
mod queues;
mod resp;
mod system;

use database::*;
use disk::*;
use folders::*;
use media::*;
pub(crate) use media::{same_root, stored_prefixes};
use migrations::*;

use crate::fs::access::Identity;
use crate::fs::roots::detect_media_root;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Nothing to do.
    Ok,
    /// Works for now, but deserves attention (e.g. little free space, old backup).
    Warn,
    /// Broken: the server or the scan cannot work like this.
    Fail,
}

impl Status {
    /// The upper-case label printed in the checklist (`OK`, `WARN`, `FAIL`).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// One line of the checklist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Short stable name, e.g. `database`, `folder thumbs`, `disk /srv/immich`.
    pub name: String,
    /// The verdict.
    pub status: Status,
    /// What was found.
    pub message: String,
    /// What to do about it (absent when OK).
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: impl Into<String>, message: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status: Status::Ok,
            message: message.into(),
            fix: None,
        }
    }
    fn warn(name: impl Into<String>, message: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status: Status::Warn,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }
    fn fail(name: impl Into<String>, message: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            status: Status::Fail,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }
}

/// All checks, in order.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The checks that ran, in the order they ran.
    pub checks: Vec<Check>,
    /// False when the database could not be reached, logged into or recognised as Immich's, so
    /// the database checks did not run (the CLI exits 2).
    pub database_checked: bool,
}

impl Report {
    /// The worst status of all checks (`Ok` when there are none).
    pub fn worst(&self) -> Status {
        self.checks
            .iter()
            .map(|c| c.status)
            .max()
            .unwrap_or(Status::Ok)
    }

    /// The check named `name`, if it ran.
    pub fn get(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }
}

/// Free space of one file system, as `statvfs(3)` reports it (counts, not bytes, except
/// `block_size`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// Fragment size in bytes (`f_frsize`), the unit of the block counts.
    pub block_size: u64,
    /// Total blocks of the file system (`f_blocks`).
    pub blocks: u64,
    /// Blocks available to unprivileged users (`f_bavail`).
    pub blocks_available: u64,
    /// Total inodes of the file system (`f_files`).
    pub inodes: u64,
    /// Inodes available to unprivileged users (`f_favail`); 0 with `inodes` 0 means the file
    /// system has no inode limit.
    pub inodes_available: u64,
}

/// The injection seam for free space: the real one is [`real_statvfs`]; a test passes its own
/// `fn` to simulate a nearly full disk.
pub type StatvfsFn = fn(&Path) -> std::io::Result<Space>;

/// `statvfs(2)` through rustix.
pub fn real_statvfs(path: &Path) -> std::io::Result<Space> {
    let s = rustix::fs::statvfs(path)?;
    Ok(Space {
        block_size: s.f_frsize,
        blocks: s.f_blocks,
        blocks_available: s.f_bavail,
        inodes: s.f_files,
        inodes_available: s.f_favail,
    })
}

/// What to examine.
#[derive(Debug, Clone)]
pub struct DoctorOptions {
    /// PostgreSQL connection URL of Immich's database.
    pub db_url: String,
    /// Host folder holding `upload/`, `thumbs/`, ... (found one or two levels below by its
    /// markers, as the scan does).
    pub media_root: Option<PathBuf>,
    /// Immich's media location inside the container when known (`IMMICH_MEDIA_LOCATION`).
    pub media_location: Option<String>,
    /// PostgreSQL's data folder on this host (`DB_DATA_LOCATION` of a docker install), checked
    /// for free space; default: `SHOW data_directory` when the database is on this host.
    pub db_data_dir: Option<PathBuf>,
    /// `CONTAINER=HOST` pairs: their host folders get a disk check too.
    pub maps: Vec<(String, PathBuf)>,
    /// The uid the server runs as; default: ours.
    pub as_user: Option<Identity>,
    /// WARN when less than this share (percent) of blocks or inodes is free.
    pub min_free_percent: f64,
    /// WARN when the newest backup is older than this.
    pub max_backup_age: Duration,
    /// How free space is measured: [`real_statvfs`] unless a test substitutes its own.
    pub statvfs: StatvfsFn,
    /// The install's compose facts (project, service names, Redis, `IMMICH_VERSION`); default:
    /// the values of Immich's compose file, project unknown.
    pub compose: crate::docker::compose::ComposeEnv,
    /// The Docker (or podman) socket; `None`: [`crate::docker::default_socket`].
    pub docker_socket: Option<PathBuf>,
    /// How the database was reached (found through Docker) or why not: shown in `database`.
    pub db_route: Option<String>,
    /// A server log file to classify instead of the containers' logs.
    pub log_file: Option<PathBuf>,
    /// How many of the newest log lines are read per container (or from the file).
    pub log_lines: usize,
    /// BullMQ's key prefix (Immich's: `immich_bull`).
    pub queue_prefix: String,
    /// An active job processed for longer than this is stuck.
    pub stuck_after: Duration,
    /// Time limit of each call to Docker, Redis or a web server.
    pub source_timeout: Duration,
    /// The memory figures (`/proc/meminfo` unless a test substitutes a file).
    pub meminfo: PathBuf,
    /// The public URL through the reverse proxy; the proxy lines run only when given.
    pub public_url: Option<String>,
    /// The server's own address the proxy forwards to; default: the server container's address
    /// on its network, else `http://localhost:2283`.
    pub server_url: Option<String>,
    /// Extra CA certificates (PEM) trusted for the public URL, beside the public roots.
    pub proxy_ca: Option<PathBuf>,
    /// Time limit of each request of the proxy check (the upload included).
    pub proxy_timeout: Duration,
}

impl DoctorOptions {
    /// Options for `db_url` with the defaults: no media root or maps, our own uid, WARN below
    /// 10% free and for backups older than 7 days, the real `statvfs`.
    pub fn new(db_url: impl Into<String>) -> DoctorOptions {
        DoctorOptions {
            db_url: db_url.into(),
            media_root: None,
            media_location: None,
            db_data_dir: None,
            maps: Vec::new(),
            as_user: None,
            min_free_percent: 10.0,
            max_backup_age: Duration::from_secs(7 * 24 * 3600),
            statvfs: real_statvfs,
            compose: crate::docker::compose::ComposeEnv::defaults(),
            docker_socket: None,
            db_route: None,
            log_file: None,
            log_lines: 3000,
            queue_prefix: "immich_bull".into(),
            stuck_after: Duration::from_secs(3600),
            source_timeout: Duration::from_secs(3),
            meminfo: PathBuf::from("/proc/meminfo"),
            public_url: None,
            server_url: None,
            proxy_ca: None,
            proxy_timeout: Duration::from_secs(10),
        }
    }
}

/// Runs every check. Never fails: a check that cannot run says so in its own line.
pub fn run(opts: &DoctorOptions) -> Report {
    let mut checks = Vec::new();
    let media_host = match media_host(opts) {
        Ok(h) => h,
        Err((given, candidates)) => {
            checks.push(Check::fail(
                "media root",
                crate::fs::roots::ambiguous_root(&given, &candidates).to_string(),
                format!(
                    "pass the tree the server mounts as {}",
                    crate::error::Hint::MediaRoot
                ),
            ));
            None
        }
    };
    let db = match crate::db::runtime::runtime() {
        Ok(rt) => rt.block_on(database_checks(opts, &mut checks)),
        Err(e) => {
            let why = match e {
                crate::Error::InvalidArgument(why) => why,
                e => e.to_string(),
            };
            checks.push(Check::fail(
                "database",
                why,
                "retry; the machine may be out of threads or memory",
            ));
            None
        }
    };
    let database_checked = db.is_some();
    if let Some(db) = &db {
        checks.push(media_location_check(opts, db, media_host.as_deref()));
        library_checks(opts, db, &mut checks);
    }
    match &media_host {
        Some(host) => folder_checks(
            opts,
            host,
            db.as_ref().and_then(|d| d.mount_checks.as_ref()),
            &mut checks,
        ),
        None => checks.push(Check::warn(
            "folders",
            "no media root given, so the top folders were not checked",
            format!(
                "pass {} (the host folder of UPLOAD_LOCATION) or {}",
                crate::error::Hint::MediaRoot,
                crate::error::Hint::EnvFile
            ),
        )),
    }
    disk_checks(opts, media_host.as_deref(), db.as_ref(), &mut checks);
    if let Some(host) = &media_host {
        checks.push(backup_check(opts, host));
    }
    if let Some(db) = db {
        checks.push(db.thumbnails);
    }
    if let Some(route) = &opts.db_route {
        if let Some(c) = checks.iter_mut().find(|c| c.name == "database") {
            c.message.push_str(&format!("; {route}"));
        }
    }
    guide_checks(opts, database_checked, media_host.as_deref(), &mut checks);
    Report {
        checks,
        database_checked,
    }
}

/// Containers, logs, queues, memory and versions: one Docker listing shared by all.
fn guide_checks(
    opts: &DoctorOptions,
    db_ok: bool,
    media_host: Option<&Path>,
    checks: &mut Vec<Check>,
) {
    let compose = containers::gather(opts);
    let facts = if db_ok {
        system::read_facts(opts)
    } else {
        system::Facts::default()
    };
    containers::container_checks(&compose, facts.smart_search, checks);
    logs::log_checks(opts, &compose, media_host, checks);
    queues::queue_checks(opts, compose.client.as_ref(), checks);
    let server = compose
        .service("immich-server")
        .and_then(|c| c.address().map(|(_, ip)| format!("http://{ip}:2283")));
    proxy::proxy_checks(opts, server, checks);
    checks.push(system::memory_check(opts, &compose));
    checks.push(system::versions_check(opts, &compose, &facts));
}

/// The media root, found by its markers; `Err` (given, candidates) when more than one tree is
/// below the folder given.
fn media_host(opts: &DoctorOptions) -> Result<Option<PathBuf>, (PathBuf, Vec<PathBuf>)> {
    let Some(given) = opts.media_root.clone().or_else(|| {
        opts.maps
            .iter()
            .find(|(c, _)| {
                let c = c.trim_end_matches('/');
                matches!(c, "upload" | "/usr/src/app/upload" | "/data")
                    || Some(c) == opts.media_location.as_deref()
            })
            .map(|(_, h)| h.clone())
    }) else {
        return Ok(None);
    };
    detect_media_root(&given).map(Some).map_err(|c| (given, c))
}

#[cfg(test)]
mod tests;
