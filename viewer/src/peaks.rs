//! What a page draws of a segment file, computed once per file and cached: its waveform as the
//! lowest and highest sample of every 10 ms, its level, and its runs of digital silence.
//!
//! A segment file holds samples and nothing else: the recorder writes padding, holes inside a
//! bucket, GAP events and audio dropped on a full queue as samples of value 0. So the runs of
//! exact zeros of at least 10 ms are what the files tell of audio that was not there; a stream
//! that is itself digital silence looks the same, and the page says so.

use std::path::Path;
use std::sync::Arc;

use gstsegmentrecorder::rebuild::decode_segment;

use crate::cache::Bounded;
use crate::tree::{Segment, below, read_inside};

/// The span of one cell of the cached waveform, in ms.
pub const CELL_MS: u64 = 10;

/// Peak level under which a segment is called silent, as the recorder's `silence-threshold`
/// default.
pub const SILENCE_DBFS: f64 = -60.0;

/// Level of digital silence, as the recorder reports it.
const FLOOR_DBFS: f64 = -120.0;

/// Bytes the cached waveforms may take together.
const BUDGET_BYTES: u64 = 64 << 20;

/// What is kept of one segment file.
#[derive(Debug, Clone, PartialEq)]
pub struct FilePeaks {
    /// Samples per second.
    pub rate: u32,
    /// Samples in the file.
    pub samples: u64,
    /// Lowest and highest sample of each 10 ms cell, from the file's start.
    pub cells: Vec<(i16, i16)>,
    /// Peak and RMS level, dBFS.
    pub peak_dbfs: f64,
    pub rms_dbfs: f64,
    /// Runs of exact zeros of at least one cell, in ms from the file's start.
    pub zero_runs_ms: Vec<(f64, f64)>,
}

/// A segment's waveform, or why it could not be read.
pub type Peaks = Result<FilePeaks, String>;

/// The waveforms of the files read so far.
pub struct PeaksCache {
    cache: Bounded<Segment, Peaks>,
}

impl PeaksCache {
    pub fn new() -> Self {
        PeaksCache {
            cache: Bounded::new(BUDGET_BYTES),
        }
    }

    /// Reads the waveforms of `segments` not cached yet, on as many threads as there are
    /// processors: the first look at a long call reads every one of its files.
    pub fn warm<'a>(&self, base: &Path, segments: impl Iterator<Item = &'a Segment>) {
        let missing: Vec<&Segment> = segments.filter(|s| self.cache.get(s).is_none()).collect();
        let threads = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .min(8);
        if missing.len() < 2 * threads {
            return;
        }
        let chunk = missing.len().div_ceil(threads);
        std::thread::scope(|scope| {
            for part in missing.chunks(chunk) {
                scope.spawn(move || {
                    for segment in part {
                        self.get(base, segment);
                    }
                });
            }
        });
    }

    /// The waveform of `segment` (found under the canonical `base`), read now if not cached.
    /// A file's name, size and modification time are its key: a published segment never
    /// changes, and one replaced is read again.
    pub fn get(&self, base: &Path, segment: &Segment) -> Arc<Peaks> {
        if let Some(peaks) = self.cache.get(segment) {
            return peaks;
        }
        let peaks = read_inside(base, &segment.path)
            .map_err(|e| format!("{}: {e}", segment.path.display()))
            .and_then(|bytes| {
                decode_segment(&segment.path, &bytes)
                    .map(|(samples, rate)| peaks_of(&samples, rate))
                    .map_err(|e| e.to_string())
            })
            .map_err(|e| below(base, &e));
        let peaks = Arc::new(peaks);
        // A file gone or unreadable may be back at the next look: only what was read is kept.
        if let Ok(p) = peaks.as_ref() {
            let cost = 4 * p.cells.len() as u64 + 16 * p.zero_runs_ms.len() as u64 + 128;
            self.cache.insert(segment.clone(), peaks.clone(), cost);
        }
        peaks
    }
}

fn dbfs(value: f64) -> f64 {
    if value <= 0.0 {
        FLOOR_DBFS
    } else {
        (20.0 * (value / 32_768.0).log10()).max(FLOOR_DBFS)
    }
}

/// The waveform of `samples` at `rate`, in one pass over them.
pub fn peaks_of(samples: &[i16], rate: u32) -> FilePeaks {
    let rate64 = u64::from(rate.max(1));
    let cell_end = |k: u64| ((k * rate64 * CELL_MS / 1_000) as usize).min(samples.len());
    let n_cells = (samples.len() as u64 * 1_000).div_ceil(rate64 * CELL_MS);
    let min_run = (rate64 * CELL_MS / 1_000).max(1) as usize;
    let ms = |i: usize| i as f64 * 1_000.0 / rate64 as f64;
    let mut cells = Vec::with_capacity(n_cells as usize);
    let (mut peak, mut squares) = (0i32, 0u64);
    let mut zero_runs_ms = Vec::new();
    // Where the run of zeros going on began, if one is.
    let mut zeros_from: Option<usize> = None;
    for k in 0..n_cells {
        let (from, to) = (cell_end(k), cell_end(k + 1));
        let (mut lo, mut hi) = (i16::MAX, i16::MIN);
        for (i, &s) in samples[from..to].iter().enumerate() {
            lo = lo.min(s);
            hi = hi.max(s);
            let v = i32::from(s);
            peak = peak.max(v.abs());
            squares += (v * v) as u64;
            match (s == 0, zeros_from) {
                (true, None) => zeros_from = Some(from + i),
                (false, Some(z)) => {
                    if from + i - z >= min_run {
                        zero_runs_ms.push((ms(z), ms(from + i)));
                    }
                    zeros_from = None;
                }
                _ => {}
            }
        }
        cells.push(if from < to { (lo, hi) } else { (0, 0) });
    }
    if let Some(z) = zeros_from
        && samples.len() - z >= min_run
    {
        zero_runs_ms.push((ms(z), ms(samples.len())));
    }
    let rms = (squares as f64 / samples.len().max(1) as f64).sqrt();
    FilePeaks {
        rate,
        samples: samples.len() as u64,
        cells,
        peak_dbfs: dbfs(f64::from(peak)),
        rms_dbfs: dbfs(rms),
        zero_runs_ms,
    }
}

