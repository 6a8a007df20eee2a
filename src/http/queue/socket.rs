//! Contract Q, beyond the seed: `GET /waiting/ws`, a queue token's standing pushed instead
//! of polled. Each event is a JSON text frame `{"type":"queue", ...}` with exactly the
//! fields of `GET /waiting/check`'s answer at that moment: the first at once, then one
//! when the position moves (at most one a second), one within a tick (50 ms) of admission.
//! When the token expires or ends (its holder paid), the socket closes with 1000.
//!
//! The JWT goes in `Authorization: Bearer` or the `access_token` (or `token`) query
//! parameter, as on the chat socket; the queue token in `X-Queue-Token` or `queueToken`.
//! Refusals come before the upgrade, in contract Q's shape: 401 for a missing or invalid
//! JWT or queue token (forged, altered, expired), 403 for another user's queue token.
//! The node's [`QueueWatch`] does the watching; the socket (a listen-only [`Session`])
//! writes what it is told.

use super::waiting::QueueTokenResponse;
use crate::actors::hub::Frame;
use crate::actors::waiting_queue::watch::{QueueUpdate, QueueWatch, Watch};
use crate::actors::waiting_queue::{Ticket, TokenView};
use crate::http::error::{QError, QErrorBody};
use crate::http::session::{Ctx, Data, Session, Wire};
use crate::http::{author, identify_with_query, Realtime};
use crate::time::now_ms;
use actix::prelude::*;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;
use std::time::Duration;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/waiting/ws", web::get().to(connect));
}

/// The queue token of a handshake: `X-Queue-Token`, else `queueToken`.
fn queue_token(req: &HttpRequest) -> Option<String> {
    if let Some(t) = req.headers().get("x-queue-token").and_then(|v| v.to_str().ok()) {
        return Some(t.trim().to_string()).filter(|t| !t.is_empty());
    }
    let q = web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string()).ok()?;
    q.get("queueToken").map(|t| t.trim().to_string()).filter(|t| !t.is_empty())
}

/// A queue token's standing, pushed.
#[utoipa::path(get, path = "/waiting/ws", tag = "Q: waiting queue",
    description = "A WebSocket (`Upgrade: websocket`) of JSON text frames `{\"type\":\"queue\", token, userId, position, active, status, expiresAt, estimatedWaitSeconds}` (the fields of `GET /waiting/check`): one at once, one when the position moves (at most one a second), one within 50 ms of admission. Closes with 1000 when the token expires or ends. JWT in `Authorization` or `access_token`; the queue token in `X-Queue-Token` or `queueToken`.",
    params(("queueToken" = Option<String>, Query, description = "The queue token, if not in X-Queue-Token"),
        ("access_token" = Option<String>, Query, description = "The JWT, if not in Authorization")),
    responses((status = 101, description = "Switching Protocols: the WebSocket"),
        (status = 400, description = "Not a WebSocket handshake", body = QErrorBody),
        (status = 401, description = "No valid JWT, or the queue token is missing, unknown, expired, forged or altered", body = QErrorBody),
        (status = 403, description = "Another user's queue token", body = QErrorBody),
        (status = 503, description = "An edge that has lost the queue's state for now", body = QErrorBody)),
    security(("bearer" = []), ("query_token" = [])))]
pub async fn connect(realtime: web::Data<Realtime>, req: HttpRequest) -> Result<HttpResponse, actix_web::Error> {
    let me = identify_with_query(&req).map_err(QError::from)?;
    if let Err(e) = ws::handshake(&req) {
        let message = format!("This endpoint takes WebSocket requests only: {e}");
        return Err(QError::bad_request("INVALID_REQUEST", message).into());
    }
    let invalid = |m: String| QError::new(StatusCode::UNAUTHORIZED, "QUEUE_TOKEN_INVALID", m);
    let token =
        queue_token(&req).ok_or_else(|| invalid("the queue token (X-Queue-Token or queueToken) is required".into()))?;
    let gate = &realtime.queue.gate;
    let (ticket, standing) = gate.stand(&token, me.user_id, now_ms()).map_err(super::waiting::check_error)?;
    let view = gate.view(token.clone(), &ticket, standing);
    let wire = QueueWire { first: Some(view), ticket, token, watch: realtime.queue.watch.clone() };
    Session::new(&realtime, author(&me), wire).start(&req, 4096)
}

/// The queue socket's side of a [`Session`]: it listens only.
pub struct QueueWire {
    /// The standing at the handshake, sent as the first event.
    first: Option<TokenView>,
    ticket: Ticket,
    token: String,
    watch: Addr<QueueWatch>,
}

fn event(view: TokenView) -> String {
    let mut v = serde_json::to_value(QueueTokenResponse::from(view)).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("type".into(), "queue".into());
    }
    v.to_string()
}

impl Wire for QueueWire {
    const KIND: &'static str = "queue";
    const PING_INTERVAL: Duration = Duration::from_secs(15);

    fn opened(s: &mut Session<Self>, ctx: &mut Ctx<Self>) {
        s.listen_only();
        let Some(first) = s.wire.first.take() else { return };
        let position = if first.active { 0 } else { first.position };
        s.write(ctx, Frame::text(event(first)));
        let watch =
            Watch { ticket: s.wire.ticket, token: s.wire.token.clone(), to: ctx.address().recipient(), position };
        s.wire.watch.do_send(watch);
    }

    /// The socket only listens: what the client says is ignored.
    fn received(_: &mut Session<Self>, _: &mut Ctx<Self>, _: Data<'_>) {}
}

impl Handler<QueueUpdate> for Session<QueueWire> {
    type Result = ();
    fn handle(&mut self, update: QueueUpdate, ctx: &mut Ctx<QueueWire>) {
        match update {
            QueueUpdate::View(view) => self.write(ctx, Frame::text(event(view))),
            QueueUpdate::Ended => self.close(ctx, ws::CloseCode::Normal, "the queue token expired or ended"),
            QueueUpdate::Restart => {
                self.close(ctx, ws::CloseCode::Restart, "This node lost the queue's state; reconnect.")
            }
        }
    }
}
