//! Sans-IO membership for exchange: nodes find each other from a seed set over UDP
//! datagrams (SWIM, through `foca`), advertise the names they handle, and feed the
//! runtime's router. Every datagram is authenticated under a cluster key.
//!
//! - [`seal`]: the authenticated datagram layer (MAC checked in constant time
//!   before anything is parsed, a timestamp window, a nonce memory against
//!   replays, refusals counted by reason);
//! - [`membership`]: SWIM membership and member metadata, driven with the time
//!   like the runtime's `Node` (no clock, no socket).
//!
//! What membership events do to a node's routes is the host's
//! (`exchange_host::routes`).

pub mod membership;
pub mod seal;

pub use membership::{
    Datagram, Event, Identity, Member, Membership, MembershipStats, MetaTooLarge, PROBE_PERIOD,
    Settings, in_memory_addr, in_memory_node,
};
pub use seal::{ClusterKey, Refusal};
