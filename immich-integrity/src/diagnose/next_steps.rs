//! What to run next: the ordered commands that fix what a scan found.
//!
//! A [`Tally`] is fed every finding as the scan streams it (it keeps counts, and only the
//! paths a `chown`/`chmod` needs), and [`plan`] turns it into [`NextStep`]s: the relink dry run
//! and apply, the exact `chown`/`chmod` for the server's uid, the regenerate calls, the list of
//! files only a backup has, and the manual steps (a missing mount, a path that leaves its root).
//! Each runnable step is an argv (never a shell line to parse back); [`shell_line`] quotes it for
//! people. Nothing here prints or writes: the caller decides where steps and the list go.

use crate::fs::access::Identity;
use crate::model::{Fault, FileKind, Finding, Repair};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Paths per `chown`/`chmod` command line (far below the kernel's argument limit).
const PATHS_PER_COMMAND: usize = 200;

/// Whether Immich should run while a step is carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ImmichState {
    /// It may keep running (the step changes only what it re-checks, row by row).
    Either,
    /// It must run (the step asks its API to queue jobs).
    Running,
    /// Stop it first (`docker compose down`), start it after (volumes are read at start).
    Stopped,
}

/// What a step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StepKind {
    /// Mount an absent root (a person edits the compose file's volumes).
    Mount,
    /// `relink` without `--apply`: print the plan.
    RelinkDryRun,
    /// `relink --apply`.
    Relink,
    /// `chown UID:GID` on the files and folders the server's user cannot read or search.
    Chown,
    /// `chmod u+rwX` on the same.
    Chmod,
    /// `regenerate` without `--apply`.
    RegenerateDryRun,
    /// `regenerate --apply`.
    Regenerate,
    /// `refresh-metadata` without `--apply`.
    RefreshMetadataDryRun,
    /// `refresh-metadata --apply`.
    RefreshMetadata,
    /// Run Immich's face detection job for missing person thumbnails (a person does it).
    FaceThumbnails,
    /// Restore the listed files from a backup (a person does it).
    RestoreFromBackup,
    /// Look at paths that leave their root (a person does it).
    Review,
    /// Scan again to confirm.
    Rescan,
}

/// One thing to do, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextStep {
    /// 1-based position: run the steps in this order.
    pub order: u32,
    /// What the step does.
    pub step: StepKind,
    /// A sentence for people.
    pub title: String,
    /// The command, one argument per element; `None` when a person must do it.
    pub argv: Option<Vec<String>>,
    /// The same command quoted for a POSIX shell.
    pub command: Option<String>,
    /// Whether Immich should run meanwhile.
    pub immich: ImmichState,
    /// How many files (or rows) the step is about.
    pub files: u64,
    /// For [`StepKind::RestoreFromBackup`]: the file listing the files to restore.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list: Option<PathBuf>,
    /// Environment the command reads (names only, never values).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs_env: Vec<String>,
}

/// What a report's findings add up to, for the summary and the next steps.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Findings per repair (`relink`, `regenerate`, ...).
    pub by_repair: BTreeMap<String, u64>,
    /// Files under missing mounts (the sum of their `affected`).
    pub mount_affected: u64,
    mounts: BTreeMap<String, u64>,
    relink: u64,
    derivatives: u64,
    sidecars: u64,
    person_thumbnails: u64,
    restore: u64,
    review: u64,
    denied: BTreeSet<PathBuf>,
}

impl Tally {
    /// Counts one finding. Returns the host path to put on the restore list when only a
    /// backup has the file.
    pub fn add(&mut self, f: &Finding) -> Option<String> {
        *self
            .by_repair
            .entry(f.repair.as_str().to_string())
            .or_default() += 1;
        if f.fault == Fault::MountMissing {
            let n = f.affected.unwrap_or(0);
            self.mount_affected += n;
            let root = f.host_path.clone().unwrap_or_default();
            *self.mounts.entry(root).or_default() += n;
            return None;
        }
        match f.repair {
            Repair::Relink => self.relink += 1,
            Repair::FixPermissions => {
                if let Some(h) = &f.host_path {
                    self.denied.insert(PathBuf::from(h));
                }
            }
            Repair::Regenerate => match f.file {
                Some(FileKind::Sidecar) => self.sidecars += 1,
                Some(FileKind::PersonThumbnail) => self.person_thumbnails += 1,
                _ => self.derivatives += 1,
            },
            Repair::RestoreFromBackup => {
                self.restore += 1;
                return Some(
                    f.host_path
                        .clone()
                        .or(f.db_path.clone())
                        .unwrap_or_default(),
                );
            }
            _ => self.review += 1,
        }
        None
    }

    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.by_repair.is_empty()
    }
}

