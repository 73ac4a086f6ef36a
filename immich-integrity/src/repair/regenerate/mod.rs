//! Regenerate: have Immich rebuild broken derivatives (preview, thumbnail, fullsize, encoded
//! video) and re-read metadata for broken sidecars.
//!
//! Two strategies:
//! - **api** ([`run_api`]): `POST /api/assets/jobs` per owner (Immich only lets an asset's owner
//!   queue its jobs), in batches, with retries. A state file (JSON Lines, fsync'd) records every
//!   accepted batch so a rerun never queues the same asset for the same job twice. A batch
//!   refused with 400 (an id the key's user does not own, or that no longer exists) is split in
//!   halves until the refused ids are isolated, so the others still get queued.
//! - **queue** ([`apply_queue`]): Immich's "Missing" mode looks only at the database, so make
//!   the database say what the disk says: journal first (fsync'd), then in one transaction per
//!   batch clear `thumbhash` and delete the broken derivative's `asset_file` row (or blank the
//!   path column on schemas before `asset_files`), then `PUT /api/jobs/{queue}` with
//!   `{"command":"start","force":false}` with one admin key. [`undo_queue`] restores the rows.
//!
//! Nothing is sent and nothing is written unless the caller asks ([`run_api`] / [`apply_queue`]);
//! planning ([`plan_batches`], [`plan_queue`]) only reads.

use crate::db::conn::{connect, read_info};
use crate::db::runtime::runtime;
use crate::db::schema::{q, Schema};
use crate::error::{Error, Result};
use crate::model::{Fault, FileKind, Finding, Repair};
use crate::repair::api::{ApiKey, Client, Outcome};
pub use crate::repair::cascade::CascadedRow;
use crate::repair::cascade::{cascaded_rows, restore, triggers};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Which repairs a run is about: `regenerate` (derivatives) or `refresh-metadata` (sidecars).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Rebuild previews, thumbnails, full-size images and encoded videos.
    Derivatives,
    /// Re-read metadata to rewrite sidecars.
    Metadata,
}

/// Immich's per-asset job names (`AssetJobName`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobName {
    /// Rebuilds preview, thumbnail and full-size image (`regenerate-thumbnail`).
    RegenerateThumbnail,
    /// Re-encodes the video (`transcode-video`).
    TranscodeVideo,
    /// Re-extracts metadata, rewriting the sidecar (`refresh-metadata`).
    RefreshMetadata,
}

impl JobName {
    /// The name Immich's API uses (`regenerate-thumbnail`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            JobName::RegenerateThumbnail => "regenerate-thumbnail",
            JobName::TranscodeVideo => "transcode-video",
            JobName::RefreshMetadata => "refresh-metadata",
        }
    }

    /// The whole queue that rebuilds the same thing in "Missing" mode.
    pub fn queue(self) -> &'static str {
        match self {
            JobName::RegenerateThumbnail => "thumbnailGeneration",
            JobName::TranscodeVideo => "videoConversion",
            JobName::RefreshMetadata => "metadataExtraction",
        }
    }

    /// The job that rebuilds a file kind, if any.
    pub fn for_kind(kind: FileKind) -> Option<JobName> {
        match kind {
            FileKind::Preview | FileKind::Thumbnail | FileKind::Fullsize => {
                Some(JobName::RegenerateThumbnail)
            }
            FileKind::EncodedVideo => Some(JobName::TranscodeVideo),
            FileKind::Sidecar => Some(JobName::RefreshMetadata),
            _ => None,
        }
    }
}

impl std::fmt::Display for JobName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One broken file Immich can rebuild.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// The asset the broken file belongs to.
    pub asset_id: String,
    /// The asset's owner: only their API key may queue its jobs.
    pub owner_id: String,
    /// Which derivative or sidecar is broken.
    pub file: FileKind,
    /// The job that rebuilds it.
    pub job: JobName,
    /// The path the row held when the scan saw the file broken.
    pub db_path: Option<String>,
    /// Where the scan looked on this host, and what it saw there.
    #[serde(default)]
    pub host_path: Option<String>,
    /// What the scan found wrong (`missing` when a saved report lacks it).
    #[serde(default = "missing_fault")]
    pub fault: Fault,
}

fn missing_fault() -> Fault {
    Fault::Missing
}

impl Target {
    /// For a file the scan saw missing or empty: is it now a non-empty regular file (put back,
    /// or rebuilt by Immich since)? Then there is nothing to clear.
    pub fn is_back(&self) -> bool {
        matches!(self.fault, Fault::Missing | Fault::Empty | Fault::NotAFile)
            && self.host_path.as_ref().is_some_and(|p| {
                std::fs::symlink_metadata(p).is_ok_and(|m| m.is_file() && m.len() > 0)
            })
    }
}

