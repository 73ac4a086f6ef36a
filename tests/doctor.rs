//! `doctor` on generated libraries: a healthy install is all OK, and each injected problem
//! turns exactly its own line to WARN or FAIL.

mod common;

use common::{binary, connect, generate, library_flags, runtime, Lib};
use immich_fixtures::Generation;
use immich_integrity::doctor::{self, DoctorOptions, Report, Space, Status};
use immich_integrity::Identity;
use std::ffi::CString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

/// Half of every disk free: the machine's own disks never decide a test through this.
fn roomy(_: &Path) -> std::io::Result<Space> {
    Ok(Space {
        block_size: 4096,
        blocks: 1_000_000,
        blocks_available: 500_000,
        inodes: 100_000,
        inodes_available: 50_000,
    })
}

/// 5 % of the blocks free, inodes plenty.
fn nearly_full(_: &Path) -> std::io::Result<Space> {
    Ok(Space {
        blocks_available: 50_000,
        ..roomy(Path::new("/"))?
    })
}

/// Space left but no inode.
fn out_of_inodes(_: &Path) -> std::io::Result<Space> {
    Ok(Space {
        inodes_available: 0,
        ..roomy(Path::new("/"))?
    })
}

fn options(lib: &Lib) -> DoctorOptions {
    let t = &lib.truth;
    let mut o = DoctorOptions::new(t.db_url.clone());
    o.media_root = Some(t.media_root.clone());
    o.maps = t
        .maps
        .iter()
        .filter(|(c, _)| c != &t.container_root)
        .cloned()
        .collect();
    o.as_user = Some(Identity::parse(&t.as_user).unwrap());
    o.statvfs = roomy;
    o
}

const FOLDERS: [&str; 6] = [
    "upload",
    "library",
    "thumbs",
    "encoded-video",
    "profile",
    "backups",
];

fn sql(lib: &Lib, statements: &[&str]) {
    let rt = runtime();
    rt.block_on(async {
        use sqlx::Executor;
        let mut c = connect(&lib.truth.db_url).await;
        for s in statements {
            c.execute(*s).await.unwrap_or_else(|e| panic!("{s}: {e}"));
        }
    });
}

/// Immich's migration ledgers as a server of this generation leaves them.
fn write_ledger(lib: &Lib) {
    let typeorm = |newest: &str, ts: i64| {
        vec![
            "CREATE TABLE IF NOT EXISTS migrations (id serial PRIMARY KEY, timestamp bigint NOT NULL, \
             name varchar NOT NULL)"
                .to_string(),
            "INSERT INTO migrations (timestamp, name) VALUES \
             (1711257900274, 'RenameWebpJpegPaths1711257900274')"
                .to_string(),
            format!("INSERT INTO migrations (timestamp, name) VALUES ({ts}, '{newest}')"),
        ]
    };
    let s: Vec<String> = match lib.truth.generation {
        Generation::V1_112 => typeorm("AddSomething1715000000000", 1715000000000),
        Generation::V1_135 => typeorm("AddMissingIndex1744910873956", 1744910873956),
        g => {
            let mut s = typeorm("AddMissingIndex1744910873956", 1744910873956);
            s.push(
                "CREATE TABLE IF NOT EXISTS kysely_migrations (name varchar(255) PRIMARY KEY, \
                 timestamp varchar(255) NOT NULL)"
                    .into(),
            );
            s.push(
                "CREATE TABLE IF NOT EXISTS kysely_migrations_lock (id varchar(255) PRIMARY KEY, \
                 is_locked integer NOT NULL DEFAULT 0)"
                    .into(),
            );
            s.push(
                "INSERT INTO kysely_migrations_lock VALUES ('migration_lock', 0) \
                 ON CONFLICT DO NOTHING"
                    .into(),
            );
            let mut names = vec![
                "1744910873969-InitialMigration",
                "1752267649968-StandardizeNames",
                "1752759108283-ConvertToAbsolutePaths",
            ];
            if g == Generation::V2_6 {
                names.extend([
                    "1764698859174-SidecarInAssetFile",
                    "1768828334807-AddIsEditedToAssetFile",
                    "1773242919341-EncodedVideoAssetFiles",
                ]);
            }
            for n in names {
                s.push(format!(
                    "INSERT INTO kysely_migrations VALUES ('{n}', '2026-01-01T00:00:00Z') \
                     ON CONFLICT DO NOTHING"
                ));
            }
            s
        }
    };
    let refs: Vec<&str> = s.iter().map(String::as_str).collect();
    sql(lib, &refs);
}

