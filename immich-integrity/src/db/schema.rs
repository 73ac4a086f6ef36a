//! Which Immich schema generation a database holds, read from `information_schema`
//! (never from a version string: admins restore dumps across versions).

use crate::error::{Error, Result};
use serde::Serialize;
use sqlx::PgConnection;
use std::collections::{HashMap, HashSet};

/// Table and column facts the source and the repairs build their SQL from.
/// Every identifier here is a fixed string chosen by detection, never user input.
#[derive(Debug, Clone, Serialize)]
pub struct Schema {
    /// Human label such as `v2.6+` (see [`Schema::label`]).
    pub label: String,
    /// `asset` or `assets`.
    pub asset_table: &'static str,
    /// `asset_file` / `asset_files`, where derived-file paths live since v1.113.
    pub asset_file_table: Option<&'static str>,
    /// `asset_exif` / `exif`.
    pub exif_table: Option<&'static str>,
    /// `user` / `users`.
    pub user_table: &'static str,
    /// `library` / `libraries`.
    pub library_table: Option<&'static str>,
    /// `person` exists (its `thumbnailPath` is queried; a drifted table is reported).
    pub has_person: bool,
    /// How a `person` row is identified: by `id` (up to v3.1) or by
    /// `("ownerId", "personGroupId")` (v3.2 cluster groups dropped `person.id`).
    pub person_key: PersonKey,
    /// `integrity_report` exists (Immich v3.0+ integrity checks).
    pub has_integrity_report: bool,
    /// The newest server version recorded in `version_history` (e.g. `3.2.2`), when the table
    /// exists and has rows; see [`Schema::describe`].
    pub release: Option<String>,
    /// `(preview column, thumbnail column)` on the asset table, before `asset_files` existed.
    pub preview_columns: Option<(&'static str, &'static str)>,
    /// `encodedVideoPath` is still a column of the asset table (before v2.6).
    pub has_encoded_video_column: bool,
    /// `sidecarPath` is still a column of the asset table (before v2.4).
    pub has_sidecar_column: bool,
    /// `checksumAlgorithm` exists (v2.7+).
    pub has_checksum_algorithm: bool,
    /// `isExternal` exists.
    pub has_is_external: bool,
    /// `asset_file.isEdited` exists (v2.5+).
    pub has_asset_file_is_edited: bool,
    /// `system_metadata` exists (it may hold `MediaLocation`).
    pub has_media_location_table: bool,
    /// Which of the asset, person and user tables have both `createdAt` and `updatedAt`
    /// (what `--since` compares against).
    pub timestamps: Timestamps,
}

/// How rows of `person` are identified.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PersonKey {
    /// `person.id` (a uuid), up to Immich v3.1.
    #[default]
    Id,
    /// `("ownerId", "personGroupId")`, Immich v3.2+: a person is one owner's view of a person
    /// group. Findings carry the `personGroupId` as their id and the owner as `owner_id`.
    OwnerAndGroup,
}

impl PersonKey {
    /// The column a finding's `asset_id` names for a person row.
    pub fn id_column(self) -> &'static str {
        match self {
            PersonKey::Id => "id",
            PersonKey::OwnerAndGroup => "personGroupId",
        }
    }

    /// SQL over `person` (optionally aliased `{alias}.`) selecting this row by a finding's id
    /// (`$id`) and owner (`$owner`), with the placeholders' numbers given.
    pub fn where_sql(self, alias: &str, id: usize, owner: usize) -> String {
        match self {
            PersonKey::Id => format!("{alias}id = ${id}::uuid"),
            PersonKey::OwnerAndGroup => format!(
                "{alias}\"personGroupId\" = ${id}::uuid AND {alias}\"ownerId\" = ${owner}::uuid"
            ),
        }
    }
}

/// Which tables carry `createdAt` and `updatedAt` columns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Timestamps {
    /// The asset table.
    pub asset: bool,
    /// `person`.
    pub person: bool,
    /// `user` / `users`.
    pub user: bool,
}

const TABLES: &[&str] = &[
    "asset",
    "assets",
    "asset_file",
    "asset_files",
    "asset_exif",
    "exif",
    "user",
    "users",
    "library",
    "libraries",
    "person",
    "system_metadata",
    "integrity_report",
    "version_history",
];

