//! Step 8 of the guide: works locally but not through the domain. The same requests through
//! the public URL (the reverse proxy) and to the server directly: reachability, the TLS
//! certificate (trusted, for the name, and how long it stays valid), an upload of a few MiB
//! (to an endpoint that refuses it without credentials, so nothing is stored) against the
//! proxy's body-size limit, answers cut by a proxy timeout, and the WebSocket upgrade the web
//! app and the mobile app use for live updates.

use super::*;
use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;

/// The upload sent through both paths: larger than nginx's default 1 MiB limit.
const UPLOAD_BYTES: usize = 5 << 20;
/// WARN when the certificate expires sooner.
const EXPIRY_WARN_DAYS: i64 = 14;

/// How one request went.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Status(u16),
    Failed(String),
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Status(s) => write!(f, "{s}"),
            Outcome::Failed(e) => write!(f, "no answer ({e})"),
        }
    }
}

fn tls_config(opts: &DoctorOptions) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(ca) = &opts.proxy_ca {
        for c in CertificateDer::pem_file_iter(ca).map_err(|e| format!("{}: {e}", ca.display()))? {
            let c = c.map_err(|e| format!("{}: {e}", ca.display()))?;
            roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

fn agent(cfg: &Arc<rustls::ClientConfig>, timeout: Duration) -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(timeout)
        .redirects(0)
        .tls_config(cfg.clone())
        .build()
}

fn outcome(r: Result<ureq::Response, ureq::Error>) -> Outcome {
    match r {
        Ok(r) => Outcome::Status(r.status()),
        Err(ureq::Error::Status(s, _)) => Outcome::Status(s),
        Err(ureq::Error::Transport(t)) => Outcome::Failed(t.to_string()),
    }
}

fn join(base: &str, path: &str) -> String {
    format!("{}{path}", base.trim_end_matches('/'))
}

/// `(host, port, https)` of an http(s) URL.
fn target(url: &str) -> Option<(String, u16, bool)> {
    let (scheme, rest) = url.split_once("://")?;
    let https = match scheme {
        "https" => true,
        "http" => false,
        _ => return None,
    };
    let hostport = rest.split(['/', '?']).next()?;
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => (h.to_string(), p.parse().ok()?),
        _ => (hostport.to_string(), if https { 443 } else { 80 }),
    };
    Some((host, port, https))
}

/// A stream to `url`'s host, wrapped in TLS for https.
fn open(
    url: &str,
    cfg: &Arc<rustls::ClientConfig>,
    timeout: Duration,
) -> Result<Box<dyn ReadWrite>, String> {
    let (host, port, https) = target(url).ok_or_else(|| format!("{url} is not an http(s) URL"))?;
    let addr = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| format!("{host} does not resolve ({e})"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))?;
    let tcp = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    if !https {
        return Ok(Box::new(tcp));
    }
    let name = ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(cfg.clone(), name).map_err(|e| e.to_string())?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).map_err(|e| e.to_string())?;
    }
    Ok(Box::new(s))
}

trait ReadWrite: Read + Write {
    fn peer_certificate(&self) -> Option<Vec<u8>> {
        None
    }
}
impl ReadWrite for TcpStream {}
impl ReadWrite for rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    fn peer_certificate(&self) -> Option<Vec<u8>> {
        self.conn.peer_certificates()?.first().map(|c| c.to_vec())
    }
}

