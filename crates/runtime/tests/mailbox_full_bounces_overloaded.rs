//! A full mailbox never loses a message silently: sends and requests bounce
//! `Overloaded` to their sender; publishes are dropped and counted.

mod support;

use exchange_runtime::stats::DropReason;
use exchange_runtime::{BounceReason, ComponentLimits, Kind};
use support::*;

#[test]
fn sends_over_the_limit_bounce_overloaded_and_publishes_are_counted_drops() {
    let sink_log = log();
    let subscriber_log = log();
    let sender_log = log();
    let mut node = node(1);
    node.add_component("sink", limits(2), recorder(&["work.do"], &sink_log, false))
        .unwrap();
    // Subscribes to `work.done` with room for nothing, so the publish meets a full mailbox.
    let subscribe = vec![Action::Subscribe("work.done")];
    node.add_component("subscriber", limits(0), starter(subscribe, &subscriber_log))
        .unwrap();
    let mut actions = vec![Action::Send("work.do"); 5];
    actions.push(Action::Publish("work.done"));
    node.add_component(
        "sender",
        ComponentLimits::default(),
        starter(actions, &sender_log),
    )
    .unwrap();

    node.handle(T0, Input::Start);
    settle(&mut node, T0);

    assert_eq!(sink_log.borrow().len(), 2, "the sink handled what fit");
    let bounces: Vec<_> = sender_log
        .borrow()
        .iter()
        .map(|s| (s.kind, s.bounce))
        .collect();
    assert_eq!(
        bounces,
        vec![(Kind::Bounce, Some(BounceReason::Overloaded)); 3]
    );
    let sink = stats(&node, "sink");
    assert_eq!((sink.accepted, sink.handled), (5, 2));
    assert_eq!(sink.outcomes.bounced_for(BounceReason::Overloaded), 3);
    let subscriber = stats(&node, "subscriber");
    assert_eq!(
        subscriber.outcomes.dropped_for(DropReason::Overloaded),
        1,
        "publish into a full mailbox"
    );
    assert!(subscriber_log.borrow().is_empty());
    assert_eq!(
        stats(&node, "sender").accepted,
        3,
        "the sender accepted its three bounces"
    );
    assert_accounted(&node);
}
