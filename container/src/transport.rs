//! The ZeroMQ transport: the runtime's transport SPI over real sockets.
//!
//! The app plane, `[identity](envelope)+` (one or more envelopes per frame set:
//! what a turn emits for a peer goes out together, up to `batch_max`), uses two
//! ROUTER sockets per node,
//! both with routing id `n` + the node id (8 bytes, big-endian):
//!
//! - the *inbound* socket is bound at `run.listen` and only receives; the sender
//!   of a frame set is the routing id its connection announced;
//! - the *outbound* socket connects to every peer and only sends; its pipe to a
//!   peer is named by that peer's announced routing id, `n` + the peer's id.
//!
//! So a socket never holds two pipes with the same name, whatever order nodes
//! start in, and `ROUTER_HANDOVER` on both lets a restarted peer take over its
//! old pipe at once. The outbound socket has `ROUTER_MANDATORY` and
//! `IMMEDIATE` on and every send is non-blocking: a peer that is not connected
//! (`EHOSTUNREACH`) or whose queue is full (`EAGAIN`) is reported to the node and
//! becomes a bounce or a counted drop. (Without `IMMEDIATE`, messages to a peer
//! that is not up yet wait in a pipe, and under load some were lost when the
//! connection came up.) So a message for a configured peer that is not connected
//! yet is held here instead, bounded in count and time, and handed to ZeroMQ once
//! the peer's pipe exists; what waits too long fails back to the node. `LINGER` is finite, and `MAXMSGSIZE` bounds what a peer
//! can make us read. The control plane is a third ROUTER socket.
//!
//! An envelope is one *packed* frame, `[0x00][varint header length][header][payload]`,
//! or two frames, `[header][payload]`. Containers send packed frames (a frame
//! through libzmq's API costs about as much as decoding a header: one frame an
//! envelope instead of two is what one-way traffic on one CPU needed); both are
//! read, so a client may send pairs. No protobuf header starts with 0x00 (field
//! number 0 does not exist), which tells the two apart.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;
use exchange_runtime::{NodeId, Transmit, TransmitError};

/// Socket settings.
#[derive(Clone, Debug)]
pub(crate) struct SocketOptions {
    /// How long closing may spend flushing.
    pub(crate) linger: Duration,
    /// Frames queued per peer at most.
    pub(crate) send_hwm: i32,
    /// Frames queued from the network at most.
    pub(crate) recv_hwm: i32,
    /// Largest frame set a peer may send; a larger one drops that peer's connection
    /// (libzmq's rule), so senders refuse oversize messages first.
    pub(crate) max_message_bytes: i64,
    /// How long a message may wait for a configured peer's connection to come up.
    pub(crate) peer_wait: Duration,
    /// Messages held per peer at most while its connection is not up.
    pub(crate) peer_queue_max: usize,
    /// Envelopes one frame set carries at most (1: one envelope per frame set).
    pub(crate) batch_max: std::num::NonZeroUsize,
}

/// Opening the sockets failed; nothing is listening.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum TransportError {
    /// Another process (or socket) holds the address.
    #[error(
        "cannot bind {endpoint}: the address is already in use (is another container running there?)"
    )]
    AddressInUse {
        /// The endpoint.
        endpoint: String,
    },
    /// Binding failed for another reason.
    #[error("cannot bind {endpoint}: {error}")]
    Bind {
        /// The endpoint.
        endpoint: String,
        /// What libzmq said.
        error: zmq::Error,
    },
    /// Connecting failed (the endpoint is malformed; an absent peer is not an error).
    #[error("cannot connect to {endpoint}: {error}")]
    Connect {
        /// The endpoint.
        endpoint: String,
        /// What libzmq said.
        error: zmq::Error,
    },
    /// A socket could not be created or configured.
    #[error("socket setup: {0}")]
    Socket(#[from] zmq::Error),
    /// The descriptors could not be registered for waiting.
    #[error("cannot wait on the sockets: {0}")]
    Poll(std::io::Error),
}

