//! Retention: the segments under a base directory are kept within a size, an age and the free
//! space of their file system by removing the oldest buckets, PRE and POST together.
//!
//! Recorders of one process that record into one base directory (the same directory, however
//! its path is spelt: they are told apart by its canonical path) share one base directory's
//! state: one [`index`] of its segments and one policy, whose every limit is the strictest that any of them
//! sets ([`Limits::strictest`]). A recorder joins it when it starts ([`join`]) and leaves it when
//! its [`Member`] is dropped.
//!
//! The index is built once, by a walk on the retention thread, when the first recorder of the
//! process that sets a limit joins; from then on each recorder tells it of the segments it
//! publishes ([`Member::published`], on the writer thread that published them: a `stat`, no
//! walk). When the segments exceed a limit, that writer thread runs a pass ([`prune::pass`])
//! before it goes on with the recorder's audio, never a streaming thread: the pass takes the
//! oldest buckets from the index a few at a time, looks at the disk only for those that would
//! go, and removes them. One pass runs at a time per base directory; a writer thread that
//! publishes meanwhile waits for it, then runs one of its own if the limit is still exceeded.
//! So no recorder goes on writing while its last segment is beyond the limit: the segments
//! exceed it by at most one bucket per recorder, open or just published. What a pass did is
//! told to the recorder whose segment asked for it. When passes cannot meet the limits because
//! everything that would go is protected, and still cannot [`BLOCKED_PAUSE`] after the first
//! such pass (a limit smaller than the buckets being written is unmet for a moment, and that is
//! no news), it is told once, until a pass meets them again. After a pass that passed over
//! [`MANY_PROTECTED`] protected buckets, none runs for [`BLOCKED_PAUSE`], so that a long
//! backlog of protected buckets (uploads failing for a day) is not looked at for every segment.
//!
//! Mutex order: the registry of base directories (`Level::RetentionBases`), then a base
//! directory's state (`Level::RetentionIndex`), then the pool's; no file is touched and no
//! report is made while either is held.

pub mod index;
pub mod policy;
pub mod prune;

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Weak};
use std::time::{Duration, Instant, SystemTime};

use crate::layout::Tap;
use crate::lock_order::{Level, OrderedMutex};
use crate::pool::Pool;
use index::{Bucket, BucketKey, Index, Place, SegmentEntry};
pub use policy::{Limits, Unmet};
use prune::{Pass, Store};

/// How long passes must have failed to meet the limits before it is told; and after a pass
/// that passed over [`MANY_PROTECTED`] protected buckets, how long the next one waits.
pub const BLOCKED_PAUSE: Duration = Duration::from_secs(5);

/// Protected buckets a pass may look at without making the next pass wait.
pub const MANY_PROTECTED: u64 = 64;

/// The thread that builds indexes and runs passes, for the whole process; a spare for a disk
/// that stops answering.
static RETENTION: Pool = Pool::with_spares("segrec-retention", 1);

/// The base directories with recorders in the process.
static BASES: OrderedMutex<Vec<Weak<BaseDir>>> =
    OrderedMutex::new(Level::RetentionBases, Vec::new());

/// Tells members apart.
static MEMBERS: AtomicU64 = AtomicU64::new(0);

/// What a pass did, told to a recorder of the base directory.
#[derive(Debug)]
pub struct Removal {
    /// The base directory.
    pub base: PathBuf,
    /// Segments removed.
    pub segments: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Start of the oldest bucket left, if any is.
    pub oldest_kept_ms: Option<u64>,
    /// Files that could not be removed, and why.
    pub failed: Vec<(PathBuf, io::Error)>,
    /// The limits could not be met, told once until they are met again, with the limits.
    pub unmet: Option<(Unmet, Limits)>,
}

/// Counters of what the passes told a recorder of.
#[derive(Debug, Default)]
pub struct Counters {
    /// Segments removed.
    pub segments: AtomicU64,
    /// Their bytes.
    pub bytes: AtomicU64,
    /// Files that could not be removed.
    pub failed: AtomicU64,
}

