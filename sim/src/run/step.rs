//! The scheduler: one step at the current instant (faults due, frames and
//! datagrams delivered, every host with something due given its turn), then
//! time moves to the earliest thing due. And how a host is booted and what it
//! emits is carried.

use std::cmp::Reverse;
use std::hash::Hasher;
use std::time::Duration;

use exchange_discovery::{
    ClusterKey, Event as MemberEvent, Settings, in_memory_addr, in_memory_node,
};
use exchange_host::{Labels, Output, routes};
use exchange_runtime::netem::{Datagram, Frame};
use exchange_runtime::splitmix as mix;
use exchange_runtime::{Event, Input, NodeId, RouteChange, Time};

use super::{INVARIANTS_EVERY, STEPS_PER_INSTANT_MAX, Sim, checks::message_id};

impl Sim<'_, '_> {
    /// Starts member `index`'s freshly built host: routes (static ones, or a
    /// membership that finds them), `start`, and what that emitted.
    pub(super) fn boot(&mut self, index: usize) {
        if self.options.discovery.is_none() {
            self.route_to_others(index);
        }
        let local = self.members[index].local(self.now);
        if let Some(host) = self.members[index].host.as_mut() {
            host.handle(local, Input::Start);
        }
        self.join(index);
        self.drain(index);
        self.reschedule(index);
    }

    /// With discovery on, gives member `index`'s running host a membership
    /// (a new life) that announces it to the first member, every node's seed.
    fn join(&mut self, index: usize) {
        let Some(discovery) = self.options.discovery.clone() else {
            return;
        };
        let seed_addr = in_memory_addr(self.members[0].id);
        let member = &mut self.members[index];
        let local = member.local(self.now);
        let id = member.id;
        let Some(host) = member.host.as_mut() else {
            return;
        };
        let key = ClusterKey::new(b"simulated cluster key").expect("long enough");
        let mut settings = Settings::new(id, member.life + 1, in_memory_addr(id), key);
        settings.seeds = vec![seed_addr];
        settings.set_probe_period(discovery.probe_period);
        settings.rng_seed = mix(self.options.seed ^ mix(id.0) ^ member.life);
        let labels = Labels {
            version: "sim",
            app_endpoint: &format!("sim://n{}", id.0),
            control_endpoint: "",
            network: "sim",
            host: &format!("h{}", id.0),
        };
        if let Err(error) = host.join(local, settings, &labels) {
            self.violate("build", format!("n{}: {error}", id.0));
        }
    }

    /// Tells member `index` which names the others handle (discovery's job in
    /// production; static here).
    fn route_to_others(&mut self, index: usize) {
        let local = self.members[index].local(self.now);
        let routes: Vec<RouteChange> = self
            .members
            .iter()
            .filter(|peer| peer.id != self.members[index].id)
            .flat_map(|peer| {
                let names = peer.names.iter().map(exchange_runtime::Name::as_str);
                routes::static_peer(peer.id, names, [])
            })
            .collect();
        if let Some(host) = self.members[index].host.as_mut() {
            for change in routes {
                host.handle(local, Input::Route(change));
            }
        }
    }

    /// Files member `index`'s next wake-up (its host's next deadline, in
    /// virtual time) after anything that may have changed it.
    /// A node whose core is busy has its handlers' turn when it is free.
    pub(super) fn reschedule(&mut self, index: usize) {
        let member = &mut self.members[index];
        let busy_until = member.busy_until;
        let wake = member.host.as_ref().and_then(|host| {
            let deadline = member.global(host.poll_timeout()?);
            let queued = !host.node().is_quiet();
            Some(if queued {
                deadline.max(busy_until)
            } else {
                deadline
            })
        });
        if wake != member.wake {
            member.wake = wake;
            if let Some(at) = wake {
                self.wakes.push(Reverse((at, index)));
            }
        }
    }

    /// One step at the current instant, then time moves to the earliest thing
    /// due (never past `until`, nor past `wake`).
    pub(super) fn step(&mut self, until: Option<Time>, wake: Option<Time>) {
        self.work();
        if !self.failed() {
            self.advance(until, wake);
        }
    }

