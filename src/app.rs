//! Start-up and shutdown: open the store, bring the actors back, bind, serve until
//! SIGINT or SIGTERM; then drain: stop accepting, close every WebSocket with 1001 (SignalR
//! clients get a Close message with `allowReconnect: true` first), let requests finish for
//! at most `BOXOFFICE_SHUTDOWN_TIMEOUT`, flush, exit 0.
//!
//! One binary, two roles (see [`crate::cluster`]): a core (the default) opens the store and
//! serves everything; with `BOXOFFICE_NATS_URL` it also serves edges. An edge opens no store
//! and serves the WebSocket endpoints, `/healthz` and `/metrics`, reaching the core over
//! NATS.

use crate::actors::hub::Hub;
use crate::actors::Registry;
use crate::auth::{load_secret, Verifier};
use crate::cluster::{edge::Edge, Backend, Subjects};
use crate::config::{Role, Settings};
use crate::http::{self, AppState, Realtime};
use crate::store::Store;
use actix_web::{web, App, HttpResponse};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

/// How many users' last profile hash the HTTP edge remembers (see `AppState::noted`): the
/// recently active ones; a user forgotten is noted to the directory once more.
const NOTED_USERS: usize = 20_000;

pub struct Application {
    server: actix_server::Server,
    /// `/metrics` on `BOXOFFICE_METRICS_BIND`, if set.
    metrics: Option<(actix_web::dev::Server, SocketAddr)>,
    addr: SocketAddr,
    /// The core's store (an edge has none).
    store: Option<Store>,
    hub: Hub,
    shutdown_timeout: std::time::Duration,
}

