//! Database side: create the database, Immich's tables for a generation, and bulk-load the plan
//! with `COPY ... FROM STDIN`.

use std::time::Duration;

use anyhow::{Context, Result};
use sqlx::postgres::PgConnection;
use sqlx::{Connection, Executor};

use crate::plan::{Asset, Plan};
use crate::Generation;

/// Connect, with a clear error naming the URL when PostgreSQL is not reachable.
pub(crate) async fn connect(url: &str) -> Result<PgConnection> {
    let fut = PgConnection::connect(url);
    match tokio::time::timeout(Duration::from_secs(15), fut).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(anyhow::anyhow!("PostgreSQL is not reachable at {url}: {e}")),
        Err(_) => Err(anyhow::anyhow!(
            "PostgreSQL is not reachable at {url}: connection timed out after 15 s"
        )),
    }
}

pub(crate) async fn create_database(admin_url: &str, name: &str) -> Result<()> {
    let mut conn = connect(admin_url).await?;
    conn.execute(format!("CREATE DATABASE \"{name}\"").as_str())
        .await
        .with_context(|| format!("CREATE DATABASE {name} via {admin_url}"))?;
    let _ = conn.close().await;
    Ok(())
}

fn q(name: &str) -> String {
    format!("\"{name}\"")
}

/// Columns of the hand-made asset table (generations before v2.6): (name, DDL type).
fn asset_columns(g: Generation) -> Vec<(&'static str, String)> {
    let t = g.tables();
    let mut c: Vec<(&'static str, String)> = vec![
        ("id", "uuid PRIMARY KEY DEFAULT gen_random_uuid()".into()),
        ("deviceAssetId", "varchar NOT NULL".into()),
        (
            "ownerId",
            format!(
                "uuid NOT NULL REFERENCES {}(id) ON DELETE CASCADE",
                q(t.users)
            ),
        ),
        ("deviceId", "varchar NOT NULL".into()),
        ("type", "varchar NOT NULL".into()),
        ("originalPath", "varchar NOT NULL".into()),
        ("fileCreatedAt", "timestamptz NOT NULL".into()),
        ("fileModifiedAt", "timestamptz NOT NULL".into()),
        ("isFavorite", "boolean NOT NULL DEFAULT false".into()),
        ("duration", "varchar".into()),
    ];
    if g == Generation::V1_112 {
        c.push(("previewPath", "varchar".into()));
        c.push(("thumbnailPath", "varchar DEFAULT ''".into()));
    }
    c.push(("encodedVideoPath", "varchar DEFAULT ''".into()));
    c.push(("checksum", "bytea NOT NULL".into()));
    if g == Generation::V1_112 {
        c.push(("isVisible", "boolean NOT NULL DEFAULT true".into()));
        c.push(("isArchived", "boolean NOT NULL DEFAULT false".into()));
    }
    c.push((
        "livePhotoVideoId",
        format!("uuid REFERENCES {}(id) ON DELETE SET NULL", q(t.assets)),
    ));
    c.push(("updatedAt", "timestamptz NOT NULL DEFAULT now()".into()));
    c.push(("createdAt", "timestamptz NOT NULL DEFAULT now()".into()));
    c.push(("originalFileName", "varchar NOT NULL".into()));
    c.push(("sidecarPath", "varchar".into()));
    c.push(("thumbhash", "bytea".into()));
    c.push(("isOffline", "boolean NOT NULL DEFAULT false".into()));
    c.push((
        "libraryId",
        format!("uuid REFERENCES {}(id) ON DELETE CASCADE", q(t.libraries)),
    ));
    c.push(("isExternal", "boolean NOT NULL DEFAULT false".into()));
    c.push(("deletedAt", "timestamptz".into()));
    c.push(("localDateTime", "timestamptz NOT NULL".into()));
    if g != Generation::V1_112 {
        c.push((
            "status",
            "assets_status_enum NOT NULL DEFAULT 'active'".into(),
        ));
        c.push((
            "visibility",
            "asset_visibility_enum NOT NULL DEFAULT 'timeline'".into(),
        ));
    }
    c
}

