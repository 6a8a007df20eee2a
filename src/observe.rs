//! What operators see: Prometheus metrics at `/metrics` (the `metrics` crate, rendered by
//! `metrics-exporter-prometheus`), and the running totals the `/admin` page plots, which a
//! sampler turns into per-second rates once a second.
//!
//! Every figure is counted in one call here, at the place its state changes: the seat map's
//! commit, the wallet, the gateway, the queue, the hub and the store. Counters on hot paths
//! are handles registered once (an atomic add per event, no lookup); labelled ones with
//! few values are looked up by the recorder (a hash and a read lock).

use metrics::{counter, gauge, histogram, Counter};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{LazyLock, Mutex, OnceLock};
use std::time::Duration;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Install the process's recorder (once; later calls return the same handle).
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let latency = LATENCY_BUCKETS;
        let writes = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(ADMISSION_PUSH.into()), &ADMISSION_PUSH_BUCKETS)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &latency))
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full("boxoffice_store_writes_per_commit".into()), &writes))
            .and_then(|b| b.upkeep_timeout(Duration::from_secs(5)).install_recorder());
        match handle {
            Ok(h) => {
                describe();
                h
            }
            // Another recorder is installed (a test harness): render what this one sees.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        }
    })
}

/// The Prometheus text exposition of every metric.
pub fn render() -> String {
    flush();
    install().render()
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_counter!(
        "boxoffice_http_requests_total",
        "HTTP requests answered, by contract, route template and status class"
    );
    describe_histogram!("boxoffice_http_request_duration_seconds", Unit::Seconds, "Time to answer an HTTP request");
    describe_histogram!(
        ADMISSION_PUSH,
        Unit::Seconds,
        "From the core's admission of a waiting place to the event on its queue socket (/waiting/ws), per node"
    );
    describe_counter!(
        "boxoffice_holds_total",
        "Seats held: contract Q holds, contract B bookings, contract T payment requests"
    );
    describe_counter!("boxoffice_bookings_total", "Contract B bookings made");
    describe_counter!("boxoffice_refusals_total", "Requests refused, by contract and reason");
    describe_counter!("boxoffice_expiries_total", "Holds, bookings, trade reservations and queue tokens that ran out");
    describe_counter!("boxoffice_payments_total", "Payments completed, by contract");
    describe_counter!("boxoffice_money_captured_total", "Money taken by completed payments, in whole units");
    describe_counter!("boxoffice_card_charges_total", "Card charges asked of the gateway, by outcome");
    describe_counter!("boxoffice_refunds_total", "Card charges refunded");
    describe_counter!("boxoffice_money_refunded_total", "Money refunded, in whole units");
    describe_gauge!("boxoffice_queue_waiting", "Queue tokens waiting");
    describe_gauge!("boxoffice_queue_active", "Queue tokens active");
    describe_gauge!("boxoffice_queue_estimated_wait_seconds", "The wait a token issued now would be told");
    describe_counter!("boxoffice_queue_issued_total", "Queue tokens issued");
    describe_gauge!("boxoffice_queue_sockets", "GET /waiting/ws sockets on this node, by state");
    describe_counter!(
        "boxoffice_rate_limited_total",
        "Requests, handshakes and socket frames refused for being over a rate limit, by limit"
    );
    describe_counter!("boxoffice_queue_admitted_total", "Queue tokens admitted from waiting to active");
    describe_gauge!("boxoffice_ws_connections", "Open WebSocket connections, by protocol");
    describe_counter!(
        "boxoffice_nats_dropped_total",
        "Events the core could not hand to NATS (queue full, or NATS refused)"
    );
    describe_counter!("boxoffice_nats_requests_total", "Requests from edges the core answered, by kind");
    describe_counter!("boxoffice_edge_restarts_total", "Times an edge closed every socket with 1012, by reason");
    describe_gauge!("boxoffice_edge_subscriptions", "NATS subjects an edge listens to (groups with a local session)");
    describe_counter!("boxoffice_ws_connections_total", "WebSocket connections opened, by protocol");
    describe_counter!("boxoffice_events_published_total", "Room and user events published to the hub");
    describe_counter!("boxoffice_ws_deliveries_total", "Events written to WebSocket clients");
    describe_counter!("boxoffice_ws_evictions_total", "Slow readers disconnected, by reason");
    describe_counter!("boxoffice_ws_closes_total", "WebSocket closes the server sent, by close code");
    describe_counter!("boxoffice_ws_replays_total", "since= catch-ups and SignalR joins served from history");
    describe_counter!("boxoffice_ws_replayed_messages_total", "Messages sent by those catch-ups");
    describe_counter!("boxoffice_store_commits_total", "Group commits (fsyncs) of the store");
    describe_histogram!("boxoffice_store_writes_per_commit", "Acknowledged writes released by one group commit");
    describe_histogram!("boxoffice_store_fsync_seconds", Unit::Seconds, "Time one store flush (fsync) took");
    describe_counter!("boxoffice_store_journal_replays_total", "Journal entries replayed at start-up");
    describe_gauge!("boxoffice_actors_live", "Wallet, key gate, seat map, room and listing actors in memory, by kind");
    describe_counter!(
        "boxoffice_actors_idle_stops_total",
        "Actors let go of after BOXOFFICE_ACTOR_IDLE unasked, by kind"
    );
    describe_counter!(
        "boxoffice_actors_recalled_total",
        "Actors asked for again after they were let go of but before they stopped, by kind"
    );
}

