//! The capability table: membership events turned into a node's routes.
//!
//! A routable member's metadata says which names it handles and subscribes to,
//! where it is (labels) and how loaded it is. [`changes`] turns each
//! membership event into the route changes that keep a node's router in
//! step: handlers and subscribers added and removed, each remote node's
//! locality (same host, same network, elsewhere) and load set for the router's
//! choice, and everything of a member that went down forgotten. The
//! [`Host`](crate::Host) hands them to its node as inputs (so recordings keep
//! them); messages that were waiting for a handler of a name go out as soon as
//! one appears.

use exchange_discovery::{Event, Member};
use exchange_idl::exchange::v1::discovery as wire;
use exchange_runtime::{Locality, Node, NodeId, NodeInfo, RouteChange};

use crate::host::Labels;

/// How near `member` is to the node described by `this`.
pub fn locality(this: &wire::Member, member: &wire::Member) -> Locality {
    if !this.network.is_empty() && this.network != member.network {
        Locality::Remote
    } else if !this.host.is_empty() && this.host == member.host {
        Locality::Host
    } else {
        Locality::Network
    }
}

/// The changes to a node's routes one membership event makes, in order, each
/// handed to `sink` (a driver that records a node's inputs records these).
/// `this` is the node's own advertised metadata (for its labels).
pub fn changes(this: &wire::Member, event: &Event, mut sink: impl FnMut(RouteChange)) {
    match event {
        Event::Up(member) => {
            sink(info(this, member));
            add(member, &wire::Member::default(), &mut sink);
        }
        Event::Changed { before, after } => {
            sink(info(this, after));
            remove(before, &after.meta, &mut sink);
            add(after, &before.meta, &mut sink);
        }
        Event::Down(member) => sink(RouteChange::Gone {
            node: member.node(),
        }),
    }
}

fn info(this: &wire::Member, member: &Member) -> RouteChange {
    RouteChange::Info {
        node: member.node(),
        info: NodeInfo {
            locality: locality(this, &member.meta),
            load: member.meta.load,
        },
    }
}

/// Adds what `member` handles and subscribes to that `before` did not.
fn add(member: &Member, before: &wire::Member, sink: &mut impl FnMut(RouteChange)) {
    let node = member.node();
    for handled in &member.meta.handles {
        if !before.handles.iter().any(|h| h.name == handled.name) {
            sink(RouteChange::Handler {
                name: handled.name.clone(),
                node,
                handles: true,
            });
        }
    }
    for name in &member.meta.subscribes {
        if !before.subscribes.contains(name) {
            sink(RouteChange::Subscriber {
                name: name.clone(),
                node,
                subscribed: true,
            });
        }
    }
}

/// Removes what `before` handled and subscribed to that `after` does not.
fn remove(before: &Member, after: &wire::Member, sink: &mut impl FnMut(RouteChange)) {
    let node: NodeId = before.node();
    for handled in &before.meta.handles {
        if !after.handles.iter().any(|h| h.name == handled.name) {
            sink(RouteChange::Handler {
                name: handled.name.clone(),
                node,
                handles: false,
            });
        }
    }
    for name in &before.meta.subscribes {
        if !after.subscribes.contains(name) {
            sink(RouteChange::Subscriber {
                name: name.clone(),
                node,
                subscribed: false,
            });
        }
    }
}

/// What a peer known without discovery (static `[[peer]]` configuration, or a
/// driver that tells every node of every other) adds to a node's routes: the
/// names it handles and those it subscribes to.
pub fn static_peer<'a>(
    node: NodeId,
    handles: impl IntoIterator<Item = &'a str>,
    subscribes: impl IntoIterator<Item = &'a str>,
) -> impl Iterator<Item = RouteChange> {
    let handlers = handles.into_iter().map(move |name| RouteChange::Handler {
        name: name.to_owned(),
        node,
        handles: true,
    });
    let subscribers = subscribes
        .into_iter()
        .map(move |name| RouteChange::Subscriber {
            name: name.to_owned(),
            node,
            subscribed: true,
        });
    handlers.chain(subscribers)
}

