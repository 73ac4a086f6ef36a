//! The filters of [`SourceOptions`](super::source::SourceOptions), checked and resolved to typed
//! values, and the WHERE clauses and bound parameters they become.

use crate::db::schema::{q, Schema};
use crate::error::{Error, Result};
use crate::model::FileKind;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgArguments;
use sqlx::postgres::PgConnection;
use sqlx::query::Query;
use sqlx::Postgres;
use uuid::Uuid;

/// A value bound to a filter placeholder.
#[derive(Debug, Clone)]
pub(super) enum Param {
    Uuids(Vec<Uuid>),
    Uuid(Uuid),
    Time(DateTime<Utc>),
}

pub(super) fn bind_all<'q>(
    mut query: Query<'q, Postgres, PgArguments>,
    params: &[Param],
) -> Query<'q, Postgres, PgArguments> {
    for p in params {
        query = match p {
            Param::Uuids(v) => query.bind(v.clone()),
            Param::Uuid(u) => query.bind(*u),
            Param::Time(t) => query.bind(*t),
        };
    }
    query
}

/// The filters of [`SourceOptions`], checked and resolved to typed values.
pub(super) struct Filters {
    pub(super) owners: Option<Vec<Uuid>>,
    pub(super) library: Option<Uuid>,
    pub(super) since: Option<DateTime<Utc>>,
}

impl Filters {
    pub(super) async fn resolve(
        opts: &SourceOptions,
        s: &Schema,
        conn: &mut PgConnection,
    ) -> Result<Filters> {
        let owners = if opts.owners.is_empty() {
            None
        } else {
            let mut ids = Vec::new();
            let mut emails = Vec::new();
            for o in opts
                .owners
                .iter()
                .map(|o| o.trim())
                .filter(|o| !o.is_empty())
            {
                if o.contains('@') {
                    emails.push(o.to_lowercase());
                } else {
                    ids.push(Uuid::parse_str(o).map_err(|_| {
                        Error::InvalidArgument(format!(
                            "owner {o:?} is neither a user id (a UUID) nor an e-mail address"
                        ))
                    })?);
                }
            }
            if !emails.is_empty() {
                let sql = format!(
                    "SELECT lower(email), id FROM {} WHERE lower(email) = ANY($1)",
                    q(s.user_table)
                );
                let found: Vec<(String, Uuid)> = sqlx::query_as(&sql)
                    .bind(&emails)
                    .fetch_all(&mut *conn)
                    .await
                    .map_err(Error::query("resolving owner e-mail addresses"))?;
                for e in &emails {
                    let hits: Vec<Uuid> = found
                        .iter()
                        .filter(|(m, _)| m == e)
                        .map(|(_, id)| *id)
                        .collect();
                    if hits.is_empty() {
                        return Err(Error::InvalidArgument(format!(
                            "no Immich user has the e-mail address {e:?}"
                        )));
                    }
                    ids.extend(hits);
                }
            }
            tracing::debug!(owners = ids.len(), "owner filter resolved");
            Some(ids)
        };
        let library = match &opts.library {
            None => None,
            Some(l) => Some(resolve_library(l.trim(), s, conn).await?),
        };
        if opts.since.is_some() && !s.timestamps.asset {
            return Err(Error::InvalidArgument(format!(
                "table {} has no createdAt/updatedAt columns, so {} cannot select by date",
                s.asset_table,
                crate::error::Hint::Since
            )));
        }
        Ok(Filters {
            owners,
            library,
            since: opts.since,
        })
    }
}

