//! Real, misbehaving peers against a wsclose server: Python `websockets` and Node `ws` clients
//! (tests/peers/, installed by `scripts/peers-setup.sh`) each play every scenario, and the test
//! asserts the exact outcome, cause, codes and metric deltas on the server side.
//!
//! A test skips (with a message) when its peer runtime is missing, unless
//! `WSCLOSE_REQUIRE_PEERS` is set, as `scripts/test.sh` does, in which case it fails.

mod support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use wsclose::{Cause, CloseReport, Config, Outcome, WireCode};

use support::pairs::bounded;
use support::recorder::{self, Metrics};
use support::timing::{DEADLINE, PROMPT, assert_at_deadline};

const CLOSES: &str = "websocket_closes_total";
const FRAMES: &str = "websocket_close_frames_total";
const DROPPED: &str = "websocket_messages_dropped_total";
const CLOSE_DURATION: &str = "websocket_close_duration_seconds";

#[derive(Clone, Copy, Debug)]
enum Peer {
    Python,
    Node,
}

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The command that runs `peer`, or why it cannot run here.
fn peer_command(peer: Peer) -> Result<Command, String> {
    match peer {
        Peer::Python => {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| manifest_dir().join("target"));
            let python = std::env::var_os("WSCLOSE_PYTHON")
                .map(PathBuf::from)
                .unwrap_or_else(|| target.join("py-venv/bin/python"));
            if !python.exists() {
                return Err(format!("no Python venv at {}", python.display()));
            }
            let mut cmd = Command::new(python);
            cmd.arg(manifest_dir().join("tests/peers/python/peer.py"));
            Ok(cmd)
        }
        Peer::Node => {
            let dir = manifest_dir().join("tests/peers/node");
            if !dir.join("node_modules/ws").exists() {
                return Err(format!("no node_modules/ws in {}", dir.display()));
            }
            let node = std::env::var_os("WSCLOSE_NODE").unwrap_or_else(|| "node".into());
            if std::process::Command::new(&node)
                .arg("--version")
                .output()
                .is_err()
            {
                return Err("no `node` on PATH".into());
            }
            let mut cmd = Command::new(node);
            cmd.arg(dir.join("peer.js"));
            Ok(cmd)
        }
    }
}

/// What the server saw of its one connection.
struct Seen {
    report: CloseReport,
    /// From the server's `!flood` close beginning to its end, when there was one.
    flood_close: Option<Duration>,
    echoed: u64,
    /// The peer's `result ...` line.
    peer_said: String,
    m: Metrics,
    _guard: metrics::LocalRecorderGuard<'static>,
}

/// Messages the server sends when asked to `!flood`: far more than loopback socket buffers hold.
const FLOOD_MESSAGES: usize = 400;
const FLOOD_SIZE: usize = 64 * 1024;

/// What `serve_one` reports: the end, how long a `!flood` close took, messages echoed.
type Served = (CloseReport, Option<Duration>, u64);

/// Serves exactly one connection: echoes text and binary, closes with 1000 "bye" on `!close`,
/// and on `!flood` starts sending `FLOOD_MESSAGES` binary messages and closes 300 ms later.
async fn serve_one(listener: TcpListener, config: Config, out: mpsc::Sender<Served>) {
    let (tcp, peer) = listener.accept().await.unwrap();
    let ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
    let ws = config.with_peer_addr(peer).server(ws);
    let handle = ws.handle();
    let (tx, mut rx) = ws.split();
    let mut tx = Some(tx);
    let mut echoed = 0;
    let flood_close_began = std::sync::Arc::new(std::sync::OnceLock::new());
    while let Some(Ok(msg)) = rx.next().await {
        match msg {
            Message::Text(t) if t.as_str() == "!close" => {
                handle.start_close(1000, "bye").unwrap();
            }
            Message::Text(t) if t.as_str() == "!flood" => {
                let mut tx = tx.take().unwrap();
                tokio::spawn(async move {
                    let chunk = vec![7u8; FLOOD_SIZE];
                    for _ in 0..FLOOD_MESSAGES {
                        if tx.send(Message::binary(chunk.clone())).await.is_err() {
                            break;
                        }
                    }
                });
                let handle = handle.clone();
                let began = flood_close_began.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    began.get_or_init(Instant::now);
                    handle.start_close(1000, "").unwrap();
                });
            }
            Message::Text(_) | Message::Binary(_) => {
                let Some(tx) = tx.as_mut() else { continue };
                if tx.send(msg).await.is_err() {
                    break;
                }
                echoed += 1;
            }
            _ => {}
        }
    }
    drop(tx);
    let report = handle.closed().await;
    let flood_close = flood_close_began.get().map(|began| began.elapsed());
    let _ = out.send((report, flood_close, echoed)).await;
}

