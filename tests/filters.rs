//! Scan filters (`--owner`, `--library`, `--kind`, `--include-trashed`, `--limit`, `--since`)
//! select exactly the matching subset of the ground truth, and the row count used for the
//! progress total agrees with what is streamed.
//!
//! `mount_missing` findings describe a root, not a file of one asset, so their `affected`
//! count depends on the filter: they are compared apart (present or not), every other finding
//! exactly.

mod common;

use common::*;
use immich_fixtures::{Generation, TruthFault};
use immich_integrity::{scan, FileKind, Finding, ScanOptions, Source};
use std::collections::BTreeSet;

/// Table names of a generation: (asset, user).
fn tables(g: Generation) -> (&'static str, &'static str) {
    match g {
        Generation::V1_112 | Generation::V1_135 => ("assets", "users"),
        _ => ("asset", "\"user\""),
    }
}

fn run(opts: &ScanOptions) -> Vec<Finding> {
    let mut findings: Vec<Finding> = Vec::new();
    scan(opts, &mut findings).expect("scan runs");
    findings
}

fn without_mounts(keys: BTreeSet<Key>) -> BTreeSet<Key> {
    keys.into_iter()
        .filter(|k| k.2 != "mount_missing")
        .collect()
}

/// Scans with `opts` and compares every non-mount finding with `truth`.
fn assert_subset(opts: &ScanOptions, truth: Vec<&TruthFault>, what: &str) -> Vec<Finding> {
    let findings = run(opts);
    let truth: Vec<TruthFault> = truth.into_iter().cloned().collect();
    let want = without_mounts(truth_keys(&truth));
    assert!(
        !want.is_empty(),
        "{what}: the fixture must have faults in this subset"
    );
    assert_same(&without_mounts(finding_keys(&findings)), &want);
    findings
}

fn is_person_or_user(t: &TruthFault) -> bool {
    matches!(
        t.file.as_deref(),
        Some("person_thumbnail") | Some("profile_image")
    )
}

