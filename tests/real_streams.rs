//! Real streams through the element, checked sample by sample against what the sender sent.
//!
//! - RTP: a live L16 sender and a receiver (`udpsrc ! rtpjitterbuffer ! rtpL16depay`) talk over
//!   loopback while about 5 % of the 20 ms packets are dropped on the way. Every packet the
//!   receiver got must sit at its sender position in the recording, and every lost one must be
//!   silence there: with the jitterbuffer's defaults (the buffer after a loss comes flagged
//!   DISCONT, its timestamp 20 ms ahead of the count) and with `do-lost=true` (the loss comes
//!   as a GAP event). With `mode=none` the jitterbuffer's timestamps are the RTP timestamps and
//!   the check is exact; in its default mode they follow the estimated clock skew, and a packet
//!   may sit off its sender position by as much as the PTS that last resynced the stream is
//!   off its RTP timestamp, give or take a sample.
//! - Speech: espeak-ng's synthesized speech, resampled to 8, 16 and 48 kHz, is recorded
//!   sample-exact.
//!
//! The PRE and POST taps of each stream must be bit-identical.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;
use gstsegmentrecorder::layout::Identity;
use gstsegmentrecorder::rebuild::rebuild;

/// Samples of one RTP packet: 20 ms at 16 kHz.
const CHUNK: usize = 320;
const RATE: u32 = 16_000;
/// 10 s of audio.
const PACKETS: usize = 500;

/// Taken shared by the live RTP runs and exclusively by the CPU-bound speech runs, which
/// would otherwise delay the RTP packets and with them the jitterbuffer's timestamps.
static LIVE: RwLock<()> = RwLock::new(());

/// A share of [`LIVE`]; a test that failed holding it does not fail the others.
fn live() -> std::sync::RwLockReadGuard<'static, ()> {
    LIVE.read().unwrap_or_else(|e| e.into_inner())
}

/// Aborts the test binary if still armed after `limit`: a stuck pipeline must fail the test,
/// not hang it.
struct Watchdog(mpsc::Sender<()>);

impl Watchdog {
    fn arm(what: &'static str, limit: Duration) -> Self {
        let (tx, rx) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                eprintln!("{what} still running after {limit:?}: aborting");
                std::process::abort();
            }
        });
        Watchdog(tx)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

fn pipeline(description: &str) -> gst::Pipeline {
    gst::parse::launch(description)
        .unwrap_or_else(|e| panic!("{description}: {e}"))
        .downcast()
        .unwrap()
}

fn element(pipeline: &gst::Pipeline, name: &str) -> gst::Element {
    pipeline.by_name(name).unwrap()
}

fn play(pipeline: &gst::Pipeline, what: &str) {
    pipeline
        .set_state(gst::State::Playing)
        .unwrap_or_else(|e| panic!("{what} does not start: {e}"));
}

/// Waits for EOS on `pipeline`'s bus for at most `limit`, failing on an error, then stops it.
fn run_to_eos(pipeline: &gst::Pipeline, what: &str, limit: Duration) {
    let bus = pipeline.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_nseconds(limit.as_nanos() as u64),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .unwrap_or_else(|| panic!("{what}: no EOS within {limit:?}"));
    if let gst::MessageView::Error(e) = msg.view() {
        panic!("{what}: {} ({:?})", e.error(), e.debug());
    }
    pipeline.set_state(gst::State::Null).unwrap();
}

/// Two recorder branches of `tee name=t`: PRE and POST of `trace`/`station`, in running time.
fn recorders(base: &Path, trace: &str, station: &str) -> String {
    ["PRE", "POST"]
        .map(|tap| {
            format!(
                " t. ! queue ! segmentrecorder base-dir={} trace-id={trace} station-key={station} \
                 tap={tap} timestamp-mode=running-time",
                base.display()
            )
        })
        .concat()
}

