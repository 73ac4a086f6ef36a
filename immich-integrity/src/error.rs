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
