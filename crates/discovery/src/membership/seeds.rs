//! Seeds: a node that knows no live member announces itself to its seeds
//! with back-off until one answers; a node in a cluster announces to a seed
//! that is not a live member now and then, so that a split cluster merges.

use std::net::SocketAddr;

use exchange_runtime::Time;

use rand_chacha_10::rand_core::Rng as _;

use super::{Identity, Membership};

impl Membership {
    /// The seeds, but this node.
    pub(super) fn other_seeds(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        let own = self.settings.addr;
        self.settings
            .seeds
            .iter()
            .copied()
            .filter(move |seed| *seed != own)
    }

    pub(super) fn announce_to_seeds(&mut self, now: Time) {
        let seeds: Vec<SocketAddr> = self.other_seeds().collect();
        if seeds.is_empty() {
            return;
        }
        for seed in seeds {
            self.announce_to(seed);
        }
        // Doubling back-off with ±25% jitter, so that nodes started together
        // do not announce in step.
        let jitter = 0.75 + (self.rng.next_u32() as f64 / u32::MAX as f64) * 0.5;
        self.next_seed_at = Some(now + self.seed_retry.mul_f64(jitter));
        self.seed_retry = (self.seed_retry * 2).min(self.settings.seed_retry_max);
    }

    /// While part of a cluster, announces to one seed that is not a live
    /// member: a cluster split in two (by a partition, or by restarts that
    /// found each other first) merges again through its seeds, even when each
    /// half has forgotten the other.
    pub(super) fn announce_to_a_missing_seed(&mut self) {
        let missing: Vec<SocketAddr> = self
            .other_seeds()
            .filter(|seed| !self.alive.values().any(|id| id.addr == *seed))
            .collect();
        if missing.is_empty() {
            return;
        }
        let seed = missing[self.rng.next_u32() as usize % missing.len()];
        self.announce_to(seed);
    }

    /// Announces this node to the seed at `addr`. A seed's node id and life
    /// are unknown: SWIM answers to the address, and the answer carries the
    /// seed's real identity.
    pub(super) fn announce_to(&mut self, addr: SocketAddr) {
        let placeholder = Identity {
            addr,
            node: 0,
            life: 0,
        };
        self.stats.seed_announces += 1;
        let announced = self.swim.announce(placeholder, &mut self.runtime);
        self.stats.swim_errors += u64::from(announced.is_err());
    }
}
