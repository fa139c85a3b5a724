//! `exchangectl` (the binary is `ops/exchangectl`): the operator's tool. It talks to one container's control
//! socket (`--control`, the `[run] control` endpoint) and reaches the others
//! through the control endpoints that membership carries (`--node ID`,
//! `--network`). Tables for people by default, `--json` for scripts (the
//! control messages as JSON, field names as in `control.proto`).

use std::fmt::Write as _;
use std::time::Duration;

use crate::status;
use clap::{Args, Parser, Subcommand};
use exchange_idl::exchange::v1::control::{self, request::Kind as Ask, response::Kind as Answer};

/// Watch and change a running exchange network through its control plane.
#[derive(Debug, Parser)]
#[command(name = "exchangectl", version)]
pub struct Cli {
    /// The control endpoint of the container to talk to.
    #[arg(
        long,
        global = true,
        env = "EXCHANGECTL_CONTROL",
        default_value = "tcp://127.0.0.1:7201"
    )]
    pub control: String,
    /// How long to wait for each answer.
    #[arg(long, global = true, default_value = "2s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Print the answers as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// A node's counters, queues and limits.
    Status {
        /// Another member, reached through its advertised control endpoint.
        #[arg(long)]
        node: Option<u64>,
    },
    /// The members of the cluster and their endpoints.
    Members,
    /// Every name the network handles, and which nodes handle it.
    Names,
    /// Get or set capacity limits.
    #[command(subcommand)]
    Capacity(CapacityCommand),
    /// Drain a node: it refuses new work, finishes what is queued, leaves
    /// the cluster and exits.
    Drain {
        /// The node id.
        node: u64,
    },
}

/// `exchangectl capacity …`.
#[derive(Debug, Subcommand)]
pub enum CapacityCommand {
    /// The limits in force, where each came from, and what is used.
    Get {
        /// One component; all if left out.
        component: Option<String>,
        /// Another member.
        #[arg(long)]
        node: Option<u64>,
    },
    /// Changes limits live: from the next message, nothing queued lost.
    Set(SetArgs),
}

/// What `capacity set` changes.
#[derive(Debug, Args)]
pub struct SetArgs {
    /// The component; the whole container if left out.
    pub component: Option<String>,
    /// Another member.
    #[arg(long, conflicts_with = "network")]
    pub node: Option<u64>,
    /// The values are network-wide totals, shared among every instance of
    /// the component (sent to each member that has it).
    #[arg(long)]
    pub network: bool,
    /// Messages the mailbox holds (0 refuses every new message).
    #[arg(long)]
    pub mailbox_len_max: Option<u64>,
    /// Bytes the mailbox holds.
    #[arg(long)]
    pub mailbox_bytes_max: Option<u64>,
    /// Messages admitted per second (0: unlimited).
    #[arg(long)]
    pub rate: Option<u64>,
    /// Messages admitted at once (0: a tenth of the rate).
    #[arg(long)]
    pub burst: Option<u64>,
    /// Requests awaiting replies at once (0: unlimited).
    #[arg(long)]
    pub in_flight_max: Option<u64>,
    /// Items dispatched per loop turn (the whole container only).
    #[arg(long)]
    pub dispatch_per_turn_max: Option<u64>,
    /// Also write the change to the container's overlay file (`run.overlay`),
    /// so that a restart keeps it.
    #[arg(long)]
    pub persist: bool,
}

/// Runs the command line; returns the exit code (0 done, 1 refused or
/// failed, 2 usage).
pub fn main() -> i32 {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(out) => {
            print!("{out}");
            0
        }
        Err(error) => {
            eprintln!("exchangectl: {error}");
            1
        }
    }
}

