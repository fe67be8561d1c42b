//! Recovery of the `.part` files a dead process left behind.
//!
//! A `.part` holds a valid WAV header followed by every sample that reached the operating
//! system (the writer appends at least every flush interval), but its header may not count them
//! yet. Recovery repairs it in place (cuts off a torn last sample and writes the two sizes of the
//! header), then publishes it like the writer does: a hard link under the segment's name (a
//! further file index if that name is taken: nothing is ever replaced), then the `.part` is
//! removed. Repairing in place needs no room on a full disk, and leaves no intermediate file.
//!
//! A `.part` that another writer or recovery holds locked is alive and left alone; so is a file a
//! writer is making a `.part` under, which is removed once its writer is gone. A `.part`
//! that is a second link of a published segment of its bucket was left by a process killed
//! between publishing and removing it: it is removed, not published again. Every step can be
//! cut short by a kill, and the next recovery ends the work: before the link the `.part` is
//! only (again) repaired, after it the `.part` is such a second link.

use std::fs::{self, File, Metadata};
use std::io::{self, BufReader, Seek};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::files::{io_error, publish};
use crate::layout::{Walk, is_new_file_name, parse_segment_file_name};

/// A `.part` file made whole again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// The `.part` that was left behind (now removed).
    pub part: PathBuf,
    /// The published segment.
    pub location: PathBuf,
    /// Start of its bucket, in ms on the recorder's timeline.
    pub bucket_ms: u64,
    /// Its file index (0 for `segment_<ms>.wav`).
    pub file_index: u32,
    /// Samples per second.
    pub rate: u32,
    /// Samples recovered: as many as reached the disk, not a whole bucket.
    pub samples: u64,
}

/// Recovers every `.part` file directly in `dir`, and removes the files dead writers were
/// making `.part`s under (see [`new_file_name`](crate::layout::new_file_name)): they hold at
/// most a header, or are a second link of a `.part` or a segment.
pub fn recover_dir(dir: &Path, fsync: bool) -> Vec<Result<Recovered, (PathBuf, io::Error)>> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let (mut parts, mut news) = (Vec::new(), Vec::new());
    for path in entries.filter_map(|e| Some(e.ok()?.path())) {
        match path.file_name().and_then(|n| n.to_str()) {
            Some(name) if name.ends_with(".wav.part") => parts.push(path),
            Some(name) if is_new_file_name(name) => news.push(path),
            _ => (),
        }
    }
    parts.sort();
    news.sort();
    let mut results = Vec::new();
    for new in news {
        let removed = take(&new).and_then(|dead| match dead {
            Some(_) => fs::remove_file(&new),
            None => Ok(()),
        });
        if let Err(e) = removed {
            results.push(Err((new, e)));
        }
    }
    results.extend(
        parts
            .into_iter()
            .filter_map(|part| match recover_part(&part, fsync) {
                Ok(Some(recovered)) => Some(Ok(recovered)),
                Ok(None) => None,
                Err(e) => Some(Err((part, e))),
            }),
    );
    results
}

/// Recovers every `.part` file anywhere under `base`, a directory before the directories in it.
pub fn recover_tree(base: &Path, fsync: bool) -> Vec<Result<Recovered, (PathBuf, io::Error)>> {
    Walk::tree(base)
        .dirs()
        .flat_map(|dir| recover_dir(&dir, fsync))
        .collect()
}

/// Recovers one `.part`. `Ok(None)`: it is being written or recovered by someone else, it is
/// gone, or it holds nothing to publish (then it is removed): no audio at all, or the audio of
/// a segment already published.
pub fn recover_part(part: &Path, fsync: bool) -> io::Result<Option<Recovered>> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let name = part
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".part"))
        .ok_or_else(|| invalid("not a .part file"))?;
    let (bucket_ms, file_index) =
        parse_segment_file_name(name).ok_or_else(|| invalid("not a segment's .part file"))?;
    let dir = part.parent().ok_or_else(|| invalid("no directory"))?;

    let Some(file) = take(part)? else {
        return Ok(None);
    };
    let meta = file.metadata()?;
    if is_published(dir, bucket_ms, &meta)? {
        fs::remove_file(part)?;
        return Ok(None);
    }
    let len = meta.len();
    let mut reader = BufReader::new(&file);
    let header = hound::WavReader::new(&mut reader).map(|wav| wav.spec());
    let spec = match header {
        Ok(spec) if spec.channels == 1 && spec.bits_per_sample == 16 => spec,
        // Killed before the header was complete: there is no audio to save.
        Err(_) if len <= 44 => {
            fs::remove_file(part)?;
            return Ok(None);
        }
        Ok(_) => return Err(invalid("not a mono 16-bit WAV")),
        Err(e) => return Err(io_error(e)),
    };
    let data_start = reader.stream_position()?;
    let samples = len.saturating_sub(data_start) / 2;
    if samples == 0 {
        // Killed after the header and before any sample reached it: nothing to publish.
        fs::remove_file(part)?;
        return Ok(None);
    }

    // The samples are the last chunk: their size is the 4 bytes after its id, and the file's
    // is the 4 bytes after "RIFF".
    let mut id = [0u8; 4];
    file.read_exact_at(&mut id, data_start - 8)?;
    if &id != b"data" {
        return Err(invalid("the samples are not the last chunk"));
    }
    let end = data_start + samples * 2;
    let too_long = || invalid("too long for a WAV file");
    let riff_size = u32::try_from(end - 8).map_err(|_| too_long())?;
    let data_size = u32::try_from(samples * 2).map_err(|_| too_long())?;
    if len != end {
        file.set_len(end)?;
    }
    file.write_all_at(&riff_size.to_le_bytes(), 4)?;
    file.write_all_at(&data_size.to_le_bytes(), data_start - 4)?;
    if fsync {
        file.sync_data()?;
    }
    // A leftover link cannot be removed now: the next recovery removes it (see above).
    let published = publish(part, dir, bucket_ms, file_index)?;
    if fsync {
        File::open(dir)?.sync_all()?;
    }
    Ok(Some(Recovered {
        part: part.to_owned(),
        location: published.location,
        bucket_ms,
        file_index: published.file_index,
        rate: spec.sample_rate,
        samples,
    }))
}

