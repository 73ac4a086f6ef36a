//! Stored paths are data anyone with write access to the database chose: relink, regenerate,
//! undo and error messages show them with control characters escaped as `ls -b` does (ESC as
//! `\e`, CR as `\r`, LF as `\n`, other bytes as `\ooo`), never raw.

mod common;

use common::*;
use immich_fixtures::{FixtureSpec, Generation};
use std::process::{Command, Stdio};

/// A name with ESC (a colour sequence), CR and LF in it.
const EVIL: &str = "e\x1b[31mvil\rcr\nlf";
/// How `ls -b` shows it.
const SHOWN: &str = "e\\e[31mvil\\rcr\\nlf";

fn library() -> Lib {
    generate_spec(FixtureSpec {
        generation: Generation::V2_6,
        assets: 12,
        users: 1,
        faults: false,
        seed: 7,
        content_faults: false,
        original_bytes: 0,
    })
}

fn sql(url: &str, q: &str, binds: &[&str]) {
    runtime().block_on(async {
        let mut c = connect(url).await;
        let mut query = sqlx::query(q);
        for b in binds {
            query = query.bind(*b);
        }
        query.execute(&mut c).await.unwrap();
    });
}

fn rows(url: &str, q: &str) -> Vec<(String, String)> {
    runtime().block_on(async {
        let mut c = connect(url).await;
        sqlx::query_as(q).fetch_all(&mut c).await.unwrap()
    })
}

/// Runs the CLI; asserts that neither stream holds ESC, CR or the raw name, and returns
/// stdout + stderr as text.
fn run(args: &[String], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(binary());
    cmd.args(args).env_remove("DATABASE_URL");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    for (name, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        let text = String::from_utf8_lossy(bytes);
        assert!(
            !bytes
                .iter()
                .any(|b| *b == 0x1b || *b == b'\r' || *b == 0x7f),
            "{args:?}: a raw control byte on {name}: {text:?}"
        );
        assert!(
            !text.contains("vil\rcr\nlf") && !text.contains("cr\nlf"),
            "{text:?}"
        );
    }
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Renames the file behind `db_path` to `EVIL` + `suffix` (same folder, same extension) and
/// points the row at it; returns the new stored path.
fn give_evil_name(lib: &Lib, table_sql: &str, id: &str, db_path: &str, suffix: &str) -> String {
    let (dir, file) = db_path.rsplit_once('/').unwrap();
    let ext = file.rsplit_once('.').map(|(_, e)| e).unwrap_or("jpg");
    let new = format!("{dir}/{EVIL}{suffix}.{ext}");
    let (from, to) = (
        lib.truth.map_path(db_path).unwrap(),
        lib.truth.map_path(&new).unwrap(),
    );
    std::fs::rename(from, to).unwrap();
    sql(&lib.truth.db_url, table_sql, &[&new, id]);
    new
}

#[test]
fn relink_undo_and_errors_escape_stored_paths() {
    let lib = library();
    let mut originals = rows(
        &lib.truth.db_url,
        "SELECT id::text, \"originalPath\" FROM asset WHERE \"deletedAt\" IS NULL \
         AND type::text = 'IMAGE' AND \"originalPath\" LIKE '/data/upload/%' ORDER BY 1 LIMIT 2",
    );
    let set_path = "UPDATE asset SET \"originalPath\" = $1 WHERE id = $2::uuid";
    let (orig, other) = (originals.remove(0), originals.remove(0));
    let evil = give_evil_name(&lib, set_path, &orig.0, &orig.1, "");
    // The other one keeps its size but not its content: planned by size, then skipped at
    // apply time when its SHA-1 disagrees with the checksum.
    let other_evil = give_evil_name(&lib, set_path, &other.0, &other.1, "2");
    let host = lib.truth.map_path(&other_evil).unwrap();
    let mut bytes = std::fs::read(&host).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&host, bytes).unwrap();
    // Restored one level too deep: every original is `moved`, the evil one too.
    nest_top_folder(&lib.truth.media_root, "upload");
    let mut base = library_flags(&lib);
    base.extend(["--prefix-min".to_string(), "0".into()]);
    let relink = |extra: &[&str]| {
        let mut a = vec!["relink".to_string()];
        a.extend(base.iter().cloned());
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };

    // The plan's row lines.
    let (code, text) = run(&relink(&[]), &[]);
    assert_eq!(code, Some(0), "{text}");
    let nested = evil.replacen("/upload/", "/upload/upload/", 1);
    assert!(
        text.contains(&format!(
            "would relink original {}: {} -> {}",
            orig.0,
            evil.replace(EVIL, SHOWN),
            nested.replace(EVIL, SHOWN)
        )),
        "{text}"
    );

    // Apply, then an admin's hand fix of the evil row: undo leaves it alone and says so.
    let journal = lib.dir.join("relink.journal");
    let j = journal.to_string_lossy().into_owned();
    let (code, text) = run(&relink(&["--apply", "--journal", &j]), &[]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "skipped original {} ({}): ",
            other.0,
            other_evil.replace(EVIL, SHOWN)
        )),
        "{text}"
    );
    sql(
        &lib.truth.db_url,
        "UPDATE asset SET \"originalPath\" = $1 WHERE id = $2::uuid",
        &["/data/upload/hand-fixed.jpg", &orig.0],
    );
    let (code, text) = run(
        &[
            "undo".into(),
            j.clone(),
            "--db-url".into(),
            lib.truth.db_url.clone(),
        ],
        &[],
    );
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains(&format!(
            "left alone: original {}: no longer holds {}",
            orig.0,
            nested.replace(EVIL, SHOWN)
        )),
        "{text}"
    );

    // Error messages that quote a path: a journal that is not there, a journal on media.
    let missing = lib.dir.join(format!("{EVIL}.journal"));
    let (code, text) = run(
        &[
            "undo".into(),
            missing.to_string_lossy().into_owned(),
            "--db-url".into(),
            lib.truth.db_url.clone(),
        ],
        &[],
    );
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains(&format!("{SHOWN}.journal")), "{text}");
    let on_media = lib.truth.media_root.join(format!("{EVIL}.journal"));
    let (code, text) = run(
        &relink(&["--apply", "--journal", &on_media.to_string_lossy()]),
        &[],
    );
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains(&format!("{SHOWN}.journal")), "{text}");
}

