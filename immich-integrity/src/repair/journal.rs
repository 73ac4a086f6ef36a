//! The journal every repair writes before it changes anything, and the undo loop that reads it
//! back.
//!
//! # Format
//!
//! JSON Lines: one serde-tagged object per line, appended and fsync'd before the change it
//! describes. Each repair has its own vocabulary, tagged by `event`, so one reader never takes
//! another's lines for its own:
//!
//! - relink ([`crate::relink::JournalEntry`]): `change` (a row about to change, with its old
//!   and new value), `prefix`, `committed`, `rolled_back`, `interrupted`;
//! - queue-mode regenerate ([`crate::regenerate::QueueJournal`]): `queue_change`,
//!   `queue_committed`, `queue_started`.
//!
//! The api-mode state file ([`crate::regenerate::StateLine`]) is appended the same way. A line
//! that does not parse (a torn last line after a crash mid-write, or another repair's line) is
//! skipped by the reader: the batch it belonged to never started.
//!
//! # Undo
//!
//! A recorded change that can be put back implements [`Undo`]; [`undo_in_transaction`]
//! restores a list of them newest first in one transaction. Each restore only acts if the row
//! still holds what the repair left there, so undoing twice is harmless.

use crate::db::conn::read_info;
use crate::db::runtime::runtime;
use crate::db::schema::Schema;
use crate::error::{Error, Result};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sqlx::PgConnection;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A journal open for appending.
pub(crate) struct Writer {
    file: std::fs::File,
    path: PathBuf,
}

impl Writer {
    /// Opens `path` for appending, creating it if needed.
    pub(crate) fn open(path: &Path) -> Result<Writer> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| io(path, e))?;
        Ok(Writer {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Appends one line per entry in a single write, then fsyncs: when this returns `Ok`, the
    /// lines are on disk.
    pub(crate) fn append<E: Serialize>(&mut self, entries: &[E]) -> Result<()> {
        let mut buf = Vec::new();
        for e in entries {
            serde_json::to_writer(&mut buf, e).map_err(|e| io(&self.path, e.into()))?;
            buf.push(b'\n');
        }
        self.file.write_all(&buf).map_err(|e| io(&self.path, e))?;
        self.file.sync_data().map_err(|e| io(&self.path, e))
    }
}

fn io(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Every line of the journal at `path` that is an `E`, in file order. Other lines (a torn last
/// line, another repair's vocabulary) are skipped; an unreadable file is an error naming it.
pub(crate) fn read<E: DeserializeOwned>(path: &Path) -> Result<Vec<E>> {
    let text = std::fs::read_to_string(path).map_err(|e| io(path, e))?;
    Ok(parse(&text))
}

/// Like [`read`], but a missing file reads as empty.
pub(crate) fn read_if_present<E: DeserializeOwned>(path: &Path) -> Result<Vec<E>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(parse(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io(path, e)),
    }
}

fn parse<E: DeserializeOwned>(text: &str) -> Vec<E> {
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Does the file at `path` hold at least one `E` line? (An unreadable file holds none.)
pub(crate) fn holds<E: DeserializeOwned>(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    text.lines().any(|l| serde_json::from_str::<E>(l).is_ok())
}

/// A journaled change that undo can put back.
pub(crate) trait Undo {
    /// Restores this change inside the caller's transaction if the row still holds what the
    /// repair left there; returns the rows restored.
    async fn undo(&self, conn: &mut PgConnection, schema: &Schema) -> Result<u64>;
}

/// Restores `steps`, newest first, in one transaction. Returns the rows restored.
pub(crate) async fn undo_in_transaction<S: Undo>(
    conn: &mut PgConnection,
    schema: &Schema,
    steps: &[S],
) -> Result<u64> {
    let mut tx = sqlx::Connection::begin(&mut *conn)
        .await
        .map_err(Error::query("starting undo"))?;
    let mut restored = 0;
    for step in steps.iter().rev() {
        restored += step.undo(&mut tx, schema).await?;
    }
    tx.commit().await.map_err(Error::query("committing undo"))?;
    Ok(restored)
}

/// Connects to `db_url`, detects its schema and restores `steps` (see
/// [`undo_in_transaction`]).
pub(crate) fn undo<S: Undo>(db_url: &str, steps: &[S]) -> Result<u64> {
    runtime()?.block_on(async {
        let (mut conn, _) = crate::db::conn::connect_for_writes(db_url).await?;
        let schema = read_info(&mut conn).await?.schema;
        undo_in_transaction(&mut conn, &schema, steps).await
    })
}
