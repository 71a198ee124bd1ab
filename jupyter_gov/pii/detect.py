"""Find and replace PII: presidio's NLP-free analyzer, and a vectorized Arrow fast path.

Both read :data:`~jupyter_gov.pii.recognizers.DEFINITIONS` and agree on what they find.

- :func:`analyzer` is presidio's ``AnalyzerEngine`` on a ``NoOpNlpEngine`` (no model is
  downloaded) with one ``PatternRecognizer`` per definition; :func:`spans` applies the
  definitions in order, as the fast path does. Use it on one text at a time.
- :func:`scan_array` scrubs a whole Arrow column at once. Per definition: rows with a
  candidate are found with an RE2 ``match_substring_regex``; each candidate is fenced with
  NUL characters by ``replace_substring_regex`` and split out, so the candidates of every
  row form one flat array; checksums and entropy are computed on that array with numpy;
  valid candidates are replaced (``replace_with_mask``) and rows are joined back
  (``binary_join``). Only the keyed ``hash`` and ``encrypt`` operators call Python per
  *match* (never per row).

A NUL character in a value is replaced by U+FFFD before scanning (it fences candidates).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jupyter_gov.pii.operators import Operator, replace_operator
from jupyter_gov.pii.recognizers import (
    DEFINITIONS,
    IBAN_LENGTHS,
    NOT_A_PHONE,
    PREFILTER,
    SECRET_MIN_ENTROPY,
    EntityDef,
    definitions_for,
)

_FENCE = "\x00"


@cache
def analyzer() -> Any:
    """presidio's ``AnalyzerEngine`` with jupyter-gov's recognizers and no NLP model."""
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NoOpNlpEngine

    from jupyter_gov.pii.recognizers import build_recognizers

    registry = RecognizerRegistry(recognizers=build_recognizers(), supported_languages=["en"])
    return AnalyzerEngine(
        registry=registry, nlp_engine=_no_op_engine(NoOpNlpEngine), supported_languages=["en"]
    )


def _no_op_engine(cls: Any) -> Any:
    engine = cls(models=[{"lang_code": "en", "model_name": "none"}])
    engine.load()
    return engine


def spans(text: str, entities: tuple[str, ...] | None = None) -> list[Any]:
    """presidio ``RecognizerResult`` spans, definitions applied in order (earlier wins)."""
    wanted = {d.entity for d in definitions_for(entities)}
    found = analyzer().analyze(text=text, language="en", entities=sorted(wanted))
    order = {d.entity: i for i, d in reversed(list(enumerate(DEFINITIONS)))}
    kept: list[Any] = []
    for result in sorted(found, key=lambda r: (order[r.entity_type], r.start)):
        if not any(result.start < k.end and k.start < result.end for k in kept):
            kept.append(result)
    return sorted(kept, key=lambda r: r.start)


@dataclass
class ScanResult:
    """A scrubbed column and, per entity, how many valid matches each row held."""

    array: pa.Array
    hits: dict[str, np.ndarray] = field(default_factory=dict)  # entity -> count per row
    whole: dict[str, np.ndarray] = field(default_factory=dict)  # entity -> value is one match

    def rows_with(self, entity: str) -> int:
        counts = self.hits.get(entity)
        return 0 if counts is None else int(np.count_nonzero(counts))


def scan_array(
    values: pa.Array | pa.ChunkedArray,
    entities: Iterable[str] | None = None,
    operator: Operator | None = None,
) -> ScanResult:
    """Scrub every entity out of a string column, vectorized; see the module docstring."""
    array = _as_string_array(values)
    op = operator or replace_operator()
    result = ScanResult(array)
    if len(array) == 0:
        return result
    if pc.any(pc.match_substring(array, _FENCE)).as_py():
        array = pc.replace_substring(array, _FENCE, "\ufffd")
    # One cheap pass finds the rows any definition could match; the rest is skipped.
    maybe = pc.fill_null(pc.match_substring_regex(array, PREFILTER), False)
    rows = np.flatnonzero(maybe.to_numpy(zero_copy_only=False))
    work = array if len(rows) == len(array) else array.take(pa.array(rows))
    for definition in definitions_for(tuple(entities) if entities else None):
        work, counts, whole = _apply(work, definition, op)
        if counts is not None:
            entity = definition.entity
            full_counts = np.zeros(len(array), np.int64)
            full_counts[rows] = counts
            full_whole = np.zeros(len(array), bool)
            full_whole[rows] = whole
            result.hits[entity] = result.hits.get(entity, 0) + full_counts
            result.whole[entity] = result.whole.get(entity, False) | full_whole
    if len(rows) == len(array):
        result.array = work
    elif len(rows):
        result.array = pc.replace_with_mask(array, maybe, work)
    else:
        result.array = array
    return result


def scrub_values(values: Iterable[str | None], **kwargs: Any) -> list[str | None]:
    """:func:`scan_array` for a Python list (tests, short lists)."""
    return scan_array(pa.array(list(values), pa.string()), **kwargs).array.to_pylist()


def _as_string_array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks else pa.array([], pa.string())
    if not pa.types.is_string(values.type):  # large_string, string_view, numbers
        values = values.cast(pa.string())
    return values


def _apply(
    array: pa.Array, definition: EntityDef, op: Operator
) -> tuple[pa.Array, np.ndarray | None, np.ndarray]:
    n = len(array)
    rows = np.arange(n)
    if definition.hints or definition.hint_regex:
        if definition.hint_regex:
            hinted = pc.match_substring_regex(array, definition.hint_regex)
        else:
            hinted = pc.match_substring(array, definition.hints[0])
            for hint in definition.hints[1:]:
                hinted = pc.or_(hinted, pc.match_substring(array, hint))
        rows = np.flatnonzero(pc.fill_null(hinted, False).to_numpy(zero_copy_only=False))
        if not len(rows):
            return array, None, np.zeros(n, bool)
    narrowed = array if len(rows) == n else array.take(pa.array(rows))
    candidate = pc.fill_null(pc.match_substring_regex(narrowed, definition.pattern), False)
    rows = rows[candidate.to_numpy(zero_copy_only=False)]
    if not len(rows):
        return array, None, np.zeros(n, bool)
    subset = array.take(pa.array(rows))
    fenced = pc.replace_substring_regex(subset, definition.pattern, _FENCE + r"\0" + _FENCE)
    pieces = pc.split_pattern(fenced, _FENCE)
    offsets = pieces.offsets.to_numpy()
    flat = pieces.flatten()
    lengths = np.diff(offsets)
    parent = np.repeat(np.arange(len(rows)), lengths)
    position = np.arange(len(flat)) - np.repeat(offsets[:-1], lengths)
    is_match = position % 2 == 1
    matches = flat.filter(pa.array(is_match))
    if definition.grouped:
        parts = pc.extract_regex(matches, definition.pattern)
        pre, val = parts.field("pre"), parts.field("val")
        post = parts.field("post") if "post" in definition.pattern else None
    else:
        pre, val, post = None, matches, None
    valid = _validate(val, definition.validator)
    match_parent = parent[is_match]
    counts_subset = np.bincount(match_parent[valid], minlength=len(rows))
    counts = np.zeros(n, np.int64)
    counts[rows] = counts_subset
    whole = np.zeros(n, bool)
    whole[rows] = (lengths == 3) & (counts_subset == 1) & _empty_ends(flat, offsets, lengths)
    if not valid.any():
        return array, counts, whole
    keep = pa.array(valid)
    replaced = op.apply(definition.entity, val.filter(keep))
    if pre is not None:
        joined = [pre.filter(keep), replaced] + ([post.filter(keep)] if post is not None else [])
        replaced = pc.binary_join_element_wise(*joined, "")
    slot = np.zeros(len(flat), bool)
    slot[np.flatnonzero(is_match)[valid]] = True
    flat = pc.replace_with_mask(flat, pa.array(slot), replaced)
    rebuilt = pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), flat), "")
    changed_rows = counts_subset > 0
    mask = np.zeros(n, bool)
    mask[rows[changed_rows]] = True
    out = pc.replace_with_mask(array, pa.array(mask), rebuilt.filter(pa.array(changed_rows)))
    return out, counts, whole


def _empty_ends(flat: pa.Array, offsets: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Per row: its text before the first and after the last candidate is blank."""
    blank = pc.fill_null(pc.utf8_is_space(flat), False).to_numpy(zero_copy_only=False)
    blank |= pc.binary_length(flat).to_numpy(zero_copy_only=False) == 0
    first = blank[offsets[:-1]]
    last = blank[np.maximum(offsets[1:] - 1, 0)]
    return first & last & (lengths > 0)


