//! What a processing stage did to a bucket's audio: the PRE and POST segments of one bucket
//! compared, for delay, likeness, gain, level, voice and clipping. Pure: samples in, figures out.
//!
//! # Delay and correlation
//!
//! `x` is PRE (`Nx` samples) and `y` is POST (`Ny` samples), each less its mean (a DC offset is
//! the same at every lag and would make all lags look alike). At a lag `d` (samples, POST later
//! than PRE when positive) the two overlap where `a ≤ n < b`, `a = max(0, d)`,
//! `b = min(Ny, Nx + d)`, and
//!
//! ```text
//! C(d)  = Σ x[n−d]·y[n]      Ex(d) = Σ x[n−d]²      Ey(d) = Σ y[n]²      (a ≤ n < b)
//! ρ(d)  = C(d) / √(Ex(d)·Ey(d))                       (0 where either energy is 0)
//! R(d)  = C(d) / √(Ex·Ey)  = ρ(d)·√(Ex(d)/Ex · Ey(d)/Ey)   (Ex, Ey: the whole sides')
//! ```
//!
//! The delay is the lag of the highest `R(d)` with `|d| ≤ L`, `L = min(max_delay, min(Nx, Ny)/2)`
//! (so at least half of the shorter side always overlaps), and the correlation is `ρ` there,
//! taken as 0 when negative. Where the overlap holds all the sound of both sides, as at a
//! stage's delay in a bucket full of audio, `R = ρ`; the weight keeps a lag where a sliver of
//! sound overlaps silence (a bucket that is mostly padding: a call's first or last) from winning
//! by a chance `ρ` of that sliver. A stage that only delays and scales by `g > 0` gives
//! `y[n] = g·x[n−d]`, so `ρ(d) = 1` there (Cauchy–Schwarz; the means of the two windows differ a
//! little) and less everywhere else. A stage that inverts polarity shows as a low correlation.
//! The delay in ms is `d·1000/rate`.
//!
//! # Gain
//!
//! `gain_db = 10·log10(Ey(d)/Ex(d))` over the span aligned at the delay found, held within
//! ±[`GAIN_LIMIT_DB`] (+120 where only PRE's span is all zeros, −120 where only POST's is, 0
//! where both are). Levels of the whole files (`pre_rms_dbfs`, `post_rms_dbfs`,
//! `*_voiced_ratio`) are the writer's own ([`Levels`]), so they match what the recorder reported
//! for the same files. Clipped samples are those at full scale, `i16::MAX` or `i16::MIN`.
//!
//! # When there is nothing to align
//!
//! A side shorter than [`MIN_DURATION_MS`] is too short; a side whose peak is under the silence
//! threshold, or that holds only zeros, is silent. Then [`Figures::alignment`] says so, the delay
//! and correlation are 0 and `gain_db` is `post_rms_dbfs − pre_rms_dbfs` of the whole files (the
//! levels floored at [`FLOOR_DBFS`], so within ±120). Every figure is finite, always.
//!
//! # How it is computed
//!
//! Searching ±500 ms at 16 kHz by brute force takes 16,001 lags × 80,000 products: far too
//! slow. So the search is coarse first, then exact:
//!
//! 1. Both sides, less their means, are decimated by `D = max(1, ⌊rate / 2000⌋)` (16 kHz →
//!    2 kHz) through a CIC filter, a box of `D` samples applied [`CIC_ORDER`] times,
//!    `H(f) = (sin(πfD/r) / (D·sin(πf/r)))^5`. Its nulls fall on every multiple of the coarse
//!    rate `r/D`, which is exactly where the frequencies that would alias onto the band kept
//!    below come from: at 16 kHz they are at least 26 dB down at the top of the band (700 Hz)
//!    and 47 dB down at 500 Hz, so aliases cannot move the peak. Both sides pass the same
//!    filter, so its delay cancels, and a lag of `l` coarse samples is `l·D` samples.
//! 2. The coarse cross-correlation comes from one real FFT per side of size `F ≥ max(Nxc, Nyc) +
//!    Lc` (`Lc = ⌊L/D⌋`, `F` a product of 2, 3 and 5, so no wrap-around reaches a searched lag):
//!    `IFFT(Y·conj(X))[l] = Σ xc[n−l]·yc[n]`, keeping only the bins from 60 Hz to 0.35 × the
//!    coarse rate (no DC or mains hum, nothing near the coarse Nyquist where aliases gather). It
//!    is ranked as `R` above, with the coarse energies. If that band holds less than
//!    [`MIN_BAND_SHARE`] of either side's energy (audio high-passed above it, a stage that
//!    removes it), it has too little to go on, and steps 2 and 3 are made at the full rate
//!    (`D = 1`, the band up to 0.35 × the rate) instead.
//! 3. The best coarse peak and up to [`MAX_CANDIDATES`]` − 1` others within
//!    [`CANDIDATE_MARGIN`] of it are kept (a narrow band of sound in the coarse band correlates
//!    in ripples a few coarse samples apart, of which the highest need not be the true one);
//!    each is refined by a parabola through its neighbours to `l + δ`. At the full rate, `R(d)`
//!    is computed directly for `|d − round(D·(l + δ))| ≤ ⌈D/2⌉` around each, walking on while
//!    the best lag is at an edge of that window and `R` still grows. The delay, correlation and
//!    gain are those of the best lag of these exact searches.
//!
//! At 16 kHz, 5 s buckets and ±500 ms, that is three FFTs of 11,250 points and 9 full-rate lags
//! of 80,000 products per candidate, instead of 1.3 billion products; the benchmark (`examples/bench.rs`)
//! measures what it costs against the writer's own level measurement and against reading the
//! two files.
//!
//! # Tolerances (checked by the tests)
//!
//! With speech-like signals at 8, 11.025, 16, 44.1 and 48 kHz: a stage that delays (−480 ms …
//! +480 ms, 0 and 1 sample included) and scales (±6 dB) is found at exactly its delay, with a
//! correlation of at least 0.999 and its gain within 0.05 dB; so is it for speech high-passed at
//! 500 Hz, 800 Hz or 2 kHz, for quiet speech on a DC offset of up to −8 dBFS (correlation at least
//! 0.99), and for a bucket holding only 160 ms to 2.5 s of sound at its start or its end, the
//! rest digital silence, searched ±500 ms or ±2 s; with white noise added at 20 dB SNR the delay
//! is still exact and the correlation within 0.01 of `1/√(1 + 10^(−SNR/10))`; after a
//! linear-phase low-pass filter the delay is within 1 sample of the stage's delay plus the
//! filter's group delay.

use std::ops::{Range, RangeInclusive};
use std::sync::Arc;

use realfft::num_complex::Complex;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};

pub use crate::writer::levels::FLOOR_DBFS;
use crate::writer::levels::{Levels, Measured, dbfs};

mod alarms;
#[cfg(any(test, feature = "test-seams"))]
pub mod speech;

pub use alarms::{Alarm, DELAY_TOLERANCE_MS, MIN_CORRELATION, StageWatch};

