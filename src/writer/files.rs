//! The files of one recording: the open `.part`, its WAV header and samples, retries when the
//! disk fails, and publishing under the final name. Runs on a writer thread only.
//!
//! Samples go to the file with one positioned write per chunk, straight from the pending
//! buffer: no seek and no copy through an encoder, since this runs for every recording every
//! flush interval. The header is written when the file is made, counting no samples, and
//! finalised on close; recovery counts the samples of a `.part` whose header was never
//! finalised.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::levels::Levels;
use super::{Command, Config, Report, SegmentOpened, SegmentSpec, SegmentWritten, WriterStats};
use crate::layout::{
    Walk, new_file_name, part_file_name, segment_dir, segment_file_name, uploaded_mark_name,
};
use crate::log::Level;

/// Samples kept in memory before they are written even if the flush interval has not passed.
const MAX_PENDING: usize = 32_768;

/// Samples written with one `pwrite` at most.
const WRITE_CHUNK: usize = 4_096;

/// Capacity the pending samples keep between flushes; a burst above it is given back.
const KEEP_PENDING: usize = 4_096;

/// First wait before an operation that failed is tried again; it doubles up to the maximum.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How many files one bucket may have before giving up (`segment_<ms>-<n>.wav`).
const MAX_SUFFIX: u32 = 1_000;

/// How many times a file being made for a `.part` may be taken by recoveries before giving up.
const MAX_NEW_FILES: u32 = 100;

/// Length of the header the writer writes, and so where the samples start: RIFF, a 16-byte
/// PCM `fmt ` chunk and the `data` chunk's header.
const HEADER_LEN: u64 = 44;

/// The WAV header of 16-bit mono PCM at `rate` holding `data_bytes` bytes of samples, as
/// hound writes it.
fn wav_header(rate: u32, data_bytes: u32) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(
        &(HEADER_LEN as u32 - 8)
            .saturating_add(data_bytes)
            .to_le_bytes(),
    );
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    // PCM, one channel.
    h[20..22].copy_from_slice(&1u16.to_le_bytes());
    h[22..24].copy_from_slice(&1u16.to_le_bytes());
    h[24..28].copy_from_slice(&rate.to_le_bytes());
    h[28..32].copy_from_slice(&rate.saturating_mul(2).to_le_bytes());
    // Two bytes a frame, 16 bits a sample.
    h[32..34].copy_from_slice(&2u16.to_le_bytes());
    h[34..36].copy_from_slice(&16u16.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data_bytes.to_le_bytes());
    h
}

/// The samples as S16LE bytes.
#[cfg(target_endian = "little")]
fn le_bytes(samples: &[i16]) -> std::borrow::Cow<'_, [u8]> {
    // SAFETY: an `i16` is two initialised bytes, in little-endian order on this target, and a
    // `u8` has no alignment to keep; the bytes borrow `samples` for as long as they live.
    std::borrow::Cow::Borrowed(unsafe {
        std::slice::from_raw_parts(samples.as_ptr().cast::<u8>(), samples.len() * 2)
    })
}

#[cfg(target_endian = "big")]
fn le_bytes(samples: &[i16]) -> std::borrow::Cow<'_, [u8]> {
    std::borrow::Cow::Owned(samples.iter().flat_map(|s| s.to_le_bytes()).collect())
}

pub(super) fn io_error(e: hound::Error) -> io::Error {
    match e {
        hound::Error::IoError(e) => e,
        other => io::Error::other(other),
    }
}

struct OpenSegment {
    spec: SegmentSpec,
    /// The open `.part`, which also holds the lock that tells recovery the file is alive.
    file: File,
    /// A write failed part way: what it left past the samples written is cut off before the
    /// next.
    torn: bool,
    dir: PathBuf,
    suffix: u32,
    part: PathBuf,
    /// Samples not written to the file yet.
    pending: Pending,
    /// Samples in the file.
    written: u64,
    /// Samples of the stream in the file.
    data_written: u64,
    /// Samples of the stream given to the segment.
    data: u64,
    silence: u64,
    levels: Levels,
    /// Set once the file has its final name (a retried close does not publish it twice).
    published: Option<PathBuf>,
}

impl OpenSegment {
    /// The report of the segment's opening.
    fn opened(&self) -> SegmentOpened {
        SegmentOpened {
            spec: self.spec.clone(),
            location: self
                .dir
                .join(segment_file_name(self.spec.bucket_ms, self.suffix)),
            part: self.part.clone(),
            file_index: self.suffix,
        }
    }

