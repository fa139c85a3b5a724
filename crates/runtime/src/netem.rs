//! The network emulator: frames and datagrams between nodes, in memory, with
//! per-link latency, jitter, loss, duplication, reordering, bounded per-link
//! queues and cut links (partitions), every random choice from one seed.
//! Sans-IO like the node: it takes `now` and never reads a clock, so
//! `exchange dev` drives it with the real clock and `exchange sim` with
//! virtual time. It carries; it knows nothing of nodes (the driver says
//! whether the receiving node is up, and what became of what arrived).
//!
//! Every frame it accepts ends in exactly one of its counters
//! ([`FrameCounts::unaccounted`] is what is in flight). Datagrams are UDP:
//! nothing refuses them, and they are counted only.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::Duration;

use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rustc_hash::FxHashMap;

use crate::ids::NodeId;
use crate::splitmix;
use crate::time::Time;
use crate::transport::{Transmit, TransmitError};

/// How links behave (all of them; a phase of a simulation may change it).
#[derive(Clone, Debug, PartialEq)]
pub struct LinkParams {
    /// Each link's base latency, drawn once per link (and direction) in this
    /// range; equal ends give every link the same.
    pub latency: (Duration, Duration),
    /// Extra latency per frame or datagram, uniform in `0..=jitter`.
    pub jitter: Duration,
    /// Probability that a frame or datagram is lost.
    pub loss: f64,
    /// Probability that a frame is delivered twice.
    pub duplicate: f64,
    /// Probability that a frame is held back by up to `reorder_max`.
    pub reorder: f64,
    /// The longest a frame is held back.
    pub reorder_max: Duration,
    /// Frames queued on one link, one way (sent, not yet delivered), at most;
    /// past it sends are refused as `WouldBlock`, like a ZeroMQ pipe at its
    /// high-water mark.
    pub link_queue_max: usize,
}

impl LinkParams {
    /// A healthy LAN: 50 µs–2 ms per link, 200 µs jitter, ZeroMQ's
    /// default-sized queues, no faults.
    pub fn calm() -> LinkParams {
        LinkParams {
            latency: (Duration::from_micros(50), Duration::from_millis(2)),
            jitter: Duration::from_micros(200),
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_max: Duration::ZERO,
            link_queue_max: 10_000,
        }
    }

    /// Every link alike: `latency` plus up to `jitter`, frames lost with
    /// probability `loss`; queues of 2^20 frames a link.
    pub fn uniform(latency: Duration, jitter: Duration, loss: f64) -> LinkParams {
        LinkParams {
            latency: (latency, latency),
            jitter,
            loss: loss.clamp(0.0, 1.0),
            duplicate: 0.0,
            reorder: 0.0,
            reorder_max: Duration::ZERO,
            link_queue_max: 1 << 20,
        }
    }
}

/// Where frames went. Every frame accepted (`sent`, plus the `duplicated`
/// copies) ends as delivered, lost, cut, arrived at a node that was down by
/// then, dropped at the end, or is still in flight.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FrameCounts {
    /// Frames accepted from senders.
    pub sent: u64,
    /// Extra copies made by the duplication fault.
    pub duplicated: u64,
    /// Frames handed to their node.
    pub delivered: u64,
    /// Frames lost by the loss model.
    pub lost: u64,
    /// Frames lost on a cut link.
    pub cut: u64,
    /// Frames whose node was down when they arrived.
    pub to_down: u64,
    /// Frames still in flight when the emulator was cleared ([`Netem::clear`]).
    pub cleared: u64,
    /// Sends refused because the link's queue was full (the sender bounced or
    /// counted each).
    pub refused_full: u64,
    /// Sends refused because the peer was down or unknown (the sender bounced
    /// or counted each).
    pub refused_down: u64,
}

impl FrameCounts {
    /// Frames accepted that have not ended in a counter: what is in flight.
    pub fn unaccounted(&self) -> i128 {
        i128::from(self.sent) + i128::from(self.duplicated)
            - i128::from(self.delivered)
            - i128::from(self.lost)
            - i128::from(self.cut)
            - i128::from(self.to_down)
            - i128::from(self.cleared)
    }
}

/// Where datagrams went.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DatagramCounts {
    /// Datagrams sent.
    pub sent: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Delivered to a running node.
    pub delivered: u64,
    /// Lost by the loss model.
    pub lost: u64,
    /// Lost on a cut link.
    pub cut: u64,
    /// Arrived at a node that was down (or not there).
    pub to_down: u64,
}

