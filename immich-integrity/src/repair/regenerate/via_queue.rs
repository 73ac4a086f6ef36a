//! `--via queue`: make the database say the derivative is missing (journal first, one
//! transaction per batch), then start Immich's queue; undo restores the rows.

use super::queue_changes::{
    asset_file_row_sql, change_sql, column_sql, exec, has_job_status, slot, thumbhash_sql, Slot,
};
use super::*;
use crate::db::conn::{connect, read_info};
use crate::db::runtime::runtime;
use crate::db::schema::{q, Schema};
use crate::error::{Error, Result};
use crate::model::FileKind;
use crate::repair::api::{ApiKey, Client, Outcome};
pub use crate::repair::cascade::CascadedRow;
use crate::repair::cascade::{cascaded_rows, restore, triggers};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// One line of a queue-mode journal. The tags differ from relink's, so each undo reads only
/// its own lines.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum QueueJournal {
    /// A change the batch is about to make (written and fsync'd before it).
    QueueChange {
        /// The batch number.
        batch: u64,
        /// The change.
        step: QueueStep,
    },
    /// The batch's transaction committed.
    QueueCommitted {
        /// The batch number.
        batch: u64,
        /// The batch's `queue_change` lines (0-based, in file order) that changed no row:
        /// undo leaves those rows alone.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        unchanged: Vec<u64>,
    },
    /// Immich accepted the request to start a queue.
    QueueStarted {
        /// The queue's name, e.g. `thumbnailGeneration`.
        queue: String,
        /// The HTTP status of the answer.
        status: u16,
    },
}

/// The plan of a queue-mode run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct QueuePlan {
    /// The database changes, in the order they are journalled and applied.
    pub steps: Vec<QueueStep>,
    /// Targets that need no change or cannot be changed, with the reason.
    pub skipped: Vec<(Target, String)>,
    /// Queues to start afterwards.
    pub queues: Vec<&'static str>,
    /// What the changes also cause in the database, for the dry run: rows deleted through
    /// cascades, and the triggers that fire (audit rows, re-stamped `updatedAt`/`updateId`).
    pub side_effects: Vec<String>,
}

/// Reads the rows behind `targets` and plans the changes. Read only.
pub fn plan_queue(db_url: &str, targets: &[Target]) -> Result<QueuePlan> {
    let rt = runtime()?;
    rt.block_on(async {
        let mut conn = connect(db_url).await?;
        let schema = read_info(&mut conn).await?.schema;
        let job_status = has_job_status(&mut conn).await?;
        plan_queue_on(&mut conn, &schema, job_status, targets).await
    })
}