/// How long the connection to a peer that went away stays open (see
/// [`ZmqTransport::disconnect`]): longer than a leaving peer takes to drain
/// and exit.
pub(crate) const RETIRE_AFTER: Duration = Duration::from_secs(10);

const APP: mio::Token = mio::Token(0);
const CONTROL: mio::Token = mio::Token(1);
const EXTRA: mio::Token = mio::Token(2);

/// What arrived on the app socket.
#[derive(Debug)]
pub(crate) enum Received<'a> {
    /// One envelope of a frame set: the sending node (0 if the identity is not
    /// a node's), header, payload.
    Frames {
        /// The sender, from the connection's identity.
        from: NodeId,
        /// The header, borrowed from the transport's receive buffer.
        header: &'a [u8],
        /// The payload.
        payload: Bytes,
    },
    /// A frame set, or the part of one, that is not `[identity](envelope)+`.
    Garbage,
}

/// The first byte of a packed envelope frame. No encoded protobuf message
/// starts with it (a field number is never 0), so a frame that does is not a
/// header.
pub(crate) const PACKED: u8 = 0x00;

/// The length prefix of a packed frame: `len` as a protobuf varint, and how many
/// of the bytes it takes.
fn varint(mut len: usize) -> ([u8; 10], usize) {
    let mut bytes = [0; 10];
    let mut n = 0;
    while len >= 0x80 {
        bytes[n] = (len as u8) | 0x80;
        len >>= 7;
        n += 1;
    }
    bytes[n] = len as u8;
    (bytes, n + 1)
}

/// One envelope as one frame: `[PACKED][varint header length][header][payload]`.
pub(crate) fn pack(header: &[u8], payload: &[u8]) -> zmq::Message {
    let (prefix, n) = varint(header.len());
    let mut frame = zmq::Message::with_size(1 + n + header.len() + payload.len());
    let (first, rest) = frame.split_at_mut(1);
    first[0] = PACKED;
    let (length, rest) = rest.split_at_mut(n);
    length.copy_from_slice(&prefix[..n]);
    let (head, body) = rest.split_at_mut(header.len());
    head.copy_from_slice(header);
    body.copy_from_slice(payload);
    frame
}

/// The header and payload of a packed frame (one that starts with [`PACKED`]);
/// `None` if its header length is not a varint of at most five bytes or runs
/// past the frame.
pub(crate) fn unpack(frame: &[u8]) -> Option<(&[u8], &[u8])> {
    let rest = frame.strip_prefix(&[PACKED])?;
    let mut len = 0usize;
    for (i, &byte) in rest.iter().enumerate().take(5) {
        len |= usize::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            let rest = &rest[i + 1..];
            return (len <= rest.len()).then(|| rest.split_at(len));
        }
    }
    None
}

fn identity(node: NodeId) -> [u8; 9] {
    let mut id = [b'n'; 9];
    id[1..].copy_from_slice(&node.0.to_be_bytes());
    id
}

fn node_of(identity: &[u8]) -> NodeId {
    match identity {
        [b'n', rest @ ..] if rest.len() == 8 => {
            NodeId(u64::from_be_bytes(rest.try_into().expect("eight bytes")))
        }
        _ => NodeId(0),
    }
}

/// Which descriptors [`ZmqTransport::poll`] found readable.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Readiness {
    /// The app socket has news.
    pub(crate) app: bool,
    /// The control socket has news.
    pub(crate) control: bool,
    /// The extra descriptor is readable.
    pub(crate) extra: bool,
}