fn chown_server(path: &Path) {
    std::os::unix::fs::chown(path, Some(1000), Some(1000)).unwrap();
}

/// What a healthy install has beyond the generated library: top folders owned by the server's
/// uid, a recent database backup, and the migration ledgers.
fn make_healthy(lib: &Lib) {
    let root = &lib.truth.media_root;
    for f in FOLDERS {
        chown_server(&root.join(f));
        chown_server(&root.join(f).join(".immich"));
    }
    let backup = root.join("backups/immich-db-backup-20260101T000000-v2.6.0-pg16.sql.gz");
    std::fs::write(&backup, b"dump").unwrap();
    chown_server(&backup);
    write_ledger(lib);
}

fn healthy(generation: Generation) -> Lib {
    let lib = generate(generation, 20, false);
    make_healthy(&lib);
    lib
}

fn status(r: &Report, name: &str) -> Status {
    r.get(name)
        .unwrap_or_else(|| panic!("no check {name:?} in {r:#?}"))
        .status
}

/// The checks of Docker, the server's log, Redis and the host's memory, which these tests do
/// not arrange (tests/doctor_containers.rs, doctor_logs.rs, doctor_queues.rs do).
fn outside_sources(name: &str) -> bool {
    ["container", "logs", "queue", "memory", "versions"]
        .iter()
        .any(|p| name.starts_with(p))
}

/// Every check but `except` is OK.
fn only_problem(r: &Report, except: &[&str]) {
    let others: Vec<_> = r
        .checks
        .iter()
        .filter(|c| {
            !except.contains(&c.name.as_str())
                && !outside_sources(&c.name)
                && c.status != Status::Ok
        })
        .collect();
    assert!(others.is_empty(), "unexpected problems: {others:#?}");
}

#[test]
fn a_healthy_install_is_all_ok() {
    for g in [Generation::V1_112, Generation::V2_6] {
        let lib = healthy(g);
        let r = doctor::run(&options(&lib));
        assert!(r.database_checked);
        only_problem(&r, &[]);
        for name in [
            "database",
            "credentials",
            "schema",
            "migrations",
            "media location",
            "backups",
            "thumbnails",
        ] {
            assert_eq!(status(&r, name), Status::Ok, "{g}: {name}");
        }
        for f in FOLDERS {
            assert_eq!(status(&r, &format!("folder {f}")), Status::Ok);
        }
        let media = format!("disk {}", lib.truth.media_root.display());
        assert_eq!(status(&r, &media), Status::Ok);
    }
}

#[test]
fn a_missing_marker_fails_its_folder() {
    let lib = healthy(Generation::V2_6);
    let root = &lib.truth.media_root;
    // thumbs still holds files; backups is left empty (a mount point with nothing mounted).
    std::fs::remove_file(root.join("thumbs/.immich")).unwrap();
    std::fs::remove_file(root.join("backups/.immich")).unwrap();
    for e in std::fs::read_dir(root.join("backups")).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    let r = doctor::run(&options(&lib));
    let thumbs = r.get("folder thumbs").unwrap();
    assert_eq!(thumbs.status, Status::Fail);
    assert!(thumbs.message.contains("no .immich marker"), "{thumbs:?}");
    assert!(thumbs.fix.as_ref().unwrap().contains("touch"));
    let backups = r.get("folder backups").unwrap();
    assert_eq!(backups.status, Status::Fail);
    assert!(backups.message.contains("absent or empty"), "{backups:?}");
    assert_eq!(status(&r, "backups"), Status::Warn);
    only_problem(&r, &["folder thumbs", "folder backups", "backups"]);

    // A folder Immich never checked (its mountChecks flag unset) gets its marker written at the
    // next start: a warning, not a failure.
    sql(
        &lib,
        &["UPDATE system_metadata SET value = jsonb_set(value, '{mountChecks,backups}', 'false') \
           WHERE key = 'system-flags'"],
    );
    let r = doctor::run(&options(&lib));
    let backups = r.get("folder backups").unwrap();
    assert_eq!(backups.status, Status::Warn, "{backups:?}");
    assert!(backups.message.contains("never checked"), "{backups:?}");
    assert_eq!(status(&r, "folder thumbs"), Status::Fail);
}

