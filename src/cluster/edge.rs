//! The edge's side of NATS: its sessions live in its own [`Hub`]; it subscribes to a
//! group's subject while one of them is in the group and hands each event to the hub,
//! asks the core by request-reply, and reports its users' presence.
//!
//! One task (on a thread of its own) owns the subscriptions and the presence counts, so
//! that subscribing, dropping a subscription nobody needs and reporting happen in one
//! order. It also watches the connection and the core's hello: when the edge can no longer
//! vouch for its stream (NATS lost, the core restarted or dropped events) every session is
//! closed with 1012 and catches up elsewhere with `since=`.

use super::{decode, encode, Answer, Answered, Hello, Presence, Request, Stamp, Subjects, WireEvent};
use super::{HELLO_STALE, QUEUE_STALE, REQUEST_TIMEOUT, SNAPSHOT_EVERY};
use crate::actors::hub::{room_group, Event, Group, Hub, Subscriber};
use crate::actors::room::{Author, ChatError, MAX_CATCH_UP};
use crate::actors::waiting_queue::{Delta, QueueGate, Snapshot};
use futures_util::{FutureExt, StreamExt};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// The edge's way to the core.
#[derive(Clone)]
pub struct Edge(Arc<Inner>);

struct Inner {
    client: async_nats::Client,
    /// The NATS thread's arbiter, which runs every task that uses `client` (it lives for
    /// the life of the process: a NATS subscription must not be dropped off its runtime).
    arbiter: actix::ArbiterHandle,
    subjects: Subjects,
    hub: Hub,
    /// This process among the edges (random at every start).
    id: u64,
    commands: mpsc::UnboundedSender<Command>,
    connected: AtomicBool,
    /// When the core's last hello came (ms; 0: never).
    heard: AtomicU64,
    /// The core's boot and epoch as this edge last saw them (`None`: since NATS came back,
    /// nothing yet).
    known: std::sync::Mutex<Option<Hello>>,
    /// How many times every session here was sent away (1012): a subscription's events
    /// before that need not continue into those after it, since every session in a group
    /// since then joined with a catch-up from the core.
    restarts: AtomicU64,
}

impl Inner {
    /// Send every session away with 1012 (see [`Inner::restarts`]); returns how many.
    fn restart_all(&self) -> usize {
        self.restarts.fetch_add(1, Ordering::Relaxed);
        self.hub.restart_all()
    }
}

enum Command {
    /// Subscribe to the group's subject if not yet; answer whether it is.
    Ensure(Group, oneshot::Sender<bool>),
    /// A session of `user` went online (true) or closed (false).
    Presence { user: u64, name: String, online: bool },
}

impl Edge {
    /// Connect to NATS at `url` (in the background, retrying for ever) and start the task
    /// that serves `hub`'s sessions.
    pub async fn start(url: &str, subjects: Subjects, hub: Hub) -> anyhow::Result<Edge> {
        let (ready, edge) = oneshot::channel();
        let url = url.to_string();
        let arbiter = actix::Arbiter::new();
        arbiter.spawn(async move {
            let (events_tx, events) = mpsc::unbounded_channel();
            let options = async_nats::ConnectOptions::new()
                .name("boxoffice-edge")
                .retry_on_initial_connect()
                .max_reconnects(None)
                .event_callback(move |e| {
                    let tx = events_tx.clone();
                    async move {
                        let _ = tx.send(e);
                    }
                });
            let client = match options.connect(&url).await {
                Ok(c) => c,
                Err(e) => {
                    let _ = ready.send(Err(anyhow::anyhow!("NATS at {url}: {e}")));
                    return;
                }
            };
            let (commands, rx) = mpsc::unbounded_channel();
            let edge = Edge(Arc::new(Inner {
                client,
                arbiter: actix::Arbiter::current(),
                subjects,
                hub,
                id: rand::random(),
                commands,
                connected: AtomicBool::new(false),
                heard: AtomicU64::new(0),
                known: std::sync::Mutex::new(None),
                restarts: AtomicU64::new(0),
            }));
            let _ = ready.send(Ok(edge.clone()));
            edge.run(rx, events).await;
        });
        std::mem::forget(arbiter);
        edge.await.map_err(|_| anyhow::anyhow!("the NATS thread stopped"))?
    }

