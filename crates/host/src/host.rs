//! [`Host`]: a node, its membership and its recorder, driven as one.

use std::net::SocketAddr;

use exchange_discovery::{
    Datagram, Event as MemberEvent, Membership, MetaTooLarge, Refusal, Settings,
};
use exchange_idl::exchange::v1::control;
use exchange_idl::exchange::v1::record as rec;
use exchange_runtime::record::{Recorder, ReplayError};
use exchange_runtime::{Event, Input, Node, Output as NodeOutput, RouteChange, Time, Transmit};

use crate::routes;
use crate::shares::NetworkLimits;

/// What a host hands out, from [`Host::poll_output`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Output {
    /// Frames for another node: carry them; if that fails, hand the transmit
    /// back as [`Input::TransmitFailed`].
    Transmit(Transmit),
    /// A membership datagram to send.
    Datagram(Datagram),
    /// Something the node reports (a trace, a restart). Without a membership
    /// this includes the node's [`Event::Interest`], for the driver to tell
    /// the other nodes (as [`RouteChange::Subscriber`]s); with one, the
    /// membership advertises it.
    Event(Event),
    /// A member came, changed or went; the node has already taken the route
    /// changes it makes. For the driver's connections and news.
    Member(MemberEvent),
    /// Nothing else to hand out: the host next needs [`Host::handle_timeout`]
    /// at this time ([`Time::MAX`]: nothing is scheduled).
    Timeout(Time),
}

/// How a node describes itself to the other members.
#[derive(Clone, Copy, Debug)]
pub struct Labels<'a> {
    /// The version advertised with every name handled.
    pub version: &'a str,
    /// Where the node's app plane is reached.
    pub app_endpoint: &'a str,
    /// Where its control plane is reached.
    pub control_endpoint: &'a str,
    /// Its network label.
    pub network: &'a str,
    /// Its host label.
    pub host: &'a str,
}

/// A node and what runs beside it. See the [crate docs](crate).
///
/// The methods, in the order a driver uses them: [`Host::new`], then
/// [`Host::record`] and [`Host::join`] if wanted; inputs
/// ([`Host::handle`] for the node's own, [`Host::handle_datagram`],
/// [`Host::handle_timeout`]); then [`Host::poll_output`] until
/// [`Output::Timeout`].
#[derive(Debug)]
pub struct Host {
    node: Node,
    membership: Option<Membership>,
    recorder: Option<Recorder>,
    /// The time of the latest input.
    now: Time,
    /// Subscriptions the membership could not advertise (the metadata would
    /// not fit a datagram).
    unadvertised: u64,
    /// Network-wide capacity totals, spread with the metadata.
    network_limits: NetworkLimits,
}

impl Host {
    /// A host for `node`, with no membership and not recording.
    pub fn new(node: Node) -> Host {
        Host {
            node,
            membership: None,
            recorder: None,
            now: Time::ZERO,
            unadvertised: 0,
            network_limits: NetworkLimits::default(),
        }
    }

    /// Records every input the node takes from now on, and digests of what
    /// it emits ([`exchange_runtime::record`]).
    pub fn record(&mut self) {
        self.recorder = Some(Recorder::new(self.node.id()));
    }

    /// Joins a cluster: a membership with `settings`, advertising what the
    /// node handles and subscribes to now, with `labels`; it announces itself
    /// to its seeds at once. Its events become the node's routes from then
    /// on. Fails, changing nothing, if the metadata does not fit a datagram.
    pub fn join(
        &mut self,
        now: Time,
        settings: Settings,
        labels: &Labels<'_>,
    ) -> Result<(), MetaTooLarge> {
        let meta = routes::local_meta(&self.node, labels);
        let mut membership = Membership::new(settings, meta)?;
        self.now = self.now.max(now);
        membership.start(now);
        self.membership = Some(membership);
        Ok(())
    }

    /// Leaves the cluster (before a drain): others stop routing here at once.
    pub fn leave(&mut self, now: Time) {
        if let Some(membership) = self.membership.as_mut() {
            membership.leave(now);
        }
    }

