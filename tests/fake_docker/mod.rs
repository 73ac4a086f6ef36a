//! A Docker Engine API on a unix socket for tests, answering as dockerd does: the same paths,
//! headers and JSON shapes (`/containers/json` with label filters, `/containers/{id}/json`,
//! `/containers/{id}/logs` as a chunked, multiplexed stream), from containers the test
//! describes as inspect JSON. Also a TCP forwarder standing in for a container's address.
#![allow(dead_code)]

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// One container: its inspect and its log lines (stream 1 stdout / 2 stderr, text with the
/// daemon's timestamp in front).
#[derive(Clone)]
pub struct Fake {
    pub inspect: Value,
    pub logs: Vec<(u8, String)>,
}

pub struct FakeDocker {
    pub socket: PathBuf,
    pub requests: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl FakeDocker {
    pub fn start(containers: Vec<Fake>) -> FakeDocker {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("docker.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let containers = Arc::new(containers);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let containers = containers.clone();
                let seen = seen.clone();
                std::thread::spawn(move || serve(stream, &containers, &seen));
            }
        });
        FakeDocker {
            socket,
            requests,
            _dir: dir,
        }
    }

    /// `unix://...` for `DOCKER_HOST`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket.display())
    }
}

/// A running, healthy container of `project`/`service` at `ip`, as `docker inspect` shows one
/// started by compose.
pub fn container(project: &str, service: &str, name: &str, ip: &str, image: &str) -> Value {
    let version = image.rsplit(':').next().unwrap_or("latest");
    json!({
        "Id": format!("{:0<64}", name.bytes().map(|b| format!("{b:02x}")).collect::<String>()),
        "Created": "2026-11-20T08:00:00.000000000Z",
        "Path": "tini",
        "Args": [],
        "State": {
            "Status": "running", "Running": true, "Paused": false, "Restarting": false,
            "OOMKilled": false, "Dead": false, "Pid": 4242, "ExitCode": 0, "Error": "",
            "StartedAt": "2026-11-26T08:00:00.000000000Z",
            "FinishedAt": "0001-01-01T00:00:00Z",
            "Health": {"Status": "healthy", "FailingStreak": 0, "Log": [
                {"Start": "2026-11-26T09:00:00Z", "End": "2026-11-26T09:00:01Z", "ExitCode": 0, "Output": "ok\n"}
            ]}
        },
        "Image": "sha256:0123",
        "Name": format!("/{name}"),
        "RestartCount": 0,
        "HostConfig": {"NetworkMode": format!("{project}_default"), "RestartPolicy": {"Name": "always", "MaximumRetryCount": 0}},
        "Config": {
            "Hostname": "abc", "Tty": false, "Image": image,
            "Labels": {
                "com.docker.compose.project": project,
                "com.docker.compose.service": service,
                "com.docker.compose.oneoff": "False",
                "com.docker.compose.version": "2.29.7",
                "org.opencontainers.image.version": version
            }
        },
        "NetworkSettings": {
            "Ports": {},
            "Networks": {format!("{project}_default"): {
                "IPAMConfig": null, "Aliases": [name, service], "NetworkID": "n1",
                "Gateway": "172.18.0.1", "IPAddress": ip, "IPPrefixLen": 16,
                "MacAddress": "02:42:ac:12:00:02"
            }}
        }
    })
}

