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
        trade::signalr::transport::negotiate, trade::signalr::transport::connect, chat::ws::connect,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `$ref` in the document points to a schema it defines.
    #[test]
    fn every_reference_resolves() {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serializes");
        let schemas = doc["components"]["schemas"].as_object().cloned().unwrap_or_default();
        let mut refs = Vec::new();
        fn walk(v: &serde_json::Value, at: String, out: &mut Vec<(String, String)>) {
            match v {
                serde_json::Value::Object(m) => {
                    for (k, v) in m {
                        if k == "$ref" {
                            if let Some(r) = v.as_str() {
                                out.push((at.clone(), r.to_string()));
                            }
                        } else {
                            walk(v, format!("{at}/{k}"), out);
                        }
                    }
                }
                serde_json::Value::Array(a) => {
                    for (i, v) in a.iter().enumerate() {
                        walk(v, format!("{at}/{i}"), out);
                    }
                }
                _ => {}
            }
        }
        walk(&doc, String::new(), &mut refs);
        assert!(!refs.is_empty());
        let dangling: Vec<_> = refs
            .iter()
            .filter(|(_, r)| r.strip_prefix("#/components/schemas/").is_none_or(|name| !schemas.contains_key(name)))
            .collect();
        assert!(dangling.is_empty(), "references to schemas the document lacks: {dangling:?}");
    }

    /// Each contract's schemas are named apart: `q.`, `b.`, `c.`, `t.` before the type's
    /// name, the contract's letter first for the error bodies, `TData_` for contract T's
    /// envelopes around each answer.
    #[test]
    fn schema_names_say_their_contract() {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serializes");
        let names: Vec<String> =
            doc["components"]["schemas"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
        let bare: Vec<&String> = names
            .iter()
            .filter(|n| !["q.", "b.", "c.", "t.", "TData_"].iter().any(|p| n.starts_with(p)))
            .filter(|n| !["QErrorBody", "BErrorBody", "CErrorBody", "TEnvelope"].contains(&n.as_str()))
            .collect();
        assert!(bare.is_empty(), "schemas without their contract's prefix: {bare:?}");
    }
}
