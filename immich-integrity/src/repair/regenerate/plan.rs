//! Planning queue mode. A target only selects an asset and a file kind; the paths come from
//! the rows as they are now, and a row is planned only when its file, checked now, is broken
//! in a way a rebuild repairs (see [`super::recheck`]). A target from a report or an embedder
//! can therefore never get a healthy file's row deleted or blanked.

use super::queue_changes::{
    asset_file_rows_sql, column_sql, has_job_status, slot, thumbhash_sql, Slot,
};
use super::recheck::{depth_of, AssetNow, Recheck};
use super::via_queue::side_effects;
use super::{JobName, QueueChange, QueuePlan, QueueStep, Target};
use crate::db::conn::{connect, is_connection_lost, read_info, server_message};
use crate::db::runtime::runtime;
use crate::db::schema::{q, Schema};
use crate::error::{Error, Result};
use crate::model::{FileKind, Level};
use crate::repair::cascade::cascaded_rows;
use crate::scan::ScanOptions;
use sqlx::PgConnection;
use std::collections::{BTreeSet, HashMap, HashSet};

/// Reads the rows behind `targets`, checks their files now and plans the changes; read only.
///
/// Each target selects (asset, file kind); its `db_path`, `host_path` and `owner_id` are not
/// used. Every row of that kind the asset has now is checked with the roots of `opts` at the
/// depth the target's `fault` needs ([`depth_of`]: a `corrupt` one is decoded again), and is
/// planned only when that check finds it broken in a way a rebuild repairs, with its original
/// present. Everything else is in [`QueuePlan::skipped`] with the reason. [`super::apply_queue`]
/// checks each planned file once more right before its row changes.
pub fn plan_queue(opts: &ScanOptions, targets: &[Target]) -> Result<QueuePlan> {
    let rt = runtime()?;
    let db_url = &opts.source.db_url;
    let info = rt.block_on(async {
        let mut conn = connect(db_url).await?;
        read_info(&mut conn).await
    })?;
    crate::scan::check_media_location(opts, &info)?;
    let mut recheck = Recheck::open(opts, &info)?;
    let mut plan = rt.block_on(async {
        let mut conn = connect(db_url).await?;
        let job_status = has_job_status(&mut conn).await?;
        plan_on(&mut conn, &info.schema, job_status, targets, &mut recheck).await
    })?;
    plan.recheck_with = Some(opts.clone());
    Ok(plan)
}

/// The asset as the database holds it now (`None`: no such asset).
pub(super) async fn asset_now(
    conn: &mut PgConnection,
    schema: &Schema,
    id: &str,
) -> Result<Option<AssetNow>> {
    let row: Option<(String, Option<String>)> = sqlx::query_as(&format!(
        "SELECT \"ownerId\"::text, \"originalPath\" FROM {} WHERE id = $1::uuid",
        q(schema.asset_table)
    ))
    .bind(id)
    .fetch_optional(&mut *conn)
    .await
    .map_err(Error::query("reading an asset row"))?;
    Ok(row.map(|(owner_id, original)| AssetNow {
        id: id.to_string(),
        owner_id,
        original: original.filter(|p| !p.is_empty()),
    }))
}

/// The rows of `kind` the asset holds now: (path, edited, the change that would clear it).
async fn rows_now(
    conn: &mut PgConnection,
    schema: &Schema,
    asset: &str,
    kind: FileKind,
    slot: Slot,
) -> Result<Vec<(String, bool, QueueChange)>> {
    let mut out = Vec::new();
    match slot {
        Slot::AssetFile(table, file_type) => {
            let rows: Vec<(String, serde_json::Value)> =
                sqlx::query_as(&asset_file_rows_sql(table))
                    .bind(asset)
                    .bind(file_type)
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(Error::query("reading the asset_file rows"))?;
            for (row_id, row) in rows {
                let Some(path) = row.get("path").and_then(|p| p.as_str()).map(str::to_string)
                else {
                    continue;
                };
                let edited = row.get("isEdited").and_then(|e| e.as_bool()) == Some(true);
                let cascaded = cascaded_rows(conn, &q(table), &row, false).await?;
                out.push((
                    path,
                    edited,
                    QueueChange::DeleteAssetFile {
                        file: kind,
                        row_id,
                        row,
                        cascaded,
                    },
                ));
            }
        }
        Slot::Column(col, blank) => {
            let cur: Option<Option<String>> = sqlx::query_scalar(&column_sql(schema, col))
                .bind(asset)
                .fetch_optional(&mut *conn)
                .await
                .map_err(Error::query("reading a path column"))?;
            if let Some(old) = cur.flatten().filter(|p| !p.is_empty()) {
                out.push((
                    old.clone(),
                    false,
                    QueueChange::BlankColumn {
                        file: kind,
                        old,
                        blank: blank.map(str::to_string),
                    },
                ));
            }
        }
    }
    Ok(out)
}