/// Findings this purpose repairs: repair `regenerate` and a file kind with an asset job
/// (derivatives for [`Purpose::Derivatives`], sidecars for [`Purpose::Metadata`]).
pub fn targets(findings: &[Finding], purpose: Purpose) -> Vec<Target> {
    findings
        .iter()
        .filter(|f| f.repair == Repair::Regenerate)
        .filter_map(|f| {
            let file = f.file?;
            let wanted = match purpose {
                Purpose::Derivatives => file.is_derivative(),
                Purpose::Metadata => file == FileKind::Sidecar,
            };
            if !wanted {
                return None;
            }
            Some(Target {
                asset_id: f.asset_id.clone()?,
                owner_id: f.owner_id.clone()?,
                file,
                job: JobName::for_kind(file)?,
                db_path: f.db_path.clone(),
                host_path: f.host_path.clone(),
                fault: f.fault,
            })
        })
        .collect()
}

/// Reads findings from a saved JSONL report (`scan --format jsonl`).
pub fn targets_from_report(path: &Path, purpose: Purpose) -> Result<Vec<Target>> {
    let findings = crate::repair::saved_report::read_findings(path)?;
    Ok(targets(&findings, purpose))
}

/// Asset ids of one owner for one job, sent in one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// The owner whose key sends the request.
    pub owner_id: String,
    /// The job to queue.
    pub job: JobName,
    /// The assets to queue it for (sorted, each once).
    pub asset_ids: Vec<String>,
}

impl Batch {
    /// The request body this batch becomes.
    pub fn body(&self) -> String {
        crate::repair::api::asset_jobs_body(self.job.as_str(), &self.asset_ids)
    }
}

/// Groups targets per owner and job (each asset once), sorted, cut into batches of at most
/// `batch_size` ids. Ids in `done` (already accepted for that job) are left out.
pub fn plan_batches(
    targets: &[Target],
    batch_size: usize,
    done: &HashSet<(JobName, String)>,
) -> Vec<Batch> {
    let mut groups: BTreeMap<(String, JobName), BTreeSet<String>> = BTreeMap::new();
    for t in targets {
        if done.contains(&(t.job, t.asset_id.clone())) {
            continue;
        }
        groups
            .entry((t.owner_id.clone(), t.job))
            .or_default()
            .insert(t.asset_id.clone());
    }
    let mut out = Vec::new();
    for ((owner_id, job), ids) in groups {
        let ids: Vec<String> = ids.into_iter().collect();
        for chunk in ids.chunks(batch_size.max(1)) {
            out.push(Batch {
                owner_id: owner_id.clone(),
                job,
                asset_ids: chunk.to_vec(),
            });
        }
    }
    out
}

/// API keys: one per owner, and optionally one used for every other owner.
#[derive(Debug, Clone, Default)]
pub struct Keys {
    /// Keys by owner id (lower-case uuid).
    pub per_owner: HashMap<String, ApiKey>,
    /// The key for owners without their own (also the admin key of queue mode).
    pub fallback: Option<ApiKey>,
}

impl Keys {
    /// The owner's own key, else the fallback key, else `None`.
    pub fn for_owner(&self, owner: &str) -> Option<&ApiKey> {
        self.per_owner.get(owner).or(self.fallback.as_ref())
    }

    /// Adds `OWNER_ID=KEY`. The error never repeats the key.
    pub fn add_pair(&mut self, pair: &str) -> Result<()> {
        let (owner, key) = pair.split_once('=').ok_or_else(|| {
            Error::InvalidArgument("an owner key wants OWNER_ID=KEY (no '=' found)".into())
        })?;
        let owner = owner.trim();
        if uuid::Uuid::parse_str(owner).is_err() {
            return Err(Error::InvalidArgument(format!(
                "an owner key's OWNER_ID {owner:?} is not a uuid"
            )));
        }
        self.per_owner
            .insert(owner.to_ascii_lowercase(), ApiKey::new(key)?);
        Ok(())
    }

    /// Reads `OWNER_ID=KEY` lines (blank lines and `#` comments ignored).
    pub fn add_file(&mut self, path: &Path) -> Result<()> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            self.add_pair(line).map_err(|e| {
                Error::InvalidArgument(format!("{} line {}: {e}", path.display(), n + 1))
            })?;
        }
        Ok(())
    }
}

/// One line of the state file: a batch Immich accepted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateLine {
    /// The owner whose key sent the batch.
    pub owner_id: String,
    /// The job queued.
    pub job: JobName,
    /// The assets it was queued for.
    pub asset_ids: Vec<String>,
    /// The server's base URL (see [`Client::base`]).
    pub server: String,
    /// Seconds since the Unix epoch.
    pub accepted_at: String,
}

