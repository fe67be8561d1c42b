//! The element's behaviour through `gst_check::Harness`.

mod common;

use std::path::Path;

use common::*;
use gst::prelude::*;

const SEC: gst::ClockTime = gst::ClockTime::SECOND;

/// Pushes `total` samples at 16 kHz in buffers of `size` starting at `start`, sends EOS, and
/// checks every file sample by sample: file `k` offset `j` holds the stream sample whose time is
/// `k·D + j/rate`, or silence where the stream was not.
fn check_exact_split(size: usize, start: gst::ClockTime, total: u64, duration: gst::ClockTime) {
    init();
    let dir = tempfile::tempdir().unwrap();
    let element = recorder(dir.path(), "call-1", "stt", "PRE");
    element.set_property("segment-duration", duration.nseconds());
    let (mut h, bus) = harness(&element, CAPS_16K);
    push_signal(&mut h, start, total, size, 16_000);
    assert!(h.push_event(gst::event::Eos::new()));

    let per_file = duration.nseconds() * 16_000 / 1_000_000_000;
    let first = start.nseconds() * 16_000 / 1_000_000_000;
    let files = segments(dir.path());
    let expected_files = (first + total).div_ceil(per_file) - first / per_file;
    assert_eq!(files.len() as u64, expected_files, "{files:?}");
    for file in &files {
        let k = bucket_ms(file) * 1_000_000 / duration.nseconds();
        let (samples, rate) = read_wav(file);
        assert_eq!(rate, 16_000);
        assert_eq!(samples.len() as u64, per_file, "{}", file.display());
        for (j, &s) in samples.iter().enumerate() {
            let n = k * per_file + j as u64;
            let expect = if n >= first && n < first + total {
                signal(n - first)
            } else {
                0
            };
            assert_eq!(s, expect, "{} offset {j}", file.display());
        }
    }

    let messages = written_messages(&bus);
    assert_eq!(messages.len(), files.len());
    let data: u64 = messages
        .iter()
        .map(|m| m.get::<u64>("data-samples").unwrap())
        .sum();
    assert_eq!(data, total);
}

#[test]
fn buffers_of_333_samples_split_at_the_exact_sample() {
    check_exact_split(
        333,
        gst::ClockTime::from_mseconds(1_500),
        12 * 16_000,
        5 * SEC,
    );
}

#[test]
fn buffers_whose_data_lies_at_odd_addresses_are_recorded_exactly() {
    // Samples are copied from the mapped bytes as they lie: here every buffer's data starts at
    // an odd address, in lengths of 1 to 997 samples, written every 10 ms.
    init();
    let dir = tempfile::tempdir().unwrap();
    let element = recorder(dir.path(), "call-1", "stt", "PRE");
    element.set_property("flush-interval", 10_000_000u64);
    let (mut h, _bus) = harness(&element, CAPS_16K);
    let total = 7 * 16_000 + 5;
    let mut pushed = 0u64;
    for len in [1u64, 2, 3, 160, 333, 997].into_iter().cycle() {
        let len = len.min(total - pushed);
        if len == 0 {
            break;
        }
        let mut bytes = vec![0xAA];
        bytes.extend((pushed..pushed + len).flat_map(|i| signal(i).to_le_bytes()));
        let memory = gst::Memory::from_slice(bytes).share(1..1 + 2 * len as usize);
        let mut buffer = gst::Buffer::new();
        {
            let b = buffer.get_mut().unwrap();
            b.append_memory(memory);
            b.set_pts(gst::ClockTime::from_nseconds(
                pushed * 1_000_000_000 / 16_000,
            ));
        }
        assert_eq!(
            buffer.map_readable().unwrap().as_ptr() as usize % 2,
            1,
            "the data lies at an odd address"
        );
        h.push(buffer).unwrap();
        pushed += len;
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let recorded: Vec<i16> = segments(dir.path())
        .iter()
        .flat_map(|file| read_wav(file).0)
        .collect();
    let expected: Vec<i16> = (0..total).map(signal).collect();
    assert_eq!(&recorded[..total as usize], &expected[..]);
    assert!(recorded[total as usize..].iter().all(|&s| s == 0));
}

#[test]
fn one_sample_buffers_split_at_the_exact_sample() {
    check_exact_split(
        1,
        gst::ClockTime::from_mseconds(700),
        40_000,
        gst::ClockTime::from_mseconds(1_000),
    );
}

#[test]
fn large_buffers_spanning_several_buckets_are_split() {
    check_exact_split(
        50_000,
        gst::ClockTime::from_mseconds(250),
        200_000,
        gst::ClockTime::from_mseconds(1_000),
    );
}

#[test]
fn the_message_names_the_segment() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let element = recorder(dir.path(), "call-7", "translate", "POST");
    let (mut h, bus) = harness(&element, CAPS_16K);
    push_signal(&mut h, 2 * SEC, 16_000, 320, 16_000);
    assert!(h.push_event(gst::event::Eos::new()));

    let messages = written_messages(&bus);
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    let location = dir
        .path()
        .join("1970-01-01/call-7/translate/POST/segment_0.wav");
    assert_eq!(
        m.get::<String>("location").unwrap(),
        location.to_str().unwrap()
    );
    assert_eq!(m.get::<String>("trace-id").unwrap(), "call-7");
    assert_eq!(m.get::<String>("station-key").unwrap(), "translate");
    assert_eq!(m.get::<String>("tap").unwrap(), "POST");
    assert_eq!(m.get::<u64>("bucket-ts-ms").unwrap(), 0);
    assert_eq!(m.get::<u32>("sample-rate").unwrap(), 16_000);
    assert_eq!(m.get::<u64>("samples").unwrap(), 80_000);
    assert_eq!(m.get::<u64>("data-samples").unwrap(), 16_000);
    assert_eq!(m.get::<u64>("silence-samples").unwrap(), 64_000);
    assert_eq!(read_wav(&location).0.len(), 80_000);
}

