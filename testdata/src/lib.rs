//! Fixture generator for immich-integrity: builds, in a fresh PostgreSQL database, Immich's tables
//! for a chosen schema generation (real table and column names) plus a media tree of real, small,
//! unique files, injects a known set of faults and writes the ground truth.
//!
//! Every call of [`generate`] makes its own database (`imf_<hex>`) and its own folder under the
//! given base directory, so parallel tests never share anything. Call [`Fixture::drop_db`] (or
//! [`Fixture::destroy`]) at the end.

pub mod backup;
pub mod bitrot;
pub mod content;
mod db;
pub mod media;
pub mod phones;
mod plan;
pub mod slowmount;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

pub use bitrot::inject_bitrot;

/// Default PostgreSQL URL (overridable with the `FIXTURE_PG_URL` environment variable).
pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// The uid:gid the Immich server is assumed to run as.
pub const AS_USER: &str = "1000:1000";

/// An Immich schema generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Generation {
    /// Relative paths, plural tables, `previewPath`/`thumbnailPath` columns on `assets`.
    #[serde(rename = "v1.112")]
    V1_112,
    /// Relative paths, plural tables, `asset_files`.
    #[serde(rename = "v1.135")]
    V1_135,
    /// Absolute `/data` paths, singular tables, `MediaLocation`.
    #[serde(rename = "v1.137")]
    V1_137,
    /// As v1.137, sidecar and encoded video moved into `asset_file`. Schema from Immich's own
    /// DDL (`testdata/ddl/v2.6.sql`): `deviceAssetId`/`deviceId`, `duration` varchar, no
    /// `checksumAlgorithm` (that came in v2.7).
    #[serde(rename = "v2.6")]
    V2_6,
    /// Immich v3.0 (`testdata/ddl/v3.0.sql`): as v2.6 plus `checksumAlgorithm` and
    /// `integrity_report`, without `deviceAssetId`/`deviceId`, `duration` an integer (ms).
    #[serde(rename = "v3.0")]
    V3_0,
    /// Immich v3.2 (`testdata/ddl/v3.2.sql`): as v3.0 with cluster groups: `person` has no `id`
    /// (key `("ownerId", "personGroupId")`), `person_group`, `user."clusterGroupId"`.
    #[serde(rename = "v3.2")]
    V3_2,
}

impl Generation {
    /// All generations, oldest first.
    pub const ALL: [Generation; 6] = [
        Generation::V1_112,
        Generation::V1_135,
        Generation::V1_137,
        Generation::V2_6,
        Generation::V3_0,
        Generation::V3_2,
    ];

