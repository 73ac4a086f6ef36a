//! The versioned report contract (every JSON object names its `type`; the summary carries
//! `schema_version`) and the next steps a report ends with: their lines, their table section,
//! and the restore list they name.

use immich_integrity::next_steps::{ImmichState, NextStep, Tally};
use immich_integrity::{Finding, Summary};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// The report format's version (docs/report.schema.json). Raised only when a field changes
/// meaning or goes away; new fields and new values keep it.
pub(crate) const SCHEMA_VERSION: u32 = 1;

/// A finding as a report line: `{"type":"finding", ...}`.
#[derive(Serialize)]
pub(crate) struct FindingLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    finding: &'a Finding,
}

impl<'a> FindingLine<'a> {
    pub(crate) fn new(finding: &'a Finding) -> Self {
        FindingLine {
            kind: "finding",
            finding,
        }
    }
}

/// A next step as a report line: `{"type":"next_step", ...}`.
#[derive(Serialize)]
pub(crate) struct StepLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    step: &'a NextStep,
}

impl<'a> StepLine<'a> {
    pub(crate) fn new(step: &'a NextStep) -> Self {
        StepLine {
            kind: "next_step",
            step,
        }
    }
}

/// The summary as a report line: `{"type":"summary","schema_version":1, ...}` with the counts
/// per repair and the files under missing mounts.
#[derive(Serialize)]
pub(crate) struct SummaryLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    schema_version: u32,
    #[serde(flatten)]
    summary: &'a Summary,
    /// Findings per repair.
    repairs: &'a BTreeMap<String, u64>,
    /// Files under missing mounts (not checked).
    mount_affected_files: u64,
    /// The file listing what only a backup has, when there is any.
    #[serde(skip_serializing_if = "Option::is_none")]
    restore_list: Option<&'a Path>,
}

impl<'a> SummaryLine<'a> {
    pub(crate) fn new(summary: &'a Summary, tally: &'a Tally, restore: Option<&'a Path>) -> Self {
        SummaryLine {
            kind: "summary",
            schema_version: SCHEMA_VERSION,
            summary,
            repairs: &tally.by_repair,
            mount_affected_files: tally.mount_affected,
            restore_list: restore,
        }
    }
}

/// The list of files only a backup has: one host path per line, written to a temp file beside
/// its place and renamed there when the report is done.
pub(crate) struct RestoreList {
    dest: PathBuf,
    tmp: PathBuf,
    w: Option<BufWriter<File>>,
}

impl RestoreList {
    pub(crate) fn new(dest: PathBuf) -> RestoreList {
        let name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "restore.txt".into());
        let tmp = dest.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
        RestoreList { dest, tmp, w: None }
    }

    /// Adds a path (created on the first one: no list when nothing needs a backup).
    pub(crate) fn add(&mut self, path: &str) -> io::Result<()> {
        if self.w.is_none() {
            // Beside a report its folder exists; the state folder may not yet.
            if let Some(dir) = self.dest.parent() {
                crate::state::ensure(dir).map_err(io::Error::other)?;
            }
            let f = File::create(&self.tmp)
                .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.tmp.display())))?;
            self.w = Some(BufWriter::new(f));
        }
        let w = self.w.as_mut().expect("created above");
        // One path per line: a stored newline would split it, so such a path is escaped.
        writeln!(w, "{}", crate::text::esc(path))?;
        Ok(())
    }

    /// Moves the list into place; `None` when it holds nothing.
    pub(crate) fn finish(mut self) -> io::Result<Option<PathBuf>> {
        let Some(w) = self.w.take() else {
            return Ok(None);
        };
        let done = w
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_all())
            .and_then(|_| std::fs::rename(&self.tmp, &self.dest));
        if done.is_err() {
            let _ = std::fs::remove_file(&self.tmp);
        }
        done.map(|_| Some(self.dest.clone()))
    }

    pub(crate) fn abandon(&mut self) {
        if self.w.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// The table's last section: numbered steps, each with its command and whether Immich may run.
pub(crate) fn write_table(out: &mut impl Write, steps: &[NextStep]) -> io::Result<()> {
    if steps.is_empty() {
        return Ok(());
    }
    writeln!(out, "Next steps (in this order):")?;
    for s in steps {
        let immich = match s.immich {
            ImmichState::Running => " [Immich running]",
            ImmichState::Stopped => " [stop Immich first]",
            _ => "",
        };
        writeln!(out, "  {}. {}{immich}", s.order, crate::text::esc(&s.title))?;
        if let Some(c) = &s.command {
            // Shown as it runs (quotes and all), unless it holds a control character.
            if c.chars().any(char::is_control) {
                writeln!(out, "     {}", crate::text::esc(c))?;
            } else {
                writeln!(out, "     {c}")?;
            }
        }
        if let Some(l) = &s.list {
            writeln!(out, "     list: {}", l.display())?;
        }
    }
    writeln!(out)
}
