//! The I/O engine: the threads that look at files, as many at once as the storage rewards.
//!
//! On local disks a check costs microseconds of CPU; on a NAS every `stat` is a network round
//! trip, and the speed is the number of operations in flight divided by the latency. So the
//! file checks run on their own threads (not the rayon pool, which is sized to the cores and
//! keeps the CPU work: decoding and hashing, see [`Checker::on_cpu`]), and how many of them
//! run at once follows the throughput ([`Adapt`]): more while files per second keep growing,
//! fewer when they do not, between the cores and [`MAX_IN_FLIGHT`].
//!
//! Each page of rows becomes a [`Batch`] split into tasks of a few consecutive rows (which
//! share folders); every file's outcome has its own cell, so a task handed to another thread
//! (after the watchdog abandoned a stuck one, see [`crate::fs::watch`]) only checks what is
//! left, and a page is complete once every file has an outcome: checked, or not checked
//! because its root stopped answering.

use super::checker::{findings, Checker, Fault0};
use crate::fs::watch::{self, Slot};
use crate::model::AssetRow;
use crate::model::{FileRef, Finding};
use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The most file operations in flight at once (the ceiling of the adaptive limit, and of
/// `--io-depth`). Past a few dozen, a NAS answers no faster; every one in flight is a thread
/// with its stack, and 256 already hides 1 ms of latency at 250 000 operations per second.
pub const MAX_IN_FLIGHT: usize = 256;

/// Rows per task: consecutive rows share thumbnail folders (one cached folder handle), and a
/// page of 2000 rows still makes 250 tasks, enough to keep every thread busy.
const TASK_ROWS: usize = 8;

/// What checking one file gave.
#[derive(Clone)]
pub(crate) enum Outcome {
    /// Checked: the fault, if any.
    Done(Option<Fault0>),
    /// Not checked: the root (its watch id) does not answer.
    NotChecked(u64),
    /// Not checked: under a missing mount (its `mount_missing` finding counts it).
    UnderMissingMount,
}

/// One page of rows being checked, with a cell per file for its outcome.
pub(crate) struct Batch {
    pub(crate) rows: Vec<AssetRow>,
    /// Index of each row's first file in `outcomes`.
    base: Vec<usize>,
    outcomes: Vec<OnceLock<Outcome>>,
    done: AtomicUsize,
}

impl Batch {
    pub(crate) fn new(rows: Vec<AssetRow>) -> Arc<Batch> {
        let mut base = Vec::with_capacity(rows.len());
        let mut n = 0;
        for r in &rows {
            base.push(n);
            n += r.files.len();
        }
        Arc::new(Batch {
            rows,
            base,
            outcomes: (0..n).map(|_| OnceLock::new()).collect(),
            done: AtomicUsize::new(0),
        })
    }

    /// Every file has its outcome.
    pub(crate) fn complete(&self) -> bool {
        self.done.load(Ordering::Acquire) >= self.outcomes.len()
    }

    /// The outcomes of row `i`, in file order (`None` for a file never finished).
    pub(crate) fn row_outcomes(&self, i: usize) -> Vec<Option<Outcome>> {
        let (start, n) = (self.base[i], self.rows[i].files.len());
        self.outcomes[start..start + n]
            .iter()
            .map(|c| c.get().cloned())
            .collect()
    }
}

#[derive(Clone)]
struct Task {
    batch: Arc<Batch>,
    rows: Range<usize>,
}

/// One I/O thread's watch slot and the task it runs (handed on if it gets stuck).
struct Worker {
    slot: Arc<Slot>,
    task: Mutex<Option<Task>>,
}

#[derive(Default)]
struct Queue {
    tasks: VecDeque<Task>,
    running: usize,
    limit: usize,
    /// Threads not abandoned.
    threads: usize,
    stop: bool,
}

struct Shared {
    checker: Arc<Checker>,
    queue: Mutex<Queue>,
    work: Condvar,
    /// Signalled when a batch completes or a root is given up on.
    progress: (Mutex<()>, Condvar),
    workers: Mutex<Vec<Arc<Worker>>>,
    /// Files with an outcome (checked or not).
    files_done: AtomicU64,
    /// Files checked (their outcome is a verdict): a thread abandoned mid-file counts nothing.
    files_checked: AtomicU64,
    io_timeout: Duration,
    idle_io: bool,
    limits: Option<Arc<crate::fs::throttle::Limits>>,
    stopped: AtomicBool,
}

/// The running engine (see the module documentation).
pub(crate) struct Engine {
    shared: Arc<Shared>,
    adapt: Adapt,
}

impl Engine {
    /// Starts the watchdog; threads start with the first tasks. `depth`: a fixed number in
    /// flight, or `None` to adapt.
    pub(crate) fn start(
        checker: Arc<Checker>,
        depth: Option<usize>,
        io_timeout: Duration,
        idle_io: bool,
        limits: Option<Arc<crate::fs::throttle::Limits>>,
    ) -> Engine {
        let adapt = Adapt::new(depth);
        let shared = Arc::new(Shared {
            checker,
            queue: Mutex::new(Queue {
                limit: adapt.limit,
                ..Queue::default()
            }),
            work: Condvar::new(),
            progress: (Mutex::new(()), Condvar::new()),
            workers: Mutex::new(Vec::new()),
            files_done: AtomicU64::new(0),
            files_checked: AtomicU64::new(0),
            io_timeout,
            idle_io,
            limits,
            stopped: AtomicBool::new(false),
        });
        let s = shared.clone();
        let _ = std::thread::Builder::new()
            .name("immich-integrity-watchdog".into())
            .spawn(move || watchdog(s));
        Engine { shared, adapt }
    }

    /// Queues every file of `batch`.
    pub(crate) fn submit(&self, batch: &Arc<Batch>) {
        let n = batch.rows.len();
        let mut q = lock(&self.shared.queue);
        for start in (0..n).step_by(TASK_ROWS) {
            q.tasks.push_back(Task {
                batch: batch.clone(),
                rows: start..(start + TASK_ROWS).min(n),
            });
        }
        spawn_missing(&self.shared, &mut q);
        drop(q);
        self.shared.work.notify_all();
    }

    /// Waits until `batch` is complete; false when `give_up` said to stop waiting first.
    pub(crate) fn wait(&mut self, batch: &Batch, mut give_up: impl FnMut() -> bool) -> bool {
        let (m, cv) = &self.shared.progress;
        loop {
            {
                let g = lock(m);
                if batch.complete() {
                    return true;
                }
                let _ = cv.wait_timeout(g, Duration::from_millis(50));
            }
            if batch.complete() {
                return true;
            }
            if give_up() {
                return false;
            }
            let done = self.shared.files_done.load(Ordering::Relaxed);
            if let Some(limit) = self.adapt.observe(done) {
                let mut q = lock(&self.shared.queue);
                q.limit = limit;
                spawn_missing(&self.shared, &mut q);
                drop(q);
                self.shared.work.notify_all();
            }
        }
    }

    /// Files checked so far (each once, whatever threads were abandoned).
    pub(crate) fn files_checked(&self) -> u64 {
        self.shared.files_checked.load(Ordering::Relaxed)
    }

    /// The in-flight limit now, and the largest it reached.
    pub(crate) fn depth(&self) -> (usize, usize) {
        (self.adapt.limit, self.adapt.peak)
    }
}

impl Drop for Engine {
    /// Idle threads end; stuck ones are left in the kernel (never joined).
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::Release);
        lock(&self.shared.queue).stop = true;
        self.shared.work.notify_all();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts threads until there are as many as the limit (at most as many as there are tasks).
fn spawn_missing(shared: &Arc<Shared>, q: &mut Queue) {
    while q.threads < q.limit && q.threads < q.running + q.tasks.len() {
        let s = shared.clone();
        let w = Arc::new(Worker {
            slot: Arc::new(Slot::default()),
            task: Mutex::new(None),
        });
        lock(&shared.workers).push(w.clone());
        let spawned = std::thread::Builder::new()
            .name("immich-integrity-io".into())
            .spawn(move || io_thread(s, w));
        if spawned.is_err() {
            break;
        }
        q.threads += 1;
    }
}

fn io_thread(shared: Arc<Shared>, me: Arc<Worker>) {
    watch::adopt(Some(me.slot.clone()));
    crate::fs::throttle::adopt(shared.limits.clone());
    if shared.idle_io {
        crate::fs::throttle::idle_io_priority();
    }
    loop {
        let task = {
            let mut q = lock(&shared.queue);
            loop {
                if q.stop {
                    q.threads -= 1;
                    return;
                }
                if q.running < q.limit {
                    if let Some(t) = q.tasks.pop_front() {
                        q.running += 1;
                        break t;
                    }
                }
                if q.threads > q.limit && q.running + q.tasks.len() < q.threads {
                    // Fewer in flight now: this thread is not needed.
                    q.threads -= 1;
                    return;
                }
                q = shared.work.wait(q).unwrap_or_else(|p| p.into_inner());
            }
        };
        *lock(&me.task) = Some(task.clone());
        if !me.slot.begin() {
            return;
        }
        run(&shared, &me.slot, &task);
        *lock(&me.task) = None;
        if !me.slot.end() {
            // Abandoned by the watchdog while this ran: it accounted for us, and our task
            // went to another thread.
            return;
        }
        lock(&shared.queue).running -= 1;
        shared.work.notify_one();
    }
}

fn run(shared: &Shared, slot: &Slot, task: &Task) {
    let b = &task.batch;
    let checker = &shared.checker;
    for i in task.rows.clone() {
        let row = &b.rows[i];
        for (j, f) in row.files.iter().enumerate() {
            let cell = &b.outcomes[b.base[i] + j];
            if cell.get().is_some() {
                continue;
            }
            if slot.abandoned() {
                return;
            }
            crate::fs::throttle::file();
            let outcome = checker.check_file_outcome(row, f);
            let kind = match &outcome {
                Outcome::Done(_) => 0,
                Outcome::NotChecked(root) => *root,
                Outcome::UnderMissingMount => u64::MAX,
            };
            if cell.set(outcome).is_ok() {
                match kind {
                    0 => {
                        shared.files_checked.fetch_add(1, Ordering::Relaxed);
                    }
                    u64::MAX => {}
                    root => checker.roots.count_not_checked(root),
                }
                shared.files_done.fetch_add(1, Ordering::Relaxed);
                if b.done.fetch_add(1, Ordering::AcqRel) + 1 == b.outcomes.len() {
                    let (m, cv) = &shared.progress;
                    let _g = lock(m);
                    cv.notify_all();
                }
            }
        }
    }
}

/// Every few hundred milliseconds: gives up on roots with a stuck operation, hands the stuck
/// threads' tasks to new threads.
fn watchdog(shared: Arc<Shared>) {
    let every =
        (shared.io_timeout / 4).clamp(Duration::from_millis(10), Duration::from_millis(250));
    while !shared.stopped.load(Ordering::Acquire) {
        std::thread::sleep(every);
        let workers: Vec<Arc<Worker>> = lock(&shared.workers).clone();
        let slots: Vec<Arc<Slot>> = workers.iter().map(|w| w.slot.clone()).collect();
        let stuck = watch::find_stuck(&slots, shared.io_timeout);
        if stuck.is_empty() {
            continue;
        }
        let mut q = lock(&shared.queue);
        for s in &stuck {
            shared.checker.roots.give_up(
                s.root,
                format!(
                    "an operation under it did not return in {:.1} s",
                    s.for_ms as f64 / 1000.0
                ),
            );
            q.running -= 1;
            q.threads -= 1;
            if let Some(w) = workers.iter().find(|w| Arc::ptr_eq(&w.slot, &s.slot)) {
                if let Some(t) = lock(&w.task).clone() {
                    q.tasks.push_front(t);
                }
            }
        }
        lock(&shared.workers).retain(|w| !w.slot.abandoned());
        spawn_missing(&shared, &mut q);
        drop(q);
        shared.work.notify_all();
        let (m, cv) = &shared.progress;
        let _g = lock(m);
        cv.notify_all();
    }
}

/// The engine's side of the checker: a file's outcome, a row's findings from its outcomes,
/// and the hand-off of CPU work to the pool sized to the cores.
impl Checker {
    /// Runs CPU work (a decode, a hash) on the CPU pool and waits for it. The I/O thread's
    /// watch slot goes along: waiting for a free core is not I/O, but the reads the work does
    /// are watched as the I/O thread's own.
    pub(crate) fn on_cpu<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let Some(pool) = &self.cpu else {
            return f();
        };
        let slot = crate::fs::watch::current();
        crate::fs::watch::pause();
        let r = pool.install(move || {
            let prev = crate::fs::watch::adopt(slot);
            crate::fs::watch::resume();
            let r = f();
            crate::fs::watch::pause();
            crate::fs::watch::adopt(prev);
            r
        });
        crate::fs::watch::resume();
        r
    }

    /// One file of a row, for the I/O engine: its fault, or not checked when its root does
    /// not answer.
    pub(crate) fn check_file_outcome(&self, row: &AssetRow, f: &FileRef) -> Outcome {
        match self.check_file(row, f) {
            Ok(x) => Outcome::Done(x),
            Err(Some(root)) => Outcome::NotChecked(root),
            Err(None) => Outcome::UnderMissingMount,
        }
    }

    /// The findings of a row from the outcomes of its files (in file order; `None` or not
    /// checked: no finding, the root's `unreachable` finding counts it).
    pub(crate) fn assemble(&self, row: &AssetRow, outcomes: Vec<Option<Outcome>>) -> Vec<Finding> {
        let raw = row
            .files
            .iter()
            .zip(outcomes)
            .filter_map(|(f, o)| match o {
                Some(Outcome::Done(Some(x))) => Some((f, x)),
                _ => None,
            })
            .collect();
        findings(row, raw)
    }
}

