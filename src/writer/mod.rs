//! The writer: every byte of file IO of every recorder in the process happens here.
//!
//! A recorder opens a [`Recording`] and submits [`Step`]s to it (open a segment, append
//! samples or silence, close it). Submitting touches no file: it copies the samples into the
//! recording's bounded queue, where they wait until one of a small, fixed pool of writer threads,
//! shared by the whole process and started on first use, carries them out in order. Each
//! recording is served by at most one thread at a time, so its commands need no further locking,
//! and a thread serves the recordings that have work in turn, so a thousand recorders do not mean
//! a thousand threads. What happened to each segment comes back as [`Report`]s through the
//! recording's callback, on a writer thread.
//!
//! A segment is written to `segment_<ms>.wav.part` as the audio arrives, at least every flush
//! interval; on close its header is finalised and it is published as `segment_<ms>.wav` with a
//! hard link (or a rename where links are not supported), never replacing an existing file.
//! When the disk fails, the failed operation is tried again with a growing backoff while the
//! recording's later commands wait in its queue; once the failure episode has lasted the retry
//! time, the segment is given up, and so is each further one that fails until writing works
//! again, and the recording goes on with the next one. The threads keep timers for both: a due
//! flush or retry brings the recording back to a thread even when no new command arrives.
//!
//! The threads are a [`Pool`]: a recording that has work becomes a task, and so does each of
//! its timers. A panic while a recording is served (in a write or in its report callback) is
//! caught: the recording's open segment is abandoned to recovery and the recording is served
//! again as usual, so no wait hangs on it.
//!
//! Mutex order: a recording's `files`, then its `queue`, then its `stats`, then the pool's own
//! locks ([`Level`] says so and debug builds check it). A timer that comes due runs as a task,
//! after the pool has let go of its lock, so no pool lock is ever held while a recording's is
//! taken.

mod files;
pub mod levels;
pub mod recover;
pub mod size;
#[cfg(feature = "test-seams")]
mod stall;

use std::cell::Cell;
use std::collections::VecDeque;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, LazyLock};
use std::thread;
use std::time::{Duration, Instant};

use crate::layout::Identity;
use crate::lock_order::{Level, OrderedMutex};
use crate::log::Logger;
use crate::pool::Pool;
use files::Files;
pub use levels::Measured;
pub use recover::Recovered;
#[cfg(feature = "test-seams")]
pub use stall::stall_writer_for_tests;

/// How a recording writes.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the layout starts.
    pub base_dir: PathBuf,
    /// Samples reach the operating system at least this often.
    pub flush_interval: Duration,
    /// Sync file and directory to stable storage before a segment is reported.
    pub fsync: bool,
    /// How long failing operations are tried again, from the first failure of an episode,
    /// before segments are given up.
    pub retry_time: Duration,
    /// 10 ms frames above this RMS level count as voiced.
    pub voice_threshold_dbfs: f64,
    /// Where the writer tells what it does with the recording's files.
    pub log: Logger,
}

/// Which segment a file holds.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentSpec {
    /// Call, stage and tap.
    pub identity: Arc<Identity>,
    /// Start of the bucket, in milliseconds on the recorder's timeline.
    pub bucket_ms: u64,
    /// Samples per second.
    pub rate: u32,
    /// Running time of the bucket's first sample, if known.
    pub start_running_time_ns: Option<u64>,
    /// UTC of the bucket's first sample in nanoseconds since the epoch, if known.
    pub start_utc_ns: Option<u64>,
}

/// One step of a recording, as a recorder submits it; carried out in order.
#[derive(Debug, Clone)]
pub enum Step {
    /// Start the file of a segment; a segment still open is abandoned as it is.
    Open(SegmentSpec),
    /// Append samples `offset..offset + len` of the S16LE data submitted with the steps.
    Data { offset: usize, len: usize },
    /// Append this many samples of silence to the open segment.
    Silence(u64),
    /// This many samples of the stream were dropped: nothing is written, the number is
    /// reported with the segment open now, or else the next one.
    Dropped(u64),
    /// Finalise the open segment and publish it under its final name.
    Close,
    /// Recover the `.part` files a dead process left in this identity's directories.
    Recover(Arc<Identity>),
}

/// A step as it waits in a recording's queue, its samples copied in.
#[derive(Debug)]
enum Command {
    /// Start the file of a segment; a segment still open is abandoned as it is.
    Open(SegmentSpec),
    /// Append samples to the open segment.
    Samples(Vec<i16>),
    /// Append this many samples of silence to the open segment.
    Silence(u64),
    /// This many samples of the stream were dropped: nothing is written, the number is
    /// reported with the segment open now, or else the next one.
    Dropped(u64),
    /// This many samples were dropped because the queue was full: they are written as silence
    /// (files keep their length) and reported as dropped.
    Overflowed(u64),
    /// Finalise the open segment and publish it under its final name.
    Close,
    /// Recover the `.part` files a dead process left in this identity's directories.
    Recover(Arc<Identity>),
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
    /// Samples of the stream dropped while the segment was open (overlaps, or a full queue,
    /// whose samples became silence).
    pub dropped_samples: u64,
    /// Levels of the file's samples.
    pub levels: Measured,
}

/// A segment whose file was opened.
#[derive(Debug, Clone)]
pub struct SegmentOpened {
    /// Which segment.
    pub spec: SegmentSpec,
    /// The name it is to be published under, the first of its bucket free when it was opened.
    /// Publishing never replaces a file: should another process take that name meanwhile, the
    /// segment is published under the next free one, which its [`Report::Written`] tells.
    pub location: PathBuf,
    /// The `.part` it is written to until then.
    pub part: PathBuf,
    /// The file index of `location`.
    pub file_index: u32,
}

