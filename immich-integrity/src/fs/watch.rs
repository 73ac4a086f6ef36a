//! The per-root watchdog: a share that stops answering (a hard NFS or SMB mount whose server
//! went away) leaves a thread in the kernel for good, and no signal gets it out. So nobody
//! waits for such a thread: every thread that touches a root announces it in its [`Slot`]
//! (which root, when it last made progress), a watchdog thread looks at the slots every few
//! hundred milliseconds, and a slot that made no progress on a root for longer than the
//! timeout marks that root unreachable. From then on no file under it is touched (each is
//! counted as not checked), the stuck thread is abandoned (never joined; the process exits
//! without it), its task is handed to a fresh thread, and the scan goes on with the others.
//!
//! Setup steps that touch a root (is it a directory, is it empty, where are its markers) run
//! through [`within`], which gives up on a thread that does not come back in time.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Default for [`crate::ScanOptions::io_timeout`]: longer than any healthy share takes for one
/// operation (an NFS client retries a lost request after 6 s, then 12 s), short enough that a
/// nightly run is not lost to one dead mount.
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(30);

/// Slot states (see [`Slot::state`]).
const IDLE: u8 = 0;
const BUSY: u8 = 1;
const ABANDONED: u8 = 2;

/// What one thread is doing to which root, for the watchdog.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    /// The root (its [`RootHealth::id`]) the thread works on; meaningful while `last != 0`.
    root: AtomicU64,
    /// Milliseconds since the watch started (plus one) of the last progress; 0 while the
    /// thread does no I/O (idle, or waiting for a CPU worker).
    last: AtomicU64,
    /// Extra allowance on top of the timeout (a decode may legitimately take its own budget).
    grace_ms: AtomicU64,
    /// IDLE, BUSY or ABANDONED: whoever moves it out of BUSY owns the thread's accounting.
    state: AtomicU8,
}

