//! Responders: what a policy does about an alert, graduated and safe.
//!
//! `annotate` (the spans themselves), `notify` (an HTTP webhook with a JSON
//! body of the alert's attributes), `mask` (records the fingerprint in
//! `data_dir/mask-fingerprints.json`), `rotate` / `revoke` (the identity's
//! revocation command or URL, or the policy's command) and `quarantine` (a
//! configured command that stops the runner taking jobs).
//!
//! Safety rules, all enforced here:
//!
//! - commands run without a shell: program and arguments go straight to
//!   `execve`; a placeholder (`{identity}`, `{fingerprint}`, ...) is replaced
//!   inside one argument and can never split it, add one, or reach a shell;
//! - a value that would start an argument with `-` (read as an option) or
//!   holds a NUL byte refuses the action;
//! - the program must be an absolute path listed in `allowed_executables`;
//! - the environment is cleared (only `PATH=/usr/bin:/bin`), stdin is
//!   closed, output is discarded, and the process is killed at the timeout;
//! - the same (fingerprint or identity, action) runs at most once per
//!   `dedup_window`, and each action at most `rate_limit.max` times per
//!   `rate_limit.per`;
//! - `dry_run` and `require_approval` run nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::event::{Attributes, Value};
use crate::identity::inventory::Identity;
use crate::transforms::policy::config::ActionKind;

/// The only `PATH` a command sees.
pub const COMMAND_PATH: &str = "/usr/bin:/bin";
/// Fingerprints remembered for masking.
const MAX_MASKED: usize = 10_000;

/// How actions run; from the policy transform's options.
#[derive(Clone, Debug)]
pub struct ResponderSettings {
    pub data_dir: PathBuf,
    pub component: Arc<str>,
    pub allowed_executables: Vec<String>,
    pub command_timeout: Duration,
    pub notify_url: Option<String>,
    pub http_timeout: Duration,
    pub quarantine_command: Vec<String>,
    pub dedup_window: Duration,
    pub rate_limit_max: u32,
    pub rate_limit_per: Duration,
}

/// What one action is about.
pub struct Request<'a> {
    pub action: ActionKind,
    /// The alert span's attributes: the notify body.
    pub alert: &'a Attributes,
    /// Placeholder values (`identity`, `fingerprint`, `rule`, ...).
    pub values: &'a BTreeMap<&'static str, String>,
    /// Deduplication key: the fingerprint, else the identity, else the
    /// detection and its subject.
    pub dedup_key: &'a str,
    pub identity: Option<&'a Arc<Identity>>,
    /// The policy's own rotate/revoke command, if any.
    pub command: &'a [String],
    /// The policy's own webhook, if any.
    pub notify_url: Option<&'a str>,
    pub dry_run: bool,
    pub require_approval: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Failed(String),
    SkippedDryRun,
    AwaitingApproval,
    Deduplicated,
    RateLimited,
}

impl Outcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Done => "done",
            Self::Failed(_) => "failed",
            Self::SkippedDryRun => "skipped_dry_run",
            Self::AwaitingApproval => "awaiting_approval",
            Self::Deduplicated => "deduplicated",
            Self::RateLimited => "rate_limited",
        }
    }
}

pub struct Responders {
    settings: ResponderSettings,
    dedup: HashMap<(String, ActionKind), Instant>,
    rate: HashMap<ActionKind, VecDeque<Instant>>,
    client: Option<reqwest::Client>,
    masked: BTreeSet<String>,
}

impl Responders {
    pub fn new(settings: ResponderSettings) -> Self {
        let masked = std::fs::read(settings.data_dir.join(MASK_LIST_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice::<MaskFile>(&b).ok())
            .map(|m| m.fingerprints.into_iter().collect())
            .unwrap_or_default();
        Self {
            settings,
            dedup: HashMap::new(),
            rate: HashMap::new(),
            client: None,
            masked,
        }
    }

    /// Decides and, when allowed, runs one action.
    pub async fn act(&mut self, request: &Request<'_>) -> Outcome {
        let outcome = self.decide_and_run(request).await;
        if let Outcome::Failed(reason) = &outcome {
            tracing::warn!(
                component = %self.settings.component,
                action = request.action.as_str(),
                "response action failed: {reason}"
            );
        }
        crate::observe::metrics::metrics()
            .actions
            .get_or_create(&crate::observe::metrics::outcome(
                &self.settings.component,
                outcome.as_str(),
            ))
            .inc();
        outcome
    }

    async fn decide_and_run(&mut self, request: &Request<'_>) -> Outcome {
        let action = request.action;
        if action == ActionKind::Annotate {
            return Outcome::Done;
        }
        let now = Instant::now();
        let key = (request.dedup_key.to_string(), action);
        if let Some(at) = self.dedup.get(&key)
            && now.duration_since(*at) < self.settings.dedup_window
        {
            return Outcome::Deduplicated;
        }
        if self.dedup.len() >= 10_000 {
            let window = self.settings.dedup_window;
            self.dedup.retain(|_, at| now.duration_since(*at) < window);
        }
        self.dedup.insert(key, now);
        if request.dry_run {
            return Outcome::SkippedDryRun;
        }
        if request.require_approval {
            return Outcome::AwaitingApproval;
        }
        let recent = self.rate.entry(action).or_default();
        while recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.settings.rate_limit_per)
        {
            recent.pop_front();
        }
        if recent.len() >= self.settings.rate_limit_max as usize {
            return Outcome::RateLimited;
        }
        recent.push_back(now);
        match self.run(request).await {
            Ok(()) => Outcome::Done,
            Err(reason) => Outcome::Failed(reason),
        }
    }

