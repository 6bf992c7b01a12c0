//! Runner log sources: `github_runner_logs`, `jenkins_logs`,
//! `buildkite_logs`.
//!
//! Each is a `file` source (same options, same lossless tailing and
//! checkpoints) with default `include` globs for where that CI's runner
//! writes job logs, and two additions on its output:
//!
//! - **Steps.** Section markers (`##[group]`/`##[endgroup]`, GitLab's
//!   `section_start:`/`section_end:`, Buildkite's `---`/`+++`/`~~~`) become
//!   spans named after the section. Every line of a log file shares one
//!   trace; a line inside a section carries that section's span id, so a
//!   collector can show a job's lines grouped by step.
//! - **Job context from files.** A Jenkins build log's path names its job
//!   and build (`jobs/<folder>/jobs/<job>/builds/<n>/log`); those
//!   attributes (`cicd.pipeline.name`, `cicd.pipeline.run.id`, ...) are
//!   added to its lines.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::ComponentParseError;
use crate::event::{Context, Event, EventBatch, SpanData, SpanKind, SpanStatus, TraceIds};
use crate::identity::ci::{self, CiSystem, Marker};
use crate::sources::file::{self, FileSourceConfig};
use crate::topology::component::{ComponentTask, SourceContext};

/// The three runner log source types and their CI system.
pub const TYPES: &[(&str, CiSystem)] = &[
    ("buildkite_logs", CiSystem::Buildkite),
    ("github_runner_logs", CiSystem::GithubActions),
    ("jenkins_logs", CiSystem::Jenkins),
];

/// A runner log source as configured.
#[derive(Clone, Debug)]
pub struct RunnerLogsConfig {
    pub system: CiSystem,
    pub file: FileSourceConfig,
}

/// Parses the options: those of the `file` source, with `include`
/// defaulting to where `system`'s runner writes logs on this machine.
pub(crate) fn parse(
    system: CiSystem,
    options: toml::de::ValueDeserializer<'_>,
) -> Result<RunnerLogsConfig, ComponentParseError> {
    let mut table: toml::Table = crate::config::deserialize(options)?;
    if !table.contains_key("include") {
        let env = |name: &str| std::env::var(name).ok();
        let globs: Vec<toml::Value> = ci::default_runner_log_globs(&env)
            .into_iter()
            .filter(|(s, _)| *s == system)
            .map(|(_, glob)| toml::Value::String(glob))
            .collect();
        if globs.is_empty() {
            return Err(ComponentParseError::Check(
                "no default log location for this CI on this machine: set `include`".into(),
            ));
        }
        table.insert("include".into(), toml::Value::Array(globs));
    }
    let file: FileSourceConfig = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| ComponentParseError::Check(e.message().to_string()))?;
    file.validate().map_err(ComponentParseError::Check)?;
    Ok(RunnerLogsConfig { system, file })
}

pub fn build(config: &RunnerLogsConfig, mut cx: SourceContext) -> anyhow::Result<ComponentTask> {
    // The file source sends into a channel; the tracker forwards to the
    // real output. Acknowledgements ride on the events, unchanged.
    let (reading, mut rx) = file::build_into_channel(&config.file, &cx)?;
    let mut tracker = SectionTracker::new(config.system);
    Ok(Box::pin(async move {
        let forwarding = async {
            while let Some(mut batch) = rx.recv().await {
                tracker.process(&mut batch);
                cx.out.send(batch).await?;
            }
            anyhow::Ok(())
        };
        let (read, forwarded) = tokio::join!(reading, forwarding);
        read.and(forwarded)
    }))
}

/// An open section of one log file.
struct Section {
    name: String,
    id: Option<String>,
    ids: TraceIds,
    start: SystemTime,
}

/// What is known about one log file.
struct FileState {
    trace: TraceIds,
    open: Vec<Section>,
    /// The file's own context when its path names a job (Jenkins).
    context: Option<Arc<Context>>,
}

