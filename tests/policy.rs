//! The `policy` transform and its responders, run for real: jobs wrapped
//! with `tailguard exec` feed an agent (`ci_exec` -> `redact` -> `policy`
//! -> file sink) whose actions run real scripts and post to a real server.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};

use common::agent::{Agent, FLEET_KEY, token};
use common::*;

/// Waits for a span named `name` and returns it.
fn span(agent: &Agent, name: &str) -> serde_json::Value {
    let mut found = None;
    wait_for(name, || {
        found = agent
            .events()
            .into_iter()
            .find(|e| e["span"]["name"] == name);
        found.is_some()
    });
    found.unwrap()
}

/// Every span whose name is `name`, once the step spans of `steps`
/// steps have arrived (and so everything before them).
fn spans_after_steps(agent: &Agent, steps: usize, name: &str) -> Vec<serde_json::Value> {
    wait_for("the step spans", || {
        agent
            .events()
            .iter()
            .filter(|e| {
                e["span"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("RUN "))
            })
            .count()
            >= steps
    });
    agent
        .events()
        .into_iter()
        .filter(|e| e["span"]["name"] == name)
        .collect()
}

/// A GitHub Actions step in `repository` on branch `branch`, with extra
/// environment.
fn github_step(
    dir: &Path,
    agent: &Agent,
    repository: &str,
    branch: &str,
    env: &[(&str, &str)],
    script: &str,
) -> Output {
    let mut cmd = tailguard(dir);
    cmd.env("GITHUB_ACTIONS", "true")
        .env("GITHUB_WORKFLOW", "deploy")
        .env("GITHUB_RUN_ID", "777")
        .env("GITHUB_RUN_ATTEMPT", "1")
        .env("GITHUB_JOB", "release")
        .env("GITHUB_SERVER_URL", "https://github.com")
        .env("GITHUB_REPOSITORY", repository)
        .env("GITHUB_REF", format!("refs/heads/{branch}"))
        .env("GITHUB_REF_NAME", branch)
        .env_remove("GITHUB_HEAD_REF")
        .env_remove("TRACEPARENT")
        .env("TAILGUARD_FINGERPRINT_KEY", FLEET_KEY);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .arg("exec")
        .arg("--socket")
        .arg(&agent.socket)
        .args(["--", "sh", "-c", script])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    out
}

fn fingerprint_of(dir: &Path, secret: &str) -> String {
    common::agent::fingerprint_of(dir, secret, FLEET_KEY)
}

/// A value no rule flags: only the inventory knows it is a secret.
const SECRET: &str = "Vq9xT2pLmR8kZ4wNc7Hy3Jd";

/// Copies the argument-recording script into `dir`; returns its path and
/// where it writes.
fn recorder(dir: &Path) -> (PathBuf, PathBuf) {
    let script = dir.join("bin").join("record-args");
    std::fs::create_dir_all(script.parent().unwrap()).unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/respond/record-args.sh"),
        &script,
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = PathBuf::from(format!("{}.out", script.display()));
    (script, out)
}

/// An inventory identity `id` owning `SECRET`, rotated by `script`.
fn inventory(dir: &Path, id: &str, script: &Path, allowed: &str) -> String {
    let fp = fingerprint_of(dir, SECRET);
    format!(
        r##"
[identities.'{id}']
kind = "bot_token"
owner = {{ team = "platform", contact = "#platform-oncall" }}
environment = "prod"
privilege_tier = "tier0"
allowed = {{ {allowed} }}
secrets = {{ env = ["DEPLOY_BOT_TOKEN"], fingerprints = ["{fp}"] }}
revocation = {{ command = ["{script}", "{{identity}}", "{{fingerprint}}", "{{rule}}", "{{repository}}", "--ref={{ref}}"], runbook = "https://runbooks.example/deploy-bot" }}
"##,
        script = script.display()
    )
}

