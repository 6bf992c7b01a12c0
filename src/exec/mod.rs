//! `tailguard exec -- CMD ARGS...`: wraps one CI step.
//!
//! The command runs with its standard input inherited and its output piped
//! through tailguard, line by line, to tailguard's own stdout and stderr:
//! byte for byte, except that detected secrets are masked when masking is
//! on. Every line, plus a span for the step (start, end, exit code ->
//! result), goes to the local agent's `ci_exec` source over a unix socket,
//! with the job's context. When no agent listens and
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, the wrapper exports to that
//! collector itself.
//!
//! The wrapper must never break the build it wraps: its own problems are
//! warnings on stderr, and it exits with the command's exit code (or dies of
//! the command's signal).
//!
//! A line paused mid-way for longer than [`PARTIAL_LINE_DELAY`] (a prompt,
//! a progress bar) is passed through in pieces; masking then applies to each
//! piece, so a secret split across such a pause can be masked only in part
//! in the passed-through output. The agent always receives whole lines.

pub mod wire;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use crate::event::{TraceIds, hex};
use wire::{Message, WireValue};

/// How long a partial line may wait for its newline before what there is
/// passes through.
pub const PARTIAL_LINE_DELAY: Duration = Duration::from_millis(100);

/// How long delivery to the agent may stall before the wrapper stops
/// sending (and says so) rather than stall the build.
const AGENT_STALL_LIMIT: Duration = Duration::from_secs(5);

/// Replaces secrets in a piece of output before it is passed through.
pub trait Masker: Send + Sync {
    fn mask<'a>(&self, text: &'a [u8]) -> std::borrow::Cow<'a, [u8]>;
}

/// What the wrapper knows about the job it runs in.
#[derive(Clone, Debug, Default)]
pub struct JobInfo {
    /// Job and identity attributes, sent once per connection.
    pub attributes: BTreeMap<String, String>,
    /// Worker attributes for the resource.
    pub resource: BTreeMap<String, String>,
    /// The task's name for the span name, when the CI names it.
    pub task_name: Option<String>,
    /// Names of the job's environment variables (never their values).
    pub env_names: Vec<String>,
    /// The job span this step belongs to, when the agent should emit it.
    pub job_span: Option<TraceIds>,
}

impl JobInfo {
    /// Trace ids derived from the CI's own ids, so every step of a pipeline
    /// run lands in one trace and every step of a job under one job span,
    /// on any runner, without coordination: the trace id hashes the run,
    /// the span id the job. `None` outside a recognised CI job.
    pub fn job_trace(&self) -> Option<TraceIds> {
        let run = self.attributes.get("cicd.pipeline.run.id")?;
        let system = self
            .attributes
            .get("tailguard.cicd.system")
            .map_or("", String::as_str);
        let job = self
            .attributes
            .get("cicd.pipeline.task.run.id")
            .or_else(|| self.attributes.get("cicd.pipeline.task.name"))
            .map_or("", String::as_str);
        let derive = |context: &str, parts: &[&str]| {
            let mut hasher = blake3::Hasher::new_derive_key(context);
            for part in parts {
                hasher.update(part.as_bytes());
                hasher.update(&[0]);
            }
            *hasher.finalize().as_bytes()
        };
        let trace = derive("tailguard 2026-11 pipeline run trace id", &[system, run]);
        let span = derive("tailguard 2026-11 job span id", &[system, run, job]);
        Some(TraceIds {
            trace_id: trace[..16].try_into().expect("16 bytes"),
            span_id: span[..8].try_into().expect("8 bytes"),
        })
    }

    /// Detects the job from the environment and the CI's files, and any
    /// observable OIDC workload identity (claims only, marked unverified;
    /// never the token).
    pub fn detect() -> Self {
        let env = |name: &str| std::env::var(name).ok();
        let files = |path: &std::path::Path| std::fs::read_to_string(path).ok();
        let mut info = JobInfo::default();
        if let Some(job) = crate::identity::ci::detect(&env, &files) {
            info.task_name = job.get("cicd.pipeline.task.name").map(str::to_string);
            info.attributes
                .extend(job.attributes.into_iter().map(|(k, v)| (k.to_string(), v)));
            info.resource
                .extend(job.worker.into_iter().map(|(k, v)| (k.to_string(), v)));
        }
        if let Some(claims) = crate::identity::ci::oidc_from_env(std::env::vars()) {
            info.attributes.extend(claims);
        }
        info.env_names = std::env::vars_os()
            .filter_map(|(name, _)| name.into_string().ok())
            .collect();
        info.env_names.sort();
        info
    }
}

