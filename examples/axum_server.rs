//! An axum server with a WebSocket echo route, `/metrics`, and a graceful shutdown that closes
//! every socket with 1001 before `serve` returns, and lets Prometheus scrape the drain's ends.
//!
//! Run it with:
//!
//! ```sh
//! cargo run -p wsclose-examples --bin axum_server --features axum -- --listen 127.0.0.1:3000
//! ```
//!
//! It listens on `127.0.0.1:3000` unless given `--listen ADDR`. Connect to
//! `ws://127.0.0.1:3000/ws` (text and binary are echoed; `!close CODE [REASON]` makes the server
//! close, a malformed command is answered with an `error: …` text message), read
//! `http://127.0.0.1:3000/metrics`, and stop it with Ctrl-C or SIGTERM: upgrades still arriving
//! are refused with 503, connected clients receive Close 1001 (within 10 s), the shutdown report
//! is printed, and `/metrics` stays up until one scrape has read the drain's final values (at
//! most 15 s), as docs/operations.md describes for a deploy. The upgrades run through
//! `Config::on_upgrade`, so they are counted (`websocket_handshakes_total`) and refused during
//! the drain.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use futures_util::StreamExt;
use tokio::sync::watch;
use wsclose::{Config, Registry, Role};
use wsclose_examples::{bind_websocket, close_command, fail, refused, usage_exit};

const USAGE: &str = "usage: axum_server [--listen ADDR]";

async fn serve_socket(mut ws: wsclose::WebSocket<WebSocket>) {
    while let Some(Ok(msg)) = ws.next().await {
        let reply = match msg {
            Message::Text(ref text) => match close_command(text) {
                Some(Ok((code, reason))) => match ws.close(code, reason).await {
                    Ok(_) => break,
                    Err(e) => Message::Text(refused(&e).into()),
                },
                Some(Err(e)) => Message::Text(e.into()),
                None => msg,
            },
            Message::Binary(_) => msg,
            _ => continue,
        };
        if ws.send(reply).await.is_err() {
            break;
        }
    }
}

#[tokio::main]
async fn main() {
    let listen: SocketAddr = match std::env::args().skip(1).collect::<Vec<_>>().as_slice() {
        [] => "127.0.0.1:3000".parse().expect("valid default"),
        [flag] if flag == "-h" || flag == "--help" => usage_exit(USAGE, None),
        [flag, addr] if flag == "--listen" => match addr.parse() {
            Ok(addr) => addr,
            Err(e) => usage_exit(USAGE, Some(&format!("--listen {addr:?}: {e}"))),
        },
        _ => usage_exit(USAGE, Some("unknown arguments")),
    };
    wsclose_examples::init_logging("info,wsclose=debug");
    if let Err(e) = run(listen).await {
        fail(&e);
    }
}

async fn run(listen: SocketAddr) -> Result<(), String> {
    let listener = bind_websocket("axum_server", listen).await?;
    let fatal = |e: &dyn std::fmt::Display| format!("axum_server: {e}");
    let metrics = wsclose::prometheus::install_recorder().map_err(|e| fatal(&e))?;
    let registry = Registry::new();
    let config = Config::new()
        .with_registry(registry.clone())
        .with_keepalive(
            Config::DEFAULT_KEEPALIVE_INTERVAL,
            Config::DEFAULT_KEEPALIVE_TIMEOUT,
        )
        .map_err(|e| fatal(&e))?;

    // The series of this server's role exist at 0 from its first scrape.
    config.init_metrics(Role::Server);
    // Scrapes served, so that the shutdown can wait for one after the drain.
    let (scraped, mut scrapes) = watch::channel(0u64);

    let app = Router::new()
        .route(
            "/ws",
            get(move |upgrade: WebSocketUpgrade| {
                let config = config.clone();
                async move {
                    let response: Response = config.on_upgrade(upgrade, serve_socket);
                    response
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let text = metrics.render();
                scraped.send_modify(|n| *n += 1);
                std::future::ready(text)
            }),
        );

    let listen = listener.local_addr().map_err(|e| fatal(&e))?;
    tracing::info!("serving ws://{listen}/ws and http://{listen}/metrics");
    // SIGTERM: drain every socket (axum keeps serving meanwhile: upgrades get 503, /metrics
    // answers), then wait for one scrape of the final values, then let axum stop.
    let drain = registry.graceful(wsclose::shutdown_signal(), 1001, Duration::from_secs(10));
    let shutdown = async move {
        drain.await;
        scrapes.mark_unchanged();
        let last = tokio::time::timeout(Duration::from_secs(15), scrapes.changed()).await;
        match last {
            Ok(_) => tracing::info!("last scrape served; stopping"),
            Err(_) => tracing::warn!("no scrape within 15 s of the drain; stopping"),
        }
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| fatal(&e))?;
    if let Some(report) = registry.last_report() {
        println!("shutdown: {report}");
    }
    Ok(())
}
