//! Rebuilds one continuous recording of a tap from its segment files, to listen to a whole call
//! (the `segmentrecorder-rebuild` program) and as the tests' oracle.
//!
//! The segments of a tap are read across all date directories, in bucket order. A bucket
//! without a file (nothing was recorded then) becomes silence of the bucket's length. A bucket
//! with several files (`segment_<ms>.wav`, `segment_<ms>-1.wav`, …: a call boundary, a rate
//! change or a re-anchored stream) is merged sample by sample, the first file with a non-zero
//! sample giving it, since such files hold silence wherever the other holds the stream.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::layout::{Found, Identity, SegmentFile, Walk, identity_dir};
use crate::segmentrecorder::MAX_RATE;
use crate::timeline::{Grid, NS_PER_SEC};
use crate::writer::extend_from_le;

/// A tap's audio, from the start of its first bucket to the end of its last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebuilt {
    /// Start of the first bucket, in ms on the recorder's timeline.
    pub first_bucket_ms: u64,
    /// Samples per second.
    pub rate: u32,
    /// The samples.
    pub samples: Vec<i16>,
    /// Buckets covered, files or not.
    pub buckets: u64,
    /// Buckets without a file, filled with silence.
    pub missing: u64,
}

/// Why a tap could not be rebuilt.
#[derive(Debug)]
pub enum RebuildError {
    /// No segment file was found.
    NoSegments(PathBuf),
    /// A file could not be read.
    Io(PathBuf, io::Error),
    /// A file is not a mono 16-bit WAV.
    Wav(PathBuf, hound::Error),
    /// Files of one tap have different rates: they cannot be joined.
    RateChange {
        path: PathBuf,
        rate: u32,
        expected: u32,
    },
    /// A file's length does not match the segment duration.
    Length {
        path: PathBuf,
        samples: u64,
        expected: u64,
    },
}

impl fmt::Display for RebuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RebuildError::NoSegments(dir) => {
                write!(f, "no segment files under {}/*/", dir.display())
            }
            RebuildError::Io(path, e) => write!(f, "{}: {e}", path.display()),
            RebuildError::Wav(path, e) => write!(f, "{}: {e}", path.display()),
            RebuildError::RateChange {
                path,
                rate,
                expected,
            } => write!(
                f,
                "{} is at {rate} Hz, earlier files at {expected} Hz: a recording whose rate \
                 changes cannot be joined into one file",
                path.display()
            ),
            RebuildError::Length {
                path,
                samples,
                expected,
            } => write!(
                f,
                "{} holds {samples} samples where its bucket holds {expected}: give the \
                 recorder's segment duration",
                path.display()
            ),
        }
    }
}

impl std::error::Error for RebuildError {}

/// The segment files of `identity` under `base`, in bucket and file order.
fn segments(base: &Path, identity: &Identity) -> Result<Vec<SegmentFile>, RebuildError> {
    let mut found = Vec::new();
    for item in Walk::identity(base, identity) {
        if let Found::Segment(segment) = item.map_err(|(dir, e)| RebuildError::Io(dir, e))? {
            found.push(segment);
        }
    }
    found.sort_by_key(|s| (s.bucket_ms, s.file_index));
    Ok(found)
}

/// The samples and rate of the segment file at `path`, which must be a mono 16-bit WAV.
pub fn read_segment(path: &Path) -> Result<(Vec<i16>, u32), RebuildError> {
    let (mut bytes, mut samples) = (Vec::new(), Vec::new());
    let rate = read_segment_into(path, &mut bytes, &mut samples)?;
    Ok((samples, rate))
}

/// [`read_segment`] into buffers the caller keeps: the file's content into `bytes`, its
/// samples into `samples`; the rate. A thread reading many files reuses their memory rather
/// than mapping fresh pages for each.
pub fn read_segment_into(
    path: &Path,
    bytes: &mut Vec<u8>,
    samples: &mut Vec<i16>,
) -> Result<u32, RebuildError> {
    let io_err = |e| RebuildError::Io(path.to_owned(), e);
    bytes.clear();
    fs::File::open(path)
        .and_then(|mut file| file.read_to_end(bytes))
        .map_err(io_err)?;
    decode_segment_into(path, bytes, samples)
}

