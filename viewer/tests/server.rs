//! The server itself under clients that misbehave: ones that announce a body and never send
//! it, ones that ask for a large WAV and never read it, ones that hold half a request head,
//! a request head too large to hold, and more connections than the process may open files.
//! Whatever they do, the next ordinary client is answered within seconds.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

use common::*;

/// A short recording, made once for the tests of this file (which never write to it).
fn recorded() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        record(
            dir.path(),
            &Take::new("call-1", &[("stt", 1.0)], DAY_MS, 10),
        );
        dir
    })
    .path()
}

/// The status of `GET target`, which must come within `seconds`: a server that cannot answer
/// fails the test instead of hanging it.
fn status_within(addr: SocketAddr, target: &str, seconds: u64) -> u16 {
    let (done, answer) = mpsc::channel();
    let target = target.to_owned();
    std::thread::spawn(move || {
        let _ = done.send(get(addr, &target, &[]).status);
    });
    answer
        .recv_timeout(Duration::from_secs(seconds))
        .unwrap_or_else(|_| panic!("no answer within {seconds} s"))
}

/// A connection that has sent `bytes` and then does nothing: it never reads what comes back.
fn stalled(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(bytes).unwrap();
    stream
}

/// Peak resident memory of a process, in KiB.
fn peak_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn slow_clients_do_not_stop_the_others() {
    let viewer = Viewer::start(recorded());
    let addr = viewer.addr;
    assert_eq!(status_within(addr, "/api/calls", 30), 200);
    // More of each kind than the server computes requests at once (four): bodies announced
    // and never sent, and a WAV of over 30 MB (1,000 s, mostly silence before the call)
    // that nobody reads.
    let body = b"GET /api/calls HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\nabc";
    let wav = format!(
        "GET /api/calls/call-1/audio?station=stt&tap=PRE&from={} HTTP/1.1\r\nHost: x\r\n\r\n",
        DAY_MS - 1_000_000
    );
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(stalled(addr, body));
        held.push(stalled(addr, wav.as_bytes()));
    }
    // Long enough for every one of them to be taken up and stuck.
    std::thread::sleep(Duration::from_secs(2));
    for target in ["/", "/api/calls", "/api/calls/call-1"] {
        assert_eq!(status_within(addr, target, 5), 200, "{target}");
    }
    drop(held);
}

