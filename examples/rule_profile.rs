//! Where detection spends its time on a given log: keyword-prefilter hits, and per rule the
//! lines its regex was tried on and the time it took, slowest first.
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
    let detector = Detector::new(&DetectorConfig::default()).expect("built-in rules compile");
    let lines = memchr::memchr_iter(b'\n', &input).count();
    let t = Instant::now();
    let hits = detector.keyword_hits(&input);
    let prefilter = t.elapsed();
    let mut rules = detector.profile_rules(&input);
    rules.sort_by_key(|r| std::cmp::Reverse(r.1));
    let total: u128 = rules.iter().map(|r| r.1).sum();
    println!(
        "{} MiB, {lines} lines: {hits} keyword hits, prefilter {:.0} ms, rules {:.0} ms",
        input.len() >> 20,
        prefilter.as_secs_f64() * 1e3,
        total as f64 / 1e6
    );
    for (id, ns, tried) in rules.iter().take(top) {
        println!("{:>9.1} ms {tried:>9} lines  {id}", *ns as f64 / 1e6);
    }
}
