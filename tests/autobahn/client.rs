//! An Autobahn|Testsuite client testee: the standard getCaseCount / runCase / updateReports
//! loop, echoing every text and binary message.
//!
//! Run it against `wstest -m fuzzingserver` (see `scripts/autobahn.sh`, which does all of this):
//!
//! ```sh
//! cargo run --release --example autobahn_client -- --server ws://127.0.0.1:9002
//! cargo run --release --example autobahn_client -- --server ws://127.0.0.1:9002 --raw
//! ```
//!
//! By default each connection is wrapped with `wsclose::Config::new().client(ws)` (agent
//! `wsclose`); `--raw` runs the same loop on plain tokio-tungstenite (agent
//! `tokio-tungstenite`) so the two can be compared case by case. `--agent NAME` overrides the
//! agent name.

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Args {
    server: String,
    raw: bool,
    agent: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        server: "ws://127.0.0.1:9002".into(),
        raw: false,
        agent: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--server" => args.server = it.next().ok_or("--server needs a URL")?,
            "--agent" => args.agent = Some(it.next().ok_or("--agent needs a name")?),
            "--raw" => args.raw = true,
            "-h" | "--help" => {
                return Err("usage: autobahn_client [--server URL] [--agent NAME] [--raw]".into());
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    Ok(args)
}

async fn case_count(server: &str) -> Result<u32, BoxError> {
    let (mut ws, _) = connect_async(format!("{server}/getCaseCount")).await?;
    let mut count = None;
    while let Some(msg) = ws.next().await {
        match msg? {
            Message::Text(text) => count = Some(text.as_str().trim().parse()?),
            Message::Close(_) => {}
            _ => {}
        }
    }
    count.ok_or_else(|| "no case count received".into())
}

/// One case on plain tokio-tungstenite: upstream's own autobahn client loop.
async fn run_raw(url: &str) -> Result<(), WsError> {
    let (mut ws, _) = connect_async(url).await?;
    while let Some(msg) = ws.next().await {
        let msg = msg?;
        if msg.is_text() || msg.is_binary() {
            ws.send(msg).await?;
        }
    }
    Ok(())
}

/// One case through wsclose: the same loop on the wrapped connection.
async fn run_wsclose(url: &str) -> Result<wsclose::CloseReport, BoxError> {
    let (ws, _) = connect_async(url).await?;
    let mut ws = wsclose::Config::new().client(ws);
    let handle = ws.handle();
    while let Some(msg) = ws.next().await {
        let Ok(msg) = msg else { break };
        if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
            break;
        }
    }
    drop(ws);
    Ok(handle.closed().await)
}

async fn update_reports(server: &str, agent: &str) -> Result<(), BoxError> {
    let (mut ws, _) = connect_async(format!("{server}/updateReports?agent={agent}")).await?;
    ws.close(None).await?;
    while let Some(Ok(_)) = ws.next().await {}
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let args = match parse_args() {
        Ok(args) => args,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };
    let agent = args.agent.clone().unwrap_or_else(|| {
        if args.raw {
            "tokio-tungstenite".into()
        } else {
            "wsclose".into()
        }
    });
    let total = case_count(&args.server).await?;
    eprintln!("autobahn_client: agent {agent}: running {total} cases");
    let mut outcomes = std::collections::BTreeMap::<String, u32>::new();
    for case in 1..=total {
        let url = format!("{}/runCase?case={case}&agent={agent}", args.server);
        let label = if args.raw {
            match run_raw(&url).await {
                Ok(()) => "ok".to_owned(),
                Err(e) => format!("error: {}", error_kind(&e)),
            }
        } else {
            match run_wsclose(&url).await {
                Ok(report) => format!("{} (cause {})", report.outcome, report.cause),
                Err(e) => format!("connect error: {e}"),
            }
        };
        *outcomes.entry(label).or_default() += 1;
    }
    update_reports(&args.server, &agent).await?;
    for (label, n) in outcomes {
        eprintln!("autobahn_client: agent {agent}: {n:4} cases ended {label}");
    }
    Ok(())
}

/// A short, bounded description of a tungstenite error for the summary.
fn error_kind(e: &WsError) -> &'static str {
    match e {
        WsError::ConnectionClosed | WsError::AlreadyClosed => "closed",
        WsError::Io(_) => "io",
        WsError::Protocol(_) => "protocol",
        WsError::Utf8(_) => "utf8",
        WsError::Capacity(_) => "capacity",
        _ => "other",
    }
}
