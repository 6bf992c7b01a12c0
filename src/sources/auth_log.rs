//! `type = "auth_log"`: interactive sessions under runner service accounts.
//!
//! Tails `/var/log/auth.log` (Debian, Ubuntu) and `/var/log/secure` (RHEL
//! family) with the `file` source, and emits an event when a person uses a
//! machine identity: an interactive session whose user is one of the
//! configured `runner_users`:
//!
//! - sshd `Accepted <method> for USER from IP port N`;
//! - sudo with a terminal (`TTY=pts/N` or `ttyN`) run by, or as, a runner
//!   account (jobs run sudo without a terminal: `TTY=unknown`);
//! - su to a runner account (`(to USER) WHO on TTY`, or util-linux's
//!   `+ TTY WHO:USER`);
//! - a console login (`pam_unix(login:session): session opened for user`).
//!
//! Other lines are acknowledged and dropped. Session lines of sshd, sudo and
//! su's PAM modules are not reported again.
//!
//! Hosts without rsyslog have no auth.log: with `journal = {}` the source
//! reads the systemd journal instead (entries of sshd, sudo, su and login,
//! through `journalctl`, see [`crate::sources::journal`]) and the files are
//! not read.

use std::sync::{Arc, LazyLock};

use regex::Regex;
use serde::Deserialize;

use crate::ack::DeliveryStatus;
use crate::event::{Event, EventBatch};
use crate::sources::file::{self, FileSourceConfig, ReadFrom};
use crate::sources::journal;
use crate::topology::component::{ComponentTask, SourceContext};

#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthLogConfig {
    /// The authentication logs (absolute paths or globs); missing ones are
    /// fine.
    #[serde(default = "default_paths")]
    pub paths: Vec<String>,
    /// The runner service accounts: sessions under these are reported.
    #[serde(default = "default_runner_users")]
    pub runner_users: Vec<String>,
    /// Where to start a log that has no checkpoint yet.
    #[serde(default)]
    pub read_from: ReadFrom,
    /// How often the files are looked at without a notification.
    #[serde(default = "default_poll_interval")]
    #[schemars(with = "String")]
    pub poll_interval: crate::config::HumanDuration,
    /// Read the systemd journal instead of the files (`journal = {}` for the
    /// system journal; `directory` or `files` to read others).
    pub journal: Option<journal::JournalConfig>,
}

fn default_paths() -> Vec<String> {
    vec!["/var/log/auth.log".into(), "/var/log/secure".into()]
}
fn default_runner_users() -> Vec<String> {
    [
        "runner",
        "github-runner",
        "gitlab-runner",
        "buildkite-agent",
        "jenkins",
    ]
    .map(String::from)
    .to_vec()
}
fn default_poll_interval() -> crate::config::HumanDuration {
    crate::config::HumanDuration(std::time::Duration::from_secs(1))
}

impl AuthLogConfig {
    fn file_config(&self) -> FileSourceConfig {
        let mut file = FileSourceConfig::new(self.paths.clone());
        file.read_from = self.read_from;
        file.poll_interval = self.poll_interval.0;
        file
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        self.file_config()
            .validate()
            .map_err(|e| e.replace("`include`", "`paths`"))?;
        if self.runner_users.is_empty() {
            return Err("`runner_users` must name at least one account".into());
        }
        Ok(())
    }
}

/// The programs whose journal entries can show an interactive session.
const JOURNAL_MATCHES: &[&str] = &[
    "SYSLOG_IDENTIFIER=sshd",
    "SYSLOG_IDENTIFIER=sshd-session",
    "SYSLOG_IDENTIFIER=sudo",
    "SYSLOG_IDENTIFIER=su",
    "SYSLOG_IDENTIFIER=login",
];