/// Maximum delay searched by default, in ms.
pub const DEFAULT_MAX_DELAY_MS: u32 = 500;

/// Peak level in dBFS under which a side counts as silent by default (the recorder's default
/// `silence-threshold`).
pub const DEFAULT_SILENCE_THRESHOLD_DBFS: f64 = -60.0;

/// RMS level in dBFS above which a 10 ms frame counts as voiced by default (the recorder's
/// default `voice-threshold`).
pub const DEFAULT_VOICE_THRESHOLD_DBFS: f64 = -45.0;

/// Largest gain reported either way, in dB: from full scale to [`FLOOR_DBFS`].
pub const GAIN_LIMIT_DB: f64 = -FLOOR_DBFS;

/// Shortest side that is aligned, in ms.
pub const MIN_DURATION_MS: u32 = 100;

/// The rate the coarse search runs at, at least (see the module documentation).
const COARSE_RATE: u32 = 2_000;

/// Times the box filter is applied before decimation.
pub const CIC_ORDER: usize = 5;

/// Lowest frequency the coarse search looks at, in Hz: below it are DC offsets and mains hum.
const BAND_LOW_HZ: f64 = 60.0;

/// Highest frequency the coarse search looks at, as a share of the coarse rate.
const BAND_HIGH_SHARE: f64 = 0.35;

/// Below this share of a side's energy within the coarse band, the coarse search has too little
/// to go on (audio high-passed above it, or a stage that removes it): the search is made at the
/// full rate instead.
const MIN_BAND_SHARE: f64 = 0.03;

/// Coarse peaks refined at the full rate, at most: the best and those nearly as high. Audio
/// whose coarse band holds a narrow band of sound correlates in ripples a few coarse samples
/// apart, of which the highest need not be the true one.
const MAX_CANDIDATES: usize = 4;

/// A coarse peak at most this far below the best one is refined too.
const CANDIDATE_MARGIN: f64 = 0.15;

/// How a pair is compared.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Config {
    /// Samples per second of both sides.
    pub rate: u32,
    /// Largest delay searched either way, in samples.
    pub max_delay: usize,
    /// Peak level in dBFS under which a side counts as silent.
    pub silence_threshold_dbfs: f64,
    /// RMS level in dBFS above which a 10 ms frame counts as voiced.
    pub voice_threshold_dbfs: f64,
}

impl Config {
    /// The defaults at `rate`: ±[`DEFAULT_MAX_DELAY_MS`], the recorder's default thresholds.
    pub fn new(rate: u32) -> Self {
        Config {
            rate,
            max_delay: 0,
            silence_threshold_dbfs: DEFAULT_SILENCE_THRESHOLD_DBFS,
            voice_threshold_dbfs: DEFAULT_VOICE_THRESHOLD_DBFS,
        }
        .with_max_delay_ms(DEFAULT_MAX_DELAY_MS)
    }

    /// The same with the largest delay searched given in ms.
    pub fn with_max_delay_ms(self, ms: u32) -> Self {
        Config {
            max_delay: (u64::from(self.rate) * u64::from(ms) / 1_000) as usize,
            ..self
        }
    }
}

/// Whether the delay, correlation and aligned gain were measured, and if not, why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alignment {
    /// Both sides have sound: the figures are measured.
    Measured,
    /// PRE is silent: nothing to align POST with.
    PreSilent,
    /// POST is silent: the stage let nothing through.
    PostSilent,
    /// Both sides are silent.
    BothSilent,
    /// A side is shorter than [`MIN_DURATION_MS`] (or the rate is 0).
    TooShort,
}

impl Alignment {
    /// Its name in tables, JSON and messages: `measured`, `pre-silent`, `post-silent`,
    /// `both-silent` or `too-short`.
    pub fn as_str(self) -> &'static str {
        match self {
            Alignment::Measured => "measured",
            Alignment::PreSilent => "pre-silent",
            Alignment::PostSilent => "post-silent",
            Alignment::BothSilent => "both-silent",
            Alignment::TooShort => "too-short",
        }
    }
}

/// What a pair's comparison found. Every field is finite.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Figures {
    /// Whether the delay, correlation and gain were measured.
    pub alignment: Alignment,
    /// How much later POST's content is than PRE's, in samples (negative: earlier); 0 unless
    /// measured.
    pub delay: i64,
    /// The delay in ms.
    pub delay_ms: f64,
    /// Normalised cross-correlation at the delay, 0 to 1; 0 unless measured.
    pub correlation: f64,
    /// POST's level minus PRE's over the span aligned at the delay, in dB, within
    /// ±[`GAIN_LIMIT_DB`]; unless measured, the difference of the whole files' RMS levels.
    pub gain_db: f64,
    /// RMS of PRE, in dBFS ([`FLOOR_DBFS`] for digital silence).
    pub pre_rms_dbfs: f64,
    /// RMS of POST, in dBFS.
    pub post_rms_dbfs: f64,
    /// Share of PRE's whole 10 ms frames above the voice threshold, 0 to 1.
    pub pre_voiced_ratio: f64,
    /// Share of POST's whole 10 ms frames above the voice threshold, 0 to 1.
    pub post_voiced_ratio: f64,
    /// PRE's samples at full scale.
    pub pre_clipped_samples: u64,
    /// POST's samples at full scale.
    pub post_clipped_samples: u64,
}

impl Figures {
    /// Whether the stage clips: POST has samples at full scale where PRE had none.
    pub fn stage_clips(&self) -> bool {
        self.post_clipped_samples > 0 && self.pre_clipped_samples == 0
    }
}

/// Compares pairs, keeping its FFT plans and buffers from one pair to the next: make one per
/// thread and give it every pair.
#[derive(Default)]
pub struct Analyzer {
    planner: RealFftPlanner<f32>,
    pre: Side,
    post: Side,
    scratch: Vec<Complex<f32>>,
    coarse_correlation: Vec<f32>,
}

impl std::fmt::Debug for Analyzer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Analyzer").finish_non_exhaustive()
    }
}

/// One side's buffers.
#[derive(Default)]
struct Side {
    /// The samples less their mean rounded to an integer, as `f32` (exactly), for the
    /// full-rate products: a DC offset, which every lag shares, would otherwise make all lags
    /// look alike.
    full: Vec<f32>,
    /// Σ full[j]² for j < i, exactly (integers), kept only for the `i` a search can ask
    /// for: within its reach of either end.
    full_energy: Prefix,
    /// The samples' mean, rounded: taken off at the full rate and before decimation.
    offset: i64,
    /// The decimated samples, then (zero-padded) the FFT's input and scratch.
    coarse: Vec<f32>,
    /// `coarse_energy[i]` = Σ coarse[j]² for j < i.
    coarse_energy: Vec<f64>,
    /// The coarse samples' spectrum.
    spectrum: Vec<Complex<f32>>,
}

