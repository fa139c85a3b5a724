//! Counters that prove nothing is lost: per component, every accepted message
//! ends as handled, bounced (by reason) or dropped (by reason).

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::message::{BounceReason, bounce_reason_str};

/// Why a message was dropped (and counted) instead of handled or bounced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// A reply, publish or bounce found the mailbox full (those are never bounced).
    Overloaded,
    /// A reply, publish or bounce passed its deadline in the queue.
    Expired,
    /// Still queued when the node shut down.
    Shutdown,
    /// A reply or bounce for a request that had already timed out.
    LateReply,
    /// A frame that did not decode as an envelope, or was misaddressed.
    Malformed,
    /// A reply, publish or bounce whose handler failed.
    HandlerFailed,
    /// A frame over the size limit.
    TooLarge,
    /// A reply, publish or bounce for a component or name that is not here.
    NoHandler,
    /// A reply, publish or bounce the transport could not carry.
    Unreachable,
    /// A publish (or other message that may not bounce) past its receiver's
    /// admission rate.
    Throttled,
}

impl DropReason {
    /// Every reason, in counter order.
    pub const ALL: [DropReason; 10] = [
        DropReason::Overloaded,
        DropReason::Expired,
        DropReason::Shutdown,
        DropReason::LateReply,
        DropReason::Malformed,
        DropReason::HandlerFailed,
        DropReason::TooLarge,
        DropReason::NoHandler,
        DropReason::Unreachable,
        DropReason::Throttled,
    ];

    /// The snake-case name used in counters and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Overloaded => "overloaded",
            DropReason::Expired => "expired",
            DropReason::Shutdown => "shutdown",
            DropReason::LateReply => "late_reply",
            DropReason::Malformed => "malformed",
            DropReason::HandlerFailed => "handler_failed",
            DropReason::TooLarge => "too_large",
            DropReason::NoHandler => "no_handler",
            DropReason::Unreachable => "unreachable",
            DropReason::Throttled => "throttled",
        }
    }

    /// The drop that stands in for a bounce when the message may not be bounced.
    pub fn for_bounce(reason: BounceReason) -> DropReason {
        match reason {
            BounceReason::Overloaded => DropReason::Overloaded,
            BounceReason::Expired => DropReason::Expired,
            BounceReason::HandlerFailed => DropReason::HandlerFailed,
            BounceReason::TooLarge => DropReason::TooLarge,
            BounceReason::Throttled => DropReason::Throttled,
            _ => DropReason::NoHandler,
        }
    }
}

const BOUNCE_REASONS: usize = 11;

/// Counts by reason, cheap to bump on the message path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcomes {
    bounced: [u64; BOUNCE_REASONS],
    dropped: [u64; DropReason::ALL.len()],
}

impl Outcomes {
    pub(crate) fn bounce(&mut self, reason: BounceReason) {
        self.bounced[reason as usize] += 1;
    }

    pub(crate) fn drop(&mut self, reason: DropReason) {
        self.dropped[reason as usize] += 1;
    }

    /// All bounces.
    pub fn bounced_total(&self) -> u64 {
        self.bounced.iter().sum()
    }

    /// All drops.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().sum()
    }

    /// Bounces by reason name; reasons never seen are left out.
    pub fn bounced(&self) -> BTreeMap<String, u64> {
        (0..BOUNCE_REASONS as i32)
            .filter_map(|i| BounceReason::try_from(i).ok())
            .filter(|r| self.bounced[*r as usize] > 0)
            .map(|r| (bounce_reason_str(r).to_owned(), self.bounced[r as usize]))
            .collect()
    }

    /// Drops by reason name; reasons never seen are left out.
    pub fn dropped(&self) -> BTreeMap<String, u64> {
        DropReason::ALL
            .iter()
            .filter(|r| self.dropped[**r as usize] > 0)
            .map(|r| (r.as_str().to_owned(), self.dropped[*r as usize]))
            .collect()
    }

    /// Drops for one reason.
    pub fn dropped_for(&self, reason: DropReason) -> u64 {
        self.dropped[reason as usize]
    }

    /// Bounces for one reason.
    pub fn bounced_for(&self, reason: BounceReason) -> u64 {
        self.bounced[reason as usize]
    }
}

