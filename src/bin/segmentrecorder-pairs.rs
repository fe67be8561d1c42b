//! Compares, for every bucket under a base directory, the PRE and POST segments of each
//! processing stage: how much the stage delays, how alike its output is to its input, its gain,
//! both sides' levels and voiced ratios, and whether it clips. A table for people, or with
//! `--json` one JSON object per line and pair.
//!
//! ```text
//! segmentrecorder-pairs BASE_DIR [TRACE_ID] [--json] [--max-delay-ms N]
//! ```
//!
//! A pair is a `PRE` and a `POST` file of the same date directory, trace, station, bucket and
//! file index. Identifiers are shown as the recorder was given them; a long identifier, whose
//! directory name keeps only its beginning and a digest, is shown by that name. A file that
//! cannot be read, or a pair whose sides have different rates, is named on stderr and the
//! others are still compared; the exit status then says that something failed.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use gstsegmentrecorder::layout::{identifier_component, unescape_component};
use gstsegmentrecorder::pair::{
    Alarm, Alignment, Analyzer, DEFAULT_MAX_DELAY_MS, Figures, StageWatch,
};
use gstsegmentrecorder::pair_walk::{Pairs, compare_files, find_pairs};

const USAGE: &str = "usage: segmentrecorder-pairs BASE_DIR [TRACE_ID] [--json] [--max-delay-ms N]";

/// What the command line asks for.
struct Args {
    base: PathBuf,
    /// The directory name of the one trace to compare, if any.
    trace_dir: Option<String>,
    json: bool,
    max_delay_ms: u32,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let (mut positional, mut json, mut max_delay_ms) = (Vec::new(), false, DEFAULT_MAX_DELAY_MS);
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--json" => json = true,
            "--max-delay-ms" => {
                let ms = args.next().ok_or(USAGE)?;
                max_delay_ms = ms
                    .parse()
                    .map_err(|_| format!("'{ms}' is not a delay in ms\n{USAGE}"))?;
            }
            "--help" | "-h" => return Err(USAGE.into()),
            _ if arg.starts_with("--") => return Err(format!("unknown option {arg}\n{USAGE}")),
            _ => positional.push(arg),
        }
    }
    let (base, trace) = match positional.as_slice() {
        [base] => (base, None),
        [base, trace] => (base, Some(trace)),
        _ => return Err(USAGE.into()),
    };
    let trace_dir = trace
        .map(|trace| identifier_component(trace).map_err(|e| format!("TRACE_ID: {e}")))
        .transpose()?;
    Ok(Args {
        base: PathBuf::from(base),
        trace_dir,
        json,
        max_delay_ms,
    })
}

/// The pairs' files found under the base directory (a side may be missing), and how many
/// directories below it could not be read (each named on stderr); an error if the base
/// directory itself cannot be read.
fn find(args: &Args) -> Result<(Pairs, usize), String> {
    // A mistyped base directory is an error, not an empty recording.
    match std::fs::metadata(&args.base) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(format!("{} is not a directory", args.base.display())),
        Err(e) => return Err(format!("cannot read {}: {e}", args.base.display())),
    }
    let found = find_pairs(&args.base, args.trace_dir.as_deref())
        .map_err(|e| format!("cannot read {}: {e}", args.base.display()))?;
    for (dir, e) in &found.unreadable {
        eprintln!("segmentrecorder-pairs: cannot read {}: {e}", dir.display());
    }
    Ok((found.pairs, found.unreadable.len()))
}

/// A compared pair, ready to print.
struct Row {
    trace_id: String,
    station_key: String,
    bucket_ms: u64,
    file_index: u32,
    pre: PathBuf,
    post: PathBuf,
    figures: Figures,
    /// The alarms whose episode this pair begins, as the recorder would have raised them.
    alarms: Vec<Alarm>,
}

/// `value` as a JSON string.
fn json_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `value` as a JSON number (the figures are always finite; `null` if one ever is not).
fn json_number(value: f64) -> String {
    if value.is_finite() {
        format!("{value}")
    } else {
        "null".into()
    }
}

fn json_line(row: &Row) -> String {
    let f = &row.figures;
    let fields = [
        ("trace-id", json_string(&row.trace_id)),
        ("station-key", json_string(&row.station_key)),
        ("bucket-ts-ms", row.bucket_ms.to_string()),
        ("file-index", row.file_index.to_string()),
        ("pre-location", json_string(&row.pre.to_string_lossy())),
        ("post-location", json_string(&row.post.to_string_lossy())),
        ("alignment", json_string(f.alignment.as_str())),
        ("delay-ms", json_number(f.delay_ms)),
        ("correlation", json_number(f.correlation)),
        ("gain-db", json_number(f.gain_db)),
        ("pre-rms-dbfs", json_number(f.pre_rms_dbfs)),
        ("post-rms-dbfs", json_number(f.post_rms_dbfs)),
        ("pre-voiced-ratio", json_number(f.pre_voiced_ratio)),
        ("post-voiced-ratio", json_number(f.post_voiced_ratio)),
        ("pre-clipped-samples", f.pre_clipped_samples.to_string()),
        ("post-clipped-samples", f.post_clipped_samples.to_string()),
        ("alarms", json_alarms(&row.alarms)),
    ];
    let body: Vec<String> = fields
        .iter()
        .map(|(name, value)| format!("\"{name}\":{value}"))
        .collect();
    format!("{{{}}}", body.join(","))
}

