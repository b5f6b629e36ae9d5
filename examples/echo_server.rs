//! An echo server whose every close is safe, classified and measured.
//!
//! Run it with:
//!
//! ```sh
//! cargo run --example echo_server -- --listen 127.0.0.1:9001 --metrics 127.0.0.1:9898
//! ```
//!
//! Then connect any WebSocket client to `ws://127.0.0.1:9001/`. Text and binary messages are
//! echoed. The text message `!close CODE [REASON]` makes the server start the close with that
//! code and reason (an invalid code is answered with an `error: ...` text message and the
//! connection stays open). Metrics are at `http://127.0.0.1:9898/metrics`; set `RUST_LOG` to
//! change what is logged (default `info,wsclose=debug`).

use std::net::SocketAddr;

use futures_util::StreamExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tracing_subscriber::EnvFilter;
use wsclose::Config;

struct Args {
    listen: SocketAddr,
    metrics: SocketAddr,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        listen: "127.0.0.1:9001".parse().expect("valid default"),
        metrics: "127.0.0.1:9898".parse().expect("valid default"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let slot = match flag.as_str() {
            "--listen" => &mut args.listen,
            "--metrics" => &mut args.metrics,
            "-h" | "--help" => {
                return Err("usage: echo_server [--listen ADDR] [--metrics ADDR]".into());
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        };
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs an address"))?;
        *slot = value
            .parse()
            .map_err(|e| format!("{flag} {value:?}: {e}"))?;
    }
    Ok(args)
}

/// Parses `!close CODE [REASON]`.
fn close_command(text: &str) -> Option<Result<(u16, &str), String>> {
    let rest = text.strip_prefix("!close")?;
    let rest = rest.trim_start();
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    Some(
        code.parse::<u16>()
            .map(|c| (c, reason))
            .map_err(|e| format!("bad code {code:?}: {e}")),
    )
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
                    Err(e) => Message::text(format!("error: {e}")),
                },
                Some(Err(e)) => Message::text(format!("error: {e}")),
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
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = match parse_args() {
        Ok(args) => args,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,wsclose=debug".into());
    tracing_subscriber::fmt().with_env_filter(filter).init();

    wsclose::prometheus::install(args.metrics)?;
    let listener = TcpListener::bind(args.listen).await?;
    tracing::info!(listen = %args.listen, metrics = %args.metrics, "echo server ready");
    let config = Config::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (tcp, peer) = accepted?;
                tokio::spawn(serve(tcp, config.clone().with_peer_addr(peer)));
            }
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("interrupted; exiting");
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::close_command;

    #[test]
    fn parses_close_commands() {
        assert_eq!(close_command("hello"), None);
        assert_eq!(
            close_command("!close 4001 going home"),
            Some(Ok((4001, "going home")))
        );
        assert_eq!(close_command("!close 1000"), Some(Ok((1000, ""))));
        assert!(matches!(close_command("!close x"), Some(Err(_))));
    }
}
