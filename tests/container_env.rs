//! Zero flags inside Immich's server environment (docker-compose.integrity.yml): the binary runs
//! in a root of its own (a mount namespace and chroot, as a container is) where the generated
//! library's media is at `/data` and its external library at its container path, as the
//! compose user, with only Immich's `DB_*` variables set, and finds exactly the injected faults.

mod common;

use common::*;
use immich_fixtures::Generation;
use std::collections::BTreeSet;
use std::process::Command;

/// Runs `immich-integrity ARGS` in a fresh root: /usr, /etc, /dev and /proc of this machine,
/// the media at /data, each mapped external folder at its container path, the binary at /ii.
fn run_in_container(lib: &Lib, env: &[(&str, String)], args: &[&str]) -> std::process::Output {
    let root = tempfile::tempdir().unwrap();
    let r = root.path().display().to_string();
    let bin_dir = binary().parent().unwrap().display().to_string();
    let mut script = format!(
        "set -e; cd {r}; mkdir -p usr etc dev proc tmp data ii; chmod 1777 tmp; \
         for l in bin lib lib64 sbin; do ln -s usr/$l $l; done; \
         mount --rbind /usr usr; mount --rbind /etc etc; mount --rbind /dev dev; \
         mount -t proc proc proc; mount --bind {bin_dir} ii; mount --bind '{}' data; ",
        lib.truth.media_root.display()
    );
    for (c, h) in &lib.truth.maps {
        if c != &lib.truth.container_root && h.exists() {
            script.push_str(&format!(
                "mkdir -p .{c}; mount --bind '{}' .{c}; ",
                h.display()
            ));
        }
    }
    let (uid, gid) = lib.truth.as_user.split_once(':').unwrap();
    script.push_str(&format!(
        "exec chroot --userspec={uid}:{gid} {r} /ii/immich-integrity \"$@\""
    ));
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--fork", "sh", "-c", &script, "sh"])
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/usr/sbin")
        .env("HOME", "/tmp");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn keys(
    findings: &[immich_integrity::Finding],
) -> BTreeSet<(Option<String>, Option<String>, String)> {
    findings
        .iter()
        .map(|f| {
            (
                f.asset_id.clone(),
                f.file.map(|k| k.as_str().to_string()),
                f.fault.as_str().to_string(),
            )
        })
        .collect()
}

#[test]
fn immich_server_environment_needs_no_flag() {
    let lib = generate(Generation::V2_6, 40, true);
    let db = lib.truth.db_url.rsplit('/').next().unwrap().to_string();
    let truth: BTreeSet<_> = lib
        .truth
        .faults
        .iter()
        .map(|t| (t.asset_id.clone(), t.file.clone(), t.fault.clone()))
        .collect();
    // Immich's variables, as its .env hands them to the server container (trust auth here,
    // so no DB_PASSWORD), then the single DB_URL form.
    let parts = vec![
        ("DB_HOSTNAME", "127.0.0.1".to_string()),
        ("DB_USERNAME", "postgres".to_string()),
        ("DB_DATABASE_NAME", db.clone()),
        ("DB_PORT", "5432".to_string()),
    ];
    let url = vec![("DB_URL", lib.truth.db_url.clone())];
    for env in [parts, url] {
        let out = run_in_container(&lib, &env, &["scan", "-f", "jsonl"]);
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{said}");
        let (findings, summary) = parse_jsonl(&out.stdout);
        assert_eq!(keys(&findings), truth, "{said}");
        assert_eq!(summary["media_location"], "/data");
        let roots = summary["roots"].to_string();
        assert!(roots.contains(r#""value":"/data""#), "{roots}");
        // The external library is read at its container path, as the server reads it.
        assert!(findings
            .iter()
            .filter_map(|f| f.host_path.as_deref())
            .all(|p| !p.starts_with(&lib.truth.media_root.display().to_string())));
        // Its next steps repeat no connection flag: the same environment runs them.
        let out_steps = String::from_utf8_lossy(&out.stdout);
        assert!(out_steps.contains(r#""type":"next_step""#));
        assert!(!out_steps.contains("--db-url") && !out_steps.contains("--env-file"));
    }
    // An unset environment is not a container: the usual error, no guess.
    let out = run_in_container(&lib, &[], &["scan"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no database"));
}