/// (job, asset id) pairs already accepted according to a state file (missing file = none), by
/// `server` when given (a state file reused against another server does not hide its assets).
/// A torn last line (crash mid-write) is ignored: that batch was not recorded as accepted.
pub fn load_state(path: &Path, server: Option<&str>) -> Result<HashSet<(JobName, String)>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashSet::new()),
        Err(e) => {
            return Err(Error::Io {
                path: path.to_path_buf(),
                source: e,
            })
        }
    };
    let mut done = HashSet::new();
    for line in text.lines() {
        if let Ok(s) = serde_json::from_str::<StateLine>(line) {
            if server.is_some_and(|want| want != s.server) {
                continue;
            }
            for id in s.asset_ids {
                done.insert((s.job, id));
            }
        }
    }
    Ok(done)
}

fn append_synced(file: &mut std::fs::File, path: &Path, lines: &[String]) -> Result<()> {
    let io = |e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let mut buf = Vec::new();
    for l in lines {
        buf.extend_from_slice(l.as_bytes());
        buf.push(b'\n');
    }
    file.write_all(&buf).map_err(io)?;
    file.sync_data().map_err(io)
}

fn open_append(path: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| Error::Io {
            path: path.to_path_buf(),
            source: e,
        })
}

/// What became of one request (a batch, or a half of a refused one).
#[derive(Debug, Clone, Serialize)]
pub struct BatchResult {
    /// The owner the request was for.
    pub owner_id: String,
    /// The job requested.
    pub job: JobName,
    /// The ids in this request.
    pub asset_ids: Vec<String>,
    /// How it ended.
    #[serde(flatten)]
    pub status: BatchStatus,
}

/// How one request ended.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum BatchStatus {
    /// Immich accepted the job request.
    Accepted {
        /// Requests sent, including the accepted one.
        attempts: u32,
    },
    /// Refused or still failing after every retry.
    Failed {
        /// The refusal's HTTP status; `None` when no answer came (or only 429/5xx ones).
        http_status: Option<u16>,
        /// What went wrong, in words.
        reason: String,
    },
    /// Not sent: the owner has no key, the owner's key was refused (401/403) on an earlier
    /// batch, or the run was interrupted.
    Skipped {
        /// Which of those it was.
        reason: String,
    },
}

/// Per owner: how many batches (requests) were accepted, failed or skipped, and ids.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OwnerTally {
    /// Requests Immich accepted.
    pub batches_accepted: u64,
    /// Requests refused or given up on.
    pub batches_failed: u64,
    /// Requests not sent.
    pub batches_skipped: u64,
    /// Asset ids in accepted requests.
    pub assets_accepted: u64,
    /// Asset ids in failed requests.
    pub assets_failed: u64,
    /// Asset ids in requests not sent.
    pub assets_skipped: u64,
}

/// The final report of an API run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ApiReport {
    /// The server's base URL.
    pub server: String,
    /// Every request (and skipped batch), in the order handled.
    pub results: Vec<BatchResult>,
    /// Tallies by owner id.
    pub owners: BTreeMap<String, OwnerTally>,
    /// Owners with targets but no key (their assets were not sent).
    pub owners_without_key: Vec<String>,
    /// Assets left out because the state file says they were already queued.
    pub already_queued: u64,
    /// The run stopped on SIGINT/SIGTERM; later batches were not sent.
    pub interrupted: bool,
}

impl ApiReport {
    /// True when the run was not interrupted and every request was accepted.
    pub fn all_accepted(&self) -> bool {
        !self.interrupted
            && self
                .results
                .iter()
                .all(|r| matches!(r.status, BatchStatus::Accepted { .. }))
    }

    fn push(&mut self, r: BatchResult) {
        let t = self.owners.entry(r.owner_id.clone()).or_default();
        let n = r.asset_ids.len() as u64;
        match r.status {
            BatchStatus::Accepted { .. } => {
                t.batches_accepted += 1;
                t.assets_accepted += n;
            }
            BatchStatus::Failed { .. } => {
                t.batches_failed += 1;
                t.assets_failed += n;
            }
            BatchStatus::Skipped { .. } => {
                t.batches_skipped += 1;
                t.assets_skipped += n;
            }
        }
        self.results.push(r);
    }
}

/// Settings of an API run.
pub struct ApiRun<'a> {
    /// The server to send to.
    pub client: &'a Client,
    /// The key for each owner.
    pub keys: &'a Keys,
    /// Accepted batches are appended here (and read back to skip them on a rerun).
    pub state: Option<&'a Path>,
    /// Once set, no further batch is sent (the report says `interrupted`).
    pub cancel: Option<Arc<AtomicBool>>,
    /// Called after each request with its result (for progress lines).
    pub on_result: Option<&'a mut dyn FnMut(&BatchResult)>,
}

