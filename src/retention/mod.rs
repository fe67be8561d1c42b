//! Retention: the segments under a base directory are kept within a size, an age and the free
//! space of their file system by removing the oldest buckets, PRE and POST together.
//!
//! Recorders of one process that record into one base directory (the same directory, however
//! its path is spelt: they are told apart by its canonical path) share one [`BaseDir`]: one
//! [`index`] of its segments and one policy, whose every limit is the strictest that any of them
//! sets ([`Limits::strictest`]). A recorder joins it when it starts ([`join`]) and leaves it when
//! its [`Member`] is dropped.
//!
//! The index is built once, by a walk on the retention thread, when the first recorder of the
//! process joins; from then on each recorder tells it of the segments it publishes
//! ([`Member::published`], on the writer thread that published them: a `stat`, no walk). When
//! the segments exceed a limit, a pass ([`prune::pass`]) runs on the retention thread, never on
//! a streaming or writer thread: it takes the oldest buckets from the index a few at a time,
//! looks at the disk only for those that would go, and removes them. What it did is told to the
//! recorder whose segment asked for it. A pass that cannot meet the limits because everything
//! that would go is protected is told once, until a pass meets them again; the next pass after
//! such a one waits [`BLOCKED_PAUSE`], so that a long backlog of protected buckets is not
//! looked at for every segment.
//!
//! Mutex order: the registry of base directories (`Level::RetentionBases`), then a base
//! directory's state (`Level::RetentionIndex`), then the pool's; no file is touched and no
//! report is made while either is held.

pub mod index;
pub mod policy;
pub mod prune;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use crate::layout::Tap;
use crate::lock_order::{Level, OrderedMutex};
use crate::pool::Pool;
use index::{Bucket, BucketKey, Index, Place, SegmentEntry};
pub use policy::{Limits, Unmet};
use prune::{Pass, Store};

/// After a pass that could not meet the limits, the next one waits this long.
pub const BLOCKED_PAUSE: Duration = Duration::from_secs(5);

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
}

#[derive(Default)]
struct Shared {
    /// The recorders: their limits, and where to tell what a pass did.
    members: Vec<(u64, Limits, Weak<Member>)>,
    /// `None` until the walk that builds it is done.
    index: Option<Index>,
    /// Segments published while the index was being built.
    early: Vec<(BucketKey, Tap, u32, u64, SystemTime)>,
    /// A pass is queued or running.
    scheduled: bool,
    /// A pass was asked for while one ran.
    again: bool,
    /// No pass before this (after a pass that could not meet the limits).
    not_before: Option<Instant>,
    /// The recorder whose segment asked for the next pass.
    asker: Weak<Member>,
    /// The limits were found unmet and that was told.
    warned: bool,
}

impl Shared {
    fn limits(&self) -> Limits {
        self.members
            .iter()
            .map(|(_, limits, _)| *limits)
            .reduce(Limits::strictest)
            .unwrap_or_default()
    }

    /// Whether the segments published so far may call for removals.
    fn over(&self) -> bool {
        let limits = self.limits();
        let bytes = self.index.as_ref().map_or(0, Index::bytes);
        !limits.max_age.is_zero() || limits.min_free > 0 || limits.excess(bytes, None) > 0
    }
}

/// A recorder's place in the retention of its base directory; leaves it when dropped.
pub struct Member {
    base: Arc<BaseDir>,
    /// The base directory as the recorder names it, which its segments' paths start with.
    own_base: PathBuf,
    id: u64,
    report: ReportFn,
    /// What the passes told this recorder of.
    pub counters: Counters,
}

