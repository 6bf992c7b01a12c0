//! `[policies.NAME]`: which detections matter, how much, and what to do.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The built-in detections (see `docs/detections.md`).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Deserialize,
    Serialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DetectionKind {
    SecretLeak,
    IdentityOutOfContext,
    FingerprintSpread,
    LongLivedCredential,
    CredentialFileRead,
    RunnerMemoryRead,
    InteractiveHumanUse,
    BaselineDrift,
}

impl DetectionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SecretLeak => "secret_leak",
            Self::IdentityOutOfContext => "identity_out_of_context",
            Self::FingerprintSpread => "fingerprint_spread",
            Self::LongLivedCredential => "long_lived_credential",
            Self::CredentialFileRead => "credential_file_read",
            Self::RunnerMemoryRead => "runner_memory_read",
            Self::InteractiveHumanUse => "interactive_human_use",
            Self::BaselineDrift => "baseline_drift",
        }
    }

    /// The OWASP Non-Human Identities Top 10 (2025) item it addresses.
    pub fn owasp_nhi(self) -> &'static str {
        match self {
            Self::SecretLeak => "NHI2:2025 Secret Leakage",
            Self::IdentityOutOfContext => "NHI8:2025 Environment Isolation",
            Self::FingerprintSpread => "NHI9:2025 NHI Reuse",
            Self::LongLivedCredential => "NHI7:2025 Long-Lived Secrets",
            Self::CredentialFileRead => "NHI2:2025 Secret Leakage",
            Self::RunnerMemoryRead => "NHI2:2025 Secret Leakage",
            Self::InteractiveHumanUse => "NHI10:2025 Human Use of NHI",
            Self::BaselineDrift => "NHI8:2025 Environment Isolation",
        }
    }

    /// Severity when no policy says otherwise.
    pub fn default_severity(self) -> Severity {
        match self {
            Self::RunnerMemoryRead => Severity::Critical,
            Self::LongLivedCredential | Self::BaselineDrift => Severity::Medium,
            _ => Severity::High,
        }
    }
}

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    #[default]
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }
}

/// Finding confidence, ordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Confidence {
    Low,
    Medium,
    High,
}

impl Confidence {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "low" => Some(Self::Low),
            "medium" => Some(Self::Medium),
            "high" => Some(Self::High),
            _ => None,
        }
    }
}

/// A response, in graduated order.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    Annotate,
    Notify,
    Mask,
    Rotate,
    Revoke,
    Quarantine,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Annotate => "annotate",
            Self::Notify => "notify",
            Self::Mask => "mask",
            Self::Rotate => "rotate",
            Self::Revoke => "revoke",
            Self::Quarantine => "quarantine",
        }
    }
}

/// A string or a list of strings.
#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

impl<T: Clone> OneOrMany<T> {
    pub fn to_vec(&self) -> Vec<T> {
        match self {
            Self::One(t) => vec![t.clone()],
            Self::Many(v) => v.clone(),
        }
    }
}

/// Per-action overrides of the policy's `dry_run` / `require_approval`.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionOverride {
    pub dry_run: Option<bool>,
    pub require_approval: Option<bool>,
}

/// One `[policies.NAME]` table. Every condition given must hold; an empty
/// or absent condition matches anything.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Detections this policy is about (`"secret_leak"` or a list); all when absent.
    pub detection: Option<OneOrMany<DetectionKind>>,
    /// Finding rule ids (globs): `["github-pat", "aws-*"]`.
    #[serde(default)]
    pub rule: Vec<String>,
    /// Lowest finding confidence that matches.
    pub min_confidence: Option<Confidence>,
    /// Inventory identity ids (globs).
    #[serde(default)]
    pub identity: Vec<String>,
    /// Identity privilege tiers (globs).
    #[serde(default)]
    pub privilege_tier: Vec<String>,
    /// Repositories (globs over `owner/name` and the full URL).
    #[serde(default)]
    pub repository: Vec<String>,
    /// Refs (globs over the branch name and `refs/heads/<name>`).
    #[serde(default, rename = "ref")]
    pub refs: Vec<String>,
    /// Deployment environments (globs).
    #[serde(default)]
    pub environment: Vec<String>,
    /// Pipelines (globs over `cicd.pipeline.name`).
    #[serde(default)]
    pub pipeline: Vec<String>,
    #[serde(default)]
    pub severity: Severity,
    /// Actions in graduated order: annotate, notify, mask, rotate, revoke, quarantine.
    #[serde(default)]
    pub actions: Vec<ActionKind>,
    /// Nothing runs; each action is reported `skipped_dry_run`.
    #[serde(default)]
    pub dry_run: bool,
    /// Nothing runs; each action is proposed as `awaiting_approval`.
    #[serde(default)]
    pub require_approval: bool,
    /// Per-action overrides: `overrides = { notify = { require_approval = false } }`.
    #[serde(default)]
    pub overrides: BTreeMap<String, ActionOverride>,
    /// Command for rotate/revoke instead of the identity's `revocation.command`.
    #[serde(default)]
    pub command: Vec<String>,
    /// Webhook for `notify` instead of the transform's.
    pub notify_url: Option<String>,
}

impl PolicyConfig {
    /// Checks globs and overrides; errors name the field.
    pub fn check(&self) -> Result<(), String> {
        for (field, globs) in [
            ("rule", &self.rule),
            ("identity", &self.identity),
            ("privilege_tier", &self.privilege_tier),
            ("repository", &self.repository),
            ("ref", &self.refs),
            ("environment", &self.environment),
            ("pipeline", &self.pipeline),
        ] {
            for (i, g) in globs.iter().enumerate() {
                globset::Glob::new(g).map_err(|e| format!("{field}[{i}]: {e}"))?;
            }
        }
        for name in self.overrides.keys() {
            if !self.actions.iter().any(|a| a.as_str() == name) {
                return Err(format!(
                    "overrides.{name}: not one of this policy's actions"
                ));
            }
        }
        if self.command.first().is_some_and(|p| !p.starts_with('/')) {
            return Err(
                "command must start with an absolute path (it runs without a shell or PATH)".into(),
            );
        }
        if let Some(url) = &self.notify_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err("notify_url must be an http:// or https:// URL".into());
        }
        Ok(())
    }

    /// Whether `action` runs in dry-run mode / needs approval.
    pub fn dry_run_for(&self, action: ActionKind) -> bool {
        self.overrides
            .get(action.as_str())
            .and_then(|o| o.dry_run)
            .unwrap_or(self.dry_run)
    }

    pub fn approval_for(&self, action: ActionKind) -> bool {
        self.overrides
            .get(action.as_str())
            .and_then(|o| o.require_approval)
            .unwrap_or(self.require_approval)
    }
}
