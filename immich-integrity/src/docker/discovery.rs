//! Reaching a compose service from the host without editing Immich's compose file: when the
//! `.env` names a service (`database`, `redis`) whose port is not published, its container is
//! found through the Docker API (compose's project and service labels) and reached at its
//! address on the compose network. When nothing works, the answer says why: which address was
//! tried, whether the port is published, the container's state.

use super::compose::{url_host, with_host};
use super::{Client, ContainerInspect, DockerError, SERVICE_LABEL};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// How a service is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The address as configured answers.
    Direct,
    /// The service's container answers at `host:port` on its compose network; `note` says so.
    Container {
        /// The container's address.
        host: String,
        /// The port.
        port: u16,
        /// One sentence for the admin (stderr, the summary's origins).
        note: String,
    },
    /// Nothing answers; the diagnosis says what was tried and what to do.
    Unreachable(String),
}

/// Does anything accept a TCP connection at `host:port` within `timeout`? `Err` says why not.
pub fn probe(host: &str, port: u16, timeout: Duration) -> Result<(), String> {
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("{host} does not resolve here ({e})"))?
        .collect();
    let mut last = format!("{host} has no address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, timeout) {
            Ok(_) => return Ok(()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// The one container of `service` (a compose service, else a container name) in `project` (any project when `None`, or when none of
/// `project`'s exists but exactly one other project has the service). More than one candidate
/// is an error naming them; none is `Ok(None)`.
pub fn find_service(
    client: &Client,
    project: Option<&str>,
    service: &str,
) -> Result<Option<ContainerInspect>, DockerError> {
    let mut all = client.containers(&[(SERVICE_LABEL, service)])?;
    if all.is_empty() {
        // Older compose files name the host by `container_name` (`immich_postgres`).
        all = client
            .containers(&[])?
            .into_iter()
            .filter(|c| c.names.iter().any(|n| n.trim_start_matches('/') == service))
            .collect();
    }
    let mine: Vec<_> = match project {
        Some(p) if all.iter().any(|c| c.project() == Some(p)) => {
            all.iter().filter(|c| c.project() == Some(p)).collect()
        }
        _ => all.iter().collect(),
    };
    match mine.as_slice() {
        [] => Ok(None),
        [one] => client.inspect(&one.id).map(Some),
        many => {
            let names: Vec<String> = many
                .iter()
                .map(|c| format!("{} (project {})", c.name(), c.project().unwrap_or("none")))
                .collect();
            Err(DockerError::Ambiguous(format!(
                "several containers of the compose service `{service}`: {}; set COMPOSE_PROJECT_NAME in the .env to the project to check",
                names.join(", ")
            )))
        }
    }
}

/// One line about a container's run state: `immich_postgres is exited (exit code 1, restarted
/// 4 times, killed for memory)`.
pub fn describe(c: &ContainerInspect) -> String {
    let mut parts = Vec::new();
    if let Some(h) = &c.state.health {
        if !h.status.is_empty() {
            parts.push(h.status.clone());
        }
    }
    if c.state.status != "running" {
        parts.push(format!("exit code {}", c.state.exit_code));
    }
    if c.restart_count > 0 {
        parts.push(format!("restarted {} times", c.restart_count));
    }
    if c.state.oom_killed {
        parts.push("killed for memory (OOMKilled)".into());
    }
    let tail = if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    };
    format!("{} is {}{tail}", c.short_name(), c.state.status)
}

/// How to reach `host:port`, which the `.env` names as the compose service `service` (when
/// `Some`) of `project`. `docker` is the daemon to ask (or why there is none).
pub fn route(
    host: &str,
    port: u16,
    service: Option<&str>,
    project: Option<&str>,
    docker: Result<&Client, &DockerError>,
    timeout: Duration,
) -> Route {
    let first = match probe(host, port, timeout) {
        Ok(()) => return Route::Direct,
        Err(e) => e,
    };
    let tried = format!("nothing answers at {host}:{port} ({first})");
    let Some(service) = service else {
        return Route::Unreachable(tried);
    };
    let not_looked_up = |e: &DockerError| {
        Route::Unreachable(format!(
            "{tried}; the .env names the compose service `{service}`, whose container could not be looked up ({e}): publish its port {port} in the compose file, or run the tool inside the compose project"
        ))
    };
    let client = match docker {
        Ok(c) => c,
        Err(e) => return not_looked_up(e),
    };
    let in_project = project
        .map(|p| format!(" of compose project `{p}`"))
        .unwrap_or_default();
    let c = match find_service(client, project, service) {
        Ok(Some(c)) => c,
        Ok(None) => {
            return Route::Unreachable(format!(
                "{tried}; Docker ({}) has no container of the service `{service}`{in_project}: start it (docker compose up -d {service})",
                client.socket().display()
            ))
        }
        Err(e @ DockerError::Ambiguous(_)) => return Route::Unreachable(format!("{tried}; {e}")),
        Err(e) => return not_looked_up(&e),
    };
    let published = match c.published(port) {
        Some(b) => format!("port {port} published on {b}"),
        None => format!("port {port} not published"),
    };
    if c.state.status != "running" {
        return Route::Unreachable(format!(
            "{tried}; {}, {published}: read its log (docker compose logs {service}) and start it (docker compose up -d {service})",
            describe(&c)
        ));
    }
    let Some((network, ip)) = c.address() else {
        return Route::Unreachable(format!(
            "{tried}; {} but has no address on a network, {published}",
            describe(&c)
        ));
    };
    match probe(ip, port, timeout) {
        Ok(()) => Route::Container {
            host: ip.to_string(),
            port,
            note: format!(
                "{host}:{port} does not answer ({published}); using the `{service}` container {} at {ip}:{port} on network {network}, found through the Docker API ({})",
                c.short_name(),
                client.socket().display()
            ),
        },
        Err(e) => Route::Unreachable(format!(
            "{tried}; {} at {ip}:{port} on network {network} does not answer either ({e}), {published}",
            describe(&c)
        )),
    }
}

/// PostgreSQL could not be reached; `why` says what was tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreachable {
    /// The URL, its password masked.
    pub url: String,
    /// The diagnosis.
    pub why: String,
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot connect to PostgreSQL at {}: {}",
            self.url, self.why
        )
    }
}

/// [`route`] for a PostgreSQL URL: `Ok((url, note))` with the container's address when the
/// URL's host does not answer, `Ok((url, None))` when it does, `Err(diagnosis)` otherwise.
pub fn database_url(
    url: &str,
    service: Option<&str>,
    project: Option<&str>,
    docker: Result<&Client, &DockerError>,
    timeout: Duration,
) -> Result<(String, Option<String>), Unreachable> {
    let Some((host, port)) = url_host(url) else {
        // A socket path or a key=value string: nothing to route.
        return Ok((url.to_string(), None));
    };
    if host.is_empty() || host.starts_with('/') || host.starts_with('%') {
        return Ok((url.to_string(), None));
    }
    let port = port.unwrap_or(5432);
    match route(&host, port, service, project, docker, timeout) {
        Route::Direct => Ok((url.to_string(), None)),
        Route::Container { host, port, note } => match with_host(url, &host, port) {
            Some(u) => Ok((u, Some(format!("database: {note}")))),
            None => Err(Unreachable {
                url: crate::db::conn::redact_url(url),
                why: format!("cannot rewrite the URL for {host}:{port}"),
            }),
        },
        Route::Unreachable(why) => Err(Unreachable {
            url: crate::db::conn::redact_url(url),
            why,
        }),
    }
}
