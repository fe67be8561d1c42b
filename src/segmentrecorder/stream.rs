//! One recording's stream: its buffers placed on the [`Timeline`] under the current identity,
//! and the pieces the timeline decides turned into the writer's steps.

use std::sync::Arc;

use gst::subclass::prelude::*;

use super::OverflowPolicy;
use super::TimestampMode;
use super::clock::{StreamClock, reference_utc};
use super::imp::{CAT, SegmentRecorder};
use super::settings::Settings;
use crate::layout::Identity;
use crate::pairing::PairCounters;
use crate::timeline::{self, Alignment, Grid, Piece, Placement, Timeline};
use crate::writer::{Overflow, Recording, SegmentSpec, Step};

/// Everything between `start()` and `stop()`.
pub(super) struct State {
    /// The settings the recording runs with: those of `start()`, and the changes made since
    /// to properties that may change while playing.
    pub(super) settings: Settings,
    /// Held here, not behind a further pointer: every buffer submits to it.
    pub(super) recording: Recording,
    pub(super) identity: Arc<Identity>,
    /// A call boundary asked for while running: applied before the next buffer.
    pub(super) next_identity: Option<Arc<Identity>>,
    /// Known once caps are set.
    pub(super) timeline: Option<Timeline>,
    pub(super) clock: StreamClock,
    pieces: Vec<Piece>,
    pub(super) steps: Vec<Step>,
    /// Samples dropped as overlaps in the current episode, which ends after a second of the
    /// stream without a drop, and their duration in nanoseconds.
    pub(super) overlapping: (u64, u64),
    /// Samples received since the last drop.
    clean: u64,
    /// What became of this recording's pairs.
    pub(super) pairs: Arc<PairCounters>,
}

impl State {
    /// A stream of `recording` filed under `identity`, until caps come.
    pub(super) fn new(settings: Settings, recording: Recording, identity: Identity) -> Self {
        let state = State {
            clock: StreamClock::new(settings.timestamp_mode),
            settings,
            recording,
            identity: Arc::new(identity),
            next_identity: None,
            timeline: None,
            pieces: Vec::new(),
            steps: Vec::new(),
            overlapping: (0, 0),
            clean: 0,
            pairs: Arc::default(),
        };
        state.recording.set_queue_limit(state.queue_limit());
        state
    }

    /// Takes the settings that may change while playing from `settings`.
    pub(super) fn update(&mut self, settings: &Settings) {
        self.settings = settings.clone();
        self.recording.set_queue_limit(self.queue_limit());
        if let Some(timeline) = self.timeline.as_mut() {
            timeline.set_threshold(settings.alignment_threshold.nseconds());
            timeline.set_discont_wait(settings.discont_wait.nseconds());
        }
    }

    /// Sets the sample rate from caps: a first timeline, or the same one on a new grid.
    pub(super) fn set_rate(&mut self, imp: &SegmentRecorder, rate: u32) -> Vec<Step> {
        let grid = Grid::new(rate, self.settings.segment_duration.nseconds());
        match self.timeline.as_mut() {
            Some(timeline) => timeline.set_grid(grid, &mut self.pieces),
            None => {
                let mut timeline =
                    Timeline::new(grid, self.settings.alignment_threshold.nseconds());
                timeline.set_discont_wait(self.settings.discont_wait.nseconds());
                self.timeline = Some(timeline);
            }
        }
        self.recording.set_queue_limit(self.queue_limit());
        self.steps(imp)
    }

    /// Places `buffer` (whose data is `samples` long) on the timeline and makes its steps, in
    /// `self.steps`; returns the episode of overlap drops it ends (see `count_overlap`).
    pub(super) fn place(
        &mut self,
        imp: &SegmentRecorder,
        buffer: &gst::BufferRef,
        samples: usize,
    ) -> (u64, u64) {
        self.apply_call_boundary(imp);
        let reference = (self.settings.timestamp_mode == TimestampMode::ReferenceTimestamp)
            .then(|| reference_utc(buffer))
            .flatten();
        let anchored = self.timeline.as_ref().is_some_and(Timeline::is_anchored);
        let time = self
            .clock
            .timeline_time(imp, buffer.pts(), reference, anchored);
        let discont = buffer.flags().contains(gst::BufferFlags::DISCONT);
        let mut dropped = 0;
        if let Some(timeline) = self.timeline.as_mut() {
            let before = timeline.totals().dropped;
            let placed = timeline.push(time, samples, discont, &mut self.pieces);
            dropped = timeline.totals().dropped - before;
            if placed.alignment != Alignment::Counted {
                log_placement(imp, buffer, time, placed, &self.pieces);
            } else {
                gst::log!(
                    CAT,
                    imp = imp,
                    "Buffer PTS {:?}, running time {:?}, {} samples: at grid sample {}, pieces \
                     {:?}",
                    buffer.pts(),
                    buffer.pts().and_then(|pts| self.clock.running_time(pts)),
                    samples,
                    placed.sample,
                    self.pieces
                );
            }
        }
        let overlapped = self.count_overlap(dropped, samples as u64);
        self.make_steps(imp);
        overlapped
    }

