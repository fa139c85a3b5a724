//! What arrives at a node and how it ends there: frames decoded and admitted
//! to a mailbox, or refused — bounced to their sender with a reason, or
//! dropped and counted — and the bounces themselves.

use std::time::Duration;

use bytes::Bytes;
use smallvec::smallvec;

use super::output::{Event, Output, TraceOutcome, TraceRecord};
use super::pending::Pending;
use super::queue::Admit;
use super::{Node, State};
use crate::codec::{HEADER_BYTES_MAX, decode_header, decode_header_into};
use crate::ids::{Address, ComponentId, CorrelationId, NodeId};
use crate::message::{Bounce, BounceReason, Header, Hop, Kind, Message};
use crate::stats::DropReason;
use crate::transport::{Transmit, TransmitError};

impl Node {
    /// A frame pair from `from`. Frames over the size limit, frames that do not
    /// decode and misaddressed frames are dropped and counted; nothing panics.
    pub(super) fn take_frame(&mut self, from: NodeId, header: &[u8], payload: Bytes) {
        let _ = from;
        self.stats.frames_in += 1;
        if self.state == State::Stopped {
            self.stats.outcomes.drop(DropReason::Shutdown);
            return;
        }
        if header.len() > HEADER_BYTES_MAX || payload.len() > self.config.message_bytes_max {
            self.stats.outcomes.drop(DropReason::TooLarge);
            return;
        }
        let mut boxed = self.minter.spare_header();
        let route = match decode_header_into(header, &self.router, &mut boxed) {
            Ok(route) => route,
            Err(_) => {
                self.minter.recycle(boxed);
                return self.stats.outcomes.drop(DropReason::Malformed);
            }
        };
        let message = Message {
            header: boxed,
            payload,
        };
        match (message.header.target, message.header.kind) {
            (Some(target), _) if target.node != self.id => {
                self.stats.outcomes.drop(DropReason::Malformed);
            }
            (Some(target), _) => self.deliver_local(target.component, message),
            (None, Kind::Publish) => self.publish_local(message, route),
            (None, Kind::Send | Kind::Request) => {
                let queue = &self.queue;
                let queue_len = |c: ComponentId| queue.len_of(c);
                match route.and_then(|route| self.router.pick_local(route, queue_len)) {
                    Some(component) => self.deliver_local(component, message),
                    None => self.refuse_at_node(
                        message,
                        BounceReason::NoHandler,
                        "no component here handles this name",
                    ),
                }
            }
            (None, _) => self.stats.outcomes.drop(DropReason::Malformed),
        }
    }

    pub(super) fn take_undecodable(&mut self) {
        self.stats.frames_in += 1;
        self.stats.outcomes.drop(DropReason::Malformed);
    }

    pub(super) fn transmit_failed(&mut self, transmit: Transmit, error: TransmitError) {
        self.stats.transmit_failed += 1;
        let Ok(header) = decode_header(&transmit.header, &self.router) else {
            return self.stats.outcomes.drop(DropReason::Malformed);
        };
        let message = Message {
            header: self.minter.boxed(header),
            payload: transmit.payload,
        };
        let (reason, detail) = match error {
            TransmitError::WouldBlock => (BounceReason::Overloaded, "the peer's queue is full"),
            TransmitError::Unreachable => (BounceReason::NoHandler, "the peer is unreachable"),
        };
        self.refuse_at_node(message, reason, detail);
    }

    /// Admission: count, settle responses against pending requests, queue or refuse.
    pub(super) fn deliver_local(&mut self, id: ComponentId, message: Message) {
        let Some(slot) = self.slots.get_mut(id.index()) else {
            return self.refuse_at_node(message, BounceReason::NoHandler, "no such component");
        };
        slot.stats.accepted += 1;
        if let Some(bounce) = &message.header.bounce {
            slot.stats.returned.bounce(bounce.reason);
        }
        if self.state == State::Stopped {
            // Nothing runs any more: what still arrives (a bounce of something
            // sent before the stop, say) ends here, counted.
            return self.drop_counted(id, &message, DropReason::Shutdown);
        }
        if message.header.is_response() {
            let Some(pending) = self.pending.settle(message.header.correlation, id) else {
                return self.drop_counted(id, &message, DropReason::LateReply);
            };
            let stats = &mut self.slots[id.index()].stats;
            stats.responses_received += 1;
            stats.replies_received += u64::from(message.header.kind == Kind::Reply);
            stats.record_response_time(self.now.saturating_since(pending.sent));
            // A response is admitted past the mailbox limits: there is at most one
            // per pending request, and pending requests are bounded. This is what
            // lets every request end in a reply or a bounce even under overload.
            let size = message.size_bytes();
            return self.enqueue(id, size, message);
        }
        let size = message.size_bytes();
        match self.queue.admit(id, size, self.now) {
            Admit::Yes => self.enqueue(id, size, message),
            // The defect the accounting checks must catch: gone, uncounted.
            Admit::Full if self.sabotaged() => {}
            Admit::Full => {
                let retry_after = self.queue.retry_after(id, self.now);
                let (reason, detail) = (BounceReason::Overloaded, "mailbox full");
                self.refuse_with(id, message, reason, detail, Some(retry_after));
            }
            Admit::Throttled(wait_us) => {
                let retry_after = Some(Duration::from_micros(wait_us));
                let (reason, detail) = (BounceReason::Throttled, "over the admission rate");
                self.refuse_with(id, message, reason, detail, retry_after);
            }
        }
    }