/// The pool sized to the cores (or `jobs`) that decodes and hashes: its threads carry the
/// scan's read-rate limit and, with `idle_io`, the idle I/O class.
pub(crate) fn cpu_pool(
    jobs: usize,
    limits: Arc<crate::fs::throttle::Limits>,
    idle_io: bool,
) -> crate::error::Result<rayon::ThreadPool> {
    crate::scan::check_jobs(jobs)?;
    rayon::ThreadPoolBuilder::new()
        .num_threads(jobs)
        .thread_name(|i| format!("immich-integrity-cpu-{i}"))
        .start_handler(move |_| {
            crate::fs::throttle::adopt(limits.any().then(|| limits.clone()));
            if idle_io {
                crate::fs::throttle::idle_io_priority();
            }
        })
        .build()
        .map_err(|e| {
            crate::error::Error::InvalidArgument(format!("cannot start worker threads: {e}"))
        })
}

/// How many file operations run at once: a hill climb on files per second (see the module
/// documentation), or a fixed number.
pub(crate) struct Adapt {
    fixed: bool,
    pub(crate) limit: usize,
    pub(crate) peak: usize,
    floor: usize,
    /// Limit and rate of the window before this one.
    prev: Option<(usize, f64)>,
    window: (Instant, u64),
    /// Windows left to keep the limit after a step that did not pay.
    hold: u32,
    /// The direction of the last probe from a steady limit.
    probe_up: bool,
}

