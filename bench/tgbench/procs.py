"""Processes under measurement: start, sample CPU and memory from /proc, scrape
Prometheus metrics, stop and collect rusage."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
MiB = 1 << 20
GiB = 1 << 30


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 15.0, proc=None) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.02)
    return False


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a live process, in seconds (all its threads)."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def mem_kib(pid: int) -> dict:
    """VmRSS and VmHWM (peak RSS) of a live process, in KiB."""
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    k, v = line.split(":", 1)
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out


_METRIC = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(url: str, timeout: float = 2.0):
    """Prometheus text -> list of (name, {labels}, value); None when unreachable."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            text = r.read().decode("utf-8", "replace")
    except Exception:
        return None
    out = []
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        m = _METRIC.match(line)
        if not m:
            continue
        labels = dict(_LABEL.findall(m.group(3) or ""))
        try:
            v = float(m.group(4))
        except ValueError:
            continue
        out.append((m.group(1), labels, v))
    return out


def metric_sum(samples, name_re: str, **labels) -> float:
    rx = re.compile(name_re)
    tot = 0.0
    for n, l, v in samples or ():
        if rx.fullmatch(n) and all(l.get(k) == want for k, want in labels.items()):
            tot += v
    return tot


class Proc:
    """A child process with its output in files, stopped with SIGTERM and reaped
    with wait4 so its rusage (CPU, max RSS) is known."""

    def __init__(self, name: str, argv: list, run_dir: Path, env=None, stdin=None, cwd=None):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.out_path = run_dir / ("%s.stdout" % name)
        self.err_path = run_dir / ("%s.stderr" % name)
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        self.t_start = time.monotonic()
        self.p = subprocess.Popen(self.argv, stdout=self._out, stderr=self._err, stdin=stdin if stdin is not None else subprocess.DEVNULL,
                                  env=env, cwd=cwd, start_new_session=True)
        self.pid = self.p.pid
        self.rusage = None
        self.hwm_kib = 0
        self.exit_code = None
        self.t_exit = None

    def alive(self) -> bool:
        if self.exit_code is not None:
            return False
        pid, status, ru = os.wait4(self.pid, os.WNOHANG)
        if pid == 0:
            return True
        self._reaped(status, ru)
        return False

    def _reaped(self, status, ru):
        self.t_exit = time.monotonic()
        self.exit_code = os.waitstatus_to_exitcode(status)
        self.p.returncode = self.exit_code
        self.rusage = ru
        self._out.close()
        self._err.close()

    def wait(self, timeout: float):
        """Wait for the exit, sampling VmHWM meanwhile (ru_maxrss from wait4 is no good
        here: Linux carries the harness' own peak RSS over fork+exec into it)."""
        deadline = time.monotonic() + timeout
        while self.alive():
            m = mem_kib(self.pid)
            if m:
                self.hwm_kib = max(self.hwm_kib, m.get("VmHWM", 0))
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def stop(self, timeout: float = 20.0):
        """SIGTERM, then SIGKILL after ``timeout``. Returns the exit code."""
        if self.alive():
            try:
                os.kill(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            if not self.wait(timeout):
                try:
                    os.kill(self.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.wait(10)
        return self.exit_code

    def cpu(self) -> float | None:
        return cpu_seconds(self.pid)

    def mem(self) -> dict:
        return mem_kib(self.pid)

    def rusage_cpu(self) -> float | None:
        if self.rusage is None:
            return None
        return self.rusage.ru_utime + self.rusage.ru_stime

    def stderr_tail(self, n: int = 5) -> str:
        try:
            lines = self.err_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(l[:300] for l in lines[-n:])
