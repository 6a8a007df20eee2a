//! Throughput of the pieces under the HTTP layer: store writes with and without the
//! durable flush (group commit); a seat map's hold and release through its mailbox; the
//! waiting queue's issue (durable) and admission; a room's append (durable) and its
//! fan-out to N in-process sessions. Run with `cargo bench --bench core`.

use actix::prelude::*;
use boxoffice::actors::directory::CreateRoom;
use boxoffice::actors::hub::{Deliver, Outbox, Subscriber};
use boxoffice::actors::keys::{Answer, Reserve};
use boxoffice::actors::room::{Author, Join, PostMessage, RoomKind};
use boxoffice::actors::seat_map::{CancelReservation, HoldSeats, SeatMapSnapshot};
use boxoffice::actors::waiting_queue::{Issue, QueuePolicy, TicketKey, WaitingQueue};
use boxoffice::actors::Registry;
use boxoffice::config::Cli;
use boxoffice::store::{Key, Store};
use clap::Parser;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures_util::future::join_all;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn store_writes(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("store");
    let rt = actix_rt::System::new();
    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Elements(1));
    g.bench_function("put (no flush)", |b| {
        let mut i = 0u64;
        b.iter(|| {
            i += 1;
            store.put(&Key::Wallet(i), &(i, [0u8; 32])).expect("put");
        })
    });
    g.bench_function("put + durable, one writer", |b| {
        let mut i = 0u64;
        b.iter_custom(|iters| {
            let start = Instant::now();
            rt.block_on(async {
                for _ in 0..iters {
                    i += 1;
                    store.put(&Key::Wallet(i), &(i, [0u8; 32])).expect("put");
                    store.durable().await.expect("durable");
                }
            });
            start.elapsed()
        })
    });
    // 256 writers at once share flushes: the figure is per write.
    g.bench_function("put + durable, 256 concurrent writers", |b| {
        let mut i = 0u64;
        b.iter_custom(|iters| {
            let start = Instant::now();
            rt.block_on(async {
                let mut done = 0;
                while done < iters {
                    let n = (iters - done).min(256);
                    let writes = (0..n).map(|k| {
                        let s = store.clone();
                        let key = i + k;
                        async move {
                            s.put(&Key::Wallet(key), &(key, [0u8; 32])).expect("put");
                            s.durable().await.expect("durable");
                        }
                    });
                    join_all(writes).await;
                    i += n;
                    done += n;
                }
            });
            start.elapsed()
        })
    });
    g.finish();
}

fn seat_map_hold_release(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf-8 path").to_string();
    let settings = Cli::parse_from(["boxoffice", "--no-demo", "--data-dir", &data]).settings.sanitize();
    let rt = actix_rt::System::new();
    let seat_map = rt.block_on(async {
        let store = Store::open(dir.path()).expect("store");
        let registry = Registry::start(store, settings).await.expect("registry");
        registry
            .start_seat_map(SeatMapSnapshot::new("bench".into(), (1..=50).map(|n| n.to_string()), 80_000))
            .expect("seat map")
    });
    let mut g = c.benchmark_group("seat_map");
    g.throughput(Throughput::Elements(2));
    g.bench_function("hold + release one seat", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            rt.block_on(async {
                for i in 0..iters {
                    let seat = (i % 50 + 1).to_string();
                    let hold = HoldSeats {
                        user: 1,
                        seats: vec![seat],
                        ttl: Duration::from_secs(300),
                        key: None,
                        booking: None,
                    };
                    let r = seat_map.send(hold).await.expect("mailbox").expect("hold");
                    seat_map
                        .send(CancelReservation { reservation: r.id, user: 1 })
                        .await
                        .expect("mailbox")
                        .expect("release");
                }
            });
            start.elapsed()
        })
    });
    g.finish();
}

fn queue_issue_admit(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = actix_rt::System::new();
    let policy = QueuePolicy {
        admit_rate: 1_000_000,
        max_active: u32::MAX,
        active_ttl: Duration::from_secs(3600),
        wait_ttl: Duration::from_secs(3600),
    };
    let (queue, gate) = rt.block_on(async {
        let store = Store::open(dir.path()).expect("store");
        let (queue, gate) = WaitingQueue::load(store, policy, TicketKey::new(b"bench")).expect("queue");
        (queue.start(), gate)
    });
    let mut user = 0u64;
    let mut g = c.benchmark_group("queue");
    g.throughput(Throughput::Elements(256));
    // 256 users take a token at once (each answered once durable), then wait until the
    // admission tick has made every one of them active.
    g.bench_function("issue + admit, 256 concurrent users", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            rt.block_on(async {
                for _ in 0..iters {
                    let issued = join_all((0..256).map(|_| {
                        user += 1;
                        queue.send(Issue { user })
                    }))
                    .await;
                    let tokens: Vec<String> =
                        issued.into_iter().map(|r| r.expect("mailbox").expect("issue").token).collect();
                    for (i, t) in tokens.iter().enumerate() {
                        let u = user - 255 + i as u64;
                        while !gate.check(t, u, boxoffice::time::now_ms()).expect("check").active {
                            actix_rt::time::sleep(Duration::from_millis(1)).await;
                        }
                    }
                }
            });
            start.elapsed()
        })
    });
    g.finish();
}

/// An in-process session: counts what it is delivered.
struct Counter {
    seen: Arc<AtomicU64>,
}

impl Actor for Counter {
    type Context = Context<Self>;
    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(1 << 16);
    }
}

impl Handler<Deliver> for Counter {
    type Result = ();
    fn handle(&mut self, _: Deliver, _: &mut Context<Self>) {
        self.seen.fetch_add(1, Ordering::Relaxed);
    }
}

