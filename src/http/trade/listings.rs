//! Contract T's ticket listings: a seller lists tickets (a unit price and a total
//! quantity), and any caller reads them with their remaining stock.

use super::{listing_of, ok, path_positive, positive};
use crate::actors::ticket_listing::{GetListing, Listing};
use crate::http::error::{TData, TEnvelope, TError};
use crate::http::{AppState, Caller, JsonBody};
use crate::time::rfc3339;
use actix_web::http::StatusCode;
use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
#[schema(as = t::ListingView)]
#[serde(rename_all = "camelCase")]
pub struct ListingView {
    pub ticket_id: u64,
    pub seller_id: u64,
    pub title: String,
    pub description: Option<String>,
    pub unit_price: u64,
    pub total_quantity: u32,
    pub remaining_quantity: u32,
    pub created_at: String,
}

impl From<&Listing> for ListingView {
    fn from(l: &Listing) -> Self {
        ListingView {
            ticket_id: l.id,
            seller_id: l.seller,
            title: l.title.clone(),
            description: l.description.clone(),
            unit_price: l.unit_price,
            total_quantity: l.total_quantity,
            remaining_quantity: l.remaining_quantity,
            created_at: rfc3339(l.created_at),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = t::ListingRequest)]
#[serde(rename_all = "camelCase")]
pub struct ListingRequest {
    /// 1 to 200 characters, not only white space.
    #[schema(pattern = "\\S", max_length = 200, nullable = false, required = true)]
    pub title: Option<String>,
    pub description: Option<String>,
    /// unitPrice x totalQuantity is at most 2^53 - 1 (else 400).
    #[schema(schema_with = crate::http::schema::id_or_digits, required = true)]
    pub unit_price: Option<serde_json::Value>,
    /// 1 to 10,000.
    #[schema(schema_with = crate::http::schema::quantity, required = true)]
    pub total_quantity: Option<serde_json::Value>,
}

/// List tickets for sale (the caller is the seller).
#[utoipa::path(post, path = "/api/tickets", tag = "T: ticket trade", request_body = ListingRequest,
    responses((status = 201, body = TData<ListingView>), (status = 400, body = TEnvelope), (status = 401, body = TEnvelope)),
    security(("bearer" = [])))]
pub async fn create_listing(
    state: web::Data<AppState>,
    me: Caller<TError>,
    body: JsonBody<ListingRequest, TError>,
) -> Result<HttpResponse, TError> {
    let b = body.0;
    let title = b.title.filter(|t| crate::http::schema::has_text(t) && crate::http::schema::length_within(t, 1, 200));
    let title = title
        .map(|t| crate::http::schema::trimmed(&t).to_string())
        .ok_or_else(|| TError::bad_request("title은 1~200자여야 합니다."))?;
    let price = positive(&b.unit_price, "unitPrice")?;
    let quantity = positive(&b.total_quantity, "totalQuantity")?;
    let quantity = u32::try_from(quantity).ok().filter(|q| *q <= 10_000);
    let quantity = quantity.ok_or_else(|| TError::bad_request("totalQuantity는 10000 이하여야 합니다."))?;
    if crate::money::times(price, u64::from(quantity)).is_none() {
        return Err(TError::bad_request(format!(
            "unitPrice × totalQuantity는 {} 이하여야 합니다.",
            crate::money::MAX_AMOUNT
        )));
    }
    let l = state.registry.create_listing(me.user_id, title, b.description, price, quantity).await?;
    Ok(ok(StatusCode::CREATED, "티켓 등록 성공", ListingView::from(&l)))
}

/// Every listing.
#[utoipa::path(get, path = "/api/tickets", tag = "T: ticket trade",
    responses((status = 200, body = TData<Vec<ListingView>>), (status = 401, body = TEnvelope)), security(("bearer" = [])))]
pub async fn list_listings(state: web::Data<AppState>, _me: Caller<TError>) -> Result<HttpResponse, TError> {
    let out: Vec<ListingView> = state.registry.listings().await?.iter().map(ListingView::from).collect();
    Ok(ok(StatusCode::OK, "티켓 목록 조회 성공", out))
}

/// One listing with its stock.
#[utoipa::path(get, path = "/api/tickets/{ticket_id}", tag = "T: ticket trade", params(("ticket_id" = u64, Path)),
    responses((status = 200, body = TData<ListingView>), (status = 401, body = TEnvelope), (status = 404, body = TEnvelope)),
    security(("bearer" = [])))]
pub async fn get_listing(
    state: web::Data<AppState>,
    _me: Caller<TError>,
    path: web::Path<String>,
) -> Result<HttpResponse, TError> {
    let id = path_positive(&path, "ticketId")?;
    let l = listing_of(&state, id)?.send(GetListing).await?;
    Ok(ok(StatusCode::OK, "티켓 조회 성공", ListingView::from(&l)))
}
