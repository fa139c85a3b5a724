//! Capacity changed live (`Input::Capacity`): from the next message, with
//! nothing queued lost; refusals carry a retry-after; congestion is published.

mod support;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use exchange_idl::exchange::v1::control;
use exchange_idl::kv::v1::Get;
use exchange_runtime::{
    BounceReason, CONGESTED, CapacityChange, CapacityError, Component, ComponentId,
    ComponentLimits, Ctx, DECONGESTED, Event, HandlerResult, Kind, Limit, Message, NodeId,
    RouteChange, Source,
};
use support::*;

/// Sends `per_tick` messages to `work.do` every millisecond once started,
/// and records what comes back.
struct Pump {
    per_tick: usize,
    log: Log,
}

impl Component for Pump {
    fn start(&mut self, ctx: &mut Ctx<'_>) -> HandlerResult {
        ctx.set_timer(Duration::from_millis(1), 0);
        Ok(())
    }
    fn on_timer(&mut self, ctx: &mut Ctx<'_>, _token: u64) -> HandlerResult {
        for _ in 0..self.per_tick {
            ctx.send("work.do", &Get { key: "k".into() });
        }
        ctx.set_timer(Duration::from_millis(1), 0);
        Ok(())
    }
    fn handle(&mut self, ctx: &mut Ctx<'_>, message: &Message) -> HandlerResult {
        self.log.borrow_mut().push(Seen {
            name: message.name().to_owned(),
            kind: message.kind(),
            bounce: message.bounce_reason(),
            detail: message.retry_after().map(|d| format!("{d:?}")),
            at: ctx.now(),
            ..Seen::default()
        });
        Ok(())
    }
}

fn pump(per_tick: usize, log: &Log) -> exchange_runtime::Factory {
    let log = log.clone();
    Box::new(move || {
        Box::new(Pump {
            per_tick,
            log: log.clone(),
        })
    })
}

fn change(component: u32) -> CapacityChange {
    CapacityChange {
        component: Some(ComponentId(component)),
        by: "test".into(),
        ..CapacityChange::default()
    }
}

/// One item per turn, so a test can stop between a send and its handling.
fn one_per_turn(node: &mut exchange_runtime::Node) {
    let budget = CapacityChange::default().set(Limit::DispatchPerTurnMax, 1);
    node.handle(T0, Input::Capacity(budget));
}

/// The congestion events the node hands out until its timeout: (congested,
/// queue length, bound).
fn congestion(node: &mut exchange_runtime::Node) -> Vec<(bool, usize, usize)> {
    outputs(node)
        .into_iter()
        .filter_map(|o| match o {
            Output::Event(Event::Congestion {
                congested,
                queue_len,
                limit,
                ..
            }) => Some((congested, queue_len, limit)),
            _ => None,
        })
        .collect()
}

fn at_ms(ms: u64) -> exchange_runtime::Time {
    T0 + Duration::from_millis(ms)
}

#[test]
fn a_lowered_mailbox_bound_keeps_what_is_queued_and_refuses_new_work() {
    let sink_log = log();
    let pump_log = log();
    let mut node = node(1);
    let sink = node
        .add_component("sink", limits(10), recorder(&["work.do"], &sink_log, false))
        .unwrap();
    node.add_component("pump", ComponentLimits::default(), pump(8, &pump_log))
        .unwrap();
    node.handle(T0, Input::Start);
    one_per_turn(&mut node);
    // The pump's timer fires: eight sends queue for the sink, none handled yet.
    node.handle(at_ms(1), Input::Timeout);
    node.handle(at_ms(1), Input::Run);
    assert_eq!(node.queue_len(sink), 8);

    node.handle(
        at_ms(1),
        Input::Capacity(change(sink.0).set(Limit::MailboxLenMax, 3)),
    );
    let events = outputs(&mut node);
    assert!(events.iter().any(|o| matches!(
        o,
        Output::Event(Event::CapacityChanged { limit: Limit::MailboxLenMax, old, new, .. })
            if old.value == 10 && new.value == 3 && new.source == Source::Live
    )));

    assert_eq!(node.queue_len(sink), 8, "nothing queued is dropped");

    // Sends from another node find the mailbox over its new bound: each
    // bounces `Overloaded` with a retry-after, while the eight queued stay.
    for id in 0..5 {
        node.handle(at_ms(2), remote_send(id));
    }
    let bounces = bounced_to_remote(&mut node);
    assert_eq!(bounces.len(), 5);
    assert!(
        bounces
            .iter()
            .all(|(reason, retry)| *reason == BounceReason::Overloaded && retry.is_some())
    );
    assert_eq!(node.queue_len(sink), 8);
    // Handled down to two, it admits again, up to the bound.
    for _ in 0..6 {
        node.handle(at_ms(2), Input::Run);
    }
    assert_eq!(node.queue_len(sink), 2);
    node.handle(at_ms(2), remote_send(5));
    node.handle(at_ms(2), remote_send(6));
    assert_eq!(node.queue_len(sink), 3);
    assert_eq!(bounced_to_remote(&mut node).len(), 1);
    settle(&mut node, at_ms(2));
    // The eight queued before the change, the one remote send admitted, and
    // three of the pump's next tick (due at 2 ms): all handled.
    assert_eq!(sink_log.borrow().len(), 12);
    assert_accounted(&node);
}

