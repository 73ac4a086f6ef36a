//! One look at one file: what the filesystem says, before any judgement.
//!
//! Files are opened with `openat2(O_PATH, RESOLVE_BENEATH)` relative to a handle on their root:
//! the kernel itself refuses any `..` or symlink that leaves the root (EXDEV), a FIFO is never
//! opened for reading (O_PATH), and one `fstat` on the handle gives type, size, owner and mode.
//!
//! [`Root::observe`] saves most of those syscalls: it opens the file's *directory* that way
//! (kept in a small cache of recently used directory handles, [`DIR_CACHE`] entries) and
//! `fstatat`s the last name in it without following a symlink. The directory handle was
//! resolved beneath the root, and a last name that is a symlink goes the whole-path way
//! above, so what may be reached is exactly the same; a hit costs one syscall instead of
//! three (`openat2`, `fstat`, `close`), and the path walk is one name instead of five.

use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Directory handles a [`Root`] keeps per worker thread (oldest dropped first). Consecutive
/// rows in asset-id order share thumbnail folders (`thumbs/<user>/<id[0..2]>/<id[2..4]>`),
/// and a row's preview and thumbnail always share one; a handle is held only for as long as a
/// few dozen other folders are visited.
pub const DIR_CACHE: usize = 32;

/// How long a cached directory handle is trusted. A handle follows its folder's inode, so a
/// folder renamed away and replaced (by a symlink out of the root, say) during a scan would be
/// looked through for as long as the handle stayed cached; past this age it is opened again by
/// its path, so such a swap is seen within this time, as any change is after its file was
/// checked.
const DIR_TTL: std::time::Duration = std::time::Duration::from_millis(500);

/// Paths longer than this take the whole-path route (which walks them in pieces).
const DIR_CACHE_MAX_PATH: usize = 3072;

fn beneath(at: &OwnedFd, rel: &Path, flags: OFlags) -> Result<OwnedFd, Errno> {
    rustix::fs::openat2(
        at,
        rel,
        flags | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
    )
}

/// The raw observation the classifier judges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// A regular file, with its metadata.
    File(Meta),
    /// Something other than a regular file.
    NotRegular {
        /// What it is (`directory`, `symlink`, ...).
        what: &'static str,
    },
    /// Nothing at the path.
    NotFound,
    /// A symlink or `..` on the way leaves the root.
    Escapes,
    /// The tool itself was refused (EACCES).
    AccessDenied,
    /// Too many symlink levels.
    SymlinkLoop,
    /// Any other error, as text.
    Other(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// `fstat` facts about a regular file.
pub struct Meta {
    /// Size in bytes.
    pub size: u64,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Modification time in nanoseconds since the epoch (for the manifest).
    pub mtime_ns: i64,
    /// Inode number (for the manifest: a replaced file gets a new one).
    pub ino: u64,
}

/// An open handle on a root folder that files are resolved beneath.
#[derive(Debug)]
pub struct Root {
    /// The host folder.
    pub host: PathBuf,
    fd: OwnedFd,
    /// One ring per worker thread (threads pick a slot once; see [`thread_slot`]), so that
    /// workers neither wait for each other's lock nor evict each other's folders.
    dirs: Box<[Mutex<DirRing>]>,
    /// Whether it still answers (see [`crate::fs::watch`]); every operation announces itself
    /// to the watchdog with this root's id first.
    pub(crate) health: crate::fs::watch::RootHealth,
}

/// Ids of roots for the watchdog.
static NEXT_ROOT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Rings per root: more than the worker threads of any machine this runs on, usually.
const DIR_SLOTS: usize = 16;

/// This thread's ring index, assigned round-robin on first use.
fn thread_slot() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed) % DIR_SLOTS;
    }
    SLOT.with(|s| *s)
}

/// Recently used directory handles beneath a root, by path (see [`DIR_CACHE`]).
#[derive(Debug, Default)]
struct DirRing {
    slots: Vec<CachedDir>,
    /// Where the next new handle goes once the ring is full.
    next: usize,
}

