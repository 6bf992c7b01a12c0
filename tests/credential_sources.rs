//! The credential misuse sources against real things: inotify on a real
//! home directory touched by other processes, and auditd / auth.log
//! fixtures read by the real binary.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use common::*;
use serde_json::Value;

fn events(out: &Path) -> Vec<Value> {
    json_lines(out)
}

fn attr(event: &Value, key: &str) -> String {
    match &event["attributes"][key] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn file_sink(input: &str, out: &Path) -> String {
    format!(
        "\n[sinks.out]\ntype = \"file\"\ninputs = [\"{input}\"]\npath = \"{}\"\n",
        out.display()
    )
}

/// The credential event for `path` with `operation`, if any.
fn find<'a>(events: &'a [Value], path: &Path, operation: &str) -> Option<&'a Value> {
    events.iter().find(|e| {
        attr(e, "tailguard.credential.path") == path.display().to_string()
            && attr(e, "tailguard.credential.operation") == operation
    })
}

fn start_watch(dir: &Path, extra: &str) -> (std::process::Child, std::path::PathBuf) {
    let out = dir.join("out.jsonl");
    let config = write(
        &dir.join("t.toml"),
        &format!(
            "[sources.creds]\ntype = \"credential_watch\"\nhomes = [\"{}/home/*\"]\nrunner_roots = []\n{extra}{}",
            dir.display(),
            file_sink("creds", &out)
        ),
    );
    let mut child = spawn_run(&dir.join("state"), &config);
    let log = collect_stderr(&mut child);
    wait_for("the credential watches", || {
        log.lock().unwrap().contains("watching credential files")
    });
    (child, out)
}

#[test]
fn credential_files_opened_written_deleted_and_created_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home/runner");
    let aws = write(
        &home.join(".aws/credentials"),
        "[default]\naws_access_key_id = AKIAIOSFODNN7EXAMPLE\n",
    );
    let docker = write(&home.join(".docker/config.json"), "{\"auths\":{}}\n");
    let npmrc = write(&home.join(".npmrc"), "//registry.npmjs.org/:_authToken=x\n");
    let unrelated = write(&home.join(".bashrc"), "export A=1\n");
    // A second account without a .kube folder yet.
    let other = dir.path().join("home/deploy");
    std::fs::create_dir_all(&other).unwrap();
    let identity = format!(
        "\n[identities.aws-ci]\nkind = \"api_key\"\nowner = {{ team = \"platform\", contact = \"#platform\" }}\nsecrets = {{ files = [\"{}\"] }}\n",
        aws.display()
    );
    let (mut child, out) = start_watch(dir.path(), &identity);

    // Another process reads the AWS credentials.
    let cat = Command::new("cat").arg(&aws).output().unwrap();
    assert!(cat.status.success());
    // Not a credential file: never reported.
    Command::new("cat").arg(&unrelated).output().unwrap();
    // Modify one, delete another.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&docker)
        .unwrap()
        .write_all(b"{\"auths\":{\"ghcr.io\":{}}}\n")
        .unwrap();
    std::fs::remove_file(&npmrc).unwrap();
    // A credential file in a folder that did not exist when watching began.
    std::fs::create_dir_all(other.join(".kube")).unwrap();
    let kube = write(&other.join(".kube/config"), "apiVersion: v1\n");

    wait_for("open, write, delete and create events", || {
        let e = events(&out);
        find(&e, &aws, "open").is_some()
            && find(&e, &docker, "write").is_some()
            && find(&e, &npmrc, "delete").is_some()
            && find(&e, &kube, "create").is_some()
    });
    let _ = child.kill();
    let _ = child.wait();

    let e = events(&out);
    let opened = find(&e, &aws, "open").unwrap();
    assert_eq!(
        opened["body"],
        format!("credential file opened: {}", aws.display())
    );
    assert_eq!(attr(opened, "tailguard.credential.kind"), "aws");
    assert_eq!(attr(opened, "file.path"), aws.display().to_string());
    assert!(
        ["single_running_job", "unknown"]
            .contains(&attr(opened, "tailguard.credential.attribution").as_str()),
        "{opened}"
    );
    assert_eq!(attr(opened, "nhi.identity.id"), "aws-ci");
    assert_eq!(attr(opened, "nhi.owner.team"), "platform");
    assert_eq!(
        attr(
            find(&e, &docker, "write").unwrap(),
            "tailguard.credential.kind"
        ),
        "docker"
    );
    assert_eq!(
        attr(
            find(&e, &npmrc, "delete").unwrap(),
            "tailguard.credential.kind"
        ),
        "npm"
    );
    assert_eq!(
        attr(
            find(&e, &kube, "create").unwrap(),
            "tailguard.credential.kind"
        ),
        "kube"
    );
    assert!(
        !e.iter()
            .any(|ev| attr(ev, "file.path") == unrelated.display().to_string()),
        "only credential files are reported"
    );
    assert!(
        e.iter().all(|ev| attr(ev, "nhi.identity.id").is_empty()
            || attr(ev, "file.path") == aws.display().to_string()),
        "only the inventory's file maps to its identity"
    );
}