impl Schema {
    /// Reads the public schema's tables and columns and works out the generation.
    pub async fn detect(conn: &mut PgConnection) -> Result<Schema> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT table_name::text, column_name::text FROM information_schema.columns \
             WHERE table_schema = 'public' AND table_name = ANY($1)",
        )
        .bind(TABLES)
        .fetch_all(&mut *conn)
        .await
        .map_err(Error::query("reading information_schema"))?;
        let mut cols: HashMap<String, HashSet<String>> = HashMap::new();
        for (t, c) in rows {
            cols.entry(t).or_default().insert(c);
        }
        let mut schema = Schema::from_columns(&cols)?;
        if cols
            .get("version_history")
            .is_some_and(|c| c.contains("version") && c.contains("createdAt"))
        {
            // The newest row is the server that last started on this database.
            schema.release = sqlx::query_scalar::<_, String>(
                "SELECT version::text FROM version_history ORDER BY \"createdAt\" DESC LIMIT 1",
            )
            .fetch_optional(&mut *conn)
            .await
            .map_err(Error::query("reading version_history"))?
            .map(|v| v.trim().trim_start_matches(['v', 'V']).to_string())
            .filter(|v| !v.is_empty());
        }
        Ok(schema)
    }

    /// `Immich v3.2.2 (schema v3.2+)`, or the schema label alone when the database records no
    /// server version.
    pub fn describe(&self) -> String {
        match &self.release {
            Some(v) => format!("Immich v{v} (schema {})", self.label),
            None => format!("schema {}", self.label),
        }
    }

    /// Pure part of detection, separated so it can be tested without a database.
    pub fn from_columns(cols: &HashMap<String, HashSet<String>>) -> Result<Schema> {
        let pick = |names: &[&'static str]| names.iter().copied().find(|n| cols.contains_key(*n));
        let asset_table = pick(&["asset", "assets"]).ok_or_else(|| {
            Error::UnknownSchema(
                "neither table `asset` nor `assets` exists in schema public".into(),
            )
        })?;
        let ac = &cols[asset_table];
        for needed in ["id", "ownerId", "originalPath"] {
            if !ac.contains(needed) {
                return Err(Error::UnknownSchema(format!(
                    "table {asset_table} has no column {needed}"
                )));
            }
        }
        let user_table = pick(&["user", "users"])
            .ok_or_else(|| Error::UnknownSchema("no `user`/`users` table".into()))?;
        let asset_file_table = pick(&["asset_file", "asset_files"]);
        let preview_columns = if ac.contains("previewPath") {
            Some(("previewPath", "thumbnailPath"))
        } else if ac.contains("resizePath") {
            Some(("resizePath", "webpPath"))
        } else {
            None
        };
        let has = |c: &str| ac.contains(c);
        let has_encoded_video_column = has("encodedVideoPath");
        let has_sidecar_column = has("sidecarPath");
        let person = cols.get("person");
        let person_key = match person {
            Some(p) if !p.contains("id") && p.contains("personGroupId") => PersonKey::OwnerAndGroup,
            _ => PersonKey::Id,
        };
        let has_integrity_report = cols.contains_key("integrity_report");
        let label = match (asset_table, asset_file_table.is_some()) {
            ("assets", false) if preview_columns == Some(("resizePath", "webpPath")) => "v1.100-",
            ("assets", false) => "v1.101-v1.112",
            ("assets", true) => "v1.113-v1.135",
            (_, _) if has_sidecar_column => "v1.136-v2.3",
            (_, _) if has_encoded_video_column => "v2.4-v2.5",
            _ if person_key == PersonKey::OwnerAndGroup => "v3.2+",
            _ if has_integrity_report => "v3.0-v3.1",
            _ => "v2.6-v2.7",
        }
        .to_string();
        Ok(Schema {
            label,
            asset_table,
            asset_file_table,
            exif_table: pick(&["asset_exif", "exif"]),
            user_table,
            library_table: pick(&["library", "libraries"]),
            // Every release's `person` has `thumbnailPath`: a table without it is drift,
            // which the person query then reports (not a reason to skip persons silently).
            has_person: person.is_some(),
            person_key,
            has_integrity_report,
            release: None,
            preview_columns,
            has_encoded_video_column,
            has_sidecar_column,
            has_checksum_algorithm: has("checksumAlgorithm"),
            has_is_external: has("isExternal"),
            // Expected from v2.5 on; on a v2.6+ shape (no asset path columns left) a missing
            // column is drift that the file query reports, not an older release.
            has_asset_file_is_edited: asset_file_table.is_some_and(|t| {
                cols[t].contains("isEdited")
                    || (asset_table == "asset"
                        && !has_sidecar_column
                        && !has_encoded_video_column
                        && preview_columns.is_none())
            }),
            has_media_location_table: cols.contains_key("system_metadata"),
            timestamps: Timestamps {
                asset: stamped(ac),
                person: cols.get("person").is_some_and(stamped),
                user: stamped(&cols[user_table]),
            },
        })
    }
}

