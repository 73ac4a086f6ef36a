//! Relink: point database rows at the file where it really is (`moved` findings).
//!
//! Safety, in order: nothing is written without `apply`; every step is re-verified at apply
//! time (the file is still at `found_at` and is a non-empty regular file of the recorded size,
//! and the row still holds the old path, checked by the `UPDATE ... WHERE path = old` itself);
//! each batch's old and new values are appended to an undo journal and fsync'd *before* the
//! batch's transaction; each batch commits whole or not at all. Identifiers come from the
//! detected schema, never from a report or a journal; values are bound parameters.

use crate::db::conn::{connect, read_info};
use crate::db::runtime::runtime;
use crate::db::schema::{q, PersonKey, Schema};
use crate::db::sql::path_checksum_expr;
mod prefix;

use prefix::{apply_prefix, prefix_sql, rows_under_sql, targets, verify_prefix};
pub use prefix::{check_prefixes, plan_prefixes, PrefixCheck, PrefixRewrite, RelinkPlan};

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
}

/// Steps for every `moved` finding that says where to relink.
pub fn plan(findings: &[Finding]) -> Vec<RelinkStep> {
    findings
        .iter()
        .filter(|f| f.fault == Fault::Moved)
        .filter_map(|f| {
            Some(RelinkStep {
                id: f.asset_id.clone()?,
                file: f.file?,
                old: f.db_path.clone()?,
                new: f.relink_to.clone()?,
                found_at: PathBuf::from(f.found_at.clone()?),
                owner: f.owner_id.clone(),
            })
        })
        .collect()
}

/// Reads `moved` findings from a saved JSONL report (`scan --format jsonl`).
pub fn plan_from_report(path: &Path) -> Result<Vec<RelinkStep>> {
    let findings = crate::repair::saved_report::read_findings(path)?;
    Ok(plan(&findings))
}

/// Where a file kind's path lives in the detected schema: (table, column, asset_file type).
fn target(
    schema: &Schema,
    kind: FileKind,
) -> Option<(&'static str, &'static str, Option<&'static str>)> {
    let af = |t: &'static str| schema.asset_file_table.map(|tbl| (tbl, "path", Some(t)));
    match kind {
        FileKind::Original => Some((schema.asset_table, "originalPath", None)),
        FileKind::Preview => match schema.preview_columns {
            Some((p, _)) => Some((schema.asset_table, p, None)),
            None => af("preview"),
        },
        FileKind::Thumbnail => match schema.preview_columns {
            Some((_, t)) => Some((schema.asset_table, t, None)),
            None => af("thumbnail"),
        },
        FileKind::Fullsize => af("fullsize"),
        FileKind::EncodedVideo if schema.has_encoded_video_column => {
            Some((schema.asset_table, "encodedVideoPath", None))
        }
        FileKind::EncodedVideo => af("encoded_video"),
        FileKind::Sidecar if schema.has_sidecar_column => {
            Some((schema.asset_table, "sidecarPath", None))
        }
        FileKind::Sidecar => af("sidecar"),
        FileKind::PersonThumbnail => schema
            .has_person
            .then_some(("person", "thumbnailPath", None)),
        FileKind::ProfileImage => Some((schema.user_table, "profileImagePath", None)),
    }
}

/// What a row update binds after `$1` (new), `$2` (id) and `$3` (old).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fourth {
    /// Nothing.
    None,
    /// `$4` is the `asset_file` type.
    FileType(&'static str),
    /// `$4` is the owner: a v3.2 person is keyed by (owner, person group).
    Owner,
}

/// `UPDATE ... SET col = $1 WHERE key = $2 AND col = $3 [AND type = $4 | AND owner = $4]`.
fn update_sql(schema: &Schema, kind: FileKind) -> Option<(String, Fourth)> {
    let (table, col, file_type) = target(schema, kind)?;
    let person = kind == FileKind::PersonThumbnail;
    let key = match file_type {
        Some(_) => q("assetId"),
        None if person => q(schema.person_key.id_column()),
        None => q("id"),
    };
    let mut sql = format!(
        "UPDATE {} SET {c} = $1 WHERE {key} = $2::uuid AND {c} = $3",
        q(table),
        c = q(col)
    );
    let fourth = match file_type {
        Some(t) => {
            sql.push_str(" AND type::text = $4");
            Fourth::FileType(t)
        }
        None if person && schema.person_key == PersonKey::OwnerAndGroup => {
            sql.push_str(" AND \"ownerId\" = $4::uuid");
            Fourth::Owner
        }
        None => Fourth::None,
    };
    Some((sql, fourth))
}

/// Binds a step's values to an [`update_sql`] statement: `set` is written where the row holds
/// `was` (relink: new over old; undo: old over new).
fn bind_update<'q>(
    sql: &'q str,
    fourth: Fourth,
    step: &'q RelinkStep,
    (set, was): (&'q str, &'q str),
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let query = sqlx::query(sql).bind(set).bind(&step.id).bind(was);
    match fourth {
        Fourth::None => query,
        Fourth::FileType(t) => query.bind(t),
        Fourth::Owner => query.bind(step.owner.as_deref().unwrap_or_default()),
    }
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
}

/// Why a step may not be applied now, if it may not.
fn reverify(step: &RelinkStep) -> Option<String> {
    match std::fs::symlink_metadata(&step.found_at) {
        Ok(m) if m.is_file() && m.len() > 0 => None,
        Ok(_) => Some(format!(
            "{} is no longer a non-empty regular file",
            step.found_at.display()
        )),
        Err(e) => Some(format!("{} is gone: {e}", step.found_at.display())),
    }
}

/// `fileSizeInByte`, `checksum`, and whether the checksum is of the path.
type RecordedFacts = (Option<i64>, Option<Vec<u8>>, Option<bool>);

