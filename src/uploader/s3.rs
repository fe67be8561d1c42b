//! One conditional PUT of one file to an S3-compatible store: a request signed with `rusty-s3`,
//! sent with `ureq` (blocking, on an uploader thread), checked with `Content-MD5` and the
//! returned ETag.
//!
//! Every PUT carries `If-None-Match: *`, so it never replaces an object on a store that honours
//! it: the store answers 412 (or 409 while another conditional write of the key is under way)
//! when the key is taken, and a HEAD then tells whether the object there is ours (same MD5: a
//! retry whose response was lost, or another process uploading the same file) or another one.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use md5::{Digest, Md5};
use rusty_s3::{Bucket, Credentials, S3Action, UrlStyle};

/// How long a signed request stays valid.
const SIGNATURE_LIFETIME: Duration = Duration::from_secs(3_600);

/// Where segments go: a bucket, a key prefix, and the credentials to write there.
pub struct Destination {
    bucket: Bucket,
    prefix: String,
    credentials: Option<Credentials>,
    agent: ureq::Agent,
}

impl fmt::Debug for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Destination")
            .field("bucket", &self.bucket.name())
            .field("url", &self.bucket.base_url().as_str())
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl Destination {
    /// Parses `s3://bucket[/prefix]`. `endpoint` is the service's URL (path-style addressing,
    /// for SeaweedFS, MinIO, Ceph, Garage, Oracle); without it, AWS S3 of `region`.
    pub fn new(
        location: &str,
        endpoint: Option<&str>,
        region: &str,
        credentials: Option<Credentials>,
    ) -> Result<Self, String> {
        let rest = location
            .strip_prefix("s3://")
            .ok_or_else(|| format!("'{location}' is not of the form s3://bucket/prefix"))?;
        let (name, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if name.is_empty() {
            return Err(format!("'{location}' names no bucket"));
        }
        let (endpoint, style) = match endpoint {
            Some(e) => (e.to_owned(), UrlStyle::Path),
            None => (
                format!("https://s3.{region}.amazonaws.com"),
                UrlStyle::VirtualHost,
            ),
        };
        let url = url::Url::parse(&endpoint)
            .map_err(|e| format!("endpoint '{endpoint}' is not a URL: {e}"))?;
        let bucket = Bucket::new(url, style, name.to_owned(), region.to_owned())
            .map_err(|e| format!("cannot address bucket '{name}' at '{endpoint}': {e}"))?;
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .new_agent();
        Ok(Destination {
            bucket,
            prefix: prefix.trim_matches('/').to_owned(),
            credentials,
            agent,
        })
    }

    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        self.bucket.name()
    }

    /// The object key of a file at `relative` (its path below the base directory).
    pub fn key(&self, relative: &str) -> String {
        if self.prefix.is_empty() {
            relative.to_owned()
        } else {
            format!("{}/{relative}", self.prefix)
        }
    }

    /// Stores `data`, whose MD5 is `digest`, under `key` unless an object is there already;
    /// integrity-checked.
    pub fn put_new(&self, key: &str, data: &[u8], digest: &[u8; 16]) -> Result<Stored, PutError> {
        let mut action = self.bucket.put_object(self.credentials.as_ref(), key);
        action.headers_mut().insert("if-none-match", "*");
        let url = action.sign(SIGNATURE_LIFETIME);
        let response = self
            .agent
            .put(url.as_str())
            .header(
                "Content-MD5",
                base64::engine::general_purpose::STANDARD.encode(digest),
            )
            .header("Content-Type", "audio/wav")
            .header("If-None-Match", "*")
            .send(data)
            .map_err(|e| PutError::Transport(e.to_string()))?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            // A single PUT's ETag is the MD5 of the object.
            return match etag_of(&response) {
                Some(etag) if etag != hex(digest) => Err(PutError::Corrupted(etag)),
                _ => Ok(Stored::Created),
            };
        }
        let body = response.into_body().read_to_string().unwrap_or_default();
        let code = xml_code(&body).unwrap_or_default();
        match (status, code.as_str()) {
            (412, _) | (409, "ConditionalRequestConflict") => match self.etag(key)? {
                Some(etag) if etag == hex(digest) => Ok(Stored::AlreadyThere),
                Some(_) => Ok(Stored::Taken),
                // A concurrent write of the key failed, or the object went away: try again.
                None => Err(PutError::Server(status, code)),
            },
            _ => Err(classify(status, code)),
        }
    }

    /// The ETag of the object at `key`, lower-case without quotes; `None` if there is none.
    fn etag(&self, key: &str) -> Result<Option<String>, PutError> {
        let url = self
            .bucket
            .head_object(self.credentials.as_ref(), key)
            .sign(SIGNATURE_LIFETIME);
        let response = self
            .agent
            .head(url.as_str())
            .call()
            .map_err(|e| PutError::Transport(e.to_string()))?;
        match response.status().as_u16() {
            200..300 => Ok(Some(etag_of(&response).unwrap_or_default())),
            404 => Ok(None),
            // A HEAD answer has no body to name the error.
            403 => Err(PutError::Credentials("AccessDenied".into())),
            status => Err(classify(status, String::new())),
        }
    }
}

