//! `type = "redact"`: finds secrets in every line and replaces them before
//! any sink sees the line.
//!
//! Each secret becomes `[REDACTED:<rule-id>:<fp>]`, where `<fp>` is a short
//! keyed BLAKE3 fingerprint: with one fingerprint key across the fleet, the
//! collector can see that the same secret leaked on two runners without
//! ever holding it. Each finding also becomes a span of its own (`FINDING
//! <rule-id>`), a child of the line's step span when there is one, carrying
//! the rule, confidence, fingerprint, where the line came from, and how long
//! detection took. The plaintext is gone from the event when this transform
//! hands it on; findings never hold it.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context as _;
use serde::Deserialize;

use crate::config::SecretString;
use crate::detect::{Detector, DetectorConfig, Finding, Method, RuleSpec, Scratch};
use crate::event::{Event, EventBatch, SpanData, SpanKind, SpanStatus, TraceIds, Value};
use crate::identity::inventory::Inventory;
use crate::topology::component::{ComponentTask, TransformContext};
use crate::topology::function_transform;

#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RedactConfig {
    /// The fleet's fingerprint key, the same on every host so fingerprints
    /// correlate (`"${TAILGUARD_FINGERPRINT_KEY}"`). Default: a random key
    /// kept in `data_dir/fingerprint.key`, which correlates on this host
    /// only.
    pub fingerprint_key: Option<SecretString>,
    /// Rules of your own, added to the built-in ones. Same fields as the
    /// built-in rules: `id`, `name`, `family`, `confidence`, `regex` (the
    /// secret in a group named `secret` or the first group), `keywords`.
    #[serde(default)]
    #[schemars(with = "Vec<serde_json::Value>")]
    pub rules: Vec<RuleSpec>,
    /// Regexes; a candidate secret matching one is not a finding.
    #[serde(default)]
    pub allowlist: Vec<String>,
    /// Rule ids to turn off.
    #[serde(default)]
    pub disable_rules: Vec<String>,
    /// Emit a span per finding (default true).
    #[serde(default = "yes")]
    pub emit_findings: bool,
}

fn yes() -> bool {
    true
}

