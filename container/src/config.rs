//! App configuration: TOML read with the `config` crate, overridable from the
//! environment (`EXCHANGE__SEED=7`, `EXCHANGE__NODE__TRACE_SAMPLE_ONE_IN=1`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use exchange_runtime::{ComponentLimits, NodeConfig};
use serde::Deserialize;

use crate::registry::Registry;

/// A whole app: its components and the limits they run under.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// Seeds every RNG of the run.
    #[serde(default)]
    pub seed: u64,
    /// Defaults for every component's limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Node-wide settings.
    #[serde(default)]
    pub node: NodeSettings,
    /// The in-memory network of `exchange dev`.
    #[serde(default)]
    pub dev: DevNetworkConfig,
    /// The simulated nodes of `exchange sim`.
    #[serde(default)]
    pub sim: SimConfig,
    /// The components, in start order.
    #[serde(rename = "component", default)]
    pub components: Vec<ComponentConfig>,
    /// This container in `exchange run`.
    #[serde(default)]
    pub run: Option<RunConfig>,
    /// Other containers `exchange run` talks to, configured statically (with
    /// `[discovery]` they are found instead; both may be used together).
    #[serde(rename = "peer", default)]
    pub peers: Vec<PeerConfig>,
    /// Finding the other containers from a seed set (`exchange run`).
    #[serde(default)]
    pub discovery: Option<DiscoveryConfig>,
}

/// `[discovery]`: membership over UDP from a seed set.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// The UDP address to bind (`127.0.0.1:7301`, `0.0.0.0:7301`).
    pub listen: String,
    /// The address others reach this node's discovery at; defaults to
    /// `listen` (which must then be a specific address, not 0.0.0.0).
    #[serde(default)]
    pub advertise: Option<String>,
    /// Members to announce this node to while it knows no live member
    /// (`host:port`); any one live seed suffices. May include this node.
    #[serde(default)]
    pub seeds: Vec<String>,
    /// The cluster's shared secret (at least 16 bytes), or
    #[serde(default)]
    pub cluster_key: Option<String>,
    /// a file holding it (its bytes, a trailing newline ignored).
    #[serde(default)]
    pub cluster_key_file: Option<PathBuf>,
    /// The `network` label: handlers on this node's network are preferred.
    #[serde(default = "DiscoveryConfig::default_network")]
    pub network: String,
    /// The `host` label: handlers on this node's host are preferred most;
    /// defaults to the machine's host name.
    #[serde(default)]
    pub host: Option<String>,
    /// The app endpoint others connect to; defaults to the bound `run.listen`,
    /// with a 0.0.0.0 host replaced by the advertised discovery address's.
    #[serde(default)]
    pub app_endpoint: Option<String>,
    /// SWIM's probe period.
    #[serde(
        default = "DiscoveryConfig::default_probe_period",
        with = "humantime_serde"
    )]
    pub probe_period: Duration,
    /// The version advertised with every name this node handles.
    #[serde(default = "DiscoveryConfig::default_version")]
    pub version: String,
}

impl DiscoveryConfig {
    fn default_network() -> String {
        "default".into()
    }
    fn default_probe_period() -> Duration {
        exchange_discovery::PROBE_PERIOD
    }
    fn default_version() -> String {
        env!("CARGO_PKG_VERSION").into()
    }
}

