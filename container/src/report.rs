//! What `exchange dev` shows: the live status line, the end-of-run table, and
//! the JSON report.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use exchange_host::Cluster;
use exchange_runtime::{ComponentId, Event, Node, Setting, Source};
use serde::Serialize;

/// One component's line of the report.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub(crate) struct ComponentReport {
    /// Its node.
    pub(crate) node: String,
    /// Messages that reached its admission.
    pub(crate) accepted: u64,
    /// Handled (`Ok`).
    pub(crate) handled: u64,
    /// Bounced, by reason.
    pub(crate) bounced: BTreeMap<String, u64>,
    /// Dropped and counted, by reason.
    pub(crate) dropped: BTreeMap<String, u64>,
    /// Bounces it got back for what it sent, by reason.
    pub(crate) returned: BTreeMap<String, u64>,
    /// Fresh instances after panics.
    pub(crate) restarts: u64,
    /// Timer firings handled.
    pub(crate) timers_fired: u64,
    /// Sends and timers its handlers asked for past a limit and did not get.
    pub(crate) effects_refused: u64,
    /// Deepest its queue got.
    pub(crate) queue_len_peak: u64,
    /// Median handler time.
    pub(crate) handler_p50_ns: u64,
    /// 99th-percentile handler time.
    pub(crate) handler_p99_ns: u64,
    /// Median time from sending a request to its reply or bounce.
    pub(crate) response_p50_us: u64,
    /// 99th-percentile time from sending a request to its reply or bounce.
    pub(crate) response_p99_us: u64,
}

impl ComponentReport {
    /// Whether accepted = handled + bounced + dropped.
    pub(crate) fn balances(&self) -> bool {
        self.accepted
            == self.handled
                + self.bounced.values().sum::<u64>()
                + self.dropped.values().sum::<u64>()
    }
}

/// What the in-memory network did.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub(crate) struct NetworkReport {
    /// Frames handed to the network.
    pub(crate) sent: u64,
    /// Frames delivered.
    pub(crate) delivered: u64,
    /// Frames lost by the loss model.
    pub(crate) lost: u64,
    /// Frames refused to their sender.
    pub(crate) refused: u64,
    /// Frames lost on a cut link (`--cut`).
    pub(crate) cut: u64,
    /// Frames still in flight at shutdown (never accepted anywhere).
    pub(crate) in_flight_at_stop: u64,
    /// Discovery's datagrams handed to the network (routes from discovery).
    pub(crate) datagrams_sent: u64,
    /// Datagrams lost by the loss model or on a cut link.
    pub(crate) datagrams_lost: u64,
}

/// The whole run.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Report {
    /// Wall time the app ran, in seconds (drain excluded).
    pub(crate) ran_s: f64,
    /// The master seed.
    pub(crate) seed: u64,
    /// Per component, by name.
    pub(crate) components: BTreeMap<String, ComponentReport>,
    /// Refused by a node before any component saw them, by node name.
    pub(crate) node_refused: BTreeMap<String, BTreeMap<String, u64>>,
    /// The network.
    pub(crate) network: NetworkReport,
    /// The sampled trace, rendered (empty if none was sampled).
    pub(crate) trace: String,
}

impl Report {
    /// Collects the report from a network that has shut down.
    pub(crate) fn collect(
        net: &Cluster,
        ran_s: f64,
        seed: u64,
        in_flight_at_stop: usize,
        trace: String,
    ) -> Report {
        let mut components = BTreeMap::new();
        let mut node_refused = BTreeMap::new();
        for node in net.nodes() {
            let status = node.status(exchange_runtime::Time::ZERO);
            for c in status.components {
                let report = ComponentReport {
                    node: node.id().to_string(),
                    accepted: c.accepted,
                    handled: c.handled,
                    bounced: c.bounced,
                    dropped: c.dropped,
                    restarts: c.restarts,
                    returned: c.returned,
                    timers_fired: c.timers_fired,
                    effects_refused: c.effects_refused,
                    queue_len_peak: u64::from(c.queue_len_peak),
                    handler_p50_ns: c.handler_p50_ns,
                    handler_p99_ns: c.handler_p99_ns,
                    response_p50_us: c.response_p50_us,
                    response_p99_us: c.response_p99_us,
                };
                components.insert(c.name, report);
            }
            let mut refused = node.stats().outcomes.dropped();
            for (reason, count) in node.stats().outcomes.bounced() {
                refused.insert(format!("bounced_{reason}"), count);
            }
            if !refused.is_empty() {
                node_refused.insert(node.name().to_owned(), refused);
            }
        }
        let frames = net.net().frame_counts();
        let datagrams = net.net().datagram_counts();
        let network = NetworkReport {
            sent: frames.sent,
            delivered: frames.delivered,
            lost: frames.lost,
            refused: frames.refused_full + frames.refused_down,
            cut: frames.cut,
            in_flight_at_stop: in_flight_at_stop as u64,
            datagrams_sent: datagrams.sent,
            datagrams_lost: datagrams.lost_total(),
        };
        Report {
            ran_s,
            seed,
            components,
            node_refused,
            network,
            trace,
        }
    }

