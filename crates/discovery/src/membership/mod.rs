//! Membership: SWIM (through `foca`) over sealed UDP datagrams, with each
//! member's metadata (endpoints, labels, names handled and subscribed, load)
//! spread alongside.
//!
//! Sans-IO: [`Membership`] takes datagrams and timeouts with the time, and hands
//! out datagrams to send ([`Membership::poll_transmit`]), member events
//! ([`Membership::poll_event`]) and its next deadline
//! ([`Membership::poll_timeout`]). It reads no clock and opens no socket.
//!
//! A member is *routable* once SWIM holds it alive **and** its metadata for that
//! life is known; events speak only of routable members:
//!
//! - metadata spreads as a SWIM custom broadcast when it changes (piggybacked
//!   on probes, each node passing on what is new to it), is re-broadcast every
//!   [`Settings::meta_refresh`] against losses, and is pulled straight from a
//!   member that came up before its metadata arrived;
//! - anti-entropy: every probe period a node sends one random member a Bloom
//!   filter of the members it knows, and gets back the live members it lacks
//!   (up to 64 a datagram); members it had never heard of join its view.
//!   Gossip alone can miss a few members when hundreds join at once (each
//!   update is passed on a bounded number of times); this closes such gaps
//!   within a few periods;
//! - a node that knows no live member announces itself to its seeds, again and
//!   again with back-off (doubling up to [`Settings::seed_retry_max`]), until one
//!   answers; seeds are ordinary members. A node in a cluster announces to one
//!   seed that is not a live member every four probe periods, so that a cluster
//!   split in two merges again through its seeds;
//! - a restarted node comes back under a new life (foca's identity renewal);
//!   its old life goes down and the new one up;
//! - [`Membership::leave`] marks the metadata `leaving` (others drop the node at
//!   once) and tells SWIM.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

/// The metadata's wire types (`exchange.v1.discovery`).
pub use exchange_idl::exchange::v1::discovery as wire;
use exchange_runtime::{NodeId, Time};
use foca::{AccumulatingRuntime, Foca, OwnedNotification};
use prost::Message as _;
use rand_chacha_10::ChaCha8Rng;
use rand_chacha_10::rand_core::{Rng as _, SeedableRng};
use rustc_hash::FxHashMap;

use crate::seal::{self, Opener, Refusal};

mod anti_entropy;
mod identity;
mod meta;
mod seeds;
mod settings;
#[cfg(test)]
mod tests;
mod view;

pub use identity::Identity;
pub use settings::{PROBE_PERIOD, Settings, in_memory_addr, in_memory_node};

use anti_entropy::Bloom;
use meta::{MetaBroadcasts, Store, check_size};

/// What a datagram's body is: the byte after the seal's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
enum DatagramKind {
    /// A SWIM message (foca's wire format).
    Swim = 1,
    /// "Send me your metadata."
    Pull = 2,
    /// A member's metadata.
    Meta = 3,
    /// Anti-entropy: a Bloom filter of the members the sender knows.
    SyncAsk = 4,
    /// Anti-entropy: the live members the asker lacked.
    Sync = 5,
}

impl DatagramKind {
    fn of(byte: u8) -> Option<DatagramKind> {
        [
            DatagramKind::Swim,
            DatagramKind::Pull,
            DatagramKind::Meta,
            DatagramKind::SyncAsk,
            DatagramKind::Sync,
        ]
        .into_iter()
        .find(|kind| *kind as u8 == byte)
    }
}

/// Live members listed per anti-entropy answer at most (fewer if they do not
/// fit one datagram).
const SYNC_MEMBERS: usize = 64;

/// The largest datagram sent, seal included: fits an Ethernet MTU with IPv6 and
/// UDP headers.
pub const DATAGRAM_BYTES_MAX: usize = 1400;
/// Bytes the seal and the kind byte add to a body.
const OVERHEAD: usize = seal::OVERHEAD_BYTES + 1;
/// The largest encoded metadata: it must travel in one datagram beside a SWIM
/// header and a few membership updates.
pub const META_BYTES_MAX: usize = 900;

/// A routable member: its discovery address and its metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct Member {
    /// Its discovery address.
    pub addr: SocketAddr,
    /// What it said of itself.
    pub meta: wire::Member,
}

impl Member {
    /// Its node id.
    pub fn node(&self) -> NodeId {
        NodeId(self.meta.node)
    }
}

