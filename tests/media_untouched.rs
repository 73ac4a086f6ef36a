//! Every command, repairs included, run the way an admin would against a library with faults:
//! the media tree (bytes, modes, owners, mtimes, links, and every mapped root) is the same
//! before and after each one. Repairs change database rows, never media files.

mod common;

use common::*;
use immich_fixtures::Generation;

#[test]
fn every_command_leaves_the_media_tree_as_it_was() {
    let lib = generate(Generation::V3_2, 40, true);
    let out = tempfile::tempdir().unwrap();
    let o = |name: &str| out.path().join(name).to_string_lossy().into_owned();
    let before = media_tree(&lib);
    let mut flags = library_flags(&lib);
    flags.extend(["--as-user".into(), lib.truth.as_user.clone()]);
    let with = |cmd: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        a.extend(flags.iter().cloned());
        a
    };
    let journal = o("relink.journal");
    let runs: Vec<(Vec<String>, &[i32])> = vec![
        (
            with(&["scan", "--format", "jsonl", "--output", &o("r.jsonl")]),
            &[1],
        ),
        (
            with(&["scan", "--level", "hash", "--manifest", &o("m.redb")]),
            &[1],
        ),
        (with(&["doctor"]), &[0, 1, 2]),
        (with(&["orphans", "--output", &o("orphans.jsonl")]), &[0, 1]),
        (with(&["explain-report", "--format", "json"]), &[0, 1]),
        (with(&["relink"]), &[0]),
        (with(&["relink", "--apply", "--journal", &journal]), &[0]),
        (
            vec![
                "undo".into(),
                journal.clone(),
                "--db-url".into(),
                lib.truth.db_url.clone(),
            ],
            &[0],
        ),
        (
            with(&["relink", "--from", &o("r.jsonl"), "--journal", &journal]),
            &[0],
        ),
        (with(&["regenerate", "--via", "queue"]), &[0]),
        (with(&["refresh-metadata", "--via", "queue"]), &[0]),
    ];
    for (args, codes) in runs {
        let done = run_cli(&args);
        let code = done.status.code().unwrap_or(-1);
        assert!(
            codes.contains(&code),
            "{args:?} exited {code}: {}{}",
            String::from_utf8_lossy(&done.stdout),
            String::from_utf8_lossy(&done.stderr)
        );
        assert!(
            media_tree(&lib) == before,
            "{args:?} changed the media tree"
        );
    }
}
