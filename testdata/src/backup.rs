//! A backup pair of a generated library, as an admin would have made it: a real `pg_dumpall`
//! dump of the fixture's database (and no other), gzipped and named as Immich names its own
//! backups, and a copy of the media tree with planted differences: originals missing from the
//! copy (their assets created shortly before the dump, after the media was copied), a missing
//! thumbnail, a bit-flipped original, files added after the dump; plus a truncated copy of the
//! dump. The ground truth lists each difference.

use crate::{Fixture, Generation};
use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::Connection;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What was planted in a [`BackupPair`].
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct BackupTruth {
    /// Assets whose original the media copy lacks (created minutes before the dump).
    pub missing_originals: Vec<String>,
    /// `createdAt` given to each of those, seconds before the dump's time.
    pub missing_created_before_dump_s: i64,
    /// `(asset id, "thumbnail")`: derivatives the copy lacks while the original is there.
    pub missing_derivatives: Vec<(String, String)>,
    /// Assets whose original in the copy has one flipped bit (same size).
    pub bit_flipped: Vec<String>,
    /// Files added to the copy after the dump, relative to its root.
    pub added_after_dump: Vec<String>,
    /// The release in `version_history`.
    pub immich_version: Option<String>,
    /// The dumped database's name.
    pub database: String,
}

/// A dump and a media copy of one fixture.
#[derive(Clone, Debug)]
pub struct BackupPair {
    /// `<copy>/backups/immich-db-backup-<time>-v<release>-pg<version>.sql.gz`.
    pub dump: PathBuf,
    /// The same dump cut short (in another folder, same name).
    pub truncated_dump: PathBuf,
    /// The media copy (the backup's media root).
    pub media: PathBuf,
    /// The time in the dump's name.
    pub dump_time: DateTime<Utc>,
    /// What was planted.
    pub truth: BackupTruth,
}

/// `pg_dumpall --exclude-database` patterns that leave out every database but `name`
/// (psql patterns: each differs at one position, or is a strict prefix, or is longer).
fn all_but(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, c) in name.char_indices() {
        out.push(format!("{}[^{c}]*", &name[..i]));
        if i > 0 {
            out.push(name[..i].to_string());
        }
    }
    out.push(format!("{name}?*"));
    out
}

/// Runs the real `pg_dumpall` (as Immich does: `--clean --if-exists`) on `fx`'s server,
/// keeping only `fx`'s database, and writes it gzipped to `to`.
pub fn pg_dumpall_one(fx: &Fixture, to: &Path) -> Result<()> {
    if !fx
        .db_name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        bail!("unexpected database name {:?}", fx.db_name);
    }
    let (prefix, _, query) = crate::split_pg_url(&fx.db_url);
    let mut cmd = Command::new("pg_dumpall");
    cmd.arg(format!("--dbname={prefix}/postgres{query}"))
        .args(["--clean", "--if-exists"]);
    for p in all_but(&fx.db_name) {
        cmd.arg(format!("--exclude-database={p}"));
    }
    let out = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .context("run pg_dumpall (is the PostgreSQL client installed?)")?;
    if !out.status.success() {
        bail!(
            "pg_dumpall failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let file = std::fs::File::create(to).with_context(|| format!("create {}", to.display()))?;
    let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::fast());
    gz.write_all(&out.stdout)?;
    gz.finish()?.sync_all()?;
    Ok(())
}

/// One flipped bit inside a JPEG's comment segment (the generator writes one after SOI): the
/// image still decodes and its size is unchanged, only the SHA-1 tells.
fn flip_in_comment(path: &Path) -> Result<()> {
    let mut b = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    if b.len() < 8 || b[2..4] != [0xFF, 0xFE] {
        bail!("{} has no comment segment after SOI", path.display());
    }
    b[6] ^= 0x01;
    std::fs::write(path, &b).with_context(|| format!("write {}", path.display()))
}

