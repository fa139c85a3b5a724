//! The ZeroMQ transport: the runtime's transport SPI over real sockets.
//!
//! One ROUTER per node carries the app plane, `[identity][header][payload]`:
//!
//! - a node's own routing id is `c` + its node id (8 bytes, big-endian): how it
//!   appears on connections it makes;
//! - it connects to each peer, naming that connection `s` + the peer's id
//!   (`ZMQ_CONNECT_ROUTING_ID`), and sends to a peer only on that connection;
//! - so frames arriving on a pipe named `c…` come from that node, and a node never
//!   has two pipes with the same name, whatever order nodes start in.
//!
//! `ROUTER_MANDATORY` is on and every send is non-blocking, so a peer that is not
//! connected (`EHOSTUNREACH`) or whose queue is full (`EAGAIN`) is reported to the
//! node, never silently dropped. `LINGER` is finite, and `MAXMSGSIZE` bounds what
//! a peer can make us read. The control plane is a second ROUTER socket.

use std::time::Duration;

use bytes::Bytes;
use exchange_runtime::{NodeId, Transmit, TransmitError};

/// Socket settings.
#[derive(Clone, Debug)]
pub struct SocketOptions {
    /// How long closing may spend flushing.
    pub linger: Duration,
    /// Frames queued per peer at most.
    pub send_hwm: i32,
    /// Frames queued from the network at most.
    pub recv_hwm: i32,
    /// Largest frame set a peer may send; a larger one drops that peer's connection
    /// (libzmq's rule), so senders refuse oversize messages first.
    pub max_message_bytes: i64,
}

/// Opening the sockets failed; nothing is listening.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
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
}

/// What arrived on the app socket.
#[derive(Debug)]
pub enum Received {
    /// An envelope: the sending node (0 if the identity is not a node's), header, payload.
    Frames {
        /// The sender, from the connection's identity.
        from: NodeId,
        /// The header frame.
        header: Vec<u8>,
        /// The payload frame.
        payload: Bytes,
    },
    /// A frame set that is not `[identity][header][payload]`.
    Garbage,
}

fn identity(prefix: u8, node: NodeId) -> [u8; 9] {
    let mut id = [prefix; 9];
    id[1..].copy_from_slice(&node.0.to_be_bytes());
    id
}

fn node_of(identity: &[u8]) -> NodeId {
    match identity {
        [b'c', rest @ ..] if rest.len() == 8 => {
            NodeId(u64::from_be_bytes(rest.try_into().expect("eight bytes")))
        }
        _ => NodeId(0),
    }
}

/// Names the next connection `socket` makes. `zmq` 0.10 has no setter for
/// `ZMQ_CONNECT_ROUTING_ID`, so this is the one direct libzmq call.
#[allow(unsafe_code)]
fn set_connect_routing_id(socket: &mut zmq::Socket, id: &[u8]) -> zmq::Result<()> {
    let option = zmq_sys::ZMQ_CONNECT_ROUTING_ID as std::os::raw::c_int;
    // SAFETY: the socket pointer is valid while `socket` is borrowed; libzmq reads
    // exactly `id.len()` bytes from `id`, which outlives the call.
    let rc = unsafe {
        zmq_sys::zmq_setsockopt(socket.as_mut_ptr(), option, id.as_ptr().cast(), id.len())
    };
    if rc == 0 {
        Ok(())
    } else {
        // SAFETY: reads libzmq's thread-local errno; no pointers involved.
        Err(zmq::Error::from_raw(unsafe { zmq_sys::zmq_errno() }))
    }
}

/// The app and control sockets of one container.
pub struct ZmqTransport {
    app: zmq::Socket,
    control: zmq::Socket,
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
    pub fn bind(
        node: NodeId,
        listen: &str,
        control: &str,
        options: &SocketOptions,
    ) -> Result<Self, TransportError> {
        let context = zmq::Context::new();
        let linger = i32::try_from(options.linger.as_millis()).unwrap_or(i32::MAX);
        let app = context.socket(zmq::ROUTER)?;
        app.set_router_mandatory(true)?;
        app.set_linger(linger)?;
        app.set_sndhwm(options.send_hwm)?;
        app.set_rcvhwm(options.recv_hwm)?;
        app.set_maxmsgsize(options.max_message_bytes)?;
        app.set_identity(&identity(b'c', node))?;
        bind(&app, listen)?;
        let control_socket = context.socket(zmq::ROUTER)?;
        control_socket.set_linger(linger)?;
        control_socket.set_maxmsgsize(64 * 1024)?;
        bind(&control_socket, control)?;
        Ok(ZmqTransport {
            app,
            control: control_socket,
            _context: context,
        })
    }

