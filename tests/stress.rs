//! Stress: many recorders with a 10 ms flush interval, streams ended by EOS, NULL or a flush at
//! random moments from several threads, so that a stream ends just as its flush timer comes
//! due. A watchdog fails the test when any thread stops making progress: a deadlock in the
//! writer pool or the element fails here, it does not hang the suite.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;

/// How long the threads keep starting and ending streams.
const RUN_FOR: Duration = Duration::from_secs(20);
/// A thread that makes no progress for this long is stuck.
const STUCK_AFTER: Duration = Duration::from_secs(15);
const THREADS: usize = 8;

/// A small xorshift generator: the test needs no statistical quality, only varied timing.
struct Random(u64);

impl Random {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// One short stream: a few buffers, a pause of a random length around the flush interval,
/// then one of the ways a stream ends.
fn one_stream(base: &std::path::Path, name: &str, random: &mut Random) {
    let rec = recorder(base, name, "stt", "PRE");
    rec.set_property("flush-interval", 10_000_000u64);
    rec.set_property("segment-duration", 100_000_000u64);
    let bus = gst::Bus::new();
    rec.set_bus(Some(&bus));
    // Started before the harness, which would abort the process on a failure, so that the
    // test can say why.
    if rec.set_state(gst::State::Ready).is_err() {
        let errors: Vec<String> = messages_of(&bus, gst::MessageType::Error)
            .iter()
            .filter_map(|m| match m.view() {
                gst::MessageView::Error(e) => Some(format!("{} ({:?})", e.error(), e.debug())),
                _ => None,
            })
            .collect();
        panic!("a recorder failed to start: {errors:?}");
    }
    let mut h = gst_check::Harness::with_element(&rec, Some("sink"), None);
    h.set_src_caps_str(CAPS_16K);
    let buffers = 1 + random.below(12);
    push_signal(&mut h, gst::ClockTime::ZERO, buffers * 160, 160, 16_000);
    thread::sleep(Duration::from_micros(5_000 + random.below(10_000)));
    match random.below(4) {
        0 => {
            h.push_event(gst::event::Eos::new());
            rec.set_state(gst::State::Null).unwrap();
        }
        1 => {
            rec.set_state(gst::State::Null).unwrap();
        }
        2 => {
            h.push_event(gst::event::FlushStart::new());
            h.push_event(gst::event::FlushStop::new(true));
            h.push_event(gst::event::Segment::new(&gst::FormattedSegment::<
                gst::ClockTime,
            >::new()));
            push_signal(&mut h, gst::ClockTime::ZERO, 320, 160, 16_000);
            h.push_event(gst::event::Eos::new());
        }
        _ => {
            h.push_event(gst::event::Eos::new());
        }
    }
    drop(h);
    // Messages left on the private bus hold the element, which holds the bus (and its socket
    // pair): drop them, or thousands of streams run out of file descriptors.
    bus.set_flushing(true);
}

#[test]
fn streams_ending_at_random_moments_never_freeze_the_writer() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let progress: Arc<Vec<AtomicU64>> = Arc::new((0..THREADS).map(|_| AtomicU64::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let open_files = || std::fs::read_dir("/proc/self/fd").unwrap().count();
    let files_before = open_files();
    let started = Instant::now();
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (progress, stop, base) = (progress.clone(), stop.clone(), dir.path().to_owned());
            thread::spawn(move || {
                let mut random = Random(0x9E37_79B9_7F4A_7C15 ^ ((t as u64 + 1) * 0x1234_5678));
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    one_stream(&base, &format!("call-{t}-{}", n % 4), &mut random);
                    n += 1;
                    progress[t].fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    // The watchdog: every thread must finish a stream at least every STUCK_AFTER.
    let mut last: Vec<(u64, Instant)> = vec![(0, Instant::now()); THREADS];
    while started.elapsed() < RUN_FOR {
        thread::sleep(Duration::from_millis(200));
        for (t, (count, at)) in last.iter_mut().enumerate() {
            let now = progress[t].load(Ordering::Relaxed);
            if now != *count {
                *count = now;
                *at = Instant::now();
            }
            assert!(
                at.elapsed() < STUCK_AFTER,
                "thread {t} finished no stream for {STUCK_AFTER:?} (after {now} streams): \
                 the writer or the element is deadlocked"
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + STUCK_AFTER;
    for worker in workers {
        while !worker.is_finished() {
            assert!(
                Instant::now() < deadline,
                "a thread did not finish its last stream"
            );
            thread::sleep(Duration::from_millis(20));
        }
        worker.join().unwrap();
    }
    let total: u64 = progress.iter().map(|p| p.load(Ordering::Relaxed)).sum();
    println!("{total} streams started and ended by {THREADS} threads");
    assert!(
        total >= THREADS as u64 * 10,
        "only {total} streams in {RUN_FOR:?}"
    );
    // Every file is complete: no `.part` is left behind by a stream that ended.
    let parts: Vec<_> = files_under(dir.path())
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".part"))
        .collect();
    assert!(parts.is_empty(), "left behind: {parts:?}");
    // Thousands of streams leave no file (nor socket) open.
    let files_after = open_files();
    assert!(
        files_after < files_before + 16,
        "{files_before} files open before, {files_after} after"
    );
}
