//! `type = "audit_log"`: credential reads and process memory access from
//! the Linux audit log.
//!
//! Tails `audit.log` with the `file` source (checkpoints, rotation and
//! acknowledgements come with it), joins the records of one audit event by
//! their serial (`msg=audit(1700000000.123:456):` - SYSCALL, CWD, PATH,
//! PROCTITLE, EXECVE, OBJ_PID ... records with one serial are one event), and
//! emits an event for:
//!
//! - `credential_read`: a PATH record naming a credential file (the
//!   `credential_watch` list, or `credential_paths`), or any record with an
//!   audit key starting with `tailguard-cred` (`-k tailguard-creds` in
//!   `packaging/examples/tailguard.rules`);
//! - `process_memory_read`: a PATH record naming `/proc/<pid>/mem`, or a
//!   `process_vm_readv` system call;
//! - `ptrace`: a `ptrace` system call.
//!
//! An event is complete when its `EOE` record arrives, when a record with
//! another serial arrives, or after `group_timeout`. Lines that are not part
//! of a reported event are acknowledged at once; the lines of a reported
//! event are acknowledged when the event is delivered.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use globset::{GlobSet, GlobSetBuilder};
use serde::Deserialize;

use crate::ack::{AckRef, DeliveryStatus};
use crate::event::{Event, EventBatch, Origin};
use crate::sources::credential_watch;
use crate::sources::file::{self, FileSourceConfig, ReadFrom};
use crate::topology::component::{ComponentTask, SourceContext};

#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditLogConfig {
    /// The audit log (absolute path or glob).
    #[serde(default = "default_path")]
    pub path: String,
    /// Where to start a log that has no checkpoint yet.
    #[serde(default)]
    pub read_from: ReadFrom,
    /// More credential file globs (`**` allowed), besides the built-in list.
    #[serde(default)]
    pub credential_paths: Vec<String>,
    /// An event whose records stopped arriving is complete after this long.
    #[serde(default = "default_group_timeout")]
    #[schemars(with = "String")]
    pub group_timeout: crate::config::HumanDuration,
    /// How often the file is looked at without a notification.
    #[serde(default = "default_poll_interval")]
    #[schemars(with = "String")]
    pub poll_interval: crate::config::HumanDuration,
}

fn default_path() -> String {
    "/var/log/audit/audit.log".into()
}
fn default_group_timeout() -> crate::config::HumanDuration {
    crate::config::HumanDuration(Duration::from_millis(500))
}
fn default_poll_interval() -> crate::config::HumanDuration {
    crate::config::HumanDuration(Duration::from_secs(1))
}

impl AuditLogConfig {
    fn file_config(&self) -> FileSourceConfig {
        let mut file = FileSourceConfig::new(vec![self.path.clone()]);
        file.read_from = self.read_from;
        file.poll_interval = self.poll_interval.0;
        file
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        self.file_config()
            .validate()
            .map_err(|e| e.replace("`include`", "`path`"))?;
        credential_globs(&self.credential_paths).map_err(|e| format!("`credential_paths`: {e}"))?;
        if self.group_timeout.0.is_zero() {
            return Err("`group_timeout` must be greater than 0".into());
        }
        Ok(())
    }
}

/// Globs of credential files in any folder (`**/.aws/credentials`), plus
/// the configured ones.
fn credential_globs(extra: &[String]) -> Result<GlobSet, globset::Error> {
    let mut b = GlobSetBuilder::new();
    for (rel, _) in credential_watch::HOME_FILES {
        b.add(globset::Glob::new(&format!("/**/{rel}"))?);
    }
    for (abs, _) in credential_watch::SYSTEM_FILES {
        b.add(globset::Glob::new(abs)?);
    }
    for f in credential_watch::RUNNER_FILES {
        b.add(globset::Glob::new(&format!("/**/actions-runner/{f}"))?);
    }
    for p in extra {
        b.add(globset::Glob::new(p)?);
    }
    b.build()
}

