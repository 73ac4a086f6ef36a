//! The dump read without PostgreSQL: the `COPY` blocks of the tables a scan needs, out of
//! the Immich database's section, spilled to sorted runs on disk (a dump is not in id order)
//! and merged back into [`AssetRow`]s in the order the live source gives them.

use super::copy::{self, CopyHeader};
use super::dumpfile::{DumpReader, Ending};
use super::spill::{Fields, Sorted, Spill};
use crate::db::conn::{Library, SourceInfo};
use crate::db::rows::{push_asset_files, AssetColumns};
use crate::db::schema::Schema;
use crate::db::source::Source;
use crate::db::sql::UncheckedPart;
use crate::error::{Error, Result};
use crate::model::{path_from_bytes, AssetRow, Entity, FileKind, FileRef};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;

/// Record kinds: the first key byte orders assets, then persons, then users; the last one
/// orders an asset's own row before its exif size and its files.
const ASSET: u8 = 0;
const PERSON: u8 = 1;
const USER: u8 = 2;
const TAG_ROW: u8 = 0;
const TAG_SIZE: u8 = 1;
const TAG_FILE: u8 = 2;

/// What a read of the dump found.
pub(crate) struct DumpRows {
    /// Schema, media location and libraries, as a live source reports them.
    pub(crate) info: SourceInfo,
    /// The Immich database's name in the dump.
    pub(crate) database: String,
    /// How the dump ended.
    pub(crate) ending: Ending,
    /// `-- Dumped from database version`.
    pub(crate) dumped_from: Option<String>,
    /// Parts that could not be read.
    pub(crate) unchecked: Vec<UncheckedPart>,
    sorted: Sorted,
}

/// One table's COPY block being read: which columns land where.
struct Block {
    table: String,
    col: HashMap<String, usize>,
}

impl Block {
    fn get<'a>(&self, f: &'a [Option<Vec<u8>>], name: &str) -> Option<&'a [u8]> {
        f.get(*self.col.get(name)?)?.as_deref()
    }
    fn has(&self, name: &str) -> bool {
        self.col.contains_key(name)
    }
}

fn key(entity: u8, ids: &[&[u8]], tag: u8) -> Vec<u8> {
    let mut k = Vec::with_capacity(80);
    k.push(entity);
    for id in ids {
        k.extend_from_slice(id);
        k.push(b'/');
    }
    k.push(tag);
    k
}

const TABLES: &[&str] = &[
    "asset",
    "assets",
    "asset_exif",
    "exif",
    "asset_file",
    "asset_files",
    "person",
    "user",
    "users",
    "library",
    "libraries",
    "system_metadata",
    "version_history",
    "integrity_report",
];