/// Sends `batches` (already planned without the ids the state file holds); `already_queued`
/// is only carried into the report.
pub fn run_api(run: ApiRun<'_>, batches: &[Batch], already_queued: u64) -> Result<ApiReport> {
    let ApiRun {
        client,
        keys,
        state,
        cancel,
        mut on_result,
    } = run;
    let mut state_file = match state {
        Some(p) => Some((open_append(p)?, p)),
        None => None,
    };
    let mut report = ApiReport {
        server: client.base().to_string(),
        already_queued,
        ..Default::default()
    };
    let mut refused_keys: HashMap<String, String> = HashMap::new();
    let mut no_key: BTreeSet<String> = BTreeSet::new();
    let cancelled = || cancel.as_ref().is_some_and(|c| c.load(Ordering::Relaxed));
    let mut emit = |report: &mut ApiReport, r: BatchResult| {
        if let Some(cb) = on_result.as_mut() {
            cb(&r);
        }
        report.push(r);
    };
    for batch in batches {
        let skip = |reason: String| BatchResult {
            owner_id: batch.owner_id.clone(),
            job: batch.job,
            asset_ids: batch.asset_ids.clone(),
            status: BatchStatus::Skipped { reason },
        };
        if report.interrupted || cancelled() {
            report.interrupted = true;
            emit(&mut report, skip("interrupted before it was sent".into()));
            continue;
        }
        let Some(key) = keys.for_owner(&batch.owner_id) else {
            no_key.insert(batch.owner_id.clone());
            emit(&mut report, skip("no API key for this owner".into()));
            continue;
        };
        if let Some(why) = refused_keys.get(&batch.owner_id) {
            emit(
                &mut report,
                skip(format!("not sent: this owner's key was refused ({why})")),
            );
            continue;
        }
        // A refused batch is split in halves until the refused ids are isolated.
        let mut pending = vec![batch.asset_ids.clone()];
        while let Some(ids) = pending.pop() {
            let result = |status| BatchResult {
                owner_id: batch.owner_id.clone(),
                job: batch.job,
                asset_ids: ids.clone(),
                status,
            };
            if report.interrupted {
                emit(
                    &mut report,
                    result(BatchStatus::Skipped {
                        reason: "interrupted before it was sent".into(),
                    }),
                );
                continue;
            }
            match client.asset_jobs(key, batch.job.as_str(), &ids) {
                Outcome::Accepted { attempts, .. } => {
                    if let Some((file, path)) = state_file.as_mut() {
                        let line = StateLine {
                            owner_id: batch.owner_id.clone(),
                            job: batch.job,
                            asset_ids: ids.clone(),
                            server: client.base().to_string(),
                            accepted_at: epoch_seconds(),
                        };
                        let line = serde_json::to_string(&line).expect("plain data serialises");
                        append_synced(file, path, &[line]).map_err(|e| {
                            Error::InvalidArgument(format!(
                                "Immich accepted a batch of {} assets of owner {} but it could not \
                                 be recorded in the state file; stopped so a rerun cannot miss it \
                                 by more than this batch: {e}",
                                ids.len(),
                                batch.owner_id
                            ))
                        })?;
                    }
                    emit(&mut report, result(BatchStatus::Accepted { attempts }));
                }
                Outcome::Rejected { status: 400, .. } if ids.len() > 1 => {
                    let (a, b) = ids.split_at(ids.len() / 2);
                    // Depth-first, first half first.
                    pending.push(b.to_vec());
                    pending.push(a.to_vec());
                }
                Outcome::Rejected {
                    status, message, ..
                } => {
                    if status == 401 || status == 403 {
                        refused_keys.insert(batch.owner_id.clone(), format!("{status}: {message}"));
                        let explain = if status == 401 {
                            "the API key was not accepted (401)"
                        } else {
                            "the API key lacks the permission (403; it needs job.create, or all before v2.5)"
                        };
                        emit(
                            &mut report,
                            result(BatchStatus::Failed {
                                http_status: Some(status),
                                reason: format!("{explain}: {message}"),
                            }),
                        );
                        // The rest of this batch cannot succeed with this key either.
                        while let Some(rest) = pending.pop() {
                            emit(
                                &mut report,
                                BatchResult {
                                    owner_id: batch.owner_id.clone(),
                                    job: batch.job,
                                    asset_ids: rest,
                                    status: BatchStatus::Skipped {
                                        reason: format!(
                                            "not sent: this owner's key was refused ({status})"
                                        ),
                                    },
                                },
                            );
                        }
                    } else {
                        let reason = if status == 400 {
                            format!(
                                "refused (400: {message}); Immich lets only an asset's owner \
                                 queue its jobs, or the asset no longer exists"
                            )
                        } else {
                            format!("refused ({status}: {message})")
                        };
                        emit(
                            &mut report,
                            result(BatchStatus::Failed {
                                http_status: Some(status),
                                reason,
                            }),
                        );
                    }
                }
                Outcome::GaveUp { reason, attempts } => emit(
                    &mut report,
                    result(BatchStatus::Failed {
                        http_status: None,
                        reason: format!("gave up after {attempts} attempts: {reason}"),
                    }),
                ),
                Outcome::Interrupted { .. } => {
                    report.interrupted = true;
                    emit(
                        &mut report,
                        result(BatchStatus::Skipped {
                            reason: "interrupted before it was accepted".into(),
                        }),
                    );
                }
            }
        }
    }
    report.owners_without_key = no_key.into_iter().collect();
    Ok(report)
}