    /// Everything due at the current instant: faults, frames, timers, handlers.
    pub(super) fn work(&mut self) {
        self.report.steps += 1;
        let now = self.now;
        if now >= self.invariants_due {
            self.invariants_due = now + INVARIANTS_EVERY;
            self.check_invariants();
            if self.failed() {
                return;
            }
        }
        while let Some((&(at, seq), _)) = self.schedule.first_key_value() {
            if at > now {
                break;
            }
            let action = self.schedule.remove(&(at, seq)).expect("peeked");
            self.apply(action);
        }
        while let Some(frame) = self.net.pop_frame(now) {
            self.deliver(frame);
            if self.failed() {
                return;
            }
        }
        while let Some(datagram) = self.net.pop_datagram(now) {
            self.deliver_datagram(datagram);
        }
        for index in self.due(now) {
            self.visit(index, now);
            if self.failed() {
                return;
            }
        }
    }

    /// Every member with something due (a frame just delivered, work queued,
    /// a timer or deadline), in order. The others have nothing to do.
    fn due(&mut self, now: Time) -> Vec<usize> {
        let mut visit = std::mem::take(&mut self.touched);
        while let Some(&Reverse((at, index))) = self.wakes.peek() {
            if at > now {
                break;
            }
            self.wakes.pop();
            if self.members[index].wake == Some(at) {
                self.members[index].wake = None;
                visit.push(index);
            }
        }
        visit.sort_unstable();
        visit.dedup();
        visit
    }

    /// Member `index`'s turn: what is due on its host, what that emitted, and
    /// the node's audit.
    fn visit(&mut self, index: usize, now: Time) {
        let member = &mut self.members[index];
        let local = member.local(now);
        member.touched = false;
        let Some(host) = member.host.as_mut() else {
            return;
        };
        if now < member.busy_until {
            host.handle_timeout_busy(local);
        } else {
            host.handle_timeout(local);
            let cost = turn_cost(host.node(), &mut member.invocations, &self.options.cost);
            member.busy_until = now + cost;
        }
        self.drain(index);
        self.reschedule(index);
        if let Some(node) = self.members[index].node()
            && let Err(detail) = node.audit()
        {
            let detail = format!("n{}: {detail}", self.members[index].id.0);
            self.violate("node audit", detail);
        }
    }

    /// Moves time to the earliest thing due (never past `until`, nor `wake`).
    pub(super) fn advance(&mut self, until: Option<Time>, wake: Option<Time>) {
        let now = self.now;
        let mut next = [
            self.net.next_at(),
            self.schedule.first_key_value().map(|(&(at, _), _)| at),
            until,
            wake,
        ]
        .into_iter()
        .flatten()
        .min();
        while let Some(&Reverse((at, index))) = self.wakes.peek() {
            if self.members[index].wake == Some(at) {
                next = Some(next.map_or(at, |n| n.min(at)));
                break;
            }
            self.wakes.pop();
        }
        let next = next.unwrap_or(now + Duration::from_millis(1));
        self.now = if next > now {
            next
        } else {
            self.same_instant += 1;
            if self.same_instant >= STEPS_PER_INSTANT_MAX {
                self.same_instant = 0;
                now + Duration::from_micros(1)
            } else {
                now
            }
        };
        if self.now != now {
            self.same_instant = 0;
        }
    }

    pub(super) fn touch(&mut self, index: usize) {
        let member = &mut self.members[index];
        if !member.touched {
            member.touched = true;
            self.touched.push(index);
        }
    }

    fn deliver_datagram(&mut self, datagram: Datagram) {
        self.hash.write_u64(datagram.at.as_micros() ^ 0xd6);
        self.hash
            .write_u64(datagram.from.0 ^ datagram.to.0.rotate_left(32));
        self.hash.write_usize(datagram.bytes.len());
        let index = self.index(datagram.to);
        let joined = index.and_then(|i| self.members[i].host.as_ref()?.membership());
        self.net.datagram_arrived(joined.is_some());
        let Some(index) = index.filter(|_| joined.is_some()) else {
            return;
        };
        let local = self.members[index].local(datagram.at.max(self.now));
        let from = in_memory_addr(datagram.from);
        if let Some(host) = self.members[index].host.as_mut() {
            host.handle_datagram(local, from, &datagram.bytes);
        }
        self.touch(index);
    }

    fn deliver(&mut self, frame: Frame) {
        self.hash.write_u64(frame.at.as_micros());
        self.hash
            .write_u64(frame.from.0 ^ frame.to.0.rotate_left(32));
        self.hash.write(&frame.header);
        self.hash.write(&frame.payload);
        let index = self
            .index(frame.to)
            .filter(|&index| self.members[index].host.is_some());
        self.net.arrived(index.is_some());
        let Some(index) = index else {
            return;
        };
        let local = self.members[index].local(frame.at.max(self.now));
        // A frame is delivered once, unless the network copied it (and counted
        // that). (A publish is one message, with one id, to each subscriber's node.)
        if let Some(id) = message_id(&frame.header) {
            let key = (frame.from.0, frame.from_life, id, frame.to.0);
            if self.delivered.seen_before(self.now, key) && !frame.copy {
                let detail = format!(
                    "message {id} from n{} (life {}) delivered to n{} twice, and not by the duplication fault",
                    frame.from.0, frame.from_life, frame.to.0
                );
                return self.violate("delivered twice", detail);
            }
        }
        self.members[index].delivered += 1;
        self.touch(index);
        if let Some(host) = self.members[index].host.as_mut() {
            let input = Input::Frame {
                from: frame.from,
                header: &frame.header,
                payload: frame.payload,
            };
            host.handle(local, input);
        }
    }

