//! `restore-test`: a real `pg_dumpall` dump of a generated library and a media copy with
//! planted differences (originals missing from the copy, a missing thumbnail, a bit-flipped
//! original, files added after the dump, a truncated dump). Every difference must be reported
//! exactly, with and without a PostgreSQL for the dump, on v2.6 and v3.2, and the live
//! database must be left as it was.

mod common;

use common::*;
use immich_fixtures::backup::{make_backup_pair, BackupPair};
use immich_fixtures::Generation;
use immich_integrity::restore::{run, Backend, Ending, RestoreOptions, RestoreReport};
use immich_integrity::{Level, ScanOptions};
use std::collections::BTreeSet;

fn pair(lib: &Lib) -> BackupPair {
    runtime()
        .block_on(make_backup_pair(&lib.fx))
        .unwrap_or_else(|e| panic!("backup pair (needs pg_dumpall): {e:#}"))
}

fn admin_url() -> String {
    immich_fixtures::base_pg_url()
}

fn restore_options(lib: &Lib, pair: &BackupPair, dump: Option<&std::path::Path>) -> RestoreOptions {
    let mut scan: ScanOptions = options(&lib.truth);
    scan.source.db_url = String::new();
    scan.media_root = Some(pair.media.clone());
    scan.level = Level::Hash;
    RestoreOptions {
        scan,
        dump: dump.map(|d| d.to_path_buf()),
        backend: Backend::Stream,
        temp_dir: None,
    }
}

fn ids(r: &RestoreReport, category: &str) -> BTreeSet<String> {
    r.findings
        .iter()
        .filter(|f| f.category == category)
        .filter_map(|f| f.finding.asset_id.clone())
        .collect()
}

fn assert_pair_reported(r: &RestoreReport, lib: &Lib, pair: &BackupPair, backend: &str) {
    let t = &pair.truth;
    let s = &r.summary;
    assert_eq!(s.backend, backend);
    assert_eq!(s.dump.ending, Ending::Complete, "{backend}");
    assert_eq!(s.dump.database, lib.db_name);
    assert_eq!(s.dump.immich_version, t.immich_version, "{backend}");
    assert_eq!(s.dump.name.server_version, t.immich_version);
    assert_eq!(s.dump.time, Some(pair.dump_time));
    assert!(s.scan.unchecked.is_empty(), "{:?}", s.scan.unchecked);
    let set = |v: &[String]| v.iter().cloned().collect::<BTreeSet<_>>();
    assert_eq!(
        ids(r, "missing_original"),
        set(&t.missing_originals),
        "{backend}"
    );
    for f in r
        .findings
        .iter()
        .filter(|f| f.category == "missing_original")
    {
        assert_eq!(
            f.created_before_dump_s,
            Some(t.missing_created_before_dump_s),
            "{backend}: {f:?}"
        );
    }
    let regen: BTreeSet<(String, String)> = r
        .findings
        .iter()
        .filter(|f| f.category == "regenerate")
        .map(|f| {
            (
                f.finding.asset_id.clone().unwrap_or_default(),
                f.finding
                    .file
                    .map(|k| k.as_str().to_string())
                    .unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        regen,
        t.missing_derivatives.iter().cloned().collect(),
        "{backend}"
    );
    assert_eq!(
        ids(r, "checksum_mismatch"),
        set(&t.bit_flipped),
        "{backend}"
    );
    let other: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.category == "other")
        .collect();
    assert!(other.is_empty(), "{backend}: unexpected {other:?}");
    let untracked: BTreeSet<String> = r.untracked.iter().map(|u| u.rel.clone()).collect();
    assert_eq!(untracked, set(&t.added_after_dump), "{backend}");
    assert!(r.untracked.iter().all(|u| u.after_dump == Some(true)));
    assert_eq!(s.untracked_after_dump, t.added_after_dump.len() as u64);
    assert!(!s.is_clean() && !s.is_partial());
}

fn pair_reported_exactly(generation: Generation) -> RestoreReport {
    let lib = generate(generation, 40, false);
    let pair = pair(&lib);
    let before = dump(&lib);
    // Stream: the dump found as the newest backup in the copy's backups/ folder.
    let opts = restore_options(&lib, &pair, None);
    let r = run(&opts).expect("stream restore test");
    assert_eq!(r.summary.dump.path, pair.dump);
    assert_pair_reported(&r, &lib, &pair, "stream");
    // PostgreSQL: the same dump in a scratch database on the test server.
    let mut opts = restore_options(&lib, &pair, Some(&pair.dump));
    opts.backend = Backend::Postgres(admin_url());
    let r = run(&opts).expect("postgres restore test");
    assert_pair_reported(&r, &lib, &pair, "postgres");
    assert_eq!(dump(&lib), before, "the live database changed");
    r
}

/// The dump with what a real Immich dump also holds: the `vector` extension (not installed
/// on the test server), a table that needs it, its COPY data (one line of which is SQL that
/// would drop the asset table if it were ever run) and an index on it, in the Immich section.
fn with_vector_tables(pair: &BackupPair, asset_id: &str) -> std::path::PathBuf {
    use std::io::{Read, Write};
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(std::fs::File::open(&pair.dump).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    let extra = format!(
        "CREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA public;\n\
         CREATE TABLE public.smart_search (\n    \"assetId\" uuid NOT NULL,\n    \
         embedding public.vector(3) NOT NULL\n);\n\
         COPY public.smart_search (\"assetId\", embedding) FROM stdin;\n\
         {asset_id}\t[0.1,0.2,0.3]\n\
         DROP TABLE public.asset CASCADE;\n\
         \\.\n\
         CREATE INDEX clip_index ON public.smart_search USING hnsw (embedding vector_cosine_ops);\n"
    );
    let at = text
        .find("--\n-- PostgreSQL database dump complete")
        .unwrap();
    text.insert_str(at, &extra);
    // Same name (so the same time and versions), outside the media backup.
    let dir = pair
        .truncated_dump
        .parent()
        .unwrap()
        .with_file_name("vector");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(pair.dump.file_name().unwrap());
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&out).unwrap(),
        flate2::Compression::fast(),
    );
    gz.write_all(text.as_bytes()).unwrap();
    gz.finish().unwrap();
    out
}

