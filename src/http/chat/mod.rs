//! Contract C (seed 002): general chat in direct and group rooms, over REST and a plain
//! WebSocket. FastAPI's style: snake_case, every REST path with and without its trailing
//! slash, errors `{"detail": "..."}` (see [`CError`]).
//!
//! - [`rooms`]: the caller's rooms, creating a direct or group room, one room, its
//!   participants, and who of them is online.
//! - [`messages`]: a room's messages page by page; sending (JSON text, or multipart with a
//!   file), replying, editing and deleting; marking the room read.
//! - [`files`]: checking and storing an uploaded file (contract T's images go through the
//!   same checks), and serving it to the room's participants.
//! - [`search`]: a room's messages that contain a text, with `highlight`.
//! - [`settings`]: a room's settings.
//! - [`ws`]: the WebSocket `/chat/ws/{room_id}` and its session actor.
//!
//! Here: the contract's route table, and the parsing its handlers share (ids, paging,
//! queries, a room's actor).

pub mod files;
pub mod messages;
pub mod rooms;
pub mod search;
pub mod settings;
pub mod ws;

use crate::actors::room::Room;
use crate::http::error::CError;
use crate::http::AppState;
use actix::Addr;
use actix_web::{web, HttpRequest};

/// Every route of contract C: REST, then the WebSocket.
pub fn routes(cfg: &mut web::ServiceConfig) {
    // FastAPI answers both spellings; so do we.
    for slash in ["/", ""] {
        cfg.route(&format!("/chat/rooms{slash}"), web::get().to(rooms::list_rooms))
            .route(&format!("/chat/rooms{slash}"), web::post().to(rooms::create_room))
            .route(&format!("/chat/rooms/{{room_id}}{slash}"), web::get().to(rooms::get_room))
            .route(&format!("/chat/rooms/{{room_id}}/participants{slash}"), web::get().to(rooms::participants))
            .route(&format!("/chat/rooms/{{room_id}}/messages{slash}"), web::get().to(messages::list_messages))
            .route(&format!("/chat/rooms/{{room_id}}/messages{slash}"), web::post().to(messages::post_message))
            .route(
                &format!("/chat/rooms/{{room_id}}/messages/{{message_id}}{slash}"),
                web::put().to(messages::edit_message),
            )
            .route(
                &format!("/chat/rooms/{{room_id}}/messages/{{message_id}}{slash}"),
                web::delete().to(messages::delete_message),
            )
            .route(&format!("/chat/rooms/{{room_id}}/read{slash}"), web::post().to(messages::mark_read))
            .route(&format!("/chat/rooms/{{room_id}}/search{slash}"), web::get().to(search::search))
            .route(&format!("/chat/rooms/{{room_id}}/settings{slash}"), web::get().to(settings::get_settings))
            .route(&format!("/chat/rooms/{{room_id}}/settings{slash}"), web::put().to(settings::update_settings))
            .route(&format!("/chat/rooms/{{room_id}}/online-status{slash}"), web::get().to(rooms::online_status));
    }
    cfg.route("/chat/files/{room_id}/{name}", web::get().to(files::file));
    ws::routes(cfg);
}

/// A positive integer path or query value, or 422 as FastAPI answers.
fn int(raw: &str, what: &str) -> Result<u64, CError> {
    crate::http::schema::path_id(raw).ok_or_else(|| CError::invalid(format!("{what} must be a positive integer")))
}

/// The room's actor, or 404.
pub fn room_of(state: &AppState, raw: &str) -> Result<(u64, Addr<Room>), CError> {
    let id = int(raw, "room_id")?;
    let addr = state.registry.room(id)?.ok_or_else(|| CError::not_found("Chat room not found."))?;
    Ok((id, addr))
}

/// The `page` (1 and up) and `size` (1..=100, else `default`) of a query, or 422.
fn paging(page: &Option<String>, size: &Option<String>, default: usize) -> Result<(usize, usize), CError> {
    let page = match page {
        Some(p) => int(p, "page")? as usize,
        None => 1,
    };
    let size = match size {
        Some(s) => crate::http::schema::uint(s).filter(|n| (1..=100).contains(n)).map(|n| n as usize),
        None => Some(default),
    };
    Ok((page, size.ok_or_else(|| CError::invalid("size must be an integer from 1 to 100"))?))
}

/// The query string as `T`, or 422.
fn query<T: serde::de::DeserializeOwned>(req: &HttpRequest) -> Result<T, CError> {
    web::Query::<T>::from_query(req.query_string()).map(|q| q.into_inner()).map_err(|e| CError::invalid(e.to_string()))
}
