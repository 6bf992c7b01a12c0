//! False-positive controls: placeholders and references, CI identifiers, randomness scoring.

use std::sync::LazyLock;

use aho_corasick::AhoCorasick;
use memchr::memmem;

/// Shannon entropy in bits per byte.
pub fn shannon_entropy(s: &[u8]) -> f64 {
    if s.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in s {
        counts[b as usize] += 1;
    }
    let n = s.len() as f64;
    let mut h = 0.0;
    for &c in counts.iter() {
        if c > 0 {
            let p = c as f64 / n;
            h -= p * p.log2();
        }
    }
    h
}

/// Entropy threshold scaled to the length of the value: a string of length `n` can have at most
/// `log2(n)` bits/char, so short values get a proportionally lower bar.
pub fn entropy_ok(s: &[u8], min_entropy: f64) -> bool {
    if s.is_empty() {
        return false;
    }
    let cap = 0.8 * (s.len() as f64).log2();
    shannon_entropy(s) >= min_entropy.min(cap)
}

fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    if needle.len() > hay.len() {
        return false;
    }
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

const PLACEHOLDER_WORDS: &[&[u8]] = &[
    b"xxxx",
    b"example",
    b"[masked]",
    b"redacted",
    b"changeme",
    b"change_me",
    b"change-me",
    b"replace_me",
    b"replaceme",
    b"replace-me",
    b"placeholder",
    b"your_",
    b"your-",
    b"yourtoken",
    b"yourkey",
    b"yoursecret",
    b"yourpassword",
    b"<token>",
    b"insert_",
    b"insert-",
    b"***",
    b"...",
    b"\xe2\x80\xa2\xe2\x80\xa2", // bullets
    b"_here",
    b"-here",
];

/// Example values published in vendors' documentation (AWS, Microsoft NuGet docs).
const WELL_KNOWN_EXAMPLES: &[&[u8]] = &[
    b"AKIAIOSFODNN7EXAMPLE",
    b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    b"33f!!lloppa",
    b"hal+9ooo_da!sY",
];

/// `%(name)s` Python format references.
fn has_format_ref(s: &[u8]) -> bool {
    let mut i = 0;
    while let Some(p) = memchr::memchr(b'%', &s[i..]) {
        let at = i + p;
        if s.get(at + 1) == Some(&b'(') {
            let rest = &s[at + 2..];
            let n = rest
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
                .count();
            if n > 0 && rest.get(n) == Some(&b')') {
                return true;
            }
        }
        i = at + 1;
    }
    false
}

/// Keyboard/alphabet sequences typed by humans: an ascending run of 6+ letters or digits
/// (`abcdef`, `klmnop`, `345678`) or an interleaved `a1b2c3` run. Vanishingly rare in random tokens.
fn has_ascending_run(s: &[u8]) -> bool {
    let mut run = 1;
    for w in s.windows(2) {
        let (a, b) = (w[0].to_ascii_lowercase(), w[1].to_ascii_lowercase());
        if b == a.wrapping_add(1)
            && (a.is_ascii_lowercase() && b.is_ascii_lowercase()
                || a.is_ascii_digit() && b.is_ascii_digit())
        {
            run += 1;
            if run >= 6 {
                return true;
            }
        } else {
            run = 1;
        }
    }
    s.windows(6).any(|w| {
        let l = |x: u8| x.is_ascii_alphabetic();
        let d = |x: u8| x.is_ascii_digit();
        let asc = |a: u8, b: u8| b.to_ascii_lowercase() == a.to_ascii_lowercase().wrapping_add(1);
        ((l(w[0]) && d(w[1])) || (d(w[0]) && l(w[1])))
            && asc(w[0], w[2])
            && asc(w[2], w[4])
            && asc(w[1], w[3])
            && asc(w[3], w[5])
    })
}

/// Template and variable references (`${X}`, `$(cmd)`, `{{ x }}`, `#{x}`).
const TEMPLATE_MARKERS: &[&[u8]] = &[b"${", b"$(", b"{{", b"}}", b"#{"];

