//! A stateful connection taken over through another edge: the client's reconnect
//! (`/hubs/chat?id=<token>`, see [`super::transport`]) lands on an edge that does not hold
//! the connection, and the edge that does hands it over, so that the client resumes it
//! there as on its own edge, losing nothing and getting nothing twice. Where that cannot
//! be promised, the answer stays 404 and the client starts a new connection.
//!
//! # Who holds it
//! An edge's connection tokens end with its id (`<random>.<edge id in hex>`): the edge
//! that gets a token it does not hold asks that edge, on its own subject
//! ([`Subjects::node`](crate::cluster::Subjects::node)). A token without an edge's id (a
//! core's, a single server's), of an edge that is gone, or that its edge no longer holds,
//! is 404.
//!
//! # The steps (B takes the connection over from A)
//! 1. B asks A to [`Ask::Describe`] it, with the user B checked the JWT of: A refuses
//!    another user's (B answers 403) and a connection that ended or is closing (404), and
//!    otherwise answers its protocol and its rooms.
//! 2. B starts a session for it ([`Session::arriving`]) and puts it in the same groups
//!    ([`Gather`]): the user's and the rooms'. The user counts as online on B from now
//!    on, before A lets go, so that nobody sees them go offline. The session holds the
//!    groups' events.
//! 3. B asks the core where each group's subject stands ([`Edge::positions`]): B is
//!    subscribed to them all, so it gets every event stamped past those positions.
//! 4. B asks A to [`Ask::Take`] it. A's session leaves its groups at once, noting how far
//!    each group's subject had been relayed to it ([`Session::depart`]); it takes in what
//!    its mailbox already held and waits for the `SendMessage`s in flight (their
//!    Completions go with it); then it answers its state ([`Handed`]: the replay buffer
//!    and sequence ids, the client messages processed, its rooms, what it remembers having
//!    sent, and its groups' positions) and stops, without a Close: the client is B's now.
//! 5. B checks that nothing can be missing: the core's stream is the one both edges see
//!    (same boot and epoch), the groups are the same, and A took in every group's events
//!    up to the positions of step 3 ([`Carried::covered_by`]). The events B held are
//!    taken in unless A had them (stamped up to what A took in), in the order they came
//!    ([`Session::settle`]); then the 101, and the resume as on one node: the Sequence,
//!    the messages not acknowledged, then live.
//!
//! Every question is bounded ([`DESCRIBE_TIMEOUT`], [`TAKE_TIMEOUT`]); an unanswered one
//! is 404. So is a failed check after A let go: the connection is lost, and the client
//! starts a new one, rather than resume with a gap. The state crossing NATS is bounded by
//! the replay buffer's bound (`BOXOFFICE_SIGNALR_RECONNECT_BUFFER_BYTES`, which must stay
//! under NATS's largest message, 1 MiB by default).

use super::protocol::HubRender;
use super::session::{release, Handed, Leaving, Replay, SignalRWire};
use super::Refused;
use super::PROTOCOLS;
use crate::actors::hub::{room_group, user_group, Group};
use crate::auth::Identity;
use crate::cluster::edge::Edge;
use crate::cluster::{decode, encode, Backend, Hello};
use crate::http::session::{Abandon, Ctx, Gather, Session};
use crate::http::Realtime;
use actix::prelude::*;
use actix_web::{HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// How long B waits for A to describe the connection.
pub const DESCRIBE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long B waits for A to hand it over: A waits for the answers to its posts in flight,
/// which come within the core's request timeout.
pub const TAKE_TIMEOUT: Duration = Duration::from_secs(8);

type S = Session<SignalRWire>;

/// What one edge asks the edge that holds a connection, for `user` (whose JWT it checked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ask {
    Describe {
        token: String,
        user: u64,
    },
    /// `from`: the edge that takes it (where the connection is from then on).
    Take {
        token: String,
        user: u64,
        from: u64,
    },
}

/// The holder's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Told {
    /// The connection is another user's.
    Forbidden,
    /// No such connection here (any more), or it cannot move.
    Gone,
    Described {
        protocol: String,
        rooms: Vec<u64>,
    },
    Taken(Box<Handed>),
    /// It moved on to edge `node` (see [`moved`]): ask there.
    Moved {
        node: u64,
    },
}

