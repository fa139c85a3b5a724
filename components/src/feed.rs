//! `feed`: a small social feed on the store. Users post and follow; a post is
//! stored at `post/<id>`, then added to the timeline (`timeline/<user>`) of its
//! author and each follower, and published as `feed.posted`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use exchange_idl::feed::v1::{Follow, Followed, GetTimeline, Post, Posted, StoredPost, Timeline};
use exchange_idl::kv::v1::{Get, GetReply, Put};
use exchange_runtime::{
    BounceReason, Component, CorrelationId, Ctx, HandlerError, HandlerResult, Kind, Message,
    ReplyTo,
};
use prost::Message as _;
use serde::Deserialize;

/// `[component.settings]` of a feed.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeedSettings {
    /// Post ids kept per timeline.
    pub timeline_len_max: usize,
    /// Followers per user at most.
    pub followers_max: usize,
    /// Requests to the store awaiting an answer at most.
    pub waiting_max: usize,
    /// How long to wait for the store.
    #[serde(with = "humantime_serde")]
    pub store_timeout: Duration,
}

impl Default for FeedSettings {
    fn default() -> Self {
        FeedSettings {
            timeline_len_max: 50,
            followers_max: 100,
            waiting_max: 10_000,
            store_timeout: Duration::from_secs(1),
        }
    }
}

/// What a request to the store was for.
enum Waiting {
    PostStored { reply_to: ReplyTo, post: StoredPost },
    Timeline { reply_to: ReplyTo },
}

/// The feed component.
pub struct Feed {
    settings: FeedSettings,
    next_post_id: u64,
    followers: BTreeMap<String, BTreeSet<String>>,
    timelines: BTreeMap<String, VecDeque<u64>>,
    /// Posts the store confirmed, by id, with how many timelines show each
    /// (an id leaves when no timeline shows it any more).
    stored: BTreeMap<u64, u32>,
    waiting: BTreeMap<CorrelationId, Waiting>,
}

impl Feed {
    /// A feed with no users yet.
    pub fn new(settings: FeedSettings) -> Feed {
        Feed {
            settings,
            next_post_id: 0,
            followers: BTreeMap::new(),
            timelines: BTreeMap::new(),
            stored: BTreeMap::new(),
            waiting: BTreeMap::new(),
        }
    }

    fn ask_store(
        &mut self,
        ctx: &mut Ctx<'_>,
        name: &str,
        request: &impl prost::Message,
        then: Waiting,
    ) -> HandlerResult {
        if self.waiting.len() >= self.settings.waiting_max {
            return Err(HandlerError::msg(
                "feed busy: too many store requests waiting",
            ));
        }
        let correlation = ctx.request(name, request, self.settings.store_timeout);
        self.waiting.insert(correlation, then);
        Ok(())
    }

    fn post(&mut self, ctx: &mut Ctx<'_>, message: &Message) -> HandlerResult {
        let post: Post = message.decode()?;
        self.next_post_id += 1;
        let stored = StoredPost {
            post_id: self.next_post_id,
            user: post.user,
            text: post.text,
        };
        let put = Put {
            key: format!("post/{}", stored.post_id),
            value: stored.encode_to_vec(),
        };
        let reply_to = message
            .reply_to()
            .ok_or_else(|| HandlerError::msg("feed.post must be a request"))?;
        self.ask_store(
            ctx,
            "kv.put",
            &put,
            Waiting::PostStored {
                reply_to,
                post: stored,
            },
        )
    }

    fn follow(&mut self, ctx: &mut Ctx<'_>, message: &Message) -> HandlerResult {
        let follow: Follow = message.decode()?;
        let followers = self.followers.entry(follow.followee).or_default();
        if followers.len() >= self.settings.followers_max && !followers.contains(&follow.follower) {
            return Err(HandlerError::msg(format!(
                "followers_max = {} reached",
                self.settings.followers_max
            )));
        }
        followers.insert(follow.follower.clone());
        let following = self
            .followers
            .values()
            .filter(|f| f.contains(&follow.follower))
            .count();
        ctx.reply(&Followed {
            following: following as u32,
        })?;
        Ok(())
    }

    /// The post is stored: add it to the author's and each follower's timeline,
    /// then tell the author.
    fn fan_out(&mut self, ctx: &mut Ctx<'_>, reply_to: &ReplyTo, post: &StoredPost) {
        let mut readers: BTreeSet<String> =
            self.followers.get(&post.user).cloned().unwrap_or_default();
        readers.insert(post.user.clone());
        for reader in readers {
            let timeline = self.timelines.entry(reader.clone()).or_default();
            timeline.push_front(post.post_id);
            *self.stored.entry(post.post_id).or_default() += 1;
            while timeline.len() > self.settings.timeline_len_max {
                let Some(old) = timeline.pop_back() else {
                    break;
                };
                if let Some(shown) = self.stored.get_mut(&old) {
                    *shown -= 1;
                    if *shown == 0 {
                        self.stored.remove(&old);
                    }
                }
            }
            let value = Timeline {
                user: reader.clone(),
                post_ids: timeline.iter().copied().collect(),
            };
            ctx.send(
                "kv.put",
                &Put {
                    key: format!("timeline/{reader}"),
                    value: value.encode_to_vec(),
                },
            );
        }
        ctx.respond(
            reply_to,
            &Posted {
                post_id: post.post_id,
            },
        );
        // Whoever cares about new posts (search, notifications, the load
        // generator's counters) subscribes to this.
        ctx.publish("feed.posted", post);
    }

