//! Uploads, offline, every segment under a base directory that was never confirmed uploaded
//! (after an outage, a crash, or for recordings made without uploads), with the same keys,
//! checks and marks as the element. Credentials come from `AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`.
//!
//! ```text
//! segmentrecorder-upload BASE_DIR s3://bucket/prefix [--endpoint URL] [--region REGION]
//!     [--keep-local] [--workers N] [--retries N]
//! ```

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use gstsegmentrecorder::uploader::{
    Credentials, Destination, Outcome, UploadConfig, UploadReport, Uploads,
};

const USAGE: &str = "usage: segmentrecorder-upload BASE_DIR s3://bucket/prefix [--endpoint URL] \
                     [--region REGION] [--keep-local] [--workers N] [--retries N]";

fn run(args: &[String]) -> Result<(u64, u64), String> {
    let [base, location, options @ ..] = args else {
        return Err(USAGE.into());
    };
    let (mut endpoint, mut region, mut keep_local, mut workers, mut retries) =
        (None, "us-east-1".to_owned(), false, 4usize, 5u32);
    let mut options = options.iter();
    while let Some(option) = options.next() {
        let mut value = || {
            options
                .next()
                .ok_or_else(|| format!("{option} needs a value"))
        };
        match option.as_str() {
            "--endpoint" => endpoint = Some(value()?.clone()),
            "--region" => region = value()?.clone(),
            "--keep-local" => keep_local = true,
            "--workers" => workers = value()?.parse().map_err(|_| "--workers takes a number")?,
            "--retries" => retries = value()?.parse().map_err(|_| "--retries takes a number")?,
            other => return Err(format!("unknown option {other}\n{USAGE}")),
        }
    }
    let base = Path::new(base);
    if !base.is_dir() {
        return Err(format!("{} is not a directory", base.display()));
    }
    let destination = Destination::new(
        location,
        endpoint.as_deref(),
        &region,
        Credentials::from_env(),
    )?;
    let (done, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (d, f) = (done.clone(), failed.clone());
    let uploads = Uploads::new(
        UploadConfig {
            destination: Arc::new(destination),
            keep_local,
            retries,
            workers,
            log: Default::default(),
        },
        move |report: UploadReport| match &report.outcome {
            Outcome::Uploaded { local_error } => {
                d.fetch_add(1, Ordering::Relaxed);
                println!("uploaded {} as {}", report.location.display(), report.key);
                if let Some(error) = local_error {
                    eprintln!("{}: uploaded, but {error}", report.location.display());
                }
            }
            Outcome::Failed(failure) => {
                f.fetch_add(1, Ordering::Relaxed);
                eprintln!("cannot upload {}: {failure}", report.location.display());
            }
            Outcome::Refused { error, first } => {
                f.fetch_add(1, Ordering::Relaxed);
                if *first {
                    eprintln!("uploads refused: {error}");
                }
            }
        },
    )
    .map_err(|e| format!("cannot start the upload threads: {e}"))?;
    uploads.scan_backlog(base.to_owned());
    uploads.wait_idle();
    let stats = uploads.stats();
    Ok((
        done.load(Ordering::Relaxed),
        stats.failed.max(failed.load(Ordering::Relaxed)),
    ))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok((done, 0)) => {
            println!("{done} uploaded");
            ExitCode::SUCCESS
        }
        Ok((done, failed)) => {
            eprintln!("{done} uploaded, {failed} not: they stay on disk");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("segmentrecorder-upload: {e}");
            ExitCode::FAILURE
        }
    }
}