impl RedactConfig {
    /// Checks user rules and allowlist without compiling the 400 built-in
    /// rules, so `validate` stays fast; errors name the rule and field.
    pub(crate) fn check(&self) -> Result<(), String> {
        for (i, pattern) in self.allowlist.iter().enumerate() {
            regex::bytes::Regex::new(pattern)
                .map_err(|e| format!("allowlist[{i}] is not a valid regex: {e}"))?;
        }
        for rule in &self.rules {
            crate::detect::rules::compile_rule(rule).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Builds the detector this configuration describes.
    pub fn detector(&self, data_dir: &Path) -> anyhow::Result<Detector> {
        let key = fingerprint_key(
            self.fingerprint_key.as_ref().map(|k| k.0.as_str()),
            data_dir,
        )?;
        Detector::new(&DetectorConfig {
            fingerprint_key: key,
            extra_rules: self.rules.clone(),
            allowlist: self.allowlist.clone(),
            disable_rules: self.disable_rules.clone(),
            lazy_dfa_capacity: None,
        })
        .map_err(|e| anyhow::anyhow!("{e}"))
    }
}

/// The fingerprint key: the configured one, or this host's own, created
/// once in `data_dir/fingerprint.key` (mode 0600).
pub fn fingerprint_key(configured: Option<&str>, data_dir: &Path) -> anyhow::Result<String> {
    if let Some(key) = configured.filter(|k| !k.is_empty()) {
        return Ok(key.to_string());
    }
    let path = data_dir.join("fingerprint.key");
    if let Ok(key) = std::fs::read_to_string(&path) {
        let key = key.trim();
        if !key.is_empty() {
            return Ok(key.to_string());
        }
    }
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let key = crate::event::hex(&rand::random::<[u8; 32]>());
    let mut file = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(key.as_bytes())?;
    tracing::warn!(
        path = %path.display(),
        "no fingerprint_key configured: using a key of this host's own; set one fleet-wide key so fingerprints correlate across hosts"
    );
    Ok(key)
}

pub fn build(config: &RedactConfig, cx: TransformContext) -> anyhow::Result<ComponentTask> {
    let mut detector = config.detector(&cx.globals.data_dir)?;
    // Inventory secrets are known by fingerprint only: the engine hashes
    // candidate tokens and compares (see `detect::known`).
    let inventory = Arc::clone(&cx.globals.inventory);
    for fp in inventory.fingerprints() {
        detector.known_values_mut().register_fingerprint(fp, None);
    }
    tracing::info!(
        transform = %cx.name,
        rules = detector.rules().len(),
        inventory_fingerprints = inventory.fingerprints().count(),
        "secret detection ready"
    );
    let mut redactor =
        Redactor::new(Arc::new(detector), config.emit_findings).with_inventory(inventory);
    Ok(function_transform(cx, move |batch| redactor.process(batch)))
}

/// The per-batch work, separate from the task so tests and `scan` share it.
pub struct Redactor {
    detector: Arc<Detector>,
    inventory: Arc<Inventory>,
    emit_findings: bool,
    scratch: Scratch,
    block: Vec<u8>,
    starts: Vec<usize>,
    findings: Vec<Finding>,
    per_line: Vec<Vec<Finding>>,
}

impl Redactor {
    pub fn new(detector: Arc<Detector>, emit_findings: bool) -> Self {
        Self {
            detector,
            inventory: Arc::default(),
            emit_findings,
            scratch: Scratch::new(),
            block: Vec::new(),
            starts: Vec::new(),
            findings: Vec::new(),
            per_line: Vec::new(),
        }
    }

    /// Findings whose fingerprint belongs to an identity of `inventory`
    /// carry that identity's record.
    pub fn with_inventory(mut self, inventory: Arc<Inventory>) -> Self {
        self.inventory = inventory;
        self
    }

    /// Redacts every log event of the batch in place and appends a finding
    /// span per secret.
    pub fn process(&mut self, batch: &mut EventBatch) {
        // One scan over the batch's lines joined by newlines: the engine is
        // faster on blocks than line by line.
        self.block.clear();
        self.starts.clear();
        for event in batch.iter() {
            self.starts.push(self.block.len());
            if event.as_span().is_none() {
                self.block.extend_from_slice(&event.body);
            }
            self.block.push(b'\n');
        }
        self.findings.clear();
        let known = Some(self.detector.known_values());
        self.detector
            .scan_in(&mut self.scratch, &self.block, known, &mut self.findings);
        if self.findings.is_empty() {
            return;
        }
        self.per_line.clear();
        self.per_line.resize_with(batch.len(), Vec::new);
        let mut rescan = Vec::new();
        for finding in self.findings.drain(..) {
            let line = self.starts.partition_point(|s| *s <= finding.range.start) - 1;
            let start = self.starts[line];
            let end = start + batch[line].body.len();
            if finding.range.end > end {
                // Matched across the joining newline: scan that line alone.
                rescan.push(line);
                continue;
            }
            let mut local = finding;
            local.range = local.range.start - start..local.range.end - start;
            self.per_line[line].push(local);
        }
        for line in rescan {
            self.per_line[line].clear();
            self.detector.scan_in(
                &mut self.scratch,
                &batch[line].body,
                Some(self.detector.known_values()),
                &mut self.per_line[line],
            );
        }
        let mut spans = Vec::new();
        for (event, findings) in batch.iter_mut().zip(self.per_line.iter()) {
            if findings.is_empty() {
                continue;
            }
            if self.emit_findings {
                spans.extend(findings.iter().map(|f| {
                    let mut span = finding_span(event, f);
                    if let Some(identity) = self.inventory.by_fingerprint(&f.fingerprint) {
                        for (k, v) in identity.attributes().iter() {
                            span.attributes.insert(k.to_string(), v.clone());
                        }
                    }
                    span
                }));
            }
            if let Some(identity) = findings
                .iter()
                .find_map(|f| self.inventory.by_fingerprint(&f.fingerprint))
            {
                event
                    .attributes
                    .insert("nhi.identity.id", identity.id.as_str());
            }
            event.body = self.detector.redact(&event.body, findings).into();
            event.attributes.insert("tailguard.redacted", true);
            event
                .attributes
                .insert("tailguard.findings", findings.len() as i64);
            let m = crate::observe::metrics::metrics();
            for f in findings {
                m.findings
                    .get_or_create(&crate::observe::metrics::RuleLabels {
                        rule: f.rule_id.to_string(),
                    })
                    .inc();
            }
        }
        batch.extend(spans);
    }
}

/// How a finding was made, as an attribute value.
pub fn method_name(method: &Method) -> String {
    match method {
        Method::Pattern => "pattern".into(),
        Method::KnownValue { encoding } => format!("known_value:{encoding:?}").to_lowercase(),
        Method::KnownFingerprint { encoding } => {
            format!("known_fingerprint:{encoding:?}").to_lowercase()
        }
    }
}

/// The `exp` and `iat` claims (seconds since the epoch) of a JWT.
#[derive(Debug, PartialEq)]
struct JwtTimes {
    exp: Option<i64>,
    iat: Option<i64>,
}

/// Reads the lifetime claims from a JWT's payload (its second,
/// base64url-encoded segment). `None` when it is not a decodable JWT.
fn jwt_times(token: &[u8]) -> Option<JwtTimes> {
    use base64::Engine as _;
    let payload = token.split(|&b| b == b'.').nth(1)?;
    let payload = payload
        .strip_suffix(b"==")
        .or_else(|| payload.strip_suffix(b"="))
        .unwrap_or(payload);
    let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    #[derive(Deserialize)]
    struct Claims {
        exp: Option<serde_json::Number>,
        iat: Option<serde_json::Number>,
    }
    let claims: Claims = serde_json::from_slice(&json).ok()?;
    // NumericDate may be fractional (RFC 7519, section 2); whole seconds do.
    let seconds = |n: Option<serde_json::Number>| {
        n.and_then(|n| n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)))
    };
    Some(JwtTimes {
        exp: seconds(claims.exp),
        iat: seconds(claims.iat),
    })
}

