//! What a node takes in: one [`Input`] at a time, with the time, through
//! [`Node::handle`](crate::Node::handle). Its serialized form is a recording's
//! record (`exchange.v1.record`), both ways, so a driver records every input
//! by recording the value it hands the node, and a replay hands back the same
//! value. A new input is a new variant here and a new arm of the two
//! conversions below; nothing else needs to know how to record it.

use bytes::Bytes;
use exchange_idl::exchange::v1::record::{self as rec, record::Kind};

use super::capacity::{CapacityChange, Limit};
use crate::ids::{ComponentId, InvalidName, NodeId, validate_name};
use crate::router::{Locality, NodeInfo, RouteChange};
use crate::transport::{Transmit, TransmitError};

/// One input to a node. The header of a frame is borrowed (a driver hands in
/// the bytes it read, without copying them).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Input<'a> {
    /// Start every component (after they were added).
    Start,
    /// An envelope from another node: its encoded header and its payload.
    /// `from` is the peer the transport says sent it; it is not trusted for
    /// anything yet (the envelope's source is what answers go to).
    Frame {
        /// The sending node, as the transport knows it.
        from: NodeId,
        /// An encoded `exchange.v1.Envelope`.
        header: &'a [u8],
        /// The payload.
        payload: Bytes,
    },
    /// Frames from the network that could not be read as an envelope at all
    /// (no frame after the identity, a header without its payload): counted as
    /// a `malformed` drop.
    Undecodable,
    /// Time passed: fire due timers, expire requests whose deadline passed,
    /// bounce messages that waited too long for a handler.
    Timeout,
    /// Let components handle what is queued: up to
    /// [`NodeConfig::dispatch_per_turn_max`](crate::NodeConfig::dispatch_per_turn_max)
    /// items, first come, first served.
    Run,
    /// The transport could not carry a transmit: its message bounces to its
    /// sender (or, if it may not bounce, is dropped and counted).
    TransmitFailed {
        /// What could not be carried.
        transmit: Transmit,
        /// Why.
        error: TransmitError,
    },
    /// What the node knows of another node changed (from discovery, or static
    /// configuration); a handler added releases messages waiting for one.
    Route(RouteChange),
    /// A live change of capacity (see [`CapacityChange`]); applies from the
    /// next message; one that does not check changes nothing.
    Capacity(CapacityChange),
    /// Cancel every timer, so components start no new work; what is queued or
    /// in flight still runs.
    Quiesce,
    /// Start draining: timers cancelled (as [`Input::Quiesce`]), new sends and
    /// requests from other nodes bounce `Overloaded`, messages waiting for a
    /// handler bounce `NoHandler`; replies and queued work still run.
    Drain,
    /// Stop every component; what is still queued is bounced (senders on other
    /// nodes) or dropped and counted as `shutdown`.
    Shutdown,
}

/// A record that is not a node input, or does not make sense as one; nothing
/// was fed to the node.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidRecord {
    /// A record with no kind at all.
    #[error("a record with no input")]
    Empty,
    /// `begin` or `drained`: records about the recording, not inputs.
    #[error("a `{0}` record is not an input")]
    NotAnInput(&'static str),
    /// A route or interest names an invalid name.
    #[error("a route for {name:?}: {error}")]
    Name {
        /// The name as recorded.
        name: String,
        /// What is wrong with it.
        error: InvalidName,
    },
    /// A route record without its change.
    #[error("a route record with no change")]
    NoChange,
    /// A locality other than 0 to 2.
    #[error("a route with locality {0} (0 to 2)")]
    Locality(u32),
}

impl From<&Input<'_>> for Kind {
    fn from(input: &Input<'_>) -> Kind {
        let empty = rec::Empty {};
        match input {
            Input::Start => Kind::Start(empty),
            Input::Frame {
                from,
                header,
                payload,
            } => Kind::Frame(rec::Frame {
                from: from.0,
                header: header.to_vec(),
                payload: payload.to_vec(),
            }),
            Input::Undecodable => Kind::Undecodable(empty),
            Input::Timeout => Kind::Timeout(empty),
            Input::Run => Kind::Run(empty),
            Input::TransmitFailed { transmit, error } => {
                Kind::TransmitFailed(rec::TransmitFailed {
                    to: transmit.to.0,
                    header: transmit.header.to_vec(),
                    payload: transmit.payload.to_vec(),
                    would_block: *error == TransmitError::WouldBlock,
                })
            }
            Input::Route(change) => Kind::Route(route_record(change)),
            Input::Capacity(change) => Kind::Capacity(capacity_record(change)),
            Input::Quiesce => Kind::Quiesce(empty),
            Input::Drain => Kind::Drain(empty),
            Input::Shutdown => Kind::Shutdown(empty),
        }
    }
}

