use super::*;

fn det() -> Detector {
    Detector::new(&DetectorConfig {
        fingerprint_key: "test-fleet".into(),
        ..Default::default()
    })
    .unwrap()
}

fn shared_det() -> &'static Detector {
    static D: std::sync::OnceLock<Detector> = std::sync::OnceLock::new();
    D.get_or_init(det)
}

/// A start does not build the built-in regexes to check them (see
/// `rules::LazyRegex`); this does, with the checks a user's rule gets.
#[test]
fn every_builtin_rule_compiles() {
    for spec in rules::builtin_rule_specs() {
        let rule = rules::compile_rule(&spec).unwrap_or_else(|e| panic!("{e}"));
        let named = spec.regex.contains("(?P<secret>") || spec.regex.contains("(?<secret>");
        assert_eq!(rule.regex.secret_group().is_some(), named, "{}", spec.id);
    }
}

#[test]
fn lazy_dfa_capacity_reaches_every_rule() {
    let d = Detector::new(&DetectorConfig {
        fingerprint_key: "k".into(),
        lazy_dfa_capacity: Some(5 << 20),
        ..Default::default()
    })
    .unwrap();
    let capacity = |rule: &rules::Rule| rule.regex.get().get_config().get_hybrid_cache_capacity();
    assert!(d.rules().iter().all(|r| capacity(r) == 5 << 20));
    assert_eq!(capacity(&shared_det().rules()[0]), rules::LAZY_DFA_CAPACITY);
}

#[test]
fn at_least_150_rules() {
    assert!(
        shared_det().rules().len() >= 150,
        "{}",
        shared_det().rules().len()
    );
}