    /// "v1.112", "v1.135", "v1.137", "v2.6", "v3.0" or "v3.2".
    pub fn as_str(self) -> &'static str {
        match self {
            Generation::V1_112 => "v1.112",
            Generation::V1_135 => "v1.135",
            Generation::V1_137 => "v1.137",
            Generation::V2_6 => "v2.6",
            Generation::V3_0 => "v3.0",
            Generation::V3_2 => "v3.2",
        }
    }

    /// Immich's own DDL for this generation (assembled from its upstream migrations, see the
    /// header of each file in `testdata/ddl/`); `None` for the older generations, whose tables
    /// the generator declares itself.
    pub fn upstream_ddl(self) -> Option<&'static str> {
        match self {
            Generation::V2_6 => Some(include_str!("../ddl/v2.6.sql")),
            Generation::V3_0 => Some(include_str!("../ddl/v3.0.sql")),
            Generation::V3_2 => Some(include_str!("../ddl/v3.2.sql")),
            _ => None,
        }
    }

    /// The Immich release the fixture's `version_history` row names, as the server writes it
    /// (`serverVersion.toString()` of a `SemVer`: no leading "v"); `None` before v2.6 (the
    /// hand-made schemas have no `version_history`).
    pub fn release(self) -> Option<&'static str> {
        match self {
            Generation::V2_6 => Some("2.6.3"),
            Generation::V3_0 => Some("3.0.2"),
            Generation::V3_2 => Some("3.2.2"),
            _ => None,
        }
    }

    /// Paths stored relative (`upload/...`) rather than absolute (`/data/...`).
    pub fn relative_paths(self) -> bool {
        matches!(self, Generation::V1_112 | Generation::V1_135)
    }

    /// The media root as stored in the DB: "upload" (relative) or "/data".
    pub fn container_root(self) -> &'static str {
        if self.relative_paths() {
            "upload"
        } else {
            "/data"
        }
    }

    /// Plural table names (`assets`, `users`, ...), i.e. before v1.136.
    pub fn plural_tables(self) -> bool {
        self.relative_paths()
    }

    /// Previews/thumbnails live in `asset_files`/`asset_file` (v1.113+).
    pub fn has_asset_files(self) -> bool {
        self != Generation::V1_112
    }

    /// Sidecar and encoded video are `asset_file` rows (v2.4/v2.6+).
    pub fn sidecar_in_asset_file(self) -> bool {
        self.at_least_v2_6()
    }

    /// `asset_file."isEdited"` exists (v2.5+); the unique key is (`assetId`, `type`, `isEdited`).
    pub fn asset_file_is_edited(self) -> bool {
        self.at_least_v2_6()
    }

    /// Separator in thumbnail file names: `<id>-preview.jpeg` or (v2.5+) `<id>_preview.jpeg`.
    pub fn thumb_sep(self) -> char {
        if self.at_least_v2_6() {
            '_'
        } else {
            '-'
        }
    }

    /// `asset."deviceAssetId"` and `"deviceId"` (NOT NULL) exist (dropped in v3.0).
    pub fn has_device_ids(self) -> bool {
        !self.at_least_v3_0()
    }

    /// `asset."checksumAlgorithm"` exists (v2.7+; here v3.0 and v3.2).
    pub fn has_checksum_algorithm(self) -> bool {
        self.at_least_v3_0()
    }

    /// `asset.duration` is an integer of milliseconds (v3.0+) rather than `H:MM:SS.ffffff`.
    pub fn integer_duration(self) -> bool {
        self.at_least_v3_0()
    }

    /// The `integrity_report` table exists (v3.0+).
    pub fn has_integrity_report(self) -> bool {
        self.at_least_v3_0()
    }

    /// Cluster groups (v3.2+): `person` is keyed by (`ownerId`, `personGroupId`) and has no
    /// `id`; `asset_face."personGroupId"`; every user has a `clusterGroupId`. A person's id in
    /// the ground truth (and in the scanner's findings) is its `personGroupId`.
    pub fn person_groups(self) -> bool {
        self == Generation::V3_2
    }

    fn at_least_v2_6(self) -> bool {
        matches!(self, Generation::V2_6 | Generation::V3_0 | Generation::V3_2)
    }

    fn at_least_v3_0(self) -> bool {
        matches!(self, Generation::V3_0 | Generation::V3_2)
    }

    /// Table names for this generation (unquoted).
    pub fn tables(self) -> TableNames {
        if self.plural_tables() {
            TableNames {
                assets: "assets",
                asset_files: if self.has_asset_files() {
                    Some("asset_files")
                } else {
                    None
                },
                exif: "exif",
                users: "users",
                libraries: "libraries",
                person: "person",
                system_metadata: "system_metadata",
            }
        } else {
            TableNames {
                assets: "asset",
                asset_files: Some("asset_file"),
                exif: "asset_exif",
                users: "user",
                libraries: "library",
                person: "person",
                system_metadata: "system_metadata",
            }
        }
    }
}

