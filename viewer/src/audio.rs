//! A tap as one continuous WAV, or a time range of it: the segments joined as the library's
//! rebuild joins them (missing buckets as silence, a bucket's several files merged), and
//! silence wherever no file covers the range, a file cannot be read or is at another rate than
//! the tap's, or a file is shorter than its bucket. Served whole or by byte range so that an
//! `<audio>` element can seek. The rebuilt samples are cached, bounded; a clip is rebuilt once
//! however many ask for it at the same time, and the clips answers hold are bounded too.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::{self, Write};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use gstsegmentrecorder::rebuild::decode_segment;

use crate::cache::Bounded;
use crate::peaks::PeaksCache;
use crate::tree::{Segment, read_inside};

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

/// Where a clip comes from: the tap (call, station and tap directory names), a digest of its
/// files as found (names, sizes, modification times) and the segment duration, and the range
/// asked for. Small whatever the tap's length, and counted in the cache's budget all the same.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    tap: String,
    files: u64,
    from_ms: Option<u64>,
    to_ms: Option<u64>,
}

impl Key {
    /// The key of the range `from_ms..to_ms` of the tap named `tap` whose files are
    /// `segments`, in buckets of `duration_ms`.
    pub fn new(
        tap: String,
        segments: &[Segment],
        duration_ms: u64,
        from_ms: Option<u64>,
        to_ms: Option<u64>,
    ) -> Self {
        let mut digest = DefaultHasher::new();
        duration_ms.hash(&mut digest);
        segments.hash(&mut digest);
        Key {
            tap,
            files: digest.finish(),
            from_ms,
            to_ms,
        }
    }

    /// What the key takes in memory, as the cache counts it.
    fn cost(&self) -> u64 {
        (std::mem::size_of::<Self>() + self.tap.len()) as u64
    }
}

/// A clip, or why it cannot be made.
pub type ClipResult = Result<Clip, ClipError>;

/// A rebuild under way, which requests for the same clip wait for rather than repeat.
#[derive(Default)]
struct Flight {
    result: Mutex<Option<Arc<ClipResult>>>,
    done: Condvar,
}

/// Ends a rebuild under way whatever happens to it: its result (a failure if it panicked) goes
/// to whoever waits, and the next request for the clip finds the cache, not the flight.
struct Landing<'a> {
    cache: &'a AudioCache,
    key: &'a Key,
    flight: Arc<Flight>,
    result: Option<Arc<ClipResult>>,
}

