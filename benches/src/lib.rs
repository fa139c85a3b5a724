//! In-process benchmarks of exchange, each against a raw baseline measured in
//! the same run.
//!
//! - `benches/dispatch.rs`: in-process dispatch through the real `Node`, local
//!   (no codec) and between two nodes (envelope encode + decode), beside a bare
//!   `VecDeque` + `dyn` handler loop measured in the same run. Run with
//!   `cargo bench -p exchange-benches --bench dispatch`; results go to
//!   `BENCHMARKS.md`.
//!
//! Multi-process scenarios and the transport benchmark live in
//! `container/tests` and `container/benches` instead: cargo hands the path of the
//! `exchange` binary only to its own package's tests and benches.
