//! `exchange run`: one container on real sockets. One thread: the loop polls the
//! app and control sockets with the node's next deadline as the timeout, feeds
//! frames to the node, runs handlers, and sends what they emit. No thread hop
//! between socket and handler.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use exchange_idl::exchange::v1::control;
use exchange_idl::exchange::v1::record::{self as rec, record::Kind as Input};
use exchange_runtime::record::Recorder;
use exchange_runtime::{
    Event, Node, NodeId, Output, RouteChange, Time, Transmit, TransmitError, record,
};
use prost::Message as _;

use crate::clock::{Clock, RealStopwatch};
use crate::config::{AppConfig, Origin, RunConfig};
use crate::discovery::Discovery;
use crate::record_file::RecordFile;
use crate::registry::Registry;
use crate::transport::{Received, SocketOptions, ZmqTransport};

/// The longest the loop waits before looking at the stop flag again.
const POLL_MAX: Duration = Duration::from_millis(50);

/// How often messages held for a peer that is not connected yet are retried.
const HELD_RETRY: Duration = Duration::from_millis(2);

/// Builds the node (life `life`, see `NodeConfig::incarnation`): its
/// components, and routes to the configured peers.
pub fn build_node(
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
        for name in &peer.handles {
            node.router_mut()
                .add_remote_handler(name, NodeId(peer.node_id));
        }
        for name in &peer.subscribes {
            node.router_mut()
                .set_remote_subscriber(name, NodeId(peer.node_id), true);
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
pub struct RunSummary {
    /// The node's status at exit.
    pub status: control::NodeStatus,
}

/// Runs the container until `stop` is set, then drains and shuts down.
pub fn run(
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
    let node = build_node(app, run, registry, life)?;
    let recording = match record {
        Some(path) => {
            let begin = rec::Begin {
                version: 1,
                seed: app.seed,
                nodes: app.components.iter().map(|c| c.name.clone()).collect(),
                discovery: resolved.is_some(),
                container: true,
                life,
            };
            Some((Recorder::new(begin), RecordFile::create(path)?))
        }
        None => None,
    };
    let mut node = Host { node, recording };
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

    let clock = Clock::new();
    let mut stopwatch = RealStopwatch::new();
    node.start(clock.now());
    let mut discovery = None;
    flush(&mut node, &mut transport, &mut discovery, clock.now());
    if let Some(resolved) = &resolved {
        let app_endpoint = transport
            .app_endpoint()
            .unwrap_or_else(|| run.listen.clone());
        let control_endpoint = transport
            .control_endpoint()
            .unwrap_or_else(|| run.control.clone());
        let mut joined =
            Discovery::bind(resolved, &node.node, life, &app_endpoint, &control_endpoint)?;
        transport
            .watch(joined.fd())
            .map_err(|error| format!("cannot wait on discovery's socket: {error}"))?;
        joined.start(clock.now());
        tracing::info!(listen = %resolved.listen, advertise = %resolved.advertise, seeds = ?resolved.seeds, "discovery started");
        discovery = Some(joined);
    }
    // Run until stopped, then drain: no new work from other nodes, no timers;
    // what is queued finishes within the bound.
    let mut drain_end: Option<Time> = None;
    // Both sockets are read dry on the first turn (see `ZmqTransport::poll`).
    let mut unread = Unread {
        app: true,
        control: true,
        discovery: true,
    };
    loop {
        if drain_end.is_none() && stop.load(Ordering::Relaxed) {
            drain_end = Some(clock.now() + run.drain);
            node.drain(clock.now());
            // Others stop routing here at once.
            if let Some(discovery) = &mut discovery {
                discovery.leave(clock.now());
            }
        }
        if drain_end.is_some_and(|end| node.node.is_quiet() || clock.now() >= end) {
            break;
        }
        unread = turn(
            &mut node,
            &mut transport,
            &mut discovery,
            &clock,
            &mut stopwatch,
            unread,
            run.batch_max.get(),
        )?;
    }
    // Then what is left is bounced (remote senders) or counted. Messages still
    // waiting for a peer that never came up are given up on first, so that their
    // bounces reach senders before those stop; then again after the shutdown's
    // own bounces.
    let now = clock.now();
    feed_back(&mut node, transport.fail_held(), now);
    node.shutdown(now);
    flush(&mut node, &mut transport, &mut discovery, now);
    feed_back(&mut node, transport.fail_held(), now);
    let status = status(&node.node, discovery.as_ref(), clock.now());
    if let Some((mut recorder, file)) = node.recording {
        file.finish(&recorder.take())?;
    }
    // Dropping the transport closes the sockets with the configured linger.
    drop(transport);
    Ok(RunSummary { status })
}

/// Which sockets may hold what the loop has not read yet (it stopped reading
/// before a socket said it had nothing left).
#[derive(Clone, Copy, Debug)]
struct Unread {
    app: bool,
    control: bool,
    discovery: bool,
}

/// One turn of the loop: wait for I/O or the next deadline, take in frames and
/// control requests, run handlers, send what they emitted. Envelopes are read
/// only as far as the node can run them this turn (its intake room), and at
/// most `read_max` (a frame set's worth, `batch_max`): a turn's answers go out
/// before the next envelopes are read, so two busy containers work at the same
/// time instead of in turn. The rest wait in ZeroMQ's queue, which pushes back
/// on the senders. While something is left unread, or a deadline is due, the
/// loop looks at the sockets without waiting.
fn turn(
    node: &mut Host,
    transport: &mut ZmqTransport,
    discovery: &mut Option<Discovery>,
    clock: &Clock,
    stopwatch: &mut RealStopwatch,
    unread: Unread,
    read_max: usize,
) -> Result<Unread, String> {
    let now = clock.now();
    let deadline = [
        node.node.poll_timeout(),
        discovery.as_ref().and_then(Discovery::poll_timeout),
    ]
    .into_iter()
    .flatten()
    .min();
    let wait = if unread.app || unread.control || unread.discovery {
        Duration::ZERO
    } else {
        // Held messages are retried often: a peer's connection coming up is not
        // an event the loop can wait on.
        let wait_max = if transport.held() > 0 {
            HELD_RETRY
        } else {
            POLL_MAX
        };
        deadline.map_or(wait_max, |deadline| {
            deadline.saturating_since(now).min(wait_max)
        })
    };
    let ready = transport
        .poll(wait)
        .map_err(|error| format!("poll failed: {error}"))?;
    let now = clock.now();
    let mut datagrams = false;
    if let Some(discovery) = discovery {
        if ready.extra || unread.discovery {
            datagrams = discovery.read(now);
        }
        discovery.handle_timeout(now);
        let failed = discovery.apply(transport, |change| node.change_route(now, change));
        feed_back(node, failed, now);
        discovery.set_load(now, node.node.queued());
        discovery.send();
    }
    let mut app = false;
    if ready.app || unread.app {
        app = true;
        for _ in 0..node.node.intake_room().min(read_max) {
            match transport.recv_app() {
                None => {
                    app = false;
                    break;
                }
                Some(Received::Frames {
                    from,
                    header,
                    payload,
                }) => node.handle_frame(now, from, header, payload),
                Some(Received::Garbage) => node.handle_undecodable(now),
            }
        }
    }
    if transport.waiting() {
        let instant = std::time::Instant::now();
        feed_back(node, transport.retry_held(instant), now);
        transport.close_retired(instant);
    }
    if node
        .node
        .poll_timeout()
        .is_some_and(|deadline| deadline <= now)
    {
        node.handle_timeout(now);
    }
    node.run(now, stopwatch);
    flush(node, transport, discovery, now);
    node.write_recording()?;
    let control = (ready.control || unread.control)
        && serve_control(&node.node, transport, discovery.as_ref(), now);
    Ok(Unread {
        app,
        control,
        discovery: datagrams,
    })
}

/// Transmissions the transport gave up on go back to the node, which bounces or
/// counts each.
fn feed_back(node: &mut Host, failed: Vec<(Transmit, TransmitError)>, now: Time) {
    for (transmit, error) in failed {
        node.handle_transmit_error(now, transmit, error);
    }
}

/// Sends what the node emitted; failures go back in as inputs. Changes in the
/// node's subscriptions go to discovery, which advertises them.
fn flush(
    node: &mut Host,
    transport: &mut ZmqTransport,
    discovery: &mut Option<Discovery>,
    now: Time,
) {
    let instant = std::time::Instant::now();
    loop {
        while let Some(output) = node.poll_output() {
            match output {
                Output::Transmit(transmit) => {
                    if let Err((transmit, error)) = transport.send(transmit, instant) {
                        node.handle_transmit_error(now, transmit, error);
                    }
                }
                Output::Event(Event::Interest { name, subscribed }) => {
                    if let Some(discovery) = discovery {
                        discovery.note_interest(now, name.as_str(), subscribed);
                    }
                }
                Output::Event(event) => crate::report::log_event(node.node.id(), &event),
            }
        }
        // A failure may bounce to another node: send until nothing is left.
        let failed = transport.flush(instant);
        if failed.is_empty() {
            break;
        }
        feed_back(node, failed, now);
    }
    node.drained(now);
    if let Some(discovery) = discovery {
        discovery.send();
    }
}

/// The container's node, and with `--record` its recorder: every input the
/// node takes goes through here and is recorded (`exchange sim --replay`
/// feeds them to a fresh node built from the same config).
struct Host {
    node: Node,
    recording: Option<(Recorder, RecordFile)>,
}

impl Host {
    fn note(&mut self, now: Time, input: impl FnOnce() -> Input) {
        if let Some((recorder, _)) = self.recording.as_mut() {
            recorder.input(self.node.id(), now, input());
        }
    }

    fn start(&mut self, now: Time) {
        self.note(now, || Input::Start(rec::Empty {}));
        self.node.start(now);
    }

    fn handle_frame(&mut self, now: Time, from: NodeId, header: &[u8], payload: Bytes) {
        self.note(now, || record::frame(from, header, &payload));
        self.node.handle_frame(now, from, header, payload);
    }

    fn handle_undecodable(&mut self, now: Time) {
        self.note(now, || Input::Undecodable(rec::Empty {}));
        self.node.handle_undecodable(now);
    }

    fn handle_timeout(&mut self, now: Time) {
        self.note(now, || Input::Timeout(rec::Empty {}));
        self.node.handle_timeout(now);
    }

    fn run(&mut self, now: Time, stopwatch: &mut RealStopwatch) {
        // A turn with nothing queued changes nothing: not worth a record.
        if !self.node.is_quiet() {
            self.note(now, || Input::Run(rec::Empty {}));
        }
        self.node.run(now, stopwatch);
    }

    fn handle_transmit_error(&mut self, now: Time, transmit: Transmit, error: TransmitError) {
        self.note(now, || record::transmit_failed(&transmit, error));
        self.node.handle_transmit_error(now, transmit, error);
    }

    fn change_route(&mut self, now: Time, change: &RouteChange) {
        self.note(now, || record::route(change));
        self.node.change_route(now, change);
    }

    fn drain(&mut self, now: Time) {
        self.note(now, || Input::Drain(rec::Empty {}));
        self.node.drain(now);
    }

    fn shutdown(&mut self, now: Time) {
        self.note(now, || Input::Shutdown(rec::Empty {}));
        self.node.shutdown(now);
    }

    fn poll_output(&mut self) -> Option<Output> {
        let output = self.node.poll_output()?;
        if let Some((recorder, _)) = self.recording.as_mut() {
            recorder.output(&output);
        }
        Some(output)
    }

    /// The outputs were polled until none was left.
    fn drained(&mut self, now: Time) {
        if let Some((recorder, _)) = self.recording.as_mut() {
            recorder.drained(self.node.id(), now);
        }
    }

    fn write_recording(&mut self) -> Result<(), String> {
        match self.recording.as_mut() {
            Some((recorder, file)) => file.append(&recorder.take()),
            None => Ok(()),
        }
    }
}

/// The node's status, with what discovery knows.
fn status(node: &Node, discovery: Option<&Discovery>, now: Time) -> control::NodeStatus {
    control::NodeStatus {
        discovery: discovery.map(Discovery::status),
        ..node.status(now)
    }
}

/// Answers waiting control requests, up to a bound per turn; returns whether
/// some may be left.
fn serve_control(
    node: &Node,
    transport: &ZmqTransport,
    discovery: Option<&Discovery>,
    now: Time,
) -> bool {
    for _ in 0..64 {
        let Some(mut frames) = transport.recv_control() else {
            return false;
        };
        let body = frames.pop().unwrap_or_default();
        let kind = match control::Request::decode(body.as_slice()) {
            Ok(control::Request {
                kind: Some(control::request::Kind::Status(_)),
            }) => control::response::Kind::Status(status(node, discovery, now)),
            Ok(_) => control::response::Kind::Error("empty request: set a kind (status)".into()),
            Err(error) => control::response::Kind::Error(format!(
                "not an exchange.v1.control.Request: {error}"
            )),
        };
        // The identity (and any empty delimiter) go back as they came.
        frames.push(control::Response { kind: Some(kind) }.encode_to_vec());
        transport.send_control(frames);
    }
    true
}
