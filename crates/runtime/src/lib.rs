//! The sans-IO core of exchange.
//!
//! A [`Node`] is one container: it hosts [`Component`]s, queues their messages in
//! bounded mailboxes, routes by name, runs one handler at a time, keeps timers and
//! pending requests, and accounts for every message it accepts. It performs no
//! I/O whatsoever: inputs take the time (`handle_*(now, …)`), outputs are polled
//! ([`Node::poll_output`], [`Node::poll_timeout`]). The container's event loop,
//! `exchange dev`'s in-memory network ([`mem::MemNetwork`]) and the simulator are
//! three drivers of the same code.
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
//! use exchange_runtime::{ComponentLimits, NoStopwatch, Output};
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
//! node.start(now);
//! while node.run(now, &mut NoStopwatch) > 0 {}
//! assert_eq!(answer.borrow().as_slice(), b"hello");
//! assert!(node.poll_output().is_none(), "all local: nothing to transmit");
//! ```

#![deny(missing_docs)]
// Library code says why it cannot fail (`expect`) or returns the error.
#![deny(clippy::unwrap_used)]

pub mod codec;
mod component;
mod ctx;
mod env;
mod ids;
mod mailbox;
pub mod mem;
mod message;
mod minter;
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
pub use ids::{Address, ComponentId, CorrelationId, InvalidName, Name, NodeId, validate_name};
pub use message::{
    BOUNCE_DETAIL_BYTES_MAX, Bounce, BounceReason, ContentType, HOPS_MAX, Header, Hop, Horizon,
    Kind, Message, ReplyTo, TraceContext, bounce_reason_str, kind_str,
};
pub use node::{
    AddComponentError, ComponentLimits, Event, Node, NodeConfig, Output, Sabotage, TraceOutcome,
    TraceRecord,
};
pub use router::{Destination, Locality, NodeInfo, RouteChange, RouteId, Router};
pub use time::{NoStopwatch, Stopwatch, Time};
pub use transport::{Transmit, TransmitError, Transport};
