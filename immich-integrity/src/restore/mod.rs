//! Restore test without restoring: would this database dump and this media backup come back
//! together?
//!
//! The dump stands in for the live database (which is never touched) and the media backup
//! (an rsync copy, a mounted snapshot) for the media root; the scan's own checks run on the
//! pair at any level, and [`crate::orphans`]'s search lists the files no row of the dump
//! references. The report sorts what a restore would show: originals the media backup lacks
//! (with how long before the dump they were created: the gap between the two backups),
//! derivatives Immich would have to regenerate, SHA-1 mismatches (`hash` level), untracked
//! files, the Immich release the dump needs, and whether the dump is complete.
//!
//! Two ways to read the dump ([`Backend`]):
//! - [`Backend::Stream`] (default): no PostgreSQL. The `COPY` blocks of the tables the scan
//!   needs are decoded out of the Immich database's section and spilled to sorted runs on
//!   disk, then merged back in id order; memory is a 32 MiB sort buffer plus a read buffer per
//!   run, not the library's size.
//! - [`Backend::Postgres`]: the dump is loaded into a scratch database on a server the caller
//!   names (Immich's vector extensions need not be installed: what needs them is skipped), the
//!   normal scan runs on it, and the scratch database is dropped.

mod copy;
pub mod dumpfile;
mod scratch;
mod spill;
mod stream;
mod untracked;

use crate::db::source::Source;
use crate::error::{Error, Result};
use crate::model::{Fault, FileKind, Finding, Repair};
use crate::scan::{scan, scan_source, ScanOptions, Summary};
use chrono::{DateTime, Utc};
pub use dumpfile::{DumpName, Ending};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Instant;

/// How the dump is read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// Without PostgreSQL: the dump's `COPY` blocks, spilled and merged on disk.
    Stream,
    /// Loaded into a scratch database on the server of this URL (a maintenance database such
    /// as `postgres://postgres@host/postgres`), scanned, then dropped.
    Postgres(String),
}

/// What to test.
#[derive(Debug, Clone)]
pub struct RestoreOptions {
    /// The scan to run: `media_root` is the media backup, with the level, jobs, maps and
    /// identity of a scan. Its database URL is not used (the dump stands in for it).
    pub scan: ScanOptions,
    /// The dump (`.sql` or `.sql.gz`, from `pg_dumpall` or `pg_dump`); default: the newest
    /// `immich-db-backup-*` in the media backup's `backups/` folder.
    pub dump: Option<PathBuf>,
    /// How to read it.
    pub backend: Backend,
    /// Where the stream backend spills its sorted runs (default `TMPDIR`).
    pub temp_dir: Option<PathBuf>,
}

/// What a restore of the pair would show for one faulty file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestoreFinding {
    /// The scan's finding.
    #[serde(flatten)]
    pub finding: Finding,
    /// `missing_original` (the media backup lacks it), `regenerate` (a derivative Immich
    /// rebuilds from a healthy original), `checksum_mismatch` (the backup's bytes changed) or
    /// `other`.
    pub category: String,
    /// For a missing original: the asset's `createdAt` in the dump.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    /// For a missing original: seconds from its `createdAt` to the dump's time (small: the
    /// asset came shortly before the dump, after the media backup was taken).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_before_dump_s: Option<i64>,
}

/// A file of the media backup no row of the dump references.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UntrackedFile {
    /// Its path.
    pub path: PathBuf,
    /// Relative to the media root.
    pub rel: String,
    /// Bytes.
    pub size: u64,
    /// Its modification time.
    pub modified: Option<DateTime<Utc>>,
    /// Modified after the dump's time: most likely added after the dump was taken.
    pub after_dump: Option<bool>,
}