    /// Closes the segment's file as it is, which releases its lock, so that recovery can take
    /// it. Returns how many samples of the stream did not reach the file, and the file with how
    /// many samples it holds, unless it holds none and could be removed.
    fn abandon(self) -> (u64, Option<(PathBuf, u64)>) {
        if let Some(location) = self.published {
            return (0, Some((location, self.written)));
        }
        // Claims nothing it cannot check.
        let Ok(meta) = self.file.metadata() else {
            return (self.data, None);
        };
        // Removed with its directory, say: nothing of it is left.
        let named = fs::symlink_metadata(&self.part)
            .is_ok_and(|m| (m.dev(), m.ino()) == (meta.dev(), meta.ino()));
        if !named {
            return (self.data, None);
        }
        // A write that failed may have put some of its samples in the file: they are there.
        let most = self.written + self.pending.len() as u64;
        let in_file = (meta.len().saturating_sub(HEADER_LEN) / 2).clamp(self.written, most);
        let data = self.data_written + self.pending.data_in((in_file - self.written) as usize);
        let lost = self.data - data;
        if in_file == 0 && fs::remove_file(&self.part).is_ok() {
            return (lost, None);
        }
        (lost, Some((self.part, in_file)))
    }
}

/// Samples not written to the file yet, and which of them came from the stream.
#[derive(Default)]
struct Pending {
    samples: Vec<i16>,
    /// The runs of stream samples (`true`) and of silence (`false`) in `samples`, in order.
    runs: VecDeque<(bool, usize)>,
}

impl Pending {
    fn len(&self) -> usize {
        self.samples.len()
    }

    fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    fn push(&mut self, samples: &[i16]) {
        self.samples.extend_from_slice(samples);
        self.add_run(true, samples.len());
    }

    fn push_silence(&mut self, n: usize) {
        self.samples.resize(self.samples.len() + n, 0);
        self.add_run(false, n);
    }

    fn add_run(&mut self, data: bool, n: usize) {
        match self.runs.back_mut() {
            _ if n == 0 => (),
            Some((kind, len)) if *kind == data => *len += n,
            _ => self.runs.push_back((data, n)),
        }
    }

    /// How many of the first `n` samples came from the stream.
    fn data_in(&self, mut n: usize) -> u64 {
        let mut data = 0;
        for &(kind, len) in &self.runs {
            let k = len.min(n);
            if kind {
                data += k as u64;
            }
            n -= k;
        }
        data
    }

    /// Removes the first `n` samples.
    fn drain(&mut self, mut n: usize) {
        self.samples.drain(..n);
        while let Some((_, len)) = self.runs.front_mut()
            && n > 0
        {
            let k = (*len).min(n);
            *len -= k;
            n -= k;
            if *len == 0 {
                self.runs.pop_front();
            }
        }
    }
}

enum Current {
    Idle,
    Open(Box<OpenSegment>),
    /// The segment was given up; what remains of it is counted as lost until its close.
    Failed,
}

/// What failed and is tried again.
#[derive(Debug, Clone)]
enum Op {
    Open(SegmentSpec),
    Flush,
    Close,
}

impl Op {
    /// What the operation does to its file, for the log.
    fn verb(&self) -> &'static str {
        match self {
            Op::Open(_) => "create",
            Op::Flush => "write",
            Op::Close => "finish",
        }
    }
}

struct Retry {
    op: Op,
    backoff: Duration,
    next: Instant,
}

/// The operation failed and waits to be tried again; commands wait behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stalled;

/// The writer side of one recording.
pub(super) struct Files {
    config: Config,
    /// The last directory known to exist, to spare a `create_dir_all` per segment.
    made_dir: Option<PathBuf>,
    current: Current,
    retry: Option<Retry>,
    /// When the failure episode under way began: the first failure since writing last worked
    /// (a retried operation succeeded, or a segment was published).
    failing_since: Option<Instant>,
    /// Samples dropped since the last segment was reported.
    dropped: u64,
    pub(super) stats: WriterStats,
}

impl Files {
    pub(super) fn new(config: Config) -> Self {
        Files {
            config,
            made_dir: None,
            current: Current::Idle,
            retry: None,
            failing_since: None,
            dropped: 0,
            stats: WriterStats::default(),
        }
    }

