//! PRE/POST pairs: where the two halves of a bucket meet, and their comparison.
//!
//! A recorder that publishes a segment offers it here as a half. The two halves of a pair are
//! the files of one call, station, bucket and file index under the `PRE` and the `POST`
//! directory: their paths differ only in the tap component (see [`crate::layout`]), so the
//! path without it is the pair's key. The first half waits; the second takes it, and the pair
//! is complete. A half whose partner does not come (one tap recorded, a partner in another
//! process, a partner given up) is forgotten after [`MAX_WAIT`], or the oldest first once
//! [`MAX_WAITING`] halves wait, and handed back so that its recorder can count it: the memory
//! for waiting halves is bounded however the recorders behave.
//!
//! A complete pair is compared ([`crate::pair`]) on a thread of its own pool, off the writer's
//! path: the writer only offers a half, which costs a map look-up. At most
//! [`MAX_COMPARING`] pairs wait for or undergo comparison; a pair beyond that is skipped and
//! counted, never queued without bound. Each comparison is reported to the recorder that
//! published the pair's second half, with the alarms it raises for its stage: the stage muted
//! the audio, its delay jumped, it clips ([`crate::pair::StageWatch`]). A stage's pairs are
//! compared one at a time, in the order they completed, which is bucket order: its alarms'
//! episodes follow its buckets however the comparing threads are scheduled.
//!
//! A half's file may be removed before its pair is compared: an upload with
//! `upload-keep-local=false` removes it once the store confirmed it, which can come before the
//! partner is published. The uploader hands such a file's content over first
//! ([`keep_before_removal`]), and the comparison reads it from there. What is kept is bounded
//! by [`MAX_KEPT_BYTES`] and given back as soon as the half's pair is compared or the half
//! forgotten.
//!
//! Mutex order: `Level::Pairs` (the halves waiting), then `Level::PairStages` (each stage's
//! queue and alarms), then `Level::PairFiles` (the files pairs need); nothing else is taken
//! while one is held.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::io;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::layout::{Identity, Tap};
use crate::lock_order::{Level, OrderedMutex};
use crate::pair::{Alarm, Analyzer, Config, Figures, StageWatch};
use crate::pool::Pool;
use crate::rebuild::{decode_segment_into, read_segment_into};

/// How long a half waits for its partner. Both taps of a bucket are published within a
/// flush interval or two of each other, whatever the segment duration; a minute also covers a
/// partner whose disk was slow for a while.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// How many halves may wait at once in the process: 4,096 recorders publishing within the
/// same minute without partner. What waits is a path and a few counters.
pub const MAX_WAITING: usize = 4_096;

/// The key of the pair `location` is a half of: its path without the tap directory. `None` for
/// a path that is not `…/<PRE|POST>/<file>`.
pub fn pair_key(location: &Path) -> Option<(Tap, PathBuf)> {
    let file = location.file_name()?;
    let tap_dir = location.parent()?;
    let tap = Tap::try_from(tap_dir.file_name()?.to_str()?).ok()?;
    Some((tap, tap_dir.parent()?.join(file)))
}

/// A complete pair.
#[derive(Debug, PartialEq, Eq)]
pub struct Pair<T> {
    /// The half of the PRE tap.
    pub pre: T,
    /// The half of the POST tap.
    pub post: T,
    /// The tap of the half that completed the pair, offered after its partner.
    pub second: Tap,
}

impl<T> Pair<T> {
    /// The half that completed the pair.
    pub fn second(&self) -> &T {
        match self.second {
            Tap::Pre => &self.pre,
            Tap::Post => &self.post,
        }
    }
}

struct Waiting<T> {
    halves: HashMap<PathBuf, (Tap, u64, T)>,
    /// Keys in the order their halves came, with when, and a number telling a half apart from
    /// a later one of the same key.
    order: VecDeque<(Instant, u64, PathBuf)>,
    next: u64,
}

