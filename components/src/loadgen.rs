//! `loadgen`: drives the feed with random users. Every tick it posts, follows and
//! reads timelines, keeping at most `in_flight_max` requests outstanding, and it
//! watches every timeline change (a store subscription) and every new post (a
//! `feed.posted` subscription).
//!
//! It backs off as a well-behaved client does: a refusal with a retry-after
//! (`Overloaded`, `Throttled`) pauses new work until then, and while any
//! component of the network says it is congested (`exchange.congested`, until
//! its `exchange.decongested`) it starts a quarter of its usual work per tick.

use std::collections::BTreeSet;
use std::time::Duration;

use exchange_idl::exchange::v1::control::Congestion;
use exchange_idl::feed::v1::{Follow, GetTimeline, Post};
use exchange_idl::kv::v1::Subscribe;
use exchange_runtime::{
    CONGESTED, Component, Ctx, DECONGESTED, HandlerResult, Kind, Message, Time,
};
use rand::Rng;
use serde::Deserialize;

const TICK: u64 = 1;

/// `[component.settings]` of a load generator.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoadgenSettings {
    /// Distinct users (`u0`, `u1`, ...).
    pub users: u32,
    /// Time between bursts.
    #[serde(with = "humantime_serde")]
    pub tick: Duration,
    /// Operations started per tick.
    pub ops_per_tick: u32,
    /// Requests outstanding at most; a tick starts no more past it.
    pub in_flight_max: u32,
    /// Relative weights of the operations.
    pub post_weight: u32,
    /// See `post_weight`.
    pub follow_weight: u32,
    /// See `post_weight`.
    pub timeline_weight: u32,
    /// How long to wait for the feed.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Subscribe to every timeline change in the store (`kv.changed`).
    pub watch_timelines: bool,
    /// Subscribe to every new post (`feed.posted`).
    pub watch_posts: bool,
    /// Back off on retry-after hints and congestion events.
    pub back_off: bool,
}

impl Default for LoadgenSettings {
    fn default() -> Self {
        LoadgenSettings {
            users: 1_000,
            tick: Duration::from_millis(1),
            ops_per_tick: 20,
            in_flight_max: 256,
            post_weight: 5,
            follow_weight: 2,
            timeline_weight: 3,
            request_timeout: Duration::from_secs(2),
            watch_timelines: true,
            watch_posts: true,
            back_off: true,
        }
    }
}

/// The load generator component.
pub struct Loadgen {
    settings: LoadgenSettings,
    in_flight: u32,
    /// No new work before this (a retry-after).
    paused_until: Time,
    /// Components that said they are congested: (node, component).
    congested: BTreeSet<(u64, String)>,
}

impl Loadgen {
    /// A load generator that starts on its first tick.
    pub fn new(settings: LoadgenSettings) -> Loadgen {
        Loadgen {
            settings,
            in_flight: 0,
            paused_until: Time::ZERO,
            congested: BTreeSet::new(),
        }
    }

    fn user(&self, ctx: &mut Ctx<'_>) -> String {
        format!("u{}", ctx.rng().random_range(0..self.settings.users.max(1)))
    }

    fn start_one(&mut self, ctx: &mut Ctx<'_>) {
        let s = &self.settings;
        let total = (s.post_weight + s.follow_weight + s.timeline_weight).max(1);
        let pick = ctx.rng().random_range(0..total);
        let timeout = s.request_timeout;
        let user = self.user(ctx);
        if pick < s.post_weight {
            let text = format!(
                "hello #{} from {user}",
                ctx.rng().random_range(0..1_000_000)
            );
            ctx.request("feed.post", &Post { user, text }, timeout);
        } else if pick < s.post_weight + s.follow_weight {
            let followee = self.user(ctx);
            ctx.request(
                "feed.follow",
                &Follow {
                    follower: user,
                    followee,
                },
                timeout,
            );
        } else {
            ctx.request("feed.timeline", &GetTimeline { user }, timeout);
        }
        self.in_flight += 1;
    }
}

impl Component for Loadgen {
    fn start(&mut self, ctx: &mut Ctx<'_>) -> HandlerResult {
        if self.settings.watch_timelines {
            let subscribe = Subscribe {
                prefix: "timeline/".into(),
            };
            ctx.request("kv.subscribe", &subscribe, self.settings.request_timeout);
            self.in_flight += 1;
        }
        if self.settings.watch_posts {
            ctx.subscribe("feed.posted");
        }
        if self.settings.ops_per_tick > 0 {
            ctx.set_timer(self.settings.tick, TICK);
            if self.settings.back_off {
                ctx.subscribe(CONGESTED);
                ctx.subscribe(DECONGESTED);
            }
        }
        Ok(())
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_>, _token: u64) -> HandlerResult {
        let ops = if self.congested.is_empty() {
            self.settings.ops_per_tick
        } else {
            (self.settings.ops_per_tick / 4).max(1)
        };
        if ctx.now() >= self.paused_until {
            for _ in 0..ops {
                if self.in_flight >= self.settings.in_flight_max {
                    break;
                }
                self.start_one(ctx);
            }
        }
        ctx.set_timer(self.settings.tick, TICK);
        Ok(())
    }

    fn handle(&mut self, ctx: &mut Ctx<'_>, message: &Message) -> HandlerResult {
        // Replies and bounces end a request of ours; `kv.changed` is a timeline
        // change streamed by the store, which the counters already show.
        if matches!(message.kind(), Kind::Reply | Kind::Bounce) && message.correlation().is_some() {
            self.in_flight = self.in_flight.saturating_sub(1);
        }
        if !self.settings.back_off {
            return Ok(());
        }
        if let Some(retry_after) = message.retry_after() {
            self.paused_until = self.paused_until.max(ctx.now() + retry_after);
        }
        if message.kind() == Kind::Publish && matches!(message.name(), CONGESTED | DECONGESTED) {
            let news: Congestion = message.decode()?;
            let key = (news.node, news.component);
            if news.congested {
                self.congested.insert(key);
            } else {
                self.congested.remove(&key);
            }
        }
        Ok(())
    }
}
