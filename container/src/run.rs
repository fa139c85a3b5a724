//! `exchange run`: one container on real sockets. One thread: the loop polls the
//! app and control sockets with the host's next deadline as the timeout, feeds
//! frames to the host's node, runs handlers, and sends what they emit. No
//! thread hop between socket and handler.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use exchange_discovery::Event as MemberEvent;
use exchange_host::{Host, Output, routes};
use exchange_idl::exchange::v1::control;

use crate::control::{After, Policy, is_local};
use exchange_idl::exchange::v1::record as rec;
use exchange_runtime::{Input, Node, NodeId, Time, Transmit, TransmitError, record};
use prost::Message as _;

use crate::clock::{Clock, RealStopwatch};
use crate::config::{AppConfig, Origin, RunConfig};
use crate::discovery::Udp;
use crate::record_file::RecordFile;
use crate::registry::Registry;
use crate::transport::{Received, SocketOptions, ZmqTransport};

/// The longest the loop waits before looking at the stop flag again.
const POLL_MAX: Duration = Duration::from_millis(50);

/// How often messages held for a peer that is not connected yet are retried.
const HELD_RETRY: Duration = Duration::from_millis(2);

/// Builds the node (life `life`, see `NodeConfig::incarnation`): its
/// components, and routes to the configured peers. The routes are not
/// recorded: a replay builds the node the same way.
pub(crate) fn build_node(
    app: &AppConfig,
    run: &RunConfig,
    registry: &Registry,
    life: u64,
) -> Result<Node, String> {
    let name = app
        .components
        .iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join("+");
    let mut config = app.node.node_config(app.seed);
    config.incarnation = life;
    let mut node = Node::new(NodeId(run.node_id), &name, config);
    crate::config::add_components(&mut node, app, &app.components, registry)?;
    for peer in &app.peers {
        let handles = peer.handles.iter().map(String::as_str);
        let subscribes = peer.subscribes.iter().map(String::as_str);
        for change in routes::static_peer(NodeId(peer.node_id), handles, subscribes) {
            node.handle(Time::ZERO, Input::Route(change));
        }
    }
    Ok(node)
}

/// This process's life: its start time in µs (a restart is always a greater
/// one). The node draws its correlation ids by it, and discovery advertises it.
fn life() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_micros() as u64)
}

/// What a finished run reports.
#[derive(Debug)]
pub(crate) struct RunSummary {
    /// The node's status at exit.
    pub(crate) status: control::NodeStatus,
}

/// The container's sockets and recording file around its host.
struct Container {
    host: Host,
    transport: ZmqTransport,
    udp: Option<Udp>,
    record: Option<RecordFile>,
    /// What the control socket may do.
    policy: Policy,
    /// A drain was asked through the control plane.
    drain_asked: bool,
}

/// Runs the container until `stop` is set, then drains and shuts down.
pub(crate) fn run(
    app: &AppConfig,
    origin: &Origin,
    registry: &Registry,
    record: Option<&std::path::Path>,
    stop: &Arc<AtomicBool>,
) -> Result<RunSummary, String> {
    let run = app.check_run(origin).map_err(|error| error.to_string())?;
    let resolved = app
        .discovery
        .as_ref()
        .map(|discovery| discovery.check(&origin.to_string()))
        .transpose()
        .map_err(|error| error.to_string())?;
    let life = life();
    let mut node = build_node(app, run, registry, life)?;
    node.set_stopwatch(Box::new(RealStopwatch::new()));
    let mut host = Host::new(node);
    let record = match record {
        Some(path) => {
            let mut file = RecordFile::create(path)?;
            file.append(&record::begin(rec::Begin {
                version: 1,
                seed: app.seed,
                nodes: app.components.iter().map(|c| c.name.clone()).collect(),
                discovery: resolved.is_some(),
                container: true,
                life,
            }))?;
            host.record();
            Some(file)
        }
        None => None,
    };
    let options = SocketOptions {
        linger: run.linger,
        send_hwm: run.send_hwm,
        recv_hwm: run.recv_hwm,
        peer_wait: run.peer_wait,
        peer_queue_max: run.peer_queue_max,
        batch_max: run.batch_max,
        max_message_bytes: i64::try_from(
            app.node.message_bytes_max + exchange_runtime::codec::HEADER_BYTES_MAX + 1024,
        )
        .unwrap_or(i64::MAX),
    };
    let mut transport =
        ZmqTransport::bind(NodeId(run.node_id), &run.listen, &run.control, &options)
            .map_err(|e| e.to_string())?;
    for peer in &app.peers {
        transport
            .connect(NodeId(peer.node_id), &peer.endpoint)
            .map_err(|e| e.to_string())?;
    }
    tracing::info!(node = run.node_id, listen = ?transport.app_endpoint(), control = ?transport.control_endpoint(), "running");
    let policy = policy(run, &transport);
    let mut container = Container {
        host,
        transport,
        udp: None,
        record,
        policy,
        drain_asked: false,
    };
    let clock = Clock::new();
    container.start(run, clock.now())?;
    if let Some(resolved) = &resolved {
        container.join(resolved, run, life, clock.now())?;
    }
    container.serve(run, stop, &clock)?;
    container.stop(clock.now())
}

