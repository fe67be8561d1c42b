//! Threads and file handles: going PLAYING → NULL → PLAYING again and again leaks none, and many
//! recorders share the same few writer threads. In their own binary, one test at a time, so that
//! no other test's threads are counted.

mod common;

use std::sync::{Mutex, MutexGuard};

use common::*;
use gst::prelude::*;

fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

/// Threads of the process whose name starts with `prefix`.
fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter(|t| {
            let comm = std::fs::read_to_string(t.as_ref().unwrap().path().join("comm"));
            comm.is_ok_and(|c| c.starts_with(prefix))
        })
        .count()
}

/// Records one short call through a real pipeline and tears it down to NULL.
fn record_once(pipeline: &gst::Pipeline) {
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(30),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("no EOS");
    assert_eq!(msg.type_(), gst::MessageType::Eos, "{msg:?}");
    pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn state_cycles_leak_no_threads_and_no_files() {
    let _one = one_at_a_time();
    init();
    let dir = tempfile::tempdir().unwrap();
    let pipeline = gst::parse::launch(&format!(
        "audiotestsrc num-buffers=60 samplesperbuffer=1000 \
         ! audio/x-raw,format=S16LE,rate=16000,channels=1 ! tee name=t \
         t. ! queue ! segmentrecorder name=pre base-dir={0} trace-id=c station-key=s tap=PRE \
            timestamp-mode=running-time \
         t. ! queue ! segmentrecorder name=post base-dir={0} trace-id=c station-key=s tap=POST \
            timestamp-mode=running-time",
        dir.path().display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();

    // The first run starts the writer threads of the process.
    record_once(&pipeline);
    let writers = threads_named("segrec-writer");
    let threads = count("/proc/self/task");
    let fds = count("/proc/self/fd");
    assert!((2..=4).contains(&writers), "{writers} writer threads");
    for _ in 0..10 {
        record_once(&pipeline);
        assert_eq!(threads_named("segrec-writer"), writers);
        assert_eq!(count("/proc/self/fd"), fds);
    }
    // GLib keeps a few idle threads of its own pool around; a leak would add one per run.
    assert!(count("/proc/self/task") <= threads + 2);

    // Eleven recordings of the same running time: `segment_0.wav`, then `segment_0-1.wav` to
    // `segment_0-10.wav`, none overwritten.
    let pre = segments(&dir.path().join("1970-01-01/c/s/PRE"));
    let mut names: Vec<String> = pre
        .iter()
        .map(|f| f.file_name().unwrap().to_str().unwrap().to_owned())
        .collect();
    names.sort();
    let mut expected: Vec<String> = (1..=10).map(|i| format!("segment_0-{i}.wav")).collect();
    expected.push("segment_0.wav".to_owned());
    expected.sort();
    assert_eq!(names, expected);
    assert!(pre.iter().all(|f| read_wav(f).0.len() == 80_000));
}

#[test]
fn many_recorders_share_a_few_writer_threads() {
    let _one = one_at_a_time();
    init();
    let dir = tempfile::tempdir().unwrap();
    let mut recorders: Vec<_> = (0..300)
        .map(|i| {
            let element = recorder(dir.path(), &format!("call-{i}"), "stt", "PRE");
            harness(&element, CAPS_16K)
        })
        .collect();
    // A second of audio each, interleaved as live calls would arrive.
    for chunk in 0..50u64 {
        for (h, _) in &mut recorders {
            let pts = gst::ClockTime::from_mseconds(chunk * 20);
            h.push(buffer(chunk * 320, 320, Some(pts), 16_000)).unwrap();
        }
    }
    assert!((2..=4).contains(&threads_named("segrec-writer")));
    for (h, bus) in &mut recorders {
        assert!(h.push_event(gst::event::Eos::new()));
        assert_eq!(written_messages(bus).len(), 1);
    }
    assert_eq!(segments(dir.path()).len(), 300);
    assert!((2..=4).contains(&threads_named("segrec-writer")));
}