#[test]
fn paths_under_another_root_than_media_location_fail() {
    let lib = healthy(Generation::V2_6);
    // IMMICH_MEDIA_LOCATION other than the saved root: the next start rewrites every path.
    let mut moving = options(&lib);
    moving.media_location = Some("/usr/src/app/upload".into());
    let c = doctor::run(&moving).get("media location").unwrap().clone();
    assert_eq!(c.status, Status::Warn, "{c:?}");
    assert!(
        c.message.contains("rewrites every path from /data"),
        "{c:?}"
    );

    // The saved MediaLocation disagrees with every stored path.
    sql(
        &lib,
        &[
            "UPDATE system_metadata SET value = '{\"location\": \"/usr/src/app/upload\"}' \
           WHERE key = 'MediaLocation'",
        ],
    );
    let r = doctor::run(&options(&lib));
    let c = r.get("media location").unwrap();
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert!(c.message.contains("inconsistent media location"), "{c:?}");
    assert!(c
        .message
        .contains("MediaLocation in system_metadata is /usr/src/app/upload"));
    only_problem(&r, &["media location"]);

    // Back to /data, and three rows left under the old root: a half-done migration.
    sql(
        &lib,
        &[
            "UPDATE system_metadata SET value = '{\"location\": \"/data\"}' \
             WHERE key = 'MediaLocation'",
            "UPDATE asset SET \"originalPath\" = \
             replace(\"originalPath\", '/data/', '/usr/src/app/upload/') \
             WHERE id IN (SELECT id FROM asset WHERE \"libraryId\" IS NULL ORDER BY id LIMIT 3)",
        ],
    );
    let r = doctor::run(&options(&lib));
    let c = r.get("media location").unwrap();
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert!(c.message.starts_with("3 of "), "{c:?}");
    assert!(c.message.contains("3 under /usr/src/app/upload"), "{c:?}");
    assert!(
        c.fix.as_ref().unwrap().contains("relink::apply_plan"),
        "{c:?}"
    );
}

#[test]
fn a_folder_the_server_user_cannot_write_fails() {
    let lib = healthy(Generation::V2_6);
    let thumbs = lib.truth.media_root.join("thumbs");
    std::os::unix::fs::chown(&thumbs, Some(0), Some(0)).unwrap();
    std::fs::set_permissions(&thumbs, std::fs::Permissions::from_mode(0o755)).unwrap();
    let r = doctor::run(&options(&lib));
    let c = r.get("folder thumbs").unwrap();
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert!(c.message.contains("uid 1000 cannot create files"), "{c:?}");
    assert!(c.fix.as_ref().unwrap().contains("chown 1000:1000"));
    only_problem(&r, &["folder thumbs"]);
    // Root may write anywhere: without --as-user the same folder passes.
    let mut as_root = options(&lib);
    as_root.as_user = None;
    assert_eq!(status(&doctor::run(&as_root), "folder thumbs"), Status::Ok);

    // Through the CLI: the line, and exit code 1.
    let out = Command::new(binary())
        .arg("doctor")
        .args(library_flags(&lib))
        .args(["--as-user", "1000:1000"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("FAIL folder thumbs: uid 1000 cannot")),
        "{text}"
    );
    assert!(text.lines().any(|l| l.starts_with("OK   folder upload:")));
}

