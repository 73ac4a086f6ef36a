//! Streams [`AssetRow`]s out of Immich's database in bounded batches.
//!
//! A dedicated thread owns a tokio runtime and one connection inside a
//! `REPEATABLE READ READ ONLY` transaction (one consistent snapshot of a live server, and no
//! write is possible). It reads the asset table in primary-key order through a server-side
//! cursor, `FETCH`ing a page at a time (memory does not grow with the table, and the server
//! runs one merge-join plan instead of a query per page), and hands each page to the checker
//! through a bounded channel: when checking falls behind, the query side waits
//! (backpressure) while the next page is already prefetched. After a lost connection the
//! cursor is declared again on a new snapshot, starting after the last id delivered.

use crate::db::schema::{q, PersonKey, Schema};
use crate::error::{Error, Result};
use crate::model::{AssetRow, Entity, FileKind, FileRef};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgArguments;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgRow};
use sqlx::query::Query;
use sqlx::Postgres;
use sqlx::{ConnectOptions, Row};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use uuid::Uuid;

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
    /// same snapshot), so a progress display can show a total: see [`SourceInfo::total_rows`].
    #[serde(default)]
    pub count_total: bool,
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

    fn wants(&self, kind: FileKind) -> bool {
        self.kinds.is_empty() || self.kinds.contains(&kind)
    }
}

fn default_retries() -> u32 {
    3
}

/// An external library: its id and the container paths it imports from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Library {
    /// `library.id`.
    pub id: String,
    /// `importPaths`: container folders the library imports from.
    pub import_paths: Vec<String>,
}

/// Facts read once before streaming.
#[derive(Debug, Clone, Serialize)]
pub struct SourceInfo {
    /// The detected schema generation.
    pub schema: Schema,
    /// `system_metadata['MediaLocation'].location`, when Immich saved one.
    pub media_location: Option<String>,
    /// Every external library (whatever the filters).
    pub libraries: Vec<Library>,
    /// Rows the filters select (assets, persons and users), when
    /// [`SourceOptions::count_total`] asked for it.
    pub total_rows: Option<u64>,
}

/// A part of the database a scan could not check, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UncheckedPart {
    /// `asset`, `person`, `user` or `library`.
    pub part: String,
    /// The server's error for the part's query (e.g. `column "id" does not exist`).
    pub reason: String,
}

/// A running stream of row batches. Iterating yields pages in primary-key order; an `Err`
/// ends the stream (the database went away, a query failed).
pub struct Source {
    /// What was read before streaming started.
    pub info: SourceInfo,
    /// Connections lost and re-opened so far (see [`Resumes`]).
    pub resumes: Arc<Resumes>,
    unchecked: Arc<Mutex<Vec<UncheckedPart>>>,
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
        let unchecked = Arc::new(Mutex::new(Vec::new()));
        let worker_unchecked = unchecked.clone();
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
                rt.block_on(run(opts, info_tx, tx, worker_resumes, worker_unchecked));
            })
            .map_err(|e| Error::InvalidArgument(format!("cannot spawn source thread: {e}")))?;
        let info = info_rx
            .recv()
            .unwrap_or_else(|_| Err(Error::InvalidArgument("source thread ended early".into())))?;
        Ok(Source {
            info,
            resumes,
            unchecked,
            rx,
            worker: Some(worker),
        })
    }
}

/// What [`Source::next_within`] saw.
#[derive(Debug)]
pub enum Next {
    /// A page of rows, or the error that ended the stream.
    Batch(Result<Vec<AssetRow>>),
    /// Nothing arrived in time; the query is still running.
    Pending,
    /// Every page was delivered.
    End,
}

