//! Building components into tasks and supervising them until they finish.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::config::Config;
use crate::event::{Context, EventBatch};
use crate::topology::component::{
    ComponentTask, Globals, SinkContext, SourceContext, TransformContext,
};
use crate::topology::output::Output;

/// Batches each channel holds before its sender has to wait. Small on
/// purpose: queues add latency and memory, not throughput.
const CHANNEL_BATCHES: usize = 16;

/// Why a run ended badly. Every variant means the agent exits non-zero.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("component {component} could not start: {message}")]
    Build { component: String, message: String },
    #[error("{} failed: {}", .0.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>().join(", "), .0.iter().map(|(c, m)| format!("{c}: {m}")).collect::<Vec<_>>().join("; "))]
    ComponentsFailed(Vec<(String, String)>),
    #[error(
        "shutdown did not finish within {timeout:?}; still running: {}; their in-flight events were not delivered",
        .running.join(", ")
    )]
    ShutdownTimeout {
        timeout: Duration,
        running: Vec<String>,
    },
}

/// Runs the topology until every component has finished: either because all
/// sources reached their end (stdin at EOF), or because `stop` resolved (a
/// signal) and the drain completed, or because a component failed.
pub async fn run(
    config: &Config,
    globals: Globals,
    context: Arc<Context>,
    stop: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let shutdown = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let mut names = HashMap::new();
    for (name, task) in build(config, &globals, &context, &shutdown)? {
        let handle = tasks.spawn(task);
        names.insert(handle.id(), name);
    }
    info!(summary = %crate::topology::graph::summary(config), "started");

    let mut stop = std::pin::pin!(stop);
    let mut stopping = false;
    let mut deadline: Option<Instant> = None;
    let mut failures = Vec::new();
    loop {
        tokio::select! {
            () = &mut stop, if !stopping => {
                info!(timeout = ?config.shutdown_timeout, "shutting down: draining in-flight events");
                stopping = true;
                deadline = Some(Instant::now() + config.shutdown_timeout);
                shutdown.cancel();
            }
            () = sleep_until(deadline), if deadline.is_some() => {
                let mut running: Vec<String> = names.values().cloned().collect();
                running.sort();
                tasks.abort_all();
                return Err(RunError::ShutdownTimeout { timeout: config.shutdown_timeout, running });
            }
            joined = tasks.join_next_with_id() => {
                let Some(joined) = joined else { break };
                let (id, result) = match joined {
                    Ok((id, result)) => (id, result.map_err(|e| format!("{e:#}"))),
                    Err(e) => (e.id(), Err(if e.is_panic() { "panicked".to_string() } else { "was cancelled".to_string() })),
                };
                let name = names.remove(&id).unwrap_or_else(|| "<unknown>".into());
                match result {
                    Ok(()) => debug!(component = %name, "finished"),
                    Err(message) => {
                        if failures.is_empty() || !message.contains(OUTPUT_CLOSED_MARK) {
                            error!(component = %name, error = %message, "component failed");
                        } else {
                            warn!(component = %name, "stopped because a downstream component failed");
                        }
                        failures.push((name, message));
                        if !stopping {
                            stopping = true;
                            deadline = Some(Instant::now() + config.shutdown_timeout);
                            shutdown.cancel();
                        }
                    }
                }
            }
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(RunError::ComponentsFailed(failures))
    }
}

/// Part of [`OutputClosed`]'s message: a component that stopped only because
/// its downstream failed is a consequence, not a cause.
const OUTPUT_CLOSED_MARK: &str = "no downstream component is running";

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Wires channels between components and builds each into its task.
fn build(
    config: &Config,
    globals: &Globals,
    context: &Arc<Context>,
    shutdown: &CancellationToken,
) -> Result<Vec<(String, ComponentTask)>, RunError> {
    let mut senders: HashMap<&str, mpsc::Sender<EventBatch>> = HashMap::new();
    let mut receivers: HashMap<&str, mpsc::Receiver<EventBatch>> = HashMap::new();
    let consumers = config
        .transforms
        .iter()
        .map(|(n, c)| (n, &c.inputs))
        .chain(config.sinks.iter().map(|(n, c)| (n, &c.inputs)));
    let mut readers_of: HashMap<&str, Vec<&str>> = HashMap::new();
    for (name, inputs) in consumers {
        let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
        senders.insert(name, tx);
        receivers.insert(name, rx);
        for input in inputs {
            readers_of.entry(input).or_default().push(name);
        }
    }
    let output_of = |name: &str| {
        let mut out = Output::new();
        for reader in readers_of.get(name).into_iter().flatten() {
            out.connect(Arc::from(*reader), senders[reader].clone());
        }
        out
    };
    let build_error = |name: &str, e: anyhow::Error| RunError::Build {
        component: name.to_string(),
        message: format!("{e:#}"),
    };

    let mut tasks = Vec::new();
    for (name, c) in &config.sources {
        let cx = SourceContext {
            name: Arc::from(name.as_str()),
            globals: globals.clone(),
            context: Arc::clone(context),
            shutdown: shutdown.child_token(),
            out: output_of(name),
        };
        let task = c.config.build(cx).map_err(|e| build_error(name, e))?;
        tasks.push((format!("sources.{name}"), task));
    }
    for (name, c) in &config.transforms {
        let cx = TransformContext {
            name: Arc::from(name.as_str()),
            globals: globals.clone(),
            input: receivers.remove(name.as_str()).expect("channel made above"),
            out: output_of(name),
        };
        let task = c.config.build(cx).map_err(|e| build_error(name, e))?;
        tasks.push((format!("transforms.{name}"), task));
    }
    for (name, c) in &config.sinks {
        let cx = SinkContext {
            name: Arc::from(name.as_str()),
            globals: globals.clone(),
            input: receivers.remove(name.as_str()).expect("channel made above"),
        };
        let task = c.config.build(cx).map_err(|e| build_error(name, e))?;
        tasks.push((format!("sinks.{name}"), task));
    }
    // Only components hold senders now, so channels close as they finish.
    drop(senders);
    Ok(tasks)
}

/// Runs a transform that handles one batch at a time without waiting on
/// anything but its output: the loop every simple transform shares.
pub fn function_transform(
    mut cx: TransformContext,
    mut process: impl FnMut(&mut EventBatch) + Send + 'static,
) -> ComponentTask {
    Box::pin(async move {
        while let Some(mut batch) = cx.input.recv().await {
            process(&mut batch);
            cx.out.send(batch).await?;
        }
        Ok(())
    })
}
