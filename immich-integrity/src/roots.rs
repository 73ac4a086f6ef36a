//! The folders files are resolved beneath, and whether each is mounted.
//!
//! A whole mount that is gone (an external drive not mounted, a volume line missing from the
//! compose file) is one fault, not a million: files under it are counted, not probed.

use crate::pathmap::{PathMap, MEDIA_FOLDERS};
use crate::probe::Root;
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

fn dir_has_entries(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false)
}

/// One mount that is missing, with a count of the referenced files under it.
#[derive(Debug)]
pub struct MissingMount {
    pub container: String,
    pub host: PathBuf,
    pub why: String,
    pub affected: AtomicU64,
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
    pub missing: Vec<MissingMount>,
    pub folders: Vec<(String, FolderState)>,
}

impl Roots {
    /// Opens every root of `map`. Fails only when the media root itself is unusable.
    pub fn open(map: &PathMap) -> Result<Roots, (PathBuf, String)> {
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
                    for folder in MEDIA_FOLDERS {
                        let state = folder_state(&e.host, folder);
                        roots.folders.push((folder.to_string(), state));
                        if state == FolderState::Missing {
                            roots
                                .media_missing
                                .insert(folder.to_string(), roots.missing.len());
                            roots.missing.push(MissingMount {
                                container: format!("{container}/{folder}"),
                                host: e.host.join(folder),
                                why: "absent, or empty without its .immich marker".into(),
                                affected: AtomicU64::new(0),
                            });
                        }
                    }
                }
                continue;
            }
            let usable = dir_has_entries(&e.host);
            let root = if usable {
                Root::open(&e.host).ok().map(std::sync::Arc::new)
            } else {
                None
            };
            if root.is_none() {
                let why = if e.host.exists() {
                    "empty (nothing mounted)"
                } else {
                    "absent"
                };
                roots.entry_missing.insert(i, roots.missing.len());
                roots.missing.push(MissingMount {
                    container: e.container.clone(),
                    host: e.host.clone(),
                    why: why.into(),
                    affected: AtomicU64::new(0),
                });
            }
            roots.open.push(root);
        }
        Ok(roots)
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
