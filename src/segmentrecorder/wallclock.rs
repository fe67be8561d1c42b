//! Running time → UTC for wall-clock mode.
//!
//! UTC of running time `rt` is `rt + base_time + offset`, `offset` being the UTC time of the
//! clock's zero. The offset is measured once per (clock, base time) for the whole process and
//! shared, so every recorder of a pipeline (two branches of one `tee`, say) maps running time to
//! exactly the same UTC time, to the nanosecond, and their files pair up by name.

use crate::lock_order::{Level, OrderedMutex};
use std::time::{SystemTime, UNIX_EPOCH};

use gst::glib;
use gst::prelude::*;

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

    /// UTC nanoseconds since the epoch of `running_time`.
    pub fn utc_ns(&self, running_time: gst::ClockTime) -> u64 {
        let t = running_time.nseconds() as i128 + self.base_time.nseconds() as i128 + self.offset;
        t.clamp(0, u64::MAX as i128) as u64
    }
}
