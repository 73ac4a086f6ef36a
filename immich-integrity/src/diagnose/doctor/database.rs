//! The database checks: connecting, the schema, preparing every statement the tools run, and
//! the thumbnails Immich has recorded.

use super::*;
use crate::db::conn::SourceInfo;
use crate::db::conn::{connect, read_info, redact_url};
use crate::db::schema::{q, Schema};
use sqlx::postgres::PgConnectOptions;
use sqlx::PgConnection;
use std::collections::HashMap;
use std::str::FromStr;

/// What the database said, gathered in one connection.
pub(super) struct DbFacts {
    pub(super) info: SourceInfo,
    /// Stored media-root prefix -> rows (upload originals and asset files), most rows first.
    pub(super) prefixes: Result<Vec<(String, i64)>, String>,
    pub(super) data_directory: Option<String>,
    pub(super) local: bool,
    pub(super) thumbnails: Check,
    /// `system-flags.mountChecks`: folders whose marker Immich already wrote once (and now
    /// requires). `None` when unknown: every marker is then required.
    pub(super) mount_checks: Option<HashMap<String, bool>>,
}

pub(super) async fn database_checks(
    opts: &DoctorOptions,
    checks: &mut Vec<Check>,
) -> Option<DbFacts> {
    let shown = redact_url(&opts.db_url);
    let target = match PgConnectOptions::from_str(&opts.db_url) {
        Ok(o) => format!("{}:{}", o.get_host(), o.get_port()),
        Err(e) => {
            checks.push(Check::fail(
                "database",
                format!("the database URL {shown} is not valid: {e}"),
                format!(
                    "pass {} postgres://USER@HOST:PORT/DATABASE with the password in PGPASSWORD or ~/.pgpass (or {})",
                    crate::error::Hint::DbUrl,
                    crate::error::Hint::EnvFile
                ),
            ));
            return None;
        }
    };
    let mut conn = match connect(&opts.db_url).await {
        Ok(c) => {
            checks.push(Check::ok(
                "database",
                format!("PostgreSQL answers at {target}"),
            ));
            checks.push(Check::ok("credentials", format!("logged in as {shown}")));
            c
        }
        Err(crate::Error::Connect { source, .. }) => {
            connect_failure(&target, &shown, &source, checks);
            return None;
        }
        Err(e) => {
            checks.push(Check::fail(
                "database",
                e.to_string(),
                format!("check {}", crate::error::Hint::DbUrl),
            ));
            return None;
        }
    };
    // A stuck lock must not make the doctor hang, and nothing it runs may write.
    for set in [
        "SET statement_timeout = '20s'",
        "SET default_transaction_read_only = on",
    ] {
        let _ = sqlx::query(set).execute(&mut conn).await;
    }
    let info = match read_info(&mut conn).await {
        Ok(i) => {
            checks.push(Check::ok(
                "schema",
                format!(
                    "{} (asset table {}{})",
                    i.schema.describe(),
                    i.schema.asset_table,
                    i.schema
                        .asset_file_table
                        .map(|t| format!(", files in {t}"))
                        .unwrap_or_default()
                ),
            ));
            i
        }
        Err(e) => {
            checks.push(Check::fail(
                "schema",
                e.to_string(),
                format!(
                    "point {} at Immich's database (DB_DATABASE_NAME in .env, usually `immich`)",
                    crate::error::Hint::DbUrl
                ),
            ));
            return None;
        }
    };
    checks.push(migrations_check(&mut conn, &info.schema).await);
    checks.push(queries_check(&mut conn, &info.schema).await);
    let mut known: Vec<&str> = vec!["/data", "/usr/src/app/upload", "upload"];
    known.extend(info.media_location.as_deref());
    known.extend(opts.media_location.as_deref());
    let prefixes = stored_prefixes(&mut conn, &info.schema, &known)
        .await
        .map_err(|e| e.to_string());
    let data_directory = sqlx::query_scalar::<_, String>("SHOW data_directory")
        .fetch_one(&mut conn)
        .await
        .ok();
    let local = PgConnectOptions::from_str(&opts.db_url)
        .map(|o| {
            let h = o.get_host();
            h.starts_with('/') || matches!(h, "localhost" | "127.0.0.1" | "::1")
        })
        .unwrap_or(false);
    let thumbnails = thumbnails_check(&mut conn, &info.schema).await;
    let mount_checks = if info.schema.has_media_location_table {
        sqlx::query_scalar::<_, Option<serde_json::Value>>(
            "SELECT value->'mountChecks' FROM system_metadata WHERE key = 'system-flags'",
        )
        .fetch_optional(&mut conn)
        .await
        .ok()
        .map(|v| {
            v.flatten()
                .and_then(|v| serde_json::from_value(v).ok())
                .unwrap_or_default()
        })
    } else {
        None
    };
    Some(DbFacts {
        mount_checks,
        info,
        prefixes,
        data_directory,
        local,
        thumbnails,
    })
}