impl DatagramCounts {
    /// Datagrams that never reached a running node, for any reason.
    pub fn lost_total(&self) -> u64 {
        self.lost + self.cut + self.to_down
    }
}

/// A frame on the wire.
#[derive(Debug)]
pub struct Frame {
    /// When it arrives.
    pub at: Time,
    /// The sender.
    pub from: NodeId,
    /// The sender's life when it sent the frame (as the driver said).
    pub from_life: u64,
    /// The receiver.
    pub to: NodeId,
    /// The encoded header.
    pub header: Bytes,
    /// The payload.
    pub payload: Bytes,
    /// One of two copies made by the duplication fault (either may arrive first).
    pub copy: bool,
}

/// A datagram on the wire.
#[derive(Debug)]
pub struct Datagram {
    /// When it arrives.
    pub at: Time,
    /// The sender.
    pub from: NodeId,
    /// The receiver.
    pub to: NodeId,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// Orders what is on the wire by arrival, then by when it was sent.
#[derive(Debug)]
struct ByArrival<T>(Time, u64, T);

impl<T> PartialEq for ByArrival<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.0, self.1) == (other.0, other.1)
    }
}
impl<T> Eq for ByArrival<T> {}
impl<T> PartialOrd for ByArrival<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for ByArrival<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.0, self.1).cmp(&(other.0, other.1))
    }
}

/// A link's own latency, fixed for the run: drawn from `range` by a hash of
/// `seed` and the link's ends (no table: any number of nodes).
fn link_latency(seed: u64, range: (Duration, Duration), from: u64, to: u64) -> Duration {
    let (low, high) = range;
    let span = high.saturating_sub(low).as_micros() as u64 + 1;
    let draw = splitmix(seed ^ splitmix(from ^ to.rotate_left(32)));
    low + Duration::from_micros(draw % span)
}

/// `latency` plus up to `jitter`, drawn uniformly.
fn jittered(rng: &mut ChaCha8Rng, latency: Duration, jitter: Duration) -> Duration {
    let jitter = jitter.as_micros() as u64;
    if jitter == 0 {
        return latency;
    }
    latency + Duration::from_micros(rng.random_range(0..=jitter))
}

/// A link, named by its ends in either order.
fn link(a: NodeId, b: NodeId) -> (NodeId, NodeId) {
    (a.min(b), a.max(b))
}

/// The emulated network. See the [module docs](self).
#[derive(Debug)]
pub struct Netem {
    params: LinkParams,
    rng: ChaCha8Rng,
    /// Derives each link's base latency.
    latency_seed: u64,
    frames: BinaryHeap<Reverse<ByArrival<Frame>>>,
    datagrams: BinaryHeap<Reverse<ByArrival<Datagram>>>,
    /// Frames on each link, one way (from, to).
    queued: FxHashMap<(NodeId, NodeId), usize>,
    /// Cut links, with how many cuts hold each.
    cuts: BTreeMap<(NodeId, NodeId), u32>,
    seq: u64,
    frame_counts: FrameCounts,
    datagram_counts: DatagramCounts,
}

impl Netem {
    /// An empty network whose every random choice comes from `seed`.
    pub fn new(seed: u64, params: LinkParams) -> Netem {
        Netem {
            params,
            rng: ChaCha8Rng::seed_from_u64(splitmix(seed)),
            latency_seed: splitmix(seed ^ 0x006c_6174_656e_6379),
            frames: BinaryHeap::new(),
            datagrams: BinaryHeap::new(),
            queued: FxHashMap::default(),
            cuts: BTreeMap::new(),
            seq: 0,
            frame_counts: FrameCounts::default(),
            datagram_counts: DatagramCounts::default(),
        }
    }

    /// How links behave from now on (what is in flight keeps its arrival).
    pub fn set_params(&mut self, params: LinkParams) {
        self.params = params;
    }

    /// How links behave.
    pub fn params(&self) -> &LinkParams {
        &self.params
    }

    /// Where frames went.
    pub fn frame_counts(&self) -> &FrameCounts {
        &self.frame_counts
    }

    /// Where datagrams went.
    pub fn datagram_counts(&self) -> &DatagramCounts {
        &self.datagram_counts
    }

    /// Frames in flight now.
    pub fn in_flight(&self) -> usize {
        self.frames.len()
    }

