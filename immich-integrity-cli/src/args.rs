//! The arguments every library command shares (where the database and the media are, whose
//! access matters, which rows to read), and the [`ScanOptions`] they become.

use crate::signals::install_signal_handlers;
use immich_integrity::{FileKind, Identity, ScanOptions};
use std::path::PathBuf;

/// Help headings, one set for every command.
pub(crate) const CONN: &str = "Connection";
pub(crate) const SEL: &str = "Selection";
pub(crate) const CHECK: &str = "Checks";
pub(crate) const OUT: &str = "Output";
pub(crate) const SAFETY: &str = "Safety";

/// Where the library is and whose access matters (shared by every command that reads it).
#[derive(clap::Args)]
pub(crate) struct LibraryArgs {
    /// PostgreSQL URL of Immich's database, without the password (command lines are visible
    /// to other users): it is read from PGPASSWORD, ~/.pgpass (or PGPASSFILE), or the .env's
    /// DB_PASSWORD with --env-file.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, help_heading = CONN)]
    pub(crate) db_url: Option<String>,
    /// Immich's docker `.env` (beside docker-compose.yml): database, UPLOAD_LOCATION and the
    /// server's bind mounts are read from it and the compose file. Explicit flags win.
    #[arg(long, help_heading = CONN)]
    pub(crate) env_file: Option<PathBuf>,
    /// Host folder holding Immich's upload/, thumbs/, encoded-video/ ... folders (UPLOAD_LOCATION).
    #[arg(long, help_heading = CONN)]
    media_root: Option<PathBuf>,
    /// Immich's media location inside the container (default: read from the database).
    #[arg(long, help_heading = CONN)]
    media_location: Option<String>,
    /// CONTAINER=HOST path mapping (repeatable), e.g. /mnt/photos=/tank/photos.
    #[arg(long = "map", value_parser = parse_map, help_heading = CONN)]
    maps: Vec<(String, PathBuf)>,
    /// Evaluate read access for the uid[:gid] the Immich server runs as.
    #[arg(long, value_parser = parse_identity, help_heading = CONN)]
    as_user: Option<Identity>,
    /// Worker threads (0 = one per core), at most 256.
    #[arg(short = 'j', long, default_value_t = 0, value_parser = parse_jobs, help_heading = CHECK)]
    jobs: usize,
    /// Check only shard K of N (0-based): N processes with K = 0..N cover every asset once.
    #[arg(long, value_parser = parse_shard, help_heading = SEL)]
    shard: Option<immich_integrity::Shard>,
    /// Also check assets in the trash.
    #[arg(long, help_heading = SEL)]
    include_trashed: bool,
    /// Reconnect attempts after a lost database connection (reset, terminated, server
    /// restarting) before giving up; the scan resumes after the last row read. 0 = never.
    #[arg(long, default_value_t = 3, help_heading = CONN)]
    retries: u32,
    /// Only assets (and persons, profile image) of these users: ids or e-mail addresses,
    /// repeatable or comma-separated.
    #[arg(long = "owner", value_name = "ID|EMAIL", value_delimiter = ',', help_heading = SEL)]
    owners: Vec<String>,
    /// Only assets of this external library (id or name); persons and profile images are
    /// skipped.
    #[arg(long, value_name = "ID|NAME", help_heading = SEL)]
    library: Option<String>,
    /// Only these file kinds, comma-separated: original, sidecar, preview, thumbnail,
    /// fullsize, encoded_video, person_thumbnail, profile_image.
    #[arg(long = "kind", value_name = "KIND", value_delimiter = ',', help_heading = SEL)]
    kinds: Vec<FileKind>,
    /// At most N assets (the first in id order); persons and users are not limited.
    #[arg(long, value_name = "N", help_heading = SEL)]
    limit: Option<u64>,
    /// Only rows created or updated after this date (YYYY-MM-DD, UTC) or RFC 3339 instant.
    #[arg(long, value_name = "DATE", value_parser = parse_since, help_heading = SEL)]
    since: Option<chrono::DateTime<chrono::Utc>>,
    /// Rows fetched per database round trip.
    #[arg(long, default_value_t = 2000, hide = true)]
    batch_size: usize,
    /// Read an unfiltered scan's assets through the join query filtered scans use, not the
    /// three merged cursors (to measure one against the other; benches/dbstream.sh).
    #[arg(long, hide = true, env = "IMMICH_INTEGRITY_JOIN_STREAM",
          value_parser = clap::builder::FalseyValueParser::new())]
    join_stream: bool,
}

