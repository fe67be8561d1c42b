//! The calls under a base directory, as the layout names them: which calls, stations, taps and
//! segment files there are. Only what a walk of the base directory finds is ever read, so a
//! name from a URL is a key to look up here, never a path.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use gstsegmentrecorder::layout::{
    Found, Walk, identifier_component, place_below, unescape_component,
};

/// One segment file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Segment {
    /// Start of its bucket, in ms on the recorder's timeline (UTC in wall-clock mode).
    pub bucket_ms: u64,
    /// 0 for `segment_<ms>.wav`, `n` for `segment_<ms>-<n>.wav`.
    pub file_index: u32,
    /// Where it is: below the canonical base directory, no symbolic link on the way.
    pub path: PathBuf,
    /// Its size and modification time, which tell a file apart from one renamed over it.
    pub size: u64,
    pub mtime_ns: i128,
}

/// One processing stage of a call.
#[derive(Debug, Default, Clone)]
pub struct Station {
    /// Its directory name.
    pub dir: String,
    /// Its segments, PRE then POST (index `Tap as usize`), in bucket and file order.
    pub taps: [Vec<Segment>; 2],
}

/// One call: its stations, over all the date directories it has.
#[derive(Debug, Default, Clone)]
pub struct Call {
    /// Its directory name, which is also its name in URLs.
    pub dir: String,
    /// The date directories that hold it.
    pub dates: BTreeSet<String>,
    /// Its stations by directory name.
    pub stations: BTreeMap<String, Station>,
}

impl Call {
    /// Every segment of the call.
    pub fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.stations.values().flat_map(|s| s.taps.iter().flatten())
    }

    /// Something that changes whenever a segment is published, removed or replaced.
    pub fn version(&self) -> String {
        let (mut n, mut last, mut bytes) = (0u64, 0u64, 0u64);
        for s in self.segments() {
            n += 1;
            last = last.max(s.bucket_ms);
            bytes = bytes.wrapping_add(s.size ^ (s.mtime_ns as u64));
        }
        format!("{n}-{last}-{bytes:x}")
    }
}

/// The identifier a directory name stands for, or the name itself for a long identifier's,
/// which keeps only its beginning and a digest.
pub fn shown(dir: &str) -> String {
    unescape_component(dir).unwrap_or_else(|| dir.to_owned())
}

/// The calls under `base` (canonical), by directory name. Only
/// `<date>/<trace>/<station>/<PRE|POST>/segment_<ms>[-<n>].wav` counts, and only regular files
/// in real directories: the walk follows no symbolic link. An error if `base` cannot be read.
pub fn scan(base: &Path) -> io::Result<BTreeMap<String, Call>> {
    let mut calls = BTreeMap::new();
    walk_into(&mut calls, base, base)?;
    Ok(calls)
}

/// The call a URL names. A call's URL holds its directory name percent-encoded, `%` included
/// (what the page links to), so that each directory has one URL and each URL one directory:
/// `%2E`, the directory of `.`, is `%252E`, and `%252E`, that of `%2E`, is `%25252E`. That is
/// looked up first; failing it, the trace id percent-encoded (which the layout then escapes),
/// and the directory name as it is. Only the call's own directories are read: each date
/// directory's entries are listed and those of that name walked; the name is compared with
/// what the listing finds, never joined onto a path.
pub fn find_call(base: &Path, name: &str) -> io::Result<Option<Call>> {
    let decoded = percent_decode(name);
    let escaped = decoded
        .as_deref()
        .and_then(|id| identifier_component(id).ok());
    let mut names: Vec<String> = Vec::new();
    for other in decoded.into_iter().chain(escaped).chain([name.to_owned()]) {
        if !names.contains(&other) {
            names.push(other);
        }
    }
    for wanted in names {
        let mut calls = BTreeMap::new();
        for date in fs::read_dir(base)? {
            let date = date?;
            if !date.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            // A date directory gone or unreadable meanwhile holds nothing of the call.
            let Ok(entries) = fs::read_dir(date.path()) else {
                continue;
            };
            for entry in entries.flatten() {
                if entry.file_name().to_str() == Some(wanted.as_str())
                    && entry.file_type().is_ok_and(|t| t.is_dir())
                {
                    walk_into(&mut calls, base, &entry.path())?;
                }
            }
        }
        if let Some(call) = calls.remove(&wanted) {
            return Ok(Some(call));
        }
    }
    Ok(None)
}

