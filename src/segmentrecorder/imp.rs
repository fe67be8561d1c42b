//! The element: properties, caps, events, state changes and bus messages. It places each buffer
//! on the [`Timeline`] and hands the resulting commands to the [`writer`]; it never opens a file.

use std::path::Path;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;

use super::call::{self, CALL_EVENT};
use super::wallclock::WallClock;
use super::{OverflowPolicy, Tap, TimestampMode};
use crate::lock_order::{Guard, Level, OrderedMutex};
use crate::timeline::{Alignment, Grid, Piece, Placement, Timeline, Totals};
use crate::writer::{
    self, Config, Identity, Overflow, Recording, Report, SegmentOpened, SegmentSpec,
    SegmentWritten, Step, Submitted, WaitEnd, WriterStats, size,
};

const DEFAULT_BASE_DIR: &str = "/var/monitoring/audio";
const DEFAULT_SEGMENT_DURATION: gst::ClockTime = gst::ClockTime::from_seconds(5);
const MIN_SEGMENT_DURATION: gst::ClockTime = gst::ClockTime::from_mseconds(100);
const MAX_SEGMENT_DURATION: gst::ClockTime = gst::ClockTime::from_seconds(3_600);
const DEFAULT_ALIGNMENT_THRESHOLD: gst::ClockTime = gst::ClockTime::from_mseconds(40);
const DEFAULT_DISCONT_WAIT: gst::ClockTime = gst::ClockTime::SECOND;
const MAX_DISCONT_WAIT: gst::ClockTime = gst::ClockTime::from_seconds(60);
const DEFAULT_FLUSH_INTERVAL: gst::ClockTime = gst::ClockTime::from_mseconds(200);
const MIN_FLUSH_INTERVAL: gst::ClockTime = gst::ClockTime::from_mseconds(10);
const MAX_FLUSH_INTERVAL: gst::ClockTime = gst::ClockTime::from_seconds(10);
const DEFAULT_FSYNC: bool = false;
const DEFAULT_MAX_QUEUE_TIME: gst::ClockTime = gst::ClockTime::from_seconds(30);
const MIN_MAX_QUEUE_TIME: gst::ClockTime = gst::ClockTime::from_mseconds(100);
const MAX_MAX_QUEUE_TIME: gst::ClockTime = gst::ClockTime::from_seconds(600);
const DEFAULT_WRITE_RETRY_TIME: gst::ClockTime = gst::ClockTime::from_seconds(10);
const MAX_WRITE_RETRY_TIME: gst::ClockTime = gst::ClockTime::from_seconds(600);
const DEFAULT_RECORD: bool = true;
const DEFAULT_SILENCE_THRESHOLD: f64 = -60.0;
const DEFAULT_SILENCE_SEGMENTS: u32 = 6;
const DEFAULT_VOICE_THRESHOLD: f64 = -45.0;
/// How much longer than `write-retry-time` EOS and stopping wait for a writer making no
/// progress.
const WRITER_GRACE: Duration = Duration::from_secs(2);
/// The highest sample rate accepted: that of the fastest audio interfaces and formats (DXD and
/// beyond run at 352.8 and 384 kHz). With segments of at most an hour it keeps every file within
/// what a WAV header can describe.
const MAX_RATE: i32 = 384_000;

/// Caps of the `GstReferenceTimestampMeta` that carries UTC (RTP/NTP-aware sources).
const UNIX_TIMESTAMP_CAPS: &str = "timestamp/x-unix";

/// Name of the message posted for each segment file opened.
pub const SEGMENT_OPENED: &str = "segmentrecorder-segment-opened";
/// Name of the message posted for each segment written.
pub const SEGMENT_WRITTEN: &str = "segmentrecorder-segment-written";
/// Name of the message posted for each `.part` of a dead process recovered.
pub const SEGMENT_RECOVERED: &str = "segmentrecorder-segment-recovered";
/// Name of the message posted when sound comes back after a silence warning.
pub const SOUND_RETURNED: &str = "segmentrecorder-sound-returned";

#[derive(Debug, Clone)]
struct Settings {
    base_dir: String,
    trace_id: Option<String>,
    station_key: Option<String>,
    tap: Tap,
    segment_duration: gst::ClockTime,
    timestamp_mode: TimestampMode,
    alignment_threshold: gst::ClockTime,
    discont_wait: gst::ClockTime,
    flush_interval: gst::ClockTime,
    fsync: bool,
    max_queue_time: gst::ClockTime,
    overflow_policy: OverflowPolicy,
    write_retry_time: gst::ClockTime,
    record: bool,
    silence_threshold: f64,
    silence_segments: u32,
    voice_threshold: f64,
    #[cfg(feature = "s3")]
    upload: super::upload::UploadSettings,
}

impl Settings {
    /// The identity the ids and tap name, or which property is unusable and why.
    fn identity(&self) -> Result<Identity, String> {
        for (name, value) in [
            ("trace-id", &self.trace_id),
            ("station-key", &self.station_key),
        ] {
            if value.as_deref().is_none_or(str::is_empty) {
                return Err(format!(
                    "Property '{name}' is not set: set it before starting, segments are filed \
                     under it"
                ));
            }
        }
        Identity::new(
            self.trace_id.as_deref().unwrap_or_default(),
            self.station_key.as_deref().unwrap_or_default(),
            self.tap.dir_name(),
        )
        .map_err(|(name, e)| format!("Property '{name}' cannot name a directory: {e}"))
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            base_dir: DEFAULT_BASE_DIR.to_owned(),
            trace_id: None,
            station_key: None,
            tap: Tap::default(),
            segment_duration: DEFAULT_SEGMENT_DURATION,
            timestamp_mode: TimestampMode::default(),
            alignment_threshold: DEFAULT_ALIGNMENT_THRESHOLD,
            discont_wait: DEFAULT_DISCONT_WAIT,
            flush_interval: DEFAULT_FLUSH_INTERVAL,
            fsync: DEFAULT_FSYNC,
            max_queue_time: DEFAULT_MAX_QUEUE_TIME,
            overflow_policy: OverflowPolicy::default(),
            write_retry_time: DEFAULT_WRITE_RETRY_TIME,
            record: DEFAULT_RECORD,
            silence_threshold: DEFAULT_SILENCE_THRESHOLD,
            silence_segments: DEFAULT_SILENCE_SEGMENTS,
            voice_threshold: DEFAULT_VOICE_THRESHOLD,
            #[cfg(feature = "s3")]
            upload: Default::default(),
        }
    }
}

/// Everything between `start()` and `stop()`.
struct State {
    recording: Arc<Recording>,
    identity: Arc<Identity>,
    /// A call boundary asked for while running: applied before the next buffer.
    next_identity: Option<Arc<Identity>>,
    segment_duration: gst::ClockTime,
    timestamp_mode: TimestampMode,
    alignment_threshold: gst::ClockTime,
    discont_wait: gst::ClockTime,
    max_queue_time: gst::ClockTime,
    overflow_policy: OverflowPolicy,
    record: bool,
    /// Known once caps are set.
    timeline: Option<Timeline>,
    segment: gst::FormattedSegment<gst::ClockTime>,
    wall_clock: Option<WallClock>,
    /// Timeline time and running time of the latest buffer placed by its timestamp.
    anchor: Option<(u64, gst::ClockTime)>,
    pieces: Vec<Piece>,
    steps: Vec<Step>,
    /// Samples dropped as overlaps in the current episode, which ends after a second of the
    /// stream without a drop, and their duration in nanoseconds.
    overlapping: (u64, u64),
    /// Samples received since the last drop.
    clean: u64,
}

