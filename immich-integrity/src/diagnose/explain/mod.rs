//! Why did Immich file this? One verdict per row of Immich v3's own `integrity_report` table.
//!
//! Immich v3.0+ fills `integrity_report` with `missing_file`, `untracked_file` and
//! `checksum_mismatch` rows, but says nothing about why. [`explain_report`] reads the table in one
//! read-only snapshot (`REPEATABLE READ READ ONLY`: it never writes to it, nor to anything
//! else) and gives each row an [`Explanation`]:
//!
//! - a `missing_file` row becomes an [`AssetRow`](crate::AssetRow) with one [`FileRef`](crate::FileRef) (the row's stored path,
//!   of the kind its `fileAssetId` names, or the original) and goes through the same checker
//!   the scan uses, so `moved`, `nested` and `stale_prefix` carry the scan's own `found_at` and
//!   `relink_to`; a mapped root that is absent or empty is `mount_missing`;
//! - a `checksum_mismatch` row of an asset whose checksum hashes the path (`sha1-path`, external
//!   libraries) is `checksum_of_path`; otherwise the file is checked like a missing one, then
//!   its SHA-1 is compared with `asset.checksum`: `bitrot` when it differs, `already_healthy`
//!   when it matches;
//! - an `untracked_file` row that is the found copy of a `missing_file` row takes that row's
//!   verdict and names it ([`Explanation::paired_row`], both ways); one whose path a row
//!   references now, or whose file is gone, is `already_healthy`; the rest are `untracked`.

mod explainer;

use explainer::{pair, Explainer};

use crate::check::Checker;
use crate::db::conn::SourceInfo;
use crate::db::conn::{connect, read_info};
use crate::db::schema::{q, Schema};
use crate::db::sql::path_checksum_expr;
use crate::error::{Error, Result};
use crate::fs::access::Identity;
use crate::fs::pathmap::{Mapped, PathMap};
use crate::fs::roots::Roots;
use crate::model::{Fault, FileKind, Level, Repair};
use crate::scan::{build_map, ScanOptions};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, Row};
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

/// Our verdict on one `integrity_report` row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The file is elsewhere under the media root (a top folder undoubled, e.g. stored in
    /// `upload/upload/...` but found in `upload/...`); repair `relink`.
    Moved,
    /// The file is one top folder too deep (`/data/upload/upload/...` for `/data/upload/...`),
    /// the restore-into-`upload/upload` case; repair `relink`.
    Nested,
    /// The stored path starts with a media location the server no longer uses
    /// (`/usr/src/app/upload/...` while it uses `/data`); repair `relink`.
    StalePrefix,
    /// The file exists but the server's uid cannot read it (or search a folder above it);
    /// Immich files such a file as `checksum_mismatch` too.
    PermissionDenied,
    /// The whole root the file lives under (an external library's import path, a media top
    /// folder) is absent or empty: not mounted.
    MountMissing,
    /// Really missing: not at the stored path nor anywhere known mistakes put it.
    Gone,
    /// A `checksum_mismatch` of an asset whose checksum hashes the path, not the content
    /// (external libraries, `checksumAlgorithm = 'sha1-path'`; Immich bug #29219).
    ChecksumOfPath,
    /// A `checksum_mismatch` whose file's SHA-1 really differs from `asset.checksum`.
    Bitrot,
    /// The row is stale: the file is fine at its stored path now, its SHA-1 matches, or the
    /// untracked path is referenced by a row now (or gone). Immich's "Refresh" clears it.
    AlreadyHealthy,
    /// An `untracked_file` no row references and no missing row pairs with: a stray file.
    Untracked,
    /// The file is there but the scan finds another fault (empty, not a regular file, outside
    /// its root); [`Explanation::scan_fault`] names it.
    Damaged,
    /// A report `type` this version does not know.
    UnknownType,
}

