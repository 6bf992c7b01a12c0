//! systemd integration (`sd_notify`), driven through the real binary: a
//! datagram socket bound in a temporary directory stands in for systemd's
//! `NOTIFY_SOCKET`.

mod common;

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A fake service manager: the socket the agent notifies.
struct Manager {
    socket: UnixDatagram,
    path: PathBuf,
}

impl Manager {
    fn new(dir: &Path) -> Self {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        Self { socket, path }
    }

    /// Every notification line received until one equals `line`, which is
    /// included; fails the test after a generous deadline.
    fn until(&self, line: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {line}; got {seen:?}"
            );
            let Ok(n) = self.socket.recv(&mut buf) else {
                continue;
            };
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            let done = text.lines().any(|l| l == line);
            seen.extend(text.lines().map(str::to_string));
            if done {
                return seen;
            }
        }
    }
}

fn spawn(dir: &Path, manager: &Manager, env: &[(&str, &str)]) -> (Child, PathBuf) {
    let out_path = dir.join("out.jsonl");
    let config = pipeline_config(dir, &out_path);
    let mut cmd = tailguard(dir);
    cmd.args(["run", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &manager.path)
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (key, value) in env {
        cmd.env(key, value);
    }
    (cmd.spawn().unwrap(), out_path)
}

#[test]
fn notifies_ready_when_running_and_stopping_when_done() {
    let dir = tempfile::tempdir().unwrap();
    let manager = Manager::new(dir.path());
    let (mut child, out_path) = spawn(dir.path(), &manager, &[]);
    let before = manager.until("READY=1");
    assert!(!before.iter().any(|l| l == "STOPPING=1"), "{before:?}");

    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"hello\n").unwrap();
    wait_for("the line in the sink", || bodies(&out_path).len() == 1);
    drop(stdin);

    let after = manager.until("STOPPING=1");
    assert!(!after.iter().any(|l| l == "WATCHDOG=1"), "{after:?}");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn pings_the_watchdog_when_systemd_enables_it() {
    let dir = tempfile::tempdir().unwrap();
    let manager = Manager::new(dir.path());
    // 200 ms: pings every 100 ms.
    let (mut child, _) = spawn(dir.path(), &manager, &[("WATCHDOG_USEC", "200000")]);
    manager.until("READY=1");
    manager.until("WATCHDOG=1");
    manager.until("WATCHDOG=1");
    drop(child.stdin.take());
    manager.until("STOPPING=1");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn ignores_a_watchdog_meant_for_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let manager = Manager::new(dir.path());
    // A 2 ms watchdog for pid 1 would ping every millisecond if it were
    // (wrongly) taken as ours.
    let (mut child, out_path) = spawn(
        dir.path(),
        &manager,
        &[("WATCHDOG_USEC", "2000"), ("WATCHDOG_PID", "1")],
    );
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"x\n").unwrap();
    wait_for("the line in the sink", || bodies(&out_path).len() == 1);
    drop(stdin);
    let seen = manager.until("STOPPING=1");
    assert!(seen.iter().any(|l| l == "READY=1"), "{seen:?}");
    assert!(!seen.iter().any(|l| l == "WATCHDOG=1"), "{seen:?}");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn runs_without_a_service_manager() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out.jsonl");
    let config = pipeline_config(dir.path(), &out_path);
    let mut child = tailguard(dir.path())
        .args(["run", "--config"])
        .arg(&config)
        .env_remove("NOTIFY_SOCKET")
        .env("WATCHDOG_USEC", "2000")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"a\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(bodies(&out_path), ["a"]);
}

#[test]
fn generate_writes_completions_and_man_pages() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let out = tailguard(dir.path())
            .args(["generate", "completions", shell])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert!(stdout(&out).contains("validate"), "{shell}");
    }
    let man = dir.path().join("man");
    std::fs::create_dir(&man).unwrap();
    let out = tailguard(dir.path())
        .args(["generate", "man", "--out-dir"])
        .arg(&man)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let page = std::fs::read_to_string(man.join("tailguard.1")).unwrap();
    assert!(page.contains(".TH tailguard 1"), "{page}");
    assert!(man.join("tailguard-run.1").exists());
    // `generate` is for packagers: hidden from help and the man page.
    assert!(!page.contains("tailguard\\-generate"), "{page}");
    assert!(!man.join("tailguard-generate.1").exists());
    let help = tailguard(dir.path()).arg("--help").output().unwrap();
    assert!(
        !stdout(&help).contains("\n  generate "),
        "{}",
        stdout(&help)
    );
}
