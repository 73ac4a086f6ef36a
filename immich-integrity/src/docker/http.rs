//! Just enough HTTP/1.1 to talk to a Docker (or podman) daemon on its unix socket: one `GET`
//! per connection (`Connection: close`), a body by `Content-Length`, `chunked` or to the end,
//! every read and write bounded by a deadline and the body by a size cap.

use super::DockerError;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// The largest body read from the daemon (a container list, an inspect, a log tail).
pub(super) const MAX_BODY: usize = 32 << 20;

/// A response: status code, lower-cased headers, the body de-chunked.
#[derive(Debug)]
pub(super) struct Response {
    pub(super) status: u16,
    pub(super) headers: Vec<(String, String)>,
    pub(super) body: Vec<u8>,
}

impl Response {
    pub(super) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A reader that fails once `deadline` has passed, whatever the socket timeouts allow.
struct Bounded {
    stream: UnixStream,
    deadline: Instant,
}

impl Read for Bounded {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        self.stream.read(buf)
    }
}

/// `GET path` on the socket at `socket`, all within `timeout`.
pub(super) fn get(socket: &Path, path: &str, timeout: Duration) -> Result<Response, DockerError> {
    let io = |e: std::io::Error| DockerError::Io {
        socket: socket.to_path_buf(),
        source: e,
    };
    let deadline = Instant::now() + timeout;
    let mut stream = UnixStream::connect(socket).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: immich-integrity\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )
    .map_err(io)?;
    let mut r = BufReader::new(Bounded { stream, deadline });
    let status_line = line(&mut r).map_err(io)?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| status_line.starts_with("HTTP/1."))
        .ok_or_else(|| DockerError::Protocol(format!("not an HTTP answer: {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let l = line(&mut r).map_err(io)?;
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let mut resp = Response {
        status,
        headers,
        body: Vec::new(),
    };
    let chunked = resp
        .header("transfer-encoding")
        .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
    let length = resp
        .header("content-length")
        .and_then(|l| l.parse::<usize>().ok());
    resp.body = if chunked {
        read_chunked(&mut r).map_err(io)?
    } else if let Some(n) = length {
        if n > MAX_BODY {
            return Err(DockerError::Protocol(format!(
                "answer of {n} bytes is too large"
            )));
        }
        let mut b = vec![0; n];
        r.read_exact(&mut b).map_err(io)?;
        b
    } else {
        let mut b = Vec::new();
        r.take(MAX_BODY as u64 + 1)
            .read_to_end(&mut b)
            .map_err(io)?;
        b
    };
    if resp.body.len() > MAX_BODY {
        return Err(DockerError::Protocol("answer too large".into()));
    }
    Ok(resp)
}

/// One header line without its CRLF (at most 64 KiB).
fn line(r: &mut impl BufRead) -> std::io::Result<String> {
    let mut buf = Vec::new();
    r.take(64 << 10).read_until(b'\n', &mut buf)?;
    if !buf.ends_with(b"\n") {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the daemon closed the connection mid-answer",
        ));
    }
    while buf.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        buf.pop();
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

fn read_chunked(r: &mut impl BufRead) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let size_line = line(r)?;
        let hex = size_line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(hex, 16).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("bad chunk size {size_line:?}"),
            )
        })?;
        if size == 0 {
            // Trailers, then the empty line.
            while !line(r)?.is_empty() {}
            return Ok(body);
        }
        if body.len() + size > MAX_BODY {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "answer too large",
            ));
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..])?;
        line(r)?;
    }
}
