//! Benchmarks the recorder against the alternatives, all measured in the same run so that the
//! ratios mean something on a shared, noisy machine.
//!
//! ```text
//! cargo run --release --example bench -- [--streams S] [--seconds T] [--dir DIR] [--quick]
//!     [--only throughput|cost|isolation|scale|pairs|retention|tee] [--readme README.md]
//! ```
//!
//! 1. Throughput: S streams × T seconds of 16 kHz mono in 20 ms buffers, pushed as fast as
//!    possible, every file written and finalised, through `segmentrecorder`, `fakesink`,
//!    `splitmuxsink muxer-factory=wavenc`, `wavenc ! filesink`, and a plain loop writing the same
//!    files with `.part` + rename. Then the same with 1 stream × 10 T seconds.
//! 2. Streaming-thread cost: time per 20 ms buffer pushed into the recorder vs `fakesink`.
//! 3. Isolation: push latency percentiles of 20 recorders fed in real time while the writer is
//!    stalled for 2 s.
//! 4. Scale: N recorders (and N fakesinks) fed in real time for a few seconds, each N in a
//!    fresh process: threads, resident memory and CPU per element, samples dropped.
//! 5. Pair analysis: CPU per PRE/POST pair compared, against the writer's own level
//!    measurement and against reading the two files; then N recorders in PRE/POST pairs fed in
//!    real time with `pair-analysis` on and off (and N fakesinks): what comparing every pair adds
//!    to a recorder's CPU.
//! 6. Retention: the same with N recorders in PRE/POST pairs writing 500 ms segments, without
//!    and with a `retention-max-bytes` that makes them remove a pair per segment written.
//!
//! It prints each part's markdown table as it is measured, then the verdicts against the
//! targets. With `--readme FILE` it also writes all of it into FILE between the lines
//! `<!-- bench:start -->` and `<!-- bench:end -->`, so the README's figures are always those of
//! one whole run, and the README's prose need not repeat them.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gst::prelude::*;

const RATE: u64 = 16_000;
const BUFFER_SAMPLES: usize = 320;
const CAPS: &str = "audio/x-raw,format=S16LE,layout=interleaved,channels=1,rate=16000";

/// The targets a run is judged against. Throughput: the recorder's, relative to the plain loop's
/// and to splitmuxsink's (their wall time over the recorder's), at least this much.
const TARGET_VS_PLAIN_LOOP: f64 = 0.9;
const TARGET_VS_SPLITMUX: f64 = 3.0;
/// Streaming-thread CPU per buffer, relative to fakesink's, at most this much.
const TARGET_COST_VS_FAKESINK: f64 = 1.2;
/// Push latency while the writer is stalled, at most this much (µs).
const TARGET_P999_US: f64 = 50.0;
const TARGET_MAX_US: f64 = 1_000.0;
/// Resident memory per recorder beyond a fakesink's, at most this much (KB).
const TARGET_KB_PER_RECORDER: f64 = 64.0;
/// CPU per pair compared (16 kHz, 5 s buckets, ±500 ms searched), at most this much (ms).
const TARGET_PAIR_MS: f64 = 1.0;
/// CPU per recorder with every pair compared over that with none, at most this much.
const TARGET_PAIRS_ON_VS_OFF: f64 = 1.2;

/// Where `--readme` writes, between these two lines.
const README_START: &str = "<!-- bench:start -->";
const README_END: &str = "<!-- bench:end -->";

struct Options {
    streams: usize,
    seconds: u64,
    dir: PathBuf,
    scale: Vec<usize>,
    scale_seconds: u64,
    /// Recorders (half PRE, half POST) of the pair-analysis part, and how long they are fed.
    pairs_n: usize,
    pairs_seconds: u64,
    /// Ns of the one-tee part.
    tee: Vec<usize>,
    only: Option<String>,
    readme: Option<PathBuf>,
}

fn options() -> Options {
    let mut o = Options {
        streams: 200,
        seconds: 60,
        dir: PathBuf::from("target/bench"),
        // From 100 up: one recorder's memory is below the noise of the process's own.
        scale: vec![100, 1_000, 2_000],
        scale_seconds: 3,
        pairs_n: 2_000,
        // Buckets close at 5 and 10 s: two rounds of comparisons while the CPU is measured, with
        // time to finish them.
        pairs_seconds: 12,
        tee: vec![2_000, 10_000],
        only: None,
        readme: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--streams" => o.streams = value().parse().expect("a number of streams"),
            "--seconds" => o.seconds = value().parse().expect("a number of seconds"),
            "--dir" => o.dir = PathBuf::from(value()),
            "--only" => o.only = Some(value()),
            "--readme" => o.readme = Some(PathBuf::from(value())),
            "--quick" => {
                o.streams = 20;
                o.seconds = 20;
                o.scale = vec![100, 500];
                o.scale_seconds = 2;
                o.pairs_n = 200;
                o.pairs_seconds = 6;
                o.tee = vec![200];
            }
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(
        o.readme.is_none() || o.only.is_none(),
        "--readme writes the results of every part: it cannot be given with --only"
    );
    o
}

/// `n` with thousands separated by commas, as the README writes numbers.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `x` with `decimals` decimals and its thousands separated by commas.
fn fixed(x: f64, decimals: usize) -> String {
    let text = format!("{x:.decimals$}");
    match text.split_once('.') {
        Some((whole, fraction)) => format!("{}.{fraction}", thousands(whole.parse().unwrap_or(0))),
        None => thousands(text.parse().unwrap_or(0)),
    }
}

/// `markdown` with its prose lines (not table rows) wrapped at the README's width, a list item's
/// continuation indented under its text.
fn wrap_prose(markdown: &str) -> String {
    const WIDTH: usize = 96;
    let mut out = String::new();
    for line in markdown.lines() {
        if line.starts_with('|') || line.chars().count() <= WIDTH {
            out += line;
            out += "\n";
            continue;
        }
        let indent = if line.starts_with("- ") { "  " } else { "" };
        let mut width = 0;
        for word in line.split(' ') {
            let len = word.chars().count();
            if width > 0 && width + 1 + len > WIDTH {
                out += "\n";
                out += indent;
                width = indent.len();
            } else if width > 0 {
                out += " ";
                width += 1;
            }
            out += word;
            width += len;
        }
        out += "\n";
    }
    out
}

/// "met" or a bold "not met", for the verdicts.
fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "**not met**" }
}

fn init() {
    gst::init().expect("GStreamer");
    gstsegmentrecorder::plugin_register_static().expect("plugin");
}

/// CPU time of this process so far (user + system).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    // The kernel's USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

fn writer_threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| {
        d.filter(|t| {
            let comm = std::fs::read_to_string(t.as_ref().unwrap().path().join("comm"));
            comm.is_ok_and(|c| c.starts_with("segrec-writer"))
        })
        .count()
    })
}

/// Runs `streams` pipelines built by `sink(i)` after a silent 16 kHz source of `seconds`, all
/// at once, until every one reached EOS. Returns wall time and CPU time.
fn run_pipelines(streams: usize, seconds: u64, sink: impl Fn(usize) -> String) -> (f64, f64) {
    let buffers = seconds * RATE / BUFFER_SAMPLES as u64;
    let pipelines: Vec<gst::Element> = (0..streams)
        .map(|i| {
            gst::parse::launch(&format!(
                "audiotestsrc wave=silence num-buffers={buffers} samplesperbuffer={BUFFER_SAMPLES} \
                 ! {CAPS} ! {}",
                sink(i)
            ))
            .expect("pipeline")
        })
        .collect();
    let (cpu0, t0) = (cpu_time(), Instant::now());
    for p in &pipelines {
        p.set_state(gst::State::Playing).expect("PLAYING");
    }
    for p in &pipelines {
        let bus = p.bus().expect("bus");
        let msg = bus
            .timed_pop_filtered(
                gst::ClockTime::NONE,
                &[gst::MessageType::Eos, gst::MessageType::Error],
            )
            .expect("a message");
        if let gst::MessageView::Error(e) = msg.view() {
            panic!("{}: {:?}", e.error(), e.debug());
        }
    }
    let (wall, cpu) = (t0.elapsed(), cpu_time() - cpu0);
    for p in &pipelines {
        p.set_state(gst::State::Null).expect("NULL");
    }
    (wall.as_secs_f64(), cpu.as_secs_f64())
}