/// Where this edge's connections went when another edge took them over: token -> (user,
/// edge). The token still names this edge, so a later reconnect through any edge asks here
/// first and is sent on. Bounded: a forgotten entry makes such a reconnect 404 (the client
/// starts fresh), never a wrong resume.
fn moved() -> &'static quick_cache::sync::Cache<String, (u64, u64)> {
    static MOVED: std::sync::OnceLock<quick_cache::sync::Cache<String, (u64, u64)>> = std::sync::OnceLock::new();
    MOVED.get_or_init(|| quick_cache::sync::Cache::new(MOVED_KEPT))
}

/// How many moved connections an edge remembers.
const MOVED_KEPT: usize = 65_536;

/// How many times a reconnect follows a connection from edge to edge.
const MAX_HOPS: usize = 4;

/// Answer other edges' questions about this edge's connections (on an edge's start).
pub fn serve(edge: &Edge) {
    let hello = edge.clone();
    edge.serve_node(move |payload| {
        let edge = hello.clone();
        async move {
            let told = match decode::<Ask>(&payload) {
                Ok(ask) => answer(&edge, ask).await,
                Err(e) => {
                    tracing::warn!(error = %e, "a handover request does not decode");
                    Told::Gone
                }
            };
            encode(&told)
        }
    });
}

async fn answer(edge: &Edge, ask: Ask) -> Told {
    let (Ask::Describe { token, user } | Ask::Take { token, user, .. }) = &ask;
    let Some((owner, session)) = super::session::holder(token) else {
        return match moved().get(token) {
            Some((owner, _)) if owner != *user => Told::Forbidden,
            Some((_, node)) => Told::Moved { node },
            None => Told::Gone,
        };
    };
    if owner != *user {
        return Told::Forbidden;
    }
    match ask {
        Ask::Describe { .. } => match session.send(Describe).await {
            Ok(Some((protocol, rooms))) => Told::Described { protocol, rooms },
            _ => Told::Gone,
        },
        Ask::Take { token, user, from } => {
            let (reply, handed) = oneshot::channel();
            session.do_send(HandOver { hello: edge.known(), reply });
            match handed.await {
                Ok(Some(h)) => {
                    moved().insert(token, (user, from));
                    crate::observe::handover("handed");
                    Told::Taken(Box::new(h))
                }
                _ => Told::Gone,
            }
        }
    }
}

/// The connection's protocol and rooms, if it can move.
#[derive(Message)]
#[rtype(result = "Option<(String, Vec<u64>)>")]
struct Describe;

impl Handler<Describe> for S {
    type Result = Option<(String, Vec<u64>)>;
    fn handle(&mut self, _: Describe, _: &mut Ctx<SignalRWire>) -> Self::Result {
        if self.closing() || !self.online() || self.wire.leaving.is_some() || !self.wire.idle() {
            return None;
        }
        let protocol = self.wire.protocol()?;
        Some((protocol.name().to_string(), self.rooms().to_vec()))
    }
}

/// Hand the connection over: leave the groups now, answer once the mailbox and the posts
/// in flight are taken in, then stop.
#[derive(Message)]
#[rtype(result = "()")]
struct HandOver {
    hello: Option<Hello>,
    reply: oneshot::Sender<Option<Handed>>,
}

