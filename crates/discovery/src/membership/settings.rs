//! How a membership behaves, and the in-memory addresses drivers give nodes.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use exchange_runtime::NodeId;
use foca::Config;

use super::{DATAGRAM_BYTES_MAX, OVERHEAD, retransmissions};
use crate::seal::ClusterKey;

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

    pub(super) fn foca_config(&self, members: usize) -> Config {
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