/// Windows a limit is kept after a step that did not pay (about 2.5 s).
const HOLD: u32 = 8;

/// Shortest measurement window.
const WINDOW: Duration = Duration::from_millis(300);

impl Adapt {
    pub(crate) fn new(fixed: Option<usize>) -> Adapt {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let floor = cores.clamp(2, MAX_IN_FLIGHT);
        let limit = match fixed {
            Some(n) => n.clamp(1, MAX_IN_FLIGHT),
            None => (cores * 4).clamp(floor, MAX_IN_FLIGHT),
        };
        Adapt {
            fixed: fixed.is_some(),
            limit,
            peak: limit,
            floor,
            prev: None,
            window: (Instant::now(), 0),
            hold: 0,
            probe_up: false,
        }
    }

    /// Called often with the files done so far; returns a new limit when it changes.
    pub(crate) fn observe(&mut self, done: u64) -> Option<usize> {
        let (start, at) = self.window;
        let elapsed = start.elapsed();
        // A window long enough to measure: and enough files that a slow share is judged on
        // more than a handful.
        if self.fixed || elapsed < WINDOW || done.saturating_sub(at) < self.limit as u64 {
            return None;
        }
        let rate = (done - at) as f64 / elapsed.as_secs_f64();
        self.window = (Instant::now(), done);
        let next = self.next(rate);
        self.prev = Some((self.limit, rate));
        if next == self.limit {
            return None;
        }
        self.limit = next;
        self.peak = self.peak.max(next);
        Some(next)
    }

