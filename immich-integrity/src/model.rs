//! Plain data that flows through the pipeline: rows in, findings out.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Which file of an asset (or person / user) a [`FileRef`] points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    Original,
    Sidecar,
    Preview,
    Thumbnail,
    Fullsize,
    EncodedVideo,
    PersonThumbnail,
    ProfileImage,
}

impl FileKind {
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

/// What is wrong with a file. Ordered from most to least specific (DESIGN §1):
/// when several apply, the classifier reports the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    OutsideRoot,
    MountMissing,
    PermissionDenied,
    NotAFile,
    Missing,
    Moved,
    Empty,
    Truncated,
    Corrupt,
    SizeMismatch,
    ChecksumMismatch,
    Bitrot,
}

impl Fault {
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
    Relink,
    Regenerate,
    FixPermissions,
    RestoreFromBackup,
    None,
}

impl Repair {
    pub fn as_str(self) -> &'static str {
        match self {
            Repair::Relink => "relink",
            Repair::Regenerate => "regenerate",
            Repair::FixPermissions => "fix_permissions",
            Repair::RestoreFromBackup => "restore_from_backup",
            Repair::None => "none",
        }
    }
}

/// How deep to look at each file (DESIGN §1). Each level includes the previous ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// One `openat2` + `fstat` per file: missing, moved, not a file, empty, permission denied.
    Exists,
    /// Also read each file's head and tail: format magic, end markers, box sizes, recorded size.
    Quick,
    /// Also decode each file: images with the `image` crate under memory limits plus a strict
    /// FFmpeg pass for JPEG, videos by decoding their first frames (see [`crate::decode`]).
    Full,
    /// Also SHA-1 every original against Immich's `checksum` (skipping path checksums).
    Hash,
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
                "unknown level {s:?}; available: exists, quick, full, hash"
            )),
        }
    }
}

/// What kind of row a [`AssetRow`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entity {
    Asset,
    Person,
    User,
}

/// One path stored in the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
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
    pub entity: Entity,
    pub id: String,
    pub owner_id: String,
    pub library_id: Option<String>,
    /// `IMAGE`, `VIDEO`, ...; empty for persons and users.
    pub asset_type: String,
    /// SHA-1 stored in `checksum` (of the content, unless `checksum_is_of_path`).
    pub checksum: Option<Vec<u8>>,
    /// External-library assets hash `"path:" + path`, not the content.
    pub checksum_is_of_path: bool,
    /// `asset_exif.fileSizeInByte` when Immich recorded it.
    pub original_size: Option<u64>,
    pub trashed: bool,
    pub files: Vec<FileRef>,
}

/// One faulty file, or one missing mount. The field names are the output contract (DESIGN §2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub asset_id: Option<String>,
    pub owner_id: Option<String>,
    pub file: Option<FileKind>,
    pub db_path: Option<String>,
    pub host_path: Option<String>,
    pub fault: Fault,
    pub found_at: Option<String>,
    pub repair: Repair,
    pub detail: String,
    /// For `mount_missing`: how many referenced files live under the missing root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affected: Option<u64>,
    /// For `moved`: the path to store instead, in the row's own spelling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relink_to: Option<String>,
}
