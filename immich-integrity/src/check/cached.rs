//! Checking through the manifest: ask it whether a file must be read, read it once (blake3,
//! and SHA-1 when the level compares it), classify what was read, and tell the manifest.
//! The manifest stores and answers; `bitrot` is decided here.

use super::checker::{Checker, Fault0};
use super::context::FileCtx;
use super::manifest::{Entry, Recall, Session};
use crate::fs::blocks::digest;
use crate::model::{Fault, FileKind, Level};
use std::sync::atomic::Ordering;

impl Checker {
    /// The content check of one file with the manifest: skip it, or read it once.
    pub(super) fn through_manifest(&self, m: &Session, f: FileCtx<'_>) -> Option<Fault0> {
        let level = self.level;
        let content_sum = match (&f.row.checksum, f.row.checksum_is_of_path) {
            (Some(sum), false) if level >= Level::Hash && f.kind == FileKind::Original => {
                Some(sum.as_slice())
            }
            _ => None,
        };
        let old = match m.recall(&f.host, level, &f.meta, content_sum) {
            Recall::Vouched => return self.content_ok(f, None),
            Recall::Read(old) => old,
        };
        // One pass over the content: blake3 always, SHA-1 when this level compares it.
        let Ok(file) = f.root.open_read(f.rel) else {
            // The format check opens it again and names the reason (EACCES, ...).
            return self.quick(f, None);
        };
        let with_sha1 = content_sum.is_some();
        let (b3, sha1, n) = match self.on_cpu(|| digest(file, with_sha1)) {
            Ok(d) => d,
            Err(e) => {
                return Some(Fault0::new(
                    Fault::Corrupt,
                    Some(f.host),
                    format!("read error: {e}"),
                ))
            }
        };
        self.bytes_read.fetch_add(n, Ordering::Relaxed);
        let (host, meta) = (f.host.clone(), f.meta);
        let mut verdict = self.quick(f, sha1);
        let rot = old
            .as_ref()
            .filter(|o| o.size == meta.size && o.mtime_ns == meta.mtime_ns && o.blake3 != b3);
        if let Some(o) = rot {
            let what = format!(
                "content changed while size and mtime did not: blake3 was {}, now {}",
                hex::encode(o.blake3),
                hex::encode(b3)
            );
            verdict = match verdict {
                None => Some(Fault0::new(Fault::Bitrot, Some(host.clone()), what)),
                Some(v) if v.fault == Fault::ChecksumMismatch => Some(Fault0::new(
                    Fault::Bitrot,
                    Some(host.clone()),
                    format!("{what}; {}", v.detail),
                )),
                Some(mut v) => {
                    v.detail = format!("{}; also bitrot: {what}", v.detail);
                    Some(v)
                }
            };
        }
        let seen = Entry {
            size: meta.size,
            mtime_ns: meta.mtime_ns,
            ino: meta.ino,
            blake3: b3,
            sha1,
            verdict: verdict.as_ref().map(|v| v.fault),
            level,
            verified_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
        };
        m.record(host, seen, rot);
        verdict
    }
}
