//! What operators reach over HTTP: `/metrics` (Prometheus), the live status page at
//! `/admin` with the figures it reads at `/admin/status.json`, and every request's id,
//! access log line and request metrics (see [`observe_requests`]).

use crate::actors::catalog::SeatsLeft;
use crate::http::contract::Contract;
use crate::http::error::QError;
use crate::http::AppState;
use crate::time::rfc3339;
use actix_web::body::BoxBody;
use actix_web::cookie::{Cookie, SameSite};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::Instant;
use tracing::Instrument;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(admin_metrics))
        .route("/admin", web::get().to(page))
        .route("/admin/", web::get().to(page))
        .route("/admin/status.json", web::get().to(status));
}

/// Every metric in the Prometheus text format, on the public address for admins only: it
/// shows the revenue and the traffic. `Authorization: Bearer <admin JWT>` (Prometheus:
/// `authorization: {credentials: ...}`); otherwise 401, or 403 for a token that is not an
/// admin's. `BOXOFFICE_METRICS_BIND` serves it without a token on a private address
/// ([`metrics`]).
pub async fn admin_metrics(req: HttpRequest) -> HttpResponse {
    use actix_web::http::StatusCode;
    let verifier = req.app_data::<web::Data<crate::http::Realtime>>().map(|r| &r.verifier);
    let refused = match (verifier, crate::http::bearer(&req)) {
        (Some(v), Some(token)) => match v.verify(&token) {
            Ok(id) if id.admin => None,
            Ok(_) => Some((StatusCode::FORBIDDEN, "FORBIDDEN", "/metrics is for admins")),
            Err(_) => Some((StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "/metrics needs a valid admin token")),
        },
        _ => Some((StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "/metrics needs an admin token (Authorization: Bearer)")),
    };
    match refused {
        Some((status, code, message)) => crate::http::contract::refusal(req.path(), status, code, message.into()),
        None => metrics().await,
    }
}

/// Every metric in the Prometheus text format, unauthenticated: for the private address of
/// `BOXOFFICE_METRICS_BIND` only.
pub async fn metrics() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8"))
        .insert_header((CACHE_CONTROL, "no-store"))
        .body(crate::observe::render())
}

/// The cookie that carries an admin's token for the status page.
const COOKIE: &str = "boxoffice_admin";

