//! A circuit breaker: closed → open → half-open → closed, with time as input.
//!
//! **Closed**, it counts calls and failures over a sliding window (buckets of
//! a tenth of it) and trips once the window holds at least `volume_min`
//! calls of which at least `failure_pct` percent failed. **Open**, it refuses
//! calls until its wait is over: `open_for` the first time, doubled each time
//! a probe fails, up to `open_max`. Then **half-open**, it lets exactly
//! `probes` calls through; if they all succeed it closes with an empty window
//! and the wait back at `open_for`; the first that fails opens it again with
//! the longer wait. Outcomes of calls let through before it opened are
//! ignored once it has. An operator may force it open (it stays open, no
//! probing, until forced closed) or closed (a fresh start).
//!
//! Which outcomes count as failures is the caller's to say (the router counts
//! only what arose at or after its own hop towards the destination).
//! Every change of state is returned as a [`Transition`].

/// How a breaker trips and recovers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Trips when at least this percentage of the window's calls failed (1 to 100)…
    pub failure_pct: u8,
    /// …and the window holds at least this many calls (at least 1).
    pub volume_min: u32,
    /// The sliding window, in microseconds (at least 10).
    pub window_us: u64,
    /// The first wait when it opens, in microseconds (at least 1).
    pub open_for_us: u64,
    /// The longest wait: each failed probe doubles it up to this.
    pub open_max_us: u64,
    /// Calls let through half-open (at least 1).
    pub probes: u32,
}

impl Default for BreakerSettings {
    /// Half of at least 20 calls failed within 10 s; open 1 s, doubling to
    /// 60 s; one probe. (Moleculer's defaults are the same threshold and
    /// volume over 60 s; a shorter window forgets an old outage sooner.)
    fn default() -> Self {
        BreakerSettings {
            failure_pct: 50,
            volume_min: 20,
            window_us: 10_000_000,
            open_for_us: 1_000_000,
            open_max_us: 60_000_000,
            probes: 1,
        }
    }
}

impl BreakerSettings {
    /// The first value out of range, by name, with its range.
    pub fn check(&self) -> Result<(), String> {
        if !(1..=100).contains(&self.failure_pct) {
            return Err(format!(
                "failure_pct {} is out of range (1 to 100)",
                self.failure_pct
            ));
        }
        if self.volume_min == 0 || self.probes == 0 {
            return Err("volume_min and probes are at least 1".into());
        }
        if self.window_us < BUCKETS || self.open_for_us == 0 {
            return Err("the window is at least 10 µs and open_for at least 1 µs".into());
        }
        if self.open_max_us < self.open_for_us {
            return Err("open_max is at least open_for".into());
        }
        Ok(())
    }
}

/// Where a breaker stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Calls go through; outcomes are counted.
    Closed,
    /// Calls are refused until `until_us`.
    Open {
        /// When it next lets a probe through.
        until_us: u64,
    },
    /// Probes go through, up to the setting.
    HalfOpen,
    /// Forced open by an operator: refused until forced closed.
    ForcedOpen,
}

/// Why a breaker changed state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Too many failures: `failures` of `calls` in the window.
    Tripped {
        /// Failures in the window.
        failures: u32,
        /// Calls in the window.
        calls: u32,
    },
    /// The wait was over: probing.
    WaitOver,
    /// A probe failed.
    ProbeFailed,
    /// Every probe succeeded.
    Recovered,
    /// An operator forced it.
    Forced,
}

/// A change of state, with why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    /// Before.
    pub from: State,
    /// After.
    pub to: State,
    /// Why.
    pub reason: Reason,
}

/// What became of a call the breaker let through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It succeeded (or failed in a way that says nothing of the destination).
    Success,
    /// It failed at or after this hop.
    Failure,
}

/// Buckets in the sliding window.
const BUCKETS: u64 = 10;

/// Calls and failures per bucket of the window, by bucket number (time /
/// bucket length); a bucket older than the window counts for nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Window {
    buckets: [(u64, u32, u32); BUCKETS as usize],
}

impl Window {
    fn add(&mut self, bucket: u64, failed: bool) {
        let slot = &mut self.buckets[(bucket % BUCKETS) as usize];
        if slot.0 != bucket {
            *slot = (bucket, 0, 0);
        }
        slot.1 += 1;
        slot.2 += u32::from(failed);
    }

    /// (calls, failures) in the buckets within the window ending at `bucket`.
    fn totals(&self, bucket: u64) -> (u32, u32) {
        self.buckets
            .iter()
            .filter(|(number, _, _)| *number + BUCKETS > bucket && *number <= bucket)
            .fold((0, 0), |(calls, failures), (_, c, f)| {
                (calls + c, failures + f)
            })
    }
}

/// A circuit breaker (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Breaker {
    settings: BreakerSettings,
    state: State,
    window: Window,
    /// The current wait, doubled by each failed probe.
    wait_us: u64,
    /// Half-open: probes let through, and of those, succeeded.
    probes_started: u32,
    probes_succeeded: u32,
}

