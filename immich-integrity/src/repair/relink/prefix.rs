//! Prefix rewrites: a whole top folder moved (`upload/` restored as `upload/upload/`, or every row
//! still spelled `/usr/src/app/upload/thumbs/` while the server uses `/data/thumbs/`).

use super::*;

/// Media-root spellings, longest first, that a stored path may start with.
const MEDIA_SPELLINGS: [&str; 3] = ["/usr/src/app/upload", "/data", "upload"];

/// One rewrite of every row under `old_prefix` to `new_prefix` (both end with `/`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrefixRewrite {
    /// The stored-path prefix to replace, e.g. `/data/upload/`.
    pub old_prefix: String,
    /// What replaces it, e.g. `/data/upload/upload/`.
    pub new_prefix: String,
    /// The moved findings it stands for; each is `old_prefix + rest -> new_prefix + rest`.
    pub steps: Vec<RelinkStep>,
}

/// What relink will do: prefix rewrites, then single rows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelinkPlan {
    /// Whole-folder moves, each applied as one `UPDATE` per batch.
    pub prefixes: Vec<PrefixRewrite>,
    /// Single-row changes not covered by a prefix rewrite.
    pub rows: Vec<RelinkStep>,
}

/// `(old prefix, new prefix, host folder of the new prefix)` of one step: the old prefix is the
/// media spelling plus the top folder (`/data/upload/`), and the rest of the path is the same
/// on both sides and on the host.
fn step_prefix(step: &RelinkStep) -> Option<(String, String, PathBuf)> {
    let spelling = MEDIA_SPELLINGS
        .iter()
        .find(|m| step.old.starts_with(&format!("{m}/")))?;
    let after = &step.old[spelling.len() + 1..];
    let top = after.split('/').next().filter(|t| !t.is_empty())?;
    let p_len = spelling.len() + 1 + top.len() + 1;
    if step.old.len() <= p_len || step.old.as_bytes()[p_len - 1] != b'/' {
        return None;
    }
    let rest = &step.old[p_len..];
    let q = step.new.strip_suffix(rest)?;
    if !q.ends_with('/') || q.len() < 2 {
        return None;
    }
    let found = step.found_at.to_str()?;
    let host = found.strip_suffix(rest)?;
    Some((
        step.old[..p_len].to_string(),
        q.to_string(),
        PathBuf::from(host),
    ))
}

/// Splits steps into prefix rewrites and single rows. A group becomes a rewrite when all its
/// steps share the old top-folder prefix, the new prefix and the host folder, and there are at
/// least `min_rows` of them (0 turns rewrites off). Whether *every* row under the prefix is in
/// the group is checked against the database, in [`check_prefixes`] and again at apply time.
pub fn plan_prefixes(steps: Vec<RelinkStep>, min_rows: usize) -> RelinkPlan {
    use std::collections::BTreeMap;
    /// (new prefix, host folder of the new prefix)
    type Target = (String, PathBuf);
    // Steps carry their report position so the row-by-row rest keeps the report's order.
    let mut groups: BTreeMap<String, Vec<(usize, RelinkStep, Target)>> = BTreeMap::new();
    let mut rows = Vec::new();
    for (i, s) in steps.into_iter().enumerate() {
        match step_prefix(&s) {
            Some((p, q, host)) => groups.entry(p).or_default().push((i, s, (q, host))),
            None => rows.push((i, s)),
        }
    }
    let mut prefixes = Vec::new();
    for (p, members) in groups {
        let first = members[0].2.clone();
        let uniform = members.iter().all(|(_, _, t)| *t == first);
        if min_rows > 0 && uniform && members.len() >= min_rows {
            prefixes.push(PrefixRewrite {
                old_prefix: p,
                new_prefix: first.0,
                steps: members.into_iter().map(|(_, s, _)| s).collect(),
            });
        } else {
            rows.extend(members.into_iter().map(|(i, s, _)| (i, s)));
        }
    }
    rows.sort_by_key(|(i, _)| *i);
    RelinkPlan {
        prefixes,
        rows: rows.into_iter().map(|(_, s)| s).collect(),
    }
}

