//! Pure flow-control state machines for exchange: the per-destination circuit
//! breaker (closed → open → half-open), token buckets for rate limits, the
//! flow throttle with its overflow policy (`overflow`, `drop`, `bounce`), and the
//! horizon order (`process` < `host` < `network` < `global`).
//!
//! Nothing lives here yet: the circuit-breaking issue fills it. It will stay a leaf
//! crate with no I/O and no clock; every state change takes `now` as an input.
