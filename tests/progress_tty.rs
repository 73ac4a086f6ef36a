//! The progress bar and colours as a person at a terminal sees them: the binary runs under a
//! pseudo-terminal (`script` from util-linux) and the raw terminal output is inspected; the
//! same command with stdout and stderr piped must carry neither.
//!
//! Colour precedence under test: `--color always` > `NO_COLOR` > `--color auto` (terminal).

mod common;

use common::*;
use immich_fixtures::Generation;
use std::process::{Command, Stdio};

/// POSIX single-quoting for the command line `script -c` hands to a shell.
fn sh_quote(a: &str) -> String {
    format!("'{}'", a.replace('\'', "'\\''"))
}

/// Runs the binary under a pseudo-terminal; returns everything the terminal received.
fn run_in_pty(args: &[String], env: &[(&str, &str)]) -> String {
    let line: Vec<String> = std::iter::once(binary().to_string_lossy().into_owned())
        .chain(args.iter().cloned())
        .map(|a| sh_quote(&a))
        .collect();
    let mut cmd = Command::new("script");
    cmd.args(["-qfec", &line.join(" "), "/dev/null"])
        .stdin(Stdio::null())
        .env_remove("NO_COLOR")
        .env("TERM", "xterm")
        .env("COLUMNS", "120");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .output()
        .expect("`script` (util-linux) runs: scripts/setup.sh installs it");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs the binary with stdout and stderr piped: (stdout, stderr).
fn run_piped(args: &[String], env: &[(&str, &str)]) -> (String, String) {
    let mut cmd = Command::new(binary());
    cmd.args(args)
        .stdin(Stdio::null())
        .env_remove("NO_COLOR")
        .env("TERM", "xterm");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// An SGR (colour / bold) escape such as `ESC[1;31m`; cursor movements are not colour.
fn has_sgr(s: &str) -> bool {
    let b = s.as_bytes();
    (0..b.len()).any(|i| {
        if b[i] != 0x1b || b.get(i + 1) != Some(&b'[') {
            return false;
        }
        let rest = &b[i + 2..];
        let n = rest
            .iter()
            .take_while(|c| c.is_ascii_digit() || **c == b';')
            .count();
        rest.get(n) == Some(&b'm')
    })
}

fn scan_args(lib: &Lib, extra: &[&str]) -> Vec<String> {
    let mut a = vec!["scan".to_string()];
    a.extend(library_flags(lib));
    a.extend(["--as-user".into(), lib.truth.as_user.clone()]);
    // Many small pages, so the bar is redrawn many times.
    a.extend(["--batch-size".into(), "4".into()]);
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

#[test]
fn progress_bar_on_a_terminal_only() {
    let lib = generate(Generation::V2_6, 60, true);
    let tty = run_in_pty(&scan_args(&lib, &["--level", "quick"]), &[]);
    // The bar: level, rows done of the counted total, rates, faults and ETA.
    let rows = lib.truth.asset_rows; // an upper bound of the counted total
    let bar = tty
        .split(['\r', '\n'])
        .find(|l| l.contains("rows") && l.contains("files/s") && l.contains("ETA"))
        .unwrap_or_else(|| panic!("no progress bar on the terminal:\n{tty:?}"));
    assert!(bar.contains("quick ") && bar.contains("MB/s"), "{bar:?}");
    let (done, total) = bar
        .split_whitespace()
        .find_map(|w| w.split_once('/'))
        .and_then(|(d, t)| Some((d.parse::<u64>().ok()?, t.parse::<u64>().ok()?)))
        .unwrap_or_else(|| panic!("no done/total in {bar:?}"));
    assert!(done <= total && total > 0 && total <= rows + 10, "{bar:?}");
    // The report itself still arrives.
    assert!(tty.contains("files checked"), "{tty:?}");

    // Piped: the same report, no bar on either stream.
    let (out, err) = run_piped(&scan_args(&lib, &["--level", "quick"]), &[]);
    assert!(out.contains("files checked"), "{out}");
    for s in [&out, &err] {
        assert!(!s.contains("files/s") && !s.contains("ETA"), "{s:?}");
        assert!(!s.contains('\x1b'), "no escapes when piped: {s:?}");
    }

    // -q on a terminal: no bar either.
    let quiet = run_in_pty(&scan_args(&lib, &["-q"]), &[]);
    assert!(quiet.contains("files checked"), "{quiet:?}");
    assert!(!quiet.contains("files/s"), "{quiet:?}");

    // Machine-readable formats on a terminal: the bar goes to stderr, stdout stays clean JSON
    // lines (checked piped, where stdout is separate).
    let (out, _) = run_piped(&scan_args(&lib, &["--format", "jsonl"]), &[]);
    for line in out.lines() {
        serde_json::from_str::<serde_json::Value>(line).expect("each stdout line is JSON");
    }
}

#[test]
fn colour_follows_color_flag_and_no_color() {
    let lib = generate(Generation::V2_6, 30, true);
    // -q keeps the progress bar's cursor escapes out of the way.
    let run = |flags: &[&str], env: &[(&str, &str)]| {
        let mut f = vec!["-q"];
        f.extend_from_slice(flags);
        run_in_pty(&scan_args(&lib, &f), env)
    };
    let auto = run(&[], &[]);
    assert!(auto.contains("files checked"), "{auto:?}");
    assert!(has_sgr(&auto), "auto colours a terminal: {auto:?}");
    let no_color = run(&[], &[("NO_COLOR", "1")]);
    assert!(no_color.contains("files checked"));
    assert!(!has_sgr(&no_color), "NO_COLOR beats auto: {no_color:?}");
    assert!(
        has_sgr(&run(&["--color", "always"], &[("NO_COLOR", "1")])),
        "--color always beats NO_COLOR"
    );
    assert!(!has_sgr(&run(&["--color", "never"], &[])));
    // Piped: auto means none, always means colour.
    let (out, _) = run_piped(&scan_args(&lib, &[]), &[]);
    assert!(!has_sgr(&out));
    let (out, _) = run_piped(&scan_args(&lib, &["--color", "always"]), &[]);
    assert!(has_sgr(&out));
    // Colour is for the table only: JSON stays plain even with --color always.
    let (out, _) = run_piped(
        &scan_args(&lib, &["--color", "always", "--format", "json"]),
        &[],
    );
    assert!(!has_sgr(&out));
}
