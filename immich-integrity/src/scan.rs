//! The pipeline: source -> path map -> checker (rayon) -> observer.

use crate::check::coverage::coverage;
pub use crate::check::coverage::Coverage;
use crate::check::engine::{cpu_pool, Batch, Engine};
use crate::check::unreachable::unreachable_findings;
use crate::check::Checker;
use crate::db::conn::SourceInfo;
use crate::db::filters::SourceOptions;
use crate::db::source::{Next, Source};
use crate::db::sql::UncheckedPart;
use crate::error::{Error, Result};
use crate::fs::access::Identity;
use crate::fs::pathmap::PathMap;
use crate::fs::roots::Roots;
use crate::model::{Entity, Fault, Finding, Level, Repair};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Everything a scan needs. Build with [`ScanOptions::new`] and set what you need.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// What to read from the database (connection, filters, paging).
    pub source: SourceOptions,
    /// Host folder that holds Immich's `upload`, `thumbs`, ... folders.
    pub media_root: Option<PathBuf>,
    /// Immich's media location inside the container (`/data`, `/usr/src/app/upload`,
    /// relative `upload`); default: read from the database.
    pub media_location: Option<String>,
    /// `CONTAINER=HOST` pairs.
    pub maps: Vec<(String, PathBuf)>,
    /// Whose read access to evaluate (the uid the Immich server runs as); default: ours.
    pub as_user: Option<Identity>,
    /// How deep to check each file.
    pub level: Level,
    /// Worker threads; 0 = one per core. At most [`MAX_JOBS`]: more is an error.
    pub jobs: usize,
    /// Set to stop the scan at the next batch.
    pub cancel: Arc<AtomicBool>,
    /// A blake3 manifest (see [`crate::manifest`]): at `quick` and deeper, files whose size,
    /// mtime and inode are unchanged since they were last found healthy are not read again.
    pub manifest: Option<PathBuf>,
    /// With `manifest`: read every file anyway and report `bitrot` where the content changed
    /// while size and mtime did not.
    pub verify_manifest: bool,
    /// Where `media_root`, `media_location` and each of `maps` came from, as the caller names
    /// it (`flag`, `.env`, ...), for the report's [`Summary::roots`]; unset ones say `option`.
    pub origins: Origins,
    /// How long one filesystem operation may take before its root counts as unreachable
    /// (a hung share): its remaining files are not checked, the scan goes on with the others.
    pub io_timeout: Duration,
    /// File operations in flight at once; `None` (default): adapt to the storage, between the
    /// cores and `MAX_IN_FLIGHT`.
    pub io_depth: Option<usize>,
    /// At most this many files looked at per second (all levels).
    pub max_files_rate: Option<f64>,
    /// At most this many bytes of file content read per second (`quick` and deeper).
    pub max_read_rate: Option<f64>,
    /// Read with the idle I/O priority class (served only when nobody else uses the disk).
    pub idle_io: bool,
    /// Stop cleanly at the first page boundary after this long ([`Completion::TimeLimit`]).
    /// With [`ScanOptions::manifest`], a time-limited run resumes after the last asset the
    /// previous time-limited run checked, so N runs cover the library (see [`Coverage`]).
    pub time_limit: Option<Duration>,
}

/// Where the roots of [`ScanOptions`] came from (see [`ScanOptions::origins`]).
#[derive(Debug, Clone, Default)]
pub struct Origins {
    /// Of [`ScanOptions::media_root`].
    pub media_root: Option<String>,
    /// Of [`ScanOptions::media_location`].
    pub media_location: Option<String>,
    /// Of each of [`ScanOptions::maps`], by container path.
    pub maps: BTreeMap<String, String>,
}

/// One root a scan used and where it came from (a flag, `.env`, the marker search, the
/// database).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootUsed {
    /// What it is: `media root`, `media location`, or `map CONTAINER` for another folder.
    pub role: String,
    /// Its value: a host folder, or a container path for the media location.
    pub value: String,
    /// Where it came from.
    pub from: String,
}