/// The plain loop: the same number of 5-second WAV files, written with `.part` and a rename.
fn plain_loop(dir: &Path, streams: usize, seconds: u64) -> (f64, f64) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: RATE as u32,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let chunk = [0i16; BUFFER_SAMPLES];
    let (cpu0, t0) = (cpu_time(), Instant::now());
    for s in 0..streams {
        let stream_dir = dir.join(format!("s{s}"));
        std::fs::create_dir_all(&stream_dir).expect("dir");
        for k in 0..seconds.div_ceil(5) {
            let name = stream_dir.join(format!("segment_{}.wav", k * 5_000));
            let part = name.with_extension("wav.part");
            let mut wav = hound::WavWriter::create(&part, spec).expect("create");
            for _ in 0..(5 * RATE as usize / BUFFER_SAMPLES) {
                let mut w = wav.get_i16_writer(BUFFER_SAMPLES as u32);
                for &x in &chunk {
                    w.write_sample(x);
                }
                w.flush().expect("write");
            }
            wav.finalize().expect("finalize");
            std::fs::rename(&part, &name).expect("rename");
        }
    }
    (
        t0.elapsed().as_secs_f64(),
        (cpu_time() - cpu0).as_secs_f64(),
    )
}

/// What the throughput part compares, in the order of its tables.
#[derive(Clone, Copy, PartialEq)]
enum Sink {
    Recorder,
    Fakesink,
    Splitmux,
    Wavenc,
    PlainLoop,
}

impl Sink {
    fn label(self) -> &'static str {
        match self {
            Sink::Recorder => "segmentrecorder",
            Sink::Fakesink => "fakesink (GStreamer's floor)",
            Sink::Splitmux => "splitmuxsink muxer-factory=wavenc max-size-time=5s",
            Sink::Wavenc => "wavenc ! filesink (one file, no splitting)",
            Sink::PlainLoop => "plain loop: hound + `.part` + rename, same files",
        }
    }
}

/// One throughput load: each sink's wall and CPU seconds.
struct Throughput {
    streams: usize,
    seconds: u64,
    rows: Vec<(Sink, f64, f64)>,
}

impl Throughput {
    fn wall(&self, sink: Sink) -> f64 {
        self.rows
            .iter()
            .find(|r| r.0 == sink)
            .map_or(f64::NAN, |r| r.1)
    }

    /// The recorder's speed relative to `sink`'s: its wall time over the recorder's.
    fn recorder_vs(&self, sink: Sink) -> f64 {
        self.wall(sink) / self.wall(Sink::Recorder)
    }

    fn load(&self) -> String {
        let s = if self.streams == 1 { "" } else { "s" };
        format!(
            "{} stream{s} × {} s",
            thousands(self.streams as u64),
            thousands(self.seconds)
        )
    }

    fn markdown(&self) -> String {
        let audio = (self.streams as u64 * self.seconds) as f64;
        let mut out = format!(
            "| {} | wall s | CPU s | audio s per wall s | wall time ÷ the recorder's |\n\
             |---|---|---|---|---|\n",
            self.load()
        );
        for &(sink, wall, cpu) in &self.rows {
            out += &format!(
                "| {} | {wall:.2} | {cpu:.2} | {} | {:.2}× |\n",
                sink.label(),
                thousands((audio / wall).round() as u64),
                self.recorder_vs(sink)
            );
        }
        out
    }
}

fn throughput(o: &Options, streams: usize, seconds: u64) -> Throughput {
    let dir = o.dir.join(format!("throughput-{streams}x{seconds}"));
    let _ = std::fs::remove_dir_all(&dir);
    let d = |sub: &str| {
        let p = dir.join(sub);
        std::fs::create_dir_all(&p).expect("dir");
        p
    };
    let (rec, split, wav, plain) = (d("rec"), d("splitmux"), d("wavenc"), d("plain"));
    let mut rows = Vec::new();
    let mut measured = |sink: Sink, (wall, cpu): (f64, f64)| rows.push((sink, wall, cpu));
    measured(
        Sink::Recorder,
        run_pipelines(streams, seconds, |i| {
            format!(
                "segmentrecorder base-dir={} trace-id=s{i} station-key=bench \
                 timestamp-mode=running-time",
                rec.display()
            )
        }),
    );
    measured(
        Sink::Fakesink,
        run_pipelines(streams, seconds, |_| "fakesink sync=false".into()),
    );
    measured(
        Sink::Splitmux,
        run_pipelines(streams, seconds, |i| {
            format!(
                "splitmuxsink muxer-factory=wavenc max-size-time=5000000000 location={}/s{i}_%05d.wav",
                split.display()
            )
        }),
    );
    measured(
        Sink::Wavenc,
        run_pipelines(streams, seconds, |i| {
            format!("wavenc ! filesink location={}/s{i}.wav", wav.display())
        }),
    );
    measured(Sink::PlainLoop, plain_loop(&plain, streams, seconds));
    let _ = std::fs::remove_dir_all(&dir);
    Throughput {
        streams,
        seconds,
        rows,
    }
}

/// CPU time of the calling thread so far.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Mean CPU time of the streaming (here: pushing) thread per 20 ms buffer pushed through a
/// harness into `element`, and the mean wall time per push. The thread's CPU time leaves out
/// the writer threads' work on the other core; the wall time includes their competition.
fn push_cost(element: &gst::Element, buffers: usize) -> (f64, f64) {
    let mut h = gst_check::Harness::with_element(element, Some("sink"), None);
    h.set_src_caps_str(CAPS);
    h.play();
    let data = vec![0u8; BUFFER_SAMPLES * 2];
    let made: Vec<gst::Buffer> = (0..buffers)
        .map(|i| {
            let mut b = gst::Buffer::from_slice(data.clone());
            b.get_mut()
                .expect("writable")
                .set_pts(gst::ClockTime::from_mseconds(i as u64 * 20));
            b
        })
        .collect();
    let (cpu0, t0) = (thread_cpu_time(), Instant::now());
    for b in made {
        h.push(b).expect("push");
    }
    let (cpu, wall) = (thread_cpu_time() - cpu0, t0.elapsed());
    h.push_event(gst::event::Eos::new());
    let per = |d: Duration| d.as_secs_f64() * 1e9 / buffers as f64;
    (per(cpu), per(wall))
}

fn recorder(dir: &Path, name: &str) -> gst::Element {
    gst::ElementFactory::make("segmentrecorder")
        .property("base-dir", dir.to_str().expect("utf-8 path"))
        .property("trace-id", name)
        .property("station-key", "bench")
        .property_from_str("timestamp-mode", "running-time")
        .property("max-queue-time", 600_000_000_000u64)
        .build()
        .expect("segmentrecorder")
}

/// The streaming-thread cost part: mean ns per buffer, (thread CPU, wall), of each sink.
struct Cost {
    buffers: usize,
    rounds: usize,
    fakesink: (f64, f64),
    recorder: (f64, f64),
}

impl Cost {
    /// The recorder's streaming-thread CPU per buffer relative to fakesink's.
    fn ratio(&self) -> f64 {
        self.recorder.0 / self.fakesink.0
    }

    fn markdown(&self) -> String {
        let mut out = String::from(
            "| sink | thread CPU ns per buffer | wall ns per push | CPU ÷ fakesink's |\n\
             |---|---|---|---|\n",
        );
        for (sink, (cpu, wall)) in [
            ("fakesink", self.fakesink),
            ("segmentrecorder", self.recorder),
        ] {
            out += &format!(
                "| {sink} | {} | {} | {:.2}× |\n",
                thousands(cpu.round() as u64),
                thousands(wall.round() as u64),
                cpu / self.fakesink.0
            );
        }
        out
    }
}