    /// A GAP event: the stream was there, silent, for `duration` from `timestamp`.
    pub(super) fn gap(
        &mut self,
        imp: &SegmentRecorder,
        timestamp: gst::ClockTime,
        duration: gst::ClockTime,
    ) -> Vec<Step> {
        self.apply_call_boundary(imp);
        let anchored = self.timeline.as_ref().is_some_and(Timeline::is_anchored);
        let time = self
            .clock
            .timeline_time(imp, Some(timestamp), None, anchored);
        gst::debug!(CAT, imp = imp, "Gap of {duration} at {timestamp}");
        if let Some(timeline) = self.timeline.as_mut() {
            timeline.gap(time, duration.nseconds(), &mut self.pieces);
        }
        self.steps(imp)
    }

    /// Turns the timeline's pieces into writer steps (whose data is the current buffer's),
    /// in `self.steps`, whose allocation is reused from buffer to buffer.
    fn make_steps(&mut self, imp: &SegmentRecorder) {
        let rate = self.rate();
        let mut steps = std::mem::take(&mut self.steps);
        steps.extend(self.pieces.iter().map(|piece| match *piece {
            Piece::Open(bucket) => {
                let (start_running_time_ns, start_utc_ns) = self.clock.start_times(bucket.start_ns);
                gst::debug!(
                    CAT,
                    imp = imp,
                    "Opening bucket {} ms of trace '{}' (running time {:?})",
                    bucket.start_ms(),
                    self.identity.trace_id(),
                    start_running_time_ns.map(gst::ClockTime::from_nseconds)
                );
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
    pub(super) fn steps(&mut self, imp: &SegmentRecorder) -> Vec<Step> {
        self.make_steps(imp);
        std::mem::take(&mut self.steps)
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
    pub(super) fn end_stream(&mut self, imp: &SegmentRecorder) -> Vec<Step> {
        if let Some(timeline) = self.timeline.as_mut() {
            timeline.finish(&mut self.pieces);
        }
        let steps = self.steps(imp);
        self.apply_call_boundary(imp);
        steps
    }

    /// How a full queue is handled now.
    pub(super) fn overflow(&self, live: bool) -> Overflow {
        match self.settings.overflow_policy {
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
            self.overlapping.0 += dropped;
            self.overlapping.1 += timeline::time_of(dropped, self.rate().max(1));
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
    pub(super) fn rate(&self) -> u32 {
        self.timeline.as_ref().map_or(0, |t| t.grid().rate())
    }

    /// The queue limit in bytes for the current rate (16 kHz until caps say).
    fn queue_limit(&self) -> usize {
        let rate = self.timeline.as_ref().map_or(16_000, |t| t.grid().rate());
        timeline::bytes_for(self.settings.max_queue_time.nseconds(), rate)
    }
}

/// Tells where a buffer placed by its timestamp went, at DEBUG: the first one, and every
/// resync with its hole and overlap.
fn log_placement(
    imp: &SegmentRecorder,
    buffer: &gst::BufferRef,
    time: Option<u64>,
    placed: Placement,
    pieces: &[Piece],
) {
    let samples = |p: &Piece| match *p {
        Piece::Silence(n) | Piece::Dropped(n) => n,
        Piece::Data { len, .. } => len as u64,
        Piece::Open(_) | Piece::Close(_) => 0,
    };
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
        imp = imp,
        "{:?} at grid sample {} (timeline time {:?}, PTS {:?}, discont {}): {} samples of \
         silence before it, {} dropped as overlap; pieces {:?}",
        placed.alignment,
        placed.sample,
        time,
        buffer.pts(),
        buffer.flags().contains(gst::BufferFlags::DISCONT),
        hole,
        dropped,
        pieces
    );
}
