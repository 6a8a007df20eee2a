//! `POST /admin/clock`: moves this server's clock forward, for tests only. It is routed
//! only with `BOXOFFICE_CLOCK_ADJUSTABLE` on (otherwise the path is unknown, 404) and is not
//! in the published API (`/openapi.json`). Every expiry, hold, queue tick and idle stop
//! reads the [clock](crate::time), so a timer test advances it instead of sleeping.

use crate::http::error::QError;
use crate::http::{Caller, JsonBody};
use crate::time::{clock, rfc3339};
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Route `POST /admin/clock`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/admin/clock", web::post().to(advance));
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdvanceClock {
    /// How far to move the clock forward, in milliseconds (it never moves back).
    pub advance_ms: u64,
}

/// The clock after the move.
#[derive(Debug, Serialize)]
pub struct ClockNow {
    /// Milliseconds since the Unix epoch, by the server's clock.
    pub now_ms: u64,
    pub now: String,
    /// How far the server's clock is ahead of the wall clock.
    pub offset_ms: u64,
}

/// Move the clock forward by `advance_ms` (an admin's token): timers whose deadline it
/// passes fire at once. Answers the new time.
async fn advance(me: Caller<QError>, body: JsonBody<AdvanceClock, QError>) -> Result<HttpResponse, QError> {
    if !me.admin {
        return Err(QError::forbidden("admin role required"));
    }
    let by = Duration::from_millis(body.0.advance_ms);
    let now_ms = clock().advance(by);
    let offset_ms = crate::time::ms(clock().offset());
    tracing::warn!(advanced_ms = body.0.advance_ms, offset_ms, "the clock was moved forward");
    Ok(HttpResponse::Ok().json(ClockNow { now_ms, now: rfc3339(now_ms), offset_ms }))
}
