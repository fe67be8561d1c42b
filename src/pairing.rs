//! Where the PRE and the POST half of a bucket meet.
//!
//! A recorder that publishes a segment offers it here as a half. The two halves of a pair are
//! the files of one call, station, bucket and file index under the `PRE` and the `POST`
//! directory: their paths differ only in the tap component (see [`crate::layout`]), so the
//! path without it is the pair's key. The first half waits; the second takes it, and the pair
//! is complete. A half whose partner does not come (one tap recorded, a partner in another
//! process, a partner given up) is forgotten after [`MAX_WAIT`], or the oldest first once
//! [`MAX_WAITING`] halves wait, and handed back so that its recorder can count it: the memory
//! for waiting halves is bounded however the recorders behave.
//!
//! Mutex order: `waiting` is a leaf of the element level (crate::lock_order::Level::Pairs):
//! nothing else is taken while it is held.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::layout::Tap;
use crate::lock_order::{Level, OrderedMutex};

/// How long a half waits for its partner. Both taps of a bucket are published within a
/// flush interval or two of each other, whatever the segment duration; a minute also covers a
/// partner whose disk was slow for a while.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// How many halves may wait at once in the process: 4,096 recorders publishing within the
/// same minute without partner. What waits is a path and a few counters.
pub const MAX_WAITING: usize = 4_096;

/// The key of the pair `location` is a half of: its path without the tap directory. `None` for
/// a path that is not `…/<PRE|POST>/<file>`.
pub fn pair_key(location: &Path) -> Option<(Tap, PathBuf)> {
    let file = location.file_name()?;
    let tap_dir = location.parent()?;
    let tap = Tap::try_from(tap_dir.file_name()?.to_str()?).ok()?;
    Some((tap, tap_dir.parent()?.join(file)))
}

/// A complete pair.
#[derive(Debug, PartialEq, Eq)]
pub struct Pair<T> {
    /// The half of the PRE tap.
    pub pre: T,
    /// The half of the POST tap.
    pub post: T,
}

struct Waiting<T> {
    halves: HashMap<PathBuf, (Tap, u64, T)>,
    /// Keys in the order their halves came, with when, and a number telling a half apart from
    /// a later one of the same key.
    order: VecDeque<(Instant, u64, PathBuf)>,
    next: u64,
}

/// The halves waiting in a process (or, in tests, in one meeting place).
pub struct Meeting<T> {
    waiting: OrderedMutex<Option<Waiting<T>>>,
}

impl<T> Default for Meeting<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Meeting<T> {
    /// An empty meeting place.
    pub const fn new() -> Self {
        Meeting {
            waiting: OrderedMutex::new(Level::Pairs, None),
        }
    }

    /// Offers the half published at `location` at `now`: the complete pair if its partner
    /// waited, else `None` and the half waits. Halves forgotten meanwhile (too old, too many, or
    /// replaced by a later half of the same tap and key) are pushed onto `forgotten`.
    pub fn offer(
        &self,
        location: &Path,
        now: Instant,
        half: T,
        forgotten: &mut Vec<T>,
    ) -> Option<Pair<T>> {
        let Some((tap, key)) = pair_key(location) else {
            forgotten.push(half);
            return None;
        };
        let mut guard = self.waiting.lock();
        let waiting = guard.get_or_insert_with(|| Waiting {
            halves: HashMap::new(),
            order: VecDeque::new(),
            next: 0,
        });
        waiting.forget_old(now, forgotten);
        if let Some((other_tap, _, _)) = waiting.halves.get(&key)
            && *other_tap != tap
        {
            let (_, _, other) = waiting.halves.remove(&key).expect("just looked up");
            return Some(match tap {
                Tap::Pre => Pair {
                    pre: half,
                    post: other,
                },
                Tap::Post => Pair {
                    pre: other,
                    post: half,
                },
            });
        }
        let id = waiting.next;
        waiting.next += 1;
        if let Some((_, _, replaced)) = waiting.halves.insert(key.clone(), (tap, id, half)) {
            forgotten.push(replaced);
        }
        waiting.order.push_back((now, id, key));
        while waiting.halves.len() > MAX_WAITING {
            waiting.forget_oldest(forgotten);
        }
        None
    }

    /// How many halves wait.
    pub fn waiting(&self) -> usize {
        self.waiting.lock().as_ref().map_or(0, |w| w.halves.len())
    }
}

