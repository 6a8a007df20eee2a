//! The OpenAPI document served at `/openapi.json`, gathered from the handlers' annotations.

use super::{booking, chat, health, queue, trade};
use actix_web::{web, HttpResponse};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "boxoffice", description = "Seats, tickets and the chat around them. Every endpoint but /healthz and /openapi.json needs `Authorization: Bearer <JWT>`. Contract Q's errors are `{status, error, code, message}`; contract B's are `{error}`; contract C's are `{detail}` (its WebSocket protocol is in docs/api.md); contract T answers in the envelope `{message, data, statusCode}`. `Idempotency-Key`: the first answer (status and body) is replayed for the same key and user; the same key with another request is 422; while the first is still running, 409; keys are kept 25 hours."),
    paths(
        health::healthz,
        queue::waiting::issue, queue::waiting::check, queue::socket::connect,
        queue::waiting::get_settings, queue::waiting::put_settings,
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
    modifiers(&BearerAuth, &SharedLimits)
)]
pub struct ApiDoc;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/openapi.json", web::get().to(serve));
}

/// This document.
pub async fn serve() -> HttpResponse {
    HttpResponse::Ok().json(document())
}

/// The document as served: what the annotations give, plus what they cannot say
/// ([`refine`]). Built once.
pub fn document() -> &'static serde_json::Value {
    static DOC: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = serde_json::to_value(ApiDoc::openapi()).expect("the document serializes");
        refine(&mut doc);
        doc
    })
}

/// Sets the value at a JSON pointer whose parent exists; a pointer that names nothing is a
/// mistake in this file, caught by the tests.
fn set(doc: &mut serde_json::Value, pointer: &str, value: serde_json::Value) {
    let (parent, key) = pointer.rsplit_once('/').expect("a pointer");
    let key = key.replace("~1", "/").replace("~0", "~");
    match doc.pointer_mut(parent).and_then(|p| p.as_object_mut()) {
        Some(p) => {
            p.insert(key, value);
        }
        None => panic!("the document has no {parent}"),
    }
}

/// What utoipa's annotations cannot express: combinations of fields, unique items, and
/// patterns on array items.
fn refine(doc: &mut serde_json::Value) {
    use serde_json::json;
    // A malformed id in the path is refused before anything else, in the contract's
    // shape and status: say so on every operation that takes one.
    let paths = doc["paths"].as_object_mut().expect("paths");
    for (path, item) in paths.iter_mut() {
        let limited = path != "/healthz" && path != "/metrics";
        for op in item.as_object_mut().into_iter().flat_map(|m| m.values_mut()) {
            // Each operation's first tag names its contract (`T: ticket trade`); an
            // untagged one (`/healthz`) answers in contract Q's shape, as unknown paths do.
            let tag = op["tags"][0].as_str().unwrap_or("");
            let letter = match tag.split_once(':') {
                Some((l @ ("Q" | "B" | "C" | "T"), _)) => l,
                _ => "Q",
            };
            let (status, body, why) = match letter {
                "C" => ("422", "CErrorBody", "An id in the path that is not a positive integer"),
                "B" => ("400", "BErrorBody", "A malformed request"),
                "T" => ("400", "TEnvelope", "An id in the path that is not a positive integer"),
                _ => ("400", "QErrorBody", "An id in the path that is not a positive integer"),
            };
            let letter = letter.to_ascii_lowercase();
            // Operation ids are the handlers' names, which repeat across contracts
            // (`list_rooms`): prefix the contract, as the schema names are.
            if let Some(id) = op.get("operationId").and_then(|v| v.as_str()) {
                op["operationId"] = json!(format!("{letter}_{id}"));
            }
            let takes_id = op["parameters"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["in"] == "path" && p["schema"]["type"] == "integer"));
            let Some(responses) = op.get_mut("responses").and_then(|r| r.as_object_mut()) else { continue };
            let error = json!({"application/json": {"schema": {"$ref": format!("#/components/schemas/{body}")}}});
            if takes_id && !responses.contains_key(status) {
                responses.insert(status.to_string(), json!({"description": why, "content": error}));
            }
            // Every operation but the probes is rate-limited (see docs/api.md).
            if limited {
                responses.insert(
                    "429".to_string(),
                    json!({"description": "Over a rate limit (per user, or per address without a valid token)",
                           "headers": {"Retry-After": {"description": "Whole seconds to wait, at least 1",
                                                       "schema": {"type": "integer", "minimum": 1}}},
                           "content": error}),
                );
            }
        }
    }
    // Answers that are not JSON types of ours: the health body, and file bytes.
    set(
        doc,
        "/paths/~1healthz/get/responses/200/content",
        json!({"application/json": {"schema": {
            "type": "object", "required": ["status", "store"],
            "properties": {
                "status": {"const": "ok"},
                "store": {"type": "object", "required": ["flushes", "durableWaiters"], "properties": {
                    "flushes": {"type": "integer", "minimum": 0, "description": "Group commits (fsyncs) so far"},
                    "durableWaiters": {"type": "integer", "minimum": 0, "description": "Answers released by them"}}}}}}}),
    );
    let bytes =
        |media: &str| json!({ media: {"schema": {"type": "string", "contentMediaType": "application/octet-stream"}}});
    set(doc, "/paths/~1chat~1files~1{room_id}~1{name}/get/responses/200/content", bytes("*/*"));
    set(doc, "/paths/~1api~1chat~1images~1{room_id}~1{name}/get/responses/200/content", bytes("image/*"));
    let booking = "/components/schemas/b.BookingRequest/properties/seatIds";
    set(doc, &format!("{booking}/uniqueItems"), json!(true));
    set(doc, &format!("{booking}/items/pattern"), json!("\\S"));
    let perf = "/components/schemas/b.PerformanceRequest";
    set(doc, &format!("{perf}/properties/seatIds/uniqueItems"), json!(true));
    set(doc, &format!("{perf}/properties/seatIds/items/pattern"), json!("^[A-Za-z0-9]{1,16}$"));
    let without =
        |fields: &[&str]| json!({"anyOf": fields.iter().map(|f| json!({"required": [f]})).collect::<Vec<_>>()});
    set(
        doc,
        &format!("{perf}/oneOf"),
        json!([
            {"description": "A contract Q schedule's seats", "required": ["scheduleId"],
             "not": without(&["seatIds", "rows", "seatsPerRow"])},
            {"description": "Seats by label", "required": ["seatIds", "price"],
             "not": without(&["scheduleId", "rows", "seatsPerRow"])},
            {"description": "Rows of seats", "required": ["rows", "seatsPerRow", "price"],
             "not": without(&["scheduleId", "seatIds"])},
        ]),
    );
}