    /// Drops whatever was being written, after a panic cut it short: the open segment's
    /// `.part` stays on disk, unlocked, for recovery; the segment counts as failed.
    pub(super) fn abandon(&mut self) {
        if let Current::Open(s) = &self.current {
            self.config.log.warning(format_args!(
                "Writing was cut short by a panic: {} stays for recovery",
                s.part.display()
            ));
        }
        if !matches!(self.current, Current::Idle) {
            self.stats.segments_failed += 1;
        }
        self.current = Current::Idle;
        self.retry = None;
    }

    /// When a failed operation is due to be tried again.
    pub(super) fn retry_at(&self) -> Option<Instant> {
        self.retry.as_ref().map(|r| r.next)
    }

    /// Carries out one command. On a failure the command is taken (its samples are kept for
    /// the retry) and `Stalled` says that further commands must wait. Emptied sample vectors
    /// go to `spare` for reuse.
    pub(super) fn apply(
        &mut self,
        command: Command,
        reports: &mut Vec<Report>,
        spare: &mut Vec<Vec<i16>>,
    ) -> Result<(), Stalled> {
        match command {
            Command::Open(spec) => {
                // A segment still open (no close came) is dropped as it is: its `.part` stays.
                if let Current::Open(s) = &self.current {
                    self.config.log.info(format_args!(
                        "{} was never closed: it stays as it is, for recovery",
                        s.part.display()
                    ));
                }
                self.current = Current::Idle;
                self.run(Op::Open(spec), reports)
            }
            Command::Samples(mut samples) => {
                match &mut self.current {
                    Current::Open(s) => {
                        s.levels.add(&samples);
                        s.data += samples.len() as u64;
                        s.pending.push(&samples);
                    }
                    Current::Failed => self.stats.samples_lost += samples.len() as u64,
                    Current::Idle => (),
                }
                samples.clear();
                spare.push(samples);
                self.flush_if_full(reports)
            }
            Command::Silence(n) => self.silence(n, reports),
            Command::Overflowed(n) => {
                self.dropped += n;
                self.silence(n, reports)
            }
            Command::Dropped(n) => {
                self.dropped += n;
                Ok(())
            }
            Command::Close => match self.current {
                Current::Open(_) => self.run(Op::Close, reports),
                Current::Failed => {
                    self.current = Current::Idle;
                    Ok(())
                }
                Current::Idle => Ok(()),
            },
            Command::Recover(identity) => {
                for dir in Walk::identity(&self.config.base_dir, &identity).dirs() {
                    self.config.log.debug(format_args!(
                        "Recovering what dead processes left in {}",
                        dir.display()
                    ));
                    for result in super::recover::recover_dir(&dir, self.config.fsync) {
                        reports.push(match result {
                            Ok(recovered) => {
                                self.config.log.info(format_args!(
                                    "Recovered {} as {}: {} samples",
                                    recovered.part.display(),
                                    recovered.location.display(),
                                    recovered.samples
                                ));
                                self.stats.segments_recovered += 1;
                                Report::Recovered(recovered)
                            }
                            Err((location, error)) => {
                                self.config.log.warning(format_args!(
                                    "Cannot recover {}: {error}",
                                    location.display()
                                ));
                                self.note_error(&location, &error);
                                Report::RecoveryFailed { location, error }
                            }
                        });
                    }
                }
                Ok(())
            }
        }
    }

    fn silence(&mut self, mut n: u64, reports: &mut Vec<Report>) -> Result<(), Stalled> {
        while n > 0 {
            let Current::Open(s) = &mut self.current else {
                break;
            };
            let room = (MAX_PENDING.saturating_sub(s.pending.len())).max(1) as u64;
            let chunk = n.min(room);
            s.levels.add_silence(chunk);
            s.silence += chunk;
            s.pending.push_silence(chunk as usize);
            n -= chunk;
            self.flush_if_full(reports)?;
        }
        Ok(())
    }

    /// Writes what is pending. A thread serves a recording about once per flush interval (or
    /// sooner when much audio waits), and each time writes all it was given.
    pub(super) fn flush(&mut self, reports: &mut Vec<Report>) -> Result<(), Stalled> {
        match &self.current {
            Current::Open(s) if !s.pending.is_empty() => self.run(Op::Flush, reports),
            _ => Ok(()),
        }
    }

