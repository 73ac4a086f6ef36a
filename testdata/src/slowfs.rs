//! `immich-fixture fuse`: a passthrough FUSE filesystem that behaves like a network share, for
//! tests and benchmarks of storage that answers slowly or not at all.
//!
//! - Every metadata operation (lookup, getattr, readlink, open, opendir, readdir, access,
//!   statfs) waits `delay` before it is answered, on a pool of worker threads, so concurrent
//!   operations overlap as they do over a network (`threads` bounds how many).
//! - `attr_ttl` is how long the kernel may cache entries and attributes (0: every `stat` goes
//!   to the filesystem, as on a share mounted with `noac`).
//! - Any operation on or below `block` is never answered: the caller stays in the kernel, as
//!   on a hard-mounted share whose server went away. The operation does not hold a worker.
//!
//! SIGTERM or SIGINT detaches the mount (`umount2(MNT_DETACH)`) and exits; the kernel then
//! fails every pending operation, so callers stuck on `block` are released. The counts of
//! operations (and how many were in flight, at most and on average) go to `--stats FILE` at
//! exit, and on SIGUSR1, which also starts the counts afresh (one file per benchmarked command).

use fuser::{
    FileAttr, FileType, Filesystem, KernelConfig, MountOption, ReplyAttr, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, Request,
};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirEntryExt, FileExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

/// How the filesystem behaves (see the module documentation).
#[derive(Debug, Clone)]
pub struct SlowOptions {
    /// Added to every metadata operation.
    pub delay: Duration,
    /// Added to every read.
    pub read_delay: Duration,
    /// Operations on or below this folder (relative to the source) never return.
    pub block: Option<PathBuf>,
    /// Entry and attribute cache time granted to the kernel.
    pub attr_ttl: Duration,
    /// Worker threads answering operations (the most that can be delayed at once).
    pub threads: usize,
    /// Where to write the operation counts at exit (JSON).
    pub stats: Option<PathBuf>,
}

type Job = Box<dyn FnOnce() + Send>;

/// Counters shared with the workers.
#[derive(Default)]
struct Stats {
    metadata_ops: AtomicU64,
    reads: AtomicU64,
    blocked: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
    /// Sum over operations of the time each was in flight, in microseconds (divided by the
    /// wall time: the mean number in flight).
    busy_us: AtomicU64,
}

struct SlowFs {
    src: PathBuf,
    opts: SlowOptions,
    inodes: Inodes,
    jobs: Sender<Job>,
    stats: Arc<Stats>,
    /// Replies never sent (operations under `block`): kept so they are not answered with an
    /// error when dropped.
    held: Vec<Box<dyn std::any::Any + Send>>,
    files: Arc<Mutex<HashMap<u64, File>>>,
    next_fh: u64,
}

/// Our inode numbers by relative path and back (the root is 1).
#[derive(Default)]
struct Inodes {
    paths: HashMap<u64, PathBuf>,
    numbers: HashMap<PathBuf, u64>,
}

impl Inodes {
    fn number(&mut self, rel: &Path) -> u64 {
        if let Some(&n) = self.numbers.get(rel) {
            return n;
        }
        let n = self.paths.len() as u64 + 2;
        self.paths.insert(n, rel.to_path_buf());
        self.numbers.insert(rel.to_path_buf(), n);
        n
    }
    fn path(&self, ino: u64) -> Option<PathBuf> {
        if ino == fuser::FUSE_ROOT_ID {
            return Some(PathBuf::new());
        }
        self.paths.get(&ino).cloned()
    }
}

