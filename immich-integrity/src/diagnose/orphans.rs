//! Untracked files: files under Immich's media root that no row references.
//!
//! Three passes, none of which holds the table in memory:
//! 1. Stream every row (trashed ones too: their files are still referenced) and map each stored
//!    path to its place below the media root with the scan's own [`PathMap`]. Every spelling of
//!    the media root (`upload`, `/usr/src/app/upload`, `/data`) lands on the same relative path,
//!    so a prefix difference between rows and disk is not an orphan. Only a 128-bit hash of that
//!    relative path is kept, in a sorted `Vec<u128>`: 16 bytes per referenced file (16 MB per
//!    million, up to twice that while the vector grows), plus one "seen" bit per file.
//! 2. Walk the top folders (`upload`, `library`, `thumbs`, `encoded-video`, `profile`; never
//!    `backups`) of the media root, canonicalised once so that a root reached through a symlink
//!    gives the same relative paths, in parallel over the owner folders (rayon). A regular file
//!    whose hash is not in the set is an orphan; one whose hash is, sets its "seen" bit.
//!    Skipped: `.immich` markers, temporary files (`*.tmp`, as Immich names unfinished database
//!    backups), and anything that is not a regular file (directories, symlinks, FIFOs).
//! 3. Only when there are orphans: stream the rows again. A referenced file whose bit is unset
//!    is not where its row says; an orphan that matches it (size and, for originals whose
//!    checksum is of the content, SHA-1; by file name for derivatives, whose names carry the
//!    asset id) is reported as that row's `moved` candidate with the path to relink to.

use crate::db::filters::SourceOptions;
use crate::db::source::Source;
use crate::error::{Error, Result};
use crate::fs::pathmap::{Mapped, PathMap};
use crate::model::{AssetRow, FileKind};
pub use crate::model::{MovedCandidate, Orphan};
use crate::scan::{build_map, ScanOptions};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// The media-root folders that hold files rows point at (`backups` is left out on purpose).
pub const WALKED_FOLDERS: [&str; 5] = ["upload", "library", "thumbs", "encoded-video", "profile"];

/// Counters for the summary line.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OrphanSummary {
    /// Always `true`: marks this JSON line as the summary among the orphan lines.
    pub summary: bool,
    /// Label of the detected Immich schema generation.
    pub schema: String,
    /// The canonicalised media root that was walked.
    pub media_root: PathBuf,
    /// Distinct referenced paths below the media root.
    pub referenced_files: u64,
    /// Regular files looked at during the walk (excluded ones not counted).
    pub files_walked: u64,
    /// Regular files no row references.
    pub orphans: u64,
    /// Orphans matched to a row whose file is missing.
    pub moved_candidates: u64,
    /// `.immich` marker files skipped.
    pub excluded_markers: u64,
    /// Temporary files (`*.tmp`) skipped.
    pub excluded_temporary: u64,
    /// Directories are not counted; symlinks, FIFOs, sockets and devices are.
    pub not_regular: u64,
    /// Bytes held by the referenced-path set and its seen bits.
    pub set_bytes: u64,
    /// Wall-clock time of the whole search, in milliseconds.
    pub elapsed_ms: u64,
}

/// The result of [`find_orphans`]: orphans sorted by path, and the counters.
#[derive(Debug, Clone)]
pub struct OrphanReport {
    /// The untracked files, sorted by host path.
    pub orphans: Vec<Orphan>,
    /// The counters.
    pub summary: OrphanSummary,
}

/// 128 bits of blake3 over the bytes of a media-relative path.
pub(crate) fn key(rel: &Path) -> u128 {
    let h = blake3::hash(rel.as_os_str().as_bytes());
    u128::from_le_bytes(h.as_bytes()[..16].try_into().expect("16 bytes"))
}

/// Referenced paths: a sorted, deduplicated set of hashes with one "seen" bit each.
struct RefSet {
    keys: Vec<u128>,
    seen: Vec<AtomicU64>,
}

