//! The same close scenarios for every supported library (tokio-tungstenite, and axum,
//! tokio-websockets and fastwebsockets behind their features), each against the
//! library-independent raw peer: the reports, the wire and the metric counts must agree.

mod support;

#[path = "support/libraries.rs"]
mod libraries;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use wsclose::{Cause, Config, Outcome, Role, WireCode};

use support::flavor::Flavor;
use support::pairs::bounded;
use support::recorder;
use support::timing::{LATE, PROMPT};

fn r(role: Role) -> &'static str {
    role.as_str()
}

/// Instantiates `fn name<F: Flavor>()` once per library compiled in.
macro_rules! library_tests {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn tungstenite() {
                    super::$name::<crate::support::flavor::Tungstenite>().await
                }
                #[cfg(feature = "axum")]
                #[tokio::test]
                async fn axum() {
                    super::$name::<crate::support::flavor::Axum>().await
                }
                #[cfg(feature = "tokio-websockets")]
                #[tokio::test]
                async fn tokio_websockets() {
                    super::$name::<crate::libraries::TokioWebsockets>().await
                }
                #[cfg(feature = "fastwebsockets")]
                #[tokio::test]
                async fn fastwebsockets() {
                    super::$name::<crate::libraries::Fast>().await
                }
            }
        )*
    };
}

library_tests!(
    clean_close_started_by_us,
    peer_close_is_answered_at_once,
    silent_peer_times_out_at_the_deadline,
    peer_reset_is_peer_gone,
    peer_eof_is_peer_gone,
    invalid_close_code_is_a_protocol_error,
    invalid_frame_is_a_protocol_error,
    send_after_close_is_refused,
    redundant_close_returns_the_same_report,
    dropping_every_handle_sends_1001,
    a_pending_read_does_not_hold_up_a_write,
);

async fn clean_close_started_by_us<F: Flavor>() {
    for &role in F::ROLES {
        let (m, _g) = recorder::install();
        let (mut ws, mut raw) = F::with_raw(role, &Config::new()).await;
        let peer = async {
            let frame = raw.read_frame().await.unwrap().expect("our Close");
            raw.send_close(Some(1000), b"").await.unwrap();
            raw.shutdown_write().await.unwrap();
            frame
        };
        let (report, frame) = bounded(async { tokio::join!(ws.close(1000, "bye"), peer) }).await;
        let report = report.unwrap();
        assert_eq!(frame.close_code(), Some(1000), "{role}");
        assert_eq!(frame.close_reason(), b"bye");
        assert_eq!(report.outcome, Outcome::Clean, "{role}: {report:?}");
        assert_eq!(report.cause, Cause::App);
        assert_eq!(report.code_sent, Some(WireCode::Valid(1000)));
        assert_eq!(report.code_received, Some(WireCode::Valid(1000)));
        assert_eq!(m.closes(r(role), "app", "clean"), 1, "{}", m.dump());
        assert_eq!(
            m.frames(r(role), "sent", "normal_closure"),
            1,
            "{}",
            m.dump()
        );
        m.assert_balanced(r(role));
    }
}

async fn peer_close_is_answered_at_once<F: Flavor>() {
    for &role in F::ROLES {
        let (m, _g) = recorder::install();
        let (mut ws, mut raw) = F::with_raw(role, &Config::new()).await;
        let started = Instant::now();
        raw.send_close(Some(4000), b"done").await.unwrap();
        // The application reads the Close and then never polls again.
        let msg = bounded(ws.next()).await.unwrap().unwrap();
        assert_eq!(F::close_code(&msg), Some(Some(4000)), "{role}");
        let reply = bounded(raw.read_frame()).await.unwrap().expect("a reply");
        assert_eq!(reply.close_code(), Some(4000), "{role}: the code is echoed");
        assert!(
            started.elapsed() < PROMPT,
            "{role}: {:?}",
            started.elapsed()
        );
        if role == Role::Client {
            raw.shutdown_write().await.unwrap();
        }
        let report = bounded(ws.handle().closed()).await;
        assert_eq!(report.outcome, Outcome::Clean, "{role}: {report:?}");
        assert_eq!(report.cause, Cause::Peer);
        assert_eq!(report.code_received, Some(WireCode::Valid(4000)));
        assert_eq!(report.code_sent, Some(WireCode::Valid(4000)));
        assert_eq!(m.closes(r(role), "peer", "clean"), 1, "{}", m.dump());
        assert_eq!(
            m.frames(r(role), "received", "application"),
            1,
            "{}",
            m.dump()
        );
        m.assert_balanced(r(role));
    }
}

