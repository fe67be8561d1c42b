//! The streaming thread and a writer that does not keep up. The writer of the process is
//! stalled as a hung disk would be, so these tests run one at a time in their own binary.

mod common;

use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use common::*;
use gst::prelude::*;
use gstsegmentrecorder::writer::stall_writer_for_tests;

/// Serialises the tests and releases the writer however a test ends.
struct Stalled(#[allow(dead_code)] MutexGuard<'static, ()>);

impl Stalled {
    fn new() -> Self {
        static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
        let guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        stall_writer_for_tests(true);
        Stalled(guard)
    }
}

impl Stalled {
    /// Lets the writer run, the other tests still kept out.
    fn release(&self) {
        stall_writer_for_tests(false);
    }

    /// Stalls the writer again.
    fn stall(&self) {
        stall_writer_for_tests(true);
    }
}

impl Drop for Stalled {
    fn drop(&mut self) {
        stall_writer_for_tests(false);
    }
}

/// The recorders here let 2 s of audio wait for the writer.
const QUEUE_SAMPLES: u64 = 2 * 16_000;

/// Samples that fill the writer queue at 16 kHz, and then some.
fn more_than_the_queue_holds() -> u64 {
    QUEUE_SAMPLES + 3 * 16_000
}

/// A recorder whose queue holds 2 s.
fn small_queue_recorder(base: &std::path::Path) -> gst::Element {
    let element = recorder(base, "call", "stt", "PRE");
    element.set_property("max-queue-time", 2_000_000_000u64);
    element
}

#[test]
fn render_never_touches_the_disk() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("rec");
    let element = recorder(&base, "call", "stt", "PRE");
    let (mut h, bus) = harness(&element, CAPS_16K);
    let stalled = Stalled::new();
    // Two full buckets and a half: with the writer stalled, no directory or file may appear.
    push_signal(&mut h, gst::ClockTime::ZERO, 12 * 16_000, 320, 16_000);
    assert_eq!(std::fs::read_dir(&base).unwrap().count(), 0);
    assert!(written_messages(&bus).is_empty());

    drop(stalled);
    assert!(h.push_event(gst::event::Eos::new()));
    let files = segments(&base);
    assert_eq!(files.len(), 3);
    let recorded: Vec<i16> = files.iter().flat_map(|f| read_wav(f).0).collect();
    assert!((0..12 * 16_000).all(|i| recorded[i as usize] == signal(i)));
}

fn total_field(messages: &[gst::Structure], field: &str) -> u64 {
    messages.iter().map(|m| m.get::<u64>(field).unwrap()).sum()
}

#[test]
fn a_live_stream_drops_and_warns_instead_of_waiting() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let element = small_queue_recorder(dir.path());
    let (mut h, bus) = harness(&element, CAPS_16K);
    h.set_live(true);
    let total = more_than_the_queue_holds();
    {
        let _stalled = Stalled::new();
        // Returns although the writer is stalled far beyond its queue.
        push_signal(&mut h, gst::ClockTime::ZERO, total, 320, 16_000);
        let warnings = messages_of(&bus, gst::MessageType::Warning);
        assert_eq!(warnings.len(), 1, "one warning per episode");
        let gst::MessageView::Warning(w) = warnings[0].view() else {
            unreachable!()
        };
        assert!(w.error().to_string().contains("dropping samples"));
    }
    assert!(h.push_event(gst::event::Eos::new()));

    // Every file keeps its exact length: the dropped samples became silence, and only the
    // samples that overflowed the queue were dropped.
    let messages = written_messages(&bus);
    let files = segments(dir.path());
    assert_eq!(messages.len(), files.len());
    let data: u64 = messages
        .iter()
        .map(|m| m.get::<u64>("data-samples").unwrap())
        .sum();
    let recorded: Vec<i16> = files.iter().flat_map(|f| read_wav(f).0).collect();
    assert_eq!(recorded.len() as u64, total.div_ceil(80_000) * 80_000);
    let kept = (0..total)
        .filter(|&i| recorded[i as usize] == signal(i))
        .count() as u64;
    assert_eq!(kept, data);
    assert!(data >= QUEUE_SAMPLES - 320, "{data}");
    assert!(data < total);
    let dropped = total - data;
    assert_eq!(total_field(&messages, "dropped-samples"), dropped);
    let stats = element.property::<gst::Structure>("recording-stats");
    assert_eq!(
        stats.get::<u64>("samples-dropped-overflow").unwrap(),
        dropped
    );
    assert_eq!(stats.get::<u64>("samples-received").unwrap(), total);
    assert_eq!(stats.get::<u64>("samples-written").unwrap(), data);
    assert!(stats.get::<u64>("queue-high-water").unwrap() >= QUEUE_SAMPLES * 2 - 640);
}

