//! wsclose finds out whether a runtime has a timer by creating one under `catch_unwind`, and
//! keeps that probe's panic message off stderr with a panic hook of its own. That hook must
//! stay silent for the probe only: every other panic reaches the hook installed before it.
//! (A file of its own: the panic hook is process-wide.)

mod support;

use futures_util::StreamExt;
use wsclose::{Config, Outcome, Role};

use support::pairs::wrapped_and_tt;

#[test]
fn the_timer_probe_is_quiet_and_other_panics_reach_the_previous_hook() {
    let seen = support::panics::record();
    // A runtime without a timer: the first close probes it (and the probe panics inside).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    rt.block_on(async {
        let (mut ws, mut peer) = wrapped_and_tt(Role::Server, &Config::new()).await;
        let peer = tokio::spawn(async move { while let Some(Ok(_)) = peer.next().await {} });
        let report = ws.close(1000, "bye").await.unwrap();
        assert_eq!(report.outcome, Outcome::Clean, "{report:?}");
        peer.await.unwrap();
    });
    assert_eq!(
        *seen.lock().unwrap(),
        Vec::<String>::new(),
        "the probe's panic reached the application's hook"
    );
    // Any other panic, on any thread, still does.
    let joined = std::thread::spawn(|| panic!("an application panic")).join();
    assert!(joined.is_err());
    let _ = std::panic::take_hook();
    assert_eq!(
        *seen.lock().unwrap(),
        vec!["an application panic".to_owned()]
    );
}
