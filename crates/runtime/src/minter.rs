//! Ids a node hands out: message ids, correlation ids, and trace contexts.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::ids::{CorrelationId, NodeId};
use crate::message::TraceContext;

/// Mints ids for one node, from its seed. Shared by the node (bounces, expiries)
/// and the handlers' [`crate::Ctx`] (everything they send).
#[derive(Debug)]
pub(crate) struct Minter {
    next_id: u64,
    next_correlation: u64,
    rng: ChaCha8Rng,
    sample_one_in: u32,
}

impl Minter {
    pub(crate) fn new(node: NodeId, seed: u64, sample_one_in: u32) -> Minter {
        Minter {
            next_id: 0,
            next_correlation: 0,
            rng: ChaCha8Rng::seed_from_u64(seed ^ node.0.rotate_left(32)),
            sample_one_in,
        }
    }

    /// A message id, unique on this node.
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
    pub(crate) fn trace_child(&mut self, cause: Option<TraceContext>) -> TraceContext {
        let span_id = self.rng.random::<u64>() | 1;
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
