//! The HTTP routes: the two pages, their script and style, and the JSON API the pages use (see
//! the README for each endpoint and its fields). Every name in a URL is looked up among what a
//! walk of the base directory finds ([`tree::find_call`]); none is ever joined onto a path.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Value, json};

use gstsegmentrecorder::layout::{Tap, identifier_component, utc_date};

use crate::audio::{AudioCache, ClipError, Key, range, tap_rate};
use crate::figures::FiguresCache;
use crate::http::{Body, Request, Response};
use crate::peaks::{PeaksCache, SILENCE_DBFS, spread};
use crate::tree::{self, Call, Segment, Station, percent_decode, shown};

const INDEX_HTML: &str = include_str!("page/index.html");
const CALL_HTML: &str = include_str!("page/call.html");
const VIEW_CSS: &str = include_str!("page/view.css");
const INDEX_JS: &str = include_str!("page/index.js");
const CALL_JS: &str = include_str!("page/call.js");

/// The recorder's default segment duration, in ms.
const DEFAULT_SEGMENT_MS: u64 = 5_000;

/// Most columns one peaks request may ask for.
const MAX_COLUMNS: usize = 20_000;

/// What the server serves, shared by its threads.
pub struct Viewer {
    /// The base directory, canonical.
    pub base: PathBuf,
    peaks: PeaksCache,
    figures: FiguresCache,
    audio: AudioCache,
}

type Reply = Response;

fn reply(status: u16, content_type: &str, body: Body) -> Reply {
    Response::new(status, body)
        .with_header("Content-Type", content_type)
        .with_header("Cache-Control", "no-store")
        .with_header("X-Content-Type-Options", "nosniff")
}

fn page(content_type: &str, text: &str) -> Reply {
    reply(200, content_type, Body::Bytes(text.into()))
}

fn json_reply(status: u16, value: &Value) -> Reply {
    reply(
        status,
        "application/json",
        Body::Bytes(value.to_string().into_bytes()),
    )
}

fn error(status: u16, message: &str) -> Reply {
    json_reply(status, &json!({ "error": message }))
}

fn not_found() -> Reply {
    error(404, "not found")
}

/// `ms` after the epoch as an ISO 8601 UTC time, to the millisecond.
pub fn iso_utc(ms: u64) -> String {
    let day_ms = ms % 86_400_000;
    format!(
        "{}T{:02}:{:02}:{:02}.{:03}Z",
        utc_date(ms),
        day_ms / 3_600_000,
        day_ms / 60_000 % 60,
        day_ms / 1_000 % 60,
        day_ms % 1_000
    )
}

/// The query parameters of `query`, decoded.
fn params(query: &str) -> BTreeMap<String, String> {
    query
        .split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Some((
                percent_decode(&k.replace('+', " "))?,
                percent_decode(&v.replace('+', " "))?,
            ))
        })
        .collect()
}

/// The station a query names: its directory name, or its key as given.
fn station<'a>(call: &'a Call, params: &BTreeMap<String, String>) -> Option<&'a Station> {
    let name = params.get("station")?;
    call.stations
        .get(name)
        .or_else(|| call.stations.get(&identifier_component(name).ok()?))
}

fn tap(params: &BTreeMap<String, String>) -> Option<Tap> {
    Tap::try_from(params.get("tap")?.as_str()).ok()
}

/// An optional number parameter: `Err` with a message if present but not a number.
fn number(params: &BTreeMap<String, String>, name: &str) -> Result<Option<u64>, String> {
    params
        .get(name)
        .map(|v| {
            v.parse()
                .map_err(|_| format!("{name}={v:?} is not a whole number"))
        })
        .transpose()
}

impl Viewer {
    /// A viewer of `base`, which must be canonical; an error if its comparing thread cannot
    /// be started.
    pub fn new(base: PathBuf) -> std::io::Result<Self> {
        Ok(Viewer {
            base,
            peaks: PeaksCache::new(),
            figures: FiguresCache::new()?,
            audio: AudioCache::new(),
        })
    }

