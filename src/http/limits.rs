//! Fair shares: how much one client may ask of the server, as keyed GCRA limits
//! ([`governor`]).
//!
//! - **Requests** count against their user (the JWT subject) when they carry a valid token,
//!   else against their address (an IPv4 address, or an IPv6 /64). Behind a reverse proxy
//!   named in `BOXOFFICE_RATE_TRUSTED_PROXIES`, the address is the last one in
//!   `X-Forwarded-For` that is not itself a trusted proxy; from any other peer the header
//!   is ignored.
//! - **Handshakes** (WebSocket and SignalR upgrades) also count against their user's
//!   handshake limit.
//! - **Socket frames** (chat posts, typing, SignalR invocations) count against their
//!   connection ([`FrameBudget`]).
//!
//! A request over a limit is refused with 429 and `Retry-After` (whole seconds, at least 1)
//! in its contract's error shape, before any handler runs. `/healthz` and `/metrics` are
//! not limited (probes and scrapers). Every keyed map forgets, each second, the keys that
//! are back to a full allowance (a key is, at most `burst / rate` seconds after its last
//! request): a map holds only the clients of the last few seconds, however many there
//! have been.

use crate::auth::Verifier;
use crate::config::{Settings, Switch};
use actix_web::body::BoxBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderValue, RETRY_AFTER};
use actix_web::http::StatusCode;
use actix_web::HttpRequest;
use futures_util::future::{ready, Either};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::future::Future;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How often the maps forget keys that are back to a full allowance.
const SWEEP: Duration = Duration::from_secs(1);

/// Over-limit frames a socket may send per second (and at once) before it is closed.
const FLOOD_PER_SECOND: u32 = 5;
const FLOOD_BURST: u32 = 30;

/// Who a request counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    User(u64),
    Address(IpAddr),
}

/// Which limit refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    User,
    Address,
    Handshake,
}

impl Limit {
    fn label(self) -> &'static str {
        match self {
            Limit::User => "user",
            Limit::Address => "address",
            Limit::Handshake => "handshake",
        }
    }
}

/// A refusal: which limit, and how long until the caller may try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverLimit {
    pub limit: Limit,
    pub retry_after: Duration,
}

impl OverLimit {
    /// `Retry-After` in whole seconds, at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs_f64().ceil().max(1.0) as u64
    }
}

/// The server's limits. Shared by every worker.
pub struct Limits {
    user: DefaultKeyedRateLimiter<u64>,
    handshake: DefaultKeyedRateLimiter<u64>,
    address: DefaultKeyedRateLimiter<IpAddr>,
    frames: Quota,
    trusted: Vec<IpAddr>,
    clock: DefaultClock,
}

fn quota(per_second: u32, burst: u32) -> Quota {
    let rate = NonZeroU32::new(per_second.max(1)).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst.max(per_second).max(1)).unwrap_or(NonZeroU32::MIN);
    Quota::per_second(rate).allow_burst(burst)
}

impl Limits {
    /// The limits `settings` ask for, or none with `BOXOFFICE_RATE_LIMIT=off`. Starts the
    /// sweeper thread, which ends when the limits are dropped.
    pub fn from_settings(settings: &Settings) -> Option<Arc<Limits>> {
        if settings.rate_limit == Switch::Off {
            return None;
        }
        let limits = Arc::new(Limits {
            user: RateLimiter::keyed(quota(settings.rate_user_per_second, settings.rate_user_burst)),
            handshake: RateLimiter::keyed(quota(settings.rate_handshake_per_second, settings.rate_handshake_burst)),
            address: RateLimiter::keyed(quota(settings.rate_address_per_second, settings.rate_address_burst)),
            frames: quota(settings.rate_frames_per_second, settings.rate_frames_burst),
            trusted: settings.rate_trusted_proxies.clone(),
            clock: DefaultClock::default(),
        });
        let weak: Weak<Limits> = Arc::downgrade(&limits);
        let _ = std::thread::Builder::new().name("rate-limits".into()).spawn(move || loop {
            std::thread::sleep(SWEEP);
            match weak.upgrade() {
                Some(l) => l.sweep(),
                None => return,
            }
        });
        Some(limits)
    }

