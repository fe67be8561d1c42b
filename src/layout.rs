//! Where a segment lives on disk, for everything that writes, finds or names one: the writer,
//! recovery, the uploader (whose keys repeat the path below the base directory), the element and
//! the offline tools.
//!
//! `<base>/YYYY-MM-DD/<trace_id>/<station_key>/<PRE|POST>/segment_<bucket_ts_ms>.wav`: the date
//! is the UTC date of the bucket's start, `<trace_id>` and `<station_key>` are the escaped
//! identifiers, `PRE` or `POST` the [`Tap`], and a bucket's further files are
//! `segment_<bucket_ts_ms>-<n>.wav`. Beside a segment lie its `.part` while it is written and its
//! `.uploaded` mark once it is uploaded. A [`Walk`] finds them again: the whole tree under a
//! base directory (recovery of everything, the upload backlog) or the tap directories of one
//! identity (recovery at a recorder's start, the rebuild tool).
//!
//! Identifiers come from outside (call ids, SIP URIs, user input), so each is turned into exactly
//! one safe path component: ASCII letters, digits and `- _ . @ + =` stay as they are, every other
//! byte of the UTF-8 text becomes `%XX` (upper-case hex), `%` and `~` included, and so does a
//! leading `.` (no `.`, `..` or hidden names). The escaping can be undone
//! ([`unescape_component`]), so two different identifiers never share a directory. An identifier whose escaped form is longer than
//! [`MAX_COMPONENT_LEN`] bytes is named by as many of its first characters, escaped, as fit,
//! then `~` and the first 32 hex digits of the SHA-256 of the identifier's UTF-8 bytes: the name
//! stays recognisable and within what file systems allow, the digest keeps long identifiers
//! apart however much of them they share, and since the escaping never leaves a `~`, such a name
//! is never the escaped form of another identifier. An empty identifier cannot name a directory
//! and is refused.

use std::fmt::{self, Write as _};
use std::fs::{self, DirEntry, FileType};
use std::io;
use std::path::{Path, PathBuf};
use std::vec;

use sha2::{Digest as _, Sha256};

/// Longest identifier directory name, in bytes; file systems allow 255 per component.
pub const MAX_COMPONENT_LEN: usize = 200;

/// Between the readable part of a long identifier's name and its digest; never left by the
/// escaping, which turns it into `%7E`.
const DIGEST_SEPARATOR: char = '~';

/// Hex digits of the identifier's SHA-256 that end a long identifier's name (128 bits).
const DIGEST_HEX_LEN: usize = 32;

/// Where in a processing stage a recorder listens. `gst-inspect-1.0` lists it by its nick, the
/// name `gst-launch-1.0` takes, which is also its directory's name and what messages say.
#[derive(Debug, Default, Eq, PartialEq, Clone, Copy, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstSegmentRecorderTap")]
pub enum Tap {
    /// Before the stage: what went in.
    #[default]
    #[enum_value(name = "Before the stage: what went in", nick = "PRE")]
    Pre = 0,
    /// After the stage: what came out.
    #[enum_value(name = "After the stage: what came out", nick = "POST")]
    Post = 1,
}

impl Tap {
    /// The tap's name, `PRE` or `POST`: its nick, and its directory's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Tap::Pre => "PRE",
            Tap::Post => "POST",
        }
    }
}

impl fmt::Display for Tap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<&str> for Tap {
    type Error = IdentifierError;

    /// The tap named `name`, exactly `PRE` or `POST`.
    fn try_from(name: &str) -> Result<Self, Self::Error> {
        [Tap::Pre, Tap::Post]
            .into_iter()
            .find(|tap| tap.as_str() == name)
            .ok_or(IdentifierError::UnknownTap)
    }
}

/// Why an identifier cannot name a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentifierError {
    /// The identifier is empty.
    Empty,
    /// The tap is neither `PRE` nor `POST`.
    UnknownTap,
}

impl fmt::Display for IdentifierError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentifierError::Empty => f.write_str("it is empty"),
            IdentifierError::UnknownTap => f.write_str("it is neither PRE nor POST"),
        }
    }
}

impl std::error::Error for IdentifierError {}

/// Whether byte `byte`, at `index` in an identifier, is kept as it is by the escaping.
fn is_plain(byte: u8, index: usize) -> bool {
    byte.is_ascii_alphanumeric()
        || matches!(byte, b'-' | b'_' | b'@' | b'+' | b'=')
        || (byte == b'.' && index > 0)
}

