//! The `--manifest FILE` store: what each file looked like the last time its content was read,
//! so that a rerun at a content level (`quick` and up) re-reads only files that changed, and a
//! file whose content changed while its size and mtime did not is reported as `bitrot`.
//!
//! # Why redb
//!
//! The manifest is a [redb](https://docs.rs/redb) database: one file, a copy-on-write B-tree
//! keyed by the host path. That choice is about three properties the scan needs:
//!
//! - **Crash safety.** A redb commit writes new pages and then flips a checksummed header:
//!   a crash (or `kill -9`, or a full disk) during a commit leaves the previous commit intact,
//!   and the next open recovers to it. The scan commits once per batch of rows, so an
//!   interrupted scan keeps everything up to its last batch and never leaves a half-written
//!   file behind. We never rewrite the file wholesale.
//! - **Concurrent readers.** Every rayon worker reads through one shared read snapshot (redb
//!   read transactions are MVCC snapshots and `Sync`); the updates of a batch are collected and
//!   written by the coordinating thread in one write transaction between batches, after which
//!   the snapshot is renewed (an old snapshot pins the pages later commits replace). Files are
//!   compared with what the previous runs recorded, never with half of this one.
//! - **Memory independent of library size.** Lookups walk the on-disk B-tree through a page
//!   cache capped at [`CACHE_BYTES`]; nothing is loaded up front, and the updates held in memory
//!   are those of one batch.
//!
//! An append-only log with an in-memory index would need memory per file, and compaction of
//! its own; SQLite would need a C library and a connection per worker. One process at a time
//! may hold a manifest open (redb takes a file lock): `--shard` runs need one manifest each.
//!
//! # Rules
//!
//! Each entry holds (size, mtime in ns, inode, blake3 of the content, SHA-1 when it was
//! computed, last verdict, level). With the manifest on, a file is **not read** when its entry
//! says it was healthy at a level at least as deep as this scan's and its size, mtime and inode
//! are unchanged (and, at `hash` and `full`, the SHA-1 stored for an original still equals Immich's
//! checksum). Every other file is read once, in 1 MiB blocks, computing blake3 (and the SHA-1
//! for `hash`) in the same pass; the format check then reads head and tail from the page cache.
//! With `verify` ([`crate::ScanOptions::verify_manifest`], CLI `--verify-manifest`) every file
//! is read.
//!
//! A file that is read, whose size and mtime equal the stored ones but whose blake3 differs, is
//! `bitrot`: the detail gives both hashes. Bitrot is found only when a file is read, so plain
//! `--manifest` runs are fast incremental runs and `--verify-manifest` runs are the periodic
//! scrub. A bitrot entry keeps the last good blake3, so the file is reported again on every
//! later run until it is restored. A more specific structural fault (`truncated`, `corrupt`)
//! wins over `bitrot` (the detail then says the content also changed silently); `bitrot` wins
//! over `checksum_mismatch`, since it is the narrower explanation (the detail gives the SHA-1 as
//! well).

use crate::error::{Error, Result};
use crate::fs::probe::Meta;
use crate::model::{Fault, Level};
use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};
use std::cell::Cell;
use std::io::Read;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once, RwLock};

/// Page cache of the manifest database.
pub const CACHE_BYTES: usize = 64 << 20;

const FILES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("files");
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
const FORMAT_KEY: &str = "format";
const FORMAT: &str = "immich-integrity manifest 1";
const REDB_MAGIC: &[u8] = b"redb\x1a\x0a\xa9\x0d\x0a";
/// Version byte in front of every encoded entry (1: without the verification time).
const ENTRY_V1: u8 = 1;
const ENTRY_V2: u8 = 2;
/// Where a time-limited run stopped: the next run resumes after this asset id.
const RESUME_KEY: &str = "resume_after";

/// What the manifest knows about one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// File size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Inode number (a changed inode means the file was replaced).
    pub ino: u64,
    /// blake3 of the content (for a `bitrot` file: of the last good content).
    pub blake3: [u8; 32],
    /// SHA-1 of the content, when it was computed (originals at `hash`).
    pub sha1: Option<[u8; 20]>,
    /// The last verdict: `None` = healthy.
    pub verdict: Option<Fault>,
    /// The level that verdict was reached at.
    pub level: Level,
    /// When the content was last read, seconds since the Unix epoch (0: unknown, an entry
    /// written before this was kept).
    pub verified_at: i64,
}