fn streaming_cost(o: &Options) -> Cost {
    let dir = o.dir.join("cost");
    let (buffers, rounds) = (20_000, 3);
    let (mut rec, mut fake) = ((0.0, 0.0), (0.0, 0.0));
    let n = rounds as f64;
    // Alternate, round by round, so both see the same machine.
    for round in 0..rounds {
        let fakesink = gst::ElementFactory::make("fakesink")
            .property("sync", false)
            .build()
            .expect("fakesink");
        let f = push_cost(&fakesink, buffers);
        let r = push_cost(&recorder(&dir, &format!("cost{round}")), buffers);
        fake = (fake.0 + f.0 / n, fake.1 + f.1 / n);
        rec = (rec.0 + r.0 / n, rec.1 + r.1 / n);
    }
    let _ = std::fs::remove_dir_all(&dir);
    Cost {
        buffers,
        rounds,
        fakesink: fake,
        recorder: rec,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// The isolation part: push latencies in µs while the writer was stalled.
struct Isolation {
    pushes: usize,
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    dropped: u64,
}

impl Isolation {
    fn markdown(&self) -> String {
        format!(
            "| pushes | p50 µs | p99 µs | p99.9 µs | max µs | samples dropped |\n\
             |---|---|---|---|---|---|\n\
             | {} | {} | {} | {} | {} | {} |\n",
            thousands(self.pushes as u64),
            fixed(self.p50, 1),
            fixed(self.p99, 1),
            fixed(self.p999, 1),
            fixed(self.max, 1),
            thousands(self.dropped)
        )
    }
}

fn isolation(o: &Options) -> Isolation {
    let dir = o.dir.join("isolation");
    let recorders: Vec<(gst::Element, gst_check::Harness)> = (0..20)
        .map(|i| {
            let element = recorder(&dir, &format!("iso{i}"));
            let mut h = gst_check::Harness::with_element(&element, Some("sink"), None);
            h.set_src_caps_str(CAPS);
            h.play();
            (element, h)
        })
        .collect();
    let mut recorders = recorders;
    let data = vec![1u8; BUFFER_SAMPLES * 2];
    let mut latencies = Vec::new();
    let mut push_round = |round: u64, latencies: &mut Vec<Duration>| {
        for (_, h) in recorders.iter_mut() {
            let mut b = gst::Buffer::from_slice(data.clone());
            b.get_mut()
                .expect("writable")
                .set_pts(gst::ClockTime::from_mseconds(round * 20));
            let t = Instant::now();
            h.push(b).expect("push");
            latencies.push(t.elapsed());
        }
    };
    // Half a second of warm-up, then 2 s with the writer stalled, in real time.
    let mut round = 0;
    for _ in 0..25 {
        push_round(round, &mut Vec::new());
        round += 1;
        thread::sleep(Duration::from_millis(20));
    }
    gstsegmentrecorder::writer::stall_writer_for_tests(true);
    let stall_end = Instant::now() + Duration::from_secs(2);
    while Instant::now() < stall_end {
        push_round(round, &mut latencies);
        round += 1;
        thread::sleep(Duration::from_millis(20));
    }
    gstsegmentrecorder::writer::stall_writer_for_tests(false);
    let mut dropped = 0;
    for (element, h) in recorders.iter_mut() {
        h.push_event(gst::event::Eos::new());
        let stats = element.property::<gst::Structure>("recording-stats");
        dropped += stats.get::<u64>("samples-dropped-overflow").unwrap_or(0);
    }
    drop(recorders);
    let _ = std::fs::remove_dir_all(&dir);
    latencies.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    Isolation {
        pushes: latencies.len(),
        p50: us(percentile(&latencies, 0.5)),
        p99: us(percentile(&latencies, 0.99)),
        p999: us(percentile(&latencies, 0.999)),
        max: us(*latencies.last().expect("pushes")),
        dropped,
    }
}

/// In a child process: N elements fed in real time; prints one line of measurements.
fn scale_child(kind: &str, n: usize, seconds: u64, dir: &Path) {
    init();
    let (rss0, threads0) = (rss_kb(), threads());
    let mut elements: Vec<(gst::Element, gst_check::Harness)> = (0..n)
        .map(|i| {
            let element = match kind {
                "recorder" => recorder(dir, &format!("scale{i}")),
                // Recorders 2k and 2k + 1 are the PRE and POST of one call's stage.
                "pairs-on" | "pairs-off" => {
                    let element = recorder(dir, &format!("pair{}", i / 2));
                    element.set_property_from_str("tap", ["PRE", "POST"][i % 2]);
                    element.set_property("pair-analysis", kind == "pairs-on");
                    element
                }
                _ => gst::ElementFactory::make("fakesink")
                    .property("sync", false)
                    .build()
                    .expect("fakesink"),
            };
            let mut h = gst_check::Harness::with_element(&element, Some("sink"), None);
            h.set_src_caps_str(CAPS);
            h.play();
            (element, h)
        })
        .collect();
    // A second of white noise at -10 dBFS in 50 buffers, over and over: audio the pair
    // analysis has to align, not silence it would give up on at once.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let noise: Vec<Vec<u8>> = (0..50)
        .map(|_| {
            (0..BUFFER_SAMPLES)
                .flat_map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    ((seed >> 48) as i16 / 3).to_le_bytes()
                })
                .collect()
        })
        .collect();
    let rounds = seconds * 50;
    let (cpu0, t0) = (cpu_time(), Instant::now());
    let mut late = 0;
    for round in 0..rounds {
        for (_, h) in elements.iter_mut() {
            let mut b = gst::Buffer::from_slice(noise[round as usize % noise.len()].clone());
            b.get_mut()
                .expect("writable")
                .set_pts(gst::ClockTime::from_mseconds(round * 20));
            h.push(b).expect("push");
        }
        let due = t0 + Duration::from_millis((round + 1) * 20);
        match due.checked_duration_since(Instant::now()) {
            Some(wait) => thread::sleep(wait),
            None => late += 1,
        }
    }
    let (cpu, wall) = (cpu_time() - cpu0, t0.elapsed());
    let (rss, all_threads, writers) = (rss_kb(), threads(), writer_threads());
    // The pairs compared (and skipped) while the CPU time was measured, before EOS publishes
    // the last ones.
    let (mut compared_before_eos, mut skipped_before_eos) = (0, 0);
    for (element, _) in elements.iter().filter(|_| kind != "fakesink") {
        let stats = element.property::<gst::Structure>("recording-stats");
        compared_before_eos += stats.get::<u64>("pairs-compared").unwrap_or(0);
        skipped_before_eos += stats.get::<u64>("pairs-skipped").unwrap_or(0);
    }
    let mut dropped = 0;
    for (element, h) in elements.iter_mut() {
        h.push_event(gst::event::Eos::new());
        if kind != "fakesink" {
            let stats = element.property::<gst::Structure>("recording-stats");
            dropped += stats.get::<u64>("samples-dropped-overflow").unwrap_or(0)
                + stats.get::<u64>("samples-dropped-overlap").unwrap_or(0);
        }
    }
    println!(
        "scale {} {} {} {} {} {} {} {} {} {}",
        rss.saturating_sub(rss0),
        all_threads.saturating_sub(threads0),
        writers,
        cpu.as_secs_f64(),
        wall.as_secs_f64(),
        dropped,
        late,
        rounds,
        compared_before_eos,
        skipped_before_eos
    );
}

/// One N of the scale part.
struct ScaleRow {
    n: usize,
    writer_threads: f64,
    threads_recorder: f64,
    threads_fakesink: f64,
    kb_per_recorder: f64,
    cpu_recorder: f64,
    cpu_fakesink: f64,
    late: f64,
    rounds: f64,
    dropped: f64,
}

fn scale_markdown(rows: &[ScaleRow]) -> String {
    let mut out = String::from(
        "| N | writer threads | threads added: recorders (fakesinks) | KB per recorder beyond \
         fakesink | CPU per recorder, % of a core (fakesink) | 20 ms deadlines the feeding \
         thread missed | samples dropped |\n|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        out += &format!(
            "| {} | {} | {} ({}) | {:.0} | {:.3} ({:.3}) | {} of {} | {} |\n",
            thousands(r.n as u64),
            r.writer_threads,
            r.threads_recorder,
            r.threads_fakesink,
            r.kb_per_recorder,
            r.cpu_recorder,
            r.cpu_fakesink,
            r.late,
            r.rounds,
            thousands(r.dropped as u64)
        );
    }
    out
}

