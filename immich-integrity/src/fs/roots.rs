//! The folders files are resolved beneath, and whether each is mounted.
//!
//! A whole mount that is gone (an external drive not mounted, a volume line missing from the
//! compose file) is one fault, not a million: files under it are counted, not probed.

use crate::fs::pathmap::{PathMap, MEDIA_FOLDERS};
use crate::fs::probe::Root;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The state of one top folder of the media root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FolderState {
    /// Present with its `.immich` marker.
    Ok,
    /// No marker here, but `<folder>/<folder>/.immich` exists: restored one level too deep.
    Nested,
    /// Present, no marker, but holds files.
    NoMarker,
    /// Absent, or an empty folder with no marker (a mount point with nothing mounted).
    Missing,
}

/// Whether `media_host/folder` is present with its `.immich` marker.
pub fn folder_state(media_host: &Path, folder: &str) -> FolderState {
    let dir = media_host.join(folder);
    if dir.join(".immich").exists() {
        return FolderState::Ok;
    }
    if dir.join(folder).join(".immich").exists() {
        return FolderState::Nested;
    }
    if dir_has_entries(&dir) {
        FolderState::NoMarker
    } else {
        FolderState::Missing
    }
}

/// Finds Immich's media root at or just below `given` by its `.immich` markers, so that an
/// admin may point at `/srv/immich` when the media root is `/srv/immich/library`.
/// Returns `given` itself when no folder nearby has markers. More than one marked tree below
/// `given` is never guessed between: `Err` lists every candidate (sorted).
pub fn detect_media_root(given: &Path) -> Result<PathBuf, Vec<PathBuf>> {
    let has_markers = |d: &Path| {
        MEDIA_FOLDERS
            .iter()
            .any(|f| d.join(f).join(".immich").is_file())
    };
    if has_markers(given) {
        return Ok(given.to_path_buf());
    }
    let mut found: Vec<PathBuf> = walkdir::WalkDir::new(given)
        .min_depth(1)
        .max_depth(2)
        .sort_by_file_name()
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_dir())
        .map(|e| e.into_path())
        .filter(|d| has_markers(d))
        .collect();
    // A tree's own top folder restored one level too deep (`library/upload/upload/.immich`)
    // is part of that tree, not a second one.
    let all = found.clone();
    found.retain(|d| !all.iter().any(|o| o != d && d.starts_with(o)));
    match found.len() {
        0 => Ok(given.to_path_buf()),
        1 => Ok(found.remove(0)),
        _ => Err(found),
    }
}

/// The error for more than one Immich tree below the given media root.
pub(crate) fn ambiguous_root(given: &Path, candidates: &[PathBuf]) -> crate::error::Error {
    crate::error::Error::MediaRoot {
        path: given.to_path_buf(),
        reason: format!(
            "holds {} Immich media trees (folders with .immich markers): {}; pass the one the \
             server uses as {}",
            candidates.len(),
            candidates
                .iter()
                .map(|c| c.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            crate::error::Hint::MediaRoot
        ),
    }
}

/// The one answer for a top folder restored one level too deep ([`FolderState::Nested`]):
/// what `doctor` advises and what `relink` plans and prints, so the two never disagree. The
/// rows are pointed at `<folder>/<folder>/`, where the files are (one prefix rewrite), and the
/// marker Immich checks at start is recreated where it looks for it.
pub fn nested_repair(media_host: &Path, folder: &str) -> String {
    let dir = media_host.join(folder);
    format!(
        "{} points its rows at {}/{folder}/, where the files are (one prefix rewrite), then \
         recreate the marker Immich checks at start: touch {}/.immich",
        crate::error::Hint::RelinkApply,
        dir.display(),
        dir.display()
    )
}

/// Whether a mapped folder (an external library's import path) is unusable as scan sees it:
/// `Some("absent")`, `Some("empty (nothing mounted)")`, or `None` when it holds entries. Scan
/// turns this into one `mount_missing` finding; doctor into one failed check.
pub fn unmounted(host: &Path) -> Option<&'static str> {
    if dir_has_entries(host) {
        None
    } else if host.exists() {
        Some("empty (nothing mounted)")
    } else {
        Some("absent")
    }
}

fn dir_has_entries(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false)
}

/// One mount that is missing, with a count of the referenced files under it.
#[derive(Debug)]
pub struct MissingMount {
    /// The container root (as stored in paths).
    pub container: String,
    /// The host folder it maps to.
    pub host: PathBuf,
    /// Why it counts as missing (absent, empty mount point).
    pub why: String,
    /// How many referenced files live under it (counted during the scan).
    pub affected: AtomicU64,
    /// It did not answer within the I/O timeout while being opened (a hung share): reported
    /// as `unreachable`, not `mount_missing`.
    pub hung: bool,
}

