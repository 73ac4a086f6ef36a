//! The few Immich API routes queue mode calls, answered as Immich answers them for an admin's
//! key with every permission: `GET /api/api-keys/me`, `GET /api/users/me` and
//! `PUT /api/jobs/{queue}` (any other route or key: Immich's 401/404 bodies).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const ADMIN_KEY: &str = "stubAdminKey0123456789abcdefABCDEF";

pub struct Stub {
    port: u16,
    stop: Arc<AtomicBool>,
    /// "METHOD path" of every request, in order.
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Stub {
    pub fn start() -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (s, l) = (stop.clone(), log.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        let l = l.clone();
                        std::thread::spawn(move || handle(stream, &l));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Stub { port, stop, log }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn requests(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn handle(stream: TcpStream, log: &Mutex<Vec<String>>) {
    let mut r = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if r.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let (mut len, mut key) = (0usize, None);
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).is_err() {
            return;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => len = v.trim().parse().unwrap_or(0),
                "x-api-key" => key = Some(v.trim().to_string()),
                _ => {}
            }
        }
    }
    let mut body = vec![0; len];
    let _ = r.read_exact(&mut body);
    log.lock().unwrap().push(format!("{method} {path}"));
    let (status, text) = if key.as_deref() != Some(ADMIN_KEY) {
        (
            401,
            r#"{"message":"Invalid API key","error":"Unauthorized","statusCode":401}"#.to_string(),
        )
    } else {
        match (method.as_str(), path.as_str()) {
            ("GET", "/api/api-keys/me") => (
                200,
                r#"{"id":"6f1e0b4a-0000-4000-8000-000000000001","name":"integrity","createdAt":"2026-11-01T00:00:00.000Z","updatedAt":"2026-11-01T00:00:00.000Z","permissions":["all"]}"#.to_string(),
            ),
            ("GET", "/api/users/me") => (
                200,
                r#"{"id":"6f1e0b4a-0000-4000-8000-000000000002","email":"admin@example.com","name":"admin","isAdmin":true,"storageLabel":"admin","profileImagePath":"","avatarColor":"primary","status":"active"}"#.to_string(),
            ),
            ("PUT", p) if p.starts_with("/api/jobs/") => (
                200,
                r#"{"jobCounts":{"active":1,"completed":0,"failed":0,"delayed":0,"waiting":0,"paused":0},"queueStatus":{"isActive":true,"isPaused":false}}"#.to_string(),
            ),
            _ => (
                404,
                format!(r#"{{"message":"Cannot {method} {path}","error":"Not Found","statusCode":404}}"#),
            ),
        }
    };
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        _ => "Not Found",
    };
    let mut s = stream;
    let _ = s.write_all(
        format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json; charset=utf-8\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n{text}",
            text.len()
        )
        .as_bytes(),
    );
}