impl<'a> TryFrom<&'a Kind> for Input<'a> {
    type Error = InvalidRecord;

    fn try_from(kind: &'a Kind) -> Result<Input<'a>, InvalidRecord> {
        Ok(match kind {
            Kind::Begin(_) => return Err(InvalidRecord::NotAnInput("begin")),
            Kind::Drained(_) => return Err(InvalidRecord::NotAnInput("drained")),
            Kind::Start(_) => Input::Start,
            Kind::Frame(frame) => Input::Frame {
                from: NodeId(frame.from),
                header: &frame.header,
                payload: Bytes::copy_from_slice(&frame.payload),
            },
            Kind::Undecodable(_) => Input::Undecodable,
            Kind::Timeout(_) => Input::Timeout,
            Kind::Run(_) => Input::Run,
            Kind::TransmitFailed(failed) => Input::TransmitFailed {
                transmit: Transmit {
                    to: NodeId(failed.to),
                    header: Bytes::copy_from_slice(&failed.header),
                    payload: Bytes::copy_from_slice(&failed.payload),
                },
                error: if failed.would_block {
                    TransmitError::WouldBlock
                } else {
                    TransmitError::Unreachable
                },
            },
            // Written by earlier versions: a subscription, now a route change.
            Kind::Interest(interest) => Input::Route(RouteChange::Subscriber {
                name: valid(&interest.name)?,
                node: NodeId(interest.from),
                subscribed: interest.subscribed,
            }),
            Kind::Route(route) => Input::Route(route_change(route)?),
            Kind::Capacity(capacity) => Input::Capacity(capacity_change(capacity)),
            Kind::Quiesce(_) => Input::Quiesce,
            Kind::Drain(_) => Input::Drain,
            Kind::Shutdown(_) => Input::Shutdown,
        })
    }
}

fn valid(name: &str) -> Result<String, InvalidRecord> {
    validate_name(name).map_err(|error| InvalidRecord::Name {
        name: name.to_owned(),
        error,
    })?;
    Ok(name.to_owned())
}

fn route_record(change: &RouteChange) -> rec::Route {
    use rec::route::Change;
    let named = |name: &str, on: bool| rec::Named {
        name: name.to_owned(),
        on,
    };
    let (about, change) = match change {
        RouteChange::Handler {
            name,
            node,
            handles,
        } => (node, Change::Handler(named(name, *handles))),
        RouteChange::Subscriber {
            name,
            node,
            subscribed,
        } => (node, Change::Subscriber(named(name, *subscribed))),
        RouteChange::Info { node, info } => (
            node,
            Change::Info(rec::NodeInfo {
                locality: match info.locality {
                    Locality::Host => 0,
                    Locality::Network => 1,
                    Locality::Remote => 2,
                },
                load: info.load,
            }),
        ),
        RouteChange::Gone { node } => (node, Change::Gone(rec::Empty {})),
    };
    rec::Route {
        about: about.0,
        change: Some(change),
    }
}

fn capacity_record(change: &CapacityChange) -> rec::Capacity {
    let value = |limit| change.value(limit);
    rec::Capacity {
        component: change.component.map(|id| id.0),
        network: change.network,
        mailbox_len_max: value(Limit::MailboxLenMax),
        mailbox_bytes_max: value(Limit::MailboxBytesMax),
        rate: value(Limit::RatePerSec),
        burst: value(Limit::Burst),
        in_flight_max: value(Limit::InFlightMax),
        dispatch_per_turn_max: value(Limit::DispatchPerTurnMax),
        by: change.by.clone(),
    }
}

