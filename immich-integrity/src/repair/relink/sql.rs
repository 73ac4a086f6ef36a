//! The SQL of a relink: where each file kind's path lives in the detected schema, the row
//! updates (by key, by an `asset_file` row's own id, or by a v3.2 person's owner and group),
//! and the statements `doctor` prepares.

use super::prefix::{prefix_sql, rows_under_sql, targets};
use super::RelinkStep;
use crate::db::schema::{q, PersonKey, Schema};
use crate::db::sql::path_checksum_expr;
use crate::model::FileKind;
use sqlx::PgConnection;

/// Where a file kind's path lives in the detected schema: (table, column, asset_file type).
pub(super) fn target(
    schema: &Schema,
    kind: FileKind,
) -> Option<(&'static str, &'static str, Option<&'static str>)> {
    let af = |t: &'static str| schema.asset_file_table.map(|tbl| (tbl, "path", Some(t)));
    match kind {
        FileKind::Original => Some((schema.asset_table, "originalPath", None)),
        FileKind::Preview => match schema.preview_columns {
            Some((p, _)) => Some((schema.asset_table, p, None)),
            None => af("preview"),
        },
        FileKind::Thumbnail => match schema.preview_columns {
            Some((_, t)) => Some((schema.asset_table, t, None)),
            None => af("thumbnail"),
        },
        FileKind::Fullsize => af("fullsize"),
        FileKind::EncodedVideo if schema.has_encoded_video_column => {
            Some((schema.asset_table, "encodedVideoPath", None))
        }
        FileKind::EncodedVideo => af("encoded_video"),
        FileKind::Sidecar if schema.has_sidecar_column => {
            Some((schema.asset_table, "sidecarPath", None))
        }
        FileKind::Sidecar => af("sidecar"),
        FileKind::PersonThumbnail => schema
            .has_person
            .then_some(("person", "thumbnailPath", None)),
        FileKind::ProfileImage => Some((schema.user_table, "profileImagePath", None)),
    }
}

/// What a row update binds after `$1` (new), `$2` (id) and `$3` (old).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Fourth {
    /// Nothing.
    None,
    /// `$4` is the `asset_file` type.
    FileType(&'static str),
    /// `$4` is the owner: a v3.2 person is keyed by (owner, person group).
    Owner,
}

/// `UPDATE ... SET col = $1 WHERE key = $2 AND col = $3 [AND type = $4 | AND owner = $4]`.
pub(super) fn update_sql(schema: &Schema, kind: FileKind) -> Option<(String, Fourth)> {
    let (table, col, file_type) = target(schema, kind)?;
    let person = kind == FileKind::PersonThumbnail;
    let key = match file_type {
        Some(_) => q("assetId"),
        None if person => q(schema.person_key.id_column()),
        None => q("id"),
    };
    let mut sql = format!(
        "UPDATE {} SET {c} = $1 WHERE {key} = $2::uuid AND {c} = $3",
        q(table),
        c = q(col)
    );
    let fourth = match file_type {
        Some(t) => {
            sql.push_str(" AND type::text = $4");
            Fourth::FileType(t)
        }
        None if person && schema.person_key == PersonKey::OwnerAndGroup => {
            sql.push_str(" AND \"ownerId\" = $4::uuid");
            Fourth::Owner
        }
        None => Fourth::None,
    };
    Some((sql, fourth))
}

/// `UPDATE asset_file SET path = $1 WHERE id = $2 AND path = $3`: one `asset_file` row by its
/// own id (see [`RelinkStep::row`]).
pub(super) fn update_row_sql(schema: &Schema) -> Option<String> {
    schema.asset_file_table.map(|t| {
        format!(
            "UPDATE {} SET \"path\" = $1 WHERE id = $2::uuid AND \"path\" = $3",
            q(t)
        )
    })
}

/// The `asset_file` rows of one asset and type that hold a path, oldest id first, locked for
/// the batch: `$1` asset, `$2` type, `$3` path.
pub(super) fn rows_holding_sql(schema: &Schema) -> Option<String> {
    schema.asset_file_table.map(|t| {
        format!(
            "SELECT id::text FROM {} WHERE \"assetId\" = $1::uuid AND type::text = $2 \
             AND \"path\" = $3 ORDER BY id FOR UPDATE",
            q(t)
        )
    })
}

/// Runs the update of one step: `set` is written where the row holds `was`. A step naming its
/// `asset_file` row touches that row only; otherwise the key of its kind decides.
pub(super) async fn run_update(
    conn: &mut PgConnection,
    schema: &Schema,
    step: &RelinkStep,
    (set, was): (&str, &str),
) -> std::result::Result<u64, sqlx::Error> {
    if let (Some(row), Some((_, _, Some(_)))) = (&step.row, target(schema, step.file)) {
        let sql = update_row_sql(schema).expect("an asset_file target has a table");
        return Ok(sqlx::query(&sql)
            .bind(set)
            .bind(row)
            .bind(was)
            .execute(&mut *conn)
            .await?
            .rows_affected());
    }
    let Some((sql, fourth)) = update_sql(schema, step.file) else {
        return Ok(0);
    };
    Ok(bind_update(&sql, fourth, step, (set, was))
        .execute(&mut *conn)
        .await?
        .rows_affected())
}

/// Binds a step's values to an [`update_sql`] statement: `set` is written where the row holds
/// `was` (relink: new over old; undo: old over new).
pub(super) fn bind_update<'q>(
    sql: &'q str,
    fourth: Fourth,
    step: &'q RelinkStep,
    (set, was): (&'q str, &'q str),
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let query = sqlx::query(sql).bind(set).bind(&step.id).bind(was);
    match fourth {
        Fourth::None => query,
        Fourth::FileType(t) => query.bind(t),
        Fourth::Owner => query.bind(step.owner.as_deref().unwrap_or_default()),
    }
}

/// For an original: does the file at `found_at` still match what Immich recorded (size, and
/// SHA-1 when the checksum is of the content)?
/// The recorded size, checksum and checksum kind of one asset (`$1`).
pub(super) fn recorded_facts_sql(schema: &Schema) -> String {
    let size = match schema.exif_table {
        Some(e) => format!(
            "(SELECT \"fileSizeInByte\" FROM {} WHERE \"assetId\" = a.id)",
            q(e)
        ),
        None => "NULL::int8".into(),
    };
    format!(
        "SELECT {size}, a.checksum, {} FROM {} a WHERE a.id = $1::uuid",
        path_checksum_expr(schema),
        q(schema.asset_table)
    )
}

/// Every statement relink and its undo run against this schema, labelled, for `doctor` to
/// prepare (values are placeholders; nothing runs).
pub(crate) fn statements(schema: &Schema) -> Vec<(String, String)> {
    let mut out = vec![(
        "relink: recorded size and checksum".to_string(),
        recorded_facts_sql(schema),
    )];
    for kind in FileKind::ALL {
        if let Some((sql, _)) = update_sql(schema, kind) {
            out.push((format!("relink/undo: {kind} path"), sql));
        }
    }
    if let (Some(by_row), Some(holding)) = (update_row_sql(schema), rows_holding_sql(schema)) {
        out.push(("relink/undo: one asset_file row".to_string(), by_row));
        out.push((
            "relink: asset_file rows holding a path".to_string(),
            holding,
        ));
    }
    for (kind, table, col, file_type) in targets(schema) {
        out.push((
            format!("relink: rows under a prefix ({kind})"),
            rows_under_sql(schema, table, col, file_type),
        ));
        out.push((
            format!("relink: prefix rewrite ({kind})"),
            prefix_sql(schema, table, col, file_type),
        ));
    }
    out
}
