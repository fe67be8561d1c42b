//! The element's settings: defaults and limits, the `Settings` the properties set, and their
//! specs. A recording takes a snapshot of them at `start()`; the properties that may change
//! while playing update the snapshot too.

use std::sync::LazyLock;

use gst::glib;
use gst::prelude::*;

use super::{OverflowPolicy, Tap, TimestampMode};
use crate::layout::Identity;

pub(super) const DEFAULT_BASE_DIR: &str = "/var/monitoring/audio";
pub(super) const DEFAULT_SEGMENT_DURATION: gst::ClockTime = gst::ClockTime::from_seconds(5);
pub(super) const MIN_SEGMENT_DURATION: gst::ClockTime = gst::ClockTime::from_mseconds(100);
pub(super) const MAX_SEGMENT_DURATION: gst::ClockTime = gst::ClockTime::from_seconds(3_600);
pub(super) const DEFAULT_ALIGNMENT_THRESHOLD: gst::ClockTime = gst::ClockTime::from_mseconds(40);
pub(super) const DEFAULT_DISCONT_WAIT: gst::ClockTime = gst::ClockTime::SECOND;
pub(super) const MAX_DISCONT_WAIT: gst::ClockTime = gst::ClockTime::from_seconds(60);
pub(super) const DEFAULT_FLUSH_INTERVAL: gst::ClockTime = gst::ClockTime::from_mseconds(200);
pub(super) const MIN_FLUSH_INTERVAL: gst::ClockTime = gst::ClockTime::from_mseconds(10);
pub(super) const MAX_FLUSH_INTERVAL: gst::ClockTime = gst::ClockTime::from_seconds(10);
pub(super) const DEFAULT_FSYNC: bool = false;
pub(super) const DEFAULT_MAX_QUEUE_TIME: gst::ClockTime = gst::ClockTime::from_seconds(30);
pub(super) const MIN_MAX_QUEUE_TIME: gst::ClockTime = gst::ClockTime::from_mseconds(100);
pub(super) const MAX_MAX_QUEUE_TIME: gst::ClockTime = gst::ClockTime::from_seconds(600);
pub(super) const DEFAULT_WRITE_RETRY_TIME: gst::ClockTime = gst::ClockTime::from_seconds(10);
pub(super) const MAX_WRITE_RETRY_TIME: gst::ClockTime = gst::ClockTime::from_seconds(600);
pub(super) const DEFAULT_RECORD: bool = true;
pub(super) const DEFAULT_SILENCE_THRESHOLD: f64 = -60.0;
pub(super) const DEFAULT_SILENCE_SEGMENTS: u32 = 6;
pub(super) const DEFAULT_VOICE_THRESHOLD: f64 = -45.0;
pub(super) const DEFAULT_PAIR_ANALYSIS: bool = true;
pub(super) const DEFAULT_PAIR_MAX_DELAY: gst::ClockTime = gst::ClockTime::from_mseconds(500);
pub(super) const MAX_PAIR_MAX_DELAY: gst::ClockTime = gst::ClockTime::from_seconds(2);
pub(super) const DEFAULT_RETENTION_MAX_BYTES: u64 = 0;
pub(super) const DEFAULT_RETENTION_MAX_AGE: gst::ClockTime = gst::ClockTime::ZERO;
pub(super) const DEFAULT_RETENTION_MIN_FREE_BYTES: u64 = 0;
/// The highest sample rate accepted: that of the fastest audio interfaces and formats (DXD and
/// beyond run at 352.8 and 384 kHz). With segments of at most an hour it keeps every file within
/// what a WAV header can describe.
pub const MAX_RATE: i32 = 384_000;

#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub(super) base_dir: String,
    pub(super) trace_id: Option<String>,
    pub(super) station_key: Option<String>,
    pub(super) tap: Tap,
    pub(super) segment_duration: gst::ClockTime,
    pub(super) timestamp_mode: TimestampMode,
    pub(super) alignment_threshold: gst::ClockTime,
    pub(super) discont_wait: gst::ClockTime,
    pub(super) flush_interval: gst::ClockTime,
    pub(super) fsync: bool,
    pub(super) max_queue_time: gst::ClockTime,
    pub(super) overflow_policy: OverflowPolicy,
    pub(super) write_retry_time: gst::ClockTime,
    pub(super) record: bool,
    pub(super) silence_threshold: f64,
    pub(super) silence_segments: u32,
    pub(super) voice_threshold: f64,
    pub(super) pair_analysis: bool,
    pub(super) pair_max_delay: gst::ClockTime,
    pub(super) retention_max_bytes: u64,
    pub(super) retention_max_age: gst::ClockTime,
    pub(super) retention_min_free_bytes: u64,
    #[cfg(feature = "s3")]
    pub(super) upload: super::upload::UploadSettings,
}