pub fn build(config: &AuditLogConfig, mut cx: SourceContext) -> anyhow::Result<ComponentTask> {
    config.check().map_err(anyhow::Error::msg)?;
    let (reading, mut rx) = file::build_into_channel(&config.file_config(), &cx)?;
    let mut joiner = Joiner::new(
        credential_globs(&config.credential_paths)?,
        config.group_timeout.0,
        Arc::clone(&cx.name),
        Arc::clone(&cx.context),
    );
    let timeout = config.group_timeout.0;
    Ok(Box::pin(async move {
        let forwarding = async {
            let mut tick = tokio::time::interval((timeout / 2).max(Duration::from_millis(10)));
            loop {
                tokio::select! {
                    batch = rx.recv() => {
                        let Some(batch) = batch else { break };
                        let out = joiner.push(batch);
                        cx.out.send(out).await?;
                    }
                    _ = tick.tick() => {
                        let out = joiner.expire(false);
                        cx.out.send(out).await?;
                    }
                }
            }
            let out = joiner.expire(true);
            cx.out.send(out).await?;
            anyhow::Ok(())
        };
        let (read, forwarded) = tokio::join!(reading, forwarding);
        read.and(forwarded)
    }))
}

/// One audit record: `type=... msg=audit(SECONDS.MILLIS:SERIAL): k=v ...`.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub kind: String,
    pub time: SystemTime,
    pub serial: u64,
    /// Key, value, and whether the value was quoted (an unquoted string
    /// field is hex-encoded).
    pub fields: Vec<(String, String, bool)>,
}

impl Record {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, v, _)| v.as_str())
    }

    fn quoted(&self, key: &str) -> bool {
        self.fields.iter().any(|(k, _, q)| k == key && *q)
    }
}

/// Parses one audit.log line. Values are unquoted; hex-encoded values are
/// left as they are (see [`decode_value`]). The enriched part after `\x1d`
/// (`log_format = ENRICHED`) is parsed too, its keys upper case.
pub fn parse_record(line: &[u8]) -> Option<Record> {
    let line = String::from_utf8_lossy(line);
    let line = line.trim_end();
    let rest = line.strip_prefix("type=")?;
    let (kind, rest) = rest.split_once(' ')?;
    let rest = rest.trim_start().strip_prefix("msg=audit(")?;
    let (stamp, rest) = rest.split_once("):")?;
    let (time, serial) = stamp.split_once(':')?;
    let serial: u64 = serial.parse().ok()?;
    let (secs, millis) = time.split_once('.').unwrap_or((time, "0"));
    let time = UNIX_EPOCH
        + Duration::from_secs(secs.parse().ok()?)
        + Duration::from_millis(millis.parse().unwrap_or(0));
    let rest = rest.replace('\u{1d}', " ");
    Some(Record {
        kind: kind.to_string(),
        time,
        serial,
        fields: fields(&rest),
    })
}

/// `k=v k="v w" k='v'` pairs.
fn fields(text: &str) -> Vec<(String, String, bool)> {
    let mut out = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim();
        let after = &rest[eq + 1..];
        let (value, next, quoted) = match after.chars().next() {
            Some(q @ ('"' | '\'')) => match after[1..].find(q) {
                Some(end) => (&after[1..1 + end], &after[end + 2..], true),
                None => (&after[1..], "", true),
            },
            _ => match after.find(' ') {
                Some(end) => (&after[..end], &after[end..], false),
                None => (after, "", false),
            },
        };
        // A key with spaces is the tail of a malformed pair: keep the last word.
        let key = key.rsplit(' ').next().unwrap_or(key);
        if !key.is_empty() {
            out.push((key.to_string(), value.to_string(), quoted));
        }
        rest = next.trim_start();
    }
    out
}

