//! Untidy streams through the element: jitter, holes, overlaps, GAP events, flushes, new
//! segments, DISCONT buffers, rate changes, call boundaries and reference timestamps. Each test
//! states where every sample must land; the segments are read back with the rebuild tool.

mod common;

use std::path::Path;

use common::*;
use gst::prelude::*;
use gstsegmentrecorder::layout::Identity;
use gstsegmentrecorder::rebuild::{Rebuilt, rebuild};

const MS: u64 = 1_000_000;

fn ms(v: u64) -> gst::ClockTime {
    gst::ClockTime::from_mseconds(v)
}

/// The tap rebuilt from bucket 0 on: index `n` is the sample at `n / rate` of running time.
fn tap(base: &Path, trace: &str, tap: &'static str) -> Rebuilt {
    let r = rebuild(base, &Identity::new(trace, "stt", tap).unwrap(), None).unwrap();
    assert_eq!(r.first_bucket_ms, 0, "these tests start in bucket 0");
    r
}

/// Pushes samples `first..first + len` of the test signal stamped `pts`.
fn push(h: &mut gst_check::Harness, first: u64, len: usize, pts: Option<gst::ClockTime>) {
    h.push(buffer(first, len, pts, 16_000)).unwrap();
}

/// Sum of a message field over all segment-written messages.
fn total(messages: &[gst::Structure], field: &str) -> u64 {
    messages.iter().map(|m| m.get::<u64>(field).unwrap()).sum()
}

/// `expected[i]` is `Some(k)`: signal sample `k`; `None`: silence.
fn assert_samples(samples: &[i16], expected: impl Fn(usize) -> Option<u64>) {
    for (i, &s) in samples.iter().enumerate() {
        let e = expected(i).map_or(0, signal);
        assert_eq!(s, e, "sample {i}");
    }
}

fn setup(
    trace: &str,
) -> (
    tempfile::TempDir,
    gst::Element,
    gst_check::Harness,
    gst::Bus,
) {
    init();
    let dir = tempfile::tempdir().unwrap();
    let element = recorder(dir.path(), trace, "stt", "PRE");
    let (h, bus) = harness(&element, CAPS_16K);
    (dir, element, h, bus)
}

