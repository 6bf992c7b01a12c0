//! Known-value matching: secrets registered at run time, by plaintext or by keyed fingerprint.
//!
//! # Plaintext known values
//! Values registered in plaintext (`::add-mask::` values, an exec wrapper's environment) are expanded
//! into their likely encodings and matched with one Aho-Corasick automaton (leftmost-longest):
//! raw bytes; base64 (standard and URL-safe alphabets) at all three byte alignments, using only the
//! characters that depend on the secret alone, so the secret is found inside a larger base64 blob
//! such as `base64("user:" + secret)`; double base64; URL/percent encoding (upper/lower hex, `+` for
//! space); JSON string escaping (with and without `\/`); shell single-quote and backslash escaping;
//! hex (lower/upper); and each line of a multi-line secret (PEM keys printed line by line).
//! Registering rebuilds the automaton (`&mut self`), which is cheap for the few hundred values a job
//! has. Matches are reported with the fingerprint of the *plaintext*, so every encoding of one
//! secret gets the same redaction marker.
//!
//! # Fingerprint-only known values (inventory without plaintext)
//! An inventory may hold only `BLAKE3-keyed(fleet_key, secret)` (see [`super::fingerprint`]). Such a
//! secret can only be recognised by hashing candidate substrings of each line and looking the hash
//! up. Candidates are generated as follows:
//! 1. the line is split into *words* at whitespace, quotes, brackets and parentheses;
//! 2. inside a word, *boundaries* are the word ends and every sub-delimiter (`= : @ / ? & # , ; ! | \`);
//! 3. every span that starts and ends on a boundary and whose length is one of the registered
//!    lengths (when the inventory supplies a length hint) or within `[min_len, max_len]` (when it
//!    does not) is hashed, up to a fixed budget of spans per word;
//! 4. whole words and segments between adjacent boundaries that look encoded are decoded and the
//!    result hashed as well: base64/base64url (and the decoded value minus one or two leading bytes,
//!    and the part after the first `:` for `user:secret` basic-auth blobs, and a second base64 layer),
//!    percent-encoding, JSON backslash escapes, and hex.
//!
//! Trade-offs:
//! - *No plaintext at rest*: the agent never holds the inventory's secrets, and the keyed hash cannot
//!   be brute-forced without the fleet key. Length hints leak the secret's length (a few bits),
//!   which is why they are optional; without them the search is wider and slower.
//! - *Recall is limited to boundary-aligned occurrences*: a secret glued to other token characters
//!   (`abc<secret>def` with no delimiter), embedded at a byte offset inside a larger base64 blob that
//!   is not `user:secret` or a 1-2 byte prefix, or transformed by an encoding not listed above is
//!   missed. Plaintext registration has none of these limits.
//! - *Cost*: O(boundaries x lengths) hashes per word (bounded by a per-word budget); BLAKE3 of a short
//!   input is ~100 ns, so fingerprint matching is only run when fingerprints are registered and is
//!   roughly 10-50x slower per line than pattern scanning on lines with many delimiters.
//! - *False positives* are negligible (256-bit keyed hash); the only risk is a registered "secret"
//!   that is itself a common word, which is why values shorter than `min_len` are refused.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine as _;

use super::fingerprint::{Fingerprint, Fingerprinter};
use super::rules::Confidence;
use super::{Finding, Method};

/// How a known value appeared in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    Plain,
    /// Standard or URL-safe base64; `shift` is the byte alignment (0..=2) of the secret.
    Base64 {
        shift: u8,
        url_safe: bool,
    },
    DoubleBase64,
    UrlEncoded,
    JsonEscaped,
    ShellEscaped,
    Hex,
    /// One line of a multi-line secret.
    MultilineLine,
    /// Fingerprint-only: base64 payload `user:secret` (HTTP Basic).
    BasicAuth,
}

/// Default minimum length of a registered value.
pub const DEFAULT_MIN_LEN: usize = 6;
const FP_DEFAULT_MAX_LEN: usize = 256;
const FP_SPAN_BUDGET_PER_WORD: usize = 512;
const FP_MAX_BOUNDARIES: usize = 64;
const MAX_PATTERN_LEN: usize = 64 * 1024;

