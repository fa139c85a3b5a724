//! The deterministic simulator for exchange: the real `Node`s with the real
//! components, many of them on one thread, driven by virtual time from one seed
//! over a network model with latency, loss, duplication, reordering, partitions,
//! crashes and clock skew, with checkers for what the system promises.
//!
//! A run has two phases. In the *safety* phase faults are on and every node is
//! audited after every step ([`exchange_runtime::Node::audit`]: every accepted
//! message ended or is queued, mailboxes within bounds, no request past its
//! deadline unanswered, the components' own invariants), and every frame is
//! checked to be delivered once unless the network duplicated it. In the
//! *liveness* phase everything heals, crashed nodes restart, the app must make
//! progress again (requests get replies), and once new work stops, queues must
//! drain and every request end within a bound. At the end the network's
//! counters must account for every frame.
//!
//! Every random choice comes from the run's seed, and nothing reads a clock:
//! the same seed gives the same run, event for event ([`SimReport::trace_hash`]).

mod faults;
mod run;
pub mod swim;

pub use exchange_runtime::netem::{DatagramCounts, FrameCounts, LinkParams};
pub use faults::{Fault, Faults};
pub use run::{
    Builder, HandlerCost, Life, SimDiscovery, SimEvent, SimOptions, SimReport, Violation, run,
};
