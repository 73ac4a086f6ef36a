//! `regenerate --via queue --apply` blocked on a row lock another session holds: SIGTERM
//! cancels the blocked statement on the server, the batch is rolled back whole, the journal
//! says so (and holds no commit mark for it), the run says nothing was committed for that
//! batch and exits 130, long before the lock is released; undo then restores nothing.

mod common;
mod immich_stub;

use common::*;
use immich_fixtures::{FixtureSpec, Generation};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn sigterm_cancels_a_queue_mode_statement_blocked_on_a_row_lock() {
    let lib = generate_spec(FixtureSpec {
        generation: Generation::V2_6,
        assets: 12,
        users: 1,
        faults: false,
        seed: 7,
        content_faults: false,
        original_bytes: 0,
    });
    let rt = runtime();
    // One preview lost from disk: queue mode will delete its asset_file row.
    let (row_id, path): (String, String) = rt.block_on(async {
        let mut c = connect(&lib.truth.db_url).await;
        sqlx::query_as(
            "SELECT f.id::text, f.path FROM asset_file f JOIN asset a ON a.id = f.\"assetId\" \
             WHERE f.type::text = 'preview' AND a.\"deletedAt\" IS NULL ORDER BY 1 LIMIT 1",
        )
        .fetch_one(&mut c)
        .await
        .unwrap()
    });
    std::fs::remove_file(lib.truth.map_path(&path).unwrap()).unwrap();
    let before = dump(&lib);

    // Another session holds that row for the whole run (60 s unless the test ends first).
    let mut holder = rt.block_on(connect(&lib.truth.db_url));
    rt.block_on(async {
        sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
        sqlx::query("SELECT 1 FROM asset_file WHERE id = $1::uuid FOR UPDATE")
            .bind(&row_id)
            .execute(&mut holder)
            .await
            .unwrap();
    });

    let stub = immich_stub::Stub::start();
    let journal = lib.dir.join("queue.journal");
    let mut args = vec!["regenerate".to_string(), "--via".into(), "queue".into()];
    args.extend(library_flags(&lib));
    args.extend([
        "--server".to_string(),
        stub.url(),
        "--apply".into(),
        "--journal".into(),
        journal.to_string_lossy().into_owned(),
    ]);
    let mut child = Command::new(binary())
        .args(&args)
        .env_remove("DATABASE_URL")
        .env("IMMICH_API_KEY", immich_stub::ADMIN_KEY)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Wait until its statement waits on our lock.
    let mut watcher = rt.block_on(connect(&lib.truth.db_url));
    let start = Instant::now();
    loop {
        let waiting: i64 = rt
            .block_on(
                sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = \
                     'immich-integrity' AND datname = current_database() \
                     AND wait_event_type = 'Lock'",
                )
                .fetch_one(&mut watcher),
            )
            .unwrap();
        if waiting > 0 {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            panic!(
                "the run ended ({status}) before it blocked: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the run never blocked on the lock"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let sent = Instant::now();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    // The lock stays held: a run that ignores the signal would wait for lock_timeout (30 s).
    while child.try_wait().unwrap().is_none() && sent.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = sent.elapsed();
    if child.try_wait().unwrap().is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    rt.block_on(sqlx::query("ROLLBACK").execute(&mut holder))
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        took < Duration::from_secs(10),
        "still running {took:?} after SIGTERM with the lock held:\n{stdout}\n{stderr}"
    );
    assert_eq!(out.status.code(), Some(130), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("nothing was committed for that batch"),
        "{stderr}"
    );
    assert_eq!(
        dump(&lib),
        before,
        "nothing of the batch reached the database"
    );
    assert!(
        !stub.requests().iter().any(|r| r.starts_with("PUT")),
        "no queue is started after an interrupt: {:?}",
        stub.requests()
    );

    // The journal: the batch's change lines, its rollback, and no commit mark.
    let text = std::fs::read_to_string(&journal).unwrap();
    let events: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["event"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(events.iter().any(|e| e == "queue_change"), "{text}");
    assert!(events.iter().any(|e| e == "queue_rolled_back"), "{text}");
    assert!(!events.iter().any(|e| e == "queue_committed"), "{text}");

    // Undo restores nothing of the rolled-back batch (and changes nothing).
    let mut undo = vec!["undo".to_string(), journal.to_string_lossy().into_owned()];
    undo.extend(["--db-url".to_string(), lib.truth.db_url.clone()]);
    let out = run_cli(&undo);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("restored 0 rows"), "{stdout}");
    assert_eq!(dump(&lib), before);
}
