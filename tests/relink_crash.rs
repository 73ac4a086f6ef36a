//! SIGKILL in the middle of an applied prefix rewrite of a large library: every batch is all
//! or nothing (the database matches the journal's committed batches exactly), and `undo`
//! restores the pre-relink path columns, twice over.
//!
//! To kill at a known point without timing, the test holds a row lock on the asset that the
//! last originals batch updates: the child commits the batches before it, then blocks on that
//! lock, and is killed while blocked with its batch journaled but not committed.

mod common;

use common::*;
use immich_fixtures::Generation;
use immich_integrity::relink::JournalEntry;
use immich_integrity::FileKind;
use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

const ASSETS: usize = 3000;

fn journal_state(path: &std::path::Path) -> (BTreeMap<u64, Vec<JournalEntry>>, BTreeSet<u64>) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut changes: BTreeMap<u64, Vec<JournalEntry>> = BTreeMap::new();
    let mut committed = BTreeSet::new();
    for line in text.lines() {
        match serde_json::from_str::<JournalEntry>(line) {
            Ok(e @ JournalEntry::Change { batch, .. }) => changes.entry(batch).or_default().push(e),
            Ok(JournalEntry::Committed { batch, .. }) => {
                committed.insert(batch);
            }
            _ => {}
        }
    }
    (changes, committed)
}

async fn count(c: &mut sqlx::PgConnection, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(c).await.unwrap()
}

#[test]
fn sigkill_mid_prefix_rewrite_leaves_whole_batches_and_undo_restores() {
    let lib = generate(Generation::V1_137, ASSETS, false);
    nest_top_folder(&lib.truth.media_root, "upload");
    let before = dump_paths(&lib.truth.db_url);
    let journal = lib.dir.join("crash.journal");
    let rt = runtime();

    // Hold the lock the last originals batch needs (batches run in asset-id order).
    let mut locker = rt.block_on(connect(&lib.truth.db_url));
    rt.block_on(async {
        sqlx::query("BEGIN").execute(&mut locker).await.unwrap();
        let n: i64 = sqlx::query_scalar(
            "WITH last AS (SELECT id FROM asset WHERE \"originalPath\" LIKE '/data/upload/%' \
             ORDER BY id DESC LIMIT 1) \
             SELECT count(*) FROM (SELECT 1 FROM asset WHERE id IN (SELECT id FROM last) \
             FOR UPDATE) x",
        )
        .fetch_one(&mut locker)
        .await
        .unwrap();
        assert_eq!(n, 1);
    });

    let mut args = vec!["relink".to_string(), "--include-trashed".into()];
    args.extend(library_flags(&lib));
    args.extend(
        [
            "--apply",
            "--batch",
            "100",
            "--journal",
            journal.to_str().unwrap(),
        ]
        .map(String::from),
    );
    let mut child = Command::new(binary())
        .args(&args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();

    // Wait until some batches are committed and the child is blocked on our lock.
    let mut watcher = rt.block_on(connect(&lib.truth.db_url));
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("relink ended before it could be killed: {status}");
        }
        let (changes, committed) = journal_state(&journal);
        let blocked = rt.block_on(count(
            &mut watcher,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND application_name = 'immich-integrity' AND wait_event_type = 'Lock'",
        ));
        if committed.len() >= 3 && changes.len() > committed.len() && blocked == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "relink never blocked on the held lock"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGKILL) }, 0);
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    // Release the lock; the dead client's open transaction is rolled back by the server.
    rt.block_on(async {
        sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while count(
            &mut watcher,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND application_name = 'immich-integrity'",
        )
        .await
            > 0
        {
            assert!(
                Instant::now() < deadline,
                "the killed client's backend lingers"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });

    // The database is exactly "before" with the committed batches applied.
    let (changes, committed) = journal_state(&journal);
    assert!(
        changes.len() > committed.len(),
        "the killed batch was journaled"
    );
    let mut expected: BTreeMap<String, String> = before
        .lines()
        .map(|l| {
            let (k, v) = l.rsplit_once('|').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();
    let mut journaled_rows = 0;
    for (batch, entries) in &changes {
        for e in entries {
            let JournalEntry::Change { step, .. } = e else {
                unreachable!()
            };
            journaled_rows += 1;
            let col = match step.file {
                FileKind::Original => "originalPath",
                FileKind::Sidecar => "sidecarPath",
                other => panic!("only originals and sidecars live under upload/: {other}"),
            };
            let key = format!("asset|{col}|{}", step.id);
            assert_eq!(expected.get(&key), Some(&step.old), "journal old value");
            if committed.contains(batch) {
                expected.insert(key, step.new.clone());
            }
        }
    }
    assert!(journaled_rows >= 400, "{journaled_rows}");
    let expected: Vec<String> = expected
        .into_iter()
        .map(|(k, v)| format!("{k}|{v}"))
        .collect();
    let after = dump_paths(&lib.truth.db_url);
    assert_eq!(
        after,
        expected.join("\n"),
        "each row holds its old or its new path, by whole batches"
    );
    assert_ne!(after, before, "committed batches stay committed");

    let undo = || {
        let out = Command::new(binary())
            .args([
                "undo",
                journal.to_str().unwrap(),
                "--db-url",
                &lib.truth.db_url,
            ])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = undo();
    assert!(first.starts_with("restored "), "{first}");
    assert!(!first.starts_with("restored 0 "), "{first}");
    assert_eq!(
        dump_paths(&lib.truth.db_url),
        before,
        "undo restores exactly"
    );
    assert!(undo().starts_with("restored 0 rows"));
    assert_eq!(
        dump_paths(&lib.truth.db_url),
        before,
        "undo twice is a no-op"
    );
}
