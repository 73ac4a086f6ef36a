//! The unfiltered asset stream as three id-ordered cursors merged here by asset id: the asset
//! table by `id`, the exif sizes by `"assetId"` and the `asset_file` rows by `"assetId"`.
//!
//! The server runs three plain index scans instead of one merge join with an aggregate per
//! asset: less CPU in the backend, a little more here (docs/benchmarks.md, "Fourth round"). The
//! rows come out exactly as the join's: the same size (the exif row of the asset, if any),
//! the same files (built as the join's `"type:edited:path"` items, so `push_asset_files` sorts
//! them alike), in the same id order. Each cursor holds at most one page here; rows of the
//! companion tables whose asset the asset cursor skips (trashed, or gone) are read and
//! dropped, as the join's index scans read them too.
//!
//! Filtered scans (owner, library, since, shard, kind, limit) keep the join: their asset
//! cursor skips most rows, and the companions would still read every one.

use super::filters::SourceOptions;
use super::rows::{get_path, AssetColumns};
use super::sql::{
    asset_columns, close_cursor, cursor_name, declare_cursor, fetch_cursor, Page, Queries,
};
use crate::db::schema::{q, Schema};
use crate::error::{Error, Result};
use crate::model::AssetRow;
use sqlx::postgres::{PgConnection, PgRow};
use sqlx::{Row, ValueRef};
use std::collections::VecDeque;
use uuid::Uuid;

/// The companions' names (of their cursors, and of their statements in `doctor`).
const EXIF: &str = "exif";
const ASSET_FILE: &str = "asset_file";

/// A table read alongside the asset table, in asset-id order.
pub(super) struct Companion {
    /// `exif` or `asset_file`: names the cursor (and the statement in `doctor`).
    pub(super) name: &'static str,
    /// From the first row.
    pub(super) first: String,
    /// From the rows of the assets after `$1`.
    pub(super) next: String,
}

/// The companion cursors of the merged asset page.
pub(super) struct Companions {
    /// The exif size by asset id, when the schema has an exif table.
    pub(super) exif: Option<Companion>,
    /// The `asset_file` rows by asset id, when the schema has the table (and the page reads
    /// derived files).
    pub(super) files: Option<Companion>,
}

impl Companions {
    pub(super) fn new(s: &Schema, with_files: bool) -> Companions {
        let exif = s.exif_table.map(|e| {
            companion(
                EXIF,
                &format!(
                    "SELECT e.\"assetId\" AS id, e.\"fileSizeInByte\" AS size FROM {} e \
                     WHERE e.\"assetId\" {{after}} ORDER BY e.\"assetId\"",
                    q(e)
                ),
            )
        });
        let files = s.asset_file_table.filter(|_| with_files).map(|f| {
            let edited = if s.has_asset_file_is_edited {
                "f.\"isEdited\""
            } else {
                "false"
            };
            // No order within an asset: push_asset_files sorts its files, as it does the
            // join's aggregate.
            companion(
                ASSET_FILE,
                &format!(
                    "SELECT f.\"assetId\" AS id, f.type::text AS type, {edited} AS edited, \
                     f.path AS path FROM {} f WHERE f.\"assetId\" {{after}} \
                     ORDER BY f.\"assetId\"",
                    q(f)
                ),
            )
        });
        Companions { exif, files }
    }

    /// Their statements, for preparing.
    pub(super) fn sqls(&self) -> impl Iterator<Item = &str> {
        [&self.exif, &self.files]
            .into_iter()
            .flatten()
            .flat_map(|c| [c.first.as_str(), c.next.as_str()])
    }

    /// Every companion, for `doctor`'s list.
    pub(super) fn all(&self) -> impl Iterator<Item = &Companion> {
        [&self.exif, &self.files].into_iter().flatten()
    }
}

fn companion(name: &'static str, sql: &str) -> Companion {
    Companion {
        name,
        first: sql.replace("{after}", "IS NOT NULL"),
        next: sql.replace("{after}", "> $1::uuid"),
    }
}

/// Whether an unfiltered scan can read the three tables apart: nothing narrows the asset
/// rows (the trash setting is a condition of the asset cursor alone), and the old join was
/// not asked for.
pub(super) fn applies(opts: &SourceOptions) -> bool {
    !opts.join_stream && !opts.is_filtered() && opts.shard.is_none()
}

/// One companion cursor's current page, and whether the cursor has more.
struct Buffer<T> {
    cursor: String,
    decode: fn(&PgRow) -> Result<(Uuid, T)>,
    rows: VecDeque<(Uuid, T)>,
    done: bool,
}

impl<T> Buffer<T> {
    fn new(name: &str, decode: fn(&PgRow) -> Result<(Uuid, T)>) -> Self {
        Buffer {
            cursor: cursor_name(name),
            decode,
            rows: VecDeque::new(),
            done: false,
        }
    }

