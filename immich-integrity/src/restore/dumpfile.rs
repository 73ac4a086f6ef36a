//! A database dump as a file: finding the newest of Immich's in `backups/`, what its name
//! says (`immich-db-backup-<yyyyLLdd'T'HHmmss>-v<server>-pg<postgres>.sql.gz`), and reading
//! it line by line (plain or gzip), split into the sections of `pg_dumpall`'s databases,
//! noticing whether it ends as `pg_dump`/`pg_dumpall` end a finished dump.

use crate::error::{Error, Result};
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// What an Immich backup's file name says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpName {
    /// When Immich started the dump (the server's clock; read as UTC).
    pub time: Option<DateTime<Utc>>,
    /// The Immich release that made it (`2.6.3`): restore it with this release or newer.
    pub server_version: Option<String>,
    /// The PostgreSQL version of the dumped server (`14.17`).
    pub postgres_version: Option<String>,
}

/// Parses `immich-db-backup-20260726T031500-v2.6.3-pg14.17.sql.gz` (and the older
/// `immich-db-backup-<epoch ms>.sql.gz`); other names give an empty [`DumpName`].
pub fn parse_name(name: &str) -> DumpName {
    let Some(rest) = name.strip_prefix("immich-db-backup-") else {
        return DumpName::default();
    };
    let stem = rest
        .trim_end_matches(".gz")
        .trim_end_matches(".sql")
        .to_string();
    let mut parts = stem.split('-');
    let mut out = DumpName::default();
    if let Some(t) = parts.next() {
        out.time = NaiveDateTime::parse_from_str(t, "%Y%m%dT%H%M%S")
            .ok()
            .map(|n| Utc.from_utc_datetime(&n))
            .or_else(|| {
                t.parse::<i64>()
                    .ok()
                    .filter(|_| t.len() >= 12)
                    .and_then(DateTime::from_timestamp_millis)
            });
    }
    for p in parts {
        if let Some(v) = p.strip_prefix('v') {
            out.server_version = Some(v.to_string());
        } else if let Some(v) = p.strip_prefix("pg") {
            out.postgres_version = Some(v.to_string());
        }
    }
    out
}

/// Is this the name of a finished Immich backup (not `*.tmp`, which Immich writes first)?
fn is_backup_name(name: &str) -> bool {
    name.starts_with("immich-db-backup-") && (name.ends_with(".sql.gz") || name.ends_with(".sql"))
}

/// The newest Immich backup in `<media root>/backups/` (by the time in its name, else its
/// modification time), or `None` when there is none.
pub fn newest_in(media_root: &Path) -> Result<Option<PathBuf>> {
    let dir = media_root.join("backups");
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(Error::Io { path: dir, source }),
    };
    let mut best: Option<(DateTime<Utc>, PathBuf)> = None;
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !is_backup_name(&name) || !e.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let when = parse_name(&name).time.or_else(|| {
            let m = e.metadata().ok()?.modified().ok()?;
            Some(DateTime::<Utc>::from(m))
        });
        let Some(when) = when else { continue };
        if best
            .as_ref()
            .is_none_or(|(t, p)| (when, e.path()) > (*t, p.clone()))
        {
            best = Some((when, e.path()));
        }
    }
    Ok(best.map(|(_, p)| p))
}

/// How a read of the dump ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status", content = "reason")]
pub enum Ending {
    /// It ends with `pg_dumpall`'s or `pg_dump`'s completion comment.
    Complete,
    /// It stops early: the gzip stream is cut or damaged, or the completion comment is missing.
    Truncated(String),
}

/// One line of the dump and the database section it belongs to.
pub(crate) struct Line<'a> {
    /// Index of the section (0 before the first `\connect`).
    pub(crate) section: usize,
    pub(crate) bytes: &'a [u8],
}

/// Reads a dump line by line and keeps track of sections and the ending.
pub(crate) struct DumpReader {
    path: PathBuf,
    input: Box<dyn BufRead + Send>,
    buf: Vec<u8>,
    /// Database names of the sections met so far (`""` for the part before any `\connect`).
    pub(crate) sections: Vec<String>,
    /// The dump starts as `pg_dumpall` output.
    pub(crate) cluster: bool,
    cluster_done: bool,
    database_done: bool,
    /// `-- Dumped from database version ...` (the first seen).
    pub(crate) server_version: Option<String>,
    cut: Option<String>,
    /// Lines read so far.
    pub(crate) lines: u64,
}

impl DumpReader {
    /// Opens a plain or gzipped dump (told apart by the gzip magic, not the name).
    pub(crate) fn open(path: &Path) -> Result<DumpReader> {
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut f = BufReader::with_capacity(1 << 16, File::open(path).map_err(io)?);
        let gz = f.fill_buf().map_err(io)?.starts_with(&[0x1f, 0x8b]);
        let input: Box<dyn BufRead + Send> = if gz {
            Box::new(BufReader::with_capacity(
                1 << 16,
                flate2::bufread::MultiGzDecoder::new(f),
            ))
        } else {
            Box::new(f)
        };
        Ok(DumpReader {
            path: path.to_path_buf(),
            input,
            buf: Vec::with_capacity(4096),
            sections: vec![String::new()],
            cluster: false,
            cluster_done: false,
            database_done: false,
            server_version: None,
            cut: None,
            lines: 0,
        })
    }