    pub fn hub(&self) -> &Hub {
        &self.0.hub
    }

    /// This edge's id among the nodes (random at every start).
    pub fn id(&self) -> u64 {
        self.0.id
    }

    /// The core's boot and epoch as this edge sees them now.
    pub fn known(&self) -> Option<Hello> {
        *self.0.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where the core's subjects of `groups` stand (see [`Request::Positions`]); asked after
    /// this edge's subscriptions to them are in place, everything stamped higher reaches it.
    pub fn positions(&self, groups: Vec<Group>) -> impl Future<Output = Result<(Hello, Vec<u64>), ChatError>> {
        let asked = self.ask(Request::Positions { groups });
        async move {
            match asked.await? {
                Answered::Positions { hello, at } => Ok((hello, at)),
                _ => Err(ChatError::Unavailable("the core answered something else".into())),
            }
        }
    }

    /// Ask the edge `node` (its [`Subjects::node`] subject), waiting at most `timeout`:
    /// its answer, or `None` (no such node, or no answer in time).
    pub fn ask_node(
        &self,
        node: u64,
        payload: bytes::Bytes,
        timeout: std::time::Duration,
    ) -> impl Future<Output = Option<bytes::Bytes>> + Send + 'static {
        let client = self.0.client.clone();
        let subject = self.0.subjects.node(node);
        let up = self.connected();
        async move {
            if !up {
                return None;
            }
            match tokio::time::timeout(timeout, client.request(subject, payload)).await {
                Ok(Ok(reply)) => Some(reply.payload),
                _ => None,
            }
        }
    }

    /// Answer what other nodes ask of this one ([`Edge::ask_node`]) with `answer`, each
    /// request as it comes (the answers go back as they are ready).
    pub fn serve_node<F, Fut>(&self, answer: F)
    where
        F: Fn(bytes::Bytes) -> Fut + Send + 'static,
        Fut: Future<Output = bytes::Bytes> + 'static,
    {
        let client = self.0.client.clone();
        let subject = self.0.subjects.node(self.0.id);
        self.0.arbiter.spawn(async move {
            let mut requests = subscribe_until_done(&client, subject, "take requests from other nodes").await;
            while let Some(msg) = requests.next().await {
                let Some(reply) = msg.reply else { continue };
                let answering = answer(msg.payload);
                let client = client.clone();
                actix::spawn(async move {
                    let a = answering.await;
                    let _ = client.publish(reply, a).await;
                });
            }
        });
    }

    /// Connected to NATS and hearing the core.
    /// Keep `gate` a copy of the core's queue admission state: a snapshot, then the core's
    /// deltas. A gap (a missed delta, a new core) reloads the snapshot; a copy that has
    /// heard nothing for [`QUEUE_STALE`] stops answering until it hears again.
    pub fn replicate_queue(&self, gate: QueueGate) {
        let client = self.0.client.clone();
        let subjects = self.0.subjects.clone();
        self.0.arbiter.spawn(async move {
            let mut deltas = subscribe_until_done(&client, subjects.queue_admission(), "follow the queue").await;
            let mut boot: Option<u64> = None;
            let mut heard = std::time::Instant::now();
            let mut check = tokio::time::interval(std::time::Duration::from_millis(500));
            loop {
                if boot.is_none() {
                    let asked = client.request(subjects.queue_snapshot(), bytes::Bytes::new());
                    if let Ok(Ok(msg)) = tokio::time::timeout(REQUEST_TIMEOUT, asked).await {
                        if let Ok(snapshot) = decode::<Snapshot>(&msg.payload) {
                            boot = Some(snapshot.boot);
                            gate.install(snapshot);
                            heard = std::time::Instant::now();
                        }
                    }
                }
                tokio::select! {
                    next = deltas.next() => {
                        let Some(msg) = next else { return };
                        let Ok(delta) = decode::<Delta>(&msg.payload) else { continue };
                        match boot {
                            Some(b) if gate.apply(b, &delta).is_ok() => {
                                heard = std::time::Instant::now();
                            }
                            // A missed delta or a new core: start over from a snapshot.
                            _ => boot = None,
                        }
                    }
                    _ = check.tick() => {
                        let stale = heard.elapsed() > QUEUE_STALE;
                        if stale == gate.available() {
                            gate.set_unavailable(stale);
                        }
                        if stale {
                            boot = None;
                        }
                    }
                }
            }
        });
    }

