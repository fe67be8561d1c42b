//! What the viewer's tests share: recordings made by the real element in a real pipeline, the
//! viewer started as a program, and a small HTTP client that sends a request line as written
//! (so that `..` and encoded slashes reach the server as an attacker would send them).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use gst::prelude::*;
use gstsegmentrecorder::pair::speech::{quantise, speech_like};

pub const RATE: u32 = 16_000;

/// 2026-11-21T06:00:00Z, a bucket boundary.
pub const DAY_MS: u64 = 1_795_240_800_000;

pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().unwrap();
        gstsegmentrecorder::plugin_register_static().unwrap();
    });
}

/// A recording: a speech-like source through a `tee` to a PRE and a POST recorder around a
/// `volume` stage per station, stamped in UTC from `start_ms` by reference timestamps, so that
/// it runs as fast as the machine can and still lands on a real date.
pub struct Take<'a> {
    pub trace: &'a str,
    /// Each station's key and the gain of its stage.
    pub stations: &'a [(&'a str, f64)],
    /// UTC of the first sample, ms.
    pub start_ms: u64,
    pub seconds: u64,
    /// Seconds after the start during which the source's buffers are lost (a hole).
    pub hole: Option<(u64, u64)>,
    pub seed: u64,
    /// Whether the recorders compare their pairs (off makes long recordings quicker).
    pub pair_analysis: bool,
}

impl Take<'_> {
    pub fn new<'a>(
        trace: &'a str,
        stations: &'a [(&'a str, f64)],
        start_ms: u64,
        seconds: u64,
    ) -> Take<'a> {
        Take {
            trace,
            stations,
            start_ms,
            seconds,
            hole: None,
            seed: 1,
            pair_analysis: true,
        }
    }
}

/// Records `take` under `base` and waits until every recorder has published its last file.
pub fn record(base: &Path, take: &Take) {
    init();
    const BUFFER: u64 = 320;
    let total = take.seconds * u64::from(RATE);
    let mut description = format!(
        "audiotestsrc name=src is-live=false wave=silence samplesperbuffer={BUFFER} \
         num-buffers={} ! audio/x-raw,format=S16LE,rate={RATE},channels=1,layout=interleaved \
         ! tee name=t",
        total / BUFFER
    );
    for (i, (_, gain)) in take.stations.iter().enumerate() {
        description += &format!(
            " t. ! queue ! segmentrecorder name=pre{i} \
             t. ! queue ! volume volume={gain} ! segmentrecorder name=post{i}"
        );
    }
    let pipeline = gst::parse::launch(&description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    for (i, (station, _)) in take.stations.iter().enumerate() {
        for (name, tap) in [(format!("pre{i}"), "PRE"), (format!("post{i}"), "POST")] {
            let r = pipeline.by_name(&name).unwrap();
            r.set_property("base-dir", base.to_str().unwrap());
            r.set_property("trace-id", take.trace);
            r.set_property("station-key", *station);
            r.set_property_from_str("tap", tap);
            r.set_property_from_str("timestamp-mode", "reference-timestamp");
            r.set_property("pair-analysis", take.pair_analysis);
        }
    }
    // The source's silence becomes speech, each buffer stamped with its UTC; buffers in the
    // hole are dropped and the next one is marked as a discontinuity, as after a loss.
    let speech = Arc::new(quantise(speech_like(RATE, total as usize, take.seed)));
    let unix = gst::Caps::new_empty_simple("timestamp/x-unix");
    let (start_ms, hole) = (take.start_ms, take.hole);
    let after_hole = Mutex::new(false);
    let src = pipeline.by_name("src").unwrap().static_pad("src").unwrap();
    src.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        let Some(gst::PadProbeData::Buffer(buffer)) = info.data.as_mut() else {
            return gst::PadProbeReturn::Ok;
        };
        let pts = buffer.pts().unwrap();
        let first = (pts.nseconds() * u64::from(RATE) / 1_000_000_000) as usize;
        if let Some((a, b)) = hole
            && (a * 1_000..b * 1_000).contains(&pts.mseconds())
        {
            *after_hole.lock().unwrap() = true;
            return gst::PadProbeReturn::Drop;
        }
        let b = buffer.make_mut();
        // The source's silence is flagged as a gap, which a stage may pass over: not any more.
        b.unset_flags(gst::BufferFlags::GAP);
        {
            let mut map = b.map_writable().unwrap();
            for (i, bytes) in map.chunks_exact_mut(2).enumerate() {
                bytes.copy_from_slice(&speech[first + i].to_le_bytes());
            }
        }
        gst::ReferenceTimestampMeta::add(
            b,
            &unix,
            gst::ClockTime::from_mseconds(start_ms) + pts,
            None,
        );
        if std::mem::take(&mut *after_hole.lock().unwrap()) {
            b.set_flags(gst::BufferFlags::DISCONT);
        }
        gst::PadProbeReturn::Ok
    });
    let bus = pipeline.bus().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(600),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("the recording ends");
    if let gst::MessageView::Error(e) = msg.view() {
        panic!("recording failed: {} ({:?})", e.error(), e.debug());
    }
    pipeline.set_state(gst::State::Null).unwrap();
}

