//! Redis as BullMQ fills it, for doctor's queue lines: a plain RESP connection to the real
//! Redis at 127.0.0.1:6379 and job hashes written as BullMQ's scripts leave them. Shared by
//! tests/doctor_queues.rs and benches/doctor.rs.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

/// A connection to the test Redis that sends commands and reads (and checks) their replies.
pub struct Redis(BufReader<TcpStream>);

impl Redis {
    pub fn connect() -> Redis {
        let s = TcpStream::connect("127.0.0.1:6379")
            .unwrap_or_else(|e| panic!("Redis at 127.0.0.1:6379 is needed by this test: {e}"));
        Redis(BufReader::new(s))
    }

    pub fn cmd(&mut self, args: &[&str]) -> String {
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.0.get_mut().write_all(req.as_bytes()).unwrap();
        self.reply()
    }

    pub fn reply(&mut self) -> String {
        let mut l = String::new();
        self.0.read_line(&mut l).unwrap();
        let l = l.trim_end().to_string();
        assert!(!l.starts_with('-'), "Redis: {l}");
        match l.as_bytes()[0] {
            b'$' => {
                let n: i64 = l[1..].parse().unwrap();
                if n < 0 {
                    return String::new();
                }
                let mut b = vec![0; n as usize + 2];
                self.0.read_exact(&mut b).unwrap();
                String::from_utf8_lossy(&b[..n as usize]).into_owned()
            }
            b'*' => {
                let n: i64 = l[1..].parse().unwrap();
                (0..n.max(0))
                    .map(|_| self.reply())
                    .collect::<Vec<_>>()
                    .join("\n")
            }
            _ => l,
        }
    }

    /// Deletes every key under `prefix`.
    pub fn clear(&mut self, prefix: &str) {
        let keys = self.cmd(&["KEYS", &format!("{prefix}:*")]);
        for k in keys.lines().filter(|k| !k.is_empty()) {
            self.cmd(&["DEL", k]);
        }
    }
}

/// A job hash as BullMQ's `addJob`/`moveToActive`/`moveToFinished` scripts leave it.
pub fn job(r: &mut Redis, key: &str, id: &str, name: &str, fields: &[(&str, String)]) {
    let now = now_ms();
    let data = format!("{{\"id\":\"{id}-asset\"}}");
    let mut args = vec![
        "HSET".to_string(),
        format!("{key}:{id}"),
        "name".into(),
        name.into(),
        "data".into(),
        data,
        "opts".into(),
        "{\"attempts\":3,\"removeOnComplete\":true,\"removeOnFail\":false}".into(),
        "timestamp".into(),
        (now - 3_600_000 * 3).to_string(),
        "delay".into(),
        "0".into(),
        "priority".into(),
        "0".into(),
    ];
    for (k, v) in fields {
        args.push(k.to_string());
        args.push(v.clone());
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    r.cmd(&refs);
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
