//! The journal every repair writes before it changes anything, and the undo loop that reads it
//! back.
//!
//! # Format
//!
//! JSON Lines: one serde-tagged object per line, appended and fsync'd before the change it
//! describes. The first line is a `header` (format version, tool version, kind `relink` or
//! `queue`, and the database: `pg_control_system().system_identifier` and
//! `current_database()`). Each run appends a `run` line (a uuid v4 and the time); the lines
//! after it, up to the next `run`, are that run's. A journal is only appended to by runs of
//! its own kind against its own database. Journals written before headers existed (format 1)
//! are refused by undo with a message saying so. Each repair has its own vocabulary, tagged by `event`, so one reader never takes
//! another's lines for its own:
//!
//! - relink ([`crate::relink::JournalEntry`]): `change` (a row about to change, with its old
//!   and new value), `prefix`, `committed`, `rolled_back`, `interrupted`;
//! - queue-mode regenerate ([`crate::regenerate::QueueJournal`]): `queue_change`,
//!   `queue_committed`, `queue_rolled_back` (a batch a signal stopped; it has no commit
//!   mark), `queue_started`.
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
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The journal format this version writes.
pub const FORMAT: u32 = 2;

/// What a journal records: which repair wrote it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JournalKind {
    /// `relink --apply`.
    Relink,
    /// `regenerate --via queue --apply` (and `refresh-metadata`).
    Queue,
}

impl std::fmt::Display for JournalKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JournalKind::Relink => "relink",
            JournalKind::Queue => "queue",
        })
    }
}

/// Which database a journal belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbIdentity {
    /// `pg_control_system().system_identifier` (the cluster), when the role may read it.
    pub system_identifier: Option<String>,
    /// `current_database()`.
    pub database: String,
}

impl std::fmt::Display for DbIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "database {:?} of cluster {}",
            self.database,
            self.system_identifier.as_deref().unwrap_or("(unknown)")
        )
    }
}

/// Reads the identity of the database `conn` is connected to.
pub(crate) async fn db_identity(conn: &mut PgConnection) -> Result<DbIdentity> {
    let database: String = sqlx::query_scalar("SELECT current_database()::text")
        .fetch_one(&mut *conn)
        .await
        .map_err(Error::query("reading the database name"))?;
    // Only roles allowed to read pg_control_system() get the cluster id.
    let system_identifier: Option<String> =
        sqlx::query_scalar("SELECT system_identifier::text FROM pg_control_system()")
            .fetch_one(&mut *conn)
            .await
            .ok();
    Ok(DbIdentity {
        system_identifier,
        database,
    })
}