/// A change in the routable members.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A member became routable.
    Up(Member),
    /// A routable member's metadata changed.
    Changed {
        /// What it was.
        before: Box<Member>,
        /// What it is.
        after: Box<Member>,
    },
    /// A member stopped being routable: declared down, left, or replaced by a
    /// new life.
    Down(Member),
}

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    /// Where to.
    pub to: SocketAddr,
    /// The sealed bytes.
    pub bytes: Vec<u8>,
}

/// Metadata that cannot be advertised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "this node's metadata takes {0} bytes encoded; at most {META_BYTES_MAX} fit a discovery datagram (fewer names, shorter endpoints or labels)"
)]
pub struct MetaTooLarge(pub usize);

/// Counters, for status and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MembershipStats {
    /// Datagrams taken in (all, before any check).
    pub datagrams_in: u64,
    /// Their bytes.
    pub bytes_in: u64,
    /// Datagrams handed out to send.
    pub datagrams_out: u64,
    /// Their bytes.
    pub bytes_out: u64,
    /// Authentic datagrams whose body could not be used (SWIM refused it,
    /// unknown kind, undecodable metadata).
    pub malformed: u64,
    /// Metadata from another process claiming this node's id.
    pub conflicts: u64,
    /// Metadata pulls sent.
    pub pulls: u64,
    /// Announcements sent to seeds.
    pub seed_announces: u64,
    /// Routable members went up, changed, down.
    pub ups: u64,
    /// See `ups`.
    pub changes: u64,
    /// See `ups`.
    pub downs: u64,
    /// Members SWIM declared down while they were talking to this node, held
    /// routable for a grace period (see `Membership::reconcile`).
    pub downs_held: u64,
    /// Of those, the ones that came back under a new life within it (the
    /// rest went down when it ended).
    pub downs_averted: u64,
    /// Requests foca refused (a timer, an announce, a leave, a broadcast, a
    /// configuration): bugs, counted rather than dropped; nothing changed.
    pub swim_errors: u64,
}

type Swim = Foca<Identity, foca::PostcardCodec, ChaCha8Rng, MetaBroadcasts>;

/// The membership of one node. See the module documentation.
pub struct Membership {
    settings: Settings,
    swim: Swim,
    runtime: AccumulatingRuntime<Identity>,
    timers: BTreeMap<(Time, u64), foca::Timer<Identity>>,
    timer_seq: u64,
    store: Rc<RefCell<Store>>,
    /// SWIM's live members, by node (the greatest life when several).
    alive: FxHashMap<NodeId, Identity>,
    /// The routable members, as last reported in events.
    routable: BTreeMap<NodeId, Member>,
    opener: Opener,
    rng: ChaCha8Rng,
    local: wire::Member,
    outbox: VecDeque<Datagram>,
    events: VecDeque<Event>,
    /// Whether SWIM knows at least one live member.
    active: bool,
    left: bool,
    seed_retry: Duration,
    next_seed_at: Option<Time>,
    next_tick: Time,
    next_refresh: Time,
    next_seed_check: Time,
    pulled_at: FxHashMap<NodeId, Time>,
    /// Members SWIM holds suspect, and since when (see `expire_suspects`).
    suspects: FxHashMap<Identity, (foca::Incarnation, Time)>,
    /// When an authentic datagram last came from each address.
    heard: FxHashMap<SocketAddr, Time>,
    /// Routable members SWIM declared down while they were talking to us,
    /// held until the time given (see `reconcile`).
    held: BTreeMap<NodeId, Time>,
    load_pending: Option<u32>,
    load_sent_at: Time,
    sized_for: usize,
    stats: MembershipStats,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("node", &self.settings.node)
            .field("life", &self.local.life)
            .field("active", &self.active)
            .field("routable", &self.routable.len())
            .finish_non_exhaustive()
    }
}