/// Escapes `value` into one safe path component (see the module documentation), however long.
pub fn escape_component(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, byte) in value.bytes().enumerate() {
        if is_plain(byte, i) {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// The directory name of one identifier: its escaped form, or for a long one, a readable
/// prefix of it and a digest of the whole identifier (see the module documentation).
pub fn identifier_component(value: &str) -> Result<String, IdentifierError> {
    if value.is_empty() {
        return Err(IdentifierError::Empty);
    }
    let escaped = escape_component(value);
    if escaped.len() <= MAX_COMPONENT_LEN {
        return Ok(escaped);
    }
    // Cut after the last whole character that fits: never inside a `%XX`, and the prefix
    // unescapes to the start of the identifier.
    let room = MAX_COMPONENT_LEN - DIGEST_SEPARATOR.len_utf8() - DIGEST_HEX_LEN;
    let mut prefix_len = 0;
    for (i, c) in value.char_indices() {
        let escaped_len: usize = value.as_bytes()[i..i + c.len_utf8()]
            .iter()
            .zip(i..)
            .map(|(&byte, j)| if is_plain(byte, j) { 1 } else { 3 })
            .sum();
        if prefix_len + escaped_len > room {
            break;
        }
        prefix_len += escaped_len;
    }
    let mut name = escaped;
    name.truncate(prefix_len);
    name.push(DIGEST_SEPARATOR);
    for byte in &Sha256::digest(value.as_bytes())[..DIGEST_HEX_LEN / 2] {
        let _ = write!(name, "{byte:02x}");
    }
    Ok(name)
}

/// The identifier that `name` is the directory name of (see [`identifier_component`]), for
/// tools that show what they find. `None` for a long identifier's name, which holds only its
/// beginning and a digest, and for any name the escaping does not make.
pub fn unescape_component(name: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find('%') {
        bytes.extend_from_slice(&rest.as_bytes()[..i]);
        let hex = rest.get(i + 1..i + 3)?;
        bytes.push(u8::from_str_radix(hex, 16).ok()?);
        rest = &rest[i + 3..];
    }
    bytes.extend_from_slice(rest.as_bytes());
    let value = String::from_utf8(bytes).ok()?;
    // Only the one name the escaping gives (upper-case hex, plain bytes left plain, no digest)
    // is undone: a name from elsewhere is not taken for an identifier.
    (identifier_component(&value).ok()? == name).then_some(value)
}

/// Who a stream belongs to: the call, the processing stage and the tap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    trace_id: String,
    station_key: String,
    tap: Tap,
    trace_dir: String,
    station_dir: String,
}

impl Identity {
    /// Checks the identifiers and names their directories. `tap` is a [`Tap`] or its name
    /// (`"PRE"`, `"POST"`).
    ///
    /// On error, says which of the identifiers (`trace-id`, `station-key`, `tap`) is unusable.
    pub fn new(
        trace_id: &str,
        station_key: &str,
        tap: impl TryInto<Tap>,
    ) -> Result<Self, (&'static str, IdentifierError)> {
        Ok(Identity {
            trace_dir: identifier_component(trace_id).map_err(|e| ("trace-id", e))?,
            station_dir: identifier_component(station_key).map_err(|e| ("station-key", e))?,
            tap: tap
                .try_into()
                .map_err(|_| ("tap", IdentifierError::UnknownTap))?,
            trace_id: trace_id.to_owned(),
            station_key: station_key.to_owned(),
        })
    }

    /// The call's identifier, as given.
    pub fn trace_id(&self) -> &str {
        &self.trace_id
    }

    /// The processing stage's identifier, as given.
    pub fn station_key(&self) -> &str {
        &self.station_key
    }

    /// The tap's name, `PRE` or `POST`, as in paths and messages.
    pub fn tap(&self) -> &'static str {
        self.tap.as_str()
    }
}

