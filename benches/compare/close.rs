//! Clean close handshake latency (`close_latency_<side>_init_p50/p99[_mt]`): wall time from the
//! close call until the initiator's transport is closed, server- or client-initiated, over a
//! fresh connection per sample that has carried one message each way. Percentiles of the
//! interleaved raw and wsclose samples.

use std::net::SocketAddr;
use std::time::Instant;

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio_tungstenite::tungstenite::Message;
use wsclose::WebSocket;

use crate::harness::{Flavor, Plan, Row, interleave, latency_rows};
use crate::net::{close_frame, listener, pair_on, read_to_end};

/// One message each way before a close is timed. A connection's first read faults in its
/// 128 KiB read buffer; whether glibc serves that buffer from fresh pages or reused ones
/// depends on what the previous connection freed, which made the untouched-connection latency
/// bimodal (≈ 22 µs or ≈ 70 µs, for raw and wsclose alike). Closes in service follow traffic.
async fn warm_up<S, E>(a: &mut S, b: &mut S)
where
    S: Sink<Message> + Stream<Item = Result<Message, E>> + Unpin,
{
    async fn pass<S, E>(from: &mut S, to: &mut S)
    where
        S: Sink<Message> + Stream<Item = Result<Message, E>> + Unpin,
    {
        assert!(
            from.send(Message::text("warm")).await.is_ok(),
            "warm-up send"
        );
        assert!(matches!(to.next().await, Some(Ok(_))), "warm-up message");
    }
    pass(a, b).await;
    pass(b, a).await;
}

/// Raw: `close()`, read until the stream ends, drop the socket.
async fn close_raw(l: &TcpListener, a: SocketAddr, server_first: bool) -> f64 {
    let (mut s, mut c) = pair_on(l, a).await;
    warm_up(&mut s, &mut c).await;
    let (mut init, peer) = if server_first { (s, c) } else { (c, s) };
    let peer = tokio::spawn(read_to_end(peer));
    tokio::task::yield_now().await;
    let start = Instant::now();
    let _ = init.close(close_frame(1000)).await;
    while let Some(Ok(_)) = init.next().await {}
    drop(init);
    let d = start.elapsed();
    peer.await.expect("peer task");
    d.as_secs_f64() * 1e6
}

/// wsclose: `close(1000, "")` returns once the transport is closed.
async fn close_ws(l: &TcpListener, a: SocketAddr, server_first: bool) -> f64 {
    let (s, c) = pair_on(l, a).await;
    let (mut s, mut c) = (WebSocket::server(s), WebSocket::client(c));
    warm_up(&mut s, &mut c).await;
    let (mut init, peer) = if server_first { (s, c) } else { (c, s) };
    let peer = tokio::spawn(read_to_end(peer));
    tokio::task::yield_now().await;
    let start = Instant::now();
    let report = init.close(1000, "").await.expect("valid code");
    let d = start.elapsed();
    assert_eq!(report.outcome, wsclose::Outcome::Clean, "{report}");
    peer.await.expect("peer task");
    d.as_secs_f64() * 1e6
}

pub(crate) fn bench_close_latency(rt: &Runtime, flavor: Flavor, plan: &Plan, rows: &mut Vec<Row>) {
    let samples = plan.close_samples;
    for (side, server_first) in [("server", true), ("client", false)] {
        let name = format!("close_latency_{side}_init");
        if !plan.wants(&format!("{name}{}", flavor.suffix())) {
            continue;
        }
        let (raw, ws) = flavor.run(rt, async move {
            let (l, a) = listener().await;
            // Warm-up, discarded: ten closes a side.
            for _ in 0..10 {
                close_raw(&l, a, server_first).await;
                close_ws(&l, a, server_first).await;
            }
            interleave(
                samples,
                || close_raw(&l, a, server_first),
                || close_ws(&l, a, server_first),
            )
            .await
        });
        rows.extend(latency_rows(&name, flavor, &raw, &ws, ""));
    }
}