    /// Carries what member `index`'s host emitted: frames to the network
    /// (refusals go back as inputs), datagrams, and with static routes its
    /// interest to every other node.
    pub(super) fn drain(&mut self, index: usize) {
        let from = self.members[index].id;
        let life = self.members[index].life;
        let local = self.members[index].local(self.now);
        loop {
            let Some(host) = self.members[index].host.as_mut() else {
                return;
            };
            match host.poll_output() {
                Output::Transmit(transmit) => {
                    let to_up = self
                        .index(transmit.to)
                        .is_some_and(|i| self.members[i].host.is_some());
                    let sent = self.net.send(self.now, from, life, transmit, to_up);
                    if let Err((transmit, error)) = sent
                        && let Some(host) = self.members[index].host.as_mut()
                    {
                        host.handle(local, Input::TransmitFailed { transmit, error });
                    }
                }
                Output::Datagram(datagram) => {
                    // An address that is no node's arrives nowhere, counted.
                    let to = in_memory_node(datagram.to).unwrap_or(NodeId(0));
                    self.net.send_datagram(self.now, from, to, datagram.bytes);
                }
                Output::Event(Event::Interest { name, subscribed }) => {
                    self.hash.write(name.as_bytes());
                    self.tell_others(from, name.as_str(), subscribed);
                }
                Output::Event(Event::Restarted { component, .. }) => {
                    self.hash.write_u64(0xa0 ^ u64::from(component.0));
                }
                Output::Event(Event::Failed { component }) => {
                    self.hash.write_u64(0xfa ^ u64::from(component.0));
                }
                Output::Event(Event::Congestion {
                    component,
                    congested,
                    ..
                }) => {
                    self.hash
                        .write_u64(0xc0c0 ^ u64::from(component.0) ^ u64::from(congested));
                    let count = if congested {
                        &mut self.report.congested
                    } else {
                        &mut self.report.decongested
                    };
                    *count += 1;
                }
                Output::Member(event) => {
                    let (what, subject) = match &event {
                        MemberEvent::Up(m) => (1, m.meta.node),
                        MemberEvent::Changed { after, .. } => (2, after.meta.node),
                        MemberEvent::Down(m) => (3, m.meta.node),
                    };
                    self.hash
                        .write_u64(what ^ subject.rotate_left(8) ^ from.0.rotate_left(40));
                }
                Output::Timeout(_) => return,
                _ => {}
            }
        }
    }

    /// With static routes, a node's subscription goes to every other node.
    fn tell_others(&mut self, from: NodeId, name: &str, subscribed: bool) {
        let now = self.now;
        for member in self.members.iter_mut().filter(|m| m.id != from) {
            let local = member.local(now);
            if let Some(host) = member.host.as_mut() {
                let change = RouteChange::Subscriber {
                    name: name.to_owned(),
                    node: from,
                    subscribed,
                };
                host.handle(local, Input::Route(change));
            }
        }
    }
}

/// What the handlers a node ran since the last call cost, by the handler
/// invocations its counters show (`seen` keeps the counts per component).
fn turn_cost(
    node: &exchange_runtime::Node,
    seen: &mut Vec<u64>,
    cost: &super::HandlerCost,
) -> Duration {
    let mut total = Duration::ZERO;
    for (id, name, stats) in node.components() {
        let failed = exchange_runtime::BounceReason::HandlerFailed;
        let invocations = stats.handled
            + stats.timers_fired
            + stats.outcomes.bounced_for(failed)
            + stats
                .outcomes
                .dropped_for(exchange_runtime::stats::DropReason::HandlerFailed);
        let index = id.0 as usize;
        if seen.len() <= index {
            seen.resize(index + 1, 0);
        }
        let ran = invocations - seen[index];
        seen[index] = invocations;
        if ran > 0 {
            total += cost.of(name) * u32::try_from(ran).unwrap_or(u32::MAX);
        }
    }
    total
}