/// The samples and rate of `bytes`, the content of the segment file at `path` (named in
/// errors), which must be a mono 16-bit WAV.
pub fn decode_segment(path: &Path, bytes: &[u8]) -> Result<(Vec<i16>, u32), RebuildError> {
    let mut samples = Vec::new();
    let rate = decode_segment_into(path, bytes, &mut samples)?;
    Ok((samples, rate))
}

/// [`decode_segment`] into `samples`, which it replaces: the rate.
pub fn decode_segment_into(
    path: &Path,
    bytes: &[u8],
    samples: &mut Vec<i16>,
) -> Result<u32, RebuildError> {
    let wav_err = |e| RebuildError::Wav(path.to_owned(), e);
    // One read and a conversion of the data chunk: decoding sample by sample through the WAV
    // reader costs four times what comparing a pair does.
    let mut cursor = io::Cursor::new(bytes);
    let (spec, len) = {
        let reader = hound::WavReader::new(&mut cursor).map_err(wav_err)?;
        (reader.spec(), reader.len() as usize)
    };
    if spec.channels != 1 || spec.bits_per_sample != 16 {
        return Err(wav_err(hound::Error::Unsupported));
    }
    // A rate the recorder never writes is a damaged header: taken at its word, it would have
    // whoever joins the file allocate in proportion to it.
    if !(1..=MAX_RATE as u32).contains(&spec.sample_rate) {
        return Err(wav_err(hound::Error::FormatError(
            "sample rate outside the recorder's 1 to 384000 Hz",
        )));
    }
    // The reader stops at the start of the data chunk, whose length its header gave.
    let start = cursor.position() as usize;
    let data = bytes.get(start..start + 2 * len).ok_or_else(|| {
        wav_err(hound::Error::FormatError(
            "data chunk shorter than its header says",
        ))
    })?;
    samples.clear();
    extend_from_le(samples, data);
    Ok(spec.sample_rate)
}

/// Rebuilds the tap of `identity` recorded under `base`. The segment duration is the
/// recorder's, or if `None`, that of the first file rounded to the millisecond.
pub fn rebuild(
    base: &Path,
    identity: &Identity,
    segment_duration_ns: Option<u64>,
) -> Result<Rebuilt, RebuildError> {
    let segments = segments(base, identity)?;
    if segments.is_empty() {
        return Err(RebuildError::NoSegments(base.join(identity_dir(identity))));
    }
    rebuild_files(&segments, segment_duration_ns)
}

/// Rebuilds a tap from its segment files `segments`, given in bucket and file order, for a
/// tool that found them itself. The segment duration is as for [`rebuild`]; no segments at
/// all is [`RebuildError::NoSegments`].
pub fn rebuild_files(
    segments: &[SegmentFile],
    segment_duration_ns: Option<u64>,
) -> Result<Rebuilt, RebuildError> {
    let Some(first) = segments.first() else {
        return Err(RebuildError::NoSegments(PathBuf::new()));
    };
    let (first_samples, rate) = read_segment(&first.path)?;
    let duration_ns = segment_duration_ns.unwrap_or_else(|| {
        let ms = (first_samples.len() as u64 * 1_000 + u64::from(rate) / 2) / u64::from(rate);
        ms.max(1) * 1_000_000
    });
    let grid = Grid::new(rate, duration_ns);
    let index_of = |ms: u64| ms * 1_000_000 / duration_ns;

    let mut buckets: BTreeMap<u64, Vec<i16>> = BTreeMap::new();
    for segment in segments {
        let (samples, file_rate) = read_segment(&segment.path)?;
        if file_rate != rate {
            return Err(RebuildError::RateChange {
                path: segment.path.clone(),
                rate: file_rate,
                expected: rate,
            });
        }
        let k = index_of(segment.bucket_ms);
        let expected = grid.bucket(k).len();
        if samples.len() as u64 != expected {
            return Err(RebuildError::Length {
                path: segment.path.clone(),
                samples: samples.len() as u64,
                expected,
            });
        }
        match buckets.get_mut(&k) {
            None => {
                buckets.insert(k, samples);
            }
            Some(merged) => {
                for (m, s) in merged.iter_mut().zip(samples) {
                    if *m == 0 {
                        *m = s;
                    }
                }
            }
        }
    }

    let (&first_k, _) = buckets.first_key_value().expect("one segment at least");
    let (&last_k, _) = buckets.last_key_value().expect("one segment at least");
    let mut samples = Vec::new();
    let mut missing = 0;
    for k in first_k..=last_k {
        match buckets.remove(&k) {
            Some(bucket) => samples.extend(bucket),
            None => {
                missing += 1;
                samples.resize(samples.len() + grid.bucket(k).len() as usize, 0);
            }
        }
    }
    Ok(Rebuilt {
        first_bucket_ms: grid.bucket(first_k).start_ns / (NS_PER_SEC / 1_000),
        rate,
        samples,
        buckets: last_k - first_k + 1,
        missing,
    })
}

