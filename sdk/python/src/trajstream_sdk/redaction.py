"""Redaction hooks: text scrubbers that run on every free-text field before an event is encoded."""

from __future__ import annotations

import re
from collections.abc import Iterable

from trajstream_sdk.events import Redactor

# Conservative patterns: a false positive costs a little context, a false negative leaks PII.
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
PHONE = re.compile(r"(?<!\w)\+?\d[\d\s().-]{7,}\d(?!\w)")
CARD = re.compile(r"(?<!\d)(?:\d[ -]?){13,19}(?!\d)")
IPV4 = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")

DEFAULT_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("EMAIL", EMAIL),
    ("CARD", CARD),
    ("PHONE", PHONE),
    ("IP", IPV4),
)


def pattern_redactor(patterns: Iterable[tuple[str, re.Pattern[str]]] = DEFAULT_PATTERNS) -> Redactor:
    """A redactor that replaces each match with ``[REDACTED:<LABEL>]``."""
    compiled = tuple(patterns)

    def scrub(text: str) -> str:
        for label, pattern in compiled:
            text = pattern.sub(f"[REDACTED:{label}]", text)
        return text

    return scrub


def chain(*redactors: Redactor) -> Redactor:
    def scrub(text: str) -> str:
        for redactor in redactors:
            text = redactor(text)
        return text

    return scrub