impl Entry {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(104);
        v.push(ENTRY_V2);
        v.extend(self.size.to_le_bytes());
        v.extend(self.mtime_ns.to_le_bytes());
        v.extend(self.ino.to_le_bytes());
        v.extend(self.blake3);
        match self.sha1 {
            Some(s) => {
                v.push(1);
                v.extend(s);
            }
            None => v.push(0),
        }
        // Names, not discriminants: new levels may be added between the existing ones.
        let verdict = self.verdict.map(|f| f.as_str()).unwrap_or("");
        let level = serde_json::to_value(self.level)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        for s in [verdict, level.as_str()] {
            v.push(s.len() as u8);
            v.extend(s.as_bytes());
        }
        v.extend(self.verified_at.to_le_bytes());
        v
    }

    /// `None` for anything this version cannot read (the entry is then treated as absent).
    fn decode(b: &[u8]) -> Option<Entry> {
        let mut r = Cursor(b);
        let version = r.take(1)?[0];
        if version != ENTRY_V1 && version != ENTRY_V2 {
            return None;
        }
        let size = u64::from_le_bytes(r.take(8)?.try_into().ok()?);
        let mtime_ns = i64::from_le_bytes(r.take(8)?.try_into().ok()?);
        let ino = u64::from_le_bytes(r.take(8)?.try_into().ok()?);
        let blake3: [u8; 32] = r.take(32)?.try_into().ok()?;
        let sha1 = match r.take(1)?[0] {
            0 => None,
            _ => Some(r.take(20)?.try_into().ok()?),
        };
        let name = |r: &mut Cursor| -> Option<String> {
            let n = r.take(1)?[0] as usize;
            String::from_utf8(r.take(n)?.to_vec()).ok()
        };
        let verdict = match name(&mut r)?.as_str() {
            "" => None,
            s => Some(serde_json::from_value(serde_json::Value::String(s.into())).ok()?),
        };
        let level = serde_json::from_value(serde_json::Value::String(name(&mut r)?)).ok()?;
        let verified_at = match version {
            ENTRY_V1 => 0,
            _ => i64::from_le_bytes(r.take(8)?.try_into().ok()?),
        };
        Some(Entry {
            size,
            mtime_ns,
            ino,
            blake3,
            sha1,
            verdict,
            level,
            verified_at,
        })
    }

    /// Healthy at `level` or deeper, and the file still has the same size, mtime and inode.
    fn unchanged_and_healthy(&self, level: Level, meta: &Meta) -> bool {
        self.verdict.is_none()
            && self.level >= level
            && self.size == meta.size
            && self.mtime_ns == meta.mtime_ns
            && self.ino == meta.ino
    }
}

struct Cursor<'a>(&'a [u8]);
impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (a, b) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = b;
        Some(a)
    }
}

/// An open manifest file.
pub struct Manifest {
    path: PathBuf,
    db: redb::Database,
}

impl std::fmt::Debug for Manifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manifest")
            .field("path", &self.path)
            .finish()
    }
}

impl Manifest {
    /// Opens `path`, creating it when it does not exist or is empty. A file that is not a
    /// manifest (anything else, a damaged database, another program's redb database) is an
    /// error and is left exactly as it was: it is never overwritten or "rebuilt".
    pub fn open(path: &Path) -> Result<Manifest> {
        match quietly(|| Manifest::open_inner(path)) {
            Ok(r) => r,
            Err(why) => Err(Error::Manifest {
                path: path.to_path_buf(),
                reason: format!(
                    "is damaged ({why}); it was left untouched (remove it to start a new manifest)"
                ),
            }),
        }
    }