    /// The answer to `request`.
    pub fn serve(&self, request: &Request) -> Reply {
        match request.method.as_str() {
            "GET" | "HEAD" => self.route(request),
            _ => error(405, "only GET and HEAD are served").with_header("Allow", "GET, HEAD"),
        }
    }

    /// The answer to `request` if it needs no worker: the pages, their script and style, which
    /// are in the program (a call's page only looks its call's directories up).
    pub fn serve_at_once(&self, request: &Request) -> Option<Reply> {
        if !matches!(request.method.as_str(), "GET" | "HEAD") {
            return None;
        }
        let path = request.target.split('?').next().unwrap_or("");
        let parts: Vec<&str> = path.split('/').skip(1).collect();
        matches!(parts.as_slice(), [""] | ["static", _] | ["call", _]).then(|| self.route(request))
    }

    fn route(&self, request: &Request) -> Reply {
        let url = request.target.as_str();
        let (path, query) = url.split_once('?').unwrap_or((url, ""));
        let params = params(query);
        let parts: Vec<&str> = path.split('/').skip(1).collect();
        match parts.as_slice() {
            [""] => page("text/html; charset=utf-8", INDEX_HTML),
            ["static", "view.css"] => page("text/css; charset=utf-8", VIEW_CSS),
            ["static", "index.js"] => page("text/javascript; charset=utf-8", INDEX_JS),
            ["static", "call.js"] => page("text/javascript; charset=utf-8", CALL_JS),
            ["call", name] => match self.call(name) {
                Ok(Some(_)) => page("text/html; charset=utf-8", CALL_HTML),
                Ok(None) => reply(
                    404,
                    "text/plain; charset=utf-8",
                    Body::Bytes(b"No such call\n".to_vec()),
                ),
                Err(e) => e,
            },
            ["api", "calls"] => self.calls(),
            ["api", "calls", name, rest @ ..] => match self.call(name) {
                Ok(Some(call)) => match rest {
                    [] => json_reply(200, &self.call_json(&call)),
                    ["pairs"] => json_reply(200, &self.pairs_json(&call)),
                    ["peaks"] => self.peaks(&call, &params),
                    ["audio"] => self.audio(&call, &params, request),
                    _ => not_found(),
                },
                Ok(None) => not_found(),
                Err(e) => e,
            },
            _ => not_found(),
        }
    }

    /// The call a URL names, as its directories hold it now.
    fn call(&self, name: &str) -> Result<Option<Call>, Reply> {
        tree::find_call(&self.base, name)
            .map_err(|e| error(503, &format!("cannot read the base directory: {e}")))
    }

    /// Length of a segment of `call`, in ms: the recorder's, which puts files at multiples of
    /// it. A whole file is that long, and a file recovered after a crash or cut by the end of
    /// a stream shorter: so the longest of its first readable files, if the spacing of every
    /// tap's buckets is a multiple of it; else the most common spacing (the shortest among
    /// equals); else the recorder's default.
    fn segment_ms(&self, call: &Call) -> u64 {
        let mut spacings: BTreeMap<u64, usize> = BTreeMap::new();
        for tap in call.stations.values().flat_map(|s| s.taps.iter()) {
            let mut previous = None;
            for s in tap {
                if let Some(p) = previous
                    && s.bucket_ms > p
                {
                    *spacings.entry(s.bucket_ms - p).or_default() += 1;
                }
                previous = Some(s.bucket_ms);
            }
        }
        // A few files are enough to find a whole one; the index asks this of every call.
        let longest = call
            .segments()
            .filter_map(|s| {
                let peaks = self.peaks.get(&self.base, s);
                let p = peaks.as_ref().as_ref().ok()?;
                let rate = u64::from(p.rate.max(1));
                Some((p.samples * 1_000 + rate / 2) / rate)
            })
            .take(16)
            .max()
            .filter(|&ms| ms > 0);
        if let Some(ms) = longest
            && spacings.keys().all(|spacing| spacing % ms == 0)
        {
            return ms;
        }
        let mut most = None;
        for (&spacing, &n) in &spacings {
            if most.is_none_or(|(_, m)| n > m) {
                most = Some((spacing, n));
            }
        }
        most.map_or(longest.unwrap_or(DEFAULT_SEGMENT_MS), |(spacing, _)| {
            spacing
        })
    }

