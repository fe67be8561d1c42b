//! Retention: recorders that keep their base directory within a size, an age and the free
//! space of a real file system, PRE and POST pairs whole and the newest segments all there.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;

/// Bytes of a 5 s segment at 16 kHz: the header and 80,000 samples.
const SEGMENT: u64 = 44 + 160_000;
const SEC: gst::ClockTime = gst::ClockTime::SECOND;

fn stat(element: &gst::Element, field: &str) -> u64 {
    element
        .property::<gst::Structure>("recording-stats")
        .get::<u64>(field)
        .unwrap()
}

/// Waits until `cond` holds, for at most 30 s: no test can hang.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Says why a test cannot run here and lets it pass, except under CI (`CI` set), which
/// installs and allows everything these tests need: there the test fails.
fn unavailable(what: &str, why: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "cannot {what} ({why}), which CI must be able to do"
    );
    println!("skipped: cannot {what} ({why})");
}

/// A small tmpfs mounted in a temporary directory, unmounted when dropped.
struct SmallDisk {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    /// `None`, with the reason printed, where mounting is refused.
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        std::fs::create_dir(&path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output();
        match out {
            Ok(out) if out.status.success() => Some(SmallDisk { path, _dir: dir }),
            Ok(out) => {
                unavailable(
                    "mount a small tmpfs",
                    String::from_utf8_lossy(&out.stderr).trim(),
                );
                None
            }
            Err(e) => {
                unavailable("mount a small tmpfs", &e.to_string());
                None
            }
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

/// Bytes of the published segments, and of every segment and `.part` file, under `dir`; a
/// `.part` linked as its segment at the moment of publishing counts once. Files that vanish
/// meanwhile are passed over.
fn usage(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let (mut published, mut all) = (0, 0);
    let mut inodes = BTreeSet::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if meta.is_dir() {
                stack.push(entry.path());
                continue;
            }
            let segment = name.ends_with(".wav");
            if segment {
                published += meta.len();
            }
            if (segment || name.ends_with(".part")) && inodes.insert(meta.ino()) {
                all += meta.len();
            }
        }
    }
    (published, all)
}

/// The buckets on disk of each call and tap: `(trace, tap) → buckets`.
fn buckets_on_disk(dir: &Path) -> BTreeMap<(String, String), BTreeSet<u64>> {
    let mut out: BTreeMap<_, BTreeSet<u64>> = BTreeMap::new();
    for file in segments(dir) {
        let tap = file.parent().unwrap();
        let trace = tap.parent().unwrap().parent().unwrap();
        out.entry((
            trace.file_name().unwrap().to_string_lossy().into_owned(),
            tap.file_name().unwrap().to_string_lossy().into_owned(),
        ))
        .or_default()
        .insert(bucket_ms(&file));
    }
    out
}

/// A recorder with `limit` bytes of retention in a harness.
struct Tap {
    element: gst::Element,
    h: gst_check::Harness,
    bus: gst::Bus,
    messages: Vec<gst::Message>,
}

impl Tap {
    fn new(base: &Path, trace: &str, tap: &str, property: &str, value: u64) -> Tap {
        let element = recorder(base, trace, "stt", tap);
        element.set_property(property, value);
        let (h, bus) = harness(&element, CAPS_16K);
        Tap {
            element,
            h,
            bus,
            messages: Vec::new(),
        }
    }

    /// Samples `first..first + len` of the signal, at their running time.
    fn push(&mut self, first: u64, len: usize) {
        let pts = gst::ClockTime::from_nseconds(first * 1_000_000_000 / 16_000);
        self.h.push(buffer(first, len, Some(pts), 16_000)).unwrap();
    }

    fn eos(&mut self) {
        assert!(self.h.push_event(gst::event::Eos::new()));
    }

    /// Takes the messages waiting on the bus into `messages`.
    fn collect(&mut self) {
        self.messages.extend(all_messages(&self.bus));
    }

    fn removed(&self) -> (u64, u64) {
        element_messages(&self.messages, gstsegmentrecorder::SEGMENTS_REMOVED)
            .iter()
            .fold((0, 0), |(n, b), s| {
                (
                    n + s.get::<u64>("segments").unwrap(),
                    b + s.get::<u64>("bytes").unwrap(),
                )
            })
    }
}

/// Samples the usage of `dir` until dropped: the most bytes of published segments, and of
/// published segments and `.part` files together, ever seen.
struct Sampler {
    stop: Arc<AtomicBool>,
    max: Arc<(AtomicU64, AtomicU64)>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(dir: PathBuf) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let max = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
        let (s, m) = (stop.clone(), max.clone());
        let thread = thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let (published, all) = usage(&dir);
                m.0.fetch_max(published, Ordering::Relaxed);
                m.1.fetch_max(all, Ordering::Relaxed);
                thread::sleep(Duration::from_millis(2));
            }
        });
        Sampler {
            stop,
            max,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        (
            self.max.0.load(Ordering::Relaxed),
            self.max.1.load(Ordering::Relaxed),
        )
    }
}