/// The asset columns COPY fills: the hand-made table's, or (v2.6+) the ones of Immich's own
/// table the generator sets. Those are every NOT NULL column without a default (`deviceAssetId`
/// and `deviceId` on v2.6 only, `checksumAlgorithm` on v3.0+) and the ones a real server fills.
fn copy_asset_columns(g: Generation) -> Vec<&'static str> {
    if g.upstream_ddl().is_none() {
        return asset_columns(g).into_iter().map(|(n, _)| n).collect();
    }
    let mut c = vec!["id"];
    if g.has_device_ids() {
        c.extend(["deviceAssetId", "deviceId"]);
    }
    c.extend([
        "ownerId",
        "type",
        "originalPath",
        "fileCreatedAt",
        "fileModifiedAt",
        "isFavorite",
        "duration",
        "checksum",
        "livePhotoVideoId",
        "updatedAt",
        "createdAt",
        "originalFileName",
        "thumbhash",
        "isOffline",
        "libraryId",
        "isExternal",
        "deletedAt",
        "localDateTime",
        "status",
        "visibility",
        "width",
        "height",
        "isEdited",
    ]);
    if g.has_checksum_algorithm() {
        c.push("checksumAlgorithm");
    }
    c
}

fn ddl(g: Generation) -> Vec<String> {
    let t = g.tables();
    let users = q(t.users);
    let libs = q(t.libraries);
    let assets = q(t.assets);
    let mut s = vec![];
    if g != Generation::V1_112 {
        s.push("CREATE TYPE assets_status_enum AS ENUM ('active', 'trashed', 'deleted')".into());
        s.push(
            "CREATE TYPE asset_visibility_enum AS ENUM ('archive', 'timeline', 'hidden', 'locked')"
                .into(),
        );
    }
    s.push(format!(
        "CREATE TABLE {users} (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            email varchar NOT NULL UNIQUE,
            password varchar NOT NULL DEFAULT '',
            name varchar NOT NULL DEFAULT '',
            \"isAdmin\" boolean NOT NULL DEFAULT false,
            \"storageLabel\" varchar UNIQUE,
            \"profileImagePath\" varchar NOT NULL DEFAULT '',
            \"shouldChangePassword\" boolean NOT NULL DEFAULT true,
            \"oauthId\" varchar NOT NULL DEFAULT '',
            \"createdAt\" timestamptz NOT NULL DEFAULT now(),
            \"updatedAt\" timestamptz NOT NULL DEFAULT now(),
            \"deletedAt\" timestamptz,
            status varchar NOT NULL DEFAULT 'active',
            \"quotaSizeInBytes\" bigint,
            \"quotaUsageInBytes\" bigint NOT NULL DEFAULT 0
        )"
    ));
    s.push(format!(
        "CREATE TABLE {libs} (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            name varchar NOT NULL,
            \"ownerId\" uuid NOT NULL REFERENCES {users}(id) ON DELETE CASCADE,
            \"importPaths\" text[] NOT NULL,
            \"exclusionPatterns\" text[] NOT NULL,
            \"createdAt\" timestamptz NOT NULL DEFAULT now(),
            \"updatedAt\" timestamptz NOT NULL DEFAULT now(),
            \"deletedAt\" timestamptz,
            \"refreshedAt\" timestamptz
        )"
    ));
    let cols: Vec<String> = asset_columns(g)
        .into_iter()
        .map(|(n, ty)| format!("{} {ty}", q(n)))
        .collect();
    s.push(format!("CREATE TABLE {assets} ({})", cols.join(", ")));
    let (uq_upload, uq_lib) = if g.plural_tables() {
        (
            "UQ_assets_owner_checksum",
            "UQ_assets_owner_library_checksum",
        )
    } else {
        ("UQ_asset_owner_checksum", "UQ_asset_owner_library_checksum")
    };
    s.push(format!(
        "CREATE UNIQUE INDEX \"{uq_upload}\" ON {assets} (\"ownerId\", checksum) WHERE (\"libraryId\" IS NULL)"
    ));
    s.push(format!(
        "CREATE UNIQUE INDEX \"{uq_lib}\" ON {assets} (\"ownerId\", \"libraryId\", checksum) WHERE (\"libraryId\" IS NOT NULL)"
    ));
    s.push(format!(
        "CREATE INDEX \"IDX_asset_owner\" ON {assets} (\"ownerId\")"
    ));
    s.push(format!(
        "CREATE TABLE {} (
            \"assetId\" uuid PRIMARY KEY REFERENCES {assets}(id) ON DELETE CASCADE,
            make varchar,
            model varchar,
            \"exifImageWidth\" integer,
            \"exifImageHeight\" integer,
            \"fileSizeInByte\" bigint,
            \"dateTimeOriginal\" timestamptz,
            \"timeZone\" varchar,
            description text NOT NULL DEFAULT ''
        )",
        q(t.exif)
    ));
    if let Some(af) = t.asset_files {
        let uq_name = if g.plural_tables() {
            "UQ_assetId_type"
        } else {
            "asset_file_assetId_type_uq"
        };
        let uq_cols = "\"assetId\", type";
        s.push(format!(
            "CREATE TABLE {} (
                id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
                \"assetId\" uuid NOT NULL REFERENCES {assets}(id) ON DELETE CASCADE,
                \"createdAt\" timestamptz NOT NULL DEFAULT now(),
                \"updatedAt\" timestamptz NOT NULL DEFAULT now(),
                type varchar NOT NULL,
                path varchar NOT NULL,
                CONSTRAINT \"{uq_name}\" UNIQUE ({uq_cols})
            )",
            q(af)
        ));
    }
    s.push(format!(
        "CREATE TABLE person (
            id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            \"createdAt\" timestamptz NOT NULL DEFAULT now(),
            \"updatedAt\" timestamptz NOT NULL DEFAULT now(),
            \"ownerId\" uuid NOT NULL REFERENCES {users}(id) ON DELETE CASCADE,
            name varchar NOT NULL DEFAULT '',
            \"thumbnailPath\" varchar NOT NULL DEFAULT '',
            \"isHidden\" boolean NOT NULL DEFAULT false,
            \"birthDate\" date,
            \"faceAssetId\" uuid
        )"
    ));
    s.push(
        "CREATE TABLE system_metadata (key varchar PRIMARY KEY, value jsonb NOT NULL)".to_string(),
    );
    s
}