/// An unquoted string value, which auditd hex-encodes (it had spaces,
/// quotes or control characters), decoded; `(null)` is none. Only for
/// string fields: numbers would be read as hex.
pub fn decode_value(raw: &str) -> Option<String> {
    if raw == "(null)" || raw == "(none)" {
        return None;
    }
    if raw.len() >= 2 && raw.len().is_multiple_of(2) && raw.bytes().all(|b| b.is_ascii_hexdigit()) {
        let bytes: Option<Vec<u8>> = (0..raw.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&raw[i..i + 2], 16).ok())
            .collect();
        if let Some(bytes) = bytes {
            return Some(String::from_utf8_lossy(&bytes).into_owned());
        }
    }
    Some(raw.to_string())
}

/// A record's field as written in the log: quoted values as they are,
/// hex-encoded ones decoded.
fn field(record: &Record, key: &str) -> Option<String> {
    let raw = record.get(key)?;
    if record.quoted(key) {
        Some(raw.to_string())
    } else {
        decode_value(raw)
    }
}

/// The system call name of a SYSCALL record (numbers for x86_64, aarch64
/// and i386 are mapped; interpreted logs carry the name already).
fn syscall_name(record: &Record) -> Option<String> {
    let raw = record.get("SYSCALL").or_else(|| record.get("syscall"))?;
    if raw.parse::<u32>().is_err() {
        return Some(raw.to_string());
    }
    let n: u32 = raw.parse().ok()?;
    let arch = record.get("arch").unwrap_or("c000003e");
    let name = match (arch, n) {
        ("c000003e", 0) => "read",
        ("c000003e", 2) => "open",
        ("c000003e", 101) => "ptrace",
        ("c000003e", 257) => "openat",
        ("c000003e", 310) => "process_vm_readv",
        ("c000003e", 311) => "process_vm_writev",
        ("c000003e", 437) => "openat2",
        ("c00000b7", 56) => "openat",
        ("c00000b7", 63) => "read",
        ("c00000b7", 117) => "ptrace",
        ("c00000b7", 270) => "process_vm_readv",
        ("c00000b7", 437) => "openat2",
        ("40000003", 3) => "read",
        ("40000003", 5) => "open",
        ("40000003", 26) => "ptrace",
        ("40000003", 295) => "openat",
        ("40000003", 347) => "process_vm_readv",
        _ => return Some(raw.to_string()),
    };
    Some(name.to_string())
}

/// The pid in `/proc/<pid>/mem` (or `/proc/<pid>/task/<tid>/mem`).
fn proc_mem_pid(path: &str) -> Option<u32> {
    let rest = path.strip_prefix("/proc/")?;
    let mut parts = rest.split('/');
    let pid: u32 = parts.next()?.parse().ok()?;
    let tail: Vec<&str> = parts.collect();
    match tail.as_slice() {
        ["mem"] => Some(pid),
        ["task", tid, "mem"] => tid.parse().ok(),
        _ => None,
    }
}

/// Whether a process is a CI runner's job worker, from its comm, exe and
/// command line.
pub fn is_runner_worker(comm: Option<&str>, exe: Option<&str>, cmdline: Option<&str>) -> bool {
    let names = ["Runner.Worker", "gitlab-runner", "buildkite-agent"];
    let base = |s: &str| s.rsplit('/').next().unwrap_or(s).to_string();
    if comm.is_some_and(|c| names.contains(&c))
        || exe.is_some_and(|e| names.contains(&base(e).as_str()))
    {
        return true;
    }
    let java = comm == Some("java") || exe.is_some_and(|e| base(e) == "java");
    java && cmdline
        .is_some_and(|c| c.contains("jenkins") || c.contains("agent.jar") || c.contains("remoting"))
}

/// What is known about a process from earlier records.
#[derive(Clone, Debug, Default)]
struct ProcessSeen {
    comm: Option<String>,
    exe: Option<String>,
    cmdline: Option<String>,
}

struct Group {
    records: Vec<Record>,
    first: Instant,
    acks: Vec<AckRef>,
    path: Option<Arc<std::path::Path>>,
}