    /// First and last ms of `call`: the start of its first bucket, the end of its last.
    fn span(&self, call: &Call) -> (u64, u64) {
        let first = call.segments().map(|s| s.bucket_ms).min().unwrap_or(0);
        let last = call.segments().map(|s| s.bucket_ms).max().unwrap_or(0);
        (first, last + self.segment_ms(call))
    }

    fn calls(&self) -> Reply {
        let calls = match tree::scan(&self.base) {
            Ok(calls) => calls,
            Err(e) => return error(503, &format!("cannot read the base directory: {e}")),
        };
        let mut list: Vec<((String, u64), Value)> = calls
            .values()
            .map(|call| {
                let (first, last) = self.span(call);
                // The day of its last bucket's start, as its directory is: a call whose last
                // bucket ends at midnight is still that day's.
                let last_bucket = call.segments().map(|s| s.bucket_ms).max().unwrap_or(0);
                let day = utc_date(last_bucket);
                let stations: Vec<String> = call.stations.keys().map(|s| shown(s)).collect();
                let value = json!({
                    "id": call.dir,
                    "trace-id": shown(&call.dir),
                    "day": day,
                    "dates": call.dates,
                    "first-ms": first,
                    "last-ms": last,
                    "first-utc": iso_utc(first),
                    "last-utc": iso_utc(last),
                    "stations": stations,
                    "segments": call.segments().count(),
                });
                ((day, last), value)
            })
            .collect();
        // Newest first, day by day: the index shows them so.
        list.sort_by(|(a, _), (b, _)| b.cmp(a));
        let calls: Vec<Value> = list.into_iter().map(|(_, v)| v).collect();
        json_reply(200, &json!({ "calls": calls }))
    }

    fn call_json(&self, call: &Call) -> Value {
        self.peaks.warm(&self.base, call.segments());
        let segment_ms = self.segment_ms(call);
        let (first, last) = self.span(call);
        let stations: Vec<Value> = call
            .stations
            .values()
            .map(|station| {
                let taps: serde_json::Map<String, Value> = [Tap::Pre, Tap::Post]
                    .into_iter()
                    .map(|tap| {
                        let value = self.tap_json(&station.taps[tap as usize], segment_ms);
                        (tap.as_str().to_owned(), value)
                    })
                    .collect();
                json!({
                    "id": station.dir,
                    "station-key": shown(&station.dir),
                    "taps": taps,
                })
            })
            .collect();
        json!({
            "id": call.dir,
            "trace-id": shown(&call.dir),
            "dates": call.dates,
            "version": call.version(),
            "segment-duration-ms": segment_ms,
            "start-ms": first,
            "end-ms": last,
            "start-utc": iso_utc(first),
            "end-utc": iso_utc(last),
            "stations": stations,
        })
    }