    fn open_inner(path: &Path) -> Result<Manifest> {
        let err = |reason: String| Error::Manifest {
            path: path.to_path_buf(),
            reason,
        };
        let not_ours = "is not an immich-integrity manifest; it was left untouched \
                        (pass another path, or remove the file to start a new manifest)";
        match std::fs::File::open(path) {
            Ok(mut f) => {
                let mut head = [0u8; 9];
                let mut n = 0;
                while n < head.len() {
                    match f.read(&mut head[n..]) {
                        Ok(0) => break,
                        Ok(k) => n += k,
                        Err(e) => return Err(err(format!("cannot read: {e}"))),
                    }
                }
                if n > 0 && (n < REDB_MAGIC.len() || head[..] != *REDB_MAGIC) {
                    return Err(err(not_ours.into()));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(format!("cannot open: {e}"))),
        }
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => err(format!(
                    "is in use by another scan (one manifest per process; give each {} its \
                     own)",
                    crate::error::Hint::Shard
                )),
                redb::DatabaseError::Storage(redb::StorageError::Io(e)) => {
                    err(format!("cannot open: {e}"))
                }
                e => err(format!("{not_ours}: {e}")),
            })?;
        let m = Manifest {
            path: path.to_path_buf(),
            db,
        };
        m.check_format()?;
        Ok(m)
    }

    /// A new database gets our format marker; an existing one must carry it. Nothing is
    /// written to a database that turns out not to be ours.
    fn check_format(&self) -> Result<()> {
        let found = {
            let tx = self.db.begin_read().map_err(|e| self.err(e))?;
            let tables = tx.list_tables().map_err(|e| self.err(e))?.count();
            let found = match tx.open_table(META) {
                Ok(meta) => meta
                    .get(FORMAT_KEY)
                    .map_err(|e| self.err(e))?
                    .map(|v| v.value().to_string()),
                Err(redb::TableError::TableDoesNotExist(_)) => None,
                Err(e) => return Err(self.err(e)),
            };
            if found.is_none() && tables > 0 {
                return Err(Error::Manifest {
                    path: self.path.clone(),
                    reason: "is a redb database of another program, not an immich-integrity \
                             manifest; it was left untouched"
                        .into(),
                });
            }
            found
        };
        match found.as_deref() {
            Some(FORMAT) => Ok(()),
            Some(other) => Err(Error::Manifest {
                path: self.path.clone(),
                reason: format!(
                    "was written in format {other:?}, this version reads {FORMAT:?}; \
                     it was left untouched"
                ),
            }),
            None => {
                let tx = self.db.begin_write().map_err(|e| self.err(e))?;
                tx.open_table(META)
                    .map_err(|e| self.err(e))?
                    .insert(FORMAT_KEY, FORMAT)
                    .map_err(|e| self.err(e))?;
                tx.open_table(FILES).map_err(|e| self.err(e))?;
                tx.commit().map_err(|e| self.err(e))
            }
        }
    }

    fn err(&self, e: impl std::fmt::Display) -> Error {
        Error::Manifest {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }

    /// The manifest file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A read snapshot, shareable across threads.
    pub fn snapshot(&self) -> Result<Snapshot> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = tx.open_table(FILES).map_err(|e| self.err(e))?;
        Ok(Snapshot { table })
    }

    /// Writes entries in one transaction (all or nothing, durable when this returns).
    pub fn write(&self, entries: &[(PathBuf, Entry)]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        quietly(|| self.write_inner(entries, None))
            .unwrap_or_else(|why| Err(self.err(format!("is damaged: {why}"))))
    }

    fn write_inner(
        &self,
        entries: &[(PathBuf, Entry)],
        resume: Option<Option<&str>>,
    ) -> Result<()> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut t = tx.open_table(FILES).map_err(|e| self.err(e))?;
            for (p, e) in entries {
                t.insert(p.as_os_str().as_bytes(), e.encode().as_slice())
                    .map_err(|e| self.err(e))?;
            }
        }
        if let Some(resume) = resume {
            let mut meta = tx.open_table(META).map_err(|e| self.err(e))?;
            match resume {
                Some(id) => meta.insert(RESUME_KEY, id).map(|_| ()),
                None => meta.remove(RESUME_KEY).map(|_| ()),
            }
            .map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Writes entries and moves the resume point (`Some(None)`: clears it) in one
    /// transaction, so the point never runs ahead of the entries it stands for.
    pub fn write_resuming(
        &self,
        entries: &[(PathBuf, Entry)],
        resume: Option<Option<&str>>,
    ) -> Result<()> {
        if entries.is_empty() && resume.is_none() {
            return Ok(());
        }
        quietly(|| self.write_inner(entries, resume))
            .unwrap_or_else(|why| Err(self.err(format!("is damaged: {why}"))))
    }

    /// The asset id a time-limited run stopped after (the next run resumes after it).
    pub fn resume_after(&self) -> Result<Option<String>> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let meta = tx.open_table(META).map_err(|e| self.err(e))?;
        let v = meta.get(RESUME_KEY).map_err(|e| self.err(e))?;
        Ok(v.map(|v| v.value().to_string()))
    }

    /// How many files are recorded, and the oldest verification time among them (seconds
    /// since the epoch; entries of unknown time are left out). Reads every entry.
    pub fn coverage(&self) -> Result<(u64, Option<i64>)> {
        let snap = self.snapshot()?;
        let (mut n, mut oldest) = (0u64, None::<i64>);
        for item in snap.table.iter().map_err(|e| self.err(e))? {
            let (_, val) = item.map_err(|e| self.err(e))?;
            n += 1;
            if let Some(e) = Entry::decode(val.value()).filter(|e| e.verified_at > 0) {
                oldest = Some(oldest.map_or(e.verified_at, |o| o.min(e.verified_at)));
            }
        }
        Ok((n, oldest))
    }

    /// The entry stored for the host path `path`, if any (from a fresh snapshot).
    pub fn get(&self, path: &Path) -> Result<Option<Entry>> {
        Ok(self.snapshot()?.get(path))
    }

    /// Number of files recorded.
    pub fn len(&self) -> Result<u64> {
        self.snapshot()?.table.len().map_err(|e| self.err(e))
    }

    /// Whether no file is recorded yet.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Every entry, in path order (memory grows with the manifest: for tests and tools).
    pub fn entries(&self) -> Result<Vec<(PathBuf, Entry)>> {
        let snap = self.snapshot()?;
        let mut v = Vec::new();
        for item in snap.table.iter().map_err(|e| self.err(e))? {
            let (k, val) = item.map_err(|e| self.err(e))?;
            if let Some(e) = Entry::decode(val.value()) {
                v.push((
                    PathBuf::from(std::ffi::OsString::from_vec(k.value().to_vec())),
                    e,
                ));
            }
        }
        Ok(v)
    }
}

