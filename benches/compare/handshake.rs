//! Opening handshake latency (`handshake_p50/p99[_mt]`): wall time from the start of the
//! client's handshake on a connected TCP pair until both ends hold an open connection. raw:
//! tokio-tungstenite's `accept_async` and `client_async`; wsclose: `Config::accept` and
//! `Config::client_handshake` (the deadline, the connecting handle, the registry entry, the
//! handshake metrics, the wrap of both ends). Each pair is closed cleanly after the sample,
//! outside the timing.

use std::net::SocketAddr;
use std::time::Instant;

use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use wsclose::{Config, Registry};

use crate::harness::{Flavor, Plan, Row, interleave, latency_rows};
use crate::net::{close_frame, listener, read_to_end};

/// A connected TCP pair: (server side, client side).
async fn tcp_pair(l: &TcpListener, a: SocketAddr) -> (TcpStream, TcpStream) {
    let (client, accepted) = tokio::join!(TcpStream::connect(a), l.accept());
    let (server, client) = (accepted.expect("accept").0, client.expect("connect"));
    for tcp in [&server, &client] {
        tcp.set_nodelay(true).expect("nodelay");
    }
    (server, client)
}

async fn handshake_raw(l: &TcpListener, a: SocketAddr) -> f64 {
    let (s, c) = tcp_pair(l, a).await;
    let start = Instant::now();
    let (server, client) = tokio::join!(
        tokio_tungstenite::accept_async(s),
        tokio_tungstenite::client_async(format!("ws://{a}/"), c)
    );
    let d = start.elapsed();
    let (mut server, (client, _)) = (server.expect("accept"), client.expect("connect"));
    let peer = tokio::spawn(read_to_end(client));
    let _ = server.close(close_frame(1000)).await;
    read_to_end(server).await;
    peer.await.expect("peer task");
    d.as_secs_f64() * 1e6
}

async fn handshake_ws(config: &Config, l: &TcpListener, a: SocketAddr) -> f64 {
    let (s, c) = tcp_pair(l, a).await;
    let start = Instant::now();
    let (server, client) = tokio::join!(
        config.accept(s),
        config.client_handshake(format!("ws://{a}/"), c)
    );
    let d = start.elapsed();
    let (mut server, (client, _)) = (server.expect("accept"), client.expect("connect"));
    let peer = tokio::spawn(read_to_end(client));
    let report = server.close(1000, "").await.expect("valid code");
    assert_eq!(report.outcome, wsclose::Outcome::Clean, "{report}");
    peer.await.expect("peer task");
    d.as_secs_f64() * 1e6
}

pub(crate) fn bench_handshake(rt: &Runtime, flavor: Flavor, plan: &Plan, rows: &mut Vec<Row>) {
    let name = "handshake";
    if !plan.wants(&format!("{name}{}", flavor.suffix())) {
        return;
    }
    let samples = plan.close_samples;
    let (raw, ws) = flavor.run(rt, async move {
        // As a server runs it: with a registry, so the connection is listed while connecting.
        let config = Config::new().with_registry(Registry::new());
        let (l, a) = listener().await;
        for _ in 0..10 {
            handshake_raw(&l, a).await;
            handshake_ws(&config, &l, a).await;
        }
        interleave(
            samples,
            || handshake_raw(&l, a),
            || handshake_ws(&config, &l, a),
        )
        .await
    });
    rows.extend(latency_rows(name, flavor, &raw, &ws, "both ends; "));
}
