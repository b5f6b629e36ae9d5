//! `send(Message::Close(..))` returns once the Close frame is written, as with the raw library,
//! not when the peer answers: against a peer that never answers it returns at once (not after
//! the 5 s close deadline), and the close goes on in the background. Every library, both roles.

mod support;

#[path = "support/libraries.rs"]
mod libraries;

use std::time::Instant;

use wsclose::{Config, Outcome};

use support::flavor::Flavor;
use support::pairs::bounded;
use support::timing::PROMPT;

async fn a_sent_close_returns_once_written<F: Flavor>() {
    for &role in F::ROLES {
        // The raw peer reads nothing and never answers.
        let (mut ws, mut raw) = F::with_raw(role, &Config::new()).await;
        let t = Instant::now();
        bounded(ws.send(F::close(4000, "bye"))).await.unwrap();
        let took = t.elapsed();
        assert!(took < PROMPT, "{role:?}: send(Close) took {took:?}");
        let frame = bounded(raw.read_frame()).await.unwrap().expect("a frame");
        assert_eq!(frame.close_code(), Some(4000), "{role:?}");
        assert!(ws.report().is_none(), "{role:?}: the close goes on");
        // It goes on without the caller: the peer leaving without a Close ends it.
        drop(raw);
        let report = bounded(ws.handle().closed()).await;
        assert_eq!(report.outcome, Outcome::PeerGone, "{role:?}: {report:?}");
    }
}

macro_rules! per_library {
    ($($name:ident: $flavor:ty $(, $feature:literal)?;)*) => {
        $(
            #[tokio::test]
            $(#[cfg(feature = $feature)])?
            async fn $name() {
                a_sent_close_returns_once_written::<$flavor>().await;
            }
        )*
    };
}

per_library! {
    tungstenite: crate::support::flavor::Tungstenite;
    axum: crate::support::flavor::Axum, "axum";
    tokio_websockets: crate::libraries::TokioWebsockets, "tokio-websockets";
    fastwebsockets: crate::libraries::Fast, "fastwebsockets";
}
