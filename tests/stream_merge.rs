//! The unfiltered asset stream (three id-ordered cursors merged by asset id) yields exactly the
//! rows of the join query filtered scans use: the same ids in the same order, every file with
//! its kind, path and edited flag, the same sizes, checksums and trash flags, on each schema
//! generation's tables, with assets missing their exif row or their `asset_file` rows, with
//! NULL sizes and with edited files; and a stream whose backend is terminated mid-way resumes
//! after the last delivered asset, delivering each exactly once.

mod common;

use common::{generate, runtime, Lib};
use immich_fixtures::Generation;
use immich_integrity::{AssetRow, Entity, Source, SourceOptions};
use std::collections::BTreeSet;

/// The generation's table names: asset, exif, asset_file (none before v1.113), and whether
/// `asset_file` has `isEdited`.
fn tables(g: Generation) -> (&'static str, &'static str, Option<&'static str>, bool) {
    match g {
        Generation::V1_112 => ("assets", "exif", None, false),
        Generation::V1_135 => ("assets", "exif", Some("asset_files"), false),
        Generation::V1_137 => ("asset", "asset_exif", Some("asset_file"), false),
        _ => ("asset", "asset_exif", Some("asset_file"), true),
    }
}

fn exec(lib: &Lib, sqls: &[String]) {
    runtime().block_on(async {
        use sqlx::Executor;
        let mut c = common::connect(&lib.truth.db_url).await;
        for sql in sqls {
            c.execute(sql.as_str())
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    });
}

/// Assets picked by their place in id order: `OFFSET o LIMIT n`.
fn some(asset: &str, o: usize, n: usize) -> String {
    format!("(SELECT id FROM \"{asset}\" ORDER BY id OFFSET {o} LIMIT {n})")
}

/// Arranges the cases the merge must get right on top of the generated rows.
fn arrange(lib: &Lib, g: Generation) {
    let (asset, exif, files, edited) = tables(g);
    let mut sqls = vec![
        // No exif row; a NULL size.
        format!(
            "DELETE FROM \"{exif}\" WHERE \"assetId\" IN {}",
            some(asset, 3, 4)
        ),
        format!(
            "UPDATE \"{exif}\" SET \"fileSizeInByte\" = NULL WHERE \"assetId\" IN {}",
            some(asset, 9, 2)
        ),
        // The first and the last asset without exif, so the cursors end unevenly.
        format!(
            "DELETE FROM \"{exif}\" WHERE \"assetId\" IN ((SELECT id FROM \"{asset}\" \
             ORDER BY id LIMIT 1) UNION (SELECT id FROM \"{asset}\" ORDER BY id DESC LIMIT 1))"
        ),
        // Trashed assets between live ones: their exif and file rows are skipped.
        format!(
            "UPDATE \"{asset}\" SET \"deletedAt\" = now() WHERE id IN {}",
            some(asset, 20, 5)
        ),
    ];
    if let Some(f) = files {
        sqls.push(format!(
            "DELETE FROM \"{f}\" WHERE \"assetId\" IN {}",
            some(asset, 12, 3)
        ));
        sqls.push(format!(
            "DELETE FROM \"{f}\" WHERE \"assetId\" = \
             (SELECT id FROM \"{asset}\" ORDER BY id DESC LIMIT 1)"
        ));
        if edited {
            // Edited versions next to the originals' derived files (the unique key is
            // (assetId, type, isEdited)).
            sqls.push(format!(
                "INSERT INTO \"{f}\" (\"assetId\", type, path, \"isEdited\") \
                 SELECT \"assetId\", type, path || '.edited', true FROM \"{f}\" \
                 WHERE NOT \"isEdited\" AND \"assetId\" IN {} ON CONFLICT DO NOTHING",
                some(asset, 30, 6)
            ));
        }
    }
    exec(lib, &sqls);
}

fn stream(lib: &Lib, join: bool, trashed: bool, batch: usize) -> Vec<AssetRow> {
    let mut o = SourceOptions::new(lib.truth.db_url.clone());
    o.join_stream = join;
    o.include_trashed = trashed;
    o.batch_size = batch;
    let mut rows = Vec::new();
    let source = Source::open(o).expect("the stream opens");
    for b in source {
        rows.extend(b.expect("a page"));
    }
    rows
}

fn assets(rows: &[AssetRow]) -> Vec<&AssetRow> {
    rows.iter().filter(|r| r.entity == Entity::Asset).collect()
}

fn assert_same_rows(g: Generation, join: &[AssetRow], merged: &[AssetRow]) {
    assert_eq!(join.len(), merged.len(), "{g}: row counts");
    for (j, m) in join.iter().zip(merged) {
        assert_eq!(j, m, "{g}: the merged row differs from the join's");
    }
}

#[test]
fn merged_stream_equals_the_join_on_each_generation() {
    for g in [
        Generation::V1_112,
        Generation::V1_135,
        Generation::V2_6,
        Generation::V3_2,
    ] {
        let lib = generate(g, 120, true);
        arrange(&lib, g);
        for trashed in [false, true] {
            // Pages of 7 rows: many page and fetch boundaries inside one asset's files.
            let join = stream(&lib, true, trashed, 7);
            let merged = stream(&lib, false, trashed, 7);
            assert_same_rows(g, &join, &merged);
            let a = assets(&merged);
            assert!(a.len() > 90, "{g}: {} assets", a.len());
            let ids: Vec<&str> = a.iter().map(|r| r.id.as_str()).collect();
            let mut sorted = ids.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(ids, sorted, "{g}: assets once each, in id order");
            assert_eq!(a.iter().any(|r| r.trashed), trashed, "{g}");
            // The arranged cases are there, so the equality above covered them.
            assert!(a.iter().any(|r| r.original_size.is_none()), "{g}");
            assert!(a.iter().any(|r| r.original_size.is_some()), "{g}");
            let most = a.iter().map(|r| r.files.len()).max().unwrap();
            assert!(most >= 3, "{g}: an asset with several files");
            if tables(g).3 {
                assert!(a.iter().any(|r| r.files.iter().any(|f| f.edited)), "{g}");
            }
        }
        // The page size the scans use.
        assert_same_rows(
            g,
            &stream(&lib, true, false, 2000),
            &stream(&lib, false, false, 2000),
        );
    }
}

/// Terminates the stream's backend (`application_name = immich-integrity`).
fn terminate(lib: &Lib) -> i64 {
    runtime().block_on(async {
        let mut c = common::connect(&lib.truth.db_url).await;
        sqlx::query_scalar(
            "WITH w AS MATERIALIZED (SELECT pid FROM pg_stat_activity \
             WHERE application_name = 'immich-integrity' AND datname = current_database()) \
             SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM w) t",
        )
        .fetch_one(&mut c)
        .await
        .unwrap()
    })
}

#[test]
fn merged_stream_resumes_after_a_terminated_backend() {
    for g in [Generation::V1_112, Generation::V3_2] {
        let lib = generate(g, 150, true);
        arrange(&lib, g);
        let join = stream(&lib, true, false, 2000);
        let mut o = SourceOptions::new(lib.truth.db_url.clone());
        o.batch_size = 5;
        o.prefetch = 1;
        let mut source = Source::open(o).expect("the stream opens");
        let mut rows = Vec::new();
        let mut killed = 0;
        let mut pages = 0;
        for b in source.by_ref() {
            rows.extend(b.expect("a page"));
            pages += 1;
            // Twice, in the middle of the assets: each time the producer is ahead by a page
            // or two, its cursors half-read.
            if (pages == 4 || pages == 12) && killed < 2 {
                assert_eq!(terminate(&lib), 1, "{g}: one backend streams");
                killed += 1;
            }
        }
        assert_eq!(killed, 2);
        assert_eq!(
            source.resumes.count(),
            2,
            "{g}: {:?}",
            source.resumes.causes()
        );
        let ids: Vec<&str> = assets(&rows).iter().map(|r| r.id.as_str()).collect();
        let unique: BTreeSet<&str> = ids.iter().copied().collect();
        assert_eq!(ids.len(), unique.len(), "{g}: each asset exactly once");
        assert_same_rows(g, &join, &rows);
    }
}

/// The rows and the unchecked parts of a stream.
fn stream_unchecked(lib: &Lib, join: bool) -> (Vec<AssetRow>, Vec<String>) {
    let mut o = SourceOptions::new(lib.truth.db_url.clone());
    o.join_stream = join;
    o.batch_size = 7;
    let mut source = Source::open(o).expect("the stream opens");
    let mut rows = Vec::new();
    for b in source.by_ref() {
        rows.extend(b.expect("a page"));
    }
    let parts = source.unchecked().into_iter().map(|u| u.part).collect();
    (rows, parts)
}

#[test]
fn a_drifted_asset_file_table_leaves_only_derived_files_unchecked_in_both_streams() {
    let g = Generation::V3_2;
    let lib = generate(g, 60, true);
    arrange(&lib, g);
    exec(
        &lib,
        &["ALTER TABLE asset_file DROP COLUMN \"isEdited\" CASCADE".to_string()],
    );
    let (join, join_parts) = stream_unchecked(&lib, true);
    let (merged, merged_parts) = stream_unchecked(&lib, false);
    assert_eq!(join_parts, vec!["asset_file".to_string()]);
    assert_eq!(merged_parts, join_parts);
    assert_same_rows(g, &join, &merged);
    let a = assets(&merged);
    assert!(a.len() > 40, "originals are still streamed");
    assert!(a.iter().all(|r| r
        .files
        .iter()
        .all(|f| f.kind == immich_integrity::FileKind::Original)));
}