/// PRE and POST of one stream are the same files, byte for byte; returns PRE rebuilt from
/// running time 0.
fn recorded(base: &Path, trace: &str, station: &str) -> Vec<i16> {
    let tap = |t: &str| segments(&base.join("1970-01-01").join(trace).join(station).join(t));
    let (pre, post) = (tap("PRE"), tap("POST"));
    assert!(!pre.is_empty(), "no PRE segments");
    let names = |files: &[PathBuf]| -> Vec<_> {
        files
            .iter()
            .map(|f| f.file_name().unwrap().to_owned())
            .collect()
    };
    assert_eq!(names(&pre), names(&post));
    for (a, b) in pre.iter().zip(&post) {
        assert!(
            std::fs::read(a).unwrap() == std::fs::read(b).unwrap(),
            "{} and its POST twin differ",
            a.display()
        );
    }
    let r = rebuild(base, &Identity::new(trace, station, "PRE").unwrap(), None).unwrap();
    let mut samples = vec![0; (r.first_bucket_ms * u64::from(r.rate) / 1_000) as usize];
    samples.extend_from_slice(&r.samples);
    samples
}

/// Where `needle` starts in `haystack`, looking at starts `from..to` only.
fn find(haystack: &[i16], needle: &[i16], from: usize, to: usize) -> Option<usize> {
    (from..to.min((haystack.len() + 1).saturating_sub(needle.len())))
        .find(|&i| haystack[i..i + needle.len()] == *needle)
}

// ---------------------------------------------------------------------------------------------
// RTP

/// What the probes saw of the packets and of what reached the recorders.
#[derive(Default)]
struct Probes {
    /// Sequence number and payload bytes of each packet, as the payloader made them: packet
    /// `i` carries reference samples `i * CHUNK..`.
    sent: Vec<(u16, usize)>,
    /// Sequence numbers that got past the loss.
    passed: Vec<u16>,
    /// Sequence number, RTP timestamp and PTS of each packet the jitterbuffer pushed.
    popped: Vec<(u16, u32, u64)>,
    /// What the depayloader pushed, in order.
    depayloaded: Vec<Span>,
}

/// A depayloaded buffer or a GAP event: PTS and duration in ns.
#[derive(Clone, Copy, Debug)]
enum Span {
    Buffer { pts: u64, ns: u64, discont: bool },
    Gap { pts: u64, ns: u64 },
}

/// Sequence number, RTP timestamp and payload bytes of an RTP packet.
fn rtp_header(buffer: &gst::BufferRef) -> (u16, u32, usize) {
    let map = buffer.map_readable().unwrap();
    assert!(map.len() >= 12, "not an RTP packet");
    let seq = u16::from_be_bytes([map[2], map[3]]);
    let time = u32::from_be_bytes([map[4], map[5], map[6], map[7]]);
    // rtpL16pay adds neither CSRCs nor extensions.
    (seq, time, map.len() - 12)
}

fn probe(
    pipeline: &gst::Pipeline,
    name: &str,
    probes: &Arc<Mutex<Probes>>,
    f: impl Fn(&mut Probes, &gst::PadProbeInfo) + Send + Sync + 'static,
) {
    let probes = probes.clone();
    element(pipeline, name)
        .static_pad("src")
        .unwrap()
        .add_probe(
            gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
            move |_, info| {
                f(&mut probes.lock().unwrap(), info);
                gst::PadProbeReturn::Ok
            },
        )
        .unwrap();
}

/// What an RTP run left: the sender's reference, the recording and what the probes saw.
struct RtpRun {
    reference: Vec<i16>,
    recording: Vec<i16>,
    probes: Probes,
}