fn parse_since(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    for f in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Ok(t.and_utc());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| {
            format!("--since wants a date like 2026-01-31 or 2026-01-31T08:00:00Z, got {s:?}")
        })
}

pub(crate) fn parse_jobs(s: &str) -> Result<usize, String> {
    let n: usize = s
        .trim()
        .parse()
        .map_err(|_| format!("--jobs wants a number of threads, got {s:?}"))?;
    if n > immich_integrity::MAX_JOBS {
        return Err(format!(
            "--jobs is at most {} worker threads (files wait on the disk, not the CPU), got {n}",
            immich_integrity::MAX_JOBS
        ));
    }
    Ok(n)
}

pub(crate) fn parse_identity(s: &str) -> Result<Identity, String> {
    Identity::parse(s).map_err(|e| crate::hints::render(&e))
}

fn parse_shard(s: &str) -> Result<immich_integrity::Shard, String> {
    s.parse().map_err(|e: String| crate::hints::render(&e))
}

pub(crate) fn parse_map(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((c, h)) if !c.is_empty() && !h.is_empty() => Ok((c.to_string(), PathBuf::from(h))),
        _ => Err(format!("--map wants CONTAINER=HOST, got {s:?}")),
    }
}

pub(crate) fn load_install(
    env_file: Option<&std::path::Path>,
) -> Result<immich_integrity::envfile::InstallConfig, String> {
    match env_file {
        Some(p) => immich_integrity::envfile::load(p)
            .map_err(|e| format!("cannot read {}: {e}", p.display())),
        // Run with Immich's server environment (docker-compose.integrity.yml): no flag needed.
        None => Ok(
            immich_integrity::envfile::from_environment(&|k| std::env::var(k).ok())
                .unwrap_or_default(),
        ),
    }
}

pub(crate) fn db_url_of(
    flag: Option<String>,
    install: &immich_integrity::envfile::InstallConfig,
) -> Result<String, String> {
    flag.or_else(|| install.db_url.clone())
        .ok_or_else(|| "no database: pass --db-url, --env-file or set DATABASE_URL".to_string())
}

/// The database URL an install's `.env` gives, routed: when its host does not answer and names
/// a compose service, the service's container found through the Docker API (said on stderr);
/// when nothing answers, `Err` with the diagnosis (address tried, port published or not, the
/// container's state). A URL from a flag is used as given. The second value is the note.
pub(crate) fn routed_db_url(
    url: String,
    from_flag: bool,
    env_file: Option<&std::path::Path>,
) -> Result<(String, Option<String>), String> {
    use immich_integrity::docker::{compose::ComposeEnv, default_socket, discovery, Client};
    let Some(env) = env_file.filter(|_| !from_flag) else {
        return Ok((url, None));
    };
    let compose =
        ComposeEnv::load(env).map_err(|e| format!("cannot read {}: {e}", env.display()))?;
    let client = default_socket().map(|s| Client::new(s, std::time::Duration::from_secs(3)));
    let (url, note) = discovery::database_url(
        &url,
        compose.db_service.as_deref(),
        compose.project.as_deref(),
        client.as_ref(),
        std::time::Duration::from_secs(2),
    )
    .map_err(|e| e.to_string())?;
    if let Some(n) = &note {
        eprintln!("immich-integrity: {n}");
    }
    Ok((url, note))
}

/// The folders media is read from, as the flags and the install's files name them: the media
/// root and the host side of every map.
pub(crate) fn library_roots(args: &LibraryArgs) -> Result<Vec<PathBuf>, String> {
    let install = load_install(args.env_file.as_deref())?;
    let mut roots: Vec<PathBuf> = args
        .media_root
        .clone()
        .or(install.media_root)
        .into_iter()
        .collect();
    roots.extend(install.maps.into_iter().map(|(_, h)| h));
    roots.extend(args.maps.iter().map(|(_, h)| h.clone()));
    Ok(roots)
}

