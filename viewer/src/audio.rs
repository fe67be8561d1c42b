//! A tap as one continuous WAV, or a time range of it: the segments joined by the library's
//! rebuild (missing buckets as silence, a bucket's several files merged), a range carried as
//! silence wherever no file covers it, served whole or by byte range so that an `<audio>`
//! element can seek. The rebuilt samples are cached, bounded.

use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

use gstsegmentrecorder::layout::SegmentFile;
use gstsegmentrecorder::rebuild::{Rebuilt, rebuild_files};

use crate::cache::Bounded;
use crate::peaks::PeaksCache;
use crate::tree::{Segment, below};

/// Bytes of rebuilt audio kept (an hour at 16 kHz is 115 MB).
const BUDGET_BYTES: u64 = 384 << 20;

/// Bytes of the WAV header before the samples.
pub const HEADER_LEN: u64 = 44;

/// Audio of a tap between two times, ready to serve.
#[derive(Debug)]
pub struct Clip {
    /// Where its first sample lies, in ms on the recorder's timeline.
    pub start_ms: f64,
    pub rate: u32,
    pub samples: Vec<i16>,
}

impl Clip {
    /// Length of the whole WAV file, in bytes.
    pub fn len(&self) -> u64 {
        HEADER_LEN + 2 * self.samples.len() as u64
    }

    /// Writes bytes `from..to` of the WAV file (`to` at most [`Clip::len`]) to `out`, a
    /// piece at a time.
    pub fn write_range(&self, from: u64, to: u64, out: &mut dyn Write) -> io::Result<()> {
        let data_len = 2 * self.samples.len() as u32;
        let mut header = Vec::with_capacity(HEADER_LEN as usize);
        header.extend_from_slice(b"RIFF");
        header.extend_from_slice(&(36 + data_len).to_le_bytes());
        header.extend_from_slice(b"WAVEfmt ");
        header.extend_from_slice(&16u32.to_le_bytes());
        header.extend_from_slice(&1u16.to_le_bytes()); // PCM
        header.extend_from_slice(&1u16.to_le_bytes()); // mono
        header.extend_from_slice(&self.rate.to_le_bytes());
        header.extend_from_slice(&(2 * self.rate).to_le_bytes());
        header.extend_from_slice(&2u16.to_le_bytes());
        header.extend_from_slice(&16u16.to_le_bytes());
        header.extend_from_slice(b"data");
        header.extend_from_slice(&data_len.to_le_bytes());
        if from < HEADER_LEN {
            out.write_all(&header[from as usize..to.min(HEADER_LEN) as usize])?;
        }
        // Bytes `first..last` of the samples, converted a piece at a time.
        let first = from.max(HEADER_LEN) - HEADER_LEN;
        let last = to.max(HEADER_LEN) - HEADER_LEN;
        const PIECE: u64 = 32 << 10;
        let mut piece = Vec::with_capacity(2 * PIECE as usize);
        let mut at = first / 2 * 2;
        while at < last {
            let end = (at + 2 * PIECE).min(last.div_ceil(2) * 2);
            piece.clear();
            for sample in &self.samples[(at / 2) as usize..(end / 2) as usize] {
                piece.extend_from_slice(&sample.to_le_bytes());
            }
            let skip = (first.max(at) - at) as usize;
            let keep = (last.min(end) - at) as usize;
            out.write_all(&piece[skip..keep])?;
            at = end;
        }
        Ok(())
    }
}

/// What a clip is made of: the files (as found), and the range asked for.
type Key = (Vec<Segment>, Option<u64>, Option<u64>);

/// The clips served so far.
pub struct AudioCache {
    cache: Bounded<Key, Result<Clip, ClipError>>,
}

impl AudioCache {
    pub fn new() -> Self {
        AudioCache {
            cache: Bounded::new(BUDGET_BYTES),
        }
    }