impl Side {
    /// Fills the full-rate buffers from `samples`.
    /// `reach`: how far from either end an overlap of the two sides can end.
    fn fill(&mut self, samples: &[i16], reach: usize) {
        let sum: i64 = samples.iter().map(|&s| i64::from(s)).sum();
        let mean = sum as f64 / samples.len().max(1) as f64;
        self.offset = mean.round() as i64;
        // The mean of 16-bit samples is within their range.
        let offset = self.offset as i32;
        self.full.clear();
        self.full
            .extend(samples.iter().map(|&s| (i32::from(s) - offset) as f32));
        self.full_energy.fill(samples, offset, reach);
    }

    /// Σ full[i]² over `range`.
    fn energy_within(&self, range: Range<usize>) -> f64 {
        (self.full_energy.at(&self.full, range.end) - self.full_energy.at(&self.full, range.start))
            as f64
    }

    /// Σ full[i]² over all of them.
    fn total_energy(&self) -> f64 {
        self.full_energy.total as f64
    }

    /// Fills the coarse buffers from `samples`, less their mean, decimated by `factor`.
    fn fill_coarse(&mut self, samples: &[i16], factor: usize) {
        decimate(samples, self.offset, factor, &mut self.coarse);
        prefix_energy(&self.coarse, &mut self.coarse_energy);
    }

    /// Zero-pads the coarse samples to `len` and takes their spectrum; the coarse samples are
    /// gone after.
    fn transform(&mut self, fft: &dyn RealToComplex<f32>, scratch: &mut [Complex<f32>]) {
        self.coarse.resize(fft.len(), 0.0);
        self.spectrum.resize(fft.complex_len(), Complex::default());
        fft.process_with_scratch(&mut self.coarse, &mut self.spectrum, scratch)
            .expect("buffers sized for the plan");
    }

    /// Σ s² of the coarse samples within the bins `band` of their spectrum (of an FFT of
    /// `len`), by Parseval's theorem.
    fn band_energy(&self, band: RangeInclusive<usize>, len: usize) -> f64 {
        let sum: f64 = self.spectrum[band]
            .iter()
            .map(|c| f64::from(c.norm_sqr()))
            .sum();
        // Each bin stands for itself and its mirror image in the other half.
        2.0 * sum / len as f64
    }
}

/// Running sums of squares of integer-valued samples, `Σ values[j]²` for `j < i`, kept for
/// the `i` near either end only: those are all a search within a reach asks for, and writing
/// the sum at every sample of a long bucket cost more than the search.
#[derive(Default)]
struct Prefix {
    /// At `i` for `i` in `0..head.len()`.
    head: Vec<i64>,
    /// At `i` for `i` in `len - tail.len() + 1..=len`.
    tail: Vec<i64>,
    len: usize,
    total: i64,
}

impl Prefix {
    /// From `samples` less `offset`, keeping the sums within `reach` of either end.
    fn fill(&mut self, samples: &[i16], offset: i32, reach: usize) {
        let square = |&s: &i16| {
            let v = i64::from(i32::from(s) - offset);
            v * v
        };
        let keep = reach.min(samples.len());
        self.len = samples.len();
        self.head.clear();
        self.head.push(0);
        let mut sum = 0;
        self.head.extend(samples[..keep].iter().map(|s| {
            sum += square(s);
            sum
        }));
        let tail_from = samples.len() - keep;
        if keep < tail_from {
            sum += sum_of_squares(&samples[keep..tail_from], offset);
        }
        let from = tail_from.max(keep);
        self.tail.clear();
        self.tail.extend(samples[from..].iter().map(|s| {
            sum += square(s);
            sum
        }));
        self.total = sum;
    }

    /// The sum at `i`; computed from the nearest end kept if `i` is outside both.
    fn at(&self, values: &[f32], i: usize) -> i64 {
        if i < self.head.len() {
            return self.head[i];
        }
        let tail_start = self.len + 1 - self.tail.len();
        if i >= tail_start {
            return self.tail[i - tail_start];
        }
        let start = self.head.len() - 1;
        self.head[start]
            + values[start..i]
                .iter()
                .map(|&v| (v as i64) * (v as i64))
                .sum::<i64>()
    }
}

/// Σ (s − offset)², exactly: in `f64` lanes, which hold every partial sum of up to 2^22 squares
/// of 17-bit integers exactly, and which the compiler vectorises where integers of 64 bits it
/// cannot.
fn sum_of_squares(samples: &[i16], offset: i32) -> i64 {
    const LANES: usize = 4;
    // Sums stay exact below 2^53: each lane takes at most 2^19 squares below 2^34.
    const CHUNK: usize = LANES << 19;
    let mut total = 0i64;
    for chunk in samples.chunks(CHUNK) {
        let (blocks, rest) = chunk.as_chunks::<LANES>();
        let mut lanes = [0f64; LANES];
        for block in blocks {
            for i in 0..LANES {
                let v = f64::from(i32::from(block[i]) - offset);
                lanes[i] += v * v;
            }
        }
        total += lanes.iter().map(|&l| l as i64).sum::<i64>();
        total += rest
            .iter()
            .map(|&s| i64::from(i32::from(s) - offset).pow(2))
            .sum::<i64>();
    }
    total
}

/// `prefix[i]` = Σ values[j]² for j < i, for every i up to `values.len()`.
fn prefix_energy(values: &[f32], prefix: &mut Vec<f64>) {
    prefix.clear();
    prefix.reserve(values.len() + 1);
    prefix.push(0.0);
    let mut sum = 0.0;
    for &v in values {
        sum += f64::from(v) * f64::from(v);
        prefix.push(sum);
    }
}

/// How a lag ranks: ρ weighted by the share of each side's energy that the overlap holds,
/// `ρ·√((Ex(d)/Ex)·(Ey(d)/Ey))`, which is the cross term over the two whole sides' energies.
/// Where the overlap holds all the sound of both, as at a stage's delay in a bucket full of
/// audio, that is ρ; at a lag where only a sliver of sound overlaps silence (a bucket that is
/// mostly padding, the first or last of a call), ρ of that sliver may be high by chance, but
/// its rank is not.
fn ranked(rho: f64, ex: f64, ey: f64, ex_total: f64, ey_total: f64) -> f64 {
    if ex_total > 0.0 && ey_total > 0.0 {
        rho * (ex / ex_total * ey / ey_total).sqrt()
    } else {
        rho
    }
}

/// Decimates `samples` less `offset` by `factor` through a CIC filter of [`CIC_ORDER`] into
/// `out`: sample `k` of `out` is the box filter, applied `CIC_ORDER` times and scaled to unit
/// gain, at input sample `k·factor + factor − 1`. Taking a DC offset off first keeps the edges
/// of the buckets, where it starts and stops, out of the band searched.
fn decimate(samples: &[i16], offset: i64, factor: usize, out: &mut Vec<f32>) {
    out.clear();
    out.reserve(samples.len() / factor);
    // Hogenauer's structure: integrators at the input rate, combs at the output rate. The
    // integrators overflow, but wrapping arithmetic keeps every output exact, since outputs
    // stay within twice i16 times factor^CIC_ORDER.
    let mut integrators = [0i64; CIC_ORDER];
    let mut combs = [0i64; CIC_ORDER];
    let scale = 1.0 / (factor as f64).powi(CIC_ORDER as i32);
    for block in samples.chunks_exact(factor) {
        for &s in block {
            let mut v = i64::from(s) - offset;
            for i in &mut integrators {
                *i = i.wrapping_add(v);
                v = *i;
            }
        }
        let mut v = integrators[CIC_ORDER - 1];
        for c in &mut combs {
            let previous = *c;
            *c = v;
            v = v.wrapping_sub(previous);
        }
        out.push((v as f64 * scale) as f32);
    }
}