/// A library by id, or by name (exactly one library may hold it; several are named).
async fn resolve_library(l: &str, s: &Schema, conn: &mut PgConnection) -> Result<Uuid> {
    if let Ok(id) = Uuid::parse_str(l) {
        return Ok(id);
    }
    let Some(table) = s.library_table else {
        return Err(Error::InvalidArgument(format!(
            "library {l:?} is not a library id (a UUID), and this schema has no library table \
             to look its name up in"
        )));
    };
    let sql = format!("SELECT id, name FROM {} ORDER BY name, id", q(table));
    let all: Vec<(Uuid, String)> = sqlx::query_as(&sql)
        .fetch_all(&mut *conn)
        .await
        .map_err(Error::query("resolving the library name"))?;
    let hits: Vec<&(Uuid, String)> = all.iter().filter(|(_, n)| n == l).collect();
    match hits.as_slice() {
        [(id, _)] => Ok(*id),
        [] => Err(Error::InvalidArgument(format!(
            "no library is named {l:?}; libraries: {}",
            all.iter()
                .map(|(id, n)| format!("{n:?} ({id})"))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
        many => Err(Error::InvalidArgument(format!(
            "{} libraries are named {l:?}: pass one id of {}",
            many.len(),
            many.iter()
                .map(|(id, _)| id.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// A `WHERE` clause under construction: conditions joined with `AND` and the values bound to
/// their `$n` placeholders, in order.
#[derive(Default, Clone)]
pub(super) struct Where {
    pub(super) parts: Vec<String>,
    pub(super) params: Vec<Param>,
}

impl Where {
    pub(super) fn push(&mut self, sql: impl Into<String>) {
        self.parts.push(sql.into());
    }

    /// Adds a condition with one bound value, written `{}` (possibly more than once) in `sql`.
    pub(super) fn bind(&mut self, sql: &str, p: Param) {
        self.params.push(p);
        let n = self.params.len();
        self.parts.push(sql.replace("{}", &format!("${n}")));
    }

    pub(super) fn sql(&self) -> Option<String> {
        (!self.parts.is_empty()).then(|| self.parts.join(" AND "))
    }
}

/// What to read.
///
/// The filters narrow what is streamed; all of them are applied in SQL with bound parameters.
/// How they treat persons (face thumbnails) and users (profile images), which are streamed
/// after the assets:
///
/// | filter | assets | persons | users |
/// |---|---|---|---|
/// | `owners` | `ownerId` in the set | `ownerId` in the set | `id` in the set |
/// | `library` | `libraryId` equal | skipped | skipped |
/// | `kinds` | only files of those kinds | only with `person_thumbnail` | only with `profile_image` |
/// | `limit` | at most that many rows | unaffected | unaffected |
/// | `since` | `createdAt` or `updatedAt` after | same (skipped when the table lacks them) | same |
/// | `include_trashed` | trashed rows too | n/a | n/a |
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceOptions {
    /// PostgreSQL URL of Immich's database (never printed with its password).
    pub db_url: String,
    /// Rows per page.
    pub batch_size: usize,
    /// Pages buffered ahead of the checker.
    pub prefetch: usize,
    /// Also stream assets in the trash (`deletedAt` set).
    pub include_trashed: bool,
    /// Check only this shard of the rows (see [`Shard`]).
    pub shard: Option<Shard>,
    /// Reconnect attempts after a lost connection (reset, terminated backend, server gone)
    /// before the stream gives up; the count starts again after each delivered page. 0 = fail
    /// on the first lost connection. SQL and permission errors are never retried.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Only these owners: user ids, or e-mail addresses resolved to ids when the stream
    /// opens (an unknown address is an error). Empty: everyone.
    #[serde(default)]
    pub owners: Vec<String>,
    /// Only assets of this external library (its id). Persons and users are skipped.
    #[serde(default)]
    pub library: Option<String>,
    /// Only these file kinds are checked and reported. Empty: every kind.
    #[serde(default)]
    pub kinds: Vec<FileKind>,
    /// At most this many asset rows (the first ones in id order).
    #[serde(default)]
    pub limit: Option<u64>,
    /// Only rows created or updated after this instant.
    #[serde(default)]
    pub since: Option<DateTime<Utc>>,
    /// Count the rows the filters select before streaming (one `count(*)` per table in the
    /// same snapshot), so a progress display can show a total: see [`SourceInfo::total_rows`](crate::SourceInfo::total_rows).
    #[serde(default)]
    pub count_total: bool,
    /// Read an unfiltered scan's assets through the one join query filtered scans use,
    /// instead of three cursors merged by id (for measuring one against the other).
    #[doc(hidden)]
    #[serde(default)]
    pub join_stream: bool,
}

/// `--shard K/N`: N processes, each with its own K in `0..N`, together cover every row exactly
/// once (rows are split by a hash of their id, so each shard gets a fair share of every owner).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// This process's shard, `0..count`.
    pub index: u32,
    /// How many shards there are.
    pub count: u32,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Shard, String> {
        let bad = || {
            format!(
                "{} wants K/N with 0 <= K < N, got {s:?}",
                crate::error::Hint::Shard
            )
        };
        let (k, n) = s.split_once('/').ok_or_else(bad)?;
        let index: u32 = k.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl SourceOptions {
    /// Defaults: 2000 rows per page, 4 pages prefetched, no filter.
    pub fn new(db_url: impl Into<String>) -> SourceOptions {
        SourceOptions {
            db_url: db_url.into(),
            batch_size: 2000,
            prefetch: 4,
            include_trashed: false,
            shard: None,
            retries: default_retries(),
            owners: Vec::new(),
            library: None,
            kinds: Vec::new(),
            limit: None,
            since: None,
            count_total: false,
            join_stream: false,
        }
    }

    /// True when a filter other than the trash and shard settings is set.
    pub fn is_filtered(&self) -> bool {
        !self.owners.is_empty()
            || self.library.is_some()
            || !self.kinds.is_empty()
            || self.limit.is_some()
            || self.since.is_some()
    }

    pub(super) fn wants(&self, kind: FileKind) -> bool {
        self.kinds.is_empty() || self.kinds.contains(&kind)
    }
}

fn default_retries() -> u32 {
    3
}