/// The app and control sockets of one container.
pub(crate) struct ZmqTransport {
    inbound: zmq::Socket,
    outbound: zmq::Socket,
    control: zmq::Socket,
    /// Messages for configured peers whose connection is not up yet, oldest
    /// first, with when they were held.
    held: BTreeMap<NodeId, VecDeque<(Instant, Transmit)>>,
    /// Peers connected to, and at which endpoint.
    peers: BTreeMap<NodeId, String>,
    /// Endpoints of peers that went away, still connected in ZeroMQ until the
    /// time given (see [`ZmqTransport::disconnect`]).
    retiring: Vec<(Instant, String)>,
    /// Waits on the app and control sockets' signalling descriptors
    /// (`ZMQ_FD`) and any descriptor given to [`ZmqTransport::watch`].
    poller: mio::Poll,
    events: mio::Events,
    /// Receive buffers (identity, packed envelope or header, payload), reused
    /// for every frame set: no allocation per frame but the payload's own.
    frames: [zmq::Message; 3],
    /// The sender of the frame set being read, while envelopes of it are left.
    reading: Option<NodeId>,
    /// Envelopes accepted by `send` this turn, per peer, in order; `flush`
    /// sends them as frame sets.
    outgoing: BTreeMap<NodeId, Vec<Transmit>>,
    peer_wait: Duration,
    peer_queue_max: usize,
    batch_max: usize,
    // Dropped last: sockets close before their context terminates.
    _context: zmq::Context,
}

impl std::fmt::Debug for ZmqTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZmqTransport").finish_non_exhaustive()
    }
}

fn bind(socket: &zmq::Socket, endpoint: &str) -> Result<(), TransportError> {
    socket.bind(endpoint).map_err(|error| match error {
        zmq::Error::EADDRINUSE => TransportError::AddressInUse {
            endpoint: endpoint.to_owned(),
        },
        error => TransportError::Bind {
            endpoint: endpoint.to_owned(),
            error,
        },
    })
}

impl ZmqTransport {
    /// Binds the app socket at `listen` and the control socket at `control`.
    pub(crate) fn bind(
        node: NodeId,
        listen: &str,
        control: &str,
        options: &SocketOptions,
    ) -> Result<Self, TransportError> {
        let context = zmq::Context::new();
        let linger = i32::try_from(options.linger.as_millis()).unwrap_or(i32::MAX);
        let own = identity(node);
        let inbound = context.socket(zmq::ROUTER)?;
        inbound.set_identity(&own)?;
        inbound.set_router_handover(true)?;
        inbound.set_linger(linger)?;
        inbound.set_rcvhwm(options.recv_hwm)?;
        inbound.set_maxmsgsize(options.max_message_bytes)?;
        bind(&inbound, listen)?;
        let outbound = context.socket(zmq::ROUTER)?;
        outbound.set_identity(&own)?;
        outbound.set_router_mandatory(true)?;
        // A restarted peer announces the same routing id as its old incarnation:
        // its new connection takes over at once instead of being refused while
        // the old one is still being torn down.
        outbound.set_router_handover(true)?;
        outbound.set_immediate(true)?;
        outbound.set_linger(linger)?;
        outbound.set_sndhwm(options.send_hwm)?;
        let control_socket = context.socket(zmq::ROUTER)?;
        control_socket.set_linger(linger)?;
        control_socket.set_maxmsgsize(64 * 1024)?;
        bind(&control_socket, control)?;
        let poller = mio::Poll::new().map_err(TransportError::Poll)?;
        for (fd, token) in [
            (inbound.get_fd()?, APP),
            (control_socket.get_fd()?, CONTROL),
        ] {
            poller
                .registry()
                .register(
                    &mut mio::unix::SourceFd(&fd),
                    token,
                    mio::Interest::READABLE,
                )
                .map_err(TransportError::Poll)?;
        }
        Ok(ZmqTransport {
            poller,
            events: mio::Events::with_capacity(4),
            inbound,
            outbound,
            control: control_socket,
            held: BTreeMap::new(),
            peers: BTreeMap::new(),
            retiring: Vec::new(),
            frames: [
                zmq::Message::new(),
                zmq::Message::new(),
                zmq::Message::new(),
            ],
            reading: None,
            outgoing: BTreeMap::new(),
            peer_wait: options.peer_wait,
            peer_queue_max: options.peer_queue_max,
            batch_max: options.batch_max.get(),
            _context: context,
        })
    }

    /// The app endpoint actually bound (resolves `tcp://127.0.0.1:*`).
    pub(crate) fn app_endpoint(&self) -> Option<String> {
        self.inbound.get_last_endpoint().ok().and_then(Result::ok)
    }

