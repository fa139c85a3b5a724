//! The simulated network: frames between nodes with per-link latency, jitter,
//! loss, duplication, reordering, cut links and bounded per-link queues. Every
//! frame it accepts ends in exactly one of its counters.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use bytes::Bytes;
use exchange_runtime::{NodeId, Time, Transmit, TransmitError};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::faults::{Fault, Faults};

/// How links behave during a phase.
#[derive(Clone, Debug, PartialEq)]
pub struct NetParams {
    /// Each link's base latency is drawn once, uniformly in this range.
    pub latency: (Duration, Duration),
    /// Extra latency per frame, uniform in `0..=jitter`.
    pub jitter: Duration,
    /// Probability that a frame is lost.
    pub loss: f64,
    /// Probability that a frame is delivered twice.
    pub duplicate: f64,
    /// Probability that a frame is held back by up to `reorder_max`.
    pub reorder: f64,
    /// The longest a frame is held back.
    pub reorder_max: Duration,
    /// Frames queued on one link (sent, not yet delivered) at most; past it
    /// sends are refused as `WouldBlock`, like a ZeroMQ pipe at its high-water mark.
    pub link_queue_max: usize,
}

impl NetParams {
    /// A healthy network: latency and jitter only, ZeroMQ's default-sized queues.
    pub fn calm() -> NetParams {
        NetParams {
            latency: (Duration::from_micros(50), Duration::from_millis(2)),
            jitter: Duration::from_micros(200),
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_max: Duration::ZERO,
            link_queue_max: 10_000,
        }
    }

    /// The safety phase's network: each enabled fault at a rate drawn from `rng`.
    pub fn faulty(faults: Faults, rng: &mut ChaCha8Rng) -> NetParams {
        let mut params = NetParams::calm();
        if faults.has(Fault::Loss) {
            params.loss = rng.random_range(0.001..0.05);
        }
        if faults.has(Fault::Duplicate) {
            params.duplicate = rng.random_range(0.001..0.02);
        }
        if faults.has(Fault::Reorder) {
            params.reorder = rng.random_range(0.01..0.1);
            params.reorder_max = Duration::from_millis(rng.random_range(5..100));
        }
        if faults.has(Fault::Overflow) {
            params.link_queue_max = rng.random_range(8..256);
        }
        params
    }
}

/// Where frames went. Every frame accepted (`sent`, plus the `duplicated`
/// copies) ends as delivered, lost, cut, sent to a node that was down by then,
/// or is still in flight.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetCounts {
    /// Frames accepted from senders.
    pub sent: u64,
    /// Extra copies made by the duplication fault.
    pub duplicated: u64,
    /// Frames handed to their node.
    pub delivered: u64,
    /// Frames lost by the loss fault.
    pub lost: u64,
    /// Frames lost on a cut link.
    pub cut: u64,
    /// Frames whose node was down when they arrived.
    pub to_down: u64,
    /// Sends refused because the link's queue was full (the sender bounced or
    /// counted each).
    pub refused_full: u64,
    /// Sends refused because the peer was down (the sender bounced or counted each).
    pub refused_down: u64,
}

impl NetCounts {
    /// Frames accepted that have not ended in a counter: must equal what is in flight.
    pub fn unaccounted(&self) -> i128 {
        i128::from(self.sent) + i128::from(self.duplicated)
            - i128::from(self.delivered)
            - i128::from(self.lost)
            - i128::from(self.cut)
            - i128::from(self.to_down)
    }
}

/// A frame on the wire.
#[derive(Debug)]
pub(crate) struct Frame {
    pub(crate) at: Time,
    pub(crate) seq: u64,
    pub(crate) from: NodeId,
    /// The sender's incarnation when it sent the frame.
    pub(crate) from_life: u64,
    pub(crate) to: NodeId,
    pub(crate) header: Bytes,
    pub(crate) payload: Bytes,
    /// One of two copies made by the duplication fault (either may arrive first).
    pub(crate) copy: bool,
}

impl PartialEq for Frame {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Frame {}
impl PartialOrd for Frame {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Frame {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// A link's own latency, fixed for the run: drawn from `range` by a hash of
/// `seed` and the link's ends (no table: any number of nodes).
pub(crate) fn link_latency(seed: u64, range: (Duration, Duration), a: u64, b: u64) -> Duration {
    let (low, high) = range;
    let span = high.saturating_sub(low).as_micros() as u64 + 1;
    let draw = crate::mix(seed ^ crate::mix(a ^ b.rotate_left(32)));
    low + Duration::from_micros(draw % span)
}

/// `latency` plus up to `jitter`, drawn uniformly.
pub(crate) fn jittered(rng: &mut ChaCha8Rng, latency: Duration, jitter: Duration) -> Duration {
    let jitter = jitter.as_micros() as u64;
    if jitter == 0 {
        return latency;
    }
    latency + Duration::from_micros(rng.random_range(0..=jitter))
}

/// Links between nodes, named by their ends in either order.
fn link(a: NodeId, b: NodeId) -> (u64, u64) {
    (a.0.min(b.0), a.0.max(b.0))
}

/// A discovery datagram on its way: (arrival, sequence, from, to, bytes).
pub(crate) type Datagram = (Time, u64, NodeId, NodeId, Vec<u8>);

/// Where discovery datagrams went (UDP: no queue refusals, no accounting
/// promise beyond these counters).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DatagramCounts {
    /// Datagrams sent.
    pub sent: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Delivered to a running node.
    pub delivered: u64,
    /// Lost to the loss fault.
    pub lost: u64,
    /// Lost on a cut link.
    pub cut: u64,
    /// Arrived at a crashed node.
    pub to_down: u64,
}

pub(crate) struct Network {
    /// Derives each link's base latency (no table: any number of nodes).
    latency_seed: u64,
    pub(crate) params: NetParams,
    in_flight: BinaryHeap<Reverse<Frame>>,
    datagrams: BinaryHeap<Reverse<Datagram>>,
    pub(crate) datagram_counts: DatagramCounts,
    queued: FxHashMap<(u64, u64), usize>,
    cut: FxHashSet<(u64, u64)>,
    seq: u64,
    pub(crate) counts: NetCounts,
}

impl Network {
    pub(crate) fn new(latency_seed: u64, params: NetParams) -> Network {
        Network {
            latency_seed,
            params,
            in_flight: BinaryHeap::new(),
            datagrams: BinaryHeap::new(),
            datagram_counts: DatagramCounts::default(),
            queued: FxHashMap::default(),
            cut: FxHashSet::default(),
            seq: 0,
            counts: NetCounts::default(),
        }
    }

