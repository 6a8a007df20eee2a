//! Contract T's payments: a request that reserves `quantity` tickets from the listing at
//! once for the buyer to pay, paying it by card, confirming the purchase, and cancelling
//! in full. A transaction is shown as [`TxView`].

use super::{ok, positive, room_actor};
use crate::actors::card::CardFailure;
use crate::actors::room::RequestTradePayment;
use crate::actors::ticket_listing::{
    CancelTransaction, ConfirmPurchase, PayOutcome, PayTransaction, TicketListing, Transaction,
};
use crate::http::card;
use crate::http::error::{TData, TEnvelope, TError};
use crate::http::{AppState, Caller, JsonBody};
use crate::time::rfc3339;
use actix::Addr;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = t::TxView)]
#[serde(rename_all = "camelCase")]
pub struct TxView {
    pub transaction_id: u64,
    pub room_id: u64,
    pub ticket_id: u64,
    pub buyer_id: u64,
    pub seller_id: u64,
    pub quantity: u32,
    pub unit_price: u64,
    pub amount: u64,
    /// `pending_payment`, `paid`, `confirmed` or `cancelled`.
    pub status: &'static str,
    pub reservation_expires_at: String,
    pub created_at: String,
    pub paid_at: Option<String>,
    pub confirmed_at: Option<String>,
    pub cancelled_at: Option<String>,
    /// `expired`, `buyer` or `seller`.
    pub cancel_reason: Option<String>,
    /// `unpaid`, `processing`, `captured` or `refunded`.
    pub payment_status: &'static str,
}

impl From<&Transaction> for TxView {
    fn from(t: &Transaction) -> Self {
        TxView {
            transaction_id: t.id,
            room_id: t.room,
            ticket_id: t.listing,
            buyer_id: t.buyer,
            seller_id: t.seller,
            quantity: t.quantity,
            unit_price: t.unit_price,
            amount: t.amount,
            status: t.status.as_str(),
            reservation_expires_at: rfc3339(t.reservation_expires_at),
            created_at: rfc3339(t.created_at),
            paid_at: t.paid_at.map(rfc3339),
            confirmed_at: t.confirmed_at.map(rfc3339),
            cancelled_at: t.cancelled_at.map(rfc3339),
            cancel_reason: t.cancel_reason.clone(),
            payment_status: card::payment_status(t.charge.status()),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = t::PaymentRequestBody)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequestBody {
    #[schema(schema_with = crate::http::schema::id_or_digits, required = true)]
    pub room_id: Option<serde_json::Value>,
    /// At most the listing's remaining stock (more is 400).
    #[schema(schema_with = crate::http::schema::id_or_digits, required = true)]
    pub quantity: Option<serde_json::Value>,
}

/// Ask the buyer of a room to pay for `quantity` tickets: they are reserved at once for
/// `BOXOFFICE_TRADE_RESERVATION_TTL` (24 h).
#[utoipa::path(post, path = "/api/chat/rooms/request-payment", tag = "T: ticket trade", request_body = PaymentRequestBody,
    responses((status = 200, body = TData<TxView>),
        (status = 400, description = "`판매 가능한 수량이 부족합니다.`, `채팅방이 종료되었습니다.`, or a bad quantity", body = TEnvelope),
        (status = 401, body = TEnvelope), (status = 403, body = TEnvelope), (status = 404, body = TEnvelope)),
    security(("bearer" = [])))]
pub async fn request_payment(
    state: web::Data<AppState>,
    me: Caller<TError>,
    body: JsonBody<PaymentRequestBody, TError>,
) -> Result<HttpResponse, TError> {
    let id = positive(&body.0.room_id, "roomId")?;
    let quantity = positive(&body.0.quantity, "quantity")?;
    let quantity = u32::try_from(quantity).map_err(|_| TError::bad_request(crate::http::error::NOT_ENOUGH))?;
    let room = room_actor(&state, id)?;
    let msg = RequestTradePayment { user: me.user_id, quantity, listings: state.registry.listing_book() };
    let tx = room.send(msg).await???;
    Ok(ok(StatusCode::OK, "결제 요청 성공", TxView::from(&tx)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = t::TxBody)]
#[serde(rename_all = "camelCase")]
pub struct TxBody {
    #[schema(schema_with = crate::http::schema::id_or_digits, required = true)]
    pub transaction_id: Option<serde_json::Value>,
    /// For `pay`: a test-gateway card token (see contract B); required there.
    pub payment_method_token: Option<String>,
    /// For `cancel-payment`: must be the whole quantity when given.
    #[schema(schema_with = crate::http::schema::id_or_digits)]
    pub quantity: Option<serde_json::Value>,
    #[schema(schema_with = crate::http::schema::id_or_digits, required = true)]
    pub room_id: Option<serde_json::Value>,
}

/// The listing that holds the body's transaction (the listing checks who may act on it).
fn tx_listing(state: &AppState, body: &TxBody) -> Result<(u64, Addr<TicketListing>), TError> {
    let tx = positive(&body.transaction_id, "transactionId")?;
    let listing = state.registry.listing_of_transaction(tx)?;
    Ok((tx, listing.ok_or_else(|| TError::not_found("거래를 찾을 수 없습니다."))?))
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = t::PayFailure)]
#[serde(rename_all = "camelCase")]
pub struct PayFailure {
    pub transaction_id: u64,
    pub failure_code: &'static str,
    pub failure_concept: &'static str,
}

