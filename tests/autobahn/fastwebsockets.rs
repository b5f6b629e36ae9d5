//! An echo server on fastwebsockets for `scripts/autobahn.sh` (`wstest -m fuzzingclient`,
//! server role): wrapped by wsclose (`wsclose::fastwebsockets::Socket`), or with `--raw` the
//! library alone (its `FragmentCollector`, as fastwebsockets' own Autobahn server), the
//! baseline its results are compared with. The HTTP upgrade is answered here (fastwebsockets'
//! own needs hyper).
//!
//! ```sh
//! cargo run --release --features fastwebsockets --example autobahn_fastwebsockets -- \
//!     --listen 127.0.0.1:9005 [--raw]
//! ```

#[path = "listen.rs"]
mod listen;

use std::io;

use fastwebsockets::{FragmentCollector, OpCode, Role, WebSocket};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use wsclose::fastwebsockets::{Message, Socket};

/// Answers the opening handshake: reads the request head byte by byte (nothing after it).
async fn upgrade(tcp: &mut TcpStream) -> io::Result<()> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 {
            return Err(io::Error::other("request head too long"));
        }
        head.push(tcp.read_u8().await?);
    }
    let head = String::from_utf8_lossy(&head);
    let key = head
        .lines()
        .find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("sec-websocket-key")
                .then(|| v.trim())
        })
        .ok_or_else(|| io::Error::other("no Sec-WebSocket-Key"))?;
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        derive_accept_key(key.as_bytes())
    );
    tcp.write_all(response.as_bytes()).await
}

async fn serve(mut tcp: TcpStream, raw: bool) -> Result<(), Box<dyn std::error::Error>> {
    upgrade(&mut tcp).await?;
    let ws = WebSocket::after_handshake(tcp, Role::Server);
    if raw {
        let mut ws = FragmentCollector::new(ws);
        loop {
            let frame = ws.read_frame().await?;
            match frame.opcode {
                OpCode::Close => break,
                OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
                _ => {}
            }
        }
    } else {
        let mut ws = wsclose::WebSocket::server(Socket::new(ws));
        while let Some(Ok(msg)) = ws.next().await {
            if matches!(msg, Message::Text(_) | Message::Binary(_)) && ws.send(msg).await.is_err() {
                break;
            }
        }
        ws.handle().closed().await;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    listen::serve_forever("autobahn_fastwebsockets", "127.0.0.1:9005", true, serve).await
}
