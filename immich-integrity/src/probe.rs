//! One look at one file: what the filesystem says, before any judgement.
//!
//! Files are opened with `openat2(O_PATH, RESOLVE_BENEATH)` relative to a handle on their root:
//! the kernel itself refuses any `..` or symlink that leaves the root (EXDEV), a FIFO is never
//! opened for reading (O_PATH), and one `fstat` on the handle gives type, size, owner and mode.

use rustix::fd::OwnedFd;
use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::path::{Path, PathBuf};

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
        if rel.as_os_str().is_empty() {
            return Observation::NotRegular { what: "directory" };
        }
        match self
            .open_beneath(rel, OFlags::PATH)
            .and_then(|fd| rustix::fs::fstat(&fd))
        {
            Ok(st) => meta_observation(&st),
            Err(e) => from_errno(e),
        }
    }

    /// Opens `rel` for reading, still beneath the root. `O_NONBLOCK` so that a file swapped
    /// for a FIFO since it was observed cannot hang the worker.
    pub fn open_read(&self, rel: &Path) -> std::io::Result<std::fs::File> {
        let fd = self.open_beneath(rel, OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY)?;
        Ok(std::fs::File::from(fd))
    }

    /// Metadata of a directory beneath the root (for the search-bit walk).
    pub fn dir_meta(&self, rel: &Path) -> Option<Meta> {
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
}