/// Creates the tables of generation `g`: Immich's own DDL (v2.6+, one simple-protocol batch,
/// functions, triggers and the `kysely_migrations` ledger included), else the hand-made one.
pub(crate) async fn create_schema(conn: &mut PgConnection, g: Generation) -> Result<()> {
    if let Some(sql) = g.upstream_ddl() {
        sqlx::raw_sql(sql)
            .execute(&mut *conn)
            .await
            .with_context(|| format!("Immich's {g} schema (testdata/ddl/{g}.sql)"))?;
        return Ok(());
    }
    for stmt in ddl(g) {
        conn.execute(stmt.as_str())
            .await
            .with_context(|| format!("schema for {g}: {stmt}"))?;
    }
    Ok(())
}

/// Rows in PostgreSQL's COPY text format.
struct CopyBuf {
    buf: String,
    first: bool,
}

impl CopyBuf {
    fn new() -> Self {
        CopyBuf {
            buf: String::with_capacity(1 << 20),
            first: true,
        }
    }

    fn sep(&mut self) {
        if !self.first {
            self.buf.push('\t');
        }
        self.first = false;
    }

    fn val(&mut self, v: Option<&str>) {
        self.sep();
        match v {
            None => self.buf.push_str("\\N"),
            Some(s) => {
                for ch in s.chars() {
                    match ch {
                        '\\' => self.buf.push_str("\\\\"),
                        '\t' => self.buf.push_str("\\t"),
                        '\n' => self.buf.push_str("\\n"),
                        '\r' => self.buf.push_str("\\r"),
                        c => self.buf.push(c),
                    }
                }
            }
        }
    }

    fn s(&mut self, v: &str) {
        self.val(Some(v));
    }

    fn bytea(&mut self, b: &[u8]) {
        self.sep();
        self.buf.push_str("\\\\x");
        for x in b {
            self.buf.push_str(&format!("{x:02x}"));
        }
    }

    fn end(&mut self) {
        self.buf.push('\n');
        self.first = true;
    }
}

