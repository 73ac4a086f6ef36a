//! Relink: point database rows at the file where it really is (`moved` findings).
//!
//! Safety, in order: nothing is written without `apply`; every step is re-verified at apply
//! time (the file is still at `found_at`, opened with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_MAGICLINKS)` from a handle on its root so no symlink on the way may leave it, and
//! is a non-empty regular file of the recorded size whose SHA-1 is computed from that same
//! descriptor; and the row still holds the old path, checked by the `UPDATE ... WHERE path =
//! old` itself); a saved report only selects rows, the steps come from a new check of them;
//! each batch's old and new values are appended to an undo journal and fsync'd *before* the
//! batch's transaction; each batch commits whole or not at all. Identifiers come from the
//! detected schema, never from a report or a journal; values are bound parameters.

use crate::db::conn::{connect, read_info};
use crate::db::runtime::runtime;
use crate::db::schema::{q, Schema};
mod prefix;
mod sql;

use prefix::{apply_prefix, verify_prefix};
pub use prefix::{check_prefixes, plan_prefixes, PrefixCheck, PrefixRewrite, RelinkPlan};
pub(crate) use sql::statements;
use sql::{recorded_facts_sql, rows_holding_sql, run_update, target, update_sql, Fourth};

use super::journal;
use crate::error::{Error, Result};
use crate::model::{Fault, FileKind, Finding};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// One row to repoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelinkStep {
    /// Asset, person or user id.
    pub id: String,
    /// Which path column or `asset_file` row.
    pub file: FileKind,
    /// The path stored now.
    pub old: String,
    /// The path to store instead.
    pub new: String,
    /// Host path of the file the new value points at.
    pub found_at: PathBuf,
    /// The owning user: with `id`, the key of a person row on Immich v3.2+
    /// (`ownerId`, `personGroupId`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The root folder `found_at` is re-verified beneath at apply time (every component
    /// resolved from a handle on it); a step without one is not applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<PathBuf>,
    /// The `asset_file` row's own `id`, when the path lives in `asset_file`: set at apply time
    /// (before the batch is journaled), so each row is relinked, counted and undone on its own
    /// even when several rows of one asset and type hold the same path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row: Option<String>,
}

/// Steps for every `moved` finding that says where to relink. `roots` are the roots the scan
/// used ([`crate::Summary::roots`]): each step records the one its file lies beneath, and a
/// finding beneath none of them is left out.
pub fn plan(findings: &[Finding], roots: &[crate::RootUsed]) -> Vec<RelinkStep> {
    findings
        .iter()
        .filter(|f| f.fault == Fault::Moved)
        .filter_map(|f| {
            let found_at = PathBuf::from(f.found_at.clone()?);
            let root = root_of(&found_at, roots)?;
            Some(RelinkStep {
                id: f.asset_id.clone()?,
                file: f.file?,
                old: f.db_path.clone()?,
                new: f.relink_to.clone()?,
                found_at,
                owner: f.owner_id.clone(),
                root: Some(root),
                row: None,
            })
        })
        .collect()
}

/// The top folders of the media root (from a summary's `roots`) restored one level too deep,
/// each with its repair: the same sentence `doctor`'s folder check gives, so the two agree.
pub fn nested_folders(roots: &[crate::RootUsed]) -> Vec<(String, String)> {
    use crate::fs::roots::{folder_state, nested_repair, FolderState};
    let Some(media) = roots.iter().find(|r| r.role == "media root") else {
        return Vec::new();
    };
    let host = Path::new(&media.value);
    crate::fs::pathmap::MEDIA_FOLDERS
        .iter()
        .filter(|f| folder_state(host, f) == FolderState::Nested)
        .map(|f| (f.to_string(), nested_repair(host, f)))
        .collect()
}