/// The UTC calendar date of `ms` milliseconds after the epoch, as `YYYY-MM-DD`.
pub fn utc_date(ms: u64) -> String {
    // Days to civil date, after Howard Hinnant's `civil_from_days`.
    let days = (ms / 86_400_000) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The directory of the segments of `identity` whose bucket starts at `bucket_ms`.
pub fn segment_dir(base: &Path, identity: &Identity, bucket_ms: u64) -> PathBuf {
    base.join(utc_date(bucket_ms)).join(identity_dir(identity))
}

/// The path of `identity`'s segments below a date directory: `<trace>/<station>/<TAP>`.
pub fn identity_dir(identity: &Identity) -> PathBuf {
    [
        identity.trace_dir.as_str(),
        identity.station_dir.as_str(),
        identity.tap.as_str(),
    ]
    .iter()
    .collect()
}

/// Where a segment file found under `base` sits in the layout: the names of its date, trace
/// and station directories, and its tap. `None` for a file anywhere else, or below a name
/// that is not UTF-8, which the layout never makes.
pub fn place_below<'a>(base: &Path, path: &'a Path) -> Option<(&'a str, &'a str, &'a str, Tap)> {
    let mut names = path.strip_prefix(base).ok()?.iter().map(|c| c.to_str());
    let (date, trace, station, tap, _file) = (
        names.next()??,
        names.next()??,
        names.next()??,
        names.next()??,
        names.next()??,
    );
    if names.next().is_some() {
        return None;
    }
    Some((date, trace, station, Tap::try_from(tap).ok()?))
}

/// The file name of a segment: `segment_<ms>.wav`, or `segment_<ms>-<n>.wav` for the `n`-th
/// further file of the same bucket (a file is never overwritten).
pub fn segment_file_name(bucket_ms: u64, suffix: u32) -> String {
    if suffix == 0 {
        format!("segment_{bucket_ms}.wav")
    } else {
        format!("segment_{bucket_ms}-{suffix}.wav")
    }
}

/// The bucket start and file index of a segment file name (`segment_<ms>[-<n>].wav`).
pub fn parse_segment_file_name(name: &str) -> Option<(u64, u32)> {
    let stem = name.strip_prefix("segment_")?.strip_suffix(".wav")?;
    let (ms, suffix) = match stem.split_once('-') {
        Some((ms, n)) => (ms, n.parse().ok().filter(|&n| n > 0)?),
        None => (stem, 0),
    };
    Some((ms.parse().ok()?, suffix))
}

/// The name of the file being written for `file_name` (`<name>.part`).
pub fn part_file_name(file_name: &str) -> String {
    format!("{file_name}.part")
}

/// The name of the mark that tells `file_name` was uploaded (`<name>.uploaded`). It stays when
/// the file itself is removed, so that the name is never given to another segment.
pub fn uploaded_mark_name(file_name: &str) -> String {
    format!("{file_name}.uploaded")
}

/// The name a `.part` of `file_name` is made under before it gets its own:
/// `<name>.<unique>.new`, `unique` (without `.`) telling apart the writers of a directory.
/// Recovery never takes such a file for a `.part`.
pub fn new_file_name(file_name: &str, unique: &str) -> String {
    format!("{file_name}.{unique}.new")
}

/// Whether `name` is one a `.part` is made under (see [`new_file_name`]).
pub fn is_new_file_name(name: &str) -> bool {
    name.strip_suffix(".new")
        .and_then(|n| n.rsplit_once('.'))
        .is_some_and(|(file_name, _)| parse_segment_file_name(file_name).is_some())
}

/// What a [`Walk`] finds.
#[derive(Debug)]
pub enum Found {
    /// A directory.
    Dir(PathBuf),
    /// A file named like a segment.
    Segment(SegmentFile),
}

/// A file named like a segment, `segment_<ms>[-<n>].wav`.
#[derive(Debug, Clone)]
pub struct SegmentFile {
    /// Where it is.
    pub path: PathBuf,
    /// Start of its bucket, in ms on the recorder's timeline.
    pub bucket_ms: u64,
    /// Its file index (0 for `segment_<ms>.wav`).
    pub file_index: u32,
    /// What it is: a symbolic link is not followed, and anything but a directory counts.
    pub file_type: FileType,
}

/// Why a [`Walk`] could not go on: the directory it was reading, and the error.
pub type WalkError = (PathBuf, io::Error);

