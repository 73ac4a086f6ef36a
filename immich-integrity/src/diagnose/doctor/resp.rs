//! A minimal, read-only Redis client (RESP2 over TCP): enough for the queue counts (`LLEN`,
//! `ZCARD`, `HGET`, `LRANGE`, `ZREVRANGE`, `HEXISTS`, `SCAN`), each reply bounded in time and
//! size. No crate: the doctor needs a dozen commands, never a pool or pub/sub.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// A Redis reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Reply {
    Nil,
    Int(i64),
    Text(String),
    Bulk(Vec<u8>),
    Array(Vec<Reply>),
}

impl Reply {
    pub(super) fn int(&self) -> i64 {
        match self {
            Reply::Int(i) => *i,
            Reply::Bulk(b) => String::from_utf8_lossy(b).parse().unwrap_or(0),
            _ => 0,
        }
    }
    pub(super) fn text(&self) -> Option<String> {
        match self {
            Reply::Bulk(b) => Some(String::from_utf8_lossy(b).into_owned()),
            Reply::Text(t) => Some(t.clone()),
            _ => None,
        }
    }
    pub(super) fn items(self) -> Vec<Reply> {
        match self {
            Reply::Array(a) => a,
            _ => Vec::new(),
        }
    }
}

/// One connection.
pub(super) struct Redis {
    r: BufReader<TcpStream>,
}

impl Redis {
    /// Connects to `host:port`, authenticates with `password` and selects `db`.
    pub(super) fn connect(
        host: &str,
        port: u16,
        password: Option<&str>,
        db: u32,
        timeout: Duration,
    ) -> Result<Redis, String> {
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(|e| format!("{host} does not resolve ({e})"))?
            .next()
            .ok_or_else(|| format!("{host} has no address"))?;
        let s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        s.set_write_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        let mut c = Redis {
            r: BufReader::new(s),
        };
        if let Some(p) = password {
            c.call(&["AUTH", p])
                .map_err(|e| format!("the password (REDIS_PASSWORD) was refused: {e}"))?;
        }
        if db != 0 {
            c.call(&["SELECT", &db.to_string()])?;
        }
        Ok(c)
    }

    /// Sends one command, reads its reply; a Redis error reply is `Err`.
    pub(super) fn call(&mut self, args: &[&str]) -> Result<Reply, String> {
        let mut req = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            req.extend_from_slice(a.as_bytes());
            req.extend_from_slice(b"\r\n");
        }
        self.r
            .get_mut()
            .write_all(&req)
            .map_err(|e| e.to_string())?;
        read_reply(&mut self.r, 0)
    }
}

fn read_reply(r: &mut impl BufRead, depth: usize) -> Result<Reply, String> {
    if depth > 4 {
        return Err("reply nested too deeply".into());
    }
    let mut line = Vec::new();
    r.take(1 << 16)
        .read_until(b'\n', &mut line)
        .map_err(|e| e.to_string())?;
    if line.len() < 3 || !line.ends_with(b"\r\n") {
        return Err("Redis closed the connection".into());
    }
    let body = String::from_utf8_lossy(&line[1..line.len() - 2]).into_owned();
    let num = || {
        body.parse::<i64>()
            .map_err(|_| format!("bad reply length {body:?}"))
    };
    match line[0] {
        b'+' => Ok(Reply::Text(body)),
        b'-' => Err(body),
        b':' => Ok(Reply::Int(num()?)),
        b'$' => {
            let n = num()?;
            if n < 0 {
                return Ok(Reply::Nil);
            }
            if n > 16 << 20 {
                return Err("reply too large".into());
            }
            let mut b = vec![0; n as usize + 2];
            r.read_exact(&mut b).map_err(|e| e.to_string())?;
            b.truncate(n as usize);
            Ok(Reply::Bulk(b))
        }
        b'*' => {
            let n = num()?;
            if n < 0 {
                return Ok(Reply::Nil);
            }
            (0..n.min(100_000))
                .map(|_| read_reply(r, depth + 1))
                .collect::<Result<Vec<_>, _>>()
                .map(Reply::Array)
        }
        other => Err(format!("unexpected reply type {:?}", other as char)),
    }
}
