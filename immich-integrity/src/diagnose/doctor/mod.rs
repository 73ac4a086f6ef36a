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
//! Free space is read through [`DoctorOptions::statvfs`], a plain function pointer, so a test
//! can simulate a nearly full disk without filling one.

use crate::db::conn::SourceInfo;
use crate::db::conn::{connect, read_info, redact_url};
use crate::db::schema::{q, Schema};
use crate::fs::access::Identity;
use crate::fs::pathmap::MEDIA_FOLDERS;
use crate::fs::roots::{detect_media_root, folder_state, FolderState};
use serde::Serialize;
use sqlx::postgres::PgConnectOptions;
use sqlx::PgConnection;
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime};

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
        }
    }
}

/// Runs every check. Never fails: a check that cannot run says so in its own line.
pub fn run(opts: &DoctorOptions) -> Report {
    let mut checks = Vec::new();
    let media_host = media_host(opts);
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
            "pass --media-root (the host folder of UPLOAD_LOCATION) or --env-file",
        )),
    }
    disk_checks(opts, media_host.as_deref(), db.as_ref(), &mut checks);
    if let Some(host) = &media_host {
        checks.push(backup_check(opts, host));
    }
    if let Some(db) = db {
        checks.push(db.thumbnails);
    }
    Report {
        checks,
        database_checked,
    }
}

/// What the database said, gathered in one connection.
struct DbFacts {
    info: SourceInfo,
    /// Stored media-root prefix -> rows (upload originals and asset files), most rows first.
    prefixes: Result<Vec<(String, i64)>, String>,
    data_directory: Option<String>,
    local: bool,
    thumbnails: Check,
    /// `system-flags.mountChecks`: folders whose marker Immich already wrote once (and now
    /// requires). `None` when unknown: every marker is then required.
    mount_checks: Option<HashMap<String, bool>>,
}

fn media_host(opts: &DoctorOptions) -> Option<PathBuf> {
    let given = opts.media_root.clone().or_else(|| {
        opts.maps
            .iter()
            .find(|(c, _)| {
                let c = c.trim_end_matches('/');
                matches!(c, "upload" | "/usr/src/app/upload" | "/data")
                    || Some(c) == opts.media_location.as_deref()
            })
            .map(|(_, h)| h.clone())
    })?;
    Some(detect_media_root(&given))
}

async fn database_checks(opts: &DoctorOptions, checks: &mut Vec<Check>) -> Option<DbFacts> {
    let shown = redact_url(&opts.db_url);
    let target = match PgConnectOptions::from_str(&opts.db_url) {
        Ok(o) => format!("{}:{}", o.get_host(), o.get_port()),
        Err(e) => {
            checks.push(Check::fail(
                "database",
                format!("the database URL {shown} is not valid: {e}"),
                "pass --db-url postgres://USER:PASSWORD@HOST:PORT/DATABASE (or --env-file)",
            ));
            return None;
        }
    };
    let mut conn = match connect(&opts.db_url).await {
        Ok(c) => {
            checks.push(Check::ok(
                "database",
                format!("PostgreSQL answers at {target}"),
            ));
            checks.push(Check::ok("credentials", format!("logged in as {shown}")));
            c
        }
        Err(crate::Error::Connect { source, .. }) => {
            connect_failure(&target, &shown, &source, checks);
            return None;
        }
        Err(e) => {
            checks.push(Check::fail("database", e.to_string(), "check --db-url"));
            return None;
        }
    };
    // A stuck lock must not make the doctor hang, and nothing it runs may write.
    for set in [
        "SET statement_timeout = '20s'",
        "SET default_transaction_read_only = on",
    ] {
        let _ = sqlx::query(set).execute(&mut conn).await;
    }
    let info = match read_info(&mut conn).await {
        Ok(i) => {
            checks.push(Check::ok(
                "schema",
                format!(
                    "{} (asset table {}{})",
                    i.schema.describe(),
                    i.schema.asset_table,
                    i.schema
                        .asset_file_table
                        .map(|t| format!(", files in {t}"))
                        .unwrap_or_default()
                ),
            ));
            i
        }
        Err(e) => {
            checks.push(Check::fail(
                "schema",
                e.to_string(),
                "point --db-url at Immich's database (DB_DATABASE_NAME in .env, usually `immich`)",
            ));
            return None;
        }
    };
    checks.push(migrations_check(&mut conn, &info.schema).await);
    checks.push(queries_check(&mut conn, &info.schema).await);
    let mut known: Vec<&str> = vec!["/data", "/usr/src/app/upload", "upload"];
    known.extend(info.media_location.as_deref());
    known.extend(opts.media_location.as_deref());
    let prefixes = stored_prefixes(&mut conn, &info.schema, &known)
        .await
        .map_err(|e| e.to_string());
    let data_directory = sqlx::query_scalar::<_, String>("SHOW data_directory")
        .fetch_one(&mut conn)
        .await
        .ok();
    let local = PgConnectOptions::from_str(&opts.db_url)
        .map(|o| {
            let h = o.get_host();
            h.starts_with('/') || matches!(h, "localhost" | "127.0.0.1" | "::1")
        })
        .unwrap_or(false);
    let thumbnails = thumbnails_check(&mut conn, &info.schema).await;
    let mount_checks = if info.schema.has_media_location_table {
        sqlx::query_scalar::<_, Option<serde_json::Value>>(
            "SELECT value->'mountChecks' FROM system_metadata WHERE key = 'system-flags'",
        )
        .fetch_optional(&mut conn)
        .await
        .ok()
        .map(|v| {
            v.flatten()
                .and_then(|v| serde_json::from_value(v).ok())
                .unwrap_or_default()
        })
    } else {
        None
    };
    Some(DbFacts {
        mount_checks,
        info,
        prefixes,
        data_directory,
        local,
        thumbnails,
    })
}

