//! `type = "ci_exec"`: events from `tailguard exec` wrappers over a unix
//! socket.
//!
//! Each wrapped CI step connects, sends its job context once, then its
//! output lines and its step span (see [`crate::exec::wire`]). Every
//! connection gets its own shared context, so each line carries the job and
//! identity attributes of the step that printed it.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tracing::{debug, info, warn};

use crate::event::{Context, Event, EventBatch, Origin, SpanData, SpanKind, SpanStatus, TraceIds};
use crate::exec::wire::{self, Message, WireValue};
use crate::topology::component::{ComponentTask, SourceContext};
use crate::topology::output::Output;

/// The socket file name under `data_dir` when `socket` is not set; also
/// where `tailguard exec` looks by default.
pub const DEFAULT_SOCKET_NAME: &str = "exec.sock";

#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CiExecConfig {
    /// Where to listen. Default: `data_dir/exec.sock`. Runner users must be
    /// able to reach it: on packaged installs point it at
    /// `/run/tailguard/exec.sock` and add runner users to the `tailguard`
    /// group.
    pub socket: Option<PathBuf>,
    /// Permissions of the socket file, as an octal string.
    #[serde(default = "default_mode")]
    pub socket_mode: String,
    /// Longer messages are refused (and the connection closed).
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// A job's span is emitted once no step of it has run for this long
    /// (and at shutdown).
    #[serde(default = "default_job_idle_timeout")]
    #[schemars(with = "String")]
    pub job_idle_timeout: crate::config::HumanDuration,
}

fn default_job_idle_timeout() -> crate::config::HumanDuration {
    crate::config::HumanDuration(std::time::Duration::from_secs(300))
}

fn default_mode() -> String {
    "0660".into()
}

fn default_max_message_bytes() -> usize {
    4 * 1024 * 1024
}

impl CiExecConfig {
    pub(crate) fn check(&self) -> Result<(), String> {
        u32::from_str_radix(self.socket_mode.trim_start_matches("0o"), 8)
            .map(|_| ())
            .map_err(|_| {
                format!(
                    "socket_mode `{}` is not an octal mode like \"0660\"",
                    self.socket_mode
                )
            })
    }
}

