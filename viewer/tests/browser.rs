//! The pages in a real headless Chromium, driven over WebDriver (`chromedriver`, JSON over
//! HTTP): the index lists a recorded call and finds it by search; the call's page draws both
//! stations' PRE and POST lanes and the stage's figures; play advances an `<audio>` element's
//! `currentTime` and switching taps goes on from the same moment; the page follows a call that
//! is still being recorded; the console stays free of errors; a screenshot is written. Then an
//! hour-long call: how long the API takes and how long the page takes to paint it.
//!
//! Without `chromium` and `chromedriver` (Debian's `chromium`, `chromium-driver`) these tests
//! say so and pass, except under CI, where they must run.

mod common;

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// Fails under CI, where everything must run; elsewhere says loudly what was skipped.
fn unavailable(why: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "cannot run the browser tests ({why}), which CI must be able to do"
    );
    eprintln!("SKIPPED: the browser tests do not run: {why}");
}

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
}

/// `chromedriver`, started on a free port, and stopped when dropped.
struct Driver {
    child: Child,
    addr: std::net::SocketAddr,
}

impl Driver {
    fn start() -> Option<Driver> {
        let Some(chromedriver) = on_path("chromedriver") else {
            unavailable(
                "no chromedriver on PATH: scripts/setup.sh --tests installs chromium-driver",
            );
            return None;
        };
        if on_path("chromium").is_none() {
            unavailable("no chromium on PATH: scripts/setup.sh --tests installs it");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // A process group of its own: the browsers it starts go with it, even after a test
        // failed before it could close them.
        let child = Command::new(chromedriver)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let driver = Driver {
            child,
            addr: ([127, 0, 0, 1], port).into(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(driver.addr).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(driver)
    }

    fn session(&self) -> Session {
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": on_path("chromium").unwrap(),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1400,1000",
                         "--autoplay-policy=no-user-gesture-required"],
            },
            "goog:loggingPrefs": { "browser": "ALL" },
        }}});
        let value = call(self.addr, "POST", "/session", Some(&caps));
        Session {
            addr: self.addr,
            id: value["sessionId"].as_str().unwrap().to_owned(),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// One WebDriver command; its `value`, which must not be an error.
fn call(addr: std::net::SocketAddr, method: &str, path: &str, body: Option<&Value>) -> Value {
    let body = body.map(Value::to_string).unwrap_or_default();
    let reply = request(
        addr,
        method,
        path,
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    );
    let value: Value = serde_json::from_slice(&reply.body)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}: {}", reply.text()));
    assert_eq!(reply.status, 200, "{method} {path}: {value}");
    value["value"].clone()
}

/// A browser.
struct Session {
    addr: std::net::SocketAddr,
    id: String,
}

impl Session {
    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        call(
            self.addr,
            method,
            &format!("/session/{}{path}", self.id),
            body.as_ref(),
        )
    }

    fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    fn exec(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
    }

    /// Waits until `script` returns something truthy; that value.
    fn wait(&self, what: &str, script: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.exec(script);
            if !matches!(value, Value::Null | Value::Bool(false)) {
                return value;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn find(&self, css: &str) -> String {
        let value = self.cmd(
            "POST",
            "/element",
            Some(json!({ "using": "css selector", "value": css })),
        );
        value
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}"))
            .to_owned()
    }

    fn click(&self, css: &str) {
        let element = self.find(css);
        self.cmd(
            "POST",
            &format!("/element/{element}/click"),
            Some(json!({})),
        );
    }

    fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css);
        self.cmd(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// The console's messages since the last call.
    fn console(&self) -> Vec<Value> {
        let value = self.cmd("POST", "/se/log", Some(json!({ "type": "browser" })));
        value.as_array().cloned().unwrap_or_default()
    }

    fn screenshot(&self) -> Vec<u8> {
        let value = self.cmd("GET", "/screenshot", None);
        base64_decode(value.as_str().unwrap())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = request(
            self.addr,
            "DELETE",
            &format!("/session/{}", self.id),
            &[],
            b"",
        );
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let bytes: Vec<u8> = text
        .bytes()
        .filter(|&c| c != b'=' && !c.is_ascii_whitespace())
        .map(value)
        .collect();
    bytes
        .chunks(4)
        .flat_map(|q| {
            let n = q
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, &v)| n | u32::from(v) << (18 - 6 * i));
            let out = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            out.into_iter().take(q.len() - 1)
        })
        .collect()
}

