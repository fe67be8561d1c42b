//! What retention removes, decided without touching a file.
//!
//! A [`Plan`] is offered a base directory's buckets oldest first (each bucket being every file
//! of one call, station and bucket start, PRE and POST together) and says of each whether it
//! goes, stays, or whether the walk can stop. A bucket goes when it ended longer than
//! `max_age` ago, or while the segments exceed `max_bytes` or the file system has less than
//! `min_free` bytes free, counting what was already given to removal. A protected bucket never
//! goes, and is asked about only when it would otherwise go, so the caller can look protection
//! up lazily: a bucket [`Protection::Kept`] is passed over and newer ones may go in its stead;
//! a bucket [`Protection::Held`] (one whose bucket start a recorder is writing again) ends the
//! pass, since it will be free to go in a moment and newer buckets should not go before it.
//! Both the recorders' pass and the offline program drive a `Plan`.

use std::time::{Duration, SystemTime};

/// Retention limits; 0 (or a zero duration) turns a limit off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Bytes the segments under the base directory may take.
    pub max_bytes: u64,
    /// How long after its bucket ended a segment may stay.
    pub max_age: Duration,
    /// Bytes to keep free on the file system of the base directory.
    pub min_free: u64,
    /// Keep every segment not yet confirmed uploaded (uploads are on).
    pub keep_unuploaded: bool,
}

impl Limits {
    /// Whether no limit is set: retention does nothing.
    pub fn is_off(&self) -> bool {
        self.max_bytes == 0 && self.max_age.is_zero() && self.min_free == 0
    }

    /// The strictest of `self` and `other`, limit by limit: the smaller size and age of those
    /// set, the larger free space, and unconfirmed uploads kept if either keeps them.
    pub fn strictest(self, other: Limits) -> Limits {
        fn smallest_set<T: Ord + Default + Copy>(a: T, b: T) -> T {
            match (a == T::default(), b == T::default()) {
                (true, _) => b,
                (_, true) => a,
                _ => a.min(b),
            }
        }
        Limits {
            max_bytes: smallest_set(self.max_bytes, other.max_bytes),
            max_age: smallest_set(self.max_age, other.max_age),
            min_free: self.min_free.max(other.min_free),
            keep_unuploaded: self.keep_unuploaded || other.keep_unuploaded,
        }
    }

    /// Bytes to remove for the size limits, given `bytes` of segments and `free` bytes free on
    /// the file system (`None`: not known, the free-space limit is not applied).
    pub fn excess(&self, bytes: u64, free: Option<u64>) -> u64 {
        let over_size = if self.max_bytes > 0 {
            bytes.saturating_sub(self.max_bytes)
        } else {
            0
        };
        let under_free = match free {
            Some(free) if self.min_free > 0 => self.min_free.saturating_sub(free),
            _ => 0,
        };
        over_size.max(under_free)
    }
}

/// Whether a bucket may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protection {
    /// It may go.
    None,
    /// It stays; newer buckets may go instead.
    Kept,
    /// It stays for a moment; nothing newer goes before it.
    Held,
}

/// What becomes of a bucket offered to a [`Plan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Remove it.
    Remove,
    /// It would go, but it is protected: keep it and offer the next.
    Protected,
    /// Neither it nor any newer bucket goes: stop.
    Stop,
}

/// Why a plan could not meet its limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unmet {
    /// Bytes that should have gone and could not.
    pub excess: u64,
    /// Buckets that would have gone but were protected.
    pub protected: u64,
}

/// One pass of removals over buckets offered oldest first.
#[derive(Debug)]
pub struct Plan {
    max_age: Duration,
    now: SystemTime,
    /// Bytes still to remove.
    excess: u64,
    /// Buckets kept because they were protected.
    protected: u64,
    /// A held bucket ended the plan.
    held: bool,
}

impl Plan {
    /// A plan for `bytes` of segments with `free` bytes free, at `now`.
    pub fn new(limits: &Limits, bytes: u64, free: Option<u64>, now: SystemTime) -> Plan {
        Plan {
            max_age: limits.max_age,
            now,
            excess: limits.excess(bytes, free),
            protected: 0,
            held: false,
        }
    }

