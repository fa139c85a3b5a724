//! The run queue and the mailboxes it is made of. All of a node's queued work
//! sits in one first-come, first-served queue; each component's mailbox is its
//! share of that queue, bounded in messages and bytes. The queue keeps the
//! mailboxes' counts itself, as items come and go, so they cannot drift from
//! what is queued.

use std::collections::VecDeque;
use std::time::Duration;

use exchange_circuit::{Rate, TokenBucket};

use crate::ids::ComponentId;
use crate::message::{Header, Kind, Message};
use crate::time::Time;

/// What a component is given to handle, in arrival order.
#[derive(Debug)]
pub(crate) enum Item {
    Message(Message),
    Timer { token: u64 },
}

/// A component's share of the run queue: counted and bounded. Timers do not
/// count (each component has its own timer limit); messages do, by count and
/// bytes. The bounds change live; a lowered bound refuses new messages until
/// the queue is back under it, and what was queued before stays.
#[derive(Debug)]
pub(crate) struct Mailbox {
    messages: usize,
    /// Of `messages`, responses (admitted past the limits).
    responses: usize,
    bytes: usize,
    pub(crate) len_max: usize,
    pub(crate) bytes_max: usize,
    pub(crate) len_peak: usize,
    /// Messages admitted under a higher bound that a live change lowered,
    /// still queued: what may exceed `len_max` until they are handled.
    lowered_from: usize,
    /// The congestion marks: at `high` messages the component is congested,
    /// back at `low` it is not.
    high: usize,
    low: usize,
    pub(crate) congested: bool,
    /// Messages taken out, ever; and when (µs) and at what count the drain
    /// rate was last measured (only when a refusal needs it, so the message
    /// path does no more than count).
    taken: u64,
    mark_us: u64,
    mark_taken: u64,
    /// The drain rate as last measured (0: not known).
    drain_per_sec: u64,
    /// Its admission rate, if it has one.
    bucket: Option<TokenBucket>,
}

/// A drain rate is measured over at least this long (µs)…
const DRAIN_WINDOW_US: u64 = 100_000;
/// …and at most this: a mark older than that spans quiet time, and starts a
/// new measurement instead.
const DRAIN_WINDOW_MAX_US: u64 = 1_000_000;

/// A node's own publish (a congestion notice): it neither starts nor ends
/// congestion where it is queued — else a small mailbox subscribed to the
/// notices would congest on the notice of its own congestion, for ever.
#[inline(always)]
fn is_notice(header: &Header) -> bool {
    header.source.component == ComponentId::NODE && header.kind == Kind::Publish
}

/// Whether a message may join a mailbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Yes.
    Yes,
    /// The mailbox is full (count or bytes).
    Full,
    /// The admission rate is spent; a token is free in this many µs.
    Throttled(u64),
}

impl Mailbox {
    fn new(len_max: usize, bytes_max: usize, marks: (u8, u8)) -> Mailbox {
        let mut mailbox = Mailbox {
            messages: 0,
            responses: 0,
            bytes: 0,
            len_max,
            bytes_max,
            len_peak: 0,
            lowered_from: 0,
            high: 0,
            low: 0,
            congested: false,
            taken: 0,
            mark_us: 0,
            mark_taken: 0,
            drain_per_sec: 0,
            bucket: None,
        };
        mailbox.set_bounds(len_max, bytes_max, marks);
        mailbox
    }

    fn set_bounds(&mut self, len_max: usize, bytes_max: usize, (high_pct, low_pct): (u8, u8)) {
        let admitted = self.messages - self.responses;
        if admitted > len_max {
            self.lowered_from = self.lowered_from.max(admitted);
        }
        self.len_max = len_max;
        self.bytes_max = bytes_max;
        self.high = (len_max * usize::from(high_pct)).div_ceil(100).max(1);
        self.low = len_max * usize::from(low_pct) / 100;
    }