    /// The store answered (or the request bounced).
    fn settle(&mut self, ctx: &mut Ctx<'_>, message: &Message) -> HandlerResult {
        let Some(waiting) = message.correlation().and_then(|c| self.waiting.remove(&c)) else {
            // A bounce of a timeline write (a plain send): the timeline stays as
            // it was in the store; the bounce is counted by whoever refused it.
            return Ok(());
        };
        let failed = message.kind() == Kind::Bounce;
        match waiting {
            Waiting::PostStored { reply_to, .. } if failed => {
                // The store's reason goes back to the poster: a full store
                // (`QuotaExceeded`) or a throttled one is something it can act on.
                let detail = format!(
                    "could not store the post: {}",
                    message.bounce_detail().unwrap_or("")
                );
                match message.bounce_reason() {
                    Some(
                        reason @ (BounceReason::QuotaExceeded
                        | BounceReason::Throttled
                        | BounceReason::Overloaded),
                    ) => {
                        ctx.refuse(&reply_to, reason, &detail, message.retry_after());
                    }
                    _ => ctx.reject(&reply_to, &detail),
                }
            }
            Waiting::PostStored { reply_to, post } => self.fan_out(ctx, &reply_to, &post),
            Waiting::Timeline { reply_to } if failed => {
                ctx.reject(&reply_to, "could not read the timeline")
            }
            Waiting::Timeline { reply_to } => {
                let stored: GetReply = message.decode()?;
                ctx.respond(&reply_to, &Timeline::decode(stored.value.as_slice())?);
            }
        }
        Ok(())
    }
}

impl Component for Feed {
    fn handles(&self) -> &[&str] {
        &["feed.post", "feed.follow", "feed.timeline"]
    }

    /// A timeline never shows a post the store did not confirm, nor one post
    /// twice, nor more than `timeline_len_max` posts.
    fn invariants(&self) -> Result<(), String> {
        let mut shown = 0;
        for (user, timeline) in &self.timelines {
            if timeline.len() > self.settings.timeline_len_max {
                return Err(format!(
                    "{user}'s timeline shows {} posts, over timeline_len_max",
                    timeline.len()
                ));
            }
            let mut seen = BTreeSet::new();
            for id in timeline {
                if !self.stored.contains_key(id) {
                    return Err(format!(
                        "{user}'s timeline shows post {id}, which the store never confirmed"
                    ));
                }
                if !seen.insert(id) {
                    return Err(format!("{user}'s timeline shows post {id} twice"));
                }
            }
            shown += timeline.len() as u64;
        }
        let counted: u64 = self.stored.values().map(|n| u64::from(*n)).sum();
        if counted != shown {
            return Err(format!(
                "timelines show {shown} posts, the stored posts' counts say {counted}"
            ));
        }
        Ok(())
    }

    fn handle(&mut self, ctx: &mut Ctx<'_>, message: &Message) -> HandlerResult {
        match (message.kind(), message.name()) {
            (Kind::Reply | Kind::Bounce, _) => self.settle(ctx, message),
            (_, "feed.post") => self.post(ctx, message),
            (_, "feed.follow") => self.follow(ctx, message),
            (_, "feed.timeline") => {
                let get: GetTimeline = message.decode()?;
                let reply_to = message
                    .reply_to()
                    .ok_or_else(|| HandlerError::msg("feed.timeline must be a request"))?;
                let key = format!("timeline/{}", get.user);
                self.ask_store(ctx, "kv.get", &Get { key }, Waiting::Timeline { reply_to })
            }
            (kind, name) => Err(HandlerError::msg(format!(
                "feed does not handle {name} as {kind:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_invariant_catches_a_timeline_showing_an_unconfirmed_post() {
        let mut feed = Feed::new(FeedSettings::default());
        assert_eq!(feed.invariants(), Ok(()));
        feed.stored.insert(1, 1);
        feed.timelines.insert("u1".into(), VecDeque::from([1]));
        assert_eq!(feed.invariants(), Ok(()));
        feed.timelines.get_mut("u1").unwrap().push_front(2);
        let broken = feed.invariants().unwrap_err();
        assert!(
            broken.contains("post 2, which the store never confirmed"),
            "{broken}"
        );
    }
}
