//! Configuration of the `file` source: `[sources.NAME]` with `type = "file"`.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

/// Where to start reading a file that has no checkpoint and was found by the
/// first scan after start-up. Files that appear later are always read from
/// the beginning; files with a checkpoint always resume from it.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadFrom {
    #[default]
    Beginning,
    End,
}

/// An attribute the file source can put on every line it reads.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
pub enum FileAttribute {
    /// The file's path (OpenTelemetry's `log.file.path`).
    #[serde(rename = "log.file.path")]
    Path,
    /// The file's name, its path's last part (`log.file.name`).
    #[serde(rename = "log.file.name")]
    Name,
    /// The file's identity as the source tracks it, through renames.
    #[serde(rename = "tailguard.file.id")]
    Id,
    /// The line's byte offset in the file.
    #[serde(rename = "tailguard.file.offset")]
    Offset,
}

impl FileAttribute {
    pub const ALL: [FileAttribute; 4] = [Self::Path, Self::Name, Self::Id, Self::Offset];

    /// The attribute's key on a line.
    pub fn key(self) -> &'static str {
        match self {
            Self::Path => "log.file.path",
            Self::Name => "log.file.name",
            Self::Id => "tailguard.file.id",
            Self::Offset => "tailguard.file.offset",
        }
    }
}

/// How lines after a `start_pattern` line are joined into one event.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MultilineMode {
    /// Following lines that match `condition_pattern` are appended; the first
    /// line that does not match ends the event (and is handled on its own).
    /// Typical for stack traces (`condition_pattern = '^\s+at '`).
    ContinueThrough,
    /// Following lines that match `condition_pattern` are appended, plus the
    /// one line after them. Typical for lines continued with a trailing `\`.
    ContinuePast,
    /// Following lines are appended until one matches `condition_pattern`;
    /// that line is not included (it is handled on its own).
    HaltBefore,
    /// Following lines are appended up to and including the first one that
    /// matches `condition_pattern`. Typical for PEM blocks (`-----END`).
    HaltWith,
}

/// `multiline = { start_pattern, condition_pattern, mode, timeout }`.
#[derive(Clone, Debug, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MultilineConfig {
    /// A line matching this regex starts a multi-line event. Lines that do
    /// not match it while no event is open are emitted on their own.
    pub start_pattern: String,
    /// Decides, with `mode`, which following lines belong to the event.
    pub condition_pattern: String,
    pub mode: MultilineMode,
    /// An open event is emitted after this long without a new line.
    #[serde(
        default = "default_multiline_timeout",
        deserialize_with = "humantime_duration::deserialize"
    )]
    #[schemars(with = "String")]
    pub timeout: Duration,
}

