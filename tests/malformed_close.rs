//! The four malformed Close frames of a hostile peer, both roles: what is counted.
//!
//! A 1-byte payload is told apart (tungstenite's `InvalidCloseSequence` names a Close) and
//! counted as received `code="invalid"`. The other three cannot be told apart from the same
//! fault in another frame: tungstenite reports a fragmented control frame
//! (`FragmentedControlFrame`) and a control frame over 125 bytes (`ControlFrameTooBig`) without
//! saying it was a Close rather than a Ping or Pong, and a reason that is not UTF-8 as the same
//! `Utf8` error as a Text message's. So they count as the protocol errors they are, with no
//! received code (no `websocket_close_frames_total{direction="received"}` at all): counting them
//! `invalid` would count a bad Ping as a Close. This test pins exactly that.

mod support;

use futures_util::StreamExt;
use wsclose::{Cause, Config, Outcome, Role, WireCode};

use support::pairs::{bounded, wrapped_and_raw};
use support::recorder;

const CLOSE: u8 = 0x8;

async fn sent(role: Role, fin: bool, payload: &[u8]) -> wsclose::CloseReport {
    let (mut ws, mut raw) = wrapped_and_raw(role, &Config::new()).await;
    raw.send_frame(fin, CLOSE, payload).await.unwrap();
    let got = bounded(ws.next()).await;
    assert!(matches!(got, Some(Err(_))), "{got:?}");
    let report = bounded(ws.handle().closed()).await;
    assert_eq!(
        (report.outcome, report.cause),
        (Outcome::ProtocolError, Cause::Peer),
        "{report:?}"
    );
    report
}

#[tokio::test]
async fn what_each_malformed_close_frame_counts() {
    let (metrics, _g) = recorder::install();
    let mut bad_reason = vec![0x03, 0xe8]; // 1000
    bad_reason.extend_from_slice(&[0xff, 0xfe]);
    let mut long = vec![0x03, 0xe8];
    long.extend_from_slice(&[b'x'; 124]); // 126 bytes of payload
    for role in [Role::Server, Role::Client] {
        let r = role.as_str();
        let received = |code: &str| metrics.frames(r, "received", code);

        let report = sent(role, true, &[0x03]).await;
        assert_eq!(
            report.code_received,
            Some(WireCode::Invalid(None)),
            "{report:?}"
        );
        assert_eq!(received("invalid"), 1, "{role:?}: {}", metrics.dump());

        for (fin, payload, what) in [
            (false, &[0x03, 0xe8][..], "fragmented"),
            (true, &bad_reason[..], "invalid UTF-8 reason"),
            (true, &long[..], "126-byte payload"),
        ] {
            let report = sent(role, fin, payload).await;
            assert_eq!(report.code_received, None, "{role:?} {what}: {report:?}");
            assert_eq!(
                received("invalid"),
                1,
                "{role:?} {what}: {}",
                metrics.dump()
            );
            assert_eq!(
                received("normal_closure"),
                0,
                "{role:?} {what}: {}",
                metrics.dump()
            );
        }
        assert_eq!(
            metrics.closes(r, "peer", "protocol_error"),
            4,
            "{}",
            metrics.dump()
        );
    }
}
