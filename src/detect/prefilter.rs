//! Stage-1 keyword prefilter: every occurrence of every keyword, case-insensitively.
//!
//! Keywords are found through their 4-grams (ASCII-case-folded, `byte | 0x20`). A 4-byte
//! keyword is its own gram; a keyword of 5+ bytes is indexed under two neighbouring grams, the
//! pair whose commoner gram is rarest in software text (see `common_grams.txt`). The first of
//! them is the keyword's primary gram, the one the stride-1 probe tests. A 3-byte keyword
//! passes the bitmaps through the 128 grams it can begin (one per folded byte after it) and
//! the 128 that end with it, and is compared directly where a position passes; so are the
//! last 3 bytes of the input, which begin no gram, and with AVX2 the first 3 (below).
//!
//! - With AVX2 ([`Prefilter::probe_avx2`]) every other position is tested: that meets one
//!   gram of each pair, and a 4-byte keyword at an untested position is caught through its
//!   first 3 bytes, the last 3 of the tested position before it. A 3-byte keyword is caught
//!   the same way: through itself one byte after a tested position, or, two bytes after one,
//!   through the byte before it and its first 2 (so not at the input's start, which has
//!   no tested position before it). A tested position costs one read of a 32 KiB table.
//! - Without it (and at the end of the input) every position's gram is tested against a
//!   262,144-bit bitmap (32 KiB, L1-resident) of primary grams, 16 positions per branch.
//!
//! A position that passes is tested against a second bitmap of every indexed gram (a two-probe
//! Bloom filter), then looked up exactly and each keyword indexed under its gram verified in
//! place. The result is the exact set of keyword occurrences, like a full Aho-Corasick pass,
//! at a fraction of the cost on text where keywords are rare.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::mem::MaybeUninit;

const LOG2_BITS: u32 = 18;

/// Bit k of a byte spread to bit 2k of a u16: interleaves [`Prefilter::probe_avx2`]'s two
/// masks of 8 sampled positions into one of 16 positions.
#[cfg(target_arch = "x86_64")]
const SPREAD: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut k = 0;
        while k < 8 {
            table[byte] |= ((byte as u16 >> k) & 1) << (2 * k);
            k += 1;
        }
        byte += 1;
    }
    table
};
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

/// folded 4-gram -> (keyword index, offset of the gram in the keyword, whether it is the
/// keyword's primary gram)
type GramMap = HashMap<u32, Vec<(u32, u32, bool)>, BuildHasherDefault<GramHasher>>;

/// Folded 4-gram -> the keywords indexed under it, for [`Prefilter::verify`]: an
/// open-addressing table over one flat entry list and one buffer of keyword bytes, so a lookup
/// is usually one probe and no pointer is chased. Looking up a `HashMap` of `Vec`s and then
/// each keyword's own `Vec` was 7% of a scan.
#[derive(Clone)]
struct GramTable {
    /// a power-of-two number of slots, at most half used; gram 0 marks an empty slot (a
    /// folded gram has bit 5 of every byte set, so it is never 0)
    slots: Box<[Slot]>,
    entries: Vec<Entry>,
    /// the keywords, lowercased, back to back
    text: Vec<u8>,
}

#[derive(Clone, Copy, Default)]
struct Slot {
    gram: u32,
    /// `entries[first..first + count]` are the keywords indexed under `gram`
    first: u32,
    count: u32,
}

#[derive(Clone, Copy)]
struct Entry {
    /// the keyword's first 8 bytes (fewer if it is shorter), lowercased, as a little-endian
    /// u64, and which bytes of it count
    head: u64,
    head_mask: u64,
    keyword: u32,
    /// where the gram starts in the keyword
    offset: u32,
    /// the keyword's primary gram (see [`Which`])
    primary: bool,
    /// the keyword is `text[start..start + len]`
    start: u32,
    len: u32,
}

/// Which keywords indexed under a gram [`Prefilter::verify`] looks for.
#[derive(Clone, Copy, PartialEq, Eq)]
// Only the AVX2 probe (x86_64) uses `All` and `Short`.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
enum Which {
    /// Those whose primary gram it is, and the 3-byte ones at the position: the stride-1
    /// probe tests every position, so a keyword of 5+ bytes, indexed under two neighbouring
    /// grams, must be found through one of them.
    Primary,
    /// All of them: the stride-2 probe tests every other position, which meets exactly one
    /// of a keyword's two neighbouring grams.
    All,
    /// The 4-byte keywords, and the 3-byte ones at the position or one byte after: the
    /// stride-2 probe found the gram one byte after a sampled position, through that
    /// position's last 3 bytes.
    Short,
}

