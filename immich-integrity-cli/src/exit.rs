//! The exit codes, in one place.

use std::process::ExitCode;

/// How a command ended, as the shell sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Exit {
    /// Nothing wrong was found.
    Clean = 0,
    /// The run completed and found faults.
    Faults = 1,
    /// The tool could not run (bad arguments, no database, an unusable media root, ...).
    Failed = 2,
    /// The scan ran, but a part of the database could not be checked (its query does not fit
    /// the schema): the report is incomplete, whatever it found.
    Incomplete = 3,
    /// Stopped by SIGINT or SIGTERM.
    Interrupted = 130,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

/// Prints `msg` as the tool's error; the run could not be done. Control characters are
/// escaped (`ls -b`): the message may quote a stored path or a file name.
pub(crate) fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!(
        "immich-integrity: {}",
        crate::text::esc(&crate::hints::render(&msg.to_string()))
    );
    ExitCode::from(Exit::Failed)
}