async fn silent_peer_times_out_at_the_deadline<F: Flavor>() {
    for &role in F::ROLES {
        let (m, _g) = recorder::install();
        let deadline = Duration::from_millis(1000);
        let config = Config::new().with_close_timeout(deadline).unwrap();
        let (mut ws, mut raw) = F::with_raw(role, &config).await;
        let started = Instant::now();
        let (report, frame) =
            bounded(async { tokio::join!(ws.close(1000, ""), raw.read_frame()) }).await;
        let took = started.elapsed();
        let report = report.unwrap();
        assert_eq!(frame.unwrap().unwrap().close_code(), Some(1000));
        assert_eq!(report.outcome, Outcome::Timeout, "{role}: {report:?}");
        assert!(
            took >= deadline && took < deadline + LATE,
            "{role}: ended after {took:?}"
        );
        assert_eq!(m.closes(r(role), "app", "timeout"), 1, "{}", m.dump());
        m.assert_balanced(r(role));
        drop(raw);
    }
}

async fn peer_reset_is_peer_gone<F: Flavor>() {
    transport_end_is_peer_gone::<F>(true).await;
}

async fn peer_eof_is_peer_gone<F: Flavor>() {
    transport_end_is_peer_gone::<F>(false).await;
}

/// The peer's transport ends without a Close (`reset`: RST; otherwise FIN): `peer_gone`.
async fn transport_end_is_peer_gone<F: Flavor>(reset: bool) {
    for &role in F::ROLES {
        let (m, _g) = recorder::install();
        let (mut ws, mut raw) = F::with_raw(role, &Config::new()).await;
        if reset {
            raw.reset();
        } else {
            raw.shutdown_write().await.unwrap();
        }
        while let Some(item) = bounded(ws.next()).await {
            assert!(item.is_err(), "{role}: only an error before the end");
        }
        let report = bounded(ws.handle().closed()).await;
        assert_eq!(report.outcome, Outcome::PeerGone, "{role}: {report:?}");
        assert_eq!(report.code_received, None);
        assert_eq!(
            m.closes(r(role), "transport", "peer_gone"),
            1,
            "{}",
            m.dump()
        );
        m.assert_balanced(r(role));
    }
}

async fn invalid_close_code_is_a_protocol_error<F: Flavor>() {
    for &role in F::ROLES {
        let (m, _g) = recorder::install();
        let (mut ws, mut raw) = F::with_raw(role, &Config::new()).await;
        raw.send_close(Some(1005), b"").await.unwrap();
        while bounded(ws.next()).await.is_some() {}
        let report = bounded(ws.handle().closed()).await;
        assert_eq!(report.outcome, Outcome::ProtocolError, "{role}: {report:?}");
        assert!(
            matches!(report.code_received, Some(WireCode::Invalid(_))),
            "{role}: {report:?}"
        );
        assert_eq!(
            m.counter_sum(
                "websocket_closes_total",
                &[("role", r(role)), ("outcome", "protocol_error")]
            ),
            1,
            "{}",
            m.dump()
        );
        assert_eq!(m.frames(r(role), "received", "invalid"), 1, "{}", m.dump());
        m.assert_balanced(r(role));
    }
}

/// A frame with a reserved opcode: every library fails the connection as a protocol error.
async fn invalid_frame_is_a_protocol_error<F: Flavor>() {
    for &role in F::ROLES {
        let (m, _g) = recorder::install();
        let (mut ws, mut raw) = F::with_raw(role, &Config::new()).await;
        raw.send_frame(true, 0x3, b"?").await.unwrap();
        let mut saw_error = false;
        while let Some(item) = bounded(ws.next()).await {
            saw_error |= item.is_err();
        }
        assert!(saw_error, "{role}");
        let report = bounded(ws.handle().closed()).await;
        assert_eq!(report.outcome, Outcome::ProtocolError, "{role}: {report:?}");
        // The peer is told why before the connection is dropped (RFC 6455 §7.1.7: 1002).
        let frames = raw
            .read_all_until_eof(Duration::from_secs(5))
            .await
            .unwrap();
        let close = frames.iter().find(|f| f.is_close());
        assert_eq!(
            close.and_then(|f| f.close_code()),
            Some(1002),
            "{role}: {frames:?}"
        );
        assert_eq!(
            m.closes(r(role), "peer", "protocol_error"),
            1,
            "{}",
            m.dump()
        );
        m.assert_balanced(r(role));
    }
}

