//! Loading configuration: which files, in what order, and what they mean.
//!
//! Fleet management tools configure tailguard by dropping files, so the
//! loader reads `DIR/tailguard.toml` and then every `DIR/conf.d/*.toml` in
//! lexical order, and treats the union as one configuration. A component may
//! be defined only once across all files; a clash names both places.
//!
//! Each file is interpolated (`${VAR}`), parsed with spans kept, and each
//! component is deserialized on its own into its type's config struct, so one
//! run reports every broken component with its file, line and column rather
//! than stopping at the first.

pub mod interpolate;
pub mod schema;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::sinks::SinkConfig;
use crate::sources::SourceConfig;
use crate::transforms::TransformConfig;

/// The configuration used when no file exists: see `config/default.toml`.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../config/default.toml");

/// Appended to the embedded default when `OTEL_EXPORTER_OTLP_ENDPOINT` is
/// set, so the default ships to the collector the environment names.
pub const EMBEDDED_DEFAULT_OTLP: &str = include_str!("../../config/default-otlp.toml");

/// The embedded default as it applies in this environment.
pub fn embedded_default(env: &dyn Fn(&str) -> Option<String>) -> String {
    let mut text = EMBEDDED_DEFAULT.to_string();
    if env("OTEL_EXPORTER_OTLP_ENDPOINT").is_some_and(|v| !v.trim().is_empty()) {
        text.push_str(EMBEDDED_DEFAULT_OTLP);
    }
    text
}

/// The name under which the embedded default appears in error messages.
pub const EMBEDDED_DEFAULT_NAME: &str = "<embedded default>";

/// Where the packaged agent looks for configuration.
pub const DEFAULT_CONFIG_DIR: &str = "/etc/tailguard";

/// Where state lives unless `data_dir` says otherwise.
pub const DEFAULT_DATA_DIR: &str = "/var/lib/tailguard";

const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// A place in a configuration file, 1-based.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub file: Arc<str>,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// One configuration problem. `validate` prints all of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// Where the problem is, when it is in a file.
    pub location: Option<Location>,
    /// The file alone, when no line applies (unreadable file).
    pub file: Option<Arc<str>>,
    pub message: String,
}

impl ConfigError {
    fn at(location: Location, message: impl Into<String>) -> Self {
        Self {
            location: Some(location),
            file: None,
            message: message.into(),
        }
    }

    fn in_file(file: &Arc<str>, message: impl Into<String>) -> Self {
        Self {
            location: None,
            file: Some(Arc::clone(file)),
            message: message.into(),
        }
    }

    pub(crate) fn general(message: impl Into<String>) -> Self {
        Self {
            location: None,
            file: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.location, &self.file) {
            (Some(at), _) => write!(f, "{at}: {}", self.message),
            (None, Some(file)) => write!(f, "{file}: {}", self.message),
            (None, None) => f.write_str(&self.message),
        }
    }
}

/// The three kinds of component, in data-flow order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Source,
    Transform,
    Sink,
}

impl Kind {
    /// The TOML table that holds components of this kind.
    pub fn table(self) -> &'static str {
        match self {
            Kind::Source => "sources",
            Kind::Transform => "transforms",
            Kind::Sink => "sinks",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Kind::Source => "source",
            Kind::Transform => "transform",
            Kind::Sink => "sink",
        }
    }
}

/// A named component as configured.
#[derive(Clone, Debug)]
pub struct Component<T> {
    /// The `type` it was declared with.
    pub type_name: String,
    /// Names of the components it reads from (empty for sources).
    pub inputs: Vec<String>,
    pub config: T,
    /// Where its table starts, for topology errors.
    pub location: Location,
    /// The type and options in canonical form (not the inputs): a reload
    /// keeps a component running when this is unchanged.
    pub fingerprint: String,
}

/// Where the configuration came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Files(Vec<PathBuf>),
    EmbeddedDefault,
}

