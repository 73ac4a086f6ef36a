//! doctor's reverse-proxy lines against a real nginx (Debian's, run as a plain process on a
//! loopback port with its own prefix) in front of an in-test server that answers Immich's
//! ping, refuses an unauthenticated upload with 401 after reading it, and upgrades socket.io's
//! WebSocket; nginx configured wrong in each way the guide names, and right.

mod common;
mod proxy_rig;

use common::*;
use immich_fixtures::Generation;
use immich_integrity::doctor::{self, Check, DoctorOptions};
use proxy_rig::{nginx, upstream, RIGHT};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

fn line(c: &Check) -> String {
    match &c.fix {
        Some(f) => format!(
            "{} {}: {} -- fix: {f}",
            c.status.as_str(),
            c.name,
            c.message
        ),
        None => format!("{} {}: {}", c.status.as_str(), c.name, c.message),
    }
}

fn proxy_lines(lib: &Lib, public: String, direct: u16, ca: Option<PathBuf>) -> Vec<String> {
    let mut o = DoctorOptions::new(lib.truth.db_url.clone());
    o.docker_socket = Some("/nonexistent/docker.sock".into());
    o.queue_prefix = format!("itest_{}", lib.db_name);
    o.public_url = Some(public);
    o.server_url = Some(format!("http://127.0.0.1:{direct}"));
    o.proxy_ca = ca;
    let r = doctor::run(&o);
    r.checks
        .iter()
        .filter(|c| c.name.starts_with("proxy"))
        .map(line)
        .collect()
}

#[test]
fn nginx_right_and_wrong_in_each_way() {
    let lib = generate(Generation::V2_6, 2, false);
    let up = upstream(false);
    let direct = format!("http://127.0.0.1:{up}/api/server/ping");

    let n = nginx(up, "client_max_body_size 50000M;", RIGHT, None);
    let public = format!("http://127.0.0.1:{}", n.port);
    assert_eq!(
        proxy_lines(&lib, public.clone(), up, None),
        vec![
            format!("OK proxy: {public}/api/server/ping answers like {direct}"),
            "OK proxy upload: a 5 MiB upload gets 401 through the proxy as directly".to_string(),
            "OK proxy websocket: the WebSocket upgrade gets 101 through the proxy as directly"
                .to_string(),
        ]
    );
    drop(n);

    // nginx's default body limit (1 MiB).
    let n = nginx(up, "", RIGHT, None);
    let public = format!("http://127.0.0.1:{}", n.port);
    assert_eq!(
        proxy_lines(&lib, public, up, None)[1],
        "FAIL proxy upload: a 5 MiB upload is refused by the proxy (413), the server itself answers 401: large photos and videos cannot be uploaded -- fix: raise the proxy's body limit (nginx: client_max_body_size 50000M; Traefik/Caddy: no buffering limit), then reload it"
    );
    drop(n);

    // No Upgrade forwarded: nginx speaks HTTP/1.0 to the server and drops the header.
    let n = nginx(up, "client_max_body_size 50000M;", "", None);
    let public = format!("http://127.0.0.1:{}", n.port);
    assert_eq!(
        proxy_lines(&lib, public, up, None)[2],
        "FAIL proxy websocket: the WebSocket upgrade of /api/socket.io gets 400 through the proxy, 101 directly: the web and mobile apps get no live updates -- fix: forward the upgrade (nginx: proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection \"upgrade\";)"
    );
    drop(n);

    // A slow answer cut by a 1 s read timeout.
    let slow = upstream(true);
    let n = nginx(
        slow,
        "client_max_body_size 50000M;",
        &RIGHT.replace("proxy_read_timeout 600s", "proxy_read_timeout 1s"),
        None,
    );
    let public = format!("http://127.0.0.1:{}", n.port);
    let lines = proxy_lines(&lib, public, slow, None);
    assert_eq!(
        lines.last().unwrap(),
        "FAIL proxy timeout: the proxy gave up waiting on the server: the 5 MiB upload (504 through the proxy, 401 directly) -- fix: raise the proxy's timeouts (nginx: proxy_read_timeout 600s; proxy_send_timeout 600s; send_timeout 600s;)"
    );
    assert!(
        lines.iter().all(|l| !l.starts_with("FAIL proxy upload")),
        "{lines:#?}"
    );
    drop(n);

    // Pointing at the wrong port: 502.
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let n = nginx(dead, "client_max_body_size 50000M;", RIGHT, None);
    let public = format!("http://127.0.0.1:{}", n.port);
    assert_eq!(
        proxy_lines(&lib, public.clone(), up, None),
        vec![format!("FAIL proxy: {public}/api/server/ping answers 502 through the proxy, but 200 directly at {direct} -- fix: point the proxy at the server (proxy_pass http://IMMICH_HOST:2283), and check that the server's port is reachable from the proxy")]
    );
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("openssl is needed by this test (scripts/setup.sh installs it): {e}")
        });
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a certificate for 127.0.0.1 signed by it, valid for `days`.
fn certificates(dir: &Path, days: u32) -> (PathBuf, PathBuf, PathBuf) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "30",
            "-subj",
            "/CN=Test CA",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            &days.to_string(),
            "-extfile",
            "ext.cnf",
        ],
    );
    (
        dir.join("ca.pem"),
        dir.join("leaf.pem"),
        dir.join("leaf.key"),
    )
}

#[test]
fn tls_untrusted_expiring_and_valid() {
    let lib = generate(Generation::V2_6, 2, false);
    let up = upstream(false);
    let tmp = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(tmp.path(), 5);
    let n = nginx(
        up,
        "client_max_body_size 50000M;",
        RIGHT,
        Some((&cert, &key)),
    );
    let public = format!("https://127.0.0.1:{}", n.port);
    let lines = proxy_lines(&lib, public.clone(), up, None);
    assert_eq!(
        lines,
        vec![format!("FAIL proxy tls: {public} refuses a TLS connection that a browser or the app would accept: invalid peer certificate: UnknownIssuer -- fix: serve a certificate for this name from a trusted CA (e.g. Let's Encrypt), with its intermediate certificates, not expired")]
    );
    let lines = proxy_lines(&lib, public.clone(), up, Some(ca));
    let until = chrono_like_date(5);
    assert_eq!(
        lines[0],
        format!("WARN proxy tls: the certificate of {public} is valid, but expires on {until} (in 5 days) -- fix: renew it (certbot renew, or your proxy's ACME settings) and reload the proxy")
    );
    assert_eq!(
        lines[1],
        format!(
            "OK proxy: {public}/api/server/ping answers like http://127.0.0.1:{up}/api/server/ping"
        )
    );
    drop(n);

    let tmp = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(tmp.path(), 200);
    let n = nginx(
        up,
        "client_max_body_size 50000M;",
        RIGHT,
        Some((&cert, &key)),
    );
    let public = format!("https://127.0.0.1:{}", n.port);
    let lines = proxy_lines(&lib, public.clone(), up, Some(ca));
    assert_eq!(
        lines[0],
        format!(
            "OK proxy tls: the certificate of {public} is valid until {} (200 days)",
            chrono_like_date(200)
        )
    );
    assert!(
        lines[1..].iter().all(|l| l.starts_with("OK ")),
        "{lines:#?}"
    );
}

/// Today + `days` as YYYY-MM-DD (UTC), by the civil-from-days algorithm.
fn chrono_like_date(days: i64) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let z = secs / 86400 + days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}
