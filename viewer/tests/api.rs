//! The JSON API and the audio over directories the element recorded: a call with an escaped
//! identifier, two stations, a hole and a restart that left `-1` files; a call with a long
//! identifier; what the API says checked against the files and the library (the layout, the
//! rebuild, the pair analysis). Then what must not work: paths out of the base directory,
//! symbolic links out of it, bad parameters, and files that are truncated or vanish.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::*;
use gstsegmentrecorder::layout::{Identity, identifier_component};
use gstsegmentrecorder::pair::StageWatch;
use gstsegmentrecorder::pair_walk::{compare_files, find_pairs};
use gstsegmentrecorder::rebuild::rebuild;
use serde_json::Value;

const ALICE: &str = "sip:alice@example.com;tag=1";
const STATIONS: &[(&str, f64)] = &[("denoise", 0.5), ("agc", 1.5)];

/// The recordings, made once for all the tests of this file (they never write to them).
fn recorded() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        // Joins 2.5 s into a bucket, loses 06:00:14.5 to 06:00:25.5 (bucket 15 s has no file),
        // then the call's recorders restart at 06:00:31, inside the bucket the first run
        // ended in: that bucket gets a `-1` file.
        let mut first = Take::new(ALICE, STATIONS, DAY_MS + 2_500, 30);
        first.hole = Some((12, 23));
        record(dir.path(), &first);
        let mut again = Take::new(ALICE, STATIONS, DAY_MS + 31_000, 9);
        again.seed = 2;
        record(dir.path(), &again);
        // The day before, a plain call; and one whose identifier is too long for a name.
        record(
            dir.path(),
            &Take::new(
                "call-42",
                &[("denoise", 0.5)],
                DAY_MS - 86_400_000 + 60_000,
                10,
            ),
        );
        record(
            dir.path(),
            &Take::new(&"long-".repeat(60), &[("stt", 1.0)], DAY_MS + 600_000, 5),
        );
        dir
    })
    .path()
}

/// The segment files of a tap on disk: (bucket ms, file index) in order.
fn files_of(base: &Path, trace: &str, station: &str, tap: &str) -> Vec<(u64, u64)> {
    let identity = Identity::new(trace, station, tap).unwrap();
    let mut out = Vec::new();
    for date in fs::read_dir(base).unwrap() {
        let dir = date
            .unwrap()
            .path()
            .join(gstsegmentrecorder::layout::identity_dir(&identity));
        let Ok(entries) = fs::read_dir(dir) else {
            continue;
        };
        for entry in entries {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if let Some((ms, n)) = gstsegmentrecorder::layout::parse_segment_file_name(&name) {
                out.push((ms, u64::from(n)));
            }
        }
    }
    out.sort();
    out
}

fn alice_id() -> String {
    identifier_component(ALICE).unwrap()
}

#[test]
fn the_index_lists_every_call_newest_first() {
    let base = recorded();
    let viewer = Viewer::start(base);
    let calls = viewer.json("/api/calls");
    let calls = calls["calls"].as_array().unwrap();
    let ids: Vec<&str> = calls
        .iter()
        .map(|c| c["trace-id"].as_str().unwrap())
        .collect();
    // A long identifier is shown by its directory name: a readable prefix and a digest.
    let long = identifier_component(&"long-".repeat(60)).unwrap();
    assert!(long.contains('~'));
    assert_eq!(ids, [long.as_str(), ALICE, "call-42"]);
    let alice = &calls[1];
    assert_eq!(alice["id"], alice_id().as_str());
    assert_eq!(alice["id"], "sip%3Aalice@example.com%3Btag=1");
    assert_eq!(alice["first-utc"], "2026-11-21T06:00:00.000Z");
    assert_eq!(alice["last-utc"], "2026-11-21T06:00:40.000Z");
    assert_eq!(alice["stations"], serde_json::json!(["agc", "denoise"]));
    let on_disk: usize = STATIONS
        .iter()
        .flat_map(|(s, _)| ["PRE", "POST"].map(|t| files_of(base, ALICE, s, t).len()))
        .sum();
    assert_eq!(alice["segments"], on_disk);
    assert_eq!(calls[2]["dates"], serde_json::json!(["2026-11-20"]));
}

