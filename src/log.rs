//! The hook through which the writer and the uploader tell what they do.
//!
//! Both run on threads of their own, shared by every recorder in the process, and know nothing
//! of GStreamer: a recorder gives each of them a [`Logger`] that logs in its debug category
//! with the recorder as the object, so that one debug log tells a recorder's whole story, its
//! files and uploads included, and the PRE and POST recorders of a stage can be told apart.
//!
//! A line costs a virtual call and a level check when its level is not wanted: its arguments
//! are formatted only by a hook that logs it. The hook is called on writer and uploader
//! threads, possibly while the recording's own locks are held, so it must not take a lock of
//! the recorder nor post a message; it must not keep the recorder alive either, since the
//! threads outlive recorders.

use std::fmt;
use std::panic::Location;
use std::sync::Arc;

/// How much a line matters: GStreamer's debug levels of the same names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Something failed; recording goes on.
    Warning,
    /// A change a user wants to know of: writing works again, a file was recovered.
    Info,
    /// Each file opened, published, retried; each upload.
    Debug,
    /// What happens many times a second: each write to a file.
    Log,
}

/// Where the writer's and the uploader's lines go.
pub trait Log: Send + Sync {
    /// Whether lines of `level` are wanted. Asked before each line: keep it cheap.
    fn enabled(&self, level: Level) -> bool;

    /// Logs a line of `level` written at `site` in the source.
    fn log(&self, level: Level, site: &'static Location<'static>, args: fmt::Arguments<'_>);
}

/// A hook shared with a test or another logger logs as itself.
impl<T: Log + ?Sized> Log for Arc<T> {
    fn enabled(&self, level: Level) -> bool {
        (**self).enabled(level)
    }

    fn log(&self, level: Level, site: &'static Location<'static>, args: fmt::Arguments<'_>) {
        (**self).log(level, site, args);
    }
}

/// A [`Log`] to hand out: cheap to clone, a no-op by default (tools, tests).
#[derive(Clone)]
pub struct Logger(Option<Arc<dyn Log>>);

impl Logger {
    /// A logger writing to `hook`.
    pub fn new(hook: impl Log + 'static) -> Self {
        Logger(Some(Arc::new(hook)))
    }

    /// A logger that logs nothing.
    pub fn none() -> Self {
        Logger(None)
    }

    /// Whether lines of `level` are wanted: for a line whose arguments cost work to gather.
    pub fn enabled(&self, level: Level) -> bool {
        self.0.as_ref().is_some_and(|hook| hook.enabled(level))
    }

    /// Logs `args` at `level` if the level is wanted.
    #[track_caller]
    pub fn at(&self, level: Level, args: fmt::Arguments<'_>) {
        if let Some(hook) = &self.0
            && hook.enabled(level)
        {
            hook.log(level, Location::caller(), args);
        }
    }

    /// Logs at [`Level::Warning`].
    #[track_caller]
    pub fn warning(&self, args: fmt::Arguments<'_>) {
        self.at(Level::Warning, args);
    }

    /// Logs at [`Level::Info`].
    #[track_caller]
    pub fn info(&self, args: fmt::Arguments<'_>) {
        self.at(Level::Info, args);
    }

    /// Logs at [`Level::Debug`].
    #[track_caller]
    pub fn debug(&self, args: fmt::Arguments<'_>) {
        self.at(Level::Debug, args);
    }

    /// Logs at [`Level::Log`].
    #[track_caller]
    pub fn log(&self, args: fmt::Arguments<'_>) {
        self.at(Level::Log, args);
    }
}

impl Default for Logger {
    fn default() -> Self {
        Logger::none()
    }
}

impl fmt::Debug for Logger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Logger"
        } else {
            "Logger(none)"
        })
    }
}

/// A [`Log`] that keeps every line, for unit tests that check what is told.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct Collect(std::sync::Mutex<Vec<(Level, String)>>);

#[cfg(test)]
impl Collect {
    /// The lines logged so far.
    pub(crate) fn lines(&self) -> Vec<(Level, String)> {
        self.0.lock().unwrap().clone()
    }
}

#[cfg(test)]
impl Log for Collect {
    fn enabled(&self, _: Level) -> bool {
        true
    }

    fn log(&self, level: Level, _: &'static Location<'static>, args: fmt::Arguments<'_>) {
        self.0.lock().unwrap().push((level, args.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Threshold(Level, std::sync::Mutex<Vec<(Level, String, u32)>>);

    impl Log for Threshold {
        fn enabled(&self, level: Level) -> bool {
            level <= self.0
        }

        fn log(&self, level: Level, site: &'static Location<'static>, args: fmt::Arguments<'_>) {
            self.1
                .lock()
                .unwrap()
                .push((level, args.to_string(), site.line()));
        }
    }

    /// Counts how often it is formatted.
    struct Counted<'a>(&'a std::cell::Cell<u32>);

    impl fmt::Display for Counted<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            self.0.set(self.0.get() + 1);
            f.write_str("x")
        }
    }

    #[test]
    fn lines_above_the_threshold_are_never_formatted() {
        let hook = Arc::new(Threshold(Level::Debug, Default::default()));
        let logger = Logger::new(hook.clone());
        let formatted = std::cell::Cell::new(0);
        logger.log(format_args!("{}", Counted(&formatted)));
        assert_eq!(formatted.get(), 0);
        let line = line!() + 1;
        logger.debug(format_args!("{}", Counted(&formatted)));
        assert_eq!(formatted.get(), 1);
        // The site is the caller's, not the logger's.
        assert_eq!(*hook.1.lock().unwrap(), [(Level::Debug, "x".into(), line)]);
        Logger::none().warning(format_args!("{}", Counted(&formatted)));
        assert_eq!(formatted.get(), 1);
    }
}
