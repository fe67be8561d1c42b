//! Durability and observability: a killed process, a full disk, a removed directory, recovery
//! at start, the statistics, the message fields, silence detection and the `record` switch.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;
use gstsegmentrecorder::writer::recover::recover_tree;

const MS: u64 = 1_000_000;
const FLUSH_INTERVAL_MS: u64 = 200;

fn ms(v: u64) -> gst::ClockTime {
    gst::ClockTime::from_mseconds(v)
}

fn stat(element: &gst::Element, field: &str) -> u64 {
    element
        .property::<gst::Structure>("recording-stats")
        .get::<u64>(field)
        .unwrap()
}

/// Waits until `cond` holds, for at most 20 s.
fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Run by the crash test in a child process: records live audio until killed, printing the
/// running time up to which audio has reached the recorder.
#[test]
#[ignore = "run in a child process by the tests that kill a recording"]
fn crash_child() {
    let Ok(base) = std::env::var("SEGREC_CRASH_DIR") else {
        return;
    };
    init();
    let pipeline = gst::parse::launch(&format!(
        "audiotestsrc is-live=true wave=sine volume=0.5 samplesperbuffer=160 \
         ! audio/x-raw,format=S16LE,rate=16000,channels=1 \
         ! segmentrecorder name=rec base-dir={base} trace-id=crash station-key=stt \
           timestamp-mode=running-time flush-interval={}",
        FLUSH_INTERVAL_MS * MS
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let rec = pipeline.by_name("rec").unwrap();
    let sink = rec.static_pad("sink").unwrap();
    sink.add_probe(gst::PadProbeType::BUFFER, |_, info| {
        if let Some(buffer) = info.buffer()
            && let (Some(pts), Some(duration)) = (buffer.pts(), buffer.duration())
        {
            println!("reached {}", (pts + duration).nseconds());
        }
        gst::PadProbeReturn::Ok
    });
    pipeline.set_state(gst::State::Playing).unwrap();
    thread::sleep(Duration::from_secs(60));
}

/// Kills a child recording at `kill_after_ms` of audio and returns the running time up to
/// which audio had reached its recorder.
fn record_and_kill(base: &Path, kill_after_ms: u64) -> u64 {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--ignored", "--nocapture"])
        .env("SEGREC_CRASH_DIR", base)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut reached = 0;
    for line in stdout.lines() {
        let Some(ns) = line
            .unwrap()
            .strip_prefix("reached ")
            .map(|n| n.parse::<u64>().unwrap())
        else {
            continue;
        };
        reached = ns;
        if reached >= kill_after_ms * MS {
            // SIGKILL: nothing in the process gets to clean up.
            child.kill().unwrap();
            break;
        }
    }
    child.wait().unwrap();
    reached
}

#[test]
fn sigkill_loses_at_most_the_flush_interval() {
    // Early in the first file, mid-file, and right after a file was published.
    for kill_after_ms in [600, 3_300, 5_150] {
        let dir = tempfile::tempdir().unwrap();
        let reached = record_and_kill(dir.path(), kill_after_ms);
        assert!(reached >= kill_after_ms * MS);

        let recovered = recover_tree(dir.path(), false);
        assert_eq!(recovered.len(), 1, "one file was open: {recovered:?}");
        let recovered = recovered[0].as_ref().unwrap();
        // Every file is a valid WAV; the recovered one ends where the audio on disk ended.
        let files = segments(dir.path());
        assert!(
            files
                .iter()
                .all(|f| !read_wav(f).0.is_empty() || f == &recovered.location)
        );
        let end = recovered.bucket_ms * MS + recovered.samples * 1_000_000_000 / 16_000;
        assert!(end <= reached, "{end} beyond {reached}");
        // What reached the element up to the flush interval before the kill is on disk
        // (allowing one buffer and the scheduling of the writer thread).
        let lost = reached - end;
        assert!(
            lost <= (FLUSH_INTERVAL_MS + 20 + 200) * MS,
            "killed at {kill_after_ms} ms: lost {} ms",
            lost / MS
        );
        for f in &files {
            if f != &recovered.location {
                assert_eq!(read_wav(f).0.len(), 80_000);
            }
        }
    }
}

#[test]
fn leftovers_of_a_dead_process_are_recovered_when_recording_starts() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let tap = dir.path().join("1970-01-01/call/stt/PRE");
    std::fs::create_dir_all(&tap).unwrap();
    let part = |name: &str, samples: &[i16]| -> PathBuf {
        let path = tap.join(name);
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 16_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut wav = hound::WavWriter::create(&path, spec).unwrap();
        for &s in samples {
            wav.write_sample(s).unwrap();
        }
        wav.finalize().unwrap();
        path
    };
    let dead = part("segment_5000.wav.part", &[1, 2, 3]);
    // Still being written by a live process: left alone.
    let alive = part("segment_10000.wav.part", &[4]);
    let lock = std::fs::File::open(&alive).unwrap();
    lock.lock().unwrap();

    let element = recorder(dir.path(), "call", "stt", "PRE");
    let (mut h, bus) = harness(&element, CAPS_16K);
    push_signal(&mut h, gst::ClockTime::ZERO, 16_000, 320, 16_000);
    assert!(h.push_event(gst::event::Eos::new()));

    let messages: Vec<gst::Message> = std::iter::from_fn(|| bus.pop()).collect();
    let recovered = element_messages(&messages, gstsegmentrecorder::SEGMENT_RECOVERED);
    assert_eq!(recovered.len(), 1);
    let location = tap.join("segment_5000.wav");
    assert_eq!(
        recovered[0].get::<String>("location").unwrap(),
        location.to_str().unwrap()
    );
    assert_eq!(recovered[0].get::<u64>("samples").unwrap(), 3);
    assert_eq!(read_wav(&location).0, [1, 2, 3]);
    assert!(!dead.exists() && alive.exists());
    assert_eq!(stat(&element, "segments-recovered"), 1);
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

/// A command that runs a program under `strace`, which kills it (SIGKILL, so nothing gets to
/// clean up) as it enters the `unlink` of `path` (the call `std::fs::remove_file` makes): the
/// unlink is never carried out. `None` where strace cannot (see [`unavailable`]).
fn killed_at_unlink_of(path: &Path) -> Option<Command> {
    let probe = Command::new("strace")
        .args(["-f", "-o", "/dev/null", "true"])
        .output();
    let why = match probe {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
        Err(e) => Some(format!("cannot run strace: {e}")),
    };
    if let Some(why) = why {
        unavailable("kill at a system call", &why);
        return None;
    }
    let mut command = Command::new("strace");
    command
        .args(["-f", "-qq", "-o", "/dev/null", "-e", "trace=unlink"])
        .args(["-e", "inject=unlink:signal=KILL", "-P"])
        .arg(path)
        .arg("--");
    Some(command)
}

/// Waits for `child` for at most 30 s.
fn wait_with_deadline(child: &mut std::process::Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not end");
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Starts a recorder of `trace`/`stt`/`PRE` on `base`, which recovers what is left there, and
/// records 1 s in bucket 60,000. Returns the `segmentrecorder-segment-recovered` messages.
fn start_recorder_on(base: &Path, trace: &str) -> Vec<gst::Structure> {
    let element = recorder(base, trace, "stt", "PRE");
    let (mut h, bus) = harness(&element, CAPS_16K);
    push_signal(&mut h, ms(60_000), 16_000, 320, 16_000);
    assert!(h.push_event(gst::event::Eos::new()));
    let messages: Vec<gst::Message> = std::iter::from_fn(|| bus.pop()).collect();
    assert!(warning_texts(&messages).is_empty());
    element_messages(&messages, gstsegmentrecorder::SEGMENT_RECOVERED)
}

/// The files in `tap` other than bucket 60,000's.
fn left_in(tap: &Path) -> Vec<String> {
    files_under(tap)
        .iter()
        .map(|f| f.file_name().unwrap().to_str().unwrap().to_owned())
        .filter(|n| n != "segment_60000.wav")
        .collect()
}

#[test]
fn a_writer_killed_between_publishing_and_removing_the_part_is_published_once() {
    init();
    for at_start in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let tap = dir.path().join("1970-01-01/crash/stt/PRE");
        let part = tap.join("segment_0.wav.part");
        let segment = tap.join("segment_0.wav");
        let Some(mut child) = killed_at_unlink_of(&part) else {
            return;
        };
        // A live recording: bucket 0 is published when 5 s of audio have arrived.
        let mut child = child
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child", "--ignored", "--nocapture"])
            .env("SEGREC_CRASH_DIR", dir.path())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        wait_with_deadline(&mut child, "the recording child");
        // Killed between the link and the unlink: both names lead to the finished segment.
        assert!(part.exists() && segment.exists(), "{:?}", left_in(&tap));
        let published = std::fs::read(&segment).unwrap();
        assert_eq!(read_wav(&segment).0.len(), 80_000);

        if at_start {
            let recovered = start_recorder_on(dir.path(), "crash");
            assert!(recovered.is_empty(), "{recovered:?}");
        } else {
            let recovered = recover_tree(dir.path(), false);
            assert!(recovered.is_empty(), "{recovered:?}");
        }
        assert_eq!(left_in(&tap), ["segment_0.wav"]);
        assert_eq!(std::fs::read(&segment).unwrap(), published);
    }
}

/// A `.part` as a writer killed while recording leaves it: a header that counts no samples,
/// then the samples.
fn dead_writer_part(path: &Path, samples: &[i16]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut file = std::fs::File::create(path).unwrap();
    drop(hound::WavWriter::new(&mut file, spec).unwrap());
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    std::io::Write::write_all(&mut file, &bytes).unwrap();
}

#[test]
fn a_recovery_killed_between_publishing_and_removing_the_part_is_published_once() {
    init();
    let samples: Vec<i16> = (0..16_000).map(signal).collect();
    for at_start in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let tap = dir.path().join("1970-01-01/dead/stt/PRE");
        let part = tap.join("segment_5000.wav.part");
        let segment = tap.join("segment_5000.wav");
        dead_writer_part(&part, &samples);
        let Some(mut child) = killed_at_unlink_of(&part) else {
            return;
        };
        let mut child = child
            .arg(env!("CARGO_BIN_EXE_segmentrecorder-recover"))
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        wait_with_deadline(&mut child, "the recovery");
        assert!(part.exists() && segment.exists(), "{:?}", left_in(&tap));

        if at_start {
            let recovered = start_recorder_on(dir.path(), "dead");
            assert!(recovered.is_empty(), "{recovered:?}");
        } else {
            let recovered = recover_tree(dir.path(), false);
            assert!(recovered.is_empty(), "{recovered:?}");
        }
        assert_eq!(left_in(&tap), ["segment_5000.wav"]);
        assert_eq!(read_wav(&segment).0, samples);
    }
}

/// Mounts a tmpfs of `size` at `dir`, or says why it cannot.
fn mount_tmpfs(dir: &Path, size: &str) -> Result<(), String> {
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
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
        match mount_tmpfs(&path, size) {
            Ok(()) => Some(SmallDisk { path, _dir: dir }),
            Err(why) => {
                unavailable("mount a small tmpfs to fill", &why);
                None
            }
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Before the directory it is mounted in is removed.
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

#[test]
fn a_full_disk_warns_counts_and_recording_resumes_when_space_returns() {
    init();
    let Some(small) = SmallDisk::mount("1m") else {
        return;
    };
    let disk = small.path.clone();
    // Leave room for about one and a half segments of 160 KB.
    let filler = disk.join("filler");
    std::fs::write(&filler, vec![0u8; 1024 * 1024 - 240 * 1024]).unwrap();

    let element = recorder(&disk, "call", "stt", "PRE");
    element.set_property("write-retry-time", 300 * MS);
    let (mut h, bus) = harness(&element, CAPS_16K);
    h.set_live(true);
    // 15 s of audio arrives: the second file does not fit.
    let started = Instant::now();
    push_signal(&mut h, gst::ClockTime::ZERO, 15 * 16_000, 320, 16_000);
    // The streaming thread was never held up by the disk.
    assert!(started.elapsed() < Duration::from_secs(10));
    wait_for("a segment to be given up", || {
        stat(&element, "segments-failed") >= 1
    });
    let stats = element.property::<gst::Structure>("recording-stats");
    let last_error = stats.get::<String>("last-error").unwrap();
    assert!(
        last_error.contains("No space left on device"),
        "{last_error}"
    );
    assert!(stats.get::<u64>("write-errors").unwrap() >= 2);
    assert!(stats.get::<u64>("samples-lost-write-error").unwrap() > 0);
    let messages: Vec<gst::Message> = std::iter::from_fn(|| bus.pop()).collect();
    let texts = warning_texts(&messages);
    assert!(
        texts
            .iter()
            .any(|t| t.contains("No space left on device") && t.contains("Cannot write")),
        "{texts:?}"
    );
    assert!(texts.iter().any(|t| t.contains("Gave up")), "{texts:?}");
    // A full disk is told as such, in its own error domain.
    for m in &messages {
        if let gst::MessageView::Warning(w) = m.view()
            && w.error().to_string().contains("No space left on device")
        {
            assert!(
                w.error().matches(gst::ResourceError::NoSpaceLeft),
                "{:?}",
                w.error()
            );
        }
    }

    // Space returns: later segments are written again.
    std::fs::remove_file(&filler).unwrap();
    push_signal(&mut h, ms(20_000), 10 * 16_000, 320, 16_000);
    assert!(h.push_event(gst::event::Eos::new()));
    let names: Vec<u64> = segments(&disk).iter().map(|p| bucket_ms(p)).collect();
    assert!(
        names.contains(&20_000) && names.contains(&25_000),
        "{names:?}"
    );
    let files = segments(&disk);
    let last = files.iter().find(|p| bucket_ms(p) == 25_000).unwrap();
    assert_eq!(read_wav(last).0.len(), 80_000);
    // What reached the disk of the segment given up stays in its `.part`, for recovery, and is
    // not counted lost: every stream sample (never 0) is either in a file or counted lost.
    let parts: Vec<PathBuf> = files_under(&disk)
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "part"))
        .collect();
    assert_eq!(parts.len(), 1, "{parts:?}");
    let recovered = recover_tree(&disk, false);
    assert!(
        recovered.len() == 1 && recovered[0].is_ok(),
        "{recovered:?}"
    );
    let on_disk: u64 = segments(&disk)
        .iter()
        .map(|f| read_wav(f).0.iter().filter(|&&s| s != 0).count() as u64)
        .sum();
    assert_eq!(
        stat(&element, "samples-lost-write-error"),
        stat(&element, "samples-received") - on_disk
    );
    assert!(
        files_under(&disk)
            .iter()
            .all(|f| f.extension().unwrap() == "wav")
    );
}

/// Pushes samples `from..to` of the test signal in buffers of 20 ms, stamped where they are.
fn push_samples(h: &mut gst_check::Harness, from: u64, to: u64) {
    for first in (from..to).step_by(320) {
        let len = 320.min(to - first) as usize;
        let pts = gst::ClockTime::from_nseconds(first * 1_000_000_000 / 16_000);
        h.push(buffer(first, len, Some(pts), 16_000)).unwrap();
    }
}

/// Whether a file can be created in `dir`.
fn writable(dir: &Path) -> bool {
    let probe = dir.join("probe");
    let created = std::fs::File::create(&probe).is_ok();
    let _ = std::fs::remove_file(&probe);
    created
}

/// A directory made unwritable (no file can be made, linked or removed in it; those open can
/// still be written) until dropped.
struct Unwritable(PathBuf);

impl Unwritable {
    /// Takes the write permission away, and for root, whom that does not stop, sets the
    /// immutable attribute. Or says why it cannot.
    fn make(dir: &Path) -> Result<Self, String> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o555))
            .map_err(|e| e.to_string())?;
        let unwritable = Unwritable(dir.to_owned());
        if writable(dir) {
            let out = Command::new("chattr")
                .arg("+i")
                .arg(dir)
                .output()
                .map_err(|e| format!("cannot run chattr: {e}"))?;
            if !out.status.success() {
                return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
            }
            if writable(dir) {
                return Err("the directory stays writable".to_owned());
            }
        }
        Ok(unwritable)
    }
}