type ReportFn = Box<dyn Fn(Removal) + Send + Sync>;

/// A base directory that recorders of the process record into.
struct BaseDir {
    /// Its canonical path.
    path: PathBuf,
    state: OrderedMutex<Shared>,
    /// Signalled when a pass ends.
    passed: Condvar,
}

#[derive(Default)]
struct Shared {
    /// The recorders: their limits, and where to tell what a pass did.
    members: Vec<(u64, Limits, Weak<Member>)>,
    /// `None` until the walk that builds it is done, and while no recorder sets a limit.
    index: Option<Index>,
    /// The walk that builds the index is under way.
    building: bool,
    /// The bucket each recorder is writing, by member, and how many write each: a file of
    /// such a bucket start is not removed, so that a recorder restarting in it gives its PRE
    /// and POST the same free name.
    writing: HashMap<u64, OpenBucket>,
    writers: HashMap<OpenBucket, u32>,
    /// Segments published while the index was being built.
    early: Vec<(BucketKey, Tap, u32, u64, SystemTime)>,
    /// A pass is queued or running (or the index being built).
    running: bool,
    /// No pass before this (after a pass that passed over many protected buckets).
    not_before: Option<Instant>,
    /// Since when passes have not met the limits.
    unmet_since: Option<Instant>,
    /// The recorder whose segment asked for the next pass.
    asker: Weak<Member>,
    /// The limits were found unmet and that was told.
    warned: bool,
    /// The strictest of the members' limits, kept as they join and leave: a segment published
    /// does not look at every recorder.
    strictest: Limits,
}

impl Shared {
    fn limits(&self) -> Limits {
        self.strictest
    }

    /// The strictest limits again, after a member joined or left.
    fn members_changed(&mut self) {
        self.strictest = self
            .members
            .iter()
            .map(|(_, limits, _)| *limits)
            .reduce(Limits::strictest)
            .unwrap_or_default();
    }

    /// Whether the segments published so far may call for removals.
    fn over(&self) -> bool {
        let limits = self.limits();
        let bytes = self.index.as_ref().map_or(0, Index::bytes);
        !limits.max_age.is_zero() || limits.min_free > 0 || limits.excess(bytes, None) > 0
    }
}

/// A bucket start of one call and station, of any file index.
type OpenBucket = (String, String, u64);

fn open_bucket(key: &BucketKey) -> OpenBucket {
    (key.trace.clone(), key.station.clone(), key.bucket_ms)
}

impl Shared {
    /// Notes the bucket member `id` writes now, or that it writes none.
    fn set_writing(&mut self, id: u64, bucket: Option<OpenBucket>) {
        if let Some(old) = self.writing.remove(&id)
            && let Some(n) = self.writers.get_mut(&old)
        {
            *n -= 1;
            if *n == 0 {
                self.writers.remove(&old);
            }
        }
        if let Some(bucket) = bucket {
            *self.writers.entry(bucket.clone()).or_default() += 1;
            self.writing.insert(id, bucket);
        }
    }
}

/// A recorder's place in the retention of its base directory; leaves it when dropped.
pub struct Member {
    base: Arc<BaseDir>,
    /// The base directory as the recorder names it, which its segments' paths start with.
    own_base: PathBuf,
    id: u64,
    report: ReportFn,
    /// Whether it sets a limit of its own: then it is the one to tell of removals.
    limited: bool,
    /// What the passes told this recorder of.
    pub counters: Counters,
}

