//! Bit rot on a generated fixture: one byte changes inside a healthy file while its size and
//! modification time stay what they were (the access time is restored too), as a failing disk
//! or a bad RAM stick would leave it. Only a content hash can notice.

use crate::{Fixture, TruthFault};
use anyhow::{bail, Context, Result};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use sqlx::Connection;
use std::collections::BTreeSet;
use std::fs::{File, FileTimes, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// A file that may rot: who it belongs to and where it is.
struct Candidate {
    asset_id: String,
    owner_id: String,
    kind: &'static str,
    db_path: String,
    host: PathBuf,
}

/// Flips one bit in `n` healthy image files of `fx` (about half of them originals, the rest
/// previews/thumbnails where the schema has an `asset_file(s)` table), restores their
/// modification and access times, and returns one `bitrot` [`TruthFault`] per file.
///
/// Healthy means: an upload asset (no external library), not trashed, with no injected fault
/// on any of its files, whose file is a non-empty JPEG/PNG/WebP. The changed byte sits in the
/// middle of the file (compressed image data), so format checks of head and tail still pass:
/// only a hash sees it. Choice is deterministic for a given `seed`.
pub async fn inject_bitrot(fx: &Fixture, n: usize, seed: u64) -> Result<Vec<TruthFault>> {
    let gen = fx.truth.generation;
    let t = gen.tables();
    let faulty: BTreeSet<String> = fx
        .truth
        .faults
        .iter()
        .chain(&fx.truth.trashed_faults)
        .filter_map(|f| f.asset_id.clone())
        .collect();
    let mut c = sqlx::PgConnection::connect(&fx.db_url)
        .await
        .with_context(|| format!("connect to {}", fx.db_name))?;
    let live = "a.\"libraryId\" IS NULL AND a.\"deletedAt\" IS NULL AND a.\"ownerId\" IS NOT NULL";
    let originals: Vec<(String, String, String)> = sqlx::query_as(&format!(
        "SELECT a.id::text, a.\"ownerId\"::text, a.\"originalPath\" FROM \"{}\" a \
         WHERE {live} ORDER BY a.\"originalPath\"",
        t.assets
    ))
    .fetch_all(&mut c)
    .await
    .context("list originals")?;
    // Not the edited renditions: one asset's edited and unedited thumbnail would both be
    // (asset, "thumbnail") in the truth.
    let unedited = if gen.asset_file_is_edited() {
        " AND NOT f.\"isEdited\""
    } else {
        ""
    };
    let derivatives: Vec<(String, String, String, String)> = match t.asset_files {
        Some(af) => sqlx::query_as(&format!(
            "SELECT a.id::text, a.\"ownerId\"::text, f.type::text, f.path FROM \"{af}\" f \
             JOIN \"{}\" a ON a.id = f.\"assetId\" \
             WHERE {live} AND f.type::text IN ('preview', 'thumbnail'){unedited} ORDER BY f.path",
            t.assets
        ))
        .fetch_all(&mut c)
        .await
        .context("list previews and thumbnails")?,
        None => Vec::new(),
    };
    let _ = c.close().await;

    let usable = |asset_id: &str, db_path: &str| -> Option<PathBuf> {
        if faulty.contains(asset_id) {
            return None;
        }
        let ext = Path::new(db_path)
            .extension()?
            .to_str()?
            .to_ascii_lowercase();
        if !matches!(ext.as_str(), "jpg" | "jpeg" | "png" | "webp") {
            return None;
        }
        let host = fx.truth.map_path(db_path)?;
        let md = std::fs::symlink_metadata(&host).ok()?;
        (md.is_file() && md.len() >= 64).then_some(host)
    };
    let mut orig: Vec<Candidate> = originals
        .into_iter()
        .filter_map(|(asset_id, owner_id, db_path)| {
            let host = usable(&asset_id, &db_path)?;
            Some(Candidate {
                asset_id,
                owner_id,
                kind: "original",
                db_path,
                host,
            })
        })
        .collect();
    let mut der: Vec<Candidate> = derivatives
        .into_iter()
        .filter_map(|(asset_id, owner_id, kind, db_path)| {
            let host = usable(&asset_id, &db_path)?;
            let kind = if kind == "preview" {
                "preview"
            } else {
                "thumbnail"
            };
            Some(Candidate {
                asset_id,
                owner_id,
                kind,
                db_path,
                host,
            })
        })
        .collect();
    let mut rng = StdRng::seed_from_u64(seed);
    orig.shuffle(&mut rng);
    der.shuffle(&mut rng);
    let from_der = (n / 2).min(der.len());
    let from_orig = n - from_der;
    if orig.len() < from_orig {
        bail!(
            "only {} healthy originals to rot, {from_orig} wanted",
            orig.len()
        );
    }
    let mut out = Vec::with_capacity(n);
    for c in orig
        .into_iter()
        .take(from_orig)
        .chain(der.into_iter().take(from_der))
    {
        flip_one_bit(&c.host)?;
        out.push(TruthFault {
            // Reported from `quick` up, by a `--verify-manifest` run.
            level: "quick".into(),
            asset_id: Some(c.asset_id),
            owner_id: Some(c.owner_id),
            file: Some(c.kind.to_string()),
            fault: "bitrot".into(),
            db_path: Some(c.db_path),
            found_at: None,
            root: None,
            affected: None,
        });
    }
    Ok(out)
}

/// Flips the lowest bit of one byte near the middle of `path`, in place (same inode, same
/// size), then puts the access and modification times back (`futimens`).
pub fn flip_one_bit(path: &Path) -> Result<()> {
    let md = std::fs::metadata(path).with_context(|| format!("stat {}", path.display()))?;
    let (atime, mtime) = (md.accessed()?, md.modified()?);
    let data = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    // A byte that neither is nor follows 0xFF and is not 0xFE: in a JPEG's entropy-coded
    // data that cannot make or break a marker.
    let at = (data.len() / 2..data.len().saturating_sub(1))
        .find(|&i| data[i] < 0xFE && data[i - 1] != 0xFF)
        .with_context(|| format!("no byte to flip in {}", path.display()))?;
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("open {} for writing", path.display()))?;
    f.write_all_at(&[data[at] ^ 0x01], at as u64)?;
    f.sync_all()?;
    restore_times(&f, atime, mtime).with_context(|| format!("restore times of {}", path.display()))
}

fn restore_times(
    f: &File,
    atime: std::time::SystemTime,
    mtime: std::time::SystemTime,
) -> std::io::Result<()> {
    f.set_times(FileTimes::new().set_accessed(atime).set_modified(mtime))
}