/// Adds the cells of a file whose first cell starts at `start_ms` to the columns `lo` and `hi`
/// (the lowest and highest sample so far, `i16::MAX` and `i16::MIN` before any) of the time
/// range `from_ms..to_ms`, which they split evenly: column `i` covers
/// `[from + i·w, from + (i+1)·w)` with `w = (to - from) / columns`, and takes the extremes of
/// every cell that overlaps it, none other. A column as wide as a cell and on its start takes
/// that cell alone; a wider one, the cells starting in it and the one straddling its left
/// edge; a narrower one still shows the cell it lies in. Integer arithmetic: no rounding
/// moves a cell into its neighbour's column.
pub fn spread(
    cells: &[(i16, i16)],
    start_ms: u64,
    (from_ms, to_ms): (u64, u64),
    lo: &mut [i16],
    hi: &mut [i16],
) {
    let columns = lo.len().min(hi.len()) as u128;
    let span = u128::from(to_ms.saturating_sub(from_ms));
    if columns == 0 || span == 0 {
        return;
    }
    for (k, &(cell_lo, cell_hi)) in cells.iter().enumerate() {
        let t = start_ms + k as u64 * CELL_MS;
        let end = t + CELL_MS;
        if end <= from_ms || t >= to_ms {
            continue;
        }
        // The column holding the cell's start, and the last one starting before its end.
        let first = (u128::from(t.saturating_sub(from_ms)) * columns / span) as usize;
        let last = ((u128::from(end - from_ms) * columns).div_ceil(span) - 1).min(columns - 1);
        for i in first..=last as usize {
            lo[i] = lo[i].min(cell_lo);
            hi[i] = hi[i].max(cell_hi);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_levels_and_zero_runs() {
        // 1 s at 1 kHz: a ramp, then 50 ms of zeros, then one zero alone, then the ramp again.
        let mut samples: Vec<i16> = (1..=500).map(|i| i as i16).collect();
        samples.extend([0; 50]);
        samples.extend((1..=200).map(|i| -i as i16));
        samples.push(0);
        samples.extend((1..=249).map(|i| i as i16));
        let p = peaks_of(&samples, 1_000);
        assert_eq!(p.cells.len(), 100);
        assert_eq!(p.cells[0], (1, 10));
        assert_eq!(p.cells[50], (0, 0));
        assert_eq!(p.cells[55], (-10, -1));
        assert_eq!(p.zero_runs_ms, [(500.0, 550.0)]);
        assert!((p.peak_dbfs - 20.0 * (500.0f64 / 32_768.0).log10()).abs() < 1e-9);
        let silent = peaks_of(&[0; 16_000], 16_000);
        assert_eq!(silent.peak_dbfs, FLOOR_DBFS);
        assert_eq!(silent.zero_runs_ms, [(0.0, 1_000.0)]);
        // A rate whose cells are not whole samples still covers every sample once.
        let odd = peaks_of(&[3; 441], 44_100);
        assert_eq!(odd.cells, [(3, 3)]);
    }

    #[test]
    fn a_column_takes_the_cells_that_overlap_it_and_no_other() {
        // Cells of 10 ms from 1,000 ms: the k-th spans k to k + 1.
        let cells: Vec<(i16, i16)> = (1..=10).map(|k| (k, k)).collect();
        let columns = |from, to, n| {
            let (mut lo, mut hi) = (vec![i16::MAX; n], vec![i16::MIN; n]);
            spread(&cells, 1_000, (from, to), &mut lo, &mut hi);
            let empty = |v: i16| if v == i16::MAX || v == i16::MIN { 0 } else { v };
            (
                lo.into_iter().map(empty).collect::<Vec<_>>(),
                hi.into_iter().map(empty).collect::<Vec<_>>(),
            )
        };
        // One column per cell: each its own cell, not the next one's.
        let (lo, hi) = columns(1_020, 1_060, 4);
        assert_eq!((lo, hi), (vec![3, 4, 5, 6], vec![3, 4, 5, 6]));
        // Two cells per column, and a column off the cells' grid: the cells it overlaps.
        assert_eq!(columns(1_000, 1_040, 2).1, [2, 4]);
        assert_eq!(columns(1_005, 1_025, 2), (vec![1, 2], vec![2, 3]));
        // Columns of 2.5 ms: four show each cell.
        assert_eq!(columns(1_000, 1_020, 8).1, [1, 1, 1, 1, 2, 2, 2, 2]);
        // Beyond the cells, nothing.
        assert_eq!(columns(1_090, 1_110, 2).1, [10, 0]);
        assert_eq!(columns(900, 1_000, 3).1, [0, 0, 0]);
    }
}
