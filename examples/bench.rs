//! Benchmarks the recorder against the alternatives, all measured in the same run so that the
//! ratios mean something on a shared, noisy machine.
//!
//! ```text
//! cargo run --release --example bench -- [--streams S] [--seconds T] [--dir DIR] [--quick]
//!     [--only throughput|cost|isolation|scale]
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

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use gst::prelude::*;

const RATE: u64 = 16_000;
const BUFFER_SAMPLES: usize = 320;
const CAPS: &str = "audio/x-raw,format=S16LE,layout=interleaved,channels=1,rate=16000";

struct Options {
    streams: usize,
    seconds: u64,
    dir: PathBuf,
    scale: Vec<usize>,
    scale_seconds: u64,
    only: Option<String>,
}

fn options() -> Options {
    let mut o = Options {
        streams: 200,
        seconds: 60,
        dir: PathBuf::from("target/bench"),
        scale: vec![1, 100, 1_000, 2_000],
        scale_seconds: 3,
        only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--streams" => o.streams = value().parse().expect("a number of streams"),
            "--seconds" => o.seconds = value().parse().expect("a number of seconds"),
            "--dir" => o.dir = PathBuf::from(value()),
            "--only" => o.only = Some(value()),
            "--quick" => {
                o.streams = 20;
                o.seconds = 20;
                o.scale = vec![1, 100, 500];
                o.scale_seconds = 2;
            }
            other => panic!("unknown argument {other}"),
        }
    }
    o
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