impl State {
    /// Turns the timeline's pieces into writer steps (whose data is the current buffer's),
    /// in `self.steps`, whose allocation is reused from buffer to buffer.
    fn make_steps(&mut self, imp: &SegmentRecorder) {
        let rate = self.timeline.as_ref().map_or(0, |t| t.grid().rate());
        let mut steps = std::mem::take(&mut self.steps);
        steps.extend(self.pieces.iter().map(|piece| match *piece {
            Piece::Open(bucket) => {
                gst::debug!(CAT, imp = imp, "Opening bucket {} ms", bucket.start_ms());
                let (start_running_time_ns, start_utc_ns) = self.start_times(bucket.start_ns);
                Step::Open(SegmentSpec {
                    identity: self.identity.clone(),
                    bucket_ms: bucket.start_ms(),
                    rate,
                    start_running_time_ns,
                    start_utc_ns,
                })
            }
            Piece::Silence(n) => Step::Silence(n),
            Piece::Data { offset, len } => Step::Data { offset, len },
            Piece::Dropped(n) => {
                gst::debug!(
                    CAT,
                    imp = imp,
                    "Dropped {n} samples overlapping earlier ones"
                );
                Step::Dropped(n)
            }
            Piece::Close(bucket) => {
                gst::debug!(CAT, imp = imp, "Closing bucket {} ms", bucket.start_ms());
                Step::Close
            }
        }));
        self.pieces.clear();
        self.steps = steps;
    }

    /// The steps of the timeline's pieces, to submit after the state's lock is released.
    fn steps(&mut self, imp: &SegmentRecorder) -> Vec<Step> {
        self.make_steps(imp);
        std::mem::take(&mut self.steps)
    }

    /// Running time and UTC of the timeline time `start_ns`, as far as they are known.
    fn start_times(&self, start_ns: u64) -> (Option<u64>, Option<u64>) {
        let running_time = self.anchor.and_then(|(time, rt)| {
            let t = i128::from(rt.nseconds()) + i128::from(start_ns) - i128::from(time);
            u64::try_from(t).ok()
        });
        let utc = match self.timestamp_mode {
            TimestampMode::RunningTime => running_time
                .zip(self.wall_clock.as_ref())
                .map(|(rt, w)| w.utc_ns(gst::ClockTime::from_nseconds(rt))),
            TimestampMode::WallClock | TimestampMode::ReferenceTimestamp => Some(start_ns),
        };
        (running_time, utc)
    }

    /// Applies a pending call boundary: the open bucket is closed, padded, under the old
    /// identity, and what follows is filed under the new one.
    fn apply_call_boundary(&mut self, imp: &SegmentRecorder) {
        if let Some(identity) = self.next_identity.take() {
            gst::info!(
                CAT,
                imp = imp,
                "Call boundary: trace '{}', station '{}', tap {} from now on",
                identity.trace_id(),
                identity.station_key(),
                identity.tap()
            );
            if let Some(timeline) = self.timeline.as_mut() {
                timeline.close_bucket(&mut self.pieces);
            }
            // What the old call still had to write (a GAP's files) is filed under it.
            self.make_steps(imp);
            self.identity = identity;
        }
    }

    /// Ends the current stream: the open bucket is padded and closed (under the identity it
    /// was opened with; a pending call boundary applies from the next stream on).
    fn end_stream(&mut self, imp: &SegmentRecorder) -> Vec<Step> {
        if let Some(timeline) = self.timeline.as_mut() {
            timeline.finish(&mut self.pieces);
        }
        let steps = self.steps(imp);
        self.apply_call_boundary(imp);
        steps
    }

    /// How a full queue is handled now.
    fn overflow(&self, live: bool) -> Overflow {
        match self.overflow_policy {
            OverflowPolicy::Auto if live => Overflow::DropNewest,
            OverflowPolicy::Auto | OverflowPolicy::Wait => Overflow::Wait,
            OverflowPolicy::DropNewest => Overflow::DropNewest,
            OverflowPolicy::DropOldest => Overflow::DropOldest,
        }
    }

    /// Counts a buffer of `len` samples of which `dropped` were dropped as overlaps; returns the
    /// episode of drops this buffer ends (samples, nanoseconds), or zeros.
    fn count_overlap(&mut self, dropped: u64, len: u64) -> (u64, u64) {
        if dropped > 0 {
            let rate = u64::from(self.rate().max(1));
            self.overlapping.0 += dropped;
            self.overlapping.1 += dropped * 1_000_000_000 / rate;
            self.clean = 0;
        } else if self.overlapping.0 > 0 {
            self.clean += len;
            if self.clean >= u64::from(self.rate()) {
                return std::mem::take(&mut self.overlapping);
            }
        }
        (0, 0)
    }

    /// The sample rate, once caps are set.
    fn rate(&self) -> u32 {
        self.timeline.as_ref().map_or(0, |t| t.grid().rate())
    }

    /// The queue limit in bytes for the current rate.
    fn queue_limit(&self) -> usize {
        let rate = self.timeline.as_ref().map_or(16_000, |t| t.grid().rate());
        let samples = u128::from(self.max_queue_time.nseconds()) * u128::from(rate) / 1_000_000_000;
        usize::try_from(samples * 2).unwrap_or(usize::MAX)
    }
}

/// Consecutive silent segments, for the silence warning.
#[derive(Debug, Default)]
struct SilenceWatch {
    silent: u32,
}

/// Whether upstream is live, once asked (per stream).
const LIVE_UNKNOWN: u8 = 0;
const LIVE: u8 = 1;
const NOT_LIVE: u8 = 2;

// Mutex order: `settings`, `state`, `silence`, `last_stats`, `uploads`, each of them before
// every lock of the writer and the uploader (crate::lock_order::Level). In practice the
// element's locks are taken one at a time; `state` is held while the recording's queue is
// locked and while the wall-clock mapping is looked up, `uploads` while the uploader's counters
// are read. Debug builds check the order.
pub struct SegmentRecorder {
    settings: OrderedMutex<Settings>,
    state: OrderedMutex<Option<State>>,
    /// `LIVE_UNKNOWN`, `LIVE` or `NOT_LIVE`; outside `state` to keep the streaming thread's
    /// locking to one lock per buffer.
    live: AtomicU8,
    /// Samples dropped on overflow since the writer last kept up.
    dropping: AtomicU64,
    silence: OrderedMutex<SilenceWatch>,
    /// The statistics of the last recording, kept after it stopped.
    last_stats: OrderedMutex<Option<gst::Structure>>,
    /// Where finished segments are uploaded, and the base directory their keys are taken
    /// from; outside `state`, for the writer threads.
    #[cfg(feature = "s3")]
    uploads: OrderedMutex<Option<(Arc<crate::uploader::Uploads>, std::path::PathBuf)>>,
}

impl Default for SegmentRecorder {
    fn default() -> Self {
        SegmentRecorder {
            settings: OrderedMutex::new(Level::ElementSettings, Settings::default()),
            state: OrderedMutex::new(Level::ElementState, None),
            live: AtomicU8::new(LIVE_UNKNOWN),
            dropping: AtomicU64::new(0),
            silence: OrderedMutex::new(Level::ElementSilence, SilenceWatch::default()),
            last_stats: OrderedMutex::new(Level::ElementLastStats, None),
            #[cfg(feature = "s3")]
            uploads: OrderedMutex::new(Level::ElementUploads, None),
        }
    }
}

pub(super) static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "segmentrecorder",
        gst::DebugColorFlags::empty(),
        Some("Segment recorder"),
    )
});

fn lock<T>(m: &OrderedMutex<T>) -> Guard<'_, T> {
    m.lock()
}

fn duration(t: gst::ClockTime) -> Duration {
    Duration::from_nanos(t.nseconds())
}

/// The `recording-stats` structure.
fn stats_structure(totals: Totals, w: &WriterStats) -> gst::Structure {
    let written = totals
        .data
        .saturating_sub(w.samples_dropped_overflow + w.samples_lost);
    gst::Structure::builder("segmentrecorder-stats")
        .field("segments-written", w.segments_written)
        .field("segments-failed", w.segments_failed)
        .field("segments-recovered", w.segments_recovered)
        .field("samples-received", totals.received)
        .field("samples-written", written)
        .field("samples-silence", totals.silence)
        .field("samples-dropped-overlap", totals.dropped)
        .field("samples-dropped-overflow", w.samples_dropped_overflow)
        .field("samples-lost-write-error", w.samples_lost)
        .field("bytes-written", w.bytes_written)
        .field("write-errors", w.write_errors)
        .field("queue-bytes", w.queue_bytes)
        .field("queue-high-water", w.queue_high_water)
        .field("last-error", w.last_error.as_deref().unwrap_or(""))
        .build()
}

