//! PRE/POST pair analysis in the element: each bucket recorded before and after a real stage is
//! compared once both halves are published, and the stage's muting and clipping raise alarms.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;
use gstsegmentrecorder::PAIR;

type Recorded = (Vec<gst::Structure>, Vec<String>, [gst::Structure; 2]);

/// Records `source` (16 kHz mono) through a `tee`: PRE straight, POST after `stage`. Returns
/// the pair messages (waited for until `pairs` came, or 30 s), the warnings and the two
/// recorders' stats.
fn record(base: &Path, source: &str, stage: &str, pairs: usize) -> Recorded {
    record_with(base, source, stage, pairs, |_| ())
}

/// [`record`], with `setup` given the pipeline before it plays.
fn record_with(
    base: &Path,
    source: &str,
    stage: &str,
    pairs: usize,
    setup: impl FnOnce(&gst::Pipeline),
) -> Recorded {
    let rec = |tap: &str| {
        format!(
            "segmentrecorder name={tap} base-dir={} trace-id=call-1 station-key=stt tap={tap} \
             timestamp-mode=running-time",
            base.display()
        )
    };
    let pipeline = gst::parse::launch(&format!(
        "{source} ! audio/x-raw,format=S16LE,rate=16000,channels=1 ! tee name=t \
         t. ! queue ! {} t. ! queue ! {stage} ! audio/x-raw,format=S16LE ! {}",
        rec("PRE"),
        rec("POST")
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    setup(&pipeline);
    let bus = pipeline.bus().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut found = Vec::new();
    let mut warnings = Vec::new();
    let mut eos = false;
    let deadline = Instant::now() + Duration::from_secs(30);
    // The comparisons end after the files are written, so after EOS: wait for them while
    // playing (a pipeline gone to NULL flushes its bus).
    while (!eos || found.len() < pairs) && Instant::now() < deadline {
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Eos(_) => {
                // EOS waits for the comparisons of the pairs its recorders completed.
                assert_eq!(found.len(), pairs, "pairs before EOS");
                eos = true;
            }
            gst::MessageView::Error(e) => panic!("{e:?}"),
            gst::MessageView::Warning(w) => warnings.push(w.error().to_string()),
            gst::MessageView::Element(e) => {
                if let Some(s) = e.structure().filter(|s| s.name() == PAIR) {
                    found.push(s.to_owned());
                }
            }
            _ => (),
        }
    }
    let stats = ["PRE", "POST"].map(|name| {
        pipeline
            .by_name(name)
            .unwrap()
            .property::<gst::Structure>("recording-stats")
    });
    pipeline.set_state(gst::State::Null).unwrap();
    found.sort_by_key(|s| s.get::<u64>("bucket-ts-ms").unwrap());
    (found, warnings, stats)
}

fn f(s: &gst::Structure, field: &str) -> f64 {
    s.get::<f64>(field)
        .unwrap_or_else(|e| panic!("{field}: {e:?} in {s}"))
}

#[test]
fn a_volume_stage_is_told_as_its_gain_with_no_delay() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let (pairs, warnings, stats) = record(
        dir.path(),
        "audiotestsrc wave=white-noise volume=0.3 num-buffers=750 samplesperbuffer=320",
        "volume volume=0.5",
        3,
    );
    // 15 s: three buckets, each compared once, by the recorder that published second.
    assert_eq!(pairs.len(), 3, "{pairs:?}");
    for (i, p) in pairs.iter().enumerate() {
        assert_eq!(p.get::<u64>("bucket-ts-ms").unwrap(), i as u64 * 5_000);
        assert_eq!(p.get::<&str>("trace-id").unwrap(), "call-1");
        assert_eq!(p.get::<&str>("station-key").unwrap(), "stt");
        assert_eq!(p.get::<u32>("file-index").unwrap(), 0);
        assert!(p.get::<&str>("pre-location").unwrap().contains("/PRE/"));
        assert!(p.get::<&str>("post-location").unwrap().contains("/POST/"));
        assert_eq!(p.get::<&str>("alignment").unwrap(), "measured");
        assert_eq!(f(p, "delay-ms"), 0.0, "{p}");
        assert!(f(p, "correlation") > 0.999, "{p}");
        // 0.5 is -6.02 dB, give or take the rounding of quiet samples.
        assert!((f(p, "gain-db") + 6.02).abs() < 0.05, "{p}");
        assert!((f(p, "post-rms-dbfs") - f(p, "pre-rms-dbfs") + 6.02).abs() < 0.05);
        assert!(f(p, "pre-voiced-ratio") > 0.9 && f(p, "post-voiced-ratio") > 0.9);
        assert_eq!(p.get::<u64>("post-clipped-samples").unwrap(), 0);
    }
    assert!(warnings.is_empty(), "{warnings:?}");
    let compared: u64 = stats
        .iter()
        .map(|s| s.get::<u64>("pairs-compared").unwrap())
        .sum();
    assert_eq!(compared, 3);
    for s in &stats {
        assert_eq!(s.get::<u64>("pairs-skipped").unwrap(), 0);
    }
}