/// Removes the `.part` links that a writer killed while publishing left of the published
/// segment at `segment`, so that the segment can be removed (after its upload) without its
/// audio turning into a `.part` to recover, and publish, again. `Ok(false)`: a live writer
/// holds one, as it does while publishing; the segment must stay for now.
pub fn remove_leftover_links(segment: &Path) -> io::Result<bool> {
    let meta = match fs::symlink_metadata(segment) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(e),
    };
    if meta.nlink() < 2 {
        return Ok(true);
    }
    let (Some(dir), Some((bucket_ms, _))) = (
        segment.parent(),
        segment
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(parse_segment_file_name),
    ) else {
        return Ok(true);
    };
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let of_bucket = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".part"))
            .and_then(parse_segment_file_name)
            .is_some_and(|(ms, _)| ms == bucket_ms);
        if !of_bucket || !fs::symlink_metadata(&path).is_ok_and(|m| same_file(&m, &meta)) {
            continue;
        }
        match take(&path)? {
            Some(_locked) => match fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => (),
            },
            // Locked: a live writer is publishing it (or a recovery is taking it).
            None if path.exists() => return Ok(false),
            None => (),
        }
    }
    Ok(true)
}

/// Opens `path` for repair and takes its lock: `None` if someone holds it, or if the name no
/// longer leads to the file locked (another recovery finished with it while we waited).
fn take(path: &Path) -> io::Result<Option<File>> {
    let file = match File::options().read(true).write(true).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if file.try_lock().is_err() {
        return Ok(None);
    }
    match fs::symlink_metadata(path) {
        Ok(named) if same_file(&named, &file.metadata()?) => Ok(Some(file)),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn same_file(a: &Metadata, b: &Metadata) -> bool {
    (a.dev(), a.ino()) == (b.dev(), b.ino())
}

/// Whether the file `meta` describes is also a segment file of bucket `bucket_ms` in `dir`.
fn is_published(dir: &Path, bucket_ms: u64, meta: &Metadata) -> io::Result<bool> {
    if meta.nlink() < 2 {
        return Ok(false);
    }
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let of_bucket = entry
            .file_name()
            .to_str()
            .and_then(parse_segment_file_name)
            .is_some_and(|(ms, _)| ms == bucket_ms);
        if of_bucket && same_file(&fs::symlink_metadata(entry.path())?, meta) {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A `.part` as a killed writer leaves it: a header that counts no samples, then samples
    /// (and half of one, torn).
    fn leftover(path: &Path, samples: &[i16]) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8_000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut file = File::create(path).unwrap();
        drop(hound::WavWriter::new(&mut file, spec).unwrap());
        // hound wrote a header counting 0 samples; append as a crashed writer would.
        let mut file = fs::OpenOptions::new().append(true).open(path).unwrap();
        for s in samples {
            file.write_all(&s.to_le_bytes()).unwrap();
        }
        file.write_all(&[0x12]).unwrap();
    }

    #[test]
    fn a_leftover_part_is_repaired_and_published_beside_existing_files() {
        let dir = tempfile::tempdir().unwrap();
        let tap = dir.path().join("1970-01-01/c/s/PRE");
        leftover(&tap.join("segment_5000.wav.part"), &[1, -2, 3]);
        // The final name is taken: recovery must not replace it.
        fs::write(tap.join("segment_5000.wav"), b"keep").unwrap();

        let results = recover_tree(dir.path(), false);
        assert_eq!(results.len(), 1);
        let r = results[0].as_ref().unwrap();
        assert_eq!(r.location, tap.join("segment_5000-1.wav"));
        assert_eq!(
            (r.bucket_ms, r.file_index, r.rate, r.samples),
            (5_000, 1, 8_000, 3)
        );
        let mut reader = hound::WavReader::open(&r.location).unwrap();
        let samples: Vec<i16> = reader.samples().map(Result::unwrap).collect();
        assert_eq!(samples, [1, -2, 3]);
        assert_eq!(fs::read(tap.join("segment_5000.wav")).unwrap(), b"keep");
        assert!(!tap.join("segment_5000.wav.part").exists());
        assert_eq!(fs::read_dir(&tap).unwrap().count(), 2);
    }

    #[test]
    fn a_part_that_is_a_second_link_of_its_segment_is_removed_not_published_again() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("segment_5000.wav.part");
        leftover(&part, &[1, -2, 3]);
        // Published as file index 1, then killed before the `.part` was removed.
        fs::write(dir.path().join("segment_5000.wav"), b"keep").unwrap();
        let published = dir.path().join("segment_5000-1.wav");
        fs::hard_link(&part, &published).unwrap();
        let before = fs::read(&published).unwrap();

        assert!(recover_tree(dir.path(), false).is_empty());
        assert!(!part.exists());
        assert_eq!(fs::read(&published).unwrap(), before);
        assert_eq!(
            fs::read(dir.path().join("segment_5000.wav")).unwrap(),
            b"keep"
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn a_part_with_a_link_that_is_no_segment_of_its_bucket_is_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("segment_5000.wav.part");
        leftover(&part, &[4, 5]);
        fs::hard_link(&part, dir.path().join("segment_10000.wav.other")).unwrap();
        let results = recover_dir(dir.path(), false);
        let r = results[0].as_ref().unwrap();
        assert_eq!(r.location, dir.path().join("segment_5000.wav"));
        let mut reader = hound::WavReader::open(&r.location).unwrap();
        let samples: Vec<i16> = reader.samples().map(Result::unwrap).collect();
        assert_eq!(samples, [4, 5]);
        assert!(!part.exists());
    }

    #[test]
    fn a_part_locked_by_a_live_writer_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("segment_0.wav.part");
        leftover(&part, &[1]);
        let live = File::open(&part).unwrap();
        live.lock().unwrap();
        assert!(recover_dir(dir.path(), false).is_empty());
        assert!(part.exists());
        drop(live);
        assert_eq!(recover_dir(dir.path(), true).len(), 1);
    }

    #[test]
    fn files_dead_writers_were_making_parts_under_are_removed_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dir.path().join("segment_0.wav.7-1.new");
        leftover(&dead, &[]);
        let alive = dir.path().join("segment_0.wav.7-2.new");
        leftover(&alive, &[]);
        let live = File::open(&alive).unwrap();
        live.lock().unwrap();
        assert!(recover_dir(dir.path(), false).is_empty());
        assert!(!dead.exists() && alive.exists());
    }

    #[test]
    fn a_part_with_a_header_and_no_samples_is_removed_not_published() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("segment_0.wav.part");
        leftover(&part, &[]);
        // Not even half a sample.
        let len = fs::metadata(&part).unwrap().len();
        fs::OpenOptions::new()
            .write(true)
            .open(&part)
            .unwrap()
            .set_len(len - 1)
            .unwrap();
        assert!(recover_dir(dir.path(), false).is_empty());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn the_leftover_link_of_a_published_segment_goes_before_the_segment() {
        let dir = tempfile::tempdir().unwrap();
        let segment = dir.path().join("segment_0-1.wav");
        let part = dir.path().join("segment_0.wav.part");
        leftover(&segment, &[1, 2]);
        // A writer killed between publishing and removing its `.part`.
        fs::hard_link(&segment, &part).unwrap();
        let other = dir.path().join("segment_5000.wav.part");
        leftover(&other, &[3]);

        // While a live writer holds it, it is being published: nothing is removed.
        let live = File::open(&part).unwrap();
        live.lock().unwrap();
        assert!(!remove_leftover_links(&segment).unwrap());
        assert!(part.exists());
        drop(live);

        assert!(remove_leftover_links(&segment).unwrap());
        assert!(!part.exists());
        assert!(segment.exists() && other.exists());
        // The segment can now go without its audio coming back as a `.part` to recover.
        fs::remove_file(&segment).unwrap();
        let recovered = recover_dir(dir.path(), false);
        assert_eq!(recovered.len(), 1);
        assert_eq!(recovered[0].as_ref().unwrap().bucket_ms, 5_000);
        assert!(remove_leftover_links(&segment).unwrap());
    }

    #[test]
    fn a_part_without_a_whole_header_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("segment_0.wav.part");
        fs::write(&part, b"RIFF").unwrap();
        assert!(recover_dir(dir.path(), false).is_empty());
        assert!(!part.exists());
    }
}
