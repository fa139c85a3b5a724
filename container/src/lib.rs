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
pub mod clock;
pub mod config;
pub mod dev;
pub mod discovery;
pub mod record_file;
pub mod registry;
pub mod report;
pub mod run;
pub mod sim;
pub mod status;
pub mod transport;

/// The README's Rust examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