    fn tap_json(&self, segments: &[Segment], segment_ms: u64) -> Value {
        let rate = tap_rate(&self.base, &self.peaks, segments);
        let mut holes = Vec::new();
        let mut end: Option<u64> = None;
        let list: Vec<Value> = segments
            .iter()
            .map(|s| {
                if let Some(end) = end
                    && s.bucket_ms > end
                {
                    holes.push(json!([end, s.bucket_ms]));
                }
                end = Some(end.unwrap_or(0).max(s.bucket_ms + segment_ms));
                let mut value = json!({
                    "bucket-ts-ms": s.bucket_ms,
                    "file-index": s.file_index,
                    "utc": iso_utc(s.bucket_ms),
                    "file": s.path.file_name().map(|n| n.to_string_lossy()),
                    "bytes": s.size,
                });
                match self.peaks.get(&self.base, s).as_ref() {
                    Ok(p) => {
                        let runs: Vec<Value> =
                            p.zero_runs_ms.iter().map(|(a, b)| json!([a, b])).collect();
                        value["rate"] = json!(p.rate);
                        value["samples"] = json!(p.samples);
                        value["duration-ms"] =
                            json!(p.samples as f64 * 1_000.0 / f64::from(p.rate.max(1)));
                        value["peak-dbfs"] = json!(p.peak_dbfs);
                        value["rms-dbfs"] = json!(p.rms_dbfs);
                        value["silent"] = json!(p.peak_dbfs < SILENCE_DBFS);
                        value["zero-runs-ms"] = json!(runs);
                        if let Some(rate) = rate
                            && p.rate != rate
                        {
                            value["left-out"] = json!(format!(
                                "at {} Hz where the tap's audio is at {rate} Hz: its bucket is \
                                 silence in the tap's audio",
                                p.rate
                            ));
                        }
                    }
                    Err(e) => value["error"] = json!(e),
                }
                value
            })
            .collect();
        json!({
            "rate": rate,
            "start-ms": segments.first().map(|s| s.bucket_ms),
            "end-ms": end,
            "segments": list,
            "holes-ms": holes,
        })
    }

    fn pairs_json(&self, call: &Call) -> Value {
        let stations: Vec<Value> = self
            .figures
            .call(&self.base, &call.dir)
            .into_iter()
            .map(|(dir, pairs)| {
                let rows: Vec<Value> = pairs
                    .rows
                    .iter()
                    .map(|row| {
                        let f = &row.figures;
                        let alarms: Vec<&str> = row.alarms.iter().map(|a| a.as_str()).collect();
                        json!({
                            "bucket-ts-ms": row.bucket_ms,
                            "file-index": row.file_index,
                            "alignment": f.alignment.as_str(),
                            "delay-ms": f.delay_ms,
                            "correlation": f.correlation,
                            "gain-db": f.gain_db,
                            "pre-rms-dbfs": f.pre_rms_dbfs,
                            "post-rms-dbfs": f.post_rms_dbfs,
                            "pre-voiced-ratio": f.pre_voiced_ratio,
                            "post-voiced-ratio": f.post_voiced_ratio,
                            "pre-clipped-samples": f.pre_clipped_samples,
                            "post-clipped-samples": f.post_clipped_samples,
                            "alarms": alarms,
                        })
                    })
                    .collect();
                let alarms: usize = pairs.rows.iter().map(|r| r.alarms.len()).sum();
                json!({
                    "id": dir,
                    "station-key": shown(&dir),
                    "pairs": rows,
                    "alarms": alarms,
                    "pending": pairs.pending,
                    "unpaired": pairs.unpaired,
                    "errors": pairs.errors,
                })
            })
            .collect();
        json!({ "id": call.dir, "stations": stations })
    }

