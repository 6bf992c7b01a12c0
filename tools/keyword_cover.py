#!/usr/bin/env python3
"""Reports matches of a rule's regex that hold none of the rule's keywords.

A line is tried against a rule only if one of its keywords occurs in it, so such a match is
never reported on a line of its own. That is intended where the keywords are context (a
provider's name, as `twilio` for `SK` + 32 hex digits), and a gap where they are meant to
spell the match's own name (`access.key` was missing from `generic-secret`'s keywords).
A rule with `requires_after_keyword` is exact only if it has no such match at all. For a rule
with `assignment_after_keyword` it also reports matches in which no keyword is followed by an
assignment as the agent tests for one (such a line would never be tried).

Strings are drawn from each regex with Hypothesis (Python's `re` dialect, close enough for
these patterns; a few character classes it cannot draw are reported as errors).

    python3 -m venv target/kwcover && target/kwcover/bin/pip install hypothesis
    target/kwcover/bin/python tools/keyword_cover.py [RULE_ID...]
"""
import re
import sys
import tomllib
import warnings

from hypothesis import HealthCheck, given, settings, strategies as st
from hypothesis.errors import NonInteractiveExampleWarning

warnings.simplefilter("ignore", NonInteractiveExampleWarning)
EXAMPLES = 300


NAME = set(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")
QUOTE_OR_SPACE = set(b"\"'\\ \t\n\x0b\x0c\r")


def assignment_follows(assignment, text, at):
    """`Assignment::follows` in src/detect/rules.rs."""
    i = at
    while i < len(text) and text[i] in NAME:
        i += 1
    spaced = False
    while i < len(text) and text[i] in QUOTE_OR_SPACE:
        spaced |= text[i] not in b"\"'\\"
        i += 1
    return (spaced and " " in assignment) or (i < len(text) and chr(text[i]) in assignment.replace(" ", ""))


def uncovered(rule):
    """Draws whose match holds no keyword, and (with `assignment_after_keyword`) those where
    no keyword in the match is followed by an assignment."""
    keywords = [k.lower().encode() for k in rule.get("keywords", [])]
    assignment = rule.get("assignment_after_keyword")
    pattern = re.compile(rule["regex"].replace("\\z", "\\Z").encode(), re.ASCII)
    found, unassigned = [], []

    @settings(max_examples=EXAMPLES, suppress_health_check=list(HealthCheck), database=None, deadline=None)
    @given(st.from_regex(pattern, fullmatch=False))
    def draw(text):
        match = pattern.search(text)
        if not match:
            return
        lower = text.lower()
        starts = [i for k in keywords for i in range(match.start(), match.end() - len(k) + 1)
                  if lower.startswith(k, i)]
        if not starts:
            found.append(match.group(0))
        elif assignment and not any(assignment_follows(assignment, text, i) for i in starts):
            unassigned.append(match.group(0))

    draw()
    return found, unassigned


def main():
    only = set(sys.argv[1:])
    rules = tomllib.load(open("src/detect/rules.toml", "rb"))["rule"]
    for rule in rules:
        if (only and rule["id"] not in only) or not rule.get("keywords"):
            continue
        try:
            found, unassigned = uncovered(rule)
        except Exception as e:  # a pattern Hypothesis cannot draw from
            print(f"{rule['id']}: cannot draw ({type(e).__name__}: {str(e)[:80]})")
            continue
        if found:
            print(f"{rule['id']}: {len(found)} of {EXAMPLES} draws hold no keyword, e.g. {found[0][:60]!r}")
        if unassigned:
            print(f"{rule['id']}: {len(unassigned)} of {EXAMPLES} draws hold no keyword an assignment "
                  f"follows, e.g. {unassigned[0][:60]!r}")


if __name__ == "__main__":
    main()