/// Joins records by serial and turns the interesting events into events.
pub struct Joiner {
    credentials: GlobSet,
    timeout: Duration,
    source: Arc<str>,
    context: Arc<crate::event::Context>,
    open: BTreeMap<u64, Group>,
    processes: HashMap<u32, ProcessSeen>,
    /// Read /proc for targets not seen in the log (recent events only).
    pub proc_fallback: bool,
}

const MAX_PROCESSES: usize = 8192;

impl Joiner {
    pub fn new(
        credentials: GlobSet,
        timeout: Duration,
        source: Arc<str>,
        context: Arc<crate::event::Context>,
    ) -> Self {
        Self {
            credentials,
            timeout,
            source,
            context,
            open: BTreeMap::new(),
            processes: HashMap::new(),
            proc_fallback: true,
        }
    }

    /// Takes a batch of audit.log lines; returns the events completed.
    pub fn push(&mut self, batch: EventBatch) -> EventBatch {
        let mut out = EventBatch::new();
        for mut line in batch {
            let Some(record) = parse_record(&line.body) else {
                line.settle(DeliveryStatus::Delivered);
                continue;
            };
            let serial = record.serial;
            let end = record.kind == "EOE";
            // A record of a new serial completes the events before it.
            let done: Vec<u64> = self.open.keys().copied().filter(|s| *s != serial).collect();
            for s in done {
                if let Some(g) = self.open.remove(&s) {
                    out.extend(self.finish(g));
                }
            }
            let group = self.open.entry(serial).or_insert_with(|| Group {
                records: Vec::new(),
                first: Instant::now(),
                acks: Vec::new(),
                path: line.origin.path.clone(),
            });
            if let Some(ack) = line.ack.take() {
                group.acks.push(ack);
            }
            if !end {
                group.records.push(record);
            }
            if end && let Some(g) = self.open.remove(&serial) {
                out.extend(self.finish(g));
            }
        }
        out
    }

    /// Events whose records stopped arriving (all of them with `all`).
    pub fn expire(&mut self, all: bool) -> EventBatch {
        let done: Vec<u64> = self
            .open
            .iter()
            .filter(|(_, g)| all || g.first.elapsed() >= self.timeout)
            .map(|(s, _)| *s)
            .collect();
        let mut out = EventBatch::new();
        for s in done {
            if let Some(g) = self.open.remove(&s) {
                out.extend(self.finish(g));
            }
        }
        out
    }

    fn remember(&mut self, records: &[Record]) {
        let Some(sys) = records.iter().find(|r| r.kind == "SYSCALL") else {
            return;
        };
        let Some(pid) = sys.get("pid").and_then(|p| p.parse::<u32>().ok()) else {
            return;
        };
        if self.processes.len() >= MAX_PROCESSES {
            self.processes.clear();
        }
        let cmdline = records
            .iter()
            .find(|r| r.kind == "PROCTITLE")
            .and_then(|r| field(r, "proctitle"))
            .map(|p| proctitle(&p));
        self.processes.insert(
            pid,
            ProcessSeen {
                comm: field(sys, "comm"),
                exe: field(sys, "exe"),
                cmdline,
            },
        );
    }

    fn finish(&mut self, group: Group) -> Option<Event> {
        self.remember(&group.records);
        let event = self.classify(&group);
        let acks = group.acks;
        match event {
            Some(mut event) => {
                event.ack = Some(AckRef::new(move |status| {
                    for ack in acks {
                        ack.settle(status);
                    }
                }));
                Some(event)
            }
            None => {
                for ack in acks {
                    ack.settle(DeliveryStatus::Delivered);
                }
                None
            }
        }
    }

