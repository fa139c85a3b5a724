//! Running handlers: a turn of the run queue, one invocation inside
//! `catch_unwind`, restarts of a failing component (supervision); and the
//! node's life around them: start, timeouts, quiesce, drain, shutdown.

use std::panic::{AssertUnwindSafe, catch_unwind};

use super::output::{Event, Output, TraceOutcome};
use super::queue::Item;
use super::{Node, State};
use crate::component::{Component, HandlerResult};
use crate::ctx::Ctx;
use crate::ids::{Address, ComponentId};
use crate::message::{BounceReason, Header, Hop, Message};
use crate::stats::DropReason;

enum Invocation {
    Ok,
    Failed(String),
    /// The handler refused the message with a typed reason.
    Refused(BounceReason, String, Option<std::time::Duration>),
    Panicked(String),
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(text), _) => (*text).to_owned(),
        (_, Some(text)) => text.clone(),
        _ => "panic with a non-string payload".to_owned(),
    }
}

impl Node {
    /// Starts every component (calls [`Component::start`]); once only.
    pub(super) fn start(&mut self) {
        if self.state != State::Building {
            return;
        }
        self.state = State::Running;
        for index in 0..self.slots.len() {
            self.slots[index].window_start = self.now;
            self.start_component(ComponentId(index as u32));
        }
    }

    /// Bounces messages that waited long enough for a handler, fires due
    /// timers, and expires requests whose deadline passed.
    pub(super) fn time_out(&mut self) {
        let now = self.now;
        self.timed_out_at = now;
        while let Some(message) = self.awaiting.pop_due(now) {
            let detail = "no node handled this name within handler_wait";
            self.refuse_at_node(message, BounceReason::NoHandler, detail);
        }
        while let Some((component, token)) = self.timers.pop_due(now) {
            self.queue.push_timer(component, token);
        }
        while let Some((correlation, pending)) = self.pending.pop_expired(now) {
            self.expire(correlation, pending);
        }
    }

    pub(super) fn quiesce(&mut self) {
        self.timers.clear();
    }

    pub(super) fn drain(&mut self) {
        self.quiesce();
        if self.state == State::Running {
            self.state = State::Draining;
        }
        self.refuse_awaiting("the node is stopping");
    }

    pub(super) fn shutdown(&mut self) {
        if self.state == State::Stopped {
            return;
        }
        for index in 0..self.slots.len() {
            let id = ComponentId(index as u32);
            let _ = self.invoke(id, None, |component, ctx| {
                component.stop(ctx);
                Ok(())
            });
            self.apply_effects(id);
        }
        self.refuse_awaiting("the node stopped");
        self.state = State::Stopped;
        self.quiesce();
        while let Some((id, item, _)) = self.queue.pop() {
            let Item::Message(message) = item else {
                continue;
            };
            // A sender on another node outlives this one: it gets its message
            // back. A sender here is stopping too, so the message is just counted.
            if message.header.is_bounceable() && message.header.source.node != self.id {
                self.refuse(id, message, BounceReason::Overloaded, "the node shut down");
            } else {
                self.slots[id.index()]
                    .stats
                    .outcomes
                    .drop(DropReason::Shutdown);
            }
        }
        self.pending.clear();
    }

    /// Dispatches up to the dispatch budget's items, timing each handler with
    /// the node's stopwatch.
    pub(super) fn run(&mut self) {
        let budget = self.dispatch_per_turn.value;
        let Some(mut stopwatch) = self.stopwatch.take() else {
            for _ in 0..budget {
                if self.dispatch().is_none() {
                    break;
                }
            }
            return;
        };
        stopwatch.lap();
        for _ in 0..budget {
            let Some(id) = self.dispatch() else { break };
            if let Some(elapsed) = stopwatch.lap() {
                self.slots[id.index()].stats.record_handler_time(elapsed);
            }
        }
        self.stopwatch = Some(stopwatch);
    }

    /// Handles the next queued item (first come, first served across the node).
    /// Returns the component that ran, or `None` if nothing is queued.
    fn dispatch(&mut self) -> Option<ComponentId> {
        let (id, item, decongested) = self.queue.pop()?;
        if decongested {
            self.congestion(id, false);
        }
        match item {
            Item::Timer { token } => {
                self.slots[id.index()].stats.timers_fired += 1;
                match self.invoke(id, None, |component, ctx| component.on_timer(ctx, token)) {
                    Invocation::Ok => self.apply_effects(id),
                    Invocation::Failed(error) | Invocation::Refused(_, error, _) => {
                        self.restart(id, error)
                    }
                    Invocation::Panicked(text) => self.restart(id, text),
                }
            }
            Item::Message(message) => self.dispatch_message(id, message),
        }
        Some(id)
    }