/// Runs a parsed command; the text to print, or the error.
pub fn run(cli: &Cli) -> Result<String, String> {
    let client = Client {
        endpoint: cli.control.clone(),
        timeout: cli.timeout,
    };
    match &cli.command {
        Command::Status { node } => {
            let (endpoint, node) = client.target(*node)?;
            match client.ask_node(&endpoint, node, Ask::Status(control::StatusRequest {}))? {
                Answer::Status(s) if cli.json => Ok(json(&s)),
                Answer::Status(s) => Ok(status::render(&s) + &render_capacity(&capacity_of(&s))),
                other => Err(unexpected(&endpoint, &other)),
            }
        }
        Command::Members => {
            match client.ask(&cli.control, Ask::Members(control::MembersRequest {}))? {
                Answer::Members(m) if cli.json => Ok(json(&m)),
                Answer::Members(m) => Ok(render_members(&m)),
                other => Err(unexpected(&cli.control, &other)),
            }
        }
        Command::Names => match client.ask(&cli.control, Ask::Names(control::NamesRequest {}))? {
            Answer::Names(n) if cli.json => Ok(json(&n)),
            Answer::Names(n) => Ok(render_names(&n)),
            other => Err(unexpected(&cli.control, &other)),
        },
        Command::Capacity(CapacityCommand::Get { component, node }) => {
            let (endpoint, node) = client.target(*node)?;
            let get = control::GetCapacity {
                component: component.clone().unwrap_or_default(),
            };
            capacity_answer(
                &endpoint,
                client.ask_node(&endpoint, node, Ask::GetCapacity(get))?,
                cli.json,
            )
        }
        Command::Capacity(CapacityCommand::Set(args)) => set_capacity(&client, args, cli.json),
        Command::Drain { node } => {
            let (endpoint, node) = client.target(Some(*node))?;
            match client.ask_node(&endpoint, node, Ask::Drain(control::DrainRequest {}))? {
                Answer::Drained(d) if cli.json => Ok(json(&d)),
                Answer::Drained(d) => Ok(format!(
                    "n{} is draining: it takes no new work and leaves the cluster\n",
                    d.node
                )),
                other => Err(refused_or_unexpected(&endpoint, &other)),
            }
        }
    }
}

fn set_capacity(client: &Client, args: &SetArgs, as_json: bool) -> Result<String, String> {
    let set = control::SetCapacity {
        component: args.component.clone().unwrap_or_default(),
        network: args.network,
        mailbox_len_max: args.mailbox_len_max,
        mailbox_bytes_max: args.mailbox_bytes_max,
        rate: args.rate,
        burst: args.burst,
        in_flight_max: args.in_flight_max,
        dispatch_per_turn_max: args.dispatch_per_turn_max,
        persist: args.persist,
    };
    if !args.network {
        let (endpoint, node) = client.target(args.node)?;
        let answer = client.ask_node(&endpoint, node, Ask::SetCapacity(set))?;
        return capacity_answer(&endpoint, answer, as_json);
    }
    if set.component.is_empty() {
        return Err("--network needs a component: a network-wide total is per component".into());
    }
    // Every member that has the component takes the total; the others say
    // they do not have it.
    let mut out = String::new();
    let mut replies = Vec::new();
    for member in client.members()?.members {
        let endpoint = client.control_endpoint(&member)?;
        match client.ask_node(&endpoint, member.node, Ask::SetCapacity(set.clone()))? {
            Answer::Capacity(reply) => replies.push(reply),
            Answer::Refused(refusal) if refusal.code == "unknown_component" => {}
            other => return Err(refused_or_unexpected(&endpoint, &other)),
        }
    }
    if replies.is_empty() {
        return Err(format!("no member has a component {:?}", set.component));
    }
    for reply in &replies {
        if as_json {
            let _ = writeln!(out, "{}", json(reply).trim_end());
        } else {
            out.push_str(&render_capacity(reply));
        }
    }
    Ok(out)
}

fn capacity_answer(endpoint: &str, answer: Answer, as_json: bool) -> Result<String, String> {
    match answer {
        Answer::Capacity(reply) if as_json => Ok(json(&reply)),
        Answer::Capacity(reply) => Ok(render_capacity(&reply)),
        other => Err(refused_or_unexpected(endpoint, &other)),
    }
}

/// One node's control endpoint and how long to wait for it.
struct Client {
    endpoint: String,
    timeout: Duration,
}

impl Client {
    /// Asks the node that serves `endpoint`.
    fn ask(&self, endpoint: &str, ask: Ask) -> Result<Answer, String> {
        self.ask_node(endpoint, 0, ask)
    }

    /// Asks node `node` (0: the one that serves `endpoint`), for a socket
    /// that serves several (`exchange dev --control`).
    fn ask_node(&self, endpoint: &str, node: u64, ask: Ask) -> Result<Answer, String> {
        let request = control::Request {
            kind: Some(ask),
            client: client_name(),
            node,
        };
        status::call(endpoint, self.timeout, &request)
    }

