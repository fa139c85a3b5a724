//! A small mutational fuzzer's input generator, for the fuzz tests (the
//! crate's `testing` feature only). Seeded, so a failing input is found again
//! from its seed and iteration; stable Rust, no coverage feedback: it stacks a
//! few byte-level mutations on inputs from a corpus of valid ones, which gets
//! past the first checks of a parser far more often than random bytes do.
//!
//! ```
//! let corpus = vec![b"\x08\x01\x12\x03a.b".to_vec()];
//! let mut mutator = exchange_runtime::fuzz::Mutator::new(7);
//! let input = mutator.mutate(&corpus);
//! assert!(input.len() <= 2 * 7 + 64);
//! ```

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How many inputs a fuzz test tries: `EXCHANGE_FUZZ_ITERATIONS`, or
/// `default` (what CI runs: a bounded time).
pub fn iterations(default: usize) -> usize {
    std::env::var("EXCHANGE_FUZZ_ITERATIONS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(default)
}

/// Makes inputs from a corpus, every choice drawn from its seed.
#[derive(Debug)]
pub struct Mutator {
    rng: ChaCha8Rng,
}

impl Mutator {
    /// A mutator whose choices come from `seed`.
    pub fn new(seed: u64) -> Mutator {
        Mutator {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    /// The RNG, for a test's own seeded choices.
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }

    /// One input: a corpus entry (or nothing, if the corpus is empty) with
    /// one to four mutations stacked: bit flips, interesting bytes, inserted,
    /// removed or duplicated runs, truncation, and splices with another entry.
    /// At most twice the longest entry plus 64 bytes.
    pub fn mutate(&mut self, corpus: &[Vec<u8>]) -> Vec<u8> {
        let mut input = self.pick(corpus);
        let limit = corpus.iter().map(Vec::len).max().unwrap_or(0) * 2 + 64;
        for _ in 0..self.rng.random_range(1..=4) {
            self.mutate_once(&mut input, corpus);
            input.truncate(limit);
        }
        input
    }

    fn pick(&mut self, corpus: &[Vec<u8>]) -> Vec<u8> {
        if corpus.is_empty() {
            return Vec::new();
        }
        corpus[self.rng.random_range(0..corpus.len())].clone()
    }

    fn mutate_once(&mut self, input: &mut Vec<u8>, corpus: &[Vec<u8>]) {
        const INTERESTING: [u8; 8] = [0x00, 0x01, 0x7f, 0x80, 0xff, 0x08, 0x12, 0x0a];
        let at = |rng: &mut ChaCha8Rng, len: usize| rng.random_range(0..=len);
        match self.rng.random_range(0..7) {
            0 if !input.is_empty() => {
                let i = self.rng.random_range(0..input.len());
                input[i] ^= 1 << self.rng.random_range(0..8);
            }
            1 if !input.is_empty() => {
                let i = self.rng.random_range(0..input.len());
                input[i] = INTERESTING[self.rng.random_range(0..INTERESTING.len())];
            }
            2 => {
                let i = at(&mut self.rng, input.len());
                let byte = self.rng.random();
                input.insert(i, byte);
            }
            3 if !input.is_empty() => {
                let i = self.rng.random_range(0..input.len());
                let end = (i + self.rng.random_range(1..=8)).min(input.len());
                input.drain(i..end);
            }
            4 => {
                let cut = at(&mut self.rng, input.len());
                input.truncate(cut);
            }
            5 if !input.is_empty() => {
                let i = self.rng.random_range(0..input.len());
                let end = (i + self.rng.random_range(1..=16)).min(input.len());
                let run: Vec<u8> = input[i..end].to_vec();
                let to = at(&mut self.rng, input.len());
                input.splice(to..to, run);
            }
            _ => {
                let other = self.pick(corpus);
                let keep = at(&mut self.rng, input.len());
                let from = at(&mut self.rng, other.len());
                input.truncate(keep);
                input.extend_from_slice(&other[from..]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_makes_the_same_inputs() {
        let corpus = vec![vec![1, 2, 3, 4, 5, 6, 7, 8], vec![9; 20]];
        let run = |seed| {
            let mut mutator = Mutator::new(seed);
            (0..100)
                .map(|_| mutator.mutate(&corpus))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
        assert!(run(3).iter().all(|input| input.len() <= 2 * 20 + 64));
    }
}