/// An agent with `top` whose policy transform may run `script`.
fn agent_running(dir: &Path, top: &str, script: &Path) -> Agent {
    Agent::start_with(
        dir,
        top,
        Some(&format!("allowed_executables = [\"{}\"]", script.display())),
    )
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_leaked_inventory_secret_is_rotated_by_a_real_script_with_an_exact_argument_vector() {
    let dir = tempfile::tempdir().unwrap();
    let (script, args_file) = recorder(dir.path());
    let top = format!(
        "{}\n[policies.rotate-leaks]\ndetection = \"secret_leak\"\nidentity = [\"deploy-*\"]\nprivilege_tier = [\"tier0\"]\nseverity = \"critical\"\nactions = [\"annotate\", \"rotate\"]\n",
        inventory(dir.path(), "deploy-bot", &script, "")
    );
    let agent = agent_running(dir.path(), &top, &script);
    github_step(
        dir.path(),
        &agent,
        "acme/widgets",
        "main",
        &[],
        &format!("echo deploying with {SECRET}"),
    );
    let action = span(&agent, "ACTION rotate");
    assert_eq!(
        action["attributes"]["tailguard.action.outcome"], "done",
        "{action}"
    );
    assert!(action["attributes"]["tailguard.action.time_to_act_ms"].is_number());
    let alert = span(&agent, "ALERT secret_leak");
    let a = &alert["attributes"];
    assert_eq!(a["tailguard.alert.severity"], "critical");
    assert_eq!(a["tailguard.alert.policy"], "rotate-leaks");
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
        a["security_rule.reference"]
            .as_str()
            .unwrap()
            .starts_with("NHI2")
    );
    assert!(a["tailguard.alert.time_to_detect_ms"].is_number());
    let fp = a["tailguard.finding.fingerprint"].as_str().unwrap();
    let rule = a["tailguard.finding.rule_id"].as_str().unwrap();
    assert_eq!(action["span"]["parent_span_id"], alert["span_id"]);
    wait_for("the script's record", || args_file.exists());
    assert_eq!(
        read_lines(&args_file),
        ["deploy-bot", fp, rule, "acme/widgets", "--ref=main"]
    );
    let all = std::fs::read_to_string(&agent.out).unwrap();
    assert!(!all.contains(SECRET), "no output holds the secret");
}