    fn flush_if_full(&mut self, reports: &mut Vec<Report>) -> Result<(), Stalled> {
        match &self.current {
            Current::Open(s) if s.pending.len() >= MAX_PENDING => self.run(Op::Flush, reports),
            _ => Ok(()),
        }
    }

    /// Tries the failed operation again if it is due. `Ok` once it succeeded or was given up.
    pub(super) fn retry(&mut self, reports: &mut Vec<Report>) -> Result<(), Stalled> {
        let Some(retry) = &self.retry else {
            return Ok(());
        };
        if Instant::now() < retry.next {
            return Err(Stalled);
        }
        let op = retry.op.clone();
        self.run(op, reports)
    }

    /// Runs `op`. A failure is tried again with a growing backoff, as long as the failure
    /// episode it belongs to has lasted less than the retry time; past it the segment is given
    /// up at once. The retry time is the episode's, not each segment's: however many segments
    /// wait, a failing disk holds a recording up for the retry time, not that many times over.
    /// The episode ends when writing works again: a retried operation succeeds, or a segment is
    /// published. (Not any operation: where a segment given up leaves a little room, the next
    /// one's opening succeeds, which says nothing of the disk.)
    fn run(&mut self, op: Op, reports: &mut Vec<Report>) -> Result<(), Stalled> {
        let result = match &op {
            Op::Open(spec) => self.open(spec).map(|s| {
                self.current = Current::Open(Box::new(s));
                None
            }),
            Op::Flush => self.write_pending().map(|()| None),
            Op::Close => self.close().map(Some),
        };
        match result {
            Ok(written) => {
                let retried = self.retry.take().is_some();
                if (retried || written.is_some())
                    && let Some(since) = self.failing_since.take()
                {
                    self.config.log.info(format_args!(
                        "Writing works again after failing for {:?}",
                        since.elapsed()
                    ));
                    reports.push(Report::Resumed {
                        spec: written
                            .as_ref()
                            .map(|w| w.spec.clone())
                            .or_else(|| self.spec_of(&op)),
                        after: since.elapsed(),
                    });
                }
                if let (Op::Open(_), Current::Open(s)) = (&op, &self.current) {
                    reports.push(Report::Opened(s.opened()));
                }
                if let Some(mut written) = written {
                    written.dropped_samples = std::mem::take(&mut self.dropped);
                    self.stats.segments_written += 1;
                    reports.push(Report::Written(written));
                }
                Ok(())
            }
            Err((location, error)) => {
                self.stats.write_errors += 1;
                self.note_error(&location, &error);
                let spec = self.spec_of(&op);
                let now = Instant::now();
                let retry_time = self.config.retry_time;
                let Some(since) = self.failing_since else {
                    self.config.log.warning(format_args!(
                        "Cannot {} {}: {error}; trying again for up to {retry_time:?}",
                        op.verb(),
                        location.display()
                    ));
                    self.failing_since = Some(now);
                    self.retry = Some(Retry {
                        op,
                        backoff: FIRST_BACKOFF,
                        next: now + FIRST_BACKOFF.min(retry_time),
                    });
                    reports.push(Report::Retrying {
                        spec,
                        location,
                        error,
                        retry_for: retry_time,
                    });
                    return Err(Stalled);
                };
                if now < since + retry_time {
                    let backoff = self
                        .retry
                        .as_ref()
                        .map_or(FIRST_BACKOFF, |r| (r.backoff * 2).min(MAX_BACKOFF));
                    // The last try is when the episode has lasted the retry time.
                    let next = (now + backoff).min(since + retry_time);
                    self.config.log.debug(format_args!(
                        "Cannot {} {} yet: {error}; next try in {:?}",
                        op.verb(),
                        location.display(),
                        next - now
                    ));
                    self.retry = Some(Retry { op, backoff, next });
                    Err(Stalled)
                } else {
                    self.retry = None;
                    self.give_up(&op, spec, location, error, reports);
                    Ok(())
                }
            }
        }
    }