/// Pushes more than the queue holds into a recorder (with `policy`, upstream `live` or not)
/// while the writer is stalled, checks that the pushing thread waits for it, and that once the
/// writer runs again every sample is in the files, without a warning.
fn assert_waits_and_loses_nothing(policy: &str, live: bool) {
    init();
    let dir = tempfile::tempdir().unwrap();
    let element = small_queue_recorder(dir.path());
    element.set_property_from_str("overflow-policy", policy);
    let (mut h, bus) = harness(&element, CAPS_16K);
    h.set_live(live);
    let total = more_than_the_queue_holds();
    let stalled = Stalled::new();
    let pusher = thread::spawn(move || {
        push_signal(&mut h, gst::ClockTime::ZERO, total, 320, 16_000);
        assert!(h.push_event(gst::event::Eos::new()));
        h
    });
    // However long we look, the pusher cannot finish while the writer is stalled.
    thread::sleep(Duration::from_millis(500));
    assert!(!pusher.is_finished());
    drop(stalled);
    let h = pusher.join().unwrap();

    assert!(messages_of(&bus, gst::MessageType::Warning).is_empty());
    let files = segments(dir.path());
    let recorded: Vec<i16> = files.iter().flat_map(|f| read_wav(f).0).collect();
    assert!((0..total).all(|i| recorded[i as usize] == signal(i)));
    assert!(recorded[total as usize..].iter().all(|&s| s == 0));
    drop(h);
}

#[test]
fn a_non_live_stream_waits_for_the_writer_and_loses_nothing() {
    assert_waits_and_loses_nothing("auto", false);
}

#[test]
fn flushing_releases_a_render_waiting_for_the_writer() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let element = small_queue_recorder(dir.path());
    let (mut h, _bus) = harness(&element, CAPS_16K);
    h.set_live(false);
    let total = more_than_the_queue_holds();
    let stalled = Stalled::new();
    let pusher = thread::spawn(move || {
        let mut done = 0u64;
        let mut flow = Ok(gst::FlowSuccess::Ok);
        while done < total && flow.is_ok() {
            let pts = gst::ClockTime::from_nseconds(done * 62_500);
            flow = h.push(buffer(done, 320, Some(pts), 16_000));
            done += 320;
        }
        (h, flow)
    });
    thread::sleep(Duration::from_millis(300));
    assert!(!pusher.is_finished());
    // A flush from the application's thread unblocks the streaming thread.
    let pad = element.static_pad("sink").unwrap();
    assert!(pad.send_event(gst::event::FlushStart::new()));
    let (mut h, flow) = pusher.join().unwrap();
    assert_eq!(flow, Err(gst::FlowError::Flushing));
    drop(stalled);
    assert!(h.push_event(gst::event::FlushStop::new(true)));
}

