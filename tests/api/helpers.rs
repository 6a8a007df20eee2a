//! `TestServer` runs the real `boxoffice` binary on 127.0.0.1:0 with a temp data dir;
//! `Api` talks to it; `Buyer` is a user with an active queue token.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const SECRET: &str = "integration-test-secret";

pub struct TestServer {
    pub base: String,
    child: Option<Child>,
    dir: Arc<tempfile::TempDir>,
    env: Vec<(String, String)>,
}

/// Settings for a test server: quick admission unless a test says otherwise.
pub fn fast_queue() -> Vec<(&'static str, &'static str)> {
    vec![("BOXOFFICE_QUEUE_ADMIT_RATE", "1000000"), ("BOXOFFICE_QUEUE_MAX_ACTIVE", "1000000")]
}

impl TestServer {
    pub fn spawn(env: &[(&str, &str)]) -> TestServer {
        let dir = Arc::new(tempfile::tempdir().expect("tempdir"));
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut s = TestServer { base: String::new(), child: None, dir, env };
        s.start();
        s
    }

    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("log file");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_boxoffice"));
        cmd.arg("serve")
            .env("BOXOFFICE_BIND", "127.0.0.1:0")
            .env("BOXOFFICE_DATA_DIR", self.dir.path())
            .env("BOXOFFICE_JWT_SECRET", SECRET)
            .env("BOXOFFICE_WORKERS", "2")
            // The suite plays a few users many times over (races, storms, restarts): the
            // rate limits are off unless a test turns them on (tests/api/limits.rs does).
            .env("BOXOFFICE_RATE_LIMIT", "off")
            // Timer tests move the server's clock (`TestServer::advance`) instead of sleeping.
            .env("BOXOFFICE_CLOCK_ADJUSTABLE", "true")
            .env("RUST_LOG", "info,sled=warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn boxoffice");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = lines.next().expect("the server printed nothing").expect("stdout line");
        let addr = line.rsplit("http://").next().expect("address").trim().to_string();
        assert!(line.contains("listening on"), "unexpected first line: {line}");
        self.base = format!("http://{addr}");
        self.child = Some(child);
    }

    /// What the server has written to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// The server process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running server").id()
    }

    /// The server process's resident memory, in bytes.
    pub fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("/proc status");
        let kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmRSS");
        kb * 1024
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("kill -9");
            c.wait().expect("wait");
        }
    }

    /// SIGTERM and wait for the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("running server");
        let ok = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status().expect("kill -TERM");
        assert!(ok.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = c.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "server did not stop after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Start again on the same data dir with the same settings.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill the server first");
        self.start();
    }

    pub fn api(&self) -> Api {
        Api::new(&self.base)
    }

    /// Move the server's clock forward by `by` (`POST /admin/clock`): every timer whose
    /// deadline that passes fires at once. Returns the server's time after the move (ms
    /// since the epoch). The move lasts until the process ends: a restart reads the wall
    /// clock again.
    pub async fn advance(&self, by: Duration) -> u64 {
        let body = json!({ "advance_ms": u64::try_from(by.as_millis()).expect("ms") });
        let r = self.api().call("POST", "/admin/clock", Some(&admin_jwt(999_999)), &[], Some(body)).await;
        assert_eq!(r.status, 200, "advance the clock: {r:?}");
        r.body["now_ms"].as_u64().expect("now_ms")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// How long a test gives a timer that must not fire after an advance to show that it did
/// (a timer the advance passed fires within milliseconds).
pub const NOTHING_FIRES: Duration = Duration::from_millis(150);

/// How long the tests' tokens last: past any advance of a server's clock a test makes
/// (a day and more for contract T's payment requests), since the server checks `exp` by
/// its own clock.
const TOKEN_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

pub fn jwt(user: u64) -> String {
    boxoffice::auth::mint(SECRET.as_bytes(), user, Some(&format!("buyer{user}")), false, TOKEN_TTL).expect("mint")
}

pub fn admin_jwt(user: u64) -> String {
    boxoffice::auth::mint(SECRET.as_bytes(), user, Some("admin"), true, TOKEN_TTL).expect("mint")
}

#[derive(Clone)]
pub struct Api {
    client: awc::Client,
    base: String,
}

/// A response: status and JSON body (Null when the body is not JSON), and headers.
pub struct Reply {
    pub status: u16,
    pub body: Value,
    /// The body as sent, byte for byte.
    pub raw: actix_web::web::Bytes,
    pub headers: awc::http::header::HeaderMap,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.body)
    }
}

