//! Throughput of the pieces under the HTTP layer: store writes with and without the
//! durable flush (group commit), and a seat map's hold and release through its mailbox.
//! Run with `cargo bench --bench core`.

use boxoffice::actors::seat_map::{CancelReservation, HoldSeats, SeatMapSnapshot};
use boxoffice::actors::Registry;
use boxoffice::config::Cli;
use boxoffice::store::{Key, Store};
use clap::Parser;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures_util::future::join_all;
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

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_millis(500));
    targets = store_writes, seat_map_hold_release
}
criterion_main!(benches);