/// A recorded capacity change; the node checks its values as it does a live one.
fn capacity_change(record: &rec::Capacity) -> CapacityChange {
    CapacityChange {
        component: record.component.map(ComponentId),
        network: record.network,
        values: [
            record.mailbox_len_max,
            record.mailbox_bytes_max,
            record.rate,
            record.burst,
            record.in_flight_max,
            record.dispatch_per_turn_max,
        ],
        by: record.by.clone(),
    }
}

/// A recorded route change, checked: names must be valid, localities known.
fn route_change(route: &rec::Route) -> Result<RouteChange, InvalidRecord> {
    use rec::route::Change;
    let node = NodeId(route.about);
    Ok(
        match route.change.as_ref().ok_or(InvalidRecord::NoChange)? {
            Change::Handler(named) => RouteChange::Handler {
                name: valid(&named.name)?,
                node,
                handles: named.on,
            },
            Change::Subscriber(named) => RouteChange::Subscriber {
                name: valid(&named.name)?,
                node,
                subscribed: named.on,
            },
            Change::Info(info) => RouteChange::Info {
                node,
                info: NodeInfo {
                    locality: match info.locality {
                        0 => Locality::Host,
                        1 => Locality::Network,
                        2 => Locality::Remote,
                        other => return Err(InvalidRecord::Locality(other)),
                    },
                    load: info.load,
                },
            },
            Change::Gone(_) => RouteChange::Gone { node },
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(input: &Input<'_>) {
        let kind = Kind::from(input);
        let back = Input::try_from(&kind).expect("a recorded input reads back");
        assert_eq!(&back, input);
    }

    #[test]
    fn every_input_reads_back_as_itself() {
        let transmit = Transmit {
            to: NodeId(3),
            header: Bytes::from_static(b"\x08\x01"),
            payload: Bytes::from_static(b"payload"),
        };
        let info = NodeInfo {
            locality: Locality::Remote,
            load: 8,
        };
        let inputs = [
            Input::Start,
            Input::Frame {
                from: NodeId(2),
                header: b"\x08\x07",
                payload: Bytes::from_static(b"xyz"),
            },
            Input::Undecodable,
            Input::Timeout,
            Input::Run,
            Input::TransmitFailed {
                transmit: transmit.clone(),
                error: TransmitError::WouldBlock,
            },
            Input::TransmitFailed {
                transmit,
                error: TransmitError::Unreachable,
            },
            Input::Route(RouteChange::Handler {
                name: "kv.get".into(),
                node: NodeId(2),
                handles: true,
            }),
            Input::Route(RouteChange::Subscriber {
                name: "kv.changed".into(),
                node: NodeId(2),
                subscribed: false,
            }),
            Input::Route(RouteChange::Info {
                node: NodeId(4),
                info,
            }),
            Input::Route(RouteChange::Gone { node: NodeId(4) }),
            Input::Capacity(
                CapacityChange {
                    component: Some(ComponentId(1)),
                    network: true,
                    by: "test".into(),
                    ..CapacityChange::default()
                }
                .set(Limit::RatePerSec, 500)
                .set(Limit::InFlightMax, 0),
            ),
            Input::Capacity(
                CapacityChange::default()
                    .set(Limit::DispatchPerTurnMax, 64)
                    .set(Limit::MailboxLenMax, 10)
                    .set(Limit::MailboxBytesMax, 4096)
                    .set(Limit::Burst, 3),
            ),
            Input::Quiesce,
            Input::Drain,
            Input::Shutdown,
        ];
        for input in &inputs {
            round_trip(input);
        }
    }

    #[test]
    fn records_that_are_not_inputs_are_refused_by_name() {
        let begin = Kind::Begin(rec::Begin::default());
        assert_eq!(
            Input::try_from(&begin),
            Err(InvalidRecord::NotAnInput("begin"))
        );
        let bad = Kind::Route(rec::Route {
            about: 2,
            change: Some(rec::route::Change::Handler(rec::Named {
                name: "no spaces".into(),
                on: true,
            })),
        });
        assert!(matches!(
            Input::try_from(&bad),
            Err(InvalidRecord::Name { .. })
        ));
        let far = Kind::Route(rec::Route {
            about: 2,
            change: Some(rec::route::Change::Info(rec::NodeInfo {
                locality: 7,
                load: 0,
            })),
        });
        assert_eq!(Input::try_from(&far), Err(InvalidRecord::Locality(7)));
    }
}