/// Adds the segments a walk of `dir` (`base` or a directory below it) finds to `calls`. An
/// error only if `base` itself cannot be read.
fn walk_into(calls: &mut BTreeMap<String, Call>, base: &Path, dir: &Path) -> io::Result<()> {
    for item in Walk::tree(dir) {
        let segment = match item {
            Ok(Found::Segment(segment)) => segment,
            Ok(Found::Dir(_)) => continue,
            Err((dir, e)) if dir == base => return Err(e),
            // A directory that vanished or cannot be read shows as what it held: nothing.
            Err(_) => continue,
        };
        if !segment.file_type.is_file() {
            continue;
        }
        let Some((date, trace, station, tap)) = place_below(base, &segment.path) else {
            continue;
        };
        // Gone since the walk read its directory: not a segment any more.
        let Ok(meta) = fs::symlink_metadata(&segment.path) else {
            continue;
        };
        let call = calls.entry(trace.to_string()).or_default();
        call.dir = trace.to_string();
        call.dates.insert(date.to_string());
        let st = call.stations.entry(station.to_string()).or_default();
        st.dir = station.to_string();
        let taps = &mut st.taps[tap as usize];
        let at = taps.partition_point(|s: &Segment| {
            (s.bucket_ms, s.file_index) < (segment.bucket_ms, segment.file_index)
        });
        taps.insert(
            at,
            Segment {
                bucket_ms: segment.bucket_ms,
                file_index: segment.file_index,
                path: segment.path,
                size: meta.size(),
                mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            },
        );
    }
    Ok(())
}

/// `text` with its `%XX` escapes decoded, if that makes UTF-8 text.
pub fn percent_decode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

/// `text` (an error's message, say) with the base directory's place taken out of it: the paths
/// in it relative to the base, so that no answer tells where the server keeps its files.
pub fn below(base: &Path, text: &str) -> String {
    let base = base.display().to_string();
    text.replace(&format!("{base}/"), "").replace(&base, ".")
}

/// Reads a file found by [`scan`], after checking that it still lies below `base` once every
/// symbolic link is resolved: a directory swapped for a link since the scan is not followed
/// out of the base directory.
pub fn read_inside(base: &Path, path: &Path) -> io::Result<Vec<u8>> {
    let real = fs::canonicalize(path)?;
    if !real.starts_with(base) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{} leads out of the base directory", path.display()),
        ));
    }
    fs::read(&real)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn names_in_urls_are_looked_up_never_joined() {
        let dir = tempfile::tempdir().unwrap();
        let base = fs::canonicalize(dir.path()).unwrap();
        let tap = base.join("2026-11-21/sip%3Aa%2Fb/stt/PRE");
        fs::create_dir_all(&tap).unwrap();
        fs::write(tap.join("segment_1000.wav"), b"x").unwrap();
        fs::write(tap.join("segment_1000-1.wav"), b"x").unwrap();
        fs::write(tap.join("segment_2000.wav.part"), b"x").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", tap.join("segment_3000.wav")).unwrap();
        // A directory whose name is not UTF-8 makes the path one level too deep: ignored.
        let odd = base.join(std::ffi::OsStr::from_bytes(
            b"2026-11-21/sip%3Aa%2Fb/\xffjunk",
        ));
        fs::create_dir_all(odd.join("stt/PRE")).unwrap();
        fs::write(odd.join("stt/PRE/segment_4000.wav"), b"x").unwrap();
        let calls = scan(&base).unwrap();
        let call = &calls["sip%3Aa%2Fb"];
        assert_eq!(
            call.stations["stt"].taps[0].len(),
            2,
            "the link and the .part left out"
        );
        assert_eq!(shown("sip%3Aa%2Fb"), "sip:a/b");
        // The call by its directory name, as it is or percent-encoded, or by its identifier,
        // and nothing else.
        for name in ["sip%253Aa%252Fb", "sip%3Aa%2Fb", "sip:a%2Fb"] {
            let found = find_call(&base, name).unwrap().unwrap();
            assert_eq!(found.stations["stt"].taps, call.stations["stt"].taps);
        }
        for name in [
            "..",
            "%2e%2e",
            "sip%25253Aa%25252Fb",
            "/etc",
            "2026-11-21",
            "stt",
            "",
        ] {
            assert!(find_call(&base, name).unwrap().is_none(), "{name}");
        }
    }

    #[test]
    fn messages_tell_paths_below_the_base_only() {
        let base = Path::new("/srv/rec");
        assert_eq!(
            below(base, "/srv/rec/2026-11-21/c/s/PRE/segment_1.wav: short"),
            "2026-11-21/c/s/PRE/segment_1.wav: short"
        );
        assert_eq!(below(base, "cannot list /srv/rec"), "cannot list .");
    }

    #[test]
    fn a_file_behind_a_link_out_of_the_base_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret.wav"), b"secret").unwrap();
        let base = fs::canonicalize(dir.path()).unwrap();
        std::os::unix::fs::symlink(outside.path(), base.join("out")).unwrap();
        let err = read_inside(&base, &base.join("out/secret.wav")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        fs::write(base.join("in.wav"), b"ok").unwrap();
        assert_eq!(read_inside(&base, &base.join("in.wav")).unwrap(), b"ok");
    }
}
