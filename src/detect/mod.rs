//! Secret detection and redaction engine.
//!
//! Two stages per input block (one line, or many `\n`-separated lines):
//! 1. a multi-literal keyword prefilter over all rules' keywords (ASCII case-insensitive, see
//!    [`prefilter`](self) module docs): a 4-gram two-probe bitmap scan with in-place verification
//!    finds the exact keyword occurrences in one pass; lines with no keyword cost nothing more;
//! 2. for each line holding keywords, the regexes of the rules owning them (`regex-automata`,
//!    finite automata, linear time, no backtracking) run on that line only.
//!
//! Matches go through placeholder / reference / CI-identifier / allowlist / entropy / validator
//! filters. Registered known values (plaintext or fingerprint) are matched independently (see
//! [`known`]). Working memory is bounded: inputs are scanned in windows of [`SCAN_WINDOW`] bytes
//! and at most [`MAX_FINDINGS_PER_CALL`] findings are produced per call.
//!
//! The [`Detector`] is immutable after construction (`Send + Sync`, share it with `Arc`); the only
//! mutable part, the known values, is replaced with `&mut self` or passed per call to
//! [`Detector::scan_with`].

mod anchor;
pub mod filters;
pub mod fingerprint;
pub mod known;
mod lines;
mod prefilter;
pub mod rules;
pub mod validate;

#[cfg(test)]
mod tests;

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use regex_automata::util::pool::Pool;

use regex::bytes::{Regex, RegexBuilder};

pub use fingerprint::{Fingerprint, Fingerprinter};
pub use known::{Encoding, KnownValues};
pub use rules::{Confidence, Rule, RuleSpec};
pub use validate::Validator;

/// Errors building a [`Detector`].
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("rule file does not parse: {0}")]
    RuleFile(String),
    #[error("rule {id:?}: field `{field}`: {message}")]
    InvalidRule {
        id: String,
        field: &'static str,
        message: String,
    },
    #[error("allowlist entry #{index}: {message}")]
    Allowlist { index: usize, message: String },
    #[error("disable_rules: no rule with id {0:?}")]
    UnknownRule(String),
}

/// Detector configuration.
#[derive(Clone, Default)]
pub struct DetectorConfig {
    /// Material for the per-fleet fingerprint key (`blake3::derive_key`).
    pub fingerprint_key: String,
    /// User rules, added to the built-in ones (ids must be unique).
    pub extra_rules: Vec<RuleSpec>,
    /// Regexes; a candidate secret matching any of them is ignored.
    pub allowlist: Vec<String>,
    /// Built-in or extra rule ids to disable.
    pub disable_rules: Vec<String>,
    /// How large each rule's lazy DFA may grow before it is cleared and built again; `None`
    /// means [`rules::LAZY_DFA_CAPACITY`]. A one-shot `scan` raises it (see
    /// `scan::SCAN_LAZY_DFA_CAPACITY`); the agent keeps the default for its memory.
    pub lazy_dfa_capacity: Option<usize>,
}

impl fmt::Debug for DetectorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DetectorConfig")
            .field("fingerprint_key", &"<hidden>")
            .field("extra_rules", &self.extra_rules.len())
            .field("allowlist", &self.allowlist)
            .field("disable_rules", &self.disable_rules)
            .field("lazy_dfa_capacity", &self.lazy_dfa_capacity)
            .finish()
    }
}

/// How a finding was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    /// A rule's pattern matched.
    Pattern,
    /// A registered plaintext value, in the given encoding.
    KnownValue { encoding: Encoding },
    /// A registered fingerprint (no plaintext held), in the given encoding.
    KnownFingerprint { encoding: Encoding },
}

/// One detected secret. Holds no plaintext: only where it is and its keyed fingerprint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub rule_id: Arc<str>,
    pub rule_name: Arc<str>,
    pub family: Arc<str>,
    pub confidence: Confidence,
    /// Byte range of the secret within the scanned input.
    pub range: Range<usize>,
    pub fingerprint: Fingerprint,
    /// `Some(true/false)` when the rule has a checksum validator.
    pub checksum_valid: Option<bool>,
    pub method: Method,
}

