//! # boxoffice
//!
//! A realtime server that sells seats and tickets and carries the chat around those
//! sales, as one binary over one embedded store.
//!
//! # Layout
//! - [`config`]: settings from flags and `BOXOFFICE_*` variables.
//! - [`auth`]: JWT verification (HS256, optional RS256/ES256) and minting.
//! - [`store`]: sled behind a typed API: keyed records, atomic batches through a journal,
//!   group commit, a layout version.
//! - [`actors`]: the owners of all business state: one actor per seat map, wallet (a
//!   user's balance), key gate (a user's idempotency keys in flight), room, ticket
//!   listing, and one each for the waiting queue, the catalog and the directory (which
//!   rooms exist between whom); [`actors::ledger`] keeps the first answer of every keyed
//!   request. [`actors::book::ActorBook`] starts a keyed actor from its records on first
//!   use and stops it when idle; the [`actors::Registry`] composes those books and holds
//!   no business state; actors hold narrow handles ([`actors::book::Lookup`], address
//!   books such as [`actors::seat_map::SeatMaps`]) instead of the registry.
//! - [`usecase`]: one function per use case that takes more than one actor (opening a
//!   trade room, creating a room, booking seats); handlers call these, and the rules stay
//!   in the actors.
//! - [`http`]: thin handlers, one folder per contract: authenticate, parse, send one
//!   message, render. [`http::trade`] (contract T, with its SignalR hub),
//!   [`http::chat`] (contract C, with its WebSocket), [`http::queue`] (contract Q) and
//!   [`http::booking`] (contract B); beside them what every contract shares: the
//!   extractors, one error type per contract, health, the OpenAPI document, signed links.
//! - [`cluster`]: more than one machine: a core and edges over NATS, and the
//!   [`cluster::Backend`] a WebSocket session reaches the state through.
//! - [`app`]: build, bind, run until a signal, flush, exit.
//! - [`observe`]: Prometheus metrics and the status page's figures.
//! - [`time`]: the one clock every timer reads (wall time plus an offset only tests move),
//!   milliseconds and RFC 3339.
//! - [`frame`]: a WebSocket frame encoded once, shared by every socket it goes to.
//!
//! The load tool, `boxoffice-load`, is its own workspace member under `load/`.

pub mod actors;
pub mod app;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod frame;
pub mod http;
pub mod money;
pub mod observe;
pub mod store;
pub mod time;
pub mod usecase;
