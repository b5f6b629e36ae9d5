//! A plain tokio-tungstenite echo server, the baseline `scripts/autobahn.sh` compares the
//! wsclose echo server with (`wstest -m fuzzingclient`, server role). It is upstream's own
//! autobahn echo server; nothing of wsclose is used.
//!
//! ```sh
//! cargo run --release --example autobahn_raw -- --listen 127.0.0.1:9003
//! ```

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Error as WsError;

async fn serve(tcp: TcpStream) -> Result<(), WsError> {
    let mut ws = tokio_tungstenite::accept_async(tcp).await?;
    while let Some(msg) = ws.next().await {
        let msg = msg?;
        if msg.is_text() || msg.is_binary() {
            ws.send(msg).await?;
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut listen: SocketAddr = "127.0.0.1:9003".parse()?;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match (flag.as_str(), it.next()) {
            ("--listen", Some(addr)) => listen = addr.parse()?,
            _ => {
                eprintln!("usage: autobahn_raw [--listen ADDR]");
                std::process::exit(2);
            }
        }
    }
    let listener = TcpListener::bind(listen).await?;
    eprintln!("autobahn_raw: listening on {listen}");
    loop {
        let (tcp, _) = listener.accept().await?;
        tokio::spawn(async move {
            let _ = serve(tcp).await;
        });
    }
}