/// A contract's letter as a label value.
pub type Contract = &'static str;

/// The totals the status page turns into rates (Prometheus has its own copies).
#[derive(Default)]
struct Totals {
    requests: AtomicU64,
    holds: AtomicU64,
    payments: AtomicU64,
    bookings: AtomicU64,
    admitted: AtomicU64,
    deliveries: AtomicU64,
    commits: AtomicU64,
    commit_micros: AtomicU64,
    connections: AtomicI64,
    chat_connections: AtomicI64,
    signalr_connections: AtomicI64,
    queue_waiting: AtomicU64,
    queue_active: AtomicU64,
    queue_wait_seconds: AtomicU64,
}

static TOTALS: LazyLock<Totals> = LazyLock::new(Totals::default);

struct Hot {
    deliveries: Counter,
    published: Counter,
    commits: Counter,
}

static HOT: LazyLock<Hot> = LazyLock::new(|| Hot {
    deliveries: counter!("boxoffice_ws_deliveries_total"),
    published: counter!("boxoffice_events_published_total"),
    commits: counter!("boxoffice_store_commits_total"),
});

// ---- HTTP ----

/// One answered request: `route` is the matched template (`/bookings/{booking_id}`), or
/// `unmatched`.
pub fn request(contract: Contract, route: &str, status: u16, seconds: f64) {
    TOTALS.requests.fetch_add(1, Relaxed);
    let class = (status / 100).clamp(1, 5) as usize - 1;
    // The handles of each route, per thread: no key to build and no registry to search
    // per request (the routes are the app's templates, a bounded set).
    let slot = match contract {
        "Q" => 0,
        "B" => 1,
        "C" => 2,
        _ => 3,
    };
    ROUTES.with(|routes| {
        let mut routes = routes.borrow_mut();
        if !routes.contains_key(route) {
            routes.insert(route.into(), Default::default());
        }
        let Some(per_contract) = routes.get_mut(route) else { return };
        let h = per_contract[slot].get_or_insert_with(|| RouteHandles {
            contract,
            counters: Default::default(),
            latency: Latency::new(
                histogram!("boxoffice_http_request_duration_seconds", "contract" => contract, "route" => route.to_string()),
            ),
        });
        let counter = h.counters[class].get_or_insert_with(|| {
            const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
            counter!("boxoffice_http_requests_total", "contract" => h.contract, "route" => route.to_string(), "status" => CLASSES[class])
        });
        counter.increment(1);
        h.latency.record(seconds);
    });
}

struct RouteHandles {
    contract: Contract,
    counters: [Option<Counter>; 5],
    latency: std::sync::Arc<Latency>,
}

/// The latency histogram's buckets (seconds), as the exporter is told in [`install`].
const LATENCY_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A latency histogram that takes samples cheaply: each lands in its bucket's count and
/// sum here (an uncontended lock and two adds), and [`flush`] hands them to the exporter
/// as one `record_many` of the bucket's mean per bucket. Bucket counts, `_count` and `_sum`
/// come out exact; what is saved is the exporter's per-sample buffer (profiled at ~3% of
/// the server's CPU in a hold rush).
struct Latency {
    handle: metrics::Histogram,
    pending: Mutex<[(u64, f64); LATENCY_BUCKETS.len() + 1]>,
}

static LATENCIES: Mutex<Vec<std::sync::Arc<Latency>>> = Mutex::new(Vec::new());

impl Latency {
    fn new(handle: metrics::Histogram) -> std::sync::Arc<Latency> {
        let l = std::sync::Arc::new(Latency { handle, pending: Mutex::new([(0, 0.0); LATENCY_BUCKETS.len() + 1]) });
        LATENCIES.lock().unwrap_or_else(|e| e.into_inner()).push(l.clone());
        l
    }

