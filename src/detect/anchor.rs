//! Whether a rule's regex can be searched anchored at its keywords.
//!
//! A line reaches a rule's regex because one of the rule's keywords occurs in
//! it. For most rules the match then begins with that keyword (`ghp_…`, or
//! `azure…=` for a context rule), and the regex need not look anywhere else:
//! an anchored search at each keyword occurrence finds what a search of the
//! whole line finds, and gives up at the first byte that cannot follow. An
//! unanchored search of a line without a match runs the regex's automaton
//! over the rest of the line; on the apt lines of hosted runners
//! (`http://azure.archive.ubuntu.com/…`, which wake the Azure DevOps rule)
//! that was 4.5x the time of an anchored one.
//!
//! The analysis proves, from the parsed pattern, that every match begins with
//! one of the keywords, ASCII case-insensitively as the prefilter finds them;
//! where it cannot tell, the rule is searched unanchored, as before. A try can
//! read to the end of the line when the pattern allows (`[a-z]+`), so a line
//! gets at most [`MAX_ANCHORED_TRIES`](super::MAX_ANCHORED_TRIES) of them
//! before the rest of it is searched whole.

use regex_syntax::hir::{Class, Hir, HirKind};

/// Most distinct prefixes followed through the pattern before giving up.
const MAX_PREFIXES: usize = 64;
/// Largest class (after case folding) whose bytes are followed one by one.
const MAX_CLASS_BYTES: usize = 16;

/// Whether every match of `hir` begins with one of `keywords`, compared
/// ASCII case-insensitively. False when the pattern's structure does not show
/// it, which is always safe.
pub(crate) fn anchorable(hir: &Hir, keywords: &[String]) -> bool {
    let Some(longest) = keywords.iter().map(String::len).max() else {
        return false;
    };
    let keywords: Vec<Vec<u8>> = keywords
        .iter()
        .map(|k| k.as_bytes().to_ascii_lowercase())
        .collect();
    let start = vec![Prefix {
        bytes: Vec::new(),
        open: true,
    }];
    let Some(prefixes) = extend(hir, start, longest) else {
        return false;
    };
    prefixes.iter().all(|p| {
        keywords
            .iter()
            .any(|k| !k.is_empty() && p.bytes.starts_with(k))
    })
}

/// Bytes every match in one branch of the pattern begins with (lowercased).
/// `open` while the bytes after them are still known from the part of the
/// pattern read so far.
#[derive(Clone)]
struct Prefix {
    bytes: Vec<u8>,
    open: bool,
}

/// The prefixes after matching `hir` from each of `prefixes`; `None` when
/// there are too many to follow.
fn extend(hir: &Hir, mut prefixes: Vec<Prefix>, longest: usize) -> Option<Vec<Prefix>> {
    if prefixes.iter().all(|p| !p.open) {
        return Some(prefixes);
    }
    match hir.kind() {
        // zero-width: nothing is consumed, the next bytes still follow
        HirKind::Empty | HirKind::Look(_) => Some(prefixes),
        HirKind::Literal(literal) => {
            for p in prefixes.iter_mut().filter(|p| p.open) {
                p.bytes.extend(literal.0.iter().map(u8::to_ascii_lowercase));
                p.open = p.bytes.len() < longest;
            }
            Some(prefixes)
        }
        HirKind::Class(class) => {
            let Some(bytes) = folded_bytes(class) else {
                close(&mut prefixes);
                return Some(prefixes);
            };
            let mut next = Vec::new();
            for p in prefixes {
                if !p.open {
                    next.push(p);
                    continue;
                }
                for &b in &bytes {
                    let mut q = p.clone();
                    q.bytes.push(b);
                    q.open = q.bytes.len() < longest;
                    next.push(q);
                }
            }
            (next.len() <= MAX_PREFIXES).then_some(next)
        }
        HirKind::Capture(capture) => extend(&capture.sub, prefixes, longest),
        HirKind::Concat(parts) => {
            for part in parts {
                prefixes = extend(part, prefixes, longest)?;
            }
            Some(prefixes)
        }
        HirKind::Alternation(branches) => {
            let mut all = Vec::new();
            for branch in branches {
                all.extend(extend(branch, prefixes.clone(), longest)?);
                if all.len() > MAX_PREFIXES {
                    return None;
                }
            }
            Some(all)
        }
        // `x?`: the prefixes with `x` and without it, both followed on
        HirKind::Repetition(repetition) if repetition.max == Some(1) => {
            let mut with = extend(&repetition.sub, prefixes.clone(), longest)?;
            if repetition.min == 0 {
                with.extend(prefixes);
            }
            (with.len() <= MAX_PREFIXES).then_some(with)
        }
        HirKind::Repetition(repetition) => {
            // After the first repetition the next bytes may come from another
            // one or from what follows (or, with none, from what follows at
            // once): nothing more is known.
            if repetition.min > 0 {
                prefixes = extend(&repetition.sub, prefixes, longest)?;
            }
            close(&mut prefixes);
            Some(prefixes)
        }
    }
}

fn close(prefixes: &mut [Prefix]) {
    for p in prefixes {
        p.open = false;
    }
}