/// Runs a child process with `n` elements of `kind` fed in real time for `seconds`: its
/// measurements (see [`scale_child`]).
fn run_child(o: &Options, kind: &str, n: usize, seconds: u64) -> Vec<f64> {
    run_part_child(o, "scale", kind, n, seconds)
}

/// Runs this program as the child of `part` (`--<part>-child`) with `kind`, `n` and `seconds`,
/// in a directory of its own removed after: the numbers of the line it prints after `<part> `.
fn run_part_child(o: &Options, part: &str, kind: &str, n: usize, seconds: u64) -> Vec<f64> {
    let exe = std::env::current_exe().expect("own path");
    let dir = o.dir.join(format!("{part}-{kind}-{n}"));
    let out = Command::new(&exe)
        .args([
            &format!("--{part}-child"),
            kind,
            &n.to_string(),
            &seconds.to_string(),
        ])
        .arg(&dir)
        .output()
        .expect("child");
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stdout);
    let prefix = format!("{part} ");
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("child failed: {}", String::from_utf8_lossy(&out.stderr)));
    line.split_whitespace()
        .map(|v| v.parse().expect("number"))
        .collect()
}

fn scale(o: &Options) -> Vec<ScaleRow> {
    let run = |kind: &str, n: usize| run_child(o, kind, n, o.scale_seconds);
    o.scale
        .iter()
        .map(|&n| {
            let rec = run("recorder", n);
            let fake = run("fakesink", n);
            let per_core = |m: &[f64]| m[3] / m[4] / n as f64 * 100.0;
            ScaleRow {
                n,
                writer_threads: rec[2],
                threads_recorder: rec[1],
                threads_fakesink: fake[1],
                kb_per_recorder: (rec[0] - fake[0]) / n as f64,
                cpu_recorder: per_core(&rec),
                cpu_fakesink: per_core(&fake),
                late: rec[6],
                rounds: rec[7],
                dropped: rec[5],
            }
        })
        .collect()
}

/// The pair-analysis part.
struct Pairs {
    /// Pairs per round and rounds of the CPU-per-pair measurement.
    per_round: usize,
    rounds: usize,
    /// CPU ms per pair: comparing it, the writer's levels of its two sides, reading its two
    /// files.
    analysis_ms: f64,
    levels_ms: f64,
    reading_ms: f64,
    /// Recorders and seconds of the real-time run.
    n: usize,
    seconds: u64,
    scale_rounds: usize,
    /// CPU per element, % of a core: pairs compared, pairs not compared, fakesinks.
    cpu_on: f64,
    cpu_off: f64,
    cpu_fakesink: f64,
    /// Pairs compared and skipped while measured, per run, and samples dropped in all runs.
    compared: f64,
    skipped: f64,
    dropped: f64,
}

/// CPU seconds of the calling thread per pair for `work` done on `per_round` pairs.
fn per_pair<T>(pairs: &[T], per_round: usize, mut work: impl FnMut(&T)) -> f64 {
    let start = thread_cpu_time();
    for pair in pairs.iter().cycle().take(per_round) {
        work(pair);
    }
    (thread_cpu_time() - start).as_secs_f64() / per_round as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn pair_analysis(o: &Options) -> Pairs {
    use gstsegmentrecorder::pair::speech::{quantise, speech_like};
    use gstsegmentrecorder::pair::{Analyzer, Config};
    use gstsegmentrecorder::rebuild::read_segment;
    use gstsegmentrecorder::writer::levels::Levels;

    const LEN: usize = 5 * RATE as usize;
    const DELAY: usize = 120 * RATE as usize / 1_000;
    let (per_round, rounds) = (200, 5);
    // Eight different utterances, POST 120 ms later and 3 dB down.
    let pairs: Vec<(Vec<i16>, Vec<i16>)> = (0..8)
        .map(|seed| {
            let source = speech_like(RATE as u32, LEN + DELAY, seed);
            let pre = quantise(source[DELAY..].iter().copied());
            let post = quantise(source[..LEN].iter().map(|v| v * 0.708));
            (pre, post)
        })
        .collect();
    let dir = o.dir.join("pairs");
    std::fs::create_dir_all(&dir).expect("a writable --dir");
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: RATE as u32,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let files: Vec<[PathBuf; 2]> = pairs
        .iter()
        .enumerate()
        .map(|(i, (pre, post))| {
            [("pre", pre), ("post", post)].map(|(side, samples)| {
                let path = dir.join(format!("{side}-{i}.wav"));
                let mut wav = hound::WavWriter::create(&path, spec).expect("a writable --dir");
                for &s in samples {
                    wav.write_sample(s).expect("a writable --dir");
                }
                wav.finalize().expect("a writable --dir");
                path
            })
        })
        .collect();
    let config = Config::new(RATE as u32);
    let mut analyzer = Analyzer::new();
    for (pre, post) in &pairs {
        let figures = analyzer.analyze(pre, post, &config);
        assert_eq!(figures.delay, DELAY as i64, "{figures:?}");
    }
    // Alternating rounds, so that all three see the same load; the median of each.
    let (mut analysis, mut levels, mut reading) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        analysis.push(per_pair(&pairs, per_round, |(pre, post)| {
            black_box(analyzer.analyze(pre, post, &config));
        }));
        levels.push(per_pair(&pairs, per_round, |(pre, post)| {
            for side in [pre, post] {
                let mut l = Levels::new(RATE as u32, config.voice_threshold_dbfs);
                l.add(side);
                black_box(l.measured());
            }
        }));
        reading.push(per_pair(&files, per_round, |[pre, post]| {
            black_box((read_segment(pre), read_segment(post)).0.is_ok());
        }));
    }
    let _ = std::fs::remove_dir_all(&dir);

    let (n, seconds, scale_rounds) = (o.pairs_n, o.pairs_seconds, 2);
    let (mut on, mut off, mut fake) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..scale_rounds {
        on.push(run_child(o, "pairs-on", n, seconds));
        off.push(run_child(o, "pairs-off", n, seconds));
        fake.push(run_child(o, "fakesink", n, seconds));
    }
    let per_core = |runs: &[Vec<f64>]| {
        runs.iter()
            .map(|m| m[3] / m[4] / n as f64 * 100.0)
            .sum::<f64>()
            / runs.len() as f64
    };
    let ms = |v: Vec<f64>| median(v) * 1e3;
    Pairs {
        per_round,
        rounds,
        analysis_ms: ms(analysis),
        levels_ms: ms(levels),
        reading_ms: ms(reading),
        n,
        seconds,
        scale_rounds,
        cpu_on: per_core(&on),
        cpu_off: per_core(&off),
        cpu_fakesink: per_core(&fake),
        compared: on.iter().map(|m| m[8]).sum::<f64>() / on.len() as f64,
        skipped: on.iter().map(|m| m[9]).sum::<f64>() / on.len() as f64,
        dropped: on.iter().chain(&off).map(|m| m[5]).sum(),
    }
}

impl Pairs {
    fn on_vs_off(&self) -> f64 {
        self.cpu_on / self.cpu_off
    }

    fn markdown(&self) -> String {
        format!(
            "**Pair analysis**: CPU time of one thread per PRE/POST pair compared (16 kHz, 5 s \
             buckets, ±500 ms searched; speech-like audio, POST 120 ms later and 3 dB down), \
             median of {} alternating rounds of {} pairs, against two baselines on the same \
             pairs.\n\n\
             | per pair | CPU ms | ÷ comparing it |\n|---|---|---|\n\
             | comparing it | {:.3} | 1.00× |\n\
             | the writer's levels of both sides | {:.3} | {:.2}× |\n\
             | reading and decoding both files | {:.3} | {:.2}× |\n\n\
             Then {} recorders, the PRE and POST of {} calls, fed white noise in 20 ms buffers \
             in real time for {} s from one thread (buckets close every 5 s), each run in a \
             fresh process, {} alternating rounds of each.\n\n\
             | {} recorders | CPU per element, % of a core | ÷ pairs off | pairs compared (skipped) \
             per run |\n|---|---|---|---|\n\
             | `pair-analysis=true` | {:.3} | {:.2}× | {} ({}) |\n\
             | `pair-analysis=false` | {:.3} | 1.00× | 0 |\n\
             | fakesink instead | {:.3} | {:.2}× | |\n",
            self.rounds,
            self.per_round,
            self.analysis_ms,
            self.levels_ms,
            self.levels_ms / self.analysis_ms,
            self.reading_ms,
            self.reading_ms / self.analysis_ms,
            thousands(self.n as u64),
            thousands(self.n as u64 / 2),
            self.seconds,
            self.scale_rounds,
            thousands(self.n as u64),
            self.cpu_on,
            self.on_vs_off(),
            thousands(self.compared.round() as u64),
            thousands(self.skipped.round() as u64),
            self.cpu_off,
            self.cpu_fakesink,
            self.cpu_fakesink / self.cpu_off,
        )
    }
}