/// The viewer, running on a free port of the loopback, stopped when dropped.
pub struct Viewer {
    pub child: Child,
    pub addr: SocketAddr,
}

impl Viewer {
    /// The viewer of this build, or the program `SEGMENTRECORDER_VIEW` names (a release
    /// build, to measure what users get).
    pub fn start(base: &Path) -> Viewer {
        let program = std::env::var_os("SEGMENTRECORDER_VIEW")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_segmentrecorder-view").into());
        let mut command = Command::new(program);
        command
            .arg(base)
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped());
        Viewer::spawn(command)
    }

    /// The viewer `command` starts, which must send its standard output to a pipe.
    pub fn spawn(mut command: Command) -> Viewer {
        let mut child = command.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .split_whitespace()
            .last()
            .unwrap_or_else(|| panic!("no URL in {line:?}"));
        let addr = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .unwrap_or_else(|e| panic!("{e}: {line:?}"));
        Viewer { child, addr }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn get(&self, target: &str) -> Reply {
        get(self.addr, target, &[])
    }

    /// A call's pairs once all are compared (the server compares them in the background).
    pub fn pairs(&self, id: &str) -> serde_json::Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        loop {
            let pairs = self.json(&format!("/api/calls/{id}/pairs"));
            let stations = pairs["stations"].as_array().unwrap();
            if stations.iter().all(|s| s["pending"] == 0) {
                return pairs;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "pairs still pending: {pairs}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A JSON answer, which must be 200.
    pub fn json(&self, target: &str) -> serde_json::Value {
        let reply = self.get(target);
        assert_eq!(reply.status, 200, "{target}: {}", reply.text());
        serde_json::from_slice(&reply.body).unwrap_or_else(|e| panic!("{target}: {e}"))
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// `GET target` exactly as written, with `headers`, over a connection of its own.
pub fn get(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> Reply {
    request(addr, "GET", target, headers, b"")
}

/// One HTTP/1.1 request over a connection of its own; the answer read to the end.
pub fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head += &format!("{name}: {value}\r\n");
    }
    head += &format!("Content-Length: {}\r\n\r\n", body.len());
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    // Read up to the end of the head, then as much body as it announces: a server may keep
    // the connection open whatever the request said.
    let mut raw = Vec::new();
    let mut chunk = [0u8; 65_536];
    let split = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = stream.read(&mut chunk).unwrap();
        assert!(
            n > 0,
            "no header end in {:?}",
            String::from_utf8_lossy(&raw)
        );
        raw.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut body = raw[split + 4..].to_vec();
    if let Some(len) = find("content-length") {
        let len: usize = len.parse().unwrap();
        while body.len() < len {
            let n = stream.read(&mut chunk).unwrap();
            assert!(n > 0, "connection closed before the body's end");
            body.extend_from_slice(&chunk[..n]);
        }
        body.truncate(len);
    } else if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        while !body.ends_with(b"0\r\n\r\n") {
            let n = stream.read(&mut chunk).unwrap();
            assert!(n > 0, "connection closed before the last chunk");
            body.extend_from_slice(&chunk[..n]);
        }
        body = dechunk(&body);
    } else if method != "HEAD" {
        stream.read_to_end(&mut body).unwrap();
    }
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let end = raw.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&raw[..end]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[end + 2..end + 2 + size]);
        raw = &raw[end + 4 + size..];
    }
}

/// Samples and rate of a WAV held in memory.
pub fn wav_samples(bytes: &[u8]) -> (Vec<i16>, u32) {
    let reader = hound::WavReader::new(std::io::Cursor::new(bytes)).unwrap();
    let rate = reader.spec().sample_rate;
    (reader.into_samples().map(Result::unwrap).collect(), rate)
}