/// Sends `PACKETS` packets of live white noise over loopback to a receiver whose jitterbuffer
/// has the properties `jitterbuffer`, dropping about 5 % of them, and records PRE and POST.
fn rtp_run(jitterbuffer: &str) -> RtpRun {
    init();
    let _watchdog = Watchdog::arm("RTP run", Duration::from_secs(120));
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("rec");
    let reference = dir.path().join("reference.wav");
    let caps = format!(
        "application/x-rtp,media=audio,clock-rate={RATE},encoding-name=L16,channels=1,payload=96"
    );
    let receiver = pipeline(&format!(
        "udpsrc name=src address=127.0.0.1 port=0 reuse=false caps=\"{caps}\" \
         ! rtpjitterbuffer name=jb {jitterbuffer} ! rtpL16depay name=depay ! audioconvert \
         ! audio/x-raw,format=S16LE ! tee name=t {}",
        recorders(&base, "call", "rtp")
    ));
    // The socket is bound on the way to READY: port 0 has the system pick a free one, which
    // without reuse no other test's socket can share.
    receiver.set_state(gst::State::Ready).unwrap();
    let port: i32 = element(&receiver, "src").property("port");
    assert_ne!(port, 0);

    // Non-periodic noise, so that a packet is found at one place only. 20 ms per packet,
    // converted to the S16BE that L16 carries on the payloader's branch only.
    let sender = pipeline(&format!(
        "audiotestsrc wave=white-noise is-live=true samplesperbuffer={CHUNK} \
         num-buffers={PACKETS} ! audio/x-raw,format=S16LE,rate={RATE},channels=1 ! tee name=t \
         t. ! queue ! wavenc ! filesink location={} \
         t. ! queue ! audioconvert ! audio/x-raw,format=S16BE \
         ! rtpL16pay name=pay pt=96 min-ptime=20000000 max-ptime=20000000 \
         ! identity name=loss drop-probability=0.05 ! udpsink host=127.0.0.1 port={port}",
        reference.display()
    ));

    let probes = Arc::new(Mutex::new(Probes::default()));
    probe(&sender, "pay", &probes, |p, info| {
        if let Some(b) = info.buffer() {
            let (seq, _, payload) = rtp_header(b);
            p.sent.push((seq, payload));
        }
    });
    probe(&sender, "loss", &probes, |p, info| {
        if let Some(b) = info.buffer() {
            p.passed.push(rtp_header(b).0);
        }
    });
    probe(&receiver, "jb", &probes, |p, info| {
        if let Some(b) = info.buffer() {
            let (seq, time, _) = rtp_header(b);
            p.popped.push((seq, time, b.pts().unwrap().nseconds()));
        }
    });
    probe(&receiver, "depay", &probes, |p, info| {
        if let Some(b) = info.buffer() {
            p.depayloaded.push(Span::Buffer {
                pts: b.pts().unwrap().nseconds(),
                // rtpL16depay leaves the duration unset.
                ns: b.size() as u64 / 2 * 1_000_000_000 / u64::from(RATE),
                discont: b.flags().contains(gst::BufferFlags::DISCONT),
            });
        } else if let Some(gst::EventView::Gap(g)) = info.event().map(|e| e.view()) {
            let (pts, duration) = g.get();
            p.depayloaded.push(Span::Gap {
                pts: pts.nseconds(),
                ns: duration.unwrap().nseconds(),
            });
        }
    });

    play(&receiver, "receiver");
    play(&sender, "sender");
    run_to_eos(&sender, "sender", Duration::from_secs(60));
    // Let the last packet that got through reach the recorders before they stop; the check
    // goes by what the jitterbuffer pushed, so a packet still held back is merely lost.
    let last = probes.lock().unwrap().passed.last().copied();
    let popped_last = || {
        probes
            .lock()
            .unwrap()
            .popped
            .iter()
            .any(|p| Some(p.0) == last)
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !popped_last() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    receiver.send_event(gst::event::Eos::new());
    run_to_eos(&receiver, "receiver", Duration::from_secs(30));

    let (reference, rate) = read_wav(&reference);
    assert_eq!((reference.len(), rate), (PACKETS * CHUNK, RATE));
    let recording = recorded(&base, "call", "rtp");
    let probes = std::mem::take(&mut *probes.lock().unwrap());
    RtpRun {
        reference,
        recording,
        probes,
    }
}

/// How the jitterbuffer and the depayloader told the losses, and where that puts each packet.
struct Told {
    /// Nanoseconds by which the jitterbuffer's PTS wandered from its RTP timestamps at most,
    /// relative to its first packet.
    wander_ns: u64,
    /// Depayloaded buffers whose PTS jump past the end of what came before (a loss not told
    /// by a GAP event), and how many of them are flagged DISCONT.
    jumps: usize,
    discont_jumps: usize,
    gaps: usize,
    /// For each packet received, by its index: the samples by which the PTS of the DISCONT
    /// buffer that last resynced the stream is off the RTP timestamps. A packet can only be
    /// placed as well as that PTS says.
    displacement: HashMap<usize, i64>,
}

impl Told {
    fn of(probes: &Probes) -> Self {
        let index: HashMap<u16, usize> = (probes.sent.iter().enumerate())
            .map(|(c, &(seq, _))| (seq, c))
            .collect();
        let buffers: Vec<(u64, bool)> = (probes.depayloaded.iter())
            .filter_map(|s| match *s {
                Span::Buffer { pts, discont, .. } => Some((pts, discont)),
                Span::Gap { .. } => None,
            })
            .collect();
        assert_eq!(buffers.len(), probes.popped.len(), "one buffer per packet");
        let (_, time0, pts0) = probes.popped[0];
        let (mut wander_ns, mut current, mut displacement) = (0, 0, HashMap::new());
        for (&(seq, time, pts), &(_, discont)) in probes.popped.iter().zip(&buffers) {
            let ticks = u64::from(time.wrapping_sub(time0));
            let off = i128::from(pts) - i128::from(pts0 + ticks * 1_000_000_000 / u64::from(RATE));
            wander_ns = wander_ns.max(off.unsigned_abs() as u64);
            if discont {
                current = (off as f64 * f64::from(RATE) / 1e9).round() as i64;
            }
            displacement.insert(index[&seq], current);
        }
        // A lost packet is 20 ms; the skew estimation moves a PTS by microseconds.
        let (mut jumps, mut discont_jumps, mut gaps, mut end) = (0, 0, 0, None);
        for span in &probes.depayloaded {
            match *span {
                Span::Buffer { pts, ns, discont } => {
                    if end.is_some_and(|end| pts > end + 10_000_000) {
                        jumps += 1;
                        discont_jumps += usize::from(discont);
                    }
                    end = Some(pts + ns);
                }
                Span::Gap { pts, ns } => {
                    gaps += 1;
                    end = Some(pts + ns);
                }
            }
        }
        let told = Told {
            wander_ns,
            jumps,
            discont_jumps,
            gaps,
            displacement,
        };
        println!(
            "jitterbuffer PTS off its RTP timestamps by at most {wander_ns} ns, at DISCONT \
             buffers by at most {} samples; {jumps} buffers after a loss, {discont_jumps} of \
             them DISCONT; {gaps} GAP events",
            told.displacement.values().map(|d| d.abs()).max().unwrap()
        );
        told
    }

    /// The losses came as they do with `do-lost=false`: the buffer after each is DISCONT.
    fn assert_discont(&self) {
        assert_eq!(self.gaps, 0, "GAP events without do-lost");
        assert_eq!(
            self.discont_jumps, self.jumps,
            "a buffer after a loss is not DISCONT"
        );
    }

    /// The PTS are the RTP timestamps (`mode=none`), so the check is exact.
    fn assert_exact(&self) {
        assert_eq!(self.wander_ns, 0, "PTS off the RTP timestamps");
    }

    /// The losses came as GAP events (`do-lost=true`), so the stream does not jump.
    fn assert_gaps(&self) {
        assert!(self.gaps > 0, "no GAP event for a lost packet");
        assert_eq!(self.jumps, 0, "a loss not told by a GAP event");
    }
}

/// Runs RTP through a jitterbuffer with the properties `jitterbuffer` and checks the recording
/// packet by packet against the sender's reference, relative to the first packet received:
/// each packet received sits at its sender position, moved only by the error of the PTS that
/// last resynced the stream (none when the PTS follow the RTP timestamps; otherwise give or
/// take a sample of rounding that PTS onto the sample grid), and each lost one is silence.
fn check_rtp(jitterbuffer: &str, premise: fn(&Told)) {
    let run = rtp_run(jitterbuffer);
    let p = &run.probes;
    assert_eq!(p.sent.len(), PACKETS);
    assert!(
        p.sent.iter().all(|&(_, bytes)| bytes == 2 * CHUNK),
        "packets are not of 20 ms: {:?}",
        &p.sent[..5]
    );
    let told = Told::of(p);
    premise(&told);
    let margin = i64::from(told.wander_ns != 0);
    let chunk = |c: usize| &run.reference[c * CHUNK..(c + 1) * CHUNK];
    let rec = &run.recording;

    // The first packet received places the stream; all others are checked against it.
    let first = (0..PACKETS)
        .find(|c| told.displacement.contains_key(c))
        .expect("nothing received");
    let at = find(rec, chunk(first), 0, rec.len()).expect("the first packet is not recorded");
    // Before running time 0 when the first packets were lost and the next came early.
    let origin = at as i64 - (first * CHUNK) as i64;
    let sender_position = |c: usize| origin + (c * CHUNK) as i64;
    let window = |from: i64, to: i64| from.max(0) as usize..to.max(0) as usize;

    let (mut lost, mut misplaced, mut not_silent) = (0, Vec::new(), Vec::new());
    let mut shifts = BTreeMap::<Option<i64>, usize>::new();
    let mut before = 0;
    for c in 0..PACKETS {
        let pos = sender_position(c);
        if let Some(&d) = told.displacement.get(&c) {
            before = d;
            let near = window(pos + d - margin, pos + d + margin + 1);
            if find(rec, chunk(c), near.start, near.end).is_none() {
                let wide = window(pos - 4_000, pos + 4_000);
                let shift = find(rec, chunk(c), wide.start, wide.end).map(|f| f as i64 - pos);
                *shifts.entry(shift).or_default() += 1;
                misplaced.push(c);
            }
        } else {
            lost += 1;
            let after = (c..PACKETS)
                .find_map(|n| told.displacement.get(&n).copied())
                .unwrap_or(before);
            let hole = window(
                pos + before.max(after) + margin,
                pos + CHUNK as i64 + before.min(after) - margin,
            );
            if rec.get(hole).is_some_and(|h| h.iter().any(|&s| s != 0)) {
                not_silent.push(c);
            }
        }
    }
    let received = PACKETS - lost;
    let placed = received - misplaced.len();
    println!(
        "{received} packets received, {lost} lost; {placed} ({:.1} %) received where their \
         sender and PTS put them; shifts from the sender position (samples: packets; none: \
         not within 4,000): {shifts:?}; places of lost packets holding audio: {}",
        100.0 * placed as f64 / received as f64,
        not_silent.len()
    );
    // Without a loss the run proves nothing; a mostly lost run is not the case at hand.
    assert!(lost > 0, "no packet was lost");
    assert!(
        received >= 3 * PACKETS / 4,
        "only {received} packets received"
    );
    assert!(
        misplaced.is_empty(),
        "{} of {received} received packets are not where their sender and PTS put them \
         (shift from the sender position in samples: packets): {shifts:?}; the first: {:?}",
        misplaced.len(),
        &misplaced[..misplaced.len().min(8)]
    );
    assert!(
        not_silent.is_empty(),
        "the places of lost packets {not_silent:?} hold audio"
    );
    let reach = told.displacement.values().map(|d| d.abs()).max().unwrap() + margin;
    assert!(
        rec[window(0, origin)].iter().all(|&s| s == 0),
        "audio before the stream"
    );
    let end = sender_position(PACKETS) + reach;
    assert!(
        rec.get(window(end, i64::MAX))
            .unwrap_or(&[])
            .iter()
            .all(|&s| s == 0),
        "audio after the stream"
    );
}

/// The jitterbuffer's default mode, as users have it: its PTS follow the estimated skew of
/// the sender's clock, off the RTP timestamps by the first packet's extra delay over the
/// least one (a few samples here, over 100 on a busy machine).
#[test]
fn rtp_loss_with_a_default_jitterbuffer_leaves_each_packet_at_its_sender_position() {
    let _live = live();
    check_rtp("", Told::assert_discont);
}

/// With `mode=none` the PTS are the RTP timestamps: every packet exactly at its position.
#[test]
fn rtp_loss_with_a_jitterbuffer_on_rtp_timestamps_is_sample_exact() {
    let _live = live();
    check_rtp("mode=none", |told| {
        told.assert_discont();
        told.assert_exact();
    });
}

#[test]
fn rtp_loss_told_as_gap_events_is_silence_at_its_place() {
    let _live = live();
    check_rtp("do-lost=true", Told::assert_gaps);
}

#[test]
fn rtp_loss_told_as_gap_events_on_rtp_timestamps_is_sample_exact() {
    let _live = live();
    check_rtp("do-lost=true mode=none", |told| {
        told.assert_gaps();
        told.assert_exact();
    });
}

// ---------------------------------------------------------------------------------------------
// Speech

/// Fails under CI, which must be able to run every test; elsewhere says loudly what is skipped.
fn unavailable(what: &str, why: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "cannot {what} ({why}), which CI must be able to do"
    );
    println!("skipped: cannot {what} ({why})");
}

