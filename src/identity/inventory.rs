//! The non-human identity inventory: `[identities.ID]` tables.
//!
//! Each entry says what the identity is, who owns it, where it may be used,
//! how its secrets are recognised, and how to rotate or revoke it, so an
//! alert about it names an owner and a response (OWASP Non-Human Identities
//! Top 10: NHI-1 improper offboarding and NHI-7 long-lived secrets need an
//! owner and a revocation path on record).
//!
//! The inventory never holds a secret: only environment variable names,
//! file paths, and keyed fingerprints (`tailguard identities fingerprint`).
//! Events and findings tied to an identity carry its record under the
//! `nhi.*` attributes listed in [`Identity::attributes`].

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use crate::detect::Fingerprint;
use crate::event::Attributes;

#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Owner {
    pub team: String,
    /// Where to reach the team: a channel, an address, a pager.
    #[serde(default)]
    pub contact: Option<String>,
}

/// Where an identity may be used; globs. Empty lists allow anything.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Allowed {
    #[serde(default)]
    pub repositories: Vec<String>,
    #[serde(default)]
    pub refs: Vec<String>,
    #[serde(default)]
    pub environments: Vec<String>,
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub pipelines: Vec<String>,
}

/// How the identity's secrets are recognised, without holding them.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretRefs {
    /// Environment variables that hold its secrets in jobs.
    #[serde(default)]
    pub env: Vec<String>,
    /// Files that hold its secrets (credential files).
    #[serde(default)]
    pub files: Vec<String>,
    /// Keyed fingerprints of its secret values (64 hex digits, from
    /// `tailguard identities fingerprint`), made with the fleet key.
    #[serde(default)]
    pub fingerprints: Vec<String>,
}

/// How to take the identity's access away.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    /// A command (program and arguments, run without a shell) that rotates
    /// or revokes it.
    #[serde(default)]
    pub command: Vec<String>,
    /// Or an HTTP endpoint that does.
    #[serde(default)]
    pub url: Option<String>,
    /// The runbook a person follows.
    #[serde(default)]
    pub runbook: Option<String>,
}

#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// service_account, api_key, deploy_key, oidc_workload, bot_token,
    /// ssh_key, ... (free text, shown as is).
    pub kind: String,
    pub owner: Owner,
    #[serde(default)]
    pub environment: Option<String>,
    /// How much damage a misuse can do (e.g. tier0 .. tier3, or low/high).
    #[serde(default)]
    pub privilege_tier: Option<String>,
    #[serde(default)]
    pub allowed: Allowed,
    #[serde(default)]
    pub secrets: SecretRefs,
    #[serde(default)]
    pub revocation: Revocation,
    /// Longest a credential may live before it must be rotated ("90d").
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub max_age: Option<crate::config::HumanDuration>,
}

impl IdentityConfig {
    /// Checks fingerprints and globs; errors name the field.
    pub fn check(&self) -> Result<(), String> {
        for (i, fp) in self.secrets.fingerprints.iter().enumerate() {
            if Fingerprint::from_hex(fp).is_none() {
                return Err(format!(
                    "secrets.fingerprints[{i}] is not a fingerprint (64 hex digits from `tailguard identities fingerprint`)"
                ));
            }
        }
        for (field, globs) in [
            ("repositories", &self.allowed.repositories),
            ("refs", &self.allowed.refs),
            ("environments", &self.allowed.environments),
            ("hosts", &self.allowed.hosts),
            ("pipelines", &self.allowed.pipelines),
        ] {
            for (i, g) in globs.iter().enumerate() {
                globset::Glob::new(g).map_err(|e| format!("allowed.{field}[{i}]: {e}"))?;
            }
        }
        if self
            .revocation
            .command
            .first()
            .is_some_and(|p| !p.starts_with('/'))
        {
            return Err("revocation.command must start with an absolute path (it runs without a shell or PATH)".into());
        }
        Ok(())
    }
}

/// One identity of the inventory.
#[derive(Clone, Debug)]
pub struct Identity {
    pub id: String,
    pub config: IdentityConfig,
}

