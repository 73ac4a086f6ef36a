//! A reverse-proxy rig for doctor's proxy lines: Debian's nginx run as a plain process on a
//! loopback port with its own prefix, in front of a server that answers Immich's ping, refuses
//! an unauthenticated upload with 401 after reading it, and upgrades socket.io's WebSocket.
//! Shared by tests/doctor_proxy.rs and benches/doctor.rs.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

/// The server behind the proxy; `slow` delays the upload's answer by 3 s.
pub fn upstream(slow: bool) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(c) = c else { return };
            std::thread::spawn(move || serve(c, slow));
        }
    });
    port
}

fn serve(c: TcpStream, slow: bool) {
    let mut r = BufReader::new(c.try_clone().unwrap());
    let mut first = String::new();
    if r.read_line(&mut first).is_err() {
        return;
    }
    let mut headers = Vec::new();
    loop {
        let mut l = String::new();
        if r.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
            break;
        }
        headers.push(l.trim().to_ascii_lowercase());
    }
    let header = |k: &str| {
        headers.iter().find_map(|h| {
            h.strip_prefix(&format!("{k}:"))
                .map(|v| v.trim().to_string())
        })
    };
    let path = first.split(' ').nth(1).unwrap_or("").to_string();
    let mut w = c;
    let json = |w: &mut TcpStream, status: &str, body: &str| {
        let _ = write!(
            w,
            "HTTP/1.1 {status}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    };
    if path == "/api/server/ping" {
        json(&mut w, "200 OK", "{\"res\":\"pong\"}");
    } else if path == "/api/assets" {
        let n: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut left = n;
        let mut buf = vec![0u8; 65536];
        while left > 0 {
            match r.read(&mut buf[..left.min(65536)]) {
                Ok(0) | Err(_) => return,
                Ok(k) => left -= k,
            }
        }
        if slow {
            std::thread::sleep(Duration::from_secs(3));
        }
        json(
            &mut w,
            "401 Unauthorized",
            "{\"message\":\"Authentication required\",\"error\":\"Unauthorized\",\"statusCode\":401}",
        );
    } else if path.starts_with("/api/socket.io/") {
        if header("upgrade").as_deref() == Some("websocket") {
            let _ = write!(
                w,
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
            );
        } else {
            json(
                &mut w,
                "400 Bad Request",
                "{\"code\":3,\"message\":\"Bad request\"}",
            );
        }
    } else {
        json(&mut w, "404 Not Found", "{\"message\":\"Not Found\"}");
    }
}

/// nginx in the foreground on a free loopback port; killed when dropped.
pub struct Nginx {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub const RIGHT: &str = "proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; \
    proxy_set_header Connection \"upgrade\"; proxy_set_header Host $http_host; \
    proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; \
    proxy_set_header X-Forwarded-Proto $scheme; proxy_read_timeout 600s; proxy_send_timeout 600s;";

pub fn nginx(upstream: u16, server: &str, location: &str, tls: Option<(&Path, &Path)>) -> Nginx {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (ssl, certs) = match tls {
        Some((cert, key)) => (
            " ssl",
            format!(
                "ssl_certificate {}; ssl_certificate_key {};",
                cert.display(),
                key.display()
            ),
        ),
        None => ("", String::new()),
    };
    let conf = format!(
        "daemon off; master_process off; worker_processes 1; pid {p}/nginx.pid; error_log {p}/error.log;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {p}/body; proxy_temp_path {p}/proxy; fastcgi_temp_path {p}/fcgi;
  uwsgi_temp_path {p}/uwsgi; scgi_temp_path {p}/scgi;
  server {{
    listen 127.0.0.1:{port}{ssl}; {certs}
    {server}
    location / {{ proxy_pass http://127.0.0.1:{upstream}; {location} }}
  }}
}}
",
        p = p.display()
    );
    std::fs::write(p.join("nginx.conf"), conf).unwrap();
    let child = Command::new("nginx")
        .args([
            "-p",
            &p.display().to_string(),
            "-c",
            &p.join("nginx.conf").display().to_string(),
        ])
        .spawn()
        .unwrap_or_else(|e| {
            panic!("nginx is needed by this test (scripts/setup.sh installs it): {e}")
        });
    let mut nginx = Nginx {
        child,
        port,
        _dir: dir,
    };
    for _ in 0..100 {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return nginx;
        }
        if let Ok(Some(status)) = nginx.child.try_wait() {
            panic!(
                "nginx exited ({status}): {}",
                std::fs::read_to_string(nginx._dir.path().join("error.log")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(nginx._dir.path().join("error.log")).unwrap_or_default();
    drop(nginx);
    panic!("nginx did not listen: {log}");
}
