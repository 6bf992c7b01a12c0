//! Sources: where events come from.
//!
//! Each source type has a config struct (its TOML options) and a `build`
//! function that turns it into a running task. This module is the registry
//! that maps a `type = "..."` to both.

pub mod audit_log;
pub mod auth_log;
pub mod ci_exec;
pub mod credential_watch;
pub mod file;
pub mod journal;
pub mod runner_logs;
pub mod stdin;

use toml::de::ValueDeserializer;

use crate::config::{ComponentParseError, deserialize};
use crate::topology::component::{ComponentTask, SourceContext};

/// A configured source of any type.
#[derive(Clone, Debug)]
pub enum SourceConfig {
    Stdin(stdin::StdinConfig),
    CiExec(ci_exec::CiExecConfig),
    File(Box<file::FileSourceConfig>),
    RunnerLogs(Box<runner_logs::RunnerLogsConfig>),
    CredentialWatch(Box<credential_watch::CredentialWatchConfig>),
    AuditLog(Box<audit_log::AuditLogConfig>),
    AuthLog(Box<auth_log::AuthLogConfig>),
}

impl SourceConfig {
    /// Every `type` a source may have.
    pub const TYPES: &'static [&'static str] = &[
        "audit_log",
        "auth_log",
        "buildkite_logs",
        "ci_exec",
        "credential_watch",
        "file",
        "github_runner_logs",
        "jenkins_logs",
        "stdin",
    ];

    /// Each type's options, for `tailguard config schema`; the same order
    /// as `TYPES`.
    pub fn schemas(
        generator: &mut schemars::SchemaGenerator,
    ) -> Vec<crate::config::schema::TypeSchema> {
        use crate::config::schema::TypeSchema;
        // Runner log sources take the file source's options, with
        // `include` optional (it defaults to the runner's log folders).
        let runner = |name: &'static str, generator: &mut schemars::SchemaGenerator| {
            let mut schema = TypeSchema::of::<file::FileSourceConfig>(name, generator);
            if let Some(required) = schema
                .options
                .as_object_mut()
                .and_then(|o| o.get_mut("required"))
                .and_then(|r| r.as_array_mut())
            {
                required.retain(|r| r != "include");
            }
            schema
        };
        vec![
            TypeSchema::of::<audit_log::AuditLogConfig>("audit_log", generator),
            TypeSchema::of::<auth_log::AuthLogConfig>("auth_log", generator),
            runner("buildkite_logs", generator),
            TypeSchema::of::<ci_exec::CiExecConfig>("ci_exec", generator),
            TypeSchema::of::<credential_watch::CredentialWatchConfig>(
                "credential_watch",
                generator,
            ),
            TypeSchema::of::<file::FileSourceConfig>("file", generator),
            runner("github_runner_logs", generator),
            runner("jenkins_logs", generator),
            TypeSchema::of::<stdin::StdinConfig>("stdin", generator),
        ]
    }

    pub(crate) fn parse(
        type_name: &str,
        options: ValueDeserializer<'_>,
    ) -> Result<Self, ComponentParseError> {
        match type_name {
            "stdin" => Ok(Self::Stdin(deserialize(options)?)),
            "file" => {
                let config: file::FileSourceConfig = deserialize(options)?;
                config.validate().map_err(ComponentParseError::Check)?;
                Ok(Self::File(Box::new(config)))
            }
            runner if runner_logs::TYPES.iter().any(|(t, _)| *t == runner) => {
                let system = runner_logs::TYPES
                    .iter()
                    .find(|(t, _)| *t == runner)
                    .map(|(_, s)| *s)
                    .expect("matched above");
                Ok(Self::RunnerLogs(Box::new(runner_logs::parse(
                    system, options,
                )?)))
            }
            "ci_exec" => {
                let config: ci_exec::CiExecConfig = deserialize(options)?;
                config.check().map_err(ComponentParseError::Check)?;
                Ok(Self::CiExec(config))
            }
            "credential_watch" => {
                let config: credential_watch::CredentialWatchConfig = deserialize(options)?;
                config.check().map_err(ComponentParseError::Check)?;
                Ok(Self::CredentialWatch(Box::new(config)))
            }
            "audit_log" => {
                let config: audit_log::AuditLogConfig = deserialize(options)?;
                config.check().map_err(ComponentParseError::Check)?;
                Ok(Self::AuditLog(Box::new(config)))
            }
            "auth_log" => {
                let config: auth_log::AuthLogConfig = deserialize(options)?;
                config.check().map_err(ComponentParseError::Check)?;
                Ok(Self::AuthLog(Box::new(config)))
            }
            _ => Err(ComponentParseError::UnknownType(Self::TYPES)),
        }
    }

    pub fn build(&self, cx: SourceContext) -> anyhow::Result<ComponentTask> {
        match self {
            Self::Stdin(config) => Ok(stdin::build(config.clone(), cx)),
            Self::CiExec(config) => ci_exec::build(config, cx),
            Self::File(config) => file::build(config, cx),
            Self::RunnerLogs(config) => runner_logs::build(config, cx),
            Self::CredentialWatch(config) => credential_watch::build(config, cx),
            Self::AuditLog(config) => audit_log::build(config, cx),
            Self::AuthLog(config) => auth_log::build(config, cx),
        }
    }
}
