//! A tokio-tungstenite-free echo server on tokio-websockets for `scripts/autobahn.sh`
//! (`wstest -m fuzzingclient`, server role): wrapped by wsclose, or with `--raw` the library
//! alone, the baseline its results are compared with.
//!
//! ```sh
//! cargo run --release --features tokio-websockets --example autobahn_tokio_websockets -- \
//!     --listen 127.0.0.1:9004 [--raw]
//! ```

#[path = "listen.rs"]
mod listen;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_websockets::{Error, ServerBuilder};

async fn serve(tcp: TcpStream, raw: bool) -> Result<(), Error> {
    let (_request, ws) = ServerBuilder::new().accept(tcp).await?;
    if raw {
        let mut ws = ws;
        while let Some(msg) = ws.next().await {
            let msg = msg?;
            if msg.is_text() || msg.is_binary() {
                ws.send(msg).await?;
            }
        }
    } else {
        let mut ws = wsclose::WebSocket::server(ws);
        while let Some(Ok(msg)) = ws.next().await {
            if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                break;
            }
        }
        // The peer's Close, or an error, began the close: wait for its end.
        ws.handle().closed().await;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    listen::serve_forever("autobahn_tokio_websockets", "127.0.0.1:9004", true, serve).await
}
