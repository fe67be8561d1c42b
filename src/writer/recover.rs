//! Recovery of the `.part` files a dead process left behind.
//!
//! A `.part` holds a valid WAV header followed by every sample that reached the operating
//! system (the writer appends at least every flush interval), but its header may not count them
//! yet. Recovery copies those samples into a new file whose header `hound` writes, publishes it
//! under the segment's name (a further file index if that name is taken: nothing is ever
//! replaced) and removes the `.part`. A `.part` that another writer holds locked is alive and
//! left alone.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::Identity;
use super::files::{io_error, publish};
use super::layout::{identity_dir, parse_segment_file_name};

/// Samples copied at a time.
const CHUNK: usize = 65_536;

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

/// The tap directories of `identity` under `base`, one per date directory.
pub fn identity_dirs(base: &Path, identity: &Identity) -> Vec<PathBuf> {
    let Ok(dates) = fs::read_dir(base) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = dates
        .filter_map(|d| Some(d.ok()?.path().join(identity_dir(identity))))
        .filter(|d| d.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// Recovers every `.part` file directly in `dir`.
pub fn recover_dir(dir: &Path, fsync: bool) -> Vec<Result<Recovered, (PathBuf, io::Error)>> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut parts: Vec<PathBuf> = entries
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.to_str().is_some_and(|s| s.ends_with(".wav.part")))
        .collect();
    parts.sort();
    parts
        .into_iter()
        .filter_map(|part| match recover_part(&part, fsync) {
            Ok(Some(recovered)) => Some(Ok(recovered)),
            Ok(None) => None,
            Err(e) => Some(Err((part, e))),
        })
        .collect()
}

/// Recovers every `.part` file anywhere under `base`.
pub fn recover_tree(base: &Path, fsync: bool) -> Vec<Result<Recovered, (PathBuf, io::Error)>> {
    let mut results = recover_dir(base, fsync);
    let Ok(entries) = fs::read_dir(base) else {
        return results;
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.is_dir() && !p.is_symlink())
        .collect();
    dirs.sort();
    for dir in dirs {
        results.extend(recover_tree(&dir, fsync));
    }
    results
}

/// Recovers one `.part`. `Ok(None)`: it is being written by a live writer, or it holds no
/// audio at all (then it is removed).
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

    let file = File::open(part)?;
    if file.try_lock().is_err() {
        return Ok(None);
    }
    let len = file.metadata()?.len();
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
    reader.seek(SeekFrom::Start(data_start))?;

    let repaired = dir.join(format!("{name}.recovering"));
    let _ = fs::remove_file(&repaired);
    let mut wav = hound::WavWriter::create(&repaired, spec).map_err(io_error)?;
    let mut bytes = vec![0u8; CHUNK * 2];
    let mut left = samples as usize;
    while left > 0 {
        let n = left.min(CHUNK);
        reader.read_exact(&mut bytes[..n * 2])?;
        let mut writer = wav.get_i16_writer(n as u32);
        for b in bytes[..n * 2].chunks_exact(2) {
            writer.write_sample(i16::from_le_bytes([b[0], b[1]]));
        }
        writer.flush().map_err(io_error)?;
        left -= n;
    }
    wav.finalize().map_err(io_error)?;
    if fsync {
        File::open(&repaired)?.sync_data()?;
    }
    let (location, file_index) = publish(&repaired, dir, bucket_ms, file_index)?;
    fs::remove_file(part)?;
    if fsync {
        File::open(dir)?.sync_all()?;
    }
    Ok(Some(Recovered {
        part: part.to_owned(),
        location,
        bucket_ms,
        file_index,
        rate: spec.sample_rate,
        samples,
    }))
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
    fn a_part_without_a_whole_header_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("segment_0.wav.part");
        fs::write(&part, b"RIFF").unwrap();
        assert!(recover_dir(dir.path(), false).is_empty());
        assert!(!part.exists());
    }
}
