//! The example servers as a person meets them: `--help`, a port already in use, malformed
//! `!close` commands. Runs the built binaries on loopback; every process is killed on drop.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const DEMO: &str = env!("CARGO_BIN_EXE_demo");
const ECHO: &str = env!("CARGO_BIN_EXE_echo_server");
/// Generous: the machine may be busy building.
const PATIENCE: Duration = Duration::from_secs(60);

/// Runs `bin` to its end, killed after `PATIENCE`.
fn run(bin: &str, args: &[&str]) -> Output {
    let child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    run_to_end(Killed(Some(child)))
}

/// Waits for the process to exit and collects its output; kills it after `PATIENCE`.
fn run_to_end(guard: Killed) -> Output {
    let id = guard.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(guard.into_output());
    });
    rx.recv_timeout(PATIENCE).unwrap_or_else(|_| {
        // The guard is in the waiting thread: stop the process by its PID.
        let _ = Command::new("kill")
            .args(["-KILL", &id.to_string()])
            .status();
        panic!("pid {id} did not exit within {PATIENCE:?}")
    })
}

/// A child process, killed (by its own handle) and reaped when dropped.
struct Killed(Option<Child>);

impl Killed {
    fn id(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }

    /// Waits for the process to exit by itself and collects its output.
    fn into_output(mut self) -> Output {
        let child = self.0.take().expect("not yet waited for");
        child.wait_with_output().expect("wait")
    }
}

