//! Requests awaiting a reply or bounce: by correlation id for answers, by
//! deadline for expiry. One type keeps the two in step.

use std::collections::BTreeSet;

use rustc_hash::FxHashMap;

use crate::ids::{ComponentId, CorrelationId, Name};
use crate::message::TraceContext;
use crate::time::Time;

/// A request sent from this node, not answered yet.
#[derive(Debug)]
pub(crate) struct Pending {
    /// The requester.
    pub(crate) component: ComponentId,
    pub(crate) sent: Time,
    pub(crate) deadline: Time,
    pub(crate) name: Name,
    pub(crate) trace: TraceContext,
}

/// Every pending request of a node.
#[derive(Debug, Default)]
pub(crate) struct PendingRequests {
    by_id: FxHashMap<CorrelationId, Pending>,
    deadlines: BTreeSet<(Time, CorrelationId)>,
}

impl PendingRequests {
    pub(crate) fn insert(&mut self, correlation: CorrelationId, pending: Pending) {
        self.deadlines.insert((pending.deadline, correlation));
        let replaced = self.by_id.insert(correlation, pending);
        debug_assert!(replaced.is_none(), "correlation {correlation:?} reused");
        debug_assert_eq!(self.by_id.len(), self.deadlines.len());
    }

    /// The request `correlation` of `component`, answered: removed. `None` if
    /// no such request is pending (it expired, or was never sent from here).
    pub(crate) fn settle(
        &mut self,
        correlation: CorrelationId,
        component: ComponentId,
    ) -> Option<Pending> {
        if self.by_id.get(&correlation)?.component != component {
            return None;
        }
        let pending = self.by_id.remove(&correlation)?;
        let removed = self.deadlines.remove(&(pending.deadline, correlation));
        debug_assert!(removed);
        debug_assert_eq!(self.by_id.len(), self.deadlines.len());
        Some(pending)
    }

    /// The next request whose deadline passed by `now`, removed.
    pub(crate) fn pop_expired(&mut self, now: Time) -> Option<(CorrelationId, Pending)> {
        let &(deadline, correlation) = self.deadlines.first()?;
        if deadline > now {
            return None;
        }
        self.deadlines.pop_first();
        let pending = self
            .by_id
            .remove(&correlation)
            .expect("every deadline has its request");
        Some((correlation, pending))
    }

    /// The earliest deadline.
    pub(crate) fn next_deadline(&self) -> Option<Time> {
        self.deadlines.first().map(|(deadline, _)| *deadline)
    }

    /// The first request whose deadline is before `at`, if any.
    pub(crate) fn overdue(&self, at: Time) -> Option<(Time, CorrelationId)> {
        self.deadlines
            .first()
            .copied()
            .filter(|(deadline, _)| *deadline < at)
    }

    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub(crate) fn clear(&mut self) {
        self.by_id.clear();
        self.deadlines.clear();
    }

    /// Whether both views hold the same requests.
    pub(crate) fn counts_agree(&self) -> bool {
        self.by_id.len() == self.deadlines.len()
    }
}
