//! Which Immich release ran the migrations, and whether one is running now.

use super::*;
use crate::db::schema::Schema;
use sqlx::PgConnection;

/// A migration whose effect on the tables can be seen: `applied` says whether it is.
pub(super) struct Landmark {
    pub(super) timestamp: i64,
    pub(super) name: &'static str,
    pub(super) applied: fn(&Schema) -> bool,
}

pub(super) const LANDMARKS: &[Landmark] = &[
    Landmark {
        timestamp: 1711257900274,
        name: "RenameWebpJpegPaths",
        applied: |s| s.preview_columns != Some(("resizePath", "webpPath")),
    },
    Landmark {
        timestamp: 1724101822106,
        name: "AddAssetFilesTable",
        applied: |s| s.asset_file_table.is_some(),
    },
    Landmark {
        timestamp: 1752267649968,
        name: "StandardizeNames",
        applied: |s| s.asset_table == "asset",
    },
    Landmark {
        timestamp: 1764698859174,
        name: "SidecarInAssetFile",
        applied: |s| !s.has_sidecar_column,
    },
    Landmark {
        timestamp: 1768828334807,
        name: "AddIsEditedToAssetFile",
        applied: |s| s.has_asset_file_is_edited,
    },
    Landmark {
        timestamp: 1773242919341,
        name: "EncodedVideoAssetFiles",
        applied: |s| !s.has_encoded_video_column,
    },
];

/// The last TypeORM migration; Immich's first kysely migration refuses any other.
pub(super) const LAST_TYPEORM: &str = "AddMissingIndex1744910873956";

/// `enum DatabaseLock.Migrations` in Immich's server.
pub(super) const IMMICH_MIGRATION_LOCK: i64 = 200;

/// Kysely's `PostgresAdapter` migration lock id.
pub(super) const KYSELY_MIGRATION_LOCK: i64 = 3853314791062309107;

pub(super) async fn migrations_check(conn: &mut PgConnection, schema: &Schema) -> Check {
    const NAME: &str = "migrations";
    match migrations_facts(conn).await {
        Ok(f) => judge_migrations(&f, schema),
        Err(e) => Check::warn(
            NAME,
            format!("cannot read the migration tables: {e}"),
            "run the doctor as the database owner (DB_USERNAME)",
        ),
    }
}

/// What the migration ledgers hold.
#[derive(Debug, Default)]
pub(super) struct MigrationFacts {
    /// TypeORM `migrations`: (rows, newest name, newest timestamp).
    pub(super) typeorm: Option<(i64, Option<String>, Option<i64>)>,
    /// `kysely_migrations`: (rows, newest name).
    pub(super) kysely: Option<(i64, Option<String>)>,
    pub(super) kysely_lock_flag: bool,
    /// Advisory migration locks held by other sessions.
    pub(super) locks_held: i64,
}

pub(super) async fn migrations_facts(
    conn: &mut PgConnection,
) -> Result<MigrationFacts, sqlx::Error> {
    let (has_typeorm, has_kysely, has_lock): (bool, bool, bool) = sqlx::query_as(
        "SELECT to_regclass('public.migrations') IS NOT NULL, \
                to_regclass('public.kysely_migrations') IS NOT NULL, \
                to_regclass('public.kysely_migrations_lock') IS NOT NULL",
    )
    .fetch_one(&mut *conn)
    .await?;
    let mut f = MigrationFacts::default();
    if has_typeorm {
        f.typeorm = Some(
            sqlx::query_as(
                "SELECT (SELECT count(*) FROM migrations), \
                        (SELECT name::text FROM migrations ORDER BY timestamp DESC LIMIT 1), \
                        (SELECT max(timestamp)::int8 FROM migrations)",
            )
            .fetch_one(&mut *conn)
            .await?,
        );
    }
    if has_kysely {
        f.kysely = Some(
            sqlx::query_as(
                "SELECT (SELECT count(*) FROM kysely_migrations), \
                        (SELECT name::text FROM kysely_migrations ORDER BY name DESC LIMIT 1)",
            )
            .fetch_one(&mut *conn)
            .await?,
        );
    }
    if has_lock {
        f.kysely_lock_flag = sqlx::query_scalar::<_, Option<i64>>(
            "SELECT max(is_locked)::int8 FROM kysely_migrations_lock",
        )
        .fetch_one(&mut *conn)
        .await?
        .unwrap_or(0)
            != 0;
    }
    // A bigint advisory key shows in pg_locks as classid (high half) and objid (low half).
    f.locks_held = sqlx::query_scalar(
        "SELECT count(*) FROM pg_locks \
         WHERE locktype = 'advisory' AND granted AND objsubid = 1 AND pid <> pg_backend_pid() \
           AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
           AND ((classid::text::int8 << 32) | objid::text::int8) = ANY($1)",
    )
    .bind([IMMICH_MIGRATION_LOCK, KYSELY_MIGRATION_LOCK])
    .fetch_one(&mut *conn)
    .await?;
    Ok(f)
}

