//! Close-code conformance at the edges found by fuzzing (fuzz/fuzz_targets/close_payload.rs).

mod support;

use futures_util::StreamExt;
use std::time::Duration;
use wsclose::{Cause, CloseCode, Config, Outcome, Role};

use support::pairs::{BOTH, bounded, wrapped_and_raw};
use support::recorder;

/// SPEC §4 lists 1014 as the valid code `bad_gateway`, `check_close_code(1014)` accepts it and
/// wsclose sends it; SPEC §3.6 says a valid code the peer sends is counted under its label and
/// does not by itself make the outcome an error. But tungstenite 0.30 maps a received 1014 to
/// `CloseCode::Bad` (not allowed) and replaces it by `1002 "Protocol violation"` when the peer
/// closes first, so wsclose counts it as `code="invalid"`, answers 1002 and ends with
/// `protocol_error`. Raw tokio-tungstenite behaves the same (so Autobahn, which never sends
/// 1014, does not see it). Kept ignored until src/ handles it; run with `--run-ignored all`.
#[tokio::test]
#[ignore = "known bug: a peer's Close 1014 ends as protocol_error/code=invalid (tungstenite maps 1014 to Bad)"]
async fn peer_close_1014_is_counted_as_bad_gateway() {
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
        if role == Role::Client {
            raw.shutdown_write().await.unwrap();
        }
        let report = bounded(ws.handle().closed()).await;
        assert_eq!(
            (report.outcome, report.cause),
            (Outcome::Clean, Cause::Peer),
            "{role}: {report:?}"
        );
        assert_eq!(report.code_received, Some(CloseCode::Valid(1014)));
        assert_eq!(
            reply.close_code(),
            Some(1014),
            "{role}: the reply echoes 1014"
        );
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
