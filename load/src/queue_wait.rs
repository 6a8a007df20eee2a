//! `queue-wait`: a crowd waits on `GET /waiting/ws` instead of polling. The tool sets the
//! queue's policy (`PUT /waiting/settings`, admin JWT: `--admit-rate`, `--max-active`,
//! `--active-ttl`), takes a token for each user, and opens each user's queue socket on
//! the targets in turn (`--ws-url`: a core's edges). Each socket reads events until its
//! admission, then closes. Checks: every user was admitted once and its socket saw it;
//! no one-second window saw more admissions than the rate allows (a token bucket holding
//! one second's, so at most twice the rate); never more than `--max-active` admitted at
//! once within their TTL; admissions keep the order of the places.

use crate::common::{jwt, Common, Http, Target};
use crate::metrics::{Report, ServerProbe, ToolProbe};
use anyhow::{anyhow, bail};
use awc::http::Method;
use awc::ws::Frame;
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// Waiting users (ids from --user-base on), one socket each.
    #[arg(long, default_value_t = 500)]
    pub users: u64,
    /// The queue's admission rate the tool sets (admissions per second).
    #[arg(long, default_value_t = 100)]
    pub admit_rate: u32,
    /// The most admitted at once, which the tool sets.
    #[arg(long, default_value_t = 50)]
    pub max_active: u32,
    /// How long an admission lasts, which the tool sets (whole seconds).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub active_ttl: Duration,
    /// Where the sockets connect instead of --url, in turn (e.g. a core's edges).
    #[arg(long, value_delimiter = ',')]
    pub ws_url: Vec<String>,
}

/// What one user's socket saw.
struct Seen {
    place: u64,
    /// When its admission event arrived (since the start), if it did.
    admitted: Option<Duration>,
    admissions: usize,
    error: Option<String>,
}

/// The place a token names (see the server's `waiting_queue::ticket`): bytes 8..16 of its
/// payload. The audit's only look inside a token.
fn place_of(token: &str) -> Option<u64> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token.strip_prefix("q1")?).ok()?;
    Some(u64::from_be_bytes(bytes.get(8..16)?.try_into().ok()?))
}