/// What a conditional PUT found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// The object was created.
    Created,
    /// An object with the same content was there already: the upload is done.
    AlreadyThere,
    /// Another object is at the key; it was left alone.
    Taken,
}

/// A response's ETag, lower-case without quotes.
fn etag_of<B>(response: &ureq::http::Response<B>) -> Option<String> {
    response
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim_matches('"').to_ascii_lowercase())
}

/// The error of a failed request's status and S3 error code.
fn classify(status: u16, code: String) -> PutError {
    match (status, code.as_str()) {
        (403, "InvalidAccessKeyId" | "SignatureDoesNotMatch" | "AccessDenied") => {
            PutError::Credentials(code)
        }
        (403, "RequestTimeTooSkewed") => PutError::Credentials(code),
        (404, "NoSuchBucket") => PutError::NoBucket,
        (400, "BadDigest") => PutError::Corrupted(code),
        (408 | 429 | 500..=599, _) => PutError::Server(status, code),
        _ => PutError::Refused(status, code),
    }
}

/// Lower-case hex of an MD5.
pub(super) fn hex(digest: &[u8; 16]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The MD5 of `data`.
pub(super) fn md5(data: &[u8]) -> [u8; 16] {
    Md5::digest(data).into()
}

/// The `<Code>` of an S3 error document.
fn xml_code(body: &str) -> Option<String> {
    let start = body.find("<Code>")? + "<Code>".len();
    let end = start + body[start..].find("</Code>")?;
    Some(body[start..end].to_owned())
}

/// Why a PUT failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutError {
    /// The server could not be reached, or the connection broke: try again.
    Transport(String),
    /// The server failed or asked to slow down: try again.
    Server(u16, String),
    /// The object arrived damaged: try again.
    Corrupted(String),
    /// The credentials are wrong or not allowed: trying again will not help.
    Credentials(String),
    /// The bucket does not exist: trying again will not help.
    NoBucket,
    /// Any other refusal: trying again will not help.
    Refused(u16, String),
    /// Every key the segment may take in its bucket holds another object.
    NoFreeKey,
}

impl PutError {
    /// Whether the reason lies with the store as a whole (credentials, bucket, a refusal of any
    /// upload) rather than with one file.
    pub fn is_store_wide(&self) -> bool {
        !self.is_transient() && *self != PutError::NoFreeKey
    }

    /// Whether trying again may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            PutError::Transport(_) | PutError::Server(..) | PutError::Corrupted(_)
        )
    }
}

impl fmt::Display for PutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutError::Transport(e) => write!(f, "cannot reach the object store: {e}"),
            PutError::Server(status, code) => {
                write!(f, "the object store failed ({status} {code})")
            }
            PutError::Corrupted(what) => write!(f, "the upload arrived damaged ({what})"),
            PutError::Credentials(code) => write!(
                f,
                "the object store refused the credentials ({code}): check upload-access-key and \
                 upload-secret-key or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            ),
            PutError::NoBucket => write!(
                f,
                "the bucket does not exist: create it or fix upload-location"
            ),
            PutError::Refused(status, code) => {
                write!(f, "the object store refused the upload ({status} {code})")
            }
            PutError::NoFreeKey => write!(
                f,
                "every key of this segment's bucket (segment_<ms>.wav to segment_<ms>-999.wav) \
                 holds another object"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_and_keys() {
        let d = Destination::new(
            "s3://rec/calls/",
            Some("http://127.0.0.1:8333"),
            "us-east-1",
            None,
        )
        .unwrap();
        assert_eq!(d.bucket(), "rec");
        assert_eq!(
            d.key("2026-11-21/c/s/PRE/segment_0.wav"),
            "calls/2026-11-21/c/s/PRE/segment_0.wav"
        );
        let d =
            Destination::new("s3://rec", Some("http://127.0.0.1:8333"), "us-east-1", None).unwrap();
        assert_eq!(d.key("a.wav"), "a.wav");
        assert!(Destination::new("rec/calls", None, "us-east-1", None).is_err());
        assert!(Destination::new("s3:///calls", None, "us-east-1", None).is_err());
        assert!(Destination::new("s3://rec", Some("ftp://x"), "us-east-1", None).is_err());
    }

    #[test]
    fn error_codes_are_read_from_the_document() {
        let body =
            "<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code><Message>x</Message></Error>";
        assert_eq!(xml_code(body).as_deref(), Some("NoSuchBucket"));
        assert_eq!(xml_code("nothing"), None);
    }
}