/// `[run]`: this container's identity and sockets in `exchange run`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// This node's id: unique in the network, not 0.
    pub node_id: u64,
    /// The app-plane endpoint to bind (`tcp://127.0.0.1:7001`, `ipc:///tmp/store.sock`).
    pub listen: String,
    /// The control-plane endpoint to bind.
    pub control: String,
    /// On SIGTERM/SIGINT, how long queued work may take before what is left is
    /// bounced (remote senders) or dropped and counted.
    #[serde(default = "RunConfig::default_drain", with = "humantime_serde")]
    pub drain: Duration,
    /// How long closing sockets may spend flushing (ZeroMQ `LINGER`).
    #[serde(default = "RunConfig::default_linger", with = "humantime_serde")]
    pub linger: Duration,
    /// Frame sets queued per peer at most before sends fail with `EAGAIN`
    /// (ZeroMQ HWM). A frame set carries 1 to `batch_max` messages.
    #[serde(default = "RunConfig::default_hwm")]
    pub send_hwm: i32,
    /// Frame sets queued from the network at most (ZeroMQ receive HWM).
    #[serde(default = "RunConfig::default_hwm")]
    pub recv_hwm: i32,
    /// Messages for one peer that one frame set carries at most: what a loop
    /// turn emits for a peer goes out in as few frame sets as this allows. A
    /// turn also reads at most this many messages, so its answers leave before
    /// more are read (two busy containers then work at the same time).
    #[serde(default = "RunConfig::default_batch_max")]
    pub batch_max: std::num::NonZeroUsize,
    /// How long a message may wait for a configured peer that is not connected
    /// yet (starting, or restarting) before it bounces `NoHandler` or is counted.
    #[serde(default = "RunConfig::default_peer_wait", with = "humantime_serde")]
    pub peer_wait: Duration,
    /// Messages held per peer at most while it is not connected; past it they
    /// bounce `Overloaded`.
    #[serde(default = "RunConfig::default_peer_queue")]
    pub peer_queue_max: usize,
    /// The capacity overlay: changes made with `persist` (`exchangectl
    /// capacity set --persist`) are appended here and applied, in order, at
    /// start. None: persisting is refused.
    #[serde(default)]
    pub overlay: Option<PathBuf>,
}

impl RunConfig {
    fn default_drain() -> Duration {
        Duration::from_secs(1)
    }
    fn default_linger() -> Duration {
        Duration::from_millis(200)
    }
    fn default_hwm() -> i32 {
        10_000
    }
    fn default_batch_max() -> std::num::NonZeroUsize {
        std::num::NonZeroUsize::new(32).expect("not zero")
    }
    fn default_peer_wait() -> Duration {
        Duration::from_secs(1)
    }
    fn default_peer_queue() -> usize {
        10_000
    }
}

/// `[[peer]]`: another container and what it handles.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// Its node id.
    pub node_id: u64,
    /// Its app-plane endpoint.
    pub endpoint: String,
    /// Names its components handle (routed to it).
    #[serde(default)]
    pub handles: Vec<String>,
    /// Names its components subscribe to (publishes go to it).
    #[serde(default)]
    pub subscribes: Vec<String>,
}

/// Component limits; unset fields take the app-wide `[limits]`, then the defaults.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Messages queued at most.
    pub mailbox_len_max: Option<usize>,
    /// Bytes queued at most.
    pub mailbox_bytes_max: Option<usize>,
    /// Messages admitted per second (0: unlimited).
    pub rate: Option<u32>,
    /// Messages admitted at once (0: a tenth of the rate, at least 1).
    pub burst: Option<u32>,
    /// Requests awaiting replies at once (0: unlimited).
    pub in_flight_max: Option<usize>,
    /// Timers set at most.
    pub timers_max: Option<usize>,
    /// Environment entries at most.
    pub env_entries_max: Option<usize>,
    /// Environment bytes at most.
    pub env_bytes_max: Option<usize>,
}

impl LimitsConfig {
    /// These limits over `base`.
    pub fn over(&self, base: &ComponentLimits) -> ComponentLimits {
        ComponentLimits {
            mailbox_len_max: self.mailbox_len_max.unwrap_or(base.mailbox_len_max),
            mailbox_bytes_max: self.mailbox_bytes_max.unwrap_or(base.mailbox_bytes_max),
            rate_per_sec: self.rate.unwrap_or(base.rate_per_sec),
            burst: self.burst.unwrap_or(base.burst),
            in_flight_max: self.in_flight_max.unwrap_or(base.in_flight_max),
            timers_max: self.timers_max.unwrap_or(base.timers_max),
            env_entries_max: self.env_entries_max.unwrap_or(base.env_entries_max),
            env_bytes_max: self.env_bytes_max.unwrap_or(base.env_bytes_max),
        }
    }
}

