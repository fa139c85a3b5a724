//! Network-wide capacity totals, spread with the membership's metadata.
//!
//! An operator sets a total for a component on one node (`SetCapacity` with
//! `network`); that node shares it among the instances its router knows. So
//! that every other instance — one that joins later included — shares the same
//! total, the node advertises it in its metadata, stamped with when and where
//! it was set, and every node that has the component takes the latest it
//! sees (as an `Input::Capacity`, recorded like any other) and advertises it
//! in turn: the total outlives the node it was set on.

use std::collections::BTreeMap;

use exchange_idl::exchange::v1::discovery as wire;
use exchange_runtime::{CapacityChange, ComponentId, Event, Limit, Node, Source, Time};

/// The totals this node holds, by (component, limit).
#[derive(Debug, Default)]
pub(crate) struct NetworkLimits {
    known: BTreeMap<(String, Limit), wire::NetworkLimit>,
}

fn newer(a: &wire::NetworkLimit, b: &wire::NetworkLimit) -> bool {
    (a.set_at_us, a.set_by) > (b.set_at_us, b.set_by)
}

fn limit_named(name: &str) -> Option<Limit> {
    Limit::COMPONENT
        .into_iter()
        .find(|limit| limit.name() == name)
}

fn component_named(node: &Node, name: &str) -> Option<ComponentId> {
    node.components()
        .find(|(_, component, _)| *component == name)
        .map(|(id, _, _)| id)
}

impl NetworkLimits {
    /// What the node reported: a network total it did not hold yet was set
    /// here (by the control plane), now. Returns whether the advertised
    /// totals changed.
    pub(crate) fn note(&mut self, node: &Node, event: &Event, now: Time) -> bool {
        let Event::CapacityChanged {
            component: Some(id),
            limit,
            new,
            ..
        } = event
        else {
            return false;
        };
        let Source::Network { total, .. } = new.source else {
            return false;
        };
        let Some(component) = node.component_name(*id) else {
            return false;
        };
        let key = (component.to_owned(), *limit);
        if self
            .known
            .get(&key)
            .is_some_and(|known| known.total == total)
        {
            return false;
        }
        let entry = wire::NetworkLimit {
            component: component.to_owned(),
            limit: limit.name().to_owned(),
            total,
            set_at_us: now.as_micros(),
            set_by: node.id().0,
        };
        self.known.insert(key, entry);
        true
    }

    /// A member's metadata: the totals newer than those held, for components
    /// this node has, taken (they are advertised from now on) and returned as
    /// the changes to hand the node. Totals out of range are ignored.
    pub(crate) fn learn(&mut self, node: &Node, meta: &wire::Member) -> Vec<CapacityChange> {
        let mut changes = Vec::new();
        for offered in &meta.network_limits {
            let (Some(limit), Some(id)) = (
                limit_named(&offered.limit),
                component_named(node, &offered.component),
            ) else {
                continue;
            };
            let key = (offered.component.clone(), limit);
            if self
                .known
                .get(&key)
                .is_some_and(|known| !newer(offered, known))
            {
                continue;
            }
            let change = CapacityChange {
                component: Some(id),
                network: true,
                by: format!("network total set on n{}", offered.set_by),
                ..CapacityChange::default()
            }
            .set(limit, offered.total);
            if node.check_capacity(&change).is_err() {
                continue;
            }
            self.known.insert(key, offered.clone());
            changes.push(change);
        }
        changes
    }

    /// The totals to advertise.
    pub(crate) fn advertised(&self) -> Vec<wire::NetworkLimit> {
        self.known.values().cloned().collect()
    }
}
