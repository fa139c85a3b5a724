//! Fuzzing what lies behind the seal: mutated bodies of real datagrams
//! (SWIM messages, metadata, pulls, anti-entropy asks and answers), sealed
//! under the right key so they reach the parsers, handed to a membership.
//! None panics; what cannot be used is counted as malformed; the membership
//! still works afterwards. (Datagrams that fail the seal are fuzzed in
//! `seal.rs`'s tests: a million mutations, none opens.)
//!
//! `EXCHANGE_FUZZ_ITERATIONS=10000000 cargo test --release -p
//! exchange-discovery --test fuzz_datagram_bodies` runs it longer.

use std::time::Duration;

use exchange_discovery::membership::wire;
use exchange_discovery::seal::{Opener, seal};
use exchange_discovery::{ClusterKey, Membership, Settings, in_memory_addr, in_memory_node};
use exchange_runtime::fuzz::{Mutator, iterations};
use exchange_runtime::{NodeId, Time};
use rand::Rng;

const T0: Time = Time::from_micros(1_000_000_000);

fn key() -> ClusterKey {
    ClusterKey::new(b"the fuzzed cluster's key").expect("long enough")
}

fn membership(id: u64) -> Membership {
    let node = NodeId(id);
    let mut settings = Settings::new(node, 1, in_memory_addr(node), key());
    settings.seeds = vec![in_memory_addr(NodeId(1))];
    let meta = wire::Member {
        app_endpoint: format!("mem://{id}"),
        handles: vec![wire::Handled {
            name: "work.do".into(),
            version: "1".into(),
        }],
        ..wire::Member::default()
    };
    Membership::new(settings, meta).expect("small metadata")
}

/// Memberships joining and talking for ten seconds on a network that loses
/// a third of the datagrams (so anti-entropy has gaps to fill): every body
/// they send, opened, is the corpus.
fn corpus(members: &mut [Membership], mutator: &mut Mutator) -> Vec<Vec<u8>> {
    let mut opener = Opener::new(key(), Duration::from_secs(30), 1 << 20);
    let mut bodies = Vec::new();
    let mut now = T0;
    for member in members.iter_mut() {
        member.start(now);
    }
    for _ in 0..2_000 {
        now = now + Duration::from_millis(10);
        let mut sent = Vec::new();
        for (i, member) in members.iter_mut().enumerate() {
            member.handle_timeout(now);
            while let Some(datagram) = member.poll_transmit() {
                sent.push((i, datagram));
            }
        }
        for (from, datagram) in sent {
            if let Ok(body) = opener.open(now.as_micros(), &datagram.bytes) {
                bodies.push(body.to_vec());
            }
            if mutator.rng().random_bool(0.3) {
                continue;
            }
            let to = in_memory_node(datagram.to).expect("an in-memory address");
            let from_addr = in_memory_addr(NodeId(from as u64 + 1));
            members[to.0 as usize - 1].handle_datagram(now, from_addr, &datagram.bytes);
        }
    }
    assert!(
        members
            .iter()
            .all(|m| m.members().count() == members.len() - 1),
        "they found each other"
    );
    bodies.extend(sync_answer(&mut members[0], &bodies, now, &mut opener));
    bodies.sort();
    bodies.dedup();
    bodies
}

/// An anti-entropy answer: a converged member asked with a filter that
/// knows nobody (a real ask with its bits cleared) lists its live members.
fn sync_answer(
    member: &mut Membership,
    bodies: &[Vec<u8>],
    now: Time,
    opener: &mut Opener,
) -> Vec<Vec<u8>> {
    let mut ask = bodies
        .iter()
        .find(|body| body.first() == Some(&4))
        .expect("an anti-entropy ask")
        .clone();
    ask[9..].fill(0);
    let datagram = seal(&key(), now.as_micros(), 0x5eed, &ask);
    member.handle_datagram(now, in_memory_addr(NodeId(2)), &datagram);
    std::iter::from_fn(|| member.poll_transmit())
        .filter_map(|answer| {
            opener
                .open(now.as_micros(), &answer.bytes)
                .ok()
                .map(<[u8]>::to_vec)
        })
        .collect()
}

#[test]
fn mutated_authentic_bodies_never_panic_and_are_counted() {
    let mut mutator = Mutator::new(0x626f_6479);
    let mut members: Vec<Membership> = (1..=5).map(membership).collect();
    let corpus = corpus(&mut members, &mut mutator);
    let kinds: std::collections::BTreeSet<u8> =
        corpus.iter().filter_map(|b| b.first().copied()).collect();
    assert_eq!(
        kinds.len(),
        5,
        "every kind of body is in the corpus: {kinds:?}"
    );
    let mut target = membership(9);
    target.start(T0);
    let mut now = T0;
    let runs = iterations(50_000);
    for _ in 0..runs {
        now = now + Duration::from_micros(100);
        let body = mutator.mutate(&corpus);
        let nonce = mutator.rng().random();
        let datagram = seal(&key(), now.as_micros(), nonce, &body);
        let from = in_memory_addr(NodeId(mutator.rng().random_range(1..=4)));
        target.handle_datagram(now, from, &datagram);
        target.handle_timeout(now);
        while target.poll_transmit().is_some() {}
        while target.poll_event().is_some() {}
    }
    let stats = target.stats();
    assert_eq!(stats.datagrams_in, runs as u64);
    assert_eq!(target.refused_total(), 0, "every datagram was authentic");
    assert!(
        stats.malformed > 0 && stats.malformed < runs as u64,
        "some bodies could be used and some not: {stats:?}"
    );
}