/// Writes a rebuilt tap as a mono 16-bit WAV file.
pub fn write_wav(rebuilt: &Rebuilt, path: &Path) -> Result<(), hound::Error> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rebuilt.rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut wav = hound::WavWriter::create(path, spec)?;
    let mut writer = wav.get_i16_writer(rebuilt.samples.len() as u32);
    for &s in &rebuilt.samples {
        writer.write_sample(s);
    }
    writer.flush()?;
    wav.finalize()
}

/// Writes `samples` at `rate` as a segment file at `path`, making its directories: the tests'
/// way to lay out a tree of segments.
#[cfg(test)]
pub(crate) fn write_segment_for_tests(path: &Path, rate: u32, samples: &[i16]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let rebuilt = Rebuilt {
        first_bucket_ms: 0,
        rate,
        samples: samples.to_vec(),
        buckets: 1,
        missing: 0,
    };
    write_wav(&rebuilt, path).unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    use write_segment_for_tests as write;

    #[test]
    fn missing_buckets_are_silence_and_split_buckets_are_merged() {
        let dir = tempfile::tempdir().unwrap();
        let id = Identity::new("call", "stt", "PRE").unwrap();
        let tap = |date: &str| dir.path().join(date).join("call/stt/PRE");
        // 1 s buckets at 4 Hz: buckets 86398, 86399 (missing), 86400 (next day, two files).
        write(
            &tap("1970-01-01").join("segment_86398000.wav"),
            4,
            &[1, 2, 3, 4],
        );
        write(
            &tap("1970-01-02").join("segment_86400000.wav"),
            4,
            &[5, 6, 0, 0],
        );
        write(
            &tap("1970-01-02").join("segment_86400000-1.wav"),
            4,
            &[0, 0, 7, 8],
        );
        fs::write(tap("1970-01-02").join("segment_86401000.wav.part"), b"").unwrap();
        let r = rebuild(dir.path(), &id, None).unwrap();
        assert_eq!(r.samples, [1, 2, 3, 4, 0, 0, 0, 0, 5, 6, 7, 8]);
        assert_eq!(
            (r.first_bucket_ms, r.rate, r.buckets, r.missing),
            (86_398_000, 4, 3, 1)
        );
    }

    #[test]
    fn a_rate_change_or_a_wrong_length_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let id = Identity::new("call", "stt", "POST").unwrap();
        let tap = dir.path().join("1970-01-01/call/stt/POST");
        write(&tap.join("segment_0.wav"), 4, &[1, 2, 3, 4]);
        write(&tap.join("segment_0-1.wav"), 8, &[0; 8]);
        let err = rebuild(dir.path(), &id, None).unwrap_err();
        assert!(matches!(
            err,
            RebuildError::RateChange {
                rate: 8,
                expected: 4,
                ..
            }
        ));
        fs::remove_file(tap.join("segment_0-1.wav")).unwrap();
        write(&tap.join("segment_1000.wav"), 4, &[1, 2, 3]);
        let err = rebuild(dir.path(), &id, None).unwrap_err();
        assert!(
            err.to_string()
                .contains("holds 3 samples where its bucket holds 4")
        );
        // A header claiming a rate the recorder never writes: refused before anything is
        // sized by it.
        let mut bytes = fs::read(tap.join("segment_0.wav")).unwrap();
        bytes[24..28].copy_from_slice(&2_000_000_000u32.to_le_bytes());
        bytes[28..32].copy_from_slice(&4_000_000_000u32.to_le_bytes());
        let err = decode_segment(Path::new("x.wav"), &bytes).unwrap_err();
        assert!(err.to_string().contains("sample rate outside"), "{err}");
        let err = rebuild(dir.path(), &Identity::new("x", "y", "PRE").unwrap(), None);
        assert!(matches!(err, Err(RebuildError::NoSegments(_))));
    }
}