impl SegmentRecorder {
    /// Hands `steps` (with the buffer `data` they refer to) to the writer, outside of any lock
    /// of ours.
    fn submit(&self, recording: &Recording, mut steps: Vec<Step>, data: &[u8], overflow: Overflow) {
        if steps.is_empty() {
            return;
        }
        let submitted = recording.submit(&mut steps, data, overflow);
        self.count_dropped(submitted, overflow);
    }

    /// Warns once per episode of samples dropped on overflow. An episode ends when the writer
    /// keeps up again, not at the first buffer that drops nothing: drop-oldest makes room a
    /// whole queued piece at a time, so the buffers that follow fit while the writer is as far
    /// behind as before.
    fn count_dropped(&self, submitted: Submitted, overflow: Overflow) {
        let dropped = submitted.dropped;
        if dropped == 0 {
            if submitted.keeping_up && self.dropping.load(Ordering::Relaxed) != 0 {
                let total = self.dropping.swap(0, Ordering::Relaxed);
                gst::debug!(
                    CAT,
                    imp = self,
                    "The writer keeps up again after {total} samples were dropped"
                );
            }
            return;
        }
        if self.dropping.fetch_add(dropped, Ordering::Relaxed) == 0 {
            gst::element_imp_warning!(
                self,
                gst::ResourceError::Write,
                ("The disk is slower than the audio: dropping samples"),
                [
                    "The writer queue is full; {} samples were written as silence ({:?}). \
                     Further drops follow until the writer catches up; see recording-stats.",
                    dropped,
                    overflow
                ]
            );
        } else {
            gst::debug!(CAT, imp = self, "Dropped {dropped} more samples");
        }
    }

    /// Waits until the writer has written everything `recording` was given, for as long as
    /// the writer makes progress within `write-retry-time` and a grace: a failing disk gives
    /// segments up within the retry time, a disk that does not answer at all is not waited
    /// for forever. `interruptible`: a flush ends the wait.
    fn wait_for_writer(&self, recording: &Recording, interruptible: bool) {
        let patience = duration(lock(&self.settings).write_retry_time) + WRITER_GRACE;
        match recording.wait_idle_within(interruptible, patience) {
            Ok(()) => (),
            Err(WaitEnd::Unblocked) => {
                gst::debug!(CAT, imp = self, "Flushing while waiting for the writer");
            }
            Err(WaitEnd::OnItsWriter) => {
                // A bus sync handler ending the stream from one of this recorder's messages.
                gst::debug!(
                    CAT,
                    imp = self,
                    "Not waiting for the writer on its own thread: the files are finished once \
                     the message handler returns"
                );
            }
            Err(WaitEnd::NoProgress { queued_bytes }) => {
                gst::element_imp_warning!(
                    self,
                    gst::ResourceError::Write,
                    (
                        "The disk has not answered for {:?}: going on without waiting for {} \
                         bytes of audio still queued",
                        patience,
                        queued_bytes
                    ),
                    [
                        "They are written if the disk answers while the process lives; \
                         otherwise the open segment's .part is recovered at the next start"
                    ]
                );
            }
        }
    }

    /// Closes the open bucket of the current stream and returns the recording, if started.
    fn end_stream(&self) -> Option<Arc<Recording>> {
        let (recording, batch, overlapped) = {
            let mut state = lock(&self.state);
            let state = state.as_mut()?;
            self.live.store(LIVE_UNKNOWN, Ordering::Relaxed);
            let overlapped = std::mem::take(&mut state.overlapping);
            (state.recording.clone(), state.end_stream(self), overlapped)
        };
        self.warn_overlap(overlapped);
        self.submit(&recording, batch, &[], Overflow::Wait);
        Some(recording)
    }

    /// Tells where a buffer went: every buffer at LOG, every resync, hole and overlap at DEBUG.
    fn log_placement(
        &self,
        buffer: &gst::Buffer,
        time: Option<u64>,
        placed: Placement,
        pieces: &[Piece],
    ) {
        let samples = |p: &Piece| match *p {
            Piece::Silence(n) | Piece::Dropped(n) => n,
            Piece::Data { len, .. } => len as u64,
            Piece::Open(_) | Piece::Close(_) => 0,
        };
        if placed.alignment != Alignment::Counted {
            let hole: u64 = pieces
                .iter()
                .take_while(|p| !matches!(p, Piece::Data { .. }))
                .filter(|p| matches!(p, Piece::Silence(_)))
                .map(samples)
                .sum();
            let dropped: u64 = pieces
                .iter()
                .filter(|p| matches!(p, Piece::Dropped(_)))
                .map(samples)
                .sum();
            gst::debug!(
                CAT,
                imp = self,
                "{:?} at grid sample {} (timeline time {:?}, PTS {:?}, discont {}): {} samples \
                 of silence before it, {} dropped as overlap",
                placed.alignment,
                placed.sample,
                time,
                buffer.pts(),
                buffer.flags().contains(gst::BufferFlags::DISCONT),
                hole,
                dropped
            );
        }
        gst::log!(
            CAT,
            imp = self,
            "Buffer PTS {:?}, {} bytes: {:?} at grid sample {}, pieces {:?}",
            buffer.pts(),
            buffer.size(),
            placed.alignment,
            placed.sample,
            pieces
        );
    }

    /// Warns of an episode of `samples` lasting `ns` dropped as overlaps, once it is over (a
    /// second of the stream without a drop, or the end of the stream).
    fn warn_overlap(&self, (samples, ns): (u64, u64)) {
        if samples == 0 {
            return;
        }
        gst::element_imp_warning!(
            self,
            gst::StreamError::Failed,
            (
                "Dropped {} samples ({} ms) whose timestamps put them over audio already written",
                samples,
                ns / 1_000_000
            ),
            [
                "The stream's timestamps went back; the samples that overlapped were dropped \
                 and every later sample is placed at its timestamp. See samples-dropped-overlap \
                 in recording-stats."
            ]
        );
    }

    /// Files what follows under the identity of `settings` from the next buffer on (a call
    /// boundary), or says why they cannot name a directory.
    fn change_identity(&self, settings: &Settings) -> Result<(), String> {
        let identity = settings.identity()?;
        if let Some(state) = lock(&self.state).as_mut() {
            state.next_identity = (identity != *state.identity).then(|| Arc::new(identity));
        }
        Ok(())
    }

    /// Applies a call boundary event where it is in the stream: the properties it names change
    /// as if set, and the buffers after it are filed under the new call.
    fn call_boundary(&self, s: &gst::StructureRef) {
        let applied = call::parse(s).and_then(|change| {
            let mut settings = lock(&self.settings);
            let mut changed = settings.clone();
            changed.trace_id = Some(change.trace_id);
            if change.station_key.is_some() {
                changed.station_key = change.station_key;
            }
            changed.identity()?;
            let notify = [
                ("trace-id", changed.trace_id != settings.trace_id),
                ("station-key", changed.station_key != settings.station_key),
            ];
            *settings = changed.clone();
            drop(settings);
            self.change_identity(&changed)?;
            Ok(notify)
        });
        match applied {
            Ok(notify) => {
                for (name, changed) in notify {
                    if changed {
                        self.obj().notify(name);
                    }
                }
            }
            Err(reason) => gst::element_imp_warning!(
                self,
                gst::StreamError::Format,
                (
                    "Ignored a {} event: {}; recording goes on under the current call",
                    CALL_EVENT,
                    reason
                ),
                ["{:?}", s]
            ),
        }
    }