/// Registered secrets (plaintext and/or fingerprints). `Debug` never prints values.
#[derive(Clone)]
pub struct KnownValues {
    fp: Fingerprinter,
    min_len: usize,
    patterns: Vec<Vec<u8>>,
    meta: Vec<(Fingerprint, Encoding)>,
    registered: HashSet<Fingerprint>,
    ac: Option<AhoCorasick>,
    fps: HashSet<Fingerprint>,
    /// Fingerprints known only by their short form (the first 6 bytes, as a
    /// finding's redaction marker shows them), e.g. from the agent's mask list.
    short_fps: HashSet<[u8; 6]>,
    fp_lens: Vec<usize>,
    fp_any_len: bool,
    fp_min_len: usize,
    fp_max_len: usize,
    labels: (Arc<str>, Arc<str>, Arc<str>),
}

impl fmt::Debug for KnownValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KnownValues")
            .field("plaintext_values", &self.registered.len())
            .field("patterns", &self.patterns.len())
            .field("fingerprints", &self.fps.len())
            .finish()
    }
}

fn b64_shifted(s: &[u8], shift: usize, url_safe: bool) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; shift];
    buf.extend_from_slice(s);
    let enc = if url_safe {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&buf)
    } else {
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(&buf)
    };
    let total_bits = 8 * (shift + s.len());
    let start = (8 * shift).div_ceil(6);
    let end = total_bits / 6; // chars fully determined by the secret bytes
    if end <= start {
        return None;
    }
    Some(enc.as_bytes()[start..end].to_vec())
}

fn url_encode(s: &[u8], lower: bool, plus_space: bool) -> Vec<u8> {
    let hex: &[u8; 16] = if lower {
        b"0123456789abcdef"
    } else {
        b"0123456789ABCDEF"
    };
    let mut o = Vec::with_capacity(s.len() * 3);
    for &b in s {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            o.push(b)
        } else if plus_space && b == b' ' {
            o.push(b'+')
        } else {
            o.extend_from_slice(&[b'%', hex[(b >> 4) as usize], hex[(b & 15) as usize]]);
        }
    }
    o
}

fn json_escape(s: &[u8], escape_slash: bool) -> Vec<u8> {
    let mut o = Vec::with_capacity(s.len() + 8);
    for &b in s {
        match b {
            b'"' => o.extend_from_slice(b"\\\""),
            b'\\' => o.extend_from_slice(b"\\\\"),
            b'/' if escape_slash => o.extend_from_slice(b"\\/"),
            b'\n' => o.extend_from_slice(b"\\n"),
            b'\r' => o.extend_from_slice(b"\\r"),
            b'\t' => o.extend_from_slice(b"\\t"),
            0..=0x1f => o.extend_from_slice(format!("\\u{:04x}", b).as_bytes()),
            _ => o.push(b),
        }
    }
    o
}

fn shell_escapes(s: &[u8]) -> Vec<Vec<u8>> {
    let mut v = Vec::new();
    // inside single quotes: ' -> '\''
    if s.contains(&b'\'') {
        let mut o = Vec::new();
        for &b in s {
            if b == b'\'' {
                o.extend_from_slice(b"'\\''");
            } else {
                o.push(b)
            }
        }
        v.push(o);
    }
    // backslash-escaped word
    let mut o = Vec::new();
    for &b in s {
        if !(b.is_ascii_alphanumeric() || b"_-.,:/@%+=".contains(&b)) {
            o.push(b'\\');
        }
        o.push(b);
    }
    v.push(o);
    v
}

fn hex_encode(s: &[u8], upper: bool) -> Vec<u8> {
    let h = super::fingerprint::to_hex(s);
    if upper {
        h.to_ascii_uppercase().into_bytes()
    } else {
        h.into_bytes()
    }
}

impl KnownValues {
    pub fn new(fp: Fingerprinter) -> Self {
        KnownValues {
            fp,
            min_len: DEFAULT_MIN_LEN,
            patterns: Vec::new(),
            meta: Vec::new(),
            registered: HashSet::new(),
            ac: None,
            fps: HashSet::new(),
            short_fps: HashSet::new(),
            fp_lens: Vec::new(),
            fp_any_len: false,
            fp_min_len: 8,
            fp_max_len: FP_DEFAULT_MAX_LEN,
            labels: (
                "known-value".into(),
                "Registered secret value".into(),
                "known".into(),
            ),
        }
    }

    /// Values shorter than this are ignored (default 6).
    pub fn set_min_len(&mut self, n: usize) {
        self.min_len = n.max(1);
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty() && self.fps.is_empty() && self.short_fps.is_empty()
    }

    /// Number of registered plaintext values and fingerprints.
    pub fn len(&self) -> usize {
        self.registered.len() + self.fps.len() + self.short_fps.len()
    }

