"""Sections of docs/benchmarks.md that one script owns, between its two HTML comments.

Each script that writes into the shared document replaces only its own section, so the
others' (and the hand-written text around them) survive every re-run.
"""

from __future__ import annotations


def replace_section(text: str, begin: str, end: str, section: str) -> str | None:
    """``text`` with what lies between ``begin`` and ``end`` (both included) replaced by
    ``section``; None when ``text`` lacks either marker."""
    if begin not in text or end not in text:
        return None
    head, rest = text.split(begin, 1)
    return head + section + rest.split(end, 1)[1]
