use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

use futures_util::{SinkExt, Stream, StreamExt};
use tokio_tungstenite::tungstenite::protocol::Role as TtRole;

use crate::{Cause, Outcome};

use super::WebSocket;
use super::closer::Closer;
use super::plan::Plan;

/// A waker that counts its wake-ups.
#[derive(Default)]
struct Count(AtomicUsize);

impl std::task::Wake for Count {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Both ends of a connection over an in-memory stream: (server, client).
async fn duplex_pair() -> (
    tokio_tungstenite::WebSocketStream<tokio::io::DuplexStream>,
    tokio_tungstenite::WebSocketStream<tokio::io::DuplexStream>,
) {
    let (a, b) = tokio::io::duplex(4096);
    tokio::join!(
        tokio_tungstenite::WebSocketStream::from_raw_socket(a, TtRole::Server, None),
        tokio_tungstenite::WebSocketStream::from_raw_socket(b, TtRole::Client, None),
    )
}

/// glibc serves allocations up to 1,032 bytes from a per-thread cache; larger ones take its
/// general path (several hundred instructions more for the allocation and the free).
#[tokio::test]
async fn the_boxed_close_fits_the_allocators_thread_cache() {
    let (a, _b) = tokio::io::duplex(1024);
    let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
        a,
        tokio_tungstenite::tungstenite::protocol::Role::Server,
        None,
    )
    .await;
    let conn = WebSocket::server(ws);
    let shared = conn.shared().clone();
    let io = shared.gate.begin(&mut shared.gate.lock(), 1).expect("open");
    let plan = Plan::close(Cause::App, Some((1000, String::new())));
    let close = Closer::new(shared.clone(), plan, 0).run(io);
    let size = std::mem::size_of_val(&close);
    assert!(size <= 1024, "the close task is {size} bytes");
}

