//! The uploader: finished segments go to S3-compatible object storage from a pool of threads
//! shared by the process, never from a streaming or writer thread.
//!
//! A recorder opens [`Uploads`] and hands it each segment once the writer has published it.
//! A thread reads the file, PUTs it under the key that mirrors the local layout, never replacing
//! an object (a conditional PUT: an object with the same MD5 at the key means the upload was
//! done already, another object stays and the file goes to the next free key of its bucket,
//! `segment_<ms>-<n>.wav`), and once the store confirmed it (status, Content-MD5 and ETag)
//! records the fact next to the file in the mark `segment_<ms>.wav.uploaded`
//! (the file's MD5 and the key it went to); then, unless the local file is to be kept, removes
//! the file. The mark stays: a tombstone telling that the name was published, so that the name
//! is never given to another recording, and that what it held is in the bucket. A file is thus
//! never removed before its upload is confirmed, and a file found with a mark whose MD5 is its
//! own needs no upload. Failures that may pass (server down, timeouts, 5xx, throttling) are
//! retried with a growing backoff up to a limit; after it, or at once for wrong credentials or a
//! missing bucket, the file stays on disk for the next start to upload.

mod s3;

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar};
use std::time::{Duration, Instant};

pub use rusty_s3::Credentials;
pub use s3::{Destination, PutError, Stored};
use s3::{hex, md5};

use crate::lock_order::{Level, OrderedMutex};
use crate::pool::Pool;
use crate::writer::layout::{parse_segment_file_name, segment_file_name};

/// Files a bucket may have in the store: `segment_<ms>.wav` to `segment_<ms>-999.wav`, as on
/// disk.
const MAX_KEY_INDEX: u32 = 1_000;

/// Most uploader threads in a process.
pub const MAX_WORKERS: usize = 16;

/// First wait before a failed upload is tried again; it doubles up to the maximum.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How a recorder's segments are uploaded.
#[derive(Debug, Clone)]
pub struct UploadConfig {
    /// Where to.
    pub destination: Arc<Destination>,
    /// Keep the local file after a confirmed upload.
    pub keep_local: bool,
    /// Attempts after the first before a file is left for a later start.
    pub retries: u32,
    /// Uploader threads the process should have (at most [`MAX_WORKERS`]).
    pub workers: usize,
}

/// What became of one segment's upload: told for every segment handed to the uploader.
#[derive(Debug, Clone)]
pub struct UploadReport {
    /// The local file (removed after a confirmed upload unless kept).
    pub location: PathBuf,
    /// The bucket.
    pub bucket: String,
    /// The object key: where the segment went, or was to go.
    pub key: String,
    /// Bytes of the file (0 if it could not be read).
    pub size: u64,
    /// PUT attempts made (0: its mark showed it confirmed before).
    pub attempts: u32,
    /// How it ended.
    pub outcome: Outcome,
}

/// How an upload ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The store holds the segment under its key. `local_error`: writing the mark or removing
    /// the file failed afterwards (a later start uploads it again, harmlessly).
    Uploaded {
        /// The local step that failed, if one did.
        local_error: Option<Arc<io::Error>>,
    },
    /// The upload failed and gave up for now: the file stays for a later start.
    Failed(Failure),
    /// The store refuses uploads for a reason retries cannot mend (credentials, bucket); the
    /// file stays.
    Refused {
        /// Why.
        error: PutError,
        /// Whether this is the first segment of the recorder refused for this reason (the one
        /// to warn about).
        first: bool,
    },
}

impl Outcome {
    /// `uploaded`, `failed` or `refused`.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Uploaded { .. } => "uploaded",
            Outcome::Failed(_) => "failed",
            Outcome::Refused { .. } => "refused",
        }
    }
}

/// Why an upload failed.
#[derive(Debug, Clone)]
pub enum Failure {
    /// The store could not be reached, or failed, every time.
    Store(PutError),
    /// The file could not be read.
    Local(Arc<io::Error>),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Store(e) => e.fmt(f),
            Failure::Local(e) => write!(f, "cannot read it: {e}"),
        }
    }
}