/// A fully parsed configuration; the topology checks run on top of this.
#[derive(Clone, Debug)]
pub struct Config {
    pub origin: Origin,
    /// `data_dir` when set in a file; `None` means the default.
    pub data_dir: Option<PathBuf>,
    pub log_level: Option<String>,
    /// How long a shutdown may take to drain in-flight events.
    pub shutdown_timeout: Duration,
    /// Static resource attributes (`[resource]`), e.g.
    /// `deployment.environment.name`, fleet, rack.
    pub resource: Vec<(String, String)>,
    /// The local `/metrics` and `/health` listener (`[api]`).
    pub api: crate::observe::api::ApiConfig,
    /// The non-human identity inventory (`[identities.ID]`), by id.
    pub identities: Vec<(String, crate::identity::inventory::IdentityConfig)>,
    /// Response policies (`[policies.NAME]`), by name.
    pub policies: Vec<(String, crate::transforms::policy::config::PolicyConfig)>,
    pub sources: BTreeMap<String, Component<SourceConfig>>,
    pub transforms: BTreeMap<String, Component<TransformConfig>>,
    pub sinks: BTreeMap<String, Component<SinkConfig>>,
}

/// What the command line said about where configuration lives.
#[derive(Clone, Debug, Default)]
pub struct ConfigPaths {
    /// `--config FILE`, in order. Each must exist.
    pub files: Vec<PathBuf>,
    /// `--config-dir DIR`. When neither files nor dirs are given, the default
    /// directory is used if it exists.
    pub dirs: Vec<PathBuf>,
}

impl ConfigPaths {
    /// The files to load, in order. An empty list means "use the embedded
    /// default".
    pub fn resolve(&self) -> Result<Vec<PathBuf>, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut files = Vec::new();
        for file in &self.files {
            if file.is_file() {
                files.push(file.clone());
            } else {
                errors.push(ConfigError::in_file(
                    &display(file),
                    "configuration file does not exist or is not a regular file",
                ));
            }
        }
        let explicit = !self.files.is_empty() || !self.dirs.is_empty();
        let dirs: Vec<PathBuf> = if explicit {
            self.dirs.clone()
        } else {
            vec![PathBuf::from(DEFAULT_CONFIG_DIR)]
        };
        for dir in &dirs {
            if !dir.is_dir() {
                if explicit {
                    errors.push(ConfigError::in_file(
                        &display(dir),
                        "configuration directory does not exist",
                    ));
                }
                continue;
            }
            match files_in_dir(dir) {
                Ok(found) => files.extend(found),
                Err(e) => errors.push(ConfigError::in_file(&display(dir), e.to_string())),
            }
        }
        if errors.is_empty() {
            Ok(files)
        } else {
            Err(errors)
        }
    }
}

/// `DIR/tailguard.toml` then `DIR/conf.d/*.toml`, sorted by file name.
fn files_in_dir(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let main = dir.join("tailguard.toml");
    if main.is_file() {
        files.push(main);
    }
    let drop_ins = dir.join("conf.d");
    if drop_ins.is_dir() {
        let mut found: Vec<PathBuf> = std::fs::read_dir(&drop_ins)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|ext| ext == "toml") && p.is_file())
            .collect();
        found.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
        files.extend(found);
    }
    Ok(files)
}

fn display(path: &Path) -> Arc<str> {
    Arc::from(path.display().to_string())
}

