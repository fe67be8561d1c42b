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
//! # Aligning a stream on the grid
//!
//! Where a buffer belongs is decided as `GstAudioStreamAlign` decides it. The first buffer of a
//! stream goes to the grid sample nearest to its time. A later buffer continues the count, right
//! after the previous one, while its time is less than `threshold` away from where the count
//! puts it: timestamps carry rounding and jitter, sample counts do not. The stream resyncs to a
//! buffer's time when the buffer is flagged as a discontinuity (whatever the threshold), or when
//! it is `threshold` or more away and either `discont_wait` is 0, the distance is itself
//! `discont_wait` or more, or the discontinuity has lasted `discont_wait` (measured from the
//! time the count expected when it began, see [`Timeline::set_discont_wait`]).
//!
//! # Placing it into files
//!
//! Files only grow, so what was written stays written. A buffer that belongs after what was
//! written starts where it belongs, the hole being silence within a bucket that holds samples; a
//! bucket that receives nothing gets no file. A buffer that belongs behind what was written
//! overlaps it: its overlapping samples are dropped and the first sample that does not overlap
//! lands where it belongs, and so do the buffers that follow, counted from the resync, not from
//! what was written. Two cases go to a further file of their bucket instead of being dropped,
//! since the samples they would overlap are not the stream's: a stream re-anchored
//! ([`Timeline::reanchor`], after a flush or a new segment), and a resync back to where the
//! stream was before its last jump forward (within `threshold`), short of where it jumped to: a
//! stray timestamp far ahead followed by the stream itself loses nothing. The timeline keeps
//! only the current run and that one point: after several jumps back and forth, samples landing
//! in a hole between earlier runs may be dropped as overlaps.
//!
//! A GAP event's silence continues the stream (or starts it); one stamped `threshold` or more
//! away from the count is ignored. It is written once the next buffer is known, and gives way to
//! that buffer where the buffer belongs inside it.
//!
//! # What a misbehaving stream can make it write
//!
//! A stream opens at most [`MAX_FILES_PER_BUCKET`] files per bucket (a call boundary starts the
//! count anew); samples that would need another are dropped. A GAP event writes at most
//! [`MAX_GAP_FILES`] whole files of silence; the rest of a longer GAP is a pause, like a hole:
//! its buckets get no file.

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

/// Bytes of one sample of the streams recorded (S16LE mono).
pub const BYTES_PER_SAMPLE: usize = 2;

/// The samples in `bytes` of a buffer.
pub fn samples_in(bytes: usize) -> usize {
    bytes / BYTES_PER_SAMPLE
}

/// The bytes that `duration_ns` of audio at `rate` takes, rounded down to a whole sample.
pub fn bytes_for(duration_ns: u64, rate: u32) -> usize {
    let samples = u128::from(duration_ns) * u128::from(rate) / u128::from(NS_PER_SEC);
    usize::try_from(samples * BYTES_PER_SAMPLE as u128).unwrap_or(usize::MAX)
}

/// Time `t` of one clock on another, given that time `anchor` of the first is `other` on the
/// second: `other + (t - anchor)`, if that is not negative.
pub fn shift(other: u64, anchor: u64, t: u64) -> Option<u64> {
    let shifted = i128::from(other) + i128::from(t) - i128::from(anchor);
    u64::try_from(shifted).ok()
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

/// Files a stream may open for one bucket; samples that would need another are dropped.
pub const MAX_FILES_PER_BUCKET: u32 = 8;

/// Whole files of silence one GAP event may write.
pub const MAX_GAP_FILES: u64 = 12;

/// Buckets whose files the timeline counts, the most recent ones.
const COUNTED_BUCKETS: usize = 64;

/// One step of what to do with a stream, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Piece {
    /// Start a file for this bucket.
    Open(Bucket),
    /// Append this many samples of silence to the open file.
    Silence(u64),
    /// Append `len` samples of the current buffer, starting at its sample `offset`.
    Data { offset: usize, len: usize },
    /// This many samples of the stream were dropped (they overlapped samples already written);
    /// nothing is written.
    Dropped(u64),
    /// The open file is complete (it holds exactly the bucket's samples).
    Close(Bucket),
}

/// What a span placed on the timeline holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Span {
    /// Samples of the stream, from a buffer.
    Data,
    /// Silence the stream declared (a GAP event): written as silence, files included.
    Gap,
}

/// How the position of a span was decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alignment {
    /// The first span of a stream, at its time.
    Start,
    /// Right after the previous span, by count.
    Counted,
    /// At its time: a discontinuity.
    Resynced,
    /// At its time, after [`Timeline::reanchor`].
    Reanchored,
}

/// Where a span belongs on the grid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The grid sample of the span's first sample.
    pub sample: u64,
    /// How that was decided.
    pub alignment: Alignment,
}

/// Running totals of where a stream's samples went.
///
/// For a stream, `received = data + dropped`, and the samples of all its files add up to
/// `data + silence` (silence counts padding, filled holes and GAP events).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Samples that arrived in buffers.
    pub received: u64,
    /// Samples placed into files.
    pub data: u64,
    /// Samples of silence put into files (padding at the edges of a stream and filled holes).
    pub silence: u64,
    /// Samples dropped because they overlapped samples already written.
    pub dropped: u64,
}

#[derive(Clone, Copy, Debug)]
struct OpenBucket {
    bucket: Bucket,
    /// Next grid sample to be written into the bucket.
    cursor: u64,
}

/// Where the files of a running stream stand.
#[derive(Clone, Copy, Debug)]
struct Written {
    /// The grid sample after the last one written.
    end: u64,
    /// Where the stream last resynced forward, started or went to a further file.
    run_start: u64,
    /// Where the stream was when it last jumped forward (`run_start` if it did not).
    left_at: u64,
}

impl Written {
    /// A run of samples starting at `start`, the stream having been at `left_at` before.
    fn run(start: u64, left_at: u64) -> Self {
        Written {
            end: start,
            run_start: start,
            left_at,
        }
    }
}