impl std::fmt::Display for RootUsed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} ({})", self.role, self.value, self.from)
    }
}

impl ScanOptions {
    /// Defaults for `db_url`: `exists` level, no media root yet (set one), all cores.
    pub fn new(db_url: impl Into<String>) -> ScanOptions {
        ScanOptions {
            source: SourceOptions::new(db_url),
            media_root: None,
            media_location: None,
            maps: Vec::new(),
            as_user: None,
            level: Level::Exists,
            jobs: 0,
            cancel: Arc::new(AtomicBool::new(false)),
            manifest: None,
            verify_manifest: false,
            origins: Origins::default(),
            io_timeout: crate::fs::watch::DEFAULT_IO_TIMEOUT,
            io_depth: None,
            max_files_rate: None,
            max_read_rate: None,
            idle_io: false,
            time_limit: None,
        }
    }
}

/// The most worker threads a scan, orphans walk or explain run starts
/// ([`ScanOptions::jobs`]). File checks wait on the disk, not the CPU, so more than this only
/// costs memory (every thread has its stack and read buffers): 30 000 once started 17 500
/// threads and aborted.
pub const MAX_JOBS: usize = 256;

/// Refuses more than [`MAX_JOBS`] worker threads (before anything is opened).
pub(crate) fn check_jobs(jobs: usize) -> Result<()> {
    if jobs > MAX_JOBS {
        return Err(Error::InvalidArgument(format!(
            "{} is at most {MAX_JOBS} worker threads, got {jobs}",
            crate::error::Hint::Jobs
        )));
    }
    Ok(())
}

/// The worker pool of `jobs` threads (0 = one per core), refusing more than [`MAX_JOBS`].
pub(crate) fn worker_pool(jobs: usize, name: &'static str) -> Result<rayon::ThreadPool> {
    check_jobs(jobs)?;
    rayon::ThreadPoolBuilder::new()
        .num_threads(jobs)
        .thread_name(move |i| format!("immich-integrity-{name}-{i}"))
        .build()
        .map_err(|e| Error::InvalidArgument(format!("cannot start worker threads: {e}")))
}

/// How long pages in flight may still finish after SIGINT/SIGTERM before the report is
/// written without them.
const CANCEL_GRACE: Duration = Duration::from_secs(2);

/// Progress after each batch.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Progress {
    /// Rows (assets, persons, users) checked so far.
    pub rows: u64,
    /// Files looked at so far.
    pub files_checked: u64,
    /// File bytes read so far (zero at [`Level::Exists`]).
    pub bytes_read: u64,
    /// Findings so far.
    pub findings: u64,
    /// Rows the scan will check in all, when [`SourceOptions::count_total`] was set.
    #[serde(default)]
    pub total_rows: Option<u64>,
}

/// Receives findings and progress. Called from one thread, in asset-id order.
pub trait Observer {
    /// Called once per finding, in asset-id order within each kind of row.
    fn finding(&mut self, finding: &Finding);
    /// Called after each checked page; the default does nothing.
    fn progress(&mut self, _progress: &Progress) {}
}

/// Collects findings in memory (for tests and small embedders).
impl Observer for Vec<Finding> {
    fn finding(&mut self, finding: &Finding) {
        self.push(finding.clone());
    }
}

/// How a scan ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status", content = "reason")]
pub enum Completion {
    /// Every selected row was checked.
    Complete,
    /// Stopped early through [`ScanOptions::cancel`] (a signal).
    Interrupted,
    /// Stopped early because the database failed mid-scan; the reason.
    Failed(String),
    /// Stopped cleanly at a page boundary when [`ScanOptions::time_limit`] ran out.
    TimeLimit,
}