/// A walk through a base directory, one directory read at a time: a directory found is read
/// when the walk goes on after it, so what a caller does to it meanwhile is seen.
///
/// The entries of a directory come in path order, and a subdirectory's walk comes before its
/// next sibling. A base directory that cannot be read, or an entry of a directory that cannot
/// be read, is an error; a directory below the base that cannot be read (gone meanwhile, not a
/// directory) is passed over. After an error the walk goes on.
#[derive(Debug)]
pub struct Walk {
    /// For the walk of one identity, its path below a date directory (see [`identity_dir`]).
    below_dates: Option<PathBuf>,
    /// Whether the tap directories of an identity are read for their segment files.
    files: bool,
    /// The base of a tree, found before anything in it.
    base: Option<PathBuf>,
    /// The directory found last, to be read at the next step.
    unread: Option<PathBuf>,
    /// The directories being read, innermost last, each with its entries still to come.
    open: Vec<(PathBuf, vec::IntoIter<io::Result<DirEntry>>)>,
}

impl Walk {
    /// Every directory under `base`, `base` first, and every file named like a segment, at any
    /// depth. Symbolic links are not followed.
    pub fn tree(base: &Path) -> Self {
        Walk {
            below_dates: None,
            files: true,
            base: Some(base.to_owned()),
            unread: None,
            open: Vec::new(),
        }
    }

    /// The tap directories of `identity` under `base`, `<base>/<date>/<trace>/<station>/<TAP>`
    /// for every date directory that has one, in date order, each followed by the files in it
    /// named like a segment. Symbolic links to a date or tap directory are followed.
    pub fn identity(base: &Path, identity: &Identity) -> Self {
        Walk {
            below_dates: Some(identity_dir(identity)),
            files: true,
            base: None,
            unread: Some(base.to_owned()),
            open: Vec::new(),
        }
    }

    /// The directories alone, errors passed over. The tap directories of an identity are then
    /// not read at all.
    pub fn dirs(mut self) -> impl Iterator<Item = PathBuf> {
        self.files = false;
        self.filter_map(|found| match found {
            Ok(Found::Dir(dir)) => Some(dir),
            _ => None,
        })
    }

    /// Reads the directory found last, if any.
    fn read_unread(&mut self) -> Result<(), WalkError> {
        let Some(dir) = self.unread.take() else {
            return Ok(());
        };
        match fs::read_dir(&dir) {
            Ok(entries) => {
                let mut entries: Vec<_> = entries.collect();
                entries.sort_by_cached_key(|entry| entry.as_ref().ok().map(DirEntry::path));
                self.open.push((dir, entries.into_iter()));
                Ok(())
            }
            Err(e) if self.open.is_empty() => Err((dir, e)),
            Err(_) => Ok(()),
        }
    }
}

impl Iterator for Walk {
    type Item = Result<Found, WalkError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(base) = self.base.take() {
            self.unread = Some(base.clone());
            return Some(Ok(Found::Dir(base)));
        }
        if let Err(e) = self.read_unread() {
            return Some(Err(e));
        }
        loop {
            let depth = self.open.len();
            let (dir, entries) = self.open.last_mut()?;
            let Some(entry) = entries.next() else {
                self.open.pop();
                continue;
            };
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => return Some(Err((dir.clone(), e))),
            };
            let path = entry.path();
            if let Some(below) = &self.below_dates
                && depth == 1
            {
                // A date directory, or anything else: only a tap directory below it counts.
                let tap = path.join(below);
                if !tap.is_dir() {
                    continue;
                }
                if self.files {
                    self.unread = Some(tap.clone());
                }
                return Some(Ok(Found::Dir(tap)));
            }
            let file_type = match entry.file_type() {
                Ok(file_type) => file_type,
                Err(e) => return Some(Err((dir.clone(), e))),
            };
            if file_type.is_dir() {
                // A tree's walk goes down every directory; an identity's stops at its taps.
                if self.below_dates.is_some() {
                    continue;
                }
                self.unread = Some(path.clone());
                return Some(Ok(Found::Dir(path)));
            }
            let parsed = path
                .file_name()
                .and_then(|name| name.to_str())
                .and_then(parse_segment_file_name);
            if let Some((bucket_ms, file_index)) = parsed {
                return Some(Ok(Found::Segment(SegmentFile {
                    path,
                    bucket_ms,
                    file_index,
                    file_type,
                })));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;
    use std::path::Component;

    fn unescape(s: &str) -> Vec<u8> {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        out
    }

    #[test]
    fn a_place_below_base_is_five_utf8_names_with_a_tap() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        let base = Path::new("/rec");
        let good = Path::new("/rec/2026-11-21/call/stt/POST/segment_0.wav");
        assert_eq!(
            place_below(base, good),
            Some(("2026-11-21", "call", "stt", Tap::Post))
        );
        for other in [
            "/rec/2026-11-21/call/stt/MID/segment_0.wav",
            "/rec/2026-11-21/call/stt/segment_0.wav",
            "/rec/2026-11-21/call/extra/stt/PRE/segment_0.wav",
            "/elsewhere/2026-11-21/call/stt/PRE/segment_0.wav",
        ] {
            assert_eq!(place_below(base, Path::new(other)), None, "{other}");
        }
        let mut odd = b"/rec/2026-11-21/call/".to_vec();
        odd.extend_from_slice(b"\xffjunk/PRE/segment_0.wav");
        assert_eq!(place_below(base, Path::new(OsStr::from_bytes(&odd))), None);
    }

