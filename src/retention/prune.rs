//! One retention pass over a base directory: the buckets of an index offered to a [`Plan`]
//! oldest first, protection looked up on disk for those that would go, and the files of those
//! that go removed with their marks and the directories they leave empty. The recorders' passes
//! and `segmentrecorder-prune` both run [`pass`].
//!
//! Files may vanish under a pass (an upload that removes its local file, another process's
//! retention, a user): a file already gone is forgotten, not counted, and never an error.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::index::{Bucket, BucketKey, Place, SegmentEntry};
use super::policy::{Limits, Plan, Protection, Unmet, Verdict};
use crate::layout::{Tap, part_file_name, segment_file_name, uploaded_mark_name};

/// Most buckets taken from the index at a time: the index is not held while files are looked
/// at. The first batch is one bucket, the usual need of a pass, and each next one twice as many.
const BATCH: usize = 32;

/// Where a pass finds the buckets of a base directory, and forgets those removed.
pub trait Store {
    /// Bytes of every segment the store knows.
    fn bytes(&self) -> u64;
    /// Up to `n` buckets in the order of removal, from the first after `after` on.
    fn oldest(&self, after: Option<&Place>, n: usize) -> Vec<Bucket>;
    /// Forgets files of a bucket (removed, or gone).
    fn forget(&self, key: &BucketKey, files: &[SegmentEntry]);
    /// The oldest bucket left.
    fn first(&self) -> Option<BucketKey>;
    /// Whether a recorder the store knows of is writing a file of the bucket start of `key`
    /// (any file index, either tap).
    fn writing(&self, _key: &BucketKey) -> bool {
        false
    }
}

/// What a pass did (or, in a dry run, would do).
#[derive(Debug, Default)]
pub struct Pass {
    /// Segments removed.
    pub segments: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Every file removed: segments and their `.uploaded` marks.
    pub removed: Vec<PathBuf>,
    /// Directories removed because they were left empty.
    pub dirs: Vec<PathBuf>,
    /// Files that could not be removed, and why.
    pub failed: Vec<(PathBuf, io::Error)>,
    /// Whether the size limits stay unmet, everything older being protected.
    pub unmet: Option<Unmet>,
    /// The oldest bucket left.
    pub oldest_kept: Option<BucketKey>,
}

/// Runs one pass of `limits` over the buckets of `store` under `base` at `now`; with
/// `dry_run`, removes nothing and tells what it would remove.
pub fn pass(
    base: &Path,
    limits: &Limits,
    store: &dyn Store,
    dry_run: bool,
    now: SystemTime,
) -> Pass {
    let free = if limits.min_free > 0 {
        free_bytes(base).ok()
    } else {
        None
    };
    let mut plan = Plan::new(limits, store.bytes(), free, now);
    let mut done = Pass::default();
    let mut after: Option<Place> = None;
    let mut n = 1;
    'walk: while plan.needed() {
        let batch = store.oldest(after.as_ref(), n);
        n = (n * 2).min(BATCH);
        if batch.is_empty() {
            break;
        }
        for bucket in batch {
            after = Some((bucket.ended, bucket.key.clone()));
            let verdict = plan.offer(bucket.bytes(), bucket.ended, || {
                if store.writing(&bucket.key) {
                    Protection::Held
                } else {
                    protected(base, &bucket, limits, now)
                }
            });
            match verdict {
                Verdict::Stop => break 'walk,
                Verdict::Protected => (),
                Verdict::Remove => {
                    remove(base, &bucket, dry_run, &mut done);
                    if !dry_run {
                        // Failures too: a file that cannot be removed is not tried at every pass.
                        store.forget(&bucket.key, &bucket.files);
                    }
                }
            }
        }
    }
    done.unmet = plan.unmet();
    done.oldest_kept = if dry_run {
        after_dry_run(base, store, &done)
    } else {
        store.first()
    };
    done
}