    /// Gives the segment of `op` up: what reached its file stays there, for recovery, and only
    /// the rest is lost.
    fn give_up(
        &mut self,
        op: &Op,
        spec: Option<SegmentSpec>,
        location: PathBuf,
        error: io::Error,
        reports: &mut Vec<Report>,
    ) {
        let (samples_lost, kept) = match std::mem::replace(&mut self.current, Current::Failed) {
            Current::Open(s) => s.abandon(),
            _ => (0, None),
        };
        self.stats.segments_failed += 1;
        self.stats.samples_lost += samples_lost;
        if self.config.log.enabled(Level::Warning) {
            let what = match &kept {
                Some((file, samples)) => format!(
                    "{samples} samples stay in {}, {samples_lost} are lost",
                    file.display()
                ),
                None => "what it held is lost".to_owned(),
            };
            self.config.log.warning(format_args!(
                "Gave up the segment of bucket {} ms: cannot {} {}: {error}; {what}",
                spec.as_ref().map_or(0, |s| s.bucket_ms),
                op.verb(),
                location.display(),
            ));
        }
        reports.push(Report::Failed {
            spec,
            location,
            error,
            kept,
        });
        if matches!(op, Op::Close) {
            self.current = Current::Idle;
        }
    }

    fn spec_of(&self, op: &Op) -> Option<SegmentSpec> {
        match (op, &self.current) {
            (Op::Open(spec), _) => Some(spec.clone()),
            (_, Current::Open(s)) => Some(s.spec.clone()),
            _ => None,
        }
    }

    fn note_error(&mut self, location: &Path, error: &io::Error) {
        self.stats.last_error = Some(format!("{}: {error}", location.display()));
    }

    fn open(&mut self, spec: &SegmentSpec) -> Result<OpenSegment, (PathBuf, io::Error)> {
        let dir = segment_dir(&self.config.base_dir, &spec.identity, spec.bucket_ms);
        if self.made_dir.as_ref() != Some(&dir) {
            fs::create_dir_all(&dir).map_err(|e| (dir.clone(), e))?;
            self.made_dir = Some(dir.clone());
        }
        let new = match create_part(&dir, spec.bucket_ms, spec.rate) {
            // The directory was removed under us: make it again.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.made_dir = None;
                fs::create_dir_all(&dir).map_err(|e| (dir.clone(), e))?;
                self.made_dir = Some(dir.clone());
                create_part(&dir, spec.bucket_ms, spec.rate)
            }
            other => other,
        }
        .map_err(|e| (dir.join(segment_file_name(spec.bucket_ms, 0)), e))?;
        self.config.log.debug(format_args!(
            "Opened {} for bucket {} ms at {} Hz",
            new.part.display(),
            spec.bucket_ms,
            spec.rate
        ));
        Ok(OpenSegment {
            spec: spec.clone(),
            file: new.file,
            torn: false,
            dir,
            suffix: new.suffix,
            part: new.part,
            pending: Pending::default(),
            written: 0,
            data_written: 0,
            data: 0,
            silence: 0,
            levels: Levels::new(spec.rate, self.config.voice_threshold_dbfs),
            published: None,
        })
    }

    /// Writes the pending samples, after cutting off whatever a failed attempt left behind.
    fn write_pending(&mut self) -> Result<(), (PathBuf, io::Error)> {
        let Current::Open(s) = &mut self.current else {
            return Ok(());
        };
        let before = s.written;
        let result = (|| {
            while !s.pending.is_empty() {
                let end = HEADER_LEN + s.written * 2;
                if s.torn {
                    s.file.set_len(end)?;
                    s.torn = false;
                }
                let n = s.pending.len().min(WRITE_CHUNK);
                if let Err(e) = s.file.write_all_at(&le_bytes(&s.pending.samples[..n]), end) {
                    s.torn = true;
                    return Err(e);
                }
                s.written += n as u64;
                s.data_written += s.pending.data_in(n);
                self.stats.bytes_written += n as u64 * 2;
                s.pending.drain(n);
            }
            s.pending.samples.shrink_to(KEEP_PENDING);
            Ok(())
        })();
        if s.written > before {
            self.config.log.log(format_args!(
                "Wrote {} samples to {}: {} in it",
                s.written - before,
                s.part.display(),
                s.written
            ));
        }
        result.map_err(|e| (s.part.clone(), e))
    }

    /// Writes what is pending and the final header, syncs if asked, and publishes the file
    /// under its final name, never replacing one that exists.
    fn close(&mut self) -> Result<SegmentWritten, (PathBuf, io::Error)> {
        self.write_pending()?;
        let fsync = self.config.fsync;
        let Current::Open(s) = &mut self.current else {
            unreachable!("close runs on an open segment");
        };
        if s.published.is_none() {
            let result = (|| {
                let data_bytes = u32::try_from(s.written * 2).unwrap_or(u32::MAX);
                s.file
                    .write_all_at(&wav_header(s.spec.rate, data_bytes), 0)?;
                if fsync {
                    s.file.sync_data()?;
                }
                publish(&s.part, &s.dir, s.spec.bucket_ms, s.suffix)
            })();
            let published = result.map_err(|e| (s.part.clone(), e))?;
            if published.file_index != s.suffix {
                self.config.log.info(format_args!(
                    "{} was taken while {} was written: published as {}",
                    segment_file_name(s.spec.bucket_ms, s.suffix),
                    s.part.display(),
                    published.location.display()
                ));
            }
            if let Some(e) = published.leftover {
                // Published all the same: the `.part` left is a second link of the segment,
                // which recovery removes; publishing again would make a copy.
                self.stats.write_errors += 1;
                self.stats.last_error = Some(format!("{}: {e}", s.part.display()));
            }
            s.published = Some(published.location);
            s.suffix = published.file_index;
        }
        if fsync {
            File::open(&s.dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| (s.dir.clone(), e))?;
        }
        let Current::Open(s) = std::mem::replace(&mut self.current, Current::Idle) else {
            unreachable!("checked above");
        };
        let s = *s;
        let location = s.published.unwrap_or_default();
        let samples = s.data + s.silence;
        self.config.log.debug(format_args!(
            "Published {} as {}: {samples} samples ({:?}), {} of the stream, {} of silence",
            s.part.display(),
            location.display(),
            Duration::from_nanos(samples * 1_000_000_000 / u64::from(s.spec.rate.max(1))),
            s.data,
            s.silence
        ));
        Ok(SegmentWritten {
            location,
            file_index: s.suffix,
            samples,
            data_samples: s.data,
            silence_samples: s.silence,
            dropped_samples: 0,
            levels: s.levels.measured(),
            spec: s.spec,
        })
    }
}

