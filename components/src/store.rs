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
    /// Keys held at most.
    pub keys_max: usize,
    /// What a put of a new key does when `keys_max` keys are held.
    pub when_full: WhenFull,
    /// Prefix subscriptions held at most.
    pub subscriptions_max: usize,
}

/// What a full store does with a put of a new key.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Refuse it: the put bounces `QuotaExceeded` (a sender can act on it).
    #[default]
    Refuse,
    /// Make room: the key written longest ago goes (a bounded working set).
    EvictOldest,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            keys_max: 1_000_000,
            when_full: WhenFull::Refuse,
            subscriptions_max: 1_024,
        }
    }
}

/// The store component.
pub struct Store {
    settings: StoreSettings,
    entries: BTreeMap<String, (Vec<u8>, u64)>,
    /// The keys by the version they were last written at, oldest first.
    by_version: BTreeMap<u64, String>,
    version: u64,
    subscriptions: Vec<(String, Address)>,
}

impl Store {
    /// An empty store.
    pub fn new(settings: StoreSettings) -> Store {
        Store {
            settings,
            entries: BTreeMap::new(),
            by_version: BTreeMap::new(),
            version: 0,
            subscriptions: Vec::new(),
        }
    }

    fn put(&mut self, ctx: &mut Ctx<'_>, message: &Message) -> HandlerResult {
        let put: Put = message.decode()?;
        if !self.entries.contains_key(&put.key) && self.entries.len() >= self.settings.keys_max {
            match self.settings.when_full {
                WhenFull::Refuse => {
                    let detail = format!("store full: keys_max = {}", self.settings.keys_max);
                    return Err(HandlerError::refuse(BounceReason::QuotaExceeded, detail));
                }
                WhenFull::EvictOldest => {
                    if let Some((_, oldest)) = self.by_version.pop_first() {
                        self.entries.remove(&oldest);
                    }
                }
            }
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
        self.by_version.insert(self.version, put.key.clone());
        if let Some((_, replaced)) = self.entries.insert(put.key, (put.value, self.version)) {
            self.by_version.remove(&replaced);
        }
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
    fn invariants(&self) -> Result<(), String> {
        if self.entries.len() > self.settings.keys_max.max(1) {
            return Err(format!(
                "{} keys held, keys_max {}",
                self.entries.len(),
                self.settings.keys_max
            ));
        }
        if self.by_version.len() != self.entries.len() {
            return Err("the version index and the entries disagree".into());
        }
        Ok(())
    }

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
