//! The dump loaded into a scratch database: a new database on a PostgreSQL the caller names
//! (never the live one: the name is ours and fresh), filled with the Immich section's
//! statements and `COPY` data, scanned like a live one, then dropped.
//!
//! Only statements that act inside the current database run: anything aimed at a database
//! by name, roles, tablespaces, the system, subscriptions, grants and ownership is left out,
//! as are psql's meta-commands (`\connect`). A statement the server refuses (Immich's
//! `vector`/`vchord` extensions when they are not installed, the tables and indexes that
//! need them) is counted and skipped, and a `COPY` into a table that does not exist skips its
//! data: no data line is ever run as SQL.

use super::dumpfile::{DumpReader, Ending};
use crate::db::conn::connect;
use crate::db::runtime::runtime;
use crate::error::{Error, Result};
use sqlx::PgConnection;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// A loaded scratch database; dropped with [`Scratch::drop_database`] (also on drop).
pub(crate) struct Scratch {
    admin_url: String,
    /// Its name (`immich_integrity_restore_<hex>`).
    pub(crate) name: String,
    /// Its URL.
    pub(crate) url: String,
    /// The Immich database's name in the dump.
    pub(crate) database: String,
    /// How the dump ended.
    pub(crate) ending: Ending,
    /// `-- Dumped from database version`.
    pub(crate) dumped_from: Option<String>,
    /// Statements the server refused: (their first words, why).
    pub(crate) skipped: Vec<(String, String)>,
    /// Statements left out on purpose (ownership, grants, other databases, roles).
    pub(crate) left_out: u64,
    dropped: bool,
}

/// `postgres://u@h:p/db?x` with another database.
fn with_database(url: &str, db: &str) -> String {
    let (main, query) = match url.find('?') {
        Some(i) => (&url[..i], &url[i..]),
        None => (url, ""),
    };
    let start = main.find("://").map_or(0, |i| i + 3);
    let base = match main[start..].find('/') {
        Some(j) => &main[..start + j],
        None => main,
    };
    format!("{base}/{db}{query}")
}