/// Σ a[i]·b[i], over the shorter of the two.
fn dot(a: &[f32], b: &[f32]) -> f64 {
    // Sixteen f32 lanes the compiler vectorises (eight did worse), summed into f64 every
    // block, so that rounding stays far below what tells neighbouring lags apart.
    const BLOCK: usize = 4_096;
    let mut total = 0.0;
    for (a, b) in a.chunks(BLOCK).zip(b.chunks(BLOCK)) {
        let (a16, a_rest) = a.as_chunks::<16>();
        let (b16, b_rest) = b.as_chunks::<16>();
        let mut lanes = [0f32; 16];
        for (x, y) in a16.iter().zip(b16) {
            for i in 0..16 {
                lanes[i] += x[i] * y[i];
            }
        }
        total += lanes.iter().map(|&v| f64::from(v)).sum::<f64>();
        total += a_rest
            .iter()
            .zip(b_rest)
            .map(|(&x, &y)| f64::from(x) * f64::from(y))
            .sum::<f64>();
    }
    total
}

/// The overlap of PRE (`nx` samples) and POST (`ny`) at `lag`: POST's range `a..b`, PRE's
/// being `a − lag .. b − lag`. Empty when they do not overlap.
fn overlap(nx: usize, ny: usize, lag: isize) -> (usize, usize) {
    let a = lag.max(0);
    let b = (ny as isize).min(nx as isize + lag);
    if b <= a {
        (0, 0)
    } else {
        (a as usize, b as usize)
    }
}

/// ρ from the cross term and the two energies: 0 where either energy is 0.
fn normalised(cross: f64, ex: f64, ey: f64) -> f64 {
    if ex > 0.0 && ey > 0.0 {
        cross / (ex * ey).sqrt()
    } else {
        0.0
    }
}

/// `10·log10(ey/ex)` within ±[`GAIN_LIMIT_DB`], for any energies.
fn gain_db(ex: f64, ey: f64) -> f64 {
    match (ex > 0.0, ey > 0.0) {
        (true, true) => (10.0 * (ey / ex).log10()).clamp(-GAIN_LIMIT_DB, GAIN_LIMIT_DB),
        (true, false) => -GAIN_LIMIT_DB,
        (false, true) => GAIN_LIMIT_DB,
        (false, false) => 0.0,
    }
}

/// The smallest even length of at least `n` whose only prime factors are 2, 3 and 5: the FFT
/// sizes computed fastest.
fn fft_len(n: usize) -> usize {
    let mut len = n.max(2);
    loop {
        let mut m = len;
        for p in [2, 3, 5] {
            while m.is_multiple_of(p) {
                m /= p;
            }
        }
        if m == 1 && len.is_multiple_of(2) {
            return len;
        }
        len += 1;
    }
}

/// The number of samples at full scale, given the level of the loudest.
fn clipped(samples: &[i16], peak_dbfs: f64) -> u64 {
    // Only a peak at full scale can come from one: most sides need no count.
    if peak_dbfs < dbfs(f64::from(i16::MAX)) {
        return 0;
    }
    samples
        .iter()
        .filter(|&&s| s == i16::MAX || s == i16::MIN)
        .count() as u64
}

impl Analyzer {
    /// An analyzer with no plans and no buffers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Compares `pre` and `post`, the two sides of one bucket, both at `config.rate`.
    pub fn analyze(&mut self, pre: &[i16], post: &[i16], config: &Config) -> Figures {
        let levels = |samples: &[i16]| -> Measured {
            let mut levels = Levels::new(config.rate, config.voice_threshold_dbfs);
            levels.add(samples);
            levels.measured()
        };
        let (pre_levels, post_levels) = (levels(pre), levels(post));
        let mut figures = Figures {
            alignment: Alignment::Measured,
            delay: 0,
            delay_ms: 0.0,
            correlation: 0.0,
            gain_db: post_levels.rms_dbfs - pre_levels.rms_dbfs,
            pre_rms_dbfs: pre_levels.rms_dbfs,
            post_rms_dbfs: post_levels.rms_dbfs,
            pre_voiced_ratio: pre_levels.voiced_ratio,
            post_voiced_ratio: post_levels.voiced_ratio,
            pre_clipped_samples: clipped(pre, pre_levels.peak_dbfs),
            post_clipped_samples: clipped(post, post_levels.peak_dbfs),
        };
        let min_len = (u64::from(config.rate) * u64::from(MIN_DURATION_MS) / 1_000).max(1);
        // Only digital silence is at the floor: one step of 16 bits is -90 dBFS.
        let silent = |levels: &Measured| {
            levels.peak_dbfs < config.silence_threshold_dbfs || levels.peak_dbfs <= FLOOR_DBFS
        };
        figures.alignment =
            if config.rate == 0 || (pre.len() as u64) < min_len || (post.len() as u64) < min_len {
                Alignment::TooShort
            } else {
                match (silent(&pre_levels), silent(&post_levels)) {
                    (false, false) => Alignment::Measured,
                    (true, false) => Alignment::PreSilent,
                    (false, true) => Alignment::PostSilent,
                    (true, true) => Alignment::BothSilent,
                }
            };
        if figures.alignment != Alignment::Measured {
            return figures;
        }

        let max_lag = config.max_delay.min(pre.len().min(post.len()) / 2) as isize;
        let factor = (config.rate / COARSE_RATE).max(1) as usize;
        let reach = max_lag.unsigned_abs() + pre.len().abs_diff(post.len()) + 1;
        self.pre.fill(pre, reach);
        self.post.fill(post, reach);
        let half_window = factor.div_ceil(2) as isize;
        // A search hardly wider than the refining window is done at the full rate alone.
        let (centres, half_window) = if max_lag <= 2 * half_window {
            (vec![0], max_lag)
        } else {
            match self.coarse_lags(pre, post, factor, max_lag, config.rate) {
                Some(centres) => (centres, half_window),
                // Too little in the coarse band: the same search at the full rate.
                None => (
                    self.coarse_lags(pre, post, 1, max_lag, config.rate)
                        .unwrap_or_else(|| vec![0]),
                    1,
                ),
            }
        };
        let (lag, rho, _) = centres
            .iter()
            .map(|&centre| self.refine(centre, half_window, max_lag))
            .fold((0, 0.0, f64::NEG_INFINITY), |best, c| {
                if c.2 > best.2 { c } else { best }
            });
        let (a, b) = overlap(pre.len(), post.len(), lag);
        let (ex, ey) = self.energies(lag, a, b);
        figures.delay = lag as i64;
        figures.delay_ms = lag as f64 * 1_000.0 / f64::from(config.rate);
        figures.correlation = rho.clamp(0.0, 1.0);
        figures.gain_db = gain_db(ex, ey);
        figures
    }

