//! Close codes: validation of the codes we send, the bounded `code` label, and the
//! handling of peer-controlled reason text.

/// The longest close reason RFC 6455 allows: a control frame carries at most 125 bytes of
/// payload, two of which are the code.
pub const MAX_REASON_BYTES: usize = 123;

/// Why an outgoing close code was refused.
///
/// RFC 6455 §7.4 reserves some codes for local use only (1005, 1006, 1015), leaves others
/// unassigned (0–999, 1004, 1016–2999) and forbids everything at or above 5000.
pub(crate) fn check_outgoing(code: u16) -> Result<(), &'static str> {
    match code {
        0..=999 => Err("codes below 1000 are not used by the protocol"),
        1004 => Err("1004 is reserved"),
        1005 => Err("1005 (no status) must never be sent in a Close frame"),
        1006 => Err("1006 (abnormal closure) must never be sent in a Close frame"),
        1015 => Err("1015 (TLS handshake failure) must never be sent in a Close frame"),
        1016..=2999 => Err("1016-2999 are reserved for future protocol use"),
        5000.. => Err("codes at or above 5000 are not valid"),
        _ => Ok(()),
    }
}

/// Checks a close code before sending it: the same check `close` applies.
///
/// # Errors
///
/// A code the protocol forbids on the wire ([`Error::is_invalid_close_code`](crate::Error)):
/// 0–999, 1004, 1005, 1006, 1015, 1016–2999 and 5000 and above.
///
/// ```
/// assert!(wsclose::check_close_code(1000).is_ok());
/// assert!(wsclose::check_close_code(4999).is_ok());
/// assert!(wsclose::check_close_code(1005).unwrap_err().is_invalid_close_code());
/// ```
pub fn check_close_code(code: u16) -> Result<(), crate::Error> {
    check_outgoing(code)
        .map_err(|why| crate::Error::new(crate::error::Kind::InvalidCloseCode { code, why }))
}

/// A close code in a form `close` accepts: a `u16`, or tungstenite's
/// [`CloseCode`](tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode).
///
/// Either way the code is checked the same ([`check_close_code`]) before anything is sent.
///
/// ```
/// use wsclose::IntoCloseCode;
/// use wsclose::tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
///
/// assert_eq!(1001.into_close_code(), 1001);
/// assert_eq!(CloseCode::Normal.into_close_code(), 1000);
/// ```
pub trait IntoCloseCode {
    /// The numeric code.
    fn into_close_code(self) -> u16;
}

impl IntoCloseCode for u16 {
    fn into_close_code(self) -> u16 {
        self
    }
}

impl IntoCloseCode for tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode {
    fn into_close_code(self) -> u16 {
        self.into()
    }
}

/// Whether a code received from a peer is one the protocol allows on the wire.
pub(crate) fn is_valid_received(code: u16) -> bool {
    check_outgoing(code).is_ok()
}

/// The bounded metric label for a close code (`None` = a Close frame without a code).
///
/// This is the only way a code becomes a label: the result is one of 16 fixed strings,
/// whatever the peer sends.
///
/// ```
/// assert_eq!(wsclose::code_label(Some(1000)), "normal_closure");
/// assert_eq!(wsclose::code_label(Some(4321)), "application");
/// assert_eq!(wsclose::code_label(Some(999)), "invalid");
/// assert_eq!(wsclose::code_label(None), "no_status");
/// ```
pub fn code_label(code: Option<u16>) -> &'static str {
    CODE_LABELS[code_index(code)]
}

/// The position of [`code_label`]'s result in [`CODE_LABELS`]: the label's slot in a metric
/// backend's arrays.
pub(crate) const fn code_index(code: Option<u16>) -> usize {
    match code {
        Some(1000) => 0,
        Some(1001) => 1,
        Some(1002) => 2,
        Some(1003) => 3,
        None => 4,
        Some(1007) => 5,
        Some(1008) => 6,
        Some(1009) => 7,
        Some(1010) => 8,
        Some(1011) => 9,
        Some(1012) => 10,
        Some(1013) => 11,
        Some(1014) => 12,
        Some(3000..=3999) => 13,
        Some(4000..=4999) => 14,
        Some(_) => INVALID_INDEX,
    }
}

/// The position of `invalid` in [`CODE_LABELS`].
pub(crate) const INVALID_INDEX: usize = 15;

/// Every value [`code_label`] can return, for documentation, dashboards and tests.
pub const CODE_LABELS: [&str; 16] = [
    "normal_closure",
    "going_away",
    "protocol_error",
    "unsupported_data",
    "no_status",
    "invalid_payload",
    "policy_violation",
    "message_too_big",
    "mandatory_extension",
    "internal_error",
    "service_restart",
    "try_again_later",
    "bad_gateway",
    "library",
    "application",
    "invalid",
];

