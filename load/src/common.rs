//! What every scenario shares: the common flags, the loopback-only target, the HTTP
//! client (awc, on the main thread's actix runtime), JWT minting and small helpers.

use anyhow::{anyhow, bail, Context as _};
use awc::http::Method;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Flags every scenario takes.
#[derive(clap::Args, Debug, Clone)]
pub struct Common {
    /// The running server: http://HOST:PORT on a loopback address only (127.0.0.0/8,
    /// localhost or [::1]).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The server's HS256 secret; the tool mints its own JWTs with it.
    #[arg(long, env = "BOXOFFICE_JWT_SECRET", hide_env_values = true)]
    pub secret: String,
    /// Parallel HTTP requests (users in flight, senders in flight) and parallel WebSocket
    /// handshakes.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// The server's process id: report its CPU time per operation and its RSS, read from
    /// /proc/PID/stat and /proc/PID/status. Several (repeated or comma-separated: a core
    /// and its edges) are one server: their CPU times and RSS are summed, and each one's
    /// is shown too.
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// A process measured beside the server but not counted in it (e.g. nats-server
    /// between a core and its edges): its CPU time and RSS on lines of their own.
    /// Repeated or comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub extra_pid: Vec<u32>,
    /// Print one JSON object on stdout instead of the summary tables.
    #[arg(long)]
    pub json: bool,
    /// No progress bar on stderr.
    #[arg(long)]
    pub no_progress: bool,
    /// The longest the load phase may run; it then stops by itself (what was started is
    /// left to finish, within a short grace).
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// The longest the end-of-run checks may take.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub verify_timeout: Duration,
    /// The first user id of the run's virtual users; give each run its own range so that
    /// runs against one server do not share wallets, queue tokens or rooms.
    #[arg(long, default_value_t = 1_000_000)]
    pub user_base: u64,
    /// Threads of the WebSocket side (chat-fanout receivers, connections); the HTTP side
    /// runs on the main thread.
    #[arg(long, default_value_t = 1)]
    pub ws_threads: usize,
}

/// The server to load, checked to be on this machine.
#[derive(Debug, Clone)]
pub struct Target {
    /// `http://host:port`, without a trailing slash.
    pub base: String,
    /// `host:port` as written in URLs and the Host header.
    pub authority: String,
    /// The address to connect raw sockets to.
    pub addr: SocketAddr,
}

impl Target {
    /// Accept `http://` URLs whose host is a loopback address or `localhost`; refuse the rest.
    pub fn parse(url: &str) -> anyhow::Result<Target> {
        Target::parse_as("--url", url)
    }

    /// [`Target::parse`] for the flag `flag`, which the errors name.
    pub fn parse_as(flag: &str, url: &str) -> anyhow::Result<Target> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| anyhow!("{flag} must be http://HOST:PORT on a loopback address, not {url:?}"))?;
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if authority.is_empty() || authority.contains('@') {
            bail!("{flag} has no usable host: {url:?}");
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| anyhow!("bad IPv6 host in {url:?}"))?;
            let port = after.strip_prefix(':').unwrap_or("80");
            (h.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p),
                None => (authority.to_string(), "80"),
            }
        };
        let port: u16 = port.parse().with_context(|| format!("bad port in {url:?}"))?;
        let ip: IpAddr = if host.eq_ignore_ascii_case("localhost") {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            host.parse().map_err(|_| anyhow!("{flag} host must be a loopback IP address or localhost, not {host:?}"))?
        };
        if !ip.is_loopback() {
            bail!("refusing to load {ip}: this tool only drives servers on loopback addresses (127.0.0.0/8, ::1)");
        }
        let addr = SocketAddr::new(ip, port);
        let authority = match ip {
            IpAddr::V4(v4) => format!("{v4}:{port}"),
            IpAddr::V6(v6) => format!("[{v6}]:{port}"),
        };
        Ok(Target { base: format!("http://{authority}"), authority, addr })
    }
}

/// Check that `target` answers before loading it: a boxoffice server (`what` names it in
/// the error) with `GET /healthz` 200 through `http`, a bare peer with a TCP connect.
pub async fn reach(http: &Http, target: &Target, peer: bool, what: &str) -> anyhow::Result<()> {
    if peer {
        // No REST on a peer: a TCP connect is all there is to check.
        let connect = tokio::net::TcpStream::connect(target.addr);
        match tokio::time::timeout(Duration::from_secs(10), connect).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => bail!("cannot reach the {what} at {}: {e}", target.base),
            Err(_) => bail!("cannot reach the {what} at {}: connect timed out", target.base),
        }
    } else {
        match http.req(Method::GET, "/healthz", None, &[], None).await {
            Ok(r) if r.status == 200 => Ok(()),
            Ok(r) => bail!("GET {}/healthz answered {}", target.base, r.snippet()),
            Err(e) => bail!("cannot reach the {what} at {}: {e}", target.base),
        }
    }
}