/// The deepest root (media root or mapped folder) `path` lies beneath.
fn root_of(path: &Path, roots: &[crate::RootUsed]) -> Option<PathBuf> {
    roots
        .iter()
        .filter(|r| r.role == "media root" || r.role.starts_with("map "))
        .map(|r| PathBuf::from(&r.value))
        .filter(|r| path.starts_with(r) && path != r)
        .max_by_key(|r| r.as_os_str().len())
}

/// Plans a relink of the rows a saved report (`scan --format jsonl`, or `orphans --format
/// jsonl`) names. The report only selects rows: they are checked again now with `opts` and
/// every step comes from that check (and, for an orphans report, from the orphans search run
/// again), never from the report's paths. Returns the steps and the new check's summary.
pub fn plan_from_report(
    path: &Path,
    opts: &crate::ScanOptions,
) -> Result<(Vec<RelinkStep>, crate::Summary)> {
    let sel = crate::repair::saved_report::read_selection(path, &|f| f.fault == Fault::Moved)?;
    let mut findings: Vec<Finding> = Vec::new();
    let summary = crate::scan(opts, &mut findings)?;
    findings.retain(|f| sel.selects(f));
    let mut steps = plan(&findings, &summary.roots);
    if sel.from_orphans && summary.completion == crate::Completion::Complete {
        let have: std::collections::HashSet<(String, FileKind)> =
            steps.iter().map(|s| (s.id.clone(), s.file)).collect();
        // Only rows the new check still finds missing: a row whose file is back (or that
        // the checker relinks itself) is not for an orphan to decide.
        let missing: std::collections::HashSet<(String, FileKind)> = findings
            .iter()
            .filter(|f| f.fault == Fault::Missing)
            .filter_map(|f| Some((f.asset_id.clone()?, f.file?)))
            .collect();
        let report = crate::orphans::find_orphans(opts)?;
        let matched: Vec<Finding> = report
            .orphans
            .iter()
            .filter_map(|o| o.as_moved_finding())
            .filter(|f| sel.selects(f))
            .filter(|f| {
                let key = (
                    f.asset_id.clone().unwrap_or_default(),
                    f.file.unwrap_or(FileKind::Original),
                );
                !have.contains(&key) && missing.contains(&key)
            })
            .collect();
        steps.extend(plan(&matched, &summary.roots));
    }
    Ok((steps, summary))
}

/// One journal line: what a batch is about to change, or that it committed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum JournalEntry {
    /// A row the batch is about to change (written and fsync'd before the change).
    Change {
        /// The batch number.
        batch: u64,
        /// The change.
        step: RelinkStep,
    },
    /// The batch's transaction committed.
    Committed {
        /// The batch number.
        batch: u64,
        /// The batch's `change` lines (0-based, in file order) whose row held another value
        /// at apply time, so the batch did not change it: undo leaves those rows alone.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        unchanged: Vec<u64>,
    },
    /// Written before the `change` lines of a prefix-rewrite batch: says which rewrite the
    /// batch's single statement performs. Undo does not need it (the `change` lines carry every
    /// row's old and new value); it is there for people reading the journal.
    Prefix {
        /// The batch number.
        batch: u64,
        /// The stored-path prefix being replaced (ends with `/`).
        old_prefix: String,
        /// Its replacement (ends with `/`).
        new_prefix: String,
        /// Rows this batch rewrites (one `change` line each).
        rows: u64,
    },
    /// The batch's transaction was rolled back (interrupted before its commit): none of its
    /// changes reached the database, and undo skips it.
    RolledBack {
        /// The batch number.
        batch: u64,
    },
    /// The run stopped on SIGINT/SIGTERM after `committed` batches; later steps were not
    /// applied.
    Interrupted {
        /// Batches committed before the stop.
        committed: u64,
    },
}

