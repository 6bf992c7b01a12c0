//! Stage-1 keyword prefilter.
//!
//! Every keyword of 4+ bytes is indexed by one of its 4-grams (the one made of the rarest bytes
//! for log text, ASCII-case-folded). The scan tests each input position's folded 4-gram against a
//! 262,144-bit bitmap (32 KiB, L1-resident) eight positions per branch; on a bitmap hit the exact
//! gram is looked up and each keyword indexed under it is verified in place (case-insensitive).
//! Keywords of exactly 3 bytes are found through a rare non-letter byte they contain (`~` in
//! `8Q~`) with `memchr`, else through a small case-insensitive Aho-Corasick automaton (slow path,
//! only for user rules: the built-in rules have no such keyword).
//! The result is the exact set of keyword occurrences, like a full Aho-Corasick pass, at a
//! fraction of the cost on text where keywords are rare.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use aho_corasick::{AhoCorasick, MatchKind};

const LOG2_BITS: u32 = 18;
const WORDS: usize = (1usize << LOG2_BITS) / 64;

/// Multiplicative hasher for the (already well-mixed) 4-gram keys.
#[derive(Default)]
struct GramHasher(u64);

impl Hasher for GramHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u32(&mut self, x: u32) {
        self.0 = (x as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type GramMap = HashMap<u32, Vec<(u32, u32)>, BuildHasherDefault<GramHasher>>;

#[inline(always)]
fn fold(x: u32) -> u32 {
    x | 0x2020_2020
}

#[inline(always)]
fn hash(folded: u32) -> usize {
    (folded.wrapping_mul(0x9E37_79B1) >> (32 - LOG2_BITS)) as usize
}

#[inline(always)]
fn hash2(folded: u32) -> usize {
    (folded
        .wrapping_mul(0x85EB_CA77)
        .rotate_left(13)
        .wrapping_mul(0xC2B2_AE3D)
        >> (32 - LOG2_BITS)) as usize
}

/// Rough per-mille frequency of a (case-folded) byte in CI log text.
fn byte_freq(b: u8) -> u64 {
    match b.to_ascii_lowercase() {
        b' ' => 150,
        b'e' => 100,
        b't' | b'a' => 70,
        b'o' | b'i' | b'n' | b's' => 62,
        b'r' => 55,
        b'l' => 40,
        b'h' | b'd' => 35,
        b'c' => 30,
        b'u' | b'm' => 25,
        b'0'..=b'9' => 20,
        b'f' | b'p' | b'g' | b'.' => 20,
        b'/' | b'-' | b'w' | b'y' => 15,
        b'b' | b':' => 12,
        b'v' | b'_' | b'"' => 9,
        b'k' | b'=' => 7,
        b'x' => 3,
        b'j' | b'q' | b'z' => 1,
        _ => 2,
    }
}

/// How many grams `common_grams.txt` lists.
const COMMON_GRAMS: u32 = 4096;

/// Folded 4-gram -> frequency rank (0 = most frequent) in ordinary software text, from
/// `common_grams.txt` (see `tools/common_grams.py`). Choosing keyword grams off this list cut the
/// verifications on a CI log by about 60%.
fn common_grams() -> HashMap<u32, u32> {
    include_str!("common_grams.txt")
        .lines()
        .filter(|line| !line.starts_with('#'))
        .zip(0..COMMON_GRAMS)
        .map(|(hex, rank)| {
            let gram = u32::from_str_radix(hex, 16).expect("common_grams.txt holds hex grams");
            (gram, rank)
        })
        .collect()
}

#[derive(Clone)]
pub(crate) struct Prefilter {
    bits: Box<[u64; WORDS]>,
    /// second hash of the same grams: a two-probe Bloom filter, so that collisions in `bits`
    /// rarely reach the exact lookup
    bits2: Box<[u64; WORDS]>,
    /// folded 4-gram -> (keyword index, offset of the gram in the keyword)
    grams: GramMap,
    keywords: Vec<Vec<u8>>,
    short: Option<AhoCorasick>,
    short_ids: Vec<u32>,
    /// rare bytes (at most 3) through which all short keywords are found with `memchr`
    rare: Vec<u8>,
}

impl Prefilter {
    /// `keywords` must each be at least 3 bytes (enforced when rules compile).
    pub(crate) fn new(keywords: &[String]) -> Result<Self, aho_corasick::BuildError> {
        let mut bits: Box<[u64; WORDS]> = Box::new([0u64; WORDS]);
        let mut bits2 = bits.clone();
        let mut grams: GramMap = GramMap::default();
        let common = common_grams();
        let mut short = Vec::new();
        let mut short_ids = Vec::new();
        for (i, k) in keywords.iter().enumerate() {
            let k = k.as_bytes();
            if k.len() < 4 {
                short.push(k.to_vec());
                short_ids.push(i as u32);
                continue;
            }
            let (off, w) = k
                .windows(4)
                .enumerate()
                .min_by_key(|(_, w)| {
                    let g = fold(u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
                    // Any gram off the common list beats every gram on it; among common grams
                    // the less common wins, and the byte estimate breaks ties.
                    let commonness = common.get(&g).map_or(0, |&rank| COMMON_GRAMS - rank);
                    let estimate = w.iter().map(|&b| byte_freq(b)).product::<u64>();
                    (commonness, estimate)
                })
                .expect("4 bytes");
            let g = fold(u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
            let h = hash(g);
            bits[h >> 6] |= 1 << (h & 63);
            let h2 = hash2(g);
            bits2[h2 >> 6] |= 1 << (h2 & 63);
            grams.entry(g).or_default().push((i as u32, off as u32));
        }
        // short keywords found via a rare non-letter byte each (at most 3 distinct bytes)
        let mut rare: Vec<u8> = Vec::new();
        let all_rare = short.iter().all(|k: &Vec<u8>| {
            match k
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_alphabetic())
                .min_by_key(|&b| byte_freq(b))
            {
                Some(b) if byte_freq(b) <= 2 => {
                    if !rare.contains(&b) {
                        rare.push(b);
                    }
                    true
                }
                _ => false,
            }
        });
        if !all_rare || rare.len() > 3 {
            rare.clear();
        }
        let short = if short.is_empty() || !rare.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::builder()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::Standard)
                    .build(&short)?,
            )
        };
        Ok(Prefilter {
            bits,
            bits2,
            grams,
            keywords: keywords
                .iter()
                .map(|k| k.as_bytes().to_ascii_lowercase())
                .collect(),
            short,
            short_ids,
            rare,
        })
    }

