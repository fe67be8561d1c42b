//! The uploader: finished segments go to S3-compatible object storage from a pool of threads
//! shared by the process, never from a streaming or writer thread.
//!
//! A recorder opens [`Uploads`] and hands it each segment once the writer has published it.
//! A thread reads the file, PUTs it under the key that mirrors the local layout, never replacing
//! an object (a conditional PUT: an object with the same MD5 at the key means the upload was
//! done already, another object stays and the file goes to the next free key of its bucket,
//! `segment_<ms>-<n>.wav`), and once the store confirmed it (status, Content-MD5 and ETag)
//! records the fact next to the file in its mark (`marks.rs`); then, unless the local file is to
//! be kept, removes the file. The mark stays: a tombstone telling that the name was published,
//! so that the name is never given to another recording, and that what it held is in the
//! bucket. A file is thus never removed before its upload is confirmed, and a file found with a
//! mark whose MD5 is its own needs no upload. Failures that may pass (server down, timeouts,
//! 5xx, throttling) are retried with a growing backoff up to a limit; after it, or at once for
//! wrong credentials or a missing bucket, the file stays on disk for the backlog scan of
//! the next recorder that starts on the base directory.
//!
//! A file is uploaded by one job at a time in the process, whoever queued it: a recorder that
//! queues a file already being uploaded (its own segment found by a scan, two scans) waits for
//! that job and hears of its outcome. Every segment handed to the uploader gets one
//! [`UploadReport`], whatever its outcome.
//!
//! Mutex order: a recorder's `state`, then `IN_FLIGHT`, then the backlog's `SCANS`, then the
//! pool's locks. In fact none of the three is held while another is taken, and none while a
//! report is delivered, a file is read or a request is sent.

mod backlog;
mod marks;
mod s3;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar};
use std::time::{Duration, Instant};

use marks::{mark_of, read_mark, write_mark};
pub use rusty_s3::Credentials;
use s3::md5;
pub use s3::{Destination, PutError, Stored};

use crate::layout::{parse_segment_file_name, segment_file_name};
use crate::lock_order::{Level, OrderedMutex};
use crate::log::Logger;
use crate::pool::Pool;
use crate::writer::recover::remove_leftover_links;

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
    /// Where the uploader tells what it does with the recorder's files.
    pub log: Logger,
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

impl Inner {
    /// Counts a backlog scan this recorder asked for as queued until [`Inner::scan_done`].
    fn scan_requested(&self) {
        self.state.lock().stats.queued += 1;
    }

    fn scan_done(&self) {
        self.state.lock().stats.queued -= 1;
        self.idle.notify_all();
    }

    /// Counts the end of the upload of `path` and delivers its report, and only then takes it
    /// off the queue, so that whoever waits for the uploads to be done has every report when
    /// they are. `None`: the file was gone before its upload began, confirmed by another
    /// process (its mark is there); it is not counted.
    fn conclude(&self, path: &Path, mut report: Option<UploadReport>) {
        {
            let mut state = self.state.lock();
            let state = &mut *state;
            match report.as_mut().map(|r| (r.size, &mut r.outcome)) {
                Some((size, Outcome::Uploaded { .. })) => {
                    state.stats.uploaded += 1;
                    state.stats.bytes += size;
                }
                Some((_, Outcome::Failed(_))) => state.stats.failed += 1,
                Some((_, Outcome::Refused { error, first })) => {
                    state.stats.failed += 1;
                    *first = state.refused.insert(format!("{error:?}"));
                }
                None => state.stats.enqueued -= 1,
            }
        }
        if let Some(report) = report {
            (self.reports)(report);
        }
        let mut state = self.state.lock();
        state.stats.queued -= 1;
        if state.in_flight.remove(path) == Some(Kind::Own) {
            state.own -= 1;
        }
        drop(state);
        self.idle.notify_all();
    }
}