impl Identity {
    /// The `nhi.*` attributes events and findings about it carry.
    pub fn attributes(&self) -> Attributes {
        let c = &self.config;
        let mut a = Attributes::new();
        a.insert("nhi.identity.id", self.id.as_str());
        a.insert("nhi.identity.kind", c.kind.as_str());
        a.insert("nhi.owner.team", c.owner.team.as_str());
        if let Some(contact) = &c.owner.contact {
            a.insert("nhi.owner.contact", contact.as_str());
        }
        if let Some(env) = &c.environment {
            a.insert("nhi.environment", env.as_str());
        }
        if let Some(tier) = &c.privilege_tier {
            a.insert("nhi.privilege.tier", tier.as_str());
        }
        let method = if !c.revocation.command.is_empty() {
            "command"
        } else if c.revocation.url.is_some() {
            "url"
        } else {
            "manual"
        };
        a.insert("nhi.revocation.method", method);
        if let Some(runbook) = &c.revocation.runbook {
            a.insert("nhi.revocation.runbook", runbook.as_str());
        }
        if let Some(max_age) = c.max_age {
            a.insert("nhi.max_age_seconds", max_age.0.as_secs());
        }
        a
    }
}

/// The whole inventory, with lookups by what events reveal.
#[derive(Clone, Debug, Default)]
pub struct Inventory {
    identities: Vec<Arc<Identity>>,
    by_fingerprint: BTreeMap<String, Arc<Identity>>,
    by_env: BTreeMap<String, Arc<Identity>>,
}

impl Inventory {
    pub fn new(entries: impl IntoIterator<Item = (String, IdentityConfig)>) -> Self {
        let mut inventory = Inventory::default();
        for (id, config) in entries {
            let identity = Arc::new(Identity { id, config });
            for fp in &identity.config.secrets.fingerprints {
                inventory
                    .by_fingerprint
                    .insert(fp.to_ascii_lowercase(), Arc::clone(&identity));
            }
            for name in &identity.config.secrets.env {
                inventory.by_env.insert(name.clone(), Arc::clone(&identity));
            }
            inventory.identities.push(identity);
        }
        inventory
    }

    pub fn is_empty(&self) -> bool {
        self.identities.is_empty()
    }

    pub fn identities(&self) -> &[Arc<Identity>] {
        &self.identities
    }

    /// Every fingerprint, for known-value matching.
    pub fn fingerprints(&self) -> impl Iterator<Item = Fingerprint> + '_ {
        self.by_fingerprint
            .keys()
            .filter_map(|h| Fingerprint::from_hex(h))
    }

    /// The identity whose secret has this fingerprint.
    pub fn by_fingerprint(&self, fp: &Fingerprint) -> Option<&Arc<Identity>> {
        self.by_fingerprint.get(&fp.full_hex())
    }

    /// The identity whose secret a job receives in this variable.
    pub fn by_env_name(&self, name: &str) -> Option<&Arc<Identity>> {
        self.by_env.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml_text: &str) -> IdentityConfig {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn attributes_name_owner_tier_and_revocation() {
        let c = config(
            r##"
kind = "bot_token"
owner = { team = "platform", contact = "#platform-oncall" }
privilege_tier = "tier1"
revocation = { command = ["/usr/local/bin/rotate", "deploy-bot"], runbook = "https://runbooks.example/deploy-bot" }
max_age = "90days"
"##,
        );
        c.check().unwrap();
        let id = Identity {
            id: "deploy-bot".into(),
            config: c,
        };
        let a = id.attributes();
        assert_eq!(a.get("nhi.identity.id").unwrap().to_string(), "deploy-bot");
        assert_eq!(a.get("nhi.owner.team").unwrap().to_string(), "platform");
        assert_eq!(a.get("nhi.privilege.tier").unwrap().to_string(), "tier1");
        assert_eq!(
            a.get("nhi.revocation.method").unwrap().to_string(),
            "command"
        );
        assert_eq!(a.get("nhi.max_age_seconds").unwrap().to_string(), "7776000");
    }

    #[test]
    fn checks_name_the_field() {
        let bad_fp = config(
            "kind = \"api_key\"\nowner = { team = \"t\" }\nsecrets = { fingerprints = [\"abc\"] }",
        );
        assert!(
            bad_fp
                .check()
                .unwrap_err()
                .starts_with("secrets.fingerprints[0]")
        );
        let relative = config(
            "kind = \"api_key\"\nowner = { team = \"t\" }\nrevocation = { command = [\"rotate\"] }",
        );
        assert!(relative.check().unwrap_err().contains("absolute path"));
    }
}