/// The Immich section of the dump (the one database with an asset table) and its name.
fn immich_section(path: &Path) -> Result<(usize, String)> {
    let mut r = DumpReader::open(path)?;
    let mut found: Vec<(usize, String)> = Vec::new();
    while let Some(l) = r.next_line() {
        if l.bytes == b"CREATE TABLE public.asset (" || l.bytes == b"CREATE TABLE public.assets (" {
            let s = l.section;
            if !found.iter().any(|(x, _)| *x == s) {
                found.push((s, r.sections[s].clone()));
            }
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(Error::UnknownSchema(format!(
            "{} holds no database with an `asset` or `assets` table",
            path.display()
        ))),
        _ => Err(Error::InvalidArgument(format!(
            "{} holds more than one Immich database (each has an asset table): {}; restore \
             test needs one: dump the one the server uses",
            path.display(),
            found
                .iter()
                .map(|(_, n)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// Why a statement is left out, or `None` to run it.
fn refused(stmt: &str) -> Option<&'static str> {
    let u = stmt.trim_start().to_ascii_uppercase();
    let words: Vec<&str> = u.split_whitespace().take(4).collect();
    let w = |i: usize| words.get(i).copied().unwrap_or("");
    let global = [
        "DATABASE",
        "ROLE",
        "USER",
        "TABLESPACE",
        "SUBSCRIPTION",
        "SERVER",
    ];
    match w(0) {
        "CREATE" | "ALTER" | "DROP" | "COMMENT" if global.contains(&w(1)) => {
            Some("acts outside the scratch database")
        }
        "COMMENT" if w(2) == "DATABASE" => Some("acts outside the scratch database"),
        "CREATE" if w(1) == "USER" && w(2) == "MAPPING" => Some("foreign server"),
        "ALTER" if w(1) == "SYSTEM" => Some("acts outside the scratch database"),
        "GRANT" | "REVOKE" | "SECURITY" => Some("permissions are not needed to check files"),
        "SET" if matches!(w(1), "ROLE" | "SESSION") => Some("roles are not restored"),
        "SELECT" if !(u.contains("PG_CATALOG.SET_CONFIG(") || u.contains("PG_CATALOG.SETVAL(")) => {
            Some("only pg_dump's own set_config and setval run")
        }
        "CREATE" if w(1) == "EXTENSION" && (u.contains("VECTOR") || u.contains("VCHORD")) => {
            Some("Immich's vector extensions are not needed to check files")
        }
        _ if u.contains(" OWNER TO ") => Some("roles are not restored"),
        _ => None,
    }
}

/// Splits pg_dump's SQL into statements: a `;` ends one at the end of a line, outside
/// quotes and dollar quotes.
#[derive(Default)]
struct Splitter {
    stmt: String,
    single: bool,
    dollar: Option<String>,
}

impl Splitter {
    /// Adds a line; returns the statement it completes.
    fn push(&mut self, line: &str) -> Option<String> {
        if self.stmt.is_empty() && (line.trim().is_empty() || line.starts_with("--")) {
            return None;
        }
        self.stmt.push_str(line);
        self.stmt.push('\n');
        let b = line.as_bytes();
        let mut i = 0;
        let mut last_code = None;
        while i < b.len() {
            if let Some(tag) = &self.dollar {
                if line[i..].starts_with(tag.as_str()) {
                    i += tag.len();
                    self.dollar = None;
                    last_code = Some(i - 1);
                } else {
                    i += 1;
                }
                continue;
            }
            let c = b[i];
            if self.single {
                if c == b'\'' {
                    self.single = false;
                    last_code = Some(i);
                }
                i += 1;
                continue;
            }
            match c {
                b'\'' => self.single = true,
                b'-' if b.get(i + 1) == Some(&b'-') => break,
                b'$' => {
                    let end = line[i + 1..]
                        .find(|ch: char| !(ch.is_alphanumeric() || ch == '_'))
                        .map(|e| i + 1 + e);
                    if let Some(e) = end.filter(|&e| b[e] == b'$') {
                        self.dollar = Some(line[i..=e].to_string());
                        i = e + 1;
                        continue;
                    }
                }
                c if !c.is_ascii_whitespace() => last_code = Some(i),
                _ => {}
            }
            i += 1;
        }
        let ends = !self.single && self.dollar.is_none() && last_code.is_some_and(|i| b[i] == b';');
        ends.then(|| std::mem::take(&mut self.stmt))
    }
}

fn head(stmt: &str) -> String {
    let one: String = stmt
        .split_whitespace()
        .take(6)
        .collect::<Vec<_>>()
        .join(" ");
    one.chars().take(120).collect()
}

impl Scratch {
    /// Creates the scratch database on the server of `admin_url` and loads the dump into it.
    pub(crate) fn load(path: &Path, admin_url: &str, cancel: &AtomicBool) -> Result<Scratch> {
        let (section, database) = immich_section(path)?;
        let name = format!(
            "immich_integrity_restore_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..16]
        );
        let rt = runtime()?;
        rt.block_on(async {
            let mut c = connect(admin_url).await?;
            sqlx::raw_sql(&format!("CREATE DATABASE \"{name}\""))
                .execute(&mut c)
                .await
                .map_err(Error::query("creating the scratch database"))?;
            Ok::<_, Error>(())
        })?;
        let mut s = Scratch {
            admin_url: admin_url.to_string(),
            url: with_database(admin_url, &name),
            name,
            database,
            ending: Ending::Complete,
            dumped_from: None,
            skipped: Vec::new(),
            left_out: 0,
            dropped: false,
        };
        let url = s.url.clone();
        let mut r = DumpReader::open(path)?;
        let loaded = rt.block_on(async {
            let mut c = connect(&url).await?;
            s.fill(&mut r, section, &mut c, cancel).await
        });
        s.ending = r.ending();
        s.dumped_from = r.server_version.clone();
        loaded?;
        Ok(s)
    }

    async fn fill(
        &mut self,
        r: &mut DumpReader,
        section: usize,
        c: &mut PgConnection,
        cancel: &AtomicBool,
    ) -> Result<()> {
        let mut split = Splitter::default();
        // A COPY's data is sent in pieces of about 1 MiB, each its own COPY of the same table.
        let mut chunk: Vec<u8> = Vec::with_capacity(1 << 20);
        let mut skipped = std::mem::take(&mut self.skipped);
        let mut pending_copy: Option<String> = None;
        while let Some(line) = r.next_line() {
            if line.section != section {
                continue;
            }
            if chunk.is_empty() && cancel.load(Ordering::Relaxed) {
                self.skipped = skipped;
                return Err(Error::Interrupted);
            }
            if let Some(stmt) = &pending_copy {
                if line.bytes == b"\\." {
                    let stmt = stmt.clone();
                    pending_copy = None;
                    send_copy(c, &stmt, &chunk, &mut skipped).await;
                    chunk.clear();
                    continue;
                }
                chunk.extend_from_slice(line.bytes);
                chunk.push(b'\n');
                if chunk.len() >= 1 << 20 {
                    let stmt = stmt.clone();
                    send_copy(c, &stmt, &chunk, &mut skipped).await;
                    chunk.clear();
                }
                continue;
            }
            let text = String::from_utf8_lossy(line.bytes);
            if split.stmt.is_empty() && text.starts_with('\\') {
                continue; // psql meta-commands (\connect, \restrict)
            }
            let Some(stmt) = split.push(&text) else {
                continue;
            };
            if stmt.trim_start().starts_with("COPY ") && stmt.contains("FROM stdin") {
                pending_copy = Some(stmt);
                continue;
            }
            if let Some(why) = refused(&stmt) {
                tracing::debug!(statement = %head(&stmt), why, "left out");
                self.left_out += 1;
                continue;
            }
            if let Err(e) = sqlx::raw_sql(&stmt).execute(&mut *c).await {
                if crate::db::conn::is_connection_lost(&e) {
                    self.skipped = skipped;
                    return Err(Error::query("loading the dump into the scratch database")(
                        e,
                    ));
                }
                skipped.push((head(&stmt), crate::db::conn::server_message(&e)));
            }
        }
        // A dump cut inside a COPY: the rows read so far still go in.
        if let Some(stmt) = pending_copy.filter(|_| !chunk.is_empty()) {
            send_copy(c, &stmt, &chunk, &mut skipped).await;
        }
        self.skipped = skipped;
        Ok(())
    }

    /// Drops the scratch database.
    pub(crate) fn drop_database(&mut self) -> Result<()> {
        if self.dropped {
            return Ok(());
        }
        self.dropped = true;
        let (admin, name) = (self.admin_url.clone(), self.name.clone());
        runtime()?.block_on(async {
            let mut c = connect(&admin).await?;
            sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .execute(&mut c)
                .await
                .map_err(Error::query("dropping the scratch database"))?;
            Ok(())
        })
    }
}

async fn send_copy(
    c: &mut PgConnection,
    stmt: &str,
    data: &[u8],
    skipped: &mut Vec<(String, String)>,
) {
    let res = async {
        let mut cp = c.copy_in_raw(stmt).await?;
        if !data.is_empty() {
            cp.send(data).await?;
        }
        cp.finish().await
    }
    .await;
    if let Err(e) = res {
        let h = head(stmt);
        // One line per table, not per piece.
        if !skipped.iter().any(|(s, _)| *s == h) {
            skipped.push((h, crate::db::conn::server_message(&e)));
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Err(e) = self.drop_database() {
            tracing::warn!("could not drop the scratch database {}: {e}", self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_at_line_ending_semicolons_outside_quotes() {
        let mut s = Splitter::default();
        let mut out = Vec::new();
        for l in [
            "-- a comment;",
            "CREATE FUNCTION public.f() RETURNS trigger",
            "    LANGUAGE plpgsql",
            "    AS $$ BEGIN new.x = 1;",
            "  RETURN new; END $$;",
            "COMMENT ON TABLE public.t IS 'a;",
            "b;';",
            "SET x = 1; -- trailing",
        ] {
            out.extend(s.push(l));
        }
        assert_eq!(out.len(), 3, "{out:?}");
        assert!(out[0].contains("RETURN new; END $$;"));
        assert!(out[1].contains("b;';"));
    }

    #[test]
    fn global_and_foreign_statements_are_refused() {
        for s in [
            "DROP DATABASE IF EXISTS immich;",
            "CREATE DATABASE immich WITH TEMPLATE = template0;",
            "ALTER DATABASE immich OWNER TO postgres;",
            "COMMENT ON DATABASE immich IS 'x';",
            "DROP ROLE IF EXISTS postgres;",
            "CREATE ROLE postgres;",
            "ALTER TABLE public.asset OWNER TO postgres;",
            "GRANT ALL ON SCHEMA public TO immich;",
            "SELECT pg_terminate_backend(1);",
            "CREATE EXTENSION IF NOT EXISTS vchord WITH SCHEMA public;",
            "CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA public;",
            "CREATE SUBSCRIPTION s CONNECTION 'host=x' PUBLICATION p;",
        ] {
            assert!(refused(s).is_some(), "{s}");
        }
        for s in [
            "SELECT pg_catalog.set_config('search_path', '', false);",
            "CREATE TABLE public.asset (\n id uuid\n);",
            "CREATE EXTENSION IF NOT EXISTS \"uuid-ossp\" WITH SCHEMA public;",
            "SET statement_timeout = 0;",
        ] {
            assert!(refused(s).is_none(), "{s}");
        }
        assert_eq!(
            with_database("postgres://u@h:5/postgres?sslmode=disable", "x"),
            "postgres://u@h:5/x?sslmode=disable"
        );
    }
}