#[test]
fn a_nearly_full_disk_warns_through_the_seam() {
    let lib = healthy(Generation::V2_6);
    let media = format!("disk {}", lib.truth.media_root.display());
    let mut o = options(&lib);
    o.statvfs = nearly_full;
    let r = doctor::run(&o);
    let c = r.get(&media).unwrap();
    assert_eq!(c.status, Status::Warn, "{c:?}");
    assert!(c.message.contains("(5.0 %)"), "{c:?}");
    let disks: Vec<_> = r
        .checks
        .iter()
        .filter(|c| c.name.starts_with("disk "))
        .collect();
    assert!(
        disks.len() >= 2,
        "media root and external library: {disks:?}"
    );
    only_problem(
        &r,
        &disks.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
    );
    assert!(disks.iter().all(|c| c.status == Status::Warn));

    o.statvfs = out_of_inodes;
    let c = doctor::run(&o).get(&media).unwrap().clone();
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert!(c.message.contains("inodes 0.0 % free"), "{c:?}");
}

/// A 1 MiB tmpfs, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let c = |s: &str| CString::new(s).unwrap();
        let target = c(at.to_str().unwrap());
        // SAFETY: plain C strings that outlive the call.
        let rc = unsafe {
            libc::mount(
                c("tmpfs").as_ptr(),
                target.as_ptr(),
                c("tmpfs").as_ptr(),
                0,
                c("size=1m,mode=0755").as_ptr().cast(),
            )
        };
        assert_eq!(
            rc,
            0,
            "mount -t tmpfs -o size=1m {} needs root with CAP_SYS_ADMIN: {}",
            at.display(),
            std::io::Error::last_os_error()
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let target = CString::new(self.0.to_str().unwrap()).unwrap();
        // SAFETY: a C string that outlives the call.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        let _ = std::fs::remove_dir(&self.0);
    }
}

#[test]
fn a_nearly_full_tmpfs_media_root_warns() {
    let lib = healthy(Generation::V2_6);
    let at = lib.dir.join("small-disk");
    let fs = Tmpfs::mount(&at);
    for f in FOLDERS {
        let d = fs.0.join(f);
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join(".immich"), b"1").unwrap();
        chown_server(&d);
        chown_server(&d.join(".immich"));
    }
    std::fs::write(fs.0.join("backups/dump.sql.gz"), b"dump").unwrap();
    let disk = format!("disk {}", fs.0.display());
    let mut o = options(&lib);
    o.media_root = Some(fs.0.clone());
    o.statvfs = doctor::real_statvfs;
    assert_eq!(status(&doctor::run(&o), &disk), Status::Ok);
    // Fill 95 % of it.
    std::fs::write(fs.0.join("upload/big.bin"), vec![7u8; 940 * 1024]).unwrap();
    let r = doctor::run(&o);
    let c = r.get(&disk).unwrap();
    assert_eq!(c.status, Status::Warn, "{c:?}");
    assert!(c.message.contains("of 1.0 MiB"), "{c:?}");
    // The other disks are the machine's own: only the file checks must stay OK.
    let disks: Vec<&str> = r
        .checks
        .iter()
        .filter(|c| c.name.starts_with("disk "))
        .map(|c| c.name.as_str())
        .collect();
    only_problem(&r, &disks);
}

#[test]
fn no_backup_or_an_old_one_warns() {
    let lib = healthy(Generation::V1_137);
    let backups = lib.truth.media_root.join("backups");
    let r = doctor::run(&options(&lib));
    assert_eq!(status(&r, "backups"), Status::Ok);
    only_problem(&r, &[]);
    // It says how old the dump is, which Immich made it, and how to test it.
    let newest = backups.join("immich-db-backup-20260101T000000-v2.6.0-pg16.sql.gz");
    let m = &r.get("backups").unwrap().message;
    assert!(m.contains("0.0 days old (made by Immich v2.6.0)"), "{m}");
    assert!(
        m.contains(&format!("restore-test --dump {}", newest.display())),
        "{m}"
    );

    let f = std::fs::File::options().write(true).open(&newest).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(10 * 86400))
        .unwrap();
    drop(f);
    let r = doctor::run(&options(&lib));
    let c = r.get("backups").unwrap();
    assert_eq!(c.status, Status::Warn, "{c:?}");
    assert!(c.message.contains("older than 7 days"), "{c:?}");
    only_problem(&r, &["backups"]);

    std::fs::remove_file(&newest).unwrap();
    let c = doctor::run(&options(&lib)).get("backups").unwrap().clone();
    assert_eq!(c.status, Status::Warn);
    assert!(c.message.starts_with("no backup file"), "{c:?}");
}

