use std::borrow::Cow;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::fixtures::*;
use super::*;

fn owned(v: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
    v.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

fn detect_env(map: EnvMap) -> Option<JobContext> {
    detect(&env_of(map), &no_files)
}

// ------------------------------------------------------------ detection

#[test]
fn github_pull_request_with_runner_file() {
    static FILES: &[(&str, &str)] = &[("/home/ci/actions-runner/.runner", GITHUB_RUNNER_FILE)];
    let c = detect(&env_of(GITHUB_PR), &files_of(FILES)).unwrap();
    assert_eq!(c.system, CiSystem::GithubActions);
    assert_eq!(
        c.attributes,
        owned(&[
            ("tailguard.cicd.system", "github_actions"),
            ("cicd.pipeline.name", "Build and Test"),
            ("cicd.pipeline.run.id", "9753949763"),
            (
                "cicd.pipeline.run.url.full",
                "https://github.com/example-org/widget/actions/runs/9753949763/attempts/2"
            ),
            ("cicd.pipeline.task.name", "unit-tests"),
            ("cicd.pipeline.task.run.id", "9753949763/2/unit-tests"),
            (
                "vcs.repository.url.full",
                "https://github.com/example-org/widget"
            ),
            ("vcs.ref.head.name", "feature/login-form"),
            (
                "vcs.ref.head.revision",
                "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c"
            ),
            ("vcs.change.id", "1075"),
            ("tailguard.cicd.actor", "octo-rerunner"),
        ])
    );
    assert_eq!(
        c.worker,
        owned(&[
            ("cicd.worker.id", "17"),
            ("cicd.worker.name", "build-host-01"),
            ("tailguard.cicd.worker.pool", "Default"),
        ])
    );
    assert_eq!(c.actor.as_deref(), Some("octo-rerunner"));
    assert_eq!(c.environment, None);
    // The OIDC request credential never lands in the job context.
    let all = format!("{c:?}");
    assert!(!all.contains("FAKE-REQUEST-CREDENTIAL"));
}

#[test]
fn github_runner_root_env_wins() {
    let env = |k: &str| match k {
        "RUNNER_ROOT" => Some("/srv/runner".to_string()),
        _ => env_of(GITHUB_PR)(k),
    };
    let asked = std::cell::RefCell::new(Vec::new());
    let files = |p: &Path| {
        asked.borrow_mut().push(p.to_path_buf());
        None
    };
    let c = detect(&env, &files).unwrap();
    assert_eq!(
        asked.into_inner(),
        vec![std::path::PathBuf::from("/srv/runner/.runner")]
    );
    assert_eq!(c.worker, owned(&[("cicd.worker.name", "build-host-01")]));
}

#[test]
fn github_push_falls_back_to_ref_name() {
    let c = detect_env(GITHUB_PUSH).unwrap();
    assert_eq!(
        c.attributes,
        owned(&[
            ("tailguard.cicd.system", "github_actions"),
            ("cicd.pipeline.name", "Release"),
            ("cicd.pipeline.run.id", "100200300"),
            (
                "cicd.pipeline.run.url.full",
                "https://github.com/example-org/widget/actions/runs/100200300/attempts/1"
            ),
            ("cicd.pipeline.task.name", "publish"),
            ("cicd.pipeline.task.run.id", "100200300/1/publish"),
            (
                "vcs.repository.url.full",
                "https://github.com/example-org/widget"
            ),
            ("vcs.ref.head.name", "main"),
            (
                "vcs.ref.head.revision",
                "aaaabbbbccccddddeeeeffff0000111122223333"
            ),
            ("tailguard.cicd.actor", "octo-author"),
        ])
    );
    assert_eq!(c.worker, owned(&[("cicd.worker.name", "GitHub Actions 7")]));
}

#[test]
fn github_runner_file_parsing() {
    assert_eq!(
        github_runner_worker(GITHUB_RUNNER_FILE),
        owned(&[
            ("cicd.worker.id", "17"),
            ("cicd.worker.name", "build-host-01"),
            ("tailguard.cicd.worker.pool", "Default"),
        ])
    );
    assert!(github_runner_worker("not json").is_empty());
    assert!(github_runner_worker("[1,2]").is_empty());
}

#[test]
fn gitlab_merge_request_deploy() {
    let c = detect_env(GITLAB_MR_DEPLOY).unwrap();
    assert_eq!(c.system, CiSystem::GitlabCi);
    assert_eq!(
        c.attributes,
        owned(&[
            ("tailguard.cicd.system", "gitlab_ci"),
            ("cicd.pipeline.name", "MR checks"),
            ("cicd.pipeline.run.id", "987654"),
            (
                "cicd.pipeline.run.url.full",
                "https://gitlab.example.com/platform/widget/-/pipelines/987654"
            ),
            ("cicd.pipeline.task.name", "deploy-review"),
            ("cicd.pipeline.task.run.id", "55501"),
            (
                "cicd.pipeline.task.run.url.full",
                "https://gitlab.example.com/platform/widget/-/jobs/55501"
            ),
            (
                "vcs.repository.url.full",
                "https://gitlab.example.com/platform/widget"
            ),
            ("vcs.ref.head.name", "feature/review-apps"),
            (
                "vcs.ref.head.revision",
                "1111222233334444555566667777888899990000"
            ),
            ("vcs.change.id", "77"),
            ("tailguard.cicd.actor", "jdoe"),
            ("deployment.environment.name", "review/feature-review-apps"),
        ])
    );
    assert_eq!(
        c.worker,
        owned(&[
            ("cicd.worker.id", "12"),
            ("cicd.worker.name", "shell-runner-a")
        ])
    );
    assert_eq!(c.environment.as_deref(), Some("review/feature-review-apps"));
    assert!(!format!("{c:?}").contains("FAKE-JOB-TOKEN"));
}

#[test]
fn gitlab_push_uses_project_path() {
    let c = detect_env(GITLAB_PUSH).unwrap();
    assert_eq!(
        c.attributes,
        owned(&[
            ("tailguard.cicd.system", "gitlab_ci"),
            ("cicd.pipeline.name", "platform/widget"),
            ("cicd.pipeline.run.id", "987655"),
            (
                "cicd.pipeline.run.url.full",
                "https://gitlab.example.com/platform/widget/-/pipelines/987655"
            ),
            ("cicd.pipeline.task.name", "build"),
            ("cicd.pipeline.task.run.id", "55600"),
            (
                "cicd.pipeline.task.run.url.full",
                "https://gitlab.example.com/platform/widget/-/jobs/55600"
            ),
            (
                "vcs.repository.url.full",
                "https://gitlab.example.com/platform/widget"
            ),
            ("vcs.ref.head.name", "main"),
            (
                "vcs.ref.head.revision",
                "abcdefabcdefabcdefabcdefabcdefabcdefabcd"
            ),
            ("tailguard.cicd.actor", "jdoe"),
        ])
    );
    assert_eq!(c.environment, None);
}

#[test]
fn jenkins_multibranch_with_build_xml() {
    static FILES: &[(&str, &str)] = &[(
        "/var/lib/jenkins/jobs/platform/jobs/widget/branches/PR-24/builds/7/build.xml",
        JENKINS_BUILD_XML,
    )];
    let c = detect(&env_of(JENKINS_MULTIBRANCH_PR), &files_of(FILES)).unwrap();
    assert_eq!(c.system, CiSystem::Jenkins);
    assert_eq!(
        c.attributes,
        owned(&[
            ("tailguard.cicd.system", "jenkins"),
            ("cicd.pipeline.name", "platform/widget/PR-24"),
            ("cicd.pipeline.run.id", "7"),
            (
                "cicd.pipeline.run.url.full",
                "https://jenkins.example.com/job/platform/job/widget/job/PR-24/7/"
            ),
            ("cicd.pipeline.task.name", "Test"),
            (
                "vcs.repository.url.full",
                "https://git.example.com/platform/widget.git"
            ),
            ("vcs.ref.head.name", "feature/faster-build"),
            (
                "vcs.ref.head.revision",
                "2222333344445555666677778888999900001111"
            ),
            ("vcs.change.id", "24"),
            ("cicd.pipeline.result", "failure"),
            ("tailguard.cicd.actor", "alice"),
        ])
    );
    assert_eq!(
        c.worker,
        owned(&[
            ("cicd.worker.id", "linux-agent-3"),
            ("cicd.worker.name", "linux-agent-3"),
        ])
    );
}

#[test]
fn jenkins_freestyle_strips_remote_from_git_branch() {
    let c = detect_env(JENKINS_FREESTYLE).unwrap();
    assert_eq!(
        c.attributes,
        owned(&[
            ("tailguard.cicd.system", "jenkins"),
            ("cicd.pipeline.name", "nightly"),
            ("cicd.pipeline.run.id", "153"),
            (
                "cicd.pipeline.run.url.full",
                "https://jenkins.example.com/job/nightly/153/"
            ),
            (
                "vcs.repository.url.full",
                "git@git.example.com:platform/widget.git"
            ),
            ("vcs.ref.head.name", "main"),
            (
                "vcs.ref.head.revision",
                "ce9a3c1404e8c91be604088670e93434c4253f03"
            ),
        ])
    );
    assert_eq!(c.actor, None);
}

#[test]
fn jenkins_build_xml_fields() {
    let x = jenkins_build_xml(JENKINS_BUILD_XML);
    assert_eq!(
        x,
        JenkinsBuildXml {
            number: Some("7".into()),
            result: Some("failure"),
            user_id: Some("alice".into()),
        }
    );
    for (raw, want) in [
        ("SUCCESS", Some("success")),
        ("UNSTABLE", Some("failure")),
        ("ABORTED", Some("cancellation")),
        ("NOT_BUILT", Some("skip")),
        ("WEIRD", None),
    ] {
        let xml = format!("<build><result>{raw}</result></build>");
        assert_eq!(jenkins_build_xml(&xml).result, want, "{raw}");
    }
    // A running build has no result yet.
    assert_eq!(
        jenkins_build_xml("<flow-build><number>3</number></flow-build>").result,
        None
    );
}

#[test]
fn buildkite_pull_request() {
    let c = detect_env(BUILDKITE_PR).unwrap();
    assert_eq!(c.system, CiSystem::Buildkite);
    assert_eq!(
        c.attributes,
        owned(&[
            ("tailguard.cicd.system", "buildkite"),
            ("cicd.pipeline.name", "Widget CI"),
            (
                "cicd.pipeline.run.id",
                "b81ed283-58b7-4925-aa4a-d3da0eafcf2b"
            ),
            (
                "cicd.pipeline.run.url.full",
                "https://buildkite.com/example-org/widget-ci/builds/59034"
            ),
            ("cicd.pipeline.task.name", ":rust: cargo test"),
            (
                "cicd.pipeline.task.run.id",
                "d593f546-8c9a-45f8-8701-a2b92fbea9a7"
            ),
            (
                "cicd.pipeline.task.run.url.full",
                "https://buildkite.com/example-org/widget-ci/builds/59034#d593f546-8c9a-45f8-8701-a2b92fbea9a7"
            ),
            (
                "vcs.repository.url.full",
                "git@github.com:example-org/widget.git"
            ),
            ("vcs.ref.head.name", "feature/speedup"),
            (
                "vcs.ref.head.revision",
                "a0bd708bcdebced545b62a842a0350ccd1d683b7"
            ),
            ("vcs.change.id", "512"),
            ("tailguard.cicd.actor", "Jane Doe"),
        ])
    );
    assert_eq!(
        c.worker,
        owned(&[
            ("cicd.worker.id", "f69722b2-d50f-4a7d-a687-1de2401fd72c"),
            ("cicd.worker.name", "agent-i-0abc-1"),
        ])
    );
    assert!(!format!("{c:?}").contains("FAKE-AGENT-SESSION"));
}

#[test]
fn buildkite_deploy_without_pull_request() {
    let c = detect_env(BUILDKITE_DEPLOY).unwrap();
    assert_eq!(
        c.attributes,
        owned(&[
            ("tailguard.cicd.system", "buildkite"),
            ("cicd.pipeline.name", "widget-deploy"),
            (
                "cicd.pipeline.run.id",
                "0a0a0a0a-1111-2222-3333-444444444444"
            ),
            (
                "cicd.pipeline.run.url.full",
                "https://buildkite.com/example-org/widget-deploy/builds/9"
            ),
            ("cicd.pipeline.task.name", "deploy"),
            (
                "cicd.pipeline.task.run.id",
                "0b0b0b0b-5555-6666-7777-888888888888"
            ),
            (
                "cicd.pipeline.task.run.url.full",
                "https://buildkite.com/example-org/widget-deploy/builds/9#0b0b0b0b-5555-6666-7777-888888888888"
            ),
            (
                "vcs.repository.url.full",
                "https://github.com/example-org/widget.git"
            ),
            ("vcs.ref.head.name", "main"),
            ("vcs.ref.head.revision", "HEAD"),
            ("deployment.environment.name", "production"),
        ])
    );
    assert_eq!(c.worker, owned(&[("cicd.worker.name", "deploy-agent")]));
    assert_eq!(c.environment.as_deref(), Some("production"));
}

#[test]
fn generic_fallback_and_not_ci() {
    let c = detect_env(GENERIC).unwrap();
    assert_eq!(c.system, CiSystem::Generic);
    assert_eq!(
        c.attributes,
        owned(&[
            ("tailguard.cicd.system", "generic"),
            ("cicd.pipeline.run.id", "5521"),
            (
                "cicd.pipeline.run.url.full",
                "https://ci.example.com/builds/5521"
            ),
            (
                "vcs.repository.url.full",
                "https://git.example.com/platform/widget.git"
            ),
            ("vcs.ref.head.name", "release-1.2"),
            (
                "vcs.ref.head.revision",
                "9999888877776666555544443333222211110000"
            ),
        ])
    );
    assert!(c.worker.is_empty());
    assert_eq!(detect_env(NOT_CI), None);
    assert_eq!(detect_env(&[("CI", "false")]), None);
    assert_eq!(
        detect_env(&[("CI", "1")]).map(|c| c.attributes),
        Some(owned(&[("tailguard.cicd.system", "generic")]))
    );
}

#[test]
fn get_looks_in_attributes_and_worker() {
    let c = detect_env(GITLAB_PUSH).unwrap();
    assert_eq!(c.get("cicd.pipeline.run.id"), Some("987655"));
    assert_eq!(c.get("cicd.worker.id"), Some("12"));
    assert_eq!(c.get("vcs.change.id"), None);
}

// ------------------------------------------------------------ Jenkins paths

#[test]
fn jenkins_log_paths() {
    let ctx = |p: &str| {
        jenkins_context_from_log_path(Path::new(p)).map(|c| {
            (
                c.get("cicd.pipeline.name").map(str::to_string),
                c.get("cicd.pipeline.run.id").map(str::to_string),
            )
        })
    };
    let some = |n: &str, r: &str| Some((Some(n.to_string()), Some(r.to_string())));
    assert_eq!(
        ctx("/var/lib/jenkins/jobs/nightly/builds/153/log"),
        some("nightly", "153")
    );
    assert_eq!(
        ctx("/var/lib/jenkins/jobs/a/jobs/b/builds/7/log"),
        some("a/b", "7")
    );
    assert_eq!(
        ctx("/var/lib/jenkins/jobs/org/jobs/repo/branches/main/builds/3/log"),
        some("org/repo/main", "3")
    );
    assert_eq!(ctx("jobs/x/builds/12/build.xml"), some("x", "12"));
    // "builds" as a job name does not confuse the parser.
    assert_eq!(ctx("/j/jobs/builds/builds/2/log"), some("builds", "2"));
    assert_eq!(
        ctx("/var/lib/jenkins/jobs/x/builds/lastSuccessfulBuild/log"),
        None
    );
    assert_eq!(ctx("/var/lib/jenkins/builds/4/log"), None);
    assert_eq!(
        ctx("/var/lib/jenkins/workspace/x@tmp/durable-1a2b/jenkins-log.txt"),
        None
    );

    let c = jenkins_context_from_log_path(Path::new("/var/lib/jenkins/jobs/a/jobs/b/builds/7/log"))
        .unwrap();
    assert_eq!(
        c.attributes,
        owned(&[
            ("tailguard.cicd.system", "jenkins"),
            ("cicd.pipeline.name", "a/b"),
            ("cicd.pipeline.run.id", "7"),
        ])
    );
    let mut c = c;
    c.apply_jenkins_build_xml(JENKINS_BUILD_XML);
    assert_eq!(c.get("cicd.pipeline.result"), Some("failure"));
    assert_eq!(c.actor.as_deref(), Some("alice"));
}

// ------------------------------------------------------------ results

#[test]
fn task_results() {
    assert_eq!(task_result(ExitKind::Code(0)), "success");
    assert_eq!(task_result(ExitKind::Code(1)), "failure");
    assert_eq!(task_result(ExitKind::Code(130)), "failure");
    assert_eq!(task_result(ExitKind::Code(-1)), "failure");
    assert_eq!(task_result(ExitKind::Signal(2)), "cancellation");
    assert_eq!(task_result(ExitKind::Signal(15)), "cancellation");
    assert_eq!(task_result(ExitKind::Signal(9)), "error");
    assert_eq!(task_result(ExitKind::Signal(11)), "error");
    assert_eq!(task_result(ExitKind::Timeout), "timeout");
    assert_eq!(task_result(ExitKind::Cancelled), "cancellation");
    assert_eq!(task_result(ExitKind::Skipped), "skip");
}

// ------------------------------------------------------------ OIDC

fn jwt(payload: &str) -> String {
    let h = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"test-key","typ":"JWT"}"#);
    let p = URL_SAFE_NO_PAD.encode(payload);
    let sig = URL_SAFE_NO_PAD.encode(b"not-a-real-signature-but-secretish-bytes");
    format!("{h}.{p}.{sig}")
}