/// The halves waiting in a process (or, in tests, in one meeting place).
pub struct Meeting<T> {
    waiting: OrderedMutex<Option<Waiting<T>>>,
}

impl<T> Default for Meeting<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Meeting<T> {
    /// An empty meeting place.
    pub const fn new() -> Self {
        Meeting {
            waiting: OrderedMutex::new(Level::Pairs, None),
        }
    }

    /// Offers the half published at `location` at `now`: if its partner waited, the complete
    /// pair is handed to `complete`, still under the meeting's lock so that pairs are handed on
    /// in the order they completed, and what it returns is returned; else `None` and the half
    /// waits. Halves forgotten meanwhile (too old, too many, or replaced by a later half of the
    /// same tap and key) are pushed onto `forgotten`.
    pub fn offer<R>(
        &self,
        location: &Path,
        now: Instant,
        half: T,
        forgotten: &mut Vec<T>,
        complete: impl FnOnce(Pair<T>) -> R,
    ) -> Option<R> {
        let Some((tap, key)) = pair_key(location) else {
            forgotten.push(half);
            return None;
        };
        let mut guard = self.waiting.lock();
        let waiting = guard.get_or_insert_with(|| Waiting {
            halves: HashMap::new(),
            order: VecDeque::new(),
            next: 0,
        });
        waiting.forget_old(now, forgotten);
        if let Some((other_tap, _, _)) = waiting.halves.get(&key)
            && *other_tap != tap
        {
            let (_, _, other) = waiting.halves.remove(&key).expect("just looked up");
            return Some(complete(match tap {
                Tap::Pre => Pair {
                    pre: half,
                    post: other,
                    second: tap,
                },
                Tap::Post => Pair {
                    pre: other,
                    post: half,
                    second: tap,
                },
            }));
        }
        let id = waiting.next;
        waiting.next += 1;
        if let Some((_, _, replaced)) = waiting.halves.insert(key.clone(), (tap, id, half)) {
            forgotten.push(replaced);
        }
        waiting.order.push_back((now, id, key));
        while waiting.halves.len() > MAX_WAITING {
            waiting.forget_oldest(forgotten);
        }
        None
    }

    /// Forgets, onto `forgotten`, the halves that have waited longer than [`MAX_WAIT`] at
    /// `now`: how many still wait.
    pub fn sweep(&self, now: Instant, forgotten: &mut Vec<T>) -> usize {
        let mut guard = self.waiting.lock();
        let Some(waiting) = guard.as_mut() else {
            return 0;
        };
        waiting.forget_old(now, forgotten);
        waiting.halves.len()
    }

    /// How many halves wait.
    pub fn waiting(&self) -> usize {
        self.waiting.lock().as_ref().map_or(0, |w| w.halves.len())
    }
}

impl<T> Waiting<T> {
    /// Forgets the halves that waited [`MAX_WAIT`] or longer at `now`.
    fn forget_old(&mut self, now: Instant, forgotten: &mut Vec<T>) {
        while self
            .order
            .front()
            .is_some_and(|(at, _, _)| now.saturating_duration_since(*at) >= MAX_WAIT)
        {
            self.forget_oldest(forgotten);
        }
    }

    /// Forgets the oldest half still waiting (entries of halves taken or replaced are skipped).
    fn forget_oldest(&mut self, forgotten: &mut Vec<T>) {
        while let Some((_, id, key)) = self.order.pop_front() {
            if self
                .halves
                .get(&key)
                .is_some_and(|(_, current, _)| *current == id)
            {
                let (_, _, half) = self.halves.remove(&key).expect("just looked up");
                forgotten.push(half);
                return;
            }
        }
    }
}

/// Pairs waiting for or undergoing comparison at most; more are skipped and counted. Every
/// recorder's bucket closes at the same moment of the wall clock, so pairs come in bursts: 1,000
/// pairs at once from 2,000 recorders, a second of work for the comparing threads. What waits
/// is a pair of paths, not their audio.
pub const MAX_COMPARING: usize = 4_096;