/// Turns section markers into spans and ties lines to them.
pub struct SectionTracker {
    system: CiSystem,
    files: HashMap<Arc<str>, FileState>,
}

/// Files whose state is kept; a long-running agent sees many job logs.
const MAX_TRACKED_FILES: usize = 4096;

impl SectionTracker {
    pub fn new(system: CiSystem) -> Self {
        Self {
            system,
            files: HashMap::new(),
        }
    }

    pub fn process(&mut self, batch: &mut EventBatch) {
        let mut spans = Vec::new();
        for event in batch.iter_mut() {
            if event.as_span().is_some() {
                continue;
            }
            let key: Arc<str> = event
                .origin
                .file_id
                .clone()
                .or_else(|| {
                    event
                        .origin
                        .path
                        .as_ref()
                        .map(|p| Arc::from(p.to_string_lossy().as_ref()))
                })
                .unwrap_or_else(|| Arc::clone(&event.origin.source));
            if self.files.len() >= MAX_TRACKED_FILES && !self.files.contains_key(&key) {
                self.files.clear();
            }
            let system = self.system;
            let state = self.files.entry(key).or_insert_with(|| FileState {
                trace: TraceIds::new_root(),
                open: Vec::new(),
                context: job_context(system, event),
            });
            if let Some(context) = &state.context {
                event.context = Arc::clone(context);
            }
            for marker in ci::parse_markers_as(system, &event.body) {
                match marker {
                    Marker::Start { name, id, at_unix } => {
                        // GitHub groups and Buildkite sections do not nest: a
                        // new one ends the one before.
                        if matches!(system, CiSystem::GithubActions | CiSystem::Buildkite)
                            && let Some(open) = state.open.pop()
                        {
                            spans.push(section_span(open, at_unix, event));
                        }
                        state.open.push(Section {
                            name,
                            id,
                            ids: state.trace.child(),
                            start: at_unix.map_or(event.observed_at, from_unix),
                        });
                    }
                    Marker::End { id, at_unix } => {
                        let at = match &id {
                            Some(id) => state.open.iter().rposition(|s| s.id.as_ref() == Some(id)),
                            None => state.open.len().checked_sub(1),
                        };
                        if let Some(at) = at {
                            let open = state.open.remove(at);
                            spans.push(section_span(open, at_unix, event));
                        }
                    }
                }
            }
            let ids = state.open.last().map_or(state.trace, |s| s.ids);
            event.trace = Some(ids);
        }
        batch.extend(spans);
    }
}

fn from_unix(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds)
}

/// The span for a section that ended at `line` (or at `at_unix`).
fn section_span(section: Section, at_unix: Option<u64>, line: &Event) -> Event {
    let span = SpanData {
        name: section.name.clone(),
        ids: section.ids,
        parent_span_id: None,
        kind: SpanKind::Internal,
        start: section.start,
        end: at_unix.map_or(line.observed_at, from_unix),
        status: SpanStatus::Unset,
    };
    let mut event = Event::span(span, line.origin.clone(), Arc::clone(&line.context));
    event
        .attributes
        .insert("tailguard.ci.section.name", section.name);
    if let Some(id) = section.id {
        event.attributes.insert("tailguard.ci.section.id", id);
    }
    // from the file itself where the source's `file_attributes` leave the lines without it
    if let Some(path) = line.attributes.get("log.file.path") {
        event.attributes.insert("log.file.path", path.clone());
    } else if let Some(path) = &line.origin.path {
        event
            .attributes
            .insert("log.file.path", path.to_string_lossy().as_ref());
    }
    event
}

