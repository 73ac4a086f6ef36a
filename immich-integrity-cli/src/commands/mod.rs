//! One file per command; each parses its own arguments (the shared ones are in `args`) and
//! returns its exit code.

pub(crate) mod doctor;
pub(crate) mod explain;
pub(crate) mod extras;
pub(crate) mod orphans;
pub(crate) mod regenerate;
pub(crate) mod relink;
pub(crate) mod restore_test;
pub(crate) mod scan;
pub(crate) mod undo;