#[test]
fn jitter_within_the_threshold_is_placed_by_count() {
    let (dir, _e, mut h, bus) = setup("call");
    // 100 buffers of 20 ms stamped up to 35 ms early or late.
    for i in 0..100u64 {
        let jitter: i64 = [0, 35, -35, 20, -10][i as usize % 5];
        let pts = (i * 20 * MS) as i64 + jitter * MS as i64;
        push(
            &mut h,
            i * 320,
            320,
            Some(gst::ClockTime::from_nseconds(pts.max(0) as u64)),
        );
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let r = tap(dir.path(), "call", "PRE");
    assert_samples(&r.samples, |i| (i < 32_000).then_some(i as u64));
    let m = written_messages(&bus);
    assert_eq!(total(&m, "data-samples"), 32_000);
    assert_eq!(total(&m, "dropped-samples"), 0);
}

/// Pushes samples `first..first + len` stamped `pts` and flagged DISCONT.
fn push_discont(h: &mut gst_check::Harness, first: u64, len: usize, pts: gst::ClockTime) {
    let mut b = buffer(first, len, Some(pts), 16_000);
    b.get_mut().unwrap().set_flags(gst::BufferFlags::DISCONT);
    h.push(b).unwrap();
}

#[test]
fn a_hole_beyond_the_threshold_becomes_silence_at_its_place() {
    // Flagged as the discontinuity it is (as rtpjitterbuffer flags the packet after a loss),
    // or unflagged with discont-wait 0: followed at once.
    for flagged in [true, false] {
        let (dir, element, mut h, bus) = setup("call");
        push(&mut h, 0, 16_000, Some(ms(0)));
        // 300 ms lost: the next second starts at 1.3 s.
        if flagged {
            push_discont(&mut h, 16_000, 16_000, ms(1_300));
        } else {
            element.set_property("discont-wait", 0u64);
            push(&mut h, 16_000, 16_000, Some(ms(1_300)));
        }
        assert!(h.push_event(gst::event::Eos::new()));
        let r = tap(dir.path(), "call", "PRE");
        assert_samples(&r.samples, |i| match i {
            0..16_000 => Some(i as u64),
            16_000..20_800 => None,
            20_800..36_800 => Some(i as u64 - 4_800),
            _ => None,
        });
        let m = written_messages(&bus);
        assert_eq!(total(&m, "silence-samples"), 80_000 - 32_000);
    }
}

#[test]
fn a_flagged_buffer_resyncs_even_within_the_threshold() {
    // RTP after a lost 20 ms packet: the next one is flagged and 20 ms ahead of the count.
    let (dir, _e, mut h, _bus) = setup("call");
    for k in 0..50u64 {
        if k == 10 || k == 30 || k == 31 {
            continue;
        }
        if k == 11 || k == 32 {
            push_discont(&mut h, k * 320, 320, ms(k * 20));
        } else {
            push(&mut h, k * 320, 320, Some(ms(k * 20)));
        }
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let r = tap(dir.path(), "call", "PRE");
    let lost = |i: usize| [10, 30, 31].contains(&(i / 320));
    assert_samples(&r.samples, |i| (i < 16_000 && !lost(i)).then_some(i as u64));
}

#[test]
fn a_long_pause_writes_no_silent_files() {
    let (dir, _e, mut h, _bus) = setup("call");
    push(&mut h, 0, 16_000, Some(ms(0)));
    push(&mut h, 16_000, 16_000, Some(ms(600_000)));
    assert!(h.push_event(gst::event::Eos::new()));
    let names: Vec<u64> = segments(dir.path()).iter().map(|p| bucket_ms(p)).collect();
    assert_eq!(names, [0, 600_000]);
}

#[test]
fn an_overlap_beyond_the_threshold_is_dropped_and_counted() {
    let (dir, element, mut h, bus) = setup("call");
    element.set_property("discont-wait", 0u64);
    push(&mut h, 0, 16_000, Some(ms(0)));
    // Restamped 200 ms back: its first 3,200 samples overlap and are dropped.
    push(&mut h, 16_000, 8_000, Some(ms(800)));
    assert!(h.push_event(gst::event::Eos::new()));
    let r = tap(dir.path(), "call", "PRE");
    assert_samples(&r.samples, |i| match i {
        0..16_000 => Some(i as u64),
        16_000..20_800 => Some(i as u64 + 3_200),
        _ => None,
    });
    let messages = all_messages(&bus);
    let m = element_messages(&messages, gstsegmentrecorder::SEGMENT_WRITTEN);
    assert_eq!(total(&m, "dropped-samples"), 3_200);
    // Input samples = data written + dropped.
    assert_eq!(total(&m, "data-samples") + 3_200, 24_000);
    // One warning for the episode, with its count.
    let warnings = warning_texts(&messages);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("Dropped 3200 samples (200 ms)"),
        "{warnings:?}"
    );
}

#[test]
fn the_overlap_warning_gives_the_duration_at_the_rate_it_was_dropped_at() {
    let (_dir, element, mut h, bus) = setup("call");
    element.set_property("discont-wait", 0u64);
    push(&mut h, 0, 16_000, Some(ms(0)));
    push(&mut h, 16_000, 8_000, Some(ms(800)));
    h.set_src_caps_str("audio/x-raw,format=S16LE,layout=interleaved,channels=1,rate=8000");
    h.push(buffer(24_000, 8_000, Some(ms(1_300)), 8_000))
        .unwrap();
    assert!(h.push_event(gst::event::Eos::new()));
    let warnings = warning_texts(&all_messages(&bus));
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("Dropped 3200 samples (200 ms)"),
        "{warnings:?}"
    );
}