/// Cuts `s` to at most `max` bytes without splitting a UTF-8 character.
pub(crate) fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Makes a peer-controlled reason safe to log: control characters, line breaks, ANSI escape
/// sequences and invisible formatting characters are escaped (`\n`, `\u{1b}`, ...), and the
/// result is cut to at most [`MAX_REASON_BYTES`] bytes at a character boundary, so one log
/// event is one line and cannot forge another.
pub fn sanitize_reason(reason: &str) -> String {
    let mut out = String::with_capacity(reason.len().min(MAX_REASON_BYTES));
    for c in reason.chars() {
        let mut buf = [0u8; 4];
        let escaped: String;
        let piece: &str = if c.is_control() || is_invisible(c) || c == '\\' {
            escaped = c.escape_default().collect();
            &escaped
        } else {
            c.encode_utf8(&mut buf)
        };
        if out.len() + piece.len() > MAX_REASON_BYTES {
            break;
        }
        out.push_str(piece);
    }
    out
}

/// Characters that change how text is displayed without being visible: bidirectional
/// overrides and zero-width characters (used to disguise log lines).
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outgoing_codes_follow_rfc_6455() {
        for code in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
        ] {
            assert_eq!(check_outgoing(code), Ok(()), "{code}");
        }
        for code in [3000, 3999, 4000, 4999] {
            assert_eq!(check_outgoing(code), Ok(()), "{code}");
        }
        for code in [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, u16::MAX] {
            assert!(check_outgoing(code).is_err(), "{code}");
        }
    }

    #[test]
    fn every_label_is_listed_and_bounded() {
        let mut seen = std::collections::BTreeSet::new();
        seen.insert(code_label(None));
        for code in 0..=u16::MAX {
            seen.insert(code_label(Some(code)));
        }
        let listed: std::collections::BTreeSet<_> = CODE_LABELS.into_iter().collect();
        assert_eq!(seen, listed);
    }

    #[test]
    fn label_mapping_is_exact() {
        let cases = [
            (1000, "normal_closure"),
            (1001, "going_away"),
            (1002, "protocol_error"),
            (1003, "unsupported_data"),
            (1004, "invalid"),
            (1005, "invalid"),
            (1006, "invalid"),
            (1007, "invalid_payload"),
            (1008, "policy_violation"),
            (1009, "message_too_big"),
            (1010, "mandatory_extension"),
            (1011, "internal_error"),
            (1012, "service_restart"),
            (1013, "try_again_later"),
            (1014, "bad_gateway"),
            (1015, "invalid"),
            (2999, "invalid"),
            (3000, "library"),
            (4999, "application"),
            (5000, "invalid"),
        ];
        for (code, label) in cases {
            assert_eq!(code_label(Some(code)), label, "{code}");
        }
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        // 'é' is 2 bytes: 62 of them are 124 bytes; the cut must fall at 122.
        let s = "é".repeat(62);
        let t = truncate_utf8(&s, MAX_REASON_BYTES);
        assert_eq!(t.len(), 122);
        assert_eq!(t.chars().count(), 61);
        // '€' is 3 bytes: 41 of them are exactly 123 bytes and stay whole.
        let s = "€".repeat(41);
        assert_eq!(truncate_utf8(&s, MAX_REASON_BYTES), s);
        let s = "€".repeat(42);
        assert_eq!(truncate_utf8(&s, MAX_REASON_BYTES).len(), 123);
        assert_eq!(truncate_utf8("short", MAX_REASON_BYTES), "short");
    }

    #[test]
    fn sanitize_escapes_controls_and_bounds_length() {
        assert_eq!(sanitize_reason("bye"), "bye");
        assert_eq!(sanitize_reason("a\nb"), "a\\nb");
        assert_eq!(sanitize_reason("\u{1b}[31mred"), "\\u{1b}[31mred");
        assert_eq!(sanitize_reason("x\u{202E}y"), "x\\u{202e}y");
        assert_eq!(sanitize_reason("back\\slash"), "back\\\\slash");
        let long = "\n".repeat(200);
        let s = sanitize_reason(&long);
        assert!(s.len() <= MAX_REASON_BYTES);
        assert_eq!(s, "\\n".repeat(61));
        let multi = "日".repeat(100);
        let s = sanitize_reason(&multi);
        assert_eq!(s.len(), 123);
        assert!(!s.chars().any(char::is_control));
    }
}
