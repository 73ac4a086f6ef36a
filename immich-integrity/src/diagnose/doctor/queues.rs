//! Step 6 of the guide: failed or stuck background jobs. Immich's jobs are BullMQ queues in
//! Redis under the prefix `immich_bull` (`bull.config.prefix` in Immich's config repository,
//! one BullMQ `Worker` per `QueueName`; Immich v2.2.2 depends on bullmq ^5.51). BullMQ's key
//! layout, as its Lua scripts use it (`getTargetQueueList`, `isQueuePaused`): per queue, under
//! `PREFIX:QUEUE:`, `wait`, `paused`, `active` (lists), `prioritized`, `delayed`, `failed`, `completed`
//! (sorted sets), `meta` (hash; the field `paused` exists while the queue is paused), and one
//! hash per job `PREFIX:QUEUE:ID` with `name`, `data`, `timestamp`, `processedOn`,
//! `finishedOn`, `failedReason`; `PREFIX:QUEUE:ID:lock` exists while a worker holds the job.

use super::resp::{Redis, Reply};
use super::*;
use crate::docker::compose::is_service_name;
use crate::docker::discovery::{route, Route};

/// Immich's queue names (`QueueName` in server/src/enum.ts, v1.118 to v2.x); queues found
/// under the prefix beyond these are checked too.
const IMMICH_QUEUES: &[&str] = &[
    "thumbnailGeneration",
    "metadataExtraction",
    "videoConversion",
    "faceDetection",
    "facialRecognition",
    "smartSearch",
    "duplicateDetection",
    "backgroundTask",
    "storageTemplateMigration",
    "migration",
    "search",
    "sidecar",
    "library",
    "notifications",
    "backupDatabase",
    "ocr",
    "workflow",
    "editor",
];

/// Jobs sampled per queue for failure reasons and stuck jobs.
const SAMPLE: usize = 500;

#[derive(Debug, Default)]
struct Queue {
    waiting: i64,
    active: i64,
    delayed: i64,
    failed: i64,
    paused: bool,
    reasons: Vec<(String, usize)>,
    /// Active jobs processed longer than the threshold: (count, oldest age, its name, locked).
    stuck: Option<(usize, Duration, String, bool)>,
}

fn read_queue(
    r: &mut Redis,
    key: &str,
    stuck_after: Duration,
    now_ms: i64,
) -> Result<Queue, String> {
    let n = |r: &mut Redis, cmd: &str, suffix: &str| -> Result<i64, String> {
        Ok(r.call(&[cmd, &format!("{key}:{suffix}")])?.int())
    };
    let mut q = Queue {
        waiting: n(r, "LLEN", "wait")? + n(r, "LLEN", "paused")? + n(r, "ZCARD", "prioritized")?,
        active: n(r, "LLEN", "active")?,
        delayed: n(r, "ZCARD", "delayed")?,
        failed: n(r, "ZCARD", "failed")?,
        paused: r
            .call(&["HEXISTS", &format!("{key}:meta"), "paused"])?
            .int()
            == 1,
        ..Default::default()
    };
    if q.failed > 0 {
        let ids = r
            .call(&[
                "ZREVRANGE",
                &format!("{key}:failed"),
                "0",
                &(SAMPLE - 1).to_string(),
            ])?
            .items();
        let mut counts: Vec<(String, usize)> = Vec::new();
        for id in ids.iter().filter_map(Reply::text) {
            let reason = r
                .call(&["HGET", &format!("{key}:{id}"), "failedReason"])?
                .text()
                .unwrap_or_else(|| "(no reason recorded)".into());
            let reason: String = reason
                .lines()
                .next()
                .unwrap_or("")
                .chars()
                .take(160)
                .collect();
            match counts.iter_mut().find(|(k, _)| *k == reason) {
                Some((_, c)) => *c += 1,
                None => counts.push((reason, 1)),
            }
        }
        counts.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        counts.truncate(3);
        q.reasons = counts;
    }
    if q.active > 0 {
        let ids = r
            .call(&[
                "LRANGE",
                &format!("{key}:active"),
                "0",
                &(SAMPLE - 1).to_string(),
            ])?
            .items();
        let mut stuck: Option<(usize, Duration, String, bool)> = None;
        for id in ids.iter().filter_map(Reply::text) {
            let job = format!("{key}:{id}");
            let started = r.call(&["HGET", &job, "processedOn"])?.int();
            if started <= 0 {
                continue;
            }
            let age = Duration::from_millis(now_ms.saturating_sub(started).max(0) as u64);
            if age < stuck_after {
                continue;
            }
            let name = r.call(&["HGET", &job, "name"])?.text().unwrap_or_default();
            let locked = r.call(&["EXISTS", &format!("{job}:lock")])?.int() == 1;
            stuck = Some(match stuck {
                Some((c, oldest, n, l)) if oldest >= age => (c + 1, oldest, n, l),
                Some((c, ..)) => (c + 1, age, name, locked),
                None => (1, age, name, locked),
            });
        }
        q.stuck = stuck;
    }
    Ok(q)
}