    pub fn healthy(&self) -> bool {
        let heard = self.0.heard.load(Ordering::Relaxed);
        self.0.connected.load(Ordering::Relaxed)
            && heard > 0
            && crate::time::now_ms().saturating_sub(heard) < crate::time::ms(HELLO_STALE)
    }

    /// Whether the edge is connected to NATS.
    pub fn connected(&self) -> bool {
        self.0.connected.load(Ordering::Relaxed)
    }

    /// Ask the core; a timeout or a broken link is [`ChatError::Unavailable`]. The request
    /// leaves in the caller's order. A socket is let in (or into a room) only while the
    /// edge hears the core, so that it can tell a gap in what follows.
    pub fn ask(&self, request: Request) -> impl Future<Output = Answer> + Send + 'static {
        let client = self.0.client.clone();
        let subject = self.0.subjects.request();
        let up = match request {
            Request::Access { .. } | Request::CatchUp { .. } | Request::Positions { .. } => self.healthy(),
            _ => self.connected(),
        };
        let payload = encode(&request);
        async move {
            if !up {
                return Err(ChatError::Unavailable("this node lost its link to the core".into()));
            }
            match tokio::time::timeout(REQUEST_TIMEOUT, client.request(subject, payload)).await {
                Ok(Ok(reply)) => decode::<Answer>(&reply.payload)
                    .map_err(|e| ChatError::Unavailable(format!("the core's answer does not decode: {e}")))?,
                Ok(Err(e)) => Err(ChatError::Unavailable(format!("the core did not answer: {e}"))),
                Err(_) => Err(ChatError::Unavailable("the core did not answer in time".into())),
            }
        }
    }

    /// Resolves once the edge hears `group`'s subject (false: it could not subscribe in
    /// time).
    pub fn ensure(&self, group: Group) -> impl Future<Output = bool> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let _ = self.0.commands.send(Command::Ensure(group, tx));
        async move { matches!(tokio::time::timeout(REQUEST_TIMEOUT, rx).await, Ok(Ok(true))) }
    }

    /// The core's stream as an event or a hello shows it: a new boot or a higher epoch
    /// means events may be missing, so every session starts over (before anything after
    /// them is handed on).
    fn saw(&self, seen: Hello) {
        let mut known = self.0.known.lock().unwrap_or_else(|e| e.into_inner());
        let Some(why) = stream_change(*known, seen) else { return };
        *known = Some(seen);
        drop(known);
        if !why.is_empty() {
            let n = self.0.restart_all();
            crate::observe::edge_restart(why);
            tracing::warn!(sessions = n, why, "edge: the core's stream has a gap; closing every socket with 1012");
        }
    }

    /// Join `room`: `sub` goes into the room's group here and the edge subscribes to its
    /// subject, *then* the core checks the participant and reads the catch-up, page by
    /// page. What the core publishes after it read the catch-up reaches the session live;
    /// what both carry, the session sends once (by message id).
    pub async fn join(self, room: u64, sub: Subscriber, since: Option<u64>) -> Result<super::Joined, ChatError> {
        let group = room_group(room);
        let (session, user) = (sub.session, sub.user);
        // A second join of a room must not take the session out of it when it fails.
        let member = self.0.hub.is_member(group, session);
        self.0.hub.join(group, sub);
        let caught_up = async {
            if !self.ensure(group).await {
                return Err(ChatError::Unavailable("cannot subscribe to the room's events".into()));
            }
            let (mut after, mut upto, mut missed) = (since, None, Vec::new());
            loop {
                let Answered::CaughtUp(page) = self.ask(Request::CatchUp { room, user, after, upto }).await? else {
                    return Err(ChatError::Unavailable("the core answered something else".into()));
                };
                upto = Some(page.upto);
                after = page.messages.last().map(|m| m.id).or(after);
                missed.extend(page.messages);
                if !page.more || missed.len() >= MAX_CATCH_UP {
                    return Ok(super::Joined { missed, newest: page.upto });
                }
            }
        }
        .await;
        if caught_up.is_err() && !member {
            self.0.hub.leave(group, session);
        }
        caught_up
    }

    /// A session of `who` went online (or closed).
    pub fn presence(&self, who: &Author, online: bool) {
        let _ = self.0.commands.send(Command::Presence { user: who.id, name: who.name.clone(), online });
    }

    /// The edge's task: subscriptions, presence, the link's and the core's health.
    async fn run(
        self,
        mut commands: mpsc::UnboundedReceiver<Command>,
        mut events: mpsc::UnboundedReceiver<async_nats::Event>,
    ) {
        let inner = &self.0;
        let mut subscribed: HashMap<Group, tokio::task::JoinHandle<()>> = HashMap::new();
        let mut users: HashMap<u64, (u32, String)> = HashMap::new();
        let mut hellos = match inner.client.subscribe(inner.subjects.hello()).await {
            Ok(s) => s,
            Err(e) => return tracing::error!(error = %e, "edge: cannot hear the core"),
        };
        let mut tick = tokio::time::interval(SNAPSHOT_EVERY);
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    None => return,
                    Some(Command::Ensure(group, done)) => {
                        if let std::collections::hash_map::Entry::Vacant(slot) = subscribed.entry(group) {
                            let subject = inner.subjects.group(group);
                            match tokio::time::timeout(REQUEST_TIMEOUT, inner.client.subscribe(subject)).await {
                                Ok(Ok(sub)) => {
                                    slot.insert(actix::spawn(self.clone().relay(sub, group)));
                                }
                                _ => {
                                    tracing::warn!(%group, "edge: cannot subscribe");
                                    let _ = done.send(false);
                                    continue;
                                }
                            }
                        }
                        let _ = done.send(true);
                    }
                    Some(Command::Presence { user, name, online }) => {
                        let report = if online {
                            let entry = users.entry(user).or_insert((0, name.clone()));
                            entry.0 += 1;
                            (entry.0 == 1).then_some(Presence::Online { edge: inner.id, user, name })
                        } else {
                            match users.get_mut(&user) {
                                Some(entry) if entry.0 > 1 => { entry.0 -= 1; None }
                                Some(_) => { users.remove(&user); Some(Presence::Offline { edge: inner.id, user, name }) }
                                None => None,
                            }
                        };
                        if let Some(report) = report {
                            self.report(&report).await;
                        }
                    }
                },
                event = events.recv() => {
                    let Some(event) = event else { return };
                    match event {
                        async_nats::Event::Connected => {
                            tracing::info!("edge: connected to NATS");
                            inner.connected.store(true, Ordering::Relaxed);
                        }
                        async_nats::Event::Disconnected => {
                            inner.connected.store(false, Ordering::Relaxed);
                            // Healthy again only once the core is heard anew; its first hello
                            // then is the new baseline (every session here is restarted now).
                            inner.heard.store(0, Ordering::Relaxed);
                            *inner.known.lock().unwrap_or_else(|e| e.into_inner()) = None;
                            let n = inner.restart_all();
                            crate::observe::edge_restart("nats_lost");
                            tracing::warn!(sessions = n, "edge: lost NATS; closing every socket with 1012");
                        }
                        async_nats::Event::SlowConsumer(_) => {
                            let n = inner.restart_all();
                            crate::observe::edge_restart("slow_consumer");
                            tracing::warn!(sessions = n, "edge: NATS dropped events for us; closing every socket with 1012");
                        }
                        other => tracing::info!(event = %other, "edge: NATS"),
                    }
                }
                hello = hellos.next() => {
                    let Some(hello) = hello else { return };
                    let Ok(hello) = decode::<Hello>(&hello.payload) else { continue };
                    if inner.heard.swap(crate::time::now_ms(), Ordering::Relaxed) == 0 {
                        tracing::info!("edge: hearing the core");
                    }
                    self.saw(hello);
                }
                _ = tick.tick() => {
                    // Nobody here is in these groups any more.
                    subscribed.retain(|group, relay| {
                        let keep = inner.hub.has_group(*group);
                        if !keep {
                            // The relay runs on this thread: it is stopped for good here.
                            relay.abort();
                            inner.hub.forget_relayed(*group);
                        }
                        keep
                    });
                    crate::observe::edge_subscriptions(subscribed.len());
                    let users = users.iter().map(|(id, (_, name))| (*id, name.clone())).collect();
                    self.report(&Presence::Snapshot { edge: inner.id, users }).await;
                }
            }
        }
    }

    /// Tell the core, if NATS is there (a snapshot will say it again later otherwise).
    async fn report(&self, report: &Presence) {
        if !self.connected() {
            return;
        }
        let publish = self.0.client.publish(self.0.subjects.presence(), encode(report));
        let _ = tokio::time::timeout(REQUEST_TIMEOUT, publish).await;
    }
}

