//! Routes come from the driver: without static routes, a cluster tells no node
//! who handles what; the driver does, one route change at a time, as each
//! node's membership learns it. A message to a name nobody handles yet waits
//! for one; discovery's datagrams cross the same links as frames; and a
//! recording holds the route changes, so it replays exactly.

#[path = "../../runtime/tests/support/mod.rs"]
mod support;

use std::time::Duration;

use exchange_host::{Cluster, Host};
use exchange_idl::exchange::v1::record::{self as rec, record::Kind};
use exchange_runtime::netem::{LinkParams, Netem};
use exchange_runtime::record::{ReplayError, parse_recording};
use exchange_runtime::{
    ComponentLimits, Input, InvalidRecord, Kind as MessageKind, Locality, Node, NodeConfig, NodeId,
    NodeInfo, RouteChange, Time,
};
use support::*;

const SEED: u64 = 5;

/// n1 requests `work.do` at start and subscribes to `news`; n2 handles
/// `work.do` and replies.
fn network(requester: &Log, worker: &Log) -> Cluster {
    let link = LinkParams::uniform(Duration::from_millis(1), Duration::ZERO, 0.0);
    let mut net = Cluster::new(Netem::new(SEED, link));
    let config = NodeConfig {
        seed: SEED,
        handler_wait: Duration::from_secs(1),
        ..NodeConfig::default()
    };
    let mut n1 = Node::new(NodeId(1), "n1", config.clone());
    let actions = vec![
        Action::Subscribe("news"),
        Action::Request("work.do", Duration::from_secs(2)),
    ];
    n1.add_component(
        "asker",
        ComponentLimits::default(),
        starter(actions, requester),
    )
    .unwrap();
    let mut n2 = Node::new(NodeId(2), "n2", config);
    n2.add_component(
        "worker",
        ComponentLimits::default(),
        recorder(&["work.do"], worker, true),
    )
    .unwrap();
    net.add(Host::new(n1));
    net.add(Host::new(n2));
    net
}

fn step_until(net: &mut Cluster, mut now: Time, done: impl Fn(&Cluster) -> bool) -> Time {
    for _ in 0..1_000 {
        if done(net) {
            return now;
        }
        net.step(now);
        now = now + Duration::from_millis(1);
    }
    panic!("not done in 1000 steps");
}

/// What n1's membership would learn of n2: where it is, and that it handles
/// `work.do`.
fn learn_that_n2_does_the_work(net: &mut Cluster, now: Time) {
    let info = NodeInfo {
        locality: Locality::Host,
        load: 3,
    };
    let info = RouteChange::Info {
        node: NodeId(2),
        info,
    };
    net.handle(now, NodeId(1), Input::Route(info));
    let handler = RouteChange::Handler {
        name: "work.do".into(),
        node: NodeId(2),
        handles: true,
    };
    net.handle(now, NodeId(1), Input::Route(handler));
}

