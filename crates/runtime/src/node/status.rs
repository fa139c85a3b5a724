//! What a node says of itself: its status for the control plane, and the
//! audit of what it promises between any two inputs.

use exchange_idl::exchange::v1::control;

use super::Node;
use super::capacity::{Limit, Setting, Source};
use crate::ids::ComponentId;
use crate::time::Time;

/// A limit's setting as the control plane reports it.
fn limit_status(setting: Setting) -> control::Limit {
    let (source, network_total, instances) = match setting.source {
        Source::Config => ("config", 0, 0),
        Source::Live => ("live", 0, 0),
        Source::Network { total, instances } => ("network", total, instances),
    };
    control::Limit {
        value: setting.value,
        source: source.to_owned(),
        network_total,
        instances,
    }
}

/// A promise the node broke (see [`Node::audit`]): a bug in the node, never
/// something a peer or operator can cause. Nothing was changed by finding it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Broken {
    /// A component accepted a message that neither ended nor is queued.
    #[error(
        "{component}: accepted {accepted} but handled {handled}, bounced {bounced}, dropped {dropped} and {queued} queued"
    )]
    Accounting {
        /// The component.
        component: String,
        /// Messages it accepted.
        accepted: u64,
        /// Of those, handled.
        handled: u64,
        /// Bounced.
        bounced: u64,
        /// Dropped and counted.
        dropped: u64,
        /// Still queued.
        queued: u64,
    },
    /// A mailbox holds more than its limit of messages admitted under it.
    #[error("{component}: {queued} messages queued, over its limit of {limit}")]
    OverLimit {
        /// The component.
        component: String,
        /// Messages queued.
        queued: u64,
        /// Its limit.
        limit: usize,
    },
    /// A request is past its deadline with no reply or bounce.
    #[error(
        "request {correlation} is past its deadline ({deadline}) at {at} with no reply or bounce"
    )]
    Overdue {
        /// The request's correlation id.
        correlation: u64,
        /// Its deadline.
        deadline: Time,
        /// When the last timeout was handled.
        at: Time,
    },
    /// Two records the node keeps in step do not agree.
    #[error("the counts of {0} disagree")]
    Disagree(&'static str),
}

