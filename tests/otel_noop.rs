//! The `otel` feature without a configured meter provider is a documented no-op: before
//! `otel::install`, and after installing from the default global provider (no SDK, no
//! exporter), connections behave and the `metrics` facade counts exactly as without the
//! feature; nothing panics.
//!
//! The OpenTelemetry instruments are process-global, so this binary holds one test.

mod support;

use opentelemetry::global;
use wsclose::otel;

use support::pairs::BOTH;
use support::recorder;
use support::scenarios;

#[tokio::test]
async fn otel_without_a_meter_provider_is_a_no_op() {
    // 1. Feature on, nothing installed.
    assert!(!otel::is_installed());
    for role in BOTH {
        let (m, _g) = recorder::install();
        let n = scenarios::run_all(role).await;
        let r = role.as_str();
        assert_eq!(
            m.counter("websocket_connections_opened_total", &[("role", r)]),
            n.connections
        );
        assert_eq!(
            m.counter_sum("websocket_closes_total", &[("role", r)]),
            n.connections
        );
        assert_eq!(
            m.counter("websocket_messages_dropped_total", &[("role", r)]),
            n.dropped
        );
        m.assert_balanced(r);
    }

    // 2. Installed from the global provider before any `set_meter_provider`: the API's no-op
    //    provider. Accepted, records nothing, and the facade is unaffected.
    otel::install(&*global::meter_provider()).unwrap();
    assert!(otel::is_installed());
    for role in BOTH {
        let (m, _g) = recorder::install();
        let n = scenarios::run_all(role).await;
        let r = role.as_str();
        assert_eq!(
            m.counter("websocket_connections_opened_total", &[("role", r)]),
            n.connections
        );
        assert_eq!(
            m.counter("websocket_close_redundant_total", &[("role", r)]),
            n.redundant
        );
        assert_eq!(
            m.counter("websocket_send_after_close_total", &[("role", r)]),
            n.send_after_close
        );
        m.assert_balanced(r);
    }

    // 3. A second installation is refused with a configuration error, not a panic.
    let err = otel::install(&*global::meter_provider()).unwrap_err();
    assert!(err.is_config(), "{err}");
}
