//! The real clock: the one place time is read. The core only ever sees the
//! [`Time`] values handed to it from here.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use exchange_runtime::{Stopwatch, Time};

/// A monotonic clock anchored to the wall clock at creation: it never goes
/// backwards, and its readings are comparable with other nodes' hop times (to
/// within their clock skew).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    start: Instant,
    epoch_us: u64,
}

impl Clock {
    /// Anchors a clock at the current wall-clock time.
    pub(crate) fn new() -> Clock {
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        Clock {
            start: Instant::now(),
            epoch_us: u64::try_from(since_epoch.as_micros()).unwrap_or(0),
        }
    }

    /// The time now.
    pub(crate) fn now(&self) -> Time {
        Time::from_micros(
            self.epoch_us + u64::try_from(self.start.elapsed().as_micros()).unwrap_or(0),
        )
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// Times handlers with the CPU's timestamp counter (through `quanta`, calibrated
/// once against the monotonic clock): one counter read per handler, where
/// `Instant::now` plus the conversions cost several times more on the message path.
#[derive(Debug)]
pub struct RealStopwatch {
    clock: quanta::Clock,
    last: u64,
}

impl RealStopwatch {
    /// A stopwatch started now.
    pub fn new() -> RealStopwatch {
        let clock = quanta::Clock::new();
        let last = clock.raw();
        RealStopwatch { clock, last }
    }
}

impl Default for RealStopwatch {
    fn default() -> Self {
        RealStopwatch::new()
    }
}

impl Stopwatch for RealStopwatch {
    fn lap(&mut self) -> Option<Duration> {
        let now = self.clock.raw();
        let elapsed = self.clock.delta_as_nanos(self.last, now);
        self.last = now;
        Some(Duration::from_nanos(elapsed))
    }
}