/// The status a WebSocket upgrade of socket.io (Immich's live updates) gets.
fn websocket(url: &str, cfg: &Arc<rustls::ClientConfig>, timeout: Duration) -> Outcome {
    let run = || -> Result<u16, String> {
        let (host, port, _) = target(url).ok_or("not an http(s) URL")?;
        let mut s = open(url, cfg, timeout)?;
        let prefix = url
            .split_once("://")
            .and_then(|(_, r)| {
                r.find('/')
                    .map(|i| r[i..].trim_end_matches('/').to_string())
            })
            .unwrap_or_default();
        write!(
            s,
            "GET {prefix}/api/socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .map_err(|e| e.to_string())?;
        let mut buf = [0u8; 64];
        let mut got = Vec::new();
        while !got.contains(&b'\n') && got.len() < 64 {
            let n = s.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        let line = String::from_utf8_lossy(&got);
        line.split(' ')
            .nth(1)
            .and_then(|c| c.trim().parse().ok())
            .ok_or_else(|| {
                format!(
                    "not an HTTP answer: {:?}",
                    line.lines().next().unwrap_or("")
                )
            })
    };
    match run() {
        Ok(s) => Outcome::Status(s),
        Err(e) => Outcome::Failed(e),
    }
}

/// The certificate's `notAfter` as seconds since the epoch (a small DER walk to the validity).
fn not_after(der: &[u8]) -> Option<i64> {
    fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = b.split_first()?;
        let (&l, mut rest) = rest.split_first()?;
        let len = if l < 0x80 {
            l as usize
        } else {
            let n = (l & 0x7f) as usize;
            if n > 4 || rest.len() < n {
                return None;
            }
            let v = rest[..n].iter().fold(0usize, |a, b| (a << 8) | *b as usize);
            rest = &rest[n..];
            v
        };
        (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
    }
    let (_, cert, _) = tlv(der)?;
    let (_, tbs, _) = tlv(cert)?;
    let mut rest = tbs;
    let (tag, _, r) = tlv(rest)?;
    if tag == 0xa0 {
        rest = r; // explicit version
    }
    for _ in 0..3 {
        rest = tlv(rest)?.2; // serial, signature algorithm, issuer
    }
    let (_, validity, _) = tlv(rest)?;
    let (_, _, r) = tlv(validity)?;
    let (tag, t, _) = tlv(r)?;
    let t = std::str::from_utf8(t).ok()?;
    let full = match tag {
        0x17 => {
            let yy: i32 = t.get(..2)?.parse().ok()?;
            format!("{}{t}", if yy >= 50 { "19" } else { "20" })
        }
        0x18 => t.to_string(),
        _ => return None,
    };
    chrono::NaiveDateTime::parse_from_str(full.trim_end_matches('Z'), "%Y%m%d%H%M%S")
        .ok()
        .map(|d| d.and_utc().timestamp())
}

/// The proxy lines; nothing when no public URL was given.
pub(super) fn proxy_checks(opts: &DoctorOptions, server: Option<String>, checks: &mut Vec<Check>) {
    let Some(public) = &opts.public_url else {
        return;
    };
    let direct = opts
        .server_url
        .clone()
        .or(server)
        .unwrap_or_else(|| "http://localhost:2283".into());
    let cfg = match tls_config(opts) {
        Ok(c) => c,
        Err(e) => {
            checks.push(Check::warn(
                "proxy",
                format!("could not check: {e}"),
                "pass a PEM file of CA certificates",
            ));
            return;
        }
    };
    let timeout = opts.proxy_timeout;
    let a = agent(&cfg, timeout);
    let ping = "/api/server/ping";
    let direct_ping = outcome(a.get(&join(&direct, ping)).call());
    if direct_ping != Outcome::Status(200) {
        checks.push(Check::warn(
            "proxy",
            format!(
                "could not check: the server itself answers {direct_ping} at {}",
                join(&direct, ping)
            ),
            "pass --server-url with the address the proxy forwards to (e.g. http://127.0.0.1:2283)",
        ));
        return;
    }
    // TLS first: a certificate the client refuses explains every failure after it.
    if target(public).is_some_and(|(_, _, https)| https) {
        match open(public, &cfg, timeout) {
            Ok(s) => {
                let now = chrono::Utc::now().timestamp();
                match s.peer_certificate().as_deref().and_then(not_after) {
                    Some(end) => {
                        // Rounded to the nearest day: a certificate made for 5 days reads "5 days".
                        let days = (end - now + 43_200).div_euclid(86_400);
                        let until = chrono::DateTime::from_timestamp(end, 0)
                            .map(|d| d.format("%Y-%m-%d").to_string())
                            .unwrap_or_default();
                        if days < EXPIRY_WARN_DAYS {
                            checks.push(Check::warn(
                                "proxy tls",
                                format!("the certificate of {public} is valid, but expires on {until} (in {days} days)"),
                                "renew it (certbot renew, or your proxy's ACME settings) and reload the proxy",
                            ));
                        } else {
                            checks.push(Check::ok("proxy tls", format!("the certificate of {public} is valid until {until} ({days} days)")));
                        }
                    }
                    None => checks.push(Check::warn(
                        "proxy tls",
                        format!("could not check: the certificate of {public} could not be read"),
                        "check it with: openssl s_client -connect HOST:443",
                    )),
                }
            }
            Err(e) => {
                checks.push(Check::fail(
                    "proxy tls",
                    format!("{public} refuses a TLS connection that a browser or the app would accept: {e}"),
                    "serve a certificate for this name from a trusted CA (e.g. Let's Encrypt), with its intermediate certificates, not expired",
                ));
                return;
            }
        }
    }
    let via_ping = outcome(a.get(&join(public, ping)).call());
    if via_ping != Outcome::Status(200) {
        checks.push(Check::fail(
            "proxy",
            format!("{} answers {via_ping} through the proxy, but 200 directly at {}", join(public, ping), join(&direct, ping)),
            "point the proxy at the server (proxy_pass http://IMMICH_HOST:2283), and check that the server's port is reachable from the proxy",
        ));
        return;
    }
    checks.push(Check::ok(
        "proxy",
        format!(
            "{} answers like {}",
            join(public, ping),
            join(&direct, ping)
        ),
    ));
    // An upload without credentials: the server refuses it (401) after reading it, so nothing
    // is stored; a proxy limit answers 413 first.
    let body = vec![0u8; UPLOAD_BYTES];
    let upload = "/api/assets";
    let post = |base: &str| {
        outcome(
            a.post(&join(base, upload))
                .set("Content-Type", "application/octet-stream")
                .send_bytes(&body),
        )
    };
    let (direct_up, via_up) = (post(&direct), post(public));
    let mb = UPLOAD_BYTES >> 20;
    let timed_out = |o: &Outcome| {
        matches!(o, Outcome::Status(504))
            || matches!(o, Outcome::Failed(e) if e.contains("timed out"))
    };
    let mut timeouts = Vec::new();
    match (&direct_up, &via_up) {
        (_, Outcome::Status(413)) => checks.push(Check::fail(
            "proxy upload",
            format!("a {mb} MiB upload is refused by the proxy (413), the server itself answers {direct_up}: large photos and videos cannot be uploaded"),
            "raise the proxy's body limit (nginx: client_max_body_size 50000M; Traefik/Caddy: no buffering limit), then reload it",
        )),
        (d, v) if timed_out(v) && !timed_out(d) => timeouts.push(format!("the {mb} MiB upload ({v} through the proxy, {d} directly)")),
        (d, v) if d == v => checks.push(Check::ok("proxy upload", format!("a {mb} MiB upload gets {v} through the proxy as directly"))),
        (d, v) => checks.push(Check::fail(
            "proxy upload",
            format!("a {mb} MiB upload gets {v} through the proxy but {d} directly"),
            "compare the proxy's configuration with Immich's reverse proxy documentation (body size, buffering)",
        )),
    }
    let (direct_ws, via_ws) = (
        websocket(&direct, &cfg, timeout),
        websocket(public, &cfg, timeout),
    );
    if timed_out(&via_ws) && !timed_out(&direct_ws) {
        timeouts.push(format!("the WebSocket upgrade ({via_ws})"));
    } else if direct_ws == Outcome::Status(101) && via_ws != Outcome::Status(101) {
        checks.push(Check::fail(
            "proxy websocket",
            format!("the WebSocket upgrade of /api/socket.io gets {via_ws} through the proxy, 101 directly: the web and mobile apps get no live updates"),
            "forward the upgrade (nginx: proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection \"upgrade\";)",
        ));
    } else {
        checks.push(Check::ok(
            "proxy websocket",
            format!("the WebSocket upgrade gets {via_ws} through the proxy as directly"),
        ));
    }
    if !timeouts.is_empty() {
        checks.push(Check::fail(
            "proxy timeout",
            format!("the proxy gave up waiting on the server: {}", timeouts.join(", ")),
            "raise the proxy's timeouts (nginx: proxy_read_timeout 600s; proxy_send_timeout 600s; send_timeout 600s;)",
        ));
    }
}