impl RefSet {
    fn new(mut keys: Vec<u128>) -> RefSet {
        keys.par_sort_unstable();
        keys.dedup();
        keys.shrink_to_fit();
        let seen = (0..keys.len().div_ceil(64))
            .map(|_| AtomicU64::new(0))
            .collect();
        RefSet { keys, seen }
    }
    fn index(&self, k: u128) -> Option<usize> {
        self.keys.binary_search(&k).ok()
    }
    fn mark(&self, i: usize) {
        self.seen[i / 64].fetch_or(1 << (i % 64), Ordering::Relaxed);
    }
    fn is_seen(&self, i: usize) -> bool {
        self.seen[i / 64].load(Ordering::Relaxed) & (1 << (i % 64)) != 0
    }
    fn bytes(&self) -> u64 {
        (self.keys.capacity() * 16 + self.seen.len() * 8) as u64
    }
}

/// How stored paths land below the media root.
pub(crate) struct Placer {
    map: PathMap,
    /// The canonical media root.
    root: PathBuf,
    /// Per map entry: its folder relative to the canonical media root, when it lies inside.
    prefix: Vec<Option<PathBuf>>,
}

impl Placer {
    pub(crate) fn new(map: PathMap, canon_root: &Path) -> Placer {
        let prefix = map
            .entries()
            .iter()
            .map(|e| {
                if e.media {
                    return Some(PathBuf::new());
                }
                let host = std::fs::canonicalize(&e.host).ok()?;
                host.strip_prefix(canon_root).ok().map(Path::to_path_buf)
            })
            .collect();
        Placer {
            map,
            root: canon_root.to_path_buf(),
            prefix,
        }
    }

    /// The path below the media root that `db_path` names, and the map entry used.
    pub(crate) fn place(&self, db_path: &str) -> Option<(PathBuf, usize)> {
        let (entry, rel) = match self.map.map(db_path) {
            Mapped::Host { entry, rel } | Mapped::StalePrefix { entry, rel, .. } => (entry, rel),
            _ => return None,
        };
        let prefix = self.prefix.get(entry)?.as_ref()?;
        let placed = prefix.join(&rel);
        let raw = rel.as_os_str().as_encoded_bytes();
        if raw.split(|&b| b == b'/').any(|c| c == b"..")
            || raw.ends_with(b"/")
            || raw.ends_with(b"/.")
        {
            // The stored path is kept as the kernel will read it (no lexical clean-up): ask the
            // kernel which file it names, if any. One that names nothing references nothing.
            let real = std::fs::canonicalize(self.root.join(&placed)).ok()?;
            if !real.is_file() {
                return None;
            }
            return Some((real.strip_prefix(&self.root).ok()?.to_path_buf(), entry));
        }
        Some((placed, entry))
    }
}

fn is_temporary(name: &[u8]) -> bool {
    name.ends_with(b".tmp")
}

/// Streams every row (including trashed) through `f`.
fn for_each_row(opts: &ScanOptions, mut f: impl FnMut(&AssetRow)) -> Result<()> {
    let mut source_opts: SourceOptions = opts.source.clone();
    source_opts.include_trashed = true;
    source_opts.shard = None;
    let mut source = Source::open(source_opts)?;
    for batch in source.by_ref() {
        for row in &batch? {
            f(row);
        }
    }
    refuse_partial(&source)
}

/// A referenced set with a part missing would list that part's files as untracked, and an
/// admin who deletes them loses them: refuse instead.
pub(crate) fn refuse_partial(source: &Source) -> Result<()> {
    let unchecked = source.unchecked();
    if unchecked.is_empty() {
        return Ok(());
    }
    Err(Error::UnknownSchema(format!(
        "the referenced files cannot all be read ({}), so files of those rows would be listed \
         as untracked; no list is given",
        unchecked
            .iter()
            .map(|u| format!("{}: {}", u.part, u.reason))
            .collect::<Vec<_>>()
            .join("; ")
    )))
}

/// One unit of the parallel walk: a folder walked recursively, or one loose file. A unit that
/// is itself a symlink is not followed (only the top folders may be links to other disks).
pub(crate) struct Unit {
    /// Host path to walk.
    path: PathBuf,
    /// Its path relative to the canonical media root.
    rel: PathBuf,
}

