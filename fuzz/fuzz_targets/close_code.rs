//! Close-code classification and validation: for every code (and "no code"), the label is one
//! of the fixed `CODE_LABELS`, and `WireCode::from_wire`, `check_close_code` and `code_label`
//! agree with each other and with RFC 6455 §7.4.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wsclose::{CODE_LABELS, WireCode, check_close_code, code_label};

fn rfc_allows(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

fuzz_target!(|input: (Option<u16>, u16)| {
    let (maybe, code) = input;
    for c in [maybe, Some(code)] {
        let label = code_label(c);
        assert!(CODE_LABELS.contains(&label), "{c:?} -> {label}");
        let wire = WireCode::from_wire(c);
        assert!(CODE_LABELS.contains(&wire.as_str()));
        match c {
            None => {
                assert_eq!(wire, WireCode::NoStatus);
                assert_eq!(label, "no_status");
            }
            Some(c) => {
                let ok = check_close_code(c).is_ok();
                assert_eq!(ok, rfc_allows(c), "{c}");
                assert_eq!(
                    wire,
                    if ok {
                        WireCode::Valid(c)
                    } else {
                        WireCode::Invalid(Some(c))
                    }
                );
                assert_eq!(wire.code(), Some(c));
                // An invalid code is always the "invalid" label, whatever its value.
                if !ok {
                    assert_eq!(label, "invalid", "{c}");
                    assert_eq!(wire.as_str(), "invalid");
                } else {
                    assert_eq!(wire.as_str(), label);
                    assert_ne!(label, "invalid");
                }
                if let Err(e) = check_close_code(c) {
                    assert!(e.is_invalid_close_code());
                }
            }
        }
    }
});
