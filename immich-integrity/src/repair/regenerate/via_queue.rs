//! `--via queue`: what a run plans, journals and reports (planning in `plan.rs`, applying in
//! `apply.rs`); undo restores the rows.

use super::queue_changes::{change_sql, exec, slot, Slot};
use super::*;
use crate::db::schema::{q, Schema};
use crate::error::{Error, Result};
use crate::model::{FileKind, Level};
use crate::repair::api::Outcome;
use crate::repair::cascade::{restore, triggers};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

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
    /// The batch was rolled back whole (SIGINT/SIGTERM while it ran): none of its changes
    /// reached the database, and it has no `queue_committed` line.
    QueueRolledBack {
        /// The batch number.
        batch: u64,
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
    /// How deep each planned file, by (asset, kind, stored path), was found broken: apply
    /// checks it again that deep right before its row changes.
    #[serde(skip)]
    pub(crate) depths: BTreeMap<(String, FileKind, String), Level>,
    /// The roots the files were checked with ([`plan_queue`]'s options); a plan without them
    /// (not made by [`plan_queue`]) clears nothing.
    #[serde(skip)]
    pub(crate) recheck_with: Option<crate::ScanOptions>,
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
    /// Planned changes not made because the file, checked again right before, was no longer
    /// broken in a way a rebuild repairs (or the plan had nothing to check it with).
    pub skipped: Vec<(QueueStep, String)>,
    /// The batch rolled back whole because SIGINT/SIGTERM came while it ran (nothing of it
    /// was committed; the journal says `queue_rolled_back`).
    pub interrupted_batch: Option<u64>,
}

impl QueueReport {
    /// True when the run was not interrupted and Immich accepted the start of every queue.
    pub fn all_started(&self) -> bool {
        !self.interrupted && self.queues.iter().all(|(_, o)| o.is_accepted())
    }
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