/// Counters of one recorder's uploads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UploadStats {
    /// Segments handed to the uploader (backlog included).
    pub enqueued: u64,
    /// Segments the store confirmed.
    pub uploaded: u64,
    /// Attempts that failed and were tried again.
    pub retried: u64,
    /// Segments left on disk after failing.
    pub failed: u64,
    /// Segments waiting or being uploaded now.
    pub queued: u64,
    /// Bytes the store confirmed.
    pub bytes: u64,
}

type ReportFn = Box<dyn Fn(UploadReport) + Send + Sync>;

struct Inner {
    config: UploadConfig,
    reports: ReportFn,
    state: OrderedMutex<RecorderState>,
    idle: Condvar,
}

#[derive(Default)]
struct RecorderState {
    stats: UploadStats,
    /// Files queued or being uploaded: a file is never queued twice.
    in_flight: HashSet<PathBuf>,
    /// Reasons already reported by a `Refused`.
    refused: HashSet<String>,
    /// Waits return at once (the element is flushing or stopping).
    unblocked: bool,
}

/// A recorder's connection to the uploader.
pub struct Uploads {
    inner: Arc<Inner>,
}

/// The mark that tells a file's upload was confirmed.
fn mark_of(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".uploaded");
    PathBuf::from(name)
}

/// Writes the mark of the file at `path`: one line, `<md5 hex>  <key>`, as `md5sum` prints.
fn write_mark(path: &Path, digest: &[u8; 16], key: &str) -> io::Result<()> {
    fs::write(mark_of(path), format!("{}  {key}\n", hex(digest)))
}

/// The MD5 and key the mark of the file at `path` records, if it has a readable one.
fn read_mark(path: &Path) -> Option<([u8; 16], String)> {
    let text = fs::read_to_string(mark_of(path)).ok()?;
    let (hex, key) = text.trim_end().split_once("  ")?;
    if hex.len() != 32 || key.is_empty() {
        return None;
    }
    let mut digest = [0u8; 16];
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some((digest, key.to_owned()))
}

/// The key after `key` in its bucket: `…/segment_<ms>-<n + 1>.wav`; `None` past the last.
fn next_key(key: &str) -> Option<String> {
    let (dir, name) = match key.rsplit_once('/') {
        Some((dir, name)) => (Some(dir), name),
        None => (None, key),
    };
    let (bucket_ms, index) = parse_segment_file_name(name)?;
    let next = segment_file_name(bucket_ms, Some(index + 1).filter(|&n| n < MAX_KEY_INDEX)?);
    Some(match dir {
        Some(dir) => format!("{dir}/{next}"),
        None => next,
    })
}

