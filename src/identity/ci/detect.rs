//! Job context detection from a process environment and CI files.

use std::path::{Component, Path, PathBuf};

use super::{CiSystem, JobContext, attr};

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;
type Files<'a> = &'a dyn Fn(&Path) -> Option<String>;

/// Detects the CI job context of a process.
///
/// `env` looks up one environment variable of the process (the wrapped
/// command's or a scanned process's `/proc/<pid>/environ`); `files` reads a
/// file the detector asks for (return `None` when it is missing or not
/// allowed). Files read:
///
/// * GitHub Actions self-hosted runner: `<runner root>/.runner` (JSON with
///   `agentId`, `agentName`, `poolName`) for the worker id, name and pool.
///   The runner root is `RUNNER_ROOT` if set, else derived from
///   `RUNNER_WORKSPACE` (`<root>/_work/<repo>`, default work folder only).
/// * Jenkins on the controller: `$JENKINS_HOME/jobs/<a>/jobs/<b>/builds/<n>/build.xml`
///   for the run result (`cicd.pipeline.result`, once finished) and the user
///   who started the build (`UserIdCause`).
///
/// Systems are tried in this order: GitHub Actions (`GITHUB_ACTIONS=true`),
/// GitLab CI (`GITLAB_CI=true`), Buildkite (`BUILDKITE=true`), Jenkins
/// (`JENKINS_URL` set, or `BUILD_TAG` starting with `jenkins-`), then the
/// generic fallback when `CI` is `true`/`1`. The generic fallback uses the
/// Jenkins-style names several CI tools also export: `BUILD_ID` or
/// `BUILD_NUMBER` (run id), `BUILD_URL`, `GIT_URL`, `GIT_BRANCH`,
/// `GIT_COMMIT`. Returns `None` outside CI.
pub fn detect(
    env: &dyn Fn(&str) -> Option<String>,
    files: &dyn Fn(&Path) -> Option<String>,
) -> Option<JobContext> {
    if is_true(env("GITHUB_ACTIONS")) {
        return Some(github(env, files));
    }
    if is_true(env("GITLAB_CI")) {
        return Some(gitlab(env));
    }
    if is_true(env("BUILDKITE")) {
        return Some(buildkite(env));
    }
    if nonempty(env("JENKINS_URL")).is_some()
        || env("BUILD_TAG").is_some_and(|t| t.starts_with("jenkins-"))
    {
        return Some(jenkins(env, files));
    }
    if is_true(env("CI")) {
        return Some(generic(env));
    }
    None
}

fn is_true(v: Option<String>) -> bool {
    matches!(
        v.as_deref().map(str::trim),
        Some("true" | "TRUE" | "True" | "1")
    )
}

fn nonempty(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.trim().is_empty())
}

fn get(env: Env<'_>, name: &str) -> Option<String> {
    nonempty(env(name))
}

fn first(env: Env<'_>, names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| get(env, n))
}

// ---------------------------------------------------------------- GitHub

fn github(env: Env<'_>, files: Files<'_>) -> JobContext {
    let mut c = JobContext::new(CiSystem::GithubActions);
    let server = get(env, "GITHUB_SERVER_URL").map(|s| s.trim_end_matches('/').to_string());
    let repo = get(env, "GITHUB_REPOSITORY");
    let run_id = get(env, "GITHUB_RUN_ID");
    let attempt = get(env, "GITHUB_RUN_ATTEMPT");
    let job = get(env, "GITHUB_JOB");

    c.set(attr::PIPELINE_NAME, get(env, "GITHUB_WORKFLOW"));
    c.set(attr::PIPELINE_RUN_ID, run_id.clone());
    if let (Some(s), Some(r), Some(id)) = (&server, &repo, &run_id) {
        let mut url = format!("{s}/{r}/actions/runs/{id}");
        if let Some(a) = &attempt {
            url.push_str("/attempts/");
            url.push_str(a);
        }
        c.set(attr::PIPELINE_RUN_URL, Some(url));
    }
    c.set(attr::TASK_NAME, job.clone());
    // GitHub exports no job run id: compose "<run id>/<attempt>/<job id>".
    // Stable across the steps of one job attempt; matrix legs of one job
    // share it (no matrix index is exported).
    if let (Some(id), Some(j)) = (&run_id, &job) {
        let a = attempt.as_deref().unwrap_or("1");
        c.set(attr::TASK_RUN_ID, Some(format!("{id}/{a}/{j}")));
    }
    if let (Some(s), Some(r)) = (&server, &repo) {
        c.set(attr::REPO_URL, Some(format!("{s}/{r}")));
    }
    c.set(
        attr::REF_HEAD_NAME,
        first(env, &["GITHUB_HEAD_REF", "GITHUB_REF_NAME"]),
    );
    c.set(attr::REF_HEAD_REVISION, get(env, "GITHUB_SHA"));
    c.set(
        attr::CHANGE_ID,
        get(env, "GITHUB_REF").and_then(|r| github_pr_number(&r)),
    );
    c.set_actor(first(env, &["GITHUB_TRIGGERING_ACTOR", "GITHUB_ACTOR"]));
    // Jobs with `environment:` do not export its name: left unset.

    if let Some(root) = github_runner_root(env)
        && let Some(json) = files(&root.join(".runner"))
    {
        for (k, v) in github_runner_worker(&json) {
            c.set_worker(k, Some(v));
        }
    }
    // RUNNER_NAME is the name of the runner running this very job.
    c.set_worker(attr::WORKER_NAME, get(env, "RUNNER_NAME"));
    sort_worker(&mut c);
    c
}