    #[test]
    fn hostile_identifiers_stay_one_component() {
        let hostile = [
            "..",
            ".",
            "../../etc/passwd",
            "a/b",
            "a\\b",
            "a\0b",
            "line\nbreak\t",
            "/absolute",
            "sip:alice@example.com;tag=1",
            "ünïcödé 通话",
            "%2E%2E",
            "~",
            ".hidden",
        ];
        let mut seen = HashSet::new();
        for value in hostile {
            let c = identifier_component(value).unwrap();
            let path = Path::new("/base").join(&c);
            let comps: Vec<_> = path.components().collect();
            assert_eq!(comps.len(), 3, "{value:?} -> {c:?}");
            assert!(
                matches!(comps[2], Component::Normal(_)),
                "{value:?} -> {c:?}"
            );
            assert!(!c.starts_with('.'), "{value:?} -> {c:?}");
            assert!(
                c.bytes().all(|b| b.is_ascii_graphic()),
                "{value:?} -> {c:?}"
            );
            assert_eq!(unescape(&c), value.as_bytes());
            assert!(seen.insert(c));
        }
    }

    #[test]
    fn names_are_unescaped_back_to_their_identifiers_and_nothing_else_is() {
        for value in [
            "call-42",
            "sip:alice@example.com;tag=1",
            "ünïcödé 通话",
            ".hidden",
            "~",
        ] {
            let name = identifier_component(value).unwrap();
            assert_eq!(unescape_component(&name).as_deref(), Some(value), "{name}");
        }
        let digested = identifier_component(&"a".repeat(MAX_COMPONENT_LEN + 1)).unwrap();
        for name in [
            digested.as_str(),
            "",
            "sip%3abob",
            "%",
            "%4",
            "%G1",
            "%+A",
            "%FF",
            ".hidden",
            "a~b",
            "a b",
        ] {
            assert_eq!(unescape_component(name), None, "{name:?}");
        }
    }

    #[test]
    fn readable_identifiers_are_kept() {
        assert_eq!(
            escape_component("call-42_a.b@host+x=1"),
            "call-42_a.b@host+x=1"
        );
        assert_eq!(escape_component("sip:bob"), "sip%3Abob");
        assert_eq!(escape_component("100%"), "100%25");
    }

    #[test]
    fn empty_identifiers_are_refused() {
        assert_eq!(identifier_component(""), Err(IdentifierError::Empty));
        let err = Identity::new("ok", "", "PRE").unwrap_err();
        assert_eq!(err, ("station-key", IdentifierError::Empty));
        let err = Identity::new("ok", "stt", "pre").unwrap_err();
        assert_eq!(err, ("tap", IdentifierError::UnknownTap));
    }

    /// Checks the name of a long identifier: one component of at most `MAX_COMPONENT_LEN`
    /// bytes, a prefix of the escaped form cut between characters, then `~` and 32 hex digits.
    fn assert_digested(value: &str) -> String {
        let c = identifier_component(value).unwrap();
        assert!(c.len() <= MAX_COMPONENT_LEN, "{} bytes: {c}", c.len());
        let (prefix, digest) = c.rsplit_once('~').unwrap();
        assert_eq!(digest.len(), 32, "{c}");
        assert!(digest.bytes().all(|b| b.is_ascii_hexdigit()), "{c}");
        assert!(escape_component(value).starts_with(prefix), "{c}");
        assert!(!prefix.contains('~'));
        let unescaped = String::from_utf8(unescape(prefix)).expect("cut between characters");
        assert!(value.starts_with(&unescaped), "{c}");
        // As long as the room allows: the next character would not have fitted.
        let next = value[unescaped.len()..].chars().next().unwrap();
        let next_len = escape_component(&value[..unescaped.len() + next.len_utf8()]).len();
        assert!(next_len > MAX_COMPONENT_LEN - 33, "{c}");
        let path = Path::new("/base").join(&c);
        assert_eq!(path.components().count(), 3, "{c}");
        c
    }