fn query_ids(lib: &Lib, sql: &str) -> BTreeSet<String> {
    runtime().block_on(async {
        let mut c = connect(&lib.truth.db_url).await;
        sqlx::query_scalar::<_, String>(sql)
            .fetch_all(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .into_iter()
            .collect()
    })
}

fn owner_filter_selects_one_users_assets_persons_and_profile(g: Generation) {
    let lib = generate(g, 60, true);
    let truth = &lib.truth;
    let owners: BTreeSet<&str> = truth
        .faults
        .iter()
        .filter_map(|t| t.owner_id.as_deref())
        .collect();
    assert!(owners.len() >= 2, "faults spread over several owners");
    let (_, users) = tables(g);
    for owner in owners {
        let expected: Vec<&TruthFault> = truth
            .faults
            .iter()
            .filter(|t| t.owner_id.as_deref() == Some(owner) && t.fault != "mount_missing")
            .collect();
        if expected.is_empty() {
            continue;
        }
        let mut opts = options(truth);
        opts.source.owners = vec![owner.to_string()];
        let by_id = assert_subset(&opts, expected.clone(), "owner id");
        assert!(by_id
            .iter()
            .all(|f| f.owner_id.is_none() || f.owner_id.as_deref() == Some(owner)));

        // The same owner given by e-mail address (in other letter case) selects the same.
        let email = query_ids(
            &lib,
            &format!("SELECT email FROM {users} WHERE id = '{owner}'::uuid"),
        );
        let email = email.into_iter().next().unwrap().to_uppercase();
        opts.source.owners = vec![email];
        assert_subset(&opts, expected, "owner e-mail");
    }

    // Every owner at once is the unfiltered scan.
    let all: Vec<String> = query_ids(&lib, &format!("SELECT id::text FROM {users}"))
        .into_iter()
        .collect();
    let mut opts = options(truth);
    opts.source.owners = all;
    assert_subset(&opts, truth.faults.iter().collect(), "every owner");
}

#[test]
fn owner_filter_v2_6() {
    owner_filter_selects_one_users_assets_persons_and_profile(Generation::V2_6);
}

#[test]
fn owner_filter_v1_112_plural_tables() {
    owner_filter_selects_one_users_assets_persons_and_profile(Generation::V1_112);
}

#[test]
fn bad_owner_and_library_values_are_clear_errors() {
    let lib = generate(Generation::V2_6, 10, false);
    for (owners, library, want) in [
        (
            vec!["nobody@example.invalid"],
            None,
            "no Immich user has the e-mail address",
        ),
        (vec!["not-a-uuid"], None, "neither a user id"),
        (
            vec![],
            Some("library-7"),
            "no library is named \"library-7\"; libraries: \"Photos\"",
        ),
    ] {
        let mut opts = options(&lib.truth);
        opts.source.owners = owners.into_iter().map(String::from).collect();
        opts.source.library = library.map(String::from);
        let err = scan(&opts, &mut Vec::new()).expect_err("a bad filter is an error");
        assert!(err.to_string().contains(want), "{err}");
    }
}

#[test]
fn library_kind_trash_limit_and_since_filters() {
    let g = Generation::V2_6;
    let lib = generate(g, 60, true);
    let truth = &lib.truth;
    let (assets, users) = tables(g);

    // --library: only that external library's assets; persons and profile images are skipped.
    // The generated libraries' faults are mostly behind a missing mount, so two faulty
    // uploaded assets are moved into the first library as well (their paths do not change).
    let libs = query_ids(&lib, "SELECT id::text FROM library ORDER BY id");
    let uploaded = query_ids(
        &lib,
        &format!("SELECT id::text FROM {assets} WHERE \"libraryId\" IS NULL"),
    );
    let moved_in: Vec<String> = truth
        .faults
        .iter()
        .filter(|t| t.file.as_deref() == Some("original"))
        .filter_map(|t| t.asset_id.clone())
        .filter(|a| uploaded.contains(a))
        .take(2)
        .collect();
    assert_eq!(moved_in.len(), 2);
    runtime().block_on(async {
        let mut c = connect(&truth.db_url).await;
        sqlx::query(&format!(
            "UPDATE {assets} SET \"libraryId\" = $1::uuid WHERE id = ANY($2::uuid[])"
        ))
        .bind(libs.iter().next().unwrap())
        .bind(&moved_in)
        .execute(&mut c)
        .await
        .unwrap();
    });
    let mut tested = 0;
    for l in &libs {
        let members = query_ids(
            &lib,
            &format!("SELECT id::text FROM {assets} WHERE \"libraryId\" = '{l}'::uuid"),
        );
        let expected: Vec<&TruthFault> = truth
            .faults
            .iter()
            .filter(|t| t.asset_id.as_ref().is_some_and(|a| members.contains(a)))
            .filter(|t| !is_person_or_user(t))
            .collect();
        if expected.is_empty() {
            continue;
        }
        let mut opts = options(truth);
        opts.source.library = Some(l.clone());
        let found = assert_subset(&opts, expected, "library");
        assert!(found.iter().all(|f| !matches!(
            f.file,
            Some(FileKind::PersonThumbnail | FileKind::ProfileImage)
        )));
        tested += 1;
    }
    assert!(tested > 0, "some external library has a fault");

    // --kind: only those files are checked and reported.
    for kinds in [
        vec![FileKind::Original],
        vec![FileKind::Preview, FileKind::Thumbnail],
        vec![FileKind::PersonThumbnail, FileKind::ProfileImage],
    ] {
        let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
        let expected: Vec<&TruthFault> = truth
            .faults
            .iter()
            .filter(|t| t.file.as_deref().is_some_and(|f| names.contains(&f)))
            .collect();
        let mut opts = options(truth);
        opts.source.kinds = kinds.clone();
        let found = assert_subset(&opts, expected, "kind");
        assert!(
            found
                .iter()
                .all(|f| f.file.is_none_or(|k| kinds.contains(&k))),
            "{kinds:?}: {found:#?}"
        );
    }

    // --include-trashed: the trashed assets' faults join in.
    let mut opts = options(truth);
    opts.source.include_trashed = true;
    assert!(!truth.trashed_faults.is_empty());
    assert_subset(
        &opts,
        truth.faults.iter().chain(&truth.trashed_faults).collect(),
        "include trashed",
    );

    // --limit N: the first N live assets in id order; persons and users unaffected.
    let n = 25;
    let first = query_ids(
        &lib,
        &format!("SELECT id::text FROM {assets} WHERE \"deletedAt\" IS NULL ORDER BY id LIMIT {n}"),
    );
    let expected: Vec<&TruthFault> = truth
        .faults
        .iter()
        .filter(|t| is_person_or_user(t) || t.asset_id.as_ref().is_some_and(|a| first.contains(a)))
        .collect();
    let mut opts = options(truth);
    opts.source.limit = Some(n);
    opts.source.batch_size = 7; // the limit falls inside a page
    assert_subset(&opts, expected, "limit");

    // --since: rows created or updated after the date. Age everything, then touch a few.
    let faulty: Vec<String> = truth
        .faults
        .iter()
        .filter(|t| !is_person_or_user(t) && t.fault != "mount_missing")
        .filter_map(|t| t.asset_id.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert!(faulty.len() >= 4);
    let created: Vec<&String> = faulty.iter().step_by(3).collect();
    let updated: Vec<&String> = faulty.iter().skip(1).step_by(3).collect();
    let list = |ids: &[&String]| {
        ids.iter()
            .map(|i| format!("'{i}'::uuid"))
            .collect::<Vec<_>>()
            .join(",")
    };
    runtime().block_on(async {
        let mut c = connect(&truth.db_url).await;
        for sql in [
            // Immich's updated_at() trigger would stamp now() over the dates set here.
            "SET session_replication_role = replica".to_string(),
            format!(
                "UPDATE {assets} SET \"createdAt\" = '2020-01-01', \"updatedAt\" = '2020-01-01'"
            ),
            "UPDATE person SET \"createdAt\" = '2020-01-01', \"updatedAt\" = '2020-01-01'".into(),
            format!(
                "UPDATE {users} SET \"createdAt\" = '2020-01-01', \"updatedAt\" = '2020-01-01'"
            ),
            format!(
                "UPDATE {assets} SET \"createdAt\" = '2024-06-01T12:00:00Z' WHERE id IN ({})",
                list(&created)
            ),
            format!(
                "UPDATE {assets} SET \"updatedAt\" = '2024-06-01T12:00:00Z' WHERE id IN ({})",
                list(&updated)
            ),
        ] {
            sqlx::query(&sql).execute(&mut c).await.unwrap();
        }
    });
    let touched: BTreeSet<&String> = created.iter().chain(&updated).copied().collect();
    let expected: Vec<&TruthFault> = truth
        .faults
        .iter()
        .filter(|t| t.asset_id.as_ref().is_some_and(|a| touched.contains(a)))
        .collect();
    let mut opts = options(truth);
    opts.source.since = Some("2024-01-01T00:00:00Z".parse().unwrap());
    assert_subset(&opts, expected, "since");
    // After the newest change, nothing is selected.
    opts.source.since = Some("2025-01-01T00:00:00Z".parse().unwrap());
    assert!(without_mounts(finding_keys(&run(&opts))).is_empty());
}

#[test]
fn counted_total_equals_the_rows_streamed() {
    let lib = generate(Generation::V1_137, 40, true);
    let owner = lib
        .truth
        .faults
        .iter()
        .find_map(|t| t.owner_id.clone())
        .unwrap();
    let mut with_owner = options(&lib.truth).source;
    with_owner.owners = vec![owner];
    let mut with_kind = options(&lib.truth).source;
    with_kind.kinds = vec![FileKind::ProfileImage];
    let mut with_limit = options(&lib.truth).source;
    with_limit.limit = Some(11);
    let mut sums = Vec::new();
    for mut src in [
        options(&lib.truth).source,
        with_owner,
        with_kind,
        with_limit,
    ] {
        src.count_total = true;
        src.batch_size = 5;
        let source = Source::open(src).expect("source opens");
        let total = source.info.total_rows.expect("counted");
        let streamed: usize = source.map(|b| b.expect("page").len()).sum();
        assert_eq!(total, streamed as u64);
        sums.push(total);
    }
    // The filters really narrowed the stream.
    assert!(
        sums[1] < sums[0] && sums[2] <= 3 && sums[3] < sums[0],
        "{sums:?}"
    );
}

#[test]
fn cli_flags_reach_the_library_filters() {
    let g = Generation::V2_6;
    let lib = generate(g, 40, true);
    let truth = &lib.truth;
    let (_, users) = tables(g);
    let owner = truth
        .faults
        .iter()
        .filter(|t| t.file.as_deref() == Some("original"))
        .find_map(|t| t.owner_id.clone())
        .expect("an original fault with an owner");
    let email = query_ids(
        &lib,
        &format!("SELECT email FROM {users} WHERE id = '{owner}'::uuid"),
    )
    .into_iter()
    .next()
    .unwrap();
    // Comma list and repeated flag forms; the same owner twice is harmless.
    let mut args = vec!["scan".to_string()];
    args.extend(library_flags(&lib));
    args.extend(
        [
            "--as-user",
            &truth.as_user,
            "--owner",
            &format!("{email},{owner}"),
            "--kind",
            "original,preview",
            "--kind",
            "thumbnail",
            "--since",
            "2000-01-01",
            "--format",
            "jsonl",
        ]
        .map(String::from),
    );
    let out = run_cli(&args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (findings, _) = parse_jsonl(&out.stdout);
    let kinds = ["original", "preview", "thumbnail"];
    let expected: Vec<TruthFault> = truth
        .faults
        .iter()
        .filter(|t| t.owner_id.as_deref() == Some(owner.as_str()))
        .filter(|t| t.file.as_deref().is_some_and(|f| kinds.contains(&f)))
        .cloned()
        .collect();
    assert_same(
        &without_mounts(finding_keys(&findings)),
        &without_mounts(truth_keys(&expected)),
    );

    // Bad values are exit code 2 with a message, never a panic.
    for (flag, value, want) in [
        ("--since", "yesterday", "--since wants a date"),
        ("--kind", "raw", "unknown file kind"),
        ("--owner", "nobody@example.invalid", "no Immich user"),
        ("--limit", "many", "invalid value"),
    ] {
        let mut a = vec!["scan".to_string()];
        a.extend(library_flags(&lib));
        a.extend([flag.to_string(), value.to_string()]);
        let out = std::process::Command::new(binary())
            .args(&a)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {err}");
        assert!(err.contains(want), "{flag} {value}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}