impl Verdict {
    /// The snake_case name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Moved => "moved",
            Verdict::Nested => "nested",
            Verdict::StalePrefix => "stale_prefix",
            Verdict::PermissionDenied => "permission_denied",
            Verdict::MountMissing => "mount_missing",
            Verdict::Gone => "gone",
            Verdict::ChecksumOfPath => "checksum_of_path",
            Verdict::Bitrot => "bitrot",
            Verdict::AlreadyHealthy => "already_healthy",
            Verdict::Untracked => "untracked",
            Verdict::Damaged => "damaged",
            Verdict::UnknownType => "unknown_type",
        }
    }

    /// False only for `already_healthy`: every other verdict is something to act on or look at.
    pub fn is_fault(self) -> bool {
        self != Verdict::AlreadyHealthy
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `integrity_report` row and our verdict on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    /// `integrity_report.id`.
    pub report_id: String,
    /// `integrity_report.type` as Immich wrote it (`missing_file`, `untracked_file`,
    /// `checksum_mismatch`).
    pub report_type: String,
    /// `integrity_report.path` as Immich wrote it (a container path).
    pub path: String,
    /// `integrity_report.assetId` (for a row that names only `fileAssetId`: that file's asset).
    pub asset_id: Option<String>,
    /// `integrity_report.fileAssetId`, when the row is about an `asset_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_asset_id: Option<String>,
    /// Which file of the asset the path is, when a row names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileKind>,
    /// Our verdict.
    pub verdict: Verdict,
    /// A sentence for people: what was seen.
    pub detail: String,
    /// What to do about it.
    pub repair: Repair,
    /// For `moved`, `nested`, `stale_prefix`: the path to store instead, in the row's spelling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relink_to: Option<String>,
    /// For `moved`, `nested`, `stale_prefix`: the host path where the file was found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found_at: Option<String>,
    /// The other row of a pair: the `untracked_file` row of a missing file's found copy, or
    /// the `missing_file` row an untracked file is the copy of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paired_row: Option<String>,
    /// The fault the scan's checker reported for the file, when it reported one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan_fault: Option<Fault>,
}

/// The summary line of an explain report.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExplainSummary {
    /// Always `true`: tells the summary line from the explanation lines in JSON Lines.
    pub summary: bool,
    /// The detected schema generation label (e.g. `v3.2+`).
    pub schema: String,
    /// The Immich server version that last started on this database, when recorded.
    #[serde(default)]
    pub immich_version: Option<String>,
    /// The container media location used.
    pub media_location: Option<String>,
    /// `integrity_report` rows explained.
    pub rows: u64,
    /// Rows whose verdict is not `already_healthy`.
    pub faults: u64,
    /// verdict -> rows.
    pub verdicts: BTreeMap<String, u64>,
    /// Wall time in milliseconds.
    pub elapsed_ms: u64,
}

impl ExplainSummary {
    /// True when every row is `already_healthy` (or there are none).
    pub fn is_clean(&self) -> bool {
        self.faults == 0
    }
}

/// The result of [`explain_report`]: one explanation per row, in `integrity_report.id` order.
#[derive(Debug, Clone)]
pub struct ExplainReport {
    /// One per `integrity_report` row.
    pub explanations: Vec<Explanation>,
    /// The counters.
    pub summary: ExplainSummary,
}

/// One `integrity_report` row with the facts of the asset (and asset file) it names.
#[derive(Debug, Clone)]
struct ReportRow {
    id: String,
    kind: String,
    path: String,
    asset_id: Option<String>,
    file_asset_id: Option<String>,
    /// `asset_file.type` / `isEdited` of `fileAssetId`.
    file_type: Option<String>,
    file_edited: bool,
    /// The asset's columns; `None` when the row names no asset.
    asset: Option<AssetFacts>,
}

#[derive(Debug, Clone)]
struct AssetFacts {
    owner_id: String,
    library_id: Option<String>,
    asset_type: String,
    checksum: Vec<u8>,
    checksum_is_of_path: bool,
    size: Option<i64>,
    trashed: bool,
}

/// A row that references an untracked path now: `(kind, row id)`.
type Referrer = (String, String);

/// What was read in the snapshot.
struct Snapshot {
    info: SourceInfo,
    rows: Vec<ReportRow>,
    /// Exact stored path -> the row referencing it, for every spelling of each untracked path.
    referenced: HashMap<String, Referrer>,
}