/// `[node]`: settings of every node.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeSettings {
    /// Largest payload a component may send.
    pub message_bytes_max: usize,
    /// Sample one in this many new traces (0: none).
    pub trace_sample_one_in: u32,
    /// Requests awaiting replies at most, per node.
    pub pending_requests_max: usize,
    /// Restarts allowed per `restart_window`.
    pub restart_intensity_max: u32,
    /// The restart window.
    #[serde(with = "humantime_serde")]
    pub restart_window: Duration,
    /// How long a message to a name no node handles yet waits for a handler to
    /// appear (a request no longer than its deadline) before it bounces
    /// `NoHandler`.
    #[serde(with = "humantime_serde")]
    pub handler_wait: Duration,
    /// Items dispatched per loop turn before I/O gets a turn (changeable live).
    pub dispatch_per_turn_max: usize,
    /// A component is congested (`exchange.congested` is published) at this
    /// percentage of its `mailbox_len_max`…
    pub congested_pct: u8,
    /// …and no longer (`exchange.decongested`) back down at this one.
    pub decongested_pct: u8,
}

impl Default for NodeSettings {
    fn default() -> Self {
        let defaults = NodeConfig::default();
        NodeSettings {
            message_bytes_max: defaults.message_bytes_max,
            trace_sample_one_in: 64,
            pending_requests_max: defaults.pending_requests_max,
            restart_intensity_max: defaults.restart_intensity_max,
            restart_window: defaults.restart_window,
            handler_wait: Duration::from_secs(5),
            dispatch_per_turn_max: defaults.dispatch_per_turn_max,
            congested_pct: defaults.congested_pct,
            decongested_pct: defaults.decongested_pct,
        }
    }
}

impl NodeSettings {
    /// The node configuration for a run seeded with `seed`.
    pub fn node_config(&self, seed: u64) -> NodeConfig {
        NodeConfig {
            message_bytes_max: self.message_bytes_max,
            trace_sample_one_in: self.trace_sample_one_in,
            pending_requests_max: self.pending_requests_max,
            restart_intensity_max: self.restart_intensity_max,
            restart_window: self.restart_window,
            handler_wait: self.handler_wait,
            dispatch_per_turn_max: self.dispatch_per_turn_max,
            congested_pct: self.congested_pct,
            decongested_pct: self.decongested_pct,
            seed,
            ..NodeConfig::default()
        }
    }
}

/// Where a node's routes come from when the whole app runs on an in-memory
/// network (`exchange dev`, `exchange sim`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Routes {
    /// Discovery: every node runs the membership over the in-memory network's
    /// datagrams (the same code as `exchange run` over UDP), seeded from the
    /// first node.
    Discovery,
    /// Static: every node knows every other's names from the start (as with
    /// `[[peer]]` in config).
    Static,
}

/// `[dev]`: how the in-memory network behaves (the CLI flags override these).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DevNetworkConfig {
    /// One-way latency between nodes.
    #[serde(with = "humantime_serde")]
    pub latency: Duration,
    /// Extra latency, uniform in 0..=jitter.
    #[serde(with = "humantime_serde")]
    pub jitter: Duration,
    /// Probability a frame is lost.
    pub loss: f64,
}

/// `[sim]`: what a simulated node's handlers cost (`exchange sim`). Each
/// simulated node is one core: after a turn of handlers it is busy for the
/// sum of their costs.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    /// One handler invocation (a message or a timer), unless the component
    /// has its own in `handler_costs`; 0: handlers take no virtual time.
    #[serde(with = "humantime_serde")]
    pub handler_cost: Duration,
    /// By component name.
    #[serde(with = "humantime_serde_map")]
    pub handler_costs: std::collections::BTreeMap<String, Duration>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            handler_cost: exchange_sim::HandlerCost::DEFAULT,
            handler_costs: std::collections::BTreeMap::new(),
        }
    }
}