/// The `file` source's settings. See the module documentation of
/// [`crate::sources::file`] for what each key does.
#[derive(Clone, Debug, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileSourceConfig {
    /// Absolute glob patterns of files to read; `**` crosses directories.
    pub include: Vec<String>,
    /// Absolute glob patterns of files to skip even though they match `include`.
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub read_from: ReadFrom,
    /// Files not modified within this long are not picked up (files already
    /// being read are not affected).
    #[serde(default, deserialize_with = "humantime_duration_opt::deserialize")]
    #[schemars(with = "Option<String>")]
    pub ignore_older: Option<Duration>,
    /// Longer lines are cut to this many bytes and flagged
    /// `tailguard.truncated = true`; the rest of the line is skipped.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
    /// How often to look for new, rotated and grown files without a
    /// file-system notification.
    #[serde(
        default = "default_poll_interval",
        deserialize_with = "humantime_duration::deserialize"
    )]
    #[schemars(with = "String")]
    pub poll_interval: Duration,
    /// How long a last line without a newline must stay unchanged before it
    /// is emitted anyway.
    #[serde(
        default = "default_trailing_line_timeout",
        deserialize_with = "humantime_duration::deserialize"
    )]
    #[schemars(with = "String")]
    pub trailing_line_timeout: Duration,
    /// Reads woken by file-system notifications are at least this far
    /// apart: a write after a quiet spell is read at once, a stream of
    /// small writes is read in rounds this far apart instead of once per
    /// write. `"0s"` reads on every notification.
    #[serde(
        default = "default_min_read_interval",
        deserialize_with = "humantime_duration::deserialize"
    )]
    #[schemars(with = "String")]
    pub min_read_interval: Duration,
    #[serde(default)]
    pub multiline: Option<MultilineConfig>,
    /// Open file handles kept at most; the handles of the files idle longest
    /// are closed and reopened (and re-identified) when they grow.
    #[serde(default = "default_max_open_files")]
    pub max_open_files: usize,
    /// How many leading bytes of a file are checksummed to tell files apart
    /// (together with device and inode).
    #[serde(default = "default_fingerprint_bytes")]
    pub fingerprint_bytes: usize,
    /// How often acknowledged progress is written to the checkpoint file.
    #[serde(
        default = "default_checkpoint_interval",
        deserialize_with = "humantime_duration::deserialize"
    )]
    #[schemars(with = "String")]
    pub checkpoint_interval: Duration,
    /// At most this many bytes are read from one file per round, so a busy
    /// file cannot starve the others. Also the size of one acknowledged batch.
    #[serde(default = "default_read_batch_bytes")]
    pub read_batch_bytes: usize,
    /// The attributes every line carries, of `log.file.path`, `log.file.name`,
    /// `tailguard.file.id` and `tailguard.file.offset` (all four by default).
    /// Fewer cost the collector less; without the id and offset a receiver
    /// cannot drop the lines sent again after a crash.
    #[serde(default = "default_file_attributes")]
    pub file_attributes: Vec<FileAttribute>,
}

pub const DEFAULT_MAX_LINE_BYTES: usize = 102_400;
pub const DEFAULT_MAX_OPEN_FILES: usize = 1024;
pub const DEFAULT_FINGERPRINT_BYTES: usize = 1024;
pub const DEFAULT_READ_BATCH_BYTES: usize = 64 * 1024;

fn default_max_line_bytes() -> usize {
    DEFAULT_MAX_LINE_BYTES
}
fn default_poll_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_trailing_line_timeout() -> Duration {
    Duration::from_secs(1)
}
/// As often as otelcol-contrib's filelog receiver polls by default
/// (`poll_interval`, 200 ms). At 1 MiB/s in 10 ms writes, 200 ms took the
/// agent from 2.17-2.23% to 1.83-1.87% of a core against 100 ms.
fn default_min_read_interval() -> Duration {
    Duration::from_millis(200)
}
fn default_multiline_timeout() -> Duration {
    Duration::from_secs(1)
}
fn default_max_open_files() -> usize {
    DEFAULT_MAX_OPEN_FILES
}
fn default_fingerprint_bytes() -> usize {
    DEFAULT_FINGERPRINT_BYTES
}
fn default_checkpoint_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_read_batch_bytes() -> usize {
    DEFAULT_READ_BATCH_BYTES
}
fn default_file_attributes() -> Vec<FileAttribute> {
    FileAttribute::ALL.to_vec()
}

impl FileSourceConfig {
    /// A configuration with every optional key at its default.
    pub fn new(include: Vec<String>) -> Self {
        Self {
            include,
            exclude: Vec::new(),
            read_from: ReadFrom::default(),
            ignore_older: None,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            poll_interval: default_poll_interval(),
            trailing_line_timeout: default_trailing_line_timeout(),
            min_read_interval: default_min_read_interval(),
            multiline: None,
            max_open_files: DEFAULT_MAX_OPEN_FILES,
            fingerprint_bytes: DEFAULT_FINGERPRINT_BYTES,
            checkpoint_interval: default_checkpoint_interval(),
            read_batch_bytes: DEFAULT_READ_BATCH_BYTES,
            file_attributes: default_file_attributes(),
        }
    }

