//! Step 2 of the guide: what the server's log says. The last lines of the server (and, before
//! v1.106, microservices) containers, or a log file, sorted into the guide's causes; each with
//! its count, first and last time, one example, and for the paths it names the finding our own
//! checks give for them (an ENOENT on a file that sits in a nested folder is that fault).

use super::containers::Compose;
use super::*;
use crate::docker::{LogLine, LogStream};
use crate::fs::access::Identity;

/// One of the guide's causes: how to recognise its lines and what to do.
struct Cause {
    name: &'static str,
    what: &'static str,
    matches: fn(&str) -> bool,
    fix: &'static str,
}

const CAUSES: &[Cause] = &[
    Cause {
        name: "database connection refused",
        what: "the server could not reach PostgreSQL",
        matches: |l| {
            (l.contains("ECONNREFUSED") && (l.contains(":5432") || l.contains("database")))
                || l.contains("database connection refused")
                || (l.contains("ENOTFOUND") && l.contains("database"))
                || l.contains("password authentication failed")
        },
        fix: "see the `database` and `container database` lines: start PostgreSQL (docker compose up -d database) and check DB_HOSTNAME / DB_PASSWORD in the .env",
    },
    Cause {
        name: "redis connection refused",
        what: "the server could not reach Redis (jobs do not run)",
        matches: |l| l.contains("ECONNREFUSED") && (l.contains(":6379") || l.contains("redis")),
        fix: "start Redis (docker compose up -d redis) and check REDIS_HOSTNAME in the .env",
    },
    Cause {
        name: "relation does not exist",
        what: "a table the server needs is missing: a migration failed or the database is from another version",
        matches: |l| l.contains("relation \"") && l.contains("does not exist"),
        fix: "see the `migrations` and `versions` lines; restore the database backup made before the upgrade or run the release the database belongs to",
    },
    Cause {
        name: "EACCES",
        what: "the server may not read or write a file",
        matches: |l| {
            l.contains("EACCES")
                || l.contains("EPERM")
                || l.contains("permission denied")
                || l.contains("operation not permitted")
        },
        fix: "give the server's user access (see the `folder` lines for the owner and mode it needs)",
    },
    Cause {
        name: "ENOENT",
        what: "the server looked for a file that is not there",
        matches: |l| l.contains("ENOENT") || l.contains("no such file or directory"),
        fix: "run `immich-integrity scan`: it names every missing file and the repair (relink for moved or nested files, restore from backup otherwise)",
    },
    Cause {
        name: "failed to generate thumbnail",
        what: "thumbnail or preview generation failed",
        matches: |l| {
            let l = l.to_ascii_lowercase();
            l.contains("failed to generate thumbnail")
                || l.contains("unable to generate thumbnail")
                || (l.contains("unable to run job handler") && l.contains("thumbnail"))
        },
        fix: "fix the cause named in the example (a missing or unreadable original, a decoder error), then run the thumbnail job for missing assets (Administration > Jobs) or `immich-integrity regenerate`",
    },
];

/// The log lines to classify, and what they came from; `Err` when there is no source.
fn read_lines(opts: &DoctorOptions, compose: &Compose) -> Result<(Vec<LogLine>, String), String> {
    if let Some(file) = &opts.log_file {
        let text = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let mut lines = crate::docker::raw_log_lines(&text, LogStream::Stdout);
        let skip = lines.len().saturating_sub(opts.log_lines);
        lines.drain(..skip);
        return Ok((lines, format!("{}", file.display())));
    }
    let client = compose
        .client
        .as_ref()
        .ok_or_else(|| match &compose.containers {
            Err(e) => e.clone(),
            Ok(_) => "no Docker socket".into(),
        })?;
    if let Err(e) = &compose.containers {
        return Err(e.clone());
    }
    let mut lines = Vec::new();
    let mut from = Vec::new();
    for service in ["immich-server", "immich-microservices"] {
        if let Some(c) = compose.service(service) {
            let got = client
                .logs(&c.id, opts.log_lines, c.config.tty)
                .map_err(|e| e.to_string())?;
            from.push(format!("{} lines of {}", got.len(), c.short_name()));
            lines.extend(got);
        }
    }
    if from.is_empty() {
        return Err("the project has no immich-server container; pass --log-file".into());
    }
    Ok((lines, from.join(", ")))
}

/// The path an `ENOENT`/`EACCES` line names: `..., open '/data/upload/x.jpg'`.
fn named_path(line: &str) -> Option<&str> {
    let start = line.find(", ").map(|i| i + 2)?;
    let rest = &line[start..];
    let q = rest.find('\'')?;
    let rest = &rest[q + 1..];
    let end = rest.find('\'')?;
    let p = &rest[..end];
    p.starts_with('/').then_some(p)
}

