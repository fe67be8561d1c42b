//! The recorder's part in the retention of its base directory: it joins it at start with the
//! limits of its properties, tells it of each segment it publishes, and posts what the passes it
//! asked for removed (see [`crate::retention`]).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use gst::subclass::prelude::*;

use super::imp::{CAT, SegmentRecorder, lock};
use crate::retention::{self, Limits, Member, Removal};

/// Name of the message posted when retention removed segments.
pub const SEGMENTS_REMOVED: &str = "segmentrecorder-segments-removed";

impl SegmentRecorder {
    /// Joins the retention of `base_dir` with `limits` (also when they are all off: the
    /// limits other recorders of the directory set apply to this one's segments too).
    pub(super) fn join_retention(
        &self,
        limits: Limits,
        base_dir: &Path,
    ) -> Result<(), gst::ErrorMessage> {
        let weak = self.obj().downgrade();
        let joined = retention::join(base_dir, limits, move |removal| {
            if let Some(obj) = weak.upgrade() {
                obj.imp().removed(removal);
            }
        });
        let member = match joined {
            Ok(member) => member,
            // Without a limit of its own, the recorder records all the same; only another
            // recorder's retention will not know of its segments.
            Err(e) if limits.is_off() => {
                gst::warning!(CAT, imp = self, "Not taking part in retention: {e}");
                *lock(&self.retention) = None;
                return Ok(());
            }
            Err(e) => {
                return Err(gst::error_msg!(
                    gst::CoreError::Thread,
                    (
                        "Cannot keep the retention of base-dir '{}': {}",
                        base_dir.display(),
                        e
                    )
                ));
            }
        };
        gst::debug!(
            CAT,
            imp = self,
            "Retention of {} with {:?}; the base directory's limits are now {:?}",
            base_dir.display(),
            limits,
            member.limits()
        );
        *lock(&self.retention) = Some(member);
        Ok(())
    }

    /// Called on a writer thread for each segment published (written or recovered).
    pub(super) fn retention_published(&self, location: &Path) {
        let member = lock(&self.retention).clone();
        if let Some(member) = member {
            member.published(location);
        }
    }

    /// Called on a writer thread for each segment opened (`Some`) and given up (`None`).
    pub(super) fn retention_writing(&self, opened: Option<&Path>) {
        let member = lock(&self.retention).clone();
        match (member, opened) {
            (Some(member), Some(location)) => member.opened(location),
            (Some(member), None) => member.closed(),
            (None, _) => (),
        }
    }

    /// Called on the retention thread with what a pass this recorder asked for did.
    fn removed(&self, removal: Removal) {
        gst::debug!(CAT, imp = self, "Retention: {removal:?}");
        if removal.segments > 0 {
            let mut s = gst::Structure::builder(SEGMENTS_REMOVED)
                .field("base-dir", removal.base.to_string_lossy().as_ref())
                .field("segments", removal.segments)
                .field("bytes", removal.bytes);
            if let Some(ms) = removal.oldest_kept_ms {
                s = s.field("oldest-kept-bucket-ts-ms", ms);
            }
            self.post(s.build());
        }
        for (path, error) in &removal.failed {
            gst::element_imp_warning!(
                self,
                gst::ResourceError::Write,
                ("Retention cannot remove {}: {}", path.display(), error),
                ["It is no longer counted; remove it by hand or fix its permissions"]
            );
        }
        if let Some((unmet, limits)) = removal.unmet {
            gst::element_imp_warning!(
                self,
                gst::ResourceError::NoSpaceLeft,
                (
                    "Retention cannot keep {} within its limits: {} bytes more should go, but \
                     everything old enough to go is protected",
                    removal.base.display(),
                    unmet.excess
                ),
                [
                    "{} buckets are kept because a recorder is writing them, their PRE/POST \
                     pair is still to be compared, or they are not yet confirmed uploaded \
                     (are uploads failing?). Limits: {:?}. Told once until the limits are met \
                     again.",
                    unmet.protected,
                    limits
                ]
            );
        }
    }
}

/// Adds the retention counters of `member` (zeros without one) to `s`.
pub(super) fn add_stats(s: &mut gst::Structure, member: Option<&Arc<Member>>) {
    let read = |f: fn(&retention::Counters) -> &std::sync::atomic::AtomicU64| {
        member.map_or(0, |m| f(&m.counters).load(Ordering::Relaxed))
    };
    s.set("retention-segments-removed", read(|c| &c.segments));
    s.set("retention-bytes-removed", read(|c| &c.bytes));
    s.set("retention-remove-errors", read(|c| &c.failed));
}