pub(super) async fn plan_queue_on(
    conn: &mut PgConnection,
    schema: &Schema,
    job_status: bool,
    targets: &[Target],
) -> Result<QueuePlan> {
    let mut plan = QueuePlan::default();
    let mut thumbhash_done: HashSet<String> = HashSet::new();
    let mut status_done: HashSet<String> = HashSet::new();
    let mut queues: BTreeSet<&'static str> = BTreeSet::new();
    for t in targets {
        if t.is_back() {
            plan.skipped.push((
                t.clone(),
                "the file is back (a non-empty regular file again)".into(),
            ));
            continue;
        }
        let Some(db_path) = t.db_path.clone() else {
            plan.skipped
                .push((t.clone(), "the finding names no stored path".into()));
            continue;
        };
        let Some(slot) = slot(schema, t.file) else {
            plan.skipped.push((
                t.clone(),
                format!("schema {} has no place for {}", schema.label, t.file),
            ));
            continue;
        };
        let change = match slot {
            Slot::AssetFile(table, file_type) => {
                let sql = asset_file_row_sql(table);
                let rows: Vec<(String, serde_json::Value)> = sqlx::query_as(&sql)
                    .bind(&t.asset_id)
                    .bind(file_type)
                    .bind(&db_path)
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(Error::query("reading an asset_file row"))?;
                match rows.into_iter().next() {
                    Some((row_id, row)) => {
                        let cascaded = cascaded_rows(conn, &q(table), &row, false).await?;
                        Some(QueueChange::DeleteAssetFile {
                            file: t.file,
                            row_id,
                            row,
                            cascaded,
                        })
                    }
                    None => None,
                }
            }
            Slot::Column(col, blank) => {
                let sql = column_sql(schema, col);
                let cur: Option<Option<String>> = sqlx::query_scalar(&sql)
                    .bind(&t.asset_id)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(Error::query("reading a path column"))?;
                match cur.flatten() {
                    Some(old) if old == db_path => Some(QueueChange::BlankColumn {
                        file: t.file,
                        old,
                        blank: blank.map(str::to_string),
                    }),
                    _ => None,
                }
            }
        };
        let Some(change) = change else {
            plan.skipped.push((
                t.clone(),
                "the row no longer holds the path the scan saw broken".into(),
            ));
            continue;
        };
        plan.steps.push(QueueStep {
            asset_id: t.asset_id.clone(),
            change,
        });
        queues.insert(t.job.queue());
        let image_derivative = matches!(
            t.file,
            FileKind::Preview | FileKind::Thumbnail | FileKind::Fullsize
        );
        if image_derivative && thumbhash_done.insert(t.asset_id.clone()) {
            let sql = thumbhash_sql(schema);
            let hash: Option<Option<String>> = sqlx::query_scalar(&sql)
                .bind(&t.asset_id)
                .fetch_optional(&mut *conn)
                .await
                .map_err(Error::query("reading thumbhash"))?;
            if let Some(old_hex) = hash.flatten() {
                plan.steps.push(QueueStep {
                    asset_id: t.asset_id.clone(),
                    change: QueueChange::ClearThumbhash { old_hex },
                });
            }
        }
        if t.file == FileKind::Sidecar && job_status && status_done.insert(t.asset_id.clone()) {
            let old: Option<Option<serde_json::Value>> = sqlx::query_scalar(
                "SELECT to_jsonb(\"metadataExtractedAt\") FROM asset_job_status \
                 WHERE \"assetId\" = $1::uuid",
            )
            .bind(&t.asset_id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(Error::query("reading asset_job_status"))?;
            if let Some(old) = old.flatten().filter(|v| !v.is_null()) {
                plan.steps.push(QueueStep {
                    asset_id: t.asset_id.clone(),
                    change: QueueChange::ClearMetadataExtractedAt { old },
                });
            }
        }
    }
    // An asset's steps side by side, so a batch boundary never splits them.
    plan.steps.sort_by(|a, b| a.asset_id.cmp(&b.asset_id));
    plan.queues = queues.into_iter().collect();
    plan.side_effects = side_effects(conn, schema, &plan.steps).await?;
    Ok(plan)
}

/// Sentences for the dry run: cascaded rows per table, and the triggers each changed table
/// fires.
pub(super) async fn side_effects(
    conn: &mut PgConnection,
    schema: &Schema,
    steps: &[QueueStep],
) -> Result<Vec<String>> {
    let mut cascaded: BTreeMap<String, u64> = BTreeMap::new();
    let mut touched: BTreeSet<(String, &'static str)> = BTreeSet::new();
    for s in steps {
        match &s.change {
            QueueChange::DeleteAssetFile {
                file, cascaded: c, ..
            } => {
                if let Some(Slot::AssetFile(t, _)) = slot(schema, *file) {
                    touched.insert((q(t), "DELETE"));
                }
                for r in c {
                    *cascaded.entry(r.table.clone()).or_default() += 1;
                    touched.insert((r.table.clone(), "DELETE"));
                }
            }
            QueueChange::BlankColumn { .. } | QueueChange::ClearThumbhash { .. } => {
                touched.insert((q(schema.asset_table), "UPDATE"));
            }
            QueueChange::ClearMetadataExtractedAt { .. } => {
                touched.insert(("asset_job_status".into(), "UPDATE"));
            }
        }
    }
    let mut out: Vec<String> = cascaded
        .into_iter()
        .map(|(t, n)| {
            format!(
                "{n} rows of {t} are deleted with them (ON DELETE CASCADE); undo puts them back"
            )
        })
        .collect();
    for (table, event) in touched {
        let fired = triggers(conn, &table, event).await?;
        if !fired.is_empty() {
            out.push(format!(
                "{event} on {table} fires {} (they write audit rows and re-stamp \
                 updatedAt/updateId; undo does not remove those)",
                fired.join(", ")
            ));
        }
    }
    Ok(out)
}

/// What [`apply_queue`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct QueueReport {
    /// Changes that took effect.
    pub applied: u64,
    /// Changes whose row had changed since planning (nothing written for them).
    pub unchanged: u64,
    /// Transactions committed.
    pub batches: u64,
    /// Queues started, with the outcome of each request.
    pub queues: Vec<(String, Outcome)>,
    /// The run stopped on SIGINT/SIGTERM before finishing.
    pub interrupted: bool,
    /// The server refused a queue after the rows were changed, so the run restored its own
    /// committed changes from the journal: the rows restored.
    pub rolled_back: Option<u64>,
}

impl QueueReport {
    /// True when the run was not interrupted and Immich accepted the start of every queue.
    pub fn all_started(&self) -> bool {
        !self.interrupted && self.queues.iter().all(|(_, o)| o.is_accepted())
    }
}

/// Journals and applies `plan` in transactions of `batch_size` steps, then starts the queues
/// with the admin key. The journal is fsync'd before each transaction; a failed journal write
/// stops before the database is touched.
pub fn apply_queue(
    db_url: &str,
    plan: &QueuePlan,
    journal_path: &Path,
    batch_size: usize,
    client: &Client,
    admin_key: &ApiKey,
    cancel: Option<Arc<AtomicBool>>,
) -> Result<QueueReport> {
    let cancelled = || cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed));
    // Ask the server who the key is before any row changes: a key that cannot start the
    // queues would leave the rows changed and nothing regenerating them.
    let rights = client.key_rights(admin_key).map_err(|why| {
        Error::InvalidArgument(format!(
            "cannot ask the server who the API key is ({why}); no row was changed"
        ))
    })?;
    if let Some(why) = rights.cannot_start_queues() {
        return Err(Error::InvalidArgument(format!(
            "the API key cannot start Immich's queues: {why}; no row was changed (use an \
             admin's key with job.create, or `all`)"
        )));
    }
    let rt = runtime()?;
    let mut journal: Option<journal::Writer> = None;
    let mut report = QueueReport::default();
    let mut committed: Vec<QueueStep> = Vec::new();
    rt.block_on(async {
        let (mut conn, _) = crate::db::conn::connect_for_writes(db_url).await?;
        let schema = read_info(&mut conn).await?.schema;
        let journal = journal.insert(
            journal::Writer::open_run(journal_path, journal::JournalKind::Queue, &mut conn)
                .await?
                .0,
        );
        // A step belongs to one asset: keep an asset's steps in one transaction.
        let mut batches: Vec<Vec<&QueueStep>> = Vec::new();
        let mut cur: Vec<&QueueStep> = Vec::new();
        for s in &plan.steps {
            let new_asset = !matches!(cur.last(), Some(l) if l.asset_id == s.asset_id);
            if new_asset && cur.len() >= batch_size.max(1) {
                batches.push(std::mem::take(&mut cur));
            }
            cur.push(s);
        }
        if !cur.is_empty() {
            batches.push(cur);
        }
        for (n, chunk) in batches.iter().enumerate() {
            if cancelled() {
                report.interrupted = true;
                return Ok(());
            }
            let batch = n as u64 + 1;
            let lines: Vec<QueueJournal> = chunk
                .iter()
                .map(|s| QueueJournal::QueueChange {
                    batch,
                    step: (*s).clone(),
                })
                .collect();
            journal.append(&lines)?;
            let mut tx = sqlx::Connection::begin(&mut conn)
                .await
                .map_err(Error::query("starting a transaction"))?;
            let mut unchanged = Vec::new();
            for (i, step) in chunk.iter().enumerate() {
                let Some((sql, binds)) = change_sql(&schema, step, false) else {
                    unchanged.push(i as u64);
                    continue;
                };
                if !cascades_unchanged(&mut tx, &schema, step).await? {
                    // The journal holds the rows seen at planning; deleting now would remove
                    // rows it does not hold, which undo could not restore.
                    unchanged.push(i as u64);
                    continue;
                }
                if exec(&mut tx, &sql, &binds).await? == 1 {
                    report.applied += 1;
                } else {
                    unchanged.push(i as u64);
                }
            }
            report.unchanged += unchanged.len() as u64;
            tx.commit()
                .await
                .map_err(Error::query("committing a batch"))?;
            report.batches += 1;
            committed.extend(
                chunk
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !unchanged.contains(&(*i as u64)))
                    .map(|(_, s)| (*s).clone()),
            );
            journal.append(&[QueueJournal::QueueCommitted { batch, unchanged }])?;
        }
        Ok(())
    })?;
    if report.interrupted {
        return Ok(report);
    }
    let mut refused = false;
    for queue in &plan.queues {
        let mut outcome = client.start_queue(admin_key, queue);
        if let Outcome::Rejected {
            status: 404,
            message,
            attempts,
        } = &outcome
        {
            outcome = Outcome::Rejected {
                status: 404,
                message: format!(
                    "{message} (PUT /api/jobs/{queue} is deprecated since Immich v2.3 and \
                     present through v3.2.2; this server has removed it: start the queue in \
                     Immich, Administration > Jobs > Missing)"
                ),
                attempts: *attempts,
            };
        }
        refused |= matches!(outcome, Outcome::Rejected { .. });
        if let (Outcome::Accepted { status, .. }, Some(journal)) = (&outcome, journal.as_mut()) {
            let status = *status;
            journal.append(&[QueueJournal::QueueStarted {
                queue: queue.to_string(),
                status,
            }])?;
        }
        if matches!(outcome, Outcome::Interrupted { .. }) {
            report.interrupted = true;
        }
        report.queues.push((queue.to_string(), outcome));
    }
    if refused && !report.interrupted {
        // Changed rows with no job to regenerate them would leave blank thumbnails for good:
        // put this run's committed changes back now.
        let restored = rt.block_on(async {
            let (mut conn, _) = crate::db::conn::connect_for_writes(db_url).await?;
            let schema = read_info(&mut conn).await?.schema;
            journal::undo_in_transaction(&mut conn, &schema, &committed).await
        })?;
        report.rolled_back = Some(restored);
    }
    Ok(report)
}

