//! Rules as data: the built-in TOML rule file, user rules, and their compiled form.

use std::fmt;
use std::sync::Arc;

use regex_automata::meta::Regex;
use regex_automata::util::syntax;
use serde::{Deserialize, Serialize};

use super::DetectError;
use super::validate::Validator;

/// The built-in rule file, compiled into the binary.
pub const BUILTIN_RULES_TOML: &str = include_str!("rules.toml");

/// How sure a rule is that a match is a live secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    Low,
    Medium,
    High,
}

impl Confidence {
    pub fn as_str(self) -> &'static str {
        match self {
            Confidence::Low => "low",
            Confidence::Medium => "medium",
            Confidence::High => "high",
        }
    }
}

/// A rule as written in TOML (built-in file or user configuration).
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub id: String,
    pub name: String,
    pub family: String,
    pub confidence: Confidence,
    /// Regex (Rust `regex` syntax, bytes, Unicode off). The secret is the named group `secret`,
    /// else the first participating capture group, else the whole match.
    pub regex: String,
    /// Case-insensitive literals; a line is tried against this rule only if one occurs in it.
    /// An empty list means the rule is tried on every line (slower).
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Literals (case-sensitive) that must all occur in the line before the regex is tried: a
    /// cheap second filter for rules whose keywords are common (`@` for URLs with credentials).
    #[serde(default)]
    pub requires: Vec<String>,
    /// Literals (case-sensitive) one of which must occur in the line at or after the first of
    /// the rule's keywords before the regex is tried: for rules whose every match has one of
    /// them after its keyword (the assignment operators of `generic-secret`), which spares the
    /// regex the lines that only mention the word. Exact only if every match holds one of the
    /// rule's keywords with one of the literals after it. A rule without keywords looks at the
    /// whole line.
    #[serde(default)]
    pub requires_after_keyword: Vec<String>,
    /// The bytes an assignment can begin with, for rules whose every match is a name holding
    /// one of the rule's keywords, then an assignment, then the value (`DEPLOY_TOKEN=...`). A
    /// line is tried only if, after one of the keywords, past the name characters
    /// (`A-Z a-z 0-9 _ . -`) from where it starts and then any quotes, backslashes and
    /// whitespace, the next byte is one of these; a space in the list stands for whitespace,
    /// which then separates name and value on its own. Exact only if, in every match, the
    /// name runs in name characters from one of the rule's keywords to the assignment.
    #[serde(default)]
    pub assignment_after_keyword: Option<String>,
    #[serde(default)]
    pub validator: Option<String>,
    /// Minimum Shannon entropy (bits/char) of the secret, scaled down for short values.
    #[serde(default)]
    pub min_entropy: Option<f64>,
    /// Apply the CI identifier allowlist (digests, UUIDs, ...). Default true.
    #[serde(default)]
    pub ci_filter: Option<bool>,
    /// Apply generic-assignment heuristics (references, code, prose). Default false.
    #[serde(default)]
    pub generic: bool,
    #[serde(default)]
    pub examples: Vec<String>,
    #[serde(default)]
    pub counter_examples: Vec<String>,
}

impl fmt::Debug for RuleSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuleSpec")
            .field("id", &self.id)
            .field("family", &self.family)
            .field("confidence", &self.confidence)
            .field("keywords", &self.keywords)
            .field("examples", &self.examples.len())
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    rule: Vec<RuleSpec>,
}

/// Parses a rule file (`[[rule]]` tables).
pub fn parse_rules_toml(text: &str) -> Result<Vec<RuleSpec>, DetectError> {
    let f: RuleFile = toml::from_str(text).map_err(|e| DetectError::RuleFile(e.to_string()))?;
    Ok(f.rule)
}

/// The built-in rules.
pub fn builtin_rule_specs() -> Vec<RuleSpec> {
    parse_rules_toml(BUILTIN_RULES_TOML).expect("built-in rules.toml parses")
}

/// A compiled rule.
pub struct Rule {
    pub id: Arc<str>,
    pub name: Arc<str>,
    pub family: Arc<str>,
    pub confidence: Confidence,
    pub keywords: Vec<String>,
    pub validator: Option<Validator>,
    pub min_entropy: Option<f64>,
    pub ci_filter: bool,
    pub generic: bool,
    pub(crate) regex: LazyRegex,
    /// The spec's `requires` literals, ready to search (building a searcher
    /// per line cost more than the search)
    pub(crate) required: Vec<memchr::memmem::Finder<'static>>,
    /// The spec's `requires_after_keyword` literals, ready to search
    pub(crate) required_after_keyword: Vec<memchr::memmem::Finder<'static>>,
    /// The spec's `assignment_after_keyword`, ready to test
    pub(crate) assignment: Option<Assignment>,
    pub spec: RuleSpec,
}

