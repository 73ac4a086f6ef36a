//! Report writers: table (for people), json, jsonl. Files are written atomically.

use crate::progress::Meter;
use crate::steps::{FindingLine, RestoreList, StepLine, SummaryLine};
use crate::style::Paint;
use immich_integrity::next_steps::{self, NextStep, Tally};
use immich_integrity::{Fault, Finding, Observer, Progress, Repair, Summary};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Jsonl,
    /// One row per finding, for spreadsheets; the summary goes to stderr.
    Csv,
}

impl Format {
    /// The format `--output`'s extension names (`.jsonl`, `.json`, `.csv`), else the table.
    pub fn for_output(output: Option<&Path>) -> Format {
        let ext = output
            .and_then(|p| p.extension())
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        match ext.as_deref() {
            Some("jsonl") | Some("ndjson") => Format::Jsonl,
            Some("json") => Format::Json,
            Some("csv") => Format::Csv,
            _ => Format::Table,
        }
    }
}

const CSV_HEADER: &str =
    "asset_id,owner_id,file,db_path,host_path,fault,found_at,repair,detail,affected,relink_to";

use crate::text::{csv_cell as csv_field, esc};

fn csv_row(f: &Finding) -> String {
    let opt = |o: &Option<String>| o.as_deref().map(csv_field).unwrap_or_default();
    [
        opt(&f.asset_id),
        opt(&f.owner_id),
        f.file.map(|k| k.as_str().to_string()).unwrap_or_default(),
        opt(&f.db_path),
        opt(&f.host_path),
        f.fault.as_str().to_string(),
        opt(&f.found_at),
        f.repair.as_str().to_string(),
        csv_field(&f.detail),
        f.affected.map(|a| a.to_string()).unwrap_or_default(),
        opt(&f.relink_to),
    ]
    .join(",")
}

/// How many rows of each group the table shows.
const TABLE_ROWS_PER_GROUP: usize = 10;

/// Where the report goes: stdout, or a temp file renamed over `--output` when done.
enum Target {
    Stdout(io::Stdout),
    File {
        tmp: PathBuf,
        dest: PathBuf,
        w: BufWriter<File>,
    },
}

impl Write for Target {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        match self {
            Target::Stdout(s) => s.write(b),
            Target::File { w, .. } => w.write(b),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Target::Stdout(s) => s.flush(),
            Target::File { w, .. } => w.flush(),
        }
    }
}

pub struct ReportSink {
    format: Format,
    out: Target,
    /// `json`: the findings so far, one JSON line each, in an anonymous temp file (memory
    /// does not grow with the number of findings).
    spill: Option<BufWriter<File>>,
    /// `table`: per (severity, fault, kind), the count and the first rows shown.
    groups: BTreeMap<GroupKey, Group>,
    /// Counts per repair and what the next steps need.
    tally: Tally,
    /// How the next steps are spelled; `None`: the report ends without them.
    steps: Option<next_steps::Context>,
    /// The list of files only a backup has.
    restore: Option<RestoreList>,
    meter: Option<Meter>,
    paint: Paint,
    error: Option<io::Error>,
    /// Set when standard output's reader went away (`| head -1`): the scan is stopped through
    /// this flag and the command ends quietly.
    cancel: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    broken_pipe: bool,
}

