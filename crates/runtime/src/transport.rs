//! The transport SPI: how drivers carry a node's frames to other nodes.
//!
//! The node never calls a transport; it hands out [`Transmit`]s. A driver gives
//! each to its transport and feeds failures back as
//! [`crate::Input::TransmitFailed`], where they become bounces or counted
//! drops. The ZeroMQ transport in `container/` implements [`Transport`]; the
//! network emulator ([`crate::netem`]) refuses sends the same way.

use bytes::Bytes;

use crate::ids::NodeId;
use crate::time::Time;

/// Frames for another node: the encoded header and the payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The node to carry them to.
    pub to: NodeId,
    /// An encoded `exchange.v1.Envelope`.
    pub header: Bytes,
    /// The payload, untouched.
    pub payload: Bytes,
}

/// Why a transport could not carry a [`Transmit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransmitError {
    /// The queue toward the peer is full (ZeroMQ `EAGAIN`). Bounces `Overloaded`.
    #[error("the queue toward the peer is full")]
    WouldBlock,
    /// The peer is not connected or not known (ZeroMQ `EHOSTUNREACH`). Bounces `NoHandler`.
    #[error("the peer is unreachable")]
    Unreachable,
}

/// Carries frames between nodes.
pub trait Transport {
    /// Hands `transmit` to the network at `now`; on failure gives it back with why.
    /// A transport may keep it until [`Transport::flush`], to send several to
    /// one peer together.
    fn transmit(&mut self, now: Time, transmit: Transmit) -> Result<(), (Transmit, TransmitError)>;

    /// Sends what [`Transport::transmit`] kept; gives back what could not go,
    /// with why. Drivers call it once they have handed over a turn's transmits.
    fn flush(&mut self, now: Time) -> Vec<(Transmit, TransmitError)>;
}