/// Makes the pair in `fx.dir/backup-pair/` (see the module notes). `fx` should be a clean
/// fixture (`faults: false`) of v2.6 or newer, so that only the planted differences show.
pub async fn make_backup_pair(fx: &Fixture) -> Result<BackupPair> {
    let gen: Generation = fx.truth.generation;
    let t = gen.tables();
    let base = fx.dir.join("backup-pair");
    let media = base.join("media");
    std::fs::create_dir_all(&base)?;
    let st = Command::new("cp")
        .arg("-a")
        .arg(&fx.media_root)
        .arg(&media)
        .status()
        .context("cp -a the media root")?;
    if !st.success() {
        bail!("cp -a {} failed", fx.media_root.display());
    }
    let mut c = sqlx::PgConnection::connect(&fx.db_url).await?;
    let edited = fx.truth.edited_asset.clone().unwrap_or_default();
    // Upload JPEG originals of live, visible assets, in id order.
    let picks: Vec<(String, String)> = sqlx::query_as(&format!(
        "SELECT a.id::text, a.\"originalPath\" FROM \"{}\" a WHERE a.\"libraryId\" IS NULL \
         AND a.\"deletedAt\" IS NULL AND a.\"originalPath\" LIKE '%/upload/%.jpg' \
         AND a.id::text <> $1 ORDER BY a.id",
        t.assets
    ))
    .bind(&edited)
    .fetch_all(&mut c)
    .await
    .context("list originals")?;
    if picks.len() < 6 {
        bail!(
            "need at least 6 upload JPEG assets, the fixture has {}",
            picks.len()
        );
    }
    let host = |p: &str| -> Result<PathBuf> {
        let rel = p
            .strip_prefix(fx.container_root.as_str())
            .context("path outside the media location")?
            .trim_start_matches('/');
        Ok(media.join(rel))
    };
    let before_s = 300i64;
    let mut truth = BackupTruth {
        missing_created_before_dump_s: before_s,
        immich_version: gen.release().map(str::to_string),
        database: fx.db_name.clone(),
        ..Default::default()
    };
    let dump_time = DateTime::<Utc>::from_timestamp(Utc::now().timestamp(), 0).expect("now");
    for (id, path) in &picks[..3] {
        std::fs::remove_file(host(path)?)?;
        sqlx::query(&format!(
            "UPDATE \"{}\" SET \"createdAt\" = $2 WHERE id = $1::uuid",
            t.assets
        ))
        .bind(id)
        .bind(dump_time - chrono::Duration::seconds(before_s))
        .execute(&mut c)
        .await?;
        truth.missing_originals.push(id.clone());
    }
    let (flip_id, flip_path) = &picks[3];
    flip_in_comment(&host(flip_path)?)?;
    truth.bit_flipped.push(flip_id.clone());
    let thumb_of = &picks[4].0;
    if let Some(af) = t.asset_files {
        let p: String = sqlx::query_scalar(&format!(
            "SELECT path FROM \"{af}\" WHERE \"assetId\" = $1::uuid AND type::text = 'thumbnail' \
             ORDER BY path LIMIT 1"
        ))
        .bind(thumb_of)
        .fetch_one(&mut c)
        .await
        .context("the thumbnail row")?;
        std::fs::remove_file(host(&p)?)?;
        truth
            .missing_derivatives
            .push((thumb_of.clone(), "thumbnail".into()));
    }
    let pg: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&mut c)
        .await?;
    let _ = c.close().await;
    let pg = pg.split_whitespace().next().unwrap_or("0").to_string();
    let name = format!(
        "immich-db-backup-{}-v{}-pg{pg}.sql.gz",
        dump_time.format("%Y%m%dT%H%M%S"),
        gen.release().unwrap_or("0.0.0")
    );
    let backups = media.join("backups");
    std::fs::create_dir_all(&backups)?;
    let dump = backups.join(&name);
    pg_dumpall_one(fx, &dump)?;
    // Added after the dump: a new upload and a stray file in thumbs/.
    let owner = picks[0]
        .1
        .split('/')
        .nth(3)
        .context("owner folder of an upload path")?
        .to_string();
    for rel in [
        format!("upload/{owner}/ne/w0/new-after-dump.jpg"),
        format!("thumbs/{owner}/ne/w0/stray-after-dump.webp"),
    ] {
        let p = media.join(&rel);
        std::fs::create_dir_all(p.parent().expect("parent"))?;
        std::fs::write(&p, format!("added after the dump: {rel}"))?;
        truth.added_after_dump.push(rel);
    }
    // Truncated: the first 60 % of the gzip stream.
    let cut_dir = base.join("truncated");
    std::fs::create_dir_all(&cut_dir)?;
    let truncated_dump = cut_dir.join(&name);
    let bytes = std::fs::read(&dump)?;
    std::fs::write(&truncated_dump, &bytes[..bytes.len() * 6 / 10])?;
    std::fs::write(base.join("truth.json"), serde_json::to_vec_pretty(&truth)?)?;
    Ok(BackupPair {
        dump,
        truncated_dump,
        media,
        dump_time,
        truth,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn exclusion_patterns_leave_only_the_name() {
        let p = super::all_but("imf_ab");
        assert!(p.contains(&"imf_a[^b]*".to_string()));
        assert!(p.contains(&"imf_ab?*".to_string()));
        assert!(p.contains(&"imf_".to_string()));
        assert!(!p.contains(&"imf_ab".to_string()));
    }
}
