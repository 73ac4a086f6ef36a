//! Plain data that flows through the pipeline: rows in, findings out.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;

/// Which file of an asset (or person / user) a [`FileRef`] points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// The uploaded or imported file itself (`originalPath`).
    Original,
    /// The XMP sidecar next to the original.
    Sidecar,
    /// The large JPEG/WebP preview Immich renders.
    Preview,
    /// The small timeline thumbnail.
    Thumbnail,
    /// The full-size rendition of formats browsers cannot show (v1.127+).
    Fullsize,
    /// The transcoded video Immich plays back.
    EncodedVideo,
    /// A face cluster's thumbnail (`person.thumbnailPath`).
    PersonThumbnail,
    /// A user's profile picture (`user.profileImagePath`).
    ProfileImage,
}

impl FileKind {
    /// Every kind, in report order.
    pub const ALL: [FileKind; 8] = [
        FileKind::Original,
        FileKind::Sidecar,
        FileKind::Preview,
        FileKind::Thumbnail,
        FileKind::Fullsize,
        FileKind::EncodedVideo,
        FileKind::PersonThumbnail,
        FileKind::ProfileImage,
    ];

    /// The snake_case name used in reports and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::Original => "original",
            FileKind::Sidecar => "sidecar",
            FileKind::Preview => "preview",
            FileKind::Thumbnail => "thumbnail",
            FileKind::Fullsize => "fullsize",
            FileKind::EncodedVideo => "encoded_video",
            FileKind::PersonThumbnail => "person_thumbnail",
            FileKind::ProfileImage => "profile_image",
        }
    }

    /// Parses Immich's `asset_file.type` values.
    pub fn from_asset_file_type(t: &str) -> Option<FileKind> {
        Some(match t {
            "preview" => FileKind::Preview,
            "thumbnail" => FileKind::Thumbnail,
            "fullsize" => FileKind::Fullsize,
            "sidecar" => FileKind::Sidecar,
            "encoded_video" => FileKind::EncodedVideo,
            _ => return None,
        })
    }

    /// Files Immich derives from the original and can regenerate.
    pub fn is_derivative(self) -> bool {
        matches!(
            self,
            FileKind::Preview | FileKind::Thumbnail | FileKind::Fullsize | FileKind::EncodedVideo
        )
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for FileKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        FileKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown file kind {s:?}"))
    }
}

/// What is wrong with a file. Ordered from most to least specific (README, Design notes):
/// when several apply, the classifier reports the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// The stored path climbs out of its root with `..` or a symlink: not followed.
    OutsideRoot,
    /// The host folder a whole mapped root should be at is absent or empty.
    MountMissing,
    /// The server's user cannot read the file or search a folder above it.
    PermissionDenied,
    /// Something other than a regular file is at the path.
    NotAFile,
    /// Nothing is at the path, nor anywhere it could have moved to.
    Missing,
    /// The file is missing at its path but was found elsewhere (relinkable).
    Moved,
    /// The file has zero bytes.
    Empty,
    /// The file ends before its content does.
    Truncated,
    /// The content is damaged (bad structure, bad magic).
    Corrupt,
    /// The size differs from the size Immich recorded.
    SizeMismatch,
    /// The content's SHA-1 differs from Immich's `checksum`.
    ChecksumMismatch,
    /// The content changed although size and modification time did not.
    Bitrot,
    /// A whole root (the media root, an external library's share) stopped answering: an
    /// operation under it did not return within the I/O timeout (a hung network share). Its
    /// remaining files were not checked (`affected`); the report is incomplete.
    Unreachable,
}

