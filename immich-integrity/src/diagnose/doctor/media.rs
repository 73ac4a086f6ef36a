//! Where the media is: the location the database stores against the folder given.

use super::*;
use crate::db::schema::{q, Schema};
use crate::fs::pathmap::MEDIA_FOLDERS;
use sqlx::PgConnection;
use std::path::Path;

/// Rows per stored media-root prefix, over uploaded originals and asset files, in one aggregate
/// query. A path under one of `known` roots (the saved and configured media locations and
/// Immich's default spellings; longest first) counts under that root; any other path counts
/// under whatever precedes its first top folder (`/upload/`, `/thumbs/`, ...).
pub(crate) async fn stored_prefixes(
    conn: &mut PgConnection,
    schema: &Schema,
    known: &[&str],
) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let folders = MEDIA_FOLDERS.join("|");
    let mut known: Vec<String> = known
        .iter()
        .map(|r| r.trim_end_matches('/').to_string())
        .filter(|r| !r.is_empty())
        .collect();
    known.sort_by_key(|r| std::cmp::Reverse(r.len()));
    known.dedup();
    let mut parts = vec![format!(
        "SELECT \"originalPath\" AS p FROM {} WHERE \"libraryId\" IS NULL",
        q(schema.asset_table)
    )];
    if let Some(t) = schema.asset_file_table {
        parts.push(format!("SELECT path FROM {}", q(t)));
    }
    // One CASE arm per known root, each bound as a parameter: a plain scan, no per-row subquery.
    let arms: String = (0..known.len())
        .map(|i| format!("WHEN starts_with(p, ${} || '/') THEN ${} ", i + 1, i + 1))
        .collect();
    let sql = format!(
        "SELECT CASE {arms}\
            ELSE COALESCE(substring(p from '^(.*?)/(?:{folders})/'), '?') END AS prefix, \
            count(*) \
         FROM ({}) s GROUP BY 1 ORDER BY 2 DESC, 1",
        parts.join(" UNION ALL ")
    );
    let mut query = sqlx::query_as(&sql);
    for r in &known {
        query = query.bind(r);
    }
    query.fetch_all(&mut *conn).await
}

/// `upload` and `/usr/src/app/upload` name the same folder (the container's working directory
/// is `/usr/src/app`).
pub(crate) fn same_root(a: &str, b: &str) -> bool {
    let norm = |s: &str| {
        let s = s.trim_end_matches('/');
        if s == "upload" {
            "/usr/src/app/upload".to_string()
        } else {
            s.to_string()
        }
    };
    norm(a) == norm(b)
}

pub(super) fn media_location_check(
    opts: &DoctorOptions,
    db: &DbFacts,
    host: Option<&Path>,
) -> Check {
    const NAME: &str = "media location";
    let saved = db.info.media_location.as_deref();
    let prefixes = match &db.prefixes {
        Ok(p) => p,
        Err(e) => {
            return Check::warn(
                NAME,
                format!("cannot count the stored paths per root: {e}"),
                "run the doctor as the database owner (DB_USERNAME)",
            )
        }
    };
    let total: i64 = prefixes.iter().map(|(_, n)| n).sum();
    let shown: Vec<String> = prefixes
        .iter()
        .map(|(p, n)| format!("{n} under {p}"))
        .collect();
    let dominant = prefixes.first().map(|(p, _)| p.as_str());
    // The root the server compares the stored paths with: the saved one, or (before v1.137,
    // when nothing is saved) the root most paths use.
    let expected = saved.or(dominant);
    let boot_error = "Immich stops at boot with \"Detected an inconsistent media location\"";
    let mixed = prefixes.len() > 1;
    if let Some(exp) = expected {
        let off: i64 = prefixes
            .iter()
            .filter(|(p, _)| !same_root(p, exp))
            .map(|(_, n)| n)
            .sum();
        if off > 0 && !mixed {
            // Every path agrees on a root, but not the one saved: the saved value is stale.
            let root = dominant.unwrap_or("?");
            return Check::fail(
                NAME,
                format!(
                    "all {total} stored paths start with {root} but MediaLocation in \
                     system_metadata is {exp}: {boot_error}"
                ),
                format!(
                    "with Immich stopped and a database backup taken, save the root the paths \
                     use: UPDATE system_metadata SET value = '{{\"location\": \"{root}\"}}' \
                     WHERE key = 'MediaLocation'; Immich moves them to its own root at the next \
                     start"
                ),
            );
        }
        if off > 0 {
            let against = match saved {
                Some(s) => format!("MediaLocation in system_metadata is {s}"),
                None => format!("most start with {exp}"),
            };
            return Check::fail(
                NAME,
                format!(
                    "{off} of {total} stored paths do not start with the media location ({}; \
                     {against}): the server cannot open them, and {}",
                    shown.join(", "),
                    if saved.is_some() {
                        boot_error.to_string()
                    } else {
                        format!("{boot_error} when it samples one of them")
                    }
                ),
                format!(
                    "{} reports those rows as `moved` and {} rewrites them under {exp}",
                    crate::error::Hint::Scan,
                    crate::error::Hint::RelinkApply
                ),
            );
        }
    }
    if let (Some(s), Some(env)) = (expected, opts.media_location.as_deref()) {
        if !same_root(s, env) {
            return Check::warn(
                NAME,
                format!(
                    "the stored paths use {s} but IMMICH_MEDIA_LOCATION is {env}: the next \
                     start rewrites every path from {s} to {env}"
                ),
                "make sure that is intended (back up the database first), or set \
                 IMMICH_MEDIA_LOCATION back",
            );
        }
    }
    if let Some(h) = host.filter(|h| !h.is_dir()) {
        return Check::fail(
            NAME,
            format!("the media root {} is not a directory", h.display()),
            format!(
                "pass the host folder of UPLOAD_LOCATION as {}",
                crate::error::Hint::MediaRoot
            ),
        );
    }
    let Some(host) = host else {
        return Check::warn(
            NAME,
            format!(
                "stored paths: {}; no media root given to compare with",
                if shown.is_empty() {
                    "none".into()
                } else {
                    shown.join(", ")
                }
            ),
            format!(
                "pass {} (UPLOAD_LOCATION) or {}",
                crate::error::Hint::MediaRoot,
                crate::error::Hint::EnvFile
            ),
        );
    };
    let marked = MEDIA_FOLDERS
        .iter()
        .filter(|f| host.join(f).join(".immich").is_file())
        .count();
    if marked == 0 {
        return Check::fail(
            NAME,
            format!(
                "{} holds none of Immich's folders with a .immich marker: it is not the media \
                 root the database's paths refer to",
                host.display()
            ),
            format!(
                "pass the host folder of UPLOAD_LOCATION as {} (the one holding upload/, \
                 thumbs/, library/ ...)",
                crate::error::Hint::MediaRoot
            ),
        );
    }
    Check::ok(
        NAME,
        format!(
            "{} -> {} ({}; saved MediaLocation {})",
            expected.unwrap_or("(no paths stored)"),
            host.display(),
            if shown.is_empty() {
                "no paths stored".into()
            } else {
                shown.join(", ")
            },
            saved.unwrap_or("none")
        ),
    )
}
