//! The core's side of NATS: it publishes every event once to its group's subject
//! ([`Bridge`]), answers the edges' requests with its actors, keeps each edge's online
//! users, and says hello.
//!
//! Events leave through a bounded queue: a publish never waits for NATS, and while NATS is
//! away at most [`OUTBOUND_EVENTS`] wait; past that they are dropped and counted, and the
//! hello's epoch grows so that every edge restarts its sessions (which then catch up from
//! the store). REST and the core's own sockets go on as if alone.

use super::{answer, decode, encode, encoded, Answered, Hello, Presence, Request, Stamp, Subjects};
use super::{EDGE_STALE, HELLO_EVERY};
use super::{OUTBOUND_EVENTS, SNAPSHOT_EVERY};
use crate::actors::hub::{ChatEvent, Event, Fanout, Group, Hub, Subscriber};
use crate::actors::room::ChatError;
use crate::actors::Registry;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;

/// The core's [`Fanout`]: this process's hub, and NATS for the edges.
pub struct Bridge {
    hub: Hub,
    out: mpsc::Sender<Queued>,
    epoch: Arc<AtomicU64>,
}

/// An event on its way to NATS: its group, its wire form, and the epoch it was queued in.
type Queued = (Group, bytes::Bytes, u64);

/// What the NATS side of the core takes over from [`Bridge::new`].
pub struct Outbound {
    events: mpsc::Receiver<Queued>,
    epoch: Arc<AtomicU64>,
    boot: u64,
}

impl Bridge {
    pub fn new(hub: Hub) -> (Bridge, Outbound) {
        let (out, events) = mpsc::channel(OUTBOUND_EVENTS);
        let epoch = Arc::new(AtomicU64::new(0));
        (Bridge { hub, out, epoch: epoch.clone() }, Outbound { events, epoch, boot: rand::random() })
    }
}