    /// The audio of the tap whose segments are `segments` (under the canonical `base`), from
    /// `from_ms` to `to_ms` on the recorder's timeline where given (else from its first bucket
    /// to its last's end). Whatever has no file (holes, before the first bucket, after the
    /// last) is silence, and so are files that cannot be read (truncated, vanished); an error
    /// if no file of the tap can be read, or the rebuild refuses the files.
    pub fn clip(
        &self,
        base: &Path,
        peaks: &PeaksCache,
        segments: &[Segment],
        from_ms: Option<u64>,
        to_ms: Option<u64>,
    ) -> Arc<Result<Clip, ClipError>> {
        let key = (segments.to_vec(), from_ms, to_ms);
        if let Some(clip) = self.cache.get(&key) {
            return clip;
        }
        let clip = Arc::new(make_clip(base, peaks, segments, from_ms, to_ms));
        if let Ok(c) = clip.as_ref() {
            self.cache.insert(key, clip.clone(), c.len());
        }
        clip
    }
}

/// Longest audio one answer is made of: two hours, 230 MB at 16 kHz. A call's whole tap, or a
/// range reaching far before its first bucket, would otherwise take memory in proportion to
/// the time it spans, recorded or not.
const MAX_CLIP_MS: u64 = 7_200_000;

/// Why a clip cannot be made.
#[derive(Debug, Clone)]
pub enum ClipError {
    /// Nothing to make it of.
    NotFound(String),
    /// It would span more than [`MAX_CLIP_MS`].
    TooLong(String),
}

impl std::fmt::Display for ClipError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClipError::NotFound(e) | ClipError::TooLong(e) => f.write_str(e),
        }
    }
}

fn make_clip(
    base: &Path,
    peaks: &PeaksCache,
    segments: &[Segment],
    from_ms: Option<u64>,
    to_ms: Option<u64>,
) -> Result<Clip, ClipError> {
    // The segment duration and the rate, from the first readable file, as the rebuild takes
    // them.
    let mut readable = Vec::new();
    let mut first_read = None;
    for s in segments {
        if let Ok(p) = peaks.get(base, s).as_ref() {
            first_read.get_or_insert((p.samples * 1_000 / u64::from(p.rate.max(1)), p.rate));
            readable.push(s);
        }
    }
    let (duration_ms, rate) = first_read
        .ok_or_else(|| ClipError::NotFound("no segment of this tap can be read".into()))?;
    let duration_ms = duration_ms.max(1);
    let first = readable.iter().map(|s| s.bucket_ms).min().unwrap_or(0);
    let last_end = readable.iter().map(|s| s.bucket_ms).max().unwrap_or(0) + duration_ms;
    // The clip runs from `from_ms` (else the first bucket) to `to_ms` (else the last bucket's
    // end), whatever files lie in between: bounded, whatever the request asks.
    let start_ms = from_ms.unwrap_or(first);
    let end_ms = to_ms.unwrap_or(last_end);
    if end_ms <= start_ms {
        return Err(ClipError::NotFound(format!(
            "this tap ends at {last_end}, before from={start_ms}"
        )));
    }
    let span_ms = end_ms - start_ms;
    if span_ms > MAX_CLIP_MS {
        return Err(ClipError::TooLong(format!(
            "the audio asked for spans {} s, more than {} s: ask for a shorter range with \
             from= and to=",
            span_ms / 1_000,
            MAX_CLIP_MS / 1_000
        )));
    }
    let files: Vec<SegmentFile> = readable
        .into_iter()
        .filter(|s| s.bucket_ms + duration_ms > start_ms && s.bucket_ms < end_ms)
        .filter_map(|s| {
            let file_type = std::fs::symlink_metadata(&s.path).ok()?.file_type();
            Some(SegmentFile {
                path: s.path.clone(),
                bucket_ms: s.bucket_ms,
                file_index: s.file_index,
                file_type,
            })
        })
        .collect();
    let samples_in = |ms: u64| (u128::from(ms) * u128::from(rate) / 1_000) as usize;
    // A range with no file in it (in a hole, before the first bucket or after the last) is
    // silence, like a hole between files.
    let mut samples = Vec::new();
    if !files.is_empty() {
        let rebuilt = rebuild_files(&files, Some(duration_ms * 1_000_000))
            .map_err(|e| ClipError::NotFound(below(base, &e.to_string())))?;
        let Rebuilt {
            first_bucket_ms,
            samples: joined,
            ..
        } = rebuilt;
        samples = joined;
        // Silence before the tap's first bucket, so that every tap of a call shares one time
        // origin; or what lies before `start_ms` cut.
        if start_ms < first_bucket_ms {
            let lead = samples_in(first_bucket_ms - start_ms);
            samples.splice(0..0, std::iter::repeat_n(0, lead));
        } else {
            let cut = samples_in(start_ms - first_bucket_ms).min(samples.len());
            samples.drain(..cut);
        }
    }
    // Up to `to_ms` exactly: cut, or carried on as silence where the files end first. Without
    // `to_ms`, the rebuild's own end (or silence, if every file in range vanished meanwhile).
    if to_ms.is_some() || files.is_empty() {
        samples.resize(samples_in(span_ms), 0);
    }
    Ok(Clip {
        start_ms: start_ms as f64,
        rate,
        samples,
    })
}