pub struct ExecOptions {
    pub command: Vec<OsString>,
    /// The agent's socket.
    pub socket: PathBuf,
    /// A name for the step span; default: the CI's task name, else the
    /// command's file name.
    pub step_name: Option<String>,
    pub job: JobInfo,
    pub masker: Option<Arc<dyn Masker>>,
    /// Where state lives, for the direct-export fallback's buffers.
    pub data_dir: PathBuf,
}

/// How the wrapped command ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    Code(i32),
    Signal(i32),
}

/// Runs the command; returns how it ended. The caller exits accordingly.
pub async fn run(options: ExecOptions) -> Ended {
    // A trace the CI hands over wins; otherwise steps join their job's
    // derived trace, so a pipeline run is one trace across runners.
    let job_trace = options.job.job_trace();
    let parent = std::env::var("TRACEPARENT")
        .ok()
        .and_then(|v| TraceIds::from_traceparent(&v))
        .or(job_trace);
    let ids = parent.map_or_else(TraceIds::new_root, |p| p.child());
    let program = options.command[0].clone();
    let step_name = options
        .step_name
        .clone()
        .or(options.job.task_name.clone())
        .unwrap_or_else(|| {
            PathBuf::from(&program)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "step".into())
        });

    let (events_tx, events_rx) = mpsc::channel::<Message>(4096);
    let mut job = options.job.clone();
    job.job_span = job_trace.filter(|j| parent == Some(*j));
    let delivery = tokio::spawn(deliver(
        options.socket.clone(),
        job,
        options.data_dir.clone(),
        events_rx,
    ));

    let start = SystemTime::now();
    let handlers = install_signal_handlers();
    let mut command = tokio::process::Command::new(&program);
    command
        .args(&options.command[1..])
        .env("TRACEPARENT", ids.traceparent())
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            eprintln!(
                "tailguard exec: cannot run {}: {e}",
                program.to_string_lossy()
            );
            let code = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            let ended = Ended::Code(code);
            let _ = events_tx
                .send(step_span(&step_name, &ids, parent, start, ended, &program))
                .await;
            drop(events_tx);
            let _ = delivery.await;
            return ended;
        }
    };
    let pid = child.id();

    let stdout = pump(
        child.stdout.take().expect("piped"),
        tokio::io::stdout(),
        "stdout",
        ids,
        options.masker.clone(),
        events_tx.clone(),
    );
    let stderr = pump(
        child.stderr.take().expect("piped"),
        tokio::io::stderr(),
        "stderr",
        ids,
        options.masker.clone(),
        events_tx.clone(),
    );
    let forwarding = tokio::spawn(forward_signals(pid, handlers));
    let (status, _, _) = tokio::join!(child.wait(), stdout, stderr);
    forwarding.abort();
    let ended = match status {
        Ok(status) => {
            use std::os::unix::process::ExitStatusExt;
            match (status.code(), status.signal()) {
                (Some(code), _) => Ended::Code(code),
                (None, Some(signal)) => Ended::Signal(signal),
                (None, None) => Ended::Code(1),
            }
        }
        Err(e) => {
            eprintln!("tailguard exec: lost track of the command: {e}");
            Ended::Code(1)
        }
    };
    let _ = events_tx
        .send(step_span(&step_name, &ids, parent, start, ended, &program))
        .await;
    drop(events_tx);
    let _ = delivery.await;
    ended
}

/// The semantic-convention result of a step that ended this way.
pub fn task_result(ended: Ended) -> &'static str {
    match ended {
        Ended::Code(0) => "success",
        Ended::Code(_) => "failure",
        Ended::Signal(signal)
            if signal == libc_signal::SIGINT || signal == libc_signal::SIGTERM =>
        {
            "cancellation"
        }
        Ended::Signal(_) => "error",
    }
}

mod libc_signal {
    pub const SIGINT: i32 = nix::sys::signal::Signal::SIGINT as i32;
    pub const SIGTERM: i32 = nix::sys::signal::Signal::SIGTERM as i32;
}

