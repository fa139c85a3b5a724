//! Anti-entropy: every probe period a node sends one random member a Bloom
//! filter of the members it knows, and gets back the live members it lacks.

use std::net::SocketAddr;

use rand_chacha_10::rand_core::Rng as _;

use super::{DATAGRAM_BYTES_MAX, DatagramKind, Identity, Membership, OVERHEAD, SYNC_MEMBERS};
use exchange_runtime::Time;

/// A Bloom filter of discovery addresses (anti-entropy: "these I know").
/// Four hash functions by double hashing, ~10 bits per member: about 1% false
/// positives while it fits a datagram (about 1,000 members), more beyond; a
/// fresh seed per request means a member missed once is found the next time.
pub(super) struct Bloom {
    seed: u64,
    bits: Vec<u8>,
}

impl Bloom {
    const HASHES: u64 = 4;
    const BYTES_MAX: usize = DATAGRAM_BYTES_MAX - OVERHEAD - 8;

    pub(super) fn of(seed: u64, addrs: &[SocketAddr]) -> Bloom {
        let bytes = (addrs.len() * 10).div_ceil(8).clamp(32, Bloom::BYTES_MAX);
        let mut bloom = Bloom {
            seed,
            bits: vec![0; bytes],
        };
        for addr in addrs {
            for bit in bloom.positions(*addr) {
                bloom.bits[bit / 8] |= 1 << (bit % 8);
            }
        }
        bloom
    }

    fn positions(&self, addr: SocketAddr) -> impl Iterator<Item = usize> + use<> {
        let key = match addr {
            SocketAddr::V4(v4) => u64::from(u32::from(*v4.ip())) << 16 | u64::from(v4.port()),
            SocketAddr::V6(v6) => {
                let ip = u128::from(*v6.ip());
                (ip as u64) ^ ((ip >> 64) as u64).rotate_left(17) ^ u64::from(v6.port())
            }
        };
        let hash = exchange_runtime::splitmix(key ^ self.seed);
        let (h1, h2) = (hash & 0xffff_ffff, (hash >> 32) | 1);
        let bits = (self.bits.len() * 8) as u64;
        (0..Bloom::HASHES).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) % bits) as usize)
    }

    pub(super) fn contains(&self, addr: SocketAddr) -> bool {
        self.positions(addr)
            .all(|bit| self.bits[bit / 8] & (1 << (bit % 8)) != 0)
    }

    pub(super) fn encode(&self) -> Vec<u8> {
        let mut body = self.seed.to_be_bytes().to_vec();
        body.extend_from_slice(&self.bits);
        body
    }

    pub(super) fn decode(body: &[u8]) -> Option<Bloom> {
        if body.len() < 8 + 1 || body.len() > 8 + Bloom::BYTES_MAX {
            return None;
        }
        let (seed, bits) = body.split_at(8);
        Some(Bloom {
            seed: u64::from_be_bytes(seed.try_into().ok()?),
            bits: bits.to_vec(),
        })
    }
}

impl Membership {
    /// Asks one random live member for the live members this node lacks,
    /// sending a Bloom filter of the members it knows.
    pub(super) fn sync(&mut self, now: Time) {
        let mut known = vec![self.settings.addr];
        let mut live = Vec::new();
        for member in self.swim.iter_membership_state() {
            known.push(member.id().addr);
            if member.state() != foca::State::Down {
                live.push(member.id().addr);
            }
        }
        if live.is_empty() {
            return;
        }
        let to = live[self.rng.next_u32() as usize % live.len()];
        let filter = Bloom::of(self.rng.next_u64(), &known);
        self.send(now, to, DatagramKind::SyncAsk, &filter.encode());
    }

    /// Answers a sync request: the live members (this node included) that the
    /// asker's filter does not hold, as many as fit one datagram.
    pub(super) fn answer_sync(&mut self, now: Time, from: SocketAddr, filter: &Bloom) {
        let this = foca::Member::alive(self.swim.identity().clone());
        let mut missing: Vec<foca::Member<Identity>> = std::iter::once(&this)
            .chain(self.swim.iter_membership_state())
            .filter(|member| member.state() != foca::State::Down)
            .filter(|member| !filter.contains(member.id().addr))
            .take(SYNC_MEMBERS)
            .cloned()
            .collect();
        if missing.is_empty() {
            return;
        }
        let body = loop {
            let Ok(body) = postcard::to_allocvec(&missing) else {
                return;
            };
            if body.len() + OVERHEAD <= DATAGRAM_BYTES_MAX || missing.len() <= 1 {
                break body;
            }
            missing.truncate(missing.len() * 3 / 4);
        };
        self.send(now, from, DatagramKind::Sync, &body);
    }

    /// Takes in the members of a sync that this node has never heard of.
    pub(super) fn learn(&mut self, members: Vec<foca::Member<Identity>>) {
        let known: rustc_hash::FxHashSet<SocketAddr> = self
            .swim
            .iter_membership_state()
            .map(|member| member.id().addr)
            .collect();
        let own = self.settings.addr;
        let new = members.into_iter().filter(|member| {
            member.state() != foca::State::Down
                && member.id().addr != own
                && !known.contains(&member.id().addr)
        });
        if self.swim.apply_many(new, false, &mut self.runtime).is_err() {
            self.stats.malformed += 1;
        }
    }
}
