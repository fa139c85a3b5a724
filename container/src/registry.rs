//! Component kinds a container can host, by the name config uses for them.
//!
//! The `exchange` binary ships the example app's kinds. To host your own
//! components, build a binary that registers them and calls
//! [`crate::cli::main`]:
//!
//! ```no_run
//! # use exchange_container::registry::Registry;
//! # use exchange_components::store::{Store, StoreSettings};
//! let mut registry = Registry::new();
//! registry.register("store", "key-value store", |settings: StoreSettings| Store::new(settings));
//! std::process::exit(exchange_container::cli::main(registry));
//! ```

use std::collections::BTreeMap;

use exchange_runtime::{Component, Factory, Kind};
use serde::de::DeserializeOwned;

type Make = Box<dyn Fn(&serde_json::Value) -> Result<Factory, String>>;
type Describe = fn(&str, Kind, &[u8]) -> Option<String>;
type Focus = fn(&str, Kind, &[u8]) -> Option<String>;

struct Entry {
    about: String,
    make: Make,
}

/// Component kinds by name, and how to describe their payloads in traces.
#[derive(Default)]
pub struct Registry {
    kinds: BTreeMap<String, Entry>,
    describers: Vec<Describe>,
    focus: Option<Focus>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("kinds", &self.known())
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Registers a kind. `make` builds an instance from the component's
    /// `[component.settings]` (missing settings take `S::default()`); it is called
    /// again for every restart.
    pub fn register<S, C>(&mut self, kind: &str, about: &str, make: fn(S) -> C)
    where
        S: DeserializeOwned + Default + Clone + 'static,
        C: Component + 'static,
    {
        let build = move |value: &serde_json::Value| -> Result<Factory, String> {
            let settings: S = if value.is_null() {
                S::default()
            } else {
                serde_path_to_error::deserialize(value.clone()).map_err(|error| {
                    let path = error.path().to_string();
                    let inner = error.into_inner();
                    if path == "." {
                        inner.to_string()
                    } else {
                        format!("key `{path}`: {inner}")
                    }
                })?
            };
            Ok(Box::new(move || {
                Box::new(make(settings.clone())) as Box<dyn Component>
            }))
        };
        self.kinds.insert(
            kind.to_owned(),
            Entry {
                about: about.to_owned(),
                make: Box::new(build),
            },
        );
    }

    /// Adds a payload describer for traces.
    pub fn describe_with(&mut self, describe: Describe) {
        self.describers.push(describe);
    }

    /// Picks which sampled message `exchange dev` explains at the end of a run:
    /// `focus` returns the question the trace answers for a message worth
    /// explaining, `None` for the rest.
    pub fn focus_traces_on(&mut self, focus: Focus) {
        self.focus = Some(focus);
    }

    /// The question a message's trace answers, if the focus picks it.
    pub fn focus(&self, name: &str, kind: Kind, payload: &[u8]) -> Option<String> {
        self.focus.and_then(|focus| focus(name, kind, payload))
    }

    /// Known kinds, sorted.
    pub fn known(&self) -> Vec<&str> {
        self.kinds.keys().map(String::as_str).collect()
    }

    /// What a kind is, for `--help`-like listings.
    pub fn about(&self, kind: &str) -> Option<&str> {
        self.kinds.get(kind).map(|entry| entry.about.as_str())
    }

    /// A factory for `kind` with `settings`; `None` if the kind is unknown.
    pub fn factory(
        &self,
        kind: &str,
        settings: &serde_json::Value,
    ) -> Option<Result<Factory, String>> {
        self.kinds.get(kind).map(|entry| (entry.make)(settings))
    }

    /// A one-line summary of a payload, from the first describer that knows it.
    pub fn describe(&self, name: &str, kind: Kind, payload: &[u8]) -> String {
        self.describers
            .iter()
            .find_map(|describe| describe(name, kind, payload))
            .unwrap_or_else(|| format!("{} payload bytes", payload.len()))
    }
}

/// The example app's kinds, `store`, `feed` and `loadgen`, and the measuring
/// kinds `echo` and `pinger`.
pub fn example_registry() -> Registry {
    use exchange_components::{bench, feed, loadgen, store};
    let mut registry = Registry::new();
    registry.register(
        "store",
        "key-value store with prefix subscriptions",
        store::Store::new,
    );
    registry.register(
        "feed",
        "social feed (post, follow, timeline) on the store",
        feed::Feed::new,
    );
    registry.register(
        "loadgen",
        "drives the feed with random users",
        loadgen::Loadgen::new,
    );
    registry.register(
        "echo",
        "answers bench.echo with its payload (for measuring)",
        bench::Echo::new,
    );
    registry.register(
        "pinger",
        "keeps bench.echo requests in flight, or streams events (for measuring)",
        bench::Pinger::new,
    );
    registry.describe_with(exchange_components::describe);
    registry.focus_traces_on(exchange_components::trace_focus);
    registry
}