async fn send_after_close_is_refused<F: Flavor>() {
    for &role in F::ROLES {
        let (m, _g) = recorder::install();
        let config = Config::new()
            .with_close_timeout(Duration::from_millis(200))
            .unwrap();
        let (mut ws, raw) = F::with_raw(role, &config).await;
        let report = bounded(ws.close(1000, "")).await.unwrap();
        let err = bounded(ws.send(F::text("late"))).await.unwrap_err();
        assert!(err.is_closed(), "{role}: {err:?}");
        assert_eq!(err.report(), Some(&report));
        assert_eq!(
            m.counter("websocket_send_after_close_total", &[("role", r(role))]),
            1
        );
        drop(raw);
    }
}

async fn redundant_close_returns_the_same_report<F: Flavor>() {
    for &role in F::ROLES {
        let (m, _g) = recorder::install();
        let config = Config::new()
            .with_close_timeout(Duration::from_millis(200))
            .unwrap();
        let (mut ws, raw) = F::with_raw(role, &config).await;
        let first = bounded(ws.close(1000, "")).await.unwrap();
        let second = bounded(ws.close(4000, "again")).await.unwrap();
        assert_eq!(first, second, "{role}");
        assert_eq!(
            m.counter("websocket_close_redundant_total", &[("role", r(role))]),
            1
        );
        assert_eq!(
            m.counter_sum("websocket_closes_total", &[("role", r(role))]),
            1
        );
        drop(raw);
    }
}

async fn dropping_every_handle_sends_1001<F: Flavor>() {
    for &role in F::ROLES {
        let (m, _g) = recorder::install();
        let (ws, mut raw) = F::with_raw(role, &Config::new()).await;
        let handle = ws.handle();
        drop(ws);
        let frame = bounded(raw.read_frame()).await.unwrap().expect("a Close");
        assert_eq!(frame.close_code(), Some(1001), "{role}");
        raw.send_close(Some(1001), b"").await.unwrap();
        raw.shutdown_write().await.unwrap();
        let report = bounded(handle.closed()).await;
        assert_eq!(report.outcome, Outcome::Clean, "{role}: {report:?}");
        assert_eq!(report.code_sent, Some(WireCode::Valid(1001)));
        assert_eq!(m.closes(r(role), "app", "clean"), 1, "{}", m.dump());
        m.assert_balanced(r(role));
    }
}

/// A reader parked on a silent peer must not keep the writer (or the close) from the socket.
async fn a_pending_read_does_not_hold_up_a_write<F: Flavor>() {
    for &role in F::ROLES {
        let (ws, mut raw) = F::with_raw(role, &Config::new()).await;
        let (mut tx, mut rx) = ws.split();
        let reader = tokio::spawn(async move {
            let mut n = 0;
            while let Some(Ok(_)) = rx.next().await {
                n += 1;
            }
            n
        });
        // Let the reader park on its read.
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        bounded(tx.send(F::text("while reading"))).await.unwrap();
        let frame = bounded(raw.read_frame()).await.unwrap().expect("the text");
        assert_eq!(frame.text(), Some("while reading"), "{role}");
        let handle = tx.handle();
        let close = tokio::spawn(async move { handle.close(1000, "").await });
        let frame = bounded(raw.read_frame()).await.unwrap().expect("our Close");
        assert_eq!(frame.close_code(), Some(1000), "{role}");
        raw.send_close(Some(1000), b"").await.unwrap();
        raw.shutdown_write().await.unwrap();
        let report = bounded(close).await.unwrap().unwrap();
        assert_eq!(report.outcome, Outcome::Clean, "{role}: {report:?}");
        // The Close is handed to the reader too; then its stream ends.
        assert!(bounded(reader).await.unwrap() <= 1);
    }
}
