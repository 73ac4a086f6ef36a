//! Relink: point database rows at the file where it really is (`moved` findings).
//!
//! Safety, in order: nothing is written without `apply`; every step is re-verified at apply
//! time (the file is still at `found_at` and is a non-empty regular file of the recorded size,
//! and the row still holds the old path, checked by the `UPDATE ... WHERE path = old` itself);
//! each batch's old and new values are appended to an undo journal and fsync'd *before* the
//! batch's transaction; each batch commits whole or not at all. Identifiers come from the
//! detected schema, never from a report or a journal; values are bound parameters.

use crate::error::{Error, Result};
use crate::model::{Fault, FileKind, Finding};
use crate::schema::{q, Schema};
use crate::source::{connect, path_checksum_expr, read_info};
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// One row to repoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelinkStep {
    /// Asset, person or user id.
    pub id: String,
    /// Which path column or `asset_file` row.
    pub file: FileKind,
    /// The path stored now.
    pub old: String,
    /// The path to store instead.
    pub new: String,
    /// Host path of the file the new value points at.
    pub found_at: PathBuf,
}

/// Steps for every `moved` finding that says where to relink.
pub fn plan(findings: &[Finding]) -> Vec<RelinkStep> {
    findings
        .iter()
        .filter(|f| f.fault == Fault::Moved)
        .filter_map(|f| {
            Some(RelinkStep {
                id: f.asset_id.clone()?,
                file: f.file?,
                old: f.db_path.clone()?,
                new: f.relink_to.clone()?,
                found_at: PathBuf::from(f.found_at.clone()?),
            })
        })
        .collect()
}

/// Reads `moved` findings from a saved JSONL report (`scan --format jsonl`).
pub fn plan_from_report(path: &Path) -> Result<Vec<RelinkStep>> {
    let io = |e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut findings = Vec::new();
    for line in std::io::BufReader::new(file).lines() {
        let line = line.map_err(io)?;
        // The summary line and unknown lines are not findings.
        if let Ok(f) = serde_json::from_str::<Finding>(&line) {
            findings.push(f);
        }
    }
    Ok(plan(&findings))
}

/// Where a file kind's path lives in the detected schema: (table, column, asset_file type).
fn target(
    schema: &Schema,
    kind: FileKind,
) -> Option<(&'static str, &'static str, Option<&'static str>)> {
    let af = |t: &'static str| schema.asset_file_table.map(|tbl| (tbl, "path", Some(t)));
    match kind {
        FileKind::Original => Some((schema.asset_table, "originalPath", None)),
        FileKind::Preview => match schema.preview_columns {
            Some((p, _)) => Some((schema.asset_table, p, None)),
            None => af("preview"),
        },
        FileKind::Thumbnail => match schema.preview_columns {
            Some((_, t)) => Some((schema.asset_table, t, None)),
            None => af("thumbnail"),
        },
        FileKind::Fullsize => af("fullsize"),
        FileKind::EncodedVideo if schema.has_encoded_video_column => {
            Some((schema.asset_table, "encodedVideoPath", None))
        }
        FileKind::EncodedVideo => af("encoded_video"),
        FileKind::Sidecar if schema.has_sidecar_column => {
            Some((schema.asset_table, "sidecarPath", None))
        }
        FileKind::Sidecar => af("sidecar"),
        FileKind::PersonThumbnail => schema
            .has_person
            .then_some(("person", "thumbnailPath", None)),
        FileKind::ProfileImage => Some((schema.user_table, "profileImagePath", None)),
    }
}

/// `UPDATE ... SET col = $1 WHERE key = $2 AND col = $3 [AND type = $4]`.
fn update_sql(schema: &Schema, kind: FileKind) -> Option<(String, Option<&'static str>)> {
    let (table, col, file_type) = target(schema, kind)?;
    let key = if file_type.is_some() { "assetId" } else { "id" };
    let mut sql = format!(
        "UPDATE {} SET {c} = $1 WHERE {} = $2::uuid AND {c} = $3",
        q(table),
        q(key),
        c = q(col)
    );
    if file_type.is_some() {
        sql.push_str(" AND type::text = $4");
    }
    Some((sql, file_type))
}

