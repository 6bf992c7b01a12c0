//! `type = "policy"`: turns findings and misuse events into alerts, and
//! alerts into graduated responses.
//!
//! Placed after `redact`, it looks at every `FINDING` span and at events
//! carrying `tailguard.misuse.kind`, and at the job and identity context of
//! every event. Each built-in detection (see `docs/detections.md`) becomes
//! an `ALERT <detection>` span per matching `[policies.NAME]` (or one with
//! the detection's default severity when none matches), and each of the
//! policy's actions an `ACTION <action>` span carrying its outcome. Actions
//! are run by [`crate::respond`].

pub mod config;
pub mod detections;
pub mod state;

#[cfg(test)]
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use crate::config::HumanDuration;
use crate::event::{Event, EventBatch, SpanData, SpanKind, SpanStatus, TraceIds};
use crate::respond::{Request, ResponderSettings, Responders};
use crate::topology::component::{ComponentTask, TransformContext};
use config::{ActionKind, PolicyConfig};
use detections::{Detection, Detector};
use tokio::sync::mpsc;

/// The transform's options: how detections are tuned and actions run.
/// The policies themselves are the top-level `[policies.NAME]` tables.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyTransformConfig {
    /// Absolute paths of the only programs rotate/revoke/quarantine may run.
    #[serde(default)]
    pub allowed_executables: Vec<String>,
    /// A command is killed after this long (default "30s").
    #[schemars(with = "Option<String>")]
    pub command_timeout: Option<HumanDuration>,
    /// Webhook `notify` posts to (a policy's `notify_url` overrides it).
    pub notify_url: Option<String>,
    /// Timeout of webhook and revocation-URL requests (default "10s").
    #[schemars(with = "Option<String>")]
    pub http_timeout: Option<HumanDuration>,
    /// Command (program and arguments, no shell) that stops this runner
    /// taking new jobs.
    #[serde(default)]
    pub quarantine_command: Vec<String>,
    /// The same (fingerprint or identity, action) runs once per window (default "1h").
    #[schemars(with = "Option<String>")]
    pub dedup_window: Option<HumanDuration>,
    /// At most `max` runs of each action per `per` (default 10 per "1h").
    pub rate_limit: Option<RateLimit>,
    /// Baseline drift: after this long, a new (identity, context) pair is an
    /// alert. Off when absent.
    #[schemars(with = "Option<String>")]
    pub learning_period: Option<HumanDuration>,
    /// Baseline drift by rate (with `learning_period`): an identity used by
    /// more job runs in one hour than `factor` times its mean per hour, and
    /// more than `min_runs` (default `{ factor = 3.0, min_runs = 10 }`).
    pub rate_spike: Option<RateSpikeConfig>,
    /// Rule ids whose secrets are long-lived by nature (default `["github-pat"]`).
    pub long_lived_rules: Option<Vec<String>>,
    /// A JWT finding carrying `tailguard.finding.jwt.exp` further out than
    /// this is long-lived (default "30d").
    #[schemars(with = "Option<String>")]
    pub max_token_lifetime: Option<HumanDuration>,
}

#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateSpikeConfig {
    pub factor: Option<f64>,
    pub min_runs: Option<u32>,
}

#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub max: u32,
    #[schemars(with = "String")]
    pub per: HumanDuration,
}

impl PolicyTransformConfig {
    pub(crate) fn check(&self) -> Result<(), String> {
        for (i, p) in self.allowed_executables.iter().enumerate() {
            if !p.starts_with('/') {
                return Err(format!("allowed_executables[{i}] must be an absolute path"));
            }
        }
        if self
            .quarantine_command
            .first()
            .is_some_and(|p| !p.starts_with('/'))
        {
            return Err("quarantine_command must start with an absolute path".into());
        }
        if let Some(url) = &self.notify_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err("notify_url must be an http:// or https:// URL".into());
        }
        Ok(())
    }
}