#[test]
fn a_request_head_too_large_is_refused_without_being_held() {
    let viewer = Viewer::start(recorded());
    let addr = viewer.addr;
    assert_eq!(status_within(addr, "/api/calls", 30), 200);
    let before = peak_kib(viewer.child.id());
    // A 32 MiB header line: the server answers 431 once it has seen more than it takes, and
    // closes; the writes after that may fail.
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let _ = stream.write_all(b"GET /api/calls HTTP/1.1\r\nHost: x\r\nX-Big: ");
    let chunk = vec![b'a'; 1 << 20];
    for _ in 0..32 {
        if stream.write_all(&chunk).is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"\r\n\r\n");
    let mut answer = [0u8; 12];
    stream.read_exact(&mut answer).unwrap();
    assert_eq!(
        &answer,
        b"HTTP/1.1 431",
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let grown = peak_kib(viewer.child.id()).saturating_sub(before);
    assert!(grown < 8 << 10, "peak memory grew by {grown} KiB");
    assert_eq!(status_within(addr, "/api/calls", 5), 200);
}

#[test]
fn running_out_of_file_descriptors_does_not_stop_listening() {
    // The viewer with 64 file descriptors, then 150 connections that each send half a
    // request head and wait: accepting fails for a while.
    let mut command = Command::new(env!("CARGO_BIN_EXE_segmentrecorder-view"));
    command
        .arg(recorded())
        .args(["--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped());
    // SAFETY: between fork and exec, only setrlimit, which is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 64,
                rlim_max: 64,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let mut viewer = Viewer::spawn(command);
    let addr = viewer.addr;
    assert_eq!(status_within(addr, "/api/calls", 30), 200);
    let held: Vec<TcpStream> = (0..150)
        .map(|_| stalled(addr, b"GET / HTTP/1.1\r\nHost: x\r\n"))
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    drop(held);
    // Once they are gone the server listens again.
    assert_eq!(status_within(addr, "/api/calls", 10), 200);
    assert!(
        viewer.child.try_wait().unwrap().is_none(),
        "the viewer exited"
    );
}

#[test]
fn connections_beyond_the_bound_are_refused_at_once() {
    let viewer = Viewer::start(recorded());
    let addr = viewer.addr;
    assert_eq!(status_within(addr, "/api/calls", 30), 200);
    // As many connections as the server keeps open, sending nothing.
    let held: Vec<TcpStream> = (0..128)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let mut one_more = stalled(addr, b"GET /api/calls HTTP/1.1\r\nHost: x\r\n\r\n");
    one_more
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut answer = Vec::new();
    let _ = one_more.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("Retry-After: 1"), "{answer}");
    drop(held);
    assert_eq!(status_within(addr, "/api/calls", 10), 200);
}

#[test]
fn a_client_that_takes_nothing_is_let_go_after_a_minute() {
    let viewer = Viewer::start(recorded());
    let addr = viewer.addr;
    assert_eq!(status_within(addr, "/api/calls", 30), 200);
    // Two hours from the call's start: 230 MB, far more than the system's buffers hold, so
    // that the server has bytes to write all along, a few at a time as buffers grow.
    let request = format!(
        "GET /api/calls/call-1/audio?station=stt&tap=PRE&from={DAY_MS}&to={} HTTP/1.1\r\n\
         Host: x\r\n\r\n",
        DAY_MS + 7_200_000
    );
    let mut stream = stalled(addr, request.as_bytes());
    std::thread::sleep(Duration::from_secs(75));
    // Then read as fast as can be: only what the buffers held comes, then the end. A watchdog
    // on each read: a connection still open is a failure, not a hang.
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let (mut got, mut chunk) = (0usize, vec![0u8; 1 << 20]);
    let closed = loop {
        match stream.read(&mut chunk) {
            Ok(0) => break true,
            Ok(n) => got += n,
            Err(_) => break false,
        }
    };
    assert!(
        closed && got < 64 << 20,
        "{got} bytes read, closed: {closed}"
    );
}

#[test]
fn pages_do_not_wait_for_busy_workers() {
    let base = tempfile::tempdir().unwrap();
    // Four calls of thousands of files each: the first look at each reads them all, keeping
    // the four workers busy.
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    for call in 0..4 {
        let tap = base.path().join(format!("2026-11-21/busy{call}/stt/PRE"));
        std::fs::create_dir_all(&tap).unwrap();
        for k in 0..3_000u64 {
            let path = tap.join(format!("segment_{}.wav", DAY_MS + k * 5_000));
            let mut wav = hound::WavWriter::create(path, spec).unwrap();
            wav.write_sample(1i16).unwrap();
            wav.finalize().unwrap();
        }
    }
    let viewer = Viewer::start(base.path());
    let addr = viewer.addr;
    let (done, finished) = mpsc::channel();
    for call in 0..4 {
        let done = done.clone();
        std::thread::spawn(move || {
            let _ = done.send(get(addr, &format!("/api/calls/busy{call}"), &[]).status);
        });
    }
    std::thread::sleep(Duration::from_millis(100));
    for target in ["/", "/static/view.css", "/call/busy0"] {
        assert_eq!(status_within(addr, target, 60), 200, "{target}");
        assert!(
            finished.try_recv().is_err(),
            "{target} waited for a worker to be free"
        );
    }
    for _ in 0..4 {
        let status = finished
            .recv_timeout(Duration::from_secs(300))
            .expect("the calls are answered");
        assert_eq!(status, 200);
    }
}