impl GramTable {
    fn new(grams: &GramMap, keywords: &[Vec<u8>]) -> Self {
        let size = (grams.len() * 2).next_power_of_two().max(16);
        let mut slots = vec![Slot::default(); size].into_boxed_slice();
        let mut entries = Vec::new();
        let mut text = Vec::new();
        let mut starts = HashMap::new();
        for (&gram, list) in grams {
            let mut at = GramTable::home(gram, size);
            while slots[at].gram != 0 {
                at = (at + 1) & (size - 1);
            }
            slots[at] = Slot {
                gram,
                first: entries.len() as u32,
                count: list.len() as u32,
            };
            for &(keyword, offset, primary) in list {
                let k = &keywords[keyword as usize];
                let start = *starts.entry(keyword).or_insert_with(|| {
                    text.extend_from_slice(k);
                    text.len() - k.len()
                });
                let head_len = k.len().min(8);
                let mut head = [0u8; 8];
                head[..head_len].copy_from_slice(&k[..head_len]);
                entries.push(Entry {
                    head: u64::from_le_bytes(head),
                    head_mask: u64::MAX >> (64 - 8 * head_len),
                    keyword,
                    offset,
                    primary,
                    start: start as u32,
                    len: k.len() as u32,
                });
            }
        }
        GramTable {
            slots,
            entries,
            text,
        }
    }

    #[inline(always)]
    fn home(gram: u32, size: usize) -> usize {
        // the product's top bits, as many as the size needs
        ((u64::from(gram.wrapping_mul(0x2545_F491)) * size as u64) >> 32) as usize
    }

    #[inline(always)]
    fn get(&self, gram: u32) -> &[Entry] {
        let mask = self.slots.len() - 1;
        let mut at = GramTable::home(gram, self.slots.len());
        loop {
            let slot = self.slots[at];
            if slot.gram == gram {
                return &self.entries[slot.first as usize..(slot.first + slot.count) as usize];
            }
            if slot.gram == 0 {
                return &[];
            }
            at = (at + 1) & mask;
        }
    }
}

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

/// The shortest input [`Prefilter::probe_avx2`] takes: a block tests 8 sampled positions from
/// `i`, reading 16 bytes from `i` and from `i + 8`.
#[cfg(target_arch = "x86_64")]
const AVX2_PROBE_MIN_LEN: usize = 24;

/// The stride-2 probe's table (see [`Prefilter::probe_avx2`]): 2^13 32-bit words, 32 KiB.
const SAMPLED_LOG2_WORDS: u32 = 13;
const SAMPLED_WORDS: usize = 1 << SAMPLED_LOG2_WORDS;

/// The word of the stride-2 table for a sampled position whose folded 4-gram ends in the
/// 3 bytes `last3` (as the low 24 bits).
#[inline(always)]
fn sampled_word(last3: u32) -> usize {
    (last3.wrapping_mul(0x9E37_79B1) >> (32 - SAMPLED_LOG2_WORDS)) as usize
}

/// Word and the two bits of the stride-2 table that a sampled position with folded 4-gram
/// `gram` tests for a keyword indexed under that gram (its "gram bits"). With two bits, both
/// required, fewer positions pass to the second test: a scan took 2.5% less CPU than with one
/// on the CPU of the November runs (on Zen 2, since the probe makes its indices ahead, the
/// two measured the same).
#[inline(always)]
fn sampled_gram_slot(gram: u32) -> (usize, u32) {
    let m = gram.wrapping_mul(0x85EB_CA77);
    (
        sampled_word(gram >> 8),
        1 << (m >> 27) | 1 << ((m >> 22) & 31),
    )
}

/// Word and the two bits of the stride-2 table that a sampled position whose folded 4-gram
/// ends in the 3 bytes `last3` tests for a short keyword after it (its "prefix bits"): a
/// 4-byte keyword starting one byte later (`last3` its first 3 bytes), a 3-byte keyword
/// starting one byte later (`last3` the keyword) or two bytes later (`last3` the byte before
/// it and its first 2).
#[inline(always)]
fn sampled_prefix_slot(last3: u32) -> (usize, u32) {
    let m = last3.wrapping_mul(0xC2B2_AE3D);
    (sampled_word(last3), 1 << (m >> 27) | 1 << ((m >> 22) & 31))
}

