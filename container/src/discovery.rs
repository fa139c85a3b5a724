//! Discovery in `exchange run`: the UDP socket around the sans-IO
//! [`Membership`], and what its events do to this container (routes through
//! [`exchange_discovery::routes`], connections through the transport).

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use exchange_discovery::{Event, Membership, Refusal, Settings, routes};
use exchange_idl::exchange::v1::control;
use exchange_runtime::{Node, RouteChange, Time, Transmit, TransmitError};

use crate::config::Discovery as Resolved;
use crate::transport::ZmqTransport;

/// Datagrams read per turn at most, so a flood cannot starve the app socket.
const READS_PER_TURN: usize = 256;

/// Membership on a real UDP socket.
pub struct Discovery {
    socket: UdpSocket,
    membership: Membership,
    buf: Box<[u8; 2048]>,
    send_errors: u64,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery")
            .field("membership", &self.membership)
            .finish_non_exhaustive()
    }
}

/// The machine's host name, for the `host` label.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The app endpoint to advertise: as configured, else the bound one with an
/// unspecified host (0.0.0.0, *) replaced by the advertised discovery address.
fn advertised_endpoint(resolved: &Resolved, bound: &str) -> String {
    if let Some(endpoint) = &resolved.config.app_endpoint {
        return endpoint.clone();
    }
    let Some(rest) = bound.strip_prefix("tcp://") else {
        return bound.to_owned();
    };
    let Some((host, port)) = rest.rsplit_once(':') else {
        return bound.to_owned();
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let unspecified = host == "*"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_unspecified());
    if !unspecified {
        return bound.to_owned();
    }
    match resolved.advertise {
        SocketAddr::V4(addr) => format!("tcp://{}:{port}", addr.ip()),
        SocketAddr::V6(addr) => format!("tcp://[{}]:{port}", addr.ip()),
    }
}

impl Discovery {
    /// Binds the UDP socket and builds the membership advertising `node`'s
    /// names and the transport's endpoints.
    pub fn bind(
        resolved: &Resolved,
        node: &Node,
        life: u64,
        app_endpoint: &str,
        control_endpoint: &str,
    ) -> Result<Discovery, String> {
        let socket = UdpSocket::bind(resolved.listen).map_err(|error| {
            if error.kind() == std::io::ErrorKind::AddrInUse {
                format!(
                    "discovery.listen = {}: the address is already in use",
                    resolved.listen
                )
            } else {
                format!(
                    "discovery.listen = {}: cannot bind: {error}",
                    resolved.listen
                )
            }
        })?;
        socket
            .set_nonblocking(true)
            .map_err(|error| format!("discovery socket: {error}"))?;
        let mut settings = Settings::new(node.id(), life, resolved.advertise, resolved.key.clone());
        settings.seeds = resolved.seeds.clone();
        settings.set_probe_period(resolved.config.probe_period);
        let host = resolved.config.host.clone().unwrap_or_else(host_name);
        let meta = routes::local_meta(
            node,
            &resolved.config.version,
            &advertised_endpoint(resolved, app_endpoint),
            control_endpoint,
            &resolved.config.network,
            &host,
        );
        let membership = Membership::new(settings, meta).map_err(|error| error.to_string())?;
        Ok(Discovery {
            socket,
            membership,
            buf: Box::new([0; 2048]),
            send_errors: 0,
        })
    }

    /// The socket's descriptor, for the loop's poll.
    pub fn fd(&self) -> std::os::fd::RawFd {
        self.socket.as_raw_fd()
    }

    /// Joins: announces this node to the seeds.
    pub fn start(&mut self, now: Time) {
        self.membership.start(now);
        self.send();
    }