/// An entry as the line rsyslog would have written for it, so one parser
/// serves both.
fn journal_line(entry: &journal::Entry) -> Option<String> {
    let message = entry.get("MESSAGE")?;
    let program = entry
        .get("SYSLOG_IDENTIFIER")
        .or_else(|| entry.get("_COMM"))?;
    let host = entry.get("_HOSTNAME").map_or("-", String::as_str);
    let pid = entry
        .get("SYSLOG_PID")
        .or_else(|| entry.get("_PID"))
        .map(|pid| format!("[{pid}]"))
        .unwrap_or_default();
    Some(format!("journal {host} {program}{pid}: {message}"))
}

fn build_from_journal(
    config: &AuthLogConfig,
    journal_config: journal::JournalConfig,
    mut cx: SourceContext,
) -> ComponentTask {
    let users = config.runner_users.clone();
    let from_end = config.read_from == ReadFrom::End;
    Box::pin(async move {
        let matches: Vec<String> = JOURNAL_MATCHES.iter().map(|m| m.to_string()).collect();
        let origin = Arc::new(crate::event::Origin {
            source: cx.name.clone(),
            ..Default::default()
        });
        let context = cx.context.clone();
        journal::follow(&journal_config, &matches, from_end, &mut cx, |entry| {
            let line = journal_line(entry)?;
            let session = session(&line, &users)?;
            let mut event = Event::new(line.into_bytes(), Arc::clone(&origin), context.clone());
            event.timestamp = entry
                .get("__REALTIME_TIMESTAMP")
                .and_then(|us| us.parse::<u64>().ok())
                .map(|us| std::time::UNIX_EPOCH + std::time::Duration::from_micros(us));
            session.apply(&mut event);
            Some(event)
        })
        .await
    })
}

pub fn build(config: &AuthLogConfig, mut cx: SourceContext) -> anyhow::Result<ComponentTask> {
    config.check().map_err(anyhow::Error::msg)?;
    if let Some(journal_config) = config.journal.clone() {
        return Ok(build_from_journal(config, journal_config, cx));
    }
    let (reading, mut rx) = file::build_into_channel(&config.file_config(), &cx)?;
    let users = config.runner_users.clone();
    Ok(Box::pin(async move {
        let forwarding = async {
            while let Some(batch) = rx.recv().await {
                let mut out = EventBatch::new();
                for mut event in batch {
                    match session(&String::from_utf8_lossy(&event.body), &users) {
                        Some(s) => {
                            s.apply(&mut event);
                            out.push(event);
                        }
                        None => event.settle(DeliveryStatus::Delivered),
                    }
                }
                cx.out.send(out).await?;
            }
            anyhow::Ok(())
        };
        let (read, forwarded) = tokio::join!(reading, forwarding);
        read.and(forwarded)
    }))
}

/// An interactive session under a runner account.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Session {
    /// The runner account.
    pub user: String,
    /// `publickey`, `password`, `keyboard-interactive/pam`, `sudo`, `su`,
    /// `login`.
    pub method: String,
    pub program: String,
    pub tty: Option<String>,
    pub address: Option<String>,
    pub port: Option<u16>,
    /// Who started it, when the line says (sudo, su).
    pub actor: Option<String>,
    /// The command, for sudo.
    pub command: Option<String>,
}

impl Session {
    fn apply(self, event: &mut Event) {
        let original = std::mem::take(&mut event.body);
        let summary = match self.method.as_str() {
            "sudo" => format!(
                "interactive sudo under runner account {} by {} on {}",
                self.user,
                self.actor.as_deref().unwrap_or("?"),
                self.tty.as_deref().unwrap_or("?")
            ),
            "su" => format!(
                "su to runner account {} by {} on {}",
                self.user,
                self.actor.as_deref().unwrap_or("?"),
                self.tty.as_deref().unwrap_or("?")
            ),
            "login" => format!("console login as runner account {}", self.user),
            method => format!(
                "interactive ssh login as runner account {} from {} ({method})",
                self.user,
                self.address.as_deref().unwrap_or("?")
            ),
        };
        event.body = summary.into_bytes().into();
        let a = &mut event.attributes;
        a.insert("tailguard.misuse.kind", "interactive_human_use");
        a.insert("user.name", self.user);
        a.insert("tailguard.auth.method", self.method);
        a.insert("process.executable.name", self.program);
        if let Some(tty) = self.tty {
            a.insert("tailguard.auth.tty", tty);
        }
        if let Some(address) = self.address {
            a.insert("source.address", address);
        }
        if let Some(port) = self.port {
            a.insert("source.port", u64::from(port));
        }
        if let Some(actor) = self.actor {
            a.insert("tailguard.auth.actor", actor);
        }
        if let Some(command) = self.command {
            a.insert("process.command_line", command);
        }
        a.insert(
            "log.record.original",
            String::from_utf8_lossy(&original).into_owned(),
        );
    }
}

