//! Per-row checking: map each stored path, observe the file, and classify what was seen.
//! Classification happens here and only here, from the raw observation.

use super::context::FileCtx;
use crate::check::decode::{self, DecodeLimits, Decoded};
use crate::check::formats::{self, JpegFrame, Verdict};
use crate::fs::access::{Identity, READ, SEARCH};
use crate::fs::blocks::sha1_reader;
use crate::fs::pathmap::{Mapped, PathMap};
use crate::fs::probe::{Meta, Observation, Root};
use crate::fs::roots::Roots;
use crate::model::{AssetRow, Fault, FileKind, FileRef, Finding, Level, Repair};
use dashmap::DashMap;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Directory verdicts kept before the cache is dropped, so memory stays flat.
const DIR_CACHE_LIMIT: usize = 16_384;

/// Everything a worker needs, shared read-only across threads (the caches are concurrent).
pub struct Checker {
    pub map: PathMap,
    pub roots: Roots,
    /// Whose access to evaluate; `None` for root (reads everything).
    pub identity: Option<Identity>,
    pub level: Level,
    /// Directory metadata by (root host, dir), for the search-bit walk.
    dir_cache: DashMap<PathBuf, Option<Meta>>,
    pub files_checked: AtomicU64,
    pub bytes_read: AtomicU64,
    /// Originals whose checksum is of the path (external libraries), so not comparable.
    pub checksums_skipped: AtomicU64,
    /// `full` level: the limits every decode runs under.
    pub decode_limits: DecodeLimits,
    /// `full` level: files with no decoder here (format -> count); their `quick` verdict stands.
    pub decode_fallbacks: Mutex<BTreeMap<String, u64>>,
    /// `full` level: files decoded (format -> count), whatever the verdict.
    pub decoded: Mutex<BTreeMap<String, u64>>,
    /// `--manifest`: skip unchanged healthy files, detect bitrot (see `manifest.rs`).
    pub(crate) manifest: Option<crate::check::manifest::Session>,
    /// The pool sized to the cores that decodes and hashes for the I/O threads (see
    /// [`Checker::on_cpu`]); `None`: the calling thread does it.
    pub(crate) cpu: Option<rayon::ThreadPool>,
}

/// A fault before the repair is decided (that needs the whole row).
#[derive(Clone)]
pub(crate) struct Fault0 {
    pub(crate) fault: Fault,
    relink_to: Option<String>,
    host_path: Option<PathBuf>,
    found_at: Option<PathBuf>,
    pub(crate) detail: String,
}

impl Fault0 {
    pub(crate) fn new(
        fault: Fault,
        host_path: Option<PathBuf>,
        detail: impl Into<String>,
    ) -> Fault0 {
        Fault0 {
            fault,
            relink_to: None,
            host_path,
            found_at: None,
            detail: detail.into(),
        }
    }
}

impl Checker {
    pub fn new(map: PathMap, roots: Roots, identity: Identity, level: Level) -> Checker {
        Checker {
            map,
            roots,
            identity: (identity.uid != 0).then_some(identity),
            level,
            dir_cache: DashMap::new(),
            files_checked: AtomicU64::new(0),
            bytes_read: AtomicU64::new(0),
            checksums_skipped: AtomicU64::new(0),
            decode_limits: DecodeLimits::default(),
            decode_fallbacks: Mutex::new(BTreeMap::new()),
            decoded: Mutex::new(BTreeMap::new()),
            manifest: None,
            cpu: None,
        }
    }

    /// All findings for one row, in file order.
    pub fn check_row(&self, row: &AssetRow) -> Vec<Finding> {
        let mut raw: Vec<(&FileRef, Fault0)> = Vec::new();
        for f in &row.files {
            if let Ok(Some(fault)) = self.check_file(row, f) {
                raw.push((f, fault));
            }
        }
        findings(row, raw)
    }

