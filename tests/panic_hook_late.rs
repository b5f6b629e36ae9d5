//! The timer probe's panic reaches no panic hook, also one installed after wsclose was first
//! used: an application that uses wsclose on a normal runtime, then installs its hook (an error
//! reporter), then runs a handshake and a close on a runtime built with `enable_io` only, sees
//! no panic. Other panics still reach that hook. (A file of its own: the hook is process-wide.)

mod support;

use futures_util::StreamExt;
use tokio::net::{TcpListener, TcpStream};
use wsclose::{Config, Outcome, Role};

use support::pairs::wrapped_and_tt;

/// A close on `rt`, wrapped by wsclose's own handshake (`Config::accept`) or by hand.
fn handshake_and_close(rt: &tokio::runtime::Runtime) -> Outcome {
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/"), tcp)
                .await
                .unwrap();
            while ws.next().await.is_some() {}
        });
        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = Config::new().accept(tcp).await.unwrap();
        let report = ws.close(1000, "bye").await.unwrap();
        client.await.unwrap();
        report.outcome
    })
}

#[test]
fn a_hook_installed_after_first_use_sees_no_probe_panic() {
    // First use, on a normal runtime: whatever wsclose sets up once is set up now.
    let normal = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    normal.block_on(async {
        let (mut ws, mut peer) = wrapped_and_tt(Role::Server, &Config::new()).await;
        tokio::spawn(async move { while let Some(Ok(_)) = peer.next().await {} });
        ws.close(1000, "").await.unwrap();
    });
    assert_eq!(handshake_and_close(&normal), Outcome::Clean);

    let seen = support::panics::record();
    let io_only = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    for _ in 0..3 {
        assert_eq!(handshake_and_close(&io_only), Outcome::Clean);
    }
    assert_eq!(
        *seen.lock().unwrap(),
        Vec::<String>::new(),
        "the probe's panics reached the application's hook"
    );
    let joined = std::thread::spawn(|| panic!("an application panic")).join();
    assert!(joined.is_err());
    let _ = std::panic::take_hook();
    assert_eq!(
        *seen.lock().unwrap(),
        vec!["an application panic".to_owned()]
    );
}