/// One journal line: what a batch is about to change, or that it committed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum JournalEntry {
    /// A row the batch is about to change (written and fsync'd before the change).
    Change {
        /// The batch number.
        batch: u64,
        /// The change.
        step: RelinkStep,
    },
    /// The batch's transaction committed.
    Committed {
        /// The batch number.
        batch: u64,
    },
}

/// What `apply` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RelinkReport {
    /// Steps written to the database.
    pub applied: Vec<RelinkStep>,
    /// Steps not applied, with the reason (e.g. the row changed since the scan).
    pub skipped: Vec<(RelinkStep, String)>,
    /// Transactions committed.
    pub batches: u64,
}

/// Why a step may not be applied now, if it may not.
fn reverify(step: &RelinkStep) -> Option<String> {
    match std::fs::symlink_metadata(&step.found_at) {
        Ok(m) if m.is_file() && m.len() > 0 => None,
        Ok(_) => Some(format!(
            "{} is no longer a non-empty regular file",
            step.found_at.display()
        )),
        Err(e) => Some(format!("{} is gone: {e}", step.found_at.display())),
    }
}

/// `fileSizeInByte`, `checksum`, and whether the checksum is of the path.
type RecordedFacts = (Option<i64>, Option<Vec<u8>>, Option<bool>);

/// For an original: does the file at `found_at` still match what Immich recorded (size, and
/// SHA-1 when the checksum is of the content)?
async fn original_mismatch(
    conn: &mut PgConnection,
    schema: &Schema,
    step: &RelinkStep,
) -> Result<Option<String>> {
    let size = match schema.exif_table {
        Some(e) => format!(
            "(SELECT \"fileSizeInByte\" FROM {} WHERE \"assetId\" = a.id)",
            q(e)
        ),
        None => "NULL::int8".into(),
    };
    let sql = format!(
        "SELECT {size}, a.checksum, {} FROM {} a WHERE a.id = $1::uuid",
        path_checksum_expr(schema),
        q(schema.asset_table)
    );
    let row: Option<RecordedFacts> = sqlx::query_as(&sql)
        .bind(&step.id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(Error::query("reading the recorded size and checksum"))?;
    let Some((want_size, checksum, of_path)) = row else {
        return Ok(Some("the asset row is gone".into()));
    };
    let have = std::fs::metadata(&step.found_at)
        .map(|m| m.len())
        .unwrap_or(0);
    if let Some(want) = want_size {
        if want as u64 != have {
            return Ok(Some(format!(
                "it has {have} bytes now, Immich recorded {want}"
            )));
        }
    }
    if let (Some(sum), Some(false) | None) = (checksum, of_path) {
        let file = std::fs::File::open(&step.found_at).map_err(|e| Error::Io {
            path: step.found_at.clone(),
            source: e,
        })?;
        let (digest, _) = crate::check::sha1_reader(file).map_err(|e| Error::Io {
            path: step.found_at.clone(),
            source: e,
        })?;
        if digest.as_slice() != sum.as_slice() {
            return Ok(Some("its sha1 no longer matches Immich's checksum".into()));
        }
    }
    Ok(None)
}

fn rt() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::InvalidArgument(format!("cannot start the database runtime: {e}")))
}

fn journal_write(journal: &mut std::fs::File, path: &Path, entries: &[JournalEntry]) -> Result<()> {
    let io = |e| Error::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let mut buf = Vec::new();
    for e in entries {
        serde_json::to_writer(&mut buf, e).map_err(|e| io(e.into()))?;
        buf.push(b'\n');
    }
    journal.write_all(&buf).map_err(io)?;
    journal.sync_data().map_err(io)
}