    /// The control endpoint actually bound.
    pub(crate) fn control_endpoint(&self) -> Option<String> {
        self.control.get_last_endpoint().ok().and_then(Result::ok)
    }

    /// Connects to a peer. ZeroMQ connects in the background and keeps
    /// reconnecting, so the peer need not be up yet; until it is, sends to it fail
    /// as unreachable. The connection is named by the peer's own routing id.
    pub(crate) fn connect(&mut self, peer: NodeId, endpoint: &str) -> Result<(), TransportError> {
        if self.peers.get(&peer).is_some_and(|known| known == endpoint) {
            return Ok(());
        }
        if let Some(old) = self.peers.remove(&peer) {
            // Moved: the old connection goes (ZeroMQ would keep redialling it).
            self.retire(old);
        }
        // A connection still open after its peer went away is taken back.
        if let Some(i) = self.retiring.iter().position(|(_, e)| e == endpoint) {
            self.retiring.swap_remove(i);
        } else {
            self.outbound
                .connect(endpoint)
                .map_err(|error| TransportError::Connect {
                    endpoint: endpoint.to_owned(),
                    error,
                })?;
        }
        self.peers.insert(peer, endpoint.to_owned());
        Ok(())
    }

    /// Stops talking to `peer` (it went down or left) and gives up on what was
    /// held for it (returned as unreachable). The router no longer sends to it;
    /// its connection is closed [`RETIRE_AFTER`] later, by
    /// [`ZmqTransport::close_retired`]. (Closing a connection whose ZeroMQ
    /// engine is part-way through writing a frame set, then losing the
    /// connection, trips an assertion in libzmq 4.3.5 that aborts the process
    /// — `session_base.cpp:233`; seen when a peer that was leaving exited. By
    /// then a peer that left or died has closed its end.)
    pub(crate) fn disconnect(&mut self, peer: NodeId) -> Vec<(Transmit, TransmitError)> {
        if let Some(endpoint) = self.peers.remove(&peer) {
            self.retire(endpoint);
        }
        let held = self.held.remove(&peer).into_iter().flatten();
        let outgoing = self.outgoing.remove(&peer).into_iter().flatten();
        held.map(|(_, transmit)| transmit)
            .chain(outgoing)
            .map(|transmit| (transmit, TransmitError::Unreachable))
            .collect()
    }

    fn retire(&mut self, endpoint: String) {
        if !self.peers.values().any(|known| *known == endpoint) {
            self.retiring
                .push((Instant::now() + RETIRE_AFTER, endpoint));
        }
    }

    /// Closes the connections of peers that went away [`RETIRE_AFTER`] ago
    /// (ZeroMQ would keep redialling them).
    pub(crate) fn close_retired(&mut self, now: Instant) {
        let outbound = &self.outbound;
        self.retiring.retain(|(due, endpoint)| {
            if *due > now {
                return true;
            }
            let _ = outbound.disconnect(endpoint);
            false
        });
    }

    /// Adds a descriptor for [`ZmqTransport::poll`] to wait on (discovery's UDP
    /// socket), reported as [`Readiness::extra`].
    pub(crate) fn watch(&mut self, fd: std::os::fd::RawFd) -> std::io::Result<()> {
        self.poller.registry().register(
            &mut mio::unix::SourceFd(&fd),
            EXTRA,
            mio::Interest::READABLE,
        )
    }

    /// Waits up to `timeout` for news on the sockets and the watched descriptor.
    ///
    /// This waits on the sockets' signalling descriptors (`ZMQ_FD`) directly,
    /// with one system call (`zmq_poll` makes one per socket more, and one more
    /// for a first pass that does not wait). A descriptor signals only *new*
    /// commands from ZeroMQ's I/O thread (and the wait is edge-triggered), so the
    /// result is complete only for a socket that was last read until it had
    /// nothing left; the loop reads each socket and the watched descriptor dry
    /// before it waits (or else does not wait).
    pub(crate) fn poll(&mut self, timeout: Duration) -> std::io::Result<Readiness> {
        match self.poller.poll(&mut self.events, Some(timeout)) {
            Ok(()) => {}
            // A signal (SIGTERM, SIGINT) interrupts the wait; the loop checks its flag.
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {
                return Ok(Readiness::default());
            }
            Err(error) => return Err(error),
        }
        let mut ready = Readiness::default();
        for event in &self.events {
            match event.token() {
                APP => ready.app = true,
                CONTROL => ready.control = true,
                _ => ready.extra = true,
            }
        }
        Ok(ready)
    }