fn attr(ino: u64, m: &std::fs::Metadata) -> FileAttr {
    let t = |s: i64, ns: i64| {
        if s >= 0 {
            UNIX_EPOCH + Duration::new(s as u64, ns as u32)
        } else {
            UNIX_EPOCH
        }
    };
    let ft = m.file_type();
    let kind = if ft.is_dir() {
        FileType::Directory
    } else if ft.is_symlink() {
        FileType::Symlink
    } else if ft.is_fifo() {
        FileType::NamedPipe
    } else if ft.is_socket() {
        FileType::Socket
    } else if ft.is_char_device() {
        FileType::CharDevice
    } else if ft.is_block_device() {
        FileType::BlockDevice
    } else {
        FileType::RegularFile
    };
    FileAttr {
        ino,
        size: m.size(),
        blocks: m.blocks(),
        atime: t(m.atime(), m.atime_nsec()),
        mtime: t(m.mtime(), m.mtime_nsec()),
        ctime: t(m.ctime(), m.ctime_nsec()),
        crtime: t(m.ctime(), m.ctime_nsec()),
        kind,
        perm: (m.mode() & 0o7777) as u16,
        nlink: m.nlink() as u32,
        uid: m.uid(),
        gid: m.gid(),
        rdev: m.rdev() as u32,
        blksize: 4096,
        flags: 0,
    }
}

fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