    #[test]
    fn long_identifiers_get_a_readable_prefix_and_a_digest() {
        // The longest plain names are kept as they are.
        let a200 = "a".repeat(MAX_COMPONENT_LEN);
        assert_eq!(identifier_component(&a200).unwrap(), a200);
        let cjk22 = "通".repeat(22);
        assert_eq!(identifier_component(&cjk22).unwrap().len(), 198);
        assert!(!identifier_component(&cjk22).unwrap().contains('~'));

        let a201 = assert_digested(&"a".repeat(MAX_COMPONENT_LEN + 1));
        assert!(a201.starts_with(&"a".repeat(MAX_COMPONENT_LEN - 33)));
        assert_eq!(a201.len(), MAX_COMPONENT_LEN);
        // 23 characters of 3 bytes escape to 207 bytes; 18 whole ones fit before the digest.
        let cjk23 = assert_digested(&"通".repeat(23));
        assert!(cjk23.starts_with(&"%E9%80%9A".repeat(18)));
        assert_eq!(cjk23.len(), 18 * 9 + 33);
        assert_digested(&"x".repeat(10_000));
        // A leading dot stays escaped in the prefix.
        assert!(assert_digested(&".".repeat(300)).starts_with("%2E.."));
        // A cut that would fall inside a `%XX` falls before it.
        let mixed = format!("{}/{}", "a".repeat(MAX_COMPONENT_LEN - 34), "b".repeat(100));
        assert!(assert_digested(&mixed).starts_with(&format!("{}~", "a".repeat(166))));
        // The digest is SHA-256 of the identifier's bytes.
        assert_eq!(
            identifier_component(&"a".repeat(1_000)).unwrap()[MAX_COMPONENT_LEN - 32..],
            "41edece42d63e8d9bf515a9ba6932e1c"[..]
        );
    }

    #[test]
    fn long_identifiers_sharing_a_prefix_stay_apart() {
        let shared = "sip:alice@example.com;".repeat(25);
        assert!(shared.len() >= 500);
        let names: HashSet<String> = ["a", "b", "", "aa", "\u{0}", "通"]
            .iter()
            .map(|tail| assert_digested(&format!("{shared}{tail}")))
            .collect();
        assert_eq!(names.len(), 6);
    }

    #[test]
    fn a_digested_name_is_never_a_plain_name() {
        let digested = assert_digested(&"z".repeat(MAX_COMPONENT_LEN + 1));
        let (prefix, digest) = digested.rsplit_once('~').unwrap();
        // Identifiers that look like a digested name: their `~` is escaped.
        let short = format!("{}~{digest}", &prefix[..10]);
        assert_eq!(
            identifier_component(&short).unwrap(),
            format!("{}%7E{digest}", &prefix[..10])
        );
        for lookalike in [short, digested.clone()] {
            let c = identifier_component(&lookalike).unwrap();
            assert_ne!(c, lookalike);
            assert_ne!(c, digested);
        }
    }

    proptest! {
        #[test]
        fn names_are_one_component_and_only_long_ones_hold_a_tilde(value in ".{1,120}") {
            let c = identifier_component(&value).unwrap();
            prop_assert!(c.len() <= MAX_COMPONENT_LEN);
            prop_assert_eq!(Path::new("/base").join(&c).components().count(), 3);
            prop_assert!(c.bytes().all(|b| b.is_ascii_graphic()));
            let plain = escape_component(&value);
            if plain.len() <= MAX_COMPONENT_LEN {
                prop_assert!(!c.contains('~'));
                prop_assert_eq!(unescape(&c), value.as_bytes());
                prop_assert_eq!(unescape_component(&c), Some(value));
            } else {
                prop_assert_eq!(c.matches('~').count(), 1);
                prop_assert_eq!(unescape_component(&c), None);
            }
        }
    }

