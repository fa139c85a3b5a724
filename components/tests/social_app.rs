//! The example app's behaviour through real nodes on the in-memory network:
//! a follower's timeline gets the post, the store streams the change to its
//! subscriber, and reading the timeline returns it.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use exchange_components::feed::{Feed, FeedSettings};
use exchange_components::store::{Store, StoreSettings};
use exchange_host::{Cluster, Host};
use exchange_idl::feed::v1::{Follow, GetTimeline, Post, Posted, Timeline};
use exchange_idl::kv::v1::{Changed, Subscribe};
use exchange_runtime::netem::{LinkParams, Netem};
use exchange_runtime::{
    Component, ComponentLimits, Ctx, HandlerResult, Kind, Message, Node, NodeConfig, NodeId, Time,
};

const SECOND: Duration = Duration::from_secs(1);

#[derive(Default, Debug)]
struct Seen {
    posted: Vec<u64>,
    changes: Vec<(String, Vec<u64>)>,
    timeline: Option<Vec<u64>>,
    bounces: usize,
}

/// Subscribes to timelines, then: u2 follows u1, u1 posts, and once the post is
/// acknowledged, reads u2's timeline.
struct Script {
    seen: Rc<RefCell<Seen>>,
}

impl Component for Script {
    fn start(&mut self, ctx: &mut Ctx<'_>) -> HandlerResult {
        ctx.request(
            "kv.subscribe",
            &Subscribe {
                prefix: "timeline/".into(),
            },
            SECOND,
        );
        ctx.request(
            "feed.follow",
            &Follow {
                follower: "u2".into(),
                followee: "u1".into(),
            },
            SECOND,
        );
        ctx.request(
            "feed.post",
            &Post {
                user: "u1".into(),
                text: "first!".into(),
            },
            SECOND,
        );
        Ok(())
    }

    fn handle(&mut self, ctx: &mut Ctx<'_>, message: &Message) -> HandlerResult {
        let mut seen = self.seen.borrow_mut();
        match (message.kind(), message.name()) {
            (Kind::Bounce, _) => seen.bounces += 1,
            (Kind::Reply, "feed.post") => {
                seen.posted.push(message.decode::<Posted>()?.post_id);
                ctx.request("feed.timeline", &GetTimeline { user: "u2".into() }, SECOND);
            }
            (Kind::Reply, "feed.timeline") => {
                seen.timeline = Some(message.decode::<Timeline>()?.post_ids)
            }
            (Kind::Send, "kv.changed") => {
                let changed: Changed = message.decode()?;
                let timeline = <Timeline as prost::Message>::decode(changed.value.as_slice())?;
                seen.changes.push((changed.key, timeline.post_ids));
            }
            _ => {}
        }
        Ok(())
    }
}

#[test]
fn a_post_reaches_the_followers_timeline_and_streams_to_subscribers() {
    let seen = Rc::new(RefCell::new(Seen::default()));
    let link = LinkParams::uniform(Duration::from_millis(1), Duration::ZERO, 0.0);
    let mut net = Cluster::new(Netem::new(5, link));
    let config = NodeConfig {
        seed: 5,
        ..NodeConfig::default()
    };
    let shared = seen.clone();
    let factories: Vec<(&str, exchange_runtime::Factory)> = vec![
        (
            "store",
            Box::new(|| Box::new(Store::new(StoreSettings::default()))),
        ),
        (
            "feed",
            Box::new(|| Box::new(Feed::new(FeedSettings::default()))),
        ),
        (
            "script",
            Box::new(move || {
                Box::new(Script {
                    seen: shared.clone(),
                })
            }),
        ),
    ];
    for (i, (name, factory)) in factories.into_iter().enumerate() {
        let mut node = Node::new(NodeId(i as u64 + 1), name, config.clone());
        node.add_component(name, ComponentLimits::default(), factory)
            .unwrap();
        net.add(Host::new(node));
    }
    let mut now = Time::from_micros(1_000_000);
    net.route_statically(now);
    net.start(now);
    for _ in 0..1_000 {
        net.step(now);
        match net.poll_timeout() {
            Some(next) if !net.is_idle() => now = next.max(now),
            _ => break,
        }
    }
    assert!(net.is_idle());

    let seen = seen.borrow();
    assert_eq!(seen.bounces, 0, "{seen:?}");
    assert_eq!(seen.posted, [1]);
    assert_eq!(
        seen.timeline.as_deref(),
        Some(&[1][..]),
        "u2 follows u1, so u2's timeline has the post"
    );
    let mut changes = seen.changes.clone();
    changes.sort();
    assert_eq!(
        changes,
        [
            ("timeline/u1".to_owned(), vec![1]),
            ("timeline/u2".to_owned(), vec![1])
        ]
    );
}
