//! The files of one recording: the open `.part`, its WAV encoding with `hound`, and publishing it
//! under its final name. Runs on a writer thread only.

use std::fs::{self, File};
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::layout::{part_file_name, segment_dir, segment_file_name};
use super::{Command, Report, SegmentSpec, SegmentWritten};

/// How far a `.part` file may lag behind the audio handed to the writer: its header and data
/// reach the operating system at least this often, so a crashed process leaves a playable file.
const FLUSH_INTERVAL: Duration = Duration::from_millis(200);

/// Silence is written in pieces of at most this many samples.
const SILENCE_CHUNK: u64 = 4_096;

/// How many files one bucket may have before giving up (`segment_<ms>-<n>.wav`).
const MAX_SUFFIX: u32 = 1_000;

type Wav = hound::WavWriter<BufWriter<File>>;

struct OpenSegment {
    spec: SegmentSpec,
    wav: Wav,
    dir: PathBuf,
    suffix: u32,
    part: PathBuf,
    data: u64,
    silence: u64,
    last_flush: Instant,
}

enum Current {
    Idle,
    Open(Box<OpenSegment>),
    /// The segment could not be written; what remains of it is skipped until its close.
    Failed,
}

/// The writer side of one recording.
pub(super) struct Files {
    base_dir: PathBuf,
    /// The last directory known to exist, to spare a `create_dir_all` per segment.
    made_dir: Option<PathBuf>,
    current: Current,
    /// Samples dropped since the last segment was reported.
    dropped: u64,
}

fn io_error(e: hound::Error) -> io::Error {
    match e {
        hound::Error::IoError(e) => e,
        other => io::Error::other(other),
    }
}

impl Files {
    pub(super) fn new(base_dir: PathBuf) -> Self {
        Files {
            base_dir,
            made_dir: None,
            current: Current::Idle,
            dropped: 0,
        }
    }

    /// Carries out one command, adding what happened to `reports`.
    pub(super) fn apply(&mut self, command: Command, reports: &mut Vec<Report>) {
        let result = match command {
            Command::Open(spec) => {
                // A segment still open (no close came) is dropped as it is: its `.part` stays.
                self.current = Current::Idle;
                match self.open(&spec) {
                    Ok(segment) => {
                        self.current = Current::Open(Box::new(segment));
                        Ok(())
                    }
                    Err((location, error)) => {
                        self.current = Current::Failed;
                        reports.push(Report::Failed {
                            spec,
                            location,
                            error,
                        });
                        Ok(())
                    }
                }
            }
            Command::Samples(samples) => self.with_open(|s| {
                write_samples(&mut s.wav, &samples)?;
                s.data += samples.len() as u64;
                Ok(())
            }),
            Command::Silence(n) => self.with_open(|s| {
                write_silence(&mut s.wav, n)?;
                s.silence += n;
                Ok(())
            }),
            Command::Dropped(n) => {
                self.dropped += n;
                Ok(())
            }
            Command::Close => match std::mem::replace(&mut self.current, Current::Idle) {
                Current::Open(segment) => {
                    let spec = segment.spec.clone();
                    let part = segment.part.clone();
                    match close(*segment) {
                        Ok(mut written) => {
                            written.dropped_samples = std::mem::take(&mut self.dropped);
                            reports.push(Report::Written(written));
                            Ok(())
                        }
                        Err(error) => Err((spec, part, error)),
                    }
                }
                Current::Idle | Current::Failed => Ok(()),
            },
        };
        if let Err((spec, location, error)) = result {
            reports.push(Report::Failed {
                spec,
                location,
                error,
            });
        }
    }

    /// Flushes the open segment if it has not been flushed for a while.
    pub(super) fn flush_if_due(&mut self, reports: &mut Vec<Report>) {
        if let Current::Open(s) = &self.current
            && s.last_flush.elapsed() >= FLUSH_INTERVAL
        {
            let result = self.with_open(|s| {
                s.wav.flush().map_err(io_error)?;
                s.last_flush = Instant::now();
                Ok(())
            });
            if let Err((spec, location, error)) = result {
                reports.push(Report::Failed {
                    spec,
                    location,
                    error,
                });
            }
        }
    }

