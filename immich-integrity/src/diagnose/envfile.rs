//! Settings from an Immich docker-compose install: the `.env` beside `docker-compose.yml`
//! (database credentials, `UPLOAD_LOCATION`, `IMMICH_MEDIA_LOCATION`) and the server's bind
//! mounts in the compose file (external libraries), so an admin can run the tool with one flag.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// What an install's files say. Every field is optional: explicit flags win over it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstallConfig {
    /// PostgreSQL URL, from `DB_URL` or the `DB_*` parts.
    pub db_url: Option<String>,
    /// `UPLOAD_LOCATION`, made absolute against the `.env`'s folder.
    pub media_root: Option<PathBuf>,
    /// `IMMICH_MEDIA_LOCATION`, when set.
    pub media_location: Option<String>,
    /// Bind mounts of the server container other than the media root: (container, host).
    pub maps: Vec<(String, PathBuf)>,
    /// The server service's `user:` (`UID[:GID]`), whose access matters.
    pub server_user: Option<String>,
    /// `DB_DATA_LOCATION`, made absolute: PostgreSQL's data folder on the host.
    pub db_data_location: Option<PathBuf>,
}

/// Parses `KEY=VALUE` lines as docker compose does: `#` comments, optional `export`, single or
/// double quotes.
pub fn parse_env(text: &str) -> HashMap<String, String> {
    let mut vars = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        let v = if let Some(q) = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
            q.to_string()
        } else if let Some(q) = v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
            q.to_string()
        } else {
            // An unquoted value ends at ` #`.
            v.split(" #").next().unwrap_or("").trim().to_string()
        };
        vars.insert(k.trim().to_string(), v);
    }
    vars
}

/// Percent-encodes a URL user-info part (passwords often hold `@`, `:` or `/`).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Reads `.env` at `path` and, when present, `docker-compose.yml` / `compose.yaml` beside it.
pub fn load(path: &Path) -> std::io::Result<InstallConfig> {
    let text = std::fs::read_to_string(path)?;
    let vars = parse_env(&text);
    let dir = path.parent().unwrap_or(Path::new("."));
    let get = |k: &str| vars.get(k).filter(|v| !v.is_empty()).cloned();
    // From the host, the database container is reached on localhost (its port published).
    let db_url = Some(db_url_from(&get, |h| {
        h.filter(|h| h != "database")
            .unwrap_or_else(|| "localhost".into())
    }));
    let media_root = get("UPLOAD_LOCATION").map(|u| absolute(dir, &u));
    let media_location = get("IMMICH_MEDIA_LOCATION");
    let db_data_location = get("DB_DATA_LOCATION").map(|d| absolute(dir, &d));
    let mut maps = Vec::new();
    let mut server_user = None;
    for name in [
        "docker-compose.yml",
        "docker-compose.yaml",
        "compose.yml",
        "compose.yaml",
    ] {
        if let Ok(compose) = std::fs::read_to_string(dir.join(name)) {
            maps = server_mounts(&compose, &vars)
                .into_iter()
                .filter(|(c, _)| !is_media_target(c, media_location.as_deref()))
                .map(|(c, h)| (c, absolute(dir, &h)))
                .collect();
            server_user = server_key(&compose, "user:").map(|u| expand(&u, &vars));
            break;
        }
    }
    Ok(InstallConfig {
        db_url,
        media_root,
        media_location,
        maps,
        server_user,
        db_data_location,
    })
}

/// `DB_URL`, or a URL from the `DB_*` parts with Immich's defaults; `host` picks the host
/// from `DB_HOSTNAME`.
fn db_url_from(
    get: &dyn Fn(&str) -> Option<String>,
    host: impl Fn(Option<String>) -> String,
) -> String {
    get("DB_URL").unwrap_or_else(|| {
        let user = get("DB_USERNAME").unwrap_or_else(|| "postgres".into());
        let auth = match get("DB_PASSWORD") {
            Some(p) => format!("{}:{}", encode(&user), encode(&p)),
            None => encode(&user),
        };
        let host = host(get("DB_HOSTNAME"));
        let port = get("DB_PORT").unwrap_or_else(|| "5432".into());
        let db = get("DB_DATABASE_NAME").unwrap_or_else(|| "immich".into());
        format!("postgres://{auth}@{host}:{port}/{db}")
    })
}

/// The variables that say a process runs with Immich's server environment (its container, or
/// a service that `extends` it): any of them set.
pub const CONTAINER_VARS: [&str; 6] = [
    "DB_URL",
    "DB_HOSTNAME",
    "DB_USERNAME",
    "DB_PASSWORD",
    "DB_DATABASE_NAME",
    "DB_PORT",
];

/// The settings of a process that runs with Immich's server environment (a service extending
/// `immich-server`: same `.env`, same volumes at the same paths), from `get` (the process's
/// environment): the database from `DB_URL` or the `DB_*` parts (host `database`, Immich's
/// service name, by default), and the media where the server sees it: `IMMICH_MEDIA_LOCATION`,
/// else the first of `/data` (v1.136+) and `/usr/src/app/upload` that is a folder. `None` when
/// none of [`CONTAINER_VARS`] is set. External libraries are at their own paths already.
pub fn from_environment(get: &dyn Fn(&str) -> Option<String>) -> Option<InstallConfig> {
    let get = |k: &str| get(k).filter(|v| !v.is_empty());
    if !CONTAINER_VARS.iter().any(|k| get(k).is_some()) {
        return None;
    }
    let db_url = db_url_from(&get, |h| h.unwrap_or_else(|| "database".into()));
    let media_location = get("IMMICH_MEDIA_LOCATION");
    let media_root = match &media_location {
        Some(l) => Some(PathBuf::from(l)),
        None => ["/data", "/usr/src/app/upload"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.is_dir()),
    };
    Some(InstallConfig {
        db_url: Some(db_url),
        media_root,
        media_location,
        ..InstallConfig::default()
    })
}