/// [`PLACEHOLDER_WORDS`] and [`TEMPLATE_MARKERS`] in one automaton: every
/// candidate value of every rule goes through this, and one pass is about
/// ten times cheaper than a search per word.
static PLACEHOLDER_MARKS: LazyLock<AhoCorasick> = LazyLock::new(|| {
    AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .build(PLACEHOLDER_WORDS.iter().chain(TEMPLATE_MARKERS))
        .expect("a few short literals")
});

/// Placeholder / reference / masked value: never a real secret.
pub fn is_placeholder(s: &[u8]) -> bool {
    if s.is_empty() {
        return true;
    }
    if PLACEHOLDER_MARKS.is_match(s) {
        return true;
    }
    if has_format_ref(s) || has_ascending_run(s) || WELL_KNOWN_EXAMPLES.contains(&s) {
        return true;
    }
    if s[0] == b'$' && s.len() > 1 && (s[1].is_ascii_alphabetic() || s[1] == b'_' || s[1] == b'{') {
        return true;
    }
    if s.len() >= 3 && s[0] == b'%' && s[s.len() - 1] == b'%' {
        return true;
    }
    if s[0] == b'<' || s[s.len() - 1] == b'>' || (s.contains(&b'<') && s.contains(&b'>')) {
        return true;
    }
    // [PASSWORD] / [IP]-style template slots anywhere
    if let Some(p) = memchr::memchr(b'[', s) {
        let rest = &s[p + 1..];
        let n = rest
            .iter()
            .take_while(|b| b.is_ascii_uppercase() || **b == b'_')
            .count();
        if n >= 2 && rest.get(n) == Some(&b']') {
            return true;
        }
    }
    // [PASSWORD]-style
    if s.len() >= 3 && s[0] == b'[' && s[s.len() - 1] == b']' {
        return true;
    }
    // low variety: "aaaaaaaa", "00000000000000aa", "abababab"
    if s.len() >= 8 {
        let mut seen = [false; 256];
        let mut distinct = 0;
        for &b in s {
            if !seen[b as usize] {
                seen[b as usize] = true;
                distinct += 1;
            }
        }
        if distinct <= 3 {
            return true;
        }
        // long run of one character (except 'A', which base64 of zero bytes legitimately has)
        let mut run = 1;
        for w in s.windows(2) {
            if w[0] == w[1] && w[0] != b'A' {
                run += 1;
                if run >= 8 {
                    return true;
                }
            } else {
                run = 1;
            }
        }
    }
    false
}

const REFERENCE_LITERALS: &[&[u8]] = &[
    b"true",
    b"false",
    b"null",
    b"nil",
    b"none",
    b"undefined",
    b"required",
    b"optional",
    b"string",
    b"str",
    b"bool",
    b"int",
    b"secret",
    b"password",
    b"passwd",
    b"token",
    b"empty",
    b"default",
    b"hidden",
    b"masked",
    b"unset",
    b"sample",
    b"dummy",
    b"test",
    b"prompt",
    b"stdin",
    b"file",
    b"env",
];

const SECRETISH: &[&[u8]] = &[
    b"pass", b"secret", b"token", b"key", b"auth", b"cred", b"pwd",
];

