//! Building components into tasks, supervising them, and reloading.
//!
//! A reload (SIGHUP) swaps the running graph for a new configuration
//! without losing or duplicating events:
//!
//! - A component whose type and options are unchanged keeps running; if its
//!   downstream changed, its output is re-pointed between two batches.
//! - A changed or new transform or sink gets a fresh input channel at once,
//!   so upstream components can send to it right away (the channel fills,
//!   then pushes back). A changed component's new task starts only after the
//!   old one has drained what it had and stopped, so two versions never
//!   share a file, socket, checkpoint or buffer.
//! - A removed or changed source is told to stop; it finishes like at
//!   shutdown (sending what it read and saving its checkpoint), and its
//!   replacement resumes from that checkpoint.
//!
//! New components are built before anything is touched, so a reload that
//! fails to build changes nothing. Only weak references to input channels
//! are kept here, so a component's input still closes when every upstream
//! component has finished: the cascade that drains a shutdown.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::{Id, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::config::{Config, Kind};
use crate::event::{Context, EventBatch};
use crate::topology::component::{
    ComponentTask, Globals, SinkContext, SourceContext, TransformContext,
};
use crate::topology::output::Output;

/// Batches each channel holds before its sender has to wait. Small on
/// purpose: queues add latency and memory, not throughput. Shipping a 1 GiB
/// log through file -> redact -> otlp, 16 peaked at 126 MiB and 2 at 87 MiB,
/// with less CPU and wall time.
const CHANNEL_BATCHES: usize = 2;

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

/// What the command line asks of a running topology.
pub enum Control {
    /// Drain and stop (SIGTERM, SIGINT).
    Stop,
    /// Swap to this configuration, already loaded and checked (SIGHUP).
    Reload(Box<Config>),
}

/// One running component, as the supervisor tracks it.
struct Running {
    kind: Kind,
    fingerprint: String,
    /// Where upstream components send (transforms and sinks).
    input: Option<mpsc::WeakSender<EventBatch>>,
    /// Its own output (sources and transforms), re-pointed on reload.
    output: Option<Output>,
    /// Tells a source to stop.
    shutdown: Option<CancellationToken>,
    /// Becomes true when its task has ended.
    done: watch::Receiver<bool>,
}

struct Supervisor {
    config: Config,
    globals: Globals,
    context: Arc<Context>,
    /// Cancelled at shutdown; every source's token is a child of it.
    shutdown: CancellationToken,
    tasks: JoinSet<Result<(), String>>,
    names: HashMap<Id, String>,
    running: HashMap<String, Running>,
}

/// Runs the topology until every component has finished: because all
/// sources reached their end (stdin at EOF), because a `Stop` arrived and
/// the drain completed, or because a component failed.
pub async fn run(
    config: Config,
    globals: Globals,
    context: Arc<Context>,
    mut control: mpsc::Receiver<Control>,
) -> Result<(), RunError> {
    let mut supervisor = Supervisor {
        config,
        globals,
        context,
        shutdown: CancellationToken::new(),
        tasks: JoinSet::new(),
        names: HashMap::new(),
        running: HashMap::new(),
    };
    let initial = supervisor.config.clone();
    supervisor
        .apply(&initial)
        .map_err(|(component, message)| RunError::Build { component, message })?;
    info!(summary = %crate::topology::graph::summary(&supervisor.config), "started");
    crate::observe::health::set_started(true);

    let mut stopping = false;
    let mut deadline: Option<Instant> = None;
    let mut failures = Vec::new();
    loop {
        tokio::select! {
            command = control.recv(), if !stopping => match command {
                Some(Control::Reload(new)) => match supervisor.apply(&new) {
                    Ok(()) => {
                        info!(summary = %crate::topology::graph::summary(&new), "configuration reloaded");
                        supervisor.config = *new;
                    }
                    Err((component, message)) => error!(
                        %component, error = %message,
                        "reload failed; the previous configuration keeps running"
                    ),
                },
                Some(Control::Stop) | None => {
                    info!(timeout = ?supervisor.config.shutdown_timeout, "shutting down: draining in-flight events");
                    stopping = true;
                    deadline = Some(Instant::now() + supervisor.config.shutdown_timeout);
                    supervisor.shutdown.cancel();
                }
            },
            () = sleep_until(deadline), if deadline.is_some() => {
                let mut running: Vec<String> = supervisor.names.values().cloned().collect();
                running.sort();
                supervisor.tasks.abort_all();
                return Err(RunError::ShutdownTimeout { timeout: supervisor.config.shutdown_timeout, running });
            }
            joined = supervisor.tasks.join_next_with_id() => {
                let Some(joined) = joined else { break };
                let (id, result) = match joined {
                    Ok((id, result)) => (id, result),
                    Err(e) => (e.id(), Err(if e.is_panic() { "panicked".to_string() } else { "was cancelled".to_string() })),
                };
                let name = supervisor.names.remove(&id).unwrap_or_else(|| "<unknown>".into());
                // Once every source has ended (stdin at its end), what is
                // left is a drain, bounded like one after a signal.
                if !stopping && !supervisor.names.values().any(|n| n.starts_with("sources.")) {
                    stopping = true;
                    deadline = Some(Instant::now() + supervisor.config.shutdown_timeout);
                    debug!("every source has ended; draining");
                }
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
                            deadline = Some(Instant::now() + supervisor.config.shutdown_timeout);
                            supervisor.shutdown.cancel();
                        }
                    }
                }
            }
        }
    }
    crate::observe::health::set_started(false);
    if failures.is_empty() {
        Ok(())
    } else {
        Err(RunError::ComponentsFailed(failures))
    }
}

