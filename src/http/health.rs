//! Health: `GET /healthz`.

use super::AppState;
use actix_web::{web, HttpResponse};
use std::sync::atomic::Ordering;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz));
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
