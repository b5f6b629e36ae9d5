//! A loopback TCP fault-injection proxy for tests (stands in for `tc netem`).
//!
//! [`FaultProxy::start`] listens on 127.0.0.1 with an ephemeral port and forwards every accepted
//! connection to one upstream address. While it runs, the test can delay or stall either
//! direction, cut a connection after a byte budget, or reset / close every live connection.
//!
//! Each proxied connection is one task that owns both sockets and pumps the two directions
//! concurrently. A half-close is forwarded (EOF from one side becomes a FIN to the other), and a
//! socket error on either side (e.g. an RST from a peer) is forwarded as an RST to the other side.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// Bound for each step of `stop`, of a `close_all` drain, and of the connect to the upstream.
const STEP_LIMIT: Duration = Duration::from_secs(2);

/// Which way the bytes flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the client that connected to the proxy, to the upstream server.
    ClientToServer,
    /// From the upstream server back to the client.
    ServerToClient,
}

/// How a proxied connection ends (also the command sent to live connections).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// Both directions saw EOF and forwarded it.
    Eof,
    /// A `cut_after` budget ran out: drop both sockets.
    Cut,
    /// RST both sockets (SO_LINGER 0).
    Reset,
    /// FIN both sockets, drain briefly, then drop them.
    Close,
}

/// Live controls of one direction.
#[derive(Debug, Default)]
struct DirCtl {
    delay_nanos: AtomicU64,
    stalled: watch::Sender<bool>,
    /// Bytes forwarded so far, watchable.
    forwarded: watch::Sender<u64>,
    /// Bytes still allowed before the connection forwarding them is cut; `None` = no cut armed.
    cut_budget: Mutex<Option<u64>>,
}

impl DirCtl {
    /// Takes up to `n` bytes from the cut budget: how many may be forwarded, and whether the
    /// connection must be cut after that (the budget is then disarmed: a cut fires once).
    fn take_budget(&self, n: usize) -> (usize, bool) {
        let mut budget = self.cut_budget.lock().unwrap();
        let Some(left) = *budget else {
            return (n, false);
        };
        let take = n.min(usize::try_from(left).unwrap_or(usize::MAX));
        let left = left - take as u64;
        *budget = (left > 0).then_some(left);
        (take, left == 0)
    }
}

#[derive(Debug, Default)]
struct Shared {
    dirs: [DirCtl; 2],
    /// Command channel of every live connection, by id.
    conns: Mutex<HashMap<u64, watch::Sender<Option<End>>>>,
    /// Number of live connections (upstream connected, not ended yet), watchable.
    live: watch::Sender<usize>,
}

impl Shared {
    fn dir(&self, dir: Direction) -> &DirCtl {
        &self.dirs[dir as usize]
    }

    fn command_all(&self, end: End) {
        for tx in self.conns.lock().unwrap().values() {
            tx.send_replace(Some(end));
        }
    }
}

/// Unregisters a connection (and uncounts it, once counted) when its task ends or is aborted.
struct ConnGuard {
    shared: Arc<Shared>,
    id: u64,
    counted: bool,
}

impl ConnGuard {
    fn count(&mut self) {
        self.counted = true;
        self.shared.live.send_modify(|n| *n += 1);
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.shared.conns.lock().unwrap().remove(&self.id);
        if self.counted {
            self.shared.live.send_modify(|n| *n -= 1);
        }
    }
}

