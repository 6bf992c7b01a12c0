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

pub fn build(config: &CiExecConfig, cx: SourceContext) -> anyhow::Result<ComponentTask> {
    config.check().map_err(anyhow::Error::msg)?;
    let path = config
        .socket
        .clone()
        .unwrap_or_else(|| cx.globals.data_dir.join(DEFAULT_SOCKET_NAME));
    let mode =
        u32::from_str_radix(config.socket_mode.trim_start_matches("0o"), 8).expect("checked above");
    let max = config.max_message_bytes;
    Ok(Box::pin(async move {
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
                    connections.spawn(async move {
                        tokio::select! {
                            result = serve(stream, out, base, name, max, inventory) => {
                                if let Err(e) = result {
                                    warn!(error = %format!("{e:#}"), "dropped an exec connection");
                                }
                            }
                            () = shutdown.cancelled() => {}
                        }
                    });
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        drop(listener);
        let _ = std::fs::remove_file(&path);
        // Steps still connected finish their current batch, then stop.
        while connections.join_next().await.is_some() {}
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
) -> anyhow::Result<()> {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    let mut context: Option<Arc<Context>> = None;
    let origin = Origin {
        source,
        ..Origin::default()
    };
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
                    context = Some(Arc::new(job));
                }
                (Message::Job { .. }, Some(_)) => anyhow::bail!("a second job message"),
                (_, None) => anyhow::bail!("the first message must be the job"),
                (message, Some(job)) => {
                    if let Some(event) = to_event(&message, &origin, job) {
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
    origin: &Origin,
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
            let mut event = Event::new(message.log_body()?, origin.clone(), Arc::clone(context));
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
            let mut event = Event::span(span, origin.clone(), Arc::clone(context));
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