/// What `apply` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RelinkReport {
    /// Steps written to the database.
    pub applied: Vec<RelinkStep>,
    /// Steps not applied, with the reason (e.g. the row changed since the scan).
    pub skipped: Vec<(RelinkStep, String)>,
    /// Transactions committed.
    pub batches: u64,
    /// Prefix rewrites applied: (old prefix, new prefix, rows).
    pub prefix_rewrites: Vec<(String, String, u64)>,
    /// Prefix rewrites that did not verify and were relinked row by row: (old, new, why).
    pub prefix_fallbacks: Vec<(String, String, String)>,
    /// Stopped by the cancel flag: the batch in flight (if any) was rolled back.
    pub interrupted: bool,
    /// The batch that was rolled back because the flag was set while it ran.
    pub rolled_back: Option<u64>,
    /// This run's id in the journal (`undo JOURNAL --run ID` undoes only this run).
    pub run: String,
}

/// Opens the step's file for reading beneath its root: every component of the path is
/// resolved from a handle on the root with `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`, so a
/// folder on the way swapped for a symlink out of the root is refused. The file must be a
/// non-empty regular file. `Err` says why the step may not be applied.
fn open_verified(step: &RelinkStep) -> std::result::Result<(std::fs::File, u64), String> {
    let shown = step.found_at.display();
    let Some(root) = &step.root else {
        return Err(format!(
            "{shown}: the step names no root to verify it beneath; plan it again from a scan"
        ));
    };
    let rel = step
        .found_at
        .strip_prefix(root)
        .map_err(|_| format!("{shown} is not beneath its root {}", root.display()))?;
    let root = crate::fs::probe::Root::open(root)
        .map_err(|e| format!("cannot open the root {}: {e}", root.display()))?;
    let file = match root.open_read(rel) {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error()) => {
            return Err(format!(
                "{shown}: a symlink or `..` on the way leaves the root; not followed"
            ))
        }
        Err(e) => return Err(format!("{shown} is gone: {e}")),
    };
    match file.metadata() {
        Ok(m) if m.is_file() && m.len() > 0 => Ok((file, m.len())),
        Ok(_) => Err(format!("{shown} is no longer a non-empty regular file")),
        Err(e) => Err(format!("{shown}: {e}")),
    }
}

/// Why a step may not be applied now, if it may not.
fn reverify(step: &RelinkStep) -> Option<String> {
    open_verified(step).err()
}

/// `fileSizeInByte`, `checksum`, and whether the checksum is of the path.
type RecordedFacts = (Option<i64>, Option<Vec<u8>>, Option<bool>);