/// A call whose last bucket starts at 23:59:55 ends on the next day, but is that day's call.
#[test]
fn a_call_is_listed_under_the_day_its_last_bucket_starts() {
    let base = tempfile::tempdir().unwrap();
    // 2026-11-22T00:00:00Z is 18 hours after DAY_MS.
    let midnight = DAY_MS + 18 * 3_600_000;
    record(
        base.path(),
        &Take::new("late", &[("stt", 1.0)], midnight - 10_000, 10),
    );
    record(
        base.path(),
        &Take::new("next", &[("stt", 1.0)], midnight, 5),
    );
    let viewer = Viewer::start(base.path());
    let calls = viewer.json("/api/calls");
    let days: Vec<(&str, &str, &str)> = calls["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap(),
                c["last-utc"].as_str().unwrap(),
                c["day"].as_str().unwrap_or("no day"),
            )
        })
        .collect();
    assert_eq!(
        days,
        [
            ("next", "2026-11-22T00:00:05.000Z", "2026-11-22"),
            ("late", "2026-11-22T00:00:00.000Z", "2026-11-21")
        ]
    );
}

/// Calls whose identifiers are `..` and `.`: their directories, `%2E.` and `%2E`, are dot
/// segments to URL parsers, which remove them from a URL.
#[test]
fn calls_named_by_dots_are_reached() {
    let base = tempfile::tempdir().unwrap();
    // And the calls whose identifiers are those directory names: `%2E` and `%2E.`, in
    // directories `%252E` and `%252E.`.
    for trace in ["..", ".", "%2E", "%2E."] {
        record(base.path(), &Take::new(trace, &[("stt", 1.0)], DAY_MS, 5));
    }
    let viewer = Viewer::start(base.path());
    let calls = viewer.json("/api/calls");
    let ids: Vec<(&str, &str)> = calls["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["id"].as_str().unwrap(), c["trace-id"].as_str().unwrap()))
        .collect();
    assert_eq!(
        ids,
        [
            ("%252E", "%2E"),
            ("%252E.", "%2E."),
            ("%2E", "."),
            ("%2E.", "..")
        ]
    );
    // The page links to the directory name percent-encoded, `%` included: one URL per
    // directory, which no parser takes for a dot segment. That, and the identifier
    // percent-encoded (`%2E%2E`, which reaches the server only when sent as written), reach
    // the call.
    for (names, trace) in [
        (&["%252E.", "%2E%2E", "%2e."][..], ".."),
        (&["%252E", "%2E"][..], "."),
        (&["%25252E"][..], "%2E"),
        (&["%25252E."][..], "%2E."),
    ] {
        for name in names {
            let call = viewer.json(&format!("/api/calls/{name}"));
            assert_eq!(call["trace-id"], trace, "{name}");
            assert_eq!(viewer.get(&format!("/call/{name}")).status, 200, "{name}");
            let pairs = viewer.pairs(name);
            assert_eq!(pairs["stations"][0]["pairs"].as_array().unwrap().len(), 1);
            let audio = viewer.get(&format!("/api/calls/{name}/audio?station=stt&tap=PRE"));
            assert_eq!(audio.status, 200, "{name}");
        }
    }
}

#[test]
fn a_call_s_segments_holes_and_further_files_are_those_on_disk() {
    let base = recorded();
    let viewer = Viewer::start(base);
    let call = viewer.json(&format!("/api/calls/{}", alice_id()));
    assert_eq!(call["trace-id"], ALICE);
    assert_eq!(call["segment-duration-ms"], 5_000);
    assert_eq!(call["start-ms"], DAY_MS);
    assert_eq!(call["end-ms"], DAY_MS + 40_000);
    let stations = call["stations"].as_array().unwrap();
    assert_eq!(stations.len(), 2);
    for station in stations {
        let key = station["station-key"].as_str().unwrap();
        for tap in ["PRE", "POST"] {
            let t = &station["taps"][tap];
            let listed: Vec<(u64, u64)> = t["segments"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    (
                        s["bucket-ts-ms"].as_u64().unwrap(),
                        s["file-index"].as_u64().unwrap(),
                    )
                })
                .collect();
            assert_eq!(listed, files_of(base, ALICE, key, tap), "{key} {tap}");
            let buckets: Vec<u64> = listed.iter().map(|(ms, _)| (ms - DAY_MS) / 1_000).collect();
            assert_eq!(buckets, [0, 5, 10, 25, 30, 30, 35], "{key} {tap}");
            assert!(listed.contains(&(DAY_MS + 30_000, 1)));
            // The bucket no file holds is a hole.
            assert_eq!(
                t["holes-ms"],
                serde_json::json!([[DAY_MS + 15_000, DAY_MS + 25_000]]),
                "{key} {tap}"
            );
            let segments = t["segments"].as_array().unwrap();
            // The padding before the stream joined, after the loss began and before it
            // ended (a run may go on a little where the speech itself is digital silence).
            let zero_run = |i: usize| {
                let run = &segments[i]["zero-runs-ms"];
                let edge = |j: usize| run[0][j].as_f64().unwrap();
                (edge(0), edge(1))
            };
            let near = |got: f64, want: f64| (got - want).abs() < 50.0;
            let (a, b) = zero_run(0);
            assert!(a == 0.0 && near(b, 2_500.0), "{a}-{b}");
            let runs = &segments[2]["zero-runs-ms"];
            let last = runs.as_array().unwrap().last().unwrap();
            assert!(
                near(last[0].as_f64().unwrap(), 4_500.0) && last[1] == 5_000.0,
                "{runs}"
            );
            let (a, b) = zero_run(3);
            assert!(a == 0.0 && near(b, 500.0), "{a}-{b}");
            for s in segments {
                assert_eq!(s["samples"], 80_000);
                assert_eq!(s["rate"], RATE);
                assert_eq!(s["silent"], false);
                assert!(s.get("error").is_none());
            }
        }
    }
    // The same call by its identifier as given, percent-encoded as in any URL.
    let by_id = viewer.json("/api/calls/sip:alice@example.com%3Btag=1");
    assert_eq!(by_id["id"], call["id"]);
    // And the long identifier by its directory name.
    let long = identifier_component(&"long-".repeat(60)).unwrap();
    let long_call = viewer.json(&format!("/api/calls/{long}"));
    assert_eq!(long_call["trace-id"], long.as_str());
    assert_eq!(
        long_call["stations"][0]["taps"]["PRE"]["segments"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn the_figures_and_alarms_are_those_of_the_pair_analysis() {
    let base = recorded();
    let viewer = Viewer::start(base);
    // At first the pairs are queued, and each station's rows stop at the first not compared.
    let first = viewer.json(&format!("/api/calls/{}/pairs", alice_id()));
    for station in first["stations"].as_array().unwrap() {
        let (rows, pending) = (
            station["pairs"].as_array().unwrap().len(),
            station["pending"].as_u64().unwrap(),
        );
        assert_eq!(rows as u64 + pending, 7, "{station}");
    }
    let pairs = viewer.pairs(&alice_id());
    // The oracle: the library's own grouping, comparison and alarms, as segmentrecorder-pairs.
    let found = find_pairs(base, Some(&alice_id())).unwrap();
    let mut analyzer = gstsegmentrecorder::pair::Analyzer::new();
    let mut expected: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut watches: BTreeMap<String, StageWatch> = BTreeMap::new();
    for ((_, _, station, bucket, index), sides) in found.pairs {
        let [Some(pre), Some(post)] = sides else {
            panic!("every file has its other tap's");
        };
        let f = compare_files(&mut analyzer, &pre, &post, 500).unwrap();
        let alarms: Vec<&str> = watches
            .entry(station.clone())
            .or_default()
            .observe(&f)
            .iter()
            .map(|a| a.as_str())
            .collect();
        expected
            .entry(station)
            .or_default()
            .push(serde_json::json!({
                "bucket-ts-ms": bucket, "file-index": index, "alignment": f.alignment.as_str(),
                "delay-ms": f.delay_ms, "correlation": f.correlation, "gain-db": f.gain_db,
                "pre-rms-dbfs": f.pre_rms_dbfs, "post-rms-dbfs": f.post_rms_dbfs,
                "pre-voiced-ratio": f.pre_voiced_ratio, "post-voiced-ratio": f.post_voiced_ratio,
                "pre-clipped-samples": f.pre_clipped_samples,
                "post-clipped-samples": f.post_clipped_samples, "alarms": alarms,
            }));
    }
    let stations = pairs["stations"].as_array().unwrap();
    assert_eq!(stations.len(), 2);
    for station in stations {
        let id = station["id"].as_str().unwrap();
        assert_eq!(station["pairs"], serde_json::json!(expected[id]), "{id}");
        assert_eq!(station["unpaired"], 0);
        assert_eq!(station["errors"], serde_json::json!([]));
    }
    // What the stages did: halved, and raised by 1.5 (3.5 dB), without delay.
    let denoise = &stations.iter().find(|s| s["id"] == "denoise").unwrap()["pairs"][1];
    assert!(
        (denoise["gain-db"].as_f64().unwrap() + 6.02).abs() < 0.1,
        "{denoise}"
    );
    assert!(
        denoise["delay-ms"].as_f64().unwrap().abs() < 0.1,
        "{denoise}"
    );
    assert!(denoise["correlation"].as_f64().unwrap() > 0.99, "{denoise}");
}

#[test]
fn peaks_are_the_lowest_and_highest_samples_of_each_column() {
    let base = recorded();
    let viewer = Viewer::start(base);
    let id = alice_id();
    // One column per bucket: each column's extremes are those of the bucket's files.
    let peaks = viewer.json(&format!(
        "/api/calls/{id}/peaks?station=denoise&tap=POST&from={DAY_MS}&to={}&columns=8",
        DAY_MS + 40_000
    ));
    assert_eq!(peaks["columns"], 8);
    let dir = base.join("2026-11-21").join(&id).join("denoise/POST");
    for k in 0..8u64 {
        let bucket = DAY_MS + k * 5_000;
        let mut samples = Vec::new();
        for name in [
            format!("segment_{bucket}.wav"),
            format!("segment_{bucket}-1.wav"),
        ] {
            if let Ok(bytes) = fs::read(dir.join(name)) {
                samples.extend(wav_samples(&bytes).0);
            }
        }
        let lo = samples.iter().copied().min().unwrap_or(0);
        let hi = samples.iter().copied().max().unwrap_or(0);
        assert_eq!(peaks["min"][k as usize], lo, "bucket {k}");
        assert_eq!(peaks["max"][k as usize], hi, "bucket {k}");
    }
    assert_eq!(
        (peaks["min"][3].clone(), peaks["max"][3].clone()),
        (0.into(), 0.into())
    );
    // Columns of one 10 ms cell each take that cell's samples and no other's: not those of
    // the cell starting at the column's right edge.
    let bucket = DAY_MS + 5_000;
    let (samples, _) = wav_samples(&fs::read(dir.join(format!("segment_{bucket}.wav"))).unwrap());
    let cells = viewer.json(&format!(
        "/api/calls/{id}/peaks?station=denoise&tap=POST&from={}&to={}&columns=40",
        bucket + 2_400,
        bucket + 2_800
    ));
    for c in 0..40 {
        let a = (2_400 + c * 10) * 16;
        let cell = &samples[a..a + 160];
        let (lo, hi) = (*cell.iter().min().unwrap(), *cell.iter().max().unwrap());
        assert_eq!(
            (cells["min"][c].clone(), cells["max"][c].clone()),
            (lo.into(), hi.into()),
            "column {c}"
        );
    }
    // A fine view: 10 ms columns over the first second after the join.
    let fine = viewer.json(&format!(
        "/api/calls/{id}/peaks?station=denoise&tap=PRE&from={}&to={}&columns=100",
        DAY_MS + 2_000,
        DAY_MS + 3_000
    ));
    let (min, max) = (
        fine["min"].as_array().unwrap(),
        fine["max"].as_array().unwrap(),
    );
    assert!(
        min[..50].iter().chain(&max[..50]).all(|v| v == 0),
        "padding"
    );
    let loud = max[50..]
        .iter()
        .filter(|v| v.as_i64().unwrap() > 100)
        .count();
    assert!(loud > 25, "speech in {loud} of 50 columns");
}

#[test]
fn audio_is_the_rebuilt_tap_and_serves_byte_ranges() {
    let base = recorded();
    let viewer = Viewer::start(base);
    let id = alice_id();
    let rebuilt = rebuild(base, &Identity::new(ALICE, "agc", "POST").unwrap(), None).unwrap();
    assert_eq!(rebuilt.first_bucket_ms, DAY_MS);
    let target = format!("/api/calls/{id}/audio?station=agc&tap=POST");
    let whole = viewer.get(&target);
    assert_eq!(whole.status, 200);
    assert_eq!(whole.header("Content-Type"), Some("audio/wav"));
    assert_eq!(whole.header("Accept-Ranges"), Some("bytes"));
    // A length, not chunks: the media element seeks by it.
    let length = whole.body.len().to_string();
    assert_eq!(whole.header("Content-Length"), Some(length.as_str()));
    let (samples, rate) = wav_samples(&whole.body);
    assert_eq!(rate, RATE);
    assert_eq!(
        samples, rebuilt.samples,
        "the library's rebuild, hole and -1 file merged"
    );
    assert_eq!(samples.len(), 40 * RATE as usize);

    // A time range, as the page asks to play or download it.
    let ranged = viewer.get(&format!(
        "{target}&from={}&to={}&download=1",
        DAY_MS + 12_250,
        DAY_MS + 31_500
    ));
    assert!(
        ranged
            .header("Content-Disposition")
            .unwrap()
            .starts_with("attachment")
    );
    let (part, _) = wav_samples(&ranged.body);
    assert_eq!(part, rebuilt.samples[12_250 * 16..31_500 * 16]);
    // A range starting before the tap's first bucket is silence up to it.
    let early = viewer.get(&format!(
        "{target}&from={}&to={}",
        DAY_MS - 1_000,
        DAY_MS + 1_000
    ));
    let (early, _) = wav_samples(&early.body);
    assert_eq!(early.len(), 2 * RATE as usize);
    assert!(early[..RATE as usize].iter().all(|&s| s == 0));
    assert_eq!(early[RATE as usize..], rebuilt.samples[..RATE as usize]);

    // Wherever a range starts and ends, its answer lasts from `from` to `to`: holes (no file
    // for 06:00:15 to 06:00:25) and the time before the first bucket and after the last are
    // silence, a range ending in a hole or lying wholly in one or outside the files included.
    for (from, to) in [
        (12_000, 18_000),
        (16_000, 19_000),
        (14_000, 27_000),
        (38_000, 45_000),
        (41_000, 42_000),
        (-3_000, -1_000),
    ] {
        let at = |ms: i64| (DAY_MS as i64 + ms) as u64;
        let reply = viewer.get(&format!("{target}&from={}&to={}", at(from), at(to)));
        assert_eq!(reply.status, 200, "{from}..{to}: {}", reply.text());
        let (part, _) = wav_samples(&reply.body);
        let expected: Vec<i16> = (from * 16..to * 16)
            .map(|i| {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| rebuilt.samples.get(i).copied())
                    .unwrap_or(0)
            })
            .collect();
        assert_eq!(part.len(), expected.len(), "{from}..{to}");
        assert!(part == expected, "{from}..{to}: other samples");
    }

    // Byte ranges, as an <audio> element asks when it seeks.
    for (range, a, b) in [
        ("bytes=0-99", 0, 100),
        ("bytes=1000001-", 1_000_001, whole.body.len()),
        ("bytes=-7", whole.body.len() - 7, whole.body.len()),
    ] {
        let part = get(viewer.addr, &target, &[("Range", range)]);
        assert_eq!(part.status, 206, "{range}");
        assert_eq!(part.body, whole.body[a..b], "{range}");
        assert_eq!(
            part.header("Content-Range").unwrap(),
            format!("bytes {a}-{}/{}", b - 1, whole.body.len())
        );
    }
    let to_the_end = get(
        viewer.addr,
        &target,
        &[("Range", "bytes=0-18446744073709551615")],
    );
    assert_eq!(to_the_end.status, 206);
    assert_eq!(to_the_end.body, whole.body);
    // Invalid ranges are ignored: the whole file.
    for range in ["bytes=5-2", "bytes=-0"] {
        let all = get(viewer.addr, &target, &[("Range", range)]);
        assert_eq!(all.status, 200, "{range}");
        assert_eq!(all.body, whole.body, "{range}");
    }
    for range in [
        format!("bytes={}-", whole.body.len()),
        "bytes=999999999-".into(),
    ] {
        let past = get(viewer.addr, &target, &[("Range", &range)]);
        assert_eq!(past.status, 416, "{range}");
        assert_eq!(
            past.header("Content-Range"),
            Some(format!("bytes */{}", whole.body.len()).as_str())
        );
    }
}

/// Paths out of the base directory, however written, and symbolic links out of it.
#[test]
fn nothing_outside_the_base_directory_is_served() {
    let base = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    // A real call outside, and links to it from inside: a whole call, a date, a station and a
    // segment file that look like the layout's.
    record(
        outside.path(),
        &Take::new("secret", &[("stt", 1.0)], DAY_MS, 5),
    );
    record(base.path(), &Take::new("open", &[("stt", 1.0)], DAY_MS, 5));
    let day = base.path().join("2026-11-21");
    std::os::unix::fs::symlink(outside.path().join("2026-11-21/secret"), day.join("linked"))
        .unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("2026-11-21"),
        base.path().join("2026-11-22"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("2026-11-21/secret/stt"),
        day.join("open/linked"),
    )
    .unwrap();
    let outside_file = outside
        .path()
        .join(format!("2026-11-21/secret/stt/PRE/segment_{DAY_MS}.wav"));
    std::os::unix::fs::symlink(
        &outside_file,
        day.join(format!("open/stt/PRE/segment_{}.wav", DAY_MS + 5_000)),
    )
    .unwrap();
    fs::write(outside.path().join("passwd"), "root:secret").unwrap();

    let viewer = Viewer::start(base.path());
    let calls = viewer.json("/api/calls");
    let ids: Vec<&str> = calls["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["open"]);
    let call = viewer.json("/api/calls/open");
    assert_eq!(call["stations"].as_array().unwrap().len(), 1, "{call}");
    assert_eq!(
        call["stations"][0]["taps"]["PRE"]["segments"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let whole = viewer.get("/api/calls/open/audio?station=stt&tap=PRE");
    assert_eq!(
        wav_samples(&whole.body).0.len(),
        5 * RATE as usize,
        "the linked file is not joined"
    );

    let outside_name = outside.path().display().to_string();
    let attempts = [
        "/../../../../etc/passwd".to_owned(),
        "/static/../../Cargo.toml".into(),
        "/static/%2e%2e/%2e%2e/Cargo.toml".into(),
        "//etc/passwd".into(),
        "/call/..".into(),
        "/call/%2e%2e".into(),
        "/call/%252e%252e".into(),
        "/call/linked".into(),
        "/call/secret".into(),
        "/api/calls/..".into(),
        "/api/calls/.".into(),
        "/api/calls/%2E%2E%2F%2E%2E%2Fetc".into(),
        "/api/calls/..%2f..%2fpasswd".into(),
        "/api/calls/..%252f..%252fpasswd".into(),
        "/api/calls/linked".into(),
        "/api/calls/secret/audio?station=stt&tap=PRE".into(),
        format!("/api/calls/{}", outside_name.replace('/', "%2F")),
        format!(
            "/api/calls/open/audio?station={}&tap=PRE",
            outside_name.replace('/', "%2F")
        ),
        "/api/calls/open/audio?station=../../secret/stt&tap=PRE".into(),
        "/api/calls/open/audio?station=..%2F..%2Fsecret%2Fstt&tap=PRE".into(),
        "/api/calls/open/audio?station=linked&tap=PRE".into(),
        "/api/calls/open/peaks?station=linked&tap=PRE".into(),
        "/api/calls/open/audio?station=stt&tap=../PRE".into(),
        "/api/calls/open/audio?station=stt&tap=%2E%2E".into(),
        "/api/calls/open/../../../passwd".into(),
        "/api/calls/open/%2e%2e/%2e%2e/passwd".into(),
        "/api/calls/%2Fetc%2Fpasswd".into(),
        format!("/api/calls/open/audio/{}", outside_name),
        "/passwd".into(),
    ];
    for target in &attempts {
        let reply = viewer.get(target);
        assert_eq!(reply.status, 404, "{target}: {}", reply.text());
        assert!(!reply.text().contains("root:secret"), "{target}");
        assert!(
            reply.header("Content-Type") != Some("audio/wav"),
            "{target}"
        );
    }
    // Nothing is written: the base directory holds what the recorders left, no more.
    let after = common_files(base.path());
    assert!(
        after
            .iter()
            .all(|p| p.extension().is_some_and(|e| e == "wav")),
        "{after:?}"
    );
}

fn common_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                out.push(entry.path());
            }
        }
    }
    out
}

#[test]
fn bad_parameters_get_a_clear_answer() {
    let base = recorded();
    let viewer = Viewer::start(base);
    let id = alice_id();
    for (query, status, says) in [
        (
            "peaks?station=denoise&tap=PRE&from=10&to=5",
            400,
            "from < to",
        ),
        ("peaks?station=denoise&tap=PRE&columns=0", 400, "columns"),
        (
            "peaks?station=denoise&tap=PRE&columns=99999999",
            400,
            "columns",
        ),
        (
            "peaks?station=denoise&tap=PRE&from=soon",
            400,
            "not a whole number",
        ),
        ("peaks?station=denoise&tap=LEFT", 404, "tap=PRE or tap=POST"),
        ("peaks?station=nobody&tap=PRE", 404, "station="),
        (
            "audio?station=denoise&tap=PRE&from=9&to=9",
            400,
            "from < to",
        ),
        // From the epoch: a range reaching far before the call would take memory in
        // proportion to the time it spans. Refused, and the server goes on.
        ("audio?station=denoise&tap=PRE&from=0", 413, "shorter range"),
        ("nothing", 404, "not found"),
    ] {
        let reply = viewer.get(&format!("/api/calls/{id}/{query}"));
        assert_eq!(reply.status, status, "{query}: {}", reply.text());
        let body: Value = serde_json::from_slice(&reply.body).unwrap();
        assert!(
            body["error"].as_str().unwrap().contains(says),
            "{query}: {body}"
        );
    }
    assert_eq!(viewer.get("/api/calls").status, 200);
    let post = request(viewer.addr, "POST", "/api/calls", &[], b"{}");
    assert_eq!(post.status, 405);
    let delete = request(viewer.addr, "DELETE", &format!("/api/calls/{id}"), &[], b"");
    assert_eq!(delete.status, 405);
}

/// A segment cut short on disk and one that vanishes: the API says which, and goes on.
#[test]
fn a_truncated_or_vanished_file_is_named_and_the_rest_still_served() {
    let base = tempfile::tempdir().unwrap();
    record(base.path(), &Take::new("cut", &[("stt", 0.5)], DAY_MS, 15));
    let tap = base.path().join("2026-11-21/cut/stt/PRE");
    let truncated = tap.join(format!("segment_{}.wav", DAY_MS + 5_000));
    let len = fs::metadata(&truncated).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&truncated)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let viewer = Viewer::start(base.path());
    let call = viewer.json("/api/calls/cut");
    let segments = call["stations"][0]["taps"]["PRE"]["segments"]
        .as_array()
        .unwrap();
    let err = segments[1]["error"].as_str().unwrap();
    assert!(
        err.contains(&format!("segment_{}.wav", DAY_MS + 5_000)),
        "{err}"
    );
    // Named below the base directory: no answer tells where the server keeps its files.
    let base_name = fs::canonicalize(base.path()).unwrap().display().to_string();
    assert!(!err.contains(&base_name), "{err}");
    assert!(segments[0].get("error").is_none() && segments[2].get("error").is_none());
    // The cut file is left out of the audio: its bucket is silence, the others are there.
    let audio = viewer.get("/api/calls/cut/audio?station=stt&tap=PRE");
    let (samples, _) = wav_samples(&audio.body);
    assert_eq!(samples.len(), 15 * RATE as usize);
    assert!(samples[80_000..160_000].iter().all(|&s| s == 0));
    assert!(
        samples[..80_000].iter().any(|&s| s != 0) && samples[160_000..].iter().any(|&s| s != 0)
    );
    let pairs = viewer.pairs("cut");
    let errors = pairs["stations"][0]["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{pairs}");
    let error = errors[0].as_str().unwrap();
    assert!(
        error.contains(&format!("segment_{}.wav", DAY_MS + 5_000)) && !error.contains(&base_name),
        "{error}"
    );
    assert_eq!(pairs["stations"][0]["pairs"].as_array().unwrap().len(), 2);

    // A file removed after the call was listed: the next answers simply do without it.
    let before = viewer.json("/api/calls/cut");
    fs::remove_file(tap.join(format!("segment_{}.wav", DAY_MS + 10_000))).unwrap();
    let after = viewer.json("/api/calls/cut");
    assert_ne!(before["version"], after["version"]);
    assert_eq!(
        after["stations"][0]["taps"]["PRE"]["segments"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let audio = viewer.get("/api/calls/cut/audio?station=stt&tap=PRE");
    assert_eq!(audio.status, 200);
    let peaks = viewer.get("/api/calls/cut/peaks?station=stt&tap=PRE");
    assert_eq!(peaks.status, 200);
}

#[test]
fn concurrent_requests_get_the_same_answers() {
    let base = recorded();
    let viewer = Viewer::start(base);
    let id = alice_id();
    let targets = [
        format!("/api/calls/{id}"),
        format!("/api/calls/{id}/pairs"),
        format!("/api/calls/{id}/peaks?station=agc&tap=PRE&columns=777"),
        format!(
            "/api/calls/{id}/audio?station=denoise&tap=POST&from={}&to={}",
            DAY_MS + 1_000,
            DAY_MS + 9_000
        ),
        "/api/calls".to_owned(),
    ];
    viewer.pairs(&id);
    let alone: Vec<Vec<u8>> = targets.iter().map(|t| viewer.get(t).body).collect();
    let (addr, targets, alone) = (viewer.addr, &targets, &alone);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let target = &targets[i % targets.len()];
                scope.spawn(move || (i % targets.len(), get(addr, target, &[])))
            })
            .collect();
        for h in handles {
            let (i, reply) = h.join().unwrap();
            assert_eq!(reply.status, 200, "{}", targets[i]);
            assert_eq!(reply.body, alone[i], "{}", targets[i]);
        }
    });
}