/// Seconds since the Unix epoch, as text (enough to order state lines).
fn epoch_seconds() -> String {
    let s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{s}")
}

// ---------------------------------------------------------------------------------------------
// --via queue: make the database say the derivative is missing, then start the queue.

/// One database change of queue mode, with what undo needs to restore it. Table and column
/// names are not stored: undo takes them from the detected schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum QueueChange {
    /// The derivative's `asset_file(s)` row, deleted; `row` is the whole row (`to_jsonb`).
    DeleteAssetFile {
        /// Which derivative the row is.
        file: FileKind,
        /// The `asset_file(s)` row's id.
        row_id: String,
        /// The whole row as JSON, re-inserted by undo.
        row: serde_json::Value,
        /// Rows the delete removes through `ON DELETE CASCADE` foreign keys (on v3 the
        /// `integrity_report` rows that point at it), re-inserted by undo after the row.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        cascaded: Vec<CascadedRow>,
    },
    /// A path column on the asset table (schemas before `asset_files`, or
    /// `encodedVideoPath` / `sidecarPath` before they moved), set to `blank`.
    BlankColumn {
        /// Which file kind the column holds.
        file: FileKind,
        /// The path the column held.
        old: String,
        /// What it was set to: `None` for NULL, or the empty value the column uses (`""`).
        blank: Option<String>,
    },
    /// `thumbhash` set to NULL (old value in hex).
    ClearThumbhash {
        /// The previous thumbhash, hex-encoded.
        old_hex: String,
    },
    /// `asset_job_status.metadataExtractedAt` set to NULL (old value as JSON text).
    ClearMetadataExtractedAt {
        /// The previous timestamp, as JSON.
        old: serde_json::Value,
    },
}

/// One planned queue-mode change to one asset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueStep {
    /// The asset whose rows change.
    pub asset_id: String,
    /// The change.
    #[serde(flatten)]
    pub change: QueueChange,
}

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

/// Does `asset_job_status.metadataExtractedAt` exist?
async fn has_job_status(conn: &mut PgConnection) -> Result<bool> {
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public' \
         AND table_name = 'asset_job_status' AND column_name = 'metadataExtractedAt'",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(Error::query("looking for asset_job_status"))?;
    Ok(n > 0)
}

/// Where a kind's path lives: an `asset_file(s)` type, or an asset column and its blank value.
enum Slot {
    AssetFile(&'static str, &'static str),
    Column(&'static str, Option<&'static str>),
}

fn slot(schema: &Schema, kind: FileKind) -> Option<Slot> {
    let af = |t| schema.asset_file_table.map(|tbl| Slot::AssetFile(tbl, t));
    match kind {
        FileKind::Preview => match schema.preview_columns {
            Some((p, _)) => Some(Slot::Column(p, None)),
            None => af("preview"),
        },
        FileKind::Thumbnail => match schema.preview_columns {
            Some((_, t)) => Some(Slot::Column(t, Some(""))),
            None => af("thumbnail"),
        },
        FileKind::Fullsize => af("fullsize"),
        FileKind::EncodedVideo if schema.has_encoded_video_column => {
            Some(Slot::Column("encodedVideoPath", Some("")))
        }
        FileKind::EncodedVideo => af("encoded_video"),
        FileKind::Sidecar if schema.has_sidecar_column => Some(Slot::Column("sidecarPath", None)),
        FileKind::Sidecar => af("sidecar"),
        _ => None,
    }
}