async fn plan_on(
    conn: &mut PgConnection,
    schema: &Schema,
    job_status: bool,
    targets: &[Target],
    recheck: &mut Recheck,
) -> Result<QueuePlan> {
    let mut plan = QueuePlan::default();
    let mut thumbhash_done: HashSet<String> = HashSet::new();
    let mut status_done: HashSet<String> = HashSet::new();
    let mut queues: BTreeSet<&'static str> = BTreeSet::new();
    // (asset, kind) in first-seen order, with the targets that name it.
    let mut index: HashMap<(String, FileKind), usize> = HashMap::new();
    let mut groups: Vec<(String, FileKind, Vec<&Target>)> = Vec::new();
    for t in targets {
        let key = (t.asset_id.clone(), t.file);
        let i = *index.entry(key).or_insert_with(|| {
            groups.push((t.asset_id.clone(), t.file, Vec::new()));
            groups.len() - 1
        });
        groups[i].2.push(t);
    }
    for (asset_id, kind, named) in groups {
        let skip_all = |plan: &mut QueuePlan, why: &str| {
            for t in &named {
                plan.skipped.push(((*t).clone(), why.to_string()));
            }
        };
        let (Some(job), Some(slot)) = (JobName::for_kind(kind), slot(schema, kind)) else {
            skip_all(
                &mut plan,
                &format!("schema {} has no {kind} Immich rebuilds", schema.label),
            );
            continue;
        };
        let Some(asset) = asset_now(conn, schema, &asset_id).await? else {
            skip_all(&mut plan, "no such asset now (deleted since the scan?)");
            continue;
        };
        let rows = match rows_now(conn, schema, &asset_id, kind, slot).await {
            Ok(rows) => rows,
            // One row that does not read (a path that is not UTF-8 in a SQL_ASCII database)
            // is that row's problem, not the run's.
            Err(Error::Query { source, .. }) if !is_connection_lost(&source) => {
                skip_all(
                    &mut plan,
                    &format!(
                        "cannot read its {kind} rows ({}); a path that is not UTF-8 must be \
                         corrected by hand",
                        server_message(&source)
                    ),
                );
                continue;
            }
            Err(e) => return Err(e),
        };
        if rows.is_empty() {
            skip_all(&mut plan, &format!("the asset holds no {kind} path now"));
            continue;
        }
        let depth: Level = named
            .iter()
            .map(|t| depth_of(t.fault))
            .max()
            .unwrap_or(Level::Exists);
        let mut planned = false;
        let mut refused = Vec::new();
        for (path, edited, change) in rows {
            match recheck.broken(&asset, kind, &path, edited, depth) {
                Ok(_) => {
                    plan.depths
                        .insert((asset_id.clone(), kind, path.clone()), depth);
                    plan.steps.push(QueueStep {
                        asset_id: asset_id.clone(),
                        change,
                    });
                    planned = true;
                }
                Err(why) => refused.push((path, why)),
            }
        }
        for (path, why) in refused {
            let by_path = named.iter().find(|t| t.db_path.as_deref() == Some(&path));
            if planned && by_path.is_none() {
                continue; // a healthy sibling (an edited rendition) no target named
            }
            let t = by_path.unwrap_or(&named[0]);
            let shown = Target {
                db_path: Some(path),
                host_path: None,
                owner_id: asset.owner_id.clone(),
                ..(*t).clone()
            };
            plan.skipped.push((shown, why));
        }
        if !planned {
            continue;
        }
        queues.insert(job.queue());
        let image_derivative = matches!(
            kind,
            FileKind::Preview | FileKind::Thumbnail | FileKind::Fullsize
        );
        if image_derivative && thumbhash_done.insert(asset_id.clone()) {
            let hash: Option<Option<String>> = sqlx::query_scalar(&thumbhash_sql(schema))
                .bind(&asset_id)
                .fetch_optional(&mut *conn)
                .await
                .map_err(Error::query("reading thumbhash"))?;
            if let Some(old_hex) = hash.flatten() {
                plan.steps.push(QueueStep {
                    asset_id: asset_id.clone(),
                    change: QueueChange::ClearThumbhash { old_hex },
                });
            }
        }
        if kind == FileKind::Sidecar && job_status && status_done.insert(asset_id.clone()) {
            let old: Option<Option<serde_json::Value>> = sqlx::query_scalar(
                "SELECT to_jsonb(\"metadataExtractedAt\") FROM asset_job_status \
                 WHERE \"assetId\" = $1::uuid",
            )
            .bind(&asset_id)
            .fetch_optional(&mut *conn)
            .await
            .map_err(Error::query("reading asset_job_status"))?;
            if let Some(old) = old.flatten().filter(|v| !v.is_null()) {
                plan.steps.push(QueueStep {
                    asset_id: asset_id.clone(),
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
