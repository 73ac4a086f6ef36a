//! The SQL builder: one keyset-paged query per part (assets, persons, users) for the detected
//! schema, with its resume and count statements.

use super::conn::prepare_all;
use super::filters::{bind_all, Filters, Param, SourceOptions, Where};
use super::merge::{self, Companions};
use super::rows::{decode_single, get, get_files, get_path, AssetColumns};
use crate::db::schema::{q, PersonKey, Schema};
use crate::error::{Error, Result};
use crate::model::{AssetRow, Entity, FileKind};
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgArguments, PgConnection, PgRow};
use sqlx::query::Query;
use sqlx::Postgres;
use sqlx::Row;

/// SQL (over alias `a`) that is true when `checksum` hashes the path, not the content.
pub(crate) fn path_checksum_expr(s: &Schema) -> &'static str {
    if s.has_checksum_algorithm {
        "(a.\"checksumAlgorithm\"::text = 'sha1-path')"
    } else if s.has_is_external {
        "COALESCE(a.\"isExternal\", false)"
    } else {
        "false"
    }
}

pub(super) type Decode = fn(&Queries, &PgRow) -> Result<AssetRow>;

/// One keyset-paged query: its first and next page SQL, its row count, the values bound to
/// its filter placeholders, how many rows at most, and how to decode a row.
pub(super) struct Page {
    /// `asset`, `person` or `user`: names the phase in resume messages.
    pub(super) name: &'static str,
    pub(super) first: String,
    pub(super) next: String,
    pub(super) count: String,
    pub(super) params: Vec<Param>,
    pub(super) limit: Option<u64>,
    pub(super) decode: Decode,
    /// The key is `(id, owner)` (v3.2 persons): a resume binds the owner too.
    pub(super) keyed_by_owner: bool,
    /// Its queries were prepared and fit this database.
    pub(super) fitted: bool,
    /// The merged asset page: its rows are the asset table's alone, and these cursors bring
    /// the sizes and files (see `merge`).
    pub(super) merge: Option<Companions>,
}

impl Page {
    /// `count_from` is `from` without joins that cannot change the count.
    pub(super) fn new(
        (select, from, count_from): (&str, &str, &str),
        w: Where,
        (id, owner): (&str, Option<&str>),
        limit: Option<u64>,
        (name, decode): (&'static str, Decode),
    ) -> Page {
        let filter = w.sql();
        let (first, next) = keyset(
            &format!("{select} FROM {from}"),
            filter.as_deref(),
            id,
            owner,
            w.params.len(),
        );
        let count = match &filter {
            Some(f) => format!("SELECT count(*) FROM {count_from} WHERE {f}"),
            None => format!("SELECT count(*) FROM {count_from}"),
        };
        Page {
            name,
            first,
            next,
            count,
            params: w.params,
            limit,
            decode,
            keyed_by_owner: owner.is_some(),
            fitted: false,
            merge: None,
        }
    }

    /// Its statements: the cursor's, the count and those of its companion cursors.
    pub(super) fn sqls(&self) -> Vec<&str> {
        let mut all = vec![self.first.as_str(), &self.next, &self.count];
        if let Some(m) = &self.merge {
            all.extend(m.sqls());
        }
        all
    }

    /// Opens this page's cursor on the rows after `after` (its id and owner; from the first
    /// when `None`).
    pub(super) async fn declare(
        &self,
        conn: &mut PgConnection,
        after: Option<&(String, String)>,
    ) -> Result<()> {
        let (sql, key) = match after {
            None => (&self.first, None),
            Some(k) => (&self.next, Some(k)),
        };
        declare_cursor(conn, &self.cursor(), sql, |mut query| {
            query = bind_all(query, &self.params);
            if let Some((id, owner)) = key {
                query = query.bind(id.clone());
                if self.keyed_by_owner {
                    query = query.bind(owner.clone());
                }
            }
            query
        })
        .await
    }

    /// The next `n` rows of the open cursor.
    pub(super) async fn fetch(&self, conn: &mut PgConnection, n: u64) -> Result<Vec<PgRow>> {
        fetch_cursor(conn, &self.cursor(), n).await
    }

    pub(super) async fn close(&self, conn: &mut PgConnection) -> Result<()> {
        close_cursor(conn, &self.cursor()).await
    }

    /// One cursor name per phase: a FETCH described for one phase's columns is never run
    /// against another's.
    pub(super) fn cursor(&self) -> String {
        cursor_name(self.name)
    }
}

/// The server-side cursor of a phase or of a merged companion table.
pub(super) fn cursor_name(name: &str) -> String {
    format!("immich_integrity_{name}")
}

/// `DECLARE cursor NO SCROLL CURSOR FOR sql`, with the values `bind` adds.
pub(super) async fn declare_cursor(
    conn: &mut PgConnection,
    cursor: &str,
    sql: &str,
    bind: impl for<'q> FnOnce(Query<'q, Postgres, PgArguments>) -> Query<'q, Postgres, PgArguments>,
) -> Result<()> {
    let sql = format!("DECLARE {cursor} NO SCROLL CURSOR FOR {sql}");
    bind(sqlx::query(&sql).persistent(false))
        .execute(conn)
        .await
        .map_err(Error::query("streaming rows"))?;
    Ok(())
}