/// Prepares (parses and plans, never runs) every statement that scan, orphans, relink,
/// regenerate and undo would send to this database: a release that dropped or renamed a
/// column the tool reads fails here, naming the statement, instead of half-way through a run.
async fn queries_check(conn: &mut PgConnection, schema: &Schema) -> Check {
    let mut all = crate::db::source::statements(schema);
    all.extend(crate::repair::relink::statements(schema));
    all.extend(crate::repair::regenerate::statements(schema));
    all.extend(crate::diagnose::explain::statements(schema));
    let mut failed: Vec<String> = Vec::new();
    let begun = sqlx::query("BEGIN READ ONLY").execute(&mut *conn).await;
    if let Err(e) = begun {
        return Check::warn(
            "queries",
            format!("could not check: {e}"),
            "run doctor again",
        );
    }
    for (label, sql) in &all {
        match crate::db::conn::prepare_all(conn, &[sql]).await {
            Ok(Ok(())) => {}
            Ok(Err(why)) => failed.push(format!("{label}: {why}")),
            Err(e) => {
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                return Check::warn(
                    "queries",
                    format!("could not check: {e}"),
                    "run doctor again",
                );
            }
        }
    }
    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
    if failed.is_empty() {
        return Check::ok(
            "queries",
            format!(
                "all {} statements of scan, orphans, relink, regenerate, undo and explain-report compile \
                 against {}",
                all.len(),
                schema.describe()
            ),
        );
    }
    Check::fail(
        "queries",
        format!(
            "{} of {} statements do not compile against {}: {}",
            failed.len(),
            all.len(),
            schema.describe(),
            failed.join("; ")
        ),
        "a table the tool reads has changed (a dropped or renamed column): scan reports the \
         parts it cannot check and exits 3; repairs on them are refused. Check that this \
         database belongs to a released Immich version, or update immich-integrity",
    )
}

fn connect_failure(target: &str, shown: &str, e: &sqlx::Error, checks: &mut Vec<Check>) {
    let code = match e {
        sqlx::Error::Database(d) => d.code().map(|c| c.into_owned()),
        _ => None,
    };
    match code.as_deref() {
        // invalid_authorization_specification, invalid_password
        Some(c) if c.starts_with("28") => {
            checks.push(Check::ok(
                "database",
                format!("PostgreSQL answers at {target}"),
            ));
            checks.push(Check::fail(
                "credentials",
                format!("PostgreSQL refused the login of {shown}: {e}"),
                "use DB_USERNAME / DB_PASSWORD from Immich's .env (--env-file reads them)",
            ));
        }
        // invalid_catalog_name: no such database
        Some("3D000") => {
            checks.push(Check::ok(
                "database",
                format!("PostgreSQL answers at {target}"),
            ));
            checks.push(Check::fail(
                "credentials",
                format!("logged in, but the database does not exist: {e}"),
                "use DB_DATABASE_NAME from Immich's .env (usually `immich`)",
            ));
        }
        Some(_) => checks.push(Check::fail(
            "database",
            format!("PostgreSQL at {target} refused the connection: {e}"),
            "read the database container's log (docker compose logs database)",
        )),
        None => checks.push(Check::fail(
            "database",
            format!("cannot reach PostgreSQL at {target}: {e}"),
            "start the database (docker compose up -d database) and check DB_HOSTNAME / \
             DB_PORT; from the host the port must be published",
        )),
    }
}

/// A migration whose effect on the tables can be seen: `applied` says whether it is.
struct Landmark {
    timestamp: i64,
    name: &'static str,
    applied: fn(&Schema) -> bool,
}