/// Runs `scenario` with `peer` against a fresh in-test server; `None` when the peer runtime is
/// missing and peers are not required.
async fn run(peer: Peer, scenario: &str, arg: Option<&str>, config: Config) -> Option<Seen> {
    let mut cmd = match peer_command(peer) {
        Ok(cmd) => cmd,
        Err(why) if std::env::var_os("WSCLOSE_REQUIRE_PEERS").is_none() => {
            eprintln!(
                "SKIPPED: {peer:?} peer unavailable ({why}); run scripts/peers-setup.sh \
                 (WSCLOSE_REQUIRE_PEERS=1 makes this a failure)"
            );
            return None;
        }
        Err(why) => panic!("{peer:?} peer unavailable and WSCLOSE_REQUIRE_PEERS is set: {why}"),
    };
    let (m, guard) = recorder::install();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (out_tx, mut out_rx) = mpsc::channel(1);
    let server = tokio::spawn(serve_one(listener, config, out_tx));
    cmd.arg(format!("ws://{addr}/"))
        .arg(scenario)
        .args(arg)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let mut child: Child = cmd.spawn().expect("spawn peer");
    let (report, flood_close, echoed) = bounded(out_rx.recv()).await.expect("server reported");
    bounded(server).await.unwrap();
    // The peer may still be waiting (a silent peer sleeps): stop it by its PID, bounded.
    let mut stdout = child.stdout.take().unwrap();
    let exited = tokio::time::timeout(Duration::from_secs(3), child.wait()).await;
    if exited.is_err() {
        child.start_kill().unwrap();
        bounded(child.wait()).await.unwrap();
    }
    let mut text = String::new();
    bounded(stdout.read_to_string(&mut text)).await.unwrap();
    let peer_said = text
        .lines()
        .find(|l| l.starts_with("result "))
        .unwrap_or("")
        .to_owned();
    Some(Seen {
        report,
        flood_close,
        echoed,
        peer_said,
        m,
        _guard: guard,
    })
}

fn closes(m: &Metrics, cause: &str, outcome: &str, expected: &str) -> u64 {
    m.counter(
        CLOSES,
        &[
            ("role", "server"),
            ("cause", cause),
            ("outcome", outcome),
            ("expected", expected),
        ],
    )
}

fn frames(m: &Metrics, direction: &str, code: &str) -> u64 {
    m.counter(
        FRAMES,
        &[("role", "server"), ("direction", direction), ("code", code)],
    )
}

/// Exactly one end, with these labels, and the invariant of docs/metrics.md holds.
fn assert_one_end(s: &Seen, cause: &str, outcome: &str, expected: &str) {
    let m = &s.m;
    assert_eq!(closes(m, cause, outcome, expected), 1, "{}", m.dump());
    assert_eq!(m.counter_sum(CLOSES, &[]), 1, "{}", m.dump());
    assert_eq!(
        m.gauge("websocket_connections_active", &[("role", "server")]),
        0.0
    );
    m.assert_balanced("server");
}

async fn close_no_answer(peer: Peer) {
    let deadline = DEADLINE;
    let config = Config::new().with_close_timeout(deadline).unwrap();
    let Some(s) = run(peer, "close-no-answer", None, config).await else {
        return;
    };
    let r = &s.report;
    assert_eq!(
        (r.outcome, r.cause),
        (Outcome::Timeout, Cause::App),
        "{r:?}"
    );
    assert_eq!(r.code_sent, Some(WireCode::Valid(1000)));
    assert_eq!(r.code_received, None);
    assert_at_deadline(r.close_duration.unwrap(), deadline, format!("{peer:?}"));
    assert_one_end(&s, "app", "timeout", "true");
    assert_eq!(frames(&s.m, "sent", "normal_closure"), 1);
    assert_eq!(s.m.counter_sum(FRAMES, &[("direction", "received")]), 0);
    assert_eq!(
        s.m.histogram_count(CLOSE_DURATION, &[("outcome", "timeout")]),
        1
    );
}

async fn close_then_silent(peer: Peer) {
    let Some(s) = run(peer, "close-then-silent", None, Config::new()).await else {
        return;
    };
    let r = &s.report;
    assert_eq!((r.outcome, r.cause), (Outcome::Clean, Cause::Peer), "{r:?}");
    assert_eq!(r.code_received, Some(WireCode::Valid(1000)));
    assert_eq!(r.reason_received.as_deref(), Some("bye"));
    assert_eq!(r.code_sent, Some(WireCode::Valid(1000)));
    // The server ends its side at once; it does not wait for a peer that will never close TCP.
    assert!(r.close_duration.unwrap() < PROMPT, "{r:?}");
    assert_one_end(&s, "peer", "clean", "true");
    assert_eq!(frames(&s.m, "received", "normal_closure"), 1);
    assert_eq!(frames(&s.m, "sent", "normal_closure"), 1);
}