/// The console's errors among `messages`.
fn errors(messages: &[Value]) -> Vec<&Value> {
    messages.iter().filter(|m| m["level"] == "SEVERE").collect()
}

/// Pixels of each lane in its tap's colour: how much waveform was drawn.
const DRAWN: &str = r#"
    const colours = { PRE: [0x2a, 0x6f, 0xdb], POST: [0x1a, 0x98, 0x50] };
    return [...document.querySelectorAll('canvas.lane')].map((c) => {
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      const [r, g, b] = colours[c.dataset.tap];
      let n = 0;
      for (let i = 0; i < d.length; i += 4) if (d[i] === r && d[i + 1] === g && d[i + 2] === b) n++;
      return [c.dataset.station, c.dataset.tap, n, c.width];
    });
"#;

/// The `<audio>` element of a station's tap: [currentTime, paused], or null before there is one.
/// Waits until the audio of `station`'s `tap` has played 0.3 s past `from`: playback advances,
/// however long a loaded machine takes to buffer the first of it.
fn wait_for_progress(session: &Session, station: &str, tap: &str, from: f64) -> Value {
    session.wait(
        &format!("{station} {tap}'s currentTime to advance from {from}"),
        &format!(
            "const a = document.querySelector('audio[data-station=\"{station}\"][data-tap=\"{tap}\"]');
             return a && a.currentTime > {from} + 0.3 && [a.currentTime, a.paused];"
        ),
        Duration::from_secs(15),
    )
}

fn audio_state(session: &Session, station: &str, tap: &str) -> Value {
    session.exec(&format!(
        "const a = document.querySelector('audio[data-station=\"{station}\"][data-tap=\"{tap}\"]');
         return a ? [a.currentTime, a.paused] : null;"
    ))
}

