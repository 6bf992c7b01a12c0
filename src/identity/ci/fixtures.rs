//! Recorded-shape CI environments with fake values (no real tokens, hosts
//! or people). Variable names are the documented ones of each CI system.

use std::path::Path;

pub type EnvMap = &'static [(&'static str, &'static str)];

/// GitHub Actions, self-hosted runner, `pull_request` event, re-run attempt 2.
pub const GITHUB_PR: EnvMap = &[
    ("CI", "true"),
    ("GITHUB_ACTIONS", "true"),
    ("GITHUB_WORKFLOW", "Build and Test"),
    (
        "GITHUB_WORKFLOW_REF",
        "example-org/widget/.github/workflows/ci.yml@refs/pull/1075/merge",
    ),
    ("GITHUB_RUN_ID", "9753949763"),
    ("GITHUB_RUN_NUMBER", "412"),
    ("GITHUB_RUN_ATTEMPT", "2"),
    ("GITHUB_JOB", "unit-tests"),
    ("GITHUB_ACTION", "__run_2"),
    ("GITHUB_SERVER_URL", "https://github.com"),
    ("GITHUB_API_URL", "https://api.github.com"),
    ("GITHUB_REPOSITORY", "example-org/widget"),
    ("GITHUB_REPOSITORY_OWNER", "example-org"),
    ("GITHUB_EVENT_NAME", "pull_request"),
    ("GITHUB_REF", "refs/pull/1075/merge"),
    ("GITHUB_REF_NAME", "1075/merge"),
    ("GITHUB_REF_TYPE", "branch"),
    ("GITHUB_HEAD_REF", "feature/login-form"),
    ("GITHUB_BASE_REF", "main"),
    ("GITHUB_SHA", "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c"),
    ("GITHUB_ACTOR", "octo-author"),
    ("GITHUB_ACTOR_ID", "1234567"),
    ("GITHUB_TRIGGERING_ACTOR", "octo-rerunner"),
    (
        "GITHUB_WORKSPACE",
        "/home/ci/actions-runner/_work/widget/widget",
    ),
    ("RUNNER_NAME", "build-host-01"),
    ("RUNNER_OS", "Linux"),
    ("RUNNER_ARCH", "X64"),
    ("RUNNER_TEMP", "/home/ci/actions-runner/_work/_temp"),
    ("RUNNER_WORKSPACE", "/home/ci/actions-runner/_work/widget"),
    (
        "ACTIONS_ID_TOKEN_REQUEST_URL",
        "https://pipelines.actions.example.invalid/abc/idtoken?api-version=2.0",
    ),
    (
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
        "FAKE-REQUEST-CREDENTIAL-0001",
    ),
];

/// GitHub Actions, hosted-style runner, `push` to main (empty GITHUB_HEAD_REF,
/// no RUNNER_WORKSPACE under `_work`).
pub const GITHUB_PUSH: EnvMap = &[
    ("CI", "true"),
    ("GITHUB_ACTIONS", "true"),
    ("GITHUB_WORKFLOW", "Release"),
    ("GITHUB_RUN_ID", "100200300"),
    ("GITHUB_RUN_ATTEMPT", "1"),
    ("GITHUB_JOB", "publish"),
    ("GITHUB_SERVER_URL", "https://github.com"),
    ("GITHUB_REPOSITORY", "example-org/widget"),
    ("GITHUB_EVENT_NAME", "push"),
    ("GITHUB_REF", "refs/heads/main"),
    ("GITHUB_REF_NAME", "main"),
    ("GITHUB_HEAD_REF", ""),
    ("GITHUB_SHA", "aaaabbbbccccddddeeeeffff0000111122223333"),
    ("GITHUB_ACTOR", "octo-author"),
    ("RUNNER_NAME", "GitHub Actions 7"),
    ("RUNNER_WORKSPACE", "/home/runner/work/widget"),
];