/// Prepares (parses and plans, never runs) every statement that scan, orphans, relink,
/// regenerate and undo would send to this database: a release that dropped or renamed a
/// column the tool reads fails here, naming the statement, instead of half-way through a run.
pub(super) async fn queries_check(conn: &mut PgConnection, schema: &Schema) -> Check {
    let mut all = crate::db::source::statements(schema);
    all.extend(crate::repair::relink::statements(schema));
    all.extend(crate::repair::regenerate::statements(schema));
    all.extend(crate::diagnose::explain::statements(schema));
    let mut failed: Vec<String> = Vec::new();
    let begun = sqlx::query("BEGIN READ ONLY").execute(&mut *conn).await;
    if let Err(e) = begun {
        return Check::warn(
            "queries",
            format!("could not check: {e}"),
            "run doctor again",
        );
    }
    for (label, sql) in &all {
        match crate::db::conn::prepare_all(conn, &[sql]).await {
            Ok(Ok(())) => {}
            Ok(Err(why)) => failed.push(format!("{label}: {why}")),
            Err(e) => {
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                return Check::warn(
                    "queries",
                    format!("could not check: {e}"),
                    "run doctor again",
                );
            }
        }
    }
    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
    if failed.is_empty() {
        return Check::ok(
            "queries",
            format!(
                "all {} statements of scan, orphans, relink, regenerate, undo and explain-report compile \
                 against {}",
                all.len(),
                schema.describe()
            ),
        );
    }
    Check::fail(
        "queries",
        format!(
            "{} of {} statements do not compile against {}: {}",
            failed.len(),
            all.len(),
            schema.describe(),
            failed.join("; ")
        ),
        "a table the tool reads has changed (a dropped or renamed column): scan reports the \
         parts it cannot check and exits 3; repairs on them are refused. Check that this \
         database belongs to a released Immich version, or update immich-integrity",
    )
}

pub(super) fn connect_failure(target: &str, shown: &str, e: &sqlx::Error, checks: &mut Vec<Check>) {
    let code = match e {
        sqlx::Error::Database(d) => d.code().map(|c| c.into_owned()),
        _ => None,
    };
    match code.as_deref() {
        // invalid_authorization_specification, invalid_password
        Some(c) if c.starts_with("28") => {
            checks.push(Check::ok(
                "database",
                format!("PostgreSQL answers at {target}"),
            ));
            checks.push(Check::fail(
                "credentials",
                format!("PostgreSQL refused the login of {shown}: {e}"),
                format!(
                    "use DB_USERNAME / DB_PASSWORD from Immich's .env ({} reads them)",
                    crate::error::Hint::EnvFile
                ),
            ));
        }
        // invalid_catalog_name: no such database
        Some("3D000") => {
            checks.push(Check::ok(
                "database",
                format!("PostgreSQL answers at {target}"),
            ));
            checks.push(Check::fail(
                "credentials",
                format!("logged in, but the database does not exist: {e}"),
                "use DB_DATABASE_NAME from Immich's .env (usually `immich`)",
            ));
        }
        Some(_) => checks.push(Check::fail(
            "database",
            format!("PostgreSQL at {target} refused the connection: {e}"),
            "read the database container's log (docker compose logs database)",
        )),
        None => checks.push(Check::fail(
            "database",
            format!("cannot reach PostgreSQL at {target}: {e}"),
            "start the database (docker compose up -d database) and check DB_HOSTNAME / \
             DB_PORT; from the host the port must be published",
        )),
    }
}

pub(super) async fn thumbnails_check(conn: &mut PgConnection, s: &Schema) -> Check {
    const NAME: &str = "thumbnails";
    // Hidden assets (the video half of a live photo) get no thumbnails.
    let visible: Option<&str> = match sqlx::query_scalar::<_, String>(
        "SELECT column_name::text FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name = $1 \
           AND column_name IN ('visibility', 'isVisible')",
    )
    .bind(s.asset_table)
    .fetch_optional(&mut *conn)
    .await
    {
        Ok(Some(c)) if c == "visibility" => Some("a.visibility::text <> 'hidden'"),
        Ok(Some(_)) => Some("a.\"isVisible\""),
        _ => None,
    };
    let mut filter = vec!["a.\"deletedAt\" IS NULL".to_string()];
    filter.extend(visible.map(str::to_string));
    let (pcol, tcol) = s
        .preview_columns
        .unwrap_or(("previewPath", "thumbnailPath"));
    // "Has both" as two EXISTS in an AND: PostgreSQL runs them as semi-joins (hash or merge),
    // where a NOT EXISTS under an OR would be one index probe per asset.
    let complete = match s.asset_file_table {
        Some(t) => {
            let has = |kind: &str| {
                format!(
                    "EXISTS (SELECT 1 FROM {} f WHERE f.\"assetId\" = a.id AND f.type = '{kind}' \
                     AND f.path <> '')",
                    q(t)
                )
            };
            format!("{} AND {}", has("thumbnail"), has("preview"))
        }
        None if s.preview_columns.is_some() => format!(
            "COALESCE(a.{}, '') <> '' AND COALESCE(a.{}, '') <> ''",
            q(tcol),
            q(pcol)
        ),
        None => {
            return Check::warn(
                NAME,
                "this schema has neither asset files nor preview columns",
                "report this schema to the immich-integrity authors",
            )
        }
    };
    let from = format!("{} a WHERE {}", q(s.asset_table), filter.join(" AND "));
    let sql = format!(
        "SELECT (SELECT count(*) FROM {from}) - (SELECT count(*) FROM {from} AND {complete}), \
                (SELECT count(*) FROM {from})"
    );
    match sqlx::query_as::<_, (i64, i64)>(&sql)
        .fetch_one(&mut *conn)
        .await
    {
        Ok((0, total)) => Check::ok(
            NAME,
            format!("all {total} visible assets have a thumbnail and a preview in the database"),
        ),
        Ok((n, total)) => Check::warn(
            NAME,
            format!(
                "{n} of {total} visible assets have no thumbnail or preview in the database: \
                 the apps show grey placeholders"
            ),
            "Administration > Jobs > Generate Thumbnails > Missing (or `immich-integrity scan` \
             to find thumbnail files that are gone although their rows remain)",
        ),
        Err(e) => Check::warn(
            NAME,
            format!("cannot count assets without thumbnails: {e}"),
            "run the doctor as the database owner",
        ),
    }
}