#[test]
fn a_recorded_call_in_a_real_browser() {
    let Some(driver) = Driver::start() else {
        return;
    };
    let base = tempfile::tempdir().unwrap();
    let stations = [("denoise", 0.5), ("agc", 1.5)];
    let mut take = Take::new("sip:bob@example.com", &stations, DAY_MS + 2_500, 30);
    take.hole = Some((12, 23));
    record(base.path(), &take);
    record(
        base.path(),
        &Take::new("call-7", &[("stt", 1.0)], DAY_MS - 3_600_000, 10),
    );
    let viewer = Viewer::start(base.path());
    let browser = driver.session();

    // The index lists both calls, and the search box finds one.
    browser.goto(&viewer.url("/"));
    let rows = browser.wait(
        "the index",
        "const rows = [...document.querySelectorAll('tr.call')];
         return rows.length === 2 && rows.map((r) => r.innerText);",
        Duration::from_secs(10),
    );
    let first = rows[0].as_str().unwrap();
    assert!(first.starts_with("sip:bob@example.com"), "{rows}");
    assert!(
        first.contains("2026-11-21 06:00:00Z") && first.contains("agc, denoise"),
        "{rows}"
    );
    browser.type_into("#search", "bob");
    let shown =
        browser.exec("return [...document.querySelectorAll('tr.call:not([hidden])')].length");
    assert_eq!(shown, 1);
    browser.wait(
        "the alarms column",
        "return !document.querySelector('td.alarms').textContent.includes('…')",
        Duration::from_secs(30),
    );

    // The call's page: both stations, PRE and POST lanes, drawn; the stage's figures.
    browser.click("tr.call:not([hidden]) a");
    browser.wait(
        "the call's page to paint",
        "return document.body.dataset.painted === 'yes'",
        Duration::from_secs(30),
    );
    let path = browser.exec("return location.pathname");
    assert_eq!(path, "/call/sip%253Abob%40example.com");
    let drawn = browser.exec(DRAWN);
    let lanes: Vec<(String, String, u64)> = drawn
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l[0].as_str().unwrap().into(),
                l[1].as_str().unwrap().into(),
                l[2].as_u64().unwrap(),
            )
        })
        .collect();
    let names: Vec<(&str, &str)> = lanes
        .iter()
        .map(|(s, t, _)| (s.as_str(), t.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("agc", "PRE"),
            ("agc", "POST"),
            ("denoise", "PRE"),
            ("denoise", "POST")
        ]
    );
    for (station, tap, pixels) in &lanes {
        assert!(
            *pixels > 500,
            "{station} {tap}: {pixels} pixels of waveform"
        );
    }
    // The POST of the stage that halves the audio draws less than its PRE.
    assert!(lanes[3].2 < lanes[2].2, "{lanes:?}");
    let figures = browser.wait(
        "the pair figures",
        "const f = [...document.querySelectorAll('.figs[data-station=\"denoise\"] .fig')];
         return f.length > 0 && f.map((e) => e.title);",
        Duration::from_secs(30),
    );
    let figures = figures.as_array().unwrap();
    assert_eq!(
        figures.len(),
        5,
        "one per pair: buckets 0, 5, 10, 25, 30 of one run"
    );
    assert!(
        figures[1].as_str().unwrap().contains("gain -6.0 dB"),
        "{figures:?}"
    );

    // Play PRE from a point clicked on a lane: the audio element's time advances from there.
    browser.exec(
        "const c = document.querySelector('canvas.lane[data-station=\"denoise\"][data-tap=\"PRE\"]');
         const r = c.getBoundingClientRect();
         for (const type of ['mousedown', 'mouseup'])
           c.dispatchEvent(new MouseEvent(type, { bubbles: true, clientX: r.left + r.width * 0.25, clientY: r.top + 10 }));",
    );
    let cursor = browser.exec("return document.getElementById('position').textContent");
    assert!(
        cursor.as_str().unwrap().starts_with("Cursor 06:00:08"),
        "{cursor}"
    );
    browser.click("button.play[data-station=\"denoise\"][data-tap=\"PRE\"]");
    let started = browser.wait(
        "PRE to play",
        "const a = document.querySelector('audio[data-station=\"denoise\"][data-tap=\"PRE\"]');
         return a && !a.paused && a.currentTime > 9.0 && a.currentTime;",
        Duration::from_secs(20),
    );
    wait_for_progress(&browser, "denoise", "PRE", started.as_f64().unwrap());
    // Switch to POST while playing: it goes on from the same moment.
    browser.click(".station[data-station=\"denoise\"] button.switch");
    let post = browser.wait(
        "POST to play",
        "const a = document.querySelector('audio[data-station=\"denoise\"][data-tap=\"POST\"]');
         return a && !a.paused && a.currentTime > 0 && a.currentTime;",
        Duration::from_secs(20),
    );
    let pre = audio_state(&browser, "denoise", "PRE");
    assert_eq!(pre[1], true, "PRE paused");
    let (pre_at, post_at) = (pre[0].as_f64().unwrap(), post.as_f64().unwrap());
    assert!(
        (post_at - pre_at).abs() < 1.0,
        "POST from PRE's moment: {pre_at} vs {post_at}"
    );
    wait_for_progress(&browser, "denoise", "POST", post_at);
    browser.click(".station[data-station=\"denoise\"] button[title=\"Stop\"]");

    // Drag over a lane to select 06:00:05 to 06:00:10 (of 0 to 35 s on the axis): the
    // download links take that range, and zooming shows it across the whole width.
    browser.exec(
        "const c = document.querySelector('canvas.lane[data-station=\"agc\"][data-tap=\"POST\"]');
         const r = c.getBoundingClientRect();
         const at = (type, share) => c.dispatchEvent(new MouseEvent(type,
           { bubbles: true, clientX: r.left + r.width * share, clientY: r.top + 10 }));
         at('mousedown', 5 / 35); at('mousemove', 10 / 35); at('mouseup', 10 / 35);",
    );
    let href = browser.exec(
        "return document.querySelector('a.download[data-station=\"agc\"][data-tap=\"POST\"]').href",
    );
    let href = href.as_str().unwrap();
    let target = &href[href.find("/api/").unwrap()..];
    let wav = viewer.get(target);
    assert_eq!(wav.status, 200, "{target}");
    assert!(
        wav.header("Content-Disposition")
            .unwrap()
            .starts_with("attachment")
    );
    let (samples, _) = wav_samples(&wav.body);
    let seconds = samples.len() as f64 / f64::from(RATE);
    assert!((seconds - 5.0).abs() < 0.1, "{target}: {seconds} s");
    browser.click("#zoom");
    let axis = browser.wait(
        "the zoomed view",
        "return window.viewTimings && document.getElementById('zoom').disabled
           && document.getElementById('position').textContent",
        Duration::from_secs(10),
    );
    assert!(!axis.as_str().unwrap().contains("selected"), "{axis}");
    let zoomed = browser.exec(DRAWN);
    assert!(
        zoomed[1][2].as_u64().unwrap() > lanes[1].2,
        "a closer look draws more: {zoomed}"
    );
    browser.click("#whole");

    // The call goes on being recorded: the page picks the new segments up by itself.
    let version = browser.exec("return document.body.dataset.version");
    let mut more = Take::new("sip:bob@example.com", &stations, DAY_MS + 35_000, 10);
    more.seed = 3;
    record(base.path(), &more);
    browser.wait(
        "the page to follow the recording",
        &format!("return document.body.dataset.version !== {version}"),
        Duration::from_secs(20),
    );
    browser.wait(
        "the new buckets' figures",
        "return document.querySelectorAll('.figs[data-station=\"denoise\"] .fig').length === 7",
        Duration::from_secs(20),
    );
    let span = browser.exec("return document.getElementById('span').textContent");
    assert!(span.as_str().unwrap().contains("06:00:45"), "{span}");

    let png = browser.screenshot();
    assert_eq!(&png[1..4], b"PNG");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("view.png");
    std::fs::write(&out, &png).unwrap();
    println!("screenshot: {}", out.display());
    if let Some(copy) = std::env::var_os("VIEW_SCREENSHOT") {
        std::fs::write(copy, &png).unwrap();
    }

    let console = browser.console();
    assert!(errors(&console).is_empty(), "console errors: {console:?}");
}

