//! The host: one [`Node`](exchange_runtime::Node) with what runs beside it in
//! every driver — its [`Membership`](exchange_discovery::Membership) when
//! routes come from discovery, its [`Recorder`](exchange_runtime::record::Recorder)
//! when recording, and the wiring between them (membership events become the
//! node's route changes, the node's subscriptions and load become its
//! advertised metadata). Sans-IO like its parts: inputs arrive with the time,
//! outputs are polled until [`Output::Timeout`].
//!
//! `exchange run` (ZeroMQ and UDP sockets, the real clock), `exchange dev`
//! (the in-memory network, the real clock) and `exchange sim` (the in-memory
//! network, virtual time) each drive hosts, and differ only in how they carry
//! transmits and datagrams and where `now` comes from.
//!
//! What this crate is not: it opens no socket and reads no clock.
//!
//! # Example
//!
//! ```
//! use exchange_host::{Host, Output};
//! use exchange_runtime::{Input, Node, NodeConfig, NodeId, Time};
//!
//! let mut host = Host::new(Node::new(NodeId(1), "n1", NodeConfig::default()));
//! host.record();
//! let now = Time::from_micros(1_000_000);
//! host.handle(now, Input::Start);
//! loop {
//!     match host.poll_output() {
//!         Output::Timeout(_) => break,
//!         _ => {}
//!     }
//! }
//! assert!(!host.take_recording().is_empty(), "the start was recorded");
//! ```

#![deny(missing_docs)]

pub mod cluster;
mod host;
pub mod routes;
mod shares;

pub use cluster::{Cluster, News};
pub use host::{Host, Labels, Output};
