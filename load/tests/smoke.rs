//! The load tool (`boxoffice-load`) against a real server, each scenario with tiny
//! parameters: it exits 0, its invariant checks pass, and its counts add up.
//!
//! The server runs in this test process (its library's `Application`, on a thread of its
//! own, on `127.0.0.1:0` with a temporary data dir); the load tool is the real binary.
//! The `--peer` runs drive `benches/node-peer/server.js` in Node.js (its `ws` package is
//! installed with `npm ci --prefix benches/node-peer` on first use).

use boxoffice::app::Application;
use boxoffice::config::{Cli, Command as ServerCommand};
use clap::Parser;
use serde_json::Value;
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "load-smoke-secret";

/// A server for one test; it stops with the test process.
struct TestServer {
    base: String,
    _dir: tempfile::TempDir,
}

impl TestServer {
    fn spawn(flags: &[&str]) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().to_str().expect("utf-8 temp path").to_string();
        let mut args = vec!["boxoffice", "serve", "--bind", "127.0.0.1:0", "--data-dir", &data];
        args.extend(["--jwt-secret", SECRET, "--workers", "2"]);
        args.extend(flags);
        let settings = match Cli::parse_from(args).command {
            Some(ServerCommand::Serve(settings)) => settings,
            _ => unreachable!("the arguments name `serve`"),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let served = actix_web::rt::System::new().block_on(async move {
                let app = Application::build(settings).await?;
                let _ = tx.send(app.addr());
                app.run_until_stopped().await
            });
            if let Err(e) = served {
                eprintln!("the test server stopped: {e:#}");
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(30)).expect("the server started");
        TestServer { base: format!("http://{addr}"), _dir: dir }
    }
}

/// The Node.js peer of `benches/node-peer` on an ephemeral port; killed when dropped.
struct NodePeer {
    base: String,
    pid: u32,
    child: Child,
}

impl NodePeer {
    fn spawn() -> NodePeer {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../benches/node-peer");
        if !dir.join("node_modules").join("ws").is_dir() {
            let status = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--prefix"])
                .arg(&dir)
                .status()
                .expect("npm is needed for the node-peer runs (Node.js 18+)");
            assert!(status.success(), "`npm ci --prefix benches/node-peer` failed: {status}");
        }
        let mut child = Command::new("node")
            .arg(dir.join("server.js"))
            .arg("0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("Node.js (`node`) is needed for the node-peer runs");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let addr = line.trim().rsplit(' ').next().unwrap_or_default().to_string();
        if !line.contains("listening on 127.0.0.1:") {
            let _ = child.kill();
            panic!("the node peer did not start: {line:?}");
        }
        NodePeer { base: format!("http://{addr}"), pid: child.id(), child }
    }
}

impl Drop for NodePeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Run `boxoffice-load SCENARIO ARGS --json` against the server at `base`; the parsed
/// JSON report.
fn load(base: &str, scenario: &str, args: &[&str]) -> Value {
    let started = Instant::now();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_boxoffice-load"));
    cmd.arg(scenario)
        .args(["--url", base, "--json", "--no-progress", "--timeout", "20s", "--verify-timeout", "20s"])
        .args(args)
        .env("BOXOFFICE_JWT_SECRET", SECRET)
        .stdin(Stdio::null());
    let out = cmd.output().expect("run boxoffice-load");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "boxoffice-load {scenario} {args:?} exited with {:?}\nstdout: {stdout}\nstderr: {stderr}",
        out.status.code()
    );
    assert!(started.elapsed() < Duration::from_secs(30), "{scenario} took {:?}", started.elapsed());
    let report: Value =
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not one JSON object ({e}): {stdout}"));
    assert_eq!(report["scenario"], scenario, "{report}");
    assert_eq!(report["passed"], true, "{report}");
    let checks = report["checks"].as_array().expect("checks");
    assert!(!checks.is_empty(), "{report}");
    for c in checks {
        assert_eq!(c["passed"], true, "check failed: {c}\n{report}");
    }
    assert!(report["tool"]["cpu_s"].is_number() && report["tool"]["wall_s"].as_f64().unwrap_or(0.0) > 0.0, "{report}");
    report
}

fn fig(report: &Value, key: &str) -> u64 {
    report["figures"][key].as_u64().unwrap_or_else(|| panic!("figure {key}: {report}"))
}