impl Drop for Unwritable {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        let _ = Command::new("chattr").arg("-i").arg(&self.0).output();
        let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o755));
    }
}

#[test]
fn a_segment_given_up_in_an_unwritable_directory_stays_for_recovery_and_is_not_counted_lost() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let element = recorder(dir.path(), "call", "stt", "PRE");
    element.set_property("write-retry-time", 300 * MS);
    let (mut h, bus) = harness(&element, CAPS_16K);
    let tap = dir.path().join("1970-01-01/call/stt/PRE");
    let part = tap.join("segment_0.wav.part");
    push_samples(&mut h, 0, 32_000);
    wait_for("2 s in the .part", || {
        std::fs::metadata(&part).is_ok_and(|m| m.len() >= 44 + 64_000)
    });
    let unwritable = match Unwritable::make(&tap) {
        Ok(unwritable) => unwritable,
        Err(why) => {
            unavailable("make a directory unwritable", &why);
            return;
        }
    };
    // The rest of bucket 0 reaches its open `.part`, which cannot be published; bucket 5000
    // cannot even be made.
    push_samples(&mut h, 32_000, 112_000);
    assert!(h.push_event(gst::event::Eos::new()));

    let stats = element.property::<gst::Structure>("recording-stats");
    let get = |f: &str| stats.get::<u64>(f).unwrap();
    assert_eq!(get("segments-failed"), 2);
    assert_eq!(get("segments-written"), 0);
    // Only bucket 5000's samples never reached the disk.
    assert_eq!(get("samples-lost-write-error"), 32_000);
    assert_eq!(get("samples-written"), 80_000);
    let messages: Vec<gst::Message> = std::iter::from_fn(|| bus.pop()).collect();
    let texts = warning_texts(&messages);
    let part_text = part.display().to_string();
    assert!(
        texts.iter().any(|t| t.contains("Gave up")
            && t.contains(&format!(
                "the 80000 samples that reached the disk stay in {part_text} for recovery"
            ))),
        "{texts:?}"
    );
    assert!(
        texts
            .iter()
            .any(|t| t.contains("Gave up") && t.contains("the segment is lost")),
        "{texts:?}"
    );
    // Closed, so no longer locked: recovery can take it.
    assert!(std::fs::File::open(&part).unwrap().try_lock().is_ok());

    drop(unwritable);
    let recovered = recover_tree(dir.path(), false);
    let [Ok(recovered)] = recovered.as_slice() else {
        panic!("{recovered:?}")
    };
    assert_eq!(recovered.location, tap.join("segment_0.wav"));
    let (samples, _) = read_wav(&recovered.location);
    assert!(samples.iter().copied().eq((0..80_000).map(signal)));
    // Nothing else is left.
    assert_eq!(files_under(dir.path()), [recovered.location.as_path()]);
}

