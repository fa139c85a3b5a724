//! A component's capacity, live: what its mailbox holds, how fast it admits,
//! how many requests it may have outstanding; and the node's dispatch budget
//! per turn. Each limit has a value and a source (config, a live change, a
//! share of a network-wide total); a change is an [`Input::Capacity`]
//! (recorded and replayed like any other input) and applies from the next
//! message. Messages already queued stay queued: a lowered mailbox bound
//! refuses new messages until the queue is back under it.
//!
//! [`Input::Capacity`]: crate::Input::Capacity

use bytes::Bytes;
use exchange_circuit::Rate;
use exchange_idl::exchange::v1::control;
use prost::Message as _;

use super::Node;
use super::output::{Event, Output};
use crate::ids::{Address, ComponentId, CorrelationId};
use crate::message::{ContentType, Hop, Horizon, Kind, Message};

/// One of the limits a [`CapacityChange`] sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Limit {
    /// Messages a component's mailbox holds at most; 0 refuses every new
    /// message (replies and bounces to its requests are still admitted).
    MailboxLenMax,
    /// Bytes a component's mailbox holds at most.
    MailboxBytesMax,
    /// Messages a component admits per second, on average; 0: unlimited.
    RatePerSec,
    /// Messages a component admits at once after a quiet spell; 0: a tenth
    /// of the rate (at least 1).
    Burst,
    /// Requests a component may have awaiting a reply at once; 0: unlimited
    /// (the node's `pending_requests_max` still applies).
    InFlightMax,
    /// Items the node dispatches per [`Input::Run`](crate::Input::Run):
    /// node-wide, never per component nor network-wide.
    DispatchPerTurnMax,
}

impl Limit {
    /// Every limit, in the order status lists them.
    pub const ALL: [Limit; 6] = [
        Limit::MailboxLenMax,
        Limit::MailboxBytesMax,
        Limit::RatePerSec,
        Limit::Burst,
        Limit::InFlightMax,
        Limit::DispatchPerTurnMax,
    ];

    /// The limits of a component (all but the node-wide one).
    pub const COMPONENT: [Limit; 5] = [
        Limit::MailboxLenMax,
        Limit::MailboxBytesMax,
        Limit::RatePerSec,
        Limit::Burst,
        Limit::InFlightMax,
    ];

    /// Its name in config, on the wire and in logs.
    pub fn name(self) -> &'static str {
        match self {
            Limit::MailboxLenMax => "mailbox_len_max",
            Limit::MailboxBytesMax => "mailbox_bytes_max",
            Limit::RatePerSec => "rate",
            Limit::Burst => "burst",
            Limit::InFlightMax => "in_flight_max",
            Limit::DispatchPerTurnMax => "dispatch_per_turn_max",
        }
    }

    /// The values it may take, inclusive.
    pub fn range(self) -> (u64, u64) {
        match self {
            Limit::MailboxLenMax => (0, 10_000_000),
            Limit::MailboxBytesMax => (1024, 1 << 40),
            Limit::RatePerSec => (0, u64::from(Rate::PER_SEC_MAX)),
            Limit::Burst => (0, u64::from(Rate::BURST_MAX)),
            Limit::InFlightMax => (0, 10_000_000),
            Limit::DispatchPerTurnMax => (1, 100_000),
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a limit's value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The configuration the node started with.
    Config,
    /// A live change for this node (or its whole container).
    Live,
    /// A live change for every instance of the component across the network:
    /// `total` shared among the `instances` the router knows (this one
    /// included), each taking `total / instances` rounded up (0 stays 0).
    Network {
        /// The network-wide value.
        total: u64,
        /// Instances it is shared among.
        instances: u32,
    },
}

/// A limit's effective value and where it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setting {
    /// The value in force on this node.
    pub value: u64,
    /// Where it came from.
    pub source: Source,
}