/// Explains every row of Immich's `integrity_report` (see the module notes). The filters of
/// `opts.source` (owners, library, kinds, limit, since, shard) do not apply: every row is read.
/// Fails when the database has no `integrity_report` table (Immich before v3.0).
pub fn explain_report(opts: &ScanOptions) -> Result<ExplainReport> {
    let started = Instant::now();
    let rt = crate::db::runtime::runtime()?;
    // The map needs the media location the snapshot reads, and the untracked paths' spellings
    // need the map: read the rows first, then ask for the references in the same snapshot.
    let snap = rt.block_on(async {
        let mut conn = connect(&opts.source.db_url).await?;
        sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut conn)
            .await
            .map_err(Error::query("starting a read-only snapshot"))?;
        let info = read_info(&mut conn).await?;
        if !info.schema.has_integrity_report {
            return Err(Error::NoIntegrityReport(info.schema.describe()));
        }
        let rows = read_rows(&mut conn, &info.schema).await?;
        let map = build_map(opts, &info)?;
        let spellings: Vec<String> = rows
            .iter()
            .filter(|r| r.kind == "untracked_file")
            .flat_map(|r| spellings_of(&map, &r.path))
            .collect();
        let referenced = read_referrers(&mut conn, &info.schema, &spellings).await?;
        let _ = sqlx::query("ROLLBACK").execute(&mut conn).await;
        Ok::<_, Error>(Snapshot {
            info,
            rows,
            referenced,
        })
    })?;

    let map = build_map(opts, &snap.info)?;
    let roots = Roots::open(&map).map_err(|(path, reason)| Error::MediaRoot { path, reason })?;
    let identity = opts.as_user.clone().unwrap_or_else(Identity::current);
    let checker = Checker::new(map, roots, identity, Level::Exists);
    let pool = crate::scan::worker_pool(opts.jobs, "explain")?;
    let explainer = Explainer {
        checker: &checker,
        referenced: &snap.referenced,
    };
    let mut explanations: Vec<Explanation> =
        pool.install(|| snap.rows.par_iter().map(|r| explainer.explain(r)).collect());
    pair(&checker, &mut explanations);

    let mut summary = ExplainSummary {
        summary: true,
        schema: snap.info.schema.label.clone(),
        immich_version: snap.info.schema.release.clone(),
        media_location: checker.map.active_media().map(str::to_string),
        rows: explanations.len() as u64,
        ..Default::default()
    };
    for e in &explanations {
        *summary
            .verdicts
            .entry(e.verdict.as_str().to_string())
            .or_default() += 1;
        if e.verdict.is_fault() {
            summary.faults += 1;
        }
    }
    summary.elapsed_ms = started.elapsed().as_millis() as u64;
    Ok(ExplainReport {
        explanations,
        summary,
    })
}

/// The statements this command runs against `s`, labelled, for `doctor` to prepare.
pub(crate) fn statements(s: &Schema) -> Vec<(String, String)> {
    if !s.has_integrity_report {
        return Vec::new();
    }
    vec![
        ("explain-report: report rows".into(), rows_sql(s)),
        ("explain-report: referrers".into(), referrers_sql(s)),
    ]
}

/// Every `integrity_report` row, in id order, with its asset's and asset file's facts.
async fn read_rows(conn: &mut PgConnection, s: &Schema) -> Result<Vec<ReportRow>> {
    let sql = rows_sql(s);
    let rows = sqlx::query(&sql)
        .fetch_all(&mut *conn)
        .await
        .map_err(Error::query("reading integrity_report"))?;
    decode_rows(&rows)
}

fn rows_sql(s: &Schema) -> String {
    let (file_join, file_cols) = match s.asset_file_table {
        Some(t) => (
            format!("LEFT JOIN {} f ON f.id = r.\"fileAssetId\"", q(t)),
            format!(
                "f.type::text AS file_type, {} AS file_edited, f.\"assetId\"::text AS file_owner",
                if s.has_asset_file_is_edited {
                    "COALESCE(f.\"isEdited\", false)"
                } else {
                    "false"
                }
            ),
        ),
        None => (
            String::new(),
            "NULL::text AS file_type, false AS file_edited, NULL::text AS file_owner".into(),
        ),
    };
    let asset_key = if s.asset_file_table.is_some() {
        "COALESCE(r.\"assetId\", f.\"assetId\")"
    } else {
        "r.\"assetId\""
    };
    let (exif_join, size_col) = match s.exif_table {
        Some(e) => (
            format!("LEFT JOIN {} e ON e.\"assetId\" = a.id", q(e)),
            "e.\"fileSizeInByte\"",
        ),
        None => (String::new(), "NULL::int8"),
    };
    format!(
        "SELECT r.id::text AS id, r.type::text AS kind, r.path AS path, \
         r.\"assetId\"::text AS asset_id, r.\"fileAssetId\"::text AS file_asset_id, {file_cols}, \
         a.id::text AS a_id, a.\"ownerId\"::text AS owner, a.\"libraryId\"::text AS library, \
         a.type::text AS a_type, a.checksum AS checksum, {} AS path_checksum, \
         {size_col} AS size, (a.\"deletedAt\" IS NOT NULL) AS trashed \
         FROM integrity_report r {file_join} \
         LEFT JOIN {} a ON a.id = {asset_key} {exif_join} \
         ORDER BY r.id",
        path_checksum_expr(s),
        q(s.asset_table),
    )
}