impl Fanout for Bridge {
    fn publish(&self, group: Group, event: &Arc<Event>) {
        self.hub.publish(group, event);
        let epoch = self.epoch.load(Ordering::Relaxed);
        if self.out.try_send((group, encoded(event), epoch)).is_err() {
            crate::observe::nats_dropped();
            // NATS is away or far behind. A message can be caught up on: the edges are
            // told to start over (their clients reconnect with `since=`). Other events
            // (typing, presence, edits) are not replayed by a restart either; they are
            // dropped and counted.
            if matches!(event.kind, ChatEvent::Message(_)) {
                self.epoch.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    fn join(&self, group: Group, sub: Subscriber) {
        self.hub.join(group, sub)
    }
    fn leave(&self, group: Group, session: u64) {
        self.hub.leave(group, session)
    }
}

/// Connect to NATS (in the background, retrying for ever) and serve the edges, on a
/// thread of its own.
pub fn start(registry: Registry, url: String, subjects: Subjects, outbound: Outbound) {
    let arbiter = actix::Arbiter::new();
    arbiter.spawn(async move {
        let Outbound { mut events, epoch, boot } = outbound;
        let on_event = epoch.clone();
        let options = async_nats::ConnectOptions::new()
            .name("boxoffice-core")
            .retry_on_initial_connect()
            .max_reconnects(None)
            .event_callback(move |e| {
                let epoch = on_event.clone();
                async move {
                    tracing::info!(event = %e, "NATS");
                    if matches!(e, async_nats::Event::Disconnected) {
                        // What was on its way may be lost: the edges start over.
                        epoch.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        let client = match options.connect(&url).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(%url, error = %e, "cannot use NATS; serving alone");
                return;
            }
        };
        tracing::info!(%url, "core: publishing to NATS for edges");
        // Where the publisher's subjects stand, asked by edges (`Request::Positions`).
        let (positions, mut asked_positions) = mpsc::unbounded_channel::<PositionsAsked>();
        let publisher = {
            let epoch = epoch.clone();
            let client = client.clone();
            let subjects = subjects.clone();
            async move {
                // Each subject's last event number, and the round it was last used in: a
                // subject idle for a round (a minute or more) is forgotten, and its next
                // event says `prev: 0` (by then the hello's epoch has covered any loss).
                let (mut seq, mut round) = (0u64, 0u64);
                let mut last: HashMap<Group, (u64, u64)> = HashMap::new();
                let mut prune = tokio::time::interval(FORGET_SUBJECTS_AFTER);
                loop {
                    tokio::select! {
                        queued = events.recv() => {
                            let Some((group, event, epoch)) = queued else { return };
                            seq += 1;
                            let prev = last.insert(group, (seq, round)).map_or(0, |(s, _)| s);
                            let wire = Stamp { boot, epoch, seq, prev }.before(&event);
                            if client.publish(subjects.group(group), wire).await.is_err() {
                                crate::observe::nats_dropped();
                            }
                        }
                        _ = prune.tick() => {
                            last.retain(|_, (_, used)| *used == round);
                            round += 1;
                        }
                        // Between two publishes: every event stamped up to the answer is
                        // on its way to NATS, ahead of the answer itself.
                        Some((groups, answer)) = asked_positions.recv() => {
                            let at = groups.iter().map(|g| last.get(g).map_or(0, |(s, _)| *s)).collect();
                            let hello = Hello { boot, epoch: epoch.load(Ordering::Relaxed) };
                            let _ = answer.send(Answered::Positions { hello, at });
                        }
                    }
                }
            }
        };
        actix::spawn(publisher);
        let hello = {
            let client = client.clone();
            let subject = subjects.hello();
            async move {
                let mut tick = tokio::time::interval(HELLO_EVERY);
                loop {
                    tick.tick().await;
                    let hello = Hello { boot, epoch: epoch.load(Ordering::Relaxed) };
                    let _ = client.publish(subject.clone(), encode(&hello)).await;
                }
            }
        };
        actix::spawn(hello);
        actix::spawn(publish_admissions(client.clone(), registry.clone(), subjects.clone(), boot));
        actix::spawn(serve_requests(client.clone(), registry.clone(), subjects.request(), positions));
        actix::spawn(track_presence(client, registry, subjects.presence()));
    });
    // The arbiter's thread runs for the life of the process.
    std::mem::forget(arbiter);
}

/// Publish the queue's admission deltas, and answer the edges' snapshot requests. The
/// work per tick is one delta, whatever the number of waiting clients.
async fn publish_admissions(client: async_nats::Client, registry: Registry, subjects: Subjects, boot: u64) {
    let gate = registry.queue_gate().clone();
    gate.publish_changes();
    let mut snapshots = match client.subscribe(subjects.queue_snapshot()).await {
        Ok(s) => s,
        Err(e) => return tracing::error!(error = %e, "core: cannot serve the queue's state to edges"),
    };
    let subject = subjects.queue_admission();
    let mut tick = tokio::time::interval(super::QUEUE_TICK);
    let mut last = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let heartbeat = last.elapsed() >= super::QUEUE_HEARTBEAT;
                if let Some(delta) = gate.take_delta(boot, heartbeat) {
                    last = Instant::now();
                    let _ = client.publish(subject.clone(), encode(&delta)).await;
                }
            }
            asked = snapshots.next() => {
                let Some(msg) = asked else { return };
                let Some(reply) = msg.reply else { continue };
                crate::observe::nats_request("queue_snapshot");
                let _ = client.publish(reply, encode(&gate.snapshot(boot))).await;
            }
        }
    }
}

/// A [`Request::Positions`] on its way to the publisher, and where its answer goes.
type PositionsAsked = (Vec<Group>, tokio::sync::oneshot::Sender<Answered>);

/// Answer every request with the actors. Each is handed to its room in arrival order (so
/// one socket's messages keep theirs); the answers go back as they come. Positions are
/// the publisher's: it answers between two publishes, so the answer leaves after every
/// event it counts.
async fn serve_requests(
    client: async_nats::Client,
    registry: Registry,
    subject: String,
    positions: mpsc::UnboundedSender<PositionsAsked>,
) {
    let mut requests = match client.subscribe(subject).await {
        Ok(s) => s,
        Err(e) => return tracing::error!(error = %e, "core: cannot take requests from edges"),
    };
    while let Some(msg) = requests.next().await {
        let Some(reply) = msg.reply else { continue };
        let request = match decode::<Request>(&msg.payload) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "core: an edge's request does not decode");
                continue;
            }
        };
        crate::observe::nats_request(kind(&request));
        if let Request::Positions { groups } = request {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let _ = positions.send((groups, tx));
            let client = client.clone();
            actix::spawn(async move {
                let a: super::Answer =
                    rx.await.map_err(|_| ChatError::Unavailable("the core's publisher has stopped".into()));
                let _ = client.publish(reply, encode(&a)).await;
            });
            continue;
        }
        // Polled once here, so the room's mailbox has it before the next request.
        let mut answering = Box::pin(answer_owned(registry.clone(), request));
        let client = client.clone();
        let first = std::future::poll_fn(|cx| std::task::Poll::Ready(answering.as_mut().poll(cx))).await;
        match first {
            std::task::Poll::Ready(a) => {
                let _ = client.publish(reply, encode(&a)).await;
            }
            std::task::Poll::Pending => {
                actix::spawn(async move {
                    let a = answering.await;
                    let _ = client.publish(reply, encode(&a)).await;
                });
            }
        }
    }
}