    /// Energies of PRE and POST, less their means, over POST's range `a..b` at `lag`.
    fn energies(&self, lag: isize, a: usize, b: usize) -> (f64, f64) {
        if b <= a {
            return (0.0, 0.0);
        }
        let xa = (a as isize - lag) as usize;
        (
            self.pre.energy_within(xa..xa + (b - a)),
            self.post.energy_within(a..b),
        )
    }

    /// ρ(lag) at the full rate, and its rank among the lags (see [`ranked`]).
    fn rho(&self, lag: isize) -> (f64, f64) {
        let (nx, ny) = (self.pre.full.len(), self.post.full.len());
        let (a, b) = overlap(nx, ny, lag);
        if b <= a {
            return (0.0, 0.0);
        }
        let xa = (a as isize - lag) as usize;
        let cross = dot(&self.pre.full[xa..xa + (b - a)], &self.post.full[a..b]);
        let (ex, ey) = self.energies(lag, a, b);
        let rho = normalised(cross, ex, ey);
        let rank = ranked(
            rho,
            ex,
            ey,
            self.pre.total_energy(),
            self.post.total_energy(),
        );
        (rho, rank)
    }

    /// The lag of the best-ranked ρ within `half_window` of `centre`, walking on past an edge
    /// while it grows; never beyond ±`max_lag`. The lag, its ρ and its rank.
    fn refine(&self, centre: isize, half_window: isize, max_lag: isize) -> (isize, f64, f64) {
        let (low, high) = (
            (centre - half_window).max(-max_lag),
            (centre + half_window).min(max_lag),
        );
        let at = |lag: isize| {
            let (rho, rank) = self.rho(lag);
            (lag, rho, rank)
        };
        let mut best = at(low);
        for lag in low + 1..=high {
            let candidate = at(lag);
            if candidate.2 > best.2 {
                best = candidate;
            }
        }
        for (edge, step, limit) in [(low, -1, -max_lag), (high, 1, max_lag)] {
            if best.0 != edge {
                continue;
            }
            let mut lag = edge;
            while lag != limit {
                let next = at(lag + step);
                if next.2 <= best.2 {
                    break;
                }
                lag += step;
                best = next;
            }
        }
        best
    }

    /// Where the coarse search puts the delay, in full-rate samples (see the module
    /// documentation, steps 1 and 2): the best peak and those nearly as high, best first. `None`
    /// if either side has too little energy in the coarse band for it to tell.
    fn coarse_lags(
        &mut self,
        pre: &[i16],
        post: &[i16],
        factor: usize,
        max_lag: isize,
        rate: u32,
    ) -> Option<Vec<isize>> {
        self.pre.fill_coarse(pre, factor);
        self.post.fill_coarse(post, factor);
        let (nx, ny) = (self.pre.coarse.len(), self.post.coarse.len());
        let max_coarse = max_lag / factor as isize;
        let len = fft_len(nx.max(ny) + max_coarse as usize + 1);
        let forward = self.planner.plan_fft_forward(len);
        let inverse: Arc<dyn ComplexToReal<f32>> = self.planner.plan_fft_inverse(len);
        let scratch_len = forward.get_scratch_len().max(inverse.get_scratch_len());
        self.scratch.resize(scratch_len, Complex::default());
        self.pre.transform(forward.as_ref(), &mut self.scratch);
        self.post.transform(forward.as_ref(), &mut self.scratch);

        let coarse_rate = f64::from(rate) / factor as f64;
        let bin_hz = coarse_rate / len as f64;
        let band = (BAND_LOW_HZ / bin_hz).ceil() as usize
            ..=((BAND_HIGH_SHARE * coarse_rate / bin_hz).floor() as usize)
                .min(self.pre.spectrum.len() - 1);
        // A coarse sample holds about as much energy as a full-rate one: the band's share of a
        // side is its coarse energy there over its full-rate energy in `factor`s.
        let share = |side: &Side| {
            side.band_energy(band.clone(), len) * factor as f64 / side.total_energy().max(1.0)
        };
        if share(&self.pre) < MIN_BAND_SHARE || share(&self.post) < MIN_BAND_SHARE {
            return None;
        }
        // Y·conj(X) within the band, into PRE's spectrum.
        for (k, (x, y)) in self
            .pre
            .spectrum
            .iter_mut()
            .zip(&self.post.spectrum)
            .enumerate()
        {
            *x = if band.contains(&k) {
                y * x.conj()
            } else {
                Complex::default()
            };
        }
        self.coarse_correlation.resize(len, 0.0);
        inverse
            .process_with_scratch(
                &mut self.pre.spectrum,
                &mut self.coarse_correlation,
                &mut self.scratch,
            )
            .expect("buffers sized for the plan, DC and Nyquist bins zero");

        let (ex_total, ey_total) = (self.pre.coarse_energy[nx], self.post.coarse_energy[ny]);
        let rank = |lag: isize| {
            let (a, b) = overlap(nx, ny, lag);
            if b <= a {
                return 0.0;
            }
            let (xa, xb) = ((a as isize - lag) as usize, (b as isize - lag) as usize);
            let ex = self.pre.coarse_energy[xb] - self.pre.coarse_energy[xa];
            let ey = self.post.coarse_energy[b] - self.post.coarse_energy[a];
            let cross = self.coarse_correlation[lag.rem_euclid(len as isize) as usize];
            ranked(
                normalised(f64::from(cross), ex, ey),
                ex,
                ey,
                ex_total,
                ey_total,
            )
        };
        let ranks: Vec<f64> = (-max_coarse..=max_coarse).map(rank).collect();
        let at = |lag: isize| ranks[(lag + max_coarse) as usize];
        let best = ranks.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        // The local peaks nearly as high as the best, highest first.
        let mut peaks: Vec<(isize, f64)> = (-max_coarse..=max_coarse)
            .filter(|&lag| {
                let r = at(lag);
                r >= best - CANDIDATE_MARGIN
                    && (lag == -max_coarse || at(lag - 1) <= r)
                    && (lag == max_coarse || at(lag + 1) < r)
            })
            .map(|lag| (lag, at(lag)))
            .collect();
        peaks.sort_by(|a, b| b.1.total_cmp(&a.1));
        peaks.truncate(MAX_CANDIDATES);
        let lags = peaks
            .into_iter()
            .map(|(peak, r)| {
                // A parabola through the peak and its neighbours puts it between coarse
                // samples.
                let mut offset = 0.0;
                if peak.abs() < max_coarse {
                    let (before, after) = (at(peak - 1), at(peak + 1));
                    let curvature = before - 2.0 * r + after;
                    if curvature < 0.0 {
                        offset = (0.5 * (before - after) / curvature).clamp(-0.5, 0.5);
                    }
                }
                (((peak as f64 + offset) * factor as f64).round() as isize).clamp(-max_lag, max_lag)
            })
            .collect();
        Some(lags)
    }
}