impl Finding {
    /// The redaction marker `[REDACTED:<rule-id>:<fp12>]`.
    pub fn marker(&self) -> String {
        format!("[REDACTED:{}:{}]", self.rule_id, self.fingerprint.short())
    }

    fn priority(&self) -> (u8, Confidence, usize) {
        let known = !matches!(self.method, Method::Pattern) as u8;
        (known, self.confidence, self.range.len())
    }

    /// Rank used when findings overlap: known values, then provider rules, then generic rules.
    fn rank(&self, generic: bool) -> (u8, u8, Confidence) {
        let known = !matches!(self.method, Method::Pattern) as u8;
        (known, !generic as u8, self.confidence)
    }
}

/// At most this many findings are produced per call (bounded memory on hostile input).
pub const MAX_FINDINGS_PER_CALL: usize = 4096;

/// Inputs are scanned in windows of at most this many bytes (bounded working memory).
pub const SCAN_WINDOW: usize = 1 << 20;

/// The secret detector. `Send + Sync`; cheap to share behind `Arc`.
pub struct Detector {
    rules: Vec<Rule>,
    prefilter: prefilter::Prefilter,
    /// keyword pattern index -> rule indices
    kw_rules: Vec<Vec<u32>>,
    /// rules without keywords: tried on every line
    always: Vec<u32>,
    allowlist: Vec<Regex>,
    fp: Fingerprinter,
    known: KnownValues,
    /// tells this detector's [`Scratch`]es from another's
    id: u64,
    /// scratch for [`Detector::scan`] callers that keep none of their own
    scratch: Pool<Scratch, ScratchFn>,
}

type ScratchFn =
    Box<dyn Fn() -> Scratch + Send + Sync + std::panic::UnwindSafe + std::panic::RefUnwindSafe>;

/// Working memory for scanning: the regex caches of the rules that ran
/// (lazy DFAs, up to 2 MiB each) and reusable buffers.
///
/// A long-lived scanner (a transform, `tailguard scan`) keeps one and passes
/// it to [`Detector::scan_in`], so its caches exist once however many threads
/// it runs on. A scratch belongs to one detector; given to another it starts
/// afresh.
#[derive(Default)]
pub struct Scratch {
    detector: u64,
    regexes: RegexScratch,
    hits: Vec<(usize, u32)>,
    touched: Vec<u32>,
}

/// Per rule, its regex's search cache (made when the rule runs), and one set
/// of capture slots for whichever rule runs.
///
/// The caches together are kept under [`REGEX_CACHE_BUDGET`]: past it, the
/// caches of the rules that ran longest ago are dropped (and made again if
/// their rule runs again). A runner's logs keep a handful of rules busy (the
/// generic ones, those whose keywords are common words); the hundred others
/// that a rare secret wakes once would otherwise each keep up to a few
/// hundred KiB for the agent's lifetime.
#[derive(Default)]
struct RegexScratch {
    /// (boxed: a cache is 1.4 KiB inline, and most rules never make one)
    caches: Vec<Option<Box<regex_automata::meta::Cache>>>,
    /// per rule, the scan call it last ran in
    last_used: Vec<u64>,
    /// scan calls so far
    calls: u64,
    /// the rules that ran in this call
    used_now: Vec<u32>,
    /// per rule, its cache's size when last measured (0 without a cache)
    counted: Vec<usize>,
    /// the sum of `counted`
    total: usize,
    /// how many caches there are
    present: usize,
    /// the most the caches may hold together, if not [`REGEX_CACHE_BUDGET`]
    budget: Option<usize>,
    slots: Vec<Option<regex_automata::util::primitives::NonMaxUsize>>,
    /// whether the line the rules run on is a test-runner result line, once
    /// a generic rule asked (several usually run on the same line)
    test_report_line: Option<bool>,
    /// where the line's keywords of the rule being run start, for an anchored search
    keyword_starts: Vec<usize>,
}

/// How many of a line's keywords a rule's regex is tried at, anchored, before the rest of the
/// line is searched whole (see [`Detector::apply_rule`]).
pub(crate) const MAX_ANCHORED_TRIES: usize = 8;

