"""Deterministic generator of realistic CI job logs, with rare planted secrets.

The corpus imitates what CI runners write to disk: GitHub Actions job logs
(every line prefixed with a 7-digit fractional UTC timestamp, `##[group]`
markers), GitLab CI traces (ANSI colours, `section_start:` markers) and
Jenkins console logs (`[Pipeline]` steps, bracketed timestamps). Jobs are
made of steps: git checkout, package installs (apt, npm, pip, cargo, maven),
compiler output (cargo/rustc, gcc, tsc, go), test runners (cargo test,
pytest, jest, go test, surefire), docker/BuildKit builds and artifact upload.

About one line in 10,000 (``secret_every``) is a line from
``shared/corpus/secrets/positives.jsonl.gz`` holding a secret; about one in
2,000 is a hard negative from ``negatives.jsonl.gz`` (git SHAs, digests,
UUIDs, placeholders...). Where each secret was planted is recorded in the
manifest (line number, byte offset of the line and of the secret, rule
family, sha256 of the secret); the secret itself is never written anywhere
but the corpus.

Everything derives from ``random.Random(seed)``: the same size and seed give
the same bytes on any machine with Python >= 3.2.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import time
from pathlib import Path

GENERATOR_VERSION = 1

ESC = "\x1b"
C_RESET = ESC + "[0m"
C_BOLD_GREEN = ESC + "[1m" + ESC + "[32m"
C_BOLD_YELLOW = ESC + "[1m" + ESC + "[33m"
C_BOLD_RED = ESC + "[1m" + ESC + "[31m"
C_BOLD_BLUE = ESC + "[1m" + ESC + "[34m"
C_BOLD = ESC + "[1m"
C_GREEN = ESC + "[32m"
C_RED = ESC + "[31m"
C_DIM = ESC + "[2m"
C_CYAN = ESC + "[36m"
GL_CMD = ESC + "[32;1m"
GL_RESET = ESC + "[0;m"
GL_CLEAR = ESC + "[0K"

CRATES = [
    "serde", "serde_json", "tokio", "hyper", "tonic", "prost", "regex", "aho-corasick", "memchr",
    "bytes", "futures-util", "tracing", "tracing-subscriber", "clap", "anyhow", "thiserror", "rand",
    "libc", "syn", "quote", "proc-macro2", "unicode-ident", "once_cell", "parking_lot", "smallvec",
    "itoa", "ryu", "log", "cfg-if", "http", "h2", "tower", "axum", "rustls", "ring", "webpki-roots",
    "base64", "flate2", "crc32fast", "zstd-sys", "toml", "indexmap", "hashbrown", "mio", "socket2",
    "pin-project-lite", "chrono", "time", "uuid", "url", "percent-encoding", "idna", "reqwest",
]
NPM_PKGS = [
    "react", "react-dom", "typescript", "webpack", "@babel/core", "eslint", "jest", "lodash", "axios",
    "express", "vite", "rollup", "@types/node", "prettier", "ts-node", "chalk", "commander", "yargs",
    "dotenv", "uuid", "semver", "glob", "minimatch", "rimraf", "debug", "ws", "inflight", "@jest/core",
]
PY_PKGS = [
    ("requests", "2.31.0"), ("urllib3", "2.2.1"), ("numpy", "1.26.4"), ("pandas", "2.2.1"),
    ("pytest", "8.1.1"), ("pluggy", "1.4.0"), ("boto3", "1.34.69"), ("botocore", "1.34.69"),
    ("pydantic", "2.6.4"), ("fastapi", "0.110.0"), ("click", "8.1.7"), ("Jinja2", "3.1.3"),
    ("MarkupSafe", "2.1.5"), ("certifi", "2024.2.2"), ("idna", "3.6"), ("attrs", "23.2.0"),
    ("coverage", "7.4.4"), ("mypy", "1.9.0"), ("ruff", "0.3.4"), ("PyYAML", "6.0.1"),
]
APT_PKGS = [
    "libssl3", "libssl-dev", "ca-certificates", "curl", "git", "build-essential", "pkg-config",
    "libc6-dev", "gcc-12", "g++-12", "make", "cmake", "python3-pip", "unzip", "zlib1g-dev", "jq",
    "libprotobuf-dev", "protobuf-compiler", "openssh-client", "gnupg", "lsb-release", "wget",
]
MVN_ARTIFACTS = [
    "org/springframework/spring-core/6.1.5/spring-core-6.1.5", "com/fasterxml/jackson/core/jackson-databind/2.17.0/jackson-databind-2.17.0",
    "org/apache/commons/commons-lang3/3.14.0/commons-lang3-3.14.0", "junit/junit/4.13.2/junit-4.13.2",
    "org/slf4j/slf4j-api/2.0.12/slf4j-api-2.0.12", "com/google/guava/guava/33.1.0-jre/guava-33.1.0-jre",
    "org/mockito/mockito-core/5.11.0/mockito-core-5.11.0", "io/netty/netty-handler/4.1.108.Final/netty-handler-4.1.108.Final",
]
WORDS = [
    "config", "parser", "handler", "client", "server", "router", "cache", "store", "queue", "worker",
    "auth", "token", "session", "metrics", "export", "reader", "writer", "codec", "buffer", "retry",
    "backoff", "checkpoint", "schema", "render", "layout", "button", "modal", "api", "db", "migrate",
]
MODULES = ["core", "util", "net", "io", "proto", "cli", "http", "storage", "sync", "telemetry"]
REPOS = ["acme/payments", "acme/web-frontend", "acme/infra", "acme/data-pipeline", "tailguard/tailguard",
         "platform/build-tools", "mobile/app", "acme/search"]
BRANCHES = ["main", "develop", "release/1.4", "feature/login-flow", "fix/flaky-test", "dependabot/cargo/tokio-1.36.0"]
COMMIT_MSGS = ["fix: handle empty config", "feat: add retry budget", "chore(deps): bump tokio",
               "refactor: split reader", "docs: update README", "test: cover rotation", "ci: cache cargo registry",
               "perf: avoid copy in encoder", "Merge pull request #4821 from acme/fix/flaky-test"]
RUST_WARNINGS = [
    ("unused variable: `{w}`", "if this is intentional, prefix it with an underscore: `_{w}`", "`#[warn(unused_variables)]` on by default"),
    ("unused import: `std::collections::HashMap`", "remove the unused import", "`#[warn(unused_imports)]` on by default"),
    ("field `{w}` is never read", "", "`#[warn(dead_code)]` on by default"),
    ("this `if` has identical blocks", "", "`#[warn(clippy::if_same_then_else)]` on by default"),
]
C_WARNINGS = [
    "implicit declaration of function '{w}_init' [-Wimplicit-function-declaration]",
    "unused variable '{w}' [-Wunused-variable]",
    "comparison of integer expressions of different signedness: 'int' and 'size_t' [-Wsign-compare]",
    "'{w}' may be used uninitialized [-Wmaybe-uninitialized]",
]
DOCKER_RUNS = [
    "RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl && rm -rf /var/lib/apt/lists/*",
    "RUN cargo build --release --locked",
    "RUN npm ci --omit=dev",
    "RUN pip install --no-cache-dir -r requirements.txt",
    "COPY . .",
    "COPY --from=build /app/target/release/server /usr/local/bin/server",
    "WORKDIR /app",
    "RUN go build -trimpath -ldflags='-s -w' -o /out/app ./cmd/app",
]


class Secrets:
    """The shared corpus of positives (secrets) and hard negatives."""

    def __init__(self, shared_dir: Path):
        d = shared_dir / "corpus" / "secrets"
        with gzip.open(d / "positives.jsonl.gz", "rt", encoding="utf-8") as f:
            self.positives = [json.loads(l) for l in f if l.strip()]
        self.negatives = []
        neg = d / "negatives.jsonl.gz"
        if neg.exists():
            with gzip.open(neg, "rt", encoding="utf-8") as f:
                self.negatives = [json.loads(l)["line"] for l in f if l.strip()]
        # Drop anything that would break the one-line-per-record assumption.
        self.positives = [p for p in self.positives if "\n" not in p["line"] and "\r" not in p["line"]
                          and p["secret"] in p["line"]]
        self.negatives = [n for n in self.negatives if "\n" not in n and "\r" not in n]


class LineGen:
    """An endless stream of CI log lines. ``next_chunk(n)`` returns n lines
    (str, each ending with '\\n'). Planting of secrets is done by the caller."""

    def __init__(self, seed: int, negatives=()):
        self.rng = random.Random(seed)
        self.negatives = list(negatives)
        r = self.rng
        # Start time: 2026-01-01 plus a seed-dependent offset, so corpora differ.
        self.t = 1767225600.0 + (seed % 1000) * 86400.0
        self._sec = -1
        self._sec_str = ""
        self.style = "gha"
        self.lines = []
        self._job = None
        self.job_no = r.randrange(100000, 900000)

    # ---- timestamps -------------------------------------------------------------------
    def _ts(self) -> str:
        """ISO timestamp with 7 fractional digits (GitHub Actions) at the current time."""
        self.t += self.rng.random() * 0.02
        s = int(self.t)
        if s != self._sec:
            self._sec = s
            self._sec_str = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s))
        return "%s.%07dZ" % (self._sec_str, int((self.t - s) * 1e7))

    def _ts_ms(self) -> str:
        self._ts()
        s = self._sec
        return "%s.%03dZ" % (self._sec_str, int((self.t - s) * 1e3))

    def prefix(self) -> str:
        st = self.style
        if st == "gha":
            return self._ts() + " "
        if st == "jenkins":
            return "[" + self._ts_ms() + "] "
        self._ts()
        return ""  # GitLab traces carry no per-line timestamp

    # ---- helpers ---------------------------------------------------------------------
    def hexs(self, n: int) -> str:
        return "%0*x" % (n, self.rng.getrandbits(n * 4))

    def pick(self, seq):
        return seq[int(self.rng.random() * len(seq))]

    def ver(self) -> str:
        r = self.rng.random
        return "%d.%d.%d" % (int(r() * 3), int(r() * 40), int(r() * 20))

    def path(self, ext: str) -> str:
        p = self.pick
        return "src/%s/%s.%s" % (p(MODULES), p(WORDS), ext)

    # ---- steps: each returns a list of message strings (no prefix, no newline) ----------
    def step_checkout(self):
        r = self.rng.random
        repo = self.pick(REPOS)
        sha = self.hexs(40)
        n = 200 + int(r() * 20000)
        out = [
            "Syncing repository: " + repo,
            "[command]/usr/bin/git version",
            "git version 2.43.0",
            "Temporarily overriding HOME='/home/runner/work/_temp/%s' before making global git config changes" % self.hexs(8),
            "[command]/usr/bin/git config --global --add safe.directory /home/runner/work/%s" % repo.split("/")[1],
            "[command]/usr/bin/git init /home/runner/work/" + repo.split("/")[1],
            "[command]/usr/bin/git remote add origin https://github.com/" + repo,
            "[command]/usr/bin/git -c protocol.version=2 fetch --no-tags --prune --no-recurse-submodules --depth=1 origin +%s:refs/remotes/origin/%s" % (sha, self.pick(BRANCHES)),
            "remote: Enumerating objects: %d, done.        " % n,
        ]
        for pct in (12, 37, 64, 88, 100):
            out.append("remote: Counting objects: %3d%% (%d/%d)        " % (pct, n * pct // 100, n))
        out.append("remote: Compressing objects: 100%% (%d/%d), done.        " % (n * 3 // 4, n * 3 // 4))
        out.append("Receiving objects: 100%% (%d/%d), %.2f MiB | %.2f MiB/s, done." % (n, n, r() * 80, 5 + r() * 60))
        out.append("Resolving deltas: 100%% (%d/%d), done." % (n // 3, n // 3))
        out.append("From https://github.com/" + repo)
        out.append(" * [new ref]         %s -> origin/%s" % (sha, self.pick(BRANCHES)))
        out.append("[command]/usr/bin/git checkout --progress --force -B main refs/remotes/origin/main")
        out.append("Switched to a new branch 'main'")
        out.append("HEAD is now at %s %s" % (sha[:7], self.pick(COMMIT_MSGS)))
        out.append("[command]/usr/bin/git log -1 --format='%H'")
        out.append("'" + sha + "'")
        return out

    def step_apt(self):
        r = self.rng.random
        out = ["Hit:1 http://azure.archive.ubuntu.com/ubuntu jammy InRelease",
               "Get:2 http://azure.archive.ubuntu.com/ubuntu jammy-updates InRelease [128 kB]",
               "Get:3 http://azure.archive.ubuntu.com/ubuntu jammy-security InRelease [129 kB]",
               "Fetched %d kB in %ds (%d kB/s)" % (int(r() * 9000), 1 + int(r() * 5), int(r() * 4000)),
               "Reading package lists...", "Building dependency tree...", "Reading state information..."]
        pk = [self.pick(APT_PKGS) for _ in range(3 + int(r() * 10))]
        out.append("The following NEW packages will be installed:")
        out.append("  " + " ".join(pk))
        out.append("0 upgraded, %d newly installed, 0 to remove and %d not upgraded." % (len(pk), int(r() * 40)))
        for i, p in enumerate(pk):
            v = "%s-0ubuntu%d.%d" % (self.ver(), 1 + int(r() * 3), int(r() * 20))
            out.append("Get:%d http://azure.archive.ubuntu.com/ubuntu jammy-updates/main amd64 %s amd64 %s [%d kB]" % (i + 4, p, v, 10 + int(r() * 3000)))
        for p in pk:
            out.append("Selecting previously unselected package %s:amd64." % p)
            out.append("Preparing to unpack .../%s_%s_amd64.deb ..." % (p, self.ver()))
            out.append("Unpacking %s:amd64 (%s) ..." % (p, self.ver()))
        for p in pk:
            out.append("Setting up %s:amd64 (%s) ..." % (p, self.ver()))
        out.append("Processing triggers for man-db (2.10.2-1) ...")
        return out

    def step_npm(self):
        r = self.rng.random
        out = []
        for _ in range(int(r() * 6)):
            out.append("npm WARN deprecated %s@%s: This module is not supported, and leaks memory. Do not use it." % (self.pick(NPM_PKGS), self.ver()))
        n = 200 + int(r() * 1800)
        out.append("")
        out.append("added %d packages, and audited %d packages in %ds" % (n, n + 1, 5 + int(r() * 60)))
        out.append("")
        out.append("%d packages are looking for funding" % int(r() * 300))
        out.append("  run `npm fund` for details")
        if r() < 0.5:
            out.append("")
            out.append("%d vulnerabilities (%d moderate, %d high)" % (3, 2, 1))
        out.append("> %s@%s build" % (self.pick(WORDS), self.ver()))
        out.append("> tsc -p tsconfig.build.json && vite build")
        for _ in range(int(r() * 8)):
            out.append("%s(%d,%d): error TS2345: Argument of type 'string | undefined' is not assignable to parameter of type 'string'." % (self.path("ts"), 1 + int(r() * 400), 1 + int(r() * 60)))
        out.append(C_CYAN + "vite v5.2.6 " + C_GREEN + "building for production..." + C_RESET)
        out.append("transforming...")
        out.append(C_GREEN + "✓" + C_RESET + " %d modules transformed." % (100 + int(r() * 3000)))
        for _ in range(3 + int(r() * 6)):
            out.append(C_DIM + "dist/" + C_RESET + C_CYAN + "assets/%s-%s.js" % (self.pick(WORDS), self.hexs(8)) + C_RESET + "  %7.2f kB │ gzip: %6.2f kB" % (r() * 800, r() * 200))
        out.append(C_GREEN + "✓ built in %.2fs" % (1 + r() * 30) + C_RESET)
        return out

    def step_pip(self):
        r = self.rng.random
        out = []
        for name, v in [self.pick(PY_PKGS) for _ in range(4 + int(r() * 12))]:
            out.append("Collecting %s==%s" % (name, v))
            out.append("  Downloading %s-%s-py3-none-any.whl (%d kB)" % (name.replace("-", "_"), v, 10 + int(r() * 900)))
            out.append("     ━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━ %.1f/%.1f kB %.1f MB/s eta 0:00:00" % (r() * 900, r() * 900, r() * 90))
        out.append("Installing collected packages: " + ", ".join(p[0] for p in PY_PKGS[: 3 + int(r() * 10)]))
        out.append("Successfully installed " + " ".join("%s-%s" % p for p in PY_PKGS[: 3 + int(r() * 10)]))
        return out

    def step_cargo_build(self):
        r = self.rng.random
        out = []
        color = self.style == "gitlab" or r() < 0.3
        for _ in range(5 + int(r() * 40)):
            c = self.pick(CRATES)
            if color:
                out.append(C_BOLD_GREEN + "   Compiling" + C_RESET + " %s v%s" % (c, self.ver()))
            else:
                out.append("   Compiling %s v%s" % (c, self.ver()))
        for _ in range(int(r() * 4)):
            w = self.pick(WORDS)
            msg, help_, note = self.pick(RUST_WARNINGS)
            ln = 1 + int(r() * 900)
            col = 5 + int(r() * 30)
            out.append((C_BOLD_YELLOW + "warning" + C_RESET + C_BOLD + ": " if color else "warning: ") + msg.format(w=w) + (C_RESET if color else ""))
            out.append("  --> %s:%d:%d" % (self.path("rs"), ln, col))
            out.append("   |")
            out.append("%-3d|     let %s = self.%s.clone();" % (ln, w, w))
            out.append("   |         " + "^" * len(w) + ((" help: " + help_.format(w=w)) if help_ else ""))
            out.append("   |")
            out.append("   = note: " + note)
            out.append("")
        prof = self.pick(["`release` profile [optimized]", "`dev` profile [unoptimized + debuginfo]", "`test` profile [unoptimized + debuginfo]"])
        out.append((C_BOLD_GREEN + "    Finished" + C_RESET if color else "    Finished") + " %s target(s) in %dm %02ds" % (prof, int(r() * 9), int(r() * 60)))
        return out

    def step_cargo_test(self):
        r = self.rng.random
        out = []
        for _ in range(1 + int(r() * 3)):
            out.append("     Running unittests src/lib.rs (target/debug/deps/%s-%s)" % (self.pick(WORDS), self.hexs(16)))
            n = 5 + int(r() * 60)
            out.append("")
            out.append("running %d tests" % n)
            failed = 0
            for _ in range(n):
                t = "%s::tests::%s_%s" % (self.pick(MODULES), self.pick(WORDS), self.pick(WORDS))
                x = r()
                if x < 0.01:
                    out.append("test %s ... FAILED" % t)
                    failed += 1
                elif x < 0.03:
                    out.append("test %s ... ignored" % t)
                else:
                    out.append("test %s ... ok" % t)
            out.append("")
            out.append("test result: %s. %d passed; %d failed; 0 ignored; 0 measured; 0 filtered out; finished in %.2fs"
                       % ("FAILED" if failed else "ok", n - failed, failed, r() * 5))
            out.append("")
        return out

    def step_gcc(self):
        r = self.rng.random
        out = ["make[1]: Entering directory '/builds/%s/src'" % self.pick(REPOS)]
        for _ in range(4 + int(r() * 25)):
            f = "%s/%s" % (self.pick(MODULES), self.pick(WORDS))
            out.append("gcc -O2 -g -Wall -Wextra -fPIC -I../include -DHAVE_CONFIG_H -c -o obj/%s.o %s.c" % (f, f))
            if r() < 0.1:
                out.append("%s.c:%d:%d: warning: %s" % (f, 1 + int(r() * 900), 1 + int(r() * 40), self.pick(C_WARNINGS).format(w=self.pick(WORDS))))
                out.append("  %d |     %s = %s_init(ctx);" % (1 + int(r() * 900), self.pick(WORDS), self.pick(WORDS)))
                out.append("      |     ^~~~~~~~~~~~~~~")
        out.append("ar rcs libcore.a " + " ".join("obj/%s.o" % self.pick(WORDS) for _ in range(6)))
        out.append("make[1]: Leaving directory '/builds/%s/src'" % self.pick(REPOS))
        return out

    def step_go(self):
        r = self.rng.random
        out = ["go: downloading github.com/%s/%s v%s" % (self.pick(WORDS), self.pick(WORDS), self.ver()) for _ in range(int(r() * 8))]
        for _ in range(1 + int(r() * 4)):
            pkg = "github.com/acme/%s/pkg/%s" % (self.pick(WORDS), self.pick(MODULES))
            for _ in range(2 + int(r() * 10)):
                t = "Test%s%s" % (self.pick(WORDS).capitalize(), self.pick(WORDS).capitalize())
                out.append("=== RUN   " + t)
                out.append("--- PASS: %s (%.2fs)" % (t, r() * 0.5))
            out.append("PASS")
            out.append("ok  \t%s\t%.3fs\tcoverage: %.1f%% of statements" % (pkg, r() * 3, r() * 100))
        return out

    def step_pytest(self):
        r = self.rng.random
        out = ["============================= test session starts ==============================",
               "platform linux -- Python 3.11.8, pytest-8.1.1, pluggy-1.4.0",
               "rootdir: /home/runner/work/%s" % self.pick(REPOS).split("/")[1],
               "collected %d items" % (10 + int(r() * 400)), ""]
        n = 5 + int(r() * 30)
        for i in range(n):
            status = "PASSED" if r() > 0.02 else "FAILED"
            col = C_GREEN if status == "PASSED" else C_RED
            out.append("tests/test_%s.py::test_%s_%s %s%s%s%s[%3d%%]" % (
                self.pick(WORDS), self.pick(WORDS), self.pick(WORDS), col, status, C_RESET, " " * 10, (i + 1) * 100 // n))
        out.append(C_GREEN + "======================== %d passed in %.2fs =========================" % (n, r() * 60) + C_RESET)
        return out

    def step_jest(self):
        r = self.rng.random
        out = []
        for _ in range(1 + int(r() * 5)):
            out.append(ESC + "[42m" + ESC + "[1m PASS " + C_RESET + " src/components/%s.test.tsx (%.3f s)" % (self.pick(WORDS).capitalize(), r() * 9))
            for _ in range(2 + int(r() * 6)):
                out.append("  " + C_GREEN + "✓" + C_RESET + " %s %s (%d ms)" % (self.pick(WORDS), self.pick(WORDS), int(r() * 300)))
        out.append("Test Suites: %d passed, %d total" % (7, 7))
        out.append("Tests:       %d passed, %d total" % (60, 60))
        out.append("Time:        %.3f s" % (r() * 40))
        return out

    def step_maven(self):
        r = self.rng.random
        out = ["[INFO] Scanning for projects...", "[INFO] ", "[INFO] " + "-" * 24 + "< com.acme:%s >" % self.pick(WORDS) + "-" * 24]
        for _ in range(3 + int(r() * 10)):
            a = self.pick(MVN_ARTIFACTS)
            out.append("[INFO] Downloading from central: https://repo.maven.apache.org/maven2/%s.pom" % a)
            out.append("[INFO] Downloaded from central: https://repo.maven.apache.org/maven2/%s.pom (%.1f kB at %.1f kB/s)" % (a, r() * 40, r() * 900))
        out.append("[INFO] --- surefire:3.2.5:test (default-test) @ %s ---" % self.pick(WORDS))
        for _ in range(2 + int(r() * 8)):
            out.append("[INFO] Tests run: %d, Failures: 0, Errors: 0, Skipped: %d, Time elapsed: %.3f s - in com.acme.%s.%sTest" % (
                1 + int(r() * 30), int(r() * 2), r() * 4, self.pick(MODULES), self.pick(WORDS).capitalize()))
        out.append("[INFO] BUILD SUCCESS")
        out.append("[INFO] Total time:  %.3f s" % (r() * 120))
        return out

    def step_docker(self):
        r = self.rng.random
        out = ["#0 building with \"default\" instance using docker driver", "",
               "#1 [internal] load build definition from Dockerfile",
               "#1 transferring dockerfile: %dB done" % (200 + int(r() * 2000)), "#1 DONE 0.0s", "",
               "#2 [internal] load metadata for docker.io/library/rust:1.77-slim",
               "#2 DONE %.1fs" % (r() * 3), ""]
        k = 3
        steps = 3 + int(r() * 6)
        for i in range(steps):
            run = self.pick(DOCKER_RUNS)
            out.append("#%d [build %d/%d] %s" % (k, i + 1, steps, run))
            if r() < 0.4:
                out.append("#%d CACHED" % k)
            else:
                for _ in range(int(r() * 12)):
                    out.append("#%d %.3f    Compiling %s v%s" % (k, r() * 200, self.pick(CRATES), self.ver()))
                out.append("#%d DONE %.1fs" % (k, r() * 120))
            out.append("")
            k += 1
        out.append("#%d exporting to image" % k)
        out.append("#%d exporting layers %.1fs done" % (k, r() * 9))
        out.append("#%d writing image sha256:%s done" % (k, self.hexs(64)))
        out.append("#%d naming to ghcr.io/%s:%s done" % (k, self.pick(REPOS), self.hexs(7)))
        out.append("#%d DONE %.1fs" % (k, r() * 9))
        return out

    def step_upload(self):
        r = self.rng.random
        return ["With the provided path, there will be %d files uploaded" % (1 + int(r() * 300)),
                "Artifact name is valid!", "Root directory input is valid!",
                "Beginning upload of artifact content to blob storage",
                "Uploaded bytes %d" % int(r() * 1e8),
                "Finished uploading artifact content to blob storage!",
                "SHA256 hash of uploaded artifact zip is %s" % self.hexs(64),
                "Artifact %s.zip successfully finalized. Artifact ID %d" % (self.pick(WORDS), int(r() * 1e9))]

    STEPS = [
        ("actions/checkout@v4", "step_checkout", 1.0),
        ("sudo apt-get update && sudo apt-get install -y", "step_apt", 0.5),
        ("npm ci && npm run build", "step_npm", 0.6),
        ("pip install -r requirements.txt", "step_pip", 0.5),
        ("cargo build --release --locked", "step_cargo_build", 0.9),
        ("cargo test --locked", "step_cargo_test", 0.8),
        ("make -j4", "step_gcc", 0.4),
        ("go test ./...", "step_go", 0.5),
        ("pytest -q --cov", "step_pytest", 0.5),
        ("npx jest --ci", "step_jest", 0.4),
        ("mvn -B verify", "step_maven", 0.3),
        ("docker buildx build --push -t ghcr.io/acme/app .", "step_docker", 0.6),
        ("actions/upload-artifact@v4", "step_upload", 0.4),
    ]

    def _job_lines(self):
        """One whole job, as a list of message strings, in the current style."""
        r = self.rng.random
        self.job_no += 1
        st = self.style
        steps = [s for s in self.STEPS if r() < s[2]]
        out = []
        if st == "gha":
            out += ["Current runner version: '2.314.1'", "Runner name: 'runner-%s'" % self.hexs(6),
                    "##[group]Operating System", "Ubuntu", "22.04.4", "LTS", "##[endgroup]",
                    "##[group]GITHUB_TOKEN Permissions", "Contents: read", "Metadata: read", "##[endgroup]",
                    "Secret source: Actions", "Prepare workflow directory", "Prepare all required actions"]
            for name, fn, _ in steps:
                out.append("##[group]Run " + name)
                out.append("##[endgroup]")
                out += getattr(self, fn)()
            out.append("Post job cleanup.")
            out.append("Cleaning up orphan processes")
        elif st == "gitlab":
            out += ["Running with gitlab-runner 16.10.0 (81ab07f6)",
                    "  on runner-%s %s, system ID: s_%s" % (self.hexs(8), self.hexs(8), self.hexs(12)),
                    GL_CLEAR + "section_start:%d:prepare_executor\r" % int(self.t) + GL_CLEAR + C_BOLD + "Preparing the \"docker\" executor" + GL_RESET,
                    "Using Docker executor with image rust:1.77 ...",
                    "Using docker image sha256:%s for rust:1.77 with digest rust@sha256:%s ..." % (self.hexs(64), self.hexs(64)),
                    GL_CLEAR + "section_end:%d:prepare_executor\r" % int(self.t) + GL_CLEAR]
            for name, fn, _ in steps:
                out.append(GL_CMD + "$ " + name + GL_RESET)
                out += getattr(self, fn)()
            out.append(GL_CLEAR + "section_end:%d:step_script\r" % int(self.t) + GL_CLEAR)
            out.append(GL_CMD + "Job succeeded" + GL_RESET)
        else:  # jenkins
            out += ["Started by GitHub push by dev-%s" % self.hexs(4), "Running in Durability level: MAX_SURVIVABILITY",
                    "[Pipeline] Start of Pipeline", "[Pipeline] node", "Running on agent-%s in /var/jenkins/workspace/%s" % (self.hexs(5), self.pick(WORDS))]
            for name, fn, _ in steps:
                out.append("[Pipeline] stage")
                out.append("[Pipeline] { (%s)" % name.split()[0])
                out.append("[Pipeline] sh")
                out.append("+ " + name)
                out += getattr(self, fn)()
                out.append("[Pipeline] }")
            out.append("[Pipeline] End of Pipeline")
            out.append("Finished: SUCCESS")
        return out

    def next_lines(self, n: int, negative_every: int = 2000):
        """At least ``n`` complete lines (with prefix and newline)."""
        res = []
        r = self.rng.random
        while len(res) < n:
            if not self._job:
                x = r()
                self.style = "gha" if x < 0.55 else ("gitlab" if x < 0.8 else "jenkins")
                self._job = self._job_lines()
                self._job.reverse()
            job = self._job
            pre = self.prefix
            take = min(len(job), n - len(res) + 1)
            for _ in range(take):
                msg = job.pop()
                if self.negatives and r() * negative_every < 1.0:
                    res.append(pre() + self.pick(self.negatives) + "\n")
                res.append(pre() + msg + "\n")
        return res

    def secret_line(self, pos):
        """A planted line: (full line, byte offset of the secret within it, record)."""
        pre = self.prefix()
        line = pos["line"]
        return pre + line + "\n", len(pre.encode()) + line.encode().find(pos["secret"].encode())


def parse_size(s: str) -> int:
    s = s.strip()
    units = {"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "kb": 1000, "mb": 10**6, "gb": 10**9,
             "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "b": 1, "": 1}
    num = s.rstrip("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    unit = s[len(num):].lower()
    if unit not in units:
        raise ValueError("unknown size unit in %r (use B, KiB, MiB, GiB)" % s)
    return int(float(num) * units[unit])


def fmt_size(n: int) -> str:
    for unit, f in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= f and n % f == 0:
            return "%d%s" % (n // f, unit)
    return "%dB" % n


def sha256_hex(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()


def generate(path: Path, size: int, seed: int, secrets: Secrets, secret_every: int = 10000,
             progress=None) -> dict:
    """Write a corpus of about ``size`` bytes (whole lines; stops at the first line
    boundary at or past ``size``) to ``path``; return the manifest."""
    gen = LineGen(seed, secrets.negatives)
    srng = random.Random(seed ^ 0x5EC12E75)
    planted = []
    nbytes = 0
    nlines = 0
    next_secret = int(secret_every * (0.5 + srng.random()))
    tmp = path.with_suffix(".tmp")
    t0 = time.monotonic()
    last_report = t0
    with open(tmp, "wb", buffering=0) as f:
        while nbytes < size:
            want = min(4096, next_secret - nlines) if next_secret > nlines else 0
            if want > 0:
                lines = gen.next_lines(want)
                # next_lines may overshoot by one line (plus a negative); fine.
                data = "".join(lines).encode()
                room = size - nbytes
                if len(data) > room:
                    # Cut at the first line boundary at or after `room`.
                    cut = data.find(b"\n", room - 1)
                    if cut >= 0:
                        data = data[: cut + 1]
                        lines = None
                f.write(data)
                nbytes += len(data)
                nlines += data.count(b"\n") if lines is None else len(lines)
            else:
                pos = srng.choice(secrets.positives)
                line, secret_off = gen.secret_line(pos)
                data = line.encode()
                planted.append({
                    "line": nlines + 1,
                    "offset": nbytes,
                    "secret_offset": nbytes + secret_off,
                    "secret_len": len(pos["secret"].encode()),
                    "rule_family": pos["rule_family"],
                    "class": pos["class"],
                    "sha256": sha256_hex(pos["secret"]),
                })
                f.write(data)
                nbytes += len(data)
                nlines += 1
                next_secret = nlines + max(1, int(secret_every * (0.5 + srng.random())))
            now = time.monotonic()
            if progress and now - last_report > 5:
                last_report = now
                progress("  corpus: %d MiB of %d MiB written (%.0f MiB/s)" % (nbytes >> 20, size >> 20, nbytes / (1 << 20) / (now - t0)))
    os.replace(tmp, path)
    return {
        "empty_lines": count_empty_lines(path),
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "requested_size": size,
        "bytes": nbytes,
        "lines": nlines,
        "secret_every": secret_every,
        "planted": planted,
        "generation_seconds": round(time.monotonic() - t0, 2),
    }


def count_empty_lines(path: Path) -> int:
    """Lines with nothing on them (some shippers, e.g. otelcol's filelog, skip them)."""
    import re
    rx = re.compile(rb"(?<=\n)\n")
    n = 0
    prev_nl = True  # the start of the file is the start of a line
    with open(path, "rb") as f:
        while True:
            b = f.read(8 << 20)
            if not b:
                break
            n += len(rx.findall(b))
            if prev_nl and b[:1] == b"\n":
                n += 1
            prev_nl = b[-1:] == b"\n"
    return n


def ensure_corpus(cache_dir: Path, size: int, seed: int, shared_dir: Path, progress=print):
    """The cached corpus for (size, seed), generating it when missing.
    Returns (path of corpus file, manifest dict)."""
    d = cache_dir / ("corpus-%s-seed%d-v%d" % (fmt_size(size), seed, GENERATOR_VERSION))
    corpus = d / "corpus.log"
    manifest_path = d / "manifest.json"
    if corpus.exists() and manifest_path.exists():
        m = json.loads(manifest_path.read_text())
        if m.get("bytes") == corpus.stat().st_size:
            if "empty_lines" not in m:
                m["empty_lines"] = count_empty_lines(corpus)
                manifest_path.write_text(json.dumps(m, indent=1))
            return corpus, m
    d.mkdir(parents=True, exist_ok=True)
    progress("generating %s corpus (seed %d) in %s" % (fmt_size(size), seed, d))
    secrets = Secrets(shared_dir)
    m = generate(corpus, size, seed, secrets, progress=progress)
    tmp = manifest_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(m, indent=1))
    os.replace(tmp, manifest_path)
    progress("  corpus: %.1f MiB, %d lines, %d planted secrets, %.1f s" % (
        m["bytes"] / (1 << 20), m["lines"], len(m["planted"]), m["generation_seconds"]))
    return corpus, m