static PROGRAM: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\S.*?\s([A-Za-z0-9_.\-/()]+?)(?:\[(\d+)\])?:\s(.*)$").expect("valid regex")
});
static SSH_ACCEPTED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^Accepted (\S+) for (\S+) from (\S+) port (\d+)").expect("valid regex")
});
static SUDO: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*(\S+) : (?:.*?; )?TTY=(\S+) ; PWD=.*? ; USER=(\S+) ;(?: .*?;)? COMMAND=(.*)$")
        .expect("valid regex")
});
static SU_TO: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:Successful su for \S+ by \S+|\(to (\S+)\) (\S+) on (\S+))$")
        .expect("valid regex")
});
static SU_UTIL_LINUX: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\+ (\S+) (\S+):(\S+)$").expect("valid regex"));
static LOGIN_SESSION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^pam_unix\(login:session\): session opened for user ([^\s(]+)")
        .expect("valid regex")
});

fn interactive_tty(tty: &str) -> bool {
    let tty = tty.trim_start_matches("/dev/");
    tty.starts_with("pts/") || tty.starts_with("tty")
}

/// The interactive runner-account session a line records, if any.
pub fn session(line: &str, runner_users: &[String]) -> Option<Session> {
    let caps = PROGRAM.captures(line.trim_end())?;
    let program = caps.get(1)?.as_str();
    let message = caps.get(3)?.as_str();
    let is_runner = |u: &str| runner_users.iter().any(|r| r == u);
    let name = program.rsplit('/').next().unwrap_or(program);
    match name {
        "sshd" | "sshd-session" => {
            let c = SSH_ACCEPTED.captures(message)?;
            let user = &c[2];
            is_runner(user).then(|| Session {
                user: user.to_string(),
                method: c[1].to_string(),
                program: "sshd".into(),
                address: Some(c[3].to_string()),
                port: c[4].parse().ok(),
                ..Session::default()
            })
        }
        "sudo" => {
            let c = SUDO.captures(message)?;
            let (actor, tty, target) = (&c[1], &c[2], &c[3]);
            if !interactive_tty(tty) {
                return None;
            }
            let user = if is_runner(actor) {
                actor
            } else if is_runner(target) {
                target
            } else {
                return None;
            };
            Some(Session {
                user: user.to_string(),
                method: "sudo".into(),
                program: "sudo".into(),
                tty: Some(tty.to_string()),
                actor: Some(actor.to_string()),
                command: Some(c[4].trim().to_string()),
                ..Session::default()
            })
        }
        "su" | "su-l" => {
            let (target, actor, tty) = if let Some(c) = SU_TO.captures(message) {
                (c.get(1)?.as_str(), c.get(2)?.as_str(), c.get(3)?.as_str())
            } else if let Some(c) = SU_UTIL_LINUX.captures(message) {
                (c.get(3)?.as_str(), c.get(2)?.as_str(), c.get(1)?.as_str())
            } else {
                return None;
            };
            is_runner(target).then(|| Session {
                user: target.to_string(),
                method: "su".into(),
                program: "su".into(),
                tty: Some(tty.to_string()),
                actor: Some(actor.to_string()),
                ..Session::default()
            })
        }
        "login" => {
            let c = LOGIN_SESSION.captures(message)?;
            is_runner(&c[1]).then(|| Session {
                user: c[1].to_string(),
                method: "login".into(),
                program: "login".into(),
                ..Session::default()
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> Vec<String> {
        default_runner_users()
    }

    #[test]
    fn sshd_logins_of_runner_accounts() {
        let s = session(
            "Nov 22 18:00:01 ci-7 sshd[4242]: Accepted publickey for runner from 203.0.113.9 port 52144 ssh2: ED25519 SHA256:abc",
            &users(),
        )
        .unwrap();
        assert_eq!(s.user, "runner");
        assert_eq!(s.method, "publickey");
        assert_eq!(s.address.as_deref(), Some("203.0.113.9"));
        assert_eq!(s.port, Some(52144));
        assert!(session("Nov 22 18:00:01 ci-7 sshd[4242]: Accepted password for alice from 203.0.113.9 port 1 ssh2", &users()).is_none());
        assert!(session("2026-11-22T18:00:01.123+00:00 ci-7 sshd[1]: Accepted password for jenkins from ::1 port 22 ssh2", &users()).is_some());
    }

    #[test]
    fn journal_entries_read_as_the_lines_rsyslog_writes() {
        let entry: journal::Entry = [
            (
                "MESSAGE",
                "Accepted publickey for runner from 203.0.113.9 port 51234 ssh2",
            ),
            ("SYSLOG_IDENTIFIER", "sshd"),
            ("_PID", "4242"),
            ("_HOSTNAME", "ci-runner-7"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let line = journal_line(&entry).unwrap();
        assert_eq!(
            line,
            "journal ci-runner-7 sshd[4242]: Accepted publickey for runner from 203.0.113.9 port 51234 ssh2"
        );
        let s = session(&line, &users()).unwrap();
        assert_eq!(
            (s.user.as_str(), s.method.as_str()),
            ("runner", "publickey")
        );
        assert!(journal_line(&journal::Entry::new()).is_none());
    }

    #[test]
    fn sudo_with_a_terminal_only() {
        let tty = "Nov 22 18:00:01 ci-7 sudo:   runner : TTY=pts/0 ; PWD=/home/runner ; USER=root ; COMMAND=/usr/bin/cat /etc/shadow";
        let s = session(tty, &users()).unwrap();
        assert_eq!(s.user, "runner");
        assert_eq!(s.tty.as_deref(), Some("pts/0"));
        assert_eq!(s.command.as_deref(), Some("/usr/bin/cat /etc/shadow"));
        let job = "Nov 22 18:00:01 ci-7 sudo:   runner : PWD=/home/runner/work ; USER=root ; COMMAND=/usr/bin/apt-get install -y jq";
        assert!(session(job, &users()).is_none());
        let job = "Nov 22 18:00:01 ci-7 sudo: runner : TTY=unknown ; PWD=/ ; USER=root ; COMMAND=/bin/true";
        assert!(session(job, &users()).is_none());
        let as_runner = "Nov 22 18:00:01 ci-7 sudo:    alice : TTY=pts/3 ; PWD=/home/alice ; USER=gitlab-runner ; COMMAND=/bin/bash";
        assert_eq!(session(as_runner, &users()).unwrap().user, "gitlab-runner");
    }

    #[test]
    fn su_to_runner_accounts() {
        let s = session(
            "Nov 22 18:00:01 ci-7 su: (to runner) alice on pts/1",
            &users(),
        )
        .unwrap();
        assert_eq!(
            (s.user.as_str(), s.actor.as_deref()),
            ("runner", Some("alice"))
        );
        let u = session(
            "Nov 22 18:00:01 ci-7 su[77]: + /dev/pts/2 alice:jenkins",
            &users(),
        )
        .unwrap();
        assert_eq!(u.user, "jenkins");
        assert!(
            session(
                "Nov 22 18:00:01 ci-7 su: (to root) alice on pts/1",
                &users()
            )
            .is_none()
        );
        assert!(session("Nov 22 18:00:01 ci-7 su: pam_unix(su:session): session opened for user runner(uid=1001) by alice(uid=1000)", &users()).is_none());
    }
}