    /// Runs `f` on the open segment; on failure, the segment is given up.
    fn with_open(
        &mut self,
        f: impl FnOnce(&mut OpenSegment) -> io::Result<()>,
    ) -> Result<(), (SegmentSpec, PathBuf, io::Error)> {
        let Current::Open(segment) = &mut self.current else {
            return Ok(());
        };
        match f(segment) {
            Ok(()) => Ok(()),
            Err(error) => {
                let failed = (segment.spec.clone(), segment.part.clone(), error);
                self.current = Current::Failed;
                Err(failed)
            }
        }
    }

    fn open(&mut self, spec: &SegmentSpec) -> Result<OpenSegment, (PathBuf, io::Error)> {
        let dir = segment_dir(&self.base_dir, &spec.identity, spec.bucket_ms);
        let first_name = dir.join(segment_file_name(spec.bucket_ms, 0));
        if self.made_dir.as_ref() != Some(&dir) {
            fs::create_dir_all(&dir).map_err(|e| (dir.clone(), e))?;
            self.made_dir = Some(dir.clone());
        }
        let (suffix, part, file) =
            create_part(&dir, spec.bucket_ms).map_err(|e| (first_name.clone(), e))?;
        let wav_spec = hound::WavSpec {
            channels: 1,
            sample_rate: spec.rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let wav = hound::WavWriter::new(BufWriter::new(file), wav_spec)
            .map_err(|e| (part.clone(), io_error(e)))?;
        Ok(OpenSegment {
            spec: spec.clone(),
            wav,
            dir,
            suffix,
            part,
            data: 0,
            silence: 0,
            last_flush: Instant::now(),
        })
    }
}

/// Creates the `.part` file of the first free name of bucket `bucket_ms` in `dir`.
fn create_part(dir: &Path, bucket_ms: u64) -> io::Result<(u32, PathBuf, File)> {
    for suffix in 0..MAX_SUFFIX {
        let name = segment_file_name(bucket_ms, suffix);
        if dir.join(&name).try_exists()? {
            continue;
        }
        let part = dir.join(part_file_name(&name));
        match File::create_new(&part) {
            Ok(file) => return Ok((suffix, part, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("{MAX_SUFFIX} files already exist for this bucket"),
    ))
}

fn write_samples(wav: &mut Wav, samples: &[i16]) -> io::Result<()> {
    let mut writer = wav.get_i16_writer(samples.len() as u32);
    for &s in samples {
        writer.write_sample(s);
    }
    writer.flush().map_err(io_error)
}

fn write_silence(wav: &mut Wav, mut n: u64) -> io::Result<()> {
    while n > 0 {
        let chunk = n.min(SILENCE_CHUNK);
        let mut writer = wav.get_i16_writer(chunk as u32);
        for _ in 0..chunk {
            writer.write_sample(0i16);
        }
        writer.flush().map_err(io_error)?;
        n -= chunk;
    }
    Ok(())
}

/// Writes the final header and publishes the `.part` under its final name, never replacing a
/// file that exists: if the name was taken meanwhile, the next free suffix is used.
fn close(segment: OpenSegment) -> io::Result<SegmentWritten> {
    let OpenSegment {
        spec,
        wav,
        dir,
        mut suffix,
        part,
        data,
        silence,
        ..
    } = segment;
    wav.finalize().map_err(io_error)?;
    let location = loop {
        let target = dir.join(segment_file_name(spec.bucket_ms, suffix));
        match fs::hard_link(&part, &target) {
            Ok(()) => {
                fs::remove_file(&part)?;
                break target;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            // A file system without hard links: rename, having checked that the name is free.
            Err(_) if !target.try_exists()? => {
                fs::rename(&part, &target)?;
                break target;
            }
            Err(_) => {}
        }
        suffix += 1;
        if suffix >= MAX_SUFFIX {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{MAX_SUFFIX} files already exist for this bucket"),
            ));
        }
    };
    Ok(SegmentWritten {
        spec,
        location,
        file_index: suffix,
        samples: data + silence,
        data_samples: data,
        silence_samples: silence,
        dropped_samples: 0,
    })
}
