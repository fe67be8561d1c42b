//! What the writer and the uploader tell, told to the application: element messages, warnings,
//! the silence watch and the `recording-stats` counters.
//!
//! Every message is an element message whose structure is named after the element, as
//! splitmuxsink's are. Their names are exported from the crate root.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use gst::prelude::*;
use gst::subclass::prelude::*;

use super::imp::{CAT, SegmentRecorder, lock};
use crate::pairing::PairCounters;
use crate::timeline::{self, Totals};
use crate::writer::{
    Overflow, Report, SegmentOpened, SegmentSpec, SegmentWritten, Submitted, WriterStats,
};

/// Name of the message posted when a segment's file is opened.
pub const SEGMENT_OPENED: &str = "segmentrecorder-segment-opened";
/// Name of the message posted for each segment written.
pub const SEGMENT_WRITTEN: &str = "segmentrecorder-segment-written";
/// Name of the message posted for each `.part` of a dead process recovered.
pub const SEGMENT_RECOVERED: &str = "segmentrecorder-segment-recovered";
/// Name of the message posted when sound comes back after a silence warning.
pub const SOUND_RETURNED: &str = "segmentrecorder-sound-returned";

/// Consecutive silent segments, for the silence warning.
#[derive(Debug, Default)]
pub(super) struct SilenceWatch {
    silent: u32,
}

impl SegmentRecorder {
    /// Posts `s` as an element message of this recorder.
    pub(super) fn post(&self, s: gst::Structure) {
        let obj = self.obj();
        let _ = obj.post_message(gst::message::Element::builder(s).src(&*obj).build());
    }

    /// Called on a writer thread for each segment opened, written or given up.
    pub(super) fn report(&self, report: Report) {
        match report {
            Report::Opened(o) => {
                self.retention_writing(Some(&o.location));
                self.post(opened_structure(&o));
            }
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
                // Before the upload, which may remove the file.
                self.retention_published(&w.location);
                // Before the upload, which may remove the file.
                self.offer_pair(&w);
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
                    write_error(&error),
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
                self.retention_writing(None);
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
                    write_error(&error),
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
                self.retention_published(&r.location);
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
                    write_error(&error),
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

    /// Warns once per episode of samples dropped on overflow. An episode ends when the writer
    /// keeps up again, not at the first buffer that drops nothing: drop-oldest makes room a
    /// whole queued piece at a time, so the buffers that follow fit while the writer is as far
    /// behind as before.
    pub(super) fn count_dropped(&self, submitted: Submitted, overflow: Overflow) {
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

    /// Warns of an episode of `samples` lasting `ns` dropped as overlaps, once it is over (a
    /// second of the stream without a drop, or the end of the stream).
    pub(super) fn warn_overlap(&self, (samples, ns): (u64, u64)) {
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

    /// The `recording-stats` of the running recording, or of the last one.
    pub(super) fn stats(&self) -> gst::Structure {
        let current = lock(&self.state).as_ref().map(|s| {
            let totals = s
                .timeline
                .as_ref()
                .map(crate::timeline::Timeline::totals)
                .unwrap_or_default();
            (totals, s.recording.clone(), s.pairs.clone())
        });
        let (totals, writer, pairs) = match current {
            Some((totals, recording, pairs)) => (totals, recording.stats(), pairs),
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
                (Totals::default(), WriterStats::default(), Arc::default())
            }
        };
        let mut s = stats_structure(totals, &writer, &pairs);
        super::retention::add_stats(&mut s, lock(&self.retention).as_ref());
        #[cfg(feature = "s3")]
        if let Some(uploads) = self.uploads() {
            super::upload::add_stats(&mut s, &uploads.stats());
        }
        s
    }
}

/// The `segmentrecorder-segment-opened` message of a segment.
fn opened_structure(o: &SegmentOpened) -> gst::Structure {
    segment_structure(SEGMENT_OPENED, &o.spec, &o.location, o.file_index).build()
}

/// The `segmentrecorder-segment-written` message of a segment.
fn written_structure(w: &SegmentWritten) -> gst::Structure {
    segment_structure(SEGMENT_WRITTEN, &w.spec, &w.location, w.file_index)
        .field("samples", w.samples)
        .field("data-samples", w.data_samples)
        .field("silence-samples", w.silence_samples)
        .field("dropped-samples", w.dropped_samples)
        .field(
            "duration",
            gst::ClockTime::from_nseconds(timeline::time_of(w.samples, w.spec.rate.max(1))),
        )
        .field("rms-dbfs", w.levels.rms_dbfs)
        .field("peak-dbfs", w.levels.peak_dbfs)
        .field("voiced-ratio", w.levels.voiced_ratio)
        .build()
}

/// The fields every message of a segment has: where, whose, which bucket, and when it starts.
/// `running-time` is `GST_CLOCK_TIME_NONE` when unknown (the bucket starts before running time
/// 0); `utc` and `utc-ns` are there when UTC is known (not in running-time mode without a
/// clock).
fn segment_structure(
    name: &str,
    spec: &SegmentSpec,
    location: &Path,
    file_index: u32,
) -> gst::structure::Builder {
    let mut s = gst::Structure::builder(name)
        .field("location", location.to_string_lossy().as_ref())
        .field("trace-id", spec.identity.trace_id())
        .field("station-key", spec.identity.station_key())
        .field("tap", spec.identity.tap())
        .field("bucket-ts-ms", spec.bucket_ms)
        .field("file-index", file_index)
        .field("sample-rate", spec.rate)
        .field(
            "running-time",
            spec.start_running_time_ns
                .map(gst::ClockTime::from_nseconds),
        );
    if let Some(ns) = spec.start_utc_ns {
        s = s.field("utc-ns", ns);
        if let Ok(utc) = gst::DateTime::from_unix_epoch_utc_usecs((ns / 1_000) as i64) {
            s = s.field("utc", utc);
        }
    }
    s
}

/// The error domain of a failed write: a full disk, or any other.
fn write_error(error: &io::Error) -> gst::ResourceError {
    if error.kind() == io::ErrorKind::StorageFull {
        gst::ResourceError::NoSpaceLeft
    } else {
        gst::ResourceError::Write
    }
}

/// The `recording-stats` structure.
fn stats_structure(totals: Totals, w: &WriterStats, pairs: &PairCounters) -> gst::Structure {
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
        .field("pairs-compared", pairs.compared.load(Ordering::Relaxed))
        .field("pairs-skipped", pairs.skipped.load(Ordering::Relaxed))
        .field(
            "pair-halves-unmatched",
            pairs.unmatched.load(Ordering::Relaxed),
        )
        .build()
}
