//! The narrow handles actors get instead of the registry: where to start an actor
//! ([`Arbiters`]) and how to reach another kind of actor for one message ([`Lookup`]).
//!
//! An actor that must talk to another kind of actor holds a `Lookup<Id, Message>` (or a
//! small typed address book such as [`SeatMaps`](super::seat_map::SeatMaps)), so it
//! depends on the messages it sends, not on every actor the registry can start.

use crate::store::StoreError;
use actix::prelude::*;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// The pool of threads (arbiters) domain actors run on, chosen by a hash of the actor's id
/// so that one actor always lands on the same thread.
#[derive(Clone)]
pub struct Arbiters(Arc<[ArbiterHandle]>);

impl Arbiters {
    /// `n` new arbiters (at least one).
    pub fn new(n: usize) -> Arbiters {
        Arbiters((0..n.max(1)).map(|_| Arbiter::new().handle()).collect())
    }

    /// The arbiter for the actor identified by `key`.
    pub fn for_key<K: Hash + ?Sized>(&self, key: &K) -> ArbiterHandle {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        self.0[(h.finish() as usize) % self.0.len()].clone()
    }
}

type Find<K, M> = dyn Fn(K) -> Result<Option<Recipient<M>>, StoreError> + Send + Sync;

/// Finds the actor that owns id `K` and takes message `M`, starting it if it must:
/// `Ok(None)` when there is no such actor.
pub struct Lookup<K, M: Message + Send>(Arc<Find<K, M>>)
where
    M::Result: Send;

impl<K, M: Message + Send> Lookup<K, M>
where
    M::Result: Send,
{
    pub fn new(find: impl Fn(K) -> Result<Option<Recipient<M>>, StoreError> + Send + Sync + 'static) -> Self {
        Lookup(Arc::new(find))
    }

    pub fn get(&self, id: K) -> Result<Option<Recipient<M>>, StoreError> {
        (self.0)(id)
    }
}

impl<K, M: Message + Send> Clone for Lookup<K, M>
where
    M::Result: Send,
{
    fn clone(&self) -> Self {
        Lookup(self.0.clone())
    }
}