#[test]
fn a_fir_low_pass_keeps_most_of_the_audio_at_its_delay() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let (pairs, _, _) = record(
        dir.path(),
        "audiotestsrc wave=white-noise volume=0.3 num-buffers=500 samplesperbuffer=320",
        "audioconvert ! audiowsinclimit mode=low-pass cutoff=3000 length=101 ! audioconvert",
        2,
    );
    assert_eq!(pairs.len(), 2, "{pairs:?}");
    for p in &pairs {
        // White noise keeps the share of its power below the cutoff (3 of 8 kHz).
        assert!(f(p, "correlation") > 0.5, "{p}");
        // The filter compensates its latency: what delay remains is a sample or so.
        assert!(f(p, "delay-ms").abs() <= 0.125, "{p}");
        assert!(f(p, "gain-db") < -3.0, "{p}");
    }
}

#[test]
fn a_stage_that_mutes_or_clips_raises_its_alarm_once() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let (pairs, warnings, _) = record(
        dir.path(),
        "audiotestsrc wave=white-noise volume=0.3 num-buffers=750 samplesperbuffer=320",
        "volume volume=0",
        3,
    );
    assert_eq!(pairs.len(), 3);
    for p in &pairs {
        assert_eq!(p.get::<&str>("alignment").unwrap(), "post-silent", "{p}");
    }
    let muted: Vec<_> = warnings.iter().filter(|w| w.contains("muted")).collect();
    assert_eq!(muted.len(), 1, "{warnings:?}");
    assert!(
        muted[0].contains("call-1") && muted[0].contains("'stt'"),
        "{}",
        muted[0]
    );

    let dir = tempfile::tempdir().unwrap();
    let (pairs, warnings, _) = record(
        dir.path(),
        "audiotestsrc wave=white-noise volume=0.3 num-buffers=500 samplesperbuffer=320",
        "volume volume=8",
        2,
    );
    assert!(
        pairs
            .iter()
            .all(|p| p.get::<u64>("post-clipped-samples").unwrap() > 0)
    );
    let clips: Vec<_> = warnings.iter().filter(|w| w.contains("clips")).collect();
    assert_eq!(clips.len(), 1, "{warnings:?}");
}

fn alarms(s: &gst::Structure) -> Vec<String> {
    s.get::<gst::Array>("alarms")
        .unwrap_or_else(|e| panic!("alarms: {e:?} in {s}"))
        .iter()
        .map(|v| v.get::<String>().unwrap())
        .collect()
}

/// From `from`, the stage's output is its input `delay` later: a delay line switched in.
fn delay_from(stage: &gst::Element, from: gst::ClockTime, delay: usize) {
    let history = std::sync::Mutex::new(vec![0i16; delay]);
    stage
        .static_pad("src")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let Some(buffer) = info.buffer_mut() else {
                return gst::PadProbeReturn::Ok;
            };
            let delayed = buffer.pts().is_some_and(|pts| pts >= from);
            let buffer = buffer.make_mut();
            let mut map = buffer.map_writable().unwrap();
            let samples: Vec<i16> = map
                .chunks_exact(2)
                .map(|b| i16::from_le_bytes([b[0], b[1]]))
                .collect();
            // The line holds the last `delay` samples in, whether or not it is switched in.
            let mut history = history.lock().unwrap();
            let mut line = std::mem::take(&mut *history);
            line.extend_from_slice(&samples);
            if delayed {
                for (out, s) in map.chunks_exact_mut(2).zip(&line) {
                    out.copy_from_slice(&s.to_le_bytes());
                }
            }
            *history = line.split_off(line.len() - delay);
            gst::PadProbeReturn::Ok
        });
}