/// What happened to a segment.
#[derive(Debug)]
pub enum Report {
    /// The segment's file was opened; the segment's [`Report::Written`] or [`Report::Failed`]
    /// follows.
    Opened(SegmentOpened),
    /// The segment's file is complete under its final name.
    Written(SegmentWritten),
    /// An operation failed; it is tried again for up to `retry_for`, and later commands wait.
    Retrying {
        /// Which segment, if one is concerned.
        spec: Option<SegmentSpec>,
        /// The path the failure concerns.
        location: PathBuf,
        /// What the operating system said.
        error: io::Error,
        /// How long it is tried again.
        retry_for: Duration,
    },
    /// A failed operation succeeded after `after`.
    Resumed {
        /// Which segment, if one is concerned.
        spec: Option<SegmentSpec>,
        /// How long it failed.
        after: Duration,
    },
    /// The segment could not be written in the retry time and was given up.
    Failed {
        /// Which segment, if one is concerned.
        spec: Option<SegmentSpec>,
        /// The path the failure concerns.
        location: PathBuf,
        /// What the operating system said.
        error: io::Error,
        /// The file left with what did reach the disk, and how many samples it holds: its
        /// `.part`, closed and unlocked for recovery (or, should only the sync of its
        /// directory have failed, the published file).
        kept: Option<(PathBuf, u64)>,
    },
    /// A `.part` left by a dead process was made whole and published.
    Recovered(Recovered),
    /// A `.part` left by a dead process could not be recovered.
    RecoveryFailed {
        /// The `.part`.
        location: PathBuf,
        /// What went wrong.
        error: io::Error,
    },
}

/// What [`Recording::submit`] does when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Do not wait: the samples of the new batch become silence of the same length (files
    /// keep their exact length) and are counted as dropped.
    DropNewest,
    /// Do not wait: the oldest queued samples become silence until the new batch fits.
    DropOldest,
    /// Wait until the writer has made room.
    Wait,
}

/// What became of a submission.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Submitted {
    /// Samples dropped because the queue was full.
    pub dropped: u64,
    /// At most half the queue's limit waits for the writer now: it is keeping up.
    pub keeping_up: bool,
}

/// A wait was interrupted by [`Recording::set_unblocked`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unblocked;

/// Why [`Recording::wait_idle_within`] returned before the writer was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitEnd {
    /// The recording was unblocked (a flush).
    Unblocked,
    /// The writer made no progress on this recording for the patience given (a disk that
    /// does not answer): this many sample bytes were still waiting.
    NoProgress { queued_bytes: u64 },
    /// Called on the writer thread that serves this recording (from one of its reports, as an
    /// application's bus sync handler is): the wait would wait for itself. What was submitted
    /// is written once the report's callback returns.
    OnItsWriter,
}

/// Counters of one recording's writer side.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Segments published.
    pub segments_written: u64,
    /// Segments given up after the retry time.
    pub segments_failed: u64,
    /// `.part` files of dead processes recovered.
    pub segments_recovered: u64,
    /// Sample bytes written to segment files.
    pub bytes_written: u64,
    /// Samples of the stream in segments that were given up that never reached the disk.
    pub samples_lost: u64,
    /// Operations that failed, retries included.
    pub write_errors: u64,
    /// The last failure: path and operating-system error.
    pub last_error: Option<String>,
    /// Samples dropped because the queue was full.
    pub samples_dropped_overflow: u64,
    /// Sample bytes waiting for the writer now.
    pub queue_bytes: u64,
    /// The most sample bytes that ever waited.
    pub queue_high_water: u64,
}

type ReportFn = Box<dyn Fn(Report) + Send + Sync>;

#[derive(Default)]
struct Queue {
    commands: VecDeque<Command>,
    /// Sample bytes queued or being written.
    bytes: usize,
    high_water: usize,
    limit: usize,
    dropped: u64,
    /// In the pool's ready list or being served by a thread.
    scheduled: bool,
    /// Times a thread finished serving the recording: the writer's progress, for waits.
    served: u64,
    /// Waiting for a retry timer: no thread may serve it before.
    parked: bool,
    /// The deadline of this recording's pending timer, if any.
    timer: Option<Instant>,
    unblocked: bool,
    /// Sample vectors the writer is done with, kept for new samples: memory that stays mapped
    /// costs no page faults on the streaming thread.
    spare: Vec<Vec<i16>>,
}

impl Queue {
    fn full(&self, bytes: usize) -> bool {
        self.bytes > 0 && self.bytes + bytes > self.limit
    }

    /// Queues `command`, adding silence to silence queued last.
    fn push(&mut self, command: Command) {
        match (self.commands.back_mut(), command) {
            (Some(Command::Silence(last)), Command::Silence(more)) => *last += more,
            (_, command) => self.commands.push_back(command),
        }
    }

    /// Queues S16LE samples, appended to the samples queued last where there is room, so that
    /// buffers do not each cost an allocation and a thread has fewer, larger pieces to write.
    fn push_samples(&mut self, mut bytes: &[u8]) {
        while bytes.len() >= 2 {
            let room = match self.commands.back() {
                Some(Command::Samples(last)) => COALESCE_SAMPLES - last.len(),
                _ => 0,
            };
            if room == 0 {
                let fresh = self
                    .spare
                    .pop()
                    .unwrap_or_else(|| Vec::with_capacity(COALESCE_SAMPLES));
                self.commands.push_back(Command::Samples(fresh));
                continue;
            }
            let n = room.min(bytes.len() / 2);
            if let Some(Command::Samples(last)) = self.commands.back_mut() {
                extend_from_le(last, &bytes[..n * 2]);
            }
            bytes = &bytes[n * 2..];
        }
    }
}

