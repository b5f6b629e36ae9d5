//! What the example servers share: the `!close CODE [REASON]` control message, one-line errors
//! for an address that cannot be bound, and logging set up for a terminal or a file.

use std::io::IsTerminal;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

/// How to use the control message, as the servers answer a malformed one.
pub const CLOSE_USAGE: &str = "usage: !close CODE [REASON], CODE a number such as 1000 or 4001";

/// Parses the control message `!close CODE [REASON]`.
///
/// `None` when `text` is not a `!close` command (the servers echo it); `Some(Err(message))`
/// when it is one but malformed (no code, or a code that is not a number from 0 to 65535): the
/// servers send `message` back as text and keep the connection open. Whether the code may be
/// sent is wsclose's decision (`1005` is refused by `close`, with its own error).
pub fn close_command(text: &str) -> Option<Result<(u16, &str), String>> {
    let rest = match text.strip_prefix("!close") {
        Some("") => "",
        Some(rest) if rest.starts_with(' ') => rest.trim_start(),
        _ => return None,
    };
    let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
    if code.is_empty() {
        return Some(Err(format!("error: missing close code ({CLOSE_USAGE})")));
    }
    Some(
        code.parse::<u16>()
            .map(|code| (code, reason))
            .map_err(|_| format!("error: {code:?} is not a close code ({CLOSE_USAGE})")),
    )
}

/// The text a server sends back when wsclose refuses a close code (e.g. `1005`).
pub fn refused(error: &wsclose::Error) -> String {
    format!("error: {error}")
}

/// One line for an address `program` cannot use, naming it and what to do.
pub fn bind_error(program: &str, what: &str, addr: SocketAddr, flag: &str, why: &str) -> String {
    format!(
        "{program}: cannot listen on {addr} for {what}: {why}; stop whatever uses it \
         (`ss -ltnp 'sport = :{port}'` shows it) or choose another address with {flag} ADDR",
        port = addr.port()
    )
}

/// Binds the WebSocket listener, or explains in one line why it cannot.
pub async fn bind_websocket(program: &str, addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr).await.map_err(|e| {
        let why = match e.kind() {
            std::io::ErrorKind::AddrInUse => "the address is already in use".to_string(),
            _ => e.to_string(),
        };
        bind_error(program, "WebSocket connections", addr, "--listen", &why)
    })
}

/// Installs the Prometheus recorder and its `/metrics` listener on `addr`, or explains in one
/// line why it cannot. Keep the exporter to wait for the last scrape at shutdown.
pub fn serve_metrics(
    program: &str,
    addr: SocketAddr,
) -> Result<wsclose::prometheus::Exporter, String> {
    wsclose::prometheus::install(addr).map_err(|e| {
        let text = e.to_string();
        let why = if text.contains("in use") {
            "the address is already in use".to_string()
        } else {
            text
        };
        bind_error(program, "/metrics", addr, "--metrics", &why)
    })
}

/// Parses `SECS` (a non-negative number of seconds, fractions allowed) given to `flag`.
pub fn parse_secs(flag: &str, value: &str) -> Result<std::time::Duration, String> {
    value
        .parse::<f64>()
        .ok()
        .and_then(|secs| std::time::Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| format!("{flag} {value:?}: not a number of seconds"))
}

/// Prints `message` on stderr and exits with status 1.
pub fn fail(message: &str) -> ! {
    eprintln!("{message}");
    std::process::exit(1)
}

/// `--help` prints `usage` on stdout and exits 0; a bad argument prints `error` and `usage` on
/// stderr and exits 2.
pub fn usage_exit(usage: &str, error: Option<&str>) -> ! {
    match error {
        None => {
            println!("{usage}");
            std::process::exit(0)
        }
        Some(error) => {
            eprintln!("{error}\n{usage}");
            std::process::exit(2)
        }
    }
}

/// Logs to stderr with `RUST_LOG` (else `default`), in colour only when stderr is a terminal.
pub fn init_logging(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// `n` and `noun`, with the noun plural unless `n` is 1: `1 connection`, `2 connections`.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("{n} {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_close_commands() {
        assert_eq!(close_command("hello"), None);
        assert_eq!(close_command("!closed"), None);
        assert_eq!(close_command("!race"), None);
        assert_eq!(
            close_command("!close 4001 going home"),
            Some(Ok((4001, "going home")))
        );
        assert_eq!(close_command("!close 1000"), Some(Ok((1000, ""))));
        assert_eq!(close_command("!close  4000  x"), Some(Ok((4000, " x"))));
    }

    #[test]
    fn malformed_close_commands_are_errors_that_say_how() {
        for (text, needle) in [
            ("!close", "missing close code"),
            ("!close ", "missing close code"),
            ("!close abc", "\"abc\" is not a close code"),
            ("!close 70000 big", "\"70000\" is not a close code"),
            ("!close -1", "\"-1\" is not a close code"),
        ] {
            let Some(Err(e)) = close_command(text) else {
                panic!("{text:?} parsed as {:?}", close_command(text));
            };
            assert!(
                e.starts_with("error: ") && e.contains(needle),
                "{text:?}: {e}"
            );
            assert!(e.contains(CLOSE_USAGE), "{text:?}: {e}");
        }
    }

    #[test]
    fn counts_agree_in_number() {
        assert_eq!(count(0, "connection"), "0 connections");
        assert_eq!(count(1, "connection"), "1 connection");
        assert_eq!(count(2, "close"), "2 closes");
    }
}
