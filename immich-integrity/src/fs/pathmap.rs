//! Container paths (as Immich stored them) to host paths the tool can open.
//!
//! Immich's media root has had three spellings: relative `upload` (≤ v1.135, resolved against the
//! container's working directory `/usr/src/app`), `/usr/src/app/upload` (v1.136) and `/data`
//! (v1.137+). The first two name the same folder. A row stored under the spelling the server does
//! not use any more is a *stale prefix*: the server cannot open it even when the file is in place.

use std::path::{Path, PathBuf};

/// Immich's top folders under the media root (`enum StorageFolder`).
pub const MEDIA_FOLDERS: [&str; 6] = [
    "upload",
    "library",
    "thumbs",
    "encoded-video",
    "profile",
    "backups",
];

/// One `CONTAINER=HOST` pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapEntry {
    /// Container prefix without trailing slash; `upload` may be relative.
    pub container: String,
    /// The host folder it maps to.
    pub host: PathBuf,
    /// True for the Immich media root (its first path component is a top folder).
    pub media: bool,
}

/// Result of mapping one stored path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapped {
    /// Under `entries[entry]`, at `rel` (normalised, never escaping) below its host root.
    Host {
        /// Index into [`PathMap::entries`].
        entry: usize,
        /// Path below the entry's host root.
        rel: PathBuf,
    },
    /// Under a media-root spelling Immich no longer uses; `active_db_path` is the same file
    /// spelled with the current media location.
    StalePrefix {
        /// Index into [`PathMap::entries`].
        entry: usize,
        /// Path below the entry's host root.
        rel: PathBuf,
        /// The same file spelled with the active media location.
        active_db_path: String,
    },
    /// `..` climbs out of the root the path starts in.
    Escapes {
        /// The entry the path starts in, if any.
        entry: Option<usize>,
    },
    /// No mapping covers it.
    Unmapped,
    /// Empty path.
    Empty,
}

#[derive(Debug, Clone, Default)]
/// Container-to-host path prefixes: the media root and every other mapped folder.
pub struct PathMap {
    entries: Vec<MapEntry>,
    /// The media location Immich uses now, when known (`/data`, `/usr/src/app/upload`, `upload`).
    active_media: Option<String>,
}

const CWD_MEDIA: &str = "/usr/src/app/upload";
const MEDIA_SPELLINGS: [&str; 3] = ["upload", CWD_MEDIA, "/data"];

fn same_media_family(a: &str, b: &str) -> bool {
    // Called for every mapped path: compare borrowed strings, allocate nothing.
    fn norm(s: &str) -> &str {
        if s == "upload" {
            CWD_MEDIA
        } else {
            s
        }
    }
    norm(a) == norm(b)
}

impl PathMap {
    /// An empty map.
    pub fn new() -> PathMap {
        PathMap::default()
    }

    /// Adds a mapping; longer container prefixes win over shorter ones.
    pub fn add(&mut self, container: &str, host: impl Into<PathBuf>, media: bool) {
        let container = trim_slashes(container);
        self.entries.retain(|e| e.container != container);
        self.entries.push(MapEntry {
            container,
            host: host.into(),
            media,
        });
        self.entries
            .sort_by_key(|e| std::cmp::Reverse(e.container.len()));
    }

    /// Maps Immich's media location to a host folder. `upload` and `/usr/src/app/upload` are
    /// both mapped since they are the same folder inside the container.
    pub fn add_media_root(&mut self, active: &str, host: impl Into<PathBuf>) {
        let host = host.into();
        let active = trim_slashes(active);
        for spelling in MEDIA_SPELLINGS {
            if same_media_family(spelling, &active) {
                self.add(spelling, host.clone(), true);
            }
        }
        if !MEDIA_SPELLINGS.contains(&active.as_str()) {
            self.add(&active, host, true);
        }
        self.active_media = Some(active);
    }

    /// The mappings, in the order added.
    pub fn entries(&self) -> &[MapEntry] {
        &self.entries
    }

    /// The container media location the map treats as current, if a media root was added.
    pub fn active_media(&self) -> Option<&str> {
        self.active_media.as_deref()
    }

    /// True when some entry covers `container` (used to add identity maps for libraries).
    pub fn covers(&self, container: &str) -> bool {
        self.entries
            .iter()
            .any(|e| strip_prefix(container, &e.container).is_some())
    }

    /// Maps one stored path (longest matching prefix wins, whole components only).
    pub fn map(&self, db_path: &str) -> Mapped {
        if db_path.is_empty() {
            return Mapped::Empty;
        }
        if let Some(stale) = self.map_stale(db_path) {
            return stale;
        }
        for (i, e) in self.entries.iter().enumerate() {
            if let Some(rest) = strip_prefix(db_path, &e.container) {
                return match normalise(rest) {
                    Some(rel) => Mapped::Host { entry: i, rel },
                    None => Mapped::Escapes { entry: Some(i) },
                };
            }
        }
        if db_path.split('/').any(|c| c == "..") {
            return Mapped::Escapes { entry: None };
        }
        Mapped::Unmapped
    }

    fn map_stale(&self, db_path: &str) -> Option<Mapped> {
        let active = self.active_media.as_deref()?;
        let media = self.entries.iter().position(|e| e.media)?;
        for spelling in MEDIA_SPELLINGS {
            if same_media_family(spelling, active) {
                continue;
            }
            if let Some(rest) = strip_prefix(db_path, spelling) {
                let Some(rel) = normalise(rest) else {
                    return Some(Mapped::Escapes { entry: Some(media) });
                };
                let active_db_path = format!("{active}/{}", rel.to_string_lossy());
                return Some(Mapped::StalePrefix {
                    entry: media,
                    rel,
                    active_db_path,
                });
            }
        }
        None
    }