/// Applies `steps` in batches of `batch_size`, journaling each batch first.
pub fn apply(
    db_url: &str,
    steps: &[RelinkStep],
    journal_path: &Path,
    batch_size: usize,
) -> Result<RelinkReport> {
    let rt = rt()?;
    rt.block_on(async {
        let mut conn = connect(db_url).await?;
        let schema = read_info(&mut conn).await?.schema;
        let mut journal = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(journal_path)
            .map_err(|e| Error::Io {
                path: journal_path.to_path_buf(),
                source: e,
            })?;
        let mut report = RelinkReport::default();
        let mut ready = Vec::new();
        for step in steps {
            let mut why = reverify(step);
            if why.is_none() && step.file == FileKind::Original {
                why = original_mismatch(&mut conn, &schema, step).await?;
            }
            match (why, update_sql(&schema, step.file)) {
                (Some(why), _) => report.skipped.push((step.clone(), why)),
                (None, None) => report.skipped.push((
                    step.clone(),
                    format!("schema {} has no column for {}", schema.label, step.file),
                )),
                (None, Some(_)) => ready.push(step.clone()),
            }
        }
        for (n, chunk) in ready.chunks(batch_size.max(1)).enumerate() {
            let batch = n as u64 + 1;
            let entries: Vec<JournalEntry> = chunk
                .iter()
                .map(|s| JournalEntry::Change {
                    batch,
                    step: s.clone(),
                })
                .collect();
            // The journal is on disk before the database changes; a failed write stops here.
            journal_write(&mut journal, journal_path, &entries)?;
            let mut tx = sqlx::Connection::begin(&mut conn)
                .await
                .map_err(Error::query("starting a relink transaction"))?;
            for step in chunk {
                let (sql, file_type) = update_sql(&schema, step.file).expect("checked above");
                let mut query = sqlx::query(&sql)
                    .bind(&step.new)
                    .bind(&step.id)
                    .bind(&step.old);
                if let Some(t) = file_type {
                    query = query.bind(t);
                }
                let done = query
                    .execute(&mut *tx)
                    .await
                    .map_err(Error::query("relinking a row"))?;
                if done.rows_affected() == 1 {
                    report.applied.push(step.clone());
                } else {
                    report
                        .skipped
                        .push((step.clone(), "the row no longer holds the old path".into()));
                }
            }
            tx.commit()
                .await
                .map_err(Error::query("committing a relink batch"))?;
            journal_write(
                &mut journal,
                journal_path,
                &[JournalEntry::Committed { batch }],
            )?;
            report.batches += 1;
        }
        Ok(report)
    })
}

/// Restores what a journal changed: every row that still holds the new value gets its old
/// value back. Rows changed since are left alone, so running it twice is harmless.
pub fn undo(db_url: &str, journal_path: &Path) -> Result<u64> {
    let io = |e| Error::Io {
        path: journal_path.to_path_buf(),
        source: e,
    };
    let text = std::fs::read_to_string(journal_path).map_err(io)?;
    let mut steps = Vec::new();
    for line in text.lines() {
        // A torn last line (crash mid-write) belongs to a batch that never started.
        if let Ok(JournalEntry::Change { step, .. }) = serde_json::from_str(line) {
            steps.push(step);
        }
    }
    let rt = rt()?;
    rt.block_on(async {
        let mut conn = connect(db_url).await?;
        let schema = read_info(&mut conn).await?.schema;
        let mut tx = sqlx::Connection::begin(&mut conn)
            .await
            .map_err(Error::query("starting undo"))?;
        let mut restored = 0;
        for step in steps.iter().rev() {
            let Some((sql, file_type)) = update_sql(&schema, step.file) else {
                continue;
            };
            let mut query = sqlx::query(&sql)
                .bind(&step.old)
                .bind(&step.id)
                .bind(&step.new);
            if let Some(t) = file_type {
                query = query.bind(t);
            }
            restored += query
                .execute(&mut *tx)
                .await
                .map_err(Error::query("undoing a relink"))?
                .rows_affected();
        }
        tx.commit().await.map_err(Error::query("committing undo"))?;
        Ok(restored)
    })
}
