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
//!   (up to [`SYNC_MEMBERS`]); members it had never heard of join its view.
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
use std::num::NonZeroU32;
use std::rc::Rc;
use std::time::Duration;

/// The metadata's wire types (`exchange.v1.discovery`).
pub use exchange_idl::exchange::v1::discovery as wire;
use exchange_runtime::{NodeId, Time};
use foca::{AccumulatingRuntime, BroadcastHandler, Config, Foca, Invalidates, OwnedNotification};
use prost::Message as _;
use rand_chacha_10::ChaCha8Rng;
use rand_chacha_10::rand_core::{Rng as _, SeedableRng};
use rustc_hash::FxHashMap;

use crate::seal::{self, ClusterKey, Opener, Refusal};

/// What comes after the seal's header, before the body proper.
const KIND_SWIM: u8 = 1;
const KIND_PULL: u8 = 2;
const KIND_META: u8 = 3;
const KIND_SYNC_ASK: u8 = 4;
const KIND_SYNC: u8 = 5;

/// Live members listed per anti-entropy answer at most (fewer if they do not
/// fit one datagram).
const SYNC_MEMBERS: usize = 64;

/// A Bloom filter of discovery addresses (anti-entropy: "these I know").
/// Four hash functions by double hashing, ~10 bits per member: about 1% false
/// positives while it fits a datagram (about 1,000 members), more beyond; a
/// fresh seed per request means a member missed once is found the next time.
struct Bloom {
    seed: u64,
    bits: Vec<u8>,
}

impl Bloom {
    const HASHES: u64 = 4;
    const BYTES_MAX: usize = DATAGRAM_BYTES_MAX - OVERHEAD - 8;

    fn of(seed: u64, addrs: &[SocketAddr]) -> Bloom {
        let bytes = (addrs.len() * 10).div_ceil(8).clamp(32, Bloom::BYTES_MAX);
        let mut bloom = Bloom {
            seed,
            bits: vec![0; bytes],
        };
        for addr in addrs {
            for bit in bloom.positions(*addr) {
                bloom.bits[bit / 8] |= 1 << (bit % 8);
            }
        }
        bloom
    }

