//! `soak`: the other scenarios in rounds until `--duration` is over, watching the server's
//! memory. Each round runs, in turn and in this process, a queue-rush (`--queue-users`,
//! on a catalog of its own with a quarter more seats than users), a booking-rush
//! (`--booking-users`, on a performance of its own of about two seats per user) and a
//! short chat-fanout (`--rooms` x `--members`, `--chat-rate` messages per second for
//! `--chat-duration`), each with user ids no other round or scenario uses. After each
//! round it samples the server's RSS (summed over `--server-pid`) and scrapes `/metrics`
//! (with an admin JWT) for the `boxoffice_actors_live` gauges, and prints one line. At
//! the end, after `--settle` if given, it compares the mean RSS of the first third of the
//! rounds with that of the last third: growth within 40 MB is the aim, reported and not
//! enforced. The run fails (exit 1) when any round's audits failed.

use crate::chat_fanout::{self, SendVia};
use crate::common::{jwt, reach, Common, Http, Target};
use crate::metrics::{Report, ServerProbe, ToolProbe};
use crate::queue_rush::first;
use crate::ws::Protocol;
use crate::{booking_rush, queue_rush};
use awc::http::Method;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::time::{Duration, Instant};

/// The RSS growth from the first third of the rounds to the last that the soak aims to
/// stay within, in MB (MiB: 1024 x 1024 bytes).
pub const AIM_MB: f64 = 40.0;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[command(flatten)]
    pub common: Common,
    /// How long to run rounds: a round starts only while this has not run out, and the
    /// last one started runs to its end.
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Users of each round's queue-rush.
    #[arg(long, default_value_t = 2000)]
    pub queue_users: u64,
    /// Users of each round's booking-rush.
    #[arg(long, default_value_t = 500)]
    pub booking_users: u64,
    /// Rooms of each round's chat-fanout.
    #[arg(long, default_value_t = 5)]
    pub rooms: u64,
    /// Members of each chat room, one WebSocket each. The server allows
    /// BOXOFFICE_CHAT_MAX_PARTICIPANTS (100 by default) per room: start it with 200 or
    /// more for the default.
    #[arg(long, default_value_t = 200)]
    pub members: u64,
    /// How long each round's chat senders send.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub chat_duration: Duration,
    /// Chat messages per second of each round, over all rooms (one sender per room).
    #[arg(long, default_value_t = 20.0)]
    pub chat_rate: f64,
    /// After the last round, wait this long and sample RSS and live actors once more.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub settle: Duration,
}

/// User ids a round takes: the queue-rush's, then the booking-rush's, then the chat's,
/// each block rounded up to 1,000, the round rounded up to 100,000.
struct Layout {
    booking: u64,
    chat: u64,
    stride: u64,
}

impl Layout {
    fn new(a: &Args) -> Layout {
        let up = |n: u64, to: u64| n.div_ceil(to).max(1) * to;
        // A rush's admin and verifier take the two ids past its users.
        let booking = up(a.queue_users + 3, 1_000);
        let chat = booking + up(a.booking_users + 3, 1_000);
        let stride = up(chat + a.rooms * a.members + 1, 100_000);
        Layout { booking, chat, stride }
    }
}

/// One round's outcome.
struct Round {
    n: u64,
    elapsed: Duration,
    rss_kb: Option<u64>,
    cpu: Option<Duration>,
    passed: bool,
    /// `scenario: check` of every failed check (or scenario that could not run).
    failed: Vec<String>,
    actors: Option<BTreeMap<String, f64>>,
    scenarios: Vec<Value>,
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// `kind=n kind=n`, or empty without the gauge.
fn show_actors(actors: &Option<BTreeMap<String, f64>>) -> String {
    match actors {
        Some(m) if !m.is_empty() => {
            let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("  actors {}", parts.join(" "))
        }
        _ => String::new(),
    }
}

fn show_rss(kb: Option<u64>) -> String {
    kb.map_or_else(|| "-".to_string(), |kb| format!("{:.1}", mb(kb)))
}

/// Every `boxoffice_actors_live` sample of a Prometheus text page, by its `kind` label
/// (summed over other labels), and those of `boxoffice_actors_live_*` as `*:kind`.
pub fn actors_live(page: &str) -> BTreeMap<String, f64> {
    const NAME: &str = "boxoffice_actors_live";
    let mut out = BTreeMap::new();
    for line in page.lines() {
        let Some(rest) = line.strip_prefix(NAME) else { continue };
        let (suffix, rest) = match rest.find(['{', ' ']) {
            Some(i) => rest.split_at(i),
            None => continue,
        };
        if !suffix.is_empty() && !suffix.starts_with('_') {
            continue;
        }
        let (labels, value) = match rest.strip_prefix('{') {
            Some(r) => match r.split_once('}') {
                Some((l, v)) => (l, v),
                None => continue,
            },
            None => ("", rest),
        };
        let Some(value) = value.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()) else { continue };
        let kind = labels
            .split(',')
            .find_map(|l| l.trim().strip_prefix("kind=\"").and_then(|v| v.strip_suffix('"')))
            .map(str::to_string)
            .unwrap_or_else(|| if labels.is_empty() { "all".to_string() } else { labels.to_string() });
        let key = if suffix.is_empty() { kind } else { format!("{}:{kind}", suffix.trim_start_matches('_')) };
        *out.entry(key).or_insert(0.0) += value;
    }
    out
}

