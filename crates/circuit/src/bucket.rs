//! An admission token bucket, kept as one number: the generic cell rate
//! algorithm (GCRA), as ATM switches and `governor` use it.
//!
//! Why our own and not `governor`'s: its limiter reads time through a
//! `Clock` trait and keeps its state in an atomic, so a fake clock would do,
//! but its quota is fixed at construction. Ours changes rate and burst in
//! place, keeping the tokens already spent (a live change must neither
//! refill a drained bucket nor empty a full one), says how long a refused
//! caller should wait, and is plain data a recording can rebuild.
//!
//! The state is the *theoretical arrival time* `tat`: when the bucket would
//! be full again if nothing more were taken. A take at `now` is admitted if,
//! after it, the bucket would be full again no later than `now + burst ×
//! interval`; it then moves `tat` one interval on. Nanoseconds inside, so
//! rates up to [`Rate::PER_SEC_MAX`] keep their precision.

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// A rate with a burst: `per_sec` admissions per second on average, up to
/// `burst` at once after a quiet spell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Admissions per second, on average.
    pub per_sec: u32,
    /// Admissions at once, at most.
    pub burst: u32,
}

/// A [`Rate`] out of range; nothing was changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateError {
    /// `per_sec` outside 1 to [`Rate::PER_SEC_MAX`].
    PerSec(u32),
    /// `burst` outside 1 to [`Rate::BURST_MAX`].
    Burst(u32),
}

impl std::fmt::Display for RateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RateError::PerSec(value) => write!(
                f,
                "rate {value}/s is out of range (1 to {})",
                Rate::PER_SEC_MAX
            ),
            RateError::Burst(value) => {
                write!(
                    f,
                    "burst {value} is out of range (1 to {})",
                    Rate::BURST_MAX
                )
            }
        }
    }
}

impl std::error::Error for RateError {}

impl Rate {
    /// The highest rate: ten million a second (an interval of 100 ns).
    pub const PER_SEC_MAX: u32 = 10_000_000;
    /// The largest burst.
    pub const BURST_MAX: u32 = 10_000_000;

    /// Checks the range of both values.
    pub fn validate(self) -> Result<Rate, RateError> {
        if !(1..=Rate::PER_SEC_MAX).contains(&self.per_sec) {
            return Err(RateError::PerSec(self.per_sec));
        }
        if !(1..=Rate::BURST_MAX).contains(&self.burst) {
            return Err(RateError::Burst(self.burst));
        }
        Ok(self)
    }

    fn interval_ns(self) -> u64 {
        NANOS_PER_SEC / u64::from(self.per_sec)
    }

    /// How far ahead of now `tat` may be: the whole burst's worth of intervals.
    fn tolerance_ns(self) -> u64 {
        self.interval_ns() * u64::from(self.burst)
    }
}

/// Admissions at a [`Rate`]; starts full.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenBucket {
    rate: Rate,
    /// Theoretical arrival time, in nanoseconds since the caller's origin.
    tat_ns: u64,
}

fn nanos(micros: u64) -> u64 {
    micros.saturating_mul(1_000)
}

fn micros_up(nanos: u64) -> u64 {
    nanos.div_ceil(1_000)
}

impl TokenBucket {
    /// A full bucket. Panics on a rate out of range: check it with
    /// [`Rate::validate`] first.
    pub fn new(rate: Rate) -> TokenBucket {
        let rate = rate.validate().expect("a rate in range");
        TokenBucket { rate, tat_ns: 0 }
    }

    /// The rate it admits at.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Takes one token at `now_us`: `Ok` if admitted, else how many
    /// microseconds until one would be (never zero).
    pub fn take(&mut self, now_us: u64) -> Result<(), u64> {
        let now = nanos(now_us);
        let next = self.tat_ns.max(now) + self.rate.interval_ns();
        let limit = now + self.rate.tolerance_ns();
        if next <= limit {
            self.tat_ns = next;
            Ok(())
        } else {
            Err(micros_up(next - limit).max(1))
        }
    }

    /// Tokens left at `now_us` (whole ones).
    pub fn available(&self, now_us: u64) -> u32 {
        let now = nanos(now_us);
        let debt = self.tat_ns.saturating_sub(now);
        let free = self.rate.tolerance_ns().saturating_sub(debt);
        (free / self.rate.interval_ns()) as u32
    }