impl Breaker {
    /// A closed breaker. Panics on settings that do not check
    /// ([`BreakerSettings::check`]).
    pub fn new(settings: BreakerSettings) -> Breaker {
        if let Err(error) = settings.check() {
            panic!("breaker settings: {error}");
        }
        Breaker {
            settings,
            state: State::Closed,
            window: Window::default(),
            wait_us: settings.open_for_us,
            probes_started: 0,
            probes_succeeded: 0,
        }
    }

    /// Where it stands.
    pub fn state(&self) -> State {
        self.state
    }

    /// Its settings.
    pub fn settings(&self) -> &BreakerSettings {
        &self.settings
    }

    /// (calls, failures) in the window at `now_us`.
    pub fn counts(&self, now_us: u64) -> (u32, u32) {
        self.window.totals(self.bucket(now_us))
    }

    fn bucket(&self, now_us: u64) -> u64 {
        now_us / (self.settings.window_us / BUCKETS)
    }

    fn go(&mut self, to: State, reason: Reason) -> Transition {
        let from = std::mem::replace(&mut self.state, to);
        Transition { from, to, reason }
    }

    /// May a call go through at `now_us`? `Ok` with the transition to
    /// half-open if that happened now; `Err` with when it may next be tried
    /// (µs; `u64::MAX` while forced open or while the probes are out).
    pub fn allow(&mut self, now_us: u64) -> Result<Option<Transition>, u64> {
        match self.state {
            State::Closed => Ok(None),
            State::ForcedOpen => Err(u64::MAX),
            State::Open { until_us } if now_us < until_us => Err(until_us),
            State::Open { .. } => {
                (self.probes_started, self.probes_succeeded) = (1, 0);
                Ok(Some(self.go(State::HalfOpen, Reason::WaitOver)))
            }
            State::HalfOpen if self.probes_started < self.settings.probes => {
                self.probes_started += 1;
                Ok(None)
            }
            State::HalfOpen => Err(u64::MAX),
        }
    }

    /// Records what became of a call let through; the transition, if it
    /// made one.
    pub fn record(&mut self, now_us: u64, outcome: Outcome) -> Option<Transition> {
        let failed = outcome == Outcome::Failure;
        match self.state {
            State::Closed => {
                let bucket = self.bucket(now_us);
                self.window.add(bucket, failed);
                let (calls, failures) = self.window.totals(bucket);
                let tripped = calls >= self.settings.volume_min
                    && u64::from(failures) * 100
                        >= u64::from(calls) * u64::from(self.settings.failure_pct);
                tripped.then(|| {
                    let until_us = now_us.saturating_add(self.wait_us);
                    self.go(
                        State::Open { until_us },
                        Reason::Tripped { failures, calls },
                    )
                })
            }
            State::HalfOpen if failed => {
                self.wait_us = (self.wait_us.saturating_mul(2)).min(self.settings.open_max_us);
                let until_us = now_us.saturating_add(self.wait_us);
                Some(self.go(State::Open { until_us }, Reason::ProbeFailed))
            }
            State::HalfOpen => {
                self.probes_succeeded += 1;
                (self.probes_succeeded >= self.settings.probes).then(|| {
                    self.reset();
                    self.go(State::Closed, Reason::Recovered)
                })
            }
            // Calls let through before it opened say nothing more.
            State::Open { .. } | State::ForcedOpen => None,
        }
    }

    fn reset(&mut self) {
        self.window = Window::default();
        self.wait_us = self.settings.open_for_us;
    }

    /// An operator takes the destination out of rotation: open until
    /// [`Breaker::force_close`].
    pub fn force_open(&mut self) -> Option<Transition> {
        (self.state != State::ForcedOpen).then(|| self.go(State::ForcedOpen, Reason::Forced))
    }

    /// An operator puts it back: closed, with an empty window and the first wait.
    pub fn force_close(&mut self) -> Option<Transition> {
        self.reset();
        (self.state != State::Closed).then(|| self.go(State::Closed, Reason::Forced))
    }