/// In a dry run nothing was forgotten: the oldest bucket that would be left.
fn after_dry_run(base: &Path, store: &dyn Store, done: &Pass) -> Option<BucketKey> {
    let mut after: Option<Place> = None;
    loop {
        let batch = store.oldest(after.as_ref(), BATCH);
        if batch.is_empty() {
            return None;
        }
        for bucket in batch {
            let gone = bucket
                .files
                .iter()
                .all(|f| done.removed.contains(&file_path(base, &bucket.key, f)));
            if !gone {
                return Some(bucket.key);
            }
            after = Some((bucket.ended, bucket.key));
        }
    }
}

/// Where a file of a bucket is.
pub fn file_path(base: &Path, key: &BucketKey, file: &SegmentEntry) -> PathBuf {
    key.tap_dir(base, file.tap)
        .join(segment_file_name(key.bucket_ms, file.file_index))
}

/// How long a bucket with one tap's file only stays, for its partner to be published and the
/// pair compared. Both taps of a bucket are published within a flush interval or two of each
/// other; a recorder whose other tap is recorded elsewhere, or not at all, must not keep a
/// minute of audio beyond the limit for a partner that never comes.
const LONE_HALF_WAIT: Duration = Duration::from_secs(5);

/// Whether the `.part` at `part` is being written: there, and locked by its writer. A `.part`
/// whose writer died (unlocked, left for recovery) holds nothing back. When it cannot be told,
/// it is taken to be in use.
fn part_in_use(part: &Path) -> bool {
    match fs::File::open(part) {
        Ok(file) => file.try_lock().is_err(),
        Err(e) => e.kind() != io::ErrorKind::NotFound,
    }
}

/// Whether `bucket` must stay, as the disk tells. Held while a recorder writes a file of its
/// bucket start (a `.part` of it in either tap), so that a recorder restarting there finds the
/// same free name for PRE and POST; kept while it is a half waiting for its partner, or, when
/// unconfirmed uploads are kept, while a file is not yet confirmed uploaded.
fn protected(base: &Path, bucket: &Bucket, limits: &Limits, now: SystemTime) -> Protection {
    // A `.part` of its own name, or, for a recorder restarting in the bucket, of the first free
    // index, at most one above the highest there was.
    for tap in [Tap::Pre, Tap::Post] {
        let dir = bucket.key.tap_dir(base, tap);
        for index in 0..=bucket.highest_index + 1 {
            let part = dir.join(part_file_name(&segment_file_name(
                bucket.key.bucket_ms,
                index,
            )));
            if part_in_use(&part) {
                return Protection::Held;
            }
        }
    }
    // A lone half is compared once its partner is published, a flush interval or two later.
    if bucket.one_tap()
        && now
            .duration_since(bucket.ended)
            .map_or(true, |age| age < LONE_HALF_WAIT)
    {
        return Protection::Kept;
    }
    let unconfirmed = limits.keep_unuploaded
        && bucket.files.iter().any(|f| {
            let path = file_path(base, &bucket.key, f);
            let mark = path.with_file_name(uploaded_mark_name(&segment_file_name(
                bucket.key.bucket_ms,
                f.file_index,
            )));
            // Neither confirmed (marked) nor gone already: it holds the bucket back.
            !mark.try_exists().unwrap_or(false) && path.try_exists().unwrap_or(true)
        });
    if unconfirmed {
        Protection::Kept
    } else {
        Protection::None
    }
}

