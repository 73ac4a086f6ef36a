//! Streams [`AssetRow`]s out of Immich's database in bounded batches.
//!
//! A dedicated thread owns a tokio runtime and one connection inside a
//! `REPEATABLE READ READ ONLY` transaction (one consistent snapshot of a live server, and no
//! write is possible). It pages through the asset table by primary key (keyset pagination, so
//! memory does not grow with the table and a page costs an index range scan) and hands each
//! page to the checker through a bounded channel: when checking falls behind, the query side
//! waits (backpressure) while the next page is already prefetched.

use crate::error::{Error, Result};
use crate::model::{AssetRow, Entity, FileKind, FileRef};
use crate::schema::{q, Schema};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgRow};
use sqlx::{ConnectOptions, Row};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the stream did to survive lost connections. After a reconnect the rest of the rows
/// come from a new snapshot (the old transaction died with its connection), so a report
/// with `count() > 0` spans more than one consistent state of the database.
#[derive(Debug, Default)]
pub struct Resumes {
    count: AtomicU64,
    causes: Mutex<Vec<String>>,
}

impl Resumes {
    /// Successful reconnects.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Why each connection was lost, and where the stream resumed.
    pub fn causes(&self) -> Vec<String> {
        self.causes.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn record(&self, cause: String) {
        self.count.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut c) = self.causes.lock() {
            c.push(cause);
        }
    }
}

/// Is this a lost connection (worth reconnecting for) rather than a refused or wrong query?
/// Connection resets, EOFs and timeouts, a backend terminated by an administrator
/// (SQLSTATE 57P01), a server shutting down or starting (57P02, 57P03) and the connection
/// exception class 08 are; syntax, permission and data errors are not.
pub fn is_connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03")),
        _ => false,
    }
}

fn lost(e: &Error) -> bool {
    match e {
        Error::Query { source, .. } => is_connection_lost(source),
        // A reconnect that cannot reach the server (refused, reset, timed out) is retried too;
        // a refused login is not.
        Error::Connect { source, .. } => is_connection_lost(source),
        _ => false,
    }
}

/// Pause before reconnect attempt `n` (1-based): 250 ms, 500 ms, 1 s, ... at most 8 s.
fn backoff(n: u32) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1u64 << n.saturating_sub(1).min(5)))
}

/// What to read.
#[derive(Debug, Clone)]
pub struct SourceOptions {
    pub db_url: String,
    /// Rows per page.
    pub batch_size: usize,
    /// Pages buffered ahead of the checker.
    pub prefetch: usize,
    pub include_trashed: bool,
    /// Check only this shard of the rows (see [`Shard`]).
    pub shard: Option<Shard>,
    /// Reconnect attempts after a lost connection (reset, terminated backend, server gone)
    /// before the stream gives up; the count starts again after each delivered page. 0 = fail
    /// on the first lost connection. SQL and permission errors are never retried.
    pub retries: u32,
}

/// `--shard K/N`: N processes, each with its own K in `0..N`, together cover every row exactly
/// once (rows are split by a hash of their id, so each shard gets a fair share of every owner).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Shard, String> {
        let bad = || format!("--shard wants K/N with 0 <= K < N, got {s:?}");
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
    pub fn new(db_url: impl Into<String>) -> SourceOptions {
        SourceOptions {
            db_url: db_url.into(),
            batch_size: 2000,
            prefetch: 4,
            include_trashed: false,
            shard: None,
            retries: 3,
        }
    }
}

/// An external library: its id and the container paths it imports from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Library {
    pub id: String,
    pub import_paths: Vec<String>,
}

/// Facts read once before streaming.
#[derive(Debug, Clone)]
pub struct SourceInfo {
    pub schema: Schema,
    /// `system_metadata['MediaLocation'].location`, when Immich saved one.
    pub media_location: Option<String>,
    pub libraries: Vec<Library>,
}

/// A running stream of row batches. Iterating yields pages in primary-key order; an `Err`
/// ends the stream (the database went away, a query failed).
pub struct Source {
    pub info: SourceInfo,
    /// Connections lost and re-opened so far (see [`Resumes`]).
    pub resumes: Arc<Resumes>,
    rx: Receiver<Result<Vec<AssetRow>>>,
    worker: Option<JoinHandle<()>>,
}

