"""Scrub PII out of free text in Python, with presidio-anonymizer's operators.

The ``scrub`` mask runs *in the database* (``masking.scrub_expression``), so predicates
never see raw text. This module is the Python side of the same contract, for text that
never went through a database: database error messages before they reach the audit or the
user, and any text a front end wants to show. Spans are found with the same patterns as
the SQL mask (credit cards also pass a Luhn check here), and replaced by presidio's
``AnonymizerEngine`` with its operators (``replace`` by default, giving ``<ENTITY>``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

from jupyter_gov.masking import DEFAULT_SCRUB, SCRUB_PATTERNS

_COMPILED = {entity: re.compile(pattern) for entity, pattern in SCRUB_PATTERNS.items()}


def luhn_ok(digits: str) -> bool:
    numbers = [int(c) for c in digits if c.isdigit()]
    if len(numbers) < 13:
        return False
    total = 0
    for i, n in enumerate(reversed(numbers)):
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def find_spans(text: str, entities: Iterable[str] = DEFAULT_SCRUB) -> list[Any]:
    """presidio ``RecognizerResult`` spans for the entities found, longest match first."""
    from presidio_anonymizer.entities import RecognizerResult

    spans: list[RecognizerResult] = []
    taken: list[tuple[int, int]] = []
    for entity in entities:
        for match in _COMPILED[entity].finditer(text):
            start, end = match.span()
            if entity == "CREDIT_CARD" and not luhn_ok(match.group()):
                continue
            if any(start < e and s < end for s, e in taken):
                continue
            taken.append((start, end))
            spans.append(RecognizerResult(entity_type=entity, start=start, end=end, score=1.0))
    return spans


@cache
def _engine() -> Any:
    from presidio_anonymizer import AnonymizerEngine

    return AnonymizerEngine()


def scrub_text(
    text: str,
    entities: Iterable[str] = DEFAULT_SCRUB,
    operators: Mapping[str, Any] | None = None,
) -> str:
    """``text`` with every detected entity replaced through presidio's operators."""
    if not text:
        return text
    spans = find_spans(text, tuple(entities))
    if not spans:
        return text
    from presidio_anonymizer.entities import OperatorConfig

    config = dict(operators or {"DEFAULT": OperatorConfig("replace")})
    return _engine().anonymize(text=text, analyzer_results=spans, operators=config).text
