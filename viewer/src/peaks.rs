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
use crate::tree::{Segment, read_inside};

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
            });
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
}