/// Refuses every file the command would write that lies inside a folder media is read from
/// (see [`immich_integrity::refuse_inside_roots`]): `(flag, path)` pairs, `None` skipped.
pub(crate) fn refuse_writes(
    args: &LibraryArgs,
    targets: &[(&str, Option<&std::path::Path>)],
) -> Result<(), String> {
    let roots = library_roots(args)?;
    for (flag, path) in targets {
        if let Some(path) = path {
            immich_integrity::refuse_inside_roots(flag, path, &roots).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

/// Scan options from flags, then the install's files: explicit flags win.
pub(crate) fn scan_options(args: LibraryArgs) -> Result<ScanOptions, String> {
    let install = load_install(args.env_file.as_deref())?;
    let from_flag = args.db_url.is_some();
    let url = db_url_of(args.db_url, &install)?;
    let url = routed_db_url(url, from_flag, args.env_file.as_deref())?.0;
    let mut opts = ScanOptions::new(url);
    let env = || {
        args.env_file
            .as_ref()
            .map(|p| format!(".env {}", p.display()))
            .unwrap_or_else(|| "the environment (Immich's server container)".into())
    };
    let compose = || {
        args.env_file
            .as_ref()
            .map(|p| format!("docker-compose.yml beside {}", p.display()))
            .unwrap_or_else(|| "docker-compose.yml".into())
    };
    opts.origins.media_root = match (&args.media_root, &install.media_root) {
        (Some(_), _) => Some("flag --media-root".into()),
        (None, Some(_)) if args.env_file.is_some() => Some(format!("UPLOAD_LOCATION in {}", env())),
        (None, Some(_)) => Some(
            "the container's media location (IMMICH_MEDIA_LOCATION, /data or /usr/src/app/upload)"
                .into(),
        ),
        (None, None) => None,
    };
    opts.origins.media_location = match (&args.media_location, &install.media_location) {
        (Some(_), _) => Some("flag --media-location".into()),
        (None, Some(_)) => Some(format!("IMMICH_MEDIA_LOCATION in {}", env())),
        (None, None) => None,
    };
    opts.media_root = args.media_root.or(install.media_root);
    opts.media_location = args.media_location.or(install.media_location);
    opts.maps = install.maps;
    for (c, _) in &opts.maps {
        opts.origins.maps.insert(c.clone(), compose());
    }
    for (c, h) in args.maps {
        opts.maps.retain(|(ic, _)| ic != &c);
        opts.origins.maps.insert(c.clone(), "flag --map".into());
        opts.maps.push((c, h));
    }
    opts.as_user = match (args.as_user, &install.server_user) {
        (Some(u), _) => Some(u),
        (None, Some(u)) => {
            Some(parse_identity(u).map_err(|e| format!("the compose file's user: {e}"))?)
        }
        (None, None) => None,
    };
    opts.jobs = args.jobs;
    opts.source.include_trashed = args.include_trashed;
    opts.source.shard = args.shard;
    opts.source.batch_size = args.batch_size.max(1);
    opts.source.retries = args.retries;
    opts.source.owners = args.owners;
    opts.source.library = args.library;
    opts.source.kinds = args.kinds;
    opts.source.limit = args.limit;
    opts.source.since = args.since;
    opts.source.join_stream = args.join_stream;
    if opts.source.is_filtered() {
        tracing::info!(
            owners = ?opts.source.owners,
            library = ?opts.source.library,
            kinds = ?opts.source.kinds,
            limit = ?opts.source.limit,
            since = ?opts.source.since,
            "filters"
        );
    }
    install_signal_handlers(opts.cancel.clone());
    Ok(opts)
}

/// The options of this run as the next steps repeat them: connection and roots (never a
/// password: a URL's password is dropped, as the run read it from PGPASSWORD, ~/.pgpass or the
/// .env, where the next command finds it too), and the selection. Paths are made absolute.
pub(crate) fn replay(args: &LibraryArgs) -> (Vec<String>, Vec<String>) {
    let abs = |p: &std::path::Path| crate::state::absolute(p).to_string_lossy().into_owned();
    let mut lib = Vec::new();
    if let Some(e) = &args.env_file {
        lib.extend(["--env-file".to_string(), abs(e)]);
    }
    let from_env = std::env::var("DATABASE_URL").ok();
    if let Some(url) = args
        .db_url
        .as_ref()
        .filter(|u| from_env.as_ref() != Some(*u))
    {
        if let Some(u) = without_password(url) {
            lib.extend(["--db-url".to_string(), u]);
        }
    }
    if let Some(r) = &args.media_root {
        lib.extend(["--media-root".to_string(), abs(r)]);
    }
    if let Some(l) = &args.media_location {
        lib.extend(["--media-location".to_string(), l.clone()]);
    }
    for (c, h) in &args.maps {
        lib.extend(["--map".to_string(), format!("{c}={}", abs(h))]);
    }
    if let Some(u) = &args.as_user {
        lib.extend(["--as-user".to_string(), as_user_flag(u)]);
    }
    let mut sel = Vec::new();
    if !args.owners.is_empty() {
        sel.extend(["--owner".to_string(), args.owners.join(",")]);
    }
    if let Some(l) = &args.library {
        sel.extend(["--library".to_string(), l.clone()]);
    }
    if !args.kinds.is_empty() {
        let k: Vec<&str> = args.kinds.iter().map(|k| k.as_str()).collect();
        sel.extend(["--kind".to_string(), k.join(",")]);
    }
    if let Some(n) = args.limit {
        sel.extend(["--limit".to_string(), n.to_string()]);
    }
    if let Some(t) = args.since {
        sel.extend(["--since".to_string(), t.to_rfc3339()]);
    }
    if let Some(s) = &args.shard {
        sel.extend(["--shard".to_string(), format!("{}/{}", s.index, s.count)]);
    }
    if args.include_trashed {
        sel.push("--include-trashed".to_string());
    }
    (lib, sel)
}

/// Only the options that reach the database (`--env-file`, `--db-url`) of [`replay`]'s first
/// list, for commands that read no media (`undo`).
pub(crate) fn connection_only(library_args: &[String]) -> Vec<String> {
    library_args
        .chunks(2)
        .filter(|c| matches!(c[0].as_str(), "--env-file" | "--db-url"))
        .flatten()
        .cloned()
        .collect()
}

/// This program's absolute path, as printed commands name it.
pub(crate) fn program() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| std::fs::canonicalize(p).ok())
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| "immich-integrity".into())
}