impl Api {
    pub fn new(base: &str) -> Api {
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(120))
            .connector(awc::Connector::new().limit(256).timeout(Duration::from_secs(30)))
            .disable_redirects()
            .finish();
        Api { client, base: base.to_string() }
    }

    /// Send `method path` with a bearer token, extra headers and an optional raw body.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Reply {
        self.raw_bytes(method, path, token, headers, body.map(String::into_bytes)).await
    }

    /// [`Api::raw`] with a body of any bytes (JSON unless `headers` say otherwise).
    pub async fn raw_bytes(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Reply {
        self.try_raw_bytes(method, path, token, headers, body).await.expect("request")
    }

    /// [`Api::call`], or `None` when no answer came (the server went away mid-request).
    pub async fn try_call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Option<Reply> {
        self.try_raw_bytes(method, path, token, headers, body.map(|b| b.to_string().into_bytes())).await
    }

    async fn try_raw_bytes(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Option<Reply> {
        let method = awc::http::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.client.request(method, format!("{}{}", self.base, path));
        if let Some(t) = token {
            req = req.insert_header(("Authorization", format!("Bearer {t}")));
        }
        for (k, v) in headers {
            req = req.insert_header((*k, *v));
        }
        let typed = headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
        let mut res = match body {
            Some(b) if typed => req.send_body(b).await,
            Some(b) => req.insert_header(("Content-Type", "application/json")).send_body(b).await,
            None => req.send().await,
        }
        .ok()?;
        let bytes = res.body().limit(16 << 20).await.ok()?;
        Some(Reply {
            status: res.status().as_u16(),
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            raw: bytes,
            headers: res.headers().clone(),
        })
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Reply {
        self.raw(method, path, token, headers, body.map(|b| b.to_string())).await
    }

    pub async fn get(&self, path: &str, token: &str, headers: &[(&str, &str)]) -> Reply {
        self.call("GET", path, Some(token), headers, None).await
    }
}

/// A user holding an active queue token.
#[derive(Clone)]
pub struct Buyer {
    pub id: u64,
    pub jwt: String,
    pub queue: String,
}

impl Buyer {
    /// Take a queue token and wait until it is active.
    pub async fn enter(api: &Api, id: u64) -> Buyer {
        let jwt = jwt(id);
        let r = api.call("POST", "/waiting/issue", Some(&jwt), &[], Some(json!({ "userId": id }))).await;
        assert_eq!(r.status, 200, "issue: {r:?}");
        let queue = r.body["token"].as_str().expect("token").to_string();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut active = r.body["active"].as_bool() == Some(true);
        while !active {
            assert!(Instant::now() < deadline, "token never became active");
            actix_rt::time::sleep(Duration::from_millis(20)).await;
            let c = api.get("/waiting/check", &jwt, &[("X-Queue-Token", &queue)]).await;
            assert_eq!(c.status, 200, "check: {c:?}");
            active = c.body["active"].as_bool() == Some(true);
        }
        Buyer { id, jwt, queue }
    }

    pub async fn hold(&self, api: &Api, schedule: u64, seat: u64, key: &str) -> Reply {
        let body = json!({ "userId": self.id, "concertId": 1, "scheduleId": schedule, "seatNumber": seat });
        api.call(
            "POST",
            "/reservations",
            Some(&self.jwt),
            &[("X-Queue-Token", &self.queue), ("Idempotency-Key", key)],
            Some(body),
        )
        .await
    }

    pub async fn charge(&self, api: &Api, amount: i64, key: &str) -> Reply {
        let path = format!("/users/{}/charge", self.id);
        api.call(
            "PATCH",
            &path,
            Some(&self.jwt),
            &[("X-Queue-Token", &self.queue), ("Idempotency-Key", key)],
            Some(json!({ "amount": amount })),
        )
        .await
    }

    pub async fn pay(&self, api: &Api, reservation: u64, amount: u64, key: &str) -> Reply {
        let body = json!({ "reservationId": reservation, "amount": amount });
        api.call(
            "POST",
            "/payments",
            Some(&self.jwt),
            &[("X-Queue-Token", &self.queue), ("Idempotency-Key", key)],
            Some(body),
        )
        .await
    }

    pub async fn balance(&self, api: &Api) -> Reply {
        api.get(&format!("/users/{}/amount", self.id), &self.jwt, &[("X-Queue-Token", &self.queue)]).await
    }

    pub async fn seats(&self, api: &Api, schedule: u64) -> Reply {
        api.get(&format!("/concerts/1/schedules/{schedule}/seats"), &self.jwt, &[("X-Queue-Token", &self.queue)]).await
    }

    pub async fn reservation(&self, api: &Api, id: u64) -> Reply {
        api.get(&format!("/reservations/{id}"), &self.jwt, &[]).await
    }
}

/// Seat number -> status, from a seats reply.
pub fn seat_statuses(reply: &Reply) -> Vec<(u64, String)> {
    reply.body["seats"]
        .as_array()
        .expect("seats")
        .iter()
        .map(|s| (s["seatNumber"].as_u64().expect("seatNumber"), s["status"].as_str().expect("status").to_string()))
        .collect()
}

/// Assert a contract Q error body with this status.
pub fn assert_q_error(r: &Reply, status: u16) {
    assert_eq!(r.status, status, "{r:?}");
    assert_eq!(r.body["status"].as_u64(), Some(status as u64), "{r:?}");
    assert!(r.body["code"].is_string() && r.body["message"].is_string(), "{r:?}");
}