    /// `Err(Some(root id))`: not checked, the root does not answer; `Err(None)`: not checked,
    /// under a missing mount (counted there).
    pub(super) fn check_file(
        &self,
        row: &AssetRow,
        f: &FileRef,
    ) -> Result<Option<Fault0>, Option<u64>> {
        if let Some(shown) = f.db_path.strip_prefix(crate::model::NOT_UTF8) {
            self.files_checked.fetch_add(1, Ordering::Relaxed);
            return Ok(Some(Fault0::new(
                Fault::Missing,
                None,
                format!(
                    "the stored path is not valid UTF-8 ({shown}, bytes that are not UTF-8 \
                     as \\ooo): Immich's server cannot open it; correct the row's path"
                ),
            )));
        }
        let (entry, rel, stale) = match self.map.map(&f.db_path) {
            Mapped::Host { entry, rel } => (entry, rel, None),
            Mapped::StalePrefix {
                entry,
                rel,
                active_db_path,
            } => (entry, rel, Some(active_db_path)),
            Mapped::Empty => {
                self.files_checked.fetch_add(1, Ordering::Relaxed);
                return Ok(Some(Fault0::new(
                    Fault::Missing,
                    None,
                    "empty path in the database",
                )));
            }
            Mapped::Escapes { .. } => {
                self.files_checked.fetch_add(1, Ordering::Relaxed);
                return Ok(Some(Fault0::new(
                    Fault::OutsideRoot,
                    None,
                    "the stored path climbs out of its root with '..'; not followed",
                )));
            }
            Mapped::Unmapped => {
                self.files_checked.fetch_add(1, Ordering::Relaxed);
                return Ok(Some(Fault0::new(
                    Fault::OutsideRoot,
                    None,
                    format!(
                        "not under the media location or any library import path \
                         (add {} CONTAINER=HOST if it is mounted elsewhere)",
                        crate::error::Hint::Maps
                    ),
                )));
            }
        };
        let media = self.map.entries()[entry].media;
        let Some(root) = self.roots.root_for(entry, &rel, media) else {
            return Err(None);
        };
        if root.health.is_unreachable() {
            return Err(Some(root.health.id));
        }
        self.files_checked.fetch_add(1, Ordering::Relaxed);
        let obs = root.observe(&rel);
        // The host path is only needed in a finding (or to read the file): a healthy file at
        // `exists` does not pay for building it.
        let host = || root.host.join(&rel);
        if let Some(active) = stale {
            return Ok(Some(self.stale_prefix(row, f, root, &rel, obs, &active)));
        }
        Ok(match obs {
            Observation::File(meta) => self.judge_file(row, f.kind, root, &rel, meta),
            Observation::NotFound => Some(self.missing(row, f, root, &rel, host(), media)),
            other => Some(judge_other(other, host())),
        })
    }

    fn judge_file(
        &self,
        row: &AssetRow,
        kind: FileKind,
        root: &Root,
        rel: &Path,
        meta: Meta,
    ) -> Option<Fault0> {
        let host = || root.host.join(rel);
        if let Some(why) = self.denied(root, rel, &meta) {
            return Some(Fault0::new(Fault::PermissionDenied, Some(host()), why));
        }
        if meta.size == 0 {
            return Some(Fault0::new(Fault::Empty, Some(host()), "file is 0 bytes"));
        }
        if self.level >= Level::Quick {
            let file = FileCtx {
                row,
                kind,
                root,
                rel,
                host: host(),
                meta,
            };
            if let Some(m) = &self.manifest {
                return self.through_manifest(m, file);
            }
            return self.quick(file, None);
        }
        None
    }

