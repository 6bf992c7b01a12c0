//! Throughput of the detector over a generated, realistic CI log (build output, test output,
//! package installs, digests and ids, and rare secrets at about 1 line in 10,000).
//!
//! `cargo bench --bench detect`. Set `TAILGUARD_BENCH_MIB` to change the log size (default 256)
//! and `TAILGUARD_BENCH_DUMP=/path` to also write the generated log out (for comparing tools).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tailguard::detect::{Detector, DetectorConfig};

mod cilog;
use cilog::{bench_log_bytes, generate_log};

fn bench(c: &mut Criterion) {
    let log = generate_log(bench_log_bytes(256));
    if let Ok(p) = std::env::var("TAILGUARD_BENCH_DUMP") {
        std::fs::write(&p, &log).expect("write log");
    }
    let det = Detector::new(&DetectorConfig {
        fingerprint_key: "bench".into(),
        ..Default::default()
    })
    .unwrap();
    eprintln!(
        "log: {} bytes, {} lines, {} rules",
        log.len(),
        memchr::memchr_iter(b'\n', &log).count(),
        det.rules().len()
    );

    let mut g = c.benchmark_group("detect");
    g.throughput(Throughput::Bytes(log.len() as u64));
    g.sample_size(10);
    // A tailer hands the detector blocks of whole lines (64 KiB reads).
    g.bench_function("scan_blocks_64k", |b| {
        let mut out = Vec::new();
        b.iter(|| {
            out.clear();
            let mut rest = &log[..];
            while !rest.is_empty() {
                let mut end = rest.len().min(64 << 10);
                if end < rest.len() {
                    end = memchr::memrchr(b'\n', &rest[..end]).map_or(end, |p| p + 1);
                }
                det.scan(&rest[..end], &mut out);
                rest = &rest[end..];
            }
            black_box(out.len())
        })
    });
    // One call per line.
    g.bench_function("scan_per_line", |b| {
        let mut out = Vec::new();
        b.iter(|| {
            out.clear();
            for line in log.split(|&b| b == b'\n') {
                det.scan(line, &mut out);
            }
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