/// Queue names under `prefix`: Immich's, and any other with a `meta` hash (bounded SCAN).
fn queue_names(r: &mut Redis, prefix: &str) -> Result<Vec<String>, String> {
    let mut names: Vec<String> = IMMICH_QUEUES.iter().map(|s| s.to_string()).collect();
    let pattern = format!("{prefix}:*:meta");
    let mut cursor = "0".to_string();
    for _ in 0..200 {
        let mut reply = r
            .call(&["SCAN", &cursor, "MATCH", &pattern, "COUNT", "1000"])?
            .items();
        if reply.len() != 2 {
            return Err("unexpected SCAN reply".into());
        }
        let keys = reply.pop().map(Reply::items).unwrap_or_default();
        cursor = reply[0].text().unwrap_or_else(|| "0".into());
        for k in keys.iter().filter_map(Reply::text) {
            if let Some(q) = k
                .strip_prefix(&format!("{prefix}:"))
                .and_then(|k| k.strip_suffix(":meta"))
            {
                if !names.iter().any(|n| n == q) {
                    names.push(q.to_string());
                }
            }
        }
        if cursor == "0" {
            break;
        }
    }
    Ok(names)
}

fn human_age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        7200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} days", s / 86400),
    }
}

/// One line per queue that holds jobs, after one line saying where Redis was found.
pub(super) fn queue_checks(
    opts: &DoctorOptions,
    docker: Option<&crate::docker::Client>,
    checks: &mut Vec<Check>,
) {
    let c = &opts.compose;
    // From the host, a compose service name is tried as localhost (a published port) first.
    let (host, service) = if is_service_name(&c.redis_host) {
        ("localhost".to_string(), Some(c.redis_host.as_str()))
    } else {
        (c.redis_host.clone(), None)
    };
    let no_docker = crate::docker::DockerError::NoSocket("no Docker socket was found".into());
    let docker = docker.ok_or(&no_docker);
    let (host, port, note) = match route(
        &host,
        c.redis_port,
        service,
        c.project.as_deref(),
        docker,
        opts.source_timeout,
    ) {
        Route::Direct => (host, c.redis_port, String::new()),
        Route::Container { host, port, note } => (host, port, format!(" ({note})")),
        Route::Unreachable(why) => {
            checks.push(Check::warn(
                "queues",
                format!("could not check: Redis {why}"),
                "run doctor where Redis or Docker's socket is reachable, or set REDIS_HOSTNAME / REDIS_PORT in the .env",
            ));
            return;
        }
    };
    let auth = if c.redis_password.is_some() {
        " with password ***"
    } else {
        ""
    };
    let at = format!("Redis at {host}:{port} db {}{auth}{note}", c.redis_db);
    let run = || -> Result<Vec<(String, Queue)>, String> {
        let mut r = Redis::connect(
            &host,
            port,
            c.redis_password.as_deref(),
            c.redis_db,
            opts.source_timeout,
        )?;
        let now_ms = chrono::Utc::now().timestamp_millis();
        // Each command has its own timeout; the whole check has one too (a huge Redis).
        let deadline = std::time::Instant::now() + opts.source_timeout * 4;
        let mut out = Vec::new();
        for name in queue_names(&mut r, &opts.queue_prefix)? {
            if std::time::Instant::now() > deadline {
                return Err(format!(
                    "reading the queues took longer than {} s; stopped at {name}",
                    (opts.source_timeout * 4).as_secs()
                ));
            }
            let q = read_queue(
                &mut r,
                &format!("{}:{name}", opts.queue_prefix),
                opts.stuck_after,
                now_ms,
            )?;
            out.push((name, q));
        }
        Ok(out)
    };
    let queues = match run() {
        Ok(q) => q,
        Err(e) => {
            checks.push(Check::warn(
                "queues",
                format!("could not check: {at}: {e}"),
                "check REDIS_HOSTNAME, REDIS_PORT, REDIS_PASSWORD and REDIS_DBINDEX in the .env",
            ));
            return;
        }
    };
    let busy: Vec<&(String, Queue)> = queues
        .iter()
        .filter(|(_, q)| q.waiting + q.active + q.delayed + q.failed > 0 || q.paused)
        .collect();
    checks.push(Check::ok(
        "queues",
        format!(
            "{at}: {} queues under `{}`, {} holding jobs",
            queues.len(),
            opts.queue_prefix,
            busy.len()
        ),
    ));
    for (name, q) in busy {
        let counts = format!(
            "{} waiting, {} active, {} delayed, {} failed",
            q.waiting, q.active, q.delayed, q.failed
        );
        let check = format!("queue {name}");
        if let Some((n, age, job, locked)) = &q.stuck {
            let holder = if *locked {
                "its worker still holds it (hung)"
            } else {
                "no worker holds it (the worker died)"
            };
            checks.push(Check::fail(
                check,
                format!(
                    "{counts}; {n} active {} running for over {} (oldest: {job}, {}, {holder})",
                    if *n == 1 { "job" } else { "jobs" },
                    human_age(opts.stuck_after),
                    human_age(*age)
                ),
                "restart the server so its jobs are retried (docker compose restart immich-server); if the same job hangs again, its file is the cause (see the `logs` lines)",
            ));
        } else if q.paused {
            checks.push(Check::warn(
                check,
                format!("{counts}; the queue is paused, nothing in it runs"),
                "resume it in Administration > Jobs",
            ));
        } else if q.failed > 0 {
            let reasons: Vec<String> = q
                .reasons
                .iter()
                .map(|(r, n)| format!("{n}x \"{r}\""))
                .collect();
            checks.push(Check::warn(
                check,
                format!("{counts}; most frequent reasons: {}", reasons.join(", ")),
                "fix the reason (a missing or unreadable file: `immich-integrity scan`), then retry the failed jobs in Administration > Jobs",
            ));
        } else {
            checks.push(Check::ok(check, counts));
        }
    }
}