impl Fault {
    /// The snake_case name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Fault::OutsideRoot => "outside_root",
            Fault::MountMissing => "mount_missing",
            Fault::PermissionDenied => "permission_denied",
            Fault::NotAFile => "not_a_file",
            Fault::Missing => "missing",
            Fault::Moved => "moved",
            Fault::Empty => "empty",
            Fault::Truncated => "truncated",
            Fault::Corrupt => "corrupt",
            Fault::SizeMismatch => "size_mismatch",
            Fault::ChecksumMismatch => "checksum_mismatch",
            Fault::Bitrot => "bitrot",
            Fault::Unreachable => "unreachable",
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The repair an admin (or `relink` / `regenerate`) should apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Repair {
    /// Point the row at where the file really is (`immich-integrity relink`).
    Relink,
    /// Let Immich regenerate the derived file (its thumbnail / transcode jobs).
    Regenerate,
    /// Give the server's user read access (and search access to the folders).
    FixPermissions,
    /// Only a backup has this file.
    RestoreFromBackup,
    /// Mount the absent root (an external library's import path, a media top folder), or
    /// point `--map` at it. Used by `explain-report`; `scan` reports such a root as
    /// `mount_missing` with repair `none` and the mount in its detail.
    Mount,
    /// Nothing to do automatically (a person must look).
    None,
}

impl Repair {
    /// The snake_case name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Repair::Relink => "relink",
            Repair::Regenerate => "regenerate",
            Repair::FixPermissions => "fix_permissions",
            Repair::RestoreFromBackup => "restore_from_backup",
            Repair::Mount => "mount",
            Repair::None => "none",
        }
    }
}

/// How deep to look at each file (README, Design notes), ordered by cost. Each level includes
/// the previous ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// One `fstatat` per file (through a cached folder handle opened beneath the root): missing,
    /// moved, not a file, empty, permission denied.
    Exists,
    /// Also read each file's head and tail: format magic, end markers, box sizes, item extents,
    /// recorded size.
    Quick,
    /// Also SHA-1 every original against Immich's `checksum` (skipping path checksums). Reads
    /// every original once, decodes nothing: what Immich's own integrity job compares.
    Hash,
    /// Also decode every file: images with the `image` crate under memory limits, a strict
    /// FFmpeg pass for JPEG, HEIF/AVIF through libheif, JPEG XL, camera RAW sensor data, videos
    /// by decoding their first frames (see [`crate::decode`]). The deepest and dearest level.
    Full,
}

impl std::str::FromStr for Level {
    type Err = String;
    fn from_str(s: &str) -> Result<Level, String> {
        match s {
            "exists" => Ok(Level::Exists),
            "quick" => Ok(Level::Quick),
            "full" => Ok(Level::Full),
            "hash" => Ok(Level::Hash),
            _ => Err(format!(
                "unknown level {s:?}; available: exists, quick, hash, full"
            )),
        }
    }
}

/// What kind of row a [`AssetRow`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entity {
    /// A row of the asset table.
    Asset,
    /// A row of `person` (face cluster).
    Person,
    /// A row of the user table.
    User,
}

/// One path stored in the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// Which file of the row this is.
    pub kind: FileKind,
    /// The path exactly as Immich stored it (container path, or relative `upload/...`).
    pub db_path: String,
    /// `asset_file.isEdited` (v2.5+): an edited rendition of the derivative.
    #[serde(default)]
    pub edited: bool,
}

/// One asset (or person / user) with every file it references.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssetRow {
    /// What kind of row this is.
    pub entity: Entity,
    /// The row's id (asset, person or user id).
    pub id: String,
    /// The owning user's id (the user's own id for a user row).
    pub owner_id: String,
    /// The external library, or `None` for uploaded assets.
    pub library_id: Option<String>,
    /// `IMAGE`, `VIDEO`, ...; empty for persons and users.
    pub asset_type: String,
    /// SHA-1 stored in `checksum` (of the content, unless `checksum_is_of_path`).
    pub checksum: Option<Vec<u8>>,
    /// External-library assets hash `"path:" + path`, not the content.
    pub checksum_is_of_path: bool,
    /// `asset_exif.fileSizeInByte` when Immich recorded it.
    pub original_size: Option<u64>,
    /// The asset is in the trash (`deletedAt` set).
    pub trashed: bool,
    /// Every path the row references.
    pub files: Vec<FileRef>,
}