    /// When the next frame or datagram arrives.
    pub fn next_at(&self) -> Option<Time> {
        let frame = self.frames.peek().map(|Reverse(f)| f.0);
        let datagram = self.datagrams.peek().map(|Reverse(d)| d.0);
        [frame, datagram].into_iter().flatten().min()
    }

    /// Takes a frame from `from` (in its life `from_life`) for `transmit.to`,
    /// whose node is up or not (as the driver knows); refuses it back as
    /// ZeroMQ would: `Unreachable` to a node that is down or unknown,
    /// `WouldBlock` past the link's queue limit.
    pub fn send(
        &mut self,
        now: Time,
        from: NodeId,
        from_life: u64,
        transmit: Transmit,
        to_up: bool,
    ) -> Result<(), (Transmit, TransmitError)> {
        let to = transmit.to;
        if !to_up {
            self.frame_counts.refused_down += 1;
            return Err((transmit, TransmitError::Unreachable));
        }
        let queued = self.queued.get(&(from, to)).copied().unwrap_or(0);
        if queued >= self.params.link_queue_max {
            self.frame_counts.refused_full += 1;
            return Err((transmit, TransmitError::WouldBlock));
        }
        self.frame_counts.sent += 1;
        if self.is_cut(from, to) {
            self.frame_counts.cut += 1;
            return Ok(());
        }
        if self.draw(self.params.loss) {
            self.frame_counts.lost += 1;
            return Ok(());
        }
        let copies = if self.draw(self.params.duplicate) {
            self.frame_counts.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut latency = self.latency(from, to);
            if self.draw(self.params.reorder) {
                let max = self.params.reorder_max.as_micros() as u64;
                latency += Duration::from_micros(self.rng.random_range(0..=max));
            }
            *self.queued.entry((from, to)).or_insert(0) += 1;
            let at = self.arrival(now, latency);
            let frame = Frame {
                at,
                from,
                from_life,
                to,
                header: transmit.header.clone(),
                payload: transmit.payload.clone(),
                copy: copies > 1,
            };
            self.frames.push(Reverse(ByArrival(at, self.seq, frame)));
        }
        Ok(())
    }

    /// Takes a datagram: latency, loss and cuts apply as to frames; nothing
    /// refuses it (UDP).
    pub fn send_datagram(&mut self, now: Time, from: NodeId, to: NodeId, bytes: Vec<u8>) {
        self.datagram_counts.sent += 1;
        self.datagram_counts.bytes += bytes.len() as u64;
        if self.is_cut(from, to) {
            self.datagram_counts.cut += 1;
            return;
        }
        if self.draw(self.params.loss) {
            self.datagram_counts.lost += 1;
            return;
        }
        let latency = self.latency(from, to);
        let at = self.arrival(now, latency);
        let datagram = Datagram {
            at,
            from,
            to,
            bytes,
        };
        self.datagrams
            .push(Reverse(ByArrival(at, self.seq, datagram)));
    }

    /// The next frame due by `now`, taken off its link. Say what became of it
    /// with [`Netem::arrived`].
    pub fn pop_frame(&mut self, now: Time) -> Option<Frame> {
        if self.frames.peek()?.0.0 > now {
            return None;
        }
        let Reverse(ByArrival(_, _, frame)) = self.frames.pop()?;
        if let Some(queued) = self.queued.get_mut(&(frame.from, frame.to)) {
            *queued -= 1;
        }
        Some(frame)
    }

    /// The next datagram due by `now`. Say what became of it with
    /// [`Netem::datagram_arrived`].
    pub fn pop_datagram(&mut self, now: Time) -> Option<Datagram> {
        if self.datagrams.peek()?.0.0 > now {
            return None;
        }
        self.datagrams.pop().map(|Reverse(ByArrival(_, _, d))| d)
    }

    /// A frame taken by [`Netem::pop_frame`] was delivered to its node, or
    /// its node was down.
    pub fn arrived(&mut self, delivered: bool) {
        if delivered {
            self.frame_counts.delivered += 1;
        } else {
            self.frame_counts.to_down += 1;
        }
    }

    /// A datagram taken by [`Netem::pop_datagram`] was delivered to its node's
    /// membership, or there was none.
    pub fn datagram_arrived(&mut self, delivered: bool) {
        if delivered {
            self.datagram_counts.delivered += 1;
        } else {
            self.datagram_counts.to_down += 1;
        }
    }