/// See [`RegexScratch`]. The busy rules of the bench corpus (those that run
/// on more than a thousand lines of 256 MiB) need about 2 MiB. Against 6 MiB,
/// 3 MiB lowered the agent's peak RSS by 3 MiB at the same CPU, in the
/// pipeline and in `scan`.
const REGEX_CACHE_BUDGET: usize = 3 << 20;

impl RegexScratch {
    /// At the end of a call: measures the caches of the rules that ran (only
    /// they can have grown) and, while over budget, drops the caches of the
    /// rules that ran longest ago. Those of this call stay, so it is over
    /// budget only by what they hold.
    fn enforce_budget(&mut self) {
        // (a scan that panicked left its rules here; they may have run again since)
        self.used_now.sort_unstable();
        self.used_now.dedup();
        let ran = self.used_now.len();
        for r in self.used_now.drain(..) {
            let r = r as usize;
            let now = self.caches[r].as_ref().map_or(0, |c| c.memory_usage());
            self.total = self.total - self.counted[r] + now;
            self.counted[r] = now;
        }
        let budget = self.budget.unwrap_or(REGEX_CACHE_BUDGET);
        // (each rule that ran has a cache; without others, there is nothing to look for)
        while self.total > budget && self.present > ran {
            let Some(oldest) = (0..self.caches.len())
                .filter(|&r| self.caches[r].is_some() && self.last_used[r] < self.calls)
                .min_by_key(|&r| self.last_used[r])
            else {
                break;
            };
            self.caches[oldest] = None;
            self.present -= 1;
            self.total -= std::mem::take(&mut self.counted[oldest]);
        }
    }

    /// Marks a rule as run in this call.
    fn used(&mut self, rule: u32) {
        if self.last_used[rule as usize] != self.calls {
            self.last_used[rule as usize] = self.calls;
            self.used_now.push(rule);
        }
    }
}

impl Scratch {
    pub fn new() -> Self {
        Self::default()
    }

    /// A scratch whose regex caches may together hold `bytes` rather than
    /// [`REGEX_CACHE_BUDGET`]: for a one-shot scan that trades memory for
    /// fewer rebuilt caches.
    pub fn with_regex_cache_budget(bytes: usize) -> Self {
        let mut scratch = Self::default();
        scratch.regexes.budget = Some(bytes);
        scratch
    }

    fn for_detector(&mut self, detector: &Detector) {
        if self.detector != detector.id || self.regexes.caches.len() != detector.rules.len() {
            self.detector = detector.id;
            self.regexes.caches.clear();
            self.regexes
                .caches
                .resize_with(detector.rules.len(), || None);
            self.regexes.last_used = vec![0; detector.rules.len()];
            self.regexes.counted = vec![0; detector.rules.len()];
            self.regexes.total = 0;
            self.regexes.present = 0;
            self.regexes.used_now.clear();
        }
    }
}

/// A line holding keywords, `input[s..e]`, and the prefilter's hits in it.
struct Line<'a> {
    s: usize,
    e: usize,
    hits: &'a [(usize, u32)],
}

impl fmt::Debug for Scratch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scratch")
            .field("caches", &self.regexes.caches.iter().flatten().count())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Detector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Detector")
            .field("rules", &self.rules.len())
            .field("keywords", &self.kw_rules.len())
            .field("always_rules", &self.always.len())
            .field("allowlist", &self.allowlist.len())
            .field("known", &self.known)
            .finish()
    }
}

impl Detector {
    pub fn new(cfg: &DetectorConfig) -> Result<Self, DetectError> {
        let mut specs = rules::builtin_rule_specs();
        specs.extend(cfg.extra_rules.iter().cloned());
        let mut seen = std::collections::HashSet::new();
        for s in &specs {
            if !seen.insert(s.id.clone()) {
                return Err(DetectError::InvalidRule {
                    id: s.id.clone(),
                    field: "id",
                    message: "duplicate rule id".into(),
                });
            }
        }
        for d in &cfg.disable_rules {
            if !seen.contains(d) {
                return Err(DetectError::UnknownRule(d.clone()));
            }
        }
        let builtin = specs.len() - cfg.extra_rules.len();
        let mut compiled = Vec::with_capacity(specs.len());
        for (i, s) in specs.iter().enumerate() {
            if cfg.disable_rules.contains(&s.id) {
                continue;
            }
            let mut rule = if i < builtin {
                rules::compile_builtin_rule(s)?
            } else {
                rules::compile_rule(s)?
            };
            if let Some(capacity) = cfg.lazy_dfa_capacity {
                rule.regex.set_lazy_dfa_capacity(capacity);
            }
            compiled.push(rule);
        }
        let mut allowlist = Vec::new();
        for (i, a) in cfg.allowlist.iter().enumerate() {
            allowlist.push(
                RegexBuilder::new(a)
                    .unicode(false)
                    .size_limit(1 << 20)
                    .build()
                    .map_err(|e| DetectError::Allowlist {
                        index: i,
                        message: e.to_string(),
                    })?,
            );
        }
        let fp = Fingerprinter::new(&cfg.fingerprint_key);
        Ok(Self::from_parts(compiled, allowlist, fp))
    }