/// Fills the file system of `dir` to its last byte with a file, and returns its path.
fn fill(dir: &Path) -> PathBuf {
    let filler = dir.join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while std::io::Write::write_all(&mut file, &chunk).is_ok() {}
    while std::io::Write::write_all(&mut file, &[0]).is_ok() {}
    filler
}

/// Runs `f` on a thread of its own and returns what it returns, failing if that takes more than
/// `limit` from `since`.
fn within<T: Send + 'static>(
    since: Instant,
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    let result = rx.recv_timeout(limit.saturating_sub(since.elapsed()));
    result.unwrap_or_else(|_| panic!("{what} took more than {limit:?}"))
}

#[test]
fn a_full_disk_holds_eos_and_stop_up_for_the_retry_time_whatever_is_queued() {
    init();
    let Some(small) = SmallDisk::mount("4m") else {
        return;
    };
    let disk = small.path.clone();
    let filler = fill(&disk);

    const RETRY_MS: u64 = 1_000;
    let bound = Duration::from_millis(RETRY_MS + 2_000);
    let element = recorder(&disk, "call", "stt", "PRE");
    element.set_property("segment-duration", 500 * MS);
    element.set_property("write-retry-time", RETRY_MS * MS);
    element.set_property("max-queue-time", 60_000 * MS);
    let (mut h, bus) = harness(&element, CAPS_16K);
    let tap = disk.join("1970-01-01/call/stt/PRE");
    let warnings = |bus: &gst::Bus| warning_texts(&messages_of(bus, gst::MessageType::Warning));
    let stats = |element: &gst::Element| {
        let s = element.property::<gst::Structure>("recording-stats");
        ["segments-failed", "segments-written", "samples-received"]
            .into_iter()
            .chain(["samples-written", "samples-lost-write-error"])
            .map(|f| s.get::<u64>(f).unwrap())
            .collect::<Vec<u64>>()
    };

    // 20 s of audio as fast as the element takes it: 40 segments queue up for a full disk.
    let started = Instant::now();
    push_samples(&mut h, 0, 320_000);
    let (mut h, eos) = within(started, bound, "EOS", move || {
        let eos = h.push_event(gst::event::Eos::new());
        (h, eos)
    });
    assert!(eos);
    println!(
        "EOS returned {:?} after the first failure",
        started.elapsed()
    );
    // Nothing reached the disk, and all of it is counted lost, segment by segment.
    assert_eq!(stats(&element), [40, 0, 320_000, 0, 320_000]);
    assert!(files_under(&disk).iter().all(|f| f == &filler));
    let texts = warnings(&bus);
    assert_eq!(
        texts.iter().filter(|t| t.contains("Cannot write")).count(),
        1,
        "one failure episode: {texts:?}"
    );
    assert_eq!(
        texts
            .iter()
            .filter(|t| t.contains("Gave up") && t.contains("No space left on device"))
            .count(),
        40,
        "{texts:?}"
    );

    // Space returns: the next segments are written.
    std::fs::remove_file(&filler).unwrap();
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    let segment = gst::FormattedSegment::<gst::ClockTime>::new();
    assert!(h.push_event(gst::event::Segment::new(&segment)));
    push_samples(&mut h, 320_000, 352_000);
    assert!(h.push_event(gst::event::Eos::new()));
    let names: Vec<String> = files_under(&tap)
        .iter()
        .map(|f| f.file_name().unwrap().to_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        [20_000, 20_500, 21_000, 21_500].map(|ms| format!("segment_{ms}.wav"))
    );
    for (i, f) in segments(&tap).iter().enumerate() {
        let (samples, _) = read_wav(f);
        let first = 320_000 + i as u64 * 8_000;
        assert!(
            samples
                .iter()
                .copied()
                .eq((first..first + 8_000).map(signal))
        );
    }
    assert_eq!(stats(&element), [40, 4, 352_000, 32_000, 320_000]);
    let infos = messages_of(&bus, gst::MessageType::Info);
    assert!(!infos.is_empty(), "no message that writing works again");

    // Full again, then the element is stopped with 20 s waiting: as quick.
    let filler = fill(&disk);
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    assert!(h.push_event(gst::event::Segment::new(&segment)));
    let started = Instant::now();
    push_samples(&mut h, 352_000, 672_000);
    let stopping = element.clone();
    within(started, bound, "stopping", move || {
        stopping.set_state(gst::State::Null).unwrap()
    });
    println!("stopped {:?} after the first failure", started.elapsed());
    assert_eq!(stats(&element), [80, 4, 672_000, 32_000, 640_000]);
    assert!(files_under(&tap).len() == 4 && files_under(&disk).contains(&filler));
    drop(h);
}