impl Slot {
    /// Marks the thread busy (it took a task). False when the watchdog abandoned it.
    pub(crate) fn begin(&self) -> bool {
        self.state
            .compare_exchange(IDLE, BUSY, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Marks the thread idle after its task. False when the watchdog abandoned it meanwhile:
    /// its task was given to another thread, and this thread must stop.
    pub(crate) fn end(&self) -> bool {
        self.last.store(0, Ordering::Relaxed);
        self.state
            .compare_exchange(BUSY, IDLE, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Whether the watchdog gave up on this thread.
    pub(crate) fn abandoned(&self) -> bool {
        self.state.load(Ordering::Acquire) == ABANDONED
    }
}

/// Whether a root still answers, and how many files under it went unchecked since it did not.
#[derive(Debug)]
pub struct RootHealth {
    /// Index of the root in the watch.
    pub id: u64,
    unreachable: AtomicBool,
    /// Files under the root not checked because it stopped answering.
    pub not_checked: AtomicU64,
    /// What was being done when it stopped answering.
    pub why: Mutex<Option<String>>,
}

impl RootHealth {
    pub(crate) fn new(id: u64) -> RootHealth {
        RootHealth {
            id,
            unreachable: AtomicBool::new(false),
            not_checked: AtomicU64::new(0),
            why: Mutex::new(None),
        }
    }

    /// True once an operation under the root did not return in time.
    pub fn is_unreachable(&self) -> bool {
        self.unreachable.load(Ordering::Acquire)
    }

    /// Marks the root unreachable; true for the call that did it.
    pub(crate) fn mark(&self, why: String) -> bool {
        if self.unreachable.swap(true, Ordering::AcqRel) {
            return false;
        }
        *self.why.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
        true
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<Slot>>> = const { RefCell::new(None) };
}

/// The clock every slot counts in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock(Instant);

impl Clock {
    pub(crate) fn new() -> Clock {
        Clock(Instant::now())
    }
    fn now_ms(&self) -> u64 {
        self.0.elapsed().as_millis() as u64 + 1
    }
}

static CLOCK: std::sync::OnceLock<Clock> = std::sync::OnceLock::new();

fn clock() -> Clock {
    *CLOCK.get_or_init(Clock::new)
}

/// Gives this thread `slot` (for a worker, once; for a CPU worker, while it runs a task of an
/// I/O thread). Returns the slot it had.
pub(crate) fn adopt(slot: Option<Arc<Slot>>) -> Option<Arc<Slot>> {
    CURRENT.with(|c| std::mem::replace(&mut *c.borrow_mut(), slot))
}

/// This thread's slot, if it has one.
pub(crate) fn current() -> Option<Arc<Slot>> {
    CURRENT.with(|c| c.borrow().clone())
}

/// Progress on root `root`: the thread is about to touch it (or just got an answer from it).
pub(crate) fn touch(root: u64) {
    CURRENT.with(|c| {
        if let Some(s) = c.borrow().as_ref() {
            s.root.store(root, Ordering::Relaxed);
            s.last.store(clock().now_ms(), Ordering::Relaxed);
        }
    });
}

/// Progress on the root last touched (a block of a file was read).
pub(crate) fn tick() {
    CURRENT.with(|c| {
        if let Some(s) = c.borrow().as_ref() {
            if s.last.load(Ordering::Relaxed) != 0 {
                s.last.store(clock().now_ms(), Ordering::Relaxed);
            }
        }
    });
}

/// The thread stops doing I/O for a while (it waits for a CPU worker): not watched.
pub(crate) fn pause() {
    CURRENT.with(|c| {
        if let Some(s) = c.borrow().as_ref() {
            s.last.store(0, Ordering::Relaxed);
        }
    });
}

/// The thread does I/O again on the root it last touched (a CPU worker starts reading).
pub(crate) fn resume() {
    CURRENT.with(|c| {
        if let Some(s) = c.borrow().as_ref() {
            s.last.store(clock().now_ms(), Ordering::Relaxed);
        }
    });
}

/// Runs `f` with `extra` allowance on top of the timeout (a decode with its own time budget).
pub(crate) fn with_grace<T>(extra: Duration, f: impl FnOnce() -> T) -> T {
    let slot = current();
    if let Some(s) = &slot {
        s.grace_ms
            .store(extra.as_millis() as u64, Ordering::Relaxed);
    }
    let r = f();
    if let Some(s) = &slot {
        s.grace_ms.store(0, Ordering::Relaxed);
    }
    r
}

/// A slot the watchdog found stuck, with the root it is stuck on.
pub(crate) struct Stuck {
    pub(crate) slot: Arc<Slot>,
    pub(crate) root: u64,
    pub(crate) for_ms: u64,
}

/// Every slot that made no progress for longer than `timeout` (plus its grace), marked
/// abandoned (the caller replaces its thread and hands its task on), and every other busy
/// slot on the same roots (they are about to be stuck too, or are slow on a dead root).
pub(crate) fn find_stuck(slots: &[Arc<Slot>], timeout: Duration) -> Vec<Stuck> {
    let now = clock().now_ms();
    let t = timeout.as_millis() as u64;
    let mut roots = Vec::new();
    for s in slots {
        let last = s.last.load(Ordering::Relaxed);
        if last != 0
            && s.state.load(Ordering::Acquire) == BUSY
            && now.saturating_sub(last) > t + s.grace_ms.load(Ordering::Relaxed)
        {
            roots.push(s.root.load(Ordering::Relaxed));
        }
    }
    if roots.is_empty() {
        return Vec::new();
    }
    let mut stuck = Vec::new();
    for s in slots {
        let last = s.last.load(Ordering::Relaxed);
        let root = s.root.load(Ordering::Relaxed);
        if last != 0
            && roots.contains(&root)
            && s.state
                .compare_exchange(BUSY, ABANDONED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            stuck.push(Stuck {
                slot: s.clone(),
                root,
                for_ms: now.saturating_sub(last),
            });
        }
    }
    stuck
}

/// Runs `f` on a thread of its own and waits at most `timeout` for it. `None`: it did not come
/// back in time (it is left running: a thread stuck in the kernel cannot be stopped).
pub(crate) fn within<T: Send + 'static>(
    timeout: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("immich-integrity-probe".into())
        .stack_size(256 << 10)
        .spawn(move || {
            let _ = tx.send(f());
        });
    match spawned {
        Ok(_) => rx.recv_timeout(timeout).ok(),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_without_progress_is_found_stuck_once_and_its_root_with_it() {
        let a = Arc::new(Slot::default());
        let b = Arc::new(Slot::default());
        let c = Arc::new(Slot::default());
        for s in [&a, &b, &c] {
            assert!(s.begin());
        }
        adopt(Some(a.clone()));
        touch(7);
        // `a` makes no progress from here on; `b` (same root) and `c` (another) do.
        std::thread::sleep(Duration::from_millis(150));
        adopt(Some(b.clone()));
        touch(7);
        adopt(Some(c.clone()));
        touch(8);
        adopt(None);
        let slots = vec![a.clone(), b.clone(), c.clone()];
        assert!(find_stuck(&slots, Duration::from_secs(60)).is_empty());
        let stuck = find_stuck(&slots, Duration::from_millis(100));
        let roots: Vec<u64> = stuck.iter().map(|s| s.root).collect();
        assert_eq!(roots, vec![7, 7]);
        assert!(a.abandoned() && b.abandoned() && !c.abandoned());
        assert!(!a.end(), "an abandoned thread learns it must stop");
        assert!(c.end());
        assert!(find_stuck(&slots, Duration::from_millis(100)).is_empty());
    }

    #[test]
    fn within_gives_up_on_a_thread_that_does_not_return() {
        assert_eq!(within(Duration::from_secs(5), || 3), Some(3));
        let t = Instant::now();
        let r = within(Duration::from_millis(50), || {
            std::thread::sleep(Duration::from_secs(3600));
        });
        assert!(r.is_none());
        assert!(t.elapsed() < Duration::from_secs(5));
    }
}
