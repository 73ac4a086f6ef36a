//! A running `immich-fixture fuse` (see the binary's `fuse` command) for a test: started with
//! [`SlowMount::start`], unmounted when dropped, also when the test fails (the drop runs while
//! a panic unwinds). The server also dies with the test process (`PR_SET_PDEATHSIG`), and
//! detaches its mount when it does.

use anyhow::{bail, Context, Result};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A mounted slow filesystem.
pub struct SlowMount {
    child: Child,
    /// Where it is mounted.
    pub mnt: PathBuf,
}

/// Whether `mnt` is a mount point now (per `/proc/self/mountinfo`).
pub fn is_mounted(mnt: &Path) -> bool {
    let want = mnt.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| {
            t.lines()
                .any(|l| l.split(' ').nth(4) == Some(want.as_str()))
        })
        .unwrap_or(false)
}

impl SlowMount {
    /// Mounts `src` at `mnt` (created if absent) with `bin` (the `immich-fixture` binary) and
    /// `args` (e.g. `--delay-ms 1 --block-under lib`), waiting until the mount is there.
    pub fn start(bin: &Path, src: &Path, mnt: &Path, args: &[&str]) -> Result<SlowMount> {
        std::fs::create_dir_all(mnt)?;
        let mnt = mnt.canonicalize()?;
        let mut cmd = Command::new(bin);
        cmd.arg("fuse")
            .args(args)
            .arg(src)
            .arg(&mnt)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut m = SlowMount { child, mnt };
        let until = Instant::now() + Duration::from_secs(20);
        while !is_mounted(&m.mnt) {
            if let Some(st) = m.child.try_wait()? {
                bail!(
                    "the FUSE server exited ({st}) before {} was mounted",
                    m.mnt.display()
                );
            }
            if Instant::now() > until {
                bail!("{} was not mounted within 20 s", m.mnt.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(m)
    }

    /// Sends `sig` to the server (SIGUSR1: write the stats and count afresh).
    pub fn signal(&self, sig: i32) {
        // SAFETY: a plain kill(2) of our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }
}

impl Drop for SlowMount {
    fn drop(&mut self) {
        self.signal(libc::SIGTERM);
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if is_mounted(&self.mnt) {
            // The server could not detach it: a lazy unmount never waits for stuck callers.
            let _ = Command::new("fusermount3")
                .arg("-uz")
                .arg(&self.mnt)
                .stderr(Stdio::null())
                .status();
            let _ = Command::new("umount")
                .arg("-l")
                .arg(&self.mnt)
                .stderr(Stdio::null())
                .status();
        }
    }
}
