//! The database password never appears in anything the tool writes: stdout, stderr, reports
//! and journals of every command that takes a database URL, its failures (bad URL,
//! unreachable host, refused login, missing database), and `--help` with `DATABASE_URL` set.

mod common;

use common::*;
use immich_fixtures::Generation;
use std::path::Path;
use std::process::{Command, Output};

/// Runs the binary and returns everything it printed.
fn run(args: &[String], env_url: Option<&str>) -> (Output, String) {
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .env_remove("DATABASE_URL")
        .env("RUST_BACKTRACE", "1");
    if let Some(u) = env_url {
        cmd.env("DATABASE_URL", u);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

#[test]
fn the_password_never_appears_in_any_output() {
    // Trust authentication ignores the password, so the real database accepts it.
    let secret = format!("Pw-{}-s3cret", std::process::id());
    let lib = generate(Generation::V1_137, 30, true);
    let url = lib.truth.db_url.replacen(
        "postgres://postgres@",
        &format!("postgres://postgres:{secret}@"),
        1,
    );
    assert!(url.contains(&secret), "{url}");
    let db = url.rsplit('/').next().unwrap().to_string();
    let mut flags = library_flags(&lib);
    flags[1] = url.clone();
    flags.extend(["--as-user".into(), lib.truth.as_user.clone()]);
    let with = |head: &[&str], tail: &[String]| -> Vec<String> {
        let mut a: Vec<String> = head.iter().map(|s| s.to_string()).collect();
        a.extend(flags.iter().cloned());
        a.extend(tail.iter().cloned());
        a
    };
    let report = lib.dir.join("report.jsonl");
    let json = lib.dir.join("report.json");
    let journal = lib.dir.join("secret.journal");
    let env_file = lib.dir.join(".env");
    std::fs::write(
        &env_file,
        format!(
            "DB_HOSTNAME=127.0.0.1\nDB_PORT=1\nDB_USERNAME=postgres\nDB_PASSWORD={secret}\n\
             DB_DATABASE_NAME={db}\nUPLOAD_LOCATION=./media\n"
        ),
    )
    .unwrap();

    let mut printed = Vec::new();
    let mut expect = |what: &str, args: Vec<String>, env: Option<&str>, code: i32| {
        let (out, text) = run(&args, env);
        assert_eq!(out.status.code(), Some(code), "{what}: {text}");
        printed.push((what.to_string(), text));
    };
    expect(
        "scan jsonl",
        with(
            &["scan"],
            &[
                "--format".into(),
                "jsonl".into(),
                "--output".into(),
                s(&report),
            ],
        ),
        None,
        1,
    );
    expect(
        "scan json",
        with(
            &["scan"],
            &[
                "--format".into(),
                "json".into(),
                "--output".into(),
                s(&json),
            ],
        ),
        None,
        1,
    );
    expect("scan table", with(&["scan"], &[]), None, 1);
    expect(
        "scan csv",
        with(&["scan"], &["--format".into(), "csv".into()]),
        None,
        1,
    );
    // DATABASE_URL from the environment, no flag.
    let mut no_flag = with(&["scan"], &[]);
    no_flag.drain(1..3);
    expect("scan with DATABASE_URL", no_flag, Some(&url), 1);
    expect("relink dry run", with(&["relink"], &[]), None, 0);
    expect(
        "relink --apply",
        with(
            &["relink"],
            &["--apply".into(), "--journal".into(), s(&journal)],
        ),
        None,
        0,
    );
    expect(
        "undo",
        vec!["undo".into(), s(&journal), "--db-url".into(), url.clone()],
        None,
        0,
    );
    let bad_urls = [
        (
            "bad port",
            format!("postgres://postgres:{secret}@127.0.0.1:notaport/{db}"),
        ),
        (
            "malformed host",
            format!("postgres://postgres:{secret}@[::1/{db}"),
        ),
        (
            "not a URL",
            format!("host=127.0.0.1 port=1 password={secret} dbname={db}"),
        ),
        (
            "unreachable host",
            format!("postgres://postgres:{secret}@127.0.0.1:1/{db}"),
        ),
        (
            "failing auth",
            format!("postgres://no_such_role_x:{secret}@127.0.0.1:5432/{db}"),
        ),
        (
            "missing database",
            format!("postgres://postgres:{secret}@127.0.0.1:5432/nope_db_x"),
        ),
        (
            "password parameter",
            format!("postgres://postgres@127.0.0.1:1/{db}?password={secret}"),
        ),
    ];
    for (what, bad) in &bad_urls {
        let mut scan = with(&["scan"], &[]);
        scan[2] = bad.clone();
        expect(&format!("scan, {what}"), scan, None, 2);
        let mut relink = with(
            &["relink"],
            &["--apply".into(), "--journal".into(), s(&journal)],
        );
        relink[2] = bad.clone();
        expect(&format!("relink, {what}"), relink, None, 2);
        expect(
            &format!("undo, {what}"),
            vec!["undo".into(), s(&journal), "--db-url".into(), bad.clone()],
            None,
            2,
        );
    }
    // An install's .env whose database is unreachable.
    expect(
        "scan --env-file",
        vec!["scan".into(), "--env-file".into(), s(&env_file)],
        None,
        2,
    );
    expect(
        "undo --env-file",
        vec![
            "undo".into(),
            s(&journal),
            "--env-file".into(),
            s(&env_file),
        ],
        None,
        2,
    );
    for cmd in [vec![], vec!["scan"], vec!["relink"], vec!["undo"]] {
        let mut args: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        args.push("--help".into());
        expect(&format!("{cmd:?} --help"), args, Some(&url), 0);
    }

    // The runs above did happen (so the grep below means something).
    let all: String = printed.iter().map(|(_, t)| t.as_str()).collect();
    assert!(all.contains("relinked"), "relink --apply ran");
    assert!(
        all.contains("cannot connect to PostgreSQL"),
        "failures were printed"
    );
    assert!(all.contains("postgres:***@"), "URLs are shown redacted");
    for (what, text) in &printed {
        assert!(
            !text.contains(&secret),
            "{what} printed the password:\n{text}"
        );
    }
    for file in [&report, &json, &journal] {
        let body = std::fs::read_to_string(file).unwrap();
        assert!(!body.is_empty());
        assert!(
            !body.contains(&secret),
            "{} holds the password",
            file.display()
        );
    }
}

/// A password holding URL delimiters (`?`, `#`, `/`, `@`) unencoded is masked too, in every
/// command's connection error and for a `.env`'s `DB_URL`: the old redaction split at `?`
/// first and printed such a password in clear.
#[test]
fn a_password_holding_url_delimiters_is_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("empty.journal");
    std::fs::write(&journal, "").unwrap();
    std::fs::create_dir_all(dir.path().join("media")).unwrap();
    let media = s(&dir.path().join("media"));
    let passwords = [
        "SECRa?SECRb",
        "SECRa?x=SECRb@q",
        "SECRa#SECRb",
        "SECRa/SECRb",
        "SECRa@SECRb",
        "5432?SECRb=SECRc",
    ];
    let mut ran = 0;
    for pw in passwords {
        let url = format!("postgres://postgres:{pw}@127.0.0.1:1/immich");
        let env_file = dir.path().join(".env");
        std::fs::write(
            &env_file,
            format!("DB_URL={url}\nUPLOAD_LOCATION=./media\n"),
        )
        .unwrap();
        let runs: Vec<Vec<String>> = vec![
            vec![
                "scan".into(),
                "--db-url".into(),
                url.clone(),
                "--media-root".into(),
                media.clone(),
            ],
            vec![
                "relink".into(),
                "--db-url".into(),
                url.clone(),
                "--media-root".into(),
                media.clone(),
            ],
            vec!["undo".into(), s(&journal), "--db-url".into(), url.clone()],
            vec![
                "orphans".into(),
                "--db-url".into(),
                url.clone(),
                "--media-root".into(),
                media.clone(),
            ],
            vec![
                "doctor".into(),
                "--db-url".into(),
                url.clone(),
                "--media-root".into(),
                media.clone(),
            ],
            vec![
                "explain-report".into(),
                "--db-url".into(),
                url.clone(),
                "--media-root".into(),
                media.clone(),
            ],
            vec!["scan".into(), "--env-file".into(), s(&env_file)],
            vec!["doctor".into(), "--env-file".into(), s(&env_file)],
        ];
        for args in runs {
            let (out, text) = run(&args, None);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {text}");
            assert!(
                !text.contains("SECR"),
                "{args:?} printed the password:\n{text}"
            );
            ran += 1;
        }
        // DATABASE_URL from the environment.
        let (out, text) = run(
            &["scan".into(), "--media-root".into(), media.clone()],
            Some(&url),
        );
        assert_eq!(out.status.code(), Some(2), "{text}");
        assert!(
            !text.contains("SECR"),
            "DATABASE_URL printed the password:\n{text}"
        );
        assert!(text.contains("***"), "the URL is shown masked: {text}");
    }
    assert_eq!(ran, passwords.len() * 8);
}