/// Aborts the test process if the test holding it has not finished within its limit: a test
/// that hangs (a pass that never ends, a wait that is never released) fails instead.
struct Watchdog(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Watchdog {
    fn start(test: &'static str) -> Watchdog {
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = done.clone();
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
            while std::time::Instant::now() < deadline {
                if seen.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            eprintln!("watchdog: {test} has not finished in 180 s");
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
fn a_small_disk_stays_within_the_limit_while_four_recorders_record_minutes() {
    let _watchdog =
        Watchdog::start("a_small_disk_stays_within_the_limit_while_four_recorders_record_minutes");
    init();
    // 12 MiB of tmpfs; the four recorders write 23 MB in all, the limit is 4 MB.
    let Some(disk) = SmallDisk::mount("12m") else {
        return;
    };
    const LIMIT: u64 = 4_000_000;
    const SECONDS: u64 = 180;
    let base = disk.path.join("rec");
    let mut taps: Vec<Tap> = ["call-a", "call-b"]
        .iter()
        .flat_map(|call| ["PRE", "POST"].map(|tap| (*call, tap)))
        .map(|(call, tap)| Tap::new(&base, call, tap, "retention-max-bytes", LIMIT))
        .collect();
    let sampler = Sampler::start(base.clone());
    // 20 ms buffers to each recorder in turn: each has one bucket open at a time.
    for first in (0..SECONDS * 16_000).step_by(320) {
        for tap in &mut taps {
            tap.push(first, 320);
        }
    }
    for tap in &mut taps {
        tap.eos();
    }
    wait_for("retention to bring the segments within the limit", || {
        usage(&base).0 <= LIMIT
    });
    let (max_published, max_total) = sampler.finish();
    println!(
        "most published: {max_published} bytes, with .part files {max_total} bytes, limit \
         {LIMIT} + {} per recorder",
        SEGMENT
    );
    // Between a publish and the pass it asks for, a bucket of each recorder may be there
    // beside the limit's worth: one bucket per recorder, open or just published.
    assert!(max_total <= LIMIT + 4 * SEGMENT, "{max_total}");

    let per_recorder = SECONDS / 5;
    let (mut removed, mut removed_bytes) = (0, 0);
    for tap in &mut taps {
        tap.collect();
        let texts = warning_texts(&tap.messages);
        assert!(texts.is_empty(), "no ENOSPC, no warning at all: {texts:?}");
        assert_eq!(stat(&tap.element, "segments-failed"), 0);
        assert_eq!(
            element_messages(&tap.messages, gstsegmentrecorder::SEGMENT_WRITTEN).len() as u64,
            per_recorder
        );
        let (n, bytes) = tap.removed();
        assert_eq!(stat(&tap.element, "retention-segments-removed"), n);
        assert_eq!(stat(&tap.element, "retention-bytes-removed"), bytes);
        removed += n;
        removed_bytes += bytes;
    }
    let on_disk = buckets_on_disk(&base);
    let left: u64 = on_disk.values().map(|b| b.len() as u64).sum();
    assert_eq!(left + removed, 4 * per_recorder, "every removal told");
    assert_eq!(removed_bytes, removed * SEGMENT);
    assert!(
        left * SEGMENT <= LIMIT && (left + 2) * SEGMENT > LIMIT,
        "{left}"
    );
    // Pairs whole, and the newest buckets of each call all there.
    let last = (per_recorder - 1) * 5_000;
    for call in ["call-a", "call-b"] {
        let pre = &on_disk[&(call.to_owned(), "PRE".to_owned())];
        let post = &on_disk[&(call.to_owned(), "POST".to_owned())];
        assert_eq!(pre, post, "{call}: pairs split");
        let first = *pre.first().unwrap();
        let expected: BTreeSet<u64> = (first / 5_000..=last / 5_000).map(|k| k * 5_000).collect();
        assert_eq!(pre, &expected, "{call}: the newest are not all there");
    }
    // What is left is exactly what was written last.
    for file in segments(&base) {
        let k = bucket_ms(&file) / 5_000;
        let (samples, _) = read_wav(&file);
        assert_eq!(samples[0], signal(k * 80_000), "{}", file.display());
    }
}

#[test]
fn only_recent_buckets_remain_under_a_short_age_in_running_time() {
    let _watchdog = Watchdog::start("only_recent_buckets_remain_under_a_short_age_in_running_time");
    init();
    let dir = tempfile::tempdir().unwrap();
    // Bucket names in running time are ms from the start of the stream (1970-01-01 as UTC):
    // the age must be that of the files, not of their names.
    let age = 2 * SEC;
    let mut taps: Vec<Tap> = ["PRE", "POST"]
        .map(|tap| Tap::new(dir.path(), "call", tap, "retention-max-age", age.nseconds()))
        .into_iter()
        .collect();
    let push = |taps: &mut Vec<Tap>, from_s: u64, to_s: u64| {
        for first in (from_s * 16_000..to_s * 16_000).step_by(1_600) {
            for tap in taps.iter_mut() {
                tap.push(first, 1_600);
            }
        }
    };
    push(&mut taps, 0, 25);
    wait_for("five buckets of both taps", || {
        segments(dir.path()).len() == 10
    });
    thread::sleep(Duration::from_millis(2_500));
    // The first publish after the age has passed removes every older bucket.
    push(&mut taps, 25, 35);
    for tap in &mut taps {
        tap.eos();
    }
    wait_for("the old buckets to go", || segments(dir.path()).len() == 4);
    let on_disk = buckets_on_disk(dir.path());
    for tap in ["PRE", "POST"] {
        assert_eq!(
            on_disk[&("call".to_owned(), tap.to_owned())],
            BTreeSet::from([25_000, 30_000])
        );
    }
    let mut removed = 0;
    for tap in &mut taps {
        tap.collect();
        assert!(warning_texts(&tap.messages).is_empty());
        removed += tap.removed().0;
    }
    assert_eq!(removed, 10);
}

#[test]
fn recorders_sharing_a_base_dir_share_the_strictest_limit_while_they_run() {
    let _watchdog =
        Watchdog::start("recorders_sharing_a_base_dir_share_the_strictest_limit_while_they_run");
    init();
    let dir = tempfile::tempdir().unwrap();
    // One names the directory another way: it is the same directory.
    let other_name = dir.path().join(".");
    let mut loose = Tap::new(
        dir.path(),
        "loose",
        "PRE",
        "retention-max-bytes",
        100 * SEGMENT,
    );
    let mut strict = Tap::new(
        &other_name,
        "strict",
        "PRE",
        "retention-max-bytes",
        4 * SEGMENT,
    );
    // Halves without a partner are kept for a minute: give each its POST.
    let mut loose_post = Tap::new(dir.path(), "loose", "POST", "retention-max-bytes", 0);
    let mut strict_post = Tap::new(&other_name, "strict", "POST", "retention-max-bytes", 0);
    let mut all = [&mut loose, &mut strict, &mut loose_post, &mut strict_post];
    for first in (0..30 * 16_000).step_by(1_600) {
        for tap in all.iter_mut() {
            tap.push(first, 1_600);
        }
    }
    for tap in all.iter_mut() {
        tap.eos();
    }
    // 24 segments of 6 buckets × 4 taps; the strictest limit, 4 segments, applies to all.
    wait_for("the strictest limit", || usage(dir.path()).0 <= 4 * SEGMENT);
    let on_disk = buckets_on_disk(dir.path());
    assert_eq!(on_disk.values().map(BTreeSet::len).sum::<usize>(), 4);
    // Once the strict recorders are gone, only the loose limit applies: nothing more goes.
    let _ = all;
    drop((loose, strict, loose_post, strict_post));
    let mut again: Vec<Tap> = ["PRE", "POST"]
        .map(|tap| {
            Tap::new(
                dir.path(),
                "loose",
                tap,
                "retention-max-bytes",
                100 * SEGMENT,
            )
        })
        .into_iter()
        .collect();
    for first in (0..20 * 16_000).step_by(1_600) {
        for tap in again.iter_mut() {
            tap.push(first, 1_600);
        }
    }
    for tap in again.iter_mut() {
        tap.eos();
        tap.collect();
        assert!(warning_texts(&tap.messages).is_empty());
        assert_eq!(tap.removed(), (0, 0));
    }
    thread::sleep(Duration::from_millis(300));
    assert_eq!(segments(dir.path()).len(), 4 + 8);
}

#[test]
fn a_recorder_restarting_in_its_bucket_keeps_the_newest_files_and_loses_nothing() {
    let _watchdog = Watchdog::start(
        "a_recorder_restarting_in_its_bucket_keeps_the_newest_files_and_loses_nothing",
    );
    init();
    let dir = tempfile::tempdir().unwrap();
    let limit = 6 * SEGMENT;
    let mut rounds: Vec<Vec<(u64, PathBuf)>> = Vec::new();
    // Five recordings of one call, each restarting at running time 0 and ending 7.5 s in,
    // mid-bucket: each writes a further file of buckets 0 and 5000 while retention removes the
    // oldest around the writers.
    for round in 0..5 {
        let mut taps: Vec<Tap> = ["PRE", "POST"]
            .map(|tap| Tap::new(dir.path(), "call", tap, "retention-max-bytes", limit))
            .into_iter()
            .collect();
        for first in (0..120_000).step_by(800) {
            for tap in taps.iter_mut() {
                tap.push(first, 800);
            }
        }
        let mut this_round = Vec::new();
        for tap in taps.iter_mut() {
            tap.eos();
            tap.collect();
            let texts = warning_texts(&tap.messages);
            assert!(texts.is_empty(), "round {round}: {texts:?}");
            let files = element_messages(&tap.messages, gstsegmentrecorder::SEGMENT_WRITTEN);
            assert_eq!(files.len(), 2, "round {round}");
            for f in files {
                let location = PathBuf::from(f.get::<String>("location").unwrap());
                // The files of this round are the newest: there, whatever went.
                assert!(location.exists(), "round {round}: {}", location.display());
                this_round.push((f.get::<u64>("bucket-ts-ms").unwrap(), location));
            }
        }
        rounds.push(this_round);
    }
    wait_for("the limit", || usage(dir.path()).0 <= limit);
    // What is left is the newest: the last round's files and the second bucket of the round
    // before, PRE and POST alike (a further file of a bucket goes on its own, oldest first).
    let left: BTreeSet<PathBuf> = segments(dir.path()).into_iter().collect();
    let expected: BTreeSet<PathBuf> = rounds[4]
        .iter()
        .chain(rounds[3].iter().filter(|(ms, _)| *ms == 5_000))
        .map(|(_, p)| p.clone())
        .collect();
    assert_eq!(left, expected);
    for file in &left {
        let k = bucket_ms(file) / 5_000;
        let (samples, _) = read_wav(file);
        assert_eq!(samples[0], signal(k * 80_000), "{}", file.display());
    }
    assert_eq!(usage(dir.path()).1, usage(dir.path()).0, "no .part left");
}

#[test]
fn a_gst_launch_pipeline_keeps_the_newest_pairs_within_the_limit() {
    let _watchdog =
        Watchdog::start("a_gst_launch_pipeline_keeps_the_newest_pairs_within_the_limit");
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("rec");
    let base_arg = base.to_str().unwrap();
    // 30 s of PRE and POST: 12 files of 160,044 bytes; 800,000 bytes leave the last 4.
    let recorder = |tap: &str| {
        format!(
            "segmentrecorder base-dir={base_arg} trace-id=call station-key=stt tap={tap} \
             timestamp-mode=running-time retention-max-bytes=800000"
        )
    };
    let pipeline = format!(
        "audiotestsrc num-buffers=1500 samplesperbuffer=320 \
         ! audio/x-raw,format=S16LE,rate=16000,channels=1 ! tee name=t \
         t. ! queue ! {} t. ! queue ! volume volume=0.5 ! {}",
        recorder("PRE"),
        recorder("POST")
    );
    let out = launch(&pipeline, &dir.path().join("registry.bin"));
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let on_disk = buckets_on_disk(&base);
    for tap in ["PRE", "POST"] {
        assert_eq!(
            on_disk[&("call".to_owned(), tap.to_owned())],
            BTreeSet::from([20_000, 25_000]),
            "{tap}"
        );
    }
    assert!(usage(&base).0 <= 800_000);
    // POST is PRE at half volume, sample for sample: the pairs left are each other's.
    for bucket in [20_000, 25_000] {
        let name = format!("1970-01-01/call/stt/{{}}/segment_{bucket}.wav");
        let pre = read_wav(&base.join(name.replace("{}", "PRE"))).0;
        let post = read_wav(&base.join(name.replace("{}", "POST"))).0;
        assert_eq!(pre.len(), 80_000);
        assert!(pre.iter().zip(&post).all(|(a, b)| (*a / 2 - *b).abs() <= 1));
    }
}