/// Appends the S16LE samples of `bytes` (of an even length) to `samples`. Extended in place
/// rather than zeroed and then overwritten, and copied as the bytes they are where the target
/// is little-endian: this runs for every buffer of every recorder, on the streaming thread, and
/// for every file a pair analysis reads.
#[cfg(target_endian = "little")]
pub(crate) fn extend_from_le(samples: &mut Vec<i16>, bytes: &[u8]) {
    let n = bytes.len() / 2;
    samples.reserve(n);
    // SAFETY: `reserve` made room for `n` more samples after the `len` there are. On this
    // target an `i16` is its two bytes in little-endian order and any two bytes are a valid
    // `i16`; the copy is bytewise, so the bytes need no alignment. The length grows only once
    // the samples are written.
    unsafe {
        std::ptr::copy_nonoverlapping(
            bytes.as_ptr(),
            samples.as_mut_ptr().add(samples.len()).cast::<u8>(),
            n * 2,
        );
        samples.set_len(samples.len() + n);
    }
}

#[cfg(target_endian = "big")]
pub(crate) fn extend_from_le(samples: &mut Vec<i16>, bytes: &[u8]) {
    samples.extend(
        bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]])),
    );
}

/// How a submission brings a writer thread.
enum Wake {
    No,
    Now,
    At(Instant),
}

/// Sample bytes waiting that wake a writer thread at once (when the queue limit allows).
const EAGER_BYTES: usize = 64 * 1024;

/// Samples gathered into one queued command at most.
const COALESCE_SAMPLES: usize = 4_096;

/// Emptied sample vectors one recording keeps for reuse.
const SPARE_VECTORS: usize = 1;

struct Inbox {
    queue: OrderedMutex<Queue>,
    /// Audio waits in the queue at most this long before a thread writes it.
    flush_interval: Duration,
    /// Signalled whenever the writer has done work: room was made, or the queue ran dry.
    progress: Condvar,
    /// Only ever locked by the one thread serving the recording.
    files: OrderedMutex<Files>,
    stats: OrderedMutex<WriterStats>,
    reports: ReportFn,
}

/// A recorder's connection to the writer; its clones are handles to the same recording.
/// Dropping the last one abandons what was not waited for.
#[derive(Clone)]
pub struct Recording {
    inbox: Arc<Inbox>,
}

impl Recording {
    /// A recording writing as `config` says, with at most `queue_limit` sample bytes waiting,
    /// and telling what became of each segment to `reports`, which is called on a writer
    /// thread with no lock held. Starts the writer threads if they are not running yet: an
    /// error if the system refuses a thread.
    pub fn new(
        config: Config,
        queue_limit: usize,
        reports: impl Fn(Report) + Send + Sync + 'static,
    ) -> io::Result<Self> {
        WRITERS.ensure_threads(writer_threads())?;
        Ok(Recording {
            inbox: Arc::new(Inbox {
                queue: OrderedMutex::new(
                    Level::WriterQueue,
                    Queue {
                        limit: queue_limit,
                        ..Queue::default()
                    },
                ),
                flush_interval: config.flush_interval,
                progress: Condvar::new(),
                files: OrderedMutex::new(Level::WriterFiles, Files::new(config)),
                stats: OrderedMutex::new(Level::WriterStats, WriterStats::default()),
                reports: Box::new(reports),
            }),
        })
    }

    /// Sets how many sample bytes may wait for the writer.
    pub fn set_queue_limit(&self, bytes: usize) {
        self.inbox.queue.lock().limit = bytes;
        self.inbox.progress.notify_all();
    }

    /// Queues `steps` (leaving the vector empty) for the writer, copying the samples they
    /// take from `data` (S16LE). Never touches a file.
    ///
    /// Steps that hold no samples are always accepted at once. Otherwise, if the queue would
    /// exceed its limit, `overflow` decides; a wait ends early when the recording is unblocked,
    /// and the steps are queued all the same so that no segment loses its open or close.
    /// Tells how many samples were dropped, and whether the writer is keeping up.
    pub fn submit(&self, steps: &mut Vec<Step>, data: &[u8], overflow: Overflow) -> Submitted {
        let bytes: usize = steps
            .iter()
            .map(|s| match s {
                Step::Data { len, .. } => len * 2,
                _ => 0,
            })
            .sum();
        let mut dropped = 0;
        let mut drop_new = false;
        let mut queue = self.inbox.queue.lock();
        if bytes > 0 && queue.full(bytes) {
            match overflow {
                Overflow::DropNewest => drop_new = true,
                Overflow::DropOldest => {
                    // Commands being written are out of reach; those still queued are not.
                    let mut excess = queue.bytes + bytes - queue.limit;
                    let mut freed = 0;
                    for command in queue.commands.iter_mut() {
                        if excess == 0 {
                            break;
                        }
                        if let Command::Samples(s) = command {
                            let n = s.len();
                            *command = Command::Overflowed(n as u64);
                            freed += n * 2;
                            excess = excess.saturating_sub(n * 2);
                        }
                    }
                    queue.bytes -= freed;
                    dropped += freed as u64 / 2;
                    drop_new = excess > 0;
                }
                Overflow::Wait => {
                    while queue.full(bytes) && !queue.unblocked {
                        queue = queue.wait(&self.inbox.progress);
                    }
                }
            }
        }
        let mut urgent = false;
        for step in steps.drain(..) {
            match step {
                Step::Data { len, .. } if drop_new => {
                    dropped += len as u64;
                    queue.push(Command::Overflowed(len as u64));
                }
                Step::Data { offset, len } => {
                    let end = (offset + len) * 2;
                    queue.push_samples(data.get(offset * 2..end).unwrap_or_default());
                }
                Step::Open(spec) => queue.push(Command::Open(spec)),
                Step::Silence(n) => queue.push(Command::Silence(n)),
                Step::Dropped(n) => queue.push(Command::Dropped(n)),
                Step::Close => queue.push(Command::Close),
                Step::Recover(identity) => {
                    urgent = true;
                    queue.push(Command::Recover(identity));
                }
            }
        }
        if !drop_new {
            queue.bytes += bytes;
        }
        queue.high_water = queue.high_water.max(queue.bytes);
        queue.dropped += dropped;
        let keeping_up = queue.bytes <= queue.limit / 2;
        // A thread is woken when much audio waits or a recovery is asked for; otherwise a
        // timer brings it after the flush interval, so that a thread writes a recording's audio
        // in a few calls a second instead of one per buffer.
        let wake = if queue.scheduled {
            Wake::No
        } else if urgent || queue.bytes >= EAGER_BYTES.min(queue.limit / 2) {
            queue.scheduled = true;
            queue.timer = None;
            Wake::Now
        } else if queue.timer.is_none() {
            let at = flush_due(Instant::now(), self.inbox.flush_interval);
            queue.timer = Some(at);
            Wake::At(at)
        } else {
            Wake::No
        };
        drop(queue);
        match wake {
            Wake::Now => schedule(self.inbox.clone()),
            Wake::At(at) => arm(&self.inbox, at),
            Wake::No => (),
        }
        Submitted {
            dropped,
            keeping_up,
        }
    }