#[test]
fn each_segment_is_announced_when_opened_before_it_is_written() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let element = recorder(dir.path(), "call-8", "stt", "POST");
    element.set_property("segment-duration", SEC.nseconds());
    let (mut h, bus) = harness(&element, CAPS_16K);
    let start = gst::ClockTime::from_mseconds(1_500);
    push_signal(&mut h, start, 2 * 16_000, 320, 16_000);
    assert!(h.push_event(gst::event::Eos::new()));

    let messages = all_messages(&bus);
    let told: Vec<gst::Structure> = messages
        .iter()
        .filter_map(|m| match m.view() {
            gst::MessageView::Element(e) => e.structure().map(|s| s.to_owned()),
            _ => None,
        })
        .filter(|s| s.name().starts_with("segmentrecorder-segment-"))
        .collect();
    let files = segments(dir.path());
    assert_eq!(files.len(), 3, "{files:?}");
    assert_eq!(told.len(), 2 * files.len(), "{told:?}");
    for ((pair, file), bucket_ms) in told.chunks(2).zip(&files).zip([1_000u64, 2_000, 3_000]) {
        let [opened, written] = pair else {
            unreachable!("chunks of two")
        };
        assert_eq!(opened.name(), "segmentrecorder-segment-opened", "{told:?}");
        assert_eq!(
            written.name(),
            "segmentrecorder-segment-written",
            "{told:?}"
        );
        assert_eq!(
            opened.get::<String>("location").unwrap(),
            file.to_str().unwrap()
        );
        assert_eq!(opened.get::<u64>("bucket-ts-ms").unwrap(), bucket_ms);
        assert_eq!(
            opened.get::<gst::ClockTime>("running-time").unwrap(),
            gst::ClockTime::from_mseconds(bucket_ms)
        );
        for field in ["location", "trace-id", "station-key", "tap"] {
            assert_eq!(
                opened.get::<String>(field).unwrap(),
                written.get::<String>(field).unwrap(),
                "{field}"
            );
        }
        assert_eq!(
            opened.get::<u64>("bucket-ts-ms").unwrap(),
            written.get::<u64>("bucket-ts-ms").unwrap()
        );
        for field in ["file-index", "sample-rate"] {
            assert_eq!(
                opened.get::<u32>(field).unwrap(),
                written.get::<u32>(field).unwrap(),
                "{field}"
            );
        }
        assert_eq!(
            opened.get::<gst::ClockTime>("running-time").unwrap(),
            written.get::<gst::ClockTime>("running-time").unwrap()
        );
    }
    assert_eq!(told[0].get::<String>("trace-id").unwrap(), "call-8");
    assert_eq!(told[0].get::<String>("tap").unwrap(), "POST");
}

