//! The in-band call boundary: a serialized custom downstream event that switches every recorder
//! it reaches to another call at the same point of the stream.
//!
//! Setting `trace-id` on two recorders from the application lands on whatever buffer each
//! branch is at; an event sent upstream of a `tee` travels with the data and reaches every
//! branch between the same two buffers. Elements that do not know it pass it on; a recorder
//! applies it as it would a property change, exactly there. It is sticky: a `queue` that is
//! flushed drops the events it holds but sends the sticky ones again, so no branch misses a
//! call it is in (the plain custom downstream event is taken too).

use std::sync::Arc;

use gst::prelude::*;
use gst::subclass::prelude::*;

use super::imp::{SegmentRecorder, lock};
use super::settings::Settings;

/// Name of the structure of a call boundary event.
pub const CALL_EVENT: &str = "segmentrecorder-call";

/// A call boundary: from the next buffer on, the recorders it reaches file their segments under
/// `trace_id` (and `station_key`, if given). Send it upstream of the `tee` that feeds them,
/// e.g. on the tee's sink pad with `gst::Pad::send_event`, or push it from a pad probe.
pub fn call_event(trace_id: &str, station_key: Option<&str>) -> gst::Event {
    let mut s = gst::Structure::builder(CALL_EVENT).field("trace-id", trace_id);
    if let Some(station_key) = station_key {
        s = s.field("station-key", station_key);
    }
    gst::event::CustomDownstreamSticky::new(s.build())
}

/// The identifiers a call boundary event sets.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct CallChange {
    pub(super) trace_id: String,
    pub(super) station_key: Option<String>,
}

/// The change a call boundary event asks for, or why it cannot be applied.
pub(super) fn parse(s: &gst::StructureRef) -> Result<CallChange, String> {
    let field = |name: &str| match s.get_optional::<Option<String>>(name) {
        Ok(value) => Ok(value.flatten()),
        Err(_) => Err(format!("its field '{name}' is not a string")),
    };
    let Some(trace_id) = field("trace-id")? else {
        return Err("it has no field 'trace-id'".to_owned());
    };
    Ok(CallChange {
        trace_id,
        station_key: field("station-key")?,
    })
}

impl SegmentRecorder {
    /// Files what follows under the identity of `settings` from the next buffer on (a call
    /// boundary), or says why they cannot name a directory.
    pub(super) fn change_identity(&self, settings: &Settings) -> Result<(), String> {
        let identity = settings.identity()?;
        if let Some(state) = lock(&self.state).as_mut() {
            state.next_identity = (identity != *state.identity).then(|| Arc::new(identity));
        }
        Ok(())
    }

    /// Applies a call boundary event where it is in the stream: the properties it names change
    /// as if set, and the buffers after it are filed under the new call.
    pub(super) fn call_boundary(&self, s: &gst::StructureRef) {
        let applied = parse(s).and_then(|change| {
            let mut settings = lock(&self.settings);
            let mut changed = settings.clone();
            changed.trace_id = Some(change.trace_id);
            if change.station_key.is_some() {
                changed.station_key = change.station_key;
            }
            changed.identity()?;
            let notify = [
                ("trace-id", changed.trace_id != settings.trace_id),
                ("station-key", changed.station_key != settings.station_key),
            ];
            *settings = changed.clone();
            drop(settings);
            self.change_identity(&changed)?;
            Ok(notify)
        });
        match applied {
            Ok(notify) => {
                for (name, changed) in notify {
                    if changed {
                        self.obj().notify(name);
                    }
                }
            }
            Err(reason) => gst::element_imp_warning!(
                self,
                gst::StreamError::Format,
                (
                    "Ignored a {} event: {}; recording goes on under the current call",
                    CALL_EVENT,
                    reason
                ),
                ["{:?}", s]
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_carries_what_it_was_built_with() {
        gst::init().unwrap();
        let event = call_event("call-2", Some("sip:bob@example.com"));
        assert!(event.is_serialized() && event.is_downstream() && event.is_sticky());
        let s = event.structure().unwrap();
        assert_eq!(s.name(), CALL_EVENT);
        assert_eq!(
            parse(s),
            Ok(CallChange {
                trace_id: "call-2".into(),
                station_key: Some("sip:bob@example.com".into())
            })
        );
        let event = call_event("call-3", None);
        assert_eq!(parse(event.structure().unwrap()).unwrap().station_key, None);
    }

    #[test]
    fn unusable_events_say_why() {
        gst::init().unwrap();
        let no_id = gst::Structure::new_empty(CALL_EVENT);
        assert_eq!(parse(&no_id), Err("it has no field 'trace-id'".into()));
        let number = gst::Structure::builder(CALL_EVENT)
            .field("trace-id", 42i32)
            .build();
        assert_eq!(
            parse(&number),
            Err("its field 'trace-id' is not a string".into())
        );
    }
}