    /// Whether a message of `size` bytes fits.
    #[inline]
    fn admits(&self, size: usize) -> bool {
        self.messages < self.len_max && self.bytes + size <= self.bytes_max
    }

    /// Counts a message in; true if that reached the congestion mark (the
    /// caller decides whether it made the mailbox congested: a node's notice
    /// never does, see [`is_notice`]).
    #[inline]
    fn add(&mut self, size: usize, response: bool) -> bool {
        self.messages += 1;
        self.responses += usize::from(response);
        self.bytes += size;
        self.len_peak = self.len_peak.max(self.messages);
        !self.congested && self.messages >= self.high
    }

    /// Counts a message out; true if that reached the low mark while
    /// congested (the caller decides, as for [`Mailbox::add`]).
    #[inline]
    fn remove(&mut self, size: usize, response: bool) -> bool {
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
        if self.lowered_from > 0 {
            self.lowered_from = self.lowered_from.min(self.messages - self.responses);
        }
        self.taken += 1;
        self.congested && self.messages <= self.low
    }

    /// Whether what was admitted under the limits is within them (responses,
    /// admitted past them, and messages queued before a bound was lowered,
    /// aside).
    pub(crate) fn within_bounds(&self) -> bool {
        self.messages - self.responses <= self.len_max.max(self.lowered_from)
    }

    /// Messages queued.
    pub(crate) fn len(&self) -> usize {
        self.messages
    }