impl Source {
    /// Connects, detects the schema and starts streaming.
    pub fn open(opts: SourceOptions) -> Result<Source> {
        let (info_tx, info_rx) = sync_channel::<Result<SourceInfo>>(1);
        let (tx, rx) = sync_channel(opts.prefetch.max(1));
        let resumes = Arc::new(Resumes::default());
        let worker_resumes = resumes.clone();
        let worker = std::thread::Builder::new()
            .name("immich-integrity-source".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = info_tx.send(Err(Error::InvalidArgument(format!(
                            "cannot start the database runtime: {e}"
                        ))));
                        return;
                    }
                };
                rt.block_on(run(opts, info_tx, tx, worker_resumes));
            })
            .map_err(|e| Error::InvalidArgument(format!("cannot spawn source thread: {e}")))?;
        let info = info_rx
            .recv()
            .unwrap_or_else(|_| Err(Error::InvalidArgument("source thread ended early".into())))?;
        Ok(Source {
            info,
            resumes,
            rx,
            worker: Some(worker),
        })
    }
}

/// What [`Source::next_within`] saw.
#[derive(Debug)]
pub enum Next {
    Batch(Result<Vec<AssetRow>>),
    /// Nothing arrived in time; the query is still running.
    Pending,
    End,
}

impl Source {
    /// Waits at most `timeout` for the next page, so a caller can notice an interrupt even
    /// while the database is slow or blocked by a lock.
    pub fn next_within(&mut self, timeout: Duration) -> Next {
        match self.rx.recv_timeout(timeout) {
            Ok(b) => Next::Batch(b),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Next::Pending,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Next::End,
        }
    }
}

impl Iterator for Source {
    type Item = Result<Vec<AssetRow>>;
    fn next(&mut self) -> Option<Self::Item> {
        self.rx.recv().ok()
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        // Dropping the receiver makes the producer's next send fail, so it stops. Join it only
        // when it has already finished: a query blocked in the server must not block our exit.
        let (_, rx) = sync_channel(0);
        drop(std::mem::replace(&mut self.rx, rx));
        if let Some(w) = self.worker.take() {
            if w.is_finished() {
                let _ = w.join();
            }
        }
    }
}

/// Connects with a bounded timeout; the URL's password never reaches an error message.
pub async fn connect(url: &str) -> Result<PgConnection> {
    let shown = redact_url(url);
    let opts = PgConnectOptions::from_str(url).map_err(|e| Error::Connect {
        url: shown.clone(),
        source: e,
    })?;
    let opts = opts
        .application_name("immich-integrity")
        .disable_statement_logging();
    match tokio::time::timeout(Duration::from_secs(15), opts.connect()).await {
        Ok(r) => r.map_err(|e| Error::Connect {
            url: shown,
            source: e,
        }),
        Err(_) => Err(Error::Connect {
            url: shown,
            source: sqlx::Error::PoolTimedOut,
        }),
    }
}

/// `postgres://user:secret@host/db` -> `postgres://user:***@host/db`; a `password=` query
/// parameter is masked too.
pub fn redact_url(url: &str) -> String {
    if !url.contains("://") {
        // Not a URL (a key=value string, a typo): it may hold a password anywhere.
        return "(the given database URL, not shown: it is not a postgres:// URL)".into();
    }
    let (url, query) = match url.split_once('?') {
        Some((u, q)) => (u, Some(q)),
        None => (url, None),
    };
    let query = query.map(|q| {
        let parts: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => kv.to_string(),
            })
            .collect();
        format!("?{}", parts.join("&"))
    });
    let mut out = redact_userinfo(url);
    out.push_str(query.as_deref().unwrap_or(""));
    out
}

