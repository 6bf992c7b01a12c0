//! The bounds of the line around a keyword hit.
//!
//! [`Detector`](super::Detector) runs a keyword's rules on the line that holds it, so each
//! line with a hit needs its start and end: two million lines per GiB of the bench's CI log.
//! A keyword sits a few dozen bytes from either end of its line as a rule, and on stretches
//! that short `memchr`'s call and set-up cost more than the search (`memrchr` alone was 3% of
//! a scan). Here the 128 bytes on each side are looked at 16 at a time, inline, and `memchr`
//! takes over for longer lines: with 64 bytes a scan took 1.5% less CPU, and 0.5% less again
//! with 128 (apt's `Get:` lines run past 64 bytes after their URL's `://`).

/// How far [`line_start`] and [`line_end`] look before handing over to `memchr`.
const NEAR: usize = 128;

/// Where the line holding `hay[at]` starts: after the last `\n` before `at`, or at 0.
#[inline]
pub(crate) fn line_start(hay: &[u8], at: usize) -> usize {
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    let mut end = at;
    #[cfg(target_arch = "x86_64")]
    while end >= 16 && at - end < NEAR {
        let bits = newline_bits(hay[end - 16..end].try_into().expect("16 bytes"));
        if bits != 0 {
            let last_newline = 31 - bits.leading_zeros() as usize;
            return end - 16 + last_newline + 1;
        }
        end -= 16;
    }
    memchr::memrchr(b'\n', &hay[..end]).map_or(0, |nl| nl + 1)
}

/// Where the line holding `hay[at]` ends: at the first `\n` from `at`, or at `hay.len()`.
#[inline]
pub(crate) fn line_end(hay: &[u8], at: usize) -> usize {
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    let mut start = at;
    #[cfg(target_arch = "x86_64")]
    while start + 16 <= hay.len() && start - at < NEAR {
        let bits = newline_bits(hay[start..start + 16].try_into().expect("16 bytes"));
        if bits != 0 {
            return start + bits.trailing_zeros() as usize;
        }
        start += 16;
    }
    memchr::memchr(b'\n', &hay[start..]).map_or(hay.len(), |nl| start + nl)
}

/// Bit k set where `bytes[k]` is `\n` (SSE2, which every x86_64 CPU has).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn newline_bits(bytes: &[u8; 16]) -> u32 {
    use std::arch::x86_64::*;
    // SAFETY: SSE2 is part of x86_64's baseline; the load reads the 16 bytes of a
    // `[u8; 16]`, unaligned.
    unsafe {
        let bytes = _mm_loadu_si128(bytes.as_ptr().cast());
        _mm_movemask_epi8(_mm_cmpeq_epi8(bytes, _mm_set1_epi8(b'\n' as i8))) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every position of inputs whose newlines sit at every distance from it, near and past
    /// the 128 bytes looked at inline and the 16-byte steps, against a byte-by-byte search.
    #[test]
    fn bounds_match_a_byte_search_at_every_position() {
        for gap in [0, 1, 15, 16, 17, 31, 63, 64, 65, 80, 127, 128, 129, 200] {
            for len in [0, 1, 15, 16, 17, 100, 300] {
                let hay: Vec<u8> = (0..len)
                    .map(|i| if i % (gap + 1) == gap { b'\n' } else { b'x' })
                    .collect();
                for at in 0..=hay.len() {
                    let start = hay[..at]
                        .iter()
                        .rposition(|&b| b == b'\n')
                        .map_or(0, |nl| nl + 1);
                    let end = hay[at..]
                        .iter()
                        .position(|&b| b == b'\n')
                        .map_or(hay.len(), |nl| at + nl);
                    assert_eq!(line_start(&hay, at), start, "gap {gap} len {len} at {at}");
                    assert_eq!(line_end(&hay, at), end, "gap {gap} len {len} at {at}");
                }
            }
        }
    }
}
