//! `Node`: one container's state machine. No I/O, no clock, no threads.
//!
//! # Driving a node
//!
//! One input at a time, with the time; outputs are polled (str0m's contract):
//!
//! 1. [`Node::handle`] with an [`Input`]: a frame from the network, a transmit
//!    the transport could not carry, a route change, a timeout, a turn of
//!    handlers ([`Input::Run`]), …
//! 2. [`Node::poll_output`] until it returns [`Output::Timeout`]: transmit
//!    each [`Output::Transmit`], act on each [`Output::Event`].
//! 3. Wait for I/O or until that timeout; then hand in [`Input::Timeout`] if
//!    it is due, [`Input::Run`] if work is queued ([`Node::is_quiet`] says),
//!    and go to 2.
//!
//! The timeout is the last `now` while work is queued, so a driver that waits
//! on it never sleeps with messages pending.
//!
//! In debug builds the node checks what it promises ([`Node::audit`]) after
//! every input, and panics, naming what broke, if it does not hold.
//!
//! The methods are in this order: construction, getters, [`Node::handle`],
//! then the polls. The work behind each input is in this module's files:
//! `admission.rs` (frames, refusals, bounces), `dispatch.rs` (handlers and
//! supervision), `routing.rs` (effects, routes, the handler wait), `status.rs`
//! (status and audit); the state they share keeps its own invariants in
//! `queue.rs`, `timers.rs`, `pending.rs` and `awaiting.rs`.

mod admission;
mod awaiting;
mod capacity;
mod config;
mod dispatch;
mod input;
mod output;
mod pending;
mod queue;
mod routing;
mod status;
mod timers;

use std::collections::VecDeque;

use bytes::BytesMut;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::component::Factory;
use crate::ctx::Effect;
use crate::env::Env;
use crate::ids::{ComponentId, InvalidName, Name, NodeId, validate_name};
use crate::minter::Minter;
use crate::router::{RouteId, Router};
use crate::stats::{ComponentStats, NodeStats};
use crate::time::{Stopwatch, Time};

pub use capacity::{
    CONGESTED, Capacity, CapacityChange, CapacityError, DECONGESTED, Limit, Setting, Source,
};
#[cfg(feature = "testing")]
pub use config::Sabotage;
pub use config::{ComponentLimits, NodeConfig};
pub use input::{Input, InvalidRecord};
pub use output::{Event, Output, TraceOutcome, TraceRecord};
pub use status::Broken;

use awaiting::HandlerWait;
use pending::PendingRequests;
use queue::RunQueue;
use timers::Timers;

/// Adding a component failed; the node is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddComponentError {
    /// A component with this name is already on the node.
    #[error("a component named {0:?} is already on this node")]
    Duplicate(String),
    /// A name in `handles()` is invalid.
    #[error("component {component:?}: {error}")]
    InvalidName {
        /// The component.
        component: String,
        /// The name.
        error: InvalidName,
    },
    /// Components are added before the node starts.
    #[error("components are added before the node starts")]
    AlreadyStarted,
    /// A limit out of range.
    #[error("component {component:?}: {error}")]
    Limit {
        /// The component.
        component: String,
        /// Which limit, and its range.
        error: CapacityError,
    },
}

/// A component on the node: its instance, what makes a new one, and what it
/// keeps across instances (environment, RNG, counters).
struct Slot {
    name: Name,
    factory: Factory,
    instance: Box<dyn crate::Component>,
    env: Env,
    rng: ChaCha8Rng,
    stats: ComponentStats,
    limits: ComponentLimits,
    /// The names it handles (the first counts its instances network-wide).
    handles: Vec<Name>,
    capacity: Capacity,
    failed: bool,
    window_start: Time,
    restarts_in_window: u32,
    last_route: Option<RouteId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Building,
    Running,
    /// Running, but refusing new work from other nodes (see [`Input::Drain`]).
    Draining,
    Stopped,
}

