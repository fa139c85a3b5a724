//! A publish reaches every subscriber of its name, on this node and on others:
//! subscribing raises an `Interest` event that the driver (here the in-memory
//! network) tells the other nodes about.

#[path = "../../runtime/tests/support/mod.rs"]
mod support;

use std::time::Duration;

use exchange_host::{Cluster, Host};
use exchange_runtime::netem::{LinkParams, Netem};
use exchange_runtime::{
    Component, ComponentLimits, Ctx, HandlerResult, Kind, Message, Node, NodeConfig, NodeId,
};
use support::*;

/// Publishes `news.flash` once its timer fires (after everyone subscribed).
struct Publisher;

impl Component for Publisher {
    fn start(&mut self, ctx: &mut Ctx<'_>) -> HandlerResult {
        ctx.subscribe("news.flash");
        ctx.set_timer(Duration::from_millis(10), 0);
        Ok(())
    }
    fn on_timer(&mut self, ctx: &mut Ctx<'_>, _token: u64) -> HandlerResult {
        ctx.publish(
            "news.flash",
            &exchange_idl::kv::v1::Get {
                key: "extra".into(),
            },
        );
        Ok(())
    }
    fn handle(&mut self, _ctx: &mut Ctx<'_>, _message: &Message) -> HandlerResult {
        Ok(())
    }
}

#[test]
fn local_and_remote_subscribers_each_get_one_copy() {
    let logs = [log(), log(), log()];
    let link = LinkParams::uniform(Duration::from_millis(1), Duration::ZERO, 0.0);
    let mut net = Cluster::new(Netem::new(9, link));
    let config = NodeConfig {
        seed: 9,
        ..NodeConfig::default()
    };
    let mut n1 = Node::new(NodeId(1), "n1", config.clone());
    n1.add_component(
        "publisher",
        ComponentLimits::default(),
        Box::new(|| Box::new(Publisher)),
    )
    .unwrap();
    let subscribe = || vec![Action::Subscribe("news.flash")];
    n1.add_component(
        "local",
        ComponentLimits::default(),
        starter(subscribe(), &logs[0]),
    )
    .unwrap();
    net.add(Host::new(n1));
    for (i, log) in logs[1..].iter().enumerate() {
        let mut node = Node::new(NodeId(i as u64 + 2), "remote", config.clone());
        node.add_component(
            "remote",
            ComponentLimits::default(),
            starter(subscribe(), log),
        )
        .unwrap();
        net.add(Host::new(node));
    }
    let mut now = T0;
    net.route_statically(now);
    net.start(now);
    for _ in 0..1_000 {
        net.step(now);
        match net.poll_timeout() {
            Some(next) => now = next.max(now),
            None => break,
        }
    }
    for (i, log) in logs.iter().enumerate() {
        let seen = log.borrow();
        assert_eq!(seen.len(), 1, "subscriber {i} got {seen:?}");
        assert_eq!(
            (seen[0].name.as_str(), seen[0].kind),
            ("news.flash", Kind::Publish)
        );
    }
    let publisher = net
        .nodes()
        .next()
        .unwrap()
        .components()
        .next()
        .unwrap()
        .2
        .clone();
    assert_eq!(
        publisher.accepted, 1,
        "the publisher subscribed too and got its own copy"
    );
    assert_eq!(
        net.net().frame_counts().sent,
        2,
        "one frame per remote subscriber node"
    );
}