impl Drop for Landing<'_> {
    fn drop(&mut self) {
        let result = self.result.take().unwrap_or_else(|| {
            Arc::new(Err(ClipError::NotFound(
                "the audio could not be made: the server failed on it".into(),
            )))
        });
        *lock(&self.flight.result) = Some(result);
        self.flight.done.notify_all();
        lock(&self.cache.flights).remove(self.key);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // What these mutexes hold stays whole whatever panicked while one was held.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The clips served so far, and those being rebuilt.
///
/// Mutex order: `flights`, then a flight's `result`; never the reverse (in fact never both).
pub struct AudioCache {
    cache: Bounded<Key, ClipResult>,
    flights: Mutex<HashMap<Key, Arc<Flight>>>,
    answers: Arc<Answers>,
}

impl AudioCache {
    pub fn new() -> Self {
        AudioCache {
            cache: Bounded::new(BUDGET_BYTES),
            flights: Mutex::new(HashMap::new()),
            answers: Arc::new(Answers::default()),
        }
    }

    /// The audio of the tap whose segments are `segments` (under the canonical `base`), in
    /// buckets of `duration_ms`, from `from_ms` to `to_ms` on the recorder's timeline where
    /// given (else from its first bucket to its last's end). Whatever has no file (holes,
    /// before the first bucket, after the last) is silence, and so are files that cannot be
    /// read (truncated, vanished, at another rate than the tap's); an error if no file of the
    /// tap can be read. Requests for a clip being rebuilt wait for that rebuild.
    pub fn clip(
        &self,
        base: &Path,
        peaks: &PeaksCache,
        key: Key,
        segments: &[Segment],
        duration_ms: u64,
    ) -> Arc<ClipResult> {
        if let Some(clip) = self.cache.get(&key) {
            return clip;
        }
        let flight = {
            let mut flights = lock(&self.flights);
            match flights.get(&key) {
                Some(flight) => Err(flight.clone()),
                None => {
                    let flight = Arc::new(Flight::default());
                    flights.insert(key.clone(), flight.clone());
                    Ok(flight)
                }
            }
        };
        let flight = match flight {
            Ok(flight) => flight,
            Err(flight) => {
                let mut result = lock(&flight.result);
                loop {
                    if let Some(clip) = result.as_ref() {
                        return clip.clone();
                    }
                    result = flight
                        .done
                        .wait(result)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            }
        };
        let mut landing = Landing {
            cache: self,
            key: &key,
            flight,
            result: None,
        };
        // Landed between the look in the cache and taking the flight.
        let clip = match self.cache.get(&key) {
            Some(clip) => clip,
            None => {
                let clip = Arc::new(make_clip(
                    base,
                    peaks,
                    segments,
                    duration_ms,
                    key.from_ms,
                    key.to_ms,
                ));
                if let Ok(c) = clip.as_ref() {
                    self.cache
                        .insert(key.clone(), clip.clone(), c.len() + key.cost());
                }
                clip
            }
        };
        landing.result = Some(clip.clone());
        clip
    }

    /// A hold on `clip` for an answer that writes it, or `None` if the clips held by answers
    /// being written would pass [`ANSWERS_BUDGET_BYTES`]: a clip counts once however many
    /// answers hold it, until the last lets go.
    pub fn hold(&self, clip: &Arc<ClipResult>) -> Option<Hold> {
        let bytes = clip.as_ref().as_ref().map_or(0, Clip::len);
        let id = Arc::as_ptr(clip) as usize;
        let mut guard = lock(&self.answers.held);
        let held = &mut *guard;
        if held.clips.get(&id).is_none_or(|(answers, _)| *answers == 0) {
            if held.total + bytes > ANSWERS_BUDGET_BYTES {
                return None;
            }
            held.total += bytes;
        }
        held.clips.entry(id).or_insert((0, bytes)).0 += 1;
        Some(Hold {
            answers: self.answers.clone(),
            clip: clip.clone(),
        })
    }
}

/// Bytes of clips that answers being written may hold at once, cached or not: beyond it a
/// request for audio is answered 503 until some are written. Without it, each slow client would
/// hold a clip of its own outside the cache's budget.
pub const ANSWERS_BUDGET_BYTES: u64 = 512 << 20;

/// The clips answers hold: by clip, how many answers and its bytes; and the bytes together.
#[derive(Default)]
struct Answers {
    held: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    clips: HashMap<usize, (usize, u64)>,
    total: u64,
}

/// A clip held by an answer, let go when dropped.
pub struct Hold {
    answers: Arc<Answers>,
    clip: Arc<ClipResult>,
}

impl Hold {
    /// The clip held.
    pub fn clip(&self) -> &ClipResult {
        &self.clip
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let id = Arc::as_ptr(&self.clip) as usize;
        let mut guard = lock(&self.answers.held);
        let held = &mut *guard;
        let Some(holders) = held.clips.get_mut(&id) else {
            return;
        };
        holders.0 -= 1;
        if holders.0 == 0 {
            let bytes = holders.1;
            held.clips.remove(&id);
            held.total -= bytes;
        }
    }
}

/// Longest audio one answer is made of: two hours, 230 MB at 16 kHz. A call's whole tap, or a
/// range reaching far before its first bucket, would otherwise take memory in proportion to
/// the time it spans, recorded or not.
const MAX_CLIP_MS: u64 = 7_200_000;

/// Most bytes of samples one answer is made of, whatever the rate: two hours at 16 kHz and a
/// little more.
const MAX_CLIP_BYTES: u64 = 240 << 20;

/// Why a clip cannot be made.
#[derive(Debug, Clone)]
pub enum ClipError {
    /// Nothing to make it of.
    NotFound(String),
    /// It would span more than [`MAX_CLIP_MS`], or take more than [`MAX_CLIP_BYTES`].
    TooLong(String),
}

impl std::fmt::Display for ClipError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClipError::NotFound(e) | ClipError::TooLong(e) => f.write_str(e),
        }
    }
}

