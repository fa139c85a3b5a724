//! The control plane's answers: one `exchange.v1.control.Request` in, one
//! `Response` out, against a host. No sockets here: `exchange run` feeds it
//! what its control socket reads. A change of capacity is checked, handed to
//! the node as an input (so it is recorded and replayed), logged with who
//! asked and old → new, and answered with the values now in force.

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use exchange_host::Host;
use exchange_idl::exchange::v1::control::{self, request::Kind as Ask, response::Kind as Answer};
use exchange_runtime::{CapacityChange, CapacityError, ComponentId, Input, Node, Time};

/// What the control plane may do on this socket, and where a persisted
/// change goes.
#[derive(Clone, Debug)]
pub(crate) struct Policy {
    /// Changes (capacity, drain) are taken: the socket is bound to loopback
    /// or ipc:// (until node keys exist, that is who may write).
    pub(crate) writable: bool,
    /// The overlay file `persist` appends to; none: persisting is refused.
    pub(crate) overlay: Option<std::path::PathBuf>,
}

/// Whether a bound control endpoint only this machine can reach: loopback
/// or ipc://.
pub(crate) fn is_local(endpoint: &str) -> bool {
    if endpoint.starts_with("ipc://") {
        return true;
    }
    let Some(address) = endpoint.strip_prefix("tcp://") else {
        return false;
    };
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// What the caller must do after answering.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum After {
    /// Nothing more.
    Nothing,
    /// Drain and stop the container (after sending the answer).
    Drain,
}

fn refusal(code: &str, message: String) -> Answer {
    Answer::Refused(control::Refusal {
        code: code.to_owned(),
        message,
        ..control::Refusal::default()
    })
}

/// The refusal of a request for another node than those this socket serves.
pub(crate) fn unknown_node(node: u64, serves: &[u64]) -> Answer {
    let serves: Vec<String> = serves.iter().map(|n| format!("n{n}")).collect();
    refusal(
        "unknown_node",
        format!(
            "this control socket serves {}, not n{node}",
            serves.join(", ")
        ),
    )
}

/// Answers one request at `now` (for whichever node `host` is: the caller
/// picked it by the request's `node`). `status` is the container's status
/// (the host's, with what only the container knows filled in).
pub(crate) fn answer(
    host: &mut Host,
    now: Time,
    request: control::Request,
    policy: &Policy,
    status: impl FnOnce(&Host) -> control::NodeStatus,
) -> (Answer, After) {
    let by = match request.client.as_str() {
        "" => "control".to_owned(),
        client => format!("control ({client})"),
    };
    let Some(ask) = request.kind else {
        let kinds = "status, get_capacity, set_capacity, members, names, drain";
        return (
            Answer::Error(format!("empty request: set a kind ({kinds})")),
            After::Nothing,
        );
    };
    let answer = match ask {
        Ask::Status(_) => Answer::Status(status(host)),
        Ask::GetCapacity(get) => match component(host.node(), &get.component) {
            Ok(id) => Answer::Capacity(host.node().capacity_reply(id)),
            Err(refusal) => Answer::Refused(refusal),
        },
        Ask::SetCapacity(set) if policy.writable => set_capacity(host, now, &set, policy, &by),
        Ask::Drain(_) if policy.writable => {
            tracing::warn!(%by, "drain asked through the control plane");
            let drained = control::Drained {
                node: host.node().id().0,
            };
            return (Answer::Drained(drained), After::Drain);
        }
        Ask::SetCapacity(_) | Ask::Drain(_) => refusal(
            "read_only",
            "this control socket is not bound to loopback or ipc://, so it takes no changes".into(),
        ),
        Ask::Members(_) => Answer::Members(members(host)),
        Ask::Names(_) => Answer::Names(names(host)),
    };
    (answer, After::Nothing)
}

/// A component by name (`""`: all of them), or the refusal naming those known.
fn component(node: &Node, name: &str) -> Result<Option<ComponentId>, control::Refusal> {
    if name.is_empty() {
        return Ok(None);
    }
    let mut known = Vec::new();
    for (id, component, _) in node.components() {
        if component == name {
            return Ok(Some(id));
        }
        known.push(component.to_owned());
    }
    Err(control::Refusal {
        code: "unknown_component".into(),
        message: format!(
            "no component {name:?} on node {}; it has: {}",
            node.id().0,
            known.join(", ")
        ),
        known,
        ..control::Refusal::default()
    })
}

