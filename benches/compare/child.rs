//! The child processes. The bench runs itself again, with `WSCLOSE_BENCH_CHILD=<mode>`, where a
//! measurement needs a process of its own: the client ends of the 10,000-connection rows (so
//! that each process needs one fd per connection, not two), memory (a fresh process per
//! sample) and the instrumentation rows (a metrics backend is installed for the rest of a process). This module names the
//! modes, both ways: the commands that start them and the dispatch in the child. The storm's
//! clients run here; the other modes measure, and live with their rows
//! ([`crate::memory::memory_child`], [`backend_child`]).

use std::net::SocketAddr;
use std::process::Command;

use futures_util::future::join_all;
use tokio::task::JoinHandle;
use wsclose::WebSocket;

use crate::harness::{Plan, current_thread};
use crate::instrumentation::{Backend, backend_child};
use crate::memory::memory_child;
use crate::net::{client_ws, raise_fd_limit, read_to_end};

/// Set in a child process: its mode and arguments, `:`-separated.
const CHILD_ENV: &str = "WSCLOSE_BENCH_CHILD";

/// `raw` or `wsclose`, as the modes spell which side they run.
fn side(wrapped: bool) -> &'static str {
    if wrapped { "wsclose" } else { "raw" }
}

/// This bench's executable, run again in `mode`.
fn command(mode: &str) -> Command {
    let exe = std::env::current_exe().expect("current exe");
    let mut cmd = Command::new(exe);
    cmd.env(CHILD_ENV, mode);
    cmd
}

/// The client ends of a storm (or of the memory rows' connections): see
/// [`storm_clients_child`].
pub(crate) fn storm_clients(wrapped: bool, conns: usize, addr: SocketAddr) -> Command {
    command(&format!("storm-clients:{}:{conns}:{addr}", side(wrapped)))
}

/// One memory sample: see [`memory_child`].
pub(crate) fn memory(wrapped: bool, conns: usize) -> Command {
    command(&format!("memory:{}:{conns}", side(wrapped)))
}

/// One instrumentation child for `backend`, or a control one: see [`backend_child`].
pub(crate) fn instr(backend: Backend, control: bool) -> Command {
    let kind = if control { "control" } else { "install" };
    command(&format!("instr:{}:{kind}", backend.name()))
}

/// In a child process (`WSCLOSE_BENCH_CHILD` set), runs its mode, which exits the process;
/// otherwise returns.
pub(crate) fn run_if_child() {
    let Ok(child) = std::env::var(CHILD_ENV) else {
        return;
    };
    let parts: Vec<&str> = child.splitn(4, ':').collect();
    if let ["memory", kind, conns] = parts[..] {
        memory_child(conns.parse().expect("conns"), kind == "wsclose");
    }
    if let ["instr", backend, kind] = parts[..] {
        let backend = Backend::from_name(backend).expect("backend");
        backend_child(&Plan::from_env(), backend, kind == "control");
    }
    if let ["storm-clients", kind, conns, addr] = parts[..] {
        storm_clients_child(
            kind == "wsclose",
            conns.parse().expect("conns"),
            addr.parse().expect("addr"),
        );
    }
    panic!("unknown {CHILD_ENV}={child}");
}

/// In a child process: the client ends of a storm. Connects `n` clients to `addr`, each
/// reading until its end (raw, or wrapped by wsclose), prints `ready`, and when every client
/// has ended prints `done <n>`.
fn storm_clients_child(wrapped: bool, n: usize, addr: SocketAddr) {
    use std::io::Write;
    raise_fd_limit(n);
    let rt = current_thread();
    let ended = rt.block_on(async move {
        let mut readers: Vec<JoinHandle<()>> = Vec::with_capacity(n);
        let mut left = n;
        while left > 0 {
            let batch = left.min(256);
            for c in join_all((0..batch).map(|_| client_ws(addr))).await {
                readers.push(if wrapped {
                    tokio::spawn(read_to_end(WebSocket::client(c)))
                } else {
                    tokio::spawn(read_to_end(c))
                });
            }
            left -= batch;
        }
        println!("ready");
        let _ = std::io::stdout().flush();
        let mut ended = 0;
        for r in readers {
            if r.await.is_ok() {
                ended += 1;
            }
        }
        ended
    });
    println!("done {ended}");
    std::process::exit(0);
}
