//! The built-in detections: what an event shows, as [`Detection`]s.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use globset::{Glob, GlobMatcher};

use super::config::{Confidence, DetectionKind, PolicyConfig};
use super::state::Store;
use crate::event::{Attributes, Context, Event, Origin, TraceIds, Value};
use crate::identity::inventory::{Identity, Inventory};

/// One thing worth an alert.
#[derive(Clone, Debug)]
pub struct Detection {
    pub kind: DetectionKind,
    /// Why, in words (no secret, no log content).
    pub reason: String,
    pub rule: Option<String>,
    pub confidence: Option<Confidence>,
    pub fingerprint: Option<String>,
    pub identity: Option<Arc<Identity>>,
    pub job: Job,
    pub time_to_detect_ms: Option<f64>,
    /// When the line (or misuse event) was read.
    pub seen_at: SystemTime,
    /// Extra attributes for the alert (finding and misuse details).
    pub attributes: Attributes,
    pub trace: Option<TraceIds>,
    pub origin: Arc<Origin>,
    pub context: Arc<Context>,
}

/// The job context of an event.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Job {
    /// `owner/name` when the URL shows it, else the URL.
    pub repository: Option<String>,
    pub repository_url: Option<String>,
    pub git_ref: Option<String>,
    pub environment: Option<String>,
    pub pipeline: Option<String>,
    pub host: Option<String>,
    /// The run (pipeline run and task run ids), to count uses per run.
    pub run: Option<String>,
}

impl Job {
    fn of(event: &Event) -> Self {
        let get = |key: &str| {
            event
                .attributes
                .get(key)
                .or_else(|| event.context.identity.get(key))
                .map(|v| v.to_string())
                .filter(|v| !v.is_empty())
        };
        let resource = |key: &str| {
            event
                .context
                .resource
                .get(key)
                .map(|v| v.to_string())
                .filter(|v| !v.is_empty())
        };
        let url = get("vcs.repository.url.full");
        Self {
            repository: url.as_deref().map(repository_name),
            repository_url: url,
            git_ref: get("vcs.ref.head.name"),
            environment: get("deployment.environment.name")
                .or_else(|| resource("deployment.environment.name")),
            pipeline: get("cicd.pipeline.name"),
            host: resource("host.name").or_else(|| resource("cicd.worker.name")),
            run: match (
                get("cicd.pipeline.run.id"),
                get("cicd.pipeline.task.run.id"),
            ) {
                (None, None) => None,
                (run, task) => Some(format!(
                    "{}/{}",
                    run.unwrap_or_default(),
                    task.unwrap_or_default()
                )),
            },
        }
    }

    fn key(&self) -> String {
        [
            &self.repository,
            &self.git_ref,
            &self.environment,
            &self.pipeline,
            &self.host,
        ]
        .iter()
        .map(|v| v.as_deref().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\u{1f}")
    }
}

/// `https://github.com/acme/widgets(.git)` -> `acme/widgets`;
/// `git@host:acme/widgets.git` -> `acme/widgets`.
pub fn repository_name(url: &str) -> String {
    let rest = match url.split_once("://") {
        Some((_, rest)) => rest.split_once('/').map_or("", |(_, path)| path),
        None => url.split_once(':').map_or(url, |(_, path)| path),
    };
    let rest = rest.trim_matches('/');
    rest.strip_suffix(".git").unwrap_or(rest).to_string()
}

/// Candidate spellings of a ref for glob matching.
fn ref_candidates(name: &str) -> Vec<String> {
    if name.starts_with("refs/") {
        vec![name.to_string()]
    } else {
        vec![name.to_string(), format!("refs/heads/{name}")]
    }
}

impl Detection {
    /// Placeholder values for commands (`{identity}`, `{fingerprint}`, ...).
    pub fn placeholders(&self, policy: &str, severity: &str) -> BTreeMap<&'static str, String> {
        let mut v = BTreeMap::new();
        let mut put = |k: &'static str, value: Option<&str>| {
            v.insert(k, value.unwrap_or("").to_string());
        };
        put("identity", self.identity.as_ref().map(|i| i.id.as_str()));
        put("fingerprint", self.fingerprint.as_deref());
        put("rule", self.rule.as_deref());
        put("repository", self.job.repository.as_deref());
        put("ref", self.job.git_ref.as_deref());
        put("environment", self.job.environment.as_deref());
        put("pipeline", self.job.pipeline.as_deref());
        put("host", self.job.host.as_deref());
        put("detection", Some(self.kind.as_str()));
        put("severity", Some(severity));
        put("policy", Some(policy));
        v
    }

    /// Actions are deduplicated per fingerprint, else identity, else the
    /// detection's subject.
    pub fn dedup_key(&self) -> String {
        if let Some(fp) = &self.fingerprint {
            return format!("fp:{fp}");
        }
        if let Some(identity) = &self.identity {
            return format!("id:{}", identity.id);
        }
        let subject: Vec<String> = ["file.path", "user.name", "tailguard.audit.target_pid"]
            .iter()
            .filter_map(|k| self.attributes.get(k).map(|v| v.to_string()))
            .collect();
        format!(
            "{}:{}:{}:{}",
            self.kind.as_str(),
            self.reason,
            subject.join(","),
            self.job.key()
        )
    }
}