/// A read-only view of the manifest as it was when the scan started.
pub struct Snapshot {
    table: redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
}

impl Snapshot {
    /// The entry for `path`; `None` if absent or unreadable (then it is simply re-read).
    pub fn get(&self, path: &Path) -> Option<Entry> {
        quietly(|| {
            let v = self.table.get(path.as_os_str().as_bytes()).ok()??;
            Entry::decode(v.value())
        })
        .ok()
        .flatten()
    }
}

/// What the manifest says about a file before it is read (see [`Session::recall`]).
pub(crate) enum Recall {
    /// Unchanged and healthy at this level or deeper: the file need not be read.
    Vouched,
    /// The file must be read; the entry stored for it, if any.
    Read(Option<Entry>),
}

/// The manifest during one scan: the snapshot workers read, the updates of the current batch,
/// and the counters for the summary.
pub(crate) struct Session {
    /// Locked only by the thread that commits (and compacts at the end). `None` once the
    /// session finished: the file is closed then (its lock released for the next scan), even
    /// while a thread abandoned on a hung share still holds the session.
    pub(crate) manifest: Mutex<Option<Manifest>>,
    /// Renewed after each commit: a snapshot held for the whole scan would keep every page
    /// the commits replaced, and the file would grow by a copy of the tree per batch.
    /// `None` once the session finished (a thread abandoned on a hung share that comes back
    /// then reads nothing).
    snapshot: RwLock<Option<Snapshot>>,
    verify: bool,
    pending: Mutex<Vec<(PathBuf, Entry)>>,
    /// A move of the resume point to commit with the next flush (`Some(None)`: clear it).
    resume: Mutex<Option<Option<String>>>,
    /// Files not read because the manifest vouched for them.
    pub(crate) hits: AtomicU64,
    /// Files read although the manifest had an entry (changed, unhealthy, shallower, verify).
    pub(crate) rereads: AtomicU64,
    /// Files read that the manifest did not know.
    pub(crate) new: AtomicU64,
}

