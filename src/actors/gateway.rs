//! The card payment gateway (contract B): the [`PaymentGateway`] trait a real payment
//! service's client implements, and the [`TestGateway`] that ships with the server.
//!
//! Every charge carries an idempotency key; a gateway charges a key at most once and
//! answers a repeated key with the first charge, as real gateways do. The server uses one
//! key per attempt of a payment intent and reuses it after an unknown outcome (a timeout),
//! so a retry can never charge twice. How an actor charges and refunds through it is in
//! [`card`](super::card).
//!
//! # The test gateway's cards
//! The outcome is chosen by the payment-method token, as card networks' test cards do:
//!
//! | token | outcome |
//! |---|---|
//! | `tok_visa_creditCard`, `tok_visa`, `tok_mastercard`, `tok_success` | captured |
//! | `tok_card_declined` | declined: [`Decline::CardDeclined`] |
//! | `tok_insufficient_funds` | declined: [`Decline::InsufficientFunds`] |
//! | `tok_processing_error` | declined: [`Decline::ProcessingError`] |
//! | `tok_slow` | captured, answered after `BOXOFFICE_TEST_GATEWAY_DELAY` |
//! | `tok_timeout` | captured, but answered only after twice the gateway timeout: the server gives up waiting |
//! | anything else | declined: [`Decline::InvalidPaymentMethod`] |
//!
//! Its record of charges is persisted like a real gateway's, so refunds and lookups work
//! across restarts.

use crate::store::{Key, Store, StoreError};
use crate::time::now_ms;
use actix::prelude::*;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A charge as the gateway recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayCharge {
    pub id: String,
    pub key: String,
    pub amount: u64,
    pub captured_at: u64,
    pub refunded: bool,
    /// A key voided before anything was captured under it: a record so that a late
    /// capture under the key is refused. Not a charge (amount 0, empty id).
    pub voided: bool,
}

/// Why a gateway definitely refused a charge: nothing was charged. A real gateway's client
/// maps its service's codes onto these (the edge spells them for each contract).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decline {
    /// The card was refused (`CARD_DECLINED`).
    CardDeclined,
    /// Not enough funds on the card (`INSUFFICIENT_FUNDS`).
    InsufficientFunds,
    /// The gateway failed to process it (`PROCESSING_ERROR`): the gateway's fault.
    ProcessingError,
    /// The payment method is not one the gateway knows (`INVALID_PAYMENT_METHOD`).
    InvalidPaymentMethod,
    /// The key was refunded and voided before this request came (`CHARGE_VOIDED`).
    ChargeVoided,
}

impl Decline {
    /// Whether the gateway is at fault (else the card or its holder is).
    pub fn gateway_fault(self) -> bool {
        matches!(self, Decline::ProcessingError)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    /// A definite refusal: nothing was charged.
    #[error("declined: {0:?}")]
    Declined(Decline),
    /// The gateway could not be asked: the outcome is unknown.
    #[error("gateway unavailable: {0}")]
    Unavailable(String),
    /// The gateway did not answer within `BOXOFFICE_GATEWAY_TIMEOUT`: the outcome is unknown.
    #[error("the gateway did not answer in time")]
    Timeout,
}

#[derive(Debug, Clone)]
pub struct ChargeRequest {
    /// The gateway-side idempotency key.
    pub key: String,
    pub amount: u64,
    pub token: String,
    pub cvv: String,
}

/// What the server needs of a payment gateway. Calls may take long; the server never
/// awaits them inside an actor, and bounds them with `BOXOFFICE_GATEWAY_TIMEOUT`.
pub trait PaymentGateway: Send + Sync + 'static {
    /// Charge once per key; a repeated key answers with the first charge.
    fn charge(&self, req: ChargeRequest) -> BoxFuture<'static, Result<GatewayCharge, GatewayError>>;
    /// Refund the charge made under `key`, if there is one (`None` if there is none),
    /// and void the key: a charge request with it that arrives later is refused. So
    /// after a refund nothing stays captured under the key, whatever was in flight.
    fn refund(&self, key: String) -> BoxFuture<'static, Result<Option<GatewayCharge>, GatewayError>>;
}

/// The test gateway: a record per charge, by key, read when asked for (nothing in memory
/// grows with the charges it has made).
pub struct TestGateway {
    store: Store,
}

impl TestGateway {
    pub fn load(store: Store) -> Result<TestGateway, StoreError> {
        Ok(TestGateway { store })
    }

    fn charge_of(&self, key: &str) -> Result<Option<GatewayCharge>, GatewayError> {
        self.store.get(&Key::GatewayCharge(key.to_string())).map_err(|e| GatewayError::Unavailable(e.to_string()))
    }
}

impl Actor for TestGateway {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(super::MAILBOX);
    }
}

#[derive(Message)]
#[rtype(result = "Result<GatewayCharge, GatewayError>")]
struct Capture {
    req: ChargeRequest,
}