/// `LIKE` pattern matching everything that starts with `prefix` (escape char `\`).
fn like_prefix(prefix: &str) -> String {
    let mut s = String::with_capacity(prefix.len() + 2);
    for c in prefix.chars() {
        if matches!(c, '\\' | '%' | '_') {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('%');
    s
}

/// Every distinct place a path lives in the detected schema: (kind, table, column, type).
pub(super) fn targets(
    schema: &Schema,
) -> Vec<(FileKind, &'static str, &'static str, Option<&'static str>)> {
    let mut seen = std::collections::HashSet::new();
    FileKind::ALL
        .into_iter()
        .filter_map(|k| target(schema, k).map(|(t, c, ty)| (k, t, c, ty)))
        .filter(|(_, t, c, ty)| seen.insert((*t, *c, *ty)))
        .collect()
}

/// The id column a finding's id matches in `table` (for a v3.2 person: its group; the path
/// it held tells owners apart).
fn key_of(schema: &Schema, table: &str, file_type: Option<&str>) -> &'static str {
    match file_type {
        Some(_) => "assetId",
        None if table == "person" => schema.person_key.id_column(),
        None => "id",
    }
}

/// The id and path of every row of one path column under a `LIKE` pattern (`$1`).
pub(super) fn rows_under_sql(
    schema: &Schema,
    table: &str,
    col: &str,
    file_type: Option<&str>,
) -> String {
    let mut sql = format!(
        "SELECT {}::text, {c} FROM {} WHERE {c} LIKE $1 ESCAPE '\\'",
        q(key_of(schema, table, file_type)),
        q(table),
        c = q(col)
    );
    if file_type.is_some() {
        sql.push_str(" AND type::text = $2");
    }
    sql
}

/// One batch of a prefix rewrite: `$1` new prefix, `$2` old prefix, `$3` its `LIKE`
/// pattern, `$4`/`$5` the batch's ids and old paths, `$6` the `asset_file` type.
pub(super) fn prefix_sql(
    schema: &Schema,
    table: &str,
    col: &str,
    file_type: Option<&str>,
) -> String {
    let key = q(key_of(schema, table, file_type));
    let mut sql = format!(
        "UPDATE {t} SET {c} = $1 || substr({c}, length($2) + 1) \
         WHERE {c} LIKE $3 ESCAPE '\\' \
         AND ({key}, {c}) IN (SELECT * FROM unnest($4::text[]::uuid[], $5::text[]))",
        t = q(table),
        c = q(col),
    );
    if file_type.is_some() {
        sql.push_str(" AND type::text = $6");
    }
    sql.push_str(&format!(" RETURNING {key}::text, {}", q(col)));
    sql
}

/// Every row under `prefix`, as (kind, id, path), in every path column of the schema.
async fn rows_under(
    conn: &mut PgConnection,
    schema: &Schema,
    prefix: &str,
) -> Result<Vec<(FileKind, String, String)>> {
    let mut out = Vec::new();
    for (kind, table, col, file_type) in targets(schema) {
        let sql = rows_under_sql(schema, table, col, file_type);
        let mut query = sqlx::query_as::<_, (String, String)>(&sql).bind(like_prefix(prefix));
        if let Some(t) = file_type {
            query = query.bind(t);
        }
        let rows = query
            .fetch_all(&mut *conn)
            .await
            .map_err(Error::query("listing rows under a prefix"))?;
        out.extend(rows.into_iter().map(|(id, p)| (kind, id, p)));
    }
    Ok(out)
}

/// Whether `p` may be applied as one rewrite now: the rows under its old prefix are exactly its
/// steps, every step's file is at its new place (one stat each), and a sample of originals still
/// matches Immich's recorded size and SHA-1. `Ok(Err(why))` when not; `Ok(Ok(rows))` when so.
pub(super) async fn verify_prefix(
    conn: &mut PgConnection,
    schema: &Schema,
    p: &PrefixRewrite,
) -> Result<std::result::Result<u64, String>> {
    if let Err(why) = same_rows(conn, schema, p).await? {
        return Ok(Err(why));
    }
    for step in &p.steps {
        if let Some(why) = reverify(step) {
            return Ok(Err(why));
        }
    }
    let originals: Vec<&RelinkStep> = p
        .steps
        .iter()
        .filter(|s| s.file == FileKind::Original)
        .collect();
    let every = originals.len().div_ceil(PREFIX_SAMPLE).max(1);
    for step in originals.iter().step_by(every) {
        if let Some(why) = original_mismatch(conn, schema, step).await? {
            return Ok(Err(format!("sample {}: {why}", step.found_at.display())));
        }
    }
    Ok(Ok(p.steps.len() as u64))
}

/// Originals whose size and SHA-1 are re-checked before a prefix rewrite.
const PREFIX_SAMPLE: usize = 16;

/// The rows under the old prefix are exactly the rewrite's steps (no more, no fewer).
async fn same_rows(
    conn: &mut PgConnection,
    schema: &Schema,
    p: &PrefixRewrite,
) -> Result<std::result::Result<(), String>> {
    use std::collections::HashSet;
    let in_db: HashSet<(FileKind, String, String)> = rows_under(conn, schema, &p.old_prefix)
        .await?
        .into_iter()
        .collect();
    let planned: HashSet<(FileKind, String, String)> = p
        .steps
        .iter()
        .map(|s| (s.file, s.id.clone(), s.old.clone()))
        .collect();
    let extra = in_db.difference(&planned).count();
    let gone = planned.difference(&in_db).count();
    Ok(match (extra, gone) {
        (0, 0) => Ok(()),
        (n, 0) => Err(format!(
            "{n} rows under {} are not moved findings (trashed assets are only scanned with \
             {})",
            p.old_prefix,
            crate::error::Hint::IncludeTrashed
        )),
        (_, n) => Err(format!("{n} planned rows no longer hold their old path")),
    })
}

/// What the dry run shows for one prefix rewrite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PrefixCheck {
    /// The prefix the rewrite replaces.
    pub old_prefix: String,
    /// The prefix it writes instead.
    pub new_prefix: String,
    /// Rows the rewrite would change, or why it cannot be one rewrite.
    pub verdict: std::result::Result<u64, String>,
}