#[test]
fn eos_returns_when_every_file_is_complete() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let element = recorder(dir.path(), "call", "stt", "PRE");
    let (mut h, bus) = harness(&element, CAPS_16K);
    push_signal(&mut h, SEC, 11 * 16_000, 320, 16_000);
    assert!(h.push_event(gst::event::Eos::new()));

    // Right when EOS returns: three complete files, no `.part`, every message posted.
    let files = files_under(dir.path());
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(files.iter().all(|f| f.extension().unwrap() == "wav"));
    for f in &files {
        assert_eq!(read_wav(f).0.len(), 80_000);
    }
    assert_eq!(written_messages(&bus).len(), 3);
}

#[test]
fn stopping_without_eos_finalises_what_was_received() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let element = recorder(dir.path(), "call", "stt", "PRE");
    let (mut h, bus) = harness(&element, CAPS_16K);
    push_signal(&mut h, SEC, 2 * 16_000, 320, 16_000);
    element.set_state(gst::State::Null).unwrap();

    let files = segments(dir.path());
    assert_eq!(files.len(), 1);
    let (samples, _) = read_wav(&files[0]);
    assert_eq!(samples.len(), 80_000);
    assert!(samples[..16_000].iter().all(|&s| s == 0));
    assert_eq!(samples[16_000], signal(0));
    assert_eq!(samples[47_999], signal(31_999));
    assert!(samples[48_000..].iter().all(|&s| s == 0));
    assert_eq!(written_messages(&bus).len(), 1);
    drop(h);
}

#[test]
fn a_recorder_records_again_after_going_to_null() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let element = recorder(dir.path(), "call", "stt", "PRE");
    let (mut h, _bus) = harness(&element, CAPS_16K);
    push_signal(&mut h, SEC, 16_000, 320, 16_000);
    assert!(h.push_event(gst::event::Eos::new()));
    element.set_state(gst::State::Null).unwrap();
    element.set_property("trace-id", "call-2");
    drop(h);

    let (mut h, _bus) = harness(&element, CAPS_16K);
    push_signal(&mut h, 6 * SEC, 16_000, 320, 16_000);
    assert!(h.push_event(gst::event::Eos::new()));
    let names: Vec<_> = segments(dir.path())
        .iter()
        .map(|p| p.strip_prefix(dir.path()).unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        [
            Path::new("1970-01-01/call/stt/PRE/segment_0.wav"),
            Path::new("1970-01-01/call-2/stt/PRE/segment_5000.wav"),
        ]
    );
}

#[test]
fn two_recorders_fed_the_same_buffers_write_the_same_files() {
    init();
    let clock = gst::SystemClock::obtain();
    let base_time = clock.time();
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let mut harnesses = Vec::new();
    for dir in &dirs {
        let element = recorder(dir.path(), "call", "stt", "PRE");
        element.set_property_from_str("timestamp-mode", "wall-clock");
        let (h, bus) = harness(&element, CAPS_16K);
        element.set_clock(Some(&clock)).unwrap();
        element.set_base_time(base_time);
        harnesses.push((h, bus));
    }
    // Odd sizes and a timestamp that is not on a sample of the grid.
    let start = gst::ClockTime::from_nseconds(123_456_789);
    for (h, _) in &mut harnesses {
        push_signal(h, start, 7 * 16_000 + 17, 441, 16_000);
        assert!(h.push_event(gst::event::Eos::new()));
    }

    let rel = |d: &Path| -> Vec<_> {
        segments(d)
            .iter()
            .map(|p| p.strip_prefix(d).unwrap().to_owned())
            .collect()
    };
    let names = rel(dirs[0].path());
    assert!(names.len() >= 2, "{names:?}");
    assert_eq!(names, rel(dirs[1].path()));
    for name in &names {
        assert_eq!(bucket_ms(name) % 5_000, 0, "{name:?}");
        let a = std::fs::read(dirs[0].path().join(name)).unwrap();
        let b = std::fs::read(dirs[1].path().join(name)).unwrap();
        assert!(a == b, "{name:?} differs");
    }
    // The files hold UTC: the first bucket is today's.
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(bucket_ms(&names[0]).abs_diff(now_ms) < 60_000);
}

/// Starts `element` alone and returns the error message text, checking that nothing was
/// written under `dir` and that the error is of an unusable setting.
fn start_error(element: &gst::Element, dir: &Path) -> String {
    let error = start_failure(element);
    assert!(files_under(dir).is_empty(), "{:?}", files_under(dir));
    assert!(error.matches(gst::ResourceError::Settings), "{error:?}");
    error.to_string()
}