    /// Registers one plaintext secret (and its encodings); rebuilds the automaton.
    pub fn register_plaintext(&mut self, secret: &[u8]) {
        self.add_plaintext(secret);
        self.rebuild();
    }

    /// Registers many plaintext secrets with a single rebuild.
    pub fn register_plaintexts<'a, I: IntoIterator<Item = &'a [u8]>>(&mut self, secrets: I) {
        for s in secrets {
            self.add_plaintext(s);
        }
        self.rebuild();
    }

    /// Registers a secret known only by its keyed fingerprint. `len_hint` (the secret's byte length)
    /// narrows the candidate search; without it every boundary-aligned span within
    /// `[8, 256]` bytes is hashed.
    pub fn register_fingerprint(&mut self, fp: Fingerprint, len_hint: Option<usize>) {
        self.fps.insert(fp);
        match len_hint {
            Some(l) if l > 0 => {
                if let Err(i) = self.fp_lens.binary_search(&l) {
                    self.fp_lens.insert(i, l);
                }
            }
            _ => self.fp_any_len = true,
        }
    }

    /// Registers a secret known only by its short fingerprint (the 12 hex
    /// digits of a redaction marker or a finding's
    /// `tailguard.finding.fingerprint`): matched like a full fingerprint over
    /// candidates of any length. 48 bits make a chance match of an unrelated
    /// candidate negligible (~1 in 2.8e14 per candidate). Returns `false` for
    /// anything but 12 hex digits.
    pub fn register_short_fingerprint(&mut self, short_hex: &str) -> bool {
        let Some(prefix) = Fingerprint::short_prefix_from_hex(short_hex) else {
            return false;
        };
        self.short_fps.insert(prefix);
        self.fp_any_len = true;
        true
    }

    /// Bounds for fingerprint candidates without a length hint.
    pub fn set_fingerprint_len_range(&mut self, min: usize, max: usize) {
        self.fp_min_len = min.max(1);
        self.fp_max_len = max.max(self.fp_min_len);
    }

    fn add_plaintext(&mut self, secret: &[u8]) {
        let trimmed = trim_ascii(secret);
        if trimmed.len() < self.min_len || trimmed.len() > MAX_PATTERN_LEN {
            return;
        }
        let fp = self.fp.fingerprint(trimmed);
        if !self.registered.insert(fp) {
            return;
        }
        let mut pats: Vec<(Vec<u8>, Encoding)> = Vec::new();
        pats.push((trimmed.to_vec(), Encoding::Plain));
        for url_safe in [false, true] {
            for shift in 0..3 {
                if let Some(p) = b64_shifted(trimmed, shift, url_safe) {
                    pats.push((
                        p,
                        Encoding::Base64 {
                            shift: shift as u8,
                            url_safe,
                        },
                    ));
                }
            }
        }
        let once = base64::engine::general_purpose::STANDARD.encode(trimmed);
        for shift in 0..3 {
            if let Some(p) = b64_shifted(once.as_bytes(), shift, false) {
                pats.push((p, Encoding::DoubleBase64));
            }
        }
        pats.push((url_encode(trimmed, false, false), Encoding::UrlEncoded));
        pats.push((url_encode(trimmed, true, false), Encoding::UrlEncoded));
        pats.push((url_encode(trimmed, false, true), Encoding::UrlEncoded));
        pats.push((json_escape(trimmed, false), Encoding::JsonEscaped));
        pats.push((json_escape(trimmed, true), Encoding::JsonEscaped));
        for p in shell_escapes(trimmed) {
            pats.push((p, Encoding::ShellEscaped));
        }
        pats.push((hex_encode(trimmed, false), Encoding::Hex));
        pats.push((hex_encode(trimmed, true), Encoding::Hex));
        // each line of a multi-line secret
        if trimmed.contains(&b'\n') {
            for line in trimmed.split(|&b| b == b'\n') {
                let line = trim_ascii(line);
                if line.len() >= self.min_len.max(8) {
                    pats.push((line.to_vec(), Encoding::MultilineLine));
                }
            }
        }
        let mut seen: HashSet<Vec<u8>> = HashSet::new();
        for (p, e) in pats {
            if p.len() >= self.min_len && seen.insert(p.clone()) {
                self.patterns.push(p);
                self.meta.push((fp, e));
            }
        }
    }