    /// The stored form of `rel` under entry `entry` (for relinking).
    pub fn to_db_path(&self, entry: usize, rel: &Path) -> String {
        let e = &self.entries[entry];
        let prefix = if e.media {
            self.active_media.as_deref().unwrap_or(&e.container)
        } else {
            &e.container
        };
        format!("{prefix}/{}", rel.to_string_lossy())
    }
}

fn trim_slashes(s: &str) -> String {
    let t = s.trim_end_matches('/');
    if t.is_empty() { "/" } else { t }.to_string()
}

/// `path` minus `prefix` when `prefix` is a whole-component prefix of it.
fn strip_prefix<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    if prefix == "/" {
        return path.strip_prefix('/');
    }
    let rest = path.strip_prefix(prefix)?;
    if rest.is_empty() {
        Some(rest)
    } else {
        rest.strip_prefix('/')
    }
}

/// The stored path below its root, as the kernel will resolve it: `None` when `..` climbs
/// above the start (refused as outside the root, never followed). No lexical clean-up that
/// the kernel would not do: `missing/../x.jpg` stays (the kernel needs `missing` to exist, and
/// so do Immich's server and Node), and so does a trailing `/` or `/.` (the kernel then wants a
/// directory). Only what is exactly equivalent is dropped: leading slashes, empty components
/// (`a//b`) and `.` before another component (`a/./b`).
fn normalise(rest: &str) -> Option<PathBuf> {
    let rest = rest.trim_start_matches('/');
    // Nearly every path is already normal: one exact allocation, no component list.
    if rest.split('/').all(|c| !matches!(c, "" | "." | "..")) {
        return Some(PathBuf::from(rest));
    }
    let parts: Vec<&str> = rest.split('/').collect();
    let last = parts.len() - 1;
    let mut depth = 0usize;
    let mut kept: Vec<&str> = Vec::with_capacity(parts.len());
    for (i, c) in parts.iter().enumerate() {
        match *c {
            "" | "." if i != last => {}
            "" | "." => kept.push(c),
            ".." => {
                depth = depth.checked_sub(1)?;
                kept.push(c);
            }
            c => {
                depth += 1;
                kept.push(c);
            }
        }
    }
    Some(PathBuf::from(kept.join("/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_map() -> PathMap {
        let mut m = PathMap::new();
        m.add_media_root("/data", "/srv/immich");
        m.add("/mnt/photos", "/host/photos", false);
        m
    }

    #[test]
    fn maps_media_and_library_paths() {
        let m = data_map();
        let Mapped::Host { entry, rel } = m.map("/data/upload/u/ab/cd/x.jpg") else {
            panic!()
        };
        assert_eq!(m.entries()[entry].host, Path::new("/srv/immich"));
        assert_eq!(rel, Path::new("upload/u/ab/cd/x.jpg"));
        let Mapped::Host { entry, rel } = m.map("/mnt/photos/2020/a.jpg") else {
            panic!()
        };
        assert_eq!(m.entries()[entry].host, Path::new("/host/photos"));
        assert_eq!(rel, Path::new("2020/a.jpg"));
        assert_eq!(m.map("/mnt/photosX/a.jpg"), Mapped::Unmapped);
        assert_eq!(m.map(""), Mapped::Empty);
    }

    #[test]
    fn dot_dot_that_escapes_is_caught() {
        let m = data_map();
        assert!(matches!(
            m.map("/data/upload/../../etc/passwd"),
            Mapped::Escapes { .. }
        ));
        assert!(matches!(
            m.map("/data/upload/u/../v/x.jpg"),
            Mapped::Host { .. }
        ));
        assert!(matches!(
            m.map("/etc/../etc/passwd"),
            Mapped::Escapes { entry: None }
        ));
    }

    #[test]
    fn normalise_takes_the_short_way_only_for_normal_paths() {
        let n = |s| normalise(s).map(|p| p.to_string_lossy().into_owned());
        assert_eq!(n("upload/u/ab/x.jpg").as_deref(), Some("upload/u/ab/x.jpg"));
        // Kept for the kernel to judge: a trailing slash wants a directory, and `u/..` needs
        // `u` to exist.
        assert_eq!(
            n("upload//u/./ab/x.jpg/").as_deref(),
            Some("upload/u/ab/x.jpg/")
        );
        assert_eq!(n("upload/x.jpg/.").as_deref(), Some("upload/x.jpg/."));
        assert_eq!(
            n("upload/u/../v/x.jpg").as_deref(),
            Some("upload/u/../v/x.jpg")
        );
        assert_eq!(n("//upload/x.jpg").as_deref(), Some("upload/x.jpg"));
        assert_eq!(n("..").as_deref(), None);
        assert_eq!(n("a/../..").as_deref(), None);
        assert_eq!(n("").as_deref(), Some(""));
        assert_eq!(n("...").as_deref(), Some("..."));
    }

    #[test]
    fn other_media_spelling_is_stale() {
        let m = data_map();
        let Mapped::StalePrefix { active_db_path, .. } =
            m.map("/usr/src/app/upload/upload/u/x.jpg")
        else {
            panic!()
        };
        assert_eq!(active_db_path, "/data/upload/u/x.jpg");
        let mut rel = PathMap::new();
        rel.add_media_root("upload", "/srv/immich");
        assert!(matches!(
            rel.map("upload/upload/u/x.jpg"),
            Mapped::Host { .. }
        ));
        assert!(matches!(
            rel.map("/usr/src/app/upload/upload/u/x.jpg"),
            Mapped::Host { .. }
        ));
        let Mapped::StalePrefix { active_db_path, .. } = rel.map("/data/upload/u/x.jpg") else {
            panic!()
        };
        assert_eq!(active_db_path, "upload/upload/u/x.jpg");
    }
}