/// Every statement queue mode, and its undo, runs against this schema, labelled, for `doctor`
/// to prepare (values are placeholders; nothing runs).
pub(crate) fn statements(schema: &Schema) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let dummy = |change: QueueChange| QueueStep {
        asset_id: String::new(),
        change,
    };
    for kind in FileKind::ALL {
        match slot(schema, kind) {
            Some(Slot::AssetFile(table, _)) => {
                out.push((
                    format!("regenerate: read the {kind} row"),
                    asset_file_row_sql(table),
                ));
                let step = dummy(QueueChange::DeleteAssetFile {
                    file: kind,
                    row_id: String::new(),
                    row: serde_json::Value::Null,
                    cascaded: Vec::new(),
                });
                for undo in [false, true] {
                    if let Some((sql, _)) = change_sql(schema, &step, undo) {
                        let verb = if undo {
                            "undo: re-insert"
                        } else {
                            "regenerate: delete"
                        };
                        out.push((format!("{verb} the {kind} row"), sql));
                    }
                }
            }
            Some(Slot::Column(col, _)) => {
                out.push((
                    format!("regenerate: read the {kind} path"),
                    column_sql(schema, col),
                ));
                let step = dummy(QueueChange::BlankColumn {
                    file: kind,
                    old: String::new(),
                    blank: None,
                });
                for undo in [false, true] {
                    if let Some((sql, _)) = change_sql(schema, &step, undo) {
                        let verb = if undo {
                            "undo: restore"
                        } else {
                            "regenerate: blank"
                        };
                        out.push((format!("{verb} the {kind} path"), sql));
                    }
                }
            }
            None => {}
        }
    }
    out.push(("regenerate: read thumbhash".into(), thumbhash_sql(schema)));
    for undo in [false, true] {
        let step = dummy(QueueChange::ClearThumbhash {
            old_hex: String::new(),
        });
        if let Some((sql, _)) = change_sql(schema, &step, undo) {
            let verb = if undo {
                "undo: restore"
            } else {
                "regenerate: clear"
            };
            out.push((format!("{verb} thumbhash"), sql));
        }
    }
    out
}

fn asset_file_row_sql(table: &str) -> String {
    format!(
        "SELECT id::text, to_jsonb(f) FROM {} f WHERE \"assetId\" = $1::uuid \
         AND type::text = $2 AND path = $3",
        q(table)
    )
}

fn column_sql(schema: &Schema, col: &str) -> String {
    format!(
        "SELECT {}::text FROM {} WHERE id = $1::uuid",
        q(col),
        q(schema.asset_table)
    )
}