#[test]
fn a_slow_rotation_does_not_hold_up_the_lines_after_the_alert() {
    let dir = tempfile::tempdir().unwrap();
    // A rotation that waits (30 s at most) until the test lets it finish.
    let script = dir.path().join("bin/slow-rotate");
    let release = dir.path().join("release-rotation");
    write(
        &script,
        &format!(
            "#!/bin/sh\ni=0\nwhile [ ! -e '{}' ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done\n",
            release.display()
        ),
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let top = format!(
        "{}\n[policies.rotate-leaks]\ndetection = \"secret_leak\"\nidentity = [\"deploy-*\"]\nseverity = \"critical\"\nactions = [\"rotate\"]\n",
        inventory(dir.path(), "deploy-bot", &script, "")
    );
    let agent = agent_running(dir.path(), &top, &script);
    github_step(
        dir.path(),
        &agent,
        "acme/widgets",
        "main",
        &[],
        &format!("echo deploying with {SECRET}; echo after the leak"),
    );
    // With actions run inline, this line would wait behind the rotation.
    wait_for("the line after the leak, while the rotation runs", || {
        agent.events().iter().any(|e| e["body"] == "after the leak")
    });
    span(&agent, "ALERT secret_leak");
    assert!(
        !agent
            .events()
            .iter()
            .any(|e| e["span"]["name"] == "ACTION rotate"),
        "the rotation cannot have finished yet"
    );
    std::fs::write(&release, "").unwrap();
    let action = span(&agent, "ACTION rotate");
    assert_eq!(action["attributes"]["tailguard.action.outcome"], "done");
}

#[test]
fn shell_metacharacters_in_job_context_and_identity_stay_one_argument_each() {
    let dir = tempfile::tempdir().unwrap();
    let (script, args_file) = recorder(dir.path());
    let pwned = dir.path().join("pwned");
    let nasty = format!(
        "; rm -rf / $(touch {p}) `touch {p}` && touch {p} | x > {p}",
        p = pwned.display()
    );
    let id = format!("deploy-bot{nasty}");
    let repository = format!("acme/widgets{nasty}");
    let branch = format!("main{nasty}");
    let top = format!(
        "{}\n[policies.rotate-leaks]\nactions = [\"rotate\"]\ndetection = \"secret_leak\"\n",
        inventory(dir.path(), &id, &script, "")
    );
    let agent = agent_running(dir.path(), &top, &script);
    github_step(
        dir.path(),
        &agent,
        &repository,
        &branch,
        &[],
        &format!("echo deploying with {SECRET}"),
    );
    let action = span(&agent, "ACTION rotate");
    assert_eq!(
        action["attributes"]["tailguard.action.outcome"], "done",
        "{action}"
    );
    let alert = span(&agent, "ALERT secret_leak");
    let fp = alert["attributes"]["tailguard.finding.fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    let rule = alert["attributes"]["tailguard.finding.rule_id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_for("the script's record", || args_file.exists());
    assert_eq!(
        read_lines(&args_file),
        [id, fp, rule, repository, format!("--ref={branch}")],
        "each placeholder is exactly one argument, byte for byte"
    );
    assert!(!pwned.exists(), "nothing went through a shell");
}

#[test]
fn a_masked_fingerprint_is_masked_by_the_wrapper_for_the_rest_of_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let (script, _) = recorder(dir.path());
    let top = format!(
        "{}\n[policies.mask-leaks]\ndetection = \"secret_leak\"\nidentity = [\"deploy-*\"]\nseverity = \"high\"\nactions = [\"annotate\", \"mask\"]\n",
        inventory(dir.path(), "deploy-bot", &script, "")
    );
    let agent = Agent::start_with(dir.path(), &top, Some(""));
    let mask_list = dir.path().join("mask-fingerprints.json");
    // The step prints the secret, waits (30 s at most) until the agent's
    // mask responder has listed it, and prints it again.
    let out = github_step(
        dir.path(),
        &agent,
        "acme/widgets",
        "main",
        &[],
        &format!(
            "echo first {SECRET}; i=0; while [ ! -s '{list}' ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done; echo second {SECRET}",
            list = mask_list.display()
        ),
    );
    let printed = stdout(&out);
    // Only the inventory knows this value, by fingerprint: the wrapper
    // cannot tell it is a secret until the agent says so.
    assert!(printed.contains(&format!("first {SECRET}")), "{printed}");
    assert!(mask_list.exists(), "the mask responder never ran");
    let second = printed.lines().find(|l| l.starts_with("second ")).unwrap();
    assert!(!second.contains(SECRET), "{printed}");
    assert!(second.contains("[REDACTED:"), "{printed}");
}

/// A JWT (unsigned, fake) whose `exp` is `expires_in` seconds from now.
fn jwt_expiring_in(expires_in: i64) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    format!(
        "{}.{}.{}",
        b64.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
        b64.encode(format!(
            r#"{{"sub":"deploy-bot","iat":{now},"exp":{}}}"#,
            now + expires_in
        )),
        "Qm9vX3NpZ25hdHVyZV9ub3RfcmVhbF8xMjM0NTY3ODkw"
    )
}

#[test]
fn a_jwt_valid_for_years_is_a_long_lived_credential_and_one_valid_for_an_hour_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let top = "[policies.lifetime]\ndetection = \"long_lived_credential\"\nmin_confidence = \"low\"\nseverity = \"medium\"\n";
    let agent = Agent::start_with(dir.path(), top, Some(""));
    let script = format!(
        "echo \"Authorization: Bearer {}\"; echo \"Authorization: Bearer {}\"",
        jwt_expiring_in(3600),
        jwt_expiring_in(5 * 365 * 86400)
    );
    github_step(dir.path(), &agent, "acme/widgets", "main", &[], &script);
    let alerts = spans_after_steps(&agent, 1, "ALERT long_lived_credential");
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let reason = alerts[0]["attributes"]["tailguard.alert.reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(reason.contains("expires in 182"), "{}", alerts[0]);
}

