//! Authenticated datagrams: every discovery datagram carries a MAC under the
//! cluster key, checked in constant time before anything else in it is read;
//! a timestamp window and a nonce reject replays. What fails is counted by
//! reason and otherwise ignored.
//!
//! Layout (all integers big-endian):
//!
//! ```text
//! 0      2        3         4             12        20       len-16  len
//! | "xd" | version | reserved | sent at (µs) | nonce | body … | tag (16) |
//! ```
//!
//! The tag is HMAC-SHA256 over everything before it, truncated to 16 bytes.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The first two bytes of every datagram.
const MAGIC: [u8; 2] = *b"xd";
/// The layout's version.
const VERSION: u8 = 1;
const HEADER_BYTES: usize = 20;
const TAG_BYTES: usize = 16;
/// Bytes a seal adds to a body.
pub const OVERHEAD_BYTES: usize = HEADER_BYTES + TAG_BYTES;
/// The shortest cluster key accepted.
pub const KEY_BYTES_MIN: usize = 16;

type HmacSha256 = Hmac<Sha256>;

/// A cluster key that is too short to be one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the cluster key has {0} bytes; it needs at least {KEY_BYTES_MIN}")]
pub struct ShortKey(pub usize);

/// The secret every member of a cluster shares.
#[derive(Clone)]
pub struct ClusterKey(Vec<u8>);

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(…)")
    }
}

impl ClusterKey {
    /// A key from its bytes (at least [`KEY_BYTES_MIN`]).
    pub fn new(bytes: &[u8]) -> Result<ClusterKey, ShortKey> {
        if bytes.len() < KEY_BYTES_MIN {
            return Err(ShortKey(bytes.len()));
        }
        Ok(ClusterKey(bytes.to_vec()))
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any length")
    }
}

/// Seals `body` into a datagram sent at `now_us` (the sender's clock, µs since
/// the Unix epoch) with a `nonce` the sender never reuses within the window.
pub fn seal(key: &ClusterKey, now_us: u64, nonce: u64, body: &[u8]) -> Vec<u8> {
    let mut datagram = Vec::with_capacity(HEADER_BYTES + body.len() + TAG_BYTES);
    datagram.extend_from_slice(&MAGIC);
    datagram.push(VERSION);
    datagram.push(0);
    datagram.extend_from_slice(&now_us.to_be_bytes());
    datagram.extend_from_slice(&nonce.to_be_bytes());
    datagram.extend_from_slice(body);
    let mut mac = key.mac();
    mac.update(&datagram);
    let tag = mac.finalize().into_bytes();
    datagram.extend_from_slice(&tag[..TAG_BYTES]);
    datagram
}

/// Why a datagram was ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Refusal {
    /// Shorter than a header and a tag.
    Truncated,
    /// The tag does not match: another key, or bytes changed on the way.
    BadTag,
    /// Authentic, but a layout this node does not read.
    Version,
    /// Sent too long ago, or too far in the future, for the window.
    Stale,
    /// Its nonce was seen within the window: a replay.
    Replayed,
}

impl Refusal {
    /// Every refusal, in counter order.
    pub const ALL: [Refusal; 5] = [
        Refusal::Truncated,
        Refusal::BadTag,
        Refusal::Version,
        Refusal::Stale,
        Refusal::Replayed,
    ];

    /// Its name in status and logs.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::Truncated => "truncated",
            Refusal::BadTag => "bad_tag",
            Refusal::Version => "version",
            Refusal::Stale => "stale",
            Refusal::Replayed => "replayed",
        }
    }
}

/// Checks datagrams and remembers nonces for the window.
#[derive(Debug)]
pub struct Opener {
    key: ClusterKey,
    window_us: u64,
    /// Nonces seen, by when they were sent, for the window.
    seen: BTreeSet<(u64, u64)>,
    nonces: HashSet<u64>,
    seen_max: usize,
    /// Datagrams sent at or before this are refused as stale: raised when the
    /// nonce memory is full, so that a forgotten nonce can never be replayed.
    floor_us: u64,
    refused: [u64; Refusal::ALL.len()],
    opened: u64,
}

