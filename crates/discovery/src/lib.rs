//! Sans-IO membership for exchange: nodes find each other from a seed set over UDP
//! datagrams (SWIM, through `foca`), advertise the names they handle, and feed the
//! runtime's router. Every datagram is authenticated under a cluster key.
//!
//! Nothing lives here yet: the discovery issue fills it. Until then `exchange dev`
//! wires routes between its in-memory nodes directly.