async fn copy_rows(
    conn: &mut PgConnection,
    table: &str,
    cols: &[&str],
    rows: usize,
    mut row: impl FnMut(usize, &mut CopyBuf) -> usize,
) -> Result<u64> {
    let collist: Vec<String> = cols.iter().map(|c| q(c)).collect();
    let stmt = format!("COPY {} ({}) FROM STDIN", q(table), collist.join(", "));
    let mut copy = conn
        .copy_in_raw(&stmt)
        .await
        .with_context(|| stmt.clone())?;
    let mut b = CopyBuf::new();
    let mut i = 0;
    while i < rows {
        i = row(i, &mut b);
        if b.buf.len() > (1 << 20) {
            copy.send(std::mem::take(&mut b.buf).into_bytes())
                .await
                .with_context(|| stmt.clone())?;
        }
    }
    if !b.buf.is_empty() {
        copy.send(b.buf.into_bytes())
            .await
            .with_context(|| stmt.clone())?;
    }
    copy.finish().await.with_context(|| stmt.clone())
}

fn ts(d: &chrono::DateTime<chrono::Utc>) -> String {
    d.format("%Y-%m-%d %H:%M:%S%.3f+00").to_string()
}

fn asset_value(plan: &Plan, a: &Asset, col: &str, b: &mut CopyBuf) {
    let g = plan.gen;
    let empty_or = |l: &Option<crate::plan::Loc>| l.as_ref().map(|l| plan.db_path(l));
    match col {
        "id" => b.s(&a.id.to_string()),
        "deviceAssetId" => b.s(&a.device_asset_id),
        "ownerId" => b.s(&plan.users[a.owner].id.to_string()),
        "deviceId" => b.s(if a.library.is_some() {
            "Library Import"
        } else {
            "immich-fixture"
        }),
        "type" => b.s(if a.video { "VIDEO" } else { "IMAGE" }),
        "originalPath" => b.s(&plan.original_db(a)),
        "fileCreatedAt" | "localDateTime" => b.s(&ts(&a.created)),
        "fileModifiedAt" => b.s(&ts(&a.created)),
        "isFavorite" => b.s(if a.id.as_bytes()[0] < 16 { "t" } else { "f" }),
        // v3.0 made it an integer of milliseconds (1777667825574-ChangeDurationToInteger).
        "duration" => b.s(match (g.integer_duration(), a.video) {
            (true, true) => "500",
            (true, false) => "0",
            (false, true) => "0:00:00.500000",
            (false, false) => "0:00:00.00000",
        }),
        "width" => b.s(if a.video { "64" } else { "48" }),
        "height" => b.s(if a.video { "48" } else { "32" }),
        "previewPath" => b.val(empty_or(&a.preview).as_deref()),
        "thumbnailPath" => b.s(&empty_or(&a.thumbnail).unwrap_or_default()),
        "encodedVideoPath" => b.s(&empty_or(&a.encoded).unwrap_or_default()),
        "checksum" => b.bytea(&a.checksum),
        "isVisible" => b.s(if a.hidden { "f" } else { "t" }),
        "isArchived" => b.s("f"),
        "livePhotoVideoId" => b.val(a.live_video.map(|u| u.to_string()).as_deref()),
        "updatedAt" | "createdAt" => b.s(&ts(&plan.now)),
        "originalFileName" => b.s(&a.file_name),
        "sidecarPath" => b.val(empty_or(&a.sidecar).as_deref()),
        "thumbhash" => {
            if a.preview.is_some() {
                b.bytea(&a.id.as_bytes()[..12])
            } else {
                b.val(None)
            }
        }
        "isOffline" => b.s("f"),
        "libraryId" => b.val(a.library.map(|l| plan.libs[l].id.to_string()).as_deref()),
        "isExternal" => b.s(if a.library.is_some() { "t" } else { "f" }),
        "deletedAt" => b.val(if a.trashed { Some(ts(&plan.now)) } else { None }.as_deref()),
        "status" => b.s(if a.trashed { "trashed" } else { "active" }),
        "visibility" => b.s(if a.hidden { "hidden" } else { "timeline" }),
        // The `asset_edit` insert trigger sets it for the edited asset.
        "isEdited" => b.s("f"),
        "checksumAlgorithm" => b.s(if a.library.is_some() {
            "sha1-path"
        } else {
            "sha1"
        }),
        other => unreachable!("no value for asset column {other} in {g}"),
    }
}