/// Calls that are awkward to reach or to show: identifiers `..` and `.`, whose directories
/// `%2E.` and `%2E` are dot segments to URL parsers, and a call whose last bucket starts at
/// 23:59:55.
#[test]
fn awkward_calls_in_a_real_browser() {
    let Some(driver) = Driver::start() else {
        return;
    };
    let base = tempfile::tempdir().unwrap();
    for trace in ["..", "."] {
        record(base.path(), &Take::new(trace, &[("stt", 1.0)], DAY_MS, 5));
    }
    // 2026-11-22T00:00:00Z is 18 hours after DAY_MS.
    let midnight = DAY_MS + 18 * 3_600_000;
    record(
        base.path(),
        &Take::new("late", &[("stt", 1.0)], midnight - 10_000, 10),
    );
    let viewer = Viewer::start(base.path());
    let browser = driver.session();

    // The index: every call under the day its files are in, each one's alarms fetched.
    browser.goto(&viewer.url("/"));
    let days = browser.wait(
        "the index's alarms",
        "const cells = [...document.querySelectorAll('td.alarms')];
         return cells.length === 3 && cells.every((c) => c.textContent !== '…') &&
           [...document.querySelectorAll('section.day')].map((d) => [
             d.querySelector('h2').textContent,
             [...d.querySelectorAll('tr.call')].map((r) => [r.dataset.trace,
               r.querySelector('td.alarms').textContent])]);",
        Duration::from_secs(30),
    );
    assert_eq!(
        days,
        json!([["2026-11-21", [["late", "0"], [".", "0"], ["..", "0"]]]])
    );

    // Each dot-named call opens from its link, and its page reaches the API.
    for (trace, path) in [("..", "/call/%252E."), (".", "/call/%252E")] {
        browser.goto(&viewer.url("/"));
        browser.wait(
            "the index",
            &format!(
                "const a = [...document.querySelectorAll('tr.call a')]
                   .find((a) => a.textContent === {trace:?});
                 if (a) a.click();
                 return !!a;"
            ),
            Duration::from_secs(10),
        );
        browser.wait(
            "the call's page to paint",
            "return document.body.dataset.painted === 'yes'",
            Duration::from_secs(30),
        );
        assert_eq!(browser.exec("return location.pathname"), path);
        assert_eq!(
            browser.exec("return document.getElementById('title').textContent"),
            trace
        );
        browser.wait(
            "the pair figures",
            "return document.querySelectorAll('.figs .fig').length === 1",
            Duration::from_secs(30),
        );
        let status = browser.exec("return document.getElementById('status').textContent");
        assert_eq!(status, "", "{trace}");
    }
    let console = browser.console();
    assert!(errors(&console).is_empty(), "console errors: {console:?}");
}