/// The rate a tap's audio is served at: that of most of its readable files (the first's among
/// equals). Files at another rate (a rate change) are left out of its audio.
pub fn tap_rate(base: &Path, peaks: &PeaksCache, segments: &[Segment]) -> Option<u32> {
    let mut counts: Vec<(u32, usize)> = Vec::new();
    for s in segments {
        if let Ok(p) = peaks.get(base, s).as_ref() {
            match counts.iter_mut().find(|(rate, _)| *rate == p.rate) {
                Some((_, n)) => *n += 1,
                None => counts.push((p.rate, 1)),
            }
        }
    }
    // The first of the most frequent: `max_by_key` keeps the last of equals.
    counts
        .iter()
        .rev()
        .max_by_key(|(_, n)| *n)
        .map(|(rate, _)| *rate)
}

/// The sample of the recorder's timeline at `ms`, at `rate`.
fn sample_at(ms: u64, rate: u32) -> u64 {
    (u128::from(ms) * u128::from(rate) / 1_000) as u64
}

fn make_clip(
    base: &Path,
    peaks: &PeaksCache,
    segments: &[Segment],
    duration_ms: u64,
    from_ms: Option<u64>,
    to_ms: Option<u64>,
) -> ClipResult {
    let rate = tap_rate(base, peaks, segments)
        .ok_or_else(|| ClipError::NotFound("no segment of this tap can be read".into()))?;
    let duration_ms = duration_ms.max(1);
    let readable: Vec<&Segment> = segments
        .iter()
        .filter(|s| matches!(peaks.get(base, s).as_ref(), Ok(p) if p.rate == rate))
        .collect();
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
    let (start, end) = (sample_at(start_ms, rate), sample_at(end_ms, rate));
    if span_ms > MAX_CLIP_MS || 2 * (end - start) > MAX_CLIP_BYTES {
        return Err(ClipError::TooLong(format!(
            "the audio asked for spans {} s at {rate} Hz, more than {} s or {} MB: ask for a \
             shorter range with from= and to=",
            span_ms / 1_000,
            MAX_CLIP_MS / 1_000,
            MAX_CLIP_BYTES >> 20
        )));
    }
    // Sized by the span and checked above, never by what a file says.
    let mut samples = vec![0i16; (end - start) as usize];
    for s in readable {
        // The bucket's samples on the timeline, cut to the clip.
        let (bucket, bucket_end) = (
            sample_at(s.bucket_ms, rate),
            sample_at(s.bucket_ms + duration_ms, rate),
        );
        let (from, to) = (bucket.max(start), bucket_end.min(end));
        if from >= to {
            continue;
        }
        // A file that vanished or changed since it was listed is silence, like a hole; so is
        // one shorter than its bucket after its end (a segment recovered after a crash), and
        // what a longer one holds past it is not the bucket's.
        let Ok(bytes) = read_inside(base, &s.path) else {
            continue;
        };
        let Ok((file, file_rate)) = decode_segment(&s.path, &bytes) else {
            continue;
        };
        if file_rate != rate {
            continue;
        }
        let skip = (from - bucket) as usize;
        let take = ((to - from) as usize).min(file.len().saturating_sub(skip));
        let out = &mut samples[(from - start) as usize..][..take];
        // A bucket's several files hold silence wherever another holds the stream: the first
        // with a sample other than zero gives it, as the rebuild merges them.
        for (m, &v) in out.iter_mut().zip(&file[skip..skip + take]) {
            if *m == 0 {
                *m = v;
            }
        }
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
    use std::os::unix::fs::MetadataExt;
    use std::path::PathBuf;

    /// A segment file of `samples` at `rate` for the bucket at `bucket_ms`, written in `dir`.
    fn segment(dir: &Path, bucket_ms: u64, rate: u32, samples: &[i16]) -> Segment {
        let path = dir.join(format!("segment_{bucket_ms}.wav"));
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut wav = hound::WavWriter::create(&path, spec).unwrap();
        for &v in samples {
            wav.write_sample(v).unwrap();
        }
        wav.finalize().unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        Segment {
            bucket_ms,
            file_index: 0,
            path,
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()),
        }
    }

    fn base() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        (dir, base)
    }

    #[test]
    fn a_file_gone_after_it_was_listed_is_silence() {
        let (_dir, base) = base();
        let peaks = PeaksCache::new();
        let segments = [
            segment(&base, 0, 4, &[1; 4]),
            segment(&base, 1_000, 4, &[2; 4]),
        ];
        // Listed and read once, then removed (by retention, say) before the audio is made.
        for s in &segments {
            assert!(peaks.get(&base, s).is_ok());
        }
        std::fs::remove_file(&segments[1].path).unwrap();
        let clip = make_clip(&base, &peaks, &segments, 1_000, None, None).unwrap();
        assert_eq!(clip.samples, [1, 1, 1, 1, 0, 0, 0, 0]);
    }

    #[test]
    fn a_clip_is_sized_by_its_span_and_rate_never_by_a_header() {
        let (_dir, base) = base();
        let peaks = PeaksCache::new();
        let segments = [segment(&base, 0, 384_000, &[1; 4])];
        let err = make_clip(&base, &peaks, &segments, 1_000, Some(0), Some(7_000_000));
        assert!(matches!(err, Err(ClipError::TooLong(_))), "{err:?}");
    }

    #[test]
    fn a_key_is_small_however_many_files_the_tap_has() {
        let segments: Vec<Segment> = (0..10_000)
            .map(|k| Segment {
                bucket_ms: k * 5_000,
                file_index: 0,
                path: PathBuf::from(format!("2026-11-21/call/stt/PRE/segment_{}.wav", k)),
                size: 160_044,
                mtime_ns: 0,
            })
            .collect();
        let key = Key::new("call/stt/PRE".into(), &segments, 5_000, Some(1), Some(2));
        assert!(key.cost() < 256, "{}", key.cost());
        let other = Key::new(
            "call/stt/PRE".into(),
            &segments[1..],
            5_000,
            Some(1),
            Some(2),
        );
        assert_ne!(key, other, "another set of files is another clip");
    }

    #[test]
    fn clips_asked_for_at_once_are_made_once() {
        let (_dir, base) = base();
        let peaks = PeaksCache::new();
        let segments = [segment(&base, 0, 16_000, &[1; 16_000])];
        let audio = AudioCache::new();
        let start = std::sync::Barrier::new(4);
        let clips: Vec<Arc<ClipResult>> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..4)
                .map(|_| {
                    scope.spawn(|| {
                        start.wait();
                        // Ten minutes: long enough to make that the others ask meanwhile.
                        let key = Key::new("c/s/PRE".into(), &segments, 1_000, None, Some(600_000));
                        audio.clip(&base, &peaks, key, &segments, 1_000)
                    })
                })
                .collect();
            threads.into_iter().map(|t| t.join().unwrap()).collect()
        });
        assert!(clips[0].is_ok());
        for clip in &clips[1..] {
            assert!(Arc::ptr_eq(clip, &clips[0]), "one rebuild shared by all");
        }
        assert!(lock(&audio.flights).is_empty());
    }

    #[test]
    fn the_clips_answers_hold_are_bounded_and_each_counts_once() {
        let audio = AudioCache::new();
        // 200 MB each; never written to, so never given memory.
        let clip = || {
            Arc::new(Ok(Clip {
                start_ms: 0.0,
                rate: 16_000,
                samples: vec![0; 100 << 20],
            }))
        };
        let (a, b, c) = (clip(), clip(), clip());
        let hold_a = audio.hold(&a).unwrap();
        let _hold_b = audio.hold(&b).unwrap();
        assert!(audio.hold(&c).is_none(), "past the budget");
        let again_a = audio.hold(&a);
        assert!(again_a.is_some(), "a clip held already costs nothing more");
        drop(hold_a);
        assert!(audio.hold(&c).is_none(), "still held by another answer");
        drop(again_a);
        assert!(audio.hold(&c).is_some());
    }

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