impl Handler<HandOver> for S {
    type Result = ();
    fn handle(&mut self, msg: HandOver, ctx: &mut Ctx<SignalRWire>) {
        if self.wire.leaving.is_some() || !self.wire.idle() {
            let _ = msg.reply.send(None);
            return;
        }
        let Some(groups) = self.depart(ctx) else {
            let _ = msg.reply.send(None);
            return;
        };
        self.wire.leaving = Some(Leaving::new(groups, msg.hello, msg.reply));
        // Behind every event delivered before the session left its groups.
        ctx.address().do_send(Drained);
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct Drained;

impl Handler<Drained> for S {
    type Result = ();
    fn handle(&mut self, _: Drained, ctx: &mut Ctx<SignalRWire>) {
        if let Some(l) = self.wire.leaving.as_mut() {
            l.drained();
        }
        if self.wire.posting == 0 {
            release(self, ctx);
        }
    }
}

/// The edge holding a connection installs what it was handed (see [`Session::settle`]) and
/// makes the connection's token its own.
#[derive(Message)]
#[rtype(result = "bool")]
struct Install {
    protocol: &'static dyn super::HubProtocol,
    replay: Replay,
    token: String,
    handed: Box<Handed>,
}

impl Handler<Install> for S {
    type Result = bool;
    fn handle(&mut self, msg: Install, ctx: &mut Ctx<SignalRWire>) -> bool {
        if self.closing() {
            return false;
        }
        let Handed { replay, session, .. } = *msg.handed;
        self.wire.arrived(msg.protocol, msg.replay, replay);
        self.settle(ctx, session);
        if self.closing() {
            return false;
        }
        super::session::resumable(&msg.token, self.me.id, ctx.address());
        true
    }
}

/// Stops a session arriving from another node unless it got its socket.
struct Arrival(Option<Addr<S>>);

impl Drop for Arrival {
    fn drop(&mut self) {
        if let Some(s) = self.0.take() {
            s.do_send(Abandon);
        }
    }
}

/// Take over the connection `token` held by the edge `node` for `me` (steps 1 to 5 of the
/// module's doc), then the 101 whose socket resumes it.
pub async fn arrive(
    state: &Realtime,
    req: &HttpRequest,
    me: &Identity,
    token: &str,
    node: u64,
    max_frame: usize,
) -> Result<Result<HttpResponse, actix_web::Error>, Refused> {
    let Backend::Remote(edge) = &state.backend else { return Err(Refused::Gone) };
    let user = me.user_id;
    let outcome = |o: &'static str| crate::observe::handover(o);
    // A connection that moved on from the edge its token names is followed from edge to
    // edge, a few hops at most.
    let mut node = node;
    let mut described = None;
    for _ in 0..MAX_HOPS {
        if node == edge.id() {
            // Issued here (or sent back here) and not held here: it moved on, or is gone.
            match moved().get(token) {
                Some((owner, _)) if owner != user => {
                    outcome("forbidden");
                    return Err(Refused::Forbidden);
                }
                Some((_, next)) if next != node => {
                    node = next;
                    continue;
                }
                _ => break,
            }
        }
        let asked = edge.ask_node(node, encode(&Ask::Describe { token: token.to_string(), user }), DESCRIBE_TIMEOUT);
        match asked.await.and_then(|b| decode::<Told>(&b).ok()) {
            Some(Told::Described { protocol, rooms }) => {
                described = Some((protocol, rooms));
                break;
            }
            Some(Told::Moved { node: next }) => node = next,
            Some(Told::Forbidden) => {
                outcome("forbidden");
                return Err(Refused::Forbidden);
            }
            _ => break,
        }
    }
    let Some((protocol, rooms)) = described else {
        outcome("gone");
        return Err(Refused::Gone);
    };
    let ask = |a: Ask, timeout| {
        let asked = edge.ask_node(node, encode(&a), timeout);
        async move { asked.await.and_then(|b| decode::<Told>(&b).ok()) }
    };
    let Some(&protocol) = PROTOCOLS.iter().find(|p| p.name() == protocol) else { return Err(Refused::Gone) };
    let me_author = crate::http::author(me);
    let session = Actor::start(Session::arriving(state, me_author, SignalRWire::new(state.links.clone(), None)));
    let mut arrival = Arrival(Some(session.clone()));
    let render = Arc::new(HubRender { protocol, links: state.links.clone() });
    let groups: Vec<Group> = std::iter::once(user_group(user)).chain(rooms.iter().map(|r| room_group(*r))).collect();
    if !session.send(Gather { render, rooms }).await.unwrap_or(false) {
        outcome("unavailable");
        return Err(Refused::Gone);
    }
    let Ok((core, at)) = edge.positions(groups.clone()).await else {
        outcome("unavailable");
        return Err(Refused::Gone);
    };
    let handed = match ask(Ask::Take { token: token.to_string(), user, from: edge.id() }, TAKE_TIMEOUT).await {
        Some(Told::Taken(h)) => h,
        Some(Told::Forbidden) => {
            outcome("forbidden");
            return Err(Refused::Forbidden);
        }
        _ => {
            outcome("gone");
            return Err(Refused::Gone);
        }
    };
    // The other edge has let go: from here on a refusal loses the connection (404).
    let same_stream = handed.hello == Some(core) && edge.known() == Some(core);
    if !same_stream || handed.protocol != protocol.name() || !handed.session.covered_by(&groups, &at) {
        tracing::warn!(same_stream, "signalr: a connection handed over could have a gap; it is dropped");
        outcome("not_exact");
        return Err(Refused::Gone);
    }
    let s = &state.settings;
    let replay = Replay::new(token.to_string(), s.signalr_reconnect_window, s.signalr_reconnect_buffer_bytes);
    let install = Install { protocol, replay, token: token.to_string(), handed };
    if !session.send(install).await.unwrap_or(false) {
        outcome("unavailable");
        return Err(Refused::Gone);
    }
    arrival.0 = None;
    outcome("resumed");
    Ok(Session::take_over(req, session, max_frame))
}
