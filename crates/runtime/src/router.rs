//! The router: from a message name to the local components and remote nodes that
//! handle or subscribe to it.
//!
//! Locality first: a name handled by a component of this node never leaves it.
//! Among several local handlers the one with the shortest queue wins. Among
//! remote nodes the nearest wins (same host, then same network, then the rest;
//! see [`Locality`]), then the least loaded (as its membership metadata says),
//! and the choice rotates among equals.

use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use crate::ids::{ComponentId, Name, NodeId};
use crate::message::Horizon;

/// Where the router sends a message routed by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// A component of this node.
    Local(ComponentId),
    /// Another node, which picks among its own handlers.
    Remote(NodeId),
}

/// How near a remote node is. Nearer is preferred.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Locality {
    /// On this node's host.
    Host,
    /// On this node's network, another host.
    #[default]
    Network,
    /// Elsewhere.
    Remote,
}

/// Whether a node at `locality` is within `horizon`: `process` reaches no
/// other node, `host` the nodes on this host, `network` (the default) those
/// on this network, `global` every node.
pub(crate) fn within(horizon: Horizon, locality: Locality) -> bool {
    match horizon {
        Horizon::Process => false,
        Horizon::Host => locality == Locality::Host,
        Horizon::Network | Horizon::Unspecified => locality <= Locality::Network,
        Horizon::Global => true,
    }
}

/// What the router knows of a remote node for choosing among handlers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct NodeInfo {
    /// How near it is.
    pub locality: Locality,
    /// Its load (messages queued), as last advertised.
    pub load: u32,
}

/// One change to a node's routes, as discovery learns it from a member's
/// metadata (a node takes it as [`crate::Input::Route`]). A driver that records a
/// node's inputs records these too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RouteChange {
    /// `node` handles `name` from now on, or no longer does.
    Handler {
        /// The name.
        name: String,
        /// The remote node.
        node: NodeId,
        /// Added (else removed).
        handles: bool,
    },
    /// `node` subscribes to `name` from now on, or no longer does.
    Subscriber {
        /// The name.
        name: String,
        /// The remote node.
        node: NodeId,
        /// Added (else removed).
        subscribed: bool,
    },
    /// Where `node` is and how loaded it is.
    Info {
        /// The remote node.
        node: NodeId,
        /// What is known of it.
        info: NodeInfo,
    },
    /// `node` is gone: it handles and subscribes to nothing any more.
    Gone {
        /// The remote node.
        node: NodeId,
    },
}

impl NodeInfo {
    fn rank(self) -> (Locality, u32) {
        (self.locality, self.load)
    }
}

#[derive(Debug)]
struct Route {
    name: Name,
    local_handlers: SmallVec<[ComponentId; 2]>,
    remote_handlers: Vec<NodeId>,
    local_subscribers: Vec<ComponentId>,
    remote_subscribers: Vec<NodeId>,
    next_remote: usize,
}

impl Route {
    fn new(name: Name) -> Route {
        Route {
            name,
            local_handlers: SmallVec::new(),
            remote_handlers: Vec::new(),
            local_subscribers: Vec::new(),
            remote_subscribers: Vec::new(),
            next_remote: 0,
        }
    }
}

/// A name as the router's index keys it: by its bytes, so that a name read off
/// the wire is looked up before it is checked to be UTF-8 (a known name was
/// checked when it was registered).
#[derive(Debug)]
struct Key(Name);

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.0.as_bytes() == other.0.as_bytes()
    }
}

impl Eq for Key {}

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.as_bytes().hash(state);
    }
}

