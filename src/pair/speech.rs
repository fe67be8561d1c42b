//! Speech-like test signals for the pair analysis, its tests and its benchmark: noise shaped
//! like speech's spectrum (mostly under 500 Hz, some highs) in syllable-long bursts with pauses.
//! Unlike a sine or any periodic signal, such a signal matches itself at one lag only, as speech
//! does, so a delay found in it is the delay. Built with the `test-seams` feature.

use std::f64::consts::PI;

/// Peak of [`speech_like`], in sample units: −11 dBFS, room for +6 dB.
pub const PEAK: f64 = 9_000.0;

/// A reproducible pseudo-random sequence (SplitMix64).
struct Noise(u64);

impl Noise {
    /// Uniform in [−1, 1).
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }

    /// Uniform in [low, high).
    fn between(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * (self.next() + 1.0) / 2.0
    }
}

/// `len` samples of white noise, uniform in [−1, 1), from `seed`.
pub fn white(len: usize, seed: u64) -> Vec<f64> {
    let mut noise = Noise(seed);
    (0..len).map(|_| noise.next()).collect()
}

/// `len` samples at `rate` of a speech-like signal from `seed`, peaking at [`PEAK`]: syllables
/// of 120 to 300 ms with a sin² envelope and levels 10 dB apart at most, pauses of 30 to 150 ms
/// of digital silence, noise low-passed at 500 Hz with a fifth of white noise for the highs.
pub fn speech_like(rate: u32, len: usize, seed: u64) -> Vec<f64> {
    let mut noise = Noise(seed ^ 0x5EED);
    let rate = f64::from(rate.max(1));
    let pole = (-2.0 * PI * 500.0 / rate).exp();
    // The low-passed noise scaled back to the white noise's level.
    let unit = ((1.0 + pole) / (1.0 - pole)).sqrt();
    let mut low = 0.0;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        let syllable = (noise.between(0.12, 0.30) * rate) as usize;
        let level = noise.between(0.3, 1.0);
        for i in 0..syllable {
            let envelope = level * (PI * i as f64 / syllable as f64).sin().powi(2);
            let w = noise.next();
            low = pole * low + (1.0 - pole) * w;
            out.push(envelope * (low * unit + 0.2 * w));
        }
        let pause = (noise.between(0.03, 0.15) * rate) as usize;
        out.extend(std::iter::repeat_n(0.0, pause));
    }
    out.truncate(len);
    let peak = out.iter().fold(0f64, |m, v| m.max(v.abs()));
    if peak > 0.0 {
        out.iter_mut().for_each(|v| *v *= PEAK / peak);
    }
    out
}

/// Samples rounded to 16 bits, saturating at full scale as a stage that clips would.
pub fn quantise(samples: impl IntoIterator<Item = f64>) -> Vec<i16> {
    samples.into_iter().map(|v| v.round() as i16).collect()
}