impl Edge {
    /// Hand a subject's events to the hub's group, in order, checking that none is
    /// missing: an event whose `prev` is not the last one this subscription got means NATS
    /// or the core lost what came between, and the group's sessions start over before the
    /// event is handed on. Aborting the task drops the subscription (which unsubscribes).
    ///
    /// It also keeps the group's relayed position ([`Hub::publish_relayed`]): at the start
    /// it asks the core where the subject stands. The core answers after every event it
    /// counts has left for NATS, so those of them that reach this subscription are already
    /// in its channel when the answer comes (NATS keeps one connection's order, and the
    /// client hands messages on in the order they came): once they are relayed, every
    /// event up to that position that will ever reach the edge has been relayed.
    async fn relay(self, mut events: async_nats::Subscriber, group: Group) {
        let mut last: Option<u64> = None;
        let mut restarts = self.0.restarts.load(Ordering::Relaxed);
        let seed = self.ask(Request::Positions { groups: vec![group] });
        let mut seed = std::pin::pin!(seed);
        let mut seeded = false;
        loop {
            tokio::select! {
                m = events.next() => {
                    let Some(m) = m else { return };
                    self.relay_one(group, &mut last, &mut restarts, &m);
                }
                answer = &mut seed, if !seeded => {
                    seeded = true;
                    let Ok(Answered::Positions { hello, at }) = answer else { continue };
                    let known = *self.0.known.lock().unwrap_or_else(|e| e.into_inner());
                    if known != Some(hello) {
                        continue;
                    }
                    while let Some(Some(m)) = events.next().now_or_never() {
                        self.relay_one(group, &mut last, &mut restarts, &m);
                    }
                    self.0.hub.relayed_through(group, at.first().copied().unwrap_or(0));
                }
            }
        }
    }