impl<T> Waiting<T> {
    /// Forgets the halves that waited [`MAX_WAIT`] or longer at `now`.
    fn forget_old(&mut self, now: Instant, forgotten: &mut Vec<T>) {
        while self
            .order
            .front()
            .is_some_and(|(at, _, _)| now.saturating_duration_since(*at) >= MAX_WAIT)
        {
            self.forget_oldest(forgotten);
        }
    }

    /// Forgets the oldest half still waiting (entries of halves taken or replaced are skipped).
    fn forget_oldest(&mut self, forgotten: &mut Vec<T>) {
        while let Some((_, id, key)) = self.order.pop_front() {
            if self
                .halves
                .get(&key)
                .is_some_and(|(_, current, _)| *current == id)
            {
                let (_, _, half) = self.halves.remove(&key).expect("just looked up");
                forgotten.push(half);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(tap: &str, bucket: u64) -> PathBuf {
        PathBuf::from(format!(
            "/rec/1970-01-01/call/stt/{tap}/segment_{bucket}.wav"
        ))
    }

    #[test]
    fn the_second_half_completes_the_pair_whichever_tap_comes_first() {
        let meeting = Meeting::new();
        let now = Instant::now();
        let mut forgotten = Vec::new();
        assert_eq!(
            meeting.offer(&path("POST", 0), now, "post 0", &mut forgotten),
            None
        );
        assert_eq!(
            meeting.offer(&path("PRE", 5_000), now, "pre 5", &mut forgotten),
            None
        );
        assert_eq!(
            meeting.offer(&path("PRE", 0), now, "pre 0", &mut forgotten),
            Some(Pair {
                pre: "pre 0",
                post: "post 0"
            })
        );
        assert_eq!(
            meeting.offer(&path("POST", 5_000), now, "post 5", &mut forgotten),
            Some(Pair {
                pre: "pre 5",
                post: "post 5"
            })
        );
        assert!(forgotten.is_empty());
        assert_eq!(meeting.waiting(), 0);
    }

    #[test]
    fn halves_of_other_calls_buckets_or_files_do_not_pair() {
        let meeting = Meeting::new();
        let now = Instant::now();
        let mut forgotten = Vec::new();
        let other = [
            "/rec/1970-01-01/call-2/stt/POST/segment_0.wav",
            "/rec/1970-01-01/call/tts/POST/segment_0.wav",
            "/rec/1970-01-02/call/stt/POST/segment_0.wav",
            "/rec/1970-01-01/call/stt/POST/segment_0-1.wav",
            "/rec/1970-01-01/call/stt/POST/segment_5000.wav",
        ];
        assert_eq!(meeting.offer(&path("PRE", 0), now, 0, &mut forgotten), None);
        for (i, p) in other.iter().enumerate() {
            assert_eq!(
                meeting.offer(Path::new(p), now, i + 1, &mut forgotten),
                None
            );
        }
        // A second half of the same tap replaces the first, which is forgotten.
        assert_eq!(meeting.offer(&path("PRE", 0), now, 9, &mut forgotten), None);
        assert_eq!(forgotten, [0]);
        assert_eq!(meeting.waiting(), 6);
    }

    #[test]
    fn waiting_is_bounded_in_time_and_number() {
        let meeting = Meeting::new();
        let start = Instant::now();
        let mut forgotten = Vec::new();
        meeting.offer(&path("PRE", 0), start, 0, &mut forgotten);
        // A partner later than MAX_WAIT finds nothing: the half was forgotten.
        let late = start + MAX_WAIT;
        assert_eq!(
            meeting.offer(&path("POST", 0), late, 1, &mut forgotten),
            None
        );
        assert_eq!(forgotten, [0]);
        forgotten.clear();
        for bucket in 1..=MAX_WAITING as u64 + 10 {
            meeting.offer(&path("PRE", bucket), late, bucket, &mut forgotten);
        }
        assert_eq!(meeting.waiting(), MAX_WAITING);
        // The oldest went first: the POST half of bucket 0, then PRE 1 to 10.
        assert_eq!(forgotten, [1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    }

    #[test]
    fn a_path_outside_the_layout_is_handed_back() {
        let meeting = Meeting::new();
        let mut forgotten = Vec::new();
        let odd = Path::new("/rec/segment_0.wav");
        assert_eq!(meeting.offer(odd, Instant::now(), 7, &mut forgotten), None);
        assert_eq!(forgotten, [7]);
        assert_eq!(meeting.waiting(), 0);
    }
}