    /// The app endpoint actually bound (resolves `tcp://127.0.0.1:*`).
    pub fn app_endpoint(&self) -> Option<String> {
        self.app.get_last_endpoint().ok().and_then(Result::ok)
    }

    /// The control endpoint actually bound.
    pub fn control_endpoint(&self) -> Option<String> {
        self.control.get_last_endpoint().ok().and_then(Result::ok)
    }

    /// Connects to a peer. ZeroMQ connects in the background and keeps
    /// reconnecting, so the peer need not be up yet.
    pub fn connect(&mut self, peer: NodeId, endpoint: &str) -> Result<(), TransportError> {
        let connect_error = |error| TransportError::Connect {
            endpoint: endpoint.to_owned(),
            error,
        };
        set_connect_routing_id(&mut self.app, &identity(b's', peer)).map_err(connect_error)?;
        self.app.connect(endpoint).map_err(connect_error)
    }

    /// Waits up to `timeout` for either socket to be readable; returns (app, control).
    pub fn poll(&self, timeout: Duration) -> zmq::Result<(bool, bool)> {
        let mut items = [
            self.app.as_poll_item(zmq::POLLIN),
            self.control.as_poll_item(zmq::POLLIN),
        ];
        let timeout_ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
        match zmq::poll(&mut items, timeout_ms) {
            Ok(_) => Ok((items[0].is_readable(), items[1].is_readable())),
            // A signal (SIGTERM, SIGINT) interrupts the wait; the loop checks its flag.
            Err(zmq::Error::EINTR) => Ok((false, false)),
            Err(error) => Err(error),
        }
    }

    /// The next frame set on the app socket, if one is waiting.
    pub fn recv_app(&self) -> Option<Received> {
        let mut frames = match self.app.recv_multipart(zmq::DONTWAIT) {
            Ok(frames) => frames,
            Err(_) => return None,
        };
        if frames.len() != 3 {
            return Some(Received::Garbage);
        }
        let payload = Bytes::from(frames.pop().expect("three frames"));
        let header = frames.pop().expect("three frames");
        Some(Received::Frames {
            from: node_of(&frames[0]),
            header,
            payload,
        })
    }

    /// Sends a transmit without blocking; a peer that is not connected or whose
    /// queue is full is reported, never waited for.
    pub fn send(&self, transmit: &Transmit) -> Result<(), TransmitError> {
        let to = identity(b's', transmit.to);
        let first = self.app.send(&to[..], zmq::SNDMORE | zmq::DONTWAIT);
        match first {
            Ok(()) => {}
            Err(zmq::Error::EHOSTUNREACH) => return Err(TransmitError::Unreachable),
            Err(_) => return Err(TransmitError::WouldBlock),
        }
        // Once the first frame is taken, libzmq takes the rest of the message.
        let rest = self
            .app
            .send(&transmit.header[..], zmq::SNDMORE | zmq::DONTWAIT)
            .and_then(|()| self.app.send(&transmit.payload[..], zmq::DONTWAIT));
        rest.map_err(|_| TransmitError::WouldBlock)
    }

    /// The next control request, `[client identity, …frames]`, if one is waiting.
    pub fn recv_control(&self) -> Option<Vec<Vec<u8>>> {
        self.control.recv_multipart(zmq::DONTWAIT).ok()
    }

    /// Answers a control request; a client that went away is ignored.
    pub fn send_control(&self, frames: Vec<Vec<u8>>) {
        let _ = self.control.send_multipart(frames, zmq::DONTWAIT);
    }
}

impl exchange_runtime::Transport for ZmqTransport {
    fn transmit(
        &mut self,
        _now: exchange_runtime::Time,
        transmit: Transmit,
    ) -> Result<(), (Transmit, TransmitError)> {
        self.send(&transmit).map_err(|error| (transmit, error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_round_trip_and_strangers_are_node_zero() {
        assert_eq!(node_of(&identity(b'c', NodeId(42))), NodeId(42));
        assert_eq!(node_of(&identity(b's', NodeId(42))), NodeId(0));
        assert_eq!(node_of(b"\0\x01\x02\x03\x04"), NodeId(0));
    }
}
