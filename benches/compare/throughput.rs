//! One-way send throughput (`send_<size>_<direction>[_mt]`): one end feeds 16 B or 64 KiB
//! messages (one flush at the end) while the other reads them, server to client and client to
//! server, over a fresh connection per repetition. Messages per second (MiB/s for 64 KiB), raw
//! and wsclose interleaved. On the multi-thread runtime the receiver runs in a task of its own.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio_tungstenite::tungstenite::{Bytes, Message};
use wsclose::WebSocket;

use crate::harness::{Clock, Flavor, Plan, Row, Timer, interleave, median, rate_row};
use crate::net::{close_frame, listener, pair_on, read_to_end};

/// Sends `count` messages of `size` bytes (`feed` per message, one flush at the end).
async fn feed_all<S: Sink<Message> + Unpin>(tx: &mut S, count: usize, size: usize) {
    let payload = Bytes::from(vec![0xa5; size]);
    for _ in 0..count {
        if tx.feed(Message::Binary(payload.clone())).await.is_err() {
            panic!("feed failed");
        }
    }
    if tx.flush().await.is_err() {
        panic!("flush failed");
    }
}

/// Reads until `count` messages of `size` bytes have arrived.
async fn receive_all<R, F>(rx: &mut R, count: usize, size: usize)
where
    R: Stream<Item = Result<Message, F>> + Unpin,
{
    let mut got = 0;
    while got < count {
        match rx.next().await {
            Some(Ok(m)) if m.len() == size => got += 1,
            _ => panic!("receiver ended early"),
        }
    }
}

/// Sends `count` messages (`feed`, one flush at the end) and waits until the receiver has them
/// all, both in this task; returns messages/s.
pub(crate) async fn one_way<S, R, E, F>(
    tx: &mut S,
    rx: &mut R,
    count: usize,
    size: usize,
    clock: Clock,
) -> f64
where
    S: Sink<Message> + Unpin,
    R: Stream<Item = Result<Message, F>> + Unpin,
{
    let start = Timer::start(clock);
    tokio::join!(feed_all(tx, count, size), receive_all(rx, count, size));
    let _: Option<E> = None;
    count as f64 / start.secs()
}

/// [`one_way`] with the receiver in a task of its own, as two ends of a connection are in a
/// service: on the multi-thread runtime the two may run on different workers. Returns
/// (messages/s by wall time, the sender, the receiver).
async fn one_way_spawned<S, R, F>(mut tx: S, mut rx: R, count: usize, size: usize) -> (f64, S, R)
where
    S: Sink<Message> + Unpin,
    R: Stream<Item = Result<Message, F>> + Unpin + Send + 'static,
    F: Send + 'static,
{
    let start = Timer::start(Clock::Wall);
    let receiver = tokio::spawn(async move {
        receive_all(&mut rx, count, size).await;
        rx
    });
    feed_all(&mut tx, count, size).await;
    let rx = receiver.await.expect("receiver task");
    (count as f64 / start.secs(), tx, rx)
}

/// [`one_way`] on the current-thread runtime, [`one_way_spawned`] on the multi-thread one.
async fn one_way_on<S, R, F>(
    flavor: Flavor,
    mut tx: S,
    mut rx: R,
    count: usize,
    size: usize,
) -> (f64, S, R)
where
    S: Sink<Message> + Unpin,
    R: Stream<Item = Result<Message, F>> + Unpin + Send + 'static,
    F: Send + 'static,
{
    match flavor {
        Flavor::Current => {
            let rate = one_way::<_, _, (), _>(&mut tx, &mut rx, count, size, flavor.clock()).await;
            (rate, tx, rx)
        }
        Flavor::Multi => one_way_spawned(tx, rx, count, size).await,
    }
}

/// One message stream over a fresh connection (so that no run inherits another's socket state):
/// messages/s. Both ends are ended, untimed, before it returns.
async fn send_run(
    flavor: Flavor,
    wrapped: bool,
    l: &TcpListener,
    a: SocketAddr,
    s2c: bool,
    count: usize,
    size: usize,
) -> f64 {
    let (s, c) = pair_on(l, a).await;
    if wrapped {
        let (s, c) = (WebSocket::server(s), WebSocket::client(c));
        let (tx, rx) = if s2c { (s, c) } else { (c, s) };
        let (rate, tx, rx) = one_way_on(flavor, tx, rx, count, size).await;
        let h = tx.handle();
        let _ = tokio::join!(h.close(1000, ""), read_to_end(rx));
        rate
    } else {
        let (tx, rx) = if s2c { (s, c) } else { (c, s) };
        let (rate, mut tx, rx) = one_way_on(flavor, tx, rx, count, size).await;
        let _ = tx.close(close_frame(1000)).await;
        tokio::join!(read_to_end(tx), read_to_end(rx));
        rate
    }
}

pub(crate) fn bench_send(rt: &Runtime, flavor: Flavor, plan: &Plan, rows: &mut Vec<Row>) {
    let reps = plan.reps;
    for (size, label, count) in [
        (16, "16B", plan.send_small),
        (64 * 1024, "64KiB", plan.send_large),
    ] {
        for dir in ["server_to_client", "client_to_server"] {
            let name = format!("send_{label}_{dir}{}", flavor.suffix());
            if !plan.wants(&name) {
                continue;
            }
            let s2c = dir == "server_to_client";
            let (raw, ws) = flavor.run(rt, async move {
                let (l, a) = listener().await;
                let run = |wrapped| send_run(flavor, wrapped, &l, a, s2c, count, size);
                run(false).await;
                run(true).await;
                interleave(reps, || run(false), || run(true)).await
            });
            let mib = |v: &[f64]| -> Vec<f64> {
                v.iter()
                    .map(|r| r * size as f64 / (1024.0 * 1024.0))
                    .collect()
            };
            let mut row = if size >= 1024 {
                rate_row(&name, "MiB/s", &mib(&raw), &mib(&ws), String::new())
            } else {
                rate_row(&name, "msg/s", &raw, &ws, String::new())
            };
            let receiver = match flavor {
                Flavor::Current => "",
                Flavor::Multi => ", receiver in a task of its own",
            };
            row.note = format!(
                "{count} msgs; raw {:.0} msg/s {:.1} MiB/s, wsclose {:.0} msg/s {:.1} MiB/s; {}{receiver}",
                median(&raw),
                median(&mib(&raw)),
                median(&ws),
                median(&mib(&ws)),
                flavor.describe(),
            );
            rows.push(row);
            rt.block_on(async { tokio::time::sleep(Duration::from_millis(50)).await });
        }
    }
}