/// The leading millisecond timestamp of a kysely migration name (`1752267649968-Name`).
pub(super) fn name_timestamp(name: &str) -> Option<i64> {
    let digits: String = name.chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().ok()
}

pub(super) fn judge_migrations(f: &MigrationFacts, schema: &Schema) -> Check {
    const NAME: &str = "migrations";
    let fix_restore = "restore the database dump that matches the Immich version you run \
                       (backups/ holds Immich's own dumps), or run the Immich release that \
                       wrote this database; read the server log for the failing migration";
    if f.locks_held > 0 || f.kysely_lock_flag {
        return Check::warn(
            NAME,
            "a migration lock is held: migrations are running now, or a server died in them",
            "wait for the server to finish starting; if no server is running, restart the \
             database container to release the lock",
        );
    }
    let typeorm_newest = f.typeorm.as_ref().and_then(|t| t.2);
    let kysely_newest = f
        .kysely
        .as_ref()
        .and_then(|k| k.1.as_deref())
        .and_then(name_timestamp);
    if f.typeorm.is_none() && f.kysely.is_none() {
        return Check::warn(
            NAME,
            "neither `migrations` nor `kysely_migrations` exists: this database was not \
             created by an Immich server (or was restored partially)",
            fix_restore,
        );
    }
    // Kysely's first migration refuses a TypeORM ledger that stops short of the last one.
    if let (Some((_, newest, _)), Some((0, _))) = (&f.typeorm, &f.kysely) {
        if newest.as_deref() != Some(LAST_TYPEORM) {
            return Check::fail(
                NAME,
                format!(
                    "the TypeORM ledger ends at {}, not {LAST_TYPEORM}, and no kysely \
                     migration ran: Immich stops with \"Invalid upgrade path\"",
                    newest.as_deref().unwrap_or("nothing")
                ),
                "upgrade through an Immich release that still has TypeORM migrations \
                 (one containing AddMissingIndex1744910873956) first, then to the current one \
                 (https://immich.app/errors#typeorm-upgrade)",
            );
        }
    }
    let newest = kysely_newest.max(typeorm_newest).unwrap_or(0);
    for l in LANDMARKS {
        let recorded = newest >= l.timestamp;
        let applied = (l.applied)(schema);
        if recorded && !applied {
            return Check::fail(
                NAME,
                format!(
                    "migration {}-{} is recorded as applied but the tables do not show it \
                     (schema looks like {}): a failed migration or a mixed restore",
                    l.timestamp, l.name, schema.label
                ),
                fix_restore,
            );
        }
        if applied && !recorded {
            return Check::fail(
                NAME,
                format!(
                    "the tables show migration {}-{} but the ledger's newest is {}: the \
                     ledger does not match the schema (a mixed restore)",
                    l.timestamp,
                    l.name,
                    if newest == 0 {
                        "nothing".to_string()
                    } else {
                        newest.to_string()
                    }
                ),
                fix_restore,
            );
        }
    }
    let newest_name = f
        .kysely
        .as_ref()
        .and_then(|k| k.1.clone())
        .or_else(|| f.typeorm.as_ref().and_then(|t| t.1.clone()))
        .unwrap_or_default();
    let rows =
        f.kysely.as_ref().map(|k| k.0).unwrap_or(0) + f.typeorm.as_ref().map(|t| t.0).unwrap_or(0);
    Check::ok(
        NAME,
        format!("{rows} recorded, newest {newest_name}, consistent with the tables; no lock held"),
    )
}