    /// Bytes queued.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// How long, at `now`, until a refused message could fit: the messages
    /// over the bound, at the rate the mailbox drained over the last 0.1 to
    /// 1 s, between 1 ms and 60 s; 100 ms while that rate is not known.
    pub(crate) fn retry_after(&mut self, now: Time) -> Duration {
        let now_us = now.as_micros();
        let elapsed_us = now_us.saturating_sub(self.mark_us);
        if elapsed_us > DRAIN_WINDOW_MAX_US {
            (self.mark_us, self.mark_taken, self.drain_per_sec) = (now_us, self.taken, 0);
        } else if elapsed_us >= DRAIN_WINDOW_US {
            self.drain_per_sec = (self.taken - self.mark_taken) * 1_000_000 / elapsed_us;
            (self.mark_us, self.mark_taken) = (now_us, self.taken);
        }
        let excess = (self.messages + 1).saturating_sub(self.len_max).max(1) as u64;
        match self.drain_per_sec {
            0 => Duration::from_millis(100),
            rate => Duration::from_micros(excess * 1_000_000 / rate)
                .clamp(Duration::from_millis(1), Duration::from_secs(60)),
        }
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
    /// Adds the mailbox of the next component (ids are given in order), with
    /// its congestion marks in percent of `len_max` (high, low).
    pub(crate) fn add_mailbox(&mut self, len_max: usize, bytes_max: usize, marks: (u8, u8)) {
        self.mailboxes.push(Mailbox::new(len_max, bytes_max, marks));
    }

    /// Changes `id`'s bounds (and so its congestion marks).
    pub(crate) fn set_bounds(
        &mut self,
        id: ComponentId,
        len_max: usize,
        bytes_max: usize,
        marks: (u8, u8),
    ) {
        self.mailboxes[id.index()].set_bounds(len_max, bytes_max, marks);
    }

    /// Whether `id`'s congestion should change now that its marks moved:
    /// `Some(true)` if it is over the high mark and not flagged, `Some(false)`
    /// if it is flagged and at or under the low one.
    pub(crate) fn congestion_moved(&self, id: ComponentId) -> Option<bool> {
        let mailbox = &self.mailboxes[id.index()];
        match mailbox.congested {
            false if mailbox.messages >= mailbox.high => Some(true),
            true if mailbox.messages <= mailbox.low => Some(false),
            _ => None,
        }
    }

    /// Marks `id` congested (or not), as the node reported it.
    pub(crate) fn set_congested(&mut self, id: ComponentId, congested: bool) {
        self.mailboxes[id.index()].congested = congested;
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
    #[cfg(test)]
    pub(crate) fn admits(&self, id: ComponentId, size: usize) -> bool {
        self.mailboxes[id.index()].admits(size)
    }

    /// Whether a message of `size` bytes may join `id`'s mailbox at `now`:
    /// room first, then a token of its admission rate (taken if so).
    #[inline]
    pub(crate) fn admit(&mut self, id: ComponentId, size: usize, now: Time) -> Admit {
        let mailbox = &mut self.mailboxes[id.index()];
        if !mailbox.admits(size) {
            return Admit::Full;
        }
        match &mut mailbox.bucket {
            None => Admit::Yes,
            Some(bucket) => match bucket.take(now.as_micros()) {
                Ok(()) => Admit::Yes,
                Err(wait_us) => Admit::Throttled(wait_us),
            },
        }
    }

    /// How long until a message refused by `id`'s full mailbox could fit.
    pub(crate) fn retry_after(&mut self, id: ComponentId, now: Time) -> Duration {
        self.mailboxes[id.index()].retry_after(now)
    }

    /// Puts an admission rate in force for `id` (none: unlimited), keeping
    /// the tokens already spent.
    pub(crate) fn set_rate(&mut self, id: ComponentId, rate: Option<Rate>, now: Time) {
        let mailbox = &mut self.mailboxes[id.index()];
        mailbox.bucket = match (mailbox.bucket.take(), rate) {
            (_, None) => None,
            (Some(mut bucket), Some(rate)) => {
                bucket.set_rate(rate, now.as_micros());
                Some(bucket)
            }
            (None, Some(rate)) => Some(TokenBucket::new(rate)),
        };
    }

    /// Admissions `id`'s rate allows at `now`, if it has one.
    pub(crate) fn tokens(&self, id: ComponentId, now: Time) -> Option<u32> {
        let bucket = self.mailboxes.get(id.index())?.bucket.as_ref()?;
        Some(bucket.available(now.as_micros()))
    }

    /// Queues a message of `size` bytes (its [`Message::size_bytes`]) for
    /// `id`, counted in its mailbox whether or not it fit (responses are
    /// admitted past the limits; the caller decides). True if that made `id`
    /// congested (the caller reports it and marks it with `set_congested`).
    #[inline(always)]
    #[must_use]
    pub(crate) fn push_message(&mut self, id: ComponentId, size: usize, message: Message) -> bool {
        debug_assert_eq!(size, message.size_bytes());
        let marked = self.mailboxes[id.index()].add(size, message.header.is_response());
        let congested = marked && !is_notice(&message.header);
        self.items.push_back((id, size, Item::Message(message)));
        congested
    }

    /// Queues a timer turn for `id` (not counted in its mailbox).
    #[inline]
    pub(crate) fn push_timer(&mut self, id: ComponentId, token: u64) {
        self.items.push_back((id, 0, Item::Timer { token }));
    }

    /// Takes the next item, uncounting it from its mailbox; the flag says
    /// that ended its component's congestion (the caller reports it and
    /// marks it with `set_congested`).
    #[inline(always)]
    pub(crate) fn pop(&mut self) -> Option<(ComponentId, Item, bool)> {
        let (id, size, item) = self.items.pop_front()?;
        let mut decongested = false;
        if let Item::Message(message) = &item {
            let marked = self.mailboxes[id.index()].remove(size, message.header.is_response());
            decongested = marked && !is_notice(&message.header);
        }
        Some((id, item, decongested))
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

    const MARKS: (u8, u8) = (80, 50);

    #[test]
    fn mailboxes_are_bounded_by_count_and_bytes() {
        let mut queue = RunQueue::default();
        let id = ComponentId(0);
        let size = message(100).size_bytes();
        queue.add_mailbox(2, 4 * size, MARKS);
        assert!(queue.admits(id, size));
        let _ = queue.push_message(id, size, message(100));
        queue.push_timer(id, 7);
        let _ = queue.push_message(id, size, message(100));
        assert!(!queue.admits(id, 1), "a third message is over len_max");
        assert!(matches!(queue.pop(), Some((_, Item::Message(_), _))));
        assert!(queue.admits(id, size));
        assert!(!queue.admits(id, 3 * size + 1), "over bytes_max");
        assert!(matches!(
            queue.pop(),
            Some((_, Item::Timer { token: 7 }, _))
        ));
        let _ = queue.push_message(id, size, message(100));
        let _ = queue.push_message(id, size, message(100));
        let mailbox = queue.mailbox(id);
        assert_eq!(
            (mailbox.len(), mailbox.bytes(), mailbox.len_peak),
            (3, 3 * size, 3)
        );
    }

    #[test]
    fn a_lowered_bound_keeps_what_is_queued_and_refuses_until_under_it() {
        let mut queue = RunQueue::default();
        let id = ComponentId(0);
        let size = message(0).size_bytes();
        queue.add_mailbox(10, 1 << 20, MARKS);
        for _ in 0..8 {
            let _ = queue.push_message(id, size, message(0));
        }
        queue.set_bounds(id, 3, 1 << 20, MARKS);
        assert!(
            queue.mailbox(id).within_bounds(),
            "queued before the change"
        );
        assert!(!queue.admits(id, size));
        for left in (3..8).rev() {
            queue.pop().unwrap();
            assert_eq!(queue.len_of(id), left);
            assert!(!queue.admits(id, size), "{left} queued, bound 3");
        }
        queue.pop().unwrap();
        assert!(queue.admits(id, size));
        let _ = queue.push_message(id, size, message(0));
        let _ = queue.push_message(id, size, message(0));
        assert!(
            !queue.mailbox(id).within_bounds(),
            "admitted past the new bound"
        );
    }

    #[test]
    fn congestion_is_reported_once_at_the_high_mark_and_ends_at_the_low() {
        let mut queue = RunQueue::default();
        let id = ComponentId(0);
        let size = message(0).size_bytes();
        queue.add_mailbox(10, 1 << 20, MARKS);
        let crossings: Vec<bool> = (0..10)
            .map(|_| {
                let crossed = queue.push_message(id, size, message(0));
                if crossed {
                    queue.set_congested(id, true);
                }
                crossed
            })
            .collect();
        assert_eq!(crossings.iter().position(|c| *c), Some(7), "at 8 of 10");
        assert_eq!(crossings.iter().filter(|c| **c).count(), 1);
        let ends: Vec<bool> = (0..10).map(|_| queue.pop().unwrap().2).collect();
        assert_eq!(ends.iter().position(|e| *e), Some(4), "back at 5 of 10");
    }

    #[test]
    fn the_retry_after_follows_the_drain_rate() {
        let mut queue = RunQueue::default();
        let id = ComponentId(0);
        let size = message(0).size_bytes();
        queue.add_mailbox(10, 1 << 20, MARKS);
        let at_ms = |ms: u64| Time::from_micros(10_000_000 + ms * 1000);
        assert_eq!(queue.retry_after(id, at_ms(0)), Duration::from_millis(100));
        // 500 a second over 100 ms; a full mailbox, one over its bound: 2 ms.
        for _ in 0..50 {
            let _ = queue.push_message(id, size, message(0));
            queue.pop().unwrap();
        }
        for _ in 0..10 {
            let _ = queue.push_message(id, size, message(0));
        }
        assert_eq!(queue.retry_after(id, at_ms(100)), Duration::from_millis(2));
        // Measured again after a quiet spell: not known, until it is.
        assert_eq!(
            queue.retry_after(id, at_ms(5000)),
            Duration::from_millis(100)
        );
    }
}