async fn original_mismatch(
    conn: &mut PgConnection,
    schema: &Schema,
    step: &RelinkStep,
) -> Result<Option<String>> {
    let sql = recorded_facts_sql(schema);
    let row: Option<RecordedFacts> = sqlx::query_as(&sql)
        .bind(&step.id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(Error::query("reading the recorded size and checksum"))?;
    let Some((want_size, checksum, of_path)) = row else {
        return Ok(Some("the asset row is gone".into()));
    };
    // The size and the SHA-1 come from the one descriptor opened beneath the root.
    let (file, have) = match open_verified(step) {
        Ok(f) => f,
        Err(why) => return Ok(Some(why)),
    };
    if let Some(want) = want_size {
        if want as u64 != have {
            return Ok(Some(format!(
                "it has {have} bytes now, Immich recorded {want}"
            )));
        }
    }
    if let (Some(sum), Some(false) | None) = (checksum, of_path) {
        let (digest, _) = crate::fs::blocks::sha1_reader(file).map_err(|e| Error::Io {
            path: step.found_at.clone(),
            source: e,
        })?;
        if digest.as_slice() != sum.as_slice() {
            return Ok(Some("its sha1 no longer matches Immich's checksum".into()));
        }
    }
    Ok(None)
}

/// Applies `steps` in batches of `batch_size`, journaling each batch first (one row per step,
/// no prefix rewrites; see [`apply_plan`]).
pub fn apply(
    db_url: &str,
    steps: &[RelinkStep],
    journal_path: &Path,
    batch_size: usize,
) -> Result<RelinkReport> {
    let plan = RelinkPlan {
        prefixes: Vec::new(),
        rows: steps.to_vec(),
    };
    apply_plan(
        db_url,
        &plan,
        journal_path,
        batch_size,
        &AtomicBool::new(false),
    )
}

/// The open journal and the batch counter shared by prefix and row batches.
struct Journal {
    writer: journal::Writer,
    run: String,
    next_batch: u64,
}

impl Journal {
    async fn open(path: &Path, conn: &mut PgConnection) -> Result<Journal> {
        let (writer, run) =
            journal::Writer::open_run(path, journal::JournalKind::Relink, conn).await?;
        // Continue the numbering of an earlier run appending to the same journal.
        let next_batch = journal::read::<JournalEntry>(path)
            .unwrap_or_default()
            .into_iter()
            .map(|e| match e {
                JournalEntry::Change { batch, .. }
                | JournalEntry::Committed { batch, .. }
                | JournalEntry::RolledBack { batch }
                | JournalEntry::Prefix { batch, .. } => batch,
                JournalEntry::Interrupted { .. } => 0,
            })
            .max()
            .unwrap_or(0)
            + 1;
        Ok(Journal {
            writer,
            run,
            next_batch,
        })
    }
    fn write(&mut self, entries: &[JournalEntry]) -> Result<()> {
        self.writer.append(entries)
    }
    fn take_batch(&mut self) -> u64 {
        self.next_batch += 1;
        self.next_batch - 1
    }

    /// Records that the run stopped (after `report.batches` committed batches).
    fn interrupted(&mut self, report: &mut RelinkReport) -> Result<()> {
        report.interrupted = true;
        self.write(&[JournalEntry::Interrupted {
            committed: report.batches,
        }])
    }

    /// Rolls back a batch the cancel flag caught before its commit, and says so.
    async fn roll_back(
        &mut self,
        tx: sqlx::Transaction<'_, sqlx::Postgres>,
        batch: u64,
        report: &mut RelinkReport,
    ) -> Result<()> {
        tx.rollback()
            .await
            .map_err(Error::query("rolling back an interrupted relink batch"))?;
        report.rolled_back = Some(batch);
        self.write(&[JournalEntry::RolledBack { batch }])?;
        self.interrupted(report)
    }

    /// Marks a batch committed. If that write fails the batch is still in the database and
    /// its changes are already journaled: the error says so, so nobody thinks it was lost.
    fn committed(&mut self, batch: u64, unchanged: Vec<u64>) -> Result<()> {
        self.write(&[JournalEntry::Committed { batch, unchanged }])
            .map_err(|e| match e {
                Error::Io { path, source } => Error::Io {
                    path,
                    source: std::io::Error::new(
                        source.kind(),
                        format!(
                            "{}; batch {batch} WAS committed and its changes are journaled, so \
                             undo still restores them",
                            crate::error::io_detail(&source)
                        ),
                    ),
                },
                e => e,
            })
    }
}

/// Applies a plan: each prefix rewrite that still verifies (else its rows one by one), then the
/// single rows. Every batch is journaled (fsync'd) before its transaction, and commits whole.
///
/// When `cancel` is set (SIGINT/SIGTERM) it stops: between batches before the next one, during a
/// batch by rolling that batch back whole instead of committing. Either way the journal ends
/// with an `interrupted` line (and `rolled_back` for the batch), every committed batch stays
/// undoable, and the report says `interrupted`.
pub fn apply_plan(
    db_url: &str,
    plan: &RelinkPlan,
    journal_path: &Path,
    batch_size: usize,
    cancel: &AtomicBool,
) -> Result<RelinkReport> {
    let rt = runtime()?;
    rt.block_on(async {
        let (mut conn, guard) = crate::db::conn::connect_for_writes(db_url).await?;
        let schema = read_info(&mut conn).await?.schema;
        let mut journal = Journal::open(journal_path, &mut conn).await?;
        let mut report = RelinkReport {
            run: journal.run.clone(),
            ..Default::default()
        };
        let mut rows: Vec<RelinkStep> = Vec::new();
        for p in &plan.prefixes {
            if cancel.load(Ordering::Relaxed) {
                journal.interrupted(&mut report)?;
                return Ok(report);
            }
            match verify_prefix(&mut conn, &schema, p).await? {
                Ok(_) => {
                    let batch = Batching {
                        size: batch_size,
                        cancel,
                        guard: &guard,
                    };
                    apply_prefix(&mut conn, &schema, p, &mut journal, batch, &mut report).await?;
                    if report.interrupted {
                        return Ok(report);
                    }
                }
                Err(why) => {
                    report
                        .prefix_fallbacks
                        .push((p.old_prefix.clone(), p.new_prefix.clone(), why));
                    rows.extend(p.steps.iter().cloned());
                }
            }
        }
        rows.extend(plan.rows.iter().cloned());
        let batch = Batching {
            size: batch_size,
            cancel,
            guard: &guard,
        };
        apply_rows(&mut conn, &schema, &rows, &mut journal, batch, &mut report).await?;
        Ok(report)
    })
}

/// How batches are cut and when to stop.
#[derive(Clone, Copy)]
struct Batching<'a> {
    size: usize,
    cancel: &'a AtomicBool,
    /// Cancels a statement blocked on a lock when `cancel` is set.
    guard: &'a crate::db::conn::WriteGuard,
}

