//! Every line of the `segmentrecorder` category names its recorder, what the uploader does for
//! it included. Uploads outlive the recorder (retries go on after NULL): once the element is
//! gone, its lines name it as GStreamer prints an object, `<name>`, at the start of the text.
//! A test binary of its own: it sets the category's threshold for the process.
#![cfg(feature = "s3")]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;

const SEC: gst::ClockTime = gst::ClockTime::SECOND;

#[test]
fn uploader_lines_after_the_recorder_is_gone_still_name_it() {
    init();
    // (object address or 0, source file, text)
    let lines: Arc<Mutex<Vec<(usize, String, String)>>> = Arc::default();
    let kept = lines.clone();
    gst::log::remove_default_log_function();
    let function = gst::log::add_log_function(move |cat, _level, file, _, _, object, message| {
        if cat.name() == "segmentrecorder" {
            let object = object.map_or(0, |o| o.as_ptr() as usize);
            let text = message.get().map(|m| m.to_string()).unwrap_or_default();
            kept.lock().unwrap().push((object, file.to_string(), text));
        }
    });
    gst::log::set_active(true);
    gst::log::set_threshold_for_name("segmentrecorder", gst::DebugLevel::Log);

    let dir = tempfile::tempdir().unwrap();
    let pipeline = gst::parse::launch(&format!(
        "audiotestsrc num-buffers=50 samplesperbuffer=320 \
         ! audio/x-raw,format=S16LE,rate=16000,channels=1 \
         ! segmentrecorder name=rec base-dir={} trace-id=call station-key=stt tap=PRE \
           timestamp-mode=running-time segment-duration=1000000000 \
           upload-location=s3://bucket/prefix upload-endpoint=http://127.0.0.1:9 \
           upload-access-key=a upload-secret-key=b upload-retries=3",
        dir.path().display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let weak = pipeline.by_name("rec").unwrap().downgrade();
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(10 * SEC, &[gst::MessageType::Eos, gst::MessageType::Error])
        .expect("EOS");
    assert_eq!(msg.type_(), gst::MessageType::Eos);
    drop(msg);
    pipeline.set_state(gst::State::Null).unwrap();
    drop(bus);
    drop(pipeline);
    assert!(weak.upgrade().is_none(), "the element is still alive");
    // The retries (0.5 s, 1 s, 2 s) go on without the element.
    let deadline = Instant::now() + Duration::from_secs(8);
    while Instant::now() < deadline
        && !lines
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.2.starts_with("Gave up uploading"))
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    gst::log::remove_log_function(function);
    let lines = lines.lock().unwrap().clone();
    let after: Vec<_> = lines.iter().filter(|l| l.0 == 0).collect();
    assert!(
        after
            .iter()
            .any(|l| l.2.starts_with("<rec> Gave up uploading")),
        "{lines:#?}"
    );
    let nameless: Vec<_> = after
        .iter()
        .filter(|l| !l.2.starts_with("<rec> "))
        .collect();
    assert!(
        nameless.is_empty(),
        "{} lines of category segmentrecorder name no recorder, e.g. {:#?}",
        nameless.len(),
        &nameless[..nameless.len().min(3)]
    );
}