fn server() -> TestServer {
    TestServer::spawn(&["--queue-admit-rate", "1000000", "--queue-max-active", "1000000"])
}

#[test]
fn load_queue_rush_sells_each_seat_once_and_balances_wallets() {
    let server = server();
    let r = load(&server.base, "queue-rush", &["--users", "40", "--concurrency", "16"]);
    assert_eq!(fig(&r, "users_admitted"), 40, "{r}");
    // 150 demo seats for 40 users: everyone gets one, some after a 409.
    assert_eq!(fig(&r, "holds_ok"), 40, "{r}");
    assert_eq!(fig(&r, "payments_ok"), 40, "{r}");
    assert_eq!(fig(&r, "hold_attempts"), 40 + fig(&r, "holds_409"), "{r}");
    assert_eq!(fig(&r, "errors"), 0, "{r}");
    assert_eq!(r["latency_ms"]["hold"]["count"].as_u64(), Some(fig(&r, "hold_attempts")), "{r}");
    assert_eq!(r["checks"].as_array().map(Vec::len), Some(4), "{r}");

    // Its own small catalog, more users than seats: the rest are sold out, nothing oversold.
    let r = load(
        &server.base,
        "queue-rush",
        &[
            "--users",
            "30",
            "--create-schedules",
            "2",
            "--seats-per-schedule",
            "10",
            "--hold-retries",
            "50",
            "--user-base",
            "2000000",
        ],
    );
    assert_eq!(fig(&r, "seats_available_at_start"), 20, "{r}");
    assert_eq!(fig(&r, "payments_ok"), 20, "{r}");
    assert_eq!(fig(&r, "users_sold_out") + fig(&r, "payments_ok"), 30, "{r}");
}

#[test]
fn load_booking_rush_confirms_paid_bookings_and_reconciles_the_gateway() {
    let server = server();
    let r = load(&server.base, "booking-rush", &["--users", "40", "--concurrency", "16"]);
    assert!(fig(&r, "bookings_ok") > 0, "{r}");
    assert_eq!(fig(&r, "bookings_ok"), fig(&r, "payments_ok"), "{r}");
    assert_eq!(fig(&r, "booking_attempts"), fig(&r, "bookings_ok") + fig(&r, "bookings_seat_taken"), "{r}");
    assert!(fig(&r, "seats_sold") <= 100, "{r}");
    assert_eq!(fig(&r, "errors"), 0, "{r}");

    let r = load(
        &server.base,
        "booking-rush",
        &["--users", "30", "--create-performance", "2x10", "--user-base", "2000000"],
    );
    assert!(fig(&r, "seats_sold") <= 20 && fig(&r, "payments_ok") > 0, "{r}");
}

/// Two rooms of five, two senders each, 50 messages/s for 2 s, with `extra` flags: every
/// count adds up and nothing is lost or duplicated.
fn chat(base: &str, extra: &[&str]) -> Value {
    let mut args = vec!["--rooms", "2", "--members", "5", "--senders", "2", "--rate", "50", "--duration", "2s"];
    args.extend(["--grace", "5s"]);
    args.extend(extra);
    let r = load(base, "chat-fanout", &args);
    assert_eq!(fig(&r, "sockets_opened"), 10, "{r}");
    assert_eq!(fig(&r, "messages_planned"), 100, "{r}");
    assert_eq!(fig(&r, "messages_sent_ok"), 100, "{r}");
    assert_eq!(fig(&r, "deliveries_expected"), 500, "{r}");
    assert_eq!(fig(&r, "deliveries"), 500, "{r}");
    assert_eq!(fig(&r, "lost"), 0, "{r}");
    assert_eq!(fig(&r, "duplicates"), 0, "{r}");
    assert_eq!(fig(&r, "error_frames"), 0, "{r}");
    assert_eq!(r["latency_ms"]["delivery (send->receive)"]["count"], 500, "{r}");
    r
}

#[test]
fn load_chat_fanout_plain_loses_and_duplicates_nothing() {
    let r = chat(&server().base, &["--protocol", "plain"]);
    assert_eq!(r["latency_ms"]["send (REST)"]["count"], 100, "{r}");
}

#[test]
fn load_chat_fanout_signalr_loses_and_duplicates_nothing() {
    chat(&server().base, &["--protocol", "signalr"]);
}