impl std::borrow::Borrow<[u8]> for Key {
    fn borrow(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// A name the router knows, by index: looked up once per message, then used
/// without hashing again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteId(u32);

/// Name → handlers and subscribers, local and remote.
#[derive(Debug, Default)]
pub struct Router {
    routes: Vec<Route>,
    index: FxHashMap<Key, RouteId>,
    /// Remote nodes' locality and load; a node not here counts as
    /// `NodeInfo::default()`.
    nodes: FxHashMap<NodeId, NodeInfo>,
}

fn insert_once<T: PartialEq>(list: &mut impl Extend<T>, present: bool, item: T) -> bool {
    if present {
        return false;
    }
    list.extend(Some(item));
    true
}

impl Router {
    /// The route of `name`, if the router knows the name.
    pub fn lookup(&self, name: &str) -> Option<RouteId> {
        self.lookup_bytes(name.as_bytes())
    }

    /// [`Router::lookup`] by the name's bytes (as read off the wire).
    pub fn lookup_bytes(&self, name: &[u8]) -> Option<RouteId> {
        self.index.get(name).copied()
    }

    /// The name of a route.
    pub fn name(&self, route: RouteId) -> &Name {
        &self.routes[route.0 as usize].name
    }

    /// The router's copy of `name` if it knows it (no allocation), else a new one.
    pub fn intern(&self, name: &str) -> Name {
        match self.lookup(name) {
            Some(route) => self.name(route).clone(),
            None => Name::new(name),
        }
    }

    fn route_mut(&mut self, name: &str) -> &mut Route {
        let id = match self.lookup(name) {
            Some(id) => id,
            None => {
                let id = RouteId(u32::try_from(self.routes.len()).expect("fewer than 2^32 names"));
                let name = Name::new(name);
                self.routes.push(Route::new(name.clone()));
                self.index.insert(Key(name), id);
                id
            }
        };
        &mut self.routes[id.0 as usize]
    }

    fn get_mut(&mut self, name: &str) -> Option<&mut Route> {
        let id = self.lookup(name)?;
        Some(&mut self.routes[id.0 as usize])
    }

    pub(crate) fn add_local_handler(&mut self, name: &str, component: ComponentId) {
        let route = self.route_mut(name);
        let present = route.local_handlers.contains(&component);
        insert_once(&mut route.local_handlers, present, component);
    }

    /// Routes `name` to `node` as well (a peer handles it). Returns whether it is new.
    pub fn add_remote_handler(&mut self, name: &str, node: NodeId) -> bool {
        let route = self.route_mut(name);
        let present = route.remote_handlers.contains(&node);
        insert_once(&mut route.remote_handlers, present, node)
    }

    /// Stops routing `name` to `node`. Returns whether it was routed there.
    pub fn remove_remote_handler(&mut self, name: &str, node: NodeId) -> bool {
        let Some(route) = self.get_mut(name) else {
            return false;
        };
        let before = route.remote_handlers.len();
        route.remote_handlers.retain(|n| *n != node);
        before != route.remote_handlers.len()
    }

    /// Sets what is known of a remote node's locality and load.
    pub fn set_node_info(&mut self, node: NodeId, info: NodeInfo) {
        self.nodes.insert(node, info);
    }

    /// Forgets a remote node: it handles and subscribes to nothing any more.
    pub fn remove_node(&mut self, node: NodeId) {
        self.nodes.remove(&node);
        for route in &mut self.routes {
            route.remote_handlers.retain(|n| *n != node);
            route.remote_subscribers.retain(|n| *n != node);
        }
    }

    /// The other nodes known to subscribe to `name`.
    pub fn remote_subscribers(&self, name: &str) -> &[NodeId] {
        self.lookup(name).map_or(&[][..], |route| {
            &self.routes[route.0 as usize].remote_subscribers
        })
    }

    /// The other nodes known to handle `name`.
    pub fn remote_handlers(&self, name: &str) -> &[NodeId] {
        self.lookup(name).map_or(&[][..], |route| {
            &self.routes[route.0 as usize].remote_handlers
        })
    }

    /// Every name with a handler: the name, the local components and the
    /// other nodes that handle it, in the order the router learnt the names.
    pub fn handlers(&self) -> impl Iterator<Item = (&Name, &[ComponentId], &[NodeId])> {
        self.routes
            .iter()
            .filter(|route| !route.local_handlers.is_empty() || !route.remote_handlers.is_empty())
            .map(|route| {
                (
                    &route.name,
                    &route.local_handlers[..],
                    &route.remote_handlers[..],
                )
            })
    }

    /// Whether `name` has a handler, local or remote.
    pub fn has_handler(&self, name: &str) -> bool {
        self.lookup(name).is_some_and(|route| {
            let route = &self.routes[route.0 as usize];
            !route.local_handlers.is_empty() || !route.remote_handlers.is_empty()
        })
    }

    /// Subscribes a local component; returns whether it is the node's first
    /// subscriber of `name` (so the node's interest changed).
    pub(crate) fn subscribe_local(&mut self, name: &str, component: ComponentId) -> bool {
        let route = self.route_mut(name);
        let first = route.local_subscribers.is_empty();
        let present = route.local_subscribers.contains(&component);
        insert_once(&mut route.local_subscribers, present, component) && first
    }

    /// Unsubscribes a local component; returns whether the node lost its last
    /// subscriber of `name`.
    pub(crate) fn unsubscribe_local(&mut self, name: &str, component: ComponentId) -> bool {
        let Some(route) = self.get_mut(name) else {
            return false;
        };
        let before = route.local_subscribers.len();
        route.local_subscribers.retain(|c| *c != component);
        before != 0 && route.local_subscribers.is_empty()
    }

    /// Sets whether `node` has subscribers of `name`.
    pub fn set_remote_subscriber(&mut self, name: &str, node: NodeId, subscribed: bool) {
        let route = self.route_mut(name);
        let present = route.remote_subscribers.contains(&node);
        if subscribed {
            insert_once(&mut route.remote_subscribers, present, node);
        } else {
            route.remote_subscribers.retain(|n| *n != node);
        }
    }

    /// Picks one handler of `name` within `horizon`: a local one if any
    /// (shortest queue by `queue_len`), else the nearest, least loaded remote
    /// one, in turn among equals. `Err(None)`: no handler at all;
    /// `Err(Some(node))`: handlers only beyond the horizon, `node` the nearest.
    pub(crate) fn pick(
        &mut self,
        route: RouteId,
        queue_len: impl Fn(ComponentId) -> usize,
        horizon: Horizon,
    ) -> Result<Destination, Option<NodeId>> {
        let route = &mut self.routes[route.0 as usize];
        if let Some(local) = pick_local(&route.local_handlers, queue_len) {
            return Ok(Destination::Local(local));
        }
        let info = |node: &NodeId| self.nodes.get(node).copied().unwrap_or_default();
        let within = |node: &NodeId| within(horizon, info(node).locality);
        let rank = |node: &NodeId| info(node).rank();
        let node = match route.remote_handlers.as_slice() {
            [] => return Err(None),
            [only] if within(only) => *only,
            many => {
                let Some(best) = many.iter().filter(|n| within(n)).map(rank).min() else {
                    return Err(many.iter().min_by_key(|n| rank(n)).copied());
                };
                let equals = |node: &&NodeId| within(node) && rank(node) == best;
                let turn = route.next_remote % many.iter().filter(equals).count();
                route.next_remote = route.next_remote.wrapping_add(1);
                *many
                    .iter()
                    .filter(equals)
                    .nth(turn)
                    .expect("within the count")
            }
        };
        Ok(Destination::Remote(node))
    }

    /// Whether a remote node is within `horizon` of this one.
    pub fn reaches(&self, node: NodeId, horizon: Horizon) -> bool {
        within(
            horizon,
            self.nodes.get(&node).copied().unwrap_or_default().locality,
        )
    }

    /// Picks a local handler only (for messages that came from another node:
    /// they are never forwarded again).
    pub(crate) fn pick_local(
        &self,
        route: RouteId,
        queue_len: impl Fn(ComponentId) -> usize,
    ) -> Option<ComponentId> {
        pick_local(&self.routes[route.0 as usize].local_handlers, queue_len)
    }

    /// Local subscribers and remote subscriber nodes of a route.
    pub(crate) fn subscribers(&self, route: RouteId) -> (&[ComponentId], &[NodeId]) {
        let route = &self.routes[route.0 as usize];
        (&route.local_subscribers, &route.remote_subscribers)
    }

    /// Names local components subscribe to, sorted.
    pub fn local_subscriptions(&self) -> Vec<Name> {
        self.names_where(|route| !route.local_subscribers.is_empty())
    }

    /// Names handled by local components, sorted.
    pub fn local_names(&self) -> Vec<Name> {
        self.names_where(|route| !route.local_handlers.is_empty())
    }

    fn names_where(&self, keep: impl Fn(&Route) -> bool) -> Vec<Name> {
        let mut names: Vec<Name> = self
            .routes
            .iter()
            .filter(|route| keep(route))
            .map(|route| route.name.clone())
            .collect();
        names.sort();
        names
    }
}

fn pick_local(
    handlers: &[ComponentId],
    queue_len: impl Fn(ComponentId) -> usize,
) -> Option<ComponentId> {
    match handlers {
        [] => None,
        [only] => Some(*only),
        many => many.iter().copied().min_by_key(|c| queue_len(*c)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_first_then_remote_in_turn() {
        let mut router = Router::default();
        router.add_remote_handler("kv.get", NodeId(2));
        router.add_remote_handler("kv.get", NodeId(3));
        assert!(!router.add_remote_handler("kv.get", NodeId(3)));
        let get = router.lookup("kv.get").unwrap();
        let picks: Vec<_> = (0..3)
            .map(|_| router.pick(get, |_| 0, Horizon::Global))
            .collect();
        assert_eq!(
            picks,
            [
                Ok(Destination::Remote(NodeId(2))),
                Ok(Destination::Remote(NodeId(3))),
                Ok(Destination::Remote(NodeId(2)))
            ]
        );
        router.add_local_handler("kv.get", ComponentId(0));
        router.add_local_handler("kv.get", ComponentId(1));
        let shortest = router.pick(
            get,
            |c| if c == ComponentId(0) { 5 } else { 1 },
            Horizon::Global,
        );
        assert_eq!(shortest, Ok(Destination::Local(ComponentId(1))));
        assert_eq!(router.lookup("kv.put"), None);
        assert!(router.remove_remote_handler("kv.get", NodeId(2)));
        assert_eq!(router.local_names(), vec![Name::new("kv.get")]);
    }

    #[test]
    fn nearest_then_least_loaded_remote_handler_wins() {
        let mut router = Router::default();
        for node in 1..=4 {
            router.add_remote_handler("kv.get", NodeId(node));
        }
        let info = |locality, load| NodeInfo { locality, load };
        router.set_node_info(NodeId(1), info(Locality::Remote, 0));
        router.set_node_info(NodeId(2), info(Locality::Network, 8));
        router.set_node_info(NodeId(3), info(Locality::Network, 2));
        router.set_node_info(NodeId(4), info(Locality::Network, 2));
        let get = router.lookup("kv.get").unwrap();
        let picks: Vec<_> = (0..4)
            .map(|_| router.pick(get, |_| 0, Horizon::Global))
            .collect();
        let remote = |n| Ok(Destination::Remote(NodeId(n)));
        assert_eq!(picks, [remote(3), remote(4), remote(3), remote(4)]);
        router.set_node_info(NodeId(2), info(Locality::Host, 64));
        assert_eq!(router.pick(get, |_| 0, Horizon::Global), remote(2));
        router.remove_node(NodeId(2));
        router.remove_node(NodeId(3));
        router.remove_node(NodeId(4));
        assert_eq!(router.pick(get, |_| 0, Horizon::Global), remote(1));
        assert!(router.has_handler("kv.get"));
        router.remove_node(NodeId(1));
        assert!(!router.has_handler("kv.get"));
    }

    #[test]
    fn a_horizon_keeps_the_pick_within_it_and_names_the_nearest_beyond() {
        let mut router = Router::default();
        for node in 1..=3 {
            router.add_remote_handler("kv.get", NodeId(node));
        }
        let info = |locality| NodeInfo { locality, load: 0 };
        router.set_node_info(NodeId(1), info(Locality::Remote));
        router.set_node_info(NodeId(2), info(Locality::Network));
        router.set_node_info(NodeId(3), info(Locality::Remote));
        let get = router.lookup("kv.get").unwrap();
        let pick = |router: &mut Router, horizon| router.pick(get, |_| 0, horizon);
        let remote = |n| Ok(Destination::Remote(NodeId(n)));
        assert_eq!(
            pick(&mut router, Horizon::Unspecified),
            remote(2),
            "network"
        );
        assert_eq!(pick(&mut router, Horizon::Host), Err(Some(NodeId(2))));
        assert_eq!(pick(&mut router, Horizon::Process), Err(Some(NodeId(2))));
        router.remove_node(NodeId(2));
        assert_eq!(pick(&mut router, Horizon::Network), Err(Some(NodeId(1))));
        let mut global: Vec<_> = (0..2).map(|_| pick(&mut router, Horizon::Global)).collect();
        global.sort_by_key(|picked| format!("{picked:?}"));
        assert_eq!(
            global,
            [remote(1), remote(3)],
            "in turn, beyond the network"
        );
        router.add_local_handler("kv.get", ComponentId(0));
        let local = Ok(Destination::Local(ComponentId(0)));
        assert_eq!(
            pick(&mut router, Horizon::Process),
            local,
            "local is within any"
        );
        assert!(router.reaches(NodeId(1), Horizon::Global));
        assert!(!router.reaches(NodeId(1), Horizon::Network));
    }

    #[test]
    fn interest_changes_only_on_first_and_last_subscriber() {
        let mut router = Router::default();
        assert!(router.subscribe_local("feed.posted", ComponentId(0)));
        assert!(!router.subscribe_local("feed.posted", ComponentId(1)));
        assert!(!router.subscribe_local("feed.posted", ComponentId(1)));
        assert!(!router.unsubscribe_local("feed.posted", ComponentId(0)));
        assert!(router.unsubscribe_local("feed.posted", ComponentId(1)));
        assert!(!router.unsubscribe_local("feed.posted", ComponentId(1)));
    }

    #[test]
    fn intern_reuses_known_names() {
        let mut router = Router::default();
        router.add_local_handler("kv.get", ComponentId(0));
        let a = router.intern("kv.get");
        let b = router.intern("kv.get");
        assert!(std::ptr::eq(a.as_str(), b.as_str()));
    }
}
