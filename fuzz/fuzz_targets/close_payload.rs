//! Close-frame payload parsing: arbitrary bytes go on the wire as the payload of one Close
//! frame, tungstenite parses it as it would from a peer (both roles), and wsclose classifies
//! what comes out. Checks:
//!
//! - nothing panics, in tungstenite or in wsclose's classification;
//! - a code RFC 6455 allows comes through unchanged; a forbidden code is either refused with
//!   an error or replaced by `1002 "Protocol violation"`, the exact pair wsclose's classifier
//!   relies on to count it as `code="invalid"`;
//! - the label is always one of the fixed `CODE_LABELS`, and the sanitised reason is bounded.
#![no_main]

use std::io::{self, Cursor, Read, Write};

use libfuzzer_sys::fuzz_target;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocket};
use tokio_tungstenite::tungstenite::{Error, Message};
use wsclose::{
    CODE_LABELS, WireCode, MAX_REASON_BYTES, check_close_code, code_label, sanitize_reason,
};

/// Codes RFC 6455 (and wsclose's `check_close_code`) allow but tungstenite 0.30 replaces with
/// 1002 when the peer closes first: 1014 (Bad Gateway) maps to `CloseCode::Bad`. Found by this
/// target; the test `conformance::peer_close_1014_is_counted_as_bad_gateway` pins it.
const TUNGSTENITE_REFUSES: [u16; 1] = [1014];

/// Reads from the prepared bytes, discards what tungstenite writes back.
struct Wire(Cursor<Vec<u8>>);

impl Read for Wire {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Wire {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// One FIN Close frame carrying `payload`; masked (with `key`) when it goes to a server.
fn frame(payload: &[u8], to_server: bool, key: [u8; 4]) -> Vec<u8> {
    let mut out = vec![0x88];
    let mask_bit = if to_server { 0x80 } else { 0 };
    match payload.len() {
        n @ 0..=125 => out.push(mask_bit | n as u8),
        n @ 126..=0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if to_server {
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

fn check_reason(reason: &str) {
    let s = sanitize_reason(reason);
    assert!(s.len() <= MAX_REASON_BYTES);
    assert!(!s.chars().any(char::is_control));
}

fuzz_target!(|input: (bool, [u8; 4], &[u8])| {
    let (to_server, key, payload) = input;
    // wsclose's own reading of the wire payload.
    let wire_code = match payload {
        [hi, lo, ..] => Some(u16::from_be_bytes([*hi, *lo])),
        _ => None,
    };
    let wire_class = WireCode::from_wire(wire_code);
    assert!(CODE_LABELS.contains(&wire_class.as_str()));
    assert!(CODE_LABELS.contains(&code_label(wire_code)));
    check_reason(&String::from_utf8_lossy(
        payload.get(2..).unwrap_or_default(),
    ));

    // tungstenite's reading of the same bytes, as a peer would deliver them.
    let role = if to_server {
        Role::Server
    } else {
        Role::Client
    };
    let mut ws = WebSocket::from_raw_socket(
        Wire(Cursor::new(frame(payload, to_server, key))),
        role,
        None,
    );
    match ws.read() {
        Ok(Message::Close(None)) => {
            assert!(payload.is_empty(), "an empty Close needs an empty payload");
            assert_eq!(wire_class, WireCode::NoStatus);
        }
        Ok(Message::Close(Some(f))) => {
            let got = u16::from(f.code);
            let code = wire_code.expect("a code means at least two bytes");
            if check_close_code(code).is_ok() && !TUNGSTENITE_REFUSES.contains(&code) {
                assert_eq!(got, code, "a valid code must come through unchanged");
                assert_eq!(f.reason.as_bytes(), &payload[2..]);
                assert_eq!(WireCode::from_wire(Some(got)), WireCode::Valid(code));
            } else {
                // The substitution wsclose's classifier recognises.
                assert_eq!(
                    (got, f.reason.as_str()),
                    (1002, "Protocol violation"),
                    "wire code {code}"
                );
                if !TUNGSTENITE_REFUSES.contains(&code) {
                    assert_eq!(wire_class, WireCode::Invalid(Some(code)));
                }
            }
            assert!(CODE_LABELS.contains(&code_label(Some(got))));
            check_reason(&f.reason);
        }
        Ok(other) => panic!("a Close frame was read as {other:?}"),
        // Refused: too long for a control frame, a 1-byte payload, a reason that is not UTF-8.
        Err(Error::Protocol(_)) | Err(Error::Utf8(_)) | Err(Error::Capacity(_)) => {
            assert!(
                payload.len() == 1
                    || payload.len() > 125
                    || std::str::from_utf8(&payload[2..]).is_err(),
                "refused a well-formed Close payload of {} bytes",
                payload.len()
            );
        }
        Err(e) => panic!("unexpected error {e}"),
    }
});