/// Has the recorder recording into `base_dir` (which exists) take part in its retention with
/// `limits`; `report` is told, on the retention thread, what passes it asked for did. An error
/// if the directory cannot be resolved or the retention thread cannot start.
pub fn join(
    base_dir: &Path,
    limits: Limits,
    report: impl Fn(Removal) + Send + Sync + 'static,
) -> io::Result<Arc<Member>> {
    RETENTION.ensure_threads(1)?;
    let path = fs::canonicalize(base_dir)?;
    let (base, created) = {
        let mut bases = BASES.lock();
        bases.retain(|b| b.strong_count() > 0);
        match bases
            .iter()
            .filter_map(Weak::upgrade)
            .find(|b| b.path == path)
        {
            Some(base) => (base, false),
            None => {
                let base = Arc::new(BaseDir {
                    path,
                    state: OrderedMutex::new(Level::RetentionIndex, Shared::default()),
                });
                bases.push(Arc::downgrade(&base));
                (base, true)
            }
        }
    };
    let member = Arc::new(Member {
        base: base.clone(),
        own_base: base_dir.to_owned(),
        id: MEMBERS.fetch_add(1, Ordering::Relaxed),
        report: Box::new(report),
        counters: Counters::default(),
    });
    {
        let mut state = base.state.lock();
        state
            .members
            .push((member.id, limits, Arc::downgrade(&member)));
        if created {
            state.scheduled = true;
            state.asker = Arc::downgrade(&member);
        } else if state.index.is_some() && state.over() {
            // Stricter limits apply at once.
            request(&base, &mut state, &member);
        }
    }
    if created {
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
        // Gone already (an upload that removed it): nothing to count.
        let Ok(meta) = fs::metadata(location) else {
            return;
        };
        let ended = meta.modified().unwrap_or_else(|_| SystemTime::now());
        let mut state = self.base.state.lock();
        match &mut state.index {
            Some(index) => {
                index.add(key, tap, file_index, meta.len(), ended);
            }
            None => state.early.push((key, tap, file_index, meta.len(), ended)),
        }
        if state.index.is_some() && state.over() {
            request(&self.base, &mut state, self);
        }
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
    }
}

/// Queues a pass over `base` asked for by `asker`, or has the running one go again.
fn request(base: &Arc<BaseDir>, state: &mut Shared, asker: &Arc<Member>) {
    state.asker = Arc::downgrade(asker);
    if state.scheduled {
        state.again = true;
        return;
    }
    state.scheduled = true;
    let base = base.clone();
    match state.not_before {
        Some(at) if at > Instant::now() => RETENTION.run_at(at, move || run_pass(base)),
        _ => RETENTION.run(move || run_pass(base)),
    }
}

/// Builds the index of `base` by a walk, then runs the first pass.
fn build(base: Arc<BaseDir>) {
    let _pass = Scheduled(&base);
    let (mut index, _unreadable) = Index::build(&base.path);
    let mut state = base.state.lock();
    for (key, tap, file_index, bytes, ended) in state.early.drain(..) {
        index.add(key, tap, file_index, bytes, ended);
    }
    state.index = Some(index);
    drop(state);
    pass_now(&base);
}

/// Runs a pass over `base`.
fn run_pass(base: Arc<BaseDir>) {
    let _pass = Scheduled(&base);
    pass_now(&base);
}

/// A pass over `base` on this thread, marked scheduled by the caller; its outcome told.
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
                state.not_before = Some(Instant::now() + BLOCKED_PAUSE);
                !std::mem::replace(&mut state.warned, true)
            }
            None => {
                state.not_before = None;
                state.warned = false;
                false
            }
        };
        // The asker, or any recorder still there.
        let asker = state.asker.upgrade().or_else(|| {
            state
                .members
                .iter()
                .find_map(|(_, _, member)| member.upgrade())
        });
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

/// Marks the pass of a base directory done when dropped, panic or not, and queues the next one
/// if it was asked for meanwhile.
struct Scheduled<'a>(&'a Arc<BaseDir>);

impl Drop for Scheduled<'_> {
    fn drop(&mut self) {
        let mut state = self.0.state.lock();
        state.scheduled = false;
        if std::mem::take(&mut state.again)
            && let Some(asker) = state.asker.upgrade()
        {
            request(self.0, &mut state, &asker);
        }
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
