//! The PRE/POST pairs under a base directory, for the offline tools: where they are, and their
//! figures and alarms as the recorder would have given them.
//!
//! A pair is a `PRE` and a `POST` file of the same date directory, trace, station, bucket and
//! file index. [`find_pairs`] groups the files found in that order (date directories sort by
//! date), so that a stage's pairs come in bucket order and a [`StageWatch`] per (trace,
//! station) fed in that order begins each alarm's episode where the recorder's would.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use crate::layout::{Found, Walk, place_below};
use crate::pair::{Analyzer, Config, Figures};
use crate::rebuild::read_segment;

/// Where a pair lies: date directory, trace and station directory names, bucket, file index.
pub type PairKey = (String, String, String, u64, u32);

/// The files of each pair found, PRE then POST (index [`Tap`](crate::layout::Tap) `as usize`), either side possibly
/// missing.
pub type Pairs = BTreeMap<PairKey, [Option<PathBuf>; 2]>;

/// What [`find_pairs`] found.
#[derive(Debug, Default)]
pub struct FoundPairs {
    /// The pairs, in date, trace, station, bucket and file index order.
    pub pairs: Pairs,
    /// The directories below the base that could not be read, with why.
    pub unreadable: Vec<(PathBuf, io::Error)>,
}

/// The segment files under `base` grouped into pairs, only those of the trace whose directory
/// name is `trace_dir` if one is given. Only `<date>/<trace>/<station>/<PRE|POST>/<file>`
/// counts. An error if `base` itself cannot be read.
pub fn find_pairs(base: &Path, trace_dir: Option<&str>) -> Result<FoundPairs, io::Error> {
    let mut found = FoundPairs::default();
    for item in Walk::tree(base) {
        let segment = match item {
            Ok(Found::Segment(segment)) => segment,
            Ok(Found::Dir(_)) => continue,
            Err((dir, e)) if dir == base => return Err(e),
            Err((dir, e)) => {
                found.unreadable.push((dir, e));
                continue;
            }
        };
        let Some((date, trace, station, tap)) = place_below(base, &segment.path) else {
            continue;
        };
        if trace_dir.is_some_and(|t| t != trace) {
            continue;
        }
        let key = (
            date.to_string(),
            trace.to_string(),
            station.to_string(),
            segment.bucket_ms,
            segment.file_index,
        );
        found.pairs.entry(key).or_default()[tap as usize] = Some(segment.path);
    }
    Ok(found)
}

/// The figures of the pair of files `pre` and `post`, compared looking for delays up to
/// `max_delay_ms`; an error saying which file could not be read, or that their rates differ.
pub fn compare_files(
    analyzer: &mut Analyzer,
    pre: &Path,
    post: &Path,
    max_delay_ms: u32,
) -> Result<Figures, String> {
    let (pre_samples, pre_rate) = read_segment(pre).map_err(|e| format!("cannot read {e}"))?;
    let (post_samples, post_rate) = read_segment(post).map_err(|e| format!("cannot read {e}"))?;
    if pre_rate != post_rate {
        return Err(format!(
            "{} is at {pre_rate} Hz but {} at {post_rate} Hz: the two sides of a pair must \
             have one rate",
            pre.display(),
            post.display()
        ));
    }
    let config = Config::new(pre_rate).with_max_delay_ms(max_delay_ms);
    Ok(analyzer.analyze(&pre_samples, &post_samples, &config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rebuild::write_segment_for_tests as write;
    use std::fs;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn pairs_are_grouped_in_bucket_order_and_only_taps_count() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        let file = |rel: &str| base.join(rel);
        for rel in [
            "1970-01-02/c/s/PRE/segment_86400000.wav",
            "1970-01-01/c/s/PRE/segment_5000.wav",
            "1970-01-01/c/s/POST/segment_5000.wav",
            "1970-01-01/c/s/POST/segment_5000-1.wav",
            "1970-01-01/d/s/PRE/segment_0.wav",
            "1970-01-01/c/s/LEFT/segment_0.wav",
            "1970-01-01/c/s/PRE/deeper/segment_0.wav",
        ] {
            write(&file(rel), 4, &[1, 2, 3, 4]);
        }
        // A directory whose name is not UTF-8 makes the path one level too deep: no pair.
        let odd = std::ffi::OsStr::from_bytes(b"1970-01-01/c/\xffjunk/s/POST/segment_0.wav");
        write(&base.join(odd), 4, &[1, 2, 3, 4]);
        let found = find_pairs(base, Some("c")).unwrap();
        let got: Vec<_> = found
            .pairs
            .iter()
            .map(|((date, _, _, ms, n), sides)| {
                (
                    date.as_str(),
                    *ms,
                    *n,
                    sides[0].is_some(),
                    sides[1].is_some(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("1970-01-01", 5_000, 0, true, true),
                ("1970-01-01", 5_000, 1, false, true),
                ("1970-01-02", 86_400_000, 0, true, false),
            ]
        );
        assert_eq!(find_pairs(base, None).unwrap().pairs.len(), 4);
        assert!(find_pairs(&base.join("absent"), None).is_err());
    }

    #[test]
    fn a_pair_of_two_rates_or_an_unreadable_side_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (pre, post) = (dir.path().join("pre.wav"), dir.path().join("post.wav"));
        write(&pre, 4, &[1, 2, 3, 4]);
        write(&post, 8, &[1; 8]);
        let mut analyzer = Analyzer::new();
        let err = compare_files(&mut analyzer, &pre, &post, 100).unwrap_err();
        assert!(err.contains("must have one rate"), "{err}");
        fs::write(&post, b"RIFF").unwrap();
        let err = compare_files(&mut analyzer, &pre, &post, 100).unwrap_err();
        assert!(err.starts_with("cannot read"), "{err}");
    }
}