    fn relay_one(&self, group: Group, last: &mut Option<u64>, restarts: &mut u64, m: &async_nats::Message) {
        let hub = &self.0.hub;
        let Some((stamp, body)) = Stamp::split(&m.payload) else {
            return self.broken(group, "an event without its stamp");
        };
        self.saw(stamp.hello());
        // Every session was sent away since the last event (NATS came back, say, and the
        // subscription with it, having missed what was published meanwhile): the sessions
        // here now joined with a catch-up, so this event starts the subscription anew.
        let now = self.0.restarts.load(Ordering::Relaxed);
        if now != *restarts {
            *restarts = now;
            *last = None;
        }
        if !continues(*last, &stamp) {
            let n = hub.restart_group(group);
            crate::observe::edge_restart("gap");
            tracing::warn!(%group, sessions = n, "edge: events are missing; the group's sockets close with 1012");
        }
        *last = Some(stamp.seq);
        match decode::<WireEvent>(body) {
            Ok(w) => hub.publish_relayed(group, &Event::relayed(w.seq, stamp.seq, w.kind, w.skip_user), stamp.seq),
            Err(e) => self.broken(group, &e),
        }
    }

    /// An event that cannot be read (a core of another version?): the group's sessions
    /// cannot be told it, so they start over.
    fn broken(&self, group: Group, why: &str) {
        let n = self.0.hub.restart_group(group);
        crate::observe::edge_restart("bad_event");
        tracing::warn!(%group, sessions = n, why, "edge: an event does not decode; the group's sockets close with 1012");
    }
}

