//! Scores the detector on the shared corpus (`positives`, `negatives`, `encoded_variants`).
//!
//! Corpus directory: see `common::corpus::dir` (a missing corpus skips on a
//! developer machine and fails under CI).

mod common;

use std::collections::BTreeMap;

use tailguard::detect::{Detector, DetectorConfig, Finding, Method};

use common::corpus::{dir as corpus_dir, field as s, read_jsonl_gz};

fn pct(a: usize, b: usize) -> f64 {
    if b == 0 {
        100.0
    } else {
        100.0 * a as f64 / b as f64
    }
}

#[test]
fn corpus_scores() {
    let Some(dir) = corpus_dir() else { return };
    let det = Detector::new(&DetectorConfig {
        fingerprint_key: "corpus-test".into(),
        ..Default::default()
    })
    .unwrap();
    let verbose = std::env::var("TAILGUARD_CORPUS_VERBOSE").is_ok();

    // positives
    let pos = read_jsonl_gz(dir.join("positives.jsonl.gz"));
    let mut hit = 0;
    let mut exact = 0;
    let mut fam: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let (mut crc_total, mut crc_agree) = (0, 0);
    let mut out: Vec<Finding> = Vec::new();
    for p in &pos {
        let line = s(p, "line").as_bytes();
        let secret = s(p, "secret").as_bytes();
        out.clear();
        det.scan(line, &mut out);
        if let Some(cv) = p.get("checksum_valid").and_then(|v| v.as_bool())
            && let Some(f) = out.iter().find(|f| f.checksum_valid.is_some())
        {
            crc_total += 1;
            if f.checksum_valid == Some(cv) {
                crc_agree += 1;
            }
        }
        let e = fam.entry(s(p, "rule_family").to_string()).or_default();
        e.0 += 1;
        if !out.is_empty() {
            hit += 1;
            let start = memchr::memmem::find(line, secret);
            if let Some(st) = start
                && out.iter().any(|f| f.range == (st..st + secret.len()))
            {
                exact += 1;
            }
        } else {
            e.1 += 1;
            if verbose {
                println!(
                    "MISS [{}] {}",
                    s(p, "rule_family"),
                    det.fingerprint(secret).short()
                );
            }
        }
    }
    // negatives
    let neg = read_jsonl_gz(dir.join("negatives.jsonl.gz"));
    let mut fp_lines = 0;
    let mut fp_kinds: BTreeMap<String, usize> = BTreeMap::new();
    let mut fp_rules: BTreeMap<String, usize> = BTreeMap::new();
    for n in &neg {
        out.clear();
        det.scan(s(n, "line").as_bytes(), &mut out);
        if !out.is_empty() {
            fp_lines += 1;
            *fp_kinds.entry(s(n, "kind").to_string()).or_default() += 1;
            for f in &out {
                *fp_rules.entry(f.rule_id.to_string()).or_default() += 1;
            }
        }
    }
    // encoded variants: register each plain secret as a known value
    let enc = read_jsonl_gz(dir.join("encoded_variants.jsonl.gz"));
    let mut enc_hit = 0;
    let mut enc_exact_cover = 0;
    for v in &enc {
        let mut kv = det.new_known_values();
        kv.register_plaintext(s(v, "plain_secret").as_bytes());
        let line = s(v, "line").as_bytes();
        let encoded = s(v, "encoded").as_bytes();
        out.clear();
        det.scan_with(line, Some(&kv), &mut out);
        let known: Vec<&Finding> = out
            .iter()
            .filter(|f| !matches!(f.method, Method::Pattern))
            .collect();
        if !known.is_empty() {
            enc_hit += 1;
            if let Some(st) = memchr::memmem::find(line, encoded)
                && known
                    .iter()
                    .any(|f| f.range.start <= st + 2 && f.range.end + 2 >= st + encoded.len())
            {
                enc_exact_cover += 1;
            }
        } else {
            println!("ENCODED MISS transform={}", s(v, "transform"));
        }
    }

    let recall = pct(hit, pos.len());
    let exact_recall = pct(exact, pos.len());
    let fp_pct = pct(fp_lines, neg.len());
    let enc_recall = pct(enc_hit, enc.len());
    println!(
        "== tailguard corpus scores ({} rules) ==",
        det.rules().len()
    );
    println!("line recall          {hit}/{} = {recall:.2}%", pos.len());
    println!(
        "exact-secret recall  {exact}/{} = {exact_recall:.2}%",
        pos.len()
    );
    println!(
        "false-positive lines {fp_lines}/{} = {fp_pct:.3}%",
        neg.len()
    );
    println!(
        "encoded recall       {enc_hit}/{} = {enc_recall:.2}% (range covers encoded text: {enc_exact_cover})",
        enc.len()
    );
    println!("checksum validator agrees with corpus `checksum_valid`: {crc_agree}/{crc_total}");
    println!("-- per-family misses --");
    for (f, (n, m)) in &fam {
        if *m > 0 {
            println!("  {f:<16} missed {m}/{n}");
        }
    }
    println!("-- false positives by kind --");
    for (k, n) in &fp_kinds {
        println!("  {k:<24} {n}");
    }
    println!("-- false positives by rule --");
    for (k, n) in &fp_rules {
        println!("  {k:<32} {n}");
    }
    assert!(recall >= 95.0, "line recall {recall:.2}% < 95%");
    assert!(fp_pct <= 0.3, "false positives {fp_pct:.3}% > 0.3%");
    assert_eq!(enc_hit, enc.len(), "encoded-variant recall must be 100%");
}