#[test]
fn a_read_inside_the_one_wrapped_job_is_attributed_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let key = write(
        &dir.path().join("home/runner/.ssh/id_ed25519"),
        "-----BEGIN OPENSSH PRIVATE KEY-----\n",
    );
    let (mut child, out) = start_watch(dir.path(), "");
    // The step stays running until stdin closes, so it is on /proc when
    // the access is attributed.
    let mut step = tailguard(&dir.path().join("exec-state"))
        .env("TAILGUARD_EXEC_SOCKET", dir.path().join("no-agent.sock"))
        .env("HOME", dir.path().join("home/runner"))
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_JOB", "build")
        .env("GITHUB_RUN_ID", "4242")
        .env("GITHUB_REPOSITORY", "acme/app")
        .env("GITHUB_WORKFLOW", "ci")
        .args([
            "exec",
            "--",
            "sh",
            "-c",
            "cat \"$1\" >/dev/null; read _",
            "sh",
        ])
        .arg(&key)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the read of the ssh key", || {
        find(&events(&out), &key, "open").is_some()
    });
    drop(step.stdin.take());
    let _ = step.wait();
    let _ = child.kill();
    let _ = child.wait();
    let e = events(&out);
    let opened = find(&e, &key, "open").unwrap();
    assert_eq!(attr(opened, "tailguard.credential.kind"), "ssh");
    assert_eq!(
        attr(opened, "tailguard.credential.attribution"),
        "single_running_job",
        "{opened}"
    );
    assert_eq!(attr(opened, "cicd.pipeline.run.id"), "4242", "{opened}");
    assert_eq!(
        attr(opened, "tailguard.credential.job.pid"),
        step.id().to_string()
    );
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .unwrap()
}