fn thumbhash_sql(schema: &Schema) -> String {
    format!(
        "SELECT encode(thumbhash, 'hex') FROM {} WHERE id = $1::uuid",
        q(schema.asset_table)
    )
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

async fn plan_queue_on(
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
async fn side_effects(
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

/// `(sql, binds)` applying a change (forward) or restoring it (undo). Every statement is
/// guarded by the value it expects, so replaying it is harmless.
fn change_sql(
    schema: &Schema,
    step: &QueueStep,
    undo: bool,
) -> Option<(String, Vec<Option<String>>)> {
    let id = Some(step.asset_id.clone());
    let asset = q(schema.asset_table);
    Some(match &step.change {
        QueueChange::DeleteAssetFile {
            file, row_id, row, ..
        } => {
            let Slot::AssetFile(table, _) = slot(schema, *file)? else {
                return None;
            };
            let path = row.get("path").and_then(|p| p.as_str()).map(str::to_string);
            if undo {
                (
                    format!(
                        "INSERT INTO {t} SELECT * FROM jsonb_populate_record(NULL::{t}, $1::jsonb) \
                         WHERE EXISTS (SELECT 1 FROM {asset} WHERE id = $2::uuid) \
                         ON CONFLICT DO NOTHING",
                        t = q(table)
                    ),
                    vec![Some(row.to_string()), id],
                )
            } else {
                (
                    format!(
                        "DELETE FROM {} WHERE id = $1::uuid AND \"assetId\" = $2::uuid AND path = $3",
                        q(table)
                    ),
                    vec![Some(row_id.clone()), id, path],
                )
            }
        }
        QueueChange::BlankColumn { file, old, blank } => {
            let Slot::Column(col, _) = slot(schema, *file)? else {
                return None;
            };
            let (set, expect) = if undo {
                (Some(old.clone()), blank.clone())
            } else {
                (blank.clone(), Some(old.clone()))
            };
            (
                format!(
                    "UPDATE {asset} SET {c} = $1 WHERE id = $2::uuid AND {c} IS NOT DISTINCT FROM $3",
                    c = q(col)
                ),
                vec![set, id, expect],
            )
        }
        QueueChange::ClearThumbhash { old_hex } => {
            if undo {
                (
                    format!(
                        "UPDATE {asset} SET thumbhash = decode($1, 'hex') \
                         WHERE id = $2::uuid AND thumbhash IS NULL"
                    ),
                    vec![Some(old_hex.clone()), id],
                )
            } else {
                (
                    format!(
                        "UPDATE {asset} SET thumbhash = NULL \
                         WHERE id = $2::uuid AND thumbhash = decode($1, 'hex')"
                    ),
                    vec![Some(old_hex.clone()), id],
                )
            }
        }
        QueueChange::ClearMetadataExtractedAt { old } => {
            if undo {
                (
                    "UPDATE asset_job_status SET \"metadataExtractedAt\" = \
                     ($1::jsonb #>> '{}')::timestamptz \
                     WHERE \"assetId\" = $2::uuid AND \"metadataExtractedAt\" IS NULL"
                        .into(),
                    vec![Some(old.to_string()), id],
                )
            } else {
                (
                    "UPDATE asset_job_status SET \"metadataExtractedAt\" = NULL \
                     WHERE \"assetId\" = $2::uuid AND to_jsonb(\"metadataExtractedAt\") = $1::jsonb"
                        .into(),
                    vec![Some(old.to_string()), id],
                )
            }
        }
    })
}

async fn exec(conn: &mut PgConnection, sql: &str, binds: &[Option<String>]) -> Result<u64> {
    let mut query = sqlx::query(sql);
    for b in binds {
        query = query.bind(b.clone());
    }
    Ok(query
        .execute(&mut *conn)
        .await
        .map_err(Error::query("changing a derivative row"))?
        .rows_affected())
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
    let mut journal = open_append(journal_path)?;
    let rt = runtime()?;
    let mut report = QueueReport::default();
    let mut committed: Vec<QueueStep> = Vec::new();
    rt.block_on(async {
        let mut conn = connect(db_url).await?;
        let schema = read_info(&mut conn).await?.schema;
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
            let lines: Vec<String> = chunk
                .iter()
                .map(|s| {
                    serde_json::to_string(&QueueJournal::QueueChange {
                        batch,
                        step: (*s).clone(),
                    })
                    .expect("plain data serialises")
                })
                .collect();
            append_synced(&mut journal, journal_path, &lines)?;
            let mut tx = sqlx::Connection::begin(&mut conn)
                .await
                .map_err(Error::query("starting a transaction"))?;
            for step in chunk {
                let Some((sql, binds)) = change_sql(&schema, step, false) else {
                    report.unchanged += 1;
                    continue;
                };
                if !cascades_unchanged(&mut tx, &schema, step).await? {
                    // The journal holds the rows seen at planning; deleting now would remove
                    // rows it does not hold, which undo could not restore.
                    report.unchanged += 1;
                    continue;
                }
                if exec(&mut tx, &sql, &binds).await? == 1 {
                    report.applied += 1;
                } else {
                    report.unchanged += 1;
                }
            }
            tx.commit()
                .await
                .map_err(Error::query("committing a batch"))?;
            let line = serde_json::to_string(&QueueJournal::QueueCommitted { batch })
                .expect("plain data serialises");
            append_synced(&mut journal, journal_path, &[line])?;
            report.batches += 1;
            committed.extend(chunk.iter().map(|s| (*s).clone()));
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
        if let Outcome::Accepted { status, .. } = outcome {
            let line = serde_json::to_string(&QueueJournal::QueueStarted {
                queue: queue.to_string(),
                status,
            })
            .expect("plain data serialises");
            append_synced(&mut journal, journal_path, &[line])?;
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
            let mut conn = connect(db_url).await?;
            let schema = read_info(&mut conn).await?.schema;
            undo_steps(&mut conn, &schema, &committed).await
        })?;
        report.rolled_back = Some(restored);
    }
    Ok(report)
}

/// For a delete: the rows it would cascade to now (locked) are the ones journaled.
async fn cascades_unchanged(
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

/// Is this a queue-mode journal (as opposed to a relink one)?
pub fn is_queue_journal(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    text.lines()
        .any(|l| serde_json::from_str::<QueueJournal>(l).is_ok())
}

/// Restores every change a queue-mode journal recorded, newest first, in one transaction.
/// Each statement only acts if the row still holds what queue mode left there (a row Immich
/// has since regenerated is left alone), so running it twice is harmless. Returns the rows
/// restored.
pub fn undo_queue(db_url: &str, journal_path: &Path) -> Result<u64> {
    let text = std::fs::read_to_string(journal_path).map_err(|e| Error::Io {
        path: journal_path.to_path_buf(),
        source: e,
    })?;
    let mut steps = Vec::new();
    for line in text.lines() {
        // A torn last line belongs to a batch that never started.
        if let Ok(QueueJournal::QueueChange { step, .. }) = serde_json::from_str(line) {
            steps.push(step);
        }
    }
    let rt = runtime()?;
    rt.block_on(async {
        let mut conn = connect(db_url).await?;
        let schema = read_info(&mut conn).await?.schema;
        undo_steps(&mut conn, &schema, &steps).await
    })
}

/// Restores `steps` (newest first) in one transaction, cascaded rows after their parent.
async fn undo_steps(conn: &mut PgConnection, schema: &Schema, steps: &[QueueStep]) -> Result<u64> {
    let mut tx = sqlx::Connection::begin(&mut *conn)
        .await
        .map_err(Error::query("starting undo"))?;
    let mut restored = 0;
    for step in steps.iter().rev() {
        if let Some((sql, binds)) = change_sql(schema, step, true) {
            restored += exec(&mut tx, &sql, &binds).await?;
        }
        if let QueueChange::DeleteAssetFile {
            file,
            row_id,
            cascaded,
            ..
        } = &step.change
        {
            if let Some(Slot::AssetFile(table, _)) = slot(schema, *file) {
                let back: bool = sqlx::query_scalar(&format!(
                    "SELECT EXISTS (SELECT 1 FROM {} WHERE id = $1::uuid)",
                    q(table)
                ))
                .bind(row_id)
                .fetch_one(&mut *tx)
                .await
                .map_err(Error::query("looking for a restored asset_file row"))?;
                if back && !cascaded.is_empty() {
                    restored += restore(&mut tx, &q(table), cascaded).await?;
                }
            }
        }
    }
    tx.commit().await.map_err(Error::query("committing undo"))?;
    Ok(restored)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(asset: &str, owner: &str, file: FileKind, repair: Repair) -> Finding {
        Finding {
            asset_id: Some(asset.into()),
            owner_id: Some(owner.into()),
            file: Some(file),
            db_path: Some(format!("/data/{asset}-{file}")),
            host_path: None,
            fault: Fault::Missing,
            found_at: None,
            repair,
            detail: String::new(),
            affected: None,
            relink_to: None,
        }
    }

    #[test]
    fn plans_per_owner_and_job_deduplicated() {
        let f = vec![
            finding("a1", "o1", FileKind::Preview, Repair::Regenerate),
            finding("a1", "o1", FileKind::Thumbnail, Repair::Regenerate),
            finding("a2", "o1", FileKind::Thumbnail, Repair::Regenerate),
            finding("a3", "o2", FileKind::EncodedVideo, Repair::Regenerate),
            finding("a4", "o2", FileKind::Original, Repair::RestoreFromBackup),
            finding("a5", "o2", FileKind::Preview, Repair::RestoreFromBackup),
            finding("a6", "o2", FileKind::Sidecar, Repair::Regenerate),
        ];
        let t = targets(&f, Purpose::Derivatives);
        assert_eq!(t.len(), 4);
        let b = plan_batches(&t, 1, &HashSet::new());
        let got: Vec<_> = b
            .iter()
            .map(|b| (b.owner_id.as_str(), b.job, b.asset_ids.join(",")))
            .collect();
        assert_eq!(
            got,
            vec![
                ("o1", JobName::RegenerateThumbnail, "a1".to_string()),
                ("o1", JobName::RegenerateThumbnail, "a2".to_string()),
                ("o2", JobName::TranscodeVideo, "a3".to_string()),
            ]
        );
        let done: HashSet<_> = [(JobName::RegenerateThumbnail, "a1".to_string())].into();
        assert_eq!(plan_batches(&t, 10, &done)[0].asset_ids, vec!["a2"]);
        let m = targets(&f, Purpose::Metadata);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].job, JobName::RefreshMetadata);
    }

    #[test]
    fn a_missing_file_that_is_back_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x_preview.jpeg");
        let mut t = Target {
            asset_id: "a".into(),
            owner_id: "o".into(),
            file: FileKind::Preview,
            job: JobName::RegenerateThumbnail,
            db_path: None,
            host_path: Some(p.to_string_lossy().into_owned()),
            fault: Fault::Missing,
        };
        assert!(!t.is_back());
        std::fs::write(&p, b"").unwrap();
        assert!(!t.is_back(), "empty is still broken");
        std::fs::write(&p, b"jpeg").unwrap();
        assert!(t.is_back());
        t.fault = Fault::Corrupt;
        assert!(!t.is_back(), "a corrupt file being there proves nothing");
    }

    #[test]
    fn key_pairs_are_checked_without_echoing_the_key() {
        let mut k = Keys::default();
        let owner = "7f0b6c1e-0000-4000-8000-000000000001";
        k.add_pair(&format!("{owner}=abcDEF123")).unwrap();
        assert!(k.for_owner(owner).is_some());
        assert!(k.for_owner("other").is_none());
        let e = k.add_pair("nope=SECRETKEY").unwrap_err().to_string();
        assert!(!e.contains("SECRETKEY"), "{e}");
        let e = k.add_pair("SECRETKEY").unwrap_err().to_string();
        assert!(!e.contains("SECRETKEY"), "{e}");
        assert!(!format!("{k:?}").contains("abcDEF123"));
    }
}
