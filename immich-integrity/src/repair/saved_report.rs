//! Reading a saved report back, for repairs driven by `--from`: a `scan --format jsonl` (or
//! `json`) report of any schema version, or an `orphans --format jsonl` report whose matched orphans stand for `moved`
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
        // A `--format json` report holds one finding per line too, indented and followed by a
        // comma; a report of any version is read (a `type` other than `finding` or none is
        // not a finding: next steps and summaries do not parse as one).
        let line = line.trim().trim_end_matches(',');
        let (f, orphan) = if let Ok(f) = serde_json::from_str::<Finding>(line) {
            (f, false)
        } else if let Ok(o) = serde_json::from_str::<Orphan>(line) {
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

#[cfg(test)]
mod tests {
    use super::*;

    const FINDING: &str = r#"{"asset_id":"a1","owner_id":"u","file":"original","db_path":"/data/x","host_path":"/h/x","fault":"moved","found_at":"/h/y","repair":"relink","detail":"d"}"#;

    #[test]
    fn reads_untyped_typed_jsonl_and_json_reports_alike() {
        let d = tempfile::tempdir().unwrap();
        let typed = FINDING.replacen('{', r#"{"type":"finding","#, 1);
        let step = r#"{"type":"next_step","order":1,"step":"rescan","title":"t","argv":null}"#;
        let old = format!("{FINDING}\n{{\"summary\":true}}\n");
        let new = format!("{typed}\n{step}\n{{\"type\":\"summary\",\"schema_version\":1}}\n");
        let json = format!(
            "{{\n  \"findings\": [\n    {typed},\n    {typed}\n  ],\n  \"next_steps\": [\n    {step}\n  ],\n  \"summary\": {{}}\n}}\n"
        );
        for (name, text) in [("old.jsonl", old), ("new.jsonl", new), ("r.json", json)] {
            let p = d.path().join(name);
            std::fs::write(&p, text).unwrap();
            let sel = read_selection(&p, &|_| true).unwrap();
            let want: BTreeSet<(String, FileKind)> =
                [("a1".to_string(), FileKind::Original)].into();
            assert_eq!(sel.rows, want, "{name}");
        }
    }
}