/// For an original: does the file at `found_at` still match what Immich recorded (size, and
/// SHA-1 when the checksum is of the content)?
/// The recorded size, checksum and checksum kind of one asset (`$1`).
fn recorded_facts_sql(schema: &Schema) -> String {
    let size = match schema.exif_table {
        Some(e) => format!(
            "(SELECT \"fileSizeInByte\" FROM {} WHERE \"assetId\" = a.id)",
            q(e)
        ),
        None => "NULL::int8".into(),
    };
    format!(
        "SELECT {size}, a.checksum, {} FROM {} a WHERE a.id = $1::uuid",
        path_checksum_expr(schema),
        q(schema.asset_table)
    )
}

/// Every statement relink and its undo run against this schema, labelled, for `doctor` to
/// prepare (values are placeholders; nothing runs).
pub(crate) fn statements(schema: &Schema) -> Vec<(String, String)> {
    let mut out = vec![(
        "relink: recorded size and checksum".to_string(),
        recorded_facts_sql(schema),
    )];
    for kind in FileKind::ALL {
        if let Some((sql, _)) = update_sql(schema, kind) {
            out.push((format!("relink/undo: {kind} path"), sql));
        }
    }
    for (kind, table, col, file_type) in targets(schema) {
        out.push((
            format!("relink: rows under a prefix ({kind})"),
            rows_under_sql(schema, table, col, file_type),
        ));
        out.push((
            format!("relink: prefix rewrite ({kind})"),
            prefix_sql(schema, table, col, file_type),
        ));
    }
    out
}

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
    let have = std::fs::metadata(&step.found_at)
        .map(|m| m.len())
        .unwrap_or(0);
    if let Some(want) = want_size {
        if want as u64 != have {
            return Ok(Some(format!(
                "it has {have} bytes now, Immich recorded {want}"
            )));
        }
    }
    if let (Some(sum), Some(false) | None) = (checksum, of_path) {
        let file = std::fs::File::open(&step.found_at).map_err(|e| Error::Io {
            path: step.found_at.clone(),
            source: e,
        })?;
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
    next_batch: u64,
}

impl Journal {
    fn open(path: &Path) -> Result<Journal> {
        let writer = journal::Writer::open(path)?;
        // Continue the numbering of an earlier run appending to the same journal.
        let next_batch = journal::read::<JournalEntry>(path)
            .unwrap_or_default()
            .into_iter()
            .map(|e| match e {
                JournalEntry::Change { batch, .. }
                | JournalEntry::Committed { batch }
                | JournalEntry::RolledBack { batch }
                | JournalEntry::Prefix { batch, .. } => batch,
                JournalEntry::Interrupted { .. } => 0,
            })
            .max()
            .unwrap_or(0)
            + 1;
        Ok(Journal { writer, next_batch })
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
    fn committed(&mut self, batch: u64) -> Result<()> {
        self.write(&[JournalEntry::Committed { batch }])
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
        let mut journal = Journal::open(journal_path)?;
        let mut report = RelinkReport::default();
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
        let entries: Vec<JournalEntry> = chunk
            .iter()
            .map(|s| JournalEntry::Change {
                batch,
                step: s.clone(),
            })
            .collect();
        // The journal is on disk before the database changes; a failed write stops here.
        journal.write(&entries)?;
        let mut tx = sqlx::Connection::begin(&mut *conn)
            .await
            .map_err(Error::query("starting a relink transaction"))?;
        let (mut applied, mut skipped) = (Vec::new(), Vec::new());
        for step in chunk {
            let (sql, fourth) = update_sql(schema, step.file).expect("checked above");
            let update = bind_update(&sql, fourth, step, (&step.new, &step.old)).execute(&mut *tx);
            let done = match batching.guard.run(batching.cancel, update).await {
                Ok(d) => d,
                // A signal cancelled the statement (it waited on a lock): nothing of the batch
                // reaches the database.
                Err(_) if batching.cancelled() => {
                    return journal.roll_back(tx, batch, report).await;
                }
                Err(e) => return Err(Error::query("relinking a row")(e)),
            };
            if done.rows_affected() == 1 {
                applied.push(step.clone());
            } else {
                skipped.push((step.clone(), "the row no longer holds the old path".into()));
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
        journal.committed(batch)?;
    }
    Ok(())
}

/// Restores what a journal changed: every row that still holds the new value gets its old
/// value back. Rows changed since are left alone, so running it twice is harmless.
pub fn undo(db_url: &str, journal_path: &Path) -> Result<u64> {
    let mut changes = Vec::new();
    let mut rolled_back = std::collections::BTreeSet::new();
    // A torn last line (crash mid-write) belongs to a batch that never started.
    for entry in journal::read::<JournalEntry>(journal_path)? {
        match entry {
            JournalEntry::Change { batch, step } => changes.push((batch, step)),
            JournalEntry::RolledBack { batch } => {
                rolled_back.insert(batch);
            }
            _ => {}
        }
    }
    // A rolled-back batch changed nothing; restoring it could only clobber later edits.
    let steps: Vec<RelinkStep> = changes
        .into_iter()
        .filter(|(b, _)| !rolled_back.contains(b))
        .map(|(_, s)| s)
        .collect();
    journal::undo(db_url, &steps)
}

impl journal::Undo for RelinkStep {
    async fn undo(&self, conn: &mut PgConnection, schema: &Schema) -> Result<u64> {
        let Some((sql, fourth)) = update_sql(schema, self.file) else {
            return Ok(0);
        };
        Ok(bind_update(&sql, fourth, self, (&self.old, &self.new))
            .execute(&mut *conn)
            .await
            .map_err(Error::query("undoing a relink"))?
            .rows_affected())
    }
}
