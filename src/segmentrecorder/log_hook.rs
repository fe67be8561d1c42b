//! The [`Log`] hook the element gives the writer and the uploader: their lines go to the
//! element's debug category with the element as their object, like the element's own.

use std::fmt;
use std::panic::Location;

use gst::glib::{self, IntoGStr};
use gst::prelude::*;

use crate::log::{Level, Log, Logger};

/// Logs for one element. Holds only a weak reference to it: the writer and uploader threads
/// outlive elements. Takes no lock of the element and posts nothing.
struct ElementLog {
    element: glib::WeakRef<super::SegmentRecorder>,
    /// The element's name, for the lines logged once it is gone (uploads go on after it).
    name: glib::GString,
    cat: gst::DebugCategory,
}

/// A logger whose lines name `element`.
pub(super) fn logger(element: &super::SegmentRecorder) -> Logger {
    Logger::new(ElementLog {
        element: element.downgrade(),
        name: element.name(),
        cat: super::debug_category(),
    })
}

fn gst_level(level: Level) -> gst::DebugLevel {
    match level {
        Level::Warning => gst::DebugLevel::Warning,
        Level::Info => gst::DebugLevel::Info,
        Level::Debug => gst::DebugLevel::Debug,
        Level::Log => gst::DebugLevel::Log,
    }
}

impl Log for ElementLog {
    fn enabled(&self, level: Level) -> bool {
        self.cat.above_threshold(gst_level(level))
    }

    fn log(&self, level: Level, site: &'static Location<'static>, args: fmt::Arguments<'_>) {
        let element = self.element.upgrade();
        site.file().run_with_gstr(|file| match &element {
            Some(element) => {
                self.cat
                    .log(Some(element), gst_level(level), file, "", site.line(), args);
            }
            // Gone (its uploads go on): named as the log names an object.
            None => self.cat.log(
                None::<&glib::Object>,
                gst_level(level),
                file,
                "",
                site.line(),
                format_args!("<{}> {}", self.name, args),
            ),
        });
    }
}
