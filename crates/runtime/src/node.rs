//! `Node`: one container's state machine. No I/O, no clock, no threads.
//!
//! # Driving a node
//!
//! Inputs take the time as an argument; outputs are polled:
//!
//! 1. [`Node::handle_frame`] for each frame from the network,
//!    [`Node::handle_transmit_error`] when the transport could not carry a
//!    [`Transmit`], and [`Node::handle_timeout`] once [`Node::poll_timeout`] is due.
//! 2. [`Node::run`] (or [`Node::dispatch`] one at a time) to let components
//!    handle what is queued.
//! 3. [`Node::poll_output`] until `None`: transmit each [`Transmit`], act on
//!    each [`Event`].
//! 4. Wait for I/O or until [`Node::poll_timeout`], then go to 1.
//!
//! [`Node::poll_timeout`] returns the last `now` while work is queued, so a
//! driver that waits on it never sleeps with messages pending.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use exchange_idl::exchange::v1::control;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rustc_hash::FxHashMap;
use smallvec::{SmallVec, smallvec};

use crate::codec::{HEADER_BYTES_MAX, decode_header, decode_header_into, encode_header_into};
use crate::component::{Component, Factory, HandlerResult};
use crate::ctx::{Ctx, Effect};
use crate::env::Env;
use crate::ids::{Address, ComponentId, CorrelationId, InvalidName, Name, NodeId, validate_name};
use crate::mailbox::{Item, Mailbox, RunQueue};
use crate::message::{Bounce, BounceReason, Header, Hop, Kind, Message, TraceContext};
use crate::minter::Minter;
use crate::router::{Destination, RouteChange, RouteId, Router};
use crate::stats::{ComponentStats, DropReason, NodeStats};
use crate::time::{Stopwatch, Time};
use crate::transport::{Transmit, TransmitError};

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
    /// Messages dispatched per [`Node::run`] before I/O gets a turn.
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
    /// Deliberate defects, for proving that checkers can fail. Never set
    /// outside tests.
    #[doc(hidden)]
    pub sabotage: Sabotage,
}

/// Deliberate defects a test can switch on to prove a checker catches them.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sabotage {
    /// None: the node as built.
    #[default]
    None,
    /// A full mailbox drops the message silently: no bounce, no count.
    SilentMailboxDrop,
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
            sabotage: Sabotage::None,
        }
    }
}

/// Per-component limits. Changeable live later through the control plane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComponentLimits {
    /// Messages queued at most.
    pub mailbox_len_max: usize,
    /// Bytes queued at most.
    pub mailbox_bytes_max: usize,
    /// Timers set at most.
    pub timers_max: usize,
    /// Environment entries at most.
    pub env_entries_max: usize,
    /// Environment bytes at most.
    pub env_bytes_max: usize,
}

impl Default for ComponentLimits {
    fn default() -> Self {
        ComponentLimits {
            mailbox_len_max: 4096,
            mailbox_bytes_max: 16 << 20,
            timers_max: 1024,
            env_entries_max: 4096,
            env_bytes_max: 1 << 20,
        }
    }
}

/// What the node hands out.
#[derive(Debug)]
pub enum Output {
    /// Frames for another node.
    Transmit(Transmit),
    /// Something the driver may act on or report.
    Event(Event),
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
}

struct Slot {
    name: Name,
    factory: Factory,
    instance: Box<dyn Component>,
    mailbox: Mailbox,
    env: Env,
    rng: ChaCha8Rng,
    stats: ComponentStats,
    limits: ComponentLimits,
    timers: usize,
    failed: bool,
    window_start: Time,
    restarts_in_window: u32,
    last_route: Option<RouteId>,
}

#[derive(Debug)]
struct Pending {
    component: ComponentId,
    sent: Time,
    deadline: Time,
    name: Name,
    trace: TraceContext,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Building,
    Running,
    /// Running, but refusing new work from other nodes (see [`Node::drain`]).
    Draining,
    Stopped,
}

enum Invocation {
    Ok,
    Failed(String),
    Panicked(String),
}

