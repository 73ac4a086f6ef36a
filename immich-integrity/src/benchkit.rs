//! Hooks for the micro-benchmarks in `benches/hot.rs`: the hot pieces of a scan,
//! built from plain values so they can be timed without a database. Not a stable API.

use crate::check::Checker;
use crate::error::{Error, Result};
use crate::fs::access::Identity;
use crate::fs::pathmap::PathMap;
use crate::fs::roots::Roots;
use crate::model::{AssetRow, FileRef, Finding, Level};

pub use crate::db::rows::AssetColumns;

/// The per-row checker a scan runs on its worker threads.
pub struct RowChecker(Checker);

impl RowChecker {
    /// A checker for `map` at `level`, its roots opened as a scan opens them. `as_user`:
    /// whose read access to evaluate (`None`: this process's, root reads everything).
    pub fn new(map: PathMap, level: Level, as_user: Option<Identity>) -> Result<RowChecker> {
        let roots =
            Roots::open(&map).map_err(|(path, reason)| Error::MediaRoot { path, reason })?;
        let identity = as_user.unwrap_or_else(Identity::current);
        Ok(RowChecker(Checker::new(map, roots, identity, level)))
    }

    /// Every finding for one row, as a scan reports them.
    pub fn check_row(&self, row: &AssetRow) -> Vec<Finding> {
        self.0.check_row(row)
    }
}

/// Appends the files of an `asset_file` array column (`"type:edited:path"` items).
pub fn push_asset_files(list: Vec<String>, files: &mut Vec<FileRef>) {
    crate::db::rows::push_asset_files(list, files)
}