/// Loads the given files, or the embedded default when the list is empty.
/// `env` looks up variables for `${VAR}` interpolation.
pub fn load(
    files: &[PathBuf],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Vec<ConfigError>> {
    let mut builder = Builder::default();
    if files.is_empty() {
        builder.add_text(
            Arc::from(EMBEDDED_DEFAULT_NAME),
            &embedded_default(env),
            env,
        );
    } else {
        for path in files {
            let name = display(path);
            match std::fs::read_to_string(path) {
                Ok(text) => builder.add_text(name, &text, env),
                Err(e) => builder
                    .errors
                    .push(ConfigError::in_file(&name, format!("cannot read: {e}"))),
            }
        }
    }
    let origin = if files.is_empty() {
        Origin::EmbeddedDefault
    } else {
        Origin::Files(files.to_vec())
    };
    builder.finish(origin)
}

/// Loads configuration from one string (tests, `--print-default-config`).
pub fn load_str(
    name: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, Vec<ConfigError>> {
    let mut builder = Builder::default();
    builder.add_text(Arc::from(name), text, env);
    builder.finish(Origin::Files(vec![PathBuf::from(name)]))
}

/// The process environment, as `load` expects it.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Why one component's table could not become its config struct.
pub enum ComponentParseError {
    /// `type` names no known component of this kind.
    UnknownType(&'static [&'static str]),
    /// A key is unknown, missing or of the wrong type.
    Invalid(toml::de::Error),
    /// The values parse but make no sense together.
    Check(String),
}

impl From<toml::de::Error> for ComponentParseError {
    fn from(e: toml::de::Error) -> Self {
        ComponentParseError::Invalid(e)
    }
}

/// Deserializes one component's options (its table minus `type` and
/// `inputs`). Component registries call this for their config structs.
pub fn deserialize<T: DeserializeOwned>(
    options: ValueDeserializer<'_>,
) -> Result<T, ComponentParseError> {
    Ok(T::deserialize(options)?)
}

#[derive(Default)]
struct Builder {
    errors: Vec<ConfigError>,
    /// Global key -> (where the key is, where its value is, the value if it
    /// is a string).
    globals: BTreeMap<&'static str, (Location, Location, Option<String>)>,
    names: BTreeMap<String, (Kind, Location)>,
    sources: BTreeMap<String, Component<SourceConfig>>,
    transforms: BTreeMap<String, Component<TransformConfig>>,
    sinks: BTreeMap<String, Component<SinkConfig>>,
    /// `[resource]` keys with where each was set.
    resource: BTreeMap<String, (Location, String)>,
    /// `[api]`, with where it was set.
    api: Option<(Location, crate::observe::api::ApiConfig)>,
    identities: BTreeMap<String, (Location, crate::identity::inventory::IdentityConfig)>,
    policies: BTreeMap<String, (Location, crate::transforms::policy::config::PolicyConfig)>,
}

const GLOBAL_KEYS: &[&str] = &["data_dir", "log_level", "shutdown_timeout"];
const TOP_LEVEL_KEYS: &str = "data_dir, log_level, shutdown_timeout, api, resource, identities, policies, sources, transforms, sinks";

impl Builder {
    fn add_text(&mut self, file: Arc<str>, raw: &str, env: &dyn Fn(&str) -> Option<String>) {
        let first_error = self.errors.len();
        self.parse_text(&file, raw, env);
        // Tables come back sorted by key, not by position: report in file order.
        self.errors[first_error..].sort_by_key(|e| {
            e.location
                .as_ref()
                .map_or((0, 0), |at| (at.line, at.column))
        });
    }

    fn parse_text(&mut self, file: &Arc<str>, raw: &str, env: &dyn Fn(&str) -> Option<String>) {
        let file = Arc::clone(file);
        let (text, interpolation_errors) = interpolate::interpolate(raw, env);
        if !interpolation_errors.is_empty() {
            for e in interpolation_errors {
                self.errors
                    .push(ConfigError::at(locate(&file, raw, e.offset), e.message));
            }
            return;
        }
        let (root, syntax_errors) = DeTable::parse_recoverable(&text);
        if !syntax_errors.is_empty() {
            for e in syntax_errors {
                let at = e.span().map(|s| s.start).unwrap_or(0);
                self.errors.push(ConfigError::at(
                    locate(&file, &text, at),
                    e.message().trim(),
                ));
            }
            return;
        }
        for (key, value) in root.into_inner() {
            let key_at = locate(&file, &text, key.span().start);
            let key = key.into_inner();
            match key.as_ref() {
                "sources" => self.add_components(Kind::Source, &file, &text, value),
                "transforms" => self.add_components(Kind::Transform, &file, &text, value),
                "sinks" => self.add_components(Kind::Sink, &file, &text, value),
                "resource" => self.add_resource(&file, &text, value),
                "api" => self.add_api(key_at, &file, &text, value),
                "identities" => self.add_identities(&file, &text, value),
                "policies" => self.add_policies(&file, &text, value),
                name => match GLOBAL_KEYS.iter().find(|k| **k == name) {
                    Some(global) => {
                        let value_at = locate(&file, &text, value.span().start);
                        self.add_global(global, key_at, value_at, value);
                    }
                    None => self.errors.push(ConfigError::at(
                        key_at,
                        format!("unknown key `{name}`, expected one of: {TOP_LEVEL_KEYS}"),
                    )),
                },
            }
        }
    }

    fn add_global(
        &mut self,
        key: &'static str,
        at: Location,
        value_at: Location,
        value: Spanned<DeValue<'_>>,
    ) {
        if let Some((first, _, _)) = self.globals.get(key) {
            self.errors.push(ConfigError::at(
                at,
                format!("`{key}` is set twice: first at {first}"),
            ));
            return;
        }
        let text = match value.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            _ => None,
        };
        self.globals.insert(key, (at, value_at, text));
    }

    fn add_api(&mut self, at: Location, file: &Arc<str>, text: &str, value: Spanned<DeValue<'_>>) {
        if let Some((first, _)) = &self.api {
            self.errors.push(ConfigError::at(
                at,
                format!("`api` is set twice: first at {first}"),
            ));
            return;
        }
        match crate::observe::api::ApiConfig::deserialize(ValueDeserializer::from(value)) {
            Ok(api) => match api.check() {
                Ok(()) => self.api = Some((at, api)),
                Err(message) => self.errors.push(ConfigError::at(at, message)),
            },
            Err(e) => {
                let where_ = e.span().map_or(at, |s| locate(file, text, s.start));
                self.errors.push(ConfigError::at(
                    where_,
                    format!("api: {}", e.message().trim()),
                ));
            }
        }
    }

    fn add_identities(&mut self, file: &Arc<str>, text: &str, table: Spanned<DeValue<'_>>) {
        let at = locate(file, text, table.span().start);
        let DeValue::Table(entries) = table.into_inner() else {
            self.errors.push(ConfigError::at(
                at,
                "`identities` must be a table of identities, like [identities.deploy-bot]",
            ));
            return;
        };
        for (id, body) in entries {
            let id_at = locate(file, text, id.span().start);
            let id = id.into_inner().into_owned();
            if let Some((first, _)) = self.identities.get(&id) {
                self.errors.push(ConfigError::at(
                    id_at,
                    format!("identity `{id}` is defined twice: first in {first}, again here"),
                ));
                continue;
            }
            use crate::identity::inventory::IdentityConfig;
            match IdentityConfig::deserialize(ValueDeserializer::from(body)) {
                Ok(config) => match config.check() {
                    Ok(()) => {
                        self.identities.insert(id, (id_at, config));
                    }
                    Err(message) => self
                        .errors
                        .push(ConfigError::at(id_at, format!("identities.{id}.{message}"))),
                },
                Err(e) => {
                    let where_ = e.span().map_or(id_at, |s| locate(file, text, s.start));
                    self.errors.push(ConfigError::at(
                        where_,
                        format!("identities.{id}: {}", e.message().trim()),
                    ));
                }
            }
        }
    }

    fn add_policies(&mut self, file: &Arc<str>, text: &str, table: Spanned<DeValue<'_>>) {
        let at = locate(file, text, table.span().start);
        let DeValue::Table(entries) = table.into_inner() else {
            self.errors.push(ConfigError::at(
                at,
                "`policies` must be a table of policies, like [policies.leaked-tokens]",
            ));
            return;
        };
        for (name, body) in entries {
            let name_at = locate(file, text, name.span().start);
            let name = name.into_inner().into_owned();
            if let Some((first, _)) = self.policies.get(&name) {
                self.errors.push(ConfigError::at(
                    name_at,
                    format!("policy `{name}` is defined twice: first in {first}, again here"),
                ));
                continue;
            }
            use crate::transforms::policy::config::PolicyConfig;
            match PolicyConfig::deserialize(ValueDeserializer::from(body)) {
                Ok(config) => match config.check() {
                    Ok(()) => {
                        self.policies.insert(name, (name_at, config));
                    }
                    Err(message) => self.errors.push(ConfigError::at(
                        name_at,
                        format!("policies.{name}.{message}"),
                    )),
                },
                Err(e) => {
                    let where_ = e.span().map_or(name_at, |s| locate(file, text, s.start));
                    self.errors.push(ConfigError::at(
                        where_,
                        format!("policies.{name}: {}", e.message().trim()),
                    ));
                }
            }
        }
    }

    fn add_resource(&mut self, file: &Arc<str>, text: &str, table: Spanned<DeValue<'_>>) {
        let at = locate(file, text, table.span().start);
        let DeValue::Table(entries) = table.into_inner() else {
            self.errors.push(ConfigError::at(
                at,
                "`resource` must be a table of attribute names to string values",
            ));
            return;
        };
        for (key, value) in entries {
            let key_at = locate(file, text, key.span().start);
            let key = key.into_inner().into_owned();
            let DeValue::String(v) = value.get_ref() else {
                self.errors.push(ConfigError::at(
                    locate(file, text, value.span().start),
                    format!("resource.{key} must be a string"),
                ));
                continue;
            };
            if let Some((first, _)) = self.resource.get(&key) {
                self.errors.push(ConfigError::at(
                    key_at,
                    format!("resource `{key}` is set twice: first at {first}"),
                ));
                continue;
            }
            self.resource.insert(key, (key_at, v.to_string()));
        }
    }

    fn add_components(
        &mut self,
        kind: Kind,
        file: &Arc<str>,
        text: &str,
        table: Spanned<DeValue<'_>>,
    ) {
        let table_at = locate(file, text, table.span().start);
        let DeValue::Table(components) = table.into_inner() else {
            self.errors.push(ConfigError::at(
                table_at,
                format!(
                    "`{}` must be a table of named components, like [{}.NAME]",
                    kind.table(),
                    kind.table()
                ),
            ));
            return;
        };
        for (name, body) in components {
            let at = locate(file, text, name.span().start);
            let name = name.into_inner().into_owned();
            self.add_component(kind, name, at, file, text, body);
        }
    }

    fn add_component(
        &mut self,
        kind: Kind,
        name: String,
        at: Location,
        file: &Arc<str>,
        text: &str,
        body: Spanned<DeValue<'_>>,
    ) {
        let path = format!("{}.{name}", kind.table());
        if let Some((first_kind, first_at)) = self.names.get(&name) {
            let message = if *first_kind == kind {
                format!(
                    "{} `{name}` is defined twice: first in {first_at}, again here",
                    kind.noun()
                )
            } else {
                format!(
                    "component name `{name}` is already used by a {} at {first_at}; names must be unique across sources, transforms and sinks",
                    first_kind.noun()
                )
            };
            self.errors.push(ConfigError::at(at, message));
            return;
        }
        self.names.insert(name.clone(), (kind, at.clone()));

        if !name_is_valid(&name) {
            self.errors.push(ConfigError::at(
                at.clone(),
                format!("{path}: component names use letters, digits, `_` and `-`"),
            ));
        }
        let span = body.span();
        let DeValue::Table(mut options) = body.into_inner() else {
            self.errors
                .push(ConfigError::at(at, format!("{path} must be a table")));
            return;
        };
        let error_at = |offset: usize| locate(file, text, offset);

        let type_name = match options.remove("type") {
            Some(value) => match value.get_ref() {
                DeValue::String(s) => s.to_string(),
                _ => {
                    self.errors.push(ConfigError::at(
                        error_at(value.span().start),
                        format!("{path}.type must be a string"),
                    ));
                    return;
                }
            },
            None => {
                self.errors
                    .push(ConfigError::at(at, format!("{path} is missing `type`")));
                return;
            }
        };

        let inputs = match (kind, options.remove("inputs")) {
            (Kind::Source, Some(value)) => {
                self.errors.push(ConfigError::at(
                    error_at(value.span().start),
                    format!("{path}: sources do not take `inputs`"),
                ));
                return;
            }
            (Kind::Source, None) => Vec::new(),
            (_, None) => {
                self.errors.push(ConfigError::at(
                    at,
                    format!("{path} is missing `inputs` (the components it reads from)"),
                ));
                return;
            }
            (_, Some(value)) => match string_list(&value) {
                Some(list) => list,
                None => {
                    self.errors.push(ConfigError::at(
                        error_at(value.span().start),
                        format!("{path}.inputs must be an array of component names"),
                    ));
                    return;
                }
            },
        };

        let fingerprint = {
            let copy = ValueDeserializer::from(Spanned::new(
                span.clone(),
                DeValue::Table(options.clone()),
            ));
            let canonical = <toml::Value as serde::Deserialize>::deserialize(copy)
                .map(|v| v.to_string())
                .unwrap_or_default();
            format!("{type_name}\n{canonical}")
        };
        let options = ValueDeserializer::from(Spanned::new(span, DeValue::Table(options)));
        let parsed = match kind {
            Kind::Source => SourceConfig::parse(&type_name, options).map(|config| {
                self.sources.insert(
                    name.clone(),
                    Component {
                        type_name: type_name.clone(),
                        inputs: Vec::new(),
                        config,
                        location: at.clone(),
                        fingerprint: fingerprint.clone(),
                    },
                );
            }),
            Kind::Transform => TransformConfig::parse(&type_name, options).map(|config| {
                self.transforms.insert(
                    name.clone(),
                    Component {
                        type_name: type_name.clone(),
                        inputs: inputs.clone(),
                        config,
                        location: at.clone(),
                        fingerprint: fingerprint.clone(),
                    },
                );
            }),
            Kind::Sink => SinkConfig::parse(&type_name, options).map(|config| {
                self.sinks.insert(
                    name.clone(),
                    Component {
                        type_name: type_name.clone(),
                        inputs: inputs.clone(),
                        config,
                        location: at.clone(),
                        fingerprint: fingerprint.clone(),
                    },
                );
            }),
        };
        match parsed {
            Ok(()) => {}
            Err(ComponentParseError::UnknownType(known)) => self.errors.push(ConfigError::at(
                at,
                format!(
                    "{path}: unknown {} type `{type_name}`, expected one of: {}",
                    kind.noun(),
                    known.join(", ")
                ),
            )),
            Err(ComponentParseError::Invalid(e)) => {
                let where_ = e.span().map(|s| error_at(s.start)).unwrap_or(at);
                self.errors.push(ConfigError::at(
                    where_,
                    format!("{path}: {}", e.message().trim()),
                ));
            }
            Err(ComponentParseError::Check(message)) => self
                .errors
                .push(ConfigError::at(at, format!("{path}: {message}"))),
        }
    }

    fn finish(mut self, origin: Origin) -> Result<Config, Vec<ConfigError>> {
        let mut config = Config {
            origin,
            data_dir: None,
            log_level: None,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            sources: std::mem::take(&mut self.sources),
            transforms: std::mem::take(&mut self.transforms),
            sinks: std::mem::take(&mut self.sinks),
            resource: std::mem::take(&mut self.resource)
                .into_iter()
                .map(|(k, (_, v))| (k, v))
                .collect(),
            api: self.api.take().map(|(_, api)| api).unwrap_or_default(),
            identities: std::mem::take(&mut self.identities)
                .into_iter()
                .map(|(id, (_, config))| (id, config))
                .collect(),
            policies: std::mem::take(&mut self.policies)
                .into_iter()
                .map(|(name, (_, config))| (name, config))
                .collect(),
        };
        for (key, (_, value_at, text)) in std::mem::take(&mut self.globals) {
            let text = match text {
                Some(text) => text,
                None => {
                    self.errors.push(ConfigError::at(
                        value_at,
                        format!("`{key}` must be a string"),
                    ));
                    continue;
                }
            };
            match key {
                "data_dir" => config.data_dir = Some(PathBuf::from(text)),
                "log_level" => match crate::logging::check_level(&text) {
                    Ok(()) => config.log_level = Some(text),
                    Err(e) => self
                        .errors
                        .push(ConfigError::at(value_at, format!("log_level: {e}"))),
                },
                "shutdown_timeout" => match humantime::parse_duration(&text) {
                    Ok(d) => config.shutdown_timeout = d,
                    Err(e) => self.errors.push(ConfigError::at(
                        value_at,
                        format!("shutdown_timeout: {e} (examples: \"30s\", \"2m\")"),
                    )),
                },
                _ => unreachable!("GLOBAL_KEYS and this match list the same keys"),
            }
        }
        if self.errors.is_empty() {
            Ok(config)
        } else {
            Err(self.errors)
        }
    }
}