/// One component's counters.
#[derive(Clone, Debug)]
pub struct ComponentStats {
    /// Messages that reached the component's admission (replies and bounces included).
    pub accepted: u64,
    /// Messages its handler returned `Ok` for.
    pub handled: u64,
    /// Bounced and dropped, by reason.
    pub outcomes: Outcomes,
    /// Fresh instances made after a panic.
    pub restarts: u64,
    /// Timer firings handled (not messages; not in `accepted`).
    pub timers_fired: u64,
    /// Messages sent to no subscriber (publishes nobody heard; not a loss).
    pub published_unheard: u64,
    /// Effects a handler asked for past a limit (`effects_max` per invocation,
    /// `timers_max`) and did not get. Not messages anyone accepted, so not in
    /// `dropped`: the handler's own sends and timers that never happened.
    pub effects_refused: u64,
    /// Requests its handlers sent.
    pub requests_sent: u64,
    /// Replies and bounces that ended one of its requests (`Expired` included):
    /// `requests_sent = responses_received + its requests still pending`.
    pub responses_received: u64,
    /// Of `responses_received`, replies (the rest were bounces).
    pub replies_received: u64,
    /// Bounces this component received for what it sent, by reason (counted in
    /// `accepted` like any message; this says why they came back).
    pub returned: Outcomes,
    handler_ns: Histogram<u64>,
    response_us: Histogram<u64>,
}

impl Default for ComponentStats {
    fn default() -> Self {
        ComponentStats {
            accepted: 0,
            handled: 0,
            outcomes: Outcomes::default(),
            restarts: 0,
            timers_fired: 0,
            published_unheard: 0,
            effects_refused: 0,
            requests_sent: 0,
            responses_received: 0,
            replies_received: 0,
            returned: Outcomes::default(),
            handler_ns: Histogram::new_with_bounds(1, 60_000_000_000, 2)
                .expect("static histogram bounds are valid"),
            response_us: Histogram::new_with_bounds(1, 3_600_000_000, 2)
                .expect("static histogram bounds are valid"),
        }
    }
}

impl ComponentStats {
    pub(crate) fn record_handler_time(&mut self, elapsed: Duration) {
        let ns = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX).max(1);
        self.handler_ns.saturating_record(ns);
    }

    /// A request of this component's was answered (reply or bounce) this long
    /// after it was sent, by the node's clock.
    pub(crate) fn record_response_time(&mut self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        self.response_us.saturating_record(us);
    }

    /// Handler time at quantile `q` (0.0–1.0), in nanoseconds; 0 before any.
    pub fn handler_ns_at(&self, q: f64) -> u64 {
        at_quantile(&self.handler_ns, q)
    }

    /// Time from sending a request to its reply or bounce at quantile `q`
    /// (0.0–1.0), in microseconds; 0 before any.
    pub fn response_us_at(&self, q: f64) -> u64 {
        at_quantile(&self.response_us, q)
    }

    /// Requests it sent that await a reply or bounce.
    pub fn in_flight(&self) -> u64 {
        self.requests_sent.saturating_sub(self.responses_received)
    }

    /// Messages accepted and not yet ended (queued), by the counters.
    pub fn unresolved(&self) -> u64 {
        let ended = self.handled + self.outcomes.bounced_total() + self.outcomes.dropped_total();
        self.accepted.saturating_sub(ended)
    }
}

fn at_quantile(histogram: &Histogram<u64>, q: f64) -> u64 {
    if histogram.is_empty() {
        0
    } else {
        histogram.value_at_quantile(q)
    }
}

/// Counters of the node itself, for frames that never reached a component.
#[derive(Clone, Debug, Default)]
pub struct NodeStats {
    /// Frames received from the network.
    pub frames_in: u64,
    /// Frames handed out for transmission.
    pub frames_out: u64,
    /// Refused before reaching a component, by reason.
    pub outcomes: Outcomes,
    /// Transmissions the transport reported as failed.
    pub transmit_failed: u64,
}