impl SimConfig {
    /// The simulator's cost model.
    pub fn cost(&self) -> exchange_sim::HandlerCost {
        exchange_sim::HandlerCost {
            default: self.handler_cost,
            components: self.handler_costs.clone(),
        }
    }
}

/// A map of durations written as `"100us"`.
mod humantime_serde_map {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<String, Duration>, D::Error> {
        let texts = BTreeMap::<String, String>::deserialize(deserializer)?;
        texts
            .into_iter()
            .map(|(name, text)| {
                humantime::parse_duration(&text)
                    .map(|cost| (name.clone(), cost))
                    .map_err(|error| {
                        serde::de::Error::custom(format!("handler_costs.{name}: {error}"))
                    })
            })
            .collect()
    }
}

/// `[[component]]`: one component.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentConfig {
    /// Unique within the app; names its node in `exchange dev`.
    pub name: String,
    /// The registered kind; defaults to `name`.
    pub kind: Option<String>,
    /// Overrides of the app-wide limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Passed to the kind's constructor.
    #[serde(default)]
    pub settings: serde_json::Value,
}

impl ComponentConfig {
    /// The kind, defaulting to the name.
    pub fn kind(&self) -> &str {
        self.kind.as_deref().unwrap_or(&self.name)
    }
}

/// Loading or checking a config failed; nothing was started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read or parsed, or a value has the wrong type.
    #[error("config {origin}: {source}")]
    Load {
        /// The file (or `<built-in example app>`).
        origin: String,
        /// What the parser said, naming the key and what it expected.
        source: config::ConfigError,
    },
    /// The app names no components.
    #[error("config {origin}: no [[component]] entries; an app needs at least one")]
    NoComponents {
        /// The file.
        origin: String,
    },
    /// Two components share a name.
    #[error("config {origin}: component name {name:?} is used twice")]
    DuplicateName {
        /// The file.
        origin: String,
        /// The name.
        name: String,
    },
    /// A component's kind is not registered.
    #[error("config {origin}: component {name:?} has unknown kind {kind:?}; known kinds: {known}")]
    UnknownKind {
        /// The file.
        origin: String,
        /// The component.
        name: String,
        /// Its kind.
        kind: String,
        /// Registered kinds, comma-separated.
        known: String,
    },
    /// A limit or node setting is out of range.
    #[error("config {origin}: {key}: {why}")]
    Limit {
        /// The file.
        origin: String,
        /// Which key (`component[2].limits`, `node.congested_pct`).
        key: String,
        /// What is wrong, with the range.
        why: String,
    },
    /// A component's settings do not fit its kind.
    #[error("config {origin}: component {name:?} (kind {kind:?}): [component.settings]: {error}")]
    Settings {
        /// The file.
        origin: String,
        /// The component.
        name: String,
        /// Its kind.
        kind: String,
        /// What did not fit.
        error: String,
    },
}

