//! What an install's `.env` says about its compose project: the project name, which compose
//! services the database and Redis hosts name, Redis's settings and the pinned Immich version.

use crate::envfile::parse_env;
use std::path::Path;

/// Compose facts of one install. The Redis password is kept for connecting and never shown.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ComposeEnv {
    /// `COMPOSE_PROJECT_NAME`, else the compose file's `name:`, else its folder's name as
    /// compose normalises it.
    pub project: Option<String>,
    /// The compose service the database host names (`DB_HOSTNAME`, `database` when unset),
    /// `None` when it is an address or a qualified name.
    pub db_service: Option<String>,
    /// `DB_PORT` (the port on the compose network), default 5432.
    pub db_port: u16,
    /// `REDIS_HOSTNAME`, default `redis`.
    pub redis_host: String,
    /// `REDIS_PORT`, default 6379.
    pub redis_port: u16,
    /// `REDIS_PASSWORD`, when set.
    pub redis_password: Option<String>,
    /// `REDIS_DBINDEX`, default 0.
    pub redis_db: u32,
    /// `IMMICH_VERSION` (`release`, `v1.135.3`, ...), when set.
    pub immich_version: Option<String>,
}

impl std::fmt::Debug for ComposeEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComposeEnv")
            .field("project", &self.project)
            .field("db_service", &self.db_service)
            .field("redis_host", &self.redis_host)
            .field("redis_port", &self.redis_port)
            .field(
                "redis_password",
                &self.redis_password.as_ref().map(|_| "***"),
            )
            .field("redis_db", &self.redis_db)
            .field("immich_version", &self.immich_version)
            .finish()
    }
}

impl ComposeEnv {
    /// Defaults of Immich's compose file (no `.env`).
    pub fn defaults() -> ComposeEnv {
        ComposeEnv {
            db_service: Some("database".into()),
            db_port: 5432,
            redis_host: "redis".into(),
            redis_port: 6379,
            ..Default::default()
        }
    }

    /// Reads the `.env` at `path` and the compose file beside it.
    pub fn load(path: &Path) -> std::io::Result<ComposeEnv> {
        let vars = parse_env(&std::fs::read_to_string(path)?);
        let get = |k: &str| vars.get(k).filter(|v| !v.is_empty()).cloned();
        let dir = path.parent().unwrap_or(Path::new("."));
        let project = get("COMPOSE_PROJECT_NAME")
            .or_else(|| compose_name(dir))
            .or_else(|| {
                std::fs::canonicalize(dir)
                    .ok()
                    .and_then(|d| d.file_name().map(|n| normalise(&n.to_string_lossy())))
            })
            .filter(|p| !p.is_empty());
        let db_host = match get("DB_URL") {
            Some(url) => url_host(&url).map(|(h, _)| h),
            None => Some(get("DB_HOSTNAME").unwrap_or_else(|| "database".into())),
        };
        let db_port = get("DB_URL")
            .and_then(|u| url_host(&u).and_then(|(_, p)| p))
            .or_else(|| get("DB_PORT").and_then(|p| p.parse().ok()))
            .unwrap_or(5432);
        Ok(ComposeEnv {
            project,
            db_service: db_host.filter(|h| is_service_name(h)),
            db_port,
            redis_host: get("REDIS_HOSTNAME").unwrap_or_else(|| "redis".into()),
            redis_port: get("REDIS_PORT")
                .and_then(|p| p.parse().ok())
                .unwrap_or(6379),
            redis_password: get("REDIS_PASSWORD"),
            redis_db: get("REDIS_DBINDEX")
                .and_then(|p| p.parse().ok())
                .unwrap_or(0),
            immich_version: get("IMMICH_VERSION"),
        })
    }
}

/// A bare name that only a compose network resolves: no dot, not an address, not localhost.
pub fn is_service_name(host: &str) -> bool {
    !host.is_empty()
        && host != "localhost"
        && !host.contains(['.', ':', '/'])
        && host.parse::<std::net::IpAddr>().is_err()
}

/// Compose's normalisation of a folder name into a project name.
fn normalise(name: &str) -> String {
    name.to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect()
}

/// The top-level `name:` of the compose file beside the `.env`.
fn compose_name(dir: &Path) -> Option<String> {
    for f in [
        "docker-compose.yml",
        "docker-compose.yaml",
        "compose.yml",
        "compose.yaml",
    ] {
        if let Ok(text) = std::fs::read_to_string(dir.join(f)) {
            return text.lines().find_map(|l| {
                l.strip_prefix("name:")
                    .map(|v| v.trim().trim_matches(|c| c == '"' || c == '\'').to_string())
            });
        }
    }
    None
}

/// `(host, port)` of a `postgres://` or `redis://` URL, when it has a network host.
pub fn url_host(url: &str) -> Option<(String, Option<u16>)> {
    let rest = url.split_once("://")?.1;
    let rest = rest.rsplit_once('@').map(|(_, t)| t).unwrap_or(rest);
    let hostport = rest.split(['/', '?']).next()?;
    if hostport.is_empty() {
        return None;
    }
    Some(match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => {
            (h.to_string(), p.parse().ok())
        }
        _ => (hostport.to_string(), None),
    })
}

/// `url` with its `host[:port]` replaced by `host:port`.
pub fn with_host(url: &str, host: &str, port: u16) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let (auth, tail) = match rest.rsplit_once('@') {
        Some((a, t)) => (format!("{a}@"), t),
        None => (String::new(), rest),
    };
    let end = tail.find(['/', '?']).unwrap_or(tail.len());
    Some(format!("{scheme}://{auth}{host}:{port}{}", &tail[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_ports_of_urls() {
        assert_eq!(
            url_host("postgres://u:p@ss@database:5433/immich"),
            Some(("database".into(), Some(5433)))
        );
        assert_eq!(
            with_host(
                "postgres://u:p@localhost:5432/immich?x=1",
                "172.18.0.2",
                5432
            )
            .unwrap(),
            "postgres://u:p@172.18.0.2:5432/immich?x=1"
        );
        assert!(is_service_name("database"));
        assert!(!is_service_name("db.example.org"));
        assert!(!is_service_name("127.0.0.1"));
        assert!(!is_service_name("localhost"));
    }

    #[test]
    fn reads_project_services_and_redis() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("My Immich");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(
            dir.join(".env"),
            "DB_PORT=5433\nREDIS_PASSWORD=s3cret\nREDIS_DBINDEX=2\nIMMICH_VERSION=v1.135.3\n",
        )
        .unwrap();
        let c = ComposeEnv::load(&dir.join(".env")).unwrap();
        assert_eq!(c.project.as_deref(), Some("myimmich"));
        assert_eq!(c.db_service.as_deref(), Some("database"));
        assert_eq!(c.db_port, 5433);
        assert_eq!(
            (c.redis_host.as_str(), c.redis_port, c.redis_db),
            ("redis", 6379, 2)
        );
        assert!(!format!("{c:?}").contains("s3cret"));
        std::fs::write(dir.join("docker-compose.yml"), "name: immich\nservices:\n").unwrap();
        std::fs::write(dir.join(".env"), "DB_HOSTNAME=10.0.0.5\n").unwrap();
        let c = ComposeEnv::load(&dir.join(".env")).unwrap();
        assert_eq!(c.project.as_deref(), Some("immich"));
        assert_eq!(c.db_service, None);
    }
}