    fn peaks(&self, call: &Call, params: &BTreeMap<String, String>) -> Reply {
        let (Some(station), Some(tap)) = (station(call, params), tap(params)) else {
            return error(
                404,
                "give station=<its id> and tap=PRE or tap=POST of this call",
            );
        };
        let (first, last) = self.span(call);
        let (from, to, columns) = match (
            number(params, "from"),
            number(params, "to"),
            number(params, "columns"),
        ) {
            (Ok(from), Ok(to), Ok(columns)) => (
                from.unwrap_or(first),
                to.unwrap_or(last),
                columns.unwrap_or(1_000) as usize,
            ),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return error(400, &e),
        };
        if from >= to || columns == 0 || columns > MAX_COLUMNS {
            return error(
                400,
                &format!("need from < to and 1 to {MAX_COLUMNS} columns"),
            );
        }
        let segment_ms = self.segment_ms(call);
        let mut lo = vec![i16::MAX; columns];
        let mut hi = vec![i16::MIN; columns];
        for s in &station.taps[tap as usize] {
            if s.bucket_ms >= to || s.bucket_ms + segment_ms <= from {
                continue;
            }
            let peaks = self.peaks.get(&self.base, s);
            let Ok(p) = peaks.as_ref() else { continue };
            spread(&p.cells, s.bucket_ms, (from, to), &mut lo, &mut hi);
        }
        // A column no cell reached holds nothing: 0 and 0.
        for (lo, hi) in lo.iter_mut().zip(&mut hi) {
            if lo > hi {
                (*lo, *hi) = (0, 0);
            }
        }
        json_reply(
            200,
            &json!({
                "station": station.dir,
                "tap": tap.as_str(),
                "from-ms": from,
                "to-ms": to,
                "columns": columns,
                "min": lo,
                "max": hi,
            }),
        )
    }

    fn audio(&self, call: &Call, params: &BTreeMap<String, String>, request: &Request) -> Reply {
        let (Some(station), Some(tap)) = (station(call, params), tap(params)) else {
            return error(
                404,
                "give station=<its id> and tap=PRE or tap=POST of this call",
            );
        };
        let (from, to) = match (number(params, "from"), number(params, "to")) {
            (Ok(from), Ok(to)) => (from, to),
            (Err(e), _) | (_, Err(e)) => return error(400, &e),
        };
        if let (Some(from), Some(to)) = (from, to)
            && from >= to
        {
            return error(400, "need from < to");
        }
        let segments = &station.taps[tap as usize];
        let segment_ms = self.segment_ms(call);
        let name = format!("{}/{}/{}", call.dir, station.dir, tap.as_str());
        let key = Key::new(name, segments, segment_ms, from, to);
        let clip_arc = self
            .audio
            .clip(&self.base, &self.peaks, key, segments, segment_ms);
        let clip = match clip_arc.as_ref() {
            Ok(clip) => clip,
            Err(e @ ClipError::TooLong(_)) => return error(413, &e.to_string()),
            Err(e) => return error(404, &e.to_string()),
        };
        let len = clip.len();
        let (status, (a, b)) = match range(request.header("Range"), len) {
            None => (200, (0, len)),
            Some(Ok(r)) => (206, r),
            Some(Err(())) => {
                return reply(
                    416,
                    "text/plain",
                    Body::Bytes(b"Range not satisfiable\n".to_vec()),
                )
                .with_header("Content-Range", &format!("bytes */{len}"));
            }
        };
        let start_ms = clip.start_ms;
        // Written from the clip itself, cached or not: an answer is never a copy of it. What
        // answers hold is bounded: a slow client's clip is kept until it is written.
        let Some(hold) = self.audio.hold(&clip_arc) else {
            return error(
                503,
                "too much audio is being sent to other clients: try again shortly",
            )
            .with_header("Retry-After", "5");
        };
        let body = Body::Stream {
            len: b - a,
            write: Box::new(move |out| match hold.clip() {
                Ok(clip) => clip.write_range(a, b, out),
                Err(_) => Ok(()),
            }),
        };
        let mut response = reply(status, "audio/wav", body)
            .with_header("Accept-Ranges", "bytes")
            .with_header("X-Start-Ms", &format!("{start_ms}"));
        if status == 206 {
            response = response.with_header("Content-Range", &format!("bytes {a}-{}/{len}", b - 1));
        }
        if params.contains_key("download") {
            let name = format!(
                "{}_{}_{}_{}.wav",
                call.dir,
                station.dir,
                tap.as_str(),
                start_ms as u64
            );
            response = response.with_header(
                "Content-Disposition",
                &format!("attachment; filename=\"{name}\""),
            );
        }
        response
    }
}
