//! Mutexes that know their place in the crate's lock order, and check it.
//!
//! Every lock of the element, the writer, the uploader, retention and the pool has a [`Level`]. A thread may take a lock
//! only while every lock it holds has a lower level, so two threads can never wait for each
//! other's locks. In debug builds (every test run) each thread keeps the levels it holds and
//! taking a lock out of order panics at once, naming both locks, instead of deadlocking once in
//! a million runs; release builds keep no record and cost what a plain `Mutex` costs.
//!
//! A poisoned lock is taken all the same: the data these locks guard stays consistent at every
//! point where code can panic, and a recorder must go on after a panic in a callback.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// The crate's lock order: a lock may be taken while holding only locks of lower levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// An element's settings.
    ElementSettings,
    /// An element's running state.
    ElementState,
    /// The process-wide running time → UTC mappings.
    WallClock,
    /// An element's silence watch.
    ElementSilence,
    /// An element's statistics of its last recording.
    ElementLastStats,
    /// An element's connection to the uploader.
    #[cfg(feature = "s3")]
    ElementUploads,
    /// An element's place in the retention of its base directory.
    ElementRetention,
    /// The PRE and POST halves waiting for their partner, process-wide.
    Pairs,
    /// What each stage did in its last pair, for its alarms.
    PairStages,
    /// The files that pairs still need, with the content of those removed meanwhile.
    PairFiles,
    /// The base directories with recorders that keep a retention, process-wide.
    RetentionBases,
    /// A base directory's index of segments and its retention passes.
    RetentionIndex,
    /// A recording's open files, held by the one writer thread serving it.
    WriterFiles,
    /// A recording's queue of commands.
    WriterQueue,
    /// A recording's counters.
    WriterStats,
    /// A recorder's upload counters and files in flight.
    #[cfg(feature = "s3")]
    Uploads,
    /// The files being uploaded in the process, and the recorders waiting for each.
    #[cfg(feature = "s3")]
    UploadsInFlight,
    /// The backlog scans of base directories running in the process.
    #[cfg(feature = "s3")]
    UploadScans,
    /// The threads of a pool.
    PoolThreads,
    /// A pool's ready tasks and timers: the innermost lock, under which nothing else is taken.
    PoolQueue,
}

/// A mutex at a [`Level`] of the lock order.
#[derive(Debug)]
pub struct OrderedMutex<T> {
    level: Level,
    mutex: Mutex<T>,
}

/// The guard of an [`OrderedMutex`]; the lock is released when it is dropped.
pub struct Guard<'a, T> {
    inner: Option<MutexGuard<'a, T>>,
    level: Level,
}

impl<T> OrderedMutex<T> {
    /// A mutex at `level`.
    pub const fn new(level: Level, value: T) -> Self {
        OrderedMutex {
            level,
            mutex: Mutex::new(value),
        }
    }

    /// Takes the lock; in debug builds, panics if the thread holds a lock of this level or a
    /// higher one.
    pub fn lock(&self) -> Guard<'_, T> {
        held::acquire(self.level);
        Guard {
            inner: Some(self.mutex.lock().unwrap_or_else(PoisonError::into_inner)),
            level: self.level,
        }
    }
}

impl<T> Guard<'_, T> {
    /// Waits on `condvar`, releasing the lock meanwhile (the thread takes no other lock while
    /// it waits, so its record of held levels stays as it is).
    pub fn wait(mut self, condvar: &Condvar) -> Self {
        let inner = self
            .inner
            .take()
            .expect("a guard holds its lock until dropped");
        self.inner = Some(condvar.wait(inner).unwrap_or_else(PoisonError::into_inner));
        self
    }

    /// As [`Guard::wait`], for at most `timeout`.
    pub fn wait_timeout(mut self, condvar: &Condvar, timeout: Duration) -> Self {
        let inner = self
            .inner
            .take()
            .expect("a guard holds its lock until dropped");
        let (inner, _) = condvar
            .wait_timeout(inner, timeout)
            .unwrap_or_else(PoisonError::into_inner);
        self.inner = Some(inner);
        self
    }
}

impl<T> std::ops::Deref for Guard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        self.inner
            .as_ref()
            .expect("a guard holds its lock until dropped")
    }
}

impl<T> std::ops::DerefMut for Guard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.inner
            .as_mut()
            .expect("a guard holds its lock until dropped")
    }
}

impl<T> Drop for Guard<'_, T> {
    fn drop(&mut self) {
        drop(self.inner.take());
        held::release(self.level);
    }
}

#[cfg(debug_assertions)]
mod held {
    use super::Level;
    use std::cell::RefCell;

    thread_local! {
        static HELD: RefCell<Vec<Level>> = const { RefCell::new(Vec::new()) };
    }

    pub(super) fn acquire(level: Level) {
        HELD.with_borrow_mut(|held| {
            if let Some(&highest) = held.iter().max()
                && highest >= level
            {
                panic!("lock order violated: taking {level:?} while holding {highest:?}");
            }
            held.push(level);
        });
    }

    pub(super) fn release(level: Level) {
        // Guards may be dropped in any order. `try_with`: a guard can outlive the thread-local
        // when dropped during thread exit.
        let _ = HELD.try_with(|held| {
            let mut held = held.borrow_mut();
            if let Some(i) = held.iter().rposition(|&l| l == level) {
                held.remove(i);
            }
        });
    }
}

#[cfg(not(debug_assertions))]
mod held {
    use super::Level;

    #[inline(always)]
    pub(super) fn acquire(_: Level) {}

    #[inline(always)]
    pub(super) fn release(_: Level) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_taken_in_order_are_fine_and_released_in_any_order() {
        let a = OrderedMutex::new(Level::WriterFiles, 1);
        let b = OrderedMutex::new(Level::WriterQueue, 2);
        let c = OrderedMutex::new(Level::PoolQueue, 3);
        let ga = a.lock();
        let gb = b.lock();
        drop(ga);
        let gc = c.lock();
        assert_eq!(*gb + *gc, 5);
        drop(gb);
        drop(gc);
        // Nothing is held any more: any lock may be taken.
        drop(a.lock());
    }

    #[test]
    #[cfg(debug_assertions)]
    fn a_lock_taken_out_of_order_panics_instead_of_deadlocking() {
        let queue = OrderedMutex::new(Level::WriterQueue, ());
        let pool = OrderedMutex::new(Level::PoolQueue, ());
        let result = std::thread::spawn(move || {
            let _pool = pool.lock();
            let _queue = queue.lock();
        })
        .join();
        let message = *result.unwrap_err().downcast::<String>().unwrap();
        assert!(
            message.contains("taking WriterQueue while holding PoolQueue"),
            "{message}"
        );
    }

    #[test]
    #[cfg(debug_assertions)]
    fn the_same_level_twice_panics() {
        let result = std::thread::spawn(|| {
            let one = OrderedMutex::new(Level::WriterQueue, ());
            let two = OrderedMutex::new(Level::WriterQueue, ());
            let _one = one.lock();
            let _two = two.lock();
        })
        .join();
        assert!(result.is_err());
    }
}
