//! Bounded mailboxes: one per component, limited in messages and bytes.

use std::collections::VecDeque;

use crate::message::Message;

/// What a component is given to handle, in arrival order.
#[derive(Debug)]
pub(crate) enum Item {
    Message(Message),
    Timer { token: u64 },
}

/// A component's queue. Timers do not count against the limits (each component
/// has its own timer limit); messages do, by count and by bytes.
#[derive(Debug)]
pub(crate) struct Mailbox {
    items: VecDeque<Item>,
    messages: usize,
    bytes: usize,
    pub(crate) len_max: usize,
    pub(crate) bytes_max: usize,
    pub(crate) len_peak: usize,
}

impl Mailbox {
    pub(crate) fn new(len_max: usize, bytes_max: usize) -> Mailbox {
        Mailbox {
            items: VecDeque::new(),
            messages: 0,
            bytes: 0,
            len_max,
            bytes_max,
            len_peak: 0,
        }
    }

    /// Queues a message, or hands it back if the mailbox is full.
    pub(crate) fn try_push(&mut self, message: Message) -> Result<(), Message> {
        let size = message.size_bytes();
        if self.messages >= self.len_max || self.bytes + size > self.bytes_max {
            return Err(message);
        }
        self.messages += 1;
        self.bytes += size;
        self.len_peak = self.len_peak.max(self.messages);
        self.items.push_back(Item::Message(message));
        Ok(())
    }

    /// Queues a message past the limits (still counted). Only for responses,
    /// which are bounded by the pending-request limit.
    pub(crate) fn push_unbounded(&mut self, message: Message) {
        self.messages += 1;
        self.bytes += message.size_bytes();
        self.len_peak = self.len_peak.max(self.messages);
        self.items.push_back(Item::Message(message));
    }

    pub(crate) fn push_timer(&mut self, token: u64) {
        self.items.push_back(Item::Timer { token });
    }

    pub(crate) fn pop(&mut self) -> Option<Item> {
        let item = self.items.pop_front()?;
        if let Item::Message(message) = &item {
            self.messages -= 1;
            self.bytes -= message.size_bytes();
        }
        Some(item)
    }

    /// Messages queued (timers not counted).
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
    use crate::ids::{Address, ComponentId, CorrelationId, Name, NodeId};
    use crate::message::{ContentType, Header, Horizon, Kind, TraceContext};
    use bytes::Bytes;

    pub(crate) fn message(payload_len: usize) -> Message {
        let header = Header {
            id: 1,
            name: Name::new("t.x"),
            kind: Kind::Send,
            source: Address {
                node: NodeId(1),
                component: ComponentId(0),
            },
            target: None,
            correlation: CorrelationId(0),
            flow: None,
            horizon: Horizon::Unspecified,
            deadline: None,
            trace: TraceContext::default(),
            hops: Default::default(),
            content_type: ContentType::Raw,
            bounce: None,
        };
        Message::from_parts(header, Bytes::from(vec![0; payload_len]))
    }

    #[test]
    fn bounded_by_count_and_bytes() {
        let mut mailbox = Mailbox::new(2, 10_000);
        assert!(mailbox.try_push(message(1)).is_ok());
        mailbox.push_timer(7);
        assert!(mailbox.try_push(message(1)).is_ok());
        assert!(
            mailbox.try_push(message(1)).is_err(),
            "third message over len_max"
        );
        assert_eq!(
            (mailbox.len(), mailbox.items.len(), mailbox.len_peak),
            (2, 3, 2)
        );
        assert!(matches!(mailbox.pop(), Some(Item::Message(_))));
        assert!(matches!(mailbox.pop(), Some(Item::Timer { token: 7 })));

        let mut mailbox = Mailbox::new(100, 200);
        assert!(mailbox.try_push(message(100)).is_ok());
        assert!(mailbox.try_push(message(100)).is_err(), "over bytes_max");
        mailbox.pop();
        assert_eq!(mailbox.bytes(), 0);
    }
}