fn summary(i: &Value) -> Value {
    let health = i["State"]["Health"]["Status"].as_str().unwrap_or("");
    json!({
        "Id": i["Id"], "Names": [i["Name"]], "Image": i["Config"]["Image"],
        "ImageID": i["Image"], "Command": "tini -- start.sh", "Created": 1763625600,
        "Ports": [], "Labels": i["Config"]["Labels"], "State": i["State"]["Status"],
        "Status": if health.is_empty() { "Up 3 hours".to_string() } else { format!("Up 3 hours ({health})") },
        "HostConfig": {"NetworkMode": i["HostConfig"]["NetworkMode"]},
        "NetworkSettings": {"Networks": i["NetworkSettings"]["Networks"]},
        "Mounts": []
    })
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(if b[i] == b'+' { b' ' } else { b[i] });
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

fn serve(stream: UnixStream, containers: &[Fake], seen: &Mutex<Vec<String>>) {
    let mut r = BufReader::new(stream.try_clone().unwrap());
    let mut first = String::new();
    if r.read_line(&mut first).is_err() {
        return;
    }
    loop {
        let mut l = String::new();
        if r.read_line(&mut l).unwrap_or(0) == 0 || l == "\r\n" {
            break;
        }
    }
    let target = first.split(' ').nth(1).unwrap_or("/").to_string();
    seen.lock().unwrap().push(target.clone());
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let params: Vec<(String, String)> = query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), decode(v)))
        .collect();
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let find = |id: &str| {
        containers.iter().find(|c| {
            c.inspect["Id"] == id || c.inspect["Name"].as_str() == Some(&format!("/{id}"))
        })
    };
    let mut w = stream;
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["containers", "json"] => {
            let labels: Vec<String> = param("filters")
                .map(|f| serde_json::from_str::<Value>(&f).unwrap())
                .and_then(|f| f["label"].as_array().cloned())
                .unwrap_or_default()
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect();
            let all = param("all").as_deref() == Some("1");
            let list: Vec<Value> = containers
                .iter()
                .filter(|c| all || c.inspect["State"]["Status"] == "running")
                .filter(|c| {
                    labels.iter().all(|l| {
                        let (k, v) = l.split_once('=').unwrap();
                        c.inspect["Config"]["Labels"][k].as_str() == Some(v)
                    })
                })
                .map(|c| summary(&c.inspect))
                .collect();
            json_answer(&mut w, 200, &Value::Array(list));
        }
        ["containers", id, "json"] => match find(id) {
            Some(c) => json_answer(&mut w, 200, &c.inspect),
            None => json_answer(
                &mut w,
                404,
                &json!({"message": format!("No such container: {id}")}),
            ),
        },
        ["containers", id, "logs"] => match find(id) {
            Some(c) => {
                let tail: usize = param("tail")
                    .and_then(|t| t.parse().ok())
                    .unwrap_or(usize::MAX);
                let skip = c.logs.len().saturating_sub(tail);
                let _ = write!(
                    w,
                    "HTTP/1.1 200 OK\r\nApi-Version: 1.47\r\nContent-Type: application/vnd.docker.multiplexed-stream\r\nDocker-Experimental: false\r\nOstype: linux\r\nServer: Docker/27.3.1 (linux)\r\nTransfer-Encoding: chunked\r\n\r\n"
                );
                for (kind, text) in &c.logs[skip..] {
                    let payload = format!("{text}\n");
                    let mut frame = vec![*kind, 0, 0, 0];
                    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
                    frame.extend_from_slice(payload.as_bytes());
                    let _ = write!(w, "{:x}\r\n", frame.len());
                    let _ = w.write_all(&frame);
                    let _ = w.write_all(b"\r\n");
                }
                let _ = w.write_all(b"0\r\n\r\n");
            }
            None => json_answer(
                &mut w,
                404,
                &json!({"message": format!("No such container: {id}")}),
            ),
        },
        _ => json_answer(&mut w, 404, &json!({"message": "page not found"})),
    }
}

fn json_answer(w: &mut UnixStream, status: u16, body: &Value) {
    let text = format!("{body}\n");
    let reason = if status == 200 { "OK" } else { "Not Found" };
    let _ = write!(
        w,
        "HTTP/1.1 {status} {reason}\r\nApi-Version: 1.47\r\nContent-Type: application/json\r\nDocker-Experimental: false\r\nOstype: linux\r\nServer: Docker/27.3.1 (linux)\r\nContent-Length: {}\r\n\r\n{text}",
        text.len()
    );
}

/// Listens on `listen` (e.g. `127.0.0.3:0`) and pipes every connection to `to`: a container's
/// address on a compose network, played on loopback.
pub fn forward(listen: &str, to: SocketAddr) -> SocketAddr {
    let l = TcpListener::bind(listen).unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(a) = c else { return };
            let Ok(b) = TcpStream::connect(to) else {
                continue;
            };
            let (a2, b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());
            std::thread::spawn(move || pipe(a, b));
            std::thread::spawn(move || pipe(b2, a2));
        }
    });
    addr
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16384];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => {
                let _ = to.shutdown(std::net::Shutdown::Write);
                return;
            }
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// A port nothing listens on at 127.0.0.1 right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