/// Bytes of removed files' content kept for the pairs that need them, at most: 400 buckets of
/// 5 s at 16 kHz. A file removed beyond it leaves its pair to be skipped and counted.
pub const MAX_KEPT_BYTES: usize = 64 << 20;

/// Stages whose last comparison is remembered for their alarms; beyond, the one whose last pair
/// is the oldest is forgotten.
const MAX_STAGES: usize = 4_096;

/// Threads that compare pairs. One comparison takes about a millisecond.
const COMPARERS: usize = 2;

/// What a recorder counts of its pairs.
#[derive(Debug, Default)]
pub struct PairCounters {
    /// Pairs whose comparison this recorder reported.
    pub compared: AtomicU64,
    /// Pairs whose second half this recorder published but that were not compared: too many
    /// comparisons at once, or a file that could no longer be read.
    pub skipped: AtomicU64,
    /// Halves this recorder published whose partner never came.
    pub unmatched: AtomicU64,
    /// Pairs queued for comparison whose report this recorder has not had yet.
    pub in_flight: AtomicU64,
    /// Set while the recorder is unblocked (flushing, or going to READY): no wait for its
    /// comparisons then.
    pub unblocked: AtomicBool,
}

impl PairCounters {
    /// Waits until every comparison queued for this recorder was reported, for at most
    /// `patience` and only while it is not unblocked: whether it got there. A comparison takes milliseconds; the bound is for a
    /// file that a hung disk holds up.
    pub fn wait_idle(&self, patience: Duration) -> bool {
        let deadline = Instant::now() + patience;
        while self.in_flight.load(Ordering::Acquire) > 0 {
            if Instant::now() >= deadline || self.unblocked.load(Ordering::Acquire) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    }
}

/// A comparison, reported to the recorder that published the pair's second half.
#[derive(Debug, Clone)]
pub struct Compared {
    /// The call and station (of the PRE half; the POST half's are the same).
    pub identity: Arc<Identity>,
    /// The bucket.
    pub bucket_ms: u64,
    /// The file index within the bucket.
    pub file_index: u32,
    /// The PRE file.
    pub pre: PathBuf,
    /// The POST file.
    pub post: PathBuf,
    /// Samples per second of both.
    pub rate: u32,
    /// What the comparison found.
    pub figures: Figures,
    /// The alarms whose episode this pair begins.
    pub alarms: Vec<Alarm>,
}

/// Where a recorder hears of its comparisons; called on a comparing thread, with no lock held.
pub type Reports = Arc<dyn Fn(Compared) + Send + Sync>;

/// How a recorder wants its pairs compared.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompareSettings {
    /// Largest delay searched either way, in ms.
    pub max_delay_ms: u32,
    /// Peak level in dBFS under which a side counts as silent.
    pub silence_threshold_dbfs: f64,
    /// RMS level in dBFS above which a 10 ms frame counts as voiced.
    pub voice_threshold_dbfs: f64,
}

/// A published segment offered for pairing.
pub struct Half {
    /// The file, as its recorder names it.
    pub location: PathBuf,
    /// The file with its directory's path made canonical ([`canonical`]): what pairs halves
    /// and tells stages apart, whatever spelling of one base directory their recorders use.
    pub key: PathBuf,
    /// Its call, station and tap.
    pub identity: Arc<Identity>,
    /// Its bucket.
    pub bucket_ms: u64,
    /// Its file index within the bucket.
    pub file_index: u32,
    /// How the recorder that published it wants pairs compared, should it be the second half.
    pub settings: CompareSettings,
    /// That recorder's counters.
    pub counters: Arc<PairCounters>,
    /// Where that recorder hears of the comparison.
    pub reports: Reports,
}

