//! Echo round-trip rate (`echo_<size>_<n>conn[_mt]`): 1 or 64 clients, each sending a message
//! and waiting for the server's echo before sending the next, 16 B and 4 KiB, both ends
//! wrapped for wsclose. Round trips per second, raw and wsclose interleaved. Also criterion's
//! view of the single-connection 16 B echo, after the table (full and quick runs).

use std::time::{Duration, Instant};

use criterion::Criterion;
use futures_util::future::join_all;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::runtime::Runtime;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use wsclose::WebSocket;

use crate::harness::{Clock, Flavor, Mode, Plan, Row, Timer, current_thread, interleave, rate_row};
use crate::net::{Tt, Ws, echo, pairs};

/// Drives `round_trips` sequential round trips on each client at once; returns round trips/s.
async fn echo_clients<S, E>(clients: &mut [S], round_trips: usize, size: usize, clock: Clock) -> f64
where
    S: Stream<Item = Result<Message, E>> + Sink<Message> + Unpin,
{
    let payload = Bytes::from(vec![0x5a; size]);
    let start = Timer::start(clock);
    join_all(clients.iter_mut().map(|c| {
        let payload = payload.clone();
        async move {
            for _ in 0..round_trips {
                if c.send(Message::Binary(payload.clone())).await.is_err() {
                    panic!("echo send failed");
                }
                match c.next().await {
                    Some(Ok(m)) if m.len() == size => {}
                    _ => panic!("echo reply missing"),
                }
            }
        }
    }))
    .await;
    (clients.len() * round_trips) as f64 / start.secs()
}

/// [`echo_clients`] on clients kept behind a lock, so that the raw and the wsclose closures of
/// [`interleave`] can each lend theirs out for one repetition (uncontended: one lock per
/// repetition, outside the timed stretch).
async fn echo_locked<S, E>(
    clients: &tokio::sync::Mutex<Vec<S>>,
    round_trips: usize,
    size: usize,
    clock: Clock,
) -> f64
where
    S: Stream<Item = Result<Message, E>> + Sink<Message> + Unpin,
{
    echo_clients(&mut clients.lock().await, round_trips, size, clock).await
}

async fn echo_setup(conns: usize) -> (Vec<Tt>, Vec<Ws>) {
    let (servers, raw_clients) = pairs(conns).await;
    for s in servers {
        tokio::spawn(echo(s));
    }
    let (servers, clients) = pairs(conns).await;
    for s in servers {
        tokio::spawn(echo(WebSocket::server(s)));
    }
    let ws_clients = clients.into_iter().map(WebSocket::client).collect();
    (raw_clients, ws_clients)
}

pub(crate) fn bench_echo(rt: &Runtime, flavor: Flavor, plan: &Plan, rows: &mut Vec<Row>) {
    let (reps, clock) = (plan.reps, flavor.clock());
    for (conns, rts) in [
        (1, plan.echo_round_trips),
        (64, plan.echo_round_trips_per_conn_64),
    ] {
        for (size, label) in [(16, "16B"), (4096, "4KiB")] {
            let name = format!("echo_{label}_{conns}conn{}", flavor.suffix());
            if !plan.wants(&name) {
                continue;
            }
            let (raw, ws) = flavor.run(rt, async move {
                let (raw, ws) = echo_setup(conns).await;
                let (raw, ws) = (tokio::sync::Mutex::new(raw), tokio::sync::Mutex::new(ws));
                // Warm-up: allocations, socket buffers, branch predictors.
                echo_locked(&raw, rts / 10 + 1, size, clock).await;
                echo_locked(&ws, rts / 10 + 1, size, clock).await;
                interleave(
                    reps,
                    || echo_locked(&raw, rts, size, clock),
                    || echo_locked(&ws, rts, size, clock),
                )
                .await
            });
            rows.push(rate_row(
                &name,
                "rt/s",
                &raw,
                &ws,
                format!(
                    "{conns} conn x {rts} round trips, both ends wrapped; {}",
                    flavor.describe()
                ),
            ));
            // Dropping the clients ends the echo tasks; let them finish before the next row.
            rt.block_on(async { tokio::time::sleep(Duration::from_millis(50)).await });
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Criterion view (full and quick runs): the single-connection echo, with criterion's statistics
// ---------------------------------------------------------------------------------------------

pub(crate) fn criterion_echo(plan: &Plan) {
    if plan.mode == Mode::Smoke || !plan.wants("criterion") && plan.only.is_some() {
        return;
    }
    let rt = current_thread();
    let (raw, ws) = rt.block_on(echo_setup(1));
    let raw = std::cell::RefCell::new(raw);
    let ws = std::cell::RefCell::new(ws);
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
        .configure_from_args();
    let mut g = c.benchmark_group("echo_16B_1conn");
    g.bench_function("raw", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            rt.block_on(echo_clients(
                &mut raw.borrow_mut(),
                iters as usize,
                16,
                Clock::Wall,
            ));
            start.elapsed()
        })
    });
    g.bench_function("wsclose", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            rt.block_on(echo_clients(
                &mut ws.borrow_mut(),
                iters as usize,
                16,
                Clock::Wall,
            ));
            start.elapsed()
        })
    });
    g.finish();
    c.final_summary();
}