/// Bulk-load users, libraries, assets, exif, asset files, persons and system metadata.
pub(crate) async fn load(conn: &mut PgConnection, plan: &Plan) -> Result<()> {
    let g = plan.gen;
    let t = g.tables();
    let now = ts(&plan.now);
    let ex = &plan.extras;

    // v3.2: every user belongs to a cluster group (NOT NULL), one each here.
    if g.person_groups() {
        copy_rows(
            conn,
            "cluster_group",
            &["id", "createdAt", "updatedAt"],
            ex.cluster_groups.len(),
            |i, b| {
                b.s(&ex.cluster_groups[i].to_string());
                b.s(&now);
                b.s(&now);
                b.end();
                i + 1
            },
        )
        .await?;
    }

    let mut user_cols = vec![
        "id",
        "email",
        "name",
        "isAdmin",
        "storageLabel",
        "profileImagePath",
        "shouldChangePassword",
        "createdAt",
        "updatedAt",
    ];
    if g.person_groups() {
        user_cols.push("clusterGroupId");
    }
    copy_rows(conn, t.users, &user_cols, plan.users.len(), |i, b| {
        let u = &plan.users[i];
        b.s(&u.id.to_string());
        b.s(&u.email);
        b.s(&u.name);
        b.s(if u.admin { "t" } else { "f" });
        b.val(u.label.as_deref());
        b.s(&plan.db_path(&u.profile));
        b.s("f");
        b.s(&now);
        b.s(&now);
        if g.person_groups() {
            b.s(&ex.cluster_groups[i].to_string());
        }
        b.end();
        i + 1
    })
    .await?;

    copy_rows(
        conn,
        t.libraries,
        &[
            "id",
            "name",
            "ownerId",
            "importPaths",
            "exclusionPatterns",
            "createdAt",
            "updatedAt",
            "refreshedAt",
        ],
        plan.libs.len(),
        |i, b| {
            let l = &plan.libs[i];
            b.s(&l.id.to_string());
            b.s(&l.name);
            b.s(&plan.users[l.owner].id.to_string());
            b.s(&format!("{{\"{}\"}}", l.import));
            b.s("{\"**/@eaDir/**\",\"**/._*\"}");
            b.s(&now);
            b.s(&now);
            b.s(&now);
            b.end();
            i + 1
        },
    )
    .await?;

    let names = copy_asset_columns(g);
    // Hidden live-photo videos come before their images in the plan (FK order).
    copy_rows(conn, t.assets, &names, plan.assets.len(), |i, b| {
        let a = &plan.assets[i];
        for c in &names {
            asset_value(plan, a, c, b);
        }
        b.end();
        i + 1
    })
    .await?;

    copy_rows(
        conn,
        t.exif,
        &[
            "assetId",
            "make",
            "model",
            "exifImageWidth",
            "exifImageHeight",
            "fileSizeInByte",
            "dateTimeOriginal",
            "timeZone",
        ],
        plan.assets.len(),
        |i, b| {
            let a = &plan.assets[i];
            b.s(&a.id.to_string());
            b.val(if a.video { None } else { Some("Fixture") });
            b.val(if a.video { None } else { Some("Cam 1") });
            let (w, h) = if a.video { ("64", "48") } else { ("48", "32") };
            b.s(w);
            b.s(h);
            b.s(&a.size.to_string());
            b.s(&ts(&a.created));
            b.s("UTC");
            b.end();
            i + 1
        },
    )
    .await?;

    if let Some(af) = t.asset_files {
        // (asset index, type, isEdited, loc) rows.
        let mut rows: Vec<(usize, &'static str, bool, &crate::plan::Loc)> = Vec::new();
        for (i, a) in plan.assets.iter().enumerate() {
            let mut kinds: Vec<(&'static str, bool, &Option<crate::plan::Loc>)> = vec![
                ("preview", false, &a.preview),
                ("thumbnail", false, &a.thumbnail),
                ("fullsize", false, &a.fullsize),
            ];
            if g.sidecar_in_asset_file() {
                kinds.push(("sidecar", false, &a.sidecar));
                kinds.push(("encoded_video", false, &a.encoded));
            }
            if g.asset_file_is_edited() {
                kinds.push(("thumbnail", true, &a.edited_thumbnail));
            }
            for (k, edited, l) in kinds {
                if let Some(l) = l {
                    rows.push((i, k, edited, l));
                }
            }
        }
        let mut cols = vec!["id", "assetId", "type", "path", "createdAt", "updatedAt"];
        if g.asset_file_is_edited() {
            cols.push("isEdited");
        }
        copy_rows(conn, af, &cols, rows.len(), |i, b| {
            let (ai, k, edited, l) = rows[i];
            let id = plan.assets[ai].id;
            b.s(&crate::plan::file_id(id, k, edited).to_string());
            b.s(&id.to_string());
            b.s(k);
            b.s(&plan.db_path(l));
            b.s(&now);
            b.s(&now);
            if g.asset_file_is_edited() {
                b.s(if edited { "t" } else { "f" });
            }
            b.end();
            i + 1
        })
        .await?;
    }

    load_persons(conn, plan).await?;
    if g.upstream_ddl().is_some() {
        load_extras(conn, plan).await?;
    }

    let mut meta: Vec<(&str, String)> = vec![(
        "system-flags",
        r#"{"mountChecks":{"upload":true,"library":true,"thumbs":true,"encoded-video":true,"profile":true,"backups":true}}"#
            .to_string(),
    )];
    if !g.relative_paths() {
        meta.push((
            "MediaLocation",
            format!(r#"{{"location":"{}"}}"#, plan.croot),
        ));
    }
    for (k, v) in meta {
        sqlx::query(&format!(
            "INSERT INTO {} (key, value) VALUES ($1, $2::jsonb)",
            q(t.system_metadata)
        ))
        .bind(k)
        .bind(v)
        .execute(&mut *conn)
        .await
        .context("insert system_metadata")?;
    }
    conn.execute("ANALYZE").await.context("ANALYZE")?;
    Ok(())
}

/// Persons (and on v2.6+ their faces). Before v3.2 a person is keyed by `person.id`; on v3.2
/// by (`ownerId`, `personGroupId`), with one `person_group` per person whose id is the plan's
/// person id, so the ground truth names a person by its `personGroupId` as the scanner does.
async fn load_persons(conn: &mut PgConnection, plan: &Plan) -> Result<()> {
    let g = plan.gen;
    let t = g.tables();
    let now = ts(&plan.now);
    let ex = &plan.extras;
    let owner = |pi: usize| plan.users[plan.persons[pi].owner].id.to_string();
    if g.person_groups() {
        copy_rows(
            conn,
            "person_group",
            &["id", "clusterGroupId", "createdAt", "updatedAt"],
            plan.persons.len(),
            |i, b| {
                let p = &plan.persons[i];
                b.s(&p.id.to_string());
                b.s(&ex.cluster_groups[p.owner].to_string());
                b.s(&now);
                b.s(&now);
                b.end();
                i + 1
            },
        )
        .await?;
        load_faces(conn, plan, "personGroupId").await?;
        let face_of = |pi: usize| {
            ex.faces
                .iter()
                .find(|f| f.person == pi)
                .map(|f| f.id.to_string())
        };
        copy_rows(
            conn,
            t.person,
            &[
                "ownerId",
                "personGroupId",
                "name",
                "thumbnailPath",
                "faceAssetId",
                "createdAt",
                "updatedAt",
            ],
            plan.persons.len(),
            |i, b| {
                let p = &plan.persons[i];
                b.s(&owner(i));
                b.s(&p.id.to_string());
                b.s(&p.name);
                b.s(&plan.db_path(&p.thumb));
                b.val(face_of(i).as_deref());
                b.s(&now);
                b.s(&now);
                b.end();
                i + 1
            },
        )
        .await?;
        return Ok(());
    }

    copy_rows(
        conn,
        t.person,
        &[
            "id",
            "ownerId",
            "name",
            "thumbnailPath",
            "createdAt",
            "updatedAt",
        ],
        plan.persons.len(),
        |i, b| {
            let p = &plan.persons[i];
            b.s(&p.id.to_string());
            b.s(&owner(i));
            b.s(&p.name);
            b.s(&plan.db_path(&p.thumb));
            b.s(&now);
            b.s(&now);
            b.end();
            i + 1
        },
    )
    .await?;
    if g.upstream_ddl().is_some() {
        // person.faceAssetId -> asset_face.id and asset_face.personId -> person.id: the
        // person first, then its face, then the link.
        load_faces(conn, plan, "personId").await?;
        conn.execute(
            "UPDATE person p SET \"faceAssetId\" = f.id FROM asset_face f \
             WHERE f.\"personId\" = p.id",
        )
        .await
        .context("set person.faceAssetId")?;
    }
    Ok(())
}

/// One `asset_face` per planned face; `person_col` is `personId` (v2.6, v3.0) or
/// `personGroupId` (v3.2).
async fn load_faces(conn: &mut PgConnection, plan: &Plan, person_col: &str) -> Result<u64> {
    let faces = &plan.extras.faces;
    let now = ts(&plan.now);
    copy_rows(
        conn,
        "asset_face",
        &[
            "id",
            "assetId",
            person_col,
            "imageWidth",
            "imageHeight",
            "boundingBoxX1",
            "boundingBoxY1",
            "boundingBoxX2",
            "boundingBoxY2",
            "updatedAt",
        ],
        faces.len(),
        |i, b| {
            let f = &faces[i];
            b.s(&f.id.to_string());
            b.s(&plan.assets[f.asset].id.to_string());
            b.s(&plan.persons[f.person].id.to_string());
            for v in ["48", "32", "10", "5", "30", "25"] {
                b.s(v);
            }
            b.s(&now);
            b.end();
            i + 1
        },
    )
    .await
}

/// Rows of Immich's own schema (v2.6+) the scanner does not read: `asset_job_status` per
/// asset, a stack, an edit (whose insert trigger sets `asset.isEdited`), the release in
/// `version_history` and (v3.0+) `integrity_report` rows.
async fn load_extras(conn: &mut PgConnection, plan: &Plan) -> Result<()> {
    let g = plan.gen;
    let now = ts(&plan.now);
    let ex = &plan.extras;

    copy_rows(
        conn,
        "asset_job_status",
        &[
            "assetId",
            "metadataExtractedAt",
            "facesRecognizedAt",
            "duplicatesDetectedAt",
        ],
        plan.assets.len(),
        |i, b| {
            let a = &plan.assets[i];
            b.s(&a.id.to_string());
            b.s(&now);
            b.val((!a.video).then_some(now.as_str()));
            b.s(&now);
            b.end();
            i + 1
        },
    )
    .await?;

    if let Some((stack, [primary, other])) = ex.stack {
        let p = &plan.assets[primary];
        sqlx::query("INSERT INTO stack (id, \"primaryAssetId\", \"ownerId\") VALUES ($1, $2, $3)")
            .bind(stack)
            .bind(p.id)
            .bind(plan.users[p.owner].id)
            .execute(&mut *conn)
            .await
            .context("insert stack")?;
        sqlx::query("UPDATE asset SET \"stackId\" = $1 WHERE id = ANY($2)")
            .bind(stack)
            .bind(vec![p.id, plan.assets[other].id])
            .execute(&mut *conn)
            .await
            .context("set asset.stackId")?;
    }

    if let Some((edit, i)) = ex.edit {
        // The trigger asset_edit_insert sets asset."isEdited" = true.
        sqlx::query(
            "INSERT INTO asset_edit (id, \"assetId\", action, parameters, sequence) \
             VALUES ($1, $2, 'rotate', '{\"angle\": 90}'::jsonb, 0)",
        )
        .bind(edit)
        .bind(plan.assets[i].id)
        .execute(&mut *conn)
        .await
        .context("insert asset_edit")?;
    }

    if let Some(v) = g.release() {
        sqlx::query("INSERT INTO version_history (version, \"createdAt\") VALUES ($1, $2)")
            .bind(v)
            .bind(plan.now)
            .execute(&mut *conn)
            .await
            .context("insert version_history")?;
    }

    for r in &ex.reports {
        let uuid = |s: &Option<String>| -> Result<Option<uuid::Uuid>> {
            Ok(match s {
                Some(s) => Some(s.parse()?),
                None => None,
            })
        };
        sqlx::query(
            "INSERT INTO integrity_report (id, type, path, \"createdAt\", \"assetId\", \"fileAssetId\") \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(r.id.parse::<uuid::Uuid>()?)
        .bind(&r.kind)
        .bind(&r.path)
        .bind(plan.now)
        .bind(uuid(&r.asset_id)?)
        .bind(uuid(&r.file_asset_id)?)
        .execute(&mut *conn)
        .await
        .with_context(|| format!("insert integrity_report {} {}", r.kind, r.path))?;
    }
    Ok(())
}
