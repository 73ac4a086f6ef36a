//! Odd and hostile data in rows and on disk: each gets the right fault, none stops the scan,
//! none is followed outside the root, and a FIFO is never opened (the scan would hang).

mod common;

use common::*;
use immich_fixtures::Generation;
use immich_integrity::{scan, Fault, Finding, Level};
use std::collections::BTreeMap;

#[test]
fn odd_paths_get_the_right_fault_and_never_block() {
    let lib = generate(Generation::V2_6, 30, false);
    let media = lib.truth.media_root.clone();
    let owner_dir = media.join("upload/odd");
    std::fs::create_dir_all(&owner_dir).unwrap();
    let fifo = owner_dir.join("pipe.jpg");
    mkfifo(&fifo);
    std::os::unix::fs::symlink("loop.jpg", owner_dir.join("loop.jpg")).unwrap();
    std::fs::write(owner_dir.join("new\nline.jpg"), b"\xff\xd8\xff").unwrap();
    let long_name = "x".repeat(300);

    let cases: Vec<(&str, String, Option<Fault>)> = vec![
        (
            "fifo",
            "/data/upload/odd/pipe.jpg".into(),
            Some(Fault::NotAFile),
        ),
        (
            "loop",
            "/data/upload/odd/loop.jpg".into(),
            Some(Fault::NotAFile),
        ),
        ("newline", "/data/upload/odd/new\nline.jpg".into(), None),
        ("empty", String::new(), Some(Fault::Missing)),
        ("relative", "etc/passwd".into(), Some(Fault::OutsideRoot)),
        (
            "elsewhere",
            "/var/lib/secret.jpg".into(),
            Some(Fault::OutsideRoot),
        ),
        (
            "too long",
            format!("/data/upload/odd/{long_name}.jpg"),
            Some(Fault::Missing),
        ),
        (
            "quote",
            "/data/upload/odd/it's; DROP TABLE asset;--.jpg".into(),
            Some(Fault::Missing),
        ),
    ];
    let rt = runtime();
    let ids: Vec<String> = rt.block_on(async {
        let mut c = connect(&lib.truth.db_url).await;
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id::text FROM asset WHERE \"libraryId\" IS NULL AND \"deletedAt\" IS NULL \
             AND type = 'IMAGE' ORDER BY id LIMIT $1",
        )
        .bind(cases.len() as i64)
        .fetch_all(&mut c)
        .await
        .unwrap();
        for (id, (_, path, _)) in ids.iter().zip(&cases) {
            sqlx::query("UPDATE asset SET \"originalPath\" = $1 WHERE id = $2::uuid")
                .bind(path)
                .bind(id)
                .execute(&mut c)
                .await
                .unwrap();
        }
        ids
    });
    assert_eq!(ids.len(), cases.len());
    // The newline file is a real (if tiny) file: at `exists` it is healthy.
    let mut opts = options(&lib.truth);
    opts.level = Level::Exists;
    let mut findings: Vec<Finding> = Vec::new();
    let summary = scan(&opts, &mut findings).expect("odd rows never stop the scan");
    assert_eq!(summary.files_checked, lib.truth.files_referenced);
    let by_id: BTreeMap<&str, &Finding> = findings
        .iter()
        .map(|f| (f.asset_id.as_deref().unwrap(), f))
        .collect();
    for (id, (what, _, want)) in ids.iter().zip(&cases) {
        let got = by_id.get(id.as_str()).map(|f| f.fault);
        assert_eq!(got, *want, "{what}: {:?}", by_id.get(id.as_str()));
    }
    assert_eq!(
        findings.len(),
        cases.iter().filter(|c| c.2.is_some()).count()
    );
    // At `quick` the FIFO is still judged from fstat, never opened: the scan finishes.
    opts.level = Level::Quick;
    let mut findings: Vec<Finding> = Vec::new();
    scan(&opts, &mut findings).unwrap();
    assert!(findings
        .iter()
        .any(|f| f.fault == Fault::NotAFile && f.detail.contains("FIFO")));
}

fn mkfifo(path: &std::path::Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
}