# -- vectorized validators ---------------------------------------------------------------


def _validate(values: pa.Array, kind: str | None) -> np.ndarray:
    n = len(values)
    if kind is None or n == 0:
        return np.ones(n, bool)
    return {
        "luhn": _luhn,
        "iban": _iban,
        "ssn": _ssn,
        "entropy": _entropy,
        "phone": _phone,
    }[kind](values)


def _byte_matrix(
    values: pa.Array, width: int, right: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """ASCII bytes of each value in a (n, width) matrix (0-padded) and the lengths.

    Values longer than ``width`` are cut (callers reject them by length first).
    """
    values = values.cast(pa.string())
    n = len(values)
    buffers = values.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int32)[values.offset : values.offset + n + 1]
    data = (
        np.frombuffer(buffers[2], dtype=np.uint8)
        if buffers[2] is not None
        else np.zeros(0, np.uint8)
    )
    lengths = np.diff(offsets)
    take = np.minimum(lengths, width)
    total = int(take.sum())
    row = np.repeat(np.arange(n), take)
    j = np.arange(total) - np.repeat(np.cumsum(take) - take, take)
    source = np.repeat(offsets[:-1], take) + j
    column = (np.repeat(take, take) - 1 - j) if right else j
    matrix = np.zeros((n, width), np.uint8)
    matrix[row, column] = data[source]
    return matrix, lengths