impl Node {
    /// The node's status, as the control plane reports it.
    pub fn status(&self, now: Time) -> control::NodeStatus {
        let components = self
            .slots
            .iter()
            .enumerate()
            .map(|(index, slot)| {
                let mailbox = self.queue.mailbox(ComponentId(index as u32));
                control::ComponentStatus {
                    name: slot.name.to_string(),
                    index: index as u32,
                    accepted: slot.stats.accepted,
                    handled: slot.stats.handled,
                    bounced: slot.stats.outcomes.bounced(),
                    dropped: slot.stats.outcomes.dropped(),
                    restarts: slot.stats.restarts,
                    queue_len: mailbox.len() as u32,
                    queue_bytes: mailbox.bytes() as u64,
                    queue_len_max: mailbox.len_max as u32,
                    queue_bytes_max: mailbox.bytes_max as u64,
                    queue_len_peak: mailbox.len_peak as u32,
                    handler_p50_ns: slot.stats.handler_ns_at(0.5),
                    response_p50_us: slot.stats.response_us_at(0.5),
                    response_p99_us: slot.stats.response_us_at(0.99),
                    handler_p99_ns: slot.stats.handler_ns_at(0.99),
                    timers_fired: slot.stats.timers_fired,
                    returned: slot.stats.returned.bounced(),
                    effects_refused: slot.stats.effects_refused,
                    requests_sent: slot.stats.requests_sent,
                    responses_received: slot.stats.responses_received,
                    capacity: Some(self.capacity_status(ComponentId(index as u32))),
                }
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
            dispatch_per_turn_max: Some(limit_status(self.dispatch_per_turn)),
        }
    }

    /// A component's limits and their use, as the control plane reports them.
    /// Panics if there is no such component.
    pub fn capacity_status(&self, id: ComponentId) -> control::ComponentCapacity {
        let slot = &self.slots[id.index()];
        let mailbox = self.queue.mailbox(id);
        let limit = |limit| Some(limit_status(slot.capacity.get(limit)));
        control::ComponentCapacity {
            component: slot.name.to_string(),
            mailbox_len_max: limit(Limit::MailboxLenMax),
            mailbox_bytes_max: limit(Limit::MailboxBytesMax),
            rate: limit(Limit::RatePerSec),
            burst: limit(Limit::Burst),
            in_flight_max: limit(Limit::InFlightMax),
            queue_len: mailbox.len() as u32,
            queue_bytes: mailbox.bytes() as u64,
            in_flight: slot.stats.in_flight(),
            tokens: self.tokens(id),
            congested: mailbox.congested,
        }
    }

    /// The capacity of one component, or of all (`None`), for the control plane.
    pub fn capacity_reply(&self, component: Option<ComponentId>) -> control::CapacityReply {
        let ids = match component {
            Some(id) => vec![id],
            None => (0..self.slots.len() as u32).map(ComponentId).collect(),
        };
        control::CapacityReply {
            node: self.id.0,
            name: self.name.clone(),
            dispatch_per_turn_max: Some(limit_status(self.dispatch_per_turn)),
            components: ids.into_iter().map(|id| self.capacity_status(id)).collect(),
        }
    }

    /// Checks what the node promises between any two inputs; returns the
    /// first that does not hold. Cheap: a debug build runs it after every
    /// input, and the simulator after every step in any build.
    ///
    /// - every message a component accepted has ended (handled, bounced or
    ///   dropped, each counted) or is still queued for it;
    /// - no mailbox holds more than its limit of messages admitted under it
    ///   (responses, admitted past it, aside);
    /// - no request was past its deadline, without a reply or bounce, when
    ///   the last [`Input::Timeout`](crate::Input::Timeout) was handled;
    /// - the node's paired records (timers, pending requests, messages
    ///   waiting for a handler) agree.
    pub fn audit(&self) -> Result<(), Broken> {
        for (index, slot) in self.slots.iter().enumerate() {
            let mailbox = self.queue.mailbox(ComponentId(index as u32));
            let queued = mailbox.len() as u64;
            if slot.stats.unresolved() != queued {
                return Err(Broken::Accounting {
                    component: slot.name.to_string(),
                    accepted: slot.stats.accepted,
                    handled: slot.stats.handled,
                    bounced: slot.stats.outcomes.bounced_total(),
                    dropped: slot.stats.outcomes.dropped_total(),
                    queued,
                });
            }
            if !mailbox.within_bounds() {
                return Err(Broken::OverLimit {
                    component: slot.name.to_string(),
                    queued,
                    limit: mailbox.len_max,
                });
            }
        }
        if let Some((deadline, correlation)) = self.pending.overdue(self.timed_out_at) {
            return Err(Broken::Overdue {
                correlation: correlation.0,
                deadline,
                at: self.timed_out_at,
            });
        }
        let agree = [
            ("the timers", self.timers.counts_agree()),
            ("the pending requests", self.pending.counts_agree()),
            ("the handler wait", self.awaiting.counts_agree()),
        ];
        match agree.iter().find(|(_, agree)| !agree) {
            Some((what, _)) => Err(Broken::Disagree(what)),
            None => Ok(()),
        }
    }

    /// Checks every component's own [`Component::invariants`](crate::Component::invariants)
    /// (which may walk its whole state: the simulator calls this every 100 ms
    /// of virtual time and at the end of each phase).
    pub fn check_invariants(&self) -> Result<(), String> {
        for slot in &self.slots {
            slot.instance
                .invariants()
                .map_err(|broken| format!("{}: {broken}", slot.name))?;
        }
        Ok(())
    }

    /// Whether the node audits itself after every input (debug builds), i.e.
    /// no sabotage that asks it not to is on.
    pub(super) fn audits(&self) -> bool {
        #[cfg(feature = "testing")]
        if self.config.sabotage == super::Sabotage::SilentMailboxDropUnaudited {
            return false;
        }
        true
    }

    /// Whether a deliberate defect drops a message that found its mailbox full.
    pub(super) fn sabotaged(&self) -> bool {
        #[cfg(feature = "testing")]
        if self.config.sabotage != super::Sabotage::None {
            return true;
        }
        false
    }
}