/// Removes a file; one already gone (another uploader of it removed it) is fine.
fn remove_if_there(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

impl Uploads {
    /// Uploads as `config` says, telling what happened to `reports` (on an uploader thread).
    /// Starts uploader threads up to `config.workers`: an error if the system refuses one.
    pub fn new(
        config: UploadConfig,
        reports: impl Fn(UploadReport) + Send + Sync + 'static,
    ) -> io::Result<Self> {
        UPLOADERS.ensure_threads(config.workers.clamp(1, MAX_WORKERS))?;
        Ok(Uploads {
            inner: Arc::new(Inner {
                config,
                reports: Box::new(reports),
                state: OrderedMutex::new(Level::Uploads, RecorderState::default()),
                idle: Condvar::new(),
            }),
        })
    }

    /// Queues the published segment at `path`, whose key is `relative` (its path below the
    /// base directory) under the destination's prefix.
    pub fn enqueue(&self, path: PathBuf, relative: &str) {
        let key = self.inner.config.destination.key(relative);
        {
            let mut state = self.inner.state.lock();
            if !state.in_flight.insert(path.clone()) {
                return;
            }
            state.stats.enqueued += 1;
            state.stats.queued += 1;
        }
        run(Job {
            inbox: self.inner.clone(),
            path,
            key,
            attempts: 0,
        });
    }

    /// Finds, on an uploader thread, the segments under `dirs` (below `base`) that were never
    /// confirmed uploaded, and queues them; finishes what a dead process left half done.
    pub fn enqueue_backlog(&self, base: PathBuf, dirs: Vec<PathBuf>) {
        let uploads = Uploads {
            inner: self.inner.clone(),
        };
        {
            let mut state = self.inner.state.lock();
            state.stats.queued += 1;
        }
        UPLOADERS.run(move || {
            for dir in &dirs {
                uploads.scan(&base, dir);
            }
            let mut state = uploads.inner.state.lock();
            state.stats.queued -= 1;
            drop(state);
            uploads.inner.idle.notify_all();
        });
    }

    fn scan(&self, base: &Path, dir: &Path) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        let mut files: Vec<PathBuf> = entries.filter_map(|e| Some(e.ok()?.path())).collect();
        files.sort();
        for path in files {
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            // Marks (tombstones included), `.part` and `.recovering` files are not segments.
            if parse_segment_file_name(name).is_none() {
                continue;
            }
            // A kept file with a mark was uploaded. Without `keep_local`, a file with a mark was
            // confirmed by a process that died before removing it: its job checks that the mark
            // is the file's own and removes it.
            if self.inner.config.keep_local && mark_of(&path).exists() {
                continue;
            }
            if let Ok(relative) = path.strip_prefix(base)
                && let Some(relative) = relative.to_str()
            {
                self.enqueue(path.clone(), relative);
            }
        }
    }

    /// Waits until every queued upload of this recorder succeeded or gave up; false if
    /// [`Uploads::set_unblocked`] ended the wait first.
    pub fn wait_idle(&self) -> bool {
        let mut state = self.inner.state.lock();
        loop {
            if state.stats.queued == 0 {
                return true;
            }
            if state.unblocked {
                return false;
            }
            state = state.wait(&self.inner.idle);
        }
    }

    /// While `unblocked`, waits return at once: a flushing or stopping element must not wait
    /// for a store that may not answer for minutes.
    pub fn set_unblocked(&self, unblocked: bool) {
        self.inner.state.lock().unblocked = unblocked;
        self.inner.idle.notify_all();
    }

    /// The bucket uploads go to.
    pub fn bucket(&self) -> &str {
        self.inner.config.destination.bucket()
    }

    /// The counters.
    pub fn stats(&self) -> UploadStats {
        self.inner.state.lock().stats
    }
}

/// One file to upload.
struct Job {
    inbox: Arc<Inner>,
    path: PathBuf,
    key: String,
    attempts: u32,
}

impl Job {
    /// Uploads once; gives the job back if it is to be tried again.
    fn run(mut self) -> Option<Job> {
        self.attempts += 1;
        let inner = self.inbox.clone();
        let data = match fs::read(&self.path) {
            Ok(data) => data,
            Err(error) => {
                self.finish(0, Outcome::Failed(Failure::Local(Arc::new(error))));
                return None;
            }
        };
        let digest = md5(&data);
        if self.attempts == 1
            && let Some(key) = read_mark(&self.path).filter(|m| m.0 == digest).map(|m| m.1)
        {
            // Confirmed before: only the removal is left to do.
            self.key = key;
            let removed = match inner.config.keep_local {
                true => Ok(()),
                false => remove_if_there(&self.path),
            };
            self.uploaded(data.len() as u64, 0, removed.err());
            return None;
        }
        loop {
            match inner.config.destination.put_new(&self.key, &data, &digest) {
                Ok(Stored::Created | Stored::AlreadyThere) => {
                    let confirmed = self.confirm(&digest);
                    self.uploaded(data.len() as u64, self.attempts, confirmed.err());
                    return None;
                }
                // Someone else's object: it stays, ours goes to the next free key.
                Ok(Stored::Taken) => match next_key(&self.key) {
                    Some(key) => self.key = key,
                    None => {
                        let outcome = Outcome::Failed(Failure::Store(PutError::NoFreeKey));
                        self.finish(data.len() as u64, outcome);
                        return None;
                    }
                },
                Err(error) if error.is_transient() && self.attempts <= inner.config.retries => {
                    inner.state.lock().stats.retried += 1;
                    return Some(self);
                }
                Err(error) if !error.is_store_wide() => {
                    self.finish(data.len() as u64, Outcome::Failed(Failure::Store(error)));
                    return None;
                }
                Err(error) => {
                    let outcome = Outcome::Refused {
                        error,
                        first: false,
                    };
                    self.finish(data.len() as u64, outcome);
                    return None;
                }
            }
        }
    }

