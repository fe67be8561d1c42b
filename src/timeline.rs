//! The timeline: where each sample of a stream lands, and where the buckets begin and end.
//!
//! Everything here is arithmetic on nanoseconds and sample counts. The timeline knows nothing of
//! GStreamer or of files: it turns "a buffer of `len` samples whose first sample is at time `t`"
//! into a list of [`Piece`]s (open a bucket, write silence, write these samples, close the
//! bucket) that the element hands to the writer.
//!
//! # The grid
//!
//! At a sample rate `r`, sample number `n` of the timeline is at time `n / r` seconds. Time 0 is
//! the origin of whatever the timeline measures (UTC epoch in wall-clock mode, running time 0 in
//! running-time mode). A sample belongs to bucket `k` when its time lies in `[k·D, (k+1)·D)`,
//! `D` being the segment duration, so bucket `k` holds the samples
//! `ceil(k·D·r) .. ceil((k+1)·D·r)` and, whenever `D·r` is a whole number of samples, exactly
//! `D·r` of them. Because buckets are defined on the grid itself, a bucket boundary always falls
//! between two samples: a buffer that straddles it is split at the exact sample.
//!
//! # Placing a stream on the grid
//!
//! The first buffer of a stream is placed at the grid sample nearest to its time. Later buffers
//! are placed by count, right after the previous one, as long as their time stays within
//! `threshold` of where the count says they should be; timestamps carry rounding and jitter,
//! sample counts do not. A buffer further ahead than the threshold starts where its time says,
//! the hole being filled with silence; one further behind has its overlapping samples dropped.

use std::cmp::min;

/// Nanoseconds in one second.
pub const NS_PER_SEC: u64 = 1_000_000_000;

/// The grid sample nearest to `time_ns` at `rate` samples per second.
pub fn sample_at(time_ns: u64, rate: u32) -> u64 {
    let n = (u128::from(time_ns) * u128::from(rate) + u128::from(NS_PER_SEC / 2))
        / u128::from(NS_PER_SEC);
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// The time of grid sample `n` at `rate`, rounded down to the nanosecond.
pub fn time_of(n: u64, rate: u32) -> u64 {
    let t = u128::from(n) * u128::from(NS_PER_SEC) / u128::from(rate);
    u64::try_from(t).unwrap_or(u64::MAX)
}

/// One bucket of the timeline: `[index·D, (index+1)·D)`, as grid samples `first..end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket {
    /// `k`: the bucket starts at `k·D`.
    pub index: u64,
    /// Start of the bucket on the timeline, in nanoseconds (`k·D`).
    pub start_ns: u64,
    /// First grid sample of the bucket.
    pub first: u64,
    /// One past the last grid sample of the bucket.
    pub end: u64,
}

impl Bucket {
    /// Number of samples a full file of this bucket holds.
    pub fn len(&self) -> u64 {
        self.end - self.first
    }

    /// Whether the bucket holds no sample at all (only at rates below one sample per bucket).
    pub fn is_empty(&self) -> bool {
        self.end == self.first
    }

    /// Start of the bucket in whole milliseconds, as used in file names.
    pub fn start_ms(&self) -> u64 {
        self.start_ns / 1_000_000
    }
}

/// The buckets of one rate and one segment duration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Grid {
    rate: u32,
    duration_ns: u64,
}

impl Grid {
    /// A grid of `rate` samples per second cut into buckets of `duration_ns`.
    ///
    /// # Panics
    /// If `rate` or `duration_ns` is zero; the element's caps and property bounds exclude both.
    pub fn new(rate: u32, duration_ns: u64) -> Self {
        assert!(
            rate > 0 && duration_ns > 0,
            "rate and duration must be positive"
        );
        Grid { rate, duration_ns }
    }

    /// Samples per second.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Bucket duration in nanoseconds.
    pub fn duration_ns(&self) -> u64 {
        self.duration_ns
    }

    /// Index of the bucket holding grid sample `n`: `floor(n / (D·r))`.
    pub fn bucket_index_of(&self, n: u64) -> u64 {
        let k = u128::from(n) * u128::from(NS_PER_SEC)
            / (u128::from(self.duration_ns) * u128::from(self.rate));
        u64::try_from(k).unwrap_or(u64::MAX)
    }