    /// After a flush or a new segment: the next buffer goes where its time says.
    fn reanchor(&self) {
        if let Some(timeline) = lock(&self.state).as_mut().and_then(|s| s.timeline.as_mut()) {
            gst::debug!(CAT, imp = self, "Re-anchoring on the next buffer");
            timeline.reanchor();
        }
    }

    /// A GAP event: the stream was there, silent, for `duration` from `timestamp`.
    fn gap(&self, timestamp: gst::ClockTime, duration: gst::ClockTime) {
        let (recording, batch) = {
            let mut state = lock(&self.state);
            let Some(state) = state.as_mut() else { return };
            if state.timeline.is_none() || !state.record {
                return;
            }
            state.apply_call_boundary(self);
            let time = self.timeline_time(state, Some(timestamp), None);
            gst::debug!(CAT, imp = self, "Gap of {duration} at {timestamp}");
            if let Some(timeline) = state.timeline.as_mut() {
                timeline.gap(time, duration.nseconds(), &mut state.pieces);
            }
            (state.recording.clone(), state.steps(self))
        };
        self.submit(&recording, batch, &[], Overflow::Wait);
    }

    /// Whether upstream is live: then a full writer queue drops samples instead of waiting.
    fn upstream_live(&self) -> bool {
        match self.live.load(Ordering::Relaxed) {
            LIVE => return true,
            NOT_LIVE => return false,
            _ => (),
        }
        let live = match self.obj().query_latency() {
            Ok((_, upstream_live, _, _)) => upstream_live,
            Err(_) => false,
        };
        gst::debug!(
            CAT,
            imp = self,
            "Upstream is {}",
            if live { "live" } else { "not live" }
        );
        self.live
            .store(if live { LIVE } else { NOT_LIVE }, Ordering::Relaxed);
        live
    }

    /// The current running time, for a first buffer that carries no timestamp.
    fn now_running_time(&self) -> Option<gst::ClockTime> {
        let obj = self.obj();
        let clock = obj.clock()?;
        clock.time().checked_sub(obj.base_time()?)
    }

    /// Keeps `state.wall_clock` the running time → UTC mapping of `clock` (the element's,
    /// fetched once per buffer by the caller) and the base time; returns UTC of `running_time`.
    fn wall_clock(
        &self,
        state: &mut State,
        clock: Option<gst::Clock>,
        running_time: gst::ClockTime,
    ) -> u64 {
        let base_time = self.obj().base_time().unwrap_or(gst::ClockTime::ZERO);
        let wall_clock = match state.wall_clock.take() {
            Some(w) if w.is_for(clock.as_ref(), base_time) => w,
            _ => match &clock {
                Some(clock) => WallClock::shared(clock, base_time),
                None => {
                    gst::warning!(
                        CAT,
                        imp = self,
                        "No clock: running time {running_time} is taken as now"
                    );
                    WallClock::anchored_now(running_time)
                }
            },
        };
        let utc = wall_clock.utc_ns(running_time);
        state.wall_clock = Some(wall_clock);
        utc
    }

    /// The time of a buffer's first sample on the bucket timeline; `None` to continue the
    /// stream where it is. `reference` is the UTC time the buffer carries, if any
    /// (reference-timestamp mode).
    fn timeline_time(
        &self,
        state: &mut State,
        pts: Option<gst::ClockTime>,
        reference: Option<gst::ClockTime>,
    ) -> Option<u64> {
        let running_time = pts.and_then(|pts| state.segment.to_running_time(pts));
        if let Some(utc) = reference {
            if let Some(rt) = running_time {
                state.anchor = Some((utc.nseconds(), rt));
            }
            return Some(utc.nseconds());
        }
        let anchored = state.timeline.as_ref().is_some_and(Timeline::is_anchored);
        let running_time = match running_time {
            Some(rt) => rt,
            None if anchored => return None,
            None => self.now_running_time().unwrap_or(gst::ClockTime::ZERO),
        };
        let time = match state.timestamp_mode {
            TimestampMode::RunningTime => {
                if let Some(clock) = self.obj().clock() {
                    // Only to tell the UTC time of each segment in its message.
                    self.wall_clock(state, Some(clock), running_time);
                }
                running_time.nseconds()
            }
            TimestampMode::WallClock | TimestampMode::ReferenceTimestamp => {
                self.wall_clock(state, self.obj().clock(), running_time)
            }
        };
        state.anchor = Some((time, running_time));
        Some(time)
    }

    /// The `recording-stats` of the running recording, or of the last one.
    fn stats(&self) -> gst::Structure {
        let current = lock(&self.state).as_ref().map(|s| {
            let totals = s
                .timeline
                .as_ref()
                .map(Timeline::totals)
                .unwrap_or_default();
            (totals, s.recording.clone())
        });
        let (totals, writer) = match current {
            Some((totals, recording)) => (totals, recording.stats()),
            None => {
                let last = lock(&self.last_stats).clone();
                #[allow(unused_mut)]
                if let Some(mut last) = last {
                    // The writer's counters are final; the uploads go on after the stop.
                    #[cfg(feature = "s3")]
                    if let Some(uploads) = self.uploads() {
                        super::upload::add_stats(&mut last, &uploads.stats());
                    }
                    return last;
                }
                (Totals::default(), WriterStats::default())
            }
        };
        #[allow(unused_mut)]
        let mut s = stats_structure(totals, &writer);
        #[cfg(feature = "s3")]
        if let Some(uploads) = self.uploads() {
            super::upload::add_stats(&mut s, &uploads.stats());
        }
        s
    }

    /// Hands a published segment to the uploader, if uploads are configured.
    #[cfg(feature = "s3")]
    fn upload(&self, location: &Path) {
        let uploads = lock(&self.uploads).clone();
        if let Some((uploads, base)) = uploads
            && let Some(relative) = location.strip_prefix(&base).ok().and_then(Path::to_str)
        {
            uploads.enqueue(location.to_owned(), relative);
        }
    }

    /// Sets up uploads if `upload-location` is set, and asks for a scan of the whole base
    /// directory for segments never confirmed uploaded (in the background: the start does not
    /// wait for it). What the scan finds is reported by this recorder, whatever call it is of.
    #[cfg(feature = "s3")]
    fn start_uploads(&self, settings: &Settings, base_dir: &Path) -> Result<(), gst::ErrorMessage> {
        let config = settings
            .upload
            .config(super::log_hook::logger(&self.obj()))
            .map_err(|reason| gst::error_msg!(gst::LibraryError::Settings, ("{}", reason)))?;
        let uploads = match config {
            Some(config) => {
                let weak = self.obj().downgrade();
                let uploads = crate::uploader::Uploads::new(config, move |report| {
                    if let Some(obj) = weak.upgrade() {
                        obj.imp().upload_report(report);
                    }
                })
                .map_err(|e| {
                    gst::error_msg!(
                        gst::CoreError::Thread,
                        ("Cannot start the upload threads: {}", e)
                    )
                })?;
                uploads.scan_backlog(base_dir.to_owned());
                Some((Arc::new(uploads), base_dir.to_owned()))
            }
            None => None,
        };
        *lock(&self.uploads) = uploads;
        Ok(())
    }

    /// The uploads of the current (or last) recording, if it uploads.
    #[cfg(feature = "s3")]
    fn uploads(&self) -> Option<Arc<crate::uploader::Uploads>> {
        lock(&self.uploads).as_ref().map(|(u, _)| u.clone())
    }

    /// With `upload-wait-eos`, waits until this recorder's uploads are done or gave up, or
    /// `unlock()` ends the wait (a flush, a state change down).
    #[cfg(feature = "s3")]
    fn wait_for_uploads(&self) {
        if !lock(&self.settings).upload.wait_eos {
            return;
        }
        if let Some(uploads) = self.uploads() {
            gst::debug!(CAT, imp = self, "Waiting for uploads before EOS");
            if !uploads.wait_own() {
                gst::debug!(CAT, imp = self, "Unlocked while waiting for uploads");
            }
        }
    }