impl Setting {
    fn config(value: u64) -> Setting {
        Setting {
            value,
            source: Source::Config,
        }
    }

    fn share(total: u64, instances: u32) -> Setting {
        let instances = instances.max(1);
        Setting {
            value: total.div_ceil(u64::from(instances)),
            source: Source::Network { total, instances },
        }
    }
}

/// A component's limits as they stand (see [`Limit::COMPONENT`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity([Setting; 5]);

impl Capacity {
    pub(super) fn from_config(limits: &super::ComponentLimits) -> Capacity {
        Capacity([
            Setting::config(limits.mailbox_len_max as u64),
            Setting::config(limits.mailbox_bytes_max as u64),
            Setting::config(u64::from(limits.rate_per_sec)),
            Setting::config(u64::from(limits.burst)),
            Setting::config(limits.in_flight_max as u64),
        ])
    }

    /// Whether configured limits are in range (each as [`Limit::range`]).
    pub(super) fn check_config(limits: &super::ComponentLimits) -> Result<(), CapacityError> {
        for (limit, setting) in Capacity::from_config(limits).iter() {
            let (min, max) = limit.range();
            if !(min..=max).contains(&setting.value) {
                return Err(CapacityError::out_of_range(limit, setting.value));
            }
        }
        Ok(())
    }

    /// One limit's setting. Panics on [`Limit::DispatchPerTurnMax`], which is
    /// the node's (see [`Node::dispatch_per_turn`]).
    pub fn get(&self, limit: Limit) -> Setting {
        self.0[limit.index()]
    }

    /// The limits and their settings, in [`Limit::COMPONENT`] order.
    pub fn iter(&self) -> impl Iterator<Item = (Limit, Setting)> + '_ {
        Limit::COMPONENT.into_iter().zip(self.0.iter().copied())
    }

    /// The admission rate in force, if any: the burst, when 0, is a tenth of
    /// the rate (at least 1).
    pub fn rate(&self) -> Option<Rate> {
        let per_sec = u32::try_from(self.get(Limit::RatePerSec).value).ok()?;
        if per_sec == 0 {
            return None;
        }
        let burst = match self.get(Limit::Burst).value {
            0 => (per_sec / 10).max(1),
            burst => u32::try_from(burst).unwrap_or(Rate::BURST_MAX),
        };
        Some(Rate { per_sec, burst })
    }
}

/// A live change of capacity: which limits to set to what, for one
/// component or every component of the node, on this node alone or as a
/// network-wide total. Check it with [`Node::check_capacity`] before handing
/// it in as [`Input::Capacity`](crate::Input::Capacity); the node refuses one
/// that does not check (nothing changes, [`Event::CapacityRefused`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CapacityChange {
    /// The component; `None`: every component of the node (and the node-wide
    /// [`Limit::DispatchPerTurnMax`] may be set).
    pub component: Option<ComponentId>,
    /// The values are network-wide totals, shared among the component's
    /// instances (see [`Source::Network`]).
    pub network: bool,
    /// New values, by [`Limit`] (indexed as [`Limit::ALL`]); `None`: unchanged.
    pub values: [Option<u64>; 6],
    /// Who asked, for the log (`control 127.0.0.1:50412`, `sim`).
    pub by: String,
}

impl CapacityChange {
    /// Sets `limit` to `value`.
    pub fn set(mut self, limit: Limit, value: u64) -> CapacityChange {
        self.values[limit.index()] = Some(value);
        self
    }

    /// The value asked for `limit`, if any.
    pub fn value(&self, limit: Limit) -> Option<u64> {
        self.values[limit.index()]
    }

    fn requested(&self) -> impl Iterator<Item = (Limit, u64)> + '_ {
        Limit::ALL
            .into_iter()
            .filter_map(|limit| Some((limit, self.value(limit)?)))
    }
}