    /// Changes the rate and burst at `now_us`, keeping the tokens spent: a
    /// bucket half empty stays half empty in tokens (capped by the new burst).
    /// Panics on a rate out of range (see [`Rate::validate`]).
    pub fn set_rate(&mut self, rate: Rate, now_us: u64) {
        let rate = rate.validate().expect("a rate in range");
        let now = nanos(now_us);
        let debt = self.tat_ns.saturating_sub(now);
        // Tokens spent, rounded up so that a change never hands out a token.
        let spent = debt
            .div_ceil(self.rate.interval_ns())
            .min(u64::from(rate.burst));
        self.rate = rate;
        self.tat_ns = now + spent * rate.interval_ns();
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const SEC: u64 = 1_000_000;

    fn bucket(per_sec: u32, burst: u32) -> TokenBucket {
        TokenBucket::new(Rate { per_sec, burst })
    }

    #[test]
    fn a_full_bucket_admits_its_burst_then_refuses_with_the_wait() {
        let mut b = bucket(10, 3);
        let now = 5 * SEC;
        for _ in 0..3 {
            assert_eq!(b.take(now), Ok(()));
        }
        assert_eq!(
            b.take(now),
            Err(SEC / 10),
            "one interval until the next token"
        );
        assert_eq!(b.available(now), 0);
        assert_eq!(b.take(now + SEC / 10), Ok(()));
        assert_eq!(b.take(now + SEC / 10), Err(SEC / 10));
    }

    #[test]
    fn a_steady_caller_at_the_rate_is_never_refused() {
        let mut b = bucket(1000, 1);
        for i in 0..10_000 {
            assert_eq!(b.take(SEC + i * 1000), Ok(()), "at take {i}");
        }
    }

    #[test]
    fn a_quiet_spell_refills_only_up_to_the_burst() {
        let mut b = bucket(100, 5);
        for _ in 0..5 {
            b.take(SEC).unwrap();
        }
        assert_eq!(b.available(SEC + 3 * SEC / 100), 3);
        assert_eq!(b.available(100 * SEC), 5);
    }

    #[test]
    fn a_live_change_keeps_the_tokens_spent() {
        let mut b = bucket(10, 10);
        for _ in 0..6 {
            b.take(SEC).unwrap();
        }
        assert_eq!(b.available(SEC), 4);
        b.set_rate(
            Rate {
                per_sec: 1000,
                burst: 10,
            },
            SEC,
        );
        assert_eq!(
            b.available(SEC),
            4,
            "a faster rate refills faster, not at once"
        );
        assert_eq!(b.available(SEC + 1000), 5);
        b.set_rate(
            Rate {
                per_sec: 1000,
                burst: 3,
            },
            SEC,
        );
        assert_eq!(b.available(SEC), 0, "spent is capped by the new burst");
        assert_eq!(b.take(SEC), Err(1000));
    }

    #[test]
    fn rates_out_of_range_are_refused_with_the_range() {
        let zero = Rate {
            per_sec: 0,
            burst: 1,
        }
        .validate()
        .unwrap_err();
        assert_eq!(zero.to_string(), "rate 0/s is out of range (1 to 10000000)");
        let burst = Rate {
            per_sec: 1,
            burst: 0,
        }
        .validate()
        .unwrap_err();
        assert_eq!(burst.to_string(), "burst 0 is out of range (1 to 10000000)");
    }

    proptest! {
        /// Over any window, a bucket admits at most burst + rate × window.
        #[test]
        fn admissions_never_exceed_burst_plus_rate(
            per_sec in 1u32..100_000,
            burst in 1u32..1000,
            gaps in proptest::collection::vec(0u64..2_000, 1..2_000),
        ) {
            let mut b = bucket(per_sec, burst);
            let start = 7 * SEC;
            let mut now = start;
            let mut admitted = 0u64;
            for gap in gaps {
                now += gap;
                if b.take(now).is_ok() {
                    admitted += 1;
                }
            }
            let window_us = now - start;
            let bound = u64::from(burst) + u64::from(per_sec) * window_us / SEC + 1;
            prop_assert!(admitted <= bound, "{admitted} admitted, bound {bound}");
        }

        /// A refusal's wait is exact: taking at now + wait succeeds, a
        /// microsecond before fails.
        #[test]
        fn the_retry_after_is_exact(per_sec in 1u32..1_000_000, burst in 1u32..50) {
            let mut b = bucket(per_sec, burst);
            let now = 3 * SEC;
            while b.take(now).is_ok() {}
            let wait = b.take(now).unwrap_err();
            let mut early = b.clone();
            if wait > 1 {
                prop_assert!(early.take(now + wait - 1).is_err());
            }
            prop_assert_eq!(b.take(now + wait), Ok(()));
        }
    }
}