impl Membership {
    /// A membership advertising `meta` (its node, life and version are set
    /// here). Call [`Membership::start`] to join.
    pub fn new(settings: Settings, mut meta: wire::Member) -> Result<Membership, MetaTooLarge> {
        meta.node = settings.node.0;
        meta.life = settings.life;
        meta.version = 1;
        check_size(&meta)?;
        let identity = Identity {
            addr: settings.addr,
            node: settings.node.0,
            life: settings.life,
        };
        let store = Rc::new(RefCell::new(Store::new(settings.node, settings.life)));
        let swim = Foca::with_custom_broadcast(
            identity,
            settings.foca_config(1),
            ChaCha8Rng::seed_from_u64(settings.rng_seed),
            foca::PostcardCodec,
            MetaBroadcasts(Rc::clone(&store)),
        );
        Ok(Membership {
            opener: Opener::new(settings.key.clone(), settings.window, settings.nonces_max),
            rng: ChaCha8Rng::seed_from_u64(settings.rng_seed ^ 0x6e6f_6e63_6573),
            seed_retry: settings.seed_retry_min,
            settings,
            swim,
            runtime: AccumulatingRuntime::new(),
            timers: BTreeMap::new(),
            timer_seq: 0,
            store,
            alive: FxHashMap::default(),
            routable: BTreeMap::new(),
            local: meta,
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            active: false,
            left: false,
            next_seed_at: None,
            next_tick: Time::ZERO,
            next_refresh: Time::ZERO,
            next_seed_check: Time::ZERO,
            pulled_at: FxHashMap::default(),
            suspects: FxHashMap::default(),
            heard: FxHashMap::default(),
            held: BTreeMap::new(),
            load_pending: None,
            load_sent_at: Time::ZERO,
            sized_for: 1,
            stats: MembershipStats::default(),
        })
    }

    /// Starts: broadcasts this node's metadata and announces it to the seeds.
    pub fn start(&mut self, now: Time) {
        self.broadcast_meta();
        self.next_tick = now + self.settings.probe_period;
        self.next_refresh = now + self.settings.meta_refresh;
        self.announce_to_seeds(now);
        self.settle(now);
    }

    /// This node's identity in SWIM.
    pub fn identity(&self) -> &Identity {
        self.swim.identity()
    }

    /// This node's metadata as advertised.
    pub fn local(&self) -> &wire::Member {
        &self.local
    }

