//! The command line and the accept loop the Autobahn server drivers share:
//! `[--listen ADDR]`, and `[--raw]` for the drivers that also run their library alone.

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};

/// Parses the command line, binds, and serves every connection with `serve(tcp, raw)` in a task
/// of its own until the process is stopped. `raw_flag`: whether `--raw` is accepted.
pub(crate) async fn serve_forever<F, Fut, E>(
    name: &str,
    default_listen: &str,
    raw_flag: bool,
    serve: F,
) -> Result<(), Box<dyn std::error::Error>>
where
    F: Fn(TcpStream, bool) -> Fut,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
{
    let mut listen: SocketAddr = default_listen.parse()?;
    let mut raw = false;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--listen" => listen = it.next().ok_or("--listen ADDR")?.parse()?,
            "--raw" if raw_flag => raw = true,
            _ => {
                let raw_usage = if raw_flag { " [--raw]" } else { "" };
                eprintln!("usage: {name} [--listen ADDR]{raw_usage}");
                std::process::exit(2);
            }
        }
    }
    let listener = TcpListener::bind(listen).await?;
    if raw_flag {
        eprintln!("{name}: listening on {listen} (raw: {raw})");
    } else {
        eprintln!("{name}: listening on {listen}");
    }
    loop {
        let (tcp, _) = listener.accept().await?;
        let connection = serve(tcp, raw);
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}
