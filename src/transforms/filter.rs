//! `type = "filter"`: drops lines that are noise before they cost anything
//! downstream.
//!
//! A line is kept when it matches any `include` pattern (or `include` is
//! empty) and matches no `exclude` pattern. Patterns are `regex` crate
//! syntax, matched against the raw bytes, so matching time is linear in the
//! line length whatever the pattern.

use regex::bytes::RegexSet;
use serde::Deserialize;

use crate::ack::DeliveryStatus;
use crate::topology::component::{ComponentTask, TransformContext};
use crate::topology::function_transform;

#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Keep only lines matching one of these; all lines when empty.
    #[serde(default)]
    pub include: Vec<String>,
    /// Drop lines matching any of these.
    #[serde(default)]
    pub exclude: Vec<String>,
}

struct Compiled {
    include: Option<RegexSet>,
    exclude: Option<RegexSet>,
}

impl FilterConfig {
    /// Compiles the patterns; the error names the bad pattern.
    pub(crate) fn compile(&self) -> Result<(), String> {
        self.compiled().map(|_| ())
    }

    fn compiled(&self) -> Result<Compiled, String> {
        let set = |field: &str, patterns: &[String]| -> Result<Option<RegexSet>, String> {
            if patterns.is_empty() {
                return Ok(None);
            }
            for (i, p) in patterns.iter().enumerate() {
                regex::bytes::Regex::new(p)
                    .map_err(|e| format!("{field}[{i}] is not a valid regex: {e}"))?;
            }
            RegexSet::new(patterns)
                .map(Some)
                .map_err(|e| format!("{field}: {e}"))
        };
        Ok(Compiled {
            include: set("include", &self.include)?,
            exclude: set("exclude", &self.exclude)?,
        })
    }
}

impl Compiled {
    fn keeps(&self, line: &[u8]) -> bool {
        self.include.as_ref().is_none_or(|s| s.is_match(line))
            && !self.exclude.as_ref().is_some_and(|s| s.is_match(line))
    }
}

pub fn build(config: &FilterConfig, cx: TransformContext) -> anyhow::Result<ComponentTask> {
    let compiled = config.compiled().map_err(anyhow::Error::msg)?;
    Ok(function_transform(cx, move |batch| {
        batch.retain_mut(|event| {
            let keep = compiled.keeps(&event.body);
            if !keep {
                // Dropped on purpose: as far as the source is concerned,
                // this line is done with.
                event.settle(DeliveryStatus::Delivered);
            }
            keep
        });
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_then_exclude() {
        let config = FilterConfig {
            include: vec!["^ERROR".into(), "^WARN".into()],
            exclude: vec!["healthcheck".into()],
        };
        let c = config.compiled().unwrap();
        assert!(c.keeps(b"ERROR disk full"));
        assert!(!c.keeps(b"ERROR healthcheck failed"));
        assert!(!c.keeps(b"INFO started"));
    }

    #[test]
    fn bad_pattern_names_the_field() {
        let config = FilterConfig {
            include: vec![],
            exclude: vec!["ok".into(), "(".into()],
        };
        let err = config.compile().unwrap_err();
        assert!(err.starts_with("exclude[1]"), "{err}");
    }
}
