//! The writer: every byte of file IO of every recorder in the process happens here.
//!
//! A recorder opens a [`Recording`] and submits [`Command`]s to it (open a segment, append
//! samples or silence, close it). Submitting copies nothing and touches no file: the commands
//! wait in the recording's bounded queue until one of a small, fixed pool of writer threads,
//! shared by the whole process and started on first use, carries them out in order. Each
//! recording is served by at most one thread at a time, so its commands need no further locking,
//! and a thread serves the recordings that have work in turn, so a thousand recorders do not mean
//! a thousand threads. What happened to each segment comes back as [`Report`]s through the
//! recording's callback, on a writer thread.
//!
//! A segment is written to `segment_<ms>.wav.part` as the audio arrives and flushed at least
//! every 200 ms; on close its header is finalised and it is published as `segment_<ms>.wav`
//! with a hard link (or a rename where links are not supported), never replacing an existing
//! file.

mod files;
pub mod layout;

use std::collections::VecDeque;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard};
use std::thread;

use files::Files;
pub use layout::Identity;

/// Bytes of audio one recording may have waiting for the writer (about 32 s at 16 kHz).
pub const QUEUE_LIMIT_BYTES: usize = 1 << 20;

/// Which segment a file holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentSpec {
    /// Call, stage and tap.
    pub identity: Arc<Identity>,
    /// Start of the bucket, in milliseconds on the recorder's timeline.
    pub bucket_ms: u64,
    /// Samples per second.
    pub rate: u32,
}

/// One step of a recording, carried out in order.
#[derive(Debug)]
pub enum Command {
    /// Start the file of a segment; a segment still open is abandoned as it is.
    Open(SegmentSpec),
    /// Append samples to the open segment.
    Samples(Vec<i16>),
    /// Append this many samples of silence to the open segment.
    Silence(u64),
    /// This many samples of the stream were dropped: nothing is written, the number is
    /// reported with the segment open now, or else the next one.
    Dropped(u64),
    /// Finalise the open segment and publish it under its final name.
    Close,
}

impl Command {
    fn queued_bytes(&self) -> usize {
        match self {
            Command::Samples(s) => s.len() * 2,
            _ => 0,
        }
    }
}

/// A segment that was written and published.
#[derive(Debug, Clone)]
pub struct SegmentWritten {
    /// Which segment.
    pub spec: SegmentSpec,
    /// Where the file is.
    pub location: PathBuf,
    /// 0 for `segment_<ms>.wav`, `n` for a further file `segment_<ms>-<n>.wav` of the bucket.
    pub file_index: u32,
    /// Samples in the file.
    pub samples: u64,
    /// Samples of the stream in the file.
    pub data_samples: u64,
    /// Samples of silence in the file.
    pub silence_samples: u64,
    /// Samples of the stream dropped while the segment was open (overlaps, or a full queue
    /// in a live pipeline, whose samples became silence).
    pub dropped_samples: u64,
}

/// What happened to a segment.
#[derive(Debug)]
pub enum Report {
    /// The segment's file is complete under its final name.
    Written(SegmentWritten),
    /// The segment could not be written and was given up.
    Failed {
        /// Which segment.
        spec: SegmentSpec,
        /// The path the failure concerns.
        location: PathBuf,
        /// What the operating system said.
        error: io::Error,
    },
}

/// What [`Recording::submit`] does when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Do not wait: the samples of the batch become silence of the same length, so every file
    /// keeps its exact length, and are counted as dropped. For live pipelines.
    Drop,
    /// Wait until the writer has made room. For pipelines that run faster than real time.
    Wait,
}

/// A wait was interrupted by [`Recording::set_unblocked`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unblocked;

type ReportFn = Box<dyn Fn(Report) + Send + Sync>;

#[derive(Default)]
struct Queue {
    commands: VecDeque<Command>,
    /// Sample bytes queued or being written.
    bytes: usize,
    /// The recording is in the pool's ready list or being served by a thread.
    scheduled: bool,
    unblocked: bool,
}

struct Inbox {
    queue: Mutex<Queue>,
    /// Signalled whenever the writer has done work: room was made, or the queue ran dry.
    progress: Condvar,
    /// Only ever locked by the one thread serving the recording.
    files: Mutex<Files>,
    reports: ReportFn,
    limit: usize,
}

