//! Immich v3.2 persons (no `person.id`: a person is one owner's view of a person group): two
//! owners' persons of the same group, both with a stale media prefix, are reported with the
//! group id and each owner, relinked one row each (a key without the owner would hit both),
//! and undone exactly.

mod common;

use common::*;
use immich_fixtures::Generation;
use immich_integrity::{relink, scan, Fault, FileKind, Finding};

#[test]
fn v3_2_persons_are_relinked_and_undone_by_owner_and_group() {
    let lib = generate(Generation::V3_2, 30, false);
    let rt = runtime();
    let db = lib.truth.db_url.clone();
    // One person, and a second owner's person in the same group, both stored under the media
    // location a v1.136 install used: the files are at /data, so both are `moved`.
    let (group, owner, other, path): (String, String, String, String) = rt.block_on(async {
        let mut c = connect(&db).await;
        let (group, owner, path): (String, String, String) = sqlx::query_as(
            "SELECT \"personGroupId\"::text, \"ownerId\"::text, \"thumbnailPath\" FROM person \
             WHERE \"thumbnailPath\" <> '' ORDER BY 1, 2 LIMIT 1",
        )
        .fetch_one(&mut c)
        .await
        .unwrap();
        let other: String = sqlx::query_scalar(
            "SELECT id::text FROM \"user\" WHERE id <> $1::uuid ORDER BY id LIMIT 1",
        )
        .bind(&owner)
        .fetch_one(&mut c)
        .await
        .unwrap();
        let stale = path.replacen("/data/", "/usr/src/app/upload/", 1);
        sqlx::query(
            "INSERT INTO person (\"ownerId\", \"personGroupId\", \"thumbnailPath\") \
             VALUES ($1::uuid, $2::uuid, $3)",
        )
        .bind(&other)
        .bind(&group)
        .bind(&stale)
        .execute(&mut c)
        .await
        .unwrap();
        sqlx::query(
            "UPDATE person SET \"thumbnailPath\" = $3 \
             WHERE \"personGroupId\" = $1::uuid AND \"ownerId\" = $2::uuid",
        )
        .bind(&group)
        .bind(&owner)
        .bind(&stale)
        .execute(&mut c)
        .await
        .unwrap();
        (group, owner, other, path)
    });
    let before = dump(&lib);

    let mut findings: Vec<Finding> = Vec::new();
    let summary = scan(&options(&lib.truth), &mut findings).unwrap();
    let mut persons: Vec<(String, String, Fault, String)> = findings
        .iter()
        .filter(|f| f.file == Some(FileKind::PersonThumbnail))
        .map(|f| {
            (
                f.asset_id.clone().unwrap(),
                f.owner_id.clone().unwrap(),
                f.fault,
                f.relink_to.clone().unwrap_or_default(),
            )
        })
        .collect();
    persons.sort();
    let mut want = vec![
        (group.clone(), owner.clone(), Fault::Moved, path.clone()),
        (group.clone(), other.clone(), Fault::Moved, path.clone()),
    ];
    want.sort();
    assert_eq!(persons, want, "{findings:#?}");

    let steps = relink::plan(&findings, &summary.roots);
    let person_steps = steps
        .iter()
        .filter(|s| s.file == FileKind::PersonThumbnail)
        .count();
    assert_eq!(person_steps, 2);
    let journal = lib.dir.join("persons.journal");
    let report = relink::apply(&lib.truth.db_url, &steps, &journal, 10).unwrap();
    assert_eq!(
        report.skipped,
        vec![],
        "every step applies to exactly one row"
    );
    assert_eq!(report.applied.len(), steps.len());
    let rows: Vec<(String, String)> = rt.block_on(async {
        let mut c = connect(&db).await;
        sqlx::query_as(
            "SELECT \"ownerId\"::text, \"thumbnailPath\" FROM person \
             WHERE \"personGroupId\" = $1::uuid ORDER BY 1",
        )
        .bind(&group)
        .fetch_all(&mut c)
        .await
        .unwrap()
    });
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|(_, p)| p == &path), "{rows:?}");

    let mut after: Vec<Finding> = Vec::new();
    scan(&options(&lib.truth), &mut after).unwrap();
    assert!(after.is_empty(), "{after:#?}");

    assert_eq!(
        relink::undo(&lib.truth.db_url, &journal).unwrap(),
        steps.len() as u64
    );
    assert_eq!(dump(&lib), before, "undo restores both rows exactly");
}