fn step_span(
    name: &str,
    ids: &TraceIds,
    parent: Option<TraceIds>,
    start: SystemTime,
    ended: Ended,
    program: &OsString,
) -> Message {
    let result = task_result(ended);
    let mut attributes = BTreeMap::new();
    attributes.insert(
        "cicd.pipeline.task.run.result".into(),
        WireValue::String(result.into()),
    );
    attributes.insert(
        "cicd.pipeline.action.name".into(),
        WireValue::String("RUN".into()),
    );
    // The executable's name only: arguments often carry tokens.
    attributes.insert(
        "process.executable.name".into(),
        WireValue::String(
            PathBuf::from(program)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        ),
    );
    let (status, status_message) = match ended {
        Ended::Code(0) => ("ok", None),
        Ended::Code(code) => {
            attributes.insert("process.exit.code".into(), WireValue::Int(code.into()));
            ("error", Some(format!("exit code {code}")))
        }
        Ended::Signal(signal) => {
            attributes.insert("process.exit.signal".into(), WireValue::Int(signal.into()));
            ("error", Some(format!("killed by signal {signal}")))
        }
    };
    Message::Span {
        name: format!("RUN {name}"),
        trace_id: hex(&ids.trace_id),
        span_id: hex(&ids.span_id),
        parent_span_id: parent.map(|p| hex(&p.span_id)),
        start_unix_nanos: wire::unix_nanos(start),
        end_unix_nanos: wire::unix_nanos(SystemTime::now()),
        status: status.into(),
        status_message,
        attributes,
    }
}

