//! Measures what `fsync=true` costs: writes the same segments through the writer with and
//! without syncing, alternating rounds so both see the same disk and load, and prints the
//! time per segment of each and their ratio.
//!
//! ```text
//! cargo run --release --example fsync_cost -- [DIR] [SEGMENTS]
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gstsegmentrecorder::layout::Identity;
use gstsegmentrecorder::writer::{Config, Overflow, Recording, SegmentSpec, Step};

/// Writes `segments` 5-second 16 kHz segments and returns the time taken.
fn run(base: PathBuf, fsync: bool, segments: u64) -> Duration {
    let config = Config {
        base_dir: base,
        flush_interval: Duration::from_millis(200),
        fsync,
        retry_time: Duration::from_secs(10),
        voice_threshold_dbfs: -45.0,
        log: Default::default(),
    };
    let recording = Recording::new(config, 64 << 20, |_| {}).expect("writer threads");
    let identity = Arc::new(Identity::new("bench", "fsync", "PRE").expect("valid ids"));
    let chunk: Vec<u8> = (0..320i16)
        .flat_map(|i| (i * 97 % 2_000).to_le_bytes())
        .collect();
    let start = Instant::now();
    for k in 0..segments {
        let mut steps = vec![Step::Open(SegmentSpec {
            identity: identity.clone(),
            bucket_ms: k * 5_000,
            rate: 16_000,
            start_running_time_ns: None,
            start_utc_ns: None,
        })];
        recording.submit(&mut steps, &[], Overflow::Wait);
        for _ in 0..250 {
            let mut data = vec![Step::Data {
                offset: 0,
                len: 320,
            }];
            recording.submit(&mut data, &chunk, Overflow::Wait);
        }
        recording.submit(&mut vec![Step::Close], &[], Overflow::Wait);
    }
    let _ = recording.wait_idle(false);
    start.elapsed()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "target/fsync-bench".into()));
    let segments: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(200);
    let _ = std::fs::remove_dir_all(&dir);
    let (mut without, mut with) = (Duration::ZERO, Duration::ZERO);
    for round in 0..3 {
        without += run(dir.join(format!("plain-{round}")), false, segments);
        with += run(dir.join(format!("fsync-{round}")), true, segments);
    }
    let per = |d: Duration| d.as_secs_f64() * 1e3 / (3 * segments) as f64;
    println!(
        "{} segments of 5 s at 16 kHz, 3 rounds: {:.3} ms per segment without fsync, \
         {:.3} ms with; fsync costs {:.1}x",
        segments,
        per(without),
        per(with),
        with.as_secs_f64() / without.as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
