//! The exchange container: the only crate that touches sockets, clocks and
//! threads. It reads config, builds nodes from registered component kinds, and
//! drives them: `exchange dev` over the in-memory network in one process,
//! `exchange run` over ZeroMQ, and `exchange sim` in the deterministic simulator.
//!
//! Hosting your own components: register their kinds in a
//! [`registry::Registry`] and call [`cli::main`] from your binary.
//!
//! ```
//! let registry = exchange_container::registry::example_registry();
//! assert_eq!(registry.known(), ["echo", "feed", "loadgen", "pinger", "store"]);
//! let app = exchange_container::config::load(None, &registry).unwrap();
//! assert_eq!(app.components.len(), 3);
//! ```

#![deny(missing_docs)]
// Library code says why it cannot fail (`expect`) or returns the error.
#![deny(clippy::unwrap_used)]

pub mod cli;
mod clock;
pub mod config;
mod control;
pub mod ctl;
mod dev;
mod discovery;
mod record_file;
pub mod registry;
mod report;
mod run;
mod sim;
pub mod status;
mod transport;

/// What the crate's own tests and benchmarks reach into: the simulator's
/// entry points and the real stopwatch. Not an API.
#[doc(hidden)]
pub mod for_tests {
    pub use crate::clock::RealStopwatch;
    pub use crate::sim::{run_seed, run_seed_with};
}

/// The README's Rust examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