    // ---- getters ----

    /// The node.
    pub fn node(&self) -> &Node {
        &self.node
    }

    /// The membership, once joined.
    pub fn membership(&self) -> Option<&Membership> {
        self.membership.as_ref()
    }

    /// The records so far, leaving the buffer empty (nothing if not
    /// recording); a driver appends them to its file now and then.
    pub fn take_recording(&mut self) -> Vec<u8> {
        self.recorder
            .as_mut()
            .map(Recorder::take)
            .unwrap_or_default()
    }

    /// The node's status, with what the membership knows.
    pub fn status(&self, now: Time) -> control::NodeStatus {
        control::NodeStatus {
            discovery: self
                .membership
                .as_ref()
                .map(|membership| discovery_status(membership, self.unadvertised)),
            ..self.node.status(now)
        }
    }

    // ---- inputs ----

    /// Hands `input` to the node, recording it first. A [`Input::Run`] with
    /// nothing queued changes nothing and is neither recorded nor handed on.
    pub fn handle(&mut self, now: Time, input: Input<'_>) {
        self.now = self.now.max(now);
        if input == Input::Run && self.node.is_quiet() {
            return;
        }
        if let Some(recorder) = self.recorder.as_mut() {
            recorder.input(now, &input);
        }
        self.node.handle(now, input);
    }

    /// A membership datagram from `from` (ignored before [`Host::join`]).
    pub fn handle_datagram(&mut self, now: Time, from: SocketAddr, bytes: &[u8]) {
        self.now = self.now.max(now);
        if let Some(membership) = self.membership.as_mut() {
            membership.handle_datagram(now, from, bytes);
        }
    }

    /// Does what is due at `now`: the membership's timers, the node's
    /// ([`Input::Timeout`]) and a turn of its handlers ([`Input::Run`]) if
    /// anything is queued; the node's load goes into its advertised metadata.
    pub fn handle_timeout(&mut self, now: Time) {
        self.tick(now);
        self.handle(now, Input::Run);
        self.advertise_load(now);
    }

    /// [`Host::handle_timeout`] without the turn of handlers: for a driver
    /// whose node's one core is still busy (the simulator's handler cost),
    /// timers and deadlines are kept, and the run waits.
    pub fn handle_timeout_busy(&mut self, now: Time) {
        self.tick(now);
        self.advertise_load(now);
    }

    fn tick(&mut self, now: Time) {
        self.now = self.now.max(now);
        if let Some(membership) = self.membership.as_mut()
            && membership.poll_timeout().is_some_and(|at| at <= now)
        {
            membership.handle_timeout(now);
        }
        if self.node.poll_timeout().is_some_and(|at| at <= now) {
            self.handle(now, Input::Timeout);
        }
    }

    fn advertise_load(&mut self, now: Time) {
        if let Some(membership) = self.membership.as_mut() {
            membership.set_load(now, self.node.queued());
        }
    }

    /// Feeds one recorded input to the node, bypassing the recorder (see
    /// [`exchange_runtime::record::feed`]).
    pub fn replay(&mut self, record: &rec::Record) -> Result<(), ReplayError> {
        self.now = self.now.max(Time::from_micros(record.at_us));
        exchange_runtime::record::feed(&mut self.node, record)
    }

    // ---- outputs ----

    /// The next output: the node's, then the membership's news (whose route
    /// changes the node takes first, recorded) and datagrams; once none is
    /// left, [`Output::Timeout`].
    pub fn poll_output(&mut self) -> Output {
        loop {
            let output = self.node.poll_output();
            if let Some(recorder) = self.recorder.as_mut() {
                recorder.output(&output);
            }
            match output {
                NodeOutput::Transmit(transmit) => return Output::Transmit(transmit),
                NodeOutput::Event(Event::Interest { name, subscribed })
                    if self.membership.is_some() =>
                {
                    self.advertise(name.as_str(), subscribed);
                }
                NodeOutput::Event(event) => {
                    if self.membership.is_some()
                        && self.network_limits.note(&self.node, &event, self.now)
                    {
                        self.advertise_network_limits();
                    }
                    return Output::Event(event);
                }
                NodeOutput::Timeout(at) => {
                    if let Some(output) = self.poll_membership() {
                        return output;
                    }
                    let membership = self.membership.as_ref().and_then(Membership::poll_timeout);
                    return Output::Timeout(membership.map_or(at, |m| m.min(at)));
                }
            }
        }
    }

