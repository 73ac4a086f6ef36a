#![warn(missing_docs)]
//! # immich-integrity
//!
//! Tells an Immich administrator which photos and videos are broken and why.
//!
//! The pipeline is a short chain of plain data: a [`Source`] streams [`AssetRow`]s out of
//! Immich's PostgreSQL database in bounded, primary-key-ordered pages (inside one read-only
//! snapshot); a [`PathMap`] turns each stored path ([`FileRef`]) into a host path; the checker
//! observes every file in parallel on a rayon pool (one `fstatat` through a folder handle
//! resolved beneath its root, so nothing outside it is ever touched) and classifies what it
//! saw into a [`Fault`]; each [`Finding`] carries the [`Repair`] to apply and is handed, in
//! asset-id order, to an
//! [`Observer`]. The library never prints: progress and findings go through that trait, and
//! diagnostics are `tracing` events at debug level for the embedder's subscriber (if any).
//!
//! What is read is narrowed in SQL by [`SourceOptions`]: owners (ids or e-mail addresses),
//! one external library, file kinds, a row limit, a `since` date, the trash and a shard; asset
//! rows stream first, then persons (face thumbnails) and users (profile images). With
//! [`SourceOptions::count_total`] the source counts the selected rows in the same snapshot, so
//! each [`Progress`] carries a total for an ETA. The whole scan returns a [`Summary`]. The data
//! types ([`AssetRow`], [`FileRef`], [`Finding`], [`Fault`], [`Repair`], [`Summary`],
//! [`Progress`]) are plain structs and enums with `serde` derives, so a report can be stored
//! and read back (`relink --from` does). `examples/count_faults.rs` is a complete embedding in
//! a few lines.
//!
//! # What is public
//!
//! The stages (`db`, `fs`, `check`, `repair`, `diagnose`) are private folders; this page is
//! the whole face:
//! - the data: [`model`] ([`AssetRow`], [`Finding`], [`Fault`], [`Repair`], ...) and the
//!   error: [`error`] ([`Error`], and [`Hint`], how a message names the option to set);
//! - a scan: [`scan()`], [`ScanOptions`], [`Observer`], [`Summary`], and the pieces it is
//!   built from that an embedder may drive alone ([`Source`], [`SourceOptions`], [`PathMap`],
//!   [`Identity`], [`Manifest`]);
//! - the deeper checks on one file: [`formats`] (`quick`) and [`decode`] (`full`);
//! - the repairs: [`relink`], [`regenerate`] and the Immich client [`api`], each journaled
//!   before it writes, and undoable;
//! - the diagnostics: [`doctor`], [`orphans`], [`explain`] (Immich v3's `integrity_report`)
//!   and [`envfile`] (an install's `.env`).
//! - the restore test: [`restore`] checks a database dump against a media backup without
//!   restoring either.
//!
//! ```no_run
//! use immich_integrity::{scan, Finding, ScanOptions};
//! let mut opts = ScanOptions::new("postgres://postgres@127.0.0.1/immich");
//! opts.media_root = Some("/srv/immich/library".into());
//! let mut findings: Vec<Finding> = Vec::new();
//! let summary = scan(&mut opts, &mut findings).unwrap();
//! println!("{} files checked, {} faults", summary.files_checked, findings.len());
//! ```

mod check;
mod db;
mod diagnose;
mod fs;
mod repair;
pub mod restore;
mod scan;

#[doc(hidden)]
pub mod benchkit;
pub mod docker;
pub mod error;
pub mod model;

// The tools, each a module of its stage.
pub use check::{decode, formats, manifest};
pub use diagnose::{doctor, envfile, explain, next_steps, orphans};
pub use repair::{api, regenerate, relink};

// The types a scan is made of.
pub use check::engine::MAX_IN_FLIGHT;
pub use db::conn::{Library, SourceInfo};
pub use db::filters::{Shard, SourceOptions};
pub use db::schema::{PersonKey, Schema, Timestamps};
pub use db::source::{Next, Resumes, Source};
pub use db::sql::UncheckedPart;
pub use error::{Error, Hint, Result};
pub use fs::access::Identity;
pub use fs::pathmap::{MapEntry, Mapped, PathMap};
pub use fs::watch::DEFAULT_IO_TIMEOUT;
pub use fs::writes::{media_roots, refuse_inside_media, refuse_inside_roots};
pub use manifest::Manifest;
pub use model::{AssetRow, Entity, Fault, FileKind, FileRef, Finding, Level, Repair};
pub use repair::journal::{undo_journal, DbIdentity, JournalKind, UndoOptions, UndoReport};
pub use scan::{
    build_map, build_map_with_roots, scan, Completion, Coverage, Observer, Origins, Progress,
    RootUsed, ScanOptions, Summary, MAX_JOBS,
};
