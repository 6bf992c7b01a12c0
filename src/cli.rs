//! The command line: `tailguard run`, `validate` and `version`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use tracing::{info, warn};

use crate::config::{self, Config, ConfigError, ConfigPaths, Origin};
use crate::topology::Control;
use crate::topology::component::Globals;

/// Exit codes, as documented in the README and `--help`.
pub mod exit {
    /// Success: the command did what it was asked.
    pub const OK: u8 = 0;
    /// A scan found secrets (commands that report findings).
    pub const FINDINGS: u8 = 1;
    /// The command line or the configuration is wrong; nothing was started.
    pub const CONFIG: u8 = 2;
    /// The agent started but a component failed, or a shutdown could not
    /// drain in time.
    pub const RUNTIME: u8 = 3;
}

const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  findings were reported (commands that scan)
  2  usage or configuration error; nothing was started
  3  a component failed at run time, or shutdown could not drain in time

Configuration: without --config or --config-dir, tailguard reads
/etc/tailguard/tailguard.toml and then /etc/tailguard/conf.d/*.toml in
lexical order. When none of these exist it runs an embedded default
(see `tailguard run --print-default-config`).";

/// A host agent for CI/CD build runners: tails logs and job output, tags
/// events with the identity behind them, detects and redacts secrets, and
/// forwards them to a collector.
#[derive(Debug, Parser)]
#[command(name = "tailguard", version, after_help = EXIT_CODES_HELP)]
pub struct Cli {
    /// Read configuration from FILE. Repeat to load several files, in order.
    #[arg(long = "config", short = 'c', value_name = "FILE", global = true)]
    pub config: Vec<PathBuf>,

    /// Read DIR/tailguard.toml and DIR/conf.d/*.toml (lexical order).
    /// Default: /etc/tailguard, when no --config is given.
    #[arg(long = "config-dir", value_name = "DIR", global = true)]
    pub config_dir: Vec<PathBuf>,

    /// Log level or filter for tailguard's own log on stderr (error, warn,
    /// info, debug, trace). Overrides `log_level` in the configuration.
    #[arg(long, value_name = "LEVEL", env = "TAILGUARD_LOG", global = true)]
    pub log_level: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent until it is stopped (SIGTERM or SIGINT) or every source
    /// has ended (e.g. standard input reached its end).
    Run(RunArgs),
    /// Check the configuration and topology without starting anything.
    /// Prints `OK` and a one-line summary, or every error found.
    Validate,
    /// Print the version and the component types this build supports.
    Version,
    /// Scan files, directories or standard input for secrets, with the same
    /// engine and rules as `run`. Exits 1 when anything is found. Prints
    /// fingerprints, never secrets.
    Scan(ScanArgs),
    /// The evidence journal: check its hash chain, export records.
    #[command(subcommand)]
    Evidence(EvidenceCommand),
    /// The non-human identity inventory.
    #[command(subcommand)]
    Identities(IdentitiesCommand),
    /// Configuration tooling for fleets.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Wrap one CI step: run CMD, pass its output through (secrets masked),
    /// and send every line and a step span, tagged with the job's identity,
    /// to the local agent. Exits with CMD's exit code.
    Exec(ExecArgs),
    /// Write the man page or shell completions to standard output (used
    /// when packaging).
    #[command(hide = true, subcommand)]
    Generate(Generate),
}

#[derive(Debug, Subcommand)]
pub enum Generate {
    /// The man page, tailguard(1), as roff.
    Man {
        /// Write tailguard.1 and a page per subcommand into DIR instead.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
    /// The completion script for SHELL.
    Completions {
        #[arg(value_enum)]
        shell: CompletionShell,
    },
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Files and directories to scan; `-` or nothing reads standard input.
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,

    /// Output format.
    #[arg(long, value_enum, default_value = "human")]
    pub format: crate::scan::Format,

    /// The fingerprint key, so fingerprints match the agents' (default: this
    /// host's key in the data directory if readable, else a key for this
    /// scan only).
    #[arg(
        long,
        value_name = "KEY",
        env = "TAILGUARD_FINGERPRINT_KEY",
        hide_env_values = true
    )]
    pub fingerprint_key: Option<String>,

    /// No progress bar, even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
}

#[derive(Debug, Args)]
pub struct JournalArgs {
    /// The journal folder. Default: the only one under
    /// DATA_DIR/evidence/, or DATA_DIR/evidence/<--sink>.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The evidence sink's name, to find its folder.
    #[arg(long, value_name = "NAME")]
    pub sink: Option<String>,
    /// The data directory (default /var/lib/tailguard).
    #[arg(long, value_name = "DIR", env = "TAILGUARD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum EvidenceCommand {
    /// Check that no record was edited, removed or reordered. Exits 0 and
    /// prints the record count, or exits 1 naming the first bad record.
    Verify(JournalArgs),
    /// Print the records (JSON lines) since a time, after checking the
    /// chain up to them.
    Export {
        #[command(flatten)]
        journal: JournalArgs,
        /// RFC 3339 time (2026-11-22T10:00:00Z) or an age (2h, 3days).
        #[arg(long, value_name = "TIME")]
        since: String,
        /// RFC 3339 time or age; default now.
        #[arg(long, value_name = "TIME")]
        until: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum IdentitiesCommand {
    /// Read a secret from standard input (one value; a final newline is
    /// dropped) and print its keyed fingerprint for `secrets.fingerprints`
    /// in an `[identities.ID]` table. Uses the fleet key: the same key the
    /// agents use, or the fingerprint will never match.
    Fingerprint {
        /// The fleet's fingerprint key.
        #[arg(
            long,
            value_name = "KEY",
            env = "TAILGUARD_FINGERPRINT_KEY",
            hide_env_values = true
        )]
        fingerprint_key: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print a JSON Schema (draft 2020-12) of one configuration file, to
    /// check drop-ins (converted to JSON) before they are shipped.
    Schema,
}

#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Pass output through unmasked (masking is on by default).
    #[arg(long)]
    pub no_mask: bool,

    /// The agent's socket. Default: $TAILGUARD_DATA_DIR/exec.sock, else
    /// /var/lib/tailguard/exec.sock.
    #[arg(long, value_name = "PATH", env = "TAILGUARD_EXEC_SOCKET")]
    pub socket: Option<PathBuf>,

    /// Name of the step span (default: the CI's job name, else CMD).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    /// The command and its arguments, after `--`.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<std::ffi::OsString>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Print the embedded default configuration and exit.
    #[arg(long)]
    pub print_default_config: bool,

    /// Keep state (checkpoints, queues, journals) in DIR. Overrides
    /// `data_dir` in the configuration.
    #[arg(long, value_name = "DIR", env = "TAILGUARD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    ExitCode::from(dispatch(cli))
}

fn dispatch(cli: Cli) -> u8 {
    let paths = ConfigPaths {
        files: cli.config.clone(),
        dirs: cli.config_dir.clone(),
    };
    if let Some(level) = &cli.log_level
        && let Err(e) = crate::logging::check_level(level)
    {
        eprintln!("error: --log-level: {e}");
        return exit::CONFIG;
    }
    match cli.command {
        Command::Version => {
            println!("tailguard {}", env!("CARGO_PKG_VERSION"));
            println!(
                "sources:    {}",
                crate::sources::SourceConfig::TYPES.join(", ")
            );
            println!(
                "transforms: {}",
                crate::transforms::TransformConfig::TYPES.join(", ")
            );
            println!("sinks:      {}", crate::sinks::SinkConfig::TYPES.join(", "));
            exit::OK
        }
        Command::Validate => validate(&paths),
        Command::Exec(args) => exec(args),
        Command::Scan(args) => scan(args),
        Command::Evidence(command) => evidence(command),
        Command::Identities(IdentitiesCommand::Fingerprint { fingerprint_key }) => {
            identity_fingerprint(fingerprint_key)
        }
        Command::Config(ConfigCommand::Schema) => {
            let schema = crate::config::schema::schema();
            println!(
                "{}",
                serde_json::to_string_pretty(&schema).unwrap_or_default()
            );
            exit::OK
        }
        Command::Generate(what) => generate(&what),
        Command::Run(args) if args.print_default_config => {
            print!("{}", config::embedded_default(&config::process_env));
            exit::OK
        }
        Command::Run(args) => run(&paths, &args, cli.log_level.as_deref()),
    }
}

/// Writes the man page or a completion script (`tailguard generate`).
fn generate(what: &Generate) -> u8 {
    use clap::CommandFactory;
    use std::io::Write;
    let mut command = Cli::command();
    let mut out = std::io::stdout().lock();
    let written = match what {
        Generate::Man { out_dir: None } => clap_mangen::Man::new(command).render(&mut out),
        Generate::Man { out_dir: Some(dir) } => clap_mangen::generate_to(command, dir),
        Generate::Completions { shell } => {
            let shell = match shell {
                CompletionShell::Bash => clap_complete::Shell::Bash,
                CompletionShell::Zsh => clap_complete::Shell::Zsh,
                CompletionShell::Fish => clap_complete::Shell::Fish,
            };
            clap_complete::generate(shell, &mut command, "tailguard", &mut out);
            Ok(())
        }
    };
    match written.and_then(|()| out.flush()) {
        Ok(()) => exit::OK,
        Err(e) => {
            eprintln!("error: cannot write: {e}");
            exit::RUNTIME
        }
    }
}

/// Finds an evidence journal's folder from the arguments.
fn journal_dir(args: &JournalArgs) -> Result<PathBuf, String> {
    if let Some(dir) = &args.dir {
        return Ok(dir.clone());
    }
    let root = args
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_DATA_DIR))
        .join("evidence");
    if let Some(sink) = &args.sink {
        return Ok(root.join(sink));
    }
    let dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .map_err(|e| format!("{}: {e}", root.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    match dirs.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(format!("no evidence journal under {}", root.display())),
        _ => Err(format!(
            "several evidence journals under {}: name one with --sink",
            root.display()
        )),
    }
}

/// A time given as RFC 3339 or as an age before now.
fn parse_time(text: &str) -> Result<std::time::SystemTime, String> {
    humantime::parse_rfc3339_weak(text)
        .or_else(|_| humantime::parse_duration(text).map(|age| std::time::SystemTime::now() - age))
        .map_err(|_| format!("`{text}` is neither an RFC 3339 time nor an age like \"2h\""))
}

fn evidence(command: EvidenceCommand) -> u8 {
    let (args, window) = match &command {
        EvidenceCommand::Verify(args) => (args, None),
        EvidenceCommand::Export {
            journal,
            since,
            until,
        } => {
            let since = match parse_time(since) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("error: --since: {e}");
                    return exit::CONFIG;
                }
            };
            let until = match until.as_deref().map(parse_time).transpose() {
                Ok(t) => t.unwrap_or_else(std::time::SystemTime::now),
                Err(e) => {
                    eprintln!("error: --until: {e}");
                    return exit::CONFIG;
                }
            };
            (journal, Some((since, until)))
        }
    };
    let dir = match journal_dir(args) {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("error: {e}");
            return exit::CONFIG;
        }
    };
    let mut stdout = std::io::stdout().lock();
    let result = crate::sinks::evidence::verify(&dir, |_, event| {
        let Some((since, until)) = window else { return };
        let at = event["timestamp"]
            .as_str()
            .and_then(|t| humantime::parse_rfc3339_weak(t).ok());
        if at.is_some_and(|t| t >= since && t <= until) {
            use std::io::Write;
            let _ = writeln!(stdout, "{event}");
        }
    });
    match result {
        Err(e) => {
            eprintln!("error: {}: {e}", dir.display());
            exit::RUNTIME
        }
        Ok(v) => match v.broken {
            None => {
                eprintln!("OK: {} records, chain intact", v.records);
                exit::OK
            }
            Some(b) => {
                eprintln!(
                    "error: {}:{}: {} ({} records before it are intact)",
                    b.file.display(),
                    b.line,
                    b.reason,
                    v.records
                );
                exit::FINDINGS
            }
        },
    }
}

/// `tailguard identities fingerprint`: the secret comes on stdin so it never
/// appears in a process list or shell history.
fn identity_fingerprint(key: Option<String>) -> u8 {
    use std::io::Read;
    let Some(key) = key.filter(|k| !k.is_empty()) else {
        eprintln!(
            "error: no fingerprint key: pass --fingerprint-key or set TAILGUARD_FINGERPRINT_KEY to the fleet's key"
        );
        return exit::CONFIG;
    };
    let mut secret = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut secret) {
        eprintln!("error: reading standard input: {e}");
        return exit::RUNTIME;
    }
    let secret = secret.strip_suffix(b"\n").unwrap_or(&secret);
    let secret = secret.strip_suffix(b"\r").unwrap_or(secret);
    if secret.is_empty() {
        eprintln!("error: no secret on standard input");
        return exit::CONFIG;
    }
    let fingerprint = crate::detect::Fingerprinter::new(&key).fingerprint(secret);
    println!("{}", fingerprint.full_hex());
    exit::OK
}

/// `tailguard scan`.
fn scan(args: ScanArgs) -> u8 {
    let key = args.fingerprint_key.clone().or_else(|| {
        let data_dir = std::env::var_os("TAILGUARD_DATA_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(config::DEFAULT_DATA_DIR));
        std::fs::read_to_string(data_dir.join("fingerprint.key"))
            .ok()
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty())
    });
    let key = key.unwrap_or_else(|| {
        eprintln!("note: no fingerprint key; fingerprints are comparable within this scan only");
        crate::event::hex(&rand::random::<[u8; 32]>())
    });
    let detector = match crate::detect::Detector::new(&crate::detect::DetectorConfig {
        fingerprint_key: key,
        lazy_dfa_capacity: Some(crate::scan::SCAN_LAZY_DFA_CAPACITY),
        ..Default::default()
    }) {
        Ok(d) => Arc::new(d),
        Err(e) => {
            eprintln!("error: {e}");
            return exit::CONFIG;
        }
    };
    crate::scan::run(detector, &args.paths, args.format, !args.no_progress)
}

/// `tailguard exec`: runs the step, then ends the way it ended.
fn exec(args: ExecArgs) -> u8 {
    let data_dir = std::env::var_os("TAILGUARD_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_DATA_DIR));
    let socket = args
        .socket
        .unwrap_or_else(|| data_dir.join(crate::sources::ci_exec::DEFAULT_SOCKET_NAME));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tailguard exec: cannot start: {e}");
            return exit::RUNTIME;
        }
    };
    let masker: Option<Arc<dyn crate::exec::Masker>> = if args.no_mask {
        None
    } else {
        let key = std::env::var("TAILGUARD_FINGERPRINT_KEY")
            .ok()
            .filter(|k| !k.is_empty())
            .or_else(|| {
                std::fs::read_to_string(data_dir.join("fingerprint.key"))
                    .ok()
                    .map(|k| k.trim().to_string())
            })
            .unwrap_or_else(|| crate::event::hex(&rand::random::<[u8; 32]>()));
        match crate::detect::Detector::new(&crate::detect::DetectorConfig {
            fingerprint_key: key,
            ..Default::default()
        }) {
            Ok(detector) => Some(Arc::new(
                crate::exec::DetectorMasker::new(Arc::new(detector), std::env::vars())
                    .with_mask_list(data_dir.join(crate::respond::MASK_LIST_FILE)),
            )),
            Err(e) => {
                eprintln!("tailguard exec: masking is off: {e}");
                None
            }
        }
    };
    let options = crate::exec::ExecOptions {
        command: args.command,
        socket,
        step_name: args.name,
        job: crate::exec::JobInfo::detect(),
        masker,
        data_dir,
    };
    let ended = runtime.block_on(crate::exec::run(options));
    runtime.shutdown_background();
    match ended {
        crate::exec::Ended::Code(code) => u8::try_from(code.clamp(0, 255)).unwrap_or(1),
        crate::exec::Ended::Signal(signal) => crate::exec::reraise(signal),
    }
}

/// Resolves, loads and checks the configuration, collecting every error.
fn load_checked(paths: &ConfigPaths) -> Result<Config, Vec<ConfigError>> {
    let files = paths.resolve()?;
    let config = config::load(&files, &config::process_env)?;
    let errors = crate::topology::graph::check(&config);
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(errors)
    }
}

fn report(errors: &[ConfigError]) {
    for e in errors {
        eprintln!("error: {e}");
    }
    let n = errors.len();
    eprintln!(
        "{n} configuration error{} found; nothing was started",
        if n == 1 { "" } else { "s" }
    );
}

fn validate(paths: &ConfigPaths) -> u8 {
    match load_checked(paths) {
        Ok(config) => {
            let from = match &config.origin {
                Origin::Files(files) => {
                    format!(
                        "{} file{}",
                        files.len(),
                        if files.len() == 1 { "" } else { "s" }
                    )
                }
                Origin::EmbeddedDefault => "embedded default (no configuration files found)".into(),
            };
            println!("OK: {from}; {}", crate::topology::graph::summary(&config));
            exit::OK
        }
        Err(errors) => {
            report(&errors);
            exit::CONFIG
        }
    }
}

fn run(paths: &ConfigPaths, args: &RunArgs, cli_level: Option<&str>) -> u8 {
    let config = match load_checked(paths) {
        Ok(config) => config,
        Err(errors) => {
            report(&errors);
            return exit::CONFIG;
        }
    };
    let level = cli_level
        .or(config.log_level.as_deref())
        .unwrap_or(crate::logging::DEFAULT_LEVEL);
    crate::logging::init(level);
    if config.origin == Origin::EmbeddedDefault {
        info!(
            "no configuration files found under {}; running the embedded default (print it with `tailguard run --print-default-config`)",
            config::DEFAULT_CONFIG_DIR
        );
    }
    let data_dir = match resolve_data_dir(args.data_dir.as_deref(), config.data_dir.as_deref()) {
        Ok(dir) => dir,
        Err(message) => {
            tracing::error!("{message}");
            return exit::CONFIG;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tailguard")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return exit::RUNTIME;
        }
    };
    let globals = Globals {
        data_dir,
        inventory: Arc::new(crate::identity::inventory::Inventory::new(
            config.identities.clone(),
        )),
        policies: Arc::new(config.policies.clone()),
    };
    let context = Arc::new(crate::resource::host_context_with(&config.resource));
    // systemd (Type=notify): watchdog pings and READY=1; no-ops elsewhere.
    {
        let _entered = runtime.enter();
        crate::service::spawn_watchdog();
    }
    crate::service::notify_ready();
    runtime.spawn(crate::observe::api::serve(config.api.clone()));
    let (control_tx, control_rx) = tokio::sync::mpsc::channel(4);
    runtime.spawn(watch_signals(paths.clone(), control_tx));
    let result = runtime.block_on(crate::topology::run(config, globals, context, control_rx));
    crate::service::notify_stopping();
    // Standard input is read on a blocking thread that may never return;
    // don't wait for it.
    runtime.shutdown_background();
    match result {
        Ok(()) => {
            info!("stopped; every component drained");
            exit::OK
        }
        Err(e) => {
            tracing::error!("{e}");
            exit::RUNTIME
        }
    }
}

/// Resolves where state lives: the command line, then the configuration,
/// then `/var/lib/tailguard`. Only the built-in default falls back to a
/// per-user directory, so `tailguard run` works unprivileged with no setup,
/// while a directory an operator chose is never silently replaced.
fn resolve_data_dir(cli: Option<&Path>, configured: Option<&Path>) -> Result<PathBuf, String> {
    if let Some(dir) = cli.or(configured) {
        return std::fs::create_dir_all(dir)
            .map(|()| dir.to_path_buf())
            .map_err(|e| format!("data_dir {}: cannot create: {e}", dir.display()));
    }
    let default = PathBuf::from(config::DEFAULT_DATA_DIR);
    if std::fs::create_dir_all(&default).is_ok() && writable(&default) {
        return Ok(default);
    }
    let fallback = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
        .map(|base| base.join("tailguard"))
        .ok_or_else(|| {
            format!(
                "data_dir {} is not writable and neither XDG_STATE_HOME nor HOME is set; set data_dir or --data-dir",
                config::DEFAULT_DATA_DIR
            )
        })?;
    std::fs::create_dir_all(&fallback)
        .map_err(|e| format!("data_dir {}: cannot create: {e}", fallback.display()))?;
    warn!(
        data_dir = %fallback.display(),
        "{} is not writable; keeping state in the per-user directory instead",
        config::DEFAULT_DATA_DIR
    );
    Ok(fallback)
}

fn writable(dir: &Path) -> bool {
    tempfile::Builder::new()
        .prefix(".tailguard-probe")
        .tempfile_in(dir)
        .is_ok()
}

/// Turns signals into topology commands: SIGTERM and SIGINT stop the agent;
/// SIGHUP re-reads every configuration file and, when the new
/// configuration is valid, reloads it. An invalid one is logged, error by
/// error, and the running configuration stays.
async fn watch_signals(paths: ConfigPaths, control: tokio::sync::mpsc::Sender<Control>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        warn!("cannot install signal handlers; stop the agent with SIGKILL");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => info!("received SIGTERM"),
            _ = int.recv() => info!("received SIGINT"),
            _ = hup.recv() => {
                info!("received SIGHUP: reloading the configuration");
                crate::service::notify_reloading();
                match load_checked(&paths) {
                    Ok(config) => {
                        let _ = control.send(Control::Reload(Box::new(config))).await;
                    }
                    Err(errors) => {
                        for e in &errors {
                            tracing::error!("{e}");
                        }
                        tracing::error!(
                            errors = errors.len(),
                            "the new configuration is invalid; the previous one keeps running"
                        );
                    }
                }
                crate::service::notify_ready();
                continue;
            }
        }
        let _ = control.send(Control::Stop).await;
        return;
    }
}