def _digits_only(values: pa.Array) -> pa.Array:
    return pc.replace_substring_regex(values, "[^0-9]", "")


def _luhn(values: pa.Array) -> np.ndarray:
    digits, lengths = _byte_matrix(_digits_only(values), 19, right=True)
    numbers = np.where(digits > 0, digits.astype(np.int16) - 48, 0)
    doubled = numbers[:, 1::2] * 2
    numbers[:, 1::2] = np.where(doubled > 9, doubled - 9, doubled)
    return (numbers.sum(axis=1) % 10 == 0) & (lengths >= 13) & (lengths <= 19)


def _iban(values: pa.Array) -> np.ndarray:
    code = pc.utf8_upper(pc.replace_substring(values, " ", ""))
    country = pc.utf8_slice_codeunits(code, 0, 2).to_pylist()
    lengths = pc.utf8_length(code).to_numpy(zero_copy_only=False)
    expected = np.array([IBAN_LENGTHS.get(c, -1) for c in dict.fromkeys(country)])
    index = {c: i for i, c in enumerate(dict.fromkeys(country))}
    ok = expected[[index[c] for c in country]] == lengths
    rearranged = pc.binary_join_element_wise(
        pc.utf8_slice_codeunits(code, 4), pc.utf8_slice_codeunits(code, 0, 4), ""
    )
    chars, _ = _byte_matrix(rearranged, 34)
    chars = chars.astype(np.int64)
    is_digit = (chars >= 48) & (chars <= 57)
    is_letter = (chars >= 65) & (chars <= 90)
    value = np.where(is_digit, chars - 48, np.where(is_letter, chars - 55, 0))
    scale = np.where(is_digit, 10, np.where(is_letter, 100, 1))
    remainder = np.zeros(len(values), np.int64)
    for column in range(chars.shape[1]):
        remainder = (remainder * scale[:, column] + value[:, column]) % 97
    return ok & (remainder == 1)


def _ssn(values: pa.Array) -> np.ndarray:
    digits, _ = _byte_matrix(_digits_only(values), 9)
    numbers = digits.astype(np.int64) - 48
    area = numbers[:, 0] * 100 + numbers[:, 1] * 10 + numbers[:, 2]
    group = numbers[:, 3] * 10 + numbers[:, 4]
    serial = numbers[:, 5:9] @ np.array([1000, 100, 10, 1])
    return (area != 0) & (area != 666) & (area < 900) & (group != 0) & (serial != 0)


def _entropy(values: pa.Array) -> np.ndarray:
    chars, lengths = _byte_matrix(values, 128)
    n = len(values)
    counts = np.zeros((n, 256), np.float64)
    rows = np.repeat(np.arange(n), chars.shape[1])
    np.add.at(counts, (rows, chars.ravel()), 1)
    counts[:, 0] = 0  # padding
    safe = np.maximum(np.minimum(lengths, 128), 1)[:, None]
    p = counts / safe
    bits = -(np.where(p > 0, p * np.log2(np.where(p > 0, p, 1)), 0)).sum(axis=1)
    kinds = sum(
        pc.match_substring_regex(values, k).to_numpy(zero_copy_only=False).astype(int)
        for k in ("[0-9]", "[a-z]", "[A-Z]")
    )
    return (bits >= SECRET_MIN_ENTROPY) & (kinds >= 2)


def _phone(values: pa.Array) -> np.ndarray:
    number = pc.utf8_trim_whitespace(pc.replace_substring_regex(values, "(x|ext).*$", ""))
    count = pc.utf8_length(_digits_only(number)).to_numpy(zero_copy_only=False)
    separated = pc.match_substring_regex(number, "[^0-9]").to_numpy(zero_copy_only=False)
    other = pc.match_substring_regex(values, NOT_A_PHONE).to_numpy(zero_copy_only=False)
    return (count >= 7) & (count <= 15) & separated & ~other


__all__ = ["DEFINITIONS", "ScanResult", "analyzer", "scan_array", "scrub_values", "spans"]