/// The dump and what it says about itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DumpFacts {
    /// The file.
    pub path: PathBuf,
    /// The Immich database's name in it.
    pub database: String,
    /// Whether it ends as a finished dump.
    pub ending: Ending,
    /// What its file name says (time, Immich and PostgreSQL versions).
    pub name: DumpName,
    /// Its time: from the name, else the file's modification time.
    pub time: Option<DateTime<Utc>>,
    /// The newest `version_history` release: restore with this Immich release (or newer).
    pub immich_version: Option<String>,
    /// `-- Dumped from database version`: the PostgreSQL it came from.
    pub dumped_from_postgres: Option<String>,
}

/// The summary of a restore test.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestoreSummary {
    /// Always `true`: tells the summary from finding lines.
    pub summary: bool,
    /// `stream` or `postgres`.
    pub backend: String,
    /// The dump.
    pub dump: DumpFacts,
    /// The scan of the pair.
    pub scan: Summary,
    /// Originals the media backup lacks.
    pub missing_originals: u64,
    /// Oldest and newest `createdAt` of those.
    pub missing_created: Option<(String, String)>,
    /// Derivatives Immich would regenerate.
    pub regenerate: u64,
    /// Originals whose SHA-1 no longer matches (`hash` level).
    pub checksum_mismatches: u64,
    /// Other findings.
    pub other: u64,
    /// Files no row references.
    pub untracked: u64,
    /// Of those, modified after the dump's time.
    pub untracked_after_dump: u64,
    /// Why no untracked files could be listed (a truncated dump, a part not read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub untracked_not_listed: Option<String>,
    /// Postgres backend: statements of the dump the scratch database refused (their first
    /// words, the server's reason), e.g. Immich's vector extensions and what needs them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped_statements: Vec<(String, String)>,
    /// Postgres backend: statements left out on purpose (ownership, grants, roles, anything
    /// aimed at another database).
    #[serde(default)]
    pub left_out_statements: u64,
    /// Wall time in milliseconds.
    pub elapsed_ms: u64,
}

impl RestoreSummary {
    /// Nothing found, the dump complete, every part checked, every file accounted for.
    pub fn is_clean(&self) -> bool {
        self.dump.ending == Ending::Complete
            && self.scan.is_clean()
            && self.untracked == 0
            && self.untracked_not_listed.is_none()
            && self.scan.completion == crate::scan::Completion::Complete
    }

    /// The report is partial: a truncated dump, a part not read, or an interrupted scan.
    pub fn is_partial(&self) -> bool {
        self.dump.ending != Ending::Complete
            || !self.scan.unchecked.is_empty()
            || self.scan.completion != crate::scan::Completion::Complete
    }
}

/// A whole restore test.
#[derive(Debug, Clone)]
pub struct RestoreReport {
    /// Faulty files, in the scan's order.
    pub findings: Vec<RestoreFinding>,
    /// Untracked files, by path.
    pub untracked: Vec<UntrackedFile>,
    /// The summary.
    pub summary: RestoreSummary,
}

fn category(f: &Finding) -> &'static str {
    if f.fault == Fault::Missing && f.file == Some(FileKind::Original) {
        "missing_original"
    } else if f.repair == Repair::Regenerate {
        "regenerate"
    } else if f.fault == Fault::ChecksumMismatch {
        "checksum_mismatch"
    } else {
        "other"
    }
}