const LANDMARKS: &[Landmark] = &[
    Landmark {
        timestamp: 1711257900274,
        name: "RenameWebpJpegPaths",
        applied: |s| s.preview_columns != Some(("resizePath", "webpPath")),
    },
    Landmark {
        timestamp: 1724101822106,
        name: "AddAssetFilesTable",
        applied: |s| s.asset_file_table.is_some(),
    },
    Landmark {
        timestamp: 1752267649968,
        name: "StandardizeNames",
        applied: |s| s.asset_table == "asset",
    },
    Landmark {
        timestamp: 1764698859174,
        name: "SidecarInAssetFile",
        applied: |s| !s.has_sidecar_column,
    },
    Landmark {
        timestamp: 1768828334807,
        name: "AddIsEditedToAssetFile",
        applied: |s| s.has_asset_file_is_edited,
    },
    Landmark {
        timestamp: 1773242919341,
        name: "EncodedVideoAssetFiles",
        applied: |s| !s.has_encoded_video_column,
    },
];

/// The last TypeORM migration; Immich's first kysely migration refuses any other.
const LAST_TYPEORM: &str = "AddMissingIndex1744910873956";
/// `enum DatabaseLock.Migrations` in Immich's server.
const IMMICH_MIGRATION_LOCK: i64 = 200;
/// Kysely's `PostgresAdapter` migration lock id.
const KYSELY_MIGRATION_LOCK: i64 = 3853314791062309107;

async fn migrations_check(conn: &mut PgConnection, schema: &Schema) -> Check {
    const NAME: &str = "migrations";
    match migrations_facts(conn).await {
        Ok(f) => judge_migrations(&f, schema),
        Err(e) => Check::warn(
            NAME,
            format!("cannot read the migration tables: {e}"),
            "run the doctor as the database owner (DB_USERNAME)",
        ),
    }
}

/// What the migration ledgers hold.
#[derive(Debug, Default)]
struct MigrationFacts {
    /// TypeORM `migrations`: (rows, newest name, newest timestamp).
    typeorm: Option<(i64, Option<String>, Option<i64>)>,
    /// `kysely_migrations`: (rows, newest name).
    kysely: Option<(i64, Option<String>)>,
    kysely_lock_flag: bool,
    /// Advisory migration locks held by other sessions.
    locks_held: i64,
}

async fn migrations_facts(conn: &mut PgConnection) -> Result<MigrationFacts, sqlx::Error> {
    let (has_typeorm, has_kysely, has_lock): (bool, bool, bool) = sqlx::query_as(
        "SELECT to_regclass('public.migrations') IS NOT NULL, \
                to_regclass('public.kysely_migrations') IS NOT NULL, \
                to_regclass('public.kysely_migrations_lock') IS NOT NULL",
    )
    .fetch_one(&mut *conn)
    .await?;
    let mut f = MigrationFacts::default();
    if has_typeorm {
        f.typeorm = Some(
            sqlx::query_as(
                "SELECT (SELECT count(*) FROM migrations), \
                        (SELECT name::text FROM migrations ORDER BY timestamp DESC LIMIT 1), \
                        (SELECT max(timestamp)::int8 FROM migrations)",
            )
            .fetch_one(&mut *conn)
            .await?,
        );
    }
    if has_kysely {
        f.kysely = Some(
            sqlx::query_as(
                "SELECT (SELECT count(*) FROM kysely_migrations), \
                        (SELECT name::text FROM kysely_migrations ORDER BY name DESC LIMIT 1)",
            )
            .fetch_one(&mut *conn)
            .await?,
        );
    }
    if has_lock {
        f.kysely_lock_flag = sqlx::query_scalar::<_, Option<i64>>(
            "SELECT max(is_locked)::int8 FROM kysely_migrations_lock",
        )
        .fetch_one(&mut *conn)
        .await?
        .unwrap_or(0)
            != 0;
    }
    // A bigint advisory key shows in pg_locks as classid (high half) and objid (low half).
    f.locks_held = sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks \
         WHERE locktype = 'advisory' AND granted AND objsubid = 1 AND pid <> pg_backend_pid() \
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
           AND ((classid::text::int8 << 32) | objid::text::int8) = ANY($1)",
    )
    .bind([IMMICH_MIGRATION_LOCK, KYSELY_MIGRATION_LOCK])
    .fetch_one(&mut *conn)
    .await?;
    Ok(f)
}

