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
    #[error("interrupted")]
    Interrupted,
    #[error("manifest {path}: {reason}")]
    Manifest { path: PathBuf, reason: String },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn query(context: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
        move |source| Error::Query { context, source }
    }
}