/// Table names of one generation.
#[derive(Clone, Copy, Debug)]
pub struct TableNames {
    pub assets: &'static str,
    pub asset_files: Option<&'static str>,
    pub exif: &'static str,
    pub users: &'static str,
    pub libraries: &'static str,
    pub person: &'static str,
    pub system_metadata: &'static str,
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Generation {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim().trim_start_matches(['v', 'V']);
        Ok(match t {
            "1.112" | "1_112" => Generation::V1_112,
            "1.135" | "1_135" => Generation::V1_135,
            "1.137" | "1_137" => Generation::V1_137,
            "2.6" | "2_6" => Generation::V2_6,
            "3.0" | "3_0" => Generation::V3_0,
            "3.2" | "3_2" => Generation::V3_2,
            _ => bail!(
                "unknown generation {s:?} (expected v1.112, v1.135, v1.137, v2.6, v3.0 or v3.2)"
            ),
        })
    }
}

/// What to generate.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FixtureSpec {
    pub generation: Generation,
    /// Approximate count of upload assets (live-photo video parts, external-library and
    /// negative-control assets come on top; with faults at least 40 are made).
    pub assets: usize,
    /// Number of users (default 3, at least 1).
    pub users: usize,
    /// Inject the fault set; false = a clean library.
    pub faults: bool,
    pub seed: u64,
    /// Also break file contents (truncated/bit-flipped JPEGs, PNG without IEND, bad WebP RIFF
    /// length, MP4 without moov or cut mid-mdat, zero-filled tail, decompression bomb, wrong
    /// extension) on ten dedicated extra assets; each [`TruthFault`] says the level that finds it.
    #[serde(default)]
    pub content_faults: bool,
    /// Pad every JPEG original to at least this many bytes with APP2 segments of random
    /// bytes (as a camera's JPEG carries multi-picture previews and maker data), its recorded
    /// size and checksum those of the padded file: libraries whose originals weigh what real
    /// photos do, for the `hash` benchmark. 0: no padding.
    #[serde(default)]
    pub original_bytes: u64,
}

impl Default for FixtureSpec {
    fn default() -> Self {
        FixtureSpec {
            generation: Generation::V2_6,
            assets: 100,
            users: 3,
            faults: true,
            seed: 1,
            content_faults: false,
            original_bytes: 0,
        }
    }
}

/// One expected finding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TruthFault {
    /// The lowest scan level that reports it (`exists`, `quick`, `hash` or `full`); every
    /// deeper level reports the same fault.
    #[serde(default = "level_exists")]
    pub level: String,
    /// Asset id; the person id for `person_thumbnail`; the user id for `profile_image`.
    pub asset_id: Option<String>,
    pub owner_id: Option<String>,
    /// original | sidecar | preview | thumbnail | fullsize | encoded_video | person_thumbnail | profile_image
    pub file: Option<String>,
    /// missing | moved | permission_denied | not_a_file | empty | outside_root | mount_missing
    /// | truncated | corrupt | checksum_mismatch
    pub fault: String,
    /// The path as stored in the DB.
    pub db_path: Option<String>,
    /// For `moved`: the host path where the file really is.
    pub found_at: Option<PathBuf>,
    /// For `mount_missing`: the absent host root.
    pub root: Option<PathBuf>,
    /// For `mount_missing`: how many assets it affects.
    pub affected: Option<u64>,
}

fn level_exists() -> String {
    "exists".into()
}

/// The scan levels, shallowest first (the values of [`TruthFault::level`]).
pub const LEVELS: [&str; 4] = ["exists", "quick", "hash", "full"];

impl TruthFault {
    /// Whether a scan at `level` (one of [`LEVELS`]) reports this fault.
    pub fn found_at_level(&self, level: &str) -> bool {
        let rank = |l: &str| LEVELS.iter().position(|x| *x == l);
        match (rank(&self.level), rank(level)) {
            (Some(mine), Some(scan)) => mine <= scan,
            _ => false,
        }
    }
}

