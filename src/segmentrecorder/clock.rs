//! Running time ↔ UTC: where on the bucket timeline a buffer's timestamp lies.
//!
//! [`StreamClock`] turns a buffer's PTS into its time on the timeline: running time in
//! running-time mode, UTC otherwise (from the buffer's `timestamp/x-unix` reference timestamp in
//! reference-timestamp mode, when it has one). It remembers the latest buffer's running time so
//! that each segment's message can tell both its running time and its UTC start.
//!
//! UTC of running time `rt` is `rt + base_time + offset`, `offset` being the UTC time of the
//! clock's zero. The offset is measured once per (clock, base time) for the whole process and
//! shared, so every recorder of a pipeline (two branches of one `tee`, say) maps running time to
//! exactly the same UTC time, to the nanosecond, and their files pair up by name.

use std::time::{SystemTime, UNIX_EPOCH};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::TimestampMode;
use super::imp::{CAT, SegmentRecorder};
use crate::lock_order::{Level, OrderedMutex};
use crate::timeline;

/// Caps of the `GstReferenceTimestampMeta` that carries UTC (RTP/NTP-aware sources).
const UNIX_TIMESTAMP_CAPS: &str = "timestamp/x-unix";

/// Mappings kept; each pipeline start (a new base time) adds one, the oldest go first.
const MAX_MAPPINGS: usize = 256;

struct Mapping {
    clock: glib::WeakRef<gst::Clock>,
    base_time: gst::ClockTime,
    offset: i128,
}

static MAPPINGS: OrderedMutex<Vec<Mapping>> = OrderedMutex::new(Level::WallClock, Vec::new());

fn utc_now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// A recorder's running time → UTC mapping.
#[derive(Debug, Clone)]
pub struct WallClock {
    clock: Option<gst::Clock>,
    base_time: gst::ClockTime,
    offset: i128,
}

impl WallClock {
    /// The process-wide mapping of `clock` at `base_time`, measured on first use.
    pub fn shared(clock: &gst::Clock, base_time: gst::ClockTime) -> Self {
        let mut mappings = MAPPINGS.lock();
        mappings.retain(|m| m.clock.upgrade().is_some());
        let known = mappings
            .iter()
            .find(|m| m.base_time == base_time && m.clock.upgrade().as_ref() == Some(clock));
        let offset = match known {
            Some(m) => m.offset,
            None => {
                // Read the clock between two UTC readings and take the middle.
                let before = utc_now_ns();
                let clock_now = clock.time().nseconds() as i128;
                let after = utc_now_ns();
                let offset = before + (after - before) / 2 - clock_now;
                if mappings.len() >= MAX_MAPPINGS {
                    mappings.remove(0);
                }
                mappings.push(Mapping {
                    clock: clock.downgrade(),
                    base_time,
                    offset,
                });
                offset
            }
        };
        WallClock {
            clock: Some(clock.clone()),
            base_time,
            offset,
        }
    }

    /// Without a clock (an element used outside a pipeline), running time `running_time` is
    /// taken to be now.
    pub fn anchored_now(running_time: gst::ClockTime) -> Self {
        WallClock {
            clock: None,
            base_time: gst::ClockTime::ZERO,
            offset: utc_now_ns() - running_time.nseconds() as i128,
        }
    }

    /// Whether this mapping is the one for `clock` at `base_time`.
    pub fn is_for(&self, clock: Option<&gst::Clock>, base_time: gst::ClockTime) -> bool {
        self.clock.as_ref() == clock && (clock.is_none() || self.base_time == base_time)
    }

    /// UTC nanoseconds since the epoch of the clock's zero.
    pub fn offset_ns(&self) -> i128 {
        self.offset
    }

    /// UTC nanoseconds since the epoch of `running_time`.
    pub fn utc_ns(&self, running_time: gst::ClockTime) -> u64 {
        let t = running_time.nseconds() as i128 + self.base_time.nseconds() as i128 + self.offset;
        t.clamp(0, u64::MAX as i128) as u64
    }
}

/// A stream's timestamps on the bucket timeline.
#[derive(Debug)]
pub struct StreamClock {
    mode: TimestampMode,
    segment: gst::FormattedSegment<gst::ClockTime>,
    wall_clock: Option<WallClock>,
    /// Timeline time and running time of the latest buffer placed by its timestamp.
    anchor: Option<(u64, gst::ClockTime)>,
}

impl StreamClock {
    /// A clock for `mode`, with a default segment until the stream sends one.
    pub fn new(mode: TimestampMode) -> Self {
        StreamClock {
            mode,
            segment: gst::FormattedSegment::new(),
            wall_clock: None,
            anchor: None,
        }
    }

