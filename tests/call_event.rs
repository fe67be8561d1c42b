//! Call boundaries carried in the stream: the `segmentrecorder-call` event switches a recorder
//! to another call exactly between the buffers it was sent between, and the recorders on the
//! branches of a `tee` all at the same sample.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;
use gstsegmentrecorder::layout::Identity;
use gstsegmentrecorder::rebuild::rebuild;
use gstsegmentrecorder::{CALL_EVENT, call_event};

fn ms(v: u64) -> gst::ClockTime {
    gst::ClockTime::from_mseconds(v)
}

#[test]
fn the_event_switches_the_call_between_two_buffers() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let element = recorder(dir.path(), "call-1", "stt", "PRE");
    let notified = Arc::new(AtomicUsize::new(0));
    let n = notified.clone();
    element.connect_notify(Some("trace-id"), move |_, _| {
        n.fetch_add(1, Ordering::SeqCst);
    });
    let (mut h, bus) = harness(&element, CAPS_16K);
    h.push(buffer(0, 16_321, Some(ms(0)), 16_000)).unwrap();
    assert!(h.push_event(call_event("call-2", None)));
    h.push(buffer(16_321, 16_000, None, 16_000)).unwrap();
    assert!(h.push_event(call_event("call-3", Some("tts"))));
    h.push(buffer(32_321, 8_000, None, 16_000)).unwrap();
    assert!(h.push_event(gst::event::Eos::new()));

    let tap = |trace: &str, station: &str| {
        rebuild(
            dir.path(),
            &Identity::new(trace, station, "PRE").unwrap(),
            None,
        )
        .unwrap()
    };
    let expect = |r: &gstsegmentrecorder::rebuild::Rebuilt, range: std::ops::Range<usize>| {
        for (i, &s) in r.samples.iter().enumerate() {
            let e = if range.contains(&i) {
                signal(i as u64)
            } else {
                0
            };
            assert_eq!(s, e, "sample {i}");
        }
    };
    expect(&tap("call-1", "stt"), 0..16_321);
    expect(&tap("call-2", "stt"), 16_321..32_321);
    expect(&tap("call-3", "tts"), 32_321..40_321);
    assert_eq!(element.property::<String>("trace-id"), "call-3");
    assert_eq!(element.property::<String>("station-key"), "tts");
    assert_eq!(notified.load(Ordering::SeqCst), 2);
    assert!(warning_texts(&all_messages(&bus)).is_empty());
}