    fn classify(&self, group: &Group) -> Option<Event> {
        let records = &group.records;
        let first = records.first()?;
        let sys = records.iter().find(|r| r.kind == "SYSCALL");
        let cwd = records
            .iter()
            .find(|r| r.kind == "CWD")
            .and_then(|r| field(r, "cwd"));
        let key = records
            .iter()
            .find_map(|r| field(r, "key"))
            .map(|k| k.replace('\u{1}', ","));
        let syscall = sys.and_then(syscall_name);
        let paths: Vec<String> = records
            .iter()
            .filter(|r| r.kind == "PATH" && r.get("nametype") != Some("PARENT"))
            .filter_map(|r| field(r, "name"))
            .map(|n| match (&cwd, n.starts_with('/')) {
                (Some(cwd), false) => format!("{}/{n}", cwd.trim_end_matches('/')),
                _ => n,
            })
            .collect();

        let mut target_pid: Option<u32> = None;
        let mut file_path: Option<String> = None;
        let kind = if let Some(p) = paths
            .iter()
            .find_map(|p| proc_mem_pid(p).map(|pid| (p, pid)))
        {
            target_pid = Some(p.1);
            file_path = Some(p.0.clone());
            "process_memory_read"
        } else if syscall.as_deref() == Some("process_vm_readv") {
            target_pid = sys.and_then(|s| arg_pid(s, "a0"));
            "process_memory_read"
        } else if syscall.as_deref() == Some("ptrace") {
            target_pid = sys.and_then(|s| arg_pid(s, "a1"));
            "ptrace"
        } else if let Some(p) = paths.iter().find(|p| self.credentials.is_match(p.as_str())) {
            file_path = Some(p.clone());
            "credential_read"
        } else if key
            .as_deref()
            .is_some_and(|k| k.split(',').any(|k| k.starts_with("tailguard-cred")))
        {
            file_path = paths.first().cloned();
            "credential_read"
        } else {
            return None;
        };
        // The kernel names a traced process in an OBJ_PID record.
        let obj = records.iter().find(|r| r.kind == "OBJ_PID");
        if let Some(opid) = obj.and_then(|o| o.get("opid")).and_then(|p| p.parse().ok()) {
            target_pid.get_or_insert(opid);
        }

        let mut event = Event::new(
            Vec::new(),
            Origin {
                source: Arc::clone(&self.source),
                path: group.path.clone(),
                ..Origin::default()
            },
            Arc::clone(&self.context),
        );
        event.timestamp = Some(first.time);
        let comm = sys.and_then(|s| field(s, "comm"));
        let exe = sys.and_then(|s| field(s, "exe"));
        let pid = sys
            .and_then(|s| s.get("pid"))
            .and_then(|p| p.parse::<u32>().ok());
        let a = &mut event.attributes;
        a.insert("tailguard.misuse.kind", kind);
        a.insert("tailguard.audit.serial", first.serial);
        if let Some(key) = &key {
            a.insert("tailguard.audit.key", key.as_str());
        }
        if let Some(s) = &syscall {
            a.insert("tailguard.audit.syscall", s.as_str());
        }
        if let Some(success) = sys.and_then(|s| s.get("success")) {
            a.insert("tailguard.audit.success", success == "yes");
        }
        if let Some(pid) = pid {
            a.insert("process.pid", u64::from(pid));
        }
        if let Some(ppid) = sys
            .and_then(|s| s.get("ppid"))
            .and_then(|p| p.parse::<u64>().ok())
        {
            a.insert("process.parent_pid", ppid);
        }
        if let Some(exe) = &exe {
            a.insert("process.executable.path", exe.as_str());
        }
        if let Some(comm) = &comm {
            a.insert("process.executable.name", comm.as_str());
        }
        if let Some(cmd) = records
            .iter()
            .find(|r| r.kind == "PROCTITLE")
            .and_then(|r| field(r, "proctitle"))
            .map(|p| proctitle(&p))
        {
            a.insert("process.command_line", cmd);
        }
        let unset = |v: &&str| *v != "4294967295" && *v != "-1" && *v != "unset";
        if let Some(uid) = sys
            .and_then(|s| s.get("auid").filter(unset).or_else(|| s.get("uid")))
            .and_then(|u| u.parse::<u64>().ok())
        {
            a.insert("user.id", uid.to_string());
        }
        if let Some(path) = &file_path {
            a.insert("file.path", path.as_str());
            if kind == "credential_read" {
                a.insert("tailguard.credential.path", path.as_str());
                a.insert("tailguard.credential.kind", credential_watch::kind_of(path));
            }
        }
        let mut target_name = None;
        if let Some(target) = target_pid {
            a.insert("tailguard.audit.target_pid", u64::from(target));
            let seen = self.target(target, obj, first.time);
            let worker = is_runner_worker(
                seen.comm.as_deref(),
                seen.exe.as_deref(),
                seen.cmdline.as_deref(),
            );
            if let Some(c) = &seen.comm {
                a.insert("tailguard.audit.target_comm", c.as_str());
            }
            a.insert("tailguard.audit.target_is_runner_worker", worker);
            target_name = seen.comm;
        }
        let who = format!(
            "{} (pid {})",
            comm.as_deref().unwrap_or("?"),
            pid.map_or_else(|| "?".into(), |p| p.to_string())
        );
        let body = match kind {
            "credential_read" => format!(
                "credential file accessed: {} by {who}",
                file_path.as_deref().unwrap_or("?")
            ),
            "process_memory_read" => format!(
                "process memory read: {who} read the memory of {} (pid {})",
                target_name.as_deref().unwrap_or("?"),
                target_pid.map_or_else(|| "?".into(), |p| p.to_string())
            ),
            _ => format!(
                "ptrace: {who} traced {} (pid {})",
                target_name.as_deref().unwrap_or("?"),
                target_pid.map_or_else(|| "?".into(), |p| p.to_string())
            ),
        };
        event.body = body.into_bytes().into();
        if let Some(path) = &group.path {
            event
                .attributes
                .insert("log.file.path", path.to_string_lossy().as_ref());
        }
        Some(event)
    }