/// The live actors from `GET /metrics` (with an admin JWT); `None` if it did not answer.
async fn scrape(http: &Http, admin: &str) -> Option<BTreeMap<String, f64>> {
    let (r, _) = http.req_retry(Method::GET, "/metrics", Some(admin), &[], None, 2).await;
    match r {
        Ok(r) if r.status == 200 => Some(actors_live(&String::from_utf8_lossy(&r.body))),
        _ => None,
    }
}

/// A sub-scenario's report, trimmed for the soak's JSON: its figures and failed checks.
fn brief(r: &Report) -> Value {
    let v = r.to_json();
    let failed: Vec<Value> =
        v["checks"].as_array().map(|c| c.iter().filter(|c| c["passed"] != true).cloned().collect()).unwrap_or_default();
    json!({
        "scenario": r.scenario,
        "passed": r.passed(),
        "wall_s": v["tool"]["total_wall_s"],
        "user_base": v["params"]["user_base"],
        "figures": v["figures"],
        "failed_checks": failed,
    })
}

/// Print a progress line: on stdout, or on stderr when stdout carries the JSON.
fn say(json: bool, line: &str) {
    if json {
        eprintln!("{line}");
    } else {
        println!("{line}");
        let _ = std::io::stdout().flush();
    }
}

pub async fn run(
    a: Args,
    http: Http,
    secret: Vec<u8>,
    run_id: String,
    target: Target,
    ws_rt: tokio::runtime::Handle,
) -> anyhow::Result<Report> {
    let started = Instant::now();
    let c = a.common.clone();
    if a.queue_users == 0 || a.booking_users == 0 {
        anyhow::bail!("--queue-users and --booking-users must be at least 1");
    }
    let layout = Layout::new(&a);
    // The first id past the first round's chat members: no scenario's.
    let admin = jwt(&secret, c.user_base + layout.chat + a.rooms * a.members, true);
    let mut report = Report::new(
        "soak",
        json!({
            "duration_s": a.duration.as_secs_f64(), "queue_users": a.queue_users, "booking_users": a.booking_users,
            "rooms": a.rooms, "members": a.members, "chat_duration_s": a.chat_duration.as_secs_f64(),
            "chat_rate": a.chat_rate, "settle_s": a.settle.as_secs_f64(), "user_base": c.user_base,
            "user_ids_per_round": layout.stride, "concurrency": c.concurrency, "run_id": run_id,
        }),
    );
    let server = ServerProbe::start(&c.server_pid, &c.extra_pid)?;
    let tool = ToolProbe::start();
    let rss0 = server.rss_now();
    let actors0 = scrape(&http, &admin).await;
    say(c.json, &format!("soak: start  rss {} MB{}", show_rss(rss0), show_actors(&actors0)));
    if actors0.is_none() {
        report.notes.push("GET /metrics did not answer 200: no live actors".into());
    }

    let mut rounds: Vec<Round> = Vec::new();
    while started.elapsed() < a.duration {
        let n = rounds.len() as u64 + 1;
        let base = c.user_base + (n - 1) * layout.stride;
        let common = |offset: u64| Common { user_base: base + offset, ..c.clone() };
        let mut reports: Vec<(&str, anyhow::Result<Report>)> = Vec::new();

        let k = (a.queue_users * 5 / 4).div_ceil(1000).max(1);
        let q = queue_rush::Args {
            common: common(0),
            users: a.queue_users,
            concert: 1,
            schedules: Vec::new(),
            create_schedules: Some(k as u32),
            seats_per_schedule: ((a.queue_users * 5 / 4).div_ceil(k).clamp(1, 1000)) as u32,
            price: 80_000,
            hold_retries: 5,
            poll: Duration::from_millis(50),
        };
        reports.push(("queue-rush", queue_rush::run(q, http.clone(), secret.clone(), crate::common::run_id()).await));

        let per_row = (a.booking_users * 2).div_ceil(20).clamp(1, 500) as u32;
        let b = booking_rush::Args {
            common: common(layout.booking),
            users: a.booking_users,
            performance: String::new(),
            create_performance: Some((20, per_row)),
            price: 30_000,
            max_seats: 3,
            retries: 2,
            card: "tok_visa".into(),
        };
        reports
            .push(("booking-rush", booking_rush::run(b, http.clone(), secret.clone(), crate::common::run_id()).await));

        let ch = chat_fanout::Args {
            common: common(layout.chat),
            rooms: a.rooms,
            members: a.members,
            senders: 1,
            send: Some(SendVia::Rest),
            peer: false,
            rate: a.chat_rate,
            duration: a.chat_duration,
            protocol: Protocol::Plain,
            grace: Duration::from_secs(5),
            sockets_per_task: 256,
            ws_url: Vec::new(),
        };
        let id = crate::common::run_id();
        reports.push((
            "chat-fanout",
            chat_fanout::run(ch, http.clone(), secret.clone(), id, target.clone(), ws_rt.clone()).await,
        ));

        let mut round = Round {
            n,
            elapsed: Duration::ZERO,
            rss_kb: None,
            cpu: None,
            passed: true,
            failed: Vec::new(),
            actors: None,
            scenarios: Vec::new(),
        };
        for (name, r) in reports {
            match r {
                Ok(r) => {
                    for ch in r.checks.iter().filter(|ch| !ch.passed) {
                        round.failed.push(format!("{name}: {} ({})", ch.name, ch.detail));
                    }
                    round.passed &= r.passed();
                    round.scenarios.push(brief(&r));
                }
                // The first round could not run a scenario: the setup is wrong (a room too big
                // for the server, say), so the soak cannot be done.
                Err(e) if n == 1 => return Err(e.context(format!("round 1's {name}"))),
                Err(e) => {
                    round.passed = false;
                    round.failed.push(format!("{name} could not run: {e:#}"));
                    round.scenarios.push(json!({ "scenario": name, "passed": false, "error": format!("{e:#}") }));
                }
            }
        }
        round.elapsed = started.elapsed();
        round.rss_kb = server.rss_now();
        round.cpu = server.cpu_now();
        round.actors = scrape(&http, &admin).await;
        let audits = if round.passed { "PASS".to_string() } else { format!("FAIL ({})", first(&round.failed)) };
        say(
            c.json,
            &format!(
                "soak: round {n}  elapsed {:.0} s  rss {} MB  audits {audits}{}",
                round.elapsed.as_secs_f64(),
                show_rss(round.rss_kb),
                show_actors(&round.actors)
            ),
        );
        rounds.push(round);
        if started.elapsed() < a.duration && !answers(&http, &target).await {
            report.notes.push(format!("the server stopped answering after round {n}: no more rounds"));
            break;
        }
    }
    let (wall, tool_cpu) = tool.finish();
    report.wall = wall;
    report.tool_cpu = tool_cpu;

    let mut settled = None;
    if !a.settle.is_zero() {
        actix_rt::time::sleep(a.settle).await;
        let rss = server.rss_now();
        let actors = scrape(&http, &admin).await;
        say(
            c.json,
            &format!(
                "soak: after settle ({:.0} s)  rss {} MB{}",
                a.settle.as_secs_f64(),
                show_rss(rss),
                show_actors(&actors)
            ),
        );
        settled = Some((rss, actors));
    }
    server.finish(&mut report);

    // First third against last third of the rounds' RSS.
    let rss: Vec<f64> = rounds.iter().filter_map(|r| r.rss_kb.map(mb)).collect();
    let third = (rss.len() / 3).max(1);
    let mean = |s: &[f64]| s.iter().sum::<f64>() / s.len().max(1) as f64;
    let failed_rounds: Vec<u64> = rounds.iter().filter(|r| !r.passed).map(|r| r.n).collect();
    report.fig("rounds", rounds.len() as u64);
    report.fig("rounds_failed", failed_rounds.len() as u64);
    if !rss.is_empty() {
        let (early, late) = (mean(&rss[..third]), mean(&rss[rss.len() - third..]));
        let growth = late - early;
        report.fig("rss_rounds_per_third", third as u64);
        report.fig_f("rss_first_third_mean_mb", early);
        report.fig_f("rss_last_third_mean_mb", late);
        report.fig_f("rss_growth_mb", growth);
        report.fig("rss_growth_within_40mb", growth <= AIM_MB);
        report.notes.push(format!(
            "RSS mean of the first {third} round(s) {early:.1} MB, of the last {third} {late:.1} MB: {growth:+.1} MB, \
             {} the {AIM_MB:.0} MB aim",
            if growth <= AIM_MB { "within" } else { "beyond" }
        ));
    } else {
        report.notes.push("no --server-pid: RSS not measured".into());
    }
    if let Some((Some(kb), _)) = &settled {
        report.fig_f("rss_after_settle_mb", mb(*kb));
    }
    report.check(
        "every round's audits passed",
        !rounds.is_empty() && failed_rounds.is_empty(),
        if rounds.is_empty() {
            "no round ran".to_string()
        } else if failed_rounds.is_empty() {
            format!("{} rounds", rounds.len())
        } else {
            let all: Vec<String> =
                rounds.iter().flat_map(|r| r.failed.iter().map(move |f| format!("round {}: {f}", r.n))).collect();
            format!("rounds {failed_rounds:?} failed: {}", first(&all))
        },
    );

    let actors_json = |a: &Option<BTreeMap<String, f64>>| -> Value {
        a.as_ref().map_or(Value::Null, |m| m.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<Map<_, _>>().into())
    };
    report
        .sections
        .insert("start".into(), json!({ "rss_mb": rss0.map(|kb| round2(mb(kb))), "actors": actors_json(&actors0) }));
    report.sections.insert(
        "rounds".into(),
        rounds
            .iter()
            .map(|r| {
                json!({
                    "round": r.n,
                    "elapsed_s": round2(r.elapsed.as_secs_f64()),
                    "rss_mb": r.rss_kb.map(|kb| round2(mb(kb))),
                    "server_cpu_s": r.cpu.map(|c| round2(c.as_secs_f64())),
                    "audits_passed": r.passed,
                    "failed": r.failed,
                    "actors": actors_json(&r.actors),
                    "scenarios": r.scenarios,
                })
            })
            .collect::<Vec<_>>()
            .into(),
    );
    if let Some((rss, actors)) = &settled {
        report.sections.insert(
            "after_settle".into(),
            json!({ "settle_s": a.settle.as_secs_f64(), "rss_mb": rss.map(|kb| round2(mb(kb))), "actors": actors_json(actors) }),
        );
    }
    report.total_wall = started.elapsed();
    Ok(report)
}