    /// The latency of one frame or datagram from `from` to `to`: the link's
    /// own (fixed for the run, different per direction), plus jitter.
    fn latency(&self, rng: &mut ChaCha8Rng, from: NodeId, to: NodeId) -> Duration {
        let link = link_latency(self.latency_seed, self.params.latency, from.0, to.0);
        jittered(rng, link, self.params.jitter)
    }

    /// Takes a frame from `from` (in its `from_life`) for `to`, whose node is up
    /// or not; refuses it back as ZeroMQ would.
    pub(crate) fn send(
        &mut self,
        rng: &mut ChaCha8Rng,
        now: Time,
        from: (NodeId, u64),
        transmit: Transmit,
        to_up: bool,
    ) -> Result<(), (Transmit, TransmitError)> {
        let (from, from_life) = from;
        let to = transmit.to;
        if !to_up {
            self.counts.refused_down += 1;
            return Err((transmit, TransmitError::Unreachable));
        }
        let queued = self.queued.get(&(from.0, to.0)).copied().unwrap_or(0);
        if queued >= self.params.link_queue_max {
            self.counts.refused_full += 1;
            return Err((transmit, TransmitError::WouldBlock));
        }
        self.counts.sent += 1;
        if self.cut.contains(&link(from, to)) {
            self.counts.cut += 1;
            return Ok(());
        }
        if self.params.loss > 0.0 && rng.random_bool(self.params.loss) {
            self.counts.lost += 1;
            return Ok(());
        }
        let copies = if self.params.duplicate > 0.0 && rng.random_bool(self.params.duplicate) {
            self.counts.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut latency = self.latency(rng, from, to);
            if self.params.reorder > 0.0 && rng.random_bool(self.params.reorder) {
                let max = self.params.reorder_max.as_micros() as u64;
                latency += Duration::from_micros(rng.random_range(0..=max));
            }
            self.seq += 1;
            *self.queued.entry((from.0, to.0)).or_insert(0) += 1;
            self.in_flight.push(Reverse(Frame {
                at: now + latency.max(Duration::from_micros(1)),
                seq: self.seq,
                from,
                from_life,
                to,
                header: transmit.header.clone(),
                payload: transmit.payload.clone(),
                copy: copies > 1,
            }));
        }
        Ok(())
    }

    /// Sends a discovery datagram: the links' latency, loss and cuts apply as
    /// to frames; nothing refuses it (UDP).
    pub(crate) fn send_datagram(
        &mut self,
        rng: &mut ChaCha8Rng,
        now: Time,
        from: NodeId,
        to: NodeId,
        bytes: Vec<u8>,
    ) {
        let counts = &mut self.datagram_counts;
        counts.sent += 1;
        counts.bytes += bytes.len() as u64;
        if self.cut.contains(&link(from, to)) {
            counts.cut += 1;
            return;
        }
        if self.params.loss > 0.0 && rng.random_bool(self.params.loss) {
            counts.lost += 1;
            return;
        }
        let latency = self.latency(rng, from, to);
        self.seq += 1;
        let at = now + latency.max(Duration::from_micros(1));
        self.datagrams
            .push(Reverse((at, self.seq, from, to, bytes)));
    }

    /// The next datagram due by `now`.
    pub(crate) fn pop_due_datagram(&mut self, now: Time) -> Option<Datagram> {
        let Reverse(next) = self.datagrams.peek()?;
        if next.0 > now {
            return None;
        }
        self.datagrams.pop().map(|Reverse(datagram)| datagram)
    }

    /// When the next frame or datagram arrives.
    pub(crate) fn next_at(&self) -> Option<Time> {
        let frame = self.in_flight.peek().map(|Reverse(frame)| frame.at);
        let datagram = self.datagrams.peek().map(|Reverse(d)| d.0);
        match (frame, datagram) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next frame due by `now`, taken off its link's queue.
    pub(crate) fn pop_due(&mut self, now: Time) -> Option<Frame> {
        if self.in_flight.peek().map(|Reverse(frame)| frame.at)? > now {
            return None;
        }
        let Reverse(frame) = self.in_flight.pop()?;
        if let Some(queued) = self.queued.get_mut(&(frame.from.0, frame.to.0)) {
            *queued -= 1;
        }
        Some(frame)
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    pub(crate) fn cut_link(&mut self, a: NodeId, b: NodeId) {
        if a != b {
            self.cut.insert(link(a, b));
        }
    }

    pub(crate) fn heal_link(&mut self, a: NodeId, b: NodeId) {
        self.cut.remove(&link(a, b));
    }

    pub(crate) fn heal_all(&mut self) {
        self.cut.clear();
    }
}
