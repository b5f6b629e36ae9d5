//! Fault injection with the loopback proxy (tests/support/proxy.rs) between a wsclose endpoint
//! and a tokio-tungstenite peer: delay, stall one direction, cut mid-handshake, reset. Each close
//! ends exactly as docs/design.md's classification says: `clean` when the handshake completes within the deadline,
//! `timeout` at the deadline, `peer_gone` when the transport ends first.

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use wsclose::{Cause, Config, Outcome, Role, WireCode};

use support::pairs::{BOTH, Tt, Ws, bounded};
use support::proxy::{Direction, FaultProxy};
use support::recorder;
use support::timing::{DEADLINE, LATE, PROMPT, assert_at_deadline};

const CLOSES: &str = "websocket_closes_total";

/// `role` wrapped with `config`, a tokio-tungstenite peer on the other side, the proxy between
/// (the client connects to the proxy, the proxy to the server).
async fn via_proxy(role: Role, config: &Config) -> (Ws, Tt, FaultProxy) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = FaultProxy::start(listener.local_addr().unwrap())
        .await
        .unwrap();
    let addr = proxy.addr();
    let (server, client) = tokio::join!(
        async {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio_tungstenite::accept_async(tcp).await.unwrap()
        },
        async {
            let tcp = TcpStream::connect(addr).await.unwrap();
            tokio_tungstenite::client_async(format!("ws://{addr}/"), tcp)
                .await
                .unwrap()
                .0
        }
    );
    match role {
        Role::Server => (config.server(server), client, proxy),
        _ => (config.client(client), server, proxy),
    }
}

/// Direction in which the wrapped side's frames travel.
fn outbound(role: Role) -> Direction {
    match role {
        Role::Server => Direction::ServerToClient,
        _ => Direction::ClientToServer,
    }
}

fn inbound(role: Role) -> Direction {
    match role {
        Role::Server => Direction::ClientToServer,
        _ => Direction::ServerToClient,
    }
}

/// The peer reads (and so answers the Close) until its stream ends.
fn drain(mut peer: Tt) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move { while let Some(Ok(_)) = peer.next().await {} })
}

fn closes(m: &recorder::Metrics, role: Role, cause: &str, outcome: &str, expected: &str) -> u64 {
    m.counter(
        CLOSES,
        &[
            ("role", role.as_str()),
            ("cause", cause),
            ("outcome", outcome),
            ("expected", expected),
        ],
    )
}

#[tokio::test]
async fn delay_within_the_deadline_still_closes_clean() {
    let delay = Duration::from_millis(200);
    // Two delays fit many times over: a busy machine does not push the close past it.
    let deadline = Duration::from_secs(5);
    for role in BOTH {
        let (m, _g) = recorder::install();
        let config = Config::new().with_close_timeout(deadline).unwrap();
        let (mut ws, peer, proxy) = via_proxy(role, &config).await;
        proxy.set_delay(outbound(role), delay);
        proxy.set_delay(inbound(role), delay);
        let peer = drain(peer);
        let report = bounded(ws.close(1000, "")).await.unwrap();
        assert_eq!(
            (report.outcome, report.cause),
            (Outcome::Clean, Cause::App),
            "{role}: {report:?}"
        );
        assert_eq!(report.code_received, Some(WireCode::Valid(1000)));
        // Close out and its reply back: two delays, inside the deadline.
        let took = report.close_duration.unwrap();
        assert!(took >= 2 * delay && took < deadline, "{role}: {took:?}");
        assert_eq!(closes(&m, role, "app", "clean", "true"), 1);
        m.assert_balanced(role.as_str());
        bounded(peer).await.unwrap();
        proxy.stop().await;
    }
}

#[tokio::test]
async fn delay_past_the_deadline_times_out_at_the_deadline() {
    let deadline = DEADLINE;
    for role in BOTH {
        let (m, _g) = recorder::install();
        let config = Config::new().with_close_timeout(deadline).unwrap();
        let (mut ws, peer, proxy) = via_proxy(role, &config).await;
        // Our Close reaches the peer only long after the deadline, even if the deadline's timer
        // fires late: the reply cannot beat it.
        proxy.set_delay(outbound(role), 2 * (deadline + LATE));
        let peer = drain(peer);
        let started = Instant::now();
        let report = bounded(ws.close(1000, "")).await.unwrap();
        let took = started.elapsed();
        assert_eq!(
            (report.outcome, report.cause),
            (Outcome::Timeout, Cause::App),
            "{role}: {report:?}"
        );
        assert_eq!(report.code_received, None);
        assert_at_deadline(took, deadline, role);
        assert_eq!(closes(&m, role, "app", "timeout", "true"), 1);
        m.assert_balanced(role.as_str());
        proxy.stop().await;
        bounded(peer).await.unwrap();
    }
}