    /// Checks values serde cannot; messages name the offending key.
    pub fn validate(&self) -> Result<(), String> {
        if self.include.is_empty() {
            return Err("`include` must list at least one glob pattern".into());
        }
        for (field, patterns) in [("include", &self.include), ("exclude", &self.exclude)] {
            for pattern in patterns {
                if !Path::new(pattern).is_absolute() {
                    return Err(format!(
                        "`{field}` pattern {pattern:?} must be an absolute path"
                    ));
                }
                super::discovery::compile_glob(pattern)
                    .map_err(|e| format!("`{field}` pattern {pattern:?} is invalid: {e}"))?;
            }
        }
        if self.max_line_bytes == 0 {
            return Err("`max_line_bytes` must be greater than 0".into());
        }
        if self.poll_interval.is_zero() {
            return Err("`poll_interval` must be greater than 0".into());
        }
        if self.trailing_line_timeout.is_zero() {
            return Err("`trailing_line_timeout` must be greater than 0".into());
        }
        if self.max_open_files == 0 {
            return Err("`max_open_files` must be at least 1".into());
        }
        if !(1..=65_536).contains(&self.fingerprint_bytes) {
            return Err("`fingerprint_bytes` must be between 1 and 65536".into());
        }
        if self.checkpoint_interval.is_zero() {
            return Err("`checkpoint_interval` must be greater than 0".into());
        }
        if self.read_batch_bytes == 0 {
            return Err("`read_batch_bytes` must be greater than 0".into());
        }
        for (i, a) in self.file_attributes.iter().enumerate() {
            if self.file_attributes[..i].contains(a) {
                return Err(format!("`file_attributes` lists {:?} twice", a.key()));
            }
        }
        if let Some(ml) = &self.multiline {
            regex::bytes::Regex::new(&ml.start_pattern)
                .map_err(|e| format!("`multiline.start_pattern` is not a valid regex: {e}"))?;
            regex::bytes::Regex::new(&ml.condition_pattern)
                .map_err(|e| format!("`multiline.condition_pattern` is not a valid regex: {e}"))?;
            if ml.timeout.is_zero() {
                return Err("`multiline.timeout` must be greater than 0".into());
            }
        }
        Ok(())
    }
}

/// `"5s"`-style durations through `humantime`.
pub(crate) mod humantime_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map_err(|e| serde::de::Error::custom(format!("invalid duration {s:?}: {e}")))
    }
}

/// Optional `"5s"`-style durations through `humantime`.
pub(crate) mod humantime_duration_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(s) => humantime::parse_duration(&s)
                .map(Some)
                .map_err(|e| serde::de::Error::custom(format!("invalid duration {s:?}: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<FileSourceConfig, String> {
        toml::from_str::<FileSourceConfig>(s).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_durations() {
        let c = parse(
            r#"
            include = ["/var/log/**/*.log"]
            poll_interval = "250ms"
            ignore_older = "1day"
            multiline = { start_pattern = '^\S', condition_pattern = '^\s', mode = "continue_through" }
            "#,
        )
        .unwrap();
        assert_eq!(c.poll_interval, Duration::from_millis(250));
        assert_eq!(c.ignore_older, Some(Duration::from_secs(86_400)));
        assert_eq!(c.max_line_bytes, 102_400);
        assert_eq!(c.read_from, ReadFrom::Beginning);
        assert_eq!(
            c.multiline.as_ref().unwrap().timeout,
            Duration::from_secs(1)
        );
        c.validate().unwrap();
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected() {
        assert!(parse("include = [\"/a\"]\nbogus = 1").is_err());
        assert!(parse("include = [\"/a\"]\npoll_interval = \"soon\"").is_err());
        assert!(parse("include = [\"/a\"]\nread_from = \"middle\"").is_err());
        assert!(parse("exclude = []").is_err(), "include is required");
        let err = parse("include = []").unwrap().validate().unwrap_err();
        assert!(err.contains("`include`"), "{err}");
        let err = parse("include = [\"rel/*.log\"]")
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(err.contains("absolute"), "{err}");
        let err = parse("include = [\"/a\"]\nmax_line_bytes = 0")
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(err.contains("`max_line_bytes`"), "{err}");
        let err = parse(
            "include = [\"/a\"]\nmultiline = { start_pattern = '(', condition_pattern = 'x', mode = \"halt_with\" }",
        )
        .unwrap()
        .validate()
        .unwrap_err();
        assert!(err.contains("`multiline.start_pattern`"), "{err}");
    }
}