/// The journal's first line and each run's line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum Meta {
    Header {
        format: u32,
        tool: String,
        kind: JournalKind,
        #[serde(flatten)]
        db: DbIdentity,
    },
    Run {
        run: String,
        at: String,
    },
}

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

    /// Opens the journal at `path` for one run of `kind` against the database `conn` is on:
    /// writes the header to a new (or empty) file, refuses a file that is not a journal of this
    /// kind and database, then appends the run's line. Returns the writer and the run id.
    pub(crate) async fn open_run(
        path: &Path,
        kind: JournalKind,
        conn: &mut PgConnection,
    ) -> Result<(Writer, String)> {
        let db = db_identity(conn).await?;
        let existing = first_line(path)?;
        let mut w = Writer::open(path)?;
        if existing.trim().is_empty() {
            w.append(&[Meta::Header {
                format: FORMAT,
                tool: format!("immich-integrity {}", env!("CARGO_PKG_VERSION")),
                kind,
                db: db.clone(),
            }])?;
        } else {
            let (have_kind, have_db) = header_of(path, &existing)?;
            if have_kind != kind {
                return Err(refuse(
                    path,
                    format!("it is a {have_kind} journal; a {kind} run writes its own journal"),
                ));
            }
            if !same_db(&have_db, &db) {
                return Err(refuse(
                    path,
                    format!("it is the journal of {have_db}, not of {db}"),
                ));
            }
        }
        let run = uuid::Uuid::new_v4().to_string();
        w.append(&[Meta::Run {
            run: run.clone(),
            at: chrono::Utc::now().to_rfc3339(),
        }])?;
        Ok((w, run))
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

/// The first line of the file at `path` (at most 1 MiB of it; a missing file reads as empty).
fn first_line(path: &Path) -> Result<String> {
    use std::io::{BufRead, Read};
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(io(path, e)),
    };
    let mut buf = Vec::new();
    std::io::BufReader::new(file.take(1 << 20))
        .read_until(b'\n', &mut buf)
        .map_err(|e| io(path, e))?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn refuse(path: &Path, why: String) -> Error {
    Error::InvalidArgument(format!("journal {}: {why}", path.display()))
}

fn same_db(a: &DbIdentity, b: &DbIdentity) -> bool {
    a.database == b.database
        && match (&a.system_identifier, &b.system_identifier) {
            (Some(x), Some(y)) => x == y,
            _ => true,
        }
}

/// The kind and database a journal's header names; an error saying what the file is when it
/// has no header.
fn header_of(path: &Path, text: &str) -> Result<(JournalKind, DbIdentity)> {
    let first = text.lines().next().unwrap_or_default();
    if let Ok(Meta::Header {
        kind, db, format, ..
    }) = serde_json::from_str::<Meta>(first)
    {
        if format > FORMAT {
            return Err(refuse(
                path,
                format!("it is of journal format {format}; this version reads up to {FORMAT}"),
            ));
        }
        return Ok((kind, db));
    }
    let old = serde_json::from_str::<serde_json::Value>(first)
        .ok()
        .and_then(|v| v.get("event").and_then(|e| e.as_str()).map(str::to_string))
        .is_some_and(|e| {
            [
                "change",
                "prefix",
                "committed",
                "rolled_back",
                "interrupted",
                "queue_change",
                "queue_committed",
                "queue_started",
            ]
            .contains(&e.as_str())
        });
    Err(refuse(
        path,
        if old {
            "it was written by an immich-integrity release before journal headers (format 1: \
             no database identity and no runs), which this version does not undo; undo it with \
             the release that wrote it"
                .into()
        } else {
            "it is not an immich-integrity journal (its first line is not a journal header)".into()
        },
    ))
}

/// One run of a journal: its id, time and lines (1-based line number, the line's JSON).
#[derive(Debug, Clone)]
pub(crate) struct RunLines {
    pub(crate) id: String,
    pub(crate) at: String,
    pub(crate) lines: Vec<(usize, serde_json::Value)>,
}

/// One journal line, as far as undo cares: a change of a batch, a batch's commit mark with the
/// indexes of its changes that found their row already changed, or anything else.
pub(crate) enum Line<S> {
    Change(u64, S),
    Committed(u64, Vec<u64>),
    Other,
}

/// The changes the given runs committed and made: change lines of batches with a commit mark
/// in the same run, less the ones it lists as unchanged. A batch without its mark never
/// reached the database (rolled back, or stopped before its commit): restoring it could only
/// clobber later edits. Lines `read` cannot parse are added to `damaged`.
pub(crate) fn committed_changes<S, E: std::fmt::Display>(
    runs: &[RunLines],
    damaged: &mut Vec<(usize, String)>,
    kind: &str,
    read: impl Fn(&serde_json::Value) -> std::result::Result<Line<S>, E>,
) -> Vec<S> {
    let mut out = Vec::new();
    for run in runs {
        let mut changes: Vec<(u64, S)> = Vec::new();
        let mut committed: std::collections::HashMap<u64, Vec<u64>> = Default::default();
        for (n, v) in &run.lines {
            match read(v) {
                Ok(Line::Change(batch, step)) => changes.push((batch, step)),
                Ok(Line::Committed(batch, unchanged)) => {
                    committed.insert(batch, unchanged);
                }
                Ok(Line::Other) => {}
                Err(e) => damaged.push((*n, format!("not a {kind} journal line ({e})"))),
            }
        }
        let mut index: std::collections::HashMap<u64, u64> = Default::default();
        for (batch, step) in changes {
            let i = index.entry(batch).or_default();
            let this = *i;
            *i += 1;
            if committed.get(&batch).is_some_and(|u| !u.contains(&this)) {
                out.push(step);
            }
        }
    }
    out
}

/// [`undo_journal`] of every run in `path`, after checking the journal is of `kind` (nothing
/// is undone otherwise). Returns the rows restored.
pub(crate) fn undo_of_kind(
    db_url: &str,
    path: &Path,
    kind: JournalKind,
    what: &str,
) -> Result<u64> {
    if parse_journal(path)?.kind != kind {
        return Err(Error::InvalidArgument(format!(
            "{} is not a {what} journal",
            path.display()
        )));
    }
    Ok(undo_journal(db_url, path, &Default::default())?.restored)
}

/// A journal read back: its kind and database, its runs, and the lines that were not JSON or
/// stood outside any run (line number, why).
#[derive(Debug, Clone)]
pub(crate) struct Parsed {
    pub(crate) kind: JournalKind,
    pub(crate) db: DbIdentity,
    pub(crate) runs: Vec<RunLines>,
    pub(crate) damaged: Vec<(usize, String)>,
}

/// Reads and splits the journal at `path` (see [`Parsed`]).
pub(crate) fn parse_journal(path: &Path) -> Result<Parsed> {
    // The header decides before the whole file is read (a device or a huge file is refused
    // on its first line).
    header_of(path, &first_line(path)?)?;
    let bytes = std::fs::read(path).map_err(|e| io(path, e))?;
    let text = String::from_utf8(bytes).map_err(|_| {
        refuse(
            path,
            "it is not an immich-integrity journal (not UTF-8 text)".into(),
        )
    })?;
    let (kind, db) = header_of(path, &text)?;
    let mut runs: Vec<RunLines> = Vec::new();
    let mut damaged = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        let n = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                damaged.push((n, format!("torn or corrupt line ({e})")));
                continue;
            }
        };
        if let Ok(Meta::Run { run, at }) = serde_json::from_value::<Meta>(value.clone()) {
            runs.push(RunLines {
                id: run,
                at,
                lines: Vec::new(),
            });
            continue;
        }
        match runs.last_mut() {
            Some(r) => r.lines.push((n, value)),
            None => damaged.push((n, "a line before any run line".into())),
        }
    }
    Ok(Parsed {
        kind,
        db,
        runs,
        damaged,
    })
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