/// A Jenkins build log's job context, from its path.
fn job_context(system: CiSystem, event: &Event) -> Option<Arc<Context>> {
    if system != CiSystem::Jenkins {
        return None;
    }
    let job = ci::jenkins_context_from_log_path(event.origin.path.as_deref()?)?;
    let mut context = (*event.context).clone();
    for (k, v) in job.attributes {
        context.identity.insert(k, v);
    }
    Some(Arc::new(context))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Origin;
    use std::path::Path;

    fn line(text: &str, path: &str) -> Event {
        let origin = Origin {
            source: Arc::from("runner"),
            path: Some(Arc::from(Path::new(path))),
            ..Origin::default()
        };
        Event::new(text.as_bytes().to_vec(), origin, Arc::default())
    }

    fn spans(batch: &[Event]) -> Vec<&SpanData> {
        batch.iter().filter_map(Event::as_span).collect()
    }

    #[test]
    fn github_groups_become_spans_and_lines_join_them() {
        let mut t = SectionTracker::new(CiSystem::GithubActions);
        let log = "/opt/actions-runner/_diag/pages/a.log";
        let mut batch = vec![
            line(
                "2024-01-01T00:00:00.0000000Z ##[group]Run actions/checkout@v4",
                log,
            ),
            line("Syncing repository", log),
            line("##[endgroup]", log),
            line("##[group]Run make test", log),
            line("ok", log),
            line("##[group]Post checkout", log),
        ];
        t.process(&mut batch);
        let names: Vec<&str> = spans(&batch).iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["Run actions/checkout@v4", "Run make test"]);
        // the lines carry no `log.file.path` (`file_attributes`): the span takes the file's
        let span_event = batch.iter().find(|e| e.as_span().is_some()).unwrap();
        assert_eq!(
            span_event
                .attributes
                .get("log.file.path")
                .map(|v| v.to_string())
                .as_deref(),
            Some(log)
        );
        let checkout = spans(&batch)[0];
        assert_eq!(batch[1].trace.unwrap().span_id, checkout.ids.span_id);
        assert_eq!(checkout.start, from_unix(1_704_067_200));
        let test_span = spans(&batch)[1];
        assert_eq!(batch[4].trace.unwrap().span_id, test_span.ids.span_id);
        assert_eq!(
            batch[4].trace.unwrap().trace_id,
            batch[1].trace.unwrap().trace_id,
            "one trace per log file"
        );
    }

    #[test]
    fn gitlab_sections_nest_by_id() {
        let mut t = SectionTracker::new(CiSystem::GitlabCi);
        let log = "/builds/job.log";
        let mut batch = vec![
            line(
                "\u{1b}[0Ksection_start:1700000000:build[collapsed=true]\r\u{1b}[0KBuild",
                log,
            ),
            line(
                "\u{1b}[0Ksection_start:1700000001:deps\r\u{1b}[0KDependencies",
                log,
            ),
            line("npm ci", log),
            line("\u{1b}[0Ksection_end:1700000005:deps\r\u{1b}[0K", log),
            line("compiling", log),
            line("\u{1b}[0Ksection_end:1700000009:build\r\u{1b}[0K", log),
        ];
        t.process(&mut batch);
        let found = spans(&batch);
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].name, "Dependencies");
        assert_eq!(found[1].name, "Build");
        assert_eq!(batch[2].trace.unwrap().span_id, found[0].ids.span_id);
        assert_eq!(batch[4].trace.unwrap().span_id, found[1].ids.span_id);
        assert_eq!(found[1].end, from_unix(1_700_000_009));
    }

    #[test]
    fn jenkins_lines_carry_the_job_from_their_path() {
        let mut t = SectionTracker::new(CiSystem::Jenkins);
        let mut batch = vec![line(
            "Started by user",
            "/var/lib/jenkins/jobs/platform/jobs/deploy/builds/42/log",
        )];
        t.process(&mut batch);
        let identity = &batch[0].context.identity;
        assert_eq!(
            identity.get("cicd.pipeline.name").unwrap().to_string(),
            "platform/deploy"
        );
        assert_eq!(
            identity.get("cicd.pipeline.run.id").unwrap().to_string(),
            "42"
        );
    }
}
