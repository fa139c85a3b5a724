//! Identifiers: nodes, components, addresses, correlation ids and message names.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::rc::Rc;

/// A node (container) in the network. Will become the node's public key once
/// security lands; until then a number unique in the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub u64);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

/// A component's index within its node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ComponentId(pub u32);

impl ComponentId {
    /// The node itself, as the source of what it refuses before any component
    /// sees it (for example a `NoHandler` bounce for a name it does not handle).
    pub const NODE: ComponentId = ComponentId(u32::MAX);

    pub(crate) fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for ComponentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == ComponentId::NODE {
            f.write_str("node")
        } else {
            write!(f, "c{}", self.0)
        }
    }
}

/// Where a message comes from or goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Address {
    /// The node.
    pub node: NodeId,
    /// The component on that node.
    pub component: ComponentId,
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.node, self.component)
    }
}

/// Ties a reply or bounce to its request. Unique per requesting node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CorrelationId(pub u64);

/// A message name such as `feed.post`: what a message is, and what handlers
/// register for. Cheap to clone: shared and immutable, and reference-counted
/// without atomics, since a node and everything in it live on one thread.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(Rc<str>);

impl Name {
    /// A name from a string. The router keeps one copy of each name it knows, so
    /// the message path clones rather than allocates.
    pub fn new(name: &str) -> Name {
        Name(Rc::from(name))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a message name: non-empty, at most 128 bytes, dot-separated parts of
/// ASCII letters, digits, `_` and `-`.
pub fn validate_name(name: &str) -> Result<(), InvalidName> {
    if name.is_empty() || name.len() > 128 {
        return Err(InvalidName(name.to_owned()));
    }
    let ok = name.split('.').all(|part| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    });
    if ok {
        Ok(())
    } else {
        Err(InvalidName(name.to_owned()))
    }
}

/// A message name that is not of the form `part.part`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid message name {0:?}: expected 1-128 bytes of dot-separated parts made of ASCII letters, digits, '_' or '-'"
)]
pub struct InvalidName(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(validate_name("feed.post").is_ok());
        assert!(validate_name("kv").is_ok());
        assert!(validate_name("a-b.c_d.e1").is_ok());
        for bad in ["", ".", "a..b", "a.", "a b", "ü.x", &"x".repeat(129)] {
            assert!(validate_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