    /// New settings, keeping the state and the window.
    pub fn set_settings(&mut self, settings: BreakerSettings) -> Result<(), String> {
        settings.check()?;
        self.settings = settings;
        self.wait_us = self
            .wait_us
            .clamp(settings.open_for_us, settings.open_max_us);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000;

    fn settings() -> BreakerSettings {
        BreakerSettings {
            failure_pct: 50,
            volume_min: 10,
            window_us: 10 * SEC,
            open_for_us: SEC,
            open_max_us: 5 * SEC,
            probes: 1,
        }
    }

    /// Records `successes` then `failures` at `now`, each after `allow`.
    fn calls(b: &mut Breaker, now: u64, successes: u32, failures: u32) -> Vec<Transition> {
        let outcomes = (0..successes)
            .map(|_| Outcome::Success)
            .chain((0..failures).map(|_| Outcome::Failure));
        let mut transitions = Vec::new();
        for outcome in outcomes {
            if b.allow(now).is_ok()
                && let Some(t) = b.record(now, outcome)
            {
                transitions.push(t);
            }
        }
        transitions
    }

    #[test]
    fn trips_exactly_at_the_threshold_once_the_volume_is_reached() {
        let mut b = Breaker::new(settings());
        assert!(
            calls(&mut b, SEC, 5, 4).is_empty(),
            "9 calls: below the volume"
        );
        let tripped = calls(&mut b, SEC, 0, 1);
        assert_eq!(
            tripped,
            vec![Transition {
                from: State::Closed,
                to: State::Open { until_us: 2 * SEC },
                reason: Reason::Tripped {
                    failures: 5,
                    calls: 10
                },
            }]
        );
        assert_eq!(b.allow(SEC + 1), Err(2 * SEC));
    }

    #[test]
    fn never_trips_below_the_volume_nor_the_rate() {
        let mut b = Breaker::new(settings());
        assert!(
            calls(&mut b, SEC, 0, 9).is_empty(),
            "9 of 9 failed: not enough calls"
        );
        let mut b = Breaker::new(settings());
        assert!(calls(&mut b, SEC, 6, 4).is_empty(), "40% < 50%");
        assert!(calls(&mut b, SEC, 100, 0).is_empty());
        assert_eq!(b.state(), State::Closed);
    }

    #[test]
    fn failures_slide_out_of_the_window() {
        let mut b = Breaker::new(settings());
        calls(&mut b, SEC, 0, 9);
        assert_eq!(b.counts(SEC), (9, 9));
        // Eleven seconds later the old failures are outside the window.
        assert!(calls(&mut b, 12 * SEC, 1, 0).is_empty());
        assert_eq!(b.counts(12 * SEC), (1, 0));
    }

    #[test]
    fn half_open_admits_exactly_the_probes() {
        let mut b = Breaker::new(BreakerSettings {
            probes: 2,
            ..settings()
        });
        calls(&mut b, SEC, 0, 10);
        let half = b.allow(2 * SEC).unwrap().unwrap();
        assert_eq!((half.to, half.reason), (State::HalfOpen, Reason::WaitOver));
        assert_eq!(b.allow(2 * SEC), Ok(None), "the second probe");
        assert_eq!(b.allow(2 * SEC), Err(u64::MAX), "no third");
        assert_eq!(b.record(2 * SEC, Outcome::Success), None, "one of two");
        let closed = b.record(2 * SEC, Outcome::Success).unwrap();
        assert_eq!(
            (closed.to, closed.reason),
            (State::Closed, Reason::Recovered)
        );
    }

    #[test]
    fn closing_resets_the_window() {
        let mut b = Breaker::new(settings());
        calls(&mut b, SEC, 0, 10);
        b.allow(2 * SEC).unwrap();
        b.record(2 * SEC, Outcome::Success).unwrap();
        assert_eq!(b.counts(2 * SEC), (0, 0));
        assert!(calls(&mut b, 2 * SEC, 0, 9).is_empty(), "counting anew");
    }

    #[test]
    fn each_failed_probe_doubles_the_wait_up_to_the_cap() {
        let mut b = Breaker::new(settings());
        calls(&mut b, 0, 0, 10);
        let mut now = 0;
        let mut waits = Vec::new();
        for _ in 0..5 {
            let State::Open { until_us } = b.state() else {
                panic!("open")
            };
            waits.push((until_us - now) / SEC);
            now = until_us;
            b.allow(now).unwrap();
            b.record(now, Outcome::Failure).unwrap();
        }
        assert_eq!(waits, vec![1, 2, 4, 5, 5]);
        // Recovery brings the first wait back.
        let State::Open { until_us } = b.state() else {
            panic!("open")
        };
        b.allow(until_us).unwrap();
        b.record(until_us, Outcome::Success).unwrap();
        calls(&mut b, until_us, 0, 10);
        assert_eq!(
            b.state(),
            State::Open {
                until_us: until_us + SEC
            }
        );
    }

    #[test]
    fn outcomes_of_calls_before_it_opened_are_ignored() {
        let mut b = Breaker::new(settings());
        calls(&mut b, SEC, 0, 10);
        assert_eq!(b.record(SEC, Outcome::Success), None);
        assert_eq!(b.record(SEC, Outcome::Failure), None);
        assert_eq!(b.state(), State::Open { until_us: 2 * SEC });
    }

    #[test]
    fn an_operator_forces_it_open_and_closed() {
        let mut b = Breaker::new(settings());
        let open = b.force_open().unwrap();
        assert_eq!((open.to, open.reason), (State::ForcedOpen, Reason::Forced));
        assert_eq!(b.allow(100 * SEC), Err(u64::MAX), "no probing while forced");
        assert_eq!(b.force_open(), None);
        let closed = b.force_close().unwrap();
        assert_eq!(closed.to, State::Closed);
        assert_eq!(b.allow(100 * SEC), Ok(None));
    }

    #[test]
    fn settings_out_of_range_are_refused() {
        let bad = BreakerSettings {
            failure_pct: 0,
            ..settings()
        };
        assert_eq!(
            bad.check().unwrap_err(),
            "failure_pct 0 is out of range (1 to 100)"
        );
        let mut b = Breaker::new(settings());
        assert!(b.set_settings(bad).is_err());
        assert_eq!(b.settings(), &settings());
    }
}