/// A call longer than the server's two hours of audio at once, of one station that has only
/// a PRE tap: two 5 s buckets three hours apart, written as the recorder would.
#[test]
fn a_lone_tap_and_a_long_call_in_a_real_browser() {
    let Some(driver) = Driver::start() else {
        return;
    };
    let base = tempfile::tempdir().unwrap();
    let tap = base.path().join("2026-11-21/long/stt/PRE");
    std::fs::create_dir_all(&tap).unwrap();
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    for bucket in [DAY_MS, DAY_MS + 3 * 3_600_000] {
        let path = tap.join(format!("segment_{bucket}.wav"));
        let mut wav = hound::WavWriter::create(path, spec).unwrap();
        for i in 0..5 * RATE {
            let phase = f64::from(i) * 440.0 / f64::from(RATE);
            let sample = 8_000.0 * (2.0 * std::f64::consts::PI * phase).sin();
            wav.write_sample(sample as i16).unwrap();
        }
        wav.finalize().unwrap();
    }
    let viewer = Viewer::start(base.path());
    let browser = driver.session();
    browser.goto(&viewer.url("/call/long"));
    browser.wait(
        "the call's page to paint",
        "return document.body.dataset.painted === 'yes'",
        Duration::from_secs(30),
    );
    // Buttons for the tap there is, none for the one there is not.
    let buttons = browser.exec(
        "return ['button.play', 'a.download', 'button.switch'].map((css) =>
           [...document.querySelectorAll(css)].map((e) => e.dataset.tap || 'both'));",
    );
    assert_eq!(buttons, json!([["PRE"], ["PRE"], []]));

    // Play from near the end: the page asks for the audio around the cursor, never more than
    // the server answers at once.
    browser.exec(
        "const c = document.querySelector('canvas.lane[data-tap=\"PRE\"]');
         const r = c.getBoundingClientRect();
         for (const type of ['mousedown', 'mouseup'])
           c.dispatchEvent(new MouseEvent(type, { bubbles: true, clientX: r.right - 2, clientY: r.top + 10 }));",
    );
    let cursor = browser.exec("return document.getElementById('position').textContent");
    assert!(
        cursor.as_str().unwrap().starts_with("Cursor 08:59:"),
        "{cursor}"
    );
    browser.click("button.play[data-tap=\"PRE\"]");
    let started = browser.wait(
        "PRE to play",
        "const a = document.querySelector('audio[data-tap=\"PRE\"]');
         const status = document.getElementById('status').textContent;
         if (status) return 'status: ' + status;
         return a && !a.paused && a.currentTime > 0 && [a.currentTime, a.src];",
        Duration::from_secs(20),
    );
    assert!(started.is_array(), "{started}");
    let src = started[1].as_str().unwrap();
    let query = |name: &str| -> u64 {
        let at = src.find(&format!("&{name}=")).unwrap() + name.len() + 2;
        src[at..].split('&').next().unwrap().parse().unwrap()
    };
    assert!(query("to") - query("from") <= 7_200_000, "{src}");
    wait_for_progress(&browser, "stt", "PRE", started[0].as_f64().unwrap());
    let position = browser.exec("return document.getElementById('position').textContent");
    assert!(
        position.as_str().unwrap().starts_with("Cursor 08:59:")
            || position.as_str().unwrap().starts_with("Cursor 09:00:"),
        "the cursor follows playback: {position}"
    );

    // Played to the end of its window, a tap goes on with the next one.
    browser.click("button[title=\"Stop\"]");
    browser.exec(
        "const c = document.querySelector('canvas.lane[data-tap=\"PRE\"]');
         const r = c.getBoundingClientRect();
         for (const type of ['mousedown', 'mouseup'])
           c.dispatchEvent(new MouseEvent(type, { bubbles: true, clientX: r.left + r.width * 0.1, clientY: r.top + 10 }));",
    );
    browser.click("button.play[data-tap=\"PRE\"]");
    let window = browser.wait(
        "PRE to play from the cursor",
        "const a = document.querySelector('audio[data-tap=\"PRE\"]');
         return a && !a.paused && a.currentTime > 0 && [a.dataset.from, a.dataset.to];",
        Duration::from_secs(20),
    );
    browser.exec(
        "const a = document.querySelector('audio[data-tap=\"PRE\"]'); a.currentTime = a.duration - 0.3;",
    );
    let next = browser.wait(
        "the next window to play",
        &format!(
            "const a = document.querySelector('audio[data-tap=\"PRE\"]');
             return a.dataset.from !== {:?} && !a.paused && a.currentTime > 0
               && [a.dataset.from, a.dataset.to];",
            window[0].as_str().unwrap()
        ),
        Duration::from_secs(20),
    );
    let ms = |v: &Value| v.as_str().unwrap().parse::<u64>().unwrap();
    assert_eq!(ms(&next[0]), ms(&window[1]), "{window} then {next}");
    let console = browser.console();
    assert!(errors(&console).is_empty(), "console errors: {console:?}");
}