static HALVES: Meeting<Half> = Meeting::new();
/// Comparing is never urgent: when the processor is short, the streaming and writer threads
/// go first, and the comparisons of a bucket boundary's burst wait.
static COMPARING_POOL: Pool = Pool::with_spares("segrec-pair", 0).niced(10);
static COMPARING: AtomicUsize = AtomicUsize::new(0);
static STAGES: OrderedMutex<Option<HashMap<PathBuf, Stage>>> =
    OrderedMutex::new(Level::PairStages, None);
static FILES: OrderedMutex<Option<Files>> = OrderedMutex::new(Level::PairFiles, None);

/// The files of the halves waiting or queued, each with its content once its upload removed it.
#[derive(Default)]
struct Files {
    needed: HashMap<PathBuf, Option<Arc<[u8]>>>,
    kept_bytes: usize,
}

/// Notes that a pair needs the file at `location` until [`release`].
fn hold(location: &Path) {
    let mut files = FILES.lock();
    let files = files.get_or_insert_with(Files::default);
    if let Some(Some(kept)) = files.needed.insert(location.to_owned(), None) {
        files.kept_bytes -= kept.len();
    }
}

/// Notes that no pair needs the file at `location` any more, and gives back its content.
fn release(location: &Path) {
    let mut files = FILES.lock();
    if let Some(files) = files.as_mut()
        && let Some(Some(kept)) = files.needed.remove(location)
    {
        files.kept_bytes -= kept.len();
    }
}

/// Called by an upload about to remove the file at `location`, whose content is `content`:
/// if a pair still needs the file, its content is kept for it (within [`MAX_KEPT_BYTES`]).
pub fn keep_before_removal(location: &Path, content: &[u8]) {
    let mut files = FILES.lock();
    let Some(files) = files.as_mut() else { return };
    let kept_bytes = files.kept_bytes;
    if let Some(slot @ None) = files.needed.get_mut(location)
        && kept_bytes + content.len() <= MAX_KEPT_BYTES
    {
        *slot = Some(content.into());
        files.kept_bytes += content.len();
    }
}

/// Samples a side may have to be compared, at most: 4.2 million, 262 s at 16 kHz, 87 s at
/// 48 kHz, 10.9 s at 384 kHz. The comparison's memory grows with the length (some 30 bytes a
/// sample), so a pair of longer segments is skipped and counted rather than risk the process.
pub const MAX_PAIR_SAMPLES: u64 = 1 << 22;

/// The largest segment file compared: a 44-byte header and [`MAX_PAIR_SAMPLES`].
const MAX_PAIR_FILE: u64 = 44 + 2 * MAX_PAIR_SAMPLES;

/// The samples and rate of a half's file: read from disk, or from the content kept when its
/// upload removed it. `None` if it cannot be read or is too long to compare.
fn read_half(location: &Path, buffers: &mut HalfBuffers) -> Option<u32> {
    let HalfBuffers { bytes, samples } = buffers;
    let kept = || FILES.lock().as_ref()?.needed.get(location)?.clone();
    // The content is kept before the file goes: if the read fails, look again.
    if let Some(content) = kept() {
        return (content.len() as u64 <= MAX_PAIR_FILE)
            .then(|| decode_segment_into(location, &content, samples).ok())
            .flatten();
    }
    if std::fs::metadata(location).is_ok_and(|m| m.len() > MAX_PAIR_FILE) {
        return None;
    }
    match read_segment_into(location, bytes, samples) {
        Ok(rate) => Some(rate),
        Err(_) => kept()
            .filter(|content| content.len() as u64 <= MAX_PAIR_FILE)
            .and_then(|content| decode_segment_into(location, &content, samples).ok()),
    }
}

/// What a comparing thread reads one half into, kept from pair to pair: a segment's content
/// and samples are larger than what the allocator keeps for reuse, so fresh buffers would be
/// fresh pages, faulted in and zeroed, for every file.
#[derive(Default)]
struct HalfBuffers {
    bytes: Vec<u8>,
    samples: Vec<i16>,
}

