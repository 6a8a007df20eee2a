//! The OpenAPI document served at `/openapi.json`, gathered from the handlers' annotations.

use super::{booking, chat, health, queue, trade};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "boxoffice", description = "Seats, tickets and the chat around them. Every endpoint but /healthz and /openapi.json needs `Authorization: Bearer <JWT>`. Contract Q's errors are `{status, error, code, message}`; contract B's are `{error}`; contract C's are `{detail}` (its WebSocket protocol is in the README); contract T answers in the envelope `{message, data, statusCode}`. `Idempotency-Key`: the first answer (status and body) is replayed for the same key and user; the same key with another request is 422; while the first is still running, 409; keys are kept 25 hours."),
    paths(
        health::healthz,
        queue::waiting::issue, queue::waiting::check,
        queue::concerts::list_concerts, queue::concerts::list_schedules, queue::concerts::seats,
        queue::concerts::create_concert, queue::concerts::create_schedule,
        queue::reservations::reserve, queue::reservations::get,
        queue::users::amount, queue::users::charge,
        queue::payments::pay,
        booking::bookings::create, booking::bookings::mine, booking::bookings::get, booking::bookings::cancel,
        booking::bookings::execute,
        booking::performances::list, booking::performances::create, booking::performances::seats,
        booking::performances::occupied, booking::performances::charges,
        chat::rooms::list_rooms, chat::rooms::create_room, chat::rooms::get_room, chat::rooms::participants,
        chat::messages::list_messages, chat::messages::post_message, chat::messages::edit_message,
        chat::messages::delete_message, chat::messages::mark_read, chat::search::search, chat::settings::get_settings,
        chat::settings::update_settings, chat::rooms::online_status, chat::files::file,
        trade::listings::create_listing, trade::listings::list_listings, trade::listings::get_listing,
        trade::rooms::open_room, trade::rooms::list_rooms, trade::rooms::room_detail, trade::messages::history,
        trade::rooms::mark_read, trade::rooms::leave, trade::messages::send_message, trade::images::image,
        trade::payments::request_payment, trade::payments::pay, trade::payments::confirm_purchase,
        trade::payments::cancel_payment,
        trade::signalr::transport::negotiate,
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
