//! Contract Q: the wallet (`/users/{userId}/amount`, `/users/{userId}/charge`).

use super::reservations::mismatch;
use crate::actors::keys::{Answer, Charge, GateError};
use crate::actors::wallet::GetBalance;
use crate::auth::parse_user_id_str;
use crate::http::error::{QError, QErrorBody};
use crate::http::{fingerprint, AppState, Caller, IdempotencyKey, JsonBody};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/users/{user_id}/amount", web::get().to(amount))
        .route("/users/{user_id}/charge", web::patch().to(charge));
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = q::BalanceResponse)]
#[serde(rename_all = "camelCase")]
pub struct BalanceResponse {
    pub user_id: u64,
    /// The balance.
    pub amount: u64,
    /// The balance, under its plain name.
    pub balance: u64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = q::ChargeRequest)]
pub struct ChargeRequest {
    /// A positive whole amount, at most `BOXOFFICE_CHARGE_MAX_SINGLE` (one charge) and
    /// `BOXOFFICE_CHARGE_MAX_MONTHLY` (a calendar month); past either it is 400.
    #[schema(schema_with = crate::http::schema::positive, required = true)]
    pub amount: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = q::ChargeResponse)]
#[serde(rename_all = "camelCase")]
pub struct ChargeResponse {
    pub user_id: u64,
    /// What this charge added.
    pub charged_amount: u64,
    /// The balance after the charge.
    pub amount: u64,
    /// The balance after the charge, under its plain name.
    pub balance: u64,
}

fn own_user(raw: &str, me: &Caller<QError>) -> Result<u64, QError> {
    let user = crate::http::schema::path_id(raw)
        .or_else(|| parse_user_id_str(raw))
        .ok_or_else(|| QError::bad_request("INVALID_USER_ID", "userId must be a positive integer"))?;
    if user != me.user_id {
        return Err(QError::forbidden("you may only reach your own wallet"));
    }
    Ok(user)
}

/// Your balance. Needs an active queue token.
#[utoipa::path(get, path = "/users/{user_id}/amount", tag = "Q: wallet",
    params(("user_id" = u64, Path), ("X-Queue-Token" = String, Header)),
    responses((status = 200, body = BalanceResponse), (status = 400, body = QErrorBody), (status = 401, body = QErrorBody),
        (status = 403, description = "Another user's wallet, or the queue token is not active", body = QErrorBody)),
    security(("bearer" = [])))]
pub async fn amount(
    state: web::Data<AppState>,
    me: Caller<QError>,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, QError> {
    let user = own_user(&path, &me)?;
    super::waiting::require_active(&state, &req, user)?;
    let balance = state.registry.wallet(user).map_err(GateError::from)?.send(GetBalance).await?;
    Ok(HttpResponse::Ok().json(BalanceResponse { user_id: user, amount: balance, balance }))
}

/// Add money to your wallet, within the single and monthly limits.
#[utoipa::path(patch, path = "/users/{user_id}/charge", tag = "Q: wallet", request_body = ChargeRequest,
    params(("user_id" = u64, Path), ("Idempotency-Key" = String, Header), ("X-Queue-Token" = String, Header)),
    responses((status = 200, body = ChargeResponse),
        (status = 400, description = "Non-positive amount, over the single or monthly limit, or no Idempotency-Key", body = QErrorBody),
        (status = 401, body = QErrorBody),
        (status = 403, description = "Another user's wallet, or the queue token is not active", body = QErrorBody),
        (status = 409, description = "This key's first request is still running", body = QErrorBody),
        (status = 422, description = "This Idempotency-Key was used for another request", body = QErrorBody)),
    security(("bearer" = [])))]
pub async fn charge(
    state: web::Data<AppState>,
    me: Caller<QError>,
    path: web::Path<String>,
    key: IdempotencyKey<QError>,
    body: JsonBody<ChargeRequest, QError>,
    req: HttpRequest,
) -> Result<HttpResponse, QError> {
    let user = own_user(&path, &me)?;
    let amount = body
        .0
        .amount
        .as_ref()
        .and_then(crate::http::schema::json_positive)
        .ok_or_else(|| QError::bad_request("INVALID_AMOUNT", "amount must be a positive integer"))?;
    super::waiting::require_active(&state, &req, user)?;
    let keys = state.registry.keys(user).map_err(GateError::from)?;
    let msg = Charge { key: key.0, fingerprint: fingerprint(&format!("PATCH /users/{user}/charge"), &amount), amount };
    match keys.send(msg).await?? {
        Answer::Charged(r) => Ok(HttpResponse::Ok().json(ChargeResponse {
            user_id: r.user,
            charged_amount: r.charged,
            amount: r.balance,
            balance: r.balance,
        })),
        Answer::ChargeRefused(e) => Err(e.into()),
        other => Err(mismatch(other)),
    }
}
