"""One error table: every error carries its exit code and HTTP status, and the CLI uses them.

The server's side of the table is in ``tests/server/test_error_statuses.py`` (its fixtures
live in that folder); the magic's usage text in ``tests/test_magic.py``.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import jupyter_gov
from jupyter_gov import errors
from jupyter_gov.cli import main
from jupyter_gov.errors import GovError, error_classes

DOCS = Path(__file__).resolve().parents[1] / "docs" / "errors.md"
_ROW = re.compile(r"^\| `(\w+)` \| (\w+) \| (\d+) \| (\d+) \|", re.MULTILINE)


def _all_error_classes() -> set[type[GovError]]:
    """Every GovError subclass defined anywhere in the package (all modules imported)."""
    for module in pkgutil.walk_packages(jupyter_gov.__path__, "jupyter_gov."):
        try:
            importlib.import_module(module.name)
        except ImportError:  # an optional driver or front end that is not installed
            continue
    found: set[type[GovError]] = set()
    todo = [GovError]
    while todo:
        cls = todo.pop()
        if cls.__module__.startswith("jupyter_gov") and cls not in found:
            found.add(cls)
            todo.extend(cls.__subclasses__())
    return found


def test_every_error_class_is_defined_in_errors_py():
    elsewhere = sorted(
        f"{cls.__module__}.{cls.__name__}"
        for cls in _all_error_classes()
        if cls.__module__ != "jupyter_gov.errors"
    )
    assert elsewhere == []


@pytest.mark.parametrize("cls", error_classes(), ids=lambda cls: cls.__name__)
def test_every_error_has_an_exit_code_and_an_http_status(cls):
    assert 1 <= cls.exit_code <= 6
    assert 400 <= cls.http_status <= 599


def test_old_import_paths_still_name_the_same_classes():
    from jupyter_gov.analysis import SqlSyntaxError
    from jupyter_gov.approvals import ApprovalConflict, ApprovalError, ApprovalRefused
    from jupyter_gov.connectors.profile import MaskUnsupported
    from jupyter_gov.connectors.registry import UnknownBackend
    from jupyter_gov.identity.oidc import TokenRejected
    from jupyter_gov.keys import MaskKeyError
    from jupyter_gov.result import ApprovalRequired, QueryDenied

    moved = (
        SqlSyntaxError,
        ApprovalError,
        ApprovalConflict,
        ApprovalRefused,
        MaskUnsupported,
        UnknownBackend,
        TokenRejected,
        MaskKeyError,
        ApprovalRequired,
        QueryDenied,
    )
    assert all(getattr(errors, cls.__name__) is cls for cls in moved)


def test_connector_failures_are_pep_249_classes():
    assert issubclass(errors.ConnectionFailed, errors.OperationalError)
    assert issubclass(errors.QueryFailed, errors.DatabaseError)
    assert issubclass(errors.MaskUnsupported, errors.NotSupportedError)
    for name in ("OperationalError", "ProgrammingError", "DataError", "IntegrityError"):
        assert issubclass(getattr(errors, name), errors.DatabaseError)


def test_the_docs_table_lists_every_error_with_its_statuses():
    documented = {
        name: (parent, int(exit_code), int(http))
        for name, parent, exit_code, http in _ROW.findall(DOCS.read_text())
    }
    actual = {
        cls.__name__: (cls.__mro__[1].__name__, cls.exit_code, cls.http_status)
        for cls in error_classes()
    }
    assert documented == actual


# -- the command line exits with the table's code ----------------------------------------------


@pytest.fixture
def missing_database(tmp_path: Path) -> str:
    policy = tmp_path / "gone.yaml"
    policy.write_text(
        "version: 1\nname: gone\nroles: {r: {users: [alice]}}\n"
        f"connections: {{d: {{url: 'duckdb:///{tmp_path}/missing.duckdb'}}}}\n"
    )
    return str(policy)


@pytest.fixture
def hub_policy(tmp_path: Path) -> str:
    policy = tmp_path / "hub.yaml"
    policy.write_text(
        "version: 1\nname: hub\nidentity: {provider: jupyterhub}\n"
        "roles: {r: {groups: [g]}}\nconnections: {d: {url: 'duckdb:demo'}}\n"
    )
    return str(policy)


CLI_CASES = {
    "usage": (errors.UsageError, ["query", "--user", "bob", "--param", "x", "SELECT 1"]),
    "policy": (errors.PolicyError, ["query", "--policy", "{tmp}/none.yaml", "SELECT 1"]),
    "unknown connection": (
        errors.UnknownConnection,
        ["query", "--user", "bob", "--connection", "nope", "SELECT 1"],
    ),
    "identity": (errors.IdentityError, ["query", "--policy", "{hub}", "--user", "x", "SELECT 1"]),
    "denied": (errors.QueryDenied, ["query", "--user", "bob", "DROP TABLE orders"]),
    "approval required": (
        errors.ApprovalRequired,
        ["query", "--user", "alice", "DELETE FROM orders WHERE order_id = 1"],
    ),
    "approval refused": (
        errors.ApprovalNotFound,
        ["approvals", "approve", "abcdef123456", "--user", "dave"],
    ),
    "audit": (errors.AuditError, ["query", "--store", "postgresql://db/audit", "SELECT 1"]),
    "database": (
        errors.ConnectionFailed,
        ["query", "--policy", "{gone}", "--user", "alice", "SELECT 1"],
    ),
}


@pytest.mark.parametrize("kind", CLI_CASES)
def test_the_cli_exits_with_the_tables_code(kind, capsys, tmp_path, missing_database, hub_policy):
    cls, argv = CLI_CASES[kind]
    argv = [a.format(tmp=tmp_path, gone=missing_database, hub=hub_policy) for a in argv]
    status = main(argv)
    err = capsys.readouterr().err
    assert status == cls.exit_code, err
    assert "Traceback" not in err


def test_every_exit_code_of_the_table_is_reachable_from_the_cli():
    assert {cls.exit_code for cls, _ in CLI_CASES.values()} == set(range(1, 7))


def test_explain_exits_as_the_run_would(capsys):
    assert main(["explain", "--user", "bob", "DROP TABLE orders"]) == errors.QueryDenied.exit_code
    needs_approval = ["explain", "--user", "alice", "DELETE FROM orders WHERE order_id = 1"]
    assert main(needs_approval) == errors.ApprovalRequired.exit_code
    capsys.readouterr()