/// The folded 4-grams at `i`, `i + 2`, ..., `i + 14` of `hay`, for
/// [`Prefilter::probe_avx2`]: 32-bit lanes 0-3 (the grams at `i` to `i + 6`) made from the 16
/// bytes from `i`, lanes 4-7 (`i + 8` to `i + 14`) from the 16 bytes from `i + 8`.
///
/// # Safety
///
/// `i + 24 <= hay.len()`, and the CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn sampled_grams(hay: &[u8], i: usize) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::*;
    let grams_of = _mm256_setr_epi8(
        0, 1, 2, 3, 2, 3, 4, 5, 4, 5, 6, 7, 6, 7, 8, 9, //
        0, 1, 2, 3, 2, 3, 4, 5, 4, 5, 6, 7, 6, 7, 8, 9,
    );
    // SAFETY: the caller keeps both 16-byte loads inside `hay`.
    let bytes = unsafe {
        _mm256_set_m128i(
            _mm_loadu_si128(hay.as_ptr().add(i + 8).cast()),
            _mm_loadu_si128(hay.as_ptr().add(i).cast()),
        )
    };
    _mm256_or_si256(
        _mm256_shuffle_epi8(bytes, grams_of),
        _mm256_set1_epi32(0x2020_2020),
    )
}

/// Each ASCII uppercase byte of `x` lowercased (`u8::to_ascii_lowercase` on 8 bytes at once).
#[inline(always)]
fn ascii_lowercase_u64(x: u64) -> u64 {
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let low = x & LOW7;
    // per byte below 0x80: bit 7 of `low + (0x80 - 0x41)` is set from 'A' up, and of
    // `low + (0x80 - 0x5B)` from past 'Z' up; neither sum carries into the next byte
    let from_a = low.wrapping_add(0x3F3F_3F3F_3F3F_3F3F);
    let past_z = low.wrapping_add(0x2525_2525_2525_2525);
    let upper = from_a & !past_z & !x & HIGH;
    x | upper >> 2
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
const COMMON_GRAMS: u32 = 16384;

/// Folded 4-gram -> frequency rank (0 = most frequent) in ordinary software text, from
/// `common_grams.txt` (see `tools/common_grams.py`). Choosing keyword grams off this list cut the
/// verifications on a CI log by about 60%. Listing 16,384 grams rather than 4,096 moved
/// `pipedrive`, `unseal` and 14 of the 40 `token` spellings off grams that CI logs are full
/// of (`pipe`, `unse`, `toke`): on the bench corpus, 15% fewer verifications and 40% fewer
/// keywords compared in them, and 5% less CPU for a scan, for 0.5 ms more at start.
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

fn avx2_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[derive(Clone)]
pub(crate) struct Prefilter {
    bits: Box<[u64; WORDS]>,
    /// second hash of every indexed gram (also 5+ byte keywords' second gram, and the 128
    /// grams ending with each 3-byte keyword): a two-probe Bloom filter, so that collisions
    /// in `bits` or `sampled` rarely reach the exact lookup
    bits2: Box<[u64; WORDS]>,
    /// the stride-2 probe's table: per word, gram bits and prefix bits
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    sampled: Box<[u32; SAMPLED_WORDS]>,
    /// folded 4-gram -> the keywords indexed under it
    grams: GramTable,
    keywords: Vec<Vec<u8>>,
    /// the 3-byte keywords, which [`Prefilter::verify`] compares where a position passed,
    /// and [`Prefilter::find_all`] with the input's last 3 bytes, where no gram begins, and
    /// (when the AVX2 probe runs) its first 3
    three_byte: Vec<u32>,
    /// the last bytes of the 3-byte keywords, both cases: most positions can be passed over
    /// by one of their bytes
    three_byte_ends: [bool; 256],
    /// whether this CPU can run [`Prefilter::probe_avx2`]
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    avx2: bool,
}

impl Prefilter {
    /// `keywords` must each be at least 3 bytes (enforced when rules compile).
    pub(crate) fn new(keywords: &[String]) -> Self {
        let mut bits: Box<[u64; WORDS]> = Box::new([0u64; WORDS]);
        let mut bits2 = bits.clone();
        let mut grams: GramMap = GramMap::default();
        let common = common_grams();
        let mut three_byte = Vec::new();
        let mut three_byte_ends = [false; 256];
        let mut sampled: Box<[u32; SAMPLED_WORDS]> = Box::new([0u32; SAMPLED_WORDS]);
        for (i, k) in keywords.iter().enumerate() {
            let k = k.as_bytes();
            let gram_at =
                |off: usize| fold(u32::from_le_bytes(k[off..off + 4].try_into().expect("4")));
            let rarity = |off: usize| {
                let g = gram_at(off);
                // Any gram off the common list beats every gram on it; among common grams
                // the less common wins, and the byte estimate breaks ties.
                let commonness = common.get(&g).map_or(0, |&rank| COMMON_GRAMS - rank);
                let estimate = k[off..off + 4]
                    .iter()
                    .map(|&b| byte_freq(b))
                    .product::<u64>();
                (commonness, estimate)
            };
            let bytes = |b: [u8; 4]| fold(u32::from_le_bytes(b));
            let last3 = |x, y, z| bytes([x, y, z, 0]) & 0x00FF_FFFF;
            // every byte as folding leaves it: those with bit 5 set
            let folded_bytes = || (0..=255u8).filter(|&b| b & 0x20 != 0);
            let set = |bitmap: &mut [u64; WORDS], h: usize| bitmap[h >> 6] |= 1 << (h & 63);
            // (gram, where it starts in the keyword, whether it is the primary gram) for the
            // exact table; the last 3 bytes of the sampled positions that lead to the keyword
            // through prefix bits
            let (indexed, prefixes): (Vec<(u32, u32, bool)>, Vec<u32>) = match *k {
                [a, b, c] => {
                    // Found through prefix bits alone: at an odd position through itself,
                    // the last 3 bytes of the sampled position before it; at an even one
                    // through the byte before it and its first 2, the last 3 of the sampled
                    // position two bytes before. Gram bits for the 128 grams it begins would
                    // fill whole table words (a gram's word is chosen by its last 3 bytes,
                    // here the keyword's last 2 and the byte after, so `0Q~` to `9Q~` would
                    // set 20 of the 32 bits of 128 words), and `confirm` took twice as long.
                    // The grams it begins (for the scalar probe and the odd positions) and
                    // those that end with it (the even ones) pass the bitmaps, and `verify`
                    // compares the 3-byte keywords themselves: 256 grams each made the exact
                    // table twice as large (a scan measured 1099 against 1095 ms of CPU).
                    // Searching the input for the `~` of `8Q~` with memchr instead was 3.5%
                    // of a scan.
                    three_byte.push(i as u32);
                    three_byte_ends[c.to_ascii_lowercase() as usize] = true;
                    three_byte_ends[c.to_ascii_uppercase() as usize] = true;
                    for other in folded_bytes() {
                        let begun = bytes([a, b, c, other]);
                        set(&mut bits, hash(begun));
                        set(&mut bits2, hash2(begun));
                        set(&mut bits2, hash2(bytes([other, a, b, c])));
                    }
                    let prefixes = folded_bytes()
                        .map(|before| last3(before, a, b))
                        .chain([last3(a, b, c)]);
                    (Vec::new(), prefixes.collect())
                }
                [a, b, c, _] => (vec![(gram_at(0), 0, true)], vec![last3(a, b, c)]),
                _ => {
                    // the rarest pair of neighbouring grams; the first is the primary
                    let off = (0..k.len() - 4)
                        .min_by_key(|&off| rarity(off).max(rarity(off + 1)))
                        .expect("5+ bytes");
                    let grams = vec![
                        (gram_at(off), off as u32, true),
                        (gram_at(off + 1), off as u32 + 1, false),
                    ];
                    (grams, Vec::new())
                }
            };
            for &(g, off, primary) in &indexed {
                if primary {
                    set(&mut bits, hash(g));
                }
                set(&mut bits2, hash2(g));
                let (word, bits) = sampled_gram_slot(g);
                sampled[word] |= bits;
                grams.entry(g).or_default().push((i as u32, off, primary));
            }
            for last3 in prefixes {
                let (word, bits) = sampled_prefix_slot(last3);
                sampled[word] |= bits;
            }
        }
        let keywords: Vec<Vec<u8>> = keywords
            .iter()
            .map(|k| k.as_bytes().to_ascii_lowercase())
            .collect();
        Prefilter {
            bits,
            bits2,
            sampled,
            grams: GramTable::new(&grams, &keywords),
            keywords,
            three_byte,
            three_byte_ends,
            avx2: avx2_available(),
        }
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
    fn verify(
        &self,
        hay: &[u8],
        p: usize,
        folded: u32,
        which: Which,
        hits: &mut Vec<(usize, u32)>,
    ) {
        for entry in self.grams.get(folded) {
            let wanted = match which {
                Which::Primary => entry.primary,
                Which::All => true,
                Which::Short => entry.len == 4,
            };
            let Some(s) = p.checked_sub(entry.offset as usize) else {
                continue;
            };
            let len = entry.len as usize;
            if !wanted || s + len > hay.len() {
                continue;
            }
            // The first 8 bytes compared at once where they can be read at once: most
            // keywords are 8 bytes or shorter, and this was a byte loop per keyword.
            let head_matches = match hay.get(s..s + 8) {
                Some(head) => {
                    let head = u64::from_le_bytes(head.try_into().expect("8 bytes"));
                    (ascii_lowercase_u64(head) ^ entry.head) & entry.head_mask == 0
                }
                None => true,
            };
            let keyword = &self.grams.text[entry.start as usize..entry.start as usize + len];
            if head_matches
                && (len <= 8 && s + 8 <= hay.len() || hay[s..s + len].eq_ignore_ascii_case(keyword))
            {
                hits.push((s, entry.keyword));
            }
        }
        // 3-byte keywords are not in the exact table (see `new`)
        match which {
            Which::Primary => self.three_byte_keywords_at(hay, p, hits),
            Which::All => {}
            Which::Short => {
                self.three_byte_keywords_at(hay, p, hits);
                self.three_byte_keywords_at(hay, p + 1, hits);
            }
        }
    }

    /// Checks the 16 positions from `i` one by one after a block probe found a candidate.
    #[inline(never)]
    fn probe_block(&self, hay: &[u8], i: usize, hits: &mut Vec<(usize, u32)>) {
        let w: &[u8; 19] = hay[i..i + 19].try_into().expect("19 bytes");
        for k in 0..16 {
            let g = fold(u32::from_le_bytes([w[k], w[k + 1], w[k + 2], w[k + 3]]));
            if self.bit(g) != 0 && self.bit2(g) {
                self.verify(hay, i + k, g, Which::Primary, hits);
            }
        }
    }

    /// [`Prefilter::find_all`]'s probe with AVX2: every other position, in two passes over
    /// each 4 KiB of `hay`. Returns where the scalar probe takes over.
    ///
    /// Sampling every other position finds each keyword of 5+ bytes, indexed under two
    /// neighbouring grams, through exactly one of them; a 4-byte keyword at an unsampled
    /// position is found through its first 3 bytes, the last 3 of the sampled position
    /// before it (a 3-byte keyword through such prefixes only, see [`Prefilter::new`]).
    /// Both tests read the same table word, chosen by the sampled gram's last 3
    /// bytes, so a sampled position costs one table read: half the reads of testing every
    /// position, which were most of a scan.
    ///
    /// 1. 8 sampled positions at a time: their grams formed with a byte shuffle, hashed with
    ///    vector multiplies, their words fetched with eight loads, not a gather, which Zen 2
    ///    runs in microcode (for 32 blocks at a time, first all their word indices, then all
    ///    their words). Positions whose gram bits
    ///    or prefix bits are set (fewer than 1 byte in 80 of a CI log) go to a list, without
    ///    a branch on whether there are any: that branch, taken at random, cost a quarter of
    ///    a probe.
    /// 2. The listed grams are tested against `bits2`, and those that pass are verified.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn probe_avx2(&self, hay: &[u8], hits: &mut Vec<(usize, u32)>) -> usize {
        use std::arch::x86_64::*;
        const CHUNK: usize = 4096;
        let n = hay.len();
        if n < AVX2_PROBE_MIN_LEN {
            return 0;
        }
        let end = (n - AVX2_PROBE_MIN_LEN) / 16 * 16 + 16;
        let word_multiplier = _mm256_set1_epi32(0x9E37_79B1_u32 as i32);
        let gram_multiplier = _mm256_set1_epi32(0x85EB_CA77_u32 as i32);
        let prefix_multiplier = _mm256_set1_epi32(0xC2B2_AE3D_u32 as i32);
        let low5 = _mm256_set1_epi32(31);
        let words = self.sampled.as_ptr().cast::<i32>();
        let last3_at = |grams| _mm256_srli_epi32::<8>(grams);
        // A run of blocks' table word indices is made first, then the words are read. A
        // block that went from hashing to reading its words to testing them held its
        // successors back: a scan took 10% less CPU on Zen 2 this way.
        const RUN: usize = 32;
        // Left uninitialised, as `passed` below: zeroing its 1 KiB on every call most likely
        // made scanning line by line slower (criterion: 371 MiB/s, and 388 without it).
        let mut indices = [MaybeUninit::<__m256i>::uninit(); RUN];
        // offsets from the chunk's start, in order; an odd one was found through a prefix
        // bit. A write made before counting lands at most one past the positions counted,
        // so one spare slot would do; 16 keep the length a round number.
        // Left uninitialised: zeroing these 17 KiB on every call cost more than scanning a
        // line, when a caller scans line by line.
        let mut passed = [MaybeUninit::<u32>::uninit(); CHUNK + 16];
        let mut i = 0;
        while i < end {
            let base = i;
            let blocks = (end - base).min(CHUNK) / 16;
            // Bit j of a block's mask is position `16 * block + j`: lane k's gram bits give bit
            // 2k, its prefix bits (for a 4- or 3-byte keyword at `2k + 1`, or a 3-byte one at
            // `2k + 2`, which `confirm` looks for from `2k + 1`) bit 2k + 1. The masks
            // are all made before any is read, so the table reads of successive blocks
            // overlap instead of waiting on each other through the list's length.
            // 16 bits a block, 4 blocks to a u64: block `4g + k` is bits `16k..16k + 16` of
            // `masks[g]` (x86_64 is little-endian), so that the list below reads 4 at once.
            let mut masks = [MaybeUninit::<u64>::uninit(); CHUNK / 64];
            // SAFETY: as many u16s as the u64s hold, of the same alignment or less.
            let block_masks = unsafe {
                std::slice::from_raw_parts_mut(
                    masks.as_mut_ptr().cast::<MaybeUninit<u16>>(),
                    CHUNK / 16,
                )
            };
            let mut run_start = 0;
            while run_start < blocks {
                let run = (blocks - run_start).min(RUN);
                for (r, index) in indices[..run].iter_mut().enumerate() {
                    // SAFETY: a block starts at a multiple of 16 below `end`, so at most at
                    // `(n - 24) / 16 * 16`: its 24 bytes are in `hay`.
                    let grams = unsafe { sampled_grams(hay, base + 16 * (run_start + r)) };
                    let last3 = last3_at(grams);
                    *index =
                        MaybeUninit::new(_mm256_srli_epi32::<{ 32 - SAMPLED_LOG2_WORDS as i32 }>(
                            _mm256_mullo_epi32(last3, word_multiplier),
                        ));
                }
                let run_masks = &mut block_masks[run_start..run_start + run];
                for (r, (index, mask)) in indices[..run].iter().zip(run_masks).enumerate() {
                    let block = run_start + r;
                    // SAFETY: the block's 24 bytes are in `hay` (as above); the loop above
                    // wrote `indices[..run]`; table indices are below 2^13, the table's
                    // length in words.
                    let (gram_hits, prefix_hits) = unsafe {
                        // made again: keeping them, or their hash mixes, from the loop
                        // above measured no faster
                        let grams = sampled_grams(hay, base + 16 * block);
                        let last3 = last3_at(grams);
                        // one load and a shift per two lanes (a load per lane measured the
                        // same)
                        let pairs = index.as_ptr().cast::<u64>();
                        let [l01, l23, h01, h23] = [0, 1, 2, 3].map(|k| pairs.add(k).read());
                        let at = |x: u64| *words.add(x as u32 as usize);
                        let word = _mm256_setr_epi32(
                            at(l01),
                            at(l01 >> 32),
                            at(l23),
                            at(l23 >> 32),
                            at(h01),
                            at(h01 >> 32),
                            at(h23),
                            at(h23 >> 32),
                        );
                        let gram_mix = _mm256_mullo_epi32(grams, gram_multiplier);
                        let prefix_mix = _mm256_mullo_epi32(last3, prefix_multiplier);
                        // both of a lane's two bits, ANDed into its top, where movemask reads it
                        let top = |mix| {
                            let first = _mm256_sllv_epi32(
                                word,
                                _mm256_sub_epi32(low5, _mm256_srli_epi32::<27>(mix)),
                            );
                            let second = _mm256_sllv_epi32(
                                word,
                                _mm256_sub_epi32(
                                    low5,
                                    _mm256_and_si256(_mm256_srli_epi32::<22>(mix), low5),
                                ),
                            );
                            _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_and_si256(first, second)))
                                as u32
                        };
                        (top(gram_mix), top(prefix_mix))
                    };
                    *mask = MaybeUninit::new(
                        SPREAD[gram_hits as usize] | SPREAD[prefix_hits as usize] << 1,
                    );
                }
                run_start += run;
            }
            // The masks of 4 blocks (64 bytes) read as one: the first two positions that
            // passed are written whether or not there are any, and counted only if there
            // are; a third in 64 bytes is rare. Listing block by block, each block's first
            // written the same way, took 4-5% more of a scan on Zen 2; a u32 per block, put
            // together into a u64 here, measured the same as this and is longer.
            let groups = blocks.div_ceil(4);
            for mask in &mut block_masks[blocks..4 * groups] {
                *mask = MaybeUninit::new(0);
            }
            let mut count = 0;
            for (group, mask) in masks[..groups].iter().enumerate() {
                // SAFETY: the loops above wrote the blocks of `masks[..groups]`.
                let mut mask = unsafe { mask.assume_init() };
                let at = 64 * group as u32;
                for _ in 0..2 {
                    passed[count] = MaybeUninit::new(at + mask.trailing_zeros());
                    count += (mask != 0) as usize;
                    mask &= mask.wrapping_sub(1);
                }
                while mask != 0 {
                    passed[count] = MaybeUninit::new(at + mask.trailing_zeros());
                    count += 1;
                    mask &= mask - 1;
                }
            }
            i = base + 16 * blocks;
            // SAFETY: the loop above wrote `passed[..count]`.
            let listed =
                unsafe { std::slice::from_raw_parts(passed.as_ptr().cast::<u32>(), count) };
            self.confirm(hay, base, listed, end, hits);
        }
        // The scalar probe takes over at the last unsampled position, `end - 1`, which
        // `confirm` leaves to it. It tests primary grams only, so a keyword found at
        // `end - 2` (even) through its first gram is not found again through its second.
        end - 1
    }

    /// Pass 2 of [`Prefilter::probe_avx2`]: tests the 4-gram at `base + p` for each `p` in
    /// `passed` against `bits2`, one by one, and verifies those that pass (at an odd
    /// position, found through prefix bits, only for 3- and 4-byte keywords). Position `end - 1`
    /// is left for the scalar probe, which starts there. Testing 8 at a time with two gathers
    /// took about 3% more of a scan's CPU on Zen 2.
    #[cfg(target_arch = "x86_64")]
    #[inline(never)]
    fn confirm(
        &self,
        hay: &[u8],
        base: usize,
        passed: &[u32],
        end: usize,
        hits: &mut Vec<(usize, u32)>,
    ) {
        for &offset in passed {
            let p = base + offset as usize;
            // `base` is even, like every sampled position
            let which = if p.is_multiple_of(2) {
                Which::All
            } else if p + 1 < end {
                Which::Short
            } else {
                continue;
            };
            let g = fold(u32::from_le_bytes(
                hay[p..p + 4].try_into().expect("4 bytes"),
            ));
            if self.bit2(g) {
                self.verify(hay, p, g, which, hits);
            }
        }
    }

    /// Appends every keyword occurrence `(start, keyword index)` in `hay`, in the order of the
    /// grams that found them: by start within a line, as keywords hold no newline.
    pub(crate) fn find_all(&self, hay: &[u8], hits: &mut Vec<(usize, u32)>) {
        let n = hay.len();
        let mut i = 0;
        #[cfg(target_arch = "x86_64")]
        if self.avx2 && n >= AVX2_PROBE_MIN_LEN {
            // It finds a 3-byte keyword at an even position through the sampled position two
            // bytes before, so not at 0.
            self.three_byte_keywords_at(hay, 0, hits);
            // SAFETY: `avx2` is set only when the CPU has AVX2.
            i = unsafe { self.probe_avx2(hay, hits) };
        }
        while i + 19 <= n {
            let w: &[u8; 19] = hay[i..i + 19].try_into().expect("19 bytes");
            let g = |k: usize| fold(u32::from_le_bytes([w[k], w[k + 1], w[k + 2], w[k + 3]]));
            let mut any = 0u64;
            for k in 0..16 {
                let h = hash(g(k));
                any |= self.bits[h >> 6] >> (h & 63);
            }
            if any & 1 != 0 {
                self.probe_block(hay, i, hits);
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
                self.verify(hay, i, g, Which::Primary, hits);
            }
            i += 1;
        }
        // The last 3 bytes begin no 4-gram, so no probe meets a 3-byte keyword there.
        if let Some(start) = n.checked_sub(3) {
            self.three_byte_keywords_at(hay, start, hits);
        }
    }

    /// Appends each 3-byte keyword at `hay[at..at + 3]`.
    #[inline(always)]
    fn three_byte_keywords_at(&self, hay: &[u8], at: usize, hits: &mut Vec<(usize, u32)>) {
        match hay.get(at + 2) {
            Some(&last) if self.three_byte_ends[last as usize] => {}
            _ => return,
        }
        for &kw in &self.three_byte {
            if hay[at..at + 3].eq_ignore_ascii_case(&self.keywords[kw as usize]) {
                hits.push((at, kw));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aho_corasick::AhoCorasick;

    /// The built-in keywords, their prefilter with and without AVX2, and an overlapping
    /// case-insensitive Aho-Corasick search to hold both against.
    struct Probes {
        keywords: Vec<String>,
        fast: Prefilter,
        scalar: Prefilter,
        reference: AhoCorasick,
    }

    fn builtin_keywords() -> Vec<String> {
        crate::detect::rules::builtin_rule_specs()
            .into_iter()
            .flat_map(|rule| rule.keywords)
            .collect()
    }

    impl Probes {
        fn builtin() -> Self {
            Probes::new(builtin_keywords())
        }

        fn new(mut keywords: Vec<String>) -> Self {
            keywords.sort();
            keywords.dedup();
            let fast = Prefilter::new(&keywords);
            if !fast.avx2 {
                // Then `fast` is the scalar probe too, and these tests check it alone.
                eprintln!("no AVX2 on this CPU: the AVX2 probe is not tested");
            }
            let scalar = Prefilter {
                avx2: false,
                ..fast.clone()
            };
            let reference = AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .build(&keywords)
                .unwrap();
            Probes {
                keywords,
                fast,
                scalar,
                reference,
            }
        }

        /// Asserts both probes find in `hay` exactly what the reference finds; returns that.
        fn check(&self, hay: &[u8], context: &str) -> Vec<(usize, u32)> {
            let mut expected: Vec<(usize, u32)> = self
                .reference
                .find_overlapping_iter(hay)
                .map(|m| (m.start(), m.pattern().as_u32()))
                .collect();
            expected.sort_unstable();
            for probe in [&self.fast, &self.scalar] {
                let mut got = Vec::new();
                probe.find_all(hay, &mut got);
                got.sort_unstable();
                assert_eq!(got, expected, "{context}, avx2 {}", probe.avx2);
            }
            expected
        }
    }

    #[test]
    fn common_grams_file_holds_as_many_distinct_grams_as_counted() {
        let listed = include_str!("common_grams.txt")
            .lines()
            .filter(|line| !line.starts_with('#'))
            .count();
        assert_eq!(listed, COMMON_GRAMS as usize);
        assert_eq!(common_grams().len(), listed, "a gram listed twice");
    }

    /// Each kind of keyword (3, 4, 5 and 12 bytes, and a user's 3-byte keyword of common
    /// bytes) at every start of inputs whose lengths put it across the last blocks, where the
    /// AVX2 probe hands over to the scalar one, and into the last 3 bytes, which begin no
    /// gram: both probes find exactly what an Aho-Corasick search finds, the planted keyword
    /// once.
    #[test]
    fn keywords_at_the_end_of_the_input_are_found_once() {
        let mut keywords = builtin_keywords();
        keywords.push("-U ".to_string());
        let probes = Probes::new(keywords);
        for word in ["8q~", "akia", "pass:", "github_token", "-u "] {
            for n in 20..=72 {
                for start in 0..=n - word.len() {
                    let mut hay = vec![b'#'; n];
                    hay[start..start + word.len()].copy_from_slice(word.as_bytes());
                    let found = probes.check(&hay, &format!("{word} at {start} of {n}"));
                    assert!(found.iter().any(|&(at, k)| at == start
                        && probes.keywords[k as usize].eq_ignore_ascii_case(word)));
                }
            }
        }
    }

    #[test]
    fn lowercases_8_bytes_like_to_ascii_lowercase() {
        // every pair of neighbouring bytes, so that no lane's arithmetic leaks into the next
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                let bytes = [a, b, b'Z', a, b'@', b, b'[', a];
                let want = bytes.map(|x| x.to_ascii_lowercase());
                let got = ascii_lowercase_u64(u64::from_le_bytes(bytes)).to_le_bytes();
                assert_eq!(got, want, "{a:#x} {b:#x}");
            }
        }
    }

    /// Every occurrence of the built-in keywords in random text with keywords planted in
    /// random case, found by both probes (AVX2 where the CPU has it, and scalar), against
    /// an overlapping case-insensitive Aho-Corasick search. The lengths cross the AVX2
    /// probe's 4 KiB chunks, its runs of 32 blocks (9,000 and 20,000 bytes end in part runs)
    /// and its 16-byte blocks, so plants land on every seam.
    #[test]
    fn finds_exactly_the_keyword_occurrences_in_any_text() {
        let probes = Probes::builtin();
        let keywords = &probes.keywords;
        let alphabet = b"abcdefghijklmnopqrstuvwxyzAEIOUXYZ0123456789 _-.:/=~\"\n\t";
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = |below: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % below as u64) as usize
        };
        for len in [0, 3, 19, 23, 24, 40, 4095, 4096, 4119, 4120, 9000, 20_000] {
            let mut hay: Vec<u8> = (0..len).map(|_| alphabet[next(alphabet.len())]).collect();
            for _ in 0..len / 40 {
                let keyword = keywords[next(keywords.len())].as_bytes();
                if keyword.len() > len {
                    continue;
                }
                let at = next(len - keyword.len() + 1);
                for (k, &b) in keyword.iter().enumerate() {
                    hay[at + k] = if next(2) == 0 {
                        b.to_ascii_uppercase()
                    } else {
                        b
                    };
                }
            }
            let found = probes.check(&hay, &format!("length {len}"));
            assert!(len < 4096 || found.len() > len / 80, "plants land");
        }
    }

    #[test]
    fn exact_keyword_occurrences() {
        let with_three_bytes: Vec<String> = ["8q~", "3q~", "ghp_"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let p = Prefilter::new(&with_three_bytes);
        let mut hits = Vec::new();
        p.find_all(b"x abc8Q~zz and 3q~", &mut hits);
        assert_eq!(hits, vec![(5, 0), (15, 1)]);
        let kws: Vec<String> = ["ghp_", "password", "akia", "-u ", "token", "github_token"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let p = Prefilter::new(&kws);
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