/// A rule's `assignment_after_keyword` (see [`RuleSpec`]).
pub(crate) struct Assignment {
    /// the bytes an assignment operator begins with
    operator_starts: [bool; 256],
    /// whitespace alone separates a name from its value
    whitespace_separates: bool,
}

impl Assignment {
    fn parse(spec: &str) -> Result<Assignment, String> {
        if spec.is_empty() {
            return Err("lists no byte".into());
        }
        let mut operator_starts = [false; 256];
        let mut whitespace_separates = false;
        for b in spec.bytes() {
            if b == b' ' {
                whitespace_separates = true;
            } else if is_name_byte(b) || is_quote_or_space(b) || !b.is_ascii_graphic() {
                // the test passes these over, so it would never see them
                return Err(format!(
                    "'{}' cannot begin an assignment: name characters, quotes, backslashes \
                     and whitespace are passed over (a space stands for whitespace)",
                    b.escape_ascii()
                ));
            } else {
                operator_starts[b as usize] = true;
            }
        }
        Ok(Assignment {
            operator_starts,
            whitespace_separates,
        })
    }

    /// Whether an assignment follows the name that holds a keyword at `at` in `line`.
    #[inline]
    pub(crate) fn follows(&self, line: &[u8], at: usize) -> bool {
        let mut i = at;
        while i < line.len() && is_name_byte(line[i]) {
            i += 1;
        }
        let mut spaced = false;
        while i < line.len() && is_quote_or_space(line[i]) {
            spaced |= !matches!(line[i], b'"' | b'\'' | b'\\');
            i += 1;
        }
        (spaced && self.whitespace_separates)
            || line
                .get(i)
                .is_some_and(|&b| self.operator_starts[b as usize])
    }
}

/// A byte of a name, as `[0-9a-z_.\-]` with `(?i)` in the rules' regexes.
fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')
}

/// A quote, a backslash or whitespace as the regexes' `\s` (Unicode off) has it: unlike
/// [`u8::is_ascii_whitespace`], with the vertical tab.
fn is_quote_or_space(b: u8) -> bool {
    matches!(
        b,
        b'"' | b'\'' | b'\\' | b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r'
    )
}

/// A rule's regex, compiled the first time a line holds one of its keywords.
///
/// Most of the 431 built-in rules never see their keywords on a given
/// runner, and the compiled set took about 23 MiB, which was most of the
/// agent's memory with detection on. A user's regex is still compiled once
/// when rules load (then dropped), so a bad rule fails there, with its id,
/// and never on the data path. The built-in regexes are not: the test
/// `every_builtin_rule_compiles` does that for them, and building 431 regexes
/// to drop them took 35 ms of every start (a quarter of a 100 MiB `scan`).
///
/// The regex is searched with a cache the caller owns (see
/// [`Scratch`](super::Scratch)), not one from the regex's own per-thread
/// pool: a transform that runs on either runtime worker then keeps one lazy
/// DFA per rule instead of one per thread that ever ran it.
pub(crate) struct LazyRegex {
    pattern: String,
    /// the rule's keywords, for [`Compiled::starts_at_keyword`]
    keywords: Vec<String>,
    /// false to search the whole line even where anchoring is proven (tests compare the two)
    may_anchor: bool,
    lazy_dfa_capacity: usize,
    compiled: std::sync::OnceLock<Compiled>,
}

struct Compiled {
    regex: Regex,
    /// the index of the group named `secret`, if the regex has one
    secret_group: Option<usize>,
    /// every match begins with one of the rule's keywords (see [`super::anchor`])
    starts_at_keyword: bool,
}

impl LazyRegex {
    pub(crate) fn get(&self) -> &Regex {
        &self.compiled().regex
    }

    /// The index of the group named `secret`, if the regex has one (without one, the caller
    /// takes the first group that matched).
    pub(crate) fn secret_group(&self) -> Option<usize> {
        self.compiled().secret_group
    }

    /// Whether every match begins with one of the rule's keywords, so that the regex can be
    /// searched anchored at each keyword the line holds instead of over the whole line.
    pub(crate) fn starts_at_keyword(&self) -> bool {
        self.may_anchor && self.compiled().starts_at_keyword
    }

    #[cfg(test)]
    pub(crate) fn never_anchor(&mut self) {
        self.may_anchor = false;
    }

