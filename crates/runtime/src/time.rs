//! Time as the core sees it: a value handed in by the driver, never read from a clock.

use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

/// A point in time: microseconds since the Unix epoch, on the driver's clock.
///
/// The container derives it from a monotonic clock anchored at the wall clock when
/// it starts, so it never goes backwards and hop times from different nodes can be
/// compared (to within their clock skew). The simulator starts it wherever its seed
/// says. The core only ever receives it as an argument.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time(u64);

impl Time {
    /// The Unix epoch; also "no time" on the wire.
    pub const ZERO: Time = Time(0);

    /// The latest time there is: "never" (see [`crate::Output::Timeout`]).
    pub const MAX: Time = Time(u64::MAX);

    /// A time `micros` microseconds after the Unix epoch.
    pub const fn from_micros(micros: u64) -> Time {
        Time(micros)
    }

    /// Microseconds since the Unix epoch.
    pub const fn as_micros(self) -> u64 {
        self.0
    }

    /// How long after `earlier` this is; zero if it is not after it.
    pub fn saturating_since(self, earlier: Time) -> Duration {
        Duration::from_micros(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Time {
    type Output = Time;
    fn add(self, rhs: Duration) -> Time {
        let micros = u64::try_from(rhs.as_micros()).unwrap_or(u64::MAX);
        Time(self.0.saturating_add(micros))
    }
}

impl Sub<Time> for Time {
    type Output = Duration;
    fn sub(self, rhs: Time) -> Duration {
        self.saturating_since(rhs)
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06}s", self.0 / 1_000_000, self.0 % 1_000_000)
    }
}

/// Measures how long handlers take, for the per-component handler-time histograms.
///
/// The node cannot read a clock, so the driver lends it one for measurement only:
/// the container passes a real monotonic stopwatch, the simulator passes
/// [`NoStopwatch`]. What it returns never changes what the node does.
pub trait Stopwatch {
    /// Time elapsed since the previous call (or since creation); `None` if this
    /// stopwatch does not measure.
    fn lap(&mut self) -> Option<Duration>;
}

/// A stopwatch that measures nothing; for deterministic drivers.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoStopwatch;

impl Stopwatch for NoStopwatch {
    fn lap(&mut self) -> Option<Duration> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let t = Time::from_micros(10);
        assert_eq!(t + Duration::from_micros(5), Time::from_micros(15));
        assert_eq!(t - Time::from_micros(4), Duration::from_micros(6));
        assert_eq!(Time::from_micros(4) - t, Duration::ZERO);
        assert_eq!(t + Duration::MAX, Time::from_micros(u64::MAX));
        assert_eq!(Time::from_micros(1_500_000).to_string(), "1.500000s");
    }
}
