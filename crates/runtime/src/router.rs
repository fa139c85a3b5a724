//! The router: from a message name to the local components and remote nodes that
//! handle or subscribe to it.
//!
//! Locality first: a name handled by a component of this node never leaves it.
//! Among several local handlers the one with the shortest queue wins; among
//! remote nodes the choice rotates (load-aware choice arrives with discovery,
//! which carries queue depths).

use rustc_hash::FxHashMap;
use smallvec::SmallVec;

use crate::ids::{ComponentId, Name, NodeId};

/// Where the router sends a message routed by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// A component of this node.
    Local(ComponentId),
    /// Another node, which picks among its own handlers.
    Remote(NodeId),
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

/// A name the router knows, by index: looked up once per message, then used
/// without hashing again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteId(u32);

/// Name → handlers and subscribers, local and remote.
#[derive(Debug, Default)]
pub struct Router {
    routes: Vec<Route>,
    index: FxHashMap<Name, RouteId>,
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
                self.index.insert(name, id);
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

    /// Picks one handler of `name`: a local one if any (shortest queue by
    /// `queue_len`), else the next remote one.
    pub(crate) fn pick(
        &mut self,
        route: RouteId,
        queue_len: impl Fn(ComponentId) -> usize,
    ) -> Option<Destination> {
        let route = &mut self.routes[route.0 as usize];
        if let Some(local) = pick_local(&route.local_handlers, queue_len) {
            return Some(Destination::Local(local));
        }
        if route.remote_handlers.is_empty() {
            return None;
        }
        let index = route.next_remote % route.remote_handlers.len();
        route.next_remote = route.next_remote.wrapping_add(1);
        Some(Destination::Remote(route.remote_handlers[index]))
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

    /// Names handled by local components, sorted.
    pub fn local_names(&self) -> Vec<Name> {
        let mut names: Vec<Name> = self
            .routes
            .iter()
            .filter(|route| !route.local_handlers.is_empty())
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
        let picks: Vec<_> = (0..3).map(|_| router.pick(get, |_| 0)).collect();
        assert_eq!(
            picks,
            [
                Some(Destination::Remote(NodeId(2))),
                Some(Destination::Remote(NodeId(3))),
                Some(Destination::Remote(NodeId(2)))
            ]
        );
        router.add_local_handler("kv.get", ComponentId(0));
        router.add_local_handler("kv.get", ComponentId(1));
        let shortest = router.pick(get, |c| if c == ComponentId(0) { 5 } else { 1 });
        assert_eq!(shortest, Some(Destination::Local(ComponentId(1))));
        assert_eq!(router.lookup("kv.put"), None);
        assert!(router.remove_remote_handler("kv.get", NodeId(2)));
        assert_eq!(router.local_names(), vec![Name::new("kv.get")]);
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