/// The leading millisecond timestamp of a kysely migration name (`1752267649968-Name`).
fn name_timestamp(name: &str) -> Option<i64> {
    let digits: String = name.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

fn judge_migrations(f: &MigrationFacts, schema: &Schema) -> Check {
    const NAME: &str = "migrations";
    let fix_restore = "restore the database dump that matches the Immich version you run \
                       (backups/ holds Immich's own dumps), or run the Immich release that \
                       wrote this database; read the server log for the failing migration";
    if f.locks_held > 0 || f.kysely_lock_flag {
        return Check::warn(
            NAME,
            "a migration lock is held: migrations are running now, or a server died in them",
            "wait for the server to finish starting; if no server is running, restart the \
             database container to release the lock",
        );
    }
    let typeorm_newest = f.typeorm.as_ref().and_then(|t| t.2);
    let kysely_newest = f
        .kysely
        .as_ref()
        .and_then(|k| k.1.as_deref())
        .and_then(name_timestamp);
    if f.typeorm.is_none() && f.kysely.is_none() {
        return Check::warn(
            NAME,
            "neither `migrations` nor `kysely_migrations` exists: this database was not \
             created by an Immich server (or was restored partially)",
            fix_restore,
        );
    }
    // Kysely's first migration refuses a TypeORM ledger that stops short of the last one.
    if let (Some((_, newest, _)), Some((0, _))) = (&f.typeorm, &f.kysely) {
        if newest.as_deref() != Some(LAST_TYPEORM) {
            return Check::fail(
                NAME,
                format!(
                    "the TypeORM ledger ends at {}, not {LAST_TYPEORM}, and no kysely \
                     migration ran: Immich stops with \"Invalid upgrade path\"",
                    newest.as_deref().unwrap_or("nothing")
                ),
                "upgrade through an Immich release that still has TypeORM migrations \
                 (one containing AddMissingIndex1744910873956) first, then to the current one \
                 (https://immich.app/errors#typeorm-upgrade)",
            );
        }
    }
    let newest = kysely_newest.max(typeorm_newest).unwrap_or(0);
    for l in LANDMARKS {
        let recorded = newest >= l.timestamp;
        let applied = (l.applied)(schema);
        if recorded && !applied {
            return Check::fail(
                NAME,
                format!(
                    "migration {}-{} is recorded as applied but the tables do not show it \
                     (schema looks like {}): a failed migration or a mixed restore",
                    l.timestamp, l.name, schema.label
                ),
                fix_restore,
            );
        }
        if applied && !recorded {
            return Check::fail(
                NAME,
                format!(
                    "the tables show migration {}-{} but the ledger's newest is {}: the \
                     ledger does not match the schema (a mixed restore)",
                    l.timestamp,
                    l.name,
                    if newest == 0 {
                        "nothing".to_string()
                    } else {
                        newest.to_string()
                    }
                ),
                fix_restore,
            );
        }
    }
    let newest_name = f
        .kysely
        .as_ref()
        .and_then(|k| k.1.clone())
        .or_else(|| f.typeorm.as_ref().and_then(|t| t.1.clone()))
        .unwrap_or_default();
    let rows =
        f.kysely.as_ref().map(|k| k.0).unwrap_or(0) + f.typeorm.as_ref().map(|t| t.0).unwrap_or(0);
    Check::ok(
        NAME,
        format!("{rows} recorded, newest {newest_name}, consistent with the tables; no lock held"),
    )
}

/// Rows per stored media-root prefix, over uploaded originals and asset files, in one aggregate
/// query. A path under one of `known` roots (the saved and configured media locations and
/// Immich's default spellings; longest first) counts under that root; any other path counts
/// under whatever precedes its first top folder (`/upload/`, `/thumbs/`, ...).
async fn stored_prefixes(
    conn: &mut PgConnection,
    schema: &Schema,
    known: &[&str],
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let folders = MEDIA_FOLDERS.join("|");
    let mut known: Vec<String> = known
        .iter()
        .map(|r| r.trim_end_matches('/').to_string())
        .filter(|r| !r.is_empty())
        .collect();
    known.sort_by_key(|r| std::cmp::Reverse(r.len()));
    known.dedup();
    let mut parts = vec![format!(
        "SELECT \"originalPath\" AS p FROM {} WHERE \"libraryId\" IS NULL",
        q(schema.asset_table)
    )];
    if let Some(t) = schema.asset_file_table {
        parts.push(format!("SELECT path FROM {}", q(t)));
    }
    // One CASE arm per known root, each bound as a parameter: a plain scan, no per-row subquery.
    let arms: String = (0..known.len())
        .map(|i| format!("WHEN starts_with(p, ${} || '/') THEN ${} ", i + 1, i + 1))
        .collect();
    let sql = format!(
        "SELECT CASE {arms}\
            ELSE COALESCE(substring(p from '^(.*?)/(?:{folders})/'), '?') END AS prefix, \
            count(*) \
         FROM ({}) s GROUP BY 1 ORDER BY 2 DESC, 1",
        parts.join(" UNION ALL ")
    );
    let mut query = sqlx::query_as(&sql);
    for r in &known {
        query = query.bind(r);
    }
    query.fetch_all(&mut *conn).await
}

/// `upload` and `/usr/src/app/upload` name the same folder (the container's working directory
/// is `/usr/src/app`).
fn same_root(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        let s = s.trim_end_matches('/');
        if s == "upload" {
            "/usr/src/app/upload".to_string()
        } else {
            s.to_string()
        }
    };
    norm(a) == norm(b)
}