    #[test]
    fn a_tap_has_one_name_in_gst_inspect_paths_and_messages() {
        use glib::prelude::*;
        let class = glib::EnumClass::with_type(Tap::static_type()).unwrap();
        for tap in [Tap::Pre, Tap::Post] {
            let value = class.value(tap as i32).unwrap();
            assert_eq!(value.nick(), tap.as_str());
            assert_eq!(class.value_by_nick(tap.as_str()), Some(value));
            assert_eq!(Tap::try_from(tap.as_str()), Ok(tap));
            let id = Identity::new("c", "s", tap).unwrap();
            assert_eq!(id.tap(), tap.as_str());
            assert!(identity_dir(&id).ends_with(tap.as_str()));
        }
        assert_eq!(Tap::try_from("post"), Err(IdentifierError::UnknownTap));
    }

    /// What a walk found, below `base`: `d:` a directory, `s:` a segment file.
    fn walked(base: &Path, walk: Walk) -> Vec<String> {
        walk.map(|found| match found.unwrap() {
            Found::Dir(dir) => format!("d:{}", dir.strip_prefix(base).unwrap().display()),
            Found::Segment(s) => format!(
                "s:{} {} {}",
                s.path.strip_prefix(base).unwrap().display(),
                s.bucket_ms,
                s.file_index
            ),
        })
        .collect()
    }

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"").unwrap();
    }

    #[test]
    fn a_tree_walk_finds_every_directory_and_segment_in_path_order_without_links() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        for file in [
            "segment_9.wav",
            "1970-01-02/c/s/PRE/segment_86400000.wav",
            "1970-01-01/c/s/PRE/segment_5000-1.wav",
            "1970-01-01/c/s/PRE/segment_5000.wav",
            "1970-01-01/c/s/PRE/segment_5000.wav.part",
            "1970-01-01/c/s/PRE/segment_0.wav.uploaded",
            "1970-01-01/c/s/POST/notes.txt",
        ] {
            touch(&base.join(file));
        }
        std::os::unix::fs::symlink(base.join("1970-01-01"), base.join("link")).unwrap();
        std::os::unix::fs::symlink(
            base.join("segment_9.wav"),
            base.join("1970-01-02/segment_8.wav"),
        )
        .unwrap();
        let found = walked(base, Walk::tree(base));
        assert_eq!(
            found,
            [
                "d:",
                "d:1970-01-01",
                "d:1970-01-01/c",
                "d:1970-01-01/c/s",
                "d:1970-01-01/c/s/POST",
                "d:1970-01-01/c/s/PRE",
                "s:1970-01-01/c/s/PRE/segment_5000-1.wav 5000 1",
                "s:1970-01-01/c/s/PRE/segment_5000.wav 5000 0",
                "d:1970-01-02",
                "d:1970-01-02/c",
                "d:1970-01-02/c/s",
                "d:1970-01-02/c/s/PRE",
                "s:1970-01-02/c/s/PRE/segment_86400000.wav 86400000 0",
                "s:1970-01-02/segment_8.wav 8 0",
                "s:segment_9.wav 9 0",
            ]
        );
        let link = Walk::tree(base)
            .find_map(|found| match found {
                Ok(Found::Segment(s)) if s.bucket_ms == 8 => Some(s.file_type),
                _ => None,
            })
            .unwrap();
        assert!(link.is_symlink());
        assert_eq!(Walk::tree(base).dirs().count(), 10);
    }

    #[test]
    fn a_directory_is_read_when_the_walk_goes_on_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        std::fs::create_dir(base.join("a")).unwrap();
        let mut walk = Walk::tree(base);
        assert!(matches!(walk.next(), Some(Ok(Found::Dir(_)))));
        assert!(matches!(walk.next(), Some(Ok(Found::Dir(_)))));
        touch(&base.join("a/segment_0.wav"));
        assert!(matches!(walk.next(), Some(Ok(Found::Segment(_)))));
        assert!(walk.next().is_none());
    }

    #[test]
    fn an_identity_walk_finds_its_tap_directories_and_their_segments() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        let id = Identity::new("call/1", "stt", Tap::Post).unwrap();
        for file in [
            "1970-01-02/call%2F1/stt/POST/segment_86400000.wav",
            "1970-01-02/call%2F1/stt/POST/sub/segment_1.wav",
            "1970-01-01/call%2F1/stt/POST/segment_5000.wav.part",
            "1970-01-01/call%2F1/stt/POST/segment_0.wav",
            "1970-01-01/call%2F1/stt/PRE/segment_0.wav",
            "1970-01-01/other/stt/POST/segment_0.wav",
            "call%2F1/stt/POST/segment_0.wav",
        ] {
            touch(&base.join(file));
        }
        let elsewhere = tempfile::tempdir().unwrap();
        touch(
            &elsewhere
                .path()
                .join("call%2F1/stt/POST/segment_172800000.wav"),
        );
        std::os::unix::fs::symlink(elsewhere.path(), base.join("1970-01-03")).unwrap();
        assert_eq!(
            walked(base, Walk::identity(base, &id)),
            [
                "d:1970-01-01/call%2F1/stt/POST",
                "s:1970-01-01/call%2F1/stt/POST/segment_0.wav 0 0",
                "d:1970-01-02/call%2F1/stt/POST",
                "s:1970-01-02/call%2F1/stt/POST/segment_86400000.wav 86400000 0",
                "d:1970-01-03/call%2F1/stt/POST",
                "s:1970-01-03/call%2F1/stt/POST/segment_172800000.wav 172800000 0",
            ]
        );
        let dirs: Vec<PathBuf> = Walk::identity(base, &id).dirs().collect();
        assert_eq!(dirs.len(), 3);
        assert!(dirs.iter().all(|d| d.ends_with("call%2F1/stt/POST")));
    }

    #[test]
    fn only_a_base_that_cannot_be_read_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        let id = Identity::new("c", "s", Tap::Pre).unwrap();
        let mut walk = Walk::identity(&missing, &id);
        let (at, e) = walk.next().unwrap().unwrap_err();
        assert_eq!((at, e.kind()), (missing.clone(), io::ErrorKind::NotFound));
        assert!(walk.next().is_none());
        let mut walk = Walk::tree(&missing);
        assert!(matches!(walk.next(), Some(Ok(Found::Dir(d))) if d == missing));
        assert!(walk.next().unwrap().is_err());
        assert!(walk.next().is_none());
        // Below the base, a directory gone before it is read is passed over.
        std::fs::create_dir_all(dir.path().join("a")).unwrap();
        let mut walk = Walk::tree(dir.path());
        assert!(walk.next().unwrap().is_ok());
        assert!(walk.next().unwrap().is_ok());
        std::fs::remove_dir(dir.path().join("a")).unwrap();
        assert!(walk.next().is_none());
    }

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(utc_date(0), "1970-01-01");
        assert_eq!(utc_date(86_399_999), "1970-01-01");
        assert_eq!(utc_date(86_400_000), "1970-01-02");
        assert_eq!(utc_date(951_782_400_000), "2000-02-29");
        assert_eq!(utc_date(1_795_219_200_000 - 1), "2026-11-20");
        assert_eq!(utc_date(1_795_219_200_000), "2026-11-21");
        assert_eq!(utc_date(4_107_542_400_000), "2100-03-01");
    }

    #[test]
    fn layout_matches_the_documented_form() {
        let id = Identity::new("call/1", "stt", "POST").unwrap();
        assert_eq!(
            segment_dir(Path::new("/rec"), &id, 1_795_240_805_000),
            Path::new("/rec/2026-11-21/call%2F1/stt/POST")
        );
        assert_eq!(segment_file_name(5_000, 0), "segment_5000.wav");
        assert_eq!(segment_file_name(5_000, 2), "segment_5000-2.wav");
        assert_eq!(
            parse_segment_file_name("segment_5000.wav"),
            Some((5_000, 0))
        );
        assert_eq!(
            parse_segment_file_name("segment_5000-2.wav"),
            Some((5_000, 2))
        );
        for other in [
            "segment_5000.wav.part",
            "segment_x.wav",
            "segment_5-0.wav",
            "a.wav",
        ] {
            assert_eq!(parse_segment_file_name(other), None, "{other}");
        }
        assert_eq!(part_file_name("segment_5000.wav"), "segment_5000.wav.part");
        let new = new_file_name("segment_5000.wav", "42-7");
        assert_eq!(new, "segment_5000.wav.42-7.new");
        assert!(is_new_file_name(&new));
        for other in [
            "segment_5000.wav.part",
            "segment_5000.wav",
            "a.wav.1.new",
            "x.new",
        ] {
            assert!(!is_new_file_name(other), "{other}");
        }
    }
}
