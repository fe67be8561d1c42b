//! The element's side of uploads (the `s3` feature): the `upload-*` properties, the
//! configuration they make, handing published segments to the uploader and telling what became
//! of them.

use std::path::Path;
use std::sync::{Arc, LazyLock};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;

use super::imp::{CAT, SegmentRecorder, lock};
use super::settings::Settings;
use crate::log::Logger;
use crate::uploader::{
    Credentials, Destination, Failure, MAX_WORKERS, Outcome, UploadConfig, UploadReport,
    UploadStats, Uploads,
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

impl SegmentRecorder {
    /// Hands a published segment to the uploader, if uploads are configured.
    pub(super) fn upload(&self, location: &Path) {
        let uploads = lock(&self.uploads).clone();
        if let Some((uploads, base)) = uploads
            && let Some(relative) = location.strip_prefix(&base).ok().and_then(Path::to_str)
        {
            uploads.enqueue(location.to_owned(), relative);
        }
    }

    /// Sets up uploads if `upload-location` is set, and asks for a scan of the whole base
    /// directory for segments never confirmed uploaded (in the background: the start does not
    /// wait for it). What the scan finds is reported by this recorder, whatever call it is of.
    pub(super) fn start_uploads(
        &self,
        settings: &Settings,
        base_dir: &Path,
    ) -> Result<(), gst::ErrorMessage> {
        let config = settings
            .upload
            .config(super::log_hook::logger(&self.obj()))
            .map_err(|reason| gst::error_msg!(gst::ResourceError::Settings, ("{}", reason)))?;
        let uploads = match config {
            Some(config) => {
                let weak = self.obj().downgrade();
                let uploads = Uploads::new(config, move |report| {
                    if let Some(obj) = weak.upgrade() {
                        obj.imp().upload_report(report);
                    }
                })
                .map_err(|e| {
                    gst::error_msg!(
                        gst::CoreError::Thread,
                        ("Cannot start the upload threads: {}", e)
                    )
                })?;
                uploads.scan_backlog(base_dir.to_owned());
                Some((Arc::new(uploads), base_dir.to_owned()))
            }
            None => None,
        };
        *lock(&self.uploads) = uploads;
        Ok(())
    }

    /// The uploads of the current (or last) recording, if it uploads.
    pub(super) fn uploads(&self) -> Option<Arc<Uploads>> {
        lock(&self.uploads).as_ref().map(|(u, _)| u.clone())
    }

    /// With `upload-wait-eos`, waits until this recorder's uploads are done or gave up, or
    /// `unlock()` ends the wait (a flush, a state change down).
    pub(super) fn wait_for_uploads(&self) {
        if !lock(&self.settings).upload.wait_eos {
            return;
        }
        if let Some(uploads) = self.uploads() {
            gst::debug!(CAT, imp = self, "Waiting for uploads before EOS");
            if !uploads.wait_own() {
                gst::debug!(CAT, imp = self, "Unlocked while waiting for uploads");
            }
        }
    }

    /// Called on an uploader thread for each upload done or given up, in any state: posts
    /// what there is to post, then emits `upload-done`.
    fn upload_report(&self, report: UploadReport) {
        gst::debug!(
            CAT,
            imp = self,
            "Upload of {} as {}: {} after {} attempts",
            report.location.display(),
            report.key,
            report.outcome.name(),
            report.attempts
        );
        if let Outcome::Uploaded { .. } = report.outcome {
            self.post(uploaded_structure(&report));
        }
        match warning(&report) {
            Some((text, true)) => {
                gst::element_imp_warning!(self, gst::ResourceError::Read, ("{}", text));
            }
            Some((text, false)) => {
                gst::element_imp_warning!(
                    self,
                    gst::ResourceError::Write,
                    ("{}", text),
                    ["Bucket {}, key {}", report.bucket, report.key]
                );
            }
            None => (),
        }
        self.obj()
            .emit_by_name::<()>(UPLOAD_DONE, &[&outcome_structure(&report)]);
    }
}

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
                "s3://bucket/prefix to upload each finished segment to (unset: no upload)",
            ),
            string(
                "upload-endpoint",
                "Upload endpoint",
                "URL of an S3-compatible service, e.g. http://127.0.0.1:8333 (unset: AWS S3)",
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
                "Session token of temporary credentials (unset: AWS_SESSION_TOKEN, if set)",
            ),
            glib::ParamSpecUInt::builder("upload-workers")
                .nick("Upload workers")
                .blurb("Upload threads of the process, shared by all recorders")
                .minimum(1)
                .maximum(MAX_WORKERS as u32)
                .default_value(DEFAULT_WORKERS)
                .mutable_ready()
                .build(),
            glib::ParamSpecUInt::builder("upload-retries")
                .nick("Upload retries")
                .blurb(
                    "Times a failed upload is retried before the file is left for the next start",
                )
                .maximum(100)
                .default_value(DEFAULT_RETRIES)
                .mutable_ready()
                .build(),
            glib::ParamSpecBoolean::builder("upload-keep-local")
                .nick("Keep local files")
                .blurb("Keep each local file once its upload is confirmed (default: delete it)")
                .default_value(false)
                .mutable_ready()
                .build(),
            glib::ParamSpecBoolean::builder("upload-wait-eos")
                .nick("Wait for uploads on EOS")
                .blurb("Hold EOS until this recorder's uploads are done or gave up")
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