#[derive(Default)]
pub(crate) struct WalkOut {
    orphans: Vec<Orphan>,
    walked: u64,
    markers: u64,
    temporary: u64,
    not_regular: u64,
}

fn walk_unit(unit: &Unit, refs: &RefSet) -> WalkOut {
    let mut out = WalkOut::default();
    let kept = walk_files(unit, &mut out, |path, rel, size| {
        match refs.index(key(&rel)) {
            Some(i) => {
                refs.mark(i);
                None
            }
            None => Some(Orphan {
                path: path.to_path_buf(),
                rel: rel.to_string_lossy().into_owned(),
                size,
                moved_candidate: None,
            }),
        }
    });
    out.orphans = kept;
    out
}

/// Walks one unit: every regular file that is not a marker or a temporary file goes to `f`
/// (host path, path relative to the media root, size), which may return an orphan to keep;
/// the skipped ones are counted in `out`.
pub(crate) fn walk_files(
    unit: &Unit,
    out: &mut WalkOut,
    mut f: impl FnMut(&Path, PathBuf, u64) -> Option<Orphan>,
) -> Vec<Orphan> {
    let mut kept = Vec::new();
    for entry in walkdir::WalkDir::new(&unit.path)
        .follow_links(false)
        .follow_root_links(false)
    {
        let Ok(entry) = entry else {
            // An unreadable folder: its files cannot be listed (scan reports permissions).
            continue;
        };
        let ft = entry.file_type();
        if ft.is_dir() {
            continue;
        }
        let name = entry.file_name().as_bytes();
        if name == b".immich" {
            out.markers += 1;
            continue;
        }
        if is_temporary(name) {
            out.temporary += 1;
            continue;
        }
        // The walk root itself may be a loose file reached through `unit.path`.
        let rel = match entry.path().strip_prefix(&unit.path) {
            Ok(r) if r.as_os_str().is_empty() => unit.rel.clone(),
            Ok(r) => unit.rel.join(r),
            Err(_) => continue,
        };
        if !ft.is_file() {
            out.not_regular += 1;
            continue;
        }
        out.walked += 1;
        let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
        kept.extend(f(entry.path(), rel, size));
    }
    kept
}

/// The folders to walk: each top folder's children, so owners are walked in parallel.
pub(crate) fn units(canon_root: &Path) -> Vec<Unit> {
    let mut v = Vec::new();
    for top in WALKED_FOLDERS {
        let dir = canon_root.join(top);
        // A top folder that is a symlink to another disk is followed (it is the mount).
        if !dir.is_dir() {
            continue;
        }
        match std::fs::read_dir(&dir) {
            Ok(rd) => {
                for e in rd.flatten() {
                    v.push(Unit {
                        path: e.path(),
                        rel: Path::new(top).join(e.file_name()),
                    });
                }
            }
            Err(_) => continue,
        }
    }
    v
}

/// An orphan's SHA-1, computed at most once.
struct Hashes(Vec<OnceLock<Option<[u8; 20]>>>);

impl Hashes {
    fn get(&self, orphans: &[Orphan], i: usize) -> Option<[u8; 20]> {
        *self.0[i].get_or_init(|| {
            let f = std::fs::File::open(&orphans[i].path).ok()?;
            crate::fs::blocks::sha1_reader(f).ok().map(|(d, _)| d)
        })
    }
}

fn basename(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// The orphans indexed by size and by file name.
struct Index<'a> {
    orphans: &'a [Orphan],
    by_size: HashMap<u64, Vec<usize>>,
    by_name: HashMap<&'a str, Vec<usize>>,
    hashes: Hashes,
}

impl<'a> Index<'a> {
    fn new(orphans: &'a [Orphan]) -> Index<'a> {
        let mut by_size: HashMap<u64, Vec<usize>> = HashMap::new();
        let mut by_name: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, o) in orphans.iter().enumerate() {
            by_size.entry(o.size).or_default().push(i);
            by_name.entry(basename(&o.rel)).or_default().push(i);
        }
        let hashes = Hashes((0..orphans.len()).map(|_| OnceLock::new()).collect());
        Index {
            orphans,
            by_size,
            by_name,
            hashes,
        }
    }
}

