//! The plugin as users load it: `gst-launch-1.0` pipelines finding the built library through
//! `GST_PLUGIN_PATH`.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;

/// `source` as 16 kHz mono S16LE into a `tee` feeding the two recorder branches and a
/// `wavenc ! filesink` reference at `reference`.
fn tee_pipeline(source: &str, recorders: [&str; 2], reference: &std::path::Path) -> String {
    format!(
        "{source} ! audio/x-raw,format=S16LE,rate=16000,channels=1 ! tee name=t {} {} \
         t. ! queue ! wavenc ! filesink location={}",
        recorders[0],
        recorders[1],
        reference.display()
    )
}

fn samples_of(files: &[PathBuf]) -> Vec<i16> {
    files.iter().flat_map(|f| read_wav(f).0).collect()
}

/// The recorded tap, concatenated, is the reference after `lead` samples of silence, followed
/// by silence only.
fn assert_rebuilds(recorded: &[i16], reference: &[i16], lead: usize) {
    assert!(recorded.len() >= lead + reference.len());
    assert!(recorded[..lead].iter().all(|&s| s == 0), "leading padding");
    for (i, (&r, &e)) in recorded[lead..].iter().zip(reference).enumerate() {
        assert_eq!(r, e, "sample {i} differs");
    }
    assert!(
        recorded[lead + reference.len()..].iter().all(|&s| s == 0),
        "trailing padding"
    );
}

#[test]
fn tee_into_pre_and_post_rebuilds_the_reference() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("rec");
    let reference = dir.path().join("reference.wav");
    let registry = dir.path().join("registry.bin");
    let rec = |tap: &str| {
        format!(
            "t. ! queue ! segmentrecorder base-dir={} trace-id=call-1 station-key=stt \
             tap={tap} timestamp-mode=running-time",
            base.display()
        )
    };
    // 12.3 s of noise in odd 333-sample buffers, faster than real time.
    let pipeline = tee_pipeline(
        "audiotestsrc wave=white-noise samplesperbuffer=333 num-buffers=591",
        [&rec("PRE"), &rec("POST")],
        &reference,
    );
    let out = launch(&pipeline, &registry);
    assert!(out.status.success(), "{out:?}");

    let (reference, rate) = read_wav(&reference);
    assert_eq!((reference.len(), rate), (591 * 333, 16_000));
    let tap = |t: &str| segments(&base.join("1970-01-01/call-1/stt").join(t));
    let (pre, post) = (tap("PRE"), tap("POST"));
    let names = |files: &[PathBuf]| -> Vec<String> {
        files
            .iter()
            .map(|f| f.file_name().unwrap().to_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        names(&pre),
        ["segment_0.wav", "segment_5000.wav", "segment_10000.wav"]
    );
    assert_eq!(names(&pre), names(&post));
    for (a, b) in pre.iter().zip(&post) {
        assert!(std::fs::read(a).unwrap() == std::fs::read(b).unwrap());
    }
    let recorded = samples_of(&pre);
    assert_eq!(recorded.len(), 3 * 80_000);
    assert_rebuilds(&recorded, &reference, 0);
}