pub fn build(
    config: &PolicyTransformConfig,
    cx: TransformContext,
) -> anyhow::Result<ComponentTask> {
    let TransformContext {
        name,
        globals,
        mut input,
        mut out,
    } = cx;
    let mut engine = Engine::new(config, &name, &globals)?;
    // Actions run in their own task so a slow webhook or revocation command
    // (up to its timeout) never holds up the lines behind the alert: the
    // alert and its `annotate` go out with the batch, the other actions'
    // spans as they finish.
    let mut actor = engine.actor.take().expect("a new engine has its actor");
    let (jobs_tx, mut jobs_rx) = mpsc::channel::<ActionJob>(ACTION_QUEUE);
    let (done_tx, mut done_rx) = mpsc::channel::<Vec<Event>>(ACTION_QUEUE);
    let acting = tokio::spawn(async move {
        while let Some(job) = jobs_rx.recv().await {
            let spans = actor.run(job).await;
            if done_tx.send(spans).await.is_err() {
                break;
            }
        }
    });
    Ok(Box::pin(async move {
        loop {
            tokio::select! {
                received = input.recv() => match received {
                    Some(mut batch) => {
                        engine.process(&mut batch).await;
                        out.send(batch).await?;
                        for job in engine.queued.drain(..) {
                            if let Err(full) = jobs_tx.try_send(job) {
                                let job = full.into_inner();
                                tracing::warn!(transform = %name, actions = job.actions.len(),
                                    "response actions queue full; this alert's actions were dropped");
                                crate::observe::metrics::metrics()
                                    .actions
                                    .get_or_create(&crate::observe::metrics::outcome(&name, "dropped_queue_full"))
                                    .inc_by(job.actions.len() as u64);
                            }
                        }
                    }
                    None => break,
                },
                Some(spans) = done_rx.recv() => out.send(spans).await?,
            }
        }
        // Input ended: let the queued actions finish (each is bounded by its
        // timeout) and send their spans.
        drop(jobs_tx);
        while let Some(spans) = done_rx.recv().await {
            out.send(spans).await?;
        }
        let _ = acting.await;
        engine.detector.store.save();
        Ok(())
    }))
}

/// Alerts whose actions may wait for the actor task before new ones are
/// dropped (and counted).
const ACTION_QUEUE: usize = 1024;

/// The actions one policy asks for one detection, run in graduated order.
struct ActionJob {
    policy: usize,
    alert: Event,
    detection: Detection,
    actions: Vec<ActionKind>,
}

/// Runs response actions; owns the responders' state (dedup, rate limits,
/// the mask list).
struct Actor {
    responders: Responders,
    policies: Arc<[CompiledPolicy]>,
}

impl Actor {
    /// The `ACTION` spans of a job's actions, in order.
    async fn run(&mut self, job: ActionJob) -> Vec<Event> {
        let policy = &self.policies[job.policy];
        let values = job
            .detection
            .placeholders(&policy.name, policy.config.severity.as_str());
        let dedup_key = job.detection.dedup_key();
        let mut spans = Vec::new();
        for action in job.actions {
            let request = Request {
                action,
                alert: &job.alert.attributes,
                values: &values,
                dedup_key: &dedup_key,
                identity: job.detection.identity.as_ref(),
                command: &policy.config.command,
                notify_url: policy.config.notify_url.as_deref(),
                dry_run: policy.config.dry_run_for(action),
                require_approval: policy.config.approval_for(action),
            };
            let outcome = self.responders.act(&request).await;
            let proposal = (outcome == crate::respond::Outcome::AwaitingApproval
                || outcome == crate::respond::Outcome::SkippedDryRun)
                .then(|| proposal(action, &policy.config, &job.detection));
            spans.push(action_span(
                &job.alert,
                &job.detection,
                action,
                &outcome,
                proposal,
            ));
        }
        spans
    }
}

struct CompiledPolicy {
    name: String,
    config: PolicyConfig,
    matcher: detections::PolicyMatcher,
}

/// Detection, policy matching and response, batch by batch.
pub struct Engine {
    detector: Detector,
    policies: Arc<[CompiledPolicy]>,
    /// Runs actions inline while the engine has it (unit tests); `build`
    /// moves it to a task of its own.
    actor: Option<Actor>,
    /// Actions decided by the last `process`, for the actor task.
    queued: Vec<ActionJob>,
}

