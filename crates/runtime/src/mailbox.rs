//! Bounded mailboxes. All of a node's queued work sits in one first-come,
//! first-served queue; each component's mailbox is its share of that queue,
//! bounded in messages and bytes.

use crate::ids::ComponentId;
use crate::message::Message;

/// What a component is given to handle, in arrival order.
#[derive(Debug)]
pub(crate) enum Item {
    Message(Message),
    Timer { token: u64 },
}

/// The node's queue: items in arrival order, each for one component, with the
/// size it was admitted at (so it is computed once).
pub(crate) type RunQueue = std::collections::VecDeque<(ComponentId, usize, Item)>;

/// A component's share of the run queue: counted and bounded. Timers do not
/// count (each component has its own timer limit); messages do, by count and bytes.
#[derive(Debug)]
pub(crate) struct Mailbox {
    messages: usize,
    /// Of `messages`, responses (admitted past the limits).
    responses: usize,
    bytes: usize,
    pub(crate) len_max: usize,
    pub(crate) bytes_max: usize,
    pub(crate) len_peak: usize,
}

impl Mailbox {
    pub(crate) fn new(len_max: usize, bytes_max: usize) -> Mailbox {
        Mailbox {
            messages: 0,
            responses: 0,
            bytes: 0,
            len_max,
            bytes_max,
            len_peak: 0,
        }
    }

    /// Whether a message of `size` bytes fits.
    pub(crate) fn admits(&self, size: usize) -> bool {
        self.messages < self.len_max && self.bytes + size <= self.bytes_max
    }

    /// Counts a queued message (whether or not it fit: responses are admitted
    /// past the limits).
    pub(crate) fn add(&mut self, size: usize, response: bool) {
        self.messages += 1;
        self.responses += usize::from(response);
        self.bytes += size;
        self.len_peak = self.len_peak.max(self.messages);
    }

    /// Uncounts a message leaving the queue.
    pub(crate) fn remove(&mut self, size: usize, response: bool) {
        self.messages -= 1;
        self.responses -= usize::from(response);
        self.bytes -= size;
    }

    /// Whether what was admitted under the limits is within them (responses,
    /// admitted past them, aside).
    pub(crate) fn within_bounds(&self) -> bool {
        self.messages - self.responses <= self.len_max
    }

    /// Messages queued.
    pub(crate) fn len(&self) -> usize {
        self.messages
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_by_count_and_bytes() {
        let mut mailbox = Mailbox::new(2, 1_000);
        assert!(mailbox.admits(100));
        mailbox.add(100, false);
        mailbox.add(100, false);
        assert!(!mailbox.admits(1), "a third message is over len_max");
        mailbox.remove(100, false);
        assert!(mailbox.admits(100));
        assert!(!mailbox.admits(901), "over bytes_max");
        mailbox.add(100, false);
        mailbox.add(100, false);
        assert_eq!(
            (mailbox.len(), mailbox.bytes(), mailbox.len_peak),
            (3, 300, 3)
        );
    }
}