fn media_location_check(opts: &DoctorOptions, db: &DbFacts, host: Option<&Path>) -> Check {
    const NAME: &str = "media location";
    let saved = db.info.media_location.as_deref();
    let prefixes = match &db.prefixes {
        Ok(p) => p,
        Err(e) => {
            return Check::warn(
                NAME,
                format!("cannot count the stored paths per root: {e}"),
                "run the doctor as the database owner (DB_USERNAME)",
            )
        }
    };
    let total: i64 = prefixes.iter().map(|(_, n)| n).sum();
    let shown: Vec<String> = prefixes
        .iter()
        .map(|(p, n)| format!("{n} under {p}"))
        .collect();
    let dominant = prefixes.first().map(|(p, _)| p.as_str());
    // The root the server compares the stored paths with: the saved one, or (before v1.137,
    // when nothing is saved) the root most paths use.
    let expected = saved.or(dominant);
    let boot_error = "Immich stops at boot with \"Detected an inconsistent media location\"";
    let mixed = prefixes.len() > 1;
    if let Some(exp) = expected {
        let off: i64 = prefixes
            .iter()
            .filter(|(p, _)| !same_root(p, exp))
            .map(|(_, n)| n)
            .sum();
        if off > 0 && !mixed {
            // Every path agrees on a root, but not the one saved: the saved value is stale.
            let root = dominant.unwrap_or("?");
            return Check::fail(
                NAME,
                format!(
                    "all {total} stored paths start with {root} but MediaLocation in \
                     system_metadata is {exp}: {boot_error}"
                ),
                format!(
                    "with Immich stopped and a database backup taken, save the root the paths \
                     use: UPDATE system_metadata SET value = '{{\"location\": \"{root}\"}}' \
                     WHERE key = 'MediaLocation'; Immich moves them to its own root at the next \
                     start"
                ),
            );
        }
        if off > 0 {
            let against = match saved {
                Some(s) => format!("MediaLocation in system_metadata is {s}"),
                None => format!("most start with {exp}"),
            };
            return Check::fail(
                NAME,
                format!(
                    "{off} of {total} stored paths do not start with the media location ({}; \
                     {against}): the server cannot open them, and {}",
                    shown.join(", "),
                    if saved.is_some() {
                        boot_error.to_string()
                    } else {
                        format!("{boot_error} when it samples one of them")
                    }
                ),
                format!(
                    "`immich-integrity scan` reports those rows as `moved` and `immich-integrity \
                     relink --apply` rewrites them under {exp}"
                ),
            );
        }
    }
    if let (Some(s), Some(env)) = (expected, opts.media_location.as_deref()) {
        if !same_root(s, env) {
            return Check::warn(
                NAME,
                format!(
                    "the stored paths use {s} but IMMICH_MEDIA_LOCATION is {env}: the next \
                     start rewrites every path from {s} to {env}"
                ),
                "make sure that is intended (back up the database first), or set \
                 IMMICH_MEDIA_LOCATION back",
            );
        }
    }
    if let Some(h) = host.filter(|h| !h.is_dir()) {
        return Check::fail(
            NAME,
            format!("the media root {} is not a directory", h.display()),
            "pass the host folder of UPLOAD_LOCATION as --media-root",
        );
    }
    let Some(host) = host else {
        return Check::warn(
            NAME,
            format!(
                "stored paths: {}; no media root given to compare with",
                if shown.is_empty() {
                    "none".into()
                } else {
                    shown.join(", ")
                }
            ),
            "pass --media-root (UPLOAD_LOCATION) or --env-file",
        );
    };
    let marked = MEDIA_FOLDERS
        .iter()
        .filter(|f| host.join(f).join(".immich").is_file())
        .count();
    if marked == 0 {
        return Check::fail(
            NAME,
            format!(
                "{} holds none of Immich's folders with a .immich marker: it is not the media \
                 root the database's paths refer to",
                host.display()
            ),
            "pass the host folder of UPLOAD_LOCATION as --media-root (the one holding \
             upload/, thumbs/, library/ ...)",
        );
    }
    Check::ok(
        NAME,
        format!(
            "{} -> {} ({}; saved MediaLocation {})",
            expected.unwrap_or("(no paths stored)"),
            host.display(),
            if shown.is_empty() {
                "no paths stored".into()
            } else {
                shown.join(", ")
            },
            saved.unwrap_or("none")
        ),
    )
}

const WRITE: u32 = 2;