/// Reads the dump once; rows go to sorted runs in `temp` (default `TMPDIR`).
pub(crate) fn read(path: &Path, temp: Option<&Path>, cancel: &AtomicBool) -> Result<DumpRows> {
    let mut r = DumpReader::open(path)?;
    let mut spill = Spill::new(temp);
    let io = |source| Error::Io {
        path: temp.map_or_else(std::env::temp_dir, Path::to_path_buf),
        source,
    };
    // The section holding an asset table is Immich's; `CREATE TABLE` comes before the data.
    let mut immich: Option<usize> = None;
    let mut candidates: Vec<String> = Vec::new();
    let mut cols: HashMap<String, HashSet<String>> = HashMap::new();
    let mut block: Option<Block> = None;
    let mut creating: Option<String> = None;
    let mut in_other_copy = false;
    let mut media_location = None;
    let mut libraries = Vec::new();
    let mut history = Vec::new();
    let mut bad_rows = 0u64;
    while let Some(line) = r.next_line() {
        let (section, l) = (line.section, line.bytes);
        if in_other_copy || block.is_some() {
            if l == b"\\." {
                in_other_copy = false;
                block = None;
                continue;
            }
            let Some(b) = &block else { continue };
            let f = copy::fields(l);
            if r.lines % 65536 == 0 && cancel.load(Ordering::Relaxed) {
                return Err(Error::Interrupted);
            }
            if f.len() != b.col.len() {
                bad_rows += 1;
                continue;
            }
            take_row(
                b,
                &f,
                &mut spill,
                &mut media_location,
                &mut libraries,
                &mut history,
            )
            .map_err(io)?;
            continue;
        }
        if let Some(t) = &creating {
            // The column lines of a CREATE TABLE; constraints come later as ALTER TABLE.
            if l.starts_with(b")") {
                creating = None;
            } else if let Some((c, _)) = copy::ident(&String::from_utf8_lossy(l)) {
                if c != "constraint" {
                    cols.entry(t.clone()).or_default().insert(c);
                }
            }
            continue;
        }
        if l.starts_with(b"CREATE TABLE public.") {
            let name = String::from_utf8_lossy(&l[20..]);
            let t = name.trim_end_matches(" (").trim_matches('"').to_string();
            if matches!(t.as_str(), "asset" | "assets") && immich != Some(section) {
                candidates.push(r.sections[section].clone());
                if immich.is_none() {
                    immich = Some(section);
                }
            }
            if Some(section) == immich && TABLES.contains(&t.as_str()) {
                cols.remove(&t);
                creating = Some(t);
            }
            continue;
        }
        if !l.starts_with(b"COPY ") {
            continue;
        }
        let header = std::str::from_utf8(l).ok().and_then(copy::parse_header);
        match header {
            Some(h) if Some(section) == immich && h.schema == "public" => {
                if TABLES.contains(&h.table.as_str()) {
                    cols.entry(h.table.clone())
                        .or_default()
                        .extend(h.columns.iter().cloned());
                    block = Some(open_block(h));
                } else {
                    in_other_copy = true;
                }
            }
            _ => in_other_copy = true,
        }
        if cancel.load(Ordering::Relaxed) {
            return Err(Error::Interrupted);
        }
    }
    let ending = r.ending();
    if candidates.len() > 1 {
        return Err(Error::InvalidArgument(format!(
            "{} holds more than one Immich database (each has an asset table): {}; restore \
             test needs one: dump the one the server uses",
            path.display(),
            candidates.join(", ")
        )));
    }
    let Some(section) = immich else {
        return Err(Error::UnknownSchema(format!(
            "{} holds no database with an `asset` or `assets` table{}",
            path.display(),
            match &ending {
                Ending::Truncated(why) => format!(" ({why})"),
                Ending::Complete => String::new(),
            }
        )));
    };
    let mut schema = Schema::from_columns(&cols).map_err(|e| match &ending {
        Ending::Truncated(why) => Error::UnknownSchema(format!("{e} ({why})")),
        Ending::Complete => e,
    })?;
    history.sort_by(|a: &(String, String), b| a.1.cmp(&b.1));
    schema.release = history
        .last()
        .map(|(v, _)| v.trim().trim_start_matches(['v', 'V']).to_string());
    let mut unchecked = Vec::new();
    if let Ending::Truncated(why) = &ending {
        unchecked.push(UncheckedPart {
            part: "dump".into(),
            reason: format!("{why}; rows after the cut are not in it"),
        });
    }
    if bad_rows > 0 {
        unchecked.push(UncheckedPart {
            part: "dump".into(),
            reason: format!("{bad_rows} COPY lines do not have their table's column count"),
        });
    }
    for (table, need) in [
        ("person", &["thumbnailPath", "ownerId"][..]),
        ("asset_file", &["assetId", "type", "path"][..]),
        ("asset_files", &["assetId", "type", "path"][..]),
    ] {
        if let Some(c) = cols.get(table) {
            if let Some(m) = need.iter().find(|n| !c.contains(**n)) {
                unchecked.push(UncheckedPart {
                    part: table.trim_end_matches('s').into(),
                    reason: format!("column \"{m}\" does not exist"),
                });
            }
        }
    }
    let sorted = spill.finish().map_err(io)?;
    Ok(DumpRows {
        info: SourceInfo {
            schema,
            media_location,
            libraries,
            total_rows: None,
        },
        database: r.sections[section].clone(),
        ending,
        dumped_from: r.server_version.clone(),
        unchecked,
        sorted,
    })
}

