//! The timeline decides where a buffer belongs as GStreamer's own `GstAudioStreamAlign` does:
//! the same streams, with jitter, holes, overlaps, stray timestamps and DISCONT flags, fed to
//! both, give the same positions and the same discontinuities, for any threshold and
//! discont-wait.
//!
//! With a discont-wait, the timeline follows the rule of current GStreamer: a discontinuity is
//! measured from the time the count expected when it began, and one that is itself longer than
//! discont-wait is acted upon at once. GStreamer before that change (1.22, for one) measured
//! from the first discontinuous buffer and always waited; against such a library only the
//! comparisons without a discont-wait are made.

use gstsegmentrecorder::timeline::{Alignment, Grid, NS_PER_SEC, Timeline};
use proptest::prelude::*;

const RATE: u32 = 16_000;
/// One sample at 16 kHz is a whole number of nanoseconds, so that both sides see timestamps on
/// the grid (GstAudioStreamAlign rounds a timestamp down to a sample, the timeline to the
/// nearest one).
const SAMPLE_NS: u64 = NS_PER_SEC / RATE as u64;

#[derive(Debug, Clone)]
struct Buffer {
    len: u32,
    /// How far from where the count puts it the buffer is stamped, in samples.
    offset: i64,
    discont: bool,
}

fn buffer() -> impl Strategy<Value = Buffer> {
    let offset = prop_oneof![
        6 => Just(0i64),
        3 => -700i64..700,
        2 => -20_000i64..20_000,
        1 => -1_000_000i64..1_000_000,
    ];
    (1u32..800, offset, prop::bool::weighted(0.1)).prop_map(|(len, offset, discont)| Buffer {
        len,
        offset,
        discont,
    })
}

/// Whether the installed GStreamer resyncs at once on a jump longer than discont-wait.
fn library_resyncs_long_jumps_at_once() -> bool {
    let second = gst::ClockTime::SECOND;
    let mut align =
        gst_audio::AudioStreamAlign::new(RATE as i32, 40 * gst::ClockTime::MSECOND, second);
    align.process(false, gst::ClockTime::ZERO, 320);
    align.process(false, 10 * second, 320).0
}

fn check(threshold_ms: u64, wait_ms: u64, buffers: &[Buffer]) -> Result<(), TestCaseError> {
    let threshold = threshold_ms * 1_000_000;
    let wait = wait_ms * 1_000_000;
    let mut reference = gst_audio::AudioStreamAlign::new(
        RATE as i32,
        gst::ClockTime::from_nseconds(threshold),
        gst::ClockTime::from_nseconds(wait),
    );
    let mut timeline = Timeline::new(Grid::new(RATE, 5 * NS_PER_SEC), threshold);
    timeline.set_discont_wait(wait);
    let mut out = Vec::new();
    // The count as the reference keeps it, in samples.
    let mut count = 10_000_000i64;
    for (k, b) in buffers.iter().enumerate() {
        let at = (count + b.offset).max(0) as u64;
        let stamp = at * SAMPLE_NS;
        let (discont, _, _, position) =
            reference.process(b.discont, gst::ClockTime::from_nseconds(stamp), b.len);
        out.clear();
        let placed = timeline.push(Some(stamp), b.len as usize, b.discont, &mut out);
        let resynced = matches!(placed.alignment, Alignment::Start | Alignment::Resynced);
        prop_assert_eq!(
            (placed.sample, resynced),
            (position, discont),
            "buffer {} ({:?}) stamped at sample {}",
            k,
            b,
            at
        );
        count = (position + u64::from(b.len)) as i64;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn placed_as_gst_audio_stream_align_places(
        threshold_ms in prop::sample::select(vec![0u64, 20, 40, 100]),
        wait_ms in prop::sample::select(vec![0u64, 100, 1_000]),
        buffers in prop::collection::vec(buffer(), 1..200),
    ) {
        gst::init().unwrap();
        if wait_ms == 0 || library_resyncs_long_jumps_at_once() {
            check(threshold_ms, wait_ms, &buffers)?;
        }
    }
}
