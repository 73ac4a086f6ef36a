//! Streams [`AssetRow`]s out of Immich's database in bounded batches.
//!
//! A dedicated thread owns a tokio runtime and one connection inside a
//! `REPEATABLE READ READ ONLY` transaction (one consistent snapshot of a live server, and no
//! write is possible). It reads the asset table in primary-key order through server-side
//! cursors, `FETCH`ing a page at a time (memory does not grow with the table, and the server
//! runs one plan instead of a query per page): an unfiltered scan through three id-ordered
//! cursors merged here (`merge`), a filtered one through one join. Each page goes to the
//! checker through a bounded channel: when checking falls behind, the query side waits
//! (backpressure) while the next page is already prefetched. After a lost connection the
//! cursors are declared again on a new snapshot, starting after the last id delivered.

use super::conn::{connect, is_connection_lost, read_info, SourceInfo};
use super::filters::{Filters, SourceOptions};
use super::merge::Merger;
use super::sql::{Fit, Queries, UncheckedPart};
use crate::db::schema::Schema;
use crate::error::{Error, Result};
use crate::model::AssetRow;
use sqlx::postgres::PgConnection;

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
        Source::open_after(opts, None)
    }

    /// [`Source::open`], with the asset rows starting after the asset id `start_after` (a
    /// time-limited scan resuming where the last one stopped); persons and users follow as
    /// always.
    pub fn open_after(opts: SourceOptions, start_after: Option<String>) -> Result<Source> {
        let (info_tx, info_rx) = sync_channel::<Result<SourceInfo>>(1);
        let (tx, rx) = sync_channel(opts.prefetch.max(1));
        let resumes = Arc::new(Resumes::default());
        let worker_resumes = resumes.clone();
        let unchecked = Arc::new(Mutex::new(Vec::new()));
        let worker_unchecked = unchecked.clone();
        let worker = std::thread::Builder::new()
            .name("immich-integrity-source".into())
            .spawn(move || {
                let rt = match super::runtime::runtime() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = info_tx.send(Err(e));
                        return;
                    }
                };
                rt.block_on(run(
                    opts,
                    start_after,
                    info_tx,
                    tx,
                    worker_resumes,
                    worker_unchecked,
                ));
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

impl Source {
    /// A source fed by another producer (a database dump read without PostgreSQL): `rx`
    /// yields pages in the same order [`Source::open`]'s would (assets by id, then persons,
    /// then users), `unchecked` names the parts the producer could not read.
    pub(crate) fn from_feed(
        info: SourceInfo,
        rx: Receiver<Result<Vec<AssetRow>>>,
        worker: JoinHandle<()>,
        unchecked: Vec<UncheckedPart>,
    ) -> Source {
        Source {
            info,
            resumes: Arc::new(Resumes::default()),
            unchecked: Arc::new(Mutex::new(unchecked)),
            rx,
            worker: Some(worker),
        }
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

async fn run(
    opts: SourceOptions,
    start_after: Option<String>,
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
        // The last id delivered in this phase: after a reconnect the cursors are declared
        // again, to start right after it.
        let mut after: Option<(String, String)> = match (&start_after, page.name) {
            (Some(id), "asset") => Some((id.clone(), String::new())),
            _ => None,
        };
        let mut declared = false;
        // The merged asset page reads three cursors; every other page one.
        let mut merger = page.merge.as_ref().map(|_| Merger::new(opts.batch_size));
        let mut left = page.limit.unwrap_or(u64::MAX);
        while left > 0 {
            let batch_size = (opts.batch_size as u64).min(left);
            let res = async {
                if let (Some(m), Some(with)) = (&mut merger, &page.merge) {
                    return m
                        .next_page(&mut conn, &queries, page, with, after.as_ref(), batch_size)
                        .await;
                }
                if !declared {
                    page.declare(&mut conn, after.as_ref()).await?;
                    declared = true;
                }
                let rows = page.fetch(&mut conn, batch_size).await?;
                rows.iter().map(|r| (page.decode)(&queries, r)).collect()
            }
            .await;
            // A decoding error is no lost connection: reconnect() hands it back, and it
            // ends the stream.
            let batch: Vec<AssetRow> = match res {
                Ok(batch) => batch,
                Err(err) => match reconnect(&opts, err, &mut attempts).await {
                    Ok((c, cause)) => {
                        conn = c;
                        declared = false;
                        if let Some(m) = &mut merger {
                            m.reset();
                        }
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
            let n = batch.len();
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
        if let (Some(m), Some(with)) = (&merger, &page.merge) {
            m.close(&mut conn, page, with).await;
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
    // The join (filtered scans) first, then what only the merged stream runs.
    let mut joined = opts.clone();
    joined.join_stream = true;
    let mut out = Vec::new();
    for p in &Queries::new(schema, &joined, &filters).pages {
        for (what, sql) in [("rows", &p.first), ("resume", &p.next), ("count", &p.count)] {
            out.push((format!("scan/orphans: {} {what}", p.name), sql.clone()));
        }
    }
    for p in &Queries::new(schema, &opts, &filters).pages {
        let Some(with) = &p.merge else { continue };
        for (what, sql) in [("rows", &p.first), ("resume", &p.next)] {
            out.push((
                format!("scan/orphans: merged {} {what}", p.name),
                sql.clone(),
            ));
        }
        for c in with.all() {
            for (what, sql) in [("rows", &c.first), ("resume", &c.next)] {
                out.push((
                    format!("scan/orphans: merged {} {what}", c.name),
                    sql.clone(),
                ));
            }
        }
    }
    out
}
