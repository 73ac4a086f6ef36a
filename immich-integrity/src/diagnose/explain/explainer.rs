//! Explaining one row: what is on disk at the reported path now, what the database points at,
//! and which verdict that makes; then pairing rows that are two sides of one move.

use super::*;
use crate::check::Checker;
use crate::fs::blocks::sha1_reader;
use crate::fs::pathmap::Mapped;
use crate::fs::probe::Observation;
use crate::model::{AssetRow, Entity, Fault, FileKind, FileRef, Finding, Repair};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub(super) struct Explainer<'a> {
    pub(super) checker: &'a Checker,
    pub(super) referenced: &'a HashMap<String, Referrer>,
}

impl Explainer<'_> {
    pub(super) fn explain(&self, r: &ReportRow) -> Explanation {
        let mut e = Explanation {
            report_id: r.id.clone(),
            report_type: r.kind.clone(),
            path: r.path.clone(),
            asset_id: r.asset_id.clone(),
            file_asset_id: r.file_asset_id.clone(),
            file: None,
            verdict: Verdict::UnknownType,
            detail: String::new(),
            repair: Repair::None,
            relink_to: None,
            found_at: None,
            paired_row: None,
            scan_fault: None,
        };
        match r.kind.as_str() {
            "missing_file" => self.missing(r, &mut e),
            "checksum_mismatch" => self.checksum(r, &mut e),
            "untracked_file" => self.untracked(r, &mut e),
            other => {
                e.detail = format!(
                    "report type {other:?} is not one this version knows (missing_file, \
                     untracked_file, checksum_mismatch)"
                );
            }
        }
        e
    }

    /// The row the checker sees: the asset's facts with the report's path as its one file.
    pub(super) fn asset_row(&self, r: &ReportRow) -> (AssetRow, FileKind, bool) {
        let (kind, edited) = match r
            .file_type
            .as_deref()
            .and_then(FileKind::from_asset_file_type)
        {
            Some(k) => (k, r.file_edited),
            None => (FileKind::Original, false),
        };
        let a = r.asset.as_ref();
        let row = AssetRow {
            entity: Entity::Asset,
            id: r.asset_id.clone().unwrap_or_default(),
            owner_id: a.map(|a| a.owner_id.clone()).unwrap_or_default(),
            library_id: a.and_then(|a| a.library_id.clone()),
            asset_type: a.map(|a| a.asset_type.clone()).unwrap_or_default(),
            checksum: a.map(|a| a.checksum.clone()).filter(|c| !c.is_empty()),
            checksum_is_of_path: a.is_some_and(|a| a.checksum_is_of_path),
            original_size: a.and_then(|a| a.size).and_then(|s| u64::try_from(s).ok()),
            trashed: a.is_some_and(|a| a.trashed),
            files: vec![FileRef {
                kind,
                db_path: r.path.clone(),
                edited,
            }],
        };
        (row, kind, edited)
    }

    /// The missing mount `path` lives under, as a sentence, if its root is absent or empty.
    pub(super) fn missing_mount(&self, path: &str) -> Option<String> {
        let map = &self.checker.map;
        let (entry, rel) = match map.map(path) {
            Mapped::Host { entry, rel } | Mapped::StalePrefix { entry, rel, .. } => (entry, rel),
            _ => return None,
        };
        let e = &map.entries()[entry];
        let host = if e.media {
            let top = rel.components().next()?;
            e.host.join(top.as_os_str())
        } else {
            e.host.clone()
        };
        let m = self.checker.roots.missing.iter().find(|m| m.host == host)?;
        Some(format!(
            "{} (mapped from {}) is {}: the whole root is not mounted; mount it, or pass --map {}=HOST",
            m.host.display(),
            m.container,
            m.why,
            m.container
        ))
    }

    /// Runs the scan's checker at `exists` on the report's path. `Ok(())` when the file is
    /// healthy there; otherwise `e` is filled with the verdict and `Err(())` returned.
    pub(super) fn exists(&self, r: &ReportRow, e: &mut Explanation) -> std::result::Result<(), ()> {
        let (row, kind, _) = self.asset_row(r);
        e.file = Some(kind);
        if let Some(why) = self.missing_mount(&r.path) {
            e.verdict = Verdict::MountMissing;
            e.repair = Repair::Mount;
            e.scan_fault = Some(Fault::MountMissing);
            e.detail = why;
            return Err(());
        }
        let Some(f) = self.checker.check_row(&row).into_iter().next() else {
            return Ok(());
        };
        self.judge_finding(&r.path, f, e);
        Err(())
    }

    pub(super) fn judge_finding(&self, path: &str, f: Finding, e: &mut Explanation) {
        e.scan_fault = Some(f.fault);
        e.repair = f.repair;
        e.detail = f.detail;
        e.verdict = match f.fault {
            Fault::Moved => {
                e.relink_to = f.relink_to;
                e.found_at = f.found_at;
                let found = e.found_at.as_deref().unwrap_or("?");
                if matches!(self.checker.map.map(path), Mapped::StalePrefix { .. }) {
                    Verdict::StalePrefix
                } else if self.is_nested(path, e.found_at.as_deref()) {
                    e.detail = format!(
                        "not at the stored path; found one top folder too deep at {found} \
                         (a restore into upload/upload); {}",
                        e.detail
                    );
                    Verdict::Nested
                } else {
                    e.detail = format!("not at the stored path; found at {found}; {}", e.detail);
                    Verdict::Moved
                }
            }
            Fault::Missing => {
                e.detail = format!(
                    "{}, nor one top folder deeper or shallower: really missing",
                    e.detail
                );
                Verdict::Gone
            }
            Fault::PermissionDenied => Verdict::PermissionDenied,
            Fault::MountMissing => Verdict::MountMissing,
            _ => {
                e.detail = format!("the scan reports {}: {}", f.fault, e.detail);
                Verdict::Damaged
            }
        };
    }

    /// Whether the file was found one top folder too deep: `upload/upload/x` for `upload/x`.
    pub(super) fn is_nested(&self, path: &str, found_at: Option<&str>) -> bool {
        let (Mapped::Host { entry, rel }, Some(found)) = (self.checker.map.map(path), found_at)
        else {
            return false;
        };
        let Some(root) = self.root_host(entry) else {
            return false;
        };
        let Ok(found_rel) = Path::new(found).strip_prefix(&root) else {
            return false;
        };
        let mut parts = rel.components();
        let Some(top) = parts.next() else {
            return false;
        };
        found_rel
            == Path::new(top.as_os_str())
                .join(top.as_os_str())
                .join(parts.as_path())
    }

    pub(super) fn root_host(&self, entry: usize) -> Option<PathBuf> {
        self.checker
            .map
            .entries()
            .get(entry)
            .map(|e| e.host.clone())
    }

    pub(super) fn missing(&self, r: &ReportRow, e: &mut Explanation) {
        if self.exists(r, e).is_ok() {
            e.verdict = Verdict::AlreadyHealthy;
            e.repair = Repair::None;
            e.detail = "the file is at its stored path now and readable by the server's user; \
                        the row is stale (Immich's Refresh clears it)"
                .into();
        }
    }

    pub(super) fn checksum(&self, r: &ReportRow, e: &mut Explanation) {
        let Some(a) = &r.asset else {
            e.file = Some(FileKind::Original);
            e.verdict = Verdict::UnknownType;
            e.detail = "checksum_mismatch row names no asset; nothing to compare with".into();
            return;
        };
        if a.checksum_is_of_path {
            e.file = Some(FileKind::Original);
            e.verdict = Verdict::ChecksumOfPath;
            e.repair = Repair::None;
            e.detail = format!(
                "asset of external library {}: its checksum (sha1-path) hashes the path, not \
                 the content, so a content hash never matches it (Immich bug #29219); not a \
                 fault of the file",
                a.library_id.as_deref().unwrap_or("?")
            );
            return;
        }
        if self.exists(r, e).is_err() {
            return;
        }
        e.repair = Repair::None;
        let want = &a.checksum;
        match self.sha1_of(&r.path) {
            Ok((digest, n)) if digest.as_slice() == want.as_slice() => {
                e.verdict = Verdict::AlreadyHealthy;
                e.detail = format!(
                    "sha1 {} of the {n}-byte file matches Immich's checksum now; the row is \
                     stale (Immich's Refresh clears it)",
                    hex::encode(digest)
                );
            }
            Ok((digest, n)) => {
                e.verdict = Verdict::Bitrot;
                e.repair = Repair::RestoreFromBackup;
                e.scan_fault = Some(Fault::ChecksumMismatch);
                e.detail = format!(
                    "sha1 {} of the {n}-byte file, but Immich recorded {}{}: the content \
                     changed since upload",
                    hex::encode(digest),
                    hex::encode(want),
                    match a.size {
                        Some(s) if s as u64 != n => format!(" (and {s} bytes)"),
                        _ => String::new(),
                    }
                );
            }
            Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
                e.verdict = Verdict::PermissionDenied;
                e.repair = Repair::FixPermissions;
                e.scan_fault = Some(Fault::PermissionDenied);
                e.detail = format!("the file cannot be read: {err}");
            }
            Err(err) => {
                e.verdict = Verdict::Damaged;
                e.scan_fault = Some(Fault::Corrupt);
                e.detail = format!("the file cannot be read to hash it: {err}");
            }
        }
    }

    /// SHA-1 and length of the file at `path`, opened beneath its root.
    pub(super) fn sha1_of(&self, path: &str) -> std::io::Result<([u8; 20], u64)> {
        let (root, rel) = self.locate(path).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "no root covers the path")
        })?;
        let root = self
            .checker
            .roots
            .root_for(root, &rel, self.checker.map.entries()[root].media)
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "root missing"))?;
        sha1_reader(root.open_read(&rel)?)
    }

    /// The map entry and relative path of a stored path the map covers.
    pub(super) fn locate(&self, path: &str) -> Option<(usize, PathBuf)> {
        match self.checker.map.map(path) {
            Mapped::Host { entry, rel } | Mapped::StalePrefix { entry, rel, .. } => {
                Some((entry, rel))
            }
            _ => None,
        }
    }

    /// The host path `path` names, when the map covers it.
    pub(super) fn host_of(&self, path: &str) -> Option<PathBuf> {
        let (entry, rel) = self.locate(path)?;
        Some(self.checker.map.entries()[entry].host.join(rel))
    }

    pub(super) fn untracked(&self, r: &ReportRow, e: &mut Explanation) {
        // Pairs with missing rows are made after every row was explained (see `pair`).
        let referrer = spellings_of(&self.checker.map, &r.path)
            .iter()
            .find_map(|p| self.referenced.get(p).map(|x| (p.clone(), x.clone())));
        if let Some((stored, (kind, id))) = referrer {
            e.verdict = Verdict::AlreadyHealthy;
            e.file = kind.parse().ok();
            e.detail = format!(
                "{kind} of row {id} references this file now (stored as {stored}); the row is \
                 stale (Immich's Refresh clears it)"
            );
            return;
        }
        let seen = self.locate(&r.path).and_then(|(entry, rel)| {
            let media = self.checker.map.entries()[entry].media;
            if self.missing_mount(&r.path).is_some() {
                return None;
            }
            let root = self.checker.roots.root_for(entry, &rel, media)?;
            Some(root.observe(&rel))
        });
        match seen {
            Some(Observation::NotFound) => {
                e.verdict = Verdict::AlreadyHealthy;
                e.detail = "no file at this path any more; the row is stale (Immich's Refresh \
                            clears it)"
                    .into();
            }
            Some(Observation::File(meta)) => {
                e.verdict = Verdict::Untracked;
                e.detail = format!(
                    "a {}-byte file no row references, and no missing_file row's file was \
                     found here",
                    meta.size
                );
            }
            Some(other) => {
                e.verdict = Verdict::Untracked;
                e.detail = format!("no row references this path; it holds {other:?}");
            }
            None => {
                e.verdict = Verdict::Untracked;
                e.detail = "no row references this path, and it is outside every mapped root \
                            (pass --map CONTAINER=HOST to look at it)"
                    .into();
            }
        }
    }
}

