//! Recovers, offline, every `.part` file that a dead recording process left anywhere under a
//! base directory: each is repaired to the samples it holds and published under its segment's
//! name (a further file index if the name is taken). Files still being written by a live
//! process (locked) are left alone.
//!
//! ```text
//! segmentrecorder-recover BASE_DIR [--fsync]
//! ```

use std::path::Path;
use std::process::ExitCode;

use gstsegmentrecorder::writer::recover::recover_tree;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (base, fsync) = match args.as_slice() {
        [base] => (base, false),
        [base, flag] if flag == "--fsync" => (base, true),
        _ => {
            eprintln!("usage: segmentrecorder-recover BASE_DIR [--fsync]");
            return ExitCode::FAILURE;
        }
    };
    if !Path::new(base).is_dir() {
        eprintln!("segmentrecorder-recover: {base} is not a directory");
        return ExitCode::FAILURE;
    }
    let (mut recovered, mut failed) = (0, 0);
    for result in recover_tree(Path::new(base), fsync) {
        match result {
            Ok(r) => {
                recovered += 1;
                println!(
                    "recovered {} ({} samples at {} Hz)",
                    r.location.display(),
                    r.samples,
                    r.rate
                );
            }
            Err((part, e)) => {
                failed += 1;
                eprintln!("cannot recover {}: {e}", part.display());
            }
        }
    }
    println!("{recovered} recovered, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