/// The summary line of a report (README, Findings).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    /// Always `true`: tells the summary line from finding lines in JSON Lines.
    pub summary: bool,
    /// The detected schema generation label (e.g. `v3.2+`).
    pub schema: String,
    /// The Immich server version that last started on this database (`version_history`),
    /// e.g. `3.2.2`; `None` when the database records none.
    #[serde(default)]
    pub immich_version: Option<String>,
    /// Parts of the database that could not be checked because their query does not fit the
    /// schema (a dropped or renamed column), with the server's reason. A report with any is
    /// incomplete and never clean.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unchecked: Vec<UncheckedPart>,
    /// The level checked at.
    pub level: Level,
    /// The container media location used.
    pub media_location: Option<String>,
    /// The roots the scan used (media root, media location, mapped folders) and where each
    /// came from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roots: Vec<RootUsed>,
    /// Rows checked (assets, persons, users).
    pub rows: u64,
    /// Files looked at.
    pub files_checked: u64,
    /// File bytes read.
    pub bytes_read: u64,
    /// Originals not hashed at `--level hash` because their checksum is of the path.
    pub checksums_skipped: u64,
    /// `--level full`: files whose format has no decoder here (XMP, unknown formats, HEIC/AVIF
    /// in a build without `heif`), by format; only their `quick` check ran.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub decode_fallbacks: BTreeMap<String, u64>,
    /// With `--manifest`: files not read because they were unchanged and healthy last time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_hits: Option<u64>,
    /// With `--manifest`: files read although the manifest knew them (changed, not healthy,
    /// checked at a shallower level, or `--verify-manifest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_rereads: Option<u64>,
    /// With `--manifest`: files read that the manifest did not know yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_new: Option<u64>,
    /// Number of findings.
    pub findings: u64,
    /// file kind (or `mount`) -> fault -> count.
    pub counts: BTreeMap<String, BTreeMap<String, u64>>,
    /// Wall time in milliseconds.
    pub elapsed_ms: u64,
    /// Whether the scan finished.
    pub completion: Completion,
    /// Lost database connections the scan reconnected after (`--retries`). Each resume
    /// continues after the last row read, but in a new snapshot: with any, the report is no
    /// longer one consistent state of the database (see `resumes`).
    #[serde(default)]
    pub reconnects: u64,
    /// Why each connection was lost and where the scan resumed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resumes: Vec<String>,
    /// `--level full`: files decoded, by format (`decode_fallbacks` has those that were not).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub decoded: BTreeMap<String, u64>,
    /// Files not checked because their root did not answer (see the `unreachable` findings).
    /// With any, the report is incomplete.
    #[serde(default)]
    pub not_checked: u64,
    /// File operations in flight at the end, and the most at any time (they follow the
    /// storage: see [`ScanOptions::io_depth`]).
    #[serde(default)]
    pub io_depth: (u64, u64),
    /// With a manifest: how far the rolling verification got (see [`Coverage`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<Coverage>,
}

impl Summary {
    /// True when nothing was found and every part of the database was checked.
    pub fn is_clean(&self) -> bool {
        self.findings == 0 && self.unchecked.is_empty() && self.not_checked == 0
    }

    /// True when files or parts of the database were left unchecked (a root that did not
    /// answer, a query that does not fit the schema) although the scan ran to its end.
    pub fn is_incomplete(&self) -> bool {
        !self.unchecked.is_empty() || self.not_checked > 0
    }
}

/// Runs a scan, handing each finding to `observer` as soon as its batch is checked.
/// Setup problems (DB unreachable, media root unusable) are errors; a failure mid-scan ends
/// the scan with [`Completion::Failed`] after every finding so far was delivered.
pub fn scan(opts: &ScanOptions, observer: &mut dyn Observer) -> Result<Summary> {
    let started = Instant::now();
    check_jobs(opts.jobs)?;
    let source = Source::open(opts.source.clone())?;
    tracing::debug!(
        schema = %source.info.schema.label,
        total_rows = ?source.info.total_rows,
        "database snapshot open"
    );
    check_media_location(opts, &source.info)?;
    scan_source(opts, source, observer, started)
}