fn throughput(o: &Options, streams: usize, seconds: u64) {
    let audio = (streams as u64 * seconds) as f64;
    let dir = o.dir.join(format!("throughput-{streams}x{seconds}"));
    let _ = std::fs::remove_dir_all(&dir);
    let d = |sub: &str| {
        let p = dir.join(sub);
        std::fs::create_dir_all(&p).expect("dir");
        p
    };
    let (rec, split, wav, plain) = (d("rec"), d("splitmux"), d("wavenc"), d("plain"));
    println!("\n## Throughput: {streams} streams × {seconds} s of 16 kHz mono, 20 ms buffers\n");
    println!("| sink | wall s | CPU s | audio s per wall s | recorder's speed relative to it |");
    println!("|---|---|---|---|---|");
    let mut rows = Vec::new();
    rows.push((
        "segmentrecorder",
        run_pipelines(streams, seconds, |i| {
            format!(
                "segmentrecorder base-dir={} trace-id=s{i} station-key=bench \
                 timestamp-mode=running-time",
                rec.display()
            )
        }),
    ));
    rows.push((
        "fakesink",
        run_pipelines(streams, seconds, |_| "fakesink sync=false".into()),
    ));
    rows.push((
        "splitmuxsink muxer-factory=wavenc max-size-time=5s",
        run_pipelines(streams, seconds, |i| {
            format!(
                "splitmuxsink muxer-factory=wavenc max-size-time=5000000000 location={}/s{i}_%05d.wav",
                split.display()
            )
        }),
    ));
    rows.push((
        "wavenc ! filesink (no splitting)",
        run_pipelines(streams, seconds, |i| {
            format!("wavenc ! filesink location={}/s{i}.wav", wav.display())
        }),
    ));
    rows.push((
        "plain loop: hound + .part + rename",
        plain_loop(&plain, streams, seconds),
    ));
    let recorder_wall = rows[0].1.0;
    for (name, (wall, cpu)) in &rows {
        println!(
            "| {name} | {wall:.2} | {cpu:.2} | {:.0} | {:.2}× |",
            audio / wall,
            wall / recorder_wall
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
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

fn streaming_cost(o: &Options) {
    let dir = o.dir.join("cost");
    let buffers = 20_000;
    let (mut rec, mut fake) = ((0.0, 0.0), (0.0, 0.0));
    // Alternate, three rounds each, so both see the same machine.
    for round in 0..3 {
        let fakesink = gst::ElementFactory::make("fakesink")
            .property("sync", false)
            .build()
            .expect("fakesink");
        let f = push_cost(&fakesink, buffers);
        let r = push_cost(&recorder(&dir, &format!("cost{round}")), buffers);
        fake = (fake.0 + f.0 / 3.0, fake.1 + f.1 / 3.0);
        rec = (rec.0 + r.0 / 3.0, rec.1 + r.1 / 3.0);
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!("\n## Streaming-thread cost per 20 ms buffer ({buffers} buffers × 3 rounds)\n");
    println!("| sink | thread CPU ns per buffer | wall ns per push |");
    println!("|---|---|---|");
    println!("| fakesink | {:.0} | {:.0} |", fake.0, fake.1);
    println!("| segmentrecorder | {:.0} | {:.0} |", rec.0, rec.1);
    println!(
        "\nrecorder / fakesink: {:.2}× in streaming-thread CPU, {:.2}× in wall time",
        rec.0 / fake.0,
        rec.1 / fake.1
    );
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn isolation(o: &Options) {
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
    println!(
        "\n## Isolation: 20 recorders fed in real time, writer stalled for 2 s ({} pushes)\n",
        latencies.len()
    );
    println!("| p50 µs | p99 µs | p99.9 µs | max µs | samples dropped |");
    println!("|---|---|---|---|---|");
    println!(
        "| {:.1} | {:.1} | {:.1} | {:.1} | {dropped} |",
        us(percentile(&latencies, 0.5)),
        us(percentile(&latencies, 0.99)),
        us(percentile(&latencies, 0.999)),
        us(*latencies.last().expect("pushes"))
    );
}

/// In a child process: N elements fed in real time; prints one line of measurements.
fn scale_child(kind: &str, n: usize, seconds: u64, dir: &Path) {
    init();
    let (rss0, threads0) = (rss_kb(), threads());
    let mut elements: Vec<(gst::Element, gst_check::Harness)> = (0..n)
        .map(|i| {
            let element = match kind {
                "recorder" => recorder(dir, &format!("scale{i}")),
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
    let data = Arc::new(vec![1u8; BUFFER_SAMPLES * 2]);
    let rounds = seconds * 50;
    let (cpu0, t0) = (cpu_time(), Instant::now());
    let mut late = 0;
    for round in 0..rounds {
        for (_, h) in elements.iter_mut() {
            let mut b = gst::Buffer::from_slice(data.as_ref().clone());
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
    let mut dropped = 0;
    for (element, h) in elements.iter_mut() {
        h.push_event(gst::event::Eos::new());
        if kind == "recorder" {
            let stats = element.property::<gst::Structure>("recording-stats");
            dropped += stats.get::<u64>("samples-dropped-overflow").unwrap_or(0)
                + stats.get::<u64>("samples-dropped-overlap").unwrap_or(0);
        }
    }
    println!(
        "scale {} {} {} {} {} {} {} {}",
        rss.saturating_sub(rss0),
        all_threads.saturating_sub(threads0),
        writers,
        cpu.as_secs_f64(),
        wall.as_secs_f64(),
        dropped,
        late,
        rounds
    );
}

fn scale(o: &Options) {
    println!(
        "\n## Scale: N elements fed 20 ms buffers in real time for {} s, each run in a fresh process\n",
        o.scale_seconds
    );
    println!(
        "| N | writer threads | threads added (recorder / fakesink) | KB per element beyond \
         fakesink | CPU % of a core per recorder (fakesink) | late rounds | samples dropped |"
    );
    println!("|---|---|---|---|---|---|---|");
    let exe = std::env::current_exe().expect("own path");
    let run = |kind: &str, n: usize| -> Vec<f64> {
        let dir = o.dir.join(format!("scale-{kind}-{n}"));
        let out = Command::new(&exe)
            .args([
                "--scale-child",
                kind,
                &n.to_string(),
                &o.scale_seconds.to_string(),
            ])
            .arg(&dir)
            .output()
            .expect("child");
        let _ = std::fs::remove_dir_all(&dir);
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("scale "))
            .unwrap_or_else(|| panic!("child failed: {}", String::from_utf8_lossy(&out.stderr)));
        line.split_whitespace()
            .map(|v| v.parse().expect("number"))
            .collect()
    };
    for &n in &o.scale {
        let rec = run("recorder", n);
        let fake = run("fakesink", n);
        let per_core = |m: &[f64]| m[3] / m[4] / n as f64 * 100.0;
        println!(
            "| {n} | {} | {} / {} | {:.1} | {:.3} ({:.3}) | {} of {} | {} |",
            rec[2],
            rec[1],
            fake[1],
            (rec[0] - fake[0]) / n as f64,
            per_core(&rec),
            per_core(&fake),
            rec[6],
            rec[7],
            rec[5]
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--scale-child") {
        let n = args[3].parse().expect("N");
        let seconds = args[4].parse().expect("seconds");
        scale_child(&args[2], n, seconds, Path::new(&args[5]));
        return;
    }
    let o = options();
    init();
    println!(
        "# segmentrecorder benchmark ({} cores)",
        thread::available_parallelism().map_or(0, |n| n.get())
    );
    let run = |section: &str| o.only.as_deref().is_none_or(|only| only == section);
    if run("throughput") {
        throughput(&o, o.streams, o.seconds);
        throughput(&o, 1, o.seconds * 10);
    }
    if run("cost") {
        streaming_cost(&o);
    }
    if run("isolation") {
        isolation(&o);
    }
    if run("scale") {
        scale(&o);
    }
}