/// The ground truth of a fixture (also written to `truth.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GroundTruth {
    pub generation: Generation,
    pub db_url: String,
    pub media_root: PathBuf,
    pub container_root: String,
    pub maps: Vec<(String, PathBuf)>,
    pub as_user: String,
    /// Rows in the asset table (all of them: trashed, hidden and external included).
    pub asset_rows: u64,
    /// File references a default scan checks: every path of every non-trashed asset
    /// (original, sidecar, preview, thumbnail, fullsize, encoded video), person thumbnails
    /// and profile images.
    pub files_referenced: u64,
    pub faults: Vec<TruthFault>,
    /// Faults on trashed assets (not reported by a default scan).
    pub trashed_faults: Vec<TruthFault>,
    /// Trashed asset rows.
    #[serde(default)]
    pub trashed_assets: u64,
    /// File references of trashed assets (not in `files_referenced`).
    #[serde(default)]
    pub trashed_files_referenced: u64,
    /// The release in `version_history` (v2.6+, e.g. "3.2.2"); `None` for older generations.
    #[serde(default)]
    pub immich_version: Option<String>,
    /// The `integrity_report` rows the generator inserted (v3.0+), as Immich's own integrity
    /// checks would have left them. The scanner does not read them, so they add no finding.
    #[serde(default)]
    pub integrity_reports: Vec<IntegrityReportRow>,
    /// The asset with an `asset_edit` row (v2.6+): `asset."isEdited"` is true and it has an
    /// extra, healthy `thumbnail` `asset_file` row with `isEdited` = true.
    #[serde(default)]
    pub edited_asset: Option<String>,
}

/// One `integrity_report` row (Immich v3.0+) inserted by the generator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntegrityReportRow {
    /// `integrity_report.id` (a UUID v7, as Immich makes them).
    pub id: String,
    /// `untracked_file`, `missing_file` or `checksum_mismatch`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The stored path (container form, e.g. `/data/upload/...`).
    pub path: String,
    /// `assetId`: set for a missing original and for a checksum mismatch.
    pub asset_id: Option<String>,
    /// `fileAssetId`: the `asset_file` row of a missing derivative (ON DELETE CASCADE).
    pub file_asset_id: Option<String>,
}

impl GroundTruth {
    /// Map a stored path to a host path with `maps` (longest container prefix wins, whole
    /// components only). No normalisation of `..` is done.
    pub fn map_path(&self, db_path: &str) -> Option<PathBuf> {
        map_with(&self.maps, db_path)
    }
}

pub(crate) fn map_with(maps: &[(String, PathBuf)], db_path: &str) -> Option<PathBuf> {
    let mut best: Option<(&str, &Path)> = None;
    for (c, h) in maps {
        let c = c.trim_end_matches('/');
        let ok = db_path == c
            || (db_path.starts_with(c) && db_path.as_bytes().get(c.len()) == Some(&b'/'));
        let longer = match best {
            None => true,
            Some((b, _)) => c.len() > b.len(),
        };
        if ok && longer {
            best = Some((c, h));
        }
    }
    let (c, h) = best?;
    let rest = db_path[c.len()..].trim_start_matches('/');
    Some(if rest.is_empty() {
        h.to_path_buf()
    } else {
        h.join(rest)
    })
}

/// A generated fixture.
#[derive(Clone, Debug)]
pub struct Fixture {
    pub db_name: String,
    pub db_url: String,
    /// Temporary folder owning everything (media root, external library, truth.json).
    pub dir: PathBuf,
    pub media_root: PathBuf,
    pub container_root: String,
    pub maps: Vec<(String, PathBuf)>,
    pub as_user: String,
    pub truth_path: PathBuf,
    pub truth: GroundTruth,
}

impl Fixture {
    /// `DROP DATABASE ... WITH (FORCE)`.
    pub async fn drop_db(&self) -> Result<()> {
        drop_database(&admin_url_for(&self.db_url), &self.db_name).await
    }

    /// Remove the fixture's folder (works for the chmod 000 / chown'ed parts when run as root).
    pub fn remove_dir(&self) -> Result<()> {
        remove_tree(&self.dir)
    }

    /// [`Fixture::drop_db`] then [`Fixture::remove_dir`].
    pub async fn destroy(&self) -> Result<()> {
        let a = self.drop_db().await;
        let b = self.remove_dir();
        a.and(b)
    }
}

