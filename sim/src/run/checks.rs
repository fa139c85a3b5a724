//! The checkers: what the run must show besides each node's own audit — no
//! message delivered twice unless the network copied it, progress after
//! healing, settling once new work stops, the components' invariants, and
//! every frame accounted for at the end.

use std::collections::BTreeMap;
use std::time::Duration;

use exchange_runtime::{Node, Time};
use rustc_hash::FxHashSet;

use super::Sim;

/// How long delivered message ids are remembered at least, to catch one
/// delivered twice. Frames are in flight for at most a link's latency, jitter
/// and reordering delay (a few hundred ms at most, see `LinkParams`).
const DELIVERED_WINDOW: Duration = Duration::from_secs(2);

/// Progress marks taken at healing time: per (node, component), requests sent,
/// replies received and bounces received by reason.
pub(super) type Marks = BTreeMap<(u64, String), (u64, u64, BTreeMap<String, u64>)>;

/// Messages delivered recently, by (sender, its life, message id, receiver),
/// in two generations (see [`DELIVERED_WINDOW`]).
pub(super) struct Delivered {
    generations: [FxHashSet<(u64, u64, u64, u64)>; 2],
    since: Time,
}

impl Delivered {
    pub(super) fn new(now: Time) -> Delivered {
        Delivered {
            generations: [FxHashSet::default(), FxHashSet::default()],
            since: now,
        }
    }

    /// Notes a delivery at `now`; returns whether the same message reached the
    /// same node before. Two copies arrive within one frame's longest time in
    /// flight of each other, far less than the window remembered.
    pub(super) fn seen_before(&mut self, now: Time, key: (u64, u64, u64, u64)) -> bool {
        if now >= self.since + DELIVERED_WINDOW {
            self.generations.swap(0, 1);
            self.generations[0].clear();
            self.since = now;
        }
        self.generations[1].contains(&key) || !self.generations[0].insert(key)
    }
}

/// The message id of an encoded header (field 1, written first), if present.
pub(super) fn message_id(header: &[u8]) -> Option<u64> {
    let (&key, mut rest) = header.split_first()?;
    if key != 0x08 {
        return None;
    }
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, tail) = rest.split_first()?;
        rest = tail;
        value |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Some(value);
        }
    }
    None
}

impl Sim<'_, '_> {
    /// The components' own invariants, on every live node.
    pub(super) fn check_invariants(&mut self) {
        for index in 0..self.members.len() {
            if let Some(node) = self.members[index].node()
                && let Err(detail) = node.check_invariants()
            {
                let detail = format!("n{}: {detail}", self.members[index].id.0);
                self.violate("component invariant", detail);
                return;
            }
        }
    }

    pub(super) fn marks(&self) -> Marks {
        let mut marks = Marks::new();
        for member in &self.members {
            let Some(node) = member.node() else {
                continue;
            };
            for (_, name, stats) in node.components() {
                marks.insert(
                    (member.id.0, name.to_owned()),
                    (
                        stats.requests_sent,
                        stats.replies_received,
                        stats.returned.bounced(),
                    ),
                );
            }
        }
        marks
    }

    /// Every component that kept sending requests since `marks` got a reply.
    pub(super) fn check_progress(&mut self, marks: &Marks) {
        for ((node, component), (sent, replies, returned)) in self.marks() {
            let Some((sent0, replies0, returned0)) = marks.get(&(node, component.clone())) else {
                continue;
            };
            if sent > *sent0 && replies == *replies0 {
                let bounces: Vec<String> = returned
                    .iter()
                    .map(|(reason, n)| (reason, n - returned0.get(reason).copied().unwrap_or(0)))
                    .filter(|(_, n)| *n > 0)
                    .map(|(reason, n)| format!("{reason}={n}"))
                    .collect();
                let detail = format!(
                    "{component}@n{node} sent {} requests in the {:?} after healing and got no reply (bounces back: {}){}",
                    sent - sent0,
                    self.options.recovery,
                    bounces.join(" "),
                    self.memberships(),
                );
                self.violate("liveness", detail);
                return;
            }
        }
    }

    pub(super) fn settled(&self) -> bool {
        self.net.in_flight() == 0
            && self
                .members
                .iter()
                .all(|m| m.node().is_none_or(Node::is_idle))
    }

    pub(super) fn report_unsettled(&mut self) {
        let busy: Vec<String> = self
            .members
            .iter()
            .filter_map(|m| {
                let node = m.node()?;
                (!node.is_idle())
                    .then(|| format!("n{} ({} pending requests)", m.id.0, node.pending_requests()))
            })
            .collect();
        let detail = format!(
            "did not settle within {:?} of new work stopping: {} frames in flight, busy: {}",
            self.options.converge_max,
            self.net.in_flight(),
            busy.join(", ")
        );
        self.violate("liveness", detail);
    }

    /// What each node's membership holds (with discovery on), for a report.
    pub(super) fn memberships(&self) -> String {
        let views: Vec<String> = self
            .members
            .iter()
            .filter_map(|m| {
                let membership = m.host.as_ref()?.membership()?;
                let known: Vec<String> = membership
                    .members()
                    .map(|member| format!("n{}/{}", member.meta.node, member.meta.life))
                    .collect();
                Some(format!(
                    "n{}/{} knows [{}] (SWIM: {})",
                    m.id.0,
                    membership.local().life,
                    known.join(" "),
                    membership.swim_view()
                ))
            })
            .collect();
        if views.is_empty() {
            String::new()
        } else {
            format!("; membership: {}", views.join("; "))
        }
    }

    /// The network accounts for every frame it accepted, and each node took in
    /// every frame delivered to it.
    pub(super) fn final_checks(&mut self) {
        let net = self.net.frame_counts().clone();
        let in_flight = self.net.in_flight() as i128;
        if net.unaccounted() != in_flight {
            let detail = format!(
                "{net:?} leaves {} frames unaccounted, {in_flight} in flight",
                net.unaccounted()
            );
            return self.violate("network accounting", detail);
        }
        for member in &self.members {
            let frames_in =
                member.retired.frames_in + member.node().map_or(0, |node| node.stats().frames_in);
            if frames_in != member.delivered {
                let detail = format!(
                    "n{}: the network delivered {} frames, its lives took in {frames_in}",
                    member.id.0, member.delivered
                );
                return self.violate("network accounting", detail);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_are_read_from_the_first_field() {
        assert_eq!(message_id(&[0x08, 0x96, 0x01, 0x12]), Some(150));
        assert_eq!(message_id(&[0x08, 0x05]), Some(5));
        assert_eq!(message_id(&[0x12, 0x05]), None);
        assert_eq!(message_id(&[0x08, 0x80]), None);
        assert_eq!(message_id(&[]), None);
    }

    #[test]
    fn a_second_delivery_within_the_window_is_seen() {
        let t0 = Time::from_micros(1_000_000);
        let mut delivered = Delivered::new(t0);
        assert!(!delivered.seen_before(t0, (1, 0, 7, 2)));
        assert!(delivered.seen_before(t0, (1, 0, 7, 2)));
        let later = t0 + DELIVERED_WINDOW;
        assert!(
            delivered.seen_before(later, (1, 0, 7, 2)),
            "one generation back"
        );
        assert!(!delivered.seen_before(later, (1, 1, 7, 2)), "another life");
    }
}
