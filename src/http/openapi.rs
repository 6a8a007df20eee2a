//! The OpenAPI document served at `/openapi.json`, gathered from the handlers' annotations.

use super::booking::{bookings, performances};
use super::queue::{concerts, payments, reservations, users, waiting};
use super::trade::signalr;
use super::{chat, health, trade};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "boxoffice", description = "Seats, tickets and the chat around them. Every endpoint but /healthz and /openapi.json needs `Authorization: Bearer <JWT>`. Contract Q's errors are `{status, error, code, message}`; contract B's are `{error}`; contract C's are `{detail}` (its WebSocket protocol is in the README); contract T answers in the envelope `{message, data, statusCode}`. `Idempotency-Key`: the first answer (status and body) is replayed for the same key and user; the same key with another request is 422; while the first is still running, 409; keys are kept 25 hours."),
    paths(
        health::healthz,
        waiting::issue, waiting::check,
        concerts::list_concerts, concerts::list_schedules, concerts::seats, concerts::create_concert, concerts::create_schedule,
        reservations::reserve, reservations::get,
        users::amount, users::charge,
        payments::pay,
        bookings::create, bookings::mine, bookings::get, bookings::cancel, bookings::execute,
        performances::list, performances::create, performances::seats, performances::occupied, performances::charges,
        chat::list_rooms, chat::create_room, chat::get_room, chat::participants, chat::list_messages, chat::post_message,
        chat::edit_message, chat::delete_message, chat::mark_read, chat::search, chat::get_settings, chat::update_settings,
        chat::online_status, chat::file,
        trade::create_listing, trade::list_listings, trade::get_listing, trade::open_room, trade::list_rooms, trade::room_detail,
        trade::history, trade::mark_read, trade::leave, trade::send_message, trade::image, trade::request_payment, trade::pay,
        trade::confirm_purchase, trade::cancel_payment,
        signalr::negotiate,
    ),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
    }
}