    /// Waits until the writer has carried out every submitted command and delivered its
    /// reports. With `interruptible`, returns `Err` as soon as the recording is unblocked.
    pub fn wait_idle(&self, interruptible: bool) -> Result<(), Unblocked> {
        self.wait(interruptible, None).map_err(|_| Unblocked)
    }

    /// As [`Recording::wait_idle`], but gives up once the writer has made no progress on this
    /// recording for `patience`: a slow disk is waited for as long as it moves, a hung one
    /// is not. What is still queued stays queued, and is written if the disk answers while
    /// the process lives.
    pub fn wait_idle_within(&self, interruptible: bool, patience: Duration) -> Result<(), WaitEnd> {
        self.wait(interruptible, Some(patience))
    }

    fn wait(&self, interruptible: bool, patience: Option<Duration>) -> Result<(), WaitEnd> {
        if SERVING.get() == Arc::as_ptr(&self.inbox) {
            return Err(WaitEnd::OnItsWriter);
        }
        let mut queue = self.inbox.queue.lock();
        if !queue.scheduled && !queue.commands.is_empty() {
            // Queued audio waits for its timer: have it written now.
            queue.scheduled = true;
            queue.timer = None;
            schedule(self.inbox.clone());
        }
        let (mut served, mut since) = (queue.served, Instant::now());
        while queue.scheduled {
            if interruptible && queue.unblocked {
                return Err(WaitEnd::Unblocked);
            }
            let Some(patience) = patience else {
                queue = queue.wait(&self.inbox.progress);
                continue;
            };
            if queue.served != served {
                (served, since) = (queue.served, Instant::now());
            }
            match patience.checked_sub(since.elapsed()) {
                Some(left) if !left.is_zero() => {
                    queue = queue.wait_timeout(&self.inbox.progress, left);
                }
                _ => {
                    return Err(WaitEnd::NoProgress {
                        queued_bytes: queue.bytes as u64,
                    });
                }
            }
        }
        Ok(())
    }

    /// While set, waiting submissions and interruptible waits return at once (for flushing).
    pub fn set_unblocked(&self, unblocked: bool) {
        self.inbox.queue.lock().unblocked = unblocked;
        self.inbox.progress.notify_all();
    }

    /// The counters of the writer side, and the queue's.
    pub fn stats(&self) -> WriterStats {
        let mut stats = self.inbox.stats.lock().clone();
        let queue = self.inbox.queue.lock();
        stats.samples_dropped_overflow = queue.dropped;
        stats.queue_bytes = queue.bytes as u64;
        stats.queue_high_water = queue.high_water as u64;
        stats
    }
}

/// Checks, before recording starts, that `base_dir` exists or can be created and that files can
/// be created in it. Leaves nothing behind but the directory itself.
pub fn check_base_dir(base_dir: &Path) -> io::Result<()> {
    // Recorders start concurrently: each check gets a name of its own.
    static PROBES: AtomicU64 = AtomicU64::new(0);
    fs::create_dir_all(base_dir)?;
    let probe = base_dir.join(format!(
        ".segmentrecorder-probe-{}-{}",
        std::process::id(),
        PROBES.fetch_add(1, Ordering::Relaxed)
    ));
    fs::File::options()
        .write(true)
        .create_new(true)
        .open(&probe)?;
    fs::remove_file(&probe)
}

/// The process-wide writer threads; a spare one is added each time all of them are stuck on
/// disks that stopped answering, so that recordings on other disks go on.
static WRITERS: Pool = Pool::with_spares("segrec-writer", WRITER_SPARES);

/// When audio queued at `now` is to be written: within `interval`, on a tick shared by every
/// recording (an eighth of the interval, 1 to 25 ms), so that a writer thread wakes once for
/// all the recordings due at that tick instead of once for each. Never later than
/// `now + interval`: rounding is down.
fn flush_due(now: Instant, interval: Duration) -> Instant {
    static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);
    let tick = (interval / 8).clamp(Duration::from_millis(1), Duration::from_millis(25));
    let due = now + interval;
    let since = due.saturating_duration_since(*EPOCH);
    let tick_ns = tick.as_nanos();
    let rounded_ns = since.as_nanos() / tick_ns * tick_ns;
    let rounded = *EPOCH + Duration::from_nanos(u64::try_from(rounded_ns).unwrap_or(u64::MAX));
    // Rounded down, but never to now or before: a flush interval under the tick is kept.
    if rounded > now && rounded <= due {
        rounded
    } else {
        due
    }
}

/// Writer threads that may be added to those of [`writer_threads`] for hung disks.
const WRITER_SPARES: usize = 12;

/// Writer threads: two at least, so that one recording's slow disk does not hold up all
/// others, and no more than four, since the work is mostly waiting for the kernel.
fn writer_threads() -> usize {
    thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4))
}