#[test]
fn a_delay_that_jumps_mid_call_raises_one_alarm_at_the_bucket_it_jumps_in() {
    init();
    let dir = tempfile::tempdir().unwrap();
    // 20 s: the stage passes the audio on as it comes for two buckets, then 40 ms late.
    let (pairs, warnings, _) = record_with(
        dir.path(),
        "audiotestsrc wave=white-noise volume=0.3 num-buffers=1000 samplesperbuffer=320",
        "identity name=stage",
        4,
        |pipeline| {
            let stage = pipeline.by_name("stage").unwrap();
            delay_from(&stage, gst::ClockTime::from_seconds(10), 640);
        },
    );
    assert_eq!(pairs.len(), 4, "{pairs:?}");
    let delays: Vec<f64> = pairs.iter().map(|p| f(p, "delay-ms")).collect();
    assert_eq!(delays, [0.0, 0.0, 40.0, 40.0], "{pairs:?}");
    let raised: Vec<Vec<String>> = pairs.iter().map(alarms).collect();
    assert_eq!(
        raised,
        [vec![], vec![], vec!["delay-jumped".to_string()], vec![]]
    );
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("jumped from 0.0 ms to 40.0 ms")
            && warnings[0].contains("'stt'")
            && warnings[0].contains("bucket 10000 ms"),
        "{warnings:?}"
    );
}

#[test]
fn a_stage_that_mutes_mid_call_raises_the_alarm_once_per_episode() {
    init();
    let dir = tempfile::tempdir().unwrap();
    // 25 s: the stage mutes for the buckets at 5 and 10 s, lets the audio through again at
    // 15 s, and mutes once more at 20 s: two episodes.
    let (pairs, warnings, _) = record_with(
        dir.path(),
        "audiotestsrc wave=white-noise volume=0.3 num-buffers=1250 samplesperbuffer=320",
        "volume name=stage",
        5,
        |pipeline| {
            let stage = pipeline.by_name("stage").unwrap();
            let weak = stage.downgrade();
            stage.static_pad("sink").unwrap().add_probe(
                gst::PadProbeType::BUFFER,
                move |_, info| {
                    let (Some(stage), Some(pts)) =
                        (weak.upgrade(), info.buffer().and_then(|b| b.pts()))
                    else {
                        return gst::PadProbeReturn::Ok;
                    };
                    let s = pts.seconds();
                    stage.set_property("mute", (5..15).contains(&s) || s >= 20);
                    gst::PadProbeReturn::Ok
                },
            );
        },
    );
    assert_eq!(pairs.len(), 5, "{pairs:?}");
    let alignment: Vec<&str> = pairs
        .iter()
        .map(|p| p.get::<&str>("alignment").unwrap())
        .collect();
    assert_eq!(
        alignment,
        [
            "measured",
            "post-silent",
            "post-silent",
            "measured",
            "post-silent"
        ]
    );
    let raised: Vec<Vec<String>> = pairs.iter().map(alarms).collect();
    let muted = vec!["muted".to_string()];
    assert_eq!(raised, [vec![], muted.clone(), vec![], vec![], muted]);
    let warned: Vec<&String> = warnings.iter().filter(|w| w.contains("muted")).collect();
    assert_eq!(warned.len(), 2, "{warnings:?}");
    assert!(warned[0].contains("bucket 5000 ms"), "{warned:?}");
    assert!(warned[1].contains("bucket 20000 ms"), "{warned:?}");
}

