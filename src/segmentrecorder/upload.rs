//! The element's side of uploads (the `s3` feature): the `upload-*` properties and the
//! configuration they make.

use std::sync::{Arc, LazyLock};

use gst::glib;
use gst::prelude::*;

use crate::log::Logger;

use crate::uploader::{
    Credentials, Destination, Failure, MAX_WORKERS, Outcome, UploadConfig, UploadReport,
    UploadStats,
};

const DEFAULT_REGION: &str = "us-east-1";
const DEFAULT_WORKERS: u32 = 4;
const DEFAULT_RETRIES: u32 = 5;

/// Name of the message posted for each segment the store confirmed.
pub const SEGMENT_UPLOADED: &str = "segmentrecorder-segment-uploaded";
/// Name of the signal emitted for every upload outcome, in any state.
pub const UPLOAD_DONE: &str = "upload-done";
/// Name of the structure the `upload-done` signal carries.
pub const UPLOAD_DONE_STRUCTURE: &str = "segmentrecorder-upload-done";

#[derive(Debug, Clone)]
pub(super) struct UploadSettings {
    location: Option<String>,
    endpoint: Option<String>,
    region: String,
    access_key: Option<String>,
    secret_key: Option<String>,
    session_token: Option<String>,
    workers: u32,
    retries: u32,
    keep_local: bool,
    pub(super) wait_eos: bool,
}

impl Default for UploadSettings {
    fn default() -> Self {
        UploadSettings {
            location: None,
            endpoint: None,
            region: DEFAULT_REGION.to_owned(),
            access_key: None,
            secret_key: None,
            session_token: None,
            workers: DEFAULT_WORKERS,
            retries: DEFAULT_RETRIES,
            keep_local: false,
            wait_eos: false,
        }
    }
}

/// The `upload-*` properties, changeable in NULL or READY.
pub(super) fn properties() -> &'static [glib::ParamSpec] {
    static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
        let string = |name: &str, nick: &str, blurb: &str| {
            glib::ParamSpecString::builder(name)
                .nick(nick)
                .blurb(blurb)
                .mutable_ready()
                .build()
        };
        vec![
            string(
                "upload-location",
                "Upload location",
                "s3://bucket/prefix to upload each finished segment to, under the same \
                 YYYY-MM-DD/<trace-id>/<station-key>/<TAP>/segment_<ms>.wav key (unset: no upload)",
            ),
            string(
                "upload-endpoint",
                "Upload endpoint",
                "URL of an S3-compatible service (SeaweedFS, MinIO, Ceph, Garage, Oracle), \
                 addressed path-style, e.g. http://127.0.0.1:8333 (unset: AWS S3 of upload-region)",
            ),
            glib::ParamSpecString::builder("upload-region")
                .nick("Upload region")
                .blurb("Region the requests are signed for")
                .default_value(Some(DEFAULT_REGION))
                .mutable_ready()
                .build(),
            string(
                "upload-access-key",
                "Upload access key",
                "Access key id (unset: AWS_ACCESS_KEY_ID from the environment)",
            ),
            string(
                "upload-secret-key",
                "Upload secret key",
                "Secret access key (unset: AWS_SECRET_ACCESS_KEY from the environment)",
            ),
            string(
                "upload-session-token",
                "Upload session token",
                "Session token of temporary credentials (unset: AWS_SESSION_TOKEN from the \
                 environment, if any)",
            ),
            glib::ParamSpecUInt::builder("upload-workers")
                .nick("Upload workers")
                .blurb("Upload threads the process should have (shared by all recorders)")
                .minimum(1)
                .maximum(MAX_WORKERS as u32)
                .default_value(DEFAULT_WORKERS)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("upload-retries")
                .nick("Upload retries")
                .blurb(
                    "Times a failed upload (server down, timeout, 5xx, throttling) is tried again \
                     with backoff before the file is left on disk for the next start",
                )
                .maximum(100)
                .default_value(DEFAULT_RETRIES)
                .mutable_ready()
                .build(),
            glib::ParamSpecBoolean::builder("upload-keep-local")
                .nick("Keep local files")
                .blurb(
                    "Keep each local file after its upload was confirmed (default: delete it; \
                     its .uploaded mark stays, so that the name is not reused)",
                )
                .default_value(false)
                .mutable_ready()
                .build(),
            glib::ParamSpecBoolean::builder("upload-wait-eos")
                .nick("Wait for uploads on EOS")
                .blurb(
                    "EOS reaches the bus only once every segment of this recorder was uploaded \
                     or gave up, or a flush or a state change down ends the wait (default: EOS \
                     does not wait; segment-uploaded messages and the upload-done signal tell)",
                )
                .default_value(false)
                .mutable_ready()
                .build(),
        ]
    });
    PROPERTIES.as_ref()
}

impl UploadSettings {
    /// Sets the property `name`; false if it is not one of these.
    pub(super) fn set(&mut self, name: &str, value: &glib::Value) -> bool {
        let text = || {
            value
                .get::<Option<String>>()
                .expect("type checked upstream")
        };
        match name {
            "upload-location" => self.location = text(),
            "upload-endpoint" => self.endpoint = text(),
            "upload-region" => self.region = text().unwrap_or_else(|| DEFAULT_REGION.to_owned()),
            "upload-access-key" => self.access_key = text(),
            "upload-secret-key" => self.secret_key = text(),
            "upload-session-token" => self.session_token = text(),
            "upload-workers" => self.workers = value.get().expect("type checked upstream"),
            "upload-retries" => self.retries = value.get().expect("type checked upstream"),
            "upload-keep-local" => self.keep_local = value.get().expect("type checked upstream"),
            "upload-wait-eos" => self.wait_eos = value.get().expect("type checked upstream"),
            _ => return false,
        }
        true
    }