    /// What is known of a target process: OBJ_PID's `ocomm`, earlier
    /// records, and for recent events `/proc`.
    fn target(&self, pid: u32, obj: Option<&Record>, at: SystemTime) -> ProcessSeen {
        let mut seen = self.processes.get(&pid).cloned().unwrap_or_default();
        if let Some(ocomm) = obj.and_then(|o| field(o, "ocomm")) {
            seen.comm.get_or_insert(ocomm);
        }
        let recent = SystemTime::now()
            .duration_since(at)
            .is_ok_and(|d| d < Duration::from_secs(60));
        if seen.comm.is_none() && self.proc_fallback && recent {
            let dir = std::path::PathBuf::from(format!("/proc/{pid}"));
            seen.comm = std::fs::read_to_string(dir.join("comm"))
                .ok()
                .map(|s| s.trim().to_string());
            seen.exe = std::fs::read_link(dir.join("exe"))
                .ok()
                .map(|p| p.to_string_lossy().into_owned());
            seen.cmdline = std::fs::read(dir.join("cmdline")).ok().map(|b| {
                String::from_utf8_lossy(&b)
                    .replace('\0', " ")
                    .trim()
                    .to_string()
            });
        }
        seen
    }
}

/// A pid passed as a hex system call argument.
fn arg_pid(sys: &Record, arg: &str) -> Option<u32> {
    u32::from_str_radix(sys.get(arg)?, 16)
        .ok()
        .filter(|pid| *pid != 0)
}