#[test]
fn dry_run_and_require_approval_run_nothing() {
    for (mode, outcome) in [
        ("dry_run = true", "skipped_dry_run"),
        ("require_approval = true", "awaiting_approval"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (script, args_file) = recorder(dir.path());
        let top = format!(
            "{}\n[policies.careful]\n{mode}\nactions = [\"annotate\", \"rotate\", \"quarantine\"]\n",
            inventory(dir.path(), "deploy-bot", &script, "")
        );
        let agent = Agent::start_with(
            dir.path(),
            &top,
            Some(&format!(
                "allowed_executables = [\"{s}\"]\nquarantine_command = [\"{s}\", \"quarantine\"]",
                s = script.display()
            )),
        );
        github_step(
            dir.path(),
            &agent,
            "acme/widgets",
            "main",
            &[],
            &format!("echo deploying with {SECRET}"),
        );
        for name in ["ACTION rotate", "ACTION quarantine"] {
            let action = span(&agent, name);
            assert_eq!(
                action["attributes"]["tailguard.action.outcome"], outcome,
                "{mode}: {action}"
            );
            assert!(action["attributes"]["tailguard.action.proposal"].is_string());
        }
        let annotate = span(&agent, "ACTION annotate");
        assert_eq!(annotate["attributes"]["tailguard.action.outcome"], "done");
        // Everything after the alert has been written: the step span.
        spans_after_steps(&agent, 1, "ACTION rotate");
        assert!(!args_file.exists(), "{mode}: the script never ran");
    }
}

#[test]
fn an_identity_used_from_a_forbidden_branch_is_out_of_context() {
    let dir = tempfile::tempdir().unwrap();
    let (script, _) = recorder(dir.path());
    let top = format!(
        "{}\n[policies.isolation]\ndetection = [\"identity_out_of_context\"]\nseverity = \"high\"\nactions = [\"annotate\"]\n",
        inventory(
            dir.path(),
            "deploy-bot",
            &script,
            r#"repositories = ["acme/*"], refs = ["refs/heads/main"], pipelines = ["deploy"]"#
        )
    );
    let agent = Agent::start_with(dir.path(), &top, Some(""));
    // Allowed: main.
    github_step(
        dir.path(),
        &agent,
        "acme/widgets",
        "main",
        &[("DEPLOY_BOT_TOKEN", "placeholder")],
        &format!("echo deploying with {SECRET}"),
    );
    // Forbidden: a feature branch.
    github_step(
        dir.path(),
        &agent,
        "acme/widgets",
        "feature/exfil",
        &[("DEPLOY_BOT_TOKEN", "placeholder")],
        &format!("echo deploying with {SECRET}"),
    );
    let alerts = spans_after_steps(&agent, 2, "ALERT identity_out_of_context");
    assert_eq!(
        alerts.len(),
        1,
        "only the feature branch is outside: {alerts:?}"
    );
    let a = &alerts[0]["attributes"];
    assert_eq!(a["nhi.identity.id"], "deploy-bot");
    assert_eq!(a["vcs.ref.head.name"], "feature/exfil");
    assert_eq!(a["tailguard.alert.policy"], "isolation");
    assert_eq!(a["tailguard.alert.severity"], "high");
    assert!(
        a["security_rule.reference"]
            .as_str()
            .unwrap()
            .starts_with("NHI8")
    );
    assert!(
        a["tailguard.alert.outside"]
            .as_str()
            .unwrap()
            .contains("ref feature/exfil"),
        "{a}"
    );
}

#[test]
fn one_fingerprint_in_two_repositories_is_a_spread() {
    let dir = tempfile::tempdir().unwrap();
    let top = "[policies.reuse]\ndetection = \"fingerprint_spread\"\nrule = [\"github-*\"]\nmin_confidence = \"low\"\nseverity = \"high\"\nactions = [\"annotate\", \"mask\"]\n";
    let agent = Agent::start_with(dir.path(), top, Some(""));
    let script = format!("echo token {}", token());
    github_step(dir.path(), &agent, "acme/widgets", "main", &[], &script);
    github_step(dir.path(), &agent, "acme/gadgets", "main", &[], &script);
    let alerts = spans_after_steps(&agent, 2, "ALERT fingerprint_spread");
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let a = &alerts[0]["attributes"];
    assert_eq!(a["tailguard.alert.spread.dimension"], "repository");
    assert_eq!(
        a["tailguard.alert.spread.values"],
        "acme/widgets,acme/gadgets"
    );
    assert!(
        a["security_rule.reference"]
            .as_str()
            .unwrap()
            .starts_with("NHI9")
    );
    let fp = a["tailguard.finding.fingerprint"].as_str().unwrap();
    let mask = span(&agent, "ACTION mask");
    assert_eq!(mask["attributes"]["tailguard.action.outcome"], "done");
    let masked: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("mask-fingerprints.json")).unwrap())
            .unwrap();
    assert_eq!(masked["fingerprints"], serde_json::json!([fp]));
    // The store remembers both repositories.
    let state = std::fs::read_to_string(dir.path().join("policy/fingerprints.json")).unwrap();
    assert!(state.contains("acme/gadgets") && !state.contains(&token()));
    let all = std::fs::read_to_string(&agent.out).unwrap();
    assert!(!all.contains(&token()));
}