    /// Head and tail of the file: is it the format it claims, and was it written to the end?
    /// `sha1`: the content's SHA-1 when the caller already read the whole file.
    pub(crate) fn quick(&self, f: FileCtx<'_>, sha1: Option<[u8; 20]>) -> Option<Fault0> {
        let FileCtx {
            row,
            kind,
            root,
            rel,
            host,
            meta,
        } = f;
        let file = match root.open_read(rel) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return Some(Fault0::new(
                    Fault::PermissionDenied,
                    Some(host),
                    "the scanning user was refused read access (EACCES)",
                ))
            }
            Err(e) => {
                return Some(Fault0::new(
                    Fault::Corrupt,
                    Some(host),
                    format!("cannot open: {e}"),
                ))
            }
        };
        let ext = rel.extension().and_then(|e| e.to_str());
        let report = match formats::check(&file, meta.size, ext) {
            Ok(r) => r,
            Err(e) => {
                return Some(Fault0::new(
                    Fault::Corrupt,
                    Some(host),
                    format!("read error: {e}"),
                ))
            }
        };
        self.bytes_read
            .fetch_add(report.bytes_read, Ordering::Relaxed);
        // Head and tail are read by the format check: charged to the read-rate limit after.
        crate::fs::throttle::bytes(report.bytes_read);
        let note = report.note.map(|n| format!(" ({n})")).unwrap_or_default();
        let (fault, detail) = match report.verdict {
            Verdict::Truncated(d) => (Fault::Truncated, d),
            Verdict::Corrupt(d) => (Fault::Corrupt, d),
            // Precedence (README, Design notes): corrupt before size_mismatch before checksum_mismatch.
            Verdict::Ok => match self.full(&file, meta.size, report.format, report.jpeg) {
                Some(detail) => (Fault::Corrupt, detail),
                None => {
                    let f = FileCtx {
                        row,
                        kind,
                        root,
                        rel,
                        host,
                        meta,
                    };
                    return self.content_ok(f, Some((file, sha1)));
                }
            },
        };
        Some(Fault0::new(fault, Some(host), format!("{detail}{note}")))
    }

    /// The `full` level: the decode error, if the file does not decode.
    /// `jpeg`: what the `quick` check read from a JPEG's headers.
    fn full(
        &self,
        file: &std::fs::File,
        size: u64,
        format: formats::Format,
        jpeg: Option<JpegFrame>,
    ) -> Option<String> {
        if self.level < Level::Full {
            return None;
        }
        // A decode has its own time budget (the interrupt callback): the watchdog allows it.
        let r = self.on_cpu(|| {
            crate::fs::watch::with_grace(std::time::Duration::from_secs(35), || {
                decode::decode_after_quick(file, size, format, jpeg, &self.decode_limits)
            })
        });
        self.bytes_read.fetch_add(r.bytes_read, Ordering::Relaxed);
        let count = |m: &Mutex<BTreeMap<String, u64>>| {
            let mut m = m.lock().unwrap_or_else(|e| e.into_inner());
            *m.entry(format.name().to_string()).or_default() += 1;
        };
        crate::fs::throttle::bytes(r.bytes_read);
        match r.outcome {
            Decoded::Ok(_) => {
                count(&self.decoded);
                None
            }
            Decoded::Corrupt(detail) => {
                count(&self.decoded);
                Some(detail)
            }
            Decoded::Unsupported => {
                count(&self.decode_fallbacks);
                None
            }
        }
    }

    /// A file whose format checks out (or that the manifest vouches for): its size against
    /// Immich's record, then at `hash` its SHA-1. `read`: the open file and, when already
    /// computed, its SHA-1; `None` when the manifest's stored SHA-1 was already compared.
    pub(crate) fn content_ok(
        &self,
        f: FileCtx<'_>,
        read: Option<(std::fs::File, Option<[u8; 20]>)>,
    ) -> Option<Fault0> {
        let FileCtx {
            row,
            kind,
            host,
            meta,
            ..
        } = f;
        match row.original_size {
            Some(want) if kind == FileKind::Original && want != meta.size => Some(Fault0::new(
                Fault::SizeMismatch,
                Some(host),
                format!("file has {} bytes, Immich recorded {want}", meta.size),
            )),
            _ if self.level >= Level::Hash && kind == FileKind::Original => {
                self.hash(row, read, host, meta.size)
            }
            _ => None,
        }
    }

    /// SHA-1 of an original against `asset.checksum`.
    fn hash(
        &self,
        row: &AssetRow,
        read: Option<(std::fs::File, Option<[u8; 20]>)>,
        host: PathBuf,
        size: u64,
    ) -> Option<Fault0> {
        let want = match (&row.checksum, row.checksum_is_of_path) {
            (Some(sum), false) => sum,
            _ => {
                self.checksums_skipped.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        };
        let (file, known) = read?;
        let digest = match known {
            // Computed by the manifest's single read pass (which counted its bytes).
            Some(d) => Ok(Ok(d)),
            // A file that fits one read block is hashed where it was read: its SHA-1 costs
            // less than handing it to the CPU pool and waking the thread back (a fifth of a
            // `hash` scan of small files was that hand-off).
            None if size <= crate::fs::blocks::BLOCK as u64 => {
                self.sha1_unchanging(file, size, &host)
            }
            None => self.on_cpu(|| self.sha1_unchanging(file, size, &host)),
        };
        match digest {
            Ok(Err(changed)) => Some(changed),
            Ok(Ok(digest)) => (digest.as_slice() != want.as_slice()).then(|| {
                Fault0::new(
                    Fault::ChecksumMismatch,
                    Some(host),
                    format!(
                        "sha1 {} but Immich recorded {}",
                        hex::encode(digest),
                        hex::encode(want)
                    ),
                )
            }),
            Err(e) => Some(Fault0::new(
                Fault::Corrupt,
                Some(host),
                format!("read error: {e}"),
            )),
        }
    }

    /// SHA-1 of a file read here. A file written to or deleted while it is read gets a finding
    /// that says so (`Ok(Err(..))`), not a digest of bytes that were never one version of it.
    fn sha1_unchanging(
        &self,
        file: std::fs::File,
        size: u64,
        host: &Path,
    ) -> std::io::Result<Result<[u8; 20], Fault0>> {
        let handle = file.try_clone();
        let (digest, n) = sha1_reader(file)?;
        self.bytes_read.fetch_add(n, Ordering::Relaxed);
        let now = handle.and_then(|h| h.metadata());
        let (links, now_size) = match &now {
            Ok(m) => (std::os::unix::fs::MetadataExt::nlink(m), m.len()),
            Err(_) => (1, n),
        };
        if links == 0 {
            return Ok(Err(Fault0::new(
                Fault::Missing,
                Some(host.to_path_buf()),
                "the file was deleted while it was being hashed",
            )));
        }
        if n != size || now_size != size {
            return Ok(Err(Fault0::new(
                Fault::SizeMismatch,
                Some(host.to_path_buf()),
                format!(
                    "the file changed while it was being hashed ({size} bytes when opened, {n} \
                     read, {now_size} now): something is writing to it; rescan when it is quiet"
                ),
            )));
        }
        Ok(Ok(digest))
    }

    /// Why the configured identity cannot read `rel`, if it cannot.
    fn denied(&self, root: &Root, rel: &Path, meta: &Meta) -> Option<String> {
        let who = self.identity.as_ref()?;
        let mut dir = PathBuf::new();
        let parents = rel.parent().map(|p| p.components().count()).unwrap_or(0);
        for i in 0..=parents {
            if i > 0 {
                dir.push(rel.components().nth(i - 1)?);
            }
            let key = root.host.join(&dir);
            if self.dir_cache.len() > DIR_CACHE_LIMIT {
                // Bucket folders are countless in a big library: forget rather than grow.
                self.dir_cache.clear();
            }
            let m = *self
                .dir_cache
                .entry(key.clone())
                .or_insert_with(|| root.dir_meta(&dir));
            if let Some(m) = m {
                if !who.allows(m.mode, m.uid, m.gid, SEARCH) {
                    return Some(format!(
                        "directory {} (mode {:04o}, owner {}:{}) is not searchable by {who}",
                        key.display(),
                        m.mode,
                        m.uid,
                        m.gid
                    ));
                }
            }
        }
        if !who.allows(meta.mode, meta.uid, meta.gid, READ) {
            return Some(format!(
                "mode {:04o}, owner {}:{}: not readable by {who}",
                meta.mode, meta.uid, meta.gid
            ));
        }
        None
    }

    /// A missing file: look where known mistakes put it before calling it missing.
    fn missing(
        &self,
        row: &AssetRow,
        f: &FileRef,
        root: &Root,
        rel: &Path,
        host: PathBuf,
        media: bool,
    ) -> Fault0 {
        let mut rejected = None;
        for cand in candidates(rel, media) {
            if let Observation::File(meta) = root.observe(&cand) {
                let found = root.host.join(&cand);
                match self.matches(row, f.kind, &found, &meta) {
                    Ok(why) => {
                        let new_db = self.map_back(&f.db_path, rel, &cand);
                        return Fault0 {
                            fault: Fault::Moved,
                            relink_to: Some(new_db.clone()),
                            host_path: Some(host),
                            found_at: Some(found),
                            detail: format!("{why}; relink to {new_db}"),
                        };
                    }
                    Err(why) => rejected = Some(format!("{} {why}", found.display())),
                }
            }
        }
        let detail = match rejected {
            Some(r) => format!("no file at the stored path; a candidate was rejected: {r}"),
            None => "no file at the stored path".to_string(),
        };
        Fault0::new(Fault::Missing, Some(host), detail)
    }

    /// A row stored under a media spelling Immich no longer uses.
    fn stale_prefix(
        &self,
        row: &AssetRow,
        f: &FileRef,
        root: &Root,
        rel: &Path,
        obs: Observation,
        active: &str,
    ) -> Fault0 {
        let host = root.host.join(rel);
        let active_root = self.map.active_media().unwrap_or("?");
        match obs {
            Observation::File(meta) => match self.matches(row, f.kind, &host, &meta) {
                Ok(why) => Fault0 {
                    fault: Fault::Moved,
                    relink_to: Some(active.to_string()),
                    host_path: None,
                    found_at: Some(host),
                    detail: format!(
                        "stored with a media prefix the server no longer uses \
                         (media location is {active_root}); {why}; relink to {active}"
                    ),
                },
                Err(why) => Fault0::new(
                    Fault::Missing,
                    None,
                    format!("stale media prefix, and the file under {active_root} {why}"),
                ),
            },
            Observation::NotFound => {
                let mut x = self.missing(row, f, root, rel, host, true);
                x.detail = format!(
                    "stale media prefix (media location is {active_root}); {}",
                    x.detail
                );
                x
            }
            other => judge_other(other, host),
        }
    }

    /// Whether a candidate file is the one the row means.
    fn matches(
        &self,
        row: &AssetRow,
        kind: FileKind,
        path: &Path,
        meta: &Meta,
    ) -> Result<String, String> {
        if meta.size == 0 {
            return Err("is empty".into());
        }
        if kind != FileKind::Original {
            return Ok(format!(
                "found a {}-byte file (Immich records no size for {kind} files)",
                meta.size
            ));
        }
        if let Some(want) = row.original_size {
            return if want == meta.size {
                Ok(format!("size matches ({want} bytes)"))
            } else {
                Err(format!("has {} bytes, Immich recorded {want}", meta.size))
            };
        }
        match (&row.checksum, row.checksum_is_of_path) {
            (Some(sum), false) => match sha1_file(path) {
                Ok((digest, n)) => {
                    self.bytes_read.fetch_add(n, Ordering::Relaxed);
                    if digest.as_slice() == sum.as_slice() {
                        Ok("sha1 matches".into())
                    } else {
                        Err("has a different sha1".into())
                    }
                }
                Err(e) => Err(format!("could not be read: {e}")),
            },
            _ => Err("cannot be verified: no recorded size or content checksum".into()),
        }
    }

    /// The stored path a candidate would have, in the row's own spelling.
    fn map_back(&self, db_path: &str, rel: &Path, cand: &Path) -> String {
        let rel_s = rel.to_string_lossy();
        let cand_s = cand.to_string_lossy();
        match db_path.strip_suffix(rel_s.as_ref()) {
            Some(prefix) => format!("{prefix}{cand_s}"),
            None => cand_s.into_owned(),
        }
    }
}