/// The `[run]` section or a `[[peer]]` is wrong; nothing was started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunConfigError {
    /// `exchange run` needs a `[run]` section.
    #[error("config {origin}: no [run] section; `exchange run` needs node_id, listen and control")]
    Missing {
        /// The file.
        origin: String,
    },
    /// An endpoint is not `tcp://HOST:PORT` or `ipc://PATH`, or its host does not resolve.
    #[error("config {origin}: {key} = {endpoint:?}: {why}")]
    Endpoint {
        /// The file.
        origin: String,
        /// Which key (`run.listen`, `peer[2].endpoint`).
        key: String,
        /// The value.
        endpoint: String,
        /// What is wrong with it.
        why: String,
    },
    /// A node id is 0 or used twice.
    #[error("config {origin}: {key} = {node_id}: {why}")]
    NodeId {
        /// The file.
        origin: String,
        /// Which key.
        key: String,
        /// The id.
        node_id: u64,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A `[discovery]` setting is wrong.
    #[error("config {origin}: {key}: {why}")]
    Discovery {
        /// The file.
        origin: String,
        /// Which key (`discovery.seeds[1]`).
        key: String,
        /// What is wrong with it.
        why: String,
    },
    /// A name in a peer's `handles` or `subscribes` is not a valid message name.
    #[error("config {origin}: {key}: {error}")]
    Name {
        /// The file.
        origin: String,
        /// Which key.
        key: String,
        /// What is wrong.
        error: exchange_runtime::InvalidName,
    },
}

/// Checks an endpoint: `tcp://HOST:PORT` with a host that resolves (or `*` to
/// bind every interface), or `ipc://PATH`.
pub fn check_endpoint(endpoint: &str) -> Result<(), String> {
    if let Some(path) = endpoint.strip_prefix("ipc://") {
        return if path.is_empty() {
            Err("ipc:// needs a path".into())
        } else {
            Ok(())
        };
    }
    let Some(address) = endpoint.strip_prefix("tcp://") else {
        return Err("expected tcp://HOST:PORT or ipc://PATH".into());
    };
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err("expected tcp://HOST:PORT (no port)".into());
    };
    if port != "*" && port.parse::<u16>().is_err() {
        return Err(format!("port {port:?} is not a number from 0 to 65535"));
    }
    if host == "*" {
        return Ok(());
    }
    use std::net::ToSocketAddrs;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match (host, 0)
        .to_socket_addrs()
        .map(|mut addresses| addresses.next())
    {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(format!("host {host:?} resolves to no address")),
        Err(error) => Err(format!("host {host:?} does not resolve: {error}")),
    }
}

/// `[discovery]`, checked and resolved.
#[derive(Clone, Debug)]
pub struct Discovery {
    /// The UDP address to bind.
    pub listen: std::net::SocketAddr,
    /// The address advertised to others.
    pub advertise: std::net::SocketAddr,
    /// The seeds, resolved.
    pub seeds: Vec<std::net::SocketAddr>,
    /// The cluster key.
    pub key: exchange_discovery::ClusterKey,
    /// The settings as written.
    pub config: DiscoveryConfig,
}

fn resolve(address: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    if !address.contains(':') {
        return Err(format!("{address:?} has no port; expected HOST:PORT"));
    }
    match address.to_socket_addrs() {
        Ok(mut found) => found
            .next()
            .ok_or_else(|| format!("{address:?} resolves to no address")),
        Err(error) => Err(format!(
            "{address:?} is not HOST:PORT or does not resolve: {error}"
        )),
    }
}