/// Part of [`crate::topology::output::OutputClosed`]'s message: a component
/// that stopped only because its downstream failed is a consequence.
const OUTPUT_CLOSED_MARK: &str = "no downstream component is running";

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Waits until a watched task has ended.
async fn ended(mut done: watch::Receiver<bool>) {
    while !*done.borrow_and_update() {
        if done.changed().await.is_err() {
            return;
        }
    }
}

struct Planned {
    name: String,
    kind: Kind,
    fingerprint: String,
    task: ComponentTask,
    input: Option<mpsc::WeakSender<EventBatch>>,
    output: Option<Output>,
    shutdown: Option<CancellationToken>,
}

impl Supervisor {
    /// Moves the running graph to `target` (from nothing, at start). On a
    /// build error nothing has changed; the error names the component.
    fn apply(&mut self, target: &Config) -> Result<(), (String, String)> {
        let resource_changed = target.resource != self.config.resource;
        if resource_changed && !self.running.is_empty() {
            self.context = Arc::new(crate::resource::host_context_with(&target.resource));
        }
        let identities_changed =
            format!("{:?}", target.identities) != format!("{:?}", self.config.identities);
        if identities_changed && !self.running.is_empty() {
            self.globals.inventory = Arc::new(crate::identity::inventory::Inventory::new(
                target.identities.clone(),
            ));
        }
        let policies_changed =
            format!("{:?}", target.policies) != format!("{:?}", self.config.policies);
        if policies_changed && !self.running.is_empty() {
            self.globals.policies = Arc::new(target.policies.clone());
        }
        if target.data_dir != self.config.data_dir && !self.running.is_empty() {
            warn!("data_dir changes take effect at the next restart");
        }
        // Which running components carry on unchanged.
        let mut kept: HashSet<String> = HashSet::new();
        let mut senders: HashMap<String, mpsc::Sender<EventBatch>> = HashMap::new();
        let mut receivers: HashMap<String, mpsc::Receiver<EventBatch>> = HashMap::new();
        for (name, kind, fingerprint) in components(target) {
            let same = self.running.get(&name).filter(|r| {
                r.kind == kind
                    && r.fingerprint == fingerprint
                    && !(kind == Kind::Source && resource_changed)
                    // Sources and transforms read the inventory when built.
                    && !(kind != Kind::Sink && identities_changed)
                    // Policy transforms read the policies when built.
                    && !(kind == Kind::Transform && policies_changed)
                    && !*r.done.borrow()
            });
            match (same, kind) {
                (Some(_), Kind::Source) => {
                    kept.insert(name);
                }
                (Some(r), _) => match r.input.as_ref().and_then(mpsc::WeakSender::upgrade) {
                    Some(tx) => {
                        senders.insert(name.clone(), tx);
                        kept.insert(name);
                    }
                    None => {
                        let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
                        senders.insert(name.clone(), tx);
                        receivers.insert(name, rx);
                    }
                },
                (None, Kind::Source) => {}
                (None, _) => {
                    let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
                    senders.insert(name.clone(), tx);
                    receivers.insert(name, rx);
                }
            }
        }
        let mut readers_of: HashMap<&str, Vec<&str>> = HashMap::new();
        for (name, inputs) in target
            .transforms
            .iter()
            .map(|(n, c)| (n, &c.inputs))
            .chain(target.sinks.iter().map(|(n, c)| (n, &c.inputs)))
        {
            for input in inputs {
                readers_of.entry(input).or_default().push(name);
            }
        }
        let downstream_of = |name: &str| -> Vec<(Arc<str>, mpsc::Sender<EventBatch>)> {
            readers_of
                .get(name)
                .into_iter()
                .flatten()
                .map(|reader| (component_label(target, reader), senders[*reader].clone()))
                .collect()
        };

        // Build every new or changed component before touching anything.
        let mut planned = Vec::new();
        let build_error = |kind: Kind, name: &str, e: anyhow::Error| {
            (format!("{}.{name}", kind.table()), format!("{e:#}"))
        };
        for (name, c) in &target.sources {
            if kept.contains(name) {
                continue;
            }
            let out = Output::named(&format!("sources.{name}"));
            out.rewire(downstream_of(name));
            let token = self.shutdown.child_token();
            let cx = SourceContext {
                name: Arc::from(name.as_str()),
                globals: self.globals.clone(),
                context: Arc::clone(&self.context),
                shutdown: token.clone(),
                out: out.clone(),
            };
            let task = c
                .config
                .build(cx)
                .map_err(|e| build_error(Kind::Source, name, e))?;
            planned.push(Planned {
                name: name.clone(),
                kind: Kind::Source,
                fingerprint: c.fingerprint.clone(),
                task,
                input: None,
                output: Some(out),
                shutdown: Some(token),
            });
        }
        for (name, c) in &target.transforms {
            if kept.contains(name) {
                continue;
            }
            let out = Output::named(&format!("transforms.{name}"));
            out.rewire(downstream_of(name));
            let input = receivers.remove(name.as_str()).expect("channel made above");
            let cx = TransformContext {
                name: Arc::from(name.as_str()),
                globals: self.globals.clone(),
                input,
                out: out.clone(),
            };
            let task = c
                .config
                .build(cx)
                .map_err(|e| build_error(Kind::Transform, name, e))?;
            planned.push(Planned {
                name: name.clone(),
                kind: Kind::Transform,
                fingerprint: c.fingerprint.clone(),
                task,
                input: Some(senders[name].downgrade()),
                output: Some(out),
                shutdown: None,
            });
        }
        for (name, c) in &target.sinks {
            if kept.contains(name) {
                continue;
            }
            let input = receivers.remove(name.as_str()).expect("channel made above");
            let cx = SinkContext {
                name: Arc::from(name.as_str()),
                globals: self.globals.clone(),
                input,
            };
            let task = c
                .config
                .build(cx)
                .map_err(|e| build_error(Kind::Sink, name, e))?;
            planned.push(Planned {
                name: name.clone(),
                kind: Kind::Sink,
                fingerprint: c.fingerprint.clone(),
                task,
                input: Some(senders[name].downgrade()),
                output: None,
                shutdown: None,
            });
        }

        // Commit: re-point what stays, retire what goes, start what is new.
        for name in &kept {
            if let Some(out) = self.running.get(name).and_then(|r| r.output.as_ref()) {
                out.rewire(downstream_of(name));
            }
        }
        let retiring: Vec<String> = self
            .running
            .keys()
            .filter(|name| !kept.contains(*name))
            .cloned()
            .collect();
        let mut predecessors = HashMap::new();
        for name in retiring {
            let old = self.running.remove(&name).expect("listed above");
            if let Some(token) = &old.shutdown {
                token.cancel();
            }
            // A retiring transform's output keeps feeding its old
            // downstream until its input closes; a retiring source's too.
            debug!(component = %name, "retiring");
            predecessors.insert(name, old.done);
        }
        for plan in planned {
            let (done_tx, done_rx) = watch::channel(false);
            let predecessor = predecessors.remove(&plan.name);
            let label = format!("{}.{}", plan.kind.table(), plan.name);
            let task = plan.task;
            // The supervisor keeps a handle on the output for rewiring; once
            // the task ends, emptying it drops the senders, so downstream
            // inputs close and the shutdown cascade goes on.
            let output = plan.output.clone();
            let handle = self.tasks.spawn(async move {
                if let Some(previous) = predecessor {
                    ended(previous).await;
                }
                let result = task.await.map_err(|e| format!("{e:#}"));
                if let Some(output) = output {
                    output.rewire(Vec::new());
                }
                let _ = done_tx.send(true);
                result
            });
            self.names.insert(handle.id(), label);
            self.running.insert(
                plan.name,
                Running {
                    kind: plan.kind,
                    fingerprint: plan.fingerprint,
                    input: plan.input,
                    output: plan.output,
                    shutdown: plan.shutdown,
                    done: done_rx,
                },
            );
        }
        // The temporary strong senders go; only outputs hold them now.
        drop(senders);
        Ok(())
    }
}

/// `transforms.NAME` or `sinks.NAME`: how metrics name a reader.
fn component_label(config: &Config, name: &str) -> Arc<str> {
    let table = if config.transforms.contains_key(name) {
        "transforms"
    } else {
        "sinks"
    };
    Arc::from(format!("{table}.{name}"))
}

/// Every component of a configuration with its kind and fingerprint.
fn components(config: &Config) -> Vec<(String, Kind, String)> {
    let mut all = Vec::new();
    all.extend(
        config
            .sources
            .iter()
            .map(|(n, c)| (n.clone(), Kind::Source, c.fingerprint.clone())),
    );
    all.extend(
        config
            .transforms
            .iter()
            .map(|(n, c)| (n.clone(), Kind::Transform, c.fingerprint.clone())),
    );
    all.extend(
        config
            .sinks
            .iter()
            .map(|(n, c)| (n.clone(), Kind::Sink, c.fingerprint.clone())),
    );
    all
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