/// The next `n` rows of an open cursor.
pub(super) async fn fetch_cursor(
    conn: &mut PgConnection,
    cursor: &str,
    n: u64,
) -> Result<Vec<PgRow>> {
    sqlx::query(&format!("FETCH FORWARD {n} FROM {cursor}"))
        .persistent(false)
        .fetch_all(conn)
        .await
        .map_err(Error::query("streaming rows"))
}

pub(super) async fn close_cursor(conn: &mut PgConnection, cursor: &str) -> Result<()> {
    sqlx::query(&format!("CLOSE {cursor}"))
        .persistent(false)
        .execute(conn)
        .await
        .map_err(Error::query("closing the row cursor"))?;
    Ok(())
}

/// What preparing a page's queries showed.
pub(super) enum Fit {
    /// They compile.
    Fits,
    /// The asset page fits only without its `asset_file` join: derived files go unchecked.
    Narrowed(UncheckedPart),
    /// They do not compile: the part goes unchecked.
    Unfit(UncheckedPart),
}

/// The SQL for each kind of row, built once from the detected schema's fixed identifiers.
pub(super) struct Queries {
    pub(super) pages: Vec<Page>,
    /// The asset page without the `asset_file` join (or cursor, when merged): used when the
    /// full one does not fit (a dropped `asset_file` column), so originals are still checked.
    pub(super) assets_without_files: Option<Page>,
    /// File kinds to keep (empty: all).
    pub(super) kinds: Vec<FileKind>,
    pub(super) has_preview_columns: bool,
    pub(super) has_encoded_column: bool,
    pub(super) has_sidecar_column: bool,
}

/// The cursor query from the first row and the one resuming after an id (`$nparams+1`), for a
/// `select_from` with `nparams` filter placeholders. `{after}` in `select_from` (after a
/// joined table's id column) becomes the same condition, so that the joined tables' index
/// scans start at that id too instead of at their first row. With `owner` (a second key
/// column, for v3.2 persons keyed by group and owner) the order and the resume condition
/// are on the pair, the owner bound as `$nparams+2`.
pub(super) fn keyset(
    select_from: &str,
    filter: Option<&str>,
    id: &str,
    owner: Option<&str>,
    nparams: usize,
) -> (String, String) {
    let (first, next) = match filter {
        Some(f) => (format!(" WHERE {f}"), format!(" WHERE ({f}) AND")),
        None => (String::new(), " WHERE".to_string()),
    };
    let a = nparams + 1;
    let (order, resume) = match owner {
        None => (id.to_string(), format!("{id} > ${a}::uuid")),
        Some(o) => (
            format!("{id}, {o}"),
            format!("({id}, {o}) > (${a}::uuid, ${}::uuid)", a + 1),
        ),
    };
    (
        format!("{select_from}{first} ORDER BY {order}").replace("{after}", "IS NOT NULL"),
        format!("{select_from}{next} {resume} ORDER BY {order}")
            .replace("{after}", &format!("> ${a}::uuid")),
    )
}