    fn members(&self) -> Result<control::Members, String> {
        match self.ask(&self.endpoint, Ask::Members(control::MembersRequest {}))? {
            Answer::Members(members) => Ok(members),
            other => Err(unexpected(&self.endpoint, &other)),
        }
    }

    /// Where to ask `node` (`None`: the node talked to): the control
    /// endpoint membership advertises for it, and its id (which a socket
    /// serving several nodes needs).
    fn target(&self, node: Option<u64>) -> Result<(String, u64), String> {
        let Some(node) = node else {
            return Ok((self.endpoint.clone(), 0));
        };
        let members = self.members()?;
        match members.members.iter().find(|m| m.node == node) {
            Some(member) => Ok((self.control_endpoint(member)?, node)),
            None => {
                let known: Vec<String> = members
                    .members
                    .iter()
                    .map(|m| format!("n{}", m.node))
                    .collect();
                Err(format!(
                    "{} knows no member n{node}; it knows {}",
                    self.endpoint,
                    known.join(", ")
                ))
            }
        }
    }

    fn control_endpoint(&self, member: &control::Member) -> Result<String, String> {
        if member.this_node {
            return Ok(self.endpoint.clone());
        }
        if member.control_endpoint.is_empty() {
            return Err(format!("n{} advertises no control endpoint", member.node));
        }
        Ok(member.control_endpoint.clone())
    }
}

/// `exchangectl USER@HOST`, for the container's log of who changed what.
fn client_name() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "?".into());
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "?".into());
    format!("exchangectl {user}@{host}")
}

fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string_pretty(value).expect("control messages serialize") + "\n"
}

fn unexpected(endpoint: &str, answer: &Answer) -> String {
    match answer {
        Answer::Error(error) => format!("{endpoint} did not understand the request: {error}"),
        _ => format!("{endpoint} answered with something else than asked"),
    }
}

fn refused_or_unexpected(endpoint: &str, answer: &Answer) -> String {
    match answer {
        Answer::Refused(refusal) => render_refusal(refusal),
        other => unexpected(endpoint, other),
    }
}

/// A refusal for people: what was refused and why; nothing changed.
pub fn render_refusal(refusal: &control::Refusal) -> String {
    format!("refused ({}): {}", refusal.code, refusal.message)
}

fn capacity_of(status: &control::NodeStatus) -> control::CapacityReply {
    control::CapacityReply {
        node: status.node,
        name: status.name.clone(),
        dispatch_per_turn_max: status.dispatch_per_turn_max.clone(),
        components: status
            .components
            .iter()
            .filter_map(|c| c.capacity.clone())
            .collect(),
    }
}

fn limit(limit: Option<&control::Limit>) -> String {
    let Some(limit) = limit else {
        return "-".into();
    };
    match limit.source.as_str() {
        "network" => format!(
            "{} (network {}/{})",
            limit.value, limit.network_total, limit.instances
        ),
        source => format!("{} ({source})", limit.value),
    }
}

/// A capacity reply as a table.
pub fn render_capacity(reply: &control::CapacityReply) -> String {
    let mut out = format!(
        "capacity of n{} ({}): dispatch_per_turn_max {}\n",
        reply.node,
        reply.name,
        limit(reply.dispatch_per_turn_max.as_ref())
    );
    let _ = writeln!(
        out,
        "{:<10} {:>16} {:>20} {:>24} {:>16} {:>16} {:>7} {:>9} {:>6}",
        "component",
        "mailbox_len_max",
        "mailbox_bytes_max",
        "rate",
        "burst",
        "in_flight_max",
        "queue",
        "in_flight",
        "tokens"
    );
    for c in &reply.components {
        let _ = writeln!(
            out,
            "{:<10} {:>16} {:>20} {:>24} {:>16} {:>16} {:>7} {:>9} {:>6}{}",
            c.component,
            limit(c.mailbox_len_max.as_ref()),
            limit(c.mailbox_bytes_max.as_ref()),
            limit(c.rate.as_ref()),
            limit(c.burst.as_ref()),
            limit(c.in_flight_max.as_ref()),
            c.queue_len,
            c.in_flight,
            c.tokens.map_or_else(|| "-".to_owned(), |t| t.to_string()),
            if c.congested { "  congested" } else { "" }
        );
    }
    out
}