/// Starts `element` alone, which must fail, and returns its error.
fn start_failure(element: &gst::Element) -> gst::glib::Error {
    let bus = gst::Bus::new();
    element.set_bus(Some(&bus));
    assert!(element.set_state(gst::State::Paused).is_err());
    let _ = element.set_state(gst::State::Null);
    // The first error is the element's own; GstBaseSink follows it with a generic one.
    let errors = messages_of(&bus, gst::MessageType::Error);
    let Some(gst::MessageView::Error(e)) = errors.first().map(|m| m.view()) else {
        panic!("no error message")
    };
    e.error()
}

#[test]
fn starting_without_ids_fails_and_names_the_property() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("rec");
    for (missing, other) in [("trace-id", "station-key"), ("station-key", "trace-id")] {
        let element = gst::ElementFactory::make("segmentrecorder")
            .property("base-dir", base.to_str().unwrap())
            .property(other, "x")
            .build()
            .unwrap();
        let text = start_error(&element, dir.path());
        assert!(text.contains(missing), "{text}");
        assert!(!base.exists());

        element.set_property(missing, "");
        let text = start_error(&element, dir.path());
        assert!(text.contains(missing), "{text}");
    }
}

#[test]
fn ids_of_any_length_are_recorded_rebuilt_and_recovered() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("rec");
    // 1,000 characters escape to 1,154 bytes; 30 CJK characters to 270.
    let trace: String = "sip:alice@example.com;tag="
        .chars()
        .cycle()
        .take(1_000)
        .collect();
    let station: String = "语音识别".chars().cycle().take(30).collect();
    let element = recorder(&base, &trace, &station, "POST");
    let (mut h, bus) = harness(&element, CAPS_16K);
    push_signal(&mut h, SEC, 7 * 16_000, 333, 16_000);
    assert!(h.push_event(gst::event::Eos::new()));

    let files = segments(&base);
    assert_eq!(files.len(), 2, "{files:?}");
    let tap = files[0].parent().unwrap().to_owned();
    let names: Vec<&str> = tap
        .strip_prefix(&base)
        .unwrap()
        .iter()
        .map(|c| c.to_str().unwrap())
        .collect();
    assert_eq!(names.len(), 4, "{names:?}");
    assert_eq!((names[0], names[3]), ("1970-01-01", "POST"));
    assert!(names[1].starts_with("sip%3Aalice@example.com%3Btag=sip%3Aalice@"));
    assert!(names[2].starts_with("%E8%AF%AD%E9%9F%B3%E8%AF%86%E5%88%AB%E8%AF%AD"));
    for name in &names[1..3] {
        assert!(name.len() <= 200 && name.contains('~'), "{name}");
    }
    let recorded: Vec<i16> = files.iter().flat_map(|f| read_wav(f).0).collect();
    assert_eq!(recorded.len(), 2 * 80_000);
    for (i, &s) in recorded.iter().enumerate() {
        let n = i as u64;
        let expect = if (16_000..8 * 16_000).contains(&n) {
            signal(n - 16_000)
        } else {
            0
        };
        assert_eq!(s, expect, "sample {i}");
    }
    let messages = written_messages(&bus);
    assert_eq!(messages.len(), 2);
    for (m, file) in messages.iter().zip(&files) {
        assert_eq!(m.get::<String>("trace-id").unwrap(), trace);
        assert_eq!(m.get::<String>("station-key").unwrap(), station);
        assert_eq!(m.get::<String>("location").unwrap(), file.to_str().unwrap());
    }

    // The rebuild tool finds the tap from the ids as given.
    let rebuilt = dir.path().join("rebuilt.wav");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_segmentrecorder-rebuild"))
        .arg(&base)
        .args([&trace, &station, "POST"])
        .arg(&rebuilt)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(read_wav(&rebuilt).0 == recorded);

    // A `.part` left in that directory is recovered when the same ids start again.
    element.set_state(gst::State::Null).unwrap();
    drop(h);
    std::fs::copy(&files[0], tap.join("segment_20000.wav.part")).unwrap();
    let (mut h, bus) = harness(&element, CAPS_16K);
    assert!(h.push_event(gst::event::Eos::new()));
    let messages = messages_of(&bus, gst::MessageType::Element);
    let recovered = element_messages(&messages, gstsegmentrecorder::SEGMENT_RECOVERED);
    assert_eq!(recovered.len(), 1, "{messages:?}");
    let location = tap.join("segment_20000.wav");
    assert_eq!(
        recovered[0].get::<String>("location").unwrap(),
        location.to_str().unwrap()
    );
    assert!(read_wav(&location).0 == read_wav(&files[0]).0);
}