impl Settings {
    /// The identity the ids and tap name, or which property is unusable and why.
    pub(super) fn identity(&self) -> Result<Identity, String> {
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
            self.tap,
        )
        .map_err(|(name, e)| format!("Property '{name}' cannot name a directory: {e}"))
    }

    /// The retention limits this recorder asks for; with uploads on, segments not yet
    /// confirmed uploaded are kept.
    pub(super) fn retention_limits(&self, uploads: bool) -> crate::retention::Limits {
        crate::retention::Limits {
            max_bytes: self.retention_max_bytes,
            max_age: std::time::Duration::from_nanos(self.retention_max_age.nseconds()),
            min_free: self.retention_min_free_bytes,
            keep_unuploaded: uploads,
        }
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
            pair_analysis: DEFAULT_PAIR_ANALYSIS,
            pair_max_delay: DEFAULT_PAIR_MAX_DELAY,
            retention_max_bytes: DEFAULT_RETENTION_MAX_BYTES,
            retention_max_age: DEFAULT_RETENTION_MAX_AGE,
            retention_min_free_bytes: DEFAULT_RETENTION_MIN_FREE_BYTES,
            #[cfg(feature = "s3")]
            upload: Default::default(),
        }
    }
}

impl Settings {
    /// Sets the property `name` (of this struct) to `value`, whose type GObject checked;
    /// `false` if `name` is not one of them.
    pub(super) fn set(&mut self, name: &str, value: &glib::Value) -> bool {
        let time = || gst::ClockTime::from_nseconds(value.get().expect("type checked upstream"));
        match name {
            "base-dir" => {
                self.base_dir = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_else(|| DEFAULT_BASE_DIR.to_owned());
            }
            "trace-id" => self.trace_id = value.get().expect("type checked upstream"),
            "station-key" => self.station_key = value.get().expect("type checked upstream"),
            "tap" => self.tap = value.get().expect("type checked upstream"),
            "segment-duration" => self.segment_duration = time(),
            "timestamp-mode" => self.timestamp_mode = value.get().expect("type checked upstream"),
            "alignment-threshold" => self.alignment_threshold = time(),
            "discont-wait" => self.discont_wait = time(),
            "flush-interval" => self.flush_interval = time(),
            "fsync" => self.fsync = value.get().expect("type checked upstream"),
            "max-queue-time" => self.max_queue_time = time(),
            "overflow-policy" => {
                self.overflow_policy = value.get().expect("type checked upstream");
            }
            "write-retry-time" => self.write_retry_time = time(),
            "record" => self.record = value.get().expect("type checked upstream"),
            "silence-threshold" => {
                self.silence_threshold = value.get().expect("type checked upstream");
            }
            "silence-segments" => {
                self.silence_segments = value.get().expect("type checked upstream");
            }
            "voice-threshold" => self.voice_threshold = value.get().expect("type checked upstream"),
            "pair-analysis" => self.pair_analysis = value.get().expect("type checked upstream"),
            "pair-max-delay" => self.pair_max_delay = time(),
            "retention-max-bytes" => {
                self.retention_max_bytes = value.get().expect("type checked upstream");
            }
            "retention-max-age" => self.retention_max_age = time(),
            "retention-min-free-bytes" => {
                self.retention_min_free_bytes = value.get().expect("type checked upstream");
            }
            #[cfg(feature = "s3")]
            _ => return self.upload.set(name, value),
            #[cfg(not(feature = "s3"))]
            _ => return false,
        }
        true
    }