    fn positions(&self, addr: SocketAddr) -> impl Iterator<Item = usize> + use<> {
        let key = match addr {
            SocketAddr::V4(v4) => u64::from(u32::from(*v4.ip())) << 16 | u64::from(v4.port()),
            SocketAddr::V6(v6) => {
                let ip = u128::from(*v6.ip());
                (ip as u64) ^ ((ip >> 64) as u64).rotate_left(17) ^ u64::from(v6.port())
            }
        };
        let hash = splitmix(key ^ self.seed);
        let (h1, h2) = (hash & 0xffff_ffff, (hash >> 32) | 1);
        let bits = (self.bits.len() * 8) as u64;
        (0..Bloom::HASHES).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) % bits) as usize)
    }

    fn contains(&self, addr: SocketAddr) -> bool {
        self.positions(addr)
            .all(|bit| self.bits[bit / 8] & (1 << (bit % 8)) != 0)
    }

    fn encode(&self) -> Vec<u8> {
        let mut body = self.seed.to_be_bytes().to_vec();
        body.extend_from_slice(&self.bits);
        body
    }

    fn decode(body: &[u8]) -> Option<Bloom> {
        if body.len() < 8 + 1 || body.len() > 8 + Bloom::BYTES_MAX {
            return None;
        }
        let (seed, bits) = body.split_at(8);
        Some(Bloom {
            seed: u64::from_be_bytes(seed.try_into().ok()?),
            bits: bits.to_vec(),
        })
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The largest datagram sent, seal included: fits an Ethernet MTU with IPv6 and
/// UDP headers.
pub const DATAGRAM_BYTES_MAX: usize = 1400;
/// Bytes the seal and the kind byte add to a body.
const OVERHEAD: usize = seal::OVERHEAD_BYTES + 1;
/// The largest encoded metadata: it must travel in one datagram beside a SWIM
/// header and a few membership updates.
pub const META_BYTES_MAX: usize = 900;

/// A member as SWIM knows it: where it listens for discovery, which node it is
/// and which life of that node.
#[derive(Clone, PartialEq, Eq, Debug, Hash, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    /// Its discovery address (UDP).
    pub addr: SocketAddr,
    /// Its node id.
    pub node: u64,
    /// Which life: greater after every restart or rejoin.
    pub life: u64,
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

/// How a membership behaves. [`Settings::new`] gives the defaults.
#[derive(Clone, Debug)]
pub struct Settings {
    /// This node.
    pub node: NodeId,
    /// This life of the node (the container uses its start time in µs, so a
    /// restart is always a greater life).
    pub life: u64,
    /// The address others reach this node's discovery at.
    pub addr: SocketAddr,
    /// Where to announce this node while it knows no live member.
    pub seeds: Vec<SocketAddr>,
    /// The cluster's shared secret.
    pub key: ClusterKey,
    /// SWIM's probe period: each node probes one member per period.
    pub probe_period: Duration,
    /// How long a direct probe waits for its answer before asking others to
    /// probe indirectly.
    pub probe_rtt: Duration,
    /// Suspicion lasts `suspicion_factor × max(1, log10(members)) × probe_period`
    /// before a suspect is declared down (memberlist's rule).
    pub suspicion_factor: f64,
    /// Datagrams sent more than this before or after the receiver's clock are
    /// refused as stale.
    pub window: Duration,
    /// Nonces remembered at most (against replays).
    pub nonces_max: usize,
    /// The first wait before announcing to the seeds again.
    pub seed_retry_min: Duration,
    /// The longest wait between announcements to the seeds.
    pub seed_retry_max: Duration,
    /// How often this node's metadata is broadcast again unchanged.
    pub meta_refresh: Duration,
    /// The least time between two load updates.
    pub load_period: Duration,
    /// Seeds the random choices (whom to probe, nonces, back-off jitter).
    pub rng_seed: u64,
}

/// SWIM's probe period unless configured: 500 ms, for a LAN.
pub const PROBE_PERIOD: Duration = Duration::from_millis(500);

/// The discovery address of node `id` where memberships talk over an
/// in-memory network (the simulator, `exchange dev`): `10.x.y.z:7946` from
/// the id's low 24 bits.
pub fn in_memory_addr(id: NodeId) -> SocketAddr {
    let low = u32::try_from(id.0 & 0x00ff_ffff).expect("24 bits");
    SocketAddr::from((std::net::Ipv4Addr::from(0x0a00_0000 | low), 7946))
}

/// The node behind an [`in_memory_addr`].
pub fn in_memory_node(addr: SocketAddr) -> Option<NodeId> {
    match addr {
        SocketAddr::V4(v4) => Some(NodeId(u64::from(u32::from(*v4.ip()) & 0x00ff_ffff))),
        SocketAddr::V6(_) => None,
    }
}

impl Settings {
    /// Defaults for a LAN: probe every [`PROBE_PERIOD`].
    pub fn new(node: NodeId, life: u64, addr: SocketAddr, key: ClusterKey) -> Settings {
        let mut settings = Settings {
            node,
            life,
            addr,
            seeds: Vec::new(),
            key,
            probe_period: PROBE_PERIOD,
            probe_rtt: Duration::ZERO,
            suspicion_factor: 4.0,
            window: Duration::from_secs(30),
            nonces_max: 1 << 16,
            seed_retry_min: Duration::from_millis(500),
            seed_retry_max: Duration::from_secs(30),
            meta_refresh: Duration::from_secs(20),
            load_period: Duration::from_secs(1),
            rng_seed: node.0 ^ life.rotate_left(32),
        };
        settings.set_probe_period(PROBE_PERIOD);
        settings
    }

    /// Sets the probe period, and the direct probe's wait to 2/5 of it (the
    /// rest of the period leaves room for the indirect probes).
    pub fn set_probe_period(&mut self, period: Duration) {
        self.probe_period = period;
        self.probe_rtt = period * 2 / 5;
    }

    /// How long a suspect stays suspect in a cluster of `members`.
    pub fn suspicion(&self, members: usize) -> Duration {
        let scale = (members.max(1) as f64).log10().max(1.0);
        self.probe_period.mul_f64(self.suspicion_factor * scale)
    }

    fn foca_config(&self, members: usize) -> Config {
        let size = NonZeroU32::new(u32::try_from(members.max(1)).unwrap_or(u32::MAX))
            .expect("at least one");
        Config {
            probe_period: self.probe_period,
            probe_rtt: self.probe_rtt,
            suspect_to_down_after: self.suspicion(members),
            // Down members are remembered (so that a healed partition finds
            // them again) and announced to every few periods.
            remove_down_after: Some(Duration::from_secs(3600)),
            periodic_announce_to_down_members: Some(foca::PeriodicParams {
                frequency: self.probe_period * 10,
                num_members: std::num::NonZeroUsize::new(2).expect("two"),
            }),
            periodic_gossip: Some(foca::PeriodicParams {
                frequency: self.probe_period / 2,
                num_members: std::num::NonZeroUsize::new(3).expect("three"),
            }),
            max_packet_size: std::num::NonZeroUsize::new(DATAGRAM_BYTES_MAX - OVERHEAD)
                .expect("positive"),
            max_transmissions: retransmissions(members),
            ..Config::new_lan(size)
        }
    }
}

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
}