    /// Count one request of `who` (and a handshake, if it is one).
    pub fn request(&self, who: Who, handshake: bool) -> Result<(), OverLimit> {
        let over = |limit: Limit, not_until: governor::NotUntil<_>| OverLimit {
            limit,
            retry_after: not_until.wait_time_from(self.clock.now()),
        };
        match who {
            Who::User(user) => {
                self.user.check_key(&user).map_err(|n| over(Limit::User, n))?;
                if handshake {
                    self.handshake.check_key(&user).map_err(|n| over(Limit::Handshake, n))?;
                }
                Ok(())
            }
            Who::Address(ip) => self.address.check_key(&ip).map_err(|n| over(Limit::Address, n)),
        }
    }

    /// The client's address as the limits key it: the peer, or behind a trusted proxy the
    /// address it forwarded for. IPv6 addresses are keyed by their /64.
    pub fn client_address(&self, req: &HttpRequest) -> Option<IpAddr> {
        let peer = req.peer_addr()?.ip();
        let mut client = peer;
        if self.trusted.contains(&peer) {
            let forwarded = req.headers().get_all("x-forwarded-for").filter_map(|v| v.to_str().ok());
            let hops: Vec<IpAddr> =
                forwarded.flat_map(|v| v.split(',')).filter_map(|a| a.trim().parse::<IpAddr>().ok()).collect();
            if let Some(ip) = hops.iter().rev().find(|ip| !self.trusted.contains(ip)) {
                client = *ip;
            }
        }
        Some(match client {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
            },
            v4 => v4,
        })
    }

    /// A new socket's frame allowance.
    pub fn frames(&self) -> FrameBudget {
        FrameBudget { frames: self.frames, state: None }
    }

    /// Forget the keys that are back to a full allowance.
    fn sweep(&self) {
        fn bound<K: std::hash::Hash + Eq + Clone>(map: &DefaultKeyedRateLimiter<K>) {
            map.retain_recent();
            map.shrink_to_fit();
        }
        bound(&self.user);
        bound(&self.handshake);
        bound(&self.address);
    }
}

/// One socket's allowance of frames, and of frames over it before the socket is closed.
/// Nothing is allocated until the first counted frame.
pub struct FrameBudget {
    frames: Quota,
    state: Option<Box<(DefaultDirectRateLimiter, DefaultDirectRateLimiter)>>,
}

/// What to do with a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameVerdict {
    Allowed,
    /// Over the limit: answer it with an error, do not act on it.
    Refused,
    /// Over the limit again and again: close the socket.
    Flooding,
}

impl FrameBudget {
    /// No limit (`BOXOFFICE_RATE_LIMIT=off`).
    pub fn unlimited() -> FrameBudget {
        FrameBudget { frames: quota(u32::MAX, u32::MAX), state: None }
    }

    pub fn count(&mut self) -> FrameVerdict {
        let frames = self.frames;
        let state = self.state.get_or_insert_with(|| {
            Box::new((RateLimiter::direct(frames), RateLimiter::direct(quota(FLOOD_PER_SECOND, FLOOD_BURST))))
        });
        if state.0.check().is_ok() {
            return FrameVerdict::Allowed;
        }
        crate::observe::rate_limited("frame");
        if state.1.check().is_ok() {
            FrameVerdict::Refused
        } else {
            FrameVerdict::Flooding
        }
    }
}