fn glob_matcher(globs: &[String]) -> Result<Vec<GlobMatcher>, String> {
    globs
        .iter()
        .map(|g| {
            Glob::new(g)
                .map(|g| g.compile_matcher())
                .map_err(|e| format!("{g}: {e}"))
        })
        .collect()
}

fn any_match(matchers: &[GlobMatcher], candidates: &[String]) -> bool {
    matchers
        .iter()
        .any(|m| candidates.iter().any(|c| m.is_match(c)))
}

/// A policy's conditions, compiled.
pub struct PolicyMatcher {
    detections: Vec<DetectionKind>,
    rule: Vec<GlobMatcher>,
    min_confidence: Option<Confidence>,
    identity: Vec<GlobMatcher>,
    privilege_tier: Vec<GlobMatcher>,
    repository: Vec<GlobMatcher>,
    refs: Vec<GlobMatcher>,
    environment: Vec<GlobMatcher>,
    pipeline: Vec<GlobMatcher>,
}

impl PolicyMatcher {
    pub fn new(p: &PolicyConfig) -> Result<Self, String> {
        Ok(Self {
            detections: p.detection.as_ref().map(|d| d.to_vec()).unwrap_or_default(),
            rule: glob_matcher(&p.rule)?,
            min_confidence: p.min_confidence,
            identity: glob_matcher(&p.identity)?,
            privilege_tier: glob_matcher(&p.privilege_tier)?,
            repository: glob_matcher(&p.repository)?,
            refs: glob_matcher(&p.refs)?,
            environment: glob_matcher(&p.environment)?,
            pipeline: glob_matcher(&p.pipeline)?,
        })
    }

    /// Every condition given holds; a condition on a fact the detection
    /// does not have does not hold.
    pub fn matches(&self, d: &Detection) -> bool {
        let one = |m: &[GlobMatcher], v: Option<&str>| {
            m.is_empty() || v.is_some_and(|v| any_match(m, &[v.to_string()]))
        };
        (self.detections.is_empty() || self.detections.contains(&d.kind))
            && one(&self.rule, d.rule.as_deref())
            && self
                .min_confidence
                .is_none_or(|min| d.confidence.is_some_and(|c| c >= min))
            && one(&self.identity, d.identity.as_ref().map(|i| i.id.as_str()))
            && one(
                &self.privilege_tier,
                d.identity
                    .as_ref()
                    .and_then(|i| i.config.privilege_tier.as_deref()),
            )
            && (self.repository.is_empty()
                || any_match(
                    &self.repository,
                    &[d.job.repository.clone(), d.job.repository_url.clone()]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>(),
                ))
            && (self.refs.is_empty()
                || d.job
                    .git_ref
                    .as_deref()
                    .is_some_and(|r| any_match(&self.refs, &ref_candidates(r))))
            && one(&self.environment, d.job.environment.as_deref())
            && one(&self.pipeline, d.job.pipeline.as_deref())
    }
}