/// Microseconds since the Unix epoch (the clock the chat messages carry).
pub fn unix_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// A short random id for this run: it goes into idempotency keys, titles and ids.
pub fn run_id() -> String {
    use rand::Rng;
    let n: u32 = rand::thread_rng().gen();
    format!("{n:08x}")
}

/// Mint an HS256 JWT with the library's own minting.
pub fn jwt(secret: &[u8], user: u64, admin: bool) -> String {
    let name = if admin { "load-admin".to_string() } else { format!("load{user}") };
    boxoffice::auth::mint(secret, user, Some(&name), admin, Duration::from_secs(4 * 3600)).expect("minting a JWT")
}

/// A reply: status and body.
pub struct Resp {
    pub status: u16,
    pub body: Bytes,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn parse<T: DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The body as text, cut short, for error details.
    pub fn snippet(&self) -> String {
        let s = String::from_utf8_lossy(&self.body);
        let s: String = s.chars().take(160).collect();
        format!("{} {}", self.status, s)
    }
}

/// The HTTP client of the main thread.
#[derive(Clone)]
pub struct Http {
    client: awc::Client,
    base: String,
}

/// How long one HTTP request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl Http {
    pub fn new(target: &Target, pool: usize) -> Http {
        let connector = awc::Connector::new().limit(pool.max(1) + 16).timeout(Duration::from_secs(10));
        let client = awc::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connector(connector)
            .disable_redirects()
            .no_default_headers()
            .finish();
        Http { client, base: target.base.clone() }
    }

    /// One request. `Err` is a transport failure (no answer); an HTTP error status is `Ok`.
    pub async fn req(
        &self,
        method: Method,
        path: &str,
        jwt: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> Result<Resp, String> {
        let mut req = self.client.request(method, format!("{}{}", self.base, path));
        if let Some(t) = jwt {
            req = req.insert_header(("Authorization", format!("Bearer {t}")));
        }
        for (k, v) in headers {
            req = req.insert_header((*k, *v));
        }
        let sent = match body {
            Some(b) => {
                req.insert_header(("Content-Type", "application/json"))
                    .send_body(serde_json::to_vec(b).map_err(|e| e.to_string())?)
                    .await
            }
            None => req.send().await,
        };
        let mut res = sent.map_err(|e| format!("transport: {e}"))?;
        let body = res.body().limit(256 << 20).await.map_err(|e| format!("body: {e}"))?;
        Ok(Resp { status: res.status().as_u16(), body })
    }

    /// The server's group-commit counters from `/healthz`: (flushes, durable answers).
    pub async fn store_counters(&self) -> Option<(u64, u64)> {
        let r = self.req(Method::GET, "/healthz", None, &[], None).await.ok()?;
        let v = r.json();
        Some((v["store"]["flushes"].as_u64()?, v["store"]["durableWaiters"].as_u64()?))
    }

    /// A request that is safe to repeat (an idempotent read, or a write with an
    /// `Idempotency-Key`): repeated up to `retries` times on a transport failure. Returns
    /// the reply and how long the successful (or last) attempt took.
    pub async fn req_retry(
        &self,
        method: Method,
        path: &str,
        jwt: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&Value>,
        retries: u32,
    ) -> (Result<Resp, String>, Duration) {
        let mut attempt = 0;
        loop {
            let t = Instant::now();
            let r = self.req(method.clone(), path, jwt, headers, body).await;
            let took = t.elapsed();
            match r {
                Err(_) if attempt < retries => {
                    attempt += 1;
                    actix_rt::time::sleep(Duration::from_millis(50 * attempt as u64)).await;
                }
                other => return (other, took),
            }
        }
    }
}