/// A `.part` ready for samples: locked, with its header.
struct NewPart {
    suffix: u32,
    part: PathBuf,
    file: File,
}

/// Creates the `.part` of the first free name of bucket `bucket_ms` in `dir`.
///
/// The file is made under a name of its own ([`new_file_name`]), locked, given its header, and
/// only then linked under its `.part` name, which never replaces a file. So no recovery (of a
/// recorder of the same identity starting, or the offline tool) ever finds a live `.part`
/// unlocked or without its header, which it would take for a dead writer's and remove. A
/// recovery that takes the file under its first name in the moment before it is locked removes
/// it: the file is then made again.
fn create_part(dir: &Path, bucket_ms: u64, rate: u32) -> io::Result<NewPart> {
    static MADE: AtomicU64 = AtomicU64::new(0);
    let first_name = segment_file_name(bucket_ms, 0);
    for _ in 0..MAX_NEW_FILES {
        let unique = format!(
            "{}-{}",
            std::process::id(),
            MADE.fetch_add(1, Ordering::Relaxed)
        );
        let new = dir.join(new_file_name(&first_name, &unique));
        between_steps();
        let file = match File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&new)
        {
            Ok(file) => file,
            // Left by a dead process that had our process id.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        };
        match name_part(file, &new, dir, bucket_ms, rate) {
            Ok(Some(part)) => return Ok(part),
            Ok(None) => continue,
            Err(e) => {
                let _ = fs::remove_file(&new);
                return Err(e);
            }
        }
    }
    Err(io::Error::other(format!(
        "{MAX_NEW_FILES} new files in a row were removed by recoveries"
    )))
}

/// Locks the file just made as `new`, writes its header and links it under the first free
/// `.part` name. `None`: a recovery took it before it was locked.
fn name_part(
    file: File,
    new: &Path,
    dir: &Path,
    bucket_ms: u64,
    rate: u32,
) -> io::Result<Option<NewPart>> {
    between_steps();
    match file.try_lock() {
        Ok(()) => (),
        // A recovery holds it, and removes it.
        Err(fs::TryLockError::WouldBlock) => return Ok(None),
        // Where locks are not supported, recovery can only tell a live file by its process
        // being gone.
        Err(fs::TryLockError::Error(_)) => (),
    }
    file.write_all_at(&wav_header(rate, 0), 0)?;
    between_steps();
    for suffix in 0..MAX_SUFFIX {
        let name = segment_file_name(bucket_ms, suffix);
        if name_taken(dir, &name)? {
            continue;
        }
        let part = dir.join(part_file_name(&name));
        match fs::hard_link(new, &part) {
            Ok(()) => (),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            // A recovery removed it in the moment before it was locked.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(_) if !part.try_exists()? => fs::rename(new, &part)?,
            Err(_) => continue,
        }
        between_steps();
        // Should this fail, the name stays locked while we write, then recovery removes it.
        let _ = fs::remove_file(new);
        between_steps();
        return Ok(Some(NewPart { suffix, part, file }));
    }
    Err(too_many_files())
}