impl Source {
    /// Parts of the database whose query does not fit this schema (a dropped or renamed
    /// column): they are not streamed, the others are. Complete once the stream has ended.
    pub fn unchecked(&self) -> Vec<UncheckedPart> {
        self.unchecked.lock().map(|u| u.clone()).unwrap_or_default()
    }

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

/// `postgres://user:secret@host/db` -> `postgres://user:***@host/db`.
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
    unchecked: Arc<Mutex<Vec<UncheckedPart>>>,
) {
    let mut conn = match open_snapshot(&opts.db_url).await {
        Ok(c) => c,
        Err(e) => {
            let _ = info_tx.send(Err(e));
            return;
        }
    };
    let prepared = async {
        let mut info = read_info(&mut conn).await?;
        let filters = Filters::resolve(&opts, &info.schema, &mut conn).await?;
        let mut queries = Queries::new(&info.schema, &opts, &filters);
        // Counting needs queries that fit; otherwise the check waits for the stream, where a
        // blocked or interrupted server is noticed like any other wait for rows.
        if opts.count_total {
            record(&unchecked, queries.drop_unfit(&mut conn).await?);
            info.total_rows = Some(queries.count(&mut conn).await?);
        }
        Ok::<_, Error>((info, queries))
    };
    let (info, queries) = match prepared.await {
        Ok(x) => x,
        Err(e) => {
            let _ = info_tx.send(Err(e));
            return;
        }
    };
    if info_tx.send(Ok(info)).is_err() {
        return;
    }
    // Reconnect attempts since the last delivered page.
    let mut attempts = 0u32;
    let mut queries = queries;
    let mut index = 0;
    while index < queries.pages.len() {
        // Each part's queries are prepared just before it streams (parts already checked
        // for the count are not prepared again): a part that does not fit is reported and
        // skipped, and a server that blocks or drops us here is handled like any wait for rows.
        if !queries.pages[index].fitted {
            match queries.fit(index, &mut conn).await {
                Ok(Fit::Fits) => {}
                Ok(Fit::Narrowed(part)) => record(&unchecked, vec![part]),
                Ok(Fit::Unfit(part)) => {
                    record(&unchecked, vec![part]);
                    queries.pages.remove(index);
                    continue;
                }
                Err(err) => match reconnect(&opts, err, &mut attempts).await {
                    Ok((c, cause)) => {
                        conn = c;
                        resumes.record(format!(
                            "{cause}; resumed at the first {} row in a new snapshot",
                            queries.pages[index].name
                        ));
                        continue;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                },
            }
        }
        let page = &queries.pages[index];
        index += 1;
        // The last id delivered in this phase: after a reconnect the cursor is declared
        // again, to start right after it.
        let mut after: Option<(String, String)> = None;
        let mut declared = false;
        let mut left = page.limit.unwrap_or(u64::MAX);
        while left > 0 {
            let batch_size = (opts.batch_size as u64).min(left);
            let res = async {
                if !declared {
                    page.declare(&mut conn, after.as_ref()).await?;
                    declared = true;
                }
                page.fetch(&mut conn, batch_size).await
            }
            .await;
            let rows = match res {
                Ok(rows) => rows,
                Err(err) => match reconnect(&opts, err, &mut attempts).await {
                    Ok((c, cause)) => {
                        conn = c;
                        declared = false;
                        let at = match &after {
                            Some((id, _)) => format!("after {} {id}", page.name),
                            None => format!("at the first {} row", page.name),
                        };
                        resumes.record(format!("{cause}; resumed {at} in a new snapshot"));
                        continue;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                },
            };
            let n = rows.len();
            let batch: Result<Vec<AssetRow>> =
                rows.iter().map(|r| (page.decode)(&queries, r)).collect();
            let batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            after = batch
                .last()
                .map(|r| (r.id.clone(), r.owner_id.clone()))
                .or(after);
            if !batch.is_empty() {
                if tx.send(Ok(batch)).is_err() {
                    return; // the consumer stopped
                }
                attempts = 0;
            }
            left -= n as u64;
            if (n as u64) < batch_size {
                break;
            }
        }
        if declared {
            let _ = page.close(&mut conn).await;
        }
    }
    let _ = sqlx::query("COMMIT").execute(&mut conn).await;
}

fn record(list: &Mutex<Vec<UncheckedPart>>, parts: Vec<UncheckedPart>) {
    if let Ok(mut l) = list.lock() {
        l.extend(parts);
    }
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

/// Every statement a scan (and `orphans`, which streams the same rows) runs against this
/// schema, labelled, for `doctor` to prepare.
pub(crate) fn statements(schema: &Schema) -> Vec<(String, String)> {
    let opts = SourceOptions::new(String::new());
    let filters = Filters {
        owners: None,
        library: None,
        since: None,
    };
    let queries = Queries::new(schema, &opts, &filters);
    let mut out = Vec::new();
    for p in &queries.pages {
        for (what, sql) in [("rows", &p.first), ("resume", &p.next), ("count", &p.count)] {
            out.push((format!("scan/orphans: {} {what}", p.name), sql.clone()));
        }
    }
    out
}

/// Prepares each statement without running it (inside a savepoint, so a failure does not
/// abort the caller's transaction). `Err` carries the server's message for the first that
/// does not compile; a lost connection is an error of its own kind, not drift.
pub(crate) async fn prepare_all(
    conn: &mut PgConnection,
    sqls: &[&str],
) -> Result<std::result::Result<(), String>> {
    use sqlx::Executor;
    let exec = |c: &'static str| sqlx::query(c).persistent(false);
    // A failed Parse aborts the whole transaction (the scan's snapshot): fence it.
    exec("SAVEPOINT immich_integrity_prepare")
        .execute(&mut *conn)
        .await
        .map_err(Error::query("preparing the queries"))?;
    let mut res = Ok(());
    for sql in sqls {
        match (&mut *conn).prepare(sql).await {
            Ok(_) => {}
            Err(e) if is_connection_lost(&e) => {
                return Err(Error::query("preparing the queries")(e));
            }
            Err(e) => {
                res = Err(server_message(&e));
                break;
            }
        }
    }
    let end = if res.is_ok() {
        "RELEASE SAVEPOINT immich_integrity_prepare"
    } else {
        "ROLLBACK TO SAVEPOINT immich_integrity_prepare"
    };
    exec(end)
        .execute(&mut *conn)
        .await
        .map_err(Error::query("preparing the queries"))?;
    Ok(res)
}

/// The server's own words for a failed statement (`column "id" does not exist`), or the
/// client error.
pub(crate) fn server_message(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(d) => d.message().to_string(),
        other => other.to_string(),
    }
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
        total_rows: None,
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

/// A value bound to a filter placeholder.
#[derive(Debug, Clone)]
enum Param {
    Uuids(Vec<Uuid>),
    Uuid(Uuid),
    Time(DateTime<Utc>),
}

fn bind_all<'q>(
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
struct Filters {
    owners: Option<Vec<Uuid>>,
    library: Option<Uuid>,
    since: Option<DateTime<Utc>>,
}

impl Filters {
    async fn resolve(opts: &SourceOptions, s: &Schema, conn: &mut PgConnection) -> Result<Filters> {
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
            Some(l) => Some(Uuid::parse_str(l.trim()).map_err(|_| {
                Error::InvalidArgument(format!("library {l:?} is not a library id (a UUID)"))
            })?),
        };
        if opts.since.is_some() && !s.timestamps.asset {
            return Err(Error::InvalidArgument(format!(
                "table {} has no createdAt/updatedAt columns, so --since cannot select by date",
                s.asset_table
            )));
        }
        Ok(Filters {
            owners,
            library,
            since: opts.since,
        })
    }
}

/// A `WHERE` clause under construction: conditions joined with `AND` and the values bound to
/// their `$n` placeholders, in order.
#[derive(Default, Clone)]
struct Where {
    parts: Vec<String>,
    params: Vec<Param>,
}

impl Where {
    fn push(&mut self, sql: impl Into<String>) {
        self.parts.push(sql.into());
    }

    /// Adds a condition with one bound value, written `{}` (possibly more than once) in `sql`.
    fn bind(&mut self, sql: &str, p: Param) {
        self.params.push(p);
        let n = self.params.len();
        self.parts.push(sql.replace("{}", &format!("${n}")));
    }

    fn sql(&self) -> Option<String> {
        (!self.parts.is_empty()).then(|| self.parts.join(" AND "))
    }
}

/// One keyset-paged query: its first and next page SQL, its row count, the values bound to
/// its filter placeholders, how many rows at most, and how to decode a row.
struct Page {
    /// `asset`, `person` or `user`: names the phase in resume messages.
    name: &'static str,
    first: String,
    next: String,
    count: String,
    params: Vec<Param>,
    limit: Option<u64>,
    decode: Decode,
    /// The key is `(id, owner)` (v3.2 persons): a resume binds the owner too.
    keyed_by_owner: bool,
    /// Its queries were prepared and fit this database.
    fitted: bool,
}

impl Page {
    /// `count_from` is `from` without joins that cannot change the count.
    fn new(
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
        }
    }

    /// Its three statements.
    fn sqls(&self) -> [&str; 3] {
        [&self.first, &self.next, &self.count]
    }

    /// Opens this page's cursor on the rows after `after` (its id and owner; from the first
    /// when `None`).
    async fn declare(
        &self,
        conn: &mut PgConnection,
        after: Option<&(String, String)>,
    ) -> Result<()> {
        let (sql, key) = match after {
            None => (&self.first, None),
            Some(k) => (&self.next, Some(k)),
        };
        let sql = format!("DECLARE {} NO SCROLL CURSOR FOR {sql}", self.cursor());
        let mut query = bind_all(sqlx::query(&sql), &self.params).persistent(false);
        if let Some((id, owner)) = key {
            query = query.bind(id);
            if self.keyed_by_owner {
                query = query.bind(owner);
            }
        }
        query
            .execute(conn)
            .await
            .map_err(Error::query("streaming rows"))?;
        Ok(())
    }

    /// The next `n` rows of the open cursor.
    async fn fetch(&self, conn: &mut PgConnection, n: u64) -> Result<Vec<PgRow>> {
        let sql = format!("FETCH FORWARD {n} FROM {}", self.cursor());
        sqlx::query(&sql)
            .persistent(false)
            .fetch_all(conn)
            .await
            .map_err(Error::query("streaming rows"))
    }

    async fn close(&self, conn: &mut PgConnection) -> Result<()> {
        sqlx::query(&format!("CLOSE {}", self.cursor()))
            .persistent(false)
            .execute(conn)
            .await
            .map_err(Error::query("closing the row cursor"))?;
        Ok(())
    }

    /// One cursor name per phase: a FETCH described for one phase's columns is never run
    /// against another's.
    fn cursor(&self) -> String {
        format!("immich_integrity_{}", self.name)
    }
}

/// What preparing a page's queries showed.
enum Fit {
    /// They compile.
    Fits,
    /// The asset page fits only without its `asset_file` join: derived files go unchecked.
    Narrowed(UncheckedPart),
    /// They do not compile: the part goes unchecked.
    Unfit(UncheckedPart),
}

/// The SQL for each kind of row, built once from the detected schema's fixed identifiers.
struct Queries {
    pages: Vec<Page>,
    /// The asset page without the `asset_file` join: used when the full one does not fit
    /// (a dropped `asset_file` column), so originals are still checked.
    assets_without_files: Option<Page>,
    /// File kinds to keep (empty: all).
    kinds: Vec<FileKind>,
    has_preview_columns: bool,
    has_encoded_column: bool,
    has_sidecar_column: bool,
}

/// The cursor query from the first row and the one resuming after an id (`$nparams+1`), for a
/// `select_from` with `nparams` filter placeholders. `{after}` in `select_from` (after a
/// joined table's id column) becomes the same condition, so that the joined tables' index
/// scans start at that id too instead of at their first row. With `owner` (a second key
/// column, for v3.2 persons keyed by group and owner) the order and the resume condition
/// are on the pair, the owner bound as `$nparams+2`.
fn keyset(
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
    fn new(s: &Schema, opts: &SourceOptions, f: &Filters) -> Queries {
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
            let page = |with_files: bool, w: Where| {
                let (select, from) = asset_select(s, with_files);
                Page::new(
                    (&select, &from, &count_from),
                    w,
                    ("a.id", None),
                    opts.limit,
                    ("asset", decode_asset),
                )
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
    async fn fit(&mut self, i: usize, conn: &mut PgConnection) -> Result<Fit> {
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
    async fn drop_unfit(&mut self, conn: &mut PgConnection) -> Result<Vec<UncheckedPart>> {
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
    async fn count(&self, conn: &mut PgConnection) -> Result<u64> {
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

/// The asset page's select list and `FROM` clause (alias `a`).
fn asset_select(s: &Schema, with_files: bool) -> (String, String) {
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
    // Joins, not correlated subqueries: the cursor's plan merge-joins the three id-ordered
    // index scans in one pass, where a subquery per row (an index probe for the size, a
    // sorted ARRAY(...) for the files) cost the server twice the CPU (README, Performance).
    let mut from = format!("{} a", q(s.asset_table));
    match s.exif_table {
        Some(e) => {
            from.push_str(&format!(
                " LEFT JOIN {} e ON e.\"assetId\" = a.id AND e.\"assetId\" {{after}}",
                q(e)
            ));
            cols.push("e.\"fileSizeInByte\" AS size".into());
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
    // One text[] of "type:edited:path" per asset (NULL when it has no asset_file row).
    if let Some(f) = s.asset_file_table.filter(|_| with_files) {
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
    let opt = |present: bool, col: &'static str| -> Result<Option<String>> {
        if present {
            get(r, col)
        } else {
            Ok(None)
        }
    };
    let cols = AssetColumns {
        id: get(r, "id")?,
        owner: get(r, "owner")?,
        library: get(r, "library")?,
        asset_type: get(r, "type")?,
        checksum: get(r, "checksum")?,
        path_checksum: get(r, "path_checksum")?,
        size: get(r, "size")?,
        trashed: get(r, "trashed")?,
        original: get(r, "original")?,
        preview: opt(qs.has_preview_columns, "preview")?,
        thumbnail: opt(qs.has_preview_columns, "thumbnail")?,
        encoded: opt(qs.has_encoded_column, "encoded")?,
        sidecar: opt(qs.has_sidecar_column, "sidecar")?,
        files: r.try_get::<Vec<String>, _>("files").ok(),
    };
    Ok(cols.into_row(&qs.kinds))
}

/// One row of the asset page query, its columns decoded but not yet interpreted. Public for
/// the micro-benchmarks (`benches/hot.rs`), which build rows without a database.
#[doc(hidden)]
#[derive(Debug, Clone, Default)]
pub struct AssetColumns {
    /// `id`.
    pub id: String,
    /// `ownerId`.
    pub owner: String,
    /// `libraryId`.
    pub library: Option<String>,
    /// `type`.
    pub asset_type: Option<String>,
    /// `checksum`.
    pub checksum: Option<Vec<u8>>,
    /// Whether the checksum is of the path.
    pub path_checksum: Option<bool>,
    /// `fileSizeInByte` of the exif row.
    pub size: Option<i64>,
    /// `deletedAt` is set.
    pub trashed: bool,
    /// `originalPath`.
    pub original: Option<String>,
    /// `previewPath` (schemas before `asset_file`).
    pub preview: Option<String>,
    /// `thumbnailPath` (schemas before `asset_file`).
    pub thumbnail: Option<String>,
    /// `encodedVideoPath`.
    pub encoded: Option<String>,
    /// `sidecarPath`.
    pub sidecar: Option<String>,
    /// The `asset_file` rows as `"type:edited:path"` strings.
    pub files: Option<Vec<String>>,
}

impl AssetColumns {
    /// The row a scan checks; `kinds` keeps only those file kinds (empty: all).
    pub fn into_row(self, kinds: &[FileKind]) -> AssetRow {
        let mut files = Vec::with_capacity(4);
        // An empty originalPath is still a reference: report it instead of skipping it.
        files.push(FileRef {
            kind: FileKind::Original,
            db_path: self.original.unwrap_or_default(),
            edited: false,
        });
        push_path(&mut files, FileKind::Preview, self.preview);
        push_path(&mut files, FileKind::Thumbnail, self.thumbnail);
        push_path(&mut files, FileKind::EncodedVideo, self.encoded);
        push_path(&mut files, FileKind::Sidecar, self.sidecar);
        if let Some(list) = self.files {
            push_asset_files(list, &mut files);
        }
        if !kinds.is_empty() {
            files.retain(|f| kinds.contains(&f.kind));
        }
        AssetRow {
            entity: Entity::Asset,
            id: self.id,
            owner_id: self.owner,
            library_id: self.library,
            asset_type: self.asset_type.unwrap_or_default(),
            checksum: self.checksum,
            checksum_is_of_path: self.path_checksum.unwrap_or(false),
            original_size: self.size.and_then(|s| u64::try_from(s).ok()),
            trashed: self.trashed,
            files,
        }
    }
}

/// Appends the files of an `asset_file` array (`"type:edited:path"` items, see
/// `asset_select`). Each item's string becomes the path in place (no second allocation).
/// Items without two colons and unknown future types are skipped rather than guessed at; an
/// empty path is kept and reported (missing, "empty path"), like an empty originalPath.
pub(crate) fn push_asset_files(mut list: Vec<String>, files: &mut Vec<FileRef>) {
    // Sorted here, not by the server: an ordered aggregate costs a sort per asset there
    // (~9 % of the backend's CPU at 1 M), a handful of strings costs nothing here.
    list.sort_unstable();
    for mut item in list {
        let Some(t) = item.find(':') else { continue };
        let Some(e) = item[t + 1..].find(':').map(|e| t + 1 + e) else {
            continue;
        };
        let Some(kind) = FileKind::from_asset_file_type(&item[..t]) else {
            continue;
        };
        let edited = &item[t + 1..e] == "1";
        item.drain(..=e);
        files.push(FileRef {
            kind,
            db_path: item,
            edited,
        });
    }
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

    #[test]
    fn asset_file_items_become_paths_in_place_in_sorted_order() {
        // The server sends them in no particular order; a row's files come out sorted (by
        // type, then edited, then path), so a report lists them the same way every run.
        let mut files = Vec::new();
        push_asset_files(
            vec![
                "preview:0:/data/thumbs/u/ab/cd/x_preview.jpeg".into(),
                "thumbnail:1:/data/thumbs/u/ab/cd/x:odd:name.webp".into(),
                "fullsize:0:".into(),
                "future_kind:0:/data/x".into(),
                "no-colons".into(),
                "preview:0".into(),
            ],
            &mut files,
        );
        let got: Vec<_> = files
            .iter()
            .map(|f| (f.kind, f.db_path.as_str(), f.edited))
            .collect();
        assert_eq!(
            got,
            vec![
                (FileKind::Fullsize, "", false),
                (
                    FileKind::Preview,
                    "/data/thumbs/u/ab/cd/x_preview.jpeg",
                    false
                ),
                (
                    FileKind::Thumbnail,
                    "/data/thumbs/u/ab/cd/x:odd:name.webp",
                    true
                ),
            ]
        );
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
