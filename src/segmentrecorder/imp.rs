//! The element: start, stop, caps, events, render and unlock. It places each buffer on its
//! stream's timeline ([`super::stream`]) and hands the resulting steps to the [`writer`]; it
//! never opens a file. Settings live in [`super::settings`], running time ↔ UTC in
//! [`super::clock`], bus messages and statistics in [`super::messages`], call boundaries in
//! [`super::call`], retention in [`super::retention`] and uploads in `super::upload`.

use std::panic::{self, AssertUnwindSafe};
/**
 * SECTION:element-segmentrecorder
 * @title: segmentrecorder
 *
 * Records mono S16LE audio of any rate into WAV files of `segment-duration` (5 s) aligned to
 * the wall clock and cut on the exact sample, laid out as
 * `<base-dir>/YYYY-MM-DD/<trace-id>/<station-key>/<PRE|POST>/segment_<bucket_ts_ms>.wav`.
 * Every byte of file IO happens on writer threads, never on the streaming thread. A segment is
 * written as a `.part` file at least every `flush-interval` and renamed once complete; a killed
 * process loses at most one flush interval, and the next start recovers its `.part` files.
 *
 * Recording PRE and POST of a processing stage is two `tee` branches whose files pair up by
 * name. A `segmentrecorder-call` sticky custom downstream event sent upstream of the `tee`
 * switches every recorder to another call at the same sample.
 *
 * The element posts `segmentrecorder-segment-opened` and `segmentrecorder-segment-written`
 * element messages for each file, and keeps counters in `recording-stats`.
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 -e audiotestsrc is-live=true ! audio/x-raw,format=S16LE,channels=1,rate=16000 ! \
 *     tee name=t ! queue ! segmentrecorder base-dir=rec trace-id=call-1 station-key=stt tap=PRE \
 *     t. ! queue ! volume volume=0.5 ! segmentrecorder base-dir=rec trace-id=call-1 station-key=stt tap=POST
 * ]|
 * records the test tone before and after a `volume` stage into `rec/`, until Ctrl-C.
 */
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

use gst::glib;
use gst::glib::translate::IntoGlib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;

use super::call::CALL_EVENT;
use super::messages::SilenceWatch;
use super::settings::{self, MAX_RATE, Settings, holds_utf8};
use super::stream::State;
use crate::lock_order::{Guard, Level, OrderedMutex};
use crate::timeline::{self, Timeline};
use crate::writer::{self, Config, Overflow, Recording, Step, Submitted, WaitEnd, size};

/// How much longer than `write-retry-time` EOS and stopping wait for a writer making no
/// progress.
const WRITER_GRACE: Duration = Duration::from_secs(2);

/// Whether upstream is live, once asked (per stream).
const LIVE_UNKNOWN: u8 = 0;
const LIVE: u8 = 1;
const NOT_LIVE: u8 = 2;

// Mutex order: `settings`, `state`, `silence`, `last_stats`, `uploads`, `retention`, each before
// every lock of the writer and the uploader (crate::lock_order::Level). In practice the
// element's locks are taken one at a time; `state` is held while the recording's queue is
// locked and while the wall-clock mapping is looked up, `uploads` while the uploader's counters
// are read. Debug builds check the order.
pub struct SegmentRecorder {
    pub(super) settings: OrderedMutex<Settings>,
    pub(super) state: OrderedMutex<Option<State>>,
    /// `LIVE_UNKNOWN`, `LIVE` or `NOT_LIVE`; outside `state` to keep the streaming thread's
    /// locking to one lock per buffer.
    live: AtomicU8,
    /// Samples dropped on overflow since the writer last kept up.
    pub(super) dropping: AtomicU64,
    pub(super) silence: OrderedMutex<SilenceWatch>,
    /// The statistics of the last recording, kept after it stopped.
    pub(super) last_stats: OrderedMutex<Option<gst::Structure>>,
    /// Where finished segments are uploaded, and the base directory their keys are taken
    /// from; outside `state`, for the writer threads.
    #[cfg(feature = "s3")]
    pub(super) uploads: OrderedMutex<Option<(Arc<crate::uploader::Uploads>, std::path::PathBuf)>>,
    /// This recorder's place in the retention of its base directory, while it records (with a
    /// limit of its own or not); outside `state`, for the writer threads.
    pub(super) retention: OrderedMutex<Option<Arc<crate::retention::Member>>>,
    /// The element's panic flag as the bindings keep it, looked up once (see
    /// [`render_trampoline`]).
    panic_flag: OnceLock<PanicFlag>,
}

