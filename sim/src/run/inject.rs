//! Faults: crashes and restarts, cuts and heals, scheduled in virtual time;
//! and the network's fault rates for the safety phase.

use std::hash::Hasher;
use std::time::Duration;

use exchange_host::Host;
use exchange_runtime::netem::LinkParams;
use exchange_runtime::{Input, NodeId, Time};
use rand::Rng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::Sim;
use crate::faults::{Fault, Faults};

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Action {
    Crash(NodeId),
    Restart(NodeId),
    Cut(NodeId, NodeId),
    Heal(NodeId, NodeId),
    /// A change the scenario asked for (`SimOptions::events`).
    Event(super::SimEvent),
}

/// The safety phase's network: each enabled fault at a rate drawn from `rng`.
pub(super) fn faulty_params(faults: Faults, rng: &mut ChaCha8Rng) -> LinkParams {
    let mut params = LinkParams::calm();
    if faults.has(Fault::Loss) {
        params.loss = rng.random_range(0.001..0.05);
    }
    if faults.has(Fault::Duplicate) {
        params.duplicate = rng.random_range(0.001..0.02);
    }
    if faults.has(Fault::Reorder) {
        params.reorder = rng.random_range(0.01..0.1);
        params.reorder_max = Duration::from_millis(rng.random_range(5..100));
    }
    if faults.has(Fault::Overflow) {
        params.link_queue_max = rng.random_range(8..256);
    }
    params
}

impl Sim<'_, '_> {
    pub(super) fn schedule(&mut self, at: Time, action: Action) {
        self.schedule_seq += 1;
        self.schedule.insert((at, self.schedule_seq), action);
    }

    /// Injects one crash or partition, and schedules its end.
    pub(super) fn inject(&mut self) {
        let faults = self.options.faults;
        let mut choices = Vec::new();
        if faults.has(Fault::Crash) {
            choices.push(Fault::Crash);
        }
        if faults.has(Fault::Partition) {
            choices.push(Fault::Partition);
        }
        let Some(&fault) = choices.get(self.rng.random_range(0..choices.len())) else {
            return;
        };
        let ids: Vec<NodeId> = self.members.iter().map(|m| m.id).collect();
        let up: Vec<NodeId> = self
            .members
            .iter()
            .filter(|m| m.host.is_some())
            .map(|m| m.id)
            .collect();
        match fault {
            Fault::Crash if up.len() > 1 => {
                let victim = up[self.rng.random_range(0..up.len())];
                self.apply(Action::Crash(victim));
                let down_for = Duration::from_millis(self.rng.random_range(100..3_000));
                self.schedule(self.now + down_for, Action::Restart(victim));
            }
            Fault::Partition if ids.len() > 1 => self.partition(&ids),
            _ => {}
        }
    }

    /// Cuts links among `ids`: one node isolated, a split in two, or a
    /// swizzle; and schedules the heals.
    fn partition(&mut self, ids: &[NodeId]) {
        self.report.partitions += 1;
        let heal_in = Duration::from_millis(self.rng.random_range(300..3_000));
        match self.rng.random_range(0..3) {
            0 => {
                // One node isolated.
                let lonely = ids[self.rng.random_range(0..ids.len())];
                for &other in ids {
                    self.apply(Action::Cut(lonely, other));
                    self.schedule(self.now + heal_in, Action::Heal(lonely, other));
                }
            }
            1 => {
                // A split in two.
                let mut shuffled = ids.to_vec();
                shuffled.shuffle(&mut self.rng);
                let cut_at = self.rng.random_range(1..shuffled.len());
                let (left, right) = shuffled.split_at(cut_at);
                for &a in left {
                    for &b in right {
                        self.apply(Action::Cut(a, b));
                        self.schedule(self.now + heal_in, Action::Heal(a, b));
                    }
                }
            }
            _ => {
                // Swizzle: links cut one by one, restored in random order.
                let mut links = Vec::new();
                for (i, &a) in ids.iter().enumerate() {
                    for &b in &ids[i + 1..] {
                        links.push((a, b));
                    }
                }
                links.shuffle(&mut self.rng);
                links.truncate(self.rng.random_range(1..=links.len()));
                let mut at = self.now;
                for &(a, b) in &links {
                    at = at + Duration::from_millis(self.rng.random_range(10..200));
                    self.schedule(at, Action::Cut(a, b));
                }
                links.shuffle(&mut self.rng);
                for &(a, b) in &links {
                    at = at + Duration::from_millis(self.rng.random_range(10..200));
                    self.schedule(at, Action::Heal(a, b));
                }
            }
        }
    }

    pub(super) fn apply(&mut self, action: Action) {
        self.hash.write_u64(self.now.as_micros());
        match action {
            Action::Crash(id) => {
                self.hash.write_u64(0xc0 ^ id.0);
                let Some(index) = self.index(id) else { return };
                let member = &mut self.members[index];
                // The node and its membership are lost together.
                let Some(host) = member.host.take() else {
                    return;
                };
                let node = host.node();
                member.wake = None;
                self.report.crashes += 1;
                // What was queued is lost with the node; counted here.
                for (component, _, _) in node.components() {
                    self.report.lost_in_crash += node.queue_len(component) as u64;
                }
                member.retired.add_life(node);
            }
            Action::Restart(id) => {
                self.hash.write_u64(0x5e ^ id.0);
                let Some(index) = self.index(id) else { return };
                if self.members[index].host.is_some() {
                    return;
                }
                let incarnation = self.members[index].life + 1;
                let life = self.life(incarnation);
                match (self.build)(id, life) {
                    Ok(node) => {
                        let member = &mut self.members[index];
                        member.life = incarnation;
                        member.host = Some(Host::new(node));
                        member.invocations.clear();
                        self.boot(index);
                    }
                    Err(error) => self.violate("build", format!("restarting n{}: {error}", id.0)),
                }
            }
            Action::Event(event) => self.apply_event(event),
            Action::Cut(a, b) => {
                self.hash.write_u64(0xcc ^ a.0 ^ b.0.rotate_left(32));
                self.net.cut(a, b);
            }
            Action::Heal(a, b) => {
                self.hash.write_u64(0x4e ^ a.0 ^ b.0.rotate_left(32));
                self.net.heal(a, b);
            }
        }
    }
}

impl Sim<'_, '_> {
    fn apply_event(&mut self, event: super::SimEvent) {
        match event {
            super::SimEvent::Cost { component, cost } => {
                self.hash.write(component.as_bytes());
                self.hash.write_u64(cost.as_nanos() as u64);
                self.options.cost.components.insert(component, cost);
            }
            super::SimEvent::Capacity { node, change } => {
                self.hash.write_u64(0xca ^ node.0);
                let Some(index) = self.index(node) else {
                    return;
                };
                let local = self.members[index].local(self.now);
                if let Some(host) = self.members[index].host.as_mut() {
                    host.handle(local, Input::Capacity(change));
                }
                self.touch(index);
            }
        }
    }
}