    fn next(&mut self, rate: f64) -> usize {
        let up = (self.limit * 2).min(MAX_IN_FLIGHT);
        let down = (self.limit / 2).max(self.floor);
        if self.hold > 0 {
            self.hold -= 1;
            return self.limit;
        }
        let Some((prev_limit, prev_rate)) = self.prev else {
            return up;
        };
        if self.limit > prev_limit {
            // More in flight: worth it only if the rate grew with it.
            if rate > prev_rate * 1.15 {
                return up;
            }
            self.hold = HOLD;
            prev_limit
        } else if self.limit < prev_limit {
            // Fewer: keep going down while nothing is lost.
            if rate >= prev_rate * 0.95 {
                return down;
            }
            self.hold = HOLD;
            prev_limit
        } else {
            // Steady: probe now and then, up and down in turn (the storage may have become
            // faster or busier).
            self.probe_up = !self.probe_up;
            if self.probe_up {
                up
            } else {
                down
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A storage whose rate grows with the in-flight count up to `knee`, flat after.
    fn rate_at(limit: usize, knee: usize) -> f64 {
        limit.min(knee) as f64 * 1000.0
    }

    fn converge(knee: usize) -> usize {
        let mut a = Adapt::new(None);
        for _ in 0..40 {
            let r = rate_at(a.limit, knee);
            a.prev_step(r);
        }
        a.limit
    }

    impl Adapt {
        fn prev_step(&mut self, rate: f64) {
            let next = self.next(rate);
            self.prev = Some((self.limit, rate));
            self.limit = next;
        }
    }

    #[test]
    fn the_limit_climbs_while_throughput_grows_and_stays_near_the_knee() {
        let high = converge(200);
        assert!(
            high >= 128,
            "a latency-bound share wants many in flight: {high}"
        );
        let low = converge(2);
        assert!(low <= 8, "a CPU-bound local disk does not: {low}");
        assert!(Adapt::new(Some(10_000)).limit == MAX_IN_FLIGHT);
    }
}