impl Queries {
    pub(super) fn new(s: &Schema, opts: &SourceOptions, f: &Filters) -> Queries {
        // Shard membership by a hash of the id: every row lands in exactly one of N shards.
        let in_shard = |w: &mut Where, id: &str| {
            if let Some(sh) = opts.shard {
                w.push(format!(
                    "mod(abs(hashtext({id}::text)::bigint), {}) = {}",
                    sh.count, sh.index
                ));
            }
        };
        let since = |w: &mut Where, alias: &str| {
            if let Some(t) = f.since {
                w.bind(
                    &format!("({alias}\"createdAt\" > {{}} OR {alias}\"updatedAt\" > {{}})"),
                    Param::Time(t),
                );
            }
        };
        let mut pages = Vec::new();
        let mut assets_without_files = None;
        let wants_asset_files = opts.kinds.is_empty()
            || opts
                .kinds
                .iter()
                .any(|k| !matches!(k, FileKind::PersonThumbnail | FileKind::ProfileImage));
        if wants_asset_files {
            let mut w = Where::default();
            if !opts.include_trashed {
                w.push("a.\"deletedAt\" IS NULL");
            }
            if let Some(o) = &f.owners {
                w.bind("a.\"ownerId\" = ANY({})", Param::Uuids(o.clone()));
            }
            if let Some(l) = f.library {
                w.bind("a.\"libraryId\" = {}", Param::Uuid(l));
            }
            since(&mut w, "a.");
            in_shard(&mut w, "a.id");
            let count_from = format!("{} a", q(s.asset_table));
            // Unfiltered: three cursors merged by id; filtered: one join (see `merge`).
            let merged = merge::applies(opts);
            let page = |with_files: bool, w: Where| {
                let (select, from) = asset_select(s, with_files, merged);
                let mut page = Page::new(
                    (&select, &from, &count_from),
                    w,
                    ("a.id", None),
                    opts.limit,
                    ("asset", decode_asset),
                );
                page.merge = merged.then(|| Companions::new(s, with_files));
                page
            };
            if s.asset_file_table.is_some() {
                assets_without_files = Some(page(false, w.clone()));
            }
            pages.push(page(true, w));
        }
        // Persons and users belong to no library: a library filter leaves them out.
        let per_owner = f.library.is_none();
        if s.has_person
            && per_owner
            && opts.wants(FileKind::PersonThumbnail)
            && (f.since.is_none() || s.timestamps.person)
        {
            let mut w = Where::default();
            w.push("\"thumbnailPath\" <> ''");
            if let Some(o) = &f.owners {
                w.bind("\"ownerId\" = ANY({})", Param::Uuids(o.clone()));
            }
            since(&mut w, "");
            // v3.2 dropped `person.id`: a person is (owner, person group), and its findings
            // carry the group id as their id (README, findings).
            let (id, owner) = match s.person_key {
                PersonKey::Id => ("id", None),
                PersonKey::OwnerAndGroup => ("\"personGroupId\"", Some("\"ownerId\"")),
            };
            in_shard(&mut w, id);
            pages.push(Page::new(
                (
                    &format!(
                        "SELECT {id}::text AS id, \"ownerId\"::text AS owner, \"thumbnailPath\" AS path"
                    ),
                    "person",
                    "person",
                ),
                w,
                (id, owner),
                None,
                ("person", decode_person),
            ));
        }
        if per_owner
            && opts.wants(FileKind::ProfileImage)
            && (f.since.is_none() || s.timestamps.user)
        {
            let mut w = Where::default();
            w.push("\"profileImagePath\" <> ''");
            if let Some(o) = &f.owners {
                w.bind("id = ANY({})", Param::Uuids(o.clone()));
            }
            since(&mut w, "");
            in_shard(&mut w, "id");
            let users = q(s.user_table);
            pages.push(Page::new(
                (
                    "SELECT id::text AS id, id::text AS owner, \"profileImagePath\" AS path",
                    &users,
                    &users,
                ),
                w,
                ("id", None),
                None,
                ("user", decode_user),
            ));
        }
        Queries {
            pages,
            assets_without_files,
            kinds: opts.kinds.clone(),
            has_preview_columns: s.preview_columns.is_some(),
            has_encoded_column: s.has_encoded_video_column,
            has_sidecar_column: s.has_sidecar_column,
        }
    }

