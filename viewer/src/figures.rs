//! What each stage of a call did, bucket by bucket: the figures and alarms of the pair
//! analysis, found, compared and raised as `segmentrecorder-pairs` does (the library's
//! [`find_pairs`] and [`compare_files`], one [`StageWatch`] per station fed in bucket order),
//! with each pair's figures cached.
//!
//! Comparing pairs takes time (a few ms each: seconds for a long call), so it never happens on
//! a request's thread: a request queues the pairs not compared yet for the one comparing
//! thread and answers with what is ready. A station's rows stop at its first pair not
//! compared yet, since the alarms of the pairs after it depend on it; the answer says how many
//! are pending, and the page asks again.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;

use gstsegmentrecorder::pair::{Alarm, Analyzer, DEFAULT_MAX_DELAY_MS, Figures, StageWatch};
use gstsegmentrecorder::pair_walk::{compare_files, find_pairs};

use crate::cache::Bounded;
use crate::tree::below;

/// Pairs whose figures are kept (about 150 bytes each).
const BUDGET_PAIRS: u64 = 200_000;

/// One compared pair.
#[derive(Debug, Clone)]
pub struct Row {
    pub bucket_ms: u64,
    pub file_index: u32,
    pub figures: Figures,
    pub alarms: Vec<Alarm>,
}

/// What one station of a call did.
#[derive(Debug, Default, Clone)]
pub struct StationPairs {
    /// The pairs compared, in bucket order, up to the first one not compared yet.
    pub rows: Vec<Row>,
    /// Pairs not compared yet.
    pub pending: u64,
    /// Files without the other tap's.
    pub unpaired: u64,
    /// Pairs that could not be compared, and why.
    pub errors: Vec<String>,
}

/// A pair's files as they were when compared: paths, sizes, modification times.
type Key = [(PathBuf, u64, i128); 2];

/// The pairs waiting for the comparing thread, and those queued or being compared.
#[derive(Default)]
struct Queue {
    waiting: VecDeque<Key>,
    queued: HashSet<Key>,
}

struct Shared {
    cache: Bounded<Key, Result<Figures, String>>,
    queue: Mutex<Queue>,
    work: Condvar,
}

impl Shared {
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The comparing thread: pairs in the order they were queued, until the process ends.
    fn compare_forever(&self) {
        let mut analyzer = Analyzer::new();
        loop {
            let key = {
                let mut queue = self.queue();
                loop {
                    if let Some(key) = queue.waiting.pop_front() {
                        break key;
                    }
                    queue = self
                        .work
                        .wait(queue)
                        .unwrap_or_else(PoisonError::into_inner);
                }
            };
            let figures = compare_files(&mut analyzer, &key[0].0, &key[1].0, DEFAULT_MAX_DELAY_MS);
            // An error is kept too: the same files give the same error, and a file replaced
            // has another key.
            self.cache.insert(key.clone(), Arc::new(figures), 1);
            self.queue().queued.remove(&key);
        }
    }
}

/// The figures of the pairs compared so far, and the thread comparing the others.
pub struct FiguresCache {
    shared: Arc<Shared>,
}

fn stamp(path: &Path) -> Option<(PathBuf, u64, i128)> {
    use std::os::unix::fs::MetadataExt;
    let meta = fs::symlink_metadata(path).ok()?;
    // A segment that is a symbolic link is no segment of this base directory.
    meta.is_file().then(|| {
        (
            path.to_owned(),
            meta.size(),
            i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        )
    })
}

impl FiguresCache {
    /// An empty cache, and its comparing thread.
    pub fn new() -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            cache: Bounded::new(BUDGET_PAIRS),
            queue: Mutex::new(Queue::default()),
            work: Condvar::new(),
        });
        let worker = shared.clone();
        thread::Builder::new()
            .name("compare".into())
            .spawn(move || worker.compare_forever())?;
        Ok(FiguresCache { shared })
    }

    /// The pairs of the call whose directory name is `call_dir` under the canonical `base`, by
    /// station directory name, as far as they are compared; the others are queued.
    pub fn call(&self, base: &Path, call_dir: &str) -> BTreeMap<String, StationPairs> {
        let mut stations: BTreeMap<String, StationPairs> = BTreeMap::new();
        let mut watches: BTreeMap<String, StageWatch> = BTreeMap::new();
        let Ok(found) = find_pairs(base, Some(call_dir)) else {
            return stations;
        };
        let mut to_queue = Vec::new();
        for ((_, _, station, bucket_ms, file_index), sides) in found.pairs {
            let out = stations.entry(station.clone()).or_default();
            let [Some(pre), Some(post)] = sides else {
                out.unpaired += 1;
                continue;
            };
            let (Some(pre), Some(post)) = (stamp(&pre), stamp(&post)) else {
                continue;
            };
            let inside = [&pre.0, &post.0]
                .iter()
                .all(|p| fs::canonicalize(p).is_ok_and(|real| real.starts_with(base)));
            if !inside {
                continue;
            }
            let key = [pre, post];
            let figures = match self.shared.cache.get(&key) {
                Some(figures) if out.pending == 0 => figures,
                Some(_) => {
                    out.pending += 1;
                    continue;
                }
                None => {
                    out.pending += 1;
                    to_queue.push(key);
                    continue;
                }
            };
            match figures.as_ref() {
                Ok(figures) => {
                    let alarms = watches.entry(station).or_default().observe(figures);
                    out.rows.push(Row {
                        bucket_ms,
                        file_index,
                        figures: *figures,
                        alarms,
                    });
                }
                Err(e) => out.errors.push(below(base, e)),
            }
        }
        if !to_queue.is_empty() {
            let mut queue = self.shared.queue();
            for key in to_queue {
                if queue.queued.insert(key.clone()) {
                    queue.waiting.push_back(key);
                }
            }
            drop(queue);
            self.shared.work.notify_one();
        }
        stations
    }
}