/// Compares one pair with an analyzer of its own; for many pairs, keep an [`Analyzer`].
pub fn analyze(pre: &[i16], post: &[i16], config: &Config) -> Figures {
    Analyzer::new().analyze(pre, post, config)
}

#[cfg(test)]
mod tests {
    use super::speech::{self, quantise};
    use super::*;

    /// A pair cut from `source` (already scaled), POST being `stage` of it delayed by `delay`:
    /// both `len` samples, PRE starting at `start`.
    fn pair(
        source: &[f64],
        start: usize,
        len: usize,
        delay: isize,
        stage: impl Fn(f64) -> f64,
    ) -> (Vec<i16>, Vec<i16>) {
        let pre = quantise(source[start..start + len].iter().copied());
        let post_start = (start as isize - delay) as usize;
        let post = quantise(
            source[post_start..post_start + len]
                .iter()
                .map(|&s| stage(s)),
        );
        (pre, post)
    }

    /// Five seconds at `rate` with a margin of a second either side, for delays up to that.
    fn source(rate: u32, seed: u64) -> (Vec<f64>, usize, usize) {
        let len = 5 * rate as usize;
        (
            speech::speech_like(rate, len + 2 * rate as usize, seed),
            rate as usize,
            len,
        )
    }

    fn db(gain: f64) -> f64 {
        10f64.powf(gain / 20.0)
    }

    fn assert_delay_and_gain(rate: u32, delay: isize, gain: f64, seed: u64) {
        let (s, start, len) = source(rate, seed);
        let (pre, post) = pair(&s, start, len, delay, |v| v * db(gain));
        let f = analyze(&pre, &post, &Config::new(rate));
        assert_eq!(f.alignment, Alignment::Measured, "{f:?}");
        assert_eq!(f.delay, delay as i64, "rate {rate}: {f:?}");
        assert_eq!(f.delay_ms, delay as f64 * 1_000.0 / f64::from(rate));
        assert!(f.correlation >= 0.999, "{f:?}");
        assert!((f.gain_db - gain).abs() < 0.05, "{f:?}");
        assert_eq!((f.pre_clipped_samples, f.post_clipped_samples), (0, 0));
        assert!(!f.stage_clips());
    }

