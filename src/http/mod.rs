//! The HTTP edge: one folder per client contract, each handler a few lines that
//! authenticate, parse into domain types, send one message and render the contract's
//! answer.
//!
//! # Layout
//! - [`trade`]: contract T, ticket-trade chat: listings, trade rooms, messages with
//!   images, payment requests; [`trade::signalr`] is its SignalR hub.
//! - [`chat`]: contract C, general chat: rooms, messages, files, search, settings;
//!   [`chat::ws`] is its WebSocket.
//! - [`queue`]: contract Q, concert seats behind a waiting queue, paid from a wallet.
//! - [`booking`]: contract B, seat bookings paid by card through a payment gateway.
//! - [`card`]: a card payment's words (status, failure codes), shared by contracts B and T.
//! - Shared by every contract: [`error`] (one error type per contract, each rendering
//!   its contract's shape and statuses), [`contract`] (which contract a path belongs to,
//!   refusals in its shape, unknown routes), [`health`] (`/healthz`), [`openapi`] (the
//!   document, gathered from the handlers, and its route), [`signed`]
//!   (expiring links), and here [`AppState`], [`author`], [`routes`] and the extractors.
//! - [`clock`]: `POST /admin/clock`, tests' way to move the server's clock (off unless
//!   `BOXOFFICE_CLOCK_ADJUSTABLE`).
//!
//! The extractors are generic over the contract's error type, so a bad token or body is
//! answered in that contract's shape.

/// The text of a room-closed event and refusal (contract T's words; contract C's
/// WebSocket sends the same event).
pub const ROOM_CLOSED: &str = "채팅방이 종료되었습니다.";

pub mod booking;
pub mod card;
pub mod chat;
pub mod clock;
pub mod contract;
pub mod error;
pub mod frame_guard;
pub mod health;
pub mod limits;
pub mod openapi;
pub mod ops;
pub mod outlet;
pub mod queue;
pub mod schema;
pub mod session;
pub mod signed;
pub mod trade;
pub mod upgrade;

use crate::actors::directory::{GetProfiles, NoteUser, Profiles};
use crate::actors::ledger::Fingerprint;
use crate::actors::room::Author;
use crate::actors::Registry;
use crate::auth::{AuthError, Identity, Verifier};
use crate::config::Settings;
use actix::MailboxError;
use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest, ResponseError};
use futures_util::future::{ready, LocalBoxFuture, Ready};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::marker::PhantomData;

/// What every handler can reach.
pub struct AppState {
    pub registry: Registry,
    pub verifier: Verifier,
    pub settings: Settings,
    /// Signs and checks the expiring links to contract T's images.
    pub links: signed::LinkSigner,
    /// A hash of the profile last sent to the directory for each recent user, so that a
    /// request with an unchanged name sends nothing (a memo of messages sent, not state:
    /// the directory decides). Bounded: a user it forgot is noted once more.
    pub noted: quick_cache::sync::Cache<u64, u64>,
}

/// What the realtime endpoints (contract C's WebSocket, the SignalR hub) reach, in a core
/// and in an edge alike: the state through a [`Backend`](crate::cluster::Backend), and the
/// token check.
pub struct Realtime {
    pub backend: crate::cluster::Backend,
    pub verifier: Verifier,
    pub settings: Settings,
    pub links: signed::LinkSigner,
    /// The rate limits (none with `BOXOFFICE_RATE_LIMIT=off`).
    pub limits: Option<std::sync::Arc<limits::Limits>>,
    /// The waiting queue as this node sees it: the core's own state, or an edge's copy.
    pub queue: QueueNode,
}

/// What a node needs to answer `/waiting/check` and `/waiting/ws` by itself.
#[derive(Clone)]
pub struct QueueNode {
    pub gate: crate::actors::waiting_queue::QueueGate,
    pub watch: actix::Addr<crate::actors::waiting_queue::watch::QueueWatch>,
}

/// How a WebSocket ends when its client breaks the protocol, as RFC 6455 §7.4.1 says: 1009
/// for a frame over the size limit (`BOXOFFICE_WS_MAX_FRAME`), 1007 for text that is not
/// UTF-8, 1002 for any other violation (an unmasked frame, a reserved bit or opcode, a bad
/// close code).
pub fn ws_violation(e: &actix_web_actors::ws::ProtocolError) -> actix_web_actors::ws::CloseReason {
    use actix_web_actors::ws::{CloseCode, ProtocolError};
    let code = match e {
        ProtocolError::Overflow => CloseCode::Size,
        ProtocolError::Io(io) if io.to_string().contains(frame_guard::OVERSIZED) => CloseCode::Size,
        ProtocolError::Io(io) if io.to_string().to_ascii_lowercase().contains("utf-8") => CloseCode::Invalid,
        _ => CloseCode::Protocol,
    };
    tracing::debug!(error = %e, ?code, "a WebSocket client broke the protocol");
    actix_web_actors::ws::CloseReason { code, description: Some(e.to_string()) }
}