/// The first directory from `/` down to `dir`'s parent that `who` cannot enter.
fn blocked_ancestor(dir: &Path, who: &Identity) -> Option<PathBuf> {
    let mut blocked = None;
    for a in dir.ancestors().skip(1) {
        if let Ok(m) = std::fs::metadata(a) {
            if !who.allows(m.mode(), m.uid(), m.gid(), crate::fs::access::SEARCH) {
                blocked = Some(a.to_path_buf());
            }
        }
    }
    blocked
}

fn folder_checks(
    opts: &DoctorOptions,
    host: &Path,
    mount_checks: Option<&HashMap<String, bool>>,
    checks: &mut Vec<Check>,
) {
    let who = opts.as_user.clone().unwrap_or_else(Identity::current);
    let chown = format!("chown {who} ");
    for folder in MEDIA_FOLDERS {
        let name = format!("folder {folder}");
        let dir = host.join(folder);
        let marker = dir.join(".immich");
        let state = folder_state(host, folder);
        // Immich writes a folder's first marker itself and requires it only from then on.
        let first_start = mount_checks.is_some_and(|m| m.get(folder) != Some(&true));
        let check = match state {
            FolderState::Missing | FolderState::NoMarker if first_start => Check::warn(
                name,
                format!(
                    "{} has no .immich marker yet, and Immich never checked this folder: it \
                     writes the marker at its next start",
                    dir.display()
                ),
                format!(
                    "make sure {} is the folder the server mounts, and writable by its user",
                    dir.display()
                ),
            ),
            FolderState::Missing => Check::fail(
                name,
                format!(
                    "{} is absent or empty without its .immich marker: Immich refuses to start \
                     (\"Failed to read ... {folder}/.immich\")",
                    dir.display()
                ),
                "mount the folder (the volume line of UPLOAD_LOCATION in docker-compose.yml); \
                 if it really is new and empty: `touch .immich` in it",
            ),
            FolderState::Nested => Check::fail(
                name,
                format!(
                    "{} has no .immich marker but {}/{folder}/.immich exists: restored one level \
                     too deep",
                    dir.display(),
                    dir.display()
                ),
                format!(
                    "move the contents of {}/{folder} up one level",
                    dir.display()
                ),
            ),
            FolderState::NoMarker => Check::fail(
                name,
                format!(
                    "{} holds files but no .immich marker: Immich refuses to start",
                    dir.display()
                ),
                format!(
                    "if this is the right folder, recreate the marker: touch {}",
                    marker.display()
                ),
            ),
            FolderState::Ok => access_check(name, &dir, &marker, &who, &chown),
        };
        checks.push(check);
    }
}

fn access_check(name: String, dir: &Path, marker: &Path, who: &Identity, chown: &str) -> Check {
    if let Some(a) = blocked_ancestor(dir, who) {
        return Check::fail(
            name,
            format!("uid {} cannot enter {}", who.uid, a.display()),
            format!("chmod o+x {} (or give uid {} access)", a.display(), who.uid),
        );
    }
    let (dm, mm) = match (std::fs::metadata(dir), std::fs::metadata(marker)) {
        (Ok(d), Ok(m)) => (d, m),
        (Err(e), _) | (_, Err(e)) => {
            return Check::fail(
                name,
                format!("cannot stat {}: {e}", dir.display()),
                "check the mount",
            )
        }
    };
    let allows = |m: &std::fs::Metadata, want| who.allows(m.mode(), m.uid(), m.gid(), want);
    let mut missing = Vec::new();
    if !allows(&dm, crate::fs::access::READ | crate::fs::access::SEARCH) {
        missing.push("list the folder");
    }
    if !allows(&dm, WRITE | crate::fs::access::SEARCH) {
        missing.push("create files in the folder");
    }
    if !allows(&mm, crate::fs::access::READ | WRITE) {
        missing.push("read and rewrite its .immich");
    }
    if missing.is_empty() {
        return Check::ok(
            name,
            format!(
                "{} marked, readable and writable by uid {}",
                dir.display(),
                who.uid
            ),
        );
    }
    Check::fail(
        name,
        format!(
            "uid {} cannot {} ({}: mode {:o}, owner {}:{})",
            who.uid,
            missing.join(" or "),
            dir.display(),
            dm.mode() & 0o7777,
            dm.uid(),
            dm.gid()
        ),
        format!(
            "{chown}{} {} && chmod u+rwx {}",
            dir.display(),
            marker.display(),
            dir.display()
        ),
    )
}