async fn transport_end(peer: Peer, scenario: &str) {
    let Some(s) = run(peer, scenario, None, Config::new()).await else {
        return;
    };
    let r = &s.report;
    assert_eq!(
        (r.outcome, r.cause),
        (Outcome::PeerGone, Cause::Transport),
        "{scenario}: {r:?}"
    );
    assert_eq!(
        (r.code_sent, r.code_received, r.close_duration),
        (None, None, None)
    );
    assert_eq!(s.echoed, 1);
    assert_one_end(&s, "transport", "peer_gone", "true");
    assert_eq!(s.m.counter_sum(FRAMES, &[]), 0, "{}", s.m.dump());
    assert_eq!(s.m.histogram_count(CLOSE_DURATION, &[]), 0);
}

async fn invalid_codes(peer: Peer) {
    for code in [0u16, 999, 1004, 1005, 1006, 1016, 2999, 5000, 65535] {
        let arg = code.to_string();
        let Some(s) = run(peer, "close-code", Some(&arg), Config::new()).await else {
            return;
        };
        let r = &s.report;
        assert_eq!(
            (r.outcome, r.cause),
            (Outcome::ProtocolError, Cause::Peer),
            "{code}: {r:?}"
        );
        assert_eq!(r.code_received, Some(WireCode::Invalid(None)), "{code}");
        assert_eq!(r.code_sent, Some(WireCode::Valid(1002)), "{code}");
        assert_one_end(&s, "peer", "protocol_error", "false");
        assert_eq!(
            frames(&s.m, "received", "invalid"),
            1,
            "{code}: {}",
            s.m.dump()
        );
        assert_eq!(frames(&s.m, "sent", "protocol_error"), 1, "{code}");
        assert_eq!(s.m.counter_sum(FRAMES, &[]), 2, "{code}: {}", s.m.dump());
        assert_eq!(s.peer_said, "result close_code=1002", "{code}");
    }
}

async fn reason_124(peer: Peer) {
    let Some(s) = run(peer, "reason-124", None, Config::new()).await else {
        return;
    };
    let r = &s.report;
    // 2 + 124 bytes is over the 125-byte control-frame limit: not a Close frame at all, a
    // protocol violation, answered with 1002.
    assert_eq!(
        (r.outcome, r.cause),
        (Outcome::ProtocolError, Cause::Peer),
        "{r:?}"
    );
    assert_eq!(
        (r.code_received, r.code_sent),
        (None, Some(WireCode::Valid(1002)))
    );
    assert_one_end(&s, "peer", "protocol_error", "false");
    assert_eq!(frames(&s.m, "sent", "protocol_error"), 1, "{}", s.m.dump());
    assert_eq!(s.m.counter_sum(FRAMES, &[("direction", "received")]), 0);
    assert_eq!(s.peer_said, "result close_code=1002");
}

async fn reason_123(peer: Peer) {
    let Some(s) = run(peer, "reason-123", None, Config::new()).await else {
        return;
    };
    let r = &s.report;
    assert_eq!((r.outcome, r.cause), (Outcome::Clean, Cause::Peer), "{r:?}");
    assert_eq!(r.reason_received.as_deref(), Some("r".repeat(123).as_str()));
    assert_one_end(&s, "peer", "clean", "true");
    assert_eq!(frames(&s.m, "received", "normal_closure"), 1);
    assert_eq!(s.peer_said, "result close_code=1000");
}

async fn non_utf8_reason(peer: Peer) {
    let Some(s) = run(peer, "non-utf8-reason", None, Config::new()).await else {
        return;
    };
    let r = &s.report;
    assert_eq!(
        (r.outcome, r.cause),
        (Outcome::ProtocolError, Cause::Peer),
        "{r:?}"
    );
    assert_eq!(
        (r.code_received, r.code_sent),
        (None, Some(WireCode::Valid(1007)))
    );
    assert_one_end(&s, "peer", "protocol_error", "false");
    assert_eq!(frames(&s.m, "sent", "invalid_payload"), 1, "{}", s.m.dump());
    assert_eq!(s.m.counter_sum(FRAMES, &[("direction", "received")]), 0);
    assert_eq!(s.peer_said, "result close_code=1007");
}

