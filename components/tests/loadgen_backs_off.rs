//! The load generator backs off as a well-behaved client: a refusal with a
//! retry-after pauses new work until then, and while a component says it is
//! congested it starts a quarter of its work per tick.

use std::time::Duration;

use exchange_components::loadgen::{Loadgen, LoadgenSettings};
use exchange_idl::exchange::v1::control::Congestion;
use exchange_runtime::{
    BounceReason, CONGESTED, Component, ComponentLimits, Ctx, DECONGESTED, HandlerError,
    HandlerResult, Input, Message, Node, NodeConfig, NodeId, Time,
};

/// Handles the feed's names: refuses everything `Throttled` for 5 ms, or
/// keeps every request unanswered.
struct Feed {
    throttle: bool,
}

impl Component for Feed {
    fn handles(&self) -> &[&str] {
        &["feed.post", "feed.follow", "feed.timeline"]
    }
    fn handle(&mut self, _ctx: &mut Ctx<'_>, _message: &Message) -> HandlerResult {
        if self.throttle {
            let refusal = HandlerError::refuse(BounceReason::Throttled, "slow down");
            return Err(refusal.with_retry_after(Duration::from_millis(5)));
        }
        Ok(())
    }
}

/// Publishes one congestion event at start (`congested`), or none.
struct Congester(Option<bool>);

impl Component for Congester {
    fn start(&mut self, ctx: &mut Ctx<'_>) -> HandlerResult {
        if let Some(congested) = self.0 {
            let name = if congested { CONGESTED } else { DECONGESTED };
            let news = Congestion {
                node: 9,
                component: "feed".into(),
                congested,
                ..Congestion::default()
            };
            ctx.publish(name, &news);
        }
        Ok(())
    }
    fn handle(&mut self, _ctx: &mut Ctx<'_>, _message: &Message) -> HandlerResult {
        Ok(())
    }
}

/// Requests the load generator sent in each of the first `ms` milliseconds.
fn sent_per_tick(throttle: bool, congested: Option<bool>, ms: u64) -> Vec<u64> {
    let mut node = Node::new(NodeId(1), "n1", NodeConfig::default());
    let settings = LoadgenSettings {
        ops_per_tick: 8,
        in_flight_max: 100_000,
        request_timeout: Duration::from_secs(60),
        watch_timelines: false,
        watch_posts: false,
        ..LoadgenSettings::default()
    };
    let limits = ComponentLimits::default;
    node.add_component(
        "loadgen",
        limits(),
        Box::new(move || Box::new(Loadgen::new(settings.clone()))),
    )
    .unwrap();
    node.add_component(
        "feed",
        limits(),
        Box::new(move || Box::new(Feed { throttle })),
    )
    .unwrap();
    node.add_component(
        "congester",
        limits(),
        Box::new(move || Box::new(Congester(congested))),
    )
    .unwrap();
    let start = Time::from_micros(1_000_000);
    node.handle(start, Input::Start);
    let mut sent = Vec::new();
    let mut before = 0;
    for ms in 1..=ms {
        let now = start + Duration::from_millis(ms);
        node.handle(now, Input::Timeout);
        for _ in 0..10 {
            node.handle(now, Input::Run);
        }
        let total = node.components().next().unwrap().2.requests_sent;
        sent.push(total - before);
        before = total;
    }
    sent
}

#[test]
fn a_retry_after_pauses_new_work_until_then() {
    assert_eq!(sent_per_tick(false, None, 6), vec![8; 6]);
    // The first tick's eight are refused with 5 ms to wait: nothing more
    // starts until then.
    assert_eq!(sent_per_tick(true, None, 7), vec![8, 0, 0, 0, 0, 8, 0]);
}

#[test]
fn congestion_anywhere_quarters_the_work_until_it_clears() {
    assert_eq!(sent_per_tick(false, Some(true), 3), vec![2, 2, 2]);
    assert_eq!(sent_per_tick(false, Some(false), 3), vec![8, 8, 8]);
}
