//! A runtime torn down with connections open, closing and connecting (what a server does when
//! it returns from `main` on SIGTERM without a drain) ends every one of them as an expected end:
//! never `internal_error`, never a WARN. Open connections (their task dropped with the runtime,
//! so their last handle too) count as `cause="shutdown"`; a close under way keeps its cause;
//! the outcome is what happened on the wire (`peer_gone` here: the silent peers never answer).

mod support;

#[path = "support/libraries.rs"]
mod libraries;

use futures_util::StreamExt;
use tokio::net::TcpListener;
use tracing::Level;
use wsclose::{Cause, Config, Handle, Outcome, Registry, Role, State};

use support::flavor::Flavor;
use support::{logs, recorder};

/// Builds the connections of every role of `F` inside `rt`, drops `rt`, and checks the ends.
fn torn_down<F: Flavor>(rt: tokio::runtime::Runtime, current_thread: bool) {
    let (logs, _logs) = logs::capture();
    let (metrics, _metrics) = recorder::install();
    let registry = Registry::new();
    let config = Config::new().with_registry(registry.clone());
    let (open, closing, connecting, _peers) = rt.block_on(async {
        let (mut open, mut closing, mut peers) = (Vec::new(), Vec::new(), Vec::new());
        for &role in F::ROLES {
            // Open, held by a task that reads (the application's handler).
            let (mut ws, peer) = F::with_raw(role, &config).await;
            open.push(ws.handle());
            tokio::spawn(async move { while ws.next().await.is_some() {} });
            peers.push(peer);
            // Closing: our Close is on the wire and the peer never answers.
            let (mut ws, peer) = F::with_raw(role, &config).await;
            assert!(ws.handle().start_close(4000, "bye").unwrap());
            closing.push(ws.handle());
            tokio::spawn(async move { while ws.next().await.is_some() {} });
            peers.push(peer);
        }
        // Connecting: a server handshake whose client sends nothing, polled by its task.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        let handshake = config.accept(tcp);
        let connecting = handshake.handle();
        tokio::spawn(handshake);
        support::pairs::until(|| registry.connecting() == 1).await;
        (open, closing, connecting, (peers, client))
    });
    let flavor = if current_thread {
        "current-thread"
    } else {
        "multi-thread"
    };
    assert_eq!(registry.len() + registry.connecting(), 2 * open.len() + 1);
    drop(rt);

    let check = |what: &str, h: &Handle, cause: Cause| {
        let report = h
            .report()
            .unwrap_or_else(|| panic!("{flavor}: {what} {:?} has no report", h.role()));
        assert_eq!(h.state(), State::Closed, "{flavor}: {what}");
        assert_eq!(
            report.outcome,
            Outcome::PeerGone,
            "{flavor}: {what}: {report:?}"
        );
        assert_eq!(report.cause, cause, "{flavor}: {what}: {report:?}");
    };
    for h in &open {
        check("open", h, Cause::Shutdown);
    }
    for h in &closing {
        check("closing", h, Cause::App);
    }
    assert_eq!(connecting.state(), State::Closed, "{flavor}: connecting");
    assert!(
        registry.is_empty() && registry.connecting() == 0,
        "{flavor}"
    );

    if current_thread {
        // Everything ran and was dropped on this thread: its recorder and its logs saw it all.
        for role in F::ROLES {
            let r = role.as_str();
            assert_eq!(
                metrics.closes(r, "shutdown", "peer_gone"),
                1,
                "{}",
                metrics.dump()
            );
            assert_eq!(
                metrics.closes(r, "app", "peer_gone"),
                1,
                "{}",
                metrics.dump()
            );
            assert_eq!(
                metrics.counter_sum(
                    "websocket_closes_total",
                    &[("role", r), ("outcome", "internal_error")]
                ),
                0,
                "{}",
                metrics.dump()
            );
            metrics.assert_balanced(r);
        }
        let warnings = logs.at_level(Level::WARN);
        assert!(warnings.is_empty(), "{flavor}: {warnings:?}");
        let ends = logs.with_message("websocket connection ended");
        assert_eq!(ends.len(), 2 * F::ROLES.len(), "{ends:?}");
        assert!(ends.iter().all(|e| e.level == Level::DEBUG), "{ends:?}");
    }
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

macro_rules! teardown_tests {
    ($($name:ident: $flavor:ty $(, $feature:literal)?;)*) => {
        $(
            mod $name {
                #[test]
                $(#[cfg(feature = $feature)])?
                fn current_thread() {
                    super::torn_down::<$flavor>(super::current_thread(), true);
                }
                #[test]
                $(#[cfg(feature = $feature)])?
                fn multi_thread() {
                    super::torn_down::<$flavor>(super::multi_thread(), false);
                }
            }
        )*
    };
}

teardown_tests! {
    tungstenite: crate::support::flavor::Tungstenite;
    axum: crate::support::flavor::Axum, "axum";
    tokio_websockets: crate::libraries::TokioWebsockets, "tokio-websockets";
    fastwebsockets: crate::libraries::Fast, "fastwebsockets";
}

/// A client's handshake in flight (the server accepted the TCP connection and says nothing)
/// torn down with its runtime: no report of a close, no WARN; the handle reads `Closed`.
#[test]
fn a_client_handshake_in_flight_torn_down_is_no_warning() {
    let (logs, _logs) = logs::capture();
    let rt = current_thread();
    let registry = Registry::new();
    let config = Config::new().with_registry(registry.clone());
    let (handle, _listener) = rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let handshake = config.connect(format!("ws://{addr}/"));
        let handle = handshake.handle();
        tokio::spawn(handshake);
        support::pairs::until(|| registry.connecting() == 1).await;
        (handle, listener)
    });
    assert_eq!(handle.role(), Role::Client);
    drop(rt);
    assert_eq!(handle.state(), State::Closed);
    assert_eq!(registry.connecting(), 0);
    let warnings = logs.at_level(Level::WARN);
    assert!(warnings.is_empty(), "{warnings:?}");
}