impl Drop for Killed {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The lines of a child's pipe, read to its end by a thread of their own.
fn lines(pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A loopback address something already listens on (the returned listener).
fn occupied() -> (TcpListener, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    (listener, addr)
}

#[test]
fn help_goes_to_stdout_and_exits_0() {
    for bin in [DEMO, ECHO] {
        let out = run(bin, &["--help"]);
        assert_eq!(out.status.code(), Some(0), "{bin}: {}", stderr(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.starts_with("usage: "), "{bin}: {stdout:?}");
        assert!(out.stderr.is_empty(), "{bin}: {}", stderr(&out));
        let bad = run(bin, &["--nonsense"]);
        assert_eq!(bad.status.code(), Some(2), "{bin}");
        assert!(stderr(&bad).contains("usage: "), "{bin}: {}", stderr(&bad));
    }
}

/// One line on stderr, naming the address, the cause and the flag to change it; exit 1.
fn assert_port_error(out: &Output, bin: &str, addr: SocketAddr, flag: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{bin}: {err}");
    assert_eq!(err.lines().count(), 1, "{bin}: one line expected: {err}");
    for needle in [&addr.to_string(), "already in use", flag] {
        assert!(
            err.contains(needle),
            "{bin}: {needle:?} missing from {err:?}"
        );
    }
    assert!(
        !err.contains("Os {") && !err.contains("kind:"),
        "{bin}: {err}"
    );
}

/// Either port in use (`--listen` or `--metrics`), for the demo and the echo server.
#[test]
fn a_port_in_use_is_named_in_one_line() {
    for flag in ["--listen", "--metrics"] {
        let (_held, addr) = occupied();
        let a = addr.to_string();
        let (listen, metrics) = if flag == "--listen" {
            (a.as_str(), "127.0.0.1:0")
        } else {
            ("127.0.0.1:0", a.as_str())
        };
        for bin in [DEMO, ECHO] {
            let mut args = vec!["--listen", listen, "--metrics", metrics];
            if bin == DEMO {
                args.extend(["--duration", "5"]);
            }
            assert_port_error(&run(bin, &args), bin, addr, flag);
        }
    }
}

/// A free loopback port, for the echo server (which does not print the one it bound).
fn free_addr() -> SocketAddr {
    occupied().1
}

/// Starts `bin` and waits until it accepts connections on `addr`.
fn start(bin: &str, args: &[&str], addr: SocketAddr) -> Killed {
    let child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let guard = Killed(Some(child));
    let deadline = std::time::Instant::now() + PATIENCE;
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "{bin} never listened on {addr}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    guard
}

/// Starts the demo on port 0 and reads the address it bound from its first line.
fn start_demo() -> (Killed, SocketAddr) {
    let mut child = Command::new(DEMO)
        .args([
            "--server-only",
            "--listen",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("piped");
    let guard = Killed(Some(child));
    // Read to the end: a closed pipe would make the demo's next table print fail.
    let rx = lines(stdout);
    let first = rx.recv_timeout(PATIENCE).expect("the demo's first line");
    let addr = first
        .split("ws://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no ws:// address in {first:?}"));
    (guard, addr)
}

/// The next text message (pings and pongs skipped), within `PATIENCE`.
async fn next_text(ws: &mut WebSocketStream<tokio::net::TcpStream>) -> String {
    loop {
        match tokio::time::timeout(PATIENCE, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return t.to_string(),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// Sends each malformed command and expects its error text back, the connection still open;
/// then a well-formed one closes with its code.
async fn malformed_commands_are_answered(addr: SocketAddr) {
    let connect = async {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tokio_tungstenite::client_async(format!("ws://{addr}/"), tcp).await
    };
    let (mut ws, _) = tokio::time::timeout(PATIENCE, connect)
        .await
        .expect("connect in time")
        .expect("connect");
    for (command, expected) in [
        ("!close", "error: missing close code"),
        ("!close abc", "error: \"abc\" is not a close code"),
        ("!close 70000 big", "error: \"70000\" is not a close code"),
    ] {
        ws.send(Message::text(command)).await.expect("send");
        let reply = next_text(&mut ws).await;
        assert!(reply.starts_with(expected), "{command:?} → {reply:?}");
        assert!(reply.contains("usage: !close CODE [REASON]"), "{reply:?}");
    }
    ws.send(Message::text("!close 1005 reserved"))
        .await
        .expect("send");
    let reply = next_text(&mut ws).await;
    assert!(
        reply.starts_with("error: ") && reply.contains("1005"),
        "{reply:?}"
    );
    ws.send(Message::text("hello")).await.expect("send");
    assert_eq!(next_text(&mut ws).await, "hello");
    ws.send(Message::text("!close 4001 bye"))
        .await
        .expect("send");
    let frame = loop {
        match tokio::time::timeout(PATIENCE, ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame,
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected the server's Close, got {other:?}"),
        }
    };
    let frame = frame.expect("a close frame with a code");
    assert_eq!(
        (frame.code, frame.reason.as_str()),
        (CloseCode::from(4001), "bye")
    );
}

#[tokio::test]
async fn the_demo_answers_malformed_close_commands() {
    let (_demo, addr) = start_demo();
    malformed_commands_are_answered(addr).await;
}

#[tokio::test]
async fn the_echo_server_answers_malformed_close_commands() {
    let addr = free_addr();
    let a = addr.to_string();
    let _echo = start(ECHO, &["--listen", &a, "--metrics", "127.0.0.1:0"], addr);
    malformed_commands_are_answered(addr).await;
}

/// `--server-only` serves a person at typing speed: nothing ends the connection after the fleet's
/// 6 s maximum lifetime (the mode's own keepalive pings are answered by the reading client).
#[tokio::test]
async fn the_demo_server_only_keeps_a_slow_typist_connected() {
    let (_demo, addr) = start_demo();
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/"), tcp)
        .await
        .expect("handshake");
    // Longer than the fleet's lifetime (6 s) plus its jitter (2 s), reading all the while.
    let quiet = tokio::time::Instant::now() + Duration::from_secs(9);
    loop {
        match tokio::time::timeout_at(quiet, ws.next()).await {
            Err(_) => break,
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(other) => panic!("the server ended or spoke first: {other:?}"),
        }
    }
    ws.send(Message::text("!close 4001 bye"))
        .await
        .expect("send");
    let frame = loop {
        match tokio::time::timeout(PATIENCE, ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame,
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected the server's Close, got {other:?}"),
        }
    };
    assert_eq!(frame.expect("a close frame").code, CloseCode::from(4001));
}

/// The otlp example stops on SIGTERM as on Ctrl-C: it exports what is pending and exits 0.
#[cfg(feature = "otel")]
#[test]
fn the_otlp_example_exits_0_on_sigterm() {
    let otlp = env!("CARGO_BIN_EXE_otlp");
    // Port 9 (discard) refuses the exports: the exporter logs that, the shutdown still succeeds.
    let mut child = Command::new(otlp)
        .args(["--listen", "127.0.0.1:0", "--otlp", "http://127.0.0.1:9"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("piped");
    let guard = Killed(Some(child));
    let rx = lines(stderr);
    let deadline = std::time::Instant::now() + PATIENCE;
    let mut log = Vec::new();
    while !log.iter().any(|l: &String| l.contains("echo server ready")) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        log.push(rx.recv_timeout(left).expect("the ready line"));
    }
    let status = Command::new("kill")
        .args(["-TERM", &guard.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let out = run_to_end(guard);
    assert_eq!(out.status.code(), Some(0), "{:?}", out.status);
    log.extend(rx.try_iter());
    assert!(
        log.iter().any(|l| l.contains("stopping")),
        "no clean-stop line in {log:?}"
    );
    assert!(
        !log.iter().any(|l| l.contains('\u{1b}')),
        "colour codes in {log:?}"
    );
}

/// One HTTP/1.1 GET of `/metrics` on `addr`, the response read to its end.
fn scrape(addr: SocketAddr) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(PATIENCE))?;
    write!(
        tcp,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    tcp.read_to_string(&mut text)?;
    Ok(text)
}

/// SIGTERM as a deploy sends it: the connected client gets Close 1001, `/metrics` stays up with
/// the drain's end in it until it is scraped once, and then (not at the linger bound) the server
/// exits 0.
#[tokio::test]
async fn the_echo_server_drains_on_sigterm_and_exits_after_the_last_scrape() {
    let (addr, metrics) = (free_addr(), free_addr());
    let (a, m) = (addr.to_string(), metrics.to_string());
    let mut child = Command::new(ECHO)
        .args(["--listen", &a, "--metrics", &m, "--linger", "40"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let log = lines(child.stderr.take().expect("piped"));
    let echo = Killed(Some(child));
    let wait_for = |needle: &str| {
        loop {
            let line = log
                .recv_timeout(PATIENCE)
                .unwrap_or_else(|_| panic!("no {needle:?} line"));
            if line.contains(needle) {
                break;
            }
        }
    };
    wait_for("echo server ready");
    let before = scrape(metrics).unwrap();
    let shutdown_clean = "websocket_closes_total{role=\"server\",cause=\"shutdown\",outcome=\"clean\",expected=\"true\"} ";
    assert!(before.contains(&format!("{shutdown_clean}0")), "{before}");
    assert!(before.contains("process_start_time_seconds "), "{before}");

    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/"), tcp)
        .await
        .unwrap();
    ws.send(Message::text("hi")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "hi");
    let status = Command::new("kill")
        .args(["-TERM", &echo.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let frame = loop {
        match tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("the server's close")
        {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("no Close frame: {other:?}"),
        }
    };
    assert_eq!(frame.expect("a close frame").code, CloseCode::Away);
    while ws.next().await.is_some() {}
    // The drain is over (and the wait for a scrape begun) once its report is logged: a scrape
    // before that reads values from before the drain's end and does not count as the last.
    wait_for("drained");

    // Still serving /metrics, with the drain in it; this scrape is the last one.
    let t = std::time::Instant::now();
    let last = scrape(metrics).unwrap();
    assert!(last.contains(&format!("{shutdown_clean}1")), "{last}");
    let going_away =
        "websocket_close_frames_total{role=\"server\",direction=\"sent\",code=\"going_away\"} 1";
    assert!(last.contains(going_away), "{last}");
    let out = run_to_end(echo);
    assert_eq!(out.status.code(), Some(0), "{:?}", out.status);
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "waited for the linger bound"
    );
}

/// `--duration` does not make the demo deaf to SIGTERM: it shuts down gracefully at once (the
/// shutdown report printed, status 0), well before the duration ends.
#[test]
fn the_demo_with_a_duration_still_stops_on_sigterm() {
    let mut child = Command::new(DEMO)
        .args([
            "--duration",
            "600",
            "--clients",
            "2",
            "--listen",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("piped");
    let guard = Killed(Some(child));
    let rx = lines(stdout);
    let first = rx.recv_timeout(PATIENCE).expect("the demo's first line");
    assert!(first.starts_with("wsclose demo:"), "{first}");
    let t = std::time::Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &guard.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let out = run_to_end(guard);
    assert_eq!(out.status.code(), Some(0), "{:?}", out.status);
    assert!(t.elapsed() < Duration::from_secs(60), "{:?}", t.elapsed());
    let printed: Vec<String> = rx.iter().collect(); // to the end of its output
    assert!(
        printed.iter().any(|l| l.starts_with("shutdown report:")),
        "{printed:?}"
    );
}