/// Has a writer thread serve `inbox` (marked scheduled by the caller).
fn schedule(inbox: Arc<Inbox>) {
    WRITERS.run(move || serve(inbox));
}

/// Serves `inbox` on a writer thread: carries out its queued commands, delivers their reports,
/// and has it served again if more came meanwhile, or at its retry time.
fn serve(inbox: Arc<Inbox>) {
    #[cfg(feature = "test-seams")]
    stall::wait_while_stalled();
    let mut serving = Serving {
        inbox: &inbox,
        done: false,
    };
    SERVING.set(Arc::as_ptr(&inbox));
    let mut reports = Vec::new();
    let mut spare = Vec::new();
    let mut files = inbox.files.lock();
    let mut processed = 0;
    let mut stalled = files.retry(&mut reports).is_err();
    let mut commands = VecDeque::new();
    if !stalled {
        commands = std::mem::take(&mut inbox.queue.lock().commands);
        while let Some(command) = commands.pop_front() {
            processed += command.queued_bytes();
            if files.apply(command, &mut reports, &mut spare).is_err() {
                stalled = true;
                break;
            }
        }
        stalled = stalled || files.flush(&mut reports).is_err();
        if !commands.is_empty() {
            let mut queue = inbox.queue.lock();
            commands.append(&mut queue.commands);
            std::mem::swap(&mut queue.commands, &mut commands);
        }
    }
    let deadline = files.retry_at();
    *inbox.stats.lock() = files.stats.clone();
    drop(files);
    for report in reports.drain(..) {
        (inbox.reports)(report);
    }
    let (more, arm_at) = {
        let mut queue = inbox.queue.lock();
        queue.bytes -= processed;
        queue.served += 1;
        while queue.spare.len() < SPARE_VECTORS
            && let Some(v) = spare.pop()
        {
            queue.spare.push(v);
        }
        // The emptied queue goes back with its allocation, for the streaming thread not to
        // allocate a new one (and this thread free the old) every flush interval.
        if queue.commands.capacity() == 0 && commands.is_empty() {
            queue.commands = commands;
        }
        if stalled {
            queue.parked = true;
        } else {
            queue.scheduled = !queue.commands.is_empty();
        }
        let arm_at = deadline.filter(|&at| stalled && queue.timer.is_none_or(|t| at < t));
        if arm_at.is_some() {
            queue.timer = arm_at;
        }
        (queue.scheduled && !stalled, arm_at)
    };
    serving.done = true;
    drop(serving);
    inbox.progress.notify_all();
    if let Some(at) = arm_at {
        arm(&inbox, at);
    }
    if more {
        schedule(inbox);
    }
}

thread_local! {
    /// The recording this writer thread is serving, if any: a wait for it from here (a report
    /// callback) would wait for itself.
    static SERVING: Cell<*const Inbox> = const { Cell::new(std::ptr::null()) };
}

/// Has a thread look at `inbox` at `at`, for a due flush or retry.
fn arm(inbox: &Arc<Inbox>, at: Instant) {
    let inbox = Arc::downgrade(inbox);
    WRITERS.run_at(at, move || {
        if let Some(inbox) = inbox.upgrade()
            && fire(&inbox, at)
        {
            serve(inbox);
        }
    });
}

/// A timer of `inbox` went off: whether this thread should serve it now.
fn fire(inbox: &Inbox, at: Instant) -> bool {
    let mut queue = inbox.queue.lock();
    if queue.timer != Some(at) {
        // Replaced by an earlier timer, or already served.
        return false;
    }
    queue.timer = None;
    if queue.parked {
        queue.parked = false;
        return true;
    }
    if queue.scheduled {
        // Being served: the thread looks at the deadline when it is done.
        return false;
    }
    queue.scheduled = true;
    true
}

/// Puts a recording whose service a panic cut short (in a write or in a report callback) back
/// in order: what was being written is abandoned (its `.part` stays for recovery), and the
/// recording is no longer marked as served, so that waits return and later commands are served.
struct Serving<'a> {
    inbox: &'a Arc<Inbox>,
    done: bool,
}

