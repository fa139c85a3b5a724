//! The example app for exchange, written as a user writes components: a
//! key-value [`store`] with prefix subscriptions, a social [`feed`] on top of it,
//! and a [`loadgen`] that drives it with random users.
//!
//! Each component is plain synchronous Rust against the IDL in `idl/app/`; none
//! knows whether its peers run in the same process (`exchange dev`) or in other
//! containers (`exchange run`).
//!
//! ```
//! use exchange_components::store::{Store, StoreSettings};
//! use exchange_runtime::Component;
//! let store = Store::new(StoreSettings::default());
//! assert_eq!(store.handles(), ["kv.get", "kv.put", "kv.subscribe"]);
//! ```

#![deny(missing_docs)]
// Library code says why it cannot fail (`expect`) or returns the error.
#![deny(clippy::unwrap_used)]

pub mod bench;
pub mod feed;
pub mod loadgen;
pub mod store;

use exchange_idl::feed::v1 as feed_pb;
use exchange_idl::kv::v1 as kv_pb;
use exchange_runtime::Kind;
use prost::Message as _;

/// The bundled example app's `exchange dev` configuration.
pub const SOCIAL_APP_TOML: &str = include_str!("../social.toml");

/// A one-line summary of one of the example app's payloads, for traces: decodes
/// by name and kind, and the stored values by their key.
pub fn describe(name: &str, kind: Kind, payload: &[u8]) -> Option<String> {
    let request = matches!(
        kind,
        Kind::Send | Kind::Request | Kind::Publish | Kind::Bounce
    );
    let text = match (name, request) {
        ("feed.post", true) => format!("{:?}", feed_pb::Post::decode(payload).ok()?),
        ("feed.post", false) => format!("{:?}", feed_pb::Posted::decode(payload).ok()?),
        ("feed.posted", _) => format!("{:?}", feed_pb::StoredPost::decode(payload).ok()?),
        ("feed.follow", true) => format!("{:?}", feed_pb::Follow::decode(payload).ok()?),
        ("feed.follow", false) => format!("{:?}", feed_pb::Followed::decode(payload).ok()?),
        ("feed.timeline", true) => format!("{:?}", feed_pb::GetTimeline::decode(payload).ok()?),
        ("feed.timeline", false) => format!("{:?}", feed_pb::Timeline::decode(payload).ok()?),
        ("kv.get", true) => format!("{:?}", kv_pb::Get::decode(payload).ok()?),
        ("kv.get", false) => format!("{:?}", kv_pb::GetReply::decode(payload).ok()?),
        ("kv.put", true) => {
            let put = kv_pb::Put::decode(payload).ok()?;
            format!(
                "Put {{ key: {:?}, value: {} }}",
                put.key,
                describe_value(&put.key, &put.value)
            )
        }
        ("kv.put", false) => format!("{:?}", kv_pb::PutReply::decode(payload).ok()?),
        ("kv.subscribe", true) => format!("{:?}", kv_pb::Subscribe::decode(payload).ok()?),
        ("kv.subscribe", false) => format!("{:?}", kv_pb::SubscribeReply::decode(payload).ok()?),
        ("kv.changed", _) => {
            let changed = kv_pb::Changed::decode(payload).ok()?;
            format!(
                "Changed {{ key: {:?}, version: {}, value: {} }}",
                changed.key,
                changed.version,
                describe_value(&changed.key, &changed.value)
            )
        }
        _ => return None,
    };
    Some(text)
}

/// For `exchange dev`'s end-of-run trace: a timeline change is worth explaining,
/// as "why did this timeline change?".
pub fn trace_focus(name: &str, kind: Kind, payload: &[u8]) -> Option<String> {
    if name != "kv.changed" || kind != Kind::Send {
        return None;
    }
    let changed = kv_pb::Changed::decode(payload).ok()?;
    let user = changed.key.strip_prefix("timeline/")?;
    Some(format!(
        "Why did {user}'s timeline change? (kv.changed {})",
        changed.key
    ))
}

fn describe_value(key: &str, value: &[u8]) -> String {
    if key.starts_with("post/")
        && let Ok(post) = feed_pb::StoredPost::decode(value)
    {
        return format!("{post:?}");
    }
    if key.starts_with("timeline/")
        && let Ok(timeline) = feed_pb::Timeline::decode(value)
    {
        return format!("{timeline:?}");
    }
    format!("{} bytes", value.len())
}
