//! Health, the OpenAPI document, and the answer for unknown routes.

use super::AppState;
use actix_web::{web, HttpResponse};
use std::sync::atomic::Ordering;
use utoipa::OpenApi;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz)).route("/openapi.json", web::get().to(openapi));
}

/// Liveness: 200 while the server runs, with the store's group-commit counters (how many
/// flushes ran and how many durable answers they released) for operators and the load tool.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "`{\"status\":\"ok\",\"store\":{\"flushes\":n,\"durableWaiters\":n}}`")))]
pub async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    let stats = state.registry.store().flush_stats();
    HttpResponse::Ok().json(serde_json::json!({
        "status": "ok",
        "store": {
            "flushes": stats.flushes.load(Ordering::Relaxed),
            "durableWaiters": stats.waiters.load(Ordering::Relaxed),
        },
    }))
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