#[test]
fn a_request_waits_for_the_route_the_driver_gives_and_the_recording_replays() {
    let (requester, worker) = (log(), log());
    let mut net = network(&requester, &worker);
    let begin = net.record(SEED, true);
    net.start(T0);
    let mut now = T0;
    for _ in 0..20 {
        net.step(now);
        now = now + Duration::from_millis(1);
    }
    assert!(worker.borrow().is_empty(), "no route, so nothing left n1");
    assert_eq!(net.net().frame_counts().sent, 0);
    assert_eq!(net.node(NodeId(1)).unwrap().awaiting_handler(), 1);
    let n2 = net.node(NodeId(2)).unwrap().router();
    assert_eq!(
        n2.remote_subscribers("news"),
        [NodeId(1)],
        "with no membership, the cluster tells the others of a subscription"
    );

    // Discovery learnt that n2 handles `work.do`: the request leaves.
    learn_that_n2_does_the_work(&mut net, now);
    now = step_until(&mut net, now, |_| !requester.borrow().is_empty());
    assert_eq!(worker.borrow().len(), 1);
    assert_eq!(requester.borrow()[0].kind, MessageKind::Reply);
    assert_eq!(net.node(NodeId(1)).unwrap().awaiting_handler(), 0);
    let gone = RouteChange::Gone { node: NodeId(2) };
    net.handle(now, NodeId(1), Input::Route(gone));
    net.shutdown(now);

    let mut bytes = begin;
    bytes.extend(net.take_recording());
    let recording = parse_recording(&bytes).unwrap();
    assert_eq!(recording.cut_short, 0);
    let (begin, records) = (recording.begin, recording.records);
    assert!(
        begin.discovery,
        "the recording says routes came from the driver"
    );
    let routes = records
        .iter()
        .filter(|r| matches!(r.kind, Some(Kind::Route(_))))
        .count();
    assert_eq!(routes, 4, "info, handler, the subscription, gone");

    // Fresh nodes, the same inputs: the same outputs.
    let (requester2, worker2) = (log(), log());
    let mut replay = network(&requester2, &worker2);
    for record in &records {
        replay.replay(record).unwrap();
    }
    assert_eq!(*worker2.borrow(), *worker.borrow());
    assert_eq!(*requester2.borrow(), *requester.borrow());

    // Without the route records, n1 never sends: the replay says so.
    let mut replay = network(&log(), &log());
    let diverged = records
        .iter()
        .filter(|r| !matches!(r.kind, Some(Kind::Route(_))))
        .map(|record| replay.replay(record))
        .find_map(Result::err)
        .expect("diverges");
    assert!(
        matches!(diverged, ReplayError::Diverged { .. }),
        "{diverged}"
    );
    assert!(diverged.to_string().contains("emitted"), "{diverged}");
}

#[test]
fn datagrams_cross_the_links_with_latency_and_loss_and_are_counted() {
    let link = LinkParams::uniform(Duration::from_millis(2), Duration::ZERO, 0.5);
    let mut net = Netem::new(SEED, link);
    for i in 0..1_000u32 {
        net.send_datagram(T0, NodeId(1), NodeId(2), i.to_le_bytes().to_vec());
    }
    assert_eq!(net.next_at(), Some(T0 + Duration::from_millis(2)));
    assert!(net.pop_datagram(T0 + Duration::from_millis(1)).is_none());
    let arrived: Vec<_> =
        std::iter::from_fn(|| net.pop_datagram(T0 + Duration::from_millis(2))).collect();
    let counts = net.datagram_counts();
    assert_eq!(counts.sent, 1_000);
    assert_eq!(arrived.len() as u64 + counts.lost, 1_000);
    assert!(
        (400..600).contains(&arrived.len()),
        "about half of 1000 arrive at 50% loss: {}",
        arrived.len()
    );
    assert!(
        arrived
            .iter()
            .all(|d| d.from == NodeId(1) && d.to == NodeId(2))
    );
    let order: Vec<u32> = arrived
        .iter()
        .map(|d| u32::from_le_bytes(d.bytes[..].try_into().unwrap()))
        .collect();
    assert!(order.is_sorted(), "sent at once, arrive in order");
    assert_eq!(net.frame_counts().sent, 0, "datagrams are not frames");
}

#[test]
fn a_broken_route_record_is_refused_with_what_is_wrong() {
    let mut net = network(&log(), &log());
    let record = |change| rec::Record {
        node: 1,
        at_us: 1,
        kind: Some(Kind::Route(rec::Route { about: 2, change })),
    };
    let named = |name: &str| {
        Some(rec::route::Change::Handler(rec::Named {
            name: name.into(),
            on: true,
        }))
    };
    let bad_name = net.replay(&record(named("no spaces allowed"))).unwrap_err();
    assert!(
        matches!(&bad_name, ReplayError::Record(InvalidRecord::Name { name, .. }) if name == "no spaces allowed"),
        "{bad_name}"
    );
    let far = Some(rec::route::Change::Info(rec::NodeInfo {
        locality: 7,
        load: 0,
    }));
    let far = net.replay(&record(far)).unwrap_err();
    assert!(far.to_string().contains("locality 7"), "{far}");
    let none = net.replay(&record(None)).unwrap_err();
    assert!(none.to_string().contains("no change"), "{none}");
}
