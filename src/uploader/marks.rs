//! The mark beside an uploaded file, `segment_<ms>.wav.uploaded`: one line, `<md5>  <key>`
//! (as `md5sum` prints it), written once the store confirmed the file. It outlives the file as a
//! tombstone: the name was published and what it held is in the bucket, under that key.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::s3::hex;
use crate::layout::uploaded_mark_name;

/// The mark that tells a file's upload was confirmed; the writer never gives its name to
/// another segment.
pub(super) fn mark_of(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(uploaded_mark_name(&name))
}

/// Writes the mark of the file at `path`: one line, `<md5 hex>  <key>`, as `md5sum` prints.
pub(super) fn write_mark(path: &Path, digest: &[u8; 16], key: &str) -> io::Result<()> {
    fs::write(mark_of(path), format!("{}  {key}\n", hex(digest)))
}

/// The MD5 and key the mark of the file at `path` records, if it has a readable one.
pub(super) fn read_mark(path: &Path) -> Option<([u8; 16], String)> {
    let text = fs::read_to_string(mark_of(path)).ok()?;
    let (hex, key) = text.trim_end().split_once("  ")?;
    if hex.len() != 32 || key.is_empty() {
        return None;
    }
    let mut digest = [0u8; 16];
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some((digest, key.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::super::s3::md5;
    use super::*;

    #[test]
    fn a_mark_records_the_md5_and_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("segment_0.wav");
        let digest = md5(b"audio");
        write_mark(&file, &digest, "p/1970-01-01/c/s/PRE/segment_0-1.wav").unwrap();
        assert_eq!(
            fs::read_to_string(mark_of(&file)).unwrap(),
            format!("{}  p/1970-01-01/c/s/PRE/segment_0-1.wav\n", hex(&digest))
        );
        assert_eq!(
            read_mark(&file),
            Some((digest, "p/1970-01-01/c/s/PRE/segment_0-1.wav".to_owned()))
        );
        // An empty or damaged mark proves nothing: the file is uploaded again (harmlessly).
        for damaged in ["", "0123", "zz  key\n", &format!("{}  \n", hex(&digest))] {
            fs::write(mark_of(&file), damaged).unwrap();
            assert_eq!(read_mark(&file), None, "{damaged:?}");
        }
    }
}
