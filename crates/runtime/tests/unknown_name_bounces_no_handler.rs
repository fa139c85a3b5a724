//! A name nobody handles comes back to its sender as a `NoHandler` bounce, for
//! sends and for requests (with the request's correlation id).

mod support;

use std::time::Duration;

use exchange_runtime::{BounceReason, ComponentLimits, Kind};
use support::*;

#[test]
fn send_and_request_to_an_unknown_name_bounce_no_handler() {
    let sender_log = log();
    let mut node = node(1);
    let shared = sender_log.clone();
    node.add_component(
        "sender",
        ComponentLimits::default(),
        Box::new(move || {
            Box::new(Starter {
                actions: vec![
                    Action::Send("nobody.home"),
                    Action::Request("nobody.home", Duration::from_secs(1)),
                ],
                log: shared.clone(),
            })
        }),
    )
    .unwrap();
    node.start(T0);
    settle(&mut node, T0);

    let seen = sender_log.borrow().clone();
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter()
            .all(|s| s.kind == Kind::Bounce && s.bounce == Some(BounceReason::NoHandler))
    );
    assert!(seen.iter().all(|s| s.name == "nobody.home"));
    assert_eq!(seen[0].correlation, None, "a send has no correlation");
    assert!(
        seen[1].correlation.is_some(),
        "the request's bounce carries its correlation"
    );
    assert_eq!(
        node.stats().outcomes.bounced_for(BounceReason::NoHandler),
        2
    );
    assert!(node.is_idle(), "the bounced request is no longer pending");
    assert_accounted(&node);
}