/// [`scan`] of the rows of an open `source` (the live database's, or a dump's).
pub(crate) fn scan_source(
    opts: &ScanOptions,
    mut source: Source,
    observer: &mut dyn Observer,
    started: Instant,
) -> Result<Summary> {
    check_jobs(opts.jobs)?;
    let total_rows = source.info.total_rows;
    let (map, roots_used) = build_map_with_roots(opts, &source.info)?;
    let roots = Roots::open_watched(&map, Some(opts.io_timeout))
        .map_err(|(path, reason)| Error::MediaRoot { path, reason })?;
    let identity = opts.as_user.clone().unwrap_or_else(Identity::current);
    let checker_roots: Vec<PathBuf> = map.entries().iter().map(|e| e.host.clone()).collect();
    let mut checker = Checker::new(map, roots, identity, opts.level);
    let mut resumed_after: Option<String> = None;
    if let Some(path) = &opts.manifest {
        if opts.level < Level::Quick {
            return Err(Error::InvalidArgument(format!(
                "{} needs a content level ({} quick or deeper): the exists level reads no \
                 content",
                crate::error::Hint::Manifest,
                crate::error::Hint::Level
            )));
        }
        let roots: Vec<PathBuf> = crate::fs::writes::media_roots(opts)
            .into_iter()
            .chain(checker_roots.iter().cloned())
            .collect();
        crate::fs::writes::refuse_inside_roots(
            &crate::error::Hint::Manifest.to_string(),
            path,
            &roots,
        )?;
        let session = crate::check::manifest::Session::open(path, opts.verify_manifest)?;
        // A time-limited run stopped here: a time-limited run goes on after its last page (a
        // rolling scrub). A run without a limit checks everything (and clears the point).
        let resume = match session
            .manifest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            Some(m) => m.resume_after()?,
            None => None,
        };
        if let Some(id) = resume.filter(|_| opts.time_limit.is_some()) {
            drop(source);
            source = Source::open_after(opts.source.clone(), Some(id.clone()))?;
            resumed_after = Some(id);
        }
        checker.manifest = Some(session);
    }
    let limits = Arc::new(crate::fs::throttle::Limits::new(
        opts.max_files_rate,
        opts.max_read_rate,
    ));
    if opts.level >= Level::Quick {
        checker.cpu = Some(cpu_pool(opts.jobs, limits.clone(), opts.idle_io)?);
    }

    let mut summary = Summary {
        summary: true,
        schema: source.info.schema.label.clone(),
        immich_version: source.info.schema.release.clone(),
        unchecked: Vec::new(),
        level: opts.level,
        media_location: checker.map.active_media().map(str::to_string),
        roots: roots_used,
        rows: 0,
        files_checked: 0,
        bytes_read: 0,
        checksums_skipped: 0,
        decode_fallbacks: BTreeMap::new(),
        manifest_hits: None,
        manifest_rereads: None,
        manifest_new: None,
        findings: 0,
        counts: BTreeMap::new(),
        elapsed_ms: 0,
        completion: Completion::Complete,
        reconnects: 0,
        resumes: Vec::new(),
        decoded: BTreeMap::new(),
        not_checked: 0,
        io_depth: (0, 0),
        coverage: None,
    };
    let emit = |f: &Finding, summary: &mut Summary, observer: &mut dyn Observer| {
        summary.findings += 1;
        let kind = f.file.map(|k| k.as_str()).unwrap_or("mount");
        *summary
            .counts
            .entry(kind.to_string())
            .or_default()
            .entry(f.fault.as_str().to_string())
            .or_default() += 1;
        observer.finding(f);
    };
    // Two pages in flight: while the I/O threads finish one page's slowest files, the next
    // page's rows keep the others busy. Findings are still emitted in page order. With a
    // manifest, one: each page's entries are committed before the next page reads them.
    let depth = if checker.manifest.is_some() { 1 } else { 2 };
    let checker = Arc::new(checker);
    let mut engine = Engine::start(
        checker.clone(),
        opts.io_depth,
        opts.io_timeout,
        opts.idle_io,
        limits.any().then(|| limits.clone()),
    );
    let deadline = opts.time_limit.map(|t| started + t);
    let mut in_flight: VecDeque<Arc<Batch>> = VecDeque::new();
    let mut more = true;
    let mut submitted = 0u64;
    let mut reached_end = false;
    loop {
        if more && in_flight.len() < depth {
            if opts.cancel.load(Ordering::Relaxed) {
                summary.completion = Completion::Interrupted;
                more = false;
                continue;
            }
            // A time-limited run always checks one page at least: N runs make progress.
            if submitted > 0 && deadline.is_some_and(|d| Instant::now() >= d) {
                summary.completion = Completion::TimeLimit;
                more = false;
                continue;
            }
            match source.next_within(Duration::from_millis(100)) {
                Next::Batch(Ok(rows)) => {
                    let b = Batch::new(rows);
                    engine.submit(&b);
                    in_flight.push_back(b);
                    submitted += 1;
                    continue;
                }
                Next::Batch(Err(e)) => {
                    summary.completion = Completion::Failed(e.to_string());
                    more = false;
                }
                Next::Pending => continue,
                Next::End => {
                    more = false;
                    reached_end = true;
                }
            }
        }
        let Some(batch) = in_flight.pop_front() else {
            break;
        };
        // After SIGINT/SIGTERM, pages still in flight get a moment to finish; threads stuck
        // in the kernel are not waited for (the report is written without their files).
        let mut cancelled_at: Option<Instant> = None;
        let done = engine.wait(&batch, || {
            if !opts.cancel.load(Ordering::Relaxed) {
                return false;
            }
            cancelled_at.get_or_insert_with(Instant::now).elapsed() > CANCEL_GRACE
        });
        if !done {
            summary.completion = Completion::Interrupted;
            break;
        }
        summary.rows += batch.rows.len() as u64;
        for (i, row) in batch.rows.iter().enumerate() {
            for f in checker.assemble(row, batch.row_outcomes(i)) {
                emit(&f, &mut summary, observer);
            }
        }
        if let Some(m) = &checker.manifest {
            // The next run resumes after this page's last asset (committed with its entries).
            if let Some(last) = batch.rows.iter().rev().find(|r| r.entity == Entity::Asset) {
                m.resume_after(Some(last.id.clone()));
            }
            if reached_end && in_flight.is_empty() && summary.completion == Completion::Complete {
                m.resume_after(None);
            }
            if let Err(e) = m.flush() {
                summary.completion = Completion::Failed(e.to_string());
                more = false;
            }
        }
        summary.files_checked = engine.files_checked();
        summary.bytes_read = checker.bytes_read.load(Ordering::Relaxed);
        observer.progress(&Progress {
            rows: summary.rows,
            files_checked: summary.files_checked,
            bytes_read: summary.bytes_read,
            findings: summary.findings,
            total_rows,
        });
    }
    let (now, peak) = engine.depth();
    summary.io_depth = (now as u64, peak as u64);
    let files_checked = engine.files_checked();
    drop(engine);
    for f in unreachable_findings(&checker) {
        summary.not_checked += f.affected.unwrap_or(0);
        emit(&f, &mut summary, observer);
    }
    for m in checker.roots.missing.iter().filter(|m| !m.hung) {
        let affected = m.affected.load(Ordering::Relaxed);
        let f = Finding {
            asset_id: None,
            owner_id: None,
            file: None,
            db_path: Some(m.container.clone()),
            host_path: Some(m.host.to_string_lossy().into_owned()),
            fault: Fault::MountMissing,
            found_at: None,
            repair: Repair::None,
            detail: format!(
                "{} (mapped from {}) is {}; {affected} referenced files under it were not checked: \
                 mount it or pass {} {}=HOST",
                m.host.display(),
                m.container,
                m.why,
                crate::error::Hint::Maps,
                m.container
            ),
            affected: Some(affected),
            relink_to: None,
        };
        emit(&f, &mut summary, observer);
    }
    summary.files_checked = files_checked;
    summary.bytes_read = checker.bytes_read.load(Ordering::Relaxed);
    summary.checksums_skipped = checker.checksums_skipped.load(Ordering::Relaxed);
    summary.unchecked = source.unchecked();
    summary.reconnects = source.resumes.count();
    summary.resumes = source.resumes.causes();
    summary.decode_fallbacks = checker
        .decode_fallbacks
        .lock()
        .map(|m| m.clone())
        .unwrap_or_default();
    summary.decoded = checker
        .decoded
        .lock()
        .map(|m| m.clone())
        .unwrap_or_default();
    if let Some(m) = &checker.manifest {
        if reached_end && summary.completion == Completion::Complete {
            m.resume_after(None); // the cycle is complete: the next run starts over
        }
        summary.coverage = coverage(m, resumed_after.take());
        summary.manifest_hits = Some(m.hits.load(Ordering::Relaxed));
        summary.manifest_rereads = Some(m.rereads.load(Ordering::Relaxed));
        summary.manifest_new = Some(m.new.load(Ordering::Relaxed));
        if let Err(e) = m.finish() {
            summary.completion = Completion::Failed(e.to_string());
        }
    }
    summary.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(summary)
}