    /// The next envelope on the app socket, if one is waiting. A frame set may
    /// carry several; they are read one at a time, so the loop can stop between
    /// two and go on next turn. The frames are read into buffers the transport
    /// keeps, so only the payload is copied out. (`None` leaves the socket read
    /// dry, see [`ZmqTransport::poll`].)
    pub(crate) fn recv_app(&mut self) -> Option<Received<'_>> {
        let [identity, header, payload] = &mut self.frames;
        let from = match self.reading.take() {
            Some(from) => from,
            None => {
                if self.inbound.recv(identity, zmq::DONTWAIT).is_err() {
                    // Nothing waiting: let go of the last envelope's frames. They
                    // point into the buffer libzmq's I/O thread decoded them in,
                    // which it can reuse for the next read only once nothing
                    // does; else it allocates a new one (~18 KB) every read.
                    *header = zmq::Message::new();
                    *payload = zmq::Message::new();
                    return None;
                }
                if !identity.get_more() {
                    return Some(Received::Garbage);
                }
                node_of(identity)
            }
        };
        // Parts of a frame set arrive together: once the first is read, the rest
        // are there. A failed read ends the set like a last frame would.
        if self.inbound.recv(header, zmq::DONTWAIT).is_err() {
            return Some(Received::Garbage);
        }
        if header.first() == Some(&PACKED) {
            if header.get_more() {
                self.reading = Some(from);
            }
            // A packed frame that does not unpack is garbage on its own; the
            // envelopes after it are read as usual.
            return Some(match unpack(header) {
                Some((header, payload)) => Received::Frames {
                    from,
                    header,
                    payload: Bytes::copy_from_slice(payload),
                },
                None => Received::Garbage,
            });
        }
        let complete = header.get_more() && self.inbound.recv(payload, zmq::DONTWAIT).is_ok();
        if !complete {
            // A header without its payload ends the set.
            return Some(Received::Garbage);
        }
        if payload.get_more() {
            self.reading = Some(from);
        }
        Some(Received::Frames {
            from,
            header: &header[..],
            payload: Bytes::copy_from_slice(payload),
        })
    }

    /// Takes a transmit for sending at the next [`ZmqTransport::flush`], which
    /// puts a peer's envelopes into as few frame sets as `batch_max` allows. A
    /// message for a configured peer whose connection is not up yet is held (at
    /// most `peer_queue_max`, for at most `peer_wait`) and sent by
    /// [`ZmqTransport::retry_held`] once it is.
    pub(crate) fn send(
        &mut self,
        transmit: Transmit,
        now: Instant,
    ) -> Result<(), (Transmit, TransmitError)> {
        if self
            .held
            .get(&transmit.to)
            .is_some_and(|queue| !queue.is_empty())
        {
            // Behind what is already waiting, to keep the order.
            return self.hold(transmit, now);
        }
        self.outgoing.entry(transmit.to).or_default().push(transmit);
        Ok(())
    }

    /// Sends what [`ZmqTransport::send`] took, without blocking; returns what
    /// cannot go: a peer that is not connected (`EHOSTUNREACH`; held instead if
    /// it is a configured one) or whose queue is full (`EAGAIN`: the rest for
    /// that peer fails too).
    pub(crate) fn flush(&mut self, now: Instant) -> Vec<(Transmit, TransmitError)> {
        let mut failed = Vec::new();
        let mut outgoing = std::mem::take(&mut self.outgoing);
        for (&to, queue) in &mut outgoing {
            let mut sent = 0;
            let mut error = None;
            for set in queue.chunks(self.batch_max) {
                match self.send_set(to, set.iter()) {
                    Ok(()) => sent += set.len(),
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                }
            }
            let rest = queue.drain(..).skip(sent);
            match error {
                None => {}
                Some(TransmitError::Unreachable) if self.peers.contains_key(&to) => {
                    for transmit in rest {
                        if let Err(refused) = self.hold(transmit, now) {
                            failed.push(refused);
                        }
                    }
                }
                Some(error) => failed.extend(rest.map(|transmit| (transmit, error))),
            }
        }
        // The per-peer vectors stay, with their capacity, for the next turn.
        self.outgoing = outgoing;
        failed
    }

    fn hold(&mut self, transmit: Transmit, now: Instant) -> Result<(), (Transmit, TransmitError)> {
        let queue = self.held.entry(transmit.to).or_default();
        if queue.len() >= self.peer_queue_max {
            return Err((transmit, TransmitError::WouldBlock));
        }
        queue.push_back((now, transmit));
        Ok(())
    }

    /// Messages held for peers not connected yet.
    pub(crate) fn held(&self) -> usize {
        self.held.values().map(VecDeque::len).sum()
    }

    /// Whether anything waits on time here: held messages to retry or fail
    /// ([`ZmqTransport::retry_held`]), connections to close
    /// ([`ZmqTransport::close_retired`]).
    pub(crate) fn waiting(&self) -> bool {
        !self.held.is_empty() || !self.retiring.is_empty()
    }

    /// Sends what was held for peers that are connected now, in frame sets of
    /// up to `batch_max` as [`ZmqTransport::flush`] does; returns what waited
    /// longer than `peer_wait` (as unreachable) or found a full queue.
    pub(crate) fn retry_held(&mut self, now: Instant) -> Vec<(Transmit, TransmitError)> {
        let mut failed = Vec::new();
        let mut held = std::mem::take(&mut self.held);
        for (&to, queue) in &mut held {
            // Held in order, so what waited too long is at the front.
            while let Some((since, _)) = queue.front() {
                if now.duration_since(*since) <= self.peer_wait {
                    break;
                }
                let (_, transmit) = queue.pop_front().expect("peeked");
                failed.push((transmit, TransmitError::Unreachable));
            }
            while !queue.is_empty() {
                let n = queue.len().min(self.batch_max);
                match self.send_set(to, queue.iter().take(n).map(|(_, transmit)| transmit)) {
                    Ok(()) => {
                        queue.drain(..n);
                    }
                    Err(TransmitError::Unreachable) => break,
                    Err(error) => {
                        failed.extend(queue.drain(..n).map(|(_, transmit)| (transmit, error)));
                    }
                }
            }
        }
        held.retain(|_, queue| !queue.is_empty());
        self.held = held;
        failed
    }

    /// Gives up on everything held (at shutdown): all of it is unreachable.
    pub(crate) fn fail_held(&mut self) -> Vec<(Transmit, TransmitError)> {
        let held = std::mem::take(&mut self.held);
        held.into_values()
            .flatten()
            .map(|(_, transmit)| (transmit, TransmitError::Unreachable))
            .collect()
    }

    /// One frame set, `[identity](packed envelope)+`, to `to`.
    fn send_set<'a>(
        &self,
        to: NodeId,
        set: impl ExactSizeIterator<Item = &'a Transmit>,
    ) -> Result<(), TransmitError> {
        let first = self
            .outbound
            .send(&identity(to)[..], zmq::SNDMORE | zmq::DONTWAIT);
        match first {
            Ok(()) => {}
            Err(zmq::Error::EHOSTUNREACH) => return Err(TransmitError::Unreachable),
            Err(_) => return Err(TransmitError::WouldBlock),
        }
        // Once the first frame is taken, libzmq takes the rest of the set.
        let last = set.len() - 1;
        for (i, transmit) in set.enumerate() {
            let more = if i == last { 0 } else { zmq::SNDMORE };
            self.outbound
                .send(
                    pack(&transmit.header, &transmit.payload),
                    more | zmq::DONTWAIT,
                )
                .map_err(|_| TransmitError::WouldBlock)?;
        }
        Ok(())
    }

    /// The next control request, `[client identity, …frames]`, if one is waiting.
    /// (`None` leaves the socket read dry, see [`ZmqTransport::poll`].)
    pub(crate) fn recv_control(&self) -> Option<Vec<Vec<u8>>> {
        self.control.recv_multipart(zmq::DONTWAIT).ok()
    }

    /// Answers a control request; a client that went away is ignored.
    pub(crate) fn send_control(&self, frames: Vec<Vec<u8>>) {
        let _ = self.control.send_multipart(frames, zmq::DONTWAIT);
    }
}

