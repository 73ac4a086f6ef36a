//! Files of the media backup no row of the dump references, with memory that does not grow
//! with the library: `orphans` keeps 16 bytes per referenced file in memory, so here both
//! sides go to sorted runs on disk instead (the 128-bit key of each referenced path, then each
//! walked file's key with its path and size) and one merge of the two lists finds the
//! walked keys no row has. Placement, keys and the walk (what is skipped) are `orphans`' own;
//! only the moved-candidate matching is left out (the scan already reports `moved` rows).

use super::spill::{Fields, Spill};
use crate::db::source::Source;
use crate::diagnose::orphans::{key, refuse_partial, units, walk_files, Placer, WalkOut};
use crate::error::{Error, Result};
use crate::model::Orphan;
use crate::scan::{build_map, ScanOptions};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

/// Lists the untracked files below the media backup, sorted by path. `open` streams every
/// row of the dump (trashed ones too).
pub(crate) fn untracked(
    opts: &ScanOptions,
    open: &mut dyn FnMut() -> Result<Source>,
    temp: Option<&Path>,
) -> Result<Vec<Orphan>> {
    let io = |source| Error::Io {
        path: temp.map_or_else(std::env::temp_dir, Path::to_path_buf),
        source,
    };
    let mut source = open()?;
    let map = build_map(opts, &source.info)?;
    let media = map
        .entries()
        .iter()
        .find(|e| e.media)
        .map(|e| e.host.clone())
        .ok_or_else(|| Error::InvalidArgument("no media root".into()))?;
    let canon_root = std::fs::canonicalize(&media).map_err(|e| Error::MediaRoot {
        path: media.clone(),
        reason: e.to_string(),
    })?;
    let placer = Placer::new(map, &canon_root);
    let mut refs = Spill::new(temp);
    for batch in source.by_ref() {
        for row in &batch? {
            for f in &row.files {
                if let Some((rel, _)) = placer.place(&f.db_path) {
                    refs.push(&key(&rel).to_be_bytes(), &[]).map_err(io)?;
                }
            }
        }
        if opts.cancel.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
    }
    refuse_partial(&source)?;
    drop(source);
    let refs = refs.finish().map_err(io)?;

    let mut walked = Spill::new(temp);
    let mut counts = WalkOut::default();
    let mut failed = None;
    for unit in units(&canon_root) {
        walk_files(&unit, &mut counts, |path, rel, size| {
            let mut v = Fields::default();
            v.put(Some(path.as_os_str().as_bytes()))
                .put(Some(rel.as_os_str().as_bytes()))
                .put(Some(&size.to_le_bytes()));
            if let Err(e) = walked.push(&key(&rel).to_be_bytes(), &v.0) {
                failed.get_or_insert(e);
            }
            None
        });
        if let Some(e) = failed.take() {
            return Err(io(e));
        }
        if opts.cancel.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
    }
    let walked = walked.finish().map_err(io)?;

    // Both lists in key order: a walked key the reference list does not have is untracked.
    let mut r = refs.merge().map_err(io)?;
    let mut w = walked.merge().map_err(io)?;
    let mut next_ref = r.next_record().map_err(io)?;
    let mut out = Vec::new();
    while let Some((k, v)) = w.next_record().map_err(io)? {
        while next_ref.as_ref().is_some_and(|(rk, _)| *rk < k) {
            next_ref = r.next_record().map_err(io)?;
        }
        if next_ref.as_ref().is_some_and(|(rk, _)| *rk == k) {
            continue;
        }
        let f = Fields::read(&v);
        let bytes = |i: usize| f.get(i).cloned().flatten().unwrap_or_default();
        let size = bytes(2);
        out.push(Orphan {
            path: PathBuf::from(std::ffi::OsStr::from_bytes(&bytes(0))),
            rel: String::from_utf8_lossy(&bytes(1)).into_owned(),
            size: u64::from_le_bytes(size.try_into().unwrap_or([0; 8])),
            moved_candidate: None,
        });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}