#[test]
fn an_unusable_event_is_refused_with_a_warning_and_recording_goes_on() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let element = recorder(dir.path(), "call-1", "stt", "PRE");
    let (mut h, bus) = harness(&element, CAPS_16K);
    h.push(buffer(0, 16_000, Some(ms(0)), 16_000)).unwrap();
    let no_id = gst::event::CustomDownstream::new(gst::Structure::new_empty(CALL_EVENT));
    let empty_id = call_event("", None);
    let not_a_string = gst::event::CustomDownstream::new(
        gst::Structure::builder(CALL_EVENT)
            .field("trace-id", 7i32)
            .build(),
    );
    for event in [no_id, empty_id, not_a_string] {
        assert!(h.push_event(event));
    }
    h.push(buffer(16_000, 16_000, None, 16_000)).unwrap();
    assert!(h.push_event(gst::event::Eos::new()));

    let messages = all_messages(&bus);
    let warnings = warning_texts(&messages);
    assert_eq!(warnings.len(), 3, "{warnings:?}");
    assert!(warnings[0].contains("no field 'trace-id'"), "{warnings:?}");
    assert!(
        warnings[1].contains("'trace-id' is not set"),
        "{warnings:?}"
    );
    assert!(warnings[2].contains("not a string"), "{warnings:?}");
    // Everything went on under the call it was in, and nowhere else.
    assert_eq!(element.property::<String>("trace-id"), "call-1");
    let r = rebuild(
        dir.path(),
        &Identity::new("call-1", "stt", "PRE").unwrap(),
        None,
    )
    .unwrap();
    assert!(
        r.samples[..32_000]
            .iter()
            .enumerate()
            .all(|(i, &s)| s == signal(i as u64))
    );
    let calls: Vec<_> = std::fs::read_dir(dir.path().join("1970-01-01"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(calls, ["call-1"]);
}

/// The segment files of one tap, by call: file name → samples.
fn tap_files(base: &Path, tap: &str) -> BTreeMap<String, BTreeMap<String, Vec<i16>>> {
    let mut calls = BTreeMap::new();
    let day = base.join("1970-01-01");
    for call in std::fs::read_dir(&day).unwrap() {
        let call = call.unwrap().file_name().into_string().unwrap();
        let dir: PathBuf = day.join(&call).join("stt").join(tap);
        let files = segments(&dir)
            .into_iter()
            .map(|f| {
                let name = f.file_name().unwrap().to_str().unwrap().to_owned();
                (name, read_wav(&f).0)
            })
            .collect();
        calls.insert(call, files);
    }
    calls
}

/// `source` into a `tee` feeding a PRE and a POST recorder of call-0 under `base`, playing;
/// with the tee's sink pad, where the calls are sent, and the bus.
fn two_taps(base: &Path, source: &str) -> (gst::Pipeline, gst::Pad, gst::Bus) {
    let base = base.display();
    let rec = |tap: &str| {
        format!(
            "t. ! queue ! segmentrecorder base-dir={base} trace-id=call-0 station-key=stt \
             tap={tap} timestamp-mode=running-time"
        )
    };
    let pipeline = gst::parse::launch(&format!(
        "{source} ! audio/x-raw,format=S16LE,rate=16000,channels=1 ! tee name=t {} {}",
        rec("PRE"),
        rec("POST")
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let tee_sink = pipeline.by_name("t").unwrap().static_pad("sink").unwrap();
    let bus = pipeline.bus().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    (pipeline, tee_sink, bus)
}

/// Ends the stream with EOS, which must come within a minute, and stops the pipeline.
fn end(pipeline: &gst::Pipeline, bus: &gst::Bus) {
    pipeline.send_event(gst::event::Eos::new());
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(60),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("no EOS within 60 s");
    assert_eq!(msg.type_(), gst::MessageType::Eos, "{msg:?}");
    pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn a_hundred_boundaries_through_a_tee_switch_both_taps_at_the_same_sample() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let (pipeline, tee_sink, bus) = two_taps(
        dir.path(),
        "audiotestsrc is-live=true wave=white-noise samplesperbuffer=320",
    );
    // From the application thread, at moments unrelated to the buffers, as an application
    // would.
    let deadline = Instant::now() + Duration::from_secs(60);
    for k in 1..=100 {
        std::thread::sleep(Duration::from_millis(7 + (k * 13) % 40));
        assert!(tee_sink.send_event(call_event(&format!("call-{k}"), None)));
        assert!(
            Instant::now() < deadline,
            "the pipeline does not take the events"
        );
    }
    std::thread::sleep(Duration::from_millis(100));
    end(&pipeline, &bus);

    let (pre, post) = (tap_files(dir.path(), "PRE"), tap_files(dir.path(), "POST"));
    let with_audio = pre.values().filter(|files| !files.is_empty()).count();
    assert!(with_audio > 50, "only {with_audio} calls got audio");
    assert_eq!(
        pre.keys().collect::<Vec<_>>(),
        post.keys().collect::<Vec<_>>()
    );
    for (call, files) in &pre {
        // Same files, same samples: both taps switched at the same sample.
        assert!(files == &post[call], "{call}: PRE and POST differ");
    }
}

/// The call directories of one tap: `<call>/<station>`.
fn call_dirs(base: &Path, tap: &str) -> std::collections::BTreeSet<String> {
    files_under(base)
        .into_iter()
        .filter(|p| p.components().any(|c| c.as_os_str() == tap))
        .map(|p| {
            let rel = p.strip_prefix(base.join("1970-01-01")).unwrap();
            let mut parts = rel.components().map(|c| c.as_os_str().to_str().unwrap());
            format!("{}/{}", parts.next().unwrap(), parts.next().unwrap())
        })
        .collect()
}

#[test]
fn flushing_seeks_cost_a_tap_at_most_one_call_each() {
    init();
    for round in 0..3u64 {
        let dir = tempfile::tempdir().unwrap();
        let (pipeline, tee_sink, bus) = two_taps(
            dir.path(),
            "audiotestsrc wave=white-noise samplesperbuffer=160 ! identity sync=true",
        );
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut threads = Vec::new();
        // Calls from three threads, flushing seeks from a fourth, for two seconds.
        for t in 0..3u64 {
            let (pad, stop) = (tee_sink.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                let mut k = 0;
                while !stop.load(Ordering::SeqCst) {
                    let station = (k % 5 == 0).then_some("tts");
                    pad.send_event(call_event(&format!("call-{t}-{k}"), station));
                    k += 1;
                    std::thread::sleep(Duration::from_millis(9 + t));
                }
            }));
        }
        let seeks = Arc::new(AtomicUsize::new(0));
        let (p, s, n) = (pipeline.clone(), stop.clone(), seeks.clone());
        threads.push(std::thread::spawn(move || {
            let mut k = 0u64;
            while !s.load(Ordering::SeqCst) {
                let at = gst::ClockTime::from_mseconds((k * 1_370 + round * 500) % 20_000);
                if p.seek_simple(gst::SeekFlags::FLUSH, at).is_ok() {
                    n.fetch_add(1, Ordering::SeqCst);
                }
                k += 1;
                std::thread::sleep(Duration::from_millis(50 + (k * 37) % 200));
            }
        }));
        std::thread::sleep(Duration::from_secs(2));
        stop.store(true, Ordering::SeqCst);
        for t in threads {
            t.join().unwrap();
        }
        end(&pipeline, &bus);
        // What a flush discards differs from branch to branch. A flush that reaches the tee
        // while it passes a call event on keeps the event from the branches it has not reached
        // yet (a flushing pad stores no sticky event): those stay in the previous call until
        // the next boundary. That is at most one call per flush; everything else agrees.
        let (pre, post) = (call_dirs(dir.path(), "PRE"), call_dirs(dir.path(), "POST"));
        assert!(pre.len() > 20, "round {round}: only {} calls", pre.len());
        let differ = pre.symmetric_difference(&post).collect::<Vec<_>>();
        let seeks = seeks.load(Ordering::SeqCst);
        assert!(
            differ.len() <= seeks,
            "round {round}: {} calls in one tap only after {seeks} flushes: {differ:?}",
            differ.len()
        );
    }
}

#[test]
fn silence_declared_before_a_boundary_is_filed_under_the_old_call() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let element = recorder(dir.path(), "call-A", "stt", "PRE");
    let (mut h, _bus) = harness(&element, CAPS_16K);
    h.push(buffer(0, 16_000, Some(ms(0)), 16_000)).unwrap();
    assert!(
        h.push_event(
            gst::event::Gap::builder(ms(1_000))
                .duration(ms(11_000))
                .build()
        )
    );
    assert!(h.push_event(call_event("call-B", None)));
    h.push(buffer(16_000, 16_000, Some(ms(12_000)), 16_000))
        .unwrap();
    assert!(h.push_event(gst::event::Eos::new()));
    let names = |call: &str| -> Vec<String> {
        segments(&dir.path().join("1970-01-01").join(call).join("stt/PRE"))
            .iter()
            .map(|f| f.file_name().unwrap().to_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        names("call-A"),
        ["segment_0.wav", "segment_5000.wav", "segment_10000.wav"]
    );
    assert_eq!(names("call-B"), ["segment_10000.wav"]);
}