/// The findings of a row from its raw faults: the repair of each depends on whether the
/// original is healthy.
pub(super) fn findings(row: &AssetRow, raw: Vec<(&FileRef, Fault0)>) -> Vec<Finding> {
    let original_ok = !raw.iter().any(|(f, _)| f.kind == FileKind::Original);
    raw.into_iter()
        .map(|(f, x)| {
            let (repair, extra) = repair_for(f.kind, x.fault, original_ok);
            let mut detail = x.detail;
            if let Some(extra) = extra {
                detail = format!("{detail}; {extra}");
            }
            if f.edited {
                detail.push_str(" (edited rendition)");
            }
            Finding {
                asset_id: Some(row.id.clone()),
                owner_id: Some(row.owner_id.clone()),
                file: Some(f.kind),
                db_path: Some(
                    f.db_path
                        .strip_prefix(crate::model::NOT_UTF8)
                        .unwrap_or(&f.db_path)
                        .to_string(),
                ),
                host_path: x.host_path.map(lossy),
                fault: x.fault,
                found_at: x.found_at.map(lossy),
                repair,
                detail,
                affected: None,
                relink_to: x.relink_to,
            }
        })
        .collect()
}

/// Where known mistakes put a file: a top folder doubled (`upload/upload/...`, a restore one
/// level too deep) or, the other way round, undoubled.
fn candidates(rel: &Path, media: bool) -> Vec<PathBuf> {
    let mut parts = rel.components();
    let Some(top) = parts.next() else {
        return Vec::new();
    };
    let rest = parts.as_path();
    let mut v = Vec::with_capacity(2);
    if media {
        v.push(Path::new(top.as_os_str()).join(top.as_os_str()).join(rest));
        if let Ok(inner) = rest.strip_prefix(top.as_os_str()) {
            v.push(Path::new(top.as_os_str()).join(inner));
        }
    }
    v
}