    #[inline(always)]
    fn bit(&self, folded: u32) -> u64 {
        let h = hash(folded);
        (self.bits[h >> 6] >> (h & 63)) & 1
    }

    #[inline(always)]
    fn bit2(&self, folded: u32) -> bool {
        let h = hash2(folded);
        (self.bits2[h >> 6] >> (h & 63)) & 1 != 0
    }

    #[inline(never)]
    fn verify(&self, hay: &[u8], p: usize, folded: u32, hits: &mut Vec<(usize, u32)>) {
        if let Some(list) = self.grams.get(&folded) {
            for &(kw, off) in list {
                let off = off as usize;
                if p < off {
                    continue;
                }
                let s = p - off;
                let k = &self.keywords[kw as usize];
                if s + k.len() <= hay.len() && hay[s..s + k.len()].eq_ignore_ascii_case(k) {
                    hits.push((s, kw));
                }
            }
        }
    }

    /// Appends every keyword occurrence `(start, keyword index)` in `hay`, sorted by start.
    pub(crate) fn find_all(&self, hay: &[u8], hits: &mut Vec<(usize, u32)>) {
        let n = hay.len();
        let mut i = 0;
        while i + 19 <= n {
            let w: &[u8; 19] = hay[i..i + 19].try_into().expect("19 bytes");
            let g = |k: usize| fold(u32::from_le_bytes([w[k], w[k + 1], w[k + 2], w[k + 3]]));
            let mut any = 0u64;
            for k in 0..16 {
                let h = hash(g(k));
                any |= self.bits[h >> 6] >> (h & 63);
            }
            if any & 1 != 0 {
                for k in 0..16 {
                    if self.bit(g(k)) != 0 && self.bit2(g(k)) {
                        self.verify(hay, i + k, g(k), hits);
                    }
                }
            }
            i += 16;
        }
        while i + 4 <= n {
            let g = fold(u32::from_le_bytes([
                hay[i],
                hay[i + 1],
                hay[i + 2],
                hay[i + 3],
            ]));
            if self.bit(g) != 0 && self.bit2(g) {
                self.verify(hay, i, g, hits);
            }
            i += 1;
        }
        if !self.rare.is_empty() {
            let before = hits.len();
            let a = self.rare[0];
            let b = *self.rare.get(1).unwrap_or(&a);
            let c = *self.rare.get(2).unwrap_or(&a);
            for p in memchr::memchr3_iter(a, b, c, hay) {
                for &kw in &self.short_ids {
                    let k = &self.keywords[kw as usize];
                    for (off, _) in k.iter().enumerate().filter(|(_, x)| **x == hay[p]) {
                        if p >= off
                            && p - off + k.len() <= n
                            && hay[p - off..p - off + k.len()].eq_ignore_ascii_case(k)
                        {
                            hits.push((p - off, kw));
                        }
                    }
                }
            }
            if hits.len() > before {
                hits.sort_unstable();
                hits.dedup();
            }
        }
        if let Some(ac) = &self.short {
            let before = hits.len();
            for m in ac.find_overlapping_iter(hay) {
                hits.push((m.start(), self.short_ids[m.pattern().as_usize()]));
            }
            if hits.len() > before {
                hits.sort_unstable();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_keyword_occurrences() {
        let rare: Vec<String> = ["8q~", "3q~", "ghp_"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let p = Prefilter::new(&rare).unwrap();
        assert_eq!(p.rare, vec![b'~']);
        let mut hits = Vec::new();
        p.find_all(b"x abc8Q~zz and 3q~", &mut hits);
        assert_eq!(hits, vec![(5, 0), (15, 1)]);
        let kws: Vec<String> = ["ghp_", "password", "akia", "-u ", "token", "github_token"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let p = Prefilter::new(&kws).unwrap();
        let hay = b"x GITHUB_TOKEN=1 curl -u a:b PassWord AKIA ghp";
        let mut hits = Vec::new();
        p.find_all(hay, &mut hits);
        let mut got: Vec<(usize, &str)> = hits
            .iter()
            .map(|&(s, k)| (s, kws[k as usize].as_str()))
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                (2, "github_token"),
                (9, "token"),
                (22, "-u "),
                (29, "password"),
                (38, "akia")
            ]
        );
        for pad in 0..24 {
            let mut h = vec![b'.'; pad];
            h.extend_from_slice(b"PASSWORD");
            let mut hits = Vec::new();
            p.find_all(&h, &mut hits);
            assert_eq!(hits, vec![(pad, 1)]);
        }
    }
}