    /// The routable members, by node id.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.routable.values()
    }

    /// A routable member by node id.
    pub fn member(&self, node: NodeId) -> Option<&Member> {
        self.routable.get(&node)
    }

    /// Members SWIM holds alive (with or without metadata yet).
    pub fn alive(&self) -> usize {
        self.alive.len()
    }

    /// SWIM's view, every member it remembers with its state, for diagnostics:
    /// `n2/1 alive` …
    pub fn swim_view(&self) -> String {
        let members: Vec<String> = self
            .swim
            .iter_membership_state()
            .map(|m| {
                format!(
                    "n{}/{} {:?}#{}",
                    m.id().node,
                    m.id().life,
                    m.state(),
                    m.incarnation()
                )
            })
            .collect();
        format!(
            "{} [{}]",
            if self.active { "active" } else { "idle" },
            members.join(", ")
        )
    }

    /// Whether this node knows at least one live member.
    pub fn is_active(&self) -> bool {
        self.active
    }

    /// Counters.
    pub fn stats(&self) -> MembershipStats {
        let store = self.store.borrow();
        MembershipStats {
            malformed: self.stats.malformed + store.malformed,
            conflicts: store.conflicts,
            ..self.stats.clone()
        }
    }

    /// Datagrams refused by the seal, by reason.
    pub fn refused(&self, refusal: Refusal) -> u64 {
        self.opener.refused(refusal)
    }

    /// All datagrams refused by the seal.
    pub fn refused_total(&self) -> u64 {
        self.opener.refused_total()
    }

    /// Takes in a datagram from `from`. Anything not authentic and fresh is
    /// counted and ignored.
    pub fn handle_datagram(&mut self, now: Time, from: SocketAddr, datagram: &[u8]) {
        self.stats.datagrams_in += 1;
        self.stats.bytes_in += datagram.len() as u64;
        let Ok(body) = self.opener.open(now.as_micros(), datagram) else {
            return;
        };
        self.heard.insert(from, now);
        let kind = body
            .split_first()
            .and_then(|(&kind, rest)| Some((DatagramKind::of(kind)?, rest)));
        match kind {
            Some((DatagramKind::Swim, swim)) => {
                if self.swim.handle_data(swim, &mut self.runtime).is_err() {
                    self.stats.malformed += 1;
                }
            }
            Some((DatagramKind::Pull, [])) => {
                if !self.left {
                    let meta = self.local.encode_to_vec();
                    self.send(now, from, DatagramKind::Meta, &meta);
                }
            }
            Some((DatagramKind::SyncAsk, filter)) => match Bloom::decode(filter) {
                Some(filter) if !self.left => self.answer_sync(now, from, &filter),
                Some(_) => {}
                None => self.stats.malformed += 1,
            },
            Some((DatagramKind::Sync, list)) => {
                match postcard::from_bytes::<Vec<foca::Member<Identity>>>(list) {
                    Ok(members) => self.learn(members),
                    Err(_) => self.stats.malformed += 1,
                }
            }
            Some((DatagramKind::Meta, meta)) => match wire::Member::decode(meta) {
                Ok(meta) => {
                    self.store.borrow_mut().offer(meta);
                }
                Err(_) => self.stats.malformed += 1,
            },
            _ => self.stats.malformed += 1,
        }
        self.settle(now);
    }

    /// Runs what is due at `now`.
    pub fn handle_timeout(&mut self, now: Time) {
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let timer = entry.remove();
            // Errors here are foca refusing a stale timer; nothing to undo.
            let handled = self.swim.handle_timer(timer, &mut self.runtime);
            self.stats.swim_errors += u64::from(handled.is_err());
        }
        if now >= self.next_tick {
            self.next_tick = now + self.settings.probe_period;
            self.tick(now);
        }
        self.settle(now);
    }

    /// The next time [`Membership::handle_timeout`] has something to do.
    pub fn poll_timeout(&self) -> Option<Time> {
        let timer = self.timers.keys().next().map(|(at, _)| *at);
        let held = self.held.values().min().copied();
        [timer, held, Some(self.next_tick)]
            .into_iter()
            .flatten()
            .min()
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Datagram> {
        self.outbox.pop_front()
    }

    /// The next change in the routable members.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Changes this node's advertised metadata (names handled or subscribed,
    /// endpoints, labels); spreads it if it changed. Node, life and version are
    /// kept by the membership.
    pub fn update_meta(
        &mut self,
        now: Time,
        change: impl FnOnce(&mut wire::Member),
    ) -> Result<(), MetaTooLarge> {
        let mut meta = self.local.clone();
        change(&mut meta);
        meta.node = self.local.node;
        meta.life = self.local.life;
        meta.version = self.local.version;
        if meta == self.local {
            return Ok(());
        }
        check_size(&meta)?;
        meta.version += 1;
        self.local = meta;
        self.broadcast_meta();
        self.settle(now);
        Ok(())
    }

    /// Reports this node's load (messages queued). Advertised rounded up to a
    /// power of two, at most once per [`Settings::load_period`].
    pub fn set_load(&mut self, now: Time, queued: usize) {
        let load = u32::try_from(queued)
            .unwrap_or(u32::MAX)
            .checked_next_power_of_two()
            .unwrap_or(u32::MAX);
        if load == self.local.load {
            self.load_pending = None;
            return;
        }
        if now.saturating_since(self.load_sent_at) < self.settings.load_period {
            self.load_pending = Some(load);
            return;
        }
        self.publish_load(now, load);
    }

    fn publish_load(&mut self, now: Time, load: u32) {
        self.load_pending = None;
        self.load_sent_at = now;
        // The load field cannot make metadata too large.
        let _ = self.update_meta(now, |meta| meta.load = load);
    }

    /// Leaves the cluster: the metadata says so (others stop routing here at
    /// once) and SWIM announces the leave.
    pub fn leave(&mut self, now: Time) {
        if self.left {
            return;
        }
        let _ = self.update_meta(now, |meta| meta.leaving = true);
        // Leaving tells a few members directly and lets gossip do the rest.
        let left = self.swim.leave_cluster(&mut self.runtime);
        self.stats.swim_errors += u64::from(left.is_err());
        self.left = true;
        self.settle(now);
    }

    /// Seals `body` as a datagram of `kind` to `to`.
    fn send(&mut self, now: Time, to: SocketAddr, kind: DatagramKind, body: &[u8]) {
        let mut framed = Vec::with_capacity(body.len() + 1);
        framed.push(kind as u8);
        framed.extend_from_slice(body);
        let bytes = seal::seal(
            &self.settings.key,
            now.as_micros(),
            self.rng.next_u64(),
            &framed,
        );
        self.stats.datagrams_out += 1;
        self.stats.bytes_out += bytes.len() as u64;
        self.outbox.push_back(Datagram { to, bytes });
    }
}

/// How many times each update is piggybacked: memberlist's `4 × log10(n + 1)`,
/// but never fewer than 6, so that the join of a small cluster growing fast
/// (everyone starting at once) is not told to too few.
fn retransmissions(members: usize) -> std::num::NonZeroU8 {
    let scaled = (4.0 * ((members + 1) as f64).log10()).ceil() as u8;
    std::num::NonZeroU8::new(scaled.max(6)).expect("at least 6")
}