/// What the control socket may do: changes only on loopback or ipc://.
fn policy(run: &RunConfig, transport: &ZmqTransport) -> Policy {
    let control_endpoint = transport
        .control_endpoint()
        .unwrap_or_else(|| run.control.clone());
    let writable = is_local(&control_endpoint);
    if !writable {
        tracing::warn!(control = %control_endpoint, "the control socket is not on loopback or ipc://: it serves status and refuses changes");
    }
    Policy {
        writable,
        overlay: run.overlay.clone(),
    }
}

impl Container {
    /// Starts the components, then applies the capacity overlay (changes
    /// persisted earlier), as inputs like any other.
    fn start(&mut self, run: &RunConfig, now: Time) -> Result<(), String> {
        self.host.handle(now, Input::Start);
        if let Some(path) = &run.overlay {
            let applied = crate::control::apply_overlay(&mut self.host, now, path)?;
            if applied > 0 {
                tracing::info!(overlay = %path.display(), changes = applied, "capacity overlay applied");
            }
        }
        self.flush(now);
        Ok(())
    }

    /// Binds discovery's socket and joins the cluster (after the start, so
    /// that what the components subscribed to at start is advertised).
    fn join(
        &mut self,
        resolved: &crate::config::Discovery,
        run: &RunConfig,
        life: u64,
        now: Time,
    ) -> Result<(), String> {
        let app_endpoint = self
            .transport
            .app_endpoint()
            .unwrap_or_else(|| run.listen.clone());
        let control_endpoint = self
            .transport
            .control_endpoint()
            .unwrap_or_else(|| run.control.clone());
        let udp = Udp::bind(resolved)?;
        self.transport
            .watch(udp.fd())
            .map_err(|error| format!("cannot wait on discovery's socket: {error}"))?;
        self.udp = Some(udp);
        crate::discovery::join(
            &mut self.host,
            now,
            resolved,
            life,
            &app_endpoint,
            &control_endpoint,
        )?;
        tracing::info!(listen = %resolved.listen, advertise = %resolved.advertise, seeds = ?resolved.seeds, "discovery started");
        self.flush(now);
        Ok(())
    }

    /// Runs until stopped, then drains: no new work from other nodes, no
    /// timers; what is queued finishes within the bound.
    fn serve(&mut self, run: &RunConfig, stop: &AtomicBool, clock: &Clock) -> Result<(), String> {
        let mut drain_end: Option<Time> = None;
        // Every socket is read dry on the first turn (see `ZmqTransport::poll`).
        let mut unread = Unread {
            app: true,
            control: true,
            discovery: true,
        };
        loop {
            if drain_end.is_none() && (stop.load(Ordering::Relaxed) || self.drain_asked) {
                let now = clock.now();
                drain_end = Some(now + run.drain);
                // Others stop routing here at once.
                self.host.leave(now);
                self.host.handle(now, Input::Drain);
            }
            if drain_end.is_some_and(|end| self.host.node().is_quiet() || clock.now() >= end) {
                return Ok(());
            }
            unread = self.turn(clock, unread, run.batch_max.get())?;
        }
    }