/// Why a recorder waits for a file's upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A segment the recorder published or recovered: `upload-wait-eos` waits for it.
    Own,
    /// A file its backlog scan found.
    Backlog,
}

#[derive(Default)]
struct RecorderState {
    stats: UploadStats,
    /// Files queued or being uploaded for this recorder.
    in_flight: HashMap<PathBuf, Kind>,
    /// How many of them are its own.
    own: u64,
    /// Reasons already reported by a `Refused`.
    refused: HashSet<String>,
    /// Waits return at once (the element is flushing or stopping).
    unblocked: bool,
}

/// A recorder's connection to the uploader.
pub struct Uploads {
    inner: Arc<Inner>,
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

/// Removes the uploaded segment at `path`, whose content is `data`, handing that content to
/// the pair analysis first if it still needs the file.
fn remove_uploaded(path: &Path, data: &[u8]) -> io::Result<()> {
    crate::pairing::keep_before_removal(path, data);
    remove_if_there(path)
}

/// Removes an uploaded file; one already gone (another uploader of it removed it) is fine.
/// A `.part` that a writer killed while publishing left linked to it goes first, and the file
/// stays while a live writer is still publishing it: removed alone, its audio would come back
/// as a `.part` to recover and be published, and uploaded, a second time.
fn remove_if_there(path: &Path) -> io::Result<()> {
    if !remove_leftover_links(path)? {
        return Ok(());
    }
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

    /// Queues the segment at `path`, which this recorder published or recovered and whose key
    /// is `relative` (its path below the base directory) under the destination's prefix.
    pub fn enqueue(&self, path: PathBuf, relative: &str) {
        register(&self.inner, path, relative, Kind::Own, None);
    }

    /// Scans the whole base directory `base` (every date and identity) on an uploader thread
    /// for segments never confirmed uploaded and queues them a few at a time, reporting them
    /// to this recorder; finishes the removals a dead process left. At most one scan of a base
    /// directory runs in the process: asked while one runs, another follows it.
    pub fn scan_backlog(&self, base: PathBuf) {
        backlog::request(self.inner.clone(), base);
    }

    /// Waits until every upload queued for this recorder, backlog scans included, succeeded
    /// or gave up; false if [`Uploads::set_unblocked`] ended the wait first.
    pub fn wait_idle(&self) -> bool {
        self.wait_until(|state| state.stats.queued == 0)
    }

    /// Waits until this recorder's own segments are uploaded or gave up (the backlog its scan
    /// found drains on its own); false if [`Uploads::set_unblocked`] ended the wait first.
    pub fn wait_own(&self) -> bool {
        self.wait_until(|state| state.own == 0)
    }

    fn wait_until(&self, done: impl Fn(&RecorderState) -> bool) -> bool {
        let mut state = self.inner.state.lock();
        loop {
            if done(&state) {
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

    /// The counters.
    pub fn stats(&self) -> UploadStats {
        self.inner.state.lock().stats
    }
}

/// The files being uploaded in the process, each with the recorders waiting for it (the one
/// whose job uploads it first): a file queued twice, by its recorder and a backlog scan or by
/// two scans, is uploaded once and reported to each.
static IN_FLIGHT: OrderedMutex<BTreeMap<PathBuf, Vec<Arc<Inner>>>> =
    OrderedMutex::new(Level::UploadsInFlight, BTreeMap::new());

/// Queues `path` (at `relative` below the base directory) for `inbox`; true if a job was
/// started for it, false if it was already queued (then `inbox` hears of that upload).
/// `scan`: the backlog scan that found the file.
fn register(
    inbox: &Arc<Inner>,
    path: PathBuf,
    relative: &str,
    kind: Kind,
    scan: Option<&Path>,
) -> bool {
    {
        let mut state = inbox.state.lock();
        let state = &mut *state;
        if let Some(queued) = state.in_flight.get_mut(&path) {
            // Found by the scan, then published or recovered by the recorder: its own now.
            if kind == Kind::Own && *queued == Kind::Backlog {
                *queued = Kind::Own;
                state.own += 1;
            }
            return false;
        }
        state.in_flight.insert(path.clone(), kind);
        state.own += u64::from(kind == Kind::Own);
        state.stats.enqueued += 1;
        state.stats.queued += 1;
    }
    {
        let mut in_flight = IN_FLIGHT.lock();
        if let Some(waiting) = in_flight.get_mut(&path) {
            waiting.push(inbox.clone());
            return false;
        }
        in_flight.insert(path.clone(), vec![inbox.clone()]);
    }
    run(Job {
        key: inbox.config.destination.key(relative),
        inbox: inbox.clone(),
        path,
        attempts: 0,
        scan: scan.map(Path::to_owned),
    });
    true
}

/// One file to upload.
struct Job {
    /// The recorder whose configuration uploads the file.
    inbox: Arc<Inner>,
    path: PathBuf,
    key: String,
    attempts: u32,
    /// The base directory of the backlog scan that queued the job, if one did.
    scan: Option<PathBuf>,
}

impl Job {
    /// Uploads once; gives the job back if it is to be tried again.
    fn run(mut self) -> Option<Job> {
        self.attempts += 1;
        let inner = self.inbox.clone();
        let log = &inner.config.log;
        let data = match fs::read(&self.path) {
            Ok(data) => data,
            Err(error)
                if error.kind() == io::ErrorKind::NotFound && mark_of(&self.path).exists() =>
            {
                // Uploaded and removed by another process since it was queued.
                log.debug(format_args!(
                    "{} was uploaded and removed by another process",
                    self.path.display()
                ));
                self.end(None);
                return None;
            }
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
            log.debug(format_args!(
                "{} was confirmed uploaded as {key} before",
                self.path.display()
            ));
            self.key = key;
            let removed = match inner.config.keep_local {
                true => Ok(()),
                false => remove_uploaded(&self.path, &data),
            };
            self.uploaded(data.len() as u64, 0, removed.err());
            return None;
        }
        loop {
            log.debug(format_args!(
                "Uploading {} to bucket {} as {}: {} bytes, attempt {}",
                self.path.display(),
                inner.config.destination.bucket(),
                self.key,
                data.len(),
                self.attempts
            ));
            match inner.config.destination.put_new(&self.key, &data, &digest) {
                Ok(Stored::Created | Stored::AlreadyThere) => {
                    let confirmed = self.confirm(&data, &digest);
                    self.uploaded(data.len() as u64, self.attempts, confirmed.err());
                    return None;
                }
                // Someone else's object: it stays, ours goes to the next free key.
                Ok(Stored::Taken) => match next_key(&self.key) {
                    Some(key) => {
                        log.debug(format_args!(
                            "{} holds another object: trying {key}",
                            self.key
                        ));
                        self.key = key;
                    }
                    None => {
                        let outcome = Outcome::Failed(Failure::Store(PutError::NoFreeKey));
                        self.finish(data.len() as u64, outcome);
                        return None;
                    }
                },
                Err(error) if error.is_transient() && self.attempts <= inner.config.retries => {
                    log.info(format_args!(
                        "Cannot upload {} as {}: {error}; trying again in {:?} (attempt {} of {})",
                        self.path.display(),
                        self.key,
                        self.backoff(),
                        self.attempts + 1,
                        inner.config.retries + 1
                    ));
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

    /// Records the confirmed upload of the file whose content is `data` and MD5 `digest` in
    /// its mark, then removes the file unless it is kept. The mark stays.
    fn confirm(&self, data: &[u8], digest: &[u8; 16]) -> io::Result<()> {
        write_mark(&self.path, digest, &self.key)?;
        if !self.inbox.config.keep_local {
            remove_uploaded(&self.path, data)?;
        }
        Ok(())
    }

    /// Ends the job: its report goes to every recorder waiting for the file.
    fn finish(&self, size: u64, outcome: Outcome) {
        let (log, path, key) = (&self.inbox.config.log, self.path.display(), &self.key);
        match &outcome {
            Outcome::Uploaded { local_error: None } => {
                log.debug(format_args!("Uploaded {path} as {key}: {size} bytes"));
            }
            Outcome::Uploaded {
                local_error: Some(e),
            } => log.warning(format_args!(
                "Uploaded {path} as {key}, but the local file could not be marked or removed: {e}"
            )),
            Outcome::Failed(failure) => log.warning(format_args!(
                "Gave up uploading {path} as {key} after {} attempts: {failure}; the file stays \
                 for a later start",
                self.attempts
            )),
            Outcome::Refused { error, .. } => log.warning(format_args!(
                "The store refuses {path} as {key}: {error}; the file stays for a later start"
            )),
        }
        self.end(Some(UploadReport {
            location: self.path.clone(),
            bucket: self.inbox.config.destination.bucket().to_owned(),
            key: self.key.clone(),
            size,
            attempts: self.attempts,
            outcome,
        }));
    }

    fn end(&self, report: Option<UploadReport>) {
        let waiting = IN_FLIGHT.lock().remove(&self.path).unwrap_or_default();
        for inbox in &waiting {
            inbox.conclude(&self.path, report.clone());
        }
        if let Some(base) = &self.scan {
            backlog::job_done(base);
        }
    }

    fn backoff(&self) -> Duration {
        (FIRST_BACKOFF * 2u32.saturating_pow(self.attempts.saturating_sub(1))).min(MAX_BACKOFF)
    }
}

/// The process-wide uploader threads.
/// No spares: an upload may take long (a slow store) without any thread being stuck.
static UPLOADERS: Pool = Pool::with_spares("segrec-upload", 0);

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
    use std::sync::mpsc;

    /// A configuration uploading to a port nobody listens on.
    fn unreachable(retries: u32) -> UploadConfig {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let endpoint = format!("http://127.0.0.1:{port}");
        let credentials = Credentials::new("key", "secret");
        UploadConfig {
            destination: Arc::new(
                Destination::new(
                    "s3://rec/p",
                    Some(&endpoint),
                    "us-east-1",
                    Some(credentials),
                )
                .unwrap(),
            ),
            keep_local: false,
            retries,
            workers: 2,
            log: Logger::none(),
        }
    }

    fn wait_until_idle(uploads: &[&Uploads]) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while uploads.iter().any(|u| u.stats().queued > 0) {
            assert!(Instant::now() < deadline, "the uploads did not end");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_file_queued_by_two_recorders_is_uploaded_once_and_told_to_both() {
        let dir = tempfile::tempdir().unwrap();
        let relative = "1970-01-01/c/s/PRE/segment_0.wav";
        let file = dir.path().join(relative);
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(&file, b"RIFF").unwrap();
        let config = unreachable(1);
        let (tx, rx) = mpsc::channel();
        let told = |name: &'static str| {
            let tx = tx.clone();
            move |r: UploadReport| tx.send((name, r)).unwrap()
        };
        let a = Uploads::new(config.clone(), told("a")).unwrap();
        let b = Uploads::new(config, told("b")).unwrap();
        a.enqueue(file.clone(), relative);
        b.enqueue(file.clone(), relative);
        let mut got: Vec<_> = (0..2)
            .map(|_| rx.recv_timeout(Duration::from_secs(30)).unwrap())
            .collect();
        got.sort_by_key(|g| g.0);
        assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), ["a", "b"]);
        for (_, report) in &got {
            assert_eq!(report.location, file);
            assert!(matches!(report.outcome, Outcome::Failed(_)), "{report:?}");
            assert_eq!(report.attempts, 2);
        }
        wait_until_idle(&[&a, &b]);
        // One job made the two attempts; each recorder counts the file once.
        assert_eq!(a.stats().retried + b.stats().retried, 1);
        for u in [&a, &b] {
            assert_eq!((u.stats().enqueued, u.stats().failed), (1, 1));
        }
        assert!(rx.try_recv().is_err());
        assert!(file.exists());
    }

    #[test]
    fn the_log_tells_each_attempt_the_retry_and_the_giving_up() {
        let dir = tempfile::tempdir().unwrap();
        let relative = "1970-01-01/c/s/PRE/segment_0.wav";
        let file = dir.path().join(relative);
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(&file, b"RIFF").unwrap();
        let lines = Arc::new(crate::log::Collect::default());
        let mut config = unreachable(1);
        config.log = Logger::new(lines.clone());
        let uploads = Uploads::new(config, |_| ()).unwrap();
        uploads.enqueue(file.clone(), relative);
        wait_until_idle(&[&uploads]);
        use crate::log::Level::{Debug, Info, Warning};
        let lines = lines.lines();
        let levels: Vec<_> = lines.iter().map(|l| l.0).collect();
        assert_eq!(levels, [Debug, Info, Debug, Warning], "{lines:#?}");
        let key = format!("p/{relative}");
        assert_eq!(
            lines[0].1,
            format!(
                "Uploading {} to bucket rec as {key}: 4 bytes, attempt 1",
                file.display()
            )
        );
        assert!(
            lines[1]
                .1
                .contains("trying again in 500ms (attempt 2 of 2)")
        );
        assert!(lines[2].1.ends_with("attempt 2"));
        assert!(
            lines[3].1.starts_with(&format!(
                "Gave up uploading {} as {key} after 2 attempts: ",
                file.display()
            )),
            "{lines:#?}"
        );
    }

    #[test]
    fn a_backlog_scan_finds_only_segments_and_answers_every_request() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        let tap = base.join("1970-01-01/c/s/PRE");
        let other = base.join("1970-01-02/d%2F1/s/POST");
        for d in [&tap, &other] {
            fs::create_dir_all(d).unwrap();
        }
        let segments = [
            tap.join("segment_0.wav"),
            tap.join("segment_0-1.wav"),
            other.join("segment_86400000.wav"),
        ];
        for f in &segments {
            fs::write(f, b"RIFF").unwrap();
        }
        for junk in [
            "segment_5000.wav.part",
            "segment_5000.wav.recovering",
            "segment_10000.wav.uploaded",
            "notes.txt",
            "segment_x.wav",
        ] {
            fs::write(tap.join(junk), b"x").unwrap();
        }
        let config = unreachable(0);
        let (tx, rx) = mpsc::channel();
        let told = |name: &'static str| {
            let tx = tx.clone();
            move |r: UploadReport| tx.send((name, r.location)).unwrap()
        };
        // Three recorders of one base directory start together: the first scans, and the last
        // makes the scan that follows (the second's request, if it came while the first scan
        // ran, is answered by it).
        let a = Uploads::new(config.clone(), told("a")).unwrap();
        let b = Uploads::new(config.clone(), told("b")).unwrap();
        let c = Uploads::new(config, told("c")).unwrap();
        for u in [&a, &b, &c] {
            u.scan_backlog(base.to_owned());
        }
        wait_until_idle(&[&a, &b, &c]);
        let got: Vec<_> = rx.try_iter().collect();
        let mut expected = segments.to_vec();
        expected.sort();
        for name in ["a", "b", "c"] {
            let mut found: Vec<_> = got
                .iter()
                .filter(|g| g.0 == name)
                .map(|g| g.1.clone())
                .collect();
            found.sort();
            if name == "b" && found.is_empty() {
                continue;
            }
            assert_eq!(found, expected, "{name}");
        }
        // Nothing but segments was touched.
        assert!(tap.join("segment_5000.wav.part").exists());
        assert!(tap.join("segment_10000.wav.uploaded").exists());
    }

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
}