#[test]
fn pair_reported_exactly_v2_6() {
    pair_reported_exactly(Generation::V2_6);
}

/// Without Immich's vector extensions the scratch database skips what needs them (and never
/// runs a data line as SQL); the stream backend ignores those tables. Both still report the
/// planted differences exactly.
#[test]
fn vector_tables_are_skipped_without_the_extension() {
    let lib = generate(Generation::V3_2, 40, false);
    let pair = pair(&lib);
    let dump_file = with_vector_tables(&pair, &pair.truth.missing_originals[0]);
    for backend in [Backend::Postgres(admin_url()), Backend::Stream] {
        let mut opts = restore_options(&lib, &pair, Some(&dump_file));
        opts.backend = backend.clone();
        let r = run(&opts).expect("restore test");
        let name = if backend == Backend::Stream {
            "stream"
        } else {
            "postgres"
        };
        if name == "postgres" {
            let skipped: Vec<&str> = r
                .summary
                .skipped_statements
                .iter()
                .map(|s| s.0.as_str())
                .collect();
            for s in [
                "CREATE TABLE public.smart_search",
                "COPY public.smart_search",
                "CREATE INDEX clip_index",
            ] {
                assert!(
                    skipped.iter().any(|x| x.starts_with(s)),
                    "{s} not in {skipped:?}"
                );
            }
            assert!(r.summary.left_out_statements > 0);
        }
        assert_pair_reported(&r, &lib, &pair, name);
    }
}

#[test]
fn pair_reported_exactly_v3_2() {
    pair_reported_exactly(Generation::V3_2);
}

/// A dump cut short is reported as such by both backends, never as a clean result, and no
/// untracked files are listed (the rows after the cut would make their files look untracked).
#[test]
fn truncated_dump_is_incomplete_never_clean() {
    let lib = generate(Generation::V3_2, 40, false);
    let pair = pair(&lib);
    for backend in [Backend::Stream, Backend::Postgres(admin_url())] {
        let mut opts = restore_options(&lib, &pair, Some(&pair.truncated_dump));
        opts.backend = backend.clone();
        let r = run(&opts).expect("a truncated dump is still read");
        let s = &r.summary;
        assert!(
            matches!(&s.dump.ending, Ending::Truncated(why) if why.contains("end")),
            "{backend:?}: {:?}",
            s.dump.ending
        );
        assert!(s.is_partial() && !s.is_clean(), "{backend:?}");
        assert!(s.scan.unchecked.iter().any(|u| u.part == "dump"));
        assert!(s.untracked_not_listed.is_some() && r.untracked.is_empty());
    }
    // The CLI: exit 3, and the report says why.
    let out = run_cli(&[
        "restore-test".into(),
        "--dump".into(),
        pair.truncated_dump.to_string_lossy().into_owned(),
        "--media".into(),
        pair.media.to_string_lossy().into_owned(),
        "--format".into(),
        "json".into(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["summary"]["dump"]["ending"]["status"], "truncated");
}

/// The CLI finds the newest backup itself, reports the pair as JSON and exits 1; the table
/// names the gap and the version the dump needs.
#[test]
fn cli_reports_the_pair() {
    let lib = generate(Generation::V3_2, 40, false);
    let pair = pair(&lib);
    let mut args = vec![
        "restore-test".to_string(),
        "--media".into(),
        pair.media.to_string_lossy().into_owned(),
        "--level".into(),
        "hash".into(),
    ];
    for (c, h) in &lib.truth.maps {
        if c != &lib.truth.container_root {
            args.push("--map".into());
            args.push(format!("{c}={}", h.display()));
        }
    }
    let mut json = args.clone();
    json.extend(["--format".to_string(), "json".into()]);
    let out = run_cli(&json);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &v["summary"];
    assert_eq!(s["missing_originals"], 3);
    assert_eq!(s["regenerate"], 1);
    assert_eq!(s["checksum_mismatches"], 1);
    assert_eq!(s["untracked"], 2);
    assert_eq!(s["dump"]["immich_version"], "3.2.2");
    let out = run_cli(&args);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("needs Immich 3.2.2"), "{table}");
    assert!(table.contains("created 300 s before the dump"), "{table}");
}
