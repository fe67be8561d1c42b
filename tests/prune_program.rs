//! `segmentrecorder-prune`: retention offline, on trees the element recorded, by the same
//! rules; what `--dry-run` lists is exactly what a run removes; bad input removes nothing.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use common::*;

/// Bytes of a 5 s segment at 16 kHz.
const SEGMENT: u64 = 44 + 160_000;

fn prune(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_segmentrecorder-prune"))
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Records `seconds` of PRE and POST of `trace` under `base` with the element.
fn record(base: &Path, trace: &str, seconds: u64) {
    init();
    for tap in ["PRE", "POST"] {
        let element = recorder(base, trace, "stt", tap);
        let (mut h, _bus) = harness(&element, CAPS_16K);
        push_signal(
            &mut h,
            gst::ClockTime::ZERO,
            seconds * 16_000,
            1_600,
            16_000,
        );
        assert!(h.push_event(gst::event::Eos::new()));
    }
}

/// Sets the modification time of `file` to `ago` before now.
fn age(file: &Path, ago: Duration) {
    std::fs::File::options()
        .write(true)
        .open(file)
        .unwrap()
        .set_modified(SystemTime::now() - ago)
        .unwrap();
}

/// The paths after `prefix` on the lines of `stdout` that start with it.
fn listed(stdout: &str, prefix: &str) -> BTreeSet<PathBuf> {
    stdout
        .lines()
        .filter_map(|l| l.strip_prefix(prefix))
        .filter(|p| !p.starts_with("directory "))
        .map(PathBuf::from)
        .collect()
}

/// Aborts the test process if the test holding it has not finished within its limit: a test
/// that hangs (a pass that never ends, a wait that is never released) fails instead.
struct Watchdog(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Watchdog {
    fn start(test: &'static str) -> Watchdog {
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = done.clone();
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
            while std::time::Instant::now() < deadline {
                if seen.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            eprintln!("watchdog: {test} has not finished in 120 s");
            std::process::abort();
        });
        Watchdog(done)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

#[test]
fn a_dry_run_lists_exactly_what_a_run_removes() {
    let _watchdog = Watchdog::start("a_dry_run_lists_exactly_what_a_run_removes");
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path();
    record(base, "call", 30);
    // Bucket 5000 was uploaded: its marks go with it.
    for tap in ["PRE", "POST"] {
        let mark = base.join(format!(
            "1970-01-01/call/stt/{tap}/segment_5000.wav.uploaded"
        ));
        std::fs::write(mark, "0123  key\n").unwrap();
    }
    // Written in this order an hour ago, a second apart.
    for file in segments(base) {
        let k = bucket_ms(&file) / 5_000;
        age(&file, Duration::from_secs(3_600 - k));
    }
    let before: BTreeSet<PathBuf> = files_under(base).into_iter().collect();
    assert_eq!(before.len(), 14);
    let limit = (5 * SEGMENT).to_string();
    let base_arg = base.to_str().unwrap();

    let dry = prune(&[base_arg, "--max-bytes", &limit, "--dry-run"]);
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    let dry_out = text(&dry.stdout);
    let would = listed(&dry_out, "would remove ");
    assert_eq!(
        files_under(base).into_iter().collect::<BTreeSet<_>>(),
        before
    );
    // 12 segments of 160,044 bytes, 5 allowed: the 4 oldest buckets go, marks included.
    assert_eq!(would.len(), 8 + 2, "{dry_out}");
    assert!(
        dry_out.contains("8 segments (1280352 bytes) would be removed"),
        "{dry_out}"
    );
    assert!(
        dry_out.contains("oldest bucket kept: 20000 ms"),
        "{dry_out}"
    );

    let run = prune(&[base_arg, "--max-bytes", &limit]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let run_out = text(&run.stdout);
    let removed = listed(&run_out, "removed ");
    assert_eq!(removed, would);
    let after: BTreeSet<PathBuf> = files_under(base).into_iter().collect();
    assert_eq!(
        before.difference(&after).cloned().collect::<BTreeSet<_>>(),
        would
    );
    let left: BTreeSet<_> = segments(base).iter().map(|p| segment_name(p)).collect();
    assert_eq!(left, BTreeSet::from([(20_000, 0), (25_000, 0)]));
    assert_eq!(segments(base).len(), 4, "PRE and POST of both");
    assert!(
        run_out.contains("8 segments (1280352 bytes) removed"),
        "{run_out}"
    );
    // Within the limit now: nothing more to do.
    let again = prune(&[base_arg, "--max-bytes", &limit]);
    assert!(again.status.success());
    assert!(text(&again.stdout).starts_with("0 segments"));
}

#[test]
fn an_age_removes_old_buckets_and_uploaded_only_keeps_the_unconfirmed() {
    let _watchdog =
        Watchdog::start("an_age_removes_old_buckets_and_uploaded_only_keeps_the_unconfirmed");
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path();
    record(base, "old", 10);
    record(base, "new", 10);
    for file in segments(base) {
        if file.to_string_lossy().contains("/old/") {
            age(&file, Duration::from_secs(7_200));
        }
    }
    let mark = base.join("1970-01-01/old/stt/PRE/segment_0.wav.uploaded");
    std::fs::write(&mark, "0123  key\n").unwrap();
    let base_arg = base.to_str().unwrap();
    // Only bucket 0 of the old call is confirmed (PRE marked, POST too below).
    let out = prune(&[base_arg, "--max-age", "3600", "--uploaded-only"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("0 segments"),
        "{}",
        text(&out.stdout)
    );
    std::fs::write(
        base.join("1970-01-01/old/stt/POST/segment_0.wav.uploaded"),
        "0123  key\n",
    )
    .unwrap();
    let out = prune(&[base_arg, "--max-age", "3600", "--uploaded-only"]);
    assert!(
        text(&out.stdout).contains("2 segments"),
        "{}",
        text(&out.stdout)
    );
    assert!(!mark.exists());
    // Without --uploaded-only the rest of the old call goes, and its directories; the new
    // call stays whole.
    let out = prune(&[base_arg, "--max-age", "3600"]);
    assert!(
        text(&out.stdout).contains("2 segments"),
        "{}",
        text(&out.stdout)
    );
    assert!(!base.join("1970-01-01/old").exists());
    assert_eq!(segments(base).len(), 4);
}

#[test]
fn bad_input_gets_the_usage_and_status_2_and_removes_nothing() {
    let _watchdog = Watchdog::start("bad_input_gets_the_usage_and_status_2_and_removes_nothing");
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path();
    record(base, "call", 10);
    let before = files_under(base);
    let base_arg = base.to_str().unwrap();
    let missing = base.join("missing");
    let missing = missing.to_str().unwrap();
    for (args, says) in [
        (vec![], "BASE_DIR is missing"),
        (vec![base_arg], "no limit given"),
        (vec![base_arg, "--max-bytes", "ten"], "not 'ten'"),
        (vec![base_arg, "--max-bytes", "10G"], "not '10G'"),
        (vec![base_arg, "--max-age", "-5"], "not '-5'"),
        (vec![base_arg, "--min-free"], "--min-free needs a number"),
        (
            vec![base_arg, "--max-bytes", "1", "--frobnicate"],
            "unknown option --frobnicate",
        ),
        (vec!["--max-bytes", "1", base_arg], "BASE_DIR comes first"),
        (vec![missing, "--max-bytes", "1"], "is not a directory"),
    ] {
        let out = prune(&args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(stderr.contains("usage: segmentrecorder-prune"), "{stderr}");
        assert!(out.stdout.is_empty());
        assert_eq!(files_under(base), before, "{args:?}");
    }
    // A limit of 0 is off, like the properties': nothing to do is a usage error too.
    let out = prune(&[base_arg, "--max-bytes", "0"]);
    assert_eq!(out.status.code(), Some(2));
}