    async fn run(&mut self, request: &Request<'_>) -> Result<(), String> {
        match request.action {
            ActionKind::Annotate => Ok(()),
            ActionKind::Notify => {
                let url = request
                    .notify_url
                    .map(str::to_string)
                    .or_else(|| self.settings.notify_url.clone())
                    .ok_or("no notify_url configured")?;
                self.post(&url, request).await
            }
            ActionKind::Mask => self.mask(request.values.get("fingerprint")),
            ActionKind::Rotate | ActionKind::Revoke => {
                let revocation = request.identity.map(|i| &i.config.revocation);
                let template: &[String] = if !request.command.is_empty() {
                    request.command
                } else if let Some(r) = revocation.filter(|r| !r.command.is_empty()) {
                    &r.command
                } else if let Some(url) = revocation.and_then(|r| r.url.clone()) {
                    return self.post(&url, request).await;
                } else {
                    return Err("no revocation command or URL for this identity or policy".into());
                };
                let argv = fill(template, request.values)?;
                run_command(
                    &argv,
                    &self.settings.allowed_executables,
                    self.settings.command_timeout,
                )
                .await
            }
            ActionKind::Quarantine => {
                if self.settings.quarantine_command.is_empty() {
                    return Err("no quarantine_command configured".into());
                }
                let argv = fill(&self.settings.quarantine_command, request.values)?;
                run_command(
                    &argv,
                    &self.settings.allowed_executables,
                    self.settings.command_timeout,
                )
                .await
            }
        }
    }

    async fn post(&mut self, url: &str, request: &Request<'_>) -> Result<(), String> {
        if self.client.is_none() {
            let _ = rustls::crypto::ring::default_provider().install_default();
            self.client = Some(
                reqwest::Client::builder()
                    .timeout(self.settings.http_timeout)
                    .user_agent(concat!("tailguard/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .map_err(|e| format!("cannot build an HTTP client: {e}"))?,
            );
        }
        let client = self.client.as_ref().expect("built above");
        let mut body = attributes_json(request.alert);
        body.insert(
            "tailguard.action.name".into(),
            request.action.as_str().into(),
        );
        let bytes = serde_json::to_vec(&body).map_err(|e| e.to_string())?;
        let response = client
            .post(url)
            .header("content-type", "application/json")
            .body(bytes)
            .send()
            .await
            .map_err(|e| format!("POST failed: {}", without_url(&e)))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("POST answered {}", response.status()))
        }
    }

    fn mask(&mut self, fingerprint: Option<&String>) -> Result<(), String> {
        let fp = fingerprint
            .filter(|f| !f.is_empty())
            .ok_or("no fingerprint to mask")?;
        if !self.masked.insert(fp.clone()) {
            return Ok(());
        }
        while self.masked.len() > MAX_MASKED {
            let first = self.masked.iter().next().cloned();
            if let Some(first) = first {
                self.masked.remove(&first);
            }
        }
        let file = MaskFile {
            version: 1,
            fingerprints: self.masked.iter().cloned().collect(),
        };
        crate::transforms::policy::state::write_atomically(
            &self.settings.data_dir.join(MASK_LIST_FILE),
            &file,
        )
        .map_err(|e| format!("cannot write mask-fingerprints.json: {e}"))
    }
}

/// The mask list in `data_dir`: written by the `mask` responder, read by
/// every `tailguard exec` wrapper on the host.
pub const MASK_LIST_FILE: &str = "mask-fingerprints.json";

/// The mask list's contents.
#[derive(serde::Deserialize, serde::Serialize)]
pub struct MaskFile {
    pub version: u32,
    /// Full or short (12-hex) fingerprints.
    pub fingerprints: Vec<String>,
}