#[test]
fn audit_records_join_by_serial_into_misuse_events() {
    let dir = tempfile::tempdir().unwrap();
    let log = write(
        &dir.path().join("audit/audit.log"),
        &fixture("audit/audit.log"),
    );
    let out = dir.path().join("out.jsonl");
    let config = write(
        &dir.path().join("t.toml"),
        &format!(
            "[sources.audit]\ntype = \"audit_log\"\npath = \"{}\"\ngroup_timeout = \"200ms\"\npoll_interval = \"100ms\"\n{}",
            log.display(),
            file_sink("audit", &out)
        ),
    );
    let mut child = spawn_run(&dir.path().join("state"), &config);
    let serials = |e: &[Value]| -> Vec<String> {
        e.iter()
            .map(|ev| attr(ev, "tailguard.audit.serial"))
            .collect()
    };
    wait_for("the five misuse events", || events(&out).len() >= 5);
    // A sentinel event after the fixture: once it is out, everything
    // before it is too.
    common::files::append(
        &log,
        "type=SYSCALL msg=audit(1700000100.000:999): arch=c000003e syscall=257 success=no exit=-13 a0=ffffff9c a1=1 a2=0 a3=0 items=1 ppid=1 pid=9 auid=1001 uid=1001 gid=1001 euid=1001 suid=1001 fsuid=1001 egid=1001 sgid=1001 fsgid=1001 tty=(none) ses=4 comm=\"less\" exe=\"/usr/bin/less\" key=(null)\n\
         type=PATH msg=audit(1700000100.000:999): item=0 name=\"/home/gitlab-runner/.docker/config.json\" inode=5 dev=08:01 mode=0100600 ouid=1001 ogid=1001 rdev=00:00 nametype=NORMAL\n",
    );
    wait_for("the sentinel", || {
        serials(&events(&out)).contains(&"999".to_string())
    });
    let _ = child.kill();
    let _ = child.wait();

    let e = events(&out);
    assert_eq!(
        serials(&e),
        ["456", "500", "510", "520", "530", "999"],
        "one event per serial"
    );
    let by = |s: &str| {
        e.iter()
            .find(|ev| attr(ev, "tailguard.audit.serial") == s)
            .unwrap()
    };

    let cred = by("456");
    assert_eq!(attr(cred, "tailguard.misuse.kind"), "credential_read");
    assert_eq!(attr(cred, "file.path"), "/home/runner/.aws/credentials");
    assert_eq!(attr(cred, "tailguard.credential.kind"), "aws");
    assert_eq!(attr(cred, "process.pid"), "2231");
    assert_eq!(attr(cred, "process.executable.path"), "/usr/bin/cat");
    assert_eq!(
        attr(cred, "process.command_line"),
        "cat /home/runner/.aws/credentials"
    );
    assert_eq!(attr(cred, "user.id"), "1001");
    assert_eq!(attr(cred, "tailguard.audit.key"), "tailguard-creds");
    assert_eq!(cred["timestamp"], "2023-11-14T22:13:20.123000000Z");

    let mem = by("500");
    assert_eq!(attr(mem, "tailguard.misuse.kind"), "process_memory_read");
    assert_eq!(attr(mem, "tailguard.audit.target_pid"), "1234");
    assert_eq!(attr(mem, "tailguard.audit.target_is_runner_worker"), "true");
    assert_eq!(attr(mem, "process.executable.path"), "/usr/bin/python3.12");
    assert_eq!(
        attr(mem, "process.command_line"),
        "python3 memdump.py --pid 1234"
    );
    assert_eq!(attr(mem, "file.path"), "/proc/1234/mem");
    assert!(
        mem["body"].as_str().unwrap().contains("Runner.Worker"),
        "{mem}"
    );

    let ptrace = by("510");
    assert_eq!(attr(ptrace, "tailguard.misuse.kind"), "ptrace");
    assert_eq!(attr(ptrace, "tailguard.audit.target_pid"), "1234");
    assert_eq!(
        attr(ptrace, "tailguard.audit.target_is_runner_worker"),
        "true"
    );

    let vm = by("520");
    assert_eq!(attr(vm, "tailguard.misuse.kind"), "process_memory_read");
    assert_eq!(attr(vm, "tailguard.audit.target_pid"), "2290");
    assert_eq!(attr(vm, "tailguard.audit.target_is_runner_worker"), "false");
    assert_eq!(attr(vm, "user.id"), "1001", "auid unset: uid");

    let keyed = by("530");
    assert_eq!(attr(keyed, "tailguard.misuse.kind"), "credential_read");
    assert_eq!(
        attr(keyed, "file.path"),
        "/root/.config/gcloud/access_tokens.db"
    );

    assert_eq!(attr(by("999"), "tailguard.credential.kind"), "docker");
}

#[test]
fn auth_log_reports_exactly_the_interactive_runner_account_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let log = write(&dir.path().join("log/auth.log"), &fixture("auth/auth.log"));
    let out = dir.path().join("out.jsonl");
    let config = write(
        &dir.path().join("t.toml"),
        &format!(
            "[sources.auth]\ntype = \"auth_log\"\npaths = [\"{}\"]\npoll_interval = \"100ms\"\n{}",
            log.display(),
            file_sink("auth", &out)
        ),
    );
    let mut child = spawn_run(&dir.path().join("state"), &config);
    wait_for("the fixture's sessions", || events(&out).len() >= 5);
    common::files::append(
        &log,
        "Nov 22 18:09:00 ci-runner-7 sshd[6000]: Accepted publickey for github-runner from 192.0.2.1 port 1022 ssh2: RSA SHA256:x\n",
    );
    wait_for("the sentinel", || {
        events(&out)
            .iter()
            .any(|e| attr(e, "user.name") == "github-runner")
    });
    let _ = child.kill();
    let _ = child.wait();

    let e = events(&out);
    let got: Vec<(String, String, String)> = e
        .iter()
        .map(|ev| {
            assert_eq!(attr(ev, "tailguard.misuse.kind"), "interactive_human_use");
            (
                attr(ev, "user.name"),
                attr(ev, "tailguard.auth.method"),
                attr(ev, "source.address") + &attr(ev, "tailguard.auth.tty"),
            )
        })
        .collect();
    let want: Vec<(String, String, String)> = [
        ("runner", "publickey", "203.0.113.9"),
        ("runner", "sudo", "pts/0"),
        ("jenkins", "su", "pts/1"),
        ("buildkite-agent", "keyboard-interactive/pam", "2001:db8::7"),
        ("gitlab-runner", "sudo", "pts/2"),
        ("github-runner", "publickey", "192.0.2.1"),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    assert_eq!(got, want);
    assert_eq!(attr(&e[0], "source.port"), "52144");
    assert_eq!(attr(&e[4], "tailguard.auth.actor"), "alice");
    assert!(attr(&e[0], "log.record.original").contains("Accepted publickey for runner"));
}

