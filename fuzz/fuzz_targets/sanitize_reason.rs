//! Reason sanitisation: whatever a peer sends, the result never panics, is at most
//! `MAX_REASON_BYTES` (123) bytes, is valid UTF-8 (a `String`), holds no raw control or invisible
//! formatting character (so one log event stays one line and cannot disguise itself), and is a
//! prefix-preserving escape of the input (short printable input comes back unchanged).
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsclose::{MAX_REASON_BYTES, sanitize_reason};

fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

fn check(input: &str) {
    let out = sanitize_reason(input);
    assert!(out.len() <= MAX_REASON_BYTES, "{} bytes", out.len());
    assert!(std::str::from_utf8(out.as_bytes()).is_ok());
    assert!(
        !out.chars().any(|c| c.is_control() || is_invisible(c)),
        "{out:?}"
    );
    // Idempotent on its own output's safety: sanitising again keeps it bounded and clean.
    let again = sanitize_reason(&out);
    assert!(again.len() <= MAX_REASON_BYTES);
    let plain = input
        .chars()
        .all(|c| !c.is_control() && !is_invisible(c) && c != '\\');
    if plain && input.len() <= MAX_REASON_BYTES {
        assert_eq!(out, input);
    }
    if plain {
        assert!(input.starts_with(&out), "truncation must keep a prefix");
    }
}

fuzz_target!(|data: &[u8]| {
    // A peer's reason arrives as bytes: tungstenite hands over valid UTF-8 only, but the
    // sanitiser must cope with anything a caller derives from raw bytes.
    check(&String::from_utf8_lossy(data));
    if let Ok(s) = std::str::from_utf8(data) {
        check(s);
    }
});