    /// Whether anything may need to go at all: some bytes are in excess, or an age is set.
    pub fn needed(&self) -> bool {
        self.excess > 0 || !self.max_age.is_zero()
    }

    /// The next oldest bucket: `bytes` in its files, its last file `ended` then, and
    /// `protected` asked only if it would go otherwise.
    pub fn offer(
        &mut self,
        bytes: u64,
        ended: SystemTime,
        protected: impl FnOnce() -> Protection,
    ) -> Verdict {
        let expired = !self.max_age.is_zero()
            && self
                .now
                .duration_since(ended)
                .is_ok_and(|age| age > self.max_age);
        if !expired && self.excess == 0 {
            return Verdict::Stop;
        }
        match protected() {
            Protection::None => (),
            Protection::Kept => {
                self.protected += 1;
                return Verdict::Protected;
            }
            Protection::Held => {
                self.protected += 1;
                self.held = true;
                return Verdict::Stop;
            }
        }
        self.excess = self.excess.saturating_sub(bytes);
        Verdict::Remove
    }

    /// Whether a held bucket stopped the plan.
    pub fn held(&self) -> bool {
        self.held
    }

    /// Once every bucket was offered (or the plan said stop): whether the size limits stay
    /// unmet, and by how much.
    pub fn unmet(&self) -> Option<Unmet> {
        (self.excess > 0).then_some(Unmet {
            excess: self.excess,
            protected: self.protected,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1_000_000;

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(s)
    }

    /// Offers `(bytes, ended, protected)` buckets in order; the indices removed and the
    /// verdicts until the plan stopped.
    fn run(plan: &mut Plan, buckets: &[(u64, u64, bool)]) -> (Vec<usize>, usize) {
        let mut removed = Vec::new();
        let mut offered = 0;
        for (i, &(bytes, ended, protected)) in buckets.iter().enumerate() {
            offered += 1;
            let protection = if protected {
                Protection::Kept
            } else {
                Protection::None
            };
            match plan.offer(bytes, at(ended), || protection) {
                Verdict::Remove => removed.push(i),
                Verdict::Protected => (),
                Verdict::Stop => break,
            }
        }
        (removed, offered)
    }

    #[test]
    fn the_oldest_buckets_go_until_the_size_fits() {
        let limits = Limits {
            max_bytes: 10 * MB,
            ..Limits::default()
        };
        let mut plan = Plan::new(&limits, 13 * MB + 1, None, at(1_000));
        let buckets = [
            (2 * MB, 1, false),
            (MB, 2, false),
            (MB, 3, false),
            (5 * MB, 4, false),
        ];
        let (removed, offered) = run(&mut plan, &buckets);
        // 2 + 1 MB leave 1 byte over: a third bucket goes, the fourth is not even looked at.
        assert_eq!(removed, [0, 1, 2]);
        assert_eq!(offered, 4);
        assert_eq!(plan.unmet(), None);
    }

    #[test]
    fn nothing_goes_within_the_limits() {
        let limits = Limits {
            max_bytes: 10 * MB,
            min_free: MB,
            ..Limits::default()
        };
        let mut plan = Plan::new(&limits, 10 * MB, Some(MB), at(1_000));
        assert!(!plan.needed());
        let (removed, offered) = run(&mut plan, &[(MB, 1, false)]);
        assert!(removed.is_empty());
        assert_eq!(offered, 1);
    }

    #[test]
    fn protected_buckets_are_passed_over_and_an_unmet_limit_is_told() {
        let limits = Limits {
            max_bytes: MB,
            ..Limits::default()
        };
        let mut plan = Plan::new(&limits, 4 * MB, None, at(1_000));
        let (removed, _) = run(
            &mut plan,
            &[(MB, 1, true), (MB, 2, false), (MB, 3, true), (MB, 4, true)],
        );
        assert_eq!(removed, [1]);
        assert_eq!(
            plan.unmet(),
            Some(Unmet {
                excess: 2 * MB,
                protected: 3
            })
        );
    }

    #[test]
    fn protection_is_asked_only_of_buckets_that_would_go() {
        let limits = Limits {
            max_bytes: 2 * MB,
            ..Limits::default()
        };
        let mut plan = Plan::new(&limits, 3 * MB, None, at(1_000));
        assert_eq!(plan.offer(MB, at(1), || Protection::None), Verdict::Remove);
        assert_eq!(
            plan.offer(MB, at(2), || panic!("asked about a bucket that stays")),
            Verdict::Stop
        );
    }

    #[test]
    fn a_held_bucket_ends_the_plan_before_anything_newer_goes() {
        let limits = Limits {
            max_bytes: MB,
            ..Limits::default()
        };
        let mut plan = Plan::new(&limits, 4 * MB, None, at(1_000));
        assert_eq!(plan.offer(MB, at(1), || Protection::None), Verdict::Remove);
        assert_eq!(
            plan.offer(MB, at(2), || Protection::Kept),
            Verdict::Protected
        );
        assert_eq!(plan.offer(MB, at(3), || Protection::Held), Verdict::Stop);
        assert!(plan.held());
        assert_eq!(
            plan.unmet(),
            Some(Unmet {
                excess: 2 * MB,
                protected: 2
            })
        );
    }

    #[test]
    fn buckets_older_than_the_age_go_and_newer_ones_stay() {
        let limits = Limits {
            max_age: Duration::from_secs(60),
            ..Limits::default()
        };
        let mut plan = Plan::new(&limits, 100 * MB, None, at(1_000));
        assert!(plan.needed());
        let (removed, offered) = run(
            &mut plan,
            &[
                (MB, 900, false),
                (MB, 939, true),
                (MB, 940, false),
                (MB, 990, false),
            ],
        );
        // 61 s old goes, 60 s old (exactly the age) stays and stops the walk.
        assert_eq!(removed, [0]);
        assert_eq!(offered, 3);
        // An age limit is never "unmet": protected old buckets just stay.
        assert_eq!(plan.unmet(), None);
    }

    #[test]
    fn a_bucket_from_the_future_is_not_old() {
        let limits = Limits {
            max_age: Duration::from_secs(1),
            ..Limits::default()
        };
        let mut plan = Plan::new(&limits, MB, None, at(1_000));
        assert_eq!(
            plan.offer(MB, at(5_000), || Protection::None),
            Verdict::Stop
        );
    }

    #[test]
    fn free_space_is_made_by_removing_the_oldest() {
        let limits = Limits {
            min_free: 5 * MB,
            ..Limits::default()
        };
        let mut plan = Plan::new(&limits, 100 * MB, Some(3 * MB), at(1_000));
        let (removed, _) = run(&mut plan, &[(MB, 1, false), (MB, 2, false), (MB, 3, false)]);
        assert_eq!(removed, [0, 1]);
        // Free space not known: that limit is not applied.
        let plan = Plan::new(&limits, 100 * MB, None, at(1_000));
        assert!(!plan.needed());
    }

    #[test]
    fn the_strictest_setting_wins_limit_by_limit() {
        let a = Limits {
            max_bytes: 10 * MB,
            max_age: Duration::ZERO,
            min_free: MB,
            keep_unuploaded: false,
        };
        let b = Limits {
            max_bytes: 0,
            max_age: Duration::from_secs(3_600),
            min_free: 3 * MB,
            keep_unuploaded: true,
        };
        let c = Limits {
            max_bytes: 4 * MB,
            max_age: Duration::from_secs(7_200),
            ..Limits::default()
        };
        let all = a.strictest(b).strictest(c);
        assert_eq!(
            all,
            Limits {
                max_bytes: 4 * MB,
                max_age: Duration::from_secs(3_600),
                min_free: 3 * MB,
                keep_unuploaded: true,
            }
        );
        assert_eq!(all, c.strictest(b).strictest(a));
        assert!(Limits::default().is_off());
        assert!(!all.is_off());
    }
}
