//! Step 1 of the guide: are Immich's containers running and healthy? Each container of the
//! compose project through the Docker API: state, health, restarts, exit code, `OOMKilled`,
//! image and version; a FAIL and its fix for a restart loop, an unhealthy database, a missing
//! machine-learning container while smart search is on, a kill for memory.

use super::*;
use crate::docker::discovery::describe;
use crate::docker::{default_socket, Client, ContainerInspect, PROJECT_LABEL, SERVICE_LABEL};

/// The services of Immich's compose file that must run, and the optional machine learning.
const REQUIRED: [&str; 3] = ["immich-server", "database", "redis"];
const MACHINE_LEARNING: &str = "immich-machine-learning";
/// This many restarts since the container was created is a loop, not bad luck.
const RESTART_LOOP: u64 = 3;

/// The project's containers as the daemon describes them (or why they could not be read).
pub(super) struct Compose {
    pub(super) client: Option<Client>,
    pub(super) project: Option<String>,
    pub(super) containers: Result<Vec<ContainerInspect>, String>,
}

impl Compose {
    /// The container of `service`, if there is one.
    pub(super) fn service(&self, service: &str) -> Option<&ContainerInspect> {
        self.containers
            .as_ref()
            .ok()?
            .iter()
            .find(|c| svc(c) == service)
    }
}

fn svc(c: &ContainerInspect) -> &str {
    c.config
        .labels
        .get(SERVICE_LABEL)
        .map(String::as_str)
        .unwrap_or("")
}

/// Asks the daemon once for everything the Docker-based checks read.
pub(super) fn gather(opts: &DoctorOptions) -> Compose {
    let socket = match &opts.docker_socket {
        Some(s) => Ok(s.clone()),
        None => default_socket(),
    };
    let client = match socket {
        Ok(s) => Client::new(s, opts.source_timeout),
        Err(e) => {
            return Compose {
                client: None,
                project: opts.compose.project.clone(),
                containers: Err(e.to_string()),
            }
        }
    };
    let (project, containers) = match project_containers(&client, opts.compose.project.as_deref()) {
        Ok((p, c)) => (Some(p), Ok(c)),
        Err(e) => (opts.compose.project.clone(), Err(e)),
    };
    Compose {
        client: Some(client),
        project,
        containers,
    }
}

/// The containers of `project`; when it has none (or is unknown), of the one project that runs
/// an `immich-server`. Several such projects is an error naming them.
fn project_containers(
    client: &Client,
    project: Option<&str>,
) -> Result<(String, Vec<ContainerInspect>), String> {
    let list = |p: &str| {
        client
            .containers(&[(PROJECT_LABEL, p)])
            .map_err(|e| e.to_string())
    };
    if let Some(p) = project {
        let found = list(p)?;
        if !found.is_empty() {
            return inspect_all(client, found).map(|c| (p.to_string(), c));
        }
    }
    let servers = client
        .containers(&[(SERVICE_LABEL, "immich-server")])
        .map_err(|e| e.to_string())?;
    let mut projects: Vec<String> = servers
        .iter()
        .filter_map(|c| c.project().map(String::from))
        .collect();
    projects.sort();
    projects.dedup();
    let wanted = project
        .map(|p| format!("no container of compose project `{p}`, and "))
        .unwrap_or_default();
    match projects.as_slice() {
        [] => Err(format!(
            "{wanted}no compose project runs an immich-server container ({})",
            client.socket().display()
        )),
        [one] => inspect_all(client, list(one)?).map(|c| (one.clone(), c)),
        many => Err(format!(
            "{wanted}several compose projects run Immich: {}; pass the --env-file of the one to check (or set COMPOSE_PROJECT_NAME in it)",
            many.join(", ")
        )),
    }
}

fn inspect_all(
    client: &Client,
    list: Vec<crate::docker::ContainerSummary>,
) -> Result<Vec<ContainerInspect>, String> {
    let mut out = Vec::new();
    for c in list {
        out.push(client.inspect(&c.id).map_err(|e| e.to_string())?);
    }
    out.sort_by(|a, b| svc(a).cmp(svc(b)).then(a.name.cmp(&b.name)));
    Ok(out)
}