fn disk_checks(
    opts: &DoctorOptions,
    media: Option<&Path>,
    db: Option<&DbFacts>,
    checks: &mut Vec<Check>,
) {
    let mut paths: Vec<(PathBuf, &str)> = Vec::new();
    if let Some(m) = media {
        paths.push((m.to_path_buf(), "media root"));
    }
    for (_, h) in &opts.maps {
        if h.is_dir() && !paths.iter().any(|(p, _)| p == h) {
            paths.push((h.clone(), "mapped folder"));
        }
    }
    if let Some(d) = &opts.db_data_dir {
        paths.push((d.clone(), "PostgreSQL data directory"));
    } else if let Some(db) = db {
        match (&db.data_directory, db.local) {
            (Some(d), true) if Path::new(d).is_dir() => {
                paths.push((PathBuf::from(d), "PostgreSQL data directory"))
            }
            (Some(d), _) => checks.push(Check::ok(
                format!("disk {d}"),
                "PostgreSQL data directory is not on this host (inside a container or on another \
                 machine): not checked; --env-file with DB_DATA_LOCATION names its host folder",
            )),
            (None, _) => {}
        }
    }
    for (p, what) in paths {
        checks.push(disk_check(opts, &p, what));
    }
}

fn percent(avail: u64, total: u64) -> f64 {
    if total == 0 {
        100.0
    } else {
        avail as f64 * 100.0 / total as f64
    }
}

fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1} {}", units[i])
}

fn disk_check(opts: &DoctorOptions, path: &Path, what: &str) -> Check {
    let name = format!("disk {}", path.display());
    let s = match (opts.statvfs)(path) {
        Ok(s) => s,
        Err(e) => {
            return Check::warn(
                name,
                format!("cannot read free space of the {what}: {e}"),
                "check the mount",
            )
        }
    };
    let space = percent(s.blocks_available, s.blocks);
    let inodes = percent(s.inodes_available, s.inodes);
    let free = human(s.blocks_available.saturating_mul(s.block_size));
    let size = human(s.blocks.saturating_mul(s.block_size));
    let message =
        format!("{what}: {free} free of {size} ({space:.1} %), inodes {inodes:.1} % free",);
    let full =
        (s.blocks > 0 && s.blocks_available == 0) || (s.inodes > 0 && s.inodes_available == 0);
    let fix = "free space (old backups, docker images: `docker system prune`) or grow the volume; \
               PostgreSQL and thumbnail generation fail on a full disk";
    if full {
        Check::fail(name, format!("{message}: full"), fix)
    } else if space < opts.min_free_percent || inodes < opts.min_free_percent {
        Check::warn(
            name,
            format!("{message}: under {} %", opts.min_free_percent),
            fix,
        )
    } else {
        Check::ok(name, message)
    }
}

fn backup_check(opts: &DoctorOptions, host: &Path) -> Check {
    const NAME: &str = "backups";
    let dir = host.join("backups");
    let fix = "enable Immich's database backups (Administration > Settings > Backup) or \
               schedule `docker exec immich_postgres pg_dumpall`; keep a copy off this disk";
    let newest = std::fs::read_dir(&dir).ok().and_then(|rd| {
        rd.filter_map(|e| e.ok())
            .filter(|e| e.file_name() != ".immich")
            .filter_map(|e| {
                let m = e.metadata().ok()?;
                if !m.is_file() {
                    return None;
                }
                Some((m.modified().ok()?, e.file_name()))
            })
            .max()
    });
    let Some((when, file)) = newest else {
        return Check::warn(NAME, format!("no backup file in {}", dir.display()), fix);
    };
    let age = SystemTime::now().duration_since(when).unwrap_or_default();
    let days = age.as_secs_f64() / 86400.0;
    let message = format!("newest {} is {days:.1} days old", dir.join(&file).display());
    if age > opts.max_backup_age {
        Check::warn(
            NAME,
            format!(
                "{message} (older than {:.0} days)",
                opts.max_backup_age.as_secs_f64() / 86400.0
            ),
            fix,
        )
    } else {
        Check::ok(NAME, message)
    }
}