#[test]
fn every_rule_examples_and_counter_examples() {
    let d = shared_det();
    let mut failures = Vec::new();
    for r in d.rules() {
        if r.spec.examples.is_empty() {
            failures.push(format!("{}: no examples", r.id));
        }
        for ex in &r.spec.examples {
            let mut out = Vec::new();
            d.scan(ex.as_bytes(), &mut out);
            if !out.iter().any(|f| f.rule_id == r.id) {
                let got: Vec<_> = out.iter().map(|f| f.rule_id.to_string()).collect();
                failures.push(format!(
                    "{}: example not matched: {:?} (got {:?})",
                    r.id, ex, got
                ));
            }
            // the redacted line must not contain the captured secret any more
            let red = d.redact(ex.as_bytes(), &out);
            for f in &out {
                let secret = &ex.as_bytes()[f.range.clone()];
                if secret.len() >= 8 && memchr::memmem::find(&red, secret).is_some() {
                    failures.push(format!("{}: secret survives redaction", r.id));
                }
            }
        }
        for ce in &r.spec.counter_examples {
            let mut out = Vec::new();
            d.scan(ce.as_bytes(), &mut out);
            if out.iter().any(|f| f.rule_id == r.id) {
                failures.push(format!("{}: counter-example matched: {:?}", r.id, ce));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn github_checksum_sets_flag() {
    let d = shared_det();
    let ex = &d
        .rules()
        .iter()
        .find(|r| &*r.id == "github-pat")
        .unwrap()
        .spec
        .examples[0];
    let mut out = Vec::new();
    d.scan(ex.as_bytes(), &mut out);
    let f = out.iter().find(|f| &*f.rule_id == "github-pat").unwrap();
    assert_eq!(f.checksum_valid, Some(true));
    assert_eq!(f.confidence, Confidence::High);
}

#[test]
fn user_rule_errors_name_id_and_field() {
    let mut spec = shared_det().rules()[0].spec.clone();
    spec.id = "my-rule".into();
    spec.regex = "(unclosed".into();
    let e = Detector::new(&DetectorConfig {
        extra_rules: vec![spec.clone()],
        ..Default::default()
    })
    .unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("my-rule") && msg.contains("regex"), "{msg}");
    spec.regex = "foo(bar)".into();
    spec.validator = Some("nope".into());
    let msg = Detector::new(&DetectorConfig {
        extra_rules: vec![spec.clone()],
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(
        msg.contains("my-rule") && msg.contains("validator"),
        "{msg}"
    );
    spec.validator = None;
    spec.requires_after_keyword = vec![String::new()];
    let msg = Detector::new(&DetectorConfig {
        extra_rules: vec![spec.clone()],
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(
        msg.contains("my-rule") && msg.contains("requires_after_keyword"),
        "{msg}"
    );
    spec.requires_after_keyword = vec![];
    for (assignment, keywords, says) in [
        ("", vec!["foo".to_string()], "lists no byte"),
        (
            "=_",
            vec!["foo".to_string()],
            "'_' cannot begin an assignment",
        ),
        (
            "\"",
            vec!["foo".to_string()],
            "'\\\"' cannot begin an assignment",
        ),
        (
            "=\u{e9}",
            vec!["foo".to_string()],
            "'\\xc3' cannot begin an assignment",
        ),
        ("=", vec![], "needs keywords"),
        (
            "=",
            vec!["foo".to_string(), "$token".to_string()],
            "keyword \"$token\" begins with a byte other than",
        ),
    ] {
        spec.assignment_after_keyword = Some(assignment.into());
        spec.keywords = keywords;
        let msg = Detector::new(&DetectorConfig {
            extra_rules: vec![spec.clone()],
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(
            msg.contains("my-rule")
                && msg.contains("assignment_after_keyword")
                && msg.contains(says),
            "{msg}"
        );
    }
    let msg = rules::parse_rules_toml("[[rule]]\nid = 'x'\n")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("missing field"), "{msg}");
}

/// A user rule with the given id, regex and keywords, and every optional field unset.
fn user_rule(id: &str, regex: &str, keywords: &[&str]) -> RuleSpec {
    RuleSpec {
        id: id.into(),
        name: format!("test rule {id}"),
        family: "test".into(),
        confidence: Confidence::High,
        regex: regex.into(),
        keywords: keywords.iter().map(|k| k.to_string()).collect(),
        requires: vec![],
        requires_after_keyword: vec![],
        assignment_after_keyword: None,
        validator: None,
        min_entropy: None,
        ci_filter: None,
        generic: false,
        examples: vec![],
        counter_examples: vec![],
    }
}

/// The built-in rules and `spec`.
fn with_rule(spec: RuleSpec) -> Detector {
    Detector::new(&DetectorConfig {
        extra_rules: vec![spec],
        ..Default::default()
    })
    .unwrap()
}

/// What the rule `id` reports in `line`.
fn secrets_of<'a>(d: &Detector, id: &str, line: &'a [u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    d.scan(line, &mut out);
    out.iter()
        .filter(|f| &*f.rule_id == id)
        .map(|f| &line[f.range.clone()])
        .collect()
}

/// `d` with every rule's regex searched over the whole line, never anchored.
fn searching_whole_lines(mut d: Detector) -> Detector {
    for rule in &mut d.rules {
        rule.regex.never_anchor();
    }
    d
}

/// The lines on which `a` and `b` report different findings (rule and range).
fn lines_found_differently<'a>(a: &Detector, b: &Detector, lines: &'a [String]) -> Vec<&'a str> {
    let findings = |d: &Detector, line: &str| {
        let mut out = Vec::new();
        d.scan(line.as_bytes(), &mut out);
        out.into_iter()
            .map(|f| (f.rule_id, f.range))
            .collect::<Vec<_>>()
    };
    lines
        .iter()
        .map(String::as_str)
        .filter(|line| findings(a, line) != findings(b, line))
        .collect()
}

/// A context rule whose matches begin with its keyword.
fn ctx_word_rule() -> RuleSpec {
    user_rule(
        "ctx-word",
        r"(?i)ctxword[a-z_]{0,5}\s*=\s*([a-z]{10})",
        &["ctxword"],
    )
}

#[test]
fn user_rules_and_allowlist() {
    let spec = user_rule("acme-internal", r"\b(acme_[a-z0-9]{20})\b", &["acme_"]);
    let cfg = DetectorConfig {
        fingerprint_key: "k".into(),
        extra_rules: vec![spec],
        allowlist: vec!["^acme_allowed".into()],
        disable_rules: vec!["jwt".into()],
        lazy_dfa_capacity: None,
    };
    let d = Detector::new(&cfg).unwrap();
    let mut out = Vec::new();
    d.scan(b"token acme_q8zr4lmt0pxc2vbnk7wd here", &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(&*out[0].rule_id, "acme-internal");
    out.clear();
    d.scan(b"token acme_allowedq8zr4lmt0pxc2 here", &mut out);
    assert!(out.is_empty());
    assert!(d.rules().iter().all(|r| &*r.id != "jwt"));
}

#[test]
fn requires_after_keyword_looks_after_the_first_keyword() {
    let spec = RuleSpec {
        // two literals: any one will do
        requires_after_keyword: vec!["=".into(), "=>".into()],
        // matches without the required literal, so only the filter can reject a line
        ..user_rule(
            "acme-after",
            r"(?i)(?:acmekey|acmetok)\W+(q[a-z0-9]{15})",
            &["acmekey", "acmetok"],
        )
    };
    let d = with_rule(spec);
    let found = |line: &str| !secrets_of(&d, "acme-after", line.as_bytes()).is_empty();
    assert!(found("ACMEKEY = q8zr4lmt0pxc2vbnk"));
    // after the first keyword in the line, not after every keyword
    assert!(found("acmetok = q8zr4lmt0pxc2vbnk acmekey"));
    assert!(!found("acmekey q8zr4lmt0pxc2vbnk"));
    assert!(!found("x = 1; acmekey q8zr4lmt0pxc2vbnk"));
}

#[test]
fn requires_after_keyword_counts_from_the_earliest_keyword_in_any_hit_order() {
    // `the=jqxz` is found through its rarest gram, `jqxz` at 4, so after `e=jq`, a keyword of
    // the same rule found at 2: the rule's first keyword still starts at 0, and the required
    // `h` at 1 is after it.
    let spec = RuleSpec {
        requires_after_keyword: vec!["h".into()],
        ..user_rule(
            "hit-order",
            r"the=jqxz (q[a-z0-9]{15})",
            &["the=jqxz", "e=jq"],
        )
    };
    let d = with_rule(spec);
    for line in [
        "the=jqxz q8zr4lmt0pxc2vbnk",
        "the=jqxz q8zr4lmt0pxc2vbnk padding to 64 bytes",
    ] {
        let found = secrets_of(&d, "hit-order", line.as_bytes());
        assert!(!found.is_empty(), "{line}");
    }
}

/// Every name `generic-secret`'s regex accepts, with each suffix, quote and operator it
/// allows, on a line of its own: built from the regex's alternatives in `tools/genrules.py`.
fn generic_secret_assignments() -> Vec<String> {
    let value = "Zq8rT4lM0pXc2VbNk7Wd3sHy";
    let separated = [
        "api",
        "access",
        "private",
        "auth",
        "client",
        "signing",
        "encryption",
        "master",
        "sas",
    ];
    let mut names: Vec<String> = vec![
        "secret".into(),
        "token".into(),
        "apikey".into(),
        "credential".into(),
        "credentials".into(),
        "jwt".into(),
    ];
    for first in separated {
        let second = if first == "client" { "secret" } else { "key" };
        for joint in ["", "_", "-", "."] {
            names.push(format!("{first}{joint}{second}"));
        }
    }
    let suffixes = [
        "", "_x", "-x", ".x", "_a.b-c", "key", "value", "id", "str", "b64", "hex",
    ];
    let before_operator = ["", "\"", "'", "\\", " ", "\t", "\x0b", "\x0c", "\r", "\"' "];
    let operators = ["=", ":=", "::", ":", "=>", "==", "!=", "?=", ","];
    let mut lines = Vec::new();
    for name in &names {
        for suffix in suffixes {
            for between in before_operator {
                for op in operators {
                    lines.push(format!("{name}{suffix}{between}{op}{value}"));
                }
            }
        }
    }
    // upper case, and a line prefix
    let more: Vec<String> = lines
        .iter()
        .step_by(7)
        .flat_map(|l| {
            [
                l.to_ascii_uppercase(),
                format!("2026-11-22T10:00:00.123Z export {l}"),
            ]
        })
        .collect();
    lines.extend(more);
    lines
}

#[test]
fn generic_secret_keywords_cover_every_name_its_regex_accepts() {
    // `access.key=...`, `sas-key=...`, `jwtkey=...` and others were never tried before their
    // keywords were added; with `requires_after_keyword`, a name without a keyword would
    // also hide one later in the line. The rule runs alone, so that no higher-ranked rule's
    // finding (`api-key-header`...) stands for it.
    let only = Detector::new(&DetectorConfig {
        disable_rules: shared_det()
            .rules()
            .iter()
            .map(|r| r.id.to_string())
            .filter(|id| id != "generic-secret")
            .collect(),
        ..Default::default()
    })
    .unwrap();
    for line in generic_secret_assignments() {
        let mut out = Vec::new();
        only.scan(line.as_bytes(), &mut out);
        assert!(
            out.iter().any(|f| &*f.rule_id == "generic-secret"),
            "{line:?} not found: {out:?}"
        );
    }
}

/// Each context rule's `export NAME="value"` example with every operator its regex accepts
/// and what may stand between name and operator: its `assignment_after_keyword` must let all
/// of them through.
fn context_rule_assignments(d: &Detector) -> Vec<String> {
    let between = [
        "", "\"", "'", "\\", " ", "\t", "\x0b", "\x0c", "\r", "\" ", "' \t",
    ];
    let operators = ["=", ":=", "::=", ":", "=>", "?=", "||:", "<=", " ", "\t"];
    let mut lines = Vec::new();
    for rule in d.rules().iter().filter(|r| r.assignment.is_some()) {
        for example in &rule.spec.examples {
            let Some((name, value)) = example
                .strip_prefix("export ")
                .and_then(|e| e.split_once("=\""))
            else {
                continue;
            };
            let value = value.trim_end_matches('"');
            for b in between {
                for op in operators {
                    lines.push(format!("{name}{b}{op}{value}"));
                }
            }
            lines.push(format!("x {} {value}", name.to_ascii_lowercase()));
            // name characters before and after the keywords
            lines.push(format!("MY_{name}_2={value}"));
            lines.push(format!("ci.{name}-x\t'{value}'"));
            // the name first where no assignment follows it, then where one does
            lines.push(format!("{name}/x {name}={value}"));
        }
    }
    lines
}

#[test]
fn cheap_checks_before_the_regex_lose_no_finding() {
    let filtered = shared_det();
    let mut unfiltered = det();
    let (mut after_keyword, mut assignment) = (0, 0);
    for rule in &mut unfiltered.rules {
        after_keyword += usize::from(!rule.required_after_keyword.is_empty());
        rule.required_after_keyword.clear();
        assignment += usize::from(rule.assignment.take().is_some());
    }
    assert!(after_keyword >= 1, "npmrc-auth-token");
    assert!(assignment >= 188, "generic-secret and the context rules");
    let contexts = context_rule_assignments(filtered);
    assert!(contexts.len() > 180 * 90, "{}", contexts.len());
    let mut lines: Vec<String> = filtered
        .rules()
        .iter()
        .flat_map(|r| r.spec.examples.iter().chain(&r.spec.counter_examples))
        .cloned()
        .collect();
    lines.extend(generic_secret_assignments());
    // the operator before the name, or the name twice with it between
    lines.extend(
        generic_secret_assignments()
            .iter()
            .step_by(11)
            .flat_map(|l| {
                let (front, back) = l.split_at(l.len() / 2);
                [format!("{back} {front}"), format!("token {l} token")]
            }),
    );
    lines.extend(contexts);
    // agreement alone would also hold if neither found anything
    for rule in filtered.rules().iter().filter(|r| r.assignment.is_some()) {
        for example in &rule.spec.examples {
            let mut found = Vec::new();
            filtered.scan(example.as_bytes(), &mut found);
            assert!(
                found.iter().any(|f| f.rule_id == rule.id),
                "{} not found in its example",
                rule.id
            );
        }
    }
    let differ = lines_found_differently(filtered, &unfiltered, &lines);
    assert!(
        differ.is_empty(),
        "{} lines differ: {differ:?}",
        differ.len()
    );
}

#[test]
fn redaction_merges_and_marks() {
    let d = shared_det();
    let line = b"export GH=ghp_aaaa DATABASE_URL=postgres://u:Zq8rT4lM0pXc2VbN@db:5432/x";
    let mut out = Vec::new();
    d.scan(line, &mut out);
    let red = String::from_utf8(d.redact(line, &out)).unwrap();
    assert!(red.contains("[REDACTED:db-connection-url:"), "{red}");
    assert!(!red.contains("Zq8rT4lM0pXc2VbN"));
    // overlapping synthetic findings merge into one marker
    let f = |r: Range<usize>| Finding {
        rule_id: "a".into(),
        rule_name: "a".into(),
        family: "a".into(),
        confidence: Confidence::High,
        range: r,
        fingerprint: d.fingerprint(b"x"),
        checksum_valid: None,
        method: Method::Pattern,
    };
    let red = d.redact(b"0123456789", &[f(2..5), f(4..7), f(100..200)]);
    assert_eq!(red.iter().filter(|&&b| b == b'[').count(), 1);
    assert!(red.starts_with(b"01[REDACTED:a:"));
    assert!(red.ends_with(b"]789"));
}

#[test]
fn fingerprints_are_keyed() {
    let a = Detector::new(&DetectorConfig {
        fingerprint_key: "fleet-a".into(),
        ..Default::default()
    })
    .unwrap();
    let b = Detector::new(&DetectorConfig {
        fingerprint_key: "fleet-b".into(),
        ..Default::default()
    })
    .unwrap();
    assert_ne!(
        a.fingerprint(b"s3cr3t-value"),
        b.fingerprint(b"s3cr3t-value")
    );
    assert_eq!(a.fingerprint(b"s3cr3t-value").short().len(), 12);
    assert_eq!(a.fingerprint(b"s3cr3t-value").full_hex().len(), 64);
    let fp = a.fingerprint(b"s3cr3t-value");
    assert_eq!(Fingerprint::from_hex(&fp.full_hex()), Some(fp));
    assert!(!format!("{:?}", a).contains("fleet-a"));
}

#[test]
fn known_values_all_encodings() {
    use base64::Engine as _;
    let mut d = det();
    let secret = b"Zq8/rT4+lM0pXc2VbN!x";
    d.known_values_mut().register_plaintext(secret);
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut lines: Vec<Vec<u8>> = vec![secret.to_vec()];
    for prefix in [&b""[..], b"x", b"ci-bot:", b"ab"] {
        let mut p = prefix.to_vec();
        p.extend_from_slice(secret);
        lines.push(format!("Authorization: Basic {}", b64.encode(&p)).into_bytes());
    }
    lines.push(b64.encode(b64.encode(secret)).into_bytes());
    lines.push(b"q=Zq8%2FrT4%2BlM0pXc2VbN%21x&b=1".to_vec());
    lines.push(b"{\"v\":\"Zq8\\/rT4+lM0pXc2VbN!x\"}".to_vec());
    lines.push(b"echo Zq8/rT4+lM0pXc2VbN\\!x".to_vec());
    lines.push(super::fingerprint::to_hex(secret).into_bytes());
    for l in &lines {
        let mut out = Vec::new();
        d.scan(l, &mut out);
        assert!(
            out.iter()
                .any(|f| matches!(f.method, Method::KnownValue { .. })),
            "not found in {}",
            String::from_utf8_lossy(l)
        );
        let red = d.redact(l, &out);
        assert!(
            memchr::memmem::find(&red, b"rT4").is_none() || l.starts_with(b"q="),
            "{}",
            String::from_utf8_lossy(&red)
        );
    }
    // multi-line secret: each line
    let pem = b"-----BEGIN X-----\nQUJDREVGR0hJSktMTU5PUFFSU1RVVldY\nWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2\n-----END X-----";
    d.known_values_mut().register_plaintext(pem);
    let mut out = Vec::new();
    d.scan(b"  WVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2", &mut out);
    assert!(out.iter().any(|f| matches!(
        f.method,
        Method::KnownValue {
            encoding: Encoding::MultilineLine
        }
    )));
    assert!(!format!("{:?}", d.known_values()).contains("Zq8"));
}

#[test]
fn known_fingerprints_without_plaintext() {
    use base64::Engine as _;
    let d = shared_det();
    let secret = b"Zq8rT4lM0pXc2VbNk7Wd";
    let mut kv = d.new_known_values();
    kv.register_fingerprint(d.fingerprint(secret), Some(secret.len()));
    let mut kv_nolen = d.new_known_values();
    kv_nolen.register_fingerprint(d.fingerprint(secret), None);
    // As the agent's mask list names it: the 12-hex short form only.
    let mut kv_short = d.new_known_values();
    assert!(!kv_short.register_short_fingerprint("not hex at all"));
    assert!(!kv_short.register_short_fingerprint(&d.fingerprint(secret).full_hex()));
    assert!(kv_short.is_empty());
    assert!(kv_short.register_short_fingerprint(&d.fingerprint(secret).short()));
    let b64 = base64::engine::general_purpose::STANDARD;
    let lines = [
        b"export TOKEN=Zq8rT4lM0pXc2VbNk7Wd".to_vec(),
        b"curl https://u:Zq8rT4lM0pXc2VbNk7Wd@host/x".to_vec(),
        format!(
            "Authorization: Basic {}",
            b64.encode(b"ci-bot:Zq8rT4lM0pXc2VbNk7Wd")
        )
        .into_bytes(),
        format!("v={}", b64.encode(b"Zq8rT4lM0pXc2VbNk7Wd")).into_bytes(),
        b"{\"t\":\"Zq8rT4lM0pXc2VbNk7Wd\"}".to_vec(),
    ];
    for kv in [&kv, &kv_nolen, &kv_short] {
        for l in &lines {
            let mut out = Vec::new();
            d.scan_with(l, Some(kv), &mut out);
            assert!(
                out.iter()
                    .any(|f| matches!(f.method, Method::KnownFingerprint { .. })),
                "{}",
                String::from_utf8_lossy(l)
            );
        }
    }
}

#[test]
fn block_scan_matches_line_scan() {
    let d = shared_det();
    let lines: Vec<String> = d
        .rules()
        .iter()
        .take(60)
        .map(|r| r.spec.examples[0].clone())
        .collect();
    let block = lines.join("\n");
    let mut block_out = Vec::new();
    d.scan(block.as_bytes(), &mut block_out);
    let mut n = 0;
    let mut off = 0;
    for l in &lines {
        let mut out = Vec::new();
        d.scan(l.as_bytes(), &mut out);
        for f in &out {
            let r = off + f.range.start..off + f.range.end;
            assert!(
                block_out
                    .iter()
                    .any(|g| g.range == r && g.rule_id == f.rule_id)
            );
            n += 1;
        }
        off += l.len() + 1;
    }
    assert_eq!(n, block_out.len());
}

#[test]
fn debug_never_prints_secrets() {
    let d = shared_det();
    let line = b"export GITLAB=glpat-Zq8rT4lM0pXc2VbNk7Wd";
    let mut out = Vec::new();
    d.scan(line, &mut out);
    assert!(!out.is_empty());
    let dbg = format!("{:?}", out);
    assert!(!dbg.contains("Zq8rT4lM0pXc2VbNk7Wd"), "{dbg}");
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    fn shared() -> &'static Detector {
        super::shared_det()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]
        #[test]
        fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let d = shared();
            let mut out = Vec::new();
            d.scan(&data, &mut out);
            let red = d.redact(&data, &out);
            for f in &out {
                prop_assert!(f.range.end <= data.len());
            }
            prop_assert!(red.len() <= data.len() + out.len() * 64);
        }

        #[test]
        fn keyword_soup_never_panics(parts in proptest::collection::vec(
            prop_oneof![
                Just("password=".to_string()), Just("ghp_".to_string()), Just("://".to_string()),
                Just("-----BEGIN PRIVATE KEY-----".to_string()), Just("eyJ".to_string()), Just("\n".to_string()),
                Just("token: ".to_string()), Just("Authorization: Bearer ".to_string()), "[ -~]{0,40}",
            ], 0..64)) {
            let d = shared();
            let s = parts.concat();
            let mut out = Vec::new();
            d.scan(s.as_bytes(), &mut out);
            let _ = d.redact(s.as_bytes(), &out);
        }
    }

    /// Large adversarial inputs: just has to finish (linear-time engines); no timing assertions.
    #[test]
    fn large_inputs_linear() {
        let d = shared();
        for unit in [
            &b"password="[..],
            b"a",
            b"ghp_",
            b"eyJ.",
            b"://a:",
            b"-----BEGIN PRIVATE KEY-----",
            b"key-",
        ] {
            let big: Vec<u8> = unit.iter().copied().cycle().take(1 << 20).collect();
            let mut out = Vec::new();
            d.scan(&big, &mut out);
            assert!(out.len() <= MAX_FINDINGS_PER_CALL);
        }
    }
}

#[test]
fn windowed_scan_of_large_input_keeps_ranges() {
    let d = shared_det();
    let secret = "glpat-Zq8rT4lM0pXc2VbNk7Wd";
    let mut big = Vec::new();
    while big.len() < 3 * SCAN_WINDOW {
        big.extend_from_slice(b"   Compiling serde v1.0.200 (registry)\n");
    }
    let at = big.len();
    big.extend_from_slice(format!("export GL={secret}\n").as_bytes());
    big.extend_from_slice(&vec![b'x'; SCAN_WINDOW + 10]);
    let mut out = Vec::new();
    d.scan(&big, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(&big[out[0].range.clone()], secret.as_bytes());
    assert!(out[0].range.start > at);
}

#[test]
fn regex_caches_stay_within_budget_and_eviction_changes_no_finding() {
    let d = det();
    let examples: Vec<&String> = d.rules().iter().flat_map(|r| &r.spec.examples).collect();
    let mut scratch = Scratch::new();
    let cache_bytes = |s: &Scratch| -> usize {
        s.regexes
            .caches
            .iter()
            .flatten()
            .map(|c| c.memory_usage())
            .sum()
    };
    let mut first = Vec::new();
    let mut largest_in_one_call = 0;
    for line in &examples {
        let mut out = Vec::new();
        d.scan_in(&mut scratch, line.as_bytes(), None, &mut out);
        first.push(out);
        // Only the caches of the rules that ran in the last call may be
        // over budget.
        let used_last: usize = (0..d.rules().len())
            .filter(|&r| scratch.regexes.last_used[r] == scratch.regexes.calls)
            .filter_map(|r| scratch.regexes.caches[r].as_ref())
            .map(|c| c.memory_usage())
            .sum();
        largest_in_one_call = largest_in_one_call.max(used_last);
        assert!(cache_bytes(&scratch) <= REGEX_CACHE_BUDGET + used_last);
        // the running count the budget is enforced against
        assert_eq!(scratch.regexes.total, cache_bytes(&scratch));
        let present = scratch.regexes.caches.iter().flatten().count();
        assert_eq!(scratch.regexes.present, present);
    }
    assert!(
        scratch.regexes.caches.iter().flatten().count() < d.rules().len(),
        "every example woke its rule, so some caches must have been dropped"
    );
    // Again, with caches dropped and made anew: the same findings.
    for (line, expected) in examples.iter().zip(&first) {
        let mut out = Vec::new();
        d.scan_in(&mut scratch, line.as_bytes(), None, &mut out);
        assert_eq!(&out, expected, "{largest_in_one_call}");
    }
}

#[test]
fn most_builtin_rules_search_anchored_at_their_keywords() {
    let d = shared_det();
    let anchored: Vec<&str> = d
        .rules()
        .iter()
        .filter(|r| r.regex.starts_at_keyword())
        .map(|r| &*r.id)
        .collect();
    assert!(anchored.len() >= 350, "{}", anchored.len());
    for id in [
        "github-pat",
        "azure-devops-pat-legacy",
        "openai-legacy-key",
        "nytimes-key",
    ] {
        assert!(anchored.contains(&id), "{id}");
    }
    // matches that begin before the keyword
    for id in ["generic-secret", "octopus-api-key", "sidekiq-secret"] {
        assert!(!anchored.contains(&id), "{id}");
    }
}

#[test]
fn anchored_search_finds_what_a_search_of_the_whole_line_finds() {
    let anchored = shared_det();
    let whole_line = searching_whole_lines(det());
    let mut lines: Vec<String> = Vec::new();
    for rule in anchored.rules() {
        let examples = rule.spec.examples.iter().chain(&rule.spec.counter_examples);
        for ex in examples {
            lines.push(ex.clone());
            // a keyword that starts no match before it, two matches, and matches run together
            for kw in rule.keywords.iter().take(2) {
                lines.push(format!("{kw} {ex}"));
                lines.push(format!("{kw}{ex}"));
                lines.push(format!("{ex} {kw} {ex}"));
            }
            lines.push(format!("{ex}{ex}"));
        }
    }
    let differ = lines_found_differently(anchored, &whole_line, &lines);
    assert!(lines.len() > 5000, "{}", lines.len());
    assert!(
        differ.is_empty(),
        "{} of {} lines differ: {differ:?}",
        differ.len(),
        lines.len()
    );
}

#[test]
fn anchored_search_matches_a_whole_line_search_past_the_tries_and_in_any_hit_order() {
    let anchored = with_rule(ctx_word_rule());
    let whole_line = searching_whole_lines(with_rule(ctx_word_rule()));
    let index = anchored
        .rules()
        .iter()
        .position(|r| &*r.id == "ctx-word")
        .unwrap() as u32;
    let decoys = |n: usize| "ctxword ".repeat(n);
    let lines = [
        format!("{}ctxword=qzrlmtpxcv", decoys(3)),
        // past MAX_ANCHORED_TRIES, the rest of the line is searched whole
        format!("{}ctxword=qzrlmtpxcv", decoys(MAX_ANCHORED_TRIES + 5)),
        format!(
            "{}CTXWORD_A=qzrlmtpxcv {}ctxword=bnkwdhjsyf ctxword=mvcxtrplqz",
            decoys(2),
            decoys(MAX_ANCHORED_TRIES)
        ),
        // a keyword inside an earlier match is not a start
        "ctxword=ctxwordabc ctxword=bnkwdhjsyf".to_string(),
    ];
    for line in &lines {
        let line = line.as_bytes();
        let mut hits = Vec::new();
        anchored.prefilter.find_all(line, &mut hits);
        hits.reverse();
        let raw = |d: &Detector| {
            let mut scratch = Scratch::new();
            scratch.for_detector(d);
            let mut out = Vec::new();
            let all = 0..line.len();
            d.apply_rule(&mut scratch.regexes, index, line, all, &hits, &mut out, 100);
            out.iter().map(|f| f.range.clone()).collect::<Vec<_>>()
        };
        let (a, b) = (raw(&anchored), raw(&whole_line));
        assert!(!a.is_empty(), "{}", String::from_utf8_lossy(line));
        assert_eq!(a, b, "{}", String::from_utf8_lossy(line));
    }
}

#[test]
fn anchored_search_tries_every_keyword_of_the_line_in_turn() {
    let d = with_rule(ctx_word_rule());
    let ours = d.rules().iter().find(|r| &*r.id == "ctx-word").unwrap();
    assert!(ours.regex.starts_at_keyword());
    let line = b"ctxword is here; CTXWORD_KEY = qzrlmtpxcv, ctxwordctxword=bnkwdhjsyf";
    let secrets = secrets_of(&d, "ctx-word", line);
    assert_eq!(secrets, [&b"qzrlmtpxcv"[..], b"bnkwdhjsyf"]);
}