#[test]
fn after_a_resync_back_the_stream_is_at_its_timestamps() {
    // From 1 s on, the stream is stamped 200 ms back for good. With the default discont-wait
    // it is followed once that has lasted a second; then only the 200 ms that overlap are
    // dropped and every later sample is at its timestamp, not 40 ms late.
    let (dir, _e, mut h, bus) = setup("call");
    for k in 0..200u64 {
        let pts = if k < 50 { k * 20 } else { k * 20 - 200 };
        push(&mut h, k * 320, 320, Some(ms(pts)));
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let r = tap(dir.path(), "call", "PRE");
    // Resynced at the buffer stamped 2.0 s, input sample 35,200, counted at 2.2 s until then.
    assert_samples(&r.samples, |i| match i {
        0..35_200 => Some(i as u64),
        35_200..60_800 => Some(i as u64 + 3_200),
        _ => None,
    });
    let messages = all_messages(&bus);
    let m = element_messages(&messages, gstsegmentrecorder::SEGMENT_WRITTEN);
    assert_eq!(total(&m, "dropped-samples"), 3_200);
    assert_eq!(warning_texts(&messages).len(), 1);
}

#[test]
fn a_stray_timestamp_loses_at_most_its_own_buffer() {
    // 4 s of 20 ms buffers, buffer 100 stamped 500 ms or 60 s late. Under discont-wait it is
    // counted as if stamped right; beyond it the stream goes there and comes back at once,
    // and what it comes back to goes to a further file instead of being dropped. (A buffer
    // flagged DISCONT is believed: one stamped 500 ms late moves the stream for discont-wait.)
    for (late_ms, flagged) in [(500, false), (60_000, false), (60_000, true)] {
        let (dir, _e, mut h, bus) = setup("call");
        for k in 0..200u64 {
            if k == 100 && flagged {
                push_discont(&mut h, k * 320, 320, ms(k * 20 + late_ms));
            } else if k == 100 {
                push(&mut h, k * 320, 320, Some(ms(k * 20 + late_ms)));
            } else {
                push(&mut h, k * 320, 320, Some(ms(k * 20)));
            }
        }
        assert!(h.push_event(gst::event::Eos::new()));
        let r = tap(dir.path(), "call", "PRE");
        let stray = 32_000..32_320;
        let misplaced = (0..64_000)
            .filter(|i| !stray.contains(i) && r.samples[*i] != signal(*i as u64))
            .count();
        assert_eq!(misplaced, 0, "{late_ms} ms late, flagged {flagged}");
        let messages = all_messages(&bus);
        let m = element_messages(&messages, gstsegmentrecorder::SEGMENT_WRITTEN);
        assert_eq!(total(&m, "dropped-samples"), 0);
        assert!(warning_texts(&messages).is_empty());
    }
}

#[test]
fn the_alignment_threshold_and_discont_wait_are_honoured() {
    let (dir, element, mut h, _bus) = setup("call");
    element.set_property("alignment-threshold", 10 * MS);
    element.set_property("discont-wait", 0u64);
    // 20 ms late is beyond 10 ms: silence at once.
    push(&mut h, 0, 320, Some(ms(0)));
    push(&mut h, 320, 320, Some(ms(40)));
    // With a discont-wait of 1 s, one stray timestamp is ignored...
    element.set_property("discont-wait", 1_000 * MS);
    push(&mut h, 640, 320, Some(ms(200)));
    push(&mut h, 960, 320, Some(ms(80)));
    assert!(h.push_event(gst::event::Eos::new()));
    let r = tap(dir.path(), "call", "PRE");
    assert_samples(&r.samples, |i| match i {
        0..320 => Some(i as u64),
        320..640 => None,
        640..1_600 => Some(i as u64 - 320),
        _ => None,
    });
}

#[test]
fn buffers_without_timestamps_continue_and_a_first_one_starts_now() {
    let (dir, element, mut h, _bus) = setup("call");
    let clock = gst_check::TestClock::new();
    clock.set_time(ms(7_300));
    element.set_clock(Some(&clock)).unwrap();
    element.set_base_time(gst::ClockTime::ZERO);
    push(&mut h, 0, 320, None);
    push(&mut h, 320, 320, None);
    assert!(h.push_event(gst::event::Eos::new()));
    let files = segments(dir.path());
    assert_eq!(files.len(), 1);
    assert_eq!(bucket_ms(&files[0]), 5_000);
    let (samples, _) = read_wav(&files[0]);
    // 7.3 s is 2.3 s into the bucket.
    assert_samples(&samples, |i| {
        (36_800..37_440).contains(&i).then(|| i as u64 - 36_800)
    });
}

#[test]
fn a_gap_event_is_written_as_silence() {
    let (dir, _e, mut h, bus) = setup("call");
    push(&mut h, 0, 16_000, Some(ms(0)));
    assert!(
        h.push_event(
            gst::event::Gap::builder(ms(1_000))
                .duration(ms(12_000))
                .build()
        )
    );
    push(&mut h, 16_000, 16_000, None);
    assert!(h.push_event(gst::event::Eos::new()));
    // The bucket the gap covers whole has its file: the stream was there, silent.
    let names: Vec<u64> = segments(dir.path()).iter().map(|p| bucket_ms(p)).collect();
    assert_eq!(names, [0, 5_000, 10_000]);
    let r = tap(dir.path(), "call", "PRE");
    assert_samples(&r.samples, |i| match i {
        0..16_000 => Some(i as u64),
        208_000..224_000 => Some(i as u64 - 192_000),
        _ => None,
    });
    let m = written_messages(&bus);
    assert_eq!(total(&m, "data-samples"), 32_000);
    assert_eq!(total(&m, "silence-samples"), 240_000 - 32_000);
}

#[test]
fn a_flush_re_anchors_and_never_overwrites() {
    let (dir, _e, mut h, bus) = setup("call");
    push(&mut h, 0, 48_000, Some(ms(0)));
    // A seek back: flush, new segment from 0, audio again from 1 s of running time.
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    let segment = gst::FormattedSegment::<gst::ClockTime>::new();
    assert!(h.push_event(gst::event::Segment::new(&segment)));
    push(&mut h, 100_000, 16_000, Some(ms(1_000)));
    assert!(h.push_event(gst::event::Eos::new()));

    let files: Vec<_> = segments(dir.path())
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
        .collect();
    assert_eq!(files, ["segment_0.wav", "segment_0-1.wav"]);
    let tap_dir = dir.path().join("1970-01-01/call/stt/PRE");
    let (first, _) = read_wav(&tap_dir.join("segment_0.wav"));
    assert_samples(&first, |i| (i < 48_000).then_some(i as u64));
    let (second, _) = read_wav(&tap_dir.join("segment_0-1.wav"));
    assert_samples(&second, |i| {
        (16_000..32_000)
            .contains(&i)
            .then(|| 100_000 + i as u64 - 16_000)
    });
    let m = written_messages(&bus);
    let indexes: Vec<u32> = m.iter().map(|m| m.get("file-index").unwrap()).collect();
    assert_eq!(indexes, [0, 1]);
    assert_eq!(total(&m, "dropped-samples"), 0);
}

#[test]
fn a_new_segment_re_anchors_at_once() {
    let (dir, element, mut h, _bus) = setup("call");
    element.set_property("discont-wait", 5_000 * MS);
    push(&mut h, 0, 16_000, Some(ms(0)));
    // The stream restarts 10 s later in running time: no waiting for discont-wait.
    let mut segment = gst::FormattedSegment::<gst::ClockTime>::new();
    segment.set_base(ms(10_000));
    assert!(h.push_event(gst::event::Segment::new(&segment)));
    push(&mut h, 16_000, 16_000, Some(ms(1_000)));
    assert!(h.push_event(gst::event::Eos::new()));
    let r = tap(dir.path(), "call", "PRE");
    assert_samples(&r.samples, |i| match i {
        0..16_000 => Some(i as u64),
        176_000..192_000 => Some(i as u64 - 160_000),
        _ => None,
    });
}

#[test]
fn a_discont_buffer_going_back_drops_only_what_overlaps() {
    let (dir, _e, mut h, bus) = setup("call");
    push(&mut h, 0, 16_000, Some(ms(0)));
    // Flagged and stamped 200 ms back: resynced there, as GstAudioStreamAlign does.
    push_discont(&mut h, 16_000, 16_000, ms(800));
    assert!(h.push_event(gst::event::Eos::new()));
    let m = written_messages(&bus);
    assert_eq!(m.len(), 1);
    assert_eq!(total(&m, "dropped-samples"), 3_200);
    let r = tap(dir.path(), "call", "PRE");
    assert_samples(&r.samples, |i| match i {
        0..16_000 => Some(i as u64),
        16_000..28_800 => Some(i as u64 + 3_200),
        _ => None,
    });
}

#[test]
fn a_gap_of_an_hour_writes_a_minute_of_silent_files() {
    let (dir, _e, mut h, _bus) = setup("call");
    push(&mut h, 0, 16_000, Some(ms(0)));
    assert!(
        h.push_event(
            gst::event::Gap::builder(ms(1_000))
                .duration(ms(3_600_000))
                .build()
        )
    );
    push(&mut h, 16_000, 16_000, None);
    assert!(h.push_event(gst::event::Eos::new()));
    // The data's bucket, 12 whole silent files, then the rest of the hour is a pause; the
    // audio after it is at its time, 1 s into bucket 3,601,000 ms.
    let names: Vec<u64> = segments(dir.path()).iter().map(|p| bucket_ms(p)).collect();
    let mut expected: Vec<u64> = (0..=12).map(|k| k * 5_000).collect();
    expected.push(3_600_000);
    assert_eq!(names, expected);
    let (last, _) = read_wav(segments(dir.path()).last().unwrap());
    assert_samples(&last, |i| (16_000..32_000).contains(&i).then_some(i as u64));
}

#[test]
fn a_rate_change_closes_the_bucket_and_continues_in_a_further_file() {
    let (dir, _e, mut h, bus) = setup("call");
    push(&mut h, 0, 32_000, Some(ms(0)));
    h.set_src_caps_str("audio/x-raw,format=S16LE,layout=interleaved,channels=1,rate=8000");
    h.push(buffer(32_000, 8_000, Some(ms(2_000)), 8_000))
        .unwrap();
    assert!(h.push_event(gst::event::Eos::new()));
    let tap_dir = dir.path().join("1970-01-01/call/stt/PRE");
    let (at16, r16) = read_wav(&tap_dir.join("segment_0.wav"));
    assert_eq!((at16.len(), r16), (80_000, 16_000));
    assert_samples(&at16, |i| (i < 32_000).then_some(i as u64));
    let (at8, r8) = read_wav(&tap_dir.join("segment_0-1.wav"));
    assert_eq!((at8.len(), r8), (40_000, 8_000));
    assert_samples(&at8, |i| {
        (16_000..24_000).contains(&i).then(|| i as u64 + 16_000)
    });
    let m = written_messages(&bus);
    assert_eq!(m[1].get::<u32>("file-index").unwrap(), 1);
    assert_eq!(m[1].get::<u32>("sample-rate").unwrap(), 8_000);
}

#[test]
fn changing_the_trace_id_while_playing_is_a_call_boundary() {
    let (dir, element, mut h, bus) = setup("call-1");
    push(&mut h, 0, 32_000, Some(ms(0)));
    element.set_property("trace-id", "call-2");
    element.set_property_from_str("tap", "POST");
    push(&mut h, 32_000, 16_000, Some(ms(2_000)));
    assert!(h.push_event(gst::event::Eos::new()));

    let first = tap(dir.path(), "call-1", "PRE");
    assert_samples(&first.samples, |i| (i < 32_000).then_some(i as u64));
    let second = tap(dir.path(), "call-2", "POST");
    assert_samples(&second.samples, |i| {
        (32_000..48_000).contains(&i).then_some(i as u64)
    });
    let m = written_messages(&bus);
    let ids: Vec<(String, String)> = m
        .iter()
        .map(|m| (m.get("trace-id").unwrap(), m.get("tap").unwrap()))
        .collect();
    assert_eq!(
        ids,
        [
            ("call-1".into(), "PRE".into()),
            ("call-2".into(), "POST".into())
        ]
    );
}

#[test]
fn an_unusable_id_while_playing_is_refused_with_a_warning() {
    let (dir, element, mut h, bus) = setup("call-1");
    push(&mut h, 0, 16_000, Some(ms(0)));
    element.set_property("trace-id", "");
    assert_eq!(element.property::<String>("trace-id"), "call-1");
    push(&mut h, 16_000, 16_000, Some(ms(1_000)));
    assert!(h.push_event(gst::event::Eos::new()));
    let warnings = messages_of(&bus, gst::MessageType::Warning);
    let gst::MessageView::Warning(w) = warnings[0].view() else {
        unreachable!()
    };
    assert!(
        w.error().to_string().contains("'trace-id' is not set"),
        "{}",
        w.error()
    );
    assert!(w.error().matches(gst::ResourceError::Settings));
    let r = tap(dir.path(), "call-1", "PRE");
    assert_samples(&r.samples, |i| (i < 32_000).then_some(i as u64));
}

#[test]
fn reference_timestamps_name_the_files_in_utc() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let element = recorder(dir.path(), "call", "stt", "PRE");
    element.set_property_from_str("timestamp-mode", "reference-timestamp");
    let (mut h, bus) = harness(&element, CAPS_16K);
    let unix = gst::Caps::new_empty_simple("timestamp/x-unix");
    let other = gst::Caps::new_empty_simple("timestamp/x-ntp");
    // 2026-11-21T06:00:02.500Z, carried by the buffers; the running time says otherwise.
    let utc = gst::ClockTime::from_mseconds(1_795_240_802_500);
    for i in 0..100u64 {
        let mut b = buffer(i * 320, 320, Some(ms(i * 20)), 16_000);
        {
            let b = b.get_mut().unwrap();
            gst::ReferenceTimestampMeta::add(b, &other, ms(i), None);
            gst::ReferenceTimestampMeta::add(b, &unix, utc + ms(i * 20), None);
        }
        h.push(b).unwrap();
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let m = written_messages(&bus);
    let buckets: Vec<u64> = m.iter().map(|m| m.get("bucket-ts-ms").unwrap()).collect();
    assert_eq!(buckets, [1_795_240_800_000]);
    let files = segments(dir.path());
    assert!(files[0].starts_with(dir.path().join("2026-11-21")));
    let (samples, _) = read_wav(&files[0]);
    assert_samples(&samples, |i| {
        (40_000..72_000).contains(&i).then(|| i as u64 - 40_000)
    });
}

#[test]
fn without_a_reference_timestamp_the_wall_clock_is_used() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let element = recorder(dir.path(), "call", "stt", "PRE");
    element.set_property_from_str("timestamp-mode", "reference-timestamp");
    let (mut h, bus) = harness(&element, CAPS_16K);
    push_signal(&mut h, gst::ClockTime::ZERO, 16_000, 320, 16_000);
    assert!(h.push_event(gst::event::Eos::new()));
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let m = written_messages(&bus);
    let bucket: u64 = m[0].get("bucket-ts-ms").unwrap();
    assert!(bucket.abs_diff(now_ms) < 60_000, "{bucket} vs {now_ms}");
}
