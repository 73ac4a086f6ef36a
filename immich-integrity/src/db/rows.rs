//! Decoding result rows into [`AssetRow`]s.

use crate::error::{Error, Result};
use crate::model::{AssetRow, Entity, FileKind, FileRef};
use sqlx::postgres::PgRow;
use sqlx::Row;

pub(super) fn get<'r, T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>>(
    r: &'r PgRow,
    col: &'static str,
) -> Result<T> {
    r.try_get(col).map_err(Error::query(col))
}

/// A path column read as bytes, so that one stored path that is not UTF-8 (a `SQL_ASCII`
/// database) becomes a finding naming its row instead of an error that stops the scan.
pub(super) fn get_path(r: &PgRow, col: &'static str) -> Result<Option<String>> {
    use sqlx::ValueRef;
    let v = r.try_get_raw(col).map_err(Error::query(col))?;
    if v.is_null() {
        return Ok(None);
    }
    let b = v
        .as_bytes()
        .map_err(|e| Error::query(col)(sqlx::Error::Decode(e)))?;
    Ok(Some(crate::model::path_from_bytes(b.to_vec())))
}

/// The `asset_file` array (`"type:edited:path"` items) read as bytes, each path as
/// [`get_path`] reads one. `None` when the query has no such column.
pub(super) fn get_files(r: &PgRow) -> Option<Vec<String>> {
    let items = r
        .try_get_unchecked::<Option<Vec<Vec<u8>>>, _>("files")
        .ok()??;
    Some(
        items
            .into_iter()
            .map(|mut b| {
                // The type and flag are ASCII; only the path part can be anything.
                let head = b
                    .iter()
                    .position(|&c| c == b':')
                    .and_then(|t| {
                        b[t + 1..]
                            .iter()
                            .position(|&c| c == b':')
                            .map(|e| t + 2 + e)
                    })
                    .unwrap_or(0);
                let path = b.split_off(head);
                let mut item = String::from_utf8_lossy(&b).into_owned();
                item.push_str(&crate::model::path_from_bytes(path));
                item
            })
            .collect(),
    )
}

pub(super) fn push_path(files: &mut Vec<FileRef>, kind: FileKind, path: Option<String>) {
    if let Some(p) = path.filter(|p| !p.is_empty()) {
        files.push(FileRef {
            kind,
            db_path: p,
            edited: false,
        });
    }
}

/// One row of the asset page query, its columns decoded but not yet interpreted. Public for
/// the micro-benchmarks (`benches/hot.rs`), which build rows without a database.
#[doc(hidden)]
#[derive(Debug, Clone, Default)]
pub struct AssetColumns {
    /// `id`.
    pub id: String,
    /// `ownerId`.
    pub owner: String,
    /// `libraryId`.
    pub library: Option<String>,
    /// `type`.
    pub asset_type: Option<String>,
    /// `checksum`.
    pub checksum: Option<Vec<u8>>,
    /// Whether the checksum is of the path.
    pub path_checksum: Option<bool>,
    /// `fileSizeInByte` of the exif row.
    pub size: Option<i64>,
    /// `deletedAt` is set.
    pub trashed: bool,
    /// `originalPath`.
    pub original: Option<String>,
    /// `previewPath` (schemas before `asset_file`).
    pub preview: Option<String>,
    /// `thumbnailPath` (schemas before `asset_file`).
    pub thumbnail: Option<String>,
    /// `encodedVideoPath`.
    pub encoded: Option<String>,
    /// `sidecarPath`.
    pub sidecar: Option<String>,
    /// The `asset_file` rows as `"type:edited:path"` strings.
    pub files: Option<Vec<String>>,
}

impl AssetColumns {
    /// The row a scan checks; `kinds` keeps only those file kinds (empty: all).
    pub fn into_row(self, kinds: &[FileKind]) -> AssetRow {
        let mut files = Vec::with_capacity(4);
        // An empty originalPath is still a reference: report it instead of skipping it.
        files.push(FileRef {
            kind: FileKind::Original,
            db_path: self.original.unwrap_or_default(),
            edited: false,
        });
        push_path(&mut files, FileKind::Preview, self.preview);
        push_path(&mut files, FileKind::Thumbnail, self.thumbnail);
        push_path(&mut files, FileKind::EncodedVideo, self.encoded);
        push_path(&mut files, FileKind::Sidecar, self.sidecar);
        if let Some(list) = self.files {
            push_asset_files(list, &mut files);
        }
        if !kinds.is_empty() {
            files.retain(|f| kinds.contains(&f.kind));
        }
        AssetRow {
            entity: Entity::Asset,
            id: self.id,
            owner_id: self.owner,
            library_id: self.library,
            asset_type: self.asset_type.unwrap_or_default(),
            checksum: self.checksum,
            checksum_is_of_path: self.path_checksum.unwrap_or(false),
            original_size: self.size.and_then(|s| u64::try_from(s).ok()),
            trashed: self.trashed,
            files,
        }
    }
}

/// Appends the files of an `asset_file` array (`"type:edited:path"` items, see
/// `asset_select`). Each item's string becomes the path in place (no second allocation).
/// Items without two colons and unknown future types are skipped rather than guessed at; an
/// empty path is kept and reported (missing, "empty path"), like an empty originalPath.
pub(crate) fn push_asset_files(mut list: Vec<String>, files: &mut Vec<FileRef>) {
    // Sorted here, not by the server: an ordered aggregate costs a sort per asset there
    // (~9 % of the backend's CPU at 1 M), a handful of strings costs nothing here.
    list.sort_unstable();
    for mut item in list {
        let Some(t) = item.find(':') else { continue };
        let Some(e) = item[t + 1..].find(':').map(|e| t + 1 + e) else {
            continue;
        };
        let Some(kind) = FileKind::from_asset_file_type(&item[..t]) else {
            continue;
        };
        let edited = &item[t + 1..e] == "1";
        item.drain(..=e);
        files.push(FileRef {
            kind,
            db_path: item,
            edited,
        });
    }
}

pub(super) fn decode_single(r: &PgRow, entity: Entity, kind: FileKind) -> Result<AssetRow> {
    Ok(AssetRow::one_file(
        entity,
        get(r, "id")?,
        get(r, "owner")?,
        FileRef {
            kind,
            db_path: get_path(r, "path")?.unwrap_or_default(),
            edited: false,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FileKind;

    #[test]
    fn asset_file_items_become_paths_in_place_in_sorted_order() {
        // The server sends them in no particular order; a row's files come out sorted (by
        // type, then edited, then path), so a report lists them the same way every run.
        let mut files = Vec::new();
        push_asset_files(
            vec![
                "preview:0:/data/thumbs/u/ab/cd/x_preview.jpeg".into(),
                "thumbnail:1:/data/thumbs/u/ab/cd/x:odd:name.webp".into(),
                "fullsize:0:".into(),
                "future_kind:0:/data/x".into(),
                "no-colons".into(),
                "preview:0".into(),
            ],
            &mut files,
        );
        let got: Vec<_> = files
            .iter()
            .map(|f| (f.kind, f.db_path.as_str(), f.edited))
            .collect();
        assert_eq!(
            got,
            vec![
                (FileKind::Fullsize, "", false),
                (
                    FileKind::Preview,
                    "/data/thumbs/u/ab/cd/x_preview.jpeg",
                    false
                ),
                (
                    FileKind::Thumbnail,
                    "/data/thumbs/u/ab/cd/x:odd:name.webp",
                    true
                ),
            ]
        );
    }
}
