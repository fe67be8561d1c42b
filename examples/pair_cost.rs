//! Measures what comparing one PRE/POST pair costs: 16 kHz, 5-second buckets, ±500 ms searched,
//! in CPU time of the measuring thread per pair, and as ratios against two baselines measured
//! in the same run on the same samples: the writer's level computation of both sides, and
//! reading and decoding both sides' WAV files. Rounds alternate so that all three see the same
//! load; each figure is the median of the rounds.
//!
//! ```text
//! cargo run --release --example pair_cost -- [PAIRS_PER_ROUND] [ROUNDS]
//! ```

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gstsegmentrecorder::pair::speech::{quantise, speech_like};
use gstsegmentrecorder::pair::{Analyzer, Config};
use gstsegmentrecorder::writer::levels::Levels;

const RATE: u32 = 16_000;
const LEN: usize = 5 * RATE as usize;
const DELAY: usize = 120 * RATE as usize / 1_000;

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

/// CPU seconds per pair of `work` done on every pair, `per_round` pairs in all.
fn per_pair<T>(pairs: &[T], per_round: usize, mut work: impl FnMut(&T)) -> f64 {
    let start = thread_cpu_time();
    for pair in pairs.iter().cycle().take(per_round) {
        work(pair);
    }
    (thread_cpu_time() - start).as_secs_f64() / per_round as f64
}

fn write_wav(path: &Path, samples: &[i16]) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut wav = hound::WavWriter::create(path, spec).expect("writable temporary directory");
    for &s in samples {
        wav.write_sample(s).expect("writable temporary directory");
    }
    wav.finalize().expect("writable temporary directory");
}

fn read_wav(path: &Path) -> Vec<i16> {
    let mut reader = hound::WavReader::open(path).expect("the file just written");
    reader
        .samples::<i16>()
        .collect::<Result<_, _>>()
        .expect("the file just written")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let per_round: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(200);
    let rounds: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(5);

    // Eight different utterances, POST 120 ms later and 3 dB down.
    let pairs: Vec<(Vec<i16>, Vec<i16>)> = (0..8)
        .map(|seed| {
            let source = speech_like(RATE, LEN + DELAY, seed);
            let pre = quantise(source[DELAY..].iter().copied());
            let post = quantise(source[..LEN].iter().map(|v| v * 0.708));
            (pre, post)
        })
        .collect();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let files: Vec<(PathBuf, PathBuf)> = pairs
        .iter()
        .enumerate()
        .map(|(i, (pre, post))| {
            let paths = (
                dir.path().join(format!("pre-{i}.wav")),
                dir.path().join(format!("post-{i}.wav")),
            );
            write_wav(&paths.0, pre);
            write_wav(&paths.1, post);
            paths
        })
        .collect();

    let config = Config::new(RATE);
    let mut analyzer = Analyzer::new();
    for (pre, post) in &pairs {
        let figures = analyzer.analyze(pre, post, &config);
        assert_eq!(figures.delay, DELAY as i64, "{figures:?}");
    }

    let (mut analysis, mut levels, mut reading) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        analysis.push(per_pair(&pairs, per_round, |(pre, post)| {
            black_box(analyzer.analyze(pre, post, &config));
        }));
        levels.push(per_pair(&pairs, per_round, |(pre, post)| {
            for side in [pre, post] {
                let mut l = Levels::new(RATE, config.voice_threshold_dbfs);
                l.add(side);
                black_box(l.measured());
            }
        }));
        reading.push(per_pair(&files, per_round, |(pre, post)| {
            black_box((read_wav(pre), read_wav(post)));
        }));
    }
    let fresh = per_pair(&pairs, per_round.div_ceil(10), |(pre, post)| {
        black_box(gstsegmentrecorder::pair::analyze(pre, post, &config));
    });
    let (analysis, levels, reading) = (median(analysis), median(levels), median(reading));
    let ms = |s: f64| s * 1e3;
    println!(
        "pair analysis, {RATE} Hz, 5 s buckets, ±500 ms searched, {rounds} rounds of {per_round} pairs"
    );
    println!("| per pair | CPU ms | analysis ÷ it |");
    println!("|---|---|---|");
    println!(
        "| analysis (one Analyzer kept) | {:.3} | 1.00× |",
        ms(analysis)
    );
    println!(
        "| writer's levels of both sides | {:.3} | {:.2}× |",
        ms(levels),
        analysis / levels
    );
    println!(
        "| reading and decoding both WAVs | {:.3} | {:.2}× |",
        ms(reading),
        analysis / reading
    );
    println!(
        "| analysis with a new Analyzer each time (plans made anew) | {:.3} | {:.2}× |",
        ms(fresh),
        analysis / fresh
    );
    println!(
        "target ≤ 1 ms per pair: {}",
        if analysis <= 1e-3 { "met" } else { "MISSED" }
    );
}