#[tokio::test]
async fn stalled_direction_times_out_at_the_deadline() {
    let deadline = DEADLINE;
    for role in BOTH {
        // Stalling our frames (the peer never sees the Close) and stalling the peer's frames
        // (its reply never arrives) both end at the deadline.
        for stalled in [outbound(role), inbound(role)] {
            let (m, _g) = recorder::install();
            let config = Config::new().with_close_timeout(deadline).unwrap();
            let (mut ws, peer, proxy) = via_proxy(role, &config).await;
            proxy.stall(stalled);
            let peer = drain(peer);
            let started = Instant::now();
            let report = bounded(ws.close(1001, "")).await.unwrap();
            let took = started.elapsed();
            assert_eq!(
                (report.outcome, report.cause),
                (Outcome::Timeout, Cause::App),
                "{role} {stalled:?}: {report:?}"
            );
            assert_eq!(report.code_sent, Some(WireCode::Valid(1001)));
            assert_eq!(report.code_received, None);
            assert_at_deadline(took, deadline, format!("{role} {stalled:?}"));
            assert_eq!(closes(&m, role, "app", "timeout", "true"), 1);
            m.assert_balanced(role.as_str());
            proxy.resume(stalled);
            proxy.stop().await;
            bounded(peer).await.unwrap();
        }
    }
}

#[tokio::test]
async fn cut_mid_close_handshake_is_peer_gone() {
    for role in BOTH {
        let (m, _g) = recorder::install();
        // The default 5 s close deadline.
        let config = Config::new();
        let (mut ws, peer, proxy) = via_proxy(role, &config).await;
        // Let 2 bytes of our Close frame through (its header), then cut the connection: the
        // peer never gets a whole Close, and we see the transport end.
        proxy.cut_after(outbound(role), 2);
        let peer = drain(peer);
        let started = Instant::now();
        let report = bounded(ws.close(1000, "")).await.unwrap();
        assert_eq!(
            (report.outcome, report.cause),
            (Outcome::PeerGone, Cause::App),
            "{role}: {report:?}"
        );
        assert_eq!(report.code_received, None);
        // Ended by the cut, not by the deadline.
        assert!(started.elapsed() < PROMPT, "{report:?}");
        assert_eq!(closes(&m, role, "app", "peer_gone", "true"), 1);
        m.assert_balanced(role.as_str());
        bounded(peer).await.unwrap();
        proxy.stop().await;
    }
}

#[tokio::test]
async fn cut_mid_opening_handshake_wraps_nothing() {
    let (m, _g) = recorder::install();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = FaultProxy::start(listener.local_addr().unwrap())
        .await
        .unwrap();
    // Cut after 40 bytes of the client's upgrade request.
    proxy.cut_after(Direction::ClientToServer, 40);
    let addr = proxy.addr();
    let (server, client) = tokio::join!(
        async {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio_tungstenite::accept_async(tcp).await
        },
        async {
            let tcp = TcpStream::connect(addr).await.unwrap();
            tokio_tungstenite::client_async(format!("ws://{addr}/"), tcp).await
        }
    );
    assert!(server.is_err() && client.is_err());
    // Nothing was wrapped, so nothing was counted: the opening handshake is not a connection.
    assert_eq!(m.counter_sum("websocket_connections_opened_total", &[]), 0);
    assert_eq!(m.counter_sum(CLOSES, &[]), 0);
    proxy.stop().await;
}

#[tokio::test]
async fn reset_while_open_is_transport_peer_gone() {
    for role in BOTH {
        let (m, _g) = recorder::install();
        let (mut ws, peer, proxy) = via_proxy(role, &Config::new()).await;
        assert!(proxy.wait_connections(1, Duration::from_secs(2)).await);
        proxy.reset_all();
        let err = bounded(ws.next()).await.unwrap().unwrap_err();
        assert_eq!(err.outcome(), Some(Outcome::PeerGone), "{role}: {err}");
        let report = bounded(ws.handle().closed()).await;
        assert_eq!(
            (report.outcome, report.cause),
            (Outcome::PeerGone, Cause::Transport),
            "{role}: {report:?}"
        );
        assert_eq!((report.code_sent, report.code_received), (None, None));
        assert_eq!(closes(&m, role, "transport", "peer_gone", "true"), 1);
        m.assert_balanced(role.as_str());
        drop(peer);
        proxy.stop().await;
    }
}

#[tokio::test]
async fn reset_during_close_is_peer_gone_before_the_deadline() {
    for role in BOTH {
        let (m, _g) = recorder::install();
        // The default 5 s close deadline.
        let config = Config::new();
        let (ws, peer, proxy) = via_proxy(role, &config).await;
        // The peer's reply is held back; the reset comes first.
        proxy.stall(inbound(role));
        let peer = drain(peer);
        let handle = ws.handle();
        let started = Instant::now();
        handle.start_close(1000, "").unwrap();
        assert!(
            proxy
                .wait_bytes(outbound(role), 1, Duration::from_secs(2))
                .await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        proxy.reset_all();
        let report = bounded(handle.closed()).await;
        assert_eq!(
            (report.outcome, report.cause),
            (Outcome::PeerGone, Cause::App),
            "{role}: {report:?}"
        );
        // Ended by the reset, not by the deadline.
        assert!(started.elapsed() < PROMPT, "{report:?}");
        assert_eq!(closes(&m, role, "app", "peer_gone", "true"), 1);
        m.assert_balanced(role.as_str());
        proxy.resume(inbound(role));
        bounded(peer).await.unwrap();
        proxy.stop().await;
    }
}