impl Handler<Capture> for TestGateway {
    type Result = ResponseFuture<Result<GatewayCharge, GatewayError>>;
    fn handle(&mut self, msg: Capture, _: &mut Context<Self>) -> Self::Result {
        let req = msg.req;
        let known = match self.charge_of(&req.key) {
            Ok(c) => c,
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        if let Some(c) = known {
            let answer = if c.refunded { Err(GatewayError::Declined(Decline::ChargeVoided)) } else { Ok(c.clone()) };
            return Box::pin(async move { answer });
        }
        let verdict = match req.token.as_str() {
            "tok_visa_creditCard" | "tok_visa" | "tok_mastercard" | "tok_success" | "tok_slow" | "tok_timeout" => {
                Ok(())
            }
            "tok_card_declined" => Err(Decline::CardDeclined),
            "tok_insufficient_funds" => Err(Decline::InsufficientFunds),
            "tok_processing_error" => Err(Decline::ProcessingError),
            _ => Err(Decline::InvalidPaymentMethod),
        };
        if let Err(decline) = verdict {
            return Box::pin(async move { Err(GatewayError::Declined(decline)) });
        }
        let charge = GatewayCharge {
            id: format!("ch_{}", random_id(16)),
            key: req.key.clone(),
            amount: req.amount,
            captured_at: now_ms(),
            refunded: false,
            voided: false,
        };
        let written = self.store.put(&Key::GatewayCharge(req.key.clone()), &charge);
        let store = self.store.clone();
        Box::pin(async move {
            written.map_err(|e| GatewayError::Unavailable(e.to_string()))?;
            store.durable().await.map_err(|e| GatewayError::Unavailable(e.to_string()))?;
            Ok(charge)
        })
    }
}

#[derive(Message)]
#[rtype(result = "Result<Option<GatewayCharge>, GatewayError>")]
struct Refund {
    key: String,
}

impl Handler<Refund> for TestGateway {
    type Result = ResponseFuture<Result<Option<GatewayCharge>, GatewayError>>;
    fn handle(&mut self, msg: Refund, _: &mut Context<Self>) -> Self::Result {
        let known = match self.charge_of(&msg.key) {
            Ok(c) => c,
            Err(e) => return Box::pin(async move { Err(e) }),
        };
        let c = match known {
            Some(c) => GatewayCharge { refunded: true, ..c },
            None => GatewayCharge {
                id: String::new(),
                key: msg.key.clone(),
                amount: 0,
                captured_at: 0,
                refunded: true,
                voided: true,
            },
        };
        let written = self.store.put(&Key::GatewayCharge(msg.key.clone()), &c);
        let store = self.store.clone();
        Box::pin(async move {
            written.map_err(|e| GatewayError::Unavailable(e.to_string()))?;
            store.durable().await.map_err(|e| GatewayError::Unavailable(e.to_string()))?;
            Ok((!c.voided).then_some(c))
        })
    }
}

/// Every charge the test gateway has captured (refunded or not), oldest first: read from
/// the store (an operator's listing, not a request path).
#[derive(Message)]
#[rtype(result = "Result<Vec<GatewayCharge>, StoreError>")]
pub struct ListCharges;

impl Handler<ListCharges> for TestGateway {
    type Result = Result<Vec<GatewayCharge>, StoreError>;
    fn handle(&mut self, _: ListCharges, _: &mut Context<Self>) -> Self::Result {
        let all = self.store.scan::<GatewayCharge>(&Key::GatewayCharge(String::new()))?;
        let mut charges: Vec<GatewayCharge> = all.into_iter().map(|(_, c)| c).filter(|c| !c.voided).collect();
        charges.sort_by(|a, b| (a.captured_at, &a.key).cmp(&(b.captured_at, &b.key)));
        Ok(charges)
    }
}

/// The [`PaymentGateway`] over the test gateway actor, with its simulated latencies.
pub struct TestGatewayClient {
    pub addr: Addr<TestGateway>,
    /// How long `tok_slow` takes to answer.
    pub slow: Duration,
    /// How long `tok_timeout` takes to answer (longer than the server waits).
    pub stall: Duration,
}

impl PaymentGateway for TestGatewayClient {
    fn charge(&self, req: ChargeRequest) -> BoxFuture<'static, Result<GatewayCharge, GatewayError>> {
        let delay = match req.token.as_str() {
            "tok_slow" => self.slow,
            "tok_timeout" => self.stall,
            _ => Duration::ZERO,
        };
        let sent = self.addr.send(Capture { req });
        Box::pin(async move {
            let result = sent.await.map_err(|e| GatewayError::Unavailable(e.to_string()))?;
            if !delay.is_zero() {
                actix_rt::time::sleep(delay).await;
            }
            result
        })
    }

    fn refund(&self, key: String) -> BoxFuture<'static, Result<Option<GatewayCharge>, GatewayError>> {
        let sent = self.addr.send(Refund { key });
        Box::pin(async move { sent.await.map_err(|e| GatewayError::Unavailable(e.to_string()))? })
    }
}

/// A random id of `n` letters and digits (booking and intent ids look like this).
pub fn random_id(n: usize) -> String {
    use rand::{distributions::Alphanumeric, Rng};
    rand::thread_rng().sample_iter(&Alphanumeric).take(n).map(char::from).collect()
}