/// One container: components, their mailboxes, the router, timers and pending
/// requests. See the [module docs](self) for how to drive it.
pub struct Node {
    id: NodeId,
    name: String,
    config: NodeConfig,
    state: State,
    now: Time,
    slots: Vec<Slot>,
    queue: RunQueue,
    router: Router,
    timers: BTreeMap<(Time, u64), (ComponentId, u64)>,
    timer_index: FxHashMap<(ComponentId, u64), (Time, u64)>,
    pending: FxHashMap<CorrelationId, Pending>,
    pending_deadlines: BTreeSet<(Time, CorrelationId)>,
    /// Messages waiting for a handler of their name, by (end of the wait,
    /// arrival).
    awaiting: BTreeMap<(Time, u64), Message>,
    /// Their keys in `awaiting`, by name.
    awaiting_names: FxHashMap<Name, Vec<(Time, u64)>>,
    next_awaiting_seq: u64,
    outputs: VecDeque<Output>,
    effects: Vec<Effect>,
    minter: Minter,
    /// Headers are encoded into blocks of this buffer (see `encode_header_into`).
    encode_buf: BytesMut,
    next_timer_seq: u64,
    stats: NodeStats,
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(text), _) => (*text).to_owned(),
        (_, Some(text)) => text.clone(),
        _ => "panic with a non-string payload".to_owned(),
    }
}

impl Node {
    /// A node with no components yet.
    pub fn new(id: NodeId, name: &str, config: NodeConfig) -> Node {
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
            slots: Vec::new(),
            queue: RunQueue::new(),
            router: Router::default(),
            timers: BTreeMap::new(),
            timer_index: FxHashMap::default(),
            pending: FxHashMap::default(),
            pending_deadlines: BTreeSet::new(),
            awaiting: BTreeMap::new(),
            awaiting_names: FxHashMap::default(),
            next_awaiting_seq: 0,
            outputs: VecDeque::new(),
            effects: Vec::new(),
            minter,
            encode_buf: BytesMut::new(),
            next_timer_seq: 0,
            stats: NodeStats::default(),
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
        let seed = self.minter.seed();
        self.slots.push(Slot {
            name: Name::new(name),
            factory,
            instance,
            mailbox: Mailbox::new(limits.mailbox_len_max, limits.mailbox_bytes_max),
            env: Env::new(limits.env_entries_max, limits.env_bytes_max),
            rng: ChaCha8Rng::seed_from_u64(seed),
            stats: ComponentStats::default(),
            limits,
            timers: 0,
            failed: false,
            window_start: Time::ZERO,
            restarts_in_window: 0,
            last_route: None,
        });
        Ok(id)
    }

