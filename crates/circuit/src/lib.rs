//! Flow control as pure state machines: no clock, no I/O. Time comes in as
//! an argument, in microseconds since any origin that never goes backwards
//! (the node's `Time`), so the same code runs in a container, in `exchange
//! dev` and in the simulator, and a replay does exactly what the run did.
//!
//! - [`TokenBucket`]: admission at a rate with a burst, changeable live.
//! - [`Breaker`]: a circuit breaker (closed, open with exponential back-off,
//!   half-open probing), forced open or closed by an operator.

mod breaker;
mod bucket;

pub use breaker::{Breaker, BreakerSettings, Outcome, Reason, State, Transition};
pub use bucket::{Rate, RateError, TokenBucket};