    /// Called on an uploader thread for each upload done or given up, in any state: posts
    /// what there is to post, then emits `upload-done`.
    #[cfg(feature = "s3")]
    fn upload_report(&self, report: crate::uploader::UploadReport) {
        gst::debug!(
            CAT,
            imp = self,
            "Upload of {} as {}: {} after {} attempts",
            report.location.display(),
            report.key,
            report.outcome.name(),
            report.attempts
        );
        if let crate::uploader::Outcome::Uploaded { .. } = report.outcome {
            self.post(super::upload::uploaded_structure(&report));
        }
        match super::upload::warning(&report) {
            Some((text, true)) => {
                gst::element_imp_warning!(self, gst::ResourceError::Read, ("{}", text));
            }
            Some((text, false)) => {
                gst::element_imp_warning!(
                    self,
                    gst::ResourceError::Write,
                    ("{}", text),
                    ["Bucket {}, key {}", report.bucket, report.key]
                );
            }
            None => (),
        }
        self.obj().emit_by_name::<()>(
            super::upload::UPLOAD_DONE,
            &[&super::upload::outcome_structure(&report)],
        );
    }

    fn post(&self, s: gst::Structure) {
        let obj = self.obj();
        let _ = obj.post_message(gst::message::Element::builder(s).src(&*obj).build());
    }

    /// Called on a writer thread for each segment opened, written or given up.
    fn report(&self, report: Report) {
        match report {
            Report::Opened(o) => self.post(opened_structure(&o)),
            Report::Written(w) => {
                gst::debug!(
                    CAT,
                    imp = self,
                    "Wrote {} ({} samples: {} data, {} silence; {} dropped)",
                    w.location.display(),
                    w.samples,
                    w.data_samples,
                    w.silence_samples,
                    w.dropped_samples
                );
                self.post(written_structure(&w));
                #[cfg(feature = "s3")]
                self.upload(&w.location);
                self.watch_silence(&w);
            }
            Report::Retrying {
                spec,
                location,
                error,
                retry_for,
            } => {
                gst::element_imp_warning!(
                    self,
                    gst::ResourceError::Write,
                    ("Cannot write {}: {}", location.display(), error),
                    [
                        "Trace '{}': retrying for up to {:?} while the audio waits in the queue",
                        spec.map_or_else(String::new, |s| s.identity.trace_id().to_owned()),
                        retry_for
                    ]
                );
            }
            Report::Resumed { after, .. } => {
                gst::element_imp_info!(
                    self,
                    gst::ResourceError::Write,
                    ("Writing works again after failing for {:?}", after)
                );
            }
            Report::Failed {
                spec,
                location,
                error,
                kept,
            } => {
                let what = match &kept {
                    None => "the segment is lost".to_owned(),
                    Some((file, samples)) => format!(
                        "the {samples} samples that reached the disk stay in {}{}, the rest of \
                         the segment is lost",
                        file.display(),
                        if file.extension().is_some_and(|e| e == "part") {
                            " for recovery"
                        } else {
                            ""
                        }
                    ),
                };
                gst::element_imp_warning!(
                    self,
                    gst::ResourceError::Write,
                    (
                        "Gave up writing {}: {}; {}, recording goes on",
                        location.display(),
                        error,
                        what
                    ),
                    [
                        "Trace '{}', bucket {} ms. A .part is recovered when a recorder of \
                         this call starts, or by segmentrecorder-recover",
                        spec.as_ref()
                            .map_or_else(String::new, |s| s.identity.trace_id().to_owned()),
                        spec.as_ref().map_or(0, |s| s.bucket_ms)
                    ]
                );
            }
            Report::Recovered(r) => {
                #[cfg(feature = "s3")]
                self.upload(&r.location);
                gst::info!(CAT, imp = self, "Recovered {}", r.location.display());
                let s = gst::Structure::builder(SEGMENT_RECOVERED)
                    .field("location", r.location.to_string_lossy().as_ref())
                    .field("part", r.part.to_string_lossy().as_ref())
                    .field("bucket-ts-ms", r.bucket_ms)
                    .field("file-index", r.file_index)
                    .field("sample-rate", r.rate)
                    .field("samples", r.samples)
                    .build();
                self.post(s);
            }
            Report::RecoveryFailed { location, error } => {
                gst::element_imp_warning!(
                    self,
                    gst::ResourceError::Write,
                    ("Cannot recover {}: {}", location.display(), error)
                );
            }
        }
    }

    /// Warns once after `silence-segments` segments in a row whose peak stays under
    /// `silence-threshold`, and tells when sound returns.
    fn watch_silence(&self, w: &SegmentWritten) {
        let (threshold, needed) = {
            let settings = lock(&self.settings);
            (settings.silence_threshold, settings.silence_segments)
        };
        if needed == 0 {
            return;
        }
        let (warn, returned) = {
            let mut watch = lock(&self.silence);
            if w.levels.peak_dbfs < threshold {
                watch.silent += 1;
                (watch.silent == needed, None)
            } else {
                let silent = std::mem::take(&mut watch.silent);
                (false, (silent >= needed).then_some(silent))
            }
        };
        if warn {
            gst::element_imp_warning!(
                self,
                gst::StreamError::Failed,
                (
                    "The microphone or the upstream stage is silent: {} segments in a row \
                     stayed under {} dBFS",
                    needed,
                    threshold
                ),
                ["Last one: {}", w.location.display()]
            );
        }
        if let Some(silent) = returned {
            let s = gst::Structure::builder(SOUND_RETURNED)
                .field("location", w.location.to_string_lossy().as_ref())
                .field("silent-segments", u64::from(silent))
                .field("peak-dbfs", w.levels.peak_dbfs)
                .build();
            self.post(s);
        }
    }
}

/// The `segmentrecorder-segment-opened` message of a segment.
fn opened_structure(o: &SegmentOpened) -> gst::Structure {
    let mut s = gst::Structure::builder(SEGMENT_OPENED)
        .field("location", o.location.to_string_lossy().as_ref())
        .field("trace-id", o.spec.identity.trace_id())
        .field("station-key", o.spec.identity.station_key())
        .field("tap", o.spec.identity.tap())
        .field("bucket-ts-ms", o.spec.bucket_ms)
        .field("file-index", o.file_index)
        .field("sample-rate", o.spec.rate)
        .build();
    set_start_times(&mut s, &o.spec);
    s
}

/// Sets `running-time` and `utc` of a segment's message, as far as they are known.
fn set_start_times(s: &mut gst::StructureRef, spec: &SegmentSpec) {
    if let Some(rt) = spec.start_running_time_ns {
        s.set("running-time", gst::ClockTime::from_nseconds(rt));
    }
    if let Some(utc) = spec
        .start_utc_ns
        .and_then(|ns| gst::DateTime::from_unix_epoch_utc_usecs((ns / 1_000) as i64).ok())
    {
        s.set("utc", utc);
    }
}

/// The `segmentrecorder-segment-written` message of a segment.
fn written_structure(w: &SegmentWritten) -> gst::Structure {
    let rate = u64::from(w.spec.rate.max(1));
    let mut s = gst::Structure::builder(SEGMENT_WRITTEN)
        .field("location", w.location.to_string_lossy().as_ref())
        .field("trace-id", w.spec.identity.trace_id())
        .field("station-key", w.spec.identity.station_key())
        .field("tap", w.spec.identity.tap())
        .field("bucket-ts-ms", w.spec.bucket_ms)
        .field("file-index", w.file_index)
        .field("sample-rate", w.spec.rate)
        .field("samples", w.samples)
        .field("data-samples", w.data_samples)
        .field("silence-samples", w.silence_samples)
        .field("dropped-samples", w.dropped_samples)
        .field(
            "duration",
            gst::ClockTime::from_nseconds(w.samples * 1_000_000_000 / rate),
        )
        .field("rms-dbfs", w.levels.rms_dbfs)
        .field("peak-dbfs", w.levels.peak_dbfs)
        .field("voiced-ratio", w.levels.voiced_ratio)
        .build();
    set_start_times(&mut s, &w.spec);
    s
}

