//! A process-wide pool of threads that run tasks now or at a given time: the writer's and the
//! uploader's threads are each one [`Pool`].
//!
//! A task is a closure. [`Pool::run`] queues it for the next free thread; [`Pool::run_at`]
//! keeps it in a timer heap until its time, then queues it likewise. Threads are started by
//! [`Pool::ensure_threads`], which callers use when a recorder starts, so that a thread that
//! cannot be started is an error of that start and not a panic somewhere later; they live as
//! long as the process, since no one recorder owns them.
//!
//! A task that panics is caught: the thread counts it ([`Pool::panics`]) and goes on serving.
//! Whatever state a task keeps elsewhere is the task's to restore (see the writer's `serve`).
//!
//! A task can also never end: a write to a disk that stopped answering blocks in the kernel,
//! and nothing can take its thread back. A pool with spare threads
//! starts one more when a task is queued while every thread has been on its task for longer
//! than [`STUCK_AFTER`], so that one hung disk does not stop the work of the whole process.
//!
//! Mutex order: `threads`, then `queue`. `queue` is the innermost lock of the crate: callers
//! may hold their own locks when they queue a task, but no task runs, and no other lock is
//! taken, while `queue` is held.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Condvar;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Instant;

use crate::lock_order::{Level, OrderedMutex};

type Task = Box<dyn FnOnce() + Send>;

/// A task waiting for its time.
struct Timed {
    at: Instant,
    /// Tells tasks of the same time apart, first queued first.
    seq: u64,
    task: Task,
}

impl PartialEq for Timed {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Timed {}

impl PartialOrd for Timed {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Timed {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

struct Queue {
    ready: VecDeque<Task>,
    timers: BinaryHeap<Reverse<Timed>>,
    seq: u64,
    /// Per thread, since when it runs its current task (`None`: waiting for one).
    busy: Vec<Option<Instant>>,
}

/// A thread on one task for longer than this is taken for stuck (a write normally takes
/// milliseconds).
pub const STUCK_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// A process-wide pool of threads.
pub struct Pool {
    /// Names the threads: `<name>-<n>`.
    name: &'static str,
    threads: OrderedMutex<Threads>,
    queue: OrderedMutex<Queue>,
    wake: Condvar,
    panics: AtomicU64,
    /// Threads that may be added beyond those asked for, while all are stuck.
    spares: usize,
    /// The scheduling niceness of the threads (0: the process's own).
    nice: i32,
}

/// The threads asked for, and those started (spares included).
struct Threads {
    asked: usize,
    started: usize,
}

/// How a thread is started; tests replace it to see a start fail.
type Spawner = fn(thread::Builder, Box<dyn FnOnce() + Send>) -> io::Result<()>;

fn spawn(builder: thread::Builder, body: Box<dyn FnOnce() + Send>) -> io::Result<()> {
    builder.spawn(body).map(drop)
}

impl Pool {
    /// A pool without threads yet, that may add up to `spares` threads while all of its
    /// threads are stuck.
    pub const fn with_spares(name: &'static str, spares: usize) -> Self {
        Pool {
            name,
            threads: OrderedMutex::new(
                Level::PoolThreads,
                Threads {
                    asked: 0,
                    started: 0,
                },
            ),
            queue: OrderedMutex::new(
                Level::PoolQueue,
                Queue {
                    ready: VecDeque::new(),
                    timers: BinaryHeap::new(),
                    seq: 0,
                    busy: Vec::new(),
                },
            ),
            wake: Condvar::new(),
            panics: AtomicU64::new(0),
            spares,
            nice: 0,
        }
    }

    /// The same pool with threads that yield the processor to the process's other threads
    /// when it is short: `nice` is added to their niceness (Linux; elsewhere ignored).
    pub const fn niced(mut self, nice: i32) -> Self {
        self.nice = nice;
        self
    }

    /// Starts threads until the pool has `wanted`. An error if a thread cannot be started;
    /// the threads that did start stay.
    pub fn ensure_threads(&'static self, wanted: usize) -> io::Result<()> {
        self.ensure_threads_with(wanted, spawn)
    }

