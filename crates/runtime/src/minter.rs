//! What a node hands out for every message: ids, trace contexts, and boxes for
//! headers.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::ids::{CorrelationId, NodeId};
use crate::message::{Header, TraceContext};
// SplitMix64 is a cheap bijective mix, so span ids from a counter look random
// (and stay unique per node) without drawing from the RNG per message.
use crate::splitmix as mix;

/// Spare header boxes kept for reuse, at most.
const SPARE_HEADERS_MAX: usize = 1024;

/// Mints ids for one node, from its seed. Shared by the node (bounces, expiries)
/// and the handlers' [`crate::Ctx`] (everything they send).
#[derive(Debug)]
pub(crate) struct Minter {
    next_id: u64,
    next_correlation: u64,
    next_span: u64,
    span_salt: u64,
    rng: ChaCha8Rng,
    sample_one_in: u32,
    #[expect(clippy::vec_box, reason = "the boxes themselves are what is reused")]
    spare_headers: Vec<Box<Header>>,
}

impl Minter {
    pub(crate) fn new(node: NodeId, seed: u64, incarnation: u64, sample_one_in: u32) -> Minter {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ node.0.rotate_left(32));
        Minter {
            next_id: 0,
            // Each life of a node counts its correlation ids up from its own
            // point in a 2^62 space: lives that overlap in their ids would need
            // 2^62 / (lives x requests) to be small.
            next_correlation: mix(incarnation ^ node.0.rotate_left(17)) >> 2,
            next_span: 0,
            span_salt: rng.random(),
            rng,
            sample_one_in,
            spare_headers: Vec::new(),
        }
    }

    /// A message id, unique on this node.
    #[inline]
    pub(crate) fn message_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// A correlation id, unique on this node.
    pub(crate) fn correlation(&mut self) -> CorrelationId {
        self.next_correlation += 1;
        CorrelationId(self.next_correlation)
    }

    /// A seed for a component's RNG.
    pub(crate) fn seed(&mut self) -> u64 {
        self.rng.random()
    }

    /// The trace context of a message caused by `cause` (or of a new trace,
    /// sampled one in `sample_one_in`).
    /// Boxes a header, reusing a spare box if there is one: the message path
    /// then allocates nothing in steady state.
    pub(crate) fn boxed(&mut self, header: Header) -> Box<Header> {
        match self.spare_headers.pop() {
            Some(mut spare) => {
                *spare = header;
                spare
            }
            None => Box::new(header),
        }
    }

    /// A header box to fill in: a spare one (with stale contents) or a new one.
    #[inline]
    pub(crate) fn spare_header(&mut self) -> Box<Header> {
        self.spare_headers
            .pop()
            .unwrap_or_else(|| Box::new(Header::blank()))
    }

    /// Keeps a header box whose message has ended, for [`Minter::boxed`].
    #[inline]
    pub(crate) fn recycle(&mut self, header: Box<Header>) {
        if self.spare_headers.len() < SPARE_HEADERS_MAX {
            self.spare_headers.push(header);
        }
    }

    #[inline]
    pub(crate) fn trace_child(&mut self, cause: Option<TraceContext>) -> TraceContext {
        self.next_span += 1;
        let span_id = mix(self.next_span ^ self.span_salt) | 1;
        match cause {
            Some(cause) => TraceContext {
                trace_id: cause.trace_id,
                span_id,
                parent_span_id: cause.span_id,
                sampled: cause.sampled,
            },
            None => {
                let one_in = self.sample_one_in;
                let sampled = one_in != 0 && self.rng.random_ratio(1, one_in);
                TraceContext {
                    trace_id: self.rng.random::<u64>() | 1,
                    span_id,
                    parent_span_id: 0,
                    sampled,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node killed and restarted under the same id must not hand out the
    /// correlation ids of its previous life: a late reply to the old request
    /// would be taken as the answer to a new one.
    #[test]
    fn a_new_incarnation_draws_correlations_from_elsewhere() {
        let node = NodeId(3);
        let mut first = Minter::new(node, 7, 1, 0);
        let mut second = Minter::new(node, 7, 2, 0);
        let a: Vec<u64> = (0..1000).map(|_| first.correlation().0).collect();
        let b: Vec<u64> = (0..1000).map(|_| second.correlation().0).collect();
        assert!(
            a.iter().all(|c| !b.contains(c)),
            "{:?} vs {:?}",
            &a[..3],
            &b[..3]
        );
        assert!(
            a.iter().chain(&b).all(|c| *c != 0),
            "0 means no correlation"
        );
        let mut again = Minter::new(node, 7, 1, 0);
        assert_eq!(again.correlation().0, a[0], "the same life is reproducible");
    }
}