    fn rebuild(&mut self) {
        self.ac = if self.patterns.is_empty() {
            None
        } else {
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&self.patterns)
                .ok()
        };
    }

    fn push(&self, out: &mut Vec<Finding>, range: Range<usize>, fp: Fingerprint, method: Method) {
        out.push(Finding {
            rule_id: self.labels.0.clone(),
            rule_name: self.labels.1.clone(),
            family: self.labels.2.clone(),
            confidence: Confidence::High,
            range,
            fingerprint: fp,
            checksum_valid: None,
            method,
        });
    }

    /// Appends findings for known values in `buf` (ranges relative to `buf`).
    pub(crate) fn scan(&self, buf: &[u8], out: &mut Vec<Finding>, limit: usize) {
        if let Some(ac) = &self.ac {
            for m in ac.find_iter(buf) {
                if out.len() >= limit {
                    return;
                }
                let (fp, enc) = self.meta[m.pattern().as_usize()];
                let mut r = m.start()..m.end();
                if let Encoding::Base64 { .. } | Encoding::DoubleBase64 = enc {
                    // widen over the partially-determined neighbour chars and padding
                    let is_b64 =
                        |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_');
                    if r.start > 0 && is_b64(buf[r.start - 1]) {
                        r.start -= 1;
                    }
                    let mut k = 0;
                    while r.end < buf.len() && k < 2 && is_b64(buf[r.end]) {
                        r.end += 1;
                        k += 1;
                    }
                    while r.end < buf.len() && buf[r.end] == b'=' {
                        r.end += 1;
                    }
                }
                self.push(out, r, fp, Method::KnownValue { encoding: enc });
            }
        }
        if !self.fps.is_empty() || !self.short_fps.is_empty() {
            self.scan_fingerprints(buf, out, limit);
        }
    }

    fn len_ok(&self, n: usize) -> bool {
        (self.fp_any_len && n >= self.fp_min_len && n <= self.fp_max_len)
            || self.fp_lens.binary_search(&n).is_ok()
    }

    fn check(&self, cand: &[u8]) -> Option<Fingerprint> {
        if cand.len() < self.min_len {
            return None;
        }
        let f = self.fp.fingerprint(cand);
        let short: &[u8; 6] = f.as_bytes()[..6].try_into().expect("6 bytes");
        (self.fps.contains(&f) || self.short_fps.contains(short)).then_some(f)
    }

    fn scan_fingerprints(&self, buf: &[u8], out: &mut Vec<Finding>, limit: usize) {
        let is_word_delim = |b: u8| b.is_ascii_whitespace() || b"\"'`()[]{}<>".contains(&b);
        let is_sub = |b: u8| b"=:@/?&#,;!|\\".contains(&b);
        let mut i = 0;
        let n = buf.len();
        let mut starts: Vec<usize> = Vec::with_capacity(FP_MAX_BOUNDARIES);
        let mut ends: Vec<usize> = Vec::with_capacity(FP_MAX_BOUNDARIES);
        let mut reported: HashMap<(usize, usize), ()> = HashMap::new();
        while i < n {
            while i < n && is_word_delim(buf[i]) {
                i += 1;
            }
            let ws = i;
            while i < n && !is_word_delim(buf[i]) {
                i += 1;
            }
            let we = i;
            if we - ws < self.min_len.min(self.fp_min_len) {
                continue;
            }
            starts.clear();
            ends.clear();
            starts.push(ws);
            for (k, &b) in buf[ws..we].iter().enumerate() {
                if is_sub(b) {
                    let p = ws + k;
                    if starts.len() < FP_MAX_BOUNDARIES {
                        starts.push(p + 1);
                    }
                    if ends.len() < FP_MAX_BOUNDARIES {
                        ends.push(p);
                    }
                }
            }
            ends.push(we);
            let mut budget = FP_SPAN_BUDGET_PER_WORD;
            'spans: for &s in &starts {
                for &e in &ends {
                    if e <= s || !self.len_ok(e - s) {
                        continue;
                    }
                    if budget == 0 {
                        break 'spans;
                    }
                    budget -= 1;
                    if let Some(f) = self.check(&buf[s..e])
                        && reported.insert((s, e), ()).is_none()
                    {
                        self.push(
                            out,
                            s..e,
                            f,
                            Method::KnownFingerprint {
                                encoding: Encoding::Plain,
                            },
                        );
                    }
                }
            }
            // decode candidates: whole word, segments between adjacent boundaries, suffixes
            let mut cands: Vec<(usize, usize)> = vec![(ws, we)];
            let mut bounds: Vec<usize> = Vec::new();
            bounds.push(ws);
            for &e in &ends[..ends.len() - 1] {
                bounds.push(e);
            }
            bounds.push(we);
            for w in bounds.windows(2) {
                let s = if w[0] == ws { ws } else { w[0] + 1 };
                if w[1] > s {
                    cands.push((s, w[1]));
                }
                if s > ws {
                    cands.push((s, we));
                }
            }
            cands.sort_unstable();
            cands.dedup();
            for (s, e) in cands.into_iter().take(FP_MAX_BOUNDARIES) {
                if out.len() >= limit {
                    return;
                }
                if e - s < 8 || reported.contains_key(&(s, e)) {
                    continue;
                }
                if let Some((f, enc)) = self.check_decoded(&buf[s..e]) {
                    reported.insert((s, e), ());
                    self.push(out, s..e, f, Method::KnownFingerprint { encoding: enc });
                }
            }
        }
    }

    fn check_decoded(&self, tok: &[u8]) -> Option<(Fingerprint, Encoding)> {
        if tok.len() >= 12
            && tok
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=-_".contains(b))
            && let Some(d) = decode_b64(tok)
        {
            if let Some(f) = self.check_bytes_variants(&d) {
                return Some(f);
            }
            if d.len() >= 12
                && d.iter()
                    .all(|b| b.is_ascii_alphanumeric() || b"+/=-_".contains(b))
                && let Some(d2) = decode_b64(&d)
                && let Some(f) = self.check(&d2)
            {
                return Some((f, Encoding::DoubleBase64));
            }
        }
        if tok.contains(&b'%') {
            let d = percent_decode(tok);
            if let Some(f) = self.check(&d) {
                return Some((f, Encoding::UrlEncoded));
            }
        }
        if tok.contains(&b'\\') {
            let d = json_unescape(tok);
            if let Some(f) = self.check(&d) {
                return Some((f, Encoding::JsonEscaped));
            }
        }
        if tok.len() >= 16
            && tok.len().is_multiple_of(2)
            && tok.iter().all(|b| b.is_ascii_hexdigit())
        {
            let d: Vec<u8> = tok
                .chunks(2)
                .map(|c| (hexv(c[0]) << 4) | hexv(c[1]))
                .collect();
            if let Some(f) = self.check(&d) {
                return Some((f, Encoding::Hex));
            }
        }
        None
    }

    fn check_bytes_variants(&self, d: &[u8]) -> Option<(Fingerprint, Encoding)> {
        if let Some(f) = self.check(d) {
            return Some((
                f,
                Encoding::Base64 {
                    shift: 0,
                    url_safe: false,
                },
            ));
        }
        for k in 1..=2usize {
            if d.len() > k
                && let Some(f) = self.check(&d[k..])
            {
                return Some((
                    f,
                    Encoding::Base64 {
                        shift: k as u8,
                        url_safe: false,
                    },
                ));
            }
        }
        if let Some(p) = d.iter().position(|&b| b == b':')
            && let Some(f) = self.check(&d[p + 1..])
        {
            return Some((f, Encoding::BasicAuth));
        }
        None
    }
}

