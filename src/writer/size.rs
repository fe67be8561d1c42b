//! How large a segment file is, and how large a WAV header lets it be.
//!
//! A segment is a WAV file of a 44-byte header followed by 2 bytes per sample (mono S16LE). The
//! header gives the size of the RIFF chunk (the file less its first 8 bytes) and of the samples
//! as unsigned 32-bit numbers: past [`MAX_WAV_FILE_BYTES`] they wrap, and the header of a
//! complete file would claim a fraction of it.

/// Bytes before the first sample.
pub const WAV_HEADER_BYTES: u64 = 44;

/// The largest file a WAV header can describe: its RIFF chunk, all but 8 bytes, counts in a u32.
pub const MAX_WAV_FILE_BYTES: u64 = u32::MAX as u64 + 8;

const NS_PER_SEC: u128 = 1_000_000_000;

/// Bytes of the largest segment file at `rate` samples per second with segments of
/// `duration_ns`: the header, then the longest bucket, `ceil(duration · rate)` samples.
pub fn segment_file_bytes(rate: u32, duration_ns: u64) -> u64 {
    let samples = (u128::from(duration_ns) * u128::from(rate)).div_ceil(NS_PER_SEC);
    u64::try_from(u128::from(WAV_HEADER_BYTES) + 2 * samples).unwrap_or(u64::MAX)
}

/// The longest segment duration, in whole seconds, whose files a WAV header can describe at
/// `rate`.
pub fn max_segment_seconds(rate: u32) -> u64 {
    (MAX_WAV_FILE_BYTES - WAV_HEADER_BYTES) / 2 / u64::from(rate.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR_NS: u64 = 3_600_000_000_000;

    #[test]
    fn a_file_is_the_header_and_the_longest_bucket() {
        assert_eq!(segment_file_bytes(16_000, 5_000_000_000), 44 + 160_000);
        // 1.5 samples per bucket: some buckets hold 2.
        assert_eq!(segment_file_bytes(3, 500_000_000), 44 + 4);
        assert_eq!(segment_file_bytes(768_000, HOUR_NS), 5_529_600_044);
        assert_eq!(segment_file_bytes(u32::MAX, u64::MAX), u64::MAX);
    }

    #[test]
    fn the_wav_header_bounds_the_file() {
        // The largest file whose RIFF chunk size fits in 32 bits, and one sample more.
        let fits = 2_147_483_629;
        assert_eq!(
            segment_file_bytes(1, fits * 1_000_000_000),
            MAX_WAV_FILE_BYTES - 1
        );
        assert_eq!(
            segment_file_bytes(1, (fits + 1) * 1_000_000_000),
            MAX_WAV_FILE_BYTES + 1
        );
        assert_eq!(max_segment_seconds(1), fits);
        assert!(segment_file_bytes(1, fits * 1_000_000_000 + 1) > MAX_WAV_FILE_BYTES);
        // 384 kHz in segments of an hour fits; twice the rate does not.
        assert!(segment_file_bytes(384_000, HOUR_NS) <= MAX_WAV_FILE_BYTES);
        assert!(segment_file_bytes(768_000, HOUR_NS) > MAX_WAV_FILE_BYTES);
        assert_eq!(max_segment_seconds(768_000), 2_796);
        assert!(segment_file_bytes(768_000, 2_796 * 1_000_000_000) <= MAX_WAV_FILE_BYTES);
        assert!(segment_file_bytes(768_000, 2_797 * 1_000_000_000) > MAX_WAV_FILE_BYTES);
    }
}
