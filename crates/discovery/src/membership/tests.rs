//! Memberships on a simulated network of their own.
use super::*;
use crate::seal::ClusterKey;

/// A few memberships on a perfect network with 1 ms of latency.
struct Cluster {
    members: Vec<Membership>,
    now: Time,
    in_flight: Vec<(Time, SocketAddr, SocketAddr, Vec<u8>)>,
    down: Vec<bool>,
    /// A node cut off from all the others (datagrams either way lost).
    isolated: Option<usize>,
    /// Every datagram node 0 took in.
    seen_by_0: Vec<Vec<u8>>,
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1 + i as u8], 7946))
}

/// The member behind [`addr`].
fn index(addr: SocketAddr) -> usize {
    match addr {
        SocketAddr::V4(v4) => usize::from(v4.ip().octets()[3]) - 1,
        SocketAddr::V6(_) => usize::MAX,
    }
}

fn settings(i: usize) -> Settings {
    let mut settings = Settings::new(
        NodeId(100 + i as u64),
        1,
        addr(i),
        ClusterKey::new(b"sixteen byte key").unwrap(),
    );
    settings.seeds = vec![addr(0)];
    settings
}

fn meta(name: &str) -> wire::Member {
    wire::Member {
        app_endpoint: "tcp://127.0.0.1:1".into(),
        handles: vec![wire::Handled {
            name: name.into(),
            version: "1".into(),
        }],
        ..wire::Member::default()
    }
}

impl Cluster {
    fn new(n: usize) -> Cluster {
        let now = Time::from_micros(1_000_000_000);
        let mut members: Vec<Membership> = (0..n)
            .map(|i| Membership::new(settings(i), meta(&format!("svc.n{i}"))).unwrap())
            .collect();
        for member in &mut members {
            member.start(now);
        }
        let mut cluster = Cluster {
            members,
            now,
            in_flight: Vec::new(),
            down: vec![false; n],
            isolated: None,
            seen_by_0: Vec::new(),
        };
        cluster.collect();
        cluster
    }

    fn collect(&mut self) {
        for (i, member) in self.members.iter_mut().enumerate() {
            while let Some(datagram) = member.poll_transmit() {
                let at = self.now + Duration::from_millis(1);
                self.in_flight
                    .push((at, addr(i), datagram.to, datagram.bytes));
            }
        }
    }

    fn run_for(&mut self, span: Duration) {
        let end = self.now + span;
        for _ in 0..10_000_000 {
            let next_timer = (0..self.members.len())
                .filter(|i| !self.down[*i])
                .filter_map(|i| self.members[i].poll_timeout())
                .min();
            let next_datagram = self.in_flight.iter().map(|d| d.0).min();
            let next = [next_timer, next_datagram].into_iter().flatten().min();
            let Some(next) = next.filter(|next| *next <= end) else {
                self.now = end;
                return;
            };
            self.now = next;
            let (due, later): (Vec<_>, Vec<_>) =
                self.in_flight.drain(..).partition(|d| d.0 <= next);
            self.in_flight = later;
            for (_, from, to, bytes) in due {
                let (i, from_index) = (index(to), index(from));
                let cut = self.isolated.is_some_and(|x| (x == i) != (x == from_index));
                if i < self.members.len() && !self.down[i] && !cut {
                    self.members[i].handle_datagram(next, from, &bytes);
                    if i == 0 {
                        self.seen_by_0.push(bytes);
                    }
                }
            }
            for i in 0..self.members.len() {
                if !self.down[i] && self.members[i].poll_timeout().is_some_and(|t| t <= next) {
                    self.members[i].handle_timeout(next);
                }
            }
            self.collect();
        }
        panic!("the cluster never reached the end of its run");
    }

    fn routable(&self, i: usize) -> Vec<u64> {
        self.members[i].members().map(|m| m.meta.node).collect()
    }
}

#[test]
fn nodes_join_through_one_seed_and_learn_each_others_names() {
    let mut cluster = Cluster::new(5);
    cluster.run_for(Duration::from_secs(5));
    for i in 0..5 {
        let expected: Vec<u64> = (0..5).filter(|j| *j != i).map(|j| 100 + j as u64).collect();
        assert_eq!(cluster.routable(i), expected, "node {i}");
        let n3 = cluster.members[i].member(NodeId(103));
        if i != 3 {
            assert_eq!(n3.unwrap().meta.handles[0].name, "svc.n3");
        }
    }
}

#[test]
fn a_crashed_node_goes_down_and_a_changed_name_spreads() {
    let mut cluster = Cluster::new(4);
    cluster.run_for(Duration::from_secs(5));
    let now = cluster.now;
    cluster.members[1]
        .update_meta(now, |meta| meta.subscribes.push("feed.posted".into()))
        .unwrap();
    cluster.collect();
    cluster.run_for(Duration::from_secs(3));
    for i in [0, 2, 3] {
        let member = cluster.members[i].member(NodeId(101)).unwrap();
        assert_eq!(member.meta.subscribes, ["feed.posted"], "node {i}");
    }
    cluster.down[3] = true;
    cluster.run_for(Duration::from_secs(10));
    for i in 0..3 {
        assert!(cluster.members[i].member(NodeId(103)).is_none(), "node {i}");
    }
}