/// Subscribe to `subject`, trying again each second until NATS takes it (to `what`, as the
/// log says while it cannot).
async fn subscribe_until_done(client: &async_nats::Client, subject: String, what: &str) -> async_nats::Subscriber {
    loop {
        match client.subscribe(subject.clone()).await {
            Ok(s) => return s,
            Err(e) => {
                tracing::warn!(error = %e, "edge: cannot {what} yet");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
}

/// How `seen` changes the core's stream as `known` had it: `None` if it does not (the same
/// boot and epoch, or an older epoch that came late through another subject), `Some("")`
/// if it is the first seen, else why sessions must start over.
fn stream_change(known: Option<Hello>, seen: Hello) -> Option<&'static str> {
    match known {
        None => Some(""),
        Some(k) if k.boot != seen.boot => Some("core_restarted"),
        Some(k) if seen.epoch > k.epoch => Some("core_dropped_events"),
        Some(_) => None,
    }
}

/// Whether an event follows the last one a subscription got (`prev` 0: the core does not
/// remember the subject's last event, which it forgets only after a minute of silence).
fn continues(last: Option<u64>, stamp: &Stamp) -> bool {
    match last {
        Some(l) => stamp.prev == 0 || stamp.prev == l,
        None => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_boot_or_a_higher_epoch_restarts_sessions_once() {
        let h = |boot, epoch| Hello { boot, epoch };
        assert_eq!(stream_change(None, h(1, 0)), Some(""), "the first hello is the baseline");
        assert_eq!(stream_change(Some(h(1, 0)), h(1, 0)), None);
        assert_eq!(stream_change(Some(h(1, 0)), h(1, 1)), Some("core_dropped_events"));
        assert_eq!(stream_change(Some(h(1, 2)), h(1, 1)), None, "an older epoch arriving late");
        assert_eq!(stream_change(Some(h(1, 2)), h(9, 0)), Some("core_restarted"));
    }

    #[test]
    fn an_event_whose_previous_one_never_came_is_a_gap() {
        let at = |seq, prev| Stamp { boot: 1, epoch: 0, seq, prev };
        assert!(continues(None, &at(10, 7)), "the first event of a subscription");
        assert!(continues(Some(7), &at(10, 7)), "other subjects' events come between");
        assert!(!continues(Some(7), &at(12, 10)), "event 10 of this subject was lost");
        assert!(continues(Some(7), &at(40, 0)), "a subject the core forgot after a silence");
    }
}