/// Metadata known of other nodes, shared with the broadcast handler inside
/// foca (which owns it and gives no access back).
#[derive(Debug, Default)]
struct Store {
    this: u64,
    /// This node's current life: metadata of this node id under another life
    /// is a conflict (two processes configured with one id).
    life: u64,
    metas: FxHashMap<u64, wire::Member>,
    /// Nodes whose metadata changed since the membership last looked.
    changed: Vec<u64>,
    malformed: u64,
    conflicts: u64,
}

impl Store {
    /// Keeps `meta` if it is newer than what is known; returns whether it was.
    fn offer(&mut self, meta: wire::Member) -> bool {
        if meta.node == self.this {
            // Its own metadata coming back through gossip is not news.
            if meta.life != self.life {
                self.conflicts += 1;
            }
            return false;
        }
        let newer = self
            .metas
            .get(&meta.node)
            .is_none_or(|known| (meta.life, meta.version) > (known.life, known.version));
        if newer {
            self.changed.push(meta.node);
            self.metas.insert(meta.node, meta);
        }
        newer
    }
}

/// The broadcast key: a node's metadata at a (life, version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MetaKey {
    node: u64,
    life: u64,
    version: u64,
}

impl Invalidates for MetaKey {
    fn invalidates(&self, other: &Self) -> bool {
        self.node == other.node && (self.life, self.version) >= (other.life, other.version)
    }
}

