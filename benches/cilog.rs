//! Deterministic generator of a realistic CI log (shared by the bench and the profiling example).

#![allow(dead_code)]

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
    fn chars(&mut self, alphabet: &[u8], n: usize) -> String {
        (0..n)
            .map(|_| alphabet[self.below(alphabet.len() as u64) as usize] as char)
            .collect()
    }
    fn hex(&mut self, n: usize) -> String {
        self.chars(b"0123456789abcdef", n)
    }
    fn alnum(&mut self, n: usize) -> String {
        self.chars(
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
            n,
        )
    }
}

const CRATES: &[&str] = &[
    "serde", "tokio", "regex", "hyper", "clap", "rand", "syn", "quote", "libc", "bytes", "tracing",
    "futures",
];
const NPM: &[&str] = &[
    "react",
    "lodash",
    "webpack",
    "typescript",
    "eslint",
    "jest",
    "@babel/core",
    "express",
    "axios",
    "vite",
];
const PY: &[&str] = &[
    "requests",
    "numpy",
    "pandas",
    "pytest",
    "urllib3",
    "certifi",
    "idna",
    "setuptools",
    "wheel",
    "boto3",
];
const WORDS: &[&str] = &[
    "build",
    "deploy",
    "cache",
    "restore",
    "upload",
    "artifact",
    "runner",
    "checkout",
    "workspace",
    "module",
    "service",
    "config",
];

fn secret_line(r: &mut Rng) -> String {
    match r.below(6) {
        0 => format!("export GH_TOKEN=ghp_{}", r.alnum(36)),
        1 => format!(
            "+ aws configure set aws_access_key_id AKIA{}",
            r.chars(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)
        ),
        2 => format!(
            "DATABASE_URL=postgres://app:{}@db.internal:5432/app",
            r.alnum(18)
        ),
        3 => format!(
            "curl -H \"Authorization: Bearer xoxb-{}-{}-{}\" https://slack.test/api",
            r.chars(b"0123456789", 12),
            r.chars(b"0123456789", 13),
            r.alnum(24)
        ),
        4 => format!(
            "  npm_config_//registry.npmjs.org/:_authToken=npm_{}",
            r.alnum(36)
        ),
        _ => format!("glpat-{} used for clone", r.alnum(20)),
    }
}

fn ordinary_line(r: &mut Rng) -> String {
    match r.below(22) {
        0 => format!(
            "   Compiling {} v1.{}.{}",
            r.pick(CRATES),
            r.below(40),
            r.below(20)
        ),
        1 => format!(
            "    Finished `release` profile [optimized] target(s) in {}.{}s",
            r.below(300),
            r.below(100)
        ),
        2 => format!(
            "test {}::tests::{}_{} ... ok",
            r.pick(CRATES),
            r.pick(WORDS),
            r.below(1000)
        ),
        3 => format!(
            "npm WARN deprecated {}@{}.{}.{}: this package is no longer supported",
            r.pick(NPM),
            r.below(9),
            r.below(30),
            r.below(10)
        ),
        4 => format!(
            "added {} packages, and audited {} packages in {}s",
            r.below(2000),
            r.below(3000),
            r.below(90)
        ),
        5 => format!(
            "Collecting {}=={}.{}.{}",
            r.pick(PY),
            r.below(5),
            r.below(40),
            r.below(10)
        ),
        6 => format!(
            "  Downloading https://files.pythonhosted.org/packages/{}/{}/{}/{}-2.31.0-py3-none-any.whl ({} kB)",
            r.hex(2),
            r.hex(2),
            r.hex(60),
            r.pick(PY),
            r.below(900)
        ),
        7 => format!(
            "HEAD is now at {} Merge pull request #{} from acme/{}",
            r.hex(7),
            r.below(9000),
            r.pick(WORDS)
        ),
        8 => format!(
            "#{} [{}/{}] RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl",
            r.below(20),
            r.below(9),
            r.below(12)
        ),
        9 => format!(
            "#{} sha256:{} {}.{}MB / {}.{}MB {}.{}s done",
            r.below(20),
            r.hex(64),
            r.below(90),
            r.below(9),
            r.below(90),
            r.below(9),
            r.below(9),
            r.below(9)
        ),
        10 => format!(
            "go: downloading github.com/{}/{} v0.{}.{}",
            r.pick(WORDS),
            r.pick(CRATES),
            r.below(30),
            r.below(9)
        ),
        11 => format!(
            "> Task :app:compile{}Java UP-TO-DATE",
            r.pick(&["Debug", "Release", "Test", ""])
        ),
        12 => format!(
            "[INFO] Downloading from central: https://repo.maven.apache.org/maven2/org/apache/{}/{}/3.{}.{}/{}.pom",
            r.pick(WORDS),
            r.pick(WORDS),
            r.below(9),
            r.below(9),
            r.pick(WORDS)
        ),
        13 => format!(
            "tests/test_{}.py::test_{}_{} PASSED                          [ {}%]",
            r.pick(WORDS),
            r.pick(WORDS),
            r.below(99),
            r.below(100)
        ),
        14 => format!(
            "deployment.apps/{}-{} configured",
            r.pick(WORDS),
            r.pick(WORDS)
        ),
        15 => format!(
            "Cache restored from key: {}-cargo-{}",
            r.pick(&["Linux", "macOS", "Windows"]),
            r.hex(64)
        ),
        16 => format!("Run actions/checkout@{}", r.hex(40)),
        17 => format!("  \"integrity\": \"sha512-{}==\",", r.alnum(86)),
        18 => format!(
            "request_id={}-{}-{}-{}-{} status=200 duration={}ms",
            r.hex(8),
            r.hex(4),
            r.hex(4),
            r.hex(4),
            r.hex(12),
            r.below(900)
        ),
        19 => "  GITHUB_TOKEN: ***".to_string(),
        20 => format!(
            "warning: unused variable: `{}` --> src/{}.rs:{}:{}",
            r.pick(WORDS),
            r.pick(WORDS),
            r.below(900),
            r.below(80)
        ),
        _ => format!(
            "[{:02}:{:02}:{:02}] {} {} {} in {} ms",
            r.below(24),
            r.below(60),
            r.below(60),
            r.pick(WORDS),
            r.pick(WORDS),
            r.pick(&["succeeded", "started", "skipped"]),
            r.below(5000)
        ),
    }
}

/// Deterministic CI log of about `bytes` bytes.
/// The log size for a benchmark: `TAILGUARD_BENCH_MIB` MiB, else `default_mib`.
pub fn bench_log_bytes(default_mib: usize) -> usize {
    let mib = std::env::var("TAILGUARD_BENCH_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_mib);
    mib << 20
}

pub fn generate_log(bytes: usize) -> Vec<u8> {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::with_capacity(bytes + 256);
    let mut n = 0u64;
    while out.len() < bytes {
        // GitHub Actions style timestamp prefix
        out.extend_from_slice(
            format!(
                "2026-11-22T{:02}:{:02}:{:02}.{:07}Z ",
                (n / 36000) % 24,
                (n / 600) % 60,
                (n / 10) % 60,
                r.below(10_000_000)
            )
            .as_bytes(),
        );
        let line = if r.below(10_000) == 0 {
            secret_line(&mut r)
        } else {
            ordinary_line(&mut r)
        };
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
        n += 1;
    }
    out
}
