//! Reading a saved report back, for repairs driven by `--from`: a `scan --format jsonl`
//! report, or an `orphans --format jsonl` report whose matched orphans stand for `moved`
//! findings.

use crate::error::{Error, Result};
use crate::model::{Finding, Orphan};
use std::io::BufRead;
use std::path::Path;

/// The findings of a saved JSONL report, in file order. The summary line, orphans that match no
/// row and lines that are neither are skipped; an unreadable file is an error naming it.
pub fn read_findings(path: &Path) -> Result<Vec<Finding>> {
    let io = |e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut findings = Vec::new();
    for line in std::io::BufReader::new(file).lines() {
        let line = line.map_err(io)?;
        if let Ok(f) = serde_json::from_str::<Finding>(&line) {
            findings.push(f);
        } else if let Ok(o) = serde_json::from_str::<Orphan>(&line) {
            findings.extend(o.as_moved_finding());
        }
    }
    Ok(findings)
}
