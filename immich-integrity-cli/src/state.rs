//! The state folder: where journals, regenerate state files and restore lists go when no flag
//! names a file, so they do not depend on the folder a command was started in.
//!
//! `IMMICH_INTEGRITY_STATE_DIR`, else `$XDG_STATE_HOME/immich-integrity`, else
//! `~/.local/state/immich-integrity`. Created (mode 0700) when first needed.

use std::path::{Path, PathBuf};

/// The environment variable that overrides the state folder.
pub(crate) const STATE_DIR_ENV: &str = "IMMICH_INTEGRITY_STATE_DIR";

/// The state folder (not created).
pub(crate) fn dir() -> PathBuf {
    let from_env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    if let Some(d) = from_env(STATE_DIR_ENV) {
        return d;
    }
    if let Some(d) = from_env("XDG_STATE_HOME") {
        return d.join("immich-integrity");
    }
    let home = from_env("HOME").unwrap_or_else(|| PathBuf::from("/tmp"));
    home.join(".local/state/immich-integrity")
}

/// Creates the state folder (and its parents) with mode 0700.
pub(crate) fn ensure(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create the state folder {}: {e}", dir.display()))
}

/// `p` made absolute against the current folder (not resolving symlinks: the admin's spelling).
pub(crate) fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|c| c.join(p))
            .unwrap_or_else(|_| p.to_path_buf())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_flags_become_absolute() {
        let a = absolute(Path::new("x/relink.journal"));
        assert!(a.is_absolute() && a.ends_with("x/relink.journal"), "{a:?}");
    }
}