/// How the commands are spelled: the program and the options the run itself used.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// The program, e.g. `/usr/local/bin/immich-integrity`.
    pub program: String,
    /// Connection and root options (`--env-file`, `--db-url` without password, `--media-root`,
    /// `--map`, `--as-user`), as the run was given them.
    pub library_args: Vec<String>,
    /// Selection options (`--owner`, `--kind`, ...), used where no report names the rows.
    pub selection_args: Vec<String>,
    /// The saved report (json or jsonl) the repairs can take with `--from`.
    pub report: Option<PathBuf>,
    /// The file listing what only a backup has.
    pub restore_list: Option<PathBuf>,
    /// Where journals and state files go.
    pub state_dir: PathBuf,
    /// The server's user (`chown` target); `None`: the scan judged access as itself.
    pub identity: Option<Identity>,
    /// Host folders the scan read media from: `chown` stays inside them.
    pub roots: Vec<PathBuf>,
}

impl Context {
    fn cmd(&self, sub: &str, extra: &[&str], from: bool) -> Vec<String> {
        let mut a = vec![self.program.clone(), sub.to_string()];
        a.extend(self.library_args.iter().cloned());
        match (&self.report, from) {
            (Some(r), true) => {
                a.push("--from".into());
                a.push(r.to_string_lossy().into_owned());
            }
            _ => a.extend(self.selection_args.iter().cloned()),
        }
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    }

    fn state(&self, name: &str) -> String {
        self.state_dir.join(name).to_string_lossy().into_owned()
    }
}

/// The steps that fix what `tally` counted, in the order to run them.
pub fn plan(t: &Tally, cx: &Context) -> Vec<NextStep> {
    let mut steps: Vec<NextStep> = Vec::new();
    let mut push = |step, title: String, argv: Option<Vec<String>>, immich, files: u64| {
        steps.push(NextStep {
            order: 0,
            step,
            title,
            command: argv.as_deref().map(shell_line),
            argv,
            immich,
            files,
            list: None,
            needs_env: Vec::new(),
        });
    };
    for (root, n) in &t.mounts {
        push(
            StepKind::Mount,
            format!(
                "mount the absent folder {root} ({n} files under it were not checked): fix the \
                 volume in docker-compose.yml, then restart Immich and scan again"
            ),
            None,
            ImmichState::Stopped,
            *n,
        );
    }
    if t.relink > 0 {
        let journal = cx.state("relink.journal");
        push(
            StepKind::RelinkDryRun,
            format!(
                "{} rows point where their file is not: see the plan",
                t.relink
            ),
            Some(cx.cmd("relink", &[], true)),
            ImmichState::Either,
            t.relink,
        );
        push(
            StepKind::Relink,
            "point them at where the files are (journaled; undo prints its command)".into(),
            Some(cx.cmd("relink", &["--apply", "--journal", &journal], true)),
            ImmichState::Either,
            t.relink,
        );
    }
    if !t.denied.is_empty() {
        let (uid, gid) = match &cx.identity {
            Some(i) => (i.uid, i.gids.first().copied().unwrap_or(i.uid)),
            None => (
                rustix::process::geteuid().as_raw(),
                rustix::process::getegid().as_raw(),
            ),
        };
        // Without --as-user the scan judged access as itself: so do the steps.
        let me = cx.identity.clone().unwrap_or_else(Identity::current);
        let fix = permission_targets(&t.denied, &cx.roots, Some(&me));
        for chunk in fix.chunks(PATHS_PER_COMMAND) {
            let paths = chunk.iter().map(|p| p.to_string_lossy().into_owned());
            let mut chown = vec!["chown".to_string(), format!("{uid}:{gid}"), "--".into()];
            chown.extend(paths.clone());
            let mut chmod = vec!["chmod".to_string(), "u+rwX".into(), "--".into()];
            chmod.extend(paths);
            push(
                StepKind::Chown,
                format!(
                    "give the server's user ({uid}:{gid}) the {} files and folders it cannot \
                     read or search",
                    chunk.len()
                ),
                Some(chown),
                ImmichState::Either,
                chunk.len() as u64,
            );
            push(
                StepKind::Chmod,
                "let their owner read them and search the folders".into(),
                Some(chmod),
                ImmichState::Either,
                chunk.len() as u64,
            );
        }
    }
    let server_env = vec!["IMMICH_SERVER".to_string(), "IMMICH_API_KEY".to_string()];
    for (n, sub, dry, apply, what, journal) in [
        (
            t.derivatives,
            "regenerate",
            StepKind::RegenerateDryRun,
            StepKind::Regenerate,
            "previews, thumbnails and encoded videos",
            "regenerate.journal",
        ),
        (
            t.sidecars,
            "refresh-metadata",
            StepKind::RefreshMetadataDryRun,
            StepKind::RefreshMetadata,
            "sidecars",
            "refresh-metadata.journal",
        ),
    ] {
        if n == 0 {
            continue;
        }
        let journal = cx.state(journal);
        let state = cx.state(&format!("{sub}.state"));
        let base = ["--via", "queue", "--journal", &journal, "--state", &state];
        push(
            dry,
            format!("{n} broken {what} Immich can rebuild: see the changes"),
            Some(cx.cmd(sub, &base, true)),
            ImmichState::Running,
            n,
        );
        let mut with_apply = base.to_vec();
        with_apply.push("--apply");
        push(
            apply,
            "have Immich rebuild them (admin key in IMMICH_API_KEY, URL in IMMICH_SERVER)".into(),
            Some(cx.cmd(sub, &with_apply, true)),
            ImmichState::Running,
            n,
        );
    }
    if t.person_thumbnails > 0 {
        push(
            StepKind::FaceThumbnails,
            format!(
                "{} face thumbnails are broken: run Immich's face detection job for missing \
                 faces (Administration, Jobs)",
                t.person_thumbnails
            ),
            None,
            ImmichState::Running,
            t.person_thumbnails,
        );
    }
    if t.restore > 0 {
        push(
            StepKind::RestoreFromBackup,
            format!(
                "{} files only a backup has: restore each listed file to its path (the list \
                 holds one host path per line), then run the rescan",
                t.restore
            ),
            None,
            ImmichState::Either,
            t.restore,
        );
    }
    if t.review > 0 {
        push(
            StepKind::Review,
            format!(
                "{} paths leave their root or need a person's look (see each finding's detail)",
                t.review
            ),
            None,
            ImmichState::Either,
            t.review,
        );
    }
    if !t.is_empty() {
        push(
            StepKind::Rescan,
            "scan again to confirm".into(),
            Some(cx.cmd("scan", &[], false)),
            ImmichState::Either,
            0,
        );
    }
    for (i, s) in steps.iter_mut().enumerate() {
        s.order = i as u32 + 1;
        if s.step == StepKind::RestoreFromBackup {
            s.list = cx.restore_list.clone();
        }
        if s.immich == ImmichState::Running && s.argv.is_some() {
            s.needs_env = server_env.clone();
        }
    }
    steps
}