    fn record(&self, seconds: f64) {
        let i = LATENCY_BUCKETS.iter().position(|b| seconds <= *b).unwrap_or(LATENCY_BUCKETS.len());
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p[i].0 += 1;
        p[i].1 += seconds;
    }

    fn flush(&self) {
        let taken = std::mem::replace(
            &mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()),
            [(0, 0.0); LATENCY_BUCKETS.len() + 1],
        );
        for (count, sum) in taken {
            if count > 0 {
                self.handle.record_many(sum / count as f64, count as usize);
            }
        }
    }
}

/// Hand every pending latency sample to the exporter (before rendering, and once a second).
pub fn flush() {
    let all: Vec<_> = LATENCIES.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for l in all {
        l.flush();
    }
}

thread_local! {
    static ROUTES: std::cell::RefCell<std::collections::HashMap<Box<str>, [Option<RouteHandles>; 4]>> = Default::default();
    static REFUSALS: std::cell::RefCell<std::collections::HashMap<(Contract, &'static str), Counter>> = Default::default();
}

/// A request refused for a reason of its contract (a Q `code`, or a short name).
pub fn refusal(contract: Contract, reason: &'static str) {
    REFUSALS.with(|r| {
        r.borrow_mut()
            .entry((contract, reason))
            .or_insert_with(|| counter!("boxoffice_refusals_total", "contract" => contract, "reason" => reason))
            .increment(1)
    });
}

// ---- Sales ----

/// What kind of sale a count is about, as the actors know it; metrics label it with the
/// contract that sells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sale {
    /// Seats held and paid from a wallet (contract Q).
    Seats,
    /// Seats booked and paid by card (contract B).
    Booking,
    /// Listed tickets reserved by a payment request (contract T).
    Trade,
}

impl Sale {
    /// The `contract` label.
    fn contract(self) -> Contract {
        match self {
            Sale::Seats => "Q",
            Sale::Booking => "B",
            Sale::Trade => "T",
        }
    }

    /// The `kind` label of its expiry.
    fn expiry(self) -> &'static str {
        match self {
            Sale::Seats => "hold",
            Sale::Booking => "booking",
            Sale::Trade => "trade_reservation",
        }
    }
}

/// Seats held, a booking's seats locked, or tickets reserved by a payment request.
pub fn hold(sale: Sale) {
    TOTALS.holds.fetch_add(1, Relaxed);
    counter!("boxoffice_holds_total", "contract" => sale.contract()).increment(1);
    if sale == Sale::Booking {
        TOTALS.bookings.fetch_add(1, Relaxed);
        counter!("boxoffice_bookings_total").increment(1);
    }
}

/// A hold, booking or payment request that ran out.
pub fn expiry(sale: Sale) {
    counter!("boxoffice_expiries_total", "kind" => sale.expiry()).increment(1);
}

/// `n` queue tokens that ran out at once.
pub fn queue_tokens_expired(n: u64) {
    if n > 0 {
        counter!("boxoffice_expiries_total", "kind" => "queue_token").increment(n);
    }
}

/// A completed payment of `amount`.
pub fn payment(sale: Sale, amount: u64) {
    let contract = sale.contract();
    TOTALS.payments.fetch_add(1, Relaxed);
    counter!("boxoffice_payments_total", "contract" => contract).increment(1);
    counter!("boxoffice_money_captured_total", "contract" => contract).increment(amount);
}

/// A card charge's outcome: `captured`, `declined`, `unknown` (timed out or unreachable).
pub fn card_charge(outcome: &'static str) {
    counter!("boxoffice_card_charges_total", "outcome" => outcome).increment(1);
}

/// A card charge refunded.
pub fn refund(amount: u64) {
    counter!("boxoffice_refunds_total").increment(1);
    counter!("boxoffice_money_refunded_total").increment(amount);
}

// ---- The waiting queue ----

/// The queue's figures after a change.
pub fn queue(waiting: u64, active: u64, estimated_wait_seconds: u64) {
    TOTALS.queue_waiting.store(waiting, Relaxed);
    TOTALS.queue_active.store(active, Relaxed);
    TOTALS.queue_wait_seconds.store(estimated_wait_seconds, Relaxed);
    gauge!("boxoffice_queue_waiting").set(waiting as f64);
    gauge!("boxoffice_queue_active").set(active as f64);
    gauge!("boxoffice_queue_estimated_wait_seconds").set(estimated_wait_seconds as f64);
}

