//! `segmentrecorder-pairs` run on base directories laid out as the recorder lays them out, with
//! PRE/POST pairs of known delay and gain: its table, its JSON lines, the trace filter, the
//! delay bound, and what it does with input it cannot use.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::json_lines;
use gstsegmentrecorder::layout::{Identity, segment_dir, segment_file_name};
use gstsegmentrecorder::pair::speech::{quantise, speech_like};

const RATE: u32 = 16_000;
/// 5 s buckets, the first on 2026-11-21.
const BUCKET_MS: u64 = 1_795_240_805_000;
const LEN: usize = 5 * RATE as usize;

fn write_wav(path: &Path, rate: u32, samples: &[i16]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut wav = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        wav.write_sample(s).unwrap();
    }
    wav.finalize().unwrap();
}

/// Where the recorder puts the segment of `trace`/`station`/`tap` for the bucket at
/// `bucket_ms`, file `index`.
fn location(base: &Path, trace: &str, station: &str, tap: &str, index: u32) -> PathBuf {
    let identity = Identity::new(trace, station, tap).unwrap();
    segment_dir(base, &identity, BUCKET_MS).join(segment_file_name(BUCKET_MS, index))
}

/// Writes a pair whose POST is PRE delayed by `delay` samples and scaled by `gain` (linear).
fn write_pair(
    base: &Path,
    trace: &str,
    station: &str,
    index: u32,
    delay: usize,
    gain: f64,
    seed: u64,
) -> (PathBuf, PathBuf) {
    let source = speech_like(RATE, LEN + delay, seed);
    let pre = location(base, trace, station, "PRE", index);
    let post = location(base, trace, station, "POST", index);
    write_wav(&pre, RATE, &quantise(source[delay..].iter().copied()));
    write_wav(
        &post,
        RATE,
        &quantise(source[..LEN].iter().map(|v| v * gain)),
    );
    (pre, post)
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_segmentrecorder-pairs"))
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// A base directory with three pairs and one lone file:
/// - `sip:alice@example.com` / `denoise`: POST 120 ms later, 6 dB down;
/// - `sip:alice@example.com` / `agc`: POST as early, 6 dB up;
/// - `call 2` / `denoise`, the bucket's second file: POST digital silence;
/// - `call 2` / `lonely`: PRE alone.
struct Tree {
    _dir: tempfile::TempDir,
    base: PathBuf,
    delayed: (PathBuf, PathBuf),
}

fn tree() -> Tree {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().to_owned();
    let delayed = write_pair(&base, "sip:alice@example.com", "denoise", 0, 1_920, 0.5, 1);
    write_pair(&base, "sip:alice@example.com", "agc", 0, 0, 2.0, 2);
    let (_, silent) = write_pair(&base, "call 2", "denoise", 1, 0, 1.0, 3);
    write_wav(&silent, RATE, &vec![0; LEN]);
    let lonely = location(&base, "call 2", "lonely", "PRE", 0);
    write_wav(&lonely, RATE, &vec![1_000; LEN]);
    Tree {
        _dir: dir,
        base,
        delayed,
    }
}

#[test]
fn json_lines_hold_one_pair_each_with_every_figure() {
    let t = tree();
    let out = run(&[t.base.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{out:?}");
    let lines = json_lines(&out.stdout);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    let expected_fields: BTreeSet<&str> = [
        "trace-id",
        "station-key",
        "bucket-ts-ms",
        "file-index",
        "pre-location",
        "post-location",
        "alignment",
        "delay-ms",
        "correlation",
        "gain-db",
        "pre-rms-dbfs",
        "post-rms-dbfs",
        "pre-voiced-ratio",
        "post-voiced-ratio",
        "pre-clipped-samples",
        "post-clipped-samples",
        "alarms",
    ]
    .into();
    for line in &lines {
        let fields: BTreeSet<&str> = line
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(fields, expected_fields);
    }
    let find = |trace: &str, station: &str| {
        lines
            .iter()
            .find(|l| l["trace-id"] == trace && l["station-key"] == station)
            .unwrap_or_else(|| panic!("no {trace}/{station} in {lines:#?}"))
    };

    // The ids are shown as given, not as their escaped directory names.
    let denoise = find("sip:alice@example.com", "denoise");
    assert_eq!(denoise["bucket-ts-ms"], BUCKET_MS);
    assert_eq!(denoise["file-index"], 0);
    assert_eq!(denoise["pre-location"], t.delayed.0.to_str().unwrap());
    assert_eq!(denoise["post-location"], t.delayed.1.to_str().unwrap());
    assert_eq!(denoise["alignment"], "measured");
    assert_eq!(denoise["delay-ms"], 120.0);
    assert!(
        denoise["correlation"].as_f64().unwrap() >= 0.999,
        "{denoise}"
    );
    assert!(
        (denoise["gain-db"].as_f64().unwrap() + 6.02).abs() < 0.05,
        "{denoise}"
    );
    let pre_rms = denoise["pre-rms-dbfs"].as_f64().unwrap();
    let post_rms = denoise["post-rms-dbfs"].as_f64().unwrap();
    assert!(pre_rms > -40.0 && pre_rms < -10.0, "{denoise}");
    assert!((pre_rms - post_rms - 6.0).abs() < 1.0, "{denoise}");
    assert!(
        denoise["pre-voiced-ratio"].as_f64().unwrap() > 0.3,
        "{denoise}"
    );
    assert_eq!(denoise["post-clipped-samples"], 0);
    assert_eq!(denoise["alarms"], serde_json::json!([]));

    let agc = find("sip:alice@example.com", "agc");
    assert_eq!(agc["delay-ms"], 0.0);
    assert!(
        (agc["gain-db"].as_f64().unwrap() - 6.02).abs() < 0.05,
        "{agc}"
    );

    let silent = find("call 2", "denoise");
    assert_eq!(silent["file-index"], 1);
    assert_eq!(silent["alignment"], "post-silent");
    assert_eq!(silent["correlation"], 0.0);
    assert_eq!(silent["post-rms-dbfs"], -120.0);
    assert_eq!(silent["post-voiced-ratio"], 0.0);
    // PRE has voice, POST none: the stage muted it, as the recorder would have warned.
    assert_eq!(silent["alarms"], serde_json::json!(["muted"]));
    assert!(
        silent["post-location"]
            .as_str()
            .unwrap()
            .ends_with(&format!("call%202/denoise/POST/segment_{BUCKET_MS}-1.wav"))
    );
}

#[test]
fn the_table_has_a_row_per_pair_and_a_summary() {
    let t = tree();
    let out = run(&[t.base.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "trace-id",
            "station-key",
            "bucket-ts-ms",
            "file",
            "delay-ms",
            "corr",
            "gain-dB",
            "PRE-dBFS",
            "POST-dBFS",
            "PRE-voiced",
            "POST-voiced",
            "POST-clipped",
            "note"
        ]
    );
    // Rows in path order: `call%202` sorts before `sip%3A…`; `agc` before `denoise`.
    assert!(lines[1].starts_with("call 2 "), "{stdout}");
    assert!(
        lines[1].trim_end().ends_with("post-silent,muted"),
        "{stdout}"
    );
    let delayed: Vec<&str> = lines[3].split_whitespace().collect();
    assert_eq!(
        &delayed[..5],
        [
            "sip:alice@example.com",
            "denoise",
            &BUCKET_MS.to_string(),
            "0",
            "120.000"
        ],
        "{stdout}"
    );
    assert_eq!(delayed[6], "-6.02", "{stdout}");
    assert!(lines[2].contains(" agc "), "{stdout}");
    assert_eq!(
        lines[4],
        "3 pairs compared, 0 failed, 1 files without the other tap"
    );
    // Figures are right-aligned under their headings.
    let end = lines[0].find("delay-ms").unwrap() + "delay-ms".len();
    for line in &lines[1..4] {
        assert!(line[..end].ends_with(".000"), "{stdout}");
        assert_eq!(&line[end..end + 1], " ", "{stdout}");
    }
}

#[test]
fn a_trace_id_and_a_delay_bound_narrow_the_search() {
    let t = tree();
    let base = t.base.to_str().unwrap();
    let out = run(&[base, "sip:alice@example.com", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let lines = json_lines(&out.stdout);
    assert_eq!(lines.len(), 2);
    assert!(
        lines
            .iter()
            .all(|l| l["trace-id"] == "sip:alice@example.com")
    );

    let out = run(&[base, "--max-delay-ms", "50", "call 2", "--json"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(json_lines(&out.stdout).len(), 1);

    let out = run(&["--max-delay-ms", "50", base, "--json"]);
    let lines = json_lines(&out.stdout);
    let denoise = lines
        .iter()
        .find(|l| l["trace-id"] == "sip:alice@example.com" && l["station-key"] == "denoise")
        .unwrap();
    assert!(
        denoise["delay-ms"].as_f64().unwrap().abs() <= 50.0,
        "{denoise}"
    );
    assert!(denoise["correlation"].as_f64().unwrap() < 0.5, "{denoise}");

    let out = run(&[base, "nobody", "--json"]);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.is_empty());
}

#[test]
fn unusable_input_is_named_and_the_other_pairs_are_still_compared() {
    let t = tree();
    let base = t.base.to_str().unwrap();
    // A POST that is no WAV file, and a pair whose sides have different rates.
    fs::write(&t.delayed.1, b"not a wav file").unwrap();
    let other = location(&t.base, "call 3", "resample", "POST", 0);
    write_wav(&other, 8_000, &vec![100; 40_000]);
    let other_pre = location(&t.base, "call 3", "resample", "PRE", 0);
    write_wav(&other_pre, RATE, &vec![100; LEN]);

    let out = run(&[base, "--json"]);
    assert!(!out.status.success(), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot read {}", t.delayed.1.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "{} is at 16000 Hz but {} at 8000 Hz",
            other_pre.display(),
            other.display()
        )),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 2, "{stderr}");
    // The two good pairs are still there.
    assert_eq!(json_lines(&out.stdout).len(), 2);

    let out = run(&[base]);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        text(&out.stdout).ends_with("2 pairs compared, 2 failed, 1 files without the other tap\n"),
        "{out:?}"
    );
}

#[test]
fn a_missing_base_directory_and_bad_arguments_fail_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere");
    let out = run(&[missing.to_str().unwrap()]);
    assert!(!out.status.success(), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot read {}", missing.display())),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "{out:?}");
    // A directory missing at the root, and a file given as the base directory.
    let file = dir.path().join("file");
    fs::write(&file, b"not a directory").unwrap();
    for base in ["/nonexistent-segmentrecorder-base", file.to_str().unwrap()] {
        let out = run(&[base]);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        assert!(text(&out.stderr).contains(base), "{out:?}");
        assert!(out.stdout.is_empty(), "{out:?}");
    }

    for args in [
        &[][..],
        &["a", "b", "c"],
        &["a", "--max-delay-ms"],
        &["a", "--max-delay-ms", "soon"],
        &["a", "--jsn"],
        &["a", ""],
    ] {
        let out = run(args);
        assert!(!out.status.success(), "{args:?}: {out:?}");
        assert!(
            text(&out.stderr).starts_with("segmentrecorder-pairs: "),
            "{args:?}: {out:?}"
        );
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
    }
}