/// The files and folders to give the server's user: each denied file it cannot read, and each
/// folder between its root and the file it cannot search. Folders above a root are left alone
/// (they are the admin's, not Immich's); with no roots known, only the files themselves.
fn permission_targets(
    denied: &BTreeSet<PathBuf>,
    roots: &[PathBuf],
    who: Option<&Identity>,
) -> Vec<PathBuf> {
    let blocks = |p: &Path, want: u32| match (std::fs::symlink_metadata(p), who) {
        (Ok(m), Some(i)) => !i.allows(m.mode(), m.uid(), m.gid(), want),
        (Ok(_), None) => false,
        (Err(_), _) => false,
    };
    let mut out: BTreeSet<PathBuf> = BTreeSet::new();
    for file in denied {
        let root = roots
            .iter()
            .filter(|r| file.starts_with(r))
            .max_by_key(|r| r.as_os_str().len());
        if let Some(root) = root {
            let mut dir = file.parent();
            while let Some(d) = dir {
                if !d.starts_with(root) {
                    break;
                }
                if blocks(d, 1) {
                    out.insert(d.to_path_buf());
                }
                if d == root {
                    break;
                }
                dir = d.parent();
            }
        }
        if blocks(file, 4) || who.is_none() {
            out.insert(file.clone());
        }
    }
    out.into_iter().collect()
}

/// `argv` as one POSIX shell line: plain words as they are, anything else single-quoted.
pub fn shell_line(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            let plain = !a.is_empty()
                && a.chars().all(|c| {
                    c.is_ascii_alphanumeric()
                        || matches!(c, '/' | '.' | '_' | '-' | ':' | '=' | '+' | ',' | '@')
                });
            if plain {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_lines_quote_what_a_shell_would_split_or_expand() {
        let a = |v: &[&str]| shell_line(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            a(&["chown", "1000:1000", "--", "/a/b.jpg"]),
            "chown 1000:1000 -- /a/b.jpg"
        );
        assert_eq!(
            a(&["x", "it's here", "$HOME", ""]),
            r"x 'it'\''s here' '$HOME' ''"
        );
    }

    #[test]
    fn only_the_folders_and_files_the_user_lacks_are_changed() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("lib");
        let bucket = root.join("thumbs/ab");
        std::fs::create_dir_all(&bucket).unwrap();
        let ok = bucket.join("ok.jpg");
        let closed = bucket.join("closed.jpg");
        std::fs::write(&ok, b"x").unwrap();
        std::fs::write(&closed, b"x").unwrap();
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(&bucket, std::fs::Permissions::from_mode(0o700)).unwrap();
        let who = Identity::parse("65534:65534").unwrap();
        let denied: BTreeSet<PathBuf> = [ok.clone(), closed.clone()].into();
        let got = permission_targets(&denied, std::slice::from_ref(&root), Some(&who));
        assert_eq!(got, vec![bucket, closed]);
    }
}