/// An hour of a call with two stations: 720 buckets per tap, 2,880 files. Prints what the API
/// and the page took. Drawing the four lanes must take under a second; the whole page, from its
/// script's start to the lanes painted (the call's JSON, four lanes' peaks, drawing) with the
/// server's caches warm (best of five), under a second with the program `SEGMENTRECORDER_VIEW` names (a
/// release build), and under ten with this test build, whose dependencies are not optimised.
#[test]
fn an_hour_long_call_paints_in_under_a_second() {
    let Some(driver) = Driver::start() else {
        return;
    };
    let base = tempfile::tempdir().unwrap();
    let stations = [("denoise", 0.5), ("agc", 1.5)];
    let mut take = Take::new("hour", &stations, DAY_MS, 3_600);
    take.pair_analysis = false;
    let t = Instant::now();
    record(base.path(), &take);
    println!(
        "recorded an hour of 2 stations in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let viewer = Viewer::start(base.path());
    let timed = |target: &str| {
        let t = Instant::now();
        let reply = viewer.get(target);
        assert_eq!(reply.status, 200, "{target}");
        (t.elapsed().as_secs_f64() * 1e3, reply)
    };
    let (cold_call, reply) = timed("/api/calls/hour");
    let call: Value = serde_json::from_slice(&reply.body).unwrap();
    for station in call["stations"].as_array().unwrap() {
        for tap in ["PRE", "POST"] {
            assert_eq!(
                station["taps"][tap]["segments"].as_array().unwrap().len(),
                720
            );
        }
    }
    let (warm_call, _) = timed("/api/calls/hour");
    let (peaks, _) = timed("/api/calls/hour/peaks?station=agc&tap=PRE&columns=1270");
    println!(
        "API: call {cold_call:.0} ms on first read of 2,880 files, {warm_call:.0} ms after; \
         peaks of one lane at 1,270 columns {peaks:.0} ms"
    );

    let browser = driver.session();
    let mut measured = Vec::new();
    for _ in 0..5 {
        browser.goto(&viewer.url("/call/hour"));
        let timings = browser.wait(
            "the hour to paint",
            "return document.body.dataset.painted === 'yes' && window.viewTimings",
            Duration::from_secs(60),
        );
        let ms = |name: &str| timings[name].as_f64().unwrap();
        measured.push((ms("totalMs"), ms("paintMs")));
        let drawn = browser.exec(DRAWN);
        for lane in drawn.as_array().unwrap() {
            assert!(lane[2].as_u64().unwrap() > 1_000, "{lane}");
        }
    }
    for (total, paint) in &measured {
        println!(
            "page: {total:.0} ms from the script's start to all four lanes painted \
             ({paint:.0} ms of drawing)"
        );
    }
    // The best of five loads: on a shared machine the others measure the neighbours too.
    let best = |f: fn(&(f64, f64)) -> f64| measured.iter().map(f).fold(f64::INFINITY, f64::min);
    let (total, paint) = (best(|m| m.0), best(|m| m.1));
    println!("best: {total:.0} ms for the page, {paint:.0} ms of drawing");
    assert!(paint < 1_000.0, "drawing took {paint:.0} ms");
    let bound = if std::env::var_os("SEGMENTRECORDER_VIEW").is_some() {
        1_000.0
    } else {
        10_000.0
    };
    assert!(total < bound, "the page took {total:.0} ms to paint");
    let console = browser.console();
    assert!(errors(&console).is_empty(), "console errors: {console:?}");
}
