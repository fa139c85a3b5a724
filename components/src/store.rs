//! `store`: a key-value store. Get and put by key; subscribe to a key prefix and
//! every later put under it is sent to you as `kv.changed`.

use std::collections::BTreeMap;

use exchange_idl::kv::v1::{Changed, Get, GetReply, Put, PutReply, Subscribe, SubscribeReply};
use exchange_runtime::{
    Address, BounceReason, Component, Ctx, HandlerError, HandlerResult, Kind, Message,
};
use serde::Deserialize;

/// `[component.settings]` of a store.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    /// Keys held at most; a put of a new key past it fails (`HandlerFailed`).
    pub keys_max: usize,
    /// Prefix subscriptions held at most.
    pub subscriptions_max: usize,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            keys_max: 1_000_000,
            subscriptions_max: 1_024,
        }
    }
}

/// The store component.
pub struct Store {
    settings: StoreSettings,
    entries: BTreeMap<String, (Vec<u8>, u64)>,
    version: u64,
    subscriptions: Vec<(String, Address)>,
}

impl Store {
    /// An empty store.
    pub fn new(settings: StoreSettings) -> Store {
        Store {
            settings,
            entries: BTreeMap::new(),
            version: 0,
            subscriptions: Vec::new(),
        }
    }

    fn put(&mut self, ctx: &mut Ctx<'_>, message: &Message) -> HandlerResult {
        let put: Put = message.decode()?;
        if !self.entries.contains_key(&put.key) && self.entries.len() >= self.settings.keys_max {
            return Err(HandlerError::msg(format!(
                "store full: keys_max = {}",
                self.settings.keys_max
            )));
        }
        self.version += 1;
        let changed = Changed {
            key: put.key.clone(),
            value: put.value.clone(),
            version: self.version,
        };
        for (prefix, subscriber) in &self.subscriptions {
            if put.key.starts_with(prefix.as_str()) {
                ctx.send_to(*subscriber, "kv.changed", &changed);
            }
        }
        self.entries.insert(put.key, (put.value, self.version));
        // A put may be a request (the writer wants to know) or a plain send.
        if message.kind() == Kind::Request {
            ctx.reply(&PutReply {
                version: self.version,
            })?;
        }
        Ok(())
    }

    fn subscribe(&mut self, ctx: &mut Ctx<'_>, message: &Message) -> HandlerResult {
        let subscribe: Subscribe = message.decode()?;
        let entry = (subscribe.prefix, message.source());
        if !self.subscriptions.contains(&entry) {
            if self.subscriptions.len() >= self.settings.subscriptions_max {
                return Err(HandlerError::msg("too many subscriptions"));
            }
            self.subscriptions.push(entry);
        }
        ctx.reply(&SubscribeReply {
            subscribers: self.subscriptions.len() as u32,
        })?;
        Ok(())
    }
}

impl Component for Store {
    fn handles(&self) -> &[&str] {
        &["kv.get", "kv.put", "kv.subscribe"]
    }

    fn handle(&mut self, ctx: &mut Ctx<'_>, message: &Message) -> HandlerResult {
        match (message.kind(), message.name()) {
            (_, "kv.get") => {
                let get: Get = message.decode()?;
                let reply = match self.entries.get(&get.key) {
                    Some((value, version)) => GetReply {
                        found: true,
                        value: value.clone(),
                        version: *version,
                    },
                    None => GetReply::default(),
                };
                ctx.reply(&reply)?;
            }
            (Kind::Send | Kind::Request, "kv.put") => self.put(ctx, message)?,
            (_, "kv.subscribe") => self.subscribe(ctx, message)?,
            // A change notification came back: that subscriber is gone, so forget it.
            (Kind::Bounce, "kv.changed")
                if message.bounce_reason() == Some(BounceReason::NoHandler) =>
            {
                let gone = message.source();
                self.subscriptions
                    .retain(|(_, address)| address.node != gone.node);
            }
            _ => {}
        }
        Ok(())
    }
}
