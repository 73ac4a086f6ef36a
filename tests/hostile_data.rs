//! More odd and hostile data (tests/hostile_paths.rs has the first set): stored paths of
//! 4 096 bytes and files beyond PATH_MAX, names with newlines through every report format, a
//! socket and a device where a file should be, a directory of 100 000 entries, NULL paths,
//! files that grow or vanish while hashed, and quote-and-semicolon names through relink/undo.

mod common;

use common::*;
use immich_fixtures::Generation;
use immich_integrity::relink::{self, RelinkStep};
use immich_integrity::{scan, Fault, FileKind, Finding, Level};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// `n` image assets of the library (not external, not trashed), in id order.
fn image_assets(lib: &Lib, n: usize) -> Vec<String> {
    assets_where(lib, n, "true")
}

fn assets_where(lib: &Lib, n: usize, filter: &str) -> Vec<String> {
    let rt = runtime();
    rt.block_on(async {
        let mut c = connect(&lib.truth.db_url).await;
        sqlx::query_scalar(&format!(
            "SELECT id::text FROM asset WHERE \"libraryId\" IS NULL AND \"deletedAt\" IS NULL \
             AND type = 'IMAGE' AND {filter} ORDER BY id LIMIT $1",
        ))
        .bind(n as i64)
        .fetch_all(&mut c)
        .await
        .unwrap()
    })
}