/// Whether `value`, if it holds a string, holds valid UTF-8 (C applications can set any bytes).
fn holds_utf8(value: &glib::Value) -> bool {
    use glib::translate::ToGlibPtr;
    if !value.type_().is_a(glib::Type::STRING) {
        return true;
    }
    // SAFETY: the value holds a string (checked above); the pointer it gives is null or a
    // NUL-terminated string owned by the value, which outlives this borrow.
    unsafe {
        let ptr = glib::gobject_ffi::g_value_get_string(value.to_glib_none().0);
        ptr.is_null() || std::ffi::CStr::from_ptr(ptr).to_str().is_ok()
    }
}

/// The UTC time of a buffer's first sample from its `timestamp/x-unix` reference timestamp.
fn reference_utc(buffer: &gst::BufferRef) -> Option<gst::ClockTime> {
    buffer
        .iter_meta::<gst::ReferenceTimestampMeta>()
        .find(|meta| {
            meta.reference()
                .structure(0)
                .is_some_and(|s| s.name() == UNIX_TIMESTAMP_CAPS)
        })
        .map(|meta| meta.timestamp())
}

#[glib::object_subclass]
impl ObjectSubclass for SegmentRecorder {
    const NAME: &'static str = "GstSegmentRecorder";
    type Type = super::SegmentRecorder;
    type ParentType = gst_base::BaseSink;
}

impl ObjectImpl for SegmentRecorder {
    fn signals() -> &'static [glib::subclass::Signal] {
        static SIGNALS: LazyLock<Vec<glib::subclass::Signal>> = LazyLock::new(|| {
            #[allow(unused_mut)]
            let mut signals = Vec::new();
            #[cfg(feature = "s3")]
            signals.extend(super::upload::signals());
            signals
        });
        SIGNALS.as_ref()
    }

    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            #[allow(unused_mut)]
            let mut properties = vec![
                glib::ParamSpecString::builder("base-dir")
                    .nick("Base directory")
                    .blurb(
                        "Directory under which segments are written as \
                         YYYY-MM-DD/<trace-id>/<station-key>/<PRE|POST>/segment_<ms>.wav; \
                         created if missing, must be writable and not empty",
                    )
                    .default_value(Some(DEFAULT_BASE_DIR))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("trace-id")
                    .nick("Trace ID")
                    .blurb(
                        "Identifier of the call being recorded (required), escaped into one \
                         directory name; changing it while playing starts a new call: the \
                         open segment is closed and what follows is filed under the new id",
                    )
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("station-key")
                    .nick("Station key")
                    .blurb(
                        "Identifier of the processing stage being recorded (required), escaped \
                         into one directory name; changing it while playing is a call boundary",
                    )
                    .mutable_playing()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("tap", Tap::default())
                    .nick("Tap")
                    .blurb(
                        "Where the audio is taken: PRE (before the stage) or POST (after it); \
                         changing it while playing is a call boundary",
                    )
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt64::builder("segment-duration")
                    .nick("Segment duration")
                    .blurb(
                        "Duration of each WAV file in nanoseconds; files start at multiples \
                         of it on the timeline (100 ms to 1 h)",
                    )
                    .minimum(MIN_SEGMENT_DURATION.nseconds())
                    .maximum(MAX_SEGMENT_DURATION.nseconds())
                    .default_value(DEFAULT_SEGMENT_DURATION.nseconds())
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default(
                    "timestamp-mode",
                    TimestampMode::default(),
                )
                .nick("Timestamp mode")
                .blurb(
                    "Timeline of buckets and file names: wall-clock (UTC via the pipeline \
                     clock), running-time (deterministic, for offline files and tests) or \
                     reference-timestamp (UTC from each buffer's timestamp/x-unix reference \
                     timestamp meta, else as wall-clock)",
                )
                .mutable_ready()
                .build(),
                glib::ParamSpecUInt64::builder("alignment-threshold")
                    .nick("Alignment threshold")
                    .blurb(
                        "Nanoseconds a buffer's timestamp may stray from the sample count and \
                         still follow on (jitter); raise it for sources with coarse timestamps",
                    )
                    .maximum(MAX_DISCONT_WAIT.nseconds())
                    .default_value(DEFAULT_ALIGNMENT_THRESHOLD.nseconds())
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt64::builder("discont-wait")
                    .nick("Discont wait")
                    .blurb(
                        "Nanoseconds a discontinuity shorter than this must last before the \
                         recording resyncs to it (0: at once); keeps stray timestamps from \
                         tearing the audio",
                    )
                    .maximum(MAX_DISCONT_WAIT.nseconds())
                    .default_value(DEFAULT_DISCONT_WAIT.nseconds())
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt64::builder("flush-interval")
                    .nick("Flush interval")
                    .blurb(
                        "Nanoseconds after which received audio is written to the open .part \
                         file at the latest: a killed process loses at most this much; shorter \
                         means more write calls",
                    )
                    .minimum(MIN_FLUSH_INTERVAL.nseconds())
                    .maximum(MAX_FLUSH_INTERVAL.nseconds())
                    .default_value(DEFAULT_FLUSH_INTERVAL.nseconds())
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("fsync")
                    .nick("fsync")
                    .blurb(
                        "Sync each segment and its directory to stable storage before it is \
                         announced, so that it survives a power failure, not only a crash",
                    )
                    .default_value(DEFAULT_FSYNC)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("max-queue-time")
                    .nick("Maximum queue time")
                    .blurb(
                        "Nanoseconds of audio that may wait for the writer (a stalled or \
                         failing disk); beyond it overflow-policy applies",
                    )
                    .minimum(MIN_MAX_QUEUE_TIME.nseconds())
                    .maximum(MAX_MAX_QUEUE_TIME.nseconds())
                    .default_value(DEFAULT_MAX_QUEUE_TIME.nseconds())
                    .mutable_playing()
                    .build(),
                glib::ParamSpecEnum::builder_with_default(
                    "overflow-policy",
                    OverflowPolicy::default(),
                )
                .nick("Overflow policy")
                .blurb(
                    "What to do when max-queue-time is reached: auto (drop-newest when \
                     upstream is live, wait otherwise), drop-oldest, drop-newest (dropped \
                     audio becomes silence, counted and warned about) or wait (block)",
                )
                .mutable_playing()
                .build(),
                glib::ParamSpecUInt64::builder("write-retry-time")
                    .nick("Write retry time")
                    .blurb(
                        "Nanoseconds failing writes (full disk, I/O error, removed directory) \
                         are retried with backoff, per failure episode, before segments are \
                         given up; also bounds how long EOS and stopping wait for the disk",
                    )
                    .maximum(MAX_WRITE_RETRY_TIME.nseconds())
                    .default_value(DEFAULT_WRITE_RETRY_TIME.nseconds())
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("record")
                    .nick("Record")
                    .blurb(
                        "Whether to record; false stops writing without disturbing the stream \
                         (the open segment is closed as at a call boundary)",
                    )
                    .default_value(DEFAULT_RECORD)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("silence-threshold")
                    .nick("Silence threshold")
                    .blurb(
                        "A segment whose peak stays under this level (dBFS) is silent; after \
                         silence-segments of them in a row a warning is posted",
                    )
                    .minimum(-120.0)
                    .maximum(0.0)
                    .default_value(DEFAULT_SILENCE_THRESHOLD)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt::builder("silence-segments")
                    .nick("Silence segments")
                    .blurb(
                        "Silent segments in a row before the silence warning (0: never warn); \
                         a message follows when sound returns",
                    )
                    .default_value(DEFAULT_SILENCE_SEGMENTS)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecDouble::builder("voice-threshold")
                    .nick("Voice threshold")
                    .blurb(
                        "10 ms frames whose RMS level (dBFS) is above this count as voiced in \
                         the voiced-ratio of each segment",
                    )
                    .minimum(-120.0)
                    .maximum(0.0)
                    .default_value(DEFAULT_VOICE_THRESHOLD)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("recording-stats")
                    .nick("Recording statistics")
                    .blurb(
                        "Counters of the current (or last) recording: segments written, failed \
                         and recovered, samples received, written, silence-filled and dropped \
                         per reason, bytes written, writer queue depth and high-water mark, \
                         last error",
                    )
                    .read_only()
                    .build(),
            ];
            #[cfg(feature = "s3")]
            properties.extend_from_slice(super::upload::properties());
            properties
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let name = pspec.name();
        if !holds_utf8(value) {
            // Taken as a Rust string it would panic, and a panic here aborts the process.
            gst::element_imp_warning!(
                self,
                gst::LibraryError::Settings,
                (
                    "Property '{}' is not valid UTF-8: the change is ignored",
                    name
                )
            );
            return;
        }
        let running = lock(&self.state).is_some();
        if running && !pspec.flags().contains(gst::PARAM_FLAG_MUTABLE_PLAYING) {
            gst::warning!(
                CAT,
                imp = self,
                "Property '{name}' can only be changed in the NULL or READY state; ignored"
            );
            return;
        }
        let mut settings = lock(&self.settings);
        let previous = settings.clone();
        let time = || gst::ClockTime::from_nseconds(value.get().expect("type checked upstream"));
        match name {
            "base-dir" => {
                settings.base_dir = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_else(|| DEFAULT_BASE_DIR.to_owned());
            }
            "trace-id" => settings.trace_id = value.get().expect("type checked upstream"),
            "station-key" => settings.station_key = value.get().expect("type checked upstream"),
            "tap" => settings.tap = value.get().expect("type checked upstream"),
            "segment-duration" => settings.segment_duration = time(),
            "timestamp-mode" => {
                settings.timestamp_mode = value.get().expect("type checked upstream");
            }
            "alignment-threshold" => settings.alignment_threshold = time(),
            "discont-wait" => settings.discont_wait = time(),
            "flush-interval" => settings.flush_interval = time(),
            "fsync" => settings.fsync = value.get().expect("type checked upstream"),
            "max-queue-time" => settings.max_queue_time = time(),
            "overflow-policy" => {
                settings.overflow_policy = value.get().expect("type checked upstream");
            }
            "write-retry-time" => settings.write_retry_time = time(),
            "record" => settings.record = value.get().expect("type checked upstream"),
            "silence-threshold" => {
                settings.silence_threshold = value.get().expect("type checked upstream");
            }
            "silence-segments" => {
                settings.silence_segments = value.get().expect("type checked upstream");
            }
            "voice-threshold" => {
                settings.voice_threshold = value.get().expect("type checked upstream");
            }
            #[cfg(feature = "s3")]
            _ if settings.upload.set(name, value) => (),
            _ => unimplemented!(),
        }
        if !running {
            return;
        }
        let current = settings.clone();
        drop(settings);
        match name {
            "trace-id" | "station-key" | "tap" => {
                if let Err(reason) = self.change_identity(&current) {
                    *lock(&self.settings) = previous;
                    gst::element_imp_warning!(
                        self,
                        gst::LibraryError::Settings,
                        (
                            "{}; the change is ignored and recording goes on as before",
                            reason
                        )
                    );
                }
            }
            _ => {
                if let Some(state) = lock(&self.state).as_mut() {
                    state.alignment_threshold = current.alignment_threshold;
                    state.discont_wait = current.discont_wait;
                    state.overflow_policy = current.overflow_policy;
                    state.record = current.record;
                    state.max_queue_time = current.max_queue_time;
                    state.recording.set_queue_limit(state.queue_limit());
                    if let Some(timeline) = state.timeline.as_mut() {
                        timeline.set_threshold(current.alignment_threshold.nseconds());
                        timeline.set_discont_wait(current.discont_wait.nseconds());
                    }
                }
            }
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        if pspec.name() == "recording-stats" {
            return self.stats().to_value();
        }
        let settings = lock(&self.settings);
        match pspec.name() {
            "base-dir" => settings.base_dir.to_value(),
            "trace-id" => settings.trace_id.to_value(),
            "station-key" => settings.station_key.to_value(),
            "tap" => settings.tap.to_value(),
            "segment-duration" => settings.segment_duration.nseconds().to_value(),
            "timestamp-mode" => settings.timestamp_mode.to_value(),
            "alignment-threshold" => settings.alignment_threshold.nseconds().to_value(),
            "discont-wait" => settings.discont_wait.nseconds().to_value(),
            "flush-interval" => settings.flush_interval.nseconds().to_value(),
            "fsync" => settings.fsync.to_value(),
            "max-queue-time" => settings.max_queue_time.nseconds().to_value(),
            "overflow-policy" => settings.overflow_policy.to_value(),
            "write-retry-time" => settings.write_retry_time.nseconds().to_value(),
            "record" => settings.record.to_value(),
            "silence-threshold" => settings.silence_threshold.to_value(),
            "silence-segments" => settings.silence_segments.to_value(),
            "voice-threshold" => settings.voice_threshold.to_value(),
            #[cfg(feature = "s3")]
            name => settings
                .upload
                .get(name)
                .unwrap_or_else(|| unimplemented!("property {name}")),
            #[cfg(not(feature = "s3"))]
            _ => unimplemented!(),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        // A recorder has no reason to wait for the clock: it writes what it gets.
        self.obj().set_sync(false);
    }
}

