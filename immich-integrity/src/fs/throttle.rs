//! Throttling, so a nightly deep scan does not starve Immich of its disk: at most so many files
//! per second and so many bytes read per second (`--max-files-rate`, `--max-read-rate`), and
//! optionally the idle I/O class for the threads that read (`--idle-io`).
//!
//! Each limit is a schedule, not a bucket: every file (or block read) books the next free
//! moment on a shared clock and sleeps until then, so over any stretch longer than a few
//! blocks the rate holds, whatever the number of threads. The threads of a scan carry the
//! scan's limits in a thread-local ([`adopt`]); other threads are never throttled.

use std::cell::RefCell;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The limits of one scan.
#[derive(Debug, Default)]
pub struct Limits {
    files: Option<Schedule>,
    bytes: Option<Schedule>,
}

#[derive(Debug)]
struct Schedule {
    /// Seconds one unit costs.
    per_unit: f64,
    next: Mutex<Option<Instant>>,
}

impl Schedule {
    fn new(per_second: f64) -> Schedule {
        Schedule {
            per_unit: 1.0 / per_second,
            next: Mutex::new(None),
        }
    }

    /// Books `units` and sleeps until their turn.
    fn take(&self, units: u64) {
        let now = Instant::now();
        let at = {
            let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
            // An idle stretch earns no credit: the rate holds from now on.
            let at = next.filter(|t| *t > now).unwrap_or(now);
            *next = Some(at + Duration::from_secs_f64(self.per_unit * units as f64));
            at
        };
        if at > now {
            std::thread::sleep(at - now);
        }
    }
}

impl Limits {
    /// `files` per second and `bytes` per second; `None` is unlimited.
    pub fn new(files: Option<f64>, bytes: Option<f64>) -> Limits {
        let s = |r: Option<f64>| r.filter(|r| *r > 0.0).map(Schedule::new);
        Limits {
            files: s(files),
            bytes: s(bytes),
        }
    }

    /// Whether any limit is set.
    pub fn any(&self) -> bool {
        self.files.is_some() || self.bytes.is_some()
    }
}

thread_local! {
    static LIMITS: RefCell<Option<Arc<Limits>>> = const { RefCell::new(None) };
}

/// This thread works for a scan with these limits.
pub(crate) fn adopt(limits: Option<Arc<Limits>>) {
    LIMITS.with(|l| *l.borrow_mut() = limits);
}

/// One more file is about to be looked at.
pub(crate) fn file() {
    LIMITS.with(|l| {
        if let Some(s) = l.borrow().as_ref().and_then(|l| l.files.as_ref()) {
            s.take(1);
        }
    });
}

/// `n` bytes were just read.
pub(crate) fn bytes(n: u64) {
    LIMITS.with(|l| {
        if let Some(s) = l.borrow().as_ref().and_then(|l| l.bytes.as_ref()) {
            s.take(n);
        }
    });
}

/// Puts the calling thread in the idle I/O scheduling class: its reads are served only when
/// no one else wants the disk (honoured by the BFQ and CFQ schedulers; on others, and on
/// network shares, it changes nothing). Best effort: a refusal is logged.
pub(crate) fn idle_io_priority() {
    const IOPRIO_WHO_PROCESS: libc::c_long = 1;
    const IOPRIO_CLASS_IDLE: libc::c_long = 3;
    const IOPRIO_CLASS_SHIFT: libc::c_long = 13;
    // SAFETY: ioprio_set(2) with `who` 0 (the calling thread) only changes this thread's
    // I/O priority.
    let r = unsafe {
        libc::syscall(
            libc::SYS_ioprio_set,
            IOPRIO_WHO_PROCESS,
            0 as libc::c_long,
            IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT,
        )
    };
    if r != 0 {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "could not set the idle I/O priority"
        );
    }
}

/// The calling thread's I/O priority class (for tests): 3 is idle.
#[cfg(test)]
pub(crate) fn io_priority_class() -> i64 {
    // SAFETY: ioprio_get(2) of the calling thread.
    let v = unsafe { libc::syscall(libc::SYS_ioprio_get, 1 as libc::c_long, 0 as libc::c_long) };
    v >> 13
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_holds_its_rate_across_threads() {
        let limits = Arc::new(Limits::new(Some(200.0), None));
        let t = Instant::now();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let l = limits.clone();
                std::thread::spawn(move || {
                    adopt(Some(l));
                    for _ in 0..25 {
                        file();
                    }
                })
            })
            .collect();
        for th in threads {
            th.join().unwrap();
        }
        // 200 files at 200/s: the first is free, so at least 995 ms; generous above.
        let s = t.elapsed().as_secs_f64();
        assert!((0.99..2.0).contains(&s), "{s} s");
    }

    #[test]
    fn idle_priority_is_set_on_the_calling_thread_only() {
        std::thread::spawn(|| {
            idle_io_priority();
            assert_eq!(io_priority_class(), 3);
        })
        .join()
        .unwrap();
        assert_ne!(io_priority_class(), 3);
    }
}
