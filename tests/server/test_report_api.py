"""``GET report``: the compliance report over the server's audit store."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from tornado.httpclient import HTTPClientError

API = ("jupyter-gov", "api", "report")
WHOLE_LOG = "99999d"  # the seeded events are from 2025


async def test_the_html_report_is_a_page_that_may_run_nothing(jp_fetch: Any, seeded) -> None:
    response = await jp_fetch(*API, params={"since": WHOLE_LOG}, method="GET")
    assert response.headers["Content-Type"].startswith("text/html")
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "sandbox" in policy
    page = response.body.decode()
    assert "Chain intact: 30 events" in page and "<script" not in page


async def test_json_and_csv_carry_the_same_denials(jp_fetch: Any, seeded) -> None:
    response = await jp_fetch(*API, params={"since": WHOLE_LOG, "format": "json"}, method="GET")
    report = json.loads(response.body)
    assert report["denials"] == [
        {"rule": "read_only", "connection": "demo", "attempts": 5, "subjects": "bob"}
    ]
    response = await jp_fetch(*API, params={"since": WHOLE_LOG, "format": "csv"}, method="GET")
    assert response.headers["Content-Type"].startswith("text/csv")
    assert "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.body.decode())))
    assert [r["rule"] for r in rows if r["section"] == "denials"] == ["read_only"]


async def test_bad_parameters_are_one_sentence_json_400s(jp_fetch: Any, seeded) -> None:
    for params in ({"format": "pdf"}, {"since": "forever"}, {"limit": "5"}):
        with pytest.raises(HTTPClientError) as caught:
            await jp_fetch(*API, params=params, method="GET")
        assert caught.value.code == 400
        body = json.loads(caught.value.response.body)
        assert body["message"].endswith(".")
