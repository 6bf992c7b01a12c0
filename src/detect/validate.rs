//! Checksum / structure validators referenced by rules' `validator` field.

use base64::Engine as _;

/// Validators a rule may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validator {
    /// GitHub tokens (`ghp_` etc.): last 6 base62 chars are the CRC32 of the 30 random chars.
    /// Raises confidence when valid; never required.
    GithubCrc32,
    /// The secret is base64 of `user:password` (Docker config `auth`). Required.
    BasicAuthB64,
    /// The secret is base64 of a PEM *private* key. Required.
    B64PrivateKey,
}

impl Validator {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "github_crc32" => Some(Validator::GithubCrc32),
            "basic_auth_b64" => Some(Validator::BasicAuthB64),
            "b64_private_key" => Some(Validator::B64PrivateKey),
            _ => None,
        }
    }

    /// Whether a failed validation drops the finding.
    pub fn required(self) -> bool {
        !matches!(self, Validator::GithubCrc32)
    }

    pub fn check(self, secret: &[u8]) -> bool {
        match self {
            Validator::GithubCrc32 => github_crc32(secret),
            Validator::BasicAuthB64 => basic_auth_b64(secret),
            Validator::B64PrivateKey => b64_private_key(secret),
        }
    }
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn base62_6(mut n: u32) -> [u8; 6] {
    let mut out = [b'0'; 6];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out
}

/// GitHub token checksum (github.blog, "Behind GitHub's new authentication token formats"):
/// `prefix_` + 30 random base62 chars + 6-char base62 CRC32 of the random part.
pub fn github_crc32(token: &[u8]) -> bool {
    let Some(us) = token.iter().position(|&b| b == b'_') else {
        return false;
    };
    let rest = &token[us + 1..];
    if rest.len() < 7 {
        return false;
    }
    let (body, sum) = rest.split_at(rest.len() - 6);
    base62_6(crc32fast::hash(body)) == sum
}

fn decode_b64_loose(s: &[u8]) -> Option<Vec<u8>> {
    let trimmed: &[u8] = {
        let mut end = s.len();
        while end > 0 && s[end - 1] == b'=' {
            end -= 1;
        }
        &s[..end]
    };
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(trimmed)
        .ok()
        .or_else(|| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(trimmed)
                .ok()
        })
}

fn basic_auth_b64(s: &[u8]) -> bool {
    let Some(d) = decode_b64_loose(s) else {
        return false;
    };
    match d.iter().position(|&b| b == b':') {
        Some(i) => {
            let pw = &d[i + 1..];
            i > 0 && pw.len() >= 3 && d.iter().all(|&b| (0x20..0x7f).contains(&b))
        }
        None => false,
    }
}

fn b64_private_key(s: &[u8]) -> bool {
    let take = s.len().min(96) / 4 * 4;
    let Some(d) = decode_b64_loose(&s[..take]) else {
        return false;
    };
    memchr::memmem::find(&d, b"PRIVATE KEY").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn github_checksum_roundtrip() {
        let body = b"abcdefghijABCDEFGHIJ0123456789";
        let sum = base62_6(crc32fast::hash(body));
        let mut tok = b"ghp_".to_vec();
        tok.extend_from_slice(body);
        tok.extend_from_slice(&sum);
        assert!(github_crc32(&tok));
        let last = tok.len() - 1;
        tok[last] = if tok[last] == b'a' { b'b' } else { b'a' };
        assert!(!github_crc32(&tok));
    }
}