impl DiscoveryConfig {
    /// Checks the settings, resolves the addresses and reads the key.
    pub fn check(&self, origin: &str) -> Result<Discovery, RunConfigError> {
        let error = |key: &str, why: String| RunConfigError::Discovery {
            origin: origin.to_owned(),
            key: format!("discovery.{key}"),
            why,
        };
        let listen = resolve(&self.listen).map_err(|why| error("listen", why))?;
        let advertise = match &self.advertise {
            Some(advertise) => resolve(advertise).map_err(|why| error("advertise", why))?,
            None => listen,
        };
        if advertise.ip().is_unspecified() || advertise.port() == 0 {
            return Err(error(
                if self.advertise.is_some() {
                    "advertise"
                } else {
                    "listen"
                },
                format!(
                    "{advertise} cannot be reached by others; set discovery.advertise to this node's address"
                ),
            ));
        }
        let seeds = self
            .seeds
            .iter()
            .enumerate()
            .map(|(i, seed)| resolve(seed).map_err(|why| error(&format!("seeds[{i}]"), why)))
            .collect::<Result<Vec<_>, _>>()?;
        let key = match (&self.cluster_key, &self.cluster_key_file) {
            (Some(_), Some(_)) => {
                return Err(error(
                    "cluster_key",
                    "set cluster_key or cluster_key_file, not both".into(),
                ));
            }
            (None, None) => {
                return Err(error(
                    "cluster_key",
                    "missing: every member needs the cluster's key (cluster_key or cluster_key_file, at least 16 bytes)".into(),
                ));
            }
            (Some(key), None) => key.as_bytes().to_vec(),
            (None, Some(path)) => {
                let mut bytes = std::fs::read(path).map_err(|e| {
                    error(
                        "cluster_key_file",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                if bytes.last() == Some(&b'\n') {
                    bytes.pop();
                }
                bytes
            }
        };
        let key = exchange_discovery::ClusterKey::new(&key)
            .map_err(|short| error("cluster_key", short.to_string()))?;
        if let Some(endpoint) = &self.app_endpoint {
            check_endpoint(endpoint).map_err(|why| error("app_endpoint", why))?;
        }
        Ok(Discovery {
            listen,
            advertise,
            seeds,
            key,
            config: self.clone(),
        })
    }
}

impl AppConfig {
    /// Checks `[run]` and the peers for `exchange run`.
    pub fn check_run(&self, origin: &Origin) -> Result<&RunConfig, RunConfigError> {
        let origin = origin.to_string();
        let run = self.run.as_ref().ok_or_else(|| RunConfigError::Missing {
            origin: origin.clone(),
        })?;
        let endpoint_error = |key: String, endpoint: &str, why: String| RunConfigError::Endpoint {
            origin: origin.clone(),
            key,
            endpoint: endpoint.to_owned(),
            why,
        };
        for (key, endpoint) in [("run.listen", &run.listen), ("run.control", &run.control)] {
            check_endpoint(endpoint)
                .map_err(|why| endpoint_error(key.to_owned(), endpoint, why))?;
        }
        let ephemeral = run.listen.ends_with(":0") || run.listen.ends_with(":*");
        if run.listen == run.control && !ephemeral {
            return Err(endpoint_error(
                "run.control".into(),
                &run.control,
                "is the same as run.listen".into(),
            ));
        }
        let mut ids = vec![("run.node_id".to_owned(), run.node_id)];
        for (i, peer) in self.peers.iter().enumerate() {
            let key = format!("peer[{i}]");
            check_endpoint(&peer.endpoint)
                .map_err(|why| endpoint_error(format!("{key}.endpoint"), &peer.endpoint, why))?;
            for name in peer.handles.iter().chain(&peer.subscribes) {
                exchange_runtime::validate_name(name).map_err(|error| RunConfigError::Name {
                    origin: origin.clone(),
                    key: format!("{key}.handles/subscribes"),
                    error,
                })?;
            }
            ids.push((format!("{key}.node_id"), peer.node_id));
        }
        for (i, (key, id)) in ids.iter().enumerate() {
            let why = if *id == 0 {
                Some("node ids start at 1")
            } else if ids[..i].iter().any(|(_, other)| other == id) {
                Some("this node id is used twice")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(RunConfigError::NodeId {
                    origin,
                    key: key.clone(),
                    node_id: *id,
                    why,
                });
            }
        }
        Ok(run)
    }
}

/// Adds `components` to `node`, each built by its registered kind with its
/// settings, under the app-wide limits overridden by its own.
pub fn add_components(
    node: &mut exchange_runtime::Node,
    app: &AppConfig,
    components: &[ComponentConfig],
    registry: &Registry,
) -> Result<(), String> {
    let base_limits = app.limits.over(&ComponentLimits::default());
    for component in components {
        let factory = registry
            .factory(component.kind(), &component.settings)
            .ok_or_else(|| format!("unknown component kind {:?}", component.kind()))??;
        node.add_component(
            &component.name,
            component.limits.over(&base_limits),
            factory,
        )
        .map_err(|error| error.to_string())?;
    }
    Ok(())
}

/// The limits of every component and the node settings with a range: the
/// key and what is wrong with it, if any is out of range.
fn check_limits(app: &AppConfig) -> Result<(), (String, String)> {
    let node = &app.node;
    if !(1..=100).contains(&node.congested_pct) {
        let why = format!("{} is out of range (1 to 100)", node.congested_pct);
        return Err(("node.congested_pct".into(), why));
    }
    if node.decongested_pct >= node.congested_pct {
        let why = format!(
            "{} must be below node.congested_pct ({})",
            node.decongested_pct, node.congested_pct
        );
        return Err(("node.decongested_pct".into(), why));
    }
    let (min, max) = exchange_runtime::Limit::DispatchPerTurnMax.range();
    if !(min..=max).contains(&(node.dispatch_per_turn_max as u64)) {
        let why = format!(
            "{} is out of range ({min} to {max})",
            node.dispatch_per_turn_max
        );
        return Err(("node.dispatch_per_turn_max".into(), why));
    }
    let base = app.limits.over(&ComponentLimits::default());
    base.check()
        .map_err(|error| ("limits".to_owned(), error.to_string()))?;
    for (i, component) in app.components.iter().enumerate() {
        component.limits.over(&base).check().map_err(|error| {
            let key = format!("component[{i}] ({}).limits", component.name);
            (key, error.to_string())
        })?;
    }
    Ok(())
}

/// Where the config came from, for error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A file.
    File(PathBuf),
    /// The example app bundled with the binary.
    Builtin,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Builtin => f.write_str("<built-in example app>"),
        }
    }
}