#[test]
fn load_chat_fanout_sending_on_the_sockets_loses_and_duplicates_nothing() {
    let r = chat(&server().base, &["--send", "ws"]);
    assert_eq!(r["params"]["send"], "ws", "{r}");
    assert_eq!(r["latency_ms"]["send (WebSocket write)"]["count"], 100, "{r}");
}

/// A process to name in `--extra-pid`; killed when dropped.
struct Idle(Child);

impl Drop for Idle {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn load_chat_fanout_on_separate_websocket_urls_sums_the_server_pids() {
    let server = server();
    let authority = server.base.trim_start_matches("http://").to_string();
    let idle = Idle(Command::new("sleep").arg("60").spawn().expect("sleep"));
    let (me, parent) = (std::process::id(), std::os::unix::process::parent_id());
    let pids = format!("{me},{parent}");
    let extra = idle.0.id().to_string();
    let r = chat(&server.base, &["--ws-url", &server.base, "--server-pid", &pids, "--extra-pid", &extra]);
    assert_eq!(r["params"]["ws_urls"], serde_json::json!([server.base]), "{r}");
    assert_eq!(fig(&r, &format!("sockets_via_{authority}")), 10, "{r}");
    assert_eq!(fig(&r, &format!("deliveries_via_{authority}")), 500, "{r}");
    assert_eq!(fig(&r, &format!("lost_via_{authority}")), 0, "{r}");
    assert_eq!(r["server"]["pids"], serde_json::json!([me, parent]), "{r}");
    assert!(r["server"]["pid"].is_null(), "{r}");
    assert_eq!(r["server"]["processes"].as_array().map(Vec::len), Some(2), "{r}");
    assert_eq!(r["extra"][0]["pid"].as_u64(), Some(u64::from(idle.0.id())), "{r}");
    assert!(r["figures"]["server_and_extra_cpu_us_per_delivery"].is_number(), "{r}");