    /// Hands the rows of asset `id` to `keep`, dropping those of assets before it (trashed
    /// or gone, which the asset cursor skips); fetches the cursor's next page whenever this
    /// one runs out.
    async fn take(
        &mut self,
        conn: &mut PgConnection,
        fetch: u64,
        id: Uuid,
        mut keep: impl FnMut(T),
    ) -> Result<()> {
        loop {
            if self.rows.is_empty() && !self.done {
                let rows = fetch_cursor(conn, &self.cursor, fetch).await?;
                self.done = (rows.len() as u64) < fetch;
                for r in &rows {
                    self.rows.push_back((self.decode)(r)?);
                }
            }
            match self.rows.front() {
                Some((key, _)) if *key <= id => {
                    let (key, value) = self.rows.pop_front().expect("a front row");
                    if key == id {
                        keep(value);
                    }
                }
                _ => return Ok(()),
            }
        }
    }
}

/// The merge's state across pages: which cursors are open and what each has buffered.
pub(super) struct Merger {
    /// Rows per fetch of a companion cursor (the asset pages' size).
    fetch: u64,
    declared: bool,
    sizes: Buffer<Option<i64>>,
    files: Buffer<String>,
}

impl Merger {
    pub(super) fn new(fetch: usize) -> Merger {
        Merger {
            fetch: fetch.max(1) as u64,
            declared: false,
            sizes: Buffer::new(EXIF, decode_size),
            files: Buffer::new(ASSET_FILE, decode_file),
        }
    }

    /// After a lost connection: the cursors died with it, and what they had buffered is
    /// read again from the new ones (declared after the last delivered asset).
    pub(super) fn reset(&mut self) {
        *self = Merger::new(self.fetch as usize);
    }

    /// The next page of at most `n` assets after `after` (the last delivered asset id and
    /// owner), each with its size and files.
    pub(super) async fn next_page(
        &mut self,
        conn: &mut PgConnection,
        qs: &Queries,
        page: &Page,
        with: &Companions,
        after: Option<&(String, String)>,
        n: u64,
    ) -> Result<Vec<AssetRow>> {
        if !self.declared {
            page.declare(conn, after).await?;
            for c in with.all() {
                declare(conn, c, after.map(|(id, _)| id.as_str())).await?;
            }
            // A table the schema lacks has no rows to merge.
            self.sizes.done = with.exif.is_none();
            self.files.done = with.files.is_none();
            self.declared = true;
        }
        let assets = page.fetch(conn, n).await?;
        let mut out = Vec::with_capacity(assets.len());
        for r in &assets {
            let id: Uuid = r.try_get(0).map_err(Error::query("id"))?;
            let mut size = None;
            self.sizes.take(conn, self.fetch, id, |s| size = s).await?;
            let mut files: Option<Vec<String>> = None;
            let keep = |f| files.get_or_insert_with(Vec::new).push(f);
            self.files.take(conn, self.fetch, id, keep).await?;
            let cols: AssetColumns = asset_columns(qs, r, id.to_string(), size, files)?;
            out.push(cols.into_row(&qs.kinds));
        }
        Ok(out)
    }

    /// Closes the three cursors (the end of the page's rows).
    pub(super) async fn close(&self, conn: &mut PgConnection, page: &Page, with: &Companions) {
        if !self.declared {
            return;
        }
        let _ = page.close(conn).await;
        for c in with.all() {
            let _ = close_cursor(conn, &cursor_name(c.name)).await;
        }
    }
}

async fn declare(conn: &mut PgConnection, c: &Companion, after: Option<&str>) -> Result<()> {
    let cursor = cursor_name(c.name);
    match after {
        None => declare_cursor(conn, &cursor, &c.first, |q| q).await,
        Some(id) => {
            let id = id.to_string();
            declare_cursor(conn, &cursor, &c.next, |q| q.bind(id)).await
        }
    }
}

fn decode_size(r: &PgRow) -> Result<(Uuid, Option<i64>)> {
    Ok((
        r.try_get(0).map_err(Error::query("exif assetId"))?,
        r.try_get(1).map_err(Error::query("fileSizeInByte"))?,
    ))
}

/// An `asset_file` row as the join's aggregate item `"type:edited:path"` (a NULL type or path
/// empty, a NULL flag not edited).
fn decode_file(r: &PgRow) -> Result<(Uuid, String)> {
    let id: Uuid = r.try_get(0).map_err(Error::query("asset_file assetId"))?;
    let raw = r.try_get_raw(1).map_err(Error::query("type"))?;
    let kind = if raw.is_null() {
        String::new()
    } else {
        let b = raw
            .as_bytes()
            .map_err(|e| Error::query("type")(sqlx::Error::Decode(e)))?;
        String::from_utf8_lossy(b).into_owned()
    };
    let edited: Option<bool> = r.try_get(2).map_err(Error::query("isEdited"))?;
    let path = get_path(r, "path")?.unwrap_or_default();
    let flag = if edited.unwrap_or(false) { '1' } else { '0' };
    Ok((id, format!("{kind}:{flag}:{path}")))
}