/// Joins each `missing_file` row whose file was found elsewhere with the `untracked_file` row
/// Immich filed for that found copy: both name each other, and the untracked row takes the
/// missing row's verdict, relink target and repair.
pub(super) fn pair(checker: &Checker, ex: &mut [Explanation]) {
    let explainer = Explainer {
        checker,
        referenced: &HashMap::new(),
    };
    let mut by_host: HashMap<PathBuf, usize> = HashMap::new();
    for (i, e) in ex.iter().enumerate() {
        // Whatever its own verdict: the found copy of a stale-prefix row is also "referenced"
        // (under the old spelling), and naming the missing row says more.
        if e.report_type == "untracked_file" {
            if let Some(h) = explainer.host_of(&e.path) {
                by_host.insert(h, i);
            }
        }
    }
    let mut pairs = Vec::new();
    for (i, e) in ex.iter().enumerate() {
        if e.report_type != "missing_file" {
            continue;
        }
        if let Some(found) = &e.found_at {
            if let Some(&u) = by_host.get(Path::new(found)) {
                pairs.push((i, u));
                by_host.remove(Path::new(found));
            }
        }
    }
    for (m, u) in pairs {
        let missing = ex[m].clone();
        ex[m].paired_row = Some(ex[u].report_id.clone());
        let un = &mut ex[u];
        un.paired_row = Some(missing.report_id.clone());
        un.verdict = missing.verdict;
        un.repair = missing.repair;
        un.relink_to = missing.relink_to.clone();
        un.found_at = missing.found_at.clone();
        un.file = missing.file;
        un.asset_id = missing.asset_id.clone();
        un.scan_fault = missing.scan_fault;
        un.detail = format!(
            "the found copy of missing_file row {} ({}, asset {}): relink that row to {}",
            missing.report_id,
            missing.path,
            missing.asset_id.as_deref().unwrap_or("?"),
            missing.relink_to.as_deref().unwrap_or("?")
        );
    }
}
