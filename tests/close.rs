//! The close behaviour of docs/design.md over real loopback sockets, in both roles, with exact
//! outcomes, metrics and wire frames. (The `flavor_tests!` macro lives in the support module.)

#[macro_use]
mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as TtCode;
use wsclose::{Cause, Config, Outcome, Role, State, WireCode};

use support::flavor::Flavor;
use support::pairs::bounded;
use support::raw::OP_TEXT;
use support::recorder;
use support::timing::{DEADLINE, PROMPT, assert_at_deadline};

const CLOSES: &str = "websocket_closes_total";
const FRAMES: &str = "websocket_close_frames_total";

fn r(role: Role) -> &'static str {
    role.as_str()
}

/// The codes of the Close frames among `frames`, in order.
fn close_codes(frames: &[support::raw::Frame]) -> Vec<Option<u16>> {
    frames
        .iter()
        .filter(|f| f.is_close())
        .map(|f| f.close_code())
        .collect()
}

/// Reads a tokio-tungstenite peer to its end, returning the Close frame it saw.
async fn drain_tt(peer: &mut support::pairs::Tt) -> Option<CloseFrame> {
    let mut close = None;
    while let Some(msg) = bounded(peer.next()).await {
        match msg {
            Ok(Message::Close(f)) => close = f,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    close
}

async fn clean_close_started_by_us<F: Flavor>() {
    for &role in F::ROLES {
        let (m, _g) = recorder::install();
        let (mut ws, mut peer) = F::with_tt(role, &Config::new()).await;
        let peer_task = tokio::spawn(async move { drain_tt(&mut peer).await });
        let report = bounded(ws.close(1000, "bye")).await.unwrap();
        assert_eq!(report.outcome, Outcome::Clean, "{role}: {report:?}");
        assert_eq!(report.cause, Cause::App);
        assert_eq!(report.code_sent, Some(WireCode::Valid(1000)));
        assert_eq!(report.code_received, Some(WireCode::Valid(1000)));
        assert!(report.close_duration.is_some());
        assert_eq!(ws.state(), State::Closed);
        let seen = bounded(peer_task)
            .await
            .unwrap()
            .expect("peer saw our Close");
        assert_eq!((u16::from(seen.code), seen.reason.as_str()), (1000, "bye"));

        assert_eq!(m.closes(r(role), "app", "clean"), 1, "{}", m.dump());
        let sent = [
            ("role", r(role)),
            ("direction", "sent"),
            ("code", "normal_closure"),
        ];
        let received = [
            ("role", r(role)),
            ("direction", "received"),
            ("code", "normal_closure"),
        ];
        assert_eq!(m.counter(FRAMES, &sent), 1);
        assert_eq!(m.counter(FRAMES, &received), 1);
        let dur = [("role", r(role)), ("outcome", "clean")];
        assert_eq!(
            m.histogram("websocket_close_duration_seconds", &dur).len(),
            1
        );
        assert_eq!(
            m.histogram("websocket_connection_duration_seconds", &dur)
                .len(),
            1
        );
        assert_eq!(
            m.gauge("websocket_connections_active", &[("role", r(role))]),
            0.0
        );
        m.assert_balanced(r(role));
    }
}

async fn clean_close_started_by_peer_is_answered_at_once<F: Flavor>() {
    for &role in F::ROLES {
        let (m, _g) = recorder::install();
        let (mut ws, mut peer) = F::with_tt(role, &Config::new()).await;
        let frame = CloseFrame {
            code: TtCode::Away,
            reason: "done".into(),
        };
        let started = Instant::now();
        let peer_task = tokio::spawn(async move {
            peer.close(Some(frame)).await.unwrap();
            drain_tt(&mut peer).await
        });
        // The application reads the Close and then never polls again.
        let msg = bounded(ws.next()).await.unwrap().unwrap();
        assert_eq!(F::close_code(&msg), Some(Some(1001)));
        let reply = bounded(peer_task).await.unwrap().expect("peer got a reply");
        assert_eq!(u16::from(reply.code), 1001, "tungstenite echoes the code");
        // Not held until the application reads again, nor for the 5 s close deadline.
        assert!(
            started.elapsed() < PROMPT,
            "{role}: the reply was delayed {:?}",
            started.elapsed()
        );
        let report = bounded(ws.handle().closed()).await;
        assert_eq!(report.outcome, Outcome::Clean, "{role}: {report:?}");
        assert_eq!(report.cause, Cause::Peer);
        assert_eq!(report.code_received, Some(WireCode::Valid(1001)));
        assert_eq!(report.code_sent, Some(WireCode::Valid(1001)));
        assert_eq!(report.reason_received.as_deref(), Some("done"));
        assert!(
            bounded(ws.next()).await.is_none(),
            "stream ends after the close"
        );
        assert_eq!(m.closes(r(role), "peer", "clean"), 1, "{}", m.dump());
        m.assert_balanced(r(role));
    }
}

async fn simultaneous_close_sends_one_frame_each_way<F: Flavor>() {
    for &role in F::ROLES {
        let (m, _g) = recorder::install();
        let (ws, mut raw) = F::with_raw(role, &Config::new()).await;
        // Both sides send Close before reading the other's.
        raw.send_close(Some(1000), b"raw").await.unwrap();
        let handle = ws.handle();
        handle.start_close(1000, "wrapped").unwrap();
        let first = raw
            .read_frame_timeout(Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap();
        if role == Role::Client {
            // The server side (raw) closes TCP after the handshake.
            raw.shutdown_write().await.unwrap();
        }
        let report = bounded(handle.closed()).await;
        let mut frames = vec![first];
        frames.extend(
            raw.read_all_until_eof(Duration::from_secs(5))
                .await
                .unwrap(),
        );
        let closes: Vec<_> = frames.iter().filter(|f| f.is_close()).collect();
        assert_eq!(closes.len(), 1, "{role}: {frames:?}");
        assert_eq!(closes[0].close_code(), Some(1000));
        assert_eq!(report.outcome, Outcome::Clean, "{role}: {report:?}");
        assert_eq!(report.cause, Cause::App);
        assert_eq!(report.code_received, Some(WireCode::Valid(1000)));
        assert_eq!(report.reason_received.as_deref(), Some("raw"));
        assert!(report.close_duration.unwrap() < PROMPT, "{report:?}");
        m.assert_balanced(r(role));
    }
}

async fn silent_peer_times_out_at_the_deadline<F: Flavor>() {
    let deadline = DEADLINE;
    // The first close on a runtime starts the runtime's deadline sweeper, a task that stays:
    // start it before counting tasks.
    let (mut ws, raw) = F::with_raw(F::ROLES[0], &Config::new()).await;
    drop(raw);
    let _ = bounded(ws.close(1000, "")).await;
    for &role in F::ROLES {
        let (m, _g) = recorder::install();
        let config = Config::new().with_close_timeout(deadline).unwrap();
        let (mut ws, mut raw) = F::with_raw(role, &config).await;
        let tasks = tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks();
        let started = Instant::now();
        let report = bounded(ws.close(1000, "")).await.unwrap();
        let took = started.elapsed();
        assert_eq!(report.outcome, Outcome::Timeout, "{role}: {report:?}");
        assert_eq!(report.cause, Cause::App);
        assert_eq!(report.code_sent, Some(WireCode::Valid(1000)));
        assert_eq!(report.code_received, None);
        assert_at_deadline(took, deadline, role);
        // The transport was terminated: the silent peer sees our Close, then EOF.
        let frames = raw
            .read_all_until_eof(Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(frames.iter().filter(|f| f.is_close()).count(), 1);
        assert_eq!(
            tokio::runtime::Handle::current()
                .metrics()
                .num_alive_tasks(),
            tasks
        );
        assert_eq!(m.closes(r(role), "app", "timeout"), 1);
        let dur = [("role", r(role)), ("outcome", "timeout")];
        assert_eq!(
            m.histogram("websocket_close_duration_seconds", &dur).len(),
            1
        );
        m.assert_balanced(r(role));
    }
}

/// Close deadlines share one timer per runtime: a short deadline that begins while a long one
/// is pending must move that timer earlier, and still end on time.
async fn a_shorter_deadline_begun_later_still_ends_on_time<F: Flavor>() {
    let short = DEADLINE;
    for &role in F::ROLES {
        let (m, _g) = recorder::install();
        let long = Config::new()
            .with_close_timeout(Duration::from_secs(20))
            .unwrap();
        let (slow, slow_peer) = F::with_raw(role, &long).await;
        assert!(slow.handle().start_close(1000, "").unwrap());
        let config = Config::new().with_close_timeout(short).unwrap();
        let (mut ws, _peer) = F::with_raw(role, &config).await;
        let started = Instant::now();
        let report = bounded(ws.close(1000, "")).await.unwrap();
        let took = started.elapsed();
        assert_eq!(report.outcome, Outcome::Timeout, "{role}: {report:?}");
        assert_at_deadline(took, short, role);
        assert_eq!(slow.state(), State::Closing(Cause::App), "{role}");
        // The long close ends as soon as its peer goes away.
        drop(slow_peer);
        let slow = bounded(slow.handle().closed()).await;
        assert_eq!(slow.outcome, Outcome::PeerGone, "{role}: {slow:?}");
        assert_eq!(m.closes(r(role), "app", "timeout"), 1);
        m.assert_balanced(r(role));
    }
}

/// A close begun without awaiting it (`start_close`) is first polled on the spot, then moves to
/// a task of its own; to a silent peer it still ends at its deadline.
async fn a_close_started_elsewhere_still_ends_at_its_deadline<F: Flavor>() {
    let deadline = DEADLINE;
    for &role in F::ROLES {
        let (m, _g) = recorder::install();
        let config = Config::new().with_close_timeout(deadline).unwrap();
        let (ws, raw) = F::with_raw(role, &config).await;
        let handle = ws.handle();
        let started = Instant::now();
        assert!(handle.start_close(1000, "").unwrap());
        let report = bounded(handle.closed()).await;
        let took = started.elapsed();
        assert_eq!(report.outcome, Outcome::Timeout, "{role}: {report:?}");
        assert_at_deadline(took, deadline, role);
        assert_eq!(m.closes(r(role), "app", "timeout"), 1);
        drop((ws, raw));
    }
}

async fn peer_reset_mid_close_is_peer_gone<F: Flavor>() {
    for &role in F::ROLES {
        let (m, _g) = recorder::install();
        let (ws, mut raw) = F::with_raw(role, &Config::new()).await;
        let handle = ws.handle();
        handle.start_close(1000, "").unwrap();
        let frame = raw
            .read_frame_timeout(Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(frame.close_code(), Some(1000));
        raw.reset();
        let report = bounded(handle.closed()).await;
        assert_eq!(report.outcome, Outcome::PeerGone, "{role}: {report:?}");
        assert_eq!(report.cause, Cause::App);
        assert_eq!(report.code_received, None);
        assert_eq!(m.closes(r(role), "app", "peer_gone"), 1, "{}", m.dump());
        m.assert_balanced(r(role));
    }
}

async fn peer_eof_without_close_is_transport_peer_gone<F: Flavor>() {
    for &role in F::ROLES {
        let (m, _g) = recorder::install();
        let (mut ws, mut raw) = F::with_raw(role, &Config::new()).await;
        raw.shutdown_write().await.unwrap();
        let err = bounded(ws.next()).await.unwrap().unwrap_err();
        assert!(err.is_connection_error(), "{err}");
        assert_eq!(err.outcome(), Some(Outcome::PeerGone));
        assert!(bounded(ws.next()).await.is_none());
        let report = ws.report().unwrap();
        assert_eq!(report.outcome, Outcome::PeerGone);
        assert_eq!(report.cause, Cause::Transport);
        assert_eq!(
            (
                report.code_sent,
                report.code_received,
                report.close_duration
            ),
            (None, None, None)
        );
        assert_eq!(
            m.closes(r(role), "transport", "peer_gone"),
            1,
            "{}",
            m.dump()
        );
        assert_eq!(m.counter_sum(FRAMES, &[]), 0);
        assert_eq!(
            m.histogram_count("websocket_close_duration_seconds", &[]),
            0
        );
        m.assert_balanced(r(role));
    }
}

/// A frame the protocol forbids (a reserved opcode) ends the connection with 1002 at once:
/// after a protocol error nothing more is waited for, neither the peer's Close nor the end of
/// its transport. The peer here stays connected and silent.
async fn a_protocol_error_ends_at_once_without_waiting_for_the_peer<F: Flavor>() {
    for &role in F::ROLES {
        let (m, _g) = recorder::install();
        let (mut ws, mut raw) = F::with_raw(role, &Config::new()).await;
        let started = Instant::now();
        raw.send_frame(true, 0x3, b"").await.unwrap();
        let got = bounded(ws.next()).await;
        assert!(matches!(got, Some(Err(_))), "{role}: {got:?}");
        let report = bounded(ws.handle().closed()).await;
        assert_eq!(
            (report.outcome, report.cause),
            (Outcome::ProtocolError, Cause::Peer),
            "{role}: {report:?}"
        );
        assert_eq!(report.code_sent, Some(WireCode::Valid(1002)));
        assert!(
            started.elapsed() < PROMPT,
            "{role}: waited for the silent peer ({:?})",
            started.elapsed()
        );
        let frames = raw
            .read_all_until_eof(Duration::from_secs(2))
            .await
            .unwrap();
        let codes = close_codes(&frames);
        assert_eq!(codes, [Some(1002)], "{role}");
        assert_eq!(m.closes(r(role), "peer", "protocol_error"), 1);
        m.assert_balanced(r(role));
    }
}

/// A server that answers our Close but never closes the TCP connection: the client waits for
/// that until its deadline, then closes the transport itself. Both Close frames were exchanged,
/// so the end is `clean`, not `timeout` (docs/design.md, "The close task").
async fn a_server_that_answers_but_keeps_the_connection_ends_clean_at_the_deadline<F: Flavor>() {
    if !F::ROLES.contains(&Role::Client) {
        return;
    }
    let (m, _g) = recorder::install();
    let config = Config::new().with_close_timeout(DEADLINE).unwrap();
    let (ws, mut raw) = F::with_raw(Role::Client, &config).await;
    let handle = ws.handle();
    let started = Instant::now();
    handle.start_close(1000, "bye").unwrap();
    let ours = raw
        .read_frame_timeout(Duration::from_secs(2))
        .await
        .unwrap()
        .expect("our Close frame");
    assert_eq!(ours.close_code(), Some(1000));
    raw.send_close(Some(1000), b"").await.unwrap();
    let report = bounded(handle.closed()).await;
    assert_eq!(
        (report.outcome, report.cause),
        (Outcome::Clean, Cause::App),
        "{report:?}"
    );
    assert_eq!(report.code_received, Some(WireCode::Valid(1000)));
    assert_at_deadline(started.elapsed(), DEADLINE, "client");
    assert_eq!(m.closes("client", "app", "clean"), 1);
    m.assert_balanced("client");
    drop((ws, raw));
}

async fn invalid_close_codes_from_the_peer_fail_with_1002<F: Flavor>() {
    for &role in F::ROLES {
        for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            let (m, _g) = recorder::install();
            let (mut ws, mut raw) = F::with_raw(role, &Config::new()).await;
            raw.send_close(Some(code), b"").await.unwrap();
            let msg = bounded(ws.next()).await.unwrap().unwrap();
            assert!(F::close_code(&msg).is_some());
            let first = raw
                .read_frame_timeout(Duration::from_secs(5))
                .await
                .unwrap()
                .unwrap();
            if role == Role::Client {
                raw.shutdown_write().await.unwrap();
            }
            let report = bounded(ws.handle().closed()).await;
            assert_eq!(
                report.outcome,
                Outcome::ProtocolError,
                "{role} {code}: {report:?}"
            );
            assert_eq!(report.cause, Cause::Peer);
            assert_eq!(report.code_received, Some(WireCode::Invalid(None)));
            assert_eq!(report.code_sent, Some(WireCode::Valid(1002)));
            assert_eq!(
                report.reason_received, None,
                "tungstenite's substitute is not the peer's"
            );
            assert!(report.close_duration.unwrap() < PROMPT, "{report:?}");
            let mut frames = vec![first];
            frames.extend(
                raw.read_all_until_eof(Duration::from_secs(5))
                    .await
                    .unwrap(),
            );
            let codes = close_codes(&frames);
            assert_eq!(codes, [Some(1002)], "{role} {code}");
            let rx = [
                ("role", r(role)),
                ("direction", "received"),
                ("code", "invalid"),
            ];
            let tx = [
                ("role", r(role)),
                ("direction", "sent"),
                ("code", "protocol_error"),
            ];
            assert_eq!(
                (m.counter(FRAMES, &rx), m.counter(FRAMES, &tx)),
                (1, 1),
                "{}",
                m.dump()
            );
            assert_eq!(m.closes(r(role), "peer", "protocol_error"), 1);
        }
    }
}

async fn invalid_code_in_the_peers_reply_keeps_its_value<F: Flavor>() {
    for &role in F::ROLES {
        let (m, _g) = recorder::install();
        let (ws, mut raw) = F::with_raw(role, &Config::new()).await;
        let handle = ws.handle();
        handle.start_close(1000, "").unwrap();
        let frame = raw
            .read_frame_timeout(Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap();
        assert!(frame.is_close());
        raw.send_close(Some(1005), b"").await.unwrap();
        if role == Role::Client {
            raw.shutdown_write().await.unwrap();
        }
        let report = bounded(handle.closed()).await;
        assert_eq!(report.outcome, Outcome::ProtocolError, "{role}: {report:?}");
        assert_eq!(report.cause, Cause::App);
        assert_eq!(report.code_received, Some(WireCode::Invalid(Some(1005))));
        let rx = [
            ("role", r(role)),
            ("direction", "received"),
            ("code", "invalid"),
        ];
        assert_eq!(m.counter(FRAMES, &rx), 1);
    }
}

async fn valid_peer_codes_are_counted_under_their_code<F: Flavor>() {
    for &role in F::ROLES {
        for (code, label) in [
            (1011u16, "internal_error"),
            (4001, "application"),
            (3000, "library"),
        ] {
            let (m, _g) = recorder::install();
            let (mut ws, mut raw) = F::with_raw(role, &Config::new()).await;
            raw.send_close(Some(code), b"why").await.unwrap();
            assert!(F::close_code(&bounded(ws.next()).await.unwrap().unwrap()).is_some());
            if role == Role::Client {
                // The raw server closes TCP once it has the reply.
                let reply = raw
                    .read_frame_timeout(Duration::from_secs(5))
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(reply.close_code(), Some(code));
                raw.shutdown_write().await.unwrap();
            }
            let report = bounded(ws.handle().closed()).await;
            assert_eq!(report.outcome, Outcome::Clean, "{role} {code}: {report:?}");
            assert_eq!(report.code_received, Some(WireCode::Valid(code)));
            let rx = [
                ("role", r(role)),
                ("direction", "received"),
                ("code", label),
            ];
            assert_eq!(m.counter(FRAMES, &rx), 1, "{}", m.dump());
        }
    }
}

async fn long_reason_is_cut_at_a_char_boundary<F: Flavor>() {
    for &role in F::ROLES {
        let (ws, mut raw) = F::with_raw(role, &Config::new()).await;
        let reason = "é".repeat(100); // 200 bytes, 2 bytes per char
        let handle = ws.handle();
        handle.start_close(4000, &reason).unwrap();
        let frame = raw
            .read_frame_timeout(Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(frame.close_code(), Some(4000));
        let got = std::str::from_utf8(frame.close_reason()).expect("valid UTF-8 on the wire");
        assert_eq!(got, "é".repeat(61));
        assert_eq!(got.len(), 122);
    }
}

async fn refused_codes_send_nothing_and_keep_the_connection<F: Flavor>() {
    for &role in F::ROLES {
        let (m, _g) = recorder::install();
        let (mut ws, mut raw) = F::with_raw(role, &Config::new()).await;
        for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
            let err = ws.close(code, "x").await.unwrap_err();
            assert!(err.is_invalid_close_code(), "{code}: {err}");
            assert_eq!(err.close_code(), Some(code));
            let close = F::close(code, "");
            let err = ws.send(close).await.unwrap_err();
            assert!(err.is_invalid_close_code(), "{code} via the sink: {err}");
        }
        assert_eq!(ws.state(), State::Open);
        ws.send(F::text("still open")).await.unwrap();
        let frame = raw
            .read_frame_timeout(Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((frame.opcode, frame.text()), (OP_TEXT, Some("still open")));
        assert_eq!(m.counter_sum(CLOSES, &[]) + m.counter_sum(FRAMES, &[]), 0);
        assert_eq!(m.counter_sum("websocket_close_redundant_total", &[]), 0);
        // Finish this connection before the next iteration's recorder is installed.
        let handle = ws.handle();
        drop((ws, raw));
        bounded(handle.closed()).await;
    }
}

async fn send_after_close_is_a_typed_error_counted_without_warning<F: Flavor>() {
    for &role in F::ROLES {
        let (m, _g) = recorder::install();
        let (logs, _lg) = support::logs::capture();
        let (mut ws, peer) = F::with_tt(role, &Config::new()).await;
        let peer_task = tokio::spawn(async move {
            let mut peer = peer;
            drain_tt(&mut peer).await
        });
        let report = bounded(ws.close(1000, "")).await.unwrap();
        bounded(peer_task).await.unwrap();
        let err = ws.send(F::text("late")).await.unwrap_err();
        assert!(err.is_closed(), "{err}");
        assert_eq!(err.state(), Some(State::Closed));
        assert_eq!(err.report(), Some(&report));
        assert_eq!(err.outcome(), Some(Outcome::Clean));
        // Also while closing: start a close on a fresh connection and send at once.
        let (mut ws2, _peer2) = F::with_tt(role, &Config::new()).await;
        ws2.handle().start_close(1000, "").unwrap();
        let err = ws2.send(F::text("racing")).await.unwrap_err();
        assert!(err.is_closed());
        assert_eq!(err.state(), Some(State::Closing(Cause::App)));
        assert_eq!(
            m.counter("websocket_send_after_close_total", &[("role", r(role))]),
            2
        );
        assert!(
            logs.at_level(tracing::Level::WARN).is_empty(),
            "{:?}",
            logs.records()
        );
        let refused = logs.with_message("send refused: connection closing or closed");
        assert_eq!(refused.len(), 2);
        assert!(
            refused
                .iter()
                .all(|r| r.level == tracing::Level::DEBUG && r.target == "wsclose")
        );
    }
}

async fn redundant_closes_return_the_same_report_and_are_counted<F: Flavor>() {
    for &role in F::ROLES {
        let (m, _g) = recorder::install();
        let (mut ws, peer) = F::with_tt(role, &Config::new()).await;
        tokio::spawn(async move {
            let mut peer = peer;
            drain_tt(&mut peer).await
        });
        let handle = ws.handle();
        let (a, b, c) = tokio::join!(
            ws.close(1000, "a"),
            handle.close(1001, "b"),
            handle.close(4000, "c")
        );
        let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
        assert_eq!(a, b);
        assert_eq!(b, c);
        // SinkExt::close after the end is a no-op too, but not a close request: the sink's
        // "flush, then close" (the end of `forward`) is not counted as redundant.
        SinkExt::close(&mut ws).await.unwrap();
        let again = ws.close(1000, "").await.unwrap();
        assert_eq!(again, a);
        assert_eq!(
            m.counter("websocket_close_redundant_total", &[("role", r(role))]),
            3
        );
        assert_eq!(m.counter_sum(FRAMES, &[("direction", "sent")]), 1);
    }
}

async fn handshake_completes_when_nobody_reads<F: Flavor>() {
    for &role in F::ROLES {
        let (ws, peer) = F::with_tt(role, &Config::new()).await;
        tokio::spawn(async move {
            let mut peer = peer;
            drain_tt(&mut peer).await
        });
        let (_tx, rx) = ws.split();
        // The receiver is held but never polled again.
        let report = bounded(rx.handle().close(1000, "")).await.unwrap();
        assert_eq!(report.outcome, Outcome::Clean, "{role}: {report:?}");
        assert_eq!(report.code_received, Some(WireCode::Valid(1000)));
    }
}

async fn queued_messages_go_out_before_the_close_frame<F: Flavor>() {
    for &role in F::ROLES {
        let (mut ws, mut raw) = F::with_raw(role, &Config::new()).await;
        for i in 0..10 {
            ws.feed(F::text(&format!("m{i}"))).await.unwrap();
        }
        let handle = ws.handle();
        handle.start_close(1000, "").unwrap();
        let mut texts = Vec::new();
        loop {
            let f = raw
                .read_frame_timeout(Duration::from_secs(5))
                .await
                .unwrap()
                .unwrap();
            if f.is_close() {
                raw.send_close(f.close_code(), b"").await.unwrap();
                break;
            }
            texts.push(f.text().unwrap().to_owned());
        }
        let want: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
        assert_eq!(texts, want);
        if role == Role::Client {
            raw.shutdown_write().await.unwrap();
        }
        let report = bounded(handle.closed()).await;
        assert_eq!(
            (report.outcome, report.messages_dropped),
            (Outcome::Clean, 0),
            "{report:?}"
        );
    }
}

async fn undeliverable_messages_are_counted_as_dropped<F: Flavor>() {
    for &role in F::ROLES {
        let (m, _g) = recorder::install();
        let config = Config::new()
            .with_close_timeout(Duration::from_millis(300))
            .unwrap();
        let (mut ws, raw) = F::with_raw(role, &config).await;
        // The raw peer never reads: 20 MiB cannot all leave the machine's socket buffers.
        let big = vec![7u8; 1 << 20];
        for _ in 0..20 {
            futures_util::Sink::start_send(std::pin::Pin::new(&mut ws), F::binary(big.clone()))
                .unwrap();
        }
        let report = bounded(ws.close(1000, "")).await.unwrap();
        assert_eq!(report.outcome, Outcome::Timeout, "{report:?}");
        assert_eq!(report.messages_dropped, 20);
        assert_eq!(report.code_sent, None, "the Close frame never got out");
        assert_eq!(
            m.counter("websocket_messages_dropped_total", &[("role", r(role))]),
            20
        );
        drop(raw);
    }
}

/// A peer that stops reading makes `feed` wait (the sink is not ready), and the writer is woken
/// to carry on once the peer reads again. `poll_ready` answers from a flag that `start_send`
/// sets; a flag that said "ready" when the socket was full would never push back.
async fn a_peer_that_stops_reading_pushes_back_and_the_writer_resumes<F: Flavor>() {
    for &role in F::ROLES {
        let (mut ws, mut raw) = F::with_raw(role, &Config::new()).await;
        let big = vec![7u8; 1 << 20];
        // A feed still waiting after this long is held back by the peer, not by a busy machine
        // (a loopback write of 1 MiB takes a few milliseconds at most).
        let held = Duration::from_millis(500);
        let mut accepted = 0;
        let blocked = loop {
            assert!(
                accepted < 64,
                "{role}: 64 MiB accepted without any push-back"
            );
            match tokio::time::timeout(held, ws.feed(F::binary(big.clone()))).await {
                Ok(sent) => {
                    sent.unwrap();
                    accepted += 1;
                }
                Err(_) => break true,
            }
        };
        assert!(blocked && accepted > 0, "{role}: accepted {accepted}");
        // The peer reads again: the parked writer is woken and the next message goes through.
        let reader = tokio::spawn(async move {
            let mut frames = 0usize;
            while let Ok(Some(frame)) = raw.read_frame().await {
                frames += 1;
                if frame.close_code().is_some() {
                    break;
                }
            }
            frames
        });
        bounded(ws.feed(F::binary(big.clone()))).await.unwrap();
        bounded(ws.flush()).await.unwrap();
        assert_eq!(ws.state(), State::Open, "{role}");
        drop(ws);
        let frames = bounded(reader).await.unwrap();
        // Every accepted message, the one after the pause, and the Close frame (1001) arrive.
        assert!(
            frames >= accepted + 2,
            "{role}: {frames} frames for {accepted} + 2"
        );
    }
}

async fn dropping_every_handle_closes_with_going_away<F: Flavor>() {
    for &role in F::ROLES {
        let (m, _g) = recorder::install();
        let (ws, mut raw) = F::with_raw(role, &Config::new()).await;
        let handle = ws.handle();
        drop(ws);
        let frame = raw
            .read_frame_timeout(Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(frame.close_code(), Some(1001));
        raw.send_close(Some(1001), b"").await.unwrap();
        if role == Role::Client {
            raw.shutdown_write().await.unwrap();
        }
        let report = bounded(handle.closed()).await;
        assert_eq!(report.outcome, Outcome::Clean, "{role}: {report:?}");
        assert_eq!(report.cause, Cause::App);
        assert_eq!(report.code_sent, Some(WireCode::Valid(1001)));
        let sent = [
            ("role", r(role)),
            ("direction", "sent"),
            ("code", "going_away"),
        ];
        assert_eq!(m.counter(FRAMES, &sent), 1);
        m.assert_balanced(r(role));
    }
}

async fn a_cancelled_close_still_completes_in_its_own_task<F: Flavor>() {
    for &role in F::ROLES {
        // The deadline is far beyond the caller's 50 ms wait, so that even a runtime thread kept
        // off the CPU for a while does not see the close end within the wait.
        let config = Config::new().with_close_timeout(DEADLINE).unwrap();
        let (mut ws, mut raw) = F::with_raw(role, &config).await;
        let handle = ws.handle();
        // The peer never answers; the caller gives up waiting after 50 ms.
        let waited = tokio::time::timeout(Duration::from_millis(50), ws.close(1000, "")).await;
        assert!(waited.is_err(), "the close cannot finish without the peer");
        assert_eq!(handle.state(), State::Closing(Cause::App));
        let report = bounded(handle.closed()).await;
        assert_eq!(report.outcome, Outcome::Timeout, "{role}: {report:?}");
        let frames = raw
            .read_all_until_eof(Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(frames.iter().filter(|f| f.is_close()).count(), 1);
    }
}

flavor_tests!(
    a_cancelled_close_still_completes_in_its_own_task,
    clean_close_started_by_us,
    clean_close_started_by_peer_is_answered_at_once,
    simultaneous_close_sends_one_frame_each_way,
    silent_peer_times_out_at_the_deadline,
    a_shorter_deadline_begun_later_still_ends_on_time,
    peer_reset_mid_close_is_peer_gone,
    peer_eof_without_close_is_transport_peer_gone,
    invalid_close_codes_from_the_peer_fail_with_1002,
    a_protocol_error_ends_at_once_without_waiting_for_the_peer,
    a_server_that_answers_but_keeps_the_connection_ends_clean_at_the_deadline,
    invalid_code_in_the_peers_reply_keeps_its_value,
    valid_peer_codes_are_counted_under_their_code,
    long_reason_is_cut_at_a_char_boundary,
    refused_codes_send_nothing_and_keep_the_connection,
    send_after_close_is_a_typed_error_counted_without_warning,
    redundant_closes_return_the_same_report_and_are_counted,
    handshake_completes_when_nobody_reads,
    queued_messages_go_out_before_the_close_frame,
    undeliverable_messages_are_counted_as_dropped,
    dropping_every_handle_closes_with_going_away,
    a_peer_that_stops_reading_pushes_back_and_the_writer_resumes,
    a_close_started_elsewhere_still_ends_at_its_deadline,
);

/// A close waiting for its peer when its runtime shuts down still ends: the waiting close is
/// dropped with the runtime, and every handle gets a report rather than a connection that stays
/// `Closing` forever. Both Close frames had been exchanged (only the server's TCP close was
/// still to come), so it is `clean`, with the peer's cause: a teardown is an expected end
/// (tests/teardown.rs has the rest).
#[test]
fn a_close_waiting_when_its_runtime_shuts_down_still_reports() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (handle, ends) = rt.block_on(async {
        let (mut ws, mut peer) = support::pairs::wrapped_and_tt(Role::Client, &Config::new()).await;
        // The server closes first and then goes silent: the client replies and waits for the
        // server's TCP close.
        let frame = CloseFrame {
            code: TtCode::Normal,
            reason: "".into(),
        };
        peer.send(Message::Close(Some(frame))).await.unwrap();
        let msg = bounded(ws.next()).await;
        assert!(matches!(msg, Some(Ok(Message::Close(_)))), "{msg:?}");
        assert_eq!(ws.state(), State::Closing(Cause::Peer));
        (ws.handle(), (ws, peer))
    });
    drop(rt);
    let report = handle.report().expect("a report once the runtime is gone");
    assert_eq!(report.outcome, Outcome::Clean, "{report:?}");
    assert_eq!(report.cause, Cause::Peer, "{report:?}");
    assert_eq!(handle.state(), State::Closed);
    drop(ends);
}