/// Bytes of each buffer a comparing thread keeps between pairs: a 5 s segment at 48 kHz; what
/// a longer one took is given back.
const KEEP_HALF_BYTES: usize = 480_000 + 1_024;

impl HalfBuffers {
    fn trim(&mut self) {
        if self.bytes.capacity() > KEEP_HALF_BYTES {
            self.bytes = Vec::new();
        }
        if self.samples.capacity() * 2 > KEEP_HALF_BYTES {
            self.samples = Vec::new();
        }
    }
}

/// A stage's pairs, compared one at a time in the order they completed, that is in bucket
/// order (each tap publishes its buckets in order): its alarms' episodes follow its buckets
/// however many pairs complete at once (a recording faster than real time, a writer catching
/// up after a slow disk, EOS).
struct Stage {
    watch: StageWatch,
    queue: VecDeque<Pair<Half>>,
    /// Whether a comparing thread serves the queue.
    served: bool,
    /// When its last pair was queued.
    last: Instant,
}

/// Starts the comparing threads, if they are not running yet: an error if the system refuses
/// one.
pub fn ensure_threads() -> io::Result<()> {
    COMPARING_POOL.ensure_threads(COMPARERS)
}

/// Offers a published segment: if its partner waited, the pair is queued for comparison (or
/// skipped if [`MAX_COMPARING`] are already); halves forgotten meanwhile are counted by their
/// recorders.
pub fn offer(half: Half) {
    let mut forgotten = Vec::new();
    hold(&half.location);
    let key = half.key.clone();
    let serve = HALVES.offer(&key, Instant::now(), half, &mut forgotten, queue);
    forget(forgotten);
    schedule_sweep();
    if let Some(Some(stage)) = serve {
        COMPARING_POOL.run(move || serve_stage(&stage));
    }
}

/// Counts forgotten halves with their recorders, and gives back their files' kept content.
fn forget(forgotten: Vec<Half>) {
    for half in forgotten {
        release(&half.location);
        half.counters.unmatched.fetch_add(1, Ordering::Relaxed);
    }
}

/// How often halves that waited too long are looked for while any wait, so that they are
/// counted, and their kept content given back, even when no other segment is offered.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

static SWEEP_SCHEDULED: AtomicBool = AtomicBool::new(false);

/// Schedules a sweep of the waiting halves, unless one is.
fn schedule_sweep() {
    if !SWEEP_SCHEDULED.swap(true, Ordering::AcqRel) {
        COMPARING_POOL.run_at(Instant::now() + SWEEP_EVERY, sweep);
    }
}

/// Forgets the halves that waited too long, and comes back while any still wait.
fn sweep() {
    let mut forgotten = Vec::new();
    HALVES.sweep(Instant::now(), &mut forgotten);
    forget(forgotten);
    // Cleared before looking again: a half offered meanwhile either is seen here or schedules
    // the next sweep itself.
    SWEEP_SCHEDULED.store(false, Ordering::Release);
    if HALVES.waiting() > 0 {
        schedule_sweep();
    }
}