    /// Sets the capacity the regex is built with; before its first use.
    pub(crate) fn set_lazy_dfa_capacity(&mut self, bytes: usize) {
        debug_assert!(self.compiled.get().is_none(), "set before the first use");
        self.lazy_dfa_capacity = bytes;
    }

    fn compiled(&self) -> &Compiled {
        self.compiled.get_or_init(|| {
            const CHECKED: &str =
                "a user rule's pattern compiled when it loaded, a built-in one in tests";
            // One parse serves the analysis and the build, so what was analysed is what runs.
            let hir = parse_pattern(&self.pattern).expect(CHECKED);
            let starts_at_keyword = super::anchor::anchorable(&hir, &self.keywords);
            // A search anchored at a keyword has no use for a literal prefilter, and building
            // one was a third of building the regex (58 against 40 ms for the 431 built-in
            // rules, 363 of them anchored).
            let prefilter = !(starts_at_keyword && self.may_anchor);
            let regex = build_regex(&hir, self.lazy_dfa_capacity, prefilter).expect(CHECKED);
            let secret_group = regex
                .group_info()
                .to_index(regex_automata::PatternID::ZERO, "secret");
            Compiled {
                regex,
                secret_group,
                starts_at_keyword,
            }
        })
    }
}

/// The pattern as the regex is built from it: bytes, Unicode off.
pub(crate) fn parse_pattern(pattern: &str) -> Result<regex_syntax::hir::Hir, String> {
    let config = syntax::Config::new().unicode(false).utf8(false);
    syntax::parse_with(pattern, &config).map_err(|e| e.to_string())
}

fn finders(literals: &[String]) -> Vec<memchr::memmem::Finder<'static>> {
    literals
        .iter()
        .map(|r| memchr::memmem::Finder::new(r.as_bytes()).into_owned())
        .collect()
}

/// What `regex::bytes::RegexBuilder` with `unicode(false)` builds from a pattern parsed by
/// [`parse_pattern`]: leftmost-first matching over arbitrary bytes, ASCII classes; with a
/// literal prefilter if `prefilter`.
fn build_regex(
    hir: &regex_syntax::hir::Hir,
    lazy_dfa_capacity: usize,
    prefilter: bool,
) -> Result<Regex, String> {
    Regex::builder()
        .configure(
            Regex::config()
                .utf8_empty(false)
                // A one-pass DFA only speeds up finding the groups of a match,
                // and matches are rare; it took 2.7 MiB for the rules a CI
                // log wakes.
                .onepass(false)
                .auto_prefilter(prefilter)
                .nfa_size_limit(Some(REGEX_SIZE_LIMIT))
                .hybrid_cache_capacity(lazy_dfa_capacity),
        )
        .build_from_hir(hir)
        .map_err(|e| match std::error::Error::source(&e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        })
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rule")
            .field("id", &self.id)
            .field("family", &self.family)
            .field("confidence", &self.confidence)
            .finish_non_exhaustive()
    }
}

fn bad(spec: &RuleSpec, field: &'static str, msg: impl Into<String>) -> DetectError {
    DetectError::InvalidRule {
        id: if spec.id.is_empty() {
            "<missing id>".into()
        } else {
            spec.id.clone()
        },
        field,
        message: msg.into(),
    }
}

/// Limits on compiled regex size (bounded memory for any rule set).
const REGEX_SIZE_LIMIT: usize = 8 << 20;
/// How large a rule's lazy DFA may grow before it is cleared (and its states built again as
/// lines need them), unless the detector's configuration says otherwise.
pub const LAZY_DFA_CAPACITY: usize = 2 << 20;

/// Compiles a user or built-in rule, naming the rule id and field on error.
pub fn compile_rule(spec: &RuleSpec) -> Result<Rule, DetectError> {
    compile(spec, true)
}

/// Compiles a built-in rule without building its regex to check it: see
/// [`LazyRegex`].
pub(crate) fn compile_builtin_rule(spec: &RuleSpec) -> Result<Rule, DetectError> {
    compile(spec, false)
}