impl GstObjectImpl for SegmentRecorder {}

impl ElementImpl for SegmentRecorder {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Segment Recorder",
                "Sink/Audio",
                "Records mono S16LE audio into wall-clock aligned, sample-exact WAV segments \
                 per call, stage and tap",
                "gst-plugin-segmentrecorder developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = gst_audio::AudioCapsBuilder::new_interleaved()
                .format(gst_audio::AudioFormat::S16le)
                .channels(1)
                .rate_range(1..=MAX_RATE)
                .build();
            vec![
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &caps,
                )
                .expect("valid pad template"),
            ]
        });
        PAD_TEMPLATES.as_ref()
    }
}

impl BaseSinkImpl for SegmentRecorder {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = lock(&self.settings).clone();
        let identity = settings
            .identity()
            .map_err(|reason| gst::error_msg!(gst::LibraryError::Settings, ("{}", reason)))?;
        // An empty path would silently mean the working directory, wherever that is.
        if settings.base_dir.is_empty() {
            return Err(gst::error_msg!(
                gst::ResourceError::Settings,
                ("Property 'base-dir' is empty: set it to the directory to record into \
                     ('.' for the working directory)")
            ));
        }
        let base_dir = Path::new(&settings.base_dir);
        writer::check_base_dir(base_dir).map_err(|e| {
            gst::error_msg!(
                gst::ResourceError::OpenWrite,
                (
                    "Cannot record into base-dir '{}': {}. Set 'base-dir' to a directory \
                     this process can create and write",
                    base_dir.display(),
                    e
                )
            )
        })?;

        #[cfg(feature = "s3")]
        self.start_uploads(&settings, base_dir)?;