const GITHUB_CLAIMS: &str = r#"{"jti":"x1","sub":"repo:example-org/widget:environment:production","aud":"https://github.com/example-org","ref":"refs/heads/main","sha":"0f1e","repository":"example-org/widget","repository_owner":"example-org","environment":"production","job_workflow_ref":"example-org/widget/.github/workflows/deploy.yml@refs/heads/main","iss":"https://token.actions.githubusercontent.com","nbf":1700000000,"exp":1700000900,"iat":1700000300}"#;

fn assert_no_secret(out: &[(String, String)], token: &str) {
    let sig = token.rsplit('.').next().unwrap();
    for (k, v) in out {
        assert!(
            !k.contains(token) && !v.contains(token),
            "token leaked in {k}"
        );
        assert!(
            !v.contains(sig) && !k.contains(sig),
            "signature leaked in {k}"
        );
    }
}

#[test]
fn oidc_claims_github_token() {
    let t = jwt(GITHUB_CLAIMS);
    let out = oidc_claims(&t).unwrap();
    let want: Vec<(String, String)> = [
        (
            "tailguard.oidc.claim.iss",
            "https://token.actions.githubusercontent.com",
        ),
        (
            "tailguard.oidc.claim.sub",
            "repo:example-org/widget:environment:production",
        ),
        ("tailguard.oidc.claim.aud", "https://github.com/example-org"),
        ("tailguard.oidc.claim.repository", "example-org/widget"),
        ("tailguard.oidc.claim.ref", "refs/heads/main"),
        ("tailguard.oidc.claim.environment", "production"),
        (
            "tailguard.oidc.claim.job_workflow_ref",
            "example-org/widget/.github/workflows/deploy.yml@refs/heads/main",
        ),
        ("tailguard.oidc.claim.exp", "1700000900"),
        ("tailguard.oidc.verified", "false"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(out, want);
    assert_no_secret(&out, &t);
}

#[test]
fn oidc_claims_aud_array_and_rejects() {
    let t = jwt(r#"{"iss":"https://i","aud":["a","b"],"exp":1.7e9}"#);
    let out = oidc_claims(&t).unwrap();
    assert_eq!(
        out,
        vec![
            (
                "tailguard.oidc.claim.iss".to_string(),
                "https://i".to_string()
            ),
            ("tailguard.oidc.claim.aud".to_string(), "a,b".to_string()),
            (
                "tailguard.oidc.claim.exp".to_string(),
                "1700000000".to_string()
            ),
            ("tailguard.oidc.verified".to_string(), "false".to_string()),
        ]
    );
    assert_eq!(oidc_claims("not a token"), None);
    assert_eq!(oidc_claims("eyJhbGciOiJub25lIn0.bm90LWpzb24.x"), None);
    assert_eq!(oidc_claims(&format!("{t}.extra")), None);
    // Payload that is JSON but not an object.
    let arr = format!("eyJhbGciOiJub25lIn0.{}.", URL_SAFE_NO_PAD.encode("[1]"));
    assert_eq!(oidc_claims(&arr), None);
}

#[test]
fn oidc_from_env_github_only_records_availability() {
    let out = oidc_from_env(GITHUB_PR.iter().copied()).unwrap();
    assert_eq!(
        out,
        vec![("tailguard.oidc.available".to_string(), "true".to_string())]
    );
    for (k, v) in &out {
        assert!(!k.contains("FAKE-REQUEST") && !v.contains("FAKE-REQUEST"));
        assert!(!v.contains("pipelines.actions.example.invalid"));
    }
    assert_eq!(oidc_from_env(GITHUB_PUSH.iter().copied()), None);
    assert_eq!(oidc_from_env(NOT_CI.iter().copied()), None);
}

#[test]
fn oidc_from_env_gitlab_id_tokens() {
    let vault = jwt(
        r#"{"iss":"https://gitlab.example.com","sub":"project_path:platform/widget:ref_type:branch:ref:main","aud":"https://vault.example.com","project_path":"platform/widget","ref":"main","environment":"production","exp":1700003600}"#,
    );
    let aws = jwt(
        r#"{"iss":"https://gitlab.example.com","sub":"project_path:platform/widget:ref_type:branch:ref:main","aud":"sts.amazonaws.com","project_path":"platform/widget","ref":"main","environment":"production","exp":1700003600}"#,
    );
    let foreign = jwt(r#"{"iss":"https://evil.example.net","sub":"x","aud":"y"}"#);
    let mut env: Vec<(String, String)> = GITLAB_MR_DEPLOY
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.push(("VAULT_ID_TOKEN".into(), vault.clone()));
    env.push(("AWS_ID_TOKEN".into(), aws.clone()));
    env.push(("SOME_OTHER_JWT".into(), foreign.clone()));
    let out = oidc_from_env(env.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap();
    let want: Vec<(String, String)> = [
        ("tailguard.oidc.claim.iss", "https://gitlab.example.com"),
        (
            "tailguard.oidc.claim.sub",
            "project_path:platform/widget:ref_type:branch:ref:main",
        ),
        (
            "tailguard.oidc.claim.aud",
            "https://vault.example.com,sts.amazonaws.com",
        ),
        ("tailguard.oidc.claim.project_path", "platform/widget"),
        ("tailguard.oidc.claim.ref", "main"),
        ("tailguard.oidc.claim.environment", "production"),
        ("tailguard.oidc.claim.exp", "1700003600"),
        ("tailguard.oidc.verified", "false"),
        ("tailguard.oidc.token.env", "AWS_ID_TOKEN,VAULT_ID_TOKEN"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(out, want);
    for t in [&vault, &aws, &foreign] {
        assert_no_secret(&out, t);
    }
    assert!(!format!("{out:?}").contains("FAKE-JOB-TOKEN"));
    // Same tokens without GITLAB_CI: not scanned.
    let plain = [("VAULT_ID_TOKEN", vault.as_str())];
    assert_eq!(oidc_from_env(plain), None);
}

#[test]
fn oidc_from_env_buildkite_exported_token() {
    let t = jwt(
        r#"{"iss":"https://agent.buildkite.com","sub":"organization:example-org:pipeline:widget-ci:ref:refs/heads/main:commit:a0bd:step:test","aud":"sts.amazonaws.com","exp":1700000600}"#,
    );
    let mut env: Vec<(&str, &str)> = BUILDKITE_PR.to_vec();
    env.push(("OIDC_TOKEN", &t));
    let out = oidc_from_env(env).unwrap();
    assert_eq!(out[0].1, "https://agent.buildkite.com");
    assert_eq!(out.last().unwrap().1, "OIDC_TOKEN");
    assert_no_secret(&out, &t);
    assert_eq!(oidc_from_env(BUILDKITE_PR.iter().copied()), None);
}

// ------------------------------------------------------------ markers

fn start(name: &str, id: Option<&str>, at: Option<u64>) -> Marker {
    Marker::Start {
        name: name.into(),
        id: id.map(Into::into),
        at_unix: at,
    }
}

fn end(id: Option<&str>, at: Option<u64>) -> Marker {
    Marker::End {
        id: id.map(Into::into),
        at_unix: at,
    }
}

#[test]
fn github_markers() {
    assert_eq!(
        parse_marker(b"##[group]Run actions/checkout@v4\n"),
        Some(start("Run actions/checkout@v4", None, None))
    );
    assert_eq!(parse_marker(b"##[endgroup]"), Some(end(None, None)));
    assert_eq!(
        parse_marker(b"2024-01-01T00:00:00.0000000Z ##[group]Run actions/checkout@v4\r\n"),
        Some(start("Run actions/checkout@v4", None, Some(1_704_067_200)))
    );
    assert_eq!(
        parse_marker(b"2024-03-15T12:34:56.1234567Z ##[endgroup]"),
        Some(end(None, Some(1_710_506_096)))
    );
    assert_eq!(
        parse_marker(b"::group::Install deps"),
        Some(start("Install deps", None, None))
    );
    assert_eq!(parse_marker(b"::endgroup::"), Some(end(None, None)));
    assert_eq!(
        parse_marker_as(CiSystem::GithubActions, b"2024-01-01T00:00:00Z ::group::x"),
        Some(start("x", None, Some(1_704_067_200)))
    );
    assert_eq!(
        parse_marker(b"2024-01-01T00:00:00.0000000Z plain output"),
        None
    );
    assert_eq!(parse_marker(b"echo ::group::not at start"), None);
}

#[test]
fn gitlab_markers() {
    assert_eq!(
        parse_marker(b"section_start:1700000000:step_name[collapsed=true]\r\x1b[0KHeader text\n"),
        Some(start("Header text", Some("step_name"), Some(1_700_000_000)))
    );
    assert_eq!(
        parse_marker(b"\x1b[0Ksection_start:1700000001:build\r\x1b[0K\x1b[36;1mBuilding\x1b[0;m"),
        Some(start("Building", Some("build"), Some(1_700_000_001)))
    );
    assert_eq!(
        parse_marker(b"section_end:1700000002:step_name\r\x1b[0K\n"),
        Some(end(Some("step_name"), Some(1_700_000_002)))
    );
    assert_eq!(
        parse_marker(b"\x1b[0Ksection_end:1700000002:step_name\r\x1b[0K"),
        Some(end(Some("step_name"), Some(1_700_000_002)))
    );
    // No header: the section name stands in.
    assert_eq!(
        parse_marker(b"section_start:5:prepare_script\r\x1b[0K"),
        Some(start("prepare_script", Some("prepare_script"), Some(5)))
    );
    // The runner closes one section and opens the next on the same line.
    assert_eq!(
        parse_markers(
            b"\x1b[0Ksection_end:1700000010:prepare_executor\r\x1b[0K\x1b[0Ksection_start:1700000010:prepare_script\r\x1b[0K\x1b[0K\x1b[36;1mPreparing environment\x1b[0;m\n"
        ),
        vec![
            end(Some("prepare_executor"), Some(1_700_000_010)),
            start("Preparing environment", Some("prepare_script"), Some(1_700_000_010)),
        ]
    );
    assert_eq!(parse_marker(b"section_start:abc:x\r\x1b[0K"), None);
    assert_eq!(parse_marker(b"section_start:1:\r\x1b[0K"), None);
    assert_eq!(
        parse_marker_as(CiSystem::GithubActions, b"section_end:1:x\r\x1b[0K"),
        None
    );
}

#[test]
fn buildkite_markers() {
    assert_eq!(
        parse_marker(b"--- Running tests"),
        Some(start("Running tests", None, None))
    );
    assert_eq!(
        parse_marker(b"+++ :rust: Build\n"),
        Some(start(":rust: Build", None, None))
    );
    assert_eq!(parse_marker(b"~~~ Setup"), Some(start("Setup", None, None)));
    assert_eq!(parse_marker(b"^^^ +++"), None);
    assert_eq!(parse_marker(b"---"), None);
    assert_eq!(
        parse_marker(b"\x1b_bk;t=1700000000123\x07--- Upload artifacts"),
        Some(start("Upload artifacts", None, Some(1_700_000_000)))
    );
    assert_eq!(
        parse_marker_as(CiSystem::Buildkite, b"--- \x1b[32mColoured\x1b[0m"),
        Some(start("Coloured", None, None))
    );
    // Go test output is not a marker unless the log is Buildkite's.
    assert_eq!(
        parse_marker_as(CiSystem::GithubActions, b"--- FAIL: TestX"),
        None
    );
    assert_eq!(
        parse_marker_as(CiSystem::GitlabCi, b"--- FAIL: TestX"),
        None
    );
    assert_eq!(parse_marker_as(CiSystem::Jenkins, b"##[group]x"), None);
    assert_eq!(parse_marker(b"plain line"), None);
    assert_eq!(parse_marker(b""), None);
}

#[test]
fn ansi_stripping() {
    assert!(matches!(strip_ansi(b"plain"), Cow::Borrowed(b"plain")));
    assert_eq!(&*strip_ansi(b"\x1b[31mred\x1b[0m text"), b"red text");
    assert_eq!(&*strip_ansi(b"\x1b[0Ksection\r\x1b[0K"), b"section\r");
    assert_eq!(&*strip_ansi(b"\x1b]0;title\x07after"), b"after");
    assert_eq!(
        &*strip_ansi(b"\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\"),
        b"link"
    );
    assert_eq!(&*strip_ansi(b"\x1b_bk;t=1700000000000\x07line"), b"line");
    assert_eq!(&*strip_ansi(b"a\x1b(Bb"), b"ab");
    assert_eq!(&*strip_ansi(b"trailing\x1b"), b"trailing");
    assert_eq!(&*strip_ansi(b"\x1b[?25lhidden\x1b[?25h"), b"hidden");
    assert_eq!(
        &*strip_ansi("ünï\x1b[1mcode\x1b[0m".as_bytes()),
        "ünïcode".as_bytes()
    );
}

// ------------------------------------------------------------ log globs

#[test]
fn runner_log_globs_defaults() {
    let g = default_runner_log_globs(&env_of(NOT_CI));
    let want: Vec<(CiSystem, String)> = [
        (
            CiSystem::GithubActions,
            "/home/*/actions-runner/_diag/Worker_*.log",
        ),
        (
            CiSystem::GithubActions,
            "/home/*/actions-runner/_diag/pages/*.log",
        ),
        (
            CiSystem::GithubActions,
            "/opt/actions-runner/_diag/Worker_*.log",
        ),
        (
            CiSystem::GithubActions,
            "/opt/actions-runner/_diag/pages/*.log",
        ),
        (
            CiSystem::GithubActions,
            "/actions-runner/_diag/Worker_*.log",
        ),
        (CiSystem::GithubActions, "/actions-runner/_diag/pages/*.log"),
        (CiSystem::Jenkins, "/var/lib/jenkins/jobs/**/builds/*/log"),
        (
            CiSystem::Jenkins,
            "/var/lib/jenkins/workspace/*@tmp/durable-*/jenkins-log.txt",
        ),
    ]
    .iter()
    .map(|(s, p)| (*s, p.to_string()))
    .collect();
    assert_eq!(g, want);
}

#[test]
fn runner_log_globs_from_env() {
    let env = |k: &str| {
        match k {
            "RUNNER_ROOT" => Some("/srv/gh-runner/"),
            "JENKINS_HOME" => Some("/data/jenkins"),
            "WORKSPACE" => Some("/home/jenkins/agent/workspace/platform_widget_PR-24"),
            "BUILDKITE_JOB_LOG_TMPFILE" => Some("/tmp/buildkite-job-log-123.log"),
            _ => None,
        }
        .map(str::to_string)
    };
    let want: Vec<(CiSystem, String)> = [
        (CiSystem::GithubActions, "/srv/gh-runner/_diag/Worker_*.log"),
        (CiSystem::GithubActions, "/srv/gh-runner/_diag/pages/*.log"),
        (CiSystem::Jenkins, "/data/jenkins/jobs/**/builds/*/log"),
        (
            CiSystem::Jenkins,
            "/data/jenkins/workspace/*@tmp/durable-*/jenkins-log.txt",
        ),
        (
            CiSystem::Jenkins,
            "/home/jenkins/agent/workspace/*@tmp/durable-*/jenkins-log.txt",
        ),
        (CiSystem::Buildkite, "/tmp/buildkite-job-log-123.log"),
    ]
    .iter()
    .map(|(s, p)| (*s, p.to_string()))
    .collect();
    assert_eq!(default_runner_log_globs(&env), want);
}

#[test]
fn github_runner_file_from_real_file() {
    // The `files` callback is the caller's I/O; show it working on disk.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("actions-runner");
    std::fs::create_dir_all(root.join("_work/widget")).unwrap();
    std::fs::write(root.join(".runner"), GITHUB_RUNNER_FILE).unwrap();
    let ws = root.join("_work/widget").to_str().unwrap().to_string();
    let env = move |k: &str| match k {
        "RUNNER_WORKSPACE" => Some(ws.clone()),
        _ => env_of(GITHUB_PUSH)(k).filter(|_| k != "RUNNER_WORKSPACE"),
    };
    let files = |p: &Path| std::fs::read_to_string(p).ok();
    let c = detect(&env, &files).unwrap();
    assert_eq!(
        c.worker,
        owned(&[
            ("cicd.worker.id", "17"),
            ("cicd.worker.name", "GitHub Actions 7"),
            ("tailguard.cicd.worker.pool", "Default"),
        ])
    );
}

#[test]
fn oidc_from_env_never_decodes_github_request_credential() {
    // Even if the request credential were JWT-shaped with GitHub's issuer,
    // it is a credential to mint tokens, not the job's identity token.
    let cred = jwt(r#"{"iss":"https://token.actions.githubusercontent.com","sub":"x"}"#);
    let env = [
        ("GITHUB_ACTIONS", "true"),
        (
            "ACTIONS_ID_TOKEN_REQUEST_URL",
            "https://pipelines.example.invalid/idtoken",
        ),
        ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", cred.as_str()),
    ];
    let out = oidc_from_env(env).unwrap();
    assert_eq!(
        out,
        vec![("tailguard.oidc.available".to_string(), "true".to_string())]
    );
    assert_no_secret(&out, &cred);
}

#[test]
fn oidc_oversized_or_odd_values_are_ignored() {
    let big = format!("eyJ{}.e30.", "A".repeat(20_000));
    assert_eq!(oidc_claims(&big), None);
    let env = [
        ("GITLAB_CI", "true"),
        ("CI_SERVER_URL", "https://gitlab.example.com/"),
        ("BIG", big.as_str()),
        ("TEXT", "eyJ but not a token at all"),
    ];
    assert_eq!(oidc_from_env(env), None);
}
