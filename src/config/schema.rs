//! `tailguard config schema`: a JSON Schema (draft 2020-12) of the
//! configuration, so fleet pipelines (Ansible, Puppet, CI) can check a
//! drop-in before shipping it. It describes one file's shape; checks that
//! span files (duplicate names, topology) remain `tailguard validate`'s.

use schemars::{JsonSchema, Schema, SchemaGenerator, generate::SchemaSettings};
use serde_json::{Value, json};

/// One component type's options, for the schema.
pub struct TypeSchema {
    pub type_name: &'static str,
    pub options: Schema,
}

impl TypeSchema {
    pub fn of<T: JsonSchema>(type_name: &'static str, generator: &mut SchemaGenerator) -> Self {
        Self {
            type_name,
            options: generator.subschema_for::<T>(),
        }
    }
}

/// A generator that inlines every definition: the result has no `$ref`s.
pub fn generator() -> SchemaGenerator {
    SchemaSettings::draft2020_12()
        .with(|s| s.inline_subschemas = true)
        .into_generator()
}

/// The table of components of one kind: each name maps to exactly one of
/// the types, with `type` fixed and `inputs` where the kind takes inputs.
fn components(types: Vec<TypeSchema>, takes_inputs: bool) -> Value {
    let variants: Vec<Value> = types
        .into_iter()
        .map(|t| {
            let mut schema = t.options.to_value();
            let object = schema.as_object_mut().expect("struct schemas are objects");
            let properties = object
                .entry("properties")
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("properties is an object");
            properties.insert("type".into(), json!({ "const": t.type_name }));
            let mut required = vec![json!("type")];
            if takes_inputs {
                properties.insert(
                    "inputs".into(),
                    json!({
                        "type": "array",
                        "items": { "type": "string", "pattern": "^[A-Za-z0-9_-]+$" },
                        "minItems": 1,
                        "description": "Names of the sources and transforms this component reads from"
                    }),
                );
                required.push(json!("inputs"));
            }
            let existing = object
                .remove("required")
                .and_then(|r| r.as_array().cloned())
                .unwrap_or_default();
            required.extend(existing);
            object.insert("required".into(), Value::Array(required));
            object.insert("additionalProperties".into(), json!(false));
            schema
        })
        .collect();
    json!({
        "type": "object",
        "propertyNames": { "pattern": "^[A-Za-z0-9_-]+$" },
        "additionalProperties": { "oneOf": variants }
    })
}

/// The whole schema.
pub fn schema() -> Value {
    let mut generator = generator();
    let api = generator
        .subschema_for::<crate::observe::api::ApiConfig>()
        .to_value();
    let identity = generator
        .subschema_for::<crate::identity::inventory::IdentityConfig>()
        .to_value();
    let policy = generator
        .subschema_for::<crate::transforms::policy::config::PolicyConfig>()
        .to_value();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "tailguard configuration file",
        "description": "One file of tailguard's configuration (tailguard.toml or a conf.d drop-in), as JSON. Cross-file checks (names defined twice, inputs, cycles) are `tailguard validate`'s.",
        "type": "object",
        "additionalProperties": false,
        "properties": {
            "data_dir": { "type": "string", "description": "Where state lives (default /var/lib/tailguard)" },
            "log_level": { "type": "string", "description": "error, warn, info, debug, trace, or a filter" },
            "shutdown_timeout": { "type": "string", "description": "How long a stop may take to drain, e.g. \"30s\"" },
            "api": api,
            "identities": {
                "type": "object",
                "description": "The non-human identity inventory: [identities.ID]",
                "additionalProperties": identity
            },
            "policies": {
                "type": "object",
                "description": "Detections to act on and the graduated actions: [policies.NAME]",
                "additionalProperties": policy
            },
            "resource": {
                "type": "object",
                "additionalProperties": { "type": "string" },
                "description": "Static resource attributes"
            },
            "sources": components(crate::sources::SourceConfig::schemas(&mut generator), false),
            "transforms": components(crate::transforms::TransformConfig::schemas(&mut generator), true),
            "sinks": components(crate::sinks::SinkConfig::schemas(&mut generator), true),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registered_type_has_a_schema() {
        let schema = schema();
        for (table, types) in [
            ("sources", crate::sources::SourceConfig::TYPES),
            ("transforms", crate::transforms::TransformConfig::TYPES),
            ("sinks", crate::sinks::SinkConfig::TYPES),
        ] {
            let variants = schema["properties"][table]["additionalProperties"]["oneOf"]
                .as_array()
                .unwrap();
            let names: Vec<&str> = variants
                .iter()
                .map(|v| v["properties"]["type"]["const"].as_str().unwrap())
                .collect();
            assert_eq!(names, types, "{table}");
        }
        let text = schema.to_string();
        assert!(!text.contains("$ref"), "everything is inlined");
    }
}