#[test]
fn without_a_live_seed_nodes_retry_with_back_off_and_join_when_it_appears() {
    let mut cluster = Cluster::new(3);
    // The seed (node 0) is not there for the first 10 s.
    cluster.down[0] = true;
    cluster.run_for(Duration::from_secs(10));
    let tries = cluster.members[1].stats().seed_announces;
    assert!(
        (4..=6).contains(&tries),
        "0.5 s doubling: {tries} tries in 10 s"
    );
    assert!(cluster.routable(1).is_empty());
    cluster.down[0] = false;
    // The next try comes within the back-off (8 s ± 25% by now).
    cluster.run_for(Duration::from_secs(12));
    for i in 0..3 {
        assert_eq!(cluster.routable(i).len(), 2, "node {i}");
    }
}

#[test]
fn a_node_that_leaves_is_dropped_at_once() {
    let mut cluster = Cluster::new(3);
    cluster.run_for(Duration::from_secs(5));
    let now = cluster.now;
    cluster.members[2].leave(now);
    cluster.collect();
    cluster.run_for(Duration::from_millis(300));
    for i in 0..2 {
        assert!(cluster.members[i].member(NodeId(102)).is_none(), "node {i}");
    }
}

#[test]
fn after_a_partition_heals_only_the_cut_off_node_went_down_and_came_back() {
    let mut cluster = Cluster::new(3);
    cluster.run_for(Duration::from_secs(5));
    let downs = |cluster: &Cluster, i: usize| cluster.members[i].stats().downs;
    assert_eq!((downs(&cluster, 0), downs(&cluster, 1)), (0, 0));
    cluster.isolated = Some(2);
    cluster.run_for(Duration::from_secs(6));
    for i in 0..2 {
        assert_eq!(cluster.routable(i), [100 + (1 - i) as u64], "node {i}");
    }
    assert!(cluster.routable(2).is_empty());
    // The cut-off node's verdicts on the others (both down, in its view)
    // reach them once healed; they talk to each other all along, so
    // neither may see the other go down: each comes back under a new
    // life before that is acted on.
    cluster.isolated = None;
    cluster.run_for(Duration::from_secs(8));
    for i in 0..3 {
        assert_eq!(cluster.routable(i).len(), 2, "node {i}");
    }
    assert_eq!(
        (downs(&cluster, 0), downs(&cluster, 1)),
        (1, 1),
        "nodes 0 and 1 saw only node 2 go down"
    );
}

/// Everything about node 0's view that a datagram could change.
fn snapshot(member: &Membership) -> (Vec<Member>, usize, bool, u64, u64, u64) {
    let stats = member.stats();
    (
        member.members().cloned().collect(),
        member.alive(),
        member.is_active(),
        stats.ups,
        stats.downs,
        stats.changes,
    )
}

#[test]
fn a_million_bad_datagrams_change_nothing_and_panic_nowhere() {
    use rand::{Rng, SeedableRng};
    let mut cluster = Cluster::new(4);
    cluster.run_for(Duration::from_secs(5));
    let captured = std::mem::take(&mut cluster.seen_by_0);
    assert!(captured.len() > 20, "real datagrams to mutate");
    let now = cluster.now;
    let node = &mut cluster.members[0];
    while node.poll_event().is_some() {}
    while node.poll_transmit().is_some() {}
    let before = snapshot(node);
    let refused_before = node.refused_total();
    let key = ClusterKey::new(b"sixteen byte key").unwrap();
    let wrong = ClusterKey::new(b"another cluster key").unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let from = addr(1);
    let rounds = 1_000_000;
    for round in 0..rounds {
        let original = &captured[rng.random_range(0..captured.len())];
        let body = &original[20..original.len() - 16];
        let datagram = match round % 6 {
            // Bit flips anywhere.
            0 => {
                let mut bytes = original.clone();
                for _ in 0..rng.random_range(1..=8) {
                    let bit = rng.random_range(0..bytes.len() * 8);
                    bytes[bit / 8] ^= 1 << (bit % 8);
                }
                bytes
            }
            // Truncated.
            1 => original[..rng.random_range(0..original.len())].to_vec(),
            // Sealed under another key.
            2 => seal::seal(&wrong, now.as_micros(), rng.random(), body),
            // The right key, sent too long ago or too far ahead.
            3 => {
                let skew = rng.random_range(31_000_000..900_000_000u64);
                let at = if rng.random_bool(0.5) {
                    now.as_micros() - skew
                } else {
                    now.as_micros() + skew
                };
                seal::seal(&key, at, rng.random(), body)
            }
            // Replayed as it was.
            4 => original.clone(),
            // Garbage.
            _ => (0..rng.random_range(0..1500))
                .map(|_| rng.random())
                .collect(),
        };
        node.handle_datagram(now, from, &datagram);
        assert!(node.poll_event().is_none(), "round {round}: an event");
        assert!(node.poll_transmit().is_none(), "round {round}: an answer");
    }
    assert_eq!(snapshot(node), before, "no membership change");
    assert_eq!(
        node.refused_total() - refused_before,
        rounds,
        "every one refused and counted"
    );
}

#[test]
fn metadata_too_large_for_a_datagram_is_refused() {
    let mut big = meta("svc.a");
    big.handles = (0..100)
        .map(|i| wire::Handled {
            name: format!("service.with.a.long.name.{i}"),
            version: "1.0.0".into(),
        })
        .collect();
    let error = Membership::new(settings(0), big).unwrap_err();
    assert!(error.to_string().contains("at most 900"), "{error}");
}
