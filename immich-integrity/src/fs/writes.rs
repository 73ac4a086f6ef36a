//! The one rule for every file the tool writes (reports, journals, state files, manifests):
//! it never lands inside a folder the tool reads media from.
//!
//! The media root and every mapped host folder (`--map`, external libraries' mounts) are
//! roots. A target is resolved the way the kernel will resolve it when it is written: an
//! existing file is canonicalised (symlinks followed), a file still to be created through its
//! nearest existing ancestor, with the rest of its path appended. The roots are canonicalised
//! too. A target equal to or below any root is refused, naming the root.

use crate::error::{Error, Result};
use crate::scan::ScanOptions;
use std::path::{Component, Path, PathBuf};

/// The folders media is read from: the media root and the host side of every map.
pub fn media_roots(opts: &ScanOptions) -> Vec<PathBuf> {
    opts.media_root
        .iter()
        .cloned()
        .chain(opts.maps.iter().map(|(_, h)| h.clone()))
        .collect()
}

/// `Ok` when writing `path` cannot touch anything under `roots`; otherwise
/// [`Error::WriteInsideMedia`] naming `what` (the option that named the file), the file and
/// the root. `what` is the caller's name for the option, e.g. `--journal`.
pub fn refuse_inside_roots(what: &str, path: &Path, roots: &[PathBuf]) -> Result<()> {
    let target = resolve_bounded(path);
    for root in roots {
        let root_resolved = resolve_bounded(root);
        if target.starts_with(&root_resolved) {
            return Err(Error::WriteInsideMedia {
                what: what.to_string(),
                path: path.to_path_buf(),
                root: root.clone(),
            });
        }
    }
    Ok(())
}

/// [`refuse_inside_roots`] with the roots of `opts` ([`media_roots`]).
pub fn refuse_inside_media(what: &str, path: &Path, opts: &ScanOptions) -> Result<()> {
    refuse_inside_roots(what, path, &media_roots(opts))
}

/// How long resolving a path may take: a root on a share that stopped answering must not hang
/// the command before it starts (the scan's watchdog reports such a root).
const RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// [`resolve`], or the path as written (made absolute) when the filesystem does not answer
/// in time.
fn resolve_bounded(path: &Path) -> PathBuf {
    let p = path.to_path_buf();
    crate::fs::watch::within(RESOLVE_TIMEOUT, move || resolve(&p)).unwrap_or_else(|| {
        std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("/"))
            .join(path)
    })
}

/// Where `path` is, or would be once created: its nearest existing ancestor canonicalised, the
/// components below it appended (`.` dropped, `..` applied lexically to what is left).
fn resolve(path: &Path) -> PathBuf {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("/"))
            .join(path)
    };
    let mut rest: Vec<std::ffi::OsString> = Vec::new();
    let mut cur = abs.as_path();
    loop {
        if let Ok(c) = cur.canonicalize() {
            let mut out = c;
            for part in rest.iter().rev() {
                match Path::new(part).components().next() {
                    Some(Component::ParentDir) => {
                        out.pop();
                    }
                    Some(Component::CurDir) | None => {}
                    _ => out.push(part),
                }
            }
            return out;
        }
        match (cur.parent(), cur.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                cur = parent;
            }
            // `..` at the end, or the root itself: keep the path as written.
            (Some(parent), None) => {
                rest.push("..".into());
                cur = parent;
            }
            (None, _) => return abs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_inside_a_root_are_refused_through_symlinks_and_new_folders() {
        let dir = std::env::temp_dir().join(format!("writes-{}", std::process::id()));
        let root = dir.join("media");
        std::fs::create_dir_all(root.join("upload")).unwrap();
        std::fs::write(root.join("upload/a.jpg"), b"x").unwrap();
        std::os::unix::fs::symlink(root.join("upload"), dir.join("link")).unwrap();
        let roots = [root.clone()];
        let refused = |p: PathBuf| refuse_inside_roots("--output", &p, &roots).is_err();
        assert!(refused(root.join("upload/a.jpg")));
        assert!(refused(root.join("new/deeper/file")));
        assert!(refused(dir.join("link/a.jpg")));
        assert!(refused(dir.join("link/new.json")));
        assert!(refused(dir.join("elsewhere/../media/x")));
        assert!(refused(root.clone()));
        assert!(!refused(dir.join("report.json")));
        assert!(!refused(dir.join("media2/report.json")));
        let e = refuse_inside_roots("--journal", &root.join("j"), &roots)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--journal") && e.contains(&*root.to_string_lossy()),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
