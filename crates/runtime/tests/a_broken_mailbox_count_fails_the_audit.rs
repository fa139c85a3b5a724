//! The node checks what it promises after every input (in debug builds): a
//! defect that loses a message without counting it fails the first ordinary
//! test that meets it, not only a simulator seed. The defect is a deliberate
//! one, switched on by the `sabotage` feature only tests use.

mod support;

use exchange_runtime::{Broken, ComponentLimits, NodeConfig, NodeId, Sabotage};
use support::*;

fn sabotaged(sabotage: Sabotage) -> exchange_runtime::Node {
    let config = NodeConfig {
        sabotage,
        ..NodeConfig::default()
    };
    let mut node = exchange_runtime::Node::new(NodeId(1), "n1", config);
    node.add_component("sink", limits(2), recorder(&["work.do"], &log(), false))
        .unwrap();
    let sends = vec![Action::Send("work.do"); 5];
    node.add_component("sender", ComponentLimits::default(), starter(sends, &log()))
        .unwrap();
    node
}

#[test]
#[cfg_attr(
    debug_assertions,
    should_panic(expected = "sink: accepted 5 but handled 0, bounced 0, dropped 0 and 2 queued")
)]
fn a_message_dropped_without_a_count_fails_the_next_audit() {
    let mut node = sabotaged(Sabotage::SilentMailboxDrop);
    // In a debug build the input that loses the messages panics here.
    node.handle(T0, Input::Start);
    let broken = node
        .audit()
        .expect_err("three messages were lost uncounted");
    assert!(broken.to_string().contains("accepted 5"), "{broken}");
}

#[test]
fn without_the_audit_after_each_input_the_audit_still_finds_it() {
    let mut node = sabotaged(Sabotage::SilentMailboxDropUnaudited);
    node.handle(T0, Input::Start);
    let broken = node
        .audit()
        .expect_err("three messages were lost uncounted");
    assert!(
        matches!(&broken, Broken::Accounting { component, accepted: 5, queued: 2, .. } if component == "sink"),
        "{broken}"
    );
}
