//! How far a rolling verification got: the summary's `coverage` (see [`Coverage`]).

use serde::{Deserialize, Serialize};

/// How far a rolling (time-limited) verification with a manifest got: where this run
/// started and stopped, how many files the manifest has verified, and how old the oldest
/// verification is. N time-limited runs cover the library: each resumes after the last page
/// of the one before, and a run that reaches the end clears the point (the next starts over).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    /// This run started after this asset id (`None`: from the first).
    pub resumed_after: Option<String>,
    /// The next run starts after this asset id (`None`: this run reached the end, the next
    /// starts from the first).
    pub next_after: Option<String>,
    /// Files the manifest holds a verification for.
    pub verified_files: u64,
    /// The oldest of those verifications (RFC 3339), and its age in seconds.
    pub oldest_verification: Option<String>,
    /// Age of the oldest verification, in seconds.
    pub oldest_age_s: Option<u64>,
}

/// The coverage summary of a run with a manifest (commits what is pending first).
pub(crate) fn coverage(
    m: &crate::check::manifest::Session,
    resumed_after: Option<String>,
) -> Option<Coverage> {
    if m.flush().is_err() {
        return None;
    }
    let manifest = m.manifest.lock().unwrap_or_else(|p| p.into_inner());
    let manifest = manifest.as_ref()?;
    let next_after = manifest.resume_after().ok()?;
    let (verified_files, oldest) = manifest.coverage().ok()?;
    let now = chrono::Utc::now().timestamp();
    Some(Coverage {
        resumed_after,
        next_after,
        verified_files,
        oldest_verification: oldest
            .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
            .map(|t| t.to_rfc3339()),
        oldest_age_s: oldest.map(|t| now.saturating_sub(t).max(0) as u64),
    })
}