/// For a delete: the rows it would cascade to now (locked) are the ones journaled.
pub(super) async fn cascades_unchanged(
    conn: &mut PgConnection,
    schema: &Schema,
    step: &QueueStep,
) -> Result<bool> {
    let QueueChange::DeleteAssetFile {
        file,
        row,
        cascaded,
        ..
    } = &step.change
    else {
        return Ok(true);
    };
    let Some(Slot::AssetFile(table, _)) = slot(schema, *file) else {
        return Ok(true);
    };
    let now = cascaded_rows(conn, &q(table), row, true).await?;
    let key = |v: &[CascadedRow]| {
        let mut k: Vec<String> = v.iter().map(|r| format!("{}:{}", r.table, r.row)).collect();
        k.sort();
        k
    };
    Ok(key(&now) == key(cascaded))
}

/// Is this a queue-mode journal (its header says so)?
pub fn is_queue_journal(path: &Path) -> bool {
    journal::parse_journal(path).is_ok_and(|p| p.kind == journal::JournalKind::Queue)
}

/// Restores every change a queue-mode journal's runs committed, newest first, in one
/// transaction. Each statement only acts if the row still holds what queue mode left there (a
/// row Immich has since regenerated is left alone), so running it twice is harmless. Returns
/// the rows restored (see [`crate::undo_journal`] for the rows left alone).
pub fn undo_queue(db_url: &str, journal_path: &Path) -> Result<u64> {
    journal::undo_of_kind(
        db_url,
        journal_path,
        journal::JournalKind::Queue,
        "queue-mode",
    )
}

