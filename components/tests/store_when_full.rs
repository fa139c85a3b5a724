//! A full store refuses a new key with `QuotaExceeded` (a reason its sender
//! can act on), or, with `when_full = "evict_oldest"`, makes room by dropping
//! the key written longest ago.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use exchange_components::store::{Store, StoreSettings, WhenFull};
use exchange_idl::kv::v1::{Get, GetReply, Put};
use exchange_runtime::{
    BounceReason, Component, ComponentLimits, Ctx, HandlerResult, Input, Kind, Message, Node,
    NodeConfig, NodeId, Time,
};

type Seen = Rc<RefCell<Vec<(Kind, Option<BounceReason>, Option<bool>)>>>;

/// Puts k1, k2, k3 one after the other (each after the last answer), then gets k1.
struct Writer {
    next: u32,
    seen: Seen,
}

impl Writer {
    fn next(&mut self, ctx: &mut Ctx<'_>) {
        self.next += 1;
        let timeout = Duration::from_secs(1);
        if self.next <= 3 {
            let put = Put {
                key: format!("k{}", self.next),
                value: b"v".to_vec(),
            };
            ctx.request("kv.put", &put, timeout);
        } else if self.next == 4 {
            ctx.request("kv.get", &Get { key: "k1".into() }, timeout);
        }
    }
}

impl Component for Writer {
    fn start(&mut self, ctx: &mut Ctx<'_>) -> HandlerResult {
        self.next(ctx);
        Ok(())
    }
    fn handle(&mut self, ctx: &mut Ctx<'_>, message: &Message) -> HandlerResult {
        let found = (message.name() == "kv.get" && message.kind() == Kind::Reply)
            .then(|| message.decode::<GetReply>().map(|r| r.found))
            .transpose()?;
        self.seen
            .borrow_mut()
            .push((message.kind(), message.bounce_reason(), found));
        self.next(ctx);
        Ok(())
    }
}

fn run(when_full: WhenFull) -> Vec<(Kind, Option<BounceReason>, Option<bool>)> {
    let seen: Seen = Rc::default();
    let mut node = Node::new(NodeId(1), "n1", NodeConfig::default());
    let settings = StoreSettings {
        keys_max: 2,
        when_full,
        ..StoreSettings::default()
    };
    node.add_component(
        "store",
        ComponentLimits::default(),
        Box::new(move || Box::new(Store::new(settings.clone()))),
    )
    .unwrap();
    let log = seen.clone();
    node.add_component(
        "writer",
        ComponentLimits::default(),
        Box::new(move || {
            Box::new(Writer {
                next: 0,
                seen: log.clone(),
            })
        }),
    )
    .unwrap();
    let now = Time::from_micros(1_000_000);
    node.handle(now, Input::Start);
    for _ in 0..100 {
        node.handle(now, Input::Run);
    }
    assert_eq!(node.stats().outcomes.bounced_total(), 0);
    node.check_invariants().unwrap();
    seen.borrow().clone()
}

#[test]
fn a_full_store_refuses_a_new_key_with_quota_exceeded() {
    let reply = (Kind::Reply, None, None);
    assert_eq!(
        run(WhenFull::Refuse),
        vec![
            reply,
            reply,
            (Kind::Bounce, Some(BounceReason::QuotaExceeded), None),
            (Kind::Reply, None, Some(true)),
        ]
    );
}

#[test]
fn a_store_that_evicts_keeps_a_bounded_working_set() {
    let reply = (Kind::Reply, None, None);
    assert_eq!(
        run(WhenFull::EvictOldest),
        vec![reply, reply, reply, (Kind::Reply, None, Some(false))],
        "k1 made room for k3"
    );
}