    fn ensure_threads_with(&'static self, wanted: usize, spawner: Spawner) -> io::Result<()> {
        let mut threads = self.threads.lock();
        let asked = threads.asked;
        threads.asked = asked.max(wanted);
        while threads.started < threads.asked {
            if let Err(e) = self.start_thread(&mut threads, spawner) {
                // What could not be started is not asked for: spares are counted above what is.
                threads.asked = asked.max(threads.started);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Starts one thread.
    fn start_thread(&'static self, threads: &mut Threads, spawner: Spawner) -> io::Result<()> {
        let me = threads.started;
        let builder = thread::Builder::new().name(format!("{}-{me}", self.name));
        self.queue.lock().busy.push(None);
        if let Err(e) = spawner(
            builder,
            Box::new(move || {
                lower_priority(self.nice);
                self.serve(me)
            }),
        ) {
            self.queue.lock().busy.pop();
            return Err(e);
        }
        threads.started += 1;
        Ok(())
    }

    /// Threads started so far.
    #[cfg(test)]
    pub fn threads(&self) -> usize {
        self.threads.lock().started
    }

    /// Tasks that panicked so far.
    #[cfg(test)]
    pub fn panics(&self) -> u64 {
        self.panics.load(Ordering::Relaxed)
    }

    /// Runs `task` on the next free thread.
    pub fn run(&'static self, task: impl FnOnce() + Send + 'static) {
        let mut queue = self.queue.lock();
        queue.ready.push_back(Box::new(task));
        let stuck = self.all_stuck(&queue);
        drop(queue);
        self.wake.notify_one();
        if stuck {
            self.add_spare();
        }
    }

    /// Whether the pool has spares and every thread has been on its task for longer than
    /// [`STUCK_AFTER`] (how many spares are left, [`Pool::add_spare`] says).
    fn all_stuck(&self, queue: &Queue) -> bool {
        self.spares > 0
            && !queue.busy.is_empty()
            && queue
                .busy
                .iter()
                .all(|b| b.is_some_and(|since| since.elapsed() > STUCK_AFTER))
    }

    /// Starts one thread more, within the spares; a refused thread leaves the pool as it is.
    fn add_spare(&'static self) {
        let mut threads = self.threads.lock();
        if threads.started < threads.asked + self.spares {
            let _ = self.start_thread(&mut threads, spawn);
        }
    }

    /// Runs `task` on a thread once `at` has come.
    pub fn run_at(&'static self, at: Instant, task: impl FnOnce() + Send + 'static) {
        let mut queue = self.queue.lock();
        let earliest = queue.timers.peek().is_none_or(|t| at < t.0.at);
        let seq = queue.seq;
        queue.seq += 1;
        queue.timers.push(Reverse(Timed {
            at,
            seq,
            task: Box::new(task),
        }));
        let stuck = self.all_stuck(&queue);
        drop(queue);
        // Only a timer earlier than all others changes how long the threads may sleep.
        if earliest {
            self.wake.notify_one();
        }
        if stuck {
            self.add_spare();
        }
    }

    /// The next task for thread `me`: a ready one, or one whose time has come.
    fn next(&self, me: usize) -> Task {
        let mut queue = self.queue.lock();
        queue.busy[me] = None;
        loop {
            if let Some(task) = queue.ready.pop_front() {
                queue.busy[me] = Some(Instant::now());
                return task;
            }
            let now = Instant::now();
            if queue.timers.peek().is_some_and(|t| t.0.at <= now)
                && let Some(Reverse(timed)) = queue.timers.pop()
            {
                queue.busy[me] = Some(now);
                return timed.task;
            }
            queue = match queue.timers.peek().map(|t| t.0.at - now) {
                Some(wait) => queue.wait_timeout(&self.wake, wait),
                None => queue.wait(&self.wake),
            };
        }
    }

    fn serve(&self, me: usize) {
        loop {
            let task = self.next(me);
            if panic::catch_unwind(AssertUnwindSafe(task)).is_err() {
                self.panics.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Adds `nice` to the calling thread's niceness.
fn lower_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    if nice != 0 {
        // SAFETY: plain system calls on the calling thread. A refusal leaves the thread as it
        // is, which is only slower to give way.
        unsafe {
            let tid = libc::gettid();
            let now = libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t);
            libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, now + nice);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    fn pool(name: &'static str) -> &'static Pool {
        Box::leak(Box::new(Pool::with_spares(name, 0)))
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_niced_pool_runs_its_tasks_below_the_process() {
        fn niceness() -> i32 {
            // SAFETY: reads the calling thread's niceness.
            unsafe { libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t) }
        }
        let pool: &'static Pool = Box::leak(Box::new(Pool::with_spares("test-nice", 0).niced(5)));
        pool.ensure_threads(1).unwrap();
        let (tx, rx) = mpsc::channel();
        pool.run(move || tx.send(niceness()).unwrap());
        let theirs = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(theirs, (niceness() + 5).min(19));
    }

    #[test]
    fn tasks_run_now_and_at_their_time_in_order() {
        let pool = pool("test-order");
        pool.ensure_threads(1).unwrap();
        let (tx, rx) = mpsc::channel();
        let start = Instant::now();
        for (i, delay) in [(2, 60), (1, 30), (3, 60)] {
            let tx = tx.clone();
            pool.run_at(start + Duration::from_millis(delay), move || {
                tx.send((i, start.elapsed())).unwrap();
            });
        }
        let tx0 = tx.clone();
        pool.run(move || tx0.send((0, start.elapsed())).unwrap());
        let got: Vec<_> = (0..4)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), [0, 1, 2, 3]);
        assert!(got[1].1 >= Duration::from_millis(30));
        assert!(got[2].1 >= Duration::from_millis(60));
    }

    #[test]
    fn a_panicking_task_does_not_take_its_thread_down() {
        let pool = pool("test-panic");
        pool.ensure_threads(1).unwrap();
        pool.run(|| panic!("a task failed"));
        let (tx, rx) = mpsc::channel();
        for i in 0..3 {
            let tx = tx.clone();
            pool.run(move || tx.send(i).unwrap());
        }
        let got: Vec<_> = (0..3)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap())
            .collect();
        assert_eq!(got, [0, 1, 2]);
        assert_eq!(pool.panics(), 1);
        assert_eq!(pool.threads(), 1);
    }

    #[test]
    fn a_thread_that_cannot_start_is_an_error_not_a_panic() {
        let pool = pool("test-spawn");
        pool.ensure_threads(1).unwrap();
        let refuse: Spawner = |_, _| Err(io::Error::other("Resource temporarily unavailable"));
        let err = pool.ensure_threads_with(3, refuse).unwrap_err();
        assert!(err.to_string().contains("temporarily unavailable"));
        // The thread that did start still serves.
        assert_eq!(pool.threads(), 1);
        let (tx, rx) = mpsc::channel();
        pool.run(move || tx.send(()).unwrap());
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
        // And a later start that can start threads gets them.
        pool.ensure_threads(2).unwrap();
        assert_eq!(pool.threads(), 2);
    }

    /// Starts `pool`'s one thread and has it block, as on a disk that stopped answering, for
    /// longer than a thread is taken for stuck; it goes on when the sender is used or dropped.
    fn block_the_only_thread(pool: &'static Pool) -> mpsc::Sender<()> {
        pool.ensure_threads(1).unwrap();
        let (release, blocked) = mpsc::channel::<()>();
        pool.run(move || {
            let _ = blocked.recv();
        });
        thread::sleep(STUCK_AFTER + Duration::from_millis(200));
        release
    }

    #[test]
    fn a_spare_thread_takes_over_while_every_thread_is_stuck() {
        let pool: &'static Pool = Box::leak(Box::new(Pool::with_spares("test-stuck", 1)));
        let release = block_the_only_thread(pool);
        let (tx, rx) = mpsc::channel();
        let tx2 = tx.clone();
        pool.run(move || tx.send("now").unwrap());
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok("now"));
        assert_eq!(pool.threads(), 2);
        pool.run_at(Instant::now(), move || tx2.send("timer").unwrap());
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok("timer"));
        release.send(()).unwrap();
        // No more than the spares allowed.
        assert_eq!(pool.threads(), 2);
    }

    #[test]
    fn a_pool_without_spares_does_not_grow() {
        let pool = pool("test-no-spares");
        let release = block_the_only_thread(pool);
        let (tx, rx) = mpsc::channel();
        pool.run(move || tx.send(()).unwrap());
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
        assert_eq!(pool.threads(), 1);
        release.send(()).unwrap();
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
    }

    #[test]
    fn queueing_a_task_while_holding_a_lower_lock_is_in_order() {
        let pool = pool("test-lock");
        pool.ensure_threads(1).unwrap();
        let queue = OrderedMutex::new(Level::WriterQueue, ());
        let (tx, rx) = mpsc::channel();
        let _held = queue.lock();
        pool.run(move || tx.send(()).unwrap());
        pool.run_at(Instant::now(), || ());
        rx.recv_timeout(Duration::from_secs(10)).unwrap();
    }
}
