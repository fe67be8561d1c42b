//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Once, OnceLock};

use gst::prelude::*;
use gstsegmentrecorder::layout::parse_segment_file_name;

pub const CAPS_16K: &str = "audio/x-raw,format=S16LE,layout=interleaved,channels=1,rate=16000";

pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().unwrap();
        gstsegmentrecorder::plugin_register_static().unwrap();
    });
}

/// A recorder with the given ids writing under `base`, in running-time mode unless told.
pub fn recorder(base: &Path, trace: &str, station: &str, tap: &str) -> gst::Element {
    gst::ElementFactory::make("segmentrecorder")
        .property("base-dir", base.to_str().unwrap())
        .property("trace-id", trace)
        .property("station-key", station)
        .property_from_str("tap", tap)
        .property_from_str("timestamp-mode", "running-time")
        .build()
        .unwrap()
}

/// A harness around `element` with 16 kHz caps and a private bus on the element.
pub fn harness(element: &gst::Element, caps: &str) -> (gst_check::Harness, gst::Bus) {
    let bus = gst::Bus::new();
    element.set_bus(Some(&bus));
    let mut h = gst_check::Harness::with_element(element, Some("sink"), None);
    h.set_src_caps_str(caps);
    h.play();
    (h, bus)
}

/// Stream sample `i` of the test signal: never zero, so padding is told apart from audio.
pub fn signal(i: u64) -> i16 {
    ((i % 32_767) + 1) as i16
}

/// A buffer of test-signal samples `first..first + len`, stamped with `pts`.
pub fn buffer(first: u64, len: usize, pts: Option<gst::ClockTime>, rate: u32) -> gst::Buffer {
    let bytes: Vec<u8> = (0..len as u64)
        .flat_map(|i| signal(first + i).to_le_bytes())
        .collect();
    let mut buffer = gst::Buffer::from_mut_slice(bytes);
    {
        let b = buffer.get_mut().unwrap();
        b.set_pts(pts);
        b.set_duration(gst::ClockTime::from_nseconds(
            len as u64 * 1_000_000_000 / u64::from(rate),
        ));
    }
    buffer
}

/// Pushes `total` samples of the test signal in buffers of `size`, contiguous from `start`.
pub fn push_signal(
    h: &mut gst_check::Harness,
    start: gst::ClockTime,
    total: u64,
    size: usize,
    rate: u32,
) {
    let mut done = 0u64;
    while done < total {
        let len = (size as u64).min(total - done) as usize;
        let pts = start + gst::ClockTime::from_nseconds(done * 1_000_000_000 / u64::from(rate));
        h.push(buffer(done, len, Some(pts), rate)).unwrap();
        done += len as u64;
    }
}

/// Samples and rate of a WAV file, checking it is mono 16-bit.
pub fn read_wav(path: &Path) -> (Vec<i16>, u32) {
    let mut reader =
        hound::WavReader::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let spec = reader.spec();
    assert_eq!(
        (spec.channels, spec.bits_per_sample),
        (1, 16),
        "{}",
        path.display()
    );
    let samples = reader.samples::<i16>().map(Result::unwrap).collect();
    (samples, spec.sample_rate)
}

/// Every file under `dir`, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The segment files under `dir`, in bucket and file order.
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = files_under(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "wav"))
        .collect();
    files.sort_by_key(|p| segment_name(p));
    files
}

/// The bucket start and file index a segment's file name gives.
pub fn segment_name(path: &Path) -> (u64, u32) {
    let name = path.file_name().unwrap().to_str().unwrap();
    parse_segment_file_name(name).unwrap_or_else(|| panic!("not a segment: {name}"))
}

/// The bucket start encoded in a segment's file name.
pub fn bucket_ms(path: &Path) -> u64 {
    segment_name(path).0
}

/// The `segmentrecorder-segment-written` messages waiting on `bus`.
pub fn written_messages(bus: &gst::Bus) -> Vec<gst::Structure> {
    std::iter::from_fn(|| bus.pop())
        .filter_map(|m| match m.view() {
            gst::MessageView::Element(e) => e
                .structure()
                .filter(|s| s.name() == gstsegmentrecorder::SEGMENT_WRITTEN)
                .map(|s| s.to_owned()),
            _ => None,
        })
        .collect()
}

/// All messages of one type waiting on `bus`; the others are discarded.
pub fn messages_of(bus: &gst::Bus, ty: gst::MessageType) -> Vec<gst::Message> {
    std::iter::from_fn(|| bus.pop_filtered(&[ty])).collect()
}

/// All messages waiting on `bus`.
pub fn all_messages(bus: &gst::Bus) -> Vec<gst::Message> {
    std::iter::from_fn(|| bus.pop()).collect()
}

/// The structures of the element messages named `name` among `messages`.
pub fn element_messages(messages: &[gst::Message], name: &str) -> Vec<gst::Structure> {
    messages
        .iter()
        .filter_map(|m| match m.view() {
            gst::MessageView::Element(e) => e
                .structure()
                .filter(|s| s.name() == name)
                .map(|s| s.to_owned()),
            _ => None,
        })
        .collect()
}

/// The texts of the warnings among `messages`.
pub fn warning_texts(messages: &[gst::Message]) -> Vec<String> {
    messages
        .iter()
        .filter_map(|m| match m.view() {
            gst::MessageView::Warning(w) => Some(w.error().to_string()),
            _ => None,
        })
        .collect()
}

/// A directory holding only the plugin library this test binary was built with.
///
/// `cargo test` leaves the library next to the test binaries in `target/<profile>/deps`, among
/// many other libraries that GStreamer should not scan: the library is copied out of there.
pub fn plugin_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let built = exe.with_file_name("libgstsegmentrecorder.so");
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(&built, dir.path().join("libgstsegmentrecorder.so"))
            .unwrap_or_else(|e| panic!("{}: {e}", built.display()));
        dir
    })
    .path()
}

/// A GStreamer tool with only the built plugin added, and a registry of its own.
fn gst_command(tool: &str, args: &[&str], registry: &Path) -> Command {
    let mut command = Command::new(tool);
    command
        .args(args)
        .env("GST_PLUGIN_PATH", plugin_dir())
        .env("GST_REGISTRY", registry);
    command
}

fn output(mut command: Command, tool: &str) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {tool} (install gstreamer1.0-tools): {e}"))
}

/// Runs a GStreamer tool with only the built plugin added, and a registry of its own.
pub fn gst_tool(tool: &str, args: &[&str], registry: &Path) -> Output {
    output(gst_command(tool, args, registry), tool)
}

fn launch_args(pipeline: &str) -> Vec<&str> {
    std::iter::once("-q")
        .chain(pipeline.split_whitespace())
        .collect()
}

/// Runs `gst-launch-1.0 -q` on `pipeline` with the built plugin.
pub fn launch(pipeline: &str, registry: &Path) -> Output {
    gst_tool("gst-launch-1.0", &launch_args(pipeline), registry)
}

/// Runs `gst-launch-1.0 -q` on `pipeline` with the built plugin, in the working directory `cwd`.
pub fn launch_in(pipeline: &str, registry: &Path, cwd: &Path) -> Output {
    let mut command = gst_command("gst-launch-1.0", &launch_args(pipeline), registry);
    command.current_dir(cwd);
    output(command, "gst-launch-1.0")
}

/// The JSON objects a program printed, one per line of `stdout`.
pub fn json_lines(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect()
}
