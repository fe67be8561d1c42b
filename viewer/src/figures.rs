//! What each stage of a call did, bucket by bucket: the figures and alarms of the pair
//! analysis, found, compared and raised as `segmentrecorder-pairs` does (the library's
//! [`find_pairs`] and [`compare_files`], one [`StageWatch`] per station fed in bucket order),
//! with each pair's figures cached.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use gstsegmentrecorder::pair::{Alarm, Analyzer, DEFAULT_MAX_DELAY_MS, Figures, StageWatch};
use gstsegmentrecorder::pair_walk::{compare_files, find_pairs};

use crate::cache::Bounded;

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
    pub rows: Vec<Row>,
    /// Files without the other tap's.
    pub unpaired: u64,
    /// Pairs that could not be compared, and why.
    pub errors: Vec<String>,
}

/// A pair's files as they were when compared: paths, sizes, modification times.
type Key = [(PathBuf, u64, i128); 2];

/// The figures of the pairs compared so far.
pub struct FiguresCache {
    cache: Bounded<Key, Result<Figures, String>>,
}

thread_local! {
    /// Each server thread keeps its FFT plans from one pair to the next.
    static ANALYZER: RefCell<Analyzer> = RefCell::new(Analyzer::new());
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
    pub fn new() -> Self {
        FiguresCache {
            cache: Bounded::new(BUDGET_PAIRS),
        }
    }

    /// The pairs of the call whose directory name is `call_dir` under the canonical `base`, by
    /// station directory name.
    pub fn call(&self, base: &Path, call_dir: &str) -> BTreeMap<String, StationPairs> {
        let mut stations: BTreeMap<String, StationPairs> = BTreeMap::new();
        let mut watches: BTreeMap<String, StageWatch> = BTreeMap::new();
        let Ok(found) = find_pairs(base, Some(call_dir)) else {
            return stations;
        };
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
            let figures = match self.cache.get(&key) {
                Some(figures) => figures,
                None => {
                    let figures = ANALYZER.with_borrow_mut(|analyzer| {
                        compare_files(analyzer, &key[0].0, &key[1].0, DEFAULT_MAX_DELAY_MS)
                    });
                    let figures = Arc::new(figures);
                    if figures.is_ok() {
                        self.cache.insert(key, figures.clone(), 1);
                    }
                    figures
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
                Err(e) => out.errors.push(e.clone()),
            }
        }
        stations
    }
}