/// Places the buffers of one stream on a [`Grid`] and cuts them into bucket files.
#[derive(Debug)]
pub struct Timeline {
    grid: Grid,
    threshold_ns: u64,
    /// `threshold_ns` in whole samples: a distance of this many samples or more is a
    /// discontinuity.
    threshold: u64,
    discont_wait_ns: u64,
    /// Grid sample where the stream's next sample belongs, once the stream is anchored.
    next: Option<u64>,
    /// The time the count expected when a discontinuity not yet acted upon began.
    discont_since: Option<u64>,
    /// The next buffer goes where its time says, even behind what was written.
    reanchor: bool,
    written: Option<Written>,
    /// A GAP event placed on the timeline but not written yet: where, and how many samples.
    gap: Option<(Placement, u64)>,
    open: Option<OpenBucket>,
    /// Files opened per bucket index, and when the bucket was last used (opened or refused),
    /// for the buckets used most recently.
    files: std::collections::BTreeMap<u64, (u32, u64)>,
    /// Opens and refusals so far: the clock of `files`.
    opened: u64,
    totals: Totals,
}

impl Timeline {
    /// A timeline on `grid` that treats buffers less than `threshold_ns` away from the expected
    /// time as contiguous and resyncs at once beyond it.
    pub fn new(grid: Grid, threshold_ns: u64) -> Self {
        let mut timeline = Timeline {
            grid,
            threshold_ns,
            threshold: 0,
            discont_wait_ns: 0,
            next: None,
            discont_since: None,
            reanchor: false,
            written: None,
            gap: None,
            open: None,
            files: Default::default(),
            opened: 0,
            totals: Totals::default(),
        };
        timeline.set_threshold(threshold_ns);
        timeline
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

    /// Buffers less than `threshold_ns` away from where the count puts them are contiguous.
    pub fn set_threshold(&mut self, threshold_ns: u64) {
        self.threshold_ns = threshold_ns;
        let samples =
            u128::from(threshold_ns) * u128::from(self.grid.rate()) / u128::from(NS_PER_SEC);
        self.threshold = u64::try_from(samples).unwrap_or(u64::MAX);
    }

    /// A discontinuity beyond the threshold but under `wait_ns` is acted upon only once it has
    /// lasted `wait_ns` (0: at once); until then buffers are placed by count, so that a stray
    /// timestamp does not tear the audio. Buffers flagged as discontinuities resync at once.
    pub fn set_discont_wait(&mut self, wait_ns: u64) {
        self.discont_wait_ns = wait_ns;
    }

    /// Places a buffer of `len` samples whose first sample is at `time_ns` on the timeline
    /// (`None`: continue right after the previous buffer), appends what to do to `out` and
    /// says where the buffer belongs. `discont` marks a buffer flagged as a discontinuity.
    ///
    /// A stream's first buffer without a time starts at time 0; the element avoids that by
    /// passing the current time instead.
    pub fn push(
        &mut self,
        time_ns: Option<u64>,
        len: usize,
        discont: bool,
        out: &mut Vec<Piece>,
    ) -> Placement {
        self.totals.received += len as u64;
        // Declared silence gives way to audio stamped inside it: such a buffer goes where its
        // time says, however close to the count.
        let at = time_ns.map(|t| sample_at(t, self.grid.rate()));
        let in_gap = match (self.gap, at) {
            (Some((gap, gap_len)), Some(n)) => n < gap.sample + gap_len && self.next != Some(n),
            _ => false,
        };
        let placement = self.align(time_ns, len as u64, discont || in_gap);
        self.place_gap(Some(placement.sample), out);
        self.place(placement, len as u64, Span::Data, out);
        placement
    }

    /// Places `duration_ns` of declared silence (a GAP event) starting at `time_ns`.
    pub fn gap(&mut self, time_ns: Option<u64>, duration_ns: u64, out: &mut Vec<Piece>) {
        // Counted between the grid samples of its start and end, so that rounding does not
        // add up over many gaps.
        let rate = self.grid.rate();
        let len = match time_ns {
            Some(t) => sample_at(t.saturating_add(duration_ns), rate) - sample_at(t, rate),
            None => sample_at(duration_ns, rate),
        };
        if len == 0 {
            return;
        }
        self.place_gap(None, out);
        // Declared silence continues the stream or starts it; one stamped elsewhere says
        // nothing about the audio, which is placed by its own timestamps: it is ignored.
        let contiguous = match (self.next, time_ns) {
            (Some(next), Some(t)) => sample_at(t, rate).abs_diff(next) < self.threshold,
            _ => true,
        };
        if contiguous {
            // A re-anchor waits for the audio.
            let reanchor = std::mem::take(&mut self.reanchor);
            let placement = self.align(time_ns, len, false);
            self.reanchor = reanchor;
            self.gap = Some((placement, len));
        }
    }

    /// Writes the silence of the GAP event not written yet, up to `data_at` if the buffer that
    /// follows belongs inside it: declared silence gives way to the samples themselves, so that
    /// a buffer stamped a little before the GAP's end (as `rtpjitterbuffer` sends them after
    /// the GAP of a lost packet) loses nothing.
    fn place_gap(&mut self, data_at: Option<u64>, out: &mut Vec<Piece>) {
        if let Some((placement, len)) = self.gap.take() {
            let start = placement.sample;
            let len = match data_at {
                Some(at) if at < start + len => at.saturating_sub(start),
                _ => len,
            };
            if len > 0 {
                self.place(placement, len, Span::Gap, out);
            }
        }
    }

    /// The stream goes on from a new position (after a flush or a new segment): its next buffer
    /// goes where its time says, unless that is within the threshold of the count, and behind
    /// what was written it starts a further file rather than being dropped.
    pub fn reanchor(&mut self) {
        self.reanchor = self.next.is_some();
    }

    /// Closes the open bucket, padded with silence, without ending the stream: the samples that
    /// follow go to a new file of their bucket (a call boundary, whose files are counted anew).
    pub fn close_bucket(&mut self, out: &mut Vec<Piece>) {
        self.place_gap(None, out);
        self.close(out);
        if let Some(w) = self.written.as_mut() {
            w.run_start = w.end;
        }
        self.files.clear();
    }

    /// Ends the stream: pads the open bucket with silence, closes it, and forgets the anchor so
    /// that the next buffer starts a new stream where its time says.
    pub fn finish(&mut self, out: &mut Vec<Piece>) {
        self.place_gap(None, out);
        self.close(out);
        self.next = None;
        self.written = None;
        self.discont_since = None;
        self.reanchor = false;
    }

    /// Moves to another grid (a new rate): the current stream ends first, so the rest of the
    /// open bucket goes to a further file at the new rate.
    pub fn set_grid(&mut self, grid: Grid, out: &mut Vec<Piece>) {
        if grid != self.grid {
            self.finish(out);
            self.grid = grid;
            self.set_threshold(self.threshold_ns);
        }
    }

    /// Where a span of `len` samples stamped `time_ns` belongs, as `GstAudioStreamAlign`
    /// decides it; the count moves on past it.
    fn align(&mut self, time_ns: Option<u64>, len: u64, discont: bool) -> Placement {
        let rate = self.grid.rate();
        let at = time_ns.map(|t| sample_at(t, rate));
        let reanchor = std::mem::take(&mut self.reanchor);
        let alignment = match (self.next, at.zip(time_ns)) {
            (None, _) => Alignment::Start,
            (Some(_), None) => Alignment::Counted,
            (Some(next), Some((n, time))) => {
                if n.abs_diff(next) < self.threshold {
                    self.discont_since = None;
                    if discont {
                        Alignment::Resynced
                    } else {
                        Alignment::Counted
                    }
                } else if reanchor {
                    Alignment::Reanchored
                } else if discont || self.waited(time, time_of(next, rate)) {
                    Alignment::Resynced
                } else {
                    Alignment::Counted
                }
            }
        };
        let sample = match alignment {
            Alignment::Counted => self.next.unwrap_or_default(),
            _ => {
                self.discont_since = None;
                at.or(self.next).unwrap_or(0)
            }
        };
        self.next = Some(sample + len);
        Placement { sample, alignment }
    }

    /// Whether a buffer at `time`, the count expecting `expected`, ends a discontinuity.
    fn waited(&mut self, time: u64, expected: u64) -> bool {
        let wait = self.discont_wait_ns;
        if wait == 0 {
            return true;
        }
        match self.discont_since {
            None if time.abs_diff(expected) >= wait => true,
            None => {
                self.discont_since = Some(expected);
                false
            }
            Some(since) => time.abs_diff(since) >= wait,
        }
    }

    /// Whether the stream may open one more file for bucket `k`. A full bucket that is asked
    /// for again is remembered as recently used, so that it stays full.
    fn may_open(&mut self, k: u64) -> bool {
        match self.files.get_mut(&k) {
            Some(v) if v.0 >= MAX_FILES_PER_BUCKET => {
                self.opened += 1;
                v.1 = self.opened;
                false
            }
            _ => true,
        }
    }

    fn place(&mut self, placement: Placement, len: u64, span: Span, out: &mut Vec<Piece>) {
        let mut pos = placement.sample;
        let mut offset = 0;
        let before = self.written;
        let mut went_back = false;
        match self.written {
            Some(w) if pos < w.end => {
                // Behind what was written. A re-anchored stream, or one coming back from a jump
                // forward to where it was before it, cannot overlap its own audio: a further
                // file. Anything else overlaps: dropped up to what was written.
                let returns = w.left_at <= pos.saturating_add(self.threshold)
                    && pos.saturating_add(self.threshold) <= w.run_start;
                let further = match placement.alignment {
                    Alignment::Reanchored => true,
                    Alignment::Resynced => returns,
                    Alignment::Start | Alignment::Counted => false,
                };
                if further {
                    went_back = true;
                    self.close(out);
                    // Coming back, the stream is where it was before its jump; re-anchored,
                    // what lies behind may be its own audio.
                    let left_at = match placement.alignment {
                        Alignment::Reanchored => pos,
                        _ => pos.min(w.left_at),
                    };
                    self.written = Some(Written::run(pos, left_at));
                } else {
                    offset = (w.end - pos).min(len);
                    pos = w.end;
                    self.drop(offset, span, out);
                }
            }
            Some(w) if pos == w.end => {}
            // A stream that starts (having been nowhere before) or jumps forward starts a run.
            _ => self.written = Some(Written::run(pos, before.map_or(0, |w| w.end))),
        }
        let mut wrote = false;
        let mut silent_files = 0;
        while offset < len {
            let mut open = match self.open {
                Some(open) if (open.cursor..open.bucket.end).contains(&pos) => open,
                _ => {
                    let bucket = self.grid.bucket_of(pos);
                    if !self.may_open(bucket.index) {
                        // Samples that would need one more file of the bucket are dropped.
                        let n = (len - offset).min(bucket.end - pos);
                        self.drop(n, span, out);
                        offset += n;
                        pos += n;
                        continue;
                    }
                    self.close(out);
                    let whole = pos == bucket.first && len - offset >= bucket.len();
                    if span == Span::Gap && whole {
                        if silent_files == MAX_GAP_FILES {
                            // The rest of a long GAP is a pause, like a hole: no file.
                            break;
                        } else {
                            silent_files += 1;
                        }
                    }
                    out.push(Piece::Open(bucket));
                    self.count_file(bucket.index);
                    OpenBucket {
                        bucket,
                        cursor: bucket.first,
                    }
                }
            };
            if pos > open.cursor {
                self.silence(pos - open.cursor, out);
            }
            let take = (len - offset).min(open.bucket.end - pos);
            match span {
                Span::Data => {
                    out.push(Piece::Data {
                        offset: offset as usize,
                        len: take as usize,
                    });
                    self.totals.data += take;
                }
                Span::Gap => self.silence(take, out),
            }
            wrote = true;
            offset += take;
            pos += take;
            open.cursor = pos;
            if open.cursor == open.bucket.end {
                out.push(Piece::Close(open.bucket));
                self.open = None;
            } else {
                self.open = Some(open);
            }
        }
        if wrote || went_back {
            if let Some(w) = self.written.as_mut() {
                w.end = pos;
            }
        } else {
            // Nothing was written of a jump forward: the files stay where they were.
            self.written = before;
        }
    }

    /// Counts `n` samples of a span as dropped (samples of the stream only: declared silence
    /// that is not written is not counted).
    fn drop(&mut self, n: u64, span: Span, out: &mut Vec<Piece>) {
        if n > 0 && span == Span::Data {
            self.totals.dropped += n;
            out.push(Piece::Dropped(n));
        }
    }

    fn count_file(&mut self, k: u64) {
        self.opened += 1;
        let stamp = self.opened;
        let entry = self.files.entry(k).or_default();
        entry.0 += 1;
        entry.1 = stamp;
        if self.files.len() > COUNTED_BUCKETS {
            // The bucket whose file was opened longest ago is forgotten.
            if let Some(&oldest) = self.files.iter().min_by_key(|(_, v)| v.1).map(|(k, _)| k) {
                self.files.remove(&oldest);
            }
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
mod arithmetic_tests {
    use super::*;

    #[test]
    fn bytes_samples_and_shifts() {
        assert_eq!(samples_in(321), 160);
        assert_eq!(bytes_for(NS_PER_SEC, 16_000), 32_000);
        assert_eq!(bytes_for(30 * NS_PER_SEC, 384_000), 23_040_000);
        assert_eq!(bytes_for(1, 8_000), 0);
        assert_eq!(shift(5, 10, 12), Some(7));
        assert_eq!(shift(5, 10, 4), None);
        assert_eq!(shift(u64::MAX, 0, 0), Some(u64::MAX));
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
                Piece::Dropped(_) => {}
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
            tl.push(Some(t), len, false, &mut out);
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
        tl.push(Some(0), 320, false, &mut out);
        // 20 ms later per count, but stamped 30 ms late: still contiguous.
        tl.push(Some(50 * MS), 320, false, &mut out);
        tl.push(None, 320, false, &mut out);
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
        tl.push(Some(0), 100, false, &mut out);
        tl.push(Some(500 * MS), 100, false, &mut out);
        tl.push(Some(5_200 * MS), 100, false, &mut out);
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
        tl.push(Some(0), 500, false, &mut out);
        tl.push(Some(300 * MS), 300, false, &mut out);
        tl.push(Some(100 * MS), 50, false, &mut out);
        assert_eq!(
            &out[2..],
            &[
                Piece::Dropped(200),
                Piece::Data {
                    offset: 200,
                    len: 100
                },
                Piece::Dropped(50),
            ]
        );
        assert_eq!(tl.totals().dropped, 250);
        assert_eq!(tl.totals().data, 600);
    }

    #[test]
    fn a_reanchored_stream_going_back_starts_a_further_file() {
        let grid = Grid::new(1_000, SEC);
        let mut tl = Timeline::new(grid, 40 * MS);
        let mut out = Vec::new();
        tl.push(Some(0), 500, false, &mut out);
        out.clear();
        tl.reanchor();
        tl.push(Some(200 * MS), 100, false, &mut out);
        assert_eq!(
            out,
            vec![
                Piece::Silence(500),
                Piece::Close(grid.bucket(0)),
                Piece::Open(grid.bucket(0)),
                Piece::Silence(200),
                Piece::Data {
                    offset: 0,
                    len: 100
                },
            ]
        );
        // A buffer flagged as a discontinuity resyncs there, over the stream's own audio:
        // what overlaps is dropped.
        out.clear();
        tl.push(Some(210 * MS), 10, true, &mut out);
        assert_eq!(out, [Piece::Dropped(10)]);
        assert_eq!(tl.totals().dropped, 10);
    }

    #[test]
    fn a_reanchored_stream_within_the_threshold_stays_contiguous() {
        let grid = Grid::new(16_000, 5 * SEC);
        let mut tl = Timeline::new(grid, 40 * MS);
        let mut out = Vec::new();
        tl.push(Some(0), 320, false, &mut out);
        tl.reanchor();
        tl.push(Some(19 * MS), 320, false, &mut out);
        assert_eq!(
            out[2],
            Piece::Data {
                offset: 0,
                len: 320
            }
        );
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn discont_wait_ignores_a_stray_timestamp_but_follows_a_lasting_jump() {
        let grid = Grid::new(1_000, 10 * SEC);
        let mut tl = Timeline::new(grid, 40 * MS);
        tl.set_discont_wait(SEC);
        let mut out = Vec::new();
        tl.push(Some(0), 100, false, &mut out);
        // One stray timestamp 200 ms late, then back in line: placed by count throughout.
        tl.push(Some(300 * MS), 100, false, &mut out);
        tl.push(Some(200 * MS), 100, false, &mut out);
        assert!(out.iter().all(|p| !matches!(p, Piece::Silence(_))));
        // A jump of 500 ms that lasts: followed once it has lasted a second.
        let mut t = 800 * MS;
        let mut count_pos = 300;
        for _ in 0..12 {
            tl.push(Some(t), 100, false, &mut out);
            t += 100 * MS;
            count_pos += 100;
        }
        assert_eq!(out.iter().filter(|p| **p == Piece::Silence(500)).count(), 1);
        assert_eq!(tl.totals().data, 100 * 15);
        assert_eq!(tl.next, Some(count_pos + 500));
        // A discontinuity flag resyncs at once.
        out.clear();
        tl.push(Some(t + 300 * MS), 100, true, &mut out);
        assert_eq!(out[0], Piece::Silence(300));
    }

    #[test]
    fn a_gap_event_writes_silence_files() {
        let grid = Grid::new(1_000, SEC);
        let mut tl = Timeline::new(grid, 40 * MS);
        let mut out = Vec::new();
        tl.push(Some(500 * MS), 100, false, &mut out);
        tl.gap(Some(600 * MS), 2_400 * MS, &mut out);
        tl.push(None, 100, false, &mut out);
        assert_eq!(
            out,
            vec![
                Piece::Open(grid.bucket(0)),
                Piece::Silence(500),
                Piece::Data {
                    offset: 0,
                    len: 100
                },
                Piece::Silence(400),
                Piece::Close(grid.bucket(0)),
                Piece::Open(grid.bucket(1)),
                Piece::Silence(1_000),
                Piece::Close(grid.bucket(1)),
                Piece::Open(grid.bucket(2)),
                Piece::Silence(1_000),
                Piece::Close(grid.bucket(2)),
                Piece::Open(grid.bucket(3)),
                Piece::Data {
                    offset: 0,
                    len: 100
                },
            ]
        );
        assert_eq!(tl.totals().silence, 2_900);
    }

    #[test]
    fn declared_silence_gives_way_to_a_buffer_stamped_inside_it() {
        // rtpjitterbuffer do-lost=true: a GAP for the lost packet, then the next packet flagged
        // and stamped 3 samples before the GAP's end.
        let grid = Grid::new(16_000, 5 * SEC);
        let mut tl = Timeline::new(grid, 40 * MS);
        let mut out = Vec::new();
        tl.push(Some(0), 320, false, &mut out);
        tl.gap(Some(20 * MS), 20 * MS, &mut out);
        out.clear();
        tl.push(Some(40 * MS - 3 * 62_500), 320, true, &mut out);
        assert_eq!(
            out,
            [
                Piece::Silence(317),
                Piece::Data {
                    offset: 0,
                    len: 320
                }
            ]
        );
        assert_eq!(tl.totals().dropped, 0);
    }

    #[test]
    fn a_call_boundary_closes_the_bucket_and_the_stream_goes_on() {
        let grid = Grid::new(1_000, SEC);
        let mut tl = Timeline::new(grid, 40 * MS);
        let mut out = Vec::new();
        tl.push(Some(0), 300, false, &mut out);
        out.clear();
        tl.close_bucket(&mut out);
        tl.push(Some(300 * MS), 100, false, &mut out);
        assert_eq!(
            out,
            vec![
                Piece::Silence(700),
                Piece::Close(grid.bucket(0)),
                Piece::Open(grid.bucket(0)),
                Piece::Silence(300),
                Piece::Data {
                    offset: 0,
                    len: 100
                },
            ]
        );
    }

    #[test]
    fn changing_the_grid_closes_the_open_bucket() {
        let mut tl = Timeline::new(Grid::new(1_000, SEC), 40 * MS);
        let mut out = Vec::new();
        tl.push(Some(0), 100, false, &mut out);
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

    /// Pushes buffers `(stamp, len, discont)` of a stream whose input sample `i` is `i + 1`,
    /// finishes, and returns the files and the totals.
    fn stream(
        tl: &mut Timeline,
        buffers: impl IntoIterator<Item = (u64, usize, bool)>,
    ) -> (Vec<(Bucket, Vec<u64>)>, Totals) {
        let mut pieces = Vec::new();
        let mut consumed = 0;
        for (stamp, len, discont) in buffers {
            let mut out = Vec::new();
            tl.push(Some(stamp), len, discont, &mut out);
            pieces.extend(out.into_iter().map(|p| (p, consumed)));
            consumed += len;
        }
        let mut out = Vec::new();
        tl.finish(&mut out);
        pieces.extend(out.into_iter().map(|p| (p, consumed)));
        (replay(&pieces), tl.totals())
    }

    /// The files of each bucket merged as the rebuild merges them (the first file with a
    /// non-zero sample gives it), by grid sample.
    fn merged(files: &[(Bucket, Vec<u64>)]) -> std::collections::BTreeMap<u64, u64> {
        let mut at = std::collections::BTreeMap::new();
        for (bucket, samples) in files {
            for (j, &s) in samples.iter().enumerate() {
                if s != 0 {
                    at.entry(bucket.first + j as u64).or_insert(s);
                }
            }
        }
        at
    }

    /// Files per bucket index.
    fn files_per_bucket(files: &[(Bucket, Vec<u64>)]) -> std::collections::BTreeMap<u64, u32> {
        let mut n = std::collections::BTreeMap::new();
        for (bucket, _) in files {
            *n.entry(bucket.index).or_default() += 1;
        }
        n
    }

    #[test]
    fn a_flagged_buffer_resyncs_even_within_the_threshold() {
        // RTP: the packet at 40 ms was lost, the next one comes flagged, 20 ms ahead of the count.
        let grid = Grid::new(16_000, 5 * SEC);
        let mut tl = Timeline::new(grid, 40 * MS);
        let mut out = Vec::new();
        tl.push(Some(0), 320, false, &mut out);
        tl.push(Some(20 * MS), 320, false, &mut out);
        let placed = tl.push(Some(60 * MS), 320, true, &mut out);
        assert_eq!(
            placed,
            Placement {
                sample: 960,
                alignment: Alignment::Resynced
            }
        );
        assert_eq!(
            out[3..],
            [
                Piece::Silence(320),
                Piece::Data {
                    offset: 0,
                    len: 320
                }
            ]
        );
        // Unflagged, the same buffer is jitter and follows on by count.
        let mut tl = Timeline::new(grid, 40 * MS);
        tl.push(Some(0), 320, false, &mut out);
        tl.push(Some(20 * MS), 320, false, &mut out);
        assert_eq!(tl.push(Some(60 * MS), 320, false, &mut out).sample, 640);
    }

    #[test]
    fn after_a_resync_back_every_sample_lands_at_its_time() {
        // 4 s of 20 ms buffers; from 1 s on each is stamped 200 ms earlier than its place by
        // count. Resynced at once, or once the discontinuity has lasted a second.
        for (wait, resynced_by) in [(0, 1_000), (SEC, 2_200)] {
            let grid = Grid::new(1_000, 10 * SEC);
            let mut tl = Timeline::new(grid, 40 * MS);
            tl.set_discont_wait(wait);
            let buffers = (0..200u64).map(|k| {
                let t = if k < 50 {
                    k * 20 * MS
                } else {
                    k * 20 * MS - 200 * MS
                };
                (t, 20, false)
            });
            let (files, totals) = stream(&mut tl, buffers);
            // Only the 200 overlapping samples are dropped; the first one that does not
            // overlap, and every one after it, is at its time.
            assert_eq!(totals.dropped, 200, "discont-wait {wait}");
            for (&n, &s) in &merged(&files) {
                let i = s - 1;
                if i >= resynced_by {
                    assert_eq!(n, i - 200, "discont-wait {wait}: input sample {i}");
                }
            }
        }
    }

    #[test]
    fn a_lone_outlier_loses_at_most_itself() {
        // 20 s of 20 ms buffers; buffer 500 (at 10 s) stamped 60 s later.
        for (wait, flagged) in [(0, false), (SEC, false), (0, true), (SEC, true)] {
            let grid = Grid::new(1_000, 5 * SEC);
            let mut tl = Timeline::new(grid, 40 * MS);
            tl.set_discont_wait(wait);
            let buffers = (0..1_000u64).map(|k| {
                let t = k * 20 * MS;
                if k == 500 {
                    (t + 60 * SEC, 20, flagged)
                } else {
                    (t, 20, flagged && k == 501)
                }
            });
            let (files, totals) = stream(&mut tl, buffers);
            let at = merged(&files);
            let outlier = 10_000..10_020;
            let lost = (0..20_000u64)
                .filter(|i| !outlier.contains(i) && at.get(i) != Some(&(i + 1)))
                .count();
            assert!(
                lost <= 20,
                "discont-wait {wait}, flagged {flagged}: {lost} samples lost or misplaced, \
                 {} dropped",
                totals.dropped
            );
            assert!(files.len() <= 4 + 3, "{} files", files.len());
        }
    }

    #[test]
    fn stepping_back_sample_by_sample_opens_few_files() {
        // 1,200 one-sample buffers flagged as discontinuities, each stamped 1 ms before the
        // previous one.
        let grid = Grid::new(16_000, 5 * SEC);
        let mut tl = Timeline::new(grid, 40 * MS);
        let buffers = (0..1_200u64).map(|k| (10 * SEC - k * MS, 1, true));
        let (files, totals) = stream(&mut tl, buffers);
        assert_eq!(totals.received, totals.data + totals.dropped);
        // A further file per threshold's worth of going back, at most.
        assert!(files.len() <= 1 + 1_200 / 40, "{} files", files.len());
        assert!(
            files_per_bucket(&files)
                .values()
                .all(|&n| n <= MAX_FILES_PER_BUCKET)
        );
    }

    #[test]
    fn re_anchoring_back_into_one_bucket_is_bounded() {
        let grid = Grid::new(1_000, 5 * SEC);
        let mut tl = Timeline::new(grid, 40 * MS);
        let mut pieces = Vec::new();
        let mut out = Vec::new();
        tl.push(Some(0), 1_000, false, &mut out);
        for _ in 0..1_200 {
            tl.reanchor();
            tl.push(Some(500 * MS), 100, false, &mut out);
            pieces.append(&mut out);
        }
        tl.finish(&mut out);
        pieces.append(&mut out);
        let opens = pieces
            .iter()
            .filter(|p| matches!(p, Piece::Open(_)))
            .count();
        // The first file and further ones up to the bound; the rest is dropped.
        assert_eq!(opens as u32, MAX_FILES_PER_BUCKET);
        let totals = tl.totals();
        assert_eq!(totals.received, totals.data + totals.dropped);
        assert!(totals.dropped >= 1_100 * 100);
    }

    #[test]
    fn a_gap_of_an_hour_writes_a_bounded_number_of_silent_files() {
        let grid = Grid::new(1_000, 5 * SEC);
        let mut tl = Timeline::new(grid, 40 * MS);
        let mut out = Vec::new();
        tl.push(Some(2 * SEC), 1_000, false, &mut out);
        tl.gap(Some(3 * SEC), 3_600 * SEC, &mut out);
        tl.push(Some(3_603 * SEC), 1_000, false, &mut out);
        tl.finish(&mut out);
        let opened: Vec<u64> = out
            .iter()
            .filter_map(|p| match p {
                Piece::Open(b) => Some(b.index),
                _ => None,
            })
            .collect();
        // The bucket of the data, 12 whole silent ones, the one where the gap ends.
        let mut expected = vec![0];
        expected.extend(1..=MAX_GAP_FILES);
        expected.push(720);
        assert_eq!(opened, expected);
        // The data after the gap is at its time: 3603 s is 3 s into bucket 720.
        let i = out
            .iter()
            .rposition(|p| matches!(p, Piece::Open(_)))
            .unwrap();
        assert_eq!(out[i + 1], Piece::Silence(3_000));
        assert_eq!(
            out[i + 2],
            Piece::Data {
                offset: 0,
                len: 1_000
            }
        );
    }

    #[test]
    fn going_back_over_audio_after_a_hole_drops_the_overlap() {
        // 2 s with a lost 20 ms packet at 1 s (flagged), then 2 s stamped 1.5 s back.
        let grid = Grid::new(1_000, 5 * SEC);
        let mut tl = Timeline::new(grid, 40 * MS);
        let buffers = (0..200u64).filter(|&k| k != 50).map(|k| {
            let t = if k < 100 {
                k * 20 * MS
            } else {
                k * 20 * MS - 1_500 * MS
            };
            (t, 20, k == 51)
        });
        let (files, totals) = stream(&mut tl, buffers);
        assert_eq!(
            files.len(),
            1,
            "no further file over the stream's own audio"
        );
        // Only the 1.5 s over audio already written (less the lost packet's place) is dropped.
        assert_eq!(totals.dropped, 1_500);
        // At 2 s, buffer 175 (the 174th pushed): back at its time.
        let at = merged(&files);
        assert_eq!(at.get(&2_000), Some(&(174 * 20 + 1)));
    }

    #[test]
    fn ping_pong_with_a_frozen_timestamp_is_bounded_and_the_stream_goes_on() {
        // Every other buffer stamped 100 s; 30 s of it.
        let grid = Grid::new(1_000, 5 * SEC);
        let mut tl = Timeline::new(grid, 40 * MS);
        let buffers = (0..1_500u64).map(|k| {
            let t = if k % 2 == 1 { 100 * SEC } else { k * 20 * MS };
            (t, 20, false)
        });
        let (files, totals) = stream(&mut tl, buffers);
        assert!(
            files_per_bucket(&files)
                .values()
                .all(|&n| n <= MAX_FILES_PER_BUCKET),
            "{:?}",
            files_per_bucket(&files)
        );
        assert_eq!(totals.received, totals.data + totals.dropped);
        // Once the stray bucket is full the strays are dropped and the stream itself is
        // recorded again, at its time.
        let at = merged(&files);
        for k in (1_000..1_500u64).step_by(2) {
            let t = k * 20;
            assert_eq!(at.get(&t), Some(&(k * 20 + 1)), "buffer {k}");
        }
    }

    #[test]
    fn a_gap_stamped_away_from_the_stream_is_ignored() {
        let grid = Grid::new(1_000, 5 * SEC);
        for gap_at in [500 * MS, 1_500 * MS] {
            let mut tl = Timeline::new(grid, 40 * MS);
            let mut out = Vec::new();
            tl.push(Some(0), 1_000, false, &mut out);
            tl.gap(Some(gap_at), 200 * MS, &mut out);
            tl.push(Some(SEC), 1_000, false, &mut out);
            assert_eq!(
                out,
                [
                    Piece::Open(grid.bucket(0)),
                    Piece::Data {
                        offset: 0,
                        len: 1_000
                    },
                    Piece::Data {
                        offset: 0,
                        len: 1_000
                    },
                ],
                "GAP at {gap_at}"
            );
        }
    }

    #[test]
    fn after_an_endless_gap_the_audio_is_placed_at_its_time() {
        let grid = Grid::new(1_000, 5 * SEC);
        let mut tl = Timeline::new(grid, 40 * MS);
        let mut out = Vec::new();
        tl.push(Some(0), 1_000, false, &mut out);
        tl.gap(Some(SEC), u64::MAX / 2, &mut out);
        for t in [2 * SEC, 600 * SEC, 86_400 * SEC] {
            out.clear();
            let placed = tl.push(Some(t), 1_000, false, &mut out);
            assert_eq!(placed.sample, t / 1_000_000, "{out:?}");
            assert!(
                !out.iter().any(|p| matches!(p, Piece::Dropped(_))),
                "{out:?}"
            );
        }
    }

    #[test]
    fn audio_stamped_inside_a_gap_lands_at_its_time() {
        // 1 s of audio, a GAP of 500 ms, then the stream again from 1.2 s, 10 ms before the
        // GAP's end, and 1 ms before the GAP's start (flagged).
        let grid = Grid::new(16_000, 5 * SEC);
        for (resume_ms, discont) in [(1_200, false), (1_490, false), (999, true)] {
            let mut tl = Timeline::new(grid, 40 * MS);
            let mut out = Vec::new();
            tl.push(Some(0), 16_000, false, &mut out);
            tl.gap(Some(SEC), 500 * MS, &mut out);
            let placed = tl.push(Some(resume_ms * MS), 320, discont, &mut out);
            assert_eq!(placed.sample, resume_ms * 16, "resumed at {resume_ms} ms");
            let gap = (resume_ms * 16).saturating_sub(16_000);
            assert_eq!(tl.totals().silence, gap, "resumed at {resume_ms} ms");
            // Only what overlaps the audio before the GAP is dropped.
            assert_eq!(
                tl.totals().dropped,
                16_000u64.saturating_sub(resume_ms * 16)
            );
        }
    }

    #[test]
    fn strays_to_many_buckets_keep_the_stream_bucket_bounded() {
        // Every other buffer a stray to a different far bucket.
        let grid = Grid::new(1_000, 5 * SEC);
        let mut tl = Timeline::new(grid, 40 * MS);
        let buffers = (0..200u64).map(|k| {
            let t = if k % 2 == 1 {
                100 * SEC + (k / 2) * 5 * SEC
            } else {
                k * 20 * MS
            };
            (t, 20, false)
        });
        let (files, _) = stream(&mut tl, buffers);
        let n = files_per_bucket(&files);
        assert!(
            n[&0] <= MAX_FILES_PER_BUCKET,
            "{} files for bucket 0",
            n[&0]
        );
    }

    #[test]
    fn a_stream_ending_in_a_long_gap_writes_at_most_twelve_silent_files() {
        let grid = Grid::new(1_000, 5 * SEC);
        let mut tl = Timeline::new(grid, 40 * MS);
        let mut out = Vec::new();
        tl.push(Some(0), 1_000, false, &mut out);
        tl.gap(Some(SEC), u64::MAX - SEC, &mut out);
        tl.finish(&mut out);
        let opened = out.iter().filter(|p| matches!(p, Piece::Open(_))).count();
        assert_eq!(opened as u64, 1 + MAX_GAP_FILES);
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

    #[derive(Debug, Clone)]
    enum Step {
        /// A buffer, `jump_ms` after (or before) where the previous one ended, stamped
        /// `jitter_ns` off its true time when it follows on.
        Buffer {
            len: usize,
            jump_ms: i64,
            jitter_ns: i64,
            discont: bool,
        },
        Gap {
            ms: u64,
        },
        Rate(u32),
    }

    /// Jitter of the test streams' timestamps, well below the 40 ms threshold.
    const MAX_JITTER: i64 = 15_000_000;

    /// Steps of a test stream; without `overlaps`, every jump back is flagged as a
    /// discontinuity (a re-anchor), so no sample overlaps another.
    fn step(overlaps: bool) -> impl Strategy<Value = Step> {
        let jump = prop_oneof![6 => Just(0i64), 2 => 100i64..3_000, 2 => -1_000i64..-100];
        prop_oneof![
            10 => (1usize..1_500, jump, -MAX_JITTER..MAX_JITTER, any::<bool>()).prop_map(
                move |(len, jump_ms, jitter_ns, discont)| Step::Buffer {
                    len,
                    jump_ms,
                    jitter_ns,
                    discont: discont || (jump_ms < 0 && !overlaps),
                }
            ),
            1 => (1u64..3_000).prop_map(|ms| Step::Gap { ms }),
            1 => prop::sample::select(vec![8_000u32, 16_000, 44_100]).prop_map(Step::Rate),
        ]
    }

    /// Replays `steps` and checks every piece. Each kept sample must land within half a sample
    /// of its true time, overlaps or not, none twice, and the accounting adds up.
    fn check_stream(start_ns: u64, duration_ns: u64, steps: &[Step]) -> Result<(), TestCaseError> {
        let mut rate = 16_000u32;
        let mut tl = Timeline::new(Grid::new(rate, duration_ns), 40 * MS);
        // (piece, index of the buffer's first sample, rate when placed)
        let mut pieces: Vec<(Piece, usize, u32)> = Vec::new();
        // True time and rate of every input sample.
        let mut truth: Vec<(i128, u32)> = Vec::new();
        let (mut run_start, mut run_count) = (start_ns as i128, 0u64);
        let mut follows_on = false;
        let now = |run_start: i128, run_count: u64, rate: u32| {
            run_start + i128::from(run_count) * i128::from(SEC) / i128::from(rate)
        };
        for step in steps {
            let mut out = Vec::new();
            let first = truth.len();
            match *step {
                Step::Buffer {
                    len,
                    jump_ms,
                    jitter_ns,
                    discont,
                } => {
                    let t = now(run_start, run_count, rate);
                    let (stamp, discont) =
                        if jump_ms != 0 && t + i128::from(jump_ms * 1_000_000) >= 0 {
                            run_start = t + i128::from(jump_ms * 1_000_000);
                            run_count = 0;
                            (run_start, discont)
                        } else if follows_on {
                            (t + i128::from(jitter_ns), false)
                        } else {
                            (t, false)
                        };
                    let base = now(run_start, run_count, rate);
                    for k in 0..len as u64 {
                        truth.push((
                            base + i128::from(k) * i128::from(SEC) / i128::from(rate),
                            rate,
                        ));
                    }
                    tl.push(Some(stamp.max(0) as u64), len, discont, &mut out);
                    run_count += len as u64;
                    // A buffer that jumped back may have been dropped whole: then the next one
                    // resyncs on its own timestamp, which must not be jittered.
                    follows_on = jump_ms >= 0 || discont;
                }
                Step::Gap { ms } => {
                    let t = now(run_start, run_count, rate);
                    tl.gap(Some(t as u64), ms * MS, &mut out);
                    run_start = t + i128::from(ms * MS);
                    run_count = 0;
                    follows_on = false;
                }
                Step::Rate(r) => {
                    tl.set_grid(Grid::new(r, duration_ns), &mut out);
                    // The closing pieces belong to the old rate.
                    pieces.extend(out.drain(..).map(|p| (p, first, rate)));
                    run_start = now(run_start, run_count, rate);
                    run_count = 0;
                    rate = r;
                    follows_on = false;
                }
            }
            pieces.extend(out.into_iter().map(|p| (p, first, rate)));
        }
        let mut out = Vec::new();
        tl.finish(&mut out);
        pieces.extend(out.into_iter().map(|p| (p, truth.len(), rate)));

        let totals = tl.totals();
        prop_assert_eq!(totals.received, truth.len() as u64);
        prop_assert_eq!(totals.received, totals.data + totals.dropped);
        let mut seen = vec![false; truth.len()];
        let mut file: Option<(Bucket, u32, u64)> = None;
        let mut file_samples = 0u64;
        for &(piece, first, piece_rate) in &pieces {
            match piece {
                Piece::Open(b) => {
                    prop_assert!(file.is_none());
                    file = Some((b, piece_rate, 0));
                }
                Piece::Silence(n) => file.as_mut().unwrap().2 += n,
                Piece::Data { offset, len } => {
                    let (b, file_rate, written) = file.as_mut().unwrap();
                    for k in 0..len {
                        let i = first + offset + k;
                        prop_assert!(!seen[i], "sample {} placed twice", i);
                        seen[i] = true;
                        let (t, r) = truth[i];
                        prop_assert_eq!(r, *file_rate);
                        let n = b.first + *written + k as u64;
                        let grid_t = i128::from(n) * i128::from(SEC) / i128::from(r);
                        // Half a sample, plus the nanoseconds lost to integer division on both sides.
                        let half = i128::from(SEC) / i128::from(r) / 2 + 3;
                        prop_assert!(
                            (grid_t - t).abs() <= half,
                            "sample {} at {} instead of {}",
                            i,
                            grid_t,
                            t
                        );
                    }
                    *written += len as u64;
                }
                Piece::Dropped(_) => {}
                Piece::Close(b) => {
                    let (open, _, written) = file.take().unwrap();
                    prop_assert_eq!(open, b);
                    prop_assert_eq!(written, b.len());
                    file_samples += written;
                }
            }
        }
        prop_assert!(file.is_none());
        prop_assert_eq!(seen.iter().filter(|&&s| s).count() as u64, totals.data);
        prop_assert_eq!(file_samples, totals.data + totals.silence);
        Ok(())
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

        /// Streams with jitter below the threshold, holes, re-anchors forward and back, GAP
        /// events and rate changes: every sample lands within half a sample of its true time,
        /// none twice, no file is short or long, and the accounting adds up.
        #[test]
        fn every_sample_lands_at_its_time(
            start_ns in 0u64..10 * SEC,
            duration_ms in prop::sample::select(vec![100u64, 250, 1_000, 5_000]),
            steps in prop::collection::vec(step(false), 1..80),
        ) {
            check_stream(start_ns, duration_ms * MS, &steps)?;
        }

        /// The same with unflagged jumps back: the overlapping samples are dropped and
        /// counted, the rest still land near their time, and the accounting adds up.
        #[test]
        fn overlaps_are_dropped_and_counted(
            start_ns in 0u64..10 * SEC,
            duration_ms in prop::sample::select(vec![100u64, 250, 1_000, 5_000]),
            steps in prop::collection::vec(step(true), 1..80),
        ) {
            check_stream(start_ns, duration_ms * MS, &steps)?;
        }
    }
}
