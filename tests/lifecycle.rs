//! Server lifecycle over real sockets: graceful shutdown through the registry (1,000 clients,
//! stragglers, connections arriving during the drain), keepalive, maximum lifetime.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use wsclose::{Cause, Config, Outcome, Registry, Role, WireCode};

use support::pairs::{bounded, wrapped_and_raw, wrapped_and_tt};
use support::raw::OP_PING;
use support::recorder;
use support::timing::{DEADLINE, LATE, assert_at_deadline};

/// An echo server whose connections register in the config's registry. Each connection's
/// handle is also sent to the test.
async fn server(config: Config) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let config = config.clone();
            tokio::spawn(async move {
                let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                let mut ws = config.server(ws);
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() {
                        let _ = futures_util::SinkExt::send(&mut ws, msg).await;
                    }
                }
            });
        }
    });
    (addr, task)
}

/// A well-behaved client: reads until the end and returns the Close frame it received, and
/// when.
async fn client(addr: SocketAddr) -> (Option<(u16, String)>, Instant) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/"), tcp)
        .await
        .unwrap();
    let mut close = None;
    let mut at = Instant::now();
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(Message::Close(Some(f))) => {
                close = Some((u16::from(f.code), f.reason.to_string()));
                at = Instant::now();
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    (close, at)
}

