//! The capability table: membership events turned into a node's routes.
//!
//! A routable member's metadata says which names it handles and subscribes to,
//! where it is (labels) and how loaded it is. [`apply`] keeps a node's router in
//! step: handlers and subscribers added and removed, each remote node's
//! locality (same host, same network, elsewhere) and load set for the router's
//! choice, and everything of a member that went down forgotten. Messages that
//! were waiting for a handler of a name go out as soon as one appears.

use exchange_idl::exchange::v1::discovery as wire;
use exchange_runtime::{Locality, Node, NodeId, NodeInfo, Time};

use crate::membership::{Event, Member};

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

/// Applies one membership event to `node`'s routes. `this` is the node's own
/// advertised metadata (for its labels).
pub fn apply(node: &mut Node, now: Time, this: &wire::Member, event: &Event) {
    match event {
        Event::Up(member) => {
            set_info(node, this, member);
            add(node, now, member, &wire::Member::default());
        }
        Event::Changed { before, after } => {
            set_info(node, this, after);
            remove(node, before, &after.meta);
            add(node, now, after, &before.meta);
        }
        Event::Down(member) => node.router_mut().remove_node(member.node()),
    }
}

fn set_info(node: &mut Node, this: &wire::Member, member: &Member) {
    let info = NodeInfo {
        locality: locality(this, &member.meta),
        load: member.meta.load,
    };
    node.router_mut().set_node_info(member.node(), info);
}

/// Adds what `member` handles and subscribes to that `before` did not.
fn add(node: &mut Node, now: Time, member: &Member, before: &wire::Member) {
    let id = member.node();
    for handled in &member.meta.handles {
        if !before.handles.iter().any(|h| h.name == handled.name) {
            node.add_remote_handler(now, &handled.name, id);
        }
    }
    for name in &member.meta.subscribes {
        if !before.subscribes.contains(name) {
            node.router_mut().set_remote_subscriber(name, id, true);
        }
    }
}

/// Removes what `before` handled and subscribed to that `after` does not.
fn remove(node: &mut Node, before: &Member, after: &wire::Member) {
    let id: NodeId = before.node();
    for handled in &before.meta.handles {
        if !after.handles.iter().any(|h| h.name == handled.name) {
            node.router_mut().remove_remote_handler(&handled.name, id);
        }
    }
    for name in &before.meta.subscribes {
        if !after.subscribes.contains(name) {
            node.router_mut().set_remote_subscriber(name, id, false);
        }
    }
}

/// The metadata a node advertises: the names its components handle (each with
/// `version`) and subscribe to, its endpoints and labels. Load starts at 0.
pub fn local_meta(
    node: &Node,
    version: &str,
    app_endpoint: &str,
    control_endpoint: &str,
    network: &str,
    host: &str,
) -> wire::Member {
    wire::Member {
        app_endpoint: app_endpoint.to_owned(),
        control_endpoint: control_endpoint.to_owned(),
        network: network.to_owned(),
        host: host.to_owned(),
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

    use exchange_runtime::{NodeConfig, Time};

    use super::*;

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