/// Why a [`CapacityChange`] was refused; nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CapacityError {
    /// No such component on this node.
    #[error("no component {0} on this node")]
    UnknownComponent(ComponentId),
    /// A value outside its range.
    #[error("{limit} {value} is out of range ({min} to {max})")]
    OutOfRange {
        /// The limit.
        limit: Limit,
        /// The value asked.
        value: u64,
        /// Least allowed.
        min: u64,
        /// Most allowed.
        max: u64,
    },
    /// A node-wide limit asked of one component or of the network.
    #[error("{0} is node-wide: set it for the whole container, not a component or the network")]
    NodeWide(Limit),
    /// Nothing to change.
    #[error("the change sets no limit")]
    Empty,
}

impl CapacityError {
    fn out_of_range(limit: Limit, value: u64) -> CapacityError {
        let (min, max) = limit.range();
        CapacityError::OutOfRange {
            limit,
            value,
            min,
            max,
        }
    }
}

impl Node {
    /// Whether `change` would be taken; the reason if not.
    pub fn check_capacity(&self, change: &CapacityChange) -> Result<(), CapacityError> {
        if let Some(id) = change.component
            && id.index() >= self.slots.len()
        {
            return Err(CapacityError::UnknownComponent(id));
        }
        let mut any = false;
        for (limit, value) in change.requested() {
            any = true;
            if limit == Limit::DispatchPerTurnMax && (change.component.is_some() || change.network)
            {
                return Err(CapacityError::NodeWide(limit));
            }
            let (min, max) = limit.range();
            if !(min..=max).contains(&value) {
                return Err(CapacityError::out_of_range(limit, value));
            }
        }
        if !any {
            return Err(CapacityError::Empty);
        }
        Ok(())
    }

    /// A component's capacity as it stands.
    pub fn capacity(&self, id: ComponentId) -> Option<&Capacity> {
        self.slots.get(id.index()).map(|slot| &slot.capacity)
    }

    /// The node's dispatch budget per turn and where it came from.
    pub fn dispatch_per_turn(&self) -> Setting {
        self.dispatch_per_turn
    }

    /// Messages a component's admission rate would admit now, if it has one.
    pub fn tokens(&self, id: ComponentId) -> Option<u32> {
        self.queue.tokens(id, self.now)
    }

    /// Applies a capacity change (see [`CapacityChange`]); one that does not
    /// check is refused whole.
    pub(super) fn change_capacity(&mut self, change: CapacityChange) {
        if let Err(error) = self.check_capacity(&change) {
            let refused = Event::CapacityRefused {
                error,
                by: change.by,
            };
            return self.outputs.push_back(Output::Event(refused));
        }
        if let Some(value) = change.value(Limit::DispatchPerTurnMax) {
            let new = Setting {
                value,
                source: Source::Live,
            };
            let old = std::mem::replace(&mut self.dispatch_per_turn, new);
            self.note_change(None, Limit::DispatchPerTurnMax, old, new, &change.by);
        }
        let targets = match change.component {
            Some(id) => id.index()..id.index() + 1,
            None => 0..self.slots.len(),
        };
        for index in targets {
            let id = ComponentId(index as u32);
            let instances = self.instances(id);
            let mut capacity = self.slots[index].capacity;
            for limit in Limit::COMPONENT {
                let Some(value) = change.value(limit) else {
                    continue;
                };
                capacity.0[limit.index()] = if change.network {
                    Setting::share(value, instances)
                } else {
                    Setting {
                        value,
                        source: Source::Live,
                    }
                };
            }
            self.apply_capacity(id, capacity, &change.by);
        }
    }

    /// Shares network-wide limits anew among the instances the router knows
    /// now (after a route change: an instance came or went).
    pub(super) fn reshare_capacity(&mut self) {
        for index in 0..self.slots.len() {
            let id = ComponentId(index as u32);
            let mut capacity = self.slots[index].capacity;
            let mut shared = false;
            for setting in &mut capacity.0 {
                if let Source::Network { total, .. } = setting.source {
                    shared = true;
                    *setting = Setting::share(total, self.instances(id));
                }
            }
            if shared {
                self.apply_capacity(id, capacity, "network share");
            }
        }
    }

