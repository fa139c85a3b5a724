//! The run queue and the mailboxes it is made of. All of a node's queued work
//! sits in one first-come, first-served queue; each component's mailbox is its
//! share of that queue, bounded in messages and bytes. The queue keeps the
//! mailboxes' counts itself, as items come and go, so they cannot drift from
//! what is queued.

use std::collections::VecDeque;

use crate::ids::ComponentId;
use crate::message::Message;

/// What a component is given to handle, in arrival order.
#[derive(Debug)]
pub(crate) enum Item {
    Message(Message),
    Timer { token: u64 },
}

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
    fn new(len_max: usize, bytes_max: usize) -> Mailbox {
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
    #[inline]
    fn admits(&self, size: usize) -> bool {
        self.messages < self.len_max && self.bytes + size <= self.bytes_max
    }

    #[inline]
    fn add(&mut self, size: usize, response: bool) {
        self.messages += 1;
        self.responses += usize::from(response);
        self.bytes += size;
        self.len_peak = self.len_peak.max(self.messages);
    }

    #[inline]
    fn remove(&mut self, size: usize, response: bool) {
        debug_assert!(
            self.messages > 0 && self.bytes >= size,
            "uncounting {size} bytes from {self:?}"
        );
        debug_assert!(
            !response || self.responses > 0,
            "uncounting a response from {self:?}"
        );
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

    /// Bytes queued.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

/// The node's queue: items in arrival order, each for one component, with the
/// size a message was admitted at (computed once), and every component's
/// mailbox counts, which only its push and pop change.
#[derive(Debug, Default)]
pub(crate) struct RunQueue {
    items: VecDeque<(ComponentId, usize, Item)>,
    mailboxes: Vec<Mailbox>,
}

impl RunQueue {
    /// Adds the mailbox of the next component (ids are given in order).
    pub(crate) fn add_mailbox(&mut self, len_max: usize, bytes_max: usize) {
        self.mailboxes.push(Mailbox::new(len_max, bytes_max));
    }

    pub(crate) fn mailbox(&self, id: ComponentId) -> &Mailbox {
        &self.mailboxes[id.index()]
    }

    /// Messages queued for `id`; 0 for a component that does not exist.
    #[inline]
    pub(crate) fn len_of(&self, id: ComponentId) -> usize {
        self.mailboxes.get(id.index()).map_or(0, Mailbox::len)
    }

    /// Whether `id`'s mailbox has room for a message of `size` bytes.
    #[inline]
    pub(crate) fn admits(&self, id: ComponentId, size: usize) -> bool {
        self.mailboxes[id.index()].admits(size)
    }

    /// Queues a message of `size` bytes (its [`Message::size_bytes`]) for
    /// `id`, counted in its mailbox whether or not it fit (responses are
    /// admitted past the limits; the caller decides).
    #[inline(always)]
    pub(crate) fn push_message(&mut self, id: ComponentId, size: usize, message: Message) {
        debug_assert_eq!(size, message.size_bytes());
        self.mailboxes[id.index()].add(size, message.header.is_response());
        self.items.push_back((id, size, Item::Message(message)));
    }

    /// Queues a timer turn for `id` (not counted in its mailbox).
    #[inline]
    pub(crate) fn push_timer(&mut self, id: ComponentId, token: u64) {
        self.items.push_back((id, 0, Item::Timer { token }));
    }

    /// Takes the next item, uncounting it from its mailbox.
    #[inline(always)]
    pub(crate) fn pop(&mut self) -> Option<(ComponentId, Item)> {
        let (id, size, item) = self.items.pop_front()?;
        if let Item::Message(message) = &item {
            self.mailboxes[id.index()].remove(size, message.header.is_response());
        }
        Some((id, item))
    }

    /// Items queued (messages and timer turns).
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::ids::Name;
    use crate::message::{Header, Kind};

    fn message(payload: usize) -> Message {
        let mut header = Header::blank();
        header.name = Name::new("t.t");
        header.kind = Kind::Send;
        Message {
            header: Box::new(header),
            payload: Bytes::from(vec![0; payload]),
        }
    }

    #[test]
    fn mailboxes_are_bounded_by_count_and_bytes() {
        let mut queue = RunQueue::default();
        let id = ComponentId(0);
        let size = message(100).size_bytes();
        queue.add_mailbox(2, 4 * size);
        assert!(queue.admits(id, size));
        queue.push_message(id, size, message(100));
        queue.push_timer(id, 7);
        queue.push_message(id, size, message(100));
        assert!(!queue.admits(id, 1), "a third message is over len_max");
        assert!(matches!(queue.pop(), Some((_, Item::Message(_)))));
        assert!(queue.admits(id, size));
        assert!(!queue.admits(id, 3 * size + 1), "over bytes_max");
        assert!(matches!(queue.pop(), Some((_, Item::Timer { token: 7 }))));
        queue.push_message(id, size, message(100));
        queue.push_message(id, size, message(100));
        let mailbox = queue.mailbox(id);
        assert_eq!(
            (mailbox.len(), mailbox.bytes(), mailbox.len_peak),
            (3, 3 * size, 3)
        );
    }
}