/// `UID:GID[,GID...]`, as `--as-user` reads it.
fn as_user_flag(u: &Identity) -> String {
    let g: Vec<String> = u.gids.iter().map(|g| g.to_string()).collect();
    format!("{}:{}", u.uid, g.join(","))
}

/// The URL without its password; `None` when it cannot be shown without one.
fn without_password(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if rest.to_ascii_lowercase().contains("password=") {
        return None;
    }
    match rest.rsplit_once('@') {
        None => Some(url.to_string()),
        Some((auth, tail)) => {
            let user = auth.split_once(':').map_or(auth, |(u, _)| u);
            (!user.contains(['/', '?', '#', '&', '='])).then(|| format!("{scheme}://{user}@{tail}"))
        }
    }
}

/// The host folders a run reads media from, made absolute (for the `chown` next steps).
pub(crate) fn replay_roots(args: &LibraryArgs) -> Vec<PathBuf> {
    library_roots(args)
        .unwrap_or_default()
        .iter()
        .map(|p| crate::state::absolute(p))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::parse_since;

    #[test]
    fn since_accepts_dates_and_instants_in_utc() {
        let t = |s: &str| parse_since(s).map(|d| d.to_rfc3339());
        assert_eq!(t("2026-01-31").unwrap(), "2026-01-31T00:00:00+00:00");
        assert_eq!(t("2026-01-31 08:30").unwrap(), "2026-01-31T08:30:00+00:00");
        assert_eq!(
            t("2026-01-31T08:30:00+02:00").unwrap(),
            "2026-01-31T06:30:00+00:00"
        );
        assert!(t("31/01/2026")
            .unwrap_err()
            .contains("--since wants a date"));
        assert!(t("2026-02-30").is_err());
    }

    #[test]
    fn replayed_urls_never_hold_a_password() {
        use super::without_password as w;
        assert_eq!(
            w("postgres://immich:s3cr@t/x@db:5432/immich").as_deref(),
            Some("postgres://immich@db:5432/immich")
        );
        assert_eq!(
            w("postgres://postgres@127.0.0.1/immich").as_deref(),
            Some("postgres://postgres@127.0.0.1/immich")
        );
        assert_eq!(w("postgres://h/immich?password=x"), None);
        assert_eq!(w("host=h password=x"), None);
    }
}