    /// Components whose counters do not balance.
    pub(crate) fn unbalanced(&self) -> Vec<&str> {
        self.components
            .iter()
            .filter(|(_, c)| !c.balances())
            .map(|(name, _)| name.as_str())
            .collect()
    }

    /// The table and trace, for people.
    pub(crate) fn render(&self) -> String {
        let mut out = self.render_components();
        self.render_totals(&mut out);
        if !self.trace.is_empty() {
            let _ = write!(out, "\n{}", self.trace);
        }
        out
    }

    /// The table of components, and what was refused over limits.
    fn render_components(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<10} {:>5} {:>10} {:>10} {:<24} {:<22} {:<22} {:>8} {:>8} {:>8}",
            "component",
            "node",
            "accepted",
            "handled",
            "bounced",
            "dropped",
            "got back",
            "restarts",
            "p50",
            "p99"
        );
        for (name, c) in &self.components {
            let _ = writeln!(
                out,
                "{:<10} {:>5} {:>10} {:>10} {:<24} {:<22} {:<22} {:>8} {:>8} {:>8}",
                name,
                c.node,
                c.accepted,
                c.handled,
                by_reason(&c.bounced),
                by_reason(&c.dropped),
                by_reason(&c.returned),
                c.restarts,
                nanos(c.handler_p50_ns),
                nanos(c.handler_p99_ns),
            );
        }
        for (name, c) in self
            .components
            .iter()
            .filter(|(_, c)| c.effects_refused > 0)
        {
            let _ = writeln!(
                out,
                "{name}: {} sends or timers refused over its limits",
                c.effects_refused
            );
        }
        for (node, refused) in &self.node_refused {
            let _ = writeln!(
                out,
                "node {node} refused before any component: {}",
                by_reason(refused)
            );
        }
        out
    }

    /// The network's counters and the accounting's verdict.
    fn render_totals(&self, out: &mut String) {
        let n = &self.network;
        let _ = writeln!(
            out,
            "network: {} frames sent, {} delivered, {} lost (loss model), {} cut, {} refused, {} in flight at stop",
            n.sent, n.delivered, n.lost, n.cut, n.refused, n.in_flight_at_stop
        );
        if n.datagrams_sent > 0 {
            let _ = writeln!(
                out,
                "discovery: {} datagrams sent, {} lost (loss model or cut)",
                n.datagrams_sent, n.datagrams_lost
            );
        }
        match self.unbalanced().as_slice() {
            [] => {
                let _ = writeln!(
                    out,
                    "accounting: every component's accepted = handled + bounced + dropped"
                );
            }
            names => {
                let _ = writeln!(out, "accounting: MISMATCH for {}", names.join(", "));
            }
        }
    }
}

fn by_reason(counts: &BTreeMap<String, u64>) -> String {
    if counts.is_empty() {
        return "-".to_owned();
    }
    counts
        .iter()
        .map(|(reason, n)| format!("{reason}={n}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn nanos(ns: u64) -> String {
    match ns {
        0 => "-".to_owned(),
        ns if ns < 10_000 => format!("{ns}ns"),
        ns if ns < 10_000_000 => format!("{}µs", ns / 1_000),
        ns => format!("{}ms", ns / 1_000_000),
    }
}

/// Logs what a node reports about its components (restarts, failures); other
/// events are for the driver and are ignored here.
pub(crate) fn log_event(node: &Node, event: &Event) {
    let component = |id: ComponentId| node.component_name(id).unwrap_or("?").to_owned();
    let at = node.id();
    match event {
        Event::Restarted {
            component: id,
            reason,
        } => {
            tracing::warn!(node = %at, component = component(*id), %reason, "component restarted");
        }
        Event::Failed { component: id } => {
            let component = component(*id);
            tracing::error!(node = %at, component, "component failed too often and was stopped");
        }
        Event::CapacityChanged {
            component: id,
            limit,
            old,
            new,
            by,
        } => {
            let component = id.map_or_else(|| "(node)".to_owned(), component);
            tracing::info!(
                node = %at,
                %by,
                component,
                limit = limit.name(),
                old = %setting(*old),
                new = %setting(*new),
                "capacity changed"
            );
        }
        Event::CapacityRefused { error, by } => {
            tracing::warn!(node = %at, %by, %error, "capacity change refused");
        }
        Event::Congestion {
            component: id,
            congested,
            queue_len,
            limit,
        } => {
            let component = component(*id);
            if *congested {
                tracing::warn!(node = %at, component, queue_len, limit, "congested");
            } else {
                tracing::info!(node = %at, component, queue_len, limit, "decongested");
            }
        }
        _ => {}
    }
}

/// `500 (live)`, `300 (network: 900 / 3)`.
fn setting(setting: Setting) -> String {
    match setting.source {
        Source::Config => format!("{} (config)", setting.value),
        Source::Live => format!("{} (live)", setting.value),
        Source::Network { total, instances } => {
            format!("{} (network: {total} / {instances})", setting.value)
        }
    }
}