/// Maps `tailguard.misuse.kind` values to detections.
pub fn misuse_detection(kind: &str) -> Option<DetectionKind> {
    Some(match kind {
        "credential_file_read"
        | "credential_read"
        | "credential_file_access"
        | "credential_file_open" => DetectionKind::CredentialFileRead,
        "runner_memory_read" | "process_memory_read" | "ptrace" | "proc_mem_read" => {
            DetectionKind::RunnerMemoryRead
        }
        "interactive_human_use" | "interactive_session" | "ssh_session" | "sudo_session" => {
            DetectionKind::InteractiveHumanUse
        }
        _ => return None,
    })
}

/// A `credential_watch` event (no `tailguard.misuse.kind`) is a misuse when
/// a credential file was opened or read while no job was running to
/// attribute it to: a process outside any job read it.
fn credential_watch_misuse(event: &Event) -> Option<String> {
    let a = &event.attributes;
    let op = a.get("tailguard.credential.operation")?.to_string();
    let outside = a
        .get("tailguard.credential.attribution")
        .is_some_and(|v| v.to_string() != "single_running_job");
    (outside && (op == "open" || op == "read")).then(|| "credential_file_read".to_string())
}

/// Runs every detection over events; holds what detections remember.
pub struct Detector {
    inventory: Arc<Inventory>,
    pub store: Store,
    learning_period: Option<Duration>,
    rate_spike: RateSpike,
    long_lived_rules: Vec<GlobMatcher>,
    max_token_lifetime: Duration,
    /// (identity, job) pairs already checked for context and drift.
    checked: HashSet<String>,
    /// (identity, run) pairs already counted for the usage rate.
    counted_runs: HashSet<String>,
    /// The last job context checked, so the lines of one job cost one
    /// pointer comparison.
    last_context: std::sync::Weak<Context>,
}

const MAX_CHECKED: usize = 10_000;

/// When an identity's job runs in one hour are a spike: more than `factor`
/// times its mean runs per hour, and more than `min_runs`.
#[derive(Clone, Copy, Debug)]
pub struct RateSpike {
    pub factor: f64,
    pub min_runs: u32,
}

impl Detector {
    pub fn new(
        inventory: Arc<Inventory>,
        store: Store,
        learning_period: Option<Duration>,
        rate_spike: RateSpike,
        long_lived_rules: Vec<String>,
        max_token_lifetime: Duration,
    ) -> Self {
        Self {
            inventory,
            store,
            learning_period,
            rate_spike,
            counted_runs: HashSet::new(),
            long_lived_rules: glob_matcher(&long_lived_rules).unwrap_or_default(),
            max_token_lifetime,
            checked: HashSet::new(),
            last_context: std::sync::Weak::new(),
        }
    }

    fn identity(&self, event: &Event) -> Option<Arc<Identity>> {
        let id = event
            .attributes
            .get("nhi.identity.id")
            .or_else(|| event.context.identity.get("nhi.identity.id"))?
            .to_string();
        self.inventory
            .identities()
            .iter()
            .find(|i| i.id == id)
            .cloned()
    }