    #[test]
    fn energies_kept_near_the_ends_equal_the_running_sum_everywhere() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for len in [0, 1, 2, 7, 100, 1_001] {
            let samples: Vec<i16> = (0..len).map(|_| (next() >> 48) as i16).collect();
            let offset = i32::from((next() >> 48) as i16);
            let values: Vec<f32> = samples
                .iter()
                .map(|&s| (i32::from(s) - offset) as f32)
                .collect();
            let mut expected = vec![0i64];
            for &s in &samples {
                let v = i64::from(i32::from(s) - offset);
                expected.push(expected.last().unwrap() + v * v);
            }
            for reach in [0, 1, 3, len / 2, len / 2 + 1, len, len + 5] {
                let mut prefix = Prefix::default();
                prefix.fill(&samples, offset, reach);
                assert_eq!(prefix.total, expected[len], "len {len}, reach {reach}");
                for (i, &e) in expected.iter().enumerate() {
                    assert_eq!(prefix.at(&values, i), e, "len {len}, reach {reach}, at {i}");
                }
            }
        }
        // Full scale, far from the mean: the f64 lanes stay exact.
        let loud = vec![i16::MAX; 1 << 20];
        assert_eq!(
            sum_of_squares(&loud, -32_768),
            (1i64 << 20) * 65_535 * 65_535
        );
    }

    #[test]
    fn a_stage_that_delays_and_scales_is_found_to_the_sample() {
        let ms = |ms: isize| ms * 16;
        for (delay, gain) in [
            (0, 0.0),
            (1, 0.0),
            (-1, -6.0),
            (ms(120), -6.0),
            (ms(120), 6.0),
            (ms(480), 0.0),
            (-ms(480), 6.0),
            (-ms(120) - 3, -6.0),
            (ms(37) + 5, 0.0),
        ] {
            assert_delay_and_gain(16_000, delay, gain, 7);
        }
    }

    #[test]
    fn other_rates_are_found_to_the_sample_too() {
        for rate in [8_000, 48_000, 44_100, 11_025] {
            let ms = |ms: isize| ms * rate as isize / 1_000;
            for (delay, gain) in [(0, 0.0), (1, 6.0), (ms(120), -6.0), (-ms(480) + 1, 0.0)] {
                assert_delay_and_gain(rate, delay, gain, u64::from(rate));
            }
        }
    }

    #[test]
    fn many_speech_like_pairs_are_found_to_the_sample() {
        // Delays on and between coarse samples, every seed a different utterance.
        for seed in 0..12u64 {
            let delay = (seed as isize * 613 % 15_000) - 7_500;
            assert_delay_and_gain(16_000, delay, -3.0, 100 + seed);
        }
    }

    #[test]
    fn noise_lowers_the_correlation_but_not_the_delay() {
        let rate = 16_000;
        let (s, start, len) = source(rate, 3);
        let (pre, mut post) = pair(&s, start, len, 1_920, |v| v);
        // White noise 20 dB under POST's level.
        let rms = |v: &[i16]| {
            (v.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
        };
        let noise_rms = rms(&post) / 10.0;
        let noise = speech::white(len, 11);
        let noise_scale =
            noise_rms / (noise.iter().map(|n| n * n).sum::<f64>() / len as f64).sqrt();
        post = quantise(
            post.iter()
                .zip(&noise)
                .map(|(&p, n)| f64::from(p) + n * noise_scale),
        );
        let f = analyze(&pre, &post, &Config::new(rate));
        assert_eq!(f.delay, 1_920, "{f:?}");
        let expected = 1.0 / (1.0 + 0.01f64).sqrt();
        assert!((f.correlation - expected).abs() < 0.01, "{f:?}");
        assert!(f.correlation < 0.999, "{f:?}");
    }

    /// A linear-phase low-pass FIR of `taps` (odd) taps: windowed sinc, Hamming window.
    fn low_pass(cutoff_hz: f64, rate: u32, taps: usize) -> Vec<f64> {
        let fc = cutoff_hz / f64::from(rate);
        let mid = (taps / 2) as f64;
        let h: Vec<f64> = (0..taps)
            .map(|i| {
                let t = i as f64 - mid;
                let sinc = if t == 0.0 {
                    2.0 * fc
                } else {
                    (2.0 * std::f64::consts::PI * fc * t).sin() / (std::f64::consts::PI * t)
                };
                let window =
                    0.54 - 0.46 * (2.0 * std::f64::consts::PI * i as f64 / (taps - 1) as f64).cos();
                sinc * window
            })
            .collect();
        let sum: f64 = h.iter().sum();
        h.iter().map(|v| v / sum).collect()
    }

    /// `s` through the FIR `h`, as long as `s`.
    fn convolve(s: &[f64], h: &[f64]) -> Vec<f64> {
        (0..s.len())
            .map(|n| {
                h.iter()
                    .enumerate()
                    .filter(|&(k, _)| k <= n)
                    .map(|(k, c)| c * s[n - k])
                    .sum()
            })
            .collect()
    }

    /// A linear-phase high-pass FIR: the low-pass's complement.
    fn high_pass(cutoff_hz: f64, rate: u32, taps: usize) -> Vec<f64> {
        let mut h: Vec<f64> = low_pass(cutoff_hz, rate, taps).iter().map(|v| -v).collect();
        h[taps / 2] += 1.0;
        h
    }

    #[test]
    fn audio_with_little_below_the_coarse_band_is_still_found_to_the_sample() {
        // Speech high-passed upstream of the stage: the coarse band (60 to 700 Hz at 16 kHz)
        // holds little or only a narrow band of it.
        let rate = 16_000;
        for (cutoff, seed) in [(800.0, 21), (500.0, 22), (2_000.0, 23)] {
            let (s, start, len) = source(rate, seed);
            let s: Vec<f64> = convolve(&s, &high_pass(cutoff, rate, 101))
                .iter()
                .map(|v| v * 2.0)
                .collect();
            for delay in [5, 37, -13, 1_234, -7_777] {
                let (pre, post) = pair(&s, start, len, delay, |v| v * 0.8);
                let f = analyze(&pre, &post, &Config::new(rate));
                assert_eq!(f.delay, delay as i64, "high-pass {cutoff} Hz: {f:?}");
                assert!(f.correlation >= 0.999, "high-pass {cutoff} Hz: {f:?}");
                assert!((f.gain_db + 1.94).abs() < 0.05, "{f:?}");
            }
        }
    }

    #[test]
    fn a_dc_offset_under_quiet_speech_moves_neither_delay_nor_correlation() {
        let rate = 16_000;
        let (s, start, len) = source(rate, 31);
        // Speech at about -47 dBFS on an offset of 2,000 (-24 dBFS), and on a larger one.
        for offset in [2_000.0, 12_000.0] {
            let quiet: Vec<f64> = s.iter().map(|v| v * 0.05 + offset).collect();
            for delay in [500, -321, 0] {
                let (pre, post) = pair(&quiet, start, len, delay, |v| v);
                let f = analyze(&pre, &post, &Config::new(rate));
                assert_eq!(f.delay, delay as i64, "offset {offset}: {f:?}");
                assert!(f.correlation >= 0.99, "offset {offset}: {f:?}");
            }
        }
    }

    #[test]
    fn a_bucket_that_is_mostly_padding_is_aligned_on_its_sound() {
        // The first or last bucket of a call: a little sound, then (or before it) digital
        // silence, POST 10 ms later and 6 dB down, whatever the search's width.
        let rate = 16_000;
        let (s, start, len) = source(rate, 41);
        for sound_ms in [160, 600, 2_500] {
            let sound = sound_ms * rate as usize / 1_000;
            for at_end in [false, true] {
                for max_delay_ms in [500, 2_000] {
                    let (mut pre, mut post) = pair(&s, start, len, 160, |v| v * 0.5);
                    let keep = |n: usize| if at_end { n >= len - sound } else { n < sound };
                    for (n, (x, y)) in pre.iter_mut().zip(post.iter_mut()).enumerate() {
                        if !keep(n) {
                            *x = 0;
                        }
                        // POST's sound is PRE's, 160 samples later.
                        if n < 160 || !keep(n - 160) {
                            *y = 0;
                        }
                    }
                    let config = Config::new(rate).with_max_delay_ms(max_delay_ms);
                    let f = analyze(&pre, &post, &config);
                    let case = format!("{sound_ms} ms at the end: {at_end}, ±{max_delay_ms} ms");
                    assert_eq!(f.delay, 160, "{case}: {f:?}");
                    assert!(f.correlation >= 0.99, "{case}: {f:?}");
                    assert!((f.gain_db + 6.02).abs() < 0.1, "{case}: {f:?}");
                }
            }
        }
    }

    #[test]
    fn a_low_pass_stage_adds_its_group_delay() {
        for (rate, cutoff, taps, delay) in [
            (16_000, 1_000.0, 63, 1_920),
            (16_000, 3_400.0, 31, -800),
            (8_000, 1_000.0, 41, 0),
            (48_000, 4_000.0, 101, 480),
        ] {
            let (s, start, len) = source(rate, 5);
            let h = low_pass(cutoff, rate, taps);
            let filtered = convolve(&s, &h);
            let pre = quantise(s[start..start + len].iter().copied());
            let post_start = (start as isize - delay) as usize;
            let post = quantise(filtered[post_start..post_start + len].iter().copied());
            let f = analyze(&pre, &post, &Config::new(rate));
            let expected = delay + (taps / 2) as isize;
            assert!(
                (f.delay - expected as i64).abs() <= 1,
                "{rate} Hz, {cutoff} Hz, {taps} taps: expected {expected}, {f:?}"
            );
            assert!(f.correlation > 0.5, "{f:?}");
        }
    }

    #[test]
    fn a_stage_that_clips_is_told() {
        let rate = 16_000;
        let (s, start, len) = source(rate, 9);
        let (pre, post) = pair(&s, start, len, 320, |v| v * db(20.0));
        let f = analyze(&pre, &post, &Config::new(rate));
        assert_eq!(f.delay, 320, "{f:?}");
        assert_eq!(f.pre_clipped_samples, 0);
        let full_scale = post
            .iter()
            .filter(|&&s| s == i16::MAX || s == i16::MIN)
            .count();
        assert!(full_scale > 0);
        assert_eq!(f.post_clipped_samples, full_scale as u64);
        assert!(f.stage_clips());
        // Clipping on both sides is not the stage's doing.
        let g = analyze(&post, &post, &Config::new(rate));
        assert_eq!(g.pre_clipped_samples, g.post_clipped_samples);
        assert!(!g.stage_clips());
        assert_eq!((g.delay, g.gain_db), (0, 0.0));
    }

    #[test]
    fn silence_on_either_side_gives_finite_sentinels() {
        let rate = 16_000;
        let (s, start, len) = source(rate, 1);
        let (sound, _) = pair(&s, start, len, 0, |v| v);
        let zeros = vec![0i16; len];
        // Under -60 dBFS peak: silent, though not digital silence.
        let hiss: Vec<i16> = quantise(speech::white(len, 2).iter().map(|v| v * 20.0));
        let config = Config::new(rate);
        for (pre, post, alignment) in [
            (&zeros, &sound, Alignment::PreSilent),
            (&sound, &zeros, Alignment::PostSilent),
            (&hiss, &sound, Alignment::PreSilent),
            (&zeros, &zeros, Alignment::BothSilent),
            (&zeros, &hiss, Alignment::BothSilent),
        ] {
            let f = analyze(pre, post, &config);
            assert_eq!(f.alignment, alignment, "{f:?}");
            assert_eq!((f.delay, f.delay_ms, f.correlation), (0, 0.0, 0.0));
            assert_eq!(f.gain_db, f.post_rms_dbfs - f.pre_rms_dbfs);
            assert!(f.gain_db.abs() <= GAIN_LIMIT_DB);
        }
        let f = analyze(&zeros, &zeros, &config);
        assert_eq!(
            (f.pre_rms_dbfs, f.post_rms_dbfs, f.gain_db),
            (FLOOR_DBFS, FLOOR_DBFS, 0.0)
        );
        assert_eq!((f.pre_voiced_ratio, f.post_voiced_ratio), (0.0, 0.0));
        let f = analyze(&sound, &zeros, &config);
        assert!(f.gain_db < -50.0 && f.pre_voiced_ratio > 0.3, "{f:?}");
        // A lower threshold takes the hiss for sound.
        let config = Config {
            silence_threshold_dbfs: -80.0,
            ..config
        };
        assert_eq!(
            analyze(&hiss, &sound, &config).alignment,
            Alignment::Measured
        );
    }

    #[test]
    fn short_sides_and_a_zero_rate_are_too_short() {
        let (s, start, _) = source(16_000, 4);
        let (long, _) = pair(&s, start, 16_000, 0, |v| v);
        for (pre, post, rate) in [
            (&long[..1_599], &long[..], 16_000),
            (&long[..], &long[..10], 16_000),
            (&long[..0], &long[..0], 16_000),
            (&long[..], &long[..], 0),
        ] {
            let f = analyze(pre, post, &Config::new(rate));
            assert_eq!(f.alignment, Alignment::TooShort, "{f:?}");
            assert_eq!((f.delay, f.delay_ms, f.correlation), (0, 0.0, 0.0));
            assert!(f.gain_db.is_finite());
        }
        // 100 ms is enough; the search is held to half of it. The 100 ms are in a syllable.
        let loudest = (start..start + 64_000)
            .max_by(|&i, &j| s[i].abs().total_cmp(&s[j].abs()))
            .unwrap();
        let (pre, post) = pair(&s, loudest - 800, 1_600, 400, |v| v);
        let f = analyze(&pre, &post, &Config::new(16_000));
        assert_eq!((f.alignment, f.delay), (Alignment::Measured, 400), "{f:?}");
    }

    #[test]
    fn sides_of_different_lengths_are_aligned_on_their_overlap() {
        let (s, start, len) = source(16_000, 6);
        let (pre, post) = pair(&s, start, len, -1_000, |v| v * 0.5);
        let f = analyze(&pre[..60_000], &post, &Config::new(16_000));
        assert_eq!(f.delay, -1_000, "{f:?}");
        assert!((f.gain_db + 6.02).abs() < 0.05, "{f:?}");
    }

    #[test]
    fn the_search_stays_within_the_maximum_delay() {
        let (s, start, len) = source(16_000, 8);
        let (pre, post) = pair(&s, start, len, 4_000, |v| v);
        let config = Config::new(16_000).with_max_delay_ms(100);
        assert_eq!(config.max_delay, 1_600);
        let f = analyze(&pre, &post, &config);
        assert!(f.delay.abs() <= 1_600, "{f:?}");
        assert!(f.correlation < 0.5, "{f:?}");
        let f = analyze(&pre, &post, &config.with_max_delay_ms(0));
        assert_eq!(f.delay, 0, "{f:?}");
        let f = analyze(&pre, &post, &config.with_max_delay_ms(250));
        assert_eq!(f.delay, 4_000, "{f:?}");
    }

    #[test]
    fn an_analyzer_gives_the_same_figures_whatever_it_compared_before() {
        let mut analyzer = Analyzer::new();
        let mut each = Vec::new();
        for (rate, delay) in [(16_000, 1_920), (8_000, -37), (48_000, 0), (16_000, 1_920)] {
            let (s, start, len) = source(rate, 2);
            let (pre, post) = pair(&s, start, len, delay, |v| v * 0.7);
            let config = Config::new(rate);
            let f = analyzer.analyze(&pre, &post, &config);
            assert_eq!(f, analyze(&pre, &post, &config));
            assert_eq!(f.delay, delay as i64);
            each.push(f);
        }
        assert_eq!(each[0], each[3]);
        fn send<T: Send>(_: &T) {}
        send(&analyzer);
    }

    #[test]
    fn the_cic_filter_is_a_box_applied_five_times() {
        let samples: Vec<i16> = (0..200)
            .map(|i| ((i * 7919) % 2001 - 1000) as i16)
            .collect();
        let factor = 4;
        let mut filtered: Vec<f64> = samples.iter().map(|&s| f64::from(s)).collect();
        for _ in 0..CIC_ORDER {
            filtered = (0..filtered.len())
                .map(|n| {
                    (0..factor)
                        .filter(|&k| k <= n)
                        .map(|k| filtered[n - k])
                        .sum()
                })
                .collect();
        }
        let mut out = Vec::new();
        decimate(&samples, 0, factor, &mut out);
        assert_eq!(out.len(), 50);
        for (k, &v) in out.iter().enumerate() {
            let expected = filtered[k * factor + factor - 1] / (factor as f64).powi(5);
            assert!(
                (f64::from(v) - expected).abs() < 1e-3,
                "{k}: {v} {expected}"
            );
        }
        // Full scale through a long filter: the integrators wrap, the outputs do not.
        let loud = vec![i16::MIN; 4_800];
        decimate(&loud, 0, 24, &mut out);
        assert!(out[5..].iter().all(|&v| v == -32_768.0), "{out:?}");
    }

    #[test]
    fn fft_lengths_are_even_and_smooth() {
        assert_eq!(fft_len(0), 2);
        assert_eq!(fft_len(11_001), 11_250);
        assert_eq!(fft_len(1_024), 1_024);
        assert_eq!(fft_len(7), 8);
    }

    proptest::proptest! {
        #[test]
        fn every_figure_is_finite_and_in_range(
            pre in proptest::collection::vec(proptest::num::i16::ANY, 0..3_000),
            post in proptest::collection::vec(proptest::num::i16::ANY, 0..3_000),
            rate in proptest::sample::select(vec![8_000u32, 16_000, 1_000]),
            max_delay in 0usize..4_000,
        ) {
            let config = Config { max_delay, ..Config::new(rate) };
            let f = analyze(&pre, &post, &config);
            for v in [f.delay_ms, f.correlation, f.gain_db, f.pre_rms_dbfs, f.post_rms_dbfs,
                      f.pre_voiced_ratio, f.post_voiced_ratio] {
                proptest::prop_assert!(v.is_finite(), "{:?}", f);
            }
            proptest::prop_assert!((0.0..=1.0).contains(&f.correlation));
            proptest::prop_assert!(f.gain_db.abs() <= GAIN_LIMIT_DB);
            proptest::prop_assert!(f.delay.unsigned_abs() as usize <= max_delay);
        }
    }
}
