//! What segments a base directory holds, kept in memory so that retention never walks the
//! tree per segment: built once by a walk, then told of each segment published and each one
//! removed.
//!
//! Segments are kept by bucket: the PRE and POST files of one name (date directory, call,
//! station, bucket start and file index) together, as pair analysis pairs them, so that a pair
//! is removed whole. A bucket's further files (a recorder restarted in it) are buckets of their
//! own: an older recording's file goes before a newer one's. Buckets are ordered by when
//! their last file was written (its modification time), oldest first: in wall-clock mode that
//! is the order of the buckets themselves, and in running-time mode, whose bucket starts begin
//! at 0 with every recording, it is still the order in which they were recorded. Adding a
//! file, removing a bucket and finding the oldest cost a logarithm of the number of buckets.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

use crate::layout::{Found, Tap, Walk, WalkError, parse_segment_file_name};

/// A bucket of one call and station, or a further file index of it: where its files are.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BucketKey {
    /// The date directory's name.
    pub date: String,
    /// The call's directory name (escaped).
    pub trace: String,
    /// The station's directory name (escaped).
    pub station: String,
    /// Start of the bucket, ms on the recorder's timeline.
    pub bucket_ms: u64,
    /// The file index of its files (0 for `segment_<ms>.wav`).
    pub file_index: u32,
}

impl BucketKey {
    /// The directory of the bucket's `tap` files under `base`.
    pub fn tap_dir(&self, base: &Path, tap: Tap) -> PathBuf {
        base.join(&self.date)
            .join(&self.trace)
            .join(&self.station)
            .join(tap.as_str())
    }
}

/// One segment file of a bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentEntry {
    /// Its tap.
    pub tap: Tap,
    /// Its file index (0 for `segment_<ms>.wav`).
    pub file_index: u32,
    /// Its size.
    pub bytes: u64,
}

/// A bucket with its files, as the index hands it out.
#[derive(Debug, Clone)]
pub struct Bucket {
    /// Which bucket.
    pub key: BucketKey,
    /// When its last file was written.
    pub ended: SystemTime,
    /// Its files.
    pub files: Vec<SegmentEntry>,
    /// The highest file index the index has seen for its bucket start: a recorder restarting
    /// in the bucket writes the first free index, at most one above it.
    pub highest_index: u32,
}

impl Bucket {
    /// Bytes in its files.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }

    /// Whether it holds files of one tap only: a half whose partner has not come (yet).
    pub fn one_tap(&self) -> bool {
        self.files.windows(2).all(|w| w[0].tap == w[1].tap)
    }
}

/// Where a bucket stands in the order of removal.
pub type Place = (SystemTime, BucketKey);

/// The segments under a base directory, by bucket.
#[derive(Debug, Default)]
pub struct Index {
    buckets: HashMap<BucketKey, (SystemTime, Vec<SegmentEntry>)>,
    /// By call, station and bucket start, the highest file index seen (never lowered: what it
    /// is for only needs a bound).
    highest: HashMap<(String, String, u64), u32>,
    order: BTreeSet<Place>,
    bytes: u64,
    files: u64,
}

/// Where a segment file is, below a base directory: its bucket, tap and file index.
pub fn locate(relative: &Path) -> Option<(BucketKey, Tap, u32)> {
    let mut parts = relative.components().map(|c| match c {
        Component::Normal(name) => name.to_str(),
        _ => None,
    });
    let mut next = || parts.next().flatten();
    let (date, trace, station, tap, file) = (next()?, next()?, next()?, next()?, next()?);
    if next().is_some() {
        return None;
    }
    let tap = Tap::try_from(tap).ok()?;
    let (bucket_ms, file_index) = parse_segment_file_name(file)?;
    let key = BucketKey {
        date: date.to_owned(),
        trace: trace.to_owned(),
        station: station.to_owned(),
        bucket_ms,
        file_index,
    };
    Some((key, tap, file_index))
}