/// A recorder's connection to the writer. Dropping it abandons what was not waited for.
pub struct Recording {
    inbox: Arc<Inbox>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves consistent data behind: carry on.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Recording {
    /// A recording writing under `base_dir` and telling what became of each segment to
    /// `reports`, which is called on a writer thread with no lock held.
    pub fn new(base_dir: PathBuf, reports: impl Fn(Report) + Send + Sync + 'static) -> Self {
        Recording {
            inbox: Arc::new(Inbox {
                queue: Mutex::new(Queue::default()),
                progress: Condvar::new(),
                files: Mutex::new(Files::new(base_dir)),
                reports: Box::new(reports),
                limit: QUEUE_LIMIT_BYTES,
            }),
        }
    }

    /// Queues `batch` (leaving it empty) for the writer. Never touches a file.
    ///
    /// A batch that holds no samples is always accepted at once. Otherwise, if the queue would
    /// exceed its limit, `overflow` decides; a wait ends early when the recording is unblocked,
    /// and the batch is queued all the same so that no segment loses its open or close. Returns
    /// how many samples were dropped.
    pub fn submit(&self, batch: &mut Vec<Command>, overflow: Overflow) -> u64 {
        let mut bytes: usize = batch.iter().map(Command::queued_bytes).sum();
        let mut dropped = 0;
        let limit = self.inbox.limit;
        let mut queue = lock(&self.inbox.queue);
        let full = |q: &Queue, bytes: usize| q.bytes > 0 && q.bytes + bytes > limit;
        if bytes > 0 && full(&queue, bytes) {
            match overflow {
                Overflow::Drop => {
                    let mut kept = Vec::with_capacity(batch.len() + 4);
                    for command in batch.drain(..) {
                        match command {
                            Command::Samples(s) => {
                                let n = s.len() as u64;
                                dropped += n;
                                kept.extend([Command::Silence(n), Command::Dropped(n)]);
                            }
                            other => kept.push(other),
                        }
                    }
                    *batch = kept;
                    bytes = 0;
                }
                Overflow::Wait => {
                    while full(&queue, bytes) && !queue.unblocked {
                        queue = self
                            .inbox
                            .progress
                            .wait(queue)
                            .unwrap_or_else(|e| e.into_inner());
                    }
                }
            }
        }
        queue.commands.extend(batch.drain(..));
        queue.bytes += bytes;
        let schedule = !queue.scheduled;
        queue.scheduled = true;
        drop(queue);
        if schedule {
            POOL.schedule(self.inbox.clone());
        }
        dropped
    }

    /// Waits until the writer has carried out every submitted command and delivered its
    /// reports. With `interruptible`, returns `Err` as soon as the recording is unblocked.
    pub fn wait_idle(&self, interruptible: bool) -> Result<(), Unblocked> {
        let mut queue = lock(&self.inbox.queue);
        while queue.scheduled {
            if interruptible && queue.unblocked {
                return Err(Unblocked);
            }
            queue = self
                .inbox
                .progress
                .wait(queue)
                .unwrap_or_else(|e| e.into_inner());
        }
        Ok(())
    }

    /// While set, waiting submissions and interruptible waits return at once (for flushing).
    pub fn set_unblocked(&self, unblocked: bool) {
        lock(&self.inbox.queue).unblocked = unblocked;
        self.inbox.progress.notify_all();
    }
}

/// Checks, before recording starts, that `base_dir` exists or can be created and that files can
/// be created in it. Leaves nothing behind but the directory itself.
pub fn check_base_dir(base_dir: &Path) -> io::Result<()> {
    fs::create_dir_all(base_dir)?;
    let probe = base_dir.join(format!(".segmentrecorder-probe-{}", std::process::id()));
    fs::File::create(&probe)?;
    fs::remove_file(&probe)
}

/// The process-wide writer threads and the recordings waiting for one of them.
struct Pool {
    ready: Mutex<VecDeque<Arc<Inbox>>>,
    wake: Condvar,
}

static POOL: LazyLock<Pool> = LazyLock::new(|| {
    let threads = thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4));
    for i in 0..threads {
        thread::Builder::new()
            .name(format!("segrec-writer-{i}"))
            .spawn(|| POOL.serve())
            .expect("cannot start a writer thread");
    }
    Pool {
        ready: Mutex::new(VecDeque::new()),
        wake: Condvar::new(),
    }
});

impl Pool {
    fn schedule(&self, inbox: Arc<Inbox>) {
        lock(&self.ready).push_back(inbox);
        self.wake.notify_one();
    }

