//! With routes from discovery (`MemNetwork::route_by_discovery`), the in-memory
//! network tells no node who handles what: the driver does, one route change at
//! a time, as each node's membership learns it. A message to a name nobody
//! handles yet waits for one; subscriptions come out as events for the driver
//! to advertise; discovery's datagrams cross the same links as frames; and a
//! recording holds the route changes, so it replays exactly.

mod support;

use std::time::Duration;

use exchange_idl::exchange::v1::record::{self as rec, record::Kind as Input};
use exchange_runtime::mem::{LinkModel, MemNetwork};
use exchange_runtime::record::parse_recording;
use exchange_runtime::{
    ComponentLimits, Event, Kind, Locality, NoStopwatch, Node, NodeConfig, NodeId, NodeInfo,
    RouteChange, Time,
};
use support::*;

const SEED: u64 = 5;

/// n1 requests `work.do` at start and subscribes to `news`; n2 handles
/// `work.do` and replies.
fn network(requester: &Log, worker: &Log) -> MemNetwork {
    let mut net = MemNetwork::new(
        LinkModel {
            latency: Duration::from_millis(1),
            ..LinkModel::default()
        },
        SEED,
    );
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
    net.add_node(n1);
    net.add_node(n2);
    net.route_by_discovery();
    net
}

fn step_until(net: &mut MemNetwork, mut now: Time, done: impl Fn(&MemNetwork) -> bool) -> Time {
    for _ in 0..1_000 {
        if done(net) {
            return now;
        }
        net.step(now, &mut NoStopwatch);
        now = now + Duration::from_millis(1);
    }
    panic!("not done in 1000 steps");
}

#[test]
fn a_request_waits_for_the_route_the_driver_gives_and_the_recording_replays() {
    let (requester, worker) = (log(), log());
    let mut net = network(&requester, &worker);
    net.record(SEED);
    net.start(T0);
    let mut now = T0;
    for _ in 0..20 {
        net.step(now, &mut NoStopwatch);
        now = now + Duration::from_millis(1);
    }
    assert!(worker.borrow().is_empty(), "no route, so nothing left n1");
    assert_eq!(net.stats().sent, 0);
    assert_eq!(net.node(NodeId(1)).unwrap().awaiting_handler(), 1);
    let interest = std::iter::from_fn(|| net.poll_event()).find_map(|(node, event)| match event {
        Event::Interest { name, subscribed } => Some((node, name.to_string(), subscribed)),
        _ => None,
    });
    assert_eq!(
        interest,
        Some((NodeId(1), "news".to_owned(), true)),
        "the subscription is the driver's to advertise"
    );

    // Discovery learnt that n2 handles `work.do`: the request leaves.
    let info = NodeInfo {
        locality: Locality::Host,
        load: 3,
    };
    net.change_route(
        now,
        NodeId(1),
        &RouteChange::Info {
            node: NodeId(2),
            info,
        },
    );
    net.change_route(
        now,
        NodeId(1),
        &RouteChange::Handler {
            name: "work.do".into(),
            node: NodeId(2),
            handles: true,
        },
    );
    net.change_route(
        now,
        NodeId(2),
        &RouteChange::Subscriber {
            name: "news".into(),
            node: NodeId(1),
            subscribed: true,
        },
    );
    now = step_until(&mut net, now, |_| !requester.borrow().is_empty());
    assert_eq!(worker.borrow().len(), 1);
    assert_eq!(requester.borrow()[0].kind, Kind::Reply);
    assert_eq!(net.node(NodeId(1)).unwrap().awaiting_handler(), 0);
    net.change_route(now, NodeId(1), &RouteChange::Gone { node: NodeId(2) });
    net.shutdown(now);

    let bytes = net.take_recording();
    let recording = parse_recording(&bytes).unwrap();
    assert_eq!(recording.cut_short, 0);
    let (begin, records) = (recording.begin, recording.records);
    assert!(
        begin.discovery,
        "the recording says routes came from the driver"
    );
    let routes = records
        .iter()
        .filter(|r| matches!(r.kind, Some(Input::Route(_))))
        .count();
    assert_eq!(routes, 4);

    // Fresh nodes, the same inputs: the same outputs.
    let (requester2, worker2) = (log(), log());
    let mut replay = network(&requester2, &worker2);
    for record in records.clone() {
        replay.replay(record).unwrap();
    }
    assert_eq!(*worker2.borrow(), *worker.borrow());
    assert_eq!(*requester2.borrow(), *requester.borrow());

    // Without the route records, n1 never sends: the replay says so.
    let mut replay = network(&log(), &log());
    let diverged = records
        .into_iter()
        .filter(|r| !matches!(r.kind, Some(Input::Route(_))))
        .map(|record| replay.replay(record))
        .find_map(Result::err)
        .expect("diverges");
    assert!(diverged.contains("emitted"), "{diverged}");
}

#[test]
fn datagrams_cross_the_links_with_latency_and_loss_and_are_counted() {
    let mut net = MemNetwork::new(
        LinkModel {
            latency: Duration::from_millis(2),
            loss: 0.5,
            ..LinkModel::default()
        },
        SEED,
    );
    net.add_node(node(1));
    net.add_node(node(2));
    net.route_by_discovery();
    net.start(T0);
    for i in 0..1_000u32 {
        net.send_datagram(T0, NodeId(1), NodeId(2), i.to_le_bytes().to_vec());
    }
    net.send_datagram(T0, NodeId(1), NodeId(9), vec![1]);
    assert_eq!(net.poll_timeout(), Some(T0 + Duration::from_millis(2)));
    assert!(net.poll_datagram(T0 + Duration::from_millis(1)).is_none());
    let arrived: Vec<_> =
        std::iter::from_fn(|| net.poll_datagram(T0 + Duration::from_millis(2))).collect();
    let stats = net.stats();
    assert_eq!(stats.datagrams_sent, 1_001);
    assert_eq!(arrived.len() as u64 + stats.datagrams_lost, 1_001);
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
    assert_eq!(stats.sent, 0, "datagrams are not frames");
}

#[test]
fn a_broken_route_record_is_refused_with_what_is_wrong() {
    let mut net = network(&log(), &log());
    let record = |change| rec::Record {
        node: 1,
        at_us: 1,
        kind: Some(Input::Route(rec::Route { about: 2, change })),
    };
    let named = |name: &str| {
        Some(rec::route::Change::Handler(rec::Named {
            name: name.into(),
            on: true,
        }))
    };
    let bad_name = net.replay(record(named("no spaces allowed"))).unwrap_err();
    assert!(bad_name.contains("\"no spaces allowed\""), "{bad_name}");
    let far = Some(rec::route::Change::Info(rec::NodeInfo {
        locality: 7,
        load: 0,
    }));
    let far = net.replay(record(far)).unwrap_err();
    assert!(far.contains("locality 7"), "{far}");
    let none = net.replay(record(None)).unwrap_err();
    assert!(none.contains("no change"), "{none}");
}