/// The byte range `from..to` an HTTP `Range` header asks of `len` bytes: `bytes=a-b`,
/// `bytes=a-` or `bytes=-n` (one range only), cut to the end. `None` if there is no header or
/// it is to be ignored, as RFC 9110 lets a server do: one it cannot parse, a last position
/// before the first (`bytes=5-2`), a suffix of no bytes (`bytes=-0`), several ranges.
/// `Some(Err)` if the range starts at or past the end: unsatisfiable, a 416.
pub fn range(header: Option<&str>, len: u64) -> Option<Result<(u64, u64), ()>> {
    let spec = header?.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let number = |text: &str| text.parse::<u64>().ok();
    let (first, end) = match (a, b) {
        ("", n) => {
            let n = number(n).filter(|&n| n > 0)?;
            (len.saturating_sub(n), len)
        }
        (a, "") => (number(a)?, len),
        (a, b) => {
            let (a, b) = (number(a)?, number(b)?);
            if b < a {
                return None;
            }
            (a, b.saturating_add(1).min(len))
        }
    };
    Some(if first < len {
        Ok((first, end))
    } else {
        Err(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_byte_range_is_the_same_bytes_as_the_whole_file() {
        let clip = Clip {
            start_ms: 0.0,
            rate: 8_000,
            samples: vec![1, -2, 300, i16::MIN, i16::MAX],
        };
        let bytes = |from, to| {
            let mut out = Vec::new();
            clip.write_range(from, to, &mut out).unwrap();
            out
        };
        let whole = bytes(0, clip.len());
        assert_eq!(whole.len(), 54);
        let read = hound::WavReader::new(std::io::Cursor::new(&whole)).unwrap();
        assert_eq!(read.spec().sample_rate, 8_000);
        let samples: Vec<i16> = read.into_samples().map(Result::unwrap).collect();
        assert_eq!(samples, clip.samples);
        for from in 0..clip.len() {
            for to in from..=clip.len() {
                assert_eq!(bytes(from, to), whole[from as usize..to as usize]);
            }
        }
    }

    #[test]
    fn range_headers() {
        assert_eq!(range(None, 100), None);
        assert_eq!(range(Some("bytes=0-"), 100), Some(Ok((0, 100))));
        assert_eq!(range(Some("bytes=10-19"), 100), Some(Ok((10, 20))));
        assert_eq!(range(Some("bytes=90-200"), 100), Some(Ok((90, 100))));
        assert_eq!(range(Some("bytes=-10"), 100), Some(Ok((90, 100))));
        assert_eq!(range(Some("bytes=-200"), 100), Some(Ok((0, 100))));
        // A last position past the end, up to the largest there is, is cut to the end.
        assert_eq!(
            range(Some("bytes=0-18446744073709551615"), 100),
            Some(Ok((0, 100)))
        );
        // Unsatisfiable: starting at or past the end.
        assert_eq!(range(Some("bytes=100-"), 100), Some(Err(())));
        assert_eq!(range(Some("bytes=999999999-"), 100), Some(Err(())));
        // Invalid, or asking for nothing: ignored, the whole file is the answer.
        for header in [
            "bytes=5-2",
            "bytes=-0",
            "bytes=-",
            "bytes=x-1",
            "bytes=1-y",
            "bytes=18446744073709551616-",
            "bytes=0-1,5-6",
            "items=0-1",
        ] {
            assert_eq!(range(Some(header), 100), None, "{header}");
        }
    }
}