/// Take a queue token for `user` and wait until it is active. Returns the token and how
/// long admission took.
pub async fn enter_queue(
    http: &Http,
    user: u64,
    jwt: &str,
    poll: Duration,
    deadline: Instant,
) -> Result<(String, Duration), String> {
    #[derive(serde::Deserialize)]
    struct Token {
        token: String,
        active: bool,
    }
    let start = Instant::now();
    let body = serde_json::json!({ "userId": user });
    let (r, _) = http.req_retry(Method::POST, "/waiting/issue", Some(jwt), &[], Some(&body), 2).await;
    let r = r?;
    if r.status != 200 {
        return Err(format!("POST /waiting/issue: {}", r.snippet()));
    }
    let t: Token = r.parse().ok_or_else(|| format!("POST /waiting/issue: unexpected body {}", r.snippet()))?;
    let mut active = t.active;
    while !active {
        if Instant::now() >= deadline {
            return Err("the queue token did not become active in time (start the server with high \
                        BOXOFFICE_QUEUE_ADMIT_RATE and BOXOFFICE_QUEUE_MAX_ACTIVE)"
                .into());
        }
        actix_rt::time::sleep(poll).await;
        let (r, _) =
            http.req_retry(Method::GET, "/waiting/check", Some(jwt), &[("X-Queue-Token", &t.token)], None, 2).await;
        let r = r?;
        if r.status != 200 {
            return Err(format!("GET /waiting/check: {}", r.snippet()));
        }
        active = r.json()["active"].as_bool() == Some(true);
    }
    Ok((t.token, start.elapsed()))
}

/// Run `f` over `items` with at most `concurrency` in flight, on the current thread, and
/// collect the outputs in order.
pub async fn map_concurrent<T, O, F, Fut>(items: Vec<T>, concurrency: usize, f: F) -> Vec<O>
where
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = O>,
{
    use futures_util::StreamExt;
    futures_util::stream::iter(items.into_iter().map(f)).buffered(concurrency.max(1)).collect().await
}

/// Keep the first few distinct error texts with their counts.
#[derive(Default, Debug, Clone)]
pub struct ErrorTally {
    pub counts: std::collections::BTreeMap<String, u64>,
}

impl ErrorTally {
    pub fn add(&mut self, what: impl Into<String>) {
        let what = what.into();
        if self.counts.len() < 20 || self.counts.contains_key(&what) {
            *self.counts.entry(what).or_insert(0) += 1;
        } else {
            *self.counts.entry("(other errors)".into()).or_insert(0) += 1;
        }
    }

    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }

    pub fn notes(&self, what: &str) -> Vec<String> {
        self.counts.iter().map(|(k, v)| format!("{what}: {v} x {k}")).collect()
    }
}

/// `IpAddr` list of `--addresses`, or the automatic spread for many connections.
pub fn source_addresses(given: &[IpAddr], count: usize, per_address: usize) -> anyhow::Result<Vec<IpAddr>> {
    for a in given {
        if !a.is_loopback() {
            bail!("--addresses must be loopback addresses, not {a}");
        }
    }
    if !given.is_empty() {
        return Ok(given.to_vec());
    }
    if count <= per_address {
        return Ok(Vec::new());
    }
    let n = count.div_ceil(per_address);
    if n > 250 {
        bail!("too many connections to spread over 127.0.0.x");
    }
    Ok((1..=n as u8).map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets_are_accepted() {
        assert_eq!(Target::parse("http://127.0.0.1:8080").expect("ok").authority, "127.0.0.1:8080");
        assert_eq!(Target::parse("http://localhost:9000/").expect("ok").base, "http://127.0.0.1:9000");
        assert_eq!(Target::parse("http://127.3.4.5:1").expect("ok").addr.port(), 1);
        assert_eq!(Target::parse("http://[::1]:8080").expect("ok").authority, "[::1]:8080");
        assert!(Target::parse("http://10.0.0.1:8080").is_err());
        assert!(Target::parse("http://example.com:8080").is_err());
        assert!(Target::parse("http://192.168.1.2").is_err());
        assert!(Target::parse("https://127.0.0.1:8080").is_err());
        assert!(Target::parse("http://[2001:db8::1]:80").is_err());
        assert!(Target::parse("http://user@127.0.0.1:80").is_err());
        let e = Target::parse_as("--ws-url", "ws://127.0.0.1:8081").expect_err("not http");
        assert!(e.to_string().starts_with("--ws-url must be"), "{e}");
    }

    #[test]
    fn many_connections_spread_over_addresses() {
        assert!(source_addresses(&[], 1000, 25_000).expect("ok").is_empty());
        assert_eq!(source_addresses(&[], 60_000, 25_000).expect("ok").len(), 3);
        assert!(source_addresses(&["10.0.0.1".parse().expect("ip")], 10, 25_000).is_err());
    }
}
