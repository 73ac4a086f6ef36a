//! A small, read-only client of the Docker Engine API on its unix socket (podman's compatible
//! socket too): the containers of a compose project, one container's inspect, and its log tail.
//!
//! Paths carry no API version (`/containers/json`, not `/v1.41/...`): the daemon then answers
//! in its own current version, which works from Docker 20.10 to 29 (29 refuses versions below
//! 1.44) and on podman's compat service; only fields present in all of them are read.
//! Every call has a deadline; the body is capped.

pub mod compose;
pub mod discovery;
mod http;
mod logs;

pub(crate) use logs::raw_lines as raw_log_lines;
pub use logs::{demultiplex, LogLine, LogStream};

use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The compose label naming a container's project.
pub const PROJECT_LABEL: &str = "com.docker.compose.project";
/// The compose label naming a container's service.
pub const SERVICE_LABEL: &str = "com.docker.compose.service";
/// The OCI label images carry their version in (Immich's images set it).
pub const VERSION_LABEL: &str = "org.opencontainers.image.version";

/// Why the daemon could not be asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DockerError {
    /// No socket was found or configured.
    #[error("no Docker socket: {0}")]
    NoSocket(String),
    /// Connecting, writing or reading failed (refused, permission denied, timed out).
    #[error("Docker socket {socket}: {source}")]
    Io {
        /// The socket asked.
        socket: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
    /// The answer was not the HTTP or JSON expected.
    #[error("unexpected answer from the Docker daemon: {0}")]
    Protocol(String),
    /// More than one container could be meant; the text names them.
    #[error("{0}")]
    Ambiguous(String),
    /// The daemon answered with an error status.
    #[error("the Docker daemon answered {status} to {path}: {message}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The path asked.
        path: String,
        /// The daemon's `message`.
        message: String,
    },
}

/// One entry of `GET /containers/json`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerSummary {
    /// Full container id.
    pub id: String,
    /// Names, each with a leading `/`.
    #[serde(default)]
    pub names: Vec<String>,
    /// The image as given (`ghcr.io/immich-app/immich-server:v1.135.3`).
    #[serde(default)]
    pub image: String,
    /// `running`, `restarting`, `exited`, ...
    #[serde(default)]
    pub state: String,
    /// Human status (`Up 2 hours (healthy)`).
    #[serde(default)]
    pub status: String,
    /// Labels (compose's among them).
    #[serde(default, deserialize_with = "null_map")]
    pub labels: HashMap<String, String>,
}

impl ContainerSummary {
    /// The first name without its `/`, or the short id.
    pub fn name(&self) -> String {
        self.names
            .first()
            .map(|n| n.trim_start_matches('/').to_string())
            .unwrap_or_else(|| self.id.chars().take(12).collect())
    }
    /// The compose service it belongs to.
    pub fn service(&self) -> Option<&str> {
        self.labels.get(SERVICE_LABEL).map(String::as_str)
    }
    /// The compose project it belongs to.
    pub fn project(&self) -> Option<&str> {
        self.labels.get(PROJECT_LABEL).map(String::as_str)
    }
}

/// What `GET /containers/{id}/json` says (the fields the checks read).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerInspect {
    /// Full id.
    pub id: String,
    /// Name with a leading `/`.
    #[serde(default)]
    pub name: String,
    /// How often the daemon restarted it.
    #[serde(default)]
    pub restart_count: u64,
    /// Run state.
    pub state: ContainerState,
    /// Image and labels.
    pub config: ContainerConfig,
    /// Addresses and published ports.
    #[serde(default)]
    pub network_settings: NetworkSettings,
}

/// `State` of an inspect.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerState {
    /// `created`, `running`, `paused`, `restarting`, `removing`, `exited`, `dead`.
    #[serde(default)]
    pub status: String,
    /// Restarting right now (a restart policy at work).
    #[serde(default)]
    pub restarting: bool,
    /// The kernel killed its main process for memory.
    #[serde(rename = "OOMKilled", default)]
    pub oom_killed: bool,
    /// The last exit code.
    #[serde(default)]
    pub exit_code: i64,
    /// The daemon's error for the last start.
    #[serde(default)]
    pub error: String,
    /// When it last started (RFC 3339).
    #[serde(default)]
    pub started_at: String,
    /// When it last stopped (RFC 3339; `0001-01-01T00:00:00Z` when never).
    #[serde(default)]
    pub finished_at: String,
    /// The health check's state, when the image or compose file defines one.
    #[serde(default)]
    pub health: Option<Health>,
}

/// `State.Health`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Health {
    /// `starting`, `healthy`, `unhealthy`.
    #[serde(default)]
    pub status: String,
    /// Consecutive failed probes.
    #[serde(default)]
    pub failing_streak: u64,
    /// The last probes.
    #[serde(default, deserialize_with = "null_vec")]
    pub log: Vec<HealthProbe>,
}

/// One entry of `State.Health.Log`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "PascalCase")]
pub struct HealthProbe {
    /// The probe's exit code (0 healthy).
    #[serde(default)]
    pub exit_code: i64,
    /// What it printed.
    #[serde(default)]
    pub output: String,
}

/// `Config` of an inspect.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    /// The image as given.
    #[serde(default)]
    pub image: String,
    /// Labels (the image's merged with compose's).
    #[serde(default, deserialize_with = "null_map")]
    pub labels: HashMap<String, String>,
    /// With a TTY the log stream is raw, otherwise multiplexed.
    #[serde(default)]
    pub tty: bool,
}

/// `NetworkSettings` of an inspect.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkSettings {
    /// `"5432/tcp"` -> host bindings (`null` when not published).
    #[serde(default, deserialize_with = "null_map")]
    pub ports: HashMap<String, Option<Vec<PortBinding>>>,
    /// Network name -> the container's endpoint on it.
    #[serde(default, deserialize_with = "null_map")]
    pub networks: HashMap<String, Endpoint>,
}