fn redact_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (auth, host) = match rest.rsplit_once('@') {
        Some(x) => x,
        None => return url.to_string(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

async fn run(
    opts: SourceOptions,
    info_tx: SyncSender<Result<SourceInfo>>,
    tx: SyncSender<Result<Vec<AssetRow>>>,
    resumes: Arc<Resumes>,
) {
    let mut conn = match open_snapshot(&opts.db_url).await {
        Ok(c) => c,
        Err(e) => {
            let _ = info_tx.send(Err(e));
            return;
        }
    };
    let info = match read_info(&mut conn).await {
        Ok(i) => i,
        Err(e) => {
            let _ = info_tx.send(Err(e));
            return;
        }
    };
    let queries = Queries::new(&info.schema, opts.include_trashed, opts.shard);
    if info_tx.send(Ok(info)).is_err() {
        return;
    }
    // Reconnect attempts since the last delivered page.
    let mut attempts = 0u32;
    for (name, sql_first, sql_next, decode) in queries.pages() {
        // The last id delivered in this phase: the keyset resumes right after it.
        let mut after: Option<String> = None;
        loop {
            let limit = opts.batch_size as i64;
            let res = match &after {
                None => {
                    sqlx::query(sql_first)
                        .bind(limit)
                        .fetch_all(&mut conn)
                        .await
                }
                Some(id) => {
                    sqlx::query(sql_next)
                        .bind(id)
                        .bind(limit)
                        .fetch_all(&mut conn)
                        .await
                }
            };
            let rows = match res {
                Ok(rows) => rows,
                Err(e) => {
                    let err = Error::Query {
                        context: "streaming rows",
                        source: e,
                    };
                    match reconnect(&opts, err, &mut attempts).await {
                        Ok((c, cause)) => {
                            conn = c;
                            let at = match &after {
                                Some(id) => format!("after {name} {id}"),
                                None => format!("at the first {name} row"),
                            };
                            resumes.record(format!("{cause}; resumed {at} in a new snapshot"));
                            continue;
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    }
                }
            };
            let n = rows.len();
            let batch: Result<Vec<AssetRow>> = rows.iter().map(|r| decode(&queries, r)).collect();
            let batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            after = batch.last().map(|r| r.id.clone()).or(after);
            if !batch.is_empty() {
                if tx.send(Ok(batch)).is_err() {
                    return; // the consumer stopped
                }
                attempts = 0;
            }
            if n < opts.batch_size {
                break;
            }
        }
    }
    let _ = sqlx::query("COMMIT").execute(&mut conn).await;
}

/// After a lost connection: waits, reconnects and opens a new snapshot, up to
/// `opts.retries` attempts since the last delivered page. Returns the new connection and
/// what was lost, or the error that ends the stream (naming the cause and the attempts).
async fn reconnect(
    opts: &SourceOptions,
    err: Error,
    attempts: &mut u32,
) -> Result<(PgConnection, String)> {
    if !lost(&err) {
        return Err(err);
    }
    let cause = format!("connection lost ({err})");
    let mut last = err;
    loop {
        if *attempts >= opts.retries {
            return Err(if opts.retries == 0 {
                last
            } else {
                Error::ConnectionLost(format!(
                    "{cause}; gave up after {} reconnect attempts, the last: {last}",
                    opts.retries
                ))
            });
        }
        *attempts += 1;
        tokio::time::sleep(backoff(*attempts)).await;
        match open_snapshot(&opts.db_url).await {
            Ok(c) => return Ok((c, cause)),
            Err(e) if lost(&e) => last = e,
            Err(e) => return Err(e),
        }
    }
}

async fn open_snapshot(url: &str) -> Result<PgConnection> {
    let mut conn = connect(url).await?;
    sqlx::query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut conn)
        .await
        .map_err(Error::query("starting a read-only snapshot"))?;
    Ok(conn)
}

/// Detects the schema and reads the small tables needed before streaming.
pub async fn read_info(conn: &mut PgConnection) -> Result<SourceInfo> {
    let schema = Schema::detect(conn).await?;
    let media_location = if schema.has_media_location_table {
        sqlx::query_scalar::<_, Option<String>>(
            "SELECT value->>'location' FROM system_metadata WHERE key = 'MediaLocation'",
        )
        .fetch_optional(&mut *conn)
        .await
        .map_err(Error::query("reading MediaLocation"))?
        .flatten()
    } else {
        None
    };
    let libraries = match schema.library_table {
        Some(t) => {
            let sql = format!(
                "SELECT id::text, COALESCE(\"importPaths\", '{{}}') FROM {} ORDER BY id",
                q(t)
            );
            sqlx::query_as::<_, (String, Vec<String>)>(&sql)
                .fetch_all(&mut *conn)
                .await
                .map_err(Error::query("reading libraries"))?
                .into_iter()
                .map(|(id, import_paths)| Library { id, import_paths })
                .collect()
        }
        None => Vec::new(),
    };
    Ok(SourceInfo {
        schema,
        media_location,
        libraries,
    })
}

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

type Decode = fn(&Queries, &PgRow) -> Result<AssetRow>;

/// The SQL for each kind of row, built once from the detected schema's fixed identifiers.
struct Queries {
    assets: (String, String),
    persons: Option<(String, String)>,
    users: (String, String),
    has_preview_columns: bool,
    has_encoded_column: bool,
    has_sidecar_column: bool,
}

/// First-page and next-page variants of a keyset query over `id`.
fn keyset(select_from: &str, filter: Option<&str>, id: &str) -> (String, String) {
    let (first, next) = match filter {
        Some(f) => (format!(" WHERE {f}"), format!(" WHERE ({f}) AND")),
        None => (String::new(), " WHERE".to_string()),
    };
    (
        format!("{select_from}{first} ORDER BY {id} LIMIT $1"),
        format!("{select_from}{next} {id} > $1::uuid ORDER BY {id} LIMIT $2"),
    )
}

impl Queries {
    fn new(s: &Schema, include_trashed: bool, shard: Option<Shard>) -> Queries {
        // Shard membership by a hash of the id: every row lands in exactly one of N shards.
        let in_shard = |id: &str| {
            shard.map(|sh| {
                format!(
                    "mod(abs(hashtext({id}::text)::bigint), {}) = {}",
                    sh.count, sh.index
                )
            })
        };
        let all = |parts: Vec<Option<String>>| -> Option<String> {
            let parts: Vec<String> = parts.into_iter().flatten().collect();
            (!parts.is_empty()).then(|| parts.join(" AND "))
        };
        let mut cols = vec![
            "a.id::text AS id".to_string(),
            "a.\"ownerId\"::text AS owner".into(),
            "a.\"libraryId\"::text AS library".into(),
            "a.type::text AS type".into(),
            "a.\"originalPath\" AS original".into(),
            "a.checksum AS checksum".into(),
            "(a.\"deletedAt\" IS NOT NULL) AS trashed".into(),
        ];
        cols.push(format!("{} AS path_checksum", path_checksum_expr(s)));
        let mut from = format!("{} a", q(s.asset_table));
        match s.exif_table {
            Some(e) => {
                cols.push("e.\"fileSizeInByte\" AS size".into());
                from.push_str(&format!(" LEFT JOIN {} e ON e.\"assetId\" = a.id", q(e)));
            }
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
        // One text[] of "type:edited:path" keeps a page to one round trip.
        if let Some(f) = s.asset_file_table {
            let edited = if s.has_asset_file_is_edited {
                "(CASE WHEN f.\"isEdited\" THEN '1' ELSE '0' END)"
            } else {
                "'0'"
            };
            cols.push(format!(
                // COALESCE: one NULL path must not turn the whole array unreadable.
                "ARRAY(SELECT COALESCE(f.type::text, '') || ':' || {edited} || ':' || \
                 COALESCE(f.path, '') FROM {} f \
                 WHERE f.\"assetId\" = a.id ORDER BY f.type, f.path) AS files",
                q(f)
            ));
        }
        let base = format!("SELECT {} FROM {from}", cols.join(", "));
        let asset_filter = all(vec![
            (!include_trashed).then(|| "a.\"deletedAt\" IS NULL".to_string()),
            in_shard("a.id"),
        ]);
        let person_filter = all(vec![Some("\"thumbnailPath\" <> ''".into()), in_shard("id")]);
        let user_filter = all(vec![
            Some("\"profileImagePath\" <> ''".into()),
            in_shard("id"),
        ]);
        let persons = s.has_person.then(|| {
            keyset(
                "SELECT id::text AS id, \"ownerId\"::text AS owner, \"thumbnailPath\" AS path \
                 FROM person",
                person_filter.as_deref(),
                "id",
            )
        });
        let users = keyset(
            &format!(
                "SELECT id::text AS id, id::text AS owner, \"profileImagePath\" AS path FROM {}",
                q(s.user_table)
            ),
            user_filter.as_deref(),
            "id",
        );
        Queries {
            assets: keyset(&base, asset_filter.as_deref(), "a.id"),
            persons,
            users,
            has_preview_columns: s.preview_columns.is_some(),
            has_encoded_column: s.has_encoded_video_column,
            has_sidecar_column: s.has_sidecar_column,
        }
    }

    /// The phases of a stream, in order: (name, first-page SQL, next-page SQL, decoder).
    fn pages(&self) -> Vec<(&'static str, &str, &str, Decode)> {
        let mut v: Vec<(&'static str, &str, &str, Decode)> =
            vec![("asset", &self.assets.0, &self.assets.1, decode_asset)];
        if let Some(p) = &self.persons {
            v.push(("person", &p.0, &p.1, decode_person));
        }
        v.push(("user", &self.users.0, &self.users.1, decode_user));
        v
    }
}

fn get<'r, T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>>(
    r: &'r PgRow,
    col: &'static str,
) -> Result<T> {
    r.try_get(col).map_err(Error::query(col))
}

fn push_path(files: &mut Vec<FileRef>, kind: FileKind, path: Option<String>) {
    if let Some(p) = path.filter(|p| !p.is_empty()) {
        files.push(FileRef {
            kind,
            db_path: p,
            edited: false,
        });
    }
}

fn decode_asset(qs: &Queries, r: &PgRow) -> Result<AssetRow> {
    let mut files = Vec::with_capacity(4);
    // An empty originalPath is still a reference: report it instead of skipping it.
    files.push(FileRef {
        kind: FileKind::Original,
        db_path: get::<Option<String>>(r, "original")?.unwrap_or_default(),
        edited: false,
    });
    if qs.has_preview_columns {
        push_path(&mut files, FileKind::Preview, get(r, "preview")?);
        push_path(&mut files, FileKind::Thumbnail, get(r, "thumbnail")?);
    }
    if qs.has_encoded_column {
        push_path(&mut files, FileKind::EncodedVideo, get(r, "encoded")?);
    }
    if qs.has_sidecar_column {
        push_path(&mut files, FileKind::Sidecar, get(r, "sidecar")?);
    }
    if let Ok(list) = r.try_get::<Vec<String>, _>("files") {
        for item in list {
            let mut parts = item.splitn(3, ':');
            let (Some(t), Some(e), Some(p)) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            // Unknown future types are skipped rather than guessed at.
            // An asset_file row with a NULL or empty path is reported (missing, "empty path"),
            // like an empty originalPath.
            if let Some(kind) = FileKind::from_asset_file_type(t) {
                files.push(FileRef {
                    kind,
                    db_path: p.to_string(),
                    edited: e == "1",
                });
            }
        }
    }
    Ok(AssetRow {
        entity: Entity::Asset,
        id: get(r, "id")?,
        owner_id: get(r, "owner")?,
        library_id: get(r, "library")?,
        asset_type: get::<Option<String>>(r, "type")?.unwrap_or_default(),
        checksum: get(r, "checksum")?,
        checksum_is_of_path: get::<Option<bool>>(r, "path_checksum")?.unwrap_or(false),
        original_size: get::<Option<i64>>(r, "size")?.and_then(|s| u64::try_from(s).ok()),
        trashed: get(r, "trashed")?,
        files,
    })
}

fn decode_single(r: &PgRow, entity: Entity, kind: FileKind) -> Result<AssetRow> {
    Ok(AssetRow {
        entity,
        id: get(r, "id")?,
        owner_id: get(r, "owner")?,
        library_id: None,
        asset_type: String::new(),
        checksum: None,
        checksum_is_of_path: false,
        original_size: None,
        trashed: false,
        files: vec![FileRef {
            kind,
            db_path: get(r, "path")?,
            edited: false,
        }],
    })
}

fn decode_person(_: &Queries, r: &PgRow) -> Result<AssetRow> {
    decode_single(r, Entity::Person, FileKind::PersonThumbnail)
}

fn decode_user(_: &Queries, r: &PgRow) -> Result<AssetRow> {
    decode_single(r, Entity::User, FileKind::ProfileImage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyset_filter_lands_in_the_where_clause() {
        let (first, next) = keyset("SELECT x FROM t a LEFT JOIN e ON e.id = a.id", None, "a.id");
        assert!(first.ends_with("LEFT JOIN e ON e.id = a.id ORDER BY a.id LIMIT $1"));
        assert!(next.contains("a.id WHERE a.id > $1::uuid"));
        let (_, next) = keyset("SELECT x FROM t a", Some("a.d IS NULL"), "a.id");
        assert!(next.ends_with("WHERE (a.d IS NULL) AND a.id > $1::uuid ORDER BY a.id LIMIT $2"));
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://immich:s3cret@db:5432/immich"),
            "postgres://immich:***@db:5432/immich"
        );
        assert_eq!(
            redact_url("postgres://postgres@h/db"),
            "postgres://postgres@h/db"
        );
        assert!(!redact_url("host=h password=s3cret").contains("s3cret"));
        assert_eq!(
            redact_url("postgres://u@h/db?sslmode=require&password=s3cret"),
            "postgres://u@h/db?sslmode=require&password=***"
        );
        assert_eq!(
            redact_url("postgres://u:p@ss@h/db?password=x"),
            "postgres://u:***@h/db?password=***"
        );
    }
}