impl Index {
    /// An index of every segment under `base`, found by one walk. A segment that vanishes
    /// during the walk is left out; the errors of directories that could not be read are
    /// returned beside it.
    pub fn build(base: &Path) -> (Index, Vec<WalkError>) {
        let mut index = Index::default();
        let mut errors = Vec::new();
        for found in Walk::tree(base) {
            let segment = match found {
                Ok(Found::Segment(segment)) if segment.file_type.is_file() => segment,
                Ok(_) => continue,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            let Ok(relative) = segment.path.strip_prefix(base) else {
                continue;
            };
            let Some((key, tap, file_index)) = locate(relative) else {
                continue;
            };
            // Gone meanwhile (removed, uploaded): nothing to count.
            let Ok(meta) = fs::symlink_metadata(&segment.path) else {
                continue;
            };
            let ended = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            index.add(key, tap, file_index, meta.len(), ended);
        }
        (index, errors)
    }

    /// Adds a segment file; one the index holds already is left as it is. `false` if it was
    /// there.
    pub fn add(
        &mut self,
        key: BucketKey,
        tap: Tap,
        file_index: u32,
        bytes: u64,
        ended: SystemTime,
    ) -> bool {
        let entry = SegmentEntry {
            tap,
            file_index,
            bytes,
        };
        let highest = self
            .highest
            .entry((key.trace.clone(), key.station.clone(), key.bucket_ms))
            .or_default();
        *highest = (*highest).max(file_index);
        match self.buckets.get_mut(&key) {
            Some((last, files)) => {
                if files
                    .iter()
                    .any(|f| f.tap == tap && f.file_index == file_index)
                {
                    return false;
                }
                files.push(entry);
                if ended > *last {
                    self.order.remove(&(*last, key.clone()));
                    *last = ended;
                    self.order.insert((ended, key));
                }
            }
            None => {
                self.order.insert((ended, key.clone()));
                self.buckets.insert(key, (ended, vec![entry]));
            }
        }
        self.bytes += bytes;
        self.files += 1;
        true
    }

    /// Forgets the files `files` of bucket `key` (removed, or found gone); the bucket goes when
    /// it has none left.
    pub fn forget(&mut self, key: &BucketKey, files: &[SegmentEntry]) {
        let Some((ended, kept)) = self.buckets.get_mut(key) else {
            return;
        };
        kept.retain(|f| {
            let gone = files
                .iter()
                .any(|g| g.tap == f.tap && g.file_index == f.file_index);
            if gone {
                self.bytes -= f.bytes;
                self.files -= 1;
            }
            !gone
        });
        if kept.is_empty() {
            let ended = *ended;
            self.order.remove(&(ended, key.clone()));
            self.buckets.remove(key);
        }
    }

    /// Up to `n` buckets in the order of removal, from the first after `after` on.
    pub fn oldest(&self, after: Option<&Place>, n: usize) -> Vec<Bucket> {
        let range = match after {
            Some(after) => self
                .order
                .range((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded)),
            None => self.order.range(..),
        };
        range
            .take(n)
            .filter_map(|(ended, key)| {
                let (_, files) = self.buckets.get(key)?;
                let start = (key.trace.clone(), key.station.clone(), key.bucket_ms);
                Some(Bucket {
                    key: key.clone(),
                    ended: *ended,
                    files: files.clone(),
                    highest_index: self.highest.get(&start).copied().unwrap_or(0),
                })
            })
            .collect()
    }

    /// The first bucket in the order of removal: the oldest kept.
    pub fn first(&self) -> Option<&BucketKey> {
        self.order.first().map(|(_, key)| key)
    }

    /// Bytes of every segment indexed.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Segments indexed.
    pub fn files(&self) -> u64 {
        self.files
    }

    /// Buckets indexed.
    pub fn buckets(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn key(trace: &str, bucket_ms: u64) -> BucketKey {
        BucketKey {
            date: "1970-01-01".into(),
            trace: trace.into(),
            station: "st".into(),
            bucket_ms,
            file_index: 0,
        }
    }

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn buckets_come_oldest_first_by_their_last_file_with_both_taps() {
        let mut index = Index::default();
        // Running-time buckets of two recordings: the later recording restarts at 0.
        assert!(index.add(key("a", 5_000), Tap::Pre, 0, 10, at(20)));
        assert!(index.add(key("a", 0), Tap::Pre, 0, 10, at(10)));
        assert!(index.add(key("b", 0), Tap::Pre, 0, 10, at(30)));
        assert!(index.add(key("a", 0), Tap::Post, 0, 12, at(11)));
        assert!(
            !index.add(key("a", 0), Tap::Post, 0, 12, at(11)),
            "added twice"
        );
        assert_eq!((index.bytes(), index.files(), index.buckets()), (42, 4, 3));
        let order: Vec<_> = index
            .oldest(None, 10)
            .into_iter()
            .map(|b| (b.key.trace.clone(), b.key.bucket_ms, b.bytes(), b.one_tap()))
            .collect();
        assert_eq!(
            order,
            [
                ("a".to_owned(), 0, 22, false),
                ("a".to_owned(), 5_000, 10, true),
                ("b".to_owned(), 0, 10, true)
            ]
        );
        // A late file moves its bucket to where its last file says.
        index.add(key("a", 5_000), Tap::Post, 0, 1, at(40));
        let first = index.oldest(None, 1).remove(0);
        assert_eq!(first.key, key("a", 0));
        let rest = index.oldest(Some(&(first.ended, first.key)), 10);
        assert_eq!(rest.len(), 2);
        assert_eq!(rest[1].key, key("a", 5_000));
        // A further file of a bucket is a bucket of its own.
        let further = BucketKey {
            file_index: 1,
            ..key("a", 0)
        };
        index.add(further.clone(), Tap::Pre, 1, 1, at(50));
        assert_eq!(index.buckets(), 4);
        assert_eq!(index.oldest(None, 10)[3].key, further);
    }

    #[test]
    fn forgetting_every_file_of_a_bucket_forgets_the_bucket() {
        let mut index = Index::default();
        index.add(key("a", 0), Tap::Pre, 0, 10, at(1));
        index.add(key("a", 0), Tap::Post, 0, 10, at(2));
        index.add(key("a", 5_000), Tap::Pre, 0, 10, at(3));
        let bucket = index.oldest(None, 1).remove(0);
        index.forget(&bucket.key, &bucket.files[..1]);
        assert_eq!((index.bytes(), index.files(), index.buckets()), (20, 2, 2));
        index.forget(&bucket.key, &bucket.files);
        assert_eq!((index.bytes(), index.files(), index.buckets()), (10, 1, 1));
        assert_eq!(index.first(), Some(&key("a", 5_000)));
        // Forgetting what is not there changes nothing.
        index.forget(&key("zz", 1), &bucket.files);
        assert_eq!(index.files(), 1);
    }

    #[test]
    fn only_paths_of_the_layout_are_located() {
        let (key, tap, index) = locate(Path::new(
            "2026-11-21/call%3A1/stt/POST/segment_1795240805000-2.wav",
        ))
        .unwrap();
        assert_eq!(
            (key.date.as_str(), key.trace.as_str(), key.station.as_str()),
            ("2026-11-21", "call%3A1", "stt")
        );
        assert_eq!(
            (key.bucket_ms, tap, index),
            (1_795_240_805_000, Tap::Post, 2)
        );
        for path in [
            "2026-11-21/c/s/PRE/segment_1.wav.part",
            "2026-11-21/c/s/PRE/segment_1.wav.uploaded",
            "2026-11-21/c/s/MID/segment_1.wav",
            "c/s/PRE/segment_1.wav",
            "x/2026-11-21/c/s/PRE/segment_1.wav",
            "2026-11-21/c/../PRE/segment_1.wav",
        ] {
            assert!(locate(Path::new(path)).is_none(), "{path}");
        }
    }

    #[test]
    fn the_walk_indexes_segments_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let tap = dir.path().join("1970-01-01/c/s/PRE");
        fs::create_dir_all(&tap).unwrap();
        fs::create_dir_all(dir.path().join("1970-01-01/c/s/POST")).unwrap();
        for (name, len) in [
            ("segment_0.wav", 100),
            ("segment_0.wav.uploaded", 10),
            ("segment_5000.wav.part", 1_000),
            ("segment_5000-1.wav", 50),
            ("notes.txt", 7),
        ] {
            fs::write(tap.join(name), vec![0u8; len]).unwrap();
        }
        fs::write(
            dir.path().join("1970-01-01/c/s/POST/segment_0.wav"),
            [0u8; 30],
        )
        .unwrap();
        fs::write(dir.path().join("segment_0.wav"), [0u8; 3]).unwrap();
        let (index, errors) = Index::build(dir.path());
        assert!(errors.is_empty());
        assert_eq!((index.bytes(), index.files(), index.buckets()), (180, 3, 2));
    }

    #[test]
    fn files_vanishing_during_the_walk_are_left_out_never_counted_twice() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = Vec::new();
        for trace in 0..20 {
            let tap = dir.path().join(format!("1970-01-01/c{trace}/s/PRE"));
            fs::create_dir_all(&tap).unwrap();
            for b in 0..50 {
                let file = tap.join(format!("segment_{}.wav", b * 5_000));
                fs::write(&file, [0u8; 100]).unwrap();
                files.push(file);
            }
        }
        // Every other call's directory goes while the walk runs, file by file, then whole.
        let remover = {
            let dir = dir.path().to_owned();
            std::thread::spawn(move || {
                for (i, file) in files.iter().enumerate() {
                    if (i / 50) % 2 == 0 {
                        let _ = fs::remove_file(file);
                    }
                }
                for trace in (0..20).step_by(2) {
                    let _ = fs::remove_dir_all(dir.join(format!("1970-01-01/c{trace}")));
                }
            })
        };
        let (index, errors) = Index::build(dir.path());
        remover.join().unwrap();
        assert!(errors.is_empty(), "{errors:?}");
        // The calls left alone are all there, the others in part at most, each file once.
        assert!((500..=1_000).contains(&index.files()), "{}", index.files());
        assert_eq!(index.bytes(), index.files() * 100);
        assert_eq!(index.buckets() as u64, index.files());
        let (again, _) = Index::build(dir.path());
        assert_eq!(again.files(), 500);
    }
}