/// Media spellings that mean "Immich's media root".
fn is_media_spelling(s: &str) -> bool {
    matches!(s, "upload" | "/usr/src/app/upload" | "/data")
}

/// Builds the path map from flags and from what the database says.
pub fn build_map(opts: &ScanOptions, info: &SourceInfo) -> Result<PathMap> {
    build_map_with_roots(opts, info).map(|(m, _)| m)
}

/// [`build_map`], and the roots it used with where each came from. More than one Immich tree
/// below the media root is an error that lists them.
pub fn build_map_with_roots(
    opts: &ScanOptions,
    info: &SourceInfo,
) -> Result<(PathMap, Vec<RootUsed>)> {
    let origin = |o: &Option<String>| o.clone().unwrap_or_else(|| "option".into());
    let mut used = Vec::new();
    let explicit_media = opts.maps.iter().find(|(c, _)| {
        is_media_spelling(c.trim_end_matches('/')) || Some(c) == opts.media_location.as_ref()
    });
    let map_origin = |c: &str| {
        opts.origins
            .maps
            .get(c)
            .cloned()
            .unwrap_or_else(|| "option".into())
    };
    let (active, active_from) = if let Some(l) = &opts.media_location {
        (l.clone(), origin(&opts.origins.media_location))
    } else if let Some(l) = &info.media_location {
        (
            l.clone(),
            "database (system_metadata MediaLocation)".to_string(),
        )
    } else if let Some((c, _)) = explicit_media {
        (c.trim_end_matches('/').to_string(), map_origin(c))
    } else if info.schema.asset_table == "assets" {
        ("upload".into(), "default of this schema".into())
    } else {
        (
            "/usr/src/app/upload".into(),
            "default of this schema".into(),
        )
    };
    let mut map = PathMap::new();
    let media_host = match (&opts.media_root, explicit_media) {
        (Some(h), _) => Some((h.clone(), origin(&opts.origins.media_root))),
        (None, Some((c, h))) => Some((h.clone(), map_origin(c))),
        (None, None) => None,
    };
    let Some((media_host, media_from)) = media_host else {
        return Err(Error::InvalidArgument(format!(
            "no media root: pass {} HOST_DIR (the folder holding upload/, thumbs/, ...) or {} \
             CONTAINER=HOST for the media location",
            crate::error::Hint::MediaRoot,
            crate::error::Hint::Maps
        )));
    };
    // A media root on a share that stopped answering is an error, not a hang.
    let host = media_host.clone();
    let probe = move || (host.is_dir(), crate::fs::roots::detect_media_root(&host));
    let Some((is_dir, detected)) = crate::fs::watch::within(opts.io_timeout, probe) else {
        return Err(Error::MediaRoot {
            path: media_host,
            reason: format!(
                "does not answer: looking at it did not return in {:.1} s (a hung share?)",
                opts.io_timeout.as_secs_f64()
            ),
        });
    };
    if !is_dir {
        return Err(Error::MediaRoot {
            path: media_host,
            reason: "not a directory".into(),
        });
    }
    let detected = detected.map_err(|c| crate::fs::roots::ambiguous_root(&media_host, &c))?;
    let media_from = if detected == media_host {
        media_from
    } else {
        format!(
            "marker search below {} ({media_from})",
            media_host.display()
        )
    };
    used.push(RootUsed {
        role: "media root".into(),
        value: detected.display().to_string(),
        from: media_from,
    });
    used.push(RootUsed {
        role: "media location".into(),
        value: active.clone(),
        from: active_from,
    });
    map.add_media_root(&active, detected);
    for (c, h) in &opts.maps {
        if explicit_media.is_some_and(|(ec, _)| ec == c) {
            continue;
        }
        used.push(RootUsed {
            role: format!("map {c}"),
            value: h.display().to_string(),
            from: map_origin(c),
        });
        map.add(c, h.clone(), false);
    }
    // External libraries nobody mapped are looked for at the same path on this host.
    for lib in &info.libraries {
        for p in &lib.import_paths {
            if !map.covers(p) {
                used.push(RootUsed {
                    role: format!("map {p}"),
                    value: p.clone(),
                    from: "database (library import path, same path on this host)".into(),
                });
                map.add(p, PathBuf::from(p), false);
            }
        }
    }
    Ok((map, used))
}

