//! The deterministic simulator for exchange: the real `Node`s and the real
//! components on one thread, driven by virtual time from one seed, over a
//! network model with latency, loss, duplication, reordering, partitions,
//! crashes and clock skew, with checkers for message accounting.
//!
//! Nothing lives here yet: the simulator issue fills it. It will drive
//! `exchange_runtime::mem::MemNetwork`-style inputs with virtual time; the
//! runtime is sans-IO precisely so that this crate needs no special hooks.
