//! The top folders: present, marked, and reachable by the user who will scan.

use super::*;
use crate::fs::access::Identity;
use crate::fs::pathmap::MEDIA_FOLDERS;
use crate::fs::roots::{folder_state, FolderState};
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub(super) const WRITE: u32 = 2;

/// The first directory from `/` down to `dir`'s parent that `who` cannot enter.
pub(super) fn blocked_ancestor(dir: &Path, who: &Identity) -> Option<PathBuf> {
    let mut blocked = None;
    for a in dir.ancestors().skip(1) {
        if let Ok(m) = std::fs::metadata(a) {
            if !who.allows(m.mode(), m.uid(), m.gid(), crate::fs::access::SEARCH) {
                blocked = Some(a.to_path_buf());
            }
        }
    }
    blocked
}

pub(super) fn folder_checks(
    opts: &DoctorOptions,
    host: &Path,
    mount_checks: Option<&HashMap<String, bool>>,
    checks: &mut Vec<Check>,
) {
    let who = opts.as_user.clone().unwrap_or_else(Identity::current);
    let chown = format!("chown {who} ");
    for folder in MEDIA_FOLDERS {
        let name = format!("folder {folder}");
        let dir = host.join(folder);
        let marker = dir.join(".immich");
        let state = folder_state(host, folder);
        // Immich writes a folder's first marker itself and requires it only from then on.
        let first_start = mount_checks.is_some_and(|m| m.get(folder) != Some(&true));
        let check = match state {
            FolderState::Missing | FolderState::NoMarker if first_start => Check::warn(
                name,
                format!(
                    "{} has no .immich marker yet, and Immich never checked this folder: it \
                     writes the marker at its next start",
                    dir.display()
                ),
                format!(
                    "make sure {} is the folder the server mounts, and writable by its user",
                    dir.display()
                ),
            ),
            FolderState::Missing => Check::fail(
                name,
                format!(
                    "{} is absent or empty without its .immich marker: Immich refuses to start \
                     (\"Failed to read ... {folder}/.immich\")",
                    dir.display()
                ),
                "mount the folder (the volume line of UPLOAD_LOCATION in docker-compose.yml); \
                 if it really is new and empty: `touch .immich` in it",
            ),
            FolderState::Nested => Check::fail(
                name,
                format!(
                    "{} has no .immich marker but {}/{folder}/.immich exists: restored one level \
                     too deep",
                    dir.display(),
                    dir.display()
                ),
                crate::fs::roots::nested_repair(host, folder),
            ),
            FolderState::NoMarker => Check::fail(
                name,
                format!(
                    "{} holds files but no .immich marker: Immich refuses to start",
                    dir.display()
                ),
                format!(
                    "if this is the right folder, recreate the marker: touch {}",
                    marker.display()
                ),
            ),
            FolderState::Ok => access_check(name, &dir, &marker, &who, &chown),
        };
        checks.push(check);
    }
}

pub(super) fn access_check(
    name: String,
    dir: &Path,
    marker: &Path,
    who: &Identity,
    chown: &str,
) -> Check {
    if let Some(a) = blocked_ancestor(dir, who) {
        return Check::fail(
            name,
            format!("uid {} cannot enter {}", who.uid, a.display()),
            format!("chmod o+x {} (or give uid {} access)", a.display(), who.uid),
        );
    }
    let (dm, mm) = match (std::fs::metadata(dir), std::fs::metadata(marker)) {
        (Ok(d), Ok(m)) => (d, m),
        (Err(e), _) | (_, Err(e)) => {
            return Check::fail(
                name,
                format!("cannot stat {}: {e}", dir.display()),
                "check the mount",
            )
        }
    };
    let allows = |m: &std::fs::Metadata, want| who.allows(m.mode(), m.uid(), m.gid(), want);
    let mut missing = Vec::new();
    if !allows(&dm, crate::fs::access::READ | crate::fs::access::SEARCH) {
        missing.push("list the folder");
    }
    if !allows(&dm, WRITE | crate::fs::access::SEARCH) {
        missing.push("create files in the folder");
    }
    if !allows(&mm, crate::fs::access::READ | WRITE) {
        missing.push("read and rewrite its .immich");
    }
    if missing.is_empty() {
        return Check::ok(
            name,
            format!(
                "{} marked, readable and writable by uid {}",
                dir.display(),
                who.uid
            ),
        );
    }
    Check::fail(
        name,
        format!(
            "uid {} cannot {} ({}: mode {:o}, owner {}:{})",
            who.uid,
            missing.join(" or "),
            dir.display(),
            dm.mode() & 0o7777,
            dm.uid(),
            dm.gid()
        ),
        format!(
            "{chown}{} {} && chmod u+rwx {}",
            dir.display(),
            marker.display(),
            dir.display()
        ),
    )
}

/// External libraries: each import path, mapped to this host as the scan maps it, must hold
/// files. An absent or empty one is what the scan reports as `mount_missing`.
pub(super) fn library_checks(opts: &DoctorOptions, db: &DbFacts, checks: &mut Vec<Check>) {
    let mut map = crate::fs::pathmap::PathMap::new();
    for (c, h) in &opts.maps {
        map.add(c, h.clone(), false);
    }
    for lib in &db.info.libraries {
        for p in &lib.import_paths {
            let host = match map.map(p) {
                crate::fs::pathmap::Mapped::Host { entry, rel } => {
                    map.entries()[entry].host.join(rel)
                }
                _ => PathBuf::from(p),
            };
            let name = format!("library {}", lib.id);
            checks.push(match crate::fs::roots::unmounted(&host) {
                Some(why) => Check::fail(
                    name,
                    format!(
                        "mount_missing: {} (import path {p}) is {why}: the scan checks none of \
                         the library's files, and Immich's library scan would take them as \
                         gone",
                        host.display()
                    ),
                    format!(
                        "mount it, or pass {} {p}=HOST where it is mounted on this host",
                        crate::error::Hint::Maps
                    ),
                ),
                None => Check::ok(
                    name,
                    format!("import path {p} -> {} holds files", host.display()),
                ),
            });
        }
    }
}