/// One host binding of a published port.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "PascalCase")]
pub struct PortBinding {
    /// Host address (`0.0.0.0`, `::`, `127.0.0.1`).
    #[serde(default)]
    pub host_ip: String,
    /// Host port, as text.
    #[serde(default)]
    pub host_port: String,
}

/// A container's endpoint on one network.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "PascalCase")]
pub struct Endpoint {
    /// IPv4 address on that network (empty when stopped).
    #[serde(rename = "IPAddress", default)]
    pub ip_address: String,
}

impl ContainerInspect {
    /// The name without its `/`.
    pub fn short_name(&self) -> &str {
        self.name.trim_start_matches('/')
    }
    /// The first non-empty address, networks in name order.
    pub fn address(&self) -> Option<(&str, &str)> {
        let mut nets: Vec<_> = self.network_settings.networks.iter().collect();
        nets.sort_by(|a, b| a.0.cmp(b.0));
        nets.into_iter()
            .find(|(_, e)| !e.ip_address.is_empty())
            .map(|(n, e)| (n.as_str(), e.ip_address.as_str()))
    }
    /// The host port `port/tcp` is published on, if any.
    pub fn published(&self, port: u16) -> Option<String> {
        self.network_settings
            .ports
            .get(&format!("{port}/tcp"))
            .and_then(|b| b.as_ref())
            .and_then(|b| b.first())
            .map(|b| format!("{}:{}", b.host_ip, b.host_port))
    }
    /// The image's version label.
    pub fn version(&self) -> Option<&str> {
        self.config.labels.get(VERSION_LABEL).map(String::as_str)
    }
}

fn null_map<'de, D, K, V>(d: D) -> Result<HashMap<K, V>, D::Error>
where
    D: serde::Deserializer<'de>,
    K: Deserialize<'de> + std::hash::Hash + Eq,
    V: Deserialize<'de>,
{
    Ok(Option::<HashMap<K, V>>::deserialize(d)?.unwrap_or_default())
}

fn null_vec<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// The socket to ask: `DOCKER_HOST` when it is a `unix://` URL, else Docker's default socket,
/// else podman's (rootless, then rootful). `Err` says what was looked for.
pub fn default_socket() -> Result<PathBuf, DockerError> {
    if let Ok(host) = std::env::var("DOCKER_HOST") {
        if !host.is_empty() {
            return match host.strip_prefix("unix://") {
                Some(p) => Ok(PathBuf::from(p)),
                None => Err(DockerError::NoSocket(format!(
                    "DOCKER_HOST={host} is not a unix:// socket (only local sockets are supported)"
                ))),
            };
        }
    }
    let mut candidates = vec![PathBuf::from("/var/run/docker.sock")];
    if let Ok(dir) = std::env::var("XDG_RUNTIME_DIR") {
        candidates.push(Path::new(&dir).join("podman/podman.sock"));
    }
    candidates.push(PathBuf::from("/run/podman/podman.sock"));
    candidates
        .iter()
        .find(|p| p.exists())
        .cloned()
        .ok_or_else(|| {
            let list: Vec<String> = candidates.iter().map(|p| p.display().to_string()).collect();
            DockerError::NoSocket(format!("none of {} exists", list.join(", ")))
        })
}

/// A daemon on one socket.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
    timeout: Duration,
}

impl Client {
    /// A client of the daemon at `socket`; each call ends within `timeout`.
    pub fn new(socket: impl Into<PathBuf>, timeout: Duration) -> Client {
        Client {
            socket: socket.into(),
            timeout,
        }
    }

    /// The socket asked.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn get(&self, path: &str) -> Result<http::Response, DockerError> {
        let r = http::get(&self.socket, path, self.timeout)?;
        if r.status >= 300 {
            let message = serde_json::from_slice::<serde_json::Value>(&r.body)
                .ok()
                .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(String::from))
                .unwrap_or_else(|| String::from_utf8_lossy(&r.body).trim().to_string());
            return Err(DockerError::Status {
                status: r.status,
                path: path.to_string(),
                message,
            });
        }
        Ok(r)
    }

    fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, DockerError> {
        let r = self.get(path)?;
        serde_json::from_slice(&r.body).map_err(|e| DockerError::Protocol(format!("{path}: {e}")))
    }

    /// Containers (running or not) carrying every `key=value` label given (all without).
    pub fn containers(
        &self,
        labels: &[(&str, &str)],
    ) -> Result<Vec<ContainerSummary>, DockerError> {
        if labels.is_empty() {
            return self.get_json("/containers/json?all=1");
        }
        let filters = serde_json::json!({
            "label": labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>()
        });
        let path = format!(
            "/containers/json?all=1&filters={}",
            percent_encode(&filters.to_string())
        );
        self.get_json(&path)
    }

    /// One container's inspect.
    pub fn inspect(&self, id: &str) -> Result<ContainerInspect, DockerError> {
        self.get_json(&format!("/containers/{}/json", percent_encode(id)))
    }

    /// The last `tail` lines of stdout and stderr, with the daemon's timestamps; `tty` says
    /// whether the container has a TTY (then the stream is raw, not multiplexed).
    pub fn logs(&self, id: &str, tail: usize, tty: bool) -> Result<Vec<LogLine>, DockerError> {
        let path = format!(
            "/containers/{}/logs?stdout=1&stderr=1&timestamps=1&tail={tail}",
            percent_encode(id)
        );
        let r = self.get(&path)?;
        if tty {
            return Ok(logs::raw_lines(&r.body, LogStream::Stdout));
        }
        demultiplex(&r.body)
    }
}

/// Percent-encodes everything but unreserved characters.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests;
