//! Sinks: where events leave tailguard.
//!
//! A sink settles each event's acknowledgement once the event is safely
//! written (flushed, or fsynced when asked), which is what lets lossless
//! sources advance their checkpoints.

pub mod console;
pub mod disk_buffer;
pub mod evidence;
pub mod file;
pub mod json;
pub mod otlp;

use toml::de::ValueDeserializer;

use crate::config::{ComponentParseError, deserialize};
use crate::topology::component::{ComponentTask, SinkContext};

/// A configured sink of any type.
#[derive(Clone, Debug)]
pub enum SinkConfig {
    Console(console::ConsoleConfig),
    File(file::FileSinkConfig),
    Otlp(Box<otlp::Config>),
    Evidence(evidence::EvidenceConfig),
}

impl SinkConfig {
    /// Every `type` a sink may have.
    pub const TYPES: &'static [&'static str] = &["console", "evidence", "file", "otlp"];

    /// Each type's options, for `tailguard config schema`; the same order
    /// as `TYPES`.
    pub fn schemas(
        generator: &mut schemars::SchemaGenerator,
    ) -> Vec<crate::config::schema::TypeSchema> {
        use crate::config::schema::TypeSchema;
        vec![
            TypeSchema::of::<console::ConsoleConfig>("console", generator),
            TypeSchema::of::<evidence::EvidenceConfig>("evidence", generator),
            TypeSchema::of::<file::FileSinkConfig>("file", generator),
            TypeSchema::of::<otlp::Config>("otlp", generator),
        ]
    }

    pub(crate) fn parse(
        type_name: &str,
        options: ValueDeserializer<'_>,
    ) -> Result<Self, ComponentParseError> {
        match type_name {
            "console" => Ok(Self::Console(deserialize(options)?)),
            "file" => Ok(Self::File(deserialize(options)?)),
            "evidence" => Ok(Self::Evidence(deserialize(options)?)),
            "otlp" => {
                let config: otlp::Config = deserialize(options)?;
                // Checks what can be checked without the environment of the
                // running agent: URLs, header syntax, numbers.
                config
                    .resolve(&|_| None)
                    .map_err(ComponentParseError::Check)?;
                Ok(Self::Otlp(Box::new(config)))
            }
            _ => Err(ComponentParseError::UnknownType(Self::TYPES)),
        }
    }

    pub fn build(&self, cx: SinkContext) -> anyhow::Result<ComponentTask> {
        match self {
            Self::Console(config) => Ok(console::build(config.clone(), cx)),
            Self::File(config) => Ok(file::build(config.clone(), cx)),
            Self::Evidence(config) => Ok(evidence::build(config.clone(), cx)),
            Self::Otlp(config) => otlp::build(config, cx),
        }
    }
}
