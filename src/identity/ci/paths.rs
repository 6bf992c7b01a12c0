//! Where CI runners keep job logs on a build host.

use std::path::Path;

use super::CiSystem;

/// Glob patterns (`*` within one path component, `**` across components)
/// of runner log files worth tailing, per CI system:
///
/// * GitHub Actions self-hosted runner: `<root>/_diag/Worker_*.log` (the
///   worker's own log, including the job message) and
///   `<root>/_diag/pages/*.log` (step output pages before upload). Roots:
///   `RUNNER_ROOT` if set, else `/home/*/actions-runner`,
///   `/opt/actions-runner`, `/actions-runner`.
/// * Jenkins controller: `$JENKINS_HOME/jobs/**/builds/*/log` (build logs;
///   job name and number come from the path, see
///   `jenkins_context_from_log_path`) and durable-task step logs
///   `$JENKINS_HOME/workspace/*@tmp/durable-*/jenkins-log.txt`;
///   `JENKINS_HOME` defaults to `/var/lib/jenkins`. On an agent, where
///   `WORKSPACE` is set, the durable-task logs beside that workspace
///   (`<dirname $WORKSPACE>/*@tmp/durable-*/jenkins-log.txt`) too.
/// * Buildkite: `BUILDKITE_JOB_LOG_TMPFILE` when the agent runs with
///   `enable-job-log-tmpfile`. The agent keeps no other documented job log
///   on disk; jobs are otherwise covered by `tailguard exec`.
///
/// GitLab Runner streams job logs to GitLab and keeps none on disk; it is
/// covered by `tailguard exec` as well.
/// Where a GitHub Actions self-hosted runner is usually installed, outside
/// home directories.
pub const GITHUB_RUNNER_ROOTS: &[&str] = &["/opt/actions-runner", "/actions-runner"];

/// The runner's folder name when it is installed in a home directory.
pub const GITHUB_RUNNER_HOME_DIR: &str = "actions-runner";

pub fn default_runner_log_globs(env: &dyn Fn(&str) -> Option<String>) -> Vec<(CiSystem, String)> {
    let get = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    let mut out = Vec::new();

    let roots: Vec<String> = match get("RUNNER_ROOT") {
        Some(r) => vec![r.trim_end_matches('/').to_string()],
        None => std::iter::once(format!("/home/*/{GITHUB_RUNNER_HOME_DIR}"))
            .chain(GITHUB_RUNNER_ROOTS.iter().map(|s| s.to_string()))
            .collect(),
    };
    for root in &roots {
        out.push((
            CiSystem::GithubActions,
            format!("{root}/_diag/Worker_*.log"),
        ));
        out.push((CiSystem::GithubActions, format!("{root}/_diag/pages/*.log")));
    }

    let home = get("JENKINS_HOME").unwrap_or_else(|| "/var/lib/jenkins".to_string());
    let home = home.trim_end_matches('/');
    out.push((CiSystem::Jenkins, format!("{home}/jobs/**/builds/*/log")));
    let durable = format!("{home}/workspace/*@tmp/durable-*/jenkins-log.txt");
    out.push((CiSystem::Jenkins, durable.clone()));
    if let Some(ws) = get("WORKSPACE")
        && let Some(parent) = Path::new(&ws).parent().and_then(Path::to_str)
        && !parent.is_empty()
    {
        let g = format!("{parent}/*@tmp/durable-*/jenkins-log.txt");
        if g != durable {
            out.push((CiSystem::Jenkins, g));
        }
    }

    if let Some(f) = get("BUILDKITE_JOB_LOG_TMPFILE") {
        out.push((CiSystem::Buildkite, f));
    }
    out
}