/// A journaled change that undo can put back.
pub(crate) trait Undo {
    /// Restores this change inside the caller's transaction if the row still holds what the
    /// repair left there; returns the rows restored.
    async fn undo(&self, conn: &mut PgConnection, schema: &Schema) -> Result<u64>;
    /// Makes the change again (inside a savepoint undo rolls back): a row it changes holds
    /// the value from before the run, i.e. it is already restored.
    async fn redo(&self, conn: &mut PgConnection, schema: &Schema) -> Result<u64>;
    /// The change in one line, for the list of changes undo left alone.
    fn describe(&self) -> String;
}

/// What undo did (or, in a dry run, would do).
#[derive(Debug, Clone, Default, Serialize)]
pub struct UndoReport {
    /// The journal's kind.
    pub kind: Option<JournalKind>,
    /// The runs undone: (id, time).
    pub runs: Vec<(String, String)>,
    /// Rows restored (dry run: that would be).
    pub restored: u64,
    /// Changes whose row already holds the value from before the run (undone before).
    pub already: u64,
    /// Committed changes not restored because the row no longer holds what the run wrote
    /// (a later edit, or already undone), one line each.
    pub skipped: Vec<String>,
    /// Lines that could not be read: (1-based line number, why).
    pub damaged: Vec<(usize, String)>,
    /// Nothing was written.
    pub dry_run: bool,
}

impl UndoReport {
    /// Everything the runs changed is restored and every line was read.
    pub fn complete(&self) -> bool {
        self.skipped.is_empty() && self.damaged.is_empty()
    }
}

