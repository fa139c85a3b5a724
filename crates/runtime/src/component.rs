//! The component trait: what users implement.

use std::fmt;
use std::time::Duration;

use crate::ctx::Ctx;
use crate::message::{BounceReason, Message};

/// Why a handler failed. The message is bounced `HandlerFailed` to its sender
/// (or dropped and counted if it was a reply, publish or bounce) and every effect
/// the handler buffered in its [`Ctx`] is discarded.
///
/// Any `std::error::Error` converts into it, so `?` works in handlers. A
/// handler that refuses a message on purpose, with a reason its sender can
/// act on, returns [`HandlerError::refuse`] instead: the message bounces with
/// that reason (and a retry-after, if given), not `HandlerFailed`.
pub struct HandlerError(Box<dyn std::error::Error + Send + Sync + 'static>);

impl HandlerError {
    /// An error from a message for people.
    pub fn msg(text: impl Into<String>) -> HandlerError {
        HandlerError(text.into().into())
    }

    /// A refusal with a typed reason (`QuotaExceeded` for a store that is
    /// full, `Overloaded`, `NoAccess`, …): the message bounces with `reason`
    /// and `detail`. A refusal from [`Component::start`] or
    /// [`Component::on_timer`] (no message to bounce) is a failure like any
    /// other error.
    pub fn refuse(reason: BounceReason, detail: impl Into<String>) -> HandlerError {
        HandlerError(Box::new(Refusal {
            reason,
            detail: detail.into(),
            retry_after: None,
        }))
    }

    /// The same refusal with a hint of when a retry could succeed.
    pub fn with_retry_after(self, retry_after: Duration) -> HandlerError {
        match self.0.downcast::<Refusal>() {
            Ok(mut refusal) => {
                refusal.retry_after = Some(retry_after);
                HandlerError(refusal)
            }
            Err(other) => HandlerError(other),
        }
    }

    /// The reason and retry-after, if this is a refusal.
    pub(crate) fn refusal(&self) -> Option<(BounceReason, Option<Duration>)> {
        let refusal = self.0.downcast_ref::<Refusal>()?;
        Some((refusal.reason, refusal.retry_after))
    }
}

/// A handler's refusal with a typed reason (see [`HandlerError::refuse`]).
#[derive(Debug)]
struct Refusal {
    reason: BounceReason,
    detail: String,
    retry_after: Option<Duration>,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

impl std::error::Error for Refusal {}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for HandlerError {
    fn from(error: E) -> HandlerError {
        HandlerError(Box::new(error))
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// What handlers return.
pub type HandlerResult = Result<(), HandlerError>;

/// User code that handles messages. Plain synchronous Rust: the node calls one
/// handler at a time, so a component owns its state without locks.
///
/// Everything a handler does to the outside world goes through [`Ctx`] and takes
/// effect when the handler returns `Ok`; if it returns `Err` or panics, none of it
/// does. A panic also replaces the component with a fresh instance from its
/// factory (its fields are lost; [`Ctx::env`] is kept), cancels its timers and
/// calls [`Component::start`] again.
pub trait Component {
    /// The names routed to this component. Read once, when it is added to a node.
    fn handles(&self) -> &[&str] {
        &[]
    }

    /// Called when the node starts, and after every restart.
    fn start(&mut self, ctx: &mut Ctx<'_>) -> HandlerResult {
        let _ = ctx;
        Ok(())
    }

    /// Handles one message: a send or request for a name in [`Component::handles`],
    /// a publish it subscribed to, or a reply or bounce to something it sent.
    fn handle(&mut self, ctx: &mut Ctx<'_>, message: &Message) -> HandlerResult;

    /// A timer set with [`Ctx::set_timer`] fired.
    fn on_timer(&mut self, ctx: &mut Ctx<'_>, token: u64) -> HandlerResult {
        let _ = (ctx, token);
        Ok(())
    }

    /// Called once when the node shuts down.
    fn stop(&mut self, ctx: &mut Ctx<'_>) {
        let _ = ctx;
    }

    /// What must hold of this component's state between any two messages (the
    /// simulator checks it after every step): `Err` says what is broken.
    fn invariants(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Makes fresh instances of a component: at start and after each restart.
pub type Factory = Box<dyn FnMut() -> Box<dyn Component>>;