/// An explicit media location that agrees with neither the one Immich saved
/// (`system_metadata`) nor any stored path prefix is an error naming both: taking it would
/// turn every healthy row into a `moved` one.
pub(crate) fn check_media_location(opts: &ScanOptions, info: &SourceInfo) -> Result<()> {
    let Some(given) = opts.media_location.as_deref() else {
        return Ok(());
    };
    use crate::diagnose::doctor::{same_root, stored_prefixes};
    let saved = info.media_location.as_deref();
    if saved.is_some_and(|s| same_root(s, given)) {
        return Ok(());
    }
    let mut known = vec![given, "/data", "/usr/src/app/upload", "upload"];
    known.extend(saved);
    let prefixes = crate::db::runtime::runtime()?.block_on(async {
        let mut conn = crate::db::conn::connect(&opts.source.db_url).await?;
        stored_prefixes(&mut conn, &info.schema, &known)
            .await
            .map_err(Error::query("counting the stored paths per media root"))
    })?;
    if prefixes.iter().any(|(p, _)| same_root(p, given)) || (saved.is_none() && prefixes.is_empty())
    {
        return Ok(());
    }
    let shown: Vec<String> = prefixes
        .iter()
        .map(|(p, n)| format!("{n} under {p}"))
        .collect();
    Err(Error::InvalidArgument(format!(
        "the media location {given} ({}) contradicts the database: MediaLocation in \
         system_metadata is {}, and the stored paths are {}; nothing was checked. Pass the \
         location the server uses, or leave {} unset to read it from the database",
        opts.origins.media_location.as_deref().unwrap_or("option"),
        saved.unwrap_or("not saved"),
        if shown.is_empty() {
            "none".to_string()
        } else {
            shown.join(", ")
        },
        crate::error::Hint::MediaLocation
    )))
}