fn open_block(h: CopyHeader) -> Block {
    Block {
        col: h
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| (c.clone(), i))
            .collect(),
        table: h.table,
    }
}

fn text(v: Option<&[u8]>) -> Option<String> {
    v.map(|b| String::from_utf8_lossy(b).into_owned())
}

/// One data row of a needed table: a spilled record, or a fact kept aside.
fn take_row(
    b: &Block,
    f: &[Option<Vec<u8>>],
    spill: &mut Spill,
    media_location: &mut Option<String>,
    libraries: &mut Vec<Library>,
    history: &mut Vec<(String, String)>,
) -> std::io::Result<()> {
    let g = |n: &str| b.get(f, n);
    match b.table.as_str() {
        "asset" | "assets" => {
            let Some(id) = g("id") else { return Ok(()) };
            let path_checksum = if b.has("checksumAlgorithm") {
                g("checksumAlgorithm") == Some(b"sha1-path")
            } else {
                g("isExternal").is_some_and(copy::boolean)
            };
            let (p, t) = if b.has("previewPath") {
                ("previewPath", "thumbnailPath")
            } else {
                ("resizePath", "webpPath")
            };
            let checksum = g("checksum").and_then(copy::bytea);
            let mut v = Fields::default();
            v.put(g("ownerId"))
                .put(g("libraryId"))
                .put(g("type"))
                .put(checksum.as_deref())
                .put(Some(if path_checksum { b"1" } else { b"0" }))
                .put(Some(if g("deletedAt").is_some() { b"1" } else { b"0" }))
                .put(g("originalPath"))
                .put(g(p))
                .put(g(t))
                .put(g("encodedVideoPath"))
                .put(g("sidecarPath"))
                .put(g("createdAt"));
            spill.push(&key(ASSET, &[id], TAG_ROW), &v.0)
        }
        "asset_exif" | "exif" => {
            let Some(id) = g("assetId") else {
                return Ok(());
            };
            let mut v = Fields::default();
            v.put(g("fileSizeInByte"));
            spill.push(&key(ASSET, &[id], TAG_SIZE), &v.0)
        }
        "asset_file" | "asset_files" => {
            let Some(id) = g("assetId") else {
                return Ok(());
            };
            let edited = g("isEdited").is_some_and(copy::boolean);
            let mut v = Fields::default();
            v.put(Some(g("type").unwrap_or_default()))
                .put(Some(if edited { b"1" } else { b"0" }))
                .put(Some(g("path").unwrap_or_default()));
            spill.push(&key(ASSET, &[id], TAG_FILE), &v.0)
        }
        "person" => {
            let path = g("thumbnailPath").unwrap_or_default();
            let owner = g("ownerId").unwrap_or_default();
            if path.is_empty() || !b.has("thumbnailPath") {
                return Ok(());
            }
            // v3.2 dropped `person.id`: a person is (group, owner), ordered so.
            let (k, id) = if b.has("id") {
                let id = g("id").unwrap_or_default();
                (key(PERSON, &[id], TAG_ROW), id)
            } else {
                let grp = g("personGroupId").unwrap_or_default();
                (key(PERSON, &[grp, owner], TAG_ROW), grp)
            };
            let mut v = Fields::default();
            v.put(Some(id)).put(Some(owner)).put(Some(path));
            spill.push(&k, &v.0)
        }
        "user" | "users" => {
            let path = g("profileImagePath").unwrap_or_default();
            let Some(id) = g("id").filter(|_| !path.is_empty()) else {
                return Ok(());
            };
            let mut v = Fields::default();
            v.put(Some(id)).put(Some(id)).put(Some(path));
            spill.push(&key(USER, &[id], TAG_ROW), &v.0)
        }
        "library" | "libraries" => {
            if let Some(id) = text(g("id")) {
                libraries.push(Library {
                    id,
                    import_paths: copy::text_array(&text(g("importPaths")).unwrap_or_default()),
                });
                libraries.sort_by(|a, b| a.id.cmp(&b.id));
            }
            Ok(())
        }
        "system_metadata" => {
            if g("key") == Some(b"MediaLocation") {
                *media_location = g("value")
                    .and_then(|v| serde_json::from_slice::<serde_json::Value>(v).ok())
                    .and_then(|v| v.get("location")?.as_str().map(str::to_string));
            }
            Ok(())
        }
        "version_history" => {
            if let Some(v) = text(g("version")) {
                history.push((v, text(g("createdAt")).unwrap_or_default()));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn opt_path(v: &Option<Vec<u8>>) -> Option<String> {
    v.clone().map(path_from_bytes)
}

fn opt_text(v: &Option<Vec<u8>>) -> Option<String> {
    v.as_deref()
        .map(|b| String::from_utf8_lossy(b).into_owned())
}

/// The group key of a record: its key without the tag.
fn group(k: &[u8]) -> &[u8] {
    &k[..k.len() - 1]
}

/// Builds one row out of the records of one group (all share the key without the tag).
fn build(
    records: &[(Vec<u8>, Vec<u8>)],
    kinds: &[FileKind],
    include_trashed: bool,
) -> Option<AssetRow> {
    let (k0, _) = records.first()?;
    let entity = k0[0];
    if entity != ASSET {
        let f = Fields::read(&records[0].1);
        let kind = if entity == PERSON {
            FileKind::PersonThumbnail
        } else {
            FileKind::ProfileImage
        };
        if !kinds.is_empty() && !kinds.contains(&kind) {
            return None;
        }
        let entity = if entity == PERSON {
            Entity::Person
        } else {
            Entity::User
        };
        return Some(AssetRow::one_file(
            entity,
            opt_text(&f[0]).unwrap_or_default(),
            opt_text(&f[1]).unwrap_or_default(),
            FileRef {
                kind,
                db_path: opt_path(&f[2]).unwrap_or_default(),
                edited: false,
            },
        ));
    }
    // An asset_file or exif row without its asset is not a reference (the live query starts
    // from the asset table).
    if *k0.last()? != TAG_ROW {
        return None;
    }
    let a = Fields::read(&records[0].1);
    let trashed = a.get(5).and_then(|v| v.as_deref()) == Some(b"1");
    if trashed && !include_trashed {
        return None;
    }
    let id = String::from_utf8_lossy(&k0[1..k0.len() - 2]).into_owned();
    let mut size = None;
    let mut files = Vec::new();
    for (k, v) in records.iter().skip(1) {
        let f = Fields::read(v);
        match *k.last()? {
            TAG_SIZE => size = opt_text(&f[0]).and_then(|s| s.trim().parse::<i64>().ok()),
            TAG_FILE => {
                let t = opt_text(&f[0]).unwrap_or_default();
                let e = opt_text(&f[1]).unwrap_or_default();
                files.push(format!("{t}:{e}:{}", opt_path(&f[2]).unwrap_or_default()));
            }
            _ => {}
        }
    }
    let cols = AssetColumns {
        id,
        owner: opt_text(&a[0]).unwrap_or_default(),
        library: opt_text(&a[1]),
        asset_type: opt_text(&a[2]),
        checksum: a[3].clone(),
        path_checksum: Some(a[4].as_deref() == Some(b"1")),
        size,
        trashed,
        original: opt_path(&a[6]),
        preview: opt_path(&a[7]),
        thumbnail: opt_path(&a[8]),
        encoded: opt_path(&a[9]),
        sidecar: opt_path(&a[10]),
        files: None,
    };
    let mut row = cols.into_row(&[]);
    push_asset_files(files, &mut row.files);
    if !kinds.is_empty() {
        row.files.retain(|f| kinds.contains(&f.kind));
    }
    Some(row)
}

impl DumpRows {
    /// A [`Source`] streaming the dump's rows in the live source's order, `batch` rows a page.
    pub(crate) fn source(
        &self,
        kinds: &[FileKind],
        include_trashed: bool,
        batch: usize,
    ) -> Result<Source> {
        let mut merge = self.sorted.merge().map_err(|source| Error::Io {
            path: std::env::temp_dir(),
            source,
        })?;
        let (tx, rx) = sync_channel(2);
        let kinds = kinds.to_vec();
        let batch = batch.max(1);
        let worker = std::thread::Builder::new()
            .name("immich-integrity-dump".into())
            .spawn(move || {
                let mut page = Vec::with_capacity(batch);
                let mut records: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
                loop {
                    let next = match merge.next_record() {
                        Ok(n) => n,
                        Err(e) => {
                            let _ = tx.send(Err(Error::Io {
                                path: std::env::temp_dir(),
                                source: e,
                            }));
                            return;
                        }
                    };
                    let same = match (&next, records.first()) {
                        (Some((k, _)), Some((k0, _))) => group(k) == group(k0),
                        _ => false,
                    };
                    if !same && !records.is_empty() {
                        if let Some(row) = build(&records, &kinds, include_trashed) {
                            page.push(row);
                        }
                        records.clear();
                        if page.len() >= batch && tx.send(Ok(std::mem::take(&mut page))).is_err() {
                            return;
                        }
                    }
                    match next {
                        Some(r) => records.push(r),
                        None => break,
                    }
                }
                if !page.is_empty() {
                    let _ = tx.send(Ok(page));
                }
            })
            .map_err(|e| Error::InvalidArgument(format!("cannot spawn the dump reader: {e}")))?;
        Ok(Source::from_feed(
            self.info.clone(),
            rx,
            worker,
            self.unchecked.clone(),
        ))
    }

    /// `createdAt` of each asset in `ids`, as the dump stores it.
    pub(crate) fn created_at(&self, ids: &BTreeSet<String>) -> Result<HashMap<String, String>> {
        let mut out = HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        let io = |source| Error::Io {
            path: std::env::temp_dir(),
            source,
        };
        let mut m = self.sorted.merge().map_err(io)?;
        while let Some((k, v)) = m.next_record().map_err(io)? {
            if k[0] != ASSET {
                break;
            }
            if k.last() != Some(&TAG_ROW) {
                continue;
            }
            let id = String::from_utf8_lossy(&k[1..k.len() - 2]).into_owned();
            if ids.contains(&id) {
                if let Some(c) = Fields::read(&v).get(11).and_then(opt_text) {
                    out.insert(id, c);
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "00000000-0000-4000-8000-00000000000a";
    const B: &str = "00000000-0000-4000-8000-00000000000b";
    const U: &str = "00000000-0000-4000-8000-0000000000ff";

    fn section(db: &str) -> String {
        format!(
            "\\connect {db}\n\
             CREATE TABLE public.asset (\n    id uuid NOT NULL,\n    \"ownerId\" uuid,\n    \"originalPath\" text\n);\n\
             CREATE TABLE public.\"user\" (\n    id uuid NOT NULL\n);\n\
             COPY public.asset (id, \"ownerId\", \"libraryId\", type, \"originalPath\", checksum, \
             \"deletedAt\", \"createdAt\") FROM stdin;\n\
             {B}\t{U}\t\\N\tIMAGE\t/data/upload/b\\tx.jpg\t\\\\x0aff\t\\N\t2026-07-26 03:10:00+00\n\
             {A}\t{U}\t\\N\tIMAGE\t/data/upload/a.jpg\t\\N\t\\N\t2026-07-26 03:00:00.5+00\n\
             \\.\n\
             COPY public.asset_file (id, \"assetId\", type, path, \"isEdited\") FROM stdin;\n\
             1\t{A}\tthumbnail\t/data/thumbs/a_t.webp\tf\n\
             2\t{A}\tpreview\t/data/thumbs/a_p.jpeg\tt\n\
             \\.\n\
             COPY public.asset_exif (\"assetId\", \"fileSizeInByte\") FROM stdin;\n\
             {B}\t2940\n\
             \\.\n\
             COPY public.\"user\" (id, \"profileImagePath\") FROM stdin;\n\
             {U}\t/data/profile/u.jpg\n\
             \\.\n\
             COPY public.system_metadata (key, value) FROM stdin;\n\
             MediaLocation\t{{\"location\": \"/data\"}}\n\
             \\.\n\
             COPY public.version_history (id, \"createdAt\", version) FROM stdin;\n\
             1\t2026-07-01 00:00:00+00\t2.6.3\n\
             \\.\n\
             --\n-- PostgreSQL database dump complete\n--\n"
        )
    }

    fn write(body: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, body.as_bytes()).unwrap();
        f
    }

    #[test]
    fn rows_come_back_in_id_order_joined_with_sizes_and_files() {
        let body = format!(
            "--\n-- PostgreSQL database cluster dump\n--\n\\connect postgres\n{}\
             --\n-- PostgreSQL database cluster dump complete\n--\n",
            section("immich")
        );
        let f = write(&body);
        let rows = read(f.path(), None, &AtomicBool::new(false)).unwrap();
        assert_eq!(rows.ending, Ending::Complete);
        assert_eq!(rows.database, "immich");
        assert_eq!(rows.info.media_location.as_deref(), Some("/data"));
        assert_eq!(rows.info.schema.release.as_deref(), Some("2.6.3"));
        let src = rows.source(&[], false, 1).unwrap();
        let got: Vec<AssetRow> = src.flat_map(|b| b.unwrap()).collect();
        assert_eq!(got.len(), 3);
        assert_eq!((got[0].id.as_str(), got[1].id.as_str()), (A, B));
        let files: Vec<_> = got[0]
            .files
            .iter()
            .map(|f| (f.kind, f.db_path.as_str(), f.edited))
            .collect();
        assert_eq!(
            files,
            vec![
                (FileKind::Original, "/data/upload/a.jpg", false),
                (FileKind::Preview, "/data/thumbs/a_p.jpeg", true),
                (FileKind::Thumbnail, "/data/thumbs/a_t.webp", false),
            ]
        );
        assert_eq!(got[1].files[0].db_path, "/data/upload/b\tx.jpg");
        assert_eq!(got[1].checksum.as_deref(), Some(&[0x0a, 0xff][..]));
        assert_eq!(got[1].original_size, Some(2940));
        assert_eq!(got[2].entity, Entity::User);
        let created = rows
            .created_at(&[A.to_string()].into_iter().collect())
            .unwrap();
        assert_eq!(created[A], "2026-07-26 03:00:00.5+00");
    }

    #[test]
    fn two_immich_databases_are_an_error_naming_both_and_a_cut_dump_is_truncated() {
        let f = write(&format!("{}{}", section("immich"), section("immich_old")));
        let e = read(f.path(), None, &AtomicBool::new(false)).err().unwrap();
        let m = e.to_string();
        assert!(m.contains("immich, immich_old"), "{m}");
        let whole = section("immich");
        let f = write(&whole[..whole.find("COPY public.asset_exif").unwrap()]);
        let rows = read(f.path(), None, &AtomicBool::new(false)).unwrap();
        assert!(matches!(rows.ending, Ending::Truncated(_)));
        assert!(rows.unchecked.iter().any(|u| u.part == "dump"));
    }
}
