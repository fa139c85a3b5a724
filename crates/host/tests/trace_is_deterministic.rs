//! Driving nodes with manual time gives the same trace for the same inputs: a
//! request across the in-memory network, its reply, and a chained send, rendered
//! hop by hop and kept as a snapshot.

#[path = "../../runtime/tests/support/mod.rs"]
mod support;

use std::time::Duration;

use exchange_host::{Cluster, Host, News};
use exchange_idl::kv::v1::{Get, GetReply, Put};
use exchange_runtime::netem::{LinkParams, Netem};
use exchange_runtime::trace::{TraceLog, render_chain};
use exchange_runtime::{
    Address, Component, ComponentLimits, Ctx, Event, HandlerResult, Kind, Message, Node,
    NodeConfig, NodeId,
};
use support::*;

/// Asks the store for a key, then writes it back to the audit component.
struct Client;

impl Component for Client {
    fn start(&mut self, ctx: &mut Ctx<'_>) -> HandlerResult {
        ctx.request(
            "kv.get",
            &Get {
                key: "greeting".into(),
            },
            Duration::from_secs(1),
        );
        Ok(())
    }
    fn handle(&mut self, ctx: &mut Ctx<'_>, message: &Message) -> HandlerResult {
        if message.kind() == Kind::Reply {
            let reply: GetReply = message.decode()?;
            ctx.send(
                "audit.put",
                &Put {
                    key: "greeting".into(),
                    value: reply.value,
                },
            );
        }
        Ok(())
    }
}

struct Store;

impl Component for Store {
    fn handles(&self) -> &[&str] {
        &["kv.get"]
    }
    fn handle(&mut self, ctx: &mut Ctx<'_>, _message: &Message) -> HandlerResult {
        ctx.reply(&GetReply {
            found: true,
            value: b"hello".to_vec(),
            version: 3,
        })?;
        Ok(())
    }
}

fn run_once() -> String {
    let config = NodeConfig {
        seed: 42,
        trace_sample_one_in: 1,
        ..NodeConfig::default()
    };
    let link = LinkParams::uniform(Duration::from_millis(2), Duration::from_micros(500), 0.0);
    let mut net = Cluster::new(Netem::new(42, link));
    let names = ["client", "store", "audit"];
    for (i, name) in names.iter().enumerate() {
        let mut node = Node::new(NodeId(i as u64 + 1), name, config.clone());
        let factory: exchange_runtime::Factory = match *name {
            "client" => Box::new(|| Box::new(Client)),
            "store" => Box::new(|| Box::new(Store)),
            _ => Box::new(|| {
                Box::new(Recorder {
                    names: &["audit.put"],
                    log: log(),
                    reply: false,
                })
            }),
        };
        node.add_component(name, ComponentLimits::default(), factory)
            .unwrap();
        net.add(Host::new(node));
    }
    let mut now = T0;
    net.route_statically(now);
    net.start(now);
    let mut traces = TraceLog::new(8, 64);
    for _ in 0..100 {
        net.step(now);
        while let Some(news) = net.poll_news() {
            if let News::Event(_, Event::Traced(record)) = news {
                traces.record(*record);
            }
        }
        match net.poll_timeout() {
            Some(next) if !net.is_idle() || next <= now => now = next.max(now),
            _ => break,
        }
    }
    assert!(net.is_idle(), "the exchange completed");
    let chain = traces
        .chain_to(|r| r.header.name.as_str() == "audit.put")
        .expect("audit.put was traced");
    let label = |a: Address| format!("{}@{}", names[(a.node.0 - 1) as usize], a.node);
    render_chain(&chain, label, |r| {
        format!("{} payload bytes", r.payload.len())
    })
}

#[test]
fn same_inputs_same_trace() {
    let first = run_once();
    assert_eq!(first, run_once());
    insta::assert_snapshot!(first);
}