    /// Appends what `event` shows to `out`.
    pub fn detect(&mut self, event: &Event, out: &mut Vec<Detection>) {
        let span = event.as_span();
        // Our own alerts and actions are not looked at again.
        if span.is_some_and(|s| s.name.starts_with("ALERT ") || s.name.starts_with("ACTION ")) {
            return;
        }
        let is_finding = span.is_some_and(|s| s.name.starts_with("FINDING "));
        let misuse = event
            .attributes
            .get("tailguard.misuse.kind")
            .map(|v| v.to_string())
            .or_else(|| credential_watch_misuse(event));
        if !is_finding
            && misuse.is_none()
            && event.attributes.get("nhi.identity.id").is_none()
            && self
                .last_context
                .upgrade()
                .is_some_and(|c| Arc::ptr_eq(&c, &event.context))
        {
            return;
        }
        let identity = self.identity(event);
        if !is_finding && misuse.is_none() && identity.is_none() {
            return;
        }
        if event.context.identity.get("nhi.identity.id").is_some() {
            self.last_context = Arc::downgrade(&event.context);
        }
        let attr = |k: &str| event.attributes.get(k).map(|v| v.to_string());
        let job = Job::of(event);
        let base = Detection {
            kind: DetectionKind::SecretLeak,
            reason: String::new(),
            rule: attr("tailguard.finding.rule_id"),
            confidence: attr("tailguard.finding.confidence")
                .as_deref()
                .and_then(Confidence::parse),
            fingerprint: attr("tailguard.finding.fingerprint"),
            identity: identity.clone(),
            job: job.clone(),
            time_to_detect_ms: match event.attributes.get("tailguard.finding.time_to_detect_ms") {
                Some(Value::Float(f)) => Some(*f),
                Some(Value::Int(i)) => Some(*i as f64),
                _ => None,
            },
            seen_at: span.map_or(event.observed_at, |s| s.start),
            attributes: Attributes::new(),
            trace: event.trace,
            origin: event.origin.clone(),
            context: Arc::clone(&event.context),
        };
        let with = |kind: DetectionKind, reason: String| {
            let mut d = base.clone();
            d.kind = kind;
            d.reason = reason;
            d
        };
        if is_finding {
            let mut leak = with(
                DetectionKind::SecretLeak,
                format!(
                    "a {} secret was written to job or log output",
                    base.rule.as_deref().unwrap_or("?")
                ),
            );
            for (k, v) in event.attributes.iter() {
                if k.starts_with("tailguard.finding.") && k != "tailguard.finding.time_to_detect_ms"
                {
                    leak.attributes.insert(k.to_string(), v.clone());
                }
            }
            let finding_attrs = leak.attributes.clone();
            out.push(leak);
            if let Some(fp) = &base.fingerprint {
                let spread = self.store.see_fingerprint(
                    fp,
                    job.repository.as_deref(),
                    job.pipeline.as_deref(),
                    job.environment.as_deref(),
                );
                for (dimension, values) in spread.new_values {
                    let mut d = with(
                        DetectionKind::FingerprintSpread,
                        format!(
                            "the same secret was seen in {} {}s: {}",
                            values.len(),
                            dimension,
                            values.join(", ")
                        ),
                    );
                    d.attributes = finding_attrs.clone();
                    d.attributes
                        .insert("tailguard.alert.spread.dimension", dimension);
                    d.attributes
                        .insert("tailguard.alert.spread.values", values.join(","));
                    out.push(d);
                }
            }
            if let Some(reason) = self.long_lived(event, base.rule.as_deref()) {
                let mut d = with(DetectionKind::LongLivedCredential, reason);
                d.attributes = finding_attrs;
                out.push(d);
            }
        }
        if let Some(kind) = misuse.as_deref() {
            match misuse_detection(kind) {
                Some(detection) => {
                    let mut d = with(detection, format!("misuse event: {kind}"));
                    for (k, v) in event.attributes.iter() {
                        if k.starts_with("tailguard.misuse.")
                            || k.starts_with("tailguard.audit.")
                            || k.starts_with("tailguard.auth.")
                            || k.starts_with("tailguard.credential.")
                            || k.starts_with("source.")
                            || k.starts_with("process.")
                            || k.starts_with("file.")
                            || k.starts_with("user.")
                            || k == "log.file.path"
                        {
                            // Command lines may hold secrets: never copied.
                            if k.contains("command_line") || k.ends_with(".args") {
                                continue;
                            }
                            d.attributes.insert(k.to_string(), v.clone());
                        }
                    }
                    out.push(d);
                }
                None => tracing::debug!(kind, "unknown tailguard.misuse.kind; ignored"),
            }
        }
        if let Some(identity) = identity {
            self.context_checks(&identity, &job, &with, out);
        }
    }

    /// Baseline drift by rate: counts each job run that uses an identity,
    /// and alerts when an hour's runs are well above its usual rate.
    fn rate_check(
        &mut self,
        identity: &Arc<Identity>,
        job: &Job,
        with: &dyn Fn(DetectionKind, String) -> Detection,
        out: &mut Vec<Detection>,
    ) {
        let Some(period) = self.learning_period else {
            return;
        };
        let Some(run) = &job.run else {
            return;
        };
        let key = format!("{}\u{1e}{run}", identity.id);
        if self.counted_runs.contains(&key) {
            return;
        }
        if self.counted_runs.len() >= MAX_CHECKED {
            self.counted_runs.clear();
        }
        self.counted_runs.insert(key);
        let now = super::state::now();
        let learned = self.store.learned(period);
        let spike = self.rate_spike;
        if let Some((runs, mean)) =
            self.store
                .count_run(&identity.id, now, spike.factor, spike.min_runs, learned)
        {
            let mut d = with(
                DetectionKind::BaselineDrift,
                format!(
                    "identity {} used by {runs} job runs this hour, against {mean:.1} per hour before",
                    identity.id
                ),
            );
            d.attributes.insert("tailguard.alert.drift", "rate_spike");
            d.attributes
                .insert("tailguard.alert.runs_this_hour", i64::from(runs));
            out.push(d);
        }
    }