/// A close polled on the spot has the connection itself as its waker; once it has ended,
/// nothing may keep the connection alive (its span would also never close).
#[tokio::test]
async fn a_connection_closed_by_its_peer_is_freed() {
    use tokio_tungstenite::tungstenite::Message;
    let (mut server, client) = duplex_pair().await;
    let mut ws = WebSocket::client(client);
    let conn = Arc::downgrade(ws.shared());
    server.send(Message::Close(None)).await.unwrap();
    // The server reads the client's reply, then closes the stream.
    let peer = tokio::spawn(async move { while let Some(Ok(_)) = server.next().await {} });
    while let Some(Ok(_)) = ws.next().await {}
    peer.await.unwrap();
    let report = ws.handle().closed().await;
    assert_eq!(report.outcome, Outcome::Clean);
    drop(ws);
    for _ in 0..100 {
        if conn.strong_count() == 0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(conn.strong_count(), 0, "the connection outlived its close");
}

/// The task awaiting `close()` ends the close in its own poll when the peer answers; that
/// end must not wake the same task again (a spurious poll of the caller, and on a
/// multi-thread runtime possibly another worker woken, per close).
#[tokio::test]
async fn a_close_ended_by_its_caller_does_not_wake_the_caller_again() {
    let (mut server, client) = duplex_pair().await;
    let mut ws = WebSocket::client(client);
    let count = Arc::new(Count::default());
    let waker = Waker::from(count.clone());
    let mut cx = Context::from_waker(&waker);
    let mut close = Box::pin(ws.close(1000, "bye"));
    assert!(close.as_mut().poll(&mut cx).is_pending(), "no answer yet");
    // The peer reads the Close, answers it and closes the stream.
    while let Some(Ok(_)) = server.next().await {}
    drop(server);
    let mut ended = None;
    for _ in 0..1000 {
        let before = count.0.load(Ordering::SeqCst);
        if let Poll::Ready(report) = close.as_mut().poll(&mut cx) {
            ended = Some((report, count.0.load(Ordering::SeqCst) - before));
            break;
        }
        tokio::task::yield_now().await;
    }
    let (report, woken) = ended.expect("the close ended");
    assert_eq!(report.expect("valid code").outcome, Outcome::Clean);
    assert_eq!(
        woken, 0,
        "the close woke its caller from the poll that ended it"
    );
}

/// Two callers await `close()`; the first registers as the close's driver, the second
/// waits for the end, then is dropped. The driver it unregisters on the way out is woken
/// (to register again): else the first caller, which waits for nothing but its driver's
/// wake-up, would never learn of the end.
#[tokio::test]
async fn a_second_close_dropped_leaves_the_first_a_way_to_the_end() {
    let (mut server, client) = duplex_pair().await;
    let ws = WebSocket::client(client);
    let (first, second) = (ws.handle(), ws.handle());
    let count = Arc::new(Count::default());
    let waker = Waker::from(count.clone());
    let mut cx = Context::from_waker(&waker);
    let mut first = Box::pin(first.close(1000, "bye"));
    assert!(first.as_mut().poll(&mut cx).is_pending());
    let mut second = Box::pin(second.close(1000, "bye"));
    assert!(
        second
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_pending()
    );
    drop(second);
    while let Some(Ok(_)) = server.next().await {}
    drop(server);
    let mut report = None;
    for _ in 0..1000 {
        if count.0.swap(0, Ordering::SeqCst) > 0 {
            if let Poll::Ready(r) = first.as_mut().poll(&mut cx) {
                report = Some(r);
                break;
            }
        }
        tokio::task::yield_now().await;
    }
    let report = report.expect("the first caller was woken to the end");
    assert_eq!(report.expect("valid code").outcome, Outcome::Clean);
}

/// Every public type says in `Debug` which connection it is (the id an operator finds in
/// the connection's span), and the connection and its handle in which state.
#[tokio::test]
async fn debug_output_names_the_connection() {
    let (a, _b) = tokio::io::duplex(1024);
    let ws = WebSocket::server(
        tokio_tungstenite::WebSocketStream::from_raw_socket(a, TtRole::Server, None).await,
    );
    let id = ws.handle().id();
    let state = format!("id: {id}, role: Server, state: Open");
    assert_eq!(format!("{ws:?}"), format!("WebSocket {{ {state} }}"));
    assert_eq!(
        format!("{:?}", ws.handle()),
        format!("Handle {{ {state} }}")
    );
    let (tx, rx) = ws.split();
    assert_eq!(format!("{tx:?}"), format!("Sender {{ id: {id} }}"));
    assert_eq!(format!("{rx:?}"), format!("Receiver {{ id: {id} }}"));
}

/// A reader that was woken and has read leaves no waker behind: a close it begins next
/// must not wake the very task that is closing (on a multi-thread runtime that is a yield
/// and another worker woken per close).
#[tokio::test]
async fn a_completed_read_leaves_no_waker_for_the_close_to_wake() {
    use tokio_tungstenite::tungstenite::Message;

    let (server, mut client) = duplex_pair().await;
    let mut ws = WebSocket::server(server);
    let count = Arc::new(Count::default());
    let waker = Waker::from(count.clone());
    let mut cx = Context::from_waker(&waker);
    assert!(Pin::new(&mut ws).poll_next(&mut cx).is_pending());
    client.send(Message::text("hi")).await.unwrap();
    // Read it with the same waker, as the woken task would.
    let mut read = None;
    for _ in 0..100 {
        if let Poll::Ready(got) = Pin::new(&mut ws).poll_next(&mut cx) {
            read = got;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(matches!(read, Some(Ok(Message::Text(_)))), "{read:?}");
    let before = count.0.load(Ordering::SeqCst);
    ws.handle().start_close(1000, "bye").unwrap();
    assert_eq!(
        count.0.load(Ordering::SeqCst),
        before,
        "the close woke the reader that had already read"
    );
}

/// A connecting handle takes a drain's quiet close (once), applies it at the upgrade, and
/// forwards a terminate to the open connection: the close ends at once, not at its deadline.
#[tokio::test]
async fn a_connecting_handle_forwards_quiet_closes_and_terminates() {
    use std::time::Duration;

    use crate::{Config, Role, State};

    let opening = super::Opening::new(
        Config::new().series(Role::Server),
        Config::DEFAULT_CLOSE_TIMEOUT,
    );
    let handle = opening.handle();
    handle.terminate(); // nothing to terminate while connecting
    assert_eq!(handle.state(), State::Connecting);
    assert!(handle.begin_close_quietly(Cause::Shutdown, 1001, "bye"));
    assert!(!handle.begin_close_quietly(Cause::Shutdown, 1001, "again"));
    assert_eq!(handle.state(), State::Closing(Cause::Shutdown));

    let (server, _client) = duplex_pair().await; // the client never answers
    let config = Config::new()
        .with_close_timeout(Duration::from_secs(600))
        .unwrap();
    let ws = opening.open(server, &config);
    assert_eq!(ws.handle().id(), handle.id());
    assert_eq!(handle.state(), State::Closing(Cause::Shutdown));
    handle.terminate();
    let report = tokio::time::timeout(Duration::from_secs(60), handle.closed())
        .await
        .expect("terminated, not left to its 600 s deadline");
    assert_eq!(
        (report.outcome, report.cause),
        (Outcome::Timeout, Cause::Shutdown)
    );
}