#[test]
fn a_directory_removed_under_the_recorder_is_made_again() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let element = recorder(dir.path(), "call", "stt", "PRE");
    element.set_property("write-retry-time", 200 * MS);
    let (mut h, bus) = harness(&element, CAPS_16K);
    push_signal(&mut h, gst::ClockTime::ZERO, 6 * 16_000, 320, 16_000);
    let tap = dir.path().join("1970-01-01/call/stt/PRE");
    // The first segment is published and the second one's file is open: it goes with the
    // directory.
    wait_for("the first segment and the second one's file", || {
        tap.join("segment_0.wav").exists() && tap.join("segment_5000.wav.part").exists()
    });
    std::fs::remove_dir_all(dir.path().join("1970-01-01")).unwrap();
    push_signal(&mut h, ms(6_000), 10 * 16_000, 320, 16_000);
    assert!(h.push_event(gst::event::Eos::new()));
    // The segment whose file went with the directory is lost and said to be; the next ones
    // are written in the directory made again.
    let names: Vec<u64> = segments(dir.path()).iter().map(|p| bucket_ms(p)).collect();
    assert_eq!(names, [10_000, 15_000]);
    assert_eq!(stat(&element, "segments-failed"), 1);
    assert_eq!(stat(&element, "samples-lost-write-error"), 80_000);
    assert!(!messages_of(&bus, gst::MessageType::Warning).is_empty());
}

