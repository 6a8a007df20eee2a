//! `Janitor`: removes the records that have run out and that no actor keeps in memory (the
//! idempotency ledger's entries, the rooms' client message ids), every [`PURGE_EVERY`], on
//! a thread of its own: a purge scans its family of records, which must not hold up the
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

impl actix::Actor for Janitor {
    type Context = actix::Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        use actix::AsyncContext;
        ctx.run_interval(PURGE_EVERY, |act, _| {
            for purge in &act.purges {
                match (purge.run)(&act.store) {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(purged = n, "purged {}", purge.what),
                    Err(e) => tracing::warn!(error = %e, "could not purge {}", purge.what),
                }
            }
        });
    }
}
