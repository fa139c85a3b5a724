//! `Ctx`: a handler's window on the world. Everything is buffered and applied by
//! the node after the handler returns `Ok`.

use std::time::Duration;

use bytes::Bytes;
use rand_chacha::ChaCha8Rng;

use crate::env::Env;
use crate::ids::{Address, CorrelationId, Name};
use crate::message::{
    Bounce, BounceReason, ContentType, Header, Hop, Horizon, Kind, Message, ReplyTo,
};
use crate::minter::Minter;
use crate::router::{RouteId, Router};
use crate::time::Time;

/// A payload with its encoding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payload {
    /// The bytes.
    pub bytes: Bytes,
    /// How they are encoded.
    pub content_type: ContentType,
}

impl Payload {
    /// A protobuf message.
    pub fn proto(message: &impl prost::Message) -> Payload {
        Payload {
            bytes: message.encode_to_vec().into(),
            content_type: ContentType::Protobuf,
        }
    }

    /// JSON text, already encoded.
    pub fn json(bytes: impl Into<Bytes>) -> Payload {
        Payload {
            bytes: bytes.into(),
            content_type: ContentType::Json,
        }
    }

    /// Opaque bytes.
    pub fn raw(bytes: impl Into<Bytes>) -> Payload {
        Payload {
            bytes: bytes.into(),
            content_type: ContentType::Raw,
        }
    }
}

/// Options for [`Ctx::send_with`]; the defaults are what [`Ctx::send`] uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SendOptions {
    /// The flow the message belongs to.
    pub flow: Option<String>,
    /// How far it may travel; unset means network.
    pub horizon: Option<Horizon>,
    /// After this it is no longer worth handling (it bounces `Expired`).
    pub deadline: Option<Time>,
    /// Send to this address instead of routing by name.
    pub to: Option<Address>,
}

/// Replying needs a request to reply to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("reply: the message being handled is a {0}, not a request")]
pub struct NotARequest(pub &'static str);

#[derive(Debug)]
pub(crate) enum Effect {
    /// A message ready to route, with its name's route if the router knows it.
    Message(Message, Option<RouteId>),
    SetTimer {
        at: Time,
        token: u64,
    },
    CancelTimer {
        token: u64,
    },
    Subscribe(Name),
    Unsubscribe(Name),
}

/// A handler's context: the current time, its own RNG and environment, and the
/// ways to send, reply, publish, subscribe and set timers.
///
/// Nothing happens until the handler returns `Ok`: then the node applies the
/// buffered effects in order. A handler may buffer at most `outgoing_max`
/// effects; the rest are refused and counted in `effects_refused`.
pub struct Ctx<'a> {
    pub(crate) me: Address,
    pub(crate) now: Time,
    pub(crate) rng: &'a mut ChaCha8Rng,
    pub(crate) env: &'a mut Env,
    pub(crate) router: &'a Router,
    pub(crate) effects: &'a mut Vec<Effect>,
    pub(crate) minter: &'a mut Minter,
    pub(crate) current: Option<&'a Header>,
    pub(crate) effects_max: usize,
    /// The route this component sent to last: handlers mostly send to the same
    /// name again, and comparing the name is cheaper than hashing it.
    pub(crate) last_route: &'a mut Option<RouteId>,
    pub(crate) overflowed: u64,
}