fn name_is_valid(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn string_list(value: &Spanned<DeValue<'_>>) -> Option<Vec<String>> {
    let DeValue::Array(items) = value.get_ref() else {
        return None;
    };
    items
        .iter()
        .map(|item| match item.get_ref() {
            DeValue::String(s) => Some(s.to_string()),
            _ => None,
        })
        .collect()
}

/// Turns a byte offset into a 1-based line and column (in characters).
fn locate(file: &Arc<str>, text: &str, offset: usize) -> Location {
    let offset = offset.min(text.len());
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    Location {
        file: Arc::clone(file),
        line,
        column,
    }
}

fn floor_char_boundary(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// A duration written as a humantime string (`"500ms"`, `"5s"`, `"2m"`).
/// A newtype rather than a `with` helper so `Option<HumanDuration>` and
/// `#[serde(default)]` work as for any other field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> serde::Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        duration::deserialize(de).map(HumanDuration)
    }
}

impl schemars::JsonSchema for HumanDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A duration such as \"500ms\", \"5s\", \"2m\"",
            "pattern": "^\\s*\\d+\\s*[a-zA-Zµ]+(\\s*\\d+\\s*[a-zA-Zµ]+)*\\s*$"
        })
    }
}

/// A value that must never be printed: header values, tokens, keys.
/// `Debug` and `Display` show only that a value is set.
#[derive(Clone, PartialEq, Eq, serde::Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct SecretString(pub String);

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// A serde helper for durations written as humantime strings (`"5s"`, `"2m"`).
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(de)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration `{text}`: {e} (examples: \"500ms\", \"5s\", \"2m\")"
            ))
        })
    }
}

#[cfg(test)]
mod tests;
