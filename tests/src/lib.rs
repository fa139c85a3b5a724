//! Cross-process and cross-host scenarios and benchmarks for exchange.
//!
//! - `benches/dispatch.rs`: in-process dispatch through the real `Node`, local
//!   (no codec) and between two nodes (envelope encode + decode), beside a bare
//!   `VecDeque` + `dyn` handler loop measured in the same run. Run with
//!   `cargo bench -p exchange-tests --bench dispatch`; results go to
//!   `BENCHMARKS.md`.
//!
//! Multi-process scenarios (ZeroMQ transport, discovery) join here as their
//! issues land.
