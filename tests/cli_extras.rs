//! Generated shell completions, man pages and the `--help` examples.

mod common;

use common::binary;
use std::process::Command;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn completions_parse_and_name_every_subcommand_and_filter() {
    let (code, bash, _) = run(&["completions", "bash"]);
    assert_eq!(code, 0);
    for word in [
        "scan",
        "relink",
        "undo",
        "--owner",
        "--kind",
        "--since",
        "--env-file",
    ] {
        assert!(bash.contains(word), "bash completion lacks {word}");
    }
    // The script is valid bash.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("immich-integrity.bash");
    std::fs::write(&f, &bash).unwrap();
    let check = Command::new("bash").arg("-n").arg(&f).output().unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    // Sourcing it registers the completion function.
    let reg = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && complete -p immich-integrity",
            f.display()
        ))
        .output()
        .unwrap();
    assert!(
        reg.status.success(),
        "{}",
        String::from_utf8_lossy(&reg.stderr)
    );

    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let (code, out, _) = run(&["completions", shell]);
        assert_eq!(code, 0, "{shell}");
        assert!(out.contains("relink") && out.contains("level"), "{shell}");
    }
    let (code, _, err) = run(&["completions", "tcsh"]);
    assert_eq!(code, 2);
    assert!(err.contains("invalid value"), "{err}");
}

#[test]
fn man_pages_are_roff_for_the_command_and_each_subcommand() {
    let (code, page, _) = run(&["man"]);
    assert_eq!(code, 0);
    assert!(page.contains(".TH immich-integrity 1"), "{page}");
    assert!(
        page.contains(".SH SUBCOMMANDS") && page.contains("scan"),
        "{page}"
    );
    // The hidden helpers stay out of the documentation.
    assert!(!page.contains("completions"), "{page}");
    let (code, scan, _) = run(&["man", "scan"]);
    assert_eq!(code, 0);
    assert!(scan.contains(".TH immich-integrity-scan 1"), "{scan}");
    assert!(scan.contains("owner") && scan.contains("since"), "{scan}");
    let (code, _, err) = run(&["man", "nosuch"]);
    assert_eq!(code, 2);
    assert!(err.contains("no subcommand"), "{err}");
}

#[test]
fn help_shows_the_five_troubleshooting_examples() {
    let (code, help, _) = run(&["scan", "--help"]);
    assert_eq!(code, 0);
    for case in ["1. ", "2. ", "3. ", "4. ", "5. "] {
        assert!(help.contains(case), "example {case} missing:\n{help}");
    }
    for flag in [
        "--as-user 1000:1000",
        "--kind preview",
        "--since",
        "--owner alice@",
    ] {
        assert!(help.contains(flag), "{flag} missing:\n{help}");
    }
    // Completions and man are hidden from the command list.
    let (_, top, _) = run(&["--help"]);
    assert!(
        top.contains("scan") && !top.contains("completions"),
        "{top}"
    );
}