impl Drop for Serving<'_> {
    fn drop(&mut self) {
        SERVING.set(std::ptr::null());
        if self.done {
            return;
        }
        self.inbox.files.lock().abandon();
        let mut queue = self.inbox.queue.lock();
        queue.bytes = queue.commands.iter().map(Command::queued_bytes).sum();
        queue.served += 1;
        queue.parked = false;
        queue.timer = None;
        queue.scheduled = !queue.commands.is_empty();
        let again = queue.scheduled;
        drop(queue);
        self.inbox.progress.notify_all();
        if again {
            schedule(self.inbox.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Mutex, MutexGuard, PoisonError, mpsc};

    fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
        m.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn identity() -> Arc<Identity> {
        Arc::new(Identity::new("call", "stt", "PRE").unwrap())
    }

    fn config(dir: &Path) -> Config {
        Config {
            base_dir: dir.to_owned(),
            flush_interval: Duration::from_millis(200),
            fsync: false,
            retry_time: Duration::from_millis(300),
            voice_threshold_dbfs: -45.0,
            log: Logger::none(),
        }
    }

    /// A recording whose reports, but those of segments opened, come out of the receiver.
    fn recording_with(config: Config) -> (Recording, mpsc::Receiver<Report>) {
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let rec = Recording::new(config, 1 << 20, move |r| {
            if !matches!(r, Report::Opened(_)) {
                let _ = lock(&tx).send(r);
            }
        })
        .unwrap();
        (rec, rx)
    }

    fn recording(dir: &Path) -> (Recording, mpsc::Receiver<Report>) {
        recording_with(config(dir))
    }

    fn spec(identity: &Arc<Identity>, bucket_ms: u64) -> SegmentSpec {
        SegmentSpec {
            identity: identity.clone(),
            bucket_ms,
            rate: 8_000,
            start_running_time_ns: None,
            start_utc_ns: None,
        }
    }

    fn le(samples: &[i16]) -> Vec<u8> {
        samples.iter().flat_map(|s| s.to_le_bytes()).collect()
    }

    /// Submits a segment of 3 samples of silence then `samples`.
    fn submit_segment(rec: &Recording, identity: &Arc<Identity>, bucket_ms: u64, samples: &[i16]) {
        let mut steps = vec![
            Step::Open(spec(identity, bucket_ms)),
            Step::Silence(3),
            Step::Data {
                offset: 0,
                len: samples.len(),
            },
            Step::Close,
        ];
        rec.submit(&mut steps, &le(samples), Overflow::Wait);
    }

    fn read(path: &Path) -> Vec<i16> {
        let mut reader = hound::WavReader::open(path).unwrap();
        assert_eq!(reader.spec().sample_rate, 8_000);
        assert_eq!(reader.spec().channels, 1);
        reader.samples::<i16>().map(Result::unwrap).collect()
    }

    #[test]
    fn flushes_fall_on_shared_ticks_and_never_later_than_the_interval() {
        let start = Instant::now();
        for interval_ms in [1u64, 5, 10, 200, 1_000] {
            let interval = Duration::from_millis(interval_ms);
            let mut dues = std::collections::BTreeSet::new();
            for i in 0..1_000u64 {
                let now = start + Duration::from_micros(i * 997);
                let due = flush_due(now, interval);
                assert!(due > now && due <= now + interval, "{interval_ms} ms, {i}");
                dues.insert(due);
            }
            if interval_ms >= 200 {
                // 1 s of recordings queueing at random moments: a few dozen wake-ups at most.
                assert!(
                    dues.len() <= 1_000 / 25 + 2,
                    "{interval_ms} ms: {}",
                    dues.len()
                );
            }
        }
    }

    #[test]
    fn a_segment_is_written_and_published() {
        let dir = tempfile::tempdir().unwrap();
        let (rec, rx) = recording(dir.path());
        let id = identity();
        submit_segment(&rec, &id, 5_000, &[1, -2, 3]);
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
        submit_segment(&rec, &id, 0, &[7]);
        submit_segment(&rec, &id, 0, &[8]);
        rec.wait_idle(false).unwrap();
        let locations: Vec<PathBuf> = rx
            .try_iter()
            .map(|r| match r {
                Report::Written(w) => w.location,
                other => panic!("{other:?}"),
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
    fn the_name_of_a_segment_uploaded_and_removed_is_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (rec, rx) = recording(dir.path());
        let id = identity();
        let tap = dir.path().join("1970-01-01/call/stt/PRE");
        fs::create_dir_all(&tap).unwrap();
        // Segment 0 of the bucket was uploaded and its file removed; -1 is still on disk.
        fs::write(tap.join("segment_0.wav.uploaded"), b"").unwrap();
        fs::write(tap.join("segment_0-1.wav"), b"keep").unwrap();
        submit_segment(&rec, &id, 0, &[7]);
        rec.wait_idle(false).unwrap();
        let Ok(Report::Written(w)) = rx.try_recv() else {
            panic!("not written")
        };
        assert_eq!(w.location, tap.join("segment_0-2.wav"));
        assert_eq!(w.file_index, 2);
        assert_eq!(read(&w.location), [0, 0, 0, 7]);
        assert!(!tap.join("segment_0.wav").exists());
        assert_eq!(fs::read(tap.join("segment_0-1.wav")).unwrap(), b"keep");
    }

    #[test]
    fn publishing_skips_a_name_marked_uploaded_after_its_part_was_named() {
        // The mark appears between the moment the `.part` got its name and the publish, as
        // when the uploader confirms and removes a segment of that name meanwhile.
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("segment_0.wav.part");
        fs::write(&part, b"audio").unwrap();
        fs::write(dir.path().join("segment_0.wav.uploaded"), b"").unwrap();
        let published = files::publish(&part, dir.path(), 0, 0).unwrap();
        assert_eq!(published.location, dir.path().join("segment_0-1.wav"));
        assert_eq!(published.file_index, 1);
        assert!(!dir.path().join("segment_0.wav").exists());
        assert!(!part.exists());
    }

    #[test]
    fn an_unwritable_directory_is_retried_then_given_up_and_recording_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the date directory should be.
        fs::write(dir.path().join("1970-01-01"), b"").unwrap();
        let (rec, rx) = recording(dir.path());
        let id = identity();
        // The retry time (300 ms) is the failure episode's, not each segment's.
        let started = Instant::now();
        for bucket in 0..10 {
            submit_segment(&rec, &id, bucket * 1_000, &[1]);
        }
        rec.wait_idle(false).unwrap();
        let took = started.elapsed();
        assert!(took < Duration::from_millis(300 + 700), "{took:?}");
        let reports: Vec<_> = rx.try_iter().collect();
        assert!(matches!(&reports[0], Report::Retrying { location, .. }
            if location.starts_with(dir.path().join("1970-01-01"))));
        assert_eq!(reports.len(), 11, "{reports:?}");
        assert!(
            reports[1..]
                .iter()
                .all(|r| matches!(r, Report::Failed { kept: None, .. })),
            "{reports:?}"
        );
        let stats = rec.stats();
        assert_eq!(stats.segments_failed, 10);
        assert_eq!(stats.samples_lost, 10);
        assert!(stats.write_errors >= 11);
        assert!(stats.last_error.unwrap().contains("1970-01-01"));

        // The disk recovers: the next segment is written, which ends the episode.
        fs::remove_file(dir.path().join("1970-01-01")).unwrap();
        submit_segment(&rec, &id, 10_000, &[2]);
        rec.wait_idle(false).unwrap();
        let reports: Vec<_> = rx.try_iter().collect();
        assert!(
            matches!(
                reports.as_slice(),
                [Report::Resumed { .. }, Report::Written(_)]
            ),
            "{reports:?}"
        );
        assert_eq!(rec.stats().segments_written, 1);

        // A new failure starts a new episode, with the whole retry time.
        fs::remove_dir_all(dir.path().join("1970-01-01")).unwrap();
        fs::write(dir.path().join("1970-01-01"), b"").unwrap();
        let started = Instant::now();
        submit_segment(&rec, &id, 11_000, &[3]);
        rec.wait_idle(false).unwrap();
        assert!(started.elapsed() >= Duration::from_millis(300));
        let reports: Vec<_> = rx.try_iter().collect();
        assert!(
            matches!(
                reports.as_slice(),
                [Report::Retrying { .. }, Report::Failed { .. }]
            ),
            "{reports:?}"
        );
    }

    #[test]
    fn a_failure_that_clears_within_the_retry_time_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("1970-01-01"), b"").unwrap();
        let mut config = config(dir.path());
        config.retry_time = Duration::from_secs(30);
        let (rec, rx) = recording_with(config);
        let id = identity();
        submit_segment(&rec, &id, 0, &[1, 2, 3]);
        // The first attempt fails; the segment waits for its retry.
        let Ok(Report::Retrying { .. }) = rx.recv_timeout(Duration::from_secs(10)) else {
            panic!("no retry")
        };
        fs::remove_file(dir.path().join("1970-01-01")).unwrap();
        rec.wait_idle(false).unwrap();
        let reports: Vec<_> = rx.try_iter().collect();
        assert!(matches!(&reports[0], Report::Resumed { .. }), "{reports:?}");
        let Report::Written(w) = &reports[1] else {
            panic!("{reports:?}")
        };
        assert_eq!(read(&w.location), vec![0, 0, 0, 1, 2, 3]);
    }

    #[test]
    fn samples_reach_the_part_file_within_the_flush_interval() {
        let dir = tempfile::tempdir().unwrap();
        let (rec, _rx) = recording(dir.path());
        let id = identity();
        rec.submit(
            &mut vec![
                Step::Open(spec(&id, 0)),
                Step::Data {
                    offset: 0,
                    len: 800,
                },
            ],
            &le(&[5; 800]),
            Overflow::Wait,
        );
        let part = dir
            .path()
            .join("1970-01-01/call/stt/PRE/segment_0.wav.part");
        // No further command comes: the writer's timer flushes on its own.
        let deadline = Instant::now() + Duration::from_secs(10);
        while fs::metadata(&part).map_or(0, |m| m.len()) < 44 + 1_600 {
            assert!(Instant::now() < deadline, "never flushed");
            thread::sleep(Duration::from_millis(20));
        }
        rec.submit(&mut vec![Step::Close], &[], Overflow::Wait);
        rec.wait_idle(false).unwrap();
    }

    #[test]
    fn queued_samples_are_the_bytes_read_as_s16le_wherever_the_bytes_lie() {
        // Every 16-bit value, from bytes at an odd address, in pieces that cross the limit of
        // a queued vector.
        let values: Vec<i16> = (i16::MIN..=i16::MAX).collect();
        let mut bytes = vec![0u8];
        bytes.extend(le(&values));
        let mut queue = Queue::default();
        for piece in bytes[1..].chunks(2 * 1_001) {
            queue.push_samples(piece);
        }
        let queued: Vec<i16> = queue
            .commands
            .iter()
            .flat_map(|c| match c {
                Command::Samples(s) => {
                    assert!(s.len() <= COALESCE_SAMPLES);
                    s.clone()
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(queued, values);
        assert_eq!(
            queue.commands.len(),
            values.len().div_ceil(COALESCE_SAMPLES)
        );
    }

    #[test]
    fn drop_oldest_makes_room_from_the_front_of_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, _rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let rec = Recording::new(config(dir.path()), 8, move |r| {
            let _ = lock(&tx).send(r);
        })
        .unwrap();
        let mut queue = rec.inbox.queue.lock();
        // Nothing is served while the queue is locked: fill it by hand.
        queue
            .commands
            .extend([Command::Samples(vec![1; 2]), Command::Samples(vec![2; 2])]);
        queue.bytes = 8;
        queue.scheduled = true;
        drop(queue);
        let submitted = rec.submit(
            &mut vec![Step::Data { offset: 0, len: 2 }],
            &le(&[3, 3]),
            Overflow::DropOldest,
        );
        // Room was made, but the queue is still full: the writer is not keeping up.
        assert_eq!(
            submitted,
            Submitted {
                dropped: 2,
                keeping_up: false
            }
        );
        let queue = rec.inbox.queue.lock();
        assert!(matches!(queue.commands[0], Command::Overflowed(2)));
        // The new samples join the queued ones they follow.
        assert!(matches!(&queue.commands[1], Command::Samples(s) if s == &[2, 2, 3, 3]));
        assert_eq!(queue.commands.len(), 2);
        assert_eq!(queue.bytes, 8);
    }

    #[test]
    fn a_panicking_report_callback_neither_hangs_waits_nor_stops_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let panics_before = WRITERS.panics();
        let rec = Recording::new(config(dir.path()), 1 << 20, move |r| {
            match &r {
                Report::Written(w) if w.spec.bucket_ms == 0 => panic!("a report callback failed"),
                Report::Opened(_) => return,
                _ => (),
            }
            let _ = lock(&tx).send(r);
        })
        .unwrap();
        let id = identity();
        submit_segment(&rec, &id, 0, &[1]);
        // The segment was published before its report panicked; the wait returns.
        rec.wait_idle(false).unwrap();
        // The wait returns while the panic unwinds; the pool counts it once it is caught.
        let deadline = Instant::now() + Duration::from_secs(10);
        while WRITERS.panics() == panics_before {
            assert!(Instant::now() < deadline, "the panic was not caught");
            thread::sleep(Duration::from_millis(5));
        }
        submit_segment(&rec, &id, 1_000, &[2]);
        rec.wait_idle(false).unwrap();
        let Ok(Report::Written(w)) = rx.try_recv() else {
            panic!("the next segment was not written")
        };
        assert_eq!(read(&w.location), vec![0, 0, 0, 2]);
        assert_eq!(
            read(&dir.path().join("1970-01-01/call/stt/PRE/segment_0.wav")),
            [0, 0, 0, 1]
        );
        assert_eq!(WRITERS.threads(), writer_threads());
    }

    #[test]
    fn a_wait_from_the_recordings_own_report_does_not_wait_for_itself() {
        // As an application ending the stream from its bus sync handler, which runs in the
        // report callback on the writer thread.
        let dir = tempfile::tempdir().unwrap();
        let own: Arc<std::sync::OnceLock<std::sync::Weak<Recording>>> = Arc::default();
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let rec = {
            let own = own.clone();
            Arc::new(
                Recording::new(config(dir.path()), 1 << 20, move |r| {
                    if let (Report::Written(_), Some(rec)) =
                        (r, own.get().and_then(std::sync::Weak::upgrade))
                    {
                        let started = Instant::now();
                        let end = rec.wait_idle_within(false, Duration::from_secs(5));
                        let _ = lock(&tx).send((end, started.elapsed()));
                    }
                })
                .unwrap(),
            )
        };
        own.set(Arc::downgrade(&rec)).unwrap();
        let id = identity();
        submit_segment(&rec, &id, 0, &[1]);
        let (end, took) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(end, Err(WaitEnd::OnItsWriter));
        assert!(took < Duration::from_secs(1), "{took:?}");
        // From any other thread the wait is the usual one.
        rec.wait_idle(false).unwrap();
        submit_segment(&rec, &id, 1_000, &[2]);
        let (end, _) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(end, Err(WaitEnd::OnItsWriter));
        rec.wait_idle(false).unwrap();
        assert!(
            dir.path()
                .join("1970-01-01/call/stt/PRE/segment_1000.wav")
                .exists()
        );
    }

    #[test]
    fn a_segment_is_told_opened_before_written_under_the_name_it_is_to_have() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let rec = Recording::new(config(dir.path()), 1 << 20, move |r| {
            let _ = lock(&tx).send(r);
        })
        .unwrap();
        let id = identity();
        let tap = dir.path().join("1970-01-01/call/stt/PRE");
        submit_segment(&rec, &id, 0, &[1]);
        rec.wait_idle(false).unwrap();
        let reports: Vec<_> = rx.try_iter().collect();
        let [Report::Opened(o), Report::Written(w)] = reports.as_slice() else {
            panic!("{reports:?}")
        };
        assert_eq!(o.location, tap.join("segment_0.wav"));
        assert_eq!(o.part, tap.join("segment_0.wav.part"));
        assert_eq!((&o.location, o.file_index), (&w.location, w.file_index));
        assert_eq!(o.spec, w.spec);

        // Another process takes the name while the segment is written: it goes to the next.
        rec.submit(
            &mut vec![Step::Open(spec(&id, 5_000)), Step::Silence(1)],
            &[],
            Overflow::Wait,
        );
        rec.wait_idle(false).unwrap();
        let Ok(Report::Opened(o)) = rx.try_recv() else {
            panic!("not opened")
        };
        assert_eq!(o.location, tap.join("segment_5000.wav"));
        fs::write(&o.location, b"theirs").unwrap();
        rec.submit(&mut vec![Step::Close], &[], Overflow::Wait);
        rec.wait_idle(false).unwrap();
        let Ok(Report::Written(w)) = rx.try_recv() else {
            panic!("not written")
        };
        assert_eq!(w.location, tap.join("segment_5000-1.wav"));
        assert_eq!(fs::read(&o.location).unwrap(), b"theirs");
    }

    #[test]
    fn the_log_tells_each_file_opened_written_published_and_given_up() {
        let dir = tempfile::tempdir().unwrap();
        let lines = Arc::new(crate::log::Collect::default());
        let mut config = config(dir.path());
        config.log = Logger::new(lines.clone());
        let (rec, _rx) = recording_with(config);
        let id = identity();
        submit_segment(&rec, &id, 0, &[1, 2]);
        rec.wait_idle(false).unwrap();
        let tap = dir.path().join("1970-01-01/call/stt/PRE");
        let part = tap.join("segment_0.wav.part");
        let told = |level: crate::log::Level, text: String| {
            let lines = lines.lines();
            assert!(
                lines.contains(&(level, text.clone())),
                "{text} not in {lines:#?}"
            );
        };
        use crate::log::Level::{Debug, Log, Warning};
        told(
            Debug,
            format!("Opened {} for bucket 0 ms at 8000 Hz", part.display()),
        );
        told(
            Log,
            format!("Wrote 5 samples to {}: 5 in it", part.display()),
        );
        told(
            Debug,
            format!(
                "Published {} as {}: 5 samples (625µs), 2 of the stream, 3 of silence",
                part.display(),
                tap.join("segment_0.wav").display()
            ),
        );

        // A file where the date directory should be: tried again, then given up.
        fs::remove_dir_all(dir.path().join("1970-01-01")).unwrap();
        fs::write(dir.path().join("1970-01-01"), b"").unwrap();
        submit_segment(&rec, &id, 1_000, &[3]);
        rec.wait_idle(false).unwrap();
        let warnings: Vec<String> = lines
            .lines()
            .into_iter()
            .filter(|(level, _)| *level == Warning)
            .map(|(_, text)| text)
            .collect();
        assert!(
            matches!(warnings.as_slice(), [tried, gave_up]
                if tried.starts_with(&format!(
                    "Cannot create {}: ",
                    tap.join("segment_1000.wav").display()
                ))
                    && gave_up.starts_with("Gave up the segment of bucket 1000 ms")),
            "{warnings:#?}"
        );
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