#[test]
fn the_segment_message_gives_duration_times_and_levels() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let element = recorder(dir.path(), "call", "stt", "PRE");
    let (mut h, bus) = harness(&element, CAPS_16K);
    let clock = gst::SystemClock::obtain();
    element.set_clock(Some(&clock)).unwrap();
    element.set_base_time(clock.time());
    // 2.5 s of a -20 dBFS square wave from 100 ms, then nothing: padded with silence.
    let square: Vec<u8> = (0..40_000)
        .flat_map(|i| (if i % 2 == 0 { 3_277i16 } else { -3_277 }).to_le_bytes())
        .collect();
    let mut b = gst::Buffer::from_mut_slice(square);
    b.get_mut().unwrap().set_pts(ms(100));
    h.push(b).unwrap();
    assert!(h.push_event(gst::event::Eos::new()));

    let m = written_messages(&bus);
    assert_eq!(m.len(), 1);
    let m = &m[0];
    assert_eq!(m.get::<gst::ClockTime>("duration").unwrap(), ms(5_000));
    assert_eq!(m.get::<gst::ClockTime>("running-time").unwrap(), ms(0));
    // Running time 0 is when the clock read the base time: just now.
    let utc = m.get::<gst::DateTime>("utc").unwrap();
    let utc_s = utc.to_g_date_time().unwrap().to_unix();
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((utc_s - now_s).abs() < 60, "{utc_s} vs {now_s}");
    let peak: f64 = m.get("peak-dbfs").unwrap();
    let rms: f64 = m.get("rms-dbfs").unwrap();
    let voiced: f64 = m.get("voiced-ratio").unwrap();
    assert!((peak + 20.0).abs() < 0.01, "{peak}");
    assert!((rms + 23.01).abs() < 0.01, "{rms}");
    assert!((voiced - 0.5).abs() < 1e-9, "{voiced}");
}

