//! Member metadata: the store of what other nodes said of themselves (shared
//! with the broadcast handler inside foca), its broadcasts, its size limit,
//! and pulls from members that came up before their metadata arrived.

use std::cell::RefCell;
use std::rc::Rc;

use exchange_runtime::{NodeId, Time};
use foca::{BroadcastHandler, Invalidates};
use prost::Message as _;
use rustc_hash::FxHashMap;

use super::{DatagramKind, Identity, META_BYTES_MAX, Membership, MetaTooLarge, wire};

/// Metadata known of other nodes, shared with the broadcast handler inside
/// foca (which owns it and gives no access back).
#[derive(Debug)]
pub(super) struct Store {
    pub(super) this: NodeId,
    /// This node's current life: metadata of this node id under another life
    /// is a conflict (two processes configured with one id).
    pub(super) life: u64,
    pub(super) metas: FxHashMap<NodeId, wire::Member>,
    /// Nodes whose metadata changed since the membership last looked.
    pub(super) changed: Vec<NodeId>,
    pub(super) malformed: u64,
    pub(super) conflicts: u64,
}

impl Store {
    /// An empty store for node `this` in its life `life`.
    pub(super) fn new(this: NodeId, life: u64) -> Store {
        Store {
            this,
            life,
            metas: FxHashMap::default(),
            changed: Vec::new(),
            malformed: 0,
            conflicts: 0,
        }
    }

    /// Keeps `meta` if it is newer than what is known; returns whether it was.
    pub(super) fn offer(&mut self, meta: wire::Member) -> bool {
        let node = NodeId(meta.node);
        if node == self.this {
            // Its own metadata coming back through gossip is not news.
            if meta.life != self.life {
                self.conflicts += 1;
            }
            return false;
        }
        let newer = self
            .metas
            .get(&node)
            .is_none_or(|known| (meta.life, meta.version) > (known.life, known.version));
        if newer {
            self.changed.push(node);
            self.metas.insert(node, meta);
        }
        newer
    }
}

/// The broadcast key: a node's metadata at a (life, version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct MetaKey {
    node: u64,
    life: u64,
    version: u64,
}

impl Invalidates for MetaKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.node == other.node && (self.life, self.version) >= (other.life, other.version)
    }
}

pub(super) struct MetaBroadcasts(pub(super) Rc<RefCell<Store>>);

impl BroadcastHandler<Identity> for MetaBroadcasts {
    type Key = MetaKey;
    type Error = prost::DecodeError;

    fn receive_item(
        &mut self,
        data: &[u8],
        sender: Option<&Identity>,
    ) -> Result<Option<MetaKey>, prost::DecodeError> {
        let meta =
            wire::Member::decode(data).inspect_err(|_| self.0.borrow_mut().malformed += 1)?;
        let key = MetaKey {
            node: meta.node,
            life: meta.life,
            version: meta.version,
        };
        // This node's own metadata (added directly, no sender) always spreads.
        if sender.is_none() || self.0.borrow_mut().offer(meta) {
            Ok(Some(key))
        } else {
            Ok(None)
        }
    }
}

pub(super) fn check_size(meta: &wire::Member) -> Result<(), MetaTooLarge> {
    let bytes = meta.encoded_len() + 24;
    if bytes > META_BYTES_MAX {
        return Err(MetaTooLarge(bytes));
    }
    Ok(())
}

impl Membership {
    pub(super) fn broadcast_meta(&mut self) {
        let meta = self.local.encode_to_vec();
        // Size was checked when the metadata was set.
        let added = self.swim.add_broadcast(&meta);
        self.stats.swim_errors += u64::from(added.is_err());
    }

    pub(super) fn pull_due(&self, now: Time, node: NodeId) -> bool {
        self.pulled_at
            .get(&node)
            .is_none_or(|at| now.saturating_since(*at) >= self.settings.probe_period * 2)
    }

    pub(super) fn pull(&mut self, now: Time, id: &Identity) {
        self.pulled_at.insert(id.id(), now);
        self.stats.pulls += 1;
        self.send(now, id.addr, DatagramKind::Pull, &[]);
    }
}
