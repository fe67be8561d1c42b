//! The debug log tells each recorder's story, the writer's part included, every line naming
//! its recorder. A test binary of its own: it sets the category's threshold for the process.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use gst::prelude::*;

const SEC: gst::ClockTime = gst::ClockTime::SECOND;

/// A line of the `segmentrecorder` category: level, address of its object (0 for none),
/// source file, text.
type Line = (gst::DebugLevel, usize, String, String);

/// The address the log gives for `element`.
fn address(element: &gst::Element) -> usize {
    element.as_ptr() as usize
}

#[test]
fn the_log_tells_each_file_opened_written_and_published_by_its_recorder() {
    init();
    let lines: Arc<Mutex<Vec<Line>>> = Arc::default();
    let kept = lines.clone();
    // The default function would print each of the lines on stderr.
    gst::log::remove_default_log_function();
    let function = gst::log::add_log_function(move |cat, level, file, _, _, object, message| {
        if cat.name() == "segmentrecorder" {
            let object = object.map_or(0, |o| o.as_ptr() as usize);
            let text = message.get().map(|m| m.to_string()).unwrap_or_default();
            kept.lock()
                .unwrap()
                .push((level, object, file.to_string(), text));
        }
    });
    gst::log::set_active(true);
    gst::log::set_threshold_for_name("segmentrecorder", gst::DebugLevel::Log);

    // The two taps of a stage record side by side.
    let dir = tempfile::tempdir().unwrap();
    let mut taps = Vec::new();
    for tap in ["PRE", "POST"] {
        let element = recorder(dir.path(), "call", "stt", tap);
        element.set_property("segment-duration", SEC.nseconds());
        let (h, _bus) = harness(&element, CAPS_16K);
        taps.push((tap, element, h));
    }
    for (_, _, h) in &mut taps {
        push_signal(h, SEC / 2, 2 * 16_000, 320, 16_000);
        assert!(h.push_event(gst::event::Eos::new()));
    }
    gst::log::remove_log_function(function);
    let lines = lines.lock().unwrap().clone();

    // Each line of the writer names the recorder it writes for.
    let recorders: Vec<usize> = taps.iter().map(|(_, e, _)| address(e)).collect();
    let writer: Vec<&Line> = lines
        .iter()
        .filter(|l| l.2.starts_with("src/writer/"))
        .collect();
    let nameless: Vec<_> = writer
        .iter()
        .filter(|l| !recorders.contains(&l.1))
        .collect();
    assert!(nameless.is_empty(), "{nameless:#?}");

    for (tap, element, _) in &taps {
        let own = |level: gst::DebugLevel, start: &str| -> Vec<&str> {
            writer
                .iter()
                .filter(|l| l.1 == address(element) && l.0 == level && l.3.starts_with(start))
                .map(|l| l.3.as_str())
                .collect()
        };
        let opened = own(gst::DebugLevel::Debug, "Opened ");
        let wrote = own(gst::DebugLevel::Log, "Wrote ");
        let published = own(gst::DebugLevel::Debug, "Published ");
        // Buckets 0, 1 and 2 s: from 0.5 s to 2.5 s.
        assert_eq!(opened.len(), 3, "{tap}: {lines:#?}");
        assert_eq!(published.len(), 3, "{tap}: {lines:#?}");
        assert!(!wrote.is_empty(), "{tap}: {lines:#?}");
        // A recorder's lines are about its own files.
        let tap_dir = format!("/call/stt/{tap}/");
        for text in opened.iter().chain(&wrote).chain(&published) {
            assert!(text.contains(&tap_dir), "{tap}: {text}");
        }
        // The element's own lines tell the same story, named alike.
        assert!(
            lines.iter().any(|l| l.1 == address(element)
                && l.2.starts_with("src/segmentrecorder/")
                && l.3.starts_with("Opening bucket 1000 ms ")),
            "{tap}: {lines:#?}"
        );
    }
}

#[test]
fn the_debug_category_is_listed_with_the_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let out = gst_tool(
        "gst-launch-1.0",
        // Colours are switched off only by an option before the help.
        &["--gst-debug-no-color", "--gst-debug-help"],
        &dir.path().join("registry.bin"),
    );
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("segmentrecorder ") && l.ends_with("Segment recorder")),
        "{text}"
    );
}