    /// Prepares (parses and plans, without running) page `i`'s queries. An asset page that
    /// does not fit is tried again without the `asset_file` join, so originals are still
    /// checked when only a derived-file column drifted. Nothing changes on an `Err` (a lost
    /// connection), so the caller can retry on a new one.
    pub(super) async fn fit(&mut self, i: usize, conn: &mut PgConnection) -> Result<Fit> {
        let reason = match prepare_all(conn, &self.pages[i].sqls()).await? {
            Ok(()) => {
                self.pages[i].fitted = true;
                return Ok(Fit::Fits);
            }
            Err(reason) => reason,
        };
        let name = self.pages[i].name;
        tracing::debug!(part = name, %reason, "query does not fit");
        if name == "asset" {
            if let Some(bare) = &self.assets_without_files {
                if prepare_all(conn, &bare.sqls()).await?.is_ok() {
                    let mut bare = self.assets_without_files.take().expect("checked");
                    bare.fitted = true;
                    self.pages[i] = bare;
                    return Ok(Fit::Narrowed(UncheckedPart {
                        part: "asset_file".into(),
                        reason,
                    }));
                }
            }
        }
        Ok(Fit::Unfit(UncheckedPart {
            part: name.to_string(),
            reason,
        }))
    }

    /// [`Queries::fit`] for every page, removing those that do not fit (before counting).
    pub(super) async fn drop_unfit(
        &mut self,
        conn: &mut PgConnection,
    ) -> Result<Vec<UncheckedPart>> {
        let mut unfit = Vec::new();
        let mut i = 0;
        while i < self.pages.len() {
            match self.fit(i, conn).await? {
                Fit::Fits => i += 1,
                Fit::Narrowed(part) => {
                    unfit.push(part);
                    i += 1;
                }
                Fit::Unfit(part) => {
                    unfit.push(part);
                    self.pages.remove(i);
                }
            }
        }
        Ok(unfit)
    }

    /// Rows the pages will stream, counted in the same snapshot.
    pub(super) async fn count(&self, conn: &mut PgConnection) -> Result<u64> {
        let mut total = 0u64;
        for p in &self.pages {
            let n: i64 = bind_all(sqlx::query(&p.count), &p.params)
                .fetch_one(&mut *conn)
                .await
                .and_then(|r| r.try_get(0))
                .map_err(Error::query("counting rows"))?;
            let n = u64::try_from(n).unwrap_or(0);
            total += p.limit.map_or(n, |l| n.min(l));
        }
        Ok(total)
    }
}

/// The asset page's select list and `FROM` clause (alias `a`). `merged`: the asset table's
/// own columns only, the id as a binary uuid (the merge compares ids in the server's order).
pub(super) fn asset_select(s: &Schema, with_files: bool, merged: bool) -> (String, String) {
    let id = if merged {
        "a.id AS id"
    } else {
        "a.id::text AS id"
    };
    let mut cols = vec![
        id.to_string(),
        "a.\"ownerId\"::text AS owner".into(),
        "a.\"libraryId\"::text AS library".into(),
        "a.type::text AS type".into(),
        "a.\"originalPath\" AS original".into(),
        "a.checksum AS checksum".into(),
        "(a.\"deletedAt\" IS NOT NULL) AS trashed".into(),
    ];
    cols.push(format!("{} AS path_checksum", path_checksum_expr(s)));
    // Joins, not correlated subqueries: the cursor's plan merge-joins the three id-ordered
    // index scans in one pass, where a subquery per row (an index probe for the size, a
    // sorted ARRAY(...) for the files) cost the server twice the CPU (README, Performance).
    let mut from = format!("{} a", q(s.asset_table));
    match s.exif_table.filter(|_| !merged) {
        Some(e) => {
            from.push_str(&format!(
                " LEFT JOIN {} e ON e.\"assetId\" = a.id AND e.\"assetId\" {{after}}",
                q(e)
            ));
            cols.push("e.\"fileSizeInByte\" AS size".into());
        }
        None if merged => {}
        None => cols.push("NULL::int8 AS size".into()),
    }
    if let Some((p, t)) = s.preview_columns {
        cols.push(format!("a.{} AS preview", q(p)));
        cols.push(format!("a.{} AS thumbnail", q(t)));
    }
    if s.has_encoded_video_column {
        cols.push("a.\"encodedVideoPath\" AS encoded".into());
    }
    if s.has_sidecar_column {
        cols.push("a.\"sidecarPath\" AS sidecar".into());
    }
    // One text[] of "type:edited:path" per asset (NULL when it has no asset_file row).
    if let Some(f) = s.asset_file_table.filter(|_| with_files && !merged) {
        let edited = if s.has_asset_file_is_edited {
            "(CASE WHEN f.\"isEdited\" THEN '1' ELSE '0' END)"
        } else {
            "'0'"
        };
        from.push_str(&format!(
            // COALESCE: one NULL path must not turn the whole item NULL.
            " LEFT JOIN (SELECT f.\"assetId\", array_agg(COALESCE(f.type::text, '') || ':' || \
             {edited} || ':' || COALESCE(f.path, '')) AS files \
             FROM {} f WHERE f.\"assetId\" {{after}} GROUP BY f.\"assetId\") fa \
             ON fa.\"assetId\" = a.id",
            q(f)
        ));
        cols.push("fa.files AS files".into());
    }
    (format!("SELECT {}", cols.join(", ")), from)
}