/// One container: components, their mailboxes, the router, timers and pending
/// requests.
///
/// # Driving a node
///
/// One [`Input`] at a time through [`Node::handle`], with the time; then
/// [`Node::poll_output`] until [`Output::Timeout`], and wait until then (or for
/// I/O). In debug builds every input is followed by [`Node::audit`].
pub struct Node {
    id: NodeId,
    name: String,
    config: NodeConfig,
    state: State,
    now: Time,
    /// When the last [`Input::Timeout`] was handled: no request may be past
    /// its deadline before it.
    timed_out_at: Time,
    slots: Vec<Slot>,
    queue: RunQueue,
    router: Router,
    timers: Timers,
    pending: PendingRequests,
    awaiting: HandlerWait,
    outputs: VecDeque<Output>,
    effects: Vec<Effect>,
    minter: Minter,
    /// Headers are encoded into blocks of this buffer (see `encode_header_into`).
    encode_buf: BytesMut,
    stats: NodeStats,
    /// Items dispatched per [`Input::Run`] at most.
    dispatch_per_turn: Setting,
    /// Lent by the driver to time handlers; none: nothing is timed.
    stopwatch: Option<Box<dyn Stopwatch>>,
}

impl Node {
    /// A node with no components yet.
    pub fn new(id: NodeId, name: &str, config: NodeConfig) -> Node {
        assert!(
            (1..=100).contains(&config.congested_pct)
                && config.decongested_pct < config.congested_pct,
            "congestion marks out of range: {}% and {}%",
            config.congested_pct,
            config.decongested_pct
        );
        let dispatch_per_turn = Setting {
            value: config.dispatch_per_turn_max as u64,
            source: Source::Config,
        };
        let minter = Minter::new(
            id,
            config.seed,
            config.incarnation,
            config.trace_sample_one_in,
        );
        Node {
            id,
            name: name.to_owned(),
            config,
            state: State::Building,
            now: Time::ZERO,
            timed_out_at: Time::ZERO,
            slots: Vec::new(),
            queue: RunQueue::default(),
            router: Router::default(),
            timers: Timers::default(),
            pending: PendingRequests::default(),
            awaiting: HandlerWait::default(),
            outputs: VecDeque::new(),
            effects: Vec::new(),
            minter,
            encode_buf: BytesMut::new(),
            stats: NodeStats::default(),
            dispatch_per_turn,
            stopwatch: None,
        }
    }

    /// Adds a component made by `factory`, routing the names it handles to it.
    pub fn add_component(
        &mut self,
        name: &str,
        limits: ComponentLimits,
        mut factory: Factory,
    ) -> Result<ComponentId, AddComponentError> {
        if self.state != State::Building {
            return Err(AddComponentError::AlreadyStarted);
        }
        if self.slots.iter().any(|slot| &*slot.name == name) {
            return Err(AddComponentError::Duplicate(name.to_owned()));
        }
        limits.check().map_err(|error| AddComponentError::Limit {
            component: name.to_owned(),
            error,
        })?;
        let instance = factory();
        let handles: Vec<String> = instance.handles().iter().map(|h| (*h).to_owned()).collect();
        for handled in &handles {
            validate_name(handled).map_err(|error| AddComponentError::InvalidName {
                component: name.to_owned(),
                error,
            })?;
        }
        let id = ComponentId(u32::try_from(self.slots.len()).expect("fewer than 2^32 components"));
        for handled in &handles {
            self.router.add_local_handler(handled, id);
        }
        self.queue.add_mailbox(
            limits.mailbox_len_max,
            limits.mailbox_bytes_max,
            self.config.marks(),
        );
        let capacity = Capacity::from_config(&limits);
        self.queue.set_rate(id, capacity.rate(), self.now);
        self.timers.add_component();
        let seed = self.minter.seed();
        self.slots.push(Slot {
            name: Name::new(name),
            factory,
            instance,
            env: Env::new(limits.env_entries_max, limits.env_bytes_max),
            rng: ChaCha8Rng::seed_from_u64(seed),
            stats: ComponentStats::default(),
            handles: handles.iter().map(|h| self.router.intern(h)).collect(),
            capacity,
            limits,
            failed: false,
            window_start: Time::ZERO,
            restarts_in_window: 0,
            last_route: None,
        });
        Ok(id)
    }

    /// Lends the node a stopwatch to time handlers with (for the handler-time
    /// histograms); what it measures never changes what the node does. The
    /// default measures nothing.
    pub fn set_stopwatch(&mut self, stopwatch: Box<dyn Stopwatch>) {
        self.stopwatch = Some(stopwatch);
    }