    /// First grid sample of bucket `k`: `ceil(k·D·r)`.
    fn first_sample(&self, k: u64) -> u64 {
        let num = u128::from(k) * u128::from(self.duration_ns) * u128::from(self.rate);
        let n = num.div_ceil(u128::from(NS_PER_SEC));
        u64::try_from(n).unwrap_or(u64::MAX)
    }

    /// Bucket number `k`.
    pub fn bucket(&self, k: u64) -> Bucket {
        Bucket {
            index: k,
            start_ns: k.saturating_mul(self.duration_ns),
            first: self.first_sample(k),
            end: self.first_sample(k + 1),
        }
    }

    /// The bucket holding grid sample `n`.
    pub fn bucket_of(&self, n: u64) -> Bucket {
        self.bucket(self.bucket_index_of(n))
    }
}

/// One step of what to do with a stream, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece {
    /// Start a file for this bucket.
    Open(Bucket),
    /// Append this many samples of silence to the open file.
    Silence(u64),
    /// Append `len` samples of the current buffer, starting at its sample `offset`.
    Data { offset: usize, len: usize },
    /// The open file is complete (it holds exactly the bucket's samples).
    Close(Bucket),
}

/// Running totals of where a stream's samples went.
///
/// For a stream, `received = data + dropped`, and the samples of all its files add up to
/// `data + silence`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Samples that arrived in buffers.
    pub received: u64,
    /// Samples placed into files.
    pub data: u64,
    /// Samples of silence put into files (padding at the edges of a stream and filled holes).
    pub silence: u64,
    /// Samples dropped because they overlapped samples already placed.
    pub dropped: u64,
}

#[derive(Clone, Copy, Debug)]
struct OpenBucket {
    bucket: Bucket,
    /// Next grid sample to be written into the bucket.
    cursor: u64,
}

/// Places the buffers of one stream on a [`Grid`] and cuts them into bucket files.
#[derive(Debug)]
pub struct Timeline {
    grid: Grid,
    threshold_ns: u64,
    threshold: u64,
    /// Grid sample expected next, once the stream is anchored.
    next: Option<u64>,
    open: Option<OpenBucket>,
    totals: Totals,
}

impl Timeline {
    /// A timeline on `grid` that treats buffers within `threshold_ns` of the expected time as
    /// contiguous.
    pub fn new(grid: Grid, threshold_ns: u64) -> Self {
        Timeline {
            grid,
            threshold_ns,
            threshold: sample_at(threshold_ns, grid.rate()),
            next: None,
            open: None,
            totals: Totals::default(),
        }
    }

    /// The grid the stream is placed on.
    pub fn grid(&self) -> Grid {
        self.grid
    }

    /// Whether a stream is running: the next sample's position is known.
    pub fn is_anchored(&self) -> bool {
        self.next.is_some()
    }

    /// Where the samples went so far.
    pub fn totals(&self) -> Totals {
        self.totals
    }

    /// Places a buffer of `len` samples whose first sample is at `time_ns` on the timeline
    /// (`None`: continue right after the previous buffer) and appends what to do to `out`.
    ///
    /// A stream's first buffer without a time starts at time 0; the element avoids that by
    /// passing the current time instead.
    pub fn push(&mut self, time_ns: Option<u64>, len: usize, out: &mut Vec<Piece>) {
        self.totals.received += len as u64;
        let at = time_ns.map(|t| sample_at(t, self.grid.rate()));
        let (mut pos, skip) = match (self.next, at) {
            (Some(next), None) => (next, 0),
            (Some(next), Some(n)) if n.abs_diff(next) <= self.threshold => (next, 0),
            (Some(next), Some(n)) if n < next => (next, min(next - n, len as u64) as usize),
            (_, Some(n)) => (n, 0),
            (None, None) => (0, 0),
        };
        self.totals.dropped += skip as u64;

        let mut offset = skip;
        while offset < len {
            let open = match self.open {
                Some(open) if pos < open.bucket.end => open,
                _ => {
                    self.close(out);
                    let bucket = self.grid.bucket_of(pos);
                    out.push(Piece::Open(bucket));
                    OpenBucket {
                        bucket,
                        cursor: bucket.first,
                    }
                }
            };
            let mut open = open;
            if pos > open.cursor {
                self.silence(pos - open.cursor, out);
            }
            let take = min((len - offset) as u64, open.bucket.end - pos) as usize;
            out.push(Piece::Data { offset, len: take });
            self.totals.data += take as u64;
            offset += take;
            pos += take as u64;
            open.cursor = pos;
            if open.cursor == open.bucket.end {
                out.push(Piece::Close(open.bucket));
                self.open = None;
            } else {
                self.open = Some(open);
            }
        }
        self.next = Some(pos);
    }

