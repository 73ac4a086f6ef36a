//! One command line: headed help, short flags, owners by e-mail and libraries by name in every
//! flag, one set of format names, a state folder independent of the current folder, groups by
//! severity and short paths in the table, and a server that is down named at once.

mod common;

use common::*;
use immich_fixtures::Generation;
use std::path::Path;
use std::process::{Command, Output};

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn cli_in(cwd: &Path, state: &Path, args: &[String]) -> Output {
    Command::new(binary())
        .args(args)
        .current_dir(cwd)
        .env_remove("DATABASE_URL")
        .env_remove("IMMICH_INTEGRITY_STATE_DIR")
        .env("XDG_STATE_HOME", state)
        .output()
        .unwrap()
}

fn args(cmd: &str, lib: &Lib, extra: &[&str]) -> Vec<String> {
    let mut a = vec![cmd.to_string()];
    a.extend(library_flags(lib));
    a.extend(["--as-user".into(), lib.truth.as_user.clone()]);
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn query(lib: &Lib, sql: &str) -> Vec<(String, String)> {
    runtime().block_on(async {
        let mut c = connect(&lib.truth.db_url).await;
        sqlx::query_as(sql).fetch_all(&mut c).await.unwrap()
    })
}

#[test]
fn help_is_headed_and_short_flags_work() {
    for (cmd, headings) in [
        (
            "scan",
            &["Connection:", "Selection:", "Checks:", "Output:"][..],
        ),
        ("relink", &["Connection:", "Selection:", "Safety:"][..]),
        (
            "regenerate",
            &["Connection:", "Selection:", "Safety:", "Output:"][..],
        ),
        ("undo", &["Connection:", "Safety:"][..]),
        ("doctor", &["Connection:", "Output:"][..]),
    ] {
        let out = run_cli(&[cmd.into(), "--help".into()]);
        let help = String::from_utf8_lossy(&out.stdout);
        for h in headings {
            assert!(help.contains(&format!("\n{h}\n")), "{cmd}: no {h}\n{help}");
        }
    }
    let help = String::from_utf8(run_cli(&["scan".into(), "--help".into()]).stdout).unwrap();
    for short in [
        "-o, --output",
        "-f, --format",
        "-j, --jobs",
        "-q, --quiet",
        "-v, --verbose",
    ] {
        assert!(help.contains(short), "{short}\n{help}");
    }
}

#[test]
fn owners_by_email_and_libraries_by_name_everywhere() {
    let lib = generate(Generation::V2_6, 40, true);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("xdg");
    let libraries = query(&lib, "SELECT id::text, name FROM library ORDER BY name");
    assert!(libraries.len() >= 2, "{libraries:?}");
    let by = |flag: &str| {
        let out = cli_in(
            dir.path(),
            &state,
            &args("scan", &lib, &["-q", "-f", "jsonl", "--library", flag]),
        );
        assert!(matches!(out.status.code(), Some(0 | 1)), "{}", text(&out));
        let (findings, summary) = parse_jsonl(&out.stdout);
        (findings, summary["rows"].clone())
    };
    for (id, name) in &libraries {
        assert_eq!(
            by(id),
            by(name),
            "--library {name} selects what its id does"
        );
    }
    let name = &libraries[0].1;
    let out = cli_in(
        dir.path(),
        &state,
        &args("scan", &lib, &["--library", "No Such Library"]),
    );
    assert_eq!(out.status.code(), Some(2));
    let said = text(&out);
    assert!(
        said.contains("no library is named") && said.contains(name),
        "{said}"
    );

    // --api-key-for by e-mail: that owner's batches use its key (dry run, nothing sent).
    let users = query(&lib, "SELECT id::text, email FROM \"user\" ORDER BY email");
    let regen = |pair: &str| {
        cli_in(
            dir.path(),
            &state,
            &args(
                "regenerate",
                &lib,
                &["--server", "http://127.0.0.1:9", "--api-key-for", pair],
            ),
        )
    };
    let owners_with_work: Vec<&(String, String)> = users
        .iter()
        .filter(|(id, _)| {
            let out = regen(&format!("{id}=k"));
            text(&out).contains(&format!("owner {id} (owner's key)"))
        })
        .collect();
    assert!(!owners_with_work.is_empty());
    for (id, email) in owners_with_work {
        let out = regen(&format!("{}=k", email.to_uppercase()));
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        assert!(
            text(&out).contains(&format!("owner {id} (owner's key)")),
            "{}",
            text(&out)
        );
    }
    let out = regen("nobody@example.com=k");
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("no Immich user has the e-mail address \"nobody@example.com\""));
}