    /// Reads what waits on the socket (up to a bound); returns whether some
    /// may be left.
    pub fn read(&mut self, now: Time) -> bool {
        for _ in 0..READS_PER_TURN {
            match self.socket.recv_from(&mut self.buf[..]) {
                Ok((len, from)) => self.membership.handle_datagram(now, from, &self.buf[..len]),
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => return false,
                // ICMP errors from earlier sends (port unreachable) surface here.
                Err(_) => {}
            }
        }
        true
    }

    /// When the membership next needs a turn.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.membership.poll_timeout()
    }

    /// Runs the membership's timers if due.
    pub fn handle_timeout(&mut self, now: Time) {
        if self.membership.poll_timeout().is_some_and(|at| at <= now) {
            self.membership.handle_timeout(now);
        }
    }

    /// Sends what the membership queued. A datagram the socket refuses (no
    /// route, buffer full) is lost like one lost on the network, and counted.
    pub fn send(&mut self) {
        while let Some(datagram) = self.membership.poll_transmit() {
            if self.socket.send_to(&datagram.bytes, datagram.to).is_err() {
                self.send_errors += 1;
            }
        }
    }

    /// Applies membership events: connections in the transport, and the
    /// route changes each makes, handed to `change_route` for the node.
    /// Returns what the transport gave up on (held for a member that went
    /// down), for the node to bounce.
    pub fn apply(
        &mut self,
        transport: &mut ZmqTransport,
        mut change_route: impl FnMut(&RouteChange),
    ) -> Vec<(Transmit, TransmitError)> {
        let mut failed = Vec::new();
        while let Some(event) = self.membership.poll_event() {
            match &event {
                Event::Up(member) => {
                    tracing::info!(node = member.meta.node, addr = %member.addr, endpoint = %member.meta.app_endpoint, "member up");
                    connect(transport, member);
                }
                // Load changes make these frequent: debug only.
                Event::Changed { after, .. } => {
                    tracing::debug!(
                        node = after.meta.node,
                        load = after.meta.load,
                        "member changed"
                    );
                    connect(transport, after);
                }
                Event::Down(member) => {
                    tracing::info!(node = member.meta.node, "member down");
                    failed.extend(transport.disconnect(member.node()));
                }
            }
            routes::changes(self.membership.local(), &event, |change| {
                change_route(&change);
            });
        }
        failed
    }

    /// Follows the node's own subscriptions and load.
    pub fn note_interest(&mut self, now: Time, name: &str, subscribed: bool) {
        let _ = self.membership.update_meta(now, |meta| {
            routes::note_interest(meta, name, subscribed);
        });
    }

    /// Reports the node's load (messages queued).
    pub fn set_load(&mut self, now: Time, queued: usize) {
        self.membership.set_load(now, queued);
    }

    /// Leaves the cluster (at shutdown) and sends the news.
    pub fn leave(&mut self, now: Time) {
        self.membership.leave(now);
        self.send();
    }

    /// What the control plane reports.
    pub fn status(&self) -> control::DiscoveryStatus {
        let membership = &self.membership;
        let stats = membership.stats();
        control::DiscoveryStatus {
            members: membership.members().map(|m| m.meta.node).collect(),
            active: membership.is_active(),
            life: membership.local().life,
            datagrams_in: stats.datagrams_in,
            datagrams_out: stats.datagrams_out,
            bytes_in: stats.bytes_in,
            bytes_out: stats.bytes_out,
            refused: Refusal::ALL
                .iter()
                .map(|r| (r.name().to_owned(), membership.refused(*r)))
                .collect(),
            malformed: stats.malformed,
            send_errors: self.send_errors,
            ups: stats.ups,
            changes: stats.changes,
            downs: stats.downs,
            downs_held: stats.downs_held,
            downs_averted: stats.downs_averted,
        }
    }
}

/// Connects to a member's app endpoint (again, if it moved).
fn connect(transport: &mut ZmqTransport, member: &exchange_discovery::Member) {
    if let Err(error) = transport.connect(member.node(), &member.meta.app_endpoint) {
        tracing::warn!(node = member.meta.node, %error, "cannot connect to member");
    }
}
