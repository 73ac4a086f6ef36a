//! The per-file context: the values that travel together from the probe of one file to its
//! verdict.

use crate::fs::probe::{Meta, Root};
use crate::model::{AssetRow, FileKind};
use std::path::{Path, PathBuf};

/// One regular file being checked at a content level.
pub(crate) struct FileCtx<'a> {
    /// The row that points at it.
    pub(crate) row: &'a AssetRow,
    /// Which of the row's files it is.
    pub(crate) kind: FileKind,
    /// The root it was resolved beneath.
    pub(crate) root: &'a Root,
    /// Its path relative to that root.
    pub(crate) rel: &'a Path,
    /// Its host path, for findings.
    pub(crate) host: PathBuf,
    /// What `fstatat` said about it.
    pub(crate) meta: Meta,
}