#[test]
fn formats_have_one_set_of_names() {
    let lib = generate(Generation::V2_6, 20, false);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("xdg");
    let doctor = |f: &str| cli_in(dir.path(), &state, &args("doctor", &lib, &["-f", f]));
    let table = text(&doctor("table"));
    // The same checks (their numbers, e.g. free space, may move between two runs).
    let names = |t: &str| -> Vec<String> {
        t.lines()
            .map(|l| l.split(':').next().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(
        names(&table),
        names(&text(&doctor("text"))),
        "text is table's old name"
    );
    assert!(table.contains("OK "), "{table}");
    let csv = String::from_utf8(doctor("csv").stdout).unwrap();
    assert!(csv.starts_with("name,status,message,fix\n"), "{csv}");
    let jsonl = String::from_utf8(doctor("jsonl").stdout).unwrap();
    let lines: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.last().unwrap()["type"], "summary");
    assert!(lines[..lines.len() - 1]
        .iter()
        .all(|l| l["type"] == "check"));
    assert_eq!(
        csv.lines().count(),
        lines.len(),
        "one row per check, and a header"
    );

    // orphans: csv too.
    let stray = lib.truth.media_root.join("upload/stray, \"quoted\".jpg");
    std::fs::write(&stray, b"not referenced").unwrap();
    let out = cli_in(dir.path(), &state, &args("orphans", &lib, &["-f", "csv"]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let csv = String::from_utf8(out.stdout).unwrap();
    let mut rows = csv.lines();
    assert_eq!(
        rows.next(),
        Some("path,rel,size,moved_row,moved_file,relink_to")
    );
    let row = rows.next().unwrap();
    assert!(
        row.contains("\"upload/stray, \"\"quoted\"\".jpg\",14,"),
        "{row}"
    );
    std::fs::remove_file(&stray).unwrap();
}

#[test]
fn state_files_go_to_the_state_folder_not_the_current_one() {
    let lib = generate(Generation::V2_6, 40, true);
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().join("cwd");
    std::fs::create_dir(&cwd).unwrap();
    let xdg = dir.path().join("xdg");
    let out = cli_in(&cwd, &xdg, &args("relink", &lib, &["--apply"]));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let journal = xdg.join("immich-integrity/relink.journal");
    let said = text(&out);
    assert!(
        said.contains(&format!("journal: {}", journal.display())),
        "the path is printed: {said}"
    );
    assert!(journal.exists());
    // The undo hint names the journal by its absolute path and the run's database.
    let hint = said
        .lines()
        .find_map(|l| l.split_once("undo with: ").map(|(_, h)| h.to_string()))
        .unwrap();
    assert!(
        hint.contains(&journal.display().to_string()) && hint.contains("--db-url"),
        "{hint}"
    );
    // A scan to standard output puts its restore list there too, not in the current folder.
    let out = cli_in(&cwd, &xdg, &args("scan", &lib, &["-f", "jsonl"]));
    assert_eq!(out.status.code(), Some(1));
    let (_, summary) = parse_jsonl(&out.stdout);
    let list = summary["restore_list"].as_str().unwrap();
    assert!(list.starts_with(&xdg.join("immich-integrity/restore-").display().to_string()));
    assert_eq!(
        std::fs::read_dir(&cwd).unwrap().count(),
        0,
        "nothing in the cwd"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(xdg.join("immich-integrity"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o700);
}

#[test]
fn the_table_orders_groups_by_severity_and_shortens_paths() {
    let lib = generate(Generation::V2_6, 40, true);
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("xdg");
    let out = cli_in(dir.path(), &state, &args("scan", &lib, &["-f", "table"]));
    assert_eq!(out.status.code(), Some(1));
    let table = String::from_utf8(out.stdout).unwrap();
    let repairs: Vec<&str> = table
        .lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| l.split_whitespace().last().unwrap())
        .collect();
    let rank = |r: &str| {
        [
            "restore_from_backup",
            "none",
            "fix_permissions",
            "relink",
            "regenerate",
        ]
        .iter()
        .position(|x| *x == r)
        .unwrap()
    };
    let first = table.lines().nth(1).unwrap();
    assert!(first.starts_with("mount_missing"), "{table}");
    let ranks: Vec<usize> = repairs[1..].iter().map(|r| rank(r)).collect();
    assert!(
        ranks.windows(2).all(|w| w[0] <= w[1]),
        "{repairs:?}\n{table}"
    );

    let root = lib.truth.media_root.display().to_string();
    assert!(table.contains(&format!("paths below the media root {root}")));
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| l.starts_with("  ") && !l.starts_with("   ") && l.contains("  upload/"))
        .collect();
    assert!(!rows.is_empty(), "{table}");
    for l in table.lines().filter(|l| l.starts_with("      found at ")) {
        assert!(!l.contains(&root), "{l}");
    }
    // json keeps whole paths.
    let out = cli_in(dir.path(), &state, &args("scan", &lib, &["-f", "jsonl"]));
    let (findings, _) = parse_jsonl(&out.stdout);
    assert!(findings
        .iter()
        .filter_map(|f| f.host_path.as_deref())
        .any(|p| p.starts_with(&root)));
}

#[test]
fn regenerate_names_a_server_that_is_down_and_exits_2_without_retrying() {
    let lib = generate(Generation::V2_6, 40, true);
    let dir = tempfile::tempdir().unwrap();
    // A port nobody listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let started = std::time::Instant::now();
    let out = cli_in(
        dir.path(),
        &dir.path().join("xdg"),
        &args(
            "regenerate",
            &lib,
            &["--server", &url, "--api-key", "k", "--apply"],
        ),
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains(&format!("cannot reach Immich at {url}")),
        "{said}"
    );
    assert!(
        said.contains(&format!(
            "immich-integrity: cannot reach Immich at {url}: nothing was queued"
        )),
        "{said}"
    );
    // A server never reached is not retried: each request tried once.
    for l in said.lines().filter(|l| l.contains("gave up after")) {
        assert!(l.contains("gave up after 1 attempts"), "{l}");
    }
    // The old behaviour retried for 31 s before saying anything.
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}
