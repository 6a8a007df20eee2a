//! `Deadline`: an actor's one timer, aimed at its earliest deadline (a hold's expiry, a
//! payment request's). The actor says when; the timer calls the actor back then, a
//! millisecond late rather than early (the actor compares against the wall clock).

use crate::time::until;
use actix::prelude::*;
use std::time::Duration;

#[derive(Debug, Default)]
pub struct Deadline {
    /// The deadline it is aimed at (ms since the epoch) and the timer's handle.
    armed: Option<(u64, SpawnHandle)>,
}

impl Deadline {
    /// The deadline the timer is aimed at, if any.
    pub fn at(&self) -> Option<u64> {
        self.armed.map(|(at, _)| at)
    }

    pub fn is_armed(&self) -> bool {
        self.armed.is_some()
    }

    /// Aim the timer at `at`: `fire` runs then, once, unless the timer is aimed elsewhere
    /// first. `fire` starts with [`Deadline::fired`].
    pub fn set<A>(&mut self, ctx: &mut Context<A>, at: u64, fire: fn(&mut A, &mut Context<A>))
    where
        A: Actor<Context = Context<A>>,
    {
        if self.at() == Some(at) {
            return;
        }
        self.clear(ctx);
        let handle = ctx.run_later(until(at) + Duration::from_millis(1), fire);
        self.armed = Some((at, handle));
    }

    /// No deadline any more.
    pub fn clear<A>(&mut self, ctx: &mut Context<A>)
    where
        A: Actor<Context = Context<A>>,
    {
        if let Some((_, handle)) = self.armed.take() {
            ctx.cancel_future(handle);
        }
    }

    /// The timer went off: it is aimed at nothing until set again.
    pub fn fired(&mut self) {
        self.armed = None;
    }
}
