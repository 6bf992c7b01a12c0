//! A running agent that receives `tailguard exec` steps: a `ci_exec`
//! source, the `redact` transform (fleet key `test-fleet`), an optional
//! `policy` transform, and a file sink the tests read back.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};

use super::{stderr, stdout, tailguard, wait_for, write};

/// The fingerprint key the agent and wrapped steps share in tests.
pub const FLEET_KEY: &str = "test-fleet";

pub struct Agent {
    child: Child,
    pub socket: PathBuf,
    pub out: PathBuf,
}

impl Agent {
    pub fn start(dir: &Path) -> Agent {
        Self::start_with(dir, "", None)
    }

    /// `top` goes before the components (inventory, policies); `policy`,
    /// when given, is the body of a `policy` transform after `redact`.
    pub fn start_with(dir: &Path, top: &str, policy: Option<&str>) -> Agent {
        let socket = dir.join("exec.sock");
        let out = dir.join("events.jsonl");
        let (policy_table, sink_input) = match policy {
            Some(body) => (
                format!("[transforms.policy]\ntype = \"policy\"\ninputs = [\"redact\"]\n{body}\n"),
                "policy",
            ),
            None => (String::new(), "redact"),
        };
        let config = write(
            &dir.join("agent.toml"),
            &format!(
                "{top}\n[sources.jobs]\ntype = \"ci_exec\"\nsocket = \"{}\"\n\n[transforms.redact]\ntype = \"redact\"\ninputs = [\"jobs\"]\nfingerprint_key = \"{FLEET_KEY}\"\n\n{policy_table}\n[sinks.out]\ntype = \"file\"\ninputs = [\"{sink_input}\"]\npath = \"{}\"\n",
                socket.display(),
                out.display()
            ),
        );
        let check = tailguard(dir)
            .args(["validate", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        assert_eq!(
            check.status.code(),
            Some(0),
            "{}{}",
            stdout(&check),
            stderr(&check)
        );
        let child = tailguard(dir)
            .args(["run", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for("the agent's socket", || socket.exists());
        Agent { child, socket, out }
    }

    /// Runs `tailguard exec -- ARGS` against this agent.
    pub fn exec(&self, dir: &Path, args: &[&str]) -> Output {
        tailguard(dir)
            .arg("exec")
            .arg("--socket")
            .arg(&self.socket)
            .arg("--")
            .args(args)
            .output()
            .unwrap()
    }

    /// Every event the agent has written so far.
    pub fn events(&self) -> Vec<serde_json::Value> {
        super::json_lines(&self.out)
    }

    /// Every event the agent wrote, once a step's span (`RUN <step>`) has arrived. Not any
    /// span: a finding's span can be written before its step's.
    pub fn events_after_span(&self) -> Vec<serde_json::Value> {
        self.events_once("the step span", |events| {
            events.iter().any(|e| span_name_starts_with(e, "RUN "))
        })
    }

    /// Every event the agent wrote, once `ready` holds for them.
    pub fn events_once(
        &self,
        what: &str,
        ready: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let mut events = Vec::new();
        wait_for(what, || {
            events = self.events();
            ready(&events)
        });
        events
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `event` is a span whose name starts with `prefix`.
pub fn span_name_starts_with(event: &serde_json::Value, prefix: &str) -> bool {
    event["span"]["name"]
        .as_str()
        .is_some_and(|name| name.starts_with(prefix))
}

/// A fake GitHub token, assembled so no source file holds a token.
pub fn token() -> String {
    format!("gh{}_{}", "p", "Zq8Rk2LmT7vXw4NbP9yHc3JdF6sGa1UeK0tQ")
}

/// `tailguard identities fingerprint` of `secret` with `key`.
pub fn fingerprint_of(dir: &Path, secret: &str, key: &str) -> String {
    use std::io::Write;
    let mut child = tailguard(dir)
        .args(["identities", "fingerprint", "--fingerprint-key", key])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{secret}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}