    /// Ends the stream: pads the open bucket with silence, closes it, and forgets the anchor so
    /// that the next buffer starts a new stream where its time says.
    pub fn finish(&mut self, out: &mut Vec<Piece>) {
        self.close(out);
        self.next = None;
    }

    /// Moves to another grid (a new rate or segment duration): the current stream ends first.
    pub fn set_grid(&mut self, grid: Grid, out: &mut Vec<Piece>) {
        if grid != self.grid {
            self.finish(out);
            *self = Timeline {
                totals: self.totals,
                ..Timeline::new(grid, self.threshold_ns)
            };
        }
    }

    fn close(&mut self, out: &mut Vec<Piece>) {
        if let Some(open) = self.open.take() {
            if open.cursor < open.bucket.end {
                self.silence(open.bucket.end - open.cursor, out);
            }
            out.push(Piece::Close(open.bucket));
        }
    }

    fn silence(&mut self, n: u64, out: &mut Vec<Piece>) {
        self.totals.silence += n;
        out.push(Piece::Silence(n));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SEC: u64 = NS_PER_SEC;
    const MS: u64 = 1_000_000;

    /// Replays pieces into files of sample values: input sample `i` of the stream is `i + 1`,
    /// silence is 0. Returns `(bucket, samples)` per closed file.
    fn replay(pieces: &[(Piece, usize)]) -> Vec<(Bucket, Vec<u64>)> {
        let mut files = Vec::new();
        let mut current: Option<(Bucket, Vec<u64>)> = None;
        for &(piece, buffer_start) in pieces {
            match piece {
                Piece::Open(b) => {
                    assert!(current.is_none(), "open while a file is open");
                    current = Some((b, Vec::new()));
                }
                Piece::Silence(n) => current.as_mut().unwrap().1.extend((0..n).map(|_| 0)),
                Piece::Data { offset, len } => current
                    .as_mut()
                    .unwrap()
                    .1
                    .extend((0..len).map(|i| (buffer_start + offset + i) as u64 + 1)),
                Piece::Close(b) => {
                    let file = current.take().expect("close without open");
                    assert_eq!(file.0, b);
                    files.push(file);
                }
            }
        }
        assert!(current.is_none(), "a file was left open");
        files
    }

    /// Pushes contiguous buffers of the given sizes starting at `start_ns` and finishes.
    fn run(grid: Grid, start_ns: u64, sizes: &[usize]) -> (Vec<(Bucket, Vec<u64>)>, Totals) {
        let mut tl = Timeline::new(grid, 40 * MS);
        let mut pieces = Vec::new();
        let mut consumed = 0usize;
        for &len in sizes {
            let mut out = Vec::new();
            let t = start_ns + time_of(consumed as u64, grid.rate());
            tl.push(Some(t), len, &mut out);
            pieces.extend(out.into_iter().map(|p| (p, consumed)));
            consumed += len;
        }
        let mut out = Vec::new();
        tl.finish(&mut out);
        pieces.extend(out.into_iter().map(|p| (p, consumed)));
        (replay(&pieces), tl.totals())
    }

    #[test]
    fn buckets_of_five_seconds_at_16khz_hold_80000_samples() {
        let grid = Grid::new(16_000, 5 * SEC);
        let b = grid.bucket(3);
        assert_eq!(
            (b.first, b.end, b.len(), b.start_ms()),
            (240_000, 320_000, 80_000, 15_000)
        );
        assert_eq!(grid.bucket_index_of(239_999), 2);
        assert_eq!(grid.bucket_index_of(240_000), 3);
    }

    #[test]
    fn buckets_tile_the_grid_at_awkward_rates() {
        for (rate, d) in [
            (44_100, 100 * MS),
            (7, 333 * MS),
            (1, 100 * MS),
            (22_050, 3 * SEC),
        ] {
            let grid = Grid::new(rate, d);
            for k in 0..50 {
                let b = grid.bucket(k);
                assert_eq!(b.end, grid.bucket(k + 1).first);
                for n in b.first..b.end {
                    assert_eq!(grid.bucket_index_of(n), k);
                    // The sample's time lies inside the bucket.
                    let t = u128::from(n) * u128::from(SEC);
                    assert!(t >= u128::from(k * d) * u128::from(rate));
                    assert!(t < u128::from((k + 1) * d) * u128::from(rate));
                }
            }
        }
    }

    #[test]
    fn joining_mid_bucket_pads_the_first_and_last_files() {
        let grid = Grid::new(16_000, 5 * SEC);
        // 1.5 s into bucket 0, 12 s of audio in 333-sample buffers.
        let total = 12 * 16_000;
        let mut sizes = vec![333; total / 333];
        sizes.push(total % 333);
        let (files, totals) = run(grid, 1_500 * MS, &sizes);
        assert_eq!(files.len(), 3);
        for (k, (bucket, samples)) in files.iter().enumerate() {
            assert_eq!(bucket.index, k as u64);
            assert_eq!(samples.len(), 80_000);
            for (j, &s) in samples.iter().enumerate() {
                // Stream sample i is at 1.5 s + i / 16000, i.e. at grid sample 24000 + i.
                let grid_n = k * 80_000 + j;
                let expect = if grid_n < 24_000 || grid_n >= 24_000 + total {
                    0
                } else {
                    (grid_n - 24_000 + 1) as u64
                };
                assert_eq!(s, expect, "file {k} offset {j}");
            }
        }
        assert_eq!(totals.data, total as u64);
        assert_eq!(totals.silence, 3 * 80_000 - total as u64);
        assert_eq!(totals.dropped, 0);
    }

    #[test]
    fn one_sample_buffers_split_exactly() {
        let grid = Grid::new(8_000, 100 * MS);
        let (files, totals) = run(grid, 0, &[1; 2_000]);
        assert_eq!(files.len(), 3);
        let all: Vec<u64> = files.iter().flat_map(|f| f.1.iter().copied()).collect();
        assert_eq!(&all[..2_000], &(1..=2_000).collect::<Vec<_>>()[..]);
        assert!(all[2_000..].iter().all(|&s| s == 0));
        assert_eq!(totals.silence, 400);
    }

    #[test]
    fn jitter_within_threshold_is_placed_by_count() {
        let grid = Grid::new(16_000, 5 * SEC);
        let mut tl = Timeline::new(grid, 40 * MS);
        let mut out = Vec::new();
        tl.push(Some(0), 320, &mut out);
        // 20 ms later per count, but stamped 30 ms late: still contiguous.
        tl.push(Some(50 * MS), 320, &mut out);
        tl.push(None, 320, &mut out);
        assert_eq!(
            out,
            vec![
                Piece::Open(grid.bucket(0)),
                Piece::Data {
                    offset: 0,
                    len: 320
                },
                Piece::Data {
                    offset: 0,
                    len: 320
                },
                Piece::Data {
                    offset: 0,
                    len: 320
                },
            ]
        );
    }

    #[test]
    fn a_jump_forward_is_filled_with_silence_and_empty_buckets_are_skipped() {
        let grid = Grid::new(1_000, SEC);
        let mut tl = Timeline::new(grid, 40 * MS);
        let mut out = Vec::new();
        tl.push(Some(0), 100, &mut out);
        tl.push(Some(500 * MS), 100, &mut out);
        tl.push(Some(5_200 * MS), 100, &mut out);
        assert_eq!(
            out,
            vec![
                Piece::Open(grid.bucket(0)),
                Piece::Data {
                    offset: 0,
                    len: 100
                },
                Piece::Silence(400),
                Piece::Data {
                    offset: 0,
                    len: 100
                },
                Piece::Silence(400),
                Piece::Close(grid.bucket(0)),
                Piece::Open(grid.bucket(5)),
                Piece::Silence(200),
                Piece::Data {
                    offset: 0,
                    len: 100
                },
            ]
        );
    }

    #[test]
    fn a_jump_backward_drops_the_overlap() {
        let grid = Grid::new(1_000, SEC);
        let mut tl = Timeline::new(grid, 40 * MS);
        let mut out = Vec::new();
        tl.push(Some(0), 500, &mut out);
        tl.push(Some(300 * MS), 300, &mut out);
        tl.push(Some(100 * MS), 50, &mut out);
        assert_eq!(
            &out[2..],
            &[Piece::Data {
                offset: 200,
                len: 100
            }]
        );
        assert_eq!(tl.totals().dropped, 250);
        assert_eq!(tl.totals().data, 600);
    }

    #[test]
    fn changing_the_grid_closes_the_open_bucket() {
        let mut tl = Timeline::new(Grid::new(1_000, SEC), 40 * MS);
        let mut out = Vec::new();
        tl.push(Some(0), 100, &mut out);
        out.clear();
        tl.set_grid(Grid::new(2_000, SEC), &mut out);
        assert_eq!(
            out,
            vec![
                Piece::Silence(900),
                Piece::Close(Grid::new(1_000, SEC).bucket(0))
            ]
        );
        assert!(!tl.is_anchored());
        assert_eq!(tl.totals().data, 100);
    }

    #[test]
    fn utc_times_keep_full_precision() {
        // 2026-11-21T06:00:00.000Z, a realistic wall-clock origin.
        let t = 1_795_240_800 * SEC;
        let grid = Grid::new(16_000, 5 * SEC);
        let n = sample_at(t + 62_500, grid.rate());
        assert_eq!(n, 1_795_240_800 * 16_000 + 1);
        assert_eq!(grid.bucket_of(n).start_ns, t);
        assert_eq!(time_of(n, 16_000), t + 62_500);
    }

    proptest! {
        /// Contiguous streams of any buffer sizes, at any start time and rate: every input
        /// sample lands exactly once, at its time, and every file is exactly one bucket long.
        #[test]
        fn contiguous_streams_are_reproduced_exactly(
            rate in prop::sample::select(vec![8_000u32, 11_025, 16_000, 44_100, 48_000]),
            duration_ms in 100u64..3_000,
            start_ns in 0u64..20 * SEC,
            sizes in prop::collection::vec(1usize..2_000, 1..60),
        ) {
            let grid = Grid::new(rate, duration_ms * MS);
            let (files, totals) = run(grid, start_ns, &sizes);
            let total: usize = sizes.iter().sum();
            let first = sample_at(start_ns, rate);
            let mut seen = 0u64;
            for (bucket, samples) in &files {
                prop_assert_eq!(samples.len() as u64, bucket.len());
                for (j, &s) in samples.iter().enumerate() {
                    let n = bucket.first + j as u64;
                    if s != 0 {
                        seen += 1;
                        let i = s - 1;
                        prop_assert_eq!(n, first + i);
                        // The sample lands within half a sample of its true time.
                        let true_t = start_ns as i128
                            + (i as i128 * SEC as i128) / rate as i128;
                        let grid_t = (n as i128 * SEC as i128) / rate as i128;
                        prop_assert!((true_t - grid_t).abs() * 2 <= SEC as i128 / rate as i128 + 2);
                    }
                }
            }
            prop_assert_eq!(seen, total as u64);
            prop_assert_eq!(totals.received, totals.data + totals.dropped);
            let file_samples: u64 = files.iter().map(|f| f.1.len() as u64).sum();
            prop_assert_eq!(file_samples, totals.data + totals.silence);
        }
    }
}