/// Has the recorder recording into `base_dir` (which exists) take part in its retention with
/// `limits`; `report` is told, on the retention thread, what passes it asked for did. Every
/// recorder takes part, also one without a limit of its own: the index must learn of its
/// segments (the partner of a pair, a file not yet uploaded), while nothing is indexed or
/// walked for a base directory no recorder sets a limit for. An error if the directory cannot
/// be resolved or the retention thread cannot start.
pub fn join(
    base_dir: &Path,
    limits: Limits,
    report: impl Fn(Removal) + Send + Sync + 'static,
) -> io::Result<Arc<Member>> {
    if !limits.is_off() {
        RETENTION.ensure_threads(1)?;
    }
    let path = fs::canonicalize(base_dir)?;
    let base = {
        let mut bases = BASES.lock();
        bases.retain(|b| b.strong_count() > 0);
        match bases
            .iter()
            .filter_map(Weak::upgrade)
            .find(|b| b.path == path)
        {
            Some(base) => base,
            None => {
                let base = Arc::new(BaseDir {
                    path,
                    state: OrderedMutex::new(Level::RetentionIndex, Shared::default()),
                    passed: Condvar::new(),
                });
                bases.push(Arc::downgrade(&base));
                base
            }
        }
    };
    let member = Arc::new(Member {
        base: base.clone(),
        own_base: base_dir.to_owned(),
        id: MEMBERS.fetch_add(1, Ordering::Relaxed),
        report: Box::new(report),
        limited: !limits.is_off(),
        counters: Counters::default(),
    });
    let build_now = {
        let mut state = base.state.lock();
        state
            .members
            .push((member.id, limits, Arc::downgrade(&member)));
        state.members_changed();
        if limits.is_off() {
            false
        } else if state.index.is_none() && !state.building {
            // The first limit: the index is built, then a first pass runs.
            state.building = true;
            state.running = true;
            state.asker = Arc::downgrade(&member);
            true
        } else if state.index.is_some() && state.over() && !state.running {
            // Stricter limits apply at once, off this thread.
            state.running = true;
            state.asker = Arc::downgrade(&member);
            let base = base.clone();
            RETENTION.run(move || {
                let _running = Running(&base);
                pass_now(&base);
            });
            false
        } else {
            false
        }
    };
    if build_now {
        RETENTION.run(move || build(base));
    }
    Ok(member)
}

impl Member {
    /// Tells the index of a segment just published at `location` (a path under the base
    /// directory as the recorder names it), and asks for a pass if a limit may call for one.
    pub fn published(self: &Arc<Self>, location: &Path) {
        let Some((key, tap, file_index)) = location
            .strip_prefix(&self.own_base)
            .ok()
            .and_then(index::locate)
        else {
            return;
        };
        {
            let mut state = self.base.state.lock();
            state.set_writing(self.id, None);
            if state.index.is_none() && !state.building {
                // No recorder of this base directory sets a limit.
                return;
            }
        }
        // Gone already (an upload that removed it): nothing to count.
        let Ok(meta) = fs::metadata(location) else {
            return;
        };
        let ended = meta.modified().unwrap_or_else(|_| SystemTime::now());
        {
            let mut guard = self.base.state.lock();
            let state = &mut *guard;
            match (&mut state.index, state.building) {
                (Some(index), _) => {
                    index.add(key, tap, file_index, meta.len(), ended);
                }
                (None, true) => state.early.push((key, tap, file_index, meta.len(), ended)),
                (None, false) => return,
            }
        }
        self.prune();
    }

    /// Runs a pass on this (writer) thread while a limit may be exceeded; waits for a pass
    /// running on another thread first.
    fn prune(self: &Arc<Self>) {
        let base = &self.base;
        let mut state = base.state.lock();
        loop {
            let throttled = state.not_before.is_some_and(|at| Instant::now() < at);
            if state.index.is_none() || throttled || !state.over() {
                return;
            }
            if state.running {
                state = state.wait(&base.passed);
                continue;
            }
            state.running = true;
            state.asker = Arc::downgrade(self);
            drop(state);
            let running = Running(base);
            pass_now(base);
            drop(running);
            return;
        }
    }

    /// Tells that the recorder opened the segment to be published at `location`: no file of
    /// that bucket start goes until it is published or given up ([`Member::closed`]).
    pub fn opened(&self, location: &Path) {
        let bucket = location
            .strip_prefix(&self.own_base)
            .ok()
            .and_then(index::locate)
            .map(|(key, _, _)| open_bucket(&key));
        self.base.state.lock().set_writing(self.id, bucket);
    }