impl Session {
    pub(crate) fn open(path: &Path, verify: bool) -> Result<Session> {
        let manifest = Manifest::open(path)?;
        let snapshot = manifest.snapshot()?;
        Ok(Session {
            manifest: Mutex::new(Some(manifest)),
            snapshot: RwLock::new(Some(snapshot)),
            verify,
            pending: Mutex::new(Vec::new()),
            resume: Mutex::new(None),
            hits: AtomicU64::new(0),
            rereads: AtomicU64::new(0),
            new: AtomicU64::new(0),
        })
    }

    /// The next flush moves the resume point after `id` (`None`: clears it, the run reached
    /// the end).
    pub(crate) fn resume_after(&self, id: Option<String>) {
        *self.resume.lock().unwrap_or_else(|p| p.into_inner()) = Some(id);
    }

    /// Commits the updates collected so far.
    pub(crate) fn flush(&self) -> Result<()> {
        let batch = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        let resume = self.resume.lock().unwrap_or_else(|p| p.into_inner()).take();
        if batch.is_empty() && resume.is_none() {
            return Ok(());
        }
        let m = self.manifest.lock().unwrap_or_else(|p| p.into_inner());
        let Some(m) = m.as_ref() else {
            return Ok(()); // finished
        };
        m.write_resuming(&batch, resume.as_ref().map(|r| r.as_deref()))?;
        // Files of later batches were not touched by this one: they still see the last run.
        let fresh = m.snapshot()?;
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = Some(fresh);
        Ok(())
    }

    /// Commits what is left, then, if this scan wrote anything, compacts the file (gives back
    /// the pages the batch commits replaced), so it stays near the size of one tree.
    pub(crate) fn finish(&self) -> Result<()> {
        self.flush()?;
        // Compaction needs no read transaction open.
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = None;
        let Some(mut manifest) = self
            .manifest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        else {
            return Ok(());
        };
        if self.rereads.load(Ordering::Relaxed) + self.new.load(Ordering::Relaxed) == 0 {
            return Ok(()); // nothing was written
        }
        let path = manifest.path.clone();
        quietly(|| manifest.db.compact())
            .map_err(|why| Error::Manifest {
                path: path.clone(),
                reason: format!("is damaged: {why}"),
            })?
            .map_err(|e| Error::Manifest {
                path,
                reason: format!("cannot compact: {e}"),
            })?;
        Ok(())
    }