/// The buyer pays a pending request by card (the test gateway's tokens, as contract B).
#[utoipa::path(post, path = "/api/chat/rooms/pay", tag = "T: ticket trade", request_body = TxBody,
    responses((status = 200, body = TData<TxView>), (status = 400, description = "`결제 요청이 만료되었습니다.`, or the card failed (data has failureCode)", body = TEnvelope),
        (status = 401, body = TEnvelope), (status = 403, body = TEnvelope), (status = 404, body = TEnvelope), (status = 409, body = TEnvelope)),
    security(("bearer" = [])))]
pub async fn pay(
    state: web::Data<AppState>,
    me: Caller<TError>,
    body: JsonBody<TxBody, TError>,
) -> Result<HttpResponse, TError> {
    let token = body.0.payment_method_token.clone().map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
    let token = token.ok_or_else(|| TError::bad_request("paymentMethodToken은 필수입니다."))?;
    let (tx, listing) = tx_listing(&state, &body.0)?;
    match listing.send(PayTransaction { tx, buyer: me.user_id, token }).await?? {
        PayOutcome::Paid(t) => Ok(ok(StatusCode::OK, "결제 성공", TxView::from(&t))),
        PayOutcome::Failed(CardFailure::RequestExpired) => {
            Err(TError::bad_request(crate::actors::room::EXPIRED_NOTICE))
        }
        PayOutcome::Failed(f) => Ok(ok(
            StatusCode::BAD_REQUEST,
            "결제에 실패했습니다.",
            PayFailure {
                transaction_id: tx,
                failure_code: card::failure_code(f),
                failure_concept: card::failure_concept(f),
            },
        )),
    }
}

/// The buyer confirms a paid purchase; a `PURCHASE_CONFIRMED` card (message null) is
/// posted to the room.
#[utoipa::path(post, path = "/api/chat/rooms/confirm-purchase", tag = "T: ticket trade", request_body = TxBody,
    responses((status = 200, body = TData<TxView>), (status = 400, body = TEnvelope), (status = 401, body = TEnvelope),
        (status = 403, body = TEnvelope), (status = 404, body = TEnvelope)),
    security(("bearer" = [])))]
pub async fn confirm_purchase(
    state: web::Data<AppState>,
    me: Caller<TError>,
    body: JsonBody<TxBody, TError>,
) -> Result<HttpResponse, TError> {
    let (tx, listing) = tx_listing(&state, &body.0)?;
    let t = listing.send(ConfirmPurchase { tx, buyer: me.user_id }).await??;
    Ok(ok(StatusCode::OK, "구매 확정 성공", TxView::from(&t)))
}

/// Cancel a payment request in full: its quantity returns to the listing (a paid one is
/// refunded). Partial cancellation is not supported: 400.
#[utoipa::path(post, path = "/api/chat/rooms/cancel-payment", tag = "T: ticket trade", request_body = TxBody,
    responses((status = 200, body = TData<TxView>), (status = 400, description = "Partial cancellation, or not cancellable", body = TEnvelope),
        (status = 401, body = TEnvelope), (status = 403, body = TEnvelope), (status = 404, body = TEnvelope), (status = 409, body = TEnvelope)),
    security(("bearer" = [])))]
pub async fn cancel_payment(
    state: web::Data<AppState>,
    me: Caller<TError>,
    body: JsonBody<TxBody, TError>,
) -> Result<HttpResponse, TError> {
    let quantity = match &body.0.quantity {
        None | Some(serde_json::Value::Null) => None,
        q => Some(u32::try_from(positive(q, "quantity")?).unwrap_or(u32::MAX)),
    };
    let (tx, listing) = tx_listing(&state, &body.0)?;
    let t = listing.send(CancelTransaction { tx, user: me.user_id, quantity }).await??;
    Ok(ok(StatusCode::OK, "결제 취소 성공", TxView::from(&t)))
}