    fn dispatch_message(&mut self, id: ComponentId, mut message: Message) {
        let now = self.now;
        if message
            .header
            .deadline
            .is_some_and(|deadline| deadline < now)
        {
            let detail = "deadline passed in the queue";
            return self.refuse(id, message, BounceReason::Expired, detail);
        }
        if self.slots[id.index()].failed {
            let detail = "component stopped after too many restarts";
            return self.refuse(id, message, BounceReason::HandlerFailed, detail);
        }
        message.header.push_hop(Hop {
            node: self.id,
            component: id,
            at: now,
        });
        let invocation = self.invoke(id, Some(&message.header), |component, ctx| {
            component.handle(ctx, &message)
        });
        match invocation {
            Invocation::Ok => {
                self.slots[id.index()].stats.handled += 1;
                self.trace(id, &message, TraceOutcome::Handled);
                self.apply_effects(id);
                self.minter.recycle(message.header);
            }
            Invocation::Failed(error) => {
                self.refuse(id, message, BounceReason::HandlerFailed, &error);
            }
            Invocation::Refused(reason, detail, retry_after) => {
                self.refuse_with(id, message, reason, &detail, retry_after);
            }
            Invocation::Panicked(text) => {
                let detail = format!("handler panicked: {text}");
                self.refuse(id, message, BounceReason::HandlerFailed, &detail);
                self.restart(id, text);
            }
        }
    }

    fn invoke(
        &mut self,
        id: ComponentId,
        current: Option<&Header>,
        f: impl FnOnce(&mut dyn Component, &mut Ctx<'_>) -> HandlerResult,
    ) -> Invocation {
        let slot = &mut self.slots[id.index()];
        self.effects.clear();
        let mut ctx = Ctx {
            me: Address {
                node: self.id,
                component: id,
            },
            now: self.now,
            rng: &mut slot.rng,
            env: &mut slot.env,
            router: &self.router,
            effects: &mut self.effects,
            minter: &mut self.minter,
            current,
            effects_max: self.config.effects_max,
            last_route: &mut slot.last_route,
            overflowed: 0,
        };
        let instance = &mut slot.instance;
        let result = catch_unwind(AssertUnwindSafe(|| f(instance.as_mut(), &mut ctx)));
        slot.stats.effects_refused += ctx.overflowed;
        match result {
            Ok(Ok(())) => Invocation::Ok,
            Ok(Err(error)) => {
                self.effects.clear();
                match error.refusal() {
                    Some((reason, retry_after)) => {
                        Invocation::Refused(reason, error.to_string(), retry_after)
                    }
                    None => Invocation::Failed(error.to_string()),
                }
            }
            Err(panic) => {
                self.effects.clear();
                Invocation::Panicked(panic_text(panic.as_ref()))
            }
        }
    }

    fn start_component(&mut self, id: ComponentId) {
        match self.invoke(id, None, |component, ctx| component.start(ctx)) {
            Invocation::Ok => self.apply_effects(id),
            Invocation::Failed(reason)
            | Invocation::Refused(_, reason, _)
            | Invocation::Panicked(reason) => self.restart(id, reason),
        }
    }

    /// Replaces a failed component with a fresh instance and starts it, unless it
    /// has failed too often lately, in which case it stays stopped.
    fn restart(&mut self, id: ComponentId, mut reason: String) {
        loop {
            self.timers.cancel_all_of(id);
            let now = self.now;
            let slot = &mut self.slots[id.index()];
            if now.saturating_since(slot.window_start) > self.config.restart_window {
                slot.window_start = now;
                slot.restarts_in_window = 0;
            }
            slot.restarts_in_window += 1;
            if slot.restarts_in_window > self.config.restart_intensity_max {
                slot.failed = true;
                self.outputs
                    .push_back(Output::Event(Event::Failed { component: id }));
                return;
            }
            slot.stats.restarts += 1;
            slot.instance = (slot.factory)();
            self.outputs.push_back(Output::Event(Event::Restarted {
                component: id,
                reason,
            }));
            match self.invoke(id, None, |component, ctx| component.start(ctx)) {
                Invocation::Ok => return self.apply_effects(id),
                Invocation::Failed(text)
                | Invocation::Refused(_, text, _)
                | Invocation::Panicked(text) => reason = text,
            }
        }
    }
}