fn stamped(c: &HashSet<String>) -> bool {
    c.contains("createdAt") && c.contains("updatedAt")
}

/// `"name"`: identifiers are quoted because Immich uses camelCase and `user` is reserved.
pub(crate) fn q(ident: &str) -> String {
    debug_assert!(!ident.contains('"'));
    format!("\"{ident}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(spec: &[(&str, &[&str])]) -> HashMap<String, HashSet<String>> {
        spec.iter()
            .map(|(t, cs)| (t.to_string(), cs.iter().map(|c| c.to_string()).collect()))
            .collect()
    }

    #[test]
    fn detects_each_generation() {
        let base = ["id", "ownerId", "originalPath"];
        let with = |extra: &[&'static str]| -> Vec<&'static str> {
            base.iter().copied().chain(extra.iter().copied()).collect()
        };
        let v112 = with(&[
            "previewPath",
            "thumbnailPath",
            "encodedVideoPath",
            "sidecarPath",
        ]);
        let s = Schema::from_columns(&cols(&[("assets", &v112), ("users", &["id"])])).unwrap();
        assert_eq!(s.label, "v1.101-v1.112");
        assert_eq!(s.preview_columns, Some(("previewPath", "thumbnailPath")));

        let v135 = with(&["encodedVideoPath", "sidecarPath"]);
        let s = Schema::from_columns(&cols(&[
            ("assets", &v135),
            ("asset_files", &["path"]),
            ("users", &["id"]),
        ]))
        .unwrap();
        assert_eq!(
            (s.label.as_str(), s.asset_file_table),
            ("v1.113-v1.135", Some("asset_files"))
        );

        let s = Schema::from_columns(&cols(&[
            ("asset", &v135),
            ("asset_file", &["path"]),
            ("user", &["id"]),
        ]))
        .unwrap();
        assert_eq!(s.label, "v1.136-v2.3");

        let v26 = with(&["checksumAlgorithm"]);
        let s = Schema::from_columns(&cols(&[
            ("asset", &v26),
            ("asset_file", &["path", "isEdited"]),
            ("user", &["id"]),
        ]))
        .unwrap();
        assert_eq!(s.label, "v2.6-v2.7");
        assert!(s.has_asset_file_is_edited && s.has_checksum_algorithm);
        assert_eq!(s.person_key, PersonKey::Id);

        let af: &[&str] = &["path", "isEdited"];
        let v30 = cols(&[
            ("asset", &v26),
            ("asset_file", af),
            ("user", &["id"]),
            ("person", &["id", "ownerId", "thumbnailPath"]),
            ("integrity_report", &["id", "type", "path"]),
        ]);
        let s = Schema::from_columns(&v30).unwrap();
        assert_eq!(
            (s.label.as_str(), s.person_key),
            ("v3.0-v3.1", PersonKey::Id)
        );
        assert!(s.has_integrity_report && s.has_person);

        let v32 = cols(&[
            ("asset", &v26),
            ("asset_file", af),
            ("user", &["id"]),
            ("person", &["ownerId", "personGroupId", "thumbnailPath"]),
            ("integrity_report", &["id", "type", "path"]),
        ]);
        let s = Schema::from_columns(&v32).unwrap();
        assert_eq!(
            (s.label.as_str(), s.person_key),
            ("v3.2+", PersonKey::OwnerAndGroup)
        );
        assert_eq!(
            s.person_key.where_sql("p.", 2, 3),
            "p.\"personGroupId\" = $2::uuid AND p.\"ownerId\" = $3::uuid"
        );
    }

    #[test]
    fn rejects_non_immich_databases() {
        let err = Schema::from_columns(&cols(&[("users", &["id"])])).unwrap_err();
        assert!(err.to_string().contains("neither table"));
    }
}
