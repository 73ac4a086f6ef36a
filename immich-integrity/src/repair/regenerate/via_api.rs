//! `--via api`: queue each owner's jobs with that owner's key, in batches, with retries, and
//! record every accepted batch in a state file so a rerun never queues an asset twice.

use super::*;
use crate::error::{Error, Result};
use crate::repair::api::{ApiKey, Client, Outcome};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

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
    /// Keys given by the owner's e-mail address, until [`Keys::resolve_emails`] finds the ids.
    pub by_email: Vec<(String, ApiKey)>,
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
        if owner.contains('@') {
            self.by_email
                .push((owner.to_lowercase(), ApiKey::new(key)?));
            return Ok(());
        }
        if uuid::Uuid::parse_str(owner).is_err() {
            return Err(Error::InvalidArgument(format!(
                "an owner key's OWNER {owner:?} is neither a user id (a uuid) nor an e-mail \
                 address"
            )));
        }
        self.per_owner
            .insert(owner.to_ascii_lowercase(), ApiKey::new(key)?);
        Ok(())
    }

    /// Turns the keys given by e-mail address into keys by user id, reading the user table;
    /// an address no user has is an error naming it.
    pub fn resolve_emails(&mut self, db_url: &str) -> Result<()> {
        if self.by_email.is_empty() {
            return Ok(());
        }
        let emails: Vec<String> = self.by_email.iter().map(|(e, _)| e.clone()).collect();
        let found: Vec<(String, uuid::Uuid)> = crate::db::runtime::runtime()?.block_on(async {
            let mut conn = crate::db::conn::connect(db_url).await?;
            let schema = crate::db::schema::Schema::detect(&mut conn).await?;
            let sql = format!(
                "SELECT lower(email), id FROM {} WHERE lower(email) = ANY($1)",
                crate::db::schema::q(schema.user_table)
            );
            sqlx::query_as(&sql)
                .bind(&emails)
                .fetch_all(&mut conn)
                .await
                .map_err(Error::query("resolving owner e-mail addresses"))
        })?;
        for (email, key) in std::mem::take(&mut self.by_email) {
            let id = found
                .iter()
                .find(|(e, _)| *e == email)
                .map(|(_, id)| id.to_string())
                .ok_or_else(|| {
                    Error::InvalidArgument(format!(
                        "no Immich user has the e-mail address {email:?}"
                    ))
                })?;
            self.per_owner.insert(id, key);
        }
        Ok(())
    }

    /// Reads `OWNER=KEY` lines, OWNER an id or an e-mail address (blank lines and `#` comments
    /// ignored).
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
    let mut done = HashSet::new();
    for s in journal::read_if_present::<StateLine>(path)? {
        if server.is_some_and(|want| want != s.server) {
            continue;
        }
        for id in s.asset_ids {
            done.insert((s.job, id));
        }
    }
    Ok(done)
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
        Some(p) => Some(journal::Writer::open(p)?),
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
                    if let Some(state) = state_file.as_mut() {
                        let line = StateLine {
                            owner_id: batch.owner_id.clone(),
                            job: batch.job,
                            asset_ids: ids.clone(),
                            server: client.base().to_string(),
                            accepted_at: epoch_seconds(),
                        };
                        state.append(&[line]).map_err(|e| {
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
pub(super) fn epoch_seconds() -> String {
    let s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{s}")
}
