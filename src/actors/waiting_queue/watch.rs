//! `QueueWatch`: pushes each waiting socket of this node its standing, from the published
//! admission state alone.
//!
//! One per node. The queue's own work per tick does not depend on how many sockets wait:
//! it publishes a few numbers, and each node's watch works out what its sockets see. Per
//! tick (50 ms) the watch tells the sockets whose places the line has just reached
//! whether they were admitted, ends the ones whose places expired or ended, and once a
//! second tells every waiting socket its position if it moved. Its cost is proportional to
//! the sockets that change, plus one pass a second over the waiting ones.

use super::admission::{QueueGate, Standing, TokenView};
use super::ticket::Ticket;
use crate::time::now_ms;
use actix::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// How often the watch looks at the published state.
const TICK: Duration = Duration::from_millis(50);
/// At most one position update a second per socket.
const POSITIONS_EVERY: Duration = Duration::from_secs(1);

/// What a watching socket is told.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub enum QueueUpdate {
    /// Its token's standing now (the fields of `GET /waiting/check`).
    View(TokenView),
    /// The token expired or ended: the socket closes (1000).
    Ended,
    /// This node lost the queue's state: the socket closes (1012) so that its client
    /// reconnects, here once the state is back or elsewhere.
    Restart,
}

struct Watcher {
    ticket: Ticket,
    token: String,
    to: Recipient<QueueUpdate>,
    /// The position last sent (0 once active).
    position: u64,
}

pub struct QueueWatch {
    gate: QueueGate,
    /// Waiting sockets by place, then socket id.
    waiting: BTreeMap<(u64, u64), Watcher>,
    /// Admitted sockets, by socket id.
    active: HashMap<u64, Watcher>,
    /// Pre-queue sockets, until the opening gives their places.
    pre: Vec<(u64, Watcher)>,
    next_id: u64,
    positions_at: Instant,
}

impl QueueWatch {
    pub fn new(gate: QueueGate) -> QueueWatch {
        QueueWatch {
            gate,
            waiting: BTreeMap::new(),
            active: HashMap::new(),
            pre: Vec::new(),
            next_id: 0,
            positions_at: Instant::now(),
        }
    }

    /// The update for `w` standing as it does at `now`.
    fn update(&self, w: &Watcher, now: u64) -> (QueueUpdate, Option<Standing>) {
        match self.gate.standing(&w.ticket, now) {
            Ok(s) => (QueueUpdate::View(self.gate.view(w.token.clone(), &w.ticket, s)), Some(s)),
            Err(_) => (QueueUpdate::Ended, None),
        }
    }

    fn tick(&mut self) {
        if !self.gate.available() {
            for (_, w) in std::mem::take(&mut self.waiting) {
                w.to.do_send(QueueUpdate::Restart);
            }
            for (_, w) in self.active.drain() {
                w.to.do_send(QueueUpdate::Restart);
            }
            return;
        }
        let now = now_ms();
        let (through, wait_ttl, opened) = {
            let a = self.gate.state();
            (a.through, a.wait_ttl, a.shuffle.is_some())
        };
        if opened && !self.pre.is_empty() {
            for (id, w) in std::mem::take(&mut self.pre) {
                let place = self.gate.state().place_of(&w.ticket);
                match place {
                    Some((seq, _)) => {
                        self.waiting.insert((seq, id), w);
                    }
                    None => w.to.do_send(QueueUpdate::Ended),
                }
            }
        }
        // Places the line has reached: admitted, or passed over.
        let still = self.waiting.split_off(&(through, 0));
        let reached = std::mem::replace(&mut self.waiting, still);
        for ((seq, id), mut w) in reached {
            let (update, standing) = self.update(&w, now);
            w.to.do_send(update);
            if matches!(standing, Some(Standing::Active { .. })) {
                // From the core's admission (its step's time) to the push here.
                if let Some(at) = self.gate.state().left_at(seq) {
                    crate::observe::queue_admission_pushed(now.saturating_sub(at));
                }
                w.position = 0;
                self.active.insert(id, w);
            }
        }
        // Waiting places that expired: a prefix of the line (places are taken in order).
        while let Some(entry) = self.waiting.first_entry() {
            let waits_from = self.gate.state().place_of(&entry.get().ticket).map_or(0, |(_, from)| from);
            if waits_from.saturating_add(wait_ttl) > now {
                break;
            }
            entry.remove().to.do_send(QueueUpdate::Ended);
        }
        // Admitted places that ran out or ended early, and sockets that have gone.
        let gone: Vec<u64> = self
            .active
            .iter()
            .filter(|(_, w)| !w.to.connected() || self.gate.standing(&w.ticket, now).is_err())
            .map(|(id, _)| *id)
            .collect();
        for id in gone {
            if let Some(w) = self.active.remove(&id) {
                w.to.do_send(QueueUpdate::Ended);
            }
        }
        // Positions, once a second.
        if self.positions_at.elapsed() >= POSITIONS_EVERY {
            self.positions_at = Instant::now();
            // Sockets that have gone are forgotten here.
            self.waiting.retain(|_, w| w.to.connected());
            self.pre.retain(|(_, w)| w.to.connected());
            let keys: Vec<(u64, u64)> = self.waiting.keys().copied().collect();
            for key in keys {
                let Some(w) = self.waiting.get(&key) else { continue };
                let (update, standing) = self.update(w, now);
                if let Some(Standing::Waiting { position, .. }) = standing {
                    if position != w.position {
                        w.to.do_send(update);
                        if let Some(w) = self.waiting.get_mut(&key) {
                            w.position = position;
                        }
                    }
                }
            }
        }
        crate::observe::queue_sockets(self.waiting.len() as u64, self.active.len() as u64);
    }
}

impl Actor for QueueWatch {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(crate::actors::MAILBOX);
        ctx.run_interval(TICK, |w, _| w.tick());
    }
}

/// Watch `ticket` (shown as `token`) for a socket that was just told `position`. A socket
/// that has gone is forgotten at the next pass over its kind.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Watch {
    pub ticket: Ticket,
    pub token: String,
    pub to: Recipient<QueueUpdate>,
    pub position: u64,
}

impl Handler<Watch> for QueueWatch {
    type Result = ();
    fn handle(&mut self, msg: Watch, _: &mut Context<Self>) {
        self.next_id += 1;
        let id = self.next_id;
        let w = Watcher { ticket: msg.ticket, token: msg.token, to: msg.to, position: msg.position };
        let place = self.gate.state().place_of(&msg.ticket);
        match place {
            Some(_) if msg.position == 0 => {
                self.active.insert(id, w);
            }
            Some((seq, _)) => {
                self.waiting.insert((seq, id), w);
            }
            // In the pre-queue: no place yet.
            None => self.pre.push((id, w)),
        }
    }
}