/// Per map entry: an open root, or the reason files under it cannot be checked.
#[derive(Debug)]
pub struct Roots {
    /// Indexed like `PathMap::entries()`. `None` when the whole entry is missing.
    open: Vec<Option<std::sync::Arc<Root>>>,
    /// For media entries: missing top folders by name -> index into `missing`.
    media_missing: HashMap<String, usize>,
    /// Whole-entry missing mounts, by entry index -> index into `missing`.
    entry_missing: HashMap<usize, usize>,
    /// Mapped roots that are absent on this host.
    pub missing: Vec<MissingMount>,
    /// State of each of Immich's top folders under the media root.
    pub folders: Vec<(String, FolderState)>,
}

impl Roots {
    /// Opens every root of `map`. Fails only when the media root itself is unusable.
    pub fn open(map: &PathMap) -> Result<Roots, (PathBuf, String)> {
        Roots::open_watched(map, None)
    }

    /// [`Roots::open`], giving up on a root that does not answer within `timeout`: a mapped
    /// root becomes unreachable, a media root that hangs is an error.
    pub fn open_watched(
        map: &PathMap,
        timeout: Option<std::time::Duration>,
    ) -> Result<Roots, (PathBuf, String)> {
        let mut by_host: HashMap<PathBuf, Option<std::sync::Arc<Root>>> = HashMap::new();
        let mut roots = Roots {
            open: Vec::new(),
            media_missing: HashMap::new(),
            entry_missing: HashMap::new(),
            missing: Vec::new(),
            folders: Vec::new(),
        };
        let mut media_done = false;
        for (i, e) in map.entries().iter().enumerate() {
            if e.media {
                let root = match by_host.get(&e.host) {
                    Some(r) => r.clone(),
                    None => {
                        let r =
                            Root::open(&e.host).map_err(|err| (e.host.clone(), err.to_string()))?;
                        Some(std::sync::Arc::new(r))
                    }
                };
                by_host.insert(e.host.clone(), root.clone());
                roots.open.push(root);
                if !media_done {
                    media_done = true;
                    let container = map.active_media().unwrap_or(&e.container).to_string();
                    let host = e.host.clone();
                    let states = move || {
                        (
                            MEDIA_FOLDERS.map(|f| folder_state(&host, f)),
                            dir_has_entries(&host),
                        )
                    };
                    let (states, has_entries) = match timeout {
                        None => states(),
                        Some(t) => crate::fs::watch::within(t, states).ok_or_else(|| {
                            (
                                e.host.clone(),
                                format!(
                                    "does not answer: looking for its folders did not return \
                                     in {:.1} s (a hung share?)",
                                    t.as_secs_f64()
                                ),
                            )
                        })?,
                    };
                    // An empty media root is one share not mounted: one finding, not one
                    // per top folder.
                    let whole = !has_entries;
                    if whole {
                        roots.missing.push(MissingMount {
                            container: container.clone(),
                            host: e.host.clone(),
                            why: "empty (nothing mounted?)".into(),
                            affected: AtomicU64::new(0),
                            hung: false,
                        });
                    }
                    for (folder, state) in MEDIA_FOLDERS.iter().zip(states) {
                        roots.folders.push((folder.to_string(), state));
                        if whole {
                            roots
                                .media_missing
                                .insert(folder.to_string(), roots.missing.len() - 1);
                        } else if state == FolderState::Missing {
                            roots
                                .media_missing
                                .insert(folder.to_string(), roots.missing.len());
                            roots.missing.push(MissingMount {
                                container: format!("{container}/{folder}"),
                                host: e.host.join(folder),
                                why: "absent, or empty without its .immich marker".into(),
                                affected: AtomicU64::new(0),
                                hung: false,
                            });
                        }
                    }
                }
                continue;
            }
            let host = e.host.clone();
            let probe = move || {
                let state = unmounted(&host);
                let root = if state.is_none() {
                    Root::open(&host).ok().map(std::sync::Arc::new)
                } else {
                    None
                };
                (state, root)
            };
            let (state, root, hung) = match timeout {
                None => {
                    let (s, r) = probe();
                    (s, r, false)
                }
                Some(t) => match crate::fs::watch::within(t, probe) {
                    Some((s, r)) => (s, r, false),
                    None => (Some("not answering"), None, true),
                },
            };
            if root.is_none() {
                let why = match (hung, timeout) {
                    (true, Some(t)) => format!(
                        "not answering: listing it did not return in {:.1} s (a hung share?)",
                        t.as_secs_f64()
                    ),
                    _ => state.unwrap_or("absent").to_string(),
                };
                roots.entry_missing.insert(i, roots.missing.len());
                roots.missing.push(MissingMount {
                    container: e.container.clone(),
                    host: e.host.clone(),
                    why,
                    affected: AtomicU64::new(0),
                    hung,
                });
            }
            roots.open.push(root);
        }
        Ok(roots)
    }