/// A journal file holding `entries` (`(pid, identifier, message)`, one
/// second apart from `start`), written by systemd-journal-remote from the
/// journal export format: a real journal, read by the real journalctl.
fn journal_file(path: &Path, start_secs: u64, entries: &[(u32, &str, &str)]) {
    let mut export = String::new();
    for (i, (pid, identifier, message)) in entries.iter().enumerate() {
        let micros = (start_secs + i as u64) * 1_000_000;
        export.push_str(&format!(
            "__REALTIME_TIMESTAMP={micros}\n__MONOTONIC_TIMESTAMP={}\n_BOOT_ID=0123456789abcdef0123456789abcdef\n_HOSTNAME=ci-runner-7\nSYSLOG_IDENTIFIER={identifier}\n_COMM={identifier}\n_PID={pid}\nMESSAGE={message}\n\n",
            // One boot: journalctl orders its entries by monotonic time.
            micros - 1_700_000_000_000_000
        ));
    }
    let mut remote = Command::new("/lib/systemd/systemd-journal-remote")
        .arg("-o")
        .arg(path)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect(
            "systemd-journal-remote (Debian package systemd-journal-remote; .ci/test installs it)",
        );
    remote
        .stdin
        .take()
        .unwrap()
        .write_all(export.as_bytes())
        .unwrap();
    assert!(remote.wait().unwrap().success());
}

#[test]
fn auth_sessions_are_read_from_the_journal_and_resume_after_the_recorded_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("journal/first.journal");
    std::fs::create_dir_all(first.parent().unwrap()).unwrap();
    journal_file(
        &first,
        1_763_800_000,
        &[
            (
                4242,
                "sshd",
                "Accepted publickey for runner from 203.0.113.9 port 51234 ssh2: ED25519 SHA256:abc",
            ),
            (
                4243,
                "sshd",
                "Accepted publickey for alice from 203.0.113.10 port 51235 ssh2: ED25519 SHA256:def",
            ),
            (
                4300,
                "sudo",
                "  alice : TTY=pts/0 ; PWD=/home/alice ; USER=runner ; COMMAND=/bin/bash",
            ),
            (
                4301,
                "cron",
                "pam_unix(cron:session): session opened for user runner",
            ),
        ],
    );
    let out = dir.path().join("out.jsonl");
    let state = dir.path().join("state");
    let config = |files: &[&Path]| {
        let files: Vec<String> = files
            .iter()
            .map(|f| format!("\"{}\"", f.display()))
            .collect();
        write(
            &dir.path().join("t.toml"),
            &format!(
                "[sources.auth]\ntype = \"auth_log\"\njournal = {{ files = [{}] }}\n{}",
                files.join(", "),
                file_sink("auth", &out)
            ),
        )
    };
    let mut child = spawn_run(&state, &config(&[&first]));
    wait_for("the journal's two sessions", || events(&out).len() >= 2);
    // SIGTERM: the source records the cursor of what has settled.
    signal(&child, "TERM");
    let _ = child.wait();
    assert!(state.join("journal/auth.cursor").exists());

    // A second journal with a later session; a restart must report only it.
    let second = dir.path().join("journal/second.journal");
    journal_file(
        &second,
        1_763_800_100,
        &[(
            5000,
            "sshd",
            "Accepted password for jenkins from 198.51.100.4 port 40000 ssh2",
        )],
    );
    let mut child = spawn_run(&state, &config(&[&first, &second]));
    wait_for("the later session", || {
        events(&out)
            .iter()
            .any(|e| attr(e, "user.name") == "jenkins")
    });
    let _ = child.kill();
    let _ = child.wait();

    let got: Vec<(String, String, String)> = events(&out)
        .iter()
        .map(|e| {
            assert_eq!(attr(e, "tailguard.misuse.kind"), "interactive_human_use");
            (
                attr(e, "user.name"),
                attr(e, "tailguard.auth.method"),
                attr(e, "source.address") + &attr(e, "tailguard.auth.tty"),
            )
        })
        .collect();
    let want: Vec<(String, String, String)> = [
        ("runner", "publickey", "203.0.113.9"),
        ("runner", "sudo", "pts/0"),
        ("jenkins", "password", "198.51.100.4"),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    assert_eq!(got, want, "each session once, across the restart");
}
