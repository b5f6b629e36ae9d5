//! An echo server whose every close is safe, classified and measured.
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
//! (default `info,wsclose=debug`). Ctrl-C or SIGTERM stops it.

use std::net::SocketAddr;

use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use wsclose::Config;
use wsclose_examples::{bind_websocket, close_command, fail, refused, serve_metrics, usage_exit};

const USAGE: &str = "usage: echo_server [--listen ADDR] [--metrics ADDR]";

struct Args {
    listen: SocketAddr,
    metrics: SocketAddr,
}

/// The arguments, or `Err(None)` for `--help`, `Err(Some(error))` for a bad one.
fn parse_args() -> Result<Args, Option<String>> {
    let mut args = Args {
        listen: "127.0.0.1:9001".parse().expect("valid default"),
        metrics: "127.0.0.1:9898".parse().expect("valid default"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let slot = match flag.as_str() {
            "--listen" => &mut args.listen,
            "--metrics" => &mut args.metrics,
            "-h" | "--help" => return Err(None),
            other => return Err(Some(format!("unknown argument {other:?}"))),
        };
        let value = it
            .next()
            .ok_or_else(|| Some(format!("{flag} needs an address")))?;
        *slot = value
            .parse()
            .map_err(|e| Some(format!("{flag} {value:?}: {e}")))?;
    }
    Ok(args)
}

async fn serve(tcp: TcpStream, config: Config) {
    let ws = match tokio_tungstenite::accept_async(tcp).await {
        Ok(ws) => ws,
        Err(e) => {
            tracing::debug!(error = %e, "WebSocket handshake failed");
            return;
        }
    };
    let mut ws = config.server(ws);
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
    serve_metrics("echo_server", args.metrics)?;
    let listen = listener
        .local_addr()
        .map_err(|e| format!("echo_server: {e}"))?;
    tracing::info!(%listen, metrics = %args.metrics, "echo server ready");
    let config = Config::new();
    let stop = wsclose::shutdown_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, peer) = accepted.map_err(|e| format!("echo_server: accept: {e}"))?;
                tokio::spawn(serve(tcp, config.clone().with_peer_addr(peer)));
            }
            _ = &mut stop => {
                tracing::info!("interrupted; exiting");
                return Ok(());
            }
        }
    }
}