/// Read-only check of every prefix rewrite of `plan` (for the dry run).
pub fn check_prefixes(db_url: &str, plan: &RelinkPlan) -> Result<Vec<PrefixCheck>> {
    let rt = runtime()?;
    rt.block_on(async {
        let mut conn = connect(db_url).await?;
        let schema = read_info(&mut conn).await?.schema;
        let mut out = Vec::new();
        for p in &plan.prefixes {
            out.push(PrefixCheck {
                old_prefix: p.old_prefix.clone(),
                new_prefix: p.new_prefix.clone(),
                verdict: verify_prefix(&mut conn, &schema, p).await?,
            });
        }
        Ok(out)
    })
}

/// Applies one verified prefix rewrite, `batch_size` rows per statement and transaction:
/// `UPDATE t SET col = $new || substr(col, length($old) + 1) WHERE col LIKE $old% AND (key, col)
/// IN (this batch's rows)`. Each batch's rows are journaled one by one first, so `undo`
/// restores exactly the values each row had.
pub(super) async fn apply_prefix(
    conn: &mut PgConnection,
    schema: &Schema,
    p: &PrefixRewrite,
    journal: &mut Journal,
    batching: Batching<'_>,
    report: &mut RelinkReport,
) -> Result<()> {
    let mut applied_total = 0u64;
    for (_, table, col, file_type) in targets(schema) {
        let mut steps: Vec<&RelinkStep> = p
            .steps
            .iter()
            .filter(|s| target(schema, s.file) == Some((table, col, file_type)))
            .collect();
        steps.sort_by(|a, b| (&a.id, &a.old).cmp(&(&b.id, &b.old)));
        let sql = prefix_sql(schema, table, col, file_type);
        for chunk in steps.chunks(batching.size.max(1)) {
            if batching.cancelled() {
                return journal.interrupted(report);
            }
            let batch = journal.take_batch();
            let mut entries = vec![JournalEntry::Prefix {
                batch,
                old_prefix: p.old_prefix.clone(),
                new_prefix: p.new_prefix.clone(),
                rows: chunk.len() as u64,
            }];
            entries.extend(chunk.iter().map(|s| JournalEntry::Change {
                batch,
                step: (*s).clone(),
            }));
            journal.write(&entries)?;
            let ids: Vec<&str> = chunk.iter().map(|s| s.id.as_str()).collect();
            let olds: Vec<&str> = chunk.iter().map(|s| s.old.as_str()).collect();
            let mut tx = sqlx::Connection::begin(&mut *conn)
                .await
                .map_err(Error::query("starting a prefix-rewrite transaction"))?;
            let mut query = sqlx::query_as::<_, (String, String)>(&sql)
                .bind(&p.new_prefix)
                .bind(&p.old_prefix)
                .bind(like_prefix(&p.old_prefix))
                .bind(&ids)
                .bind(&olds);
            if let Some(t) = file_type {
                query = query.bind(t);
            }
            let done: std::collections::HashSet<(String, String)> = match batching
                .guard
                .run(batching.cancel, query.fetch_all(&mut *tx))
                .await
            {
                Ok(rows) => rows.into_iter().collect(),
                // A signal cancelled the statement (it waited on a lock): roll back whole.
                Err(_) if batching.cancelled() => {
                    return journal.roll_back(tx, batch, report).await;
                }
                Err(e) => return Err(Error::query("rewriting a path prefix")(e)),
            };
            if batching.cancelled() {
                return journal.roll_back(tx, batch, report).await;
            }
            tx.commit()
                .await
                .map_err(Error::query("committing a prefix-rewrite batch"))?;
            report.batches += 1;
            let unchanged: Vec<u64> = chunk
                .iter()
                .enumerate()
                .filter(|(_, s)| !done.contains(&(s.id.clone(), s.new.clone())))
                .map(|(i, _)| i as u64)
                .collect();
            journal.committed(batch, unchanged)?;
            for s in chunk {
                if done.contains(&(s.id.clone(), s.new.clone())) {
                    report.applied.push((*s).clone());
                    applied_total += 1;
                } else {
                    report
                        .skipped
                        .push(((*s).clone(), "the row no longer holds the old path".into()));
                }
            }
        }
    }
    report
        .prefix_rewrites
        .push((p.old_prefix.clone(), p.new_prefix.clone(), applied_total));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(old: &str, new: &str, found: &str) -> RelinkStep {
        RelinkStep {
            id: "00000000-0000-0000-0000-000000000001".into(),
            file: FileKind::Original,
            old: old.into(),
            new: new.into(),
            found_at: PathBuf::from(found),
            owner: None,
            root: Some(PathBuf::from("/")),
            row: None,
        }
    }

    #[test]
    fn prefix_of_doubled_and_stale_moves() {
        let s = step(
            "/data/upload/u/ab/x.jpg",
            "/data/upload/upload/u/ab/x.jpg",
            "/srv/m/upload/upload/u/ab/x.jpg",
        );
        assert_eq!(
            step_prefix(&s),
            Some((
                "/data/upload/".into(),
                "/data/upload/upload/".into(),
                PathBuf::from("/srv/m/upload/upload/")
            ))
        );
        let s = step(
            "upload/upload/u/x.jpg",
            "upload/upload/upload/u/x.jpg",
            "/m/upload/upload/u/x.jpg",
        );
        assert_eq!(step_prefix(&s).unwrap().0, "upload/upload/");
        assert_eq!(step_prefix(&s).unwrap().1, "upload/upload/upload/");
        let s = step(
            "/usr/src/app/upload/thumbs/u/t.webp",
            "/data/thumbs/u/t.webp",
            "/m/thumbs/u/t.webp",
        );
        assert_eq!(step_prefix(&s).unwrap().0, "/usr/src/app/upload/thumbs/");
        assert_eq!(step_prefix(&s).unwrap().1, "/data/thumbs/");
        // External library paths have no media prefix: never a prefix rewrite.
        assert_eq!(
            step_prefix(&step("/mnt/p/a.jpg", "/mnt/p/p/a.jpg", "/x/p/a.jpg")),
            None
        );
    }

    #[test]
    fn groups_need_one_target_and_enough_rows() {
        let a = step(
            "/data/upload/u/a.jpg",
            "/data/upload/upload/u/a.jpg",
            "/m/upload/upload/u/a.jpg",
        );
        let b = step(
            "/data/upload/u/b.jpg",
            "/data/upload/upload/u/b.jpg",
            "/m/upload/upload/u/b.jpg",
        );
        let plan = plan_prefixes(vec![a.clone(), b.clone()], 2);
        assert_eq!(plan.prefixes.len(), 1);
        assert_eq!(plan.prefixes[0].steps.len(), 2);
        assert!(plan.rows.is_empty());
        assert_eq!(
            plan_prefixes(vec![a.clone(), b.clone()], 3).prefixes.len(),
            0
        );
        assert_eq!(plan_prefixes(vec![a.clone(), b.clone()], 0).rows.len(), 2);
        // One step elsewhere: the group is not uniform, so every row goes one by one.
        let c = step(
            "/data/upload/u/c.jpg",
            "/data/upload/restored/u/c.jpg",
            "/m/upload/restored/u/c.jpg",
        );
        let plan = plan_prefixes(vec![a, b, c], 2);
        assert!(plan.prefixes.is_empty());
        assert_eq!(plan.rows.len(), 3);
    }

    #[test]
    fn like_patterns_are_escaped() {
        assert_eq!(like_prefix("/data/up_load%/"), "/data/up\\_load\\%/%");
        assert_eq!(like_prefix("a\\b/"), "a\\\\b/%");
    }
}