#[test]
fn an_empty_base_dir_is_refused_at_start() {
    init();
    let listing = || -> Vec<_> {
        let mut names: Vec<_> = std::fs::read_dir(".")
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        names
    };
    let before = listing();
    let element = recorder(Path::new(""), "call", "stt", "PRE");
    let error = start_failure(&element);
    assert!(error.matches(gst::ResourceError::Settings), "{error:?}");
    let text = error.to_string();
    assert!(text.contains("Property 'base-dir' is empty"), "{text}");
    // Nothing was created in the working directory (the gst-launch test checks a fresh one).
    assert_eq!(listing(), before);
}

#[test]
fn an_unusable_base_dir_fails_with_the_os_error() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let base = file.join("rec");
    let element = recorder(&base, "call", "stt", "PRE");
    let error = start_failure(&element);
    assert!(error.matches(gst::ResourceError::OpenWrite), "{error:?}");
    let text = error.to_string();
    assert!(text.contains(base.to_str().unwrap()), "{text}");
    assert!(text.contains("Not a directory"), "{text}");
    assert_eq!(files_under(dir.path()), [file]);
}

#[test]
fn wrong_caps_are_refused_and_nothing_is_written() {
    init();
    for caps in [
        "audio/x-raw,format=S16BE,layout=interleaved,channels=1,rate=16000",
        "audio/x-raw,format=S16LE,layout=interleaved,channels=2,rate=16000",
        "audio/x-raw,format=F32LE,layout=interleaved,channels=1,rate=16000",
        "audio/x-raw,format=S16LE,layout=non-interleaved,channels=1,rate=16000",
        "audio/x-alaw,channels=1,rate=8000",
        // Faster than any audio hardware: long segments would not fit in a WAV file.
        "audio/x-raw,format=S16LE,layout=interleaved,channels=1,rate=768000",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let element = recorder(dir.path(), "call", "stt", "PRE");
        let (mut h, _bus) = harness(&element, caps);
        assert_eq!(
            h.push(buffer(0, 320, Some(gst::ClockTime::ZERO), 16_000)),
            Err(gst::FlowError::NotNegotiated),
            "{caps}"
        );
        assert!(h.push_event(gst::event::Eos::new()));
        assert!(files_under(dir.path()).is_empty(), "{caps}");
    }
}

#[test]
fn any_rate_is_accepted() {
    init();
    for rate in [8_000u32, 11_025, 44_100, 48_000] {
        let dir = tempfile::tempdir().unwrap();
        let element = recorder(dir.path(), "call", "stt", "PRE");
        let caps = format!("audio/x-raw,format=S16LE,layout=interleaved,channels=1,rate={rate}");
        let (mut h, bus) = harness(&element, &caps);
        push_signal(
            &mut h,
            gst::ClockTime::ZERO,
            u64::from(rate) * 6,
            1_000,
            rate,
        );
        assert!(h.push_event(gst::event::Eos::new()));
        let files = segments(dir.path());
        assert_eq!(files.len(), 2);
        let (samples, file_rate) = read_wav(&files[1]);
        assert_eq!(file_rate, rate);
        assert_eq!(samples.len() as u32, rate * 5);
        assert_eq!(samples[0], signal(u64::from(rate) * 5));
        assert_eq!(written_messages(&bus).len(), 2);
    }
}

#[test]
fn hostile_ids_stay_inside_the_base_dir() {
    init();
    let outer = tempfile::tempdir().unwrap();
    let base = outer.path().join("rec");
    let cases = [
        ("../../escape", "..", "%2E.%2F..%2Fescape", "%2E."),
        ("/etc/passwd", "a\\b", "%2Fetc%2Fpasswd", "a%5Cb"),
        ("line\nfeed", "tab\there", "line%0Afeed", "tab%09here"),
        (
            "sip:bob@example.com",
            ".hidden",
            "sip%3Abob@example.com",
            "%2Ehidden",
        ),
    ];
    for (trace, station, trace_dir, station_dir) in cases {
        let element = recorder(&base, trace, station, "PRE");
        let (mut h, bus) = harness(&element, CAPS_16K);
        push_signal(&mut h, gst::ClockTime::ZERO, 1_600, 320, 16_000);
        assert!(h.push_event(gst::event::Eos::new()));
        let messages = written_messages(&bus);
        assert_eq!(messages[0].get::<String>("trace-id").unwrap(), trace);
        let expected = base
            .join("1970-01-01")
            .join(trace_dir)
            .join(station_dir)
            .join("PRE/segment_0.wav");
        assert!(expected.is_file(), "{expected:?}");
    }
    // Nothing anywhere but under the base directory.
    let all = files_under(outer.path());
    assert_eq!(all.len(), cases.len());
    assert!(all.iter().all(|f| f.starts_with(&base)));
}