/// Removes the files of `bucket`, their marks, and the directories left empty.
fn remove(base: &Path, bucket: &Bucket, dry_run: bool, done: &mut Pass) {
    for file in &bucket.files {
        let path = file_path(base, &bucket.key, file);
        let mark = path.with_file_name(uploaded_mark_name(&segment_file_name(
            bucket.key.bucket_ms,
            file.file_index,
        )));
        for (what, is_segment) in [(path, true), (mark, false)] {
            let result = if dry_run {
                fs::symlink_metadata(&what).map(drop)
            } else {
                fs::remove_file(&what)
            };
            match result {
                Ok(()) => {
                    if is_segment {
                        done.segments += 1;
                        done.bytes += file.bytes;
                    }
                    done.removed.push(what);
                }
                // Gone already, removed by its upload: its mark stays, the tombstone that keeps
                // its name from being given again.
                Err(e) if e.kind() == io::ErrorKind::NotFound && is_segment => break,
                Err(e) if e.kind() == io::ErrorKind::NotFound => (),
                Err(e) => done.failed.push((what, e)),
            }
        }
    }
    if dry_run {
        return;
    }
    // The taps, then the station, the call and the date, each only if left empty.
    for tap in [Tap::Pre, Tap::Post] {
        remove_empty(&bucket.key.tap_dir(base, tap), done);
    }
    let station = base
        .join(&bucket.key.date)
        .join(&bucket.key.trace)
        .join(&bucket.key.station);
    for dir in station.ancestors().take(3) {
        if !remove_empty(dir, done) {
            break;
        }
    }
}

/// Removes `dir` if it is empty; whether it is gone.
fn remove_empty(dir: &Path, done: &mut Pass) -> bool {
    match fs::remove_dir(dir) {
        Ok(()) => {
            done.dirs.push(dir.to_owned());
            true
        }
        Err(e) => e.kind() == io::ErrorKind::NotFound,
    }
}