#[cfg(test)]
thread_local! {
    /// Run between the steps of making a `.part`, by unit tests that check that a recovery at
    /// any of these moments leaves the file alone.
    static BETWEEN_STEPS: std::cell::RefCell<Option<Box<dyn FnMut()>>> =
        const { std::cell::RefCell::new(None) };
}

fn between_steps() {
    #[cfg(test)]
    BETWEEN_STEPS.with_borrow_mut(|step| {
        if let Some(step) = step {
            step();
        }
    });
}

fn too_many_files() -> io::Error {
    io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("{MAX_SUFFIX} files already exist for this bucket"),
    )
}

/// A file given its segment name by [`publish`].
pub(super) struct Published {
    /// The segment's file.
    pub(super) location: PathBuf,
    /// Its file index.
    pub(super) file_index: u32,
    /// Why the file's former name could not be removed, if it could not. That name is then a
    /// second link of the segment, which recovery removes.
    pub(super) leftover: Option<io::Error>,
}

/// Whether segment file `name` exists in `dir`, or did and was uploaded.
fn name_taken(dir: &Path, name: &str) -> io::Result<bool> {
    Ok(dir.join(name).try_exists()? || dir.join(uploaded_mark_name(name)).try_exists()?)
}

/// Gives `from` the first free name of bucket `bucket_ms` in `dir`, from file index `suffix`
/// on, never replacing an existing file nor reusing the name of one that was uploaded and
/// removed: a hard link (or, where links are not supported, a rename after checking the name is
/// free), then `from` is removed.
///
/// Once the link is made the segment is published, whatever comes next: a process killed
/// before `from` is removed leaves `from` as a second link of the segment, which recovery
/// tells apart from audio still to be published and removes.
pub(super) fn publish(
    from: &Path,
    dir: &Path,
    bucket_ms: u64,
    mut suffix: u32,
) -> io::Result<Published> {
    loop {
        let name = segment_file_name(bucket_ms, suffix);
        let target = dir.join(&name);
        match fs::hard_link(from, &target) {
            // The name's file was uploaded and removed, its mark remains: the name is taken.
            // Looked at after the link, which only succeeds once that file is gone, and the
            // uploader marks a file before it removes it.
            Ok(()) if dir.join(uploaded_mark_name(&name)).try_exists()? => {
                let _ = fs::remove_file(&target);
            }
            Ok(()) => {
                return Ok(Published {
                    location: target,
                    file_index: suffix,
                    leftover: fs::remove_file(from).err(),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(_) if !name_taken(dir, &name)? => {
                fs::rename(from, &target)?;
                return Ok(Published {
                    location: target,
                    file_index: suffix,
                    leftover: None,
                });
            }
            Err(_) => {}
        }
        suffix += 1;
        if suffix >= MAX_SUFFIX {
            return Err(too_many_files());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Identity;
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;
    use std::sync::Arc;

    fn config(base: &Path) -> Config {
        Config {
            base_dir: base.to_owned(),
            flush_interval: Duration::from_millis(200),
            fsync: false,
            retry_time: Duration::from_millis(300),
            voice_threshold_dbfs: -45.0,
            log: crate::log::Logger::none(),
        }
    }

    /// Opens bucket 0 of `identity`, while a second recorder of the same identity starts, and
    /// so recovers its directory, at the `at`-th step of making the `.part` (never if `None`);
    /// then writes three samples and closes. Returns the steps there were, what the first
    /// recorder reported and what the second one recovered or failed to.
    fn record_while_another_starts(
        base: &Path,
        at: Option<usize>,
    ) -> (usize, Vec<Report>, Vec<Report>) {
        let identity = Arc::new(Identity::new("call", "stt", "PRE").unwrap());
        let steps = Rc::new(Cell::new(0));
        let recovered = Rc::new(RefCell::new(Vec::new()));
        let mut second = Files::new(config(base));
        BETWEEN_STEPS.set(Some(Box::new({
            let (steps, recovered, identity) = (steps.clone(), recovered.clone(), identity.clone());
            move || {
                if Some(steps.get()) == at {
                    let mut reports = Vec::new();
                    let recover = Command::Recover(identity.clone());
                    assert!(second.apply(recover, &mut reports, &mut Vec::new()).is_ok());
                    recovered.borrow_mut().extend(reports);
                }
                steps.set(steps.get() + 1);
            }
        })));
        let mut first = Files::new(config(base));
        let (mut reports, mut spare) = (Vec::new(), Vec::new());
        let spec = SegmentSpec {
            identity,
            bucket_ms: 0,
            rate: 8_000,
            start_running_time_ns: None,
            start_utc_ns: None,
        };
        let opened = first.apply(Command::Open(spec), &mut reports, &mut spare);
        BETWEEN_STEPS.set(None);
        assert!(opened.is_ok(), "{reports:?}");
        for command in [Command::Samples(vec![1, 2, 3]), Command::Close] {
            assert!(
                first.apply(command, &mut reports, &mut spare).is_ok(),
                "{reports:?}"
            );
        }
        (steps.get(), reports, recovered.take())
    }

    #[test]
    fn the_header_is_the_one_hound_writes() {
        for (rate, samples) in [
            (8_000u32, 0usize),
            (16_000, 3),
            (44_100, 80_000),
            (384_000, 1),
        ] {
            let mut bytes = io::Cursor::new(Vec::new());
            let spec = hound::WavSpec {
                channels: 1,
                sample_rate: rate,
                bits_per_sample: 16,
                sample_format: hound::SampleFormat::Int,
            };
            let mut wav = hound::WavWriter::new(&mut bytes, spec).unwrap();
            for i in 0..samples {
                wav.write_sample(i as i16).unwrap();
            }
            wav.finalize().unwrap();
            let bytes = bytes.into_inner();
            assert_eq!(
                bytes[..HEADER_LEN as usize],
                wav_header(rate, samples as u32 * 2),
                "{rate} Hz"
            );
            let samples: Vec<i16> = (0..samples).map(|i| i as i16).collect();
            assert_eq!(&bytes[HEADER_LEN as usize..], &*le_bytes(&samples));
        }
    }

    #[test]
    fn pending_samples_tell_how_many_of_any_first_ones_came_from_the_stream() {
        let mut pending = Pending::default();
        pending.push(&[1, 2]);
        pending.push_silence(3);
        pending.push(&[3]);
        pending.push(&[4]);
        pending.push_silence(0);
        assert_eq!(pending.samples, [1, 2, 0, 0, 0, 3, 4]);
        let firsts: Vec<u64> = (0..=7).map(|n| pending.data_in(n)).collect();
        assert_eq!(firsts, [0, 1, 2, 2, 2, 2, 3, 4]);
        pending.drain(3);
        assert_eq!(pending.samples, [0, 0, 3, 4]);
        assert_eq!((pending.data_in(2), pending.data_in(3)), (0, 1));
        pending.drain(4);
        assert!(pending.is_empty() && pending.runs.is_empty());
    }

    #[test]
    fn a_recorder_starting_at_any_step_of_making_a_part_leaves_it_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (steps, _, _) = record_while_another_starts(dir.path(), None);
        assert!(steps >= 4, "{steps} steps");
        for at in 0..steps {
            let dir = tempfile::tempdir().unwrap();
            let (_, reports, recovered) = record_while_another_starts(dir.path(), Some(at));
            assert!(recovered.is_empty(), "step {at}: {recovered:?}");
            let [Report::Opened(o), Report::Written(w)] = reports.as_slice() else {
                panic!("step {at}: {reports:?}")
            };
            let tap = dir.path().join("1970-01-01/call/stt/PRE");
            assert_eq!(w.location, tap.join("segment_0.wav"));
            assert_eq!(o.location, w.location);
            let mut reader = hound::WavReader::open(&w.location).unwrap();
            let samples: Vec<i16> = reader.samples().map(Result::unwrap).collect();
            assert_eq!(samples, [1, 2, 3], "step {at}");
            // Nothing else is left: no `.part`, no file it was made under.
            assert_eq!(fs::read_dir(&tap).unwrap().count(), 1, "step {at}");
        }
    }
}
