//! `segmentrecorder-view BASE_DIR [--listen ADDR:PORT]`: a read-only web page over a base
//! directory of segmentrecorder files. Its index lists the calls; a call's page shows every
//! station's PRE and POST on one UTC time axis, with waveforms, holes and silence, what the
//! stage did to each bucket (the pair analysis's figures and alarms), playback and downloads.
//! The page draws from a JSON API under `/api/` that other tools may use too.
//!
//! Nothing under the base directory is ever written, and nothing outside it is ever read: the
//! server reads only the files a walk of the base directory finds (no symbolic link followed),
//! checked to resolve to a place below it when read.

mod api;
mod audio;
mod cache;
mod figures;
mod http;
mod peaks;
mod tree;

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: segmentrecorder-view BASE_DIR [--listen ADDR:PORT]";

/// What `--help` prints after the usage.
const HELP: &str = "Serves a read-only web page over BASE_DIR, a segmentrecorder base directory.

  --listen ADDR:PORT  where to listen (default 127.0.0.1:8080; port 0: any free port)
  -h, --help          print this and exit";

/// Where the server listens unless told: this machine only.
const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

/// Requests whose answers are computed at once (more may be read or written meanwhile).
const WORKERS: usize = 4;

struct Args {
    base: PathBuf,
    listen: SocketAddr,
}

/// What the command line asks for.
enum Asked {
    Serve(Args),
    Help,
}

fn parse(args: &[String]) -> Result<Asked, String> {
    let (mut base, mut listen) = (None, DEFAULT_LISTEN.to_owned());
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => {
                listen = args
                    .next()
                    .ok_or(format!("--listen needs ADDR:PORT\n{USAGE}"))?
                    .clone();
            }
            "--help" | "-h" => return Ok(Asked::Help),
            _ if arg.starts_with("--") => return Err(format!("unknown option {arg}\n{USAGE}")),
            _ if base.is_none() => base = Some(PathBuf::from(arg)),
            _ => return Err(format!("one BASE_DIR only\n{USAGE}")),
        }
    }
    let base = base.ok_or(USAGE)?;
    let listen = listen.parse().map_err(|_| {
        format!("--listen {listen}: not an ADDR:PORT to listen on, such as 127.0.0.1:8080")
    })?;
    let base = base
        .canonicalize()
        .map_err(|e| format!("cannot open BASE_DIR {}: {e}", base.display()))?;
    if !base.is_dir() {
        return Err(format!("BASE_DIR {} is not a directory", base.display()));
    }
    Ok(Asked::Serve(Args { base, listen }))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse(&args) {
        Ok(Asked::Serve(args)) => args,
        Ok(Asked::Help) => {
            println!("{USAGE}\n\n{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("segmentrecorder-view: {e}");
            return ExitCode::FAILURE;
        }
    };
    let listener = match TcpListener::bind(args.listen) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!(
                "segmentrecorder-view: cannot listen on {}: {e}",
                args.listen
            );
            return ExitCode::FAILURE;
        }
    };
    // The address asked for, with the port the system chose for port 0.
    let addr = listener.local_addr().unwrap_or(args.listen);
    println!(
        "segmentrecorder-view: {} at http://{addr}/",
        args.base.display()
    );
    let viewer = match api::Viewer::new(args.base) {
        Ok(viewer) => viewer,
        Err(e) => {
            eprintln!("segmentrecorder-view: cannot start a thread: {e}");
            return ExitCode::FAILURE;
        }
    };
    let viewer = std::sync::Arc::new(viewer);
    let quick = viewer.clone();
    http::serve(
        listener,
        WORKERS,
        Box::new(move |request| quick.serve_at_once(request)),
        Box::new(move |request| viewer.serve(request)),
    )
}
