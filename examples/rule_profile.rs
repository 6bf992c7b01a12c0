//! Where detection spends its time on a given log: keyword-prefilter hits, and per rule the
//! lines it was tried on, those its regex ran on (the rest failed a cheaper check:
//! `requires`, `requires_after_keyword`, or for generic rules a test-runner result line),
//! the time it took and the size its search cache grew to, slowest first.
//!
//! `cargo run --release --example rule_profile -- FILE [TOP]`

use std::time::Instant;

use tailguard::detect::{Detector, DetectorConfig};

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: rule_profile FILE [TOP]");
    let top: usize = args
        .next()
        .map_or(25, |n| n.parse().expect("TOP is a number"));
    let input = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    // with the capacity `tailguard scan` gives the lazy DFAs, so the times are the scan's
    let detector = Detector::new(&DetectorConfig {
        lazy_dfa_capacity: Some(tailguard::scan::SCAN_LAZY_DFA_CAPACITY),
        ..DetectorConfig::default()
    })
    .expect("built-in rules compile");
    let lines = memchr::memchr_iter(b'\n', &input).count();
    let t = Instant::now();
    let hits = detector.keyword_hits(&input);
    let prefilter = t.elapsed();
    let mut rules = detector.profile_rules(&input);
    rules.sort_by_key(|r| std::cmp::Reverse(r.nanos));
    let total: u128 = rules.iter().map(|r| r.nanos).sum();
    let cache: usize = rules.iter().map(|r| r.cache_bytes).sum();
    println!(
        "{} MiB, {lines} lines: {hits} keyword hits, prefilter {:.0} ms, rules {:.0} ms, \
         regex caches {} KiB",
        input.len() >> 20,
        prefilter.as_secs_f64() * 1e3,
        total as f64 / 1e6,
        cache >> 10
    );
    for rule in rules.iter().take(top) {
        println!(
            "{:>9.1} ms {:>9} lines {:>9} regex runs {:>6} KiB cache  {}",
            rule.nanos as f64 / 1e6,
            rule.lines,
            rule.regex_runs,
            rule.cache_bytes >> 10,
            rule.id
        );
    }
}