impl Batching<'_> {
    fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }
}

async fn apply_rows(
    conn: &mut PgConnection,
    schema: &Schema,
    steps: &[RelinkStep],
    journal: &mut Journal,
    batching: Batching<'_>,
    report: &mut RelinkReport,
) -> Result<()> {
    let mut ready = Vec::new();
    for step in steps {
        if batching.cancelled() {
            return journal.interrupted(report);
        }
        let mut why = reverify(step);
        if why.is_none() && step.file == FileKind::Original {
            why = original_mismatch(conn, schema, step).await?;
        }
        match (why, update_sql(schema, step.file)) {
            (Some(why), _) => report.skipped.push((step.clone(), why)),
            (None, None) => report.skipped.push((
                step.clone(),
                format!("schema {} has no column for {}", schema.label, step.file),
            )),
            (None, Some((_, Fourth::Owner))) if step.owner.is_none() => report.skipped.push((
                step.clone(),
                "a person on this schema is keyed by owner and person group, and the step \
                 names no owner"
                    .into(),
            )),
            (None, Some(_)) => ready.push(step.clone()),
        }
    }
    for chunk in ready.chunks(batching.size.max(1)) {
        if batching.cancelled() {
            return journal.interrupted(report);
        }
        let batch = journal.take_batch();
        let mut tx = sqlx::Connection::begin(&mut *conn)
            .await
            .map_err(Error::query("starting a relink transaction"))?;
        // Each asset_file step gets its own row (locked until the commit), so rows of one asset
        // and type holding the same path are relinked and counted one by one.
        let (steps, mut skipped) = claim_rows(&mut tx, schema, chunk).await?;
        let entries: Vec<JournalEntry> = steps
            .iter()
            .map(|s| JournalEntry::Change {
                batch,
                step: s.clone(),
            })
            .collect();
        // The journal is on disk before any row changes; a failed write stops here (the
        // transaction, which changed nothing, is dropped).
        journal.write(&entries)?;
        let (mut applied, mut unchanged) = (Vec::new(), Vec::new());
        for (i, step) in steps.into_iter().enumerate() {
            let update = run_update(&mut tx, schema, &step, (&step.new, &step.old));
            let done = match batching.guard.run(batching.cancel, update).await {
                Ok(d) => d,
                // A signal cancelled the statement (it waited on a lock): nothing of the batch
                // reaches the database.
                Err(_) if batching.cancelled() => {
                    return journal.roll_back(tx, batch, report).await;
                }
                Err(e) => return Err(Error::query("relinking a row")(e)),
            };
            if done == 1 {
                applied.push(step);
            } else {
                unchanged.push(i as u64);
                skipped.push((step, "the row no longer holds the old path".into()));
            }
        }
        if batching.cancelled() {
            // Interrupted while the batch ran: none of it reaches the database.
            return journal.roll_back(tx, batch, report).await;
        }
        tx.commit()
            .await
            .map_err(Error::query("committing a relink batch"))?;
        report.applied.extend(applied);
        report.skipped.extend(skipped);
        report.batches += 1;
        journal.committed(batch, unchanged)?;
    }
    Ok(())
}