pub async fn run(a: Args, http: Http, secret: Vec<u8>, run_id: String, target: Target) -> anyhow::Result<Report> {
    let c = &a.common;
    let ttl = a.active_ttl.as_secs().max(1);
    let admin = jwt(&secret, c.user_base.saturating_sub(1).max(1), true);
    let policy = json!({ "admitRate": a.admit_rate, "maxActive": a.max_active, "activeTtlSeconds": ttl });
    let r =
        http.req(Method::PUT, "/waiting/settings", Some(&admin), &[], Some(&policy)).await.map_err(|e| anyhow!(e))?;
    if r.status != 200 {
        bail!("PUT /waiting/settings: {}", r.snippet());
    }
    let hosts: Vec<String> = if a.ws_url.is_empty() {
        vec![target.base.clone()]
    } else {
        a.ws_url.iter().map(|u| Target::parse_as("--ws-url", u).map(|t| t.base)).collect::<anyhow::Result<_>>()?
    };
    let mut report = Report::new(
        "queue-wait",
        json!({ "users": a.users, "admit_rate": a.admit_rate, "max_active": a.max_active, "active_ttl_s": ttl,
                "ws_urls": hosts, "run_id": run_id, "concurrency": c.concurrency }),
    );
    let server = ServerProbe::start(&c.server_pid, &c.extra_pid)?;
    let tool = ToolProbe::start();
    let t0 = Instant::now();
    let deadline = t0 + c.timeout;
    let users: Vec<u64> = (0..a.users).map(|i| c.user_base + i).collect();
    // Each user takes a place, then waits on a socket opened right after.
    // No pool limit: every socket holds its connection (awc's default allows 100).
    let connector = awc::Connector::new().limit(0);
    let client = awc::Client::builder().connector(connector).timeout(Duration::from_secs(10)).finish();
    let issuing = std::rc::Rc::new(tokio::sync::Semaphore::new(c.concurrency.max(1)));
    let waits = users.iter().enumerate().map(|(i, user)| {
        let host = hosts[i % hosts.len()].replace("http://", "ws://");
        let client = client.clone();
        let (http, issuing) = (&http, issuing.clone());
        let user_jwt = jwt(&secret, *user, false);
        let user = *user;
        async move {
            let issued = {
                let _permit = issuing.acquire().await;
                let (r, _) = http
                    .req_retry(
                        Method::POST,
                        "/waiting/issue",
                        Some(&user_jwt),
                        &[],
                        Some(&json!({ "userId": user })),
                        2,
                    )
                    .await;
                match r {
                    Ok(r) if r.status == 200 => {
                        r.json()["token"].as_str().map(str::to_string).ok_or_else(|| "no token".to_string())
                    }
                    Ok(r) => Err(format!("POST /waiting/issue: {}", r.snippet())),
                    Err(e) => Err(e),
                }
            };
            let bearer = format!("Bearer {user_jwt}");
            let token = match issued {
                Ok(t) => t,
                Err(e) => return Seen { place: u64::MAX, admitted: None, admissions: 0, error: Some(e) },
            };
            let mut seen =
                Seen { place: place_of(&token).unwrap_or(u64::MAX), admitted: None, admissions: 0, error: None };
            let opened = client
                .ws(format!("{host}/waiting/ws"))
                .header("Authorization", bearer)
                .header("X-Queue-Token", token.as_str())
                .connect()
                .await;
            let mut socket = match opened {
                Ok((_, s)) => s,
                Err(e) => {
                    seen.error = Some(format!("handshake: {e:?}"));
                    return seen;
                }
            };
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let frame = match actix_rt::time::timeout(left, socket.next()).await {
                    Err(_) => {
                        seen.error = Some("not admitted before --timeout".into());
                        break;
                    }
                    Ok(None) | Ok(Some(Err(_))) => {
                        seen.error.get_or_insert_with(|| "the socket ended before the admission".into());
                        break;
                    }
                    Ok(Some(Ok(f))) => f,
                };
                match frame {
                    Frame::Text(b) => {
                        let v: Value = serde_json::from_slice(&b).unwrap_or_default();
                        if v["active"] == true {
                            seen.admissions += 1;
                            seen.admitted.get_or_insert_with(|| t0.elapsed());
                            break;
                        }
                    }
                    Frame::Ping(p) => {
                        use futures_util::SinkExt;
                        let _ = socket.send(awc::ws::Message::Pong(p)).await;
                    }
                    Frame::Close(reason) => {
                        seen.error = Some(format!("closed before the admission: {reason:?}"));
                        break;
                    }
                    _ => {}
                }
            }
            {
                use futures_util::SinkExt;
                let _ = socket.send(awc::ws::Message::Close(None)).await;
            }
            seen
        }
    });
    let seen: Vec<Seen> = futures_util::stream::iter(waits).buffer_unordered(usize::MAX >> 1).collect::<Vec<_>>().await;
    let wall = t0.elapsed();
    let (tool_wall, tool_cpu) = tool.finish();
    report.wall = wall;
    report.tool_cpu = tool_cpu;
    report.total_wall = tool_wall;
    server.finish(&mut report);

    let admitted: Vec<&Seen> = seen.iter().filter(|s| s.admitted.is_some()).collect();
    let errors: Vec<&String> = seen.iter().filter_map(|s| s.error.as_ref()).collect();
    report.fig("users", a.users);
    report.fig("admitted", admitted.len() as u64);
    report.fig_f("admissions_per_s", admitted.len() as f64 / wall.as_secs_f64().max(1e-9));
    report.server_cpu_per("admission", admitted.len() as u64);
    report.check(
        "every user admitted once, and its socket saw it",
        admitted.len() as u64 == a.users && seen.iter().all(|s| s.admissions <= 1),
        format!(
            "{}/{} admitted; {} errors{}",
            admitted.len(),
            a.users,
            errors.len(),
            errors.first().map(|e| format!(", the first: {e}")).unwrap_or_default()
        ),
    );
    let mut times: Vec<Duration> = admitted.iter().filter_map(|s| s.admitted).collect();
    times.sort();
    // Admissions seen within any one second: at most a second's worth on top of the rate
    // (the bucket), plus a tick's worth for delivery jitter.
    let window = Duration::from_secs(1);
    let most_in_a_second =
        (0..times.len()).map(|i| times[i..].iter().take_while(|t| **t < times[i] + window).count()).max().unwrap_or(0);
    let rate_bound = 2 * a.admit_rate as usize + (a.admit_rate as usize / 20).max(1);
    report.fig("most_admissions_in_one_second", most_in_a_second as u64);
    report.check(
        "no second saw more admissions than the rate allows",
        most_in_a_second <= rate_bound,
        format!("{most_in_a_second} in one second; the bound is {rate_bound}"),
    );
    // At once: the admissions seen within one TTL (less a delivery margin) never exceed
    // the cap.
    let live = Duration::from_secs(ttl).saturating_sub(Duration::from_millis(200));
    let most_at_once =
        (0..times.len()).map(|i| times[i..].iter().take_while(|t| **t < times[i] + live).count()).max().unwrap_or(0);
    report.fig("most_admitted_at_once", most_at_once as u64);
    report.check(
        "never more admitted at once than --max-active",
        most_at_once <= a.max_active as usize,
        format!("{most_at_once} within one TTL; the cap is {}", a.max_active),
    );
    // In order: a place admitted before an earlier one, by more than two ticks of delivery.
    let mut by_place: Vec<(u64, Duration)> = admitted.iter().filter_map(|s| Some((s.place, s.admitted?))).collect();
    by_place.sort();
    let mut latest = Duration::ZERO;
    let mut out_of_order = 0u64;
    for (_, t) in &by_place {
        if *t + Duration::from_millis(100) < latest {
            out_of_order += 1;
        }
        latest = latest.max(*t);
    }
    report.check(
        "admissions keep the order of the places",
        out_of_order == 0,
        format!("{out_of_order} admitted more than two ticks before an earlier place"),
    );
    Ok(report)
}