impl Opener {
    /// Accepts datagrams sent within `window` of the receiver's clock,
    /// remembering at most `seen_max` nonces.
    pub fn new(key: ClusterKey, window: Duration, seen_max: usize) -> Opener {
        Opener {
            key,
            window_us: u64::try_from(window.as_micros()).unwrap_or(u64::MAX),
            seen: BTreeSet::new(),
            nonces: HashSet::new(),
            seen_max: seen_max.max(1),
            floor_us: 0,
            refused: [0; Refusal::ALL.len()],
            opened: 0,
        }
    }

    /// The body of an authentic, fresh datagram; otherwise why not (counted).
    /// `now_us` is the receiver's clock.
    pub fn open<'d>(&mut self, now_us: u64, datagram: &'d [u8]) -> Result<&'d [u8], Refusal> {
        let result = self.check(now_us, datagram);
        match result {
            Ok(_) => self.opened += 1,
            Err(refusal) => self.refused[refusal as usize] += 1,
        }
        result
    }

    fn check<'d>(&mut self, now_us: u64, datagram: &'d [u8]) -> Result<&'d [u8], Refusal> {
        if datagram.len() < HEADER_BYTES + TAG_BYTES {
            return Err(Refusal::Truncated);
        }
        let (signed, tag) = datagram.split_at(datagram.len() - TAG_BYTES);
        let mut mac = self.key.mac();
        mac.update(signed);
        // Constant time: `verify_truncated_left` compares without early exit.
        mac.verify_truncated_left(tag)
            .map_err(|_| Refusal::BadTag)?;
        if signed[..2] != MAGIC || signed[2] != VERSION {
            return Err(Refusal::Version);
        }
        let sent_us = u64::from_be_bytes(signed[4..12].try_into().expect("eight bytes"));
        let nonce = u64::from_be_bytes(signed[12..20].try_into().expect("eight bytes"));
        if sent_us.abs_diff(now_us) > self.window_us || sent_us <= self.floor_us {
            return Err(Refusal::Stale);
        }
        self.forget_before(now_us.saturating_sub(self.window_us));
        if !self.nonces.insert(nonce) {
            return Err(Refusal::Replayed);
        }
        self.seen.insert((sent_us, nonce));
        while self.seen.len() > self.seen_max {
            let (oldest_us, oldest) = self.seen.pop_first().expect("over the limit");
            self.nonces.remove(&oldest);
            self.floor_us = self.floor_us.max(oldest_us);
        }
        Ok(&signed[HEADER_BYTES..])
    }

    /// Nonces of datagrams sent before `cutoff_us` are refused as stale anyway.
    fn forget_before(&mut self, cutoff_us: u64) {
        while let Some(&(sent_us, nonce)) = self.seen.first() {
            if sent_us >= cutoff_us {
                break;
            }
            self.seen.pop_first();
            self.nonces.remove(&nonce);
        }
    }

    /// Datagrams refused, by reason.
    pub fn refused(&self, refusal: Refusal) -> u64 {
        self.refused[refusal as usize]
    }

    /// Datagrams refused, all reasons.
    pub fn refused_total(&self) -> u64 {
        self.refused.iter().sum()
    }

    /// Datagrams accepted.
    pub fn opened(&self) -> u64 {
        self.opened
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    const SECOND: u64 = 1_000_000;
    const T0: u64 = 1_700_000_000 * SECOND;

    fn key(byte: u8) -> ClusterKey {
        ClusterKey::new(&[byte; 32]).unwrap()
    }

    fn opener() -> Opener {
        Opener::new(key(7), Duration::from_secs(30), 10_000)
    }

    #[test]
    fn an_authentic_fresh_datagram_opens_once() {
        let mut opener = opener();
        let datagram = seal(&key(7), T0, 1, b"hello");
        assert_eq!(opener.open(T0 + SECOND, &datagram), Ok(&b"hello"[..]));
        assert_eq!(opener.open(T0 + SECOND, &datagram), Err(Refusal::Replayed));
        assert_eq!(opener.opened(), 1);
        assert_eq!(opener.refused(Refusal::Replayed), 1);
    }

    #[test]
    fn every_kind_of_bad_datagram_is_refused_and_counted() {
        let mut opener = opener();
        let good = seal(&key(7), T0, 2, b"body");
        assert_eq!(opener.open(T0, &good[..10]), Err(Refusal::Truncated));
        assert_eq!(
            opener.open(T0, &seal(&key(8), T0, 3, b"body")),
            Err(Refusal::BadTag)
        );
        let mut flipped = good.clone();
        flipped[21] ^= 0x01;
        assert_eq!(opener.open(T0, &flipped), Err(Refusal::BadTag));
        assert_eq!(opener.open(T0 + 31 * SECOND, &good), Err(Refusal::Stale));
        assert_eq!(opener.open(T0 - 31 * SECOND, &good), Err(Refusal::Stale));
        assert_eq!(opener.refused_total(), 5);
        assert_eq!(opener.open(T0, &good), Ok(&b"body"[..]));
        assert_eq!(ClusterKey::new(b"short").unwrap_err(), ShortKey(5));
    }

    #[test]
    fn a_full_nonce_memory_refuses_what_it_can_no_longer_tell_apart() {
        let mut opener = Opener::new(key(7), Duration::from_secs(30), 2);
        let first = seal(&key(7), T0, 1, b"");
        assert!(opener.open(T0, &first).is_ok());
        assert!(opener.open(T0, &seal(&key(7), T0 + 1, 2, b"")).is_ok());
        assert!(opener.open(T0, &seal(&key(7), T0 + 2, 3, b"")).is_ok());
        // Nonce 1 was forgotten to make room; its datagram must not open again.
        assert_eq!(opener.open(T0, &first), Err(Refusal::Stale));
    }

    /// A million mutated datagrams: bit flips, truncations, wrong keys, stale
    /// and future timestamps, repeated nonces. None opens, nothing panics.
    #[test]
    fn a_million_mutated_datagrams_never_open() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut opener = opener();
        let mut now = T0;
        let mut nonce = 0;
        let mut sent: Vec<Vec<u8>> = Vec::new();
        for round in 0..1_000_000u32 {
            now += 1_000;
            nonce += 1;
            let body: Vec<u8> = (0..rng.random_range(0..64)).map(|_| rng.random()).collect();
            let good = seal(&key(7), now, nonce, &body);
            let bad = match round % 6 {
                0 => {
                    let mut d = good.clone();
                    let bit = rng.random_range(0..d.len() * 8);
                    d[bit / 8] ^= 1 << (bit % 8);
                    d
                }
                1 => good[..rng.random_range(0..good.len())].to_vec(),
                2 => seal(&key(rng.random_range(0..7)), now, nonce, &body),
                3 => seal(
                    &key(7),
                    now - 31 * SECOND - rng.random_range(0..SECOND),
                    nonce,
                    &body,
                ),
                4 => seal(
                    &key(7),
                    now + 31 * SECOND + rng.random_range(0..SECOND),
                    nonce,
                    &body,
                ),
                // A replay of something already opened (round 0 opened one).
                _ => sent[rng.random_range(0..sent.len())].clone(),
            };
            assert!(opener.open(now, &bad).is_err(), "round {round} opened");
            if round % 1_000 == 0 {
                // Keep a few real ones in the memory, to be replayed later.
                let real = seal(&key(7), now, u64::MAX - u64::from(round), b"real");
                assert!(opener.open(now, &real).is_ok());
                sent.push(real);
                if sent.len() > 16 {
                    sent.remove(0);
                }
            }
        }
        assert_eq!(opener.refused_total(), 1_000_000);
    }
}