    /// What is left is bounced (remote senders) or counted. Messages still
    /// waiting for a peer that never came up are given up on first, so that
    /// their bounces reach senders before those stop; then again after the
    /// shutdown's own bounces.
    fn stop(mut self, now: Time) -> Result<RunSummary, String> {
        let held = self.transport.fail_held();
        self.feed_back(held, now);
        self.host.handle(now, Input::Shutdown);
        self.flush(now);
        let held = self.transport.fail_held();
        self.feed_back(held, now);
        let status = self.status(now);
        if let Some(file) = self.record.take() {
            file.finish(&self.host.take_recording())?;
        }
        // Dropping the transport closes the sockets with the configured linger.
        drop(self.transport);
        Ok(RunSummary { status })
    }

    /// One turn of the loop: wait for I/O or the next deadline, take in
    /// datagrams, frames and control requests, do what is due, send what was
    /// emitted. Envelopes are read only as far as the node can run them this
    /// turn (its intake room), and at most `read_max` (a frame set's worth,
    /// `batch_max`): a turn's answers go out before the next envelopes are
    /// read, so two busy containers work at the same time instead of in turn.
    /// The rest wait in ZeroMQ's queue, which pushes back on the senders.
    /// While something is left unread, or a deadline is due, the loop looks at
    /// the sockets without waiting.
    fn turn(&mut self, clock: &Clock, unread: Unread, read_max: usize) -> Result<Unread, String> {
        let now = clock.now();
        let wait = if unread.app || unread.control || unread.discovery {
            Duration::ZERO
        } else {
            // Held messages are retried often: a peer's connection coming up is not
            // an event the loop can wait on.
            let wait_max = if self.transport.held() > 0 {
                HELD_RETRY
            } else {
                POLL_MAX
            };
            self.host.poll_timeout().map_or(wait_max, |deadline| {
                deadline.saturating_since(now).min(wait_max)
            })
        };
        let ready = self
            .transport
            .poll(wait)
            .map_err(|error| format!("poll failed: {error}"))?;
        let now = clock.now();
        let mut datagrams = false;
        if let Some(udp) = self.udp.as_mut()
            && (ready.extra || unread.discovery)
        {
            datagrams = udp.read(now, &mut self.host);
        }
        let app = (ready.app || unread.app) && self.read_app(now, read_max);
        if self.transport.waiting() {
            let instant = std::time::Instant::now();
            let failed = self.transport.retry_held(instant);
            self.feed_back(failed, now);
            self.transport.close_retired(instant);
        }
        self.host.handle_timeout(now);
        self.flush(now);
        if let Some(file) = self.record.as_mut() {
            file.append(&self.host.take_recording())?;
        }
        let control = (ready.control || unread.control) && self.serve_control(now);
        Ok(Unread {
            app,
            control,
            discovery: datagrams,
        })
    }

    /// Reads envelopes up to the node's intake room and `read_max`; returns
    /// whether some may be left.
    fn read_app(&mut self, now: Time, read_max: usize) -> bool {
        for _ in 0..self.host.node().intake_room().min(read_max) {
            match self.transport.recv_app() {
                None => return false,
                Some(Received::Frames {
                    from,
                    header,
                    payload,
                }) => {
                    let input = Input::Frame {
                        from,
                        header,
                        payload,
                    };
                    self.host.handle(now, input);
                }
                Some(Received::Garbage) => self.host.handle(now, Input::Undecodable),
            }
        }
        true
    }

    /// Transmissions the transport gave up on go back to the node, which
    /// bounces or counts each.
    fn feed_back(&mut self, failed: Vec<(Transmit, TransmitError)>, now: Time) {
        for (transmit, error) in failed {
            self.host
                .handle(now, Input::TransmitFailed { transmit, error });
        }
    }

