use super::*;
use crate::db::schema::Schema;
use std::collections::HashMap;
use std::collections::HashSet;

fn schema(asset: &str, cols: &[&str], files: Option<(&str, &[&str])>) -> Schema {
    let mut m: HashMap<String, HashSet<String>> = HashMap::new();
    let mut ac: HashSet<String> = ["id", "ownerId", "originalPath"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    ac.extend(cols.iter().map(|s| s.to_string()));
    m.insert(asset.into(), ac);
    m.insert(
        if asset == "asset" { "user" } else { "users" }.into(),
        HashSet::new(),
    );
    if let Some((t, c)) = files {
        m.insert(t.into(), c.iter().map(|s| s.to_string()).collect());
    }
    Schema::from_columns(&m).unwrap()
}

#[test]
fn ledger_and_schema_must_agree() {
    let v26 = schema("asset", &[], Some(("asset_file", &["path", "isEdited"])));
    let ok = MigrationFacts {
        kysely: Some((120, Some("1773242919341-EncodedVideoAssetFiles".into()))),
        typeorm: Some((300, Some(LAST_TYPEORM.into()), Some(1744910873956))),
        ..Default::default()
    };
    assert_eq!(judge_migrations(&ok, &v26).status, Status::Ok);
    // The v2.6 tables with a ledger that stops at v1.137: a mixed restore.
    let behind = MigrationFacts {
        kysely: Some((40, Some("1753000000000-Something".into()))),
        ..Default::default()
    };
    let c = judge_migrations(&behind, &v26);
    assert_eq!(c.status, Status::Fail);
    assert!(c.message.contains("SidecarInAssetFile"), "{}", c.message);
    // v1.135 tables (plural) but StandardizeNames recorded: it failed or was rolled back.
    let v135 = schema(
        "assets",
        &["encodedVideoPath", "sidecarPath"],
        Some(("asset_files", &["path"])),
    );
    let c = judge_migrations(&ok, &v135);
    assert_eq!(c.status, Status::Fail);
    assert!(c.message.contains("StandardizeNames"), "{}", c.message);
    // Jumping from an old TypeORM release straight to kysely.
    let jump = MigrationFacts {
        typeorm: Some((
            200,
            Some("AddAssetFilesTable1724101822106".into()),
            Some(1724101822106),
        )),
        kysely: Some((0, None)),
        ..Default::default()
    };
    let c = judge_migrations(&jump, &v135);
    assert_eq!(c.status, Status::Fail);
    assert!(c.message.contains("Invalid upgrade path"));
    let locked = MigrationFacts {
        locks_held: 1,
        ..ok
    };
    assert_eq!(judge_migrations(&locked, &v26).status, Status::Warn);
}

#[test]
fn roots_of_the_same_family() {
    assert!(same_root("upload", "/usr/src/app/upload/"));
    assert!(!same_root("/data", "/usr/src/app/upload"));
}

#[test]
fn percentages_and_sizes() {
    assert_eq!(percent(5, 100), 5.0);
    assert_eq!(percent(0, 0), 100.0);
    assert_eq!(human(1536), "1.5 KiB");
}