fn room_append_fanout(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf-8 path").to_string();
    let settings = Cli::parse_from(["boxoffice", "--no-demo", "--data-dir", &data]).settings.sanitize();
    let rt = actix_rt::System::new();
    let registry = rt.block_on(async {
        let store = Store::open(dir.path()).expect("store");
        Registry::start(store, settings).await.expect("registry")
    });
    let author = Author { id: 1, name: "bench".into(), picture: None };
    let mut g = c.benchmark_group("room");
    for sessions in [0usize, 100, 1000] {
        let (room, seen) = rt.block_on(async {
            let others: Vec<u64> = (2..=10).collect();
            let create = CreateRoom {
                creator: author.clone(),
                kind: RoomKind::Group,
                name: Some("bench".into()),
                description: None,
                others,
            };
            let (id, _) = registry.directory().send(create).await.expect("mailbox").expect("room");
            let room = registry.room(id).expect("store").expect("room");
            let seen = Arc::new(AtomicU64::new(0));
            for i in 0..sessions {
                let counter = Counter { seen: seen.clone() }.start();
                let sub = Subscriber {
                    session: registry.hub().session_id(),
                    user: (i % 10) as u64 + 1,
                    recipient: counter.recipient(),
                    wire: Arc::new(boxoffice::http::chat::ws::ChatJson),
                    // The counter never drains the byte count: no byte bound here.
                    outbox: Outbox::new(1 << 16, usize::MAX / 2),
                    direct: None,
                };
                room.send(Join { subscriber: sub, since: None }).await.expect("mailbox").expect("join");
            }
            (room, seen)
        });
        g.throughput(Throughput::Elements(sessions.max(1) as u64 * 64));
        let name = format!("append 64 messages (durable), fan-out to {sessions} sessions");
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                rt.block_on(async {
                    for _ in 0..iters {
                        let target = seen.load(Ordering::Relaxed) + (sessions as u64) * 64;
                        let posts = (0..64).map(|i| {
                            room.send(PostMessage {
                                from: author.clone(),
                                content: Some(format!("message {i}")),
                                kind: "text".into(),
                                reply_to: None,
                                file: None,
                                images: Vec::new(),
                                system: false,
                                client_msg_id: None,
                            })
                        });
                        for r in join_all(posts).await {
                            r.expect("mailbox").expect("post");
                        }
                        while seen.load(Ordering::Relaxed) < target {
                            actix_rt::time::sleep(Duration::from_micros(200)).await;
                        }
                    }
                });
                start.elapsed()
            })
        });
    }
    g.finish();
}

/// One user's keyed holds, every one refused (the seat is someone else's), as in a hot
/// seat rush: each records its answer in the ledger. The cost must not grow with the
/// user's history: the first 1,000 of 10,000 are timed against the last 1,000 (printed),
/// then criterion times further requests of that user (10,000 keys behind them) against
/// a user with none.
fn ledger_history(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().expect("utf-8 path").to_string();
    let settings = Cli::parse_from(["boxoffice", "--no-demo", "--data-dir", &data]).settings.sanitize();
    let rt = actix_rt::System::new();
    let (registry, seat_map) = rt.block_on(async {
        let store = Store::open(dir.path()).expect("store");
        let registry = Registry::start(store, settings).await.expect("registry");
        let seat_map = registry
            .start_seat_map(SeatMapSnapshot::new("ledger".into(), ["1".to_string()], 80_000))
            .expect("seat map");
        let taken =
            HoldSeats { user: 2, seats: vec!["1".into()], ttl: Duration::from_secs(3600), key: None, booking: None };
        seat_map.send(taken).await.expect("mailbox").expect("hold");
        (registry, seat_map)
    });
    let run = |user: u64, from: u64, n: u64| {
        let wallet = registry.keys(user).expect("key gate");
        let seat_map = seat_map.clone();
        let start = Instant::now();
        rt.block_on(async move {
            for k in from..from + n {
                let msg = Reserve {
                    key: format!("key-{k}"),
                    fingerprint: [(k % 251) as u8; 32],
                    seat_map: seat_map.clone(),
                    seats: vec!["1".into()],
                    ttl: Duration::from_secs(300),
                };
                let answer = wallet.send(msg).await.expect("mailbox").expect("answer");
                assert!(matches!(answer, Answer::ReserveRefused(_)));
            }
        });
        start.elapsed()
    };
    let blocks: Vec<Duration> = (0..10).map(|b| run(1, b * 1000, 1000)).collect();
    let (first, last) = (blocks[0], blocks[9]);
    println!(
        "ledger: one user's 10,000 keyed holds: first 1,000 {:.1} ms, last 1,000 {:.1} ms (last/first {:.2})",
        first.as_secs_f64() * 1e3,
        last.as_secs_f64() * 1e3,
        last.as_secs_f64() / first.as_secs_f64()
    );
    let mut g = c.benchmark_group("ledger");
    g.throughput(Throughput::Elements(1));
    let mut next = 10_000u64;
    g.bench_function("keyed hold refused, user with 10,000 keys", |b| {
        b.iter_custom(|iters| {
            let t = run(1, next, iters);
            next += iters;
            t
        })
    });
    let mut fresh = 1_000_000u64;
    g.bench_function("keyed hold refused, a new user each sample", |b| {
        b.iter_custom(|iters| {
            fresh += 1;
            run(fresh, 0, iters)
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_millis(500));
    targets = store_writes, seat_map_hold_release, queue_issue_admit, room_append_fanout, ledger_history
}
criterion_main!(benches);