    /// The value of the property `name`, if it is one of this struct.
    pub(super) fn get(&self, name: &str) -> Option<glib::Value> {
        Some(match name {
            "base-dir" => self.base_dir.to_value(),
            "trace-id" => self.trace_id.to_value(),
            "station-key" => self.station_key.to_value(),
            "tap" => self.tap.to_value(),
            "segment-duration" => self.segment_duration.nseconds().to_value(),
            "timestamp-mode" => self.timestamp_mode.to_value(),
            "alignment-threshold" => self.alignment_threshold.nseconds().to_value(),
            "discont-wait" => self.discont_wait.nseconds().to_value(),
            "flush-interval" => self.flush_interval.nseconds().to_value(),
            "fsync" => self.fsync.to_value(),
            "max-queue-time" => self.max_queue_time.nseconds().to_value(),
            "overflow-policy" => self.overflow_policy.to_value(),
            "write-retry-time" => self.write_retry_time.nseconds().to_value(),
            "record" => self.record.to_value(),
            "silence-threshold" => self.silence_threshold.to_value(),
            "silence-segments" => self.silence_segments.to_value(),
            "voice-threshold" => self.voice_threshold.to_value(),
            "pair-analysis" => self.pair_analysis.to_value(),
            "pair-max-delay" => self.pair_max_delay.nseconds().to_value(),
            "retention-max-bytes" => self.retention_max_bytes.to_value(),
            "retention-max-age" => self.retention_max_age.nseconds().to_value(),
            "retention-min-free-bytes" => self.retention_min_free_bytes.to_value(),
            #[cfg(feature = "s3")]
            _ => return self.upload.get(name),
            #[cfg(not(feature = "s3"))]
            _ => return None,
        })
    }
}

