//! A small blocking client for the two Immich endpoints the repairs use:
//! `POST /api/assets/jobs` (queue per-asset jobs, owner-only) and `PUT /api/jobs/{queue}`
//! (start a whole queue, admin only).
//!
//! Retries with exponential backoff (a bounded number of attempts) on 429 (honouring
//! `Retry-After` seconds), 5xx, timeouts and connection errors. 400/401/403 are final and come
//! back with Immich's `message`. The API key lives in an [`ApiKey`], whose `Debug` and
//! `Display` never show it, and it is scrubbed from every message this module returns.

use crate::error::{Error, Result};
use serde::Serialize;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// An Immich API key. Printing it (`{}` or `{:?}`) shows `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Accepts a non-empty key of printable ASCII without spaces (what Immich issues); the
    /// error never repeats the key.
    pub fn new(key: impl Into<String>) -> Result<ApiKey> {
        let key = key.into();
        let key = key.trim().to_string();
        if key.is_empty() {
            return Err(Error::InvalidArgument("an API key is empty".into()));
        }
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::InvalidArgument(
                "an API key holds spaces or non-ASCII characters".into(),
            ));
        }
        Ok(ApiKey(key))
    }

    /// The secret itself, for the `x-api-key` header only.
    fn expose(&self) -> &str {
        &self.0
    }

    /// `text` with every occurrence of the key replaced by `[redacted]`.
    pub fn scrub(&self, text: &str) -> String {
        text.replace(&self.0, "[redacted]")
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey([redacted])")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// How often and how patiently to retry.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all (the first one included); at least 1.
    pub attempts: u32,
    /// Delay before the second attempt; doubled after each failure.
    pub base_delay: Duration,
    /// Longest wait between attempts (also caps `Retry-After`).
    pub max_delay: Duration,
    /// Connect + read timeout of one request.
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 6,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(60),
            timeout: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt `n` (1-based): `base * 2^(n-1)`, capped.
    pub fn backoff(&self, n: u32) -> Duration {
        let factor = 1u32 << (n.saturating_sub(1)).min(16);
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// How a request ended after all retries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// 2xx.
    Accepted {
        /// The HTTP status the server answered with.
        status: u16,
        /// Requests sent, including the one that succeeded.
        attempts: u32,
    },
    /// A final refusal (400, 401, 403, 404, ...): retrying would not help.
    Rejected {
        /// The HTTP status of the refusal.
        status: u16,
        /// Immich's error message, or why the answer was not taken (e.g. a redirect).
        message: String,
        /// Requests sent, including the refused one.
        attempts: u32,
    },
    /// Still failing (429, 5xx, timeouts, connection errors) after every attempt.
    GaveUp {
        /// Why the last attempt failed.
        reason: String,
        /// Requests sent before giving up.
        attempts: u32,
    },
    /// Interrupted (SIGINT/SIGTERM) before it was accepted.
    Interrupted {
        /// Requests sent before the interruption.
        attempts: u32,
    },
}

impl Outcome {
    /// Whether the server accepted the request (a 2xx answer).
    pub fn is_accepted(&self) -> bool {
        matches!(self, Outcome::Accepted { .. })
    }
}

/// What an API key may do, as the server says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyRights {
    /// The key's permissions (`all`, `job.create`, ...).
    pub permissions: Vec<String>,
    /// Whether its user is an admin; `None` when the key may not read its user.
    pub is_admin: Option<bool>,
}

impl KeyRights {
    /// Holds `permission` (or `all`).
    pub fn has(&self, permission: &str) -> bool {
        self.permissions
            .iter()
            .any(|p| p == "all" || p == permission)
    }

    /// Why this key cannot start Immich's queues (`PUT /api/jobs/{name}`: an admin's key
    /// with `job.create`), or `None` when it can.
    pub fn cannot_start_queues(&self) -> Option<String> {
        let mut why = Vec::new();
        if !self.has("job.create") {
            why.push(format!(
                "it lacks the job.create permission (it has: {})",
                if self.permissions.is_empty() {
                    "none".to_string()
                } else {
                    self.permissions.join(", ")
                }
            ));
        }
        match self.is_admin {
            Some(true) => {}
            Some(false) => why.push("its user is not an admin".into()),
            None => why.push(
                "the server would not say whether its user is an admin (GET /api/users/me \
                 needs user.read)"
                    .into(),
            ),
        }
        (!why.is_empty()).then(|| why.join("; "))
    }
}

