//! Rows a repair changes without naming them: foreign keys with `ON DELETE CASCADE` (on
//! Immich v3, deleting an `asset_file` row deletes the `integrity_report` rows that point at
//! it) and the triggers that fire on the changed table. Both are read from the catalog
//! (`pg_constraint`, `pg_trigger`) of the database at hand, never from a list, so a release
//! that adds a referencing table is covered without a code change.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;

/// A foreign key whose rows are deleted with the row they reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CascadingKey {
    /// The referencing table, as the catalog spells it (already quoted where needed).
    pub table: String,
    /// Its referencing columns.
    pub columns: Vec<String>,
    /// The referenced columns, in the same order.
    pub referenced: Vec<String>,
}

/// One row that a delete removes through a cascade, kept whole so undo can put it back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CascadedRow {
    /// The table the row lives in (checked against the catalog again at undo time).
    pub table: String,
    /// The whole row (`to_jsonb`).
    pub row: serde_json::Value,
}

/// Every `ON DELETE CASCADE` foreign key that references `table` (a schema-qualified-or-not
/// name resolved with `to_regclass`).
pub(crate) async fn cascading_keys(
    conn: &mut PgConnection,
    table: &str,
) -> Result<Vec<CascadingKey>> {
    let rows: Vec<(String, Vec<String>, Vec<String>)> = sqlx::query_as(
        "SELECT c.conrelid::regclass::text, \
           ARRAY(SELECT a.attname::text FROM unnest(c.conkey) WITH ORDINALITY k(n, i) \
                 JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.n ORDER BY k.i), \
           ARRAY(SELECT a.attname::text FROM unnest(c.confkey) WITH ORDINALITY k(n, i) \
                 JOIN pg_attribute a ON a.attrelid = c.confrelid AND a.attnum = k.n ORDER BY k.i) \
         FROM pg_constraint c \
         WHERE c.contype = 'f' AND c.confdeltype = 'c' AND c.confrelid = to_regclass($1) \
         ORDER BY 1, c.conname",
    )
    .bind(table)
    .fetch_all(&mut *conn)
    .await
    .map_err(Error::query("reading foreign keys from pg_constraint"))?;
    Ok(rows
        .into_iter()
        .map(|(table, columns, referenced)| CascadingKey {
            table,
            columns,
            referenced,
        })
        .collect())
}

/// The rows that deleting `row` (a whole row of `table`, as JSON) would delete through
/// cascades, one level deep and then recursively (bounded), locked `FOR UPDATE` when `lock`.
pub(crate) async fn cascaded_rows(
    conn: &mut PgConnection,
    table: &str,
    row: &serde_json::Value,
    lock: bool,
) -> Result<Vec<CascadedRow>> {
    let mut out = Vec::new();
    let mut todo = vec![(table.to_string(), row.clone(), 0u8)];
    while let Some((t, r, depth)) = todo.pop() {
        if depth >= 4 {
            continue;
        }
        for key in cascading_keys(conn, &t).await? {
            let cond: Vec<String> = key
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| format!("r.{}::text = $1::jsonb->>${}", quote(c), i + 2))
                .collect();
            let sql = format!(
                "SELECT to_jsonb(r) FROM {} r WHERE {}{}",
                key.table,
                cond.join(" AND "),
                if lock { " FOR UPDATE" } else { "" }
            );
            let mut query = sqlx::query_scalar::<_, serde_json::Value>(&sql).bind(&r);
            for name in &key.referenced {
                query = query.bind(name);
            }
            for found in query
                .fetch_all(&mut *conn)
                .await
                .map_err(Error::query("reading rows a delete would cascade to"))?
            {
                todo.push((key.table.clone(), found.clone(), depth + 1));
                out.push(CascadedRow {
                    table: key.table.clone(),
                    row: found,
                });
            }
        }
    }
    Ok(out)
}

/// Puts cascaded rows back (parents first), each only where it is absent. The table must be
/// one that cascades from `root` in this database's catalog now: a journal cannot name an
/// arbitrary table. Returns the rows inserted.
pub(crate) async fn restore(
    conn: &mut PgConnection,
    root: &str,
    rows: &[CascadedRow],
) -> Result<u64> {
    let mut allowed: Vec<String> = Vec::new();
    let mut frontier = vec![root.to_string()];
    while let Some(t) = frontier.pop() {
        for k in cascading_keys(conn, &t).await? {
            if !allowed.contains(&k.table) {
                allowed.push(k.table.clone());
                frontier.push(k.table);
            }
        }
    }
    let mut restored = 0;
    for r in rows {
        if !allowed.contains(&r.table) {
            return Err(Error::InvalidArgument(format!(
                "the journal names table {} as cascading from {root}, but no foreign key of \
                 this database says so; nothing restored",
                r.table
            )));
        }
        let sql = format!(
            "INSERT INTO {t} SELECT * FROM jsonb_populate_record(NULL::{t}, $1::jsonb) \
             ON CONFLICT DO NOTHING",
            t = r.table
        );
        restored += sqlx::query(&sql)
            .bind(&r.row)
            .execute(&mut *conn)
            .await
            .map_err(Error::query("restoring a cascaded row"))?
            .rows_affected();
    }
    Ok(restored)
}

/// The user triggers on `table` that fire on `event` (`DELETE` or `UPDATE`), as
/// `name (function)`: what a repair also causes, for the dry run to name.
pub(crate) async fn triggers(
    conn: &mut PgConnection,
    table: &str,
    event: &str,
) -> Result<Vec<String>> {
    // tgtype bits: 8 = DELETE, 16 = UPDATE.
    let bit: i32 = if event == "DELETE" { 8 } else { 16 };
    sqlx::query_scalar(
        "SELECT t.tgname::text || ' (' || p.proname::text || ')' FROM pg_trigger t \
         JOIN pg_proc p ON p.oid = t.tgfoid \
         WHERE t.tgrelid = to_regclass($1) AND NOT t.tgisinternal AND (t.tgtype::int & $2) <> 0 \
         ORDER BY t.tgname",
    )
    .bind(table)
    .bind(bit)
    .fetch_all(&mut *conn)
    .await
    .map_err(Error::query("reading triggers from pg_trigger"))
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}
