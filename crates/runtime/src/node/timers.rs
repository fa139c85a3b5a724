//! Component timers: by due time for firing, by (component, token) for
//! replacing and cancelling, and counted per component against its limit. One
//! type keeps the three in step.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use crate::ids::ComponentId;
use crate::time::Time;

/// Every timer of a node's components.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    /// (due, sequence) → (component, token); the sequence keeps timers due at
    /// the same time in the order they were set.
    by_time: BTreeMap<(Time, u64), (ComponentId, u64)>,
    by_token: FxHashMap<(ComponentId, u64), (Time, u64)>,
    /// Timers set, per component (by id).
    counts: Vec<usize>,
    next_seq: u64,
}

impl Timers {
    /// Makes room for the next component's count (ids are given in order).
    pub(crate) fn add_component(&mut self) {
        self.counts.push(0);
    }

    /// Sets `id`'s timer `token` to fire at `at`, replacing one with the same
    /// token. Returns false, and sets nothing, if `id` has `max` timers already.
    pub(crate) fn set(&mut self, id: ComponentId, at: Time, token: u64, max: usize) -> bool {
        self.cancel(id, token);
        if self.counts[id.index()] >= max {
            return false;
        }
        self.counts[id.index()] += 1;
        self.next_seq += 1;
        let key = (at, self.next_seq);
        self.by_time.insert(key, (id, token));
        self.by_token.insert((id, token), key);
        debug_assert_eq!(self.by_time.len(), self.by_token.len());
        true
    }

    /// Cancels `id`'s timer `token`, if set.
    pub(crate) fn cancel(&mut self, id: ComponentId, token: u64) {
        if let Some(key) = self.by_token.remove(&(id, token)) {
            let removed = self.by_time.remove(&key);
            debug_assert_eq!(removed, Some((id, token)));
            self.counts[id.index()] -= 1;
        }
        debug_assert_eq!(self.by_time.len(), self.by_token.len());
    }

    /// Cancels every timer of `id` (a component restarting).
    pub(crate) fn cancel_all_of(&mut self, id: ComponentId) {
        self.by_time.retain(|_, (component, _)| *component != id);
        self.by_token.retain(|(component, _), _| *component != id);
        self.counts[id.index()] = 0;
        debug_assert_eq!(self.by_time.len(), self.by_token.len());
    }

    /// Cancels every timer.
    pub(crate) fn clear(&mut self) {
        self.by_time.clear();
        self.by_token.clear();
        self.counts.iter_mut().for_each(|count| *count = 0);
    }

    /// The next timer due by `now`, removed: (component, token).
    pub(crate) fn pop_due(&mut self, now: Time) -> Option<(ComponentId, u64)> {
        let entry = self.by_time.first_entry()?;
        if entry.key().0 > now {
            return None;
        }
        let (id, token) = entry.remove();
        self.by_token.remove(&(id, token));
        self.counts[id.index()] -= 1;
        debug_assert_eq!(self.by_time.len(), self.by_token.len());
        Some((id, token))
    }

    /// When the next timer is due.
    pub(crate) fn next(&self) -> Option<Time> {
        self.by_time.first_key_value().map(|(key, _)| key.0)
    }

    /// Whether the three views agree.
    pub(crate) fn counts_agree(&self) -> bool {
        self.by_time.len() == self.by_token.len()
            && self.counts.iter().sum::<usize>() == self.by_time.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_replace_cancel_and_fire_in_order() {
        let mut timers = Timers::default();
        timers.add_component();
        timers.add_component();
        let (a, b) = (ComponentId(0), ComponentId(1));
        let t = Time::from_micros;
        assert!(timers.set(a, t(20), 1, 2));
        assert!(timers.set(b, t(10), 1, 2));
        assert!(timers.set(a, t(5), 1, 2), "same token: moved, not added");
        assert!(timers.set(a, t(30), 2, 2));
        assert!(!timers.set(a, t(40), 3, 2), "over the limit");
        assert_eq!(timers.next(), Some(t(5)));
        assert_eq!(timers.pop_due(t(10)), Some((a, 1)));
        assert_eq!(timers.pop_due(t(10)), Some((b, 1)));
        assert_eq!(timers.pop_due(t(10)), None);
        timers.cancel_all_of(a);
        assert_eq!(timers.next(), None);
        assert!(timers.counts_agree());
    }
}