pub fn build(config: &CiExecConfig, mut cx: SourceContext) -> anyhow::Result<ComponentTask> {
    config.check().map_err(anyhow::Error::msg)?;
    let path = config
        .socket
        .clone()
        .unwrap_or_else(|| cx.globals.data_dir.join(DEFAULT_SOCKET_NAME));
    let mode =
        u32::from_str_radix(config.socket_mode.trim_start_matches("0o"), 8).expect("checked above");
    let max = config.max_message_bytes;
    let idle = config.job_idle_timeout.0;
    let jobs = Arc::new(std::sync::Mutex::new(JobTracker::default()));
    Ok(Box::pin(async move {
        let mut sweep = tokio::time::interval(idle.min(std::time::Duration::from_secs(5)));
        // A socket left by a previous run would make bind fail.
        if std::fs::symlink_metadata(&path).is_ok() {
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot remove the stale socket {}", path.display()))?;
        }
        let listener = UnixListener::bind(&path)
            .with_context(|| format!("cannot listen on {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("cannot set the mode of {}", path.display()))?;
        info!(socket = %path.display(), "listening for tailguard exec");
        let mut connections = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                () = cx.shutdown.cancelled() => break,
                accepted = listener.accept() => {
                    let (stream, _) = accepted.context("accept failed")?;
                    let (out, base, name) = (cx.out.clone(), cx.context.clone(), cx.name.clone());
                    let inventory = Arc::clone(&cx.globals.inventory);
                    let shutdown = cx.shutdown.clone();
                    let jobs = Arc::clone(&jobs);
                    connections.spawn(async move {
                        tokio::select! {
                            result = serve(stream, out, base, name, max, inventory, jobs) => {
                                if let Err(e) = result {
                                    warn!(error = %format!("{e:#}"), "dropped an exec connection");
                                }
                            }
                            () = shutdown.cancelled() => {}
                        }
                    });
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                _ = sweep.tick() => {
                    let finished = lock(&jobs).take_idle(idle, &cx.name);
                    cx.out.send(finished).await?;
                }
            }
        }
        drop(listener);
        let _ = std::fs::remove_file(&path);
        // Steps still connected finish their current batch, then stop.
        while connections.join_next().await.is_some() {}
        let open = lock(&jobs).take_all(&cx.name);
        cx.out.send(open).await?;
        Ok(())
    }))
}

/// Reads one wrapper's messages until it disconnects.
async fn serve(
    stream: UnixStream,
    mut out: Output,
    base: Arc<Context>,
    source: Arc<str>,
    max_message_bytes: usize,
    inventory: Arc<crate::identity::inventory::Inventory>,
    jobs: Arc<std::sync::Mutex<JobTracker>>,
) -> anyhow::Result<()> {
    let mut job_key: Option<[u8; 8]> = None;
    let result = serve_messages(
        stream,
        &mut out,
        base,
        source,
        max_message_bytes,
        inventory,
        &jobs,
        &mut job_key,
    )
    .await;
    if let Some(key) = job_key {
        lock(&jobs).disconnected(key);
    }
    result
}

#[allow(clippy::too_many_arguments)]
async fn serve_messages(
    stream: UnixStream,
    out: &mut Output,
    base: Arc<Context>,
    source: Arc<str>,
    max_message_bytes: usize,
    inventory: Arc<crate::identity::inventory::Inventory>,
    jobs: &std::sync::Mutex<JobTracker>,
    job_key: &mut Option<[u8; 8]>,
) -> anyhow::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    let mut context: Option<Arc<Context>> = None;
    let origin = Arc::new(Origin {
        source,
        ..Origin::default()
    });
    loop {
        let mut batch = EventBatch::new();
        // Take every complete message already buffered as one batch.
        loop {
            line.clear();
            let read = (&mut reader)
                .take(max_message_bytes as u64 + 1)
                .read_until(b'\n', &mut line)
                .await?;
            if read == 0 {
                out.send(batch).await?;
                return Ok(());
            }
            anyhow::ensure!(
                line.len() <= max_message_bytes,
                "a message is larger than max_message_bytes"
            );
            let message: Message = serde_json::from_slice(&line).context("malformed message")?;
            match (message, &context) {
                (
                    Message::Job {
                        version,
                        attributes,
                        resource,
                        env_names,
                        job_trace_id,
                        job_span_id,
                    },
                    None,
                ) => {
                    anyhow::ensure!(
                        version == wire::VERSION,
                        "unsupported wrapper protocol version {version}"
                    );
                    let mut job = (*base).clone();
                    for (k, v) in resource {
                        job.resource.insert(k, v);
                    }
                    for (k, v) in attributes {
                        job.identity.insert(k, v);
                    }
                    // The job receives an inventory identity's secret in a
                    // variable the inventory names: events are that identity's.
                    if let Some(identity) = env_names.iter().find_map(|n| inventory.by_env_name(n))
                    {
                        for (k, v) in identity.attributes().iter() {
                            job.identity.insert(k.to_string(), v.clone());
                        }
                    }
                    debug!("exec step connected");
                    let job = Arc::new(job);
                    if let (Some(trace), Some(span)) = (
                        job_trace_id.as_deref().and_then(wire::parse_id::<16>),
                        job_span_id.as_deref().and_then(wire::parse_id::<8>),
                    ) {
                        let ids = TraceIds {
                            trace_id: trace,
                            span_id: span,
                        };
                        lock(jobs).connected(ids, &job);
                        *job_key = Some(span);
                    }
                    context = Some(job);
                }
                (Message::Job { .. }, Some(_)) => anyhow::bail!("a second job message"),
                (_, None) => anyhow::bail!("the first message must be the job"),
                (message, Some(job)) => {
                    if let Some(event) = to_event(&message, &origin, job) {
                        if let (Some(key), Some(span)) = (job_key.as_ref(), event.as_span()) {
                            let failed = matches!(span.status, SpanStatus::Error(_));
                            lock(jobs).step_ended(*key, span.start, span.end, failed);
                        }
                        batch.push(event);
                    }
                }
            }
            if reader.buffer().is_empty() || batch.len() >= 512 {
                break;
            }
        }
        out.send(batch).await?;
    }
}