#[test]
fn wall_clock_messages_give_the_utc_of_the_bucket() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let element = recorder(dir.path(), "call", "stt", "PRE");
    element.set_property_from_str("timestamp-mode", "wall-clock");
    let (mut h, bus) = harness(&element, CAPS_16K);
    push_signal(&mut h, ms(0), 6 * 16_000, 320, 16_000);
    assert!(h.push_event(gst::event::Eos::new()));
    for m in written_messages(&bus) {
        let bucket_ms: u64 = m.get("bucket-ts-ms").unwrap();
        let utc = m
            .get::<gst::DateTime>("utc")
            .unwrap()
            .to_g_date_time()
            .unwrap();
        let utc_ms = utc.to_unix() as u64 * 1_000 + u64::from(utc.microsecond() as u32) / 1_000;
        assert_eq!(utc_ms, bucket_ms);
        assert_eq!(m.get::<u64>("utc-ns").unwrap(), bucket_ms * 1_000_000);
    }
}

#[test]
fn utc_ns_keeps_what_the_date_time_rounds_away() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let element = recorder(dir.path(), "call", "stt", "PRE");
    element.set_property_from_str("timestamp-mode", "wall-clock");
    // Buckets start at multiples of 100 ms and 1 ns: most not on a whole microsecond.
    let duration = 100_000_001u64;
    element.set_property("segment-duration", duration);
    let (mut h, bus) = harness(&element, CAPS_16K);
    push_signal(&mut h, ms(0), 16_000, 320, 16_000);
    assert!(h.push_event(gst::event::Eos::new()));
    let messages = written_messages(&bus);
    assert!(messages.len() >= 10);
    let mut fractions = 0;
    let mut times = Vec::new();
    for m in messages {
        let utc_ns: u64 = m.get("utc-ns").unwrap();
        assert!(utc_ns.is_multiple_of(duration), "{m}");
        assert_eq!(utc_ns / 1_000_000, m.get::<u64>("bucket-ts-ms").unwrap());
        let utc = m.get::<gst::DateTime>("utc").unwrap();
        let utc = utc.to_g_date_time().unwrap();
        assert_eq!(utc.to_unix() as u64, utc_ns / 1_000_000_000);
        fractions += usize::from(!utc_ns.is_multiple_of(1_000));
        // Always there for a C application to read, GST_CLOCK_TIME_NONE when not known: the
        // first bucket starts before running time 0.
        let rt = m.get::<Option<gst::ClockTime>>("running-time").unwrap();
        times.push((utc_ns, rt.map(gst::ClockTime::nseconds)));
    }
    assert!(fractions > 0);
    assert_eq!(times[0].1, None, "{times:?}");
    let (utc1, rt1) = (times[1].0, times[1].1.unwrap());
    for &(utc, rt) in &times[1..] {
        assert_eq!(rt, Some(rt1 + (utc - utc1)), "{times:?}");
    }
}