    /// Every open root, once each.
    pub(crate) fn all(&self) -> Vec<&Root> {
        let mut v: Vec<&Root> = Vec::new();
        for r in self.open.iter().flatten() {
            if !v.iter().any(|o| std::ptr::eq(*o, &**r)) {
                v.push(r);
            }
        }
        v
    }

    /// Gives up on the root with watch id `id` (it did not answer in time).
    pub(crate) fn give_up(&self, id: u64, why: String) {
        if let Some(r) = self.all().into_iter().find(|r| r.health.id == id) {
            if r.health.mark(why) {
                tracing::warn!(root = %r.host.display(), "root does not answer; its remaining files are not checked");
            }
        }
    }

    /// Counts one file under root `id` as not checked.
    pub(crate) fn count_not_checked(&self, id: u64) {
        if let Some(r) = self.all().into_iter().find(|r| r.health.id == id) {
            r.health.not_checked.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The root to resolve `rel` under, or `None` after counting it against a missing mount.
    pub fn root_for(&self, entry: usize, rel: &Path, media: bool) -> Option<&Root> {
        let missing = if media {
            rel.components()
                .next()
                .and_then(|c| c.as_os_str().to_str())
                .and_then(|top| self.media_missing.get(top))
        } else {
            self.entry_missing.get(&entry)
        };
        if let Some(&m) = missing {
            self.missing[m].affected.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.open[entry].as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_root_found_by_markers_below_the_given_folder() {
        let t = tempfile::tempdir().unwrap();
        let media = t.path().join("immich/library");
        std::fs::create_dir_all(media.join("thumbs")).unwrap();
        std::fs::write(media.join("thumbs/.immich"), b"1").unwrap();
        std::fs::create_dir_all(t.path().join("immich/postgres")).unwrap();
        assert_eq!(
            detect_media_root(&t.path().join("immich")),
            Ok(media.clone())
        );
        assert_eq!(detect_media_root(&media), Ok(media));
        let empty = t.path().join("immich/postgres");
        assert_eq!(detect_media_root(&empty), Ok(empty));
    }

    #[test]
    fn two_immich_trees_are_an_error_listing_both() {
        let t = tempfile::tempdir().unwrap();
        for tree in ["a-old", "b-new"] {
            for f in ["upload", "thumbs"] {
                let d = t.path().join(tree).join(f);
                std::fs::create_dir_all(&d).unwrap();
                std::fs::write(d.join(".immich"), b"1").unwrap();
            }
        }
        // One tree's own folder restored one level too deep is still that tree.
        let deep = t.path().join("a-old/upload/upload");
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join(".immich"), b"1").unwrap();
        assert_eq!(
            detect_media_root(t.path()),
            Err(vec![t.path().join("a-old"), t.path().join("b-new")])
        );
        assert_eq!(
            detect_media_root(&t.path().join("a-old")),
            Ok(t.path().join("a-old"))
        );
    }

    #[test]
    fn an_empty_media_root_is_one_missing_mount_not_one_per_folder() {
        let t = tempfile::tempdir().unwrap();
        let mut map = PathMap::new();
        map.add_media_root("/data", t.path().to_path_buf());
        let roots = Roots::open_watched(&map, Some(std::time::Duration::from_secs(30))).unwrap();
        assert_eq!(roots.missing.len(), 1);
        assert_eq!(roots.missing[0].host, t.path());
        assert_eq!(roots.missing[0].container, "/data");
        assert!(roots
            .root_for(0, Path::new("upload/u/a.jpg"), true)
            .is_none());
        assert!(roots
            .root_for(0, Path::new("thumbs/u/a.jpg"), true)
            .is_none());
        assert_eq!(roots.missing[0].affected.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn folder_states() {
        let t = tempfile::tempdir().unwrap();
        let m = t.path();
        for (f, marker) in [
            ("upload", "upload/.immich"),
            ("profile", "profile/profile/.immich"),
        ] {
            std::fs::create_dir_all(m.join(marker).parent().unwrap()).unwrap();
            std::fs::write(m.join(marker), b"1").unwrap();
            let _ = f;
        }
        std::fs::create_dir_all(m.join("thumbs/u")).unwrap();
        std::fs::create_dir_all(m.join("library")).unwrap();
        assert_eq!(folder_state(m, "upload"), FolderState::Ok);
        assert_eq!(folder_state(m, "profile"), FolderState::Nested);
        assert_eq!(folder_state(m, "thumbs"), FolderState::NoMarker);
        assert_eq!(folder_state(m, "library"), FolderState::Missing);
        assert_eq!(folder_state(m, "encoded-video"), FolderState::Missing);
    }
}
