//! Queue mode trusts no finding: before it plans, and again right before it deletes or blanks,
//! it checks the file the row names now, with the scan's own checker, at the depth the finding
//! claimed (a `corrupt` preview is read and decoded again, not only looked up). A file this
//! check finds healthy, moved or unreadable for a reason a rebuild does not cure is left alone.

use crate::check::Checker;
use crate::db::conn::SourceInfo;
use crate::error::{Error, Result};
use crate::fs::access::Identity;
use crate::fs::roots::Roots;
use crate::model::{AssetRow, Entity, Fault, FileKind, FileRef, Level, Repair};
use crate::scan::ScanOptions;

/// How deep a check must look to see `fault` again: a content fault needs the content read
/// (`truncated`, `size_mismatch`: head and tail; `corrupt`, `bitrot`: decoded too), the others
/// only the file's presence and kind.
pub fn depth_of(fault: Fault) -> Level {
    match fault {
        Fault::Truncated | Fault::SizeMismatch => Level::Quick,
        Fault::Corrupt | Fault::Bitrot | Fault::ChecksumMismatch => Level::Full,
        _ => Level::Exists,
    }
}

/// The asset a derivative belongs to, as the database says now.
#[derive(Debug, Clone)]
pub(crate) struct AssetNow {
    pub(crate) id: String,
    pub(crate) owner_id: String,
    pub(crate) original: Option<String>,
}

/// The scan's checker over the scan's roots, re-used file by file.
pub(crate) struct Recheck {
    checker: Checker,
}

impl Recheck {
    /// The roots of `opts` (as a scan with them would use), opened once.
    pub(crate) fn open(opts: &ScanOptions, info: &SourceInfo) -> Result<Recheck> {
        let (map, _) = crate::scan::build_map_with_roots(opts, info)?;
        let roots =
            Roots::open(&map).map_err(|(path, reason)| Error::MediaRoot { path, reason })?;
        let identity = opts.as_user.clone().unwrap_or_else(Identity::current);
        Ok(Recheck {
            checker: Checker::new(map, roots, identity, Level::Exists),
        })
    }

    /// `Ok(fault)` when the file `db_path` (a `kind` of `asset`) is broken now, at `depth`, in
    /// a way a rebuild repairs; `Err(why)` otherwise (healthy, moved, not readable, or its
    /// original is broken too, so a rebuild has nothing to start from).
    pub(crate) fn broken(
        &mut self,
        asset: &AssetNow,
        kind: FileKind,
        db_path: &str,
        edited: bool,
        depth: Level,
    ) -> std::result::Result<Fault, String> {
        if kind.is_derivative() {
            // Immich rebuilds a derivative from the original: one that is gone leaves nothing.
            let Some(original) = &asset.original else {
                return Err("the asset has no original path: a rebuild has nothing to read".into());
            };
            let found = self.check(asset, FileKind::Original, original, false, Level::Exists);
            if let Some(f) = found {
                return Err(format!(
                    "its original is {} too: restore the original first, then rebuild",
                    f.0
                ));
            }
        }
        let level = depth.max(Level::Exists).min(Level::Full);
        match self.check(asset, kind, db_path, edited, level) {
            None => Err(format!(
                "re-checked now at the {} level: healthy; nothing to clear",
                level_name(level)
            )),
            Some((fault, Repair::Regenerate, _)) => Ok(fault),
            Some((fault, repair, detail)) => Err(format!(
                "re-checked now: {fault} ({detail}); repair {}, not a rebuild",
                repair.as_str()
            )),
        }
    }

    fn check(
        &mut self,
        asset: &AssetNow,
        kind: FileKind,
        db_path: &str,
        edited: bool,
        level: Level,
    ) -> Option<(Fault, Repair, String)> {
        self.checker.level = level;
        let row = AssetRow::one_file(
            Entity::Asset,
            asset.id.clone(),
            asset.owner_id.clone(),
            FileRef {
                kind,
                db_path: db_path.to_string(),
                edited,
            },
        );
        self.checker
            .check_row(&row)
            .into_iter()
            .next()
            .map(|f| (f.fault, f.repair, f.detail))
    }
}

fn level_name(l: Level) -> &'static str {
    match l {
        Level::Exists => "exists",
        Level::Quick => "quick",
        Level::Full => "full",
        Level::Hash => "hash",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_faults_are_checked_as_deep_as_they_were_found() {
        assert_eq!(depth_of(Fault::Missing), Level::Exists);
        assert_eq!(depth_of(Fault::Empty), Level::Exists);
        assert_eq!(depth_of(Fault::Truncated), Level::Quick);
        assert_eq!(depth_of(Fault::Corrupt), Level::Full);
    }
}