    fn next(&self) -> Arc<Inbox> {
        let mut ready = lock(&self.ready);
        loop {
            if let Some(inbox) = ready.pop_front() {
                return inbox;
            }
            ready = self.wake.wait(ready).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn serve(&self) {
        let mut reports = Vec::new();
        loop {
            let inbox = self.next();
            STALL.wait_while_stalled();
            let (commands, bytes) = {
                let mut queue = lock(&inbox.queue);
                let commands = std::mem::take(&mut queue.commands);
                let bytes = commands.iter().map(Command::queued_bytes).sum::<usize>();
                (commands, bytes)
            };
            {
                let mut files = lock(&inbox.files);
                for command in commands {
                    files.apply(command, &mut reports);
                }
                files.flush_if_due(&mut reports);
            }
            for report in reports.drain(..) {
                (inbox.reports)(report);
            }
            let more = {
                let mut queue = lock(&inbox.queue);
                queue.bytes -= bytes;
                queue.scheduled = !queue.commands.is_empty();
                queue.scheduled
            };
            inbox.progress.notify_all();
            if more {
                self.schedule(inbox);
            }
        }
    }
}

/// Holds every writer thread before its next batch, for tests and benchmarks that need a writer
/// slower than the audio. Costs one atomic load per batch when unused.
struct Stall {
    on: AtomicBool,
    lock: Mutex<()>,
    released: Condvar,
}

static STALL: Stall = Stall {
    on: AtomicBool::new(false),
    lock: Mutex::new(()),
    released: Condvar::new(),
};

impl Stall {
    fn wait_while_stalled(&self) {
        if self.on.load(Ordering::Acquire) {
            let mut guard = lock(&self.lock);
            while self.on.load(Ordering::Acquire) {
                guard = self.released.wait(guard).unwrap_or_else(|e| e.into_inner());
            }
        }
    }
}

/// Stalls (`true`) or releases (`false`) every writer thread of the process, as a disk that
/// stops answering would. For tests and benchmarks only.
#[doc(hidden)]
pub fn stall_writer_for_tests(on: bool) {
    let _guard = lock(&STALL.lock);
    STALL.on.store(on, Ordering::Release);
    STALL.released.notify_all();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn identity() -> Arc<Identity> {
        Arc::new(Identity::new("call", "stt", "PRE").unwrap())
    }

    fn recording(dir: &Path) -> (Recording, mpsc::Receiver<Report>) {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let rec = Recording::new(dir.to_owned(), move |r| {
            let _ = lock(&tx).send(r);
        });
        (rec, rx)
    }

    fn segment(identity: &Arc<Identity>, bucket_ms: u64, samples: &[i16]) -> Vec<Command> {
        vec![
            Command::Open(SegmentSpec {
                identity: identity.clone(),
                bucket_ms,
                rate: 8_000,
            }),
            Command::Silence(3),
            Command::Samples(samples.to_vec()),
            Command::Close,
        ]
    }

    fn read(path: &Path) -> Vec<i16> {
        let mut reader = hound::WavReader::open(path).unwrap();
        assert_eq!(reader.spec().sample_rate, 8_000);
        assert_eq!(reader.spec().channels, 1);
        reader.samples::<i16>().map(Result::unwrap).collect()
    }

    #[test]
    fn a_segment_is_written_and_published() {
        let dir = tempfile::tempdir().unwrap();
        let (rec, rx) = recording(dir.path());
        let id = identity();
        rec.submit(&mut segment(&id, 5_000, &[1, -2, 3]), Overflow::Wait);
        rec.wait_idle(false).unwrap();
        let Report::Written(w) = rx.try_recv().unwrap() else {
            panic!("not written")
        };
        assert_eq!(
            w.location,
            dir.path().join("1970-01-01/call/stt/PRE/segment_5000.wav")
        );
        assert_eq!((w.samples, w.data_samples, w.silence_samples), (6, 3, 3));
        assert_eq!(read(&w.location), vec![0, 0, 0, 1, -2, 3]);
        assert!(!w.location.with_extension("wav.part").exists());
    }

    #[test]
    fn an_existing_file_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let (rec, rx) = recording(dir.path());
        let id = identity();
        rec.submit(&mut segment(&id, 0, &[7]), Overflow::Wait);
        rec.submit(&mut segment(&id, 0, &[8]), Overflow::Wait);
        rec.wait_idle(false).unwrap();
        let locations: Vec<PathBuf> = rx
            .try_iter()
            .map(|r| match r {
                Report::Written(w) => w.location,
                Report::Failed { error, .. } => panic!("{error}"),
            })
            .collect();
        let names: Vec<_> = locations
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["segment_0.wav", "segment_0-1.wav"]);
        assert_eq!(read(&locations[0]), vec![0, 0, 0, 7]);
        assert_eq!(read(&locations[1]), vec![0, 0, 0, 8]);
    }

    #[test]
    fn an_unwritable_directory_is_reported_and_skipped() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the date directory should be.
        fs::write(dir.path().join("1970-01-01"), b"").unwrap();
        let (rec, rx) = recording(dir.path());
        rec.submit(&mut segment(&identity(), 0, &[1]), Overflow::Wait);
        rec.wait_idle(false).unwrap();
        let reports: Vec<_> = rx.try_iter().collect();
        assert_eq!(reports.len(), 1);
        assert!(matches!(&reports[0], Report::Failed { location, .. }
            if location.starts_with(dir.path().join("1970-01-01"))));
    }

    #[test]
    fn the_base_dir_check_names_unusable_paths() {
        let dir = tempfile::tempdir().unwrap();
        check_base_dir(&dir.path().join("a/b")).unwrap();
        assert_eq!(fs::read_dir(dir.path().join("a/b")).unwrap().count(), 0);
        fs::write(dir.path().join("file"), b"").unwrap();
        assert!(check_base_dir(&dir.path().join("file/sub")).is_err());
    }
}
