//! Errors that stop a scan. Per-file problems are never errors: they are [`crate::Finding`]s.

use std::path::PathBuf;

/// Why the tool could not do its job (exit code 2 in the CLI).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect to PostgreSQL at {url}: {source}")]
    /// PostgreSQL could not be reached or refused the login.
    Connect {
        /// The URL with its password replaced by `***`.
        url: String,
        /// The driver's error.
        source: sqlx::Error,
    },
    #[error("database query failed ({context}): {source}")]
    /// A query failed or a row did not decode.
    Query {
        /// What was being read.
        context: &'static str,
        /// The driver's error.
        source: sqlx::Error,
    },
    #[error("this database does not look like Immich's: {0}")]
    /// The database lacks the tables or columns every Immich generation has.
    UnknownSchema(String),
    #[error("integrity_report exists from Immich v3.0; this database is {0}")]
    /// `explain-report` on a database without Immich's `integrity_report` table; the schema
    /// it has instead.
    NoIntegrityReport(String),
    #[error("media root {path} is not usable: {reason}")]
    /// The media root (or a mapped root) cannot be used.
    MediaRoot {
        /// The host folder.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    #[error("invalid argument: {0}")]
    /// A flag or option value is unusable; the text says which and why.
    InvalidArgument(String),
    /// The database connection was lost and could not be re-opened.
    #[error("lost the database connection: {0}")]
    ConnectionLost(String),
    #[error("interrupted")]
    /// The scan was asked to stop.
    Interrupted,
    #[error("manifest {}: {reason}", path.display())]
    /// The `--manifest` file cannot be used; it is left untouched.
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    #[error(
        "refusing to write {what} {}: it is inside {}, a folder the tool reads media from; \
         nothing the tool writes may land on media, so choose a path outside it",
        path.display(),
        root.display()
    )]
    /// A file the tool was asked to write (a report, journal, state file or manifest) lies
    /// inside the media root or a mapped root (symlinks resolved). Nothing was written.
    WriteInsideMedia {
        /// The option that named the file.
        what: String,
        /// The file as given.
        path: PathBuf,
        /// The root it lies in.
        root: PathBuf,
    },
    #[error("I/O error on {}: {}", path.display(), io_detail(source))]
    /// A file the tool itself writes or reads (a journal, a report) failed.
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
}

/// An I/O error with its errno name, so "disk full" reads as `ENOSPC` whatever the locale.
pub fn io_detail(e: &std::io::Error) -> String {
    let name = match e.raw_os_error() {
        Some(libc::ENOSPC) => "ENOSPC",
        Some(libc::EDQUOT) => "EDQUOT",
        Some(libc::EIO) => "EIO",
        Some(libc::EROFS) => "EROFS",
        Some(libc::EACCES) => "EACCES",
        Some(libc::EPERM) => "EPERM",
        Some(libc::ENOENT) => "ENOENT",
        Some(libc::EFBIG) => "EFBIG",
        _ => return e.to_string(),
    };
    format!("{e} [{name}]")
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn query(context: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
        move |source| Error::Query { context, source }
    }
}

/// Something a message asks the caller to set or run, named by this library's own API.
///
/// Library messages (errors, finding details, doctor checks, explanations) spell each hint as
/// [`Hint::name`], e.g. `` `ScanOptions::media_root` ``. A front end that exposes the option
/// under another name renders a message for its users with [`Hint::render`]; the CLI turns
/// `` `ScanOptions::media_root` `` into `--media-root`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Hint {
    /// [`ScanOptions::media_root`](crate::ScanOptions::media_root): the host folder of
    /// Immich's media location.
    MediaRoot,
    /// [`ScanOptions::maps`](crate::ScanOptions::maps): container-to-host path mappings.
    Maps,
    /// [`SourceOptions::db_url`](crate::SourceOptions::db_url): the database URL.
    DbUrl,
    /// An install's `.env` read by [`envfile::load`](crate::envfile::load).
    EnvFile,
    /// [`ScanOptions::as_user`](crate::ScanOptions::as_user): whose access to evaluate.
    AsUser,
    /// [`SourceOptions::shard`](crate::SourceOptions::shard).
    Shard,
    /// [`SourceOptions::since`](crate::SourceOptions::since).
    Since,
    /// [`SourceOptions::include_trashed`](crate::SourceOptions::include_trashed).
    IncludeTrashed,
    /// [`ScanOptions::manifest`](crate::ScanOptions::manifest).
    Manifest,
    /// [`ScanOptions::level`](crate::ScanOptions::level).
    Level,
    /// The server address given to [`api::Client::new`](crate::api::Client::new).
    Server,
    /// The [`api::ApiKey`](crate::api::ApiKey) a request is sent with.
    ApiKey,
    /// A scan: [`scan`](crate::scan()).
    Scan,
    /// Applying a relink: [`relink::apply_plan`](crate::relink::apply_plan).
    RelinkApply,
    /// [`ScanOptions::media_location`](crate::ScanOptions::media_location).
    MediaLocation,
    /// [`ScanOptions::jobs`](crate::ScanOptions::jobs): worker threads.
    Jobs,
    /// The filters that select rows: [`SourceOptions::owners`](crate::SourceOptions::owners),
    /// `library`, `kinds`, `limit`, `since`.
    Filters,
}

impl Hint {
    /// Every hint, for a front end building its own names.
    pub const ALL: [Hint; 17] = [
        Hint::MediaRoot,
        Hint::Maps,
        Hint::DbUrl,
        Hint::EnvFile,
        Hint::AsUser,
        Hint::Shard,
        Hint::Since,
        Hint::IncludeTrashed,
        Hint::Manifest,
        Hint::Level,
        Hint::Server,
        Hint::ApiKey,
        Hint::Scan,
        Hint::RelinkApply,
        Hint::MediaLocation,
        Hint::Jobs,
        Hint::Filters,
    ];

    /// How library messages spell this hint (with the backticks).
    pub const fn name(self) -> &'static str {
        match self {
            Hint::MediaRoot => "`ScanOptions::media_root`",
            Hint::Maps => "`ScanOptions::maps`",
            Hint::DbUrl => "`SourceOptions::db_url`",
            Hint::EnvFile => "`envfile::load`",
            Hint::AsUser => "`ScanOptions::as_user`",
            Hint::Shard => "`SourceOptions::shard`",
            Hint::Since => "`SourceOptions::since`",
            Hint::IncludeTrashed => "`SourceOptions::include_trashed`",
            Hint::Manifest => "`ScanOptions::manifest`",
            Hint::Level => "`ScanOptions::level`",
            Hint::Server => "`api::Client::new`'s server",
            Hint::ApiKey => "`api::ApiKey`",
            Hint::Scan => "`immich_integrity::scan`",
            Hint::RelinkApply => "`relink::apply_plan`",
            Hint::MediaLocation => "`ScanOptions::media_location`",
            Hint::Jobs => "`ScanOptions::jobs`",
            Hint::Filters => "`SourceOptions::owners`, `library`, `kinds`, `limit` and `since`",
        }
    }

    /// `text` with every hint's [`name`](Hint::name) replaced by what `name_of` says.
    pub fn render(text: &str, name_of: impl Fn(Hint) -> &'static str) -> String {
        let mut out = text.to_string();
        for h in Hint::ALL {
            if out.contains(h.name()) {
                out = out.replace(h.name(), name_of(h));
            }
        }
        out
    }
}

impl std::fmt::Display for Hint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