impl Stats {
    fn reset(&self) {
        for c in [
            &self.metadata_ops,
            &self.reads,
            &self.blocked,
            &self.busy_us,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        self.max_in_flight
            .store(self.in_flight.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

impl SlowFs {
    fn blocked(&self, rel: &Path) -> bool {
        self.opts.block.as_ref().is_some_and(|b| rel.starts_with(b))
    }

    /// Runs `f` on a worker after `delay`, counting it; or never, when `rel` is blocked.
    fn later<R: Send + 'static>(
        &mut self,
        rel: &Path,
        delay: Duration,
        reply: R,
        f: impl FnOnce(R) + Send + 'static,
    ) {
        if self.blocked(rel) {
            self.stats.blocked.fetch_add(1, Ordering::Relaxed);
            self.held.push(Box::new(reply));
            return;
        }
        let stats = self.stats.clone();
        let start = std::time::Instant::now();
        let now = stats.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        stats.max_in_flight.fetch_max(now, Ordering::Relaxed);
        let _ = self.jobs.send(Box::new(move || {
            if !delay.is_zero() {
                std::thread::sleep(delay);
            }
            f(reply);
            stats.in_flight.fetch_sub(1, Ordering::Relaxed);
            stats
                .busy_us
                .fetch_add(start.elapsed().as_micros() as u64, Ordering::Relaxed);
        }));
    }

    fn meta_op<R: Send + 'static>(
        &mut self,
        rel: &Path,
        reply: R,
        f: impl FnOnce(R) + Send + 'static,
    ) {
        self.stats.metadata_ops.fetch_add(1, Ordering::Relaxed);
        let delay = self.opts.delay;
        self.later(rel, delay, reply, f);
    }
}

impl Filesystem for SlowFs {
    fn init(&mut self, _req: &Request<'_>, config: &mut KernelConfig) -> Result<(), libc::c_int> {
        // Lookups in one folder run in parallel, as on NFS (without this the kernel takes a
        // lock per folder).
        let _ = config.add_capabilities(fuser::consts::FUSE_PARALLEL_DIROPS);
        Ok(())
    }

    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        let Some(dir) = self.inodes.path(parent) else {
            return reply.error(libc::ENOENT);
        };
        let rel = dir.join(name);
        let ino = self.inodes.number(&rel);
        let (full, ttl) = (self.src.join(&rel), self.opts.attr_ttl);
        self.meta_op(&rel, reply, move |reply| {
            match std::fs::symlink_metadata(&full) {
                Ok(m) => reply.entry(&ttl, &attr(ino, &m), 0),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        let Some(rel) = self.inodes.path(ino) else {
            return reply.error(libc::ENOENT);
        };
        let (full, ttl) = (self.src.join(&rel), self.opts.attr_ttl);
        self.meta_op(&rel, reply, move |reply| {
            match std::fs::symlink_metadata(&full) {
                Ok(m) => reply.attr(&ttl, &attr(ino, &m)),
                Err(e) => reply.error(errno(&e)),
            }
        });
    }

    fn readlink(&mut self, _req: &Request<'_>, ino: u64, reply: ReplyData) {
        let Some(rel) = self.inodes.path(ino) else {
            return reply.error(libc::ENOENT);
        };
        let full = self.src.join(&rel);
        self.meta_op(&rel, reply, move |reply| match std::fs::read_link(&full) {
            Ok(t) => reply.data(t.as_os_str().as_bytes()),
            Err(e) => reply.error(errno(&e)),
        });
    }

    fn access(&mut self, _req: &Request<'_>, ino: u64, _mask: i32, reply: ReplyEmpty) {
        let Some(rel) = self.inodes.path(ino) else {
            return reply.error(libc::ENOENT);
        };
        self.meta_op(&rel, reply, |reply| reply.ok());
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        let Some(rel) = self.inodes.path(ino) else {
            return reply.error(libc::ENOENT);
        };
        let full = self.src.join(&rel);
        self.next_fh += 1;
        let (fh, files) = (self.next_fh, self.files.clone());
        self.meta_op(&rel, reply, move |reply| match File::open(&full) {
            Ok(f) => {
                files.lock().unwrap().insert(fh, f);
                reply.opened(fh, 0);
            }
            Err(e) => reply.error(errno(&e)),
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        let rel = self.inodes.path(ino).unwrap_or_default();
        self.stats.reads.fetch_add(1, Ordering::Relaxed);
        let (files, delay) = (self.files.clone(), self.opts.read_delay);
        self.later(&rel, delay, reply, move |reply| {
            let f = files
                .lock()
                .unwrap()
                .get(&fh)
                .and_then(|f| f.try_clone().ok());
            let Some(f) = f else {
                return reply.error(libc::EBADF);
            };
            let mut buf = vec![0u8; size as usize];
            let mut n = 0;
            while n < buf.len() {
                match f.read_at(&mut buf[n..], offset as u64 + n as u64) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(e) => return reply.error(errno(&e)),
                }
            }
            reply.data(&buf[..n]);
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn release(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        _flags: i32,
        _lock_owner: Option<u64>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.files.lock().unwrap().remove(&fh);
        reply.ok();
    }

    fn opendir(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        let Some(rel) = self.inodes.path(ino) else {
            return reply.error(libc::ENOENT);
        };
        let full = self.src.join(&rel);
        self.meta_op(&rel, reply, move |reply| match std::fs::read_dir(&full) {
            Ok(_) => reply.opened(0, 0),
            Err(e) => reply.error(errno(&e)),
        });
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        reply: ReplyDirectory,
    ) {
        let Some(rel) = self.inodes.path(ino) else {
            return reply.error(libc::ENOENT);
        };
        let full = self.src.join(&rel);
        self.meta_op(&rel, reply, move |mut reply| {
            let entries = match std::fs::read_dir(&full) {
                Ok(d) => d,
                Err(e) => return reply.error(errno(&e)),
            };
            let mut all: Vec<(u64, FileType, std::ffi::OsString)> = vec![
                (ino, FileType::Directory, ".".into()),
                (ino, FileType::Directory, "..".into()),
            ];
            for e in entries.flatten() {
                let kind = match e.file_type() {
                    Ok(t) if t.is_dir() => FileType::Directory,
                    Ok(t) if t.is_symlink() => FileType::Symlink,
                    _ => FileType::RegularFile,
                };
                all.push((e.ino(), kind, e.file_name()));
            }
            for (i, (n, kind, name)) in all.into_iter().enumerate().skip(offset as usize) {
                if reply.add(n.max(1), (i + 1) as i64, kind, &name) {
                    break;
                }
            }
            reply.ok();
        });
    }

    fn releasedir(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        _fh: u64,
        _flags: i32,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn statfs(&mut self, _req: &Request<'_>, ino: u64, reply: ReplyStatfs) {
        let rel = self.inodes.path(ino).unwrap_or_default();
        self.meta_op(&rel, reply, |reply| {
            reply.statfs(1 << 20, 1 << 19, 1 << 19, 1 << 20, 1 << 19, 4096, 255, 4096)
        });
    }
}

fn worker(rx: Arc<Mutex<Receiver<Job>>>) {
    loop {
        let job = match rx.lock() {
            Ok(r) => r.recv(),
            Err(_) => return,
        };
        match job {
            Ok(job) => job(),
            Err(_) => return,
        }
    }
}

/// Mounts `src` at `mnt` and serves it until SIGTERM or SIGINT (see the module documentation).
pub fn serve(src: &Path, mnt: &Path, opts: SlowOptions) -> anyhow::Result<()> {
    use anyhow::Context;
    let src = src
        .canonicalize()
        .with_context(|| format!("source {}", src.display()))?;
    let mnt = mnt
        .canonicalize()
        .with_context(|| format!("mount point {}", mnt.display()))?;
    // The signals are taken by sigwait below: block them before any thread starts, so every
    // thread inherits the mask and none of them is interrupted.
    // SAFETY: plain libc calls on a local, initialised signal set.
    let set = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    let (tx, rx) = channel::<Job>();
    let rx = Arc::new(Mutex::new(rx));
    for i in 0..opts.threads.max(1) {
        let rx = rx.clone();
        std::thread::Builder::new()
            .name(format!("slowfs-{i}"))
            .stack_size(256 << 10)
            .spawn(move || worker(rx))?;
    }
    let stats = Arc::new(Stats::default());
    let fs = SlowFs {
        src: src.clone(),
        opts: opts.clone(),
        inodes: Inodes::default(),
        jobs: tx,
        stats: stats.clone(),
        held: Vec::new(),
        files: Arc::new(Mutex::new(HashMap::new())),
        next_fh: 0,
    };
    let options = [
        MountOption::RO,
        MountOption::FSName("immich-slowfs".into()),
        MountOption::AllowOther,
        MountOption::DefaultPermissions,
    ];
    let mut started = std::time::Instant::now();
    let session = fuser::spawn_mount2(fs, &mnt, &options)
        .with_context(|| format!("mounting {}", mnt.display()))?;
    eprintln!("slowfs: {} mounted on {}", src.display(), mnt.display());
    loop {
        let mut sig: libc::c_int = 0;
        // SAFETY: `set` was initialised above; sigwait writes the signal number to `sig`.
        unsafe { libc::sigwait(&set, &mut sig) };
        if let Some(path) = &opts.stats {
            write_stats(path, &stats, started.elapsed())?;
        }
        if sig != libc::SIGUSR1 {
            break;
        }
        // SIGUSR1: the counts so far were written; count afresh (one command of a bench).
        stats.reset();
        started = std::time::Instant::now();
    }
    // Detach first: a blocked caller gets an error once our end of the connection closes.
    let c = std::ffi::CString::new(mnt.as_os_str().as_bytes())?;
    // SAFETY: a valid NUL-terminated path.
    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    std::mem::forget(session);
    std::process::exit(0);
}

fn write_stats(path: &Path, s: &Stats, wall: Duration) -> anyhow::Result<()> {
    let json = serde_json::json!({
        "metadata_ops": s.metadata_ops.load(Ordering::Relaxed),
        "reads": s.reads.load(Ordering::Relaxed),
        "blocked": s.blocked.load(Ordering::Relaxed),
        "max_in_flight": s.max_in_flight.load(Ordering::Relaxed),
        "mean_in_flight": s.busy_us.load(Ordering::Relaxed) as f64
            / wall.as_micros().max(1) as f64,
        "wall_s": wall.as_secs_f64(),
    });
    std::fs::write(path, json.to_string())?;
    Ok(())
}
