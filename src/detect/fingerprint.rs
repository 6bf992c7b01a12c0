//! Keyed fingerprints of secrets.
//!
//! A fingerprint is `BLAKE3-keyed(fleet_key, secret)` where
//! `fleet_key = blake3::derive_key(CONTEXT, configured_string)`. Without the fleet key a fingerprint
//! cannot be brute-forced offline, and fingerprints from different fleets cannot be correlated.
//! The short form (12 hex chars = 48 bits) is used in redaction markers; the full 256-bit form is what
//! an inventory stores.

use std::fmt;

/// Context string for `blake3::derive_key`; changing it changes every fingerprint.
pub const FINGERPRINT_CONTEXT: &str = "tailguard 2026-11 secret fingerprint v1";

/// Number of hex characters of the short fingerprint used in redaction markers.
pub const SHORT_HEX_LEN: usize = 12;

/// A keyed fingerprint of a secret (never the secret itself).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// Wraps raw fingerprint bytes (e.g. loaded from an inventory).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Fingerprint(bytes)
    }

    /// Parses a 64-char hex fingerprint.
    pub fn from_hex(s: &str) -> Option<Self> {
        parse_hex::<32>(s).map(Fingerprint)
    }

    /// Parses the 12-hex short form ([`Fingerprint::short`]) into the
    /// fingerprint's first 6 bytes.
    pub fn short_prefix_from_hex(s: &str) -> Option<[u8; SHORT_HEX_LEN / 2]> {
        parse_hex::<{ SHORT_HEX_LEN / 2 }>(s)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Full-length (64 hex chars) fingerprint, for inventories.
    pub fn full_hex(&self) -> String {
        to_hex(&self.0)
    }

    /// Short (12 hex chars) fingerprint, for redaction markers.
    pub fn short(&self) -> String {
        let mut s = to_hex(&self.0[..SHORT_HEX_LEN / 2]);
        s.truncate(SHORT_HEX_LEN);
        s
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.short())
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.short())
    }
}

/// Computes keyed fingerprints. Cheap to clone; `Debug` never shows the key.
#[derive(Clone)]
pub struct Fingerprinter {
    key: [u8; 32],
}

impl Fingerprinter {
    /// Derives the per-fleet key from a configured string.
    pub fn new(fleet_key_material: &str) -> Self {
        Fingerprinter {
            key: blake3::derive_key(FINGERPRINT_CONTEXT, fleet_key_material.as_bytes()),
        }
    }

    pub fn fingerprint(&self, secret: &[u8]) -> Fingerprint {
        Fingerprint(*blake3::keyed_hash(&self.key, secret).as_bytes())
    }
}

impl fmt::Debug for Fingerprinter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Fingerprinter { key: <hidden> }")
    }
}

/// Exactly `2 * N` hex digits as `N` bytes.
fn parse_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let s = s.as_bytes();
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in s.chunks(2).enumerate() {
        out[i] = (hex_val(pair[0])? << 4) | hex_val(pair[1])?;
    }
    Some(out)
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}