/// One cached handle: the hash of its path, the path, the handle and when it was opened.
#[derive(Debug)]
struct CachedDir {
    hash: u64,
    dir: Box<[u8]>,
    fd: Arc<OwnedFd>,
    opened: Instant,
}

impl DirRing {
    /// The handle on `dir`, unless it is older than [`DIR_TTL`].
    fn get(&self, hash: u64, dir: &[u8], now: Instant) -> Option<Arc<OwnedFd>> {
        self.slots
            .iter()
            .find(|c| c.hash == hash && &*c.dir == dir && now.duration_since(c.opened) < DIR_TTL)
            .map(|c| c.fd.clone())
    }

    fn put(&mut self, hash: u64, dir: &[u8], fd: Arc<OwnedFd>, now: Instant) {
        // A stale handle on the same folder is replaced in place.
        if let Some(old) = self
            .slots
            .iter_mut()
            .find(|c| c.hash == hash && &*c.dir == dir)
        {
            old.fd = fd;
            old.opened = now;
            return;
        }
        let slot = CachedDir {
            hash,
            dir: Box::from(dir),
            fd,
            opened: now,
        };
        if self.slots.len() < DIR_CACHE {
            self.slots.push(slot);
        } else {
            // Dropping the old handle closes it once no worker is still using it.
            self.slots[self.next] = slot;
            self.next = (self.next + 1) % DIR_CACHE;
        }
    }
}