/// A request, handshake or socket frame over its rate limit (`user`, `address`,
/// `handshake`, `frame`).
pub fn rate_limited(limit: &'static str) {
    counter!("boxoffice_rate_limited_total", "limit" => limit).increment(1);
}

/// The queue sockets of this node: waiting, and admitted.
/// From a place's admission by the core to its socket's event, at each node's queue watch.
const ADMISSION_PUSH: &str = "boxoffice_queue_admission_push_seconds";
/// Around the queue's 50 ms tick: the aim is two ticks.
const ADMISSION_PUSH_BUCKETS: [f64; 11] = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.5, 1.0, 5.0];

/// A waiting socket was told of its admission `ms` after the core admitted it.
pub fn queue_admission_pushed(ms: u64) {
    histogram!(ADMISSION_PUSH).record(ms as f64 / 1000.0);
}

pub fn queue_sockets(waiting: u64, active: u64) {
    gauge!("boxoffice_queue_sockets", "state" => "waiting").set(waiting as f64);
    gauge!("boxoffice_queue_sockets", "state" => "active").set(active as f64);
}

pub fn queue_issued() {
    counter!("boxoffice_queue_issued_total").increment(1);
}

pub fn queue_admitted(n: u64) {
    TOTALS.admitted.fetch_add(n, Relaxed);
    counter!("boxoffice_queue_admitted_total").increment(n);
}

// ---- Realtime ----

/// A WebSocket session of `protocol` opened (`+1`) or ended (`-1`).
pub fn connection(protocol: &'static str, delta: i64) {
    TOTALS.connections.fetch_add(delta, Relaxed);
    match protocol {
        "chat" => TOTALS.chat_connections.fetch_add(delta, Relaxed),
        _ => TOTALS.signalr_connections.fetch_add(delta, Relaxed),
    };
    if delta > 0 {
        counter!("boxoffice_ws_connections_total", "protocol" => protocol).increment(delta as u64);
        gauge!("boxoffice_ws_connections", "protocol" => protocol).increment(delta as f64);
    } else {
        gauge!("boxoffice_ws_connections", "protocol" => protocol).decrement((-delta) as f64);
    }
}

/// Open connections by protocol.
pub fn connections_by_kind() -> [(&'static str, i64); 2] {
    [("chat", TOTALS.chat_connections.load(Relaxed)), ("signalr", TOTALS.signalr_connections.load(Relaxed))]
}

/// An event published to the hub (once, whatever the number of subscribers).
pub fn published() {
    HOT.published.increment(1);
}

/// `n` events written to one client.
pub fn delivered(n: u64) {
    TOTALS.deliveries.fetch_add(n, Relaxed);
    HOT.deliveries.increment(n);
}

/// A slow reader disconnected: `bytes` or `events` over the outbox's bound.
pub fn eviction(reason: &'static str) {
    counter!("boxoffice_ws_evictions_total", "reason" => reason).increment(1);
}

/// A close frame the server sent.
pub fn close(code: u16) {
    let code = match code {
        1000 => "1000",
        1001 => "1001",
        1002 => "1002",
        1003 => "1003",
        1007 => "1007",
        1008 => "1008",
        1009 => "1009",
        1011 => "1011",
        1012 => "1012",
        _ => "other",
    };
    counter!("boxoffice_ws_closes_total", "code" => code).increment(1);
}

/// A catch-up from history of `messages` messages.
pub fn replay(messages: u64) {
    counter!("boxoffice_ws_replays_total").increment(1);
    counter!("boxoffice_ws_replayed_messages_total").increment(messages);
}

/// A SignalR connection's handover between edges, by outcome: on the edge taking it over
/// `resumed`, `forbidden`, `gone` (the holder refused or did not answer), `unavailable`,
/// `not_exact` (it could have had a gap: dropped); on the holder `handed`.
pub fn handover(outcome: &'static str) {
    counter!("boxoffice_signalr_handovers_total", "outcome" => outcome).increment(1);
}

/// A frame a publisher wrote to an idle socket itself (`http::outlet`) that the socket did
/// not take whole: the session writes the rest.
pub fn direct_stalled() {
    counter!("boxoffice_ws_direct_stalls_total").increment(1);
}

/// A socket caught up on its rooms from the durable history after a gap in what its node
/// relays, instead of closing with 1012 (stateful SignalR connections on an edge).
pub fn resync(protocol: &'static str) {
    counter!("boxoffice_ws_resyncs_total", "protocol" => protocol).increment(1);
}

/// A SignalR connection of the process before a restart, reconnected here, by outcome:
/// `resumed`, `not_exact` (it could have had a gap: 404), `unavailable` (a room refused).
pub fn restored(outcome: &'static str) {
    counter!("boxoffice_signalr_restores_total", "outcome" => outcome).increment(1);
}

// ---- More than one machine ----

/// The core dropped an event on its way to NATS.
pub fn nats_dropped() {
    counter!("boxoffice_nats_dropped_total").increment(1);
}

/// The core took a request from an edge.
pub fn nats_request(kind: &'static str) {
    counter!("boxoffice_nats_requests_total", "kind" => kind).increment(1);
}

/// An edge closed its sockets with 1012 for `reason`.
pub fn edge_restart(reason: &'static str) {
    counter!("boxoffice_edge_restarts_total", "reason" => reason).increment(1);
}

/// The subjects an edge listens to.
pub fn edge_subscriptions(n: usize) {
    gauge!("boxoffice_edge_subscriptions").set(n as f64);
}

// ---- Store ----

/// One group commit: `writes` acknowledged writes made durable by one flush of `took`.
pub fn commit(writes: u64, took: Duration) {
    TOTALS.commits.fetch_add(1, Relaxed);
    TOTALS.commit_micros.fetch_add(took.as_micros() as u64, Relaxed);
    HOT.commits.increment(1);
    histogram!("boxoffice_store_writes_per_commit").record(writes as f64);
    histogram!("boxoffice_store_fsync_seconds").record(took.as_secs_f64());
}

/// Journal entries replayed at start-up.
pub fn journal_replayed(entries: u64) {
    counter!("boxoffice_store_journal_replays_total").increment(entries);
}

// ---- The status page's series ----

/// How many one-second samples the page plots: five minutes.
pub const SAMPLES: usize = 300;

/// One second of the figures the page plots.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    pub queue_waiting: u64,
    pub queue_active: u64,
    pub estimated_wait_seconds: u64,
    pub admitted_per_second: f64,
    pub holds_per_second: f64,
    pub payments_per_second: f64,
    pub bookings_per_second: f64,
    pub requests_per_second: f64,
    pub connections: i64,
    pub deliveries_per_second: f64,
    pub commits_per_second: f64,
    /// Mean time of the last second's flushes, in milliseconds.
    pub commit_latency_ms: f64,
}