#[test]
fn running_time_mode_messages_give_the_running_time() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let element = recorder(dir.path(), "call", "stt", "PRE");
    let (mut h, bus) = harness(&element, CAPS_16K);
    push_signal(&mut h, ms(7_300), 16_000, 320, 16_000);
    assert!(h.push_event(gst::event::Eos::new()));
    let m = written_messages(&bus);
    assert_eq!(
        m[0].get::<gst::ClockTime>("running-time").unwrap(),
        ms(5_000)
    );
    // UTC is told as a date and in nanoseconds, or not at all.
    assert_eq!(m[0].has_field("utc"), m[0].has_field("utc-ns"), "{}", m[0]);
    assert!(m[0].get::<f64>("peak-dbfs").unwrap() > -60.0);
}

#[test]
fn statistics_account_for_every_sample() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let element = recorder(dir.path(), "call", "stt", "PRE");
    // Every discontinuity is followed at once.
    element.set_property("discont-wait", 0u64);
    let (mut h, _bus) = harness(&element, CAPS_16K);
    // 1 s, a 300 ms hole, 1 s, then 0.5 s stamped 200 ms back (3,200 overlap).
    h.push(buffer(0, 16_000, Some(ms(0)), 16_000)).unwrap();
    h.push(buffer(16_000, 16_000, Some(ms(1_300)), 16_000))
        .unwrap();
    h.push(buffer(32_000, 8_000, Some(ms(2_100)), 16_000))
        .unwrap();
    assert!(h.push_event(gst::event::Eos::new()));
    let s = element.property::<gst::Structure>("recording-stats");
    let get = |f: &str| s.get::<u64>(f).unwrap();
    assert_eq!(get("samples-received"), 40_000);
    assert_eq!(get("samples-dropped-overlap"), 3_200);
    assert_eq!(get("samples-written"), 36_800);
    assert_eq!(get("samples-silence"), 80_000 - 36_800);
    assert_eq!(get("samples-dropped-overflow"), 0);
    assert_eq!(get("segments-written"), 1);
    assert_eq!(get("segments-failed"), 0);
    assert_eq!(get("bytes-written"), 160_000);
    assert_eq!(get("queue-bytes"), 0);
    assert!(get("queue-high-water") > 0);
    assert_eq!(s.get::<String>("last-error").unwrap(), "");
    // Kept after the recording stopped.
    element.set_state(gst::State::Null).unwrap();
    assert_eq!(stat(&element, "samples-received"), 40_000);
}

