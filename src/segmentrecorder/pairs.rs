//! The element's side of PRE/POST pair analysis: offering each published segment for pairing
//! and telling the application what each comparison found (see [`crate::pairing`]).

use std::sync::Arc;
use std::time::Duration;

use gst::subclass::prelude::*;

use super::imp::{CAT, SegmentRecorder, lock};
use crate::pair::Alarm;
use crate::pairing::{self, CompareSettings, Compared, Half};
use crate::writer::SegmentWritten;

/// How long EOS waits for this recorder's comparisons.
const PAIR_PATIENCE: Duration = Duration::from_secs(5);

/// Name of the message posted for each PRE/POST pair compared.
pub const PAIR: &str = "segmentrecorder-pair";

impl SegmentRecorder {
    /// Offers a published segment for pairing, if this recorder takes part.
    pub(super) fn offer_pair(&self, w: &SegmentWritten) {
        let (settings, counters) = {
            let state = lock(&self.state);
            let Some(state) = state.as_ref().filter(|s| s.settings.pair_analysis) else {
                return;
            };
            let settings = &state.settings;
            (
                CompareSettings {
                    max_delay_ms: u32::try_from(settings.pair_max_delay.mseconds())
                        .unwrap_or(u32::MAX),
                    silence_threshold_dbfs: settings.silence_threshold,
                    voice_threshold_dbfs: settings.voice_threshold,
                },
                state.pairs.clone(),
            )
        };
        let weak = self.obj().downgrade();
        pairing::offer(Half {
            location: w.location.clone(),
            // A few system calls on the writer thread that published the file.
            key: pairing::canonical(&w.location),
            identity: w.spec.identity.clone(),
            bucket_ms: w.spec.bucket_ms,
            file_index: w.file_index,
            settings,
            counters,
            reports: Arc::new(move |compared| {
                if let Some(obj) = weak.upgrade() {
                    obj.imp().pair_compared(compared);
                }
            }),
        });
    }

    /// Waits (a few seconds at most) until the comparisons of the pairs this recorder
    /// completed are posted: at EOS, so that they reach the bus before it.
    pub(super) fn wait_for_pairs(&self) {
        let pairs = lock(&self.state).as_ref().map(|s| s.pairs.clone());
        if let Some(pairs) = pairs
            && !pairs.wait_idle(PAIR_PATIENCE)
        {
            gst::debug!(CAT, imp = self, "Pair comparisons still running at EOS");
        }
    }

    /// Called on a comparing thread for each pair whose second half this recorder published.
    fn pair_compared(&self, c: Compared) {
        let f = &c.figures;
        gst::debug!(
            CAT,
            imp = self,
            "Pair of bucket {} ms: {}, delay {:.3} ms, correlation {:.3}, gain {:.2} dB",
            c.bucket_ms,
            f.alignment.as_str(),
            f.delay_ms,
            f.correlation,
            f.gain_db
        );
        let s = gst::Structure::builder(PAIR)
            .field("trace-id", c.identity.trace_id())
            .field("station-key", c.identity.station_key())
            .field("bucket-ts-ms", c.bucket_ms)
            .field("file-index", c.file_index)
            .field("pre-location", c.pre.to_string_lossy().as_ref())
            .field("post-location", c.post.to_string_lossy().as_ref())
            .field("sample-rate", c.rate)
            .field("alignment", f.alignment.as_str())
            .field("delay-ms", f.delay_ms)
            .field("correlation", f.correlation)
            .field("gain-db", f.gain_db)
            .field("pre-rms-dbfs", f.pre_rms_dbfs)
            .field("post-rms-dbfs", f.post_rms_dbfs)
            .field("pre-voiced-ratio", f.pre_voiced_ratio)
            .field("post-voiced-ratio", f.post_voiced_ratio)
            .field("pre-clipped-samples", f.pre_clipped_samples)
            .field("post-clipped-samples", f.post_clipped_samples)
            .field(
                "alarms",
                gst::Array::new(c.alarms.iter().map(Alarm::as_str)),
            )
            .build();
        self.post(s);
        let (call, station, bucket) =
            (c.identity.trace_id(), c.identity.station_key(), c.bucket_ms);
        for alarm in c.alarms {
            let text = match alarm {
                Alarm::Muted => format!(
                    "Station '{station}' muted the audio of call '{call}': PRE has voice, POST \
                     is silent (bucket {bucket} ms)"
                ),
                Alarm::DelayJumped { from_ms, to_ms } => format!(
                    "The delay of station '{station}' jumped from {from_ms:.1} ms to \
                     {to_ms:.1} ms in call '{call}' (bucket {bucket} ms)"
                ),
                Alarm::Clips { samples } => format!(
                    "Station '{station}' clips in call '{call}': {samples} samples at full scale \
                     in POST where PRE has none (bucket {bucket} ms)"
                ),
            };
            gst::element_imp_warning!(
                self,
                gst::StreamError::Failed,
                ("{}", text),
                ["PRE {}, POST {}", c.pre.display(), c.post.display()]
            );
        }
    }
}