/// Copies one output stream through, line by line, and reports each line.
async fn pump(
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    stream: &'static str,
    ids: TraceIds,
    masker: Option<Arc<dyn Masker>>,
    events: mpsc::Sender<Message>,
) {
    let mut line: Vec<u8> = Vec::new();
    // How much of `line` has already been passed through (a paused line).
    let mut passed = 0;
    let mut chunk = vec![0u8; 64 * 1024];
    let mut agent_ok = true;
    loop {
        let waiting_partial = line.len() > passed;
        let read = tokio::select! {
            read = from.read(&mut chunk) => read,
            () = tokio::time::sleep(PARTIAL_LINE_DELAY), if waiting_partial => {
                pass_through(&mut to, &line[passed..], masker.as_deref()).await;
                passed = line.len();
                continue;
            }
        };
        let n = match read {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut rest = &chunk[..n];
        while let Some(newline) = memchr::memchr(b'\n', rest) {
            line.extend_from_slice(&rest[..=newline]);
            rest = &rest[newline + 1..];
            pass_through(&mut to, &line[passed..], masker.as_deref()).await;
            let body = line.strip_suffix(b"\n").unwrap_or(&line);
            let body = body.strip_suffix(b"\r").unwrap_or(body);
            report(
                &events,
                Message::log(body, stream, &ids, SystemTime::now()),
                &mut agent_ok,
            )
            .await;
            line.clear();
            passed = 0;
        }
        line.extend_from_slice(rest);
    }
    if line.len() > passed {
        pass_through(&mut to, &line[passed..], masker.as_deref()).await;
    }
    if !line.is_empty() {
        report(
            &events,
            Message::log(&line, stream, &ids, SystemTime::now()),
            &mut agent_ok,
        )
        .await;
    }
}

async fn pass_through(
    to: &mut (impl AsyncWrite + Unpin),
    bytes: &[u8],
    masker: Option<&dyn Masker>,
) {
    let bytes = match masker {
        Some(m) => m.mask(bytes),
        None => std::borrow::Cow::Borrowed(bytes),
    };
    // A closed stdout (the CI stopped reading) must not stop the command.
    let _ = to.write_all(&bytes).await;
    let _ = to.flush().await;
}

async fn report(events: &mpsc::Sender<Message>, message: Message, agent_ok: &mut bool) {
    if !*agent_ok {
        return;
    }
    if events
        .send_timeout(message, AGENT_STALL_LIMIT)
        .await
        .is_err()
    {
        *agent_ok = false;
        eprintln!(
            "tailguard exec: the agent stopped taking events; the rest of this step is not recorded"
        );
    }
}

/// Handlers for the signals passed on to the command. Installed before the
/// command starts: a signal that arrived before the handlers would kill
/// the wrapper instead of reaching the command.
fn install_signal_handlers() -> Vec<(tokio::signal::unix::Signal, nix::sys::signal::Signal)> {
    use nix::sys::signal::Signal;
    use tokio::signal::unix::{SignalKind, signal};
    [
        (SignalKind::interrupt(), Signal::SIGINT),
        (SignalKind::terminate(), Signal::SIGTERM),
        (SignalKind::hangup(), Signal::SIGHUP),
        (SignalKind::quit(), Signal::SIGQUIT),
    ]
    .into_iter()
    .filter_map(|(kind, sig)| signal(kind).ok().map(|stream| (stream, sig)))
    .collect()
}

/// Passes SIGINT, SIGTERM, SIGHUP and SIGQUIT on to the command.
async fn forward_signals(
    pid: Option<u32>,
    handlers: Vec<(tokio::signal::unix::Signal, nix::sys::signal::Signal)>,
) {
    use nix::sys::signal::kill;
    use nix::unistd::Pid;
    let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()).map(Pid::from_raw) else {
        return;
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    for (mut stream, sig) in handlers {
        let tx = tx.clone();
        tokio::spawn(async move {
            while stream.recv().await.is_some() {
                if tx.send(sig).is_err() {
                    break;
                }
            }
        });
    }
    while let Some(sig) = rx.recv().await {
        let _ = kill(pid, sig);
    }
}

/// Sends the step's messages to the agent, or straight to a collector.
async fn deliver(
    socket: PathBuf,
    job: JobInfo,
    data_dir: PathBuf,
    mut events: mpsc::Receiver<Message>,
) {
    let hello = Message::Job {
        version: wire::VERSION,
        attributes: job.attributes.clone(),
        resource: job.resource.clone(),
        env_names: job.env_names.clone(),
        job_trace_id: job.job_span.map(|j| hex(&j.trace_id)),
        job_span_id: job.job_span.map(|j| hex(&j.span_id)),
    };
    match UnixStream::connect(&socket).await {
        Ok(mut stream) => {
            let mut buf = Vec::with_capacity(64 * 1024);
            let mut first = Some(hello);
            loop {
                buf.clear();
                if let Some(hello) = first.take() {
                    encode_line(&hello, &mut buf);
                }
                let Some(message) = events.recv().await else {
                    if !buf.is_empty() {
                        let _ = stream.write_all(&buf).await;
                    }
                    break;
                };
                encode_line(&message, &mut buf);
                while let Ok(more) = events.try_recv() {
                    encode_line(&more, &mut buf);
                    if buf.len() > 256 * 1024 {
                        break;
                    }
                }
                if let Err(e) = stream.write_all(&buf).await {
                    eprintln!(
                        "tailguard exec: lost the agent at {} ({e}); the rest of this step is not recorded",
                        socket.display()
                    );
                    // Keep draining so the command is never blocked.
                    while events.recv().await.is_some() {}
                    break;
                }
            }
            let _ = stream.shutdown().await;
        }
        Err(_) => direct::export(job, data_dir, events, &socket).await,
    }
}

fn encode_line(message: &Message, buf: &mut Vec<u8>) {
    serde_json::to_writer(&mut *buf, message).expect("messages always serialize");
    buf.push(b'\n');
}

/// The fallback when no agent listens: export to the collector named by
/// `OTEL_EXPORTER_OTLP_ENDPOINT`, through the same OTLP sink the agent uses.
mod direct {
    use super::*;
    use crate::event::Origin;
    use crate::topology::component::{Globals, SinkContext};

    /// How long the wrapper waits for the collector after the step ended.
    const FLUSH_LIMIT: Duration = Duration::from_secs(10);

    pub async fn export(
        job: JobInfo,
        data_dir: PathBuf,
        mut events: mpsc::Receiver<Message>,
        socket: &std::path::Path,
    ) {
        let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
            .ok()
            .filter(|v| !v.is_empty());
        let sink = endpoint.and_then(|_| {
            let config: crate::sinks::otlp::Config = toml::from_str("").ok()?;
            let (tx, rx) = mpsc::channel(64);
            let cx = SinkContext {
                name: Arc::from("exec"),
                globals: Globals {
                    data_dir,
                    ..Globals::default()
                },
                input: rx,
            };
            match crate::sinks::otlp::build(&config, cx) {
                Ok(task) => Some((tx, tokio::spawn(task))),
                Err(e) => {
                    eprintln!("tailguard exec: cannot export to the collector: {e:#}");
                    None
                }
            }
        });
        let Some((tx, task)) = sink else {
            eprintln!(
                "tailguard exec: no agent at {} and no OTEL_EXPORTER_OTLP_ENDPOINT; this step's events are not recorded",
                socket.display()
            );
            while events.recv().await.is_some() {}
            return;
        };
        let mut context = crate::resource::host_context();
        for (k, v) in job.resource {
            context.resource.insert(k, v);
        }
        for (k, v) in job.attributes {
            context.identity.insert(k, v);
        }
        let context = Arc::new(context);
        let origin = Arc::new(Origin {
            source: Arc::from("exec"),
            ..Origin::default()
        });
        while let Some(message) = events.recv().await {
            if let Some(event) = crate::sources::ci_exec::to_event(&message, &origin, &context) {
                let _ = tx.send(vec![event]).await;
            }
        }
        drop(tx);
        if tokio::time::timeout(FLUSH_LIMIT, task).await.is_err() {
            eprintln!(
                "tailguard exec: the collector did not take this step's events within {FLUSH_LIMIT:?}"
            );
        }
    }
}

/// Dies of `signal` the way the command did, so the CI sees the same end.
pub fn reraise(signal: i32) -> ! {
    use nix::sys::signal::{SigHandler, Signal, raise, signal as set_handler};
    if let Ok(sig) = Signal::try_from(signal) {
        // SAFETY: restoring the default disposition has no handler to race.
        unsafe {
            let _ = set_handler(sig, SigHandler::SigDfl);
        }
        let _ = raise(sig);
    }
    std::process::exit(128 + signal);
}

/// Masks with the detection engine: every rule, plus values known to be
/// secret in this job (its secret-looking environment variables, and
/// values announced with `::add-mask::` as they appear).
pub struct DetectorMasker {
    detector: Arc<crate::detect::Detector>,
    known: std::sync::Mutex<crate::detect::KnownValues>,
    mask_list: Option<std::sync::Mutex<MaskList>>,
}

/// The agent's `mask` responder writes the fingerprints of secrets to mask
/// for the rest of the job into `data_dir/mask-fingerprints.json` (by atomic
/// rename). The wrapper looks for a new version of that file before each
/// line, so a secret found by the agent (say, one only the inventory knows by
/// fingerprint) is masked from the next line the step prints.
struct MaskList {
    path: PathBuf,
    /// (inode, length, modification time) of the version last read.
    seen: Option<(u64, u64, std::time::SystemTime)>,
}

impl MaskList {
    /// Registers the fingerprints of a new version of the file, if any.
    fn refresh(&mut self, known: &mut crate::detect::KnownValues) {
        use std::os::unix::fs::MetadataExt;
        let Ok(meta) = std::fs::metadata(&self.path) else {
            return;
        };
        let version = (
            meta.ino(),
            meta.len(),
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        );
        if self.seen == Some(version) {
            return;
        }
        self.seen = Some(version);
        let Ok(file) = std::fs::read(&self.path)
            .map_err(|e| e.to_string())
            .and_then(|b| {
                serde_json::from_slice::<crate::respond::MaskFile>(&b).map_err(|e| e.to_string())
            })
            .inspect_err(|e| {
                eprintln!("tailguard exec: ignoring {}: {e}", self.path.display());
            })
        else {
            return;
        };
        // Findings name secrets by short fingerprint; inventories by full.
        for hex in &file.fingerprints {
            match crate::detect::Fingerprint::from_hex(hex) {
                Some(fingerprint) => known.register_fingerprint(fingerprint, None),
                None => {
                    known.register_short_fingerprint(hex);
                }
            }
        }
    }
}

/// Environment variable names whose values are treated as secrets.
const SECRET_NAME_HINTS: &[&str] = &[
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "API_KEY",
    "APIKEY",
    "PRIVATE_KEY",
    "CREDENTIAL",
    "AUTH",
];

impl DetectorMasker {
    pub fn new(
        detector: Arc<crate::detect::Detector>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Self {
        let mut known = detector.new_known_values();
        for (name, value) in env {
            let upper = name.to_ascii_uppercase();
            if value.len() >= 8 && SECRET_NAME_HINTS.iter().any(|hint| upper.contains(hint)) {
                known.register_plaintext(value.as_bytes());
            }
        }
        Self {
            detector,
            known: std::sync::Mutex::new(known),
            mask_list: None,
        }
    }

    /// Also masks every secret whose fingerprint the agent's `mask`
    /// responder lists in `path` (`data_dir/mask-fingerprints.json`).
    pub fn with_mask_list(mut self, path: PathBuf) -> Self {
        let mut list = MaskList { path, seen: None };
        list.refresh(self.known.get_mut().unwrap_or_else(|p| p.into_inner()));
        self.mask_list = Some(std::sync::Mutex::new(list));
        self
    }
}

impl Masker for DetectorMasker {
    fn mask<'a>(&self, text: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(list) = &self.mask_list {
            list.lock()
                .unwrap_or_else(|p| p.into_inner())
                .refresh(&mut known);
        }
        // `::add-mask::VALUE` (GitHub's workflow command, also honoured
        // elsewhere): the value is secret from now on, this line included.
        if let Some(at) = memchr::memmem::find(text, b"::add-mask::") {
            let value = text[at + 12..].trim_ascii();
            if value.len() >= 4 {
                known.register_plaintext(value);
            }
        }
        let mut findings = Vec::new();
        self.detector.scan_with(text, Some(&known), &mut findings);
        if findings.is_empty() {
            std::borrow::Cow::Borrowed(text)
        } else {
            std::borrow::Cow::Owned(self.detector.redact(text, &findings))
        }
    }
}