#[test]
fn assets_without_thumbnail_rows_are_counted() {
    let lib = healthy(Generation::V2_6);
    // Three visible, live assets lose their thumbnail row; a trashed one loses its preview
    // (trashed assets do not count).
    sql(
        &lib,
        &[
            "DELETE FROM asset_file WHERE type = 'thumbnail' AND \"assetId\" IN \
             (SELECT a.id FROM asset a WHERE a.\"deletedAt\" IS NULL \
              AND a.visibility <> 'hidden' ORDER BY a.id LIMIT 3)",
            "DELETE FROM asset_file WHERE type = 'preview' AND \"assetId\" IN \
             (SELECT a.id FROM asset a WHERE a.\"deletedAt\" IS NOT NULL LIMIT 1)",
        ],
    );
    let r = doctor::run(&options(&lib));
    let c = r.get("thumbnails").unwrap();
    assert_eq!(c.status, Status::Warn, "{c:?}");
    assert!(c.message.starts_with("3 of "), "{c:?}");
    only_problem(&r, &["thumbnails"]);

    // Before asset_files: NULL or empty thumbnailPath columns.
    let old = healthy(Generation::V1_112);
    sql(
        &old,
        &["UPDATE assets SET \"thumbnailPath\" = NULL WHERE id IN \
           (SELECT id FROM assets WHERE \"deletedAt\" IS NULL AND \"isVisible\" \
            ORDER BY id LIMIT 2)"],
    );
    let c = doctor::run(&options(&old))
        .get("thumbnails")
        .unwrap()
        .clone();
    assert_eq!(c.status, Status::Warn, "{c:?}");
    assert!(c.message.starts_with("2 of "), "{c:?}");
}

#[test]
fn migration_ledger_against_the_schema() {
    let lib = healthy(Generation::V2_6);
    assert_eq!(
        status(&doctor::run(&options(&lib)), "migrations"),
        Status::Ok
    );

    // A migration lock held by another session: migrations are running (or stuck).
    let rt = runtime();
    let mut holder = rt.block_on(connect(&lib.truth.db_url));
    rt.block_on(async {
        sqlx::query("SELECT pg_advisory_lock(200)")
            .execute(&mut holder)
            .await
            .unwrap();
    });
    let c = doctor::run(&options(&lib))
        .get("migrations")
        .unwrap()
        .clone();
    assert_eq!(c.status, Status::Warn, "{c:?}");
    assert!(c.message.contains("lock is held"), "{c:?}");
    rt.block_on(async {
        use sqlx::Connection;
        sqlx::query("SELECT pg_advisory_unlock(200)")
            .execute(&mut holder)
            .await
            .unwrap();
        holder.close().await.unwrap();
    });

    // The ledger stops before the migrations whose tables are present: a mixed restore.
    sql(
        &lib,
        &["DELETE FROM kysely_migrations WHERE name >= '1764698859174'"],
    );
    let r = doctor::run(&options(&lib));
    let c = r.get("migrations").unwrap();
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert!(
        c.message.contains("1764698859174-SidecarInAssetFile"),
        "{c:?}"
    );
    only_problem(&r, &["migrations"]);

    // An old TypeORM ledger with an empty kysely ledger: Immich's "Invalid upgrade path".
    sql(
        &lib,
        &[
            "DELETE FROM kysely_migrations",
            "DELETE FROM migrations WHERE name = 'AddMissingIndex1744910873956'",
        ],
    );
    let c = doctor::run(&options(&lib))
        .get("migrations")
        .unwrap()
        .clone();
    assert_eq!(c.status, Status::Fail, "{c:?}");
    assert!(c.message.contains("Invalid upgrade path"), "{c:?}");
    assert!(c.fix.unwrap().contains("typeorm-upgrade"));

    // No ledger at all.
    sql(
        &lib,
        &["DROP TABLE migrations", "DROP TABLE kysely_migrations"],
    );
    let c = doctor::run(&options(&lib))
        .get("migrations")
        .unwrap()
        .clone();
    assert_eq!(c.status, Status::Warn, "{c:?}");
}