#[derive(Default)]
struct Sampler {
    last: Option<([u64; 8], std::time::Instant)>,
    samples: VecDeque<Sample>,
}

static SAMPLER: LazyLock<Mutex<Sampler>> = LazyLock::new(Default::default);

/// Take one sample: rates since the previous one. The server calls this once a second.
pub fn sample() {
    let t = &*TOTALS;
    let now = [
        t.requests.load(Relaxed),
        t.holds.load(Relaxed),
        t.payments.load(Relaxed),
        t.bookings.load(Relaxed),
        t.admitted.load(Relaxed),
        t.deliveries.load(Relaxed),
        t.commits.load(Relaxed),
        t.commit_micros.load(Relaxed),
    ];
    let at = std::time::Instant::now();
    let mut s = SAMPLER.lock().unwrap_or_else(|e| e.into_inner());
    let (before, then) = s.last.unwrap_or((now, at));
    let secs = at.duration_since(then).as_secs_f64().max(0.001);
    let rate = |i: usize| ((now[i] - before[i]) as f64 / secs * 10.0).round() / 10.0;
    let commits = now[6] - before[6];
    let sample = Sample {
        queue_waiting: t.queue_waiting.load(Relaxed),
        queue_active: t.queue_active.load(Relaxed),
        estimated_wait_seconds: t.queue_wait_seconds.load(Relaxed),
        requests_per_second: rate(0),
        holds_per_second: rate(1),
        payments_per_second: rate(2),
        bookings_per_second: rate(3),
        admitted_per_second: rate(4),
        deliveries_per_second: rate(5),
        commits_per_second: rate(6),
        commit_latency_ms: if commits == 0 {
            0.0
        } else {
            ((now[7] - before[7]) as f64 / commits as f64 / 1000.0 * 100.0).round() / 100.0
        },
        connections: t.connections.load(Relaxed),
    };
    s.last = Some((now, at));
    if s.last.is_some() && s.samples.len() == SAMPLES {
        s.samples.pop_front();
    }
    s.samples.push_back(sample);
}

/// The samples, oldest first.
pub fn samples() -> Vec<Sample> {
    SAMPLER.lock().unwrap_or_else(|e| e.into_inner()).samples.iter().copied().collect()
}