/// `<runner root>/.runner` of a self-hosted runner (written with a BOM).
pub const GITHUB_RUNNER_FILE: &str = "\u{feff}{\n  \"agentId\": 17,\n  \"agentName\": \"build-host-01\",\n  \"poolId\": 1,\n  \"poolName\": \"Default\",\n  \"serverUrl\": \"https://pipelines.actions.example.invalid/abc/\",\n  \"gitHubUrl\": \"https://github.com/example-org\",\n  \"workFolder\": \"_work\"\n}";

/// GitLab CI, merge request pipeline, deployment job.
pub const GITLAB_MR_DEPLOY: EnvMap = &[
    ("CI", "true"),
    ("GITLAB_CI", "true"),
    ("CI_SERVER_URL", "https://gitlab.example.com"),
    ("CI_SERVER_HOST", "gitlab.example.com"),
    ("CI_PROJECT_ID", "4242"),
    ("CI_PROJECT_PATH", "platform/widget"),
    (
        "CI_PROJECT_URL",
        "https://gitlab.example.com/platform/widget",
    ),
    ("CI_PIPELINE_ID", "987654"),
    ("CI_PIPELINE_IID", "321"),
    (
        "CI_PIPELINE_URL",
        "https://gitlab.example.com/platform/widget/-/pipelines/987654",
    ),
    ("CI_PIPELINE_SOURCE", "merge_request_event"),
    ("CI_PIPELINE_NAME", "MR checks"),
    ("CI_JOB_ID", "55501"),
    ("CI_JOB_NAME", "deploy-review"),
    ("CI_JOB_STAGE", "deploy"),
    (
        "CI_JOB_URL",
        "https://gitlab.example.com/platform/widget/-/jobs/55501",
    ),
    ("CI_COMMIT_SHA", "1111222233334444555566667777888899990000"),
    ("CI_COMMIT_REF_NAME", "feature/review-apps"),
    ("CI_COMMIT_BRANCH", "feature/review-apps"),
    ("CI_MERGE_REQUEST_IID", "77"),
    ("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME", "feature/review-apps"),
    ("CI_MERGE_REQUEST_TARGET_BRANCH_NAME", "main"),
    ("CI_ENVIRONMENT_NAME", "review/feature-review-apps"),
    ("CI_RUNNER_ID", "12"),
    ("CI_RUNNER_DESCRIPTION", "shell-runner-a"),
    ("CI_RUNNER_TAGS", "[\"linux\", \"shell\"]"),
    ("GITLAB_USER_LOGIN", "jdoe"),
    ("GITLAB_USER_ID", "31"),
    ("CI_JOB_TOKEN", "FAKE-JOB-TOKEN-0002"),
];

/// GitLab CI, push pipeline on main, no pipeline name, no environment.
pub const GITLAB_PUSH: EnvMap = &[
    ("CI", "true"),
    ("GITLAB_CI", "true"),
    ("CI_SERVER_URL", "https://gitlab.example.com"),
    ("CI_PROJECT_PATH", "platform/widget"),
    (
        "CI_PROJECT_URL",
        "https://gitlab.example.com/platform/widget",
    ),
    ("CI_PIPELINE_ID", "987655"),
    (
        "CI_PIPELINE_URL",
        "https://gitlab.example.com/platform/widget/-/pipelines/987655",
    ),
    ("CI_JOB_ID", "55600"),
    ("CI_JOB_NAME", "build"),
    (
        "CI_JOB_URL",
        "https://gitlab.example.com/platform/widget/-/jobs/55600",
    ),
    ("CI_COMMIT_SHA", "abcdefabcdefabcdefabcdefabcdefabcdefabcd"),
    ("CI_COMMIT_REF_NAME", "main"),
    ("CI_RUNNER_ID", "12"),
    ("CI_RUNNER_DESCRIPTION", "shell-runner-a"),
    ("GITLAB_USER_LOGIN", "jdoe"),
];