/// A request a contract refuses before any actor sees it (400 in every contract).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest(pub String);

/// A request refused at the edge with a status other than 400 (415 for a body of a media
/// type the endpoint does not take, 413 for one over the size limit), in every contract's
/// shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused(pub actix_web::http::StatusCode, pub String);

impl Refused {
    /// Contract Q's `code` for it.
    pub fn code(&self) -> &'static str {
        match self.0.as_u16() {
            413 => "PAYLOAD_TOO_LARGE",
            415 => "UNSUPPORTED_MEDIA_TYPE",
            _ => "INVALID_REQUEST",
        }
    }
}

/// Whether `req` declares a JSON body (`application/json`, `application/*+json`, any
/// parameters) or none at all.
fn json_or_none(req: &HttpRequest) -> Result<(), Refused> {
    let Some(v) = req.headers().get(actix_web::http::header::CONTENT_TYPE) else { return Ok(()) };
    let essence = v.to_str().unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match essence.split_once('/') {
        Some(("application", sub)) if sub == "json" || sub.ends_with("+json") => Ok(()),
        _ => Err(Refused(
            actix_web::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "this endpoint takes application/json, not {}",
                if essence.is_empty() { "an empty Content-Type" } else { essence.as_str() }
            ),
        )),
    }
}

/// The authenticated caller, or the contract's 401.
pub struct Caller<E>(pub Identity, PhantomData<E>);

impl<E> std::ops::Deref for Caller<E> {
    type Target = Identity;
    fn deref(&self) -> &Identity {
        &self.0
    }
}

/// The bearer token of a request: `Authorization: Bearer`, or on WebSocket upgrades the
/// `access_token` / `token` query parameter.
pub fn bearer(req: &HttpRequest) -> Option<String> {
    if let Some(h) = req.headers().get(actix_web::http::header::AUTHORIZATION) {
        let h = h.to_str().ok()?.trim();
        let (scheme, token) = h.split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_string());
    }
    None
}

pub fn identify(req: &HttpRequest) -> Result<Identity, AuthError> {
    let state = req.app_data::<web::Data<AppState>>().ok_or(AuthError::Missing)?;
    let token = bearer(req).ok_or(AuthError::Missing)?;
    let id = state.verifier.verify(&token)?;
    note_user(state, &id);
    Ok(id)
}

/// Tell the directory who the caller says they are (it keeps the name if it changed).
fn note_user(state: &AppState, id: &Identity) {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (&id.name, &id.picture).hash(&mut h);
    let hash = h.finish();
    if state.noted.get(&id.user_id) == Some(hash) {
        return;
    }
    state.noted.insert(id.user_id, hash);
    let profile = (id.name.clone(), id.picture.clone());
    state.registry.directory().do_send(NoteUser { user: id.user_id, profile });
}

/// The caller as the author of what they post to a room (contracts C and T alike).
pub fn author(id: &Identity) -> Author {
    Author { id: id.user_id, name: id.name.clone(), picture: id.picture.clone() }
}

/// The names and pictures of `users`, as far as the server has seen them.
pub async fn profiles_of(state: &AppState, users: impl IntoIterator<Item = u64>) -> Result<Profiles, MailboxError> {
    let mut users: Vec<u64> = users.into_iter().collect();
    users.sort_unstable();
    users.dedup();
    state.registry.directory().send(GetProfiles { users }).await
}

/// The token of a WebSocket upgrade or a file link: `Authorization: Bearer`, else the
/// `token` or `access_token` query parameter.
pub fn identify_with_query(req: &HttpRequest) -> Result<Identity, AuthError> {
    let token = match bearer(req) {
        Some(t) => t,
        None => {
            let q = web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
                .map_err(|_| AuthError::Missing)?;
            q.get("token").or_else(|| q.get("access_token")).cloned().ok_or(AuthError::Missing)?
        }
    };
    match req.app_data::<web::Data<AppState>>() {
        Some(state) => {
            let id = state.verifier.verify(&token)?;
            note_user(state, &id);
            Ok(id)
        }
        // An edge: it checks tokens; the core keeps profiles.
        None => req.app_data::<web::Data<Realtime>>().ok_or(AuthError::Missing)?.verifier.verify(&token),
    }
}

