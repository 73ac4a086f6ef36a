//! Applying a queue-mode plan: each batch's files checked again, journaled (fsync'd), changed
//! in one transaction that a signal can cancel even while a statement waits on a lock, then
//! the queues started.

use super::plan::asset_now;
use super::queue_changes::{change_sql, exec, slot, Slot};
use super::recheck::Recheck;
use super::{journal, QueueChange, QueueJournal, QueuePlan, QueueReport, QueueStep};
use crate::db::conn::read_info;
use crate::db::runtime::runtime;
use crate::db::schema::{q, Schema};
use crate::error::{Error, Result};
use crate::repair::api::{ApiKey, Client, Outcome};
use crate::repair::cascade::{cascaded_rows, CascadedRow};
use sqlx::PgConnection;
use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Journals and applies `plan` in transactions of `batch_size` steps, then starts the queues
/// with the admin key. The journal is fsync'd before each transaction; a failed journal write
/// stops before the database is touched.
///
/// Right before a batch, each of its files is checked again as deep as the plan found it
/// broken; a file no longer broken keeps its row (listed in [`QueueReport::skipped`]).
///
/// When `cancel` is set (SIGINT/SIGTERM) the run stops: between batches before the next one,
/// and during a batch (even a statement waiting on a row lock, which is cancelled on the
/// server) by rolling that batch back whole; the journal then says `queue_rolled_back` for it
/// and holds no commit mark for it, so undo restores nothing of it.
pub fn apply_queue(
    db_url: &str,
    plan: &QueuePlan,
    journal_path: &Path,
    batch_size: usize,
    client: &Client,
    admin_key: &ApiKey,
    cancel: Option<Arc<AtomicBool>>,
) -> Result<QueueReport> {
    let never = AtomicBool::new(false);
    let flag: &AtomicBool = cancel.as_deref().unwrap_or(&never);
    let cancelled = || flag.load(Ordering::Relaxed);
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
        let (mut conn, guard) = crate::db::conn::connect_for_writes(db_url).await?;
        let info = read_info(&mut conn).await?;
        let schema = info.schema.clone();
        let mut recheck = match &plan.recheck_with {
            Some(opts) => Some(Recheck::open(opts, &info)?),
            None => None,
        };
        let journal = journal.insert(
            journal::Writer::open_run(journal_path, journal::JournalKind::Queue, &mut conn)
                .await?
                .0,
        );
        let mut batch = 0u64;
        for chunk in batches(&plan.steps, batch_size) {
            if cancelled() {
                report.interrupted = true;
                return Ok(());
            }
            let chunk = still_broken(
                &mut conn,
                &schema,
                plan,
                recheck.as_mut(),
                chunk,
                &mut report,
            )
            .await?;
            if chunk.is_empty() {
                continue;
            }
            batch += 1;
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
            let (mut applied, mut unchanged) = (0, Vec::new());
            for (i, step) in chunk.iter().enumerate() {
                match guard.run(flag, change(&mut tx, &schema, step)).await {
                    Ok(true) => applied += 1,
                    Ok(false) => unchanged.push(i as u64),
                    // A signal cancelled the statement (it waited on a lock): none of the
                    // batch reaches the database.
                    Err(_) if cancelled() => {
                        return roll_back(tx, journal, batch, &mut report).await;
                    }
                    Err(e) => return Err(e),
                }
            }
            if cancelled() {
                return roll_back(tx, journal, batch, &mut report).await;
            }
            tx.commit()
                .await
                .map_err(Error::query("committing a batch"))?;
            report.applied += applied;
            report.unchanged += unchanged.len() as u64;
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
    start_queues(db_url, plan, client, admin_key, journal, &committed, report)
}

/// The plan's steps cut into batches of about `size`, an asset's steps never split.
fn batches(steps: &[QueueStep], size: usize) -> Vec<Vec<&QueueStep>> {
    let mut out: Vec<Vec<&QueueStep>> = Vec::new();
    let mut cur: Vec<&QueueStep> = Vec::new();
    for s in steps {
        let new_asset = !matches!(cur.last(), Some(l) if l.asset_id == s.asset_id);
        if new_asset && cur.len() >= size.max(1) {
            out.push(std::mem::take(&mut cur));
        }
        cur.push(s);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Makes one change; `false` when its row no longer holds what was planned.
async fn change(conn: &mut PgConnection, schema: &Schema, step: &QueueStep) -> Result<bool> {
    let Some((sql, binds)) = change_sql(schema, step, false) else {
        return Ok(false);
    };
    if !cascades_unchanged(conn, schema, step).await? {
        // The journal holds the rows seen at planning; deleting now would remove rows it
        // does not hold, which undo could not restore.
        return Ok(false);
    }
    Ok(exec(conn, &sql, &binds).await? == 1)
}

/// Rolls back a batch a signal caught before its commit, and says so in the journal.
async fn roll_back(
    tx: sqlx::Transaction<'_, sqlx::Postgres>,
    journal: &mut journal::Writer,
    batch: u64,
    report: &mut QueueReport,
) -> Result<()> {
    tx.rollback()
        .await
        .map_err(Error::query("rolling back an interrupted batch"))?;
    report.interrupted = true;
    report.interrupted_batch = Some(batch);
    journal.append(&[QueueJournal::QueueRolledBack { batch }])
}

/// The steps of `chunk` whose file is still broken, checked now as deep as the plan found it;
/// the others go to `report.skipped`. An asset's thumbhash and metadata steps go with its
/// files: an asset none of whose files is cleared keeps them too.
async fn still_broken<'a>(
    conn: &mut PgConnection,
    schema: &Schema,
    plan: &QueuePlan,
    mut recheck: Option<&mut Recheck>,
    chunk: Vec<&'a QueueStep>,
    report: &mut QueueReport,
) -> Result<Vec<&'a QueueStep>> {
    let mut keep: Vec<bool> = vec![true; chunk.len()];
    let mut assets_cleared: HashSet<&str> = HashSet::new();
    for (i, step) in chunk.iter().enumerate() {
        let (kind, path, edited) = match &step.change {
            QueueChange::DeleteAssetFile { file, row, .. } => (
                *file,
                row.get("path").and_then(|p| p.as_str()).unwrap_or_default(),
                row.get("isEdited").and_then(|e| e.as_bool()) == Some(true),
            ),
            QueueChange::BlankColumn { file, old, .. } => (*file, old.as_str(), false),
            _ => continue,
        };
        let depth = plan
            .depths
            .get(&(step.asset_id.clone(), kind, path.to_string()));
        let verdict = match (recheck.as_deref_mut(), depth) {
            (Some(r), Some(depth)) => match asset_now(conn, schema, &step.asset_id).await? {
                Some(asset) => r.broken(&asset, kind, path, edited, *depth).map(|_| ()),
                None => Err("no such asset now".to_string()),
            },
            _ => Err(
                "the plan was not made by plan_queue, so the file cannot be checked again; \
                 nothing is cleared unchecked"
                    .to_string(),
            ),
        };
        match verdict {
            Ok(()) => {
                assets_cleared.insert(step.asset_id.as_str());
            }
            Err(why) => {
                keep[i] = false;
                report.skipped.push(((*step).clone(), why));
            }
        }
    }
    let mut out = Vec::new();
    for (step, keep) in chunk.into_iter().zip(keep) {
        let companion = matches!(
            step.change,
            QueueChange::ClearThumbhash { .. } | QueueChange::ClearMetadataExtractedAt { .. }
        );
        if keep && (!companion || assets_cleared.contains(step.asset_id.as_str())) {
            out.push(step);
        }
    }
    Ok(out)
}

/// Starts the plan's queues; if the server refuses one, puts this run's committed changes
/// back (rows with no job to rebuild them would stay blank for good).
fn start_queues(
    db_url: &str,
    plan: &QueuePlan,
    client: &Client,
    admin_key: &ApiKey,
    mut journal: Option<journal::Writer>,
    committed: &[QueueStep],
    mut report: QueueReport,
) -> Result<QueueReport> {
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
        let restored = runtime()?.block_on(async {
            let (mut conn, _) = crate::db::conn::connect_for_writes(db_url).await?;
            let schema = read_info(&mut conn).await?.schema;
            journal::undo_in_transaction(&mut conn, &schema, committed).await
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
