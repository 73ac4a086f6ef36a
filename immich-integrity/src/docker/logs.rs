//! Container logs as the daemon sends them. Without a TTY the stream is multiplexed: frames of
//! an 8-byte header (stream type 0 stdin / 1 stdout / 2 stderr, three zero bytes, the payload
//! size as a big-endian u32) and the payload. With `timestamps=1` every line starts with an
//! RFC 3339 time and a space.

use super::DockerError;
use serde::Serialize;

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One log line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    /// Its stream.
    pub stream: LogStream,
    /// The daemon's timestamp, when the line had one.
    pub time: Option<String>,
    /// The text, without the timestamp and the newline.
    pub text: String,
}

/// Splits a multiplexed body into lines; a line split across frames is joined again.
pub fn demultiplex(body: &[u8]) -> Result<Vec<LogLine>, DockerError> {
    let mut out = Vec::new();
    let mut pending: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    let mut rest = body;
    while !rest.is_empty() {
        if rest.len() < 8 {
            return Err(DockerError::Protocol(format!(
                "log stream ends inside a frame header ({} bytes left)",
                rest.len()
            )));
        }
        let (kind, zeros) = (rest[0], &rest[1..4]);
        if kind > 2 || zeros != [0, 0, 0] {
            return Err(DockerError::Protocol(
                "log stream is not multiplexed (bad frame header)".into(),
            ));
        }
        let size = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
        if rest.len() < 8 + size {
            return Err(DockerError::Protocol(
                "log stream ends inside a frame".into(),
            ));
        }
        let payload = &rest[8..8 + size];
        rest = &rest[8 + size..];
        let (stream, slot) = match kind {
            2 => (LogStream::Stderr, 1),
            _ => (LogStream::Stdout, 0),
        };
        let buf = &mut pending[slot];
        buf.extend_from_slice(payload);
        while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=nl).collect();
            out.push(parse_line(&line[..nl], stream));
        }
    }
    for (slot, stream) in [(0, LogStream::Stdout), (1, LogStream::Stderr)] {
        if !pending[slot].is_empty() {
            out.push(parse_line(&pending[slot], stream));
        }
    }
    Ok(out)
}

/// Lines of a raw (TTY) stream or a log file.
pub(crate) fn raw_lines(body: &[u8], stream: LogStream) -> Vec<LogLine> {
    body.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| parse_line(l, stream))
        .collect()
}

fn parse_line(line: &[u8], stream: LogStream) -> LogLine {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches('\r');
    // `2026-11-26T17:39:09.123456789Z message`: the daemon's timestamp.
    match text.split_once(' ') {
        Some((t, rest))
            if t.len() >= 20
                && t.as_bytes()[4] == b'-'
                && t.as_bytes()[10] == b'T'
                && chrono::DateTime::parse_from_rfc3339(t).is_ok() =>
        {
            LogLine {
                stream,
                time: Some(t.to_string()),
                text: rest.to_string(),
            }
        }
        _ => LogLine {
            stream,
            time: None,
            text: text.to_string(),
        },
    }
}
