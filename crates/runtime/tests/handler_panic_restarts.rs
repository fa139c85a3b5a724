//! A panicking handler bounces its message `HandlerFailed`, discards what it had
//! buffered, and is replaced by a fresh instance (its env survives); the node keeps
//! serving. Past the restart intensity the component stays stopped.

mod support;

use exchange_idl::kv::v1::Get;
use exchange_runtime::{
    BounceReason, Component, ComponentLimits, Ctx, Event, HandlerResult, Kind, Message, Output,
    Payload, SendOptions,
};
use support::*;

/// Counts messages in a field and in its env; panics on key "boom".
struct Fragile {
    in_field: u32,
    log: Log,
}

impl Component for Fragile {
    fn handles(&self) -> &[&str] {
        &["fragile.do"]
    }
    fn handle(&mut self, ctx: &mut Ctx<'_>, message: &Message) -> HandlerResult {
        self.in_field += 1;
        let in_env = ctx.env().get("count").map_or(0, |v| v[0]) + 1;
        ctx.env().put("count", vec![in_env])?;
        // Buffered, then discarded by the panic: nobody must see it.
        ctx.send("audit.log", &Get::default());
        if message.decode::<Get>()?.key == "boom" {
            panic!("boom requested");
        }
        let name = format!("field={} env={}", self.in_field, in_env);
        self.log.borrow_mut().push(Seen {
            name,
            kind: message.kind(),
            at: ctx.now(),
            ..Seen::default()
        });
        Ok(())
    }
}

fn setup(keys: Vec<&'static str>) -> (exchange_runtime::Node, Log, Log) {
    let fragile_log = log();
    let client_log = log();
    let mut node = node(1);
    let shared = fragile_log.clone();
    let fragile: exchange_runtime::Factory = Box::new(move || {
        Box::new(Fragile {
            in_field: 0,
            log: shared.clone(),
        })
    });
    node.add_component("fragile", ComponentLimits::default(), fragile)
        .unwrap();
    let sends = keys
        .into_iter()
        .map(|key| {
            Action::SendWith(
                "fragile.do",
                Payload::proto(&Get { key: key.into() }),
                SendOptions::default(),
            )
        })
        .collect();
    node.add_component(
        "client",
        ComponentLimits::default(),
        starter(sends, &client_log),
    )
    .unwrap();
    // The audit sink proves the panicking invocation's sends were discarded.
    node.add_component(
        "audit",
        ComponentLimits::default(),
        recorder(&["audit.log"], &log(), false),
    )
    .unwrap();
    (node, fragile_log, client_log)
}

#[test]
fn a_panic_bounces_handler_failed_and_restarts_a_fresh_instance() {
    let (mut node, fragile_log, client_log) = setup(vec!["a", "boom", "b"]);
    node.handle(T0, Input::Start);
    settle(&mut node, T0);

    let handled: Vec<_> = fragile_log
        .borrow()
        .iter()
        .map(|s| s.name.clone())
        .collect();
    assert_eq!(
        handled,
        ["field=1 env=1", "field=1 env=3"],
        "fields reset by the restart, env kept"
    );
    let bounces = client_log.borrow().clone();
    assert_eq!(bounces.len(), 1);
    assert_eq!(
        (bounces[0].kind, bounces[0].bounce),
        (Kind::Bounce, Some(BounceReason::HandlerFailed))
    );
    assert!(
        bounces[0]
            .detail
            .as_deref()
            .unwrap_or_default()
            .contains("boom requested"),
        "detail names the panic: {:?}",
        bounces[0].detail
    );

    assert_eq!(stats(&node, "fragile").restarts, 1);
    assert_eq!(
        stats(&node, "audit").accepted,
        2,
        "only the two successful invocations' sends went out"
    );
    let mut restarted = 0;
    for output in outputs(&mut node) {
        if let Output::Event(Event::Restarted { reason, .. }) = output {
            assert!(reason.contains("boom requested"));
            restarted += 1;
        }
    }
    assert_eq!(restarted, 1);
    assert_accounted(&node);
}

#[test]
fn past_the_restart_intensity_the_component_stays_stopped() {
    // The default intensity allows 10 restarts per 10 s; the 11th failure stops it.
    let mut keys = vec!["boom"; 11];
    keys.push("after");
    let (mut node, fragile_log, client_log) = setup(keys);
    node.handle(T0, Input::Start);
    settle(&mut node, T0);

    assert!(fragile_log.borrow().is_empty());
    let bounces = client_log.borrow().clone();
    assert_eq!(bounces.len(), 12, "every message still ends as a bounce");
    assert!(
        bounces
            .iter()
            .all(|s| s.bounce == Some(BounceReason::HandlerFailed))
    );
    assert!(
        bounces[11]
            .detail
            .as_deref()
            .unwrap_or_default()
            .contains("stopped after too many restarts"),
        "{:?}",
        bounces[11].detail
    );
    let failed = outputs(&mut node)
        .into_iter()
        .filter(|o| matches!(o, Output::Event(Event::Failed { .. })))
        .count();
    assert_eq!(failed, 1);
    assert_accounted(&node);
}