/// Where the bindings keep an element's panic flag: in the instance's private data, which
/// lives as long as the element.
struct PanicFlag(*const AtomicBool);

// SAFETY: it points to an `AtomicBool` that lives as long as the element holding it.
unsafe impl Send for PanicFlag {}
unsafe impl Sync for PanicFlag {}

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
            retention: OrderedMutex::new(Level::ElementRetention, None),
            panic_flag: OnceLock::new(),
        }
    }
}

/// The element's debug category; registered with the plugin.
pub(super) static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "segmentrecorder",
        gst::DebugColorFlags::empty(),
        Some("Segment recorder"),
    )
});

pub(super) fn lock<T>(m: &OrderedMutex<T>) -> Guard<'_, T> {
    m.lock()
}

fn duration(t: gst::ClockTime) -> Duration {
    Duration::from_nanos(t.nseconds())
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
    fn end_stream(&self) -> Option<Recording> {
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
            if state.timeline.is_none() || !state.settings.record {
                return;
            }
            (
                state.recording.clone(),
                state.gap(self, timestamp, duration),
            )
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
}

#[glib::object_subclass]
impl ObjectSubclass for SegmentRecorder {
    const NAME: &'static str = "GstSegmentRecorder";
    type Type = super::SegmentRecorder;
    type ParentType = gst_base::BaseSink;

    /// The bindings route every virtual method of the base class through a trampoline that
    /// looks up the element's panic flag in a hash map and chains up to the parent's. Of those
    /// called for every buffer, `prepare`, `prepare_list` and `render_list` have nothing to do
    /// here: the base class's own (none, for the first two; rendering each buffer of a list,
    /// for the third) are put back. `render` goes through [`render_trampoline`], which does
    /// what the bindings' does with the flag looked up once.
    fn class_init(klass: &mut Self::Class) {
        // SAFETY: the class struct of a subclass of GstBaseSink starts with GstBaseSinkClass,
        // and the parent class, which the type system keeps for as long as the type lives,
        // is a GstBaseSinkClass.
        unsafe {
            let parent = &*(Self::type_data().as_ref().parent_class()
                as *const gst_base::ffi::GstBaseSinkClass);
            let klass = &mut *(klass as *mut Self::Class as *mut gst_base::ffi::GstBaseSinkClass);
            klass.prepare = parent.prepare;
            klass.prepare_list = parent.prepare_list;
            klass.render_list = parent.render_list;
            klass.render = Some(render_trampoline);
        }
    }
}

/// `render` as GstBaseSink calls it, for every buffer: what the bindings' trampoline does (an
/// element that panicked before renders nothing and posts an error; a panic here is caught,
/// flagged and posted), without looking the flag up in the instance's hash map each time.
unsafe extern "C" fn render_trampoline(
    ptr: *mut gst_base::ffi::GstBaseSink,
    buffer: *mut gst::ffi::GstBuffer,
) -> gst::ffi::GstFlowReturn {
    // SAFETY: GstBaseSink calls this on an instance of this type, with a buffer it holds for
    // the duration of the call.
    let (imp, buffer) = unsafe {
        let instance = &*(ptr as *mut <SegmentRecorder as ObjectSubclass>::Instance);
        (
            instance.imp(),
            glib::translate::from_glib_borrow::<_, gst::Buffer>(buffer),
        )
    };
    let flag = match imp.panic_flag.get() {
        // SAFETY: see `PanicFlag`.
        Some(flag) => unsafe { &*flag.0 },
        None => imp.panicked(),
    };
    let element = imp.obj();
    let element = element.upcast_ref::<gst::Element>();
    if flag.load(Ordering::Relaxed) {
        gst::subclass::post_panic_error_message(element, element.upcast_ref(), None);
        return gst::FlowReturn::Error.into_glib();
    }
    match panic::catch_unwind(AssertUnwindSafe(|| imp.render(&buffer))) {
        Ok(flow) => gst::FlowReturn::from(flow).into_glib(),
        Err(cause) => {
            flag.store(true, Ordering::Relaxed);
            gst::subclass::post_panic_error_message(element, element.upcast_ref(), Some(cause));
            gst::FlowReturn::Error.into_glib()
        }
    }
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
        settings::properties()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let name = pspec.name();
        if !holds_utf8(value) {
            // Taken as a Rust string it would panic, and a panic here aborts the process.
            gst::element_imp_warning!(
                self,
                gst::ResourceError::Settings,
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
        if !settings.set(name, value) {
            unimplemented!("property {name}");
        }
        gst::debug!(CAT, imp = self, "Property '{name}' set to {value:?}");
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
                        gst::ResourceError::Settings,
                        (
                            "{}; the change is ignored and recording goes on as before",
                            reason
                        )
                    );
                }
            }
            _ => {
                if let Some(state) = lock(&self.state).as_mut() {
                    state.update(&current);
                }
            }
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let name = pspec.name();
        if name == "recording-stats" {
            return self.stats().to_value();
        }
        lock(&self.settings)
            .get(name)
            .unwrap_or_else(|| unimplemented!("property {name}"))
    }

    fn constructed(&self) {
        self.parent_constructed();
        let _ = self.panic_flag.set(PanicFlag(self.panicked()));
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
                "Sink/File/Audio",
                "Records mono S16LE audio into wall-clock aligned, sample-exact WAV segments \
                 per call, stage and tap",
                env!("CARGO_PKG_AUTHORS"),
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
            .map_err(|reason| gst::error_msg!(gst::ResourceError::Settings, ("{}", reason)))?;
        // An empty path would silently mean the working directory, wherever that is.
        if settings.base_dir.is_empty() {
            return Err(gst::error_msg!(
                gst::ResourceError::Settings,
                ("Property 'base-dir' is empty: set it to the directory to record into \
                     ('.' for the working directory)")
            ));
        }
        // Every setting is checked before base-dir is created: a start refused for a setting
        // leaves nothing behind.
        #[cfg(feature = "s3")]
        settings
            .upload
            .config(crate::log::Logger::none())
            .map_err(|reason| gst::error_msg!(gst::ResourceError::Settings, ("{}", reason)))?;
        let base_dir = PathBuf::from(&settings.base_dir);
        let base_dir = base_dir.as_path();
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
        if settings.pair_analysis {
            crate::pairing::ensure_threads().map_err(|e| {
                gst::error_msg!(
                    gst::CoreError::Thread,
                    ("Cannot start the pair analysis threads: {}", e)
                )
            })?;
        }

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
        #[cfg(feature = "s3")]
        let uploads = self.uploads().is_some();
        #[cfg(not(feature = "s3"))]
        let uploads = false;
        self.join_retention(settings.retention_limits(uploads), base_dir)?;
        let state = State::new(settings, recording, identity);
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
        gst::debug!(CAT, imp = self, "Stopping");
        // Whatever was received is finalised before the state change completes, unless the
        // disk stopped answering.
        if let Some(recording) = self.end_stream() {
            self.wait_for_writer(&recording, false);
        }
        let stats = self.stats();
        *lock(&self.state) = None;
        // Its limits no longer apply; its counters stay in the last statistics.
        let retention = lock(&self.retention).take();
        drop(retention);
        gst::debug!(CAT, imp = self, "Stopped: {stats}");
        *lock(&self.last_stats) = Some(stats);
        Ok(())
    }

    fn set_caps(&self, caps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let info = gst_audio::AudioInfo::from_caps(caps)
            .map_err(|_| gst::loggable_error!(CAT, "Cannot parse caps {}", caps))?;
        gst::debug!(CAT, imp = self, "Caps {caps}: {} Hz", info.rate());
        let segment_duration = lock(&self.state)
            .as_ref()
            .map(|s| s.settings.segment_duration)
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
            (state.recording.clone(), state.set_rate(self, info.rate()))
        };
        self.submit(&recording, batch, &[], Overflow::Wait);
        Ok(())
    }

    fn event(&self, event: gst::Event) -> bool {
        match event.view() {
            gst::EventView::Segment(e) => match e.segment().downcast_ref::<gst::ClockTime>() {
                Some(segment) => {
                    gst::debug!(CAT, imp = self, "Segment {segment:?}");
                    if let Some(state) = lock(&self.state).as_mut() {
                        state.clock.set_segment(segment.clone());
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
                gst::debug!(CAT, imp = self, "EOS: finishing the open segment");
                // EOS reaches the bus only once every file of this recorder is complete.
                if let Some(recording) = self.end_stream() {
                    self.wait_for_writer(&recording, true);
                }
                // So are the comparisons of the pairs this recorder completed.
                self.wait_for_pairs();
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
        if state.settings.record {
            overlapped = state.place(self, buffer, timeline::samples_in(map.len()));
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
        gst::debug!(CAT, imp = self, "Unlocking");
        if let Some(state) = lock(&self.state).as_ref() {
            state.recording.set_unblocked(true);
            state.pairs.unblocked.store(true, Ordering::Release);
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
            state.pairs.unblocked.store(false, Ordering::Release);
        }
        #[cfg(feature = "s3")]
        if let Some(uploads) = self.uploads() {
            uploads.set_unblocked(false);
        }
        Ok(())
    }
}