/// A blocking client bound to one server.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    retry: RetryPolicy,
    cancel: Option<Arc<AtomicBool>>,
    contact: Contact,
}

/// Whether a [`Client`] ever reached its server: until the server has answered once, a refused
/// connection or a failed DNS lookup is not retried (a server that is down, or a wrong
/// `--server`, is said at once, not after every backoff).
#[derive(Debug, Clone, Default)]
pub struct Contact {
    tried: Arc<AtomicBool>,
    answered: Arc<AtomicBool>,
}

impl Contact {
    /// A request was sent and the server never answered any.
    pub fn never_reached(&self) -> bool {
        self.tried.load(Ordering::Relaxed) && !self.answered.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("retry", &self.retry)
            .finish()
    }
}

/// What one attempt produced.
enum Attempt {
    Done(u16, String),
    Final(u16, String),
    Retry {
        reason: String,
        wait: Option<u64>,
    },
    /// Not even connected, to a server never reached: not worth a retry.
    Unreachable(String),
}

impl Client {
    /// `server` is Immich's base URL (`http://host:2283`); a trailing `/` or `/api` is dropped.
    pub fn new(server: &str, retry: RetryPolicy) -> Result<Client> {
        let mut base = server.trim().trim_end_matches('/').to_string();
        if let Some(b) = base.strip_suffix("/api") {
            base = b.to_string();
        }
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Error::InvalidArgument(format!(
                "{} wants an http:// or https:// URL, got {base:?}",
                crate::error::Hint::Server
            )));
        }
        if base.split("://").nth(1).is_some_and(|rest| {
            rest.split('/')
                .next()
                .is_some_and(|authority| authority.contains('@'))
        }) {
            return Err(Error::InvalidArgument(format!(
                "{} must not carry credentials; pass the API key with {}",
                crate::error::Hint::Server,
                crate::error::Hint::ApiKey
            )));
        }
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(retry.timeout)
            .timeout_read(retry.timeout)
            .timeout_write(retry.timeout)
            .redirects(0)
            .build();
        Ok(Client {
            agent,
            base,
            retry,
            cancel: None,
            contact: Contact::default(),
        })
    }

    /// Stop retrying (and sleeping) once `flag` is set.
    pub fn with_cancel(mut self, flag: Arc<AtomicBool>) -> Client {
        self.cancel = Some(flag);
        self
    }

    /// Whether the server was ever reached (shared with every clone of the answer).
    pub fn contact(&self) -> Contact {
        self.contact.clone()
    }

    /// The normalised server URL, without a trailing `/` or `/api`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `{base}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
    }

    /// Sleeps `d` in small steps, returning false if cancelled meanwhile.
    fn sleep(&self, d: Duration) -> bool {
        let step = Duration::from_millis(50);
        let mut left = d;
        while !left.is_zero() {
            if self.cancelled() {
                return false;
            }
            let s = left.min(step);
            std::thread::sleep(s);
            left -= s;
        }
        !self.cancelled()
    }

    /// `POST /api/assets/jobs` with `{"assetIds": ids, "name": job}`.
    pub fn asset_jobs(&self, key: &ApiKey, job: &str, ids: &[String]) -> Outcome {
        let body = asset_jobs_body(job, ids);
        self.send("POST", "/api/assets/jobs", key, &body)
    }

    /// `PUT /api/jobs/{queue}` with `{"command":"start","force":false}`.
    pub fn start_queue(&self, key: &ApiKey, queue: &str) -> Outcome {
        let body = start_queue_body();
        self.send("PUT", &format!("/api/jobs/{queue}"), key, &body)
    }

    /// `GET path` and its JSON answer, retried like [`Client::send`].
    pub fn get_json(
        &self,
        path: &str,
        key: &ApiKey,
    ) -> std::result::Result<serde_json::Value, String> {
        let url = self.url(path);
        match self.request("GET", path, key, "") {
            Ok((_, text)) => {
                serde_json::from_str(&text).map_err(|e| format!("{url} did not answer JSON: {e}"))
            }
            Err(Outcome::Rejected {
                status, message, ..
            }) => Err(format!("{url} answered {status}: {message}")),
            Err(Outcome::GaveUp { reason, attempts }) => {
                Err(format!("{url}: {reason} (after {attempts} attempts)"))
            }
            Err(_) => Err(format!("{url}: interrupted")),
        }
    }

    /// Who `key` is: its permissions (`GET /api/api-keys/me`, which needs none) and whether its
    /// user is an admin (`GET /api/users/me`, which needs `user.read`).
    pub fn key_rights(&self, key: &ApiKey) -> std::result::Result<KeyRights, String> {
        let me = self.get_json("/api/api-keys/me", key)?;
        let permissions = me
            .get("permissions")
            .and_then(|p| p.as_array())
            .ok_or_else(|| "GET /api/api-keys/me answered without `permissions`".to_string())?
            .iter()
            .filter_map(|p| p.as_str().map(str::to_string))
            .collect();
        let is_admin = match self.get_json("/api/users/me", key) {
            Ok(u) => u.get("isAdmin").and_then(|a| a.as_bool()),
            Err(_) => None,
        };
        Ok(KeyRights {
            permissions,
            is_admin,
        })
    }

    /// Sends a JSON body, retrying what is worth retrying.
    pub fn send(&self, method: &str, path: &str, key: &ApiKey, body: &str) -> Outcome {
        self.request(method, path, key, body)
            .map_or_else(|o| o, |(o, _)| o)
    }

    /// [`Client::send`], keeping the answer's body on success.
    fn request(
        &self,
        method: &str,
        path: &str,
        key: &ApiKey,
        body: &str,
    ) -> std::result::Result<(Outcome, String), Outcome> {
        let url = self.url(path);
        let mut attempts = 0;
        loop {
            if self.cancelled() {
                return Err(Outcome::Interrupted { attempts });
            }
            attempts += 1;
            let (reason, wait) = match self.attempt(method, &url, key, body) {
                Attempt::Done(status, text) => {
                    return Ok((Outcome::Accepted { status, attempts }, text))
                }
                Attempt::Final(status, message) => {
                    return Err(Outcome::Rejected {
                        status,
                        message: key.scrub(&message),
                        attempts,
                    })
                }
                Attempt::Retry { reason, wait } => (key.scrub(&reason), wait),
                Attempt::Unreachable(reason) => {
                    return Err(Outcome::GaveUp {
                        reason: format!("cannot reach Immich at {}: {reason}", self.base),
                        attempts,
                    })
                }
            };
            if attempts >= self.retry.attempts.max(1) {
                return Err(Outcome::GaveUp { reason, attempts });
            }
            let delay = match wait {
                Some(secs) => Duration::from_secs(secs).min(self.retry.max_delay),
                None => self.retry.backoff(attempts),
            };
            if !self.sleep(delay) {
                return Err(Outcome::Interrupted { attempts });
            }
        }
    }

    fn attempt(&self, method: &str, url: &str, key: &ApiKey, body: &str) -> Attempt {
        let req = self
            .agent
            .request(method, url)
            .set("x-api-key", key.expose())
            .set("content-type", "application/json")
            .set("accept", "application/json");
        self.contact.tried.store(true, Ordering::Relaxed);
        let answered = || self.contact.answered.store(true, Ordering::Relaxed);
        match req.send_string(body) {
            Ok(resp) => {
                answered();
                let status = resp.status();
                if (200..300).contains(&status) {
                    // Read the body so the connection can be reused (and for GETs, to use it).
                    return Attempt::Done(status, resp.into_string().unwrap_or_default());
                }
                // Redirects are not followed: the key must not travel to another address.
                let to = resp.header("location").unwrap_or("?").to_string();
                Attempt::Final(
                    status,
                    format!(
                        "redirected to {to}; pass the final address as {}",
                        crate::error::Hint::Server
                    ),
                )
            }
            Err(ureq::Error::Status(status, resp)) => {
                answered();
                let retry_after = resp
                    .header("retry-after")
                    .and_then(|v| v.trim().parse::<u64>().ok());
                let message = immich_message(resp.into_string().unwrap_or_default());
                match status {
                    429 => Attempt::Retry {
                        reason: format!("429 Too Many Requests: {message}"),
                        wait: retry_after,
                    },
                    500..=599 => Attempt::Retry {
                        reason: format!("{status}: {message}"),
                        wait: retry_after,
                    },
                    _ => Attempt::Final(status, message),
                }
            }
            Err(ureq::Error::Transport(t))
                if !self.contact.answered.load(Ordering::Relaxed)
                    && matches!(
                        t.kind(),
                        ureq::ErrorKind::ConnectionFailed | ureq::ErrorKind::Dns
                    ) =>
            {
                Attempt::Unreachable(transport_reason(&t))
            }
            Err(ureq::Error::Transport(t)) => Attempt::Retry {
                reason: transport_reason(&t),
                wait: None,
            },
        }
    }
}