/// The distinct lowercased bytes of a small class; `None` for a large one.
fn folded_bytes(class: &Class) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    match class {
        Class::Bytes(c) => {
            for r in c.iter() {
                if usize::from(r.end() - r.start()) >= 2 * MAX_CLASS_BYTES {
                    return None;
                }
                bytes.extend((r.start()..=r.end()).map(|b| b.to_ascii_lowercase()));
            }
        }
        Class::Unicode(c) => {
            for r in c.iter() {
                let (start, end) = (u32::from(r.start()), u32::from(r.end()));
                if end > 0x7f || end - start >= 2 * MAX_CLASS_BYTES as u32 {
                    return None;
                }
                bytes.extend((start..=end).map(|b| (b as u8).to_ascii_lowercase()));
            }
        }
    }
    bytes.sort_unstable();
    bytes.dedup();
    (bytes.len() <= MAX_CLASS_BYTES).then_some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anchors(pattern: &str, keywords: &[&str]) -> bool {
        let hir = super::super::rules::parse_pattern(pattern).expect("pattern parses");
        let keywords: Vec<String> = keywords.iter().map(|k| k.to_string()).collect();
        anchorable(&hir, &keywords)
    }

    #[test]
    fn empty_and_never_repeated_parts_are_no_keyword() {
        assert!(!anchors(r"(?:|x)secret=(\w{1,9})", &["secret"]));
        assert!(anchors(r"(?:|x)secret=(\w{1,9})", &["secret", "xsecret"]));
        assert!(anchors(r"(?:x{0})secret=(\w{1,9})", &["secret"]));
    }

    #[test]
    fn too_many_spellings_to_follow_do_not_anchor() {
        // n classes of two letters spell 2^n words, every one a keyword: 64 are
        // followed (MAX_PREFIXES), 128 are not
        let spellings = |n: usize| -> Vec<String> {
            (0..1u32 << n)
                .map(|bits| {
                    (0..n)
                        .map(|i| if bits >> i & 1 == 1 { 'b' } else { 'a' })
                        .collect()
                })
                .collect()
        };
        for (n, followed) in [(6, true), (7, false)] {
            let pattern = format!("{}=(\\w{{1,9}})", "[ab]".repeat(n));
            let words = spellings(n);
            let keywords: Vec<&str> = words.iter().map(String::as_str).collect();
            assert_eq!(anchors(&pattern, &keywords), followed, "{n}");
        }
    }

    #[test]
    fn unicode_case_folding_is_not_taken_for_ascii() {
        // under (?u), `k` also matches the Kelvin sign, which no ASCII keyword finds
        assert!(!anchors(r"(?iu)key=(\w{1,9})", &["key"]));
    }

    #[test]
    fn a_literal_prefix_anchors() {
        assert!(anchors(r"\b(ghp_[0-9A-Za-z]{36,251})\b", &["ghp_"]));
        assert!(anchors(r"(?i)\b(xapp-\d-[A-Z0-9]+)", &["xapp-"]));
    }

    #[test]
    fn every_branch_of_a_context_alternation_needs_a_keyword() {
        let context = r"(?i)(?:azure|ado[_\-]|vsts)(?:[0-9a-z_.\-]{0,25})\s*=\s*([a-z2-7]{52})";
        assert!(anchors(context, &["azure", "ado_", "ado-", "vsts"]));
        // `ado` alone matches `adox=...`, which no keyword finds
        let loose = r"(?i)(?:azure|ado|vsts)(?:[0-9a-z_.\-]{0,25})\s*=\s*([a-z2-7]{52})";
        assert!(!anchors(loose, &["azure", "ado_", "ado-", "vsts"]));
        assert!(!anchors(context, &["azure", "ado_", "vsts"]));
    }

    #[test]
    fn an_optional_part_is_followed_both_ways() {
        let pattern = r"(?i)new[_\-]?relic[a-z_]{0,20}=([a-f0-9]{40})";
        assert!(anchors(pattern, &["newrelic", "new_relic", "new-relic"]));
        assert!(!anchors(pattern, &["newrelic", "new_relic"]));
        assert!(!anchors(
            r"(?i)new[_\-]{0,2}relic=(\w+)",
            &["newrelic", "new_relic"]
        ));
    }

    #[test]
    fn a_keyword_longer_than_what_the_pattern_fixes_does_not_anchor() {
        // the match may begin `tok`+anything; the keyword `token` is not proven
        assert!(!anchors(r"(?i)tok[a-z]+=(\w+)", &["token"]));
        assert!(anchors(r"(?i)tok[e]n=(\w+)", &["token"]));
    }

    #[test]
    fn matches_that_may_begin_before_the_keyword_do_not_anchor() {
        assert!(!anchors(r"(?i)[a-z_]{0,30}secret\s*=\s*(\S+)", &["secret"]));
        assert!(!anchors(r"(?:x)?secret=(\S+)", &["secret"]));
        assert!(!anchors(r"(?:^|[^a-z])secret=(\S+)", &["secret"]));
        assert!(!anchors(r"secret=(\S+)", &[]));
    }

    #[test]
    fn zero_width_assertions_before_the_keyword_anchor() {
        assert!(anchors(r"(?m)^\bAKIA[0-9A-Z]{16}", &["akia"]));
        assert!(anchors(r"(?:AKIA|ASIA)[0-9A-Z]{16}", &["AKIA", "ASIA"]));
    }
}
