//! Nothing the tool writes can land on media: every flag that names a file to write is refused
//! (exit 2, the root named) when the file lies inside the media root or a mapped root, also
//! when reached through a symlinked folder outside it, and the media tree stays byte-identical.

mod common;

use common::*;
use immich_fixtures::Generation;
use std::path::{Path, PathBuf};

/// The first regular file with `ext` below `dir`.
fn first_file(dir: &Path, ext: &str) -> Option<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        let m = std::fs::symlink_metadata(&p).unwrap();
        if m.is_file() && p.extension().is_some_and(|e| e == ext) && m.len() > 0 {
            return Some(p);
        }
        if m.is_dir() {
            if let Some(f) = first_file(&p, ext) {
                return Some(f);
            }
        }
    }
    None
}

#[test]
fn every_write_flag_refuses_a_path_on_media() {
    let lib = generate(Generation::V3_2, 30, true);
    let root = lib.truth.media_root.clone();
    let photo = first_file(&root.join("upload"), "jpg").expect("a photo in upload/");
    // A folder outside the root that leads into it.
    let link = lib.dir.join("looks-outside");
    std::os::unix::fs::symlink(photo.parent().unwrap(), &link).unwrap();
    let mut targets: Vec<(PathBuf, PathBuf)> = vec![
        (photo.clone(), root.clone()),
        (root.join("upload").join("new-report.json"), root.clone()),
        (link.join(photo.file_name().unwrap()), root.clone()),
        (link.join("not-yet").join("file.json"), root.clone()),
    ];
    // A mapped root (an external library's mount).
    for (c, host) in &lib.truth.maps {
        if c != &lib.truth.container_root {
            if let Some(f) = first_file(host, "jpg") {
                targets.push((f, host.clone()));
            }
        }
    }
    assert!(
        targets.len() >= 5,
        "the fixture has an external library: {targets:?}"
    );

    let before = media_tree(&lib);
    let lib_flags = library_flags(&lib);
    let commands: Vec<(&str, Vec<&str>)> = vec![
        ("scan", vec!["--output"]),
        ("scan", vec!["--level", "quick", "--manifest"]),
        ("relink", vec!["--apply", "--journal"]),
        ("relink", vec!["--journal"]),
        (
            "regenerate",
            vec!["--server", "http://127.0.0.1:9", "--apply", "--state"],
        ),
        (
            "regenerate",
            vec![
                "--via",
                "queue",
                "--server",
                "http://127.0.0.1:9",
                "--apply",
                "--journal",
            ],
        ),
        ("regenerate", vec!["--report"]),
        ("refresh-metadata", vec!["--report"]),
        ("orphans", vec!["--output"]),
        ("explain-report", vec!["--output"]),
    ];
    for (target, root) in &targets {
        for (cmd, flags) in &commands {
            let mut args = vec![cmd.to_string()];
            args.extend(lib_flags.iter().cloned());
            args.extend(flags.iter().map(|s| s.to_string()));
            args.push(target.to_string_lossy().into_owned());
            let out = run_cli(&args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{cmd} {flags:?} {}: {stderr}{}",
                target.display(),
                String::from_utf8_lossy(&out.stdout)
            );
            let flag = flags.last().unwrap();
            assert!(
                stderr.contains("refusing to write")
                    && stderr.contains(flag)
                    && stderr.contains(&*root.to_string_lossy()),
                "{cmd} {flag}: the message names the flag and the root: {stderr}"
            );
            assert!(
                media_tree(&lib) == before,
                "{cmd} {flags:?} {} changed the media tree",
                target.display()
            );
        }
    }
    // A path outside every root is still accepted.
    let mut args = vec!["scan".to_string()];
    args.extend(lib_flags.iter().cloned());
    args.extend([
        "--output".to_string(),
        lib.dir.join("report.json").to_string_lossy().into_owned(),
    ]);
    let out = run_cli(&args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(lib.dir.join("report.json").exists());
    assert!(media_tree(&lib) == before);
}
