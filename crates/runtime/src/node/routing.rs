//! Where messages go: a handler's effects applied, requests registered as
//! pending, names routed (a local component first, then the nearest and least
//! loaded node), publishes fanned out, messages with no handler yet kept for
//! one (`handler_wait`), and route changes from the driver.

use std::time::Duration;

use smallvec::SmallVec;

use super::capacity::Limit;
use super::output::{Event, Output};
use super::pending::Pending;
use super::{Node, State};
use crate::codec::encode_header_into;
use crate::ctx::Effect;
use crate::ids::{ComponentId, NodeId, validate_name};
use crate::message::{BounceReason, Header, Horizon, Kind, Message};
use crate::router::{Destination, RouteChange, RouteId};
use crate::stats::DropReason;
use crate::transport::Transmit;

impl Node {
    pub(super) fn apply_effects(&mut self, id: ComponentId) {
        let mut effects = std::mem::take(&mut self.effects);
        for effect in effects.drain(..) {
            match effect {
                Effect::Message(message, route) => self.emit(message, route),
                Effect::SetTimer { at, token } => {
                    let slot = &mut self.slots[id.index()];
                    if !self.timers.set(id, at, token, slot.limits.timers_max) {
                        // Refused like any effect over a limit: counted, never silent.
                        slot.stats.effects_refused += 1;
                    }
                }
                Effect::CancelTimer { token } => self.timers.cancel(id, token),
                Effect::Subscribe(name) => {
                    if self.router.subscribe_local(&name, id) {
                        let interest = Event::Interest {
                            name,
                            subscribed: true,
                        };
                        self.outputs.push_back(Output::Event(interest));
                    }
                }
                Effect::Unsubscribe(name) => {
                    if self.router.unsubscribe_local(&name, id) {
                        let interest = Event::Interest {
                            name,
                            subscribed: false,
                        };
                        self.outputs.push_back(Output::Event(interest));
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
            if self.over_in_flight(message.header.source.component) {
                let detail = "the component's in_flight_max requests await replies";
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

    /// Whether a component has more requests awaiting replies than its
    /// `in_flight_max` (the one just registered included).
    fn over_in_flight(&self, id: ComponentId) -> bool {
        let slot = &self.slots[id.index()];
        let max = slot.capacity.get(Limit::InFlightMax).value;
        max != 0 && slot.stats.in_flight() > max
    }

    fn register_request(&mut self, header: &Header) {
        let component = header.source.component;
        self.slots[component.index()].stats.requests_sent += 1;
        let pending = Pending {
            component,
            sent: self.now,
            deadline: header.deadline.expect("requests always carry a deadline"),
            name: header.name.clone(),
            trace: header.trace,
        };
        self.pending.insert(header.correlation, pending);
    }

    /// Routes by target address, or by name (`route` is the name's route if the
    /// caller already looked it up).
    pub(super) fn route(&mut self, message: Message, route: Option<RouteId>) {
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
        let queue = &self.queue;
        let queue_len = |c: ComponentId| queue.len_of(c);
        let horizon = message.header.horizon;
        let picked = route.map_or(Err(None), |route| {
            self.router.pick(route, queue_len, horizon)
        });
        match picked {
            Ok(Destination::Local(component)) => self.deliver_local(component, message),
            Ok(Destination::Remote(node)) => self.transmit(node, message),
            Err(Some(beyond)) => self.beyond_horizon(message, beyond),
            Err(None) => {
                if let Err(message) = self.await_handler(message) {
                    let detail = "no component handles this name";
                    self.refuse_at_node(message, BounceReason::NoHandler, detail);
                }
            }
        }
    }

    /// Every handler of the message's name is beyond its horizon: it goes
    /// back `HorizonExceeded`, naming the horizon and the nearest handler.
    #[cold]
    fn beyond_horizon(&mut self, message: Message, nearest: NodeId) {
        let horizon = match message.header.horizon {
            Horizon::Unspecified => Horizon::Network,
            horizon => horizon,
        };
        let detail = format!(
            "every handler is beyond the horizon {}; the nearest is n{}",
            horizon
                .as_str_name()
                .trim_start_matches("HORIZON_")
                .to_lowercase(),
            nearest.0
        );
        self.refuse_at_node(message, BounceReason::HorizonExceeded, &detail);
    }

    fn publish(&mut self, message: Message, route: Option<RouteId>) {
        let (local, remote) =
            route.map_or((&[][..], &[][..]), |route| self.router.subscribers(route));
        let local: SmallVec<[ComponentId; 4]> = local.iter().copied().collect();
        // Subscribers beyond the publish's horizon are not its audience.
        let horizon = message.header.horizon;
        let remote: SmallVec<[NodeId; 4]> = remote
            .iter()
            .copied()
            .filter(|node| self.router.reaches(*node, horizon))
            .collect();
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

    pub(super) fn publish_local(&mut self, message: Message, route: Option<RouteId>) {
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
        self.awaiting.insert(until, message);
        Ok(())
    }

    pub(super) fn refuse_awaiting(&mut self, detail: &str) {
        for message in self.awaiting.take_all() {
            self.refuse_at_node(message, BounceReason::NoHandler, detail);
        }
    }

    /// Applies one change to the routes; a handler added routes the messages
    /// that were waiting for one.
    /// A route change; one that adds or removes a handler shares the
    /// network-wide limits anew (an instance came or went).
    pub(super) fn change_route(&mut self, change: RouteChange) {
        let instances_changed = match change {
            RouteChange::Handler {
                name,
                node,
                handles: true,
            } => {
                let added = self.router.add_remote_handler(&name, node);
                if added {
                    for message in self.awaiting.release(&name) {
                        self.route(message, None);
                    }
                }
                added
            }
            RouteChange::Handler {
                name,
                node,
                handles: false,
            } => self.router.remove_remote_handler(&name, node),
            RouteChange::Subscriber {
                name,
                node,
                subscribed,
            } => {
                self.router.set_remote_subscriber(&name, node, subscribed);
                false
            }
            RouteChange::Info { node, info } => {
                self.router.set_node_info(node, info);
                false
            }
            RouteChange::Gone { node } => {
                self.router.remove_node(node);
                true
            }
        };
        if instances_changed {
            self.reshare_capacity();
        }
    }
}
