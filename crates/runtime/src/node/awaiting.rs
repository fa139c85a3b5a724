//! Messages waiting for a handler of their name to appear (`handler_wait`):
//! by end of the wait for bouncing, by name for releasing. One type keeps the
//! two in step.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use crate::ids::Name;
use crate::message::Message;
use crate::time::Time;

/// Every message of a node waiting for a handler.
#[derive(Debug, Default)]
pub(crate) struct HandlerWait {
    /// By (end of the wait, arrival).
    by_end: BTreeMap<(Time, u64), Message>,
    /// Their keys in `by_end`, by name, in arrival order.
    by_name: FxHashMap<Name, Vec<(Time, u64)>>,
    next_seq: u64,
}

impl HandlerWait {
    /// Keeps `message` until a handler of its name appears or `until`.
    pub(crate) fn insert(&mut self, until: Time, message: Message) {
        self.next_seq += 1;
        let key = (until, self.next_seq);
        self.by_name
            .entry(message.header.name.clone())
            .or_default()
            .push(key);
        self.by_end.insert(key, message);
    }

    /// A handler of `name` appeared: the messages waiting for one, in arrival order.
    pub(crate) fn release(&mut self, name: &str) -> Vec<Message> {
        let keys = self.by_name.remove(name).unwrap_or_default();
        let released: Vec<Message> = keys
            .into_iter()
            .filter_map(|key| self.by_end.remove(&key))
            .collect();
        debug_assert!(self.counts_agree());
        released
    }

    /// The next message whose wait ended by `now`, removed.
    pub(crate) fn pop_due(&mut self, now: Time) -> Option<Message> {
        let entry = self.by_end.first_entry()?;
        if entry.key().0 > now {
            return None;
        }
        let (key, message) = entry.remove_entry();
        if let Some(keys) = self.by_name.get_mut(&message.header.name) {
            keys.retain(|k| *k != key);
            if keys.is_empty() {
                self.by_name.remove(&message.header.name);
            }
        }
        debug_assert!(self.counts_agree());
        Some(message)
    }

    /// Every waiting message, removed (in order of the end of their wait).
    pub(crate) fn take_all(&mut self) -> Vec<Message> {
        self.by_name.clear();
        std::mem::take(&mut self.by_end).into_values().collect()
    }

    /// When the next wait ends.
    pub(crate) fn next(&self) -> Option<Time> {
        self.by_end.first_key_value().map(|((until, _), _)| *until)
    }

    pub(crate) fn len(&self) -> usize {
        self.by_end.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_end.is_empty()
    }

    /// Whether every waiting message is indexed by its name, once.
    pub(crate) fn counts_agree(&self) -> bool {
        self.by_name.values().map(Vec::len).sum::<usize>() == self.by_end.len()
    }
}
