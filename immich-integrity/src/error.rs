//! Errors that stop a scan. Per-file problems are never errors: they are [`crate::Finding`]s.

use std::path::PathBuf;

/// Why the tool could not do its job (exit code 2 in the CLI).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot connect to PostgreSQL at {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("database query failed ({context}): {source}")]
    Query {
        context: &'static str,
        source: sqlx::Error,
    },
    #[error("this database does not look like Immich's: {0}")]
    UnknownSchema(String),
    #[error("media root {path} is not usable: {reason}")]
    MediaRoot { path: PathBuf, reason: String },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The database connection was lost and could not be re-opened.
    #[error("lost the database connection: {0}")]
    ConnectionLost(String),
    #[error("interrupted")]
    Interrupted,
    #[error("manifest {}: {reason}", path.display())]
    Manifest { path: PathBuf, reason: String },
    #[error("I/O error on {}: {}", path.display(), io_detail(source))]
    Io {
        path: PathBuf,
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

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn query(context: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
        move |source| Error::Query { context, source }
    }
}