    // Every --ws-url must be on loopback.
    let out = Command::new(env!("CARGO_BIN_EXE_boxoffice-load"))
        .args(["chat-fanout", "--url", &server.base, "--json", "--no-progress", "--ws-url"])
        .arg(format!("{},http://192.0.2.1:8080", server.base))
        .env("BOXOFFICE_JWT_SECRET", SECRET)
        .output()
        .expect("run boxoffice-load");
    assert_eq!(out.status.code(), Some(2));
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert!(v["error"].as_str().unwrap_or("").contains("loopback"), "{v}");
}

#[test]
fn load_drives_the_node_peer_without_rest() {
    let peer = NodePeer::spawn();
    let pid = peer.pid.to_string();
    let r = chat(&peer.base, &["--peer", "--server-pid", &pid]);
    assert_eq!(r["params"]["send"], "ws", "{r}");
    assert_eq!(r["server"]["pid"].as_u64(), Some(u64::from(peer.pid)), "{r}");
    assert!(r["figures"]["server_cpu_us_per_delivery"].is_number(), "{r}");
    let r = load(&peer.base, "connections", &["--peer", "--count", "50", "--hold", "1s"]);
    assert_eq!(fig(&r, "opened"), 50, "{r}");
    assert_eq!(fig(&r, "closed_by_server_while_held"), 0, "{r}");

    // The peer has no REST to post to.
    let out = Command::new(env!("CARGO_BIN_EXE_boxoffice-load"))
        .args(["chat-fanout", "--url", &peer.base, "--json", "--no-progress", "--peer", "--send", "rest"])
        .env("BOXOFFICE_JWT_SECRET", SECRET)
        .output()
        .expect("run boxoffice-load");
    assert_eq!(out.status.code(), Some(2));
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert!(v["error"].as_str().unwrap_or("").contains("--send ws"), "{v}");
}

#[test]
fn load_connections_opens_and_holds_every_socket() {
    let server = server();
    let r = load(&server.base, "connections", &["--count", "200", "--hold", "1s"]);
    assert_eq!(fig(&r, "opened"), 200, "{r}");
    assert_eq!(fig(&r, "failed"), 0, "{r}");
    assert_eq!(fig(&r, "closed_by_server_while_held"), 0, "{r}");
}

#[test]
fn load_refuses_targets_off_this_machine_and_oversized_rooms() {
    let out = Command::new(env!("CARGO_BIN_EXE_boxoffice-load"))
        .args(["connections", "--url", "http://192.0.2.1:8080", "--json"])
        .env("BOXOFFICE_JWT_SECRET", SECRET)
        .output()
        .expect("run boxoffice-load");
    assert_eq!(out.status.code(), Some(2));
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert!(v["error"].as_str().unwrap_or("").contains("loopback"), "{v}");

    let server = server();
    let out = Command::new(env!("CARGO_BIN_EXE_boxoffice-load"))
        .args(["chat-fanout", "--url", &server.base, "--json", "--no-progress", "--rooms", "1", "--members", "101"])
        .env("BOXOFFICE_JWT_SECRET", SECRET)
        .output()
        .expect("run boxoffice-load");
    assert_eq!(out.status.code(), Some(2));
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert!(v["error"].as_str().unwrap_or("").contains("BOXOFFICE_CHAT_MAX_PARTICIPANTS"), "{v}");
}

#[test]
fn load_soak_runs_rounds_of_every_scenario_and_samples_the_server() {
    let server = server();
    let me = std::process::id().to_string();
    let args = [
        "--duration",
        "1s",
        "--queue-users",
        "20",
        "--booking-users",
        "10",
        "--rooms",
        "2",
        "--members",
        "5",
        "--chat-duration",
        "1s",
        "--chat-rate",
        "10",
        "--settle",
        "1s",
        "--server-pid",
        &me,
        "--user-base",
        "7000000",
    ];
    let r = load(&server.base, "soak", &args);
    let rounds = r["rounds"].as_array().expect("rounds");
    assert!(!rounds.is_empty(), "{r}");
    assert_eq!(fig(&r, "rounds"), rounds.len() as u64, "{r}");
    assert_eq!(fig(&r, "rounds_failed"), 0, "{r}");
    assert_eq!(r["params"]["user_ids_per_round"], 100_000, "{r}");
    for (i, round) in rounds.iter().enumerate() {
        assert_eq!(round["round"], i as u64 + 1, "{r}");
        assert_eq!(round["audits_passed"], true, "{r}");
        assert!(round["rss_mb"].as_f64().unwrap_or(0.0) > 0.0, "{r}");
        let scenarios: Vec<&Value> = round["scenarios"].as_array().expect("scenarios").iter().collect();
        let names: Vec<&str> = scenarios.iter().map(|s| s["scenario"].as_str().unwrap_or("?")).collect();
        assert_eq!(names, ["queue-rush", "booking-rush", "chat-fanout"], "{r}");
        // Each scenario of each round from a user base of its own.
        let base = 7_000_000 + i as u64 * 100_000;
        let bases: Vec<u64> = scenarios.iter().map(|s| s["user_base"].as_u64().unwrap_or(0)).collect();
        assert_eq!(bases, [base, base + 1_000, base + 2_000], "{r}");
        assert!(scenarios.iter().all(|s| s["passed"] == true), "{r}");
    }
    let q = &rounds[0]["scenarios"][0]["figures"];
    assert_eq!(q["payments_ok"], 20, "{r}");
    let c = &rounds[0]["scenarios"][2]["figures"];
    assert_eq!(c["lost"], 0, "{r}");
    assert!(c["deliveries"].as_u64().unwrap_or(0) > 0, "{r}");
    assert!(r["figures"]["rss_first_third_mean_mb"].as_f64().unwrap_or(0.0) > 0.0, "{r}");
    assert!(r["figures"]["rss_growth_mb"].is_number(), "{r}");
    assert!(r["figures"]["rss_growth_within_40mb"].is_boolean(), "{r}");
    assert!(r["after_settle"]["rss_mb"].as_f64().unwrap_or(0.0) > 0.0, "{r}");
    assert_eq!(r["server"]["pid"].as_u64(), Some(u64::from(std::process::id())), "{r}");
}

#[test]
fn load_queue_wait_admits_everyone_once_within_the_rate_the_cap_and_the_order() {
    let server = server();
    let r = load(
        &server.base,
        "queue-wait",
        &["--users", "60", "--admit-rate", "20", "--max-active", "10", "--active-ttl", "1s"],
    );
    assert_eq!(fig(&r, "admitted"), 60, "{r}");
}
