//! Sans-IO membership for exchange: nodes find each other from a seed set over UDP
//! datagrams (SWIM, through `foca`), advertise the names they handle, and feed the
//! runtime's router. Every datagram is authenticated under a cluster key.
//!
//! Built so far: [`seal`], the authenticated datagram layer (MAC checked in
//! constant time before anything is parsed, a timestamp window, a nonce
//! memory against replays, refusals counted by reason). The membership itself
//! and the capability table come next (the discovery issue).

pub mod seal;
