//! CI/CD job identity: which CI job, pipeline, repository and actor is
//! behind the processes tailguard observes on a build runner.
//!
//! Everything here is a pure function over an environment lookup, a file
//! reader and byte lines; nothing opens a file or a socket by itself. The
//! caller (the agent or `tailguard exec`) decides which process environment
//! and which files to hand in.
//!
//! Attribute names follow the OpenTelemetry semantic conventions for CICD
//! and VCS (`cicd.*`, `vcs.*`, status: development). Where semconv has no
//! attribute, a `tailguard.` prefixed name is used:
//!
//! * `tailguard.cicd.system` – the CI product (`github_actions`, `gitlab_ci`,
//!   `jenkins`, `buildkite`, `generic`). Semconv only has
//!   `cicd.system.component` (a component *of* a CI system, e.g.
//!   "controller"), which is something else.
//! * `tailguard.cicd.actor` – the user who triggered the run. Semconv has no
//!   CI actor attribute.
//!
//! See `docs/ci-context.md` for the full mapping table.

mod detect;
mod markers;
mod oidc;
mod paths;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;

pub use detect::{
    JenkinsBuildXml, detect, github_runner_worker, jenkins_build_xml, jenkins_context_from_log_path,
};
pub use markers::{
    Marker, parse_marker, parse_marker_as, parse_markers, parse_markers_as, strip_ansi,
};
pub use oidc::{oidc_claims, oidc_from_env};
pub use paths::{GITHUB_RUNNER_HOME_DIR, GITHUB_RUNNER_ROOTS, default_runner_log_globs};

/// Attribute names used by this module (semconv names and tailguard's own).
pub mod attr {
    pub const CICD_SYSTEM: &str = "tailguard.cicd.system";
    pub const CICD_ACTOR: &str = "tailguard.cicd.actor";
    pub const PIPELINE_NAME: &str = "cicd.pipeline.name";
    pub const PIPELINE_RESULT: &str = "cicd.pipeline.result";
    pub const PIPELINE_RUN_ID: &str = "cicd.pipeline.run.id";
    pub const PIPELINE_RUN_URL: &str = "cicd.pipeline.run.url.full";
    pub const TASK_NAME: &str = "cicd.pipeline.task.name";
    pub const TASK_RUN_ID: &str = "cicd.pipeline.task.run.id";
    pub const TASK_RUN_URL: &str = "cicd.pipeline.task.run.url.full";
    pub const TASK_RUN_RESULT: &str = "cicd.pipeline.task.run.result";
    pub const REPO_URL: &str = "vcs.repository.url.full";
    pub const REF_HEAD_NAME: &str = "vcs.ref.head.name";
    pub const REF_HEAD_REVISION: &str = "vcs.ref.head.revision";
    pub const CHANGE_ID: &str = "vcs.change.id";
    pub const DEPLOYMENT_ENVIRONMENT: &str = "deployment.environment.name";
    pub const WORKER_ID: &str = "cicd.worker.id";
    pub const WORKER_NAME: &str = "cicd.worker.name";
    /// Not in semconv: the runner pool / group a worker belongs to.
    pub const WORKER_POOL: &str = "tailguard.cicd.worker.pool";
}

/// The CI product a job runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CiSystem {
    GithubActions,
    GitlabCi,
    Jenkins,
    Buildkite,
    /// `CI=true` but no known system: only generic variables are used.
    Generic,
}

impl CiSystem {
    /// Value of `tailguard.cicd.system`.
    pub fn as_str(self) -> &'static str {
        match self {
            CiSystem::GithubActions => "github_actions",
            CiSystem::GitlabCi => "gitlab_ci",
            CiSystem::Jenkins => "jenkins",
            CiSystem::Buildkite => "buildkite",
            CiSystem::Generic => "generic",
        }
    }
}

/// The job context of one CI job.
///
/// `attributes` are per-job (span / log record) attributes in a fixed order:
/// `tailguard.cicd.system` first, then pipeline, task, VCS, result, actor and
/// environment. `worker` holds `cicd.worker.*` attributes that belong on the
/// resource. `actor` and `environment` repeat the values of
/// `tailguard.cicd.actor` and `deployment.environment.name` for callers that
/// want them without a lookup. Empty values are never recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobContext {
    pub system: CiSystem,
    pub attributes: Vec<(&'static str, String)>,
    pub worker: Vec<(&'static str, String)>,
    pub actor: Option<String>,
    pub environment: Option<String>,
}

impl JobContext {
    pub(crate) fn new(system: CiSystem) -> Self {
        JobContext {
            system,
            attributes: vec![(attr::CICD_SYSTEM, system.as_str().to_string())],
            worker: Vec::new(),
            actor: None,
            environment: None,
        }
    }

    /// Value of attribute `key` (job attributes first, then worker).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .chain(self.worker.iter())
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets (or replaces) a job attribute; empty values are ignored.
    pub(crate) fn set(&mut self, key: &'static str, value: Option<String>) {
        set_in(&mut self.attributes, key, value);
    }

    pub(crate) fn set_worker(&mut self, key: &'static str, value: Option<String>) {
        set_in(&mut self.worker, key, value);
    }

    pub(crate) fn set_actor(&mut self, actor: Option<String>) {
        let actor = actor.filter(|a| !a.is_empty());
        if let Some(a) = &actor {
            self.set(attr::CICD_ACTOR, Some(a.clone()));
            self.actor = actor;
        }
    }

    pub(crate) fn set_environment(&mut self, env: Option<String>) {
        let env = env.filter(|e| !e.is_empty());
        if let Some(e) = &env {
            self.set(attr::DEPLOYMENT_ENVIRONMENT, Some(e.clone()));
            self.environment = env;
        }
    }
}

fn set_in(list: &mut Vec<(&'static str, String)>, key: &'static str, value: Option<String>) {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return;
    };
    if let Some(slot) = list.iter_mut().find(|(k, _)| *k == key) {
        slot.1 = value;
    } else {
        list.push((key, value));
    }
}

/// How a task (the command tailguard wrapped or watched) ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// Exited with this status code.
    Code(i32),
    /// Killed by this signal number.
    Signal(i32),
    /// Stopped because a time limit ran out.
    Timeout,
    /// Cancelled by the CI system or a user.
    Cancelled,
    /// Never ran.
    Skipped,
}

const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;

/// Maps how a task ended to `cicd.pipeline.task.run.result`
/// (`success|failure|error|timeout|cancellation|skip`).
///
/// * exit code 0 → `success`; any other code → `failure` (a failing tool:
///   compile error, failing test). Codes 128+N that a shell reports for a
///   signalled child stay `failure`: a program may exit 130 by itself.
/// * SIGINT / SIGTERM → `cancellation`: this is how runners stop a job that
///   is cancelled (GitHub sends SIGINT then SIGTERM, GitLab and Buildkite's
///   default cancel signal is SIGTERM).
/// * SIGKILL and any other signal → `error`: the task was killed by the
///   system (OOM killer, runner teardown, crash signal), not by its own logic.
/// * `Timeout` → `timeout`, `Cancelled` → `cancellation`, `Skipped` → `skip`.
pub fn task_result(exit: ExitKind) -> &'static str {
    match exit {
        ExitKind::Code(0) => "success",
        ExitKind::Code(_) => "failure",
        ExitKind::Signal(SIGINT | SIGTERM) => "cancellation",
        ExitKind::Signal(_) => "error",
        ExitKind::Timeout => "timeout",
        ExitKind::Cancelled => "cancellation",
        ExitKind::Skipped => "skip",
    }
}
