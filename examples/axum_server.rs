//! An axum server with a WebSocket echo route, `/metrics`, and a graceful shutdown that closes
//! every socket with 1001 before `serve` returns.
//!
//! Run it with:
//!
//! ```sh
//! cargo run --example axum_server --features axum -- --listen 127.0.0.1:3000
//! ```
//!
//! Then connect to `ws://127.0.0.1:3000/ws` (text and binary are echoed; `!close CODE [REASON]`
//! makes the server close), read `http://127.0.0.1:3000/metrics`, and stop it with Ctrl-C or
//! SIGTERM: connected clients receive Close 1001 and the shutdown report is logged.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use futures_util::StreamExt;
use tracing_subscriber::EnvFilter;
use wsclose::{Config, Registry};

async fn serve_socket(socket: WebSocket, config: Config) {
    let mut ws = config.server(socket);
    while let Some(Ok(msg)) = ws.next().await {
        let reply = match msg {
            Message::Text(ref text) if text.starts_with("!close") => {
                let mut parts = text.splitn(3, ' ').skip(1);
                let code = parts.next().and_then(|c| c.parse().ok()).unwrap_or(1000);
                match ws.close(code, parts.next().unwrap_or("")).await {
                    Ok(_) => break,
                    Err(e) => Message::Text(format!("error: {e}").into()),
                }
            }
            Message::Text(_) | Message::Binary(_) => msg,
            _ => continue,
        };
        if ws.send(reply).await.is_err() {
            break;
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,wsclose=debug".into());
    tracing_subscriber::fmt().with_env_filter(filter).init();
    let listen: SocketAddr = match std::env::args().skip(1).collect::<Vec<_>>().as_slice() {
        [] => "127.0.0.1:3000".parse()?,
        [flag, addr] if flag == "--listen" => addr.parse()?,
        _ => {
            eprintln!("usage: axum_server [--listen ADDR]");
            std::process::exit(2);
        }
    };

    let metrics = wsclose::prometheus::install_recorder()?;
    let registry = Registry::new();
    let config = Config::new()
        .with_registry(registry.clone())
        .with_keepalive(
            Config::DEFAULT_KEEPALIVE_INTERVAL,
            Config::DEFAULT_KEEPALIVE_TIMEOUT,
        )?;

    let app = Router::new()
        .route(
            "/ws",
            get(move |upgrade: WebSocketUpgrade| {
                let config = config.clone();
                async move {
                    let response: Response =
                        upgrade.on_upgrade(move |socket| serve_socket(socket, config));
                    response
                }
            }),
        )
        .route(
            "/metrics",
            get(move || std::future::ready(metrics.render())),
        );

    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(%listen, "serving /ws and /metrics");
    let shutdown = registry.graceful(wsclose::shutdown_signal(), 1001, Duration::from_secs(10));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    if let Some(report) = registry.last_report() {
        println!("shutdown: {report}");
    }
    Ok(())
}