    /// Sends what the host emitted; failures go back in as inputs. Members
    /// coming and going connect and disconnect peers.
    fn flush(&mut self, now: Time) {
        let instant = std::time::Instant::now();
        loop {
            loop {
                match self.host.poll_output() {
                    Output::Transmit(transmit) => {
                        if let Err((transmit, error)) = self.transport.send(transmit, instant) {
                            self.host
                                .handle(now, Input::TransmitFailed { transmit, error });
                        }
                    }
                    Output::Datagram(datagram) => {
                        if let Some(udp) = self.udp.as_mut() {
                            udp.send(&datagram);
                        }
                    }
                    Output::Member(event) => self.follow(&event, now),
                    Output::Event(event) => crate::report::log_event(self.host.node(), &event),
                    Output::Timeout(_) => break,
                    _ => {}
                }
            }
            // A failure may bounce to another node: send until nothing is left.
            let failed = self.transport.flush(instant);
            if failed.is_empty() {
                return;
            }
            self.feed_back(failed, now);
        }
    }

    /// Connects to a member that came up or moved; disconnects one that
    /// went down (what was held for it bounces).
    fn follow(&mut self, event: &MemberEvent, now: Time) {
        match event {
            MemberEvent::Up(member) => {
                tracing::info!(node = member.meta.node, addr = %member.addr, endpoint = %member.meta.app_endpoint, "member up");
                self.connect(member);
            }
            // Load changes make these frequent: debug only.
            MemberEvent::Changed { after, .. } => {
                tracing::debug!(
                    node = after.meta.node,
                    load = after.meta.load,
                    "member changed"
                );
                self.connect(after);
            }
            MemberEvent::Down(member) => {
                tracing::info!(node = member.meta.node, "member down");
                let failed = self.transport.disconnect(member.node());
                self.feed_back(failed, now);
            }
        }
    }

    /// Connects to a member's app endpoint (again, if it moved).
    fn connect(&mut self, member: &exchange_discovery::Member) {
        if let Err(error) = self
            .transport
            .connect(member.node(), &member.meta.app_endpoint)
        {
            tracing::warn!(node = member.meta.node, %error, "cannot connect to member");
        }
    }

    /// The host's status, with the discovery socket's send errors.
    fn status(&self, now: Time) -> control::NodeStatus {
        status_of(&self.host, now, self.udp.as_ref().map(Udp::send_errors))
    }

    /// Answers waiting control requests, up to a bound per turn; returns
    /// whether some may be left. What a change emits (its log lines) is
    /// flushed before the answer goes.
    fn serve_control(&mut self, now: Time) -> bool {
        for _ in 0..64 {
            let Some(mut frames) = self.transport.recv_control() else {
                return false;
            };
            let body = frames.pop().unwrap_or_default();
            let kind = match control::Request::decode(body.as_slice()) {
                Ok(request) if ![0, self.host.node().id().0].contains(&request.node) => {
                    crate::control::unknown_node(request.node, &[self.host.node().id().0])
                }
                Ok(request) => {
                    let udp = self.udp.as_ref().map(Udp::send_errors);
                    let (answer, after) = crate::control::answer(
                        &mut self.host,
                        now,
                        request,
                        &self.policy,
                        |host| status_of(host, now, udp),
                    );
                    self.drain_asked |= after == After::Drain;
                    answer
                }
                Err(error) => control::response::Kind::Error(format!(
                    "not an exchange.v1.control.Request: {error}"
                )),
            };
            self.flush(now);
            // The identity (and any empty delimiter) go back as they came.
            frames.push(control::Response { kind: Some(kind) }.encode_to_vec());
            self.transport.send_control(frames);
        }
        true
    }
}

/// A host's status, with the discovery socket's send errors (if it has one).
fn status_of(host: &Host, now: Time, udp_send_errors: Option<u64>) -> control::NodeStatus {
    let mut status = host.status(now);
    if let (Some(discovery), Some(errors)) = (status.discovery.as_mut(), udp_send_errors) {
        discovery.send_errors = errors;
    }
    status
}

/// Which sockets may hold what the loop has not read yet (it stopped reading
/// before a socket said it had nothing left).
#[derive(Clone, Copy, Debug)]
struct Unread {
    app: bool,
    control: bool,
    discovery: bool,
}