/// `alarms` as a JSON array of their names.
fn json_alarms(alarms: &[Alarm]) -> String {
    let names: Vec<String> = alarms.iter().map(|a| json_string(a.as_str())).collect();
    format!("[{}]", names.join(","))
}

/// The rows as a table with aligned columns: text to the left, figures to the right.
fn table(rows: &[Row]) -> String {
    const HEADER: [&str; 13] = [
        "trace-id",
        "station-key",
        "bucket-ts-ms",
        "file",
        "delay-ms",
        "corr",
        "gain-dB",
        "PRE-dBFS",
        "POST-dBFS",
        "PRE-voiced",
        "POST-voiced",
        "POST-clipped",
        "note",
    ];
    const TEXT: [bool; 13] = [
        true, true, false, false, false, false, false, false, false, false, false, false, true,
    ];
    let mut cells: Vec<Vec<String>> = vec![HEADER.iter().map(|h| h.to_string()).collect()];
    for row in rows {
        let f = &row.figures;
        let mut notes: Vec<&str> = row.alarms.iter().map(Alarm::as_str).collect();
        if f.alignment != Alignment::Measured {
            notes.insert(0, f.alignment.as_str());
        }
        let note = notes.join(",");
        cells.push(vec![
            printable(&row.trace_id),
            printable(&row.station_key),
            row.bucket_ms.to_string(),
            row.file_index.to_string(),
            format!("{:.3}", f.delay_ms),
            format!("{:.3}", f.correlation),
            format!("{:.2}", f.gain_db),
            format!("{:.1}", f.pre_rms_dbfs),
            format!("{:.1}", f.post_rms_dbfs),
            format!("{:.2}", f.pre_voiced_ratio),
            format!("{:.2}", f.post_voiced_ratio),
            f.post_clipped_samples.to_string(),
            note,
        ]);
    }
    let widths: Vec<usize> = (0..HEADER.len())
        .map(|i| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in &cells {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .zip(TEXT)
            .map(|((cell, &width), text)| {
                if text {
                    format!("{cell:<width$}")
                } else {
                    format!("{cell:>width$}")
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `value` with its control characters escaped, so that a table row stays one line.
fn printable(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The identifier a directory name stands for, or the name itself for a long identifier's.
fn shown(dir_name: &str) -> String {
    unescape_component(dir_name).unwrap_or_else(|| dir_name.to_owned())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (args, (found, unreadable)) = match parse(&args).and_then(|a| Ok((find(&a)?, a))) {
        Ok((found, args)) => (args, found),
        Err(e) => {
            eprintln!("segmentrecorder-pairs: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut analyzer = Analyzer::new();
    // Pairs come in bucket order within each stage (date directories sort by date), so each
    // stage's alarms begin their episodes where the recorder's would.
    let mut stages: HashMap<(String, String), StageWatch> = HashMap::new();
    let (mut rows, mut failed, mut unpaired) = (Vec::new(), 0, 0);
    for ((_, trace, station, bucket_ms, file_index), sides) in found {
        let [Some(pre), Some(post)] = sides else {
            unpaired += 1;
            continue;
        };
        match compare_files(&mut analyzer, &pre, &post, args.max_delay_ms) {
            Ok(figures) => {
                let alarms = stages
                    .entry((trace.clone(), station.clone()))
                    .or_default()
                    .observe(&figures);
                let row = Row {
                    trace_id: shown(&trace),
                    station_key: shown(&station),
                    bucket_ms,
                    file_index,
                    pre,
                    post,
                    figures,
                    alarms,
                };
                if args.json {
                    // Stop quietly when the reader has gone (`| head`).
                    if writeln!(io::stdout(), "{}", json_line(&row)).is_err() {
                        return ExitCode::FAILURE;
                    }
                } else {
                    rows.push(row);
                }
            }
            Err(e) => {
                eprintln!("segmentrecorder-pairs: {e}");
                failed += 1;
            }
        }
    }
    if !args.json {
        let summary = format!(
            "{} pairs compared, {failed} failed, {unpaired} files without the other tap",
            rows.len()
        );
        if writeln!(io::stdout(), "{}{summary}", table(&rows)).is_err() {
            return ExitCode::FAILURE;
        }
    }
    if failed > 0 || unreadable > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
