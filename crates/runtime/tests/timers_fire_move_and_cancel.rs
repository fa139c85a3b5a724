//! Timers: one per token, setting a token again moves it, cancelling removes it,
//! `timers_max` bounds them (the excess is counted), and a fired timer reaches
//! `on_timer` in arrival order with messages.

mod support;

use std::time::Duration;

use exchange_runtime::{Component, ComponentLimits, Ctx, HandlerResult, Message, Time};
use support::*;

struct Timed {
    fired: Log,
}

const MS: Duration = Duration::from_millis(1);

impl Component for Timed {
    fn start(&mut self, ctx: &mut Ctx<'_>) -> HandlerResult {
        ctx.set_timer(10 * MS, 1);
        ctx.set_timer(20 * MS, 1); // moves token 1 to +20 ms
        ctx.set_timer(5 * MS, 2);
        ctx.cancel_timer(2);
        ctx.set_timer(15 * MS, 3);
        ctx.set_timer(15 * MS, 4); // over timers_max = 2: counted, not set
        Ok(())
    }
    fn on_timer(&mut self, ctx: &mut Ctx<'_>, token: u64) -> HandlerResult {
        self.fired.borrow_mut().push(Seen {
            name: token.to_string(),
            at: ctx.now(),
            ..Seen::default()
        });
        Ok(())
    }
    fn handle(&mut self, _ctx: &mut Ctx<'_>, _message: &Message) -> HandlerResult {
        Ok(())
    }
}

#[test]
fn timers_move_cancel_and_are_bounded() {
    let fired = log();
    let mut node = node(1);
    let shared = fired.clone();
    let limits = ComponentLimits {
        timers_max: 2,
        ..ComponentLimits::default()
    };
    node.add_component(
        "timed",
        limits,
        Box::new(move || {
            Box::new(Timed {
                fired: shared.clone(),
            })
        }),
    )
    .unwrap();
    node.handle(T0, Input::Start);

    let mut steps: Vec<Time> = Vec::new();
    while let Some(next) = node.poll_timeout() {
        steps.push(next);
        settle(&mut node, next);
        assert!(steps.len() < 10, "timers keep firing: {steps:?}");
    }
    let seen: Vec<(String, Time)> = fired
        .borrow()
        .iter()
        .map(|s| (s.name.clone(), s.at))
        .collect();
    assert_eq!(
        seen,
        [
            ("3".to_owned(), T0 + 15 * MS),
            ("1".to_owned(), T0 + 20 * MS)
        ]
    );
    let stats = node.components().next().unwrap().2.clone();
    assert_eq!(stats.timers_fired, 2);
    assert_eq!(stats.effects_refused, 1, "the timer over the limit");
    assert_accounted(&node);
}