/// `location` with its directory's path made canonical (absolute, no `.`, `..` or symbolic
/// link), so that recorders spelling one base directory differently (`rec`, `./rec`, an
/// absolute path) pair up; `location` itself if that fails.
pub fn canonical(location: &Path) -> PathBuf {
    let (Some(dir), Some(name)) = (location.parent(), location.file_name()) else {
        return location.to_owned();
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::fs::canonicalize(dir).map_or_else(|_| location.to_owned(), |dir| dir.join(name))
}

/// The stage a pair belongs to: its base directory, trace and station, without the date
/// directory, so that a call going on past midnight stays one stage.
fn stage_of(location: &Path) -> PathBuf {
    let station = location.parent().and_then(Path::parent);
    let trace = station.and_then(Path::parent);
    let base = trace.and_then(Path::parent).and_then(Path::parent);
    match (
        base,
        trace.and_then(Path::file_name),
        station.and_then(Path::file_name),
    ) {
        (Some(base), Some(trace), Some(station)) => base.join(trace).join(station),
        _ => PathBuf::new(),
    }
}

/// Queues a pair just completed (under the meeting's lock) on its stage, or skips it if
/// [`MAX_COMPARING`] wait already: the stage to serve, if no thread serves it yet.
fn queue(pair: Pair<Half>) -> Option<PathBuf> {
    // The second half, the one offered now, is the one whose recorder reports.
    let counters = &pair.second().counters;
    if COMPARING.fetch_add(1, Ordering::AcqRel) >= MAX_COMPARING {
        COMPARING.fetch_sub(1, Ordering::AcqRel);
        counters.skipped.fetch_add(1, Ordering::Relaxed);
        release(&pair.pre.location);
        release(&pair.post.location);
        return None;
    }
    counters.in_flight.fetch_add(1, Ordering::AcqRel);
    let key = stage_of(&pair.pre.key);
    let mut stages = STAGES.lock();
    let stages = stages.get_or_insert_with(HashMap::new);
    if stages.len() >= MAX_STAGES && !stages.contains_key(&key) {
        // The stage whose last pair is the oldest goes, most likely one of a call that ended;
        // a stage being served keeps its queue.
        let oldest = stages
            .iter()
            .filter(|(_, stage)| !stage.served)
            .min_by_key(|(_, stage)| stage.last)
            .map(|(key, _)| key.clone());
        if let Some(oldest) = oldest {
            stages.remove(&oldest);
        }
    }
    let stage = stages.entry(key.clone()).or_insert_with(|| Stage {
        watch: StageWatch::default(),
        queue: VecDeque::new(),
        served: false,
        last: Instant::now(),
    });
    stage.last = Instant::now();
    stage.queue.push_back(pair);
    (!std::mem::replace(&mut stage.served, true)).then_some(key)
}

/// Compares the stage's queued pairs, in order, until its queue is empty.
fn serve_stage(key: &Path) {
    loop {
        let pair = {
            let mut stages = STAGES.lock();
            let Some(stage) = stages.as_mut().and_then(|s| s.get_mut(key)) else {
                return;
            };
            match stage.queue.pop_front() {
                Some(pair) => pair,
                None => {
                    stage.served = false;
                    return;
                }
            }
        };
        let second = pair.second();
        // A panic in a comparison skips that pair; the stage's later pairs are still served.
        match std::panic::catch_unwind(AssertUnwindSafe(|| compare(&pair))) {
            Ok(Some((rate, figures))) => {
                let alarms = STAGES
                    .lock()
                    .as_mut()
                    .and_then(|s| s.get_mut(key))
                    .map_or_else(Vec::new, |stage| stage.watch.observe(&figures));
                second.counters.compared.fetch_add(1, Ordering::Relaxed);
                (second.reports)(Compared {
                    identity: pair.pre.identity.clone(),
                    bucket_ms: pair.pre.bucket_ms,
                    file_index: pair.pre.file_index,
                    pre: pair.pre.location.clone(),
                    post: pair.post.location.clone(),
                    rate,
                    figures,
                    alarms,
                });
            }
            _ => {
                second.counters.skipped.fetch_add(1, Ordering::Relaxed);
            }
        }
        release(&pair.pre.location);
        release(&pair.post.location);
        second.counters.in_flight.fetch_sub(1, Ordering::AcqRel);
        COMPARING.fetch_sub(1, Ordering::AcqRel);
    }
}

thread_local! {
    static ANALYZER: RefCell<Analyzer> = RefCell::new(Analyzer::new());
    static HALVES_READ: RefCell<[HalfBuffers; 2]> = RefCell::default();
}

/// Reads and compares a pair as its second half's recorder asks: the rate and the figures, or
/// `None` if a file could not be read (the disk failed, or it was removed with no room to keep
/// its content) or the two rates differ.
fn compare(pair: &Pair<Half>) -> Option<(u32, Figures)> {
    HALVES_READ.with(|halves| {
        let [pre, post] = &mut *halves.borrow_mut();
        // POST is not read when PRE could not be.
        let compared = read_half(&pair.pre.location, pre)
            .and_then(|rate| (read_half(&pair.post.location, post)? == rate).then_some(rate))
            .map(|rate| analyze(pair, &pre.samples, &post.samples, rate));
        pre.trim();
        post.trim();
        compared
    })
}

/// Compares the samples of a pair's two halves as its second half's recorder asks.
fn analyze(pair: &Pair<Half>, pre: &[i16], post: &[i16], pre_rate: u32) -> (u32, Figures) {
    let settings = pair.second().settings;
    let config = Config {
        silence_threshold_dbfs: settings.silence_threshold_dbfs,
        voice_threshold_dbfs: settings.voice_threshold_dbfs,
        ..Config::new(pre_rate).with_max_delay_ms(settings.max_delay_ms)
    };
    let figures = ANALYZER.with(|a| a.borrow_mut().analyze(pre, post, &config));
    (pre_rate, figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(tap: &str, bucket: u64) -> PathBuf {
        PathBuf::from(format!(
            "/rec/1970-01-01/call/stt/{tap}/segment_{bucket}.wav"
        ))
    }

    #[test]
    fn the_second_half_completes_the_pair_whichever_tap_comes_first() {
        let meeting = Meeting::new();
        let now = Instant::now();
        let mut forgotten = Vec::new();
        assert_eq!(
            meeting.offer(&path("POST", 0), now, "post 0", &mut forgotten, |p| p),
            None
        );
        assert_eq!(
            meeting.offer(&path("PRE", 5_000), now, "pre 5", &mut forgotten, |p| p),
            None
        );
        assert_eq!(
            meeting.offer(&path("PRE", 0), now, "pre 0", &mut forgotten, |p| p),
            Some(Pair {
                pre: "pre 0",
                post: "post 0",
                second: Tap::Pre,
            })
        );
        assert_eq!(
            meeting.offer(&path("POST", 5_000), now, "post 5", &mut forgotten, |p| p),
            Some(Pair {
                pre: "pre 5",
                post: "post 5",
                second: Tap::Post,
            })
        );
        assert!(forgotten.is_empty());
        assert_eq!(meeting.waiting(), 0);
    }

    #[test]
    fn halves_of_other_calls_buckets_or_files_do_not_pair() {
        let meeting = Meeting::new();
        let now = Instant::now();
        let mut forgotten = Vec::new();
        let other = [
            "/rec/1970-01-01/call-2/stt/POST/segment_0.wav",
            "/rec/1970-01-01/call/tts/POST/segment_0.wav",
            "/rec/1970-01-02/call/stt/POST/segment_0.wav",
            "/rec/1970-01-01/call/stt/POST/segment_0-1.wav",
            "/rec/1970-01-01/call/stt/POST/segment_5000.wav",
        ];
        assert_eq!(
            meeting.offer(&path("PRE", 0), now, 0, &mut forgotten, |p| p),
            None
        );
        for (i, p) in other.iter().enumerate() {
            assert_eq!(
                meeting.offer(Path::new(p), now, i + 1, &mut forgotten, |p| p),
                None
            );
        }
        // A second half of the same tap replaces the first, which is forgotten.
        assert_eq!(
            meeting.offer(&path("PRE", 0), now, 9, &mut forgotten, |p| p),
            None
        );
        assert_eq!(forgotten, [0]);
        assert_eq!(meeting.waiting(), 6);
    }

    #[test]
    fn waiting_is_bounded_in_time_and_number() {
        let meeting = Meeting::new();
        let start = Instant::now();
        let mut forgotten = Vec::new();
        meeting.offer(&path("PRE", 0), start, 0, &mut forgotten, |p| p);
        // A partner later than MAX_WAIT finds nothing: the half was forgotten.
        let late = start + MAX_WAIT;
        assert_eq!(
            meeting.offer(&path("POST", 0), late, 1, &mut forgotten, |p| p),
            None
        );
        assert_eq!(forgotten, [0]);
        forgotten.clear();
        for bucket in 1..=MAX_WAITING as u64 + 10 {
            meeting.offer(&path("PRE", bucket), late, bucket, &mut forgotten, |p| p);
        }
        assert_eq!(meeting.waiting(), MAX_WAITING);
        // The oldest went first: the POST half of bucket 0, then PRE 1 to 10.
        assert_eq!(forgotten, [1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    }

    #[test]
    fn a_path_outside_the_layout_is_handed_back() {
        let meeting = Meeting::new();
        let mut forgotten = Vec::new();
        let odd = Path::new("/rec/segment_0.wav");
        assert_eq!(
            meeting.offer(odd, Instant::now(), 7, &mut forgotten, |p| p),
            None
        );
        assert_eq!(forgotten, [7]);
        assert_eq!(meeting.waiting(), 0);
    }

    #[test]
    fn removed_files_content_is_kept_only_while_needed_and_within_bounds() {
        let kept_bytes = || FILES.lock().as_ref().map_or(0, |f| f.kept_bytes);
        let needed = Path::new("/rec/1970-01-01/kept/stt/PRE/segment_0.wav");
        let other = Path::new("/rec/1970-01-01/kept/stt/PRE/segment_5000.wav");
        // A file no pair needs is not kept.
        keep_before_removal(other, &[1, 2, 3]);
        assert_eq!(kept_bytes(), 0);
        hold(needed);
        // Beyond the bound, nothing is kept: the pair will be skipped.
        keep_before_removal(needed, &vec![0; MAX_KEPT_BYTES + 1]);
        assert_eq!(kept_bytes(), 0);
        keep_before_removal(needed, &[1, 2, 3, 4]);
        assert_eq!(kept_bytes(), 4);
        let content = FILES.lock().as_ref().unwrap().needed[needed].clone();
        assert_eq!(content.as_deref(), Some(&[1u8, 2, 3, 4][..]));
        release(needed);
        assert_eq!(kept_bytes(), 0);
        assert!(!FILES.lock().as_ref().unwrap().needed.contains_key(needed));
    }

    #[test]
    fn waiting_for_comparisons_ends_when_the_recorder_is_unblocked() {
        let counters = PairCounters::default();
        assert!(counters.wait_idle(Duration::from_secs(5)));
        counters.in_flight.store(1, Ordering::Release);
        let start = Instant::now();
        assert!(!counters.wait_idle(Duration::from_millis(50)));
        assert!(start.elapsed() >= Duration::from_millis(50));
        counters.unblocked.store(true, Ordering::Release);
        let start = Instant::now();
        assert!(!counters.wait_idle(Duration::from_secs(60)));
        assert!(start.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_sweep_forgets_only_the_halves_that_waited_too_long() {
        let meeting = Meeting::new();
        let start = Instant::now();
        let mut forgotten = Vec::new();
        assert_eq!(meeting.sweep(start, &mut forgotten), 0);
        meeting.offer(&path("PRE", 0), start, 0, &mut forgotten, |p| p);
        let later = start + MAX_WAIT / 2;
        meeting.offer(&path("PRE", 5_000), later, 5, &mut forgotten, |p| p);
        assert_eq!(meeting.sweep(later, &mut forgotten), 2);
        assert!(forgotten.is_empty());
        assert_eq!(meeting.sweep(start + MAX_WAIT, &mut forgotten), 1);
        assert_eq!(forgotten, [0]);
        assert_eq!(meeting.sweep(later + MAX_WAIT, &mut forgotten), 0);
        assert_eq!(forgotten, [0, 5]);
    }
}