/// How long the publisher remembers an idle subject's last event number.
const FORGET_SUBJECTS_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

async fn answer_owned(registry: Registry, request: Request) -> super::Answer {
    answer(&registry, request).await
}

fn kind(r: &Request) -> &'static str {
    match r {
        Request::Access { .. } => "access",
        Request::CatchUp { .. } => "catch_up",
        Request::Post { .. } => "post",
        Request::Typing { .. } => "typing",
        Request::Read { .. } => "read",
        Request::Positions { .. } => "positions",
    }
}

/// One edge's online users, as it last said.
struct EdgeUsers {
    users: HashMap<u64, String>,
    heard: Instant,
}

/// Who is online on which edge. A user counts as one connection per edge they are on (in
/// the hub's presence counts, beside the core's own sockets), so the first anywhere
/// announces them online and the last anywhere offline. An edge silent for
/// [`EDGE_STALE`] is gone, and so are its users.
async fn track_presence(client: async_nats::Client, registry: Registry, subject: String) {
    let mut reports = match client.subscribe(subject).await {
        Ok(s) => s,
        Err(e) => return tracing::error!(error = %e, "core: cannot hear edges' presence"),
    };
    let mut edges: HashMap<u64, EdgeUsers> = HashMap::new();
    let mut sweep = tokio::time::interval(SNAPSHOT_EVERY);
    let online = |user: u64, name: &str| {
        if registry.hub().connected(user) {
            registry.announce_presence(user, name, true);
        }
    };
    let offline = |user: u64, name: &str| {
        if registry.hub().disconnected(user) {
            registry.announce_presence(user, name, false);
        }
    };
    loop {
        tokio::select! {
            report = reports.next() => {
                let Some(report) = report else { return };
                let report = match decode::<Presence>(&report.payload) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(error = %e, "core: an edge's presence report does not decode");
                        continue;
                    }
                };
                let edge = match &report {
                    Presence::Online { edge, .. } | Presence::Offline { edge, .. } | Presence::Snapshot { edge, .. } => *edge,
                };
                let known = edges.entry(edge).or_insert_with(|| {
                    tracing::info!(edge, "core: an edge joined");
                    EdgeUsers { users: HashMap::new(), heard: Instant::now() }
                });
                known.heard = Instant::now();
                match report {
                    Presence::Online { user, name, .. } => {
                        if known.users.insert(user, name.clone()).is_none() {
                            online(user, &name);
                        }
                    }
                    Presence::Offline { user, name, .. } => {
                        if known.users.remove(&user).is_some() {
                            offline(user, &name);
                        }
                    }
                    Presence::Snapshot { users, .. } => {
                        let now: HashMap<u64, String> = users.into_iter().collect();
                        let came: Vec<(u64, String)> =
                            now.iter().filter(|(u, _)| !known.users.contains_key(u)).map(|(u, n)| (*u, n.clone())).collect();
                        let went: Vec<(u64, String)> =
                            known.users.iter().filter(|(u, _)| !now.contains_key(u)).map(|(u, n)| (*u, n.clone())).collect();
                        known.users = now;
                        for (i, (user, name)) in came.iter().enumerate() {
                            online(*user, name);
                            pause(i).await;
                        }
                        for (i, (user, name)) in went.iter().enumerate() {
                            offline(*user, name);
                            pause(i).await;
                        }
                    }
                }
            }
            _ = sweep.tick() => {
                let gone: Vec<u64> = edges.iter().filter(|(_, e)| e.heard.elapsed() > EDGE_STALE).map(|(id, _)| *id).collect();
                for id in gone {
                    tracing::warn!(edge = id, "core: an edge went silent; its users' connections are dropped");
                    if let Some(e) = edges.remove(&id) {
                        for (i, (user, name)) in e.users.iter().enumerate() {
                            offline(*user, name);
                            pause(i).await;
                        }
                    }
                }
            }
        }
    }
}

/// Every 64th announcement, let the publisher drain what they queued (it shares this
/// thread): a burst of presence must not fill the queue for NATS.
async fn pause(i: usize) {
    if i % 64 == 63 {
        tokio::task::yield_now().await;
    }
}
