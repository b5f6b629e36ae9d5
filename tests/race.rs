//! Many tasks racing `close` and `send` on one connection, on a multi-threaded runtime:
//! exactly one Close frame on the wire (counted by a frame-level peer), one report for all.

mod support;

use std::sync::Arc;
use std::time::Duration;

use futures_util::SinkExt;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;
use wsclose::{CloseReport, Config, Outcome, Role, WireCode};

use support::pairs::{bounded, wrapped_and_raw};
use support::raw::{Frame, RawPeer};

const ITERATIONS: usize = 1000;

/// The peer: optionally sends its own Close at once; answers our Close; reads to EOF.
async fn peer(mut raw: RawPeer, raw_is_server: bool, close_first: bool) -> Vec<Frame> {
    if close_first {
        raw.send_close(Some(1000), b"peer").await.unwrap();
    }
    let mut frames = Vec::new();
    while let Some(f) = raw
        .read_frame_timeout(Duration::from_secs(5))
        .await
        .unwrap()
    {
        let is_close = f.is_close();
        let code = f.close_code();
        frames.push(f);
        if is_close {
            if !close_first {
                raw.send_close(code, b"").await.unwrap();
            }
            if raw_is_server {
                raw.shutdown_write().await.unwrap();
            }
            frames.extend(
                raw.read_all_until_eof(Duration::from_secs(5))
                    .await
                    .unwrap(),
            );
            break;
        }
    }
    frames
}

async fn one_race(tasks: usize, iteration: usize) {
    let role = if iteration % 2 == 0 {
        Role::Server
    } else {
        Role::Client
    };
    let close_first = iteration % 4 == 3;
    let (ws, raw) = wrapped_and_raw(role, &Config::new()).await;
    let peer = tokio::spawn(peer(raw, role == Role::Client, close_first));
    let handle = ws.handle();
    let (tx, rx) = ws.split();
    let tx = Arc::new(tokio::sync::Mutex::new(tx));

    let mut set = JoinSet::new();
    for t in 0..tasks {
        let handle = handle.clone();
        let tx = tx.clone();
        set.spawn(async move {
            match t % 3 {
                // Each closer asks for a different code; only one can win.
                0 => Some(handle.close(4000 + t as u16, "race").await.unwrap()),
                1 => {
                    for i in 0..20 {
                        let res = tx
                            .lock()
                            .await
                            .send(Message::text(format!("{t}:{i}")))
                            .await;
                        if let Err(e) = res {
                            assert!(e.is_closed(), "a send failed for another reason: {e}");
                            break;
                        }
                        tokio::task::yield_now().await;
                    }
                    None
                }
                _ => {
                    SinkExt::close(&mut *tx.lock().await).await.unwrap();
                    None
                }
            }
        });
    }
    let mut reports: Vec<CloseReport> = Vec::new();
    while let Some(r) = bounded(set.join_next()).await {
        reports.extend(r.expect("no task panicked"));
    }
    let last = bounded(handle.closed()).await;
    drop(rx);
    for r in &reports {
        assert_eq!(r, &last, "every closer gets the same report");
    }
    assert_eq!(
        last.outcome,
        Outcome::Clean,
        "tasks={tasks} it={iteration}: {last:?}"
    );

    let frames = bounded(peer).await.unwrap();
    let closes: Vec<&Frame> = frames.iter().filter(|f| f.is_close()).collect();
    assert_eq!(closes.len(), 1, "tasks={tasks} it={iteration}: {frames:?}");
    assert!(
        frames.last().unwrap().is_close(),
        "nothing follows the Close frame"
    );
    let code = closes[0].close_code();
    assert_eq!(
        last.code_sent,
        Some(code.map_or(WireCode::NoStatus, WireCode::Valid))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tasks() {
    for i in 0..ITERATIONS {
        one_race(2, i).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_tasks() {
    for i in 0..ITERATIONS {
        one_race(8, i).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_tasks() {
    for i in 0..ITERATIONS {
        one_race(64, i).await;
    }
}
