//! `tailguard exec` wrapping real processes, with a real agent receiving
//! over its unix socket and writing to a file sink.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Stdio;

use common::agent::{Agent, FLEET_KEY, fingerprint_of, span_name_starts_with, token};
use common::*;

#[test]
fn a_failing_step_keeps_its_exit_code_and_reaches_the_agent_with_a_failure_span() {
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(dir.path());
    let out = agent.exec(dir.path(), &["sh", "-c", "echo hi; echo oops >&2; exit 3"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(stdout(&out), "hi\n");
    assert!(stderr(&out).contains("oops\n"), "{}", stderr(&out));

    let events = agent.events_after_span();
    let span = events.iter().find(|e| e.get("span").is_some()).unwrap();
    assert_eq!(span["span"]["name"], "RUN sh");
    assert_eq!(span["span"]["status"], "error");
    assert_eq!(
        span["attributes"]["cicd.pipeline.task.run.result"],
        "failure"
    );
    assert_eq!(span["attributes"]["process.exit.code"], 3);
    let lines: Vec<_> = events.iter().filter(|e| e.get("body").is_some()).collect();
    let bodies: Vec<&str> = lines.iter().map(|e| e["body"].as_str().unwrap()).collect();
    assert_eq!(bodies.len(), 2);
    assert!(bodies.contains(&"hi") && bodies.contains(&"oops"));
    for line in lines {
        assert_eq!(
            line["trace_id"], span["trace_id"],
            "lines belong to the step's trace"
        );
        assert_eq!(
            line["span_id"], span["span_id"],
            "lines belong to the step's span"
        );
    }
}

#[test]
fn traceparent_is_adopted_and_passed_to_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(dir.path());
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let out = tailguard(dir.path())
        .env("TRACEPARENT", parent)
        .arg("exec")
        .arg("--socket")
        .arg(&agent.socket)
        .args([
            "--name",
            "unit tests",
            "--",
            "sh",
            "-c",
            "echo \"$TRACEPARENT\"",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let events = agent.events_after_span();
    let span = events.iter().find(|e| e.get("span").is_some()).unwrap();
    assert_eq!(span["span"]["name"], "RUN unit tests");
    assert_eq!(span["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(span["span"]["parent_span_id"], "00f067aa0ba902b7");
    assert_eq!(
        span["attributes"]["cicd.pipeline.task.run.result"],
        "success"
    );
    let child_saw = stdout(&out);
    assert_eq!(
        child_saw.trim(),
        format!(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01",
            span["span_id"].as_str().unwrap()
        )
    );
}

#[test]
fn output_passes_through_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(dir.path());
    let out = agent.exec(
        dir.path(),
        &[
            "sh",
            "-c",
            "printf 'a\\r\\nbin:\\377\\376\\nno newline at end'",
        ],
    );
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(out.stdout, b"a\r\nbin:\xff\xfe\nno newline at end");
    let events = agent.events_after_span();
    let raw = events
        .iter()
        .find(|e| e["body"].as_str().is_some_and(|b| b.starts_with("bin:")))
        .unwrap();
    assert!(
        raw.get("body_base64").is_some(),
        "invalid UTF-8 kept exactly"
    );
    assert!(events.iter().any(|e| e["body"] == "no newline at end"));
}

#[test]
fn a_command_killed_by_a_signal_kills_the_wrapper_the_same_way() {
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(dir.path());
    let out = agent.exec(dir.path(), &["sh", "-c", "kill -TERM $$"]);
    assert_eq!(out.status.signal(), Some(15), "{:?}", out.status);
    let events = agent.events_after_span();
    let span = events.iter().find(|e| e.get("span").is_some()).unwrap();
    assert_eq!(
        span["attributes"]["cicd.pipeline.task.run.result"],
        "cancellation"
    );
}

#[test]
fn signals_to_the_wrapper_reach_the_command() {
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(dir.path());
    let mut child = tailguard(dir.path())
        .arg("exec")
        .arg("--socket")
        .arg(&agent.socket)
        .args([
            "--",
            "sh",
            "-c",
            "trap 'echo got-term; exit 42' TERM; echo ready; while :; do sleep 0.05; done",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    assert_eq!(first, "ready\n");
    signal(&child, "TERM");
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert_eq!(status.code(), Some(42));
    assert_eq!(rest, "got-term\n");
}

#[test]
fn without_an_agent_the_step_still_runs_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = tailguard(dir.path())
        .arg("exec")
        .arg("--socket")
        .arg(dir.path().join("nobody-listens.sock"))
        .args(["--", "sh", "-c", "echo still-works; exit 7"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(stdout(&out), "still-works\n");
    assert!(stderr(&out).contains("no agent at"), "{}", stderr(&out));
}

#[test]
fn without_an_agent_it_exports_to_the_collector_in_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let receiver = common::otlp::grpc_receiver();
    let out = tailguard(dir.path())
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.grpc_url())
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .arg("exec")
        .arg("--socket")
        .arg(dir.path().join("nobody-listens.sock"))
        .args(["--", "sh", "-c", "echo direct"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(receiver.bodies(), ["direct"]);
    let spans = receiver.spans();
    assert_eq!(spans.len(), 1);
    assert_eq!(
        spans[0].attribute("cicd.pipeline.task.run.result"),
        Some("success")
    );
    assert_eq!(receiver.records()[0].trace_id, spans[0].trace_id);
}

#[test]
fn a_missing_command_exits_127() {
    let dir = tempfile::tempdir().unwrap();
    let out = tailguard(dir.path())
        .arg("exec")
        .arg("--socket")
        .arg(dir.path().join("none.sock"))
        .args(["--", "no-such-command-tailguard-test"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
    assert!(stderr(&out).contains("cannot run no-such-command-tailguard-test"));
}

#[test]
fn a_github_actions_step_carries_its_job_context() {
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(dir.path());
    let out = tailguard(dir.path())
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_WORKFLOW", "CI")
        .env("GITHUB_RUN_ID", "8812345678")
        .env("GITHUB_RUN_ATTEMPT", "2")
        .env("GITHUB_JOB", "unit-tests")
        .env("GITHUB_SERVER_URL", "https://github.com")
        .env("GITHUB_REPOSITORY", "acme/widgets")
        .env("GITHUB_REF", "refs/pull/42/merge")
        .env("GITHUB_REF_NAME", "42/merge")
        .env("GITHUB_HEAD_REF", "feature/faster")
        .env("GITHUB_SHA", "0123456789abcdef0123456789abcdef01234567")
        .env("GITHUB_ACTOR", "octocat")
        .env("RUNNER_NAME", "runner-7")
        .env(
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
            "request-credential-never-exported",
        )
        .env(
            "ACTIONS_ID_TOKEN_REQUEST_URL",
            "https://token.example.invalid/req",
        )
        .arg("exec")
        .arg("--socket")
        .arg(&agent.socket)
        .args(["--", "sh", "-c", "echo built"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let events = agent.events_after_span();
    let span = events.iter().find(|e| e.get("span").is_some()).unwrap();
    assert_eq!(span["span"]["name"], "RUN unit-tests");
    let line = events.iter().find(|e| e["body"] == "built").unwrap();
    for event in [span, line] {
        let a = &event["attributes"];
        assert_eq!(a["cicd.pipeline.name"], "CI");
        assert_eq!(a["cicd.pipeline.run.id"], "8812345678");
        assert_eq!(
            a["cicd.pipeline.run.url.full"],
            "https://github.com/acme/widgets/actions/runs/8812345678/attempts/2"
        );
        assert_eq!(a["cicd.pipeline.task.name"], "unit-tests");
        assert_eq!(
            a["vcs.repository.url.full"],
            "https://github.com/acme/widgets"
        );
        assert_eq!(a["vcs.ref.head.name"], "feature/faster");
        assert_eq!(a["vcs.change.id"], "42");
        assert_eq!(a["tailguard.cicd.actor"], "octocat");
        assert_eq!(a["tailguard.oidc.available"], "true");
    }
    let all = std::fs::read_to_string(&agent.out).unwrap();
    assert!(
        !all.contains("request-credential-never-exported"),
        "the OIDC request token never leaves the job"
    );
}

#[test]
fn a_leaked_token_is_masked_in_the_passthrough_and_redacted_at_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let agent = Agent::start(dir.path());
    let script = format!("echo hi; echo {} >&2; exit 3", token());
    let out = tailguard(dir.path())
        .env("TAILGUARD_FINGERPRINT_KEY", FLEET_KEY)
        .arg("exec")
        .arg("--socket")
        .arg(&agent.socket)
        .args(["--", "sh", "-c", &script])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(stdout(&out), "hi\n");
    let err = stderr(&out);
    assert!(
        !err.contains(&token()),
        "the CI log never receives the token: {err}"
    );
    assert!(err.starts_with("[REDACTED:github-pat:"), "{err}");

    // The finding's span and the step's arrive in either order.
    let events = agent.events_once("the step's and the finding's spans", |events| {
        events.iter().any(|e| span_name_starts_with(e, "RUN "))
            && events.iter().any(|e| span_name_starts_with(e, "FINDING"))
    });
    let all = std::fs::read_to_string(&agent.out).unwrap();
    assert!(
        !all.contains(&token()),
        "the agent's outputs never hold the token"
    );
    let step = events
        .iter()
        .find(|e| e["span"]["name"] == "RUN sh")
        .unwrap();
    assert_eq!(
        step["attributes"]["cicd.pipeline.task.run.result"],
        "failure"
    );
    let finding = events
        .iter()
        .find(|e| span_name_starts_with(e, "FINDING"))
        .expect("a finding span");
    assert_eq!(
        finding["trace_id"], step["trace_id"],
        "the finding is in the step's trace"
    );
    assert_eq!(finding["span"]["parent_span_id"], step["span_id"]);
    let fp = finding["attributes"]["tailguard.finding.fingerprint"]
        .as_str()
        .unwrap();
    assert!(
        err.contains(fp),
        "passthrough and agent agree on the fingerprint"
    );
}

#[test]
fn secret_env_values_and_add_mask_values_are_masked() {
    let dir = tempfile::tempdir().unwrap();
    let out = tailguard(dir.path())
        .env("DEPLOY_PASSWORD", "hunter2-but-longer")
        .arg("exec")
        .arg("--socket")
        .arg(dir.path().join("none.sock"))
        .args([
            "--",
            "sh",
            "-c",
            "echo pw=$DEPLOY_PASSWORD; echo '::add-mask::s3cr3t-value-42'; echo later s3cr3t-value-42; echo plain",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    assert!(!text.contains("hunter2-but-longer"), "{text}");
    assert!(!text.contains("s3cr3t-value-42"), "{text}");
    assert!(text.ends_with("plain\n"), "{text}");
    assert_eq!(text.lines().count(), 4);
}

#[test]
fn an_inventory_secret_seen_in_job_output_names_its_owner_tier_and_revocation() {
    let dir = tempfile::tempdir().unwrap();
    // A value no rule would flag: only the inventory knows it is a secret.
    let secret = "Vq9xT2pLmR8kZ4wNc7Hy3Jd";
    let fp = fingerprint_of(dir.path(), secret, FLEET_KEY);
    assert_eq!(fp.len(), 64);
    let inventory = format!(
        r##"
[identities.deploy-bot]
kind = "bot_token"
owner = {{ team = "platform", contact = "#platform-oncall" }}
environment = "prod"
privilege_tier = "tier0"
secrets = {{ env = ["DEPLOY_BOT_TOKEN"], fingerprints = ["{fp}"] }}
revocation = {{ command = ["/usr/local/bin/rotate-token", "deploy-bot"], runbook = "https://runbooks.example/deploy-bot" }}
"##
    );
    let agent = Agent::start_with(dir.path(), &inventory, None);
    let script = format!("echo deploying with {secret} now");
    let out = tailguard(dir.path())
        .env("DEPLOY_BOT_TOKEN", "placeholder-not-the-secret")
        .arg("exec")
        .arg("--socket")
        .arg(&agent.socket)
        .args(["--", "sh", "-c", &script])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    let events = agent.events_after_span();
    let finding = events
        .iter()
        .find(|e| {
            e["span"]["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("FINDING"))
        })
        .expect("the inventory secret is found by fingerprint");
    let a = &finding["attributes"];
    assert_eq!(a["nhi.identity.id"], "deploy-bot");
    assert_eq!(a["nhi.owner.team"], "platform");
    assert_eq!(a["nhi.owner.contact"], "#platform-oncall");
    assert_eq!(a["nhi.privilege.tier"], "tier0");
    assert_eq!(a["nhi.revocation.method"], "command");
    assert_eq!(
        a["nhi.revocation.runbook"],
        "https://runbooks.example/deploy-bot"
    );
    assert!(
        a["tailguard.finding.method"]
            .as_str()
            .unwrap()
            .starts_with("known_fingerprint")
    );
    let all = std::fs::read_to_string(&agent.out).unwrap();
    assert!(
        !all.contains(secret),
        "the agent never emits the inventory secret"
    );
    // The job holds the identity's variable, so all its events are tagged.
    let line = events
        .iter()
        .find(|e| {
            e["body"]
                .as_str()
                .is_some_and(|b| b.starts_with("deploying"))
        })
        .unwrap();
    assert_eq!(line["attributes"]["nhi.identity.id"], "deploy-bot");
    assert_eq!(line["attributes"]["nhi.environment"], "prod");
}

fn github_step(dir: &Path, socket: &Path, job: &str, script: &str) -> std::process::Output {
    tailguard(dir)
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_WORKFLOW", "CI")
        .env("GITHUB_RUN_ID", "777")
        .env("GITHUB_RUN_ATTEMPT", "1")
        .env("GITHUB_JOB", job)
        .env("GITHUB_SERVER_URL", "https://github.com")
        .env("GITHUB_REPOSITORY", "acme/widgets")
        .env_remove("TRACEPARENT")
        .arg("exec")
        .arg("--socket")
        .arg(socket)
        .args(["--", "sh", "-c", script])
        .output()
        .unwrap()
}

#[test]
fn steps_of_a_run_share_a_trace_under_one_span_per_job() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("exec.sock");
    let out = dir.path().join("events.jsonl");
    let config = write(
        &dir.path().join("agent.toml"),
        &format!(
            "[sources.jobs]\ntype = \"ci_exec\"\nsocket = \"{}\"\njob_idle_timeout = \"300ms\"\n\n[sinks.out]\ntype = \"file\"\ninputs = [\"jobs\"]\npath = \"{}\"\n",
            socket.display(),
            out.display()
        ),
    );
    let mut agent = spawn_run(dir.path(), &config);
    wait_for("the socket", || socket.exists());
    assert_eq!(
        github_step(dir.path(), &socket, "build", "echo compiling")
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        github_step(dir.path(), &socket, "build", "exit 1")
            .status
            .code(),
        Some(1)
    );
    assert_eq!(
        github_step(dir.path(), &socket, "lint", "echo linting")
            .status
            .code(),
        Some(0)
    );
    let spans = || -> Vec<serde_json::Value> {
        json_lines(&out)
            .into_iter()
            .filter(|e| e.get("span").is_some())
            .collect()
    };
    wait_for("two job spans", || {
        spans()
            .iter()
            .filter(|s| s["span"]["parent_span_id"].is_null())
            .count()
            == 2
    });
    let _ = agent.kill();
    let _ = agent.wait();

    let spans = spans();
    let job = |name: &str| {
        spans
            .iter()
            .find(|s| s["span"]["name"] == name && s["span"]["parent_span_id"].is_null())
            .unwrap()
            .clone()
    };
    let (build, lint) = (job("build"), job("lint"));
    assert_eq!(
        build["trace_id"], lint["trace_id"],
        "one trace per pipeline run"
    );
    assert_eq!(
        build["attributes"]["cicd.pipeline.task.run.result"],
        "failure"
    );
    assert_eq!(
        lint["attributes"]["cicd.pipeline.task.run.result"],
        "success"
    );
    let steps_of = |job: &serde_json::Value| {
        spans
            .iter()
            .filter(|s| s["span"]["parent_span_id"] == job["span_id"])
            .count()
    };
    assert_eq!(
        steps_of(&build),
        2,
        "both build steps are children of the build job"
    );
    assert_eq!(steps_of(&lint), 1);
}