/// A timestamptz as PostgreSQL prints it (`2026-07-26 03:15:00.123+00`).
fn pg_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_str(s.trim(), "%Y-%m-%d %H:%M:%S%.f%#z")
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Runs the restore test (see the module notes).
pub fn run(opts: &RestoreOptions) -> Result<RestoreReport> {
    let started = Instant::now();
    let media = opts.scan.media_root.clone().ok_or_else(|| {
        Error::InvalidArgument(format!(
            "no media backup: set {} to the media backup's folder",
            crate::error::Hint::MediaRoot
        ))
    })?;
    let dump = match &opts.dump {
        Some(d) => d.clone(),
        None => dumpfile::newest_in(&media)?.ok_or_else(|| {
            Error::InvalidArgument(format!(
                "no database backup given and none (immich-db-backup-*.sql.gz) in {}",
                media.join("backups").display()
            ))
        })?,
    };
    let meta = std::fs::metadata(&dump).map_err(|source| Error::Io {
        path: dump.clone(),
        source,
    })?;
    let file_name = dump
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = dumpfile::parse_name(&file_name);
    let time = name
        .time
        .or_else(|| meta.modified().ok().map(DateTime::<Utc>::from));
    let mut scan_opts = opts.scan.clone();
    // The media location comes from the dump (or the flag), never from a live database.
    let (backend, summary, findings, orphans, facts, created, skipped) = match &opts.backend {
        Backend::Stream => {
            let rows = stream::read(&dump, opts.temp_dir.as_deref(), &opts.scan.cancel)?;
            let src = || {
                rows.source(
                    &scan_opts.source.kinds,
                    scan_opts.source.include_trashed,
                    scan_opts.source.batch_size,
                )
            };
            let mut found: Vec<Finding> = Vec::new();
            let summary = scan_source(&scan_opts, src()?, &mut found, Instant::now())?;
            let orphans = if rows.unchecked.is_empty() {
                let mut all = || rows.source(&[], true, scan_opts.source.batch_size);
                Some(untracked::untracked(
                    &scan_opts,
                    &mut all,
                    opts.temp_dir.as_deref(),
                ))
            } else {
                None
            };
            let ids = missing_ids(&found);
            let created = rows.created_at(&ids)?;
            let facts = DumpFacts {
                path: dump.clone(),
                database: rows.database.clone(),
                ending: rows.ending.clone(),
                name,
                time,
                immich_version: rows.info.schema.release.clone(),
                dumped_from_postgres: rows.dumped_from.clone(),
            };
            (
                "stream",
                summary,
                found,
                orphans,
                facts,
                created,
                (Vec::new(), 0u64),
            )
        }
        Backend::Postgres(admin) => {
            let mut s = scratch::Scratch::load(&dump, admin, &opts.scan.cancel)?;
            scan_opts.source.db_url = s.url.clone();
            scan_opts.source.count_total = false;
            let mut found: Vec<Finding> = Vec::new();
            let result = scan(&scan_opts, &mut found);
            let truncated = s.ending != Ending::Complete;
            let result = result.and_then(|summary| {
                let orphans = (!truncated).then(|| {
                    let mut open = || {
                        // Every row: a filter would list its rows' files as untracked.
                        let mut o = crate::SourceOptions::new(scan_opts.source.db_url.clone());
                        o.include_trashed = true;
                        Source::open(o)
                    };
                    untracked::untracked(&scan_opts, &mut open, opts.temp_dir.as_deref())
                });
                let ids = missing_ids(&found);
                let created = scratch_created(&s.url, &summary.schema, &ids)?;
                Ok((summary, orphans, created))
            });
            let release = result
                .as_ref()
                .ok()
                .and_then(|(sm, _, _)| sm.immich_version.clone());
            let facts = DumpFacts {
                path: dump.clone(),
                database: s.database.clone(),
                ending: s.ending.clone(),
                name,
                time,
                immich_version: release,
                dumped_from_postgres: s.dumped_from.clone(),
            };
            let skipped = (std::mem::take(&mut s.skipped), s.left_out);
            s.drop_database()?;
            let (mut summary, orphans, created) = result?;
            if let Ending::Truncated(why) = &s.ending {
                summary.unchecked.push(crate::db::sql::UncheckedPart {
                    part: "dump".into(),
                    reason: format!("{why}; rows after the cut are not in it"),
                });
            }
            ("postgres", summary, found, orphans, facts, created, skipped)
        }
    };
    Ok(assemble(
        backend, summary, findings, orphans, facts, created, skipped, started,
    ))
}

fn missing_ids(found: &[Finding]) -> BTreeSet<String> {
    found
        .iter()
        .filter(|f| category(f) == "missing_original")
        .filter_map(|f| f.asset_id.clone())
        .collect()
}