    /// When the host next needs [`Host::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Time> {
        let membership = self.membership.as_ref().and_then(Membership::poll_timeout);
        [self.node.poll_timeout(), membership]
            .into_iter()
            .flatten()
            .min()
    }

    /// The membership's next event, after the node took its route changes; or
    /// its next datagram.
    fn poll_membership(&mut self) -> Option<Output> {
        let membership = self.membership.as_mut()?;
        if let Some(event) = membership.poll_event() {
            let mut changes: Vec<RouteChange> = Vec::new();
            routes::changes(membership.local(), &event, |change| changes.push(change));
            for change in changes {
                self.handle(self.now, Input::Route(change));
            }
            let meta = match &event {
                MemberEvent::Up(member) => Some(&member.meta),
                MemberEvent::Changed { after, .. } => Some(&after.meta),
                MemberEvent::Down(_) => None,
            };
            if let Some(meta) = meta.filter(|meta| !meta.network_limits.is_empty()) {
                self.learn_network_limits(meta);
            }
            return Some(Output::Member(event));
        }
        membership.poll_transmit().map(Output::Datagram)
    }

    /// Takes the network-wide totals newer than ours from a member's
    /// metadata, as inputs to the node, and advertises them in turn.
    fn learn_network_limits(&mut self, meta: &exchange_idl::exchange::v1::discovery::Member) {
        let changes = self.network_limits.learn(&self.node, meta);
        if changes.is_empty() {
            return;
        }
        for change in changes {
            self.handle(self.now, Input::Capacity(change));
        }
        self.advertise_network_limits();
    }

    fn advertise_network_limits(&mut self) {
        let Some(membership) = self.membership.as_mut() else {
            return;
        };
        let limits = self.network_limits.advertised();
        // A handful of entries per component: if the metadata cannot take
        // them, the totals stay on this node (counted like subscriptions).
        if membership
            .update_meta(self.now, |meta| meta.network_limits = limits)
            .is_err()
        {
            self.unadvertised += 1;
        }
    }

    fn advertise(&mut self, name: &str, subscribed: bool) {
        let Some(membership) = self.membership.as_mut() else {
            return;
        };
        let now = self.now;
        let changed = membership.update_meta(now, |meta| {
            routes::note_interest(meta, name, subscribed);
        });
        if changed.is_err() {
            self.unadvertised += 1;
        }
    }
}

/// What the control plane reports of a membership (and of the subscriptions
/// it could not advertise).
fn discovery_status(membership: &Membership, unadvertised: u64) -> control::DiscoveryStatus {
    let stats = membership.stats();
    control::DiscoveryStatus {
        members: membership.members().map(|m| m.meta.node).collect(),
        active: membership.is_active(),
        life: membership.local().life,
        datagrams_in: stats.datagrams_in,
        datagrams_out: stats.datagrams_out,
        bytes_in: stats.bytes_in,
        bytes_out: stats.bytes_out,
        refused: Refusal::ALL
            .iter()
            .map(|r| (r.name().to_owned(), membership.refused(*r)))
            .collect(),
        malformed: stats.malformed,
        // The driver, which owns the socket, fills this in.
        send_errors: 0,
        ups: stats.ups,
        changes: stats.changes,
        downs: stats.downs,
        downs_held: stats.downs_held,
        downs_averted: stats.downs_averted,
        swim_errors: stats.swim_errors,
        unadvertised,
    }
}
