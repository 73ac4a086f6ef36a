//! Reading a saved `scan --format jsonl` report back, for repairs driven by `--from`.

use crate::error::{Error, Result};
use crate::model::Finding;
use std::io::BufRead;
use std::path::Path;

/// The findings of a saved JSONL report, in file order. The summary line and lines that are not
/// findings are skipped; an unreadable file is an error naming it.
pub fn read_findings(path: &Path) -> Result<Vec<Finding>> {
    let io = |e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut findings = Vec::new();
    for line in std::io::BufReader::new(file).lines() {
        if let Ok(f) = serde_json::from_str::<Finding>(&line.map_err(io)?) {
            findings.push(f);
        }
    }
    Ok(findings)
}