fn sort_worker(c: &mut JobContext) {
    let rank = |k: &str| match k {
        attr::WORKER_ID => 0,
        attr::WORKER_NAME => 1,
        _ => 2,
    };
    c.worker.sort_by_key(|(k, _)| rank(k));
}

/// `refs/pull/<n>/merge` or `refs/pull/<n>/head` → `<n>`.
fn github_pr_number(r: &str) -> Option<String> {
    let rest = r.strip_prefix("refs/pull/")?;
    let (n, tail) = rest.split_once('/')?;
    (matches!(tail, "merge" | "head") && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .then(|| n.to_string())
}

fn github_runner_root(env: Env<'_>) -> Option<PathBuf> {
    if let Some(r) = get(env, "RUNNER_ROOT") {
        return Some(PathBuf::from(r));
    }
    let ws = PathBuf::from(get(env, "RUNNER_WORKSPACE")?);
    let work = ws.parent()?;
    (work.file_name()? == "_work").then(|| work.parent().map(Path::to_path_buf))?
}

/// Worker attributes from a GitHub self-hosted runner's `.runner` file
/// (`agentId` → `cicd.worker.id`, `agentName` → `cicd.worker.name`,
/// `poolName` → `tailguard.cicd.worker.pool`). The file is written with a
/// UTF-8 BOM, which is skipped. Unknown or malformed content gives an empty
/// list.
pub fn github_runner_worker(json: &str) -> Vec<(&'static str, String)> {
    let json = json.trim_start_matches('\u{feff}');
    let Ok(serde_json::Value::Object(o)) = serde_json::from_str::<serde_json::Value>(json) else {
        return Vec::new();
    };
    let text = |k: &str| match o.get(k) {
        Some(serde_json::Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let mut out = Vec::new();
    for (key, name) in [
        (attr::WORKER_ID, "agentId"),
        (attr::WORKER_NAME, "agentName"),
        (attr::WORKER_POOL, "poolName"),
    ] {
        if let Some(v) = text(name) {
            out.push((key, v));
        }
    }
    out
}

// ---------------------------------------------------------------- GitLab

fn gitlab(env: Env<'_>) -> JobContext {
    let mut c = JobContext::new(CiSystem::GitlabCi);
    c.set(
        attr::PIPELINE_NAME,
        first(env, &["CI_PIPELINE_NAME", "CI_PROJECT_PATH"]),
    );
    c.set(attr::PIPELINE_RUN_ID, get(env, "CI_PIPELINE_ID"));
    c.set(attr::PIPELINE_RUN_URL, get(env, "CI_PIPELINE_URL"));
    c.set(attr::TASK_NAME, get(env, "CI_JOB_NAME"));
    c.set(attr::TASK_RUN_ID, get(env, "CI_JOB_ID"));
    c.set(attr::TASK_RUN_URL, get(env, "CI_JOB_URL"));
    c.set(attr::REPO_URL, get(env, "CI_PROJECT_URL"));
    c.set(
        attr::REF_HEAD_NAME,
        first(
            env,
            &["CI_MERGE_REQUEST_SOURCE_BRANCH_NAME", "CI_COMMIT_REF_NAME"],
        ),
    );
    c.set(attr::REF_HEAD_REVISION, get(env, "CI_COMMIT_SHA"));
    c.set(attr::CHANGE_ID, get(env, "CI_MERGE_REQUEST_IID"));
    c.set_actor(get(env, "GITLAB_USER_LOGIN"));
    c.set_environment(get(env, "CI_ENVIRONMENT_NAME"));
    c.set_worker(attr::WORKER_ID, get(env, "CI_RUNNER_ID"));
    c.set_worker(attr::WORKER_NAME, get(env, "CI_RUNNER_DESCRIPTION"));
    c
}

// ---------------------------------------------------------------- Buildkite

fn buildkite(env: Env<'_>) -> JobContext {
    let mut c = JobContext::new(CiSystem::Buildkite);
    let build_url = get(env, "BUILDKITE_BUILD_URL");
    let job_id = get(env, "BUILDKITE_JOB_ID");
    c.set(
        attr::PIPELINE_NAME,
        first(env, &["BUILDKITE_PIPELINE_NAME", "BUILDKITE_PIPELINE_SLUG"]),
    );
    c.set(attr::PIPELINE_RUN_ID, get(env, "BUILDKITE_BUILD_ID"));
    c.set(attr::PIPELINE_RUN_URL, build_url.clone());
    c.set(
        attr::TASK_NAME,
        first(env, &["BUILDKITE_LABEL", "BUILDKITE_STEP_KEY"]),
    );
    c.set(attr::TASK_RUN_ID, job_id.clone());
    // A job's page is the build page anchored at the job id.
    if let (Some(u), Some(j)) = (&build_url, &job_id) {
        c.set(attr::TASK_RUN_URL, Some(format!("{u}#{j}")));
    }
    c.set(attr::REPO_URL, get(env, "BUILDKITE_REPO"));
    c.set(attr::REF_HEAD_NAME, get(env, "BUILDKITE_BRANCH"));
    c.set(attr::REF_HEAD_REVISION, get(env, "BUILDKITE_COMMIT"));
    c.set(
        attr::CHANGE_ID,
        get(env, "BUILDKITE_PULL_REQUEST").filter(|p| p != "false"),
    );
    c.set_actor(get(env, "BUILDKITE_BUILD_CREATOR"));
    c.set_environment(get(env, "BUILDKITE_GITHUB_DEPLOYMENT_ENVIRONMENT"));
    c.set_worker(attr::WORKER_ID, get(env, "BUILDKITE_AGENT_ID"));
    c.set_worker(attr::WORKER_NAME, get(env, "BUILDKITE_AGENT_NAME"));
    c
}

// ---------------------------------------------------------------- Jenkins

fn jenkins(env: Env<'_>, files: Files<'_>) -> JobContext {
    let mut c = JobContext::new(CiSystem::Jenkins);
    let job = get(env, "JOB_NAME");
    let number = first(env, &["BUILD_NUMBER", "BUILD_ID"]);
    c.set(attr::PIPELINE_NAME, job.clone());
    c.set(attr::PIPELINE_RUN_ID, number.clone());
    c.set(attr::PIPELINE_RUN_URL, get(env, "BUILD_URL"));
    c.set(attr::TASK_NAME, get(env, "STAGE_NAME"));
    c.set(attr::REPO_URL, get(env, "GIT_URL"));
    let branch = first(env, &["CHANGE_BRANCH", "BRANCH_NAME", "GIT_LOCAL_BRANCH"])
        .or_else(|| get(env, "GIT_BRANCH").map(|b| strip_remote(&b)));
    c.set(attr::REF_HEAD_NAME, branch);
    c.set(attr::REF_HEAD_REVISION, get(env, "GIT_COMMIT"));
    c.set(attr::CHANGE_ID, get(env, "CHANGE_ID"));
    // Node names are unique within a Jenkins instance: id and name.
    let node = get(env, "NODE_NAME");
    c.set_worker(attr::WORKER_ID, node.clone());
    c.set_worker(attr::WORKER_NAME, node);

    if let (Some(home), Some(job), Some(n)) = (get(env, "JENKINS_HOME"), &job, &number)
        && let Some(xml) = jenkins_build_dirs(&home, job)
            .into_iter()
            .find_map(|d| files(&d.join("builds").join(n).join("build.xml")))
    {
        apply_build_xml(&mut c, &jenkins_build_xml(&xml));
    }
    c
}

/// Candidate job directories of `JOB_NAME` under `JENKINS_HOME`: folders are
/// `jobs/<a>/jobs/<b>`; a multibranch branch is `…/branches/<branch>`. Branch
/// directory names Jenkins had to mangle (`feature%2Fx`) are not found.
fn jenkins_build_dirs(home: &str, job: &str) -> Vec<PathBuf> {
    let parts: Vec<&str> = job.split('/').filter(|s| !s.is_empty()).collect();
    let Some((last, folders)) = parts.split_last() else {
        return Vec::new();
    };
    let mut base = PathBuf::from(home);
    for f in folders {
        base.push("jobs");
        base.push(f);
    }
    let mut out = vec![base.join("jobs").join(last)];
    if !folders.is_empty() {
        out.push(base.join("branches").join(last));
    }
    out
}

/// `origin/main` → `main` (the git plugin's `GIT_BRANCH` carries the remote).
fn strip_remote(b: &str) -> String {
    b.strip_prefix("origin/").unwrap_or(b).to_string()
}

fn apply_build_xml(c: &mut JobContext, x: &JenkinsBuildXml) {
    c.set(attr::PIPELINE_RESULT, x.result.map(str::to_string));
    if c.actor.is_none() {
        c.set_actor(x.user_id.clone());
    }
}

/// What tailguard reads from a Jenkins `build.xml`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JenkinsBuildXml {
    /// `<number>` of the build.
    pub number: Option<String>,
    /// `<result>` mapped to `cicd.pipeline.result` values: SUCCESS→success,
    /// FAILURE/UNSTABLE→failure, ABORTED→cancellation, NOT_BUILT→skip.
    /// `None` while the build runs (no `<result>` yet).
    pub result: Option<&'static str>,
    /// `<userId>` of the `UserIdCause` (who pressed "Build").
    pub user_id: Option<String>,
}

/// Parses the few elements tailguard needs out of a Jenkins `build.xml`
/// (`<flow-build>` or `<build>` root). A plain text scan, not an XML parser:
/// only the first occurrence of each element is used and XML entities in
/// values are decoded for the five predefined entities.
pub fn jenkins_build_xml(xml: &str) -> JenkinsBuildXml {
    let result = element(xml, "result").and_then(|r| match r.trim() {
        "SUCCESS" => Some("success"),
        "FAILURE" | "UNSTABLE" => Some("failure"),
        "ABORTED" => Some("cancellation"),
        "NOT_BUILT" => Some("skip"),
        _ => None,
    });
    let user_id = xml
        .find("UserIdCause")
        .and_then(|i| element(&xml[i..], "userId"));
    JenkinsBuildXml {
        number: element(xml, "number"),
        result,
        user_id,
    }
}

fn element(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&close)? + start;
    let v = xml[start..end]
        .trim()
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&");
    (!v.is_empty()).then_some(v)
}

/// Job context from the path of a Jenkins build log on the controller:
/// `…/jobs/<name>/builds/<number>/log` → pipeline `<name>`, run `<number>`.
/// Folders nest as `jobs/a/jobs/b/builds/7/log` → `a/b`; multibranch
/// branches (`jobs/org/jobs/repo/branches/main/builds/3/log`) give
/// `org/repo/main` (the branch directory name as stored on disk, which
/// Jenkins may have mangled). Any file inside the build directory
/// (`build.xml`, `log`, …) works. Durable-task logs
/// (`workspace/<job>@tmp/durable-*/jenkins-log.txt`) carry no job identity
/// in their path and give `None`.
pub fn jenkins_context_from_log_path(path: &Path) -> Option<JobContext> {
    let parts: Vec<&str> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => s.to_str(),
            _ => None,
        })
        .collect();
    // Last "builds/<number>" pair.
    let b = (0..parts.len().saturating_sub(1))
        .rev()
        .find(|&i| parts[i] == "builds" && is_number(parts[i + 1]))?;
    let number = parts[b + 1];
    let mut names = Vec::new();
    let mut i = b;
    while i >= 2 && matches!(parts[i - 2], "jobs" | "branches") {
        names.push(parts[i - 1]);
        i -= 2;
    }
    if names.is_empty() {
        return None;
    }
    names.reverse();
    let mut c = JobContext::new(CiSystem::Jenkins);
    c.set(attr::PIPELINE_NAME, Some(names.join("/")));
    c.set(attr::PIPELINE_RUN_ID, Some(number.to_string()));
    Some(c)
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

impl JobContext {
    /// Adds what a Jenkins `build.xml` says (`cicd.pipeline.result`, and the
    /// starting user as actor unless one is set) to a context built by
    /// [`jenkins_context_from_log_path`].
    pub fn apply_jenkins_build_xml(&mut self, xml: &str) {
        apply_build_xml(self, &jenkins_build_xml(xml));
    }
}

// ---------------------------------------------------------------- generic

fn generic(env: Env<'_>) -> JobContext {
    let mut c = JobContext::new(CiSystem::Generic);
    c.set(
        attr::PIPELINE_RUN_ID,
        first(env, &["BUILD_ID", "BUILD_NUMBER"]),
    );
    c.set(attr::PIPELINE_RUN_URL, get(env, "BUILD_URL"));
    c.set(attr::REPO_URL, get(env, "GIT_URL"));
    c.set(
        attr::REF_HEAD_NAME,
        get(env, "GIT_BRANCH").map(|b| strip_remote(&b)),
    );
    c.set(attr::REF_HEAD_REVISION, get(env, "GIT_COMMIT"));
    c
}