/// The token of a request, if it carries one that verifies: `Authorization: Bearer`, or
/// the `token` / `access_token` query parameter (WebSocket handshakes, file links).
fn subject(req: &HttpRequest, verifier: &Verifier) -> Option<u64> {
    let token = match super::bearer(req) {
        Some(t) => t,
        None => {
            let q = req.query_string();
            q.split('&').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                (k == "token" || k == "access_token")
                    .then(|| percent_encoding::percent_decode_str(v).decode_utf8_lossy().into_owned())
            })?
        }
    };
    verifier.verify(&token).ok().map(|id| id.user_id)
}

/// The middleware: refuse a request over its limit with 429 in its contract's shape.
pub fn guard<S>(
    req: ServiceRequest,
    srv: &S,
) -> impl Future<Output = Result<ServiceResponse<BoxBody>, actix_web::Error>> + 'static
where
    S: Service<ServiceRequest, Response = ServiceResponse<BoxBody>, Error = actix_web::Error>,
    S::Future: 'static,
{
    match over_limit(req.request()) {
        None => Either::Left(srv.call(req)),
        Some(over) => {
            crate::observe::rate_limited(over.limit.label());
            let secs = over.retry_after_secs();
            let message = format!("too many requests: try again in {secs} s");
            let path = req.path().to_string();
            let mut res = super::contract::refusal(&path, StatusCode::TOO_MANY_REQUESTS, "TOO_MANY_REQUESTS", message);
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                res.headers_mut().insert(RETRY_AFTER, v);
            }
            Either::Right(ready(Ok(req.into_response(res))))
        }
    }
}

fn over_limit(req: &HttpRequest) -> Option<OverLimit> {
    let path = req.path();
    if path == "/healthz" || path == "/metrics" {
        return None;
    }
    let realtime = req.app_data::<actix_web::web::Data<super::Realtime>>()?;
    let limits = realtime.limits.as_ref()?;
    let handshake = req.headers().get("upgrade").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let who = match subject(req, &realtime.verifier) {
        Some(user) => Who::User(user),
        None => Who::Address(limits.client_address(req)?),
    };
    limits.request(who, handshake).err()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(user: (u32, u32)) -> Limits {
        Limits {
            user: RateLimiter::keyed(quota(user.0, user.1)),
            handshake: RateLimiter::keyed(quota(2, 3)),
            address: RateLimiter::keyed(quota(1, 2)),
            frames: quota(1, 2),
            trusted: vec!["10.0.0.1".parse().expect("ip")],
            clock: DefaultClock::default(),
        }
    }

    /// The defaults' promise: 1,000 requests in a second are mostly refused, and each
    /// refusal says when to come back.
    #[test]
    fn a_burst_past_the_allowance_is_refused_with_a_retry_time() {
        let l = limits((40, 80));
        let refused: Vec<OverLimit> = (0..1000).filter_map(|_| l.request(Who::User(1), false).err()).collect();
        assert!(refused.len() >= 900, "{} refused", refused.len());
        assert!(refused.iter().all(|o| o.limit == Limit::User && o.retry_after_secs() >= 1));
        assert!(l.request(Who::User(2), false).is_ok(), "another user has their own allowance");
        // Handshakes have their own limit on top.
        assert!((0..3).all(|_| l.request(Who::User(3), true).is_ok()));
        assert_eq!(l.request(Who::User(3), true).map_err(|o| o.limit), Err(Limit::Handshake));
    }

    #[test]
    fn frames_over_the_limit_are_refused_then_the_socket_is_closed() {
        let l = limits((1, 1));
        let mut budget = l.frames();
        let verdicts: Vec<FrameVerdict> = (0..40).map(|_| budget.count()).collect();
        assert_eq!(&verdicts[..3], [FrameVerdict::Allowed, FrameVerdict::Allowed, FrameVerdict::Refused]);
        assert_eq!(verdicts.last(), Some(&FrameVerdict::Flooding));
        let mut free = FrameBudget::unlimited();
        assert!((0..10_000).all(|_| free.count() == FrameVerdict::Allowed));
    }
}