/// `${X}`, `$(cmd)`, `$ENV_VAR`, `$shell_var` (single-case identifiers) anywhere in the value.
fn has_var_ref(v: &[u8]) -> bool {
    for (i, _) in v.iter().enumerate().filter(|(_, b)| **b == b'$') {
        let rest = &v[i + 1..];
        match rest.first() {
            Some(b'{') | Some(b'(') => return true,
            Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {
                let id: Vec<u8> = rest
                    .iter()
                    .copied()
                    .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
                    .collect();
                let upper = id.iter().all(|b| !b.is_ascii_lowercase());
                let lower = id.iter().all(|b| !b.is_ascii_uppercase());
                if (upper && id.len() >= 2) || (lower && id.len() >= 3) {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}

/// Heuristics for values of generic (keyword = value) rules that are code, references or prose
/// rather than secret material.
pub fn is_reference_or_code(v: &[u8]) -> bool {
    if v.is_empty() {
        return true;
    }
    let first = v[0];
    if matches!(
        first,
        b'$' | b'%'
            | b'@'
            | b'&'
            | b'#'
            | b'{'
            | b'('
            | b'['
            | b'!'
            | b'*'
            | b'-'
            | b'<'
            | b'/'
            | b'~'
            | b'\\'
    ) {
        return true;
    }
    // $VAR / $(cmd) / ${VAR} anywhere in a generic value
    if has_var_ref(v) {
        return true;
    }
    // code paths (`a::b`) and a following `key=value` pair (`min_length=12`)
    if memmem::find(v, b"::").is_some() {
        return true;
    }
    if let Some(eq) = memchr::memchr(b'=', v) {
        let k = &v[..eq];
        if k.len() >= 3
            && v.get(eq + 1).is_some_and(|b| b.is_ascii_alphanumeric())
            && k[0].is_ascii_alphabetic()
            && k.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
            && k.iter().any(|b| *b == b'_' || b.is_ascii_lowercase())
        {
            return true;
        }
    }
    if v.starts_with(b"env:") || v.starts_with(b"file:") || v.starts_with(b"fd:") {
        return true;
    }
    if v.starts_with(b"./")
        || memmem::find(v, b"://").is_some()
        || memmem::find(v, b"/run/secrets").is_some()
    {
        return true;
    }
    let last = v[v.len() - 1];
    if matches!(last, b'(' | b')' | b'.' | b':' | b'{' | b'[') {
        return true;
    }
    // `value=` (an attribute name, not base64 padding)
    if last == b'='
        && v[..v.len() - 1]
            .iter()
            .all(|b| b.is_ascii_alphabetic() || *b == b'_')
    {
        return true;
    }
    // function call or indexing: foo(bar), a[b]
    if let Some(p) = v.iter().position(|&b| b == b'(')
        && p > 0
        && v[..p]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'.')
    {
        return true;
    }
    for lit in REFERENCE_LITERALS {
        if v.eq_ignore_ascii_case(lit) {
            return true;
        }
    }
    // dotted identifier path: settings.db_password, process.env.X, os.environ
    let ident = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    if v.contains(&b'.')
        && !v.iter().any(|b| b.is_ascii_digit())
        && v.split(|&b| b == b'.')
            .all(|p| !p.is_empty() && p.iter().all(ident))
    {
        return true;
    }
    // identifier-like value naming a secret: user_password, GITHUB_TOKEN, my-secrets-manager-secret
    if v.iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
    {
        let lower: Vec<u8> = v.to_ascii_lowercase();
        let all_caps = v.iter().all(|b| !b.is_ascii_lowercase());
        let has_sep = v.contains(&b'_') || v.contains(&b'-');
        if SECRETISH.iter().any(|w| memmem::find(&lower, w).is_some())
            && (has_sep || all_caps)
            && !v.iter().any(|b| b.is_ascii_digit())
        {
            return true;
        }
        // SCREAMING_CASE env var name
        if all_caps
            && has_sep
            && v.iter().filter(|b| b.is_ascii_digit()).count() <= 1
            && v.len() < 40
        {
            return true;
        }
    }
    false
}

/// Number of character classes (lower, upper, digit, other) present.
pub fn char_classes(v: &[u8]) -> u32 {
    let mut l = 0;
    let mut u = 0;
    let mut d = 0;
    let mut o = 0;
    for &b in v {
        if b.is_ascii_lowercase() {
            l = 1
        } else if b.is_ascii_uppercase() {
            u = 1
        } else if b.is_ascii_digit() {
            d = 1
        } else {
            o = 1
        }
    }
    l + u + d + o
}

fn is_hex(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|b| b.is_ascii_hexdigit())
}

fn is_uuid(s: &[u8]) -> bool {
    if s.len() != 36 {
        return false;
    }
    s.iter().enumerate().all(|(i, &b)| {
        if matches!(i, 8 | 13 | 18 | 23) {
            b == b'-'
        } else {
            b.is_ascii_hexdigit()
        }
    })
}

/// CI identifiers that look random but are not secrets: digests, integrity hashes, Go module
/// hashes, UUIDs, numeric build ids and versions.
pub fn is_ci_identifier(s: &[u8]) -> bool {
    let lower = s.to_ascii_lowercase();
    for p in [
        &b"sha1:"[..],
        b"sha224:",
        b"sha256:",
        b"sha384:",
        b"sha512:",
        b"md5:",
        b"blake2b:",
        b"blake3:",
        b"sha1-",
        b"sha256-",
        b"sha384-",
        b"sha512-",
        b"h1:",
        b"sha256=",
        b"sha1=",
    ] {
        if lower.starts_with(p) {
            return true;
        }
    }
    if is_uuid(s) {
        return true;
    }
    // braced GUID
    if s.len() == 38 && s[0] == b'{' && s[37] == b'}' && is_uuid(&s[1..37]) {
        return true;
    }
    // numbers, versions, dates
    if s.iter()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_' | b':' | b'+' | b'T' | b'Z'))
    {
        return true;
    }
    false
}

/// Words in a line that make a bare 40/64-hex value a commit/digest/hash rather than a secret.
const HASH_CONTEXT: &[&[u8]] = &[
    b"commit",
    b"sha",
    b"digest",
    b"checksum",
    b"hash",
    b"revision",
    b"fingerprint",
    b"integrity",
    b"cache",
    b"merge",
];

/// Words in the *key name* of a generic assignment that mark test fixtures, public values and
/// documentation rather than live secrets.
const KEY_STOPWORDS: &[&[u8]] = &[
    b"public",
    b"publishable",
    b"fake",
    b"dummy",
    b"mock",
    b"sample",
    b"example",
    b"invalid",
    b"nonmatching",
    b"non_matching",
    b"placeholder",
    b"expected",
];

/// The identifier immediately before the value at `start` (skipping quotes, spaces and
/// assignment operators), e.g. `nonMatchingToken` in `nonMatchingToken := "..."`.
pub fn key_name(line: &[u8], start: usize) -> &[u8] {
    let mut j = start;
    while j > 0 && b" \t\"'`=:!<>?,\\".contains(&line[j - 1]) {
        j -= 1;
    }
    let end = j;
    while j > 0
        && (line[j - 1].is_ascii_alphanumeric() || b"_-.".contains(&line[j - 1]))
        && end - j < 64
    {
        j -= 1;
    }
    &line[j..end]
}

/// Generic assignment whose key marks a test fixture / public value.
pub fn key_is_stopword(line: &[u8], start: usize) -> bool {
    let k = key_name(line, start);
    KEY_STOPWORDS.iter().any(|w| contains_ci(k, w))
}

/// A test runner's result line: Go (`--- PASS: TestX (0.42s)`, `=== RUN`),
/// pytest (`tests/test_token.py::test_x PASSED`), cargo (`test a::b ... ok`).
/// Their status words and test names read like `key: value` to generic rules
/// and flood CI logs, so generic rules skip these lines.
pub fn is_test_report_line(line: &[u8]) -> bool {
    // Anywhere in the line: CI runners put timestamps and colour codes first.
    // Each runner's markers share a lead (`--- `, `=== `, ` ... `, `::`) that
    // one packed (Teddy) pass over the line finds; only its hits are looked at
    // further. An overlapping Aho-Corasick search for all the markers cost
    // twice as much as a memmem pass per lead, and generic rules ask this of
    // most lines they run on; one pass for the four leads measured the same
    // as the four memmem passes, or 0.7% less of a scan (means of 32 runs each,
    // within the noise), and reads a long line once.
    let starts_with_any = |rest: &[u8], words: &[&[u8]]| words.iter().any(|w| rest.starts_with(w));
    let mut pytest_id = false;
    let mut from = 0;
    // Every occurrence of every lead, overlapping ones too (` ... ` can overlap
    // itself, as in `test x ... ... ok`): the next search starts one byte on.
    while let Some(m) = TEST_REPORT_LEADS.find_in(line, aho_corasick::Span::from(from..line.len()))
    {
        let rest = &line[m.end()..];
        let runner_line = match m.pattern().as_usize() {
            // Go's result and progress lines
            0 => starts_with_any(rest, &[b"PASS: ", b"FAIL: ", b"SKIP: "]),
            1 => starts_with_any(rest, &[b"RUN ", b"PAUSE ", b"CONT ", b"NAME "]),
            // cargo test: `test a::b ... ok`
            2 => {
                starts_with_any(rest, &[b"ok", b"FAILED", b"ignored"])
                    && CARGO_TEST.find(line).is_some()
            }
            _ => {
                pytest_id = true;
                false
            }
        };
        if runner_line {
            return true;
        }
        from = m.start() + 1;
    }
    // pytest node ids (`file.py::test`) with a status word, which may be
    // wrapped in colour codes
    pytest_id && PYTEST_STATUS.is_match(line)
}

/// The leads of [`is_test_report_line`], in the order its `match` reads them.
static TEST_REPORT_LEADS: LazyLock<aho_corasick::packed::Searcher> = LazyLock::new(|| {
    aho_corasick::packed::Searcher::new(["--- ", "=== ", " ... ", "::"])
        .expect("four short literals fit a packed searcher")
});

static CARGO_TEST: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"test "));

