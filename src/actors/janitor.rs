//! `Janitor`: removes the records that have run out and that no actor keeps in memory (the
//! idempotency ledger's entries, the rooms' client message ids), every [`PURGE_EVERY`] of
//! the server's [clock](crate::time) (so an advance of it purges too), on a thread of its own: a purge scans its family of records, which must not hold up the
//! actors that serve requests. It owns no business state: a record past its retention
//! answers nothing any more.

use crate::store::{Store, StoreError};
use std::time::Duration;

/// How often the janitor purges.
pub const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// One kind of record the janitor purges.
pub struct Purge {
    /// What it removes, for the log ("run-out idempotency keys").
    pub what: &'static str,
    /// Removes the run-out records; returns how many.
    pub run: fn(&Store) -> Result<usize, StoreError>,
}

pub struct Janitor {
    pub store: Store,
    pub purges: Vec<Purge>,
}

impl Janitor {
    /// Purge once [`PURGE_EVERY`] from now has passed, then again.
    fn later(ctx: &mut actix::Context<Self>) {
        use actix::{ActorFutureExt, AsyncContext};
        let at = crate::time::now_ms().saturating_add(crate::time::ms(PURGE_EVERY));
        let wait = actix::fut::wrap_future::<_, Self>(crate::time::clock().sleep_until(at));
        ctx.spawn(wait.map(|(), act, ctx| {
            act.purge();
            Janitor::later(ctx);
        }));
    }

    fn purge(&self) {
        for purge in &self.purges {
            match (purge.run)(&self.store) {
                Ok(0) => {}
                Ok(n) => tracing::info!(purged = n, "purged {}", purge.what),
                Err(e) => tracing::warn!(error = %e, "could not purge {}", purge.what),
            }
        }
    }
}

impl actix::Actor for Janitor {
    type Context = actix::Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        Janitor::later(ctx);
    }
}