/// A TCP proxy on 127.0.0.1 that injects faults on command. Dropping it aborts all its tasks.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// The accept loop; it owns the connection tasks (a `JoinSet`), so aborting it ends them all.
    accept_task: JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy on 127.0.0.1:0 forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr) -> io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let accept_task = tokio::spawn(accept_loop(listener, upstream, shared.clone()));
        Ok(FaultProxy {
            addr,
            shared,
            accept_task,
        })
    }

    /// The address clients should connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Forwards each chunk in `dir` only after `d` (`Duration::ZERO` = no delay).
    pub fn set_delay(&self, dir: Direction, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.shared
            .dir(dir)
            .delay_nanos
            .store(nanos, Ordering::SeqCst);
    }

    /// Stops forwarding in `dir` until [`resume`](Self::resume). The source is not read either
    /// (beyond at most one chunk already being read), so TCP backpressure builds up.
    pub fn stall(&self, dir: Direction) {
        self.shared.dir(dir).stalled.send_replace(true);
    }

    /// Resumes forwarding in `dir`.
    pub fn resume(&self, dir: Direction) {
        self.shared.dir(dir).stalled.send_replace(false);
    }

    /// After forwarding `bytes` more bytes in `dir` (counted across connections), the connection
    /// that forwarded the last of them is closed abruptly: both sockets are dropped. Fires once.
    /// With `bytes == 0` the next chunk in `dir` is not forwarded and its connection is cut.
    pub fn cut_after(&self, dir: Direction, bytes: u64) {
        *self.shared.dir(dir).cut_budget.lock().unwrap() = Some(bytes);
    }

    /// Resets both sides of every live connection now (SO_LINGER 0, then drop: both see an RST).
    pub fn reset_all(&self) {
        self.shared.command_all(End::Reset);
    }

    /// Closes both sides of every live connection in order: a FIN to each side, then the proxy
    /// discards what they still send until their own FIN (at most 2 s) and drops the sockets.
    pub fn close_all(&self) {
        self.shared.command_all(End::Close);
    }

    /// Total bytes forwarded so far in `dir`, over all connections.
    pub fn bytes(&self, dir: Direction) -> u64 {
        *self.shared.dir(dir).forwarded.borrow()
    }

    /// Waits until at least `n` bytes have been forwarded in `dir`; false if that does not
    /// happen within `limit`.
    pub async fn wait_bytes(&self, dir: Direction, n: u64, limit: Duration) -> bool {
        let mut rx = self.shared.dir(dir).forwarded.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|b| *b >= n))
            .await
            .is_ok()
    }

    /// Proxied connections currently live: accepted, connected to the upstream, not yet ended.
    pub fn connections(&self) -> usize {
        *self.shared.live.borrow()
    }

    /// Waits until exactly `n` connections are live; false if that does not happen within
    /// `limit`.
    pub async fn wait_connections(&self, n: usize, limit: Duration) -> bool {
        let mut rx = self.shared.live.subscribe();
        tokio::time::timeout(limit, rx.wait_for(|live| *live == n))
            .await
            .is_ok()
    }

    /// Stops accepting and ends every task the proxy started (the sockets they own are dropped),
    /// waiting at most a few seconds.
    pub async fn stop(mut self) {
        self.accept_task.abort();
        let _ = tokio::time::timeout(STEP_LIMIT, &mut self.accept_task).await;
        self.wait_connections(0, STEP_LIMIT).await;
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
    // Dropping this set (when this task ends or is aborted) aborts every connection task.
    let mut conns = JoinSet::new();
    let mut next_id = 0u64;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                let (tx, rx) = watch::channel(None);
                let id = next_id;
                next_id += 1;
                shared.conns.lock().unwrap().insert(id, tx);
                let guard = ConnGuard { shared: shared.clone(), id, counted: false };
                conns.spawn(run_conn(guard, client, upstream, rx));
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn run_conn(
    mut guard: ConnGuard,
    mut client: TcpStream,
    upstream: SocketAddr,
    mut commands: watch::Receiver<Option<End>>,
) {
    let connect = tokio::time::timeout(STEP_LIMIT, TcpStream::connect(upstream)).await;
    let Ok(Ok(mut server)) = connect else {
        set_rst(&client);
        return;
    };
    guard.count();
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let shared = &guard.shared;
    let end = {
        let (client_rx, client_tx) = client.split();
        let (server_rx, server_tx) = server.split();
        let pumps = async {
            let c2s = pump(shared, Direction::ClientToServer, client_rx, server_tx);
            let s2c = pump(shared, Direction::ServerToClient, server_rx, client_tx);
            tokio::try_join!(c2s, s2c).err().unwrap_or(End::Eof)
        };
        let command = async {
            let end = commands.wait_for(Option::is_some).await.map(|end| *end);
            match end {
                Ok(end) => end.expect("checked by wait_for"),
                // Unreachable while this task runs (its guard keeps the sender registered).
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            end = pumps => end,
            end = command => end,
        }
    };
    match end {
        End::Eof | End::Cut => {}
        End::Reset => {
            set_rst(&client);
            set_rst(&server);
        }
        End::Close => {
            let _ = client.shutdown().await;
            let _ = server.shutdown().await;
            let drain = async { tokio::join!(drain(&mut client), drain(&mut server)) };
            let _ = tokio::time::timeout(STEP_LIMIT, drain).await;
        }
    }
    // Sockets close here, before `guard` unregisters the connection.
    drop(client);
    drop(server);
    drop(guard);
}

/// Forwards `from` to `to` under the controls of `dir` until EOF (forwarded as a FIN: `Ok`), a
/// socket error (`Err(Reset)`) or the end of a cut budget (`Err(Cut)`).
async fn pump(
    shared: &Shared,
    dir: Direction,
    mut from: ReadHalf<'_>,
    mut to: WriteHalf<'_>,
) -> Result<(), End> {
    let ctl = shared.dir(dir);
    let mut stalled = ctl.stalled.subscribe();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // The sender lives in `shared`, so these waits only end on `resume`.
        let _ = stalled.wait_for(|s| !*s).await;
        let n = match from.read(&mut buf).await {
            Ok(0) => {
                let _ = to.shutdown().await;
                return Ok(());
            }
            Ok(n) => n,
            Err(_) => return Err(End::Reset),
        };
        let delay = Duration::from_nanos(ctl.delay_nanos.load(Ordering::SeqCst));
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        // A stall that began while this chunk was being read or delayed holds it back too.
        let _ = stalled.wait_for(|s| !*s).await;
        let (n, cut) = ctl.take_budget(n);
        if to.write_all(&buf[..n]).await.is_err() {
            return Err(End::Reset);
        }
        ctl.forwarded.send_modify(|b| *b += n as u64);
        if cut {
            return Err(End::Cut);
        }
    }
}

/// Reads and discards until EOF or an error.
async fn drain(stream: &mut TcpStream) {
    let mut buf = [0u8; 4096];
    while let Ok(1..) = stream.read(&mut buf).await {}
}

/// Arms an RST for when the socket is dropped.
fn set_rst(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}