static PYTEST_STATUS: LazyLock<AhoCorasick> = LazyLock::new(|| {
    AhoCorasick::new(["PASSED", "FAILED", "SKIPPED", "XFAIL", "XPASS", "ERROR"])
        .expect("a few short literals")
});

/// A bare hex git SHA / content digest in a line that talks about commits or hashes.
pub fn is_hash_in_hash_context(secret: &[u8], line: &[u8]) -> bool {
    (secret.len() == 40 || secret.len() == 64 || secret.len() == 128)
        && is_hex(secret)
        && HASH_CONTEXT.iter().any(|w| contains_ci(line, w))
}

#[cfg(test)]
mod test_report_lines {
    use super::is_test_report_line;

    #[test]
    fn recognises_runner_result_lines_only() {
        for line in [
            &b"--- PASS: TestParseConfig (0.42s)"[..],
            b"    --- FAIL: TestTokenRefresh/expired (0.00s)",
            b"=== RUN   TestPasswordHashing",
            b"tests/test_token.py::test_refresh_token_expiry PASSED  [ 42%]",
            b"test auth::token::tests::refresh_token_roundtrip ... ok",
            b"test x ... ... ok",
        ] {
            assert!(
                is_test_report_line(line),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        for line in [
            &b"password: hunter2-but-longer"[..],
            b"export TOKEN=abc::def",
        ] {
            assert!(!is_test_report_line(line));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders() {
        for p in [
            &b"xxxxxxxxxxxxxxxx"[..],
            b"AKIAIOSFODNN7EXAMPLE",
            b"${{ secrets.NPM_TOKEN }}",
            b"${VAR}",
            b"***",
            b"[MASKED]",
            b"changeme",
            b"<YOUR_TOKEN>",
            b"aaaaaaaaaaaa",
            b"000000000000000000000000000000000000000000aa",
        ] {
            assert!(is_placeholder(p), "{}", String::from_utf8_lossy(p));
        }
        for s in [&b"q8Zr4LmT0pXc2VbN"[..], b"hunter2!x9"] {
            assert!(!is_placeholder(s));
        }
    }

    #[test]
    fn ci_ids() {
        assert!(is_ci_identifier(
            b"sha256:0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9"
        ));
        assert!(is_ci_identifier(b"sha512-Zm9vYmFy"));
        assert!(is_ci_identifier(b"h1:abcdEFGH1234="));
        assert!(is_ci_identifier(b"123e4567-e89b-12d3-a456-426614174000"));
        assert!(!is_ci_identifier(b"q8Zr4LmT0pXc2VbN"));
    }

    #[test]
    fn references() {
        for r in [
            &b"settings.db_password"[..],
            b"$DB_PASSWORD",
            b"getpass()",
            b"user_password",
            b"GITHUB_TOKEN",
            b"null",
        ] {
            assert!(is_reference_or_code(r), "{}", String::from_utf8_lossy(r));
        }
        for s in [&b"open_sesame"[..], b"Pr3st!ge", b"team10"] {
            assert!(!is_reference_or_code(s), "{}", String::from_utf8_lossy(s));
        }
    }
}
