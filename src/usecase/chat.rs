//! Rooms: opened and created through the directory, answered as the caller sees them.

use crate::actors::directory::{CreateRoom, OpenTradeRoom};
use crate::actors::room::{Author, ChatError, RoomKind, RoomSummary, Summary};
use crate::actors::ticket_listing::GetListing;
use crate::actors::Registry;

/// Why a trade room was not opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenTradeRoomError {
    #[error("no such listing")]
    ListingNotFound,
    #[error(transparent)]
    Chat(#[from] ChatError),
}

fn busy(_: actix::MailboxError) -> ChatError {
    ChatError::Unavailable("an actor is busy; try again".into())
}

/// Open (or get back) `buyer`'s trade room about `listing` with its seller: the room as
/// the buyer sees it, and whether it was created. The directory refuses the seller's own
/// listing.
pub async fn open_trade_room(
    registry: &Registry,
    buyer: Author,
    listing: u64,
) -> Result<(RoomSummary, bool), OpenTradeRoomError> {
    let listing = registry.listing(listing).map_err(ChatError::from)?.ok_or(OpenTradeRoomError::ListingNotFound)?;
    let listing = listing.send(GetListing).await.map_err(busy)?;
    let me = buyer.id;
    let (room, created) = registry.directory().send(OpenTradeRoom { listing, buyer }).await.map_err(busy)??;
    Ok((summary(registry, room, me).await?, created))
}

/// Create a room of `creator` with `others` (a direct room between two users is made once:
/// the second request gets the first), as the creator sees it, and whether it was created.
pub async fn create_room(
    registry: &Registry,
    creator: Author,
    kind: RoomKind,
    name: Option<String>,
    description: Option<String>,
    others: Vec<u64>,
) -> Result<(RoomSummary, bool), ChatError> {
    let me = creator.id;
    let msg = CreateRoom { creator, kind, name, description, others };
    let (room, created) = registry.directory().send(msg).await.map_err(busy)??;
    Ok((summary(registry, room, me).await?, created))
}

async fn summary(registry: &Registry, room: u64, user: u64) -> Result<RoomSummary, ChatError> {
    let room = registry.room(room)?.ok_or(ChatError::RoomNotFound)?;
    room.send(Summary { user }).await.map_err(busy)?
}
