//! A cache bounded by a budget: each entry has a cost (bytes, say), and when the total passes
//! the budget the entries used least recently go until a quarter of it is free again.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};

/// See the module documentation.
pub struct Bounded<K, V> {
    inner: Mutex<Inner<K, V>>,
    budget: u64,
}

struct Inner<K, V> {
    entries: HashMap<K, Entry<V>>,
    total: u64,
    tick: u64,
}

struct Entry<V> {
    value: Arc<V>,
    cost: u64,
    used: u64,
}

impl<K: Hash + Eq + Clone, V> Bounded<K, V> {
    /// An empty cache holding at most `budget` in costs.
    pub fn new(budget: u64) -> Self {
        Bounded {
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                total: 0,
                tick: 0,
            }),
            budget,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<K, V>> {
        // The map stays whole whatever panicked while it was held.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The value kept for `key`, if any.
    pub fn get(&self, key: &K) -> Option<Arc<V>> {
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        let entry = inner.entries.get_mut(key)?;
        entry.used = tick;
        Some(entry.value.clone())
    }

    /// Keeps `value` for `key` at `cost`; a value costing more than the whole budget is not
    /// kept.
    pub fn insert(&self, key: K, value: Arc<V>, cost: u64) {
        if cost > self.budget {
            return;
        }
        let mut inner = self.lock();
        inner.tick += 1;
        let used = inner.tick;
        if let Some(old) = inner.entries.insert(key, Entry { value, cost, used }) {
            inner.total -= old.cost;
        }
        inner.total += cost;
        if inner.total > self.budget {
            let mut by_use: Vec<(u64, K)> = inner
                .entries
                .iter()
                .map(|(k, e)| (e.used, k.clone()))
                .collect();
            by_use.sort_unstable_by_key(|(used, _)| *used);
            for (_, k) in by_use {
                if inner.total <= self.budget / 4 * 3 {
                    break;
                }
                if let Some(e) = inner.entries.remove(&k) {
                    inner.total -= e.cost;
                }
            }
        }
    }

    /// What the entries kept cost together.
    #[cfg(test)]
    pub fn total(&self) -> u64 {
        self.lock().total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_least_recently_used_go_first_and_the_total_stays_in_budget() {
        let cache = Bounded::new(100);
        for k in 0..10u32 {
            cache.insert(k, Arc::new(k), 10);
        }
        assert_eq!(cache.total(), 100);
        assert!(cache.get(&0).is_some());
        cache.insert(10, Arc::new(10), 10);
        assert!(cache.total() <= 100);
        assert!(cache.get(&0).is_some(), "used recently");
        assert!(cache.get(&1).is_none(), "used least recently");
        assert!(cache.get(&10).is_some());
        cache.insert(99, Arc::new(99), 101);
        assert!(cache.get(&99).is_none());
        for k in 100..10_000u32 {
            cache.insert(k, Arc::new(k), 7);
            assert!(cache.total() <= 100);
        }
    }
}
