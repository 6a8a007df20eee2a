//! `Deadline`: an actor's one timer, aimed at its earliest deadline (a hold's expiry, a
//! payment request's). The actor says when; the timer calls the actor back then, by the
//! server's [clock](crate::time), a millisecond late rather than early (the actor compares
//! against the clock), or at once when the clock is advanced past it.

use crate::time::Clock;
use actix::prelude::*;

#[derive(Debug)]
pub struct Deadline {
    /// The deadline it is aimed at (ms since the epoch) and the timer's handle.
    armed: Option<(u64, SpawnHandle)>,
    /// The clock it reads: the process's, or a unit test's own.
    clock: &'static Clock,
}

impl Default for Deadline {
    fn default() -> Self {
        Deadline::on(crate::time::clock())
    }
}

impl Deadline {
    /// A timer that reads `clock` (the actors' timers read the process's [`Default`]).
    pub fn on(clock: &'static Clock) -> Self {
        Deadline { armed: None, clock }
    }

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
        // One boxed future per aim, as `run_later` boxed its timer.
        let wait = actix::fut::wrap_future::<_, A>(self.clock.sleep_until(at));
        let handle = ctx.spawn(wait.map(move |(), act, ctx| fire(act, ctx)));
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

#[cfg(test)]
mod tests {
    //! A timer on a clock of its own (advancing the process's clock would move every other
    //! test's deadlines): it waits for its deadline, re-aims when the clock moves, and
    //! fires once.

    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    struct Timed {
        timer: Deadline,
        fired: Arc<AtomicU32>,
        /// The clock's time when it fired, and the deadline then.
        seen: Arc<std::sync::Mutex<Vec<(u64, u64)>>>,
    }

    impl Actor for Timed {
        type Context = Context<Self>;
    }

    impl Timed {
        fn fire(&mut self, _: &mut Context<Self>) {
            let at = self.timer.at().expect("armed while it fires");
            self.timer.fired();
            self.seen.lock().expect("lock").push((self.timer.clock.now_ms(), at));
            self.fired.fetch_add(1, SeqCst);
        }
    }

    #[derive(Message)]
    #[rtype(result = "()")]
    struct Aim(u64);

    impl Handler<Aim> for Timed {
        type Result = ();
        fn handle(&mut self, msg: Aim, ctx: &mut Context<Self>) {
            self.timer.set(ctx, msg.0, Timed::fire);
        }
    }

    async fn until(what: &str, check: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !check() {
            assert!(Instant::now() < deadline, "never: {what}");
            actix_rt::time::sleep(Duration::from_millis(2)).await;
        }
    }

    #[actix_rt::test]
    async fn an_advance_past_the_deadline_fires_it_at_once_and_once() {
        let clock: &'static Clock = Box::leak(Box::new(Clock::new()));
        let fired = Arc::new(AtomicU32::new(0));
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        // On another thread, as actors run on arbiters apart from the caller.
        let arbiter = Arbiter::new();
        let (f, s) = (fired.clone(), seen.clone());
        let timed = Timed::start_in_arbiter(&arbiter.handle(), move |_| Timed {
            timer: Deadline::on(clock),
            fired: f,
            seen: s,
        });
        let hour = Duration::from_secs(3600);
        let at = clock.now_ms() + 3_600_000;
        timed.send(Aim(at)).await.expect("mailbox");

        // Short of the deadline: nothing.
        clock.advance(hour - Duration::from_secs(1));
        actix_rt::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(fired.load(SeqCst), 0, "fired a second early");

        // Past it: at once, not an hour of wall time later.
        let started = Instant::now();
        clock.advance(Duration::from_secs(2));
        until("the timer fires", || fired.load(SeqCst) == 1).await;
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
        let (now, aimed) = seen.lock().expect("lock")[0];
        assert!(now >= aimed && aimed == at, "fired at {now} for {aimed}");

        // Once: more advances do not fire it again.
        clock.advance(hour);
        actix_rt::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(fired.load(SeqCst), 1, "an expiry fires once");

        // Aimed again, it waits for the wall clock as before.
        let soon = clock.now_ms() + 150;
        timed.send(Aim(soon)).await.expect("mailbox");
        until("the timer fires by wall time", || fired.load(SeqCst) == 2).await;
        assert!(seen.lock().expect("lock")[1].0 > soon, "not a millisecond early");
        arbiter.stop();
    }

    #[actix_rt::test]
    async fn a_timer_re_aimed_before_an_advance_fires_for_its_new_deadline_only() {
        let clock: &'static Clock = Box::leak(Box::new(Clock::new()));
        let fired = Arc::new(AtomicU32::new(0));
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let timed = Timed { timer: Deadline::on(clock), fired: fired.clone(), seen: seen.clone() }.start();
        let first = clock.now_ms() + 60_000;
        let second = clock.now_ms() + 600_000;
        timed.send(Aim(first)).await.expect("mailbox");
        timed.send(Aim(second)).await.expect("mailbox");
        // Past the first deadline, short of the second: the old aim is gone.
        clock.advance(Duration::from_secs(120));
        actix_rt::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(fired.load(SeqCst), 0);
        clock.advance(Duration::from_secs(600));
        until("the timer fires", || fired.load(SeqCst) == 1).await;
        assert_eq!(seen.lock().expect("lock")[0].1, second);
    }
}