fn absolute(dir: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    // components() drops the `.` of `./library`, so reported paths read cleanly.
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
    .components()
    .collect()
}

fn is_media_target(container: &str, media_location: Option<&str>) -> bool {
    matches!(container, "/data" | "/usr/src/app/upload") || Some(container) == media_location
}

/// A scalar key (such as `user:`) directly inside the `immich-server` service.
fn server_key(compose: &str, key: &str) -> Option<String> {
    let mut server_indent = None;
    for line in compose.lines() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        match server_indent {
            None if trimmed.starts_with("immich-server:") => server_indent = Some(indent),
            Some(si) if indent <= si => return None,
            Some(_) => {
                if let Some(v) = trimmed.strip_prefix(key) {
                    let v = v.split(" #").next().unwrap_or("").trim();
                    return Some(v.trim_matches(|c| c == '"' || c == '\'').to_string());
                }
            }
            None => {}
        }
    }
    None
}

/// `HOST:CONTAINER[:ro]` bind mounts of the `immich-server` service, with `${VAR}` expanded.
/// A deliberately small reader of the compose file's usual shape, not a YAML parser.
fn server_mounts(compose: &str, vars: &HashMap<String, String>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut in_server = false;
    let mut server_indent = 0;
    let mut in_volumes = false;
    let mut volumes_indent = 0;
    for line in compose.lines() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        if trimmed.starts_with("immich-server:") {
            in_server = true;
            server_indent = indent;
            continue;
        }
        if in_server && indent <= server_indent {
            in_server = false;
        }
        if !in_server {
            continue;
        }
        if trimmed.starts_with("volumes:") {
            in_volumes = true;
            volumes_indent = indent;
            continue;
        }
        if in_volumes && indent <= volumes_indent && !trimmed.starts_with('-') {
            in_volumes = false;
        }
        if !in_volumes {
            continue;
        }
        let Some(item) = trimmed.strip_prefix('-') else {
            continue;
        };
        let item = item.trim().trim_matches(|c| c == '"' || c == '\'');
        let item = expand(item, vars);
        let mut parts = item.split(':');
        if let (Some(host), Some(container)) = (parts.next(), parts.next()) {
            // Named volumes and the localtime mount are not media.
            if (host.starts_with('/') || host.starts_with('.')) && container != "/etc/localtime" {
                out.push((container.to_string(), host.to_string()));
            }
        }
    }
    out
}

/// Expands `${VAR}` and `$VAR` from the `.env`.
fn expand(s: &str, vars: &HashMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let (name, tail) = if let Some(b) = after.strip_prefix('{') {
            match b.find('}') {
                Some(end) => (&b[..end], &b[end + 1..]),
                None => (b, ""),
            }
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        let name = name.split(":-").next().unwrap_or(name);
        out.push_str(vars.get(name).map(String::as_str).unwrap_or(""));
        rest = tail;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_immich_env_and_compose_file() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(
            t.path().join(".env"),
            "# Immich\nUPLOAD_LOCATION=./library\nDB_DATA_LOCATION=./postgres\n\
             DB_PASSWORD='p@ss:w/rd'\nDB_USERNAME=postgres\nDB_DATABASE_NAME=immich # name\n",
        )
        .unwrap();
        std::fs::write(
            t.path().join("docker-compose.yml"),
            "services:\n  immich-server:\n    image: x\n    volumes:\n      \
             - ${UPLOAD_LOCATION}:/data\n      - /etc/localtime:/etc/localtime:ro\n      \
             - /tank/photos:/mnt/photos:ro\n    user: \"1000:1000\"\n    env_file:\n      - .env\n  database:\n    \
             volumes:\n      - ${DB_DATA_LOCATION}:/var/lib/postgresql/data\n",
        )
        .unwrap();
        let c = load(&t.path().join(".env")).unwrap();
        assert_eq!(
            c.db_url.as_deref(),
            Some("postgres://postgres:p%40ss%3Aw%2Frd@localhost:5432/immich")
        );
        assert_eq!(c.media_root, Some(t.path().join("library")));
        assert_eq!(
            c.maps,
            vec![("/mnt/photos".to_string(), PathBuf::from("/tank/photos"))]
        );
        assert_eq!(c.server_user.as_deref(), Some("1000:1000"));
        assert_eq!(c.db_data_location, Some(t.path().join("postgres")));
    }

    #[test]
    fn db_url_wins_and_quotes_are_stripped() {
        let v = parse_env("export DB_URL=\"postgres://a@b/c\"\nX=1 # c\n");
        assert_eq!(v["DB_URL"], "postgres://a@b/c");
        assert_eq!(v["X"], "1");
    }

    #[test]
    fn immich_server_environment_names_the_database_service_and_the_media_location() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(from_environment(&env(&[("HOME", "/root")])), None);
        let c = from_environment(&env(&[
            ("DB_PASSWORD", "p@ss:w/rd"),
            ("IMMICH_MEDIA_LOCATION", "/srv/media"),
        ]))
        .unwrap();
        assert_eq!(
            c.db_url.as_deref(),
            Some("postgres://postgres:p%40ss%3Aw%2Frd@database:5432/immich")
        );
        assert_eq!(c.media_root.as_deref(), Some(Path::new("/srv/media")));
        assert_eq!(c.media_location.as_deref(), Some("/srv/media"));
        let c = from_environment(&env(&[
            ("DB_URL", "postgres://u@h/d"),
            ("DB_HOSTNAME", "x"),
        ]))
        .unwrap();
        assert_eq!(c.db_url.as_deref(), Some("postgres://u@h/d"));
    }
}