impl AssetRow {
    /// A row that points at one file only (a person's face, a user's profile image, or one
    /// file of an asset checked alone): no checksum, library or trash state to go with it.
    pub fn one_file(entity: Entity, id: String, owner_id: String, file: FileRef) -> AssetRow {
        AssetRow {
            entity,
            id,
            owner_id,
            library_id: None,
            asset_type: String::new(),
            checksum: None,
            checksum_is_of_path: false,
            original_size: None,
            trashed: false,
            files: vec![file],
        }
    }
}

/// One faulty file, or one missing mount. The field names are the output contract (README, Findings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The asset (or person, or user) id; `None` for a missing mount.
    pub asset_id: Option<String>,
    /// The owning user's id.
    pub owner_id: Option<String>,
    /// Which file of the row; `None` for a missing mount.
    pub file: Option<FileKind>,
    /// The path as Immich stored it.
    pub db_path: Option<String>,
    /// Where that path is on this host.
    pub host_path: Option<String>,
    /// What is wrong.
    pub fault: Fault,
    /// For `moved`: the host path where the file was found.
    pub found_at: Option<String>,
    /// The repair to apply.
    pub repair: Repair,
    /// A sentence for people: what was seen and why it is this fault.
    pub detail: String,
    /// For `mount_missing`: how many referenced files live under the missing root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affected: Option<u64>,
    /// For `moved`: the path to store instead, in the row's own spelling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relink_to: Option<String>,
}

/// One untracked file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Orphan {
    /// Host path (below the canonical media root).
    pub path: PathBuf,
    /// Path relative to the media root, e.g. `upload/upload/<user>/ab/cd/x.jpg`.
    pub rel: String,
    /// File size in bytes.
    pub size: u64,
    /// The row whose missing file this is, when one matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_candidate: Option<MovedCandidate>,
}

impl Orphan {
    /// The `moved` finding this orphan stands for, when it matches a row: the form `relink
    /// --from` reads, so an orphans report can drive a relink like a scan report.
    pub fn as_moved_finding(&self) -> Option<Finding> {
        let c = self.moved_candidate.as_ref()?;
        Some(Finding {
            asset_id: Some(c.row_id.clone()),
            owner_id: Some(c.owner_id.clone()),
            file: Some(c.file),
            db_path: Some(c.db_path.clone()),
            host_path: None,
            fault: Fault::Moved,
            found_at: Some(self.path.to_string_lossy().into_owned()),
            repair: Repair::Relink,
            detail: c.detail.clone(),
            affected: None,
            relink_to: Some(c.relink_to.clone()),
        })
    }
}

/// A row whose file is not at its stored path but matches this orphan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovedCandidate {
    /// Asset id (person id for `person_thumbnail`, user id for `profile_image`).
    pub row_id: String,
    /// Id of the user owning the row.
    pub owner_id: String,
    /// Which of the row's files is missing.
    pub file: FileKind,
    /// The path the row stores now (where the file is not).
    pub db_path: String,
    /// The value `relink` would store, in the spelling the schema generation uses.
    pub relink_to: String,
    /// Why the orphan matches (size, SHA-1 or file name) and where to relink.
    pub detail: String,
}

/// Marks a [`FileRef::db_path`] whose stored bytes are not UTF-8 (possible in a `SQL_ASCII`
/// database): the path that follows it is [`escape_bytes`]'s spelling, which names the row
/// but opens nothing. PostgreSQL text never holds a NUL, so no real path starts with it.
pub(crate) const NOT_UTF8: char = '\0';

/// `bytes` as text: valid UTF-8 as it is, a backslash as `\\`, every byte that is not UTF-8 as
/// `\ooo` (octal, as `ls -b` writes it).
pub(crate) fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        out.push_str(&chunk.valid().replace('\\', "\\\\"));
        for b in chunk.invalid() {
            out.push_str(&format!("\\{b:03o}"));
        }
    }
    out
}

/// A stored path read as bytes: the text, or [`NOT_UTF8`] and its escaped spelling.
pub(crate) fn path_from_bytes(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => format!("{NOT_UTF8}{}", escape_bytes(e.as_bytes())),
    }
}