/// A send of `work.do` from component 0 of node 2, as a frame.
fn remote_send(id: u64) -> Input<'static> {
    use exchange_idl::exchange::v1 as pb;
    let envelope = pb::Envelope {
        id,
        name: "work.do".into(),
        kind: pb::Kind::Send as i32,
        source: Some(pb::Address {
            node: 2,
            component: 0,
        }),
        ..pb::Envelope::default()
    };
    let header: &'static [u8] = Vec::leak(prost::Message::encode_to_vec(&envelope));
    Input::Frame {
        from: NodeId(2),
        header,
        payload: bytes::Bytes::new(),
    }
}

/// The bounces the node sent back to node 2: reason and retry-after.
fn bounced_to_remote(node: &mut exchange_runtime::Node) -> Vec<(BounceReason, Option<u64>)> {
    outputs(node)
        .into_iter()
        .filter_map(|output| match output {
            Output::Transmit(transmit) => {
                let header =
                    exchange_runtime::codec::decode_header(&transmit.header, node.router()).ok()?;
                let bounce = header.bounce?;
                Some((
                    bounce.reason,
                    bounce.retry_after.map(|d| d.as_micros() as u64),
                ))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_rate_admits_its_burst_then_throttles_with_the_exact_wait() {
    let sink_log = log();
    let pump_log = log();
    let mut node = node(1);
    let sink_limits = ComponentLimits {
        rate_per_sec: 1000,
        burst: 3,
        ..ComponentLimits::default()
    };
    node.add_component(
        "sink",
        sink_limits,
        recorder(&["work.do"], &sink_log, false),
    )
    .unwrap();
    node.add_component("pump", ComponentLimits::default(), pump(5, &pump_log))
        .unwrap();
    node.handle(T0, Input::Start);
    node.handle(at_ms(1), Input::Timeout);
    settle(&mut node, at_ms(1));
    assert_eq!(sink_log.borrow().len(), 3, "the burst");
    let bounces: Vec<_> = pump_log
        .borrow()
        .iter()
        .map(|s| (s.bounce, s.detail.clone()))
        .collect();
    assert_eq!(
        bounces,
        vec![(Some(BounceReason::Throttled), Some("1ms".to_owned())); 2]
    );
    // One token a millisecond: the next tick gets one through.
    node.handle(at_ms(2), Input::Timeout);
    settle(&mut node, at_ms(2));
    assert_eq!(sink_log.borrow().len(), 4);
    assert_eq!(node.tokens(ComponentId(0)), Some(0));

    // Raised live: the bucket keeps what was spent, and refills faster.
    node.handle(
        at_ms(2),
        Input::Capacity(
            change(0)
                .set(Limit::RatePerSec, 100_000)
                .set(Limit::Burst, 5),
        ),
    );
    node.handle(at_ms(3), Input::Timeout);
    settle(&mut node, at_ms(3));
    assert_eq!(sink_log.borrow().len(), 9, "all five of the next tick");
    // Off: unlimited again.
    node.handle(
        at_ms(3),
        Input::Capacity(change(0).set(Limit::RatePerSec, 0)),
    );
    assert_eq!(node.tokens(ComponentId(0)), None);
    assert_accounted(&node);
}

#[test]
fn a_change_out_of_range_is_refused_whole_with_the_range() {
    let mut node = node(1);
    node.add_component("sink", limits(10), recorder(&["work.do"], &log(), false))
        .unwrap();
    node.handle(T0, Input::Start);
    let before = *node.capacity(ComponentId(0)).unwrap();
    let bad = change(0)
        .set(Limit::MailboxLenMax, 5)
        .set(Limit::RatePerSec, 20_000_000);
    let error = node.check_capacity(&bad).unwrap_err();
    assert_eq!(
        error.to_string(),
        "rate 20000000 is out of range (0 to 10000000)"
    );
    node.handle(T0, Input::Capacity(bad));
    assert!(matches!(
        &outputs(&mut node)[..],
        [Output::Event(Event::CapacityRefused {
            error: CapacityError::OutOfRange {
                limit: Limit::RatePerSec,
                ..
            },
            ..
        })]
    ));
    assert_eq!(*node.capacity(ComponentId(0)).unwrap(), before);
    let wide = change(0).set(Limit::DispatchPerTurnMax, 4);
    assert_eq!(
        node.check_capacity(&wide),
        Err(CapacityError::NodeWide(Limit::DispatchPerTurnMax))
    );
    assert_eq!(
        node.check_capacity(&change(9).set(Limit::Burst, 1)),
        Err(CapacityError::UnknownComponent(ComponentId(9)))
    );
    assert_eq!(node.check_capacity(&change(0)), Err(CapacityError::Empty));
}

#[test]
fn congestion_is_published_at_the_high_mark_and_cleared_at_the_low() {
    struct Watcher(Rc<RefCell<Vec<(String, control::Congestion)>>>);
    impl Component for Watcher {
        fn start(&mut self, ctx: &mut Ctx<'_>) -> HandlerResult {
            ctx.subscribe(CONGESTED);
            ctx.subscribe(DECONGESTED);
            Ok(())
        }
        fn handle(&mut self, _ctx: &mut Ctx<'_>, message: &Message) -> HandlerResult {
            let body = message.decode::<control::Congestion>()?;
            self.0.borrow_mut().push((message.name().to_owned(), body));
            Ok(())
        }
    }
    let seen = Rc::new(RefCell::new(Vec::new()));
    let mut node = node(1);
    let sink = node
        .add_component("sink", limits(10), recorder(&["work.do"], &log(), false))
        .unwrap();
    node.add_component("pump", ComponentLimits::default(), pump(9, &log()))
        .unwrap();
    let watched = seen.clone();
    node.add_component(
        "watcher",
        ComponentLimits::default(),
        Box::new(move || Box::new(Watcher(watched.clone()))),
    )
    .unwrap();
    node.handle(T0, Input::Start);
    settle(&mut node, T0);
    one_per_turn(&mut node);
    let _ = outputs(&mut node);
    node.handle(at_ms(1), Input::Timeout);
    node.handle(at_ms(1), Input::Run);
    assert_eq!(node.queue_len(sink), 9);
    assert_eq!(congestion(&mut node), vec![(true, 8, 10)], "once, at 80%");
    settle(&mut node, at_ms(1));
    let seen = seen.borrow();
    let names: Vec<_> = seen.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, vec![CONGESTED, DECONGESTED]);
    let (_, first) = &seen[0];
    assert_eq!(
        (
            first.component.as_str(),
            first.queue_len,
            first.limit,
            first.node
        ),
        ("sink", 8, 10, 1)
    );
    assert_eq!(seen[1].1.queue_len, 5, "cleared at 50%");
    assert_accounted(&node);
}

#[test]
fn requests_past_in_flight_max_bounce_at_once() {
    let requester_log = log();
    let mut node = node(1);
    // Nobody handles `slow.get` on this node; one remote node does, so the
    // requests stay in flight.
    let requester = ComponentLimits {
        in_flight_max: 2,
        ..ComponentLimits::default()
    };
    let actions = vec![Action::Request("slow.get", Duration::from_secs(5)); 4];
    node.add_component("requester", requester, starter(actions, &requester_log))
        .unwrap();
    node.handle(
        T0,
        Input::Route(RouteChange::Handler {
            name: "slow.get".into(),
            node: NodeId(2),
            handles: true,
        }),
    );
    node.handle(T0, Input::Start);
    settle(&mut node, T0);
    let seen: Vec<_> = requester_log
        .borrow()
        .iter()
        .map(|s| (s.kind, s.bounce))
        .collect();
    assert_eq!(
        seen,
        vec![(Kind::Bounce, Some(BounceReason::Overloaded)); 2]
    );
    assert_eq!(node.pending_requests(), 2);
    assert_eq!(stats(&node, "requester").in_flight(), 2);
}

#[test]
fn a_network_limit_is_shared_among_the_instances_known() {
    let mut node = node(1);
    let sink = node
        .add_component("sink", limits(10), recorder(&["work.do"], &log(), false))
        .unwrap();
    node.handle(T0, Input::Start);
    let mut network = change(sink.0).set(Limit::RatePerSec, 900);
    network.network = true;
    node.handle(T0, Input::Capacity(network));
    let rate = |node: &exchange_runtime::Node| node.capacity(sink).unwrap().get(Limit::RatePerSec);
    assert_eq!(rate(&node).value, 900);
    let handler = |n: u64, handles: bool| {
        Input::Route(RouteChange::Handler {
            name: "work.do".into(),
            node: NodeId(n),
            handles,
        })
    };
    node.handle(T0, handler(2, true));
    node.handle(T0, handler(3, true));
    assert_eq!(
        rate(&node),
        exchange_runtime::Setting {
            value: 300,
            source: Source::Network {
                total: 900,
                instances: 3
            }
        }
    );
    node.handle(T0, Input::Route(RouteChange::Gone { node: NodeId(2) }));
    assert_eq!(rate(&node).value, 450);
    node.handle(T0, handler(3, false));
    assert_eq!(rate(&node).value, 900);
    // A live change for this node alone replaces the share.
    node.handle(
        T0,
        Input::Capacity(change(sink.0).set(Limit::RatePerSec, 50)),
    );
    assert_eq!(rate(&node).source, Source::Live);
}

#[test]
fn a_bound_moved_past_the_queue_starts_or_ends_congestion_at_once() {
    let mut node = node(1);
    let sink = node
        .add_component("sink", limits(100), recorder(&["work.do"], &log(), false))
        .unwrap();
    node.add_component("pump", ComponentLimits::default(), pump(9, &log()))
        .unwrap();
    node.handle(T0, Input::Start);
    one_per_turn(&mut node);
    node.handle(at_ms(1), Input::Timeout);
    node.handle(at_ms(1), Input::Run);
    assert_eq!(node.queue_len(sink), 9);
    assert_eq!(congestion(&mut node), vec![]);
    node.handle(
        at_ms(1),
        Input::Capacity(change(sink.0).set(Limit::MailboxLenMax, 10)),
    );
    assert_eq!(congestion(&mut node), vec![(true, 9, 10)]);
    node.handle(
        at_ms(1),
        Input::Capacity(change(sink.0).set(Limit::MailboxLenMax, 100)),
    );
    assert_eq!(congestion(&mut node), vec![(false, 9, 100)]);
}

#[test]
fn congestion_notices_never_congest_their_subscriber() {
    /// Subscribes to the notices, with a one-message mailbox.
    struct Listener;
    impl Component for Listener {
        fn start(&mut self, ctx: &mut Ctx<'_>) -> HandlerResult {
            ctx.subscribe(CONGESTED);
            ctx.subscribe(DECONGESTED);
            Ok(())
        }
        fn handle(&mut self, _ctx: &mut Ctx<'_>, _message: &Message) -> HandlerResult {
            Ok(())
        }
    }
    let mut node = node(1);
    node.add_component("sink", limits(1), recorder(&["work.do"], &log(), false))
        .unwrap();
    node.add_component("listener", limits(1), Box::new(|| Box::new(Listener)))
        .unwrap();
    node.add_component("pump", ComponentLimits::default(), pump(3, &log()))
        .unwrap();
    node.handle(T0, Input::Start);
    node.handle(at_ms(1), Input::Timeout);
    // The sink congests and recovers once; the listener's notices, each
    // filling its mailbox of one, start nothing more: the node settles.
    settle(&mut node, at_ms(1));
    let congested = congestion(&mut node).iter().filter(|(c, _, _)| *c).count();
    assert_eq!(congested, 1);
    assert_accounted(&node);
}