async fn wait_registered(registry: &Registry, n: usize) {
    bounded(async {
        while registry.len() < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn shutdown_closes_a_thousand_clients_with_1001_within_the_grace_period() {
    const CLIENTS: usize = 1000;
    let (m, _g) = recorder::install();
    let registry = Registry::new();
    let (addr, accept) = server(Config::new().with_registry(registry.clone())).await;
    let mut clients = JoinSet::new();
    for _ in 0..CLIENTS {
        clients.spawn(client(addr));
    }
    wait_registered(&registry, CLIENTS).await;

    let grace = Duration::from_secs(5);
    let started = Instant::now();
    let report = bounded(registry.shutdown(1001, grace)).await.unwrap();
    accept.abort();
    assert_eq!(report.connections, CLIENTS);
    assert_eq!(report.count(Outcome::Clean), CLIENTS, "{report}");
    assert_eq!(report.stragglers, 0);
    assert!(report.elapsed < grace);
    assert!(registry.is_empty());

    let mut got = 0;
    while let Some(r) = bounded(clients.join_next()).await {
        let (close, at) = r.unwrap();
        assert_eq!(close, Some((1001, "server shutting down".to_owned())));
        assert!(at < started + grace);
        got += 1;
    }
    assert_eq!(got, CLIENTS);
    assert_eq!(
        m.closes("server", "shutdown", "clean"),
        CLIENTS as u64,
        "{}",
        m.dump()
    );
    assert_eq!(
        m.gauge("websocket_connections_active", &[("role", "server")]),
        0.0
    );
    m.assert_balanced("server");
}

#[tokio::test]
async fn a_client_that_ignores_the_close_is_terminated_as_a_straggler() {
    let (m, _g) = recorder::install();
    let registry = Registry::new();
    let config = Config::new().with_registry(registry.clone());
    // One well-behaved peer and one that never answers.
    let (good, mut good_peer) = wrapped_and_tt(Role::Server, &config).await;
    tokio::spawn(async move { while let Some(Ok(_)) = good_peer.next().await {} });
    let (silent, mut silent_peer) = wrapped_and_raw(Role::Server, &config).await;
    let grace = DEADLINE;
    let started = Instant::now();
    let report = bounded(registry.shutdown(1012, grace)).await.unwrap();
    let took = started.elapsed();
    // The straggler is terminated at the end of the grace period, not at its own 5 s close
    // deadline, nor after a second grace period.
    assert_at_deadline(took, grace, "the shutdown");
    assert_eq!(report.connections, 2);
    assert_eq!(report.stragglers, 1);
    assert_eq!(
        (report.count(Outcome::Clean), report.count(Outcome::Timeout)),
        (1, 1),
        "{report}"
    );
    let s = silent.report().unwrap();
    assert_eq!(
        (s.outcome, s.cause, s.code_sent),
        (
            Outcome::Timeout,
            Cause::Shutdown,
            Some(WireCode::Valid(1012))
        )
    );
    assert_eq!(
        good.report().unwrap().code_received,
        Some(WireCode::Valid(1012))
    );
    // The silent peer got the Close frame, then the transport was cut.
    let frames = silent_peer
        .read_all_until_eof(Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(
        frames
            .iter()
            .filter(|f| f.close_code() == Some(1012))
            .count(),
        1
    );
    let sent = [
        ("role", "server"),
        ("direction", "sent"),
        ("code", "service_restart"),
    ];
    assert_eq!(m.counter("websocket_close_frames_total", &sent), 2);
    m.assert_balanced("server");
}

#[tokio::test]
async fn connections_wrapped_during_the_drain_are_closed_at_once() {
    let registry = Registry::new();
    let config = Config::new().with_registry(registry.clone());
    // A silent peer keeps the drain going until the test lets it end, well within the grace
    // period: the late connection is wrapped during the drain however slow the machine is.
    let (_silent, silent_peer) = wrapped_and_raw(Role::Server, &config).await;
    let shutdown = {
        let registry = registry.clone();
        tokio::spawn(async move { registry.shutdown(1001, Duration::from_secs(5)).await })
    };
    bounded(async {
        while !registry.is_draining() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let (late, mut raw) = wrapped_and_raw(Role::Server, &config).await;
    let frame = raw
        .read_frame_timeout(Duration::from_secs(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        frame.close_code(),
        Some(1001),
        "closed at once with the drain's code"
    );
    raw.send_close(Some(1001), b"").await.unwrap();
    let report = bounded(late.handle().closed()).await;
    assert_eq!(
        (report.outcome, report.cause),
        (Outcome::Clean, Cause::Shutdown)
    );
    assert!(
        !shutdown.is_finished(),
        "the drain waits for the silent peer"
    );
    // The silent peer goes away: the last connection ends and so does the drain.
    drop(silent_peer);
    let total = bounded(shutdown).await.unwrap().unwrap();
    assert_eq!(
        total.connections, 2,
        "the shutdown waited for the late connection too: {total}"
    );
    assert_eq!(total.stragglers, 0, "{total}");
}

#[tokio::test]
async fn shutdown_refuses_a_forbidden_code() {
    let registry = Registry::new();
    let err = registry
        .shutdown(1006, Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(err.is_invalid_close_code());
    assert!(!registry.is_draining(), "nothing started");
}

#[tokio::test]
async fn keepalive_closes_a_peer_that_stops_answering() {
    let (m, _g) = recorder::install();
    // Longer than `LATE`, so that a close that waited for a second keepalive round, or for the
    // 5 s close deadline, is told apart from one that ends when the first round fails.
    let (interval, timeout) = (Duration::from_millis(100), DEADLINE);
    let config = Config::new().with_keepalive(interval, timeout).unwrap();
    let (mut ws, mut raw) = wrapped_and_raw(Role::Server, &config).await;
    let started = Instant::now();
    // The application keeps reading; the raw peer reads pings but never answers.
    let reader = tokio::spawn(async move {
        while let Some(Ok(_)) = ws.next().await {}
        ws.report().unwrap()
    });
    let first = raw
        .read_frame_timeout(Duration::from_secs(2))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.opcode, OP_PING);
    let report = bounded(reader).await.unwrap();
    let took = started.elapsed();
    assert_eq!(
        (report.outcome, report.cause),
        (Outcome::Timeout, Cause::Keepalive),
        "{report:?}"
    );
    assert_eq!(report.code_sent, Some(WireCode::Valid(1011)));
    // The first ping goes out after `interval`; no pong within `timeout`: the end.
    assert_at_deadline(took, interval + timeout, "the keepalive close");
    assert_eq!(m.closes("server", "keepalive", "timeout"), 1);
    drop(raw);
}

#[tokio::test]
async fn keepalive_never_closes_a_healthy_peer() {
    // The pong comes back within a millisecond or so; the timeout leaves room for a runtime
    // thread kept off the CPU for a while. Were pongs not counted, the first round would end
    // the connection after `interval + timeout`, well within the watch.
    let (interval, timeout) = (Duration::from_millis(50), Duration::from_millis(500));
    let watch = 3 * timeout;
    let config = Config::new().with_keepalive(interval, timeout).unwrap();
    let (mut ws, mut peer) = wrapped_and_tt(Role::Server, &config).await;
    let pongs = tokio::spawn(async move {
        // tokio-tungstenite answers pings while it is read.
        let mut pings = 0;
        while let Some(Ok(msg)) = peer.next().await {
            if msg.is_ping() {
                pings += 1;
            }
        }
        pings
    });
    let handle = ws.handle();
    let reader = tokio::spawn(async move { while let Some(Ok(_)) = ws.next().await {} });
    tokio::time::sleep(watch).await;
    assert_eq!(handle.state(), wsclose::State::Open);
    let report = bounded(handle.close(1000, "")).await.unwrap();
    assert_eq!((report.outcome, report.cause), (Outcome::Clean, Cause::App));
    bounded(reader).await.unwrap();
    let pings = bounded(pongs).await.unwrap();
    assert!(
        pings >= 10,
        "{pings} pings in {watch:?} at a {interval:?} interval"
    );
}

#[tokio::test]
async fn keepalive_settings_are_validated() {
    let err = Config::new()
        .with_keepalive(Duration::ZERO, Duration::from_secs(1))
        .unwrap_err();
    assert!(err.is_config());
    let err = Config::new()
        .with_max_lifetime(Duration::from_secs(1), Duration::from_secs(2))
        .unwrap_err();
    assert!(err.is_config());
    assert!(
        Config::new()
            .with_lifetime_close_code(1005)
            .unwrap_err()
            .is_invalid_close_code()
    );
}

#[tokio::test]
async fn lifetime_closes_within_the_jitter_window() {
    const N: usize = 20;
    let (m, _g) = recorder::install();
    // A jitter window much wider than `LATE`: a runtime thread kept off the CPU for a while
    // delays the ends it covers, but cannot bunch them all together.
    let (max, jitter) = (Duration::from_secs(2), Duration::from_millis(1500));
    let config = Config::new().with_max_lifetime(max, jitter).unwrap();
    let mut set = JoinSet::new();
    for _ in 0..N {
        let (mut ws, mut peer) = wrapped_and_tt(Role::Server, &config).await;
        let opened = Instant::now();
        set.spawn(async move {
            let close = tokio::spawn(async move {
                let mut code = None;
                while let Some(Ok(msg)) = peer.next().await {
                    if let Message::Close(Some(f)) = msg {
                        code = Some(u16::from(f.code));
                    }
                }
                code
            });
            while let Some(Ok(_)) = ws.next().await {}
            let report = ws.report().unwrap();
            let lived = opened.elapsed();
            (report, lived, close.await.unwrap())
        });
    }
    let mut lives = Vec::new();
    while let Some(r) = bounded(set.join_next()).await {
        let (report, seen, code) = r.unwrap();
        assert_eq!(
            (report.outcome, report.cause),
            (Outcome::Clean, Cause::Lifetime),
            "{report:?}"
        );
        assert_eq!(code, Some(1001));
        // The lifetime counts from the wrap, as the report's duration does (the test's own clock
        // starts a little later): never shorter than `max - jitter`.
        let lived = report.connection_duration;
        assert!(lived >= max - jitter, "{lived:?}");
        // Not longer than `max`, give or take a busy machine; seen by the test's own clock.
        assert!(seen < max + LATE, "{seen:?}");
        lives.push(lived);
    }
    let (first, last) = (*lives.iter().min().unwrap(), *lives.iter().max().unwrap());
    assert!(
        last - first > jitter / 5,
        "ends are spread by the jitter: {first:?} to {last:?}"
    );
    // The jitter shortens lifetimes, never lengthens them: the shortest of 20 is drawn near
    // `max - jitter`, far below `max` (a jitter added to `max` would put every one at `max` or
    // later).
    assert!(
        first < max,
        "the shortest lifetime is {first:?}, drawn from [{:?}, {max:?}]",
        max - jitter
    );
    assert_eq!(m.closes("server", "lifetime", "clean"), N as u64);
}
