//! Transforms: what happens to events between sources and sinks.

pub mod filter;
pub mod policy;
pub mod redact;

use toml::de::ValueDeserializer;

use crate::config::{ComponentParseError, deserialize};
use crate::topology::component::{ComponentTask, TransformContext};

/// A configured transform of any type.
#[derive(Clone, Debug)]
pub enum TransformConfig {
    Filter(filter::FilterConfig),
    Redact(Box<redact::RedactConfig>),
    Policy(Box<policy::PolicyTransformConfig>),
}

impl TransformConfig {
    /// Every `type` a transform may have.
    pub const TYPES: &'static [&'static str] = &["filter", "redact", "policy"];

    /// Each type's options, for `tailguard config schema`; the same order
    /// as `TYPES`.
    pub fn schemas(
        generator: &mut schemars::SchemaGenerator,
    ) -> Vec<crate::config::schema::TypeSchema> {
        use crate::config::schema::TypeSchema;
        vec![
            TypeSchema::of::<filter::FilterConfig>("filter", generator),
            TypeSchema::of::<redact::RedactConfig>("redact", generator),
            TypeSchema::of::<policy::PolicyTransformConfig>("policy", generator),
        ]
    }

    pub(crate) fn parse(
        type_name: &str,
        options: ValueDeserializer<'_>,
    ) -> Result<Self, ComponentParseError> {
        match type_name {
            "filter" => {
                let config: filter::FilterConfig = deserialize(options)?;
                config.compile().map_err(ComponentParseError::Check)?;
                Ok(Self::Filter(config))
            }
            "redact" => {
                let config: redact::RedactConfig = deserialize(options)?;
                config.check().map_err(ComponentParseError::Check)?;
                Ok(Self::Redact(Box::new(config)))
            }
            "policy" => {
                let config: policy::PolicyTransformConfig = deserialize(options)?;
                config.check().map_err(ComponentParseError::Check)?;
                Ok(Self::Policy(Box::new(config)))
            }
            _ => Err(ComponentParseError::UnknownType(Self::TYPES)),
        }
    }

    pub fn build(&self, cx: TransformContext) -> anyhow::Result<ComponentTask> {
        match self {
            Self::Filter(config) => filter::build(config, cx),
            Self::Redact(config) => redact::build(config, cx),
            Self::Policy(config) => policy::build(config, cx),
        }
    }
}