fn compile(spec: &RuleSpec, check_regex: bool) -> Result<Rule, DetectError> {
    if spec.id.trim().is_empty() {
        return Err(bad(spec, "id", "must not be empty"));
    }
    if !spec
        .id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(bad(
            spec,
            "id",
            "only [A-Za-z0-9._-] allowed (it appears in redaction markers)",
        ));
    }
    if spec.name.trim().is_empty() {
        return Err(bad(spec, "name", "must not be empty"));
    }
    if spec.family.trim().is_empty() {
        return Err(bad(spec, "family", "must not be empty"));
    }
    if spec.regex.is_empty() {
        return Err(bad(spec, "regex", "must not be empty"));
    }
    if check_regex {
        let regex = parse_pattern(&spec.regex)
            .and_then(|hir| build_regex(&hir, LAZY_DFA_CAPACITY, true))
            .map_err(|e| bad(spec, "regex", e))?;
        if regex.is_match(b"") {
            return Err(bad(spec, "regex", "matches the empty string"));
        }
    }
    if spec.requires.iter().any(|r| r.is_empty()) {
        return Err(bad(spec, "requires", "empty literal"));
    }
    if spec.requires_after_keyword.iter().any(|r| r.is_empty()) {
        return Err(bad(spec, "requires_after_keyword", "empty literal"));
    }
    let assignment = match &spec.assignment_after_keyword {
        None => None,
        Some(_) if spec.keywords.is_empty() => {
            return Err(bad(
                spec,
                "assignment_after_keyword",
                "needs keywords to look after",
            ));
        }
        Some(a) => {
            // The test passes over the name from a keyword's first byte; one that cannot be
            // in a name (`$token`) would end it there, before any assignment. Later ones
            // may (`jwt"`): the name ends at the first of them in the line as in the keyword.
            if let Some(k) = spec
                .keywords
                .iter()
                .find(|k| !k.bytes().next().is_some_and(is_name_byte))
            {
                return Err(bad(
                    spec,
                    "assignment_after_keyword",
                    format!(
                        "keyword {k:?} begins with a byte other than [A-Za-z0-9_.-]; the test \
                         begins at a keyword, passing over the name that holds it"
                    ),
                ));
            }
            Some(Assignment::parse(a).map_err(|e| bad(spec, "assignment_after_keyword", e))?)
        }
    };
    for k in &spec.keywords {
        if k.len() < 3 {
            return Err(bad(
                spec,
                "keywords",
                format!("keyword {k:?} is shorter than 3 bytes"),
            ));
        }
        if k.contains('\n') {
            return Err(bad(
                spec,
                "keywords",
                format!("keyword {k:?} contains a newline"),
            ));
        }
    }
    let validator = match &spec.validator {
        None => None,
        Some(v) => Some(Validator::parse(v).ok_or_else(|| {
            bad(
                spec,
                "validator",
                format!(
                    "unknown validator {v:?} (known: github_crc32, basic_auth_b64, b64_private_key)"
                ),
            )
        })?),
    };
    if let Some(e) = spec.min_entropy
        && !(0.0..=8.0).contains(&e)
    {
        return Err(bad(spec, "min_entropy", "must be within 0..=8 bits/char"));
    }
    Ok(Rule {
        id: spec.id.as_str().into(),
        name: spec.name.as_str().into(),
        family: spec.family.as_str().into(),
        confidence: spec.confidence,
        keywords: spec
            .keywords
            .iter()
            .map(|k| k.to_ascii_lowercase())
            .collect(),
        validator,
        min_entropy: spec.min_entropy,
        ci_filter: spec.ci_filter.unwrap_or(true),
        generic: spec.generic,
        regex: LazyRegex {
            pattern: spec.regex.clone(),
            keywords: spec.keywords.clone(),
            may_anchor: true,
            lazy_dfa_capacity: LAZY_DFA_CAPACITY,
            compiled: std::sync::OnceLock::new(),
        },
        required: finders(&spec.requires),
        required_after_keyword: finders(&spec.requires_after_keyword),
        assignment,
        spec: spec.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::Assignment;

    #[test]
    fn an_assignment_follows_the_name_past_quotes_and_spaces() {
        let operators = Assignment::parse("=:").unwrap();
        let follows = |line: &str| operators.follows(line.as_bytes(), 0);
        assert!(follows("token=x"));
        assert!(follows("TOKEN_FILE.b64-x : x"));
        assert!(follows("token\\\" \x0b\t= x"));
        // the first byte past the name decides
        assert!(!follows("token source: actions"));
        assert!(!follows("token.c -o token.o"));
        assert!(!follows("token/x=1"));
        assert!(!follows("token \""));
        assert!(!follows("token"));
        let or_whitespace = Assignment::parse("= ").unwrap();
        let follows = |line: &str| or_whitespace.follows(line.as_bytes(), 0);
        assert!(follows("azure x"));
        assert!(follows("azure\"\tx"));
        assert!(follows("azure=x"));
        // quotes and backslashes alone are no separator
        assert!(!follows("azure\"x"));
        assert!(!follows("azure.archive.ubuntu.com/ubuntu"));
        assert!(!follows("azure"));
    }
}
