//! Small components and helpers shared by the runtime's scenario tests.
#![allow(dead_code, unreachable_pub)]

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use exchange_idl::kv::v1::{Get, GetReply};
use exchange_runtime::stats::ComponentStats;
use exchange_runtime::{
    BounceReason, Component, ComponentLimits, CorrelationId, Ctx, Factory, HandlerResult, Kind,
    Message, Node, NodeConfig, NodeId, Payload, SendOptions, Time,
};

#[allow(unused_imports)]
pub use exchange_runtime::{Input, Output, RouteChange};

/// What a component saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    pub name: String,
    pub kind: Kind,
    pub bounce: Option<BounceReason>,
    pub detail: Option<String>,
    pub correlation: Option<CorrelationId>,
    pub payload_len: usize,
    pub at: Time,
}

pub type Log = Rc<RefCell<Vec<Seen>>>;

pub fn log() -> Log {
    Rc::new(RefCell::new(Vec::new()))
}

fn record(log: &Log, ctx: &Ctx<'_>, message: &Message) {
    log.borrow_mut().push(Seen {
        name: message.name().to_owned(),
        kind: message.kind(),
        bounce: message.bounce_reason(),
        detail: message.bounce_detail().map(str::to_owned),
        correlation: message.correlation(),
        payload_len: message.payload().len(),
        at: ctx.now(),
    });
}

/// Handles `names`, records every message, and replies to requests if `reply`.
pub struct Recorder {
    pub names: &'static [&'static str],
    pub log: Log,
    pub reply: bool,
}

impl Component for Recorder {
    fn handles(&self) -> &[&str] {
        self.names
    }
    fn handle(&mut self, ctx: &mut Ctx<'_>, message: &Message) -> HandlerResult {
        record(&self.log, ctx, message);
        if self.reply && message.kind() == Kind::Request {
            ctx.reply(&GetReply {
                found: true,
                value: vec![],
                version: 1,
            })?;
        }
        Ok(())
    }
}

/// What a [`Starter`] does when it starts.
#[derive(Clone, Debug)]
pub enum Action {
    Send(&'static str),
    SendWith(&'static str, Payload, SendOptions),
    Request(&'static str, Duration),
    Publish(&'static str),
    Subscribe(&'static str),
}

/// Performs its actions at start and records everything it gets back.
pub struct Starter {
    pub actions: Vec<Action>,
    pub log: Log,
}

impl Component for Starter {
    fn start(&mut self, ctx: &mut Ctx<'_>) -> HandlerResult {
        let get = Get { key: "k".into() };
        for action in &self.actions {
            match action {
                Action::Send(name) => ctx.send(name, &get),
                Action::SendWith(name, payload, options) => {
                    ctx.send_with(name, payload.clone(), options.clone())
                }
                Action::Request(name, timeout) => {
                    ctx.request(name, &get, *timeout);
                }
                Action::Publish(name) => ctx.publish(name, &get),
                Action::Subscribe(name) => ctx.subscribe(name),
            }
        }
        Ok(())
    }
    fn handle(&mut self, ctx: &mut Ctx<'_>, message: &Message) -> HandlerResult {
        record(&self.log, ctx, message);
        Ok(())
    }
}

/// A factory of [`Recorder`]s.
pub fn recorder(names: &'static [&'static str], log: &Log, reply: bool) -> Factory {
    let log = log.clone();
    Box::new(move || {
        Box::new(Recorder {
            names,
            log: log.clone(),
            reply,
        })
    })
}

/// A factory of [`Starter`]s.
pub fn starter(actions: Vec<Action>, log: &Log) -> Factory {
    let log = log.clone();
    Box::new(move || {
        Box::new(Starter {
            actions: actions.clone(),
            log: log.clone(),
        })
    })
}

/// A component's counters, by name.
pub fn stats(node: &Node, name: &str) -> ComponentStats {
    node.components()
        .find(|(_, n, _)| *n == name)
        .expect("a component of that name")
        .2
        .clone()
}

pub fn limits(mailbox_len_max: usize) -> ComponentLimits {
    ComponentLimits {
        mailbox_len_max,
        ..ComponentLimits::default()
    }
}

pub fn node(id: u64) -> Node {
    Node::new(
        NodeId(id),
        &format!("node{id}"),
        NodeConfig {
            seed: 7,
            ..NodeConfig::default()
        },
    )
}

pub const T0: Time = Time::from_micros(1_000_000);

/// Runs the node at `now` until nothing is queued (bounded).
pub fn settle(node: &mut Node, now: Time) {
    for _ in 0..10_000 {
        if node.poll_timeout().is_some_and(|t| t <= now) {
            node.handle(now, Input::Timeout);
        }
        if node.is_quiet() {
            return;
        }
        node.handle(now, Input::Run);
    }
    panic!("node did not settle in 10000 turns");
}

/// What the node hands out until its `Output::Timeout`.
pub fn outputs(node: &mut Node) -> Vec<Output> {
    let mut outputs = Vec::new();
    loop {
        match node.poll_output() {
            Output::Timeout(_) => return outputs,
            output => outputs.push(output),
        }
    }
}

/// Every component's counters add up: accepted = handled + bounced + dropped + queued.
pub fn assert_accounted(node: &Node) {
    for (id, name, stats) in node.components() {
        let ended = stats.handled + stats.outcomes.bounced_total() + stats.outcomes.dropped_total();
        assert_eq!(
            stats.accepted,
            ended + node.queue_len(id) as u64,
            "component {name}: accepted {} != handled {} + bounced {} + dropped {} + queued {}",
            stats.accepted,
            stats.handled,
            stats.outcomes.bounced_total(),
            stats.outcomes.dropped_total(),
            node.queue_len(id)
        );
    }
}
