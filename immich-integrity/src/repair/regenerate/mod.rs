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
//!   A target only selects (asset, file kind): [`plan_queue`] reads the rows and checks each
//!   file itself, as deep as the claimed fault needs ([`depth_of`]), and [`apply_queue`]
//!   checks it once more right before its row changes. SIGINT/SIGTERM cancels even a
//!   statement blocked on a row lock and rolls its batch back.
//!
//! Nothing is sent and nothing is written unless the caller asks ([`run_api`] / [`apply_queue`]);
//! planning ([`plan_batches`], [`plan_queue`]) only reads.

mod apply;
mod plan;
mod queue_changes;
mod recheck;
mod via_api;
mod via_queue;

pub use apply::apply_queue;
pub use plan::plan_queue;
pub(crate) use queue_changes::statements;
pub use queue_changes::{QueueChange, QueueStep};
pub use recheck::depth_of;
pub use via_api::{
    load_state, plan_batches, run_api, ApiReport, ApiRun, Batch, BatchResult, BatchStatus, Keys,
    OwnerTally, StateLine,
};
pub(crate) use via_queue::committed_queue_steps;
pub use via_queue::{is_queue_journal, undo_queue, QueueJournal, QueuePlan, QueueReport};

use crate::db::schema::{q, Schema};
use crate::error::{Error, Result};
use crate::model::{Fault, FileKind, Finding, Repair};
pub use crate::repair::cascade::CascadedRow;
use crate::repair::journal;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use std::path::Path;

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

/// The targets among the rows a saved JSONL report (`scan --format jsonl`) names. The report
/// only selects rows: they are checked again now with `opts`, and a target is made only of a
/// file this check itself finds broken, with the paths it saw (the report's paths are never
/// used). Returns the targets and the new check's summary.
pub fn targets_from_report(
    path: &Path,
    purpose: Purpose,
    opts: &crate::ScanOptions,
) -> Result<(Vec<Target>, crate::Summary)> {
    let sel =
        crate::repair::saved_report::read_selection(path, &|f| f.repair == Repair::Regenerate)?;
    let mut findings: Vec<Finding> = Vec::new();
    let summary = crate::scan(opts, &mut findings)?;
    findings.retain(|f| sel.selects(f));
    Ok((targets(&findings, purpose), summary))
}

/// The rows a saved JSONL report (`scan --format jsonl`) names for this purpose, as targets
/// that only *select*: [`plan_queue`] takes the asset id, the file kind and how deep the
/// claimed fault needs a check to look ([`depth_of`]) from each, and checks the rows itself;
/// nothing else of the report is used. A file with lines of which none is a finding or a
/// summary is not a report, and an error.
pub fn selectors_from_report(path: &Path, purpose: Purpose) -> Result<Vec<Target>> {
    use std::io::BufRead;
    let io = |e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let (mut out, mut lines, mut report_lines) = (Vec::new(), 0u64, 0u64);
    for line in std::io::BufReader::new(file).lines() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        lines += 1;
        let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if value.get("summary").is_some() {
            report_lines += 1;
            continue;
        }
        let Ok(f) = serde_json::from_value::<Finding>(value) else {
            continue;
        };
        report_lines += 1;
        out.extend(targets(std::slice::from_ref(&f), purpose));
    }
    if lines > 0 && report_lines == 0 {
        return Err(Error::InvalidArgument(format!(
            "{} is not a `scan --format jsonl` report: none of its {lines} lines is a finding",
            path.display()
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

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