/// The span describing one finding in `line`.
fn finding_span(line: &Event, finding: &Finding) -> Event {
    let now = SystemTime::now();
    let ids = line.trace.map_or_else(TraceIds::new_root, |t| t.child());
    let span = SpanData {
        name: format!("FINDING {}", finding.rule_id),
        ids,
        parent_span_id: line.trace.map(|t| t.span_id),
        kind: SpanKind::Internal,
        start: line.observed_at,
        end: now,
        status: SpanStatus::Unset,
    };
    let mut event = Event::span(span, line.origin.clone(), Arc::clone(&line.context));
    let a = &mut event.attributes;
    a.insert("security_rule.name", finding.rule_name.as_ref());
    a.insert("security_rule.category", finding.family.as_ref());
    a.insert("security_rule.ruleset.name", "tailguard");
    a.insert("security_rule.version", env!("CARGO_PKG_VERSION"));
    a.insert("tailguard.finding.rule_id", finding.rule_id.as_ref());
    a.insert("tailguard.finding.confidence", finding.confidence.as_str());
    a.insert("tailguard.finding.fingerprint", finding.fingerprint.short());
    a.insert("tailguard.finding.method", method_name(&finding.method));
    a.insert("tailguard.finding.column", finding.range.start as i64);
    if let Some(valid) = finding.checksum_valid {
        a.insert("tailguard.finding.checksum_valid", valid);
    }
    if finding.family.as_ref() == "jwt"
        && let Some(claims) = line.body.get(finding.range.clone()).and_then(jwt_times)
    {
        // Lifetime only, for the long-lived credential detection (NHI7);
        // no other claim leaves the token.
        if let Some(exp) = claims.exp {
            a.insert("tailguard.finding.jwt.exp", exp);
        }
        if let Some(iat) = claims.iat {
            a.insert("tailguard.finding.jwt.iat", iat);
        }
    }
    for key in [
        "log.file.path",
        "tailguard.file.id",
        "tailguard.file.offset",
        "log.iostream",
    ] {
        if let Some(value) = line.attributes.get(key) {
            a.insert(key, value.clone());
        }
    }
    // A finding names its log file even where the source's `file_attributes` leave the
    // lines without it: evidence is read one finding at a time. Only a line read from a
    // log file has a file id; other sources' origin paths (a watched credential file)
    // are no log file.
    if let Some(id) = &line.origin.file_id {
        if a.get("log.file.path").is_none()
            && let Some(path) = &line.origin.path
        {
            a.insert("log.file.path", path.to_string_lossy().as_ref());
        }
        if a.get("tailguard.file.id").is_none() {
            a.insert("tailguard.file.id", Value::String(Arc::clone(id)));
        }
    }
    let detect_ms = now
        .duration_since(line.observed_at)
        .unwrap_or_default()
        .as_secs_f64()
        * 1000.0;
    a.insert("tailguard.finding.time_to_detect_ms", detect_ms);
    if let Some(written) = line.timestamp {
        let since_written = now
            .duration_since(written)
            .unwrap_or_default()
            .as_secs_f64()
            * 1000.0;
        a.insert("tailguard.finding.time_since_written_ms", since_written);
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Origin;

    fn redactor() -> Redactor {
        let detector = Detector::new(&DetectorConfig {
            fingerprint_key: "test fleet".into(),
            ..DetectorConfig::default()
        })
        .unwrap();
        Redactor::new(Arc::new(detector), true)
    }

    fn line(text: &str) -> Event {
        let mut e = Event::new(text.as_bytes().to_vec(), Origin::default(), Arc::default());
        e.attributes.insert("log.file.path", "/var/log/build.log");
        e
    }

    /// A fake GitHub personal access token, built from parts so scanners
    /// of this repository do not flag the source file. Its checksum is
    /// wrong, which lowers confidence but still makes a finding.
    fn token() -> String {
        format!("gh{}_{}", "p", "Zq8Rk2LmT7vXw4NbP9yHc3JdF6sGa1UeK0tQ")
    }

    #[test]
    fn secrets_are_replaced_and_findings_become_spans() {
        let mut r = redactor();
        let secret = token();
        let mut batch = vec![
            line("compiling foo v1.0"),
            line(&format!("export GITHUB_TOKEN={secret} # oops")),
            line("ok"),
        ];
        r.process(&mut batch);
        assert_eq!(batch.len(), 4, "three lines and one finding");
        assert_eq!(&batch[0].body[..], b"compiling foo v1.0");
        let redacted = String::from_utf8(batch[1].body.to_vec()).unwrap();
        assert!(!redacted.contains(&secret), "{redacted}");
        assert!(
            redacted.starts_with("export GITHUB_TOKEN=[REDACTED:"),
            "{redacted}"
        );
        assert!(redacted.ends_with(" # oops"), "{redacted}");
        let finding = batch[3].as_span().unwrap();
        assert!(finding.name.starts_with("FINDING "), "{}", finding.name);
        let a = &batch[3].attributes;
        assert_eq!(
            a.get("log.file.path").unwrap().to_string(),
            "/var/log/build.log"
        );
        assert_eq!(a.get("tailguard.finding.column").unwrap().to_string(), "20");
        let fp = a.get("tailguard.finding.fingerprint").unwrap().to_string();
        assert!(
            redacted.contains(&fp),
            "the marker carries the same fingerprint"
        );
    }

    #[test]
    fn a_finding_names_its_file_where_the_line_does_not() {
        let mut r = redactor();
        let origin = Origin {
            source: Arc::from("logs"),
            path: Some(Arc::from(std::path::Path::new("/var/log/job.log"))),
            file_id: Some(Arc::from("fe00-1")),
        };
        // a file source with `file_attributes = ["log.file.name"]`
        let mut e = Event::new(
            format!("export GITHUB_TOKEN={}", token()).into_bytes(),
            origin,
            Arc::default(),
        );
        e.attributes.insert("log.file.name", "job.log");
        let mut batch = vec![e];
        r.process(&mut batch);
        assert_eq!(batch.len(), 2, "the line and its finding");
        assert!(batch[0].attributes.get("log.file.path").is_none());
        let a = &batch[1].attributes;
        assert_eq!(
            a.get("log.file.path").map(|v| v.to_string()).as_deref(),
            Some("/var/log/job.log")
        );
        assert_eq!(
            a.get("tailguard.file.id").map(|v| v.to_string()).as_deref(),
            Some("fe00-1")
        );
        // a watched credential file is no log file: no id, so no `log.file.path` either
        let origin = Origin {
            source: Arc::from("creds"),
            path: Some(Arc::from(std::path::Path::new("/home/ci/.npmrc"))),
            file_id: None,
        };
        let e = Event::new(
            format!("export GITHUB_TOKEN={}", token()).into_bytes(),
            origin,
            Arc::default(),
        );
        let mut batch = vec![e];
        r.process(&mut batch);
        assert_eq!(batch.len(), 2, "the line and its finding");
        assert!(batch[1].attributes.get("log.file.path").is_none());
        assert!(batch[1].attributes.get("tailguard.file.id").is_none());
    }

    /// An unsigned-looking JWT with the given payload JSON.
    fn jwt(payload: &str) -> String {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.{}",
            b64.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
            b64.encode(payload),
            "Qm9vX3NpZ25hdHVyZV9ub3RfcmVhbF8xMjM0NTY3ODkw"
        )
    }

    #[test]
    fn jwt_lifetime_claims_are_read_and_nothing_else() {
        let t = jwt(r#"{"sub":"deploy-bot","iat":1700000000,"exp":2000000000.5}"#);
        assert_eq!(
            jwt_times(t.as_bytes()),
            Some(JwtTimes {
                exp: Some(2_000_000_000),
                iat: Some(1_700_000_000)
            })
        );
        assert_eq!(
            jwt_times(jwt(r#"{"sub":"x"}"#).as_bytes()),
            Some(JwtTimes {
                exp: None,
                iat: None
            })
        );
        assert_eq!(jwt_times(b"eyJhbGciOi.not base64!.x"), None);
        assert_eq!(jwt_times(b"no dots"), None);

        let mut r = redactor();
        let mut batch = vec![line(&format!("Authorization: Bearer {t}"))];
        r.process(&mut batch);
        let finding = batch
            .iter()
            .find(|e| e.attributes.get("tailguard.finding.jwt.exp").is_some())
            .expect("a JWT finding with its expiry");
        assert_eq!(
            finding
                .attributes
                .get("tailguard.finding.jwt.exp")
                .unwrap()
                .to_string(),
            "2000000000"
        );
        assert!(finding.attributes.get("sub").is_none());
    }

    #[test]
    fn the_same_secret_has_the_same_fingerprint_in_every_batch() {
        let mut r = redactor();
        let secret = token();
        let mut first = vec![line(&format!("a {secret}"))];
        let mut second = vec![line("x"), line("y"), line(&format!("token: {secret}"))];
        r.process(&mut first);
        r.process(&mut second);
        let fp = |e: &Event| {
            e.attributes
                .get("tailguard.finding.fingerprint")
                .unwrap()
                .to_string()
        };
        assert_eq!(fp(&first[1]), fp(&second[3]));
    }

    #[test]
    fn spans_pass_through_untouched() {
        let mut r = redactor();
        let span = SpanData {
            name: token(),
            ids: TraceIds::new_root(),
            parent_span_id: None,
            kind: SpanKind::Internal,
            start: SystemTime::now(),
            end: SystemTime::now(),
            status: SpanStatus::Ok,
        };
        let mut batch = vec![
            Event::span(span, Origin::default(), Arc::default()),
            line("plain"),
        ];
        r.process(&mut batch);
        assert_eq!(batch.len(), 2);
    }

    #[test]
    fn a_host_key_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = fingerprint_key(None, dir.path()).unwrap();
        assert_eq!(first.len(), 64);
        assert_eq!(fingerprint_key(None, dir.path()).unwrap(), first);
        assert_eq!(fingerprint_key(Some("fleet"), dir.path()).unwrap(), "fleet");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("fingerprint.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