/// Jenkins multibranch pipeline building pull request 24 inside a folder,
/// on agent `linux-agent-3`, with the controller's JENKINS_HOME visible.
pub const JENKINS_MULTIBRANCH_PR: EnvMap = &[
    ("CI", "true"),
    ("JENKINS_URL", "https://jenkins.example.com/"),
    ("JENKINS_HOME", "/var/lib/jenkins"),
    ("JOB_NAME", "platform/widget/PR-24"),
    ("JOB_BASE_NAME", "PR-24"),
    ("BUILD_NUMBER", "7"),
    ("BUILD_ID", "7"),
    ("BUILD_TAG", "jenkins-platform-widget-PR-24-7"),
    (
        "BUILD_URL",
        "https://jenkins.example.com/job/platform/job/widget/job/PR-24/7/",
    ),
    (
        "JOB_URL",
        "https://jenkins.example.com/job/platform/job/widget/job/PR-24/",
    ),
    ("STAGE_NAME", "Test"),
    ("BRANCH_NAME", "PR-24"),
    ("CHANGE_ID", "24"),
    ("CHANGE_BRANCH", "feature/faster-build"),
    ("CHANGE_TARGET", "main"),
    ("CHANGE_AUTHOR", "jdoe"),
    ("GIT_URL", "https://git.example.com/platform/widget.git"),
    ("GIT_BRANCH", "PR-24"),
    ("GIT_COMMIT", "2222333344445555666677778888999900001111"),
    ("NODE_NAME", "linux-agent-3"),
    ("NODE_LABELS", "linux docker"),
    ("EXECUTOR_NUMBER", "1"),
    (
        "WORKSPACE",
        "/home/jenkins/agent/workspace/platform_widget_PR-24",
    ),
];

/// Jenkins freestyle job (git plugin variables, no multibranch ones).
pub const JENKINS_FREESTYLE: EnvMap = &[
    ("JENKINS_URL", "https://jenkins.example.com/"),
    ("JOB_NAME", "nightly"),
    ("BUILD_NUMBER", "153"),
    ("BUILD_URL", "https://jenkins.example.com/job/nightly/153/"),
    ("BUILD_TAG", "jenkins-nightly-153"),
    ("GIT_URL", "git@git.example.com:platform/widget.git"),
    ("GIT_BRANCH", "origin/main"),
    ("GIT_COMMIT", "ce9a3c1404e8c91be604088670e93434c4253f03"),
    ("NODE_NAME", "built-in"),
];

/// `build.xml` of a finished pipeline build started by a user.
pub const JENKINS_BUILD_XML: &str = r#"<?xml version='1.1' encoding='UTF-8'?>
<flow-build plugin="workflow-job@1436.vfa_244484591f">
  <actions>
    <hudson.model.CauseAction>
      <causeBag class="linked-hash-map">
        <entry>
          <hudson.model.Cause_-UserIdCause>
            <userId>alice</userId>
          </hudson.model.Cause_-UserIdCause>
          <int>1</int>
        </entry>
      </causeBag>
    </hudson.model.CauseAction>
  </actions>
  <queueId>88</queueId>
  <timestamp>1700000000000</timestamp>
  <startTime>1700000000123</startTime>
  <result>FAILURE</result>
  <duration>65432</duration>
  <charset>UTF-8</charset>
  <keepLog>false</keepLog>
  <execution class="org.jenkinsci.plugins.workflow.cps.CpsFlowExecution">
    <result>FAILURE</result>
  </execution>
  <completed>true</completed>
  <number>7</number>
</flow-build>"#;