/// The changes the given runs committed and made (see [`journal::committed_changes`]).
pub(crate) fn committed_queue_steps(
    runs: &[journal::RunLines],
    damaged: &mut Vec<(usize, String)>,
) -> Vec<QueueStep> {
    journal::committed_changes(runs, damaged, "queue", |v| {
        serde_json::from_value::<QueueJournal>(v.clone()).map(|e| match e {
            QueueJournal::QueueChange { batch, step } => journal::Line::Change(batch, step),
            QueueJournal::QueueCommitted { batch, unchanged } => {
                journal::Line::Committed(batch, unchanged)
            }
            _ => journal::Line::Other,
        })
    })
}

impl journal::Undo for QueueStep {
    async fn undo(&self, conn: &mut PgConnection, schema: &Schema) -> Result<u64> {
        let mut restored = 0;
        if let Some((sql, binds)) = change_sql(schema, self, true) {
            restored += exec(&mut *conn, &sql, &binds).await?;
        }
        if let QueueChange::DeleteAssetFile {
            file,
            row_id,
            cascaded,
            ..
        } = &self.change
        {
            if let Some(Slot::AssetFile(table, _)) = slot(schema, *file) {
                let back: bool = sqlx::query_scalar(&format!(
                    "SELECT EXISTS (SELECT 1 FROM {} WHERE id = $1::uuid)",
                    q(table)
                ))
                .bind(row_id)
                .fetch_one(&mut *conn)
                .await
                .map_err(Error::query("looking for a restored asset_file row"))?;
                if back && !cascaded.is_empty() {
                    restored += restore(&mut *conn, &q(table), cascaded).await?;
                }
            }
        }
        Ok(restored)
    }

    async fn redo(&self, conn: &mut PgConnection, schema: &Schema) -> Result<u64> {
        match change_sql(schema, self, false) {
            Some((sql, binds)) => exec(&mut *conn, &sql, &binds).await,
            None => Ok(0),
        }
    }

    fn describe(&self) -> String {
        let what = match &self.change {
            QueueChange::DeleteAssetFile { file, row_id, .. } => {
                format!("{file} asset_file row {row_id} (deleted by the run)")
            }
            QueueChange::BlankColumn { file, .. } => format!("{file} column (blanked by the run)"),
            QueueChange::ClearThumbhash { .. } => "thumbhash (cleared by the run)".into(),
            QueueChange::ClearMetadataExtractedAt { .. } => {
                "metadataExtractedAt (cleared by the run)".into()
            }
        };
        format!(
            "asset {}: {what} no longer holds what the run left there; left as it is",
            self.asset_id
        )
    }
}
