//! Which contract a path belongs to, and refusals in that contract's shape: unknown routes
//! (404, or 405 with `Allow`), a query string that is not UTF-8, and any refusal made
//! before a handler runs.

use super::error::{BError, CError, QError, TError};
use actix_web::http::header::{HeaderValue, ALLOW};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError};
use std::sync::OnceLock;
use utoipa::OpenApi;

/// Unknown routes. A known path asked with another method is 405 with `Allow`; any other
/// path is 404. Both in the error shape of the contract the path belongs to (by its
/// prefix: `/api` and `/hubs` contract T, `/chat` contract C, `/bookings`, `/performances`
/// and `/payments` contract B, the rest contract Q).
pub async fn not_found(req: HttpRequest) -> HttpResponse {
    let path = req.path();
    let allowed = allowed_methods(path);
    let (status, message) = if allowed.is_empty() {
        (StatusCode::NOT_FOUND, format!("no such endpoint: {path}"))
    } else {
        let message = format!("{} is not allowed on {path}; allowed: {}", req.method(), allowed.join(", "));
        (StatusCode::METHOD_NOT_ALLOWED, message)
    };
    let code = if allowed.is_empty() { "NOT_FOUND" } else { "METHOD_NOT_ALLOWED" };
    let mut res = refusal(path, status, code, message);
    if !allowed.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&allowed.join(", ")) {
            res.headers_mut().insert(ALLOW, v);
        }
    }
    res
}

/// A refusal in the error shape of the contract `path` belongs to (`code` is contract Q's).
pub fn refusal(path: &str, status: StatusCode, code: &'static str, message: String) -> HttpResponse {
    match Contract::of(path) {
        Contract::T => TError::new(status, message).error_response(),
        Contract::C => CError::new(status, message).error_response(),
        Contract::B => BError::new(status, message).error_response(),
        Contract::Q => QError::new(status, code, message).error_response(),
    }
}

/// A query string whose percent-decoded bytes are not UTF-8: its refusal (400).
pub fn bad_query(req: &HttpRequest) -> Option<HttpResponse> {
    let q = req.query_string();
    if q.is_empty() {
        return None;
    }
    let utf8 = q.split('&').flat_map(|pair| pair.split('=')).all(|part| {
        let part = part.replace('+', " ");
        percent_encoding::percent_decode_str(&part).decode_utf8().is_ok()
    });
    (!utf8).then(|| {
        refusal(req.path(), StatusCode::BAD_REQUEST, "INVALID_REQUEST", "the query string is not UTF-8".into())
    })
}

/// The client contract a path belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contract {
    Q,
    B,
    C,
    T,
}

impl Contract {
    /// Its letter, as metrics label it (`Q`, `B`, `C`, `T`).
    pub fn letter(self) -> &'static str {
        match self {
            Contract::Q => "Q",
            Contract::B => "B",
            Contract::C => "C",
            Contract::T => "T",
        }
    }

    pub fn of(path: &str) -> Contract {
        let trimmed = path.trim_start_matches('/');
        // `/payments` is contract Q's payment; `/payments/execute` contract B's.
        if trimmed.trim_end_matches('/') == "payments" {
            return Contract::Q;
        }
        let first = trimmed.split('/').next().unwrap_or("");
        match first {
            "api" | "hubs" => Contract::T,
            "chat" => Contract::C,
            "bookings" | "performances" | "payments" => Contract::B,
            _ => Contract::Q,
        }
    }
}

/// The methods the server answers on `path` (empty: an unknown path), from the OpenAPI
/// document's operations and the WebSocket routes.
fn allowed_methods(path: &str) -> Vec<&'static str> {
    static ROUTES: OnceLock<Vec<(Vec<String>, Vec<&'static str>)>> = OnceLock::new();
    let routes = ROUTES.get_or_init(|| {
        let mut routes: Vec<(Vec<String>, Vec<&'static str>)> = super::openapi::ApiDoc::openapi()
            .paths
            .paths
            .iter()
            .map(|(template, item)| {
                let ops = [
                    ("GET", item.get.is_some()),
                    ("PUT", item.put.is_some()),
                    ("POST", item.post.is_some()),
                    ("DELETE", item.delete.is_some()),
                    ("PATCH", item.patch.is_some()),
                ];
                (segments(template), ops.iter().filter(|(_, on)| *on).map(|(m, _)| *m).collect())
            })
            .collect();
        for template in ["/openapi.json", "/chat/ws/{room_id}", "/hubs/chat"] {
            routes.push((segments(template), vec!["GET"]));
        }
        routes
    });
    let asked = segments(path);
    let fits = |template: &[String]| {
        template.len() == asked.len()
            && template.iter().zip(&asked).all(|(t, a)| t == a || (t.starts_with('{') && !a.is_empty()))
    };
    // As OpenAPI matches paths: the template with the fewest parameters wins
    // (`/bookings/my` before `/bookings/{booking_id}`).
    let params = |template: &[String]| template.iter().filter(|t| t.starts_with('{')).count();
    let best = routes.iter().filter(|(t, _)| fits(t)).map(|(t, _)| params(t)).min();
    let mut out: Vec<&'static str> = Vec::new();
    for (template, methods) in routes {
        if fits(template) && Some(params(template)) == best {
            for m in methods {
                if !out.contains(m) {
                    out.push(m);
                }
            }
        }
    }
    out
}

fn segments(path: &str) -> Vec<String> {
    path.split('/').map(str::to_string).collect()
}
