//! Records the PRE and POST taps of a processing stage and prints each segment as it is written.
//!
//! ```text
//! cargo run --example record -- [--base-dir DIR] [--seconds N] [--trace-id ID]
//! ```
//!
//! The source is a live 16 kHz test tone with a little noise standing in for a caller; the
//! "stage" is a `volume` element halving the level. Its input and output go to two recorders on
//! branches of one `tee`, so their files pair up by name.

use std::error::Error;

use gst::prelude::*;

struct Options {
    base_dir: String,
    seconds: u64,
    trace_id: String,
}

fn options() -> Result<Options, Box<dyn Error>> {
    let mut o = Options {
        base_dir: "recordings".into(),
        seconds: 12,
        trace_id: format!("call-{}", std::process::id()),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--base-dir" => o.base_dir = value()?,
            "--seconds" => o.seconds = value()?.parse()?,
            "--trace-id" => o.trace_id = value()?,
            _ => return Err(format!("unknown argument {arg}").into()),
        }
    }
    Ok(o)
}

fn main() -> Result<(), Box<dyn Error>> {
    let o = options()?;
    gst::init()?;
    gstsegmentrecorder::plugin_register_static()?;

    // 50 buffers of 20 ms per second.
    let buffers = o.seconds * 50;
    let recorder = |tap: &str| {
        format!(
            "segmentrecorder base-dir=\"{}\" trace-id=\"{}\" station-key=denoise tap={tap}",
            o.base_dir, o.trace_id
        )
    };
    let pipeline = gst::parse::launch(&format!(
        "audiotestsrc is-live=true wave=sine freq=220 volume=0.3 samplesperbuffer=320 \
             num-buffers={buffers} \
         ! audio/x-raw,format=S16LE,rate=16000,channels=1 ! tee name=in \
         in. ! queue ! {pre} \
         in. ! queue ! volume volume=0.5 ! {post}",
        pre = recorder("PRE"),
        post = recorder("POST"),
    ))?;

    println!(
        "Recording {} s of trace {} into {}",
        o.seconds, o.trace_id, o.base_dir
    );
    pipeline.set_state(gst::State::Playing)?;
    let bus = pipeline.bus().ok_or("pipeline without bus")?;
    let mut result = Ok(());
    for msg in bus.iter_timed(gst::ClockTime::NONE) {
        match msg.view() {
            gst::MessageView::Element(e) => {
                if let Some(s) = e
                    .structure()
                    .filter(|s| s.name() == gstsegmentrecorder::SEGMENT_WRITTEN)
                {
                    println!(
                        "{:<4} {} ({} samples at {} Hz, {} of them silence)",
                        s.get::<String>("tap")?,
                        s.get::<String>("location")?,
                        s.get::<u64>("samples")?,
                        s.get::<u32>("sample-rate")?,
                        s.get::<u64>("silence-samples")?,
                    );
                }
            }
            gst::MessageView::Warning(w) => eprintln!("warning: {}", w.error()),
            gst::MessageView::Error(e) => {
                result = Err(format!("{}: {:?}", e.error(), e.debug()).into());
                break;
            }
            gst::MessageView::Eos(_) => break,
            _ => (),
        }
    }
    pipeline.set_state(gst::State::Null)?;
    result
}
