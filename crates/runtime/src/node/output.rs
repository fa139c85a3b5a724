//! What a node hands out: transmits, events, and when it next needs a turn.

use bytes::Bytes;

use super::capacity::{CapacityError, Limit, Setting};
use crate::ids::{Address, ComponentId, Name};
use crate::message::{BounceReason, Header};
use crate::stats::DropReason;
use crate::time::Time;
use crate::transport::Transmit;

/// What the node hands out, from [`Node::poll_output`](crate::Node::poll_output):
/// transmits and events, then, once nothing else is left, `Timeout`.
#[derive(Debug)]
pub enum Output {
    /// Frames for another node.
    Transmit(Transmit),
    /// Something the driver may act on or report.
    Event(Event),
    /// Nothing else to hand out: the node next needs
    /// [`Input::Timeout`](crate::Input::Timeout) (or
    /// [`Input::Run`](crate::Input::Run), if work is queued) at this time;
    /// [`Time::MAX`] if nothing is scheduled. Polling again gives the same
    /// until the next input.
    Timeout(Time),
}

/// What happened that the driver may act on.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// The node gained its first or lost its last subscriber of `name`; the
    /// membership (or `exchange dev`) tells the other nodes.
    Interest {
        /// The name.
        name: Name,
        /// Gained (true) or lost (false).
        subscribed: bool,
    },
    /// A sampled message ended at a component.
    Traced(Box<TraceRecord>),
    /// A component panicked (or failed to start) and was replaced.
    Restarted {
        /// Which.
        component: ComponentId,
        /// What the panic or error said.
        reason: String,
    },
    /// A component failed more than `restart_intensity_max` times within the
    /// window and was stopped; its messages now bounce `HandlerFailed`.
    Failed {
        /// Which.
        component: ComponentId,
    },
    /// A limit changed (one event per limit): by a live change, or because a
    /// network-wide limit's share changed as instances came or went.
    CapacityChanged {
        /// Which component; `None` for the node-wide dispatch budget.
        component: Option<ComponentId>,
        /// Which limit.
        limit: Limit,
        /// Before.
        old: Setting,
        /// After.
        new: Setting,
        /// Who asked (the change's `by`, or `network share`).
        by: String,
    },
    /// A capacity change did not check; nothing changed.
    CapacityRefused {
        /// Why.
        error: CapacityError,
        /// Who asked.
        by: String,
    },
    /// A component's mailbox reached its congestion mark (the node also
    /// publishes `exchange.congested`), or, `congested: false`, fell back to
    /// the lower mark (`exchange.decongested`).
    Congestion {
        /// Which.
        component: ComponentId,
        /// Congested (true) or no longer (false).
        congested: bool,
        /// Messages queued then.
        queue_len: usize,
        /// Its bound.
        limit: usize,
    },
}

/// How a traced message ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceOutcome {
    /// Its handler returned `Ok`.
    Handled,
    /// It went back to its sender.
    Bounced(BounceReason),
    /// It was dropped and counted.
    Dropped(DropReason),
}

/// A sampled message at the end of its path: for walking an effect back to its cause.
#[derive(Clone, Debug)]
pub struct TraceRecord {
    /// Where it ended.
    pub at: Address,
    /// When.
    pub time: Time,
    /// Its header, hops included.
    pub header: Header,
    /// Its payload.
    pub payload: Bytes,
    /// How it ended.
    pub outcome: TraceOutcome,
}
