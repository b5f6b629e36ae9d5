//! `shutdown_signal()` listens from the moment it is called: a SIGTERM that arrives before its
//! future is first polled (a deploy right after the ready line) resolves it, rather than killing
//! the process with the default action.

#![cfg(unix)]

use std::time::Duration;

#[tokio::test]
async fn a_sigterm_before_the_first_poll_is_not_lost() {
    let stop = wsclose::shutdown_signal();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success());
    // Still alive here (the default action would have ended the process), and it resolves.
    tokio::time::timeout(Duration::from_secs(10), stop)
        .await
        .expect("the SIGTERM sent before the first poll");
}
