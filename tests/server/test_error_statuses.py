"""The server answers every GovError with the table's HTTP status, as one-sentence JSON."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
import tornado.web
from jupyter_server.utils import url_path_join
from tornado.httpclient import HTTPClientError

from jupyter_gov import errors
from jupyter_gov.errors import error_classes
from jupyter_gov.server.handlers import GovAPIHandler

API = ("jupyter-gov", "api")
SENTENCE = "Something a user can act on happened."


def make(cls: type[errors.GovError]) -> errors.GovError:
    """One instance of ``cls`` with a one-sentence message."""
    if cls is errors.PipelineNeedsApproval:  # its own sentence names the request; keep ours
        error = cls(SimpleNamespace(reasons=[SENTENCE]))  # type: ignore[arg-type]
        Exception.__init__(error, SENTENCE)
        return error
    if cls in (errors.QueryDenied, errors.ApprovalRequired):
        return cls(SimpleNamespace(reasons=[SENTENCE]))  # type: ignore[arg-type]
    if cls is errors.ApprovalRefused:
        return cls(SENTENCE, rule="approval:expired")
    if cls is errors.ApprovalFiled:  # its sentence adds the request id; keep ours
        needed = errors.ApprovalRequired(SimpleNamespace(reasons=[SENTENCE]))  # type: ignore[arg-type]
        error = cls(needed, "r-1")
        Exception.__init__(error, SENTENCE)
        return error
    if cls is errors.ClientProtocolError:
        return cls(SENTENCE, "0A000")
    return cls(SENTENCE)


class RaiseHandler(GovAPIHandler):
    """Raises the named error, as a route's own code would."""

    @tornado.web.authenticated
    async def get(self, name: str) -> None:
        raise make(getattr(errors, name))


@pytest.fixture
def raising_route(jp_web_app: Any, jp_base_url: str) -> tuple[str, ...]:
    pattern = url_path_join(jp_base_url, "jupyter-gov-test", "raise", r"(\w+)")
    jp_web_app.add_handlers(".*$", [(pattern, RaiseHandler)])
    return ("jupyter-gov-test", "raise")


async def failure(jp_fetch: Any, *path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(HTTPClientError) as caught:
        await jp_fetch(*path, **kwargs)
    response = caught.value.response
    assert response is not None
    return caught.value.code, json.loads(response.body)


@pytest.mark.parametrize("cls", error_classes(), ids=lambda cls: cls.__name__)
async def test_each_error_answers_with_the_tables_status(jp_fetch, raising_route, cls):
    code, body = await failure(jp_fetch, *raising_route, cls.__name__)
    assert code == cls.http_status
    assert body["message"] == SENTENCE and body["error"] == cls.__name__


async def test_an_unknown_approval_is_the_tables_404(jp_fetch):
    code, body = await failure(
        jp_fetch, *API, "approvals", "abcdef123456", "approve", method="POST", body="{}"
    )
    assert (code, body["error"]) == (errors.ApprovalNotFound.http_status, "ApprovalNotFound")


@pytest.fixture
def unsupported_store(jp_server_config):
    jp_server_config.GovServer.audit_store = "postgresql://db/audit"
    return jp_server_config


async def test_an_unusable_audit_store_is_the_tables_503(unsupported_store, jp_fetch):
    code, body = await failure(jp_fetch, *API, "audit")
    assert (code, body["error"]) == (errors.AuditError.http_status, "AuditError")


@pytest.fixture
def missing_policy(jp_server_config, monkeypatch):
    """A policy file that does not exist, and no store named anywhere else."""
    jp_server_config.GovServer.policy = "/nonexistent/errors-policy.yaml"
    jp_server_config.GovServer.audit_store = ""
    monkeypatch.delenv("JUPYTER_GOV_AUDIT_STORE", raising=False)
    return jp_server_config


async def test_a_policy_that_does_not_load_is_the_tables_503(missing_policy, jp_fetch):
    code, body = await failure(jp_fetch, *API, "approvals")
    assert (code, body["error"]) == (errors.PolicyError.http_status, "PolicyError")
    assert "does not exist" in body["message"]
