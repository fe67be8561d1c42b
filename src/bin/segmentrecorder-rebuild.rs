//! Rebuilds one continuous WAV file of a tap from its segments, filling buckets that have no
//! file with silence, to listen to a whole call.
//!
//! ```text
//! segmentrecorder-rebuild BASE_DIR TRACE_ID STATION_KEY PRE|POST OUTPUT.wav [SEGMENT_DURATION_MS]
//! ```

use std::path::Path;
use std::process::ExitCode;

use gstsegmentrecorder::layout::{Identity, Tap};
use gstsegmentrecorder::rebuild::{rebuild, write_wav};

const USAGE: &str = "usage: segmentrecorder-rebuild BASE_DIR TRACE_ID STATION_KEY PRE|POST \
                     OUTPUT.wav [SEGMENT_DURATION_MS]";

fn run(args: &[String]) -> Result<String, String> {
    let [base, trace, station, tap, output, rest @ ..] = args else {
        return Err(USAGE.into());
    };
    let tap = Tap::try_from(tap.to_ascii_uppercase().as_str())
        .map_err(|_| format!("the tap is PRE or POST, not '{tap}'\n{USAGE}"))?;
    let duration_ns = match rest {
        [] => None,
        [ms] => Some(
            ms.parse::<u64>()
                .ok()
                .filter(|&ms| ms > 0)
                .ok_or_else(|| format!("'{ms}' is not a segment duration in ms\n{USAGE}"))?
                * 1_000_000,
        ),
        _ => return Err(USAGE.into()),
    };
    let identity =
        Identity::new(trace, station, tap).map_err(|(name, e)| format!("{name}: {e}"))?;
    let rebuilt = rebuild(Path::new(base), &identity, duration_ns).map_err(|e| e.to_string())?;
    write_wav(&rebuilt, Path::new(output)).map_err(|e| format!("{output}: {e}"))?;
    Ok(format!(
        "{output}: {} samples at {} Hz ({:.1} s) from bucket {} ms, {} buckets of which {} \
         had no file and are silence",
        rebuilt.samples.len(),
        rebuilt.rate,
        rebuilt.samples.len() as f64 / f64::from(rebuilt.rate),
        rebuilt.first_bucket_ms,
        rebuilt.buckets,
        rebuilt.missing
    ))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("segmentrecorder-rebuild: {e}");
            ExitCode::FAILURE
        }
    }
}
