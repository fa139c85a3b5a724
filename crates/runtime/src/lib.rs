//! The sans-IO core of exchange.
//!
//! A [`Node`] is one container: it hosts [`Component`]s, queues their messages in
//! bounded mailboxes, routes by name, runs one handler at a time, keeps timers and
//! pending requests, and accounts for every message it accepts. It performs no
//! I/O whatsoever: one [`Input`] at a time arrives with the time
//! ([`Node::handle`]), outputs are polled ([`Node::poll_output`] until
//! [`Output::Timeout`]). The container's event loop, `exchange dev` and the
//! simulator are three drivers of the same code (through `exchange_host`'s
//! `Host`); the last two carry frames over the same network emulator
//! ([`netem::Netem`]).
//!
//! What this crate is not: it opens no socket, reads no clock, spawns no thread
//! and draws no unseeded randomness. `container/` does those.
//!
//! # Delivery
//!
//! Every message a component accepts ends as exactly one of: handled, bounced to
//! its sender with a [`BounceReason`], or dropped and counted with a
//! [`stats::DropReason`]. A request always gets a reply or a bounce; a request
//! nobody answers in time comes back as an `Expired` bounce.
//!
//! # Example
//!
//! ```
//! use exchange_runtime::{Component, Ctx, HandlerResult, Message, Node, NodeConfig, NodeId, Time};
//! use exchange_runtime::{ComponentLimits, Input, Output};
//! use exchange_idl::kv::v1::{Get, GetReply};
//!
//! struct Echo;
//! impl Component for Echo {
//!     fn handles(&self) -> &[&str] { &["kv.get"] }
//!     fn handle(&mut self, ctx: &mut Ctx<'_>, msg: &Message) -> HandlerResult {
//!         let get: Get = msg.decode()?;
//!         ctx.reply(&GetReply { found: true, value: get.key.into_bytes(), version: 1 })?;
//!         Ok(())
//!     }
//! }
//!
//! struct Client { answer: std::rc::Rc<std::cell::RefCell<Vec<u8>>> }
//! impl Component for Client {
//!     fn start(&mut self, ctx: &mut Ctx<'_>) -> HandlerResult {
//!         ctx.request("kv.get", &Get { key: "hello".into() }, std::time::Duration::from_secs(1));
//!         Ok(())
//!     }
//!     fn handle(&mut self, _ctx: &mut Ctx<'_>, msg: &Message) -> HandlerResult {
//!         *self.answer.borrow_mut() = msg.decode::<GetReply>()?.value;
//!         Ok(())
//!     }
//! }
//!
//! let answer = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
//! let mut node = Node::new(NodeId(1), "demo", NodeConfig::default());
//! node.add_component("echo", ComponentLimits::default(), Box::new(|| Box::new(Echo))).unwrap();
//! let shared = answer.clone();
//! node.add_component("client", ComponentLimits::default(),
//!     Box::new(move || Box::new(Client { answer: shared.clone() }))).unwrap();
//!
//! let now = Time::from_micros(1_000);
//! node.handle(now, Input::Start);
//! while !node.is_quiet() {
//!     node.handle(now, Input::Run);
//! }
//! assert_eq!(answer.borrow().as_slice(), b"hello");
//! assert!(matches!(node.poll_output(), Output::Timeout(_)), "all local: nothing to transmit");
//! ```

#![deny(missing_docs)]
// Library code says why it cannot fail (`expect`) or returns the error.
#![deny(clippy::unwrap_used)]

pub mod codec;
mod component;
mod ctx;
mod env;
#[cfg(feature = "testing")]
pub mod fuzz;
mod ids;
mod message;
mod minter;
pub mod netem;
mod node;
pub mod record;
mod router;
pub mod stats;
mod time;
pub mod trace;
mod transport;

pub use component::{Component, Factory, HandlerError, HandlerResult};
pub use ctx::{Ctx, NotARequest, Payload, SendOptions};
pub use env::{Env, EnvFull};
pub use exchange_circuit::{Rate, RateError};
pub use ids::{Address, ComponentId, CorrelationId, InvalidName, Name, NodeId, validate_name};
pub use message::{
    BOUNCE_DETAIL_BYTES_MAX, Bounce, BounceReason, ContentType, HOPS_MAX, Header, Hop, Horizon,
    Kind, Message, ReplyTo, TraceContext, bounce_reason_str, kind_str,
};
#[cfg(feature = "testing")]
pub use node::Sabotage;
pub use node::{
    AddComponentError, Broken, CONGESTED, Capacity, CapacityChange, CapacityError, ComponentLimits,
    DECONGESTED, Event, Input, InvalidRecord, Limit, Node, NodeConfig, Output, Setting, Source,
    TraceOutcome, TraceRecord,
};
pub use router::{Destination, Locality, NodeInfo, RouteChange, RouteId, Router};
pub use time::{NoStopwatch, Stopwatch, Time};
pub use transport::{Transmit, TransmitError, Transport};

/// SplitMix64's finaliser: spreads a seed or id over all 64 bits. The one
/// used wherever a seed is derived from another (the emulator, the
/// simulator, discovery's Bloom filters, span ids).
#[inline]
pub fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
