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
}

/// A process-wide pool of threads.
pub struct Pool {
    /// Names the threads: `<name>-<n>`.
    name: &'static str,
    threads: OrderedMutex<usize>,
    queue: OrderedMutex<Queue>,
    wake: Condvar,
    panics: AtomicU64,
}

/// How a thread is started; tests replace it to see a start fail.
type Spawner = fn(thread::Builder, Box<dyn FnOnce() + Send>) -> io::Result<()>;

fn spawn(builder: thread::Builder, body: Box<dyn FnOnce() + Send>) -> io::Result<()> {
    builder.spawn(body).map(drop)
}

impl Pool {
    /// A pool without threads yet.
    pub const fn new(name: &'static str) -> Self {
        Pool {
            name,
            threads: OrderedMutex::new(Level::PoolThreads, 0),
            queue: OrderedMutex::new(
                Level::PoolQueue,
                Queue {
                    ready: VecDeque::new(),
                    timers: BinaryHeap::new(),
                    seq: 0,
                },
            ),
            wake: Condvar::new(),
            panics: AtomicU64::new(0),
        }
    }

    /// Starts threads until the pool has `wanted`. An error if a thread cannot be started;
    /// the threads that did start stay.
    pub fn ensure_threads(&'static self, wanted: usize) -> io::Result<()> {
        self.ensure_threads_with(wanted, spawn)
    }

    fn ensure_threads_with(&'static self, wanted: usize, spawner: Spawner) -> io::Result<()> {
        let mut threads = self.threads.lock();
        while *threads < wanted {
            let builder = thread::Builder::new().name(format!("{}-{}", self.name, *threads));
            spawner(builder, Box::new(move || self.serve()))?;
            *threads += 1;
        }
        Ok(())
    }

    /// Threads started so far.
    #[cfg(test)]
    pub fn threads(&self) -> usize {
        *self.threads.lock()
    }

    /// Tasks that panicked so far.
    #[cfg(test)]
    pub fn panics(&self) -> u64 {
        self.panics.load(Ordering::Relaxed)
    }

    /// Runs `task` on the next free thread.
    pub fn run(&self, task: impl FnOnce() + Send + 'static) {
        self.queue.lock().ready.push_back(Box::new(task));
        self.wake.notify_one();
    }

    /// Runs `task` on a thread once `at` has come.
    pub fn run_at(&self, at: Instant, task: impl FnOnce() + Send + 'static) {
        let mut queue = self.queue.lock();
        let earliest = queue.timers.peek().is_none_or(|t| at < t.0.at);
        let seq = queue.seq;
        queue.seq += 1;
        queue.timers.push(Reverse(Timed {
            at,
            seq,
            task: Box::new(task),
        }));
        drop(queue);
        // Only a timer earlier than all others changes how long the threads may sleep.
        if earliest {
            self.wake.notify_one();
        }
    }

    /// The next task: a ready one, or one whose time has come.
    fn next(&self) -> Task {
        let mut queue = self.queue.lock();
        loop {
            if let Some(task) = queue.ready.pop_front() {
                return task;
            }
            let now = Instant::now();
            if queue.timers.peek().is_some_and(|t| t.0.at <= now)
                && let Some(Reverse(timed)) = queue.timers.pop()
            {
                return timed.task;
            }
            queue = match queue.timers.peek().map(|t| t.0.at - now) {
                Some(wait) => queue.wait_timeout(&self.wake, wait),
                None => queue.wait(&self.wake),
            };
        }
    }

    fn serve(&self) {
        loop {
            let task = self.next();
            if panic::catch_unwind(AssertUnwindSafe(task)).is_err() {
                self.panics.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    fn pool(name: &'static str) -> &'static Pool {
        Box::leak(Box::new(Pool::new(name)))
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