/// Which orphan (if any) is the file `row` expects for `kind`, and why.
fn match_orphan(
    ix: &Index,
    claimed: &[bool],
    row: &AssetRow,
    kind: FileKind,
    db_path: &str,
) -> Option<(usize, String)> {
    let (orphans, by_size, by_name, hashes) = (ix.orphans, &ix.by_size, &ix.by_name, &ix.hashes);
    let content_sum = row
        .checksum
        .as_ref()
        .filter(|_| !row.checksum_is_of_path && kind == FileKind::Original);
    let sha1_ok = |i: usize| match content_sum {
        Some(sum) => hashes.get(orphans, i).is_some_and(|d| d.as_slice() == sum),
        None => true,
    };
    let free = |i: &&usize| !claimed[**i] && orphans[**i].size > 0;
    if kind == FileKind::Original {
        if let Some(size) = row.original_size {
            let i = *by_size
                .get(&size)?
                .iter()
                .filter(free)
                .find(|&&i| sha1_ok(i))?;
            let why = match content_sum {
                Some(_) => format!("size ({size} bytes) and sha1 match"),
                None => format!("size matches ({size} bytes)"),
            };
            return Some((i, why));
        }
        // No recorded size: the same file name, and the content checksum must match.
        content_sum?;
        let i = *by_name
            .get(basename(db_path))?
            .iter()
            .filter(free)
            .find(|&&i| sha1_ok(i))?;
        return Some((i, "same name and sha1 matches".into()));
    }
    // Derivatives, sidecars, faces and profile images: Immich records no size; their names
    // carry the asset (or person / upload) id, so the same name is the match.
    let i = *by_name.get(basename(db_path))?.iter().find(free)?;
    Some((
        i,
        format!(
            "same file name, {} bytes (Immich records no size for {kind} files)",
            orphans[i].size
        ),
    ))
}