    /// Tells that the recorder's open segment was given up, or published (which
    /// [`Member::published`] tells too).
    pub fn closed(&self) {
        self.base.state.lock().set_writing(self.id, None);
    }

    /// The limits that apply to the base directory now: the strictest of its recorders'.
    pub fn limits(&self) -> Limits {
        self.base.state.lock().limits()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let mut state = self.base.state.lock();
        state.members.retain(|(id, _, _)| *id != self.id);
        state.members_changed();
        state.set_writing(self.id, None);
    }
}

/// Builds the index of `base` by a walk, then runs the first pass.
fn build(base: Arc<BaseDir>) {
    let _running = Running(&base);
    let (mut index, _unreadable) = Index::build(&base.path);
    let mut state = base.state.lock();
    for (key, tap, file_index, bytes, ended) in state.early.drain(..) {
        index.add(key, tap, file_index, bytes, ended);
    }
    state.index = Some(index);
    state.building = false;
    drop(state);
    pass_now(&base);
}

/// A pass over `base` on this thread, marked running by the caller; its outcome told.
fn pass_now(base: &Arc<BaseDir>) {
    let limits = base.state.lock().limits();
    let done = if limits.is_off() {
        Pass::default()
    } else {
        prune::pass(&base.path, &limits, &Online(base), false, SystemTime::now())
    };
    let (warn, asker) = {
        let mut state = base.state.lock();
        let warn = match done.unmet {
            Some(_) => {
                let now = Instant::now();
                if done.unmet.is_some_and(|u| u.protected >= MANY_PROTECTED) {
                    state.not_before = Some(now + BLOCKED_PAUSE);
                }
                let since = *state.unmet_since.get_or_insert(now);
                now - since >= BLOCKED_PAUSE && !std::mem::replace(&mut state.warned, true)
            }
            None => {
                state.not_before = None;
                state.unmet_since = None;
                state.warned = false;
                false
            }
        };
        // The asker if it sets a limit, or else a recorder that does, or else any.
        let members = || state.members.iter().filter_map(|(_, _, m)| m.upgrade());
        let asker = state
            .asker
            .upgrade()
            .filter(|m| m.limited)
            .or_else(|| members().find(|m| m.limited))
            .or_else(|| members().next());
        (warn, asker)
    };
    if done.segments == 0 && done.failed.is_empty() && !warn {
        return;
    }
    let Some(asker) = asker else { return };
    let c = &asker.counters;
    c.segments.fetch_add(done.segments, Ordering::Relaxed);
    c.bytes.fetch_add(done.bytes, Ordering::Relaxed);
    c.failed
        .fetch_add(done.failed.len() as u64, Ordering::Relaxed);
    (asker.report)(Removal {
        base: asker.own_base.clone(),
        segments: done.segments,
        bytes: done.bytes,
        oldest_kept_ms: done.oldest_kept.map(|k| k.bucket_ms),
        failed: done.failed,
        unmet: done.unmet.filter(|_| warn).map(|unmet| (unmet, limits)),
    });
}

/// Marks the pass of a base directory done when dropped, panic or not, and wakes the writer
/// threads waiting for it.
struct Running<'a>(&'a Arc<BaseDir>);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.state.lock().running = false;
        self.0.passed.notify_all();
    }
}

/// The index of a base directory of the process, locked for each look.
struct Online<'a>(&'a Arc<BaseDir>);

impl Store for Online<'_> {
    fn bytes(&self) -> u64 {
        self.0.state.lock().index.as_ref().map_or(0, Index::bytes)
    }

    fn oldest(&self, after: Option<&Place>, n: usize) -> Vec<Bucket> {
        let state = self.0.state.lock();
        state
            .index
            .as_ref()
            .map_or_else(Vec::new, |index| index.oldest(after, n))
    }

    fn forget(&self, key: &BucketKey, files: &[SegmentEntry]) {
        if let Some(index) = self.0.state.lock().index.as_mut() {
            index.forget(key, files);
        }
    }

    fn first(&self) -> Option<BucketKey> {
        let state = self.0.state.lock();
        state
            .index
            .as_ref()
            .and_then(|index| index.first().cloned())
    }
}

