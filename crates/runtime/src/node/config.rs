//! What a node is built with: node-wide settings and per-component limits.

use std::time::Duration;

/// Node-wide limits and settings.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Largest payload a component may send (headers are bounded separately, by
    /// `codec::HEADER_BYTES_MAX`).
    pub message_bytes_max: usize,
    /// Most effects (messages, timers, subscriptions) one handler invocation may buffer.
    pub effects_max: usize,
    /// Most requests awaiting a reply at once; more bounce `Overloaded` at once.
    pub pending_requests_max: usize,
    /// Messages dispatched per [`Input::Run`](crate::Input::Run) before I/O gets a turn.
    pub dispatch_per_turn_max: usize,
    /// Sample one in this many new traces for debug tracing (0: none, 1: all).
    pub trace_sample_one_in: u32,
    /// Restarts allowed within `restart_window`; one more and the component stops
    /// (its messages bounce `HandlerFailed`).
    pub restart_intensity_max: u32,
    /// The window for `restart_intensity_max`.
    pub restart_window: Duration,
    /// Seeds every RNG of the node and its components.
    pub seed: u64,
    /// Which life of this node id this is. A node that restarts under the same
    /// id must get a new one (the container takes the start time; the
    /// simulator counts restarts): correlation ids are drawn from a range that
    /// depends on it, so a late reply to the previous life's request is never
    /// taken for an answer to this life's.
    pub incarnation: u64,
    /// How long a request or send to a name no node handles yet waits for a
    /// handler to appear (a request no longer than its deadline) before it
    /// bounces `NoHandler`. Zero: it bounces at once.
    pub handler_wait: Duration,
    /// Messages waiting for a handler at most; more bounce `NoHandler` at once.
    pub awaiting_max: usize,
    /// A component is congested (the node publishes `exchange.congested`)
    /// when its mailbox holds this percentage of its `mailbox_len_max`, 1 to
    /// 100 (at least one message)…
    pub congested_pct: u8,
    /// …and no longer (`exchange.decongested`) once it is back down to this
    /// percentage, below `congested_pct`.
    pub decongested_pct: u8,
    /// Deliberate defects, for proving that checkers can fail. Only with the
    /// crate's `sabotage` feature, which only tests turn on.
    #[cfg(feature = "testing")]
    pub sabotage: Sabotage,
}

/// Deliberate defects a test can switch on to prove a checker catches them
/// (the crate's `sabotage` feature).
#[cfg(feature = "testing")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sabotage {
    /// None: the node as built.
    #[default]
    None,
    /// A full mailbox drops the message silently: no bounce, no count. In a
    /// debug build the node's own audit after the input catches it (a panic).
    SilentMailboxDrop,
    /// The same, with the node's audit after every input off, so that a
    /// checker outside the node (the simulator's) has to catch it.
    SilentMailboxDropUnaudited,
}

impl NodeConfig {
    /// The congestion marks (high, low), in percent of a mailbox's bound.
    pub(super) fn marks(&self) -> (u8, u8) {
        (self.congested_pct, self.decongested_pct)
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            message_bytes_max: 1 << 20,
            effects_max: 4096,
            pending_requests_max: 65_536,
            dispatch_per_turn_max: 256,
            trace_sample_one_in: 0,
            restart_intensity_max: 10,
            restart_window: Duration::from_secs(10),
            seed: 0,
            incarnation: 0,
            handler_wait: Duration::ZERO,
            awaiting_max: 10_000,
            congested_pct: 80,
            decongested_pct: 50,
            #[cfg(feature = "testing")]
            sabotage: Sabotage::None,
        }
    }
}

/// Per-component limits, as configured. The mailbox bounds, the rate and the
/// requests in flight change live ([`Input::Capacity`](crate::Input::Capacity));
/// the rest are fixed for the node's life.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComponentLimits {
    /// Messages queued at most.
    pub mailbox_len_max: usize,
    /// Bytes queued at most.
    pub mailbox_bytes_max: usize,
    /// Messages admitted per second (a token bucket); past it they bounce
    /// `Throttled` with a retry-after. 0: unlimited.
    pub rate_per_sec: u32,
    /// Messages admitted at once after a quiet spell; 0: a tenth of the
    /// rate (at least 1).
    pub burst: u32,
    /// Requests awaiting replies at once; more bounce `Overloaded` at once to
    /// the requester. 0: unlimited (the node's `pending_requests_max` holds).
    pub in_flight_max: usize,
    /// Timers set at most.
    pub timers_max: usize,
    /// Environment entries at most.
    pub env_entries_max: usize,
    /// Environment bytes at most.
    pub env_bytes_max: usize,
}

impl ComponentLimits {
    /// Whether the limits the control plane can change are in range (see
    /// [`Limit::range`](crate::Limit::range)); the first that is not, if any.
    pub fn check(&self) -> Result<(), crate::CapacityError> {
        super::Capacity::check_config(self)
    }
}

impl Default for ComponentLimits {
    fn default() -> Self {
        ComponentLimits {
            mailbox_len_max: 4096,
            mailbox_bytes_max: 16 << 20,
            rate_per_sec: 0,
            burst: 0,
            in_flight_max: 0,
            timers_max: 1024,
            env_entries_max: 4096,
            env_bytes_max: 1 << 20,
        }
    }
}