fn without_url(e: &reqwest::Error) -> String {
    // The URL may carry a token in its query: never log it.
    let mut e = e.to_string();
    if let Some(at) = e.find(" for url (") {
        e.truncate(at);
    }
    e
}

/// Attributes as a JSON object.
pub fn attributes_json(attributes: &Attributes) -> serde_json::Map<String, serde_json::Value> {
    attributes
        .iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => serde_json::Value::from(s.as_ref()),
                Value::Int(i) => (*i).into(),
                Value::Float(f) => (*f).into(),
                Value::Bool(b) => (*b).into(),
            };
            (k.to_string(), v)
        })
        .collect()
}

/// Fills `{name}` placeholders in each argument of `template`. A value
/// stays inside the argument it was written in: the result has exactly as
/// many arguments as the template. A value holding a NUL byte, or one that
/// would start an argument with `-`, refuses the whole command. Unknown
/// names are left as written.
pub fn fill(
    template: &[String],
    values: &BTreeMap<&'static str, String>,
) -> Result<Vec<String>, String> {
    template
        .iter()
        .enumerate()
        .map(|(i, arg)| {
            if i == 0 {
                // The program is never filled from event data.
                return Ok(arg.clone());
            }
            let mut out = String::with_capacity(arg.len());
            let mut rest = arg.as_str();
            while let Some(open) = rest.find('{') {
                out.push_str(&rest[..open]);
                let after = &rest[open + 1..];
                let name = after.find('}').map(|close| &after[..close]);
                match name.and_then(|n| values.get_key_value(n)) {
                    Some((name, value)) => {
                        if value.contains('\0') {
                            return Err(format!("the value of {{{name}}} holds a NUL byte"));
                        }
                        if out.is_empty() && value.starts_with('-') {
                            return Err(format!(
                                "the value of {{{name}}} starts with '-' and would be read as an option"
                            ));
                        }
                        out.push_str(value);
                        rest = &after[name.len() + 1..];
                    }
                    None => {
                        out.push('{');
                        rest = after;
                    }
                }
            }
            out.push_str(rest);
            Ok(out)
        })
        .collect()
}

/// Runs `argv` without a shell, if its program is allowed; waits at most
/// `timeout`, killing it then.
pub async fn run_command(
    argv: &[String],
    allowed: &[String],
    timeout: Duration,
) -> Result<(), String> {
    let program = argv.first().ok_or("empty command")?;
    if !program.starts_with('/') {
        return Err(format!("{program} is not an absolute path"));
    }
    if !allowed.iter().any(|a| a == program) {
        return Err(format!("{program} is not in allowed_executables"));
    }
    let mut child = tokio::process::Command::new(program)
        .args(&argv[1..])
        .env_clear()
        .env("PATH", COMMAND_PATH)
        .current_dir("/")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(format!("{program} exited with {status}")),
        Ok(Err(e)) => Err(format!("waiting for {program}: {e}")),
        Err(_) => {
            let _ = child.kill().await;
            Err(format!(
                "{program} timed out after {timeout:?} and was killed"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&'static str, &str)]) -> BTreeMap<&'static str, String> {
        pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
    }

    #[test]
    fn placeholders_stay_inside_their_argument() {
        let nasty = "a b; rm -rf / $(touch /tmp/pwned) `x` {rule}";
        let v = values(&[("identity", nasty), ("rule", "github-pat")]);
        let t: Vec<String> = ["/bin/x", "{identity}", "--rule={rule}", "{nope}"]
            .map(String::from)
            .to_vec();
        let argv = fill(&t, &v).unwrap();
        assert_eq!(argv, ["/bin/x", nasty, "--rule=github-pat", "{nope}"]);
    }

    #[test]
    fn option_like_and_nul_values_are_refused() {
        let t: Vec<String> = ["/bin/x", "{identity}"].map(String::from).to_vec();
        assert!(fill(&t, &values(&[("identity", "--all")])).is_err());
        assert!(fill(&t, &values(&[("identity", "a\0b")])).is_err());
        let t: Vec<String> = ["/bin/x", "--id={identity}"].map(String::from).to_vec();
        assert!(fill(&t, &values(&[("identity", "-x")])).is_ok());
    }

    #[tokio::test]
    async fn only_allowed_absolute_programs_run() {
        let t = Duration::from_secs(5);
        let argv = vec!["/bin/true".to_string()];
        assert!(run_command(&argv, &[], t).await.is_err());
        assert!(
            run_command(&["true".into()], &["true".into()], t)
                .await
                .is_err()
        );
        assert!(run_command(&argv, &["/bin/true".into()], t).await.is_ok());
        let sleep = vec!["/bin/sleep".to_string(), "10".into()];
        let err = run_command(&sleep, &["/bin/sleep".into()], Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(err.contains("timed out"), "{err}");
    }
}
