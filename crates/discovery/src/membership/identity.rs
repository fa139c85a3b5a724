//! A member's identity as SWIM knows it.

use std::net::SocketAddr;

use exchange_runtime::NodeId;

/// A member as SWIM knows it: where it listens for discovery, which node it is
/// and which life of that node. (The node id is a plain number here: this is
/// the wire form, postcard-encoded inside foca's messages.)
#[derive(Clone, PartialEq, Eq, Debug, Hash, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    /// Its discovery address (UDP).
    pub addr: SocketAddr,
    /// Its node id.
    pub node: u64,
    /// Which life: greater after every restart or rejoin.
    pub life: u64,
}

impl Identity {
    /// Its node id.
    pub fn id(&self) -> NodeId {
        NodeId(self.node)
    }
}

impl foca::Identity for Identity {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(Identity {
            life: self.life.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        (self.life, self.node) > (adversary.life, adversary.node)
    }
}