        let weak = self.obj().downgrade();
        let config = Config {
            base_dir: base_dir.to_owned(),
            flush_interval: duration(settings.flush_interval),
            fsync: settings.fsync,
            retry_time: duration(settings.write_retry_time),
            voice_threshold_dbfs: settings.voice_threshold,
            log: super::log_hook::logger(&self.obj()),
        };
        let recording = Recording::new(config, 0, move |report| {
            if let Some(obj) = weak.upgrade() {
                obj.imp().report(report);
            }
        })
        .map_err(|e| {
            gst::error_msg!(
                gst::CoreError::Thread,
                ("Cannot start the writer threads: {}", e)
            )
        })?;
        let state = State {
            recording: Arc::new(recording),
            identity: Arc::new(identity),
            next_identity: None,
            segment_duration: settings.segment_duration,
            timestamp_mode: settings.timestamp_mode,
            alignment_threshold: settings.alignment_threshold,
            discont_wait: settings.discont_wait,
            max_queue_time: settings.max_queue_time,
            overflow_policy: settings.overflow_policy,
            record: settings.record,
            timeline: None,
            segment: gst::FormattedSegment::new(),
            wall_clock: None,
            anchor: None,
            pieces: Vec::new(),
            steps: Vec::new(),
            overlapping: (0, 0),
            clean: 0,
        };
        state.recording.set_queue_limit(state.queue_limit());
        gst::info!(
            CAT,
            imp = self,
            "Recording trace '{}', station '{}', tap {} into {}",
            state.identity.trace_id(),
            state.identity.station_key(),
            state.identity.tap(),
            base_dir.display()
        );
        // What a dead process left of this identity is made whole first, off this thread.
        state.recording.submit(
            &mut vec![Step::Recover(state.identity.clone())],
            &[],
            Overflow::Wait,
        );
        *lock(&self.silence) = SilenceWatch::default();
        self.live.store(LIVE_UNKNOWN, Ordering::Relaxed);
        self.dropping.store(0, Ordering::Relaxed);
        *lock(&self.state) = Some(state);
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        // Whatever was received is finalised before the state change completes, unless the
        // disk stopped answering.
        if let Some(recording) = self.end_stream() {
            self.wait_for_writer(&recording, false);
        }
        let stats = self.stats();
        *lock(&self.state) = None;
        *lock(&self.last_stats) = Some(stats);
        Ok(())
    }

    fn set_caps(&self, caps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info = gst_audio::AudioInfo::from_caps(caps)
            .map_err(|_| gst::loggable_error!(CAT, "Cannot parse caps {}", caps))?;
        gst::debug!(CAT, imp = self, "Caps {caps}: {} Hz", info.rate());
        let segment_duration = lock(&self.state)
            .as_ref()
            .map(|s| s.segment_duration)
            .ok_or_else(|| gst::loggable_error!(CAT, "Caps before start"))?;
        // A WAV header counts bytes in 32 bits: a larger file would claim a fraction of its size.
        let file_bytes = size::segment_file_bytes(info.rate(), segment_duration.nseconds());
        if file_bytes > size::MAX_WAV_FILE_BYTES {
            gst::element_imp_error!(
                self,
                gst::StreamError::Format,
                (
                    "Cannot record {} Hz in segments of {}: each file would be {} bytes, more \
                     than the {} a WAV header can describe. Shorten 'segment-duration' (at most \
                     {} s at this rate)",
                    info.rate(),
                    segment_duration,
                    file_bytes,
                    size::MAX_WAV_FILE_BYTES,
                    size::max_segment_seconds(info.rate())
                )
            );
            return Err(gst::loggable_error!(
                CAT,
                "{} Hz in segments of {} does not fit in a WAV file",
                info.rate(),
                segment_duration
            ));
        }
        let (recording, batch) = {
            let mut state = lock(&self.state);
            let state = state
                .as_mut()
                .ok_or_else(|| gst::loggable_error!(CAT, "Caps before start"))?;
            let grid = Grid::new(info.rate(), state.segment_duration.nseconds());
            match state.timeline.as_mut() {
                Some(timeline) => timeline.set_grid(grid, &mut state.pieces),
                None => {
                    let mut timeline = Timeline::new(grid, state.alignment_threshold.nseconds());
                    timeline.set_discont_wait(state.discont_wait.nseconds());
                    state.timeline = Some(timeline);
                }
            }
            state.recording.set_queue_limit(state.queue_limit());
            (state.recording.clone(), state.steps(self))
        };
        self.submit(&recording, batch, &[], Overflow::Wait);
        Ok(())
    }

    fn event(&self, event: gst::Event) -> bool {
        match event.view() {
            gst::EventView::Segment(e) => match e.segment().downcast_ref::<gst::ClockTime>() {
                Some(segment) => {
                    if let Some(state) = lock(&self.state).as_mut() {
                        state.segment = segment.clone();
                    }
                    self.reanchor();
                }
                None => {
                    gst::element_imp_error!(
                        self,
                        gst::StreamError::Format,
                        (
                            "Segment of format {:?}: only TIME is supported",
                            e.segment().format()
                        )
                    );
                    return false;
                }
            },
            // The stream goes on from wherever its next buffer says.
            gst::EventView::FlushStop(_) => self.reanchor(),
            gst::EventView::CustomDownstream(_) | gst::EventView::CustomDownstreamSticky(_) => {
                if let Some(s) = event.structure().filter(|s| s.name() == CALL_EVENT) {
                    self.call_boundary(s);
                }
            }
            gst::EventView::Gap(e) => {
                let (timestamp, duration) = e.get();
                if let Some(duration) = duration {
                    self.gap(timestamp, duration);
                }
            }
            gst::EventView::Eos(_) => {
                // EOS reaches the bus only once every file of this recorder is complete.
                if let Some(recording) = self.end_stream() {
                    self.wait_for_writer(&recording, true);
                }
                #[cfg(feature = "s3")]
                self.wait_for_uploads();
            }
            _ => (),
        }
        self.parent_event(event)
    }

    fn render(&self, buffer: &gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        let live = self.upstream_live();
        let map = buffer.map_readable().map_err(|_| {
            gst::element_imp_error!(self, gst::StreamError::Failed, ("Cannot map buffer"));
            gst::FlowError::Error
        })?;
        let mut overlapped = (0, 0u64);
        let mut guard = lock(&self.state);
        let state = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        if state.timeline.is_none() {
            drop(guard);
            gst::element_imp_error!(self, gst::CoreError::Negotiation, ("No caps set"));
            return Err(gst::FlowError::NotNegotiated);
        }
        if state.record {
            state.apply_call_boundary(self);
            let reference = (state.timestamp_mode == TimestampMode::ReferenceTimestamp)
                .then(|| reference_utc(buffer))
                .flatten();
            let time = self.timeline_time(state, buffer.pts(), reference);
            let discont = buffer.flags().contains(gst::BufferFlags::DISCONT);
            let mut dropped = 0;
            if let Some(timeline) = state.timeline.as_mut() {
                let before = timeline.totals().dropped;
                let placed = timeline.push(time, map.len() / 2, discont, &mut state.pieces);
                dropped = timeline.totals().dropped - before;
                self.log_placement(buffer, time, placed, &state.pieces);
            }
            overlapped = state.count_overlap(dropped, (map.len() / 2) as u64);
            state.make_steps(self);
        } else if state.timeline.as_ref().is_some_and(Timeline::is_anchored) {
            gst::debug!(CAT, imp = self, "Recording paused");
            state.steps = state.end_stream(self);
        }
        let overflow = state.overflow(live);
        if overflow == Overflow::Wait {
            // Waiting for the writer must not hold the state: a flush must be able to end it.
            let (recording, steps) = (state.recording.clone(), std::mem::take(&mut state.steps));
            drop(guard);
            self.warn_overlap(overlapped);
            self.submit(&recording, steps, &map, overflow);
        } else {
            // Queued without waiting: the steps' allocation stays for the next buffer.
            let submitted = if state.steps.is_empty() {
                // Nothing submitted, nothing learnt of the writer: an episode goes on.
                Submitted::default()
            } else {
                state.recording.submit(&mut state.steps, &map, overflow)
            };
            drop(guard);
            self.warn_overlap(overlapped);
            self.count_dropped(submitted, overflow);
        }
        Ok(gst::FlowSuccess::Ok)
    }

    fn unlock(&self) -> Result<(), gst::ErrorMessage> {
        if let Some(state) = lock(&self.state).as_ref() {
            state.recording.set_unblocked(true);
        }
        #[cfg(feature = "s3")]
        if let Some(uploads) = self.uploads() {
            uploads.set_unblocked(true);
        }
        Ok(())
    }

    fn unlock_stop(&self) -> Result<(), gst::ErrorMessage> {
        if let Some(state) = lock(&self.state).as_ref() {
            state.recording.set_unblocked(false);
        }
        #[cfg(feature = "s3")]
        if let Some(uploads) = self.uploads() {
            uploads.set_unblocked(false);
        }
        Ok(())
    }
}