impl exchange_runtime::Transport for ZmqTransport {
    fn transmit(
        &mut self,
        _now: exchange_runtime::Time,
        transmit: Transmit,
    ) -> Result<(), (Transmit, TransmitError)> {
        self.send(transmit, Instant::now())
    }

    fn flush(&mut self, _now: exchange_runtime::Time) -> Vec<(Transmit, TransmitError)> {
        ZmqTransport::flush(self, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_round_trip_and_strangers_are_node_zero() {
        assert_eq!(node_of(&identity(NodeId(42))), NodeId(42));
        assert_eq!(node_of(b"c\0\0\0\0\0\0\0\x2a"), NodeId(0));
        assert_eq!(node_of(b"\0\x01\x02\x03\x04"), NodeId(0));
    }

    #[test]
    fn packed_frames_round_trip_across_varint_widths() {
        let payload = [7u8; 300];
        for len in [0, 1, 127, 128, 4096, 16_383, 16_384, 70_000] {
            let header = vec![0x0a; len];
            for payload in [&payload[..0], &payload[..1], &payload[..]] {
                let frame = pack(&header, payload);
                assert_eq!(frame[0], PACKED);
                let (prefix, n) = varint(len);
                assert_eq!(frame[1..=n], prefix[..n], "a protobuf varint");
                assert_eq!(frame.len(), 1 + n + len + payload.len());
                assert_eq!(unpack(&frame), Some((&header[..], payload)), "{len}");
            }
        }
    }

    #[test]
    fn packed_frames_whose_length_does_not_fit_are_refused() {
        for frame in [
            &b""[..],
            b"\x0a\x01x",                  // a header frame, not a packed one
            b"\0",                         // no length
            b"\0\x80",                     // the length never ends
            b"\0\x03ab",                   // longer than what follows
            b"\0\x80\x80\x80\x80\x80\x01", // more than five bytes of length
        ] {
            assert_eq!(unpack(frame), None, "{frame:?}");
        }
        // An overlong length (zero in two bytes) is still a varint.
        assert_eq!(unpack(b"\0\x80\x00p"), Some((&b""[..], &b"p"[..])));
    }

    proptest::proptest! {
        /// Whatever arrives, `unpack` neither panics nor reads past the frame:
        /// what it returns is the whole rest of the frame after a valid length.
        #[test]
        fn any_frame_unpacks_to_its_own_bytes_or_nothing(
            frame in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
        ) {
            if let Some((header, payload)) = unpack(&frame) {
                proptest::prop_assert_eq!(frame[0], PACKED);
                // The mark and one to five bytes of length, then the header,
                // then the payload up to the frame's end.
                let at = frame.len() - payload.len() - header.len();
                proptest::prop_assert!((2..=6).contains(&at), "{}", at);
                proptest::prop_assert_eq!(&frame[at..at + header.len()], header);
                proptest::prop_assert_eq!(&frame[at + header.len()..], payload);
            }
        }

        #[test]
        fn any_header_and_payload_round_trip(
            header in proptest::collection::vec(proptest::num::u8::ANY, 0..600),
            payload in proptest::collection::vec(proptest::num::u8::ANY, 0..300),
        ) {
            let frame = pack(&header, &payload);
            proptest::prop_assert_eq!(unpack(&frame), Some((&header[..], &payload[..])));
        }
    }
}