pub(crate) fn to_event(
    message: &Message,
    origin: &Arc<Origin>,
    context: &Arc<Context>,
) -> Option<Event> {
    match message {
        Message::Log {
            observed_unix_nanos,
            stream,
            trace_id,
            span_id,
            ..
        } => {
            let mut event =
                Event::new(message.log_body()?, Arc::clone(origin), Arc::clone(context));
            event.observed_at = wire::from_unix_nanos(*observed_unix_nanos);
            event.attributes.insert("log.iostream", stream.as_str());
            event.trace = Some(TraceIds {
                trace_id: wire::parse_id(trace_id)?,
                span_id: wire::parse_id(span_id)?,
            });
            Some(event)
        }
        Message::Span {
            name,
            trace_id,
            span_id,
            parent_span_id,
            start_unix_nanos,
            end_unix_nanos,
            status,
            status_message,
            attributes,
        } => {
            let span = SpanData {
                name: name.clone(),
                ids: TraceIds {
                    trace_id: wire::parse_id(trace_id)?,
                    span_id: wire::parse_id(span_id)?,
                },
                parent_span_id: parent_span_id.as_deref().and_then(wire::parse_id),
                kind: SpanKind::Internal,
                start: wire::from_unix_nanos(*start_unix_nanos),
                end: wire::from_unix_nanos(*end_unix_nanos),
                status: match status.as_str() {
                    "ok" => SpanStatus::Ok,
                    "error" => SpanStatus::Error(status_message.clone().unwrap_or_default()),
                    _ => SpanStatus::Unset,
                },
            };
            let mut event = Event::span(span, Arc::clone(origin), Arc::clone(context));
            for (k, v) in attributes {
                match v {
                    WireValue::Bool(b) => event.attributes.insert(k.clone(), *b),
                    WireValue::Int(i) => event.attributes.insert(k.clone(), *i),
                    WireValue::String(s) => event.attributes.insert(k.clone(), s.as_str()),
                }
            }
            Some(event)
        }
        Message::Job { .. } => None,
    }
}

fn lock(jobs: &std::sync::Mutex<JobTracker>) -> std::sync::MutexGuard<'_, JobTracker> {
    jobs.lock().unwrap_or_else(|p| p.into_inner())
}

/// A job seen through its wrapped steps.
struct JobState {
    ids: TraceIds,
    context: Arc<Context>,
    start: Option<std::time::SystemTime>,
    end: Option<std::time::SystemTime>,
    failed: bool,
    connected: usize,
    last_seen: std::time::Instant,
}

/// Jobs whose steps run on this runner, until their span is emitted.
/// A job has no "done" message (its last step does not know it is the
/// last), so its span ends when it has been quiet for `job_idle_timeout`:
/// from its first step's start to its last step's end.
#[derive(Default)]
struct JobTracker {
    jobs: std::collections::HashMap<[u8; 8], JobState>,
}

impl JobTracker {
    fn connected(&mut self, ids: TraceIds, context: &Arc<Context>) {
        let job = self.jobs.entry(ids.span_id).or_insert_with(|| JobState {
            ids,
            context: Arc::clone(context),
            start: None,
            end: None,
            failed: false,
            connected: 0,
            last_seen: std::time::Instant::now(),
        });
        job.connected += 1;
        job.last_seen = std::time::Instant::now();
    }

    fn disconnected(&mut self, key: [u8; 8]) {
        if let Some(job) = self.jobs.get_mut(&key) {
            job.connected = job.connected.saturating_sub(1);
            job.last_seen = std::time::Instant::now();
        }
    }

    fn step_ended(
        &mut self,
        key: [u8; 8],
        start: std::time::SystemTime,
        end: std::time::SystemTime,
        failed: bool,
    ) {
        if let Some(job) = self.jobs.get_mut(&key) {
            job.start = Some(job.start.map_or(start, |s| s.min(start)));
            job.end = Some(job.end.map_or(end, |e| e.max(end)));
            job.failed |= failed;
        }
    }

    /// Spans of the jobs with no step connected for `idle`.
    fn take_idle(&mut self, idle: std::time::Duration, source: &Arc<str>) -> EventBatch {
        let done: Vec<[u8; 8]> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.connected == 0 && j.last_seen.elapsed() >= idle)
            .map(|(k, _)| *k)
            .collect();
        done.into_iter()
            .filter_map(|k| self.jobs.remove(&k))
            .filter_map(|j| job_span(j, source))
            .collect()
    }

    fn take_all(&mut self, source: &Arc<str>) -> EventBatch {
        self.jobs
            .drain()
            .filter_map(|(_, j)| job_span(j, source))
            .collect()
    }
}

/// The job's span: named after the job, its result `failure` when any step
/// failed.
fn job_span(job: JobState, source: &Arc<str>) -> Option<Event> {
    let (start, end) = (job.start?, job.end?);
    let name = job
        .context
        .identity
        .get("cicd.pipeline.task.name")
        .map_or_else(|| "job".to_string(), |v| v.to_string());
    let span = SpanData {
        name,
        ids: job.ids,
        parent_span_id: None,
        kind: SpanKind::Internal,
        start,
        end,
        status: if job.failed {
            SpanStatus::Error("a step failed".into())
        } else {
            SpanStatus::Ok
        },
    };
    let origin = Origin {
        source: Arc::clone(source),
        ..Origin::default()
    };
    let mut event = Event::span(span, origin, job.context);
    event.attributes.insert(
        "cicd.pipeline.task.run.result",
        if job.failed { "failure" } else { "success" },
    );
    Some(event)
}
