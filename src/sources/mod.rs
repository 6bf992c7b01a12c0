//! Sources: where events come from.
//!
//! Each source type has a config struct (its TOML options) and a `build`
//! function that turns it into a running task. This module is the registry
//! that maps a `type = "..."` to both.

pub mod ci_exec;
pub mod file;
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
}

impl SourceConfig {
    /// Every `type` a source may have.
    pub const TYPES: &'static [&'static str] = &["ci_exec", "file", "stdin"];

    /// Each type's options, for `tailguard config schema`; the same order
    /// as `TYPES`.
    pub fn schemas(
        generator: &mut schemars::SchemaGenerator,
    ) -> Vec<crate::config::schema::TypeSchema> {
        use crate::config::schema::TypeSchema;
        vec![
            TypeSchema::of::<ci_exec::CiExecConfig>("ci_exec", generator),
            TypeSchema::of::<file::FileSourceConfig>("file", generator),
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
            "ci_exec" => {
                let config: ci_exec::CiExecConfig = deserialize(options)?;
                config.check().map_err(ComponentParseError::Check)?;
                Ok(Self::CiExec(config))
            }
            _ => Err(ComponentParseError::UnknownType(Self::TYPES)),
        }
    }

    pub fn build(&self, cx: SourceContext) -> anyhow::Result<ComponentTask> {
        match self {
            Self::Stdin(config) => Ok(stdin::build(config.clone(), cx)),
            Self::CiExec(config) => ci_exec::build(config, cx),
            Self::File(config) => file::build(config, cx),
        }
    }
}