struct BearerAuth;

/// The limits every operation shares, said once: ids in paths are positive integers below
/// 2^53 (a path id that is not one is 400/422; a larger one names nothing, 404), and an
/// `Idempotency-Key` is 1 to 255 visible ASCII characters with no white space at either end.
struct SharedLimits;

impl Modify for SharedLimits {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::ParameterIn;
        use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
        use utoipa::openapi::RefOr;
        for item in openapi.paths.paths.values_mut() {
            let ops = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
                &mut item.options,
                &mut item.head,
                &mut item.trace,
            ];
            for op in ops.into_iter().flatten() {
                for p in op.parameters.iter_mut().flatten() {
                    let integer =
                        matches!(&p.schema, Some(RefOr::T(Schema::Object(o))) if o.schema_type == Type::Integer.into());
                    if p.parameter_in == ParameterIn::Path && integer {
                        p.schema = Some(RefOr::T(Schema::Object(super::schema::positive().build())));
                    }
                    if p.parameter_in == ParameterIn::Header && p.name.eq_ignore_ascii_case("idempotency-key") {
                        p.schema = Some(RefOr::T(Schema::Object(
                            ObjectBuilder::new()
                                .schema_type(Type::String)
                                .min_length(Some(1))
                                .max_length(Some(255))
                                .pattern(Some("^[!-~]([ -~]*[!-~])?$"))
                                .build(),
                        )));
                    }
                }
            }
        }
    }
}

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
        // WebSocket handshakes from browsers cannot set headers: the JWT goes in `token`.
        components.add_security_scheme(
            "query_token",
            SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Query(
                utoipa::openapi::security::ApiKeyValue::with_description("token", "The JWT"),
            )),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `$ref` in the document points to a schema it defines.
    #[test]
    fn every_reference_resolves() {
        let doc = document().clone();
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
        let doc = document().clone();
        let names: Vec<String> =
            doc["components"]["schemas"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
        let bare: Vec<&String> = names
            .iter()
            .filter(|n| !["q.", "b.", "c.", "t.", "TData_"].iter().any(|p| n.starts_with(p)))
            .filter(|n| !["QErrorBody", "BErrorBody", "CErrorBody", "TEnvelope"].contains(&n.as_str()))
            .collect();
        assert!(bare.is_empty(), "schemas without their contract's prefix: {bare:?}");
    }

    /// What OpenAPI 3.1 requires of operations and that a validator checks first (CI also
    /// runs `openapi-spec-validator` over the served document, tests/schemathesis/run):
    /// unique operation ids, and path parameters that are exactly the template's.
    #[test]
    fn operations_are_well_formed() {
        let doc = document();
        assert_eq!(doc["openapi"], "3.1.0");
        let mut ids = std::collections::HashSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            let template: std::collections::BTreeSet<String> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                .map(str::to_string)
                .collect();
            for (method, op) in item.as_object().expect("a path item") {
                let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} has no operationId"));
                assert!(ids.insert(id.to_string()), "operationId {id} repeats");
                let declared: std::collections::BTreeSet<String> = op["parameters"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|p| p["in"] == "path")
                    .map(|p| p["name"].as_str().expect("a name").to_string())
                    .collect();
                assert_eq!(declared, template, "{method} {path}: path parameters");
                let responses = op["responses"].as_object().expect("responses");
                assert!(!responses.is_empty(), "{method} {path} documents no response");
            }
        }
    }

    /// The limits the server enforces are in the document (a sample of each kind).
    #[test]
    fn the_enforced_limits_are_published() {
        let doc = document();
        let s = &doc["components"]["schemas"];
        assert_eq!(s["t.ListingRequest"]["properties"]["title"]["maxLength"], 200);
        assert_eq!(s["c.SendRequest"]["properties"]["message_content"]["maxLength"], 5000);
        assert_eq!(s["c.SettingsRequest"]["properties"]["message_retention_days"]["maximum"], 3650);
        assert_eq!(s["q.PaymentRequest"]["properties"]["amount"]["maximum"], crate::money::MAX_AMOUNT);
        assert_eq!(s["b.PerformanceRequest"]["oneOf"].as_array().map(Vec::len), Some(3));
        let reserve = &doc["paths"]["/reservations"]["post"]["parameters"];
        let key = reserve.as_array().and_then(|ps| ps.iter().find(|p| p["name"] == "Idempotency-Key")).expect("key");
        assert_eq!(key["schema"]["maxLength"], 255);
        let get = &doc["paths"]["/reservations/{reservation_id}"]["get"];
        assert_eq!(get["parameters"][0]["schema"]["minimum"], 1);
        assert!(get["responses"]["400"].is_object(), "a malformed id's 400 is documented");
    }
}