/// The change a `SetCapacity` asks for, for `component`.
fn change_of(
    set: &control::SetCapacity,
    component: Option<ComponentId>,
    by: &str,
) -> CapacityChange {
    CapacityChange {
        component,
        network: set.network,
        values: [
            set.mailbox_len_max,
            set.mailbox_bytes_max,
            set.rate,
            set.burst,
            set.in_flight_max,
            set.dispatch_per_turn_max,
        ],
        by: by.to_owned(),
    }
}

fn set_capacity(
    host: &mut Host,
    now: Time,
    set: &control::SetCapacity,
    policy: &Policy,
    by: &str,
) -> Answer {
    let id = match component(host.node(), &set.component) {
        Ok(id) => id,
        Err(refusal) => return Answer::Refused(refusal),
    };
    let change = change_of(set, id, by);
    if let Err(error) = host.node().check_capacity(&change) {
        return capacity_refusal(&error);
    }
    if set.persist {
        let Some(path) = &policy.overlay else {
            let why = "no run.overlay file is configured; nothing changed".to_owned();
            return refusal("persist_failed", why);
        };
        if let Err(error) = persist(path, set) {
            let why = format!("cannot write {}: {error}; nothing changed", path.display());
            return refusal("persist_failed", why);
        }
    }
    host.handle(now, Input::Capacity(change));
    Answer::Capacity(host.node().capacity_reply(id))
}

fn capacity_refusal(error: &CapacityError) -> Answer {
    let mut refusal = control::Refusal {
        message: error.to_string(),
        ..control::Refusal::default()
    };
    match error {
        CapacityError::OutOfRange {
            limit, min, max, ..
        } => {
            refusal.code = "out_of_range".into();
            refusal.limit = limit.name().into();
            (refusal.min, refusal.max) = (*min, *max);
        }
        CapacityError::NodeWide(limit) => {
            refusal.code = "node_wide".into();
            refusal.limit = limit.name().into();
        }
        CapacityError::Empty => refusal.code = "empty".into(),
        _ => refusal.code = "unknown_component".into(),
    }
    Answer::Refused(refusal)
}

/// Appends a change to the overlay file (created if missing): a
/// `[[capacity]]` table, read back at start in order.
fn persist(path: &Path, set: &control::SetCapacity) -> std::io::Result<()> {
    let entry = OverlayEntry::from(set);
    let mut table = toml::map::Map::new();
    let value = toml::Value::try_from(&entry).map_err(std::io::Error::other)?;
    table.insert("capacity".into(), toml::Value::Array(vec![value]));
    let text = toml::to_string(&table).map_err(std::io::Error::other)?;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(file, "{text}")?;
    file.sync_all()
}

/// One persisted change in the overlay file (`[[capacity]]`).
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct OverlayEntry {
    /// The component; empty: every component of the container.
    #[serde(default)]
    component: String,
    #[serde(default)]
    network: bool,
    mailbox_len_max: Option<u64>,
    mailbox_bytes_max: Option<u64>,
    rate: Option<u64>,
    burst: Option<u64>,
    in_flight_max: Option<u64>,
    dispatch_per_turn_max: Option<u64>,
}

impl From<&control::SetCapacity> for OverlayEntry {
    fn from(set: &control::SetCapacity) -> OverlayEntry {
        OverlayEntry {
            component: set.component.clone(),
            network: set.network,
            mailbox_len_max: set.mailbox_len_max,
            mailbox_bytes_max: set.mailbox_bytes_max,
            rate: set.rate,
            burst: set.burst,
            in_flight_max: set.in_flight_max,
            dispatch_per_turn_max: set.dispatch_per_turn_max,
        }
    }
}

impl From<&OverlayEntry> for control::SetCapacity {
    fn from(entry: &OverlayEntry) -> control::SetCapacity {
        control::SetCapacity {
            component: entry.component.clone(),
            network: entry.network,
            mailbox_len_max: entry.mailbox_len_max,
            mailbox_bytes_max: entry.mailbox_bytes_max,
            rate: entry.rate,
            burst: entry.burst,
            in_flight_max: entry.in_flight_max,
            dispatch_per_turn_max: entry.dispatch_per_turn_max,
            persist: false,
        }
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Overlay {
    #[serde(default)]
    capacity: Vec<OverlayEntry>,
}

/// Applies the overlay file's changes at start, in order, as inputs to the
/// node. A missing file is no change; one that does not read, or a change
/// that does not check, stops the start with the file and entry named.
pub(crate) fn apply_overlay(host: &mut Host, now: Time, path: &Path) -> Result<usize, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(error) => return Err(format!("run.overlay {}: {error}", path.display())),
    };
    let overlay: Overlay = toml::from_str(&text)
        .map_err(|error| format!("run.overlay {}: {error}", path.display()))?;
    let by = format!("overlay {}", path.display());
    for (i, entry) in overlay.capacity.iter().enumerate() {
        let entry_error =
            |why: String| format!("run.overlay {} capacity[{i}]: {why}", path.display());
        let set = control::SetCapacity::from(entry);
        let id = component(host.node(), &set.component)
            .map_err(|refusal| entry_error(refusal.message))?;
        let change = change_of(&set, id, &by);
        host.node()
            .check_capacity(&change)
            .map_err(|error| entry_error(error.to_string()))?;
        host.handle(now, Input::Capacity(change));
    }
    Ok(overlay.capacity.len())
}