impl ReportSink {
    pub fn new(format: Format, output: Option<&Path>) -> io::Result<ReportSink> {
        let out = match output {
            None => Target::Stdout(io::stdout()),
            Some(dest) => {
                let name = dest
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "report".into());
                let tmp = dest.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
                let w =
                    BufWriter::new(File::create(&tmp).map_err(|e| {
                        io::Error::new(e.kind(), format!("{}: {e}", tmp.display()))
                    })?);
                Target::File {
                    tmp,
                    dest: dest.to_path_buf(),
                    w,
                }
            }
        };
        let mut sink = ReportSink {
            format,
            out,
            spill: None,
            groups: BTreeMap::new(),
            tally: Tally::default(),
            steps: None,
            restore: None,
            meter: None,
            paint: Paint(false),
            error: None,
            cancel: None,
            broken_pipe: false,
        };
        if format == Format::Csv {
            sink.write_raw(CSV_HEADER);
        }
        if format == Format::Json {
            let f = tempfile::tempfile().map_err(|e| {
                io::Error::new(e.kind(), format!("a temp file for the report: {e}"))
            })?;
            sink.spill = Some(BufWriter::new(f));
        }
        Ok(sink)
    }

    /// Ends the report with the next steps spelled with `cx`, and writes the files only a backup
    /// has to `restore_list`.
    pub fn set_next_steps(&mut self, mut cx: next_steps::Context, restore_list: PathBuf) {
        cx.restore_list = Some(restore_list.clone());
        self.steps = Some(cx);
        self.restore = Some(RestoreList::new(restore_list));
    }

    /// What the findings so far add up to.
    pub fn tally(&self) -> &Tally {
        &self.tally
    }

    /// Shows progress on stderr (the caller decides whether a person is watching).
    pub fn set_meter(&mut self, meter: Option<Meter>) {
        self.meter = meter;
    }

    /// Colours the table report (only the table is ever coloured, and only on stdout).
    pub fn set_color(&mut self, on: bool) {
        let to_stdout = matches!(self.out, Target::Stdout(_));
        self.paint = Paint(on && to_stdout && self.format == Format::Table);
    }

    /// Stops the run through `cancel` when standard output's reader goes away.
    pub fn set_cancel(&mut self, cancel: std::sync::Arc<std::sync::atomic::AtomicBool>) {
        self.cancel = Some(cancel);
    }

    /// Did standard output's reader go away (`EPIPE`)? The report was then cut short on
    /// purpose; say nothing and end with the usual status.
    pub fn broken_pipe(&self) -> bool {
        self.broken_pipe
    }

    fn failed(&mut self, e: io::Error) {
        if matches!(self.out, Target::Stdout(_)) && crate::out::is_broken_pipe(&e) {
            self.broken_pipe = true;
            if let Some(c) = &self.cancel {
                c.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
        self.error = Some(e);
    }

    fn write_raw(&mut self, line: &str) {
        if self.error.is_none() {
            if let Err(e) = writeln!(self.out, "{line}") {
                self.failed(e);
            }
        }
    }

    fn write_line(&mut self, value: &impl serde::Serialize) {
        if self.error.is_some() {
            return;
        }
        let r = serde_json::to_writer(&mut self.out, value)
            .map_err(io::Error::from)
            .and_then(|_| self.out.write_all(b"\n"));
        if let Err(e) = r {
            self.failed(e);
        }
    }

    /// Writes the summary, flushes, and moves the file into place.
    pub fn finish(mut self, summary: &Summary) -> io::Result<()> {
        let summary = &crate::hints::summary(summary);
        if let Some(m) = self.meter.take() {
            m.finish();
        }
        if let Some(e) = self.error.take() {
            self.abandon();
            return Err(e);
        }
        let restore = match self.restore.take().map(RestoreList::finish).transpose() {
            Ok(r) => r.flatten(),
            Err(e) => {
                eprintln!(
                    "immich-integrity: cannot write the restore list ({}); the findings with \
                     repair restore_from_backup name the files",
                    immich_integrity::error::io_detail(&e)
                );
                None
            }
        };
        // Only a finished scan says what to do: steps from part of the library would miss
        // the rest.
        let steps: Vec<NextStep> = match &self.steps {
            Some(cx) if summary.completion == immich_integrity::Completion::Complete => {
                let mut cx = cx.clone();
                cx.restore_list = restore.clone();
                // The roots the scan really used (a marker search may have gone deeper).
                cx.roots.extend(
                    summary
                        .roots
                        .iter()
                        .filter(|r| r.role != "media location")
                        .map(|r| PathBuf::from(&r.value)),
                );
                next_steps::plan(&self.tally, &cx)
            }
            _ => Vec::new(),
        };
        let tally = std::mem::take(&mut self.tally);
        let line = SummaryLine::new(summary, &tally, restore.as_deref());
        let r = match self.format {
            Format::Jsonl => {
                for s in &steps {
                    self.write_line(&StepLine::new(s));
                }
                self.write_line(&line);
                self.error.take().map_or(Ok(()), Err)
            }
            Format::Json => match self.spill.take() {
                Some(spill) => write_json(&mut self.out, spill, &steps, &line),
                None => Ok(()),
            },
            Format::Table => write_table(&mut self.out, &self.groups, summary, &steps, self.paint),
            Format::Csv => {
                // The header is written up front; the summary is for people, on stderr.
                eprintln!(
                    "immich-integrity: schema {}, {} rows, {} files checked, {} faults",
                    summary.schema, summary.rows, summary.files_checked, summary.findings
                );
                let mut err = io::stderr();
                let _ = crate::steps::write_table(&mut err, &steps);
                self.error.take().map_or(Ok(()), Err)
            }
        };
        if let Err(e) = r.and_then(|_| self.out.flush()) {
            self.abandon();
            return Err(e);
        }
        if let Target::File { tmp, dest, w } = self.out {
            let done = w
                .into_inner()
                .map_err(|e| e.into_error())
                .and_then(|f| f.sync_all())
                .and_then(|_| std::fs::rename(&tmp, &dest));
            if done.is_err() {
                // A full disk can surface only here: never leave the half-written file behind.
                let _ = std::fs::remove_file(&tmp);
            }
            done?;
        }
        Ok(())
    }

    /// Drops a half-written temp file.
    pub fn abandon(&mut self) {
        if let Some(m) = self.meter.take() {
            m.finish();
        }
        if let Some(r) = &mut self.restore {
            r.abandon();
        }
        if let Target::File { tmp, .. } = &self.out {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

impl Observer for ReportSink {
    fn finding(&mut self, f: &Finding) {
        let f = &crate::hints::finding(f);
        if let Some(path) = self.tally.add(f) {
            if let Some(r) = &mut self.restore {
                // The list helps; the report is what matters: a list that cannot be written
                // is said once, and the report goes on without it.
                if let Err(e) = r.add(&path) {
                    eprintln!(
                        "immich-integrity: cannot write the restore list ({}); the findings \
                         with repair restore_from_backup name the files",
                        immich_integrity::error::io_detail(&e)
                    );
                    r.abandon();
                    self.restore = None;
                }
            }
        }
        match self.format {
            Format::Jsonl => self.write_line(&FindingLine::new(f)),
            Format::Csv => self.write_raw(&csv_row(f)),
            Format::Json => {
                if self.error.is_some() {
                    return;
                }
                if let Some(w) = &mut self.spill {
                    let r = serde_json::to_writer(&mut *w, &FindingLine::new(f))
                        .map_err(io::Error::from)
                        .and_then(|_| w.write_all(b"\n"));
                    if let Err(e) = r {
                        self.error = Some(e);
                    }
                }
            }
            Format::Table => {
                let kind = f.file.map(|k| k.as_str()).unwrap_or("mount");
                let g = self
                    .groups
                    .entry((
                        severity(f.fault, f.repair),
                        f.fault.as_str().to_string(),
                        kind.to_string(),
                    ))
                    .or_insert_with(|| Group {
                        count: 0,
                        repair: f.repair,
                        first: Vec::new(),
                    });
                g.count += 1;
                if g.first.len() < TABLE_ROWS_PER_GROUP {
                    g.first.push(f.clone());
                }
            }
        }
    }

    fn progress(&mut self, p: &Progress) {
        if let Some(m) = &mut self.meter {
            m.update(p);
        }
    }
}

/// Red for faults only a backup can fix, yellow for those Immich or `relink` can.
fn paint_fault(paint: Paint, fault: &str, repair: Repair, width: usize) -> String {
    let padded = format!("{fault:<width$}");
    match repair {
        Repair::Regenerate | Repair::Relink | Repair::FixPermissions => paint.yellow(&padded),
        _ => paint.red(&padded),
    }
}

/// A table group: severity rank (0 first), fault, file kind.
type GroupKey = (u8, String, String);

/// How urgent a fault is, for the table's order: whole missing mounts first, then what only a
/// backup can bring back, what needs a person, then access, relinks, and what Immich rebuilds.
fn severity(fault: Fault, repair: Repair) -> u8 {
    match (fault, repair) {
        (Fault::MountMissing, _) => 0,
        (_, Repair::RestoreFromBackup) => 1,
        (_, Repair::None) | (_, Repair::Mount) => 2,
        (_, Repair::FixPermissions) => 3,
        (_, Repair::Relink) => 4,
        _ => 5,
    }
}

/// The table shows paths below the media root (host) or the media location (container)
/// relative to it; json, jsonl and csv keep them whole.
struct Shortener {
    /// `(prefix with its trailing '/', what it is)`, longest first.
    prefixes: Vec<String>,
    root: Option<String>,
    location: Option<String>,
}

impl Shortener {
    fn new(s: &Summary) -> Shortener {
        let root = s
            .roots
            .iter()
            .find(|r| r.role == "media root")
            .map(|r| r.value.trim_end_matches('/').to_string())
            .filter(|r| !r.is_empty());
        let location = s
            .media_location
            .as_deref()
            .map(|l| l.trim_end_matches('/').to_string())
            .filter(|l| !l.is_empty());
        let mut prefixes: Vec<String> = [&root, &location]
            .into_iter()
            .flatten()
            .map(|p| format!("{p}/"))
            .collect();
        prefixes.sort_by_key(|p| std::cmp::Reverse(p.len()));
        Shortener {
            prefixes,
            root,
            location,
        }
    }

    fn note(&self) -> Option<String> {
        match (&self.root, &self.location) {
            (Some(r), Some(l)) => Some(format!(
                "paths below the media root {r} (Immich's {l}) are shown relative to it"
            )),
            (Some(r), None) => Some(format!("paths below the media root {r} are relative to it")),
            (None, Some(l)) => Some(format!("paths below Immich's {l} are relative to it")),
            (None, None) => None,
        }
    }

    fn path(&self, p: &str) -> String {
        self.prefixes
            .iter()
            .find_map(|pre| p.strip_prefix(pre.as_str()))
            .filter(|rest| !rest.is_empty())
            .unwrap_or(p)
            .to_string()
    }

    /// Every absolute path in a sentence, shortened (a path starts after a space).
    fn text(&self, t: &str) -> String {
        let mut out = t.to_string();
        for pre in &self.prefixes {
            out = out.replace(&format!(" {pre}"), " ");
        }
        out
    }
}

/// One group of the table: how many findings, their repair, the first rows shown.
struct Group {
    count: usize,
    repair: Repair,
    first: Vec<Finding>,
}

/// `{"findings": [...], "next_steps": [...], "summary": {...}}`, the findings streamed back
/// from the spill file.
fn write_json(
    out: &mut impl Write,
    spill: BufWriter<File>,
    steps: &[NextStep],
    summary: &SummaryLine<'_>,
) -> io::Result<()> {
    use std::io::{BufRead, Seek};
    let mut f = spill.into_inner().map_err(|e| e.into_error())?;
    f.rewind()?;
    write!(
        out,
        "{{\n  \"type\": \"report\",\n  \"schema_version\": {},\n  \"findings\": [",
        crate::steps::SCHEMA_VERSION
    )?;
    let mut first = true;
    for line in io::BufReader::new(f).lines() {
        out.write_all(if first { b"\n    " } else { b",\n    " })?;
        out.write_all(line?.as_bytes())?;
        first = false;
    }
    out.write_all(b"\n  ],\n  \"next_steps\": [")?;
    for (i, s) in steps.iter().enumerate() {
        out.write_all(if i == 0 { b"\n    " } else { b",\n    " })?;
        serde_json::to_writer(&mut *out, &StepLine::new(s))?;
    }
    out.write_all(if steps.is_empty() { b"]" } else { b"\n  ]" })?;
    out.write_all(b",\n  \"summary\": ")?;
    serde_json::to_writer(&mut *out, summary)?;
    out.write_all(b"\n}\n")
}

fn write_table(
    out: &mut impl Write,
    groups: &BTreeMap<GroupKey, Group>,
    s: &Summary,
    steps: &[NextStep],
    paint: Paint,
) -> io::Result<()> {
    if !groups.is_empty() {
        let header = format!("{:<18} {:<16} {:>8}  REPAIR", "FAULT", "FILE", "COUNT");
        writeln!(out, "{}", paint.bold(&header))?;
        for ((_, fault, kind), g) in groups {
            writeln!(
                out,
                "{} {kind:<16} {:>8}  {}",
                paint_fault(paint, fault, g.repair, 18),
                g.count,
                g.repair.as_str()
            )?;
        }
        let short = Shortener::new(s);
        if let Some(note) = short.note() {
            writeln!(out, "\n{note}")?;
        }
        for ((_, fault, kind), g) in groups {
            let heading = format!("{fault} {kind} ({}):", g.count);
            writeln!(out, "\n{}", paint.bold(&heading))?;
            for f in &g.first {
                let id = esc(f.asset_id.as_deref().unwrap_or("-"));
                let path = short.path(f.db_path.as_deref().unwrap_or("-"));
                let path = esc(&path);
                writeln!(out, "  {id}  {path}")?;
                if let Some(at) = &f.found_at {
                    writeln!(out, "      found at {}", esc(&short.path(at)))?;
                }
                writeln!(
                    out,
                    "      {} -> {}",
                    esc(&short.text(&f.detail)),
                    f.repair.as_str()
                )?;
            }
            if g.count > TABLE_ROWS_PER_GROUP {
                writeln!(out, "  ... {} more", g.count - TABLE_ROWS_PER_GROUP)?;
            }
        }
        writeln!(out)?;
    }
    crate::steps::write_table(out, steps)?;
    if let (Some(h), Some(r), Some(n)) = (s.manifest_hits, s.manifest_rereads, s.manifest_new) {
        writeln!(
            out,
            "manifest: {h} files unchanged and not read, {r} re-read, {n} new"
        )?;
    }
    if !s.roots.is_empty() {
        let roots: Vec<String> = s.roots.iter().map(|r| r.to_string()).collect();
        writeln!(out, "roots: {}", roots.join("; "))?;
    }
    let faults = format!("{} faults", s.findings);
    let faults = if s.findings == 0 {
        paint.green(&faults)
    } else {
        paint.red(&faults)
    };
    writeln!(
        out,
        "immich-integrity: {}, {} rows, {} files checked, {faults} in {:.1}s{}{}{}",
        match &s.immich_version {
            Some(v) => format!("Immich v{v} (schema {})", s.schema),
            None => format!("schema {}", s.schema),
        },
        s.rows,
        s.files_checked,
        s.elapsed_ms as f64 / 1000.0,
        match s.reconnects {
            0 => String::new(),
            n => format!(" ({n} reconnects: later rows read in a new snapshot)"),
        },
        match &s.completion {
            immich_integrity::Completion::Complete => String::new(),
            immich_integrity::Completion::Interrupted => " (INTERRUPTED: incomplete)".into(),
            immich_integrity::Completion::Failed(w) => format!(" (FAILED: incomplete: {w})"),
            immich_integrity::Completion::TimeLimit => {
                " (TIME LIMIT: incomplete, stopped at a page boundary)".into()
            }
        },
        s.unchecked
            .iter()
            .map(|u| format!(" (INCOMPLETE: {} rows not checked: {})", u.part, u.reason))
            .collect::<String>()
    )
}

/// Repairs act on the parts a scan checked; say which were left out.
pub(crate) fn warn_unchecked(summary: &immich_integrity::Summary, verb: &str) {
    for u in &summary.unchecked {
        eprintln!(
            "immich-integrity: {} rows were not checked ({}), so none of them is {verb}",
            u.part, u.reason
        );
    }
}

/// Writes a rendered report to `output` (atomically) or standard output. A reader of standard
/// output that left (`| head -1`) is not an error: the run ends quietly with its usual status.
pub(crate) fn deliver(output: Option<&Path>, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let written = match output {
        Some(p) => write_atomically(p, bytes),
        None => std::io::stdout().write_all(bytes),
    };
    match written {
        Err(e) if output.is_none() && crate::out::is_broken_pipe(&e) => Ok(()),
        Err(e) => Err(format!("cannot write the report: {e}")),
        Ok(()) => Ok(()),
    }
}

/// Writes `bytes` to `dest` through a temporary file beside it, so `dest` is never half written.
pub(crate) fn write_atomically(dest: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "report".into());
    let tmp = dest.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dest)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use immich_integrity::{Fault, FileKind};

    /// Set in the child process: the format it feeds a million findings to.
    const CHILD: &str = "IMMICH_INTEGRITY_REPORT_MEMORY_CHILD";
    const CHILD_OUT: &str = "IMMICH_INTEGRITY_REPORT_MEMORY_OUT";
    const MILLION: u64 = 1_000_000;

    fn finding(i: u64) -> Finding {
        let id = format!("{i:08x}-0000-4000-8000-{i:012x}");
        Finding {
            asset_id: Some(id.clone()),
            owner_id: Some("6c5c2a7e-0000-4000-8000-000000000001".into()),
            file: Some(if matches!(i % 3, 0) {
                FileKind::Preview
            } else {
                FileKind::Original
            }),
            db_path: Some(format!("/data/upload/6c5c2a7e/{:02x}/{id}.jpg", i % 256)),
            host_path: Some(format!("/srv/immich/library/upload/6c5c2a7e/{id}.jpg")),
            fault: if matches!(i % 2, 0) {
                Fault::Missing
            } else {
                Fault::Truncated
            },
            found_at: None,
            repair: Repair::RestoreFromBackup,
            detail: "no file at the stored path, and none where known mistakes put it".into(),
            affected: None,
            relink_to: None,
        }
    }

    fn summary(findings: u64) -> Summary {
        serde_json::from_value(serde_json::json!({
            "summary": true, "schema": "v2.6", "level": "exists", "media_location": "/data",
            "rows": findings, "files_checked": findings, "bytes_read": 0,
            "checksums_skipped": 0, "findings": findings, "counts": {}, "elapsed_ms": 1,
            "completion": {"status": "complete"}
        }))
        .unwrap()
    }

    fn vm_hwm_kib() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    fn feed(format: Format, out: &Path, n: u64) {
        let mut sink = ReportSink::new(format, Some(out)).unwrap();
        for i in 0..n {
            sink.finding(&finding(i));
        }
        sink.finish(&summary(n)).unwrap();
    }

    /// Measured in a child process (this test binary run again for this one test), whose
    /// peak RSS (`VmHWM`) is only the report's: json and table hold no finding per finding.
    #[test]
    fn json_and_table_reports_of_a_million_findings_stay_under_256_mib() {
        if let Ok(format) = std::env::var(CHILD) {
            let format = if format == "json" {
                Format::Json
            } else {
                Format::Table
            };
            feed(
                format,
                Path::new(&std::env::var(CHILD_OUT).unwrap()),
                MILLION,
            );
            println!("VmHWM={}", vm_hwm_kib());
            return;
        }
        let dir = std::env::temp_dir().join(format!("ii-report-mem-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for format in ["json", "table"] {
            let out = dir.join(format!("report.{format}"));
            let child = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "report::tests::json_and_table_reports_of_a_million_findings_stay_under_256_mib",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD, format)
                .env(CHILD_OUT, &out)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&child.stdout);
            assert!(child.status.success(), "{format}: {text}");
            let hwm: u64 = text
                .lines()
                .find_map(|l| l.split_once("VmHWM=").map(|(_, v)| v))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or_else(|| panic!("{format}: no VmHWM in {text}"));
            assert!(
                hwm < 256 * 1024,
                "{format} report of a million findings peaked at {hwm} KiB"
            );
            let len = std::fs::metadata(&out).unwrap().len();
            assert!(len > 0, "{format}");
            if format == "json" {
                assert!(len > 200 * MILLION, "every finding is in the json report");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_streamed_json_report_is_one_document_with_every_finding() {
        let dir = std::env::temp_dir().join(format!("ii-report-json-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for n in [0, 1, 25] {
            let out = dir.join(format!("r{n}.json"));
            feed(Format::Json, &out, n);
            let doc: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
            let got: Vec<Finding> = serde_json::from_value(doc["findings"].clone()).unwrap();
            let want: Vec<Finding> = (0..n).map(finding).collect();
            assert_eq!(got, want);
            assert_eq!(doc["summary"]["findings"], n);
        }
        let out = dir.join("t.txt");
        feed(Format::Table, &out, 60);
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.contains("missing"), "{text}");
        assert!(text.contains("... "), "groups are cut at ten rows: {text}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