/// Lists untracked files below the media root of `opts` (see the module notes).
pub fn find_orphans(opts: &ScanOptions) -> Result<OrphanReport> {
    let started = Instant::now();
    // A file is untracked only if *no* row references it: a filter or a shard would shrink the
    // referenced set and list referenced files as untracked, so they are refused.
    if opts.source.is_filtered() || opts.source.shard.is_some() {
        return Err(Error::InvalidArgument(format!(
            "orphans compares the files with every row of the database: {} and {} would leave \
             rows out and list their files as untracked; run it without them",
            crate::error::Hint::Filters,
            crate::error::Hint::Shard
        )));
    }
    crate::scan::check_jobs(opts.jobs)?;
    // Pass 1: the referenced set. The map needs the schema facts, so it is built from the
    // source's info before the first row is placed.
    let mut source_opts: SourceOptions = opts.source.clone();
    source_opts.include_trashed = true;
    source_opts.shard = None;
    let mut source = Source::open(source_opts)?;
    let info = source.info.clone();
    let map = build_map(opts, &info)?;
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
    let mut keys = Vec::new();
    for batch in source.by_ref() {
        for row in &batch? {
            for f in &row.files {
                if let Some((rel, _)) = placer.place(&f.db_path) {
                    keys.push(key(&rel));
                }
            }
        }
        if opts.cancel.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
    }
    refuse_partial(&source)?;
    drop(source);
    let refs = RefSet::new(keys);

    // Pass 2: the walk.
    let pool = crate::scan::worker_pool(opts.jobs, "walk")?;
    let parts: Vec<WalkOut> = pool.install(|| {
        units(&canon_root)
            .par_iter()
            .map(|u| walk_unit(u, &refs))
            .collect()
    });
    let mut summary = OrphanSummary {
        summary: true,
        schema: info.schema.label.clone(),
        media_root: canon_root.clone(),
        referenced_files: refs.keys.len() as u64,
        set_bytes: refs.bytes(),
        ..Default::default()
    };
    let mut orphans = Vec::new();
    for p in parts {
        summary.files_walked += p.walked;
        summary.excluded_markers += p.markers;
        summary.excluded_temporary += p.temporary;
        summary.not_regular += p.not_regular;
        orphans.extend(p.orphans);
    }
    orphans.sort_by(|a, b| a.path.cmp(&b.path));

    // Pass 3: rows whose file was not seen, matched against the orphans.
    if !orphans.is_empty() {
        let ix = Index::new(&orphans);
        let mut claimed = vec![false; orphans.len()];
        let mut found: Vec<(usize, MovedCandidate)> = Vec::new();
        for_each_row(opts, |row| {
            for f in &row.files {
                let Some((rel, entry)) = placer.place(&f.db_path) else {
                    continue;
                };
                let Some(i) = refs.index(key(&rel)) else {
                    continue;
                };
                if refs.is_seen(i) {
                    continue;
                }
                let Some((o, why)) = match_orphan(&ix, &claimed, row, f.kind, &f.db_path) else {
                    continue;
                };
                claimed[o] = true;
                let orphan_rel = Path::new(&ix.orphans[o].rel);
                let relink_to = if placer.map.entries()[entry].media {
                    placer.map.to_db_path(entry, orphan_rel)
                } else {
                    // Keep the row's own container prefix for a mapped folder inside the root.
                    let prefix = placer.prefix[entry].as_deref().unwrap_or(Path::new(""));
                    match orphan_rel.strip_prefix(prefix) {
                        Ok(r) => placer.map.to_db_path(entry, r),
                        Err(_) => continue,
                    }
                };
                found.push((
                    o,
                    MovedCandidate {
                        row_id: row.id.clone(),
                        owner_id: row.owner_id.clone(),
                        file: f.kind,
                        db_path: f.db_path.clone(),
                        detail: format!("{why}; relink to {relink_to}"),
                        relink_to,
                    },
                ));
            }
        })?;
        summary.moved_candidates = found.len() as u64;
        for (o, c) in found {
            orphans[o].moved_candidate = Some(c);
        }
    }
    summary.orphans = orphans.len() as u64;
    summary.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(OrphanReport { orphans, summary })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refset_marks_and_finds() {
        let a = key(Path::new("upload/u/ab/cd/x.jpg"));
        let b = key(Path::new("thumbs/u/ab/cd/y.webp"));
        let s = RefSet::new(vec![b, a, a]);
        assert_eq!(s.keys.len(), 2);
        let i = s.index(a).unwrap();
        assert!(!s.is_seen(i));
        s.mark(i);
        assert!(s.is_seen(i));
        assert!(!s.is_seen(s.index(b).unwrap()));
        assert!(s.index(key(Path::new("upload/u/ab/cd/z.jpg"))).is_none());
    }

    #[test]
    fn every_media_spelling_lands_on_one_relative_path() {
        let t = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(t.path()).unwrap();
        let mut map = PathMap::new();
        map.add_media_root("/data", &root);
        let p = Placer::new(map, &root);
        let want = PathBuf::from("upload/u/ab/x.jpg");
        for stored in [
            "/data/upload/u/ab/x.jpg",
            "/usr/src/app/upload/upload/u/ab/x.jpg",
            "upload/upload/u/ab/x.jpg",
        ] {
            assert_eq!(p.place(stored).map(|x| x.0), Some(want.clone()), "{stored}");
        }
        // `..` and a trailing slash are left to the kernel: `zz/..` names the file only when
        // `zz` exists, and `x.jpg/` never names a file.
        std::fs::create_dir_all(root.join("upload/u/ab")).unwrap();
        std::fs::write(root.join("upload/u/ab/x.jpg"), b"x").unwrap();
        assert_eq!(p.place("/data/upload/u/zz/../ab/x.jpg"), None);
        std::fs::create_dir_all(root.join("upload/u/zz")).unwrap();
        assert_eq!(
            p.place("/data/upload/u/zz/../ab/x.jpg").map(|x| x.0),
            Some(want.clone())
        );
        assert_eq!(p.place("/data/upload/u/ab/x.jpg/"), None);
        assert_eq!(p.place("/mnt/elsewhere/x.jpg"), None);
    }

    #[test]
    fn temporary_names() {
        assert!(is_temporary(b"immich-db-backup-1.sql.gz.tmp"));
        assert!(!is_temporary(b"x.jpg"));
    }
}