    /// Instances of a component the router knows, this one included: the
    /// nodes that handle the first name it handles.
    fn instances(&self, id: ComponentId) -> u32 {
        let remote = self.slots[id.index()]
            .handles
            .first()
            .map_or(0, |name| self.router.remote_handlers(name).len());
        u32::try_from(remote + 1).unwrap_or(u32::MAX)
    }

    /// Puts `capacity` in force for `id`: the mailbox bounds, the admission
    /// rate (keeping the tokens spent); one event per limit that changed.
    /// A bound that moved past the queue starts or ends its congestion at once.
    fn apply_capacity(&mut self, id: ComponentId, capacity: Capacity, by: &str) {
        let old = std::mem::replace(&mut self.slots[id.index()].capacity, capacity);
        if old == capacity {
            return;
        }
        if old.rate() != capacity.rate() {
            self.queue.set_rate(id, capacity.rate(), self.now);
        }
        self.queue.set_bounds(
            id,
            capacity.get(Limit::MailboxLenMax).value as usize,
            capacity.get(Limit::MailboxBytesMax).value as usize,
            self.config.marks(),
        );
        if let Some(congested) = self.queue.congestion_moved(id) {
            self.congestion(id, congested);
        }
        for limit in Limit::COMPONENT {
            let (old, new) = (old.get(limit), capacity.get(limit));
            if old != new {
                self.note_change(Some(id), limit, old, new, by);
            }
        }
    }

    fn note_change(
        &mut self,
        component: Option<ComponentId>,
        limit: Limit,
        old: Setting,
        new: Setting,
        by: &str,
    ) {
        let event = Event::CapacityChanged {
            component,
            limit,
            old,
            new,
            by: by.to_owned(),
        };
        self.outputs.push_back(Output::Event(event));
    }
}

/// The name a node publishes a component's congestion under, and its end.
pub const CONGESTED: &str = "exchange.congested";
/// See [`CONGESTED`].
pub const DECONGESTED: &str = "exchange.decongested";

impl Node {
    /// A component became congested (or no longer is): an event for the
    /// driver, and a publish of `exchange.congested` (or `decongested`) to
    /// whoever subscribes, on this node or any other.
    #[cold]
    pub(super) fn congestion(&mut self, id: ComponentId, congested: bool) {
        self.queue.set_congested(id, congested);
        let mailbox = self.queue.mailbox(id);
        let (queue_len, limit) = (mailbox.len(), mailbox.len_max);
        self.outputs.push_back(Output::Event(Event::Congestion {
            component: id,
            congested,
            queue_len,
            limit,
        }));
        let body = control::Congestion {
            node: self.id.0,
            node_name: self.name.clone(),
            component: self.slots[id.index()].name.to_string(),
            queue_len: queue_len as u32,
            limit: limit as u32,
            congested,
        };
        let name = if congested { CONGESTED } else { DECONGESTED };
        let source = Address {
            node: self.id,
            component: ComponentId::NODE,
        };
        let mut header = self.minter.spare_header();
        header.id = self.minter.message_id();
        header.name = self.router.intern(name);
        header.kind = Kind::Publish;
        header.source = source;
        header.target = None;
        header.correlation = CorrelationId(0);
        header.flow = None;
        header.horizon = Horizon::Unspecified;
        header.deadline = None;
        header.trace = self.minter.trace_child(None);
        header.hops.clear();
        header.hops.push(Hop {
            node: self.id,
            component: ComponentId::NODE,
            at: self.now,
        });
        header.content_type = ContentType::Protobuf;
        header.bounce = None;
        let payload = Bytes::from(body.encode_to_vec());
        self.route(Message { header, payload }, None);
    }
}
