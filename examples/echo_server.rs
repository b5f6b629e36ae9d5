//! An echo server whose every close is safe, classified and measured, and whose deploys are
//! seen: it runs the opening handshake through wsclose (bounded, counted), drains through a
//! registry on SIGTERM and keeps `/metrics` up for the last scrape.
//!
//! Run it with:
//!
//! ```sh
//! cargo run -p wsclose-examples --bin echo_server -- --listen 127.0.0.1:9001 --metrics 127.0.0.1:9898
//! ```
//!
//! Then connect any WebSocket client to `ws://127.0.0.1:9001/`. Text and binary messages are
//! echoed. The text message `!close CODE [REASON]` makes the server start the close with that
//! code and reason (a malformed command or a code wsclose refuses is answered with an
//! `error: ...` text message and the connection stays open). Metrics are at
//! `http://127.0.0.1:9898/metrics`. Logs go to stderr; set `RUST_LOG` to change what is logged
//! (default `info,wsclose=debug`).
//!
//! Ctrl-C or SIGTERM stops it the way a deploy needs (docs/operations.md): it stops accepting,
//! answers upgrades still arriving with 503, closes every connection with 1001 within
//! `--grace SECS` (default 10; spread over `--pace SECS` when given), logs the shutdown report,
//! then keeps `/metrics` up until one scrape has read the drain's final values or
//! `--linger SECS` (default 15) have passed, and exits 0.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use wsclose::{Config, Registry, Role};
use wsclose_examples::{
    bind_websocket, close_command, fail, parse_secs, refused, serve_metrics, usage_exit,
};

const USAGE: &str = "usage: echo_server [--listen ADDR] [--metrics ADDR] [--grace SECS] [--pace SECS] [--linger SECS]";

struct Args {
    listen: SocketAddr,
    metrics: SocketAddr,
    grace: Duration,
    pace: Duration,
    linger: Duration,
}

/// The arguments, or `Err(None)` for `--help`, `Err(Some(error))` for a bad one.
fn parse_args() -> Result<Args, Option<String>> {
    let mut args = Args {
        listen: "127.0.0.1:9001".parse().expect("valid default"),
        metrics: "127.0.0.1:9898".parse().expect("valid default"),
        grace: Duration::from_secs(10),
        pace: Duration::ZERO,
        linger: Duration::from_secs(15),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if matches!(flag.as_str(), "-h" | "--help") {
            return Err(None);
        }
        let mut value = |what: &str| {
            it.next()
                .ok_or_else(|| Some(format!("{flag} needs {what}")))
        };
        let addr = |value: String| {
            value
                .parse()
                .map_err(|e| Some(format!("{flag} {value:?}: {e}")))
        };
        match flag.as_str() {
            "--listen" => args.listen = addr(value("an address")?)?,
            "--metrics" => args.metrics = addr(value("an address")?)?,
            "--grace" => args.grace = parse_secs(&flag, &value("seconds")?)?,
            "--pace" => args.pace = parse_secs(&flag, &value("seconds")?)?,
            "--linger" => args.linger = parse_secs(&flag, &value("seconds")?)?,
            other => return Err(Some(format!("unknown argument {other:?}"))),
        }
    }
    Ok(args)
}

async fn serve(tcp: TcpStream, config: Config) {
    // The handshake under wsclose's deadline (10 s): counted, refused with 503 during a drain.
    let mut ws = match config.accept(tcp).await {
        Ok(ws) => ws,
        Err(e) => {
            tracing::debug!(error = %e, "WebSocket handshake failed");
            return;
        }
    };
    while let Some(Ok(msg)) = ws.next().await {
        let reply = match &msg {
            Message::Text(text) => match close_command(text) {
                Some(Ok((code, reason))) => match ws.close(code, reason).await {
                    Ok(report) => {
                        tracing::info!(%report, "closed on request");
                        break;
                    }
                    Err(e) => Message::text(refused(&e)),
                },
                Some(Err(e)) => Message::text(e),
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
    let args = match parse_args() {
        Ok(args) => args,
        Err(error) => usage_exit(USAGE, error.as_deref()),
    };
    wsclose_examples::init_logging("info,wsclose=debug");
    if let Err(e) = run(args).await {
        fail(&e);
    }
}

async fn run(args: Args) -> Result<(), String> {
    let listener = bind_websocket("echo_server", args.listen).await?;
    let exporter = serve_metrics("echo_server", args.metrics)?;
    let listen = listener
        .local_addr()
        .map_err(|e| format!("echo_server: {e}"))?;
    let registry = Registry::new().with_pacing(args.pace);
    let config = Config::new().with_registry(registry.clone());
    // Every series this server uses exists at 0 before its first connection, so a new replica
    // is visible (and `increase()` sees its first end) from the first scrape.
    config.init_metrics(Role::Server);
    // Listening for SIGTERM from here on, before the ready line (a deploy may send it at once).
    let stop = wsclose::shutdown_signal();
    tokio::pin!(stop);
    tracing::info!(%listen, metrics = %exporter.local_addr(), "echo server ready");
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                // Out of file descriptors and the like: this connection is lost, the next may not be.
                let Ok((tcp, _peer)) = accepted else { continue };
                tokio::spawn(serve(tcp, config.clone()));
            }
            _ = &mut stop => break,
        }
    }
    // SIGTERM: stop accepting (the listener is closed here), drain, let the last scrape in.
    drop(listener);
    tracing::info!(connections = registry.len(), "SIGTERM or Ctrl-C; draining");
    let report = registry
        .shutdown(1001, args.grace)
        .await
        .map_err(|e| format!("echo_server: {e}"))?;
    tracing::info!(%report, "drained");
    exporter.linger(args.linger).await;
    Ok(())
}