/// The command line of a PROCTITLE record: hex-decoded, arguments joined by
/// spaces. It may hold secrets passed as arguments; the pipeline's `redact`
/// transform masks them.
fn proctitle(decoded: &str) -> String {
    decoded.replace('\0', " ").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> Event {
        Event::new(text.as_bytes().to_vec(), Origin::default(), Arc::default())
    }

    fn joiner() -> Joiner {
        let mut j = Joiner::new(
            credential_globs(&[]).unwrap(),
            Duration::from_millis(500),
            Arc::from("audit"),
            Arc::default(),
        );
        j.proc_fallback = false;
        j
    }

    #[test]
    fn parses_records_and_hex_values() {
        let r = parse_record(br#"type=PATH msg=audit(1700000000.123:456): item=0 name="/home/runner/.aws/credentials" inode=1 nametype=NORMAL"#).unwrap();
        assert_eq!(r.kind, "PATH");
        assert_eq!(r.serial, 456);
        assert_eq!(r.get("name"), Some("/home/runner/.aws/credentials"));
        let t = parse_record(b"type=PROCTITLE msg=audit(1700000000.123:456): proctitle=636174002F686F6D652F72756E6E65722F2E6177732F63726564656E7469616C73").unwrap();
        assert_eq!(
            proctitle(&field(&t, "proctitle").unwrap()),
            "cat /home/runner/.aws/credentials"
        );
        let q = parse_record(br#"type=PROCTITLE msg=audit(1700000000.123:457): proctitle="cafe""#)
            .unwrap();
        assert_eq!(field(&q, "proctitle").unwrap(), "cafe");
        assert_eq!(decode_value("(null)"), None);
    }

    #[test]
    fn joins_by_serial_and_classifies() {
        let mut j = joiner();
        let mut out = j.push(vec![
            line(r#"type=SYSCALL msg=audit(1700000000.123:456): arch=c000003e syscall=257 success=yes exit=3 a0=ffffff9c a1=7ffd a2=0 a3=0 items=1 ppid=100 pid=200 auid=4294967295 uid=1001 gid=1001 euid=1001 comm="cat" exe="/usr/bin/cat" key="tailguard-creds""#),
            line(r#"type=CWD msg=audit(1700000000.123:456): cwd="/home/runner""#),
            line(r#"type=PATH msg=audit(1700000000.123:456): item=0 name=".aws/credentials" inode=5 nametype=NORMAL"#),
            line(r#"type=PROCTITLE msg=audit(1700000000.123:456): proctitle=636174002E6177732F63726564656E7469616C73"#),
            line(r#"type=SYSCALL msg=audit(1700000001.000:457): arch=c000003e syscall=101 success=yes exit=0 a0=10 a1=4d2 a2=0 a3=0 items=0 ppid=1 pid=300 auid=1000 uid=0 comm="gdb" exe="/usr/bin/gdb" key="tailguard-procmem""#),
            line(r#"type=OBJ_PID msg=audit(1700000001.000:457): opid=1234 oauid=-1 ouid=1001 oses=-1 ocomm="Runner.Worker""#),
        ]);
        out.extend(j.expire(true));
        assert_eq!(out.len(), 2);
        let a = &out[0].attributes;
        assert_eq!(
            a.get("tailguard.misuse.kind").unwrap().to_string(),
            "credential_read"
        );
        assert_eq!(
            a.get("file.path").unwrap().to_string(),
            "/home/runner/.aws/credentials"
        );
        assert_eq!(a.get("user.id").unwrap().to_string(), "1001");
        assert_eq!(
            a.get("process.command_line").unwrap().to_string(),
            "cat .aws/credentials"
        );
        let b = &out[1].attributes;
        assert_eq!(
            b.get("tailguard.misuse.kind").unwrap().to_string(),
            "ptrace"
        );
        assert_eq!(
            b.get("tailguard.audit.target_pid").unwrap().to_string(),
            "1234"
        );
        assert_eq!(
            b.get("tailguard.audit.target_is_runner_worker")
                .unwrap()
                .to_string(),
            "true"
        );
        assert_eq!(b.get("user.id").unwrap().to_string(), "1000");
    }

    #[test]
    fn runner_workers() {
        assert!(is_runner_worker(Some("Runner.Worker"), None, None));
        assert!(is_runner_worker(None, Some("/usr/bin/gitlab-runner"), None));
        assert!(is_runner_worker(
            Some("java"),
            None,
            Some("java -jar agent.jar -jnlpUrl https://jenkins/x")
        ));
        assert!(!is_runner_worker(
            Some("java"),
            None,
            Some("java -jar app.jar")
        ));
        assert!(!is_runner_worker(Some("bash"), Some("/usr/bin/bash"), None));
    }
}