#[test]
fn a_call_being_recorded_changes_version_as_segments_are_published() {
    let base = tempfile::tempdir().unwrap();
    record(base.path(), &Take::new("live", &[("stt", 0.5)], DAY_MS, 10));
    let viewer = Viewer::start(base.path());
    let before = viewer.json("/api/calls/live");
    record(
        base.path(),
        &Take::new("live", &[("stt", 0.5)], DAY_MS + 10_000, 10),
    );
    let after = viewer.json("/api/calls/live");
    assert_ne!(before["version"], after["version"]);
    assert_eq!(before["end-ms"], DAY_MS + 10_000);
    assert_eq!(after["end-ms"], DAY_MS + 20_000);
}

#[test]
fn bad_command_lines_are_refused_with_a_reason() {
    let program = env!("CARGO_BIN_EXE_segmentrecorder-view");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    fs::write(&file, "").unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = busy.local_addr().unwrap().to_string();
    let missing = dir.path().join("missing");
    let dir_arg = dir.path().to_str().unwrap();
    for (args, says) in [
        (vec![], "usage: segmentrecorder-view BASE_DIR"),
        (vec![missing.to_str().unwrap()], "cannot open BASE_DIR"),
        (vec![file.to_str().unwrap()], "is not a directory"),
        (vec![dir_arg, "--listen", "localhost"], "not an ADDR:PORT"),
        (
            vec![dir_arg, "--listen", "127.0.0.1:99999"],
            "not an ADDR:PORT",
        ),
        (vec![dir_arg, "--listen"], "--listen needs ADDR:PORT"),
        (vec![dir_arg, "--listen", busy.as_str()], "cannot listen on"),
        (vec![dir_arg, "--port", "1"], "unknown option --port"),
        (vec![dir_arg, dir_arg], "one BASE_DIR only"),
    ] {
        let out = std::process::Command::new(program)
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.starts_with("segmentrecorder-view: "), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    // Asked for, the usage is an answer, not an error.
    for help in ["--help", "-h"] {
        let out = std::process::Command::new(program)
            .arg(help)
            .output()
            .unwrap();
        assert!(out.status.success(), "{help}: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.starts_with("usage: segmentrecorder-view BASE_DIR"),
            "{help}: {text}"
        );
    }
}

/// Writes a segment file of `samples` at `rate`.
fn write_segment(path: &Path, rate: u32, samples: &[i16]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut wav = hound::WavWriter::create(path, spec).unwrap();
    for &v in samples {
        wav.write_sample(v).unwrap();
    }
    wav.finalize().unwrap();
}

#[test]
fn short_files_other_rates_and_absurd_headers_leave_the_rest_of_the_tap_served() {
    let base = tempfile::tempdir().unwrap();
    let tap = base.path().join("2026-11-21/odd/stt/PRE");
    let file = |ms: u64, suffix: &str| tap.join(format!("segment_{}{suffix}.wav", DAY_MS + ms));
    let second = RATE as usize;
    // Recovered after a crash: 2 s of its 5 s bucket.
    write_segment(&file(0, ""), RATE, &vec![100; 2 * second]);
    write_segment(&file(5_000, ""), RATE, &vec![200; 5 * second]);
    // After a rate change in the same bucket.
    write_segment(&file(5_000, "-1"), 8_000, &vec![300; 5 * 8_000]);
    write_segment(&file(10_000, ""), RATE, &vec![400; 5 * second]);
    // A header claiming 2 GHz: taken at its word, a request would allocate hundreds of GB.
    let absurd = file(15_000, "");
    write_segment(&absurd, RATE, &vec![500; 5 * second]);
    let mut bytes = fs::read(&absurd).unwrap();
    bytes[24..28].copy_from_slice(&2_000_000_000u32.to_le_bytes());
    bytes[28..32].copy_from_slice(&4_000_000_000u32.to_le_bytes());
    fs::write(&absurd, bytes).unwrap();

    let viewer = Viewer::start(base.path());
    let call = viewer.json("/api/calls/odd");
    assert_eq!(call["segment-duration-ms"], 5_000, "{call}");
    assert_eq!(call["end-ms"], DAY_MS + 20_000);
    let pre = &call["stations"][0]["taps"]["PRE"];
    assert_eq!(pre["holes-ms"], serde_json::json!([]), "{pre}");
    assert_eq!(pre["rate"], RATE);
    let segments = pre["segments"].as_array().unwrap();
    let left_out = segments[2]["left-out"].as_str().unwrap();
    assert!(left_out.contains("8000 Hz"), "{left_out}");
    assert!(segments[1].get("left-out").is_none());
    let error = segments[4]["error"].as_str().unwrap();
    assert!(error.contains("sample rate"), "{error}");

    for _ in 0..2 {
        let audio = viewer.get("/api/calls/odd/audio?station=stt&tap=PRE");
        assert_eq!(audio.status, 200, "{}", audio.text());
        let (samples, rate) = wav_samples(&audio.body);
        assert_eq!(rate, RATE);
        assert_eq!(samples.len(), 15 * second);
        let expected: Vec<i16> = [(2, 100), (3, 0), (5, 200), (5, 400)]
            .into_iter()
            .flat_map(|(s, v)| std::iter::repeat_n(v, s * second))
            .collect();
        assert!(
            samples == expected,
            "short file padded, other rate left out"
        );
        // A range over the absurd file's bucket is silence, and the server still there.
        let audio = viewer.get(&format!(
            "/api/calls/odd/audio?station=stt&tap=PRE&from={}&to={}",
            DAY_MS + 14_000,
            DAY_MS + 20_000
        ));
        assert_eq!(audio.status, 200, "{}", audio.text());
        let (samples, _) = wav_samples(&audio.body);
        assert_eq!(samples.len(), 6 * second);
        assert!(samples[..second].iter().all(|&v| v == 400));
        assert!(samples[second..].iter().all(|&v| v == 0));
    }
}
