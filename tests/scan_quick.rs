//! The `quick` level: real healthy files pass, damaged ones are named with the check that failed.

mod common;

use common::*;
use immich_fixtures::Generation;
use immich_integrity::{scan, Fault, FileKind, Finding, Level};
use std::io::Write;

#[test]
fn quick_and_hash_levels_find_exactly_the_exists_faults_on_healthy_real_files() {
    for generation in [Generation::V1_112, Generation::V2_6] {
        let lib = generate(generation, 40, true);
        let mut opts = options(&lib.truth);
        for level in [Level::Quick, Level::Hash] {
            opts.level = level;
            let mut findings: Vec<Finding> = Vec::new();
            let summary = scan(&opts, &mut findings).unwrap();
            assert_same(&finding_keys(&findings), &truth_keys(&lib.truth.faults));
            assert!(
                summary.bytes_read > 0,
                "{generation}: {level:?} reads file bytes"
            );
        }
    }
}

#[test]
fn quick_level_names_truncation_and_size_mismatch() {
    let lib = generate(Generation::V2_6, 30, false);
    let rt = runtime();
    let db = lib.truth.db_url.clone();
    // Pick a JPEG preview, an encoded video and an image original from the database.
    let (preview, video, original_id, original_path): (String, String, String, String) = rt.block_on(async {
        let mut c = connect(&db).await;
        let preview: String = sqlx::query_scalar(
            "SELECT path FROM asset_file WHERE type = 'preview' AND path LIKE '%.jpeg' ORDER BY path LIMIT 1",
        )
        .fetch_one(&mut c)
        .await
        .unwrap();
        let video: String = sqlx::query_scalar(
            "SELECT path FROM asset_file WHERE type = 'encoded_video' ORDER BY path LIMIT 1",
        )
        .fetch_one(&mut c)
        .await
        .unwrap();
        let (id, path): (String, String) = sqlx::query_as(
            "SELECT id::text, \"originalPath\" FROM asset WHERE \"libraryId\" IS NULL AND type = 'IMAGE' \
             AND \"deletedAt\" IS NULL ORDER BY id LIMIT 1",
        )
        .fetch_one(&mut c)
        .await
        .unwrap();
        // Immich recorded a size one byte larger than the file.
        sqlx::query("UPDATE asset_exif SET \"fileSizeInByte\" = \"fileSizeInByte\" + 1 WHERE \"assetId\" = $1::uuid")
            .bind(&id)
            .execute(&mut c)
            .await
            .unwrap();
        (preview, video, id, path)
    });
    let host = |db_path: &str| lib.truth.map_path(db_path).unwrap();
    // A preview cut in half (a disk filled up mid-write).
    let p = host(&preview);
    let len = std::fs::metadata(&p).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    // An encoded video whose last 4 KiB became zeros (a preallocated, half-copied file).
    let v = host(&video);
    let vlen = std::fs::metadata(&v).unwrap().len();
    let mut vf = std::fs::OpenOptions::new().append(true).open(&v).unwrap();
    vf.write_all(&vec![0u8; 4096]).unwrap();
    drop(vf);
    assert!(vlen > 0);

    let mut opts = options(&lib.truth);
    opts.level = Level::Quick;
    let mut findings: Vec<Finding> = Vec::new();
    scan(&opts, &mut findings).unwrap();
    let got: Vec<(FileKind, Fault)> = findings
        .iter()
        .map(|f| (f.file.unwrap(), f.fault))
        .collect();
    assert_eq!(findings.len(), 3, "{findings:#?}");
    assert!(
        got.contains(&(FileKind::Preview, Fault::Truncated)),
        "{findings:#?}"
    );
    assert!(
        got.contains(&(FileKind::EncodedVideo, Fault::Corrupt))
            || got.contains(&(FileKind::EncodedVideo, Fault::Truncated)),
        "{findings:#?}"
    );
    let mismatch = findings
        .iter()
        .find(|f| f.fault == Fault::SizeMismatch)
        .expect("size mismatch");
    assert_eq!(mismatch.asset_id.as_deref(), Some(original_id.as_str()));
    assert_eq!(mismatch.db_path.as_deref(), Some(original_path.as_str()));
    let truncated = findings
        .iter()
        .find(|f| f.fault == Fault::Truncated)
        .unwrap();
    assert!(truncated.detail.contains("jpeg"), "{}", truncated.detail);

    // The exists level does not read contents, so it sees none of this.
    opts.level = Level::Exists;
    let mut findings: Vec<Finding> = Vec::new();
    scan(&opts, &mut findings).unwrap();
    assert!(findings.is_empty(), "{findings:#?}");
}

#[test]
fn hash_level_finds_a_changed_byte_and_skips_path_checksums() {
    let lib = generate(Generation::V2_6, 30, false);
    let rt = runtime();
    let db = lib.truth.db_url.clone();
    let (id, path, external): (String, String, i64) = rt.block_on(async {
        let mut c = connect(&db).await;
        let (id, path): (String, String) = sqlx::query_as(
            "SELECT id::text, \"originalPath\" FROM asset WHERE \"libraryId\" IS NULL AND type = 'IMAGE' \
             AND \"deletedAt\" IS NULL AND \"originalPath\" LIKE '%.jpg' ORDER BY id LIMIT 1",
        )
        .fetch_one(&mut c)
        .await
        .unwrap();
        let external: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM asset WHERE \"libraryId\" IS NOT NULL AND \"deletedAt\" IS NULL",
        )
        .fetch_one(&mut c)
        .await
        .unwrap();
        (id, path, external)
    });
    assert!(external > 0, "the fixture has external-library assets");
    // Flip one byte in the middle of the entropy-coded data: size and end marker unchanged.
    let host = lib.truth.map_path(&path).unwrap();
    let mut bytes = std::fs::read(&host).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&host, &bytes).unwrap();

    let mut opts = options(&lib.truth);
    opts.level = Level::Quick;
    let mut findings: Vec<Finding> = Vec::new();
    scan(&opts, &mut findings).unwrap();
    assert!(
        findings.is_empty(),
        "quick cannot see a flipped byte: {findings:#?}"
    );

    opts.level = Level::Hash;
    let mut findings: Vec<Finding> = Vec::new();
    let summary = scan(&opts, &mut findings).unwrap();
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(findings[0].fault, Fault::ChecksumMismatch);
    assert_eq!(findings[0].asset_id.as_deref(), Some(id.as_str()));
    assert_eq!(summary.checksums_skipped, external as u64);
}