#[test]
fn regenerate_queue_lines_escape_stored_paths() {
    let lib = library();
    let previews = rows(
        &lib.truth.db_url,
        "SELECT f.id::text, f.path FROM asset_file f JOIN asset a ON a.id = f.\"assetId\" \
         WHERE f.type::text = 'preview' AND a.\"deletedAt\" IS NULL ORDER BY 1 LIMIT 2",
    );
    let set_path = "UPDATE asset_file SET path = $1 WHERE id = $2::uuid";
    // One preview renamed (healthy), one renamed and then lost.
    let healthy = give_evil_name(&lib, set_path, &previews[0].0, &previews[0].1, "");
    let lost = give_evil_name(&lib, set_path, &previews[1].0, &previews[1].1, "");
    std::fs::remove_file(lib.truth.map_path(&lost).unwrap()).unwrap();
    let mut args = vec!["regenerate".to_string(), "--via".into(), "queue".into()];
    args.extend(library_flags(&lib));
    let (code, text) = run(&args, &[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(&format!(
            "would delete the preview row ({})",
            lost.replace(EVIL, SHOWN)
        )),
        "{text}"
    );
    // A report line claiming the healthy one corrupt: listed as skipped, escaped.
    let asset: String = runtime().block_on(async {
        let mut c = connect(&lib.truth.db_url).await;
        sqlx::query_scalar("SELECT \"assetId\"::text FROM asset_file WHERE id = $1::uuid")
            .bind(&previews[0].0)
            .fetch_one(&mut c)
            .await
            .unwrap()
    });
    let report = lib.dir.join("claims.jsonl");
    std::fs::write(
        &report,
        serde_json::json!({
            "asset_id": asset, "owner_id": "x", "file": "preview", "db_path": healthy,
            "host_path": null, "fault": "corrupt", "found_at": null, "repair": "regenerate",
            "detail": "", "affected": null, "relink_to": null
        })
        .to_string()
            + "\n",
    )
    .unwrap();
    args.extend(["--from".into(), report.to_string_lossy().into_owned()]);
    let (code, text) = run(&args, &[]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(&format!(
            "skipped preview of asset {asset} ({}): re-checked now",
            healthy.replace(EVIL, SHOWN)
        )),
        "{text}"
    );
}

/// A `SQL_ASCII` copy of a fixture database (it stores any bytes in a text column), dropped
/// at the end.
struct AsciiDb(String, String);

impl AsciiDb {
    fn clone_of(src: &str) -> AsciiDb {
        let name = format!("ii_esc_ascii_{}", std::process::id());
        let (base, _) = src.rsplit_once('/').unwrap();
        let admin = format!("{base}/postgres");
        sql(&admin, &format!("DROP DATABASE IF EXISTS {name}"), &[]);
        sql(
            &admin,
            &format!(
                "CREATE DATABASE {name} ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' \
                 TEMPLATE template0"
            ),
            &[],
        );
        let url = format!("{base}/{name}");
        let dump = Command::new("pg_dump")
            .args(["--no-owner", "-d", src])
            .output()
            .unwrap();
        assert!(dump.status.success());
        let mut psql = Command::new("psql")
            .args(["-q", "-v", "ON_ERROR_STOP=1", "-d", &url])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write;
        psql.stdin.take().unwrap().write_all(&dump.stdout).unwrap();
        assert!(psql.wait().unwrap().success());
        AsciiDb(url, admin)
    }
}

impl Drop for AsciiDb {
    fn drop(&mut self) {
        let name = self.0.rsplit('/').next().unwrap().to_string();
        sql(
            &self.1,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            &[],
        );
    }
}

#[test]
fn a_path_with_a_byte_that_is_not_utf8_is_escaped_too() {
    let lib = library();
    let db = AsciiDb::clone_of(&lib.truth.db_url);
    let (id, path) = rows(
        &db.0,
        "SELECT f.id::text, f.path FROM asset_file f JOIN asset a ON a.id = f.\"assetId\" \
         WHERE f.type::text = 'preview' AND a.\"deletedAt\" IS NULL ORDER BY 1 LIMIT 1",
    )
    .remove(0);
    let (dir, _) = path.rsplit_once('/').unwrap();
    // ESC, CR, LF and 0xFF (not UTF-8), as raw bytes in the row.
    let psql = Command::new("psql")
        .args([
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            &db.0,
            "-c",
            &format!(
                "UPDATE asset_file SET path = E'{dir}/b\\033[2Jad\\r\\n\\377x.jpeg' \
                 WHERE id = '{id}'"
            ),
        ])
        .output()
        .unwrap();
    assert!(
        psql.status.success(),
        "{}",
        String::from_utf8_lossy(&psql.stderr)
    );
    for command in [
        vec!["regenerate", "--via", "queue"],
        vec!["relink"],
        vec!["scan"],
    ] {
        let mut args: Vec<String> = command.iter().map(|s| s.to_string()).collect();
        args.extend(library_flags(&lib));
        let at = args.iter().position(|a| a == "--db-url").unwrap();
        args[at + 1] = db.0.clone();
        let (code, text) = run(&args, &[]);
        assert!(matches!(code, Some(0 | 1)), "{command:?}: {text}");
        if command[0] != "relink" {
            assert!(
                text.contains("b\\e[2Jad\\r\\n") && text.contains("377x.jpeg"),
                "{command:?}: {text}"
            );
        }
    }
}