impl Application {
    /// Open everything and bind the listener (port 0 picks a free port).
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        let settings = settings.sanitize();
        // Before anything counts (the store's journal replay does).
        crate::observe::install();
        let has_secret = settings.jwt_secret.as_ref().is_some_and(|s| !s.is_empty())
            || settings.data_dir.join("jwt_secret").exists();
        if settings.role == Role::Edge && !has_secret {
            anyhow::bail!("an edge checks the core's tokens: set BOXOFFICE_JWT_SECRET to the core's secret");
        }
        if settings.role == Role::Core {
            std::fs::create_dir_all(&settings.data_dir)?;
        }
        if settings.clock_adjustable {
            tracing::warn!(
                "BOXOFFICE_CLOCK_ADJUSTABLE: admins may move this server's clock (POST /admin/clock); for tests only"
            );
        }
        let secret = load_secret(&settings)?;
        let public_key = match &settings.jwt_public_key {
            Some(p) => Some(std::fs::read(p).map_err(|e| anyhow::anyhow!("reading {}: {e}", p.display()))?),
            None => None,
        };
        let verifier = || Verifier::new(&secret, public_key.as_deref());
        let links = http::signed::LinkSigner::new(&secret);
        let hub = Hub::default();
        let subjects = Subjects::new(&settings.nats_prefix);
        let (store, state, backend, queue_node) = match settings.role {
            Role::Core => {
                let store = Store::open_with(&settings.data_dir, settings.commit_window, settings.store_cache_bytes)?;
                // SignalR connections of the process before, resumable for a while.
                let parked = http::trade::signalr::parking::load(&store, settings.signalr_reconnect_window)?;
                if parked > 0 {
                    tracing::info!(parked, "SignalR connections of the last run can be resumed");
                }
                let registry = match &settings.nats_url {
                    Some(url) => {
                        let (bridge, outbound) = crate::cluster::core::Bridge::new(hub.clone());
                        let registry =
                            Registry::start_with(store.clone(), settings.clone(), hub.clone(), Arc::new(bridge))
                                .await?;
                        crate::cluster::core::start(registry.clone(), url.clone(), subjects, outbound);
                        registry
                    }
                    None => {
                        Registry::start_with(store.clone(), settings.clone(), hub.clone(), Arc::new(hub.clone()))
                            .await?
                    }
                };
                let state = web::Data::new(AppState {
                    registry: registry.clone(),
                    verifier: verifier()?,
                    settings: settings.clone(),
                    links: links.clone(),
                    noted: quick_cache::sync::Cache::new(NOTED_USERS),
                });
                let queue_node =
                    http::QueueNode { gate: registry.queue_gate().clone(), watch: registry.queue_watch().clone() };
                (Some(store), Some(state), Backend::Local(registry), queue_node)
            }
            Role::Edge => {
                let Some(url) = &settings.nats_url else {
                    anyhow::bail!("an edge needs the NATS server its core uses: set BOXOFFICE_NATS_URL (--nats)");
                };
                let edge = Edge::start(url, subjects, hub.clone()).await?;
                tracing::info!(%url, "edge: holding WebSockets for the core over NATS");
                // Other edges take over its SignalR connections through it.
                http::trade::signalr::handover::serve(&edge);
                // The queue's checks and sockets are answered here, from a copy of the
                // core's admission state.
                use crate::actors::waiting_queue::{watch::QueueWatch, QueueGate, TicketKey};
                use actix::Actor;
                let gate = QueueGate::replica(TicketKey::new(&secret));
                edge.replicate_queue(gate.clone());
                let watch = QueueWatch::new(gate.clone()).start();
                (None, None, Backend::Remote(edge), http::QueueNode { gate, watch })
            }
        };
        let realtime = web::Data::new(Realtime {
            backend,
            verifier: verifier()?,
            settings: settings.clone(),
            links: links.clone(),
            limits: http::limits::Limits::from_settings(&settings),
            queue: queue_node,
        });
        let edge = state.is_none();
        http::ops::start_sampler();
        let listener = TcpListener::bind(&settings.bind)?;
        let addr = listener.local_addr()?;
        let app = move || {
            App::new()
                // Fair shares: a request over its rate limit is 429 before anything else
                // runs (and is still counted and logged by the middleware around it).
                .wrap_fn(http::limits::guard)
                // Every request's id, access line and metrics.
                .wrap_fn(http::ops::observe_requests)
                // A query string that is not UTF-8 is 400 before any handler reads it.
                .wrap_fn(|req, srv| {
                    use actix_web::dev::Service;
                    use futures_util::future::{ready, Either};
                    match http::contract::bad_query(req.request()) {
                        Some(res) => Either::Left(ready(Err(actix_web::error::InternalError::from_response(
                            "the query string is not UTF-8",
                            res,
                        )
                        .into()))),
                        None => Either::Right(srv.call(req)),
                    }
                })
                .app_data(web::PayloadConfig::new(1 << 20))
                .app_data(realtime.clone())
                .configure(|cfg| match &state {
                    Some(state) => {
                        cfg.app_data(state.clone());
                        http::routes(cfg, &state.settings)
                    }
                    None => edge_routes(cfg),
                })
                .default_service(web::to(move |req: actix_web::HttpRequest| async move {
                    if edge {
                        edge_elsewhere(req).await
                    } else {
                        http::contract::not_found(req).await
                    }
                }))
        };
        // actix-web's HttpServer, plus actix-http's upgrade hook: WebSockets leave the
        // HTTP/1 dispatcher once their handshake is answered (see `http::upgrade`).
        let server = actix_server::Server::build()
            .workers(settings.workers)
            .backlog(4096)
            // Signals are ours: run_until_stopped drains before the server stops.
            .disable_signals()
            // Half of the drain for requests in flight; the first half is the WebSockets'.
            .shutdown_timeout((settings.shutdown_timeout.as_secs() / 2).max(1))
            .listen("boxoffice", listener, move || {
                let app = app.clone();
                actix_http::HttpService::build()
                    .keep_alive(actix_http::KeepAlive::default())
                    .client_request_timeout(std::time::Duration::from_secs(5))
                    .client_disconnect_timeout(std::time::Duration::from_secs(1))
                    .local_addr(addr)
                    .upgrade(http::upgrade::upgrades(app.clone()))
                    .finish(actix_service::map_config(
                        actix_service::ServiceFactoryExt::map_err(
                            actix_service::IntoServiceFactory::into_factory(app()),
                            |e: actix_web::Error| e.error_response(),
                        ),
                        |()| actix_web::dev::AppConfig::default(),
                    ))
                    .tcp()
            })?
            .run();
        let metrics = match &settings.metrics_bind {
            Some(bind) => {
                let listener = TcpListener::bind(bind)?;
                let addr = listener.local_addr()?;
                let server =
                    actix_web::HttpServer::new(|| App::new().route("/metrics", web::get().to(http::ops::metrics)))
                        .workers(1)
                        .disable_signals()
                        .listen(listener)?
                        .run();
                tracing::info!(%addr, "serving /metrics");
                Some((server, addr))
            }
            None => None,
        };
        let shutdown_timeout = settings.shutdown_timeout;
        Ok(Application { server, metrics, addr, store, hub, shutdown_timeout })
    }

    /// Where `BOXOFFICE_METRICS_BIND` serves `/metrics`, if it does.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(_, a)| *a)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serve until SIGTERM or SIGINT, then drain (see the module's doc) and make
    /// everything durable.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Application { server, metrics, store, hub, shutdown_timeout, .. } = self;
        let handle = server.handle();
        let metrics_handle = metrics.as_ref().map(|(s, _)| s.handle());
        if let Some((m, _)) = metrics {
            actix_rt::spawn(m);
        }
        // The server runs as its own task: it must keep polling to act on pause and stop.
        let mut server = actix_rt::spawn(server);
        tokio::select! {
            r = &mut server => r??,
            signal = stop_signal() => {
                let started = std::time::Instant::now();
                tracing::info!(signal, sessions = hub.open_sessions(), "draining: no new connections; closing WebSockets with 1001");
                handle.pause().await;
                hub.going_away();
                // Sessions close once their goodbye is written (a stalled one after its grace).
                while hub.open_sessions() > 0 && started.elapsed() < shutdown_timeout / 2 {
                    actix_rt::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                // Requests in flight finish; the workers stop after at most the other half.
                handle.stop(true).await;
                if let Some(m) = metrics_handle {
                    m.stop(true).await;
                }
                (&mut server).await??;
                tracing::info!(took_ms = started.elapsed().as_millis() as u64, "drained");
            }
        }
        if let Some(store) = store {
            store.flush_blocking()?;
            tracing::info!("stopped; everything is on disk");
        }
        Ok(())
    }
}

