//! The actors that own all business state. Each serializes its own mutations through its
//! mailbox; that is the only lock. See each module for its invariants.

pub mod book;
pub mod card;
pub mod catalog;
pub mod deadline;
pub mod directory;
pub mod gateway;
pub mod hub;
pub mod janitor;
pub mod keys;
pub mod ledger;
pub mod registry;
pub mod room;
pub mod seat_map;
pub mod ticket_listing;
pub mod trade_notice;
pub mod waiting_queue;
pub mod wallet;

pub use registry::Registry;

/// Mailbox capacity of the domain actors: senders wait (backpressure) beyond it.
pub const MAILBOX: usize = 4096;