impl<E: From<AuthError> + ResponseError + 'static> FromRequest for Caller<E> {
    type Error = E;
    type Future = Ready<Result<Self, E>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(identify(req).map(|id| Caller(id, PhantomData)).map_err(E::from))
    }
}

/// A JSON body parsed into `T`, or the contract's 400.
pub struct JsonBody<T, E>(pub T, PhantomData<E>);

impl<T, E> FromRequest for JsonBody<T, E>
where
    T: DeserializeOwned + 'static,
    E: From<BadRequest> + From<Refused> + ResponseError + 'static,
{
    type Error = E;
    type Future = LocalBoxFuture<'static, Result<Self, E>>;
    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let media = json_or_none(req);
        let bytes = web::Bytes::from_request(req, payload);
        Box::pin(async move {
            media.map_err(E::from)?;
            let bytes = bytes.await.map_err(|e| match e.as_error::<actix_web::error::PayloadError>() {
                Some(actix_web::error::PayloadError::Overflow) => E::from(Refused(
                    actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
                    "the body is larger than the server accepts (1 MiB)".into(),
                )),
                _ => E::from(BadRequest(format!("could not read the body: {e}"))),
            })?;
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Err(E::from(BadRequest("a JSON body is required".into())));
            }
            if std::str::from_utf8(&bytes).is_err() {
                return Err(E::from(BadRequest("the body is not UTF-8".into())));
            }
            let body = serde_json::from_slice(&bytes)
                .or_else(|first| {
                    // `35.0` is the integer 35 to JSON Schema: read it so, on the slow path.
                    let mut v: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| first)?;
                    schema::integral_numbers(&mut v);
                    serde_json::from_value(v)
                })
                .map_err(|e| E::from(BadRequest(format!("invalid JSON body: {e}"))))?;
            schema::unique_keys(&bytes).map_err(|e| E::from(BadRequest(format!("invalid JSON body: {e}"))))?;
            Ok(JsonBody(body, PhantomData))
        })
    }
}

/// The `Idempotency-Key` header, required where the extractor is used.
pub struct IdempotencyKey<E>(pub String, PhantomData<E>);

/// The `Idempotency-Key` header where it is optional; a malformed one is still a 400.
pub struct MaybeIdempotencyKey<E>(pub Option<String>, PhantomData<E>);

fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, BadRequest> {
    let Some(v) = req.headers().get("idempotency-key") else { return Ok(None) };
    let k = v.to_str().map_err(|_| BadRequest("the Idempotency-Key header must be visible ASCII".into()))?.trim();
    if k.contains('\t') {
        return Err(BadRequest("the Idempotency-Key header must be visible ASCII".into()));
    }
    if k.is_empty() || k.len() > 255 {
        return Err(BadRequest("the Idempotency-Key header must be 1 to 255 characters".into()));
    }
    Ok(Some(k.to_string()))
}

impl<E: From<BadRequest> + ResponseError + 'static> FromRequest for IdempotencyKey<E> {
    type Error = E;
    type Future = Ready<Result<Self, E>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(match idempotency_key(req) {
            Ok(Some(k)) => Ok(IdempotencyKey(k, PhantomData)),
            Ok(None) => Err(E::from(BadRequest("the Idempotency-Key header is required".into()))),
            Err(e) => Err(E::from(e)),
        })
    }
}

impl<E: From<BadRequest> + ResponseError + 'static> FromRequest for MaybeIdempotencyKey<E> {
    type Error = E;
    type Future = Ready<Result<Self, E>>;
    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(idempotency_key(req).map(|k| MaybeIdempotencyKey(k, PhantomData)).map_err(E::from))
    }
}

/// What a keyed request asked for: the route and its parsed body, hashed.
pub fn fingerprint<T: Serialize>(route: &str, body: &T) -> Fingerprint {
    let mut h = Sha256::new();
    h.update(route.as_bytes());
    h.update([0]);
    h.update(serde_json::to_vec(body).unwrap_or_default());
    h.finalize().into()
}

/// Every route of every contract (and, with `BOXOFFICE_CLOCK_ADJUSTABLE`, the tests'
/// clock).
pub fn routes(cfg: &mut web::ServiceConfig, settings: &Settings) {
    if settings.clock_adjustable {
        clock::routes(cfg);
    }
    health::routes(cfg);
    openapi::routes(cfg);
    queue::routes(cfg);
    booking::routes(cfg);
    chat::routes(cfg);
    trade::routes(cfg);
    ops::routes(cfg);
}
