//! Contract Q: paying a held reservation from the wallet (`POST /payments`).

use super::reservations::{mismatch, ReservationResponse};
use crate::actors::keys::{Answer, GateError, Pay, Recorded};
use crate::http::error::{QError, QErrorBody};
use crate::http::{fingerprint, AppState, Caller, IdempotencyKey, JsonBody};
use crate::time::rfc3339;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/payments", web::post().to(pay));
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = q::PaymentRequest)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequest {
    #[schema(schema_with = crate::http::schema::positive, required = true)]
    pub reservation_id: Option<serde_json::Value>,
    /// Must equal the reservation's price.
    #[schema(schema_with = crate::http::schema::positive, required = true)]
    pub amount: Option<serde_json::Value>,
}

#[derive(Debug, Serialize)]
struct Payment {
    reservation: u64,
    amount: u64,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = q::PaymentResponse)]
#[serde(rename_all = "camelCase")]
pub struct PaymentResponse {
    pub payment_id: u64,
    pub reservation_id: u64,
    pub amount: u64,
    /// `COMPLETED`.
    pub status: &'static str,
    pub balance_after: u64,
    /// Always true: paying ends the queue token.
    pub queue_token_expired: bool,
    pub paid_at: String,
    pub reservation: ReservationResponse,
}

fn positive(v: &Option<serde_json::Value>, name: &str) -> Result<u64, QError> {
    v.as_ref()
        .and_then(crate::http::schema::json_positive)
        .ok_or_else(|| QError::bad_request("INVALID_REQUEST", format!("{name} must be a positive integer")))
}

/// Pay for your held reservation: the seat becomes `RESERVED`, the balance is debited,
/// and the queue token ends.
#[utoipa::path(post, path = "/payments", tag = "Q: payments", request_body = PaymentRequest,
    params(("Idempotency-Key" = String, Header), ("X-Queue-Token" = String, Header)),
    responses((status = 200, body = PaymentResponse),
        (status = 400, description = "Invalid body, amount not the price, or no Idempotency-Key", body = QErrorBody),
        (status = 401, body = QErrorBody),
        (status = 402, description = "Balance too low", body = QErrorBody),
        (status = 403, description = "Another user's reservation, or the queue token is not active", body = QErrorBody),
        (status = 404, description = "No such reservation, or its hold expired", body = QErrorBody),
        (status = 409, description = "Already confirmed, or this key's first request is still running", body = QErrorBody),
        (status = 422, description = "This Idempotency-Key was used for another request", body = QErrorBody)),
    security(("bearer" = [])))]
pub async fn pay(
    state: web::Data<AppState>,
    me: Caller<QError>,
    key: IdempotencyKey<QError>,
    body: JsonBody<PaymentRequest, QError>,
    req: HttpRequest,
) -> Result<HttpResponse, QError> {
    let p = Payment {
        reservation: positive(&body.0.reservation_id, "reservationId")?,
        amount: positive(&body.0.amount, "amount")?,
    };
    let fingerprint = fingerprint("POST /payments", &p);
    let keys = state.registry.keys(me.user_id).map_err(GateError::from)?;
    let answer = match super::waiting::require_active(&state, &req, me.user_id) {
        Ok(queue_token) => {
            keys.send(Pay { key: key.0, fingerprint, reservation: p.reservation, amount: p.amount, queue_token })
                .await??
        }
        // A retry of a payment that retired its own token is answered from the ledger.
        Err(gate) => match keys.send(Recorded { key: key.0, fingerprint }).await? {
            Some(answer) => answer?,
            None => return Err(gate),
        },
    };
    match answer {
        Answer::Paid(r) => Ok(HttpResponse::Ok().json(PaymentResponse {
            payment_id: r.payment,
            reservation_id: r.reservation.id,
            amount: r.amount,
            status: "COMPLETED",
            balance_after: r.balance_after,
            queue_token_expired: true,
            paid_at: rfc3339(r.at),
            reservation: ReservationResponse::new(&r.reservation, &state.registry),
        })),
        Answer::PayRefused(e) => Err(e.into()),
        other => Err(mismatch(other)),
    }
}