    /// The next line (without its newline), or `None` at the end or where the file is cut.
    pub(crate) fn next_line(&mut self) -> Option<Line<'_>> {
        self.buf.clear();
        match self.input.read_until(b'\n', &mut self.buf) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(e) => {
                self.cut = Some(format!(
                    "{} cannot be read to its end after {} lines: {e}",
                    self.path.display(),
                    self.lines
                ));
                return None;
            }
        }
        if self.buf.last() != Some(&b'\n') {
            // A last line without its newline: the file was cut (pg_dump ends every line).
            // The piece is dropped: a cut COPY line would be a row with a cut path.
            self.cut = Some(format!(
                "{} ends in the middle of line {}",
                self.path.display(),
                self.lines + 1
            ));
            return None;
        }
        self.buf.pop();
        self.lines += 1;
        self.observe();
        Some(Line {
            section: self.sections.len() - 1,
            bytes: &self.buf,
        })
    }

    fn observe(&mut self) {
        let l = &self.buf;
        if l.starts_with(b"\\connect ") {
            let name = connect_target(&String::from_utf8_lossy(&l[9..]));
            self.sections.push(name);
            self.database_done = false;
        } else if l.starts_with(b"-- ") {
            let s = String::from_utf8_lossy(&l[3..]);
            let s = s.trim();
            if self.lines <= 3 && s == "PostgreSQL database cluster dump" {
                self.cluster = true;
            } else if s == "PostgreSQL database cluster dump complete" {
                self.cluster_done = true;
            } else if s == "PostgreSQL database dump complete" {
                self.database_done = true;
            } else if let Some(v) = s.strip_prefix("Dumped from database version ") {
                self.server_version.get_or_insert_with(|| v.to_string());
            }
        }
    }

    /// How the dump ended (call after [`DumpReader::next_line`] returned `None`).
    pub(crate) fn ending(&self) -> Ending {
        if let Some(c) = &self.cut {
            return Ending::Truncated(c.clone());
        }
        let (done, what) = if self.cluster {
            (
                self.cluster_done,
                "pg_dumpall's \"PostgreSQL database cluster dump complete\"",
            )
        } else {
            (
                self.database_done,
                "pg_dump's \"PostgreSQL database dump complete\"",
            )
        };
        if done {
            Ending::Complete
        } else {
            Ending::Truncated(format!(
                "{} ends after {} lines without {what}: the dump did not finish",
                self.path.display(),
                self.lines
            ))
        }
    }
}

/// The database a `\connect` line names: `-reuse-previous=on "dbname='x'"` or plain `x`.
fn connect_target(rest: &str) -> String {
    if let Some(i) = rest.find("dbname='") {
        let v = &rest[i + 8..];
        let mut out = String::new();
        let mut chars = v.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' => out.extend(chars.next()),
                '\'' if chars.peek() == Some(&'\'') => {
                    out.push('\'');
                    chars.next();
                }
                '\'' => break,
                c => out.push(c),
            }
        }
        return out;
    }
    let w = rest
        .split_whitespace()
        .find(|w| !w.starts_with('-'))
        .unwrap_or("");
    w.trim_matches('"').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn immich_backup_names() {
        let n = parse_name("immich-db-backup-20260726T031500-v2.6.3-pg14.17.sql.gz");
        assert_eq!(n.time.unwrap().to_rfc3339(), "2026-07-26T03:15:00+00:00");
        assert_eq!(n.server_version.as_deref(), Some("2.6.3"));
        assert_eq!(n.postgres_version.as_deref(), Some("14.17"));
        let old = parse_name("immich-db-backup-1721990100000.sql.gz");
        assert_eq!(old.time.unwrap().timestamp(), 1_721_990_100);
        assert_eq!(parse_name("dump.sql"), DumpName::default());
        assert!(!is_backup_name("immich-db-backup-1.sql.gz.tmp"));
    }

    #[test]
    fn connect_lines() {
        assert_eq!(
            connect_target("-reuse-previous=on \"dbname='im''m\\\\ich'\""),
            "im'm\\ich"
        );
        assert_eq!(connect_target("immich"), "immich");
    }

    #[test]
    fn newest_backup_by_name_time_and_torn_gzip_is_truncated() {
        let t = tempfile::tempdir().unwrap();
        let b = t.path().join("backups");
        std::fs::create_dir(&b).unwrap();
        for n in [
            "immich-db-backup-20260101T000000-v2.6.3-pg14.17.sql.gz",
            "immich-db-backup-20260301T000000-v2.6.3-pg14.17.sql.gz",
            "immich-db-backup-20260401T000000-v2.6.3-pg14.17.sql.gz.tmp",
        ] {
            std::fs::write(b.join(n), b"").unwrap();
        }
        let got = newest_in(t.path()).unwrap().unwrap();
        assert!(got.ends_with("immich-db-backup-20260301T000000-v2.6.3-pg14.17.sql.gz"));

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        use std::io::Write;
        let body = "--\n-- PostgreSQL database dump\n--\nSELECT 1;\n".repeat(2000)
            + "--\n-- PostgreSQL database dump complete\n--\n";
        gz.write_all(body.as_bytes()).unwrap();
        let bytes = gz.finish().unwrap();
        let whole = t.path().join("whole.sql.gz");
        std::fs::write(&whole, &bytes).unwrap();
        let cut = t.path().join("cut.sql.gz");
        std::fs::write(&cut, &bytes[..bytes.len() - 9]).unwrap();
        for (p, complete) in [(&whole, true), (&cut, false)] {
            let mut r = DumpReader::open(p).unwrap();
            while r.next_line().is_some() {}
            assert_eq!(r.ending() == Ending::Complete, complete, "{}", p.display());
        }
    }
}