def warm_page_cache(path: Path) -> None:
    """Reads `path` once so that a timed run reads it from the page cache, not the disk.

    Done before each scan, not once: this VM's page cache holds only about 1.5 GiB
    whatever memory is free, and other runs push part of a 1 GiB corpus out of it. Re-reading
    it from disk added up to 0.7 s of system time to a 0.9 CPU-s scan."""
    with open(path, "rb") as f:
        while f.read(16 << 20):
            pass


def slice_of(corpus: Path, manifest: dict, size: int):
    """The first ``size`` bytes of the corpus (cut after a whole line), cached beside it,
    with a manifest restricted to it."""
    if size >= manifest["bytes"]:
        return corpus, manifest
    p = corpus.with_name("slice-%s.log" % fmt_size(size))
    if not p.exists():
        with open(corpus, "rb") as f:
            data = f.read(size)
        data = data[: data.rfind(b"\n") + 1]
        tmp = p.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, p)
    n = p.stat().st_size
    with open(p, "rb") as f:
        lines = sum(b.count(b"\n") for b in iter(lambda: f.read(8 << 20), b""))
    m = dict(manifest)
    m["bytes"] = n
    m["lines"] = lines
    m["planted"] = [s for s in manifest["planted"] if s["offset"] < n]
    m.pop("empty_lines", None)
    return p, m
