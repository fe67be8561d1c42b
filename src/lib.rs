// SPDX-License-Identifier: MPL-2.0
#![allow(clippy::non_send_fields_in_send_ty, unused_doc_comments)]

//! GStreamer plugin `segmentrecorder`: records a live mono speech stream into wall-clock
//! aligned, sample-exact WAV segments, with all file IO off the streaming thread.
//!
//! Three rooms: [`segmentrecorder`] is the element (properties, caps, events, messages),
//! [`timeline`] the sample ↔ time arithmetic, [`writer`] the process-wide file writer; they, the
//! uploader and the offline tools share one [`layout`] of the files on disk. [`rebuild`] joins a
//! tap's segments back into one recording; [`pair`] compares a bucket's PRE and POST segments
//! (delay, likeness, gain of the stage between them); [`retention`] keeps a base directory
//! within its size, age and free-space limits; with the `s3` feature, `uploader` sends finished
//! segments to object storage.

use gst::glib;

pub mod layout;
mod lock_order;
pub mod log;
pub mod pair;
pub mod pair_walk;
pub mod pairing;
mod pool;
pub mod rebuild;
pub mod retention;
pub mod segmentrecorder;
pub mod timeline;
#[cfg(feature = "s3")]
pub mod uploader;
pub mod writer;

pub use segmentrecorder::{
    CALL_EVENT, PAIR, SEGMENT_OPENED, SEGMENT_RECOVERED, SEGMENT_WRITTEN, SEGMENTS_REMOVED,
    SOUND_RETURNED, call_event,
};
#[cfg(feature = "s3")]
pub use segmentrecorder::{SEGMENT_UPLOADED, UPLOAD_DONE, UPLOAD_DONE_STRUCTURE};

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    // Registered with the plugin rather than at its first line, so that `--gst-debug-help`
    // lists it.
    segmentrecorder::debug_category();
    segmentrecorder::register(plugin)
}

gst::plugin_define!(
    segmentrecorder,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "MPL",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_REPOSITORY"),
    env!("BUILD_REL_DATE")
);