#[test]
fn a_live_wall_clock_recording_pairs_pre_and_post() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("rec");
    let reference = dir.path().join("reference.wav");
    let registry = dir.path().join("registry.bin");
    let rec = |tap: &str| {
        format!(
            "t. ! queue ! segmentrecorder base-dir={} trace-id=sip:alice@example.com \
             station-key=tts tap={tap}",
            base.display()
        )
    };
    // 3 s of live noise in 20 ms buffers.
    let pipeline = tee_pipeline(
        "audiotestsrc is-live=true wave=white-noise samplesperbuffer=320 num-buffers=150",
        [&rec("PRE"), &rec("POST")],
        &reference,
    );
    let out = launch(&pipeline, &registry);
    assert!(out.status.success(), "{out:?}");

    let (reference, _) = read_wav(&reference);
    let dates: Vec<_> = std::fs::read_dir(&base)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    // A recording that crosses UTC midnight has two date directories.
    assert!(!dates.is_empty() && dates.len() <= 2, "{dates:?}");
    let tap = |t: &str| -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = dates
            .iter()
            .flat_map(|d| segments(&d.join("sip%3Aalice@example.com/tts").join(t)))
            .collect();
        files.sort_by_key(|p| bucket_ms(p));
        files
    };
    let (pre, post) = (tap("PRE"), tap("POST"));
    assert!(!pre.is_empty() && pre.len() <= 2, "{pre:?}");
    assert_eq!(pre.len(), post.len());
    for (a, b) in pre.iter().zip(&post) {
        assert_eq!(a.file_name(), b.file_name());
        assert!(std::fs::read(a).unwrap() == std::fs::read(b).unwrap());
        assert_eq!(bucket_ms(a) % 5_000, 0);
    }
    // Consecutive files are consecutive buckets.
    for pair in pre.windows(2) {
        assert_eq!(bucket_ms(&pair[1]) - bucket_ms(&pair[0]), 5_000);
    }
    // The audio sits where the first non-silent sample says, and nowhere else.
    let recorded = samples_of(&pre);
    assert_eq!(recorded.len(), pre.len() * 80_000);
    let first_ref = reference.iter().position(|&s| s != 0).unwrap();
    let first_rec = recorded.iter().position(|&s| s != 0).unwrap();
    assert_rebuilds(&recorded, &reference, first_rec - first_ref);

    // The rebuild program joins the tap into one file, across date directories.
    let rebuilt = dir.path().join("rebuilt.wav");
    let out = Command::new(env!("CARGO_BIN_EXE_segmentrecorder-rebuild"))
        .args([
            base.to_str().unwrap(),
            "sip:alice@example.com",
            "tts",
            "post",
        ])
        .arg(&rebuilt)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("of which 0 had no file"));
    assert!(read_wav(&rebuilt).0 == recorded);
}

#[test]
fn gst_inspect_lists_the_element_and_its_properties() {
    let dir = tempfile::tempdir().unwrap();
    let out = gst_tool(
        "gst-inspect-1.0",
        &["segmentrecorder"],
        &dir.path().join("registry.bin"),
    );
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    for property in [
        "base-dir",
        "trace-id",
        "station-key",
        "tap",
        "segment-duration",
        "timestamp-mode",
    ] {
        assert!(text.contains(&format!("  {property} ")), "{property}");
    }
    assert!(text.contains("format: S16LE") && text.contains("channels: 1"));
    assert!(text.contains("rate: [ 1, 384000 ]"), "{text}");
}

#[test]
fn a_missing_trace_id_stops_gst_launch_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("rec");
    let out = launch(
        &format!(
            "audiotestsrc num-buffers=10 ! audio/x-raw,format=S16LE,rate=16000,channels=1 \
             ! segmentrecorder base-dir={} station-key=stt",
            base.display()
        ),
        &dir.path().join("registry.bin"),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Property 'trace-id' is not set"),
        "{stderr}"
    );
    assert!(!base.exists());
}

#[test]
fn an_empty_base_dir_stops_gst_launch_and_writes_nothing_in_the_working_directory() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().join("cwd");
    std::fs::create_dir(&cwd).unwrap();
    let out = launch_in(
        "audiotestsrc num-buffers=10 ! audio/x-raw,format=S16LE,rate=16000,channels=1 \
         ! segmentrecorder base-dir=\"\" trace-id=call-1 station-key=stt",
        &dir.path().join("registry.bin"),
        &cwd,
    );
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Property 'base-dir' is empty"), "{stderr}");
    assert_eq!(files_under(&cwd), Vec::<PathBuf>::new());
    assert_eq!(std::fs::read_dir(&cwd).unwrap().count(), 0);
}

#[test]
fn a_rate_beyond_any_audio_hardware_stops_gst_launch_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("rec");
    let out = launch(
        &format!(
            "audiotestsrc num-buffers=10 ! audio/x-raw,format=S16LE,rate=768000,channels=1 \
             ! segmentrecorder base-dir={} trace-id=call-1 station-key=stt",
            base.display()
        ),
        &dir.path().join("registry.bin"),
    );
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("segmentrecorder0 can't handle caps")
            && stderr.contains("rate=(int)768000"),
        "{stderr}"
    );
    assert!(!base.exists());
}
