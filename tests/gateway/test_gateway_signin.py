"""``%gsql_login`` and ``%gsql_logout`` in gateway mode: the token the kernel holds is the
sign-in. ``%gsql_login`` says whom the gateway proves it to be and the gateway records the
sign-in in its audit as that identity; with no token it says, in one sentence, how to give
one; ``%gsql_logout`` has nothing to forget.

The gateway is the ``served`` fixture (a real ``gateway serve`` process); the notebook is a
real IPython shell configured through the environment only.
"""

from __future__ import annotations

from typing import Any

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from jupyter_gov.audit import AuditStore
from tests.gateway.conftest import Served


@pytest.fixture
def shell(served: Served, monkeypatch: pytest.MonkeyPatch) -> Any:
    def make(token: str | None) -> InteractiveShell:
        monkeypatch.setenv("JUPYTER_GOV_GATEWAY", served.address)
        monkeypatch.delenv("JUPYTER_GOV_GATEWAY_CA", raising=False)
        for name in ("JUPYTER_GOV_SERVICE", "JUPYTER_GOV_SERVICE_TOKEN", "JUPYTERHUB_API_TOKEN"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv("JUPYTER_GOV_GATEWAY_TOKEN_FILE", raising=False)
        if token is None:
            monkeypatch.delenv("JUPYTER_GOV_GATEWAY_TOKEN", raising=False)
        else:
            monkeypatch.setenv("JUPYTER_GOV_GATEWAY_TOKEN", token)
        notebook = InteractiveShell()
        notebook.extension_manager.load_extension("jupyter_gov")
        return notebook

    return make


def sign_ins(served: Served) -> list[dict[str, Any]]:
    store = AuditStore(f"sqlite:///{served.audit_path}")
    try:
        return store.events(limit=100, kinds=["sign_in"])
    finally:
        store.close()


def test_gsql_login_says_whom_the_gateway_proves_and_the_gateway_records_it(
    served: Served, shell: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    before = len(sign_ins(served))
    shell(Served.token("reporting")).run_line_magic("gsql_login", "")
    assert "Signed in as service reporting (reporting, service-token)." in capsys.readouterr().out
    events = sign_ins(served)
    assert len(events) == before + 1
    newest = events[0]
    assert (newest["subject"], newest["auth_method"], newest["verified"]) == (
        "reporting",
        "service-token",
        True,
    )


def test_gsql_login_without_a_token_says_how_to_give_one(shell: Any) -> None:
    with pytest.raises(UsageError) as refused:
        shell(None).run_line_magic("gsql_login", "")
    assert "Gateway mode needs a token: set JUPYTER_GOV_GATEWAY_TOKEN" in str(refused.value)
    assert "\n" not in str(refused.value)


def test_gsql_login_with_a_refused_token_is_one_sentence(shell: Any) -> None:
    with pytest.raises(UsageError) as refused:
        shell("service:reporting:wrong").run_line_magic("gsql_login", "")
    assert "could not sign in to the gateway" in str(refused.value)


def test_gsql_logout_in_gateway_mode_has_nothing_to_forget(
    shell: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    shell(Served.token("reporting")).run_line_magic("gsql_logout", "")
    assert "There was no sign-in to forget." in capsys.readouterr().out