/// Pushes `total` samples into a live recorder with `policy` while the writer is stalled, and
/// returns what was recorded and the messages.
fn overflow_with(policy: &str, total: u64) -> (Vec<i16>, Vec<gst::Structure>) {
    init();
    let dir = tempfile::tempdir().unwrap();
    let element = small_queue_recorder(dir.path());
    element.set_property_from_str("overflow-policy", policy);
    let (mut h, bus) = harness(&element, CAPS_16K);
    h.set_live(true);
    {
        let _stalled = Stalled::new();
        push_signal(&mut h, gst::ClockTime::ZERO, total, 320, 16_000);
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let recorded = segments(dir.path())
        .iter()
        .flat_map(|f| read_wav(f).0)
        .collect();
    (recorded, written_messages(&bus))
}

#[test]
fn drop_newest_keeps_the_oldest_audio() {
    // 4 s into a 2 s queue: the first 2 s are kept, the newest 2 s become silence.
    let total = 4 * 16_000;
    let (recorded, messages) = overflow_with("drop-newest", total);
    let kept: Vec<u64> = (0..total)
        .filter(|&i| recorded[i as usize] == signal(i))
        .collect();
    assert_eq!(kept.first(), Some(&0));
    assert!(kept.len() as u64 >= QUEUE_SAMPLES - 320 && (kept.len() as u64) < total);
    assert!(
        kept.windows(2).all(|w| w[1] == w[0] + 1),
        "one run from the start"
    );
    assert_eq!(
        total_field(&messages, "dropped-samples"),
        total - kept.len() as u64
    );
}

#[test]
fn drop_oldest_keeps_the_newest_audio() {
    let total = 4 * 16_000;
    let (recorded, messages) = overflow_with("drop-oldest", total);
    let kept: Vec<u64> = (0..total)
        .filter(|&i| recorded[i as usize] == signal(i))
        .collect();
    assert_eq!(kept.last(), Some(&(total - 1)));
    // The queue holds samples in pieces of up to 4,096: that much may go at once.
    assert!(kept.len() as u64 >= QUEUE_SAMPLES - 4_096 && (kept.len() as u64) < total);
    assert!(
        kept.windows(2).all(|w| w[1] == w[0] + 1),
        "one run to the end"
    );
    assert_eq!(
        total_field(&messages, "dropped-samples"),
        total - kept.len() as u64
    );
}

#[test]
fn wait_blocks_even_a_live_stream_and_loses_nothing() {
    assert_waits_and_loses_nothing("wait", true);
}

#[test]
fn stopping_does_not_wait_forever_for_a_disk_that_does_not_answer() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let element = recorder(dir.path(), "call", "stt", "PRE");
    element.set_property("write-retry-time", 1_000_000_000u64);
    let (mut h, bus) = harness(&element, CAPS_16K);
    h.set_live(false);
    let stalled = Stalled::new();
    push_signal(&mut h, gst::ClockTime::ZERO, 16_000, 320, 16_000);
    // The disk hangs: stopping gives up after write-retry-time and the grace, not never.
    let stopper = {
        let element = element.clone();
        thread::spawn(move || {
            let start = std::time::Instant::now();
            element.set_state(gst::State::Null).unwrap();
            start.elapsed()
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !stopper.is_finished() {
        assert!(std::time::Instant::now() < deadline, "stopping hangs");
        thread::sleep(Duration::from_millis(20));
    }
    let took = stopper.join().unwrap();
    assert!(
        took >= Duration::from_millis(2_900) && took < Duration::from_secs(10),
        "{took:?}"
    );
    let warnings = warning_texts(&messages_of(&bus, gst::MessageType::Warning));
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("has not answered") && w.contains("32000 bytes")),
        "{warnings:?}"
    );
    assert!(segments(dir.path()).is_empty());

    // The disk answers again while the process lives: the queued audio is written.
    drop(stalled);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while segments(dir.path()).is_empty() {
        assert!(std::time::Instant::now() < deadline, "never written");
        thread::sleep(Duration::from_millis(20));
    }
    let (samples, _) = read_wav(&segments(dir.path())[0]);
    assert!((0..16_000).all(|i| samples[i as usize] == signal(i)));
    drop(h);
}

/// The overflow warnings waiting on `bus`.
fn overflow_warnings(bus: &gst::Bus) -> usize {
    warning_texts(&messages_of(bus, gst::MessageType::Warning))
        .iter()
        .filter(|t| t.contains("dropping samples"))
        .count()
}

#[test]
fn drop_oldest_warns_once_per_episode() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let element = small_queue_recorder(dir.path());
    element.set_property_from_str("overflow-policy", "drop-oldest");
    let (mut h, bus) = harness(&element, CAPS_16K);
    h.set_live(true);
    let episode = 8 * 16_000;
    let stalled = Stalled::new();
    // 8 s into a 2 s queue in 20 ms buffers: the oldest pieces go one at a time, and the
    // buffers that fit in between do not mean the writer caught up.
    push_signal(&mut h, gst::ClockTime::ZERO, episode, 320, 16_000);
    assert_eq!(overflow_warnings(&bus), 1);

    stalled.release();
    let stat = |name: &str| {
        element
            .property::<gst::Structure>("recording-stats")
            .get::<u64>(name)
            .unwrap()
    };
    let dropped = stat("samples-dropped-overflow");
    assert!(dropped >= episode - QUEUE_SAMPLES, "{dropped}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while stat("queue-bytes") > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the writer never drained"
        );
        thread::sleep(Duration::from_millis(10));
    }

    // The writer caught up: the next overflow is a new episode, warned about again.
    stalled.stall();
    push_signal(&mut h, 8 * gst::ClockTime::SECOND, episode, 320, 16_000);
    assert_eq!(overflow_warnings(&bus), 1);
    assert!(stat("samples-dropped-overflow") >= dropped + episode - QUEUE_SAMPLES);
    drop(stalled);
    assert!(h.push_event(gst::event::Eos::new()));
}