/// Reads an app config from `path` (or the bundled example app), applies
/// `EXCHANGE__…` environment overrides, and checks it against `registry`.
pub fn load(path: Option<&Path>, registry: &Registry) -> Result<AppConfig, ConfigError> {
    let origin = path.map_or(Origin::Builtin, |p| Origin::File(p.to_owned()));
    let builder = config::Config::builder();
    let builder = match path {
        Some(path) => builder.add_source(
            config::File::from(path)
                .format(config::FileFormat::Toml)
                .required(true),
        ),
        None => builder.add_source(config::File::from_str(
            exchange_components::SOCIAL_APP_TOML,
            config::FileFormat::Toml,
        )),
    };
    let load_error = |source| ConfigError::Load {
        origin: origin.to_string(),
        source,
    };
    let app: AppConfig = builder
        .add_source(
            config::Environment::with_prefix("EXCHANGE")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true),
        )
        .build()
        .and_then(config::Config::try_deserialize)
        .map_err(load_error)?;
    check(&app, &origin, registry)?;
    Ok(app)
}

fn check(app: &AppConfig, origin: &Origin, registry: &Registry) -> Result<(), ConfigError> {
    let origin = origin.to_string();
    if app.components.is_empty() {
        return Err(ConfigError::NoComponents { origin });
    }
    check_limits(app).map_err(|(key, why)| ConfigError::Limit {
        origin: origin.clone(),
        key,
        why,
    })?;
    for (i, component) in app.components.iter().enumerate() {
        if app.components[..i].iter().any(|c| c.name == component.name) {
            return Err(ConfigError::DuplicateName {
                origin,
                name: component.name.clone(),
            });
        }
        match registry.factory(component.kind(), &component.settings) {
            None => {
                return Err(ConfigError::UnknownKind {
                    origin,
                    name: component.name.clone(),
                    kind: component.kind().to_owned(),
                    known: registry.known().join(", "),
                });
            }
            Some(Err(error)) => {
                return Err(ConfigError::Settings {
                    origin,
                    name: component.name.clone(),
                    kind: component.kind().to_owned(),
                    error,
                });
            }
            Some(Ok(_)) => {}
        }
    }
    Ok(())
}