/// A webhook receiver on a free port, recording request bodies.
fn webhook() -> (String, Arc<Mutex<Vec<Vec<u8>>>>, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = bodies.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(body.to_vec());
                "ok"
            }
        }),
    );
    runtime.spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), bodies, runtime)
}

#[test]
fn notify_posts_the_alert_without_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let (url, bodies, _runtime) = webhook();
    let top = "[policies.tell]\ndetection = \"secret_leak\"\nseverity = \"high\"\nactions = [\"notify\"]\n";
    let agent = Agent::start_with(dir.path(), top, Some(&format!("notify_url = \"{url}\"")));
    github_step(
        dir.path(),
        &agent,
        "acme/widgets",
        "main",
        &[],
        &format!("echo token {}", token()),
    );
    let action = span(&agent, "ACTION notify");
    assert_eq!(
        action["attributes"]["tailguard.action.outcome"], "done",
        "{action}"
    );
    let bodies = bodies.lock().unwrap();
    assert_eq!(bodies.len(), 1);
    let text = String::from_utf8(bodies[0].clone()).unwrap();
    assert!(!text.contains(&token()), "{text}");
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["tailguard.alert.detection"], "secret_leak");
    assert_eq!(body["tailguard.alert.severity"], "high");
    assert_eq!(body["tailguard.alert.policy"], "tell");
    assert_eq!(body["tailguard.finding.rule_id"], "github-pat");
    assert_eq!(body["tailguard.action.name"], "notify");
    assert_eq!(
        body["tailguard.finding.fingerprint"]
            .as_str()
            .unwrap()
            .len(),
        12
    );
}

#[test]
fn policies_defined_twice_are_an_error_naming_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(
        &dir.path().join("a.toml"),
        "[policies.p]\nactions = [\"annotate\"]\n[sources.in]\ntype = \"stdin\"\n[transforms.policy]\ntype = \"policy\"\ninputs = [\"in\"]\n[sinks.out]\ntype = \"console\"\ninputs = [\"policy\"]\n",
    );
    let b = write(
        &dir.path().join("b.toml"),
        "[policies.p]\nactions = [\"notify\"]\n",
    );
    let out = tailguard(dir.path())
        .args(["validate", "--config"])
        .arg(&a)
        .arg("--config")
        .arg(&b)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = format!("{}{}", stdout(&out), stderr(&out));
    assert!(text.contains("a.toml") && text.contains("b.toml"), "{text}");
    assert!(text.contains("policy `p` is defined twice"), "{text}");
}