/// The JSON body of `POST /api/assets/jobs`.
pub fn asset_jobs_body(job: &str, ids: &[String]) -> String {
    serde_json::json!({ "assetIds": ids, "name": job }).to_string()
}

/// The JSON body of `PUT /api/jobs/{queue}` ("Missing" mode).
pub fn start_queue_body() -> String {
    serde_json::json!({ "command": "start", "force": false }).to_string()
}

/// Immich's error body is `{"message": "..." | [...], "error": "...", "statusCode": n}`.
fn immich_message(body: String) -> String {
    let text = match serde_json::from_str::<serde_json::Value>(&body) {
        Ok(v) => match v.get("message") {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .map(|m| {
                    m.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| m.to_string())
                })
                .collect::<Vec<_>>()
                .join("; "),
            _ => body,
        },
        Err(_) => body,
    };
    let text = text.trim();
    if text.chars().count() > 300 {
        format!("{}...", text.chars().take(300).collect::<String>())
    } else if text.is_empty() {
        "(no message)".into()
    } else {
        text.to_string()
    }
}

fn transport_reason(t: &ureq::Transport) -> String {
    use ureq::ErrorKind::*;
    let what = match t.kind() {
        ConnectionFailed => "connection failed",
        Dns => "DNS lookup failed",
        Io => "I/O error (timeout or connection reset)",
        ProxyConnect | ProxyUnauthorized | InvalidProxyUrl => "proxy error",
        InvalidUrl | UnknownScheme => "invalid URL",
        BadStatus | BadHeader => "malformed response",
        TooManyRedirects => "redirected",
        _ => "transport error",
    };
    match t.message() {
        Some(m) => format!("{what}: {m}"),
        None => match std::error::Error::source(t) {
            Some(s) => format!("{what}: {s}"),
            None => what.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_never_prints() {
        let k = ApiKey::new("s3cr3t-KEY").unwrap();
        assert_eq!(format!("{k}"), "[redacted]");
        assert!(!format!("{k:?}").contains("s3cr3t"));
        assert_eq!(k.scrub("bad key s3cr3t-KEY!"), "bad key [redacted]!");
        let e = ApiKey::new("has space").unwrap_err().to_string();
        assert!(!e.contains("has space"), "{e}");
        assert!(ApiKey::new("  ").is_err());
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
            timeout: Duration::from_secs(1),
        };
        assert_eq!(p.backoff(1), Duration::from_millis(100));
        assert_eq!(p.backoff(2), Duration::from_millis(200));
        assert_eq!(p.backoff(3), Duration::from_millis(350));
        assert_eq!(p.backoff(40), Duration::from_millis(350));
    }

    #[test]
    fn server_url_checks() {
        let c = Client::new("http://h:2283/api/", RetryPolicy::default()).unwrap();
        assert_eq!(c.url("/api/x"), "http://h:2283/api/x");
        assert!(Client::new("h:2283", RetryPolicy::default()).is_err());
        let e = Client::new("http://u:pw@h", RetryPolicy::default()).unwrap_err();
        assert!(!e.to_string().contains("pw"));
    }

    #[test]
    fn immich_messages() {
        assert_eq!(
            immich_message(
                r#"{"message":"Not found or no asset.update access","error":"Bad Request","statusCode":400}"#
                    .into()
            ),
            "Not found or no asset.update access"
        );
        assert_eq!(
            immich_message(r#"{"message":["a","b"],"statusCode":400}"#.into()),
            "a; b"
        );
        assert_eq!(immich_message("".into()), "(no message)");
    }
}