    /// Ends the job as uploaded, with the local step that failed afterwards, if any.
    fn uploaded(&mut self, size: u64, attempts: u32, local_error: Option<io::Error>) {
        self.attempts = attempts;
        let local_error = local_error.map(Arc::new);
        self.finish(size, Outcome::Uploaded { local_error });
    }

    /// Records the confirmed upload of the file whose MD5 is `digest` in its mark, then removes
    /// the file unless it is kept. The mark stays.
    fn confirm(&self, digest: &[u8; 16]) -> io::Result<()> {
        write_mark(&self.path, digest, &self.key)?;
        if !self.inbox.config.keep_local {
            remove_if_there(&self.path)?;
        }
        Ok(())
    }

    /// Counts the job's end, delivers its report, and only then takes it off the queue, so
    /// that whoever waits for the uploads to be done has every report when they are.
    fn finish(&self, size: u64, mut outcome: Outcome) {
        {
            let mut state = self.inbox.state.lock();
            match &mut outcome {
                Outcome::Uploaded { .. } => {
                    state.stats.uploaded += 1;
                    state.stats.bytes += size;
                }
                Outcome::Failed(_) => state.stats.failed += 1,
                Outcome::Refused { error, first } => {
                    state.stats.failed += 1;
                    *first = state.refused.insert(format!("{error:?}"));
                }
            }
        }
        (self.inbox.reports)(UploadReport {
            location: self.path.clone(),
            bucket: self.inbox.config.destination.bucket().to_owned(),
            key: self.key.clone(),
            size,
            attempts: self.attempts,
            outcome,
        });
        let mut state = self.inbox.state.lock();
        state.stats.queued -= 1;
        state.in_flight.remove(&self.path);
        drop(state);
        self.inbox.idle.notify_all();
    }

    fn backoff(&self) -> Duration {
        (FIRST_BACKOFF * 2u32.saturating_pow(self.attempts.saturating_sub(1))).min(MAX_BACKOFF)
    }
}

/// The process-wide uploader threads.
static UPLOADERS: Pool = Pool::new("segrec-upload");

/// Runs `job` on an uploader thread.
fn run(job: Job) {
    UPLOADERS.run(move || attempt(job));
}

/// Tries `job` once, and again after its backoff while it asks to be retried.
fn attempt(job: Job) {
    if let Some(job) = job.run() {
        let at = Instant::now() + job.backoff();
        UPLOADERS.run_at(at, move || attempt(job));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_key_gives_way_to_the_next_file_index() {
        assert_eq!(
            next_key("p/1970-01-01/c/s/PRE/segment_5000.wav").as_deref(),
            Some("p/1970-01-01/c/s/PRE/segment_5000-1.wav")
        );
        assert_eq!(
            next_key("1970-01-01/c/s/PRE/segment_5000-1.wav").as_deref(),
            Some("1970-01-01/c/s/PRE/segment_5000-2.wav")
        );
        assert_eq!(
            next_key("segment_0-998.wav").as_deref(),
            Some("segment_0-999.wav")
        );
        assert_eq!(next_key("segment_0-999.wav"), None);
        assert_eq!(next_key("p/notes.txt"), None);
    }

    #[test]
    fn a_mark_records_the_md5_and_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("segment_0.wav");
        let digest = md5(b"audio");
        write_mark(&file, &digest, "p/1970-01-01/c/s/PRE/segment_0-1.wav").unwrap();
        assert_eq!(
            fs::read_to_string(mark_of(&file)).unwrap(),
            format!("{}  p/1970-01-01/c/s/PRE/segment_0-1.wav\n", hex(&digest))
        );
        assert_eq!(
            read_mark(&file),
            Some((digest, "p/1970-01-01/c/s/PRE/segment_0-1.wav".to_owned()))
        );
        // An empty or damaged mark proves nothing: the file is uploaded again (harmlessly).
        for damaged in ["", "0123", "zz  key\n", &format!("{}  \n", hex(&digest))] {
            fs::write(mark_of(&file), damaged).unwrap();
            assert_eq!(read_mark(&file), None, "{damaged:?}");
        }
    }
}
