//! A writer that stalls on demand, as on a disk that stops answering, for the tests and
//! benchmarks that need a writer slower than the audio. Built with the `test-seams` feature
//! only: without it, the writer threads never look here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// Holds every writer thread before its next batch while `on`. Costs one atomic load per batch
/// when not stalled.
struct Stall {
    on: AtomicBool,
    lock: Mutex<()>,
    released: Condvar,
}

static STALL: Stall = Stall {
    on: AtomicBool::new(false),
    lock: Mutex::new(()),
    released: Condvar::new(),
};

fn lock(m: &Mutex<()>) -> MutexGuard<'_, ()> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Waits while the writer is stalled.
pub(super) fn wait_while_stalled() {
    if STALL.on.load(Ordering::Acquire) {
        let mut guard = lock(&STALL.lock);
        while STALL.on.load(Ordering::Acquire) {
            guard = STALL
                .released
                .wait(guard)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// Stalls (`true`) or releases (`false`) every writer thread of the process, as a disk that
/// stops answering would.
pub fn stall_writer_for_tests(on: bool) {
    let _guard = lock(&STALL.lock);
    STALL.on.store(on, Ordering::Release);
    STALL.released.notify_all();
}