/// The status page. It holds no data; `?token=<admin JWT>` once keeps the token in an
/// HttpOnly cookie scoped to `/admin`, which the page's requests then carry.
async fn page(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, QError> {
    let mut res = HttpResponse::Ok();
    res.insert_header((CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((CACHE_CONTROL, "no-store"))
        .insert_header(("Referrer-Policy", "no-referrer"));
    let query = web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default();
    if let Some(token) = query.get("token") {
        let id = state.verifier.verify(token).map_err(QError::from)?;
        if !id.admin {
            return Err(QError::forbidden("The status page is for admins."));
        }
        let cookie = Cookie::build(COOKIE, token.clone())
            .path("/admin")
            .http_only(true)
            .same_site(SameSite::Strict)
            .secure(req.connection_info().scheme() == "https")
            .finish();
        res.cookie(cookie);
    }
    Ok(res.body(include_str!("admin/page.html")))
}

/// The admin behind a request: `Authorization: Bearer`, or the page's cookie.
fn admin(state: &AppState, req: &HttpRequest) -> Result<(), QError> {
    let token = match super::bearer(req) {
        Some(t) => t,
        None => req
            .cookie(COOKIE)
            .map(|c| c.value().to_string())
            .ok_or_else(|| QError::from(crate::auth::AuthError::Missing))?,
    };
    let id = state.verifier.verify(&token).map_err(QError::from)?;
    if !id.admin {
        return Err(QError::forbidden("The status page is for admins."));
    }
    Ok(())
}

/// The status page's figures: the last five minutes, one sample a second.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub now: String,
    pub uptime_seconds: u64,
    pub interval_seconds: u64,
    pub current: crate::observe::Sample,
    pub series: Series,
    pub schedules: Vec<ScheduleLeft>,
    pub performances: Vec<PerformanceLeft>,
    pub connections_by_protocol: std::collections::BTreeMap<&'static str, i64>,
}

/// Each figure of [`crate::observe::Sample`] over time, oldest first.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Series {
    pub queue_waiting: Vec<u64>,
    pub queue_active: Vec<u64>,
    pub admitted_per_second: Vec<f64>,
    pub holds_per_second: Vec<f64>,
    pub payments_per_second: Vec<f64>,
    pub bookings_per_second: Vec<f64>,
    pub requests_per_second: Vec<f64>,
    pub connections: Vec<i64>,
    pub deliveries_per_second: Vec<f64>,
    pub commits_per_second: Vec<f64>,
    pub commit_latency_ms: Vec<f64>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleLeft {
    pub concert_id: u64,
    pub schedule_id: u64,
    pub starts_at: String,
    pub seats_left: usize,
    pub total_seats: u32,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PerformanceLeft {
    pub performance_id: String,
    pub title: String,
    pub seats_left: usize,
    pub total_seats: u32,
}

/// At most this many schedules and performances on the page.
const LISTED: usize = 50;

static STARTED: LazyLock<Instant> = LazyLock::new(Instant::now);

async fn status(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, QError> {
    admin(&state, &req)?;
    let samples = crate::observe::samples();
    let mut series = Series::default();
    for s in &samples {
        series.queue_waiting.push(s.queue_waiting);
        series.queue_active.push(s.queue_active);
        series.admitted_per_second.push(s.admitted_per_second);
        series.holds_per_second.push(s.holds_per_second);
        series.payments_per_second.push(s.payments_per_second);
        series.bookings_per_second.push(s.bookings_per_second);
        series.requests_per_second.push(s.requests_per_second);
        series.connections.push(s.connections);
        series.deliveries_per_second.push(s.deliveries_per_second);
        series.commits_per_second.push(s.commits_per_second);
        series.commit_latency_ms.push(s.commit_latency_ms);
    }
    let (schedules, performances) = state.registry.catalog().send(SeatsLeft { limit: LISTED }).await?;
    let schedules = schedules
        .into_iter()
        .map(|v| ScheduleLeft {
            concert_id: v.schedule.concert,
            schedule_id: v.schedule.id,
            starts_at: rfc3339(v.schedule.starts_at),
            seats_left: v.available,
            total_seats: v.schedule.seats,
        })
        .collect();
    let performances = performances
        .into_iter()
        .map(|v| PerformanceLeft {
            performance_id: v.performance.id,
            title: v.performance.title,
            seats_left: v.available,
            total_seats: v.performance.seats,
        })
        .collect();
    let body = Status {
        now: rfc3339(crate::time::now_ms()),
        uptime_seconds: STARTED.elapsed().as_secs(),
        interval_seconds: 1,
        current: samples.last().copied().unwrap_or_default(),
        series,
        schedules,
        performances,
        connections_by_protocol: crate::observe::connections_by_kind().into_iter().collect(),
    };
    Ok(HttpResponse::Ok().insert_header((CACHE_CONTROL, "no-store")).json(body))
}

/// Start the clock of `uptimeSeconds`, and sample the figures once a second (and let the
/// Prometheus recorder tidy its histograms now and then).
pub fn start_sampler() {
    LazyLock::force(&STARTED);
    actix_rt::spawn(async {
        let mut tick = actix_rt::time::interval(std::time::Duration::from_secs(1));
        let mut n: u64 = 0;
        loop {
            tick.tick().await;
            crate::observe::sample();
            crate::observe::flush();
            n += 1;
            if n % 5 == 0 {
                crate::observe::install().run_upkeep();
            }
        }
    });
}

/// A request's id: the client's `X-Request-Id` if it is a sane one (1 to 128 letters,
/// digits, `.`, `_`, `:` or `-`), else a new one.
pub fn request_id(req: &HttpRequest) -> String {
    if let Some(v) = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()) {
        let ok = (1..=128).contains(&v.len())
            && v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        if ok {
            return v.to_string();
        }
    }
    static PREFIX: LazyLock<u32> = LazyLock::new(rand::random);
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = (u64::from(*PREFIX) << 32) | (NEXT.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff);
    let mut id = String::with_capacity(16);
    for shift in (0..16).rev() {
        id.push(char::from(b"0123456789abcdef"[((n >> (shift * 4)) & 0xf) as usize]));
    }
    id
}

/// Around every request: its id (in the log span of everything it logs, and sent back as
/// `X-Request-Id`), one `boxoffice::access` log line, and the request metrics by contract,
/// route template and status class.
pub fn observe_requests<S>(
    req: ServiceRequest,
    srv: &S,
) -> impl Future<Output = Result<ServiceResponse<BoxBody>, actix_web::Error>> + 'static
where
    S: Service<ServiceRequest, Response = ServiceResponse<BoxBody>, Error = actix_web::Error>,
    S::Future: 'static,
{
    let id = request_id(req.request());
    let started = Instant::now();
    let method = req.method().clone();
    let span = tracing::info_span!("request", id = %id);
    let fut = {
        let _entered = span.enter();
        srv.call(req)
    };
    async move {
        let mut res = fut.await?;
        let took = started.elapsed();
        let status = res.status().as_u16();
        let path = res.request().path().to_string();
        let route = res.request().match_pattern().unwrap_or_else(|| "unmatched".to_string());
        crate::observe::request(Contract::of(&path).letter(), &route, status, took.as_secs_f64());
        if let Ok(v) = HeaderValue::from_str(&id) {
            res.headers_mut().insert(actix_web::http::header::HeaderName::from_static("x-request-id"), v);
        }
        // The path only: query strings carry WebSocket tokens.
        tracing::info!(target: "boxoffice::access", %method, %path, status, micros = took.as_micros() as u64, "request");
        Ok(res)
    }
    .instrument(span)
}