#[test]
fn recorders_of_two_pipelines_in_one_process_pair_up_and_a_lone_tap_does_not_pair() {
    init();
    let dir = tempfile::tempdir().unwrap();
    // The two recorders spell the base directory differently: a symbolic link to it, with a
    // `.` in it.
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(dir.path().join("rec"), &link).unwrap();
    std::fs::create_dir(dir.path().join("rec")).unwrap();
    let run = |tap: &str, stage: &str, base: &Path| {
        let pipeline = gst::parse::launch(&format!(
            "audiotestsrc wave=ticks volume=0.3 num-buffers=250 samplesperbuffer=320 ! \
             audio/x-raw,format=S16LE,rate=16000,channels=1 ! {stage} ! \
             segmentrecorder name=rec base-dir={} trace-id=call-2 station-key=agc tap={tap} \
             timestamp-mode=running-time",
            base.display()
        ))
        .unwrap();
        let bus = pipeline.bus().unwrap();
        pipeline.set_state(gst::State::Playing).unwrap();
        (pipeline, bus)
    };
    let (pre, pre_bus) = run("PRE", "identity", &dir.path().join("rec"));
    let (post, post_bus) = run("POST", "volume volume=2", &link.join("."));
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut found = Vec::new();
    while found.is_empty() && Instant::now() < deadline {
        for bus in [&pre_bus, &post_bus] {
            while let Some(msg) = bus.pop() {
                if let gst::MessageView::Element(e) = msg.view()
                    && let Some(s) = e.structure().filter(|s| s.name() == PAIR)
                {
                    found.push(s.to_owned());
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(found.len(), 1, "{found:?}");
    assert!((f(&found[0], "gain-db") - 6.02).abs() < 0.1, "{}", found[0]);
    for p in [&pre, &post] {
        p.set_state(gst::State::Null).unwrap();
    }

    // A tap without a partner is compared with nothing.
    let dir = tempfile::tempdir().unwrap();
    let pipeline = gst::parse::launch(&format!(
        "audiotestsrc wave=white-noise num-buffers=250 samplesperbuffer=320 ! \
         audio/x-raw,format=S16LE,rate=16000,channels=1 ! segmentrecorder base-dir={} \
         trace-id=call-3 station-key=stt tap=PRE timestamp-mode=running-time",
        dir.path().display()
    ))
    .unwrap();
    let bus = pipeline.bus().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut lone = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(100))
            && let gst::MessageView::Element(e) = msg.view()
            && let Some(s) = e.structure().filter(|s| s.name() == PAIR)
        {
            lone.push(s.to_owned());
        }
    }
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(lone.is_empty(), "{lone:?}");
}

#[test]
fn the_offline_program_agrees_with_the_messages() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let (pairs, _, _) = record(
        dir.path(),
        "audiotestsrc wave=pink-noise volume=0.3 num-buffers=750 samplesperbuffer=320",
        "audioconvert ! audiowsinclimit mode=low-pass cutoff=2000 length=51 ! audioconvert ! \
         volume volume=0.7",
        3,
    );
    assert_eq!(pairs.len(), 3);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_segmentrecorder-pairs"))
        .arg(dir.path())
        .arg("--json")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let lines = json_lines(&out.stdout);
    assert_eq!(lines.len(), 3, "{lines:?}");
    for message in &pairs {
        let bucket = message.get::<u64>("bucket-ts-ms").unwrap();
        let line = lines
            .iter()
            .find(|l| l["bucket-ts-ms"] == bucket)
            .unwrap_or_else(|| panic!("bucket {bucket} in {lines:?}"));
        // The same files through the same comparison: the same figures.
        for field in [
            "delay-ms",
            "correlation",
            "gain-db",
            "pre-rms-dbfs",
            "post-rms-dbfs",
            "pre-voiced-ratio",
            "post-voiced-ratio",
        ] {
            let (m, l) = (f(message, field), line[field].as_f64().unwrap());
            assert!((m - l).abs() < 1e-9, "{field}: {m} vs {l}");
        }
        for field in ["trace-id", "station-key", "pre-location", "post-location"] {
            assert_eq!(
                message.get::<&str>(field).unwrap(),
                line[field].as_str().unwrap(),
                "{field}"
            );
        }
        assert_eq!(
            message.get::<u64>("post-clipped-samples").unwrap(),
            line["post-clipped-samples"].as_u64().unwrap()
        );
        let line_alarms: Vec<String> = line["alarms"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(alarms(message), line_alarms);
    }
}