/// Bytes free for unprivileged users on the file system of `path`.
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_path` is a NUL-terminated string and `stat` is written by a successful call.
    let stat = unsafe {
        if libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) != 0 {
            return Err(io::Error::last_os_error());
        }
        stat.assume_init()
    };
    Ok(stat.f_bavail * stat.f_frsize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retention::index::Index;
    use std::cell::RefCell;
    use std::time::Duration;

    impl Store for RefCell<Index> {
        fn bytes(&self) -> u64 {
            self.borrow().bytes()
        }
        fn oldest(&self, after: Option<&Place>, n: usize) -> Vec<Bucket> {
            self.borrow().oldest(after, n)
        }
        fn forget(&self, key: &BucketKey, files: &[SegmentEntry]) {
            self.borrow_mut().forget(key, files);
        }
        fn first(&self) -> Option<BucketKey> {
            self.borrow().first().cloned()
        }
    }

    /// A tree of `buckets` buckets of one call with PRE and POST of 1,000 bytes each, written
    /// an hour ago, bucket by bucket a second apart.
    fn tree(base: &Path, buckets: u64) {
        let hour_ago = SystemTime::now() - Duration::from_secs(3_600);
        for tap in ["PRE", "POST"] {
            let dir = base.join("1970-01-01/call/st").join(tap);
            fs::create_dir_all(&dir).unwrap();
            for b in 0..buckets {
                let path = dir.join(segment_file_name(b * 5_000, 0));
                fs::write(&path, [0u8; 1_000]).unwrap();
                let file = fs::File::options().write(true).open(&path).unwrap();
                file.set_modified(hour_ago + Duration::from_secs(b))
                    .unwrap();
            }
        }
    }

    fn limits(max_bytes: u64) -> Limits {
        Limits {
            max_bytes,
            ..Limits::default()
        }
    }

    #[test]
    fn the_oldest_pairs_go_whole_with_their_marks() {
        let dir = tempfile::tempdir().unwrap();
        tree(dir.path(), 5);
        let pre = dir.path().join("1970-01-01/call/st/PRE");
        fs::write(pre.join("segment_0.wav.uploaded"), "x  y\n").unwrap();
        let store = RefCell::new(Index::build(dir.path()).0);
        let done = pass(dir.path(), &limits(6_000), &store, false, SystemTime::now());
        assert_eq!((done.segments, done.bytes), (4, 4_000));
        assert_eq!(done.removed.len(), 5, "{:?}", done.removed);
        assert!(!pre.join("segment_0.wav.uploaded").exists());
        assert!(!pre.join("segment_5000.wav").exists());
        assert!(pre.join("segment_10000.wav").exists());
        assert!(
            dir.path()
                .join("1970-01-01/call/st/POST/segment_10000.wav")
                .exists()
        );
        assert_eq!(done.oldest_kept.unwrap().bucket_ms, 10_000);
        assert!(done.unmet.is_none());
        assert_eq!(store.borrow().bytes(), 6_000);
    }

    #[test]
    fn a_bucket_being_written_holds_the_pass_and_an_unconfirmed_one_stays() {
        let dir = tempfile::tempdir().unwrap();
        tree(dir.path(), 3);
        let post = dir.path().join("1970-01-01/call/st/POST");
        let pre = dir.path().join("1970-01-01/call/st/PRE");
        // POST of bucket 0 is still being written: nothing newer goes before it.
        fs::remove_file(post.join("segment_0.wav")).unwrap();
        fs::write(post.join("segment_0.wav.part"), [0u8; 44]).unwrap();
        let writer = fs::File::open(post.join("segment_0.wav.part")).unwrap();
        writer.lock().unwrap();
        let store = RefCell::new(Index::build(dir.path()).0);
        let done = pass(dir.path(), &limits(4_000), &store, false, SystemTime::now());
        assert_eq!(done.segments, 0);
        assert_eq!(
            done.unmet,
            Some(Unmet {
                excess: 1_000,
                protected: 1
            })
        );
        // Its writer died: the `.part`, left for recovery, holds nothing back, and the bucket's
        // PRE goes (the POST was never indexed).
        drop(writer);
        let done = pass(dir.path(), &limits(4_000), &store, false, SystemTime::now());
        assert_eq!((done.segments, done.unmet), (1, None));
        assert!(!pre.join("segment_0.wav").exists());
        assert!(post.join("segment_0.wav.part").exists());
        fs::remove_file(post.join("segment_0.wav.part")).unwrap();
        // With uploads, a bucket goes only once each file is confirmed (or gone), and newer
        // ones go in its stead.
        let keep = Limits {
            keep_unuploaded: true,
            ..limits(1)
        };
        let done = pass(dir.path(), &keep, &store, false, SystemTime::now());
        assert_eq!(done.segments, 0);
        assert_eq!(done.unmet.unwrap().protected, 2);
        fs::write(pre.join("segment_10000.wav.uploaded"), "x  y\n").unwrap();
        fs::remove_file(post.join("segment_10000.wav")).unwrap();
        let done = pass(dir.path(), &keep, &store, false, SystemTime::now());
        assert_eq!(
            (done.segments, done.bytes),
            (1, 1_000),
            "{:?}",
            done.removed
        );
        assert!(!pre.join("segment_10000.wav.uploaded").exists());
        assert!(pre.join("segment_5000.wav").exists());
    }

    #[test]
    fn a_further_file_of_a_bucket_goes_on_its_own_once_none_is_written() {
        let dir = tempfile::tempdir().unwrap();
        tree(dir.path(), 2);
        let post = dir.path().join("1970-01-01/call/st/POST");
        let pre = dir.path().join("1970-01-01/call/st/PRE");
        for tap in [&pre, &post] {
            fs::write(tap.join("segment_0-1.wav"), [0u8; 1_000]).unwrap();
        }
        // A recorder restarted in bucket 0 writes its third file: until it is done, no file
        // of bucket 0 goes (its other tap must find the same free name), nor anything newer.
        fs::write(post.join("segment_0-2.wav.part"), [0u8; 44]).unwrap();
        let writer = fs::File::open(post.join("segment_0-2.wav.part")).unwrap();
        writer.lock().unwrap();
        let store = RefCell::new(Index::build(dir.path()).0);
        let done = pass(dir.path(), &limits(2_100), &store, false, SystemTime::now());
        assert_eq!(done.segments, 0);
        drop(writer);
        fs::rename(
            post.join("segment_0-2.wav.part"),
            post.join("segment_0-2.wav"),
        )
        .unwrap();
        let first = store.borrow().first().unwrap().clone();
        store.borrow_mut().add(
            BucketKey {
                file_index: 2,
                ..first
            },
            Tap::Post,
            2,
            44,
            SystemTime::now(),
        );
        let done = pass(dir.path(), &limits(2_100), &store, false, SystemTime::now());
        // Index 0 and 1 are buckets of their own, removed oldest first.
        assert_eq!(done.segments, 4, "{:?}", done.removed);
        assert!(!pre.join("segment_0.wav").exists());
        assert!(!post.join("segment_5000.wav").exists());
        assert!(pre.join("segment_0-1.wav").exists());
    }

    #[test]
    fn a_lone_half_waits_for_its_partner_then_goes() {
        let dir = tempfile::tempdir().unwrap();
        let pre = dir.path().join("1970-01-01/call/st/PRE");
        fs::create_dir_all(&pre).unwrap();
        fs::write(pre.join("segment_0.wav"), [0u8; 100]).unwrap();
        let store = RefCell::new(Index::build(dir.path()).0);
        let done = pass(dir.path(), &limits(1), &store, false, SystemTime::now());
        assert_eq!(done.segments, 0);
        let later = SystemTime::now() + LONE_HALF_WAIT + Duration::from_secs(1);
        let done = pass(dir.path(), &limits(1), &store, false, later);
        assert_eq!(done.segments, 1);
        // Every directory it leaves empty goes, the base stays.
        assert_eq!(done.dirs.len(), 4, "{:?}", done.dirs);
        assert!(dir.path().exists());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn files_vanishing_under_a_pass_are_forgotten_not_errors() {
        let dir = tempfile::tempdir().unwrap();
        tree(dir.path(), 4);
        let store = RefCell::new(Index::build(dir.path()).0);
        fs::remove_dir_all(dir.path().join("1970-01-01/call/st/PRE")).unwrap();
        let done = pass(dir.path(), &limits(2_000), &store, false, SystemTime::now());
        assert!(done.failed.is_empty(), "{:?}", done.failed);
        // The index still counted the PRE files: the three oldest buckets go, of which only
        // the POST files were there.
        assert_eq!(done.segments, 3);
        assert_eq!(store.borrow().bytes(), 2_000);
    }

    #[test]
    fn a_dry_run_removes_nothing_and_names_what_a_run_removes() {
        let dir = tempfile::tempdir().unwrap();
        tree(dir.path(), 6);
        fs::write(
            dir.path()
                .join("1970-01-01/call/st/POST/segment_5000.wav.uploaded"),
            "x  y\n",
        )
        .unwrap();
        let age = Limits {
            max_age: Duration::from_millis(3_596_500),
            ..limits(3_000)
        };
        let now = SystemTime::now();
        let dry = pass(
            dir.path(),
            &age,
            &RefCell::new(Index::build(dir.path()).0),
            true,
            now,
        );
        assert_eq!(Index::build(dir.path()).0.files(), 12, "nothing removed");
        let real = pass(
            dir.path(),
            &age,
            &RefCell::new(Index::build(dir.path()).0),
            false,
            now,
        );
        assert_eq!(dry.removed, real.removed);
        assert_eq!((dry.segments, dry.bytes), (real.segments, real.bytes));
        assert_eq!(dry.oldest_kept, real.oldest_kept);
        // Buckets 0 to 3 are older than the age; 3,000 bytes then need a fifth to go.
        assert_eq!(real.segments, 10);
        assert_eq!(real.removed.len(), 11);
        assert_eq!(real.oldest_kept.unwrap().bucket_ms, 25_000);
    }

    #[test]
    fn free_space_is_that_of_the_file_system() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_bytes(dir.path()).unwrap() > 0);
        assert!(free_bytes(&dir.path().join("missing")).is_err());
    }
}