/// Remove a fixture folder, first making its restricted directories traversable again.
pub fn remove_tree(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    if std::fs::remove_dir_all(dir).is_ok() {
        return Ok(());
    }
    // Not root: give ourselves access where we can, then retry.
    fn open_up(p: &Path) {
        if let Ok(md) = std::fs::symlink_metadata(p) {
            if md.is_dir() {
                let _ = media::chmod(p, 0o755);
                if let Ok(rd) = std::fs::read_dir(p) {
                    for e in rd.flatten() {
                        open_up(&e.path());
                    }
                }
            }
        }
    }
    open_up(dir);
    std::fs::remove_dir_all(dir).with_context(|| format!("remove {}", dir.display()))
}

/// The admin URL used to create/drop databases: `FIXTURE_PG_URL` or [`DEFAULT_PG_URL`].
pub fn base_pg_url() -> String {
    std::env::var("FIXTURE_PG_URL")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_PG_URL.to_string())
}

/// Split `postgres://user@host:port/db?query` into (`postgres://user@host:port`, db, `?query`).
pub(crate) fn split_pg_url(url: &str) -> (String, Option<String>, String) {
    let (main, query) = match url.find('?') {
        Some(i) => (&url[..i], url[i..].to_string()),
        None => (url, String::new()),
    };
    let after_scheme = main.find("://").map(|i| i + 3).unwrap_or(0);
    match main[after_scheme..].find('/') {
        Some(j) => {
            let k = after_scheme + j;
            let db = main[k + 1..].to_string();
            (
                main[..k].to_string(),
                if db.is_empty() { None } else { Some(db) },
                query,
            )
        }
        None => (main.to_string(), None, query),
    }
}

fn admin_url_for(db_url: &str) -> String {
    let (prefix, _, query) = split_pg_url(db_url);
    let (bprefix, bdb, _) = split_pg_url(&base_pg_url());
    // Use the configured admin database when the server matches, else "postgres".
    let db = if bprefix == prefix {
        bdb.unwrap_or_else(|| "postgres".into())
    } else {
        "postgres".into()
    };
    format!("{prefix}/{db}{query}")
}

/// Drop a fixture database by name (connecting to the admin URL given).
pub async fn drop_database(admin_url: &str, db_name: &str) -> Result<()> {
    if !db_name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        bail!("refusing to drop database {db_name:?}: unexpected characters");
    }
    let mut conn = db::connect(admin_url).await?;
    use sqlx::Executor;
    conn.execute(format!("DROP DATABASE IF EXISTS \"{db_name}\" WITH (FORCE)").as_str())
        .await
        .with_context(|| format!("DROP DATABASE {db_name}"))?;
    Ok(())
}

/// Generate a fixture: a new database `imf_<hex>` and a folder `base_dir/imf_<hex>/`.
pub async fn generate(spec: &FixtureSpec, base_dir: &Path) -> Result<Fixture> {
    let admin_url = base_pg_url();
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let db_name = format!("imf_{}", &unique[..16]);
    let (prefix, _, query) = split_pg_url(&admin_url);
    let db_url = format!("{prefix}/{db_name}{query}");

    // Fail fast (and clearly) when PostgreSQL is unreachable, before touching the disk.
    db::create_database(&admin_url, &db_name).await?;

    let dir = base_dir.join(&db_name);
    let res = generate_inner(spec, &dir, &db_name, &db_url).await;
    match res {
        Ok(f) => Ok(f),
        Err(e) => {
            let _ = drop_database(&admin_url, &db_name).await;
            let _ = remove_tree(&dir);
            Err(e)
        }
    }
}

