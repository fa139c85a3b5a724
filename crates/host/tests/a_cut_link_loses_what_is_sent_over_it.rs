//! `Netem::cut`: a partition between two nodes. What is sent over a cut
//! link is lost and counted (frames as `cut`, datagrams as lost), both ways;
//! what was in flight before the cut still arrives; other links are untouched;
//! healing restores the link; cuts nest.

#[path = "../../runtime/tests/support/mod.rs"]
mod support;

use std::time::Duration;

use exchange_host::{Cluster, Host};
use exchange_runtime::netem::{LinkParams, Netem};
use exchange_runtime::{ComponentLimits, NodeId, Time};
use support::*;

/// n1's component sends `sends` when it starts; n2 handles `to.two`, n3
/// `to.three`.
fn network(to_n2: &Log, to_n3: &Log, sends: Vec<Action>) -> Cluster {
    let link = LinkParams::uniform(Duration::from_millis(1), Duration::ZERO, 0.0);
    let mut net = Cluster::new(Netem::new(3, link));
    let mut n1 = node(1);
    n1.add_component("sender", ComponentLimits::default(), starter(sends, &log()))
        .unwrap();
    let mut n2 = node(2);
    n2.add_component(
        "two",
        ComponentLimits::default(),
        recorder(&["to.two"], to_n2, false),
    )
    .unwrap();
    let mut n3 = node(3);
    n3.add_component(
        "three",
        ComponentLimits::default(),
        recorder(&["to.three"], to_n3, false),
    )
    .unwrap();
    net.add(Host::new(n1));
    net.add(Host::new(n2));
    net.add(Host::new(n3));
    net
}

fn run_for(net: &mut Cluster, from: Time, steps: u64) -> Time {
    let mut now = from;
    for _ in 0..steps {
        net.step(now);
        now = now + Duration::from_millis(1);
    }
    now
}

#[test]
fn frames_over_a_cut_link_are_lost_and_counted_others_arrive() {
    let (two, three) = (log(), log());
    let sends = vec![Action::Send("to.two"), Action::Send("to.three")];
    let mut net = network(&two, &three, sends);
    net.net_mut().cut(NodeId(2), NodeId(1)); // either order names the link
    net.route_statically(T0);
    net.start(T0);
    run_for(&mut net, T0, 10);
    assert!(two.borrow().is_empty(), "n1-n2 is cut");
    assert_eq!(three.borrow().len(), 1, "n1-n3 is not");
    assert_eq!(net.net().frame_counts().cut, 1);
    assert_eq!(net.net().frame_counts().sent, 2);
    assert_eq!(net.net().frame_counts().delivered, 1);
}

#[test]
fn in_flight_frames_still_arrive_and_healing_restores_the_link() {
    let (two, three) = (log(), log());
    let mut net = network(&two, &three, vec![Action::Send("to.two")]);
    net.route_statically(T0);
    net.route_statically(T0);
    net.start(T0); // sent now, arrives 1 ms later
    net.net_mut().cut(NodeId(1), NodeId(2));
    let now = run_for(&mut net, T0, 10);
    assert_eq!(two.borrow().len(), 1, "it was in flight before the cut");
    assert_eq!(net.net().frame_counts().cut, 0);

    net.net_mut()
        .send_datagram(now, NodeId(2), NodeId(1), vec![1]);
    net.net_mut()
        .send_datagram(now, NodeId(3), NodeId(1), vec![2]);
    let later = now + Duration::from_millis(5);
    let arrived: Vec<_> = std::iter::from_fn(|| net.net_mut().pop_datagram(later)).collect();
    assert_eq!(arrived.len(), 1);
    assert_eq!(arrived[0].from, NodeId(3));
    assert_eq!(net.net().datagram_counts().lost_total(), 1);

    // Cuts nest (two overlapping partitions): the link heals with the second.
    net.net_mut().cut(NodeId(1), NodeId(2));
    net.net_mut().heal(NodeId(2), NodeId(1));
    net.net_mut()
        .send_datagram(later, NodeId(2), NodeId(1), vec![9]);
    assert!(
        net.net_mut()
            .pop_datagram(later + Duration::from_millis(1))
            .is_none()
    );
    net.net_mut().heal(NodeId(2), NodeId(1));
    net.net_mut()
        .send_datagram(later, NodeId(2), NodeId(1), vec![3]);
    let arrived = net.net_mut().pop_datagram(later + Duration::from_millis(1));
    assert_eq!(arrived.map(|d| d.bytes), Some(vec![3]), "healed");
}
