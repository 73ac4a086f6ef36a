//! Steps 9 and 10 of the guide: memory (the host's RAM and swap, containers killed for
//! memory) and upgrades (the `.env`'s `IMMICH_VERSION` and the server image's version against
//! the newest release recorded in the database's `version_history`).

use super::containers::Compose;
use super::*;
use crate::db::conn::connect;

/// What the database says about versions and machine learning (read-only, one connection).
#[derive(Debug, Default)]
pub(super) struct Facts {
    /// Newest `version_history.version` (Immich writes a row at each start on a new release).
    pub(super) db_version: Option<String>,
    /// Smart search (machine learning and its CLIP model) on, per `system-config`; Immich's
    /// default is on.
    pub(super) smart_search: Option<bool>,
}

pub(super) fn read_facts(opts: &DoctorOptions) -> Facts {
    let Ok(rt) = crate::db::runtime::runtime() else {
        return Facts::default();
    };
    rt.block_on(async {
        let fut = async {
            let mut c = connect(&opts.db_url).await.ok()?;
            let _ = sqlx::query("SET default_transaction_read_only = on")
                .execute(&mut c)
                .await;
            let db_version = sqlx::query_scalar::<_, String>(
                "SELECT version FROM version_history ORDER BY \"createdAt\" DESC LIMIT 1",
            )
            .fetch_optional(&mut c)
            .await
            .ok()
            .flatten();
            let config = sqlx::query_scalar::<_, Option<serde_json::Value>>(
                "SELECT value FROM system_metadata WHERE key = 'system-config'",
            )
            .fetch_optional(&mut c)
            .await;
            let smart_search = match config {
                // No saved config: Immich's defaults (machine learning and CLIP on).
                Ok(None) | Ok(Some(None)) => Some(true),
                Ok(Some(Some(v))) => {
                    let ml = &v["machineLearning"];
                    Some(
                        ml["enabled"].as_bool().unwrap_or(true)
                            && ml["clip"]["enabled"].as_bool().unwrap_or(true),
                    )
                }
                Err(_) => None,
            };
            Some(Facts {
                db_version,
                smart_search,
            })
        };
        tokio::time::timeout(Duration::from_secs(10), fut)
            .await
            .ok()
            .flatten()
            .unwrap_or_default()
    })
}

/// `/proc/meminfo` values in KiB.
fn meminfo(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn gib(kib: u64) -> String {
    format!("{:.1} GiB", kib as f64 / (1024.0 * 1024.0))
}

pub(super) fn memory_check(opts: &DoctorOptions, compose: &Compose) -> Check {
    const NAME: &str = "memory";
    let text = match std::fs::read_to_string(&opts.meminfo) {
        Ok(t) => t,
        Err(e) => {
            return Check::warn(
                NAME,
                format!("could not check: {}: {e}", opts.meminfo.display()),
                "run doctor on the host that runs Immich",
            )
        }
    };
    let (Some(total), Some(avail)) = (meminfo(&text, "MemTotal"), meminfo(&text, "MemAvailable"))
    else {
        return Check::warn(
            NAME,
            format!(
                "could not check: {} has no MemTotal/MemAvailable",
                opts.meminfo.display()
            ),
            "run doctor on the host that runs Immich (Linux 3.14 or newer)",
        );
    };
    let swap_total = meminfo(&text, "SwapTotal").unwrap_or(0);
    let swap_used = swap_total.saturating_sub(meminfo(&text, "SwapFree").unwrap_or(0));
    let share = percent(avail, total);
    let swap = if swap_total == 0 {
        "no swap".to_string()
    } else {
        format!("swap {}, {} used", gib(swap_total), gib(swap_used))
    };
    let mut message = format!(
        "RAM {}, {} available ({share:.0}%); {swap}",
        gib(total),
        gib(avail)
    );
    let killed: Vec<&str> = compose
        .containers
        .as_ref()
        .map(|c| {
            c.iter()
                .filter(|c| c.state.oom_killed)
                .map(|c| c.short_name())
                .collect()
        })
        .unwrap_or_default();
    if !killed.is_empty() {
        message.push_str(&format!("; killed for memory: {}", killed.join(", ")));
        return Check::fail(
            NAME,
            message,
            "add RAM or swap, or limit what runs at once: lower the job concurrency (Administration > Jobs) and, for machine learning, MACHINE_LEARNING_WORKERS / a smaller model",
        );
    }
    let swap_heavy = swap_total > 0 && swap_used * 2 > swap_total;
    if share < 10.0 || avail < 512 * 1024 || swap_heavy {
        return Check::warn(
            NAME,
            format!("{message}: little memory left, thumbnails, transcoding and machine learning may be killed"),
            "add RAM or swap, or lower the job concurrency in Administration > Jobs",
        );
    }
    Check::ok(NAME, message)
}

/// `v1.135.3` / `1.135.3` -> (1, 135, 3).
fn semver(v: &str) -> Option<(u64, u64, u64)> {
    let mut it = v.trim().trim_start_matches('v').split(['.', '-', '+']);
    Some((
        it.next()?.parse().ok()?,
        it.next()?.parse().ok()?,
        it.next().and_then(|p| p.parse().ok()).unwrap_or(0),
    ))
}

pub(super) fn versions_check(opts: &DoctorOptions, compose: &Compose, facts: &Facts) -> Check {
    const NAME: &str = "versions";
    let server = compose.service("immich-server");
    let image = server.and_then(|c| {
        c.version()
            .map(String::from)
            .or_else(|| c.config.image.rsplit_once(':').map(|(_, t)| t.to_string()))
    });
    let env = opts.compose.immich_version.as_deref();
    let db = facts.db_version.as_deref();
    let mut said = Vec::new();
    if let Some(i) = &image {
        said.push(format!("server image {i}"));
    }
    if let Some(d) = db {
        said.push(format!("database last run by {d}"));
    }
    if let Some(e) = env {
        said.push(format!("IMMICH_VERSION={e}"));
    }
    let said = said.join(", ");
    let Some(image) = image else {
        let why = match &compose.containers {
            Err(e) => e.clone(),
            Ok(_) => "the project has no immich-server container".into(),
        };
        return Check::warn(
            NAME,
            format!("could not check the server's version ({why}){}", if said.is_empty() { String::new() } else { format!("; {said}") }),
            "run doctor where Docker's socket is, so the running image can be compared with the database",
        );
    };
    let running = server
        .is_some_and(|c| c.state.status == "running" && !c.state.restarting && c.restart_count < 3);
    if let (Some(i), Some(d)) = (semver(&image), db.and_then(semver)) {
        let db = db.unwrap_or_default();
        if i < d {
            return Check::fail(
                NAME,
                format!("{said}: the server is older than its database (a downgrade); a newer release migrated this database and an older one cannot run on it"),
                format!("set IMMICH_VERSION={db} in the .env and run docker compose pull && docker compose up -d (or restore the database backup made before the upgrade)"),
            );
        }
        if i > d && !running {
            return Check::fail(
                NAME,
                format!("{said}: the upgrade to {image} stopped half-way: the server does not run and the database still records {db}"),
                "read the failing migration in docker compose logs --tail 200 immich-server, and the `migrations` line; fix its cause, or go back to the release the database records",
            );
        }
    }
    if let Some(e) = env.filter(|e| semver(e).is_some()) {
        if semver(e) != semver(&image) {
            return Check::warn(
                NAME,
                format!("{said}: the .env pins {e} but {image} runs: the containers were not recreated after the change"),
                "docker compose pull && docker compose up -d",
            );
        }
    }
    Check::ok(NAME, said)
}