/// Which runs to undo, and whether to write.
#[derive(Debug, Clone, Default)]
pub struct UndoOptions {
    /// Run ids to undo; empty: every run in the file.
    pub runs: Vec<String>,
    /// Show what would be restored and skipped, in a transaction that is rolled back.
    pub dry_run: bool,
}

/// Restores the committed changes of the chosen runs of the journal at `path`, newest first,
/// in one transaction, each only where the row still holds what the run wrote (see
/// [`UndoReport`]). Refuses a file that is not a journal, or the journal of another database.
pub fn undo_journal(db_url: &str, path: &Path, opts: &UndoOptions) -> Result<UndoReport> {
    let parsed = parse_journal(path)?;
    for r in &opts.runs {
        if !parsed.runs.iter().any(|x| &x.id == r) {
            let have: Vec<&str> = parsed.runs.iter().map(|x| x.id.as_str()).collect();
            return Err(refuse(
                path,
                format!("it has no run {r} (its runs: {})", have.join(", ")),
            ));
        }
    }
    let chosen: Vec<RunLines> = parsed
        .runs
        .iter()
        .filter(|r| opts.runs.is_empty() || opts.runs.contains(&r.id))
        .cloned()
        .collect();
    let mut report = UndoReport {
        kind: Some(parsed.kind),
        runs: chosen
            .iter()
            .map(|r| (r.id.clone(), r.at.clone()))
            .collect(),
        damaged: parsed.damaged.clone(),
        dry_run: opts.dry_run,
        ..Default::default()
    };
    runtime()?.block_on(async {
        let (mut conn, _) = crate::db::conn::connect_for_writes(db_url).await?;
        let db = db_identity(&mut conn).await?;
        if !same_db(&parsed.db, &db) {
            return Err(refuse(
                path,
                format!(
                    "it is the journal of {}, not of {db}; nothing was changed",
                    parsed.db
                ),
            ));
        }
        let schema = read_info(&mut conn).await?.schema;
        let (restored, already, skipped) = match parsed.kind {
            JournalKind::Relink => {
                let steps = crate::relink::committed_steps(&chosen, &mut report.damaged);
                undo_steps(&mut conn, &schema, &steps, opts.dry_run).await?
            }
            JournalKind::Queue => {
                let steps = crate::regenerate::committed_queue_steps(&chosen, &mut report.damaged);
                undo_steps(&mut conn, &schema, &steps, opts.dry_run).await?
            }
        };
        report.restored = restored;
        report.already = already;
        report.skipped = skipped;
        Ok(())
    })?;
    report.damaged.sort();
    Ok(report)
}

/// Restores `steps` newest first in one transaction (rolled back when `dry_run`): the rows
/// restored, the steps already restored, and the steps whose row holds neither what the run
/// wrote nor what it replaced (left alone).
async fn undo_steps<S: Undo>(
    conn: &mut PgConnection,
    schema: &Schema,
    steps: &[S],
    dry_run: bool,
) -> Result<(u64, u64, Vec<String>)> {
    let mut tx = sqlx::Connection::begin(&mut *conn)
        .await
        .map_err(Error::query("starting undo"))?;
    let (mut restored, mut already, mut skipped) = (0, 0, Vec::new());
    for step in steps.iter().rev() {
        match step.undo(&mut tx, schema).await? {
            0 => {
                // Already restored, or changed since? Make the change again and take it back.
                sqlx::query("SAVEPOINT immich_integrity_probe")
                    .execute(&mut *tx)
                    .await
                    .map_err(Error::query("probing a row undo left alone"))?;
                let again = step.redo(&mut tx, schema).await?;
                sqlx::query("ROLLBACK TO SAVEPOINT immich_integrity_probe")
                    .execute(&mut *tx)
                    .await
                    .map_err(Error::query("probing a row undo left alone"))?;
                if again > 0 {
                    already += 1;
                } else {
                    skipped.push(step.describe());
                }
            }
            n => restored += n,
        }
    }
    if dry_run {
        tx.rollback()
            .await
            .map_err(Error::query("rolling back a dry-run undo"))?;
    } else {
        tx.commit().await.map_err(Error::query("committing undo"))?;
    }
    Ok((restored, already, skipped))
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