/// One check per container of the project, and one per required service that has none.
/// `smart_search`: whether the database says smart search (machine learning) is on.
pub(super) fn container_checks(
    compose: &Compose,
    smart_search: Option<bool>,
    checks: &mut Vec<Check>,
) {
    let containers = match &compose.containers {
        Ok(c) => c,
        Err(e) => {
            checks.push(Check::warn(
                "containers",
                format!("could not check: {e}"),
                "run doctor where Docker's socket is (as root or in the docker group), or pass --docker-socket (or DOCKER_HOST=unix://...)",
            ));
            return;
        }
    };
    let project = compose.project.as_deref().unwrap_or("?");
    for c in containers {
        checks.push(judge(c));
    }
    for service in REQUIRED {
        if !containers.iter().any(|c| svc(c) == service) {
            checks.push(Check::fail(
                format!("container {service}"),
                format!("compose project `{project}` has no container of the service {service}"),
                format!("start it: docker compose up -d {service}"),
            ));
        }
    }
    if !containers.iter().any(|c| svc(c) == MACHINE_LEARNING) {
        match smart_search {
            Some(true) => checks.push(Check::fail(
                format!("container {MACHINE_LEARNING}"),
                format!(
                    "smart search is on, but compose project `{project}` has no {MACHINE_LEARNING} container: smart search and face detection jobs fail"
                ),
                format!(
                    "start it (docker compose up -d {MACHINE_LEARNING}), or turn machine learning off in Administration > Settings > Machine Learning"
                ),
            )),
            None => checks.push(Check::warn(
                format!("container {MACHINE_LEARNING}"),
                format!(
                    "compose project `{project}` has no {MACHINE_LEARNING} container, and whether smart search is on could not be read from the database"
                ),
                format!("if smart search is on, start it: docker compose up -d {MACHINE_LEARNING}"),
            )),
            Some(false) => {}
        }
    }
}

fn judge(c: &ContainerInspect) -> Check {
    let service = svc(c);
    let name = format!(
        "container {}",
        if service.is_empty() {
            c.short_name()
        } else {
            service
        }
    );
    let image = match c.version() {
        Some(v) => format!("image {} (version {v})", c.config.image),
        None => format!("image {}", c.config.image),
    };
    let what = format!("{}, {image}", describe(c));
    let health = c.state.health.as_ref().map(|h| h.status.as_str());
    if c.state.oom_killed {
        return Check::fail(
            name,
            format!("{what}: the kernel killed it for running out of memory"),
            format!(
                "give it more memory (more RAM or swap on the host, or a higher mem_limit), or lower the job concurrency in Administration > Jobs; then docker compose up -d {service}"
            ),
        );
    }
    if c.state.restarting || c.restart_count >= RESTART_LOOP {
        return Check::fail(
            name,
            format!("{what}: a restart loop"),
            format!(
                "read why it stops (docker compose logs --tail 200 {service}): a wrong .env value, a full disk or too little memory are the usual causes; then docker compose up -d {service}"
            ),
        );
    }
    if c.state.status != "running" {
        let fix = format!(
            "read why it stopped (docker compose logs --tail 200 {service}), then start it: docker compose up -d {service}"
        );
        return if service == MACHINE_LEARNING {
            Check::warn(name, format!("{what}: not running"), fix)
        } else {
            Check::fail(name, format!("{what}: not running"), fix)
        };
    }
    if health == Some("unhealthy") {
        let probe = c
            .state
            .health
            .as_ref()
            .and_then(|h| h.log.last())
            .map(|p| format!("; last probe: {}", p.output.trim()))
            .unwrap_or_default();
        let fix = if service == "database" {
            "read PostgreSQL's log (docker compose logs --tail 200 database) and the free space of DB_DATA_LOCATION; then docker compose restart database".to_string()
        } else {
            format!("read its log (docker compose logs --tail 200 {service}); then docker compose restart {service}")
        };
        return if service == "database" || service == "immich-server" || service == "redis" {
            Check::fail(name, format!("{what}: health check failing{probe}"), fix)
        } else {
            Check::warn(name, format!("{what}: health check failing{probe}"), fix)
        };
    }
    Check::ok(name, what)
}