fn judge_other(obs: Observation, host: PathBuf) -> Fault0 {
    match obs {
        Observation::Escapes => Fault0::new(
            Fault::OutsideRoot,
            Some(host),
            "a symlink on the way points out of the root; not followed",
        ),
        Observation::AccessDenied => Fault0::new(
            Fault::PermissionDenied,
            Some(host),
            "the scanning user was refused access (EACCES)",
        ),
        Observation::NotRegular { what } => Fault0::new(
            Fault::NotAFile,
            Some(host),
            format!("a {what}, not a regular file"),
        ),
        Observation::SymlinkLoop => Fault0::new(
            Fault::NotAFile,
            Some(host),
            "a symlink loop, not a regular file",
        ),
        Observation::Other(e) => {
            Fault0::new(Fault::Missing, Some(host), format!("cannot stat: {e}"))
        }
        Observation::File(_) | Observation::NotFound => unreachable!("handled by the caller"),
    }
}

/// The repair for a fault, and a note when the obvious one does not apply.
fn repair_for(kind: FileKind, fault: Fault, original_ok: bool) -> (Repair, Option<&'static str>) {
    match fault {
        Fault::Moved => (Repair::Relink, None),
        Fault::PermissionDenied => (Repair::FixPermissions, None),
        Fault::OutsideRoot | Fault::MountMissing | Fault::Unreachable => (Repair::None, None),
        _ => match kind {
            FileKind::Original | FileKind::ProfileImage => (Repair::RestoreFromBackup, None),
            FileKind::Sidecar | FileKind::PersonThumbnail => (Repair::Regenerate, None),
            _ if original_ok => (Repair::Regenerate, None),
            _ => (
                Repair::RestoreFromBackup,
                Some("the original is broken too: restore it, then regenerate"),
            ),
        },
    }
}