/// Buildkite pull request build.
pub const BUILDKITE_PR: EnvMap = &[
    ("CI", "true"),
    ("BUILDKITE", "true"),
    ("BUILDKITE_ORGANIZATION_SLUG", "example-org"),
    ("BUILDKITE_PIPELINE_SLUG", "widget-ci"),
    ("BUILDKITE_PIPELINE_NAME", "Widget CI"),
    ("BUILDKITE_BUILD_ID", "b81ed283-58b7-4925-aa4a-d3da0eafcf2b"),
    ("BUILDKITE_BUILD_NUMBER", "59034"),
    (
        "BUILDKITE_BUILD_URL",
        "https://buildkite.com/example-org/widget-ci/builds/59034",
    ),
    ("BUILDKITE_JOB_ID", "d593f546-8c9a-45f8-8701-a2b92fbea9a7"),
    ("BUILDKITE_LABEL", ":rust: cargo test"),
    ("BUILDKITE_STEP_KEY", "test"),
    ("BUILDKITE_REPO", "git@github.com:example-org/widget.git"),
    ("BUILDKITE_BRANCH", "feature/speedup"),
    (
        "BUILDKITE_COMMIT",
        "a0bd708bcdebced545b62a842a0350ccd1d683b7",
    ),
    ("BUILDKITE_PULL_REQUEST", "512"),
    ("BUILDKITE_BUILD_CREATOR", "Jane Doe"),
    ("BUILDKITE_BUILD_CREATOR_EMAIL", "jane@example.com"),
    ("BUILDKITE_AGENT_ID", "f69722b2-d50f-4a7d-a687-1de2401fd72c"),
    ("BUILDKITE_AGENT_NAME", "agent-i-0abc-1"),
    ("BUILDKITE_AGENT_ACCESS_TOKEN", "FAKE-AGENT-SESSION-0003"),
    (
        "BUILDKITE_JOB_LOG_TMPFILE",
        "/tmp/buildkite-job-log-123.log",
    ),
];

/// Buildkite branch build, not a pull request, GitHub deployment.
pub const BUILDKITE_DEPLOY: EnvMap = &[
    ("BUILDKITE", "true"),
    ("BUILDKITE_PIPELINE_SLUG", "widget-deploy"),
    ("BUILDKITE_BUILD_ID", "0a0a0a0a-1111-2222-3333-444444444444"),
    (
        "BUILDKITE_BUILD_URL",
        "https://buildkite.com/example-org/widget-deploy/builds/9",
    ),
    ("BUILDKITE_JOB_ID", "0b0b0b0b-5555-6666-7777-888888888888"),
    ("BUILDKITE_STEP_KEY", "deploy"),
    (
        "BUILDKITE_REPO",
        "https://github.com/example-org/widget.git",
    ),
    ("BUILDKITE_BRANCH", "main"),
    ("BUILDKITE_COMMIT", "HEAD"),
    ("BUILDKITE_PULL_REQUEST", "false"),
    ("BUILDKITE_GITHUB_DEPLOYMENT_ENVIRONMENT", "production"),
    ("BUILDKITE_AGENT_NAME", "deploy-agent"),
];

/// Some other CI that only says `CI=true`, plus Jenkins-style names.
pub const GENERIC: EnvMap = &[
    ("CI", "true"),
    ("BUILD_ID", "5521"),
    ("BUILD_URL", "https://ci.example.com/builds/5521"),
    ("GIT_URL", "https://git.example.com/platform/widget.git"),
    ("GIT_BRANCH", "origin/release-1.2"),
    ("GIT_COMMIT", "9999888877776666555544443333222211110000"),
];

pub const NOT_CI: EnvMap = &[("HOME", "/home/dev"), ("PATH", "/usr/bin:/bin")];

/// An environment lookup over a fixture.
pub fn env_of(map: EnvMap) -> impl Fn(&str) -> Option<String> {
    move |k| {
        map.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    }
}

/// A file reader over `(path, content)` pairs.
pub fn files_of(
    files: &'static [(&'static str, &'static str)],
) -> impl Fn(&Path) -> Option<String> {
    move |p| {
        files
            .iter()
            .find(|(n, _)| Path::new(n) == p)
            .map(|(_, c)| c.to_string())
    }
}

/// No files at all.
pub fn no_files(_: &Path) -> Option<String> {
    None
}