#[test]
fn silence_is_warned_about_once_and_its_end_is_told() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let element = recorder(dir.path(), "call", "stt", "PRE");
    element.set_property("silence-segments", 2u32);
    element.set_property("segment-duration", 1_000 * MS);
    let (mut h, bus) = harness(&element, CAPS_16K);
    let mut zeros = gst::Buffer::from_mut_slice(vec![0u8; 4 * 32_000]);
    zeros.get_mut().unwrap().set_pts(ms(0));
    h.push(zeros).unwrap();
    push_signal(&mut h, ms(4_000), 16_000, 320, 16_000);
    assert!(h.push_event(gst::event::Eos::new()));

    let messages: Vec<gst::Message> = std::iter::from_fn(|| bus.pop()).collect();
    let warnings = warning_texts(&messages);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].contains("silent"), "{warnings:?}");
    let returned = element_messages(&messages, gstsegmentrecorder::SOUND_RETURNED);
    assert_eq!(returned.len(), 1);
    assert_eq!(returned[0].get::<u64>("silent-segments").unwrap(), 4);
    assert!(
        returned[0]
            .get::<String>("location")
            .unwrap()
            .ends_with("segment_4000.wav")
    );
}

#[test]
fn record_false_stops_writing_without_losing_or_disturbing_anything() {
    init();
    let dir = tempfile::tempdir().unwrap();
    let element = recorder(dir.path(), "call", "stt", "PRE");
    let (mut h, bus) = harness(&element, CAPS_16K);
    push_signal(&mut h, gst::ClockTime::ZERO, 16_000, 320, 16_000);
    element.set_property("record", false);
    h.push(buffer(16_000, 16_000, Some(ms(1_000)), 16_000))
        .unwrap();
    element.set_property("record", true);
    h.push(buffer(32_000, 16_000, Some(ms(2_000)), 16_000))
        .unwrap();
    assert!(h.push_event(gst::event::Eos::new()));

    let tap = dir.path().join("1970-01-01/call/stt/PRE");
    let (first, _) = read_wav(&tap.join("segment_0.wav"));
    assert!((0..16_000).all(|i| first[i] == signal(i as u64)));
    assert!(first[16_000..].iter().all(|&s| s == 0));
    let (second, _) = read_wav(&tap.join("segment_0-1.wav"));
    assert!(second[..32_000].iter().all(|&s| s == 0));
    assert!((32_000..48_000).all(|i| second[i] == signal(i as u64)));
    assert_eq!(stat(&element, "samples-received"), 32_000);
    assert_eq!(stat(&element, "samples-dropped-overlap"), 0);
    assert_eq!(stat(&element, "samples-dropped-overflow"), 0);
    assert!(messages_of(&bus, gst::MessageType::Warning).is_empty());
}
