//! Connecting to PostgreSQL (bounded, password never shown), reading what every command needs
//! first (schema, media location, libraries) and preparing statements without running them.

use crate::db::schema::{q, Schema};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::ConnectOptions;
use std::str::FromStr;
use std::time::Duration;

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
    let mut conn = match tokio::time::timeout(Duration::from_secs(15), opts.connect()).await {
        Ok(r) => r.map_err(|e| Error::Connect {
            url: shown,
            source: e,
        })?,
        Err(_) => {
            return Err(Error::Connect {
                url: shown,
                source: sqlx::Error::PoolTimedOut,
            })
        }
    };
    // A SQL_ASCII database stores any bytes in text columns. Converting them to the client's
    // UTF8 would fail the whole query on one path that is not UTF-8; read them as they are
    // stored instead, so that such a path is one finding naming its row.
    let encoding: String = sqlx::query_scalar("SELECT current_setting('server_encoding')")
        .fetch_one(&mut conn)
        .await
        .map_err(Error::query("reading the server encoding"))?;
    if encoding == "SQL_ASCII" {
        sqlx::query("SET client_encoding TO 'SQL_ASCII'")
            .execute(&mut conn)
            .await
            .map_err(Error::query("reading the stored bytes as they are"))?;
    }
    Ok(conn)
}

/// How long a write statement waits for a row or table lock (another session, e.g. an Immich
/// job, holding it) before it fails with `lock_not_available` and its batch is rolled back.
pub const WRITE_LOCK_TIMEOUT: &str = "30s";
/// How long one write statement may run before the server cancels it.
pub const WRITE_STATEMENT_TIMEOUT: &str = "5min";

/// A connection for writes: [`WRITE_LOCK_TIMEOUT`] and [`WRITE_STATEMENT_TIMEOUT`] hold for
/// every transaction on it, and [`WriteGuard::run`] cancels a statement when asked.
pub(crate) async fn connect_for_writes(url: &str) -> Result<(PgConnection, WriteGuard)> {
    let mut conn = connect(url).await?;
    let pid: i32 = sqlx::query_scalar(
        "SELECT pg_backend_pid() FROM (SELECT set_config('lock_timeout', $1, false), \
         set_config('statement_timeout', $2, false)) s",
    )
    .bind(WRITE_LOCK_TIMEOUT)
    .bind(WRITE_STATEMENT_TIMEOUT)
    .fetch_one(&mut conn)
    .await
    .map_err(Error::query("setting the write timeouts"))?;
    Ok((
        conn,
        WriteGuard {
            url: url.to_string(),
            pid,
        },
    ))
}

/// Cancels the statement running on one backend from a second connection.
#[derive(Debug, Clone)]
pub(crate) struct WriteGuard {
    url: String,
    pid: i32,
}

impl WriteGuard {
    /// Awaits `fut` (a statement on the guarded connection). When `cancel` is set while it
    /// waits (SIGINT/SIGTERM while the statement is blocked on a lock), the server is asked to
    /// cancel it (`pg_cancel_backend` from a second connection, checked every 50 ms): the
    /// statement then fails with `query_canceled` (57014) and the caller rolls its batch back.
    pub(crate) async fn run<T>(
        &self,
        cancel: &std::sync::atomic::AtomicBool,
        fut: impl std::future::Future<Output = T>,
    ) -> T {
        let mut fut = std::pin::pin!(fut);
        let mut sent = false;
        loop {
            tokio::select! {
                r = &mut fut => return r,
                _ = tokio::time::sleep(Duration::from_millis(50)), if !sent => {
                    if cancel.load(std::sync::atomic::Ordering::Relaxed) {
                        sent = true;
                        if let Err(e) = self.cancel_backend().await {
                            tracing::warn!("could not cancel the blocked statement: {e}");
                        }
                    }
                }
            }
        }
    }

    async fn cancel_backend(&self) -> Result<()> {
        let mut c = connect(&self.url).await?;
        sqlx::query("SELECT pg_cancel_backend($1)")
            .bind(self.pid)
            .execute(&mut c)
            .await
            .map_err(Error::query("cancelling the blocked statement"))?;
        Ok(())
    }
}