/// `createdAt` of the given assets in the scratch database.
fn scratch_created(
    url: &str,
    schema_label: &str,
    ids: &BTreeSet<String>,
) -> Result<HashMap<String, String>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let plural = matches!(schema_label, "v1.100-" | "v1.101-v1.112" | "v1.113-v1.135");
    let table = if plural { "assets" } else { "asset" };
    let ids: Vec<uuid::Uuid> = ids.iter().filter_map(|i| i.parse().ok()).collect();
    crate::db::runtime::runtime()?.block_on(async {
        let mut c = crate::db::conn::connect(url).await?;
        let rows: Vec<(String, String)> = sqlx::query_as(&format!(
            "SELECT id::text, \"createdAt\"::text FROM \"{table}\" WHERE id = ANY($1)"
        ))
        .bind(&ids)
        .fetch_all(&mut c)
        .await
        .map_err(Error::query("reading createdAt of the missing assets"))?;
        Ok(rows.into_iter().collect())
    })
}

#[allow(clippy::too_many_arguments)]
fn assemble(
    backend: &str,
    scan: Summary,
    found: Vec<Finding>,
    orphans: Option<Result<Vec<crate::model::Orphan>>>,
    dump: DumpFacts,
    created: HashMap<String, String>,
    (skipped, left_out): (Vec<(String, String)>, u64),
    started: Instant,
) -> RestoreReport {
    let mut findings = Vec::with_capacity(found.len());
    let (mut missing, mut regenerate, mut sums, mut other) = (0, 0, 0, 0);
    let mut span: Option<(String, String)> = None;
    for f in found {
        let cat = category(&f);
        match cat {
            "missing_original" => missing += 1,
            "regenerate" => regenerate += 1,
            "checksum_mismatch" => sums += 1,
            _ => other += 1,
        }
        let created_at = f
            .asset_id
            .as_ref()
            .filter(|_| cat == "missing_original")
            .and_then(|id| created.get(id).cloned());
        let before = match (&created_at, dump.time) {
            (Some(c), Some(t)) => pg_time(c).map(|c| (t - c).num_seconds()),
            _ => None,
        };
        if let Some(c) = &created_at {
            span = Some(match span {
                None => (c.clone(), c.clone()),
                Some((lo, hi)) => {
                    let (a, b) = (pg_time(c), (pg_time(&lo), pg_time(&hi)));
                    (
                        if a < b.0 { c.clone() } else { lo },
                        if a > b.1 { c.clone() } else { hi },
                    )
                }
            });
        }
        findings.push(RestoreFinding {
            finding: f,
            category: cat.to_string(),
            created_at,
            created_before_dump_s: before,
        });
    }
    let (untracked, not_listed) = match orphans {
        Some(Ok(r)) => (
            r.into_iter()
                .map(|o| {
                    let modified = std::fs::symlink_metadata(&o.path)
                        .and_then(|m| m.modified())
                        .ok()
                        .map(DateTime::<Utc>::from);
                    UntrackedFile {
                        after_dump: modified.zip(dump.time).map(|(m, t)| m > t),
                        path: o.path,
                        rel: o.rel,
                        size: o.size,
                        modified,
                    }
                })
                .collect::<Vec<_>>(),
            None,
        ),
        Some(Err(e)) => (Vec::new(), Some(e.to_string())),
        None => (
            Vec::new(),
            Some(
                "the dump is incomplete: files of rows it lacks would be listed as untracked"
                    .into(),
            ),
        ),
    };
    let summary = RestoreSummary {
        summary: true,
        backend: backend.to_string(),
        untracked: untracked.len() as u64,
        untracked_after_dump: untracked
            .iter()
            .filter(|u| u.after_dump == Some(true))
            .count() as u64,
        untracked_not_listed: not_listed,
        dump,
        scan,
        missing_originals: missing,
        missing_created: span,
        regenerate,
        checksum_mismatches: sums,
        other,
        skipped_statements: skipped,
        left_out_statements: left_out,
        elapsed_ms: started.elapsed().as_millis() as u64,
    };
    RestoreReport {
        findings,
        untracked,
        summary,
    }
}