fn sql(lib: &Lib, statement: &str, binds: &[&str]) {
    let rt = runtime();
    rt.block_on(async {
        let mut c = connect(&lib.truth.db_url).await;
        let mut q = sqlx::query(statement);
        for b in binds {
            q = q.bind(*b);
        }
        q.execute(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    })
}

fn original_of(lib: &Lib, id: &str) -> String {
    let rt = runtime();
    rt.block_on(async {
        let mut c = connect(&lib.truth.db_url).await;
        sqlx::query_scalar("SELECT \"originalPath\" FROM asset WHERE id = $1::uuid")
            .bind(id)
            .fetch_one(&mut c)
            .await
            .unwrap()
    })
}

fn host_of(lib: &Lib, db_path: &str) -> PathBuf {
    lib.truth.map_path(db_path).expect("a mapped path")
}

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// Creates `depth` nested directories named `name` under `base` with *at() calls (the full
/// path is too long for the path-taking calls) and writes `bytes` to `file` at the bottom.
fn deep_file(base: &Path, name: &str, depth: usize, file: &str, bytes: &[u8]) {
    // SAFETY: plain *at() syscalls on descriptors this function owns and closes.
    unsafe {
        let mut fd = libc::open(cstr(base).as_ptr(), libc::O_DIRECTORY | libc::O_RDONLY);
        assert!(fd >= 0);
        let n = cstr(Path::new(name));
        for _ in 0..depth {
            let r = libc::mkdirat(fd, n.as_ptr(), 0o755);
            assert!(r == 0 || *libc::__errno_location() == libc::EEXIST);
            let next = libc::openat(fd, n.as_ptr(), libc::O_DIRECTORY | libc::O_RDONLY);
            assert!(next >= 0);
            libc::close(fd);
            fd = next;
        }
        let f = libc::openat(
            fd,
            cstr(Path::new(file)).as_ptr(),
            libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC,
            0o644,
        );
        assert!(f >= 0);
        assert_eq!(
            libc::write(f, bytes.as_ptr().cast(), bytes.len()),
            bytes.len() as isize
        );
        libc::close(f);
        libc::close(fd);
    }
}

fn mknod_char(path: &Path, major: u32, minor: u32) {
    // SAFETY: a valid NUL-terminated path.
    let r = unsafe {
        libc::mknod(
            cstr(path).as_ptr(),
            libc::S_IFCHR | 0o644,
            libc::makedev(major, minor),
        )
    };
    assert_eq!(r, 0, "mknod (the tests run as root)");
}

#[test]
fn long_paths_newlines_sockets_and_devices_get_clear_findings() {
    let lib = generate(Generation::V2_6, 30, false);
    let ids = image_assets(&lib, 7);
    let media = lib.truth.media_root.clone();
    let odd = media.join("upload/odd");
    std::fs::create_dir_all(&odd).unwrap();
    let _socket = std::os::unix::net::UnixListener::bind(odd.join("sock.jpg")).unwrap();
    mknod_char(&odd.join("zero.jpg"), 1, 5); // like /dev/zero: endless if ever read

    // A real photo moved to a folder 25 levels of 200-byte names deep: > 5 000 bytes.
    let seg = "d".repeat(200);
    let deep_db: String = format!("/data/upload/odd/{}", vec![seg.as_str(); 25].join("/"));
    let photo_db = original_of(&lib, &ids[0]);
    let photo = std::fs::read(host_of(&lib, &photo_db)).unwrap();
    deep_file(&odd, &seg, 25, "photo.jpg", &photo);
    let deep_photo = format!("{deep_db}/photo.jpg");
    assert!(deep_photo.len() > 5000);
    // A stored path of exactly 4 096 bytes, nothing there.
    let mut exact = format!("/data/upload/odd/{}", vec![seg.as_str(); 20].join("/"));
    exact.push('/');
    exact.push_str(&"e".repeat(4096 - exact.len()));
    assert_eq!(exact.len(), 4096);

    let cases: Vec<(&str, String, Option<Fault>, &str)> = vec![
        ("beyond PATH_MAX, present", deep_photo, None, ""),
        (
            "beyond PATH_MAX, absent",
            format!("{deep_db}/gone.jpg"),
            Some(Fault::Missing),
            "no file at the stored path",
        ),
        (
            "4096 bytes",
            exact,
            Some(Fault::Missing),
            "no file at the stored path",
        ),
        (
            "newline, absent",
            "/data/upload/odd/gone\nline.jpg".into(),
            Some(Fault::Missing),
            "no file",
        ),
        (
            "socket",
            "/data/upload/odd/sock.jpg".into(),
            Some(Fault::NotAFile),
            "socket",
        ),
        (
            "device",
            "/data/upload/odd/zero.jpg".into(),
            Some(Fault::NotAFile),
            "character device",
        ),
        (
            "name too long",
            format!("/data/upload/odd/{}.jpg", "n".repeat(300)),
            Some(Fault::Missing),
            "name too long",
        ),
    ];
    for (id, (_, path, _, _)) in ids.iter().zip(&cases) {
        sql(
            &lib,
            "UPDATE asset SET \"originalPath\" = $1 WHERE id = $2::uuid",
            &[path, id],
        );
    }
    for level in [Level::Exists, Level::Quick, Level::Hash] {
        let mut opts = options(&lib.truth);
        opts.level = level;
        let mut findings: Vec<Finding> = Vec::new();
        let summary = scan(&opts, &mut findings).expect("odd rows never stop the scan");
        assert_eq!(summary.files_checked, lib.truth.files_referenced);
        let by_id: BTreeMap<&str, &Finding> = findings
            .iter()
            .map(|f| (f.asset_id.as_deref().unwrap(), f))
            .collect();
        for (id, (what, _, want, says)) in ids.iter().zip(&cases) {
            let got = by_id.get(id.as_str());
            assert_eq!(got.map(|f| f.fault), *want, "{level:?} {what}: {got:?}");
            if let Some(f) = got {
                assert!(f.detail.contains(says), "{what}: {}", f.detail);
            }
        }
        assert_eq!(findings.len(), 6, "{findings:#?}");
    }

    // Through the CLI, every format keeps one record per finding despite the newline.
    let mut args = vec!["scan".to_string()];
    args.extend(library_flags(&lib));
    args.extend(["--as-user".into(), lib.truth.as_user.clone()]);
    let run = |format: &str| {
        let mut a = args.clone();
        a.extend(["--format".into(), format.into()]);
        let out = Command::new(binary()).args(&a).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{format}");
        String::from_utf8(out.stdout).unwrap()
    };
    let jsonl = run("jsonl");
    let findings = jsonl
        .lines()
        .filter(|l| l.starts_with(r#"{"type":"finding""#))
        .count();
    assert_eq!(findings, 6, "{jsonl}");
    assert!(jsonl
        .lines()
        .last()
        .unwrap()
        .starts_with(r#"{"type":"summary""#));
    for l in jsonl.lines() {
        serde_json::from_str::<serde_json::Value>(l).unwrap();
    }
    assert!(jsonl.contains(r#"gone\nline.jpg"#));
    let csv = run("csv");
    assert!(csv.contains("\"/data/upload/odd/gone\nline.jpg\""), "{csv}");
    let json: serde_json::Value = serde_json::from_str(&run("json")).unwrap();
    assert_eq!(json["findings"].as_array().unwrap().len(), 6);
    assert!(run("table").contains("6 faults"));
}

/// Counts the directory-listing syscalls `program` makes, its threads included (strace -c).
fn getdents_calls(program: &Path, args: &[String]) -> (u64, std::process::Output) {
    let log = std::env::temp_dir().join(format!(
        "ii-strace-{}-{}.txt",
        std::process::id(),
        program.file_name().unwrap().to_string_lossy()
    ));
    let out = Command::new("strace")
        .args(["-f", "-c", "-e", "trace=getdents64,getdents", "-o"])
        .arg(&log)
        .arg(program)
        .args(args)
        .output()
        .expect("strace is installed by scripts/setup.sh");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    let calls = text
        .lines()
        .filter(|l| l.contains("getdents"))
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            // % time, seconds, usecs/call, calls, [errors], syscall
            cols.get(3).and_then(|c| c.parse::<u64>().ok())
        })
        .sum();
    (calls, out)
}

#[test]
fn a_directory_of_100_000_entries_is_never_listed() {
    let lib = generate(Generation::V2_6, 30, false);
    let ids = image_assets(&lib, 3);
    let crowd = lib.truth.media_root.join("upload/crowd");
    std::fs::create_dir_all(&crowd).unwrap();
    for i in 0..100_000 {
        std::fs::File::create(crowd.join(format!("{i:06}.jpg"))).unwrap();
    }
    // Three referenced originals live among them (renamed there, rows updated).
    for (n, id) in ids.iter().enumerate() {
        let old = original_of(&lib, id);
        let name = format!("{:06}.jpg", 100_000 + n);
        std::fs::rename(host_of(&lib, &old), crowd.join(&name)).unwrap();
        let new = format!("/data/upload/crowd/{name}");
        sql(
            &lib,
            "UPDATE asset SET \"originalPath\" = $1 WHERE id = $2::uuid",
            &[&new, id],
        );
    }
    let mut args = vec!["scan".to_string()];
    args.extend(library_flags(&lib));
    args.extend([
        "--as-user".into(),
        lib.truth.as_user.clone(),
        "--level".into(),
        "quick".into(),
        "--format".into(),
        "jsonl".into(),
    ]);
    let (calls, out) = getdents_calls(&binary(), &args);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "still clean: {text}");
    let summary: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(summary["files_checked"], lib.truth.files_referenced);
    // Listing 100 000 names takes well over a hundred getdents64 calls; the scan makes none
    // beyond a few for its own setup.
    assert!(calls < 20, "{calls} getdents calls");
    // The check is real: listing the folder does show up.
    let (ls_calls, _) = getdents_calls(
        Path::new("/bin/ls"),
        &[crowd.to_string_lossy().into_owned()],
    );
    assert!(ls_calls > 20, "ls made {ls_calls} calls");
}

#[test]
fn null_and_empty_paths_in_rows_are_reported_not_fatal() {
    let lib = generate(Generation::V2_6, 30, false);
    let ids = image_assets(&lib, 3);
    // Immich declares these NOT NULL; a damaged or hand-edited database may not be.
    sql(
        &lib,
        "ALTER TABLE asset ALTER \"originalPath\" DROP NOT NULL",
        &[],
    );
    sql(&lib, "ALTER TABLE asset_file ALTER path DROP NOT NULL", &[]);
    sql(
        &lib,
        "ALTER TABLE person ALTER \"thumbnailPath\" DROP NOT NULL",
        &[],
    );
    sql(
        &lib,
        "UPDATE asset SET \"originalPath\" = NULL WHERE id = $1::uuid",
        &[&ids[0]],
    );
    sql(
        &lib,
        "UPDATE asset_file SET path = NULL WHERE \"assetId\" = $1::uuid AND type = 'preview'",
        &[&ids[1]],
    );
    sql(
        &lib,
        "UPDATE asset_file SET path = '' WHERE \"assetId\" = $1::uuid AND type = 'thumbnail'",
        &[&ids[2]],
    );
    sql(
        &lib,
        "UPDATE person SET \"thumbnailPath\" = NULL WHERE id = (SELECT min(id::text)::uuid FROM person)",
        &[],
    );
    let mut findings: Vec<Finding> = Vec::new();
    let summary = scan(&options(&lib.truth), &mut findings).expect("NULLs never stop the scan");
    let got: Vec<(String, Option<FileKind>, Fault, String)> = findings
        .iter()
        .map(|f| {
            (
                f.asset_id.clone().unwrap(),
                f.file,
                f.fault,
                f.detail.clone(),
            )
        })
        .collect();
    let empty = "empty path in the database".to_string();
    let mut want = vec![
        (
            ids[0].clone(),
            Some(FileKind::Original),
            Fault::Missing,
            empty.clone(),
        ),
        (
            ids[1].clone(),
            Some(FileKind::Preview),
            Fault::Missing,
            empty.clone(),
        ),
        (
            ids[2].clone(),
            Some(FileKind::Thumbnail),
            Fault::Missing,
            empty,
        ),
    ];
    want.sort();
    let mut got = got;
    got.sort();
    assert_eq!(got, want);
    // Every other file of those assets was still checked; a NULL person thumbnail is "none".
    assert_eq!(summary.files_checked, lib.truth.files_referenced - 1);
}

/// Rewrites an original so it is `extra` bytes of hole in the middle of the real photo (a
/// valid JPEG that takes a while to hash) and records its size and SHA-1 in the database.
fn make_big_original(lib: &Lib, id: &str, extra: u64) -> PathBuf {
    let path = host_of(lib, &original_of(lib, id));
    let photo = std::fs::read(&path).unwrap();
    assert!(photo.ends_with(&[0xff, 0xd9]), "a JPEG");
    let f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(&photo[..photo.len() - 2], 0).unwrap();
    let size = photo.len() as u64 + extra;
    f.write_all_at(&[0xff, 0xd9], size - 2).unwrap();
    drop(f);
    let out = Command::new("sha1sum").arg(&path).output().unwrap();
    let hex = String::from_utf8(out.stdout).unwrap()[..40].to_string();
    sql(
        lib,
        "UPDATE asset SET checksum = decode($1, 'hex') WHERE id = $2::uuid",
        &[&hex, id],
    );
    sql(
        lib,
        "UPDATE asset_exif SET \"fileSizeInByte\" = $1::bigint WHERE \"assetId\" = $2::uuid",
        &[&size.to_string(), id],
    );
    path
}

/// Does this process hold `path` open for reading (not just an O_PATH handle)?
fn open_for_reading(path: &Path) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return false;
    };
    dir.filter_map(|e| e.ok()).any(|e| {
        std::fs::read_link(e.path()).is_ok_and(|l| l == path) && {
            let info = std::fs::read_to_string(format!(
                "/proc/self/fdinfo/{}",
                e.file_name().to_string_lossy()
            ))
            .unwrap_or_default();
            let flags = info
                .lines()
                .find_map(|l| l.strip_prefix("flags:"))
                .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
                .unwrap_or(0);
            flags & libc::O_PATH as u32 == 0
        }
    })
}

/// Runs `act` on `path` the moment the scan (this process) opens it for reading.
fn when_opened(path: PathBuf, act: impl FnOnce(&Path) + Send + 'static) -> Arc<AtomicBool> {
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    std::thread::spawn(move || {
        while !open_for_reading(&path) {
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        act(&path);
        d.store(true, Ordering::SeqCst);
    });
    done
}

#[test]
fn files_that_grow_or_vanish_while_hashed_get_a_clear_finding() {
    let lib = generate(Generation::V2_6, 30, false);
    let ids = assets_where(&lib, 2, "\"originalPath\" LIKE '%.jpg'");
    assert_eq!(ids.len(), 2);
    let growing = make_big_original(&lib, &ids[0], 128 << 20);
    let vanishing = make_big_original(&lib, &ids[1], 129 << 20);
    let mut opts = options(&lib.truth);
    opts.level = Level::Hash;
    opts.jobs = 1;
    // Left alone, both are healthy: the setup is right.
    let mut quiet: Vec<Finding> = Vec::new();
    scan(&opts, &mut quiet).unwrap();
    assert!(quiet.is_empty(), "{quiet:#?}");

    let grown = when_opened(growing.clone(), |p| {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(p).unwrap();
        f.write_all(&[0u8; 4096]).unwrap();
    });
    let gone = when_opened(vanishing.clone(), |p| std::fs::remove_file(p).unwrap());
    let mut findings: Vec<Finding> = Vec::new();
    let summary = scan(&opts, &mut findings).expect("no panic, no abort");
    assert!(grown.load(Ordering::SeqCst) && gone.load(Ordering::SeqCst));
    assert_eq!(summary.files_checked, lib.truth.files_referenced);
    let by_id: BTreeMap<&str, &Finding> = findings
        .iter()
        .map(|f| (f.asset_id.as_deref().unwrap(), f))
        .collect();
    assert_eq!(findings.len(), 2, "{findings:#?}");
    let g = by_id[ids[0].as_str()];
    assert_eq!(g.fault, Fault::SizeMismatch, "{g:?}");
    assert!(
        g.detail.contains("changed while it was being hashed"),
        "{}",
        g.detail
    );
    let v = by_id[ids[1].as_str()];
    assert_eq!(v.fault, Fault::Missing, "{v:?}");
    assert!(
        v.detail.contains("deleted while it was being hashed"),
        "{}",
        v.detail
    );
}

#[test]
fn quote_and_semicolon_names_go_through_relink_and_undo_as_data() {
    let lib = generate(Generation::V2_6, 30, false);
    let ids = image_assets(&lib, 1);
    let id = &ids[0];
    let old = "/data/thumbs/x/it's; DROP TABLE asset; --.webp".to_string();
    let new = "/data/thumbs/x/new'); DELETE FROM asset_file; --\".webp".to_string();
    sql(
        &lib,
        "UPDATE asset_file SET path = $1 WHERE \"assetId\" = $2::uuid AND type = 'thumbnail'",
        &[&old, id],
    );
    let target = lib.dir.join("quoted'; DROP TABLE asset;--.webp");
    std::fs::write(&target, b"RIFF....WEBP").unwrap();
    let count = || -> (i64, i64) {
        let rt = runtime();
        rt.block_on(async {
            let mut c = connect(&lib.truth.db_url).await;
            let a = sqlx::query_scalar("SELECT count(*) FROM asset")
                .fetch_one(&mut c)
                .await
                .unwrap();
            let f = sqlx::query_scalar("SELECT count(*) FROM asset_file")
                .fetch_one(&mut c)
                .await
                .unwrap();
            (a, f)
        })
    };
    let path_now = || -> String {
        let rt = runtime();
        rt.block_on(async {
            let mut c = connect(&lib.truth.db_url).await;
            sqlx::query_scalar(
                "SELECT path FROM asset_file WHERE \"assetId\" = $1::uuid AND type = 'thumbnail'",
            )
            .bind(id)
            .fetch_one(&mut c)
            .await
            .unwrap()
        })
    };
    let before = count();
    let step = RelinkStep {
        id: id.clone(),
        file: FileKind::Thumbnail,
        old: old.clone(),
        new: new.clone(),
        found_at: target,
        owner: None,
        root: Some(lib.dir.clone()),
        row: None,
    };
    let journal = lib.dir.join("quoted'; --.journal");
    let report = relink::apply(&lib.truth.db_url, &[step], &journal, 10).unwrap();
    assert_eq!(report.applied.len(), 1, "{report:?}");
    assert_eq!(path_now(), new, "stored byte for byte");
    assert_eq!(count(), before, "nothing dropped or deleted");
    // Undo through the CLI, with the quote in the journal's own name too.
    let out = Command::new(binary())
        .arg("undo")
        .arg(&journal)
        .args(["--db-url", &lib.truth.db_url])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(path_now(), old);
    assert_eq!(count(), before);
}