#[test]
fn crossing_midnight_moves_to_the_next_date_at_the_exact_bucket() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let element = recorder(dir.path(), "call", "stt", "PRE");
    let (mut h, _bus) = harness(&element, CAPS_16K);
    // Running time counts from 1970-01-01T00:00:00Z: 2.5 s before the first midnight.
    let start = gst::ClockTime::from_mseconds(86_397_500);
    push_signal(&mut h, start, 5 * 16_000, 320, 16_000);
    assert!(h.push_event(gst::event::Eos::new()));
    let files = segments(dir.path());
    let rel: Vec<_> = files
        .iter()
        .map(|f| f.strip_prefix(dir.path()).unwrap().to_owned())
        .collect();
    assert_eq!(
        rel,
        [
            Path::new("1970-01-01/call/stt/PRE/segment_86395000.wav"),
            Path::new("1970-01-02/call/stt/PRE/segment_86400000.wav"),
        ]
    );
    let (before, _) = read_wav(&files[0]);
    let (after, _) = read_wav(&files[1]);
    assert_eq!(before[40_000], signal(0));
    assert_eq!(before[79_999], signal(39_999));
    assert_eq!(after[0], signal(40_000));
    assert_eq!(after[39_999], signal(79_999));
}

#[test]
fn an_id_that_is_not_utf8_is_refused_without_taking_the_process_down() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let element = recorder(dir.path(), "call", "stt", "PRE");
    let bus = gst::Bus::new();
    element.set_bus(Some(&bus));
    // As a C application can set it: bytes that are not UTF-8.
    let mut value = gst::glib::Value::from_type(gst::glib::Type::STRING);
    // SAFETY: the value holds a string; g_value_set_string copies the NUL-terminated bytes.
    unsafe {
        use gst::glib::translate::ToGlibPtrMut;
        gst::glib::gobject_ffi::g_value_set_string(
            value.to_glib_none_mut().0,
            c"call-\xff\xfe".as_ptr(),
        );
    }
    element.set_property_from_value("trace-id", &value);
    assert_eq!(element.property::<String>("trace-id"), "call");
    let warnings = warning_texts(&messages_of(&bus, gst::MessageType::Warning));
    assert!(
        warnings
            .iter()
            .any(|w| w.contains("'trace-id' is not valid UTF-8")),
        "{warnings:?}"
    );
}

#[test]
fn every_property_has_a_short_blurb_and_the_element_a_file_sink_klass() {
    init();
    let factory = gst::ElementFactory::find("segmentrecorder").unwrap();
    assert_eq!(
        factory.metadata(gst::ELEMENT_METADATA_KLASS),
        Some("Sink/File/Audio")
    );
    let author = factory.metadata(gst::ELEMENT_METADATA_AUTHOR).unwrap();
    assert!(author.contains('<') && author.ends_with('>'), "{author}");
    let element = factory.create().build().unwrap();
    for pspec in element.list_properties() {
        if pspec.owner_type() != element.type_() {
            continue;
        }
        let blurb = pspec.blurb().unwrap_or_default();
        // One sentence: no full stop followed by another sentence.
        let sentences = blurb
            .split(". ")
            .skip(1)
            .filter(|rest| rest.starts_with(char::is_uppercase))
            .count();
        assert!(
            (20..=100).contains(&blurb.len()) && sentences == 0,
            "{}: {blurb:?} ({} characters)",
            pspec.name(),
            blurb.len()
        );
    }
}

#[cfg(feature = "s3")]
#[test]
fn unusable_upload_settings_fail_the_start_before_base_dir_is_made() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("new/base");
    let element = recorder(&base, "call", "stt", "PRE");
    element.set_property("upload-location", "http://bad");
    let text = start_error(&element, dir.path());
    assert!(text.contains("s3://"), "{text}");
    assert!(!dir.path().join("new").exists());
}
