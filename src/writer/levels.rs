//! Levels of a segment, measured by the writer as it writes the samples: RMS and peak in dBFS,
//! and the share of 10 ms frames whose RMS is above a voice threshold (a cheap voice-activity
//! proxy).

/// The level reported for digital silence, in dBFS (instead of minus infinity).
pub const FLOOR_DBFS: f64 = -120.0;

/// A level in dBFS of a linear value relative to full scale (32768).
pub fn dbfs(linear: f64) -> f64 {
    if linear <= 0.0 {
        return FLOOR_DBFS;
    }
    (20.0 * (linear / 32_768.0).log10()).max(FLOOR_DBFS)
}

/// What [`Levels`] found in a segment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    /// RMS of all samples, in dBFS.
    pub rms_dbfs: f64,
    /// Largest absolute sample, in dBFS.
    pub peak_dbfs: f64,
    /// Share of 10 ms frames (whole ones) whose RMS is above the voice threshold, 0 to 1.
    pub voiced_ratio: f64,
}

/// Accumulates the levels of the samples of one segment.
#[derive(Debug, Clone)]
pub struct Levels {
    frame_len: u32,
    /// Mean square a frame must exceed to count as voiced.
    voiced_mean_square: f64,
    sum_squares: f64,
    count: u64,
    peak: u32,
    frame_sum: f64,
    frame_count: u32,
    frames: u64,
    voiced: u64,
}

impl Levels {
    /// Levels at `rate` samples per second; frames above `voice_threshold_dbfs` are voiced.
    pub fn new(rate: u32, voice_threshold_dbfs: f64) -> Self {
        let linear = 32_768.0 * 10f64.powf(voice_threshold_dbfs / 20.0);
        Levels {
            frame_len: (rate / 100).max(1),
            voiced_mean_square: linear * linear,
            sum_squares: 0.0,
            count: 0,
            peak: 0,
            frame_sum: 0.0,
            frame_count: 0,
            frames: 0,
            voiced: 0,
        }
    }

    /// Takes in the next samples of the segment.
    pub fn add(&mut self, samples: &[i16]) {
        let mut rest = samples;
        while !rest.is_empty() {
            let room = (self.frame_len - self.frame_count) as usize;
            let (chunk, after) = rest.split_at(room.min(rest.len()));
            // A frame's squares are summed as the integers they are, which the compiler
            // vectorises; the sums are exact, so the levels are those of a sample-by-sample sum.
            let squares: u64 = chunk
                .iter()
                .map(|&s| u64::from((i32::from(s) * i32::from(s)) as u32))
                .sum();
            let peak = chunk.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
            self.peak = self.peak.max(peak.into());
            self.sum_squares += squares as f64;
            self.frame_sum += squares as f64;
            self.frame_count += chunk.len() as u32;
            if self.frame_count == self.frame_len {
                self.frames += 1;
                if self.frame_sum / f64::from(self.frame_len) > self.voiced_mean_square {
                    self.voiced += 1;
                }
                self.frame_sum = 0.0;
                self.frame_count = 0;
            }
            rest = after;
        }
        self.count += samples.len() as u64;
    }

    /// Takes in `n` samples of silence.
    pub fn add_silence(&mut self, n: u64) {
        // Silence only completes frames: whole frames of it are never voiced.
        let mut left = n;
        while left > 0 && self.frame_count > 0 {
            self.add(&[0]);
            left -= 1;
        }
        let whole = left / u64::from(self.frame_len);
        self.frames += whole;
        self.count += whole * u64::from(self.frame_len);
        left -= whole * u64::from(self.frame_len);
        self.frame_count = left as u32;
        self.count += left;
    }

    /// The levels of everything taken in.
    pub fn measured(&self) -> Measured {
        let rms = if self.count == 0 {
            0.0
        } else {
            (self.sum_squares / self.count as f64).sqrt()
        };
        Measured {
            rms_dbfs: dbfs(rms),
            peak_dbfs: dbfs(f64::from(self.peak)),
            voiced_ratio: if self.frames == 0 {
                0.0
            } else {
                self.voiced as f64 / self.frames as f64
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_scale_square_wave_is_0_dbfs() {
        let mut l = Levels::new(16_000, -40.0);
        let square: Vec<i16> = (0..16_000)
            .map(|i| if i % 2 == 0 { -32_768 } else { 32_767 })
            .collect();
        l.add(&square);
        let m = l.measured();
        assert!(m.peak_dbfs.abs() < 0.001, "{m:?}");
        assert!(m.rms_dbfs.abs() < 0.001, "{m:?}");
        assert_eq!(m.voiced_ratio, 1.0);
    }

    #[test]
    fn silence_is_the_floor_and_never_voiced() {
        let mut l = Levels::new(16_000, -40.0);
        l.add_silence(80_000);
        assert_eq!(
            l.measured(),
            Measured {
                rms_dbfs: FLOOR_DBFS,
                peak_dbfs: FLOOR_DBFS,
                voiced_ratio: 0.0
            }
        );
    }

    /// The levels of `samples` summed one sample at a time, as the definition reads.
    fn one_by_one(samples: &[i16], rate: u32, threshold: f64) -> Measured {
        let frame_len = (rate / 100).max(1) as usize;
        let linear = 32_768.0 * 10f64.powf(threshold / 20.0);
        let squares: Vec<f64> = samples.iter().map(|&s| f64::from(s).powi(2)).collect();
        let frames: Vec<f64> = squares
            .chunks_exact(frame_len)
            .map(|f| f.iter().sum())
            .collect();
        let voiced = frames
            .iter()
            .filter(|&&sum| sum / frame_len as f64 > linear * linear)
            .count();
        let peak = samples.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
        Measured {
            rms_dbfs: dbfs(if samples.is_empty() {
                0.0
            } else {
                (squares.iter().sum::<f64>() / samples.len() as f64).sqrt()
            }),
            peak_dbfs: dbfs(f64::from(peak)),
            voiced_ratio: if frames.is_empty() {
                0.0
            } else {
                voiced as f64 / frames.len() as f64
            },
        }
    }

    proptest::proptest! {
        #[test]
        fn levels_do_not_depend_on_how_the_samples_come(
            samples in proptest::collection::vec(proptest::num::i16::ANY, 0..2_000),
            cuts in proptest::collection::vec(0usize..2_000, 0..8),
            rate in proptest::sample::select(vec![8_000u32, 16_000, 44_100, 50]),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(samples.len())).collect();
            cuts.sort_unstable();
            let mut l = Levels::new(rate, -30.0);
            let mut from = 0;
            for cut in cuts.into_iter().chain([samples.len()]) {
                l.add(&samples[from..cut]);
                from = cut;
            }
            proptest::prop_assert_eq!(l.measured(), one_by_one(&samples, rate, -30.0));
        }
    }

    #[test]
    fn voiced_ratio_counts_loud_frames() {
        // 1 s of silence, then 1 s at -20 dBFS (a 3277 amplitude square), 10 ms frames.
        let mut l = Levels::new(8_000, -40.0);
        l.add_silence(7_990);
        l.add(&[0; 10]);
        let loud: Vec<i16> = (0..8_000)
            .map(|i| if i % 2 == 0 { 3_277 } else { -3_277 })
            .collect();
        l.add(&loud);
        let m = l.measured();
        assert!((m.voiced_ratio - 0.5).abs() < 1e-9, "{m:?}");
        assert!((m.peak_dbfs + 20.0).abs() < 0.01, "{m:?}");
        assert!((m.rms_dbfs + 23.01).abs() < 0.01, "{m:?}");
    }
}