fn sha1_file(path: &Path) -> std::io::Result<([u8; 20], u64)> {
    sha1_reader(std::fs::File::open(path)?)
}

fn lossy(p: PathBuf) -> String {
    p.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_double_and_undouble_the_top_folder() {
        assert_eq!(
            candidates(Path::new("upload/u/ab/x.jpg"), true),
            vec![PathBuf::from("upload/upload/u/ab/x.jpg")]
        );
        assert_eq!(
            candidates(Path::new("thumbs/thumbs/u/x.jpg"), true),
            vec![
                PathBuf::from("thumbs/thumbs/thumbs/u/x.jpg"),
                PathBuf::from("thumbs/u/x.jpg")
            ]
        );
        assert!(candidates(Path::new("2020/a.jpg"), false).is_empty());
    }

    #[test]
    fn repairs_follow_the_contract() {
        use FileKind::*;
        assert_eq!(
            repair_for(Preview, Fault::Missing, true).0,
            Repair::Regenerate
        );
        assert_eq!(
            repair_for(Preview, Fault::Missing, false).0,
            Repair::RestoreFromBackup
        );
        assert_eq!(
            repair_for(Original, Fault::Missing, true).0,
            Repair::RestoreFromBackup
        );
        assert_eq!(repair_for(Original, Fault::Moved, true).0, Repair::Relink);
        assert_eq!(
            repair_for(Thumbnail, Fault::PermissionDenied, true).0,
            Repair::FixPermissions
        );
    }
}