    /// Queues an admitted message; reports congestion if it began.
    #[inline(always)]
    pub(super) fn enqueue(&mut self, id: ComponentId, size: usize, message: Message) {
        if self.queue.push_message(id, size, message) {
            self.congestion(id, true);
        }
    }

    /// A component refuses a message: bounce it if it may be bounced, else drop it.
    pub(super) fn refuse(
        &mut self,
        id: ComponentId,
        message: Message,
        reason: BounceReason,
        detail: &str,
    ) {
        self.refuse_with(id, message, reason, detail, None);
    }

    /// [`Node::refuse`] with a retry-after hint for the bounce.
    pub(super) fn refuse_with(
        &mut self,
        id: ComponentId,
        message: Message,
        reason: BounceReason,
        detail: &str,
        retry_after: Option<Duration>,
    ) {
        if message.header.is_bounceable() {
            self.slots[id.index()].stats.outcomes.bounce(reason);
            self.trace(id, &message, TraceOutcome::Bounced(reason));
            let by = Address {
                node: self.id,
                component: id,
            };
            let bounce = Bounce::new(reason, detail).with_retry_after(retry_after);
            self.bounce(message, bounce, by);
        } else {
            self.drop_counted(id, &message, DropReason::for_bounce(reason));
        }
    }

    /// The node refuses a message no component took.
    pub(super) fn refuse_at_node(&mut self, message: Message, reason: BounceReason, detail: &str) {
        let by = Address {
            node: self.id,
            component: ComponentId::NODE,
        };
        if message.header.is_bounceable() {
            self.stats.outcomes.bounce(reason);
            self.bounce(message, Bounce::new(reason, detail), by);
        } else {
            self.stats.outcomes.drop(DropReason::for_bounce(reason));
        }
    }

    pub(super) fn drop_counted(&mut self, id: ComponentId, message: &Message, reason: DropReason) {
        self.slots[id.index()].stats.outcomes.drop(reason);
        self.trace(id, message, TraceOutcome::Dropped(reason));
    }

    fn bounce(&mut self, message: Message, bounce: Box<Bounce>, by: Address) {
        let Message {
            mut header,
            payload,
        } = message;
        header.id = self.minter.message_id();
        header.kind = Kind::Bounce;
        header.target = Some(header.source);
        header.source = by;
        header.deadline = None;
        header.trace = self.minter.trace_child(Some(header.trace));
        if header
            .hops
            .last()
            .is_none_or(|hop| hop.node != by.node || hop.component != by.component)
        {
            header.push_hop(Hop {
                node: by.node,
                component: by.component,
                at: self.now,
            });
        }
        header.bounce = Some(bounce);
        self.route(Message { header, payload }, None);
    }

    /// A request got nothing in time: the requester gets an `Expired` bounce.
    pub(super) fn expire(&mut self, correlation: CorrelationId, pending: Pending) {
        let node = Address {
            node: self.id,
            component: ComponentId::NODE,
        };
        let header = Header {
            id: self.minter.message_id(),
            name: pending.name,
            kind: Kind::Bounce,
            source: node,
            target: Some(Address {
                node: self.id,
                component: pending.component,
            }),
            correlation,
            flow: None,
            horizon: Default::default(),
            deadline: None,
            trace: self.minter.trace_child(Some(pending.trace)),
            hops: smallvec![Hop {
                node: self.id,
                component: ComponentId::NODE,
                at: self.now
            }],
            content_type: Default::default(),
            bounce: Some(Bounce::new(
                BounceReason::Expired,
                "no reply before the deadline",
            )),
        };
        let stats = &mut self.slots[pending.component.index()].stats;
        stats.accepted += 1;
        stats.responses_received += 1;
        stats.returned.bounce(BounceReason::Expired);
        let message = Message {
            header: self.minter.boxed(header),
            payload: Bytes::new(),
        };
        let size = message.size_bytes();
        self.enqueue(pending.component, size, message);
    }

    #[inline]
    pub(super) fn trace(&mut self, id: ComponentId, message: &Message, outcome: TraceOutcome) {
        if message.header.trace.sampled {
            self.record_trace(id, message, outcome);
        }
    }

    #[cold]
    fn record_trace(&mut self, id: ComponentId, message: &Message, outcome: TraceOutcome) {
        let record = TraceRecord {
            at: Address {
                node: self.id,
                component: id,
            },
            time: self.now,
            header: (*message.header).clone(),
            payload: message.payload.clone(),
            outcome,
        };
        self.outputs
            .push_back(Output::Event(Event::Traced(Box::new(record))));
    }
}