/// Everything one run measured; a part not run is `None` (or empty).
#[derive(Default)]
struct Report {
    throughput: Vec<Throughput>,
    cost: Option<Cost>,
    isolation: Option<Isolation>,
    scale: Vec<ScaleRow>,
    pairs: Option<Pairs>,
}

impl Report {
    /// Each target with whether this run met it and the figure it was judged by.
    fn verdicts(&self) -> String {
        let mut out = String::new();
        let per_load = |sink: Sink, target: f64| -> String {
            self.throughput
                .iter()
                .map(|t| {
                    let r = t.recorder_vs(sink);
                    format!("{} at {} ({r:.2}×)", met(r >= target), t.load())
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        if !self.throughput.is_empty() {
            out += &format!(
                "- Throughput ≥ {TARGET_VS_PLAIN_LOOP}× the plain loop's: {}.\n",
                per_load(Sink::PlainLoop, TARGET_VS_PLAIN_LOOP)
            );
            out += &format!(
                "- Throughput ≥ {TARGET_VS_SPLITMUX}× splitmuxsink's: {}.\n",
                per_load(Sink::Splitmux, TARGET_VS_SPLITMUX)
            );
        }
        if let Some(c) = &self.cost {
            let added_ns = c.recorder.0 - c.fakesink.0;
            // A recorder takes 50 buffers of 20 ms a second.
            let core_percent = added_ns * 50.0 / 1e9 * 100.0;
            out += &format!(
                "- Streaming-thread CPU ≤ {TARGET_COST_VS_FAKESINK}× fakesink's: {} ({:.2}×). \
                 The recorder adds {} ns per 20 ms buffer: {core_percent:.4} % of a core per \
                 recorder.\n",
                met(c.ratio() <= TARGET_COST_VS_FAKESINK),
                c.ratio(),
                thousands(added_ns.max(0.0).round() as u64),
            );
        }
        if let Some(i) = &self.isolation {
            out += &format!(
                "- Isolation: p99.9 ≤ {TARGET_P999_US} µs: {} ({} µs); max ≤ {} µs: {} \
                 ({} µs); nothing dropped: {}.\n",
                met(i.p999 <= TARGET_P999_US),
                fixed(i.p999, 1),
                fixed(TARGET_MAX_US, 0),
                met(i.max <= TARGET_MAX_US),
                fixed(i.max, 0),
                met(i.dropped == 0),
            );
        }
        if let (Some(first), Some(last)) = (self.scale.first(), self.scale.last()) {
            let threads_same = self
                .scale
                .iter()
                .all(|r| r.threads_recorder == first.threads_recorder);
            let kb = self
                .scale
                .iter()
                .map(|r| r.kb_per_recorder)
                .fold(f64::MIN, f64::max);
            let dropped: f64 = self.scale.iter().map(|r| r.dropped).sum();
            out += &format!(
                "- Scale: threads independent of N: {} ({} added at N = {}, {} at N = {}); \
                 ≤ {TARGET_KB_PER_RECORDER} KB per recorder beyond fakesink: {} (at most \
                 {kb:.0}); nothing dropped: {}.\n",
                met(threads_same),
                first.threads_recorder,
                thousands(first.n as u64),
                last.threads_recorder,
                thousands(last.n as u64),
                met(kb <= TARGET_KB_PER_RECORDER),
                met(dropped == 0.0),
            );
        }
        if let Some(p) = &self.pairs {
            out += &format!(
                "- Pair analysis: ≤ {TARGET_PAIR_MS} ms of CPU per pair: {} ({:.3} ms); CPU \
                 per recorder with every pair compared ≤ {TARGET_PAIRS_ON_VS_OFF}× that with \
                 none: {} ({:.2}×, {} pairs compared per run); no pair skipped: {}; no sample \
                 dropped: {}.\n",
                met(p.analysis_ms <= TARGET_PAIR_MS),
                p.analysis_ms,
                met(p.on_vs_off() <= TARGET_PAIRS_ON_VS_OFF),
                p.on_vs_off(),
                thousands(p.compared.round() as u64),
                met(p.skipped == 0.0),
                met(p.dropped == 0.0),
            );
        }
        out
    }
}

/// Replaces what is between the `bench:start` and `bench:end` lines of `path` with `text`.
fn write_readme(path: &Path, text: &str) -> Result<(), String> {
    let at = |e: std::io::Error| format!("{}: {e}", path.display());
    let readme = std::fs::read_to_string(path).map_err(at)?;
    let (Some(start), Some(end)) = (readme.find(README_START), readme.find(README_END)) else {
        return Err(format!(
            "{} has no {README_START} … {README_END} lines to write between",
            path.display()
        ));
    };
    let start = start + README_START.len();
    if end < start {
        return Err(format!(
            "{}: {README_END} before {README_START}",
            path.display()
        ));
    }
    let updated = format!("{}\n{text}{}", &readme[..start], &readme[end..]);
    // Written aside and renamed over, so an interrupted run never leaves half a README.
    let tmp = path.with_extension("bench-tmp");
    std::fs::write(&tmp, updated).map_err(at)?;
    std::fs::rename(&tmp, path).map_err(at)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--scale-child") {
        let n = args[3].parse().expect("N");
        let seconds = args[4].parse().expect("seconds");
        scale_child(&args[2], n, seconds, Path::new(&args[5]));
        return;
    }
    if args.get(1).map(String::as_str) == Some("--tee-child") {
        let n = args[3].parse().expect("N");
        let seconds = args[4].parse().expect("seconds");
        tee_child(&args[2], n, seconds, Path::new(&args[5]));
        return;
    }
    if args.get(1).map(String::as_str) == Some("--retention-child") {
        let n = args[3].parse().expect("N");
        let seconds = args[4].parse().expect("seconds");
        retention_child(&args[2] == "on", n, seconds, Path::new(&args[5]));
        return;
    }
    let o = options();
    init();
    let cores = thread::available_parallelism().map_or(0, |n| n.get());
    // The command as run, but for where it put its files and wrote its results.
    let mut shown = Vec::new();
    let mut given = args[1..].iter();
    while let Some(arg) = given.next() {
        if arg == "--dir" || arg == "--readme" {
            given.next();
        } else {
            shown.push(arg.as_str());
        }
    }
    let mut text = format!(
        "<!-- Written by examples/bench.rs (--readme): run it again rather than editing. -->\n\
         One run of `cargo run --release --example bench{}{}` on {cores} cores.\n",
        if shown.is_empty() { "" } else { " -- " },
        shown.join(" ")
    );
    // Each part's table is printed as soon as it is measured, and kept for the README.
    let mut part = |markdown: String| {
        let markdown = wrap_prose(&markdown);
        print!("\n{markdown}");
        text += "\n";
        text += &markdown;
    };
    let run = |section: &str| o.only.as_deref().is_none_or(|only| only == section);
    let mut report = Report::default();
    if run("throughput") {
        part(String::from(
            "**Throughput**: S streams × T s of silent 16 kHz mono in 20 ms buffers from \
             `audiotestsrc`, pushed as fast as possible, all pipelines at once, until every file is \
             written and finalised. The last column is each sink's wall time over the recorder's: \
             above 1, the recorder finished first.\n",
        ));
        for (streams, seconds) in [(o.streams, o.seconds), (1, o.seconds * 10)] {
            let t = throughput(&o, streams, seconds);
            part(t.markdown());
            report.throughput.push(t);
        }
    }
    if run("cost") {
        let c = streaming_cost(&o);
        part(format!(
            "**Streaming-thread cost**: thread CPU time per 20 ms buffer pushed through a \
             `gst_check::Harness`, {} alternating rounds of {} buffers.\n\n{}",
            c.rounds,
            thousands(c.buffers as u64),
            c.markdown()
        ));
        report.cost = Some(c);
    }
    if run("isolation") {
        let i = isolation(&o);
        part(format!(
            "**Isolation**: 20 recorders fed in real time while the writer is stalled for 2 s.\n\n{}",
            i.markdown()
        ));
        report.isolation = Some(i);
    }
    if run("scale") {
        report.scale = scale(&o);
        part(format!(
            "**Scale**: N recorders (and, separately, N fakesinks) fed 20 ms buffers in real time \
             for {} s from one thread, each N in a fresh process.\n\n{}",
            o.scale_seconds,
            scale_markdown(&report.scale)
        ));
    }
    if run("pairs") {
        let p = pair_analysis(&o);
        part(p.markdown());
        report.pairs = Some(p);
    }
    let mut retention_rows = Vec::new();
    if run("retention") {
        retention_rows = retention_scale(&o);
        part(format!(
            "**Retention**: N recorders in PRE/POST pairs writing {} ms segments, fed in real time \
             for {} s as in Scale, each run in a fresh process, {} runs without retention and {} \
             with it alternating, the least CPU of each kept; `retention-max-bytes` lets two \
             segments per recorder stay, so that every segment written after the first second \
             removes one. The last column is the CPU with retention over the CPU without, \
             measured in the same run.\n\n{}",
            RETENTION_SEGMENT_MS,
            o.scale_seconds.max(3),
            RETENTION_ROUNDS,
            RETENTION_ROUNDS,
            retention_markdown(&retention_rows)
        ));
    }
    let mut tee_rows = Vec::new();
    if run("tee") {
        tee_rows = tee_part(&o);
        part(format!(
            "**One tee**: a live 16 kHz `audiotestsrc` and one `tee` feeding N recorders in \
             PRE/POST pairs, every setting at its default (pair analysis on), or N fakesinks, all \
             on the source's one streaming thread; {TEE_SECONDS} s measured after \
             {TEE_WARM_UP_SECONDS} s of warming up, each run a fresh process, {TEE_ROUNDS} runs of \
             each kind alternating and the least CPU of each kept. CPU is the whole process's, \
             from `getrusage`, and the recorders' is split by thread from `/proc`. The **floor** \
             is N fakesinks plus one thread that writes the recorders' bytes the way the crash \
             promise asks and does nothing else: every 200 ms one `pwrite` of 6,400 bytes to each \
             of N files in one directory, and every 5 s a new file each, its 44-byte header \
             written, published with a hard link and its `.part` name removed. No recorder that \
             keeps the promise with the page cache can cost less than the floor.\n\n{}",
            tee_markdown(&tee_rows)
        ));
    }
    part(format!(
        "Against the targets:\n\n{}{}{}",
        report.verdicts(),
        retention_verdict(&retention_rows),
        tee_verdict(&tee_rows)
    ));
    if let Some(readme) = &o.readme {
        if let Err(e) = write_readme(readme, &text) {
            eprintln!("{e}");
            std::process::exit(1);
        }
        println!("\nwrote the results into {}", readme.display());
    }
}

/// Segment length of the retention part: short, so that a few seconds remove many.
const RETENTION_SEGMENT_MS: u64 = 500;
/// Runs without and with retention, alternating, of each N.
const RETENTION_ROUNDS: usize = 3;
/// CPU per recorder with retention, relative to without, at most this much.
const TARGET_RETENTION_CPU: f64 = 1.1;

/// In a child process: N recorders in PRE/POST pairs fed in real time, with retention `on` or
/// off; prints one line: CPU seconds, wall seconds, segments written and removed.
fn retention_child(on: bool, n: usize, seconds: u64, dir: &Path) {
    init();
    let segment_bytes = 44 + RATE * 2 * RETENTION_SEGMENT_MS / 1_000;
    let mut elements: Vec<(gst::Element, gst_check::Harness)> = (0..n)
        .map(|i| {
            let element = recorder(dir, &format!("retention{}", i / 2));
            element.set_property_from_str("tap", if i % 2 == 0 { "PRE" } else { "POST" });
            element.set_property("segment-duration", RETENTION_SEGMENT_MS * 1_000_000);
            // Its cost is another part's: only retention differs between the two runs.
            element.set_property("pair-analysis", false);
            if on {
                element.set_property("retention-max-bytes", 2 * n as u64 * segment_bytes);
            }
            let mut h = gst_check::Harness::with_element(&element, Some("sink"), None);
            h.set_src_caps_str(CAPS);
            h.play();
            (element, h)
        })
        .collect();
    let data = vec![1u8; BUFFER_SAMPLES * 2];
    let rounds = seconds * 50;
    let (cpu0, t0) = (cpu_time(), Instant::now());
    for round in 0..rounds {
        for (_, h) in elements.iter_mut() {
            let mut b = gst::Buffer::from_slice(data.clone());
            b.get_mut()
                .expect("writable")
                .set_pts(gst::ClockTime::from_mseconds(round * 20));
            h.push(b).expect("push");
        }
        let due = t0 + Duration::from_millis((round + 1) * 20);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
    }
    let (cpu, wall) = (cpu_time() - cpu0, t0.elapsed());
    let (mut written, mut removed) = (0, 0);
    for (element, h) in elements.iter_mut() {
        h.push_event(gst::event::Eos::new());
        let stats = element.property::<gst::Structure>("recording-stats");
        written += stats.get::<u64>("segments-written").unwrap_or(0);
        removed += stats.get::<u64>("retention-segments-removed").unwrap_or(0);
    }
    println!(
        "retention {} {} {written} {removed}",
        cpu.as_secs_f64(),
        wall.as_secs_f64()
    );
}

/// One N of the retention part: CPU per recorder (% of a core) without and with retention,
/// and what was written and removed with it.
struct RetentionRow {
    n: usize,
    cpu_off: f64,
    cpu_on: f64,
    written: f64,
    removed: f64,
}

fn retention_scale(o: &Options) -> Vec<RetentionRow> {
    let seconds = o.scale_seconds.max(3);
    let run = |on: &str, n: usize| run_part_child(o, "retention", on, n, seconds);
    o.scale
        .iter()
        .map(|&n| {
            let n = n - n % 2;
            // Off, on, off, on, …: the machine's drift falls on both alike, and the least
            // disturbed run of each (the least CPU) is kept, as other processes only add to it.
            let (mut off, mut on) = (Vec::new(), Vec::new());
            for _ in 0..RETENTION_ROUNDS {
                off.push(run("off", n));
                on.push(run("on", n));
            }
            let per_core = |runs: &[Vec<f64>]| {
                runs.iter()
                    .map(|m| m[0] / m[1] / n as f64 * 100.0)
                    .fold(f64::MAX, f64::min)
            };
            RetentionRow {
                n,
                cpu_off: per_core(&off),
                cpu_on: per_core(&on),
                written: on.iter().map(|m| m[2]).sum::<f64>() / on.len() as f64,
                removed: on.iter().map(|m| m[3]).sum::<f64>() / on.len() as f64,
            }
        })
        .collect()
}

fn retention_markdown(rows: &[RetentionRow]) -> String {
    let mut out = String::from(
        "| N | CPU per recorder, % of a core: without retention | with | segments written | \
         removed by retention | with ÷ without |\n|---|---|---|---|---|---|\n",
    );
    for r in rows {
        out += &format!(
            "| {} | {:.3} | {:.3} | {} | {} | {:.2}× |\n",
            thousands(r.n as u64),
            r.cpu_off,
            r.cpu_on,
            thousands(r.written as u64),
            thousands(r.removed as u64),
            r.cpu_on / r.cpu_off
        );
    }
    out
}

fn retention_verdict(rows: &[RetentionRow]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let each = rows
        .iter()
        .map(|r| {
            let ratio = r.cpu_on / r.cpu_off;
            format!(
                "{} at N = {} ({ratio:.2}×)",
                met(ratio <= TARGET_RETENTION_CPU),
                thousands(r.n as u64)
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    format!("- Retention: CPU per recorder ≤ {TARGET_RETENTION_CPU}× without it: {each}.\n")
}

/// Rounds of each kind in the tee part, alternating.
const TEE_ROUNDS: usize = 3;
/// Seconds each tee round's CPU is measured for, after warming up: every recorder's first
/// file made, and the bucket at 5 s closed in the window.
const TEE_SECONDS: u64 = 6;
const TEE_WARM_UP_SECONDS: u64 = 6;
/// The tee part's targets: CPU of N recorders over N fakesinks' at 2,000, at most this much.
const TARGET_TEE_VS_FAKESINK: f64 = 2.0;
/// How far the tee part's stream may fall behind the clock and still count as keeping up (ms).
const TEE_BEHIND_MS: f64 = 500.0;

/// In a child process: a live 16 kHz source, one `tee`, N recorders in PRE/POST pairs (or N
/// fakesinks) all on the source's one streaming thread. Prints one line: KB of memory and
/// threads added, CPU seconds (`getrusage`) and wall seconds measured, samples dropped, the
/// most the stream fell behind real time (ms), and pairs compared.
fn tee_child(kind: &str, n: usize, seconds: u64, dir: &Path) {
    init();
    let (rss0, threads0) = (rss_kb(), threads());
    let pipeline = gst::Pipeline::new();
    let src = gst::ElementFactory::make("audiotestsrc")
        .property("is-live", true)
        .property("samplesperbuffer", BUFFER_SAMPLES as i32)
        .property_from_str("wave", "white-noise")
        .property("volume", 0.3)
        .build()
        .expect("audiotestsrc");
    let caps = gst::ElementFactory::make("capsfilter")
        .property("caps", gst::Caps::from_str(CAPS).expect("caps"))
        .build()
        .expect("capsfilter");
    let tee = gst::ElementFactory::make("tee").build().expect("tee");
    pipeline.add_many([&src, &caps, &tee]).expect("add");
    gst::Element::link_many([&src, &caps, &tee]).expect("link");
    let sinks: Vec<gst::Element> = (0..n)
        .map(|i| {
            let sink = if kind == "recorder" {
                // Recorders 2k and 2k + 1 are the PRE and POST of one call's stage, with pair
                // analysis and every other setting at its default.
                gst::ElementFactory::make("segmentrecorder")
                    .property("base-dir", dir.to_str().expect("utf-8 path"))
                    .property("trace-id", format!("tee{}", i / 2))
                    .property("station-key", "bench")
                    .property_from_str("tap", ["PRE", "POST"][i % 2])
                    .build()
                    .expect("segmentrecorder")
            } else {
                gst::ElementFactory::make("fakesink")
                    .property("sync", false)
                    .build()
                    .expect("fakesink")
            };
            // One streaming thread and no queues: a sink that waited for preroll would hold
            // it from the others.
            sink.set_property("async", false);
            pipeline.add(&sink).expect("add");
            // Pad to pad: linking elements looks through every pad the tee has already.
            let src = tee.request_pad_simple("src_%u").expect("tee pad");
            src.link(&sink.static_pad("sink").expect("sink pad"))
                .expect("link");
            sink
        })
        .collect();
    // How far the stream falls behind the clock: a live source's buffers are due at their
    // running time, and a streaming thread that cannot keep up delivers them later and later.
    let lag_ns = Arc::new(AtomicU64::new(0));
    // The base time, once the pipeline plays: nothing in the probe may take a lock that a
    // state change holds.
    let base_ns = Arc::new(AtomicU64::new(u64::MAX));
    let (lag, base) = (lag_ns.clone(), base_ns.clone());
    let clock = gst::SystemClock::obtain();
    pipeline.use_clock(Some(&clock));
    tee.static_pad("sink").expect("tee sink").add_probe(
        gst::PadProbeType::BUFFER,
        move |_, info| {
            let base = base.load(Ordering::Relaxed);
            if let (Some(gst::PadProbeData::Buffer(b)), now) = (info.data.as_ref(), clock.time())
                && let Some(pts) = b.pts()
                && base != u64::MAX
            {
                let behind = now.nseconds().saturating_sub(base + pts.nseconds());
                lag.fetch_max(behind, Ordering::Relaxed);
            }
            gst::PadProbeReturn::Ok
        },
    );
    pipeline.set_state(gst::State::Playing).expect("playing");
    let (result, state, _) = pipeline.state(gst::ClockTime::from_seconds(60));
    assert!(
        result.is_ok() && state == gst::State::Playing,
        "not playing: {result:?}"
    );
    base_ns.store(
        pipeline.base_time().map_or(0, |t| t.nseconds()),
        Ordering::Relaxed,
    );
    let bus = pipeline.bus().expect("bus");
    let fail = |m: &gst::Message| {
        if let gst::MessageView::Error(e) = m.view() {
            panic!("{}: {}", e.error(), e.debug().unwrap_or_default());
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let floor = (kind == "floor").then(|| {
        let (stop, dir) = (stop.clone(), dir.to_owned());
        std::thread::Builder::new()
            .name("floor-writer".into())
            .spawn(move || write_floor(n, &dir, &stop))
            .expect("thread")
    });
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(TEE_WARM_UP_SECONDS) {
        if let Some(m) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) {
            fail(&m);
        }
    }
    lag_ns.store(0, Ordering::Relaxed);
    let (cpu0, threads0_cpu, t0) = (rusage_cpu(), cpu_by_thread_kind(), Instant::now());
    while t0.elapsed() < Duration::from_secs(seconds) {
        if let Some(m) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) {
            fail(&m);
        }
    }
    let (cpu, wall) = (rusage_cpu() - cpu0, t0.elapsed());
    let by_kind = cpu_by_thread_kind();
    let by_kind: Vec<f64> = (0..by_kind.len())
        .map(|i| by_kind[i] - threads0_cpu[i])
        .collect();
    let (rss, all_threads) = (rss_kb(), threads());
    stop.store(true, Ordering::Relaxed);
    if let Some(floor) = floor {
        floor.join().expect("floor writer");
    }
    let behind_ms = lag_ns.load(Ordering::Relaxed) as f64 / 1e6;
    pipeline.send_event(gst::event::Eos::new());
    bus.timed_pop_filtered(gst::ClockTime::from_seconds(120), &[gst::MessageType::Eos])
        .expect("EOS within two minutes");
    let (mut dropped, mut compared) = (0, 0);
    for sink in sinks.iter().filter(|_| kind == "recorder") {
        let stats = sink.property::<gst::Structure>("recording-stats");
        dropped += stats.get::<u64>("samples-dropped-overflow").unwrap_or(0)
            + stats.get::<u64>("samples-dropped-overlap").unwrap_or(0);
        compared += stats.get::<u64>("pairs-compared").unwrap_or(0);
    }
    pipeline.set_state(gst::State::Null).expect("null");
    println!(
        "tee {} {} {} {} {} {} {} {} {} {}",
        rss.saturating_sub(rss0),
        all_threads.saturating_sub(threads0),
        cpu.as_secs_f64(),
        wall.as_secs_f64(),
        dropped,
        behind_ms,
        compared,
        by_kind[0],
        by_kind[1],
        by_kind[2],
    );
}

/// CPU seconds so far of this process's threads by kind: the streaming thread, the writer
/// threads (the recorders' or the floor's), the comparing threads. From `/proc`, in the
/// kernel's clock ticks.
fn cpu_by_thread_kind() -> [f64; 3] {
    // SAFETY: `sysconf` only reads a constant.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let mut kinds = [0.0; 3];
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        // `pid (comm) state ...`: the name may hold spaces, the fields after it do not.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = &stat[open + 1..close];
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        // utime and stime are the 14th and 15th fields, the 12th and 13th after the name.
        let ticks: f64 =
            fields[11].parse::<f64>().unwrap_or(0.0) + fields[12].parse().unwrap_or(0.0);
        let kind = if name.starts_with("audiotestsrc") {
            0
        } else if name.starts_with("segrec-writer") || name == "floor-writer" {
            1
        } else if name.starts_with("segrec-pair") {
            2
        } else {
            continue;
        };
        kinds[kind] += ticks / tick;
    }
    kinds
}

/// The least any recorder can cost beyond a fakesink: the same bytes written the way the
/// crash promise asks, with nothing else. Each of `n` files gets the audio of the default
/// flush interval in one `pwrite` per interval, after a 44-byte header, and every bucket each
/// file is published with a hard link and its `.part` name removed, as the writer does; from
/// one thread, until `stop`.
fn write_floor(n: usize, dir: &Path, stop: &AtomicBool) {
    use std::os::unix::fs::FileExt;
    const FLUSH_MS: u64 = 200;
    const BUCKET_MS: u64 = 5_000;
    let chunk: Vec<u8> = (0..RATE * FLUSH_MS / 1_000 * 2).map(|i| i as u8).collect();
    std::fs::create_dir_all(dir).expect("floor directory");
    let epoch_ms = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_millis() as u64
    };
    let name = |i: usize, bucket: u64, ext: &str| dir.join(format!("f{i}_{bucket}.{ext}"));
    let mut open: Option<(u64, Vec<(std::fs::File, u64)>)> = None;
    while !stop.load(Ordering::Relaxed) {
        let now = epoch_ms();
        let bucket = now - now % BUCKET_MS;
        if open.as_ref().is_none_or(|(b, _)| *b != bucket) {
            if let Some((old, files)) = open.take() {
                for (i, (file, _)) in files.into_iter().enumerate() {
                    file.write_all_at(&[0; 44], 0).expect("header");
                    std::fs::hard_link(name(i, old, "wav.part"), name(i, old, "wav"))
                        .expect("publish");
                    std::fs::remove_file(name(i, old, "wav.part")).expect("unlink");
                }
            }
            let files = (0..n)
                .map(|i| {
                    let file = std::fs::File::options()
                        .read(true)
                        .write(true)
                        .create_new(true)
                        .open(name(i, bucket, "wav.part"))
                        .expect("create");
                    file.write_all_at(&[0; 44], 0).expect("header");
                    (file, 44)
                })
                .collect();
            open = Some((bucket, files));
        }
        if let Some((_, files)) = open.as_mut() {
            for (file, at) in files.iter_mut() {
                file.write_all_at(&chunk, *at).expect("append");
                *at += chunk.len() as u64;
            }
        }
        let next = (epoch_ms() / FLUSH_MS + 1) * FLUSH_MS;
        std::thread::sleep(Duration::from_millis(next.saturating_sub(epoch_ms())));
    }
}

/// CPU time of this process so far, user and system, from `getrusage`.
fn rusage_cpu() -> Duration {
    // SAFETY: `getrusage` only writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1_000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// One N of the tee part: the least of each kind's rounds.
struct TeeRow {
    n: usize,
    /// CPU seconds per wall second: recorders, fakesinks, fakesinks with the floor's writes.
    cpu_recorder: f64,
    cpu_fakesink: f64,
    cpu_floor: f64,
    /// Of the recorders' least run, CPU seconds per wall second of the streaming thread, the
    /// writer threads and the comparing threads.
    split: [f64; 3],
    kb_per_recorder: f64,
    dropped: f64,
    behind_ms: f64,
    compared: f64,
}

impl TeeRow {
    fn ratio(&self) -> f64 {
        self.cpu_recorder / self.cpu_fakesink
    }

    fn floor_ratio(&self) -> f64 {
        self.cpu_floor / self.cpu_fakesink
    }

    /// µs of CPU per recorder-second, all of the process's CPU counted.
    fn us_per_recorder_second(&self) -> f64 {
        self.cpu_recorder / self.n as f64 * 1e6
    }
}

fn tee_part(o: &Options) -> Vec<TeeRow> {
    o.tee
        .iter()
        .map(|&n| {
            let (mut rec, mut fake, mut floor) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..TEE_ROUNDS {
                rec.push(run_part_child(o, "tee", "recorder", n, TEE_SECONDS));
                fake.push(run_part_child(o, "tee", "fakesink", n, TEE_SECONDS));
                floor.push(run_part_child(o, "tee", "floor", n, TEE_SECONDS));
            }
            let least =
                |runs: &[Vec<f64>], i: usize| runs.iter().map(|r| r[i]).fold(f64::MAX, f64::min);
            let most = |runs: &[Vec<f64>], i: usize| runs.iter().map(|r| r[i]).fold(0.0, f64::max);
            let per_second = |r: &Vec<f64>| r[2] / r[3];
            let cheapest = |runs: &[Vec<f64>]| {
                runs.iter()
                    .min_by(|a, b| per_second(a).total_cmp(&per_second(b)))
                    .cloned()
                    .expect("rounds")
            };
            let best = cheapest(&rec);
            TeeRow {
                n,
                cpu_recorder: per_second(&best),
                cpu_fakesink: per_second(&cheapest(&fake)),
                cpu_floor: per_second(&cheapest(&floor)),
                split: [best[7] / best[3], best[8] / best[3], best[9] / best[3]],
                kb_per_recorder: (least(&rec, 0) - least(&fake, 0)) / n as f64,
                dropped: most(&rec, 4),
                behind_ms: most(&rec, 5),
                compared: least(&rec, 6),
            }
        })
        .collect()
}

fn tee_markdown(rows: &[TeeRow]) -> String {
    let mut out = String::from(
        "| N | CPU, % of a core: recorders (fakesinks; floor) | recorders ÷ fakesinks (floor ÷ \
         fakesinks) | recorders' CPU, % of a core: streaming, writers, comparing | µs of CPU per \
         recorder-second | KB per recorder beyond fakesink | most the stream fell behind, ms | \
         samples dropped | pairs compared |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        out += &format!(
            "| {} | {:.1} ({:.1}; {:.1}) | {:.2}× ({:.2}×) | {:.1}, {:.1}, {:.1} | {:.1} | {:.0} | \
             {:.0} | {} | {} |\n",
            thousands(r.n as u64),
            r.cpu_recorder * 100.0,
            r.cpu_fakesink * 100.0,
            r.cpu_floor * 100.0,
            r.ratio(),
            r.floor_ratio(),
            r.split[0] * 100.0,
            r.split[1] * 100.0,
            r.split[2] * 100.0,
            r.us_per_recorder_second(),
            r.kb_per_recorder,
            r.behind_ms,
            thousands(r.dropped as u64),
            thousands(r.compared as u64),
        );
    }
    out
}

fn tee_verdict(rows: &[TeeRow]) -> String {
    // The target is set at 2,000; a quick run judges its own N.
    let Some(row) = rows.iter().find(|r| r.n == 2_000).or(rows.first()) else {
        return String::new();
    };
    let n = thousands(row.n as u64);
    let mut out = format!(
        "- One tee, {n} recorders ≤ {TARGET_TEE_VS_FAKESINK}× the CPU of {n} fakesinks: {} \
         ({:.2}×, {:.1} µs per recorder-second; the floor alone is {:.2}×, the recorders \
         {:.2}× the floor); \
         ≤ {TARGET_KB_PER_RECORDER} KB per recorder beyond fakesink: {} ({:.0}); nothing \
         dropped: {}.\n",
        met(row.ratio() <= TARGET_TEE_VS_FAKESINK),
        row.ratio(),
        row.us_per_recorder_second(),
        row.floor_ratio(),
        row.cpu_recorder / row.cpu_floor,
        met(row.kb_per_recorder <= TARGET_KB_PER_RECORDER),
        row.kb_per_recorder,
        met(row.dropped == 0.0),
    );
    // Keeping up: a live stream that falls behind by more than a buffer's worth and a
    // scheduling hiccup has work it cannot do in real time.
    for r in rows {
        out += &format!(
            "- One tee, {} recorders kept up in real time (fell behind by ≤ {TEE_BEHIND_MS} ms, \
             nothing dropped): {} ({:.0} ms, {} samples dropped).\n",
            thousands(r.n as u64),
            met(r.behind_ms <= TEE_BEHIND_MS && r.dropped == 0.0),
            r.behind_ms,
            thousands(r.dropped as u64),
        );
    }
    out
}