pub(super) fn decode_asset(qs: &Queries, r: &PgRow) -> Result<AssetRow> {
    let cols = asset_columns(qs, r, get(r, "id")?, get(r, "size")?, get_files(r))?;
    Ok(cols.into_row(&qs.kinds))
}

/// The asset table's columns of row `r`, with the id, size and `asset_file` items given
/// (read from the same row by the join, from the companion cursors by the merge).
pub(super) fn asset_columns(
    qs: &Queries,
    r: &PgRow,
    id: String,
    size: Option<i64>,
    files: Option<Vec<String>>,
) -> Result<AssetColumns> {
    let opt = |present: bool, col: &'static str| -> Result<Option<String>> {
        if present {
            get_path(r, col)
        } else {
            Ok(None)
        }
    };
    Ok(AssetColumns {
        id,
        owner: get(r, "owner")?,
        library: get(r, "library")?,
        asset_type: get(r, "type")?,
        checksum: get(r, "checksum")?,
        path_checksum: get(r, "path_checksum")?,
        size,
        trashed: get(r, "trashed")?,
        original: get_path(r, "original")?,
        preview: opt(qs.has_preview_columns, "preview")?,
        thumbnail: opt(qs.has_preview_columns, "thumbnail")?,
        encoded: opt(qs.has_encoded_column, "encoded")?,
        sidecar: opt(qs.has_sidecar_column, "sidecar")?,
        files,
    })
}

pub(super) fn decode_person(_: &Queries, r: &PgRow) -> Result<AssetRow> {
    decode_single(r, Entity::Person, FileKind::PersonThumbnail)
}

pub(super) fn decode_user(_: &Queries, r: &PgRow) -> Result<AssetRow> {
    decode_single(r, Entity::User, FileKind::ProfileImage)
}

/// A part of the database a scan could not check, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UncheckedPart {
    /// `asset`, `person`, `user` or `library`.
    pub part: String,
    /// The server's error for the part's query (e.g. `column "id" does not exist`).
    pub reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyset_filter_lands_in_the_where_clause() {
        let (first, next) = keyset(
            "SELECT x FROM t a LEFT JOIN e ON e.id = a.id AND e.id {after}",
            None,
            "a.id",
            None,
            0,
        );
        assert!(first.ends_with("ON e.id = a.id AND e.id IS NOT NULL ORDER BY a.id"));
        assert!(next.contains("AND e.id > $1::uuid WHERE a.id > $1::uuid ORDER BY a.id"));
        let (_, next) = keyset("SELECT x FROM t a", Some("a.d IS NULL"), "a.id", None, 0);
        assert!(next.ends_with("WHERE (a.d IS NULL) AND a.id > $1::uuid ORDER BY a.id"));
        // Filter placeholders come first; the keyset's own follows them.
        let (first, next) = keyset("SELECT x FROM t a", Some("a.o = ANY($1)"), "a.id", None, 1);
        assert!(first.ends_with("WHERE a.o = ANY($1) ORDER BY a.id"));
        assert!(next.ends_with("a.id > $2::uuid ORDER BY a.id"));
        // v3.2 persons: the pair orders and resumes, the owner bound after the group.
        let (first, next) = keyset("SELECT x FROM person", None, "g", Some("o"), 0);
        assert!(first.ends_with("ORDER BY g, o"));
        assert!(next.ends_with("WHERE (g, o) > ($1::uuid, $2::uuid) ORDER BY g, o"));
    }
}