/// The element's properties. Each blurb is one sentence to act on; the README has the details.
pub(super) fn properties() -> &'static [glib::ParamSpec] {
    static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
        fn time<'a>(
            name: &'a str,
            nick: &'a str,
            blurb: &'a str,
            default: gst::ClockTime,
        ) -> glib::ParamSpecUInt64Builder<'a> {
            glib::ParamSpecUInt64::builder(name)
                .nick(nick)
                .blurb(blurb)
                .default_value(default.nseconds())
        }
        #[allow(unused_mut)]
        let mut properties = vec![
            glib::ParamSpecString::builder("base-dir")
                .nick("Base directory")
                .blurb("Directory to record into, created if missing; it must be writable")
                .default_value(Some(DEFAULT_BASE_DIR))
                .mutable_ready()
                .build(),
            glib::ParamSpecString::builder("trace-id")
                .nick("Trace ID")
                .blurb("The call being recorded (required); a change while playing starts a new call")
                .mutable_playing()
                .build(),
            glib::ParamSpecString::builder("station-key")
                .nick("Station key")
                .blurb("The processing stage recorded (required); a change while playing starts a new call")
                .mutable_playing()
                .build(),
            glib::ParamSpecEnum::builder_with_default("tap", Tap::default())
                .nick("Tap")
                .blurb("Where the audio is taken: PRE (before the stage) or POST (after it)")
                .mutable_playing()
                .build(),
            time(
                "segment-duration",
                "Segment duration",
                "Length of each WAV file in nanoseconds; files start at multiples of it",
                DEFAULT_SEGMENT_DURATION,
            )
            .minimum(MIN_SEGMENT_DURATION.nseconds())
            .maximum(MAX_SEGMENT_DURATION.nseconds())
            .mutable_ready()
            .build(),
            glib::ParamSpecEnum::builder_with_default("timestamp-mode", TimestampMode::default())
                .nick("Timestamp mode")
                .blurb("The time that buckets and file names follow")
                .mutable_ready()
                .build(),
            time(
                "alignment-threshold",
                "Alignment threshold",
                "Timestamp jitter in nanoseconds that still counts as continuous; raise it for coarse timestamps",
                DEFAULT_ALIGNMENT_THRESHOLD,
            )
            .maximum(MAX_DISCONT_WAIT.nseconds())
            .mutable_playing()
            .build(),
            time(
                "discont-wait",
                "Discont wait",
                "Nanoseconds a short discontinuity must last before the recording resyncs to it (0: at once)",
                DEFAULT_DISCONT_WAIT,
            )
            .maximum(MAX_DISCONT_WAIT.nseconds())
            .mutable_playing()
            .build(),
            time(
                "flush-interval",
                "Flush interval",
                "Nanoseconds audio may wait before it reaches the .part file: what a crash can lose",
                DEFAULT_FLUSH_INTERVAL,
            )
            .minimum(MIN_FLUSH_INTERVAL.nseconds())
            .maximum(MAX_FLUSH_INTERVAL.nseconds())
            .mutable_ready()
            .build(),
            glib::ParamSpecBoolean::builder("fsync")
                .nick("fsync")
                .blurb("Sync each segment to stable storage before announcing it, to survive a power failure")
                .default_value(DEFAULT_FSYNC)
                .mutable_ready()
                .build(),
            time(
                "max-queue-time",
                "Maximum queue time",
                "Nanoseconds of audio that may wait for a slow disk before overflow-policy applies",
                DEFAULT_MAX_QUEUE_TIME,
            )
            .minimum(MIN_MAX_QUEUE_TIME.nseconds())
            .maximum(MAX_MAX_QUEUE_TIME.nseconds())
            .mutable_playing()
            .build(),
            glib::ParamSpecEnum::builder_with_default("overflow-policy", OverflowPolicy::default())
                .nick("Overflow policy")
                .blurb("What to do with audio beyond max-queue-time")
                .mutable_playing()
                .build(),
            time(
                "write-retry-time",
                "Write retry time",
                "Nanoseconds failing writes are retried before a segment is given up",
                DEFAULT_WRITE_RETRY_TIME,
            )
            .maximum(MAX_WRITE_RETRY_TIME.nseconds())
            .mutable_ready()
            .build(),
            glib::ParamSpecBoolean::builder("record")
                .nick("Record")
                .blurb("Set to false to stop writing without disturbing the stream")
                .default_value(DEFAULT_RECORD)
                .mutable_playing()
                .build(),
            glib::ParamSpecDouble::builder("silence-threshold")
                .nick("Silence threshold")
                .blurb("Peak level in dBFS under which a segment counts as silent")
                .minimum(-120.0)
                .maximum(0.0)
                .default_value(DEFAULT_SILENCE_THRESHOLD)
                .mutable_playing()
                .build(),
            glib::ParamSpecUInt::builder("silence-segments")
                .nick("Silence segments")
                .blurb("Silent segments in a row before a warning is posted (0: never)")
                .default_value(DEFAULT_SILENCE_SEGMENTS)
                .mutable_playing()
                .build(),
            glib::ParamSpecDouble::builder("voice-threshold")
                .nick("Voice threshold")
                .blurb("RMS level in dBFS above which a 10 ms frame counts as voiced")
                .minimum(-120.0)
                .maximum(0.0)
                .default_value(DEFAULT_VOICE_THRESHOLD)
                .mutable_ready()
                .build(),
            glib::ParamSpecBoolean::builder("pair-analysis")
                .nick("Pair analysis")
                .blurb("Compare this tap's segments with the other tap's of the same stage")
                .default_value(DEFAULT_PAIR_ANALYSIS)
                .mutable_ready()
                .build(),
            time(
                "pair-max-delay",
                "Pair maximum delay",
                "Largest delay in nanoseconds a stage may add that pair analysis looks for",
                DEFAULT_PAIR_MAX_DELAY,
            )
            .maximum(MAX_PAIR_MAX_DELAY.nseconds())
            .mutable_ready()
            .build(),
            glib::ParamSpecUInt64::builder("retention-max-bytes")
                .nick("Retention maximum bytes")
                .blurb("Bytes the segments under base-dir may take before the oldest are removed (0: no limit)")
                .default_value(DEFAULT_RETENTION_MAX_BYTES)
                .mutable_ready()
                .build(),
            time(
                "retention-max-age",
                "Retention maximum age",
                "Nanoseconds after its bucket ended that a segment is removed (0: kept for ever)",
                DEFAULT_RETENTION_MAX_AGE,
            )
            .mutable_ready()
            .build(),
            glib::ParamSpecUInt64::builder("retention-min-free-bytes")
                .nick("Retention minimum free bytes")
                .blurb("Bytes to keep free on base-dir's file system by removing the oldest segments (0: no limit)")
                .default_value(DEFAULT_RETENTION_MIN_FREE_BYTES)
                .mutable_ready()
                .build(),
            glib::ParamSpecBoxed::builder::<gst::Structure>("recording-stats")
                .nick("Recording statistics")
                .blurb("Read it for what the current or last recording wrote, dropped and failed")
                .read_only()
                .build(),
        ];
        #[cfg(feature = "s3")]
        properties.extend_from_slice(super::upload::properties());
        properties
    });
    PROPERTIES.as_ref()
}

/// Whether `value`, if it holds a string, holds valid UTF-8 (C applications can set any bytes).
pub(super) fn holds_utf8(value: &glib::Value) -> bool {
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