/// Synthesizes a few sentences into `path` (22,050 Hz mono); false without espeak-ng.
fn speech(path: &Path) -> bool {
    let text = "Thank you for calling. Please say the name of the city you are travelling \
                to, and the date of your journey. You can change your booking at any time.";
    match Command::new("espeak-ng")
        .arg("-w")
        .arg(path)
        .arg(text)
        .output()
    {
        Ok(out) if out.status.success() => true,
        Ok(out) => {
            let why = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            unavailable("synthesize speech with espeak-ng", &why);
            false
        }
        Err(e) => {
            unavailable("synthesize speech", &format!("cannot run espeak-ng: {e}"));
            false
        }
    }
}

/// espeak-ng's speech resampled to `rate`, recorded PRE and POST: sample for sample the
/// reference the same pipeline wrote, after the silence of the bucket before its start.
fn speech_is_recorded_sample_exact(rate: u32) {
    init();
    let _live = LIVE.write().unwrap_or_else(|e| e.into_inner());
    let _watchdog = Watchdog::arm("speech run", Duration::from_secs(120));
    let dir = tempfile::tempdir().unwrap();
    let spoken = dir.path().join("speech.wav");
    if !speech(&spoken) {
        return;
    }
    let base = dir.path().join("rec");
    let reference = dir.path().join("reference.wav");
    let p = pipeline(&format!(
        "filesrc location={} ! wavparse ! audioconvert ! audioresample \
         ! audio/x-raw,format=S16LE,rate={rate},channels=1 ! tee name=t \
         t. ! queue ! wavenc ! filesink location={} {}",
        spoken.display(),
        reference.display(),
        recorders(&base, "speech", "tts")
    ));
    let first_pts = Arc::new(Mutex::new(None));
    let seen = first_pts.clone();
    element(&p, "t")
        .static_pad("sink")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let mut seen = seen.lock().unwrap();
            if seen.is_none() {
                *seen = info.buffer().and_then(|b| b.pts());
            }
            gst::PadProbeReturn::Ok
        })
        .unwrap();
    play(&p, "speech pipeline");
    run_to_eos(&p, "speech pipeline", Duration::from_secs(60));

    let (reference, ref_rate) = read_wav(&reference);
    assert_eq!(ref_rate, rate);
    // Real speech, not a few samples of silence.
    assert!(
        reference.len() > 5 * rate as usize,
        "{} samples",
        reference.len()
    );
    assert!(reference.iter().filter(|&&s| s != 0).count() > reference.len() / 2);
    let recording = recorded(&base, "speech", "tts");
    let first = first_pts.lock().unwrap().expect("no timestamp").nseconds();
    let lead = ((first * u64::from(rate) + 500_000_000) / 1_000_000_000) as usize;
    assert!(recording.len() >= lead + reference.len());
    assert!(recording[..lead].iter().all(|&s| s == 0), "leading padding");
    if let Some(i) = (0..reference.len()).find(|&i| recording[lead + i] != reference[i]) {
        panic!(
            "sample {i} of {} at {rate} Hz differs: {} recorded, {} sent",
            reference.len(),
            recording[lead + i],
            reference[i]
        );
    }
    assert!(
        recording[lead + reference.len()..].iter().all(|&s| s == 0),
        "trailing padding"
    );
}

#[test]
fn speech_at_8_khz_is_recorded_sample_exact() {
    speech_is_recorded_sample_exact(8_000);
}

#[test]
fn speech_at_16_khz_is_recorded_sample_exact() {
    speech_is_recorded_sample_exact(16_000);
}

#[test]
fn speech_at_48_khz_is_recorded_sample_exact() {
    speech_is_recorded_sample_exact(48_000);
}