    fn context_checks(
        &mut self,
        identity: &Arc<Identity>,
        job: &Job,
        with: &dyn Fn(DetectionKind, String) -> Detection,
        out: &mut Vec<Detection>,
    ) {
        self.rate_check(identity, job, with, out);
        let key = format!("{}\u{1e}{}", identity.id, job.key());
        if self.checked.contains(&key) {
            return;
        }
        if self.checked.len() >= MAX_CHECKED {
            self.checked.clear();
        }
        self.checked.insert(key.clone());
        let allowed = &identity.config.allowed;
        let mut outside = Vec::new();
        let check =
            |name: &str, globs: &[String], candidates: Vec<String>, outside: &mut Vec<String>| {
                if globs.is_empty() || candidates.is_empty() {
                    return;
                }
                let matchers = glob_matcher(globs).unwrap_or_default();
                if !any_match(&matchers, &candidates) {
                    outside.push(format!("{name} {}", candidates[0]));
                }
            };
        check(
            "repository",
            &allowed.repositories,
            [job.repository.clone(), job.repository_url.clone()]
                .into_iter()
                .flatten()
                .collect(),
            &mut outside,
        );
        check(
            "ref",
            &allowed.refs,
            job.git_ref
                .as_deref()
                .map(ref_candidates)
                .unwrap_or_default(),
            &mut outside,
        );
        check(
            "environment",
            &allowed.environments,
            job.environment.iter().cloned().collect(),
            &mut outside,
        );
        check(
            "host",
            &allowed.hosts,
            job.host.iter().cloned().collect(),
            &mut outside,
        );
        check(
            "pipeline",
            &allowed.pipelines,
            job.pipeline.iter().cloned().collect(),
            &mut outside,
        );
        if !outside.is_empty() {
            let mut d = with(
                DetectionKind::IdentityOutOfContext,
                format!(
                    "identity {} used outside its allowed context: {}",
                    identity.id,
                    outside.join("; ")
                ),
            );
            d.attributes
                .insert("tailguard.alert.outside", outside.join("; "));
            out.push(d);
        }
        if let Some(period) = self.learning_period {
            let new = self.store.see_pair(&key);
            if new && self.store.learned(period) {
                let mut d = with(
                    DetectionKind::BaselineDrift,
                    format!(
                        "identity {} used in a context not seen during its learning period",
                        identity.id
                    ),
                );
                d.attributes.insert("tailguard.alert.drift", "new_context");
                out.push(d);
            }
        }
    }

    fn long_lived(&self, event: &Event, rule: Option<&str>) -> Option<String> {
        let rule = rule?;
        if let Some(exp) = event
            .attributes
            .get("tailguard.finding.jwt.exp")
            .and_then(|v| match v {
                Value::Int(i) => Some(*i),
                Value::String(s) => s.parse().ok(),
                _ => None,
            })
        {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs() as i64;
            let limit = self.max_token_lifetime.as_secs() as i64;
            return (exp - now > limit).then(|| {
                format!(
                    "token expires in {} days, more than the {} allowed",
                    (exp - now) / 86400,
                    limit / 86400
                )
            });
        }
        any_match(&self.long_lived_rules, &[rule.to_string()])
            .then(|| format!("{rule} credentials do not expire by default"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_come_from_urls() {
        assert_eq!(
            repository_name("https://github.com/acme/widgets"),
            "acme/widgets"
        );
        assert_eq!(repository_name("git@github.com:acme/w.git"), "acme/w");
        assert_eq!(ref_candidates("main"), ["main", "refs/heads/main"]);
    }
}