struct MetaBroadcasts(Rc<RefCell<Store>>);

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
    alive: FxHashMap<u64, Identity>,
    /// The routable members, as last reported in events.
    routable: BTreeMap<u64, Member>,
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
    pulled_at: FxHashMap<u64, Time>,
    /// Members SWIM holds suspect, and since when (see `expire_suspects`).
    suspects: FxHashMap<Identity, (foca::Incarnation, Time)>,
    /// When an authentic datagram last came from each address.
    heard: FxHashMap<SocketAddr, Time>,
    /// Routable members SWIM declared down while they were talking to us,
    /// held until the time given (see `reconcile`).
    held: BTreeMap<u64, Time>,
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
        let store = Rc::new(RefCell::new(Store {
            this: settings.node.0,
            life: settings.life,
            ..Store::default()
        }));
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
        self.routable.get(&node.0)
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
        match body.split_first() {
            Some((&KIND_SWIM, swim)) => {
                if self.swim.handle_data(swim, &mut self.runtime).is_err() {
                    self.stats.malformed += 1;
                }
            }
            Some((&KIND_PULL, [])) => {
                if !self.left {
                    let meta = self.local.encode_to_vec();
                    self.send(now, from, KIND_META, &meta);
                }
            }
            Some((&KIND_SYNC_ASK, filter)) => match Bloom::decode(filter) {
                Some(filter) if !self.left => self.answer_sync(now, from, &filter),
                Some(_) => {}
                None => self.stats.malformed += 1,
            },
            Some((&KIND_SYNC, list)) => {
                match postcard::from_bytes::<Vec<foca::Member<Identity>>>(list) {
                    Ok(members) => self.learn(members),
                    Err(_) => self.stats.malformed += 1,
                }
            }
            Some((&KIND_META, meta)) => match wire::Member::decode(meta) {
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
            let _ = self.swim.handle_timer(timer, &mut self.runtime);
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
        let _ = self.swim.leave_cluster(&mut self.runtime);
        self.left = true;
        self.settle(now);
    }

    fn broadcast_meta(&mut self) {
        let meta = self.local.encode_to_vec();
        // Size was checked when the metadata was set.
        let _ = self.swim.add_broadcast(&meta);
    }

    /// How long a member declared down while alive is kept routable, and how
    /// recent contact must be to count (see `reconcile`).
    fn down_grace(&self) -> Duration {
        self.settings.probe_period * 2
    }

    /// Periodic work: seeds while alone, pulls for members without metadata,
    /// the metadata refresh, a pending load update, SWIM sized to the cluster;
    /// contact older than the grace forgotten.
    fn tick(&mut self, now: Time) {
        // Only recent contact counts (see `reconcile`): forget the rest, so
        // that addresses of members long gone do not pile up.
        let grace = self.down_grace();
        self.heard
            .retain(|_, at| now.saturating_since(*at) <= grace);
        if !self.active && !self.left && self.next_seed_at.is_some_and(|at| now >= at) {
            self.announce_to_seeds(now);
        }
        if self.active && !self.left && now >= self.next_seed_check {
            self.next_seed_check = now + self.settings.probe_period * 4;
            self.announce_to_a_missing_seed();
        }
        let missing: Vec<Identity> = self
            .alive
            .values()
            .filter(|id| !self.routable.contains_key(&id.node) && self.pull_due(now, id.node))
            .take(64)
            .cloned()
            .collect();
        for id in missing {
            self.pull(now, &id);
        }
        if self.active && !self.left {
            self.sync(now);
        }
        self.expire_suspects(now);
        if now >= self.next_refresh && !self.left {
            self.next_refresh = now + self.settings.meta_refresh;
            self.broadcast_meta();
        }
        if let Some(load) = self.load_pending
            && now.saturating_since(self.load_sent_at) >= self.settings.load_period
        {
            self.publish_load(now, load);
        }
        let members = self.alive.len() + 1;
        if members >= self.sized_for * 2 || members * 2 <= self.sized_for {
            self.sized_for = members;
            let _ = self.swim.set_config(self.settings.foca_config(members));
        }
    }

    /// Declares down a member that stayed suspect for twice the suspicion
    /// timeout. foca ends a suspicion with a timer, and drops its timers when it
    /// changes identity (a rejoin after being declared down): a member suspected
    /// just before would stay suspect, and probed, forever.
    fn expire_suspects(&mut self, now: Time) {
        let limit = self.settings.suspicion(self.alive.len() + 1) * 2;
        let mut seen = FxHashMap::default();
        let mut expired = Vec::new();
        for member in self.swim.iter_membership_state() {
            if member.state() != foca::State::Suspect {
                continue;
            }
            let since = match self.suspects.get(member.id()) {
                Some((incarnation, since)) if *incarnation == member.incarnation() => *since,
                _ => now,
            };
            if now.saturating_since(since) > limit {
                expired.push(foca::Member::new(
                    member.id().clone(),
                    member.incarnation(),
                    foca::State::Down,
                ));
            } else {
                seen.insert(member.id().clone(), (member.incarnation(), since));
            }
        }
        self.suspects = seen;
        if !expired.is_empty()
            && self
                .swim
                .apply_many(expired.into_iter(), true, &mut self.runtime)
                .is_err()
        {
            self.stats.malformed += 1;
        }
    }

    /// Asks one random live member for the live members this node lacks,
    /// sending a Bloom filter of the members it knows.
    fn sync(&mut self, now: Time) {
        let mut known = vec![self.settings.addr];
        let mut live = Vec::new();
        for member in self.swim.iter_membership_state() {
            known.push(member.id().addr);
            if member.state() != foca::State::Down {
                live.push(member.id().addr);
            }
        }
        if live.is_empty() {
            return;
        }
        let to = live[self.rng.next_u32() as usize % live.len()];
        let filter = Bloom::of(self.rng.next_u64(), &known);
        self.send(now, to, KIND_SYNC_ASK, &filter.encode());
    }

    /// Answers a sync request: the live members (this node included) that the
    /// asker's filter does not hold, as many as fit one datagram.
    fn answer_sync(&mut self, now: Time, from: SocketAddr, filter: &Bloom) {
        let this = foca::Member::alive(self.swim.identity().clone());
        let mut missing: Vec<foca::Member<Identity>> = std::iter::once(&this)
            .chain(self.swim.iter_membership_state())
            .filter(|member| member.state() != foca::State::Down)
            .filter(|member| !filter.contains(member.id().addr))
            .take(SYNC_MEMBERS)
            .cloned()
            .collect();
        if missing.is_empty() {
            return;
        }
        let body = loop {
            let Ok(body) = postcard::to_allocvec(&missing) else {
                return;
            };
            if body.len() + OVERHEAD <= DATAGRAM_BYTES_MAX || missing.len() <= 1 {
                break body;
            }
            missing.truncate(missing.len() * 3 / 4);
        };
        self.send(now, from, KIND_SYNC, &body);
    }

    /// Takes in the members of a sync that this node has never heard of.
    fn learn(&mut self, members: Vec<foca::Member<Identity>>) {
        let known: rustc_hash::FxHashSet<SocketAddr> = self
            .swim
            .iter_membership_state()
            .map(|member| member.id().addr)
            .collect();
        let own = self.settings.addr;
        let new = members.into_iter().filter(|member| {
            member.state() != foca::State::Down
                && member.id().addr != own
                && !known.contains(&member.id().addr)
        });
        if self.swim.apply_many(new, false, &mut self.runtime).is_err() {
            self.stats.malformed += 1;
        }
    }

    fn pull_due(&self, now: Time, node: u64) -> bool {
        self.pulled_at
            .get(&node)
            .is_none_or(|at| now.saturating_since(*at) >= self.settings.probe_period * 2)
    }

    fn pull(&mut self, now: Time, id: &Identity) {
        self.pulled_at.insert(id.node, now);
        self.stats.pulls += 1;
        self.send(now, id.addr, KIND_PULL, &[]);
    }

    /// The seeds, but this node.
    fn other_seeds(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        let own = self.settings.addr;
        self.settings
            .seeds
            .iter()
            .copied()
            .filter(move |seed| *seed != own)
    }

    fn announce_to_seeds(&mut self, now: Time) {
        let seeds: Vec<SocketAddr> = self.other_seeds().collect();
        if seeds.is_empty() {
            return;
        }
        for seed in seeds {
            self.announce_to(seed);
        }
        // Doubling back-off with ±25% jitter, so that nodes started together
        // do not announce in step.
        let jitter = 0.75 + (self.rng.next_u32() as f64 / u32::MAX as f64) * 0.5;
        self.next_seed_at = Some(now + self.seed_retry.mul_f64(jitter));
        self.seed_retry = (self.seed_retry * 2).min(self.settings.seed_retry_max);
    }

    /// While part of a cluster, announces to one seed that is not a live
    /// member: a cluster split in two (by a partition, or by restarts that
    /// found each other first) merges again through its seeds, even when each
    /// half has forgotten the other.
    fn announce_to_a_missing_seed(&mut self) {
        let missing: Vec<SocketAddr> = self
            .other_seeds()
            .filter(|seed| !self.alive.values().any(|id| id.addr == *seed))
            .collect();
        if missing.is_empty() {
            return;
        }
        let seed = missing[self.rng.next_u32() as usize % missing.len()];
        self.announce_to(seed);
    }

    /// Announces this node to the seed at `addr`. A seed's node id and life
    /// are unknown: SWIM answers to the address, and the answer carries the
    /// seed's real identity.
    fn announce_to(&mut self, addr: SocketAddr) {
        let placeholder = Identity {
            addr,
            node: 0,
            life: 0,
        };
        self.stats.seed_announces += 1;
        let _ = self.swim.announce(placeholder, &mut self.runtime);
    }

    fn send(&mut self, now: Time, to: SocketAddr, kind: u8, body: &[u8]) {
        let mut framed = Vec::with_capacity(body.len() + 1);
        framed.push(kind);
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

    /// Takes what foca produced (datagrams, timers, notifications) and brings
    /// the routable view up to date, queueing events.
    fn settle(&mut self, now: Time) {
        let mut touched: Vec<u64> = Vec::new();
        while let Some((to, data)) = self.runtime.to_send() {
            self.send(now, to.addr, KIND_SWIM, &data);
        }
        while let Some((after, timer)) = self.runtime.to_schedule() {
            self.timer_seq += 1;
            self.timers.insert((now + after, self.timer_seq), timer);
        }
        while let Some(notification) = self.runtime.to_notify() {
            match notification {
                OwnedNotification::MemberUp(id) => {
                    touched.push(id.node);
                    let newer = self
                        .alive
                        .get(&id.node)
                        .is_none_or(|known| known.life <= id.life);
                    if newer {
                        self.alive.insert(id.node, id);
                    }
                }
                OwnedNotification::MemberDown(id) => {
                    touched.push(id.node);
                    if self.alive.get(&id.node) == Some(&id) {
                        self.alive.remove(&id.node);
                    }
                }
                OwnedNotification::Rename(before, after) => {
                    touched.push(before.node);
                    touched.push(after.node);
                    if self.alive.get(&before.node) == Some(&before) {
                        self.alive.remove(&before.node);
                    }
                    if self.swim.iter_members().any(|m| *m.id() == after) {
                        self.alive.insert(after.node, after);
                    }
                }
                OwnedNotification::Active => {
                    self.active = true;
                    self.next_seed_at = None;
                    self.seed_retry = self.settings.seed_retry_min;
                }
                OwnedNotification::Idle => {
                    self.active = false;
                    if !self.left {
                        self.next_seed_at = Some(now);
                    }
                }
                OwnedNotification::Rejoin(id) => {
                    // Declared down by the others (a false suspicion, a
                    // partition): foca came back under a new life, and the
                    // metadata follows it. foca starts over disconnected (it
                    // says nothing of it), probing nobody until someone
                    // answers: the seeds are asked again, from the shortest
                    // back-off.
                    self.active = false;
                    self.seed_retry = self.settings.seed_retry_min;
                    self.next_seed_at = Some(now);
                    self.local.life = id.life;
                    self.local.version += 1;
                    self.store.borrow_mut().life = id.life;
                    self.broadcast_meta();
                }
                OwnedNotification::Defunct => {}
            }
        }
        touched.append(&mut self.store.borrow_mut().changed);
        touched.extend(
            self.held
                .iter()
                .filter(|(_, until)| **until <= now)
                .map(|(node, _)| *node),
        );
        touched.sort_unstable();
        touched.dedup();
        for node in touched {
            self.reconcile(now, node);
        }
    }

    /// Compares what is known of `node` with what was last reported.
    fn reconcile(&mut self, now: Time, node: u64) {
        let alive = self.alive.get(&node);
        let wanted = {
            let store = self.store.borrow();
            match (alive, store.metas.get(&node)) {
                (Some(id), Some(meta)) if meta.life == id.life && !meta.leaving => Some(Member {
                    addr: id.addr,
                    meta: meta.clone(),
                }),
                _ => None,
            }
        };
        if let Some(id) = alive.cloned()
            && wanted.is_none()
            && self
                .store
                .borrow()
                .metas
                .get(&node)
                .is_none_or(|m| m.life < id.life)
            && self.pull_due(now, node)
        {
            self.pull(now, &id);
        }
        match (self.routable.get(&node), wanted) {
            (None, None) => {}
            (None, Some(member)) => {
                self.stats.ups += 1;
                self.routable.insert(node, member.clone());
                self.events.push_back(Event::Up(member));
            }
            (Some(before), Some(after)) => {
                if self.held.remove(&node).is_some() {
                    self.stats.downs_averted += 1;
                }
                if *before != after {
                    self.stats.changes += 1;
                    let before = before.clone();
                    self.routable.insert(node, after.clone());
                    self.events.push_back(Event::Changed {
                        before: Box::new(before),
                        after: Box::new(after),
                    });
                }
            }
            (Some(before), None) => {
                // After a partition heals, the side that was cut off spreads
                // "down" for every member it lost; SWIM makes such a member
                // come back under a new life, and until its metadata for that
                // life arrives it is not routable. It is alive all the while:
                // keep it routable for a grace period rather than tear down
                // its routes and connections for nothing. So too a member
                // SWIM declared down on hearsay while it is talking to us. A
                // member that is leaving, or that has been silent (a crash:
                // silent for the whole suspicion), goes at once.
                let grace = self.down_grace();
                let renewed = self
                    .alive
                    .get(&node)
                    .is_some_and(|id| id.life > before.meta.life);
                let talking = self
                    .heard
                    .get(&before.addr)
                    .is_some_and(|at| now.saturating_since(*at) <= grace);
                let declared = !self.alive.contains_key(&node);
                let leaving = self
                    .store
                    .borrow()
                    .metas
                    .get(&node)
                    .is_some_and(|meta| meta.leaving);
                let hold = !leaving && !self.left && (renewed || (declared && talking));
                if hold {
                    let held = &mut self.stats.downs_held;
                    let until = *self.held.entry(node).or_insert_with(|| {
                        *held += 1;
                        now + grace
                    });
                    if until > now {
                        return;
                    }
                }
                self.held.remove(&node);
                self.stats.downs += 1;
                let member = self.routable.remove(&node).expect("present");
                self.events.push_back(Event::Down(member));
            }
        }
    }
}

/// How many times each update is piggybacked: memberlist's `4 × log10(n + 1)`,
/// but never fewer than 6, so that the join of a small cluster growing fast
/// (everyone starting at once) is not told to too few.
fn retransmissions(members: usize) -> std::num::NonZeroU8 {
    let scaled = (4.0 * ((members + 1) as f64).log10()).ceil() as u8;
    std::num::NonZeroU8::new(scaled.max(6)).expect("at least 6")
}

fn check_size(meta: &wire::Member) -> Result<(), MetaTooLarge> {
    let bytes = meta.encoded_len() + 24;
    if bytes > META_BYTES_MAX {
        return Err(MetaTooLarge(bytes));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A few memberships on a perfect network with 1 ms of latency.
    struct Cluster {
        members: Vec<Membership>,
        now: Time,
        in_flight: Vec<(Time, SocketAddr, SocketAddr, Vec<u8>)>,
        down: Vec<bool>,
        /// A node cut off from all the others (datagrams either way lost).
        isolated: Option<usize>,
        /// Every datagram node 0 took in.
        seen_by_0: Vec<Vec<u8>>,
    }

    fn addr(i: usize) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1 + i as u8], 7946))
    }

    /// The member behind [`addr`].
    fn index(addr: SocketAddr) -> usize {
        match addr {
            SocketAddr::V4(v4) => usize::from(v4.ip().octets()[3]) - 1,
            SocketAddr::V6(_) => usize::MAX,
        }
    }

    fn settings(i: usize) -> Settings {
        let mut settings = Settings::new(
            NodeId(100 + i as u64),
            1,
            addr(i),
            ClusterKey::new(b"sixteen byte key").unwrap(),
        );
        settings.seeds = vec![addr(0)];
        settings
    }

    fn meta(name: &str) -> wire::Member {
        wire::Member {
            app_endpoint: "tcp://127.0.0.1:1".into(),
            handles: vec![wire::Handled {
                name: name.into(),
                version: "1".into(),
            }],
            ..wire::Member::default()
        }
    }

    impl Cluster {
        fn new(n: usize) -> Cluster {
            let now = Time::from_micros(1_000_000_000);
            let mut members: Vec<Membership> = (0..n)
                .map(|i| Membership::new(settings(i), meta(&format!("svc.n{i}"))).unwrap())
                .collect();
            for member in &mut members {
                member.start(now);
            }
            let mut cluster = Cluster {
                members,
                now,
                in_flight: Vec::new(),
                down: vec![false; n],
                isolated: None,
                seen_by_0: Vec::new(),
            };
            cluster.collect();
            cluster
        }

        fn collect(&mut self) {
            for (i, member) in self.members.iter_mut().enumerate() {
                while let Some(datagram) = member.poll_transmit() {
                    let at = self.now + Duration::from_millis(1);
                    self.in_flight
                        .push((at, addr(i), datagram.to, datagram.bytes));
                }
            }
        }

        fn run_for(&mut self, span: Duration) {
            let end = self.now + span;
            for _ in 0..10_000_000 {
                let next_timer = (0..self.members.len())
                    .filter(|i| !self.down[*i])
                    .filter_map(|i| self.members[i].poll_timeout())
                    .min();
                let next_datagram = self.in_flight.iter().map(|d| d.0).min();
                let next = [next_timer, next_datagram].into_iter().flatten().min();
                let Some(next) = next.filter(|next| *next <= end) else {
                    self.now = end;
                    return;
                };
                self.now = next;
                let (due, later): (Vec<_>, Vec<_>) =
                    self.in_flight.drain(..).partition(|d| d.0 <= next);
                self.in_flight = later;
                for (_, from, to, bytes) in due {
                    let (i, from_index) = (index(to), index(from));
                    let cut = self.isolated.is_some_and(|x| (x == i) != (x == from_index));
                    if i < self.members.len() && !self.down[i] && !cut {
                        self.members[i].handle_datagram(next, from, &bytes);
                        if i == 0 {
                            self.seen_by_0.push(bytes);
                        }
                    }
                }
                for i in 0..self.members.len() {
                    if !self.down[i] && self.members[i].poll_timeout().is_some_and(|t| t <= next) {
                        self.members[i].handle_timeout(next);
                    }
                }
                self.collect();
            }
            panic!("the cluster never reached the end of its run");
        }

        fn routable(&self, i: usize) -> Vec<u64> {
            self.members[i].members().map(|m| m.meta.node).collect()
        }
    }

    #[test]
    fn nodes_join_through_one_seed_and_learn_each_others_names() {
        let mut cluster = Cluster::new(5);
        cluster.run_for(Duration::from_secs(5));
        for i in 0..5 {
            let expected: Vec<u64> = (0..5).filter(|j| *j != i).map(|j| 100 + j as u64).collect();
            assert_eq!(cluster.routable(i), expected, "node {i}");
            let n3 = cluster.members[i].member(NodeId(103));
            if i != 3 {
                assert_eq!(n3.unwrap().meta.handles[0].name, "svc.n3");
            }
        }
    }

    #[test]
    fn a_crashed_node_goes_down_and_a_changed_name_spreads() {
        let mut cluster = Cluster::new(4);
        cluster.run_for(Duration::from_secs(5));
        let now = cluster.now;
        cluster.members[1]
            .update_meta(now, |meta| meta.subscribes.push("feed.posted".into()))
            .unwrap();
        cluster.collect();
        cluster.run_for(Duration::from_secs(3));
        for i in [0, 2, 3] {
            let member = cluster.members[i].member(NodeId(101)).unwrap();
            assert_eq!(member.meta.subscribes, ["feed.posted"], "node {i}");
        }
        cluster.down[3] = true;
        cluster.run_for(Duration::from_secs(10));
        for i in 0..3 {
            assert!(cluster.members[i].member(NodeId(103)).is_none(), "node {i}");
        }
    }

    #[test]
    fn without_a_live_seed_nodes_retry_with_back_off_and_join_when_it_appears() {
        let mut cluster = Cluster::new(3);
        // The seed (node 0) is not there for the first 10 s.
        cluster.down[0] = true;
        cluster.run_for(Duration::from_secs(10));
        let tries = cluster.members[1].stats().seed_announces;
        assert!(
            (4..=6).contains(&tries),
            "0.5 s doubling: {tries} tries in 10 s"
        );
        assert!(cluster.routable(1).is_empty());
        cluster.down[0] = false;
        // The next try comes within the back-off (8 s ± 25% by now).
        cluster.run_for(Duration::from_secs(12));
        for i in 0..3 {
            assert_eq!(cluster.routable(i).len(), 2, "node {i}");
        }
    }

    #[test]
    fn a_node_that_leaves_is_dropped_at_once() {
        let mut cluster = Cluster::new(3);
        cluster.run_for(Duration::from_secs(5));
        let now = cluster.now;
        cluster.members[2].leave(now);
        cluster.collect();
        cluster.run_for(Duration::from_millis(300));
        for i in 0..2 {
            assert!(cluster.members[i].member(NodeId(102)).is_none(), "node {i}");
        }
    }

    #[test]
    fn after_a_partition_heals_only_the_cut_off_node_went_down_and_came_back() {
        let mut cluster = Cluster::new(3);
        cluster.run_for(Duration::from_secs(5));
        let downs = |cluster: &Cluster, i: usize| cluster.members[i].stats().downs;
        assert_eq!((downs(&cluster, 0), downs(&cluster, 1)), (0, 0));
        cluster.isolated = Some(2);
        cluster.run_for(Duration::from_secs(6));
        for i in 0..2 {
            assert_eq!(cluster.routable(i), [100 + (1 - i) as u64], "node {i}");
        }
        assert!(cluster.routable(2).is_empty());
        // The cut-off node's verdicts on the others (both down, in its view)
        // reach them once healed; they talk to each other all along, so
        // neither may see the other go down: each comes back under a new
        // life before that is acted on.
        cluster.isolated = None;
        cluster.run_for(Duration::from_secs(8));
        for i in 0..3 {
            assert_eq!(cluster.routable(i).len(), 2, "node {i}");
        }
        assert_eq!(
            (downs(&cluster, 0), downs(&cluster, 1)),
            (1, 1),
            "nodes 0 and 1 saw only node 2 go down"
        );
    }

    /// Everything about node 0's view that a datagram could change.
    fn snapshot(member: &Membership) -> (Vec<Member>, usize, bool, u64, u64, u64) {
        let stats = member.stats();
        (
            member.members().cloned().collect(),
            member.alive(),
            member.is_active(),
            stats.ups,
            stats.downs,
            stats.changes,
        )
    }

    #[test]
    fn a_million_bad_datagrams_change_nothing_and_panic_nowhere() {
        use rand::{Rng, SeedableRng};
        let mut cluster = Cluster::new(4);
        cluster.run_for(Duration::from_secs(5));
        let captured = std::mem::take(&mut cluster.seen_by_0);
        assert!(captured.len() > 20, "real datagrams to mutate");
        let now = cluster.now;
        let node = &mut cluster.members[0];
        while node.poll_event().is_some() {}
        while node.poll_transmit().is_some() {}
        let before = snapshot(node);
        let refused_before = node.refused_total();
        let key = ClusterKey::new(b"sixteen byte key").unwrap();
        let wrong = ClusterKey::new(b"another cluster key").unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let from = addr(1);
        let rounds = 1_000_000;
        for round in 0..rounds {
            let original = &captured[rng.random_range(0..captured.len())];
            let body = &original[20..original.len() - 16];
            let datagram = match round % 6 {
                // Bit flips anywhere.
                0 => {
                    let mut bytes = original.clone();
                    for _ in 0..rng.random_range(1..=8) {
                        let bit = rng.random_range(0..bytes.len() * 8);
                        bytes[bit / 8] ^= 1 << (bit % 8);
                    }
                    bytes
                }
                // Truncated.
                1 => original[..rng.random_range(0..original.len())].to_vec(),
                // Sealed under another key.
                2 => seal::seal(&wrong, now.as_micros(), rng.random(), body),
                // The right key, sent too long ago or too far ahead.
                3 => {
                    let skew = rng.random_range(31_000_000..900_000_000u64);
                    let at = if rng.random_bool(0.5) {
                        now.as_micros() - skew
                    } else {
                        now.as_micros() + skew
                    };
                    seal::seal(&key, at, rng.random(), body)
                }
                // Replayed as it was.
                4 => original.clone(),
                // Garbage.
                _ => (0..rng.random_range(0..1500))
                    .map(|_| rng.random())
                    .collect(),
            };
            node.handle_datagram(now, from, &datagram);
            assert!(node.poll_event().is_none(), "round {round}: an event");
            assert!(node.poll_transmit().is_none(), "round {round}: an answer");
        }
        assert_eq!(snapshot(node), before, "no membership change");
        assert_eq!(
            node.refused_total() - refused_before,
            rounds,
            "every one refused and counted"
        );
    }

    #[test]
    fn metadata_too_large_for_a_datagram_is_refused() {
        let mut big = meta("svc.a");
        big.handles = (0..100)
            .map(|i| wire::Handled {
                name: format!("service.with.a.long.name.{i}"),
                version: "1.0.0".into(),
            })
            .collect();
        let error = Membership::new(settings(0), big).unwrap_err();
        assert!(error.to_string().contains("at most 900"), "{error}");
    }
}