    /// The value of the property `name`, if it is one of these.
    pub(super) fn get(&self, name: &str) -> Option<glib::Value> {
        Some(match name {
            "upload-location" => self.location.to_value(),
            "upload-endpoint" => self.endpoint.to_value(),
            "upload-region" => self.region.to_value(),
            // Secrets are write-only in effect: reading them gives nothing away.
            "upload-access-key" => self.access_key.to_value(),
            "upload-secret-key" | "upload-session-token" => None::<String>.to_value(),
            "upload-workers" => self.workers.to_value(),
            "upload-retries" => self.retries.to_value(),
            "upload-keep-local" => self.keep_local.to_value(),
            "upload-wait-eos" => self.wait_eos.to_value(),
            _ => return None,
        })
    }

    /// The upload configuration, if `upload-location` is set, logging to `log`; an error says
    /// what is wrong.
    pub(super) fn config(&self, log: Logger) -> Result<Option<UploadConfig>, String> {
        let Some(location) = self.location.as_deref().filter(|l| !l.is_empty()) else {
            return Ok(None);
        };
        let credentials = match (&self.access_key, &self.secret_key) {
            (Some(key), Some(secret)) => Some(match &self.session_token {
                Some(token) => Credentials::new_with_token(key, secret, token),
                None => Credentials::new(key, secret),
            }),
            (None, None) => Credentials::from_env(),
            _ => {
                return Err(
                    "Set both 'upload-access-key' and 'upload-secret-key', or neither (then \
                     the AWS_* environment variables are used)"
                        .into(),
                );
            }
        };
        let destination = Destination::new(
            location,
            self.endpoint.as_deref().filter(|e| !e.is_empty()),
            &self.region,
            credentials,
        )
        .map_err(|e| format!("Property 'upload-location' or 'upload-endpoint': {e}"))?;
        Ok(Some(UploadConfig {
            destination: Arc::new(destination),
            keep_local: self.keep_local,
            retries: self.retries,
            workers: self.workers as usize,
            log,
        }))
    }
}

/// The element's signals of uploads: `upload-done`, emitted on an upload thread for every
/// outcome, whatever the element's state (messages posted after it went to NULL are lost).
pub(super) fn signals() -> Vec<glib::subclass::Signal> {
    vec![
        glib::subclass::Signal::builder(UPLOAD_DONE)
            .param_types([gst::Structure::static_type()])
            .build(),
    ]
}

/// The `segmentrecorder-segment-uploaded` message of a confirmed segment.
pub(super) fn uploaded_structure(r: &UploadReport) -> gst::Structure {
    gst::Structure::builder(SEGMENT_UPLOADED)
        .field("location", r.location.to_string_lossy().as_ref())
        .field("bucket", &r.bucket)
        .field("key", &r.key)
        .field("size", r.size)
        .field("attempts", r.attempts)
        .build()
}

/// The structure of the `upload-done` signal: the message's fields, `outcome`, and `error`
/// when the upload failed or was refused.
pub(super) fn outcome_structure(r: &UploadReport) -> gst::Structure {
    let mut s = uploaded_structure(r);
    s.set_name(UPLOAD_DONE_STRUCTURE);
    s.set("outcome", r.outcome.name());
    match &r.outcome {
        Outcome::Uploaded { .. } => (),
        Outcome::Failed(failure) => s.set("error", failure.to_string()),
        Outcome::Refused { error, .. } => s.set("error", error.to_string()),
    }
    s
}

/// What to warn about an upload's outcome, if anything: the text and whether it is about
/// reading the local file.
pub(super) fn warning(r: &UploadReport) -> Option<(String, bool)> {
    match &r.outcome {
        Outcome::Uploaded {
            local_error: Some(error),
        } => Some((
            format!(
                "Uploaded {} as {}, but could not mark it or remove it afterwards: {}; a later \
                 start uploads it again, without harm",
                r.location.display(),
                r.key,
                error
            ),
            false,
        )),
        Outcome::Uploaded { local_error: None } => None,
        Outcome::Failed(failure) => Some((
            format!(
                "Could not upload {} after {} attempts: {}; it stays on disk and is uploaded at \
                 the next start",
                r.location.display(),
                r.attempts,
                failure
            ),
            matches!(failure, Failure::Local(_)),
        )),
        Outcome::Refused { error, first: true } => Some((
            format!(
                "Uploads are refused: {error}. Segments stay on disk and are uploaded at the \
                 next start"
            ),
            false,
        )),
        Outcome::Refused { first: false, .. } => None,
    }
}

/// Adds the upload counters to the `recording-stats` structure.
pub(super) fn add_stats(s: &mut gst::Structure, u: &UploadStats) {
    s.set("uploads-enqueued", u.enqueued);
    s.set("uploads-done", u.uploaded);
    s.set("uploads-retried", u.retried);
    s.set("uploads-failed", u.failed);
    s.set("upload-queue", u.queued);
    s.set("upload-bytes", u.bytes);
}