    /// Starts every component (calls [`Component::start`]).
    pub fn start(&mut self, now: Time) {
        if self.state != State::Building {
            return;
        }
        self.now = now;
        self.state = State::Running;
        for index in 0..self.slots.len() {
            let id = ComponentId(index as u32);
            self.slots[index].window_start = now;
            self.start_component(id);
        }
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The router, to tell it about peers (`add_remote_handler`, `set_remote_subscriber`).
    pub fn router_mut(&mut self) -> &mut Router {
        &mut self.router
    }

    /// The router.
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
        self.slots
            .get(id.index())
            .map_or(0, |slot| slot.mailbox.len())
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

    // ---- inputs ----

    /// A frame pair from `from`. Frames over the size limit, frames that do not
    /// decode and misaddressed frames are dropped and counted; nothing panics.
    ///
    /// `from` is the peer the transport says sent the frames; it is not trusted
    /// for anything yet (the envelope's source is what replies go to).
    pub fn handle_frame(&mut self, now: Time, from: NodeId, header: &[u8], payload: Bytes) {
        let _ = from;
        self.now = now;
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
                let slots = &self.slots;
                let queue_len = |c: ComponentId| slots[c.index()].mailbox.len();
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

    /// The transport could not carry `transmit`: its message bounces to its sender
    /// (or, if it may not bounce, is dropped and counted).
    pub fn handle_transmit_error(&mut self, now: Time, transmit: Transmit, error: TransmitError) {
        self.now = now;
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

    /// Fires due timers, bounces messages that waited long enough for a
    /// handler, and expires requests whose deadline passed.
    pub fn handle_timeout(&mut self, now: Time) {
        self.now = now;
        while let Some(entry) = self.awaiting.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (key, message) = entry.remove_entry();
            self.forget_awaiting_name(&message.header.name, key);
            let detail = "no node handled this name within handler_wait";
            self.refuse_at_node(message, BounceReason::NoHandler, detail);
        }
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let (component, token) = entry.remove();
            self.timer_index.remove(&(component, token));
            let slot = &mut self.slots[component.index()];
            slot.timers -= 1;
            self.queue.push_back((component, 0, Item::Timer { token }));
        }
        while let Some(&(deadline, correlation)) = self.pending_deadlines.first() {
            if deadline > now {
                break;
            }
            self.pending_deadlines.pop_first();
            if let Some(pending) = self.pending.remove(&correlation) {
                self.expire(correlation, pending);
            }
        }
    }

    /// Starts draining before [`Node::shutdown`]: timers are cancelled (see
    /// [`Node::quiesce`]) and new sends and requests from other nodes bounce
    /// `Overloaded`; replies, and work already queued or caused by it, still run.
    pub fn drain(&mut self, now: Time) {
        self.quiesce(now);
        if self.state == State::Running {
            self.state = State::Draining;
        }
        self.refuse_awaiting("the node is stopping");
    }

    /// Adds `node` as a handler of `name` (a peer advertised it) and routes the
    /// messages that were waiting for one. Returns whether it is new.
    pub fn add_remote_handler(&mut self, now: Time, name: &str, node: NodeId) -> bool {
        self.now = now;
        let added = self.router.add_remote_handler(name, node);
        if added && let Some(waiting) = self.awaiting_names.remove(name) {
            for key in waiting {
                if let Some(message) = self.awaiting.remove(&key) {
                    self.route(message, None);
                }
            }
        }
        added
    }

    /// Applies one change to the routes (see [`RouteChange`]); a handler added
    /// routes the messages that were waiting for one, as
    /// [`Node::add_remote_handler`] does.
    pub fn change_route(&mut self, now: Time, change: &RouteChange) {
        match change {
            RouteChange::Handler {
                name,
                node,
                handles,
            } => {
                if *handles {
                    self.add_remote_handler(now, name, *node);
                } else {
                    self.router.remove_remote_handler(name, *node);
                }
            }
            RouteChange::Subscriber {
                name,
                node,
                subscribed,
            } => self.router.set_remote_subscriber(name, *node, *subscribed),
            RouteChange::Info { node, info } => self.router.set_node_info(*node, *info),
            RouteChange::Gone { node } => self.router.remove_node(*node),
        }
    }

    /// Messages waiting for a handler of their name.
    pub fn awaiting_handler(&self) -> usize {
        self.awaiting.len()
    }

    /// Keeps a message with no handler until one appears or its wait ends;
    /// returns it if it cannot wait.
    fn await_handler(&mut self, message: Message) -> Result<(), Message> {
        let may_wait = self.config.handler_wait > Duration::ZERO
            && self.state == State::Running
            && message.header.source.node == self.id
            && matches!(message.header.kind, Kind::Request | Kind::Send)
            && self.awaiting.len() < self.config.awaiting_max;
        if !may_wait {
            return Err(message);
        }
        let mut until = self.now + self.config.handler_wait;
        if let Some(deadline) = message.header.deadline {
            until = until.min(deadline);
        }
        self.next_awaiting_seq += 1;
        let key = (until, self.next_awaiting_seq);
        self.awaiting_names
            .entry(message.header.name.clone())
            .or_default()
            .push(key);
        self.awaiting.insert(key, message);
        Ok(())
    }

    fn forget_awaiting_name(&mut self, name: &Name, key: (Time, u64)) {
        if let Some(waiting) = self.awaiting_names.get_mut(name) {
            waiting.retain(|k| *k != key);
            if waiting.is_empty() {
                self.awaiting_names.remove(name);
            }
        }
    }

    fn refuse_awaiting(&mut self, detail: &str) {
        self.awaiting_names.clear();
        for message in std::mem::take(&mut self.awaiting).into_values() {
            self.refuse_at_node(message, BounceReason::NoHandler, detail);
        }
    }

    /// Checks what the node promises between any two inputs; returns the
    /// first that does not hold. Cheap: the simulator calls it after every step.
    ///
    /// - every message a component accepted has ended (handled, bounced or
    ///   dropped, each counted) or is still queued for it;
    /// - no mailbox holds more than its limit of messages admitted under it
    ///   (responses, admitted past it, aside);
    /// - no request is past its deadline without a reply or bounce.
    pub fn audit(&self) -> Result<(), String> {
        for slot in &self.slots {
            let queued = slot.mailbox.len() as u64;
            if slot.stats.unresolved() != queued {
                return Err(format!(
                    "{}: accepted {} but handled {}, bounced {}, dropped {} and {queued} queued",
                    slot.name,
                    slot.stats.accepted,
                    slot.stats.handled,
                    slot.stats.outcomes.bounced_total(),
                    slot.stats.outcomes.dropped_total(),
                ));
            }
            if !slot.mailbox.within_bounds() {
                return Err(format!(
                    "{}: {queued} messages queued, over its limit of {}",
                    slot.name, slot.mailbox.len_max
                ));
            }
        }
        if let Some((deadline, correlation)) = self.pending_deadlines.first()
            && *deadline < self.now
        {
            return Err(format!(
                "request {} is past its deadline ({deadline}) at {} with no reply or bounce",
                correlation.0, self.now
            ));
        }
        Ok(())
    }

    /// Checks every component's own [`Component::invariants`] (which may walk
    /// its whole state: the simulator calls this every 100 ms of virtual time
    /// and at the end of each phase).
    pub fn check_invariants(&self) -> Result<(), String> {
        for slot in &self.slots {
            slot.instance
                .invariants()
                .map_err(|broken| format!("{}: {broken}", slot.name))?;
        }
        Ok(())
    }

    /// Requests sent from this node awaiting a reply or bounce.
    pub fn pending_requests(&self) -> usize {
        self.pending.len()
    }

    /// Messages queued for the node's components.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Whether nothing is queued for a component (pending requests may remain).
    pub fn is_quiet(&self) -> bool {
        self.queue.is_empty()
    }

    /// How many frames a driver should take from the network before the next
    /// [`Node::run`]: what that run can dispatch, less what is already queued.
    /// A driver that reads no more than this leaves the rest in its transport's
    /// queue, whose limit pushes back on the senders (their sends fail with
    /// [`crate::TransmitError::WouldBlock`] at their own node), instead of
    /// filling mailboxes here and bouncing `Overloaded` across the network.
    pub fn intake_room(&self) -> usize {
        self.config
            .dispatch_per_turn_max
            .saturating_sub(self.queue.len())
    }

    /// Frames the transport could not pair into an envelope (no frame after the
    /// identity, a header without its payload): counted as a `malformed` drop,
    /// like a header that does not decode.
    pub fn handle_undecodable(&mut self, now: Time) {
        self.now = now;
        self.stats.frames_in += 1;
        self.stats.outcomes.drop(DropReason::Malformed);
    }

    /// Cancels every timer, so components start no new work; what is queued or in
    /// flight still runs. For draining before [`Node::shutdown`].
    pub fn quiesce(&mut self, now: Time) {
        self.now = now;
        self.timers.clear();
        self.timer_index.clear();
        for slot in &mut self.slots {
            slot.timers = 0;
        }
    }

    /// Stops every component and drops what is still queued, counted as `shutdown`.
    pub fn shutdown(&mut self, now: Time) {
        if self.state == State::Stopped {
            return;
        }
        self.now = now;
        for index in 0..self.slots.len() {
            let id = ComponentId(index as u32);
            let _ = self.invoke(id, None, |component, ctx| {
                component.stop(ctx);
                Ok(())
            });
            self.apply_effects(id);
        }
        self.refuse_awaiting("the node stopped");
        self.state = State::Stopped;
        self.quiesce(now);
        for (id, size, item) in std::mem::take(&mut self.queue) {
            let Item::Message(message) = item else {
                continue;
            };
            self.slots[id.index()]
                .mailbox
                .remove(size, message.header.is_response());
            // A sender on another node outlives this one: it gets its message
            // back. A sender here is stopping too, so the message is just counted.
            if message.header.is_bounceable() && message.header.source.node != self.id {
                self.refuse(id, message, BounceReason::Overloaded, "the node shut down");
            } else {
                self.slots[id.index()]
                    .stats
                    .outcomes
                    .drop(DropReason::Shutdown);
            }
        }
        self.pending.clear();
        self.pending_deadlines.clear();
    }

    // ---- dispatch ----

    /// Handles the next queued item (first come, first served across the node).
    /// Returns the component that ran, or `None` if nothing is queued.
    pub fn dispatch(&mut self, now: Time) -> Option<ComponentId> {
        self.now = now;
        let (id, size, item) = self.queue.pop_front()?;
        match item {
            Item::Timer { token } => {
                self.slots[id.index()].stats.timers_fired += 1;
                match self.invoke(id, None, |component, ctx| component.on_timer(ctx, token)) {
                    Invocation::Ok => self.apply_effects(id),
                    Invocation::Failed(error) => self.restart(id, error),
                    Invocation::Panicked(text) => self.restart(id, text),
                }
            }
            Item::Message(message) => {
                self.slots[id.index()]
                    .mailbox
                    .remove(size, message.header.is_response());
                self.dispatch_message(id, message);
            }
        }
        Some(id)
    }

    fn dispatch_message(&mut self, id: ComponentId, mut message: Message) {
        let now = self.now;
        if message
            .header
            .deadline
            .is_some_and(|deadline| deadline < now)
        {
            return self.refuse(
                id,
                message,
                BounceReason::Expired,
                "deadline passed in the queue",
            );
        }
        if self.slots[id.index()].failed {
            return self.refuse(
                id,
                message,
                BounceReason::HandlerFailed,
                "component stopped after too many restarts",
            );
        }
        message.header.push_hop(Hop {
            node: self.id,
            component: id,
            at: now,
        });
        let invocation = self.invoke(id, Some(&message.header), |component, ctx| {
            component.handle(ctx, &message)
        });
        match invocation {
            Invocation::Ok => {
                self.slots[id.index()].stats.handled += 1;
                self.trace(id, &message, crate::node::TraceOutcome::Handled);
                self.apply_effects(id);
                self.minter.recycle(message.header);
            }
            Invocation::Failed(error) => {
                self.refuse(id, message, BounceReason::HandlerFailed, &error);
            }
            Invocation::Panicked(text) => {
                self.refuse(
                    id,
                    message,
                    BounceReason::HandlerFailed,
                    &format!("handler panicked: {text}"),
                );
                self.restart(id, text);
            }
        }
    }

    /// Dispatches up to `dispatch_per_turn_max` items, timing each handler with
    /// `stopwatch`. Returns how many ran.
    pub fn run(&mut self, now: Time, stopwatch: &mut impl Stopwatch) -> usize {
        let mut ran = 0;
        stopwatch.lap();
        while ran < self.config.dispatch_per_turn_max {
            let Some(id) = self.dispatch(now) else { break };
            if let Some(elapsed) = stopwatch.lap() {
                self.slots[id.index()].stats.record_handler_time(elapsed);
            }
            ran += 1;
        }
        ran
    }

    fn invoke(
        &mut self,
        id: ComponentId,
        current: Option<&Header>,
        f: impl FnOnce(&mut dyn Component, &mut Ctx<'_>) -> HandlerResult,
    ) -> Invocation {
        let slot = &mut self.slots[id.index()];
        self.effects.clear();
        let mut ctx = Ctx {
            me: Address {
                node: self.id,
                component: id,
            },
            now: self.now,
            rng: &mut slot.rng,
            env: &mut slot.env,
            router: &self.router,
            effects: &mut self.effects,
            minter: &mut self.minter,
            current,
            effects_max: self.config.effects_max,
            last_route: &mut slot.last_route,
            overflowed: 0,
        };
        let instance = &mut slot.instance;
        let result = catch_unwind(AssertUnwindSafe(|| f(instance.as_mut(), &mut ctx)));
        slot.stats.effects_refused += ctx.overflowed;
        match result {
            Ok(Ok(())) => Invocation::Ok,
            Ok(Err(error)) => {
                self.effects.clear();
                Invocation::Failed(error.to_string())
            }
            Err(panic) => {
                self.effects.clear();
                Invocation::Panicked(panic_text(panic.as_ref()))
            }
        }
    }

    fn start_component(&mut self, id: ComponentId) {
        match self.invoke(id, None, |component, ctx| component.start(ctx)) {
            Invocation::Ok => self.apply_effects(id),
            Invocation::Failed(reason) | Invocation::Panicked(reason) => self.restart(id, reason),
        }
    }

    /// Replaces a failed component with a fresh instance and starts it, unless it
    /// has failed too often lately, in which case it stays stopped.
    fn restart(&mut self, id: ComponentId, mut reason: String) {
        loop {
            self.cancel_timers_of(id);
            let now = self.now;
            let slot = &mut self.slots[id.index()];
            if now.saturating_since(slot.window_start) > self.config.restart_window {
                slot.window_start = now;
                slot.restarts_in_window = 0;
            }
            slot.restarts_in_window += 1;
            if slot.restarts_in_window > self.config.restart_intensity_max {
                slot.failed = true;
                self.outputs
                    .push_back(Output::Event(Event::Failed { component: id }));
                return;
            }
            slot.stats.restarts += 1;
            slot.instance = (slot.factory)();
            self.outputs.push_back(Output::Event(Event::Restarted {
                component: id,
                reason,
            }));
            match self.invoke(id, None, |component, ctx| component.start(ctx)) {
                Invocation::Ok => return self.apply_effects(id),
                Invocation::Failed(text) | Invocation::Panicked(text) => reason = text,
            }
        }
    }

    // ---- effects and routing ----

    fn apply_effects(&mut self, id: ComponentId) {
        let mut effects = std::mem::take(&mut self.effects);
        for effect in effects.drain(..) {
            match effect {
                Effect::Message(message, route) => self.emit(message, route),
                Effect::SetTimer { at, token } => self.set_timer(id, at, token),
                Effect::CancelTimer { token } => self.cancel_timer(id, token),
                Effect::Subscribe(name) => {
                    if self.router.subscribe_local(&name, id) {
                        self.outputs.push_back(Output::Event(Event::Interest {
                            name,
                            subscribed: true,
                        }));
                    }
                }
                Effect::Unsubscribe(name) => {
                    if self.router.unsubscribe_local(&name, id) {
                        self.outputs.push_back(Output::Event(Event::Interest {
                            name,
                            subscribed: false,
                        }));
                    }
                }
            }
        }
        self.effects = effects;
    }

    /// Registers a request as pending, checks the size limit, and routes.
    fn emit(&mut self, message: Message, route: Option<RouteId>) {
        // A request is registered before anything can refuse it, so that the
        // refusal's bounce settles it like any other answer.
        if message.header.kind == Kind::Request {
            self.register_request(&message.header);
            if self.pending.len() > self.config.pending_requests_max {
                let detail = "too many requests awaiting replies";
                return self.refuse_at_node(message, BounceReason::Overloaded, detail);
            }
        }
        if let Some(flow) = &message.header.flow
            && validate_name(flow).is_err()
        {
            let detail = "the flow name is not a valid name";
            return self.refuse_at_node(message, BounceReason::NoHandler, detail);
        }
        if message.payload.len() > self.config.message_bytes_max {
            let detail = "larger than message_bytes_max";
            return self.refuse_at_node(message, BounceReason::TooLarge, detail);
        }
        self.route(message, route);
    }

    fn register_request(&mut self, header: &Header) {
        let component = header.source.component;
        self.slots[component.index()].stats.requests_sent += 1;
        let deadline = header.deadline.expect("requests always carry a deadline");
        let pending = Pending {
            component,
            sent: self.now,
            deadline,
            name: header.name.clone(),
            trace: header.trace,
        };
        self.pending.insert(header.correlation, pending);
        self.pending_deadlines
            .insert((deadline, header.correlation));
    }

    /// Routes by target address, or by name (`route` is the name's route if the
    /// caller already looked it up).
    fn route(&mut self, message: Message, route: Option<RouteId>) {
        if let Some(target) = message.header.target {
            if target.node == self.id {
                self.deliver_local(target.component, message);
            } else {
                self.transmit(target.node, message);
            }
            return;
        }
        let route = route.or_else(|| self.router.lookup(&message.header.name));
        if message.header.kind == Kind::Publish {
            return self.publish(message, route);
        }
        let slots = &self.slots;
        let queue_len = |c: ComponentId| slots[c.index()].mailbox.len();
        match route.and_then(|route| self.router.pick(route, queue_len)) {
            Some(Destination::Local(component)) => self.deliver_local(component, message),
            Some(Destination::Remote(node)) => self.transmit(node, message),
            None => {
                if let Err(message) = self.await_handler(message) {
                    self.refuse_at_node(
                        message,
                        BounceReason::NoHandler,
                        "no component handles this name",
                    );
                }
            }
        }
    }

    fn publish(&mut self, message: Message, route: Option<RouteId>) {
        let (local, remote) =
            route.map_or((&[][..], &[][..]), |route| self.router.subscribers(route));
        let local: SmallVec<[ComponentId; 4]> = local.iter().copied().collect();
        let remote: SmallVec<[NodeId; 4]> = remote.iter().copied().collect();
        if local.is_empty() && remote.is_empty() {
            if let Some(slot) = self.slots.get_mut(message.header.source.component.index()) {
                slot.stats.published_unheard += 1;
            }
            return;
        }
        for node in remote {
            self.transmit(node, message.clone());
        }
        for component in local {
            self.deliver_local(component, message.clone());
        }
    }

    fn publish_local(&mut self, message: Message, route: Option<RouteId>) {
        let (local, _) = route.map_or((&[][..], &[][..]), |route| self.router.subscribers(route));
        let local: SmallVec<[ComponentId; 4]> = local.iter().copied().collect();
        if local.is_empty() {
            return self.stats.outcomes.drop(DropReason::NoHandler);
        }
        for component in local {
            self.deliver_local(component, message.clone());
        }
    }

    fn transmit(&mut self, to: NodeId, message: Message) {
        self.stats.frames_out += 1;
        let header = encode_header_into(&message.header, &mut self.encode_buf);
        self.minter.recycle(message.header);
        self.outputs.push_back(Output::Transmit(Transmit {
            to,
            header,
            payload: message.payload,
        }));
    }

    /// Admission: count, settle responses against pending requests, queue or refuse.
    fn deliver_local(&mut self, id: ComponentId, message: Message) {
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
            let correlation = message.header.correlation;
            match self.pending.get(&correlation) {
                Some(pending) if pending.component == id => {
                    let pending = self.pending.remove(&correlation).expect("just looked up");
                    let stats = &mut self.slots[id.index()].stats;
                    stats.responses_received += 1;
                    stats.replies_received += u64::from(message.header.kind == Kind::Reply);
                    stats.record_response_time(self.now.saturating_since(pending.sent));
                    self.pending_deadlines
                        .remove(&(pending.deadline, correlation));
                }
                _ => return self.drop_counted(id, &message, DropReason::LateReply),
            }
            // A response is admitted past the mailbox limits: there is at most one
            // per pending request, and pending requests are bounded. This is what
            // lets every request end in a reply or a bounce even under overload.
            let size = message.size_bytes();
            self.slots[id.index()].mailbox.add(size, true);
            self.queue.push_back((id, size, Item::Message(message)));
            return;
        }
        let size = message.size_bytes();
        let mailbox = &mut self.slots[id.index()].mailbox;
        if mailbox.admits(size) {
            mailbox.add(size, false);
            self.queue.push_back((id, size, Item::Message(message)));
        } else if self.config.sabotage == Sabotage::SilentMailboxDrop {
            // The defect the accounting checker must catch: gone, uncounted.
        } else {
            self.refuse(id, message, BounceReason::Overloaded, "mailbox full");
        }
    }

    /// A component refuses a message: bounce it if it may be bounced, else drop it.
    fn refuse(&mut self, id: ComponentId, message: Message, reason: BounceReason, detail: &str) {
        if message.header.is_bounceable() {
            self.slots[id.index()].stats.outcomes.bounce(reason);
            self.trace(id, &message, TraceOutcome::Bounced(reason));
            self.bounce(
                message,
                reason,
                detail,
                Address {
                    node: self.id,
                    component: id,
                },
            );
        } else {
            self.drop_counted(id, &message, DropReason::for_bounce(reason));
        }
    }

    /// The node refuses a message no component took.
    fn refuse_at_node(&mut self, message: Message, reason: BounceReason, detail: &str) {
        let by = Address {
            node: self.id,
            component: ComponentId::NODE,
        };
        if message.header.is_bounceable() {
            self.stats.outcomes.bounce(reason);
            self.bounce(message, reason, detail, by);
        } else {
            self.stats.outcomes.drop(DropReason::for_bounce(reason));
        }
    }

    fn drop_counted(&mut self, id: ComponentId, message: &Message, reason: DropReason) {
        self.slots[id.index()].stats.outcomes.drop(reason);
        self.trace(id, message, TraceOutcome::Dropped(reason));
    }

    fn bounce(&mut self, message: Message, reason: BounceReason, detail: &str, by: Address) {
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
        header.bounce = Some(Bounce::new(reason, detail));
        self.route(Message { header, payload }, None);
    }

    /// A request got nothing in time: the requester gets an `Expired` bounce.
    fn expire(&mut self, correlation: CorrelationId, pending: Pending) {
        let requester = Address {
            node: self.id,
            component: pending.component,
        };
        let header = Header {
            id: self.minter.message_id(),
            name: pending.name,
            kind: Kind::Bounce,
            source: Address {
                node: self.id,
                component: ComponentId::NODE,
            },
            target: Some(requester),
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
        let slot = &mut self.slots[pending.component.index()];
        slot.stats.accepted += 1;
        slot.stats.responses_received += 1;
        slot.stats.returned.bounce(BounceReason::Expired);
        let message = Message {
            header: self.minter.boxed(header),
            payload: Bytes::new(),
        };
        let size = message.size_bytes();
        slot.mailbox.add(size, true);
        self.queue
            .push_back((pending.component, size, Item::Message(message)));
    }

    #[inline]
    fn trace(&mut self, id: ComponentId, message: &Message, outcome: TraceOutcome) {
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

    // ---- timers ----

    fn set_timer(&mut self, id: ComponentId, at: Time, token: u64) {
        if let Some(key) = self.timer_index.remove(&(id, token)) {
            self.timers.remove(&key);
            self.slots[id.index()].timers -= 1;
        }
        let slot = &mut self.slots[id.index()];
        if slot.timers >= slot.limits.timers_max {
            // Refused like any effect over a limit: counted, never silent.
            slot.stats.effects_refused += 1;
            return;
        }
        slot.timers += 1;
        self.next_timer_seq += 1;
        let key = (at, self.next_timer_seq);
        self.timers.insert(key, (id, token));
        self.timer_index.insert((id, token), key);
    }

    fn cancel_timer(&mut self, id: ComponentId, token: u64) {
        if let Some(key) = self.timer_index.remove(&(id, token)) {
            self.timers.remove(&key);
            self.slots[id.index()].timers -= 1;
        }
    }

    fn cancel_timers_of(&mut self, id: ComponentId) {
        let keys: Vec<(ComponentId, u64)> = self
            .timer_index
            .keys()
            .filter(|(c, _)| *c == id)
            .copied()
            .collect();
        for (component, token) in keys {
            self.cancel_timer(component, token);
        }
    }

    // ---- outputs ----

    /// The next output, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When the node next needs [`Node::handle_timeout`] or [`Node::run`]: the
    /// last `now` if work is queued, else the earliest timer or request deadline.
    pub fn poll_timeout(&self) -> Option<Time> {
        if !self.queue.is_empty() {
            return Some(self.now);
        }
        let timer = self.timers.first_key_value().map(|(key, _)| key.0);
        let deadline = self
            .pending_deadlines
            .first()
            .map(|(deadline, _)| *deadline);
        let awaiting = self
            .awaiting
            .first_key_value()
            .map(|((until, _), _)| *until);
        [timer, deadline, awaiting].into_iter().flatten().min()
    }

    /// The node's status, as the control plane reports it.
    pub fn status(&self, now: Time) -> control::NodeStatus {
        let components = self
            .slots
            .iter()
            .enumerate()
            .map(|(index, slot)| control::ComponentStatus {
                name: slot.name.to_string(),
                index: index as u32,
                accepted: slot.stats.accepted,
                handled: slot.stats.handled,
                bounced: slot.stats.outcomes.bounced(),
                dropped: slot.stats.outcomes.dropped(),
                restarts: slot.stats.restarts,
                queue_len: slot.mailbox.len() as u32,
                queue_bytes: slot.mailbox.bytes() as u64,
                queue_len_max: slot.mailbox.len_max as u32,
                queue_bytes_max: slot.mailbox.bytes_max as u64,
                queue_len_peak: slot.mailbox.len_peak as u32,
                handler_p50_ns: slot.stats.handler_ns_at(0.5),
                response_p50_us: slot.stats.response_us_at(0.5),
                response_p99_us: slot.stats.response_us_at(0.99),
                handler_p99_ns: slot.stats.handler_ns_at(0.99),
                timers_fired: slot.stats.timers_fired,
                returned: slot.stats.returned.bounced(),
                effects_refused: slot.stats.effects_refused,
                requests_sent: slot.stats.requests_sent,
                responses_received: slot.stats.responses_received,
            })
            .collect();
        control::NodeStatus {
            node: self.id.0,
            name: self.name.clone(),
            at_us: now.as_micros(),
            components,
            node_dropped: self.stats.outcomes.dropped(),
            node_bounced: self.stats.outcomes.bounced(),
            frames_in: self.stats.frames_in,
            frames_out: self.stats.frames_out,
            pending_requests: self.pending.len() as u32,
            awaiting_handler: self.awaiting.len() as u32,
            // The driver fills in what it runs beside the node.
            discovery: None,
        }
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