    /// The stream's new segment, which running times are taken from.
    pub fn set_segment(&mut self, segment: gst::FormattedSegment<gst::ClockTime>) {
        self.segment = segment;
    }

    /// The running time of `pts` in the current segment.
    pub fn running_time(&self, pts: gst::ClockTime) -> Option<gst::ClockTime> {
        self.segment.to_running_time(pts)
    }

    /// The time of a buffer's first sample on the bucket timeline; `None` to continue the
    /// stream where it is (`anchored`: the timeline has a position to continue from).
    pub fn timeline_time(
        &mut self,
        imp: &SegmentRecorder,
        buffer_pts: Option<gst::ClockTime>,
        reference: Option<gst::ClockTime>,
        anchored: bool,
    ) -> Option<u64> {
        let running_time = buffer_pts.and_then(|pts| self.segment.to_running_time(pts));
        if let Some(utc) = reference.filter(|_| self.mode == TimestampMode::ReferenceTimestamp) {
            if let Some(rt) = running_time {
                self.anchor = Some((utc.nseconds(), rt));
            }
            return Some(utc.nseconds());
        }
        let running_time = match running_time {
            Some(rt) => rt,
            None if anchored => return None,
            None => now_running_time(imp).unwrap_or(gst::ClockTime::ZERO),
        };
        let clock = imp.obj().clock();
        let time = match self.mode {
            TimestampMode::RunningTime => {
                if clock.is_some() {
                    // Only to tell the UTC time of each segment in its message.
                    self.utc_ns(imp, clock, running_time);
                }
                running_time.nseconds()
            }
            TimestampMode::WallClock | TimestampMode::ReferenceTimestamp => {
                self.utc_ns(imp, clock, running_time)
            }
        };
        self.anchor = Some((time, running_time));
        Some(time)
    }

    /// Running time and UTC of the timeline time `time_ns`, as far as they are known.
    pub fn start_times(&self, time_ns: u64) -> (Option<u64>, Option<u64>) {
        let running_time = self
            .anchor
            .and_then(|(anchor, rt)| timeline::shift(rt.nseconds(), anchor, time_ns));
        let utc = match self.mode {
            TimestampMode::RunningTime => running_time
                .zip(self.wall_clock.as_ref())
                .map(|(rt, w)| w.utc_ns(gst::ClockTime::from_nseconds(rt))),
            TimestampMode::WallClock | TimestampMode::ReferenceTimestamp => Some(time_ns),
        };
        (running_time, utc)
    }

    /// Keeps the running time → UTC mapping that of `clock` (the element's) and its base time;
    /// returns UTC of `running_time`.
    fn utc_ns(
        &mut self,
        imp: &SegmentRecorder,
        clock: Option<gst::Clock>,
        running_time: gst::ClockTime,
    ) -> u64 {
        let base_time = imp.obj().base_time().unwrap_or(gst::ClockTime::ZERO);
        let wall_clock = match self.wall_clock.take() {
            Some(w) if w.is_for(clock.as_ref(), base_time) => w,
            _ => {
                let w = match &clock {
                    Some(clock) => WallClock::shared(clock, base_time),
                    None => {
                        gst::warning!(
                            CAT,
                            imp = imp,
                            "No clock: running time {running_time} is taken as now"
                        );
                        WallClock::anchored_now(running_time)
                    }
                };
                gst::debug!(
                    CAT,
                    imp = imp,
                    "Running time maps to UTC as running time + base time {base_time} + \
                     {} ns (clock {:?})",
                    w.offset_ns(),
                    clock.as_ref().map(|c| c.name())
                );
                w
            }
        };
        let utc = wall_clock.utc_ns(running_time);
        self.wall_clock = Some(wall_clock);
        utc
    }
}

/// The current running time, for a first buffer that carries no timestamp.
fn now_running_time(imp: &SegmentRecorder) -> Option<gst::ClockTime> {
    let obj = imp.obj();
    let clock = obj.clock()?;
    clock.time().checked_sub(obj.base_time()?)
}

/// The UTC time of a buffer's first sample from its `timestamp/x-unix` reference timestamp.
pub fn reference_utc(buffer: &gst::BufferRef) -> Option<gst::ClockTime> {
    buffer
        .iter_meta::<gst::ReferenceTimestampMeta>()
        .find(|meta| {
            meta.reference()
                .structure(0)
                .is_some_and(|s| s.name() == UNIX_TIMESTAMP_CAPS)
        })
        .map(|meta| meta.timestamp())
}
