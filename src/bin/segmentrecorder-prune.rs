//! Applies retention, offline, to a base directory whose recorders are stopped (or from cron
//! beside running ones): the oldest buckets go, PRE and POST together, until the segments fit
//! the limits, by the very rules and code the recorders use. `--dry-run` lists what would go and
//! removes nothing.
//!
//! ```text
//! segmentrecorder-prune BASE_DIR [--max-bytes N] [--max-age SECONDS] [--min-free N]
//!     [--uploaded-only] [--dry-run]
//! ```

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use gstsegmentrecorder::retention::prune::pass;
use gstsegmentrecorder::retention::{Limits, Offline};

const USAGE: &str = "usage: segmentrecorder-prune BASE_DIR [--max-bytes N] [--max-age SECONDS] \
                     [--min-free N] [--uploaded-only] [--dry-run]\n\
                     At least one of --max-bytes, --max-age and --min-free (numbers, 0: off).";

/// What the command line asks for.
struct Args {
    base: String,
    limits: Limits,
    dry_run: bool,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let [base, options @ ..] = args else {
        return Err("BASE_DIR is missing".into());
    };
    if base.starts_with("--") {
        return Err(format!("BASE_DIR comes first, not {base}"));
    }
    let mut limits = Limits::default();
    let mut dry_run = false;
    let mut options = options.iter();
    while let Some(option) = options.next() {
        let mut number = || -> Result<u64, String> {
            let value = options
                .next()
                .ok_or_else(|| format!("{option} needs a number"))?;
            value.parse().map_err(|_| {
                format!("{option} takes a whole number of bytes or seconds, not '{value}'")
            })
        };
        match option.as_str() {
            "--max-bytes" => limits.max_bytes = number()?,
            "--max-age" => limits.max_age = Duration::from_secs(number()?),
            "--min-free" => limits.min_free = number()?,
            "--uploaded-only" => limits.keep_unuploaded = true,
            "--dry-run" => dry_run = true,
            other => return Err(format!("unknown option {other}")),
        }
    }
    if limits.is_off() {
        return Err("no limit given: nothing would ever be removed".into());
    }
    Ok(Args {
        base: base.clone(),
        limits,
        dry_run,
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse(&args) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("segmentrecorder-prune: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let base = Path::new(&args.base);
    if !base.is_dir() {
        eprintln!(
            "segmentrecorder-prune: {} is not a directory\n{USAGE}",
            base.display()
        );
        return ExitCode::from(2);
    }
    let (index, unreadable) = Offline::build(base);
    for (dir, e) in &unreadable {
        eprintln!("cannot read {}: {e}", dir.display());
    }
    let done = pass(base, &args.limits, &index, args.dry_run, SystemTime::now());
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removed"
    };
    for path in &done.removed {
        println!("{verb} {}", path.display());
    }
    for dir in &done.dirs {
        println!("{verb} directory {}", dir.display());
    }
    for (path, e) in &done.failed {
        eprintln!("cannot remove {}: {e}", path.display());
    }
    let oldest = done
        .oldest_kept
        .map_or_else(|| "none".to_owned(), |k| format!("{} ms", k.bucket_ms));
    println!(
        "{} segments ({} bytes) {}{}; oldest bucket kept: {oldest}",
        done.segments,
        done.bytes,
        if args.dry_run {
            "would be removed"
        } else {
            "removed"
        },
        if args.dry_run {
            " (directories left empty would go too)"
        } else {
            ""
        }
    );
    if let Some(unmet) = done.unmet {
        eprintln!(
            "segmentrecorder-prune: the limits are not met: {} bytes more should go, but {} \
             buckets that would go are protected (being written, waiting for their pair, or \
             not yet uploaded with --uploaded-only), and nothing else is left",
            unmet.excess, unmet.protected
        );
    }
    if done.failed.is_empty() && done.unmet.is_none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