fn members(host: &Host) -> control::Members {
    let node = host.node();
    let Some(membership) = host.membership() else {
        let this = control::Member {
            node: node.id().0,
            handles: node
                .router()
                .local_names()
                .iter()
                .map(|n| n.to_string())
                .collect(),
            load: node.queued() as u32,
            this_node: true,
            ..control::Member::default()
        };
        return control::Members {
            members: vec![this],
        };
    };
    let member =
        |meta: &exchange_idl::exchange::v1::discovery::Member, this_node: bool| control::Member {
            node: meta.node,
            app_endpoint: meta.app_endpoint.clone(),
            control_endpoint: meta.control_endpoint.clone(),
            network: meta.network.clone(),
            host: meta.host.clone(),
            handles: meta.handles.iter().map(|h| h.name.clone()).collect(),
            load: meta.load,
            this_node,
        };
    let mut others: Vec<_> = membership
        .members()
        .map(|m| member(&m.meta, false))
        .collect();
    others.sort_by_key(|m| m.node);
    let mut this = member(membership.local(), true);
    this.node = node.id().0;
    let mut members = vec![this];
    members.extend(others);
    control::Members { members }
}

fn names(host: &Host) -> control::Names {
    let node = host.node();
    let mut names: Vec<control::NameHandlers> = node
        .router()
        .handlers()
        .map(|(name, local, remote)| {
            let mut nodes: Vec<u64> = remote.iter().map(|n| n.0).collect();
            if !local.is_empty() {
                nodes.push(node.id().0);
            }
            nodes.sort_unstable();
            control::NameHandlers {
                name: name.to_string(),
                nodes,
            }
        })
        .collect();
    names.sort_by(|a, b| a.name.cmp(&b.name));
    control::Names { names }
}

/// A control socket of its own (`exchange dev --control`): a ROUTER bound at
/// an endpoint, read without blocking. (`exchange run`'s is part of its
/// transport, polled with the app socket.)
pub(crate) struct ControlSocket {
    socket: zmq::Socket,
    _context: zmq::Context,
}

impl ControlSocket {
    /// Binds `endpoint` (requests are at most 64 KiB, as on `exchange run`).
    pub(crate) fn bind(endpoint: &str) -> Result<ControlSocket, String> {
        let context = zmq::Context::new();
        let bound = |error: zmq::Error| format!("--control {endpoint}: {error}");
        let socket = context.socket(zmq::ROUTER).map_err(bound)?;
        socket.set_linger(0).map_err(bound)?;
        socket.set_maxmsgsize(64 * 1024).map_err(bound)?;
        socket.bind(endpoint).map_err(bound)?;
        Ok(ControlSocket {
            socket,
            _context: context,
        })
    }

    /// The endpoint as bound (a port 0 resolved).
    pub(crate) fn endpoint(&self) -> Option<String> {
        self.socket.get_last_endpoint().ok().and_then(Result::ok)
    }

    /// Waits up to `timeout` for a request.
    pub(crate) fn wait(&self, timeout: Duration) {
        let mut items = [self.socket.as_poll_item(zmq::POLLIN)];
        let ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
        let _ = zmq::poll(&mut items, ms);
    }

    /// The next request's frames (identity first, then the body), if any.
    pub(crate) fn recv(&self) -> Option<Vec<Vec<u8>>> {
        self.socket.recv_multipart(zmq::DONTWAIT).ok()
    }

    /// Sends an answer; a client that went away is ignored.
    pub(crate) fn send(&self, frames: Vec<Vec<u8>>) {
        let _ = self.socket.send_multipart(frames, zmq::DONTWAIT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_and_ipc_control_sockets_take_changes() {
        for local in [
            "ipc:///tmp/x.sock",
            "tcp://127.0.0.1:7002",
            "tcp://127.0.0.9:1",
            "tcp://[::1]:7002",
            "tcp://localhost:7002",
        ] {
            assert!(is_local(local), "{local}");
        }
        for remote in ["tcp://0.0.0.0:7002", "tcp://*:7002", "tcp://10.0.0.5:7002"] {
            assert!(!is_local(remote), "{remote}");
        }
    }
}
