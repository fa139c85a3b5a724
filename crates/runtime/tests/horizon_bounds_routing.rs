//! A message never travels past its horizon: with its only handler on
//! another network, a send with the default horizon (`network`) bounces
//! `HorizonExceeded` naming the horizon and the nearest handler; with
//! `global` it goes; a publish reaches only the subscribers within it.

mod support;

use exchange_runtime::{
    BounceReason, ComponentLimits, Horizon, Kind, Locality, NodeId, NodeInfo, Output, Payload,
    SendOptions,
};
use support::*;

fn with(horizon: Option<Horizon>) -> Action {
    let options = SendOptions {
        horizon,
        ..SendOptions::default()
    };
    Action::SendWith("far.away", Payload::raw(&b"x"[..]), options)
}

fn far_node(node: &mut exchange_runtime::Node, locality: Locality) {
    node.handle(
        T0,
        Input::Route(RouteChange::Handler {
            name: "far.away".into(),
            node: NodeId(2),
            handles: true,
        }),
    );
    node.handle(
        T0,
        Input::Route(RouteChange::Info {
            node: NodeId(2),
            info: NodeInfo { locality, load: 0 },
        }),
    );
}

fn transmits(node: &mut exchange_runtime::Node) -> usize {
    outputs(node)
        .iter()
        .filter(|o| matches!(o, Output::Transmit(_)))
        .count()
}

#[test]
fn a_send_never_goes_past_its_horizon() {
    let seen = log();
    let mut node = node(1);
    let actions = vec![
        with(None),
        with(Some(Horizon::Host)),
        with(Some(Horizon::Global)),
    ];
    node.add_component(
        "sender",
        ComponentLimits::default(),
        starter(actions, &seen),
    )
    .unwrap();
    far_node(&mut node, Locality::Remote);
    node.handle(T0, Input::Start);
    settle(&mut node, T0);
    assert_eq!(transmits(&mut node), 1, "only the global one leaves");
    let bounces: Vec<_> = seen
        .borrow()
        .iter()
        .map(|s| (s.kind, s.bounce, s.detail.clone().unwrap_or_default()))
        .collect();
    let beyond = |horizon: &str| {
        (
            Kind::Bounce,
            Some(BounceReason::HorizonExceeded),
            format!("every handler is beyond the horizon {horizon}; the nearest is n2"),
        )
    };
    assert_eq!(bounces, vec![beyond("network"), beyond("host")]);
    assert_accounted(&node);
}

#[test]
fn a_publish_reaches_only_the_subscribers_within_its_horizon() {
    let mut node = node(1);
    let actions = vec![Action::Publish("far.away")];
    node.add_component(
        "publisher",
        ComponentLimits::default(),
        starter(actions, &log()),
    )
    .unwrap();
    for (n, locality) in [(2, Locality::Remote), (3, Locality::Network)] {
        node.handle(
            T0,
            Input::Route(RouteChange::Subscriber {
                name: "far.away".into(),
                node: NodeId(n),
                subscribed: true,
            }),
        );
        node.handle(
            T0,
            Input::Route(RouteChange::Info {
                node: NodeId(n),
                info: NodeInfo { locality, load: 0 },
            }),
        );
    }
    node.handle(T0, Input::Start);
    settle(&mut node, T0);
    let to: Vec<u64> = outputs(&mut node)
        .iter()
        .filter_map(|o| match o {
            Output::Transmit(t) => Some(t.to.0),
            _ => None,
        })
        .collect();
    assert_eq!(to, vec![3], "n2 is on another network");
}
