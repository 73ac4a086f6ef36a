use super::*;

fn frame(kind: u8, payload: &str) -> Vec<u8> {
    let mut f = vec![kind, 0, 0, 0];
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload.as_bytes());
    f
}

#[test]
fn multiplexed_frames_become_lines_per_stream() {
    let mut body = frame(1, "2026-11-26T10:00:00.000000001Z hello\n");
    body.extend(frame(2, "2026-11-26T10:00:01.5Z err part "));
    body.extend(frame(1, "2026-11-26T10:00:02Z second\n"));
    body.extend(frame(2, "one\n"));
    let lines = demultiplex(&body).unwrap();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0].text, "hello");
    assert_eq!(
        lines[0].time.as_deref(),
        Some("2026-11-26T10:00:00.000000001Z")
    );
    assert_eq!(lines[1].text, "second");
    assert_eq!(lines[2].stream, LogStream::Stderr);
    assert_eq!(lines[2].text, "err part one");
    // A raw stream is refused, not misread.
    assert!(demultiplex(b"plain text\n").is_err());
    assert!(demultiplex(&frame(1, "x")[..6]).is_err());
}

#[test]
fn inspect_of_a_real_daemon_decodes() {
    let j = r#"{"Id":"abc","Name":"/immich_postgres","RestartCount":3,
      "State":{"Status":"running","Running":true,"Paused":false,"Restarting":false,
        "OOMKilled":true,"Dead":false,"Pid":42,"ExitCode":137,"Error":"",
        "StartedAt":"2026-11-26T10:00:00Z","FinishedAt":"0001-01-01T00:00:00Z",
        "Health":{"Status":"unhealthy","FailingStreak":4,"Log":null}},
      "Config":{"Image":"ghcr.io/immich-app/postgres:14","Labels":null,"Tty":false},
      "NetworkSettings":{"Ports":{"5432/tcp":null},
        "Networks":{"immich_default":{"IPAddress":"172.18.0.2","Gateway":"172.18.0.1"}}}}"#;
    let i: ContainerInspect = serde_json::from_str(j).unwrap();
    assert!(i.state.oom_killed);
    assert_eq!(i.state.health.as_ref().unwrap().status, "unhealthy");
    assert_eq!(i.address(), Some(("immich_default", "172.18.0.2")));
    assert_eq!(i.published(5432), None);
    assert_eq!(i.short_name(), "immich_postgres");
}