/// Our own finding for a container path a log line names.
fn path_finding(
    opts: &DoctorOptions,
    media_host: Option<&Path>,
    cause: &str,
    path: &str,
    failed: &[String],
) -> String {
    let Some(host) = host_path(opts, media_host, path) else {
        return "outside the media root and the mapped folders".into();
    };
    if cause == "EACCES" {
        let who = opts.as_user.clone().unwrap_or_else(Identity::current);
        return match can_read(&host, &who) {
            Ok(true) => format!("readable by uid {} now", who.uid),
            Ok(false) => format!(
                "not readable by uid {} (the folder checks say what to change)",
                who.uid
            ),
            Err(e) => format!("cannot be checked: {e}"),
        };
    }
    if host.exists() {
        return "present on disk now".into();
    }
    // A nested top folder: <root>/upload/upload/... holds what <root>/upload/... should.
    if let (Some(root), Ok(rel)) = (
        media_host,
        host.strip_prefix(media_host.unwrap_or(Path::new("/"))),
    ) {
        if let Some(top) = rel.components().next() {
            let nested = root.join(top).join(rel);
            if nested.exists() {
                let top = top.as_os_str().to_string_lossy();
                // Said once: the folder line above already names this fault and its repair.
                let folder = format!("folder {top}");
                return if failed.contains(&folder) {
                    format!("nested folder {top}/{top}, the fault of the `{folder}` line (relink repairs it)")
                } else {
                    format!("nested folder {top}/{top} (the same fault as scan's `moved` files; relink repairs it)")
                };
            }
        }
    }
    "missing on disk (scan reports it as missing)".into()
}

/// Mode bits of the file and the search bit of every folder above it, for `who`.
fn can_read(path: &Path, who: &Identity) -> std::io::Result<bool> {
    use crate::fs::access::{READ, SEARCH};
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    if !who.allows(m.mode(), m.uid(), m.gid(), READ) {
        return Ok(false);
    }
    for dir in path.ancestors().skip(1) {
        let m = std::fs::metadata(dir)?;
        if !who.allows(m.mode(), m.uid(), m.gid(), SEARCH) {
            return Ok(false);
        }
    }
    Ok(true)
}

fn host_path(opts: &DoctorOptions, media_host: Option<&Path>, path: &str) -> Option<PathBuf> {
    let mut roots: Vec<(String, PathBuf)> = Vec::new();
    if let Some(h) = media_host {
        for c in ["/data", "/usr/src/app/upload"]
            .into_iter()
            .map(String::from)
            .chain(opts.media_location.clone())
        {
            roots.push((c, h.to_path_buf()));
        }
    }
    roots.extend(opts.maps.iter().cloned());
    roots.iter().find_map(|(c, h)| {
        let c = c.trim_end_matches('/');
        path.strip_prefix(c)
            .filter(|r| r.is_empty() || r.starts_with('/'))
            .map(|r| h.join(r.trim_start_matches('/')))
    })
}

/// One check per cause found (none when the log is clean: one OK line).
pub(super) fn log_checks(
    opts: &DoctorOptions,
    compose: &Compose,
    media_host: Option<&Path>,
    checks: &mut Vec<Check>,
) {
    let (lines, from) = match read_lines(opts, compose) {
        Ok(l) => l,
        Err(e) => {
            checks.push(Check::warn(
                "logs",
                format!("could not check: {e}"),
                "pass --log-file with the server's log (docker compose logs immich-server > server.log), or run doctor where Docker's socket is",
            ));
            return;
        }
    };
    // The checks that already failed (a nested folder is said there first).
    let failed: Vec<String> = checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .map(|c| c.name.clone())
        .collect();
    let mut found = false;
    for cause in CAUSES {
        let hits: Vec<&LogLine> = lines
            .iter()
            .filter(|l| first_cause(&l.text).is_some_and(|c| c.name == cause.name))
            .collect();
        let (Some(first), Some(last)) = (hits.first(), hits.last()) else {
            continue;
        };
        found = true;
        let when = |l: &LogLine| {
            l.time
                .clone()
                .or_else(|| nest_time(&l.text))
                .unwrap_or_else(|| "(no time)".into())
        };
        let example: String = first.text.trim().chars().take(240).collect();
        let mut message = format!(
            "{} {} from {} to {}: {}; e.g. \"{example}\"",
            hits.len(),
            if hits.len() == 1 { "line" } else { "lines" },
            when(first),
            when(last),
            cause.what
        );
        if matches!(cause.name, "ENOENT" | "EACCES") {
            let mut paths: Vec<&str> = hits.iter().filter_map(|l| named_path(&l.text)).collect();
            paths.sort();
            paths.dedup();
            let mut by_finding: Vec<(String, usize)> = Vec::new();
            for p in paths.iter().take(200) {
                let f = path_finding(opts, media_host, cause.name, p, &failed);
                match by_finding.iter_mut().find(|(k, _)| *k == f) {
                    Some((_, n)) => *n += 1,
                    None => by_finding.push((f, 1)),
                }
            }
            if !by_finding.is_empty() {
                let parts: Vec<String> = by_finding
                    .iter()
                    .map(|(f, n)| format!("{n} {}: {f}", if *n == 1 { "path" } else { "paths" }))
                    .collect();
                message.push_str(&format!("; {}", parts.join("; ")));
            }
        }
        checks.push(Check::fail(
            format!("logs {}", cause.name),
            message,
            cause.fix,
        ));
    }
    if !found {
        checks.push(Check::ok(
            "logs",
            format!("{from}: none of the known causes (ENOENT, EACCES, database or Redis refused, missing relation, failed thumbnail)"),
        ));
    }
}

/// The time NestJS's logger writes: `[Nest] 7  - 11/26/2026, 9:00:01 AM     ERROR [...]`.
fn nest_time(text: &str) -> Option<String> {
    let rest = &text[text.find("[Nest]")?..];
    let rest = &rest[rest.find(" - ")? + 3..];
    let t = rest.split("  ").next()?.trim();
    (t.contains(',') && t.contains(':')).then(|| t.to_string())
}

fn first_cause(text: &str) -> Option<&'static Cause> {
    CAUSES.iter().find(|c| (c.matches)(text))
}