/// An edge's routes: the WebSocket endpoints, the queue's check, its health and its metrics.
fn edge_routes(cfg: &mut web::ServiceConfig) {
    http::chat::ws::routes(cfg);
    http::trade::signalr::routes(cfg);
    http::queue::socket::routes(cfg);
    cfg.route("/waiting/check", web::get().to(http::queue::waiting::check));
    cfg.route("/healthz", web::get().to(edge_health)).route("/metrics", web::get().to(http::ops::admin_metrics));
}

/// An edge's health: 200 while it is connected to NATS and hears the core, else 503 (a
/// load balancer sends new WebSockets elsewhere).
async fn edge_health(state: web::Data<Realtime>) -> HttpResponse {
    let Backend::Remote(edge) = &state.backend else { return HttpResponse::Ok().finish() };
    let body = serde_json::json!({
        "status": if edge.healthy() { "ok" } else { "unavailable" },
        "role": "edge",
        "nats": if edge.connected() { "connected" } else { "disconnected" },
        "sessions": edge.hub().open_sessions(),
    });
    if edge.healthy() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Anything but a WebSocket on an edge: 404, in the contract's shape, saying where to go.
async fn edge_elsewhere(req: actix_web::HttpRequest) -> HttpResponse {
    let message = "This is an edge node: it serves WebSockets only; send REST requests to the core.";
    http::contract::refusal(req.path(), actix_web::http::StatusCode::NOT_FOUND, "NOT_FOUND", message.into())
}

/// The first SIGTERM or SIGINT (Ctrl-C).
async fn stop_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
            std::future::pending::<()>().await;
            return "none";
        };
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "ctrl-c"
    }
}