    /// Cuts the link between `a` and `b`, both ways: what is sent over it from
    /// now on is lost (counted as `cut`), as in a network partition; what is
    /// already in flight still arrives. Cuts nest: a link cut twice is healed
    /// by the second [`Netem::heal`].
    pub fn cut(&mut self, a: NodeId, b: NodeId) {
        if a != b {
            *self.cuts.entry(link(a, b)).or_default() += 1;
        }
    }

    /// Undoes one [`Netem::cut`] of the link between `a` and `b`.
    pub fn heal(&mut self, a: NodeId, b: NodeId) {
        let link = link(a, b);
        if let Some(count) = self.cuts.get_mut(&link) {
            *count -= 1;
            if *count == 0 {
                self.cuts.remove(&link);
            }
        }
    }

    /// Heals every link.
    pub fn heal_all(&mut self) {
        self.cuts.clear();
    }

    /// Whether the link between `a` and `b` is cut.
    fn is_cut(&self, a: NodeId, b: NodeId) -> bool {
        self.cuts.contains_key(&link(a, b))
    }

    /// Drops everything in flight (counted as `cleared`); returns how many
    /// frames that was.
    pub fn clear(&mut self) -> usize {
        let frames = self.frames.len();
        self.frame_counts.cleared += frames as u64;
        self.frames.clear();
        self.queued.clear();
        self.datagram_counts.lost += self.datagrams.len() as u64;
        self.datagrams.clear();
        frames
    }

    fn draw(&mut self, probability: f64) -> bool {
        probability > 0.0 && self.rng.random_bool(probability.clamp(0.0, 1.0))
    }

    /// The latency of one frame or datagram from `from` to `to`: the link's
    /// own (fixed for the run, different per direction), plus jitter.
    fn latency(&mut self, from: NodeId, to: NodeId) -> Duration {
        let link = link_latency(self.latency_seed, self.params.latency, from.0, to.0);
        jittered(&mut self.rng, link, self.params.jitter)
    }

    /// When something sent at `now` with `latency` arrives; takes a sequence
    /// number (what arrives at the same time arrives in the order sent).
    fn arrival(&mut self, now: Time, latency: Duration) -> Time {
        self.seq += 1;
        now + latency
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transmit(to: u64) -> Transmit {
        Transmit {
            to: NodeId(to),
            header: Bytes::from_static(b"h"),
            payload: Bytes::new(),
        }
    }

    #[test]
    fn frames_arrive_in_order_and_every_one_is_counted() {
        let now = Time::from_micros(1_000);
        let mut params = LinkParams::uniform(Duration::from_millis(1), Duration::ZERO, 0.0);
        params.link_queue_max = 2;
        let mut net = Netem::new(7, params);
        let (a, b) = (NodeId(1), NodeId(2));
        assert!(net.send(now, a, 0, transmit(2), true).is_ok());
        assert!(net.send(now, a, 0, transmit(2), true).is_ok());
        let full = net.send(now, a, 0, transmit(2), true);
        assert!(matches!(full, Err((_, TransmitError::WouldBlock))));
        let down = net.send(now, a, 0, transmit(3), false);
        assert!(matches!(down, Err((_, TransmitError::Unreachable))));
        net.cut(a, b);
        net.cut(b, a);
        net.heal(a, b);
        assert!(net.is_cut(a, b), "cuts nest");
        assert!(net.send(now, b, 0, transmit(1), true).is_ok(), "cut: lost");
        assert!(net.pop_frame(now).is_none(), "not due yet");
        let later = now + Duration::from_millis(1);
        assert_eq!(net.pop_frame(later).map(|f| f.to), Some(b));
        net.arrived(true);
        assert!(net.pop_frame(later).is_some());
        net.arrived(false);
        let counts = net.frame_counts();
        assert_eq!(
            (counts.sent, counts.delivered, counts.to_down, counts.cut),
            (3, 1, 1, 1)
        );
        assert_eq!((counts.refused_full, counts.refused_down), (1, 1));
        assert_eq!(counts.unaccounted(), 0);
    }

    #[test]
    fn the_same_seed_draws_the_same_network() {
        let run = |seed| {
            let mut params = LinkParams::calm();
            params.loss = 0.3;
            params.duplicate = 0.2;
            let mut net = Netem::new(seed, params);
            let now = Time::from_micros(1_000);
            for i in 0..100 {
                let _ = net.send(now, NodeId(1 + i % 3), 0, transmit(1 + (i + 1) % 3), true);
            }
            let mut arrivals = Vec::new();
            while let Some(frame) = net.pop_frame(Time::MAX) {
                arrivals.push((frame.at, frame.to));
            }
            arrivals
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }
}