fn hexv(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => c.to_ascii_lowercase().wrapping_sub(b'a').wrapping_add(10),
    }
}

fn trim_ascii(s: &[u8]) -> &[u8] {
    let mut a = 0;
    let mut b = s.len();
    while a < b && s[a].is_ascii_whitespace() {
        a += 1;
    }
    while b > a && s[b - 1].is_ascii_whitespace() {
        b -= 1;
    }
    &s[a..b]
}

fn decode_b64(tok: &[u8]) -> Option<Vec<u8>> {
    let mut end = tok.len();
    while end > 0 && tok[end - 1] == b'=' {
        end -= 1;
    }
    let t = &tok[..end];
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(t)
        .ok()
        .or_else(|| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(t)
                .ok()
        })
}

fn percent_decode(s: &[u8]) -> Vec<u8> {
    let mut o = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%'
            && i + 2 < s.len()
            && s[i + 1].is_ascii_hexdigit()
            && s[i + 2].is_ascii_hexdigit()
        {
            o.push((hexv(s[i + 1]) << 4) | hexv(s[i + 2]));
            i += 3;
        } else if s[i] == b'+' {
            o.push(b' ');
            i += 1;
        } else {
            o.push(s[i]);
            i += 1;
        }
    }
    o
}

fn json_unescape(s: &[u8]) -> Vec<u8> {
    let mut o = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' && i + 1 < s.len() {
            let c = s[i + 1];
            o.push(match c {
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                other => other,
            });
            i += 2;
        } else {
            o.push(s[i]);
            i += 1;
        }
    }
    o
}
