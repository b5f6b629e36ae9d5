//! A plain tokio-tungstenite echo server, the baseline `scripts/autobahn.sh` compares the
//! wsclose echo server with (`wstest -m fuzzingclient`, server role). It is upstream's own
//! autobahn echo server; nothing of wsclose is used.
//!
//! ```sh
//! cargo run --release --example autobahn_raw -- --listen 127.0.0.1:9003
//! ```

#[path = "listen.rs"]
mod listen;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
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
    listen::serve_forever("autobahn_raw", "127.0.0.1:9003", false, |tcp, _| serve(tcp)).await
}