/// `postgres://user:secret@host/db` -> `postgres://user:***@host/db`, whatever characters the
/// password holds.
///
/// A password may hold `?`, `#`, `/` or `@` unencoded (a URL parser then splits it into host,
/// port and query), so the user part is taken to run to the *last* `@`: everything between the
/// first `:` after the scheme and that `@` is masked, and a user part that is not plainly a
/// user name (it holds `/`, `?`, `#`, `&` or `=`) hides everything after the scheme.
/// `password=` values in the query are masked too. Masking too much (a query value holding `@`
/// hides the host) is the safe side.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // Not a URL (a key=value string, a typo): it may hold a password anywhere.
        return "(the given database URL, not shown: it is not a postgres:// URL)".into();
    };
    let (auth, tail) = match rest.rsplit_once('@') {
        Some((a, t)) => (Some(a), t),
        None => (None, rest),
    };
    let mut auth_shown = String::new();
    if let Some(a) = auth {
        let (user, has_password) = match a.split_once(':') {
            Some((u, _)) => (u, true),
            None => (a, false),
        };
        if user.contains(['/', '?', '#', '&', '=']) {
            // Not a user name: the `@` is inside a path or query value; show nothing after it.
            return format!("{scheme}://***");
        }
        auth_shown = if has_password {
            format!("{user}:***@")
        } else {
            format!("{user}@")
        };
    }
    let tail = match tail.split_once('?') {
        Some((host, query)) => {
            let parts: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.trim().eq_ignore_ascii_case("password") => {
                        format!("{k}=***")
                    }
                    _ => kv.to_string(),
                })
                .collect();
            format!("{host}?{}", parts.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}://{auth_shown}{tail}")
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
    /// [`SourceOptions::count_total`](crate::SourceOptions::count_total) asked for it.
    pub total_rows: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every write connection carries the lock and statement timeouts (against the test
    /// server, `FIXTURE_PG_URL` or the local one).
    #[test]
    fn write_connections_carry_lock_and_statement_timeouts() {
        let url = std::env::var("FIXTURE_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
        let url = format!("{}/postgres", url.trim_end_matches('/'));
        let rt = crate::db::runtime::runtime().unwrap();
        let (lock, statement, pid, own) = rt.block_on(async {
            let (mut c, guard) = connect_for_writes(&url).await.expect("the test server");
            let (lock, statement): (String, String) = sqlx::query_as(
                "SELECT current_setting('lock_timeout'), current_setting('statement_timeout')",
            )
            .fetch_one(&mut c)
            .await
            .unwrap();
            let own: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
                .fetch_one(&mut c)
                .await
                .unwrap();
            (lock, statement, guard.pid, own)
        });
        assert_eq!(lock, WRITE_LOCK_TIMEOUT);
        assert_eq!(statement, WRITE_STATEMENT_TIMEOUT);
        assert_eq!(pid, own, "the guard cancels this connection's statements");
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

    #[test]
    fn redacts_passwords_whatever_characters_they_hold() {
        for pw in [
            "SECa?SECb",
            "SECa#SECb",
            "SECa/SECb",
            "SECa@SECb",
            "SECa?x=SECb&y=SECc",
            "1234?SECb",
            "SECa:SECb",
            "SECa%40SECb",
        ] {
            let url = format!("postgres://immich:{pw}@db:5432/immich?sslmode=disable");
            let shown = redact_url(&url);
            assert!(!shown.contains("SEC"), "{url} -> {shown}");
            assert_eq!(
                shown,
                "postgres://immich:***@db:5432/immich?sslmode=disable"
            );
        }
        let shown = redact_url("postgres://u@h/db?password=SECa@SECb");
        assert!(!shown.contains("SEC"), "{shown}");
        let shown = redact_url("postgres://u@h/db?x=1&password=SECa#SECb");
        assert!(!shown.contains("SEC"), "{shown}");
    }
}
