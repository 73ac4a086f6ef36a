//! The changes queue mode makes (what the journal records), which column or `asset_file` row
//! holds a derivative on this schema, and the SQL that makes a change and puts it back.

use super::*;

/// One database change of queue mode, with what undo needs to restore it. Table and column
/// names are not stored: undo takes them from the detected schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum QueueChange {
    /// The derivative's `asset_file(s)` row, deleted; `row` is the whole row (`to_jsonb`).
    DeleteAssetFile {
        /// Which derivative the row is.
        file: FileKind,
        /// The `asset_file(s)` row's id.
        row_id: String,
        /// The whole row as JSON, re-inserted by undo.
        row: serde_json::Value,
        /// Rows the delete removes through `ON DELETE CASCADE` foreign keys (on v3 the
        /// `integrity_report` rows that point at it), re-inserted by undo after the row.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        cascaded: Vec<CascadedRow>,
    },
    /// A path column on the asset table (schemas before `asset_files`, or
    /// `encodedVideoPath` / `sidecarPath` before they moved), set to `blank`.
    BlankColumn {
        /// Which file kind the column holds.
        file: FileKind,
        /// The path the column held.
        old: String,
        /// What it was set to: `None` for NULL, or the empty value the column uses (`""`).
        blank: Option<String>,
    },
    /// `thumbhash` set to NULL (old value in hex).
    ClearThumbhash {
        /// The previous thumbhash, hex-encoded.
        old_hex: String,
    },
    /// `asset_job_status.metadataExtractedAt` set to NULL (old value as JSON text).
    ClearMetadataExtractedAt {
        /// The previous timestamp, as JSON.
        old: serde_json::Value,
    },
}

/// One planned queue-mode change to one asset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueStep {
    /// The asset whose rows change.
    pub asset_id: String,
    /// The change.
    #[serde(flatten)]
    pub change: QueueChange,
}

/// Does `asset_job_status.metadataExtractedAt` exist?
pub(super) async fn has_job_status(conn: &mut PgConnection) -> Result<bool> {
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public' \
         AND table_name = 'asset_job_status' AND column_name = 'metadataExtractedAt'",
    )
    .fetch_one(&mut *conn)
    .await
    .map_err(Error::query("looking for asset_job_status"))?;
    Ok(n > 0)
}

/// Where a kind's path lives: an `asset_file(s)` type, or an asset column and its blank value.
pub(super) enum Slot {
    AssetFile(&'static str, &'static str),
    Column(&'static str, Option<&'static str>),
}

pub(super) fn slot(schema: &Schema, kind: FileKind) -> Option<Slot> {
    let af = |t| schema.asset_file_table.map(|tbl| Slot::AssetFile(tbl, t));
    match kind {
        FileKind::Preview => match schema.preview_columns {
            Some((p, _)) => Some(Slot::Column(p, None)),
            None => af("preview"),
        },
        FileKind::Thumbnail => match schema.preview_columns {
            Some((_, t)) => Some(Slot::Column(t, Some(""))),
            None => af("thumbnail"),
        },
        FileKind::Fullsize => af("fullsize"),
        FileKind::EncodedVideo if schema.has_encoded_video_column => {
            Some(Slot::Column("encodedVideoPath", Some("")))
        }
        FileKind::EncodedVideo => af("encoded_video"),
        FileKind::Sidecar if schema.has_sidecar_column => Some(Slot::Column("sidecarPath", None)),
        FileKind::Sidecar => af("sidecar"),
        _ => None,
    }
}

/// Every statement queue mode, and its undo, runs against this schema, labelled, for `doctor`
/// to prepare (values are placeholders; nothing runs).
pub(crate) fn statements(schema: &Schema) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let dummy = |change: QueueChange| QueueStep {
        asset_id: String::new(),
        change,
    };
    for kind in FileKind::ALL {
        match slot(schema, kind) {
            Some(Slot::AssetFile(table, _)) => {
                out.push((
                    format!("regenerate: read the {kind} rows"),
                    asset_file_rows_sql(table),
                ));
                let step = dummy(QueueChange::DeleteAssetFile {
                    file: kind,
                    row_id: String::new(),
                    row: serde_json::Value::Null,
                    cascaded: Vec::new(),
                });
                for undo in [false, true] {
                    if let Some((sql, _)) = change_sql(schema, &step, undo) {
                        let verb = if undo {
                            "undo: re-insert"
                        } else {
                            "regenerate: delete"
                        };
                        out.push((format!("{verb} the {kind} row"), sql));
                    }
                }
            }
            Some(Slot::Column(col, _)) => {
                out.push((
                    format!("regenerate: read the {kind} path"),
                    column_sql(schema, col),
                ));
                let step = dummy(QueueChange::BlankColumn {
                    file: kind,
                    old: String::new(),
                    blank: None,
                });
                for undo in [false, true] {
                    if let Some((sql, _)) = change_sql(schema, &step, undo) {
                        let verb = if undo {
                            "undo: restore"
                        } else {
                            "regenerate: blank"
                        };
                        out.push((format!("{verb} the {kind} path"), sql));
                    }
                }
            }
            None => {}
        }
    }
    out.push(("regenerate: read thumbhash".into(), thumbhash_sql(schema)));
    for undo in [false, true] {
        let step = dummy(QueueChange::ClearThumbhash {
            old_hex: String::new(),
        });
        if let Some((sql, _)) = change_sql(schema, &step, undo) {
            let verb = if undo {
                "undo: restore"
            } else {
                "regenerate: clear"
            };
            out.push((format!("{verb} thumbhash"), sql));
        }
    }
    out
}