    fn from_parts(rules: Vec<Rule>, allowlist: Vec<Regex>, fp: Fingerprinter) -> Self {
        let mut kw_index: std::collections::HashMap<String, usize> =
            std::collections::HashMap::new();
        let mut kws: Vec<String> = Vec::new();
        let mut kw_rules: Vec<Vec<u32>> = Vec::new();
        let mut always = Vec::new();
        for (ri, r) in rules.iter().enumerate() {
            if r.keywords.is_empty() {
                always.push(ri as u32);
            }
            for k in &r.keywords {
                let idx = *kw_index.entry(k.clone()).or_insert_with(|| {
                    kws.push(k.clone());
                    kw_rules.push(Vec::new());
                    kws.len() - 1
                });
                if !kw_rules[idx].contains(&(ri as u32)) {
                    kw_rules[idx].push(ri as u32);
                }
            }
        }
        let prefilter = prefilter::Prefilter::new(&kws);
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Detector {
            prefilter,
            known: KnownValues::new(fp.clone()),
            rules,
            kw_rules,
            always,
            allowlist,
            fp,
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            scratch: Pool::new(Box::new(Scratch::new)),
        }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Keyed fingerprint of a secret (same key as findings and known values).
    pub fn fingerprint(&self, secret: &[u8]) -> Fingerprint {
        self.fp.fingerprint(secret)
    }

    pub fn fingerprinter(&self) -> &Fingerprinter {
        &self.fp
    }

    /// An empty known-value set using this detector's fingerprint key.
    pub fn new_known_values(&self) -> KnownValues {
        KnownValues::new(self.fp.clone())
    }

    /// Known values consulted by [`Detector::scan`].
    pub fn known_values(&self) -> &KnownValues {
        &self.known
    }

    pub fn known_values_mut(&mut self) -> &mut KnownValues {
        &mut self.known
    }

    pub fn set_known_values(&mut self, kv: KnownValues) {
        self.known = kv;
    }

    /// Scans `input` (one line, or a block of `\n`-separated lines; any bytes) and appends findings
    /// with ranges relative to `input`. Uses the detector's own known values.
    pub fn scan(&self, input: &[u8], out: &mut Vec<Finding>) {
        self.scan_with(input, Some(&self.known), out)
    }

    /// Like [`Detector::scan`] but with an explicit known-value set (or none), so the agent can
    /// keep the detector in an `Arc` and swap known values independently.
    ///
    /// Inputs larger than [`SCAN_WINDOW`] are processed window by window (cut at a newline when
    /// the window holds one), so working memory stays bounded for any input; a secret straddling
    /// the cut of a single line longer than the window can be missed.
    pub fn scan_with(&self, input: &[u8], known: Option<&KnownValues>, out: &mut Vec<Finding>) {
        self.scan_in(&mut self.scratch.get(), input, known, out)
    }

    /// Like [`Detector::scan_with`], with the caller's own [`Scratch`].
    pub fn scan_in(
        &self,
        scratch: &mut Scratch,
        input: &[u8],
        known: Option<&KnownValues>,
        out: &mut Vec<Finding>,
    ) {
        scratch.for_detector(self);
        scratch.regexes.calls += 1;
        let limit = out.len() + MAX_FINDINGS_PER_CALL;
        let mut start = 0;
        while start < input.len() || (start == 0 && input.is_empty()) {
            let mut end = (start + SCAN_WINDOW).min(input.len());
            if end < input.len()
                && let Some(p) = memchr::memrchr(b'\n', &input[start..end])
                && p > 0
            {
                end = start + p + 1;
            }
            let base = out.len();
            self.scan_window(scratch, &input[start..end], known, out, limit);
            if start > 0 {
                for f in &mut out[base..] {
                    f.range = f.range.start + start..f.range.end + start;
                }
            }
            if out.len() >= limit || end >= input.len() {
                break;
            }
            start = end;
        }
        scratch.regexes.enforce_budget();
    }

    fn scan_window(
        &self,
        scratch: &mut Scratch,
        input: &[u8],
        known: Option<&KnownValues>,
        out: &mut Vec<Finding>,
        limit: usize,
    ) {
        let base = out.len();
        let words = self.rules.len().div_ceil(64);
        // candidate-rule bitset: on the stack for up to 1024 rules
        let mut small = [0u64; 16];
        let mut heap = Vec::new();
        let cand: &mut [u64] = if words <= small.len() {
            &mut small[..words]
        } else {
            heap.resize(words, 0u64);
            &mut heap[..]
        };
        if !self.kw_rules.is_empty() {
            // stage 1: exact keyword occurrences (4-gram bitmap + in-place verification, see
            // `prefilter`); stage 2: per line holding keywords, the regexes of the rules owning
            // them. Lines without keywords cost only the bitmap scan.
            let Scratch {
                regexes,
                hits,
                touched,
                ..
            } = scratch;
            hits.clear();
            touched.clear();
            self.prefilter.find_all(input, hits);
            let mut cur: Option<(usize, usize)> = None;
            let mut line_hits = 0;
            for (i, &(st, kw)) in hits.iter().enumerate() {
                let in_cur = matches!(cur, Some((s, e)) if st >= s && st < e);
                if !in_cur {
                    if let Some((s, e)) = cur {
                        let line = Line {
                            s,
                            e,
                            hits: &hits[line_hits..i],
                        };
                        self.run_line(regexes, input, line, touched, cand, out, limit);
                        if out.len() >= limit {
                            break;
                        }
                    }
                    cur = Some((lines::line_start(input, st), lines::line_end(input, st)));
                    line_hits = i;
                }
                for &r in &self.kw_rules[kw as usize] {
                    let (w, b) = ((r / 64) as usize, r % 64);
                    if cand[w] & (1 << b) == 0 {
                        cand[w] |= 1 << b;
                        touched.push(r);
                    }
                }
            }
            if let Some((s, e)) = cur {
                let line = Line {
                    s,
                    e,
                    hits: &hits[line_hits..],
                };
                self.run_line(regexes, input, line, touched, cand, out, limit);
            }
        }
        if !self.always.is_empty() {
            let mut s = 0;
            for e in memchr::memchr_iter(b'\n', input).chain(std::iter::once(input.len())) {
                if e >= s {
                    scratch.regexes.test_report_line = None;
                    for &r in &self.always {
                        let line = s..e;
                        self.apply_rule(&mut scratch.regexes, r, input, line, &[], out, limit);
                    }
                }
                s = e + 1;
            }
        }
        if let Some(k) = known
            && !k.is_empty()
        {
            k.scan(input, out, limit);
        }
        if out.len() - base > 1 {
            self.dedupe(out, base);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn run_line(
        &self,
        regexes: &mut RegexScratch,
        input: &[u8],
        line: Line<'_>,
        touched: &mut Vec<u32>,
        cand: &mut [u64],
        out: &mut Vec<Finding>,
        limit: usize,
    ) {
        regexes.test_report_line = None;
        for &r in touched.iter() {
            cand[(r / 64) as usize] &= !(1 << (r % 64));
            self.apply_rule(regexes, r, input, line.s..line.e, line.hits, out, limit);
        }
        touched.clear();
    }

    /// Runs a rule on the line `input[line]`, where `hits` are the prefilter's hits (empty for
    /// a rule without keywords). Returns whether its regex ran: the cheaper checks before it
    /// can turn the line away.
    #[allow(clippy::too_many_arguments)]
    fn apply_rule(
        &self,
        regexes: &mut RegexScratch,
        rule_index: u32,
        input: &[u8],
        line: Range<usize>,
        hits: &[(usize, u32)],
        out: &mut Vec<Finding>,
        limit: usize,
    ) -> bool {
        let rule = &self.rules[rule_index as usize];
        let ls = line.start;
        let line = &input[line];
        // where the rule's keywords start in the line (hits come in the order of the grams
        // that found them, not always by start)
        let keyword_starts = || {
            hits.iter()
                .filter(|(_, kw)| self.kw_rules[*kw as usize].contains(&rule_index))
                .map(|(st, _)| st - ls)
        };
        if !rule.required.iter().all(|r| r.find(line).is_some()) {
            return false;
        }
        if !rule.required_after_keyword.is_empty() {
            let first_keyword = keyword_starts().min().unwrap_or(0);
            let after = &line[first_keyword..];
            if !rule
                .required_after_keyword
                .iter()
                .any(|r| r.find(after).is_some())
            {
                return false;
            }
        }
        if let Some(assignment) = &rule.assignment
            && !keyword_starts().any(|at| assignment.follows(line, at))
        {
            return false;
        }
        // Generic rules take nothing from test-runner result lines; asking
        // before the regex runs spares it the lines that flood CI logs.
        if rule.generic
            && *regexes
                .test_report_line
                .get_or_insert_with(|| filters::is_test_report_line(line))
        {
            return false;
        }
        let regex = rule.regex.get();
        regexes.used(rule_index);
        let cache = regexes.caches[rule_index as usize].get_or_insert_with(|| {
            regexes.present += 1;
            Box::new(regex.create_cache())
        });
        let slots = &mut regexes.slots;
        slots.clear();
        slots.resize(regex.group_info().slot_len(), None);
        let group = |slots: &[Option<regex_automata::util::primitives::NonMaxUsize>], g: usize| {
            Some((
                slots.get(2 * g)?.as_ref()?.get(),
                slots.get(2 * g + 1)?.as_ref()?.get(),
            ))
        };
        // A match of a rule that `starts_at_keyword` begins where one of its keywords does:
        // the regex is tried anchored there, in order, instead of over the whole line. A try
        // reads at most the regex's longest match (to the end of the line for `[a-z]+`), and
        // after `MAX_ANCHORED_TRIES` the rest of the line is searched unanchored from the next
        // keyword (no match starts before it): a line costs at most that many reads plus one.
        let starts = &mut regexes.keyword_starts;
        starts.clear();
        let mut anchored = !hits.is_empty() && rule.regex.starts_at_keyword();
        if anchored {
            starts.extend(keyword_starts());
            starts.sort_unstable();
            starts.dedup();
        }
        let mut next_start = 0;
        let mut tries = 0;
        let mut at = 0;
        while at <= line.len() && out.len() < limit {
            if anchored {
                let Some(k) = starts[next_start..].iter().position(|&st| st >= at) else {
                    break;
                };
                at = starts[next_start + k];
                next_start += k + 1;
                tries += 1;
                anchored = tries <= MAX_ANCHORED_TRIES;
            }
            let input = if anchored {
                regex_automata::Input::new(line)
                    .span(at..line.len())
                    .anchored(regex_automata::Anchored::Yes)
            } else {
                regex_automata::Input::new(line).span(at..line.len())
            };
            if regex.search_slots_with(cache, &input, slots).is_none() {
                if anchored {
                    continue;
                }
                break;
            }
            let (start, end) = group(slots, 0).expect("a match has its overall span");
            at = if end > start { end } else { end + 1 };
            let span = match rule.regex.secret_group() {
                Some(g) => group(slots, g),
                None => (1..slots.len() / 2).find_map(|g| group(slots, g)),
            }
            .unwrap_or((start, end));
            let (mut s, mut e) = span;
            // trim escaped-quote residue and whitespace around the value
            while e > s && (line[e - 1] == b'\\' || line[e - 1].is_ascii_whitespace()) {
                e -= 1;
            }
            while s < e && line[s].is_ascii_whitespace() {
                s += 1;
            }
            if e <= s {
                continue;
            }
            let secret = &line[s..e];
            if !self.accept(rule, secret, line, s) {
                continue;
            }
            let mut confidence = rule.confidence;
            let mut checksum_valid = None;
            if let Some(v) = rule.validator {
                let ok = v.check(secret);
                if v.required() {
                    if !ok {
                        continue;
                    }
                } else {
                    checksum_valid = Some(ok);
                    if !ok && confidence == Confidence::High {
                        confidence = Confidence::Medium;
                    }
                }
            }
            out.push(Finding {
                rule_id: rule.id.clone(),
                rule_name: rule.name.clone(),
                family: rule.family.clone(),
                confidence,
                range: ls + s..ls + e,
                fingerprint: self.fp.fingerprint(secret),
                checksum_valid,
                method: Method::Pattern,
            });
        }
        true
    }

    fn accept(&self, rule: &Rule, secret: &[u8], line: &[u8], start: usize) -> bool {
        if filters::is_placeholder(secret) {
            return false;
        }
        if rule.ci_filter && filters::is_ci_identifier(secret) {
            return false;
        }
        if self.allowlist.iter().any(|a| a.is_match(secret)) {
            return false;
        }
        if rule.generic {
            // (test report lines were skipped before the regex ran)
            if filters::is_reference_or_code(secret)
                || filters::is_hash_in_hash_context(secret, line)
            {
                return false;
            }
            if secret.contains(&b' ') {
                return false;
            }
            if let Some(c) = memchr::memchr(b':', secret) {
                let tail = &secret[c + 1..];
                if !tail.is_empty()
                    && (filters::is_placeholder(tail) || filters::is_reference_or_code(tail))
                {
                    return false;
                }
            }
            if filters::key_is_stopword(line, start) {
                return false;
            }
            // value separated from a word-like key by whitespace only ("password hunter2",
            // "password is x"): demand a digit or mixed case so prose ("password for user") is skipped
            let quoted = start > 0 && matches!(line[start - 1], b'"' | b'\'' | b'`');
            if !quoted {
                let mut j = start;
                while j > 0 && line[j - 1].is_ascii_whitespace() {
                    j -= 1;
                }
                while j > 0 && matches!(line[j - 1], b'"' | b'\'' | b'`') {
                    j -= 1;
                }
                let word_len = line[..j]
                    .iter()
                    .rev()
                    .take_while(|b| b.is_ascii_alphanumeric())
                    .count();
                if j < start && word_len >= 3 {
                    let digit = secret.iter().any(|b| b.is_ascii_digit());
                    let mixed = secret.iter().any(|b| b.is_ascii_lowercase())
                        && secret.iter().any(|b| b.is_ascii_uppercase());
                    if !(digit || mixed) {
                        return false;
                    }
                }
            }
        }
        if let Some(min) = rule.min_entropy
            && !filters::entropy_ok(secret, min)
        {
            return false;
        }
        true
    }

    fn is_generic_rule(&self, id: &str) -> bool {
        self.rules.iter().any(|r| r.generic && &*r.id == id)
    }

    /// Drops exact duplicates and findings contained in a higher-ranked finding (provider rule over
    /// generic rule, higher confidence over lower); equal-rank findings on the same range are kept
    /// (different providers sharing a token shape). Leaves `out[base..]` sorted by start.
    fn dedupe(&self, out: &mut Vec<Finding>, base: usize) {
        let mut v: Vec<(Finding, (u8, u8, Confidence))> = out
            .drain(base..)
            .map(|f| {
                let g = self.is_generic_rule(&f.rule_id);
                let r = f.rank(g);
                (f, r)
            })
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.range.len().cmp(&a.0.range.len())));
        let mut kept: Vec<(Finding, (u8, u8, Confidence))> = Vec::with_capacity(v.len());
        for (f, r) in v {
            let dominated = kept.iter().any(|(k, kr)| {
                let contains = k.range.start <= f.range.start && f.range.end <= k.range.end;
                let overlaps = k.range.start < f.range.end && f.range.start < k.range.end;
                (k.rule_id == f.rule_id && overlaps)
                    || (contains && (*kr > r || k.range != f.range && kr.0 == r.0 && kr.1 == r.1))
                    || (overlaps && r.1 == 0 && kr.1 == 1)
            });
            if !dominated {
                kept.push((f, r));
            }
        }
        kept.sort_by_key(|(f, _)| (f.range.start, f.range.end));
        out.extend(kept.into_iter().map(|(f, _)| f));
    }

    /// Profiling aid: number of keyword-prefilter hits in `input`.
    #[doc(hidden)]
    pub fn keyword_hits(&self, input: &[u8]) -> usize {
        let mut hits = Vec::new();
        self.prefilter.find_all(input, &mut hits);
        hits.len()
    }

    /// Profiling aid: per rule, time spent, lines tried, lines its regex ran on and the size
    /// its regex cache grew to when scanning `input`.
    #[doc(hidden)]
    pub fn profile_rules(&self, input: &[u8]) -> Vec<RuleProfile> {
        let mut stats = vec![(0u128, 0usize, 0usize); self.rules.len()];
        let mut scratch = Scratch::new();
        scratch.for_detector(self);
        let mut hits = Vec::new();
        self.prefilter.find_all(input, &mut hits);
        let mut out = Vec::new();
        let mut at = 0;
        while at < hits.len() {
            let st = hits[at].0;
            let (s, e) = (lines::line_start(input, st), lines::line_end(input, st));
            // the rules of the line's keywords
            let mut rules = std::collections::BTreeSet::new();
            let first_hit = at;
            while at < hits.len() && hits[at].0 < e {
                rules.extend(&self.kw_rules[hits[at].1 as usize]);
                at += 1;
            }
            let line_hits = &hits[first_hit..at];
            scratch.regexes.test_report_line = None;
            for r in rules {
                let t = std::time::Instant::now();
                let regexes = &mut scratch.regexes;
                let ran = self.apply_rule(regexes, r, input, s..e, line_hits, &mut out, usize::MAX);
                let rule = &mut stats[r as usize];
                rule.0 += t.elapsed().as_nanos();
                rule.1 += 1;
                rule.2 += usize::from(ran);
            }
        }
        self.rules
            .iter()
            .zip(stats)
            .zip(&scratch.regexes.caches)
            .map(|((r, (nanos, lines, regex_runs)), cache)| RuleProfile {
                id: r.id.to_string(),
                nanos,
                lines,
                regex_runs,
                cache_bytes: cache.as_ref().map_or(0, |c| c.memory_usage()),
            })
            .collect()
    }

    /// Returns a copy of `input` with every finding's range replaced by its marker
    /// `[REDACTED:<rule-id>:<fp12>]`. Overlapping or touching ranges are merged into one marker
    /// (named after the highest-priority finding in the group). Ranges beyond `input` are clipped.
    pub fn redact(&self, input: &[u8], findings: &[Finding]) -> Vec<u8> {
        redact(input, findings)
    }
}

/// One rule's share of a scan, from [`Detector::profile_rules`].
#[doc(hidden)]
#[derive(Debug)]
pub struct RuleProfile {
    pub id: String,
    pub nanos: u128,
    pub lines: usize,
    /// the lines that passed the rule's cheaper checks
    pub regex_runs: usize,
    pub cache_bytes: usize,
}

/// See [`Detector::redact`].
pub fn redact(input: &[u8], findings: &[Finding]) -> Vec<u8> {
    let mut fs: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.range.start < f.range.end && f.range.start < input.len())
        .collect();
    if fs.is_empty() {
        return input.to_vec();
    }
    fs.sort_by_key(|f| (f.range.start, std::cmp::Reverse(f.range.end)));
    let mut out = Vec::with_capacity(input.len() + fs.len() * 40);
    let mut pos = 0;
    let mut i = 0;
    while i < fs.len() {
        let start = fs[i].range.start.max(pos);
        let mut end = fs[i].range.end.min(input.len());
        let mut best = fs[i];
        let mut j = i + 1;
        while j < fs.len() && fs[j].range.start <= end {
            end = end.max(fs[j].range.end.min(input.len()));
            if fs[j].priority() > best.priority() {
                best = fs[j];
            }
            j += 1;
        }
        out.extend_from_slice(&input[pos..start]);
        out.extend_from_slice(best.marker().as_bytes());
        pos = end.max(start);
        i = j;
    }
    out.extend_from_slice(&input[pos.min(input.len())..]);
    out
}

#[allow(dead_code)]
fn assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Detector>();
    is::<KnownValues>();
    is::<Finding>();
}