    /// What the manifest says about `host` before it is read, counted for the summary: with
    /// `verify` off, an entry that was healthy at `level` or deeper and whose size, mtime and
    /// inode are unchanged (and, when `want_sha1` is given, whose stored SHA-1 equals it)
    /// vouches for the file; otherwise the file is read, and the stored entry (if any) is
    /// handed back for comparison.
    pub(crate) fn recall(
        &self,
        host: &Path,
        level: Level,
        meta: &Meta,
        want_sha1: Option<&[u8]>,
    ) -> Recall {
        let old = self
            .snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(|s| s.get(host));
        if let Some(o) = old.as_ref().filter(|_| !self.verify) {
            let sha1_ok = match (want_sha1, o.sha1) {
                (None, _) => true,
                (Some(want), Some(have)) => have[..] == want[..],
                (Some(_), None) => false,
            };
            if o.unchanged_and_healthy(level, meta) && sha1_ok {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Recall::Vouched;
            }
        }
        let counter = if old.is_some() {
            &self.rereads
        } else {
            &self.new
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Recall::Read(old)
    }

    /// Records what reading `host` found, to be committed with the batch. `keep`: the stored
    /// entry whose hash is kept because the content changed silently (bitrot), so the file
    /// stays reported until it is restored; only its inode, verdict and level are updated.
    pub(crate) fn record(&self, host: PathBuf, seen: Entry, keep: Option<&Entry>) {
        let entry = match keep {
            Some(o) => Entry {
                ino: seen.ino,
                verdict: seen.verdict,
                level: seen.level,
                verified_at: seen.verified_at,
                ..o.clone()
            },
            None => seen,
        };
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((host, entry));
    }
}

thread_local! {
    static QUIET: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`, turning a panic into `Err(message)` without printing it. redb asserts on some
/// damaged files (e.g. one cut short) instead of returning an error; a manifest is user input,
/// so that must become a clear error, never a crash. On first use this installs a panic hook
/// that stays silent while the current thread is inside `quietly` and otherwise defers to the
/// hook that was installed before.
fn quietly<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                prev(info)
            }
        }));
    });
    let was = QUIET.with(|q| q.replace(true));
    let r = std::panic::catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(was));
    r.map_err(|p| {
        p.downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "internal error".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            size: 12345,
            mtime_ns: 1_700_000_000_123_456_789,
            ino: 42,
            blake3: [7; 32],
            sha1: Some([9; 20]),
            verdict: Some(Fault::Bitrot),
            level: Level::Hash,
            verified_at: 1_700_000_123,
        }
    }

    #[test]
    fn entries_round_trip_and_garbage_decodes_to_none() {
        let e = entry();
        assert_eq!(Entry::decode(&e.encode()), Some(e.clone()));
        let h = Entry {
            sha1: None,
            verdict: None,
            level: Level::Quick,
            ..e
        };
        assert_eq!(Entry::decode(&h.encode()), Some(h.clone()));
        let enc = h.encode();
        for cut in 0..enc.len() {
            assert_eq!(Entry::decode(&enc[..cut]), None, "cut at {cut}");
        }
        assert_eq!(Entry::decode(b"\x03garbage"), None);
        // An entry written before verification times were kept reads as of unknown time.
        let mut v1 = h.encode();
        v1[0] = ENTRY_V1;
        v1.truncate(v1.len() - 8);
        assert_eq!(
            Entry::decode(&v1),
            Some(Entry {
                verified_at: 0,
                ..h.clone()
            })
        );
    }

    #[test]
    fn writes_are_read_back_after_reopen_and_foreign_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.redb");
        {
            let m = Manifest::open(&p).unwrap();
            assert!(m.is_empty().unwrap());
            m.write(&[(PathBuf::from("/a/b.jpg"), entry())]).unwrap();
        }
        let m = Manifest::open(&p).unwrap();
        assert_eq!(m.get(Path::new("/a/b.jpg")).unwrap(), Some(entry()));
        assert_eq!(m.len().unwrap(), 1);
        // A second opener (another process or scan) is refused with a clear reason.
        let busy = Manifest::open(&p).unwrap_err().to_string();
        assert!(busy.contains("in use"), "{busy}");
        drop(m);

        let garbage = dir.path().join("photo.jpg");
        std::fs::write(&garbage, b"\xff\xd8\xff not a manifest at all").unwrap();
        let e = Manifest::open(&garbage).unwrap_err().to_string();
        assert!(e.contains("not an immich-integrity manifest"), "{e}");
        assert_eq!(
            std::fs::read(&garbage).unwrap(),
            b"\xff\xd8\xff not a manifest at all"
        );

        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        assert!(Manifest::open(&empty).unwrap().is_empty().unwrap());

        let foreign = dir.path().join("other.redb");
        {
            let db = redb::Database::create(&foreign).unwrap();
            let tx = db.begin_write().unwrap();
            tx.open_table(TableDefinition::<u64, u64>::new("stuff"))
                .unwrap()
                .insert(1, 2)
                .unwrap();
            tx.commit().unwrap();
        }
        let before = std::fs::read(&foreign).unwrap();
        let e = Manifest::open(&foreign).unwrap_err().to_string();
        assert!(e.contains("another program"), "{e}");
        assert_eq!(std::fs::read(&foreign).unwrap(), before);
    }
}