/// An index of a base directory of its own, as the offline program uses.
pub struct Offline(std::cell::RefCell<Index>);

impl Offline {
    /// The index of every segment under `base`, and the directories that could not be read.
    pub fn build(base: &Path) -> (Offline, Vec<crate::layout::WalkError>) {
        let (index, errors) = Index::build(base);
        (Offline(std::cell::RefCell::new(index)), errors)
    }

    /// Segments indexed.
    pub fn files(&self) -> u64 {
        self.0.borrow().files()
    }
}

impl Store for Offline {
    fn bytes(&self) -> u64 {
        self.0.borrow().bytes()
    }

    fn oldest(&self, after: Option<&Place>, n: usize) -> Vec<Bucket> {
        self.0.borrow().oldest(after, n)
    }

    fn forget(&self, key: &BucketKey, files: &[SegmentEntry]) {
        self.0.borrow_mut().forget(key, files);
    }

    fn first(&self) -> Option<BucketKey> {
        self.0.borrow().first().cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn max_bytes(max_bytes: u64) -> Limits {
        Limits {
            max_bytes,
            ..Limits::default()
        }
    }

    #[test]
    fn recorders_of_one_directory_share_the_strictest_limits_until_they_leave() {
        let dir = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let a = join(dir.path(), max_bytes(10_000), |_| ()).unwrap();
        // The same directory, named another way.
        let b = join(
            &dir.path().join("."),
            Limits {
                min_free: 1,
                ..max_bytes(5_000)
            },
            |_| (),
        )
        .unwrap();
        let unlimited = join(dir.path(), Limits::default(), |_| ()).unwrap();
        let elsewhere = join(other.path(), max_bytes(1), |_| ()).unwrap();
        let shared = Limits {
            min_free: 1,
            ..max_bytes(5_000)
        };
        assert_eq!(a.limits(), shared);
        assert_eq!(unlimited.limits(), shared);
        assert_eq!(elsewhere.limits(), max_bytes(1));
        drop(b);
        assert_eq!(a.limits(), max_bytes(10_000));
        drop(a);
        assert!(unlimited.limits().is_off());
    }

    #[test]
    fn a_segment_published_is_counted_and_one_beyond_the_limit_removes_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let removals = Arc::new(std::sync::Mutex::new(Vec::new()));
        let told = removals.clone();
        let member = join(dir.path(), max_bytes(2_500), move |r: Removal| {
            told.lock()
                .unwrap()
                .push((r.segments, r.bytes, r.oldest_kept_ms));
        })
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while member.base.state.lock().index.is_none() {
            assert!(Instant::now() < deadline, "index never built");
            std::thread::sleep(Duration::from_millis(5));
        }
        let publish = |bucket: u64| {
            for tap in ["PRE", "POST"] {
                let tap = dir.path().join("1970-01-01/c/s").join(tap);
                fs::create_dir_all(&tap).unwrap();
                let file = tap.join(format!("segment_{bucket}.wav"));
                fs::write(&file, [0u8; 1_000]).unwrap();
                member.published(&file);
            }
        };
        publish(0);
        assert!(removals.lock().unwrap().is_empty());
        publish(5_000);
        // 4,000 bytes: bucket 0 goes, on this thread, before `published` returns.
        assert_eq!(*removals.lock().unwrap(), [(2, 2_000, Some(5_000))]);
        assert_eq!(member.counters.segments.load(Ordering::Relaxed), 2);
        assert!(!dir.path().join("1970-01-01/c/s/PRE/segment_0.wav").exists());
        // A segment outside the layout is not counted.
        let stray = dir.path().join("notes.wav");
        fs::write(&stray, [0u8; 5_000]).unwrap();
        member.published(&stray);
        assert_eq!(
            member.base.state.lock().index.as_ref().unwrap().bytes(),
            2_000
        );
    }
}