async fn thumbnails_check(conn: &mut PgConnection, s: &Schema) -> Check {
    const NAME: &str = "thumbnails";
    // Hidden assets (the video half of a live photo) get no thumbnails.
    let visible: Option<&str> = match sqlx::query_scalar::<_, String>(
        "SELECT column_name::text FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name = $1 \
           AND column_name IN ('visibility', 'isVisible')",
    )
    .bind(s.asset_table)
    .fetch_optional(&mut *conn)
    .await
    {
        Ok(Some(c)) if c == "visibility" => Some("a.visibility::text <> 'hidden'"),
        Ok(Some(_)) => Some("a.\"isVisible\""),
        _ => None,
    };
    let mut filter = vec!["a.\"deletedAt\" IS NULL".to_string()];
    filter.extend(visible.map(str::to_string));
    let (pcol, tcol) = s
        .preview_columns
        .unwrap_or(("previewPath", "thumbnailPath"));
    // "Has both" as two EXISTS in an AND: PostgreSQL runs them as semi-joins (hash or merge),
    // where a NOT EXISTS under an OR would be one index probe per asset.
    let complete = match s.asset_file_table {
        Some(t) => {
            let has = |kind: &str| {
                format!(
                    "EXISTS (SELECT 1 FROM {} f WHERE f.\"assetId\" = a.id AND f.type = '{kind}' \
                     AND f.path <> '')",
                    q(t)
                )
            };
            format!("{} AND {}", has("thumbnail"), has("preview"))
        }
        None if s.preview_columns.is_some() => format!(
            "COALESCE(a.{}, '') <> '' AND COALESCE(a.{}, '') <> ''",
            q(tcol),
            q(pcol)
        ),
        None => {
            return Check::warn(
                NAME,
                "this schema has neither asset files nor preview columns",
                "report this schema to the immich-integrity authors",
            )
        }
    };
    let from = format!("{} a WHERE {}", q(s.asset_table), filter.join(" AND "));
    let sql = format!(
        "SELECT (SELECT count(*) FROM {from}) - (SELECT count(*) FROM {from} AND {complete}), \
                (SELECT count(*) FROM {from})"
    );
    match sqlx::query_as::<_, (i64, i64)>(&sql)
        .fetch_one(&mut *conn)
        .await
    {
        Ok((0, total)) => Check::ok(
            NAME,
            format!("all {total} visible assets have a thumbnail and a preview in the database"),
        ),
        Ok((n, total)) => Check::warn(
            NAME,
            format!(
                "{n} of {total} visible assets have no thumbnail or preview in the database: \
                 the apps show grey placeholders"
            ),
            "Administration > Jobs > Generate Thumbnails > Missing (or `immich-integrity scan` \
             to find thumbnail files that are gone although their rows remain)",
        ),
        Err(e) => Check::warn(
            NAME,
            format!("cannot count assets without thumbnails: {e}"),
            "run the doctor as the database owner",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn schema(asset: &str, cols: &[&str], files: Option<(&str, &[&str])>) -> Schema {
        let mut m: HashMap<String, HashSet<String>> = HashMap::new();
        let mut ac: HashSet<String> = ["id", "ownerId", "originalPath"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        ac.extend(cols.iter().map(|s| s.to_string()));
        m.insert(asset.into(), ac);
        m.insert(
            if asset == "asset" { "user" } else { "users" }.into(),
            HashSet::new(),
        );
        if let Some((t, c)) = files {
            m.insert(t.into(), c.iter().map(|s| s.to_string()).collect());
        }
        Schema::from_columns(&m).unwrap()
    }

    #[test]
    fn ledger_and_schema_must_agree() {
        let v26 = schema("asset", &[], Some(("asset_file", &["path", "isEdited"])));
        let ok = MigrationFacts {
            kysely: Some((120, Some("1773242919341-EncodedVideoAssetFiles".into()))),
            typeorm: Some((300, Some(LAST_TYPEORM.into()), Some(1744910873956))),
            ..Default::default()
        };
        assert_eq!(judge_migrations(&ok, &v26).status, Status::Ok);
        // The v2.6 tables with a ledger that stops at v1.137: a mixed restore.
        let behind = MigrationFacts {
            kysely: Some((40, Some("1753000000000-Something".into()))),
            ..Default::default()
        };
        let c = judge_migrations(&behind, &v26);
        assert_eq!(c.status, Status::Fail);
        assert!(c.message.contains("SidecarInAssetFile"), "{}", c.message);
        // v1.135 tables (plural) but StandardizeNames recorded: it failed or was rolled back.
        let v135 = schema(
            "assets",
            &["encodedVideoPath", "sidecarPath"],
            Some(("asset_files", &["path"])),
        );
        let c = judge_migrations(&ok, &v135);
        assert_eq!(c.status, Status::Fail);
        assert!(c.message.contains("StandardizeNames"), "{}", c.message);
        // Jumping from an old TypeORM release straight to kysely.
        let jump = MigrationFacts {
            typeorm: Some((
                200,
                Some("AddAssetFilesTable1724101822106".into()),
                Some(1724101822106),
            )),
            kysely: Some((0, None)),
            ..Default::default()
        };
        let c = judge_migrations(&jump, &v135);
        assert_eq!(c.status, Status::Fail);
        assert!(c.message.contains("Invalid upgrade path"));
        let locked = MigrationFacts {
            locks_held: 1,
            ..ok
        };
        assert_eq!(judge_migrations(&locked, &v26).status, Status::Warn);
    }

    #[test]
    fn roots_of_the_same_family() {
        assert!(same_root("upload", "/usr/src/app/upload/"));
        assert!(!same_root("/data", "/usr/src/app/upload"));
    }

    #[test]
    fn percentages_and_sizes() {
        assert_eq!(percent(5, 100), 5.0);
        assert_eq!(percent(0, 0), 100.0);
        assert_eq!(human(1536), "1.5 KiB");
    }
}
