//! `echo` and `pinger`: components for measuring the container itself (the
//! transport benchmark uses them), written like any other component.

use std::time::Duration;

use bytes::Bytes;
use exchange_runtime::{Component, Ctx, HandlerResult, Kind, Message, Payload, SendOptions};
use serde::Deserialize;

/// `echo` answers `bench.echo` requests with their own payload and takes
/// `bench.event` sends (counted by its `handled`).
#[derive(Debug, Default)]
pub struct Echo;

impl Echo {
    /// An echo; it has no settings.
    pub fn new(_settings: EchoSettings) -> Echo {
        Echo
    }
}

/// `echo` has no settings.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EchoSettings {}

impl Component for Echo {
    fn handles(&self) -> &[&str] {
        &["bench.echo", "bench.event"]
    }

    fn handle(&mut self, ctx: &mut Ctx<'_>, message: &Message) -> HandlerResult {
        if message.kind() == Kind::Request {
            ctx.reply_with(Payload::raw(message.payload().clone()))?;
        }
        Ok(())
    }
}

/// `[component.settings]` of a pinger.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PingerSettings {
    /// Requests kept outstanding (request mode).
    pub in_flight: u32,
    /// Payload size.
    pub payload_bytes: usize,
    /// Send one-way `bench.event`s instead of requests.
    pub one_way: bool,
    /// Events sent per turn of the container loop (one-way mode).
    pub burst: u32,
    /// Request timeout.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for PingerSettings {
    fn default() -> Self {
        PingerSettings {
            in_flight: 1,
            payload_bytes: 64,
            one_way: false,
            burst: 64,
            timeout: Duration::from_secs(5),
        }
    }
}

/// `pinger` keeps `in_flight` `bench.echo` requests outstanding, or streams
/// `bench.event`s; what came back is in its counters.
#[derive(Debug)]
pub struct Pinger {
    settings: PingerSettings,
    payload: Bytes,
}

impl Pinger {
    /// A pinger with a zero-filled payload of the configured size.
    pub fn new(settings: PingerSettings) -> Pinger {
        let payload = Bytes::from(vec![0u8; settings.payload_bytes]);
        Pinger { settings, payload }
    }

    fn ping(&self, ctx: &mut Ctx<'_>) {
        let payload = Payload::raw(self.payload.clone());
        ctx.request_with(
            "bench.echo",
            payload,
            self.settings.timeout,
            SendOptions::default(),
        );
    }
}

impl Component for Pinger {
    fn start(&mut self, ctx: &mut Ctx<'_>) -> HandlerResult {
        if self.settings.one_way {
            ctx.set_timer(Duration::ZERO, 0);
        } else {
            for _ in 0..self.settings.in_flight {
                self.ping(ctx);
            }
        }
        Ok(())
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_>, _token: u64) -> HandlerResult {
        for _ in 0..self.settings.burst {
            ctx.send_with(
                "bench.event",
                Payload::raw(self.payload.clone()),
                SendOptions::default(),
            );
        }
        ctx.set_timer(Duration::ZERO, 0);
        Ok(())
    }

    fn handle(&mut self, ctx: &mut Ctx<'_>, message: &Message) -> HandlerResult {
        // Each answer (reply or bounce) to a request is replaced by a new one.
        if !self.settings.one_way && message.correlation().is_some() {
            self.ping(ctx);
        }
        Ok(())
    }
}