/// Every row of one asset and type (an edited and an unedited rendition are two), whole.
pub(super) fn asset_file_rows_sql(table: &str) -> String {
    format!(
        "SELECT id::text, to_jsonb(f) FROM {} f WHERE \"assetId\" = $1::uuid \
         AND type::text = $2 ORDER BY id",
        q(table)
    )
}

pub(super) fn column_sql(schema: &Schema, col: &str) -> String {
    format!(
        "SELECT {}::text FROM {} WHERE id = $1::uuid",
        q(col),
        q(schema.asset_table)
    )
}

pub(super) fn thumbhash_sql(schema: &Schema) -> String {
    format!(
        "SELECT encode(thumbhash, 'hex') FROM {} WHERE id = $1::uuid",
        q(schema.asset_table)
    )
}

/// `(sql, binds)` applying a change (forward) or restoring it (undo). Every statement is
/// guarded by the value it expects, so replaying it is harmless.
pub(super) fn change_sql(
    schema: &Schema,
    step: &QueueStep,
    undo: bool,
) -> Option<(String, Vec<Option<String>>)> {
    let id = Some(step.asset_id.clone());
    let asset = q(schema.asset_table);
    Some(match &step.change {
        QueueChange::DeleteAssetFile {
            file, row_id, row, ..
        } => {
            let Slot::AssetFile(table, _) = slot(schema, *file)? else {
                return None;
            };
            let path = row.get("path").and_then(|p| p.as_str()).map(str::to_string);
            if undo {
                (
                    format!(
                        "INSERT INTO {t} SELECT * FROM jsonb_populate_record(NULL::{t}, $1::jsonb) \
                         WHERE EXISTS (SELECT 1 FROM {asset} WHERE id = $2::uuid) \
                         ON CONFLICT DO NOTHING",
                        t = q(table)
                    ),
                    vec![Some(row.to_string()), id],
                )
            } else {
                (
                    format!(
                        "DELETE FROM {} WHERE id = $1::uuid AND \"assetId\" = $2::uuid AND path = $3",
                        q(table)
                    ),
                    vec![Some(row_id.clone()), id, path],
                )
            }
        }
        QueueChange::BlankColumn { file, old, blank } => {
            let Slot::Column(col, _) = slot(schema, *file)? else {
                return None;
            };
            let (set, expect) = if undo {
                (Some(old.clone()), blank.clone())
            } else {
                (blank.clone(), Some(old.clone()))
            };
            (
                format!(
                    "UPDATE {asset} SET {c} = $1 WHERE id = $2::uuid AND {c} IS NOT DISTINCT FROM $3",
                    c = q(col)
                ),
                vec![set, id, expect],
            )
        }
        QueueChange::ClearThumbhash { old_hex } => {
            if undo {
                (
                    format!(
                        "UPDATE {asset} SET thumbhash = decode($1, 'hex') \
                         WHERE id = $2::uuid AND thumbhash IS NULL"
                    ),
                    vec![Some(old_hex.clone()), id],
                )
            } else {
                (
                    format!(
                        "UPDATE {asset} SET thumbhash = NULL \
                         WHERE id = $2::uuid AND thumbhash = decode($1, 'hex')"
                    ),
                    vec![Some(old_hex.clone()), id],
                )
            }
        }
        QueueChange::ClearMetadataExtractedAt { old } => {
            if undo {
                (
                    "UPDATE asset_job_status SET \"metadataExtractedAt\" = \
                     ($1::jsonb #>> '{}')::timestamptz \
                     WHERE \"assetId\" = $2::uuid AND \"metadataExtractedAt\" IS NULL"
                        .into(),
                    vec![Some(old.to_string()), id],
                )
            } else {
                (
                    "UPDATE asset_job_status SET \"metadataExtractedAt\" = NULL \
                     WHERE \"assetId\" = $2::uuid AND to_jsonb(\"metadataExtractedAt\") = $1::jsonb"
                        .into(),
                    vec![Some(old.to_string()), id],
                )
            }
        }
    })
}

pub(super) async fn exec(
    conn: &mut PgConnection,
    sql: &str,
    binds: &[Option<String>],
) -> Result<u64> {
    let mut query = sqlx::query(sql);
    for b in binds {
        query = query.bind(b.clone());
    }
    Ok(query
        .execute(&mut *conn)
        .await
        .map_err(Error::query("changing a derivative row"))?
        .rows_affected())
}