/// Gives each `asset_file` step of a batch its own row: the rows of its asset and type that
/// hold its old path, locked, each claimed by one step. A step left without a row is skipped.
async fn claim_rows(
    conn: &mut PgConnection,
    schema: &Schema,
    chunk: &[RelinkStep],
) -> Result<(Vec<RelinkStep>, Vec<(RelinkStep, String)>)> {
    let mut claimed = std::collections::HashSet::new();
    let (mut steps, mut skipped) = (Vec::new(), Vec::new());
    for step in chunk {
        let Some((_, _, Some(file_type))) = target(schema, step.file) else {
            steps.push(step.clone());
            continue;
        };
        if let Some(row) = &step.row {
            claimed.insert(row.clone());
            steps.push(step.clone());
            continue;
        }
        let sql = rows_holding_sql(schema).expect("an asset_file target has a table");
        let rows: Vec<String> = sqlx::query_scalar(&sql)
            .bind(&step.id)
            .bind(file_type)
            .bind(&step.old)
            .fetch_all(&mut *conn)
            .await
            .map_err(Error::query("finding the asset_file row to relink"))?;
        match rows.into_iter().find(|r| !claimed.contains(r)) {
            Some(row) => {
                claimed.insert(row.clone());
                steps.push(RelinkStep {
                    row: Some(row),
                    ..step.clone()
                });
            }
            None => skipped.push((step.clone(), "the row no longer holds the old path".into())),
        }
    }
    Ok((steps, skipped))
}

/// Restores what a relink journal's runs committed: every row that still holds the new value
/// gets its old value back; rows changed since are left alone (see
/// [`crate::undo_journal`], which also lists them). Returns the rows restored.
pub fn undo(db_url: &str, journal_path: &Path) -> Result<u64> {
    journal::undo_of_kind(db_url, journal_path, journal::JournalKind::Relink, "relink")
}

/// The changes the given runs committed and changed (see [`journal::committed_changes`]).
pub(crate) fn committed_steps(
    runs: &[journal::RunLines],
    damaged: &mut Vec<(usize, String)>,
) -> Vec<RelinkStep> {
    journal::committed_changes(runs, damaged, "relink", |v| {
        serde_json::from_value::<JournalEntry>(v.clone()).map(|e| match e {
            JournalEntry::Change { batch, step } => journal::Line::Change(batch, step),
            JournalEntry::Committed { batch, unchanged } => {
                journal::Line::Committed(batch, unchanged)
            }
            _ => journal::Line::Other,
        })
    })
}

impl journal::Undo for RelinkStep {
    async fn undo(&self, conn: &mut PgConnection, schema: &Schema) -> Result<u64> {
        run_update(conn, schema, self, (&self.old, &self.new))
            .await
            .map_err(Error::query("undoing a relink"))
    }

    async fn redo(&self, conn: &mut PgConnection, schema: &Schema) -> Result<u64> {
        run_update(conn, schema, self, (&self.new, &self.old))
            .await
            .map_err(Error::query("probing a relinked row"))
    }

    fn describe(&self) -> String {
        format!(
            "{} {}{}: no longer holds {}, the path the run wrote; left as it is",
            self.file,
            self.id,
            self.row
                .as_deref()
                .map(|r| format!(" (row {r})"))
                .unwrap_or_default(),
            self.new
        )
    }
}
