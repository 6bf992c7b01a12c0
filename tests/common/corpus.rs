//! The development corpus of secrets in `../shared/corpus/secrets/`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;

/// `$TAILGUARD_CORPUS_DIR`, else `../shared/corpus/secrets` beside the repo.
/// Missing corpus: `None` on a developer machine; a failure under CI, where
/// it is always there and a silent skip would hide a broken check.
pub fn dir() -> Option<PathBuf> {
    if let Ok(d) = std::env::var("TAILGUARD_CORPUS_DIR") {
        let p = PathBuf::from(d);
        if p.is_dir() {
            return Some(p);
        }
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for rel in ["../shared/corpus/secrets", "../../shared/corpus/secrets"] {
        let p = root.join(rel);
        if p.join("positives.jsonl.gz").is_file() {
            return Some(p);
        }
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "the secrets corpus is missing under CI: expected ../shared/corpus/secrets"
    );
    eprintln!("corpus not found (set TAILGUARD_CORPUS_DIR); skipping");
    None
}

pub fn read_jsonl_gz(p: PathBuf) -> Vec<serde_json::Value> {
    let f = std::fs::File::open(&p).unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
    let r = BufReader::new(flate2::read::GzDecoder::new(f));
    r.lines()
        .map(|l| serde_json::from_str(&l.expect("read line")).expect("json line"))
        .collect()
}

pub fn field<'a>(v: &'a serde_json::Value, k: &str) -> &'a str {
    v.get(k).and_then(|x| x.as_str()).unwrap_or("")
}
