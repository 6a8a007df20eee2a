//! Issue 14: what operators see and do. `/metrics` counts a rush and a chat exchange
//! exactly; the status page's figures need an admin and move with the sale; logs written
//! to a file hold no escape codes, JSON logs are one object per line, and every request
//! has an id; a config file sets settings under the environment and over the defaults;
//! SIGTERM closes WebSockets with 1001 (SignalR's Close with `allowReconnect` first) and
//! the process exits 0.

use crate::chat::*;
use crate::helpers::*;
use crate::ws_violations::{frame, open, read_frame};
use serde_json::{json, Value};
use std::io::Write;
use std::time::Duration;

/// The value of the sample `name{labels}` in a Prometheus text exposition (0 if absent).
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
        if metric != name {
            continue;
        }
        if labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))) {
            return value.parse().unwrap_or_else(|_| panic!("a number: {line}"));
        }
    }
    0.0
}

/// The server's log once it mentions `needle` (the logging thread writes a moment later).
async fn log_with(server: &TestServer, needle: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let log = server.log();
        if log.contains(needle) {
            return log;
        }
        assert!(std::time::Instant::now() < deadline, "the log never mentioned {needle}: {log}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn scrape(api: &Api) -> String {
    let r = api.raw("GET", "/metrics", Some(&admin_jwt(999)), &[], None).await;
    assert_eq!(r.status, 200, "{r:?}");
    let ct = r.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    String::from_utf8(r.raw.to_vec()).expect("text")
}

#[actix_rt::test]
async fn metrics_count_a_rush_and_a_chat_exchange() {
    let server = TestServer::spawn(&fast_queue());
    let api = server.api();
    let before = scrape(&api).await;
    assert!(before.contains("# TYPE boxoffice_store_commits_total counter"), "{before}");
    // The revenue and the traffic are for admins only on the public address.
    assert_q_error(&api.raw("GET", "/metrics", None, &[], None).await, 401);
    assert_q_error(&api.raw("GET", "/metrics", Some("garbage"), &[], None).await, 401);
    assert_q_error(&api.raw("GET", "/metrics", Some(&jwt(1)), &[], None).await, 403);

    // A rush: ten buyers each hold a seat and pay for it; one more tries a taken seat.
    let mut buyers = Vec::new();
    for id in 0..10u64 {
        buyers.push(Buyer::enter(&api, 100 + id).await);
    }
    let rush = buyers.iter().enumerate().map(|(i, b)| {
        let api = &api;
        async move {
            let r = b.charge(api, 80_000, &format!("c{i}")).await;
            assert_eq!(r.status, 200, "{r:?}");
            let h = b.hold(api, 1, i as u64 + 1, &format!("h{i}")).await;
            assert_eq!(h.status, 200, "{h:?}");
            let p = b.pay(api, h.body["reservationId"].as_u64().expect("id"), 80_000, &format!("p{i}")).await;
            assert_eq!(p.status, 200, "{p:?}");
        }
    });
    futures_util::future::join_all(rush).await;
    let late = Buyer::enter(&api, 200).await;
    assert_eq!(late.hold(&api, 1, 1, "taken").await.status, 409);

    // A chat exchange: one listener, five messages.
    let chat = Chat::new(&server);
    chat.touch(&[1, 2]).await;
    let room = chat.direct(1, 2).await;
    let mut ws = WsClient::connect(&server.base, room, &jwt(2), None).await;
    for n in 0..5 {
        chat.post(1, room, &format!("m{n}")).await;
    }
    assert_eq!(ws.messages(5, Duration::from_secs(5)).await.len(), 5);

    let after = scrape(&api).await;
    assert!(after.contains("# TYPE boxoffice_http_requests_total counter"), "{after}");
    let grew = |name: &str, labels: &[(&str, &str)]| sample(&after, name, labels) - sample(&before, name, labels);
    assert_eq!(grew("boxoffice_holds_total", &[("contract", "Q")]), 10.0);
    assert_eq!(grew("boxoffice_payments_total", &[("contract", "Q")]), 10.0);
    assert_eq!(grew("boxoffice_money_captured_total", &[("contract", "Q")]), 800_000.0);
    assert_eq!(grew("boxoffice_queue_issued_total", &[]), 11.0);
    assert_eq!(grew("boxoffice_queue_admitted_total", &[]), 11.0);
    assert_eq!(grew("boxoffice_refusals_total", &[("contract", "Q"), ("reason", "SEAT_ALREADY_HELD")]), 1.0);
    let ok = [("contract", "Q"), ("route", "/reservations"), ("status", "2xx")];
    assert_eq!(grew("boxoffice_http_requests_total", &ok), 10.0);
    let refused = [("contract", "Q"), ("route", "/reservations"), ("status", "4xx")];
    assert_eq!(grew("boxoffice_http_requests_total", &refused), 1.0);
    let timed = [("contract", "Q"), ("route", "/payments")];
    assert_eq!(grew("boxoffice_http_request_duration_seconds_count", &timed), 10.0);
    assert_eq!(grew("boxoffice_ws_connections_total", &[("protocol", "chat")]), 1.0);
    assert_eq!(sample(&after, "boxoffice_ws_connections", &[("protocol", "chat")]), 1.0);
    // Each message reaches the listener's room group once (the sender has no socket).
    assert!(grew("boxoffice_events_published_total", &[]) >= 5.0);
    assert!(grew("boxoffice_ws_deliveries_total", &[]) >= 5.0);
    assert!(grew("boxoffice_store_commits_total", &[]) >= 1.0);
    assert!(sample(&after, "boxoffice_store_fsync_seconds_count", &[]) >= 1.0);
    // Ten tokens ended at payment (the queue's next tick counts it).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while sample(&scrape(&api).await, "boxoffice_queue_active", &[]) != 1.0 {
        assert!(std::time::Instant::now() < deadline, "the queue still counts paid tokens as active");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }

    ws.close().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let now = scrape(&api).await;
        if sample(&now, "boxoffice_ws_connections", &[("protocol", "chat")]) == 0.0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the closed socket is still counted");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_rt::test]
async fn the_status_page_needs_an_admin_and_shows_the_sale_live() {
    let server = TestServer::spawn(&fast_queue());
    let api = server.api();
    let page = api.raw("GET", "/admin", None, &[], None).await;
    assert_eq!(page.status, 200);
    assert!(String::from_utf8_lossy(&page.raw).contains("status.json"), "the page reads the figures");

    assert_eq!(api.raw("GET", "/admin/status.json", None, &[], None).await.status, 401);
    assert_eq!(api.get("/admin/status.json", &jwt(5), &[]).await.status, 403);
    assert_eq!(api.raw("GET", "/admin?token=nonsense", None, &[], None).await.status, 401);

    // The token given once in the query string comes back as an HttpOnly cookie for /admin.
    let admin = admin_jwt(1);
    let r = api.raw("GET", &format!("/admin?token={admin}"), None, &[], None).await;
    let cookie = r.headers.get("set-cookie").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    assert!(cookie.contains("HttpOnly") && cookie.contains("Path=/admin"), "{cookie}");
    let pair = cookie.split(';').next().expect("name=value").to_string();

    let buyer = Buyer::enter(&api, 9).await;
    assert_eq!(buyer.hold(&api, 2, 7, "k").await.status, 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status: Value = loop {
        let r = api.raw("GET", "/admin/status.json", None, &[("Cookie", &pair)], None).await;
        assert_eq!(r.status, 200, "{r:?}");
        let held: f64 =
            r.body["series"]["holdsPerSecond"].as_array().expect("series").iter().filter_map(Value::as_f64).sum();
        if held > 0.0 {
            break r.body;
        }
        assert!(std::time::Instant::now() < deadline, "the hold never showed: {}", r.body);
        actix_rt::time::sleep(Duration::from_millis(200)).await;
    };
    for series in [
        "queueWaiting",
        "queueActive",
        "admittedPerSecond",
        "paymentsPerSecond",
        "requestsPerSecond",
        "connections",
        "deliveriesPerSecond",
        "commitLatencyMs",
    ] {
        let s = status["series"][series].as_array().unwrap_or_else(|| panic!("{series}: {status}"));
        assert!(!s.is_empty() && s.len() <= 300, "{series}");
    }
    assert!(status["current"]["queueActive"].as_u64().is_some(), "{status}");
    let schedule = status["schedules"]
        .as_array()
        .and_then(|l| l.iter().find(|s| s["scheduleId"] == 2))
        .unwrap_or_else(|| panic!("schedule 2: {status}"));
    assert_eq!((schedule["seatsLeft"].as_u64(), schedule["totalSeats"].as_u64()), (Some(49), Some(50)));
    assert!(status["performances"].as_array().is_some_and(|p| p.iter().any(|p| p["performanceId"] == "perf_001")));
}

#[actix_rt::test]
async fn logs_hold_no_escape_codes_and_carry_request_ids() {
    let server = TestServer::spawn(&[]);
    let api = server.api();
    let r = api.get("/concerts", &jwt(3), &[("X-Request-Id", "trace-42")]).await;
    assert_eq!(r.headers.get("x-request-id").and_then(|v| v.to_str().ok()), Some("trace-42"));
    let r = api.get("/concerts", &jwt(3), &[("X-Request-Id", "not ok!")]).await;
    let made = r.headers.get("x-request-id").and_then(|v| v.to_str().ok()).expect("an id").to_string();
    assert_ne!(made, "not ok!");
    let log = log_with(&server, &made).await;
    assert!(!log.contains('\u{1b}'), "escape codes in a log file");
    assert!(
        log.lines().any(|l| l.contains("trace-42") && l.contains("/concerts") && l.contains("status=200")),
        "{log}"
    );

    let json_server = TestServer::spawn(&[("BOXOFFICE_LOG_FORMAT", "json")]);
    let api = json_server.api();
    let r = api.get("/concerts?secret=abc", &jwt(3), &[]).await;
    let id = r.headers.get("x-request-id").and_then(|v| v.to_str().ok()).expect("an id").to_string();
    let log = log_with(&json_server, &id).await;
    let lines: Vec<Value> =
        log.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    let access = lines
        .iter()
        .find(|l| l["span"]["id"] == id.as_str())
        .unwrap_or_else(|| panic!("no line for request {id}: {log}"));
    assert_eq!(access["fields"]["path"], "/concerts");
    assert!(!log.contains("secret=abc"), "query strings (tokens) stay out of logs");
}

#[actix_rt::test]
async fn a_config_file_sets_what_the_environment_does_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("boxoffice.toml");
    std::fs::write(&file, "# a test's settings\ncharge-max-single = 500\nhold_ttl = \"1h\"\nqueue-admit-rate = 1000000\nqueue-max-active = 1000000\n")
        .expect("write");
    let path = file.to_string_lossy().into_owned();
    // The environment beats the file: holds last a second here.
    let server = TestServer::spawn(&[("BOXOFFICE_CONFIG", path.as_str()), ("BOXOFFICE_HOLD_TTL", "1s")]);
    let api = server.api();
    let buyer = Buyer::enter(&api, 4).await;
    assert_eq!(buyer.charge(&api, 600, "over").await.status, 400, "the file's charge limit");
    assert_eq!(buyer.charge(&api, 500, "at").await.status, 200);
    let h = buyer.hold(&api, 1, 3, "hold").await;
    assert_eq!(h.status, 200, "{h:?}");
    let id = h.body["reservationId"].as_u64().expect("id");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while buyer.reservation(&api, id).await.body["status"] != "EXPIRED" {
        assert!(std::time::Instant::now() < deadline, "the environment's 1 s hold never expired");
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }

    // An unknown key stops the server before it starts, naming the key.
    std::fs::write(&file, "hold-tll = \"5m\"\n").expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_boxoffice"))
        .args(["serve", "--config", &path, "--bind", "127.0.0.1:0"])
        .env("BOXOFFICE_DATA_DIR", dir.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown setting `hold-tll`") && err.contains("hold_ttl"), "{err}");
}

#[actix_rt::test]
async fn sigterm_closes_websockets_with_1001_and_exits_0() {
    let mut server = TestServer::spawn(&[]);
    let chat = Chat::new(&server);
    chat.touch(&[1, 2]).await;
    let room = chat.direct(1, 2).await;
    let mut plain = open(&server, &format!("/chat/ws/{room}?token={}", jwt(1)));
    let mut hub = open(&server, &format!("/hubs/chat?access_token={}", jwt(2)));
    hub.write_all(&frame(0x81, b"{\"protocol\":\"json\",\"version\":1}\x1e", false, None)).expect("handshake");
    let (_, handshake) = read_frame(&mut hub).expect("the handshake's answer");
    assert_eq!(handshake, b"{}\x1e");
    // Both sessions are in.
    let api = server.api();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let m = scrape(&api).await;
        let open = ["chat", "signalr"].map(|p| sample(&m, "boxoffice_ws_connections", &[("protocol", p)]));
        if open == [1.0, 1.0] {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "sessions open: {open:?}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }

    let status = server.stop();
    assert!(status.success(), "exit status {status:?}");
    let close_of = |s: &mut std::net::TcpStream| -> (Vec<Vec<u8>>, Option<u16>) {
        let mut texts = Vec::new();
        while let Some((opcode, payload)) = read_frame(s) {
            match opcode {
                0x8 => return (texts, (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]))),
                0x1 | 0x2 => texts.push(payload),
                _ => {}
            }
        }
        (texts, None)
    };
    let (_, code) = close_of(&mut plain);
    assert_eq!(code, Some(1001), "contract C's socket");
    let (texts, code) = close_of(&mut hub);
    assert_eq!(code, Some(1001), "the SignalR hub");
    let farewell: Value = texts
        .iter()
        .flat_map(|t| t.split(|b| *b == 0x1e))
        .filter(|r| !r.is_empty())
        .filter_map(|r| serde_json::from_slice::<Value>(r).ok())
        .find(|m| m["type"] == 7)
        .unwrap_or_else(|| panic!("no Close message: {texts:?}"));
    assert_eq!(farewell["allowReconnect"], json!(true), "{farewell}");
    assert!(server.log().contains("drained"), "{}", server.log());
}

/// `POST /admin/clock` (tests' way to move the server's clock): unknown unless
/// `BOXOFFICE_CLOCK_ADJUSTABLE` is on, and then for admins only; it moves the clock forward
/// only, and answers the new time.
#[actix_rt::test]
async fn the_clock_moves_for_admins_only_and_only_where_it_is_adjustable() {
    let advance = |ms: i64| Some(json!({ "advance_ms": ms }));
    let off = TestServer::spawn(&[("BOXOFFICE_CLOCK_ADJUSTABLE", "false")]);
    let r = off.api().call("POST", "/admin/clock", Some(&admin_jwt(1)), &[], advance(60_000)).await;
    assert_q_error(&r, 404);

    let server = TestServer::spawn(&[]);
    let api = server.api();
    assert_q_error(&api.call("POST", "/admin/clock", None, &[], advance(60_000)).await, 401);
    assert_q_error(&api.call("POST", "/admin/clock", Some(&jwt(1)), &[], advance(60_000)).await, 403);
    for bad in [advance(-1), Some(json!({})), Some(json!({ "advance_ms": "60s" }))] {
        assert_q_error(&api.call("POST", "/admin/clock", Some(&admin_jwt(1)), &[], bad).await, 400);
    }
    let before = boxoffice::time::now_ms();
    let r = api.call("POST", "/admin/clock", Some(&admin_jwt(1)), &[], advance(3_600_000)).await;
    assert_eq!(r.status, 200, "{r:?}");
    let now = r.body["now_ms"].as_u64().expect("now_ms");
    assert!(now >= before + 3_600_000 && now < boxoffice::time::now_ms() + 3_600_000 + 1_000, "{r:?}");
    assert_eq!(r.body["offset_ms"], 3_600_000, "{r:?}");
    assert_eq!(r.body["now"], boxoffice::time::rfc3339(now), "{r:?}");
    // It adds up, and the server's answers read it (a token's expiry time).
    assert!(server.advance(Duration::from_secs(60)).await >= now + 60_000);
    let issued = api.call("POST", "/waiting/issue", Some(&jwt(1)), &[], Some(json!({ "userId": 1 }))).await;
    let expires = chrono::DateTime::parse_from_rfc3339(issued.body["expiresAt"].as_str().expect("expiresAt"))
        .expect("RFC 3339")
        .timestamp_millis() as u64;
    assert!(expires >= now + 60_000 + 10 * 60_000, "{issued:?}");
}