    // ---- getters ----

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The router: what the node knows of names and other nodes. It changes
    /// only through [`Input::Route`] and the node's own components.
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// Components, in id order: id, name and counters.
    pub fn components(&self) -> impl Iterator<Item = (ComponentId, &str, &ComponentStats)> {
        self.slots
            .iter()
            .enumerate()
            .map(|(i, slot)| (ComponentId(i as u32), &*slot.name, &slot.stats))
    }

    /// The name of a component of this node.
    pub fn component_name(&self, id: ComponentId) -> Option<&str> {
        self.slots.get(id.index()).map(|slot| &*slot.name)
    }

    /// Messages queued for a component.
    pub fn queue_len(&self, id: ComponentId) -> usize {
        self.queue.len_of(id)
    }

    /// The node's own counters.
    pub fn stats(&self) -> &NodeStats {
        &self.stats
    }

    /// Whether nothing is queued, pending or waiting to be polled.
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty()
            && self.pending.is_empty()
            && self.outputs.is_empty()
            && self.awaiting.is_empty()
    }

    /// Whether nothing is queued for a component (pending requests may
    /// remain): an [`Input::Run`] would do nothing.
    pub fn is_quiet(&self) -> bool {
        self.queue.is_empty()
    }

    /// Items (messages and timer turns) queued for the node's components.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Requests sent from this node awaiting a reply or bounce.
    pub fn pending_requests(&self) -> usize {
        self.pending.len()
    }

    /// Messages waiting for a handler of their name.
    pub fn awaiting_handler(&self) -> usize {
        self.awaiting.len()
    }

    /// How many frames a driver should take from the network before the next
    /// [`Input::Run`]: what that run can dispatch, less what is already queued.
    /// A driver that reads no more than this leaves the rest in its transport's
    /// queue, whose limit pushes back on the senders (their sends fail with
    /// [`crate::TransmitError::WouldBlock`] at their own node), instead of
    /// filling mailboxes here and bouncing `Overloaded` across the network.
    pub fn intake_room(&self) -> usize {
        (self.dispatch_per_turn.value as usize).saturating_sub(self.queue.len())
    }

    // ---- the input ----

    /// Takes one input at `now`. Nothing here fails: what a peer or the
    /// network can get wrong (a malformed frame, an unreachable peer) becomes
    /// a bounce or a counted drop. Then poll [`Node::poll_output`] until
    /// [`Output::Timeout`].
    pub fn handle(&mut self, now: Time, input: Input<'_>) {
        self.now = now;
        match input {
            Input::Start => self.start(),
            Input::Frame {
                from,
                header,
                payload,
            } => self.take_frame(from, header, payload),
            Input::Undecodable => self.take_undecodable(),
            Input::Timeout => self.time_out(),
            Input::Run => self.run(),
            Input::TransmitFailed { transmit, error } => self.transmit_failed(transmit, error),
            Input::Route(change) => self.change_route(change),
            Input::Capacity(change) => self.change_capacity(change),
            Input::Quiesce => self.quiesce(),
            Input::Drain => self.drain(),
            Input::Shutdown => self.shutdown(),
        }
        if cfg!(debug_assertions)
            && self.audits()
            && let Err(broken) = self.audit()
        {
            panic!("{}: after an input at {now}: {broken}", self.name);
        }
    }

    // ---- outputs ----

    /// The next output; once none is left, [`Output::Timeout`] with when the
    /// node next needs a turn (see [`Node`]).
    pub fn poll_output(&mut self) -> Output {
        match self.outputs.pop_front() {
            Some(output) => output,
            None => Output::Timeout(self.poll_timeout().unwrap_or(Time::MAX)),
        }
    }

    /// When the node next needs [`Input::Timeout`] or [`Input::Run`]: the
    /// last `now` if work is queued, else the earliest timer, request deadline
    /// or end of a handler wait; `None` if nothing is scheduled. The same as
    /// the last [`Output::Timeout`] (which says [`Time::MAX`] for `None`).
    pub fn poll_timeout(&self) -> Option<Time> {
        if !self.queue.is_empty() {
            return Some(self.now);
        }
        [
            self.timers.next(),
            self.pending.next_deadline(),
            self.awaiting.next(),
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("components", &self.slots.len())
            .field("queued", &self.queue.len())
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}
