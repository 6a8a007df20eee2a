//! Health, the OpenAPI document, and the answer for unknown routes.

use actix_web::{web, HttpResponse};
use utoipa::OpenApi;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz)).route("/openapi.json", web::get().to(openapi));
}

/// Liveness: 200 while the server runs.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "`{\"status\":\"ok\"}`")))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// This document.
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(super::openapi::ApiDoc::openapi())
}

/// Unknown routes: a JSON 404 rather than an empty body.
pub async fn not_found() -> HttpResponse {
    HttpResponse::NotFound().json(
        serde_json::json!({ "status": 404, "error": "Not Found", "code": "NOT_FOUND", "message": "no such endpoint" }),
    )
}
