//! Discovery in `exchange run`: the UDP socket the host's membership speaks
//! through, and the settings and labels it joins with. What membership events
//! do to the node is the host's (`exchange_host`); what they do to connections
//! is the run loop's.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use exchange_discovery::{Datagram, Settings};
use exchange_host::Host;
use exchange_runtime::{NodeId, Time};

use crate::config::Discovery as Resolved;

/// Datagrams read per turn at most, so a flood cannot starve the app socket.
const READS_PER_TURN: usize = 256;

/// Discovery's UDP socket.
pub(crate) struct Udp {
    socket: UdpSocket,
    buf: Box<[u8; 2048]>,
    send_errors: u64,
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
pub(crate) fn advertised_endpoint(resolved: &Resolved, bound: &str) -> String {
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

/// Joins `host` to the cluster `resolved` describes, advertising its
/// endpoints; the membership announces it to the seeds at once.
pub(crate) fn join(
    host: &mut Host,
    now: Time,
    resolved: &Resolved,
    life: u64,
    app_endpoint: &str,
    control_endpoint: &str,
) -> Result<(), String> {
    let id: NodeId = host.node().id();
    let mut settings = Settings::new(id, life, resolved.advertise, resolved.key.clone());
    settings.seeds = resolved.seeds.clone();
    settings.set_probe_period(resolved.config.probe_period);
    let host_label = resolved.config.host.clone().unwrap_or_else(host_name);
    let app_endpoint = advertised_endpoint(resolved, app_endpoint);
    let labels = exchange_host::Labels {
        version: &resolved.config.version,
        app_endpoint: &app_endpoint,
        control_endpoint,
        network: &resolved.config.network,
        host: &host_label,
    };
    host.join(now, settings, &labels)
        .map_err(|error| error.to_string())
}

impl Udp {
    /// Binds the UDP socket.
    pub(crate) fn bind(resolved: &Resolved) -> Result<Udp, String> {
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
        Ok(Udp {
            socket,
            buf: Box::new([0; 2048]),
            send_errors: 0,
        })
    }

    /// The socket's descriptor, for the loop's poll.
    pub(crate) fn fd(&self) -> std::os::fd::RawFd {
        self.socket.as_raw_fd()
    }

    /// Hands what waits on the socket (up to a bound) to `host`; returns
    /// whether some may be left.
    pub(crate) fn read(&mut self, now: Time, host: &mut Host) -> bool {
        for _ in 0..READS_PER_TURN {
            match self.socket.recv_from(&mut self.buf[..]) {
                Ok((len, from)) => host.handle_datagram(now, from, &self.buf[..len]),
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => return false,
                // ICMP errors from earlier sends (port unreachable) surface here.
                Err(_) => {}
            }
        }
        true
    }

    /// Sends a datagram. One the socket refuses (no route, buffer full) is
    /// lost like one lost on the network, and counted.
    pub(crate) fn send(&mut self, datagram: &Datagram) {
        if self.socket.send_to(&datagram.bytes, datagram.to).is_err() {
            self.send_errors += 1;
        }
    }

    /// Datagrams the socket refused to send.
    pub(crate) fn send_errors(&self) -> u64 {
        self.send_errors
    }
}
