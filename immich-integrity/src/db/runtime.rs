//! The one runtime helper: every blocking entry point (the source thread, doctor, relink,
//! regenerate, explain-report) drives its database work on a current-thread tokio runtime.

use crate::error::{Error, Result};

/// A current-thread runtime with I/O and timers, or why it could not be started.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::InvalidArgument(format!("cannot start the database runtime: {e}")))
}
