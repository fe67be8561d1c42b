//! The backlog of a base directory: segments that no upload confirmed (the store was down, a
//! process died, a recorder uploaded nothing), whatever call, station, tap or date they belong
//! to.
//!
//! A recorder with uploads asks for a scan when it starts. The scan walks the whole base
//! directory on an uploader thread, so that a start never waits for it, and queues what it found
//! a few files at a time ([`JOBS_AT_ONCE`]), so that fresh segments never queue behind a long
//! backlog. At most one scan of a base directory runs in the process: a request while one runs
//! asks for one more after it (the first may have missed what was published meanwhile), and
//! of several such requests the last one's recorder makes it, so that a long drain holds on to
//! one request, not to one per start. The found files are uploaded with the configuration of
//! the recorder whose request started the scan, and their outcomes are reported to it.
//!
//! Only segments are found (`segment_<ms>[-<n>].wav`): never a `.part` being written or left to
//! recover, a `.recovering` file, a mark, or anything else. A kept file with a mark was uploaded
//! and is skipped; without `keep_local`, a file with a mark was confirmed by a process that died
//! before removing it, and its job removes it once the mark proves to be the file's own.

use std::collections::{BTreeMap, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::marks::mark_of;
use super::{Inner, Kind, UPLOADERS, register};
use crate::layout::{Found, Walk};
use crate::lock_order::{Level, OrderedMutex};

/// Files of one scan being uploaded at once.
const JOBS_AT_ONCE: usize = 2;

/// A scan of one base directory, from its request to the end of the last upload it queued.
struct Scan {
    /// The recorder whose configuration uploads the files found, and which hears of them.
    inbox: Arc<Inner>,
    /// The base directory as that recorder names it, so that paths are those of its writer.
    base: PathBuf,
    /// Files found and not yet queued; `None` while the walk goes on.
    found: Option<VecDeque<PathBuf>>,
    /// Files queued and not yet done.
    active: usize,
    /// The last request that came while this scan ran: one more scan follows, for it.
    again: Option<(Arc<Inner>, PathBuf)>,
}

impl Scan {
    fn new(inbox: Arc<Inner>, base: PathBuf) -> Self {
        Scan {
            inbox,
            base,
            found: None,
            active: 0,
            again: None,
        }
    }
}

/// The scans running in the process, by canonical base directory.
static SCANS: OrderedMutex<BTreeMap<PathBuf, Scan>> =
    OrderedMutex::new(Level::UploadScans, BTreeMap::new());

/// Asks for a scan of `base` for `inbox`; returns at once.
pub(super) fn request(inbox: Arc<Inner>, base: PathBuf) {
    inbox.scan_requested();
    UPLOADERS.run(move || {
        let id = fs::canonicalize(&base).unwrap_or_else(|_| base.clone());
        let superseded = {
            let mut scans = SCANS.lock();
            match scans.get_mut(&id) {
                Some(scan) => scan.again.replace((inbox, base)),
                None => {
                    scans.insert(id.clone(), Scan::new(inbox, base));
                    drop(scans);
                    walk(&id);
                    return;
                }
            }
        };
        // A later request makes the scan this one asked for.
        if let Some((inbox, _)) = superseded {
            inbox.scan_done();
        }
    });
}

/// A job the scan of `id` queued is done.
pub(super) fn job_done(id: &Path) {
    if let Some(scan) = SCANS.lock().get_mut(id) {
        scan.active -= 1;
    }
    feed(id);
}

/// Walks the base directory of the scan of `id`, then queues what it found.
fn walk(id: &Path) {
    let Some((base, keep_local, log)) = SCANS.lock().get(id).map(|s| {
        let config = &s.inbox.config;
        (s.base.clone(), config.keep_local, config.log.clone())
    }) else {
        return;
    };
    // Regular files only, in path order: a symbolic link is neither followed nor uploaded.
    let found: VecDeque<_> = Walk::tree(&base)
        .filter_map(|found| match found {
            Ok(Found::Segment(segment)) => Some(segment),
            _ => None,
        })
        .filter(|segment| segment.file_type.is_file())
        .map(|segment| segment.path)
        .filter(|path| !(keep_local && mark_of(path).exists()))
        .collect();
    log.debug(format_args!(
        "Backlog of {}: {} segments never confirmed uploaded",
        base.display(),
        found.len()
    ));
    if let Some(scan) = SCANS.lock().get_mut(id) {
        scan.found = Some(found);
    }
    feed(id);
}

/// What [`feed`] does next.
enum Next {
    /// Queue this file for the recorder, below this base.
    File(Arc<Inner>, PathBuf, PathBuf),
    /// The scan ended: release its request; a walk follows if another scan was asked for.
    End(Arc<Inner>, bool),
}

/// Queues found files of the scan of `id` while fewer than [`JOBS_AT_ONCE`] are being
/// uploaded; ends the scan when nothing is left.
fn feed(id: &Path) {
    loop {
        let next = {
            let mut scans = SCANS.lock();
            let Some(scan) = scans.get_mut(id) else {
                return;
            };
            if scan.active >= JOBS_AT_ONCE {
                return;
            }
            let Some(found) = scan.found.as_mut() else {
                return;
            };
            match found.pop_front() {
                Some(path) => {
                    scan.active += 1;
                    Next::File(scan.inbox.clone(), scan.base.clone(), path)
                }
                None if scan.active > 0 => return,
                None => {
                    let Some(ended) = scans.remove(id) else {
                        return;
                    };
                    let rerun = ended.again.is_some();
                    if let Some((inbox, base)) = ended.again {
                        scans.insert(id.to_owned(), Scan::new(inbox, base));
                    }
                    Next::End(ended.inbox, rerun)
                }
            }
        };
        match next {
            Next::File(inbox, base, path) => {
                let queued = match path.strip_prefix(&base).ok().and_then(Path::to_str) {
                    Some(relative) => {
                        let relative = relative.to_owned();
                        register(&inbox, path, &relative, Kind::Backlog, Some(id))
                    }
                    None => false,
                };
                if !queued && let Some(scan) = SCANS.lock().get_mut(id) {
                    scan.active -= 1;
                }
            }
            Next::End(inbox, rerun) => {
                inbox.scan_done();
                if rerun {
                    let id = id.to_owned();
                    UPLOADERS.run(move || walk(&id));
                }
                return;
            }
        }
    }
}
