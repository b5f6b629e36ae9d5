//! Close-code conformance at the edges found by fuzzing (fuzz/fuzz_targets/close_payload.rs).
//!
//! The close-code table (docs/design.md, "Close codes") lists 1014 as the valid code `bad_gateway`. tungstenite 0.30 does not know it: its
//! `tungstenite::CloseCode::from(1014)` is `Bad(1014)`, not allowed. What wsclose can and cannot do about that
//! is pinned here, so a tungstenite release that learns 1014 makes these tests fail and the
//! workaround and docs (docs/design.md, "Close codes") get revisited.

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use wsclose::{Cause, Config, Outcome, Role, WireCode};

use support::pairs::{BOTH, bounded, wrapped_and_raw};
use support::recorder;

/// When the peer closes first with 1014, tungstenite replaces the frame by
/// `1002 "Protocol violation"` before wsclose sees it, and answers 1002: the value is lost, so
/// the end is counted as `code="invalid"`, `protocol_error` — a known limitation, documented.
#[tokio::test]
async fn a_peers_first_close_1014_is_lost_to_tungstenites_substitution() {
    for role in BOTH {
        let (m, _g) = recorder::install();
        let (mut ws, mut raw) = wrapped_and_raw(role, &Config::new()).await;
        raw.send_close(Some(1014), b"upstream down").await.unwrap();
        assert!(bounded(ws.next()).await.unwrap().unwrap().is_close());
        let reply = raw
            .read_frame_timeout(Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            reply.close_code(),
            Some(1002),
            "{role}: tungstenite answers 1002"
        );
        if role == Role::Client {
            raw.shutdown_write().await.unwrap();
        }
        let report = bounded(ws.handle().closed()).await;
        assert_eq!(
            (report.outcome, report.cause),
            (Outcome::ProtocolError, Cause::Peer)
        );
        assert_eq!(report.code_received, Some(WireCode::Invalid(None)));
        let rx = [
            ("role", role.as_str()),
            ("direction", "received"),
            ("code", "invalid"),
        ];
        assert_eq!(
            m.counter("websocket_close_frames_total", &rx),
            1,
            "{}",
            m.dump()
        );
    }
}

/// In reply to our own Close, tungstenite passes the code through: 1014 is counted as
/// `bad_gateway` and the end is clean, as docs/design.md ("Close codes") says.
#[tokio::test]
async fn a_1014_reply_to_our_close_is_counted_as_bad_gateway() {
    for role in BOTH {
        let (m, _g) = recorder::install();
        let (ws, mut raw) = wrapped_and_raw(role, &Config::new()).await;
        let handle = ws.handle();
        handle.start_close(1000, "").unwrap();
        let ours = raw
            .read_frame_timeout(Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ours.close_code(), Some(1000));
        raw.send_close(Some(1014), b"upstream down").await.unwrap();
        if role == Role::Client {
            raw.shutdown_write().await.unwrap();
        }
        let report = bounded(handle.closed()).await;
        assert_eq!(
            (report.outcome, report.cause),
            (Outcome::Clean, Cause::App),
            "{report:?}"
        );
        assert_eq!(report.code_received, Some(WireCode::Valid(1014)));
        let rx = [
            ("role", role.as_str()),
            ("direction", "received"),
            ("code", "bad_gateway"),
        ];
        assert_eq!(
            m.counter("websocket_close_frames_total", &rx),
            1,
            "{}",
            m.dump()
        );
    }
}