#[test]
fn an_unreachable_database_exits_2_and_hides_the_password() {
    // Nothing listens on port 1.
    let out = Command::new(binary())
        .args([
            "doctor",
            "--db-url",
            "postgres://immich:s3cretpw@127.0.0.1:1/immich",
        ])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("FAIL database: cannot reach PostgreSQL at 127.0.0.1:1"),
        "{text}"
    );
    assert!(!text.contains("s3cretpw"), "{text}");

    // The server answers but refuses the login: the database line is OK, credentials FAIL.
    let out = Command::new(binary())
        .args([
            "doctor",
            "--format",
            "json",
            "--db-url",
            "postgres://no_such_role_doctor:s3cretpw@127.0.0.1:5432/postgres",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(!text.contains("s3cretpw"), "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["database_checked"], false);
    let checks = v["checks"].as_array().unwrap();
    let by = |n: &str| checks.iter().find(|c| c["name"] == n).unwrap().clone();
    assert_eq!(by("database")["status"], "ok");
    assert_eq!(by("credentials")["status"], "fail");
    assert!(by("credentials")["message"]
        .as_str()
        .unwrap()
        .contains("refused the login"));
}

#[test]
fn cli_json_report_of_a_healthy_install_exits_0() {
    let lib = healthy(Generation::V1_135);
    let out = Command::new(binary())
        .arg("doctor")
        .args(library_flags(&lib))
        .args([
            "--as-user",
            "1000:1000",
            "--format",
            "json",
            "--min-free-percent",
            "0",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["database_checked"], true);
    let checks = v["checks"].as_array().unwrap();
    let bad: Vec<_> = checks
        .iter()
        .filter(|c| c["status"] != "ok" && !outside_sources(c["name"].as_str().unwrap()))
        .collect();
    assert!(bad.is_empty(), "{bad:#?}");
    let ml = checks
        .iter()
        .find(|c| c["name"] == "media location")
        .unwrap();
    assert!(
        ml["message"].as_str().unwrap().starts_with("upload -> "),
        "{ml}"
    );
}

#[test]
fn reads_everything_from_immichs_env_file_and_never_prints_the_password() {
    let lib = healthy(Generation::V2_6);
    let env = lib.dir.join(".env");
    std::fs::create_dir(lib.dir.join("postgres")).unwrap();
    std::fs::write(
        &env,
        format!(
            "UPLOAD_LOCATION=./media\nDB_DATA_LOCATION=./postgres\nDB_HOSTNAME=127.0.0.1\n\
             DB_PORT=5432\nDB_USERNAME=postgres\nDB_PASSWORD=hunter2-secret\n\
             DB_DATABASE_NAME={}\n",
            lib.db_name
        ),
    )
    .unwrap();
    // The external library is a bind mount of the server, as a real install has it (doctor
    // fails an unmounted library, as the scan reports it).
    let t = &lib.truth;
    let mounts: String = t
        .maps
        .iter()
        .filter(|(c, _)| c != &t.container_root)
        .map(|(c, h)| format!("      - {}:{c}:ro\n", h.display()))
        .collect();
    std::fs::write(
        lib.dir.join("docker-compose.yml"),
        format!(
            "services:\n  immich-server:\n    volumes:\n      - ${{UPLOAD_LOCATION}}:/data\n\
             {mounts}"
        ),
    )
    .unwrap();
    let out = Command::new(binary())
        .arg("doctor")
        .arg("--env-file")
        .arg(&env)
        .args(["--as-user", "1000:1000", "--min-free-percent", "0"])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(
        text.contains(&format!(
            "OK   credentials: logged in as postgres://postgres:***@127.0.0.1:5432/{}",
            lib.db_name
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "OK   media location: /data -> {}",
            lib.truth.media_root.display()
        )),
        "{text}"
    );
    // DB_DATA_LOCATION names PostgreSQL's folder on the host.
    assert!(
        text.contains(&format!(
            "OK   disk {}: PostgreSQL data directory",
            lib.dir.join("postgres").display()
        )),
        "{text}"
    );
    let problems: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("WARN") || l.starts_with("FAIL"))
        .filter(|l| !outside_sources(l[5..].split(':').next().unwrap_or("")))
        .collect();
    assert!(problems.is_empty(), "{text}");
}
