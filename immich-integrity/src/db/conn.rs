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

pub(super) fn redact_userinfo(url: &str) -> String {
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