/// The members as a table.
pub fn render_members(members: &control::Members) -> String {
    let mut out = format!(
        "{:<6} {:<28} {:<28} {:<10} {:<12} {:>5}  handles\n",
        "node", "app", "control", "network", "host", "load"
    );
    for m in &members.members {
        let node = format!("n{}{}", m.node, if m.this_node { "*" } else { "" });
        let _ = writeln!(
            out,
            "{:<6} {:<28} {:<28} {:<10} {:<12} {:>5}  {}",
            node,
            dash(&m.app_endpoint),
            dash(&m.control_endpoint),
            dash(&m.network),
            dash(&m.host),
            m.load,
            m.handles.join(" ")
        );
    }
    out.push_str("(* the node answering)\n");
    out
}

/// The names as a table.
pub fn render_names(names: &control::Names) -> String {
    let mut out = format!("{:<24} handled by\n", "name");
    for n in &names.names {
        let nodes: Vec<String> = n.nodes.iter().map(|id| format!("n{id}")).collect();
        let _ = writeln!(out, "{:<24} {}", n.name, nodes.join(" "));
    }
    out
}

fn dash(text: &str) -> &str {
    if text.is_empty() { "-" } else { text }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn limit(value: u64, source: &str) -> Option<control::Limit> {
        Some(control::Limit {
            value,
            source: source.into(),
            ..control::Limit::default()
        })
    }

    fn capacity() -> control::CapacityReply {
        control::CapacityReply {
            node: 2,
            name: "feed".into(),
            dispatch_per_turn_max: limit(256, "config"),
            components: vec![control::ComponentCapacity {
                component: "feed".into(),
                mailbox_len_max: limit(4096, "config"),
                mailbox_bytes_max: limit(16 << 20, "config"),
                rate: Some(control::Limit {
                    value: 300,
                    source: "network".into(),
                    network_total: 900,
                    instances: 3,
                }),
                burst: limit(0, "config"),
                in_flight_max: limit(64, "live"),
                queue_len: 3500,
                queue_bytes: 400_000,
                in_flight: 12,
                tokens: Some(17),
                congested: true,
            }],
        }
    }

    #[test]
    fn tables_for_people() {
        let status = control::NodeStatus {
            node: 2,
            name: "feed".into(),
            frames_in: 1200,
            frames_out: 1180,
            components: vec![control::ComponentStatus {
                name: "feed".into(),
                accepted: 4500,
                handled: 900,
                bounced: BTreeMap::from([("throttled".into(), 100)]),
                queue_len: 3500,
                capacity: capacity().components.pop(),
                ..control::ComponentStatus::default()
            }],
            dispatch_per_turn_max: limit(256, "config"),
            ..control::NodeStatus::default()
        };
        let members = control::Members {
            members: vec![
                control::Member {
                    node: 2,
                    app_endpoint: "tcp://127.0.0.1:7102".into(),
                    control_endpoint: "tcp://127.0.0.1:7202".into(),
                    network: "default".into(),
                    host: "box".into(),
                    handles: vec!["feed.post".into(), "feed.timeline".into()],
                    load: 4,
                    this_node: true,
                },
                control::Member {
                    node: 1,
                    app_endpoint: "tcp://127.0.0.1:7101".into(),
                    control_endpoint: "tcp://127.0.0.1:7201".into(),
                    network: "default".into(),
                    host: "box".into(),
                    handles: vec!["kv.get".into(), "kv.put".into()],
                    load: 0,
                    this_node: false,
                },
            ],
        };
        let names = control::Names {
            names: vec![
                control::NameHandlers {
                    name: "feed.post".into(),
                    nodes: vec![2],
                },
                control::NameHandlers {
                    name: "kv.get".into(),
                    nodes: vec![1, 4],
                },
            ],
        };
        insta::assert_snapshot!(
            "status",
            status::render(&status) + &render_capacity(&capacity_of(&status))
        );
        insta::assert_snapshot!("capacity_get", render_capacity(&capacity()));
        insta::assert_snapshot!("members", render_members(&members));
        insta::assert_snapshot!("names", render_names(&names));
        insta::assert_snapshot!("capacity_json", json(&capacity()));
    }
}