/// Whether the server answers `/healthz` within five tries two seconds apart (one slow
/// answer on a busy machine does not end a soak).
async fn answers(http: &Http, target: &Target) -> bool {
    for attempt in 0..5 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        if reach(http, target, false, "server").await.is_ok() {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_actors_are_read_by_kind() {
        let page = "# HELP boxoffice_actors_live Actors alive\n# TYPE boxoffice_actors_live gauge\n\
                    boxoffice_actors_live{kind=\"wallet\"} 12\nboxoffice_actors_live{kind=\"room\",shard=\"1\"} 3\n\
                    boxoffice_actors_live{kind=\"room\",shard=\"2\"} 4\nboxoffice_actors_live_peak{kind=\"room\"} 9\n\
                    boxoffice_actors_livelier 1\nboxoffice_queue_active 5\n";
        let m = actors_live(page);
        assert_eq!(m.get("wallet"), Some(&12.0));
        assert_eq!(m.get("room"), Some(&7.0));
        assert_eq!(m.get("peak:room"), Some(&9.0));
        assert_eq!(m.len(), 3, "{m:?}");
        assert!(actors_live("boxoffice_queue_active 5\n").is_empty());
        assert_eq!(show_actors(&Some(m)), "  actors peak:room=9 room=7 wallet=12");
        assert_eq!(show_actors(&Some(BTreeMap::new())), "");
    }

    #[test]
    fn rounds_and_scenarios_take_separate_user_ids() {
        let mut a = Args {
            common: Common {
                url: String::new(),
                secret: String::new(),
                concurrency: 1,
                server_pid: Vec::new(),
                extra_pid: Vec::new(),
                json: false,
                no_progress: true,
                timeout: Duration::ZERO,
                verify_timeout: Duration::ZERO,
                user_base: 0,
                ws_threads: 1,
            },
            duration: Duration::ZERO,
            queue_users: 2000,
            booking_users: 500,
            rooms: 5,
            members: 200,
            chat_duration: Duration::ZERO,
            chat_rate: 1.0,
            settle: Duration::ZERO,
        };
        let l = Layout::new(&a);
        assert_eq!((l.booking, l.chat, l.stride), (3_000, 4_000, 100_000));
        a.queue_users = 150_000;
        let l = Layout::new(&a);
        assert!(l.booking >= 150_003 && l.chat >= l.booking + 503 && l.stride >= l.chat + 1000);
        assert_eq!(l.stride % 100_000, 0);
    }
}
