"""Absurd, negative, non-numeric and non-UTF-8 query arguments on every route: a JSON 400
with one sentence, or an ordinary answer, and never a 500 or a traceback."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

API = ("jupyter-gov", "api")

#: Values that are not a number any route accepts.
NOT_NUMBERS: list[Any] = [
    "1e30",
    "1" + "0" * 30,
    "9" * 5000,
    "-1",
    "-9223372036854775809",
    "NaN",
    "inf",
    "-inf",
    "0x10",
    "１２",
    "1_0",
    "abc",
    "1,5",
    b"\xff",
    b"\xed\xa0\x80",  # a lone surrogate, UTF-8 encoded
]

#: Anything else a client could send for a text parameter.
ODD_TEXT: list[Any] = [*NOT_NUMBERS, "\x00", "x" * 10_000, "<script>", "' OR 1=1 --", "%", "\u202e"]

NUMERIC = {
    ("audit",): ("limit", "offset", "since", "until"),
    ("audit", "stats"): ("bucket", "since", "until"),
    ("approvals",): ("limit", "offset"),
}
TEXT = {
    ("audit",): ("user", "connection", "decision", "kind", "text", "query_id"),
    ("audit", "stats"): ("user", "kind", "text"),
    ("approvals",): ("state",),
    ("audit", "verify"): ("limit",),
    ("policy",): ("x",),
}


async def status(jp_fetch: Any, path: tuple[str, ...], params: dict[str, Any]) -> tuple[int, dict]:
    try:
        response = await jp_fetch(*API, *path, params=params, method="GET")
    except HTTPClientError as error:
        assert error.response is not None
        assert error.response.headers["Content-Type"].startswith("application/json")
        return error.code, json.loads(error.response.body)
    return response.code, json.loads(response.body)


def assert_one_sentence(body: dict) -> None:
    message = body["message"]
    assert isinstance(message, str) and message.endswith(".") and len(message) < 300
    assert "\n" not in message and "Traceback" not in message and "traceback" not in body


@pytest.mark.parametrize(
    ("path", "name"), [(path, name) for path, names in NUMERIC.items() for name in names]
)
async def test_absurd_numbers_are_a_one_sentence_400(jp_fetch, seeded, path, name):
    for value in NOT_NUMBERS:
        code, body = await status(jp_fetch, path, {name: value})
        assert code == 400, (path, name, value, body)
        assert_one_sentence(body)
        assert repr(name) in body["message"]


@pytest.mark.parametrize(
    ("path", "name"), [(path, name) for path, names in TEXT.items() for name in names]
)
async def test_odd_text_is_answered_or_refused_never_a_500(jp_fetch, seeded, path, name):
    for value in ODD_TEXT:
        code, body = await status(jp_fetch, path, {name: value})
        assert code in (200, 400), (path, name, value, body)
        if code == 400:
            assert_one_sentence(body)


async def test_audit_offset_1e30_is_a_400_not_a_500(jp_fetch, seeded):
    code, body = await status(jp_fetch, ("audit",), {"offset": "1e30"})
    assert code == 400
    assert body["message"] == "Parameter 'offset' must be an integer between 0 and 1000000000000."


async def test_largest_offset_is_an_empty_page(jp_fetch, seeded):
    code, body = await status(jp_fetch, ("audit",), {"offset": str(10**12)})
    assert code == 200 and body["events"] == [] and body["total"] == 30


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b"\xff",
        b"null",
        b"[]",
        b'{"comment": null}',
        b'{"comment": "\\ud800"}',
        b"1e999",
    ],
)
@pytest.mark.parametrize("gov_user", ["dave"])
async def test_absurd_decision_bodies_are_a_one_sentence_400(jp_fetch, seeded, raw, gov_user):
    with pytest.raises(HTTPClientError) as caught:
        await jp_fetch(*API, "approvals", "abcdef123456", "approve", method="POST", body=raw)
    assert caught.value.code == 400
    assert_one_sentence(json.loads(caught.value.response.body))