impl Ctx<'_> {
    /// The time of the input being handled (never read from a clock).
    pub fn now(&self) -> Time {
        self.now
    }

    /// This component's address.
    pub fn me(&self) -> Address {
        self.me
    }

    /// This component's RNG, seeded from the node seed: same seed, same draws.
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        self.rng
    }

    /// This component's key-value environment; it survives restarts.
    pub fn env(&mut self) -> &mut Env {
        self.env
    }

    /// The message being handled, if any (not in `start` or `on_timer`).
    pub fn current(&self) -> Option<&Header> {
        self.current
    }

    fn push(&mut self, effect: Effect) {
        if self.effects.len() >= self.effects_max {
            self.overflowed += 1;
        } else {
            self.effects.push(effect);
        }
    }

    /// Builds the finished message here, so the node only has to route it.
    #[allow(clippy::too_many_arguments)]
    fn build(
        &mut self,
        kind: Kind,
        name: Name,
        target: Option<Address>,
        correlation: CorrelationId,
        payload: Payload,
        deadline: Option<Time>,
        flow: Option<Name>,
        horizon: Horizon,
        bounce: Option<Box<Bounce>>,
    ) -> Message {
        let id = self.minter.message_id();
        let trace = self
            .minter
            .trace_child(self.current.map(|header| header.trace));
        // Filled in place: a recycled box is overwritten field by field rather
        // than by copying a whole new header into it.
        let mut header = self.minter.spare_header();
        header.id = id;
        header.name = name;
        header.kind = kind;
        header.source = self.me;
        header.target = target;
        header.correlation = correlation;
        header.flow = flow;
        header.horizon = horizon;
        header.deadline = deadline;
        header.trace = trace;
        header.hops.clear();
        header.hops.push(Hop {
            node: self.me.node,
            component: self.me.component,
            at: self.now,
        });
        header.content_type = payload.content_type;
        header.bounce = bounce;
        Message {
            header,
            payload: payload.bytes,
        }
    }

    fn message(
        &mut self,
        kind: Kind,
        name: &str,
        payload: Payload,
        options: SendOptions,
        correlation: CorrelationId,
    ) {
        if self.effects.len() >= self.effects_max {
            self.overflowed += 1;
            return;
        }
        let route = match *self.last_route {
            Some(last) if self.router.name(last).as_str() == name => Some(last),
            _ => {
                let route = self.router.lookup(name);
                *self.last_route = route;
                route
            }
        };
        let name = route.map_or_else(|| Name::new(name), |route| self.router.name(route).clone());
        let flow = options.flow.as_deref().map(|flow| self.router.intern(flow));
        let horizon = options.horizon.unwrap_or(Horizon::Unspecified);
        let message = self.build(
            kind,
            name,
            options.to,
            correlation,
            payload,
            options.deadline,
            flow,
            horizon,
            None,
        );
        self.effects.push(Effect::Message(message, route));
    }

    /// Sends a protobuf message to one handler of `name`. If none takes it, it
    /// comes back as a bounce.
    pub fn send(&mut self, name: &str, message: &impl prost::Message) {
        self.message(
            Kind::Send,
            name,
            Payload::proto(message),
            SendOptions::default(),
            CorrelationId(0),
        );
    }

    /// Sends a protobuf message to one component.
    pub fn send_to(&mut self, to: Address, name: &str, message: &impl prost::Message) {
        let options = SendOptions {
            to: Some(to),
            ..SendOptions::default()
        };
        self.message(
            Kind::Send,
            name,
            Payload::proto(message),
            options,
            CorrelationId(0),
        );
    }

    /// Sends any payload, with options.
    pub fn send_with(&mut self, name: &str, payload: Payload, options: SendOptions) {
        self.message(Kind::Send, name, payload, options, CorrelationId(0));
    }

    /// Sends a request to one handler of `name`. Exactly one reply or bounce
    /// comes back carrying the returned id; if nothing comes within `timeout`, the
    /// bounce is `Expired`.
    pub fn request(
        &mut self,
        name: &str,
        message: &impl prost::Message,
        timeout: Duration,
    ) -> CorrelationId {
        self.request_with(
            name,
            Payload::proto(message),
            timeout,
            SendOptions::default(),
        )
    }

    /// [`Ctx::request`] with any payload and options. The deadline is `now +
    /// timeout` (the option's deadline, if earlier, wins).
    pub fn request_with(
        &mut self,
        name: &str,
        payload: Payload,
        timeout: Duration,
        mut options: SendOptions,
    ) -> CorrelationId {
        let correlation = self.minter.correlation();
        let deadline = self.now + timeout;
        options.deadline = Some(options.deadline.map_or(deadline, |d| d.min(deadline)));
        self.message(Kind::Request, name, payload, options, correlation);
        correlation
    }

    /// Publishes to every subscriber of `name`.
    pub fn publish(&mut self, name: &str, message: &impl prost::Message) {
        self.message(
            Kind::Publish,
            name,
            Payload::proto(message),
            SendOptions::default(),
            CorrelationId(0),
        );
    }

    /// Replies to the request being handled.
    pub fn reply(&mut self, message: &impl prost::Message) -> Result<(), NotARequest> {
        let reply_to = self.current_reply_to()?;
        self.respond(&reply_to, message);
        Ok(())
    }

    /// Replies to the request being handled with any payload (JSON, raw bytes).
    pub fn reply_with(&mut self, payload: Payload) -> Result<(), NotARequest> {
        let reply_to = self.current_reply_to()?;
        self.answer(&reply_to, Kind::Reply, payload, None);
        Ok(())
    }

    fn current_reply_to(&self) -> Result<ReplyTo, NotARequest> {
        match self.current {
            Some(header) if header.kind == Kind::Request => Ok(ReplyTo {
                address: header.source,
                correlation: header.correlation,
                name: header.name.clone(),
                deadline: header.deadline,
            }),
            Some(header) => Err(NotARequest(crate::message::kind_str(header.kind))),
            None => Err(NotARequest("timer or start")),
        }
    }

    /// Replies to a request handled earlier (see [`crate::Message::reply_to`]).
    pub fn respond(&mut self, reply_to: &ReplyTo, message: &impl prost::Message) {
        self.answer(reply_to, Kind::Reply, Payload::proto(message), None);
    }

    /// Answers a request handled earlier with a `HandlerFailed` bounce, for when
    /// the work it asked for failed later (a component that proxies requests).
    pub fn reject(&mut self, reply_to: &ReplyTo, detail: &str) {
        let bounce = Bounce::new(BounceReason::HandlerFailed, detail);
        self.answer(
            reply_to,
            Kind::Bounce,
            Payload::raw(Bytes::new()),
            Some(bounce),
        );
    }

    /// Answers a request handled earlier with a bounce of a typed reason
    /// (and a retry-after, if known): for a component that relays a refusal
    /// it got from further on (the store was full, a service throttled it).
    pub fn refuse(
        &mut self,
        reply_to: &ReplyTo,
        reason: BounceReason,
        detail: &str,
        retry_after: Option<std::time::Duration>,
    ) {
        let bounce = Bounce::new(reason, detail).with_retry_after(retry_after);
        self.answer(
            reply_to,
            Kind::Bounce,
            Payload::raw(Bytes::new()),
            Some(bounce),
        );
    }

    fn answer(
        &mut self,
        reply_to: &ReplyTo,
        kind: Kind,
        payload: Payload,
        bounce: Option<Box<Bounce>>,
    ) {
        if self.effects.len() >= self.effects_max {
            self.overflowed += 1;
            return;
        }
        let name = reply_to.name.clone();
        let target = Some(reply_to.address);
        let message = self.build(
            kind,
            name,
            target,
            reply_to.correlation,
            payload,
            None,
            None,
            Horizon::Unspecified,
            bounce,
        );
        self.effects.push(Effect::Message(message, None));
    }

    /// Subscribes this component to publishes of `name`.
    pub fn subscribe(&mut self, name: &str) {
        let name = self.router.intern(name);
        self.push(Effect::Subscribe(name));
    }

    /// Stops receiving publishes of `name`.
    pub fn unsubscribe(&mut self, name: &str) {
        let name = self.router.intern(name);
        self.push(Effect::Unsubscribe(name));
    }

    /// Fires [`crate::Component::on_timer`] with `token` after `after`. Setting a
    /// token that is already set moves it.
    pub fn set_timer(&mut self, after: Duration, token: u64) {
        let at = self.now + after;
        self.push(Effect::SetTimer { at, token });
    }

    /// Cancels the timer with `token`, if set.
    pub fn cancel_timer(&mut self, token: u64) {
        self.push(Effect::CancelTimer { token });
    }
}