impl Engine {
    pub fn new(
        config: &PolicyTransformConfig,
        name: &str,
        globals: &crate::topology::component::Globals,
    ) -> anyhow::Result<Self> {
        let dir = globals.data_dir.join(name);
        std::fs::create_dir_all(&dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        let mut policies = Vec::new();
        for (policy_name, policy) in globals.policies.iter() {
            policies.push(CompiledPolicy {
                name: policy_name.clone(),
                matcher: detections::PolicyMatcher::new(policy)
                    .map_err(|e| anyhow::anyhow!("policies.{policy_name}.{e}"))?,
                config: policy.clone(),
            });
        }
        let rate = config.rate_limit.clone().unwrap_or(RateLimit {
            max: 10,
            per: HumanDuration(Duration::from_secs(3600)),
        });
        let responders = Responders::new(ResponderSettings {
            data_dir: globals.data_dir.clone(),
            component: Arc::from(name),
            allowed_executables: config.allowed_executables.clone(),
            command_timeout: config
                .command_timeout
                .map_or(Duration::from_secs(30), |d| d.0),
            notify_url: config.notify_url.clone(),
            http_timeout: config.http_timeout.map_or(Duration::from_secs(10), |d| d.0),
            quarantine_command: config.quarantine_command.clone(),
            dedup_window: config
                .dedup_window
                .map_or(Duration::from_secs(3600), |d| d.0),
            rate_limit_max: rate.max,
            rate_limit_per: rate.per.0,
        });
        let detector = Detector::new(
            Arc::clone(&globals.inventory),
            state::Store::open(&dir),
            config.learning_period.map(|d| d.0),
            detections::RateSpike {
                factor: config
                    .rate_spike
                    .as_ref()
                    .and_then(|r| r.factor)
                    .unwrap_or(3.0),
                min_runs: config
                    .rate_spike
                    .as_ref()
                    .and_then(|r| r.min_runs)
                    .unwrap_or(10),
            },
            config
                .long_lived_rules
                .clone()
                .unwrap_or_else(|| vec!["github-pat".into()]),
            config
                .max_token_lifetime
                .map_or(Duration::from_secs(30 * 86400), |d| d.0),
        );
        tracing::info!(transform = %name, policies = policies.len(), "policy engine ready");
        let policies: Arc<[CompiledPolicy]> = policies.into();
        Ok(Self {
            detector,
            actor: Some(Actor {
                responders,
                policies: Arc::clone(&policies),
            }),
            policies,
            queued: Vec::new(),
        })
    }

    /// Appends alert and action spans for what the batch shows.
    pub async fn process(&mut self, batch: &mut EventBatch) {
        let mut found = Vec::new();
        for event in batch.iter() {
            self.detector.detect(event, &mut found);
        }
        self.detector.store.save();
        for detection in found {
            self.respond(&detection, batch).await;
        }
    }

    async fn respond(&mut self, detection: &Detection, batch: &mut EventBatch) {
        let matching: Vec<usize> = self
            .policies
            .iter()
            .enumerate()
            .filter(|(_, p)| p.matcher.matches(detection))
            .map(|(i, _)| i)
            .collect();
        if matching.is_empty() {
            let alert = alert_span(detection, None, detection.kind.default_severity().as_str());
            let annotate = annotation(&alert, detection);
            batch.push(alert);
            batch.push(annotate);
            return;
        }
        for i in matching {
            let policy = &self.policies[i];
            let alert = alert_span(
                detection,
                Some(&policy.name),
                policy.config.severity.as_str(),
            );
            // `annotate` (the alert itself) is always done at once; the
            // others are graduated steps for the actor.
            let annotate = annotation(&alert, detection);
            let actions: Vec<ActionKind> = policy
                .config
                .actions
                .iter()
                .copied()
                .filter(|a| *a != ActionKind::Annotate)
                .collect();
            let job = ActionJob {
                policy: i,
                alert: alert.clone(),
                detection: detection.clone(),
                actions,
            };
            batch.push(alert);
            batch.push(annotate);
            if job.actions.is_empty() {
                continue;
            }
            match &mut self.actor {
                Some(actor) => {
                    let spans = actor.run(job).await;
                    batch.extend(spans);
                }
                None => self.queued.push(job),
            }
        }
    }
}

/// The `annotate` action of an alert: done the moment the alert exists.
fn annotation(alert: &Event, detection: &Detection) -> Event {
    action_span(
        alert,
        detection,
        ActionKind::Annotate,
        &crate::respond::Outcome::Done,
        None,
    )
}

/// What an action would do, for a proposal span: the program only (its
/// arguments come from event data and are shown as placeholders).
fn proposal(action: ActionKind, policy: &PolicyConfig, detection: &Detection) -> String {
    let revocation = detection.identity.as_ref().map(|i| &i.config.revocation);
    match action {
        ActionKind::Rotate | ActionKind::Revoke => {
            let template = if !policy.command.is_empty() {
                Some(&policy.command)
            } else {
                revocation.map(|r| &r.command).filter(|c| !c.is_empty())
            };
            match (template, revocation.and_then(|r| r.url.as_ref())) {
                (Some(t), _) => format!("run {}", t.join(" ")),
                (None, Some(url)) => format!("POST {url}"),
                (None, None) => "no revocation method on record".into(),
            }
        }
        ActionKind::Quarantine => "run the configured quarantine_command".into(),
        ActionKind::Notify => "POST the alert to the webhook".into(),
        ActionKind::Mask => "add the fingerprint to mask-fingerprints.json".into(),
        ActionKind::Annotate => "annotate".into(),
    }
}

fn ms_since(t: SystemTime) -> f64 {
    SystemTime::now()
        .duration_since(t)
        .unwrap_or_default()
        .as_secs_f64()
        * 1000.0
}

fn alert_span(detection: &Detection, policy: Option<&str>, severity: &str) -> Event {
    let now = SystemTime::now();
    let ids = detection
        .trace
        .map_or_else(TraceIds::new_root, |t| t.child());
    let span = SpanData {
        name: format!("ALERT {}", detection.kind.as_str()),
        ids,
        parent_span_id: detection.trace.map(|t| t.span_id),
        kind: SpanKind::Internal,
        start: detection.seen_at,
        end: now,
        status: SpanStatus::Unset,
    };
    let mut event = Event::span(
        span,
        detection.origin.clone(),
        Arc::clone(&detection.context),
    );
    let a = &mut event.attributes;
    a.insert("tailguard.alert.detection", detection.kind.as_str());
    a.insert("tailguard.alert.severity", severity);
    a.insert("tailguard.alert.owasp_nhi", detection.kind.owasp_nhi());
    a.insert("tailguard.alert.reason", detection.reason.as_str());
    if let Some(policy) = policy {
        a.insert("tailguard.alert.policy", policy);
    }
    a.insert("security_rule.name", detection.kind.as_str());
    a.insert("security_rule.category", "non_human_identity");
    a.insert("security_rule.reference", detection.kind.owasp_nhi());
    a.insert("security_rule.ruleset.name", "tailguard-policy");
    a.insert("security_rule.version", env!("CARGO_PKG_VERSION"));
    for (key, value) in detection.attributes.iter() {
        a.insert(key.to_string(), value.clone());
    }
    if let Some(identity) = &detection.identity {
        for (key, value) in identity.attributes().iter() {
            if detection.context.identity.get(key) != Some(value) {
                a.insert(key.to_string(), value.clone());
            }
        }
    }
    if let Some(ttd) = detection.time_to_detect_ms {
        a.insert("tailguard.alert.time_to_detect_ms", ttd);
    } else {
        a.insert(
            "tailguard.alert.time_to_detect_ms",
            ms_since(detection.seen_at),
        );
    }
    event
}

fn action_span(
    alert: &Event,
    detection: &Detection,
    action: ActionKind,
    outcome: &crate::respond::Outcome,
    proposal: Option<String>,
) -> Event {
    let now = SystemTime::now();
    let parent = alert.trace.expect("spans carry ids");
    let span = SpanData {
        name: format!("ACTION {}", action.as_str()),
        ids: parent.child(),
        parent_span_id: Some(parent.span_id),
        kind: SpanKind::Internal,
        start: alert.as_span().map_or(now, |s| s.end),
        end: now,
        status: match outcome {
            crate::respond::Outcome::Failed(reason) => SpanStatus::Error(reason.clone()),
            _ => SpanStatus::Unset,
        },
    };
    let mut event = Event::span(span, alert.origin.clone(), Arc::clone(&alert.context));
    let a = &mut event.attributes;
    a.insert("tailguard.action.name", action.as_str());
    a.insert("tailguard.action.outcome", outcome.as_str());
    if let crate::respond::Outcome::Failed(reason) = outcome {
        a.insert("tailguard.action.reason", reason.as_str());
    }
    if let Some(proposal) = proposal {
        a.insert("tailguard.action.proposal", proposal);
    }
    a.insert(
        "tailguard.action.time_to_act_ms",
        ms_since(detection.seen_at),
    );
    for key in [
        "tailguard.alert.detection",
        "tailguard.alert.severity",
        "tailguard.alert.policy",
        "tailguard.finding.fingerprint",
        "nhi.identity.id",
    ] {
        if let Some(v) = alert.attributes.get(key) {
            a.insert(key, v.clone());
        }
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Attributes, Origin};
    use crate::topology::component::Globals;

    fn engine(dir: &std::path::Path, policies: &str) -> Engine {
        let parsed: BTreeMap<String, PolicyConfig> = toml::from_str(policies).unwrap();
        let globals = Globals {
            data_dir: dir.to_path_buf(),
            policies: Arc::new(parsed.into_iter().collect()),
            ..Globals::default()
        };
        Engine::new(&PolicyTransformConfig::default(), "policy", &globals).unwrap()
    }

    /// An engine configured by `config` whose inventory holds `deploy-bot`.
    fn deploy_bot_engine(dir: &std::path::Path, config: &str) -> Engine {
        let identity: crate::identity::inventory::IdentityConfig =
            toml::from_str("kind = \"bot_token\"\nowner = { team = \"platform\" }").unwrap();
        let globals = Globals {
            data_dir: dir.to_path_buf(),
            inventory: Arc::new(crate::identity::inventory::Inventory::new([(
                "deploy-bot".to_string(),
                identity,
            )])),
            ..Globals::default()
        };
        let config: PolicyTransformConfig = toml::from_str(config).unwrap();
        Engine::new(&config, "policy", &globals).unwrap()
    }

    #[tokio::test]
    async fn a_new_identity_context_after_the_learning_period_is_drift() {
        let dir = tempfile::tempdir().unwrap();
        let mut engine = deploy_bot_engine(dir.path(), "learning_period = \"0s\"");
        let job = |repo: &str| {
            let mut context = crate::event::Context::default();
            context.identity.insert("nhi.identity.id", "deploy-bot");
            context.identity.insert(
                "vcs.repository.url.full",
                format!("https://github.com/{repo}"),
            );
            Arc::new(context)
        };
        let widgets = job("acme/widgets");
        let mut drift = 0;
        for context in [
            &widgets,
            &widgets,
            &job("acme/widgets"),
            &job("acme/gadgets"),
        ] {
            let mut batch = vec![Event::new(
                &b"line"[..],
                Origin::default(),
                Arc::clone(context),
            )];
            engine.process(&mut batch).await;
            drift += spans(&batch)
                .iter()
                .filter(|(n, _)| n == "ALERT baseline_drift")
                .count();
        }
        assert_eq!(drift, 2, "one per new (identity, context) pair");
    }

    #[tokio::test]
    async fn many_more_job_runs_than_usual_are_a_rate_spike() {
        let dir = tempfile::tempdir().unwrap();
        let mut engine = deploy_bot_engine(
            dir.path(),
            "learning_period = \"0s\"\nrate_spike = { min_runs = 3 }",
        );
        let run = |id: &str| {
            let mut context = crate::event::Context::default();
            context.identity.insert("nhi.identity.id", "deploy-bot");
            context
                .identity
                .insert("vcs.repository.url.full", "https://github.com/acme/widgets");
            context
                .identity
                .insert("cicd.pipeline.run.id", id.to_string());
            Arc::new(context)
        };
        let mut spikes = Vec::new();
        // Run 2 is seen twice (two steps of one run): it counts once.
        for id in ["1", "2", "2", "3", "4", "5"] {
            let mut batch = vec![Event::new(&b"line"[..], Origin::default(), run(id))];
            engine.process(&mut batch).await;
            for (name, attributes) in spans(&batch) {
                if name == "ALERT baseline_drift"
                    && attributes
                        .get("tailguard.alert.drift")
                        .map(|v| v.to_string())
                        == Some("rate_spike".into())
                {
                    spikes.push((id, attributes));
                }
            }
        }
        assert_eq!(spikes.len(), 1, "{spikes:?}");
        assert_eq!(spikes[0].0, "4", "the fourth distinct run is above 3");
        assert_eq!(
            spikes[0]
                .1
                .get("tailguard.alert.runs_this_hour")
                .unwrap()
                .to_string(),
            "4"
        );
    }

    fn misuse(attrs: &[(&'static str, &str)]) -> Event {
        let mut e = Event::new(&b"x"[..], Origin::default(), Arc::default());
        e.attributes = attrs.iter().map(|(k, v)| (*k, *v)).collect::<Attributes>();
        e
    }

    fn spans(batch: &[Event]) -> Vec<(String, Attributes)> {
        batch
            .iter()
            .filter_map(|e| e.as_span().map(|s| (s.name.clone(), e.attributes.clone())))
            .collect()
    }

    #[tokio::test]
    async fn misuse_events_become_alerts_without_command_lines() {
        let dir = tempfile::tempdir().unwrap();
        let mut engine = engine(
            dir.path(),
            "[mem]\ndetection = \"runner_memory_read\"\nseverity = \"critical\"\nactions = [\"notify\"]\ndry_run = true\n",
        );
        let mut batch = vec![
            misuse(&[
                ("tailguard.misuse.kind", "ptrace"),
                ("process.command_line", "gdb -p 1234 secret-ish"),
                ("process.pid", "300"),
            ]),
            misuse(&[
                ("tailguard.credential.operation", "read"),
                ("tailguard.credential.attribution", "unknown"),
                ("file.path", "/home/runner/.aws/credentials"),
            ]),
            misuse(&[
                ("tailguard.credential.operation", "read"),
                ("tailguard.credential.attribution", "single_running_job"),
            ]),
        ];
        engine.process(&mut batch).await;
        let spans = spans(&batch);
        let names: Vec<&str> = spans.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "ALERT runner_memory_read",
                "ACTION annotate",
                "ACTION notify",
                "ALERT credential_file_read",
                "ACTION annotate",
            ]
        );
        let alert = &spans[0].1;
        assert_eq!(
            alert.get("tailguard.alert.severity").unwrap().to_string(),
            "critical"
        );
        assert_eq!(alert.get("process.pid").unwrap().to_string(), "300");
        assert!(alert.get("process.command_line").is_none());
        assert_eq!(
            spans[2]
                .1
                .get("tailguard.action.outcome")
                .unwrap()
                .to_string(),
            "skipped_dry_run"
        );
        // No policy for credential reads: default severity, annotate only.
        assert_eq!(
            spans[3]
                .1
                .get("tailguard.alert.severity")
                .unwrap()
                .to_string(),
            "high"
        );
        assert!(spans[3].1.get("tailguard.alert.policy").is_none());
    }

    #[tokio::test]
    async fn repeated_actions_are_deduplicated_and_rate_limited() {
        let dir = tempfile::tempdir().unwrap();
        let mut engine = engine(dir.path(), "[p]\nactions = [\"mask\"]\n");
        let finding = |fp: &str| {
            let span = SpanData {
                name: "FINDING github-pat".into(),
                ids: TraceIds::new_root(),
                parent_span_id: None,
                kind: SpanKind::Internal,
                start: SystemTime::now(),
                end: SystemTime::now(),
                status: SpanStatus::Unset,
            };
            let mut e = Event::span(span, Origin::default(), Arc::default());
            e.attributes
                .insert("tailguard.finding.rule_id", "aws-access-key-id");
            e.attributes
                .insert("tailguard.finding.fingerprint", fp.to_string());
            e
        };
        let mut outcomes = Vec::new();
        // One fingerprint twice (deduplicated), then 12 more: past the
        // default limit of 10 runs per hour.
        let fingerprints = ["a1".to_string(), "a1".to_string()]
            .into_iter()
            .chain((0..12).map(|i| format!("b{i}")));
        for fp in fingerprints {
            let mut batch = vec![finding(&fp)];
            engine.process(&mut batch).await;
            for (name, a) in spans(&batch) {
                if name == "ACTION mask" {
                    outcomes.push(a.get("tailguard.action.outcome").unwrap().to_string());
                }
            }
        }
        assert_eq!(outcomes[0], "done");
        assert_eq!(outcomes[1], "deduplicated");
        assert_eq!(outcomes.iter().filter(|o| *o == "done").count(), 10);
        assert_eq!(outcomes.last().unwrap(), "rate_limited");
        let masked = std::fs::read_to_string(dir.path().join("mask-fingerprints.json")).unwrap();
        assert!(masked.contains("a1"));
    }
}