fn decode_rows(rows: &[sqlx::postgres::PgRow]) -> Result<Vec<ReportRow>> {
    let col = |e| Error::query("decoding integrity_report")(e);
    rows.iter()
        .map(|r| {
            let a_id: Option<String> = r.try_get("a_id").map_err(col)?;
            let asset = match a_id {
                Some(_) => Some(AssetFacts {
                    owner_id: r.try_get("owner").map_err(col)?,
                    library_id: r.try_get("library").map_err(col)?,
                    asset_type: r
                        .try_get::<Option<String>, _>("a_type")
                        .map_err(col)?
                        .unwrap_or_default(),
                    checksum: r
                        .try_get::<Option<Vec<u8>>, _>("checksum")
                        .map_err(col)?
                        .unwrap_or_default(),
                    checksum_is_of_path: r
                        .try_get::<Option<bool>, _>("path_checksum")
                        .map_err(col)?
                        .unwrap_or(false),
                    size: r.try_get("size").map_err(col)?,
                    trashed: r.try_get("trashed").map_err(col)?,
                }),
                None => None,
            };
            let asset_id: Option<String> = r.try_get("asset_id").map_err(col)?;
            let file_owner: Option<String> = r.try_get("file_owner").map_err(col)?;
            Ok(ReportRow {
                id: r.try_get("id").map_err(col)?,
                kind: r.try_get("kind").map_err(col)?,
                path: r.try_get("path").map_err(col)?,
                asset_id: asset_id.or(file_owner),
                file_asset_id: r.try_get("file_asset_id").map_err(col)?,
                file_type: r.try_get("file_type").map_err(col)?,
                file_edited: r
                    .try_get::<Option<bool>, _>("file_edited")
                    .map_err(col)?
                    .unwrap_or(false),
                asset,
            })
        })
        .collect()
}

/// Every stored spelling of the file `path` names: each media-root spelling for a path under
/// the media root (`upload/...`, `/usr/src/app/upload/...`, `/data/...`), and the path itself.
fn spellings_of(map: &PathMap, path: &str) -> Vec<String> {
    let mut v = vec![path.to_string()];
    if let Mapped::Host { entry, rel } | Mapped::StalePrefix { entry, rel, .. } = map.map(path) {
        if map.entries()[entry].media {
            let rel = rel.to_string_lossy();
            for prefix in ["upload", "/usr/src/app/upload", "/data"]
                .into_iter()
                .chain(map.active_media())
            {
                v.push(format!("{prefix}/{rel}"));
            }
        }
    }
    v.sort();
    v.dedup();
    v
}

/// Which rows reference any of `paths` now (originals, asset files, persons, users).
async fn read_referrers(
    conn: &mut PgConnection,
    s: &Schema,
    paths: &[String],
) -> Result<HashMap<String, Referrer>> {
    if paths.is_empty() {
        return Ok(HashMap::new());
    }
    let sql = referrers_sql(s);
    let found: Vec<(String, String, String)> = sqlx::query_as(&sql)
        .bind(paths)
        .fetch_all(&mut *conn)
        .await
        .map_err(Error::query("looking up untracked paths"))?;
    Ok(found
        .into_iter()
        .map(|(p, kind, id)| (p, (kind, id)))
        .collect())
}

/// The rows whose stored path is one of `$1` (originals, asset files, persons, users).
fn referrers_sql(s: &Schema) -> String {
    let mut parts = vec![format!(
        "SELECT a.\"originalPath\" AS p, 'original' AS kind, a.id::text AS id FROM {} a \
         WHERE a.\"originalPath\" = ANY($1)",
        q(s.asset_table)
    )];
    if let Some(f) = s.asset_file_table {
        parts.push(format!(
            "SELECT f.path, f.type::text, f.\"assetId\"::text FROM {} f WHERE f.path = ANY($1)",
            q(f)
        ));
    }
    if s.has_person {
        parts.push(format!(
            "SELECT p.\"thumbnailPath\", 'person_thumbnail', p.{}::text FROM person p \
             WHERE p.\"thumbnailPath\" = ANY($1)",
            q(s.person_key.id_column())
        ));
    }
    parts.push(format!(
        "SELECT u.\"profileImagePath\", 'profile_image', u.id::text FROM {} u \
         WHERE u.\"profileImagePath\" = ANY($1)",
        q(s.user_table)
    ));
    parts.join(" UNION ALL ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_cover_every_media_prefix() {
        let mut map = PathMap::new();
        map.add_media_root("/data", "/srv/immich");
        let s = spellings_of(&map, "/data/upload/u/ab/x.jpg");
        for want in [
            "/data/upload/u/ab/x.jpg",
            "/usr/src/app/upload/upload/u/ab/x.jpg",
            "upload/upload/u/ab/x.jpg",
        ] {
            assert!(s.iter().any(|p| p == want), "{want} in {s:?}");
        }
        assert_eq!(spellings_of(&map, "/mnt/x/a.jpg"), vec!["/mnt/x/a.jpg"]);
    }

    #[test]
    fn only_already_healthy_is_clean() {
        assert!(!Verdict::AlreadyHealthy.is_fault());
        for v in [
            Verdict::Moved,
            Verdict::Nested,
            Verdict::Gone,
            Verdict::Untracked,
            Verdict::ChecksumOfPath,
        ] {
            assert!(v.is_fault(), "{v}");
        }
    }
}
