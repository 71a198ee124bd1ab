"""Fixtures for the adversarial suites: the oracle's references per role, the ``stress``
marker, and the live engines of ``tests/connectors`` for the cross-engine subset.

``stress`` tests (the long fuzz runs) are deselected unless ``JUPYTER_GOV_STRESS=1`` or the
marker expression names them (``-m stress``); ``make stress`` does the former.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest

from jupyter_gov.connectors.duckdb import DuckDBConnector
from jupyter_gov.demo.data import TABLE_NAMES
from jupyter_gov.engine import GovernedSession
from jupyter_gov.errors import GovError
from jupyter_gov.policy import Policy
from tests.adversarial.oracle import Reference
from tests.connectors.conftest import engine, live_engines  # noqa: F401  (fixtures)

#: Every demo user: an admin (raw), two analysts (carol row-filtered to EMEA), an
#: approver, and eve, who has no role at all.
USERS = ("alice", "bob", "carol", "dave", "eve")
#: Users whose role sees classified values raw: the leak check does not apply to them.
RAW_USERS = frozenset({"alice"})
#: The key every test's home uses (tests/conftest.py), so references mask alike.
MASK_KEY = "test-masking-key-0123456789abcdef"


def stress_enabled(config: pytest.Config) -> bool:
    return os.environ.get("JUPYTER_GOV_STRESS") == "1" or "stress" in (config.option.markexpr or "")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if stress_enabled(config):
        return
    skipped = [item for item in items if item.get_closest_marker("stress")]
    if skipped:
        config.hook.pytest_deselected(items=skipped)
        items[:] = [item for item in items if not item.get_closest_marker("stress")]


def without_approvals(policy: Policy) -> Policy:
    """The same masks and filters with no approval rules: how an admin's reference view is
    read without tripping the bulk-export rule (whose limit is not the oracle's subject)."""
    data = dict(policy.data)
    data["approvals"] = {**data.get("approvals", {}), "rules": []}
    return Policy(data)


@pytest.fixture(scope="session")
def reference_for(
    demo_connector: DuckDBConnector, demo_policy: Policy, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str], Reference | None]]:
    """``reference_for(user)``: the plain database of that user's view (None: sees nothing).

    Built once per user per test session from what the governed engine returns for
    ``SELECT * FROM t``, under the same masking key as every test.
    """
    built: dict[str, Reference | None] = {}
    policy = without_approvals(demo_policy)
    home = tmp_path_factory.mktemp("reference-home")

    def get(user: str) -> Reference | None:
        if user not in built:
            with pytest.MonkeyPatch.context() as patch:
                patch.setenv("JUPYTER_GOV_HOME", str(home))
                patch.setenv("JUPYTER_GOV_MASK_KEY", MASK_KEY)
                session = GovernedSession(policy, user)
                session.use_connector("demo", demo_connector)
                try:
                    built[user] = Reference.materialize(
                        lambda sql: session.sql(sql).arrow(), TABLE_NAMES
                    )
                except GovError:
                    built[user] = None
        return built[user]

    yield get
    for reference in built.values():
        if reference is not None:
            reference.con.close()


@pytest.fixture
def shell(demo_connector: DuckDBConnector) -> Iterator[object]:
    """An IPython shell with the extension loaded, every magic session on the demo database."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell()
    shell.extension_manager.load_extension("jupyter_gov")
    magic = shell.magics_manager.registry["GovMagic"]
    original = magic.session

    def session(user: str | None = None) -> GovernedSession:
        governed = original(user)
        governed.use_connector("demo", demo_connector)
        return governed

    magic.session = session
    yield shell
    shell.extension_manager.unload_extension("jupyter_gov")
    InteractiveShell.clear_instance()
