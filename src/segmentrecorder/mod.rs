//! The `segmentrecorder` element.

use gst::glib;
use gst::prelude::*;

mod call;
mod clock;
mod imp;
mod log_hook;
mod messages;
mod pairs;
mod retention;
mod settings;
mod stream;
#[cfg(feature = "s3")]
mod upload;

pub use crate::layout::Tap;
pub use call::{CALL_EVENT, call_event};
pub use messages::{SEGMENT_OPENED, SEGMENT_RECOVERED, SEGMENT_WRITTEN, SOUND_RETURNED};
pub use pairs::PAIR;
pub use retention::SEGMENTS_REMOVED;
pub use settings::MAX_RATE;
#[cfg(feature = "s3")]
pub use upload::{SEGMENT_UPLOADED, UPLOAD_DONE, UPLOAD_DONE_STRUCTURE};

/// The timeline that buckets and file names are measured on.
#[derive(Debug, Default, Eq, PartialEq, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstSegmentRecorderTimestampMode")]
pub enum TimestampMode {
    /// UTC: running time mapped through the pipeline clock; files named by UTC milliseconds.
    #[default]
    #[enum_value(
        name = "Wall clock: UTC through the pipeline clock, files named by UTC ms",
        nick = "wall-clock"
    )]
    WallClock = 0,
    /// Running time itself: deterministic, for offline files and tests.
    #[enum_value(
        name = "Running time: files named by running-time ms under 1970-01-01",
        nick = "running-time"
    )]
    RunningTime = 1,
    /// UTC from each buffer's `timestamp/x-unix` reference timestamp meta (RTP/NTP-aware
    /// sources), falling back to the wall clock for buffers without one.
    #[enum_value(
        name = "Reference timestamp: UTC from timestamp/x-unix metas, else wall clock",
        nick = "reference-timestamp"
    )]
    ReferenceTimestamp = 2,
}

/// What a recorder does when the writer's queue is full.
#[derive(Debug, Default, Eq, PartialEq, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstSegmentRecorderOverflowPolicy")]
pub enum OverflowPolicy {
    /// Drop the newest samples in live pipelines, wait in non-live ones.
    #[default]
    #[enum_value(
        name = "Auto: drop-newest in live pipelines, wait in non-live ones",
        nick = "auto"
    )]
    Auto = 0,
    /// Drop the oldest queued samples to make room.
    #[enum_value(
        name = "Drop oldest: the oldest queued samples become silence",
        nick = "drop-oldest"
    )]
    DropOldest = 1,
    /// Drop the incoming samples.
    #[enum_value(
        name = "Drop newest: the incoming samples become silence",
        nick = "drop-newest"
    )]
    DropNewest = 2,
    /// Block the streaming thread until the writer has made room.
    #[enum_value(
        name = "Wait: block the streaming thread until there is room",
        nick = "wait"
    )]
    Wait = 3,
}

glib::wrapper! {
    /// Sink that records mono S16LE audio into wall-clock aligned WAV segments.
    pub struct SegmentRecorder(ObjectSubclass<imp::SegmentRecorder>)
        @extends gst_base::BaseSink, gst::Element, gst::Object;
}

/// The debug category of the element, and of the writer and the uploader through the hook it
/// gives them.
pub(crate) fn debug_category() -> gst::DebugCategory {
    *imp::CAT
}

/// Registers the element with `plugin`.
pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    Tap::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    TimestampMode::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    OverflowPolicy::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(
        Some(plugin),
        "segmentrecorder",
        gst::Rank::NONE,
        SegmentRecorder::static_type(),
    )
}
