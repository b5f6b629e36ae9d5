//! A panic hook that records each panic's message, for the tests of the timer probe's hook.

use std::sync::{Arc, Mutex};

/// Installs (process-wide) a hook that records every panic's message; returns what it saw.
pub fn record() -> Arc<Mutex<Vec<String>>> {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = seen.clone();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(ToString::to_string)
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        record.lock().unwrap().push(message);
    }));
    seen
}