/// FNV-1a: cheap, and only has to tell a few dozen folder names apart.
fn path_hash(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &c| {
        (h ^ u64::from(c)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl Root {
    /// Opens `host` as a directory to resolve paths beneath.
    pub fn open(host: &Path) -> std::io::Result<Root> {
        let fd = rustix::fs::open(
            host,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root {
            host: host.to_path_buf(),
            fd,
            dirs: (0..DIR_SLOTS)
                .map(|_| Mutex::new(DirRing::default()))
                .collect(),
            health: crate::fs::watch::RootHealth::new(
                NEXT_ROOT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            ),
        })
    }

    /// The one way anything is opened: relative to the root handle, and the kernel refuses
    /// any `..` or symlink that would leave it (EXDEV).
    fn open_beneath(&self, rel: &Path, flags: OFlags) -> Result<OwnedFd, Errno> {
        match beneath(&self.fd, rel, flags) {
            // Longer than PATH_MAX: walk it in pieces, each resolved beneath the last.
            Err(Errno::NAMETOOLONG) => self.open_long(rel, flags),
            r => r,
        }
    }

    /// `open_beneath` for a path longer than the kernel takes in one call: the directories
    /// are opened a few thousand bytes at a time, each piece beneath the directory before it,
    /// so nothing can leave the root here either (a piece cannot even climb above its own
    /// start). A single name longer than NAME_MAX still fails with ENAMETOOLONG.
    fn open_long(&self, rel: &Path, flags: OFlags) -> Result<OwnedFd, Errno> {
        const PIECE: usize = 3072;
        let mut pieces: Vec<PathBuf> = vec![PathBuf::new()];
        for c in rel.components() {
            let last = pieces.last_mut().expect("never empty");
            let len = last.as_os_str().len() + 1 + c.as_os_str().len();
            if !last.as_os_str().is_empty() && len > PIECE {
                pieces.push(PathBuf::from(c.as_os_str()));
            } else {
                last.push(c.as_os_str());
            }
        }
        let (file, dirs) = pieces.split_last().expect("never empty");
        let mut dir: Option<OwnedFd> = None;
        for d in dirs {
            let at = dir.as_ref().unwrap_or(&self.fd);
            dir = Some(beneath(at, d, OFlags::PATH | OFlags::DIRECTORY)?);
        }
        beneath(dir.as_ref().unwrap_or(&self.fd), file, flags)
    }

    /// Looks at `rel` beneath this root. Never follows anything out of it.
    pub fn observe(&self, rel: &Path) -> Observation {
        crate::fs::watch::touch(self.health.id);
        if rel.as_os_str().is_empty() {
            return Observation::NotRegular { what: "directory" };
        }
        self.observe_in_dir(rel)
            .unwrap_or_else(|| self.observe_whole_path(rel))
    }

    /// `observe` the long way: `openat2(O_PATH, RESOLVE_BENEATH)` of the whole path, `fstat`.
    pub fn observe_whole_path(&self, rel: &Path) -> Observation {
        crate::fs::watch::touch(self.health.id);
        match self
            .open_beneath(rel, OFlags::PATH)
            .and_then(|fd| rustix::fs::fstat(&fd))
        {
            Ok(st) => meta_observation(&st),
            Err(e) => from_errno(e),
        }
    }

    /// `observe` through a cached handle on the file's directory: `fstatat(dir, name,
    /// AT_SYMLINK_NOFOLLOW)`. `None` when the whole path must be taken instead: the last name
    /// is a symlink (to be followed beneath the root, or refused), `.` or `..`, or the path is
    /// long.
    fn observe_in_dir(&self, rel: &Path) -> Option<Observation> {
        let bytes = rel.as_os_str().as_bytes();
        if bytes.len() > DIR_CACHE_MAX_PATH {
            return None;
        }
        let (dir, name) = match bytes.iter().rposition(|&b| b == b'/') {
            Some(i) => (&bytes[..i], &bytes[i + 1..]),
            None => (&b""[..], bytes),
        };
        if matches!(name, b"" | b"." | b"..") || dir.is_empty() {
            // A file right under the root: the whole path is one name anyway.
            return None;
        }
        let fd = match self.dir_handle(dir) {
            Ok(fd) => fd,
            // The directory is not there (or not a directory, or leaves the root): so is the
            // file, for the same reason the whole-path open would have given.
            Err(e) => return Some(from_errno(e)),
        };
        let name = std::ffi::OsStr::from_bytes(name);
        match rustix::fs::statat(fd.as_fd(), name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => None,
            Ok(st) => Some(meta_observation(&st)),
            Err(e) => Some(from_errno(e)),
        }
    }

    /// A handle on directory `dir` (relative, resolved beneath the root), from the cache or
    /// opened now.
    fn dir_handle(&self, dir: &[u8]) -> Result<Arc<OwnedFd>, Errno> {
        let hash = path_hash(dir);
        let ring = &self.dirs[thread_slot()];
        let now = Instant::now();
        if let Some(fd) = ring.lock().ok().and_then(|d| d.get(hash, dir, now)) {
            return Ok(fd);
        }
        let path = Path::new(std::ffi::OsStr::from_bytes(dir));
        let whole = || self.open_beneath(path, OFlags::PATH | OFlags::DIRECTORY);
        // Through the parent's handle (cached too): one name to resolve instead of the whole
        // path, which on a share without attribute caching is one round trip instead of
        // five. Beneath the parent is beneath the root; anything the parent-relative open
        // refuses or cannot find is left to the whole path, so what is reached is the same.
        let fd = match dir.iter().rposition(|&b| b == b'/') {
            Some(i) if i > 0 && !matches!(&dir[i + 1..], b"" | b"." | b"..") => {
                let name = Path::new(std::ffi::OsStr::from_bytes(&dir[i + 1..]));
                match self.dir_handle(&dir[..i]) {
                    Ok(parent) => match beneath(&parent, name, OFlags::PATH | OFlags::DIRECTORY) {
                        Ok(fd) => fd,
                        Err(_) => whole()?,
                    },
                    Err(_) => whole()?,
                }
            }
            _ => whole()?,
        };
        let fd = Arc::new(fd);
        if let Ok(mut d) = ring.lock() {
            d.put(hash, dir, fd.clone(), now);
        }
        Ok(fd)
    }

    /// Opens `rel` for reading, still beneath the root. `O_NONBLOCK` so that a file swapped
    /// for a FIFO since it was observed cannot hang the worker.
    /// The file is opened through its folder's cached handle when it can be (one name to
    /// resolve, as in [`Root::observe`]); anything that open refuses is left to the whole path.
    pub fn open_read(&self, rel: &Path) -> std::io::Result<std::fs::File> {
        crate::fs::watch::touch(self.health.id);
        let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY;
        let bytes = rel.as_os_str().as_bytes();
        if let Some(i) = bytes.iter().rposition(|&b| b == b'/') {
            let name = &bytes[i + 1..];
            if i > 0 && bytes.len() <= DIR_CACHE_MAX_PATH && !matches!(name, b"" | b"." | b"..") {
                if let Ok(dir) = self.dir_handle(&bytes[..i]) {
                    let name = Path::new(std::ffi::OsStr::from_bytes(name));
                    if let Ok(fd) = beneath(&dir, name, flags) {
                        return Ok(std::fs::File::from(fd));
                    }
                }
            }
        }
        let fd = self.open_beneath(rel, flags)?;
        Ok(std::fs::File::from(fd))
    }

    /// Metadata of a directory beneath the root (for the search-bit walk).
    pub fn dir_meta(&self, rel: &Path) -> Option<Meta> {
        crate::fs::watch::touch(self.health.id);
        let st = if rel.as_os_str().is_empty() {
            rustix::fs::fstat(&self.fd)
        } else {
            self.open_beneath(rel, OFlags::PATH)
                .and_then(|fd| rustix::fs::fstat(&fd))
        };
        st.ok().map(|st| meta(&st))
    }
}

// The field types of `stat` differ between targets; the casts are no-ops only on some.
#[allow(clippy::unnecessary_cast)]
fn meta(st: &rustix::fs::Stat) -> Meta {
    Meta {
        size: st.st_size as u64,
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        mtime_ns: (st.st_mtime as i64)
            .saturating_mul(1_000_000_000)
            .saturating_add(st.st_mtime_nsec as i64),
        ino: st.st_ino as u64,
    }
}

fn meta_observation(st: &rustix::fs::Stat) -> Observation {
    let what = match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => return Observation::File(meta(st)),
        FileType::Directory => "directory",
        FileType::Fifo => "FIFO",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        FileType::Symlink => "symlink",
        FileType::Unknown => "unknown file type",
    };
    Observation::NotRegular { what }
}

fn from_errno(e: Errno) -> Observation {
    match e {
        Errno::NOENT | Errno::NOTDIR => Observation::NotFound,
        Errno::XDEV => Observation::Escapes,
        Errno::ACCESS | Errno::PERM => Observation::AccessDenied,
        Errno::LOOP => Observation::SymlinkLoop,
        Errno::NAMETOOLONG => Observation::Other("name too long".into()),
        e => Observation::Other(std::io::Error::from(e).to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn a_folder_swapped_for_a_symlink_out_of_the_root_is_seen_once_its_handle_expires() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("upload/u/ab")).unwrap();
        std::fs::write(root.join("upload/u/ab/x.jpg"), b"abc").unwrap();
        let r = Root::open(&root).unwrap();
        let rel = Path::new("upload/u/ab/x.jpg");
        assert!(matches!(r.observe(rel), Observation::File(_)));
        // The folder moves out of the root and a symlink to it takes its place.
        std::fs::rename(root.join("upload/u/ab"), dir.path().join("ab")).unwrap();
        symlink(dir.path().join("ab"), root.join("upload/u/ab")).unwrap();
        std::thread::sleep(DIR_TTL + std::time::Duration::from_millis(50));
        assert_eq!(r.observe(rel), Observation::Escapes);
        // Swapped back: seen again the same way.
        std::fs::remove_file(root.join("upload/u/ab")).unwrap();
        std::fs::create_dir(root.join("upload/u/ab")).unwrap();
        std::thread::sleep(DIR_TTL + std::time::Duration::from_millis(50));
        assert_eq!(r.observe(rel), Observation::NotFound);
    }

    #[test]
    fn observes_files_dirs_fifos_and_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("a")).unwrap();
        std::fs::write(root.join("a/f.jpg"), b"abc").unwrap();
        symlink("/etc/hostname", root.join("a/out")).unwrap();
        symlink("f.jpg", root.join("a/in")).unwrap();
        symlink("loop", root.join("a/loop")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("a/fifo").as_path(),
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let r = Root::open(&root).unwrap();
        let Observation::File(m) = r.observe(Path::new("a/f.jpg")) else {
            panic!()
        };
        assert_eq!(m.size, 3);
        assert_eq!(r.observe(Path::new("a/in")), Observation::File(m));
        assert_eq!(r.observe(Path::new("a/out")), Observation::Escapes);
        assert_eq!(
            r.observe(Path::new("../root/a/f.jpg")),
            Observation::Escapes
        );
        assert_eq!(r.observe(Path::new("a/nope")), Observation::NotFound);
        assert_eq!(r.observe(Path::new("a/f.jpg/x")), Observation::NotFound);
        assert_eq!(r.observe(Path::new("a/loop")), Observation::SymlinkLoop);
        assert_eq!(
            r.observe(Path::new("a/fifo")),
            Observation::NotRegular { what: "FIFO" }
        );
        assert_eq!(
            r.observe(Path::new("a")),
            Observation::NotRegular { what: "directory" }
        );
    }

    #[test]
    fn cached_directory_handles_see_what_the_whole_path_sees() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::create_dir_all(dir.path().join("outside")).unwrap();
        std::fs::write(dir.path().join("outside/secret.jpg"), b"s").unwrap();
        std::fs::write(root.join("a/b/f.jpg"), b"abcd").unwrap();
        std::fs::write(root.join("top.jpg"), b"t").unwrap();
        std::fs::write(root.join("a/plain"), b"p").unwrap();
        symlink("b", root.join("a/inlink")).unwrap(); // a directory symlink inside the root
        symlink("../../outside", root.join("a/outlink")).unwrap(); // one that leaves it
        symlink("/", root.join("a/abs")).unwrap();
        symlink("f.jpg", root.join("a/b/rel")).unwrap(); // a file symlink inside
        symlink("../../../outside/secret.jpg", root.join("a/b/esc")).unwrap();
        symlink("dloop", root.join("a/dloop")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("a/b/fifo").as_path(),
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let r = Root::open(&root).unwrap();
        let cases = [
            "a/b/f.jpg",
            "a/inlink/f.jpg",
            "a/outlink/secret.jpg",
            "a/abs/etc/hostname",
            "a/b/rel",
            "a/b/esc",
            "a/b/fifo",
            "a/b/nope",
            "a/nope/f.jpg",
            "a/plain/f.jpg",
            "a/dloop/f.jpg",
            "top.jpg",
            "a/b",
            "a/b/..",
            "a/b/.",
        ];
        // Twice: the second round is served from the cached directory handles.
        for round in 0..2 {
            for c in cases {
                let p = Path::new(c);
                assert_eq!(r.observe(p), r.observe_whole_path(p), "{c}, round {round}");
            }
        }
        assert!(
            matches!(r.observe(Path::new("a/inlink/f.jpg")), Observation::File(m) if m.size == 4)
        );
        assert_eq!(
            r.observe(Path::new("a/outlink/secret.jpg")),
            Observation::Escapes
        );
        assert_eq!(
            r.observe(Path::new("a/abs/etc/hostname")),
            Observation::Escapes
        );
        assert_eq!(r.observe(Path::new("a/b/esc")), Observation::Escapes);
        assert_eq!(
            r.observe(Path::new("a/b/fifo")),
            Observation::NotRegular { what: "FIFO" }
        );
        assert_eq!(r.observe(Path::new("a/plain/f.jpg")), Observation::NotFound);
        assert_eq!(
            r.observe(Path::new("a/dloop/f.jpg")),
            Observation::SymlinkLoop
        );
        // A directory removed after its handle was cached: its files are gone, not found.
        std::fs::remove_file(root.join("a/b/f.jpg")).unwrap();
        assert_eq!(r.observe(Path::new("a/b/f.jpg")), Observation::NotFound);
    }
}