/// The metadata a node advertises: the names its components handle (each with
/// the labels' version) and subscribe to, its endpoints and labels. Load starts at 0.
pub(crate) fn local_meta(node: &Node, labels: &Labels<'_>) -> wire::Member {
    let version = labels.version;
    wire::Member {
        app_endpoint: labels.app_endpoint.to_owned(),
        control_endpoint: labels.control_endpoint.to_owned(),
        network: labels.network.to_owned(),
        host: labels.host.to_owned(),
        handles: node
            .router()
            .local_names()
            .iter()
            .map(|name| wire::Handled {
                name: name.as_str().to_owned(),
                version: version.to_owned(),
            })
            .collect(),
        subscribes: node
            .router()
            .local_subscriptions()
            .iter()
            .map(|name| name.as_str().to_owned())
            .collect(),
        ..wire::Member::default()
    }
}

/// Follows a node's own subscriptions (its `Event::Interest`) in `meta`.
pub fn note_interest(meta: &mut wire::Member, name: &str, subscribed: bool) {
    meta.subscribes.retain(|known| known != name);
    if subscribed {
        meta.subscribes.push(name.to_owned());
        meta.subscribes.sort();
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use exchange_runtime::{Input, NodeConfig, Time};

    use super::*;

    fn apply(node: &mut Node, now: Time, this: &wire::Member, event: &Event) {
        changes(this, event, |change| node.handle(now, Input::Route(change)));
    }

    fn member(node: u64, host: &str, handles: &[&str], subscribes: &[&str]) -> Member {
        Member {
            addr: SocketAddr::from(([10, 0, 0, node as u8], 7946)),
            meta: wire::Member {
                node,
                life: 1,
                network: "lan".into(),
                host: host.into(),
                handles: handles
                    .iter()
                    .map(|name| wire::Handled {
                        name: (*name).into(),
                        version: "1".into(),
                    })
                    .collect(),
                subscribes: subscribes.iter().map(|s| (*s).into()).collect(),
                ..wire::Member::default()
            },
        }
    }

    #[test]
    fn events_add_change_and_remove_routes() {
        let now = Time::from_micros(1_000_000);
        let config = NodeConfig {
            handler_wait: Duration::from_secs(1),
            ..NodeConfig::default()
        };
        let mut node = Node::new(NodeId(1), "n1", config);
        let this = wire::Member {
            network: "lan".into(),
            host: "h1".into(),
            ..wire::Member::default()
        };
        let far = member(2, "h2", &["kv.get", "kv.put"], &["feed.posted"]);
        apply(&mut node, now, &this, &Event::Up(far.clone()));
        assert!(node.router().has_handler("kv.get"));
        assert!(node.router().has_handler("kv.put"));
        let near = member(3, "h1", &["kv.get"], &[]);
        assert_eq!(locality(&this, &near.meta), Locality::Host);
        assert_eq!(locality(&this, &far.meta), Locality::Network);
        let mut elsewhere = member(4, "h9", &[], &[]);
        elsewhere.meta.network = "wan".into();
        assert_eq!(locality(&this, &elsewhere.meta), Locality::Remote);

        // kv.put is no longer handled there; the subscription goes too.
        let changed = member(2, "h2", &["kv.get"], &[]);
        let event = Event::Changed {
            before: Box::new(far),
            after: Box::new(changed.clone()),
        };
        apply(&mut node, now, &this, &event);
        assert!(node.router().has_handler("kv.get"));
        assert!(!node.router().has_handler("kv.put"));
        apply(&mut node, now, &this, &Event::Down(changed));
        assert!(!node.router().has_handler("kv.get"));
    }

    #[test]
    fn interest_is_kept_sorted_and_unique() {
        let mut meta = wire::Member::default();
        note_interest(&mut meta, "feed.posted", true);
        note_interest(&mut meta, "app.b", true);
        note_interest(&mut meta, "feed.posted", true);
        assert_eq!(meta.subscribes, ["app.b", "feed.posted"]);
        note_interest(&mut meta, "app.b", false);
        assert_eq!(meta.subscribes, ["feed.posted"]);
    }
}