async fn flood_then_close(peer: Peer) {
    const N: u64 = 2000;
    let Some(s) = run(peer, "flood", Some(&N.to_string()), Config::new()).await else {
        return;
    };
    let r = &s.report;
    assert_eq!((r.outcome, r.cause), (Outcome::Clean, Cause::Peer), "{r:?}");
    assert_eq!(r.code_received, Some(WireCode::Valid(1000)));
    assert_eq!(r.messages_dropped, 0);
    // Every message before the Close was read and echoed, and every echo reached the peer.
    assert_eq!(s.echoed, N);
    assert_eq!(s.peer_said, format!("result echoes={N} close_code=1000"));
    assert_one_end(&s, "peer", "clean", "true");
    assert_eq!(s.m.counter(DROPPED, &[("role", "server")]), 0);
}

async fn slow_reader(peer: Peer) {
    let deadline = DEADLINE;
    let config = Config::new().with_close_timeout(deadline).unwrap();
    let started = Instant::now();
    let Some(s) = run(peer, "slow-reader", None, config).await else {
        return;
    };
    let r = &s.report;
    // The peer stopped reading: the server's buffers are full when it starts the close, the
    // queued messages cannot be flushed, and the close ends at the deadline.
    assert_eq!(
        (r.outcome, r.cause),
        (Outcome::Timeout, Cause::App),
        "{r:?}"
    );
    assert!(r.messages_dropped >= 1, "{r:?}");
    assert_eq!(
        s.m.counter(DROPPED, &[("role", "server")]),
        r.messages_dropped,
        "{}",
        s.m.dump()
    );
    // Timed from the server's close, not from the connection's start (the Close frame never got
    // out, so the report has no close duration).
    let took = s.flood_close.expect("the server began its close");
    assert_at_deadline(took, deadline, format!("{peer:?}: {r:?}"));
    // Nothing waited for the peer, which stops reading for 30 s.
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_one_end(&s, "app", "timeout", "true");
}

/// The server refuses the upgrade with 403 through `accept_with`: the real client sees the
/// status (Python: `InvalidStatus`; Node: `unexpected-response`), the server a `rejected`
/// handshake with that status, once.
#[allow(clippy::result_large_err)] // tungstenite's `Callback` returns its `ErrorResponse` by value
async fn refused_upgrade(peer: Peer) {
    let mut cmd = match peer_command(peer) {
        Ok(cmd) => cmd,
        Err(why) if std::env::var_os("WSCLOSE_REQUIRE_PEERS").is_none() => {
            eprintln!("SKIPPED: {peer:?} peer unavailable ({why})");
            return;
        }
        Err(why) => panic!("{peer:?} peer unavailable and WSCLOSE_REQUIRE_PEERS is set: {why}"),
    };
    let (m, _guard) = recorder::install();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let refuse = |_: &Request, _: Response| {
            Err(wsclose::reject(StatusCode::FORBIDDEN, "token required"))
        };
        Config::new().accept_with(tcp, refuse).await.map(|_| ())
    });
    cmd.arg(format!("ws://{addr}/"))
        .arg("expect-refusal")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    let child = cmd.spawn().expect("spawn peer");
    let output = bounded(child.wait_with_output()).await.unwrap();
    let err = bounded(server).await.unwrap().unwrap_err();
    assert_eq!(err.handshake(), Some(wsclose::HandshakeOutcome::Rejected));
    assert_eq!(err.status(), Some(403));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.lines().any(|l| l == "result status=403"),
        "{peer:?} said: {text}"
    );
    let rejected = [("role", "server"), ("outcome", "rejected")];
    assert_eq!(
        m.counter("websocket_handshakes_total", &rejected),
        1,
        "{}",
        m.dump()
    );
    assert_eq!(
        m.counter_sum("websocket_handshakes_total", &[]),
        1,
        "counted once"
    );
}

macro_rules! peer_tests {
    ($($name:ident => $body:expr;)*) => {
        mod python {
            use super::*;
            $(#[tokio::test] async fn $name() { ($body)(Peer::Python).await })*
        }
        mod node {
            use super::*;
            $(#[tokio::test] async fn $name() { ($body)(Peer::Node).await })*
        }
    };
}

peer_tests! {
    close_and_never_answer => close_no_answer;
    close_first_then_silent => close_then_silent;
    reset_with_so_linger_0 => |p| transport_end(p, "reset");
    eof_without_close => |p| transport_end(p, "eof");
    invalid_close_codes => invalid_codes;
    reason_of_124_bytes => reason_124;
    reason_of_123_bytes => reason_123;
    non_utf8_reason_is_1007 => non_utf8_reason;
    flood_of_messages_then_close => flood_then_close;
    slow_reader_fills_the_send_buffer_during_close => slow_reader;
    a_refused_upgrade_shows_its_status => refused_upgrade;
}