async fn generate_inner(
    spec: &FixtureSpec,
    dir: &Path,
    db_name: &str,
    db_url: &str,
) -> Result<Fixture> {
    let base = dir.parent().unwrap_or(Path::new("/"));
    std::fs::create_dir_all(base).with_context(|| format!("create {}", base.display()))?;
    media::make_dir(dir)?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("canonicalize {}", dir.display()))?;

    let mut conn = db::connect(db_url).await?;
    db::create_schema(&mut conn, spec.generation).await?;

    let spec2 = spec.clone();
    let dir2 = dir.clone();
    let db_url2 = db_url.to_string();
    let built = tokio::task::spawn_blocking(move || plan::build(&spec2, &dir2, &db_url2))
        .await
        .context("fixture writer thread panicked")??;

    db::load(&mut conn, &built.plan).await?;
    use sqlx::Connection;
    let _ = conn.close().await;

    let truth_path = dir.join("truth.json");
    let json = serde_json::to_vec_pretty(&built.truth)?;
    media::write_file(&truth_path, &json)?;

    Ok(Fixture {
        db_name: db_name.to_string(),
        db_url: db_url.to_string(),
        dir: dir.clone(),
        media_root: built.truth.media_root.clone(),
        container_root: built.truth.container_root.clone(),
        maps: built.truth.maps.clone(),
        as_user: AS_USER.to_string(),
        truth_path,
        truth: built.truth,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_strings() {
        for g in Generation::ALL {
            assert_eq!(g.as_str().parse::<Generation>().unwrap(), g);
            assert_eq!(
                serde_json::to_string(&g).unwrap(),
                format!("\"{}\"", g.as_str())
            );
        }
        assert!("v9".parse::<Generation>().is_err());
        assert_eq!("3.2".parse::<Generation>().unwrap(), Generation::V3_2);
        assert_eq!("V3_0".parse::<Generation>().unwrap(), Generation::V3_0);
    }

    #[test]
    fn generation_traits() {
        use Generation::*;
        assert_eq!(ALL_NEWEST, *Generation::ALL.last().unwrap());
        for g in [V2_6, V3_0, V3_2] {
            assert!(g.upstream_ddl().is_some() && g.release().is_some());
            assert!(g.sidecar_in_asset_file() && g.asset_file_is_edited());
            assert_eq!(g.thumb_sep(), '_');
            assert_eq!(g.container_root(), "/data");
            assert_eq!(g.tables().assets, "asset");
        }
        for g in [V1_112, V1_135, V1_137] {
            assert!(g.upstream_ddl().is_none() && g.release().is_none());
        }
        assert!(V2_6.has_device_ids() && !V2_6.has_checksum_algorithm());
        assert!(!V2_6.integer_duration() && !V2_6.has_integrity_report());
        for g in [V3_0, V3_2] {
            assert!(!g.has_device_ids() && g.has_checksum_algorithm());
            assert!(g.integer_duration() && g.has_integrity_report());
        }
        assert!(V3_2.person_groups() && !V3_0.person_groups());
        assert!(V3_2
            .upstream_ddl()
            .unwrap()
            .contains("\"clusterGroupId\" uuid NOT NULL"));
        assert_eq!(V3_2.release(), Some("3.2.2"));
    }

    const ALL_NEWEST: Generation = Generation::V3_2;

    #[test]
    fn url_split() {
        assert_eq!(
            split_pg_url("postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"),
            (
                "postgres://postgres@127.0.0.1:5432".into(),
                Some("postgres".into()),
                "?sslmode=disable".into()
            )
        );
        assert_eq!(
            split_pg_url("postgres://postgres@127.0.0.1:5432"),
            ("postgres://postgres@127.0.0.1:5432".into(), None, "".into())
        );
    }

    #[test]
    fn mapping() {
        let maps = vec![
            ("/data".to_string(), PathBuf::from("/m")),
            ("/data/x".to_string(), PathBuf::from("/other")),
        ];
        assert_eq!(map_with(&maps, "/data/a/b"), Some(PathBuf::from("/m/a/b")));
        assert_eq!(
            map_with(&maps, "/data/x/b"),
            Some(PathBuf::from("/other/b"))
        );
        assert_eq!(map_with(&maps, "/database/x"), None);
    }
}
