//! Reading a saved report back, for repairs driven by `--from`: a `scan --format jsonl`
//! report, or an `orphans --format jsonl` report whose matched orphans stand for `moved`
//! findings.
//!
//! A report only *selects* rows ([`read_selection`]): the repairs re-check each selected row
//! themselves and take every path from the database and their own rules, never from the
//! report (a report is a file anyone could have edited).

use crate::error::{Error, Result};
use crate::model::{FileKind, Finding, Orphan};
use std::collections::BTreeSet;
use std::io::BufRead;
use std::path::Path;

/// The rows a saved report names: (asset, person or user id; file kind).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// The selected (id, file kind) pairs.
    pub rows: BTreeSet<(String, FileKind)>,
    /// Some came from an orphans report (a matched orphan), not a scan report.
    pub from_orphans: bool,
}

impl Selection {
    /// Whether a finding is about a selected row.
    pub fn selects(&self, f: &Finding) -> bool {
        match (&f.asset_id, f.file) {
            (Some(id), Some(kind)) => self.rows.contains(&(id.clone(), kind)),
            _ => false,
        }
    }
}

/// Which rows a saved report's findings (of `wanted` faults, or any when `None`) name. Only the
/// ids and file kinds are read; paths in the report are ignored.
pub fn read_selection(path: &Path, wanted: &dyn Fn(&Finding) -> bool) -> Result<Selection> {
    let io = |e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut sel = Selection::default();
    for line in std::io::BufReader::new(file).lines() {
        let line = line.map_err(io)?;
        let (f, orphan) = if let Ok(f) = serde_json::from_str::<Finding>(&line) {
            (f, false)
        } else if let Ok(o) = serde_json::from_str::<Orphan>(&line) {
            match o.as_moved_finding() {
                Some(f) => (f, true),
                None => continue,
            }
        } else {
            continue;
        };
        if !wanted(&f) {
            continue;
        }
        if let (Some(id), Some(kind)) = (f.asset_id, f.file) {
            sel.rows.insert((id, kind));
            sel.from_orphans |= orphan;
        }
    }
    Ok(sel)
}
