//! Free space where Immich writes, and the age of the last database backup.

use super::*;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub(super) fn disk_checks(
    opts: &DoctorOptions,
    media: Option<&Path>,
    db: Option<&DbFacts>,
    checks: &mut Vec<Check>,
) {
    let mut paths: Vec<(PathBuf, &str)> = Vec::new();
    if let Some(m) = media {
        paths.push((m.to_path_buf(), "media root"));
    }
    for (_, h) in &opts.maps {
        if h.is_dir() && !paths.iter().any(|(p, _)| p == h) {
            paths.push((h.clone(), "mapped folder"));
        }
    }
    if let Some(d) = &opts.db_data_dir {
        paths.push((d.clone(), "PostgreSQL data directory"));
    } else if let Some(db) = db {
        match (&db.data_directory, db.local) {
            (Some(d), true) if Path::new(d).is_dir() => {
                paths.push((PathBuf::from(d), "PostgreSQL data directory"))
            }
            (Some(d), _) => checks.push(Check::ok(
                format!("disk {d}"),
                format!(
                    "PostgreSQL data directory is not on this host (inside a container or on \
                     another machine): not checked; {} with DB_DATA_LOCATION names its host \
                     folder",
                    crate::error::Hint::EnvFile
                ),
            )),
            (None, _) => {}
        }
    }
    for (p, what) in paths {
        checks.push(disk_check(opts, &p, what));
    }
}

pub(super) fn percent(avail: u64, total: u64) -> f64 {
    if total == 0 {
        100.0
    } else {
        avail as f64 * 100.0 / total as f64
    }
}

pub(super) fn human(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1} {}", units[i])
}

pub(super) fn disk_check(opts: &DoctorOptions, path: &Path, what: &str) -> Check {
    let name = format!("disk {}", path.display());
    let s = match (opts.statvfs)(path) {
        Ok(s) => s,
        Err(e) => {
            return Check::warn(
                name,
                format!("cannot read free space of the {what}: {e}"),
                "check the mount",
            )
        }
    };
    let space = percent(s.blocks_available, s.blocks);
    let inodes = percent(s.inodes_available, s.inodes);
    let free = human(s.blocks_available.saturating_mul(s.block_size));
    let size = human(s.blocks.saturating_mul(s.block_size));
    let message =
        format!("{what}: {free} free of {size} ({space:.1} %), inodes {inodes:.1} % free",);
    let full =
        (s.blocks > 0 && s.blocks_available == 0) || (s.inodes > 0 && s.inodes_available == 0);
    let fix = "free space (old backups, docker images: `docker system prune`) or grow the volume; \
               PostgreSQL and thumbnail generation fail on a full disk";
    if full {
        Check::fail(name, format!("{message}: full"), fix)
    } else if space < opts.min_free_percent || inodes < opts.min_free_percent {
        Check::warn(
            name,
            format!("{message}: under {} %", opts.min_free_percent),
            fix,
        )
    } else {
        Check::ok(name, message)
    }
}

pub(super) fn backup_check(opts: &DoctorOptions, host: &Path) -> Check {
    const NAME: &str = "backups";
    let dir = host.join("backups");
    let fix = "enable Immich's database backups (Administration > Settings > Backup) or \
               schedule `docker exec immich_postgres pg_dumpall`; keep a copy off this disk";
    let newest = std::fs::read_dir(&dir).ok().and_then(|rd| {
        rd.filter_map(|e| e.ok())
            .filter(|e| e.file_name() != ".immich")
            .filter_map(|e| {
                let m = e.metadata().ok()?;
                if !m.is_file() {
                    return None;
                }
                Some((m.modified().ok()?, e.file_name()))
            })
            .max()
    });
    let Some((when, file)) = newest else {
        return Check::warn(NAME, format!("no backup file in {}", dir.display()), fix);
    };
    let age = SystemTime::now().duration_since(when).unwrap_or_default();
    let days = age.as_secs_f64() / 86400.0;
    let path = dir.join(&file);
    let made_by = crate::restore::dumpfile::parse_name(&file.to_string_lossy())
        .server_version
        .map(|v| format!(" (made by Immich v{v})"))
        .unwrap_or_default();
    // A backup nobody restored is a hope: the restore test checks it against the media
    // backup without standing up a second Immich.
    let message = format!(
        "newest {} is {days:.1} days old{made_by}; check that it and your media backup \
         restore together: immich-integrity restore-test --dump {} --media MEDIA_BACKUP",
        path.display(),
        path.display()
    );
    if age > opts.max_backup_age {
        Check::warn(
            NAME,
            format!(
                "{message} (older than {:.0} days)",
                opts.max_backup_age.as_secs_f64() / 86400.0
            ),
            fix,
        )
    } else {
        Check::ok(NAME, message)
    }
}
